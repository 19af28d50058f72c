//! The rights benchmark: with N subjects in the vault and M analytics events (the analytics
//! dashboard's seeder: 30 days of visits), time a full access request and a full erasure
//! request for one subject, from "execution starts" to "reply recorded and package stored"
//! (the state machine, the step engine, the vault, analytics and consent sources, the response
//! package). Each requesting subject also has a few analytics events under the pseudonym of
//! their tracker id, which the request names. Connectors (SQL, webhooks) are excluded, as the
//! issue's targets say; so is e-mail (the service runs without a mailer, so the reply is marked
//! for sending by post).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tutela_crypto::IdentifierKind;
use tutela_domain::rights::RightKind;
use tutela_rights::analytics_source::AnalyticsSource;
use tutela_rights::consent_source::ConsentSource;
use tutela_rights::execute::Executor;
use tutela_rights::vault_source::VaultSource;
use tutela_rights::{Channel, RequestDetails, RightsConfig, RightsKeys, RightsService, Submission};
use tutela_store::Store;
use tutela_vault::{Actor, BatchItem, IdentifierInput, RecordInput, Vault, VaultKeys};

use crate::util::{ms, quantile};

#[derive(clap::Args)]
pub struct Args {
    /// Subjects in the vault.
    #[arg(long, default_value_t = 1_000_000)]
    subjects: usize,
    /// Records per subject.
    #[arg(long, default_value_t = 3)]
    records_per_subject: usize,
    /// Analytics events in the store (besides the requesting subjects' own).
    #[arg(long, default_value_t = 10_000_000)]
    events: u64,
    /// Analytics events of each requesting subject.
    #[arg(long, default_value_t = 12)]
    events_per_subject: i64,
    /// Access requests (and as many erasures) to time.
    #[arg(long, default_value_t = 200)]
    requests: usize,
    /// Keep the data directory (its path is printed) instead of deleting it.
    #[arg(long)]
    keep: bool,
}

fn email(i: usize) -> String {
    format!("user{i}@bench.example")
}

/// The tracker id of subject `i` (16 hexadecimal digits).
fn visitor_id(i: usize) -> String {
    format!("{:016x}", 0xbe00_0000_0000_0000_u64 + i as u64)
}

fn records(i: usize, n: usize) -> Vec<RecordInput> {
    let mix = [
        ("support", "support_messages"),
        ("recruitment", "resume"),
        ("support", "email"),
    ];
    (0..n)
        .map(|k| {
            let (purpose, category) = mix[k % mix.len()];
            RecordInput {
                purpose: purpose.into(),
                category: category.into(),
                payload: json!({"subject": i, "n": k, "text": "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor"}),
                source: "bench".into(),
                collected_at: None,
                legal_hold: false,
            }
        })
        .collect()
}

pub fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.subjects >= 2 * args.requests && args.requests > 0,
        "need subjects >= 2 x requests > 0"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let dir = tempfile::tempdir()?;
        // Analytics first: 30 days of visits through the direct writer.
        crate::analytics::seed(dir.path(), args.events).await?;
        let store = Store::open_data_dir(dir.path()).await?;
        let register = Arc::new(
            tutela_domain::load(tutela_domain::EXAMPLE_REGISTER, "example")
                .map_err(|d| anyhow::anyhow!("{d:?}"))?,
        );
        let vault = Vault::new(store.clone(), register.clone(), VaultKeys::generate()?);
        let actor = Actor::new("bench");
        println!(
            "rights benchmark on sqlite: {} subjects x {} records in the vault, {} analytics events",
            args.subjects, args.records_per_subject, args.events
        );

        let t = Instant::now();
        let batch = 1000;
        for start in (0..args.subjects).step_by(batch) {
            let items = (start..(start + batch).min(args.subjects))
                .map(|i| BatchItem {
                    subject_id: None,
                    identifiers: vec![IdentifierInput::new(IdentifierKind::Email, email(i))],
                    records: records(i, args.records_per_subject),
                })
                .collect();
            vault.write_batch(&actor, items).await?;
            if start % 100_000 == 0 && start > 0 {
                eprintln!(
                    "  seeded {start} subjects ({:.0} s)",
                    t.elapsed().as_secs_f64()
                );
            }
        }
        println!("seeded in {:.1} s", t.elapsed().as_secs_f64());

        // The requesting subjects' own analytics events, under the pseudonym of their tracker id.
        let analytics = tutela_analytics::Analytics::start(
            tutela_analytics::AnalyticsSettings::default(),
            &tutela_analytics::SiteConfig::default_sites(),
            &register,
            store.clone(),
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        let step = args.subjects / (2 * args.requests);
        let chosen: Vec<usize> = (0..args.subjects)
            .step_by(step.max(1))
            .take(2 * args.requests)
            .collect();
        let sites = tutela_analytics::config::sites(&tutela_analytics::SiteConfig::default_sites())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut writer = tutela_analytics::DirectWriter::new(store.clone(), &sites);
        let now_s = jiff::Timestamp::now().as_second();
        let mut own = Vec::new();
        for &i in &chosen {
            let p = analytics
                .pseudonym_of_visitor_id(1, &visitor_id(i))
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .ok_or_else(|| anyhow::anyhow!("no pseudonym"))?;
            for a in 0..args.events_per_subject {
                own.push(tutela_analytics::MinHit {
                    site_id: 1,
                    ts: now_s - 3600 + a * 30,
                    visitor: p,
                    new_visit: a == 0,
                    ping: false,
                    kind: 1,
                    url: Some(format!("http://localhost/account/page-{a}")),
                    title: None,
                    ev_category: None,
                    ev_action: None,
                    ev_name: None,
                    ev_value: None,
                    referrer: None,
                    ip_prefix: Some("203.0.0.0".into()),
                    device: None,
                    resolution: None,
                });
            }
        }
        writer.write(own).await?;
        writer.finish().await?;
        println!(
            "{} analytics events in the store",
            store.analytics_event_count(1).await?
        );

        let svc = RightsService::new(
            store.clone(),
            register.clone(),
            RightsKeys::generate()?,
            None,
            RightsConfig::default(),
        );
        let exec = Executor::new(
            svc.clone(),
            vec![
                Arc::new(
                    VaultSource::new(vault.clone(), "rights_requests")
                        .map_err(|e| anyhow::anyhow!("{e}"))?,
                ),
                Arc::new(
                    AnalyticsSource::new(analytics.clone()).map_err(|e| anyhow::anyhow!("{e}"))?,
                ),
                Arc::new(
                    ConsentSource::new(store.clone(), register.clone(), "bench")
                        .map_err(|e| anyhow::anyhow!("{e}"))?,
                ),
            ],
        );
        let mut access = Vec::new();
        let mut erasure = Vec::new();
        for (n, &i) in chosen.iter().enumerate() {
            let kind = if n % 2 == 0 {
                RightKind::Access
            } else {
                RightKind::Erasure
            };
            let now = jiff::Timestamp::now();
            let sub = Submission {
                kind,
                channel: Channel::Api,
                lang: "en".into(),
                details: RequestDetails {
                    extra_identifiers: vec![(IdentifierKind::VisitorId, visitor_id(i))],
                    after_death: None,
                },
                identifier_kind: IdentifierKind::Email,
                identifier: email(i),
                contact_email: None,
                text: String::new(),
            };
            let receipt = svc
                .file_verified(sub, "platform_token:bench", "bench", now)
                .await?;
            let id = receipt.request.id;
            let t = Instant::now();
            exec.start(&id, "bench", now).await?;
            let r = exec.run_due(now).await?;
            anyhow::ensure!(r.done == 3, "a step did not finish: {r:?}");
            exec.finish(&id, "bench", now).await?;
            let d = t.elapsed();
            // The work was real: the access found the subject's events, the erasure removed them.
            let left = analytics
                .visitor_events(1, &visitor_id(i))
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .unwrap_or_default()
                .len() as i64;
            let expected = if kind == RightKind::Access {
                args.events_per_subject
            } else {
                0
            };
            anyhow::ensure!(left == expected, "{left} events left after {kind:?}");
            if kind == RightKind::Access {
                access.push(d)
            } else {
                erasure.push(d)
            }
        }
        report(
            "access request (vault, analytics and consent sources, package built and stored)",
            &mut access,
            Duration::from_millis(100),
        );
        report(
            "erasure request (vault crypto-shredding, analytics events deleted, consent kept, reply recorded)",
            &mut erasure,
            Duration::from_millis(50),
        );
        store.close().await;
        if args.keep {
            println!("data kept in {}", dir.keep().display());
        }
        Ok(())
    })
}

fn report(what: &str, samples: &mut [Duration], target: Duration) {
    let (p50, p90, p99) = (
        quantile(samples, 0.5),
        quantile(samples, 0.9),
        quantile(samples, 0.99),
    );
    println!(
        "{what}: median {} · p90 {} · p99 {} over {} requests (target {})",
        ms(p50),
        ms(p90),
        ms(p99),
        samples.len(),
        ms(target)
    );
}
