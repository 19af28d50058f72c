//! Cross-cutting middleware: security headers, request logging and metrics.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

/// Largest request body accepted by default (endpoints that need more say so themselves).
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;

/// Pages load only their own stylesheet and images; nothing from elsewhere, no inline code.
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; script-src 'self'; \
                   connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

pub(crate) async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, name: HeaderName, value: &'static str| {
        h.entry(name).or_insert(HeaderValue::from_static(value));
    };
    set(h, header::CONTENT_SECURITY_POLICY, CSP);
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(
        h,
        HeaderName::from_static("permissions-policy"),
        "camera=(), microphone=(), geolocation=(), interest-cohort=()",
    );
    set(
        h,
        HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    );
    res
}

/// Logs one line per request and records metrics. Logged: method, route *template* (never the
/// concrete path or query string, which may carry identifiers), status and duration. Never the
/// client address, user agent, cookies or bodies.
pub(crate) async fn observe(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let res = next.run(req).await;
    let elapsed = start.elapsed();
    let status = res.status().as_u16();
    tracing::info!(
        target: "tutela::http",
        method = %method,
        route = %route,
        status,
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        "request"
    );
    let labels = [
        ("method", method.as_str().to_string()),
        ("route", route),
        ("status", status.to_string()),
    ];
    metrics::counter!("tutela_http_requests_total", &labels).increment(1);
    metrics::histogram!("tutela_http_request_duration_seconds", &labels[..2])
        .record(elapsed.as_secs_f64());
    res
}
