-- Deferred visitor-days (SQLite only: one writer per database file). Each new visitor-day was a
-- random insert into the primary key (site_id, day, visitor) of `analytics_visitor_days` inside
-- every single-hit commit: about ten leaf pages of WAL per 39-hit commit. The SQLite writer now
-- keeps a batch's visitor-days in memory after its commit and inserts them sorted about once a
-- second. `chunk_id` is the last `analytics_event_chunks` id whose events' visitor-days are all
-- stored; it moves in the same transaction as that insert. Chunks past it are read by the rights
-- hooks (their visitor lists) and, after a crash, their visitors are inserted again when the
-- writer opens. The writer never gives a new chunk an id at or below `chunk_id`.
CREATE TABLE analytics_visitor_watermark (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    chunk_id BIGINT  NOT NULL
);
-- Every chunk written before this migration has its visitor-days stored.
INSERT INTO analytics_visitor_watermark (id, chunk_id)
    SELECT 1, COALESCE(MAX(id), 0) FROM analytics_event_chunks;
