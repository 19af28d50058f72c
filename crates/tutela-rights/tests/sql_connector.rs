//! The SQL connector against a "platform" database: SQLite always, PostgreSQL when
//! `TUTELA_TEST_POSTGRES_URL` is set (in CI it must be). The graph of references is followed
//! from the subject's identifiers for access; erasure deletes, masks and keeps as declared,
//! touches nobody else, and is idempotent.

use sqlx::Connection;
use tutela_crypto::IdentifierKind;
use tutela_rights::connectors::sql::{SqlConfig, SqlConnector};
use tutela_rights::source::{Source, Subject};

const SCHEMA: &str = "
CREATE TABLE users (id BIGINT PRIMARY KEY, email TEXT NOT NULL, name TEXT, phone TEXT, restricted BOOLEAN NOT NULL DEFAULT FALSE);
CREATE TABLE memberships (id BIGINT PRIMARY KEY, user_id BIGINT NOT NULL REFERENCES users (id), org TEXT NOT NULL);
CREATE TABLE apps (id TEXT PRIMARY KEY, owner_id BIGINT NOT NULL REFERENCES users (id), app_name TEXT);
CREATE TABLE app_env (id BIGINT PRIMARY KEY, app_id TEXT NOT NULL REFERENCES apps (id), var TEXT);
CREATE TABLE invoices (id BIGINT PRIMARY KEY, user_id BIGINT REFERENCES users (id), amount TEXT, billing_name TEXT);
CREATE TABLE tickets (id BIGINT PRIMARY KEY, author_email TEXT, body TEXT);
INSERT INTO users VALUES (1, 'Alice@Example.org', 'Alice Martin', '+33612345678', FALSE), (2, 'bob@example.org', 'Bob Stone', NULL, FALSE);
INSERT INTO memberships VALUES (10, 1, 'acme'), (11, 1, 'zeta'), (12, 2, 'acme');
INSERT INTO apps VALUES ('app-a', 1, 'alice-blog'), ('app-b', 2, 'bob-shop');
INSERT INTO app_env VALUES (100, 'app-a', 'ALICE_SECRET_VAR'), (101, 'app-b', 'BOB_VAR');
INSERT INTO invoices VALUES (1000, 1, '12.00', 'Alice Martin'), (1001, 2, '9.00', 'Bob Stone');
INSERT INTO tickets VALUES (5000, 'alice@example.org', 'my app is down'), (5001, 'bob@example.org', 'bob asks');
";

fn config(url: &str) -> SqlConfig {
    let toml = format!(
        r#"
name = "platform"
url = "{url}"

[[collections]]
name = "users"
table = "users"
key = "id"
identity = [{{ column = "email", kind = "email" }}]
columns = ["email", "name", "phone"]
purpose = "accounts"
category = "identity"
provided_by_subject = true
restrict_column = "restricted"
on_erase = {{ action = "mask", columns = {{ email = "erased", name = "", phone = "" }} }}

[[collections]]
name = "memberships"
table = "memberships"
key = "id"
references = [{{ column = "user_id", collection = "users" }}]
columns = ["org"]
on_erase = {{ action = "delete" }}

[[collections]]
name = "apps"
table = "apps"
key = "id"
key_type = "text"
references = [{{ column = "owner_id", collection = "users" }}]
columns = ["app_name"]
provided_by_subject = true
on_erase = {{ action = "delete" }}

[[collections]]
name = "app_env"
table = "app_env"
key = "id"
references = [{{ column = "app_id", collection = "apps" }}]
columns = ["var"]
on_erase = {{ action = "delete" }}

[[collections]]
name = "invoices"
table = "invoices"
key = "id"
references = [{{ column = "user_id", collection = "users" }}]
columns = ["amount", "billing_name"]
on_erase = {{ action = "keep", reason = "accounting law: invoices are kept 10 years", until = "10 years after the invoice date" }}

[[collections]]
name = "tickets"
table = "tickets"
key = "id"
identity = [{{ column = "author_email", kind = "email" }}]
columns = ["author_email", "body"]
on_erase = {{ action = "delete" }}
"#
    );
    toml::from_str(&toml).unwrap()
}

fn alice() -> Subject {
    Subject {
        identifiers: vec![(IdentifierKind::Email, "alice@example.org".into())],
    }
}

async fn exercise(url: &str) {
    let conn = SqlConnector::connect(&config(url)).await.unwrap();
    assert_eq!(conn.name(), "sql:platform");

    // Access: every row reachable from the identifier, across two hops, and nothing of Bob's.
    let records = conn.access(&alice()).await.unwrap();
    let mut got: Vec<(String, String)> = records
        .iter()
        .map(|r| {
            (
                r.collection.clone(),
                serde_json::Value::Object(r.fields.clone()).to_string(),
            )
        })
        .collect();
    got.sort();
    let expected = [
        ("app_env", r#"{"id":"100","var":"ALICE_SECRET_VAR"}"#),
        ("apps", r#"{"app_name":"alice-blog","id":"app-a"}"#),
        (
            "invoices",
            r#"{"amount":"12.00","billing_name":"Alice Martin","id":"1000"}"#,
        ),
        ("memberships", r#"{"id":"10","org":"acme"}"#),
        ("memberships", r#"{"id":"11","org":"zeta"}"#),
        (
            "tickets",
            r#"{"author_email":"alice@example.org","body":"my app is down","id":"5000"}"#,
        ),
        (
            "users",
            r#"{"email":"Alice@Example.org","id":"1","name":"Alice Martin","phone":"+33612345678"}"#,
        ),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    // Field order in JSON objects follows serde_json's map (sorted): compare parsed values.
    let parse = |v: &Vec<(String, String)>| -> Vec<(String, serde_json::Value)> {
        v.iter()
            .map(|(a, b)| (a.clone(), serde_json::from_str(b).unwrap()))
            .collect()
    };
    assert_eq!(parse(&got), parse(&expected));
    let users = records.iter().find(|r| r.collection == "users").unwrap();
    assert!(users.provided_by_subject);
    assert_eq!(users.purpose.as_deref(), Some("accounts"));

    // Restriction flags the rows that have a flag.
    assert_eq!(conn.restrict(&alice(), true).await.unwrap(), 1);

    // Rectification of a declared column.
    let mut changes = serde_json::Map::new();
    changes.insert("name".into(), "Alice Martin-Durand".into());
    assert_eq!(conn.rectify(&alice(), &changes).await.unwrap(), 1);
    let mut bad = serde_json::Map::new();
    bad.insert("name; DROP TABLE users".into(), "x".into());
    assert!(conn.rectify(&alice(), &bad).await.is_err());

    // Erasure: delete, mask, keep with its reason.
    let erased = conn.erase(&alice()).await.unwrap();
    assert_eq!(
        erased.deleted, 5,
        "2 memberships, 1 app, 1 app_env, 1 ticket"
    );
    assert_eq!(erased.masked, 1);
    assert_eq!(erased.kept.len(), 1);
    assert_eq!(erased.kept[0].collection, "invoices");
    assert_eq!(erased.kept[0].count, 1);
    assert!(erased.kept[0].reason.contains("accounting"));
    // Nothing of Alice is found any more (the masked user no longer matches her address)…
    assert!(conn.access(&alice()).await.unwrap().is_empty());
    // …and running it again is harmless.
    let again = conn.erase(&alice()).await.unwrap();
    assert_eq!((again.deleted, again.masked, again.kept.len()), (0, 0, 0));
    // Bob is untouched.
    let bob = Subject {
        identifiers: vec![(IdentifierKind::Email, "bob@example.org".into())],
    };
    assert_eq!(conn.access(&bob).await.unwrap().len(), 6);
    conn.close().await;
}

async fn raw_exec(url: &str, sql: &str) {
    sqlx::any::install_default_drivers();
    let mut c = sqlx::AnyConnection::connect(url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();
}

#[tokio::test]
async fn sql_connector_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("platform.db").display()
    );
    raw_exec(&url, SCHEMA).await;
    exercise(&url).await;
    // What was masked and kept, seen directly in the platform database.
    sqlx::any::install_default_drivers();
    let mut c = sqlx::AnyConnection::connect(&url).await.unwrap();
    let row: (String, String) = sqlx::query_as("SELECT email, name FROM users WHERE id = 1")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(row, ("erased".to_string(), String::new()));
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM invoices")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(n, 2);
}

#[tokio::test]
async fn sql_connector_on_postgresql() {
    let Ok(base) = std::env::var("TUTELA_TEST_POSTGRES_URL") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but TUTELA_TEST_POSTGRES_URL is not"
        );
        eprintln!("skipped on PostgreSQL: set TUTELA_TEST_POSTGRES_URL=postgres://… to run it");
        return;
    };
    let schema = format!("platform_{}", std::process::id());
    raw_exec(
        &base,
        &format!("DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"),
    )
    .await;
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options[search_path]={schema}");
    raw_exec(&url, SCHEMA).await;
    exercise(&url).await;
    raw_exec(&base, &format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).await;
}

#[test]
fn configuration_mistakes_are_all_reported() {
    let mut cfg = config("sqlite::memory:");
    cfg.collections[0].table = "users; --".into();
    cfg.collections[1].references[0].collection = "nobody".into();
    cfg.collections[2]
        .identity
        .push(tutela_rights::connectors::sql::IdentityColumn {
            column: "x".into(),
            kind: "shoe_size".into(),
        });
    let err = cfg.validate().unwrap_err().to_string();
    assert!(
        err.contains("users; --")
            && err.contains("unknown collection `nobody`")
            && err.contains("shoe_size"),
        "{err}"
    );
    assert!(!err.contains("sqlite::memory"), "the URL is never echoed");
}
