//! End to end: verified requests executed across sources (the SQL connector on a "platform"
//! database, a webhook recipient, and a flaky in-memory source), with retries after back-off,
//! resumption after a crash, the response package (zip: JSON, CSV, HTML report) checked field
//! by field, and its download behind a fresh e-mailed code and an expiring link.

use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use jiff::{SignedDuration, Timestamp};
use sqlx::Connection;
use tutela_crypto::IdentifierKind;
use tutela_domain::rights::{RequestState, RightKind};
use tutela_rights::connectors::sql::{SqlConfig, SqlConnector};
use tutela_rights::connectors::webhook::{WebhookConfig, WebhookConnector};
use tutela_rights::execute::{Executor, RunReport};
use tutela_rights::source::{BoxFuture, Erased, Source, SourceError, SourceRecord, Subject};
use tutela_rights::{
    Channel, Mailer, RightsConfig, RightsError, RightsKeys, RightsService, Submission, Transport,
};
use tutela_store::Store;

const SCHEMA: &str = "
CREATE TABLE users (id BIGINT PRIMARY KEY, email TEXT NOT NULL, name TEXT);
CREATE TABLE apps (id BIGINT PRIMARY KEY, owner_id BIGINT NOT NULL REFERENCES users (id), app_name TEXT);
CREATE TABLE invoices (id BIGINT PRIMARY KEY, user_id BIGINT REFERENCES users (id), amount TEXT);
INSERT INTO users VALUES (1, 'alice@example.org', 'Alice Martin'), (2, 'bob@example.org', 'Bob Stone');
INSERT INTO apps VALUES (10, 1, 'alice-blog'), (11, 1, 'alice \"shop\", v2'), (12, 2, 'bob-app');
INSERT INTO invoices VALUES (100, 1, '12.00');
";

const SQL_CONFIG: &str = r#"
name = "platform"
url = "URL"
[[collections]]
name = "users"
table = "users"
key = "id"
identity = [{ column = "email", kind = "email" }]
columns = ["email", "name"]
purpose = "customer_accounts"
provided_by_subject = true
on_erase = { action = "mask", columns = { email = "erased", name = "" } }
[[collections]]
name = "apps"
table = "apps"
key = "id"
references = [{ column = "owner_id", collection = "users" }]
columns = ["app_name"]
purpose = "customer_accounts"
on_erase = { action = "delete" }
[[collections]]
name = "invoices"
table = "invoices"
key = "id"
references = [{ column = "user_id", collection = "users" }]
columns = ["amount"]
purpose = "customer_accounts"
on_erase = { action = "keep", reason = "accounting law (10 years)", until = "2036-12-31" }
"#;

/// A source that fails temporarily a given number of times, then works.
struct Flaky {
    failures_left: AtomicUsize,
    calls: AtomicUsize,
}

impl Source for Flaky {
    fn name(&self) -> &str {
        "flaky"
    }
    fn access<'a>(
        &'a self,
        _s: &'a Subject,
    ) -> BoxFuture<'a, Result<Vec<SourceRecord>, SourceError>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.failures_left.load(Ordering::SeqCst) > 0 {
                self.failures_left.fetch_sub(1, Ordering::SeqCst);
                return Err(SourceError::Temporary("flaky is down".into()));
            }
            let mut fields = serde_json::Map::new();
            fields.insert("note".into(), "from flaky".into());
            Ok(vec![SourceRecord {
                collection: "notes".into(),
                purpose: None,
                category: None,
                provided_by_subject: false,
                fields,
            }])
        })
    }
    fn erase<'a>(&'a self, _s: &'a Subject) -> BoxFuture<'a, Result<Erased, SourceError>> {
        Box::pin(async { Ok(Erased::default()) })
    }
    fn rectify<'a>(
        &'a self,
        _s: &'a Subject,
        _c: &'a serde_json::Map<String, serde_json::Value>,
    ) -> BoxFuture<'a, Result<u64, SourceError>> {
        Box::pin(async { Ok(0) })
    }
    fn restrict<'a>(
        &'a self,
        _s: &'a Subject,
        _r: bool,
    ) -> BoxFuture<'a, Result<u64, SourceError>> {
        Box::pin(async { Ok(0) })
    }
}

fn mails(dir: &Path) -> Vec<String> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| rd.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    files.sort_by_key(|p| (std::fs::metadata(p).unwrap().modified().unwrap(), p.clone()));
    files
        .iter()
        .map(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .replace("=\r\n", "")
                .replace("=\n", "")
                .replace("=3D", "=")
        })
        .collect()
}

/// Empties the outbox, so the next message read is the one just sent.
fn clear(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
}

fn code_in(mail: &str) -> String {
    mail.lines()
        .map(str::trim)
        .find(|l| l.len() == 6 && l.bytes().all(|b| b.is_ascii_digit()))
        .unwrap()
        .to_string()
}

fn unzip(bytes: &[u8]) -> std::collections::BTreeMap<String, String> {
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let mut out = std::collections::BTreeMap::new();
    for i in 0..z.len() {
        let mut f = z.by_index(i).unwrap();
        let mut s = String::new();
        f.read_to_string(&mut s).unwrap();
        out.insert(f.name().unwrap().to_string(), s);
    }
    out
}

async fn setup_platform(url: &str) {
    sqlx::any::install_default_drivers();
    let mut c = sqlx::AnyConnection::connect(url).await.unwrap();
    sqlx::raw_sql(SCHEMA).execute(&mut c).await.unwrap();
    c.close().await.unwrap();
}

#[derive(Clone, Default)]
struct Hook {
    script: Arc<Mutex<Vec<u16>>>,
    hits: Arc<AtomicUsize>,
}

async fn hook_server() -> (Hook, String) {
    let h = Hook::default();
    let app = axum::Router::new()
        .route(
            "/hook",
            axum::routing::post(
                |axum::extract::State(h): axum::extract::State<Hook>| async move {
                    h.hits.fetch_add(1, Ordering::SeqCst);
                    let mut s = h.script.lock().unwrap();
                    axum::http::StatusCode::from_u16(if s.is_empty() { 204 } else { s.remove(0) })
                        .unwrap()
                },
            ),
        )
        .with_state(h.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (h, format!("http://{addr}/hook"))
}

async fn run_against(platform_url: &str) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_data_dir(&dir.path().join("data"))
        .await
        .unwrap();
    let register =
        Arc::new(tutela_domain::load(tutela_domain::EXAMPLE_REGISTER, "example").unwrap());
    let outbox = dir.path().join("outbox");
    let svc = RightsService::new(
        store.clone(),
        register.clone(),
        RightsKeys::generate().unwrap(),
        Some(Mailer::new("dpo@nimbus.example", &Transport::File(outbox.clone())).unwrap()),
        RightsConfig::default(),
    );
    setup_platform(platform_url).await;
    let sql: SqlConfig = toml::from_str(&SQL_CONFIG.replace("URL", platform_url)).unwrap();
    let sql = Arc::new(SqlConnector::connect(&sql).await.unwrap());
    let (hook, hook_url) = hook_server().await;
    let webhook = Arc::new(
        WebhookConnector::new(
            &WebhookConfig {
                name: "crm".into(),
                url: hook_url,
                recipient: register.recipients[0].id.clone(),
                secret: "x".repeat(40),
                timeout_secs: 5,
            },
            &register,
        )
        .unwrap(),
    );
    let flaky = Arc::new(Flaky {
        failures_left: AtomicUsize::new(2),
        calls: AtomicUsize::new(0),
    });
    let exec = Executor::new(
        svc.clone(),
        vec![sql.clone(), webhook.clone(), flaky.clone()],
    )
    .with_retries(5, 30);

    let sub = |kind| Submission {
        kind,
        channel: Channel::Api,
        lang: "en".into(),
        details: Default::default(),
        identifier_kind: IdentifierKind::Email,
        identifier: "Alice@Example.org".into(),
        contact_email: None,
        text: String::new(),
    };
    let t0: Timestamp = "2026-01-31T09:00:00Z".parse().unwrap();

    // ---- access -------------------------------------------------------------------------
    let r = svc
        .file_verified(sub(RightKind::Access), "platform_token:t", "token:t", t0)
        .await
        .unwrap();
    let id = r.request.id.clone();
    exec.start(&id, "dpo", t0).await.unwrap();
    // First run: SQL and webhook done, flaky fails (temporary) and is scheduled 30 s later.
    assert_eq!(
        exec.run_due(t0).await.unwrap(),
        RunReport {
            done: 2,
            retried: 1,
            failed: 0
        }
    );
    assert!(
        matches!(exec.finish(&id, "dpo", t0).await, Err(RightsError::Invalid(m)) if m.contains("still running"))
    );
    // Nothing before the back-off; the second failure doubles it (60 s).
    assert_eq!(
        exec.run_due(t0 + SignedDuration::from_secs(29))
            .await
            .unwrap(),
        RunReport::default()
    );
    assert_eq!(
        exec.run_due(t0 + SignedDuration::from_secs(30))
            .await
            .unwrap()
            .retried,
        1
    );
    assert_eq!(
        exec.run_due(t0 + SignedDuration::from_secs(89))
            .await
            .unwrap(),
        RunReport::default()
    );
    assert_eq!(
        exec.run_due(t0 + SignedDuration::from_secs(90))
            .await
            .unwrap()
            .done,
        1
    );
    assert_eq!(flaky.calls.load(Ordering::SeqCst), 3);
    let steps = store.rights_steps(&id).await.unwrap();
    let fl = steps.iter().find(|s| s.source == "flaky").unwrap();
    assert_eq!((fl.status.as_str(), fl.attempts), ("done", 3));
    let history: Vec<String> = svc
        .history(&id)
        .await
        .unwrap()
        .into_iter()
        .map(|h| h.event)
        .collect();
    assert!(
        history.contains(&"step_retry:flaky:access:attempt1".to_string()),
        "{history:?}"
    );
    assert!(
        history.contains(&"step_retry:flaky:access:attempt2".to_string()),
        "{history:?}"
    );

    let t1 = t0 + SignedDuration::from_mins(5);
    let token = exec.finish(&id, "dpo", t1).await.unwrap().unwrap();
    let view = svc.status(&id, t1).await.unwrap().unwrap();
    assert_eq!(view.state, RequestState::Replied);
    assert_eq!(
        view.purge_after.unwrap(),
        "2027-01-31T09:05:00Z".parse::<Timestamp>().unwrap(),
        "request records kept 1 year after the reply"
    );
    let m = mails(&outbox);
    assert!(
        m.last()
            .unwrap()
            .contains(&format!("/rights/packages/{token}")),
        "the link is mailed"
    );

    // Download needs a fresh code.
    let info = svc.package_info(&token, t1).await.unwrap();
    assert_eq!(info.request_id, id);
    assert!(!info.expired);
    assert!(matches!(
        svc.download(&token, "123456", t1).await,
        Err(RightsError::Verification(_))
    ));
    clear(&outbox);
    svc.send_download_code(&token, t1).await.unwrap();
    let code = code_in(mails(&outbox).last().unwrap());
    let zip = svc.download(&token, &code, t1).await.unwrap();
    let files = unzip(&zip);
    assert_eq!(
        files.keys().cloned().collect::<Vec<_>>(),
        [
            "data.json",
            "flaky-notes.csv",
            "report.html",
            "sql_platform-apps.csv",
            "sql_platform-invoices.csv",
            "sql_platform-users.csv"
        ]
    );
    // Field by field.
    let data: serde_json::Value = serde_json::from_str(&files["data.json"]).unwrap();
    let records = data["records"].as_array().unwrap();
    let find = |coll: &str, key: &str| {
        records
            .iter()
            .find(|r| r["collection"] == coll && r["fields"]["id"] == key)
            .cloned()
    };
    let user = find("users", "1").unwrap();
    assert_eq!(user["source"], "sql:platform");
    assert_eq!(user["purpose"], "customer_accounts");
    assert_eq!(user["provided_by_subject"], true);
    assert_eq!(
        user["fields"],
        serde_json::json!({"id": "1", "email": "alice@example.org", "name": "Alice Martin"})
    );
    assert_eq!(
        find("apps", "10").unwrap()["fields"]["app_name"],
        "alice-blog"
    );
    assert_eq!(
        find("apps", "11").unwrap()["fields"]["app_name"],
        "alice \"shop\", v2"
    );
    assert_eq!(
        find("invoices", "100").unwrap()["fields"]["amount"],
        "12.00"
    );
    assert!(find("apps", "12").is_none(), "nothing of Bob");
    assert_eq!(records.len(), 5);
    assert_eq!(
        files["sql_platform-apps.csv"],
        "app_name,id\nalice-blog,10\n\"alice \"\"shop\"\", v2\",11\n"
    );
    let report = &files["report.html"];
    let accounts = register.purpose("customer_accounts").unwrap();
    assert!(
        report.contains(&accounts.label.get("en").replace('\'', "&#39;")),
        "the purpose is named"
    );
    assert!(
        !report.contains(
            &register
                .purposes
                .iter()
                .find(|p| p.id != "customer_accounts")
                .unwrap()
                .label
                .get("en")
                .replace('\'', "&#39;")
        ),
        "only purposes with data"
    );
    assert!(
        report.contains(&register.authority.complaint_url),
        "complaint route"
    );
    assert!(report.contains("art. 6(1)"), "legal basis");
    assert!(!report.contains("<script"));
    // The code is single-use; the link expires after 7 days.
    assert!(svc.download(&token, &code, t1).await.is_err());
    let later = t1 + SignedDuration::from_hours(7 * 24);
    assert!(svc.package_info(&token, later).await.unwrap().expired);
    assert!(
        matches!(svc.send_download_code(&token, later).await, Err(RightsError::Verification(m)) if m.contains("expired"))
    );
    assert_eq!(svc.purge_all(later).await.unwrap(), (0, 1));
    assert!(matches!(
        svc.package_info(&token, later).await,
        Err(RightsError::NotFound)
    ));

    // ---- portability: only what the subject provided ---------------------------------------
    let p = svc
        .file_verified(
            sub(RightKind::Portability),
            "platform_token:t",
            "token:t",
            t1,
        )
        .await
        .unwrap();
    exec.start(&p.request.id, "dpo", t1).await.unwrap();
    exec.run_due(t1).await.unwrap();
    let ptoken = exec
        .finish(&p.request.id, "dpo", t1)
        .await
        .unwrap()
        .unwrap();
    clear(&outbox);
    svc.send_download_code(&ptoken, t1).await.unwrap();
    let pcode = code_in(mails(&outbox).last().unwrap());
    let pfiles = unzip(&svc.download(&ptoken, &pcode, t1).await.unwrap());
    assert_eq!(
        pfiles.keys().cloned().collect::<Vec<_>>(),
        ["data.json", "report.html", "sql_platform-users.csv"]
    );

    // ---- erasure with a crash in the middle ---------------------------------------------
    hook.script.lock().unwrap().push(503);
    let e = svc
        .file_verified(sub(RightKind::Erasure), "platform_token:t", "token:t", t1)
        .await
        .unwrap();
    let eid = e.request.id.clone();
    exec.start(&eid, "dpo", t1).await.unwrap();
    // A runner claims the steps and "crashes" before finishing any.
    let claimed = store
        .claim_rights_steps(t1.as_second(), tutela_rights::execute::STEP_LEASE_SECS, 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 3);
    assert_eq!(
        exec.run_due(t1).await.unwrap(),
        RunReport::default(),
        "leased: nobody else runs them"
    );
    let t2 = t1 + SignedDuration::from_secs(tutela_rights::execute::STEP_LEASE_SECS + 1);
    let rep = exec.run_due(t2).await.unwrap();
    assert_eq!(
        rep,
        RunReport {
            done: 2,
            retried: 1,
            failed: 0
        },
        "webhook answered 503"
    );
    let rep = exec
        .run_due(t2 + SignedDuration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(rep.done, 1);
    assert_eq!(hook.hits.load(Ordering::SeqCst), 2);
    let etoken = exec
        .finish(&eid, "dpo", t2 + SignedDuration::from_mins(2))
        .await
        .unwrap()
        .unwrap();
    clear(&outbox);
    svc.send_download_code(&etoken, t2 + SignedDuration::from_mins(2))
        .await
        .unwrap();
    let ecode = code_in(mails(&outbox).last().unwrap());
    let efiles = unzip(
        &svc.download(&etoken, &ecode, t2 + SignedDuration::from_mins(2))
            .await
            .unwrap(),
    );
    let edata: serde_json::Value = serde_json::from_str(&efiles["data.json"]).unwrap();
    let sqlres = edata["erasure"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["source"] == "sql:platform")
        .unwrap()
        .clone();
    assert_eq!(
        (sqlres["deleted"].as_u64(), sqlres["masked"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(sqlres["kept"][0]["collection"], "invoices");
    assert!(
        efiles["report.html"].contains("accounting law (10 years)")
            && efiles["report.html"].contains("2036-12-31")
    );
    // ---- rectification on Bob (a request of another person) -----------------------------
    let bob_sub = Submission {
        kind: RightKind::Rectification,
        channel: Channel::Api,
        lang: "en".into(),
        details: Default::default(),
        identifier_kind: IdentifierKind::Email,
        identifier: "bob@example.org".into(),
        contact_email: None,
        text: "my name is Robert".into(),
    };
    let r = svc
        .file_verified(bob_sub, "platform_token:t", "token:t", t1)
        .await
        .unwrap();
    let mut changes = serde_json::Map::new();
    changes.insert("name".into(), "Robert Stone".into());
    assert!(
        exec.rectify(&r.request.id, &changes, "dpo", t1)
            .await
            .is_err(),
        "not before execution starts"
    );
    exec.start(&r.request.id, "dpo", t1).await.unwrap();
    let out = exec
        .rectify(&r.request.id, &changes, "dpo", t1)
        .await
        .unwrap();
    let by: std::collections::BTreeMap<_, _> = out.into_iter().collect();
    assert_eq!(by["sql:platform"], Ok(1));
    assert!(by["webhook:crm"].is_ok(), "recipients are told (art. 19)");
    let bob = sql
        .access(&Subject {
            identifiers: vec![(IdentifierKind::Email, "bob@example.org".into())],
        })
        .await
        .unwrap();
    assert!(
        bob.iter()
            .any(|r| r.fields.get("name") == Some(&serde_json::json!("Robert Stone")))
    );

    // ---- after death: Bob left instructions, so his death notice does not erase by default --
    let instr = Submission {
        kind: RightKind::AfterDeathInstructions,
        channel: Channel::Api,
        lang: "en".into(),
        details: Default::default(),
        identifier_kind: IdentifierKind::Email,
        identifier: "bob@example.org".into(),
        contact_email: None,
        text: "keep my apps for my daughter; executor: my daughter".into(),
    };
    svc.file_verified(instr, "platform_token:t", "token:t", t1)
        .await
        .unwrap();
    let notice = Submission {
        kind: RightKind::DeathNotice,
        channel: Channel::Post,
        lang: "en".into(),
        details: Default::default(),
        identifier_kind: IdentifierKind::Email,
        identifier: "bob@example.org".into(),
        contact_email: None,
        text: "death certificate checked by the DPO".into(),
    };
    let dn = svc
        .file_verified(notice, "dpo:checked-certificate", "dpo", t1)
        .await
        .unwrap();
    exec.start(&dn.request.id, "dpo", t1).await.unwrap();
    assert!(
        store.rights_steps(&dn.request.id).await.unwrap().is_empty(),
        "no automatic erasure"
    );
    let h: Vec<String> = svc
        .history(&dn.request.id)
        .await
        .unwrap()
        .into_iter()
        .map(|h| h.event)
        .collect();
    assert!(
        h.iter()
            .any(|e| e.starts_with("after_death_instructions_on_file:")),
        "{h:?}"
    );

    // Alice is gone from the platform; Bob is not.
    assert!(
        sql.access(&Subject {
            identifiers: vec![(IdentifierKind::Email, "alice@example.org".into())]
        })
        .await
        .unwrap()
        .is_empty()
    );
    assert_eq!(
        sql.access(&Subject {
            identifiers: vec![(IdentifierKind::Email, "bob@example.org".into())]
        })
        .await
        .unwrap()
        .len(),
        2
    );
    sql.close().await;
}

#[tokio::test]
async fn execution_end_to_end_on_sqlite_platform() {
    let dir = tempfile::tempdir().unwrap();
    run_against(&format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("platform.db").display()
    ))
    .await;
}

#[tokio::test]
async fn execution_end_to_end_on_postgresql_platform() {
    let Ok(base) = std::env::var("TUTELA_TEST_POSTGRES_URL") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but TUTELA_TEST_POSTGRES_URL is not"
        );
        eprintln!("skipped on PostgreSQL: set TUTELA_TEST_POSTGRES_URL=postgres://… to run it");
        return;
    };
    let schema = format!("platform_exec_{}", std::process::id());
    sqlx::any::install_default_drivers();
    let admin = |sql: String| {
        let base = base.clone();
        async move {
            let mut c = sqlx::AnyConnection::connect(&base).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut c)
                .await
                .unwrap();
        }
    };
    admin(format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
    ))
    .await;
    let sep = if base.contains('?') { '&' } else { '?' };
    run_against(&format!("{base}{sep}options[search_path]={schema}")).await;
    admin(format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).await;
}

/// MySQL/MariaDB platform: runs when `TUTELA_TEST_MYSQL_URL` is set or a server answers on
/// 127.0.0.1:3306 (skipped only outside CI; under CI it must run).
#[tokio::test]
async fn execution_end_to_end_on_mysql_platform() {
    sqlx::any::install_default_drivers();
    let ci = std::env::var_os("CI").is_some_and(|v| v != "false" && !v.is_empty());
    let base = std::env::var("TUTELA_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".to_string());
    let mut admin = match sqlx::AnyConnection::connect(&base).await {
        Ok(c) => c,
        Err(e) => {
            assert!(
                !ci,
                "CI is set but MySQL/MariaDB is unreachable at {base}: {e}"
            );
            eprintln!(
                "skipped on MySQL: no server (set TUTELA_TEST_MYSQL_URL=mysql://… to run it)"
            );
            return;
        }
    };
    let db = format!("platform_exec_{}", std::process::id());
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {db}; CREATE DATABASE {db}"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    let (server, _) = base.rsplit_once('/').expect("the URL names a database");
    run_against(&format!("{server}/{db}")).await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {db}")))
        .execute(&mut admin)
        .await
        .unwrap();
}
