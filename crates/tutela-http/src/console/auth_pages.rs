//! Signing in and out, the second factor, setup links, and the operator's own account.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;
use tutela_crypto::Zeroizing;
use tutela_crypto::session as secrets;
use tutela_crypto::totp::{self, TotpSecret};
use tutela_domain::operator::{self, Role};
use tutela_store::{Operator, SetupLink};

use super::i18n::{self, Text};
use super::web::{
    Chrome, ClientIp, ConsoleError, Cookie, CsrfForm, Flash, Lang, Result, SecretField, Signed,
    find_session, now, pre_login, record, redirect_with, render, start_session,
};
use super::{INVITATION_SECS, MAX_FACTOR_FAILURES};
use crate::AppState;

fn controller(state: &AppState) -> String {
    state.register.register.controller.name.clone()
}

fn with_cookie(mut res: Response, cookie: Option<HeaderValue>) -> Response {
    if let Some(c) = cookie {
        res.headers_mut().append(header::SET_COOKIE, c);
    }
    res
}

fn lang_href(path: &str, t: &Text) -> Option<String> {
    let sep = if path.contains('?') { '&' } else { '?' };
    Some(format!("{path}{sep}lang={}", t.other_language_code))
}

// --- sign in ---------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "console/login.html")]
struct LoginPage {
    chrome: Chrome,
    intro: String,
    login: String,
}

#[derive(Deserialize, Default)]
pub(crate) struct MessageQuery {
    #[serde(default)]
    m: Option<String>,
}

fn login_page_response(
    state: &AppState,
    t: &'static Text,
    csrf_cookie: &str,
    login: &str,
    flash: Option<Flash>,
) -> Response {
    let mut chrome = Chrome::anonymous(t, t.login_title, &controller(state));
    chrome.csrf = secrets::csrf_token(csrf_cookie);
    chrome.lang_href = lang_href("/console/login", t);
    chrome.flash = flash;
    render(&LoginPage {
        intro: i18n::fill(t.login_intro, &[("controller", &chrome.controller)]),
        chrome,
        login: login.to_string(),
    })
}

pub(crate) async fn login_page(
    State(state): State<AppState>,
    Lang(t): Lang,
    headers: HeaderMap,
    Query(q): Query<MessageQuery>,
) -> Result<Response> {
    if let Some(found) = find_session(&state, &headers).await? {
        return Ok(redirect_with(
            match found.row.stage.as_str() {
                "second_factor" => "/console/login/code",
                "enroll" => "/console/enroll",
                _ => "/console",
            },
            vec![],
        ));
    }
    let (pre, cookie) = pre_login(&state, &headers)?;
    let flash = match q.m.as_deref() {
        Some("signed_out") => Flash::ok(t.signed_out),
        Some("ended") => Flash::error(t.session_ended),
        Some("locked") => Flash::error(t.factor_locked),
        _ => None,
    };
    Ok(with_cookie(
        login_page_response(&state, t, &pre, "", flash),
        cookie,
    ))
}

#[derive(Deserialize)]
pub(crate) struct LoginForm {
    #[serde(default)]
    login: String,
    #[serde(default)]
    password: SecretField,
}

/// The throttling key of a typed login name (bounded, normalised).
fn account_key(login: &str) -> String {
    login.trim().to_lowercase().chars().take(64).collect()
}

fn throttled_response(res: Response, secs: u64) -> Response {
    let mut res = res;
    *res.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    res.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from_str(&secs.to_string()).expect("digits"),
    );
    res
}

pub(crate) async fn login(
    State(state): State<AppState>,
    Lang(t): Lang,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    CsrfForm(mut form): CsrfForm<LoginForm>,
) -> Result<Response> {
    let (pre, _) = pre_login(&state, &headers)?;
    let typed: String = form.login.trim().chars().take(256).collect();
    let account = account_key(&typed);
    if let Err(secs) = state.console.may_try(&account, ip) {
        let text = i18n::fill(t.throttled, &[("secs", &secs.to_string())]);
        let page = login_page_response(&state, t, &pre, &typed, Flash::error(text));
        return Ok(throttled_response(page, secs));
    }
    let operator = match operator::normalise_login(&typed) {
        Ok(login) => state
            .store
            .operator_by_login(&login)
            .await
            .map_err(|e| ConsoleError::internal(t, "operator lookup", e))?,
        Err(_) => None,
    };
    let role = operator.as_ref().and_then(|o| o.role.parse::<Role>().ok());
    let usable_hash = operator
        .as_ref()
        .filter(|o| !o.is_disabled() && role.is_some())
        .and_then(|o| o.password_hash.clone());
    let password = form.password.take();
    let kept = Zeroizing::new(password.as_str().to_string());
    let ok = state.console.check_password(password, usable_hash).await;
    let (Some(op), Some(role), true) = (operator.as_ref(), role, ok) else {
        state.console.failed(&account, ip);
        record(
            &state,
            operator.as_ref().map(|o| o.id.as_str()),
            "login_failed",
            operator.is_none().then_some("unknown login name"),
        )
        .await;
        let mut res = login_page_response(&state, t, &pre, &typed, Flash::error(t.login_failed));
        *res.status_mut() = StatusCode::UNAUTHORIZED;
        return Ok(res);
    };
    state.console.succeeded(&account, ip);
    // Hashes made with older parameters are upgraded at the next successful sign-in.
    if let Some(stored) = &op.password_hash
        && tutela_crypto::password::needs_rehash(stored, state.console.config.password_params)
    {
        match state.console.hash_password(kept).await {
            Ok(h) => {
                if let Err(err) = state.store.set_operator_password(&op.id, &h, now()).await {
                    tracing::warn!(error = %err, "could not upgrade a password hash");
                }
            }
            Err(err) => tracing::warn!(error = %err, "could not upgrade a password hash"),
        }
    }
    // A stale session of this browser ends here (no session fixation).
    if let Some(old) = Cookie::Session.read(&state.console.config, &headers) {
        let _ = state
            .store
            .delete_session(&secrets::session_hash(&old))
            .await;
    }
    let (stage, to, event) = if op.totp_secret.is_some() {
        ("second_factor", "/console/login/code", "password_ok")
    } else if role.requires_second_factor() {
        ("enroll", "/console/enroll", "password_ok")
    } else {
        ("active", "/console", "login")
    };
    let cookie = start_session(&state, &op.id, stage, None).await?;
    record(&state, Some(&op.id), event, None).await;
    Ok(redirect_with(
        to,
        vec![cookie, Cookie::PreLogin.set(&state.console.config, None)],
    ))
}

// --- second factor ---------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "console/code.html")]
struct CodePage {
    chrome: Chrome,
}

fn code_page_response(
    state: &AppState,
    t: &'static Text,
    session: &str,
    flash: Option<Flash>,
) -> Response {
    let mut chrome = Chrome::anonymous(t, t.factor_title, &controller(state));
    chrome.csrf = secrets::csrf_token(session);
    chrome.flash = flash;
    render(&CodePage { chrome })
}

pub(crate) async fn code_page(
    State(state): State<AppState>,
    Lang(t): Lang,
    headers: HeaderMap,
) -> Result<Response> {
    match find_session(&state, &headers).await? {
        Some(found) if found.row.stage == "second_factor" => {
            let t = found
                .operator
                .language
                .as_deref()
                .map_or(t, |l| i18n::pick(Some(l), None, None));
            Ok(code_page_response(&state, t, &found.id, None))
        }
        Some(_) => Ok(redirect_with("/console", vec![])),
        None => Err(ConsoleError::SignIn),
    }
}

#[derive(Deserialize)]
pub(crate) struct CodeForm {
    #[serde(default)]
    code: SecretField,
}

pub(crate) async fn code(
    State(state): State<AppState>,
    Lang(t): Lang,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    CsrfForm(mut form): CsrfForm<CodeForm>,
) -> Result<Response> {
    let Some(found) = find_session(&state, &headers).await? else {
        return Err(ConsoleError::SignIn);
    };
    if found.row.stage != "second_factor" {
        return Ok(redirect_with("/console", vec![]));
    }
    let op = &found.operator;
    let account = account_key(&op.login);
    if let Err(secs) = state.console.may_try(&account, ip) {
        let text = i18n::fill(t.throttled, &[("secs", &secs.to_string())]);
        let page = code_page_response(&state, t, &found.id, Flash::error(text));
        return Ok(throttled_response(page, secs));
    }
    let code = form.code.take();
    let now = now();
    let mut ok = false;
    let mut via_recovery = false;
    if let Some(sealed) = op.totp_secret.as_deref()
        && let Ok(secret) = open_totp(&state, &op.id, sealed)
        && let Some(step) = secret.verify(&code, u64::try_from(now).unwrap_or(0))
    {
        ok = state
            .store
            .accept_totp_step(&op.id, i64::try_from(step).unwrap_or(i64::MAX))
            .await
            .map_err(|e| ConsoleError::internal(t, "TOTP step", e))?;
    }
    if !ok && let Some(hash) = totp::recovery_code_hash(&code) {
        ok = state
            .store
            .use_recovery_code(&op.id, &hash, now)
            .await
            .map_err(|e| ConsoleError::internal(t, "recovery code", e))?;
        via_recovery = ok;
    }
    if !ok {
        state.console.failed(&account, ip);
        record(&state, Some(&op.id), "factor_failed", None).await;
        let failures = state
            .store
            .add_factor_failure(&found.hash)
            .await
            .map_err(|e| ConsoleError::internal(t, "factor failure", e))?;
        if failures >= MAX_FACTOR_FAILURES {
            let _ = state.store.delete_session(&found.hash).await;
            return Ok(redirect_with(
                "/console/login?m=locked",
                vec![Cookie::Session.set(&state.console.config, None)],
            ));
        }
        let mut res = code_page_response(&state, t, &found.id, Flash::error(t.factor_failed));
        *res.status_mut() = StatusCode::UNAUTHORIZED;
        return Ok(res);
    }
    state.console.succeeded(&account, ip);
    // A fresh session id for the signed-in session.
    state
        .store
        .delete_session(&found.hash)
        .await
        .map_err(|e| ConsoleError::internal(t, "session end", e))?;
    let cookie = start_session(&state, &op.id, "active", None).await?;
    record(
        &state,
        Some(&op.id),
        if via_recovery {
            "recovery_code_used"
        } else {
            "login"
        },
        None,
    )
    .await;
    Ok(redirect_with("/console", vec![cookie]))
}

// --- enrolment -------------------------------------------------------------------------------

/// TOTP secrets are stored sealed under the vault's operator-secrets key, bound to the operator.
fn seal_totp(state: &AppState, operator_id: &str, secret: &TotpSecret) -> Result<Vec<u8>, String> {
    state
        .vault
        .keys()
        .seal_operator_secret(operator_id, secret.as_bytes())
        .map_err(|e| e.to_string())
}

fn open_totp(state: &AppState, operator_id: &str, sealed: &[u8]) -> Result<TotpSecret, String> {
    let plain = state
        .vault
        .keys()
        .open_operator_secret(operator_id, sealed)
        .map_err(|e| e.to_string())?;
    TotpSecret::from_bytes(&plain).map_err(|e| e.to_string())
}

#[derive(Template)]
#[template(path = "console/enroll.html")]
struct EnrollPage {
    chrome: Chrome,
    required: bool,
    qr_svg: String,
    manual_key: String,
}

#[derive(Template)]
#[template(path = "console/recovery.html")]
struct RecoveryPage {
    chrome: Chrome,
    codes: Vec<String>,
}

async fn enroll_response(
    state: &AppState,
    t: &'static Text,
    found: &super::web::Found,
    flash: Option<Flash>,
) -> Result<Response> {
    // The secret being enrolled waits in the session row until a code confirms it.
    let op_id = &found.operator.id;
    let secret = match found.row.pending_totp.as_deref() {
        Some(sealed) => open_totp(state, op_id, sealed)
            .map_err(|e| ConsoleError::internal(t, "TOTP secret", e))?,
        None => {
            let s =
                TotpSecret::generate().map_err(|e| ConsoleError::internal(t, "TOTP secret", e))?;
            let sealed = seal_totp(state, op_id, &s)
                .map_err(|e| ConsoleError::internal(t, "TOTP secret", e))?;
            state
                .store
                .set_session_stage(&found.hash, &found.row.stage, Some(&sealed))
                .await
                .map_err(|e| ConsoleError::internal(t, "pending TOTP", e))?;
            s
        }
    };
    let issuer = format!("Tutela ({})", controller(state));
    let uri = secret
        .provisioning_uri(&issuer, &found.operator.login)
        .map_err(|e| ConsoleError::internal(t, "TOTP URI", e))?;
    let qr_svg =
        totp::qr_svg(&uri, t.qr_label).map_err(|e| ConsoleError::internal(t, "QR code", e))?;
    let key = secret.to_base32();
    let manual_key = key
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let mut chrome = Chrome::anonymous(t, t.enroll_title, &controller(state));
    chrome.csrf = secrets::csrf_token(&found.id);
    chrome.flash = flash;
    Ok(render(&EnrollPage {
        chrome,
        required: found.row.stage == "enroll",
        qr_svg,
        manual_key,
    }))
}

fn text_of(found: &super::web::Found, fallback: &'static Text) -> &'static Text {
    found
        .operator
        .language
        .as_deref()
        .map_or(fallback, |l| i18n::pick(Some(l), None, None))
}

pub(crate) async fn enroll_page(
    State(state): State<AppState>,
    Lang(t): Lang,
    headers: HeaderMap,
) -> Result<Response> {
    let Some(found) = find_session(&state, &headers).await? else {
        return Err(ConsoleError::SignIn);
    };
    let t = text_of(&found, t);
    match found.row.stage.as_str() {
        "enroll" => {}
        "active" if found.operator.totp_secret.is_none() => {}
        "second_factor" => return Ok(redirect_with("/console/login/code", vec![])),
        _ => return Ok(redirect_with("/console/account", vec![])),
    }
    enroll_response(&state, t, &found, None).await
}

pub(crate) async fn enroll(
    State(state): State<AppState>,
    Lang(t): Lang,
    headers: HeaderMap,
    CsrfForm(mut form): CsrfForm<CodeForm>,
) -> Result<Response> {
    let Some(found) = find_session(&state, &headers).await? else {
        return Err(ConsoleError::SignIn);
    };
    let t = text_of(&found, t);
    let allowed = found.row.stage == "enroll"
        || (found.row.stage == "active" && found.operator.totp_secret.is_none());
    let Some(pending) = found.row.pending_totp.as_deref().filter(|_| allowed) else {
        return Ok(redirect_with("/console/enroll", vec![]));
    };
    let secret = open_totp(&state, &found.operator.id, pending)
        .map_err(|e| ConsoleError::internal(t, "TOTP secret", e))?;
    let code = form.code.take();
    let Some(step) = secret.verify(&code, u64::try_from(now()).unwrap_or(0)) else {
        let failures = state
            .store
            .add_factor_failure(&found.hash)
            .await
            .map_err(|e| ConsoleError::internal(t, "factor failure", e))?;
        if failures >= MAX_FACTOR_FAILURES && found.row.stage == "enroll" {
            let _ = state.store.delete_session(&found.hash).await;
            return Ok(redirect_with(
                "/console/login?m=locked",
                vec![Cookie::Session.set(&state.console.config, None)],
            ));
        }
        let mut res = enroll_response(&state, t, &found, Flash::error(t.factor_failed)).await?;
        *res.status_mut() = StatusCode::UNAUTHORIZED;
        return Ok(res);
    };
    let codes =
        totp::new_recovery_codes().map_err(|e| ConsoleError::internal(t, "recovery codes", e))?;
    let hashes: Vec<[u8; 32]> = codes.iter().map(|c| c.hash).collect();
    let op = &found.operator;
    let sealed = seal_totp(&state, &op.id, &secret)
        .map_err(|e| ConsoleError::internal(t, "TOTP secret", e))?;
    state
        .store
        .enroll_totp(
            &op.id,
            &sealed,
            i64::try_from(step).unwrap_or(i64::MAX),
            &hashes,
        )
        .await
        .map_err(|e| ConsoleError::internal(t, "TOTP enrolment", e))?;
    record(&state, Some(&op.id), "totp_enrolled", None).await;
    if found.row.stage == "enroll" {
        record(&state, Some(&op.id), "login", None).await;
    }
    // A fresh session id, now fully signed in.
    state
        .store
        .delete_session(&found.hash)
        .await
        .map_err(|e| ConsoleError::internal(t, "session end", e))?;
    let cookie = start_session(&state, &op.id, "active", None).await?;
    let mut chrome = Chrome::anonymous(t, t.recovery_title, &controller(&state));
    chrome.flash = Flash::ok(t.twofa_on);
    let page = render(&RecoveryPage {
        chrome,
        codes: codes.iter().map(|c| c.code.to_string()).collect(),
    });
    Ok(with_cookie(page, Some(cookie)))
}

// --- setup links -----------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "console/setup.html")]
struct SetupPage {
    chrome: Chrome,
    token: String,
    first_admin: bool,
    intro: String,
    login: String,
    display_name: String,
    valid: bool,
}

#[derive(Deserialize)]
pub(crate) struct TokenQuery {
    #[serde(default)]
    token: String,
}

/// What a setup token opens, if anything.
async fn setup_target(
    state: &AppState,
    t: &'static Text,
    token: &str,
) -> Result<Option<(SetupLink, Option<Operator>)>> {
    if !secrets::well_formed(token) {
        return Ok(None);
    }
    let link = state
        .store
        .setup_link(&secrets::setup_hash(token), now())
        .await
        .map_err(|e| ConsoleError::internal(t, "setup link", e))?;
    match link {
        None => Ok(None),
        Some(SetupLink::FirstAdmin) => Ok(Some((SetupLink::FirstAdmin, None))),
        Some(SetupLink::Invitation { operator_id }) => {
            let op = state
                .store
                .operator(&operator_id)
                .await
                .map_err(|e| ConsoleError::internal(t, "operator lookup", e))?;
            Ok(op.map(|o| (SetupLink::Invitation { operator_id }, Some(o))))
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn setup_response(
    state: &AppState,
    t: &'static Text,
    pre: &str,
    token: &str,
    target: Option<&(SetupLink, Option<Operator>)>,
    login: &str,
    display_name: &str,
    flash: Option<Flash>,
) -> Response {
    let first_admin = matches!(target, Some((SetupLink::FirstAdmin, _)));
    let title = if first_admin {
        t.setup_title_first
    } else {
        t.setup_title_invite
    };
    let intro = match target {
        Some((SetupLink::FirstAdmin, _)) => t.setup_intro_first.to_string(),
        Some((_, Some(op))) => i18n::fill(
            t.setup_intro_invite,
            &[("name", &op.display_name), ("login", &op.login)],
        ),
        _ => t.setup_invalid.to_string(),
    };
    let mut chrome = Chrome::anonymous(t, title, &controller(state));
    chrome.csrf = secrets::csrf_token(pre);
    chrome.flash = flash;
    let valid = target.is_some();
    let mut res = render(&SetupPage {
        chrome,
        token: if valid {
            token.to_string()
        } else {
            String::new()
        },
        first_admin,
        intro,
        login: login.to_string(),
        display_name: display_name.to_string(),
        valid,
    });
    if !valid {
        *res.status_mut() = StatusCode::NOT_FOUND;
    }
    res
}

pub(crate) async fn setup_page(
    State(state): State<AppState>,
    Lang(t): Lang,
    headers: HeaderMap,
    Query(q): Query<TokenQuery>,
) -> Result<Response> {
    let (pre, cookie) = pre_login(&state, &headers)?;
    let target = setup_target(&state, t, &q.token).await?;
    Ok(with_cookie(
        setup_response(&state, t, &pre, &q.token, target.as_ref(), "", "", None),
        cookie,
    ))
}

#[derive(Deserialize)]
pub(crate) struct SetupForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    login: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    password: SecretField,
    #[serde(default)]
    confirm: SecretField,
}

pub(crate) async fn setup(
    State(state): State<AppState>,
    Lang(t): Lang,
    headers: HeaderMap,
    CsrfForm(mut form): CsrfForm<SetupForm>,
) -> Result<Response> {
    let (pre, _) = pre_login(&state, &headers)?;
    let target = setup_target(&state, t, &form.token).await?;
    let display_name = form.display_name.trim().to_string();
    let again = |flash: &str, login: &str| {
        let mut res = setup_response(
            &state,
            t,
            &pre,
            &form.token,
            target.as_ref(),
            login,
            &display_name,
            Flash::error(flash),
        );
        *res.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
        res
    };
    let Some((link, invited)) = target.as_ref() else {
        return Ok(setup_response(&state, t, &pre, "", None, "", "", None));
    };
    let login = match (link, invited) {
        (SetupLink::FirstAdmin, _) => match operator::normalise_login(&form.login) {
            Ok(l) => l,
            Err(_) => return Ok(again(t.bad_login, form.login.trim())),
        },
        (_, Some(op)) => op.login.clone(),
        (_, None) => return Ok(setup_response(&state, t, &pre, "", None, "", "", None)),
    };
    if matches!(link, SetupLink::FirstAdmin)
        && (display_name.is_empty() || display_name.chars().count() > 100)
    {
        return Ok(again(t.bad_display_name, &login));
    }
    if form.password.as_str() != form.confirm.as_str() {
        return Ok(again(t.passwords_differ, &login));
    }
    if let Err(problem) = operator::check_password(form.password.as_str(), &login) {
        return Ok(again(t.password_problem(&problem), &login));
    }
    let hash = state
        .console
        .hash_password(form.password.take())
        .await
        .map_err(|e| ConsoleError::internal(t, "password hash", e))?;
    let token_hash = secrets::setup_hash(&form.token);
    let now = now();
    let (operator_id, role) = match link {
        SetupLink::FirstAdmin => {
            let id = secrets::new_id().map_err(|e| ConsoleError::internal(t, "operator id", e))?;
            let admin = Operator {
                id: id.clone(),
                login,
                display_name: display_name.clone(),
                role: Role::Admin.as_str().to_string(),
                password_hash: Some(hash),
                totp_secret: None,
                totp_last_step: None,
                language: Some(t.code.to_string()),
                created_at: now,
                password_changed_at: Some(now),
                disabled_at: None,
            };
            let created = state
                .store
                .create_first_admin(&token_hash, &admin, now)
                .await
                .map_err(|e| ConsoleError::internal(t, "first administrator", e))?;
            if !created {
                return Ok(setup_response(&state, t, &pre, "", None, "", "", None));
            }
            record(&state, Some(&id), "setup_completed", None).await;
            (id, Role::Admin)
        }
        SetupLink::Invitation { .. } => {
            let Some(id) = state
                .store
                .accept_invitation(&token_hash, &hash, now)
                .await
                .map_err(|e| ConsoleError::internal(t, "invitation", e))?
            else {
                return Ok(setup_response(&state, t, &pre, "", None, "", "", None));
            };
            record(&state, Some(&id), "invitation_accepted", None).await;
            let role = invited
                .as_ref()
                .and_then(|o| o.role.parse::<Role>().ok())
                .unwrap_or(Role::Analyst);
            (id, role)
        }
    };
    let has_totp = invited.as_ref().is_some_and(|o| o.totp_secret.is_some());
    let (stage, to) = if has_totp {
        ("second_factor", "/console/login/code")
    } else if role.requires_second_factor() {
        ("enroll", "/console/enroll")
    } else {
        ("active", "/console")
    };
    let cookie = start_session(&state, &operator_id, stage, None).await?;
    if stage == "active" {
        record(&state, Some(&operator_id), "login", None).await;
    }
    Ok(redirect_with(
        to,
        vec![cookie, Cookie::PreLogin.set(&state.console.config, None)],
    ))
}

// --- sign out --------------------------------------------------------------------------------

#[derive(Deserialize)]
pub(crate) struct Empty {}

pub(crate) async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<Response> {
    if let Some(found) = find_session(&state, &headers).await? {
        let _ = state.store.delete_session(&found.hash).await;
        record(&state, Some(&found.operator.id), "logout", None).await;
    }
    Ok(redirect_with(
        "/console/login?m=signed_out",
        vec![Cookie::Session.set(&state.console.config, None)],
    ))
}

pub(crate) async fn logout_everywhere(
    State(state): State<AppState>,
    signed: Signed,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<Response> {
    let n = state
        .store
        .delete_operator_sessions(&signed.operator.id)
        .await
        .map_err(|e| signed.internal("logout everywhere", e))?;
    let detail = format!("{n} sessions");
    record(
        &state,
        Some(&signed.operator.id),
        "logout_everywhere",
        Some(&detail),
    )
    .await;
    Ok(redirect_with(
        "/console/login?m=signed_out",
        vec![Cookie::Session.set(&state.console.config, None)],
    ))
}

// --- account ---------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "console/account.html")]
struct AccountPage {
    chrome: Chrome,
    login: String,
    role_long: &'static str,
    has_totp: bool,
    recovery_left: i64,
    sessions: i64,
    lang: &'static str,
}

async fn account_response(
    state: &AppState,
    signed: &Signed,
    flash: Option<Flash>,
) -> Result<Response> {
    let t = signed.t;
    let op = &signed.operator;
    let recovery_left = state
        .store
        .recovery_codes_left(&op.id)
        .await
        .map_err(|e| signed.internal("recovery codes", e))?;
    let sessions = state
        .store
        .session_count(&op.id)
        .await
        .map_err(|e| signed.internal("sessions", e))?;
    let mut chrome = signed.chrome(state, t.account_title, "/console/account");
    chrome.flash = flash;
    Ok(render(&AccountPage {
        chrome,
        login: op.login.clone(),
        role_long: t.role_long(signed.role),
        has_totp: op.totp_secret.is_some(),
        recovery_left,
        sessions,
        lang: t.code,
    }))
}

pub(crate) async fn account(State(state): State<AppState>, signed: Signed) -> Result<Response> {
    account_response(&state, &signed, None).await
}

#[derive(Deserialize)]
pub(crate) struct PasswordForm {
    #[serde(default)]
    current: SecretField,
    #[serde(default)]
    password: SecretField,
    #[serde(default)]
    confirm: SecretField,
}

pub(crate) async fn change_password(
    State(state): State<AppState>,
    signed: Signed,
    ClientIp(ip): ClientIp,
    CsrfForm(mut form): CsrfForm<PasswordForm>,
) -> Result<Response> {
    let t = signed.t;
    let op = &signed.operator;
    let account = account_key(&op.login);
    let refuse = |res: Response, status: StatusCode| {
        let mut res = res;
        *res.status_mut() = status;
        res
    };
    if let Err(secs) = state.console.may_try(&account, ip) {
        let text = i18n::fill(t.throttled, &[("secs", &secs.to_string())]);
        let res = account_response(&state, &signed, Flash::error(text)).await?;
        return Ok(throttled_response(res, secs));
    }
    if !state
        .console
        .check_password(form.current.take(), op.password_hash.clone())
        .await
    {
        state.console.failed(&account, ip);
        record(
            &state,
            Some(&op.id),
            "login_failed",
            Some("password change"),
        )
        .await;
        let res = account_response(&state, &signed, Flash::error(t.wrong_current)).await?;
        return Ok(refuse(res, StatusCode::UNAUTHORIZED));
    }
    if form.password.as_str() != form.confirm.as_str() {
        let res = account_response(&state, &signed, Flash::error(t.passwords_differ)).await?;
        return Ok(refuse(res, StatusCode::UNPROCESSABLE_ENTITY));
    }
    if let Err(problem) = operator::check_password(form.password.as_str(), &op.login) {
        let res =
            account_response(&state, &signed, Flash::error(t.password_problem(&problem))).await?;
        return Ok(refuse(res, StatusCode::UNPROCESSABLE_ENTITY));
    }
    let hash = state
        .console
        .hash_password(form.password.take())
        .await
        .map_err(|e| signed.internal("password hash", e))?;
    state
        .store
        .set_operator_password(&op.id, &hash, now())
        .await
        .map_err(|e| signed.internal("password change", e))?;
    state
        .store
        .delete_other_sessions(&op.id, &signed.session_hash)
        .await
        .map_err(|e| signed.internal("other sessions", e))?;
    record(&state, Some(&op.id), "password_changed", None).await;
    account_response(&state, &signed, Flash::ok(t.password_changed)).await
}

#[derive(Deserialize)]
pub(crate) struct LanguageForm {
    #[serde(default)]
    lang: String,
}

pub(crate) async fn set_language(
    State(state): State<AppState>,
    signed: Signed,
    CsrfForm(form): CsrfForm<LanguageForm>,
) -> Result<Response> {
    let lang = match form.lang.as_str() {
        "fr" => "fr",
        _ => "en",
    };
    state
        .store
        .set_operator_language(&signed.operator.id, lang)
        .await
        .map_err(|e| signed.internal("language", e))?;
    Ok(redirect_with("/console/account", vec![]))
}

/// Creates an invitation link for an operator (used by the operators page).
pub(crate) async fn new_invitation(
    state: &AppState,
    t: &'static Text,
    operator_id: &str,
) -> Result<Zeroizing<String>> {
    let token =
        secrets::new_setup_token().map_err(|e| ConsoleError::internal(t, "setup token", e))?;
    let now = now();
    state
        .store
        .insert_setup_token(&token.hash, Some(operator_id), now, now + INVITATION_SECS)
        .await
        .map_err(|e| ConsoleError::internal(t, "setup token", e))?;
    Ok(token.secret)
}
