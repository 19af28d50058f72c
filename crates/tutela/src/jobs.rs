//! Periodic jobs of `tutela serve`. The retention job deletes expired records every
//! `[retention] interval` (10 minutes by default). Each run takes the `retention` lease, so that
//! with several nodes on one PostgreSQL database only one of them runs it at a time.

use std::time::Duration;

use tutela_vault::{Actor, DEFAULT_PURGE_BATCH, Vault};

pub const RETENTION_LEASE: &str = "retention";
/// How long a lease protects a run (renewed when a run starts; released when it ends).
const LEASE_SECS: i64 = 3600;

/// A name for this process among the nodes (host name and process id).
pub fn holder() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "node".into());
    format!("{host}:{}", std::process::id())
}

/// Runs the retention job every `interval`, the first time right away.
pub fn spawn_retention(vault: Vault, interval: Duration) -> tokio::task::JoinHandle<()> {
    let holder = holder();
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if let Err(err) = run_once(&vault, &holder).await {
                tracing::error!(error = %err, "retention job failed; retrying at the next interval");
            }
        }
    })
}

/// One run: take the lease, purge, give the lease back. Returns whether it ran.
pub async fn run_once(vault: &Vault, holder: &str) -> anyhow::Result<bool> {
    let store = vault.store();
    let now = jiff::Timestamp::now().as_second();
    if !store
        .try_lease(RETENTION_LEASE, holder, now, LEASE_SECS)
        .await?
    {
        tracing::debug!("retention job: another node holds the lease");
        return Ok(false);
    }
    let result = vault
        .purge_expired(
            &Actor::new("job:retention"),
            false,
            DEFAULT_PURGE_BATCH,
            &mut |_, _| {},
        )
        .await;
    store.release_lease(RETENTION_LEASE, holder).await?;
    result?;
    Ok(true)
}
