//! Wiring of the rights engine: its key root, its mailer and its settings.

use std::sync::Arc;

use anyhow::Context as _;
use tutela_crypto::Zeroizing;
use tutela_domain::Register;
use tutela_rights::{Mailer, RightsConfig, RightsKeys, RightsService, Transport};
use tutela_store::Store;

use crate::context::Context;

/// The rights engine as configured.
pub fn build(
    ctx: &Context,
    register: &Register,
    store: Store,
    keys: RightsKeys,
    public_url: &str,
) -> anyhow::Result<RightsService> {
    let transport = std::env::var("TUTELA_MAIL_TRANSPORT")
        .ok()
        .or_else(|| ctx.file.mail.transport.clone())
        .unwrap_or_else(|| format!("file:{}", ctx.data_dir.join("outbox").display()));
    let transport = Transport::parse(&transport)
        .context("invalid mail transport ([mail] transport or TUTELA_MAIL_TRANSPORT)")?;
    let from = ctx
        .file
        .mail
        .from
        .clone()
        .unwrap_or_else(|| register.rights.email.clone());
    let mailer = Mailer::new(&from, &transport).context("cannot set up the mail transport")?;
    tracing::info!(transport = mailer.description(), "mail ready");

    let platform_secret = match std::env::var("TUTELA_RIGHTS_PLATFORM_SECRET") {
        Ok(v) => Some(Zeroizing::new(v.trim().as_bytes().to_vec())),
        Err(_) => match &ctx.file.rights.platform_secret_file {
            Some(path) => {
                let text = Zeroizing::new(std::fs::read_to_string(path).with_context(|| {
                    format!("cannot read the platform secret {}", path.display())
                })?);
                Some(Zeroizing::new(text.trim().as_bytes().to_vec()))
            }
            None => None,
        },
    };
    if platform_secret.as_ref().is_some_and(|s| s.len() < 32) {
        anyhow::bail!("the platform secret must be at least 32 characters long");
    }
    let defaults = RightsConfig::default();
    let challenge_minutes = ctx
        .file
        .rights
        .challenge_minutes
        .unwrap_or(defaults.challenge_ttl_secs / 60);
    if !(5..=7 * 24 * 60).contains(&challenge_minutes) {
        anyhow::bail!("[rights] challenge_minutes must be between 5 and 10080");
    }
    let max_attempts = ctx
        .file
        .rights
        .max_attempts
        .unwrap_or(defaults.max_attempts);
    if !(1..=10).contains(&max_attempts) {
        anyhow::bail!("[rights] max_attempts must be between 1 and 10");
    }
    let public_url = public_url.trim_end_matches('/').to_string();
    if !(public_url.starts_with("http://") || public_url.starts_with("https://")) {
        anyhow::bail!(
            "the public URL (--public-url, [console] public_url) must start with http:// or https://"
        );
    }
    let config = RightsConfig {
        public_url,
        challenge_ttl_secs: challenge_minutes * 60,
        max_attempts,
        platform_secret,
        ..defaults
    };
    Ok(RightsService::new(
        store,
        Arc::new(register.clone()),
        keys,
        Some(mailer),
        config,
    ))
}

/// Mails the DPO the requests due within a week or overdue, once a day, on one node (lease).
pub fn spawn_reminder_job(svc: RightsService, store: Store) {
    let holder = format!(
        "{}-{}",
        std::process::id(),
        jiff::Timestamp::now().as_nanosecond()
    );
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(24 * 3600));
        loop {
            tick.tick().await;
            let now = jiff::Timestamp::now();
            match store
                .try_lease("rights-reminders", &holder, now.as_second(), 23 * 3600)
                .await
            {
                Ok(true) => match svc.remind(now).await {
                    Ok(n) if n > 0 => {
                        tracing::info!(requests = n, "rights reminder sent to the DPO")
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "rights reminder failed"),
                },
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "rights reminder lease failed"),
            }
        }
    });
}

/// Purges request records past their purge date, once an hour, on one node (lease).
pub fn spawn_purge_job(svc: RightsService, store: Store) {
    let holder = format!(
        "{}-{}",
        std::process::id(),
        jiff::Timestamp::now().as_nanosecond()
    );
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
        loop {
            tick.tick().await;
            let now = jiff::Timestamp::now();
            match store
                .try_lease("rights-purge", &holder, now.as_second(), 3000)
                .await
            {
                Ok(true) => match svc.purge_all(now).await {
                    Ok((0, 0)) => {}
                    Ok((requests, packages)) => tracing::info!(
                        requests,
                        packages,
                        "purged rights-request records past their deadline and expired packages"
                    ),
                    Err(e) => tracing::warn!(error = %e, "rights purge failed"),
                },
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "rights purge lease failed"),
            }
        }
    });
}

/// What the sources beyond the vault need.
pub struct MoreSources {
    /// Web analytics (events by visitor pseudonym), when it runs.
    pub analytics: Option<Arc<tutela_analytics::Analytics>>,
    /// The store holding consent records.
    pub store: Store,
    /// The hash of the register in force (written in consent-withdrawal records).
    pub register_hash: String,
}

/// The execution engine with every source: the vault, analytics events, consent records, and
/// every configured connector.
pub async fn executor(
    ctx: &Context,
    register: &Register,
    svc: RightsService,
    vault: tutela_vault::Vault,
    more: MoreSources,
) -> anyhow::Result<tutela_rights::execute::Executor> {
    use tutela_rights::source::Source;
    let mut sources: Vec<Arc<dyn Source>> = Vec::new();
    // The vault, read and erased under the register's purpose for handling rights requests.
    let purpose = ctx
        .file
        .rights
        .vault_purpose
        .clone()
        .unwrap_or_else(|| "rights_requests".to_string());
    match tutela_rights::vault_source::VaultSource::new(vault, &purpose) {
        Ok(v) => sources.push(Arc::new(v)),
        Err(_) => tracing::warn!(
            purpose = %purpose,
            "the register has no such purpose for handling rights requests: requests will not reach the vault; set [rights] vault_purpose"
        ),
    }
    if let Some(analytics) = more.analytics {
        match tutela_rights::analytics_source::AnalyticsSource::new(analytics) {
            Ok(a) => sources.push(Arc::new(a)),
            Err(e) => tracing::info!(reason = %e, "rights requests will not reach web analytics"),
        }
    }
    match tutela_rights::consent_source::ConsentSource::new(
        more.store,
        Arc::new(register.clone()),
        &more.register_hash,
    ) {
        Ok(c) => sources.push(Arc::new(c)),
        Err(e) => tracing::info!(reason = %e, "rights requests will not reach consent records"),
    }
    for cfg in &ctx.file.connectors.sql {
        let c = tutela_rights::connectors::sql::SqlConnector::connect(cfg)
            .await
            .map_err(|e| anyhow::anyhow!("SQL connector `{}`: {e}", cfg.name))?;
        sources.push(Arc::new(c));
    }
    for cfg in &ctx.file.connectors.webhook {
        let c = tutela_rights::connectors::webhook::WebhookConnector::new(cfg, register)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        sources.push(Arc::new(c));
    }
    let mut names: Vec<&str> = sources.iter().map(|s| s.name()).collect();
    names.sort_unstable();
    if names.windows(2).any(|w| w[0] == w[1]) {
        anyhow::bail!("two connectors have the same name");
    }
    tracing::info!(sources = sources.len(), "rights execution engine ready");
    Ok(tutela_rights::execute::Executor::new(svc, sources))
}

/// Runs the due execution steps every 30 seconds (steps are leased: several nodes may run it).
pub fn spawn_step_runner(exec: Arc<tutela_rights::execute::Executor>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(30));
        loop {
            tick.tick().await;
            match exec.run_due(jiff::Timestamp::now()).await {
                Ok(r) if r.done + r.retried + r.failed > 0 => {
                    tracing::info!(
                        done = r.done,
                        retried = r.retried,
                        failed = r.failed,
                        "rights steps ran"
                    )
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "rights step runner failed"),
            }
        }
    });
}
