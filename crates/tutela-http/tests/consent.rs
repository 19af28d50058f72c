//! The consent endpoints through the real router (in-process).

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use tutela_http::consent::ConsentOptions;
use tutela_http::{AppState, LoadedRegister, build_app};
use tutela_store::Store;

struct TestApp {
    app: axum::Router,
    state: AppState,
    _dir: tempfile::TempDir,
}

async fn app_with(source: &str, options: Option<ConsentOptions>) -> TestApp {
    let register = tutela_domain::load(source, "test").expect("register is valid");
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_data_dir(dir.path()).await.unwrap();
    let vault = tutela_vault::Vault::new(
        store.clone(),
        std::sync::Arc::new(register.clone()),
        tutela_vault::VaultKeys::generate().unwrap(),
    );
    let analytics = tutela_analytics::Analytics::start(
        tutela_analytics::AnalyticsSettings::default(),
        &tutela_analytics::SiteConfig::default_sites(),
        &register,
        store.clone(),
    )
    .unwrap();
    let mut state = AppState::new(
        LoadedRegister {
            hash: register.content_hash(),
            register,
            last_updated: jiff::civil::date(2026, 11, 29),
        },
        store,
        vault,
        analytics,
    );
    if let Some(o) = options {
        state = state.with_consent_options(&o);
    }
    TestApp {
        app: build_app(state.clone()),
        state,
        _dir: dir,
    }
}

async fn app() -> TestApp {
    app_with(tutela_domain::EXAMPLE_REGISTER, None).await
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

async fn send(app: &axum::Router, req: Request<Body>) -> Answer {
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

async fn get(app: &axum::Router, uri: &str, headers: &[(&str, &str)]) -> Answer {
    let mut req = Request::get(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send(app, req.body(Body::empty()).unwrap()).await
}

async fn post(app: &axum::Router, uri: &str, body: &str, headers: &[(&str, &str)]) -> Answer {
    let mut req = Request::post(uri).header(header::CONTENT_TYPE, "text/plain;charset=UTF-8");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send(app, req.body(Body::from(body.to_string())).unwrap()).await
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
    format!("Bearer {}", new.token.as_str())
}

#[tokio::test]
async fn the_banner_script_and_stylesheet_come_from_the_register() {
    let t = app().await;
    let reg = &t.state.register.register;
    let js = get(&t.app, "/consent.js", &[]).await;
    assert_eq!(js.status, StatusCode::OK);
    assert!(
        js.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    assert!(!js.body.contains("__TUTELA_CONSENT_CONFIG__"));
    let revision = &reg.latest_revision().unwrap().id;
    assert!(
        js.body.contains(&format!("\"revision\":\"{revision}\"")),
        "revision missing"
    );
    assert!(js.body.contains("\"name\":\"tutela_consent\""));
    for service in ["meta", "linkedin", "parlo", "audience_statistics"] {
        assert!(
            js.body.contains(&format!("\"id\":\"{service}\"")),
            "{service}"
        );
    }
    // Revalidation.
    let etag = js.headers[header::ETAG].to_str().unwrap().to_string();
    let again = get(&t.app, "/consent.js", &[("if-none-match", &etag)]).await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);

    let css = get(&t.app, "/consent.css", &[]).await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(
        css.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
    assert!(css.body.contains(".tutela-consent"));

    let cfg = get(&t.app, "/api/v1/consent/config", &[]).await.json();
    assert_eq!(cfg["revision"], revision.as_str());
    let ids: Vec<&str> = cfg["categories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["functional", "analytics", "targeting"]);
    assert!(cfg["cookie"]["max_age"].as_i64().unwrap() > 180 * 86_400);

    // A new revision in the register changes the script.
    let changed = format!(
        "{}\n[[revisions]]\nid = \"2027-1\"\ndate = \"2027-01-15\"\nsummary.en = \"Changed.\"\nsummary.fr = \"Changé.\"\n",
        tutela_domain::EXAMPLE_REGISTER
    );
    let t2 = app_with(&changed, None).await;
    let js2 = get(&t2.app, "/consent.js", &[]).await;
    assert!(js2.body.contains("\"revision\":\"2027-1\""));
    assert_ne!(js2.headers[header::ETAG], js.headers[header::ETAG]);
}

#[tokio::test]
async fn a_choice_is_recorded_and_its_receipt_shows_the_history() {
    let t = app().await;
    let first = post(
        &t.app,
        "/api/v1/consent",
        r#"{"choices": {"functional": true, "analytics": true, "targeting": false}, "method": "banner", "language": "fr"}"#,
        &[],
    )
    .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    let v = first.json();
    let id = v["consent_id"].as_str().unwrap().to_string();
    assert!(tutela_domain::consent::is_uuid(&id));
    assert_eq!(v["method"], "banner");
    assert_eq!(v["choices"]["analytics"]["granted"], true);
    assert_eq!(v["choices"]["targeting"]["services"]["meta"], false);
    // Kept 5 years, as the register says.
    let until: jiff::Timestamp = v["delete_after"].as_str().unwrap().parse().unwrap();
    let years = (until.as_second() - jiff::Timestamp::now().as_second()) / (365 * 86_400);
    assert_eq!(years, 5, "{}", v["delete_after"]);

    // Withdrawal is a new record under the same consent id.
    let second = post(
        &t.app,
        "/api/v1/consent",
        &json!({"consent_id": id, "withdraw": true, "method": "banner"}).to_string(),
        &[],
    )
    .await;
    assert_eq!(second.status, StatusCode::CREATED, "{}", second.body);
    assert_eq!(second.json()["consent_id"], id.as_str());

    let r = get(&t.app, &format!("/api/v1/consent/{id}"), &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.headers[header::CACHE_CONTROL], "no-store");
    let r = r.json();
    assert_eq!(r["piiPrincipalId"], id.as_str());
    assert_eq!(r["version"], "KI-CR-v1.1.0");
    assert_eq!(r["language"], "fr");
    assert_eq!(r["record"]["events"].as_array().unwrap().len(), 2);
    assert_eq!(
        r["record"]["current_state"]["analytics"]["state"],
        "withdrawn"
    );
    assert_eq!(
        r["record"]["current_state"]["targeting"]["state"],
        "refused"
    );
    assert_eq!(r["consentReceiptID"], second.json()["record_id"]);

    // Unknown and malformed ids.
    let missing = get(
        &t.app,
        "/api/v1/consent/3f2c1e9a-8b7d-4c6e-9f01-23456789abcd",
        &[],
    )
    .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.json()["code"], "not_found");
    let bad = get(&t.app, "/api/v1/consent/not-an-id", &[]).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    // What a collector asks before storing consent-based data.
    let granted = t
        .state
        .store
        .consent_granted(&id, tutela_store::ConsentCategory::Analytics)
        .await
        .unwrap();
    assert_eq!(granted, Some(false));
}

#[tokio::test]
async fn gpc_refuses_targeting_and_says_so() {
    let t = app().await;
    let a = post(
        &t.app,
        "/api/v1/consent",
        r#"{"choices": {"analytics": true}, "method": "api"}"#,
        &[("sec-gpc", "1")],
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    let v = a.json();
    assert_eq!(v["method"], "gpc");
    assert_eq!(v["gpc"], true);
    assert_eq!(v["choices"]["targeting"]["granted"], false);
    assert_eq!(v["choices"]["analytics"]["granted"], true);
    let r = get(
        &t.app,
        &format!("/api/v1/consent/{}", v["consent_id"].as_str().unwrap()),
        &[],
    )
    .await
    .json();
    assert_eq!(r["collectionMethod"], "gpc");
    assert_eq!(r["record"]["events"][0]["gpc"], true);
}

#[tokio::test]
async fn other_consent_managers_post_their_payloads_as_they_are() {
    let t = app().await;
    // vanilla-cookieconsent v3: the `cookie` its callbacks receive.
    let vcc = json!({
        "categories": ["necessary", "analytics"],
        "revision": 0, "data": null,
        "consentTimestamp": "2026-11-29T10:00:00.000Z",
        "consentId": "0b6f7c3e-2f7a-4d5e-8c9b-1a2b3c4d5e6f",
        "services": {"analytics": ["audience_statistics"]},
        "lastConsentTimestamp": "2026-11-29T10:00:00.000Z",
        "languageCode": "en", "expirationTime": 1_780_000_000_000i64
    });
    let a = post(&t.app, "/api/v1/consent", &vcc.to_string(), &[]).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    let v = a.json();
    assert_eq!(v["source"], "vanilla-cookieconsent");
    assert_eq!(v["consent_id"], "0b6f7c3e-2f7a-4d5e-8c9b-1a2b3c4d5e6f");
    assert_eq!(v["choices"]["targeting"]["granted"], false);
    assert_eq!(v["choices"]["analytics"]["granted"], true);

    // Klaro: the data of its saveConsents notification.
    let klaro = json!({"changes": {"meta": true}, "consents": {"meta": true, "linkedin": false, "audience_statistics": true}, "type": "save"});
    let b = post(
        &t.app,
        "/api/v1/consent?source=klaro",
        &klaro.to_string(),
        &[("content-type", "application/json")],
    )
    .await;
    assert_eq!(b.status, StatusCode::CREATED, "{}", b.body);
    let v = b.json();
    assert_eq!(v["source"], "klaro");
    assert_eq!(v["choices"]["targeting"]["services"]["linkedin"], false);
    assert_eq!(v["choices"]["targeting"]["services"]["meta"], true);
}

#[tokio::test]
async fn bad_requests_get_clear_errors_and_store_nothing() {
    let t = app().await;
    let cases: [(&str, StatusCode, &str); 5] = [
        ("not json", StatusCode::BAD_REQUEST, "not valid JSON"),
        (
            r#"{"choices": {"marketing": true}}"#,
            StatusCode::BAD_REQUEST,
            "unknown cookie category `marketing`",
        ),
        (
            r#"{"choices": {"analytics": true}, "consent_id": "192.168.1.20"}"#,
            StatusCode::BAD_REQUEST,
            "UUID",
        ),
        (r#"{"whatever": 1}"#, StatusCode::BAD_REQUEST, "neither"),
        (
            r#"{"choices": {"analytics": true}, "revision": "1999-1"}"#,
            StatusCode::BAD_REQUEST,
            "unknown register revision",
        ),
    ];
    for (body, status, message) in cases {
        let a = post(&t.app, "/api/v1/consent", body, &[]).await;
        assert_eq!(a.status, status, "{body}: {}", a.body);
        let v = a.json();
        assert_eq!(v["code"], "bad_request");
        assert!(
            v["message"].as_str().unwrap().contains(message),
            "{body}: {}",
            a.body
        );
    }
    let big = format!(
        r#"{{"choices": {{"analytics": true}}, "pad": "{}"}}"#,
        "x".repeat(20_000)
    );
    let a = post(&t.app, "/api/v1/consent", &big, &[]).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(a.json()["code"], "payload_too_large");
    let a = post(
        &t.app,
        "/api/v1/consent?source=xyz",
        r#"{"choices": {"analytics": true}}"#,
        &[],
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let all = t
        .state
        .store
        .consent_records_between(0, i64::MAX, 0, 100)
        .await
        .unwrap();
    assert!(
        all.is_empty(),
        "refused requests stored {} records",
        all.len()
    );
}

#[tokio::test]
async fn only_allowed_origins_may_post() {
    let body = r#"{"choices": {"analytics": true}, "method": "banner"}"#;
    let t = app().await;
    // Another site: refused by default.
    let a = post(
        &t.app,
        "/api/v1/consent",
        body,
        &[
            ("origin", "https://evil.example"),
            ("host", "tutela.example.com"),
        ],
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(a.json()["code"], "origin_not_allowed");
    assert!(a.headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
    // Same origin: fine, and the site is recorded as that origin.
    let a = post(
        &t.app,
        "/api/v1/consent",
        body,
        &[
            ("origin", "https://tutela.example.com"),
            ("host", "tutela.example.com"),
        ],
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);

    let opts = ConsentOptions {
        allowed_origins: vec!["https://www.nimbus.example.com/".into()],
        ..ConsentOptions::default()
    };
    let t = app_with(tutela_domain::EXAMPLE_REGISTER, Some(opts)).await;
    let site = [
        ("origin", "https://www.nimbus.example.com"),
        ("host", "tutela.example.com"),
    ];
    let a = post(&t.app, "/api/v1/consent", body, &site).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    assert_eq!(
        a.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://www.nimbus.example.com"
    );
    let id = a.json()["consent_id"].as_str().unwrap().to_string();
    let rec = t.state.store.consent_records(&id, 10).await.unwrap();
    assert_eq!(
        rec[0].site.as_deref(),
        Some("https://www.nimbus.example.com")
    );
    // Preflight for JSON posts, and the receipt readable from that site.
    let pre = send(
        &t.app,
        Request::options("/api/v1/consent")
            .header("origin", "https://www.nimbus.example.com")
            .header("host", "tutela.example.com")
            .header("access-control-request-method", "POST")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(pre.status, StatusCode::NO_CONTENT);
    assert!(
        pre.headers[header::ACCESS_CONTROL_ALLOW_HEADERS]
            .to_str()
            .unwrap()
            .contains("content-type")
    );
    let r = get(&t.app, &format!("/api/v1/consent/{id}"), &site).await;
    assert_eq!(
        r.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://www.nimbus.example.com"
    );
    let other = post(
        &t.app,
        "/api/v1/consent",
        body,
        &[
            ("origin", "https://other.example"),
            ("host", "tutela.example.com"),
        ],
    )
    .await;
    assert_eq!(other.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn one_address_is_rate_limited() {
    let opts = ConsentOptions {
        rate_limit_per_minute: 3,
        ..ConsentOptions::default()
    };
    let t = app_with(tutela_domain::EXAMPLE_REGISTER, Some(opts)).await;
    let from = |ip: &str| {
        let addr: SocketAddr = format!("{ip}:50000").parse().unwrap();
        Request::post("/api/v1/consent")
            .extension(ConnectInfo(addr))
            .body(Body::from(r#"{"choices": {"analytics": false}}"#))
            .unwrap()
    };
    for _ in 0..3 {
        assert_eq!(
            send(&t.app, from("192.0.2.7")).await.status,
            StatusCode::CREATED
        );
    }
    let limited = send(&t.app, from("192.0.2.7")).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.json()["code"], "too_many_requests");
    assert!(limited.headers.get(header::RETRY_AFTER).is_some());
    // Another address is not affected.
    assert_eq!(
        send(&t.app, from("192.0.2.8")).await.status,
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn without_a_proof_purpose_nothing_is_stored() {
    // The example register without its proof-of-consent purpose and category.
    let src = tutela_domain::EXAMPLE_REGISTER;
    let start = src.find("[[purposes]]\nid = \"proof_of_consent\"").unwrap();
    let end = start + src[start..].find("# ----------").unwrap();
    let mut edited = format!("{}{}", &src[..start], &src[end..]);
    let cstart = edited
        .find("[[categories]]\nid = \"consent_record\"")
        .unwrap();
    let cend = cstart + edited[cstart..].find("\n\n").unwrap();
    edited.replace_range(cstart..cend, "");
    let t = app_with(&edited, None).await;
    let a = post(
        &t.app,
        "/api/v1/consent",
        r#"{"choices": {"analytics": true}}"#,
        &[],
    )
    .await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.body);
    assert_eq!(a.json()["code"], "not_declared");
    // And the banner then keeps the choice for the browser session only.
    let cfg = get(&t.app, "/api/v1/consent/config", &[]).await.json();
    assert!(cfg["cookie"]["max_age"].is_null());
}

#[tokio::test]
async fn the_dpo_exports_proof_and_reads_daily_figures() {
    let t = app().await;
    for body in [
        r#"{"choices": {"analytics": true, "targeting": true}, "method": "banner"}"#,
        r#"{"choices": {"analytics": false, "targeting": false}, "method": "banner"}"#,
        r#"{"choices": {"analytics": true}, "method": "api"}"#,
    ] {
        assert_eq!(
            post(&t.app, "/api/v1/consent", body, &[]).await.status,
            StatusCode::CREATED
        );
    }
    let today = jiff::Timestamp::now()
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .date()
        .to_string();

    // Without a token, or with the wrong scope: refused.
    assert_eq!(
        get(&t.app, "/api/v1/consent/export", &[]).await.status,
        StatusCode::UNAUTHORIZED
    );
    let wrong = token(&t.state, &["vault:read"]).await;
    let a = get(
        &t.app,
        "/api/v1/consent/export",
        &[("authorization", &wrong)],
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let auth = token(&t.state, &["consent:read"]).await;

    let jsonl = get(
        &t.app,
        &format!("/api/v1/consent/export?from={today}&to={today}"),
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!(jsonl.status, StatusCode::OK, "{}", jsonl.body);
    assert!(
        jsonl.headers[header::CONTENT_DISPOSITION]
            .to_str()
            .unwrap()
            .contains(".jsonl")
    );
    let lines: Vec<Value> = jsonl
        .body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["choices"]["targeting"]["granted"], true);
    assert_eq!(lines[2]["method"], "api");
    assert_eq!(lines[0]["purpose"], "proof_of_consent");

    let csv = get(
        &t.app,
        &format!("/api/v1/consent/export?from={today}&to={today}&format=csv"),
        &[("authorization", &auth)],
    )
    .await;
    assert!(
        csv.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let mut reader = csv::Reader::from_reader(csv.body.as_bytes());
    let headers = reader.headers().unwrap().clone();
    assert_eq!(&headers[0], "record_id");
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 3);
    let col = headers.iter().position(|h| h == "analytics").unwrap();
    assert_eq!(&rows[1][col], "false");

    // A period before the records: empty.
    let old = get(
        &t.app,
        "/api/v1/consent/export?from=2020-01-01&to=2020-01-31",
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!(old.status, StatusCode::OK);
    assert!(old.body.is_empty());
    let bad = get(
        &t.app,
        "/api/v1/consent/export?from=yesterday",
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let inverted = get(
        &t.app,
        "/api/v1/consent/export?from=2026-02-01&to=2026-01-01",
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!(inverted.status, StatusCode::BAD_REQUEST);

    let stats = get(&t.app, "/api/v1/consent/stats", &[("authorization", &auth)]).await;
    assert_eq!(stats.status, StatusCode::OK, "{}", stats.body);
    let s = stats.json();
    let day = &s["days"][0];
    assert_eq!(day["date"], today.as_str());
    assert_eq!(day["records"], 3);
    assert_eq!(day["categories"]["analytics"]["granted"], 2);
    assert_eq!(day["categories"]["analytics"]["refused"], 1);
    assert_eq!(day["categories"]["targeting"]["rate"], 0.5);
}
