//! Consent routes: the banner (`/consent.js`, `/consent.css`, `/api/v1/consent/config`), records
//! (`POST /api/v1/consent`), receipts (`GET /api/v1/consent/{id}`) and, with a `consent:read`
//! token, the proof export and the daily figures the console charts.
//!
//! The public POST is bounded: a 16 KiB body, a per-address rate limit, a bounded write queue
//! (503 with Retry-After when full) and, for browsers, an origin check (same origin, or the
//! configured allowed origins; CORS headers only for those).

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Digest;
use tutela_domain::Register;
use tutela_domain::consent::{
    self, BannerConfig, Choice, ConsentModel, RecordView, Source, Submission, is_uuid,
    normalise_origin,
};
use tutela_domain::register::CookieCategory;
use tutela_domain::scope::Scope;
use tutela_store::{AppendError, ConsentCategory, ConsentRecord, ConsentWriter, Store};

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorCode};

/// Largest accepted consent body.
pub const MAX_CONSENT_BODY: usize = 16 * 1024;
/// Most records a receipt shows (the newest).
const MAX_RECEIPT_RECORDS: i64 = 1_000;
/// Records fetched per page of an export.
const EXPORT_PAGE: i64 = 1_000;

const CONSENT_JS: &str = include_str!("../assets/consent.js");
const CONSENT_CSS: &str = include_str!("../assets/consent.css");

/// Settings of the consent endpoints (from `tutela.toml` `[consent]`, environment or flags).
#[derive(Clone, Debug)]
pub struct ConsentOptions {
    /// Origins (`https://www.example.com`) whose pages may post choices and read receipts, besides
    /// Tutela's own origin. `*` allows every origin.
    pub allowed_origins: Vec<String>,
    /// Records accepted per minute from one client address (0: no limit).
    pub rate_limit_per_minute: u32,
    /// Records waiting to be written before the endpoint answers 503.
    pub queue: usize,
}

impl Default for ConsentOptions {
    fn default() -> Self {
        ConsentOptions {
            allowed_origins: Vec::new(),
            rate_limit_per_minute: 60,
            queue: 8_192,
        }
    }
}

/// The consent part of [`AppState`].
#[derive(Clone)]
pub struct ConsentState {
    model: Arc<ConsentModel>,
    writer: ConsentWriter,
    origins: Arc<Vec<String>>,
    any_origin: bool,
    limiter: Arc<RateLimiter>,
    /// Whether analytics needs consent, and the cache of answers per consent id.
    pub(crate) gate: Arc<crate::consent_gate::AnalyticsGate>,
}

impl ConsentState {
    /// Starts the record writer on the current Tokio runtime.
    pub fn new(register: &Register, store: Store, options: &ConsentOptions) -> Self {
        let origins: Vec<String> = options
            .allowed_origins
            .iter()
            .filter(|o| o.as_str() != "*")
            .filter_map(|o| normalise_origin(o))
            .collect();
        ConsentState {
            model: Arc::new(ConsentModel::new(register)),
            writer: ConsentWriter::spawn(store, options.queue),
            any_origin: options.allowed_origins.iter().any(|o| o == "*"),
            origins: Arc::new(origins),
            limiter: Arc::new(RateLimiter::new(options.rate_limit_per_minute)),
            gate: Arc::new(crate::consent_gate::AnalyticsGate::new(false)),
        }
    }

    /// Makes the analytics collector honour consent when the register gives the analytics
    /// purpose (`analytics_purpose`, the one the collector stores under) the consent basis.
    pub fn with_analytics_purpose(
        mut self,
        register: &Register,
        analytics_purpose: Option<&str>,
    ) -> Self {
        let required = crate::consent_gate::purpose_needs_consent(register, analytics_purpose);
        self.gate = Arc::new(crate::consent_gate::AnalyticsGate::new(required));
        self
    }

    /// Whether the analytics collector stores hits only with consent.
    pub fn analytics_needs_consent(&self) -> bool {
        self.gate.required()
    }

    /// Whether a browser request from `origin` may use the endpoints. Requests without an Origin
    /// header (servers, curl) and same-origin requests always may.
    fn origin_allowed(&self, headers: &HeaderMap) -> Result<Option<HeaderValue>, ApiError> {
        let Some(origin) = headers.get(header::ORIGIN) else {
            return Ok(None);
        };
        let text = origin.to_str().unwrap_or("");
        let normal = normalise_origin(text);
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        let same = match (&normal, host) {
            (Some(o), Some(h)) => o
                .split_once("://")
                .is_some_and(|(_, oh)| oh.eq_ignore_ascii_case(h)),
            _ => false,
        };
        let listed = normal.as_ref().is_some_and(|o| self.origins.contains(o));
        if same || listed || self.any_origin {
            Ok(Some(origin.clone()))
        } else {
            Err(ApiError::new(
                ErrorCode::OriginNotAllowed,
                "this origin may not use the consent endpoint: add it to Tutela's allowed \
                 consent origins (`[consent] allowed_origins` in tutela.toml)",
            ))
        }
    }
}

/// A token bucket per client address, kept in memory only (addresses are never stored or logged).
struct RateLimiter {
    per_minute: u32,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl RateLimiter {
    fn new(per_minute: u32) -> Self {
        RateLimiter {
            per_minute,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn allow(&self, ip: IpAddr) -> bool {
        if self.per_minute == 0 {
            return true;
        }
        let capacity = f64::from(self.per_minute);
        let per_sec = capacity / 60.0;
        let now = Instant::now();
        let mut map = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > 100_000 {
            // Forget addresses whose bucket has refilled: they lose nothing by it.
            map.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * per_sec < capacity
            });
        }
        let (tokens, at) = map.entry(ip).or_insert((capacity, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * per_sec).min(capacity);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The client's address when the server knows it (`into_make_service_with_connect_info`); used
/// only for the in-memory rate limit.
struct ClientIp(Option<IpAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/consent.js", get(consent_js))
        .route("/consent.css", get(consent_css))
        .route("/api/v1/consent/config", get(config_json))
        .route(
            "/api/v1/consent",
            axum::routing::post(post_consent)
                .options(preflight)
                .layer(DefaultBodyLimit::max(MAX_CONSENT_BODY)),
        )
        .route("/api/v1/consent/export", get(export))
        .route("/api/v1/consent/stats", get(stats))
        .route("/api/v1/consent/{id}", get(receipt).options(preflight))
}

/// A body and its strong validator; answers 304 when the client has it.
fn cached(headers: &HeaderMap, content_type: &'static str, body: String) -> Response {
    let etag = format!(
        "\"{}\"",
        &hex::encode(sha2::Sha256::digest(body.as_bytes()))[..32]
    );
    let hv = |s: &str| HeaderValue::from_str(s).unwrap_or(HeaderValue::from_static("\"\""));
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let common = [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (header::ETAG, hv(&etag)),
        // Short: a new register revision must reach banners quickly.
        (
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=300, must-revalidate"),
        ),
        (
            header::HeaderName::from_static("cross-origin-resource-policy"),
            HeaderValue::from_static("cross-origin"),
        ),
    ];
    if fresh {
        (StatusCode::NOT_MODIFIED, common).into_response()
    } else {
        (common, body).into_response()
    }
}

fn banner_config(state: &AppState) -> BannerConfig {
    BannerConfig::new(&state.register.register, jiff::Timestamp::now())
}

async fn consent_js(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let config = serde_json::to_string(&banner_config(&state)).expect("config serialises");
    // JSON is valid JavaScript; `<` is escaped so that the file can also be inlined safely.
    let config = config.replace('<', "\\u003c");
    let body = CONSENT_JS.replace("__TUTELA_CONSENT_CONFIG__", &config);
    cached(&headers, "text/javascript; charset=utf-8", body)
}

async fn consent_css(headers: HeaderMap) -> Response {
    cached(&headers, "text/css; charset=utf-8", CONSENT_CSS.to_string())
}

async fn config_json(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let body = serde_json::to_string(&banner_config(&state)).expect("config serialises");
    let mut res = cached(&headers, "application/json", body);
    // Public facts from the register: any page may read them.
    res.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    res
}

fn with_cors(mut res: Response, origin: Option<HeaderValue>) -> Response {
    if let Some(o) = origin {
        let h = res.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
        h.append(header::VARY, HeaderValue::from_static("Origin"));
    }
    res
}

/// CORS preflight for pages that post JSON with `Content-Type: application/json`.
async fn preflight(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match state.consent.origin_allowed(&headers) {
        Ok(origin) => {
            let res = (
                StatusCode::NO_CONTENT,
                [
                    (header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST"),
                    (
                        header::ACCESS_CONTROL_ALLOW_HEADERS,
                        "content-type, sec-gpc",
                    ),
                    (header::ACCESS_CONTROL_MAX_AGE, "600"),
                ],
            )
                .into_response();
            with_cors(res, origin)
        }
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
struct PostQuery {
    /// Forces the payload format: `tutela`, `vanilla-cookieconsent` or `klaro`.
    source: Option<String>,
}

fn choices_json(choices: &BTreeMap<CookieCategory, Choice>) -> Value {
    choices
        .iter()
        .map(|(c, ch)| {
            (
                c.as_str().to_string(),
                json!({"granted": ch.granted, "services": ch.services}),
            )
        })
        .collect::<serde_json::Map<String, Value>>()
        .into()
}

/// `POST /api/v1/consent`: appends a consent record and answers with its ids and the final choice.
async fn post_consent(
    State(state): State<AppState>,
    headers: HeaderMap,
    ClientIp(ip): ClientIp,
    Query(query): Query<PostQuery>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let origin = match state.consent.origin_allowed(&headers) {
        Ok(o) => o,
        Err(e) => return e.into_response(),
    };
    let result = record(&state, &headers, ip, query, body).await;
    let res = match result {
        Ok((status, body)) => (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response(),
        Err(e) => {
            let retry = e.code == ErrorCode::Unavailable || e.code == ErrorCode::TooManyRequests;
            let mut res = e.into_response();
            if retry {
                res.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            res
        }
    };
    with_cors(res, origin)
}

/// The answer to a recorded choice (serialised straight from the submission, without building a
/// JSON tree first: this is the hot path of the endpoint).
#[derive(serde::Serialize)]
struct Created<'a> {
    consent_id: &'a str,
    record_id: &'a str,
    recorded_at: String,
    revision: &'a str,
    method: &'static str,
    source: &'static str,
    gpc: bool,
    /// Category name → `{"granted", "services"}`, as [`choices_json`] writes it.
    choices: BTreeMap<&'a str, &'a Choice>,
    receipt: String,
    delete_after: String,
}

async fn record(
    state: &AppState,
    headers: &HeaderMap,
    ip: Option<IpAddr>,
    query: PostQuery,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Vec<u8>), ApiError> {
    if let Some(ip) = ip
        && !state.consent.limiter.allow(ip)
    {
        metrics::counter!("tutela_consent_refused_total", "reason" => "rate_limit").increment(1);
        return Err(ApiError::new(
            ErrorCode::TooManyRequests,
            "too many consent records from this address; try again in a minute",
        ));
    }
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("a consent record is at most {MAX_CONSENT_BODY} bytes"),
            )
        } else {
            ApiError::new(ErrorCode::BadRequest, "could not read the request body")
        }
    })?;
    let value: Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            ErrorCode::BadRequest,
            format!("the body is not valid JSON: {e}"),
        )
    })?;
    let source = match query.source.as_deref() {
        None => None,
        Some(s) => Some(Source::parse(s).ok_or_else(|| {
            ApiError::new(
                ErrorCode::BadRequest,
                "`source` must be tutela, vanilla-cookieconsent or klaro",
            )
        })?),
    };
    let reg = &state.register.register;
    let mut sub: Submission =
        consent::parse_submission_with(reg, &state.consent.model, &value, source)
            .map_err(|e| ApiError::new(ErrorCode::BadRequest, e.to_string()))?;
    if headers
        .get("sec-gpc")
        .is_some_and(|v| v.as_bytes().trim_ascii() == b"1")
    {
        sub.gpc = true;
    }
    sub.apply_gpc_with(&state.consent.model);
    // The browser's Origin header names the site better than anything in the body.
    if let Some(o) = headers
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .and_then(normalise_origin)
    {
        sub.site = Some(o);
    }

    let Some((purpose, rule)) = consent::record_purpose(reg) else {
        return Err(ApiError::new(
            ErrorCode::NotDeclared,
            format!(
                "the register declares no purpose for consent records (category `{}`), so none \
                 can be stored",
                consent::CONSENT_RECORD_CATEGORY
            ),
        ));
    };
    // Whole seconds: what is stored is what is answered.
    let now = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second())
        .map_err(|e| ApiError::internal("clock", e))?;
    let deadline = tutela_domain::retention::deadline(rule, now)
        .map_err(|e| ApiError::internal("consent deadline", e))?
        .ok_or_else(|| ApiError::internal("consent deadline", "the rule has no date"))?;
    let new_id = || {
        tutela_crypto::random_id::random_uuid()
            .map_err(|e| ApiError::internal("random consent id", e))
    };
    let consent_id = match sub.consent_id.clone() {
        Some(id) => id,
        None => new_id()?,
    };
    let revision = sub.revision.clone().unwrap_or_else(|| {
        reg.latest_revision()
            .map(|r| r.id.clone())
            .unwrap_or_default()
    });
    let get = |c: CookieCategory| sub.choices.get(&c).map(|ch| ch.granted);
    let services: BTreeMap<&str, &BTreeMap<String, bool>> = sub
        .choices
        .iter()
        .map(|(c, ch)| (c.as_str(), &ch.services))
        .collect();
    let rec = ConsentRecord {
        record_id: new_id()?,
        consent_id: consent_id.clone(),
        recorded_at: now.as_second(),
        site: sub.site.clone(),
        revision: revision.clone(),
        register_hash: state.register.hash.clone(),
        method: sub.method.as_str().to_string(),
        source: sub.source.as_str().to_string(),
        gpc: sub.gpc,
        language: sub.language.clone(),
        functional: get(CookieCategory::Functional),
        analytics: get(CookieCategory::Analytics),
        targeting: get(CookieCategory::Targeting),
        services: serde_json::to_string(&services).expect("services serialise"),
        purpose: purpose.id.clone(),
        category: consent::CONSENT_RECORD_CATEGORY.to_string(),
        delete_after: deadline.as_second(),
    };
    let record_id = rec.record_id.clone();
    let analytics = rec.analytics;
    match state.consent.writer.append(rec).await {
        // Committed: the analytics collector sees this answer from the next hit on.
        Ok(()) => state.consent.gate.recorded(&consent_id, analytics),
        Err(AppendError::Full) => {
            metrics::counter!("tutela_consent_refused_total", "reason" => "queue_full")
                .increment(1);
            return Err(ApiError::new(
                ErrorCode::Unavailable,
                "too many consent records at once; nothing was recorded, try again",
            ));
        }
        Err(AppendError::Closed) => {
            return Err(ApiError::new(
                ErrorCode::Unavailable,
                "the server is shutting down; nothing was recorded, try again",
            ));
        }
        Err(AppendError::Failed(e)) => return Err(ApiError::internal("consent record", e)),
    }
    metrics::counter!("tutela_consent_records_total", "method" => sub.method.as_str(), "source" => sub.source.as_str()).increment(1);
    let created = Created {
        consent_id: &consent_id,
        record_id: &record_id,
        recorded_at: now.to_string(),
        revision: &revision,
        method: sub.method.as_str(),
        source: sub.source.as_str(),
        gpc: sub.gpc,
        choices: sub.choices.iter().map(|(c, ch)| (c.as_str(), ch)).collect(),
        receipt: format!("/api/v1/consent/{consent_id}"),
        delete_after: deadline.to_string(),
    };
    let body = serde_json::to_vec(&created).map_err(|e| ApiError::internal("consent answer", e))?;
    Ok((StatusCode::CREATED, body))
}

/// A stored record as the domain shows it.
pub(crate) fn view(r: &ConsentRecord) -> RecordView {
    let services: BTreeMap<String, BTreeMap<String, bool>> =
        serde_json::from_str(&r.services).unwrap_or_default();
    let mut choices = BTreeMap::new();
    for c in ConsentCategory::ALL {
        let granted = match c {
            ConsentCategory::Functional => r.functional,
            ConsentCategory::Analytics => r.analytics,
            ConsentCategory::Targeting => r.targeting,
        };
        if let Some(granted) = granted {
            choices.insert(
                CookieCategory::parse(c.as_str()),
                Choice {
                    granted,
                    services: services.get(c.as_str()).cloned().unwrap_or_default(),
                },
            );
        }
    }
    RecordView {
        record_id: r.record_id.clone(),
        consent_id: r.consent_id.clone(),
        recorded_at: r.recorded_at,
        site: r.site.clone(),
        revision: r.revision.clone(),
        register_hash: r.register_hash.clone(),
        method: r.method.clone(),
        source: r.source.clone(),
        gpc: r.gpc,
        language: r.language.clone(),
        choices,
        delete_after: r.delete_after,
    }
}

/// `GET /api/v1/consent/{id}`: the receipt of a consent id. The id is random and known only to
/// the browser that holds it; the receipt holds no personal data.
async fn receipt(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let origin = state.consent.origin_allowed(&headers).ok().flatten();
    let res = async {
        if !is_uuid(&id) {
            return Err(ApiError::new(
                ErrorCode::BadRequest,
                "a consent id is a UUID such as 3f2c1e9a-8b7d-4c6e-9f01-23456789abcd",
            ));
        }
        let records = state
            .store
            .consent_records(&id.to_ascii_lowercase(), MAX_RECEIPT_RECORDS)
            .await
            .map_err(|e| ApiError::internal("consent receipt", e))?;
        if records.is_empty() {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                "no consent record has this id (records are deleted when their retention period ends)",
            ));
        }
        let views: Vec<RecordView> = records.iter().map(view).collect();
        Ok(consent::receipt(&state.register.register, &views))
    }
    .await;
    let res = match res {
        Ok(v) => ([(header::CACHE_CONTROL, "no-store")], axum::Json(v)).into_response(),
        Err(e) => e.into_response(),
    };
    with_cors(res, origin)
}

#[derive(Deserialize)]
struct PeriodQuery {
    /// First day (UTC), `2026-11-01`, or an RFC 3339 instant.
    from: Option<String>,
    /// Last day included (UTC), `2026-11-30`, or an RFC 3339 instant (excluded).
    to: Option<String>,
    /// `jsonl` (default) or `csv`.
    format: Option<String>,
}

/// Reads a period bound: a date (the whole day counts) or an instant.
pub(crate) fn bound(text: Option<&str>, end: bool, default: i64) -> Result<i64, ApiError> {
    let Some(text) = text else {
        return Ok(default);
    };
    if let Ok(d) = text.parse::<jiff::civil::Date>() {
        let d = if end {
            d.checked_add(jiff::Span::new().days(1))
                .map_err(|_| ApiError::new(ErrorCode::BadRequest, "date out of range"))?
        } else {
            d
        };
        return d
            .to_zoned_datetime(jiff::tz::TimeZone::UTC)
            .map(|z| z.timestamp().as_second())
            .map_err(|_| ApiError::new(ErrorCode::BadRequest, "date out of range"));
    }
    text.parse::<jiff::Timestamp>()
        .map(|t| t.as_second())
        .map_err(|_| {
            ApiError::new(
                ErrorCode::BadRequest,
                format!(
                    "`{}` is neither a date (2026-11-29) nor an RFC 3339 instant",
                    text.chars().take(40).collect::<String>()
                ),
            )
        })
}

fn period(q: &PeriodQuery, default_days: i64) -> Result<(i64, i64), ApiError> {
    let now = jiff::Timestamp::now().as_second();
    let to = bound(q.to.as_deref(), true, now + 1)?;
    let from = bound(q.from.as_deref(), false, to - default_days * 86_400)?;
    if from >= to {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "the period is empty: `from` must come before `to`",
        ));
    }
    Ok((from, to))
}

const CSV_HEADER: &str = "record_id,consent_id,recorded_at,site,revision,register_hash,method,source,gpc,language,functional,analytics,targeting,services,purpose,category,delete_after\n";

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn csv_line(r: &ConsentRecord) -> String {
    let opt = |v: Option<bool>| v.map_or(String::new(), |b| b.to_string());
    let cols = [
        r.record_id.clone(),
        r.consent_id.clone(),
        jiff::Timestamp::from_second(r.recorded_at)
            .map(|t| t.to_string())
            .unwrap_or_default(),
        r.site.clone().unwrap_or_default(),
        r.revision.clone(),
        r.register_hash.clone(),
        r.method.clone(),
        r.source.clone(),
        r.gpc.to_string(),
        r.language.clone().unwrap_or_default(),
        opt(r.functional),
        opt(r.analytics),
        opt(r.targeting),
        r.services.clone(),
        r.purpose.clone(),
        r.category.clone(),
        jiff::Timestamp::from_second(r.delete_after)
            .map(|t| t.to_string())
            .unwrap_or_default(),
    ];
    let mut line = cols
        .iter()
        .map(|c| csv_field(c))
        .collect::<Vec<_>>()
        .join(",");
    line.push('\n');
    line
}

fn jsonl_line(r: &ConsentRecord) -> String {
    let v = view(r);
    let mut line = serde_json::to_string(&json!({
        "record_id": v.record_id,
        "consent_id": v.consent_id,
        "recorded_at": jiff::Timestamp::from_second(v.recorded_at).map(|t| t.to_string()).unwrap_or_default(),
        "site": v.site,
        "revision": v.revision,
        "register_hash": v.register_hash,
        "method": v.method,
        "source": v.source,
        "gpc": v.gpc,
        "language": v.language,
        "choices": choices_json(&v.choices),
        "purpose": r.purpose,
        "category": r.category,
        "delete_after": jiff::Timestamp::from_second(v.delete_after).map(|t| t.to_string()).unwrap_or_default(),
    }))
    .expect("record serialises");
    line.push('\n');
    line
}

/// `GET /api/v1/consent/export?from=…&to=…&format=jsonl|csv` (`consent:read`): every record of a
/// period, streamed page by page (proof of consent for an authority or an audit).
async fn export(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<PeriodQuery>,
) -> Result<Response, ApiError> {
    caller.require(Scope::ConsentRead)?;
    let csv = match q.format.as_deref() {
        None | Some("jsonl") | Some("json") => false,
        Some("csv") => true,
        Some(_) => {
            return Err(ApiError::new(
                ErrorCode::BadRequest,
                "`format` must be jsonl or csv",
            ));
        }
    };
    let (from, to) = period(&q, 30)?;
    tracing::info!(actor = %caller.actor(), from, to, "consent proof exported");
    Ok(export_response(&state, from, to, csv))
}

/// The proof export of records made in `[from, to)` as a streamed download (JSON lines or CSV):
/// the API and the console share it.
pub(crate) fn export_response(state: &AppState, from: i64, to: i64, csv: bool) -> Response {
    let store = state.store.clone();
    // State: (after sequence, header pending, finished).
    let stream = futures_util::stream::unfold((0i64, csv, false), move |(after, header, done)| {
        let store = store.clone();
        async move {
            if done {
                return None;
            }
            if header {
                return Some((
                    Ok::<_, std::io::Error>(Bytes::from(CSV_HEADER)),
                    (after, false, false),
                ));
            }
            match store
                .consent_records_between(from, to, after, EXPORT_PAGE)
                .await
            {
                Ok(page) if page.is_empty() => None,
                Ok(page) => {
                    let last = page.last().map_or(after, |(s, _)| *s);
                    let full = page.len() as i64 == EXPORT_PAGE;
                    let mut chunk = String::new();
                    for (_, r) in &page {
                        chunk.push_str(&if csv { csv_line(r) } else { jsonl_line(r) });
                    }
                    Some((Ok(Bytes::from(chunk)), (last, false, !full)))
                }
                Err(e) => {
                    tracing::error!(error = %e, "consent export failed");
                    Some((
                        Err(std::io::Error::other("consent export failed")),
                        (after, false, true),
                    ))
                }
            }
        }
    });
    let (content_type, ext) = if csv {
        ("text/csv; charset=utf-8", "csv")
    } else {
        ("application/x-ndjson", "jsonl")
    };
    let name = format!(
        "attachment; filename=\"consent-records-{}-{}.{ext}\"",
        jiff::Timestamp::from_second(from)
            .map(|t| t.strftime("%Y%m%d").to_string())
            .unwrap_or_default(),
        jiff::Timestamp::from_second(to - 1)
            .map(|t| t.strftime("%Y%m%d").to_string())
            .unwrap_or_default(),
    );
    (
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (header::CONTENT_DISPOSITION, name),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

/// `GET /api/v1/consent/stats?from=…&to=…` (`consent:read`): per UTC day, how many records, how
/// many with GPC, and per category how many granted and refused, with the grant rate. The console
/// charts this.
async fn stats(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<PeriodQuery>,
) -> Result<Response, ApiError> {
    caller.require(Scope::ConsentRead)?;
    let (from, to) = period(&q, 30)?;
    let days = state
        .store
        .consent_days(from, to)
        .await
        .map_err(|e| ApiError::internal("consent stats", e))?;
    let asked: Vec<&str> = consent::banner_categories(&state.register.register)
        .iter()
        .map(|c| match c {
            CookieCategory::Functional => "functional",
            CookieCategory::Analytics => "analytics",
            CookieCategory::Targeting => "targeting",
            CookieCategory::Unknown(_) => "",
        })
        .collect();
    let days: Vec<Value> = days
        .iter()
        .map(|d| {
            let date = jiff::Timestamp::from_second(d.day * 86_400)
                .map(|t| {
                    t.to_zoned_datetime(jiff::tz::TimeZone::UTC)
                        .date()
                        .to_string()
                })
                .unwrap_or_default();
            let cats: serde_json::Map<String, Value> = ConsentCategory::ALL
                .iter()
                .zip(d.categories)
                .filter(|(c, _)| asked.contains(&c.as_str()))
                .map(|(c, (g, r))| {
                    let rate = if g + r > 0 {
                        Value::from(g as f64 / (g + r) as f64)
                    } else {
                        Value::Null
                    };
                    (
                        c.as_str().to_string(),
                        json!({"granted": g, "refused": r, "rate": rate}),
                    )
                })
                .collect();
            json!({"date": date, "records": d.records, "gpc": d.gpc, "categories": cats})
        })
        .collect();
    Ok(axum::Json(json!({
        "from": jiff::Timestamp::from_second(from).map(|t| t.to_string()).unwrap_or_default(),
        "to": jiff::Timestamp::from_second(to).map(|t| t.to_string()).unwrap_or_default(),
        "categories": asked,
        "days": days,
    }))
    .into_response())
}
