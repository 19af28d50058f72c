//! The SQLite fast path of the analytics writer.
//!
//! Measured on the benchmark machine, sqlx's `Any` driver spent about 100 µs per row on the
//! analytics insert (multi-row `INSERT`s with thousands of bound values), far from the ingest
//! targets. This path writes the same batch through one dedicated `rusqlite` connection (same
//! `libsqlite3-sys` as sqlx, so one SQLite library in the process) with cached single-row
//! statements in one `IMMEDIATE` transaction (events as one encoded chunk per site and day, see
//! `event_chunk`), on the writer's thread. Same tables, same SQL
//! semantics as the portable path; the conformance suite runs both (SQLite uses this one,
//! PostgreSQL the portable one).
//!
//! One difference: the visitor-days of a batch are not inserted in its transaction. They wait in
//! the writer's memory and are inserted sorted about once a second (each was a random insert into
//! the primary key of `analytics_visitor_days`, a dirtied 4 KiB leaf in the WAL at every commit),
//! moving the watermark `analytics_visitor_watermark.chunk_id` (migration 0013) in the same
//! transaction. The store's readers of visitor-days insert the waiting ones first; the rights
//! hooks also read the visitor lists of the chunks past the watermark; after a crash, opening the
//! writer inserts the visitor-days of those chunks from their stored events.

use std::cell::Cell;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{Connection, TransactionBehavior, params};

use crate::analytics::{AnalyticsBatch, HourlyDelta, LocalHour};
use crate::event_chunk::{self, EncodedChunk};

/// Errors of the fast path, mapped into `StoreError::Database`'s message space by the caller.
pub(crate) type FastResult<T> = Result<T, rusqlite::Error>;

/// How often the background thread checkpoints the WAL.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);
/// Unlocked checkpoint passes before the short locked one (each copies what the writer appended
/// during the previous pass, so they shrink quickly).
const UNLOCKED_PASSES: usize = 4;
/// A pass this short leaves little for the locked pass: stop the unlocked ones.
const SHORT_PASS: Duration = Duration::from_millis(2);
/// A commit that leaves the WAL larger than this wakes the checkpointer at once (heavy bulk
/// ingest fills more than this in half a second).
const CHECKPOINT_AT_BYTES: u64 = 16 * 1024 * 1024;
/// When the WAL restarts, a file larger than this (after a burst) is truncated to it.
const WAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;
/// Waiting visitor-days are inserted with the first commit this long after the last insert…
const VISITOR_DAYS_EVERY: Duration = Duration::from_secs(1);
/// …or as soon as this many wait (32 bytes each: bounds the writer's memory).
const VISITOR_DAYS_AT: usize = 1 << 16;

/// Where the store keeps the [`LocalHour`] the analytics writer registered.
#[derive(Clone, Default)]
pub(crate) struct HourSlot(pub(crate) Arc<Mutex<Option<LocalHour>>>);

impl std::fmt::Debug for HourSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HourSlot")
    }
}

impl HourSlot {
    pub(crate) fn get(&self) -> LocalHour {
        self.0
            .lock()
            .expect("hour slot lock")
            .clone()
            .unwrap_or_else(|| Arc::new(utc_hour))
    }
}

/// The hour of a unix time in UTC (when no site time zone is known).
pub(crate) fn utc_hour(_site: i64, ts: i64) -> i64 {
    ts.rem_euclid(86_400) / 3_600
}

type VisitorDay = (i64, i64, i64, i64);

thread_local! {
    /// Frames in the WAL after the last commit on this thread (set by the WAL hook, which SQLite
    /// calls on the committing thread).
    static WAL_FRAMES: Cell<i32> = const { Cell::new(-1) };
}

fn wal_hook(_: &rusqlite::hooks::Wal, frames: std::ffi::c_int) -> rusqlite::Result<()> {
    WAL_FRAMES.with(|c| c.set(frames));
    Ok(())
}

/// The writer's connection and what it knows of the WAL.
struct Writer {
    conn: Connection,
    /// Frames in the WAL after the previous commit.
    frames: i32,
    /// The checkpointer completed a checkpoint while holding the writer: the next commit
    /// restarts the WAL from its start.
    restarts: bool,
    /// Visitor-days `(site_id, day, visitor, hour)` of committed batches not yet inserted into
    /// `analytics_visitor_days`, in the order the batches listed them.
    pending: Vec<VisitorDay>,
    /// Chunks were committed since the watermark last moved.
    behind: bool,
    last_flush: Instant,
}

/// Counters of the writer (for tests, the debug log and `/metrics`).
#[derive(Default)]
pub(crate) struct FastStats {
    /// WAL frames (pages) written by the writer's commits.
    pub(crate) wal_frames: AtomicU64,
    pub(crate) commits: AtomicU64,
    /// Checkpoints that completed with the writer held (each lets the WAL restart).
    pub(crate) wal_restarts: AtomicU64,
}

pub(crate) struct FastWriter {
    writer: Arc<Mutex<Writer>>,
    /// Keeps the checkpoint thread running.
    alive: Arc<AtomicBool>,
    pub(crate) stats: Arc<FastStats>,
    page_size: u64,
    /// The checkpoint thread (woken early when the WAL grows past `CHECKPOINT_AT_BYTES`).
    checkpoint_thread: std::thread::Thread,
    /// Whether visitor-days wait in memory or the watermark is behind (read without the lock).
    waiting: AtomicBool,
}

impl Drop for FastWriter {
    fn drop(&mut self) {
        self.alive.store(false, Ordering::Relaxed);
        self.checkpoint_thread.unpark();
    }
}

impl std::fmt::Debug for FastWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FastWriter")
    }
}

/// One `PRAGMA wal_checkpoint(PASSIVE)`: (frames in the WAL, frames checkpointed), or `None` when
/// the database is not in WAL mode.
fn passive(conn: &Connection) -> FastResult<Option<(i64, i64)>> {
    let (log, done): (i64, i64) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((r.get(1)?, r.get(2)?))
    })?;
    Ok((log >= 0).then_some((log, done)))
}

/// The checkpoint thread. SQLite restarts the WAL from its start (reusing the file) only when a
/// write transaction begins with every frame checkpointed; a PASSIVE checkpoint running beside a
/// busy writer never gets there (the writer appends during the pass), so the WAL would grow
/// without bound (1.5 GB in 12 s of bulk ingest) and every commit would extend the file. So,
/// twice a second (or as soon as a commit leaves more than `CHECKPOINT_AT_BYTES` in the WAL):
/// PASSIVE passes without blocking the writer (each copies what was appended during the previous
/// one), then one short pass with the writer's lock held, which completes; the writer's next
/// transaction then restarts the WAL.
fn checkpoint_loop(
    checkpointer: Connection,
    writer: Arc<Mutex<Writer>>,
    alive: Arc<AtomicBool>,
    stats: Arc<FastStats>,
) {
    while alive.load(Ordering::Relaxed) {
        std::thread::park_timeout(CHECKPOINT_EVERY);
        if !alive.load(Ordering::Relaxed) {
            break;
        }
        if let Err(e) = checkpoint_once(&checkpointer, &writer, &stats) {
            tracing::warn!(error = %e, "analytics WAL checkpoint failed");
        }
    }
}

fn checkpoint_once(
    checkpointer: &Connection,
    writer: &Mutex<Writer>,
    stats: &FastStats,
) -> FastResult<()> {
    for _ in 0..UNLOCKED_PASSES {
        let t = Instant::now();
        match passive(checkpointer)? {
            None | Some((0, _)) => return Ok(()),
            Some(_) if t.elapsed() <= SHORT_PASS => break,
            Some(_) => {}
        }
    }
    let mut w = writer.lock().expect("fast writer lock");
    let t = Instant::now();
    let result = passive(checkpointer)?;
    if let Some((log, done)) = result
        && log > 0
        && log == done
    {
        w.restarts = true;
        stats.wal_restarts.fetch_add(1, Ordering::Relaxed);
    }
    drop(w);
    metrics::histogram!("tutela_analytics_checkpoint_locked_seconds")
        .record(t.elapsed().as_secs_f64());
    Ok(())
}

impl FastWriter {
    /// `full_sync`: fsync the WAL at every commit (survives power loss); otherwise `NORMAL`
    /// (commits survive a crash of the process, the last ones may not survive one of the OS).
    ///
    /// Opening inserts the visitor-days of the chunks past the watermark (a previous writer
    /// stopped before inserting them), their hours from `hour`.
    pub(crate) fn open(path: &Path, full_sync: bool, hour: &LocalHour) -> FastResult<Self> {
        use crate::sqlite_conn::{Synchronous, open};
        let sync = if full_sync {
            Synchronous::Full
        } else {
            Synchronous::Normal
        };
        let conn = open(path, sync, "")?;
        // Checkpoints (copying the WAL into the database file, with a sync) would otherwise run
        // inside some hit's commit and stall it for tens of milliseconds: a background thread runs
        // them instead (see `checkpoint_loop`).
        conn.execute_batch("PRAGMA cache_size = -8192; PRAGMA wal_autocheckpoint = 0;")?;
        conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)?;
        // After `wal_autocheckpoint`, which replaces the WAL hook.
        conn.wal_hook(Some(wal_hook));
        let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        conn.set_prepared_statement_cache_capacity(32);
        let alive = Arc::new(AtomicBool::new(true));
        let stats = Arc::new(FastStats::default());
        let mut w = Writer {
            conn,
            frames: 0,
            restarts: false,
            pending: Vec::new(),
            behind: false,
            last_flush: Instant::now(),
        };
        let recovered = recover(&mut w.conn, hour)?;
        if recovered > 0 {
            tracing::info!(
                visitor_days = recovered,
                "analytics: inserted the visitor-days of chunks written before the last stop"
            );
        }
        let writer = Arc::new(Mutex::new(w));
        // FULL: a checkpoint syncs the database file before the WAL may restart.
        let checkpointer = open(path, Synchronous::Full, "")?;
        let (w, flag, st) = (writer.clone(), alive.clone(), stats.clone());
        let handle = std::thread::Builder::new()
            .name("tutela-checkpoint".into())
            .spawn(move || checkpoint_loop(checkpointer, w, flag, st))
            .map_err(|_| rusqlite::Error::InvalidQuery)?;
        Ok(FastWriter {
            writer,
            alive,
            stats,
            page_size: u64::try_from(page_size).unwrap_or(4096),
            checkpoint_thread: handle.thread().clone(),
            waiting: AtomicBool::new(false),
        })
    }

    /// Bytes of WAL written by this writer's commits so far (frames × page size).
    pub(crate) fn wal_bytes(&self) -> u64 {
        self.stats.wal_frames.load(Ordering::Relaxed) * self.page_size
    }

    /// Commits one batch. Its visitor-days wait in memory; they and the waiting ones are inserted
    /// in this transaction when the last insert is [`VISITOR_DAYS_EVERY`] old or
    /// [`VISITOR_DAYS_AT`] wait.
    pub(crate) fn write(&self, batch: &AnalyticsBatch) -> FastResult<()> {
        let mut w = self.writer.lock().expect("fast writer lock");
        let chunks = batch.all_chunks();
        let flush = (!w.pending.is_empty()
            || w.behind
            || !chunks.is_empty()
            || !batch.visitor_days.is_empty())
            && (w.last_flush.elapsed() >= VISITOR_DAYS_EVERY
                || w.pending.len() + batch.visitor_days.len() >= VISITOR_DAYS_AT);
        let pending = std::mem::take(&mut w.pending);
        let result = self.commit(&mut w, |conn| {
            Self::write_tx(conn, batch, &chunks, flush.then_some(&pending[..]))
        });
        w.pending = pending;
        result?;
        if flush {
            w.pending.clear();
            w.behind = false;
            w.last_flush = Instant::now();
        } else {
            w.pending.extend_from_slice(&batch.visitor_days);
            w.behind |= !chunks.is_empty();
        }
        self.waiting
            .store(!w.pending.is_empty() || w.behind, Ordering::Relaxed);
        Ok(())
    }

    /// Whether visitor-days wait in memory (or chunks past the watermark were committed).
    pub(crate) fn is_waiting(&self) -> bool {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Inserts the waiting visitor-days now (for readers of `analytics_visitor_days`).
    pub(crate) fn flush(&self) -> FastResult<()> {
        if !self.waiting.load(Ordering::Relaxed) {
            return Ok(());
        }
        let mut w = self.writer.lock().expect("fast writer lock");
        if w.pending.is_empty() && !w.behind {
            return Ok(());
        }
        let pending = std::mem::take(&mut w.pending);
        let result = self.commit(&mut w, |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            insert_visitor_days(&tx, &pending)?;
            tx.commit()
        });
        w.pending = pending;
        result?;
        w.pending.clear();
        w.behind = false;
        w.last_flush = Instant::now();
        self.waiting.store(false, Ordering::Relaxed);
        Ok(())
    }

    /// Drops the waiting visitor-days that `keep` refuses (erasure, retention), so that a later
    /// insert does not bring back what was deleted.
    pub(crate) fn forget_waiting(&self, keep: impl Fn(&VisitorDay) -> bool) {
        let mut w = self.writer.lock().expect("fast writer lock");
        w.pending.retain(|e| keep(e));
    }

    /// Runs one transaction on the writer's connection and accounts for the WAL it wrote.
    fn commit(
        &self,
        w: &mut Writer,
        tx: impl FnOnce(&mut Connection) -> FastResult<()>,
    ) -> FastResult<()> {
        WAL_FRAMES.with(|c| c.set(-1));
        tx(&mut w.conn)?;
        // Frames this commit added to the WAL (from the start when the WAL restarted).
        let frames = WAL_FRAMES.with(Cell::get);
        if frames >= 0 {
            let added = if w.restarts || frames < w.frames {
                frames
            } else {
                frames - w.frames
            };
            w.frames = frames;
            w.restarts = false;
            if u64::try_from(frames).unwrap_or(0) * self.page_size > CHECKPOINT_AT_BYTES {
                self.checkpoint_thread.unpark();
            }
            self.stats
                .wal_frames
                .fetch_add(u64::try_from(added).unwrap_or(0), Ordering::Relaxed);
            metrics::counter!("tutela_analytics_wal_bytes_total")
                .increment(u64::try_from(added).unwrap_or(0) * self.page_size);
        }
        self.stats.commits.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn write_tx(
        conn: &mut Connection,
        batch: &AnalyticsBatch,
        chunks: &[std::borrow::Cow<'_, EncodedChunk>],
        flush: Option<&[VisitorDay]>,
    ) -> FastResult<()> {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            if !chunks.is_empty() {
                // Chunk ids only grow, even when the newest chunks were deleted (erasure): a new
                // chunk at or below the watermark would pass for one whose visitor-days are stored.
                let first: i64 = tx
                    .prepare_cached(
                        "SELECT MAX(COALESCE((SELECT MAX(id) FROM analytics_event_chunks), 0), \
                         COALESCE((SELECT MAX(chunk_id) FROM analytics_visitor_watermark), 0)) + 1",
                    )?
                    .query_row([], |r| r.get(0))?;
                let mut ev = tx.prepare_cached(
                    "INSERT INTO analytics_event_chunks (id, site_id, day, events, visitors, data) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?;
                for (id, c) in (first..).zip(chunks) {
                    ev.execute(params![id, c.site_id, c.day, c.events, c.visitors, c.data])?;
                }
            }
            let mut dims = tx.prepare_cached(
                "INSERT INTO analytics_daily_dims (site_id, day, dim, value, n) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (site_id, day, dim, value) DO UPDATE SET n = analytics_daily_dims.n + excluded.n",
            )?;
            for d in &batch.dims {
                dims.execute(params![d.site_id, d.day, d.dim, d.value, d.n])?;
            }
            upsert_hourly(&tx, batch.hourly.iter().cloned())?;
            let mut sk = tx.prepare_cached(
                "INSERT INTO analytics_uniques (site_id, day, node, registers) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (site_id, day, node) DO UPDATE SET registers = excluded.registers",
            )?;
            for (site, day, node, regs) in &batch.sketches {
                sk.execute(params![site, day, node, regs])?;
            }
            if let Some(pending) = flush {
                let mut all = Vec::with_capacity(pending.len() + batch.visitor_days.len());
                all.extend_from_slice(pending);
                all.extend_from_slice(&batch.visitor_days);
                insert_visitor_days(&tx, &all)?;
            }
        }
        tx.commit()
    }
}

fn upsert_hourly(
    tx: &rusqlite::Transaction<'_>,
    rows: impl Iterator<Item = HourlyDelta>,
) -> FastResult<()> {
    const INSERT: &str = "INSERT INTO analytics_hourly (site_id, day, hour, visits, actions, \
                          pageviews, events, bounces, duration, visitors) \
                          VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";
    let mut hourly = tx.prepare_cached(&format!("{INSERT}{}", crate::analytics::HOURLY_UPSERT))?;
    for h in rows {
        hourly.execute(params![
            h.site_id,
            h.day,
            h.hour,
            h.visits,
            h.actions,
            h.pageviews,
            h.events,
            h.bounces,
            h.duration,
            h.visitors
        ])?;
    }
    Ok(())
}

/// Inserts visitor-days in key order (neighbouring keys share leaf pages), counts those new for
/// their day in the hour they were first listed with (`analytics_hourly.visitors`), and moves the
/// watermark to the newest chunk: every chunk up to it has its visitor-days stored.
fn insert_visitor_days(tx: &rusqlite::Transaction<'_>, entries: &[VisitorDay]) -> FastResult<()> {
    let mut sorted = entries.to_vec();
    // Stable: of a key listed several times, the first listing (its hour) stays.
    sorted.sort_by_key(|&(site, day, visitor, _)| (site, day, visitor));
    sorted.dedup_by_key(|&mut (site, day, visitor, _)| (site, day, visitor));
    let mut vd = tx.prepare_cached(
        "INSERT INTO analytics_visitor_days (site_id, day, visitor) VALUES (?1, ?2, ?3) \
         ON CONFLICT (site_id, day, visitor) DO NOTHING",
    )?;
    let mut new: HashMap<(i64, i64, i64), i64> = HashMap::new();
    for (site, day, visitor, hour) in &sorted {
        if vd.execute(params![site, day, visitor])? == 1 {
            *new.entry((*site, *day, *hour)).or_insert(0) += 1;
        }
    }
    upsert_hourly(tx, crate::analytics::new_visitor_deltas(new).into_iter())?;
    tx.prepare_cached(
        "UPDATE analytics_visitor_watermark SET chunk_id = \
         MAX(chunk_id, COALESCE((SELECT MAX(id) FROM analytics_event_chunks), 0))",
    )?
    .execute([])?;
    Ok(())
}

/// Inserts the visitor-days of the chunks past the watermark (a writer stopped, or crashed, before
/// inserting them): every distinct visitor of each chunk, counted in the local hour of its first
/// event there. Returns how many visitor-days were listed.
fn recover(conn: &mut Connection, hour: &LocalHour) -> FastResult<usize> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut found: Vec<VisitorDay> = Vec::new();
    {
        let mut st = tx.prepare(
            "SELECT site_id, day, visitors, data FROM analytics_event_chunks \
             WHERE id > (SELECT COALESCE(MAX(chunk_id), 0) FROM analytics_visitor_watermark) \
             ORDER BY id",
        )?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let (site, day): (i64, i64) = (r.get(0)?, r.get(1)?);
            let visitors: Vec<u8> = r.get(2)?;
            let data: Vec<u8> = r.get(3)?;
            // The first event of each visitor in the chunk (events are in time order).
            let mut first: HashMap<i64, i64> = HashMap::new();
            match event_chunk::decode(site, day, &data) {
                Ok(events) => {
                    for e in events {
                        first.entry(e.visitor).or_insert(e.ts);
                    }
                }
                Err(_) => {
                    tracing::warn!(
                        site,
                        day,
                        "analytics: undecodable chunk; its visitors counted in hour 0"
                    );
                }
            }
            for v in visitors.chunks_exact(8) {
                let mut b = [0u8; 8];
                b.copy_from_slice(v);
                let visitor = i64::from_le_bytes(b);
                let h = first
                    .get(&visitor)
                    .map_or(0, |&ts| hour(site, ts).clamp(0, 23));
                found.push((site, day, visitor, h));
            }
        }
    }
    insert_visitor_days(&tx, &found)?;
    tx.commit()?;
    Ok(found.len())
}

#[cfg(test)]
mod tests {
    use sqlx::Row;

    use crate::Store;
    use crate::analytics::{AnalyticsBatch, EventRow, HourlyDelta};
    use crate::event_chunk::{EncodedChunk, encode_rows};

    const DAY: i64 = 20261207;
    /// 2026-12-07 10:00:00 UTC.
    const T10: i64 = 1_796_637_600;

    fn event(visitor: i64, ts: i64) -> EventRow {
        EventRow {
            site_id: 1,
            day: DAY,
            ts,
            visitor,
            visit_start: ts,
            kind: 1,
            url: Some("https://ex.com/".into()),
            ..EventRow::default()
        }
    }

    /// A batch as the writer makes it: the events' chunk and their visitor-days.
    fn batch(events: &[(i64, i64)]) -> AnalyticsBatch {
        let rows: Vec<EventRow> = events.iter().map(|&(v, ts)| event(v, ts)).collect();
        AnalyticsBatch {
            chunks: encode_rows(&rows),
            hourly: vec![HourlyDelta {
                site_id: 1,
                day: DAY,
                hour: 10,
                actions: rows.len() as i64,
                ..HourlyDelta::default()
            }],
            visitor_days: events
                .iter()
                .map(|&(v, ts)| (1, DAY, v, ts.rem_euclid(86_400) / 3_600))
                .collect(),
            ..AnalyticsBatch::default()
        }
    }

    /// Raw reads that bypass the store's reports (which insert waiting visitor-days first).
    async fn raw(store: &Store, sql: &'static str) -> i64 {
        sqlx::query(sql)
            .fetch_one(store.pool())
            .await
            .unwrap()
            .try_get(0)
            .unwrap()
    }

    async fn stored_visitor_days(store: &Store) -> i64 {
        raw(store, "SELECT COUNT(*) FROM analytics_visitor_days").await
    }

    /// Visitor-days wait in the writer's memory after their batch's commit. A crash (here: the
    /// store dropped without inserting them) loses none: the rights hooks find the events through
    /// the chunks past the watermark, and reopening the writer inserts their visitor-days, counted
    /// in the local hour of each visitor's first event.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waiting_visitor_days_survive_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let store = Store::open_sqlite(&path).await.unwrap();
        store.set_analytics_full_sync(false);
        store
            .analytics_write_batch(&batch(&[(7, T10), (8, T10 + 3_600)]))
            .await
            .unwrap();
        store
            .analytics_write_batch(&batch(&[(7, T10 + 3_700), (9, T10 + 3_800)]))
            .await
            .unwrap();
        assert_eq!(stored_visitor_days(&store).await, 0, "not deferred");
        assert_eq!(store.analytics_events_of(1, 7).await.unwrap().len(), 2);
        drop(store);

        let store = Store::open_sqlite(&path).await.unwrap();
        // The sites' clocks: UTC+2.
        store.set_analytics_local_hour(std::sync::Arc::new(|_, ts| {
            (ts.rem_euclid(86_400) / 3_600 + 2) % 24
        }));
        assert_eq!(stored_visitor_days(&store).await, 0);
        // Rights hooks before anything inserted them.
        let mine = store.analytics_events_of(1, 9).await.unwrap();
        assert_eq!(mine.iter().map(|e| e.ts).collect::<Vec<_>>(), [T10 + 3_800]);
        // Reports insert them first (opening the writer recovers them).
        let t = store.analytics_totals(1, DAY, DAY).await.unwrap();
        assert_eq!((t.actions, t.visitors), (4, 3));
        let hours: Vec<(Option<i64>, i64)> = store
            .analytics_series(1, DAY, DAY, true)
            .await
            .unwrap()
            .iter()
            .map(|p| (p.hour, p.totals.visitors))
            .collect();
        assert_eq!(hours, [(Some(10), 0), (Some(12), 1), (Some(13), 2)]);
        let mut seen = store.analytics_visitors_of_day(1, DAY).await.unwrap();
        seen.sort();
        assert_eq!(seen, [7, 8, 9]);
        assert_eq!(
            store.analytics_unique_visitors(1, DAY, DAY).await.unwrap(),
            3
        );
        assert_eq!(
            raw(&store, "SELECT chunk_id FROM analytics_visitor_watermark").await,
            raw(&store, "SELECT MAX(id) FROM analytics_event_chunks").await
        );
        // A second recovery finds nothing left to count.
        drop(store);
        let store = Store::open_sqlite(&path).await.unwrap();
        store.analytics_flush_visitor_days().await.unwrap();
        assert_eq!(
            store.analytics_totals(1, DAY, DAY).await.unwrap().visitors,
            3
        );
    }

    /// The newest chunk erased (deleted whole) does not let the next chunk take an id at or below
    /// the watermark: its visitor-days would never be inserted after a crash.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn chunk_ids_stay_above_the_watermark() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let store = Store::open_sqlite(&path).await.unwrap();
        store.set_analytics_full_sync(false);
        store
            .analytics_write_batch(&batch(&[(1, T10)]))
            .await
            .unwrap();
        store
            .analytics_write_batch(&batch(&[(2, T10 + 60)]))
            .await
            .unwrap();
        store.analytics_flush_visitor_days().await.unwrap();
        let mark = raw(&store, "SELECT chunk_id FROM analytics_visitor_watermark").await;
        assert_eq!(mark, 2);
        assert_eq!(store.analytics_erase_visitor(1, 2).await.unwrap(), 1);
        assert_eq!(
            raw(&store, "SELECT MAX(id) FROM analytics_event_chunks").await,
            1
        );
        store
            .analytics_write_batch(&batch(&[(3, T10 + 120)]))
            .await
            .unwrap();
        assert_eq!(
            raw(&store, "SELECT MAX(id) FROM analytics_event_chunks").await,
            3
        );
        drop(store);
        let store = Store::open_sqlite(&path).await.unwrap();
        let mut seen = store.analytics_visitors_of_day(1, DAY).await.unwrap();
        seen.sort();
        assert_eq!(seen, [1, 3]);
        assert_eq!(store.analytics_events_of(1, 3).await.unwrap().len(), 1);
    }

    /// Erasing a visitor whose visitor-days still wait: the events go, and no later insert brings
    /// the visitor-days back. Retention forgets waiting visitor-days of the days it deletes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn erasure_and_retention_drop_waiting_visitor_days() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("t.db")).await.unwrap();
        store.set_analytics_full_sync(false);
        store
            .analytics_write_batch(&batch(&[(5, T10), (6, T10 + 1), (5, T10 + 2)]))
            .await
            .unwrap();
        assert_eq!(stored_visitor_days(&store).await, 0, "not deferred");
        assert_eq!(store.analytics_erase_visitor(1, 5).await.unwrap(), 2);
        assert!(store.analytics_events_of(1, 5).await.unwrap().is_empty());
        store.analytics_flush_visitor_days().await.unwrap();
        assert_eq!(store.analytics_visitors_of_day(1, DAY).await.unwrap(), [6]);
        assert_eq!(store.analytics_events_of(1, 6).await.unwrap().len(), 1);

        store
            .analytics_write_batch(&batch(&[(4, T10 + 3)]))
            .await
            .unwrap();
        assert_eq!(stored_visitor_days(&store).await, 1, "not deferred");
        store.analytics_purge_through(1, DAY).await.unwrap();
        store.analytics_flush_visitor_days().await.unwrap();
        assert_eq!(stored_visitor_days(&store).await, 0);
        assert_eq!(store.analytics_event_count(1).await.unwrap(), 0);
    }

    /// Under sustained writes the WAL is checkpointed and restarted: its file stays bounded
    /// (before, a PASSIVE checkpoint beside a busy writer never completed and the WAL grew by
    /// everything written).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wal_stays_bounded_under_sustained_writes() {
        const BOUND: u64 = 96 << 20;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let store = Store::open_sqlite(&path).await.unwrap();
        store.set_analytics_full_sync(false);
        let wal = dir.path().join("t.db-wal");
        let started = std::time::Instant::now();
        let (mut max, mut batches, mut x) = (0u64, 0u64, 0x9e37_79b9_7f4a_7c15u64);
        // Write until the WAL has received four times the bound (or 90 s on a very slow machine).
        while store.analytics_wal_bytes() < 4 * BOUND && started.elapsed().as_secs() < 90 {
            let mut visitor_days = Vec::new();
            for _ in 0..200 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                visitor_days.push((1, 20261207, (x >> 1) as i64, 10));
            }
            let batch = AnalyticsBatch {
                chunks: vec![EncodedChunk {
                    site_id: 1,
                    day: 20261207,
                    events: 1,
                    visitors: 1i64.to_le_bytes().to_vec(),
                    data: vec![(batches % 251) as u8; 128 << 10],
                }],
                visitor_days,
                ..AnalyticsBatch::default()
            };
            store.analytics_write_batch_owned(batch).await.unwrap();
            batches += 1;
            max = max.max(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0));
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        let written = store.analytics_wal_bytes();
        let restarts = store
            .fast
            .get()
            .unwrap()
            .stats
            .wal_restarts
            .load(std::sync::atomic::Ordering::Relaxed);
        eprintln!(
            "{batches} batches, {written} bytes of WAL written, file at most {max} bytes, \
             {restarts} restarts, {:?}",
            started.elapsed()
        );
        assert!(
            written >= 4 * BOUND,
            "only {written} bytes of WAL written in {batches} batches"
        );
        assert!(max <= BOUND, "WAL file reached {max} bytes");
        assert!(restarts > 0);
    }
}
