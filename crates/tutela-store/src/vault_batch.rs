//! Bulk vault writes (`Vault::write_batch`): one transaction that resolves subjects, inserts
//! subjects, identifiers, sealed records and audit entries.
//!
//! On PostgreSQL a [`BatchTx`] is a `vault_pg::PgSession` (binary `COPY` on a native
//! connection, pipelined the same way: see `vault_pg.rs`); on an SQLite store without a file
//! path it is a [`VaultTx`] (sqlx, portable SQL). On SQLite it runs on a dedicated `rusqlite` connection owned by a
//! worker thread (same `libsqlite3-sys` as sqlx: one SQLite library in the process), with cached
//! single-row statements. Inserts are *queued*: the caller goes on sealing the next records on
//! its own thread while the worker writes the previous ones, so on two cores the Rust work and
//! SQLite's B-tree work overlap instead of adding up. An error of a queued insert is kept by the
//! worker and returned by the next call that waits for an answer (at the latest
//! [`BatchTx::record_ids`] or [`BatchTx::commit`]); nothing is committed after an error, and a
//! transaction dropped without `commit` is rolled back.
//!
//! Checkpoints do not run on the writer thread. SQLite's automatic checkpoint runs inside the
//! `COMMIT` that crosses its threshold, on the committing thread: it read every page back from
//! the WAL, wrote it into the database file and `fsync`ed it — a fifth of the writer thread's
//! time in bulk writes, with the caller waiting for it. Here the writer connection has its own
//! WAL hook instead: after a commit that leaves at least [`CHECKPOINT_FRAMES`] frames in the
//! WAL it wakes a checkpointer thread (its own connection, `PASSIVE` checkpoints, which never
//! wait for readers or writers), and goes on with the next transaction while the pages are
//! copied. A WAL is only rewritten from its start when a write transaction begins with every
//! frame copied; so that it does not grow without bound under a stream of bulk writes, a
//! transaction that begins with at least [`WAL_RESTART_FRAMES`] frames in the WAL first waits
//! for the checkpointer and copies what is left itself (see [`Worker::begin`]).
//!
//! Measured on the benchmark machine (1M records, 100k subjects, SQLite): see BENCHMARKS.md,
//! "Notes on the vault figures". The conformance suite writes the same batch through both paths
//! and compares every stored row.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};

use rusqlite::{Connection, params};

use crate::vault::{Events, NewRecord, PurgedBatch, StoredIdentifier, StoredSubject, VaultTx};
use crate::{Engine, NewAuditEntry, Result, Store, StoreError};

/// WAL frames after which a commit wakes the checkpointer (SQLite's own default threshold).
const CHECKPOINT_FRAMES: i32 = 1000;

/// WAL frames at which the next write transaction first waits for the checkpointer and copies
/// the rest itself, so that it rewrites the WAL from its start instead of extending it: 64 MiB
/// of 4 KiB pages, a few bulk transactions of 1,000 subjects.
const WAL_RESTART_FRAMES: i32 = 16384;

thread_local! {
    /// Frames in the WAL after the writer connection's last commit (set by its WAL hook, which
    /// runs on the writer thread inside `COMMIT`).
    static WAL_FRAMES: Cell<i32> = const { Cell::new(0) };
}

/// The writer connection's WAL hook: notes the WAL's size. (Registering a hook replaces
/// SQLite's automatic checkpoint on this connection.)
fn note_wal_frames(_: &rusqlite::hooks::Wal, frames: std::ffi::c_int) -> rusqlite::Result<()> {
    WAL_FRAMES.with(|f| f.set(frames));
    Ok(())
}

#[derive(Default)]
struct CheckpointState {
    /// A checkpoint was asked for and has not started yet.
    requested: bool,
    /// A checkpoint is running.
    running: bool,
    /// The writer is gone: the thread ends.
    stop: bool,
}

/// The checkpointer thread's handle, owned by the writer thread's [`Worker`]; dropping it
/// stops the thread.
struct Checkpointer {
    state: Arc<(Mutex<CheckpointState>, Condvar)>,
}

impl Checkpointer {
    fn start(conn: Connection) -> rusqlite::Result<Self> {
        let state = Arc::new((Mutex::new(CheckpointState::default()), Condvar::new()));
        let shared = state.clone();
        std::thread::Builder::new()
            .name("tutela-vault-ckpt".into())
            .spawn(move || {
                let (lock, cvar) = &*shared;
                loop {
                    {
                        let mut s = lock.lock().unwrap_or_else(|e| e.into_inner());
                        while !s.requested && !s.stop {
                            s = cvar.wait(s).unwrap_or_else(|e| e.into_inner());
                        }
                        if s.stop {
                            return;
                        }
                        s.requested = false;
                        s.running = true;
                    }
                    // PASSIVE: copies what it can without waiting for anyone. An error (e.g.
                    // busy with another checkpoint) leaves the frames for the next one.
                    let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                    let mut s = lock.lock().unwrap_or_else(|e| e.into_inner());
                    s.running = false;
                    cvar.notify_all();
                }
            })
            .map_err(|_| rusqlite::Error::InvalidQuery)?;
        Ok(Checkpointer { state })
    }

    /// Asks for a checkpoint (returns at once).
    fn request(&self) {
        let (lock, cvar) = &*self.state;
        lock.lock().unwrap_or_else(|e| e.into_inner()).requested = true;
        cvar.notify_all();
    }

    /// Waits until no checkpoint is asked for or running.
    fn wait_idle(&self) {
        wait_checkpoints(&self.state);
    }
}

/// Waits until the checkpointer whose state is `state` has no checkpoint asked for or running.
fn wait_checkpoints(state: &(Mutex<CheckpointState>, Condvar)) {
    let (lock, cvar) = state;
    let mut s = lock.lock().unwrap_or_else(|e| e.into_inner());
    while s.requested || s.running {
        s = cvar.wait(s).unwrap_or_else(|e| e.into_inner());
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        let (lock, cvar) = &*self.state;
        lock.lock().unwrap_or_else(|e| e.into_inner()).stop = true;
        cvar.notify_all();
    }
}

/// A unit of work for the worker thread.
type Job = Box<dyn FnOnce(&mut Worker) + Send>;

/// The worker thread's state: its connection, and the state of the current transaction.
struct Worker {
    conn: Connection,
    /// The first error of a queued statement of the current transaction.
    error: Option<rusqlite::Error>,
    /// Set once an error was reported: later statements of the transaction are skipped.
    failed: bool,
    /// Ids of the records inserted by the current transaction, in insertion order.
    ids: Vec<i64>,
    checkpointer: Checkpointer,
}

impl Worker {
    /// `BEGIN IMMEDIATE`, after making sure a long WAL restarts from its start (see the module
    /// documentation): with [`WAL_RESTART_FRAMES`] or more frames, waits for the checkpointer,
    /// then checkpoints what is left on this connection (outside any transaction; PASSIVE, so
    /// a reader holding an old snapshot only leaves the WAL longer, as SQLite's automatic
    /// checkpoint would).
    fn begin(&mut self) -> rusqlite::Result<()> {
        if WAL_FRAMES.with(Cell::get) >= WAL_RESTART_FRAMES {
            self.checkpointer.wait_idle();
            self.conn
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
            WAL_FRAMES.with(|f| f.set(0));
        }
        self.conn.execute_batch("BEGIN IMMEDIATE")
    }

    /// `COMMIT`, then wakes the checkpointer if the WAL has grown past [`CHECKPOINT_FRAMES`].
    fn commit(&mut self) -> rusqlite::Result<()> {
        self.conn.execute_batch("COMMIT")?;
        if WAL_FRAMES.with(Cell::get) >= CHECKPOINT_FRAMES {
            self.checkpointer.request();
        }
        Ok(())
    }
}

impl Worker {
    /// The retention purge of one batch (see [`BatchTx::purge_ids_sqlite`]).
    fn purge_ids(&mut self, ids: &[i64], now: i64) -> rusqlite::Result<PurgedBatch> {
        let mut batch = PurgedBatch::default();
        // Purposes are few: a short list beats a map, and no string is allocated per row.
        let mut counts: Vec<(String, u64)> = Vec::new();
        let mut subjects: Vec<String> = Vec::new();
        self.conn.execute_batch("PRAGMA secure_delete = FAST")?;
        let deleted = delete_expired(&self.conn, ids, now, &mut counts, &mut subjects);
        // Back to ON before anything else runs on this connection, error or not.
        let restored = self.conn.execute_batch("PRAGMA secure_delete = ON");
        deleted?;
        restored?;
        for (purpose, n) in counts {
            batch.records += n;
            batch.per_purpose.insert(purpose, n);
        }
        if batch.records == 0 {
            return Ok(batch);
        }
        subjects.sort_unstable();
        subjects.dedup();
        batch.subjects_shredded = shred_if_empty(&self.conn, &subjects)?;
        Ok(batch)
    }
}

/// Deletes the records among `ids` past their deadline at `now` and not on legal hold, one
/// cached single-row statement per id (a `DELETE` by rowid: SQLite's one-pass delete, no rowid
/// set built first); counts them per purpose and notes their subjects (consecutive duplicates
/// dropped).
fn delete_expired(
    conn: &Connection,
    ids: &[i64],
    now: i64,
    counts: &mut Vec<(String, u64)>,
    subjects: &mut Vec<String>,
) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(
        "DELETE FROM vault_records WHERE id = ?1 AND deadline <= ?2 AND legal_hold = FALSE \
         RETURNING subject_id, purpose",
    )?;
    for &id in ids {
        let mut rows = stmt.query(params![id, now])?;
        while let Some(r) = rows.next()? {
            let subject = r.get_ref(0)?.as_str()?;
            if subjects.last().map(String::as_str) != Some(subject) {
                subjects.push(subject.to_owned());
            }
            let purpose = r.get_ref(1)?.as_str()?;
            match counts.iter_mut().find(|(p, _)| p == purpose) {
                Some((_, n)) => *n += 1,
                None => counts.push((purpose.to_owned(), 1)),
            }
        }
    }
    Ok(())
}

/// Of `subjects` (sorted, distinct), deletes those without any record left: identifiers,
/// events, then the subject row with its wrapped key (crypto-shredding), under
/// `secure_delete = ON` (set again here). Returns how many subjects were deleted.
fn shred_if_empty(conn: &Connection, subjects: &[String]) -> rusqlite::Result<u64> {
    conn.execute_batch("PRAGMA secure_delete = ON")?;
    let mut has_records =
        conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM vault_records WHERE subject_id = ?1)")?;
    let mut identifiers =
        conn.prepare_cached("DELETE FROM vault_identifiers WHERE subject_id = ?1")?;
    let mut events = conn.prepare_cached("DELETE FROM vault_events WHERE subject_id = ?1")?;
    let mut subject = conn.prepare_cached("DELETE FROM vault_subjects WHERE id = ?1")?;
    let mut shredded = 0;
    for id in subjects {
        if has_records.query_row([id], |r| r.get::<_, bool>(0))? {
            continue;
        }
        identifiers.execute([id])?;
        events.execute([id])?;
        shredded += subject.execute([id])? as u64;
    }
    Ok(shredded)
}

/// The SQLite vault writer: a thread with its own connection, and a lock that lets one
/// transaction at a time use it.
pub(crate) struct VaultWorker {
    jobs: mpsc::Sender<Job>,
    lock: Arc<tokio::sync::Mutex<()>>,
    /// The checkpointer thread's state, to wait for it from outside the writer thread.
    checkpoints: Arc<(Mutex<CheckpointState>, Condvar)>,
}

impl std::fmt::Debug for VaultWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VaultWorker")
    }
}

impl VaultWorker {
    fn open(path: &Path) -> rusqlite::Result<Self> {
        use crate::sqlite_conn::{Synchronous, open};
        // FULL sync, so an acknowledged write survives a power cut; a 32 MiB page cache.
        let conn = open(
            path,
            Synchronous::Full,
            "PRAGMA cache_size = -32768; PRAGMA mmap_size = 268435456;",
        )?;
        conn.set_prepared_statement_cache_capacity(16);
        // Replaces the automatic checkpoint on this connection: see the module documentation.
        conn.wal_hook(Some(note_wal_frames));
        let ckpt = open(path, Synchronous::Full, "PRAGMA mmap_size = 268435456;")?;
        let (tx, rx) = mpsc::channel::<Job>();
        let checkpointer = Checkpointer::start(ckpt)?;
        let checkpoints = checkpointer.state.clone();
        let mut worker = Worker {
            conn,
            error: None,
            failed: false,
            ids: Vec::new(),
            checkpointer,
        };
        std::thread::Builder::new()
            .name("tutela-vault-writer".into())
            .spawn(move || {
                // Ends when every sender is gone (the store was dropped).
                while let Ok(job) = rx.recv() {
                    job(&mut worker);
                }
            })
            .map_err(|_| rusqlite::Error::InvalidQuery)?;
        Ok(VaultWorker {
            jobs: tx,
            lock: Arc::new(tokio::sync::Mutex::new(())),
            checkpoints,
        })
    }

    /// A function that waits (blocking) until the checkpointer thread is idle.
    pub(crate) fn checkpoints_idle(&self) -> impl FnOnce() + Send + 'static {
        let state = self.checkpoints.clone();
        move || wait_checkpoints(&state)
    }

    fn sender(&self) -> mpsc::Sender<Job> {
        self.jobs.clone()
    }
}

/// A transaction on the SQLite vault worker.
struct Session {
    jobs: mpsc::Sender<Job>,
    /// The chain head read when the transaction began (the transaction holds the write lock,
    /// so it cannot change under it).
    head: (i64, [u8; 32]),
    done: bool,
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

fn worker_gone() -> StoreError {
    StoreError::Database(sqlx::Error::Protocol(
        "the vault writer thread stopped".into(),
    ))
}

fn skipped() -> rusqlite::Error {
    // Reported only if a caller ignored an earlier error and went on.
    rusqlite::Error::InvalidQuery
}

impl Session {
    /// Runs `f` on the worker and waits for its answer (or for the error of a statement queued
    /// before it).
    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Worker) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move |w: &mut Worker| {
                let r = if let Some(e) = w.error.take() {
                    w.failed = true;
                    Err(e)
                } else if w.failed {
                    Err(skipped())
                } else {
                    f(w).inspect_err(|_| w.failed = true)
                };
                let _ = tx.send(r);
            }))
            .map_err(|_| worker_gone())?;
        rx.await.map_err(|_| worker_gone())?.map_err(Into::into)
    }

    /// Queues `f` on the worker without waiting: its error, if any, is returned by the next
    /// [`Session::call`].
    fn queue(
        &self,
        f: impl FnOnce(&mut Worker) -> rusqlite::Result<()> + Send + 'static,
    ) -> Result<()> {
        self.jobs
            .send(Box::new(move |w: &mut Worker| {
                if w.error.is_none()
                    && !w.failed
                    && let Err(e) = f(w)
                {
                    w.error = Some(e);
                }
            }))
            .map_err(|_| worker_gone())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if !self.done {
            // Queued before the lock is released (the guard drops after this): the next
            // transaction's BEGIN comes after it.
            let _ = self.jobs.send(Box::new(|w: &mut Worker| {
                if !w.conn.is_autocommit() {
                    let _ = w.conn.execute_batch("ROLLBACK");
                }
                w.error = None;
                w.failed = false;
                w.ids.clear();
            }));
        }
    }
}

/// The audit head's stored hash (all zeros before the first entry, or if the column does not
/// hold 32 bytes).
pub(crate) fn head_hash(stored: &[u8]) -> [u8; 32] {
    let mut hash = [0u8; 32];
    if stored.len() == 32 {
        hash.copy_from_slice(stored);
    }
    hash
}

enum Inner {
    Portable {
        tx: VaultTx,
        ids: Vec<i64>,
    },
    Sqlite(Session),
    /// PostgreSQL: `COPY` and arrays on a native connection (`vault_pg.rs`).
    Postgres(crate::vault_pg::PgSession),
}

/// A bulk vault write transaction (see the module documentation). Dropping it without
/// [`BatchTx::commit`] rolls back.
pub struct BatchTx {
    inner: Inner,
}

impl Store {
    /// Starts a bulk vault write transaction: on SQLite, on the dedicated writer connection
    /// (`BEGIN IMMEDIATE`, so it holds the write lock from the start); on PostgreSQL, on a
    /// connection of the native pool (`vault_pg.rs`); elsewhere a [`VaultTx`].
    pub async fn vault_batch_begin(&self) -> Result<BatchTx> {
        if let Some(pg) = self.pg_pool() {
            return Ok(BatchTx {
                inner: Inner::Postgres(crate::vault_pg::PgSession::begin(pg).await?),
            });
        }
        if self.engine() == Engine::Sqlite
            && let Some(path) = self.sqlite_path().map(Path::to_path_buf)
        {
            let worker = match self.vault_worker.get() {
                Some(w) => w,
                None => {
                    let w = tokio::task::spawn_blocking(move || VaultWorker::open(&path))
                        .await
                        .map_err(|_| worker_gone())??;
                    let _ = self.vault_worker.set(w);
                    self.vault_worker.get().expect("just set")
                }
            };
            let guard = worker.lock.clone().lock_owned().await;
            let mut session = Session {
                jobs: worker.sender(),
                head: (0, [0; 32]),
                done: false,
                _guard: guard,
            };
            session.head = session
                .call(|w| {
                    w.error = None;
                    w.failed = false;
                    w.ids.clear();
                    w.begin()?;
                    w.conn
                        .query_row("SELECT seq, hash FROM audit_head WHERE id = 1", [], |r| {
                            let seq: i64 = r.get(0)?;
                            let stored: Vec<u8> = r.get(1)?;
                            Ok((seq, head_hash(&stored)))
                        })
                })
                .await?;
            return Ok(BatchTx {
                inner: Inner::Sqlite(session),
            });
        }
        self.vault_batch_begin_portable().await
    }

    /// A bulk transaction through the portable (sqlx) path even on SQLite: for the conformance
    /// suite, which compares both paths.
    #[doc(hidden)]
    pub async fn vault_batch_begin_portable(&self) -> Result<BatchTx> {
        Ok(BatchTx {
            inner: Inner::Portable {
                tx: self.vault_begin().await?,
                ids: Vec::new(),
            },
        })
    }
}

/// Reads `ids` in chunks through one cached statement per chunk size; `row` maps a row.
fn select_in<K: rusqlite::ToSql, T>(
    conn: &Connection,
    sql_prefix: &str,
    keys: &[K],
    mut row: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Vec<T>> {
    let mut out = Vec::new();
    for chunk in keys.chunks(500) {
        let mut sql = String::with_capacity(sql_prefix.len() + chunk.len() * 2 + 2);
        sql.push_str(sql_prefix);
        sql.push('(');
        for i in 0..chunk.len() {
            sql.push_str(if i == 0 { "?" } else { ",?" });
        }
        sql.push(')');
        let mut stmt = conn.prepare_cached(&sql)?;
        let mut rows = stmt.query(rusqlite::params_from_iter(chunk.iter()))?;
        while let Some(r) = rows.next()? {
            out.push(row(r)?);
        }
    }
    Ok(out)
}

impl BatchTx {
    /// Which engine the transaction runs on.
    pub fn engine(&self) -> Engine {
        match &self.inner {
            Inner::Portable { tx, .. } => tx.engine(),
            Inner::Sqlite(_) => Engine::Sqlite,
            Inner::Postgres(_) => Engine::Postgres,
        }
    }

    /// Whether inserts are queued to a writer thread (SQLite): the caller should then hand
    /// records over in chunks as it produces them, so that both threads work at once.
    pub fn is_pipelined(&self) -> bool {
        matches!(self.inner, Inner::Sqlite(_) | Inner::Postgres(_))
    }

    /// `(blind index, subject id)` of the known indexes.
    pub async fn subjects_by_index(
        &mut self,
        indexes: Vec<Vec<u8>>,
    ) -> Result<Vec<(Vec<u8>, String)>> {
        match &mut self.inner {
            Inner::Portable { tx, .. } => tx.subjects_by_index(&indexes).await,
            Inner::Postgres(s) => s.subjects_by_index(indexes).await,
            Inner::Sqlite(s) => {
                if indexes.is_empty() {
                    return Ok(Vec::new());
                }
                s.call(move |w| {
                    select_in(
                        &w.conn,
                        "SELECT blind_index, subject_id FROM vault_identifiers WHERE blind_index IN ",
                        &indexes,
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                })
                .await
            }
        }
    }

    /// Subjects by id (those that exist; any order).
    pub async fn subjects(&mut self, ids: Vec<String>) -> Result<Vec<StoredSubject>> {
        match &mut self.inner {
            Inner::Portable { tx, .. } => tx.subjects(&ids).await,
            Inner::Postgres(s) => s.subjects(ids).await,
            Inner::Sqlite(s) => {
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                s.call(move |w| {
                    select_in(
                        &w.conn,
                        "SELECT id, wrapped_key, key_id, created_at FROM vault_subjects WHERE id IN ",
                        &ids,
                        |r| {
                            Ok(StoredSubject {
                                id: r.get(0)?,
                                wrapped_key: r.get(1)?,
                                key_id: r.get(2)?,
                                created_at: r.get(3)?,
                            })
                        },
                    )
                })
                .await
            }
        }
    }

    /// Anchor events of some subjects.
    pub async fn events(&mut self, subject_ids: Vec<String>) -> Result<Events> {
        match &mut self.inner {
            Inner::Portable { tx, .. } => tx.events(&subject_ids).await,
            Inner::Postgres(s) => s.events(subject_ids).await,
            Inner::Sqlite(s) => {
                if subject_ids.is_empty() {
                    return Ok(BTreeMap::new());
                }
                let rows = s
                    .call(move |w| {
                        select_in(
                            &w.conn,
                            "SELECT subject_id, purpose, event, at FROM vault_events WHERE subject_id IN ",
                            &subject_ids,
                            |r| Ok(((r.get(0)?, r.get(1)?, r.get(2)?), r.get(3)?)),
                        )
                    })
                    .await?;
                Ok(rows.into_iter().collect())
            }
        }
    }

    /// Inserts subjects (queued on SQLite).
    pub async fn insert_subjects(&mut self, subjects: Vec<StoredSubject>) -> Result<()> {
        match &mut self.inner {
            Inner::Portable { tx, .. } => tx.insert_subjects(&subjects).await,
            Inner::Postgres(s) => s.insert_subjects(subjects),
            Inner::Sqlite(s) => {
                if subjects.is_empty() {
                    return Ok(());
                }
                s.queue(move |w| {
                    let mut stmt = w.conn.prepare_cached(
                        "INSERT INTO vault_subjects (id, wrapped_key, key_id, created_at) \
                         VALUES (?1, ?2, ?3, ?4)",
                    )?;
                    for x in &subjects {
                        stmt.execute(params![x.id, x.wrapped_key, x.key_id, x.created_at])?;
                    }
                    Ok(())
                })
            }
        }
    }

    /// Inserts identifiers (queued on SQLite). An index that already exists is a unique
    /// violation ([`StoreError::is_unique_violation`]).
    pub async fn insert_identifiers(&mut self, identifiers: Vec<StoredIdentifier>) -> Result<()> {
        match &mut self.inner {
            Inner::Portable { tx, .. } => tx.insert_identifiers(&identifiers).await,
            Inner::Postgres(s) => s.insert_identifiers(identifiers),
            Inner::Sqlite(s) => {
                if identifiers.is_empty() {
                    return Ok(());
                }
                s.queue(move |w| {
                    let mut stmt = w.conn.prepare_cached(
                        "INSERT INTO vault_identifiers (blind_index, subject_id, kind, created_at) \
                         VALUES (?1, ?2, ?3, ?4)",
                    )?;
                    for x in &identifiers {
                        stmt.execute(params![x.blind_index, x.subject_id, x.kind, x.created_at])?;
                    }
                    Ok(())
                })
            }
        }
    }

    /// Inserts records (queued on SQLite); their ids are returned, in insertion order over the
    /// whole transaction, by [`BatchTx::record_ids`].
    pub async fn insert_records(&mut self, records: Vec<NewRecord>, now: i64) -> Result<()> {
        match &mut self.inner {
            Inner::Portable { tx, ids } => {
                ids.extend(tx.insert_records(&records, now).await?);
                Ok(())
            }
            Inner::Postgres(s) => s.insert_records(records, now),
            Inner::Sqlite(s) => {
                if records.is_empty() {
                    return Ok(());
                }
                s.queue(move |w| {
                    let mut stmt = w.conn.prepare_cached(
                        "INSERT INTO vault_records (subject_id, purpose, category, payload, source, \
                         collected_at, anchor_at, deadline, legal_hold, restricted, updated_at) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                    )?;
                    w.ids.reserve(records.len());
                    for r in &records {
                        stmt.execute(params![
                            r.subject_id,
                            r.purpose,
                            r.category,
                            r.payload,
                            r.source,
                            r.collected_at,
                            r.anchor_at,
                            r.deadline,
                            r.legal_hold,
                            r.restricted,
                            now
                        ])?;
                        w.ids.push(w.conn.last_insert_rowid());
                    }
                    Ok(())
                })
            }
        }
    }

    /// The ids of every record inserted so far by this transaction, in insertion order (and
    /// the error of any queued insert). `expected` is how many records the caller inserted:
    /// any other count is an error.
    pub async fn record_ids(&mut self, expected: usize) -> Result<Vec<i64>> {
        let ids = match &mut self.inner {
            Inner::Portable { ids, .. } => std::mem::take(ids),
            Inner::Sqlite(s) => s.call(|w| Ok(std::mem::take(&mut w.ids))).await?,
            Inner::Postgres(s) => s.record_ids().await?,
        };
        if ids.len() != expected {
            return Err(StoreError::Database(sqlx::Error::Protocol(
                "record ids do not match the records written".into(),
            )));
        }
        Ok(ids)
    }

    /// Appends audit entries after the chain head (see [`VaultTx::append_audit`]). Returns the
    /// sequence number of the last entry.
    pub async fn append_audit<F>(&mut self, entries: &[NewAuditEntry], hash: F) -> Result<i64>
    where
        F: Fn(&[u8; 32], i64, &NewAuditEntry) -> [u8; 32],
    {
        match &mut self.inner {
            Inner::Portable { tx, .. } => tx.append_audit(entries, hash).await,
            Inner::Postgres(s) => {
                // The head is locked and read now, as the portable path does; the hashes are
                // computed here and the entries copied by the session task.
                let (mut seq, mut prev) = s.lock_audit_head().await?;
                let mut rows = Vec::with_capacity(entries.len());
                for e in entries {
                    seq += 1;
                    prev = hash(&prev, seq, e);
                    rows.push((seq, e.clone(), prev));
                }
                s.insert_audit(rows)?;
                Ok(seq)
            }
            Inner::Sqlite(s) => {
                let (mut seq, mut prev) = s.head;
                if entries.is_empty() {
                    return Ok(seq);
                }
                let mut hashes = Vec::with_capacity(entries.len());
                for e in entries {
                    seq += 1;
                    prev = hash(&prev, seq, e);
                    hashes.push(prev);
                }
                let first = s.head.0 + 1;
                s.head = (seq, prev);
                let entries = entries.to_vec();
                s.queue(move |w| {
                    let mut stmt = w.conn.prepare_cached(
                        "INSERT INTO audit_log (seq, time_ms, actor, action, purpose, \
                         subject_commitment, details, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    )?;
                    for (i, (e, h)) in entries.iter().zip(&hashes).enumerate() {
                        stmt.execute(params![
                            first + i as i64,
                            e.time_ms,
                            e.actor,
                            e.action,
                            e.purpose,
                            e.subject_commitment.as_ref().map(|c| &c[..]),
                            e.details,
                            &h[..]
                        ])?;
                    }
                    w.conn
                        .prepare_cached("UPDATE audit_head SET seq = ?1, hash = ?2 WHERE id = 1")?
                        .execute(params![seq, &prev[..]])?;
                    Ok(())
                })?;
                Ok(seq)
            }
        }
    }

    /// SQLite: deletes the records among `ids` that are past their deadline at `now` and not
    /// on legal hold (a hold placed since the ids were listed wins), then shreds the subjects
    /// this left without any record. `ids` should be ascending, so that table pages are
    /// visited in order. On the writer thread when there is one, otherwise through
    /// [`VaultTx::purge_ids_sqlite`].
    ///
    /// The record deletions run with `secure_delete = FAST`, the shredding (wrapped keys,
    /// identifiers, events) with `ON`, and `ON` is restored right after the record deletions,
    /// error or not: see ARCHITECTURE.md, "Erasure: what it guarantees".
    pub async fn purge_ids_sqlite(&mut self, ids: Vec<i64>, now: i64) -> Result<PurgedBatch> {
        match &mut self.inner {
            Inner::Portable { tx, .. } => {
                if tx.engine() != Engine::Sqlite {
                    return Err(StoreError::Database(sqlx::Error::Protocol(
                        "purge_ids_sqlite on another engine than SQLite".into(),
                    )));
                }
                tx.purge_ids_sqlite(&ids, now).await
            }
            Inner::Postgres(_) => Err(StoreError::Database(sqlx::Error::Protocol(
                "purge_ids_sqlite on another engine than SQLite".into(),
            ))),
            Inner::Sqlite(s) => {
                if ids.is_empty() {
                    return Ok(PurgedBatch::default());
                }
                s.call(move |w| w.purge_ids(&ids, now)).await
            }
        }
    }

    /// Commits (on SQLite, after every queued statement succeeded).
    pub async fn commit(self) -> Result<()> {
        match self.inner {
            Inner::Portable { tx, .. } => tx.commit().await,
            Inner::Postgres(s) => s.commit().await,
            Inner::Sqlite(mut s) => {
                s.call(|w| {
                    w.commit()?;
                    w.ids.clear();
                    Ok(())
                })
                .await?;
                s.done = true;
                Ok(())
            }
        }
    }
}
