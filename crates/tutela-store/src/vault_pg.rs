//! The vault's PostgreSQL-specific paths: bulk writes over a native sqlx `PgPool` (binary
//! `COPY`, arrays), and the retention purge as one set-based statement per batch.
//!
//! **Bulk writes.** sqlx's `Any` driver binds scalars only: a multi-row `INSERT` of 500 rows
//! binds 5,500 parameters, each converted twice (to `AnyValue`, then to the PostgreSQL wire
//! format), and PostgreSQL parses and plans each statement. Here a [`PgSession`] runs the
//! transaction on a connection of the store's native pool, owned by a task of its own: the
//! caller queues inserts and goes on sealing the next records while the task writes the previous
//! ones (the same pipeline as the SQLite writer thread in `vault_batch.rs`), so on two cores the
//! sealing and PostgreSQL's work overlap. Rows go in with binary `COPY … FROM STDIN`; record
//! ids are taken from the table's sequence first (`nextval` over `generate_series`), so that the
//! ids are known, in insertion order, without `RETURNING`. Reads inside the transaction bind
//! one array (`= ANY($1)`) instead of 500 placeholders. The audit chain is extended exactly as
//! on the portable path: the head row is locked (`UPDATE … RETURNING`) when the entries are
//! appended, the hashes are computed by the caller from that head, and the entries are copied
//! with their sequence numbers. An error of a queued insert is kept and returned by the next
//! call that waits for an answer; a session dropped without commit rolls back.
//!
//! **Purge.** [`VaultTx::purge_expired_pg`]: see there.

use std::future::Future;
use std::pin::Pin;

use sqlx::postgres::{PgConnection, PgPool};
use sqlx::{Postgres, Row, Transaction};

use crate::vault::{Events, NewRecord, PurgedBatch, StoredIdentifier, StoredSubject, VaultTx};
use crate::{Result, StoreError};

/// Records buffered by the session task before one `COPY` (a `COPY` costs a round trip, a
/// `nextval` query and a statement-level trigger: a few thousand rows share them).
const COPY_ROWS: usize = 2048;

type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
type Job = Box<dyn for<'a> FnOnce(&'a mut PgWorker) -> BoxFut<'a, ()> + Send>;

/// Boxes a job (the bound gives the closure its higher-ranked signature).
fn job<F>(f: F) -> Job
where
    F: for<'a> FnOnce(&'a mut PgWorker) -> BoxFut<'a, ()> + Send + 'static,
{
    Box::new(f)
}

/// The binary `COPY` format (PostgreSQL documentation, "COPY — Binary Format").
struct CopyBuf(Vec<u8>);

impl CopyBuf {
    fn new(capacity: usize) -> Self {
        let mut b = Vec::with_capacity(capacity + 21);
        b.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
        b.extend_from_slice(&0i32.to_be_bytes()); // flags
        b.extend_from_slice(&0i32.to_be_bytes()); // header extension length
        CopyBuf(b)
    }

    fn row(&mut self, fields: i16) {
        self.0.extend_from_slice(&fields.to_be_bytes());
    }

    fn null(&mut self) {
        self.0.extend_from_slice(&(-1i32).to_be_bytes());
    }

    fn bytes(&mut self, v: &[u8]) -> Result<()> {
        let len = i32::try_from(v.len())
            .map_err(|_| StoreError::Database(sqlx::Error::Protocol("value too long".into())))?;
        self.0.extend_from_slice(&len.to_be_bytes());
        self.0.extend_from_slice(v);
        Ok(())
    }

    fn text(&mut self, v: &str) -> Result<()> {
        self.bytes(v.as_bytes())
    }

    fn int8(&mut self, v: i64) {
        self.0.extend_from_slice(&8i32.to_be_bytes());
        self.0.extend_from_slice(&v.to_be_bytes());
    }

    fn opt_int8(&mut self, v: Option<i64>) {
        match v {
            Some(v) => self.int8(v),
            None => self.null(),
        }
    }

    fn bool(&mut self, v: bool) {
        self.0.extend_from_slice(&1i32.to_be_bytes());
        self.0.push(u8::from(v));
    }

    fn finish(mut self) -> Vec<u8> {
        self.0.extend_from_slice(&(-1i16).to_be_bytes());
        self.0
    }
}

/// Runs `COPY {statement} FROM STDIN (FORMAT binary)` with `data`; checks the row count.
async fn copy_in(
    conn: &mut PgConnection,
    statement: &str,
    data: Vec<u8>,
    rows: usize,
) -> Result<()> {
    let mut copy = conn
        .copy_in_raw(&format!("COPY {statement} FROM STDIN (FORMAT binary)"))
        .await?;
    if let Err(e) = copy.send(data).await {
        let _ = copy.abort("send failed").await;
        return Err(e.into());
    }
    let n = copy.finish().await?;
    if n != rows as u64 {
        return Err(sqlx::Error::Protocol("COPY row count mismatch".into()).into());
    }
    Ok(())
}

/// The session task's state: the transaction, the first error of a queued job, and the
/// records waiting for the next `COPY`.
struct PgWorker {
    tx: Option<Transaction<'static, Postgres>>,
    error: Option<StoreError>,
    failed: bool,
    /// Ids of the records copied so far, in insertion order.
    ids: Vec<i64>,
    pending: Vec<NewRecord>,
    pending_now: i64,
}

fn session_gone() -> StoreError {
    StoreError::Database(sqlx::Error::Protocol(
        "the PostgreSQL vault session ended".into(),
    ))
}

fn skipped() -> StoreError {
    // Reported only if a caller ignored an earlier error and went on.
    StoreError::Database(sqlx::Error::Protocol(
        "an earlier statement of this transaction failed".into(),
    ))
}

impl PgWorker {
    fn conn(&mut self) -> Result<&mut PgConnection> {
        self.tx.as_deref_mut().ok_or_else(session_gone)
    }

    /// Copies the buffered records (ids from the sequence first).
    async fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let records = std::mem::take(&mut self.pending);
        let now = self.pending_now;
        let conn = self.conn()?;
        let mut ids: Vec<i64> = sqlx::query_scalar(
            "SELECT nextval(pg_get_serial_sequence('vault_records', 'id')) \
             FROM generate_series(1, $1)",
        )
        .bind(records.len() as i64)
        .fetch_all(&mut *conn)
        .await?;
        if ids.len() != records.len() {
            return Err(sqlx::Error::Protocol("short id allocation".into()).into());
        }
        ids.sort_unstable();
        let mut buf = CopyBuf::new(records.iter().map(|r| r.payload.len() + 160).sum());
        for (r, id) in records.iter().zip(&ids) {
            buf.row(12);
            buf.int8(*id);
            buf.text(&r.subject_id)?;
            buf.text(&r.purpose)?;
            buf.text(&r.category)?;
            buf.bytes(&r.payload)?;
            buf.text(&r.source)?;
            buf.int8(r.collected_at);
            buf.opt_int8(r.anchor_at);
            buf.opt_int8(r.deadline);
            buf.bool(r.legal_hold);
            buf.bool(r.restricted);
            buf.int8(now);
        }
        copy_in(
            conn,
            "vault_records (id, subject_id, purpose, category, payload, source, collected_at, \
             anchor_at, deadline, legal_hold, restricted, updated_at)",
            buf.finish(),
            records.len(),
        )
        .await?;
        self.ids.extend(ids);
        Ok(())
    }
}

/// A bulk vault transaction on PostgreSQL (see the module documentation).
pub(crate) struct PgSession {
    jobs: tokio::sync::mpsc::UnboundedSender<Job>,
}

impl PgSession {
    /// Begins a transaction on a connection of `pool`, owned by a new task.
    pub(crate) async fn begin(pool: &PgPool) -> Result<Self> {
        let tx = pool.begin().await?;
        let (jobs, mut rx) = tokio::sync::mpsc::unbounded_channel::<Job>();
        let mut worker = PgWorker {
            tx: Some(tx),
            error: None,
            failed: false,
            ids: Vec::new(),
            pending: Vec::new(),
            pending_now: 0,
        };
        // Ends when the session is dropped; the transaction, if not committed, rolls back then.
        tokio::spawn(async move {
            while let Some(job) = rx.recv().await {
                job(&mut worker).await;
            }
        });
        Ok(PgSession { jobs })
    }

    /// Runs `f` on the session task after everything queued before it (buffered records
    /// included), and waits for its answer or for the error of a queued job.
    async fn call<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'a> FnOnce(&'a mut PgWorker) -> BoxFut<'a, Result<T>> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job = job(move |w| {
            Box::pin(async move {
                let r = if let Some(e) = w.error.take() {
                    w.failed = true;
                    Err(e)
                } else if w.failed {
                    Err(skipped())
                } else {
                    let r = match w.flush().await {
                        Ok(()) => f(w).await,
                        Err(e) => Err(e),
                    };
                    if r.is_err() {
                        w.failed = true;
                    }
                    r
                };
                let _ = tx.send(r);
            })
        });
        self.jobs.send(job).map_err(|_| session_gone())?;
        rx.await.map_err(|_| session_gone())?
    }

    /// Queues `f` without waiting: its error, if any, is returned by the next [`Self::call`].
    fn queue<F>(&self, f: F) -> Result<()>
    where
        F: for<'a> FnOnce(&'a mut PgWorker) -> BoxFut<'a, Result<()>> + Send + 'static,
    {
        let job = job(move |w| {
            Box::pin(async move {
                if w.error.is_none()
                    && !w.failed
                    && let Err(e) = f(w).await
                {
                    w.error = Some(e);
                }
            })
        });
        self.jobs.send(job).map_err(|_| session_gone())
    }

    pub(crate) async fn subjects_by_index(
        &self,
        indexes: Vec<Vec<u8>>,
    ) -> Result<Vec<(Vec<u8>, String)>> {
        if indexes.is_empty() {
            return Ok(Vec::new());
        }
        self.call(move |w| {
            Box::pin(async move {
                let rows = sqlx::query(
                    "SELECT blind_index, subject_id FROM vault_identifiers \
                     WHERE blind_index = ANY($1)",
                )
                .bind(&indexes)
                .fetch_all(w.conn()?)
                .await?;
                rows.iter()
                    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                    .collect()
            })
        })
        .await
    }

    pub(crate) async fn subjects(&self, ids: Vec<String>) -> Result<Vec<StoredSubject>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.call(move |w| {
            Box::pin(async move {
                let rows = sqlx::query(
                    "SELECT id, wrapped_key, key_id, created_at FROM vault_subjects \
                     WHERE id = ANY($1)",
                )
                .bind(&ids)
                .fetch_all(w.conn()?)
                .await?;
                rows.iter()
                    .map(|r| {
                        Ok(StoredSubject {
                            id: r.try_get(0)?,
                            wrapped_key: r.try_get(1)?,
                            key_id: r.try_get(2)?,
                            created_at: r.try_get(3)?,
                        })
                    })
                    .collect()
            })
        })
        .await
    }

    pub(crate) async fn events(&self, subject_ids: Vec<String>) -> Result<Events> {
        if subject_ids.is_empty() {
            return Ok(Events::new());
        }
        self.call(move |w| {
            Box::pin(async move {
                let rows = sqlx::query(
                    "SELECT subject_id, purpose, event, at FROM vault_events \
                     WHERE subject_id = ANY($1)",
                )
                .bind(&subject_ids)
                .fetch_all(w.conn()?)
                .await?;
                rows.iter()
                    .map(|r| Ok(((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?), r.try_get(3)?)))
                    .collect()
            })
        })
        .await
    }

    /// Queues the subjects' `COPY`.
    pub(crate) fn insert_subjects(&self, subjects: Vec<StoredSubject>) -> Result<()> {
        if subjects.is_empty() {
            return Ok(());
        }
        self.queue(move |w| {
            Box::pin(async move {
                w.flush().await?;
                let mut buf = CopyBuf::new(subjects.len() * 160);
                for s in &subjects {
                    buf.row(4);
                    buf.text(&s.id)?;
                    buf.bytes(&s.wrapped_key)?;
                    buf.text(&s.key_id)?;
                    buf.int8(s.created_at);
                }
                copy_in(
                    w.conn()?,
                    "vault_subjects (id, wrapped_key, key_id, created_at)",
                    buf.finish(),
                    subjects.len(),
                )
                .await
            })
        })
    }

    /// Queues the identifiers' `COPY` (an index that exists already is a unique violation).
    pub(crate) fn insert_identifiers(&self, identifiers: Vec<StoredIdentifier>) -> Result<()> {
        if identifiers.is_empty() {
            return Ok(());
        }
        self.queue(move |w| {
            Box::pin(async move {
                w.flush().await?;
                let mut buf = CopyBuf::new(identifiers.len() * 120);
                for x in &identifiers {
                    buf.row(4);
                    buf.bytes(&x.blind_index)?;
                    buf.text(&x.subject_id)?;
                    buf.text(&x.kind)?;
                    buf.int8(x.created_at);
                }
                copy_in(
                    w.conn()?,
                    "vault_identifiers (blind_index, subject_id, kind, created_at)",
                    buf.finish(),
                    identifiers.len(),
                )
                .await
            })
        })
    }

    /// Queues records: the task buffers them and copies [`COPY_ROWS`] at a time.
    pub(crate) fn insert_records(&self, records: Vec<NewRecord>, now: i64) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        self.queue(move |w| {
            Box::pin(async move {
                if !w.pending.is_empty() && w.pending_now != now {
                    w.flush().await?;
                }
                w.pending_now = now;
                w.pending.extend(records);
                if w.pending.len() >= COPY_ROWS {
                    w.flush().await?;
                }
                Ok(())
            })
        })
    }

    /// The ids of every record inserted so far, in insertion order.
    pub(crate) async fn record_ids(&self) -> Result<Vec<i64>> {
        self.call(|w| Box::pin(async move { Ok(std::mem::take(&mut w.ids)) }))
            .await
    }

    /// Locks the audit chain head until commit and returns it (sequence number and hash).
    pub(crate) async fn lock_audit_head(&self) -> Result<(i64, [u8; 32])> {
        self.call(|w| {
            Box::pin(async move {
                let row =
                    sqlx::query("UPDATE audit_head SET seq = seq WHERE id = 1 RETURNING seq, hash")
                        .fetch_one(w.conn()?)
                        .await?;
                let seq: i64 = row.try_get(0)?;
                let stored: Vec<u8> = row.try_get(1)?;
                Ok((seq, crate::vault_batch::head_hash(&stored)))
            })
        })
        .await
    }

    /// Queues the `COPY` of audit entries already hashed (`rows`: sequence number, entry,
    /// hash) and the move of the chain head to the last of them.
    pub(crate) fn insert_audit(
        &self,
        rows: Vec<(i64, crate::NewAuditEntry, [u8; 32])>,
    ) -> Result<()> {
        let Some((head_seq, _, head_hash)) = rows.last().cloned() else {
            return Ok(());
        };
        self.queue(move |w| {
            Box::pin(async move {
                w.flush().await?;
                let mut buf = CopyBuf::new(rows.len() * 200);
                for (seq, e, h) in &rows {
                    buf.row(8);
                    buf.int8(*seq);
                    buf.int8(e.time_ms);
                    buf.text(&e.actor)?;
                    buf.text(&e.action)?;
                    buf.text(&e.purpose)?;
                    match &e.subject_commitment {
                        Some(c) => buf.bytes(c)?,
                        None => buf.null(),
                    }
                    buf.text(&e.details)?;
                    buf.bytes(h)?;
                }
                let conn = w.conn()?;
                copy_in(
                    &mut *conn,
                    "audit_log (seq, time_ms, actor, action, purpose, subject_commitment, details, hash)",
                    buf.finish(),
                    rows.len(),
                )
                .await?;
                sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
                    .bind(head_seq)
                    .bind(&head_hash[..])
                    .execute(conn)
                    .await?;
                Ok(())
            })
        })
    }

    /// Commits, after every queued job succeeded.
    pub(crate) async fn commit(self) -> Result<()> {
        self.call(|w| {
            Box::pin(async move {
                let tx = w.tx.take().ok_or_else(session_gone)?;
                tx.commit().await?;
                Ok(())
            })
        })
        .await
    }
}

/// Which expired records one PostgreSQL purge batch may take ([`VaultTx::purge_expired_slice`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PurgeSlice {
    /// This worker's part of the subjects, `0..parts`: a record belongs to part
    /// `hashtext(subject_id) mod parts`, so all of a subject's records belong to the same part.
    pub part: u32,
    /// How many parts the subjects are split into (1: no split).
    pub parts: u32,
    /// Only deadlines at or after this one (the previous batch's last deadline): the batch
    /// starts where the previous one stopped instead of skipping its deleted index entries.
    pub from_deadline: Option<i64>,
}

impl PurgeSlice {
    /// Everything, from the earliest deadline.
    pub const ALL: PurgeSlice = PurgeSlice {
        part: 0,
        parts: 1,
        from_deadline: None,
    };
}

/// What one PostgreSQL purge batch did, and where the next one starts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PurgeStep {
    pub batch: PurgedBatch,
    /// Expired records the batch picked (those put on legal hold meanwhile are picked but kept):
    /// fewer than the limit means nothing more was expired when the batch started.
    pub picked: u64,
    /// The latest deadline among the deleted records.
    pub last_deadline: Option<i64>,
}

impl VaultTx {
    /// PostgreSQL: deletes up to `limit` records past their deadline (not on legal hold) and
    /// shreds the subjects this leaves without any record, in one statement.
    pub(crate) async fn purge_expired_pg(&mut self, now: i64, limit: i64) -> Result<PurgedBatch> {
        Ok(self
            .purge_expired_slice(now, limit, PurgeSlice::ALL)
            .await?
            .batch)
    }

    /// PostgreSQL: deletes up to `limit` records of `slice` past their deadline (not on legal
    /// hold) and shreds the subjects this leaves without any record, in one statement.
    ///
    /// The ids come from the deadline index as one array (`= ANY(ARRAY(…))`): written as
    /// `id IN (SELECT …)`, PostgreSQL planned a hash semi-join over a sequential scan of the
    /// whole table for every batch; with the array it looks the rows up through the primary
    /// key, in id order. Nothing but the counts crosses the connection (the first version
    /// returned the 100,000 deleted rows of a batch to the client, and then sent their subjects
    /// back 500 at a time to find and shred the emptied ones).
    ///
    /// The `DELETE` checks the deadline and the hold again: a hold placed by a transaction
    /// that commits while this statement waits for the record's row lock wins (PostgreSQL
    /// re-evaluates the `DELETE`'s own conditions on the updated row; the array of ids alone
    /// would have deleted it). Such a record is picked but neither deleted nor counted.
    ///
    /// A subject is emptied when the batch deleted as many of its records as the statement's
    /// snapshot shows it to have (the deleted rows are still visible to the statement's own
    /// queries, so the count is taken before the deletion); its identifiers, events and
    /// subject row (the wrapped key: crypto-shredding) are deleted by the same statement. The
    /// counts are probed in the order of the subjects' first deleted record, i.e. in heap order,
    /// so that the probes mostly find the pages the deletion has just visited. A record written
    /// concurrently for such a subject is not in that count: the subject's deletion then waits
    /// for the writer's lock on the subject row, and the reference check on `vault_subjects`
    /// (migration 0012) fails the batch, which is rolled back whole and done again by the next
    /// run.
    ///
    /// With `slice.parts` > 1, batches of different parts touch disjoint sets of subjects
    /// (their records, identifiers, events and subject rows), so they can run at the same time
    /// on different connections: each one's emptiness count sees every record of its subjects
    /// that another transaction could delete only if that transaction is of the same part.
    pub async fn purge_expired_slice(
        &mut self,
        now: i64,
        limit: i64,
        slice: PurgeSlice,
    ) -> Result<PurgeStep> {
        if self.engine != crate::Engine::Postgres {
            return Err(StoreError::Database(sqlx::Error::Protocol(
                "purge_expired_slice is PostgreSQL's".into(),
            )));
        }
        let parts = i64::from(slice.parts.max(1));
        let part = i64::from(slice.part);
        if part >= parts {
            return Err(StoreError::Database(sqlx::Error::Protocol(
                "purge slice out of range".into(),
            )));
        }
        // The split condition only when there is a split (it costs a hash per candidate row).
        let split = if parts > 1 {
            "AND mod(hashtext(subject_id) & 2147483647, $4) = $5"
        } else {
            "AND $4::BIGINT > $5::BIGINT"
        };
        let sql = format!(
            "WITH picked AS MATERIALIZED ( \
                 SELECT ARRAY(SELECT id FROM vault_records \
                 WHERE deadline <= $1 AND deadline >= $3 AND legal_hold = FALSE {split} \
                 ORDER BY deadline LIMIT $2) AS ids), \
             doomed AS MATERIALIZED ( \
                 DELETE FROM vault_records WHERE id = ANY((SELECT ids FROM picked)::BIGINT[]) \
                 AND deadline <= $1 AND legal_hold = FALSE \
                 RETURNING id, subject_id, purpose, deadline), \
             touched AS MATERIALIZED ( \
                 SELECT subject_id, COUNT(*) AS n FROM doomed GROUP BY subject_id \
                 ORDER BY min(id)), \
             emptied AS MATERIALIZED ( \
                 SELECT t.subject_id AS id FROM touched t WHERE t.n = \
                 (SELECT COUNT(*) FROM vault_records r WHERE r.subject_id = t.subject_id)), \
             gone_identifiers AS ( \
                 DELETE FROM vault_identifiers i USING emptied e WHERE i.subject_id = e.id), \
             gone_events AS ( \
                 DELETE FROM vault_events v USING emptied e WHERE v.subject_id = e.id), \
             gone_subjects AS ( \
                 DELETE FROM vault_subjects s USING emptied e WHERE s.id = e.id RETURNING 1) \
             SELECT p.purpose, p.n, s.shredded, s.picked, s.last FROM ( \
                 SELECT (SELECT COUNT(*) FROM gone_subjects) AS shredded, \
                 (SELECT cardinality(ids)::BIGINT FROM picked) AS picked, \
                 (SELECT max(deadline) FROM doomed) AS last) s \
             LEFT JOIN (SELECT purpose, COUNT(*) AS n FROM doomed GROUP BY purpose) p ON TRUE"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now)
            .bind(limit)
            .bind(slice.from_deadline.unwrap_or(i64::MIN))
            .bind(parts)
            .bind(part)
            .fetch_all(&mut *self.tx)
            .await?;
        let mut step = PurgeStep::default();
        for r in &rows {
            step.batch.subjects_shredded = r.try_get::<i64, _>(2)? as u64;
            step.picked = r.try_get::<Option<i64>, _>(3)?.unwrap_or(0) as u64;
            step.last_deadline = r.try_get(4)?;
            if let Some(purpose) = r.try_get::<Option<String>, _>(0)? {
                let n = r.try_get::<i64, _>(1)? as u64;
                step.batch.per_purpose.insert(purpose, n);
                step.batch.records += n;
            }
        }
        Ok(step)
    }
}
