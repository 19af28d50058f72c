//! The retention engine: delete every record past its deadline (unless on legal hold), in
//! batches, each batch with its audit entries in the same transaction; then crypto-shred the
//! subjects left without any record.

use std::collections::BTreeMap;

use serde_json::json;
use tutela_store::{Engine, NewAuditEntry};

use crate::{Actor, Result, Vault, VaultError};

/// SQLite: how many expired ids are listed (and held in memory, 8 bytes each) at a time.
const SQLITE_ID_ROUND: i64 = 1_000_000;

/// PostgreSQL: purge workers running at the same time, each on its own connection and part of
/// the subjects (one statement per batch keeps one server backend busy: two use two cores).
const PG_PURGE_PARTS: u32 = 2;

/// What a purge did (or, for a dry run, would do).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PurgeReport {
    pub dry_run: bool,
    /// The instant deadlines were compared with (unix seconds).
    pub now: i64,
    /// Records deleted (or to delete) per purpose.
    pub per_purpose: BTreeMap<String, u64>,
    pub records: u64,
    /// Subjects shredded because nothing remained of them (always 0 for a dry run: it is only
    /// known while deleting).
    pub subjects_shredded: u64,
    pub batches: u64,
}

impl PurgeReport {
    /// Adds one committed batch.
    fn add_batch(&mut self, done: tutela_store::PurgedBatch) {
        for (p, n) in done.per_purpose {
            *self.per_purpose.entry(p).or_default() += n;
        }
        self.records += done.records;
        self.subjects_shredded += done.subjects_shredded;
        self.batches += 1;
    }
}

/// Progress of a purge, for a progress bar: records done out of the total expected.
pub trait PurgeProgress {
    fn update(&mut self, done: u64, total: u64);
}

impl<F: FnMut(u64, u64)> PurgeProgress for F {
    fn update(&mut self, done: u64, total: u64) {
        self(done, total)
    }
}

impl Vault {
    /// Deletes every record whose deadline has passed and that is not on legal hold, `batch`
    /// records per transaction, appending per-purpose counts to the audit log with each
    /// batch. With `dry_run`, only counts what would go (the audit log is not touched).
    pub async fn purge_expired(
        &self,
        actor: &Actor,
        dry_run: bool,
        batch: i64,
        progress: &mut (dyn PurgeProgress + Send),
    ) -> Result<PurgeReport> {
        if !(1..=100_000).contains(&batch) {
            return Err(VaultError::InvalidInput(
                "the purge batch size must be 1 to 100000".into(),
            ));
        }
        let now = self.now().as_second();
        if !dry_run && self.store.engine() == Engine::Sqlite {
            return self.purge_expired_sqlite(actor, now, batch, progress).await;
        }
        let expected = self.store.vault_expired_counts(now).await?;
        let total: u64 = expected.values().sum();
        let mut report = PurgeReport {
            dry_run,
            now,
            ..PurgeReport::default()
        };
        progress.update(0, total);
        if dry_run {
            report.records = total;
            report.per_purpose = expected;
            return Ok(report);
        }
        // PostgreSQL (SQLite went to `purge_expired_sqlite` above): see `purge_pg_part`.
        let shared = std::sync::Mutex::new((report, progress));
        let parts = PG_PURGE_PARTS;
        let run = |part: u32| self.purge_pg_part(actor, now, batch, part, parts, total, &shared);
        futures_util::future::try_join_all((0..parts).map(run)).await?;
        let (report, _) = shared
            .into_inner()
            .map_err(|_| VaultError::InvalidInput("a purge worker panicked".into()))?;
        self.purge_done(&report).await?;
        Ok(report)
    }

    /// PostgreSQL: one of [`PG_PURGE_PARTS`] workers, each on its own connection and
    /// transactions, running at the same time. Worker `part` purges the expired records of its
    /// part of the subjects ([`tutela_store::PurgeSlice`]: by a hash of the subject id), `batch`
    /// records per transaction in deadline order, each batch one statement that also shreds
    /// the subjects it empties, committed with its own audit entries. The parts' subjects are
    /// disjoint, so no two concurrent batches touch the same subject: each one's emptiness
    /// check is as exact as with a single worker. The audit entries of concurrent batches go
    /// into the one chain in commit order (appending locks the chain head until commit).
    ///
    /// Every batch starts from the earliest deadline, as before (a record whose deadline was
    /// moved back, or whose hold was lifted, while the purge runs still goes in this run).
    /// Starting each batch at the previous one's last deadline (`PurgeSlice::from_deadline`)
    /// skips the index entries of the records deleted before it, but showed no measurable gain
    /// (BENCHMARKS.md). A batch that picked fewer than `batch` records is the part's last.
    #[allow(clippy::too_many_arguments)]
    async fn purge_pg_part(
        &self,
        actor: &Actor,
        now: i64,
        batch: i64,
        part: u32,
        parts: u32,
        total: u64,
        shared: &std::sync::Mutex<(PurgeReport, &mut (dyn PurgeProgress + Send))>,
    ) -> Result<()> {
        loop {
            let mut tx = self.store.vault_begin().await?;
            let step = tx
                .purge_expired_slice(
                    now,
                    batch,
                    tutela_store::PurgeSlice {
                        part,
                        parts,
                        from_deadline: None,
                    },
                )
                .await?;
            let done = step.batch;
            if done.records > 0 {
                let audit = purge_audit(actor, &done, now, self.now().as_millisecond());
                tx.append_audit(&audit, crate::audit::hasher).await?;
            }
            tx.commit().await?;
            if done.records > 0 {
                let mut guard = shared
                    .lock()
                    .map_err(|_| VaultError::InvalidInput("a purge worker panicked".into()))?;
                let (report, progress) = &mut *guard;
                report.add_batch(done);
                progress.update(report.records, total.max(report.records));
            }
            if step.picked < batch as u64 {
                return Ok(());
            }
        }
    }

    /// After the last batch: logs the counts and, when anything went, flushes the erased pages
    /// (as after an erasure: old page images of purged rows leave the WAL).
    async fn purge_done(&self, report: &PurgeReport) -> Result<()> {
        if report.records > 0 {
            tracing::info!(
                records = report.records,
                subjects_shredded = report.subjects_shredded,
                batches = report.batches,
                "retention purge"
            );
            self.store.vault_flush_erased().await?;
        }
        Ok(())
    }

    /// SQLite: the expired ids are listed first (from the deadline index, in rounds of
    /// [`SQLITE_ID_ROUND`]), then deleted in ascending id order, `batch` per transaction, on
    /// the store's vault writer thread ([`tutela_store::BatchTx::purge_ids_sqlite`]): each
    /// batch's deletions, shredding and audit entries commit together. Deleting in deadline
    /// order instead visited every table page once per purpose (each purpose's deadlines form
    /// one run).
    ///
    /// The progress total is the number of entries of the deadline index past `now` (an index
    /// count; the exact per-purpose count of a dry run reads every expired row for its legal
    /// hold, 0.8 s of CPU at 1M records): records on legal hold are included, so the bar is
    /// set to done at the end.
    async fn purge_expired_sqlite(
        &self,
        actor: &Actor,
        now: i64,
        batch: i64,
        progress: &mut (dyn PurgeProgress + Send),
    ) -> Result<PurgeReport> {
        let mut report = PurgeReport {
            dry_run: false,
            now,
            ..PurgeReport::default()
        };
        let total = self.store.vault_expired_listed_count(now).await?;
        progress.update(0, total);
        let mut cursor = None;
        loop {
            let (ids, next) = self
                .store
                .vault_expired_ids(now, cursor, SQLITE_ID_ROUND)
                .await?;
            for ids in ids.chunks(batch as usize) {
                let mut tx = self.store.vault_batch_begin().await?;
                let done = tx.purge_ids_sqlite(ids.to_vec(), now).await?;
                if done.records == 0 {
                    // Only records put on hold since the listing: nothing to audit.
                    continue;
                }
                let audit = purge_audit(actor, &done, now, self.now().as_millisecond());
                tx.append_audit(&audit, crate::audit::hasher).await?;
                tx.commit().await?;
                report.add_batch(done);
                progress.update(report.records, total.max(report.records));
            }
            match next {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        self.purge_done(&report).await?;
        progress.update(report.records, report.records);
        Ok(report)
    }
}

/// The audit entries of one purge batch: one per purpose with its count, and one for the
/// subjects shredded (no subject commitment: a purge is not about one person).
fn purge_audit(
    actor: &Actor,
    done: &tutela_store::PurgedBatch,
    now: i64,
    time_ms: i64,
) -> Vec<NewAuditEntry> {
    let mut audit: Vec<NewAuditEntry> = done
        .per_purpose
        .iter()
        .map(|(purpose, n)| NewAuditEntry {
            time_ms,
            actor: actor.0.clone(),
            action: "retention_purge".into(),
            purpose: purpose.clone(),
            subject_commitment: None,
            details: json!({ "records": n, "deadline_before": now }).to_string(),
        })
        .collect();
    if done.subjects_shredded > 0 {
        audit.push(NewAuditEntry {
            time_ms,
            actor: actor.0.clone(),
            action: "retention_shred".into(),
            purpose: String::new(),
            subject_commitment: None,
            details: json!({ "subjects": done.subjects_shredded }).to_string(),
        });
    }
    audit
}
