//! The operators' console at `/console`: server-rendered HTML (askama), English and French, usable
//! without JavaScript, under the same strict CSP as every page (no inline script or style; one
//! stylesheet at `/console/assets/console.css`).
//!
//! * Authentication: login name + password (Argon2id, hashed on blocking threads, at most
//!   [`HASHING_SLOTS`] at once), then TOTP or a recovery code when enrolled. Roles that require a
//!   second factor (admin, dpo) reach nothing before enrolling one.
//! * Sessions: a random id in a `HttpOnly; SameSite=Strict; Secure` cookie (`__Host-` prefixed),
//!   only its hash in the database, idle and absolute expiry, a fresh id at every privilege
//!   change (password accepted → second factor → signed in).
//! * CSRF: every POST goes through [`web::CsrfForm`], which checks a token derived from the
//!   session cookie (or, before sign-in, from a pre-login cookie).
//! * Roles: every handler calls [`web::Signed::require`] with a [`Permission`]; navigation
//!   only hides what the server would refuse anyway.
//! * Throttling: see [`throttle`].

mod admin;
mod audit;
mod auth_pages;
mod consent;
mod embed;
pub(crate) use embed::in_console;
pub mod i18n;
mod pages;
mod rights;
mod subjects;
pub mod throttle;
mod web;

/// The role of the operator fully signed in on this request, if any: for areas that sit behind the
/// console without being part of it (the analytics dashboard).
pub(crate) async fn signed_in_role(
    state: &crate::AppState,
    headers: &axum::http::HeaderMap,
) -> Option<Role> {
    let found = web::find_session(state, headers).await.ok()??;
    (found.row.stage == "active").then_some(found.role)
}

use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::Router;
use axum::routing::{get, post};
use tokio::sync::{OnceCell, Semaphore};
use tutela_crypto::Zeroizing;
use tutela_crypto::password::{self, PasswordParams};
pub use tutela_domain::operator::{Permission, Role};

use crate::AppState;
use throttle::{Source, Throttle};

/// How many password hashes may run at the same time (each takes 64 MiB and one core).
pub const HASHING_SLOTS: usize = 2;

/// Settings of the console.
#[derive(Clone, Debug)]
pub struct ConsoleConfig {
    /// Mark cookies `Secure` and give them the `__Host-` prefix. On by default; turn off only
    /// for plain-HTTP development on localhost.
    pub secure_cookies: bool,
    /// Take the client address from the last `X-Forwarded-For` entry (set by your reverse proxy)
    /// instead of the socket peer. Off by default: only turn on behind a proxy that sets it, or
    /// clients can pick their own address and dodge throttling.
    pub trust_forwarded_for: bool,
    /// Argon2id cost. `tutela serve` always uses [`PasswordParams::RFC9106_SECOND`].
    pub password_params: PasswordParams,
    /// A session unused for this long ends (seconds).
    pub session_idle_secs: i64,
    /// A session ends this long after sign-in whatever happens (seconds).
    pub session_max_secs: i64,
    /// The address people use to reach Tutela (base of invitation links); when unset, the
    /// request's `Host` header is used.
    pub public_url: Option<String>,
    /// The register purposes whose data the support role may read (those not in the register
    /// are ignored).
    pub support_purposes: Vec<String>,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            secure_cookies: true,
            trust_forwarded_for: false,
            password_params: PasswordParams::RFC9106_SECOND,
            session_idle_secs: 30 * 60,
            session_max_secs: 12 * 3600,
            public_url: None,
            support_purposes: vec!["support".to_string(), "hotline".to_string()],
        }
    }
}

/// Lifetime of a session that has only passed the password (seconds).
pub const PENDING_SESSION_SECS: i64 = 10 * 60;
/// Lifetime of an invitation link (seconds).
pub const INVITATION_SECS: i64 = 7 * 24 * 3600;
/// Lifetime of the first-administrator link printed by `tutela serve` (seconds).
pub const FIRST_ADMIN_LINK_SECS: i64 = 24 * 3600;
/// Wrong second-factor codes allowed in one pending session.
pub const MAX_FACTOR_FAILURES: i64 = 5;

/// The console's shared state: configuration, throttle, hashing slots, counters.
pub struct ConsoleState {
    pub config: ConsoleConfig,
    throttle: Mutex<Throttle>,
    hashing: Semaphore,
    dummy_hash: OnceCell<String>,
    password_checks: AtomicU64,
    throttled: AtomicU64,
}

impl ConsoleState {
    pub fn new(config: ConsoleConfig) -> Self {
        ConsoleState {
            config,
            throttle: Mutex::new(Throttle::new()),
            hashing: Semaphore::new(HASHING_SLOTS),
            dummy_hash: OnceCell::new(),
            password_checks: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
        }
    }

    /// Passwords checked against a hash since start (throttled attempts are not counted).
    pub fn password_checks(&self) -> u64 {
        self.password_checks.load(Ordering::Relaxed)
    }

    /// Attempts refused by throttling since start.
    pub fn throttled(&self) -> u64 {
        self.throttled.load(Ordering::Relaxed)
    }

    fn throttle(&self) -> std::sync::MutexGuard<'_, Throttle> {
        // A poisoned lock only means a panic elsewhere mid-update; the table stays usable.
        self.throttle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ok, or how many seconds `account` must wait before trying again from `ip`.
    pub(crate) fn may_try(&self, account: &str, ip: IpAddr) -> Result<(), u64> {
        self.throttle()
            .check(account, Source::from(ip), Instant::now())
            .map_err(|wait| {
                self.throttled.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("tutela_console_throttled_total").increment(1);
                wait.as_secs().max(1)
            })
    }

    pub(crate) fn failed(&self, account: &str, ip: IpAddr) {
        self.throttle()
            .failure(account, Source::from(ip), Instant::now());
    }

    pub(crate) fn succeeded(&self, account: &str, ip: IpAddr) {
        self.throttle().success(account, Source::from(ip));
    }

    /// Hashes a new password on a blocking thread.
    pub(crate) async fn hash_password(
        &self,
        password: Zeroizing<String>,
    ) -> Result<String, String> {
        let params = self.config.password_params;
        let _slot = self.hashing.acquire().await.map_err(|e| e.to_string())?;
        tokio::task::spawn_blocking(move || password::hash_password(&password, params))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }

    /// Checks a password against a stored hash on a blocking thread. Without a stored hash
    /// (unknown login, no password yet) a dummy hash is checked, so that the answer takes as
    /// long either way.
    pub(crate) async fn check_password(
        &self,
        password: Zeroizing<String>,
        stored: Option<String>,
    ) -> bool {
        let params = self.config.password_params;
        let dummy = match self
            .dummy_hash
            .get_or_try_init(|| async move {
                tokio::task::spawn_blocking(move || {
                    password::hash_password("tutela dummy password for timing", params)
                })
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())
            })
            .await
        {
            Ok(d) => d.clone(),
            Err(err) => {
                tracing::error!(error = %err, "cannot prepare the dummy password hash");
                return false;
            }
        };
        let Ok(_slot) = self.hashing.acquire().await else {
            return false;
        };
        self.password_checks.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("tutela_console_password_checks_total").increment(1);
        let known = stored.is_some();
        let hash = stored.unwrap_or(dummy);
        let ok = tokio::task::spawn_blocking(move || password::verify_password(&password, &hash))
            .await
            .unwrap_or(false);
        ok && known
    }
}

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/console", get(pages::overview))
        .route("/console/", get(pages::overview))
        .route("/console/assets/console.css", get(pages::stylesheet))
        .route(
            "/console/assets/dashboard.css",
            get(pages::dashboard_stylesheet),
        )
        .route(
            "/console/login",
            get(auth_pages::login_page).post(auth_pages::login),
        )
        .route(
            "/console/login/code",
            get(auth_pages::code_page).post(auth_pages::code),
        )
        .route(
            "/console/setup",
            get(auth_pages::setup_page).post(auth_pages::setup),
        )
        .route(
            "/console/enroll",
            get(auth_pages::enroll_page).post(auth_pages::enroll),
        )
        .route("/console/logout", post(auth_pages::logout))
        .route("/console/account", get(auth_pages::account))
        .route(
            "/console/account/password",
            post(auth_pages::change_password),
        )
        .route("/console/account/language", post(auth_pages::set_language))
        .route(
            "/console/account/logout-everywhere",
            post(auth_pages::logout_everywhere),
        )
        .route("/console/register", get(pages::register))
        .route("/console/register/notice", get(pages::notice_preview))
        .route("/console/security", get(pages::security_log))
        .route(
            "/console/subjects",
            get(subjects::search_page).post(subjects::search),
        )
        .route("/console/audit", get(audit::audit_log))
        .route("/console/audit/verify", post(audit::verify))
        .route(
            "/console/operators",
            get(admin::operators).post(admin::add_operator),
        )
        .route(
            "/console/operators/{id}/disable",
            post(admin::disable_operator),
        )
        .route(
            "/console/operators/{id}/reset-2fa",
            post(admin::reset_operator_2fa),
        )
        .route(
            "/console/tokens",
            get(admin::tokens).post(admin::create_token),
        )
        .route("/console/tokens/{id}/revoke", post(admin::revoke_token))
        .route("/console/keys", get(admin::keys))
        .route(
            "/console/rights",
            get(rights::list).post(rights::record_request),
        )
        .route(
            "/console/rights/{id}",
            get(rights::detail).post(rights::act),
        )
        .route("/console/consent", get(consent::consent_page))
        .route("/console/consent/receipt", post(consent::receipt))
        .route("/console/consent/export", post(consent::export))
        .route("/console/{*rest}", get(pages::not_found))
}
