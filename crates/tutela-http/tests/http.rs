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
    for uri in [
        "/privacy",
        "/healthz",
        "/api/v1/register",
        "/nope",
        "/matomo.php?idsite=1&rec=1&send_image=0",
    ] {
        let a = get(&t.app, uri, &[]).await;
        for name in [
            header::CONTENT_SECURITY_POLICY,
            header::X_CONTENT_TYPE_OPTIONS,
            header::REFERRER_POLICY,
            header::X_FRAME_OPTIONS,
        ] {
            assert_eq!(a.headers.get_all(&name).iter().count(), 1, "{uri}: {name}");
        }
        assert_eq!(a.headers[header::X_FRAME_OPTIONS], "DENY", "{uri}");
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

async fn send(
    app: &axum::Router,
    method: &str,
    uri: &str,
    token: &str,
    body: Option<serde_json::Value>,
) -> (StatusCode, serde_json::Value, axum::http::HeaderMap) {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {token}"));
    let body = match body {
        Some(v) => {
            req = req.header("content-type", "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    let res = app.clone().oneshot(req.body(body).unwrap()).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let v = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (status, v, headers)
}

#[tokio::test]
async fn vault_api_round_trip_with_scopes_and_audit() {
    use serde_json::json;
    let t = app().await;
    let writer = make_token(&t.state, &["vault:write"], None).await;
    let reader = make_token(&t.state, &["vault:read"], None).await;
    let reader_id = reader.split('_').nth(1).unwrap().to_string();

    // Create a subject by identifiers (in the body, never the URL).
    let (st, v, h) = send(&t.app, "POST", "/api/v1/subjects", &writer,
        Some(json!({"identifiers": [{"kind": "email", "value": "Alice@Example.com"}, {"kind": "account_id", "value": "acct-1"}]}))).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(h[header::CACHE_CONTROL], "no-store");
    let sid = v["subject_id"].as_str().unwrap().to_string();
    assert_eq!(sid.len(), 32);
    let (st, v, _) = send(
        &t.app,
        "POST",
        "/api/v1/subjects",
        &writer,
        Some(json!({"identifiers": [{"kind": "email", "value": "alice@example.com"}]})),
    )
    .await;
    assert_eq!((st, v["created"].as_bool()), (StatusCode::OK, Some(false)));
    assert_eq!(v["subject_id"], sid.as_str());

    // Records.
    let (st, v, _) = send(&t.app, "POST", &format!("/api/v1/subjects/{sid}/records"), &writer, Some(json!({"records": [
        {"purpose": "customer_accounts", "category": "email", "payload": {"email": "alice@example.com"}, "source": "signup-form"},
        {"purpose": "support", "category": "support_messages", "payload": {"text": "hello"}, "source": "chat", "collected_at": "2026-11-01T00:00:00Z"}
    ]}))).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["records"][0]["deadline"], serde_json::Value::Null);
    assert_eq!(v["records"][0]["waiting_for"], "contract_ended");
    assert_eq!(v["records"][1]["deadline"], "2029-11-01T00:00:00Z");
    let support_id = v["records"][1]["id"].as_i64().unwrap();

    // Refusals map to their codes.
    for (record, code, status) in [
        (
            json!({"purpose": "marketing", "category": "email", "payload": 1, "source": "x"}),
            "undeclared_purpose",
            422,
        ),
        (
            json!({"purpose": "support", "category": "resume", "payload": 1, "source": "x"}),
            "undeclared_category",
            422,
        ),
        (
            json!({"purpose": "customer_accounts", "category": "payment_card", "payload": 1, "source": "x"}),
            "never_store_category",
            422,
        ),
        (
            json!({"purpose": "support", "category": "support_messages", "payload": {"t": "4111111111111111"}, "source": "x"}),
            "card_number_refused",
            422,
        ),
        (
            json!({"purpose": "support", "category": "support_messages", "payload": 1, "source": "x", "extra": 1}),
            "bad_request",
            400,
        ),
    ] {
        let (st, v, _) = send(
            &t.app,
            "POST",
            &format!("/api/v1/subjects/{sid}/records"),
            &writer,
            Some(json!({"records": [record]})),
        )
        .await;
        assert_eq!(
            (st.as_u16(), v["code"].as_str().unwrap()),
            (status, code),
            "{v}"
        );
        assert!(!v["message"].as_str().unwrap().contains("4111"));
    }
    // Scopes: the reader can't write, the writer can't read.
    let (st, _, _) = send(
        &t.app,
        "POST",
        &format!("/api/v1/subjects/{sid}/records"),
        &reader,
        Some(json!({"records": []})),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _, _) = send(
        &t.app,
        "GET",
        &format!("/api/v1/subjects/{sid}?purpose=support"),
        &writer,
        None,
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    // Lookup by identifier (POST body), then read everything, grouped by purpose.
    let (st, v, _) = send(
        &t.app,
        "POST",
        "/api/v1/subjects/lookup",
        &reader,
        Some(
            json!({"identifier": {"kind": "account_id", "value": "acct-1"}, "purpose": "support"}),
        ),
    )
    .await;
    assert_eq!(
        (st, v["subject_id"].as_str()),
        (StatusCode::OK, Some(sid.as_str()))
    );
    let (st, v, _) = send(&t.app, "POST", "/api/v1/subjects/lookup", &reader,
        Some(json!({"identifier": {"kind": "email", "value": "nobody@example.com"}, "purpose": "support"}))).await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("subject_not_found"))
    );
    let (st, v, _) = send(
        &t.app,
        "GET",
        &format!("/api/v1/subjects/{sid}"),
        &reader,
        None,
    )
    .await;
    assert_eq!(
        st,
        StatusCode::BAD_REQUEST,
        "a read must say its purpose: {v}"
    );
    let (st, v, _) = send(
        &t.app,
        "GET",
        &format!("/api/v1/subjects/{sid}?purpose=gossip"),
        &reader,
        None,
    )
    .await;
    assert_eq!(v["code"], "undeclared_purpose", "{st}");
    let (st, v, _) = send(
        &t.app,
        "GET",
        &format!("/api/v1/subjects/{sid}?purpose=support"),
        &reader,
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["purposes"][0]["purpose"], "customer_accounts");
    assert_eq!(v["purposes"][1]["records"][0]["payload"]["text"], "hello");
    assert_eq!(v["identifiers"].as_array().unwrap().len(), 2);
    assert!(
        !v.to_string().contains("acct-1"),
        "identifiers are not returned (not stored)"
    );
    let (st, v, _) = send(
        &t.app,
        "GET",
        &format!("/api/v1/subjects/{sid}/records/{support_id}?purpose=support"),
        &reader,
        None,
    )
    .await;
    assert_eq!(
        (st, v["payload"]["text"].as_str()),
        (StatusCode::OK, Some("hello"))
    );

    // Update, event, erasure.
    let (st, v, _) = send(
        &t.app,
        "PATCH",
        &format!("/api/v1/subjects/{sid}/records/{support_id}"),
        &writer,
        Some(json!({"legal_hold": true})),
    )
    .await;
    assert_eq!(
        (st, v["legal_hold"].as_bool(), &v["payload"]),
        (StatusCode::OK, Some(true), &serde_json::Value::Null)
    );
    let (st, v, _) = send(
        &t.app,
        "POST",
        &format!("/api/v1/subjects/{sid}/events"),
        &writer,
        Some(json!({"event": "contract_ended", "at": "2026-11-29T00:00:00Z"})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["purposes"][0]["records_updated"], 1);
    let (st, v, _) = send(
        &t.app,
        "POST",
        &format!("/api/v1/subjects/{sid}/events"),
        &writer,
        Some(json!({"event": "contract_ended", "purpose": "support"})),
    )
    .await;
    assert_eq!(
        (st.as_u16(), v["code"].as_str()),
        (422, Some("event_not_applicable"))
    );
    let (st, v, _) = send(
        &t.app,
        "POST",
        &format!("/api/v1/subjects/{sid}/erasure"),
        &writer,
        Some(json!({})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["subject_shredded"], false);
    let reasons: Vec<&str> = v["kept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons.len(), 2);
    assert!(reasons.contains(&"legal_hold") && reasons.contains(&"legal_obligation"));

    // Bad subject ids never reach the database.
    let (st, v, _) = send(
        &t.app,
        "GET",
        "/api/v1/subjects/not-an-id?purpose=support",
        &reader,
        None,
    )
    .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("subject_not_found"))
    );

    // Every read by the reader token is in the audit log under its id.
    let trail = t.state.vault.audit_of_subject(&sid).await.unwrap();
    let reads: Vec<(&str, &str)> = trail
        .iter()
        .filter(|e| e.actor == format!("token:{reader_id}"))
        .map(|e| (e.action.as_str(), e.purpose.as_str()))
        .collect();
    assert_eq!(
        reads,
        [
            ("lookup", "support"),
            ("read", "support"),
            ("read", "support")
        ]
    );
}

#[tokio::test]
async fn vault_api_bounds_its_inputs() {
    use serde_json::json;
    let t = app().await;
    let writer = make_token(&t.state, &["vault:write"], None).await;
    let long = "a".repeat(2000);
    let (st, v, _) = send(
        &t.app,
        "POST",
        "/api/v1/subjects",
        &writer,
        Some(json!({"identifiers": [{"kind": "email", "value": format!("{long}@example.com")}]})),
    )
    .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_identifier"))
    );
    let (st, v, _) = send(
        &t.app,
        "POST",
        "/api/v1/subjects",
        &writer,
        Some(json!({"identifiers": [{"kind": "shoe_size", "value": "44"}]})),
    )
    .await;
    assert_eq!(v["code"], "invalid_identifier", "{st}");
    let many: Vec<_> = (0..17)
        .map(|i| json!({"kind": "login", "value": format!("u{i}")}))
        .collect();
    let (st, _, _) = send(
        &t.app,
        "POST",
        "/api/v1/subjects",
        &writer,
        Some(json!({"identifiers": many})),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (_, v, _) = send(
        &t.app,
        "POST",
        "/api/v1/subjects",
        &writer,
        Some(json!({"identifiers": [{"kind": "login", "value": "zed"}]})),
    )
    .await;
    let sid = v["subject_id"].as_str().unwrap().to_string();
    let records: Vec<_> = (0..101).map(|_| json!({"purpose": "support", "category": "support_messages", "payload": 1, "source": "x"})).collect();
    let (st, _, _) = send(
        &t.app,
        "POST",
        &format!("/api/v1/subjects/{sid}/records"),
        &writer,
        Some(json!({"records": records})),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    // Over 1 MiB: refused before parsing.
    let big: Vec<_> = (0..20).map(|_| json!({"purpose": "support", "category": "support_messages", "payload": "x".repeat(60_000), "source": "x"})).collect();
    let (st, v, _) = send(
        &t.app,
        "POST",
        &format!("/api/v1/subjects/{sid}/records"),
        &writer,
        Some(json!({"records": big})),
    )
    .await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large"))
    );
    // Over 64 KiB for one payload.
    let (st, v, _) = send(&t.app, "POST", &format!("/api/v1/subjects/{sid}/records"), &writer,
        Some(json!({"records": [{"purpose": "support", "category": "support_messages", "payload": "x".repeat(70_000), "source": "x"}]}))).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let (st, _, _) = send(
        &t.app,
        "POST",
        &format!("/api/v1/subjects/{sid}/records"),
        &writer,
        Some(json!({"records": [{"purpose": "support"}]})),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn openapi_document_lists_the_vault_routes() {
    let t = app().await;
    let a = get(&t.app, "/api/v1/openapi.json", &[]).await;
    assert_eq!(a.status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    assert!(v["openapi"].as_str().unwrap().starts_with("3."));
    let paths = v["paths"].as_object().unwrap();
    for p in [
        "/api/v1/subjects",
        "/api/v1/subjects/lookup",
        "/api/v1/subjects/{subject_id}",
        "/api/v1/subjects/{subject_id}/records",
        "/api/v1/subjects/{subject_id}/records/{record_id}",
        "/api/v1/subjects/{subject_id}/events",
        "/api/v1/subjects/{subject_id}/erasure",
        "/api/v1/subjects/{subject_id}/identifiers",
    ] {
        assert!(
            paths.contains_key(p),
            "{p} missing from the OpenAPI document"
        );
    }
    assert!(v["components"]["securitySchemes"]["bearer"].is_object());
    assert!(
        v["components"]["schemas"]["ErrorCode"]
            .to_string()
            .contains("card_number_refused")
    );
}
