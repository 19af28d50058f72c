//! `tutela serve`: load the register, open the store, serve HTTP until SIGINT/SIGTERM.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use std::sync::Arc;
use tutela_crypto::password::PasswordParams;
use tutela_http::consent::ConsentOptions;
use tutela_http::console::ConsoleConfig;
use tutela_http::{AppState, LoadedRegister, build_app};
use tutela_vault::{Actor, Vault};

use crate::config::{self, PolicySource};
use crate::context::Context;

pub const AFTER_HELP: &str = "Examples:
  tutela serve
  tutela serve --listen 0.0.0.0:8080 --data-dir /var/lib/tutela
  TUTELA_DATABASE_URL=postgres://tutela@db/tutela tutela serve

  tutela serve --secure-cookies false          # plain-HTTP development on another host than localhost
  tutela serve --consent-origin https://www.example.com   # pages of that site post consent

Routes: /privacy (?lang=fr), /privacy.md, /rights (the rights portal), /.well-known/gpc.json,
/healthz, /readyz, /metrics, /api/v1/register, /api/v1/register/ropa.csv,
/api/v1/register/ropa.json, the vault API under /api/v1/subjects and the rights API under
/api/v1/rights (bearer tokens), documented in /api/v1/openapi.json;
the consent banner /consent.js and /consent.css, /api/v1/consent (POST), /api/v1/consent/{id} (receipt),
/api/v1/consent/config, /api/v1/consent/export and /api/v1/consent/stats (token with consent:read),
and the operators' console at /console; web analytics: /matomo.php and /piwik.php (collector),
/matomo.js, /piwik.js and /tutela.js (tracker), /optout, /analytics (dashboard) and
/api/v1/analytics/… (reports, rights hooks). Sites that may send hits are [[sites]] tables in
tutela.toml (default: site 1, localhost).
On first start the vault's key file is created (DATA_DIR/master.key, or TUTELA_MASTER_KEY_FILE):
back it up. The retention job (vault records, consent records, analytics days and salts) runs every 10 minutes
([retention] interval, or TUTELA_RETENTION_INTERVAL=\"1 hour\" / \"off\").
E-mail: [mail] in tutela.toml or TUTELA_MAIL_TRANSPORT (default: .eml files in <data_dir>/outbox).
Once listening, the address is printed on standard output as `listening on http://ADDR`. While no
operator exists, a one-time link that creates the first administrator follows on the next line
(valid 24 hours; a restart prints a new one).";

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port) [default: 127.0.0.1:8080].
    #[arg(long, env = "TUTELA_LISTEN", value_name = "ADDR")]
    listen: Option<String>,

    /// How often the retention job deletes expired records, e.g. "10 minutes", or "off"
    /// [default: 10 minutes].
    #[arg(long, env = "TUTELA_RETENTION_INTERVAL", value_name = "INTERVAL")]
    retention_interval: Option<String>,

    /// Mark console cookies Secure with the __Host- prefix [default: true]. Set false only for
    /// plain-HTTP development: browsers then send the session over an unencrypted connection.
    #[arg(long, env = "TUTELA_CONSOLE_SECURE_COOKIES", value_name = "BOOL")]
    secure_cookies: Option<bool>,

    /// Take the client address (for sign-in throttling) from the last X-Forwarded-For entry
    /// [default: false]. Only behind a reverse proxy that sets it, or clients choose their own.
    #[arg(long, env = "TUTELA_TRUST_FORWARDED_FOR", value_name = "BOOL")]
    trust_forwarded_for: Option<bool>,

    /// The address people use to reach Tutela (base of the setup link) [default: http://ADDR].
    #[arg(long, env = "TUTELA_PUBLIC_URL", value_name = "URL")]
    public_url: Option<String>,

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

    /// Time a client has to send a whole request head once its first byte arrived, e.g.
    /// "10 seconds" [default: 10 seconds].
    #[arg(long, env = "TUTELA_HEADER_READ_TIMEOUT", value_name = "DURATION")]
    header_read_timeout: Option<String>,

    /// How long an idle keep-alive connection stays open waiting for its next request
    /// [default: 60 seconds].
    #[arg(long, env = "TUTELA_KEEP_ALIVE_TIMEOUT", value_name = "DURATION")]
    keep_alive_timeout: Option<String>,

    /// Time a handler may spend receiving a request body, from the end of the request head
    /// [default: 60 seconds].
    #[arg(long, env = "TUTELA_BODY_READ_TIMEOUT", value_name = "DURATION")]
    body_read_timeout: Option<String>,

    /// Most connections open at once; more wait in the listen backlog [default: 4096].
    #[arg(long, env = "TUTELA_MAX_CONNECTIONS", value_name = "N")]
    max_connections: Option<usize>,
}

/// The server's connection limits: flags and variables, then `[server]` in tutela.toml, then
/// the defaults.
fn limits(
    args: &ServeArgs,
    file: &config::ServerConfig,
) -> anyhow::Result<crate::http_server::Limits> {
    let defaults = crate::http_server::Limits::default();
    let duration = |flag: &Option<String>, key: &Option<String>, name: &str, default| match flag
        .as_ref()
        .or(key.as_ref())
    {
        None => Ok(default),
        Some(text) => config::parse_duration(text).with_context(|| format!("invalid {name}")),
    };
    let max_connections = args
        .max_connections
        .or(file.max_connections)
        .unwrap_or(defaults.max_connections);
    anyhow::ensure!(
        (1..=1_000_000).contains(&max_connections),
        "invalid max_connections {max_connections}: give 1 to 1000000"
    );
    Ok(crate::http_server::Limits {
        header_read_timeout: duration(
            &args.header_read_timeout,
            &file.header_read_timeout,
            "header_read_timeout",
            defaults.header_read_timeout,
        )?,
        keep_alive_timeout: duration(
            &args.keep_alive_timeout,
            &file.keep_alive_timeout,
            "keep_alive_timeout",
            defaults.keep_alive_timeout,
        )?,
        body_read_timeout: duration(
            &args.body_read_timeout,
            &file.body_read_timeout,
            "body_read_timeout",
            defaults.body_read_timeout,
        )?,
        max_connections,
    })
}

pub fn run(args: ServeArgs, ctx: Context) -> anyhow::Result<ExitCode> {
    let limits = limits(&args, &ctx.file.server)?;
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
    let (register, warnings) = crate::policy_cmd::load_with_warnings(policy)?;
    let console = ConsoleConfig {
        secure_cookies: args
            .secure_cookies
            .or(ctx.file.console.secure_cookies)
            .unwrap_or(true),
        trust_forwarded_for: args
            .trust_forwarded_for
            .or(ctx.file.console.trust_forwarded_for)
            .unwrap_or(false),
        // Never lowered here: only tests build a state with cheaper parameters.
        password_params: PasswordParams::RFC9106_SECOND,
        public_url: args
            .public_url
            .clone()
            .or(ctx.file.console.public_url.clone()),
        support_purposes: ctx
            .file
            .console
            .support_purposes
            .clone()
            .unwrap_or_else(|| ConsoleConfig::default().support_purposes),
        ..ConsoleConfig::default()
    };
    // A configured list must name purposes of the register (the default list is only a
    // suggestion: ids the register lacks are ignored).
    if let Some(unknown) = ctx
        .file
        .console
        .support_purposes
        .iter()
        .flatten()
        .find(|p| register.purpose(p).is_none())
    {
        anyhow::bail!(
            "[console] support_purposes names {unknown:?}, which is not a purpose of the register"
        );
    }
    if !console.secure_cookies {
        tracing::warn!(
            "console cookies are not marked Secure: use this only for plain-HTTP development"
        );
    }
    let public_url = args.public_url.or(ctx.file.console.public_url.clone());
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
        // Before serving: the deadlines of stored records follow the register in force (a
        // shortened period reaches the records already stored). Under the retention lease, so
        // that one node does it; if another node holds it, the retention job does it later.
        let holder = crate::jobs::holder();
        if store
            .try_lease(crate::jobs::RETENTION_LEASE, &holder, jiff::Timestamp::now().as_second(), 3600)
            .await?
        {
            let applied =
                crate::deadlines::apply_pending(&vault, &Actor::new("job:retention"), false).await;
            store.release_lease(crate::jobs::RETENTION_LEASE, &holder).await?;
            // Not a reason to stop serving: reads already hide what is past its stored deadline,
            // and the retention job retries at its next run.
            if let Err(e) = applied {
                tracing::error!(
                    error = %e,
                    "cannot bring stored deadlines in line with the register yet; the retention job retries"
                );
            }
        } else {
            tracing::info!(
                "another node holds the retention lease: the retention job brings stored deadlines in line with the register"
            );
        }
        tracing::info!(
            master_key = %keys.master.id(),
            index_root = %keys.index_root.id(),
            "vault keys loaded"
        );
        // The rights engine's keys derive from the index root, which never rotates.
        let rights_keys = tutela_rights::RightsKeys::from_root(&keys.index_root);
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
        .with_console(console)
        .with_register_warnings(warnings)
        .with_consent_options(&consent);
        let idle = state.console.config.session_idle_secs;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let local = listener.local_addr()?;
        let rights = crate::rights_setup::build(
            &ctx,
            &state.register.register,
            store.clone(),
            rights_keys,
            // Links in e-mails use the same public address as the console's setup links.
            &public_url.clone().unwrap_or_else(|| format!("http://{local}")),
        )?;
        crate::rights_setup::spawn_purge_job(rights.clone(), store.clone());
        crate::rights_setup::spawn_reminder_job(rights.clone(), store.clone());
        let executor = crate::rights_setup::executor(
            &ctx,
            &state.register.register,
            rights.clone(),
            vault.clone(),
            crate::rights_setup::MoreSources {
                analytics: Some(analytics_for_job.clone()),
                store: store.clone(),
                register_hash: state.register.hash.clone(),
            },
        )
        .await?;
        let state = state.with_rights(rights).with_executor(executor);
        if let Some(exec) = &state.executor {
            crate::rights_setup::spawn_step_runner(exec.clone());
        }
        let app = build_app(state.clone());
        let shutdown = shutdown_signal();
        println!("listening on http://{local}");
        tracing::info!(address = %local, "serving");
        first_admin_link(&store, public_url.as_deref(), local).await?;
        tokio::spawn(purge_sessions(store.clone(), idle));
        let jobs = match interval {
            Some(every) => vec![
                crate::analytics_job::spawn(analytics_for_job, vault.clone(), every),
                crate::jobs::spawn_retention(vault, every),
                crate::consent_job::spawn(state, every),
            ],
            None => {
                tracing::warn!("the retention job is off on this node ([retention] interval = \"off\")");
                Vec::new()
            }
        };
        crate::http_server::serve(listener, app, limits, shutdown).await;
        crate::jobs::stop_and_release(&store, jobs).await;
        tracing::info!("shutting down: closing the database");
        store.close().await;
        Ok(ExitCode::SUCCESS)
    })
}

/// While no operator exists, prints (once, on standard output, never in the log) a one-time link
/// that creates the first administrator.
async fn first_admin_link(
    store: &tutela_store::Store,
    public_url: Option<&str>,
    local: std::net::SocketAddr,
) -> anyhow::Result<()> {
    if store.operator_count().await? > 0 {
        return Ok(());
    }
    let token = tutela_crypto::session::new_setup_token()?;
    let now = jiff::Timestamp::now().as_second();
    store
        .insert_setup_token(
            &token.hash,
            None,
            now,
            now + tutela_http::console::FIRST_ADMIN_LINK_SECS,
        )
        .await
        .context("cannot store the first-administrator link")?;
    let base = crate::operators_cmd::base_url(public_url, &local.to_string());
    // Written, not `println!`: a closed standard output (a supervisor that stopped reading)
    // must not take the server down.
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "no operator yet: create the first administrator at {base}/console/setup?token={} (valid 24 hours, usable once)",
        token.secret.as_str()
    );
    let _ = out.flush();
    tracing::info!("printed a one-time link for the first administrator on standard output");
    Ok(())
}

/// Deletes ended console sessions every ten minutes.
async fn purge_sessions(store: tutela_store::Store, idle_secs: i64) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(600));
    loop {
        tick.tick().await;
        let now = jiff::Timestamp::now().as_second();
        match store.purge_sessions(now, now - idle_secs).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(sessions = n, "purged ended console sessions"),
            Err(err) => tracing::warn!(error = %err, "could not purge console sessions"),
        }
    }
}

/// Installs the SIGINT/SIGTERM handlers now and returns the future that resolves on either.
/// Installed before the server says it is listening: a signal that arrives between that line
/// and the first poll of the future would otherwise kill the process the default way, without
/// the graceful stop (connections finished, job leases given back, database closed).
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let (mut interrupt, mut terminate) = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::interrupt()).ok(),
            signal(SignalKind::terminate()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let interrupt = async {
                match interrupt.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            let terminate = async {
                match terminate.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = interrupt => {},
                () = terminate => {},
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutdown requested; finishing in-flight requests");
    }
}
