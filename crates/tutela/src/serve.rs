//! `tutela serve`: load the register, open the store, serve HTTP until SIGINT/SIGTERM.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use std::sync::Arc;

use tutela_http::consent::ConsentOptions;
use tutela_http::{AppState, LoadedRegister, build_app};
use tutela_vault::Vault;

use crate::config::{self, PolicySource};
use crate::context::Context;

pub const AFTER_HELP: &str = "Examples:
  tutela serve
  tutela serve --listen 0.0.0.0:8080 --data-dir /var/lib/tutela
  TUTELA_DATABASE_URL=postgres://tutela@db/tutela tutela serve

  tutela serve --consent-origin https://www.example.com   # pages of that site post consent

Routes: /privacy (?lang=fr), /privacy.md, /.well-known/gpc.json, /healthz, /readyz, /metrics,
/api/v1/register, /api/v1/register/ropa.csv, /api/v1/register/ropa.json;
web analytics: /matomo.php, /piwik.php (collector), /matomo.js, /piwik.js, /tutela.js (tracker),
/optout, /analytics (dashboard), /api/v1/analytics/… (reports, rights hooks).
Sites that may send hits are [[sites]] tables in tutela.toml (default: site 1, localhost).
/api/v1/register, /api/v1/register/ropa.csv, /api/v1/register/ropa.json, the vault API under
/api/v1/subjects (bearer tokens), documented in /api/v1/openapi.json; the consent banner
/consent.js and /consent.css, /api/v1/consent (POST), /api/v1/consent/{id} (receipt),
/api/v1/consent/config, /api/v1/consent/export and /api/v1/consent/stats (token with consent:read).
On first start the vault's key file is created (DATA_DIR/master.key, or TUTELA_MASTER_KEY_FILE):
back it up. The retention job (vault records and consent records) runs every 10 minutes
([retention] interval, or TUTELA_RETENTION_INTERVAL=\"1 hour\" / \"off\").
Once listening, the address is printed on standard output as `listening on http://ADDR`.";

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port) [default: 127.0.0.1:8080].
    #[arg(long, env = "TUTELA_LISTEN", value_name = "ADDR")]
    listen: Option<String>,

    /// How often the retention job deletes expired records, e.g. "10 minutes", or "off"
    /// [default: 10 minutes].
    #[arg(long, env = "TUTELA_RETENTION_INTERVAL", value_name = "INTERVAL")]
    retention_interval: Option<String>,

    /// An origin whose pages may post consent records (repeat for several; `*` for any)
    /// [default: Tutela's own origin only].
    #[arg(
        long = "consent-origin",
        env = "TUTELA_CONSENT_ORIGINS",
        value_name = "ORIGIN",
        value_delimiter = ','
    )]
    consent_origins: Vec<String>,

    /// Consent records accepted per minute from one client address; 0 turns the limit off
    /// [default: 60].
    #[arg(long, env = "TUTELA_CONSENT_RATE_LIMIT", value_name = "N")]
    consent_rate_limit: Option<u32>,
}

pub fn run(args: ServeArgs, ctx: Context) -> anyhow::Result<ExitCode> {
    let listen = args
        .listen
        .or(ctx.file.listen.clone())
        .unwrap_or_else(|| config::DEFAULT_LISTEN.to_string());
    let listen = config::parse_listen(&listen)?;
    let interval = args
        .retention_interval
        .or(ctx.file.retention.interval.clone())
        .unwrap_or_else(|| config::DEFAULT_RETENTION_INTERVAL.to_string());
    let interval = config::parse_interval(&interval)?;
    let policy = &ctx.policy;
    let mut consent = ConsentOptions::default();
    consent.allowed_origins = if args.consent_origins.is_empty() {
        ctx.file.consent.allowed_origins.clone().unwrap_or_default()
    } else {
        args.consent_origins.clone()
    };
    for o in &consent.allowed_origins {
        anyhow::ensure!(
            o == "*" || tutela_domain::consent::normalise_origin(o).is_some(),
            "invalid consent origin {o:?}: write it as scheme://host[:port], e.g. https://www.example.com"
        );
    }
    if let Some(n) = args.consent_rate_limit.or(ctx.file.consent.rate_limit) {
        consent.rate_limit_per_minute = n;
    }

    // Validate the register before anything else: a bad register never serves a wrong notice.
    let register = crate::policy_cmd::load(policy)?;
    if matches!(policy, PolicySource::BuiltInExample) {
        tracing::info!(
            "using the built-in example register (examples/policy.toml); pass --policy to use yours"
        );
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let store = ctx.open_store().await?;
        tracing::info!(engine = store.engine().as_str(), "database ready");

        let hash = register.content_hash();
        let content = serde_json::to_string(&register)?;
        let revision = register.latest_revision().map(|r| r.id.clone());
        let (version, created) = store
            .record_register_version(&hash, revision.as_deref(), &content, jiff::Timestamp::now().as_second())
            .await
            .context("cannot record the register version")?;
        if created {
            tracing::info!(version = version.id, hash = %&hash[..12], "recorded a new register version");
        }
        let last_updated = jiff::Timestamp::from_second(version.recorded_at)
            .context("stored register version has an invalid date")?
            .to_zoned_datetime(jiff::tz::TimeZone::UTC)
            .date();

        // Compile the user-agent rules while the rest starts (first hits would otherwise wait).
        std::thread::spawn(tutela_analytics::ua::warm_up);
        let sites = ctx
            .file
            .sites
            .clone()
            .unwrap_or_else(tutela_analytics::SiteConfig::default_sites);
        let analytics = tutela_analytics::Analytics::start(
            ctx.file.analytics.clone(),
            &sites,
            &register,
            store.clone(),
        )
        .context("cannot start web analytics")?;
        let analytics_for_job = analytics.clone();
        let keys = crate::keys::load_or_create(&ctx.master_key_file, &store).await?;
        let vault = Vault::new(store.clone(), Arc::new(register.clone()), keys.vault_keys()?);
        tracing::info!(
            master_key = %keys.master.id(),
            index_root = %keys.index_root.id(),
            "vault keys loaded"
        );
        drop(keys);
        let state = AppState::new(
            LoadedRegister {
                register,
                hash,
                last_updated,
            },
            store.clone(),
            vault.clone(),
            analytics,
        )
        .with_consent_options(&consent);
        let app = build_app(state.clone());
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let local = listener.local_addr()?;
        println!("listening on http://{local}");
        tracing::info!(address = %local, "serving");
        let jobs = match interval {
            Some(every) => vec![
                crate::jobs::spawn_retention(vault, every),
                crate::consent_job::spawn(state, every),
                crate::analytics_job::spawn(analytics_for_job, every),
            ],
            None => {
                tracing::warn!("the retention job is off on this node ([retention] interval = \"off\")");
                Vec::new()
            }
        };
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("server error")?;
        for job in jobs {
            job.abort();
        }
        tracing::info!("shutting down: closing the database");
        store.close().await;
        Ok(ExitCode::SUCCESS)
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown requested; finishing in-flight requests");
}
