//! The analytics periodic job: destroys expired pseudonym salts and deletes, by whole days, the
//! events older than the register's retention for the analytics purpose — for every site that
//! has data in the store, configured or not. It runs at the `[retention] interval` beside the
//! vault's and the consent jobs, under a lease of its own, so one node runs it at a time. What it
//! purges is appended to the tamper-evident audit log: one `analytics_retention_purge` entry per
//! site with its counts, one `analytics_salts_destroyed` entry with the number of salts (no
//! subject: a purge is not about one person).

use std::sync::Arc;
use std::time::Duration;

use tutela_analytics::Analytics;
use tutela_vault::{Actor, Vault};

pub const LEASE: &str = "analytics_retention";
/// The actor of the job's audit entries.
pub const ACTOR: &str = "job:analytics_retention";

/// Runs the job now and then every `every`.
pub fn spawn(
    analytics: Arc<Analytics>,
    vault: Vault,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    let holder = crate::jobs::holder();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            if let Err(e) = run_once(&analytics, &vault, &holder, every).await {
                tracing::error!(error = %e, "analytics retention job failed");
            }
        }
    })
}

async fn run_once(
    analytics: &Analytics,
    vault: &Vault,
    holder: &str,
    every: Duration,
) -> anyhow::Result<()> {
    let now = jiff::Timestamp::now();
    let store = analytics.store();
    let ttl = i64::try_from(every.as_secs().max(60)).unwrap_or(i64::MAX);
    if !store.try_lease(LEASE, holder, now.as_second(), ttl).await? {
        return Ok(());
    }
    let (destroyed, events) = purge_and_audit(analytics, vault, now).await?;
    tracing::info!(
        salts_destroyed = destroyed,
        events_purged = events,
        "analytics retention job done"
    );
    Ok(())
}

/// Destroys expired salts and purges expired days, then audits what went. Returns the number
/// of salts destroyed and of events purged.
pub async fn purge_and_audit(
    analytics: &Analytics,
    vault: &Vault,
    now: jiff::Timestamp,
) -> anyhow::Result<(u64, u64)> {
    let actor = Actor::new(ACTOR);
    let destroyed = analytics.rotate_salts(now).await?;
    let purpose = analytics
        .effective_retention()
        .await?
        .map(|(p, _)| p)
        .unwrap_or_default();
    if destroyed > 0 {
        vault
            .audit_entry(
                &actor,
                "analytics_salts_destroyed",
                &purpose,
                None,
                serde_json::json!({ "salts": destroyed }),
            )
            .await?;
    }
    let purged = analytics.purge_expired(now).await?;
    let mut events = 0;
    for (site, c) in &purged {
        events += c.events;
        if c.events > 0 || c.rollup_rows > 0 {
            vault
                .audit_entry(
                    &actor,
                    "analytics_retention_purge",
                    &purpose,
                    None,
                    serde_json::json!({
                        "site": site,
                        "configured": analytics.site(*site).is_some(),
                        "events": c.events,
                        "rollup_rows": c.rollup_rows,
                    }),
                )
                .await?;
        }
    }
    Ok((destroyed, events))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn purges_are_audited_per_site() {
        let dir = tempfile::tempdir().unwrap();
        let store = tutela_store::Store::open_data_dir(dir.path())
            .await
            .unwrap();
        let register = tutela_domain::load(tutela_domain::EXAMPLE_REGISTER, "example").unwrap();
        let sites = tutela_analytics::SiteConfig::default_sites();
        let analytics = Analytics::start(
            tutela_analytics::AnalyticsSettings::default(),
            &sites,
            &register,
            store.clone(),
        )
        .unwrap();
        let vault = Vault::new(
            store.clone(),
            Arc::new(register),
            tutela_vault::VaultKeys::generate().unwrap(),
        );
        let now = jiff::Timestamp::now();
        let client = tutela_analytics::Client {
            ip: "203.0.113.9".parse().unwrap(),
            user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"),
            dnt: false,
            gpc: false,
            opted_out: false,
        };
        // Two events 200 days old, one recent; the old ones also leave an old daily salt.
        for days in [200, 200, 3] {
            let at = jiff::Timestamp::from_second(now.as_second() - days * 86_400).unwrap();
            let raw = tutela_analytics::RawHit::from_query(
                "idsite=1&rec=1&url=http%3A%2F%2Flocalhost%2Fa",
            );
            let tutela_analytics::Prepared::Track(h) =
                analytics.prepare(&raw, &client, false, at).await.unwrap()
            else {
                panic!("not tracked")
            };
            analytics.submit(vec![*h]).await.unwrap();
        }
        let (_, events) = purge_and_audit(&analytics, &vault, now).await.unwrap();
        assert_eq!(events, 2);
        let audit = store.audit_entries(0, 100).await.unwrap();
        let purge: Vec<_> = audit
            .iter()
            .filter(|e| e.action == "analytics_retention_purge")
            .collect();
        assert_eq!(purge.len(), 1, "{audit:?}");
        assert_eq!(purge[0].actor, ACTOR);
        assert_eq!(purge[0].purpose, "audience_statistics");
        assert!(purge[0].subject_commitment.is_none());
        let d: serde_json::Value = serde_json::from_str(&purge[0].details).unwrap();
        assert_eq!(
            (d["site"].as_i64(), d["events"].as_u64()),
            (Some(1), Some(2))
        );
        assert!(
            audit
                .iter()
                .any(|e| e.action == "analytics_salts_destroyed"),
            "{audit:?}"
        );
        // Nothing left to purge: nothing more is appended.
        let n = store.audit_entries(0, 100).await.unwrap().len();
        purge_and_audit(&analytics, &vault, now).await.unwrap();
        assert_eq!(store.audit_entries(0, 100).await.unwrap().len(), n);
        assert!(vault.verify_audit(None).await.unwrap().is_ok());
    }
}
