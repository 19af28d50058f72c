//! Benchmark commands. Each prints its figures (medians, percentiles) and the machine facts to
//! paste into BENCHMARKS.md. Run them in release mode:
//!
//! ```sh
//! cargo build --release -p tutela -p tutela-bench
//! cargo run --release -p tutela-bench -- startup
//! cargo run --release -p tutela-bench -- analytics
//! ./target/release/tutela-bench vault --engine sqlite --records 1000000 --subjects 100000
//! ./target/release/tutela-bench rights --subjects 1000000
//! cargo run --release -p tutela-bench -- consent
//! ```

mod analytics;
mod consent;
mod rights;
mod startup;
mod util;
mod vault;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "tutela-bench",
    about = "Tutela's benchmark commands (release mode; figures for BENCHMARKS.md)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Time from spawning `tutela serve` to its first answered request, with the example register.
    Startup(startup::Args),
    /// Web analytics: single hits and bulk requests over HTTP (64 keep-alive connections), the
    /// 30-day dashboard over 10 million stored events, and the server's peak memory.
    #[command(after_help = "Examples:
  cargo build --release -p tutela -p tutela-bench
  ./target/release/tutela-bench analytics                       # everything
  ./target/release/tutela-bench analytics --mode hits --seconds 20
  ./target/release/tutela-bench analytics --mode dashboard --dashboard-dir /tmp/tutela-10m")]
    Analytics(analytics::Args),
    /// The personal-data vault: write, read, erase and purge (SQLite or PostgreSQL).
    Vault(vault::Args),
    /// Rights requests: a full access and a full erasure for one subject among N in the vault.
    Rights(rights::Args),
    /// Consent records per second through `POST /api/v1/consent` on a real `tutela serve`.
    #[command(
        after_help = "Examples:\n  cargo build --release -p tutela -p tutela-bench\n  ./target/release/tutela-bench consent\n  ./target/release/tutela-bench consent --connections 128 --seconds 10\n  ./target/release/tutela-bench consent --database-url postgres://postgres@127.0.0.1:5432/bench"
    )]
    Consent(consent::Args),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    util::print_machine();
    match cli.command {
        Command::Startup(args) => startup::run(args),
        Command::Analytics(args) => analytics::run(args),
        Command::Vault(args) => vault::run(args),
        Command::Rights(args) => rights::run(args),
        Command::Consent(args) => consent::run(args),
    }
}
