-- PostgreSQL only: the vault's references to vault_subjects are checked once per statement
-- instead of once per row.
--
-- A foreign key checks every inserted child row and every deleted subject with its own query
-- (an RI trigger running an SPI plan): ~6 µs per row, so 1.1M checks when writing 1M records
-- for 100k subjects, and three per subject (records, identifiers, events) when the retention
-- purge shreds 100k subjects (4.5 s of a 1M-record purge, measured). The constraints are
-- replaced by statement-level triggers over transition tables that check the same invariant
-- with one set-based query per statement:
--
-- * inserting identifiers, records or events locks the subjects they name FOR KEY SHARE (as
--   the foreign key's check does, so a concurrent deletion of one of them waits for this
--   transaction, and this one waits for a concurrent deletion) and fails if any is missing;
-- * deleting subjects fails if any identifier, record or event still names one of them. The
--   check runs after the statement, with a new snapshot (READ COMMITTED, Tutela's isolation
--   level), so it also sees children inserted by a transaction that committed while this one
--   waited for its lock on the subject row;
-- * a child's subject_id and a subject's id never change (no code updates them): updating
--   them is refused by a row trigger whose WHEN clause costs nothing on other updates.
--
-- Errors carry SQLSTATE 23503 (foreign_key_violation), as before.

ALTER TABLE vault_identifiers DROP CONSTRAINT vault_identifiers_subject_id_fkey;
ALTER TABLE vault_records DROP CONSTRAINT vault_records_subject_id_fkey;
ALTER TABLE vault_events DROP CONSTRAINT vault_events_subject_id_fkey;

CREATE FUNCTION vault_subject_refs_insert_check() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    wanted bigint;
    locked bigint;
BEGIN
    SELECT count(DISTINCT subject_id) INTO wanted FROM new_rows;
    IF wanted = 0 THEN
        RETURN NULL;
    END IF;
    PERFORM 1 FROM vault_subjects s
        WHERE s.id IN (SELECT subject_id FROM new_rows)
        FOR KEY SHARE OF s;
    GET DIAGNOSTICS locked = ROW_COUNT;
    IF locked <> wanted THEN
        RAISE EXCEPTION USING ERRCODE = 'foreign_key_violation',
            MESSAGE = format('insert into %s names a subject that does not exist', TG_TABLE_NAME);
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER vault_identifiers_subject_ref AFTER INSERT ON vault_identifiers
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION vault_subject_refs_insert_check();
CREATE TRIGGER vault_records_subject_ref AFTER INSERT ON vault_records
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION vault_subject_refs_insert_check();
CREATE TRIGGER vault_events_subject_ref AFTER INSERT ON vault_events
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION vault_subject_refs_insert_check();

CREATE FUNCTION vault_subjects_delete_check() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM old_rows o WHERE
            EXISTS (SELECT 1 FROM vault_records r WHERE r.subject_id = o.id)
            OR EXISTS (SELECT 1 FROM vault_identifiers i WHERE i.subject_id = o.id)
            OR EXISTS (SELECT 1 FROM vault_events e WHERE e.subject_id = o.id)) THEN
        RAISE EXCEPTION USING ERRCODE = 'foreign_key_violation',
            MESSAGE = 'a deleted subject still has identifiers, records or events';
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER vault_subjects_delete_check AFTER DELETE ON vault_subjects
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION vault_subjects_delete_check();

CREATE FUNCTION vault_subject_ref_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'foreign_key_violation',
        MESSAGE = format('%s: a subject reference never changes', TG_TABLE_NAME);
END;
$$;

CREATE TRIGGER vault_subjects_id_immutable BEFORE UPDATE ON vault_subjects
    FOR EACH ROW WHEN (OLD.id IS DISTINCT FROM NEW.id)
    EXECUTE FUNCTION vault_subject_ref_immutable();
CREATE TRIGGER vault_identifiers_subject_immutable BEFORE UPDATE ON vault_identifiers
    FOR EACH ROW WHEN (OLD.subject_id IS DISTINCT FROM NEW.subject_id)
    EXECUTE FUNCTION vault_subject_ref_immutable();
CREATE TRIGGER vault_records_subject_immutable BEFORE UPDATE ON vault_records
    FOR EACH ROW WHEN (OLD.subject_id IS DISTINCT FROM NEW.subject_id)
    EXECUTE FUNCTION vault_subject_ref_immutable();
CREATE TRIGGER vault_events_subject_immutable BEFORE UPDATE ON vault_events
    FOR EACH ROW WHEN (OLD.subject_id IS DISTINCT FROM NEW.subject_id)
    EXECUTE FUNCTION vault_subject_ref_immutable();

-- TRUNCATE of vault_subjects alone (the foreign keys refused it) is refused too.
CREATE FUNCTION vault_subjects_no_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM vault_records) OR EXISTS (SELECT 1 FROM vault_identifiers)
            OR EXISTS (SELECT 1 FROM vault_events) THEN
        RAISE EXCEPTION USING ERRCODE = 'foreign_key_violation',
            MESSAGE = 'vault_subjects cannot be truncated while other vault tables hold rows';
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER vault_subjects_no_truncate AFTER TRUNCATE ON vault_subjects
    FOR EACH STATEMENT EXECUTE FUNCTION vault_subjects_no_truncate();
