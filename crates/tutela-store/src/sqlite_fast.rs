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

use std::cell::Cell;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags, TransactionBehavior, params};

use crate::analytics::{AnalyticsBatch, HourlyDelta};

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
    pub(crate) fn open(path: &Path, full_sync: bool) -> FastResult<Self> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.execute_batch(if full_sync {
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000; \
             PRAGMA foreign_keys = ON; PRAGMA secure_delete = ON;"
        } else {
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000; \
             PRAGMA foreign_keys = ON; PRAGMA secure_delete = ON;"
        })?;
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
        let writer = Arc::new(Mutex::new(Writer {
            conn,
            frames: 0,
            restarts: false,
        }));
        let checkpointer = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        checkpointer.execute_batch("PRAGMA busy_timeout = 5000;")?;
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
        })
    }

    /// Bytes of WAL written by this writer's commits so far (frames × page size).
    pub(crate) fn wal_bytes(&self) -> u64 {
        self.stats.wal_frames.load(Ordering::Relaxed) * self.page_size
    }

    pub(crate) fn write(&self, batch: &AnalyticsBatch) -> FastResult<()> {
        let mut w = self.writer.lock().expect("fast writer lock");
        WAL_FRAMES.with(|c| c.set(-1));
        Self::write_tx(&mut w.conn, batch)?;
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

    fn write_tx(conn: &mut Connection, batch: &AnalyticsBatch) -> FastResult<()> {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut ev = tx.prepare_cached(
                "INSERT INTO analytics_event_chunks (site_id, day, events, visitors, data) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for c in batch.all_chunks() {
                ev.execute(params![c.site_id, c.day, c.events, c.visitors, c.data])?;
            }
            let mut dims = tx.prepare_cached(
                "INSERT INTO analytics_daily_dims (site_id, day, dim, value, n) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (site_id, day, dim, value) DO UPDATE SET n = analytics_daily_dims.n + excluded.n",
            )?;
            for d in &batch.dims {
                dims.execute(params![d.site_id, d.day, d.dim, d.value, d.n])?;
            }
            let mut vd = tx.prepare_cached(
                "INSERT INTO analytics_visitor_days (site_id, day, visitor) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (site_id, day, visitor) DO NOTHING",
            )?;
            let mut new: HashMap<(i64, i64, i64), i64> = HashMap::new();
            for (site, day, visitor, hour) in &batch.visitor_days {
                if vd.execute(params![site, day, visitor])? == 1 {
                    *new.entry((*site, *day, *hour)).or_insert(0) += 1;
                }
            }
            let mut hourly = tx.prepare_cached(
                "INSERT INTO analytics_hourly (site_id, day, hour, visits, actions, pageviews, events, \
                 bounces, duration, visitors) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
                 ON CONFLICT (site_id, day, hour) DO UPDATE SET \
                 visits = analytics_hourly.visits + excluded.visits, \
                 actions = analytics_hourly.actions + excluded.actions, \
                 pageviews = analytics_hourly.pageviews + excluded.pageviews, \
                 events = analytics_hourly.events + excluded.events, \
                 bounces = analytics_hourly.bounces + excluded.bounces, \
                 duration = analytics_hourly.duration + excluded.duration, \
                 visitors = analytics_hourly.visitors + excluded.visitors",
            )?;
            let extra = new
                .into_iter()
                .map(|((site_id, day, hour), visitors)| HourlyDelta {
                    site_id,
                    day,
                    hour,
                    visitors,
                    ..HourlyDelta::default()
                });
            for h in batch.hourly.iter().cloned().chain(extra) {
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
            let mut sk = tx.prepare_cached(
                "INSERT INTO analytics_uniques (site_id, day, node, registers) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (site_id, day, node) DO UPDATE SET registers = excluded.registers",
            )?;
            for (site, day, node, regs) in &batch.sketches {
                sk.execute(params![site, day, node, regs])?;
            }
        }
        tx.commit()
    }
}

#[cfg(test)]
mod tests {
    use crate::Store;
    use crate::analytics::AnalyticsBatch;
    use crate::event_chunk::EncodedChunk;

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
