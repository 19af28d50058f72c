-- Web analytics (issue 4). Everything here is already minimised at ingest: no full IP, no raw
-- user agent, no raw cookie value or user id. `day` is the site-local date as YYYYMMDD so that
-- retention deletes whole days; reports read the rollup tables, never the raw events.

-- Random salts of the keyed pseudonyms, per site and period. A salt row is deleted when its period
-- ends: the pseudonyms made with it can then no longer be linked to a cookie value by anyone.
CREATE TABLE analytics_salts (
    site_id      BIGINT  NOT NULL,
    kind         TEXT    NOT NULL,
    period_start BIGINT  NOT NULL,
    salt         BLOB    NOT NULL,
    PRIMARY KEY (site_id, kind, period_start)
) WITHOUT ROWID;

-- One row per action (page view, event, download, outlink, site search).
CREATE TABLE analytics_events (
    site_id         BIGINT  NOT NULL,
    day             BIGINT  NOT NULL,
    ts              BIGINT  NOT NULL,
    visitor         BIGINT  NOT NULL,
    visit_start     BIGINT  NOT NULL,
    kind            SMALLINT NOT NULL,
    url             TEXT,
    title           TEXT,
    ev_category     TEXT,
    ev_action       TEXT,
    ev_name         TEXT,
    ev_value        DOUBLE PRECISION,
    referrer        TEXT,
    ip_prefix       TEXT,
    browser         TEXT,
    browser_version TEXT,
    os              TEXT,
    os_version      TEXT,
    device          TEXT,
    resolution      TEXT
);
CREATE INDEX analytics_events_day ON analytics_events (site_id, day);
CREATE INDEX analytics_events_visitor ON analytics_events (site_id, visitor);

-- Hourly totals (site-local hour). Visits, bounces and durations are counted in the hour the
-- visit started.
CREATE TABLE analytics_hourly (
    site_id   BIGINT NOT NULL,
    day       BIGINT NOT NULL,
    hour      BIGINT NOT NULL,
    visits    BIGINT NOT NULL DEFAULT 0,
    actions   BIGINT NOT NULL DEFAULT 0,
    pageviews BIGINT NOT NULL DEFAULT 0,
    events    BIGINT NOT NULL DEFAULT 0,
    bounces   BIGINT NOT NULL DEFAULT 0,
    duration  BIGINT NOT NULL DEFAULT 0,
    -- Distinct pseudonyms first seen that day in this hour: summed over a day, the day's exact
    -- unique visitors.
    visitors  BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (site_id, day, hour)
) WITHOUT ROWID;

-- Daily counts per dimension value (page, entry, exit, browser, os, device, resolution, event…).
CREATE TABLE analytics_daily_dims (
    site_id BIGINT NOT NULL,
    day     BIGINT NOT NULL,
    dim     TEXT   NOT NULL,
    value   TEXT   NOT NULL,
    n       BIGINT NOT NULL,
    PRIMARY KEY (site_id, dim, day, value)
) WITHOUT ROWID;

-- Which pseudonyms were seen on which day: unique visitors per day and per range.
CREATE TABLE analytics_visitor_days (
    site_id BIGINT NOT NULL,
    day     BIGINT NOT NULL,
    visitor BIGINT NOT NULL,
    PRIMARY KEY (site_id, day, visitor)
) WITHOUT ROWID;

-- HyperLogLog sketches (2^14 one-byte registers) of each day's pseudonyms, one row per writer
-- node: unique visitors over a range of days are estimated by merging them (about 0.8 % error)
-- instead of counting distinct pseudonyms over millions of rows.
CREATE TABLE analytics_uniques (
    site_id   BIGINT NOT NULL,
    day       BIGINT NOT NULL,
    node      TEXT   NOT NULL,
    registers BLOB NOT NULL,
    PRIMARY KEY (site_id, day, node)
) WITHOUT ROWID;
