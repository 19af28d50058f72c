-- Every new visitor-day was a random insert into two B-trees: the primary key (site_id, day,
-- visitor) and this index (site_id, visitor), added in 0010 for the rights hooks. On SQLite each
-- of those inserts dirties its own leaf page, written whole to the WAL at every commit: with the
-- index, about half the pages of an analytics commit. The rights hooks now find a visitor's days
-- by probing the primary key for each day that has data (`analytics_hourly`), about 180 probes
-- for six months of retention, instead of reading this index.
DROP INDEX analytics_visitor_days_visitor;
