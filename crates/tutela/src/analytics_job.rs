//! The analytics periodic job: destroys expired pseudonym salts and deletes, by whole days, the
//! events older than the register's retention for the analytics purpose. One node runs it at a
//! time (lease row). When the vault's retention engine (`jobs.rs`) lands, this folds into it.

use std::sync::Arc;
use std::time::Duration;

use tutela_analytics::Analytics;

const LEASE: &str = "analytics_retention";
const EVERY: Duration = Duration::from_secs(15 * 60);

/// Runs the job now and then every 15 minutes.
pub fn spawn(analytics: Arc<Analytics>) {
    let holder = format!(
        "node-{}-{}",
        std::process::id(),
        jiff::Timestamp::now().as_nanosecond()
    );
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        loop {
            tick.tick().await;
            if let Err(e) = run_once(&analytics, &holder).await {
                tracing::error!(error = %e, "analytics retention job failed");
            }
        }
    });
}

async fn run_once(analytics: &Analytics, holder: &str) -> anyhow::Result<()> {
    let now = jiff::Timestamp::now();
    let store = analytics.store();
    if !store
        .try_lease(LEASE, holder, now.as_second(), EVERY.as_secs() as i64)
        .await?
    {
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
