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

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags, TransactionBehavior, params};

use crate::analytics::{AnalyticsBatch, HourlyDelta};

/// Errors of the fast path, mapped into `StoreError::Database`'s message space by the caller.
pub(crate) type FastResult<T> = Result<T, rusqlite::Error>;

pub(crate) struct FastWriter {
    conn: Mutex<Connection>,
    /// Keeps the checkpoint thread running.
    alive: Arc<AtomicBool>,
}

impl Drop for FastWriter {
    fn drop(&mut self) {
        self.alive.store(false, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for FastWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FastWriter")
    }
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
        // them instead, without blocking the writer (PASSIVE), twice a second.
        conn.execute_batch("PRAGMA cache_size = -8192; PRAGMA wal_autocheckpoint = 0;")?;
        conn.set_prepared_statement_cache_capacity(32);
        let alive = Arc::new(AtomicBool::new(true));
        let checkpointer = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        checkpointer.execute_batch("PRAGMA busy_timeout = 5000;")?;
        let flag = alive.clone();
        std::thread::Builder::new()
            .name("tutela-checkpoint".into())
            .spawn(move || {
                while flag.load(Ordering::Relaxed) {
                    std::thread::sleep(std::time::Duration::from_millis(500));
                    if let Err(e) =
                        checkpointer.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        tracing::warn!(error = %e, "analytics WAL checkpoint failed");
                    }
                }
            })
            .map_err(|_| rusqlite::Error::InvalidQuery)?;
        Ok(FastWriter {
            conn: Mutex::new(conn),
            alive,
        })
    }

    pub(crate) fn write(&self, batch: &AnalyticsBatch) -> FastResult<()> {
        let mut conn = self.conn.lock().expect("fast writer lock");
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
