//! Web analytics storage: minimised events, rollups for reports, pseudonym salts, retention by
//! whole days and the rights hooks (find, export, erase one pseudonym's events).
//!
//! Everything that reaches these functions was minimised by `tutela-analytics` first: there is no
//! column for a full IP address, a raw user agent or a raw cookie value. `day` is a site-local
//! date written `YYYYMMDD`.

use std::fmt::Write as _;

use sqlx::{Any, AssertSqlSafe, Row, Transaction};

use crate::event_chunk::{self, EncodedChunk};
use crate::{Result, Store};

impl AnalyticsBatch {
    /// Every chunk to store: the pre-encoded ones, then the rows encoded.
    pub(crate) fn all_chunks(&self) -> Vec<std::borrow::Cow<'_, EncodedChunk>> {
        let mut out: Vec<std::borrow::Cow<'_, EncodedChunk>> = self
            .chunks
            .iter()
            .filter(|c| c.events > 0)
            .map(std::borrow::Cow::Borrowed)
            .collect();
        out.extend(
            event_chunk::encode_rows(&self.events)
                .into_iter()
                .map(std::borrow::Cow::Owned),
        );
        out
    }
}

/// The conflict clause of an insert into `analytics_hourly`: a batch's counts add to the hour's.
pub(crate) const HOURLY_UPSERT: &str = " ON CONFLICT (site_id, day, hour) DO UPDATE SET \
     visits = analytics_hourly.visits + excluded.visits, \
     actions = analytics_hourly.actions + excluded.actions, \
     pageviews = analytics_hourly.pageviews + excluded.pageviews, \
     events = analytics_hourly.events + excluded.events, \
     bounces = analytics_hourly.bounces + excluded.bounces, \
     duration = analytics_hourly.duration + excluded.duration, \
     visitors = analytics_hourly.visitors + excluded.visitors";

/// The local hour (0–23) of a unix time on a site: `(site_id, ts) -> hour`. On SQLite, used for
/// the visitor-days that a crash left uninserted (see [`Store::set_analytics_local_hour`]).
pub type LocalHour = std::sync::Arc<dyn Fn(i64, i64) -> i64 + Send + Sync>;

/// What kind of action an event is.
pub mod kind {
    pub const PAGEVIEW: i16 = 1;
    pub const EVENT: i16 = 2;
    pub const DOWNLOAD: i16 = 3;
    pub const OUTLINK: i16 = 4;
    pub const SEARCH: i16 = 5;

    /// The name used in exports.
    pub fn name(kind: i16) -> &'static str {
        match kind {
            PAGEVIEW => "pageview",
            EVENT => "event",
            DOWNLOAD => "download",
            OUTLINK => "outlink",
            SEARCH => "search",
            _ => "other",
        }
    }
}

/// One stored action, already minimised.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EventRow {
    pub site_id: i64,
    /// Site-local date, `YYYYMMDD`.
    pub day: i64,
    /// Unix seconds.
    pub ts: i64,
    /// Keyed pseudonym of the visitor (never the cookie value itself).
    pub visitor: i64,
    /// When the visit this action belongs to started (unix seconds).
    pub visit_start: i64,
    pub kind: i16,
    pub url: Option<String>,
    pub title: Option<String>,
    pub ev_category: Option<String>,
    pub ev_action: Option<String>,
    pub ev_name: Option<String>,
    pub ev_value: Option<f64>,
    pub referrer: Option<String>,
    pub ip_prefix: Option<String>,
    pub browser: Option<String>,
    pub browser_version: Option<String>,
    pub os: Option<String>,
    pub os_version: Option<String>,
    pub device: Option<String>,
    pub resolution: Option<String>,
}

/// Increments of the hourly totals.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HourlyDelta {
    pub site_id: i64,
    pub day: i64,
    pub hour: i64,
    pub visits: i64,
    pub actions: i64,
    pub pageviews: i64,
    pub events: i64,
    pub bounces: i64,
    pub duration: i64,
    pub visitors: i64,
}

/// An increment (or decrement) of a daily dimension count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DimDelta {
    pub site_id: i64,
    pub day: i64,
    pub dim: &'static str,
    pub value: String,
    pub n: i64,
}

/// A batch for [`Store::analytics_write_batch`]: written in one transaction.
#[derive(Clone, Debug, Default)]
pub struct AnalyticsBatch {
    /// Events as rows (encoded into one chunk per site and day when written).
    pub events: Vec<EventRow>,
    /// Events already encoded by the writer (see [`crate::event_chunk`]).
    pub chunks: Vec<EncodedChunk>,
    pub hourly: Vec<HourlyDelta>,
    pub dims: Vec<DimDelta>,
    /// `(site_id, day, visitor, hour)` seen in this batch; those new for their day are counted in
    /// that hour's `visitors`. Every event's `(site_id, day, visitor)` must be here or already
    /// stored: the rights hooks find a visitor's events through these entries.
    pub visitor_days: Vec<(i64, i64, i64, i64)>,
    /// HyperLogLog sketches to store: `(site_id, day, node, registers)` (replaces the row).
    pub sketches: Vec<(i64, i64, String, Vec<u8>)>,
}

impl AnalyticsBatch {
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
            && self.chunks.iter().all(|c| c.events == 0)
            && self.hourly.is_empty()
            && self.dims.is_empty()
            && self.visitor_days.is_empty()
            && self.sketches.is_empty()
    }
}

/// Totals over a range of days.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub visits: i64,
    pub actions: i64,
    pub pageviews: i64,
    pub events: i64,
    pub bounces: i64,
    pub duration: i64,
    /// Sum of each day's distinct pseudonyms.
    pub visitors: i64,
}

/// One point of a time series: `(day, hour or -1 for a whole day, totals)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeriesPoint {
    pub day: i64,
    pub hour: Option<i64>,
    pub totals: Totals,
}

/// What a retention purge removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PurgeCounts {
    pub events: u64,
    pub rollup_rows: u64,
}

const EVENT_COLUMNS: &str = "site_id, day, ts, visitor, visit_start, kind, url, title, ev_category, \
     ev_action, ev_name, ev_value, referrer, ip_prefix, browser, browser_version, os, os_version, \
     device, resolution";
/// Rows per multi-row INSERT: few distinct statement shapes, well under both engines' limits on
/// bound parameters.
const CHUNKS: [usize; 4] = [256, 32, 4, 1];

fn values_clause(sql: &mut String, rows: usize, width: usize) {
    let mut n = 1;
    for r in 0..rows {
        sql.push_str(if r == 0 { "(" } else { ",(" });
        for c in 0..width {
            if c > 0 {
                sql.push(',');
            }
            let _ = write!(sql, "${n}");
            n += 1;
        }
        sql.push(')');
    }
}

/// Splits `len` rows into the fixed chunk sizes (largest first).
fn chunks(mut len: usize) -> Vec<usize> {
    let mut out = Vec::new();
    for size in CHUNKS {
        while len >= size {
            out.push(size);
            len -= size;
        }
    }
    out
}

impl Store {
    /// Writes one batch of minimised events and rollup increments in a single transaction (the
    /// ingestion writer's group commit). Returns when the transaction is committed.
    pub async fn analytics_write_batch(&self, batch: &AnalyticsBatch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        if self.engine() == crate::Engine::Sqlite
            && let Some(path) = self.sqlite_path().map(|p| p.to_path_buf())
        {
            return self.sqlite_write_batch(path, batch.clone()).await;
        }
        self.portable_write_batch(batch).await
    }

    /// Same as [`Store::analytics_write_batch`], taking the batch by value (no copy on SQLite).
    pub async fn analytics_write_batch_owned(&self, batch: AnalyticsBatch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        if self.engine() == crate::Engine::Sqlite
            && let Some(path) = self.sqlite_path().map(|p| p.to_path_buf())
        {
            return self.sqlite_write_batch(path, batch).await;
        }
        self.portable_write_batch(&batch).await
    }

    async fn portable_write_batch(&self, batch: &AnalyticsBatch) -> Result<()> {
        let t0 = std::time::Instant::now();
        let mut tx = self.begin_write().await?;
        // On SQLite (this path serves the conformance suite there), a batch written with its
        // visitor-days moves the watermark when no earlier chunk waits behind it.
        let sqlite_mark = if self.engine() == crate::Engine::Sqlite {
            let behind: i64 = sqlx::query(
                "SELECT CAST(EXISTS (SELECT 1 FROM analytics_event_chunks WHERE id > \
                 (SELECT COALESCE(MAX(chunk_id), 0) FROM analytics_visitor_watermark)) AS BIGINT)",
            )
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
            behind == 0
        } else {
            false
        };
        for c in batch.all_chunks() {
            insert_chunk(&mut tx, &c).await?;
        }
        let t1 = t0.elapsed();
        upsert_hourly(&mut tx, &batch.hourly).await?;
        upsert_dims(&mut tx, &batch.dims).await?;
        let t2 = t0.elapsed();
        insert_visitor_days(&mut tx, &batch.visitor_days).await?;
        if sqlite_mark {
            sqlx::query(
                "UPDATE analytics_visitor_watermark SET chunk_id = \
                 MAX(chunk_id, COALESCE((SELECT MAX(id) FROM analytics_event_chunks), 0))",
            )
            .execute(&mut *tx)
            .await?;
        }
        let t3 = t0.elapsed();
        tracing::debug!(
            events = batch.events.len()
                + batch
                    .chunks
                    .iter()
                    .map(|c| c.events as usize)
                    .sum::<usize>(),
            dims = batch.dims.len(),
            events_ms = t1.as_secs_f64() * 1e3,
            rollups_ms = (t2 - t1).as_secs_f64() * 1e3,
            visitor_days_ms = (t3 - t2).as_secs_f64() * 1e3,
            "analytics write"
        );
        for (site, day, node, regs) in &batch.sketches {
            sqlx::query(
                "INSERT INTO analytics_uniques (site_id, day, node, registers) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (site_id, day, node) DO UPDATE SET registers = excluded.registers",
            )
            .bind(*site)
            .bind(*day)
            .bind(node.as_str())
            .bind(regs.as_slice())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// SQLite: the same batch through the dedicated `rusqlite` connection (see `sqlite_fast`).
    async fn sqlite_write_batch(
        &self,
        path: std::path::PathBuf,
        batch: AnalyticsBatch,
    ) -> Result<()> {
        self.on_fast(path, move |w| Ok(w.write(&batch)?)).await
    }

    /// Runs `work` with the SQLite analytics writer (opening it on first use: that inserts the
    /// visitor-days a previous writer left behind), on this thread when the runtime allows it.
    async fn on_fast<T: Send + 'static>(
        &self,
        path: std::path::PathBuf,
        work: impl FnOnce(&crate::sqlite_fast::FastWriter) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let fast = self.fast.clone();
        let full_sync = self
            .analytics_full_sync
            .load(std::sync::atomic::Ordering::Relaxed);
        let hour = self.analytics_hour.clone();
        let work = move || -> Result<T> {
            let writer = match fast.get() {
                Some(w) => w,
                None => {
                    let w = crate::sqlite_fast::FastWriter::open(&path, full_sync, &hour.get())?;
                    let _ = fast.set(w);
                    fast.get().expect("just set")
                }
            };
            work(writer)
        };
        // On a multi-threaded runtime, write in place (the writer task owns this worker for the
        // commit) rather than handing every batch to another thread.
        if tokio::runtime::Handle::current().runtime_flavor()
            == tokio::runtime::RuntimeFlavor::MultiThread
        {
            return tokio::task::block_in_place(work);
        }
        tokio::task::spawn_blocking(work).await.map_err(|e| {
            crate::StoreError::Database(sqlx::Error::Protocol(format!("writer task: {e}")))
        })?
    }

    /// Tells the store the sites' local hour (`(site_id, ts) -> 0..=23`): on SQLite, the
    /// visitor-days that a crash left uninserted are counted in the hour of their first event.
    /// Without it, UTC. Takes effect if called before the first analytics write.
    pub fn set_analytics_local_hour(&self, hour: LocalHour) {
        *self.analytics_hour.0.lock().expect("hour slot lock") = Some(hour);
    }

    /// On SQLite, inserts the visitor-days waiting in the writer's memory now (and, if the writer
    /// was not open yet, those of the chunks a previous run left behind). The writer calls it when
    /// idle and before stopping; readers of visitor-days call it first. No-op on PostgreSQL.
    pub async fn analytics_flush_visitor_days(&self) -> Result<()> {
        let Some(path) = self.fast_path() else {
            return Ok(());
        };
        self.on_fast(path, |w| Ok(w.flush()?)).await
    }

    /// The SQLite file when the analytics writer's fast path applies.
    fn fast_path(&self) -> Option<std::path::PathBuf> {
        if self.engine() != crate::Engine::Sqlite {
            return None;
        }
        self.sqlite_path().map(|p| p.to_path_buf())
    }

    /// Before a read of `analytics_visitor_days` (or of `analytics_hourly.visitors`): on SQLite,
    /// makes every committed visitor-day visible. Cheap when nothing waits; when the writer is not
    /// open in this process, only chunks past the watermark open it.
    async fn visitor_days_current(&self) -> Result<()> {
        let Some(path) = self.fast_path() else {
            return Ok(());
        };
        if self.fast.get().is_none() {
            let behind: i64 = sqlx::query(
                "SELECT CAST(EXISTS (SELECT 1 FROM analytics_event_chunks WHERE id > \
                 (SELECT COALESCE(MAX(chunk_id), 0) FROM analytics_visitor_watermark)) AS BIGINT)",
            )
            .fetch_one(self.pool())
            .await?
            .try_get(0)?;
            if behind == 0 {
                return Ok(());
            }
        } else if !self.fast.get().is_some_and(|w| w.is_waiting()) {
            return Ok(());
        }
        self.on_fast(path, |w| Ok(w.flush()?)).await
    }

    /// Drops waiting visitor-days that `keep` refuses from the SQLite writer's memory (erasure,
    /// retention).
    async fn forget_waiting_visitor_days(
        &self,
        keep: impl Fn(&(i64, i64, i64, i64)) -> bool + Send + 'static,
    ) -> Result<()> {
        let Some(path) = self.fast_path() else {
            return Ok(());
        };
        if self.fast.get().is_none() {
            return Ok(());
        }
        self.on_fast(path, move |w| {
            w.forget_waiting(keep);
            Ok(())
        })
        .await
    }

    /// On SQLite, whether analytics commits are fsynced (`true`, the default: they survive a power
    /// cut) or only written to the WAL (`false`: they survive a crash of Tutela, not of the OS).
    /// Takes effect if called before the first analytics write.
    pub fn set_analytics_full_sync(&self, full: bool) {
        self.analytics_full_sync
            .store(full, std::sync::atomic::Ordering::Relaxed);
    }

    /// Bytes of WAL the SQLite analytics writer has written so far (0 before its first write and
    /// on PostgreSQL): for tests and measurements.
    #[doc(hidden)]
    pub fn analytics_wal_bytes(&self) -> u64 {
        self.fast.get().map_or(0, |w| w.wal_bytes())
    }

    /// Writes through the portable (`Any`) path even on SQLite: for the conformance suite.
    #[doc(hidden)]
    pub async fn analytics_write_batch_portable(&self, batch: &AnalyticsBatch) -> Result<()> {
        self.portable_write_batch(batch).await
    }

    /// The salt of `(site, kind)` for the period starting at `period_start`, creating a random
    /// one (`fresh`) if none exists yet. Several nodes racing agree on the first one written.
    pub async fn analytics_salt(
        &self,
        site_id: i64,
        kind: &str,
        period_start: i64,
        fresh: &[u8],
    ) -> Result<Vec<u8>> {
        sqlx::query(
            "INSERT INTO analytics_salts (site_id, kind, period_start, salt) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (site_id, kind, period_start) DO NOTHING",
        )
        .bind(site_id)
        .bind(kind)
        .bind(period_start)
        .bind(fresh)
        .execute(self.pool())
        .await?;
        let row = sqlx::query(
            "SELECT salt FROM analytics_salts WHERE site_id = $1 AND kind = $2 AND period_start = $3",
        )
        .bind(site_id)
        .bind(kind)
        .bind(period_start)
        .fetch_one(self.pool())
        .await?;
        Ok(row.try_get(0)?)
    }

    /// Destroys the salts of `(site, kind)` of periods before `period_start`. Returns how many.
    pub async fn analytics_destroy_salts_before(
        &self,
        site_id: i64,
        kind: &str,
        period_start: i64,
    ) -> Result<u64> {
        let r = sqlx::query(
            "DELETE FROM analytics_salts WHERE site_id = $1 AND kind = $2 AND period_start < $3",
        )
        .bind(site_id)
        .bind(kind)
        .bind(period_start)
        .execute(self.pool())
        .await?;
        Ok(r.rows_affected())
    }

    /// The period starts of the salts that still exist for `(site, kind)`.
    pub async fn analytics_salt_periods(&self, site_id: i64, kind: &str) -> Result<Vec<i64>> {
        let rows = sqlx::query(
            "SELECT period_start FROM analytics_salts WHERE site_id = $1 AND kind = $2 ORDER BY period_start",
        )
        .bind(site_id)
        .bind(kind)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|r| Ok(r.try_get::<i64, _>(0)?)).collect()
    }

    /// Totals of `site` over the days `from..=to`.
    pub async fn analytics_totals(&self, site_id: i64, from: i64, to: i64) -> Result<Totals> {
        self.visitor_days_current().await?;
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(visits), 0) AS BIGINT), CAST(COALESCE(SUM(actions), 0) AS BIGINT), CAST(COALESCE(SUM(pageviews), 0) AS BIGINT), \
             CAST(COALESCE(SUM(events), 0) AS BIGINT), CAST(COALESCE(SUM(bounces), 0) AS BIGINT), CAST(COALESCE(SUM(duration), 0) AS BIGINT), \
             CAST(COALESCE(SUM(visitors), 0) AS BIGINT) FROM analytics_hourly WHERE site_id = $1 AND day >= $2 AND day <= $3",
        )
        .bind(site_id)
        .bind(from)
        .bind(to)
        .fetch_one(self.pool())
        .await?;
        totals_from(&row, 0)
    }

    /// Time series over `from..=to`: per hour (`hourly`) or per day. Only non-empty points.
    pub async fn analytics_series(
        &self,
        site_id: i64,
        from: i64,
        to: i64,
        hourly: bool,
    ) -> Result<Vec<SeriesPoint>> {
        self.visitor_days_current().await?;
        let sql = if hourly {
            "SELECT day, hour, visits, actions, pageviews, events, bounces, duration, visitors \
             FROM analytics_hourly WHERE site_id = $1 AND day >= $2 AND day <= $3 ORDER BY day, hour"
        } else {
            "SELECT day, -1, CAST(SUM(visits) AS BIGINT), CAST(SUM(actions) AS BIGINT), \
             CAST(SUM(pageviews) AS BIGINT), CAST(SUM(events) AS BIGINT), CAST(SUM(bounces) AS BIGINT), \
             CAST(SUM(duration) AS BIGINT), CAST(SUM(visitors) AS BIGINT) FROM analytics_hourly WHERE site_id = $1 AND day >= $2 AND day <= $3 \
             GROUP BY day ORDER BY day"
        };
        let rows = sqlx::query(sql)
            .bind(site_id)
            .bind(from)
            .bind(to)
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| {
                let hour: i64 = r.try_get(1)?;
                Ok(SeriesPoint {
                    day: r.try_get(0)?,
                    hour: (hour >= 0).then_some(hour),
                    totals: totals_from(r, 2)?,
                })
            })
            .collect()
    }

    /// The `limit` most frequent values of a dimension over `from..=to`, most frequent first
    /// (ties by value).
    pub async fn analytics_top(
        &self,
        site_id: i64,
        dim: &str,
        from: i64,
        to: i64,
        limit: i64,
    ) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT value, CAST(SUM(n) AS BIGINT) AS total FROM analytics_daily_dims \
             WHERE site_id = $1 AND dim = $2 AND day >= $3 AND day <= $4 \
             GROUP BY value HAVING SUM(n) > 0 ORDER BY total DESC, value LIMIT $5",
        )
        .bind(site_id)
        .bind(dim)
        .bind(from)
        .bind(to)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    /// Distinct pseudonyms seen over `from..=to`.
    pub async fn analytics_unique_visitors(&self, site_id: i64, from: i64, to: i64) -> Result<i64> {
        self.visitor_days_current().await?;
        let row = sqlx::query(
            "SELECT COUNT(DISTINCT visitor) FROM analytics_visitor_days \
             WHERE site_id = $1 AND day >= $2 AND day <= $3",
        )
        .bind(site_id)
        .bind(from)
        .bind(to)
        .fetch_one(self.pool())
        .await?;
        Ok(row.try_get(0)?)
    }

    /// Distinct pseudonyms per day over `from..=to` (days with none are absent).
    pub async fn analytics_daily_unique_visitors(
        &self,
        site_id: i64,
        from: i64,
        to: i64,
    ) -> Result<Vec<(i64, i64)>> {
        self.visitor_days_current().await?;
        let rows = sqlx::query(
            "SELECT day, COUNT(*) FROM analytics_visitor_days \
             WHERE site_id = $1 AND day >= $2 AND day <= $3 GROUP BY day ORDER BY day",
        )
        .bind(site_id)
        .bind(from)
        .bind(to)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    /// The HyperLogLog sketches of the days `from..=to` (every node's).
    pub async fn analytics_sketches(
        &self,
        site_id: i64,
        from: i64,
        to: i64,
    ) -> Result<Vec<Vec<u8>>> {
        let rows = sqlx::query(
            "SELECT registers FROM analytics_uniques WHERE site_id = $1 AND day >= $2 AND day <= $3",
        )
        .bind(site_id)
        .bind(from)
        .bind(to)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    /// Every pseudonym seen on one day (to rebuild that day's sketch).
    pub async fn analytics_visitors_of_day(&self, site_id: i64, day: i64) -> Result<Vec<i64>> {
        self.visitor_days_current().await?;
        let rows = sqlx::query(
            "SELECT visitor FROM analytics_visitor_days WHERE site_id = $1 AND day = $2",
        )
        .bind(site_id)
        .bind(day)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    /// The days on which `visitor` was seen on a site, oldest first. Every visitor-day has an
    /// hourly row for its day (the writer counts it there), so this probes the primary key
    /// `(site_id, day, visitor)` of `analytics_visitor_days` once per day with data — about 180
    /// probes for six months of retention — rather than keeping a second index by visitor that
    /// every new visitor-day would have to update (migration 0011).
    async fn days_of_visitor<'e, E>(&self, ex: E, site_id: i64, visitor: i64) -> Result<Vec<i64>>
    where
        E: sqlx::Executor<'e, Database = Any>,
    {
        let rows = sqlx::query(
            "SELECT d.day FROM (SELECT DISTINCT day FROM analytics_hourly WHERE site_id = $1) d \
             WHERE EXISTS (SELECT 1 FROM analytics_visitor_days v \
             WHERE v.site_id = $1 AND v.day = d.day AND v.visitor = $2) ORDER BY d.day",
        )
        .bind(site_id)
        .bind(visitor)
        .fetch_all(ex)
        .await?;
        rows.iter().map(|r| Ok(r.try_get::<i64, _>(0)?)).collect()
    }

    /// On SQLite, the chunks past the visitor-day watermark (their visitor-days may still wait in
    /// the writer's memory, or a crash left them uninserted) that hold events of `visitor`:
    /// `(id, day)`. Read before the visitor's days, in the same transaction, so that a chunk is
    /// found one way or the other even if the writer moves the watermark meanwhile. Empty on
    /// PostgreSQL, whose writer inserts visitor-days with their batch.
    async fn chunks_past_watermark(
        &self,
        conn: &mut sqlx::AnyConnection,
        site_id: i64,
        visitor: i64,
    ) -> Result<Vec<(i64, i64)>> {
        if self.engine() != crate::Engine::Sqlite {
            return Ok(Vec::new());
        }
        // NOT INDEXED: a range of the rowid (about a second of chunks), not the site's every
        // chunk through the (site_id, day) index.
        let rows = sqlx::query(
            "SELECT id, day, visitors FROM analytics_event_chunks NOT INDEXED \
             WHERE id > (SELECT COALESCE(MAX(chunk_id), 0) FROM analytics_visitor_watermark) \
             AND site_id = $1",
        )
        .bind(site_id)
        .fetch_all(&mut *conn)
        .await?;
        let mut out = Vec::new();
        for r in &rows {
            let visitors: &[u8] = r.try_get(2)?;
            if event_chunk::has_visitor(visitors, visitor) {
                out.push((r.try_get(0)?, r.try_get(1)?));
            }
        }
        Ok(out)
    }

    /// Every chunk that holds events of `visitor`, `(id, day)` in id order, and the days on which
    /// `analytics_visitor_days` lists the visitor.
    async fn visitor_chunks(
        &self,
        conn: &mut sqlx::AnyConnection,
        site_id: i64,
        visitor: i64,
    ) -> Result<(Vec<(i64, i64)>, Vec<i64>)> {
        let mut chunks = self.chunks_past_watermark(conn, site_id, visitor).await?;
        let days = self.days_of_visitor(&mut *conn, site_id, visitor).await?;
        chunks.extend(
            self.chunks_of_visitor(conn, site_id, &days, visitor)
                .await?,
        );
        chunks.sort_unstable();
        chunks.dedup();
        Ok((chunks, days))
    }

    /// The chunks of the given days that hold events of `visitor`: `(id, day)`. Reads each
    /// chunk's sorted visitor list (8 bytes per distinct visitor), never the events of the others.
    async fn chunks_of_visitor(
        &self,
        conn: &mut sqlx::AnyConnection,
        site_id: i64,
        days: &[i64],
        visitor: i64,
    ) -> Result<Vec<(i64, i64)>> {
        let mut out = Vec::new();
        for &day in days {
            let rows = sqlx::query(
                "SELECT id, visitors FROM analytics_event_chunks WHERE site_id = $1 AND day = $2",
            )
            .bind(site_id)
            .bind(day)
            .fetch_all(&mut *conn)
            .await?;
            for r in &rows {
                let visitors: &[u8] = r.try_get(1)?;
                if event_chunk::has_visitor(visitors, visitor) {
                    out.push((r.try_get(0)?, day));
                }
            }
        }
        Ok(out)
    }

    /// Every stored event of one pseudonym (rights hooks: find and export), oldest first.
    pub async fn analytics_events_of(&self, site_id: i64, visitor: i64) -> Result<Vec<EventRow>> {
        // Rows written before events were chunked (migration 0010).
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {EVENT_COLUMNS} FROM analytics_events WHERE site_id = $1 AND visitor = $2 ORDER BY ts"
        )))
        .bind(site_id)
        .bind(visitor)
        .fetch_all(self.pool())
        .await?;
        let mut out = rows
            .iter()
            .map(event_from_row)
            .collect::<Result<Vec<_>>>()?;
        // One read transaction: one snapshot of the watermark, the chunks and the visitor-days.
        let mut conn = self.pool().begin().await?;
        let (chunks, _) = self.visitor_chunks(&mut conn, site_id, visitor).await?;
        for (id, day) in chunks {
            let row = sqlx::query("SELECT data FROM analytics_event_chunks WHERE id = $1")
                .bind(id)
                .fetch_one(&mut *conn)
                .await?;
            let data: &[u8] = row.try_get(0)?;
            out.extend(
                event_chunk::decode(site_id, day, data)
                    .map_err(chunk_error)?
                    .into_iter()
                    .filter(|e| e.visitor == visitor),
            );
        }
        conn.commit().await?;
        out.sort_by_key(|e| e.ts);
        Ok(out)
    }

    /// Records that a visitor objected or withdrew consent (`visitor_key`: keyed hash of the
    /// tracker's visitor id, never the id). Idempotent. Returns true when it was new.
    pub async fn analytics_add_optout(
        &self,
        site_id: i64,
        visitor_key: &[u8],
        now: i64,
    ) -> Result<bool> {
        let r = sqlx::query(
            "INSERT INTO analytics_optouts (site_id, visitor_key, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (site_id, visitor_key) DO NOTHING",
        )
        .bind(site_id)
        .bind(visitor_key)
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Every opted-out visitor key, per site.
    pub async fn analytics_optouts(&self) -> Result<Vec<(i64, Vec<u8>)>> {
        let rows = sqlx::query("SELECT site_id, visitor_key FROM analytics_optouts")
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get::<i64, _>(0)?, r.try_get::<Vec<u8>, _>(1)?)))
            .collect()
    }

    /// Erases every event of one pseudonym and its visitor-day entries (rights hook: erasure):
    /// the chunks that hold them are rewritten without them (or deleted when nothing is left).
    /// The anonymous rollup counts stay. Returns the number of events deleted.
    pub async fn analytics_erase_visitor(&self, site_id: i64, visitor: i64) -> Result<u64> {
        // Visitor-days waiting in the SQLite writer's memory are dropped before and after, so
        // that no later insert brings back what this deletes (hits of the visitor that arrive
        // while it runs may leave theirs, like hits that arrive after it).
        let forget = move |e: &(i64, i64, i64, i64)| e.0 != site_id || e.2 != visitor;
        self.forget_waiting_visitor_days(forget).await?;
        let erased = self.erase_visitor_tx(site_id, visitor).await?;
        self.forget_waiting_visitor_days(forget).await?;
        Ok(erased)
    }

    async fn erase_visitor_tx(&self, site_id: i64, visitor: i64) -> Result<u64> {
        let mut tx = self.begin_write().await?;
        let mut erased =
            sqlx::query("DELETE FROM analytics_events WHERE site_id = $1 AND visitor = $2")
                .bind(site_id)
                .bind(visitor)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        let (chunks, days) = self.visitor_chunks(&mut tx, site_id, visitor).await?;
        for (id, day) in chunks {
            let row = sqlx::query("SELECT data FROM analytics_event_chunks WHERE id = $1")
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
            let data: &[u8] = row.try_get(0)?;
            let events = event_chunk::decode(site_id, day, data).map_err(chunk_error)?;
            let before = events.len();
            let kept: Vec<EventRow> = events
                .into_iter()
                .filter(|e| e.visitor != visitor)
                .collect();
            erased += (before - kept.len()) as u64;
            match event_chunk::encode_rows(&kept).pop() {
                Some(c) => {
                    sqlx::query(
                        "UPDATE analytics_event_chunks SET events = $1, visitors = $2, data = $3 WHERE id = $4",
                    )
                    .bind(c.events)
                    .bind(c.visitors.as_slice())
                    .bind(c.data.as_slice())
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                }
                None => {
                    sqlx::query("DELETE FROM analytics_event_chunks WHERE id = $1")
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                }
            }
        }
        for day in days {
            sqlx::query(
                "DELETE FROM analytics_visitor_days WHERE site_id = $1 AND day = $2 AND visitor = $3",
            )
            .bind(site_id)
            .bind(day)
            .bind(visitor)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(erased)
    }

    /// Retention: deletes every event and rollup row of `site` on days up to and including
    /// `last_day` — whole days, through the `day` indexes.
    pub async fn analytics_purge_through(
        &self,
        site_id: i64,
        last_day: i64,
    ) -> Result<PurgeCounts> {
        let forget = move |e: &(i64, i64, i64, i64)| e.0 != site_id || e.1 > last_day;
        self.forget_waiting_visitor_days(forget).await?;
        let counts = self.purge_through_tx(site_id, last_day).await?;
        self.forget_waiting_visitor_days(forget).await?;
        Ok(counts)
    }

    async fn purge_through_tx(&self, site_id: i64, last_day: i64) -> Result<PurgeCounts> {
        let mut tx = self.begin_write().await?;
        let mut events =
            sqlx::query("DELETE FROM analytics_events WHERE day <= $1 AND site_id = $2")
                .bind(last_day)
                .bind(site_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        let in_chunks: i64 = sqlx::query(
            "SELECT CAST(COALESCE(SUM(events), 0) AS BIGINT) FROM analytics_event_chunks WHERE site_id = $1 AND day <= $2",
        )
        .bind(site_id)
        .bind(last_day)
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        sqlx::query("DELETE FROM analytics_event_chunks WHERE site_id = $1 AND day <= $2")
            .bind(site_id)
            .bind(last_day)
            .execute(&mut *tx)
            .await?;
        events += u64::try_from(in_chunks).unwrap_or(0);
        let mut rollup_rows = 0;
        for table in [
            "analytics_hourly",
            "analytics_daily_dims",
            "analytics_visitor_days",
            "analytics_uniques",
        ] {
            rollup_rows += sqlx::query(AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE site_id = $1 AND day <= $2"
            )))
            .bind(site_id)
            .bind(last_day)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        tx.commit().await?;
        Ok(PurgeCounts {
            events,
            rollup_rows,
        })
    }

    /// Every site id that still has something stored: events, rollups or pseudonym salts —
    /// also sites no longer in the configuration, so that retention and salt destruction reach
    /// them. One index seek per site and table (`MIN(site_id) WHERE site_id > last`), never a scan.
    pub async fn analytics_site_ids(&self) -> Result<Vec<i64>> {
        let mut ids = std::collections::BTreeSet::new();
        for table in [
            "analytics_events",
            "analytics_event_chunks",
            "analytics_hourly",
            "analytics_daily_dims",
            "analytics_visitor_days",
            "analytics_uniques",
            "analytics_salts",
        ] {
            let sql = format!("SELECT MIN(site_id) FROM {table} WHERE site_id > $1");
            let mut last = i64::MIN;
            loop {
                let row = sqlx::query(AssertSqlSafe(sql.clone()))
                    .bind(last)
                    .fetch_one(self.pool())
                    .await?;
                match row.try_get::<Option<i64>, _>(0)? {
                    Some(id) => {
                        ids.insert(id);
                        last = id;
                    }
                    None => break,
                }
            }
        }
        Ok(ids.into_iter().collect())
    }

    /// The number of stored events of a site (all days).
    pub async fn analytics_event_count(&self, site_id: i64) -> Result<i64> {
        let row = sqlx::query(
            "SELECT CAST((SELECT COUNT(*) FROM analytics_events WHERE site_id = $1) + \
             (SELECT COALESCE(SUM(events), 0) FROM analytics_event_chunks WHERE site_id = $2) AS BIGINT)",
        )
        .bind(site_id)
        .bind(site_id)
        .fetch_one(self.pool())
        .await?;
        Ok(row.try_get(0)?)
    }

    /// The oldest day that holds events of a site.
    pub async fn analytics_oldest_day(&self, site_id: i64) -> Result<Option<i64>> {
        let row = sqlx::query(
            "SELECT MIN(day) FROM (SELECT MIN(day) AS day FROM analytics_events WHERE site_id = $1 \
             UNION ALL SELECT MIN(day) AS day FROM analytics_event_chunks WHERE site_id = $2) AS d",
        )
        .bind(site_id)
        .bind(site_id)
        .fetch_one(self.pool())
        .await?;
        Ok(row.try_get(0)?)
    }
}

fn totals_from(row: &sqlx::any::AnyRow, at: usize) -> Result<Totals> {
    Ok(Totals {
        visits: row.try_get(at)?,
        actions: row.try_get(at + 1)?,
        pageviews: row.try_get(at + 2)?,
        events: row.try_get(at + 3)?,
        bounces: row.try_get(at + 4)?,
        duration: row.try_get(at + 5)?,
        visitors: row.try_get(at + 6)?,
    })
}

fn event_from_row(r: &sqlx::any::AnyRow) -> Result<EventRow> {
    Ok(EventRow {
        site_id: r.try_get(0)?,
        day: r.try_get(1)?,
        ts: r.try_get(2)?,
        visitor: r.try_get(3)?,
        visit_start: r.try_get(4)?,
        kind: r.try_get(5)?,
        url: r.try_get(6)?,
        title: r.try_get(7)?,
        ev_category: r.try_get(8)?,
        ev_action: r.try_get(9)?,
        ev_name: r.try_get(10)?,
        ev_value: r.try_get(11)?,
        referrer: r.try_get(12)?,
        ip_prefix: r.try_get(13)?,
        browser: r.try_get(14)?,
        browser_version: r.try_get(15)?,
        os: r.try_get(16)?,
        os_version: r.try_get(17)?,
        device: r.try_get(18)?,
        resolution: r.try_get(19)?,
    })
}

async fn insert_chunk(tx: &mut Transaction<'static, Any>, c: &EncodedChunk) -> Result<()> {
    sqlx::query(
        "INSERT INTO analytics_event_chunks (site_id, day, events, visitors, data) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(c.site_id)
    .bind(c.day)
    .bind(c.events)
    .bind(c.visitors.as_slice())
    .bind(c.data.as_slice())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn chunk_error(e: event_chunk::ChunkError) -> crate::StoreError {
    crate::StoreError::Database(sqlx::Error::Decode(Box::new(e)))
}

async fn upsert_hourly(tx: &mut Transaction<'static, Any>, rows: &[HourlyDelta]) -> Result<()> {
    let mut at = 0;
    for size in chunks(rows.len()) {
        let mut sql = String::from(
            "INSERT INTO analytics_hourly (site_id, day, hour, visits, actions, pageviews, events, \
             bounces, duration, visitors) VALUES ",
        );
        values_clause(&mut sql, size, 10);
        sql.push_str(HOURLY_UPSERT);
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for h in &rows[at..at + size] {
            q = q
                .bind(h.site_id)
                .bind(h.day)
                .bind(h.hour)
                .bind(h.visits)
                .bind(h.actions)
                .bind(h.pageviews)
                .bind(h.events)
                .bind(h.bounces)
                .bind(h.duration)
                .bind(h.visitors);
        }
        q.execute(&mut **tx).await?;
        at += size;
    }
    Ok(())
}

async fn upsert_dims(tx: &mut Transaction<'static, Any>, rows: &[DimDelta]) -> Result<()> {
    let mut at = 0;
    for size in chunks(rows.len()) {
        let mut sql =
            String::from("INSERT INTO analytics_daily_dims (site_id, day, dim, value, n) VALUES ");
        values_clause(&mut sql, size, 5);
        sql.push_str(
            " ON CONFLICT (site_id, day, dim, value) DO UPDATE SET n = analytics_daily_dims.n + excluded.n",
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for d in &rows[at..at + size] {
            q = q
                .bind(d.site_id)
                .bind(d.day)
                .bind(d.dim)
                .bind(d.value.clone())
                .bind(d.n);
        }
        q.execute(&mut **tx).await?;
        at += size;
    }
    Ok(())
}

/// Inserts the visitor-days; those that were new for their day are counted in their hour's
/// `visitors` (exact daily unique visitors, even with several writer nodes).
async fn insert_visitor_days(
    tx: &mut Transaction<'static, Any>,
    rows: &[(i64, i64, i64, i64)],
) -> Result<()> {
    let mut at = 0;
    let mut new: std::collections::HashMap<(i64, i64, i64), i64> = std::collections::HashMap::new();
    // A visitor listed twice for a day counts in the hour it was first listed with.
    let mut hour_of: std::collections::HashMap<(i64, i64, i64), i64> =
        std::collections::HashMap::new();
    for (s, d, v, h) in rows {
        hour_of.entry((*s, *d, *v)).or_insert(*h);
    }
    for size in chunks(rows.len()) {
        let mut sql =
            String::from("INSERT INTO analytics_visitor_days (site_id, day, visitor) VALUES ");
        values_clause(&mut sql, size, 3);
        sql.push_str(
            " ON CONFLICT (site_id, day, visitor) DO NOTHING RETURNING site_id, day, visitor",
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for (s, d, v, _) in &rows[at..at + size] {
            q = q.bind(*s).bind(*d).bind(*v);
        }
        for r in q.fetch_all(&mut **tx).await? {
            let key: (i64, i64, i64) = (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
            let hour = hour_of.get(&key).copied().unwrap_or(0);
            *new.entry((key.0, key.1, hour)).or_insert(0) += 1;
        }
        at += size;
    }
    upsert_hourly(tx, &new_visitor_deltas(new)).await
}

/// The hourly rows that count the visitor-days just inserted (`(site, day, hour)` → how many were
/// new), in key order: both writers (this one and `sqlite_fast`) add them to `analytics_hourly`.
pub(crate) fn new_visitor_deltas(
    new: std::collections::HashMap<(i64, i64, i64), i64>,
) -> Vec<HourlyDelta> {
    let mut deltas: Vec<HourlyDelta> = new
        .into_iter()
        .map(|((site_id, day, hour), visitors)| HourlyDelta {
            site_id,
            day,
            hour,
            visitors,
            ..HourlyDelta::default()
        })
        .collect();
    deltas.sort_unstable_by_key(|d| (d.site_id, d.day, d.hour));
    deltas
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunking_covers_every_row_with_few_shapes() {
        for n in [0, 1, 3, 4, 5, 31, 32, 33, 255, 256, 257, 1000] {
            let c = chunks(n);
            assert_eq!(c.iter().sum::<usize>(), n);
            assert!(c.iter().all(|s| CHUNKS.contains(s)));
        }
        let mut sql = String::new();
        values_clause(&mut sql, 2, 3);
        assert_eq!(sql, "($1,$2,$3),($4,$5,$6)");
    }
}
