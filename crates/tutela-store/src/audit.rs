//! The audit log's raw persistence: an append-only table of hash-chained entries and the chain
//! head. The hashes are computed by the caller (`tutela-crypto`'s `chain_hash`); this module
//! serialises appends (the head row is locked for the length of the transaction, on both
//! engines and across nodes) and reads entries back in sequence order for verification.

use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use crate::vault::{VaultTx, values_list};
use crate::{Result, Store};

/// An entry to append. `details` is JSON and holds no personal data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewAuditEntry {
    pub time_ms: i64,
    pub actor: String,
    pub action: String,
    pub purpose: String,
    pub subject_commitment: Option<[u8; 32]>,
    pub details: String,
}

/// A stored entry with its sequence number and chain hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRow {
    pub seq: i64,
    pub time_ms: i64,
    pub actor: String,
    pub action: String,
    pub purpose: String,
    pub subject_commitment: Option<Vec<u8>>,
    pub details: String,
    pub hash: Vec<u8>,
}

fn row_from(row: &AnyRow) -> Result<AuditRow> {
    Ok(AuditRow {
        seq: row.try_get("seq")?,
        time_ms: row.try_get("time_ms")?,
        actor: row.try_get("actor")?,
        action: row.try_get("action")?,
        purpose: row.try_get("purpose")?,
        subject_commitment: row.try_get("subject_commitment")?,
        details: row.try_get("details")?,
        hash: row.try_get("hash")?,
    })
}

impl VaultTx {
    /// Appends `entries` after the current chain head. `hash(prev_hash, seq, entry)` computes
    /// each entry's chain hash. Returns the sequence number of the last entry appended.
    pub async fn append_audit<F>(&mut self, entries: &[NewAuditEntry], hash: F) -> Result<i64>
    where
        F: Fn(&[u8; 32], i64, &NewAuditEntry) -> [u8; 32],
    {
        // Locks the head row until commit: appends are serialised, across nodes too.
        let head = sqlx::query("UPDATE audit_head SET seq = seq WHERE id = 1 RETURNING seq, hash")
            .fetch_one(&mut *self.tx)
            .await?;
        let mut seq: i64 = head.try_get(0)?;
        let stored: Vec<u8> = head.try_get(1)?;
        let mut prev = crate::vault_batch::head_hash(&stored);
        if entries.is_empty() {
            return Ok(seq);
        }
        for chunk in entries.chunks(500) {
            let values = values_list(self.engine, chunk.len(), 8);
            let sql = format!(
                "INSERT INTO audit_log (seq, time_ms, actor, action, purpose, subject_commitment, \
                 details, hash) VALUES {values}"
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for e in chunk {
                seq += 1;
                let h = hash(&prev, seq, e);
                prev = h;
                q = q
                    .bind(seq)
                    .bind(e.time_ms)
                    .bind(&e.actor)
                    .bind(&e.action)
                    .bind(&e.purpose)
                    .bind(e.subject_commitment.map(|c| c.to_vec()))
                    .bind(&e.details)
                    .bind(h.to_vec());
            }
            q.execute(&mut *self.tx).await?;
        }
        sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
            .bind(seq)
            .bind(prev.to_vec())
            .execute(&mut *self.tx)
            .await?;
        Ok(seq)
    }
}

impl Store {
    /// Appends entries in a transaction of their own (see [`VaultTx::append_audit`]).
    pub async fn append_audit<F>(&self, entries: &[NewAuditEntry], hash: F) -> Result<i64>
    where
        F: Fn(&[u8; 32], i64, &NewAuditEntry) -> [u8; 32],
    {
        let mut tx = self.vault_begin().await?;
        let seq = tx.append_audit(entries, hash).await?;
        tx.commit().await?;
        Ok(seq)
    }

    /// Up to `limit` entries with `seq > after_seq`, in sequence order.
    pub async fn audit_entries(&self, after_seq: i64, limit: i64) -> Result<Vec<AuditRow>> {
        let rows = sqlx::query(
            "SELECT seq, time_ms, actor, action, purpose, subject_commitment, details, hash \
             FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after_seq)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(row_from).collect()
    }

    /// The entries about one subject (by its commitment), in sequence order.
    pub async fn audit_entries_for(&self, commitment: &[u8; 32]) -> Result<Vec<AuditRow>> {
        let rows = sqlx::query(
            "SELECT seq, time_ms, actor, action, purpose, subject_commitment, details, hash \
             FROM audit_log WHERE subject_commitment = $1 ORDER BY seq",
        )
        .bind(commitment.to_vec())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(row_from).collect()
    }

    /// The chain head as recorded: sequence number and hash of the newest entry.
    pub async fn audit_head(&self) -> Result<(i64, Vec<u8>)> {
        let row = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_one(self.pool())
            .await?;
        Ok((row.try_get(0)?, row.try_get(1)?))
    }
}
