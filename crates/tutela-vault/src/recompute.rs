//! Deadlines follow the register in force when it becomes stricter.
//!
//! A record's deadline is stamped when it is written (or when its anchor event happens). When
//! the register later shortens a retention period, the records already stored must follow:
//! [`changed_rules`] finds the purpose/category pairs whose rule differs from the registers the
//! records may have been written under, and [`Vault::recompute_deadlines`] recomputes each such
//! record's deadline from its anchors (collection time, the subject's remembered anchor events)
//! under the new rule, exactly as a write would, and keeps the **earlier** of the stored and the
//! new deadline: a stricter rule applies at once, a longer one never extends what was promised
//! when the datum was collected.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;
use tutela_domain::Register;
use tutela_domain::register::RetentionRule;
use tutela_store::{DeadlineChange, NewAuditEntry};

use crate::write::DeadlineMemo;
use crate::{Actor, Result, Vault, VaultError};

/// Records read (and at most updated) per transaction by [`Vault::recompute_deadlines`].
pub const DEFAULT_RECOMPUTE_BATCH: i64 = 20_000;

/// What a recompute changed (or, for a dry run, would change) in one purpose.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecomputedPurpose {
    /// Records whose deadline was brought forward.
    pub records: u64,
    /// Of those, records past their new deadline at `now` and not on legal hold: reads hide them
    /// from now on and the next purge deletes them.
    pub expired: u64,
}

/// What a recompute did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecomputeReport {
    pub dry_run: bool,
    pub now: i64,
    /// The `(purpose, category)` pairs whose rule changed.
    pub rules: Vec<(String, String)>,
    pub per_purpose: BTreeMap<String, RecomputedPurpose>,
    /// Records read.
    pub scanned: u64,
}

impl RecomputeReport {
    /// Records whose deadline was brought forward, in every purpose.
    pub fn records(&self) -> u64 {
        self.per_purpose.values().map(|p| p.records).sum()
    }
}

/// Whether two rules give the same deadlines: same anchor, same period.
fn same_schedule(a: &RetentionRule, b: &RetentionRule) -> bool {
    a.from == b.from
        && a.keep.as_ref().map(|k| k.canonical()) == b.keep.as_ref().map(|k| k.canonical())
}

/// The `(purpose, category)` pairs of `target` whose retention rule is not the same in every
/// register of `earlier` (the registers stored records may have been written under). `None`:
/// unknown history (no version was ever applied, or one could not be read), every pair counts
/// as changed, which is safe: recomputing an unchanged rule changes no deadline.
pub fn changed_rules(target: &Register, earlier: Option<&[Register]>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in &target.purposes {
        for c in &p.categories {
            let Some(rule) = p.retention_for(c) else {
                continue;
            };
            let changed = match earlier {
                None => true,
                Some(regs) => regs.iter().any(|r| {
                    r.purpose(&p.id)
                        .and_then(|q| q.retention_for(c))
                        .is_none_or(|old| !same_schedule(old, rule))
                }),
            };
            if changed {
                out.push((p.id.clone(), c.clone()));
            }
        }
    }
    out
}

impl Vault {
    /// Recomputes the deadlines of the stored records of `rules` (pairs of this vault's
    /// register, usually from [`changed_rules`]) under this vault's register, keeping the
    /// earlier of the stored and the new deadline. Works through each purpose's records in id
    /// order, `batch` records per transaction; each transaction that changes anything appends
    /// one audit entry per purpose (counts only). A record whose deadline an anchor event moved
    /// since it was read is left alone. With `dry_run`, only counts (nothing is written).
    ///
    /// Idempotent: running it again changes nothing, so an interrupted run is simply run again.
    pub async fn recompute_deadlines(
        &self,
        actor: &Actor,
        rules: &[(String, String)],
        dry_run: bool,
        batch: i64,
    ) -> Result<RecomputeReport> {
        if !(1..=100_000).contains(&batch) {
            return Err(VaultError::InvalidInput(
                "the recompute batch size must be 1 to 100000".into(),
            ));
        }
        let now = self.now().as_second();
        let mut report = RecomputeReport {
            dry_run,
            now,
            rules: rules.to_vec(),
            ..RecomputeReport::default()
        };
        let mut by_purpose: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for (p, c) in rules {
            by_purpose.entry(p).or_default().insert(c);
        }
        let mut memo = DeadlineMemo::default();
        for (purpose_id, categories) in by_purpose {
            let purpose = self.purpose(purpose_id)?;
            let mut rule_of: BTreeMap<&str, &RetentionRule> = BTreeMap::new();
            for c in &categories {
                if let Some(r) = purpose.retention_for(c) {
                    rule_of.insert(c, r);
                }
            }
            let mut after = 0i64;
            loop {
                let mut tx = self.store.vault_begin().await?;
                let rows = tx.deadline_rows(purpose_id, after, batch).await?;
                let Some(last) = rows.last() else {
                    break;
                };
                after = last.id;
                let full = rows.len() as i64 == batch;
                report.scanned += rows.len() as u64;
                // The anchor events of the subjects whose rule counts from one.
                let with_events: Vec<String> = rows
                    .iter()
                    .filter(|r| {
                        rule_of
                            .get(r.category.as_str())
                            .is_some_and(|rule| rule.from.event().is_some())
                    })
                    .map(|r| r.subject_id.clone())
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect();
                let events = if with_events.is_empty() {
                    Default::default()
                } else {
                    tx.events(&with_events).await?
                };
                let mut changes = Vec::new();
                let mut counts = RecomputedPurpose::default();
                let mut cats: BTreeSet<&str> = BTreeSet::new();
                for r in &rows {
                    let Some(rule) = rule_of.get(r.category.as_str()) else {
                        continue;
                    };
                    let event_at = rule.from.event().and_then(|e| {
                        events
                            .get(&(r.subject_id.clone(), purpose_id.to_string(), e.to_string()))
                            .copied()
                    });
                    let (anchor_at, new) = memo.schedule(rule, r.collected_at, event_at)?;
                    let Some(new) = new else {
                        // The new rule waits for an event: the stored deadline stands.
                        continue;
                    };
                    if r.deadline.is_some_and(|old| old <= new) {
                        // Never later than promised at collection.
                        continue;
                    }
                    counts.records += 1;
                    if new <= now && !r.legal_hold && r.deadline.is_none_or(|old| old > now) {
                        counts.expired += 1;
                    }
                    cats.insert(
                        rule_of
                            .get_key_value(r.category.as_str())
                            .map_or("", |(k, _)| k),
                    );
                    changes.push(DeadlineChange {
                        id: r.id,
                        old_deadline: r.deadline,
                        anchor_at,
                        deadline: Some(new),
                    });
                }
                if !dry_run && !changes.is_empty() {
                    let applied = tx.set_deadlines(&changes, now).await?;
                    if applied < counts.records {
                        // Some deadlines were moved by an event meanwhile: count what changed.
                        counts.records = applied;
                        counts.expired = counts.expired.min(applied);
                    }
                    let entry = NewAuditEntry {
                        time_ms: self.now().as_millisecond(),
                        actor: actor.0.clone(),
                        action: "retention_recompute".into(),
                        purpose: purpose_id.to_string(),
                        subject_commitment: None,
                        details: json!({
                            "records": counts.records,
                            "expired": counts.expired,
                            "categories": cats,
                        })
                        .to_string(),
                    };
                    tx.append_audit(&[entry], crate::audit::hasher).await?;
                    tx.commit().await?;
                }
                // (A dry run, or a batch without changes: the transaction rolls back.)
                if counts.records > 0 {
                    let e = report
                        .per_purpose
                        .entry(purpose_id.to_string())
                        .or_default();
                    e.records += counts.records;
                    e.expired += counts.expired;
                }
                if !full {
                    break;
                }
            }
        }
        if !dry_run && report.records() > 0 {
            tracing::info!(
                records = report.records(),
                scanned = report.scanned,
                "deadlines brought in line with the register"
            );
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn register(platform_keep: &str) -> Register {
        let text = include_str!("../../../examples/policy.toml");
        let text = text.replacen("6 months", platform_keep, 1);
        tutela_domain::load(&text, "policy.toml").expect("example register")
    }

    #[test]
    fn only_rules_that_differ_count_as_changed() {
        let old = register("6 months");
        let new = register("1 day");
        assert!(!changed_rules(&new, Some(std::slice::from_ref(&old))).is_empty());
        assert!(
            changed_rules(&new, Some(std::slice::from_ref(&old)))
                .iter()
                .all(|(p, _)| p == "platform_security")
        );
        assert!(changed_rules(&old, Some(std::slice::from_ref(&old))).is_empty());
        // Unknown history: everything.
        let all = changed_rules(&old, None);
        assert!(all.len() > changed_rules(&new, Some(std::slice::from_ref(&old))).len());
        // The stored versions (canonical JSON) read back to the same rules.
        let back: Register = serde_json::from_str(&serde_json::to_string(&old).unwrap()).unwrap();
        assert!(changed_rules(&old, Some(&[back])).is_empty());
        // Any register of the history that differs counts.
        assert!(!changed_rules(&old, Some(&[old.clone(), new.clone()])).is_empty());
    }
}
