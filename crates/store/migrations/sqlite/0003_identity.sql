-- llm-link storage, schema 3 (SQLite): users, sessions, virtual keys and
-- budget spend.
--
-- * `users.password_hash` is argon2id (PHC string); passwords are never
--   stored or logged.
-- * `virtual_keys.key_hash` is the hex HMAC-SHA256 of the key under the
--   install's token-hash key (settings `token_hash_key`, encrypted like every
--   other secret); `hint` is the masked form ("llk-…abcd"). A deleted key is
--   revoked (`revoked_at`), so usage rows and the audit log keep its name.
-- * `models` is a JSON array of the model names a key may call, NULL: any.
-- * Budgets are an amount in the catalog's currency per period
--   (daily, weekly, monthly or total); `budget_spend` holds what each key and
--   user spent per period, in integer micro-units, so a restart keeps it.

CREATE TABLE users (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    username        TEXT NOT NULL UNIQUE,
    password_hash   TEXT NOT NULL,
    role            TEXT NOT NULL CHECK (role IN ('admin', 'member', 'viewer')),
    disabled        BOOLEAN NOT NULL DEFAULT 0,
    rpm             INTEGER,
    tpm             INTEGER,
    max_concurrency INTEGER,
    budget_amount   REAL,
    budget_period   TEXT CHECK (budget_period IN ('daily', 'weekly', 'monthly', 'total')),
    failed_logins   INTEGER NOT NULL DEFAULT 0,
    locked_until    INTEGER,
    last_login_at   INTEGER,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);

-- One row per login; a JWT names its row (`sid`), logout revokes it.
CREATE TABLE sessions (
    id         TEXT PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE virtual_keys (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    name            TEXT NOT NULL,
    user_id         INTEGER REFERENCES users(id) ON DELETE CASCADE,
    key_hash        TEXT NOT NULL UNIQUE,
    hint            TEXT NOT NULL,
    models          TEXT,
    expires_at      INTEGER,
    rpm             INTEGER,
    tpm             INTEGER,
    max_concurrency INTEGER,
    budget_amount   REAL,
    budget_period   TEXT CHECK (budget_period IN ('daily', 'weekly', 'monthly', 'total')),
    revoked_at      INTEGER,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX virtual_keys_user ON virtual_keys (user_id);

-- `scope` is `key:<id>` or `user:<id>`; `period_start` Unix ms (0 for total).
CREATE TABLE budget_spend (
    scope        TEXT NOT NULL,
    period_start INTEGER NOT NULL,
    spent        INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (scope, period_start)
);

ALTER TABLE usage_records ADD COLUMN user_id INTEGER;
ALTER TABLE usage_records ADD COLUMN virtual_key_id INTEGER;
-- Partial: a report filters by `user_id = $n` / `virtual_key_id = $n`, which
-- implies IS NOT NULL, so both engines use these indexes for it; a row with
-- no user or no virtual key (a static key, an open gateway) costs no index
-- entry on the insert path.
CREATE INDEX usage_records_user_ts ON usage_records (user_id, ts) WHERE user_id IS NOT NULL;
CREATE INDEX usage_records_vkey_ts ON usage_records (virtual_key_id, ts) WHERE virtual_key_id IS NOT NULL;
