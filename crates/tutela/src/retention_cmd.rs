//! `tutela retention run [--dry-run]`: delete every record past its deadline now.

use std::io::IsTerminal;
use std::process::ExitCode;

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
        let mut bar = Progress::new(
            if args.dry_run { "counting" } else { "purging" },
            std::io::stderr().is_terminal(),
        );
        let result = vault
            .purge_expired(
                &crate::keys::operator(),
                args.dry_run,
                args.batch,
                &mut |d, t| bar.update(d, t),
            )
            .await;
        bar.finish();
        if !args.dry_run {
            let _ = store
                .release_lease(crate::jobs::RETENTION_LEASE, &holder)
                .await;
        }
        store.close().await;
        let report = result?;
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
        Ok(ExitCode::SUCCESS)
    })
}
