//! The analytics periodic job: destroys expired pseudonym salts and deletes, by whole days, the
//! events older than the register's retention for the analytics purpose. It runs at the
//! `[retention] interval` beside the vault's and the consent jobs, under a lease of its own, so one
//! node runs it at a time.

use std::sync::Arc;
use std::time::Duration;

use tutela_analytics::Analytics;

pub const LEASE: &str = "analytics_retention";

/// Runs the job now and then every `every`.
pub fn spawn(analytics: Arc<Analytics>, every: Duration) -> tokio::task::JoinHandle<()> {
    let holder = crate::jobs::holder();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            if let Err(e) = run_once(&analytics, &holder, every).await {
                tracing::error!(error = %e, "analytics retention job failed");
            }
        }
    })
}

async fn run_once(analytics: &Analytics, holder: &str, every: Duration) -> anyhow::Result<()> {
    let now = jiff::Timestamp::now();
    let store = analytics.store();
    let ttl = i64::try_from(every.as_secs().max(60)).unwrap_or(i64::MAX);
    if !store.try_lease(LEASE, holder, now.as_second(), ttl).await? {
        return Ok(());
    }
    let destroyed = analytics.rotate_salts(now).await?;
    let purged = analytics.purge_expired(now).await?;
    let events: u64 = purged.iter().map(|(_, c)| c.events).sum();
    tracing::info!(
        salts_destroyed = destroyed,
        events_purged = events,
        "analytics retention job done"
    );
    Ok(())
}
