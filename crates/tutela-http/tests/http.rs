//! HTTP tests through the real router (in-process, no socket).

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use tower::ServiceExt;
use tutela_http::{AppState, LoadedRegister, build_app};
use tutela_store::Store;

struct TestApp {
    app: axum::Router,
    state: AppState,
    _dir: tempfile::TempDir,
}

async fn app() -> TestApp {
    let register = tutela_domain::load(tutela_domain::EXAMPLE_REGISTER, "example")
        .expect("example register is valid");
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_data_dir(dir.path()).await.unwrap();
    let analytics = tutela_analytics::Analytics::start(
        tutela_analytics::AnalyticsSettings::default(),
        &tutela_analytics::SiteConfig::default_sites(),
        &register,
        store.clone(),
    )
    .unwrap();
    let state = AppState::new(
        LoadedRegister {
            hash: register.content_hash(),
            register,
            last_updated: jiff::civil::date(2026, 11, 29),
        },
        store,
        analytics,
    );
    TestApp {
        app: build_app(state.clone()),
        state,
        _dir: dir,
    }
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

async fn get(app: &axum::Router, uri: &str, headers: &[(&str, &str)]) -> Answer {
    let mut req = Request::get(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

#[tokio::test]
async fn privacy_notice_negotiates_language() {
    let t = app().await;
    let reg = &t.state.register.register;
    // Without any preference: the register's default language.
    let default = get(&t.app, "/privacy", &[]).await;
    assert_eq!(default.status, StatusCode::OK);
    assert_eq!(
        default.headers[header::CONTENT_LANGUAGE],
        reg.notice.default_language.as_str()
    );

    let en = get(&t.app, "/privacy", &[("accept-language", "en-GB,en;q=0.8")]).await;
    assert_eq!(en.headers[header::CONTENT_LANGUAGE], "en");
    assert!(
        en.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(en.body.contains("<html lang=\"en\""));

    let fr = get(
        &t.app,
        "/privacy",
        &[("accept-language", "fr-FR,fr;q=0.9,en;q=0.5")],
    )
    .await;
    assert_eq!(fr.headers[header::CONTENT_LANGUAGE], "fr");
    assert!(fr.body.contains("<html lang=\"fr\""));

    // ?lang= overrides the header.
    let forced = get(&t.app, "/privacy?lang=en", &[("accept-language", "fr")]).await;
    assert_eq!(forced.headers[header::CONTENT_LANGUAGE], "en");

    // Every purpose of the register is on the page, in the page's language.
    for p in &reg.purposes {
        let escaped_en = p
            .label
            .get("en")
            .replace('\'', "&#39;")
            .replace('&', "&amp;");
        assert!(
            en.body.contains(p.label.get("en")) || en.body.contains(&escaped_en),
            "purpose {} missing from the English notice",
            p.id
        );
    }
    assert!(en.headers.get(header::VARY).is_some());
}

#[tokio::test]
async fn every_response_carries_security_headers() {
    let t = app().await;
    for uri in ["/privacy", "/healthz", "/api/v1/register", "/nope"] {
        let a = get(&t.app, uri, &[]).await;
        let csp = a.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'"), "{uri}: {csp}");
        assert!(csp.contains("default-src 'none'"), "{uri}: {csp}");
        assert_eq!(
            a.headers[header::X_CONTENT_TYPE_OPTIONS],
            "nosniff",
            "{uri}"
        );
        assert_eq!(a.headers[header::REFERRER_POLICY], "no-referrer", "{uri}");
    }
}

#[tokio::test]
async fn markdown_css_and_gpc() {
    let t = app().await;
    let md = get(&t.app, "/privacy.md?lang=fr", &[]).await;
    assert_eq!(md.status, StatusCode::OK);
    assert!(
        md.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/markdown")
    );
    assert!(
        md.body.starts_with('#'),
        "{}",
        &md.body[..40.min(md.body.len())]
    );

    let css = get(&t.app, "/assets/notice.css", &[]).await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(
        css.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );

    let gpc = get(&t.app, "/.well-known/gpc.json", &[]).await;
    let v: serde_json::Value = serde_json::from_str(&gpc.body).unwrap();
    assert_eq!(v["gpc"], true);
    assert_eq!(v["lastUpdate"], "2026-11-29");
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let t = app().await;
    assert_eq!(get(&t.app, "/healthz", &[]).await.status, StatusCode::OK);
    assert_eq!(get(&t.app, "/readyz", &[]).await.status, StatusCode::OK);
    let _ = get(&t.app, "/privacy", &[]).await;
    let m = get(&t.app, "/metrics", &[]).await;
    assert!(m.body.contains("tutela_http_requests_total"), "{}", m.body);
    assert!(m.body.contains("route=\"/privacy\""), "{}", m.body);

    // Once the database is gone, the node is not ready (but still alive).
    t.state.store.close().await;
    let r = get(&t.app, "/readyz", &[]).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["code"], "unavailable");
    assert_eq!(get(&t.app, "/healthz", &[]).await.status, StatusCode::OK);
}

#[tokio::test]
async fn register_api_and_ropa() {
    let t = app().await;
    let reg = &t.state.register.register;
    let a = get(&t.app, "/api/v1/register", &[]).await;
    let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(v["hash"], reg.content_hash());
    assert_eq!(
        v["register"]["purposes"].as_array().unwrap().len(),
        reg.purposes.len()
    );

    let csv = get(&t.app, "/api/v1/register/ropa.csv?lang=fr", &[]).await;
    assert!(
        csv.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    assert!(
        csv.headers[header::CONTENT_DISPOSITION]
            .to_str()
            .unwrap()
            .contains("ropa-fr.csv")
    );
    let mut rows = csv::Reader::from_reader(csv.body.as_bytes());
    assert!(rows.records().count() >= reg.purposes.len());

    let json = get(&t.app, "/api/v1/register/ropa.json", &[]).await;
    let text = json.body;
    for p in &reg.purposes {
        assert!(
            text.contains(&format!("\"{}\"", p.id)),
            "{} missing from ROPA JSON",
            p.id
        );
    }
}

#[tokio::test]
async fn unknown_routes_answer_json_errors() {
    let t = app().await;
    let a = get(&t.app, "/api/v1/nothing-here", &[]).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(v["code"], "not_found");
    assert!(v["message"].is_string());
}

async fn make_token(state: &AppState, scopes: &[&str], expires_at: Option<i64>) -> String {
    let new = tutela_crypto::token::new_token().unwrap();
    state
        .store
        .insert_api_token(&tutela_store::ApiToken {
            id: new.id.clone(),
            name: "test".into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            secret_hash: new.hash.to_vec(),
            created_at: 0,
            expires_at,
            revoked_at: None,
            last_used_at: None,
        })
        .await
        .unwrap();
    new.token.to_string()
}

#[tokio::test]
async fn bearer_tokens_are_checked() {
    let t = app().await;
    let good = make_token(&t.state, &["vault:read"], None).await;
    let expired = make_token(&t.state, &["admin"], Some(1)).await;

    let a = get(
        &t.app,
        "/api/v1/token",
        &[("authorization", &format!("Bearer {good}"))],
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(v["scopes"], serde_json::json!(["vault:read"]));
    assert!(
        !a.body.contains(&good[20..]),
        "the secret must not be echoed"
    );

    let none = get(&t.app, "/api/v1/token", &[]).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert!(
        none.headers[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    let v: serde_json::Value = serde_json::from_str(&none.body).unwrap();
    assert_eq!(v["code"], "unauthorized");

    // A wrong secret for a real id, a malformed token, an expired token: all refused.
    let mut wrong = good.clone();
    let last = wrong.pop().unwrap();
    wrong.push(if last == '0' { '1' } else { '0' });
    for bad in [wrong.as_str(), "tutela_nothing", expired.as_str()] {
        let a = get(
            &t.app,
            "/api/v1/token",
            &[("authorization", &format!("Bearer {bad}"))],
        )
        .await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{bad}");
    }

    // Revocation takes effect at once.
    let id = good.split('_').nth(1).unwrap();
    assert!(t.state.store.revoke_api_token(id, 10).await.unwrap());
    let a = get(
        &t.app,
        "/api/v1/token",
        &[("authorization", &format!("Bearer {good}"))],
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
}
