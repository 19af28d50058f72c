//! The analytics dashboard: server-rendered HTML with SVG charts, no script, no inline style.
//!
//! Operators signed in to the console (`/console`) whose role holds `ViewAnalytics` (analyst and
//! DPO) see it directly, inside the console's layout (its header and navigation, which links it);
//! other console roles get the console's 403 page. It can also be reached with an API token holding `analytics:read`:
//! the token is posted once to `/analytics/login` (never put in a URL), and the browser gets a
//! short-lived `HttpOnly`, `SameSite=Strict` cookie holding a random reference to a server-side
//! session. Every page checks that the token behind the session is still valid.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use tutela_analytics::report::{Granularity, Point, Report, Row};
use tutela_domain::scope::Scope;

use super::api::{RangeQuery, range, report_error};
use super::collect::{cookies, esc};
use crate::AppState;
use crate::console::Permission;
use crate::error::{ApiError, ErrorCode};

/// The dashboard session cookie.
pub const SESSION_COOKIE: &str = "tutela_dash";
const SESSION_SECS: i64 = 30 * 60;
const MAX_SESSIONS: usize = 1000;
pub const DASHBOARD_CSS: &str = include_str!("../../assets/dashboard.css");

struct Session {
    token_id: String,
    expires_at: i64,
}

/// Dashboard sessions (in memory: a restart logs everyone out).
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    fn create(&self, token_id: String, now: i64) -> Option<String> {
        let mut b = [0u8; 32];
        getrandom::fill(&mut b).ok()?;
        let id: String = b.iter().map(|x| format!("{x:02x}")).collect();
        let mut map = self.map.lock().expect("sessions lock");
        map.retain(|_, s| s.expires_at > now);
        if map.len() >= MAX_SESSIONS {
            return None;
        }
        map.insert(
            id.clone(),
            Session {
                token_id,
                expires_at: now + SESSION_SECS,
            },
        );
        Some(id)
    }

    fn token_of(&self, id: &str, now: i64) -> Option<String> {
        let map = self.map.lock().expect("sessions lock");
        map.get(id)
            .filter(|s| s.expires_at > now)
            .map(|s| s.token_id.clone())
    }

    fn remove(&self, id: &str) {
        self.map.lock().expect("sessions lock").remove(id);
    }
}

fn session_id(headers: &HeaderMap) -> Option<&str> {
    cookies(headers)
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v)
}

fn secure(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .is_some_and(|v| v.as_bytes() == b"https")
}

/// Whether the request may see the dashboard: a console operator allowed to view analytics, or a
/// live token session.
async fn allowed(state: &AppState, headers: &HeaderMap) -> bool {
    if crate::console::signed_in_role(state, headers)
        .await
        .is_some_and(|role| role.can(Permission::ViewAnalytics))
    {
        return true;
    }
    logged_in(state, headers).await.is_some()
}

/// The session's token, if the session is live and the token still valid with `analytics:read`.
async fn logged_in(state: &AppState, headers: &HeaderMap) -> Option<String> {
    let now = jiff::Timestamp::now().as_second();
    let token_id = state
        .analytics
        .sessions
        .token_of(session_id(headers)?, now)?;
    let token = state.store.api_token(&token_id).await.ok()??;
    let scopes: Vec<Scope> = token.scopes.iter().filter_map(|s| s.parse().ok()).collect();
    (token.is_active(now) && scopes.iter().any(|s| s.grants(Scope::AnalyticsRead)))
        .then_some(token_id)
}

struct L {
    fr: bool,
}

impl L {
    fn t<'a>(&self, en: &'a str, fr: &'a str) -> &'a str {
        if self.fr { fr } else { en }
    }
}

fn lang(headers: &HeaderMap, q: Option<&str>) -> L {
    let fr = match q {
        Some(l) => l.starts_with("fr"),
        None => headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|l| l.trim_start().to_ascii_lowercase().starts_with("fr")),
    };
    L { fr }
}

fn page(l: &L, title: &str, body: &str) -> Response {
    let mut res = Html(format!(
        "<!doctype html><html lang=\"{}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · Tutela</title><link rel=\"stylesheet\" href=\"/assets/dashboard.css\"></head>\
         <body>{body}</body></html>",
        if l.fr { "fr" } else { "en" },
        esc(title)
    ))
    .into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

#[derive(Deserialize, Default)]
pub(crate) struct DashQuery {
    lang: Option<String>,
    #[serde(flatten)]
    range: RangeQuery,
}

fn login_page(l: &L, error: Option<&str>) -> Response {
    let err = error
        .map(|e| format!("<p class=\"error\" id=\"error\">{}</p>", esc(e)))
        .unwrap_or_default();
    let body = format!(
        "<main class=\"login\"><h1>{}</h1>{err}<form method=\"post\" action=\"/analytics/login\">\
         <label for=\"token\">{}</label><input type=\"password\" id=\"token\" name=\"token\" autocomplete=\"off\" required>\
         <button type=\"submit\">{}</button></form><p class=\"note\">{}</p></main>",
        l.t("Audience statistics", "Statistiques d'audience"),
        l.t(
            "API token (scope analytics:read)",
            "Jeton d'API (portée analytics:read)"
        ),
        l.t("Open the dashboard", "Ouvrir le tableau de bord"),
        l.t(
            "Create one with: tutela tokens create --name dashboard --scope analytics:read",
            "Créez-en un avec : tutela tokens create --name dashboard --scope analytics:read"
        ),
    );
    page(l, l.t("Sign in", "Connexion"), &body)
}

/// `GET /analytics`: the sign-in form, or the first site's dashboard once signed in.
pub(crate) async fn index(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<DashQuery>,
) -> Response {
    let l = lang(&headers, q.lang.as_deref());
    // Console operators go on to the site page, which shows the console's 403 page to a role
    // without analytics.
    let console = crate::console::signed_in_role(&state, &headers)
        .await
        .is_some();
    if (console || allowed(&state, &headers).await)
        && let Some(site) = state.analytics.analytics.sites().first()
    {
        return (
            StatusCode::SEE_OTHER,
            [(header::LOCATION, format!("/analytics/sites/{}", site.id))],
        )
            .into_response();
    }
    login_page(&l, None)
}

#[derive(Deserialize)]
pub(crate) struct LoginForm {
    token: String,
}

/// `POST /analytics/login`: checks the token once and opens a session.
pub(crate) async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<LoginForm>,
) -> Response {
    let l = lang(&headers, None);
    let caller = match crate::auth::authenticate(&state, form.token.trim()).await {
        Ok(c) => c,
        Err(_) => {
            let mut r = login_page(
                &l,
                Some(l.t("This token is not valid.", "Ce jeton n'est pas valide.")),
            );
            *r.status_mut() = StatusCode::UNAUTHORIZED;
            return r;
        }
    };
    if caller.require(Scope::AnalyticsRead).is_err() {
        let mut r = login_page(
            &l,
            Some(l.t(
                "This token lacks the analytics:read scope.",
                "Ce jeton n'a pas la portée analytics:read.",
            )),
        );
        *r.status_mut() = StatusCode::FORBIDDEN;
        return r;
    }
    let now = jiff::Timestamp::now().as_second();
    let Some(id) = state.analytics.sessions.create(caller.token_id, now) else {
        return ApiError::new(ErrorCode::Unavailable, "too many open dashboard sessions")
            .into_response();
    };
    let cookie = format!(
        "{SESSION_COOKIE}={id}; Max-Age={SESSION_SECS}; Path=/analytics; HttpOnly; SameSite=Strict{}",
        if secure(&headers) { "; Secure" } else { "" }
    );
    let mut res = (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, "/analytics".to_string())],
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

/// `POST /analytics/logout`
pub(crate) async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(id) = session_id(&headers) {
        state.analytics.sessions.remove(id);
    }
    let mut res = (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, "/analytics".to_string())],
    )
        .into_response();
    res.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "tutela_dash=; Max-Age=0; Path=/analytics; HttpOnly; SameSite=Strict",
        ),
    );
    res
}

/// `GET /analytics/sites/{id}`: the dashboard of one site.
pub(crate) async fn site(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(site): Path<i64>,
    Query(q): Query<DashQuery>,
) -> Response {
    let l = lang(&headers, q.lang.as_deref());
    let console = crate::console::signed_in_role(&state, &headers).await;
    if console.is_some_and(|role| !role.can(Permission::ViewAnalytics)) {
        // The console's own 403 page, with its navigation.
        if let Some(refused) = crate::console::in_console(
            &state,
            &headers,
            q.lang.as_deref(),
            Permission::ViewAnalytics,
            ("Audience statistics", "Statistiques d'audience"),
            "/analytics",
            "/console/assets/dashboard.css",
            |_| String::new(),
        )
        .await
        {
            return refused;
        }
    }
    if !allowed(&state, &headers).await {
        return (
            StatusCode::SEE_OTHER,
            [(header::LOCATION, "/analytics".to_string())],
        )
            .into_response();
    }
    let r = match range(&state, site, &q.range) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let report = match state
        .analytics
        .analytics
        .report(site, r.from, r.to, r.granularity, 10)
        .await
    {
        Ok(rep) => rep,
        Err(e) => return report_error(e).into_response(),
    };
    let sites: Vec<(i64, String)> = state
        .analytics
        .analytics
        .sites()
        .iter()
        .map(|s| (s.id, s.name.clone()))
        .collect();
    if console.is_some()
        && let Some(res) = crate::console::in_console(
            &state,
            &headers,
            q.lang.as_deref(),
            Permission::ViewAnalytics,
            ("Audience statistics", "Statistiques d'audience"),
            "/analytics",
            "/console/assets/dashboard.css",
            |fr| render(&L { fr }, &report, &sites, q.lang.as_deref(), true),
        )
        .await
    {
        return res;
    }
    let body = render(&l, &report, &sites, q.lang.as_deref(), false);
    page(
        &l,
        &format!("{} — {}", l.t("Audience", "Audience"), report.site_name),
        &body,
    )
}

/// Renders the dashboard body (public for the benchmark, which times it).
pub fn render_dashboard(report: &Report, sites: &[(i64, String)], fr: bool) -> String {
    render(&L { fr }, report, sites, fr.then_some("fr"), false)
}

/// The dashboard's HTML; `embedded`: inside the console's layout (which has its own header,
/// navigation and sign-out), else a page of its own.
fn render(
    l: &L,
    r: &Report,
    sites: &[(i64, String)],
    lang_q: Option<&str>,
    embedded: bool,
) -> String {
    let lq = lang_q
        .map(|x| format!("&lang={}", esc(x)))
        .unwrap_or_default();
    let mut s = String::with_capacity(32 * 1024);
    let _ = write!(
        s,
        "{}<h1>{}</h1><nav class=\"sites\" aria-label=\"{}\">",
        if embedded {
            "<div class=\"dash\">"
        } else {
            "<header>"
        },
        l.t("Audience statistics", "Statistiques d'audience"),
        l.t("Sites", "Sites"),
    );
    for (id, name) in sites {
        let cls = if *id == r.site_id {
            " class=\"current\""
        } else {
            ""
        };
        let _ = write!(
            s,
            "<a{cls} href=\"/analytics/sites/{id}?x=1{lq}\">{}</a>",
            esc(name)
        );
    }
    if embedded {
        s.push_str("</nav>");
    } else {
        let _ = write!(
            s,
            "</nav><form method=\"post\" action=\"/analytics/logout\"><button type=\"submit\">{}</button></form></header><main>",
            l.t("Sign out", "Déconnexion")
        );
    }
    // Range presets and the current range.
    let _ = write!(
        s,
        "<nav class=\"ranges\"><span>{} → {} ({})</span>",
        r.from,
        r.to,
        esc(&r.timezone)
    );
    let to = r.to;
    for (days, label) in [
        (1, l.t("Today", "Aujourd'hui")),
        (7, l.t("7 days", "7 jours")),
        (30, l.t("30 days", "30 jours")),
        (90, l.t("90 days", "90 jours")),
    ] {
        let from = to
            .checked_sub(jiff::Span::new().days(days - 1))
            .unwrap_or(to);
        let period = if days == 1 { "&period=hour" } else { "" };
        let _ = write!(
            s,
            "<a href=\"/analytics/sites/{}?from={from}&to={to}{period}{lq}\">{label}</a>",
            r.site_id
        );
    }
    s.push_str("</nav>");

    // Summary cards.
    let m = &r.summary;
    s.push_str("<section class=\"cards\" id=\"summary\">");
    for (label, value, id) in [
        (l.t("Visits", "Visites"), m.visits.to_string(), "visits"),
        (
            l.t("Unique visitors", "Visiteurs uniques"),
            m.unique_visitors.to_string(),
            "unique-visitors",
        ),
        (
            l.t("Page views", "Pages vues"),
            m.pageviews.to_string(),
            "pageviews",
        ),
        (l.t("Actions", "Actions"), m.actions.to_string(), "actions"),
        (
            l.t("Bounce rate", "Taux de rebond"),
            format!("{:.0} %", m.bounce_rate * 100.0),
            "bounce-rate",
        ),
        (
            l.t("Average visit", "Visite moyenne"),
            duration(m.avg_visit_duration_secs),
            "avg-duration",
        ),
    ] {
        let _ = write!(
            s,
            "<div class=\"card\"><span class=\"label\">{label}</span><span class=\"value\" id=\"{id}\">{value}</span></div>"
        );
    }
    s.push_str("</section>");

    let _ = write!(
        s,
        "<section class=\"chart\"><h2>{}</h2>{}<p class=\"legend\"><span class=\"k visits\">■</span> {} <span class=\"k pageviews\">■</span> {}</p></section>",
        if r.granularity == Granularity::Hour {
            l.t("Visits per hour", "Visites par heure")
        } else {
            l.t("Visits per day", "Visites par jour")
        },
        line_chart(&r.series),
        l.t("visits", "visites"),
        l.t("page views", "pages vues"),
    );

    s.push_str("<div class=\"tables\">");
    for (name, en, fr) in [
        ("pages", "Top pages", "Pages les plus vues"),
        ("entry_pages", "Entry pages", "Pages d'entrée"),
        ("exit_pages", "Exit pages", "Pages de sortie"),
        ("browsers", "Browsers", "Navigateurs"),
        ("os", "Operating systems", "Systèmes d'exploitation"),
        ("devices", "Device types", "Types d'appareil"),
        ("resolutions", "Screen resolutions", "Résolutions d'écran"),
        ("event_actions", "Events", "Événements"),
        ("downloads", "Downloads", "Téléchargements"),
        ("outlinks", "Outgoing links", "Liens sortants"),
    ] {
        table(&mut s, l, name, l.t(en, fr), r.table(name));
    }
    let _ = write!(
        s,
        "</div><p class=\"note\">{}</p>{}",
        l.t(
            "Unique visitors are distinct pseudonyms over the range; pseudonyms rotate every pseudonym period, so a visitor who comes back in a later period counts again. Exports: /api/v1/analytics/sites/{id}/… with ?format=csv.",
            "Les visiteurs uniques sont les pseudonymes distincts sur la période ; les pseudonymes changent à chaque période de pseudonymisation, un visiteur qui revient lors d'une période ultérieure est donc compté à nouveau. Exports : /api/v1/analytics/sites/{id}/… avec ?format=csv."
        ),
        if embedded { "</div>" } else { "</main>" }
    );
    s
}

fn duration(secs: f64) -> String {
    let s = secs.round() as i64;
    if s >= 60 {
        format!("{} min {:02} s", s / 60, s % 60)
    } else {
        format!("{s} s")
    }
}

fn table(s: &mut String, l: &L, id: &str, title: &str, rows: &[Row]) {
    let _ = write!(
        s,
        "<section class=\"table\" id=\"t-{id}\"><h2>{}</h2>",
        esc(title)
    );
    if rows.is_empty() {
        let _ = write!(
            s,
            "<p class=\"empty\">{}</p></section>",
            l.t("Nothing yet.", "Rien pour l'instant.")
        );
        return;
    }
    let max = rows.iter().map(|r| r.count).max().unwrap_or(1).max(1);
    s.push_str("<table><tbody>");
    for r in rows {
        let w = (r.count as f64 / max as f64 * 100.0).round();
        let _ = write!(
            s,
            "<tr><td class=\"label\">{}<svg class=\"bar\" viewBox=\"0 0 100 4\" preserveAspectRatio=\"none\" aria-hidden=\"true\"><rect width=\"{w}\" height=\"4\"/></svg></td><td class=\"n\">{}</td></tr>",
            esc(&r.label),
            r.count
        );
    }
    s.push_str("</tbody></table></section>");
}

/// A line chart of visits and page views, as SVG.
fn line_chart(points: &[Point]) -> String {
    const W: f64 = 760.0;
    const H: f64 = 200.0;
    const PAD_L: f64 = 44.0;
    const PAD_B: f64 = 24.0;
    let max = points
        .iter()
        .map(|p| p.visits.max(p.pageviews))
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let nice = nice_ceiling(max);
    let n = points.len().max(2) as f64;
    let x = |i: usize| PAD_L + (W - PAD_L - 8.0) * i as f64 / (n - 1.0);
    let y = |v: i64| 8.0 + (H - PAD_B - 8.0) * (1.0 - v as f64 / nice);
    let mut s =
        format!("<svg class=\"line\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"chart\">");
    let ticks = [5.0, 4.0, 2.0, 1.0]
        .into_iter()
        .find(|t| (nice / t).fract() == 0.0)
        .unwrap_or(1.0);
    for k in 0..=(ticks as i64) {
        let v = (nice * k as f64 / ticks).round() as i64;
        let yy = y(v);
        let _ = write!(
            s,
            "<line class=\"grid\" x1=\"{PAD_L}\" x2=\"{W}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\"/><text class=\"axis\" x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{v}</text>",
            PAD_L - 6.0,
            yy + 4.0
        );
    }
    for (class, get) in [
        ("pageviews", (|p: &Point| p.pageviews) as fn(&Point) -> i64),
        ("visits", |p: &Point| p.visits),
    ] {
        let pts: Vec<String> = points
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{:.1},{:.1}", x(i), y(get(p))))
            .collect();
        let _ = write!(
            s,
            "<polyline class=\"{class}\" points=\"{}\"/>",
            pts.join(" ")
        );
    }
    let step = (points.len() / 6).max(1);
    for (i, p) in points.iter().enumerate().step_by(step) {
        let label = p.period.get(5..).unwrap_or(&p.period);
        let _ = write!(
            s,
            "<text class=\"axis\" x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            x(i),
            H - 6.0,
            esc(label)
        );
    }
    s.push_str("</svg>");
    s
}

fn nice_ceiling(v: f64) -> f64 {
    let mag = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if m * mag >= v {
            return m * mag;
        }
    }
    10.0 * mag
}

pub(crate) async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        DASHBOARD_CSS,
    )
        .into_response()
}
