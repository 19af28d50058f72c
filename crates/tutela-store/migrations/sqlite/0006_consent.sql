-- Consent records (proof of consent, GDPR art. 7(1)). Append-only: a change of mind or a withdrawal
-- is a new row, never an update (a trigger refuses updates); rows go only when their deadline
-- (`delete_after`, from the register's rule for category `consent_record`) has passed.
-- A record identifies no one: `consent_id` is random. Times are unix seconds (UTC).
-- Choice columns: 1 granted, 0 refused, NULL not answered in this record. `record_id` is a random
-- UUID (unique with overwhelming probability); it has no index of its own: nothing looks a record
-- up by it, and a random index would cost every insert.
CREATE TABLE consent_records (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    record_id     TEXT    NOT NULL,
    consent_id    TEXT    NOT NULL,
    recorded_at   BIGINT  NOT NULL,
    site          TEXT,
    revision      TEXT    NOT NULL,
    register_hash TEXT    NOT NULL,
    method        TEXT    NOT NULL CHECK (method IN ('banner', 'api', 'gpc')),
    source        TEXT    NOT NULL,
    gpc           BIGINT  NOT NULL,
    language      TEXT,
    functional    BIGINT,
    analytics     BIGINT,
    targeting     BIGINT,
    services      TEXT    NOT NULL,
    purpose       TEXT    NOT NULL,
    category      TEXT    NOT NULL,
    delete_after  BIGINT  NOT NULL,
    CHECK (gpc IN (0, 1) AND delete_after > recorded_at)
);
CREATE INDEX consent_records_by_consent ON consent_records (consent_id, seq);
CREATE INDEX consent_records_by_time ON consent_records (recorded_at, seq);
CREATE INDEX consent_records_by_deadline ON consent_records (delete_after);

CREATE TRIGGER consent_records_append_only BEFORE UPDATE ON consent_records
BEGIN
    SELECT RAISE(ABORT, 'consent records are append-only');
END;
