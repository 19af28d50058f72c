//! The vault API for the platform: subjects, records, anchor events and erasure, behind bearer
//! tokens with the `vault:read` / `vault:write` scopes. Handlers call [`tutela_vault::Vault`]
//! only; every read of personal data is audited there (actor `token:<id>`, purpose given by
//! the caller and checked against the register).
//!
//! Identifiers never travel in URL paths or query strings (they would end up in proxies' logs):
//! they are sent in POST bodies, and subjects are then addressed by their opaque id.
//! Documented as OpenAPI 3.1 at `/api/v1/openapi.json` ([`openapi`]).

use std::collections::BTreeMap;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tutela_crypto::{IdentifierKind, MAX_IDENTIFIER_LEN};
use tutela_domain::scope::Scope;
use tutela_vault::{
    AnchorEvent, ErasureScope, IdentifierInput, KeepReason, ReadOptions, RecordInput, RecordUpdate,
    RecordView, SubjectView,
};
use utoipa::OpenApi;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorCode};

/// Largest body of a records write: up to 100 records, each payload at most 64 KiB.
const RECORDS_BODY_LIMIT: usize = 1024 * 1024;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/openapi.json", get(openapi_json))
        .route("/api/v1/subjects", post(create_subject))
        .route("/api/v1/subjects/lookup", post(lookup))
        .route("/api/v1/subjects/{subject_id}", get(read_subject))
        .route(
            "/api/v1/subjects/{subject_id}/identifiers",
            post(link_identifiers),
        )
        .route(
            "/api/v1/subjects/{subject_id}/records",
            post(put_records).layer(DefaultBodyLimit::max(RECORDS_BODY_LIMIT)),
        )
        .route(
            "/api/v1/subjects/{subject_id}/records/{record_id}",
            get(read_record)
                .patch(update_record)
                .layer(DefaultBodyLimit::max(RECORDS_BODY_LIMIT)),
        )
        .route("/api/v1/subjects/{subject_id}/events", post(record_event))
        .route("/api/v1/subjects/{subject_id}/erasure", post(erase))
}

// ---------------------------------------------------------------------------------------------
// Wire types

/// An identifier of a person, sent in a request body only.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IdentifierBody {
    /// `email`, `phone`, `account_id`, `login`, `visitor_id`, `candidate_ref` or `generic`.
    #[schema(example = "email")]
    pub kind: String,
    /// The identifier; normalised before indexing (e-mail lower-cased, phone to E.164 digits…).
    #[schema(example = "alice@example.com", max_length = 1024)]
    pub value: String,
}

/// Identifiers of one person.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IdentifiersBody {
    /// 1 to 16 identifiers.
    pub identifiers: Vec<IdentifierBody>,
}

/// The subject found or created.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SubjectRef {
    /// Opaque id (32 hex digits) to address the subject in later calls.
    pub subject_id: String,
    /// Whether this call created the subject.
    pub created: bool,
    /// How many identifiers this call linked to the subject.
    pub identifiers_linked: usize,
}

/// A lookup: who is this identifier, asked for which purpose.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LookupBody {
    pub identifier: IdentifierBody,
    /// The purpose of the register under which you ask (recorded in the audit log).
    pub purpose: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct LookupAnswer {
    pub subject_id: String,
}

/// A record to store.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordBody {
    /// A purpose of the register.
    #[schema(example = "customer_accounts")]
    pub purpose: String,
    /// A category the register declares for that purpose (not a `never_store` one).
    #[schema(example = "email")]
    pub category: String,
    /// Any JSON, at most 64 KiB; refused when it holds a payment-card number.
    #[schema(value_type = Object)]
    pub payload: Value,
    /// Where it comes from: 1 to 64 of letters, digits and `._:/-` (stored in clear).
    #[schema(example = "signup-form")]
    pub source: String,
    /// When it was collected (RFC 3339) [default: now].
    pub collected_at: Option<String>,
    /// Keep it whatever its deadline until the hold is lifted.
    #[serde(default)]
    pub legal_hold: bool,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordsBody {
    /// 1 to 100 records.
    pub records: Vec<RecordBody>,
}

/// A record as written.
#[derive(Serialize, utoipa::ToSchema)]
pub struct WrittenJson {
    pub id: i64,
    pub purpose: String,
    pub category: String,
    pub collected_at: String,
    /// Deletion deadline (RFC 3339), or null until an anchor event.
    pub deadline: Option<String>,
    /// The event the deadline waits for (`contract_ended`, `request_replied`, …).
    pub waiting_for: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct WrittenAnswer {
    pub records: Vec<WrittenJson>,
}

/// A stored record.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RecordJson {
    pub id: i64,
    pub purpose: String,
    pub category: String,
    /// The payload; null for a restricted record (art. 18) and in answers to updates.
    #[schema(value_type = Option<Object>)]
    pub payload: Option<Value>,
    pub source: String,
    pub collected_at: String,
    /// When the retention clock started.
    pub anchor_at: Option<String>,
    pub deadline: Option<String>,
    pub waiting_for: Option<String>,
    pub legal_hold: bool,
    pub restricted: bool,
    pub updated_at: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct PurposeJson {
    pub purpose: String,
    pub legal_basis: String,
    pub records: Vec<RecordJson>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct IdentifierKindJson {
    /// The kind only: identifiers are not stored, only their keyed blind index.
    pub kind: String,
    pub linked_at: String,
}

/// Everything held on a subject, grouped by purpose, with deadlines.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SubjectJson {
    pub subject_id: String,
    pub created_at: String,
    pub identifiers: Vec<IdentifierKindJson>,
    pub purposes: Vec<PurposeJson>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PurposeQuery {
    /// The purpose of the register under which you read (recorded in the audit log).
    pub purpose: Option<String>,
}

/// A change to a record.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordPatchBody {
    #[schema(value_type = Option<Object>)]
    pub payload: Option<Value>,
    pub legal_hold: Option<bool>,
    pub restricted: Option<bool>,
}

/// An anchor event: it starts or moves the retention clock.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventBody {
    /// `contract_ended`, `last_contact`, `request_replied` or `request_closed`.
    #[schema(example = "contract_ended")]
    pub event: String,
    /// The purpose concerned [default: every purpose whose retention counts from the event].
    pub purpose: Option<String>,
    /// When it happened (RFC 3339) [default: now].
    pub at: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CategoryDeadline {
    pub category: String,
    pub deadline: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct EventPurposeJson {
    pub purpose: String,
    pub records_updated: u64,
    pub deadlines: Vec<CategoryDeadline>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct EventAnswer {
    pub event: String,
    pub at: String,
    pub purposes: Vec<EventPurposeJson>,
}

/// An erasure, for every purpose or some.
#[derive(Deserialize, utoipa::ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct ErasureBody {
    /// Only these purposes [default: all].
    pub purposes: Option<Vec<String>>,
}

/// A record kept despite the erasure, and why (a declared exception to tell the person).
#[derive(Serialize, utoipa::ToSchema)]
pub struct KeptJson {
    pub record_id: i64,
    pub purpose: String,
    pub category: String,
    pub deadline: Option<String>,
    /// `legal_hold` or `legal_obligation`.
    pub reason: String,
    /// The law that obliges to keep it, when the register names one.
    pub law: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErasureAnswer {
    pub subject_id: String,
    /// Records deleted per purpose.
    pub erased: BTreeMap<String, u64>,
    pub kept: Vec<KeptJson>,
    /// Whether the subject's key was destroyed (nothing remained).
    pub subject_shredded: bool,
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn rfc3339(secs: i64) -> String {
    jiff::Timestamp::from_second(secs)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn parse_time(field: &str, text: &str) -> Result<i64, ApiError> {
    text.parse::<jiff::Timestamp>()
        .map(|t| t.as_second())
        .map_err(|_| {
            ApiError::new(
                ErrorCode::BadRequest,
                format!("`{field}` must be an RFC 3339 time, e.g. 2026-11-29T10:00:00Z"),
            )
        })
}

fn body<T>(r: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    match r {
        Ok(Json(v)) => Ok(v),
        Err(JsonRejection::BytesRejection(e)) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            Err(ApiError::new(
                ErrorCode::PayloadTooLarge,
                "the request body is too large",
            ))
        }
        // serde's messages name the field and position, never echo values of our types.
        Err(e) => Err(ApiError::new(ErrorCode::BadRequest, e.body_text())),
    }
}

fn subject_path(p: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    match p {
        Ok(Path(id)) if tutela_vault::is_subject_id(&id) => Ok(id),
        _ => Err(ApiError::new(ErrorCode::SubjectNotFound, "no such subject")),
    }
}

fn record_path(
    p: Result<Path<(String, String)>, PathRejection>,
) -> Result<(String, i64), ApiError> {
    let not_found = || ApiError::new(ErrorCode::RecordNotFound, "no such record");
    let Ok(Path((subject, record))) = p else {
        return Err(not_found());
    };
    if !tutela_vault::is_subject_id(&subject) {
        return Err(ApiError::new(ErrorCode::SubjectNotFound, "no such subject"));
    }
    let id = record.parse::<i64>().map_err(|_| not_found())?;
    Ok((subject, id))
}

fn purpose_query(q: Result<Query<PurposeQuery>, QueryRejection>) -> Result<String, ApiError> {
    match q {
        Ok(Query(PurposeQuery {
            purpose: Some(p), ..
        })) if !p.is_empty() => Ok(p),
        _ => Err(ApiError::new(
            ErrorCode::BadRequest,
            "say why you read: add ?purpose=<a purpose of the register> (it is recorded in the audit log)",
        )),
    }
}

fn identifiers(list: Vec<IdentifierBody>) -> Result<Vec<IdentifierInput>, ApiError> {
    if list.is_empty() || list.len() > tutela_vault::MAX_IDENTIFIERS_PER_CALL {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            format!(
                "give 1 to {} identifiers",
                tutela_vault::MAX_IDENTIFIERS_PER_CALL
            ),
        ));
    }
    list.into_iter().map(identifier).collect()
}

fn identifier(i: IdentifierBody) -> Result<IdentifierInput, ApiError> {
    if i.value.len() > MAX_IDENTIFIER_LEN {
        return Err(ApiError::new(
            ErrorCode::InvalidIdentifier,
            format!("an identifier may be at most {MAX_IDENTIFIER_LEN} bytes"),
        ));
    }
    let kind: IdentifierKind = i
        .kind
        .parse()
        .map_err(|e: tutela_crypto::IdentifierError| {
            ApiError::new(ErrorCode::InvalidIdentifier, e.to_string())
        })?;
    Ok(IdentifierInput::new(kind, i.value))
}

fn record_json(r: RecordView) -> RecordJson {
    RecordJson {
        id: r.id,
        purpose: r.purpose,
        category: r.category,
        payload: r.payload,
        source: r.source,
        collected_at: rfc3339(r.collected_at),
        anchor_at: r.anchor_at.map(rfc3339),
        deadline: r.deadline.map(rfc3339),
        waiting_for: r.waiting_for.map(str::to_string),
        legal_hold: r.legal_hold,
        restricted: r.restricted,
        updated_at: rfc3339(r.updated_at),
    }
}

fn subject_json(v: SubjectView) -> SubjectJson {
    SubjectJson {
        subject_id: v.subject_id,
        created_at: rfc3339(v.created_at),
        identifiers: v
            .identifiers
            .into_iter()
            .map(|i| IdentifierKindJson {
                kind: i.kind,
                linked_at: rfc3339(i.linked_at),
            })
            .collect(),
        purposes: v
            .purposes
            .into_iter()
            .map(|p| PurposeJson {
                purpose: p.purpose,
                legal_basis: p.legal_basis,
                records: p.records.into_iter().map(record_json).collect(),
            })
            .collect(),
    }
}

/// Personal data must not be cached by browsers or proxies.
fn private<T: Serialize>(status: StatusCode, v: T) -> Response {
    (
        status,
        [(axum::http::header::CACHE_CONTROL, "no-store")],
        Json(v),
    )
        .into_response()
}

// ---------------------------------------------------------------------------------------------
// Handlers

/// Find the subject with any of these identifiers, or create it; link the identifiers it
/// did not have yet.
#[utoipa::path(post, path = "/api/v1/subjects", tag = "vault", request_body = IdentifiersBody,
    responses(
        (status = 201, description = "Subject created", body = SubjectRef),
        (status = 200, description = "Subject found (identifiers linked)", body = SubjectRef),
        (status = 400, description = "Malformed identifiers", body = ApiError),
        (status = 409, description = "The identifiers belong to different subjects", body = ApiError),
    ),
    security(("bearer" = ["vault:write"])))]
async fn create_subject(
    caller: Caller,
    State(state): State<AppState>,
    payload: Result<Json<IdentifiersBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    caller.require(Scope::VaultWrite)?;
    let ids = identifiers(body(payload)?.identifiers)?;
    let actor = tutela_vault::Actor::new(caller.actor());
    let r = state.vault.resolve_subject(&actor, ids).await?;
    let status = if r.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(private(
        status,
        SubjectRef {
            subject_id: r.subject_id,
            created: r.created,
            identifiers_linked: r.linked,
        },
    ))
}

/// Which subject an identifier belongs to (audited).
#[utoipa::path(post, path = "/api/v1/subjects/lookup", tag = "vault", request_body = LookupBody,
    responses(
        (status = 200, description = "The subject", body = LookupAnswer),
        (status = 404, description = "No subject has this identifier", body = ApiError),
        (status = 422, description = "Undeclared purpose", body = ApiError),
    ),
    security(("bearer" = ["vault:read"])))]
async fn lookup(
    caller: Caller,
    State(state): State<AppState>,
    payload: Result<Json<LookupBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    caller.require(Scope::VaultRead)?;
    let b = body(payload)?;
    let id = identifier(b.identifier)?;
    let actor = tutela_vault::Actor::new(caller.actor());
    let subject_id = state.vault.lookup(&actor, &b.purpose, &id).await?;
    Ok(private(StatusCode::OK, LookupAnswer { subject_id }))
}

/// Everything held on a subject, grouped by purpose, with deadlines (audited). Expired
/// records are never returned; restricted records come without their payload.
#[utoipa::path(get, path = "/api/v1/subjects/{subject_id}", tag = "vault",
    params(("subject_id" = String, Path, description = "Opaque subject id"), PurposeQuery),
    responses(
        (status = 200, description = "Everything held", body = SubjectJson),
        (status = 404, description = "No such subject", body = ApiError),
    ),
    security(("bearer" = ["vault:read"])))]
async fn read_subject(
    caller: Caller,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<PurposeQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    caller.require(Scope::VaultRead)?;
    let subject = subject_path(path)?;
    let purpose = purpose_query(query)?;
    let actor = tutela_vault::Actor::new(caller.actor());
    let view = state
        .vault
        .read_subject(&actor, &purpose, &subject, ReadOptions::default())
        .await?;
    Ok(private(StatusCode::OK, subject_json(view)))
}

/// Link more identifiers to a subject.
#[utoipa::path(post, path = "/api/v1/subjects/{subject_id}/identifiers", tag = "vault",
    params(("subject_id" = String, Path, description = "Opaque subject id")),
    request_body = IdentifiersBody,
    responses(
        (status = 200, description = "Linked", body = SubjectRef),
        (status = 409, description = "An identifier belongs to another subject", body = ApiError),
    ),
    security(("bearer" = ["vault:write"])))]
async fn link_identifiers(
    caller: Caller,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    payload: Result<Json<IdentifiersBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    caller.require(Scope::VaultWrite)?;
    let subject = subject_path(path)?;
    let ids = identifiers(body(payload)?.identifiers)?;
    let actor = tutela_vault::Actor::new(caller.actor());
    let r = state.vault.link_identifiers(&actor, &subject, ids).await?;
    Ok(private(
        StatusCode::OK,
        SubjectRef {
            subject_id: r.subject_id,
            created: false,
            identifiers_linked: r.linked,
        },
    ))
}

/// Store records of a subject. Each is checked against the register, encrypted under the
/// subject's key and given its deletion deadline.
#[utoipa::path(post, path = "/api/v1/subjects/{subject_id}/records", tag = "vault",
    params(("subject_id" = String, Path, description = "Opaque subject id")),
    request_body = RecordsBody,
    responses(
        (status = 201, description = "Stored", body = WrittenAnswer),
        (status = 422, description = "undeclared_purpose, undeclared_category, never_store_category or card_number_refused", body = ApiError),
        (status = 413, description = "Body over 1 MiB", body = ApiError),
    ),
    security(("bearer" = ["vault:write"])))]
async fn put_records(
    caller: Caller,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    payload: Result<Json<RecordsBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    caller.require(Scope::VaultWrite)?;
    let subject = subject_path(path)?;
    let b = body(payload)?;
    if b.records.is_empty() || b.records.len() > tutela_vault::MAX_RECORDS_PER_CALL {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            format!("give 1 to {} records", tutela_vault::MAX_RECORDS_PER_CALL),
        ));
    }
    let mut records = Vec::with_capacity(b.records.len());
    for r in b.records {
        records.push(RecordInput {
            purpose: r.purpose,
            category: r.category,
            payload: r.payload,
            source: r.source,
            collected_at: r
                .collected_at
                .as_deref()
                .map(|t| parse_time("collected_at", t))
                .transpose()?,
            legal_hold: r.legal_hold,
        });
    }
    let actor = tutela_vault::Actor::new(caller.actor());
    let written = state.vault.put_records(&actor, &subject, records).await?;
    Ok(private(
        StatusCode::CREATED,
        WrittenAnswer {
            records: written
                .into_iter()
                .map(|w| WrittenJson {
                    id: w.id,
                    purpose: w.purpose,
                    category: w.category,
                    collected_at: rfc3339(w.collected_at),
                    deadline: w.deadline.map(rfc3339),
                    waiting_for: w.waiting_for.map(str::to_string),
                })
                .collect(),
        },
    ))
}

/// One record of a subject (audited).
#[utoipa::path(get, path = "/api/v1/subjects/{subject_id}/records/{record_id}", tag = "vault",
    params(("subject_id" = String, Path, description = "Opaque subject id"),
           ("record_id" = i64, Path, description = "Record id"), PurposeQuery),
    responses(
        (status = 200, description = "The record", body = RecordJson),
        (status = 404, description = "No such record, not one of the purpose given, or past its deadline", body = ApiError),
    ),
    security(("bearer" = ["vault:read"])))]
async fn read_record(
    caller: Caller,
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<PurposeQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    caller.require(Scope::VaultRead)?;
    let (subject, id) = record_path(path)?;
    let purpose = purpose_query(query)?;
    let actor = tutela_vault::Actor::new(caller.actor());
    let view = state
        .vault
        .read_record(&actor, &purpose, &subject, id)
        .await?;
    Ok(private(StatusCode::OK, record_json(view)))
}

/// Change a record's payload (checked again), legal hold or restriction. The deadline does
/// not move. Answers the record's metadata, without payload.
#[utoipa::path(patch, path = "/api/v1/subjects/{subject_id}/records/{record_id}", tag = "vault",
    params(("subject_id" = String, Path, description = "Opaque subject id"),
           ("record_id" = i64, Path, description = "Record id")),
    request_body = RecordPatchBody,
    responses(
        (status = 200, description = "Updated", body = RecordJson),
        (status = 404, description = "No such record", body = ApiError),
        (status = 422, description = "card_number_refused", body = ApiError),
    ),
    security(("bearer" = ["vault:write"])))]
async fn update_record(
    caller: Caller,
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    payload: Result<Json<RecordPatchBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    caller.require(Scope::VaultWrite)?;
    let (subject, id) = record_path(path)?;
    let b = body(payload)?;
    let actor = tutela_vault::Actor::new(caller.actor());
    let view = state
        .vault
        .update_record(
            &actor,
            &subject,
            id,
            RecordUpdate {
                payload: b.payload,
                legal_hold: b.legal_hold,
                restricted: b.restricted,
            },
        )
        .await?;
    Ok(private(StatusCode::OK, record_json(view)))
}

/// Report an anchor event (`contract_ended`, `last_contact`, `request_replied`,
/// `request_closed`): the deadlines it starts or moves are recomputed.
#[utoipa::path(post, path = "/api/v1/subjects/{subject_id}/events", tag = "vault",
    params(("subject_id" = String, Path, description = "Opaque subject id")),
    request_body = EventBody,
    responses(
        (status = 200, description = "Deadlines recomputed", body = EventAnswer),
        (status = 422, description = "The event does not apply to the purpose", body = ApiError),
    ),
    security(("bearer" = ["vault:write"])))]
async fn record_event(
    caller: Caller,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    payload: Result<Json<EventBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    caller.require(Scope::VaultWrite)?;
    let subject = subject_path(path)?;
    let b = body(payload)?;
    let at = b.at.as_deref().map(|t| parse_time("at", t)).transpose()?;
    let actor = tutela_vault::Actor::new(caller.actor());
    let r = state
        .vault
        .record_event(
            &actor,
            &subject,
            AnchorEvent {
                event: b.event,
                purpose: b.purpose,
                at,
            },
        )
        .await?;
    Ok(private(
        StatusCode::OK,
        EventAnswer {
            event: r.event,
            at: rfc3339(r.at),
            purposes: r
                .purposes
                .into_iter()
                .map(|p| EventPurposeJson {
                    purpose: p.purpose,
                    records_updated: p.records,
                    deadlines: p
                        .deadlines
                        .into_iter()
                        .map(|(category, d)| CategoryDeadline {
                            category,
                            deadline: d.map(rfc3339),
                        })
                        .collect(),
                })
                .collect(),
        },
    ))
}

/// Erase a subject for all or some purposes. Records on legal hold or kept under a legal
/// obligation stay until their deadline and are listed as exceptions; once nothing remains,
/// the subject's key is destroyed.
#[utoipa::path(post, path = "/api/v1/subjects/{subject_id}/erasure", tag = "vault",
    params(("subject_id" = String, Path, description = "Opaque subject id")),
    request_body = ErasureBody,
    responses(
        (status = 200, description = "Erased (with declared exceptions)", body = ErasureAnswer),
        (status = 404, description = "No such subject", body = ApiError),
    ),
    security(("bearer" = ["vault:write"])))]
async fn erase(
    caller: Caller,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    payload: Result<Json<ErasureBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    caller.require(Scope::VaultWrite)?;
    let subject = subject_path(path)?;
    let b = body(payload)?;
    let scope = match b.purposes {
        None => ErasureScope::All,
        Some(p) => ErasureScope::Purposes(p),
    };
    let actor = tutela_vault::Actor::new(caller.actor());
    let r = state.vault.erase(&actor, &subject, scope).await?;
    Ok(private(
        StatusCode::OK,
        ErasureAnswer {
            subject_id: r.subject_id,
            erased: r.erased,
            kept: r
                .kept
                .into_iter()
                .map(|k| KeptJson {
                    record_id: k.record_id,
                    purpose: k.purpose,
                    category: k.category,
                    deadline: k.deadline.map(rfc3339),
                    reason: k.reason.as_str().to_string(),
                    law: match k.reason {
                        KeepReason::LegalObligation { law } => law,
                        KeepReason::LegalHold => None,
                    },
                })
                .collect(),
            subject_shredded: r.subject_shredded,
        },
    ))
}

// ---------------------------------------------------------------------------------------------
// OpenAPI

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tutela API",
        description = "Tutela's API. Vault and rights routes need `Authorization: Bearer tutela_…` with the scope shown (create tokens with `tutela tokens create`). Errors are JSON `{code, message}`."
    ),
    paths(
        create_subject, lookup, read_subject, link_identifiers, put_records, read_record,
        update_record, record_event, erase,
        crate::rights::api_file, crate::rights::api_get, crate::rights::api_due,
        crate::rights::api_event, crate::rights::api_run_steps
    ),
    components(schemas(ApiError, ErrorCode, crate::rights::ApiRequest, crate::rights::ApiVerification, crate::rights::ApiIdentifier, crate::rights::ApiAfterDeath, crate::rights::ApiEvent)),
    modifiers(&BearerAuth),
    tags((name = "vault", description = "The personal-data vault: subjects, records, anchor events, erasure"))
)]
struct ApiDoc;

/// The OpenAPI document of the API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The API's OpenAPI document.
async fn openapi_json() -> Response {
    match openapi().to_json() {
        Ok(json) => (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            json,
        )
            .into_response(),
        Err(e) => ApiError::internal("openapi", e).into_response(),
    }
}
