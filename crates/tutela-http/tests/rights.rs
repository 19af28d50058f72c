//! The rights portal and API through the real router: forms in both languages, CSRF
//! protections, the e-mail code and link read from the real .eml files, and the API with scopes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use tower::ServiceExt;
use tutela_http::{AppState, LoadedRegister, build_app};
use tutela_rights::{Mailer, RightsConfig, RightsKeys, RightsService, Transport};
use tutela_store::Store;

struct TestApp {
    app: axum::Router,
    state: AppState,
    dir: tempfile::TempDir,
}

impl TestApp {
    fn outbox(&self) -> PathBuf {
        self.dir.path().join("outbox")
    }
}

async fn app() -> TestApp {
    let register = tutela_domain::load(tutela_domain::EXAMPLE_REGISTER, "example").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_data_dir(&dir.path().join("data"))
        .await
        .unwrap();
    let mailer = Mailer::new(
        "dpo@nimbus.example",
        &Transport::File(dir.path().join("outbox")),
    )
    .unwrap();
    let rights = RightsService::new(
        store.clone(),
        Arc::new(register.clone()),
        RightsKeys::generate().unwrap(),
        Some(mailer),
        RightsConfig {
            public_url: "https://privacy.nimbus.example".into(),
            ..RightsConfig::default()
        },
    );
    let vault = tutela_vault::Vault::new(
        store.clone(),
        Arc::new(register.clone()),
        tutela_vault::VaultKeys::generate().unwrap(),
    );
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
        vault,
        analytics,
    )
    .with_rights(rights);
    TestApp {
        app: build_app(state.clone()),
        state,
        dir,
    }
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
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

fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

async fn post_form(
    app: &axum::Router,
    uri: &str,
    fields: &[(&str, &str)],
    headers: &[(&str, &str)],
) -> Answer {
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect();
    let mut req =
        Request::post(uri).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send(app, req.body(Body::from(body.join("&"))).unwrap()).await
}

async fn api(
    app: &axum::Router,
    method: &str,
    uri: &str,
    token: &str,
    body: Option<serde_json::Value>,
) -> (StatusCode, serde_json::Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {token}"));
    let body = match body {
        Some(v) => {
            req = req.header(header::CONTENT_TYPE, "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    let a = send(app, req.body(body).unwrap()).await;
    (
        a.status,
        serde_json::from_str(&a.body).unwrap_or(serde_json::Value::Null),
    )
}

async fn make_token(state: &AppState, scopes: &[&str]) -> String {
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

fn form_token(html: &str) -> String {
    let i = html
        .find("name=\"form_token\" value=\"")
        .expect("a form token")
        + "name=\"form_token\" value=\"".len();
    html[i..].split('"').next().unwrap().to_string()
}

fn mails(dir: &Path) -> Vec<String> {
    let mut files: Vec<_> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.map(|e| e.unwrap().path()).collect(),
        Err(_) => return vec![],
    };
    files.sort_by_key(|p| std::fs::metadata(p).unwrap().modified().unwrap());
    files
        .iter()
        .map(|p| {
            let raw = std::fs::read_to_string(p)
                .unwrap()
                .replace("=\r\n", "")
                .replace("=\n", "");
            // Undo quoted-printable escapes (enough for the ASCII parts the tests read).
            raw.replace("=3D", "=")
        })
        .collect()
}

fn code_in(mail: &str) -> String {
    mail.lines()
        .map(str::trim)
        .find(|l| l.len() == 6 && l.bytes().all(|b| b.is_ascii_digit()))
        .unwrap()
        .to_string()
}

fn request_id_in(html: &str) -> String {
    let i = html.find("/rights/requests/").unwrap() + "/rights/requests/".len();
    html[i..i + 32].to_string()
}

#[tokio::test]
async fn portal_form_in_both_languages_without_script() {
    let t = app().await;
    let en = get(&t.app, "/rights?lang=en", &[]).await;
    assert_eq!(en.status, StatusCode::OK);
    assert!(en.body.contains("Exercise your rights"));
    for kind in tutela_domain::rights::RightKind::ALL {
        assert!(
            en.body.contains(&format!("value=\"{}\"", kind.as_str())),
            "{kind}"
        );
    }
    assert!(
        en.body.contains("dpo@") || en.body.contains("mailto:"),
        "other channels from the register"
    );
    assert!(
        !en.body.contains("<script")
            && !en.body.contains("style=\"")
            && !en.body.contains("<style")
    );
    assert!(
        en.headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    assert_eq!(en.headers[header::CACHE_CONTROL], "no-store");
    let fr = get(&t.app, "/rights", &[("accept-language", "fr-FR,fr;q=0.9")]).await;
    assert!(fr.body.contains("Exercer vos droits") && fr.body.contains("lang=\"fr\""));
    assert!(
        fr.body
            .contains(tutela_domain::rights::RightKind::Erasure.label("fr"))
    );
    let css = get(&t.app, "/assets/rights.css", &[]).await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(
        css.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
    // The notice links to the portal.
    let notice = get(&t.app, "/privacy?lang=en", &[]).await;
    assert!(notice.body.contains("href=\"/rights\""));
}

#[tokio::test]
async fn portal_submission_code_verification_and_csrf() {
    let t = app().await;
    let page = get(&t.app, "/rights?lang=en", &[]).await;
    let token = form_token(&page.body);

    // No token, a forged token, a cross-site origin: refused, nothing filed, nothing mailed.
    let fields = |tok: &str| {
        vec![
            ("form_token", tok.to_string()),
            ("right", "access".to_string()),
            ("email", "hana@example.org".to_string()),
            ("text", "my data please".to_string()),
        ]
    };
    let as_ref = |v: &Vec<(&'static str, String)>| {
        v.iter().map(|(k, v)| (*k, v.clone())).collect::<Vec<_>>()
    };
    let f = as_ref(&fields(""));
    let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(
        post_form(&t.app, "/rights?lang=en", &f, &[]).await.status,
        StatusCode::BAD_REQUEST
    );
    // Change the MAC's last digit (to a different one: the test was flaky 1 in 16).
    let flipped = if token.ends_with('0') { '1' } else { '0' };
    let forged = format!("{}{flipped}", &token[..token.len() - 1]);
    let f2 = as_ref(&fields(&forged));
    let f2: Vec<(&str, &str)> = f2.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(
        post_form(&t.app, "/rights?lang=en", &f2, &[]).await.status,
        StatusCode::BAD_REQUEST
    );
    let good = as_ref(&fields(&token));
    let good: Vec<(&str, &str)> = good.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let cross = post_form(
        &t.app,
        "/rights?lang=en",
        &good,
        &[
            ("origin", "https://evil.example"),
            ("host", "privacy.nimbus.example"),
        ],
    )
    .await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN);
    assert!(mails(&t.outbox()).is_empty());
    // Bad fields: the form comes back with an error.
    let bad: Vec<(&str, &str)> = vec![
        ("form_token", &token),
        ("right", "access"),
        ("email", "nope"),
    ];
    let a = post_form(&t.app, "/rights?lang=en", &bad, &[]).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.body.contains("class=\"error\""));
    let no_right: Vec<(&str, &str)> = vec![
        ("form_token", &token),
        ("right", "telepathy"),
        ("email", "hana@example.org"),
    ];
    assert_eq!(
        post_form(&t.app, "/rights?lang=en", &no_right, &[])
            .await
            .status,
        StatusCode::BAD_REQUEST
    );

    // The real thing (same-origin browser post).
    let ok = post_form(
        &t.app,
        "/rights?lang=en",
        &good,
        &[
            ("origin", "https://privacy.nimbus.example"),
            ("host", "privacy.nimbus.example"),
        ],
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert!(ok.body.contains("Your request was received"));
    assert!(ok.body.contains("We sent a code"));
    assert!(
        !ok.body.contains("hana@example.org"),
        "the confirmation page does not echo the address"
    );
    let id = request_id_in(&ok.body);
    let m = mails(&t.outbox());
    assert_eq!(m.len(), 1);
    assert!(m[0].contains("To: hana@example.org"));
    assert!(m[0].contains(&format!(
        "https://privacy.nimbus.example/rights/requests/{id}"
    )));
    let code = code_in(&m[0]);

    // Status page shows the code form.
    let status = get(&t.app, &format!("/rights/requests/{id}?lang=en"), &[]).await;
    assert!(status.body.contains("waiting for you to confirm"));
    let tok = form_token(&status.body);
    let wrong = if code == "111111" { "222222" } else { "111111" };
    let w = post_form(
        &t.app,
        &format!("/rights/requests/{id}/verify?lang=en"),
        &[("form_token", &tok), ("code", wrong)],
        &[],
    )
    .await;
    assert_eq!(w.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(w.body.contains("That code is not right"));
    let v = post_form(
        &t.app,
        &format!("/rights/requests/{id}/verify?lang=en"),
        &[("form_token", &tok), ("code", &code)],
        &[],
    )
    .await;
    assert_eq!(v.status, StatusCode::OK);
    assert!(v.body.contains("identity is confirmed") && v.body.contains("identity confirmed"));
    assert!(
        !v.body.contains("name=\"code\""),
        "no code form once verified"
    );
    assert_eq!(
        get(&t.app, "/rights/requests/0123", &[]).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&t.app, &format!("/rights/requests/{}", "a".repeat(32)), &[])
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn the_link_asks_before_it_confirms() {
    let t = app().await;
    let page = get(&t.app, "/rights?lang=fr", &[]).await;
    let token = form_token(&page.body);
    let ok = post_form(
        &t.app,
        "/rights?lang=fr",
        &[
            ("form_token", &token),
            ("right", "erasure"),
            ("email", "ines@exemple.fr"),
        ],
        &[],
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK);
    assert!(ok.body.contains("Votre demande a bien été reçue"));
    let id = request_id_in(&ok.body);
    let m = mails(&t.outbox()).remove(0);
    let i = m.find("/rights/verify/").unwrap() + "/rights/verify/".len();
    let link = &m[i..i + 64];
    // Opening the link (what a mail scanner does) confirms nothing.
    let confirm = get(&t.app, &format!("/rights/verify/{link}?lang=fr"), &[]).await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(confirm.body.contains("Confirmer"));
    let s = get(&t.app, &format!("/rights/requests/{id}?lang=fr"), &[]).await;
    assert!(s.body.contains("en attente de confirmation"));
    let tok = form_token(&confirm.body);
    let done = post_form(
        &t.app,
        &format!("/rights/verify/{link}?lang=fr"),
        &[("form_token", &tok)],
        &[],
    )
    .await;
    assert_eq!(done.status, StatusCode::OK);
    assert!(done.body.contains("identité est confirmée"));
    let again = post_form(
        &t.app,
        &format!("/rights/verify/{link}?lang=fr"),
        &[("form_token", &tok)],
        &[],
    )
    .await;
    assert_eq!(again.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        get(&t.app, "/rights/verify/xyz", &[]).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn api_files_reads_lists_and_moves_requests_with_scopes() {
    let t = app().await;
    let writer = make_token(&t.state, &["rights:write"]).await;
    let reader = make_token(&t.state, &["rights:read"]).await;

    let body = serde_json::json!({"kind": "access", "identifier": "jon@example.com", "text": "via the console", "verification": {"method": "platform_token"}});
    let (s, v) = api(
        &t.app,
        "POST",
        "/api/v1/rights/requests",
        &reader,
        Some(body.clone()),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (s, v) = api(
        &t.app,
        "POST",
        "/api/v1/rights/requests",
        &writer,
        Some(body.clone()),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["verification"], "platform");
    assert_eq!(v["request"]["state"], "verified");
    let id = v["request"]["id"].as_str().unwrap().to_string();
    assert!(
        !v.to_string().contains("jon@example.com"),
        "the API answer holds no identifier"
    );
    // Repeated while open: merged (200).
    let (s, v) = api(
        &t.app,
        "POST",
        "/api/v1/rights/requests",
        &writer,
        Some(body),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["merged"], true);
    assert_eq!(v["request"]["id"], id.as_str());

    // Reads need rights:read.
    let (s, _) = api(
        &t.app,
        "GET",
        &format!("/api/v1/rights/requests/{id}"),
        &writer,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, v) = api(
        &t.app,
        "GET",
        &format!("/api/v1/rights/requests/{id}"),
        &reader,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let events: Vec<&str> = v["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["event"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["received", "verified", "merged_repeat"]);

    // A letter entered by the DPO: no e-mail route, waits for manual verification.
    let (s, v) = api(&t.app, "POST", "/api/v1/rights/requests", &writer, Some(serde_json::json!({"kind": "death_notice", "identifier_kind": "login", "identifier": "kim", "channel": "post"}))).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["verification"], "waiting_for_dpo");
    let dn = v["request"]["id"].as_str().unwrap().to_string();
    let (s, v) = api(
        &t.app,
        "POST",
        &format!("/api/v1/rights/requests/{dn}/events"),
        &writer,
        Some(serde_json::json!({"event": "start_execution"})),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "unverified requests wait: {v}");
    assert!(v["message"].as_str().unwrap().contains("unverified"));
    let (s, v) = api(
        &t.app,
        "POST",
        &format!("/api/v1/rights/requests/{dn}/events"),
        &writer,
        Some(serde_json::json!({"event": "ask_more_information"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["request"]["state"], "need_more_information");
    let (s, v) = api(
        &t.app,
        "POST",
        &format!("/api/v1/rights/requests/{dn}/events"),
        &writer,
        Some(serde_json::json!({"event": "verify"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        v["request"]["verification"]
            .as_str()
            .unwrap()
            .starts_with("dpo:")
    );
    let (s, _) = api(
        &t.app,
        "POST",
        &format!("/api/v1/rights/requests/{dn}/events"),
        &writer,
        Some(serde_json::json!({"event": "reject"})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "reject needs a ground");
    let (s, v) = api(
        &t.app,
        "POST",
        &format!("/api/v1/rights/requests/{dn}/events"),
        &writer,
        Some(
            serde_json::json!({"event": "extend", "until": "2999-01-01T00:00:00Z", "reasons": "x"}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(v["message"].as_str().unwrap().contains("max_extension"));

    // Lists.
    let (s, v) = api(
        &t.app,
        "GET",
        "/api/v1/rights/requests?all_open=true",
        &reader,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["requests"].as_array().unwrap().len(), 2);
    let (_, v) = api(
        &t.app,
        "GET",
        "/api/v1/rights/requests?overdue=true",
        &reader,
        None,
    )
    .await;
    assert!(v["requests"].as_array().unwrap().is_empty());
    let (s, _) = api(
        &t.app,
        "GET",
        "/api/v1/rights/requests?limit=0",
        &reader,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // Bad input: clear errors.
    let (s, v) = api(
        &t.app,
        "POST",
        "/api/v1/rights/requests",
        &writer,
        Some(serde_json::json!({"kind": "telepathy", "identifier": "a@b.c"})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["message"].as_str().unwrap().contains("kinds are"));
    let (s, v) = api(&t.app, "POST", "/api/v1/rights/requests", &writer, Some(serde_json::json!({"kind": "access", "identifier": "a@b.c", "verification": {"method": "assertion", "issued_at": 1, "signature": "00"}}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "assertions not configured: {v}");
    let (s, _) = api(&t.app, "GET", "/api/v1/rights/requests/nope", &reader, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn without_the_engine_the_portal_says_so_and_the_notice_does_not_link() {
    let register = tutela_domain::load(tutela_domain::EXAMPLE_REGISTER, "example").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_data_dir(dir.path()).await.unwrap();
    let vault = tutela_vault::Vault::new(
        store.clone(),
        Arc::new(register.clone()),
        tutela_vault::VaultKeys::generate().unwrap(),
    );
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
        vault,
        analytics,
    );
    let app = build_app(state);
    assert_eq!(
        get(&app, "/rights", &[]).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert!(
        !get(&app, "/privacy?lang=en", &[])
            .await
            .body
            .contains("href=\"/rights\"")
    );
}

#[tokio::test]
async fn api_executes_and_the_requester_downloads_after_a_fresh_code() {
    let t = app().await;
    // A source holding one record (the HTTP crate's tests stay away from database drivers;
    // the SQL connector has its own tests on SQLite and PostgreSQL).
    let sql = OneRecord;
    let exec =
        tutela_rights::execute::Executor::new(t.state.rights.clone().unwrap(), vec![Arc::new(sql)]);
    let state = t.state.clone().with_executor(exec);
    let app = build_app(state.clone());
    let writer = make_token(&state, &["rights:write", "rights:read"]).await;

    let (s, v) = api(&app, "POST", "/api/v1/rights/requests", &writer, Some(serde_json::json!({"kind": "access", "identifier": "liv@example.org", "verification": {"method": "platform_token"}}))).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let id = v["request"]["id"].as_str().unwrap().to_string();
    let (s, v) = api(
        &app,
        "POST",
        &format!("/api/v1/rights/requests/{id}/events"),
        &writer,
        Some(serde_json::json!({"event": "start_execution"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["request"]["state"], "in_progress");
    let (s, v) = api(&app, "POST", "/api/v1/rights/steps/run", &writer, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["done"], 1);
    let (s, v) = api(
        &app,
        "POST",
        &format!("/api/v1/rights/requests/{id}/events"),
        &writer,
        Some(serde_json::json!({"event": "finish"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["request"]["state"], "replied");
    let token = v["package_token"].as_str().unwrap().to_string();

    // The requester's side: page, code by e-mail, download.
    let page = get(&app, &format!("/rights/packages/{token}?lang=en"), &[]).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("E-mail me a code") && !page.body.contains("name=\"code\""));
    let ft = form_token(&page.body);
    for f in std::fs::read_dir(t.outbox()).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
    let sent = post_form(
        &app,
        &format!("/rights/packages/{token}/code?lang=en"),
        &[("form_token", &ft)],
        &[],
    )
    .await;
    assert_eq!(sent.status, StatusCode::OK);
    assert!(sent.body.contains("name=\"code\""));
    let code = code_in(&mails(&t.outbox())[0]);
    let ft = form_token(&sent.body);
    let wrong = post_form(
        &app,
        &format!("/rights/packages/{token}/download?lang=en"),
        &[
            ("form_token", &ft),
            ("code", if code == "000000" { "000001" } else { "000000" }),
        ],
        &[],
    )
    .await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY);
    let req = Request::post(format!("/rights/packages/{token}/download?lang=en"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("form_token={}&code={code}", enc(&ft))))
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[header::CONTENT_TYPE], "application/zip");
    assert_eq!(res.headers()[header::CACHE_CONTROL], "no-store");
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&bytes[..2], b"PK");
    assert_eq!(
        get(&app, &format!("/rights/packages/{}", "0".repeat(64)), &[])
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

struct OneRecord;

impl tutela_rights::source::Source for OneRecord {
    fn name(&self) -> &str {
        "sql:platform"
    }
    fn access<'a>(
        &'a self,
        s: &'a tutela_rights::source::Subject,
    ) -> tutela_rights::source::BoxFuture<
        'a,
        Result<Vec<tutela_rights::source::SourceRecord>, tutela_rights::source::SourceError>,
    > {
        Box::pin(async move {
            assert_eq!(s.identifiers[0].1, "liv@example.org");
            let mut fields = serde_json::Map::new();
            fields.insert("plan".into(), "pro".into());
            Ok(vec![tutela_rights::source::SourceRecord {
                collection: "users".into(),
                purpose: None,
                category: None,
                provided_by_subject: true,
                fields,
            }])
        })
    }
    fn erase<'a>(
        &'a self,
        _s: &'a tutela_rights::source::Subject,
    ) -> tutela_rights::source::BoxFuture<
        'a,
        Result<tutela_rights::source::Erased, tutela_rights::source::SourceError>,
    > {
        Box::pin(async { Ok(Default::default()) })
    }
    fn rectify<'a>(
        &'a self,
        _s: &'a tutela_rights::source::Subject,
        _c: &'a serde_json::Map<String, serde_json::Value>,
    ) -> tutela_rights::source::BoxFuture<'a, Result<u64, tutela_rights::source::SourceError>> {
        Box::pin(async { Ok(0) })
    }
    fn restrict<'a>(
        &'a self,
        _s: &'a tutela_rights::source::Subject,
        _r: bool,
    ) -> tutela_rights::source::BoxFuture<'a, Result<u64, tutela_rights::source::SourceError>> {
        Box::pin(async { Ok(0) })
    }
}

#[tokio::test]
async fn the_openapi_document_lists_the_rights_routes() {
    let t = app().await;
    let a = get(&t.app, "/api/v1/openapi.json", &[]).await;
    assert_eq!(a.status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    for path in [
        "/api/v1/rights/requests",
        "/api/v1/rights/requests/{id}",
        "/api/v1/rights/requests/{id}/events",
        "/api/v1/rights/steps/run",
    ] {
        assert!(v["paths"][path].is_object(), "{path} missing");
    }
    assert!(v["paths"]["/api/v1/rights/requests"]["post"]["requestBody"].is_object());
    assert!(v["components"]["schemas"]["ApiVerification"].is_object());
}
