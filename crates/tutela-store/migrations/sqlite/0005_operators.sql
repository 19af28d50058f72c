-- Console operators (issue 5): accounts, second factor, sessions, setup links, sign-in events.
-- Secrets are stored only as hashes (passwords: Argon2id PHC strings; recovery codes, session ids
-- and setup tokens: SHA-256). Times are unix seconds.
CREATE TABLE operators (
    id                  TEXT    PRIMARY KEY,
    login               TEXT    NOT NULL UNIQUE,
    display_name        TEXT    NOT NULL,
    role                TEXT    NOT NULL,
    password_hash       TEXT,
    totp_secret         BLOB,
    totp_last_step      BIGINT,
    language            TEXT,
    created_at          BIGINT  NOT NULL,
    password_changed_at BIGINT,
    disabled_at         BIGINT
);

CREATE TABLE operator_recovery_codes (
    operator_id TEXT    NOT NULL REFERENCES operators (id) ON DELETE CASCADE,
    code_hash   BLOB    NOT NULL,
    used_at     BIGINT,
    PRIMARY KEY (operator_id, code_hash)
);

CREATE TABLE operator_sessions (
    id_hash          BLOB    PRIMARY KEY,
    operator_id      TEXT    NOT NULL REFERENCES operators (id) ON DELETE CASCADE,
    stage            TEXT    NOT NULL,
    pending_totp     BLOB,
    factor_failures  BIGINT  NOT NULL DEFAULT 0,
    created_at       BIGINT  NOT NULL,
    last_seen_at     BIGINT  NOT NULL,
    expires_at       BIGINT  NOT NULL
);
CREATE INDEX operator_sessions_operator ON operator_sessions (operator_id);

CREATE TABLE operator_setup_tokens (
    token_hash  BLOB    PRIMARY KEY,
    operator_id TEXT    REFERENCES operators (id) ON DELETE CASCADE,
    created_at  BIGINT  NOT NULL,
    expires_at  BIGINT  NOT NULL,
    used_at     BIGINT
);

CREATE TABLE operator_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          BIGINT  NOT NULL,
    operator_id TEXT,
    event       TEXT    NOT NULL,
    detail      TEXT
);
CREATE INDEX operator_events_at ON operator_events (at);
