//! `tutela audit verify|export`: check the audit chain, export it as JSON lines.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Subcommand;

use crate::context::Context;

pub const AFTER_HELP: &str = "Examples:
  tutela audit verify
  tutela audit verify --anchor 1234:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
  tutela audit export -o audit.jsonl
  tutela audit export --after 1234 > new-entries.jsonl

`verify` exits 0 when every entry is intact, 1 when one was modified, deleted or moved, naming
the first bad entry. It prints the chain head (SEQ:HASH): keep it somewhere else and pass it
back with --anchor later to detect a rewrite of the log from that point on.";

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Verify the hash chain of the whole audit log.
    #[command(after_help = AFTER_HELP)]
    Verify {
        /// A head printed by an earlier verification (SEQ:HASH) that the log must still hold.
        #[arg(long, value_name = "SEQ:HASH")]
        anchor: Option<String>,
    },
    /// Write the audit log as JSON lines (one entry per line).
    #[command(after_help = AFTER_HELP)]
    Export {
        /// Output file [default: standard output].
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Only entries after this sequence number.
        #[arg(long, value_name = "SEQ", default_value_t = 0)]
        after: i64,
    },
}

fn parse_anchor(text: &str) -> anyhow::Result<(u64, [u8; 32])> {
    let (seq, hash) = text
        .split_once(':')
        .context("--anchor must be SEQ:HASH, as printed by `tutela audit verify`")?;
    let seq: u64 = seq.parse().context("--anchor: SEQ must be a number")?;
    let bytes = hex::decode(hash).ok().filter(|b| b.len() == 32);
    let Some(bytes) = bytes else {
        bail!("--anchor: HASH must be 64 hexadecimal digits");
    };
    let mut h = [0u8; 32];
    h.copy_from_slice(&bytes);
    Ok((seq, h))
}

pub fn run(cmd: AuditCommand, ctx: &Context) -> anyhow::Result<ExitCode> {
    Context::runtime()?.block_on(async {
        let store = ctx.open_store().await?;
        let vault = crate::keys::open_vault(ctx, &store).await?;
        let result = match cmd {
            AuditCommand::Verify { anchor } => {
                let anchor = anchor.as_deref().map(parse_anchor).transpose()?;
                match vault.verify_audit(anchor).await? {
                    Ok(v) => {
                        println!("audit log intact: {} entries", v.entries);
                        println!("head: {}:{}", v.head.seq, hex::encode(v.head.hash));
                        Ok(ExitCode::SUCCESS)
                    }
                    Err(problem) => {
                        eprintln!("{}", problem.explain());
                        Ok(ExitCode::FAILURE)
                    }
                }
            }
            AuditCommand::Export { output, after } => {
                let mut out: Box<dyn Write> = match &output {
                    Some(p) => Box::new(std::io::BufWriter::new(
                        std::fs::File::create(p)
                            .with_context(|| format!("cannot create {}", p.display()))?,
                    )),
                    None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
                };
                let n = vault.export_audit(after, &mut out).await?;
                out.flush()?;
                eprintln!("exported {n} audit entries");
                Ok(ExitCode::SUCCESS)
            }
        };
        store.close().await;
        result
    })
}
