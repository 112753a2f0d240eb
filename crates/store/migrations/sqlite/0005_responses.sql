-- llm-link storage, schema 5 (SQLite): Responses API objects kept for
-- `previous_response_id`, `GET /v1/responses/{id}` and its input items, and
-- each provider's `responses` setting.
--
-- * Only requests with `store: true` (the API's default) are kept, until
--   `expires_at` (ms; 30 days unless --responses-ttl says otherwise).
-- * `owner` is who may read or delete it: `key:<id>`, `user:<id>`, or
--   NULL for a caller with no identity (desktop mode, an --auth-key).
-- * `input_items` is the JSON array of the request's input items and
--   `response` the JSON response object, as the client saw it.
-- * `affinity` names the provider target that produced the answer, so
--   reasoning items with `encrypted_content` return only to it.

CREATE TABLE responses (
    id                   TEXT PRIMARY KEY,
    owner                TEXT,
    model                TEXT NOT NULL,
    previous_response_id TEXT,
    affinity             TEXT,
    input_items          TEXT NOT NULL,
    response             TEXT NOT NULL,
    created_at           INTEGER NOT NULL,
    expires_at           INTEGER NOT NULL
);

CREATE INDEX responses_expires_at ON responses (expires_at);

-- Whether a provider serves the Responses API itself (requests forwarded
-- byte for byte to `{base_url}/responses`); NULL: as its kind says (on
-- for `openai`).
ALTER TABLE providers ADD COLUMN responses BOOLEAN;
