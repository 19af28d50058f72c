//! Periodic jobs of `tutela serve`. The retention job deletes expired records every
//! `[retention] interval` (10 minutes by default). Each run takes the `retention` lease, so that
//! with several nodes on one PostgreSQL database only one of them runs it at a time.

use std::time::Duration;

use tutela_vault::{Actor, DEFAULT_PURGE_BATCH, Vault};

pub const RETENTION_LEASE: &str = "retention";
/// How long a lease protects a run (renewed when a run starts; released when it ends).
const LEASE_SECS: i64 = 3600;

/// The leases a periodic job takes for the length of one run and gives back when the run ends.
/// A graceful stop gives them back too ([`release_run_leases`]), so that a node stopped in the
/// middle of a run does not hold the job off for the rest of the lease on the next start. (The
/// rights jobs' daily and hourly leases are not listed: they mark the period as done.)
pub const RUN_LEASES: [&str; 3] = [
    RETENTION_LEASE,
    crate::consent_job::LEASE,
    crate::analytics_job::LEASE,
];

/// Stops the periodic jobs and gives back the per-run leases this node holds. Each job is
/// awaited after its abort, so none can take its lease again after the release.
pub async fn stop_and_release(store: &tutela_store::Store, jobs: Vec<tokio::task::JoinHandle<()>>) {
    for job in &jobs {
        job.abort();
    }
    for job in jobs {
        let _ = job.await;
    }
    release_run_leases(store, &holder()).await;
}

/// Gives back the per-run leases held by `holder` (a no-op for leases it does not hold).
///
/// A job aborted while its `try_lease` was on its way to the database can still have it
/// committed a moment after the abort (the statement was already handed to a connection): so
/// the leases are released, then checked again after a pause, until a check finds none (at
/// least two rounds, at most ten).
pub async fn release_run_leases(store: &tutela_store::Store, holder: &str) {
    for round in 0..10 {
        for name in RUN_LEASES {
            if let Err(err) = store.release_lease(name, holder).await {
                tracing::warn!(error = %err, lease = name, "could not give a job lease back");
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        match store.leases_of(holder).await {
            Ok(held) if held.iter().any(|n| RUN_LEASES.contains(&n.as_str())) => {}
            Ok(_) if round == 0 => {}
            Ok(_) => return,
            Err(err) => {
                tracing::warn!(error = %err, "could not check the job leases given back");
                return;
            }
        }
    }
    tracing::warn!("a job lease kept coming back after the jobs were stopped");
}

/// A name for this process among the nodes (host name and process id). Every job of one
/// process uses it, so a graceful stop knows which leases are its own.
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
    let actor = Actor::new("job:retention");
    // First the deadlines a new register changed (when another node recorded it, or this one
    // could not take the lease at start), then the purge.
    // A failed recompute never holds back the purge of what is already expired (it only brings
    // deadlines forward): it is logged and retried at the next run.
    let recomputed = crate::deadlines::apply_pending(vault, &actor, false).await;
    if let Err(e) = &recomputed {
        tracing::error!(
            error = %e,
            "retention job: stored deadlines not brought in line with the register; purging what has expired, retrying at the next run"
        );
    }
    let purged = vault
        .purge_expired(&actor, false, DEFAULT_PURGE_BATCH, &mut |_, _| {})
        .await
        .map_err(anyhow::Error::from);
    store.release_lease(RETENTION_LEASE, holder).await?;
    purged?;
    recomputed?;
    Ok(true)
}
