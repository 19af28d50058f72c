//! The vault as a source of the rights engine, on SQLite and PostgreSQL: access returns the
//! decrypted records field by field (restricted ones included for the subject), rectification
//! re-seals payloads, restriction flags records, erasure crypto-shreds everything except the
//! declared legal-obligation records and says so — and afterwards neither the identifier nor
//! the payloads appear anywhere in the SQLite files.

use std::sync::Arc;

use tutela_crypto::IdentifierKind;
use tutela_rights::source::{Source, Subject};
use tutela_rights::vault_source::VaultSource;
use tutela_store::Store;
use tutela_vault::{Actor, BatchItem, IdentifierInput, ReadOptions, RecordInput, Vault, VaultKeys};

fn rec(purpose: &str, category: &str, payload: serde_json::Value) -> RecordInput {
    RecordInput {
        purpose: purpose.into(),
        category: category.into(),
        payload,
        source: "test".into(),
        collected_at: None,
        legal_hold: false,
    }
}

async fn exercise(store: Store) {
    let register =
        Arc::new(tutela_domain::load(tutela_domain::EXAMPLE_REGISTER, "example").unwrap());
    let vault = Vault::new(
        store.clone(),
        register.clone(),
        VaultKeys::generate().unwrap(),
    );
    let actor = Actor::new("platform");
    let out = vault
        .write_batch(
            &actor,
            vec![
                BatchItem {
                    subject_id: None,
                    identifiers: vec![IdentifierInput::new(
                        IdentifierKind::Email,
                        "zoe.forensic@example.org",
                    )],
                    records: vec![
                        rec(
                            "recruitment",
                            "name",
                            serde_json::json!({"name": "Zoe Quartermain"}),
                        ),
                        rec(
                            "recruitment",
                            "phone",
                            serde_json::json!({"phone": "+33699887766"}),
                        ),
                        rec(
                            "platform_security",
                            "content_change_logs",
                            serde_json::json!({"action": "deleted app zq-secret-app"}),
                        ),
                    ],
                },
                BatchItem {
                    subject_id: None,
                    identifiers: vec![IdentifierInput::new(
                        IdentifierKind::Email,
                        "other@example.org",
                    )],
                    records: vec![rec(
                        "customer_accounts",
                        "name",
                        serde_json::json!({"name": "Other Person"}),
                    )],
                },
            ],
        )
        .await
        .unwrap();
    let zoe_id = out[0].subject_id.clone();
    let src = VaultSource::new(vault.clone(), "rights_requests").unwrap();
    assert!(VaultSource::new(vault.clone(), "nope").is_err());
    let zoe = Subject {
        identifiers: vec![(IdentifierKind::Email, "zoe.forensic@example.org".into())],
    };

    // Access, field by field.
    let mut got = src.access(&zoe).await.unwrap();
    got.sort_by(|a, b| a.collection.cmp(&b.collection));
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].collection, "content_change_logs");
    assert_eq!(got[0].fields["action"], "deleted app zq-secret-app");
    assert_eq!(got[1].collection, "name");
    assert_eq!(got[1].purpose.as_deref(), Some("recruitment"));
    assert_eq!(got[1].fields["name"], "Zoe Quartermain");
    assert!(got[1].fields.contains_key("collected_on"));
    assert_eq!(got[2].fields["phone"], "+33699887766");
    assert_eq!(
        got[1].provided_by_subject,
        register.category("name").unwrap().provided_by_subject
    );

    // Rectification re-seals; restriction flags (and the subject still sees them).
    let mut changes = serde_json::Map::new();
    changes.insert("name".into(), "Zoe Q. Martin".into());
    assert_eq!(src.rectify(&zoe, &changes).await.unwrap(), 1);
    assert_eq!(src.restrict(&zoe, true).await.unwrap(), 3);
    assert_eq!(src.restrict(&zoe, true).await.unwrap(), 0, "idempotent");
    let after = src.access(&zoe).await.unwrap();
    assert!(
        after
            .iter()
            .any(|r| r.fields.get("name") == Some(&serde_json::json!("Zoe Q. Martin")))
    );
    let platform_view = vault
        .read_subject(&actor, "customer_accounts", &zoe_id, ReadOptions::default())
        .await
        .unwrap();
    assert!(
        platform_view
            .purposes
            .iter()
            .flat_map(|p| &p.records)
            .all(|r| r.restricted && r.payload.is_none()),
        "restricted records are withheld from processing"
    );
    assert_eq!(src.restrict(&zoe, false).await.unwrap(), 3);

    // Erasure: everything but the legal-obligation log, which is declared with its reason and date.
    let erased = src.erase(&zoe).await.unwrap();
    assert_eq!(erased.deleted, 2);
    assert_eq!(erased.kept.len(), 1);
    assert_eq!(
        erased.kept[0].collection,
        "platform_security/content_change_logs"
    );
    assert!(
        erased.kept[0].reason.starts_with("legal obligation"),
        "{:?}",
        erased.kept[0]
    );
    assert!(erased.kept[0].until.is_some());
    let left = src.access(&zoe).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].collection, "content_change_logs");
    // The other person is untouched; a stranger has nothing.
    let other = Subject {
        identifiers: vec![(IdentifierKind::Email, "other@example.org".into())],
    };
    assert_eq!(src.access(&other).await.unwrap().len(), 1);
    let nobody = Subject {
        identifiers: vec![(IdentifierKind::Email, "nobody@example.org".into())],
    };
    assert!(src.access(&nobody).await.unwrap().is_empty());
    assert_eq!(src.erase(&nobody).await.unwrap().deleted, 0);
    // Every read and erasure is in the vault's audit log, under the rights engine's name.
    let audit = vault.audit_of_subject(&zoe_id).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|a| format!("{a:?}").contains("rights-engine")),
        "{audit:?}"
    );
}

#[tokio::test]
async fn vault_source_on_sqlite_with_forensic_check() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_data_dir(dir.path()).await.unwrap();
    exercise(store.clone()).await;
    store.close().await;
    let mut bytes = Vec::new();
    for e in std::fs::read_dir(dir.path()).unwrap() {
        bytes.extend(std::fs::read(e.unwrap().path()).unwrap());
    }
    for needle in [
        "zoe.forensic@example.org",
        "Zoe Quartermain",
        "Zoe Q. Martin",
        "+33699887766",
        "zq-secret-app",
    ] {
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "{needle} found in the store files"
        );
    }
}

#[tokio::test]
async fn vault_source_on_postgresql() {
    let Ok(base) = std::env::var("TUTELA_TEST_POSTGRES_URL") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but TUTELA_TEST_POSTGRES_URL is not"
        );
        eprintln!("skipped on PostgreSQL: set TUTELA_TEST_POSTGRES_URL=postgres://… to run it");
        return;
    };
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let schema = format!("rights_vault_{}", std::process::id());
    let mut c = sqlx::AnyConnection::connect(&base).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
    )))
    .execute(&mut c)
    .await
    .unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    let store = Store::open_url(&format!("{base}{sep}options[search_path]={schema}"))
        .await
        .unwrap();
    exercise(store.clone()).await;
    store.close().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE"
    )))
    .execute(&mut c)
    .await
    .unwrap();
}
