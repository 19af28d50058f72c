//! The audit-log browser and its verify action (admin and DPO).

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;
use tutela_domain::operator::Permission;

use super::i18n;
use super::web::{Chrome, CsrfForm, Flash, Result, Signed, record, render};
use crate::AppState;

const PER_PAGE: i64 = 50;

struct EntryRow {
    seq: i64,
    when: String,
    actor: String,
    action: String,
    purpose: String,
    subject: String,
    details: String,
}

#[derive(Template)]
#[template(path = "console/audit.html")]
struct AuditPage {
    chrome: Chrome,
    entries: Vec<EntryRow>,
    total: i64,
    older: Option<i64>,
    newer: Option<i64>,
}

#[derive(Deserialize)]
pub(crate) struct AuditQuery {
    /// Show the page that ends with this entry (default: the newest).
    #[serde(default)]
    upto: Option<i64>,
}

fn hex_prefix(bytes: &[u8], n: usize) -> String {
    bytes.iter().take(n).map(|b| format!("{b:02x}")).collect()
}

async fn audit_response(
    state: &AppState,
    signed: &Signed,
    upto: Option<i64>,
    flash: Option<Flash>,
) -> Result<Response> {
    let t = signed.t;
    let (head, _) = state
        .store
        .audit_head()
        .await
        .map_err(|e| signed.internal("audit head", e))?;
    let upto = upto.unwrap_or(head).clamp(0, head);
    let after = (upto - PER_PAGE).max(0);
    let mut rows = state
        .store
        .audit_entries(after, upto - after)
        .await
        .map_err(|e| signed.internal("audit entries", e))?;
    rows.reverse();
    let entries = rows
        .into_iter()
        .map(|r| EntryRow {
            seq: r.seq,
            when: jiff::Timestamp::from_millisecond(r.time_ms)
                .map(|ts| ts.strftime("%Y-%m-%d %H:%M:%S").to_string())
                .unwrap_or_default(),
            actor: r.actor,
            action: r.action,
            purpose: r.purpose,
            subject: r
                .subject_commitment
                .as_deref()
                .map(|c| format!("{}…", hex_prefix(c, 6)))
                .unwrap_or_default(),
            details: r.details.chars().take(300).collect(),
        })
        .collect();
    let mut chrome = signed.chrome(state, t.audit_title, "/console/audit");
    chrome.flash = flash;
    Ok(render(&AuditPage {
        chrome,
        entries,
        total: head,
        older: (after > 0).then_some(after),
        newer: (upto < head).then(|| (upto + PER_PAGE).min(head)),
    }))
}

pub(crate) async fn audit_log(
    State(state): State<AppState>,
    signed: Signed,
    Query(q): Query<AuditQuery>,
) -> Result<Response> {
    signed.require(Permission::ViewAuditLog)?;
    audit_response(&state, &signed, q.upto, None).await
}

pub(crate) async fn verify(
    State(state): State<AppState>,
    signed: Signed,
    CsrfForm(_): CsrfForm<super::auth_pages::Empty>,
) -> Result<Response> {
    signed.require(Permission::ViewAuditLog)?;
    let t = signed.t;
    let outcome = state
        .vault
        .verify_audit(None)
        .await
        .map_err(|e| signed.internal("audit verification", e))?;
    let flash = match outcome {
        Ok(v) => {
            let hash = hex_prefix(&v.head.hash, 32);
            record(
                &state,
                Some(&signed.operator.id),
                "audit_verified",
                Some("intact"),
            )
            .await;
            Flash::ok(i18n::fill(
                t.chain_ok,
                &[
                    ("n", &v.entries.to_string()),
                    ("seq", &v.head.seq.to_string()),
                    ("hash", &hash),
                ],
            ))
        }
        Err(problem) => {
            record(
                &state,
                Some(&signed.operator.id),
                "audit_verified",
                Some("broken"),
            )
            .await;
            Flash::error(i18n::fill(
                t.chain_broken,
                &[("problem", &problem.explain())],
            ))
        }
    };
    audit_response(&state, &signed, None, flash).await
}
