-- Foundation: register versions and job leases. Times are unix seconds (UTC).
CREATE TABLE register_versions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    hash        TEXT    NOT NULL,
    revision    TEXT,
    content     TEXT    NOT NULL,
    recorded_at BIGINT  NOT NULL
);

CREATE TABLE job_leases (
    name        TEXT    PRIMARY KEY,
    holder      TEXT    NOT NULL,
    expires_at  BIGINT  NOT NULL
);
