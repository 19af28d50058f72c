//! Tutela's HTTP surface. [`build_app`] assembles every route; `main` and the tests use it alike.
//!
//! This crate never talks to a database driver: it goes through `tutela-store`.

pub mod analytics;
pub mod auth;
pub mod consent;
mod consent_gate;
pub mod console;
mod error;
mod middleware;
mod public;
mod rights;
mod vault_api;

use std::sync::{Arc, OnceLock};

use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tutela_domain::Register;
use tutela_store::Store;
use tutela_vault::Vault;

pub use error::{ApiError, ErrorCode};
pub use vault_api::openapi;

/// The register as loaded, with what the server needs to present it.
#[derive(Debug)]
pub struct LoadedRegister {
    pub register: Register,
    /// The register's canonical hash (also stored with its version).
    pub hash: String,
    /// The date this version was first loaded: the notice's "last updated".
    pub last_updated: jiff::civil::Date,
}

/// Everything the handlers share, behind one `Arc`: axum clones the state for every request (and
/// every layer that takes it), and cloning a dozen `Arc`s per hit showed up in the collector's
/// profile. Fields are reached through `Deref`.
#[derive(Clone)]
pub struct AppState(Arc<AppStateInner>);

impl std::ops::Deref for AppState {
    type Target = AppStateInner;

    fn deref(&self) -> &AppStateInner {
        &self.0
    }
}

/// The fields of [`AppState`].
#[derive(Clone)]
pub struct AppStateInner {
    pub register: Arc<LoadedRegister>,
    pub store: Store,
    /// The personal-data vault: handlers read and write personal data only through it.
    pub vault: Vault,
    pub metrics: PrometheusHandle,
    /// The rights engine (portal and API answer 503 without it).
    pub rights: Option<tutela_rights::RightsService>,
    /// The execution engine (sources and connectors) behind `start_execution` and `finish`.
    pub executor: Option<Arc<tutela_rights::execute::Executor>>,
    /// The operators' console: settings, sign-in throttle, hashing slots.
    pub console: Arc<console::ConsoleState>,
    /// The register's validation warnings (shown in the console).
    pub register_warnings: Arc<Vec<tutela_domain::Diagnostic>>,
    /// Consent records: writer, allowed origins, rate limit.
    pub consent: consent::ConsentState,
    /// Web analytics: collector, reports, dashboard sessions.
    pub analytics: Arc<analytics::AnalyticsState>,
}

impl AppState {
    /// Must be called on a Tokio runtime (it starts the consent record writer).
    pub fn new(
        register: LoadedRegister,
        store: Store,
        vault: Vault,
        analytics: Arc<tutela_analytics::Analytics>,
    ) -> Self {
        let consent = consent_state(
            &register,
            &store,
            &analytics,
            &consent::ConsentOptions::default(),
        );
        AppState(Arc::new(AppStateInner {
            register: Arc::new(register),
            consent,
            store,
            vault,
            metrics: metrics_handle(),
            rights: None,
            executor: None,
            console: Arc::new(console::ConsoleState::new(console::ConsoleConfig::default())),
            register_warnings: Arc::new(Vec::new()),
            analytics: Arc::new(analytics::AnalyticsState::new(analytics)),
        }))
    }

    fn inner(&mut self) -> &mut AppStateInner {
        Arc::make_mut(&mut self.0)
    }

    /// Adds the execution engine (sources: the vault and the connectors).
    pub fn with_executor(mut self, executor: tutela_rights::execute::Executor) -> Self {
        self.inner().executor = Some(Arc::new(executor));
        self
    }

    /// Adds the rights engine (portal `/rights` and `/api/v1/rights/…`).
    pub fn with_rights(mut self, rights: tutela_rights::RightsService) -> Self {
        self.inner().rights = Some(rights);
        self
    }

    /// Replaces the console settings.
    pub fn with_console(mut self, config: console::ConsoleConfig) -> Self {
        self.inner().console = Arc::new(console::ConsoleState::new(config));
        self
    }

    /// Records the register's validation warnings for the console.
    pub fn with_register_warnings(mut self, warnings: Vec<tutela_domain::Diagnostic>) -> Self {
        self.inner().register_warnings = Arc::new(warnings);
        self
    }

    /// Replaces the consent settings (allowed origins, rate limit, queue size).
    pub fn with_consent_options(mut self, options: &consent::ConsentOptions) -> Self {
        let consent = consent_state(
            &self.register,
            &self.store,
            &self.analytics.analytics,
            options,
        );
        self.inner().consent = consent;
        self
    }
}

/// The consent state for this register: its writer, and the analytics purpose whose legal basis
/// decides whether hits need a recorded grant.
fn consent_state(
    register: &LoadedRegister,
    store: &Store,
    analytics: &tutela_analytics::Analytics,
    options: &consent::ConsentOptions,
) -> consent::ConsentState {
    consent::ConsentState::new(&register.register, store.clone(), options).with_analytics_purpose(
        &register.register,
        analytics.policy.as_ref().map(|p| p.purpose_id.as_str()),
    )
}

/// The process-wide Prometheus recorder (installed once, shared by every router in the process).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                ])
                .expect("static bucket list is not empty")
                .build_recorder();
            let handle = recorder.handle();
            // Histogram samples pile up in the recorder until they are folded into buckets: a
            // scrape does it, and so does this thread, so that memory stays bounded when
            // nobody scrapes `/metrics` (millions of hits would otherwise keep every sample).
            let upkeep = handle.clone();
            let _ = std::thread::Builder::new()
                .name("tutela-metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(std::time::Duration::from_secs(5));
                        upkeep.run_upkeep();
                    }
                });
            // A recorder may already be installed (e.g. by an embedding program): then ours
            // only renders what it records, which is nothing; say so once.
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
            }
            handle
        })
        .clone()
}

/// Every route of Tutela, with its middleware.
pub fn build_app(state: AppState) -> Router {
    public::routes()
        .merge(auth::routes())
        .merge(rights::routes())
        .merge(console::routes())
        .merge(analytics::routes())
        .merge(vault_api::routes())
        .merge(consent::routes())
        .fallback(error::not_found)
        .layer(axum::middleware::from_fn(middleware::edge))
        .layer(axum::extract::DefaultBodyLimit::max(
            middleware::DEFAULT_BODY_LIMIT,
        ))
        .with_state(state)
}
