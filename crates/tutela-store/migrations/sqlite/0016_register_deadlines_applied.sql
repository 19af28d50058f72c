-- When the deadlines of stored records were brought in line with a register version (unix
-- seconds; NULL: not yet). Deadlines are stamped when a record is written; when the register
-- changes, `tutela serve` (and `tutela retention run`) recompute the deadlines of records whose
-- purpose and category got a different rule, keep the earlier of the old and new deadline, and
-- then set this column. Versions recorded before this migration stay NULL: the first start after
-- the upgrade recomputes every record once (which also repairs register changes made before).
ALTER TABLE register_versions ADD COLUMN deadlines_applied_at BIGINT;
