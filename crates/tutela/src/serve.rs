//! `tutela serve`: load the register, open the store, serve HTTP until SIGINT/SIGTERM.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use tutela_http::{AppState, LoadedRegister, build_app};

use crate::config::{self, PolicySource};
use crate::context::Context;

pub const AFTER_HELP: &str = "Examples:
  tutela serve
  tutela serve --listen 0.0.0.0:8080 --data-dir /var/lib/tutela
  TUTELA_DATABASE_URL=postgres://tutela@db/tutela tutela serve

Routes: /privacy (?lang=fr), /privacy.md, /.well-known/gpc.json, /healthz, /readyz, /metrics,
/api/v1/register, /api/v1/register/ropa.csv, /api/v1/register/ropa.json;
web analytics: /matomo.php, /piwik.php (collector), /matomo.js, /piwik.js, /tutela.js (tracker),
/optout, /analytics (dashboard), /api/v1/analytics/… (reports, rights hooks).
Sites that may send hits are [[sites]] tables in tutela.toml (default: site 1, localhost).
Once listening, the address is printed on standard output as `listening on http://ADDR`.";

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port) [default: 127.0.0.1:8080].
    #[arg(long, env = "TUTELA_LISTEN", value_name = "ADDR")]
    listen: Option<String>,
}

pub fn run(args: ServeArgs, ctx: Context) -> anyhow::Result<ExitCode> {
    let listen = args
        .listen
        .or(ctx.file.listen.clone())
        .unwrap_or_else(|| config::DEFAULT_LISTEN.to_string());
    let listen = config::parse_listen(&listen)?;
    let policy = &ctx.policy;

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
        crate::analytics_job::spawn(analytics.clone());
        let state = AppState::new(
            LoadedRegister {
                register,
                hash,
                last_updated,
            },
            store.clone(),
            analytics,
        );
        let app = build_app(state)
            .into_make_service_with_connect_info::<std::net::SocketAddr>();
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let local = listener.local_addr()?;
        println!("listening on http://{local}");
        tracing::info!(address = %local, "serving");
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown_signal())
            .await
            .context("server error")?;
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
