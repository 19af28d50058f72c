//! The audit log: chain hashes for appends, verification and JSON-lines export.

use serde::Serialize;
use tutela_crypto::{
    AuditEntry, ChainError, ChainErrorKind, ChainHead, FIRST_SEQ, GENESIS_HASH, chain_hash,
    verify_chain_from,
};
use tutela_store::{AuditRow, NewAuditEntry};

use crate::{Result, Vault};

/// Entries read per page while verifying or exporting.
const PAGE: i64 = 10_000;

/// The chain hash of a new entry (used by every append of the vault).
pub(crate) fn hasher(prev: &[u8; 32], seq: i64, e: &NewAuditEntry) -> [u8; 32] {
    chain_hash(
        prev,
        &AuditEntry {
            seq: seq as u64,
            time_unix_ms: e.time_ms,
            actor: e.actor.clone(),
            action: e.action.clone(),
            purpose: e.purpose.clone(),
            subject_commitment: e.subject_commitment,
            details_json: e.details.clone(),
        },
    )
}

/// What a successful verification saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditVerification {
    pub entries: u64,
    /// The last entry's sequence number and hash: record it elsewhere to detect, later, a
    /// rewrite of the whole log from some point on.
    pub head: ChainHead,
}

/// How the log was found broken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuditProblem {
    #[error("{0}")]
    Chain(ChainError),
    #[error(
        "the log ends at entry {last_seq} but its recorded head is entry {head_seq}: entries \
         were removed from the end, or the head was altered"
    )]
    Truncated { last_seq: u64, head_seq: u64 },
    #[error("entry {seq} does not have the hash that was expected of it")]
    AnchorMismatch { seq: u64 },
    #[error(
        "the log has no entry {seq}: it ends at entry {last_seq} (entries were removed from the \
         end, or the anchor comes from another log)"
    )]
    AnchorMissing { seq: u64, last_seq: u64 },
}

impl AuditProblem {
    /// A one-line explanation for operators.
    pub fn explain(&self) -> String {
        match self {
            AuditProblem::Chain(e) => {
                let what = match e.kind {
                    ChainErrorKind::Modified => {
                        "was modified (its content no longer matches the chain)"
                    }
                    ChainErrorKind::Missing => "is missing (an entry was deleted)",
                    ChainErrorKind::Reordered => "is out of order (entries were moved or replayed)",
                };
                format!("audit log broken: entry {} {what}", e.first_bad_seq)
            }
            other => format!("audit log broken: {other}"),
        }
    }
}

fn entry_of(row: &AuditRow, position: usize) -> Result<AuditEntry, ChainError> {
    let subject_commitment = match &row.subject_commitment {
        None => None,
        Some(c) => Some(<[u8; 32]>::try_from(c.as_slice()).map_err(|_| ChainError {
            first_bad_seq: row.seq as u64,
            position,
            kind: ChainErrorKind::Modified,
        })?),
    };
    Ok(AuditEntry {
        seq: row.seq as u64,
        time_unix_ms: row.time_ms,
        actor: row.actor.clone(),
        action: row.action.clone(),
        purpose: row.purpose.clone(),
        subject_commitment,
        details_json: row.details.clone(),
    })
}

fn hash_of(row: &AuditRow) -> [u8; 32] {
    // A stored hash of the wrong length can't match any computed hash.
    <[u8; 32]>::try_from(row.hash.as_slice()).unwrap_or([0xff; 32])
}

/// One entry as exported (JSON lines).
#[derive(Clone, Debug, Serialize)]
pub struct AuditExportEntry {
    pub seq: i64,
    /// RFC 3339, UTC, milliseconds.
    pub time: String,
    pub actor: String,
    pub action: String,
    pub purpose: String,
    /// Hex of the keyed commitment to the subject (not the subject).
    pub subject_commitment: Option<String>,
    pub details: serde_json::Value,
    /// Hex of the chain hash, so the export can be verified on its own.
    pub hash: String,
}

impl Vault {
    /// Appends an entry about no data subject (e.g. an operator signing in to the console):
    /// `details` must hold no personal data and no secret.
    pub async fn audit_event(
        &self,
        actor: &crate::Actor,
        action: &str,
        details: serde_json::Value,
    ) -> Result<()> {
        self.audit_entry(actor, action, "", None, details).await
    }

    /// Appends one entry about data held outside the vault (web analytics): `subject`, when
    /// given, is a stable key of the person (e.g. `analytics_visitor:<site>:<tracker id>`) and is
    /// stored only as its keyed commitment, never in clear. `details` holds no personal data.
    pub async fn audit_entry(
        &self,
        actor: &crate::Actor,
        action: &str,
        purpose: &str,
        subject: Option<&str>,
        details: serde_json::Value,
    ) -> Result<()> {
        let entry = NewAuditEntry {
            time_ms: self.now().as_millisecond(),
            actor: actor.0.clone(),
            action: action.to_string(),
            purpose: purpose.to_string(),
            subject_commitment: subject.map(|s| self.keys.commitment(s)).transpose()?,
            details: details.to_string(),
        };
        self.store.append_audit(&[entry], hasher).await?;
        Ok(())
    }

    /// Verifies the whole chain, page by page, and compares its end with the recorded head.
    /// `anchor`, when given, is an entry `(seq, hash)` recorded earlier from a verification's
    /// head: the log must still have it.
    pub async fn verify_audit(
        &self,
        anchor: Option<(u64, [u8; 32])>,
    ) -> Result<Result<AuditVerification, AuditProblem>> {
        let mut head = ChainHead {
            seq: FIRST_SEQ - 1,
            hash: GENESIS_HASH,
        };
        let mut count = 0u64;
        let mut anchor_seen = false;
        loop {
            let rows = self.store.audit_entries(head.seq as i64, PAGE).await?;
            if rows.is_empty() {
                break;
            }
            let mut entries = Vec::with_capacity(rows.len());
            for (i, r) in rows.iter().enumerate() {
                match entry_of(r, count as usize + i) {
                    Ok(e) => entries.push(e),
                    Err(e) => return Ok(Err(AuditProblem::Chain(e))),
                }
            }
            let hashes: Vec<[u8; 32]> = rows.iter().map(hash_of).collect();
            match verify_chain_from(head, &entries, &hashes) {
                Ok(h) => head = h,
                Err(mut e) => {
                    e.position += count as usize;
                    return Ok(Err(AuditProblem::Chain(e)));
                }
            }
            if let Some((seq, hash)) = anchor
                && let Some(i) = entries.iter().position(|e| e.seq == seq)
            {
                if hashes[i] != hash {
                    return Ok(Err(AuditProblem::AnchorMismatch { seq }));
                }
                anchor_seen = true;
            }
            count += rows.len() as u64;
        }
        if let Some((seq, _)) = anchor
            && !anchor_seen
        {
            return Ok(Err(AuditProblem::AnchorMissing {
                seq,
                last_seq: head.seq,
            }));
        }
        let (head_seq, head_hash) = self.store.audit_head().await?;
        if head_seq as u64 != head.seq || head_hash.as_slice() != head.hash {
            return Ok(Err(AuditProblem::Truncated {
                last_seq: head.seq,
                head_seq: head_seq as u64,
            }));
        }
        Ok(Ok(AuditVerification {
            entries: count,
            head,
        }))
    }

    /// Writes entries with `seq > after` as JSON lines to `out`; returns how many.
    pub async fn export_audit(&self, after: i64, out: &mut dyn std::io::Write) -> Result<u64> {
        let mut last = after;
        let mut n = 0;
        loop {
            let rows = self.store.audit_entries(last, PAGE).await?;
            if rows.is_empty() {
                break;
            }
            for r in &rows {
                let time = jiff::Timestamp::from_millisecond(r.time_ms)
                    .map(|t| format!("{t:.3}"))
                    .unwrap_or_default();
                let e = AuditExportEntry {
                    seq: r.seq,
                    time,
                    actor: r.actor.clone(),
                    action: r.action.clone(),
                    purpose: r.purpose.clone(),
                    subject_commitment: r.subject_commitment.as_ref().map(hex::encode),
                    details: serde_json::from_str(&r.details)
                        .unwrap_or_else(|_| serde_json::Value::String(r.details.clone())),
                    hash: hex::encode(&r.hash),
                };
                let line = serde_json::to_string(&e)
                    .map_err(|e| crate::VaultError::InvalidInput(e.to_string()))?;
                writeln!(out, "{line}").map_err(|e| {
                    crate::VaultError::InvalidInput(format!("cannot write the export: {e}"))
                })?;
                last = r.seq;
                n += 1;
            }
        }
        Ok(n)
    }

    /// The audit entries about one subject (found through its commitment), for the rights
    /// engine and operators.
    pub async fn audit_of_subject(&self, subject_id: &str) -> Result<Vec<AuditRow>> {
        let c = self.keys.commitment(subject_id)?;
        Ok(self.store.audit_entries_for(&c).await?)
    }
}
