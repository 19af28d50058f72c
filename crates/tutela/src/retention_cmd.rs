//! `tutela retention run [--dry-run]`: delete every record past its deadline now.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use crate::context::Context;
use crate::progress::Progress;

pub const AFTER_HELP: &str = "Examples:
  tutela retention run --dry-run      # what would be deleted, per purpose
  tutela retention run                # delete it (records on legal hold are kept)
  tutela retention run --batch 1000

The server runs the same job every 10 minutes ([retention] interval in tutela.toml, or
TUTELA_RETENTION_INTERVAL). Per-purpose counts go to the audit log; subjects left without any
record are crypto-shredded. On PostgreSQL a lease makes sure one node runs it at a time.";

#[derive(Args, Debug)]
pub struct RetentionArgs {
    /// Only count what would be deleted; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Records deleted per transaction.
    #[arg(long, default_value_t = tutela_vault::DEFAULT_PURGE_BATCH, value_parser = clap::value_parser!(i64).range(1..=100_000))]
    batch: i64,
}

#[derive(clap::Subcommand, Debug)]
pub enum RetentionCommand {
    /// Delete every record past its deadline (unless on legal hold), now.
    #[command(after_help = AFTER_HELP)]
    Run(RetentionArgs),
}

pub fn run(cmd: RetentionCommand, ctx: &Context) -> anyhow::Result<ExitCode> {
    let RetentionCommand::Run(args) = cmd;
    Context::runtime()?.block_on(async {
        let store = ctx.open_store().await?;
        let vault = crate::keys::open_vault(ctx, &store).await?;
        let holder = crate::jobs::holder();
        let now = jiff::Timestamp::now().as_second();
        if !args.dry_run {
            // The register this command loads (the one `serve` loads) is the register in
            // force: recorded if new, as `serve` does, so that its deadlines apply below.
            crate::deadlines::record_version(&store, vault.register())
                .await
                .context("cannot record the register version")?;
        }
        if !args.dry_run
            && !store
                .try_lease(crate::jobs::RETENTION_LEASE, &holder, now, 3600)
                .await?
        {
            store.close().await;
            anyhow::bail!(
                "another node is running the retention job right now; try again in a few minutes"
            );
        }
        let actor = crate::keys::operator();
        // Deadlines a register change shortened first (a dry run counts what it would expire).
        // A recompute that fails never holds back the purge of what is already expired (the
        // recompute only brings deadlines forward); it is reported, and the command fails.
        let recomputed = crate::deadlines::apply_pending(&vault, &actor, args.dry_run).await;
        let mut bar = Progress::new(
            if args.dry_run { "counting" } else { "purging" },
            std::io::stderr().is_terminal(),
        );
        let purged = vault
            .purge_expired(&actor, args.dry_run, args.batch, &mut |d, t| {
                bar.update(d, t)
            })
            .await;
        bar.finish();
        let result = purged.map_err(anyhow::Error::from);
        if !args.dry_run {
            let _ = store
                .release_lease(crate::jobs::RETENTION_LEASE, &holder)
                .await;
        }
        store.close().await;
        let mut report = result?;
        let (recomputed, recompute_error) = match recomputed {
            Ok(r) => (r, None),
            Err(e) => (None, Some(e)),
        };
        if let Some(r) = &recomputed {
            if r.records() > 0 {
                eprintln!(
                    "{} {} deadlines brought forward by the register in force",
                    if args.dry_run { "would have" } else { "had" },
                    r.records()
                );
            }
            // A dry run: what the recompute would expire is deleted by the real run too.
            if args.dry_run {
                for (purpose, p) in &r.per_purpose {
                    if p.expired > 0 {
                        *report.per_purpose.entry(purpose.clone()).or_default() += p.expired;
                        report.records += p.expired;
                    }
                }
            }
        }
        let verb = if args.dry_run {
            "would delete"
        } else {
            "deleted"
        };
        for (purpose, n) in &report.per_purpose {
            println!("{purpose}\t{n}");
        }
        eprintln!(
            "{verb} {} expired records{}",
            report.records,
            if args.dry_run {
                String::new()
            } else {
                format!(
                    " in {} batches; {} subjects had nothing left and were crypto-shredded",
                    report.batches, report.subjects_shredded
                )
            }
        );
        if let Some(e) = recompute_error {
            return Err(e.context(
                "stored deadlines could not be brought in line with the register (what had \
                 already expired was purged; the next run retries)",
            ));
        }
        Ok(ExitCode::SUCCESS)
    })
}
