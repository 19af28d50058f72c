//! Web analytics through the real router: Matomo compatibility, minimisation (down to the
//! store's bytes), reports, retention, rights hooks, saturation and the dashboard.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::json;
use tower::ServiceExt;
use tutela_analytics::{AnalyticsSettings, SiteConfig};
use tutela_http::{AppState, LoadedRegister, build_app};
use tutela_store::Store;

struct T {
    app: axum::Router,
    state: AppState,
    dir: tempfile::TempDir,
}

fn sites() -> Vec<SiteConfig> {
    vec![
        SiteConfig {
            id: 1,
            name: "Example".into(),
            hosts: vec!["*.example.com".into()],
            timezone: "Europe/Paris".into(),
        },
        SiteConfig {
            id: 2,
            name: "Shop".into(),
            hosts: vec!["shop.test".into()],
            timezone: "UTC".into(),
        },
    ]
}

async fn app_with(settings: AnalyticsSettings) -> T {
    app_on(tutela_domain::EXAMPLE_REGISTER, settings).await
}

/// The example register, with audience statistics based on consent instead of legitimate
/// interest.
fn consent_based_register() -> String {
    let src = tutela_domain::EXAMPLE_REGISTER;
    let at = src.find("id = \"audience_statistics\"").unwrap();
    let (head, tail) = src.split_at(at);
    let mut out = String::from(head);
    let mut replaced = false;
    for line in tail.split_inclusive('\n') {
        if !replaced && line.starts_with("legal_basis = ") {
            out.push_str("legal_basis = \"consent\"\n");
        } else if !replaced && line.starts_with("legitimate_interest.") {
            if line.starts_with("legitimate_interest.fr") {
                replaced = true;
            }
        } else {
            out.push_str(line);
        }
    }
    assert!(replaced);
    out
}

async fn app_on(source: &str, settings: AnalyticsSettings) -> T {
    let register = tutela_domain::load(source, "example").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_data_dir(dir.path()).await.unwrap();
    let analytics =
        tutela_analytics::Analytics::start(settings, &sites(), &register, store.clone()).unwrap();
    let vault = tutela_vault::Vault::new(
        store.clone(),
        std::sync::Arc::new(register.clone()),
        tutela_vault::VaultKeys::generate().unwrap(),
    );
    let state = AppState::new(
        LoadedRegister {
            hash: register.content_hash(),
            register,
            last_updated: jiff::civil::date(2026, 11, 29),
        },
        store,
        vault,
        analytics,
    );
    T {
        app: build_app(state.clone()),
        state,
        dir,
    }
}

async fn app() -> T {
    app_with(AnalyticsSettings::default()).await
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| panic!("not JSON: {}", self.text()))
    }
}

const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.109 Safari/537.36";
const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1";

async fn send(
    app: &axum::Router,
    method: &str,
    uri: &str,
    ip: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut req = req.body(Body::from(body.to_string())).unwrap();
    let addr: SocketAddr = format!("{ip}:40000")
        .parse()
        .or_else(|_| format!("[{ip}]:40000").parse())
        .unwrap();
    req.extensions_mut().insert(ConnectInfo(addr));
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.unwrap().to_bytes().to_vec();
    Answer {
        status,
        headers,
        body,
    }
}

async fn hit(t: &T, query: &str, ip: &str, ua: &str) -> Answer {
    send(
        &t.app,
        "GET",
        &format!("/matomo.php?{query}"),
        ip,
        &[("user-agent", ua), ("origin", "https://www.example.com")],
        "",
    )
    .await
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn token(state: &AppState, scopes: &[&str]) -> String {
    let new = tutela_crypto::token::new_token().unwrap();
    state
        .store
        .insert_api_token(&tutela_store::ApiToken {
            id: new.id.clone(),
            name: "test".into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            secret_hash: new.hash.to_vec(),
            created_at: 0,
            expires_at: None,
            revoked_at: None,
            last_used_at: None,
        })
        .await
        .unwrap();
    new.token.to_string()
}

async fn api(t: &T, token: &str, uri: &str) -> Answer {
    send(
        &t.app,
        "GET",
        uri,
        "127.0.0.1",
        &[("authorization", &format!("Bearer {token}"))],
        "",
    )
    .await
}

async fn post_json(t: &T, token: &str, uri: &str, body: &str) -> Answer {
    send(
        &t.app,
        "POST",
        uri,
        "127.0.0.1",
        &[
            ("authorization", &format!("Bearer {token}")),
            ("content-type", "application/json"),
        ],
        body,
    )
    .await
}

fn today(t: &T, site: i64) -> String {
    t.state
        .analytics
        .analytics
        .site_today(site)
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn matomo_answers_gif_204_cors_and_rejections() {
    let t = app().await;
    let url = enc("https://www.example.com/a?x=1");
    let gif = hit(
        &t,
        &format!("idsite=1&rec=1&url={url}"),
        "203.0.113.9",
        CHROME,
    )
    .await;
    assert_eq!(gif.status, StatusCode::OK);
    assert_eq!(gif.headers[header::CONTENT_TYPE], "image/gif");
    assert_eq!(gif.headers[header::CACHE_CONTROL], "no-store");
    assert!(gif.body.starts_with(b"GIF89a"));
    assert_eq!(
        gif.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://www.example.com"
    );
    assert_eq!(
        gif.headers[header::ACCESS_CONTROL_ALLOW_CREDENTIALS],
        "true"
    );

    let none = hit(
        &t,
        &format!("idsite=1&rec=1&url={url}&send_image=0"),
        "203.0.113.9",
        CHROME,
    )
    .await;
    assert_eq!(none.status, StatusCode::NO_CONTENT);
    assert_eq!(none.headers[header::CACHE_CONTROL], "no-store");

    // POST with a form body; the body's parameters count.
    let post = send(
        &t.app,
        "POST",
        "/piwik.php",
        "203.0.113.9",
        &[
            ("user-agent", CHROME),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        &format!("idsite=1&rec=1&send_image=0&url={url}"),
    )
    .await;
    assert_eq!(post.status, StatusCode::NO_CONTENT, "{}", post.text());

    // Preflight.
    let pre = send(
        &t.app,
        "OPTIONS",
        "/matomo.php",
        "203.0.113.9",
        &[("origin", "https://x.example.com")],
        "",
    )
    .await;
    assert_eq!(pre.status, StatusCode::NO_CONTENT);
    assert!(
        pre.headers[header::ACCESS_CONTROL_ALLOW_METHODS]
            .to_str()
            .unwrap()
            .contains("POST")
    );

    // Unknown site, a host the site does not allow, a missing idsite: 400.
    for q in [
        format!("idsite=9&rec=1&url={url}"),
        format!("idsite=1&rec=1&url={}", enc("https://evil.test/")),
        format!("rec=1&url={url}"),
        "idsite=1&rec=1".to_string(),
    ] {
        let a = hit(&t, &q, "203.0.113.9", CHROME).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{q}");
        assert_eq!(a.json()["code"], "bad_request");
    }
    // Overrides without a token: refused.
    let a = hit(
        &t,
        &format!("idsite=1&rec=1&url={url}&cip=1.2.3.4"),
        "203.0.113.9",
        CHROME,
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    // Query string too long.
    let long = hit(
        &t,
        &format!("idsite=1&rec=1&url={url}&x={}", "a".repeat(20_000)),
        "203.0.113.9",
        CHROME,
    )
    .await;
    assert_eq!(long.status, StatusCode::BAD_REQUEST);

    // Three accepted page views so far (the GET, the 204 and the POST).
    assert_eq!(t.state.store.analytics_event_count(1).await.unwrap(), 3);
    // The tracker is served under its three names.
    for path in ["/matomo.js", "/piwik.js", "/tutela.js"] {
        let js = send(&t.app, "GET", path, "127.0.0.1", &[], "").await;
        assert_eq!(js.status, StatusCode::OK);
        assert!(
            js.headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .contains("javascript")
        );
        assert!(js.text().contains("_paq") && js.body.len() < 16 * 1024);
    }
}

#[tokio::test]
async fn bulk_requests_count_tracked_and_invalid() {
    let t = app().await;
    let url = enc("https://www.example.com/bulk");
    let body = serde_json::json!({
        "requests": [
            format!("?idsite=1&rec=1&url={url}&action_name=One"),
            format!("?idsite=1&rec=1&url={url}&e_c=Video&e_a=Play&e_v=3"),
            {"idsite": 1, "rec": 1, "url": "https://www.example.com/obj", "action_name": "Obj"},
            format!("?idsite=77&rec=1&url={url}"),
            42
        ]
    });
    let a = send(
        &t.app,
        "POST",
        "/matomo.php",
        "198.51.100.7",
        &[("user-agent", CHROME), ("content-type", "application/json")],
        &body.to_string(),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let v = a.json();
    assert_eq!(v["status"], "success");
    assert_eq!(v["tracked"], 3);
    assert_eq!(v["invalid"], 2);
    assert_eq!(v["invalid_indices"], serde_json::json!([3, 4]));
    assert_eq!(t.state.store.analytics_event_count(1).await.unwrap(), 3);

    // Malformed and oversized bulks are refused whole.
    let bad = send(
        &t.app,
        "POST",
        "/matomo.php",
        "198.51.100.7",
        &[],
        "{\"requests\": 3}",
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let many = serde_json::json!({"requests": vec!["?idsite=1"; 1001]});
    let a = send(
        &t.app,
        "POST",
        "/matomo.php",
        "198.51.100.7",
        &[],
        &many.to_string(),
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let huge = format!("{{\"requests\":[\"{}\"]}}", "a".repeat(3 * 1024 * 1024));
    let a = send(&t.app, "POST", "/matomo.php", "198.51.100.7", &[], &huge).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
}

/// Reads every byte of every file in a directory tree.
fn all_bytes(dir: &std::path::Path) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            out.extend(all_bytes(&p));
        } else {
            out.extend(std::fs::read(&p).unwrap());
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn the_store_never_holds_a_full_ip_raw_user_agent_or_cookie_value() {
    let t = app().await;
    let ips = [
        "203.0.113.77",
        "198.51.100.201",
        "2001:db8:abcd:12:34:56:78:9a",
    ];
    let uas = [CHROME, IPHONE];
    let cookies = ["a1b2c3d4e5f60718", "0f1e2d3c4b5a6978"];
    let uid = "alice.martin@example.org";
    let secret_query = "token=s3cr3tQueryValue";
    let mut n = 0;
    for ip in ips {
        for ua in uas {
            for id in cookies {
                let url = enc(&format!(
                    "https://www.example.com/account?{secret_query}&utm_campaign=winter#frag"
                ));
                let a = hit(
                    &t,
                    &format!("idsite=1&rec=1&url={url}&_id={id}&uid={}&res=1920x1080&action_name=Account&send_image=0", enc(uid)),
                    ip,
                    ua,
                )
                .await;
                assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.text());
                n += 1;
            }
        }
    }
    // A cookieless hit too (no _id).
    let url = enc("https://www.example.com/plain");
    assert_eq!(
        hit(
            &t,
            &format!("idsite=1&rec=1&url={url}&send_image=0"),
            "203.0.113.78",
            CHROME
        )
        .await
        .status,
        StatusCode::NO_CONTENT
    );
    n += 1;
    assert_eq!(t.state.store.analytics_event_count(1).await.unwrap(), n);

    let path = t.dir.path().to_path_buf();
    t.state.store.close().await;
    let bytes = all_bytes(&path);
    assert!(bytes.len() > 10_000, "the database files were read");
    for ip in ips {
        assert!(
            !contains(&bytes, ip.as_bytes()),
            "full IP {ip} found in the store"
        );
    }
    // The IPv6 address in any spelling past its /48.
    assert!(!contains(&bytes, b"2001:db8:abcd:12"));
    for ua in uas {
        assert!(!contains(&bytes, ua.as_bytes()), "raw user agent found");
        assert!(
            !contains(&bytes, b"AppleWebKit/537.36 (KHTML"),
            "user-agent fragment found"
        );
    }
    for id in cookies {
        assert!(
            !contains(&bytes, id.as_bytes()),
            "raw cookie value {id} found"
        );
    }
    assert!(!contains(&bytes, uid.as_bytes()), "raw uid found");
    assert!(
        !contains(&bytes, b"s3cr3tQueryValue"),
        "query string value found"
    );
    assert!(!contains(&bytes, b"#frag"));
    // …while the minimised forms are there.
    for kept in [
        "203.0.0.0".as_bytes(),
        b"198.51.0.0",
        b"2001:db8:abcd::",
        b"https://www.example.com/account?utm_campaign=winter",
        b"Chrome",
        b"smartphone",
        b"1920x1080",
    ] {
        assert!(
            contains(&bytes, kept),
            "{} missing",
            String::from_utf8_lossy(kept)
        );
    }
}

#[tokio::test]
async fn dnt_gpc_optout_and_bots_are_not_recorded() {
    let t = app().await;
    let url = enc("https://www.example.com/");
    let q = format!("idsite=1&rec=1&url={url}&send_image=0");
    for headers in [
        vec![("user-agent", CHROME), ("dnt", "1")],
        vec![("user-agent", CHROME), ("sec-gpc", "1")],
        vec![("user-agent", CHROME), ("cookie", "a=b; tutela_optout=1")],
        vec![(
            "user-agent",
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        )],
    ] {
        let a = send(
            &t.app,
            "GET",
            &format!("/matomo.php?{q}"),
            "203.0.113.1",
            &headers,
            "",
        )
        .await;
        assert_eq!(a.status, StatusCode::NO_CONTENT, "{headers:?}");
    }
    // rec missing: answered, not recorded.
    let a = hit(
        &t,
        &format!("idsite=1&url={url}&send_image=0"),
        "203.0.113.1",
        CHROME,
    )
    .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    assert_eq!(t.state.store.analytics_event_count(1).await.unwrap(), 0);
    // bots=1 asks to record a bot.
    let a = send(
        &t.app,
        "GET",
        &format!("/matomo.php?{q}&bots=1"),
        "203.0.113.1",
        &[(
            "user-agent",
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        )],
        "",
    )
    .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    assert_eq!(t.state.store.analytics_event_count(1).await.unwrap(), 1);

    // With DNT not honoured by configuration, the DNT hit is recorded.
    let t = app_with(AnalyticsSettings {
        honour_dnt: false,
        ..AnalyticsSettings::default()
    })
    .await;
    let a = send(
        &t.app,
        "GET",
        &format!("/matomo.php?{q}"),
        "203.0.113.1",
        &[("user-agent", CHROME), ("dnt", "1")],
        "",
    )
    .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    assert_eq!(t.state.store.analytics_event_count(1).await.unwrap(), 1);

    // The opt-out page sets and clears the cookie.
    let page = send(
        &t.app,
        "GET",
        "/optout?lang=fr",
        "127.0.0.1",
        &[("cookie", "_pk_id.1.abcd=0123456789abcdef.1700000000")],
        "",
    )
    .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text().contains("0123456789abcdef") && page.text().contains("lang=\"fr\""));
    let set = send(
        &t.app,
        "POST",
        "/optout",
        "127.0.0.1",
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("host", "stats.example.com"),
            ("origin", "https://stats.example.com"),
        ],
        "action=optout",
    )
    .await;
    assert_eq!(set.status, StatusCode::SEE_OTHER);
    let cookie = set.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(
        cookie.starts_with("tutela_optout=1") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    let cross = send(
        &t.app,
        "POST",
        "/optout",
        "127.0.0.1",
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("host", "stats.example.com"),
            ("origin", "https://evil.test"),
        ],
        "action=optin",
    )
    .await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn overrides_need_a_tracking_token_and_reports_add_up() {
    let t = app().await;
    let track = token(&t.state, &["analytics:track"]).await;
    let read = token(&t.state, &["analytics:read"]).await;
    let base = |path: &str| enc(&format!("https://www.example.com{path}"));
    // Visitor A: three pages in one visit (10 s and 50 s apart), then an event.
    let now = jiff::Timestamp::now().as_second();
    let paris = jiff::tz::TimeZone::get("Europe/Paris").unwrap();
    let local_day = |t: i64| {
        jiff::Timestamp::from_second(t)
            .unwrap()
            .to_zoned_datetime(paris.clone())
            .date()
    };
    // The hits span 70 s and the report below reads one local day: keep them off midnight.
    let mut start = now - 3600;
    if local_day(start) != local_day(start + 70) {
        start -= 120;
    }
    for (i, (path, dt)) in [("/", 0), ("/pricing", 10), ("/signup", 60)]
        .iter()
        .enumerate()
    {
        let a = hit(&t, &format!("idsite=1&rec=1&url={}&_id=aaaaaaaaaaaaaaaa&res=1280x720&action_name=P{i}&cdt={}&cip=203.0.113.5&token_auth={track}&send_image=0", base(path), start + dt), "127.0.0.1", CHROME).await;
        assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.text());
    }
    let a = hit(&t, &format!("idsite=1&rec=1&url={}&_id=aaaaaaaaaaaaaaaa&e_c=Video&e_a=Play&e_n=Intro&cdt={}&token_auth={track}&send_image=0", base("/signup"), start + 70), "127.0.0.1", CHROME).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    // Visitor B: one page (a bounce) on a phone.
    let a = hit(&t, &format!("idsite=1&rec=1&url={}&_id=bbbbbbbbbbbbbbbb&res=390x844&cdt={}&token_auth={track}&send_image=0", base("/pricing"), start + 5), "127.0.0.1", IPHONE).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    // A token without analytics:track cannot override.
    let a = hit(
        &t,
        &format!(
            "idsite=1&rec=1&url={}&cdt={}&token_auth={read}",
            base("/"),
            start
        ),
        "127.0.0.1",
        CHROME,
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);

    let day = local_day(start).to_string();
    let r = api(
        &t,
        &read,
        &format!("/api/v1/analytics/sites/1/report?from={day}&to={day}"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = r.json();
    let s = &v["summary"];
    assert_eq!(s["visits"], 2);
    assert_eq!(s["unique_visitors"], 2);
    assert_eq!(s["pageviews"], 4);
    assert_eq!(s["actions"], 5);
    assert_eq!(s["events"], 1);
    assert_eq!(s["bounce_rate"], 0.5);
    assert_eq!(s["avg_visit_duration_secs"], 35.0); // (70 + 0) / 2
    let tables = &v["tables"];
    assert_eq!(
        tables["pages"][0],
        serde_json::json!({"label": "https://www.example.com/pricing", "count": 2})
    );
    assert_eq!(tables["entry_pages"].as_array().unwrap().len(), 2);
    let exits: Vec<&str> = tables["exit_pages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["label"].as_str().unwrap())
        .collect();
    assert_eq!(
        exits,
        [
            "https://www.example.com/pricing",
            "https://www.example.com/signup"
        ]
    );
    let devices: Vec<&str> = tables["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["label"].as_str().unwrap())
        .collect();
    assert_eq!(devices, ["desktop", "smartphone"]);
    assert_eq!(
        tables["browsers"][0]["label"]
            .as_str()
            .unwrap()
            .split(' ')
            .next(),
        Some("Chrome")
    );
    assert_eq!(tables["event_actions"][0]["label"], "Video / Play");
    assert_eq!(tables["resolutions"].as_array().unwrap().len(), 2);
    assert_eq!(v["series"].as_array().unwrap().len(), 1);
    assert_eq!(v["series"][0]["unique_visitors"], 2);

    // Hourly series: 24 points, the visits in the right hour.
    let h = api(
        &t,
        &read,
        &format!("/api/v1/analytics/sites/1/series?from={day}&to={day}&period=hour"),
    )
    .await
    .json();
    assert_eq!(h.as_array().unwrap().len(), 24);
    assert_eq!(
        h.as_array()
            .unwrap()
            .iter()
            .map(|p| p["visits"].as_i64().unwrap())
            .sum::<i64>(),
        2
    );

    // CSV exports.
    let csv = api(
        &t,
        &read,
        &format!("/api/v1/analytics/sites/1/pages?from={day}&to={day}&format=csv"),
    )
    .await;
    assert!(
        csv.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    assert!(
        csv.text()
            .starts_with("label,count\n\"https://www.example.com/pricing\",2\n"),
        "{}",
        csv.text()
    );
    let csv = api(
        &t,
        &read,
        &format!("/api/v1/analytics/sites/1/report?from={day}&to={day}&format=csv"),
    )
    .await;
    assert!(
        csv.text().contains(&format!("{day},2,2,4,5,1")),
        "{}",
        csv.text()
    );

    // Errors: no token, wrong scope, unknown site, bad dates, unknown section.
    assert_eq!(
        send(
            &t.app,
            "GET",
            "/api/v1/analytics/sites/1/report",
            "127.0.0.1",
            &[],
            ""
        )
        .await
        .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        api(&t, &track, "/api/v1/analytics/sites/1/report")
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        api(&t, &read, "/api/v1/analytics/sites/9/report")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api(&t, &read, "/api/v1/analytics/sites/1/report?from=yesterday")
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        api(
            &t,
            &read,
            "/api/v1/analytics/sites/1/report?from=2026-01-10&to=2026-01-01"
        )
        .await
        .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        api(
            &t,
            &read,
            "/api/v1/analytics/sites/1/report?from=2020-01-01&to=2026-01-01"
        )
        .await
        .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        api(&t, &read, "/api/v1/analytics/sites/1/nothing")
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    let sites = api(&t, &read, "/api/v1/analytics/sites").await.json();
    assert_eq!(sites["retention"], "180 days");
    assert_eq!(sites["sites"].as_array().unwrap().len(), 2);
}

/// Records one hit as if it had arrived at `ts` (a `cdt` that old is refused: it is past
/// retention, or it is how tests put old data in the store).
async fn record_at(t: &T, query: &str, ts: i64) {
    let a = &t.state.analytics.analytics;
    record_with(a, query, ts).await;
}

async fn record_with(a: &tutela_analytics::Analytics, query: &str, ts: i64) {
    let raw = tutela_analytics::RawHit::from_query(query);
    let client = tutela_analytics::Client {
        ip: "203.0.113.9".parse().unwrap(),
        user_agent: Some(CHROME),
        dnt: false,
        gpc: false,
        opted_out: false,
    };
    let p = a
        .prepare(
            &raw,
            &client,
            false,
            jiff::Timestamp::from_second(ts).unwrap(),
        )
        .await
        .unwrap();
    let tutela_analytics::Prepared::Track(h) = p else {
        panic!("not tracked: {p:?}")
    };
    a.submit(vec![*h]).await.unwrap();
}

#[tokio::test]
async fn retention_deletes_whole_old_days_and_leaves_recent_reports_unchanged() {
    let t = app().await;
    let read = token(&t.state, &["analytics:read"]).await;
    let now = jiff::Timestamp::now();
    let days_ago = |d: i64| now.as_second() - d * 86_400;
    let url = enc("https://www.example.com/old");
    for (d, id) in [
        (200, "1111111111111111"),
        (181, "2222222222222222"),
        (179, "3333333333333333"),
        (10, "4444444444444444"),
        (1, "5555555555555555"),
    ] {
        record_at(
            &t,
            &format!("idsite=1&rec=1&url={url}&_id={id}"),
            days_ago(d),
        )
        .await;
    }
    assert_eq!(t.state.store.analytics_event_count(1).await.unwrap(), 5);
    let recent = format!(
        "/api/v1/analytics/sites/1/report?from={}&to={}",
        jiff::Timestamp::from_second(days_ago(170))
            .unwrap()
            .to_zoned_datetime(jiff::tz::TimeZone::get("Europe/Paris").unwrap())
            .date(),
        today(&t, 1)
    );
    let before = api(&t, &read, &recent).await.json();
    assert_eq!(before["summary"]["visits"], 2);

    let purged = t
        .state
        .analytics
        .analytics
        .purge_expired(now)
        .await
        .unwrap();
    assert_eq!(
        purged,
        vec![
            (
                1,
                tutela_store::analytics::PurgeCounts {
                    events: 2,
                    rollup_rows: purged[0].1.rollup_rows
                }
            ),
            (2, Default::default())
        ]
    );
    assert!(purged[0].1.rollup_rows >= 4);
    assert_eq!(t.state.store.analytics_event_count(1).await.unwrap(), 3);
    let after = api(&t, &read, &recent).await.json();
    assert_eq!(before, after, "reports of kept days are unchanged");
    // Nothing older than the retention is left, counted in whole site-local days.
    let oldest = t
        .state
        .store
        .analytics_oldest_day(1)
        .await
        .unwrap()
        .unwrap();
    let limit = now
        .to_zoned_datetime(jiff::tz::TimeZone::get("Europe/Paris").unwrap())
        .checked_sub(jiff::Span::new().days(180))
        .unwrap()
        .date();
    assert!(tutela_analytics::day_from_number(oldest).unwrap() > limit);
    // A second run finds nothing more.
    assert_eq!(
        t.state
            .analytics
            .analytics
            .purge_expired(now)
            .await
            .unwrap()[0]
            .1
            .events,
        0
    );
}

#[tokio::test]
async fn rights_hooks_find_export_and_erase_one_visitor() {
    let t = app().await;
    let url = enc("https://www.example.com/me");
    for id in ["abcdefabcdefabcd", "abcdefabcdefabcd", "9999999999999999"] {
        assert_eq!(
            hit(
                &t,
                &format!("idsite=1&rec=1&url={url}&_id={id}&send_image=0"),
                "203.0.113.3",
                CHROME
            )
            .await
            .status,
            StatusCode::NO_CONTENT
        );
    }
    let rights = token(&t.state, &["rights:read", "rights:write"]).await;
    let read_only = token(&t.state, &["rights:read"]).await;
    let body = r#"{"site": 1, "visitor_id": "ABCDEFABCDEFABCD"}"#;
    let f = post_json(&t, &rights, "/api/v1/analytics/visitors/find", body).await;
    assert_eq!(f.status, StatusCode::OK, "{}", f.text());
    assert_eq!(f.json()["events"], 2);
    let e = post_json(&t, &rights, "/api/v1/analytics/visitors/export", body)
        .await
        .json();
    assert_eq!(e["events"].as_array().unwrap().len(), 2);
    assert_eq!(e["events"][0]["url"], "https://www.example.com/me");
    assert_eq!(e["events"][0]["ip_prefix"], "203.0.0.0");
    assert_eq!(
        post_json(&t, &read_only, "/api/v1/analytics/visitors/erase", body)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let x = post_json(&t, &rights, "/api/v1/analytics/visitors/erase", body)
        .await
        .json();
    assert_eq!(x["erased"], 2);
    assert_eq!(
        post_json(&t, &rights, "/api/v1/analytics/visitors/find", body)
            .await
            .json()["events"],
        0
    );
    // Every find, export and erase is in the tamper-evident audit log, under a keyed
    // commitment to the visitor: never the cookie value or the pseudonym in clear.
    let audit = t.state.store.audit_entries(0, 1000).await.unwrap();
    let ours: Vec<_> = audit
        .iter()
        .filter(|e| e.action.starts_with("analytics_visitor_"))
        .collect();
    assert_eq!(
        ours.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
        [
            "analytics_visitor_find",
            "analytics_visitor_export",
            "analytics_visitor_erase",
            "analytics_visitor_find"
        ]
    );
    let subject = tutela_analytics::visitor_audit_subject(1, "ABCDEFABCDEFABCD");
    let commitment = t.state.vault.keys().commitment(&subject).unwrap();
    for e in &ours {
        assert!(e.actor.starts_with("token:"), "{}", e.actor);
        assert_eq!(e.purpose, "audience_statistics");
        assert_eq!(e.subject_commitment.as_deref(), Some(&commitment[..]));
        assert!(!e.details.to_lowercase().contains("abcdefabcdefabcd"));
    }
    assert!(
        ours[2].details.contains("\"erased\":2"),
        "{}",
        ours[2].details
    );
    let pseudonym = t
        .state
        .analytics
        .analytics
        .pseudonym_of_visitor_id(1, "abcdefabcdefabcd")
        .await
        .unwrap()
        .unwrap();
    let all = format!("{audit:?}");
    assert!(!all.contains(&pseudonym.to_string()) && !all.contains("abcdefabcdefabcd"));
    assert!(t.state.vault.verify_audit(None).await.unwrap().is_ok());

    // The other visitor is untouched; a malformed id is refused.
    assert_eq!(t.state.store.analytics_event_count(1).await.unwrap(), 1);
    let bad = post_json(
        &t,
        &rights,
        "/api/v1/analytics/visitors/find",
        r#"{"site": 1, "visitor_id": "nope"}"#,
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    // Rotation destroys the salt: the same cookie value then gives another pseudonym.
    let later = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * 31);
    assert!(
        t.state
            .analytics
            .analytics
            .rotate_salts(later)
            .await
            .unwrap()
            >= 1
    );
}

#[tokio::test]
async fn a_full_queue_answers_503_with_retry_after() {
    // A queue smaller than the largest bulk request is refused at startup: such a request
    // would get 503 forever.
    let register = tutela_domain::load(tutela_domain::EXAMPLE_REGISTER, "example").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_data_dir(dir.path()).await.unwrap();
    let small = AnalyticsSettings {
        queue_capacity: tutela_analytics::params::MAX_BULK_REQUESTS - 1,
        ..AnalyticsSettings::default()
    };
    let err = tutela_analytics::Analytics::start(small, &sites(), &register, store.clone())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("queue_capacity") && err.contains("1000"),
        "{err}"
    );
    let exact = AnalyticsSettings {
        queue_capacity: tutela_analytics::params::MAX_BULK_REQUESTS,
        ..AnalyticsSettings::default()
    };
    assert!(tutela_analytics::Analytics::start(exact, &sites(), &register, store).is_ok());

    let t = app_with(AnalyticsSettings {
        queue_capacity: 1000,
        ..AnalyticsSettings::default()
    })
    .await;
    // All but two places are taken, as if 998 hits were waiting.
    let busy = t.state.analytics.analytics.occupy_queue(998).unwrap();
    let url = enc("https://www.example.com/");
    let one = format!("?idsite=1&rec=1&url={url}");
    let body = serde_json::json!({"requests": [one, one, one]});
    let a = send(
        &t.app,
        "POST",
        "/matomo.php",
        "203.0.113.1",
        &[("user-agent", CHROME)],
        &body.to_string(),
    )
    .await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.headers[header::RETRY_AFTER], "1");
    assert_eq!(t.state.store.analytics_event_count(1).await.unwrap(), 0);
    // Within capacity it goes through; the counters show on /metrics.
    let body = serde_json::json!({"requests": [one, one]});
    let a = send(
        &t.app,
        "POST",
        "/matomo.php",
        "203.0.113.1",
        &[("user-agent", CHROME)],
        &body.to_string(),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let m = send(&t.app, "GET", "/metrics", "127.0.0.1", &[], "")
        .await
        .text();
    assert!(
        m.contains("tutela_analytics_hits_total{outcome=\"saturated\"}"),
        "{m}"
    );
    assert!(
        m.contains("tutela_analytics_hits_total{outcome=\"tracked\"}"),
        "{m}"
    );
    // Once the writer is done, the queue depth goes back to 0 (it was only set on enqueue, and
    // stayed at the last depth seen). Other tests share the gauge: wait for a quiet moment.
    drop(busy);
    let a = send(
        &t.app,
        "POST",
        "/matomo.php",
        "203.0.113.1",
        &[("user-agent", CHROME)],
        &serde_json::json!({"requests": [one, one]}).to_string(),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let mut idle = false;
    for _ in 0..200 {
        let m = send(&t.app, "GET", "/metrics", "127.0.0.1", &[], "")
            .await
            .text();
        if m.lines().any(|l| l == "tutela_analytics_queue_depth 0") {
            idle = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(idle, "the queue depth gauge never went back to 0");
    assert_eq!(t.state.analytics.analytics.queue_depth(), 0);
}

#[tokio::test]
async fn dashboard_needs_a_posted_token_and_renders_the_report() {
    let t = app().await;
    let url = enc("https://www.example.com/dash");
    assert_eq!(
        hit(
            &t,
            &format!("idsite=1&rec=1&url={url}&_id=1234567812345678&send_image=0"),
            "203.0.113.3",
            CHROME
        )
        .await
        .status,
        StatusCode::NO_CONTENT
    );
    let read = token(&t.state, &["analytics:read"]).await;
    let other = token(&t.state, &["vault:read"]).await;

    let login = send(&t.app, "GET", "/analytics", "127.0.0.1", &[], "").await;
    assert_eq!(login.status, StatusCode::OK);
    assert!(
        login
            .text()
            .contains("<form method=\"post\" action=\"/analytics/login\"")
    );
    let nope = send(&t.app, "GET", "/analytics/sites/1", "127.0.0.1", &[], "").await;
    assert_eq!(nope.status, StatusCode::SEE_OTHER);

    let form = |tok: &str| format!("token={}", enc(tok));
    let hdr = [("content-type", "application/x-www-form-urlencoded")];
    assert_eq!(
        send(
            &t.app,
            "POST",
            "/analytics/login",
            "127.0.0.1",
            &hdr,
            &form("tutela_bad")
        )
        .await
        .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(
            &t.app,
            "POST",
            "/analytics/login",
            "127.0.0.1",
            &hdr,
            &form(&other)
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    let ok = send(
        &t.app,
        "POST",
        "/analytics/login",
        "127.0.0.1",
        &hdr,
        &form(&read),
    )
    .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    let cookie = ok.headers[header::SET_COOKIE].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(
        !cookie.contains(&read[20..]),
        "the token itself is never in the cookie"
    );
    let session = cookie.split(';').next().unwrap().to_string();

    let page = send(
        &t.app,
        "GET",
        "/analytics/sites/1",
        "127.0.0.1",
        &[("cookie", &session)],
        "",
    )
    .await;
    assert_eq!(page.status, StatusCode::OK);
    let html = page.text();
    assert!(html.contains("<svg class=\"line\""), "chart");
    assert!(html.contains("https://www.example.com/dash"));
    assert!(html.contains("id=\"visits\">1<"));
    assert!(
        !html.contains("<script") && !html.contains("style=\""),
        "CSP: no inline script or style"
    );
    let fr = send(
        &t.app,
        "GET",
        "/analytics/sites/1?lang=fr",
        "127.0.0.1",
        &[("cookie", &session)],
        "",
    )
    .await;
    assert!(fr.text().contains("Visiteurs uniques"));

    // Revoking the token closes the session.
    let id = read.split('_').nth(1).unwrap();
    t.state.store.revoke_api_token(id, 1).await.unwrap();
    let gone = send(
        &t.app,
        "GET",
        "/analytics/sites/1",
        "127.0.0.1",
        &[("cookie", &session)],
        "",
    )
    .await;
    assert_eq!(gone.status, StatusCode::SEE_OTHER);
}

async fn post_consent(t: &T, body: serde_json::Value) -> String {
    let a = send(
        &t.app,
        "POST",
        "/api/v1/consent",
        "198.51.100.7",
        &[("content-type", "text/plain;charset=UTF-8")],
        &body.to_string(),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text());
    a.json()["consent_id"].as_str().unwrap().to_string()
}

async fn metric(t: &T, outcome: &str) -> u64 {
    let m = send(&t.app, "GET", "/metrics", "127.0.0.1", &[], "")
        .await
        .text();
    let key = format!("tutela_analytics_hits_total{{outcome=\"{outcome}\"}} ");
    m.lines()
        .find_map(|l| l.strip_prefix(key.as_str()))
        .map_or(0, |v| v.trim().parse::<f64>().unwrap() as u64)
}

#[tokio::test]
async fn under_a_consent_basis_hits_are_stored_only_with_a_recorded_grant() {
    let t = app_on(&consent_based_register(), AnalyticsSettings::default()).await;
    assert!(t.state.consent.analytics_needs_consent());
    let url = enc("https://www.example.com/");
    let q = format!("idsite=1&rec=1&url={url}&send_image=0&action_name=Home");
    let count = || async { t.state.store.analytics_event_count(1).await.unwrap() };

    // The tracker starts in requireConsent mode.
    let js = send(&t.app, "GET", "/matomo.js", "127.0.0.1", &[], "")
        .await
        .text();
    assert!(
        js.contains("/*consent mode*/true"),
        "tracker not in consent mode"
    );

    // No consent id, a malformed one, an unknown one: answered like Matomo, nothing stored.
    let before = metric(&t, "no_consent").await;
    for extra in [
        String::new(),
        "&tutela_consent=not-a-uuid".to_string(),
        "&tutela_consent=3f2c1e9a-8b7d-4c6e-9f01-23456789abcd".to_string(),
    ] {
        let a = hit(&t, &format!("{q}{extra}"), "203.0.113.1", CHROME).await;
        assert_eq!(a.status, StatusCode::NO_CONTENT, "{extra}");
    }
    assert_eq!(count().await, 0);
    assert!(metric(&t, "no_consent").await >= before + 3);

    // A refusal: still nothing.
    let refused = post_consent(&t, json!({"choices": {"analytics": false}})).await;
    let a = hit(
        &t,
        &format!("{q}&tutela_consent={refused}"),
        "203.0.113.1",
        CHROME,
    )
    .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    assert_eq!(count().await, 0);

    // A grant: stored (in the query string, or in a POSTed form body).
    let id = post_consent(
        &t,
        json!({"choices": {"analytics": true, "targeting": false}}),
    )
    .await;
    let a = hit(
        &t,
        &format!("{q}&tutela_consent={id}"),
        "203.0.113.1",
        CHROME,
    )
    .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    assert_eq!(count().await, 1);
    let a = send(
        &t.app,
        "POST",
        "/matomo.php",
        "203.0.113.1",
        &[
            ("user-agent", CHROME),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        &format!("{q}&tutela_consent={}", id.to_ascii_uppercase()),
    )
    .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    assert_eq!(count().await, 2);

    // Bulk: each request carries its own consent id.
    let bulk = json!({"requests": [
        format!("?{q}&tutela_consent={id}"),
        format!("?{q}"),
        format!("?{q}&tutela_consent={refused}"),
    ]});
    let a = send(
        &t.app,
        "POST",
        "/matomo.php",
        "203.0.113.1",
        &[("user-agent", CHROME), ("content-type", "application/json")],
        &bulk.to_string(),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(a.json()["no_consent"], 2, "{}", a.text());
    assert_eq!(count().await, 3);

    // A record that does not answer for analytics leaves the grant in force.
    post_consent(
        &t,
        json!({"consent_id": id, "choices": {"functional": true}}),
    )
    .await;
    hit(
        &t,
        &format!("{q}&tutela_consent={id}"),
        "203.0.113.1",
        CHROME,
    )
    .await;
    assert_eq!(count().await, 4);

    // Withdrawal takes effect for the very next hit.
    post_consent(&t, json!({"consent_id": id, "withdraw": true})).await;
    let a = hit(
        &t,
        &format!("{q}&tutela_consent={id}"),
        "203.0.113.1",
        CHROME,
    )
    .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    assert_eq!(count().await, 4);

    // A grant recorded before this server started (not in its cache) is read from the store.
    let t2 = app_on(&consent_based_register(), AnalyticsSettings::default()).await;
    let rec = |consent: bool, seq: i64| tutela_store::ConsentRecord {
        record_id: format!("00000000-0000-4000-8000-00000000000{seq}"),
        consent_id: "11111111-2222-4333-8444-555555555555".into(),
        recorded_at: jiff::Timestamp::now().as_second() - 10 + seq,
        site: None,
        revision: "r".into(),
        register_hash: "h".into(),
        method: "api".into(),
        source: "tutela".into(),
        gpc: false,
        language: None,
        functional: None,
        analytics: Some(consent),
        targeting: None,
        services: "{}".into(),
        purpose: "consent_proof".into(),
        category: "consent_record".into(),
        delete_after: i64::MAX / 2,
    };
    t2.state
        .store
        .insert_consent_records(&[rec(true, 1)])
        .await
        .unwrap();
    let q2 = format!("{q}&tutela_consent=11111111-2222-4333-8444-555555555555");
    let a = hit(&t2, &q2, "203.0.113.1", CHROME).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    assert_eq!(t2.state.store.analytics_event_count(1).await.unwrap(), 1);
}

#[tokio::test]
async fn under_legitimate_interest_hits_need_no_consent_id() {
    let t = app().await;
    assert!(!t.state.consent.analytics_needs_consent());
    let js = send(&t.app, "GET", "/matomo.js", "127.0.0.1", &[], "")
        .await
        .text();
    assert!(js.contains("/*__TUTELA_CONSENT_MODE__*/false"));
    let url = enc("https://www.example.com/");
    let a = hit(
        &t,
        &format!("idsite=1&rec=1&url={url}&send_image=0"),
        "203.0.113.1",
        CHROME,
    )
    .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    assert_eq!(t.state.store.analytics_event_count(1).await.unwrap(), 1);
}

/// The hits of a bulk request share one `PrepareCache` (client user agent, half address,
/// salts, opt-out check): every hit comes out exactly as `prepare` alone makes it, whatever
/// mix of sites, visitor ids, user ids, own user agents, client hints, overrides, bots and
/// opted-out visitors follows in the same request.
#[tokio::test]
async fn prepare_with_a_shared_cache_gives_the_hits_prepare_gives() {
    let t = app().await;
    let analytics = &t.state.analytics.analytics;
    let now = jiff::Timestamp::now();
    assert!(
        analytics
            .opt_out_visitor(1, "00000000000000ff", now.as_second())
            .await
            .unwrap()
    );
    let uadata = enc(
        r#"{"fullVersionList":[{"brand":"Microsoft Edge","version":"120.0.2210.77"}],"mobile":false,"platform":"Windows","platformVersion":"15.0.0"}"#,
    );
    let queries = [
        "idsite=1&rec=1&url=http%3A%2F%2Fwww.example.com%2Fa%3Fq%3D1&action_name=A&_id=0123456789abcdef&res=1920x1080".to_string(),
        "idsite=1&rec=1&url=http%3A%2F%2Fwww.example.com%2Fb&_id=0123456789ABCDEF".to_string(),
        "idsite=1&rec=1&url=http%3A%2F%2Fwww.example.com%2Fc".to_string(),
        "idsite=2&rec=1&url=http%3A%2F%2Fshop.test%2Fd&uid=alice&res=390x844".to_string(),
        format!("idsite=1&rec=1&url=http%3A%2F%2Fexample.com%2Fe&ua={}", enc(IPHONE)),
        format!("idsite=1&rec=1&url=http%3A%2F%2Fexample.com%2Ff&uadata={uadata}"),
        "idsite=1&rec=1&url=http%3A%2F%2Fexample.com%2Fg&_id=00000000000000ff".to_string(),
        "idsite=1&rec=1&url=http%3A%2F%2Fexample.com%2Fh&cip=198.51.100.7".to_string(),
        "idsite=1&rec=1&url=http%3A%2F%2Fexample.com%2Fi&e_c=Video&e_a=Play&e_v=2".to_string(),
        "idsite=1&rec=1&url=http%3A%2F%2Fexample.com%2Fj&ua=Googlebot%2F2.1".to_string(),
        "idsite=9&rec=1&url=http%3A%2F%2Fexample.com%2Fk".to_string(),
        "idsite=1&url=http%3A%2F%2Fexample.com%2Fl".to_string(),
        "idsite=1&rec=1&url=http%3A%2F%2Fwww.example.com%2Fm&action_name=M".to_string(),
    ];
    let client = tutela_analytics::Client {
        ip: "203.0.113.77".parse().unwrap(),
        user_agent: Some(CHROME),
        dnt: false,
        gpc: false,
        opted_out: false,
    };
    for trusted in [false, true] {
        let mut cache = tutela_analytics::PrepareCache::default();
        for q in &queries {
            let raw = tutela_analytics::RawHit::from_query(q);
            let alone = analytics.prepare(&raw, &client, trusted, now).await;
            let shared = analytics
                .prepare_with(&mut cache, &raw, &client, trusted, now)
                .await;
            assert_eq!(format!("{shared:?}"), format!("{alone:?}"), "{q}");
        }
    }
    // And the mix covered what it should: tracked hits, an opted-out visitor, a bot, an
    // unknown site, a hit without rec.
    let mut cache = tutela_analytics::PrepareCache::default();
    let mut kinds = Vec::new();
    for q in &queries {
        let raw = tutela_analytics::RawHit::from_query(q);
        let p = analytics
            .prepare_with(&mut cache, &raw, &client, false, now)
            .await;
        kinds.push(match p {
            Ok(tutela_analytics::Prepared::Track(_)) => "track".to_string(),
            Ok(tutela_analytics::Prepared::Skip(s)) => s.as_str().to_string(),
            Err(e) => format!("{e:?}"),
        });
    }
    assert_eq!(
        kinds,
        [
            "track",
            "track",
            "track",
            "track",
            "track",
            "track",
            "opted_out",
            "TokenRequired",
            "track",
            "bot",
            "UnknownSite",
            "not_recorded",
            "track"
        ]
    );
}

/// Page titles and event names are the page's or the action's own words: without the category
/// that declares the page or action (`url_without_query`), none of them is kept, like the URL.
#[tokio::test]
async fn titles_and_event_names_need_the_page_category() {
    let src = tutela_domain::EXAMPLE_REGISTER.replacen(
        r#"categories = ["ip_half", "device_summary", "page_url", "visitor_pseudonym"]"#,
        r#"categories = ["ip_half", "device_summary", "visitor_pseudonym"]"#,
        1,
    );
    assert_ne!(
        src,
        tutela_domain::EXAMPLE_REGISTER,
        "the example register changed"
    );
    let client = tutela_analytics::Client {
        ip: "203.0.113.77".parse().unwrap(),
        user_agent: Some(CHROME),
        dnt: false,
        gpc: false,
        opted_out: false,
    };
    let now = jiff::Timestamp::now();
    let page = "idsite=1&rec=1&url=http%3A%2F%2Fwww.example.com%2Fa&action_name=Dear%20Alice";
    let event = "idsite=1&rec=1&url=http%3A%2F%2Fwww.example.com%2Fa&e_c=Mail&e_a=Sent&e_n=alice%40example.com&e_v=2";
    for (source, declared) in [
        (src.as_str(), false),
        (tutela_domain::EXAMPLE_REGISTER, true),
    ] {
        // Named: without a page category the purpose is not found by its categories.
        let settings = AnalyticsSettings {
            purpose: Some("audience_statistics".into()),
            ..AnalyticsSettings::default()
        };
        let t = app_on(source, settings).await;
        let analytics = &t.state.analytics.analytics;
        let mut hits = Vec::new();
        for q in [page, event] {
            let raw = tutela_analytics::RawHit::from_query(q);
            match analytics.prepare(&raw, &client, false, now).await.unwrap() {
                tutela_analytics::Prepared::Track(h) => hits.push(h),
                other => panic!("{other:?}"),
            }
        }
        let (p, e) = (&hits[0], &hits[1]);
        assert_eq!(p.title.is_some(), declared, "{p:?}");
        assert_eq!(p.url.is_some(), declared, "{p:?}");
        for field in [&e.ev_category, &e.ev_action, &e.ev_name] {
            assert_eq!(field.is_some(), declared, "{e:?}");
        }
        assert_eq!(e.ev_value.is_some(), declared, "{e:?}");
    }
}

#[tokio::test]
async fn cdt_is_refused_in_the_future_and_past_retention() {
    let t = app().await;
    let track = token(&t.state, &["analytics:track"]).await;
    let url = enc("https://www.example.com/when");
    let now = jiff::Timestamp::now().as_second();
    let at = |ts: i64| format!("idsite=1&rec=1&url={url}&cdt={ts}&token_auth={track}&send_image=0");
    // Ten years ahead, an hour ahead, 181 days back: refused like any invalid request.
    for ts in [now + 10 * 365 * 86_400, now + 3_600, now - 181 * 86_400] {
        let a = hit(&t, &at(ts), "127.0.0.1", CHROME).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{ts}: {}", a.text());
        assert!(a.text().contains("cdt"), "{}", a.text());
    }
    // The date form too.
    let future = jiff::Timestamp::from_second(now + 400 * 86_400)
        .unwrap()
        .strftime("%Y-%m-%d %H:%M:%S")
        .to_string();
    let a = hit(
        &t,
        &format!(
            "idsite=1&rec=1&url={url}&cdt={}&token_auth={track}",
            enc(&future)
        ),
        "127.0.0.1",
        CHROME,
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    // In a bulk request they count as invalid.
    let body = json!({"requests": [format!("?{}", at(now + 86_400)), format!("?{}", at(now - 60))], "token_auth": track});
    let b = send(
        &t.app,
        "POST",
        "/matomo.php",
        "127.0.0.1",
        &[("user-agent", CHROME)],
        &body.to_string(),
    )
    .await;
    assert_eq!(b.status, StatusCode::OK, "{}", b.text());
    assert_eq!(b.json()["tracked"], 1);
    assert_eq!(b.json()["invalid"], 1);
    // A little clock drift, and any time within retention, are fine.
    for ts in [now + 60, now - 86_400, now - 179 * 86_400] {
        let a = hit(&t, &at(ts), "127.0.0.1", CHROME).await;
        assert_eq!(a.status, StatusCode::NO_CONTENT, "{ts}: {}", a.text());
    }
    assert_eq!(t.state.store.analytics_event_count(1).await.unwrap(), 4);
}

#[tokio::test]
async fn retention_and_salt_destruction_reach_sites_no_longer_configured() {
    let t = app().await;
    let now = jiff::Timestamp::now();
    let url = enc("https://www.example.com/gone");
    for d in [200, 10] {
        record_at(
            &t,
            &format!("idsite=1&rec=1&url={url}&_id=1234123412341234"),
            now.as_second() - d * 86_400,
        )
        .await;
    }
    // A cookieless hit today: site 1 gets a daily salt.
    record_at(&t, &format!("idsite=1&rec=1&url={url}"), now.as_second()).await;
    assert_eq!(t.state.store.analytics_event_count(1).await.unwrap(), 3);
    assert!(
        !t.state
            .store
            .analytics_salt_periods(1, "daily")
            .await
            .unwrap()
            .is_empty()
    );

    // The configuration now has only site 2 (same store).
    let register = tutela_domain::load(tutela_domain::EXAMPLE_REGISTER, "example").unwrap();
    let only_two: Vec<SiteConfig> = sites().into_iter().filter(|s| s.id == 2).collect();
    let later = tutela_analytics::Analytics::start(
        AnalyticsSettings::default(),
        &only_two,
        &register,
        t.state.store.clone(),
    )
    .unwrap();
    let purged = later.purge_expired(now).await.unwrap();
    let one = purged
        .iter()
        .find(|(s, _)| *s == 1)
        .expect("site 1 is purged");
    assert_eq!(one.1.events, 1);
    assert_eq!(t.state.store.analytics_event_count(1).await.unwrap(), 2);
    // Days of a site no longer configured are UTC days.
    let limit = now
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .checked_sub(jiff::Span::new().days(180))
        .unwrap()
        .date();
    let oldest = t
        .state
        .store
        .analytics_oldest_day(1)
        .await
        .unwrap()
        .unwrap();
    assert!(tutela_analytics::day_from_number(oldest).unwrap() > limit);
    // Its daily salt is destroyed once its day is over.
    let tomorrow = now + jiff::SignedDuration::from_hours(48);
    assert!(later.rotate_salts(tomorrow).await.unwrap() >= 1);
    assert!(
        t.state
            .store
            .analytics_salt_periods(1, "daily")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        t.state
            .store
            .analytics_site_ids()
            .await
            .unwrap()
            .contains(&1)
    );
}

#[tokio::test]
async fn without_an_analytics_purpose_data_keeps_the_last_declared_retention() {
    let t = app().await;
    let now = jiff::Timestamp::now();
    let url = enc("https://www.example.com/x");
    for d in [200, 10] {
        record_at(
            &t,
            &format!("idsite=1&rec=1&url={url}&_id=1234123412341234"),
            now.as_second() - d * 86_400,
        )
        .await;
    }
    let register = tutela_domain::load(tutela_domain::EXAMPLE_REGISTER, "example").unwrap();
    let mut without = register.clone();
    without.purposes.retain(|p| p.id != "audience_statistics");
    let start = |reg: &tutela_domain::Register| {
        tutela_analytics::Analytics::start(
            AnalyticsSettings::default(),
            &sites(),
            reg,
            t.state.store.clone(),
        )
        .unwrap()
    };
    // No stored register version ever declared the purpose: the data has no declared
    // retention, it is kept (and a warning logged).
    let a = start(&without);
    assert!(a.policy.is_none());
    assert_eq!(a.effective_retention().await.unwrap(), None);
    assert!(a.purge_expired(now).await.unwrap().is_empty());
    assert_eq!(t.state.store.analytics_event_count(1).await.unwrap(), 2);
    // A former version declared it (180 days), then the current one dropped it: purged with
    // the former retention.
    let json = |r: &tutela_domain::Register| serde_json::to_string(r).unwrap();
    t.state
        .store
        .record_register_version(&register.content_hash(), None, &json(&register), 1)
        .await
        .unwrap();
    t.state
        .store
        .record_register_version(&without.content_hash(), None, &json(&without), 2)
        .await
        .unwrap();
    let a = start(&without);
    let (purpose, retention) = a.effective_retention().await.unwrap().unwrap();
    assert_eq!(
        (purpose.as_str(), retention.canonical().as_str()),
        ("audience_statistics", "180 days")
    );
    let purged = a.purge_expired(now).await.unwrap();
    assert_eq!(purged.iter().find(|(s, _)| *s == 1).unwrap().1.events, 1);
    assert_eq!(t.state.store.analytics_event_count(1).await.unwrap(), 1);
}

#[tokio::test]
async fn the_optout_page_says_what_the_register_and_settings_say() {
    let t = app().await;
    let page = send(&t.app, "GET", "/optout", "127.0.0.1", &[], "")
        .await
        .text();
    assert!(!page.contains("counted anonymously"), "{page}");
    assert!(page.contains("under a pseudonym"), "{page}");
    for label in [
        "First half of the IP address",
        "Pseudonymous visitor identifier",
        "180 days",
        "never shared",
        "Do Not Track and Global Privacy Control are honoured",
    ] {
        assert!(page.contains(label), "{label}: {page}");
    }
    let fr = send(&t.app, "GET", "/optout?lang=fr", "127.0.0.1", &[], "")
        .await
        .text();
    assert!(
        fr.contains("180 jours") && fr.contains("Identifiant pseudonyme du visiteur"),
        "{fr}"
    );

    // DNT not honoured, GPC honoured; a shorter retention and one category less.
    let src =
        tutela_domain::EXAMPLE_REGISTER.replacen("keep = \"180 days\"", "keep = \"90 days\"", 1);
    assert_ne!(src, tutela_domain::EXAMPLE_REGISTER);
    let t = app_on(
        &src,
        AnalyticsSettings {
            honour_dnt: false,
            ..AnalyticsSettings::default()
        },
    )
    .await;
    let page = send(&t.app, "GET", "/optout", "127.0.0.1", &[], "")
        .await
        .text();
    assert!(
        page.contains("90 days") && !page.contains("180 days"),
        "{page}"
    );
    assert!(
        page.contains("Global Privacy Control is honoured; Do Not Track is not"),
        "{page}"
    );
}
