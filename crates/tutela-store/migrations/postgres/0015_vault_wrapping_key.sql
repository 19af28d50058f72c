-- The master key that wraps new subject keys, as the database knows it. A process that still
-- holds an older master key (a node started before `tutela keys rotate`, on this machine or on
-- another node with its own copy of the key file) must not insert a subject wrapped under it:
-- rotation removes the old key from the key file once no subject key is wrapped by it any more,
-- and a subject committed under it after that would be unreadable. So the database refuses it,
-- in the writer's own transaction, whatever the binary's version:
--
-- * `current_key_id` is NULL until a Tutela node starts with this migration applied (it then
--   records its key file's master key) or until the first rotation; while NULL nothing is
--   refused;
-- * `tutela keys rotate` sets it to the new key before re-wrapping, holding the table in
--   EXCLUSIVE mode. Every statement that inserts subjects (or re-wraps them) runs the check
--   below once, after its rows are in: it takes the table in ROW SHARE mode (which conflicts
--   with the switch's EXCLUSIVE lock) and then reads the key with a fresh snapshot (READ
--   COMMITTED, Tutela's isolation level). So a writer either holds its lock before the switch —
--   the switch then waits for it to commit, and the re-wrap that follows finds its subjects —
--   or reads the new key and fails. The locks are table locks (no row is locked or written), so
--   concurrent writers do not contend with each other, and a switch waiting for its lock is not
--   starved by writers arriving after it (they queue behind it).
--
-- Errors carry SQLSTATE TUK01, matched by `StoreError::is_stale_master_key`.
CREATE TABLE vault_wrapping_key (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    current_key_id  TEXT,
    changed_at      BIGINT
);
INSERT INTO vault_wrapping_key (id, current_key_id, changed_at) VALUES (1, NULL, NULL);

CREATE FUNCTION vault_subjects_wrapping_key_check() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    current_key text;
    stale text;
BEGIN
    LOCK TABLE vault_wrapping_key IN ROW SHARE MODE;
    SELECT current_key_id INTO current_key FROM vault_wrapping_key WHERE id = 1;
    IF current_key IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT key_id INTO stale FROM new_rows WHERE key_id <> current_key LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION USING
            ERRCODE = 'TUK01',
            MESSAGE = format('tutela: stale master key: the master key was rotated to %s and this '
                             'process still wraps subject keys with %s', current_key, stale);
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER vault_subjects_wrapping_key_insert AFTER INSERT ON vault_subjects
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION vault_subjects_wrapping_key_check();
CREATE TRIGGER vault_subjects_wrapping_key_update AFTER UPDATE ON vault_subjects
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION vault_subjects_wrapping_key_check();
