//! Console tests through the real router, in-process, with the test-only Argon2 cost: session
//! expiry, the login form's behaviour without cookies, language negotiation, and the security
//! headers of console pages. (End-to-end flows against the real binary live in
//! `crates/tutela/tests/console.rs` and `browser.rs`.)

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use tower::ServiceExt;
use tutela_crypto::password::{PasswordParams, hash_password};
use tutela_http::console::ConsoleConfig;
use tutela_http::{AppState, LoadedRegister, build_app};
use tutela_store::{Operator, Store};

const PASSWORD: &str = "a long enough passphrase";

struct TestApp {
    app: axum::Router,
    state: AppState,
    _dir: tempfile::TempDir,
}

async fn app(config: ConsoleConfig) -> TestApp {
    let register = tutela_domain::load(tutela_domain::EXAMPLE_REGISTER, "example").unwrap();
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
    .with_console(ConsoleConfig {
        password_params: PasswordParams::INSECURE_FOR_TESTS_ONLY,
        ..config
    });
    for (id, login, role) in [("op1", "sam", "support"), ("op2", "ana", "analyst")] {
        state
            .store
            .insert_operator(&Operator {
                id: id.into(),
                login: login.into(),
                display_name: format!("Name of {login}"),
                role: role.into(),
                password_hash: Some(
                    hash_password(PASSWORD, PasswordParams::INSECURE_FOR_TESTS_ONLY).unwrap(),
                ),
                totp_secret: None,
                totp_last_step: None,
                language: None,
                created_at: 0,
                password_changed_at: Some(0),
                disabled_at: None,
            })
            .await
            .unwrap();
    }
    let app =
        build_app(state.clone()).layer(MockConnectInfo(SocketAddr::from(([192, 0, 2, 7], 4000))));
    TestApp {
        app,
        state,
        _dir: dir,
    }
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Answer {
    fn cookie(&self) -> Option<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| !v.contains("Max-Age=0"))
            .map(|v| v.split(';').next().unwrap().to_string())
    }

    fn csrf(&self) -> String {
        let p = "name=\"csrf\" value=\"";
        let i = self.body.find(p).unwrap() + p.len();
        self.body[i..i + 64].to_string()
    }
}

async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    cookie: Option<&str>,
    body: Option<String>,
    extra: &[(&str, &str)],
) -> Answer {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(c) = cookie {
        req = req.header(header::COOKIE, c);
    }
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let req = match body {
        Some(b) => req
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(b))
            .unwrap(),
        None => req.body(Body::empty()).unwrap(),
    };
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).to_string(),
    }
}

/// Signs `login` in; returns the session cookie (`name=value`).
async fn sign_in(t: &TestApp, login: &str) -> String {
    let page = call(&t.app, "GET", "/console/login", None, None, &[]).await;
    let pre = page.cookie().expect("a form cookie");
    assert!(pre.starts_with("__Host-tutela-form="), "{pre}");
    let body = format!(
        "csrf={}&login={login}&password={}",
        page.csrf(),
        PASSWORD.replace(' ', "+")
    );
    let res = call(
        &t.app,
        "POST",
        "/console/login",
        Some(&pre),
        Some(body),
        &[],
    )
    .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    let set: Vec<&str> = res
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    let session = set
        .iter()
        .find(|c| c.starts_with("__Host-tutela-session="))
        .expect("session cookie");
    for attr in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
        assert!(session.contains(attr), "{session}");
    }
    assert!(
        set.iter()
            .any(|c| c.starts_with("__Host-tutela-form=;") && c.contains("Max-Age=0")),
        "the form cookie is dropped"
    );
    session.split(';').next().unwrap().to_string()
}

#[tokio::test]
async fn sessions_end_when_idle_or_too_old() {
    // Times are whole seconds: a limit of N seconds can end a session after N - 1 seconds and
    // a bit, so each step below keeps a full second of slack on either side (a loaded CI
    // machine may take hundreds of milliseconds per call).
    // Idle expiry.
    let t = app(ConsoleConfig {
        session_idle_secs: 3,
        ..ConsoleConfig::default()
    })
    .await;
    let cookie = sign_in(&t, "sam").await;
    assert_eq!(
        call(&t.app, "GET", "/console", Some(&cookie), None, &[])
            .await
            .status,
        StatusCode::OK
    );
    tokio::time::sleep(std::time::Duration::from_millis(4100)).await;
    let res = call(&t.app, "GET", "/console", Some(&cookie), None, &[]).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert_eq!(res.headers[header::LOCATION], "/console/login");
    assert_eq!(
        t.state.store.session_count("op1").await.unwrap(),
        0,
        "the ended session is deleted"
    );

    // Absolute expiry, even while in use.
    let t = app(ConsoleConfig {
        session_max_secs: 5,
        ..ConsoleConfig::default()
    })
    .await;
    let cookie = sign_in(&t, "ana").await;
    let signed_in = std::time::Instant::now();
    for _ in 0..3 {
        assert_eq!(
            call(&t.app, "GET", "/console", Some(&cookie), None, &[])
                .await
                .status,
            StatusCode::OK
        );
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    }
    assert!(
        signed_in.elapsed() < std::time::Duration::from_secs(4),
        "the machine is too slow for this test's timing"
    );
    tokio::time::sleep(std::time::Duration::from_secs(6).saturating_sub(signed_in.elapsed())).await;
    assert_eq!(
        call(&t.app, "GET", "/console", Some(&cookie), None, &[])
            .await
            .status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn forms_need_their_cookie_and_pages_are_private() {
    let t = app(ConsoleConfig::default()).await;
    // A sign-in without the form cookie (e.g. cookies refused, or a forged cross-site form).
    let page = call(&t.app, "GET", "/console/login", None, None, &[]).await;
    let body = format!("csrf={}&login=sam&password=x", page.csrf());
    let res = call(&t.app, "POST", "/console/login", None, Some(body), &[]).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert!(res.body.contains("refuses cookies"), "{}", res.body);
    // A token from another browser's form cookie does not fit this one.
    let other = call(&t.app, "GET", "/console/login", None, None, &[]).await;
    let body = format!(
        "csrf={}&login=sam&password={}",
        other.csrf(),
        PASSWORD.replace(' ', "+")
    );
    let res = call(
        &t.app,
        "POST",
        "/console/login",
        Some(&page.cookie().unwrap()),
        Some(body),
        &[],
    )
    .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);

    // Console pages are never cached, carry the strict CSP, and redirect when signed out.
    let res = call(&t.app, "GET", "/console/operators", None, None, &[]).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert_eq!(res.headers[header::LOCATION], "/console/login");
    let cookie = sign_in(&t, "sam").await;
    let res = call(&t.app, "GET", "/console/register", Some(&cookie), None, &[]).await;
    assert_eq!(res.headers[header::CACHE_CONTROL], "no-store");
    let csp = res.headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("style-src 'self'"));
    assert!(
        !res.body.contains("<script") && !res.body.contains("style="),
        "no inline code"
    );
    let css = call(
        &t.app,
        "GET",
        "/console/assets/console.css",
        None,
        None,
        &[],
    )
    .await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(
        css.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
    // Unknown console paths: 404 for the signed in.
    let res = call(
        &t.app,
        "GET",
        "/console/nothing-here",
        Some(&cookie),
        None,
        &[],
    )
    .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_console_speaks_the_operators_language() {
    let t = app(ConsoleConfig::default()).await;
    let fr = call(
        &t.app,
        "GET",
        "/console/login",
        None,
        None,
        &[("accept-language", "fr-FR,fr;q=0.9")],
    )
    .await;
    assert!(
        fr.body.contains("<html lang=\"fr\"") && fr.body.contains("Connexion"),
        "{}",
        fr.body
    );
    let en = call(
        &t.app,
        "GET",
        "/console/login?lang=en",
        None,
        None,
        &[("accept-language", "fr")],
    )
    .await;
    assert!(en.body.contains("<html lang=\"en\"") && en.body.contains("Sign in"));
    // Once chosen in the account, the operator's language wins over the browser's.
    let cookie = sign_in(&t, "sam").await;
    let account = call(&t.app, "GET", "/console/account", Some(&cookie), None, &[]).await;
    let body = format!("csrf={}&lang=fr", account.csrf());
    let res = call(
        &t.app,
        "POST",
        "/console/account/language",
        Some(&cookie),
        Some(body),
        &[],
    )
    .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    let home = call(
        &t.app,
        "GET",
        "/console",
        Some(&cookie),
        None,
        &[("accept-language", "en")],
    )
    .await;
    assert!(home.body.contains("Vue d’ensemble"), "{}", home.body);
}

#[tokio::test]
async fn wrong_passwords_are_counted_and_throttled_in_process() {
    let t = app(ConsoleConfig::default()).await;
    let page = call(&t.app, "GET", "/console/login", None, None, &[]).await;
    let pre = page.cookie().unwrap();
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let body = format!("csrf={}&login=sam&password=nope", page.csrf());
        statuses.push(
            call(
                &t.app,
                "POST",
                "/console/login",
                Some(&pre),
                Some(body),
                &[],
            )
            .await
            .status
            .as_u16(),
        );
    }
    // Three free failures, then the (account, address) pair waits.
    assert_eq!(statuses, [401, 401, 401, 429, 429, 429]);
    assert_eq!(t.state.console.password_checks(), 3);
    assert_eq!(t.state.console.throttled(), 3);
    // Unknown logins cost a check too (a dummy hash), so timing does not reveal who exists.
    let body = format!("csrf={}&login=nobody-here&password=nope", page.csrf());
    assert_eq!(
        call(
            &t.app,
            "POST",
            "/console/login",
            Some(&pre),
            Some(body),
            &[]
        )
        .await
        .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(t.state.console.password_checks(), 4);
    let events = t.state.store.operator_events(10, None).await.unwrap();
    assert_eq!(
        events.iter().filter(|e| e.event == "login_failed").count(),
        4
    );
    assert!(
        events.iter().any(|e| e.operator_id.is_none()),
        "unknown login recorded without the typed name"
    );
    assert!(
        events
            .iter()
            .all(|e| e.detail.as_deref() != Some("nobody-here"))
    );
}

#[tokio::test]
async fn the_analytics_dashboard_opens_for_operators_who_may_view_analytics() {
    let t = app(ConsoleConfig::default()).await;
    let analyst = sign_in(&t, "ana").await;
    let page = call(
        &t.app,
        "GET",
        "/analytics/sites/1",
        Some(&analyst),
        None,
        &[],
    )
    .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("<svg class=\"line\""));
    // Inside the console's layout: its navigation, which links the dashboard as the current page.
    assert!(page.body.contains("class=\"mainnav\""), "{}", page.body);
    assert!(
        page.body
            .contains("<a href=\"/analytics\" aria-current=\"page\">Analytics</a>"),
        "{}",
        page.body
    );
    assert!(page.body.contains("/console/assets/dashboard.css"));
    let css = call(
        &t.app,
        "GET",
        "/console/assets/dashboard.css",
        None,
        None,
        &[],
    )
    .await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(css.body.contains(".dash .cards"));
    // The analyst's console pages link it.
    let overview = call(&t.app, "GET", "/console", Some(&analyst), None, &[]).await;
    assert!(overview.body.contains("href=\"/analytics\""));
    // Support staff have no analytics permission: the console's 403 page, no link.
    let support = sign_in(&t, "sam").await;
    let page = call(
        &t.app,
        "GET",
        "/analytics/sites/1",
        Some(&support),
        None,
        &[],
    )
    .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(page.body.contains("class=\"mainnav\""));
    assert!(!page.body.contains("<svg class=\"line\""));
    let overview = call(&t.app, "GET", "/console", Some(&support), None, &[]).await;
    assert!(!overview.body.contains("href=\"/analytics\""));
    let page = call(&t.app, "GET", "/analytics/sites/1", None, None, &[]).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn rights_requests_pages_are_for_those_who_handle_them() {
    let t = app(ConsoleConfig::default()).await;
    for login in ["sam", "ana"] {
        let cookie = sign_in(&t, login).await;
        let page = call(&t.app, "GET", "/console", Some(&cookie), None, &[]).await;
        assert!(
            !page.body.contains("/console/rights"),
            "{login} has no rights entry in the navigation"
        );
        let csrf = page.csrf();
        for (method, uri, body) in [
            ("GET", "/console/rights", None),
            (
                "GET",
                "/console/rights/0123456789abcdef0123456789abcdef",
                None,
            ),
            (
                "POST",
                "/console/rights",
                Some(format!(
                    "csrf={csrf}&kind=access&channel=post&identifier_kind=email&identifier=a%40b.example"
                )),
            ),
            (
                "POST",
                "/console/rights/0123456789abcdef0123456789abcdef",
                Some(format!("csrf={csrf}&action=verify")),
            ),
        ] {
            let res = call(&t.app, method, uri, Some(&cookie), body, &[]).await;
            assert_eq!(res.status, StatusCode::FORBIDDEN, "{login} {method} {uri}");
        }
        // A form without its token is refused before anything else.
        let res = call(
            &t.app,
            "POST",
            "/console/rights",
            Some(&cookie),
            Some("kind=access".into()),
            &[],
        )
        .await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "{login} without csrf");
    }
    assert_eq!(
        t.state
            .store
            .rights_requests_due(i64::MAX, 10)
            .await
            .unwrap()
            .len(),
        0,
        "nothing was recorded"
    );
}

/// Adds an operator with the test password.
async fn add_operator(t: &TestApp, id: &str, login: &str, role: &str) {
    t.state
        .store
        .insert_operator(&Operator {
            id: id.into(),
            login: login.into(),
            display_name: format!("Name of {login}"),
            role: role.into(),
            password_hash: Some(
                hash_password(PASSWORD, PasswordParams::INSECURE_FOR_TESTS_ONLY).unwrap(),
            ),
            totp_secret: None,
            totp_last_step: None,
            language: None,
            created_at: 0,
            password_changed_at: Some(0),
            disabled_at: None,
        })
        .await
        .unwrap();
}

/// Signs in an operator whose role needs a second factor and enrols one; returns the session.
async fn sign_in_enrolled(t: &TestApp, login: &str) -> String {
    let pending = sign_in(t, login).await;
    let page = call(&t.app, "GET", "/console/enroll", Some(&pending), None, &[]).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let p = "id=\"manual-key\">";
    let i = page.body.find(p).unwrap() + p.len();
    let key: String = page.body[i..].chars().take_while(|c| *c != '<').collect();
    let secret = tutela_crypto::totp::TotpSecret::from_base32(key.trim()).unwrap();
    let code = secret
        .code_at(jiff::Timestamp::now().as_second() as u64)
        .to_string();
    let res = call(
        &t.app,
        "POST",
        "/console/enroll",
        Some(&pending),
        Some(format!("csrf={}&code={code}", page.csrf())),
        &[],
    )
    .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    res.cookie().unwrap_or(pending)
}

async fn record_consent(t: &TestApp, body: &str) -> String {
    let res = t
        .app
        .clone()
        .oneshot(
            Request::post("/api/v1/consent")
                .header(header::CONTENT_TYPE, "text/plain;charset=UTF-8")
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    v["consent_id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn the_consent_page_shows_rates_to_analysts_and_receipts_to_the_dpo_only() {
    let t = app(ConsoleConfig::default()).await;
    add_operator(&t, "op3", "dora", "dpo").await;
    add_operator(&t, "op4", "adam", "admin").await;
    let granted = record_consent(
        &t,
        r#"{"choices": {"analytics": true, "targeting": false}}"#,
    )
    .await;
    record_consent(&t, r#"{"choices": {"analytics": true, "targeting": true}}"#).await;
    record_consent(
        &t,
        r#"{"choices": {"analytics": false, "targeting": false}}"#,
    )
    .await;

    // The analyst: rates (2 of 3 granted analytics), no receipt form, no consent id anywhere.
    let analyst = sign_in(&t, "ana").await;
    let page = call(&t.app, "GET", "/console/consent", Some(&analyst), None, &[]).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("id=\"consent-chart\""), "{}", page.body);
    assert!(page.body.contains("class=\"rate-analytics\""));
    assert!(
        page.body.contains("67 %") && page.body.contains("33 %"),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains("<a href=\"/console/consent\" aria-current=\"page\">Consent</a>")
    );
    assert!(!page.body.contains("/console/consent/receipt"));
    assert!(!page.body.contains(&granted));
    let csrf = page.csrf();
    for path in ["/console/consent/receipt", "/console/consent/export"] {
        let res = call(
            &t.app,
            "POST",
            path,
            Some(&analyst),
            Some(format!(
                "csrf={csrf}&consent_id={granted}&from=2026-01-01&to=2026-12-31"
            )),
            &[],
        )
        .await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "analyst on {path}");
        assert!(!res.body.contains(&granted));
    }
    // A bad period is said, and the default one shown.
    let page = call(
        &t.app,
        "GET",
        "/console/consent?from=2020-01-01&to=2026-01-01",
        Some(&analyst),
        None,
        &[],
    )
    .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("at most 366 days"));

    // Support: refused, and not linked.
    let support = sign_in(&t, "sam").await;
    let page = call(&t.app, "GET", "/console/consent", Some(&support), None, &[]).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(!page.body.contains("href=\"/console/consent\""));

    // The administrator: rates, not receipts.
    let admin = sign_in_enrolled(&t, "adam").await;
    let page = call(&t.app, "GET", "/console/consent", Some(&admin), None, &[]).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(!page.body.contains("/console/consent/receipt"));
    let res = call(
        &t.app,
        "POST",
        "/console/consent/receipt",
        Some(&admin),
        Some(format!("csrf={}&consent_id={granted}", page.csrf())),
        &[],
    )
    .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);

    // The DPO: looks a receipt up and exports the proof.
    let dpo = sign_in_enrolled(&t, "dora").await;
    let page = call(
        &t.app,
        "GET",
        "/console/consent?lang=fr",
        Some(&dpo),
        None,
        &[],
    )
    .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("Retrouver un reçu"), "{}", page.body);
    let csrf = page.csrf();
    let res = call(
        &t.app,
        "POST",
        "/console/consent/receipt",
        Some(&dpo),
        Some(format!("csrf={csrf}&consent_id={}", granted.to_uppercase())),
        &[],
    )
    .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert!(
        res.body
            .contains(&format!("<code id=\"receipt-id\">{granted}</code>")),
        "{}",
        res.body
    );
    assert_eq!(
        res.body.matches("<tr><td class=\"nowrap\">").count(),
        1,
        "{}",
        res.body
    );
    // Without the form token: refused.
    let res = call(
        &t.app,
        "POST",
        "/console/consent/receipt",
        Some(&dpo),
        Some(format!("csrf=0000&consent_id={granted}")),
        &[],
    )
    .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    // A malformed or unknown id is said so.
    for (id, says) in [
        ("not-an-id", "UUID"),
        (
            "3f2c1e9a-8b7d-4c6e-9f01-23456789abcd",
            "No record has this consent id",
        ),
    ] {
        let res = call(
            &t.app,
            "POST",
            "/console/consent/receipt",
            Some(&dpo),
            Some(format!("csrf={csrf}&consent_id={id}")),
            &[("accept-language", "en")],
        )
        .await;
        assert_eq!(res.status, StatusCode::OK);
        assert!(res.body.contains("flash-error"), "{}", res.body);
        assert!(res.body.contains(says), "{}", res.body);
    }
    let today = jiff::Timestamp::now()
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .date()
        .to_string();
    let res = call(
        &t.app,
        "POST",
        "/console/consent/export",
        Some(&dpo),
        Some(format!("csrf={csrf}&from={today}&to={today}&format=csv")),
        &[],
    )
    .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert!(
        res.headers[header::CONTENT_DISPOSITION]
            .to_str()
            .unwrap()
            .starts_with("attachment; filename=\"consent-records-")
    );
    assert_eq!(res.body.lines().count(), 4, "{}", res.body);
    assert!(res.body.starts_with("record_id,consent_id,"));
    assert!(res.body.contains(&granted));
    // Both reads are in the audit log, without the consent id.
    let audit = call(&t.app, "GET", "/console/audit", Some(&dpo), None, &[]).await;
    assert!(
        audit.body.contains("consent_receipt_viewed"),
        "{}",
        audit.body
    );
    assert!(audit.body.contains("consent_proof_exported"));
    assert!(!audit.body.contains(&granted));
}
