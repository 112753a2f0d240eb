-- llm-link storage, schema 2 (SQLite): one row per chat/embeddings request.
--
-- Written in batches by the usage recorder, never on a request's path.
-- `key_id` is a non-secret identifier of the client key presented (the first
-- 8 hex digits of its SHA-256); the key itself is never stored. Token
-- counts and cost are NULL when the answer did not report them (cost also
-- when the catalog has no price for the model).

CREATE TABLE usage_records (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    ts               INTEGER NOT NULL,
    request_id       TEXT NOT NULL,
    protocol         TEXT NOT NULL,
    endpoint         TEXT NOT NULL,
    app              TEXT,
    model            TEXT NOT NULL,
    provider         TEXT,
    upstream_model   TEXT,
    stream           BOOLEAN NOT NULL,
    status           INTEGER NOT NULL,
    error            TEXT,
    input_tokens     INTEGER,
    output_tokens    INTEGER,
    cached_tokens    INTEGER,
    reasoning_tokens INTEGER,
    latency_ms       INTEGER NOT NULL,
    ttfb_ms          INTEGER,
    attempts         INTEGER NOT NULL,
    cost             REAL,
    key_id           TEXT
);
CREATE INDEX usage_records_ts ON usage_records (ts);
CREATE INDEX usage_records_model_ts ON usage_records (model, ts);
