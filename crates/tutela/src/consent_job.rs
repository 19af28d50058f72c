//! The consent retention job of `tutela serve`, run at the `[retention] interval`: deletes consent
//! records past their deadline (every record carries the deadline the register's rule for category
//! `consent_record` gave it when it was written). It takes its own lease row before it runs, so that
//! when several nodes share a PostgreSQL database only one of them purges at a time, without
//! waiting for the vault's purge. A run that deletes records appends one entry to the audit log
//! (action `consent_retention_purge`: the count and the cut-off, no consent id).

use std::time::Duration;

use tutela_http::AppState;

/// The lease row of this job.
pub const LEASE: &str = "retention:consent_records";
/// How long a lease lasts (longer than a run).
const LEASE_SECS: i64 = 600;

/// Runs the consent purge every `interval` (the `[retention] interval`), the first time right away.
pub fn spawn(state: AppState, interval: Duration) -> tokio::task::JoinHandle<()> {
    let holder = crate::jobs::holder();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            purge_consent_records(&state, &holder).await;
        }
    })
}

/// Deletes the consent records whose deadline has passed. Logs only a count.
pub async fn purge_consent_records(state: &AppState, holder: &str) {
    let now = jiff::Timestamp::now().as_second();
    match state.store.try_lease(LEASE, holder, now, LEASE_SECS).await {
        Ok(true) => {}
        Ok(false) => return,
        Err(err) => {
            tracing::warn!(error = %err, "could not take the consent retention lease");
            return;
        }
    }
    match state.store.purge_consent_records(now).await {
        Ok(0) => {}
        Ok(n) => {
            tracing::info!(
                deleted = n,
                "consent records past their retention deadline deleted"
            );
            metrics::counter!("tutela_retention_deleted_total", "category" => "consent_record")
                .increment(n);
            // The tamper-evident audit log says how many went and up to when (no consent id).
            let details = serde_json::json!({
                "category": tutela_domain::consent::CONSENT_RECORD_CATEGORY,
                "records": n,
                "deadline_before": now,
            });
            if let Err(err) = state
                .vault
                .audit_event(
                    &tutela_vault::Actor::new("job:consent-retention"),
                    "consent_retention_purge",
                    details,
                )
                .await
            {
                tracing::error!(error = %err, deleted = n, "could not append the consent purge to the audit log");
            }
        }
        Err(err) => tracing::warn!(error = %err, "consent retention purge failed"),
    }
    let _ = state.store.release_lease(LEASE, holder).await;
}
