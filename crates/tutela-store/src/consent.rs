//! Consent records: append-only proof of consent (GDPR art. 7(1)).
//!
//! A record holds a random consent id (it identifies no one), the choice per cookie category
//! (`functional`, `analytics`, `targeting`: 1 granted, 0 refused, NULL not answered) and per
//! service (JSON), the register revision shown, how and where the choice was made, and its
//! deadline. A change of mind or a withdrawal is a new record; the table refuses updates, and rows
//! are deleted only by [`Store::purge_consent_records`] once their deadline has passed.
//!
//! High rates go through [`ConsentWriter`]: one writer drains a bounded queue, one transaction per
//! flush (group commit): on an SQLite file a thread with its own connection and a cached
//! single-row insert (`consent_fast`), elsewhere a task with multi-row inserts. The caller's future resolves only after the commit,
//! so an acknowledged record survives a crash; a full queue is refused at once ([`AppendError::Full`])
//! instead of growing without bound.

use sqlx::Row;
use tokio::sync::{mpsc, oneshot};

use crate::{Engine, Result, Store};

/// One consent record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsentRecord {
    /// Random id of this record (a UUID).
    pub record_id: String,
    /// Random id shared by the successive records of one browser's choices (a UUID).
    pub consent_id: String,
    pub recorded_at: i64,
    /// The site's origin, e.g. `https://www.example.com`.
    pub site: Option<String>,
    /// Register revision the person was shown.
    pub revision: String,
    /// Hash of the register in force when the record was made.
    pub register_hash: String,
    /// `banner`, `api` or `gpc`.
    pub method: String,
    /// `tutela`, `vanilla-cookieconsent` or `klaro`.
    pub source: String,
    /// Whether the browser sent a Global Privacy Control signal.
    pub gpc: bool,
    pub language: Option<String>,
    pub functional: Option<bool>,
    pub analytics: Option<bool>,
    pub targeting: Option<bool>,
    /// Choices per service, JSON `{"category": {"service": true}}`.
    pub services: String,
    /// The register purpose and data category the record is kept under.
    pub purpose: String,
    pub category: String,
    /// When the record is deleted (unix seconds).
    pub delete_after: i64,
}

/// The cookie categories a record has a column for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsentCategory {
    Functional,
    Analytics,
    Targeting,
}

impl ConsentCategory {
    pub const ALL: [ConsentCategory; 3] = [
        ConsentCategory::Functional,
        ConsentCategory::Analytics,
        ConsentCategory::Targeting,
    ];

    /// The column (and category name).
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentCategory::Functional => "functional",
            ConsentCategory::Analytics => "analytics",
            ConsentCategory::Targeting => "targeting",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// Consent figures of one UTC day: how many records, and per category how many granted and refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsentDay {
    /// Days since 1970-01-01 (UTC).
    pub day: i64,
    pub records: i64,
    pub gpc: i64,
    /// `(granted, refused)` per category, in [`ConsentCategory::ALL`] order.
    pub categories: [(i64, i64); 3],
}

const COLUMNS: &str = "record_id, consent_id, recorded_at, site, revision, register_hash, method, \
                       source, gpc, language, functional, analytics, targeting, services, purpose, \
                       category, delete_after";
const NCOLS: usize = 17;

/// Most records written in one multi-row insert.
pub const MAX_CONSENT_BATCH: usize = 256;

fn flag(v: Option<bool>) -> Option<i64> {
    v.map(i64::from)
}

fn from_row(row: &sqlx::any::AnyRow) -> Result<ConsentRecord> {
    let opt = |name: &str| -> Result<Option<bool>> {
        Ok(row.try_get::<Option<i64>, _>(name)?.map(|v| v != 0))
    };
    Ok(ConsentRecord {
        record_id: row.try_get("record_id")?,
        consent_id: row.try_get("consent_id")?,
        recorded_at: row.try_get("recorded_at")?,
        site: row.try_get("site")?,
        revision: row.try_get("revision")?,
        register_hash: row.try_get("register_hash")?,
        method: row.try_get("method")?,
        source: row.try_get("source")?,
        gpc: row.try_get::<i64, _>("gpc")? != 0,
        language: row.try_get("language")?,
        functional: opt("functional")?,
        analytics: opt("analytics")?,
        targeting: opt("targeting")?,
        services: row.try_get("services")?,
        purpose: row.try_get("purpose")?,
        category: row.try_get("category")?,
        delete_after: row.try_get("delete_after")?,
    })
}

impl Store {
    /// Appends records in one transaction (one multi-row insert per [`MAX_CONSENT_BATCH`]).
    /// (The one query of this module whose placeholders differ per engine.)
    pub async fn insert_consent_records(&self, records: &[ConsentRecord]) -> Result<()> {
        let mut tx = self.begin_write().await?;
        for chunk in records.chunks(MAX_CONSENT_BATCH) {
            let mut sql = format!("INSERT INTO consent_records ({COLUMNS}) VALUES ");
            for i in 0..chunk.len() {
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push('(');
                for j in 0..NCOLS {
                    if j > 0 {
                        sql.push_str(", ");
                    }
                    // SQLite: anonymous placeholders; sqlx looks numbered ones up one by one,
                    // which costs O(n²) for a batch of thousands of parameters.
                    match self.engine() {
                        Engine::Sqlite => sql.push('?'),
                        Engine::Postgres => sql.push_str(&format!("${}", i * NCOLS + j + 1)),
                    }
                }
                sql.push(')');
            }
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for r in chunk {
                q = q
                    .bind(&r.record_id)
                    .bind(&r.consent_id)
                    .bind(r.recorded_at)
                    .bind(&r.site)
                    .bind(&r.revision)
                    .bind(&r.register_hash)
                    .bind(&r.method)
                    .bind(&r.source)
                    .bind(i64::from(r.gpc))
                    .bind(&r.language)
                    .bind(flag(r.functional))
                    .bind(flag(r.analytics))
                    .bind(flag(r.targeting))
                    .bind(&r.services)
                    .bind(&r.purpose)
                    .bind(&r.category)
                    .bind(r.delete_after);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The records of one consent id, oldest first (at most `limit`, the newest ones).
    pub async fn consent_records(
        &self,
        consent_id: &str,
        limit: i64,
    ) -> Result<Vec<ConsentRecord>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM consent_records WHERE consent_id = $1 ORDER BY seq DESC LIMIT $2"
        )))
        .bind(consent_id)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        let mut out = rows.iter().map(from_row).collect::<Result<Vec<_>>>()?;
        out.reverse();
        Ok(out)
    }

    /// The latest answer of `consent_id` for `category`: Some(true) granted, Some(false) refused or
    /// withdrawn, None never answered (no consent). This is what a collector asks before storing
    /// data whose purpose is based on consent.
    pub async fn consent_granted(
        &self,
        consent_id: &str,
        category: ConsentCategory,
    ) -> Result<Option<bool>> {
        let col = category.as_str();
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {col} FROM consent_records WHERE consent_id = $1 AND {col} IS NOT NULL \
             ORDER BY seq DESC LIMIT 1"
        )))
        .bind(consent_id)
        .fetch_optional(self.pool())
        .await?;
        Ok(row
            .map(|r| r.try_get::<i64, _>(0))
            .transpose()?
            .map(|v| v != 0))
    }

    /// Records made in `[from, to)` (unix seconds), in order, at most `limit`, after the record with
    /// sequence `after` (keyset pagination for exports). Returns each record with its sequence.
    pub async fn consent_records_between(
        &self,
        from: i64,
        to: i64,
        after: i64,
        limit: i64,
    ) -> Result<Vec<(i64, ConsentRecord)>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT seq, {COLUMNS} FROM consent_records \
             WHERE recorded_at >= $1 AND recorded_at < $2 AND seq > $3 ORDER BY seq LIMIT $4"
        )))
        .bind(from)
        .bind(to)
        .bind(after)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get::<i64, _>("seq")?, from_row(r)?)))
            .collect()
    }

    /// Figures per UTC day for records made in `[from, to)`.
    pub async fn consent_days(&self, from: i64, to: i64) -> Result<Vec<ConsentDay>> {
        let mut sums = String::new();
        for c in ConsentCategory::ALL {
            let col = c.as_str();
            sums.push_str(&format!(
                ", CAST(SUM(CASE WHEN {col} = 1 THEN 1 ELSE 0 END) AS BIGINT) AS {col}_granted\
                 , CAST(SUM(CASE WHEN {col} = 0 THEN 1 ELSE 0 END) AS BIGINT) AS {col}_refused"
            ));
        }
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT recorded_at / 86400 AS day, COUNT(*) AS records, CAST(SUM(gpc) AS BIGINT) AS gpc{sums} \
             FROM consent_records WHERE recorded_at >= $1 AND recorded_at < $2 \
             GROUP BY recorded_at / 86400 ORDER BY day"
        )))
        .bind(from)
        .bind(to)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let pair = |c: ConsentCategory| -> Result<(i64, i64)> {
                    Ok((
                        r.try_get(format!("{}_granted", c.as_str()).as_str())?,
                        r.try_get(format!("{}_refused", c.as_str()).as_str())?,
                    ))
                };
                Ok(ConsentDay {
                    day: r.try_get("day")?,
                    records: r.try_get("records")?,
                    gpc: r.try_get("gpc")?,
                    categories: [
                        pair(ConsentCategory::Functional)?,
                        pair(ConsentCategory::Analytics)?,
                        pair(ConsentCategory::Targeting)?,
                    ],
                })
            })
            .collect()
    }

    /// Deletes the records whose deadline has passed; returns how many went.
    pub async fn purge_consent_records(&self, now: i64) -> Result<u64> {
        let r = sqlx::query("DELETE FROM consent_records WHERE delete_after <= $1")
            .bind(now)
            .execute(self.pool())
            .await?;
        Ok(r.rows_affected())
    }
}

/// Why a record was not appended.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The queue is full: answer 503 with Retry-After; nothing was written.
    #[error("the consent queue is full")]
    Full,
    /// The writer has stopped (the server is shutting down).
    #[error("the consent writer has stopped")]
    Closed,
    /// The database refused the write; the message holds no personal data.
    #[error("could not write the consent record: {0}")]
    Failed(String),
}

pub(crate) struct Job {
    pub(crate) record: ConsentRecord,
    pub(crate) done: oneshot::Sender<Result<(), String>>,
}

/// The group-commit writer of consent records (see the module documentation).
#[derive(Clone, Debug)]
pub struct ConsentWriter {
    tx: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Job")
    }
}

impl ConsentWriter {
    /// Starts the writer with a queue of `capacity` records: on an SQLite file, a thread with its
    /// own connection (see `consent_fast`); otherwise a task on the current Tokio runtime. It
    /// stops when every clone of the writer has been dropped, after writing what was queued.
    pub fn spawn(store: Store, capacity: usize) -> Self {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        if store.engine() == Engine::Sqlite
            && let Some(path) = store.sqlite_path()
        {
            match crate::consent_fast::open(path) {
                Ok(conn) => {
                    crate::consent_fast::start(conn, rx);
                    return ConsentWriter { tx };
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not open the consent writer's SQLite connection; writing through the pool");
                }
            }
        }
        tokio::spawn(run(store, rx));
        ConsentWriter { tx }
    }

    /// Queues a record and waits until it is committed.
    pub async fn append(&self, record: ConsentRecord) -> Result<(), AppendError> {
        let (done, wait) = oneshot::channel();
        self.tx
            .try_send(Job { record, done })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => AppendError::Full,
                mpsc::error::TrySendError::Closed(_) => AppendError::Closed,
            })?;
        match wait.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(msg)) => Err(AppendError::Failed(msg)),
            Err(_) => Err(AppendError::Closed),
        }
    }
}

async fn run(store: Store, mut rx: mpsc::Receiver<Job>) {
    let mut jobs: Vec<Job> = Vec::with_capacity(MAX_CONSENT_BATCH);
    while rx.recv_many(&mut jobs, MAX_CONSENT_BATCH).await > 0 {
        let (records, waiters): (Vec<ConsentRecord>, Vec<_>) =
            jobs.drain(..).map(|j| (j.record, j.done)).unzip();
        metrics::histogram!("tutela_consent_batch_size").record(records.len() as f64);
        match store.insert_consent_records(&records).await {
            Ok(()) => {
                for w in waiters {
                    let _ = w.send(Ok(()));
                }
            }
            Err(err) if records.len() > 1 => {
                // One bad record must not sink the others: write them one by one.
                tracing::warn!(error = %err, batch = records.len(), "consent batch failed; retrying records one by one");
                for (r, w) in records.into_iter().zip(waiters) {
                    let res = store
                        .insert_consent_records(std::slice::from_ref(&r))
                        .await
                        .map_err(|e| e.to_string());
                    let _ = w.send(res);
                }
            }
            Err(err) => {
                for w in waiters {
                    let _ = w.send(Err(err.to_string()));
                }
            }
        }
    }
}
