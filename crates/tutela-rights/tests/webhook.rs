//! The webhook connector against a local axum receiver on 127.0.0.1:0: signed payloads,
//! stable idempotency keys across retries, temporary and permanent failures.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use tutela_crypto::IdentifierKind;
use tutela_rights::connectors::webhook::{WebhookConfig, WebhookConnector, verify_signature};
use tutela_rights::source::{Source, SourceError, Subject};

const SECRET: &str = "0123456789abcdef0123456789abcdef-secret";

#[derive(Clone, Default)]
struct Receiver {
    /// Status codes to answer, in order (then 200).
    script: Arc<Mutex<Vec<u16>>>,
    got: Arc<Mutex<Vec<(String, serde_json::Value, bool)>>>,
}

async fn hook(
    State(r): State<Receiver>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let sig = headers
        .get("tutela-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let ok = verify_signature(
        SECRET.as_bytes(),
        sig,
        &body,
        jiff::Timestamp::now().as_second(),
        60,
    );
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    r.got
        .lock()
        .unwrap()
        .push((key, serde_json::from_slice(&body).unwrap(), ok));
    let mut script = r.script.lock().unwrap();
    let code = if script.is_empty() {
        200
    } else {
        script.remove(0)
    };
    StatusCode::from_u16(code).unwrap()
}

async fn receiver() -> (Receiver, String) {
    let r = Receiver::default();
    let app = axum::Router::new()
        .route("/hooks/tutela", axum::routing::post(hook))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (r, format!("http://{addr}/hooks/tutela"))
}

fn register() -> tutela_domain::Register {
    tutela_domain::load(tutela_domain::EXAMPLE_REGISTER, "example").unwrap()
}

fn cfg(url: &str) -> WebhookConfig {
    let reg = register();
    WebhookConfig {
        name: "crm".into(),
        url: url.into(),
        recipient: reg.recipients[0].id.clone(),
        secret: SECRET.into(),
        timeout_secs: 5,
    }
}

#[tokio::test]
async fn signed_notices_with_retries_and_failures() {
    let (r, url) = receiver().await;
    let hook = WebhookConnector::new(&cfg(&url), &register()).unwrap();
    assert_eq!(hook.name(), "webhook:crm");
    let subject = Subject {
        identifiers: vec![(IdentifierKind::Email, "alice@example.org".into())],
    };

    r.script.lock().unwrap().extend([503, 429]);
    assert!(
        matches!(hook.erase(&subject).await, Err(SourceError::Temporary(m)) if m == "HTTP 503")
    );
    assert!(
        matches!(hook.erase(&subject).await, Err(SourceError::Temporary(m)) if m == "HTTP 429")
    );
    hook.erase(&subject).await.unwrap();
    {
        let got = r.got.lock().unwrap();
        assert_eq!(got.len(), 3);
        assert!(
            got.iter().all(|(_, _, ok)| *ok),
            "every payload is signed with the shared secret"
        );
        assert!(
            got.iter().all(|(k, _, _)| k == &got[0].0 && k.len() == 64),
            "retries share one idempotency key"
        );
        let doc = &got[2].1;
        assert_eq!(doc["type"], "erasure");
        assert_eq!(
            doc["subject"]["identifiers"][0]["value"],
            "alice@example.org"
        );
        assert_eq!(doc["recipient"], register().recipients[0].id.as_str());
    }
    let mut changes = serde_json::Map::new();
    changes.insert("name".into(), "Alice Durand".into());
    hook.rectify(&subject, &changes).await.unwrap();
    hook.restrict(&subject, true).await.unwrap();
    hook.restrict(&subject, false).await.unwrap();
    {
        let got = r.got.lock().unwrap();
        let types: Vec<&str> = got[3..]
            .iter()
            .map(|(_, d, _)| d["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            types,
            ["rectification", "restriction", "restriction_lifted"]
        );
        assert_eq!(got[3].1["changes"]["name"], "Alice Durand");
        assert_ne!(got[3].0, got[2].0, "another notice, another key");
    }
    // A refusal is permanent; access returns nothing.
    r.script.lock().unwrap().push(400);
    assert!(matches!(
        hook.erase(&subject).await,
        Err(SourceError::Permanent(_))
    ));
    assert!(hook.access(&subject).await.unwrap().is_empty());
}

#[tokio::test]
async fn configuration_is_checked_and_unreachable_is_temporary() {
    let reg = register();
    let mut c = cfg("http://127.0.0.1:9/x");
    c.recipient = "nobody".into();
    assert!(
        WebhookConnector::new(&c, &reg)
            .unwrap_err()
            .to_string()
            .contains("not declared in the register")
    );
    let mut c = cfg("ftp://x/");
    assert!(WebhookConnector::new(&c, &reg).is_err());
    c = cfg("http://127.0.0.1:9/x");
    c.secret = "short".into();
    assert!(WebhookConnector::new(&c, &reg).is_err());
    // Port 9 (discard) is closed here: a temporary failure, to be retried.
    let hook = WebhookConnector::new(&cfg("http://127.0.0.1:9/x"), &reg).unwrap();
    let subject = Subject {
        identifiers: vec![(IdentifierKind::Email, "a@b.c".into())],
    };
    assert!(matches!(
        hook.erase(&subject).await,
        Err(SourceError::Temporary(_))
    ));
    assert!(
        !format!("{c:?}").contains("short"),
        "secrets are not printed"
    );
}
