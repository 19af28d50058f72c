//! The SQLite path of the consent writer: a dedicated thread with its own `rusqlite` connection
//! (same `libsqlite3-sys` as sqlx, so one SQLite library in the process).
//!
//! Measured on the benchmark machine, the portable path (sqlx `Any`, one multi-row `INSERT` per
//! batch) spent about a third of the server's CPU in the sqlx worker (statement preparation per
//! batch, a statement journal for the multi-row insert, channel hops between the task and the
//! worker). Here the thread takes whatever is queued (at most [`FAST_BATCH`] records), inserts it
//! with one cached single-row statement in one `IMMEDIATE` transaction, commits (with
//! `synchronous = FULL` the WAL is fsynced: an acknowledged record survives a power cut), and only
//! then answers each caller. Records queued meanwhile make the next batch.
//!
//! Checkpoints: the connection's automatic checkpoint would run inside `COMMIT`, before the
//! callers are answered. It is off here; the thread runs a `PASSIVE` checkpoint itself after
//! answering, once [`CHECKPOINT_RECORDS`] records were written since the last one. Because it
//! runs on the only consent writer, between two of its transactions, it usually copies the whole
//! WAL, so the next transaction restarts the WAL from its start (the file does not grow, and the
//! file system does not have to allocate and zero new blocks).

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior, params};
use tokio::sync::mpsc;

use crate::consent::{ConsentRecord, Job};

/// Most records in one transaction.
pub(crate) const FAST_BATCH: usize = 1024;
/// Records written between two checkpoints (about one WAL page each: the random consent id
/// lands on its own index page).
const CHECKPOINT_RECORDS: usize = 1_000;

const INSERT: &str = "INSERT INTO consent_records (record_id, consent_id, recorded_at, site, \
                      revision, register_hash, method, source, gpc, language, functional, \
                      analytics, targeting, services, purpose, category, delete_after) \
                      VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, \
                      ?16, ?17)";

/// Opens the writer's connection.
pub(crate) fn open(path: &Path) -> rusqlite::Result<Connection> {
    // FULL sync, so an acknowledged record survives a power cut; manual checkpoints (above).
    let conn = crate::sqlite_conn::open(
        path,
        crate::sqlite_conn::Synchronous::Full,
        "PRAGMA cache_size = -8192; PRAGMA wal_autocheckpoint = 0;",
    )?;
    conn.set_prepared_statement_cache_capacity(4);
    Ok(conn)
}

/// Starts the writer thread, which ends (after writing what was queued) when every sender is gone.
pub(crate) fn start(conn: Connection, rx: mpsc::Receiver<Job>) {
    std::thread::Builder::new()
        .name("tutela-consent-writer".into())
        .spawn(move || run(conn, rx))
        .expect("could not start the consent writer thread");
}

fn insert(conn: &mut Connection, records: &[&ConsentRecord]) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    {
        let mut stmt = tx.prepare_cached(INSERT)?;
        for r in records {
            stmt.execute(params![
                r.record_id,
                r.consent_id,
                r.recorded_at,
                r.site,
                r.revision,
                r.register_hash,
                r.method,
                r.source,
                i64::from(r.gpc),
                r.language,
                r.functional.map(i64::from),
                r.analytics.map(i64::from),
                r.targeting.map(i64::from),
                r.services,
                r.purpose,
                r.category,
                r.delete_after,
            ])?;
        }
    }
    tx.commit()
}

fn run(mut conn: Connection, mut rx: mpsc::Receiver<Job>) {
    let mut jobs: Vec<Job> = Vec::with_capacity(FAST_BATCH);
    let mut since_checkpoint = 0usize;
    while let Some(first) = rx.blocking_recv() {
        jobs.push(first);
        while jobs.len() < FAST_BATCH {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let n = jobs.len();
        metrics::histogram!("tutela_consent_batch_size").record(n as f64);
        let records: Vec<&ConsentRecord> = jobs.iter().map(|j| &j.record).collect();
        match insert(&mut conn, &records) {
            Ok(()) => {
                drop(records);
                for j in jobs.drain(..) {
                    let _ = j.done.send(Ok(()));
                }
            }
            Err(err) if records.len() > 1 => {
                // One bad record must not sink the others: write them one by one.
                tracing::warn!(error = %err, batch = records.len(), "consent batch failed; retrying records one by one");
                drop(records);
                for j in jobs.drain(..) {
                    let res = insert(&mut conn, &[&j.record]).map_err(|e| e.to_string());
                    let _ = j.done.send(res);
                }
            }
            Err(err) => {
                drop(records);
                for j in jobs.drain(..) {
                    let _ = j.done.send(Err(err.to_string()));
                }
            }
        }
        since_checkpoint += n;
        if since_checkpoint >= CHECKPOINT_RECORDS {
            since_checkpoint = 0;
            if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                tracing::warn!(error = %e, "consent WAL checkpoint failed");
            }
        }
    }
}
