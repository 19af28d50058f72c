//! Console pages that read: the overview, the register with its warnings and the notice
//! preview, the sign-in log.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tutela_domain::notice::{self, NoticeContext};
use tutela_domain::operator::Permission;

use super::web::{Chrome, ConsoleError, Result, Signed, fmt_time, now, render};
use crate::AppState;

/// The console's stylesheet (served at `/console/assets/console.css`).
pub const CONSOLE_CSS: &str = include_str!("../../assets/console.css");

pub(crate) async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        CONSOLE_CSS,
    )
        .into_response()
}

/// The analytics dashboard's styles inside the console's layout.
pub(crate) async fn dashboard_stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../../assets/console-dashboard.css"),
    )
        .into_response()
}

pub(crate) async fn not_found(signed: Signed) -> ConsoleError {
    ConsoleError::NotFound(signed.t)
}

// --- overview --------------------------------------------------------------------------------

struct DueRow {
    id: String,
    kind: String,
    state: String,
    due: String,
    overdue: bool,
    soon: bool,
}

/// Requests due within this many days are marked "due soon" on the DPO's overview.
const DUE_SOON_DAYS: i64 = 7;

struct SecurityPanel {
    failed_24h: i64,
    throttled: u64,
    without_2fa: usize,
}

#[derive(Template)]
#[template(path = "console/overview.html")]
struct OverviewPage {
    chrome: Chrome,
    revision: String,
    hash_short: String,
    last_updated: String,
    purposes: usize,
    warnings: usize,
    security: Option<SecurityPanel>,
    audit_entries: Option<i64>,
    /// Open rights requests due soon or overdue (roles that handle them).
    due: Option<Vec<DueRow>>,
    /// When the audit chain was last verified from the console, and the outcome.
    audit_verified: Option<(String, bool)>,
    /// The last retention purge: when, and how many records.
    last_purge: Option<(String, i64)>,
    role_long: &'static str,
    has_totp: bool,
    recovery_left: i64,
}

pub(crate) async fn overview(State(state): State<AppState>, signed: Signed) -> Result<Response> {
    signed.require(Permission::ViewOverview)?;
    let t = signed.t;
    let reg = &state.register;
    let security = if signed.can(Permission::ViewSecurityEvents) {
        let failed_24h = state
            .store
            .count_operator_events("login_failed", now() - 24 * 3600)
            .await
            .map_err(|e| signed.internal("security counts", e))?;
        let operators = state
            .store
            .operators()
            .await
            .map_err(|e| signed.internal("operators", e))?;
        Some(SecurityPanel {
            failed_24h,
            throttled: state.console.throttled(),
            without_2fa: operators
                .iter()
                .filter(|o| {
                    !o.is_disabled() && o.password_hash.is_some() && o.totp_secret.is_none()
                })
                .count(),
        })
    } else {
        None
    };
    let audit_entries = if signed.can(Permission::ViewAuditLog) {
        Some(
            state
                .store
                .audit_head()
                .await
                .map_err(|e| signed.internal("audit head", e))?
                .0,
        )
    } else {
        None
    };
    let (audit_verified, last_purge) = if audit_entries.is_some() {
        let verified = state
            .store
            .last_operator_event("audit_verified")
            .await
            .map_err(|e| signed.internal("last verification", e))?
            .map(|e| (fmt_time(Some(e.at)), e.detail.as_deref() == Some("intact")));
        let purge = state
            .store
            .last_retention_purge()
            .await
            .map_err(|e| signed.internal("last purge", e))?
            .map(|(at, n)| (fmt_time(Some(at)), n));
        (verified, purge)
    } else {
        (None, None)
    };
    let due = if signed.can(Permission::HandleRightsRequests) {
        let now = now();
        let rows = state
            .store
            .rights_requests_due(i64::MAX, 20)
            .await
            .map_err(|e| signed.internal("rights requests due", e))?;
        Some(
            rows.into_iter()
                .map(|r| DueRow {
                    id: r.id.chars().take(12).collect(),
                    kind: r.kind,
                    state: r.state,
                    due: fmt_time(Some(r.due_at)),
                    overdue: r.due_at < now,
                    soon: r.due_at >= now && r.due_at < now + DUE_SOON_DAYS * 86_400,
                })
                .collect(),
        )
    } else {
        None
    };
    let recovery_left = state
        .store
        .recovery_codes_left(&signed.operator.id)
        .await
        .map_err(|e| signed.internal("recovery codes", e))?;
    let revision = reg
        .register
        .latest_revision()
        .map(|r| format!("{} ({})", r.id, r.date))
        .unwrap_or_default();
    let page = OverviewPage {
        chrome: signed.chrome(&state, t.overview_title, "/console"),
        revision,
        hash_short: reg.hash.chars().take(12).collect(),
        last_updated: notice::date_text(reg.last_updated, t.code),
        purposes: reg.register.purposes.len(),
        warnings: state.register_warnings.len(),
        security,
        audit_entries,
        due,
        audit_verified,
        last_purge,
        role_long: t.role_long(signed.role),
        has_totp: signed.operator.totp_secret.is_some(),
        recovery_left,
    };
    Ok(render(&page))
}

// --- register --------------------------------------------------------------------------------

struct PurposeRow {
    id: String,
    label: String,
    basis: String,
    data: String,
    retention: Vec<String>,
    recipients: String,
}

struct WarningRow {
    line: usize,
    message: String,
    hint: Option<String>,
    path: Option<String>,
}

#[derive(Template)]
#[template(path = "console/register.html")]
struct RegisterPage {
    chrome: Chrome,
    hash: String,
    revision: String,
    purposes: Vec<PurposeRow>,
    warnings: Vec<WarningRow>,
    languages: Vec<String>,
}

pub(crate) async fn register(State(state): State<AppState>, signed: Signed) -> Result<Response> {
    signed.require(Permission::ViewRegister)?;
    let t = signed.t;
    let reg = &state.register.register;
    let lang = notice::resolve_language(reg, t.code);
    let purposes = reg
        .purposes
        .iter()
        .map(|p| PurposeRow {
            id: p.id.clone(),
            label: p.label.get(&lang).to_string(),
            basis: format!(
                "{} ({})",
                notice::legal_basis_label(&p.legal_basis, &lang),
                p.legal_basis.article()
            ),
            data: p
                .categories
                .iter()
                .map(|c| {
                    reg.category(c)
                        .map_or(c.clone(), |c| c.label.get(&lang).to_string())
                })
                .collect::<Vec<_>>()
                .join(" / "),
            retention: p
                .retention
                .iter()
                .map(|r| notice::retention_text(r, &p.legal_basis, &lang))
                .collect(),
            recipients: if p.recipients.is_empty() {
                t.nobody.to_string()
            } else {
                p.recipients
                    .iter()
                    .map(|id| {
                        reg.recipients
                            .iter()
                            .find(|r| &r.id == id)
                            .map_or(id.clone(), |r| r.name.clone())
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        })
        .collect();
    let warnings = state
        .register_warnings
        .iter()
        .map(|d| WarningRow {
            line: d.line,
            message: d.message.clone(),
            hint: d.hint.clone(),
            path: d.path.clone(),
        })
        .collect();
    let page = RegisterPage {
        chrome: signed.chrome(&state, t.register_title, "/console/register"),
        hash: state.register.hash.clone(),
        revision: reg
            .latest_revision()
            .map(|r| format!("{} ({})", r.id, r.date))
            .unwrap_or_default(),
        purposes,
        warnings,
        languages: notice::supported_languages(reg).to_vec(),
    };
    Ok(render(&page))
}

#[derive(Deserialize)]
pub(crate) struct LangQuery {
    #[serde(default)]
    lang: Option<String>,
}

/// The notice exactly as the public page renders it from the loaded register.
pub(crate) async fn notice_preview(
    State(state): State<AppState>,
    signed: Signed,
    Query(q): Query<LangQuery>,
) -> Result<Response> {
    signed.require(Permission::ViewRegister)?;
    let reg = &state.register;
    let lang = notice::resolve_language(&reg.register, q.lang.as_deref().unwrap_or(signed.t.code));
    let ctx = NoticeContext {
        lang: &lang,
        last_updated: reg.last_updated,
        base_path: "",
        rights_form: None,
    };
    let body = notice::render_html(&reg.register, &ctx);
    Ok((
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response())
}

// --- sign-in log -----------------------------------------------------------------------------

const EVENTS_PER_PAGE: i64 = 50;

struct EventRow {
    when: String,
    operator: String,
    event: &'static str,
    detail: String,
}

#[derive(Template)]
#[template(path = "console/security.html")]
struct SecurityPage {
    chrome: Chrome,
    events: Vec<EventRow>,
    older: Option<i64>,
}

#[derive(Deserialize)]
pub(crate) struct PageQuery {
    #[serde(default)]
    before: Option<i64>,
}

pub(crate) async fn security_log(
    State(state): State<AppState>,
    signed: Signed,
    Query(q): Query<PageQuery>,
) -> Result<Response> {
    signed.require(Permission::ViewSecurityEvents)?;
    let t = signed.t;
    let events = state
        .store
        .operator_events(EVENTS_PER_PAGE, q.before)
        .await
        .map_err(|e| signed.internal("security log", e))?;
    let logins: HashMap<String, String> = state
        .store
        .operators()
        .await
        .map_err(|e| signed.internal("operators", e))?
        .into_iter()
        .map(|o| (o.id, o.login))
        .collect();
    let older = (events.len() as i64 == EVENTS_PER_PAGE)
        .then(|| events.last().map(|e| e.id))
        .flatten();
    let rows = events
        .into_iter()
        .map(|e| EventRow {
            when: fmt_time(Some(e.at)),
            operator: match &e.operator_id {
                Some(id) => logins.get(id).cloned().unwrap_or_else(|| id.clone()),
                None => t.unknown_operator.to_string(),
            },
            event: t.event(&e.event),
            detail: match e.detail.as_deref() {
                Some("unknown login name") => String::new(),
                Some(d) => d.to_string(),
                None => String::new(),
            },
        })
        .collect();
    let page = SecurityPage {
        chrome: signed.chrome(&state, t.security_title, "/console/security"),
        events: rows,
        older,
    };
    Ok(render(&page))
}
