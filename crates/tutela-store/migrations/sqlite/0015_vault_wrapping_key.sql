-- The master key that wraps new subject keys, as the database knows it. A process that still
-- holds an older master key (a node started before `tutela keys rotate`) must not insert a
-- subject wrapped under it: rotation removes the old key from the key file once no subject key
-- is wrapped by it any more, and a subject committed under it after that would be unreadable.
-- So the database refuses it, in the writer's own transaction, whatever the binary's version:
--
-- * `current_key_id` is NULL until a Tutela node starts with this migration applied (it then
--   records its key file's master key) or until the first rotation; while NULL nothing is
--   refused;
-- * `tutela keys rotate` sets it to the new key before re-wrapping; from its commit on, an
--   insert of a subject (or a re-wrap) under any other key fails. SQLite writers are
--   serialised, so a writer either committed before the switch (and the re-wrap that follows
--   finds its subjects) or sees the new key.
--
-- The message is matched by `StoreError::is_stale_master_key`: keep them in step.
CREATE TABLE vault_wrapping_key (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    current_key_id  TEXT,
    changed_at      BIGINT
);
INSERT INTO vault_wrapping_key (id, current_key_id, changed_at) VALUES (1, NULL, NULL);

CREATE TRIGGER vault_subjects_wrapping_key_insert BEFORE INSERT ON vault_subjects
WHEN EXISTS (SELECT 1 FROM vault_wrapping_key
             WHERE id = 1 AND current_key_id IS NOT NULL AND current_key_id <> NEW.key_id)
BEGIN
    SELECT RAISE(ABORT, 'tutela: stale master key: the master key was rotated and this process still wraps subject keys with the old one');
END;

CREATE TRIGGER vault_subjects_wrapping_key_update BEFORE UPDATE OF key_id ON vault_subjects
WHEN EXISTS (SELECT 1 FROM vault_wrapping_key
             WHERE id = 1 AND current_key_id IS NOT NULL AND current_key_id <> NEW.key_id)
BEGIN
    SELECT RAISE(ABORT, 'tutela: stale master key: the master key was rotated and this process still wraps subject keys with the old one');
END;
