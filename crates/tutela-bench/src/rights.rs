//! The rights benchmark: with N subjects in the vault, time a full access request and a full
//! erasure request for one subject, from "execution starts" to "reply recorded and package
//! stored" (the state machine, the step engine, the vault source, the response package).
//! Connectors (SQL, webhooks) are excluded, as the targets say; so is e-mail (the
//! service runs without a mailer, so the reply is marked for sending by post).
//!
//! Analytics events (10M in the scenario) are not part of this run yet: the analytics
//! store has not landed (see BENCHMARKS.md).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tutela_crypto::IdentifierKind;
use tutela_domain::rights::RightKind;
use tutela_rights::execute::Executor;
use tutela_rights::vault_source::VaultSource;
use tutela_rights::{Channel, RightsConfig, RightsKeys, RightsService, Submission};
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
        let store = Store::open_data_dir(dir.path()).await?;
        let register = Arc::new(
            tutela_domain::load(tutela_domain::EXAMPLE_REGISTER, "example")
                .map_err(|d| anyhow::anyhow!("{d:?}"))?,
        );
        let vault = Vault::new(store.clone(), register.clone(), VaultKeys::generate()?);
        let actor = Actor::new("bench");
        println!(
            "rights benchmark on sqlite: {} subjects x {} records in the vault",
            args.subjects, args.records_per_subject
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

        let svc = RightsService::new(
            store.clone(),
            register.clone(),
            RightsKeys::generate()?,
            None,
            RightsConfig::default(),
        );
        let exec = Executor::new(
            svc.clone(),
            vec![Arc::new(
                VaultSource::new(vault.clone(), "rights_requests")
                    .map_err(|e| anyhow::anyhow!("{e}"))?,
            )],
        );
        let step = args.subjects / (2 * args.requests);
        let mut access = Vec::new();
        let mut erasure = Vec::new();
        for (n, i) in (0..args.subjects)
            .step_by(step.max(1))
            .take(2 * args.requests)
            .enumerate()
        {
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
                details: Default::default(),
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
            anyhow::ensure!(r.done == 1, "the vault step did not finish: {r:?}");
            exec.finish(&id, "bench", now).await?;
            let d = t.elapsed();
            if kind == RightKind::Access {
                access.push(d)
            } else {
                erasure.push(d)
            }
        }
        report(
            "access request (vault source, package built and stored)",
            &mut access,
            Duration::from_millis(100),
        );
        report(
            "erasure request (vault source, crypto-shredding, reply recorded)",
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
