//! Cross-cutting middleware: security headers, request logging and metrics.

use std::collections::HashSet;
use std::sync::{OnceLock, RwLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

/// Largest request body accepted by default (endpoints that need more say so themselves).
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;

/// Pages load only their own stylesheet and images; nothing from elsewhere, no inline code.
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; script-src 'self'; \
                   connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// Sets the security headers every response carries, keeping any a handler set itself.
pub(crate) fn add_security_headers(h: &mut axum::http::HeaderMap) {
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
}

/// The one middleware around every route: [`observe`], then the security headers on the way
/// out. One `from_fn` layer instead of two: each such layer clones the inner service, boxes a
/// `Next` and a future per request (~3 allocations), which showed in the single-hit profile.
pub(crate) async fn edge(req: Request, next: Next) -> Response {
    let mut res = observe(req, next).await;
    add_security_headers(res.headers_mut());
    res
}

/// The method as a metric label: the standard ones, anything else `OTHER` (a client can send
/// any token as a method; the label set stays bounded).
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

/// A route template as a `'static` label: each template of the router is copied once (a fixed,
/// small set), then found by lookup — no allocation per request.
fn route_label(route: &str) -> &'static str {
    static ROUTES: OnceLock<RwLock<HashSet<&'static str>>> = OnceLock::new();
    let routes = ROUTES.get_or_init(Default::default);
    if let Some(r) = routes.read().expect("route labels").get(route) {
        return r;
    }
    let mut w = routes.write().expect("route labels");
    if let Some(r) = w.get(route) {
        return r;
    }
    let r: &'static str = Box::leak(route.to_string().into_boxed_str());
    w.insert(r);
    r
}

/// The status code as a label, from a table made once.
fn status_label(status: StatusCode) -> &'static str {
    static CODES: OnceLock<Box<[String]>> = OnceLock::new();
    let codes = CODES.get_or_init(|| (0..1000u16).map(|c| c.to_string()).collect());
    codes
        .get(usize::from(status.as_u16()))
        .map_or("other", String::as_str)
}

/// Logs one line per request and records metrics. Logged: method, route *template* (never the
/// concrete path or query string, which may carry identifiers), status and duration. Never the
/// client address, user agent, cookies or bodies. The metric labels are `'static` strings: no
/// allocation for them per request.
async fn observe(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = method_label(req.method());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| route_label(p.as_str()));
    let res = next.run(req).await;
    let elapsed = start.elapsed();
    let status = res.status();
    tracing::info!(
        target: "tutela::http",
        method = %method,
        route = %route,
        status = status.as_u16(),
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        "request"
    );
    let labels = [
        ("method", method),
        ("route", route),
        ("status", status_label(status)),
    ];
    metrics::counter!("tutela_http_requests_total", &labels).increment(1);
    metrics::histogram!("tutela_http_request_duration_seconds", &labels[..2])
        .record(elapsed.as_secs_f64());
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_bounded_and_interned() {
        assert_eq!(method_label(&Method::POST), "POST");
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "OTHER");
        let a = route_label("/matomo.php");
        let b = route_label(&String::from("/matomo.php"));
        assert_eq!(a, "/matomo.php");
        assert!(std::ptr::eq(a, b), "one copy per template");
        assert_eq!(status_label(StatusCode::NO_CONTENT), "204");
        assert_eq!(status_label(StatusCode::from_u16(999).unwrap()), "999");
    }

    /// The security headers are added once each, after what the handler set (kept as it is).
    #[test]
    fn security_headers_keep_what_the_handler_set() {
        let mut h = axum::http::HeaderMap::new();
        h.insert(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("SAMEORIGIN"),
        );
        add_security_headers(&mut h);
        add_security_headers(&mut h);
        assert_eq!(h.len(), 6);
        assert_eq!(h[header::X_FRAME_OPTIONS], "SAMEORIGIN");
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(h[header::REFERRER_POLICY], "no-referrer");
        assert_eq!(h[header::CONTENT_SECURITY_POLICY], CSP);
        assert_eq!(h["cross-origin-opener-policy"], "same-origin");
        assert!(
            h["permissions-policy"]
                .to_str()
                .unwrap()
                .contains("camera=()")
        );
    }
}
