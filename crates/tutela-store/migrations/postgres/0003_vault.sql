-- Personal-data vault (issue 3): subjects with their wrapped keys, blind-indexed identifiers,
-- sealed records with their deadlines, anchor events, and the hash-chained audit log.
-- No column holds a plaintext identifier or payload: identifiers are HMAC blind indexes,
-- payloads are XChaCha20-Poly1305 ciphertexts under a per-subject key.
CREATE TABLE vault_subjects (
    id           TEXT    PRIMARY KEY,   -- opaque random id (32 hex digits)
    wrapped_key  BYTEA   NOT NULL,      -- the subject's data key, wrapped by a master key
    key_id       TEXT    NOT NULL,      -- id of the master key that wrapped it (rotation)
    created_at   BIGINT  NOT NULL
);
CREATE INDEX vault_subjects_key_id ON vault_subjects (key_id);

CREATE TABLE vault_identifiers (
    blind_index  BYTEA   PRIMARY KEY,   -- HMAC(kind, normalised identifier)
    subject_id   TEXT    NOT NULL REFERENCES vault_subjects (id),
    kind         TEXT    NOT NULL,
    created_at   BIGINT  NOT NULL
);
CREATE INDEX vault_identifiers_subject ON vault_identifiers (subject_id);

CREATE TABLE vault_records (
    id           BIGSERIAL PRIMARY KEY,
    subject_id   TEXT    NOT NULL REFERENCES vault_subjects (id),
    purpose      TEXT    NOT NULL,
    category     TEXT    NOT NULL,
    payload      BYTEA   NOT NULL,      -- sealed JSON
    source       TEXT    NOT NULL,
    collected_at BIGINT  NOT NULL,
    anchor_at    BIGINT,                -- when the retention clock started (NULL: not yet)
    deadline     BIGINT,                -- deletion deadline (NULL: waiting for an anchor event)
    legal_hold   BOOLEAN NOT NULL DEFAULT FALSE,
    restricted   BOOLEAN NOT NULL DEFAULT FALSE,
    updated_at   BIGINT  NOT NULL
);
CREATE INDEX vault_records_subject ON vault_records (subject_id, purpose);
CREATE INDEX vault_records_deadline ON vault_records (deadline) WHERE deadline IS NOT NULL;

-- Anchor events reported for a subject and purpose (contract_ended, last_contact, …), so that
-- records written after the event get their deadline at once.
CREATE TABLE vault_events (
    subject_id   TEXT    NOT NULL REFERENCES vault_subjects (id),
    purpose      TEXT    NOT NULL,
    event        TEXT    NOT NULL,
    at           BIGINT  NOT NULL,
    PRIMARY KEY (subject_id, purpose, event)
);

-- The audit log: append-only, hash-chained (see tutela-crypto's audit module). Entries hold a
-- keyed commitment to the subject, never the subject's identity.
CREATE TABLE audit_log (
    seq                 BIGINT  PRIMARY KEY,
    time_ms             BIGINT  NOT NULL,
    actor               TEXT    NOT NULL,
    action              TEXT    NOT NULL,
    purpose             TEXT    NOT NULL,
    subject_commitment  BYTEA,
    details             TEXT    NOT NULL,
    hash                BYTEA   NOT NULL
);
CREATE INDEX audit_log_subject ON audit_log (subject_commitment)
    WHERE subject_commitment IS NOT NULL;

-- The chain head: sequence and hash of the newest entry. Appends lock this row, which
-- serialises them across nodes; verification compares it with the last entry to notice a
-- truncated tail.
CREATE TABLE audit_head (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    seq   BIGINT  NOT NULL,
    hash  BYTEA   NOT NULL
);
INSERT INTO audit_head (id, seq, hash)
    VALUES (1, 0, decode('0000000000000000000000000000000000000000000000000000000000000000', 'hex'));

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only';
END;
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
