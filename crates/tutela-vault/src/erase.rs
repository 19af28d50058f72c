//! Erasure: delete a subject's records for all or some purposes, keep those on legal hold or
//! kept under a legal obligation (and say so), and crypto-shred the subject once nothing
//! remains.

use std::collections::BTreeMap;

use serde_json::json;
use tutela_store::NewAuditEntry;

use crate::{Actor, Result, Vault, VaultError, is_subject_id};

/// Which records an erasure covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErasureScope {
    /// Every purpose.
    All,
    /// Only these purposes (each must be in the register).
    Purposes(Vec<String>),
}

/// Why a record survived an erasure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeepReason {
    /// The record is on legal hold (litigation, investigation).
    LegalHold,
    /// The register keeps this data under a legal obligation until its deadline (art. 17(3)(b)).
    LegalObligation {
        /// The law the register names for the period, in English, if any.
        law: Option<String>,
    },
}

impl KeepReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            KeepReason::LegalHold => "legal_hold",
            KeepReason::LegalObligation { .. } => "legal_obligation",
        }
    }
}

/// A record kept despite the erasure: a declared exception to return to the subject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeptRecord {
    pub record_id: i64,
    pub purpose: String,
    pub category: String,
    /// Until when (None: until an event such as the end of the contract, then the legal period).
    pub deadline: Option<i64>,
    pub reason: KeepReason,
}

/// The outcome of an erasure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErasureReport {
    pub subject_id: String,
    /// Records deleted, per purpose.
    pub erased: BTreeMap<String, u64>,
    /// Records kept, with the reason.
    pub kept: Vec<KeptRecord>,
    /// Whether the subject's key, identifiers and events were destroyed (nothing remained).
    pub subject_shredded: bool,
    /// On SQLite: whether the write-ahead log could be checkpointed and truncated at once, so
    /// that no old page image of the erased rows remains (false: it will be at the next
    /// checkpoint; see ARCHITECTURE.md).
    pub files_flushed: bool,
}

impl Vault {
    /// Erases a subject for all or some purposes.
    ///
    /// Records on legal hold, and records kept under a legal obligation whose deadline has not
    /// passed, are kept and returned as declared exceptions. Everything else in scope is
    /// deleted. When no record of the subject remains, its wrapped key, identifiers and events
    /// are deleted too (crypto-shredding: any copy of its ciphertexts, in backups too, becomes
    /// unreadable). On SQLite the WAL is then checkpointed and truncated.
    pub async fn erase(
        &self,
        actor: &Actor,
        subject_id: &str,
        scope: ErasureScope,
    ) -> Result<ErasureReport> {
        if !is_subject_id(subject_id) {
            return Err(VaultError::SubjectNotFound);
        }
        if let ErasureScope::Purposes(ps) = &scope {
            if ps.is_empty() {
                return Err(VaultError::InvalidInput(
                    "name at least one purpose, or erase for all purposes".into(),
                ));
            }
            for p in ps {
                self.purpose(p)?;
            }
        }
        let now_ts = self.now();
        let now = now_ts.as_second();
        let mut tx = self.store.vault_begin().await?;
        if tx.subjects(&[subject_id.to_string()]).await?.is_empty() {
            return Err(VaultError::SubjectNotFound);
        }
        let records = tx.all_records(subject_id).await?;
        let mut report = ErasureReport {
            subject_id: subject_id.to_string(),
            erased: BTreeMap::new(),
            kept: Vec::new(),
            subject_shredded: false,
            files_flushed: true,
        };
        let mut delete = Vec::new();
        for r in &records {
            let in_scope = match &scope {
                ErasureScope::All => true,
                ErasureScope::Purposes(ps) => ps.contains(&r.purpose),
            };
            if !in_scope {
                continue;
            }
            let live = r.deadline.is_none_or(|d| d > now);
            let obligation = self.register.purpose(&r.purpose).and_then(|p| {
                p.retention_for(&r.category)
                    .filter(|rule| rule.is_legal_obligation(&p.legal_basis))
            });
            let reason = if r.legal_hold {
                Some(KeepReason::LegalHold)
            } else if let (true, Some(rule)) = (live, obligation) {
                Some(KeepReason::LegalObligation {
                    law: rule.law.as_ref().map(|t| t.get("en").to_string()),
                })
            } else {
                None
            };
            match reason {
                Some(reason) => report.kept.push(KeptRecord {
                    record_id: r.id,
                    purpose: r.purpose.clone(),
                    category: r.category.clone(),
                    deadline: r.deadline,
                    reason,
                }),
                None => {
                    delete.push(r.id);
                    *report.erased.entry(r.purpose.clone()).or_default() += 1;
                }
            }
        }
        tx.delete_records(subject_id, &delete).await?;
        report.subject_shredded = tx.shred_if_empty(&[subject_id.to_string()]).await? == 1;

        let commitment = Some(self.keys.commitment(subject_id)?);
        let mut kept_per_purpose: BTreeMap<&str, u64> = BTreeMap::new();
        for k in &report.kept {
            *kept_per_purpose.entry(&k.purpose).or_default() += 1;
        }
        let mut purposes: Vec<&str> = report
            .erased
            .keys()
            .map(String::as_str)
            .chain(kept_per_purpose.keys().copied())
            .collect();
        purposes.sort_unstable();
        purposes.dedup();
        let scope_json = match &scope {
            ErasureScope::All => json!("all"),
            ErasureScope::Purposes(ps) => json!(ps),
        };
        let mut audit: Vec<NewAuditEntry> = purposes
            .iter()
            .map(|p| NewAuditEntry {
                time_ms: now_ts.as_millisecond(),
                actor: actor.0.clone(),
                action: "erase".into(),
                purpose: p.to_string(),
                subject_commitment: commitment,
                details: json!({
                    "scope": scope_json,
                    "erased": report.erased.get(*p).copied().unwrap_or(0),
                    "kept": kept_per_purpose.get(p).copied().unwrap_or(0),
                })
                .to_string(),
            })
            .collect();
        if report.subject_shredded || purposes.is_empty() {
            audit.push(NewAuditEntry {
                time_ms: now_ts.as_millisecond(),
                actor: actor.0.clone(),
                action: if report.subject_shredded {
                    "subject_shredded"
                } else {
                    "erase"
                }
                .into(),
                purpose: String::new(),
                subject_commitment: commitment,
                details: json!({ "scope": scope_json, "erased": 0 }).to_string(),
            });
        }
        tx.append_audit(&audit, crate::audit::hasher).await?;
        tx.commit().await?;
        if !delete.is_empty() || report.subject_shredded {
            report.files_flushed = self.store.vault_flush_erased().await?;
            if !report.files_flushed {
                tracing::warn!(
                    "after an erasure the SQLite write-ahead log could not be truncated at once \
                     (readers were busy); it will be at the next checkpoint"
                );
            }
        }
        Ok(report)
    }
}
