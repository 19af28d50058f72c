//! Bringing the deadlines of stored records in line with the register in force.
//!
//! Deadlines are stamped when records are written. When a new register version is recorded
//! (`tutela serve` at start, `tutela retention run`), the records whose purpose and category got
//! a different rule are recomputed under it ([`Vault::recompute_deadlines`]: the earlier of the
//! stored and the new deadline wins), then the version is marked as applied. The caller holds the
//! retention lease, so that one node does it and no purge runs meanwhile; an interrupted run is
//! redone from the start by the next one (it is idempotent).

use tutela_domain::Register;
use tutela_vault::{Actor, DEFAULT_RECOMPUTE_BATCH, RecomputeReport, Vault, changed_rules};

/// Recomputes the deadlines the register in force changed, if that was not done yet. Returns
/// None when there was nothing to do. With `dry_run`, only counts (and marks nothing).
///
/// The vault's register must be the newest recorded version; when it is not (this node runs
/// another register than the one recorded last), nothing is done unless `dry_run`, which
/// reports what recording this register would change.
pub async fn apply_pending(
    vault: &Vault,
    actor: &Actor,
    dry_run: bool,
) -> anyhow::Result<Option<RecomputeReport>> {
    let store = vault.store();
    let state = store.register_deadlines_state().await?;
    let target_hash = vault.register().content_hash();
    let latest_is_ours = state.latest.as_ref().is_some_and(|l| l.hash == target_hash);
    if latest_is_ours && state.latest_applied {
        return Ok(None);
    }
    if !latest_is_ours && !dry_run {
        tracing::warn!(
            "this node's register is not the newest recorded version: deadlines are left to the node that runs it"
        );
        return Ok(None);
    }
    // The registers the stored records may have been written under: the last applied version
    // and every one recorded since (unknown when none was applied or one cannot be read back).
    let earlier: Option<Vec<Register>> = if state.since_applied.is_empty() {
        None
    } else {
        state
            .since_applied
            .iter()
            .map(|(_, content)| serde_json::from_str::<Register>(content).ok())
            .collect()
    };
    if earlier.is_none() && !state.since_applied.is_empty() {
        tracing::warn!(
            "a stored register version cannot be read back: every deadline is recomputed"
        );
    }
    let rules = changed_rules(vault.register(), earlier.as_deref());
    let report = vault
        .recompute_deadlines(actor, &rules, dry_run, DEFAULT_RECOMPUTE_BATCH)
        .await?;
    if !dry_run && let Some(latest) = &state.latest {
        store
            .mark_register_deadlines_applied(latest.id, jiff::Timestamp::now().as_second())
            .await?;
        tracing::info!(
            version = latest.id,
            rules_changed = rules.len(),
            records_scanned = report.scanned,
            deadlines_brought_forward = report.records(),
            "stored deadlines follow the register in force"
        );
    }
    Ok(Some(report))
}

/// Records `register` as a new version if it differs from the newest one (what `serve` does at
/// start). Returns whether it was recorded.
pub async fn record_version(
    store: &tutela_store::Store,
    register: &Register,
) -> anyhow::Result<bool> {
    let hash = register.content_hash();
    let content = serde_json::to_string(register)?;
    let revision = register.latest_revision().map(|r| r.id.clone());
    let (version, created) = store
        .record_register_version(
            &hash,
            revision.as_deref(),
            &content,
            jiff::Timestamp::now().as_second(),
        )
        .await?;
    if created {
        tracing::info!(version = version.id, hash = %&hash[..12], "recorded a new register version");
    }
    Ok(created)
}
