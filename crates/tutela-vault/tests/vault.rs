//! Vault tests, each run on SQLite and on PostgreSQL when `TUTELA_TEST_POSTGRES_URL` is set (in
//! CI it must be). They go through the vault's API only, except where they play the attacker
//! (editing an audit row) or the forensic examiner (reading the database files' bytes).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use serde_json::json;
use tutela_crypto::{IdentifierKind, Keyring, MasterKey};
use tutela_store::{Engine, Store};
use tutela_vault::{
    Actor, AnchorEvent, AuditProblem, BatchItem, ErasureScope, IdentifierInput, KeepReason,
    ReadOptions, RecordInput, RecordUpdate, Vault, VaultError, VaultKeys,
};

// ---------------------------------------------------------------------------------------------
// Harness

struct Env {
    vault: Vault,
    store: Store,
    clock: Arc<AtomicI64>,
    /// PostgreSQL: (base URL, schema); SQLite: None.
    pg: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

impl Env {
    fn set_now(&self, ts: &str) {
        let t: jiff::Timestamp = ts.parse().unwrap();
        self.clock.store(t.as_second(), Ordering::SeqCst);
    }

    fn now(&self) -> i64 {
        self.clock.load(Ordering::SeqCst)
    }

    /// Runs raw SQL behind the vault's back (the attacker's view).
    async fn raw(&self, sql: &str) {
        use sqlx::Connection;
        sqlx::any::install_default_drivers();
        let url = match &self.pg {
            Some((base, schema)) => with_schema(base, schema),
            None => format!("sqlite://{}", self.store.sqlite_path().unwrap().display()),
        };
        let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
    }
}

fn with_schema(base: &str, schema: &str) -> String {
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}options[search_path]={schema}")
}

fn register() -> Arc<tutela_domain::Register> {
    Arc::new(tutela_domain::load(tutela_domain::EXAMPLE_REGISTER, "example").unwrap())
}

fn vault_over(store: &Store, keys: VaultKeys, clock: &Arc<AtomicI64>) -> Vault {
    let c = clock.clone();
    Vault::new(store.clone(), register(), keys)
        .with_clock(move || jiff::Timestamp::from_second(c.load(Ordering::SeqCst)).unwrap())
}

static COUNTER: AtomicI64 = AtomicI64::new(0);

async fn admin(base: &str, sql: &str) {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(base).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&mut conn)
        .await
        .unwrap();
}

async fn sqlite_env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_data_dir(dir.path()).await.unwrap();
    let clock = Arc::new(AtomicI64::new(
        "2026-11-29T10:00:00Z"
            .parse::<jiff::Timestamp>()
            .unwrap()
            .as_second(),
    ));
    Env {
        vault: vault_over(&store, VaultKeys::generate().unwrap(), &clock),
        store,
        clock,
        pg: None,
        _dir: Some(dir),
    }
}

async fn postgres_env() -> Option<Env> {
    let Ok(base) = std::env::var("TUTELA_TEST_POSTGRES_URL") else {
        if std::env::var_os("CI").is_some() {
            panic!(
                "CI is set but TUTELA_TEST_POSTGRES_URL is not: the PostgreSQL tests may not skip in CI"
            );
        }
        eprintln!("skipped on PostgreSQL: set TUTELA_TEST_POSTGRES_URL=postgres://… to run it");
        return None;
    };
    let schema = format!(
        "v_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    admin(
        &base,
        &format!("DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"),
    )
    .await;
    let store = Store::open_url(&with_schema(&base, &schema)).await.unwrap();
    let clock = Arc::new(AtomicI64::new(
        "2026-11-29T10:00:00Z"
            .parse::<jiff::Timestamp>()
            .unwrap()
            .as_second(),
    ));
    Some(Env {
        vault: vault_over(&store, VaultKeys::generate().unwrap(), &clock),
        store,
        clock,
        pg: Some((base, schema)),
        _dir: None,
    })
}

async fn cleanup(env: Env) {
    env.store.close().await;
    if let Some((base, schema)) = &env.pg {
        admin(base, &format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).await;
    }
}

async fn on_each_engine<F, Fut>(test: F)
where
    F: Fn(Arc<Env>) -> Fut,
    Fut: Future<Output = ()>,
{
    let env = Arc::new(sqlite_env().await);
    test(env.clone()).await;
    cleanup(Arc::into_inner(env).expect("test kept no reference")).await;
    if let Some(env) = postgres_env().await {
        let env = Arc::new(env);
        test(env.clone()).await;
        cleanup(Arc::into_inner(env).expect("test kept no reference")).await;
    }
}

fn actor() -> Actor {
    Actor::new("test:platform")
}

fn email(v: &str) -> IdentifierInput {
    IdentifierInput::new(IdentifierKind::Email, v)
}

fn rec(purpose: &str, category: &str, payload: serde_json::Value) -> RecordInput {
    RecordInput {
        purpose: purpose.into(),
        category: category.into(),
        payload,
        source: "test-suite".into(),
        collected_at: None,
        legal_hold: false,
    }
}

fn ts(s: &str) -> i64 {
    s.parse::<jiff::Timestamp>().unwrap().as_second()
}

async fn new_subject(env: &Env, ids: Vec<IdentifierInput>) -> String {
    env.vault
        .resolve_subject(&actor(), ids)
        .await
        .unwrap()
        .subject_id
}

// ---------------------------------------------------------------------------------------------
// Tests

#[tokio::test]
async fn write_read_round_trip_and_lookup_by_any_identifier() {
    on_each_engine(|env| async move {
        let v = &env.vault;
        let r = v
            .resolve_subject(
                &actor(),
                vec![
                    email("Alice.Martin@Example.com"),
                    IdentifierInput::new(IdentifierKind::AccountId, "acct-42"),
                ],
            )
            .await
            .unwrap();
        assert!(r.created);
        assert_eq!(r.linked, 2);
        // Found again by a differently written e-mail, and identifiers are linked on the way.
        let again = v
            .resolve_subject(
                &actor(),
                vec![
                    email("  alice.martin@example.COM "),
                    IdentifierInput::new(IdentifierKind::Phone, "+33 6 12 34 56 78"),
                ],
            )
            .await
            .unwrap();
        assert_eq!(again.subject_id, r.subject_id);
        assert!(!again.created);
        assert_eq!(again.linked, 1);

        let written = v
            .put_records(
                &actor(),
                &r.subject_id,
                vec![
                    rec(
                        "customer_accounts",
                        "name",
                        json!({"first": "Alice", "last": "Martin"}),
                    ),
                    rec(
                        "support",
                        "support_messages",
                        json!({"text": "My app is down ☹"}),
                    ),
                ],
            )
            .await
            .unwrap();
        assert_eq!(written.len(), 2);
        assert!(written[0].id < written[1].id);

        let by_phone = v
            .lookup(
                &actor(),
                "support",
                &IdentifierInput::new(IdentifierKind::Phone, "+33612345678"),
            )
            .await
            .unwrap();
        assert_eq!(by_phone, r.subject_id);
        assert!(matches!(
            v.lookup(&actor(), "support", &email("bob@example.com"))
                .await,
            Err(VaultError::SubjectNotFound)
        ));

        let view = v
            .read_subject(&actor(), "support", &r.subject_id, ReadOptions::default())
            .await
            .unwrap();
        let purposes: Vec<&str> = view.purposes.iter().map(|p| p.purpose.as_str()).collect();
        assert_eq!(purposes, ["customer_accounts", "support"]);
        assert_eq!(
            view.purposes[0].records[0].payload,
            Some(json!({"first": "Alice", "last": "Martin"}))
        );
        assert_eq!(view.purposes[0].legal_basis, "contract");
        assert_eq!(
            view.purposes[1].records[0].payload,
            Some(json!({"text": "My app is down ☹"}))
        );
        let kinds: Vec<&str> = view.identifiers.iter().map(|i| i.kind.as_str()).collect();
        assert_eq!(kinds.len(), 3);
        for k in ["email", "account_id", "phone"] {
            assert!(kinds.contains(&k), "{kinds:?}");
        }
        let one = v
            .read_record(&actor(), "support", &r.subject_id, written[1].id)
            .await
            .unwrap();
        assert_eq!(one.payload, Some(json!({"text": "My app is down ☹"})));

        // Every read and lookup was audited, with a commitment to the subject.
        let trail = v.audit_of_subject(&r.subject_id).await.unwrap();
        let actions: Vec<&str> = trail.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(
            actions,
            [
                "subject_created",
                "identifiers_linked",
                "write",
                "lookup",
                "read",
                "read"
            ]
        );
        assert!(trail.iter().all(|e| e.actor == "test:platform"));
        // One entry for a write under two purposes, naming both.
        assert_eq!(trail[2].purpose, "customer_accounts,support");
        assert_eq!(trail[3].purpose, "support");
        assert!(v.verify_audit(None).await.unwrap().is_ok());
    })
    .await;
}

#[tokio::test]
async fn writes_outside_the_register_or_with_card_numbers_are_refused() {
    on_each_engine(|env| async move {
        let v = &env.vault;
        let s = new_subject(&env, vec![email("carol@example.com")]).await;
        let put = |r: RecordInput| {
            let s = s.clone();
            async move { v.put_records(&actor(), &s, vec![r]).await }
        };
        let err = put(rec("marketing", "email", json!("x")))
            .await
            .unwrap_err();
        assert!(
            matches!(err, VaultError::UndeclaredPurpose(ref p) if p == "marketing"),
            "{err}"
        );
        let err = put(rec("support", "date_of_birth", json!("x")))
            .await
            .unwrap_err();
        assert!(
            matches!(err, VaultError::UndeclaredCategory { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("date_of_birth") && err.to_string().contains("support"));
        let err = put(rec(
            "customer_accounts",
            "payment_card",
            json!({"last4": "1111"}),
        ))
        .await
        .unwrap_err();
        assert!(matches!(err, VaultError::NeverStoreCategory(_)), "{err}");
        let err = put(rec(
            "support",
            "support_messages",
            json!({"text": "my card is 4111 1111 1111 1111, please charge it"}),
        ))
        .await
        .unwrap_err();
        assert!(matches!(err, VaultError::CardNumberRefused { .. }), "{err}");
        assert!(
            !err.to_string().contains("4111"),
            "the error echoes the card: {err}"
        );
        let err = put(rec(
            "support",
            "support_messages",
            json!({"x": "a".repeat(70_000)}),
        ))
        .await
        .unwrap_err();
        assert!(err.to_string().contains("64 KiB"), "{err}");
        let mut bad_source = rec("support", "support_messages", json!("hi"));
        bad_source.source = "carol@example.com".into();
        assert!(matches!(
            put(bad_source).await,
            Err(VaultError::InvalidInput(_))
        ));
        // One bad record refuses the whole write: nothing was stored.
        let err = v
            .put_records(
                &actor(),
                &s,
                vec![
                    rec("support", "support_messages", json!("fine")),
                    rec("support", "payment_card", json!("no")),
                ],
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, VaultError::UndeclaredCategory { .. }),
            "{err}"
        );
        let view = v
            .read_subject(&actor(), "support", &s, ReadOptions::default())
            .await
            .unwrap();
        assert!(view.purposes.is_empty());
        // Unknown subjects and reads under undeclared purposes.
        assert!(matches!(
            v.put_records(
                &actor(),
                "0123456789abcdef0123456789abcdef",
                vec![rec("support", "email", json!("x"))]
            )
            .await,
            Err(VaultError::SubjectNotFound)
        ));
        assert!(matches!(
            v.put_records(
                &actor(),
                "../etc/passwd",
                vec![rec("support", "email", json!("x"))]
            )
            .await,
            Err(VaultError::SubjectNotFound)
        ));
        assert!(matches!(
            v.read_subject(&actor(), "curiosity", &s, ReadOptions::default())
                .await,
            Err(VaultError::UndeclaredPurpose(_))
        ));
        // Identifiers of two different people can't be merged silently.
        let d = new_subject(&env, vec![email("dave@example.com")]).await;
        assert_ne!(d, s);
        assert!(matches!(
            v.resolve_subject(
                &actor(),
                vec![email("carol@example.com"), email("dave@example.com")]
            )
            .await,
            Err(VaultError::IdentifierConflict)
        ));
        assert!(matches!(
            v.link_identifiers(&actor(), &s, vec![email("dave@example.com")])
                .await,
            Err(VaultError::IdentifierTaken)
        ));
        assert!(matches!(
            v.resolve_subject(&actor(), vec![email("not an email")])
                .await,
            Err(VaultError::InvalidIdentifier(_))
        ));
    })
    .await;
}

#[tokio::test]
async fn deadlines_of_every_anchor_kind_in_the_example_register() {
    on_each_engine(|env| async move {
        let v = &env.vault;
        env.set_now("2026-01-31T09:00:00Z");
        let s = new_subject(&env, vec![email("erin@example.com")]).await;
        let w = v
            .put_records(
                &actor(),
                &s,
                vec![
                    rec("audience_statistics", "visitor_pseudonym", json!("a1b2")), // 180 days
                    rec(
                        "platform_security",
                        "content_change_logs",
                        json!({"op": "delete"}),
                    ), // 1 year, legal
                    rec("platform_security", "activity_logs", json!({"op": "login"})), // 6 months
                    rec("recruitment", "resume", json!({"cv": "…"})), // 12 months after last contact
                    rec("customer_accounts", "email", json!("erin@example.com")), // contract, then 5 years
                    rec("customer_accounts", "invoices", json!({"n": 1})), // contract, then 10 years
                    rec("customer_accounts", "applications", json!({"app": "x"})), // contract end + 30 days
                    rec(
                        "rights_requests",
                        "request_records",
                        json!({"type": "access"}),
                    ), // 1 year after reply
                    rec(
                        "rights_requests",
                        "identity_proof",
                        json!({"doc": "passport"}),
                    ), // while open
                ],
            )
            .await
            .unwrap();
        let d: Vec<Option<i64>> = w.iter().map(|r| r.deadline).collect();
        assert_eq!(d[0], Some(ts("2026-07-30T09:00:00Z")));
        assert_eq!(d[1], Some(ts("2027-01-31T09:00:00Z")));
        assert_eq!(d[2], Some(ts("2026-07-31T09:00:00Z")));
        assert_eq!(d[3], Some(ts("2027-01-31T09:00:00Z")));
        for (i, deadline) in d.iter().enumerate().skip(4) {
            assert_eq!(
                *deadline, None,
                "record {i} has no deadline before its event"
            );
        }
        assert_eq!(w[4].waiting_for, Some("contract_ended"));
        assert_eq!(w[7].waiting_for, Some("request_replied"));
        assert_eq!(w[8].waiting_for, Some("request_closed"));

        // Last contact moves the recruitment clock forward, never back.
        env.set_now("2026-03-15T08:30:00Z");
        let rep = v
            .record_event(
                &actor(),
                &s,
                AnchorEvent {
                    event: "last_contact".into(),
                    purpose: Some("recruitment".into()),
                    at: None,
                },
            )
            .await
            .unwrap();
        assert_eq!(rep.purposes[0].records, 1);
        let rep = v
            .record_event(
                &actor(),
                &s,
                AnchorEvent {
                    event: "last_contact".into(),
                    purpose: Some("recruitment".into()),
                    at: Some(ts("2026-02-01T00:00:00Z")),
                },
            )
            .await
            .unwrap();
        assert_eq!(rep.purposes[0].records, 0);
        // Contract end: 5 years, 10 years for invoices, 30 days for applications.
        let rep = v
            .record_event(
                &actor(),
                &s,
                AnchorEvent {
                    event: "contract_ended".into(),
                    purpose: None,
                    at: Some(ts("2026-02-28T12:00:00Z")),
                },
            )
            .await
            .unwrap();
        assert_eq!(rep.purposes.len(), 1);
        assert_eq!(rep.purposes[0].purpose, "customer_accounts");
        assert_eq!(rep.purposes[0].records, 3);
        // Reply to the rights request, then closing it.
        v.record_event(
            &actor(),
            &s,
            AnchorEvent {
                event: "request_replied".into(),
                purpose: Some("rights_requests".into()),
                at: Some(ts("2026-03-10T00:00:00Z")),
            },
        )
        .await
        .unwrap();
        // An event that the purpose's rules don't count from is refused.
        let err = v
            .record_event(
                &actor(),
                &s,
                AnchorEvent {
                    event: "contract_ended".into(),
                    purpose: Some("audience_statistics".into()),
                    at: None,
                },
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, VaultError::EventNotApplicable { .. }),
            "{err}"
        );
        assert!(
            v.record_event(
                &actor(),
                &s,
                AnchorEvent {
                    event: "tuesday".into(),
                    purpose: None,
                    at: None
                }
            )
            .await
            .is_err()
        );

        let view = v
            .read_subject(&actor(), "rights_requests", &s, ReadOptions::default())
            .await
            .unwrap();
        let deadline = |cat: &str| {
            view.purposes
                .iter()
                .flat_map(|p| &p.records)
                .find(|r| r.category == cat)
                .map(|r| r.deadline)
        };
        assert_eq!(deadline("resume"), Some(Some(ts("2027-03-15T08:30:00Z"))));
        assert_eq!(deadline("email"), Some(Some(ts("2031-02-28T12:00:00Z"))));
        assert_eq!(deadline("invoices"), Some(Some(ts("2036-02-28T12:00:00Z"))));
        assert_eq!(
            deadline("applications"),
            Some(Some(ts("2026-03-30T12:00:00Z")))
        );
        assert_eq!(
            deadline("request_records"),
            Some(Some(ts("2027-03-10T00:00:00Z")))
        );
        assert_eq!(deadline("identity_proof"), Some(None));

        // A record written after the event gets its deadline at once.
        let late = v
            .put_records(
                &actor(),
                &s,
                vec![rec(
                    "customer_accounts",
                    "phone",
                    json!("+33 1 23 45 67 89"),
                )],
            )
            .await
            .unwrap();
        assert_eq!(late[0].deadline, Some(ts("2031-02-28T12:00:00Z")));

        // Closing the request: the identity proof goes at once (never read again).
        v.record_event(
            &actor(),
            &s,
            AnchorEvent {
                event: "request_closed".into(),
                purpose: Some("rights_requests".into()),
                at: None,
            },
        )
        .await
        .unwrap();
        let view = v
            .read_subject(&actor(), "rights_requests", &s, ReadOptions::default())
            .await
            .unwrap();
        assert!(
            view.purposes
                .iter()
                .flat_map(|p| &p.records)
                .all(|r| r.category != "identity_proof")
        );
    })
    .await;
}

#[tokio::test]
async fn expired_records_are_never_read_and_the_purge_deletes_them_except_on_legal_hold() {
    on_each_engine(|env| async move {
        let v = &env.vault;
        env.set_now("2026-01-01T00:00:00Z");
        // A visitor with only audience statistics: everything expires after 180 days.
        let visitor = new_subject(
            &env,
            vec![IdentifierInput::new(IdentifierKind::VisitorId, "0123abcd")],
        )
        .await;
        v.put_records(
            &actor(),
            &visitor,
            vec![rec("audience_statistics", "page_url", json!("/pricing")); 3],
        )
        .await
        .unwrap();
        // A customer with security logs (6 months) and one on legal hold.
        let customer = new_subject(&env, vec![email("frank@example.com")]).await;
        let mut held = rec(
            "platform_security",
            "activity_logs",
            json!({"op": "export"}),
        );
        held.legal_hold = true;
        v.put_records(
            &actor(),
            &customer,
            vec![
                rec("platform_security", "activity_logs", json!({"op": "login"})),
                held,
            ],
        )
        .await
        .unwrap();

        env.set_now("2026-08-01T00:00:00Z");
        // Before any purge: reads no longer see the expired records.
        let view = v
            .read_subject(
                &actor(),
                "platform_security",
                &visitor,
                ReadOptions::default(),
            )
            .await
            .unwrap();
        assert!(view.purposes.is_empty());
        let view = v
            .read_subject(
                &actor(),
                "platform_security",
                &customer,
                ReadOptions::default(),
            )
            .await
            .unwrap();
        assert_eq!(view.purposes[0].records.len(), 1);
        assert!(view.purposes[0].records[0].legal_hold);

        // Dry run: counts only.
        let mut seen = Vec::new();
        let dry = v
            .purge_expired(&Actor::new("job:retention"), true, 2, &mut |d, t| {
                seen.push((d, t))
            })
            .await
            .unwrap();
        assert_eq!(dry.records, 4);
        assert_eq!(dry.per_purpose["audience_statistics"], 3);
        assert_eq!(dry.per_purpose["platform_security"], 1);
        assert_eq!(env.store.vault_counts().await.unwrap().2, 5);

        let audit_before = env.store.audit_head().await.unwrap().0;
        let mut seen = Vec::new();
        let done = v
            .purge_expired(&Actor::new("job:retention"), false, 2, &mut |d, t| {
                seen.push((d, t))
            })
            .await
            .unwrap();
        assert_eq!(done.records, 4);
        if env.store.engine() == Engine::Sqlite {
            assert_eq!(done.batches, 2);
        } else {
            // Two workers, each over its half of the subjects, 2 records per batch.
            assert!((2..=4).contains(&done.batches), "{} batches", done.batches);
        }
        assert_eq!(done.subjects_shredded, 1, "the visitor had nothing left");
        assert_eq!(seen.last(), Some(&(4, 4)));
        assert_eq!(env.store.vault_counts().await.unwrap(), (1, 1, 1));
        // The visitor is gone entirely, identifiers included; the held record survives.
        assert!(matches!(
            v.lookup(
                &actor(),
                "audience_statistics",
                &IdentifierInput::new(IdentifierKind::VisitorId, "0123ABCD")
            )
            .await,
            Err(VaultError::SubjectNotFound)
        ));
        // Per-purpose counts went to the audit log.
        let rows = env.store.audit_entries(audit_before, 100).await.unwrap();
        let purged: u64 = rows
            .iter()
            .filter(|r| r.action == "retention_purge" && r.purpose == "audience_statistics")
            .map(|r| {
                serde_json::from_str::<serde_json::Value>(&r.details).unwrap()["records"]
                    .as_u64()
                    .unwrap()
            })
            .sum();
        assert_eq!(purged, 3);
        assert!(rows.iter().all(|r| r.actor == "job:retention"));
        assert!(v.verify_audit(None).await.unwrap().is_ok());
        // Nothing left to do.
        let again = v
            .purge_expired(&Actor::new("job:retention"), false, 2, &mut |_, _| {})
            .await
            .unwrap();
        assert_eq!(again.records, 0);
    })
    .await;
}

#[tokio::test]
async fn erasure_keeps_legal_hold_and_legal_obligations_and_shreds_when_nothing_remains() {
    on_each_engine(|env| async move {
        let v = &env.vault;
        let s = new_subject(&env, vec![email("grace@example.com")]).await;
        let mut held = rec(
            "support",
            "support_messages",
            json!({"text": "dispute evidence"}),
        );
        held.legal_hold = true;
        let w = v
            .put_records(
                &actor(),
                &s,
                vec![
                    rec("support", "support_messages", json!({"text": "hello"})),
                    held,
                    rec("customer_accounts", "invoices", json!({"n": 7})),
                    rec(
                        "platform_security",
                        "content_change_logs",
                        json!({"op": "edit"}),
                    ),
                    rec("recruitment", "resume", json!({"cv": "…"})),
                ],
            )
            .await
            .unwrap();
        // Erasure for some purposes only.
        let r = v
            .erase(
                &actor(),
                &s,
                ErasureScope::Purposes(vec!["recruitment".into()]),
            )
            .await
            .unwrap();
        assert_eq!(r.erased.get("recruitment"), Some(&1));
        assert!(r.kept.is_empty() && !r.subject_shredded);

        let r = v.erase(&actor(), &s, ErasureScope::All).await.unwrap();
        assert_eq!(r.erased.get("support"), Some(&1));
        assert!(!r.subject_shredded);
        let mut kept: Vec<(i64, &str)> = r
            .kept
            .iter()
            .map(|k| (k.record_id, k.reason.as_str()))
            .collect();
        kept.sort();
        assert_eq!(
            kept,
            [
                (w[1].id, "legal_hold"),
                (w[2].id, "legal_obligation"),
                (w[3].id, "legal_obligation")
            ]
        );
        assert!(
            r.kept
                .iter()
                .any(|k| k.reason == KeepReason::LegalHold && k.purpose == "support")
        );
        // The survivors are still readable; the subject is still found.
        assert_eq!(
            v.lookup(&actor(), "support", &email("grace@example.com"))
                .await
                .unwrap(),
            s
        );
        let view = v
            .read_subject(&actor(), "support", &s, ReadOptions::default())
            .await
            .unwrap();
        assert_eq!(
            view.purposes.iter().map(|p| p.records.len()).sum::<usize>(),
            3
        );

        // Lift the hold; once the legal periods end, a new erasure leaves nothing: shredded.
        v.update_record(
            &actor(),
            &s,
            w[1].id,
            RecordUpdate {
                legal_hold: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        v.record_event(
            &actor(),
            &s,
            AnchorEvent {
                event: "contract_ended".into(),
                purpose: None,
                at: None,
            },
        )
        .await
        .unwrap();
        env.set_now("2037-01-01T00:00:00Z");
        let r = v.erase(&actor(), &s, ErasureScope::All).await.unwrap();
        assert!(r.kept.is_empty(), "{:?}", r.kept);
        assert!(r.subject_shredded);
        assert!(matches!(
            v.lookup(&actor(), "support", &email("grace@example.com"))
                .await,
            Err(VaultError::SubjectNotFound)
        ));
        assert!(matches!(
            v.read_subject(&actor(), "support", &s, ReadOptions::default())
                .await,
            Err(VaultError::SubjectNotFound)
        ));
        assert!(matches!(
            v.erase(&actor(), &s, ErasureScope::All).await,
            Err(VaultError::SubjectNotFound)
        ));
        assert_eq!(env.store.vault_counts().await.unwrap(), (0, 0, 0));
        // The audit trail of the subject survives its erasure and still verifies.
        let trail = v.audit_of_subject(&s).await.unwrap();
        assert_eq!(trail.last().unwrap().action, "subject_shredded");
        assert!(v.verify_audit(None).await.unwrap().is_ok());
    })
    .await;
}

#[tokio::test]
async fn updates_are_checked_restriction_hides_payloads() {
    on_each_engine(|env| async move {
        let v = &env.vault;
        let s = new_subject(&env, vec![email("heidi@example.com")]).await;
        let w = v
            .put_records(
                &actor(),
                &s,
                vec![rec("support", "support_messages", json!("v1"))],
            )
            .await
            .unwrap();
        let id = w[0].id;
        let up = v
            .update_record(
                &actor(),
                &s,
                id,
                RecordUpdate {
                    payload: Some(json!("v2")),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(up.payload, None, "an update answers metadata only");
        assert_eq!(
            v.read_record(&actor(), "support", &s, id)
                .await
                .unwrap()
                .payload,
            Some(json!("v2"))
        );
        let err = v
            .update_record(
                &actor(),
                &s,
                id,
                RecordUpdate {
                    payload: Some(json!("5555555555554444")),
                    ..Default::default()
                },
            )
            .await
            .unwrap_err();
        assert!(matches!(err, VaultError::CardNumberRefused { .. }));
        assert!(matches!(
            v.update_record(&actor(), &s, id, RecordUpdate::default())
                .await,
            Err(VaultError::InvalidInput(_))
        ));
        assert!(matches!(
            v.update_record(
                &actor(),
                &s,
                id + 1000,
                RecordUpdate {
                    legal_hold: Some(true),
                    ..Default::default()
                }
            )
            .await,
            Err(VaultError::RecordNotFound)
        ));
        // Another subject's record is not reachable through this subject.
        let other = new_subject(&env, vec![email("ivan@example.com")]).await;
        assert!(matches!(
            v.read_record(&actor(), "support", &other, id).await,
            Err(VaultError::RecordNotFound)
        ));

        v.update_record(
            &actor(),
            &s,
            id,
            RecordUpdate {
                restricted: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let view = v
            .read_subject(&actor(), "support", &s, ReadOptions::default())
            .await
            .unwrap();
        let r = &view.purposes[0].records[0];
        assert!(r.restricted && r.payload.is_none());
        let view = v
            .read_subject(
                &actor(),
                "rights_requests",
                &s,
                ReadOptions {
                    include_restricted: true,
                },
            )
            .await
            .unwrap();
        assert_eq!(view.purposes[0].records[0].payload, Some(json!("v2")));
    })
    .await;
}

#[tokio::test]
async fn key_rotation_rewraps_subject_keys_and_keeps_indexes_and_commitments() {
    on_each_engine(|env| async move {
        let root = MasterKey::generate().unwrap();
        let root_copy = MasterKey::from_env_value(&root.to_file_text()).unwrap();
        let old = MasterKey::generate().unwrap();
        let old_copy = MasterKey::from_env_value(&old.to_file_text()).unwrap();
        let v1 = vault_over(
            &env.store,
            VaultKeys::new(Keyring::new(old), &root).unwrap(),
            &env.clock,
        );
        let mut subjects = Vec::new();
        for i in 0..5 {
            let r = v1
                .write_batch(
                    &actor(),
                    vec![BatchItem {
                        subject_id: None,
                        identifiers: vec![email(&format!("user{i}@example.com"))],
                        records: vec![rec("support", "support_messages", json!({"i": i}))],
                    }],
                )
                .await
                .unwrap();
            subjects.push(r[0].subject_id.clone());
        }
        let before_commitment = v1.keys().commitment(&subjects[0]).unwrap();

        let new = MasterKey::generate().unwrap();
        let new_copy = MasterKey::from_env_value(&new.to_file_text()).unwrap();
        let root_copy2 = MasterKey::from_env_value(&root.to_file_text()).unwrap();
        let new_id = new.id().to_hex();
        let ring = Keyring {
            current: new,
            previous: vec![old_copy],
        };
        let v2 = vault_over(
            &env.store,
            VaultKeys::new(ring, &root_copy).unwrap(),
            &env.clock,
        );
        let mut last = (0, 0);
        let n = v2
            .rewrap_subject_keys(&Actor::new("cli:keys-rotate"), &mut |d, t| last = (d, t))
            .await
            .unwrap();
        assert_eq!(n, 5);
        assert_eq!(last, (5, 5));
        let counts = env.store.vault_key_counts().await.unwrap();
        assert_eq!(
            counts.into_iter().collect::<Vec<_>>(),
            [(new_id.clone(), 5)]
        );

        // With only the new key and the same root: everything still works.
        let v3 = vault_over(
            &env.store,
            VaultKeys::new(Keyring::new(new_copy), &root_copy2).unwrap(),
            &env.clock,
        );
        let found = v3
            .lookup(&actor(), "support", &email("user3@example.com"))
            .await
            .unwrap();
        assert_eq!(found, subjects[3]);
        let view = v3
            .read_subject(&actor(), "support", &subjects[3], ReadOptions::default())
            .await
            .unwrap();
        assert_eq!(view.purposes[0].records[0].payload, Some(json!({"i": 3})));
        assert_eq!(
            v3.keys().commitment(&subjects[0]).unwrap(),
            before_commitment
        );
        // The old vault (old key only) can no longer unwrap.
        assert!(matches!(
            v1.read_subject(&actor(), "support", &subjects[3], ReadOptions::default())
                .await,
            Err(VaultError::UnknownMasterKey(_))
        ));
        // Nothing left to re-wrap.
        assert_eq!(
            v3.rewrap_subject_keys(&actor(), &mut |_, _| {})
                .await
                .unwrap(),
            0
        );
        assert!(v3.verify_audit(None).await.unwrap().is_ok());
        drop(v2);
    })
    .await;
}

/// The bug this guards against: `tutela keys rotate` while `tutela serve` runs. The server's
/// vault holds only the old master key and keeps creating subjects during and after the
/// rotation; the rotation removes the old key from the key file once it has re-wrapped every
/// subject it found. A subject the server wrapped under the old key after that would be
/// unreadable for ever (and the server would not start again). Now the database refuses those
/// writes with a typed error from the moment of the switch, and after the rotation every
/// subject the server did create opens with the new key alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_while_a_server_with_the_old_key_keeps_writing_loses_nothing() {
    on_each_engine(|env| async move {
        let copy = |k: &MasterKey| MasterKey::from_env_value(&k.to_file_text()).unwrap();
        let root = MasterKey::generate().unwrap();
        let old = MasterKey::generate().unwrap();
        let new = MasterKey::generate().unwrap();
        let server = vault_over(
            &env.store,
            VaultKeys::new(Keyring::new(copy(&old)), &root).unwrap(),
            &env.clock,
        );
        // What `tutela serve` does at start: record its key as the wrapping key.
        server.switch_wrapping_key().await.unwrap();
        let write = |v: Vault, i: u32| async move {
            v.write_batch(
                &actor(),
                vec![BatchItem {
                    subject_id: None,
                    identifiers: vec![email(&format!("live{i}@example.com"))],
                    records: vec![rec("support", "support_messages", json!({"i": i}))],
                }],
            )
            .await
            .map(|r| r[0].subject_id.clone())
        };
        let mut written = Vec::new();
        for i in 0..20 {
            written.push(write(server.clone(), i).await.unwrap());
        }

        // The server keeps writing while the rotation runs.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let refused = Arc::new(AtomicI64::new(0));
        let writer = {
            let (server, stop, refused) = (server.clone(), stop.clone(), refused.clone());
            tokio::spawn(async move {
                let mut ok = Vec::new();
                let mut i = 1000;
                while !stop.load(Ordering::SeqCst) {
                    match write(server.clone(), i).await {
                        Ok(id) => ok.push(id),
                        Err(VaultError::MasterKeyRotated) => {
                            refused.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(e) => panic!("unexpected error: {e}"),
                    }
                    i += 1;
                    tokio::task::yield_now().await;
                }
                ok
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let rotating = vault_over(
            &env.store,
            VaultKeys::new(
                Keyring {
                    current: copy(&new),
                    previous: vec![copy(&old)],
                },
                &root,
            )
            .unwrap(),
            &env.clock,
        );
        rotating
            .rewrap_subject_keys(&Actor::new("cli:keys-rotate"), &mut |_, _| {})
            .await
            .unwrap();
        // The server goes on after the rotation finished (the old key has left the file).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while refused.load(Ordering::SeqCst) < 3 {
            assert!(
                std::time::Instant::now() < deadline && !writer.is_finished(),
                "the server's writes after the switch must be refused"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        stop.store(true, Ordering::SeqCst);
        written.extend(writer.await.unwrap());
        // Deterministically: a new subject from the server now is refused, typed.
        assert!(matches!(
            write(server.clone(), 99_999).await,
            Err(VaultError::MasterKeyRotated)
        ));
        // Existing subjects it no longer holds the key of: typed too (HTTP 503, not 500).
        assert!(matches!(
            server
                .read_subject(&actor(), "support", &written[0], ReadOptions::default())
                .await,
            Err(VaultError::UnknownMasterKey(_))
        ));

        // Every subject the server created opens with the new key file alone.
        let after = vault_over(
            &env.store,
            VaultKeys::new(Keyring::new(copy(&new)), &root).unwrap(),
            &env.clock,
        );
        let counts = env.store.vault_key_counts().await.unwrap();
        assert_eq!(
            counts.into_iter().collect::<Vec<_>>(),
            [(new.id().to_hex(), written.len() as u64)]
        );
        for sid in &written {
            let view = after
                .read_subject(&actor(), "support", sid, ReadOptions::default())
                .await
                .unwrap();
            assert_eq!(view.purposes[0].records.len(), 1);
        }
        // And the new key writes.
        write(after.clone(), 123_456).await.unwrap();
        drop(rotating);
    })
    .await;
}

/// A rotation's switch refuses a database that already uses another master key (another
/// rotation won, or the key file is stale), and recording a key at start never overrides one.
#[tokio::test]
async fn the_wrapping_key_switch_refuses_a_key_file_left_behind() {
    on_each_engine(|env| async move {
        let copy = |k: &MasterKey| MasterKey::from_env_value(&k.to_file_text()).unwrap();
        let root = MasterKey::generate().unwrap();
        let (a, b, c) = (
            MasterKey::generate().unwrap(),
            MasterKey::generate().unwrap(),
            MasterKey::generate().unwrap(),
        );
        let ring = |cur: &MasterKey, prev: &[&MasterKey]| {
            vault_over(
                &env.store,
                VaultKeys::new(
                    Keyring {
                        current: copy(cur),
                        previous: prev.iter().map(|k| copy(k)).collect(),
                    },
                    &root,
                )
                .unwrap(),
                &env.clock,
            )
        };
        ring(&a, &[]).switch_wrapping_key().await.unwrap();
        // Two rotations of the same file: the first switches, the second is refused.
        ring(&b, &[&a]).switch_wrapping_key().await.unwrap();
        match ring(&c, &[&a]).switch_wrapping_key().await {
            Err(VaultError::WrappingKeyMismatch { database }) => {
                assert_eq!(database, b.id().to_hex())
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            ring(&a, &[]).switch_wrapping_key().await,
            Err(VaultError::WrappingKeyMismatch { .. })
        ));
        assert_eq!(
            env.store.vault_wrapping_key().await.unwrap(),
            Some(b.id().to_hex())
        );
    })
    .await;
}

#[tokio::test]
async fn audit_verification_detects_an_edited_a_deleted_and_a_truncated_entry() {
    on_each_engine(|env| async move {
        let v = &env.vault;
        let s = new_subject(&env, vec![email("judy@example.com")]).await;
        for i in 0..4 {
            v.put_records(&actor(), &s, vec![rec("support", "support_messages", json!({"i": i}))]).await.unwrap();
            v.read_subject(&actor(), "support", &s, ReadOptions::default()).await.unwrap();
        }
        let ok = v.verify_audit(None).await.unwrap().unwrap();
        assert_eq!(ok.entries, 9);
        assert_eq!(ok.head.seq, 9);
        // The anchor of a previous verification is found again.
        assert!(v.verify_audit(Some((ok.head.seq, ok.head.hash))).await.unwrap().is_ok());

        // The log refuses edits through SQL…
        let pg = env.store.engine() == Engine::Postgres;
        let edit = "UPDATE audit_log SET actor = 'someone-else' WHERE seq = 5";
        {
            use sqlx::Connection;
            let url = match &env.pg {
                Some((b, s)) => with_schema(b, s),
                None => format!("sqlite://{}", env.store.sqlite_path().unwrap().display()),
            };
            let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
            let err = sqlx::query(edit).execute(&mut conn).await.unwrap_err();
            assert!(err.to_string().contains("append-only"), "{err}");
        }
        // …so the attacker drops the guard first. Verification names the edited entry.
        let drop_guard = if pg {
            "DROP TRIGGER audit_log_append_only ON audit_log"
        } else {
            "DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete"
        };
        env.raw(drop_guard).await;
        env.raw(edit).await;
        let problem = v.verify_audit(None).await.unwrap().unwrap_err();
        assert!(matches!(problem, AuditProblem::Chain(e) if e.first_bad_seq == 5), "{problem}");
        assert!(problem.explain().contains("entry 5 was modified"), "{}", problem.explain());
        env.raw("UPDATE audit_log SET actor = 'test:platform' WHERE seq = 5").await;
        assert!(v.verify_audit(None).await.unwrap().is_ok());

        // A deleted entry in the middle.
        env.raw("CREATE TABLE saved AS SELECT * FROM audit_log WHERE seq = 3; DELETE FROM audit_log WHERE seq = 3").await;
        let problem = v.verify_audit(None).await.unwrap().unwrap_err();
        assert!(problem.explain().contains("entry 3 is missing"), "{}", problem.explain());
        env.raw("INSERT INTO audit_log SELECT * FROM saved; DROP TABLE saved").await;
        assert!(v.verify_audit(None).await.unwrap().is_ok());

        // The newest entries cut off: the recorded head tells.
        env.raw("DELETE FROM audit_log WHERE seq > 7").await;
        let problem = v.verify_audit(None).await.unwrap().unwrap_err();
        assert!(matches!(problem, AuditProblem::Truncated { last_seq: 7, head_seq: 9 }), "{problem}");
        // …and so does an anchor kept from before.
        let problem = v
            .verify_audit(Some((ok.head.seq, ok.head.hash)))
            .await
            .unwrap()
            .unwrap_err();
        assert!(
            matches!(problem, AuditProblem::AnchorMissing { seq: 9, last_seq: 7 }),
            "{problem}"
        );
        assert!(problem.explain().contains("the log has no entry 9: it ends at entry 7"));

        // Export: JSON lines, one per entry, without personal data.
        let mut out = Vec::new();
        assert_eq!(v.export_audit(0, &mut out).await.unwrap(), 7);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 7);
        assert!(!text.contains("judy"));
        let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(first["seq"], 1);
        assert_eq!(first["action"], "subject_created");
        assert_eq!(first["subject_commitment"].as_str().unwrap().len(), 64);
    })
    .await;
}

/// After erasing a subject, the raw SQLite files (database and WAL) hold none of its
/// identifiers or payload strings, nor its wrapped key or ciphertexts (read from the bytes).
#[tokio::test]
async fn forensic_no_trace_of_an_erased_subject_in_the_sqlite_files() {
    let env = sqlite_env().await;
    let v = &env.vault;
    let db = env.store.sqlite_path().unwrap().to_path_buf();
    let wal = db.with_file_name(format!("{}-wal", db.file_name().unwrap().to_string_lossy()));
    const EMAIL: &str = "forensic.marker.7f3a@example.org";
    const PHONE: &str = "+33 7 98 76 54 32";
    const PAYLOAD: &str = "PAYLOAD-MARKER-91c2e6 confidential";
    // Someone else stays in the vault, so the files are not simply empty.
    let other = new_subject(&env, vec![email("bystander@example.org")]).await;
    v.put_records(
        &actor(),
        &other,
        vec![rec(
            "support",
            "support_messages",
            json!({"text": "bystander text"}),
        )],
    )
    .await
    .unwrap();

    let s = v
        .resolve_subject(
            &actor(),
            vec![
                email(EMAIL),
                IdentifierInput::new(IdentifierKind::Phone, PHONE),
            ],
        )
        .await
        .unwrap()
        .subject_id;
    let mut records = Vec::new();
    for i in 0..20 {
        records.push(rec(
            "support",
            "support_messages",
            json!({"text": format!("{PAYLOAD} #{i}"), "pad": "x".repeat(3000)}),
        ));
    }
    records.push(rec("recruitment", "name", json!({"name": PAYLOAD})));
    v.put_records(&actor(), &s, records).await.unwrap();
    let id = v
        .put_records(
            &actor(),
            &s,
            vec![rec("support", "support_messages", json!("v0"))],
        )
        .await
        .unwrap()[0]
        .id;
    v.update_record(
        &actor(),
        &s,
        id,
        RecordUpdate {
            payload: Some(json!(PAYLOAD)),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    v.read_subject(&actor(), "support", &s, ReadOptions::default())
        .await
        .unwrap();

    let stored = env.store.vault_subject(&s).await.unwrap().unwrap();
    let wrapped = stored.wrapped_key.clone();
    let ciphertexts: Vec<Vec<u8>> = env
        .store
        .vault_records(&s, None, env.now())
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.payload[..40].to_vec())
        .collect();
    assert_eq!(ciphertexts.len(), 22);

    let files = || -> Vec<(String, Vec<u8>)> {
        [&db, &wal]
            .iter()
            .filter(|p| p.exists())
            .map(|p| (p.display().to_string(), std::fs::read(p).unwrap()))
            .collect()
    };
    let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    let plain_markers: Vec<&[u8]> = vec![
        EMAIL.as_bytes(),
        b"forensic.marker",
        b"98 76 54 32",
        b"+33798765432",
        b"PAYLOAD-MARKER",
        b"91c2e6",
    ];
    // Never in clear, even before the erasure (the WAL is read before any checkpoint).
    let before = files();
    assert!(
        before
            .iter()
            .any(|(name, bytes)| name.ends_with("-wal") && !bytes.is_empty()),
        "the WAL is in use"
    );
    for (name, bytes) in &before {
        for m in &plain_markers {
            assert!(
                !contains(bytes, m),
                "{name} holds {:?} in clear",
                String::from_utf8_lossy(m)
            );
        }
    }
    assert!(
        before.iter().any(|(_, b)| contains(b, &wrapped)),
        "the wrapped key is on disk before erasure"
    );

    let report = v.erase(&actor(), &s, ErasureScope::All).await.unwrap();
    assert!(report.subject_shredded, "{report:?}");
    assert!(report.files_flushed, "{report:?}");
    // Read the files while the store is still open (WAL included), then again after closing.
    for stage in ["after erasure", "after close"] {
        if stage == "after close" {
            env.store.close().await;
        }
        for (name, bytes) in files() {
            for m in &plain_markers {
                assert!(
                    !contains(&bytes, m),
                    "{stage}: {name} holds {:?}",
                    String::from_utf8_lossy(m)
                );
            }
            assert!(
                !contains(&bytes, &wrapped),
                "{stage}: {name} still holds the wrapped key"
            );
            for (i, c) in ciphertexts.iter().enumerate() {
                assert!(
                    !contains(&bytes, c),
                    "{stage}: {name} still holds ciphertext {i}"
                );
            }
            assert!(
                !contains(&bytes, s.as_bytes()),
                "{stage}: {name} still holds the subject id"
            );
        }
    }
    // The bystander is intact.
    let store = Store::open_sqlite(&db).await.unwrap();
    let v2 = vault_over(&store, VaultKeys::generate().unwrap(), &env.clock);
    drop(v2);
    assert_eq!(store.vault_counts().await.unwrap(), (1, 1, 1));
    store.close().await;
}

/// The purge deletes record rows with `secure_delete = FAST` (freed pages are not rewritten),
/// but subject keys and identifiers with `secure_delete = ON`: after a purge has shredded a
/// subject, neither its wrapped key nor its blind indexes are anywhere in the SQLite files
/// (database and WAL), and no identifier was ever there in clear.
#[tokio::test]
async fn forensic_no_wrapped_key_or_blind_index_of_a_purged_subject_in_the_sqlite_files() {
    let env = sqlite_env().await;
    let v = &env.vault;
    let db = env.store.sqlite_path().unwrap().to_path_buf();
    let wal = db.with_file_name(format!("{}-wal", db.file_name().unwrap().to_string_lossy()));
    const EMAIL: &str = "purge.marker.4be1@example.org";
    // A bystander whose record is kept (legal hold), so the files are not simply empty.
    let other = new_subject(&env, vec![email("bystander@example.org")]).await;
    let mut held = rec("support", "support_messages", json!({"text": "kept"}));
    held.legal_hold = true;
    v.put_records(&actor(), &other, vec![held]).await.unwrap();
    // Many subjects, so that the purge empties and frees whole pages of every table.
    let mut targets = Vec::new();
    for i in 0..60 {
        let s = new_subject(&env, vec![email(&format!("{i}.{EMAIL}"))]).await;
        let records = (0..5)
            .map(|k| {
                rec(
                    "audience_statistics",
                    "page_url",
                    json!({"url": format!("/page/{k}"), "pad": "y".repeat(600)}),
                )
            })
            .collect();
        v.put_records(&actor(), &s, records).await.unwrap();
        let wrapped = env
            .store
            .vault_subject(&s)
            .await
            .unwrap()
            .unwrap()
            .wrapped_key;
        let indexes: Vec<Vec<u8>> = env
            .store
            .vault_identifiers(&s)
            .await
            .unwrap()
            .into_iter()
            .map(|i| i.blind_index)
            .collect();
        targets.push((s, wrapped, indexes));
    }
    let files = || -> Vec<(String, Vec<u8>)> {
        [&db, &wal]
            .iter()
            .filter(|p| p.exists())
            .map(|p| (p.display().to_string(), std::fs::read(p).unwrap()))
            .collect()
    };
    let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    let before = files();
    assert!(
        targets
            .iter()
            .all(|(_, w, _)| before.iter().any(|(_, b)| contains(b, w))),
        "the wrapped keys are on disk before the purge"
    );

    env.clock
        .fetch_add(4 * 366 * 86_400, std::sync::atomic::Ordering::SeqCst);
    let done = v
        .purge_expired(&Actor::new("job:retention"), false, 100, &mut |_, _| {})
        .await
        .unwrap();
    assert_eq!(done.records, 300);
    assert_eq!(done.subjects_shredded, 60);
    for stage in ["after the purge", "after close"] {
        if stage == "after close" {
            env.store.close().await;
        }
        for (name, bytes) in files() {
            assert!(
                !contains(&bytes, EMAIL.as_bytes()),
                "{stage}: {name} holds an identifier in clear"
            );
            for (s, wrapped, indexes) in &targets {
                assert!(
                    !contains(&bytes, wrapped),
                    "{stage}: {name} still holds the wrapped key of {s}"
                );
                for ix in indexes {
                    assert!(
                        !contains(&bytes, ix),
                        "{stage}: {name} still holds a blind index of {s}"
                    );
                }
            }
        }
    }
    let store = Store::open_sqlite(&db).await.unwrap();
    assert_eq!(store.vault_counts().await.unwrap(), (1, 1, 1));
    store.close().await;
}

#[tokio::test]
async fn concurrent_creations_of_one_person_give_one_subject() {
    on_each_engine(|env| async move {
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let v = env.vault.clone();
            tasks.push(tokio::spawn(async move {
                // A caller told to retry does so.
                loop {
                    match v
                        .resolve_subject(&actor(), vec![email("race@example.com")])
                        .await
                    {
                        Ok(r) => return r.subject_id,
                        Err(VaultError::ConcurrentWrite) => continue,
                        Err(e) => panic!("{e}"),
                    }
                }
            }));
        }
        let mut ids = Vec::new();
        for t in tasks {
            ids.push(t.await.unwrap());
        }
        ids.dedup();
        assert_eq!(ids.len(), 1, "{ids:?}");
        assert_eq!(env.store.vault_counts().await.unwrap().0, 1);
    })
    .await;
}

/// The example register with security logs kept 1 day instead of 6 months, recruitment data 6
/// months after the last contact instead of 12, and audience statistics 365 days instead of 180.
fn changed_register() -> tutela_domain::Register {
    let text = tutela_domain::EXAMPLE_REGISTER
        .replacen(
            "keep = \"6 months\"   # this example's choice (the reference",
            "keep = \"1 day\"   # (the reference",
            1,
        )
        .replacen("keep = \"12 months\"", "keep = \"6 months\"", 1)
        .replacen("keep = \"180 days\"", "keep = \"365 days\"", 1);
    assert_ne!(text, tutela_domain::EXAMPLE_REGISTER);
    tutela_domain::load(&text, "changed").unwrap()
}

#[tokio::test]
async fn a_shortened_retention_reaches_stored_records_a_longer_one_does_not() {
    on_each_engine(|env| async move {
        let v = &env.vault;
        env.set_now("2026-01-01T00:00:00Z");
        let customer = new_subject(&env, vec![email("grace@example.com")]).await;
        let mut held = rec(
            "platform_security",
            "activity_logs",
            json!({"op": "export"}),
        );
        held.legal_hold = true;
        let sec = v
            .put_records(
                &actor(),
                &customer,
                vec![
                    rec("platform_security", "activity_logs", json!({"op": "login"})),
                    rec("platform_security", "ip_address", json!("192.0.2.1")),
                    held,
                    // 1 year by legal obligation: its rule does not change.
                    rec(
                        "platform_security",
                        "content_change_logs",
                        json!({"op": "deploy"}),
                    ),
                    rec("audience_statistics", "page_url", json!("/pricing")),
                    rec("recruitment", "resume", json!("cv")),
                ],
            )
            .await
            .unwrap();
        env.set_now("2026-03-01T00:00:00Z");
        v.record_event(
            &actor(),
            &customer,
            AnchorEvent {
                event: "last_contact".into(),
                purpose: Some("recruitment".into()),
                at: None,
            },
        )
        .await
        .unwrap();
        let deadline = |id: i64| {
            let env = env.clone();
            let customer = customer.clone();
            async move {
                env.store
                    .vault_record(&customer, id, 0)
                    .await
                    .unwrap()
                    .unwrap()
                    .deadline
            }
        };
        let before: Vec<Option<i64>> = {
            let mut out = Vec::new();
            for r in &sec {
                out.push(deadline(r.id).await);
            }
            out
        };
        assert_eq!(before[0], Some(ts("2026-07-01T00:00:00Z")));
        assert_eq!(before[5], Some(ts("2027-03-01T00:00:00Z")));

        // The register changes; the records are three days... two months old.
        let old = tutela_domain::load(tutela_domain::EXAMPLE_REGISTER, "example").unwrap();
        let new = changed_register();
        let rules = tutela_vault::changed_rules(&new, Some(std::slice::from_ref(&old)));
        assert!(rules.contains(&("platform_security".into(), "activity_logs".into())));
        assert!(!rules.contains(&("platform_security".into(), "content_change_logs".into())));
        assert!(rules.contains(&("audience_statistics".into(), "page_url".into())));
        let v2 = v.clone().with_register(Arc::new(new));

        // Before the recompute, the old deadlines stand: nothing to purge (the bug).
        let dry = v2
            .purge_expired(&actor(), true, 100, &mut |_, _| {})
            .await
            .unwrap();
        assert_eq!(dry.records, 0);
        // A dry recompute counts and changes nothing.
        let counted = v2
            .recompute_deadlines(&actor(), &rules, true, 2)
            .await
            .unwrap();
        assert_eq!(counted.per_purpose["platform_security"].records, 3);
        assert_eq!(counted.per_purpose["platform_security"].expired, 2);
        assert_eq!(deadline(sec[0].id).await, before[0]);

        let audit_before = env.store.audit_head().await.unwrap().0;
        let done = v2
            .recompute_deadlines(&actor(), &rules, false, 2)
            .await
            .unwrap();
        assert_eq!(done.per_purpose["platform_security"].records, 3);
        assert_eq!(
            done.per_purpose["platform_security"].expired, 2,
            "the held one is kept"
        );
        assert_eq!(done.per_purpose["recruitment"].records, 1);
        assert!(!done.per_purpose.contains_key("audience_statistics"));
        // Shortened: one day after collection; the legal-obligation rule and the lengthened
        // one are unchanged; the recruitment clock still counts from the last contact.
        assert_eq!(deadline(sec[0].id).await, Some(ts("2026-01-02T00:00:00Z")));
        assert_eq!(deadline(sec[1].id).await, Some(ts("2026-01-02T00:00:00Z")));
        assert_eq!(deadline(sec[2].id).await, Some(ts("2026-01-02T00:00:00Z")));
        assert_eq!(deadline(sec[3].id).await, before[3]);
        assert_eq!(deadline(sec[4].id).await, before[4]);
        assert_eq!(deadline(sec[5].id).await, Some(ts("2026-09-01T00:00:00Z")));
        // The audit log says what was recomputed, with counts only.
        let rows = env.store.audit_entries(audit_before, 100).await.unwrap();
        let recomputed: u64 = rows
            .iter()
            .filter(|r| r.action == "retention_recompute" && r.purpose == "platform_security")
            .map(|r| {
                assert!(r.subject_commitment.is_none());
                serde_json::from_str::<serde_json::Value>(&r.details).unwrap()["records"]
                    .as_u64()
                    .unwrap()
            })
            .sum();
        assert_eq!(recomputed, 3);
        assert!(v2.verify_audit(None).await.unwrap().is_ok());
        // Idempotent.
        let again = v2
            .recompute_deadlines(&actor(), &rules, false, 2)
            .await
            .unwrap();
        assert_eq!(again.records(), 0);

        // Reads hide the newly expired records at once (the held one stays readable).
        let view = v2
            .read_subject(
                &actor(),
                "platform_security",
                &customer,
                ReadOptions::default(),
            )
            .await
            .unwrap();
        let security = view
            .purposes
            .iter()
            .find(|p| p.purpose == "platform_security")
            .unwrap();
        let cats: Vec<&str> = security
            .records
            .iter()
            .map(|r| r.category.as_str())
            .collect();
        assert_eq!(cats, ["activity_logs", "content_change_logs"]);
        assert!(security.records[0].legal_hold);
        // And the purge deletes them, legal hold honoured.
        let purged = v2
            .purge_expired(&Actor::new("job:retention"), false, 100, &mut |_, _| {})
            .await
            .unwrap();
        assert_eq!(purged.records, 2);
        assert_eq!(purged.per_purpose["platform_security"], 2);
        assert!(deadline(sec[2].id).await.is_some(), "held record survives");
    })
    .await;
}
