//! Administration pages: operators and API tokens (the admin role only).

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;
use tutela_domain::operator::{self, Permission, Role};
use tutela_domain::register::Period;
use tutela_domain::scope::Scope;
use tutela_store::{ApiToken, Operator};

use super::auth_pages::new_invitation;
use super::i18n;
use super::web::{CsrfForm, Flash, Result, Signed, fmt_time, now, record, render};
use crate::AppState;

// --- operators -------------------------------------------------------------------------------

struct OperatorRow {
    id: String,
    login: String,
    name: String,
    role: &'static str,
    has_totp: bool,
    status: &'static str,
    disabled: bool,
    is_self: bool,
}

struct RoleOption {
    value: &'static str,
    label: &'static str,
}

#[derive(Template)]
#[template(path = "console/operators.html")]
struct OperatorsPage {
    chrome: super::web::Chrome,
    operators: Vec<OperatorRow>,
    roles: Vec<RoleOption>,
    invite_text: Option<String>,
    invite_link: Option<String>,
    login: String,
    display_name: String,
}

/// The site's own origin, as the browser addressed it (for invitation links).
fn origin(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(url) = &state.console.config.public_url {
        return url.trim_end_matches('/').to_string();
    }
    // The form's own origin, as the administrator's browser sent it.
    if let Some(origin) = headers
        .get(header::ORIGIN)
        .and_then(|h| h.to_str().ok())
        .filter(|o| {
            (o.starts_with("https://") || o.starts_with("http://"))
                && o.len() <= 300
                && o.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]/".contains(&b))
        })
    {
        return origin.to_string();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .unwrap_or("localhost");
    // Tutela itself speaks plain HTTP: https is what a TLS proxy in front of it serves, and a
    // loopback host has no proxy in front (browsers treat http://localhost as secure).
    let name = host.rsplit_once(':').map_or(host, |(h, _)| h);
    let loopback = name == "localhost" || name.starts_with("127.") || name == "[::1]";
    let scheme = if state.console.config.secure_cookies && !loopback {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{host}")
}

async fn operators_response(
    state: &AppState,
    signed: &Signed,
    flash: Option<Flash>,
    invite: Option<(String, String)>,
    form: (&str, &str),
) -> Result<Response> {
    let t = signed.t;
    let list = state
        .store
        .operators()
        .await
        .map_err(|e| signed.internal("operators", e))?;
    let operators = list
        .into_iter()
        .map(|o| {
            let role = o.role.parse::<Role>().map_or("?", |r| t.role(r));
            OperatorRow {
                status: if o.is_disabled() {
                    t.status_disabled
                } else if o.password_hash.is_none() {
                    t.status_invited
                } else {
                    t.status_active
                },
                disabled: o.is_disabled(),
                is_self: o.id == signed.operator.id,
                has_totp: o.totp_secret.is_some(),
                id: o.id,
                login: o.login,
                name: o.display_name,
                role,
            }
        })
        .collect();
    let mut chrome = signed.chrome(state, t.operators_title, "/console/operators");
    chrome.flash = flash;
    let (invite_text, invite_link) = match invite {
        Some((login, link)) => (
            Some(i18n::fill(t.invite_created, &[("login", &login)])),
            Some(link),
        ),
        None => (None, None),
    };
    Ok(render(&OperatorsPage {
        chrome,
        operators,
        roles: Role::ALL
            .iter()
            .map(|r| RoleOption {
                value: r.as_str(),
                label: t.role_long(*r),
            })
            .collect(),
        invite_text,
        invite_link,
        login: form.0.to_string(),
        display_name: form.1.to_string(),
    }))
}

pub(crate) async fn operators(State(state): State<AppState>, signed: Signed) -> Result<Response> {
    signed.require(Permission::ManageOperators)?;
    operators_response(&state, &signed, None, None, ("", "")).await
}

#[derive(Deserialize)]
pub(crate) struct AddOperatorForm {
    #[serde(default)]
    login: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    role: String,
}

pub(crate) async fn add_operator(
    State(state): State<AppState>,
    signed: Signed,
    headers: HeaderMap,
    CsrfForm(form): CsrfForm<AddOperatorForm>,
) -> Result<Response> {
    signed.require(Permission::ManageOperators)?;
    let t = signed.t;
    let display_name = form.display_name.trim().to_string();
    let typed = (form.login.trim(), display_name.as_str());
    let refuse = async |text: &str| -> Result<Response> {
        let mut res = operators_response(&state, &signed, Flash::error(text), None, typed).await?;
        *res.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
        Ok(res)
    };
    let Ok(login) = operator::normalise_login(&form.login) else {
        return refuse(t.bad_login).await;
    };
    if display_name.is_empty() || display_name.chars().count() > 100 {
        return refuse(t.bad_display_name).await;
    }
    let Ok(role) = form.role.parse::<Role>() else {
        return refuse(t.bad_login).await;
    };
    if state
        .store
        .operator_by_login(&login)
        .await
        .map_err(|e| signed.internal("operator lookup", e))?
        .is_some()
    {
        return refuse(t.login_taken).await;
    }
    let id = tutela_crypto::session::new_id().map_err(|e| signed.internal("operator id", e))?;
    state
        .store
        .insert_operator(&Operator {
            id: id.clone(),
            login: login.clone(),
            display_name,
            role: role.as_str().to_string(),
            password_hash: None,
            totp_secret: None,
            totp_last_step: None,
            language: None,
            created_at: now(),
            password_changed_at: None,
            disabled_at: None,
        })
        .await
        .map_err(|e| signed.internal("operator insert", e))?;
    let token = new_invitation(&state, t, &id).await?;
    let detail = format!("{} by {}", role.as_str(), signed.operator.login);
    record(&state, Some(&id), "operator_created", Some(&detail)).await;
    let link = format!(
        "{}/console/setup?token={}",
        origin(&state, &headers),
        token.as_str()
    );
    operators_response(&state, &signed, None, Some((login, link)), ("", "")).await
}

pub(crate) async fn disable_operator(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
    CsrfForm(_): CsrfForm<super::auth_pages::Empty>,
) -> Result<Response> {
    signed.require(Permission::ManageOperators)?;
    let t = signed.t;
    if id == signed.operator.id {
        return operators_response(
            &state,
            &signed,
            Flash::error(t.cannot_disable_self),
            None,
            ("", ""),
        )
        .await;
    }
    let done = state
        .store
        .disable_operator(&id, now())
        .await
        .map_err(|e| signed.internal("disable operator", e))?;
    if done {
        let detail = format!("by {}", signed.operator.login);
        record(&state, Some(&id), "operator_disabled", Some(&detail)).await;
    }
    operators_response(
        &state,
        &signed,
        Flash::ok(t.operator_disabled),
        None,
        ("", ""),
    )
    .await
}

pub(crate) async fn reset_operator_2fa(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
    CsrfForm(_): CsrfForm<super::auth_pages::Empty>,
) -> Result<Response> {
    signed.require(Permission::ManageOperators)?;
    let done = state
        .store
        .reset_operator_totp(&id)
        .await
        .map_err(|e| signed.internal("reset 2FA", e))?;
    if done {
        let detail = format!("by {}", signed.operator.login);
        record(&state, Some(&id), "totp_reset", Some(&detail)).await;
    }
    operators_response(
        &state,
        &signed,
        Flash::ok(signed.t.twofa_reset_done),
        None,
        ("", ""),
    )
    .await
}

// --- API tokens ------------------------------------------------------------------------------

struct TokenRow {
    id: String,
    name: String,
    scopes: String,
    created: String,
    expires: String,
    last_used: String,
    state: &'static str,
    active: bool,
}

struct ScopeOption {
    value: &'static str,
}

#[derive(Template)]
#[template(path = "console/tokens.html")]
struct TokensPage {
    chrome: super::web::Chrome,
    tokens: Vec<TokenRow>,
    scopes: Vec<ScopeOption>,
    created: Option<String>,
    name: String,
    expires: String,
}

async fn tokens_response(
    state: &AppState,
    signed: &Signed,
    flash: Option<Flash>,
    created: Option<String>,
    form: (&str, &str),
) -> Result<Response> {
    let t = signed.t;
    let now = now();
    let tokens = state
        .store
        .api_tokens()
        .await
        .map_err(|e| signed.internal("tokens", e))?
        .into_iter()
        .map(|k| TokenRow {
            state: if k.revoked_at.is_some() {
                t.state_revoked
            } else if k.is_active(now) {
                t.state_active
            } else {
                t.state_expired
            },
            active: k.is_active(now),
            created: fmt_time(Some(k.created_at)),
            expires: k
                .expires_at
                .map_or(t.never.to_string(), |e| fmt_time(Some(e))),
            last_used: k
                .last_used_at
                .map_or(t.never.to_string(), |e| fmt_time(Some(e))),
            scopes: k.scopes.join(" "),
            id: k.id,
            name: k.name,
        })
        .collect();
    let mut chrome = signed.chrome(state, t.tokens_title, "/console/tokens");
    chrome.flash = flash;
    Ok(render(&TokensPage {
        chrome,
        tokens,
        scopes: Scope::ALL
            .iter()
            .map(|s| ScopeOption { value: s.as_str() })
            .collect(),
        created,
        name: form.0.to_string(),
        expires: form.1.to_string(),
    }))
}

pub(crate) async fn tokens(State(state): State<AppState>, signed: Signed) -> Result<Response> {
    signed.require(Permission::ManageTokens)?;
    tokens_response(&state, &signed, None, None, ("", "")).await
}

pub(crate) async fn create_token(
    State(state): State<AppState>,
    signed: Signed,
    CsrfForm(pairs): CsrfForm<Vec<(String, String)>>,
) -> Result<Response> {
    signed.require(Permission::ManageTokens)?;
    let t = signed.t;
    let field = |k: &str| {
        pairs
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default()
    };
    let name = field("name");
    let expires = field("expires");
    let mut scopes: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| k == "scope")
        .filter_map(|(_, v)| v.parse::<Scope>().ok())
        .map(|s| s.as_str().to_string())
        .collect();
    scopes.sort();
    scopes.dedup();
    let refuse = async |text: &str| -> Result<Response> {
        let mut res =
            tokens_response(&state, &signed, Flash::error(text), None, (&name, &expires)).await?;
        *res.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
        Ok(res)
    };
    if name.is_empty() || name.chars().count() > 200 {
        return refuse(t.bad_token_name).await;
    }
    if scopes.is_empty() {
        return refuse(t.no_scope).await;
    }
    let now_ts = jiff::Timestamp::now();
    let expires_at = if expires.is_empty() {
        None
    } else {
        let period = Period::parse(&expires);
        if !period.is_valid() || expires.len() > 40 {
            return refuse(t.bad_expiry).await;
        }
        match tutela_domain::retention::add_period(now_ts, &period) {
            Ok(ts) => Some(ts.as_second()),
            Err(_) => return refuse(t.bad_expiry).await,
        }
    };
    let new = tutela_crypto::token::new_token().map_err(|e| signed.internal("token", e))?;
    state
        .store
        .insert_api_token(&ApiToken {
            id: new.id.clone(),
            name,
            scopes,
            secret_hash: new.hash.to_vec(),
            created_at: now_ts.as_second(),
            expires_at,
            revoked_at: None,
            last_used_at: None,
        })
        .await
        .map_err(|e| signed.internal("token insert", e))?;
    record(
        &state,
        Some(&signed.operator.id),
        "token_created",
        Some(&new.id),
    )
    .await;
    tokens_response(&state, &signed, None, Some(new.token.to_string()), ("", "")).await
}

pub(crate) async fn revoke_token(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
    CsrfForm(_): CsrfForm<super::auth_pages::Empty>,
) -> Result<Response> {
    signed.require(Permission::ManageTokens)?;
    let done = state
        .store
        .revoke_api_token(&id, now())
        .await
        .map_err(|e| signed.internal("token revoke", e))?;
    if done {
        record(
            &state,
            Some(&signed.operator.id),
            "token_revoked",
            Some(&id),
        )
        .await;
    }
    tokens_response(
        &state,
        &signed,
        Flash::ok(signed.t.token_revoked),
        None,
        ("", ""),
    )
    .await
}

// --- keys ------------------------------------------------------------------------------------

struct KeyRow {
    id: String,
    subjects: u64,
    current: bool,
}

#[derive(Template)]
#[template(path = "console/keys.html")]
struct KeysPage {
    chrome: super::web::Chrome,
    index_root: String,
    keys: Vec<KeyRow>,
    unfinished: bool,
}

/// The vault's keys as the server holds them (ids only; rotation is `tutela keys rotate` on the
/// server, which writes the key file).
pub(crate) async fn keys(State(state): State<AppState>, signed: Signed) -> Result<Response> {
    signed.require(Permission::ManageKeys)?;
    let t = signed.t;
    let vault_keys = state.vault.keys();
    let current = vault_keys.current_key_id().to_hex();
    let counts = state
        .store
        .vault_key_counts()
        .await
        .map_err(|e| signed.internal("key counts", e))?;
    let mut keys = vec![KeyRow {
        subjects: counts.get(&current).copied().unwrap_or(0),
        id: current.clone(),
        current: true,
    }];
    for (id, n) in &counts {
        if *id != current {
            keys.push(KeyRow {
                id: id.clone(),
                subjects: *n,
                current: false,
            });
        }
    }
    let unfinished = keys.iter().any(|k| !k.current && k.subjects > 0);
    Ok(render(&KeysPage {
        chrome: signed.chrome(&state, t.keys_title, "/console/keys"),
        index_root: vault_keys.index_root_id().to_hex(),
        keys,
        unfinished,
    }))
}
