//! The console's web plumbing: cookies, client address, the signed-in operator extractor with
//! its permission check, CSRF-checked forms, errors and page rendering.

use std::net::{IpAddr, SocketAddr};

use askama::Template;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tutela_crypto::Zeroizing;
use tutela_crypto::session as secrets;
use tutela_domain::operator::{Permission, Role};
use tutela_store::{Operator, SessionRow};

use super::ConsoleConfig;
use super::i18n::{self, Text};
use crate::AppState;

pub(crate) fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

// --- cookies ---------------------------------------------------------------------------------

/// Which cookie.
#[derive(Clone, Copy)]
pub(crate) enum Cookie {
    /// The session id.
    Session,
    /// A random value that binds the CSRF token of the sign-in and setup forms.
    PreLogin,
}

impl Cookie {
    pub(crate) fn name(self, cfg: &ConsoleConfig) -> &'static str {
        match (self, cfg.secure_cookies) {
            (Cookie::Session, true) => "__Host-tutela-session",
            (Cookie::Session, false) => "tutela-session",
            (Cookie::PreLogin, true) => "__Host-tutela-form",
            (Cookie::PreLogin, false) => "tutela-form",
        }
    }

    /// The cookie's value in a request, if well formed.
    pub(crate) fn read(self, cfg: &ConsoleConfig, headers: &HeaderMap) -> Option<String> {
        let name = self.name(cfg);
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.trim().to_string())
            .filter(|v| secrets::well_formed(v))
    }

    /// `Set-Cookie` for `value` (None: delete the cookie).
    pub(crate) fn set(self, cfg: &ConsoleConfig, value: Option<&str>) -> HeaderValue {
        let mut text = format!(
            "{}={}; Path=/; HttpOnly; SameSite=Strict",
            self.name(cfg),
            value.unwrap_or("")
        );
        if cfg.secure_cookies {
            text.push_str("; Secure");
        }
        match (self, value) {
            (_, None) => text.push_str("; Max-Age=0"),
            (Cookie::PreLogin, Some(_)) => text.push_str("; Max-Age=3600"),
            // The session cookie lives as long as the browser session; the server enforces the
            // idle and absolute expiry.
            (Cookie::Session, Some(_)) => {}
        }
        HeaderValue::from_str(&text).expect("cookie text is ASCII")
    }
}

// --- client address --------------------------------------------------------------------------

/// The client's address: the socket peer, or the last `X-Forwarded-For` entry when the console is
/// configured to trust its reverse proxy. Unknown (e.g. in-process tests without connection info)
/// counts as one shared address, which throttles more, never less.
pub(crate) fn client_ip(parts: &Parts, cfg: &ConsoleConfig) -> IpAddr {
    if cfg.trust_forwarded_for
        && let Some(ip) = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .next_back()
            .and_then(|s| s.trim().parse::<IpAddr>().ok())
    {
        return ip;
    }
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ci| ci.0.ip())
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
}

/// The client's address as an extractor.
pub(crate) struct ClientIp(pub IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(client_ip(parts, &state.console.config)))
    }
}

// --- secrets in forms ------------------------------------------------------------------------

/// A secret typed in a form (password, code): zeroized on drop, never printed.
#[derive(Default)]
pub(crate) struct SecretField(pub Zeroizing<String>);

impl<'de> Deserialize<'de> for SecretField {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(SecretField(Zeroizing::new(String::deserialize(d)?)))
    }
}

impl std::fmt::Debug for SecretField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretField(…)")
    }
}

impl SecretField {
    pub(crate) fn as_str(&self) -> &str {
        self.0.as_str()
    }
    pub(crate) fn take(&mut self) -> Zeroizing<String> {
        std::mem::take(&mut self.0)
    }
}

// --- errors ----------------------------------------------------------------------------------

/// What a console handler may answer instead of its page.
pub(crate) enum ConsoleError {
    /// Not signed in (or the session ended): to the sign-in page.
    SignIn,
    /// A session waiting for its second factor or enrolment: to that page.
    Redirect(&'static str),
    /// A complete answer (e.g. the 403 page of a signed-in operator, with navigation).
    Rendered(Box<Response>),
    /// A form without a valid CSRF token: 403.
    FormExpired(&'static Text),
    NotFound(&'static Text),
    Internal(&'static Text),
}

impl ConsoleError {
    pub(crate) fn internal(t: &'static Text, context: &str, err: impl std::fmt::Display) -> Self {
        tracing::error!(context, error = %err, "console error");
        ConsoleError::Internal(t)
    }
}

#[derive(Template)]
#[template(path = "console/error.html")]
struct ErrorPage {
    chrome: Chrome,
    heading: &'static str,
    text: &'static str,
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let (status, t, heading, text) = match self {
            ConsoleError::SignIn => return Redirect::to("/console/login").into_response(),
            ConsoleError::Redirect(to) => return Redirect::to(to).into_response(),
            ConsoleError::Rendered(res) => return *res,
            ConsoleError::FormExpired(t) => {
                (StatusCode::FORBIDDEN, t, t.forbidden_title, t.form_expired)
            }
            ConsoleError::NotFound(t) => (
                StatusCode::NOT_FOUND,
                t,
                t.not_found_title,
                t.not_found_text,
            ),
            ConsoleError::Internal(t) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                t,
                t.error_title,
                t.error_text,
            ),
        };
        let page = ErrorPage {
            chrome: Chrome::anonymous(t, heading, ""),
            heading,
            text,
        };
        (status, render(&page)).into_response()
    }
}

pub(crate) type Result<T, E = ConsoleError> = std::result::Result<T, E>;

// --- layout ----------------------------------------------------------------------------------

pub(crate) struct NavItem {
    pub href: &'static str,
    pub label: &'static str,
    pub current: bool,
}

/// A message shown at the top of a page.
pub(crate) struct Flash {
    /// `ok` or `error` (a CSS class).
    pub kind: &'static str,
    pub text: String,
}

impl Flash {
    pub(crate) fn ok(text: impl Into<String>) -> Option<Flash> {
        Some(Flash {
            kind: "ok",
            text: text.into(),
        })
    }
    pub(crate) fn error(text: impl Into<String>) -> Option<Flash> {
        Some(Flash {
            kind: "error",
            text: text.into(),
        })
    }
}

/// What the layout around every page needs.
pub(crate) struct Chrome {
    pub t: &'static Text,
    pub title: String,
    pub controller: String,
    pub nav: Vec<NavItem>,
    /// The signed-in operator's name and role.
    pub user: Option<(String, &'static str)>,
    pub csrf: String,
    /// Link to the same page in the other language (pages before sign-in).
    pub lang_href: Option<String>,
    pub flash: Option<Flash>,
}

impl Chrome {
    pub(crate) fn anonymous(t: &'static Text, title: &str, controller: &str) -> Chrome {
        Chrome {
            t,
            title: title.to_string(),
            controller: controller.to_string(),
            nav: Vec::new(),
            user: None,
            csrf: String::new(),
            lang_href: None,
            flash: None,
        }
    }

    pub(crate) fn footer(&self) -> String {
        if self.controller.is_empty() {
            self.t.footer_plain.to_string()
        } else {
            i18n::fill(self.t.footer, &[("controller", &self.controller)])
        }
    }
}

/// Renders a template as an uncacheable HTML response.
pub(crate) fn render<T: Template>(page: &T) -> Response {
    match page.render() {
        Ok(body) => (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            body,
        )
            .into_response(),
        Err(err) => {
            tracing::error!(error = %err, "cannot render a console page");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

/// The language of a request before sign-in.
pub(crate) fn anonymous_text(parts_headers: &HeaderMap, query_lang: Option<&str>) -> &'static Text {
    let accept = parts_headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok());
    i18n::pick(None, query_lang, accept)
}

fn query_lang(parts: &Parts) -> Option<String> {
    parts.uri.query().and_then(|q| {
        q.split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == "lang")
            .map(|(_, v)| v.to_string())
    })
}

// --- sessions --------------------------------------------------------------------------------

/// A session found from the request's cookie, with its operator.
pub(crate) struct Found {
    pub id: Zeroizing<String>,
    pub hash: [u8; 32],
    pub row: SessionRow,
    pub operator: Operator,
    pub role: Role,
}

/// Looks up the session of a request. Ended sessions (expired, idle, disabled operator, unknown
/// role) are deleted and reported as None.
pub(crate) async fn find_session(state: &AppState, headers: &HeaderMap) -> Result<Option<Found>> {
    let cfg = &state.console.config;
    let Some(id) = Cookie::Session.read(cfg, headers) else {
        return Ok(None);
    };
    let id = Zeroizing::new(id);
    let hash = secrets::session_hash(&id);
    let t = &i18n::EN;
    let store = &state.store;
    let Some(row) = store
        .session(&hash)
        .await
        .map_err(|e| ConsoleError::internal(t, "session lookup", e))?
    else {
        return Ok(None);
    };
    let now = now();
    let idle = now - row.last_seen_at >= cfg.session_idle_secs;
    let operator = store
        .operator(&row.operator_id)
        .await
        .map_err(|e| ConsoleError::internal(t, "operator lookup", e))?;
    let role = operator.as_ref().and_then(|o| o.role.parse::<Role>().ok());
    match (operator, role) {
        (Some(operator), Some(role))
            if now < row.expires_at && !idle && !operator.is_disabled() =>
        {
            if let Err(err) = store.touch_session(&hash, now).await {
                tracing::warn!(error = %err, "could not record session activity");
            }
            Ok(Some(Found {
                id,
                hash,
                row,
                operator,
                role,
            }))
        }
        _ => {
            store
                .delete_session(&hash)
                .await
                .map_err(|e| ConsoleError::internal(t, "session end", e))?;
            Ok(None)
        }
    }
}

/// A signed-in operator (session in the `active` stage). Handlers call [`Signed::require`].
pub(crate) struct Signed {
    pub controller: String,
    pub operator: Operator,
    pub role: Role,
    pub session_hash: [u8; 32],
    pub csrf: String,
    pub t: &'static Text,
}

impl Signed {
    /// Refuses (403) unless the operator's role holds `permission`.
    pub(crate) fn require(&self, permission: Permission) -> Result<()> {
        if self.role.can(permission) {
            Ok(())
        } else {
            tracing::info!(
                operator = %self.operator.id,
                permission = ?permission,
                "console access refused"
            );
            let t = self.t;
            let page = ErrorPage {
                chrome: self.chrome_for(t.forbidden_title, ""),
                heading: t.forbidden_title,
                text: t.forbidden_text,
            };
            let mut res = render(&page);
            *res.status_mut() = StatusCode::FORBIDDEN;
            Err(ConsoleError::Rendered(Box::new(res)))
        }
    }

    pub(crate) fn can(&self, permission: Permission) -> bool {
        self.role.can(permission)
    }

    pub(crate) fn internal(&self, context: &str, err: impl std::fmt::Display) -> ConsoleError {
        ConsoleError::internal(self.t, context, err)
    }

    /// The layout for one of the console's pages.
    pub(crate) fn chrome(&self, _state: &AppState, title: &str, current: &str) -> Chrome {
        self.chrome_for(title, current)
    }

    fn chrome_for(&self, title: &str, current: &str) -> Chrome {
        let t = self.t;
        let mut nav = Vec::new();
        let mut item = |href: &'static str, label: &'static str, allowed: bool| {
            if allowed {
                nav.push(NavItem {
                    href,
                    label,
                    current: href == current,
                });
            }
        };
        item(
            "/console",
            t.nav_overview,
            self.can(Permission::ViewOverview),
        );
        item(
            "/console/subjects",
            t.nav_subjects,
            self.can(Permission::ReadSupportData),
        );
        item(
            "/console/rights",
            super::rights::nav_label(t),
            self.can(Permission::HandleRightsRequests),
        );
        item(
            "/console/register",
            t.nav_register,
            self.can(Permission::ViewRegister),
        );
        item(
            "/console/audit",
            t.nav_audit,
            self.can(Permission::ViewAuditLog),
        );
        item(
            "/console/security",
            t.nav_security,
            self.can(Permission::ViewSecurityEvents),
        );
        item(
            "/console/operators",
            t.nav_operators,
            self.can(Permission::ManageOperators),
        );
        item(
            "/console/tokens",
            t.nav_tokens,
            self.can(Permission::ManageTokens),
        );
        item(
            "/console/keys",
            t.nav_keys,
            self.can(Permission::ManageKeys),
        );
        let x = super::consent::text(t);
        item(
            "/analytics",
            x.nav_analytics,
            self.can(Permission::ViewAnalytics),
        );
        item(
            "/console/consent",
            x.nav_consent,
            self.can(Permission::ViewConsentRates),
        );
        item("/console/account", t.nav_account, true);
        Chrome {
            t,
            title: title.to_string(),
            controller: self.controller.clone(),
            nav,
            user: Some((self.operator.display_name.clone(), t.role(self.role))),
            csrf: self.csrf.clone(),
            lang_href: None,
            flash: None,
        }
    }
}

impl FromRequestParts<AppState> for Signed {
    type Rejection = ConsoleError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        signed_from_headers(state, &parts.headers, query_lang(parts).as_deref()).await
    }
}

/// The operator signed in on a request with these headers (see [`Signed`]): also for areas that
/// sit behind the console without being part of its router (the analytics dashboard).
pub(crate) async fn signed_from_headers(
    state: &AppState,
    headers: &HeaderMap,
    query_lang: Option<&str>,
) -> Result<Signed> {
    {
        let Some(found) = find_session(state, headers).await? else {
            return Err(ConsoleError::SignIn);
        };
        match found.row.stage.as_str() {
            "active" => {}
            "second_factor" => return Err(ConsoleError::Redirect("/console/login/code")),
            "enroll" => return Err(ConsoleError::Redirect("/console/enroll")),
            _ => return Err(ConsoleError::SignIn),
        }
        let accept = headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok());
        let t = i18n::pick(found.operator.language.as_deref(), query_lang, accept);
        Ok(Signed {
            controller: state.register.register.controller.name.clone(),
            csrf: secrets::csrf_token(&found.id),
            operator: found.operator,
            role: found.role,
            session_hash: found.hash,
            t,
        })
    }
}

/// The language of a request before sign-in, as an extractor.
pub(crate) struct Lang(pub &'static Text);

impl FromRequestParts<AppState> for Lang {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Self::Rejection> {
        Ok(Lang(anonymous_text(
            &parts.headers,
            query_lang(parts).as_deref(),
        )))
    }
}

// --- CSRF-checked forms ----------------------------------------------------------------------

#[derive(Deserialize)]
struct CsrfField {
    #[serde(default)]
    csrf: String,
}

/// A form whose `csrf` field matches the token derived from the request's session cookie (or,
/// before sign-in, its pre-login cookie). Cross-site submissions (`Sec-Fetch-Site: cross-site`)
/// are refused outright. Every console POST handler takes one.
pub(crate) struct CsrfForm<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequest<AppState> for CsrfForm<T> {
    type Rejection = ConsoleError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self> {
        let (parts, body) = req.into_parts();
        let t = anonymous_text(&parts.headers, None);
        if parts
            .headers
            .get("sec-fetch-site")
            .is_some_and(|v| v.as_bytes() == b"cross-site")
        {
            return Err(ConsoleError::FormExpired(t));
        }
        let cfg = &state.console.config;
        let session = Cookie::Session
            .read(cfg, &parts.headers)
            .map(Zeroizing::new);
        let pre = Cookie::PreLogin
            .read(cfg, &parts.headers)
            .map(Zeroizing::new);
        let req = Request::from_parts(parts, body);
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|_| ConsoleError::FormExpired(t))?;
        let field: CsrfField =
            serde_urlencoded::from_bytes(&bytes).map_err(|_| ConsoleError::FormExpired(t))?;
        let ok = [session, pre]
            .iter()
            .flatten()
            .any(|cookie| secrets::csrf_matches(cookie, &field.csrf));
        if !ok {
            return Err(ConsoleError::FormExpired(t));
        }
        let form: T =
            serde_urlencoded::from_bytes(&bytes).map_err(|_| ConsoleError::FormExpired(t))?;
        Ok(CsrfForm(form))
    }
}

/// A pre-login cookie value for a sign-in or setup form: the request's own when it has one,
/// else a new one (then returned so the response can set it).
pub(crate) fn pre_login(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<(Zeroizing<String>, Option<HeaderValue>)> {
    let cfg = &state.console.config;
    if let Some(v) = Cookie::PreLogin.read(cfg, headers) {
        return Ok((Zeroizing::new(v), None));
    }
    let fresh = secrets::new_session()
        .map_err(|e| ConsoleError::internal(&i18n::EN, "random pre-login value", e))?;
    let header = Cookie::PreLogin.set(cfg, Some(&fresh.secret));
    Ok((fresh.secret, Some(header)))
}

/// Starts a session for `operator` at `stage`; returns the `Set-Cookie` header.
pub(crate) async fn start_session(
    state: &AppState,
    operator_id: &str,
    stage: &str,
    pending_totp: Option<Vec<u8>>,
) -> Result<HeaderValue> {
    let t = &i18n::EN;
    let new =
        secrets::new_session().map_err(|e| ConsoleError::internal(t, "random session id", e))?;
    let now = now();
    let lifetime = if stage == "active" {
        state.console.config.session_max_secs
    } else {
        super::PENDING_SESSION_SECS
    };
    state
        .store
        .insert_session(&SessionRow {
            id_hash: new.hash.to_vec(),
            operator_id: operator_id.to_string(),
            stage: stage.to_string(),
            pending_totp,
            factor_failures: 0,
            created_at: now,
            last_seen_at: now,
            expires_at: now + lifetime,
        })
        .await
        .map_err(|e| ConsoleError::internal(t, "session start", e))?;
    Ok(Cookie::Session.set(&state.console.config, Some(&new.secret)))
}

/// Records a security-log event; a failure to record is logged, never shown.
pub(crate) async fn record(
    state: &AppState,
    operator_id: Option<&str>,
    event: &str,
    detail: Option<&str>,
) {
    tracing::info!(target: "tutela::console", event, operator = operator_id.unwrap_or("-"), "operator event");
    if let Err(err) = state
        .store
        .record_operator_event(now(), operator_id, event, detail)
        .await
    {
        tracing::error!(error = %err, event, "could not record an operator event");
    }
    // The same event in the tamper-evident audit log (no subject, no personal data).
    let details = serde_json::json!({ "operator": operator_id, "detail": detail });
    if let Err(err) = state
        .vault
        .audit_event(
            &tutela_vault::Actor::new("console"),
            &format!("console_{event}"),
            details,
        )
        .await
    {
        tracing::error!(error = %err, event, "could not append an operator event to the audit log");
    }
}

/// A 303 redirect that also sets cookies.
pub(crate) fn redirect_with(to: &str, cookies: Vec<HeaderValue>) -> Response {
    let mut res = Redirect::to(to).into_response();
    for c in cookies {
        res.headers_mut().append(header::SET_COOKIE, c);
    }
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// Formats unix seconds as `YYYY-MM-DD HH:MM` (UTC).
pub(crate) fn fmt_time(t: Option<i64>) -> String {
    t.and_then(|s| jiff::Timestamp::from_second(s).ok())
        .map(|ts| ts.strftime("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_default()
}
