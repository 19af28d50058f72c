-- Analytics events in chunks (issue 4's ingest targets). One row holds the events of one writer
-- batch for one (site, day), encoded compactly (`tutela-store/src/event_chunk.rs`: each chunk's
-- strings once, then each event's fields), instead of one row and two index entries per event:
-- a commit of 200 hits writes one row. `visitors` is the chunk's sorted distinct pseudonyms
-- (8 bytes each), so the rights hooks find a visitor's chunks without decoding the others.
-- Retention still deletes whole days through (site_id, day). Rows of `analytics_events` written
-- before this migration stay readable: every read, erasure and purge covers both tables.
CREATE TABLE analytics_event_chunks (
    id       BIGSERIAL PRIMARY KEY,
    site_id  BIGINT NOT NULL,
    day      BIGINT NOT NULL,
    events   BIGINT NOT NULL,
    visitors BYTEA  NOT NULL,
    data     BYTEA  NOT NULL
);
CREATE INDEX analytics_event_chunks_day ON analytics_event_chunks (site_id, day);
-- The rights hooks find a visitor's days here (one entry per visitor and day, not per event),
-- then read the visitor lists of those days' chunks only, never every chunk of the site.
CREATE INDEX analytics_visitor_days_visitor ON analytics_visitor_days (site_id, visitor);
