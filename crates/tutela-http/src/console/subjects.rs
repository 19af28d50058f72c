//! Subject search: look a person up by identifier and see what is held, grouped by purpose with
//! deadlines. The operator must say why (a purpose of the register); the vault records the lookup
//! and the read in the audit log before it returns anything. The DPO sees every purpose; support
//! staff only the support purposes (`ConsoleConfig::support_purposes`); other roles nothing.
//!
//! The identifier travels in a POST body (never in a URL, so never in logs or history) and is not
//! echoed back.

use std::str::FromStr;

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use tutela_crypto::IdentifierKind;
use tutela_domain::notice;
use tutela_domain::operator::Permission;
use tutela_vault::{Actor, IdentifierInput, ReadOptions, VaultError};

use super::i18n;
use super::web::{Chrome, CsrfForm, Flash, Result, SecretField, Signed, fmt_time, render};
use crate::AppState;

struct Choice {
    value: String,
    label: String,
}

struct RecordRow {
    category: String,
    value: String,
    source: String,
    collected: String,
    deadline: String,
    legal_hold: bool,
}

struct PurposeBlock {
    label: String,
    basis: String,
    records: Vec<RecordRow>,
}

struct Found {
    subject_id: String,
    created: String,
    identifiers: Vec<String>,
    purposes: Vec<PurposeBlock>,
    viewed_for: String,
}

#[derive(Template)]
#[template(path = "console/subjects.html")]
struct SubjectsPage {
    chrome: Chrome,
    kinds: Vec<&'static str>,
    purposes: Vec<Choice>,
    support_only: bool,
    found: Option<Found>,
}

/// The purposes this operator may read for.
fn allowed_purposes(state: &AppState, signed: &Signed) -> Vec<String> {
    let reg = &state.register.register;
    if signed.can(Permission::ReadPersonalData) {
        reg.purposes.iter().map(|p| p.id.clone()).collect()
    } else if signed.can(Permission::ReadSupportData) {
        let support = &state.console.config.support_purposes;
        reg.purposes
            .iter()
            .filter(|p| support.contains(&p.id))
            .map(|p| p.id.clone())
            .collect()
    } else {
        Vec::new()
    }
}

fn page(state: &AppState, signed: &Signed, found: Option<Found>, flash: Option<Flash>) -> Response {
    let t = signed.t;
    let reg = &state.register.register;
    let lang = notice::resolve_language(reg, t.code);
    let purposes = allowed_purposes(state, signed)
        .into_iter()
        .map(|id| Choice {
            label: reg
                .purpose(&id)
                .map_or(id.clone(), |p| p.label.get(&lang).to_string()),
            value: id,
        })
        .collect();
    let mut chrome = signed.chrome(state, t.subjects_title, "/console/subjects");
    chrome.flash = flash;
    render(&SubjectsPage {
        chrome,
        kinds: IdentifierKind::ALL.iter().map(|k| k.as_str()).collect(),
        purposes,
        support_only: !signed.can(Permission::ReadPersonalData),
        found,
    })
}

pub(crate) async fn search_page(State(state): State<AppState>, signed: Signed) -> Result<Response> {
    signed.require(Permission::ReadSupportData)?;
    Ok(page(&state, &signed, None, None))
}

#[derive(Deserialize)]
pub(crate) struct SearchForm {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    identifier: SecretField,
    #[serde(default)]
    purpose: String,
}

pub(crate) async fn search(
    State(state): State<AppState>,
    signed: Signed,
    CsrfForm(form): CsrfForm<SearchForm>,
) -> Result<Response> {
    signed.require(Permission::ReadSupportData)?;
    let t = signed.t;
    let refuse = |text: &str, status: StatusCode| {
        let mut res = page(&state, &signed, None, Flash::error(text));
        *res.status_mut() = status;
        res
    };
    let allowed = allowed_purposes(&state, &signed);
    if !allowed.contains(&form.purpose) {
        return Ok(refuse(t.bad_purpose, StatusCode::UNPROCESSABLE_ENTITY));
    }
    let Ok(kind) = IdentifierKind::from_str(&form.kind) else {
        return Ok(refuse(t.bad_identifier, StatusCode::UNPROCESSABLE_ENTITY));
    };
    let value = form.identifier.as_str();
    if value.trim().is_empty() || value.len() > tutela_crypto::MAX_IDENTIFIER_LEN {
        return Ok(refuse(t.bad_identifier, StatusCode::UNPROCESSABLE_ENTITY));
    }
    let actor = Actor::new(format!("operator:{}", signed.operator.id));
    let vault = &state.vault;
    let subject_id = match vault
        .lookup(&actor, &form.purpose, &IdentifierInput::new(kind, value))
        .await
    {
        Ok(id) => id,
        Err(VaultError::SubjectNotFound) => {
            return Ok(refuse(t.no_subject, StatusCode::NOT_FOUND));
        }
        Err(VaultError::InvalidIdentifier(_)) | Err(VaultError::InvalidInput(_)) => {
            return Ok(refuse(t.bad_identifier, StatusCode::UNPROCESSABLE_ENTITY));
        }
        Err(e) => return Err(signed.internal("subject lookup", e)),
    };
    let view = vault
        .read_subject(&actor, &form.purpose, &subject_id, ReadOptions::default())
        .await
        .map_err(|e| signed.internal("subject read", e))?;
    let reg = &state.register.register;
    let lang = notice::resolve_language(reg, t.code);
    let purposes = view
        .purposes
        .into_iter()
        .filter(|p| allowed.contains(&p.purpose))
        .map(|p| {
            let purpose = reg.purpose(&p.purpose);
            PurposeBlock {
                label: purpose.map_or(p.purpose.clone(), |x| x.label.get(&lang).to_string()),
                basis: purpose.map_or(p.legal_basis.clone(), |x| {
                    notice::legal_basis_label(&x.legal_basis, &lang)
                }),
                records: p
                    .records
                    .into_iter()
                    .map(|r| RecordRow {
                        category: reg
                            .category(&r.category)
                            .map_or(r.category.clone(), |c| c.label.get(&lang).to_string()),
                        value: match &r.payload {
                            Some(serde_json::Value::String(s)) => s.clone(),
                            Some(v) => v.to_string(),
                            None => t.restricted.to_string(),
                        },
                        source: r.source,
                        collected: fmt_time(Some(r.collected_at)),
                        deadline: match (r.deadline, r.waiting_for) {
                            (Some(d), _) => fmt_time(Some(d)),
                            (None, Some(event)) => i18n::fill(t.waiting_for, &[("event", event)]),
                            (None, None) => String::new(),
                        },
                        legal_hold: r.legal_hold,
                    })
                    .collect(),
            }
        })
        .collect();
    let purpose_label = reg
        .purpose(&form.purpose)
        .map_or(form.purpose.clone(), |p| p.label.get(&lang).to_string());
    let found = Found {
        subject_id: view.subject_id,
        created: fmt_time(Some(view.created_at)),
        identifiers: view.identifiers.into_iter().map(|i| i.kind).collect(),
        purposes,
        viewed_for: i18n::fill(t.viewed_for, &[("purpose", &purpose_label)]),
    };
    Ok(page(&state, &signed, Some(found), None))
}
