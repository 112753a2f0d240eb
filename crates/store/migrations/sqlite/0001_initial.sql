-- llm-link storage, schema 1 (SQLite).
--
-- Conventions (the PostgreSQL schema mirrors this one column for column):
-- * timestamps are Unix milliseconds, UTC;
-- * JSON documents are TEXT;
-- * a column named `secret` (and providers.headers) holds an AES-256-GCM
--   ciphertext "v1:<master key id>:<base64 nonce+ciphertext>", never clear
--   text; `hint` holds the masked form the API shows ("sk-…abcd").
-- Users, virtual keys and usage rows come in later migrations.

CREATE TABLE settings (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE providers (
    id                    INTEGER PRIMARY KEY AUTOINCREMENT,
    name                  TEXT NOT NULL UNIQUE,
    kind                  TEXT NOT NULL,
    base_url              TEXT,
    description           TEXT NOT NULL DEFAULT '',
    enabled               BOOLEAN NOT NULL DEFAULT 1,
    priority              INTEGER NOT NULL DEFAULT 0,
    weight                INTEGER NOT NULL DEFAULT 1,
    models                TEXT NOT NULL DEFAULT '[]',
    default_model         TEXT,
    forward_any_model     BOOLEAN NOT NULL DEFAULT 0,
    passthrough           BOOLEAN NOT NULL DEFAULT 1,
    key_usage_mode        TEXT NOT NULL DEFAULT 'single',
    connect_timeout_ms    INTEGER,
    first_byte_timeout_ms INTEGER,
    idle_timeout_ms       INTEGER,
    max_concurrency       INTEGER,
    rpm_limit             INTEGER,
    tpm_limit             INTEGER,
    headers               TEXT,
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL
);

CREATE TABLE llm_models (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    name           TEXT NOT NULL,
    model_id       TEXT NOT NULL,
    provider       TEXT NOT NULL,
    type           TEXT NOT NULL DEFAULT 'chat',
    description    TEXT NOT NULL DEFAULT '',
    status         TEXT NOT NULL DEFAULT 'enabled'
                   CHECK (status IN ('enabled', 'disabled', 'inactive')),
    base_url       TEXT,
    upstream_model TEXT,
    auth_type      TEXT NOT NULL DEFAULT 'api_key',
    key_usage_mode TEXT NOT NULL DEFAULT 'single',
    context_window INTEGER,
    max_tokens     INTEGER,
    supports_vision BOOLEAN NOT NULL DEFAULT 0,
    supports_tools  BOOLEAN NOT NULL DEFAULT 0,
    input_price    REAL,
    output_price   REAL,
    rpm_limit      INTEGER,
    tpm_limit      INTEGER,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    UNIQUE (provider, model_id)
);

-- Upstream keys: many per provider, or per catalog model (exactly one owner).
CREATE TABLE provider_keys (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    provider_id   INTEGER REFERENCES providers(id) ON DELETE CASCADE,
    llm_model_id  INTEGER REFERENCES llm_models(id) ON DELETE CASCADE,
    label         TEXT NOT NULL DEFAULT '',
    secret        TEXT NOT NULL,
    hint          TEXT NOT NULL,
    status        TEXT NOT NULL DEFAULT 'enabled'
                  CHECK (status IN ('enabled', 'disabled', 'cooling')),
    weight        INTEGER NOT NULL DEFAULT 1,
    cooling_until INTEGER,
    last_error    TEXT,
    last_error_at INTEGER,
    last_used_at  INTEGER,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    CHECK ((provider_id IS NULL) <> (llm_model_id IS NULL))
);
CREATE INDEX provider_keys_provider ON provider_keys (provider_id);
CREATE INDEX provider_keys_model ON provider_keys (llm_model_id);

CREATE TABLE app_mappings (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    app_name       TEXT NOT NULL UNIQUE,
    description    TEXT NOT NULL DEFAULT '',
    enabled        BOOLEAN NOT NULL DEFAULT 1,
    routing_rule   TEXT NOT NULL DEFAULT 'priority',
    targets        TEXT NOT NULL DEFAULT '[]',
    fallback_chain TEXT NOT NULL DEFAULT '[]',
    retry_config   TEXT NOT NULL DEFAULT '{}',
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
);

-- Who changed what, when. `details` names changed fields and shows key
-- hints only: never a secret value.
CREATE TABLE audit_log (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      INTEGER NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    target  TEXT NOT NULL,
    details TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_at ON audit_log (at);
