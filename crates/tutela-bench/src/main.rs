//! Benchmark commands. Each prints its figures (medians, percentiles) and the machine facts to
//! paste into BENCHMARKS.md. Run them in release mode:
//!
//! ```sh
//! cargo build --release -p tutela -p tutela-bench
//! cargo run --release -p tutela-bench -- startup
//! cargo run --release -p tutela-bench -- analytics
//! ```

mod analytics;
mod startup;
mod util;

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
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    util::print_machine();
    match cli.command {
        Command::Startup(args) => startup::run(args),
        Command::Analytics(args) => analytics::run(args),
    }
}
