-- Data-subject rights requests (issue 6). No column holds an identifier, an e-mail address or
-- free text in clear: the requester's identifier and contact are sealed (XChaCha20-Poly1305
-- under the rights key), and found again through a keyed blind index (HMAC) of the normalised
-- identifier. Times are unix seconds (UTC).
CREATE TABLE rights_requests (
    id                TEXT    PRIMARY KEY,   -- opaque random id
    kind              TEXT    NOT NULL,      -- access | erasure | … (tutela_domain::rights::RightKind)
    state             TEXT    NOT NULL,      -- received | awaiting_verification | … (RequestState)
    channel           TEXT    NOT NULL,      -- portal | api | email | post
    lang              TEXT    NOT NULL,
    requester_index   BLOB    NOT NULL,      -- HMAC of the normalised identifier
    requester_sealed  BLOB    NOT NULL,      -- sealed JSON: identifier, contact e-mail
    open_slot         TEXT    UNIQUE,        -- "<index hex>:<kind>" while open, NULL after: one open request per person and right
    repeats           BIGINT  NOT NULL DEFAULT 0,  -- repeated requests merged into this one
    received_at       BIGINT  NOT NULL,
    due_at            BIGINT  NOT NULL,
    original_due_at   BIGINT  NOT NULL,
    extended_until    BIGINT,
    extension_reasons TEXT,
    verified_at       BIGINT,
    verification      TEXT,                  -- email_code | email_link | platform | dpo
    replied_at        BIGINT,
    purge_after       BIGINT,                -- reply + rights.request_records_kept
    rejection_ground  TEXT,
    rejection_reasons TEXT,
    updated_at        BIGINT  NOT NULL
);
CREATE INDEX rights_requests_due ON rights_requests (due_at) WHERE open_slot IS NOT NULL;
CREATE INDEX rights_requests_purge ON rights_requests (purge_after) WHERE purge_after IS NOT NULL;
CREATE INDEX rights_requests_requester ON rights_requests (requester_index);

-- What the requester wrote (sealed), one row per submission: merged repeats add a row.
CREATE TABLE rights_request_messages (
    request_id  TEXT    NOT NULL REFERENCES rights_requests (id) ON DELETE CASCADE,
    seq         BIGINT  NOT NULL,
    channel     TEXT    NOT NULL,
    received_at BIGINT  NOT NULL,
    sealed      BLOB    NOT NULL,
    PRIMARY KEY (request_id, seq)
);

-- History of the request's life (no personal data: event names, actors, dates).
CREATE TABLE rights_request_history (
    request_id  TEXT    NOT NULL REFERENCES rights_requests (id) ON DELETE CASCADE,
    seq         BIGINT  NOT NULL,
    at          BIGINT  NOT NULL,
    event       TEXT    NOT NULL,
    state       TEXT    NOT NULL,
    actor       TEXT    NOT NULL,
    PRIMARY KEY (request_id, seq)
);

-- Execution steps, one per (request, source, action): resumable and idempotent.
CREATE TABLE rights_request_steps (
    request_id      TEXT    NOT NULL REFERENCES rights_requests (id) ON DELETE CASCADE,
    source          TEXT    NOT NULL,      -- vault | analytics | consent | sql:<name> | webhook:<name>
    action          TEXT    NOT NULL,      -- access | erase | rectify | restrict | notify …
    status          TEXT    NOT NULL,      -- pending | running | done | failed
    attempts        BIGINT  NOT NULL DEFAULT 0,
    next_attempt_at BIGINT  NOT NULL,
    lease_until     BIGINT,
    last_error      TEXT,                  -- never personal data
    outcome         TEXT,                  -- JSON summary (counts, kept-because), never personal data
    result_sealed   BLOB  ,                  -- what an access step found (sealed), for the response package
    created_at      BIGINT  NOT NULL,
    finished_at     BIGINT,
    PRIMARY KEY (request_id, source, action)
);
CREATE INDEX rights_request_steps_due ON rights_request_steps (status, next_attempt_at);

-- Identity-verification challenges: only hashes of the code and of the link token are kept.
CREATE TABLE rights_challenges (
    id           TEXT    PRIMARY KEY,
    request_id   TEXT    NOT NULL REFERENCES rights_requests (id) ON DELETE CASCADE,
    purpose      TEXT    NOT NULL,      -- identity (verify the request) | download (fresh check before a package download)
    code_hash    BLOB    NOT NULL,
    link_hash    BLOB    NOT NULL UNIQUE,
    attempts     BIGINT  NOT NULL DEFAULT 0,
    max_attempts BIGINT  NOT NULL,
    created_at   BIGINT  NOT NULL,
    expires_at   BIGINT  NOT NULL,
    consumed_at  BIGINT
);
CREATE INDEX rights_challenges_request ON rights_challenges (request_id);

-- Response packages (zip: JSON, CSV, HTML report), sealed, downloadable through an expiring
-- link after a fresh identity check. Only a hash of the link token is kept.
CREATE TABLE rights_packages (
    id           TEXT    PRIMARY KEY,
    request_id   TEXT    NOT NULL REFERENCES rights_requests (id) ON DELETE CASCADE,
    token_hash   BLOB    NOT NULL UNIQUE,
    sealed       BLOB    NOT NULL,
    created_at   BIGINT  NOT NULL,
    expires_at   BIGINT  NOT NULL,
    downloads    BIGINT  NOT NULL DEFAULT 0
);
CREATE INDEX rights_packages_request ON rights_packages (request_id);
