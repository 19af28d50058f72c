//! The `tutela` command: serve the privacy engine, check and render the register.

mod analytics_job;
mod audit_cmd;
mod config;
mod consent_job;
mod context;
mod deadlines;
mod http_server;
mod jobs;
mod keys;
mod operators_cmd;
mod policy_cmd;
mod progress;
mod retention_cmd;
mod rights_setup;
mod serve;
mod tokens_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

const ABOUT: &str = "Tutela: a self-hosted privacy engine that makes a privacy policy executable.

One register of processing activities (policy.toml) is rendered as the public privacy notice,
decides what the collectors may keep, stamps every stored datum with its deletion deadline and
drives the data-subject rights.";

const AFTER_HELP: &str = "Examples:
  tutela serve                                  # built-in example register, SQLite in ./tutela-data
  tutela --policy policy.toml serve --listen 0.0.0.0:8080
  tutela policy check policy.toml
  tutela policy render --format md --lang fr > notice.fr.md
  tutela tokens create --name platform --scope vault:read --scope vault:write
  tutela retention run --dry-run
  tutela audit verify
  tutela keys rotate
  tutela operators add --login dora --name 'Dora Martin' --role dpo

Configuration: flags override TUTELA_* environment variables, which override tutela.toml.";

const POLICY_HELP: &str = "Examples:
  tutela policy check policy.toml
  tutela policy render --format html --lang fr -o privacy.fr.html
  tutela policy ropa --format csv > ropa.csv";

#[derive(Parser, Debug)]
#[command(name = "tutela", version, about = ABOUT, after_help = AFTER_HELP)]
pub struct Cli {
    /// Configuration file [default: ./tutela.toml when it exists].
    #[arg(long, global = true, env = "TUTELA_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    /// The register of processing activities [default: the built-in example register].
    #[arg(long, global = true, env = "TUTELA_POLICY", value_name = "FILE")]
    policy: Option<PathBuf>,

    /// Data directory for the embedded SQLite database and keys [default: ./tutela-data].
    #[arg(long, global = true, env = "TUTELA_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,

    /// Use PostgreSQL instead of SQLite, e.g. postgres://tutela@127.0.0.1/tutela.
    #[arg(
        long,
        global = true,
        env = "TUTELA_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    database_url: Option<String>,

    /// The vault's key file, created (mode 0600) on first start [default: DATA_DIR/master.key].
    #[arg(
        long,
        global = true,
        env = "TUTELA_MASTER_KEY_FILE",
        value_name = "FILE"
    )]
    master_key_file: Option<PathBuf>,

    /// Log format on standard error: text or json [default: text].
    #[arg(long, global = true, env = "TUTELA_LOG_FORMAT", value_name = "FORMAT")]
    log_format: Option<LogFormat>,

    /// Log filter, e.g. info, debug or "tutela=debug,info" [default: info].
    #[arg(long, global = true, env = "TUTELA_LOG_LEVEL", value_name = "FILTER")]
    log_level: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server: privacy notice, register API, health and metrics.
    #[command(after_help = serve::AFTER_HELP)]
    Serve(serve::ServeArgs),
    /// Check, render and export the register of processing activities.
    #[command(subcommand, after_help = POLICY_HELP)]
    Policy(policy_cmd::PolicyCommand),
    /// Create, list and revoke API tokens (bearer tokens with scopes).
    #[command(subcommand, after_help = tokens_cmd::AFTER_HELP)]
    Tokens(tokens_cmd::TokensCommand),
    /// Add, list and disable console operators; reset a lost second factor.
    #[command(subcommand, after_help = operators_cmd::AFTER_HELP)]
    Operators(operators_cmd::OperatorsCommand),
    /// Delete expired personal records now (the server also does it periodically).
    #[command(subcommand, after_help = retention_cmd::AFTER_HELP)]
    Retention(retention_cmd::RetentionCommand),
    /// Verify the tamper-evident audit log, or export it as JSON lines.
    #[command(subcommand, after_help = audit_cmd::AFTER_HELP)]
    Audit(audit_cmd::AuditCommand),
    /// Show the vault's keys, or rotate the master key (re-wraps subject keys only).
    #[command(subcommand, after_help = keys::AFTER_HELP)]
    Keys(keys::KeysCommand),
}

fn main() -> ExitCode {
    tutela_store::tune_allocator();
    let cli = Cli::parse();
    let (file_cfg, cfg_path) = match config::read_file(cli.config.as_deref()) {
        Ok(v) => v,
        Err(err) => {
            eprintln!("error: {err:#}");
            return ExitCode::from(2);
        }
    };
    init_logging(&cli, &file_cfg);
    if let Some(path) = &cfg_path {
        tracing::debug!(path = %path.display(), "read configuration file");
    }
    let ctx = context::Context::new(
        file_cfg,
        cli.policy.clone(),
        cli.data_dir.clone(),
        cli.database_url.clone(),
        cli.master_key_file.clone(),
    );
    let result = match cli.command {
        Command::Policy(cmd) => policy_cmd::run(cmd, &ctx.policy),
        Command::Serve(args) => serve::run(args, ctx),
        Command::Tokens(cmd) => tokens_cmd::run(cmd, &ctx),
        Command::Operators(cmd) => operators_cmd::run(cmd, &ctx),
        Command::Retention(cmd) => retention_cmd::run(cmd, &ctx),
        Command::Audit(cmd) => audit_cmd::run(cmd, &ctx),
        Command::Keys(cmd) => keys::run(cmd, &ctx),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(cli: &Cli, file: &config::FileConfig) {
    use tracing_subscriber::EnvFilter;
    let level = cli
        .log_level
        .clone()
        .or_else(|| file.log.level.clone())
        .unwrap_or_else(|| "info".to_string());
    let filter = EnvFilter::try_new(&level).unwrap_or_else(|_| {
        eprintln!("warning: invalid log filter {level:?}; using \"info\"");
        EnvFilter::new("info")
    });
    let json = match cli.log_format {
        Some(LogFormat::Json) => true,
        Some(LogFormat::Text) => false,
        None => file.log.format.as_deref() == Some("json"),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
