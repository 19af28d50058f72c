//! Public routes: the privacy notice, the register, GPC, health and metrics.

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use tutela_domain::notice::{self, NoticeContext};
use tutela_domain::ropa;

use crate::error::{ApiError, ErrorCode};
use crate::{AppState, LoadedRegister};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/privacy", get(privacy_html))
        .route("/privacy.md", get(privacy_markdown))
        .route("/assets/notice.css", get(notice_css))
        .route("/.well-known/gpc.json", get(gpc))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/register", get(register_json))
        .route("/api/v1/register/ropa.csv", get(ropa_csv))
        .route("/api/v1/register/ropa.json", get(ropa_json))
}

#[derive(Deserialize)]
struct LangQuery {
    lang: Option<String>,
}

/// The language to answer in: `?lang=` wins, then `Accept-Language`, then the register's default.
fn language(reg: &LoadedRegister, headers: &HeaderMap, query: &LangQuery) -> String {
    let accept = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok());
    notice::negotiate_language(&reg.register, accept, query.lang.as_deref())
}

/// The notice links to the rights portal when this server runs the rights engine.
fn context<'a>(reg: &LoadedRegister, lang: &'a str, rights_portal: bool) -> NoticeContext<'a> {
    NoticeContext {
        lang,
        last_updated: reg.last_updated,
        base_path: "",
        rights_form: rights_portal.then_some("/rights"),
    }
}

/// Pages vary by the language header, and change only when the register does.
fn page_headers(lang: &str, content_type: &'static str) -> [(header::HeaderName, HeaderValue); 4] {
    [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (header::VARY, HeaderValue::from_static("Accept-Language")),
        (
            header::CONTENT_LANGUAGE,
            HeaderValue::from_str(lang).unwrap_or(HeaderValue::from_static("en")),
        ),
        (
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=300"),
        ),
    ]
}

async fn privacy_html(
    state: State<AppState>,
    headers: HeaderMap,
    query: Query<LangQuery>,
) -> Response {
    privacy(state, headers, query, NoticeFormat::Html)
}

async fn privacy_markdown(
    state: State<AppState>,
    headers: HeaderMap,
    query: Query<LangQuery>,
) -> Response {
    privacy(state, headers, query, NoticeFormat::Markdown)
}

#[derive(Clone, Copy)]
enum NoticeFormat {
    Html,
    Markdown,
}

fn privacy(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<LangQuery>,
    format: NoticeFormat,
) -> Response {
    let reg = &state.register;
    let lang = language(reg, &headers, &query);
    let ctx = context(reg, &lang, state.rights.is_some());
    let (content_type, body) = match format {
        NoticeFormat::Html => (
            "text/html; charset=utf-8",
            notice::render_html(&reg.register, &ctx),
        ),
        NoticeFormat::Markdown => (
            "text/markdown; charset=utf-8",
            notice::render_markdown(&reg.register, &ctx),
        ),
    };
    (page_headers(&lang, content_type), body).into_response()
}

async fn notice_css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        notice::NOTICE_CSS,
    )
        .into_response()
}

/// Global Privacy Control support resource (GPC specification, section "well-known").
async fn gpc(State(state): State<AppState>) -> Response {
    let body = serde_json::json!({
        "gpc": true,
        "lastUpdate": state.register.last_updated.to_string(),
    });
    axum::Json(body).into_response()
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    match state.store.ping().await {
        Ok(()) => Ok("ready\n"),
        Err(err) => {
            tracing::warn!(error = %err, "readiness check failed");
            Err(ApiError::new(
                ErrorCode::Unavailable,
                "the database does not answer",
            ))
        }
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

async fn register_json(State(state): State<AppState>) -> Response {
    let reg = &state.register;
    let body = serde_json::json!({
        "hash": reg.hash,
        "last_updated": reg.last_updated.to_string(),
        "register": reg.register,
    });
    axum::Json(body).into_response()
}

async fn ropa_csv(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<LangQuery>,
) -> Response {
    let reg = &state.register;
    let lang = language(reg, &headers, &query);
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"ropa-{lang}.csv\""),
            ),
        ],
        ropa::ropa_csv(&reg.register, &lang),
    )
        .into_response()
}

async fn ropa_json(State(state): State<AppState>) -> Response {
    axum::Json(ropa::ropa_json(&state.register.register)).into_response()
}
