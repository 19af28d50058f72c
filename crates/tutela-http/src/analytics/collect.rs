//! The Matomo-compatible collector (`/matomo.php`, `/piwik.php`), the tracker script and the
//! opt-out page.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use tutela_analytics::params::{self, RawHit};
use tutela_analytics::{Client, IngestError, Prepared, Reject};
use tutela_domain::scope::Scope;

use crate::AppState;
use crate::error::{ApiError, ErrorCode};

/// The tracker script, written by hand (no build step).
pub const TRACKER_JS: &str = include_str!("../../assets/tracker.js");
/// A transparent 1×1 GIF, Matomo's answer when `send_image` is not 0.
const GIF: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];
/// The opt-out cookie (on Tutela's own origin).
pub const OPTOUT_COOKIE: &str = "tutela_optout";

/// CORS for the collector: the Origin is echoed with credentials, as Matomo does, so that the
/// tracker's cookies on Tutela's origin (the opt-out) travel with the hit.
fn cors(headers: &HeaderMap, res: &mut Response) {
    let h = res.headers_mut();
    // Room for these and the security headers added on the way out: one allocation, no regrowth.
    h.reserve(12);
    if let Some(origin) = headers.get(header::ORIGIN) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        h.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    } else {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
    }
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

pub(crate) async fn preflight(headers: HeaderMap) -> Response {
    let mut res = StatusCode::NO_CONTENT.into_response();
    cors(&headers, &mut res);
    let h = res.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Content-Type"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    res
}

fn success(send_image: bool) -> Response {
    if send_image {
        ([(header::CONTENT_TYPE, "image/gif")], GIF).into_response()
    } else {
        StatusCode::NO_CONTENT.into_response()
    }
}

fn saturated() -> Response {
    let mut res = ApiError::new(
        ErrorCode::Unavailable,
        "the collector is saturated; retry in a second",
    )
    .into_response();
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    res
}

fn ingest_error(e: IngestError) -> Response {
    match e {
        IngestError::Saturated => saturated(),
        IngestError::Closed => {
            ApiError::new(ErrorCode::Unavailable, "the collector is shutting down").into_response()
        }
        IngestError::Store(_) => ApiError::new(
            ErrorCode::Internal,
            "the hits could not be stored; see the server log",
        )
        .into_response(),
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Whether the request carries our opt-out cookie.
pub(crate) fn opted_out(headers: &HeaderMap) -> bool {
    cookies(headers).any(|(k, v)| k == OPTOUT_COOKIE && v == "1")
}

/// The cookies of a request as `(name, value)` pairs.
pub(crate) fn cookies(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
}

fn client_ip(state: &AppState, headers: &HeaderMap, peer: Option<SocketAddr>) -> IpAddr {
    client_ip_from(
        state
            .analytics
            .analytics
            .settings
            .client_ip_header
            .as_deref(),
        headers,
        peer,
    )
}

/// The client's address: the socket peer, or, behind a proxy (`client_ip_header`), the last
/// entry of that header — the one the proxy itself added. Earlier entries come from the client
/// and can say anything; the console reads `X-Forwarded-For` the same way.
fn client_ip_from(header: Option<&str>, headers: &HeaderMap, peer: Option<SocketAddr>) -> IpAddr {
    if let Some(name) = header
        && let Some(ip) = headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .next_back()
            .and_then(|s| s.trim().parse::<IpAddr>().ok())
    {
        return ip;
    }
    peer.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |p| p.ip())
}

/// Checks a `token_auth`: trusted when it is a valid token with the `analytics:track` scope.
async fn trusted(state: &AppState, token: Option<&str>) -> Result<bool, Response> {
    let Some(token) = token else {
        return Ok(false);
    };
    match crate::auth::authenticate(state, token).await {
        Ok(caller) => match caller.require(Scope::AnalyticsTrack) {
            Ok(()) => Ok(true),
            Err(e) => Err(e.into_response()),
        },
        Err(e) => Err(e.into_response()),
    }
}

fn reject(r: Reject) -> Response {
    metrics::counter!("tutela_analytics_hits_total", "outcome" => "invalid").increment(1);
    let code = match r {
        Reject::TokenRequired => ErrorCode::Forbidden,
        _ => ErrorCode::BadRequest,
    };
    ApiError::new(code, r.to_string()).into_response()
}

/// `GET|POST /matomo.php` (and `/piwik.php`): one hit, or a bulk request.
pub(crate) async fn track(State(state): State<AppState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let headers = parts.headers;
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let query = parts.uri.query().unwrap_or("");
    let mut res = if query.len() > params::MAX_REQUEST_BYTES {
        ApiError::new(ErrorCode::BadRequest, "the query string is too long").into_response()
    } else {
        let body = if parts.method == Method::POST {
            match axum::body::to_bytes(body, params::MAX_BULK_BYTES).await {
                Ok(b) => b,
                Err(_) => {
                    let mut r = ApiError::new(
                        ErrorCode::PayloadTooLarge,
                        format!("the body is larger than {} bytes", params::MAX_BULK_BYTES),
                    )
                    .into_response();
                    cors(&headers, &mut r);
                    return r;
                }
            }
        } else {
            Bytes::new()
        };
        handle(&state, &headers, peer, query, &body).await
    };
    cors(&headers, &mut res);
    res
}

async fn handle(
    state: &AppState,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
    query: &str,
    body: &[u8],
) -> Response {
    let analytics = &state.analytics.analytics;
    let ip = client_ip(state, headers, peer);
    let client = Client {
        ip,
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok()),
        dnt: headers.get(header::DNT).is_some_and(|v| v == "1"),
        gpc: headers
            .get(HeaderName::from_static("sec-gpc"))
            .is_some_and(|v| v == "1"),
        opted_out: opted_out(headers),
    };
    let now = jiff::Timestamp::now();

    if params::looks_like_bulk(body) {
        let t0 = std::time::Instant::now();
        let bulk = match params::parse_bulk(body) {
            Ok(b) => b,
            Err(e) => return ApiError::new(ErrorCode::BadRequest, e.to_string()).into_response(),
        };
        let trusted = match trusted(state, bulk.token_auth.as_deref()).await {
            Ok(t) => t,
            Err(r) => return r,
        };
        let gate = &state.consent.gate;
        let mut no_consent = 0usize;
        let mut hits = Vec::with_capacity(bulk.requests.len());
        let mut invalid = Vec::new();
        let mut skipped = 0usize;
        // One client, one moment: what the entries share is worked out once.
        let mut cache = tutela_analytics::PrepareCache::default();
        for (i, entry) in bulk.requests.iter().enumerate() {
            // Each entry is read into a hit only now, and dropped before the next one.
            let Some(raw) = entry.hit() else {
                invalid.push(i);
                continue;
            };
            match analytics
                .prepare_with(&mut cache, &raw, &client, trusted, now)
                .await
            {
                Ok(Prepared::Track(h)) => {
                    if !gate.required()
                        || gate.allows(&state.store, raw.consent_id.as_deref()).await
                    {
                        hits.push(*h);
                    } else {
                        no_consent += 1;
                    }
                }
                Ok(Prepared::Skip(s)) => {
                    skipped += 1;
                    metrics::counter!("tutela_analytics_hits_total", "outcome" => s.as_str())
                        .increment(1);
                }
                Err(_) => invalid.push(i),
            }
        }
        if !invalid.is_empty() {
            metrics::counter!("tutela_analytics_hits_total", "outcome" => "invalid")
                .increment(invalid.len() as u64);
        }
        if no_consent > 0 {
            metrics::counter!("tutela_analytics_hits_total", "outcome" => "no_consent")
                .increment(no_consent as u64);
        }
        let prepared = t0.elapsed();
        let tracked = match analytics.submit(hits).await {
            Ok(n) => n + skipped + no_consent,
            Err(e) => return ingest_error(e),
        };
        tracing::debug!(
            requests = bulk.requests.len(),
            parse_and_minimise_ms = prepared.as_secs_f64() * 1e3,
            queue_and_commit_ms = (t0.elapsed() - prepared).as_secs_f64() * 1e3,
            "bulk request"
        );
        return bulk_answer(tracked, &invalid, no_consent);
    }

    let body = match std::str::from_utf8(body) {
        Ok(b) if b.len() <= params::MAX_REQUEST_BYTES => b,
        _ => {
            return ApiError::new(
                ErrorCode::BadRequest,
                "the body must be a form (application/x-www-form-urlencoded) of at most 16 KiB, or a bulk JSON request",
            )
            .into_response();
        }
    };
    let raw = RawHit::merge_query_and_body(query, body);
    let trusted = match trusted(state, raw.token_auth.as_deref()).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let send_image = raw.send_image;
    let consent_id = raw.consent_id.as_deref();
    match analytics.prepare(&raw, &client, trusted, now).await {
        Err(r) => reject(r),
        Ok(Prepared::Skip(s)) => {
            metrics::counter!("tutela_analytics_hits_total", "outcome" => s.as_str()).increment(1);
            success(send_image)
        }
        Ok(Prepared::Track(_)) if !state.consent.gate.allows(&state.store, consent_id).await => {
            metrics::counter!("tutela_analytics_hits_total", "outcome" => "no_consent")
                .increment(1);
            success(send_image)
        }
        Ok(Prepared::Track(hit)) => match analytics.submit(vec![*hit]).await {
            Ok(_) => success(send_image),
            Err(e) => ingest_error(e),
        },
    }
}

/// The answer to a bulk request, the JSON object Matomo's bulk API gives plus Tutela's counts
/// (members in this order, compact), written without an intermediate JSON tree.
fn bulk_answer(tracked: usize, invalid: &[usize], no_consent: usize) -> Response {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(96 + invalid.len() * 4);
    let _ = write!(out, "{{\"invalid\":{},\"invalid_indices\":[", invalid.len());
    for (k, i) in invalid.iter().enumerate() {
        if k > 0 {
            out.push(',');
        }
        let _ = write!(out, "{i}");
    }
    let _ = write!(
        out,
        "],\"no_consent\":{no_consent},\"status\":\"success\",\"tracked\":{tracked}}}"
    );
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        out,
    )
        .into_response()
}

/// `/matomo.js`, `/piwik.js`, `/tutela.js`.
/// When the analytics purpose rests on consent, the script starts in Matomo's `requireConsent`
/// mode and waits for the consent id of a recorded grant (see [`crate::consent_gate`]).
pub(crate) async fn tracker_js(State(state): State<AppState>) -> Response {
    static CONSENT_MODE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let body: &'static str = if state.consent.gate.required() {
        CONSENT_MODE.get_or_init(|| {
            TRACKER_JS.replace("/*__TUTELA_CONSENT_MODE__*/false", "/*consent mode*/true")
        })
    } else {
        TRACKER_JS
    };
    (
        [
            (
                header::CONTENT_TYPE,
                "application/javascript; charset=utf-8",
            ),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

#[derive(Deserialize)]
pub(crate) struct LangQuery {
    lang: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct OptOutForm {
    action: String,
}

/// Escapes text for HTML.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn french(headers: &HeaderMap, q: &LangQuery) -> bool {
    match q.lang.as_deref() {
        Some(l) => l.starts_with("fr"),
        None => header_str(headers, "accept-language")
            .is_some_and(|l| l.trim_start().to_ascii_lowercase().starts_with("fr")),
    }
}

/// `GET /optout`: the visitor's status, their tracker id (to prove it in a rights request) and
/// the button.
pub(crate) async fn optout_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<LangQuery>,
) -> Response {
    let fr = french(&headers, &q);
    let out = opted_out(&headers);
    let ids: Vec<String> = cookies(&headers)
        .filter(|(k, _)| k.starts_with("_pk_id."))
        .filter_map(|(_, v)| v.get(..16))
        .filter(|v| tutela_analytics::pseudonym::is_visitor_id(v))
        .map(str::to_string)
        .collect();
    let t = |en: &'static str, fr_text: &'static str| if fr { fr_text } else { en };
    let lang = if fr { "fr" } else { "en" };
    let status = if out {
        t(
            "You are opted out: this browser's visits are not recorded.",
            "Vous êtes exclu(e) : les visites de ce navigateur ne sont pas enregistrées.",
        )
        .to_string()
    } else {
        what_is_kept(&state, lang)
    };
    let (action, label) = if out {
        (
            "optin",
            t("Count my visits again", "Compter à nouveau mes visites"),
        )
    } else {
        (
            "optout",
            t("Do not count my visits", "Ne pas compter mes visites"),
        )
    };
    let id_block = if ids.is_empty() {
        String::new()
    } else {
        format!(
            "<p>{}</p><p><code id=\"visitor-id\">{}</code></p>",
            t(
                "Your visitor identifier (give it with a request to access or erase your statistics data):",
                "Votre identifiant de visiteur (à joindre à une demande d'accès ou d'effacement de vos données statistiques) :",
            ),
            esc(&ids.join(", "))
        )
    };
    let html = format!(
        "<!doctype html><html lang=\"{lang}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><link rel=\"stylesheet\" href=\"/assets/dashboard.css\"></head>\
         <body class=\"optout\"><main><h1>{title}</h1><p id=\"status\">{status}</p>{id_block}\
         <form method=\"post\" action=\"/optout?lang={lang}\"><input type=\"hidden\" name=\"action\" value=\"{action}\">\
         <button type=\"submit\" id=\"toggle\">{label}</button></form>\
         <p class=\"note\">{note}</p><p><a href=\"/privacy?lang={lang}\">{privacy}</a></p></main></body></html>",
        title = t("Audience statistics", "Statistiques d'audience"),
        status = esc(&status),
        note = optout_note(&state.analytics.analytics.settings, fr),
        privacy = t("Privacy notice", "Politique de confidentialité"),
    );
    let mut res = Html(html).into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// What is kept of a visit, for how long, and whether it is shared: built from the register's
/// analytics purpose (its declared categories, their retention, its recipients) — never a
/// fixed text that could drift from what the collector does.
fn what_is_kept(state: &AppState, lang: &str) -> String {
    let fr = lang == "fr";
    let register = &state.register.register;
    let Some(policy) = state.analytics.analytics.policy.as_ref() else {
        return if fr {
            "Les visites ne sont pas comptées : le registre ne déclare aucune finalité de statistiques d'audience.".into()
        } else {
            "Visits are not counted: the register declares no audience statistics purpose.".into()
        };
    };
    let Some(purpose) = register.purpose(&policy.purpose_id) else {
        return String::new();
    };
    let fields: Vec<&str> = purpose
        .categories
        .iter()
        .map(|c| {
            register
                .category(c)
                .map_or(c.as_str(), |c| c.label.get(lang))
        })
        .collect();
    let fields = fields.join(if fr { " ; " } else { "; " });
    let retention = tutela_domain::notice::period_text(&policy.retention, lang);
    let shared = purpose.recipients.is_empty();
    match (fr, shared) {
        (false, true) => format!(
            "Your visits are counted under a pseudonym (not anonymously). Only this is kept, for {retention}, and never shared: {fields}."
        ),
        (false, false) => format!(
            "Your visits are counted under a pseudonym (not anonymously). Only this is kept, for {retention} (the privacy notice lists who receives it): {fields}."
        ),
        (true, true) => format!(
            "Vos visites sont comptées sous un pseudonyme (et non de façon anonyme). Seules ces données sont conservées, pendant {retention}, et jamais partagées : {fields}."
        ),
        (true, false) => format!(
            "Vos visites sont comptées sous un pseudonyme (et non de façon anonyme). Seules ces données sont conservées, pendant {retention} (la politique de confidentialité indique qui les reçoit) : {fields}."
        ),
    }
}

/// The opt-out cookie's lifetime and the browser signals actually honoured (`honour_dnt`,
/// `honour_gpc`).
fn optout_note(settings: &tutela_analytics::AnalyticsSettings, fr: bool) -> &'static str {
    match (settings.honour_dnt, settings.honour_gpc, fr) {
        (true, true, false) => {
            "This choice is kept in a cookie on this browser for 13 months. Do Not Track and Global Privacy Control are honoured."
        }
        (true, true, true) => {
            "Ce choix est conservé 13 mois dans un cookie de ce navigateur. Do Not Track et Global Privacy Control sont respectés."
        }
        (true, false, false) => {
            "This choice is kept in a cookie on this browser for 13 months. Do Not Track is honoured; Global Privacy Control is not."
        }
        (true, false, true) => {
            "Ce choix est conservé 13 mois dans un cookie de ce navigateur. Do Not Track est respecté ; Global Privacy Control ne l'est pas."
        }
        (false, true, false) => {
            "This choice is kept in a cookie on this browser for 13 months. Global Privacy Control is honoured; Do Not Track is not."
        }
        (false, true, true) => {
            "Ce choix est conservé 13 mois dans un cookie de ce navigateur. Global Privacy Control est respecté ; Do Not Track ne l'est pas."
        }
        (false, false, false) => {
            "This choice is kept in a cookie on this browser for 13 months. Do Not Track and Global Privacy Control are not taken into account: use the button above."
        }
        (false, false, true) => {
            "Ce choix est conservé 13 mois dans un cookie de ce navigateur. Do Not Track et Global Privacy Control ne sont pas pris en compte : utilisez le bouton ci-dessus."
        }
    }
}

/// `POST /optout`: sets or clears the opt-out cookie, then shows the page again.
pub(crate) async fn optout_post(
    headers: HeaderMap,
    Query(q): Query<LangQuery>,
    axum::Form(form): axum::Form<OptOutForm>,
) -> Response {
    // A cross-site form must not opt someone back in (or out).
    if let (Some(origin), Some(host)) =
        (header_str(&headers, "origin"), header_str(&headers, "host"))
        && tutela_analytics::url::host(origin).as_deref()
            != Some(host.split(':').next().unwrap_or(host))
    {
        return ApiError::new(ErrorCode::Forbidden, "cross-site request refused").into_response();
    }
    let secure = header_str(&headers, "x-forwarded-proto") == Some("https");
    let attrs = format!(
        "Path=/; HttpOnly; SameSite=Lax{}",
        if secure { "; Secure" } else { "" }
    );
    let cookie = match form.action.as_str() {
        "optout" => format!("{OPTOUT_COOKIE}=1; Max-Age=34128000; {attrs}"),
        "optin" => format!("{OPTOUT_COOKIE}=; Max-Age=0; {attrs}"),
        _ => {
            return ApiError::new(ErrorCode::BadRequest, "action must be optout or optin")
                .into_response();
        }
    };
    let lang = if french(&headers, &q) { "fr" } else { "en" };
    let mut res = (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, format!("/optout?lang={lang}"))],
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behind_a_proxy_the_client_address_is_the_entry_the_proxy_added() {
        let peer: Option<SocketAddr> = Some("10.0.0.2:4000".parse().unwrap());
        let mut h = HeaderMap::new();
        // No header configured: the socket peer, whatever the request says.
        h.insert("x-forwarded-for", "198.51.100.7".parse().unwrap());
        assert_eq!(
            client_ip_from(None, &h, peer),
            "10.0.0.2".parse::<IpAddr>().unwrap()
        );
        // A client-supplied entry, then the one the proxy appended.
        h.insert("x-forwarded-for", "1.2.3.4, 203.0.113.9".parse().unwrap());
        let ip = client_ip_from(Some("x-forwarded-for"), &h, peer);
        assert_eq!(ip, "203.0.113.9".parse::<IpAddr>().unwrap());
        // A second header line from the proxy comes last.
        h.append("x-forwarded-for", "2001:db8::1".parse().unwrap());
        let ip = client_ip_from(Some("x-forwarded-for"), &h, peer);
        assert_eq!(ip, "2001:db8::1".parse::<IpAddr>().unwrap());
        // Garbage falls back to the peer.
        h.insert("x-real-ip", "not an address".parse().unwrap());
        let ip = client_ip_from(Some("x-real-ip"), &h, peer);
        assert_eq!(ip, "10.0.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(
            client_ip_from(Some("x-real-ip"), &h, None),
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        );
    }
}
