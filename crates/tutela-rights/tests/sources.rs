//! End to end, every right on the example register with the subject's data in the vault, in web
//! analytics (events by visitor pseudonym) and consent records inside Tutela, and in an external
//! "platform" database reached through the SQL connector (SQLite here; PostgreSQL and
//! MySQL/MariaDB when their URLs are set, and always under CI):
//! access (package checked field by field, analytics events and consent records included),
//! portability, erasure (no trace in Tutela's files but the declared legal-obligation records),
//! consent withdrawal (a withdrawal record appended, nothing overwritten), objection (analytics
//! opt-out on the server and deletion), restriction, structured after-death instructions
//! followed on a verified death notice, and the tamper-evident request history.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use jiff::Timestamp;
use sqlx::Connection;
use tutela_analytics::{Analytics, AnalyticsSettings, Client, Prepared, RawHit, SiteConfig, Skip};
use tutela_crypto::IdentifierKind;
use tutela_domain::rights::{RequestState, RightKind};
use tutela_rights::analytics_source::AnalyticsSource;
use tutela_rights::connectors::sql::{SqlConfig, SqlConnector};
use tutela_rights::consent_source::ConsentSource;
use tutela_rights::execute::Executor;
use tutela_rights::source::{Source, Subject};
use tutela_rights::vault_source::VaultSource;
use tutela_rights::{
    AfterDeathDirective, AfterDeathInstructions, Channel, Mailer, RequestDetails, RightsConfig,
    RightsKeys, RightsService, Submission, Transport,
};
use tutela_store::{ConsentCategory, ConsentRecord, Store};
use tutela_vault::{Actor, BatchItem, IdentifierInput, RecordInput, Vault, VaultKeys};

const ALICE_VISITOR: &str = "a11ce0000000beef";
/// Alice's account id on the platform: the user id its pages give the tracker.
const ALICE_ACCOUNT: &str = "acct-alice-42";
const BOB_VISITOR: &str = "b0b0b0b0b0b0b0b0";
const OTHER_VISITOR: &str = "0123456789abcdef";
const CAROL_VISITOR: &str = "c0c0c0c0c0c0c0c0";
const ALICE_CONSENT: &str = "6f1c2a3b-0000-4000-8000-00000000a11c";

const SCHEMA: &str = "
CREATE TABLE users (id BIGINT PRIMARY KEY, email VARCHAR(200) NOT NULL, name VARCHAR(200), restricted BOOLEAN NOT NULL DEFAULT FALSE);
CREATE TABLE apps (id BIGINT PRIMARY KEY, owner_id BIGINT NOT NULL REFERENCES users (id), app_name VARCHAR(200));
CREATE TABLE invoices (id BIGINT PRIMARY KEY, user_id BIGINT REFERENCES users (id), amount VARCHAR(20));
INSERT INTO users (id, email, name) VALUES (1, 'alice@example.org', 'Alice Martin'), (2, 'bob@example.org', 'Bob Stone');
INSERT INTO apps VALUES (10, 1, 'alice-blog'), (12, 2, 'bob-app');
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
restrict_column = "restricted"
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
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd {
            std::fs::remove_file(e.unwrap().path()).unwrap();
        }
    }
}

fn code_in(mail: &str) -> String {
    mail.lines()
        .map(str::trim)
        .find(|l| l.len() == 6 && l.bytes().all(|b| b.is_ascii_digit()))
        .expect("a 6-digit code in the mail")
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

/// One page view of `visitor` on `page`, through the real pipeline (minimisation, queue, writer).
async fn hit(analytics: &Analytics, visitor: &str, page: &str) -> Prepared {
    hit_as(analytics, visitor, None, page).await
}

/// The same, from a visitor signed in as `uid` (Matomo's `setUserId`).
async fn hit_as(analytics: &Analytics, visitor: &str, uid: Option<&str>, page: &str) -> Prepared {
    let uid = uid.map(|u| format!("&uid={u}")).unwrap_or_default();
    let query = format!(
        "idsite=1&rec=1&url=http%3A%2F%2Flocalhost%2F{page}%3Fsecret%3D1&action_name={page}&_id={visitor}{uid}"
    );
    let raw = RawHit::from_query(&query);
    let client = Client {
        ip: "203.113.5.7".parse().unwrap(),
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0"),
        dnt: false,
        gpc: false,
        opted_out: false,
    };
    let prepared = analytics
        .prepare(&raw, &client, false, Timestamp::now())
        .await
        .unwrap();
    if let Prepared::Track(h) = &prepared {
        analytics.submit(vec![(**h).clone()]).await.unwrap();
    }
    prepared
}

async fn events_of(analytics: &Analytics, visitor: &str) -> usize {
    analytics
        .visitor_events(1, visitor)
        .await
        .unwrap()
        .unwrap()
        .len()
}

fn consent_record(consent_id: &str, analytics: Option<bool>, at: i64) -> ConsentRecord {
    ConsentRecord {
        record_id: format!("{consent_id}-{at}"),
        consent_id: consent_id.into(),
        recorded_at: at,
        site: Some("https://www.nimbus.example".into()),
        revision: "2025-1".into(),
        register_hash: "h".into(),
        method: "banner".into(),
        source: "tutela".into(),
        gpc: false,
        language: Some("en".into()),
        functional: Some(true),
        analytics,
        targeting: Some(false),
        services: "{}".into(),
        purpose: "proof_of_consent".into(),
        category: "consent_record".into(),
        delete_after: at + 5 * 365 * 86400,
    }
}

struct World {
    svc: RightsService,
    exec: Executor,
    store: Store,
    sql: Arc<SqlConnector>,
    outbox: std::path::PathBuf,
}

impl World {
    fn sub(&self, kind: RightKind, email: &str, details: RequestDetails) -> Submission {
        Submission {
            kind,
            channel: Channel::Api,
            lang: "en".into(),
            details,
            identifier_kind: IdentifierKind::Email,
            identifier: email.into(),
            contact_email: None,
            text: String::new(),
        }
    }

    /// Files a verified request, executes it and returns (id, package zip if any).
    async fn handle(
        &self,
        sub: Submission,
    ) -> (String, Option<std::collections::BTreeMap<String, String>>) {
        let now = Timestamp::now();
        let r = self
            .svc
            .file_verified(sub, "platform_token:t", "token:t", now)
            .await
            .unwrap();
        let id = r.request.id.clone();
        self.exec.start(&id, "dpo", now).await.unwrap();
        let report = self.exec.run_due(now).await.unwrap();
        assert_eq!((report.retried, report.failed), (0, 0), "{report:?}");
        let token = self.exec.finish(&id, "dpo", now).await.unwrap();
        let files = match token {
            Some(token) if self.mailer_has_contact(&id).await => {
                clear(&self.outbox);
                self.svc.send_download_code(&token, now).await.unwrap();
                let code = code_in(mails(&self.outbox).last().unwrap());
                Some(unzip(&self.svc.download(&token, &code, now).await.unwrap()))
            }
            _ => None,
        };
        (id, files)
    }

    async fn mailer_has_contact(&self, id: &str) -> bool {
        self.svc
            .subject_of(id)
            .await
            .unwrap()
            .identifiers
            .iter()
            .any(|(k, _)| *k == IdentifierKind::Email)
    }
}

async fn run(platform_url: &str, data_dir: &Path) {
    let store = Store::open_data_dir(data_dir).await.unwrap();
    let register =
        Arc::new(tutela_domain::load(tutela_domain::EXAMPLE_REGISTER, "example").unwrap());
    let outbox = data_dir.join("outbox");
    let svc = RightsService::new(
        store.clone(),
        register.clone(),
        RightsKeys::generate().unwrap(),
        Some(Mailer::new("dpo@nimbus.example", &Transport::File(outbox.clone())).unwrap()),
        RightsConfig::default(),
    );
    // The vault: Alice's account and a security log the law obliges to keep; Bob's account.
    let vault = Vault::new(
        store.clone(),
        register.clone(),
        VaultKeys::generate().unwrap(),
    );
    vault
        .write_batch(
            &Actor::new("platform"),
            vec![
                BatchItem {
                    subject_id: None,
                    identifiers: vec![IdentifierInput::new(
                        IdentifierKind::Email,
                        "alice@example.org",
                    )],
                    records: vec![
                        rec(
                            "recruitment",
                            "name",
                            serde_json::json!({"name": "Alice Vaultname"}),
                        ),
                        rec(
                            "platform_security",
                            "content_change_logs",
                            serde_json::json!({"action": "deleted app alice-old-app"}),
                        ),
                    ],
                },
                BatchItem {
                    subject_id: None,
                    identifiers: vec![IdentifierInput::new(
                        IdentifierKind::Email,
                        "bob@example.org",
                    )],
                    records: vec![rec(
                        "recruitment",
                        "name",
                        serde_json::json!({"name": "Bob Vaultname"}),
                    )],
                },
            ],
        )
        .await
        .unwrap();
    // Web analytics: Alice, Bob and someone else browse.
    let analytics = Analytics::start(
        AnalyticsSettings::default(),
        &SiteConfig::default_sites(),
        &register,
        store.clone(),
    )
    .unwrap();
    for (v, page) in [
        (ALICE_VISITOR, "alice-private-page"),
        (ALICE_VISITOR, "pricing"),
        (BOB_VISITOR, "bob-page"),
        (OTHER_VISITOR, "pricing"),
    ] {
        assert!(matches!(hit(&analytics, v, page).await, Prepared::Track(_)));
    }
    // Signed in, Alice's hits are counted under her user id (her account id), not her cookie.
    assert!(matches!(
        hit_as(
            &analytics,
            ALICE_VISITOR,
            Some(ALICE_ACCOUNT),
            "alice-signed-in"
        )
        .await,
        Prepared::Track(_)
    ));
    assert_eq!(events_of(&analytics, ALICE_VISITOR).await, 2);
    // Consent records: Alice granted analytics, then someone else refused.
    let t = Timestamp::now().as_second();
    store
        .insert_consent_records(&[
            consent_record(ALICE_CONSENT, Some(true), t - 100),
            consent_record("6f1c2a3b-0000-4000-8000-0000000000ff", Some(false), t - 50),
        ])
        .await
        .unwrap();
    // The platform database.
    sqlx::any::install_default_drivers();
    {
        let mut c = sqlx::AnyConnection::connect(platform_url).await.unwrap();
        sqlx::raw_sql(SCHEMA).execute(&mut c).await.unwrap();
        c.close().await.unwrap();
    }
    let sql: SqlConfig = toml::from_str(&SQL_CONFIG.replace("URL", platform_url)).unwrap();
    let sql = Arc::new(SqlConnector::connect(&sql).await.unwrap());
    let exec = Executor::new(
        svc.clone(),
        vec![
            Arc::new(VaultSource::new(vault.clone(), "rights_requests").unwrap()),
            Arc::new(AnalyticsSource::new(analytics.clone()).unwrap()),
            Arc::new(ConsentSource::new(store.clone(), register.clone(), "hash-now").unwrap()),
            sql.clone(),
        ],
    );
    let w = World {
        svc,
        exec,
        store: store.clone(),
        sql: sql.clone(),
        outbox,
    };
    let alice_ids = RequestDetails {
        extra_identifiers: vec![
            (
                IdentifierKind::VisitorId,
                ALICE_VISITOR.to_ascii_uppercase(),
            ),
            (IdentifierKind::ConsentId, ALICE_CONSENT.into()),
            (IdentifierKind::AccountId, ALICE_ACCOUNT.into()),
        ],
        after_death: None,
    };

    // ---- access: every source, field by field ---------------------------------------------
    let (_, files) = w
        .handle(w.sub(RightKind::Access, "alice@example.org", alice_ids.clone()))
        .await;
    let files = files.unwrap();
    let data: serde_json::Value = serde_json::from_str(&files["data.json"]).unwrap();
    let records = data["records"].as_array().unwrap();
    let of = |source: &str| -> Vec<&serde_json::Value> {
        records.iter().filter(|r| r["source"] == source).collect()
    };
    // Vault: the account name and the security log.
    let vault_recs = of("vault");
    assert_eq!(vault_recs.len(), 2);
    let name = vault_recs.iter().find(|r| r["category"] == "name").unwrap();
    assert_eq!(name["purpose"], "recruitment");
    assert_eq!(name["fields"]["name"], "Alice Vaultname");
    // Analytics: Alice's page views, minimised (no query string, half IP), not Bob's: two by
    // her cookie, one by her user id.
    let events = of("analytics");
    assert_eq!(events.len(), 3, "{events:?}");
    let mut urls: Vec<&str> = events
        .iter()
        .map(|e| e["fields"]["url"].as_str().unwrap())
        .collect();
    urls.sort_unstable();
    assert_eq!(
        urls,
        [
            "http://localhost/alice-private-page",
            "http://localhost/alice-signed-in",
            "http://localhost/pricing"
        ]
    );
    let e0 = events[0];
    assert_eq!(e0["collection"], "analytics_events");
    assert_eq!(e0["purpose"], "audience_statistics");
    assert_eq!(e0["fields"]["type"], "pageview");
    assert_eq!(e0["fields"]["site_id"], 1);
    assert_eq!(e0["fields"]["ip_prefix"], "203.113.0.0");
    assert_eq!(e0["fields"]["browser"], "Firefox");
    assert!(e0["fields"]["at"].as_str().unwrap().ends_with('Z'));
    // Consent: Alice's record, not the other person's.
    let consents = of("consent");
    assert_eq!(consents.len(), 1);
    let c = &consents[0]["fields"];
    assert_eq!(c["consent_id"], ALICE_CONSENT);
    assert_eq!(
        (
            c["analytics"].as_str(),
            c["functional"].as_str(),
            c["targeting"].as_str()
        ),
        (Some("granted"), Some("granted"), Some("refused"))
    );
    assert_eq!(c["method"], "banner");
    assert_eq!(consents[0]["purpose"], "proof_of_consent");
    // The platform: users, apps, invoices.
    let platform = of("sql:platform");
    assert_eq!(platform.len(), 3);
    assert!(
        platform
            .iter()
            .any(|r| r["fields"]["name"] == "Alice Martin")
    );
    assert_eq!(records.len(), 2 + 3 + 1 + 3);
    assert!(files.contains_key("analytics-analytics_events.csv"));
    assert!(files.contains_key("consent-consent_records.csv"));
    let csv = &files["analytics-analytics_events.csv"];
    assert!(csv.lines().next().unwrap().contains("url"));
    assert_eq!(csv.lines().count(), 4, "header and three events");
    let report = &files["report.html"];
    assert!(
        report.contains("analytics / analytics_events: 3"),
        "{report}"
    );

    // ---- portability: what the subject provided (analytics events are observed: included) --
    let (_, pfiles) = w
        .handle(w.sub(
            RightKind::Portability,
            "alice@example.org",
            alice_ids.clone(),
        ))
        .await;
    let pfiles = pfiles.unwrap();
    assert!(pfiles.contains_key("analytics-analytics_events.csv"));
    assert!(pfiles.contains_key("sql_platform-users.csv"));
    assert!(!pfiles.contains_key("sql_platform-apps.csv"));

    // ---- erasure: everything but the legal-obligation records, which are said --------------
    let (eid, efiles) = w
        .handle(w.sub(RightKind::Erasure, "alice@example.org", alice_ids.clone()))
        .await;
    let efiles = efiles.unwrap();
    let edata: serde_json::Value = serde_json::from_str(&efiles["data.json"]).unwrap();
    let by_source = |s: &str| {
        edata["erasure"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["source"] == s)
            .unwrap()
            .clone()
    };
    assert_eq!(by_source("analytics")["deleted"], 3);
    assert_eq!(by_source("vault")["deleted"], 1);
    assert!(
        by_source("vault")["kept"][0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("legal obligation")
    );
    let consent_kept = by_source("consent");
    assert_eq!(consent_kept["deleted"], 0);
    assert_eq!(
        consent_kept["kept"][0]["collection"],
        "proof_of_consent/consent_record"
    );
    assert!(
        consent_kept["kept"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("art. 7(1)")
    );
    assert!(consent_kept["kept"][0]["until"].as_str().is_some());
    assert!(efiles["report.html"].contains("proof of consent"));
    assert_eq!(events_of(&analytics, ALICE_VISITOR).await, 0);
    let signed_in = analytics.user_events(1, ALICE_ACCOUNT).await.unwrap();
    assert_eq!(signed_in.unwrap().len(), 0);
    assert_eq!(
        events_of(&analytics, OTHER_VISITOR).await,
        1,
        "others untouched"
    );
    assert_eq!(events_of(&analytics, BOB_VISITOR).await, 1);
    let alice = Subject {
        identifiers: vec![(IdentifierKind::Email, "alice@example.org".into())],
    };
    let left = sql.access(&alice).await.unwrap();
    assert!(left.is_empty(), "masked e-mail: no longer found");
    // The history of the erasure is chained and intact.
    let check = w.svc.verify_history(&eid).await.unwrap();
    assert!(check.intact() && check.entries > 5 && check.unchained == 0);

    // ---- consent withdrawal: appended, never overwritten -------------------------------------
    let (wid, _) = w
        .handle(w.sub(
            RightKind::ConsentWithdrawal,
            "alice@example.org",
            alice_ids.clone(),
        ))
        .await;
    let recs = store.consent_records(ALICE_CONSENT, 10).await.unwrap();
    assert_eq!(recs.len(), 2);
    assert_eq!(
        recs[0].analytics,
        Some(true),
        "the first record is unchanged"
    );
    assert_eq!(
        (recs[1].analytics, recs[1].functional, recs[1].targeting),
        (Some(false), Some(false), Some(false))
    );
    assert_eq!(
        (recs[1].method.as_str(), recs[1].source.as_str()),
        ("api", "rights-request")
    );
    assert_eq!(
        store
            .consent_granted(ALICE_CONSENT, ConsentCategory::Analytics)
            .await
            .unwrap(),
        Some(false)
    );
    let steps = w.svc.steps(&wid).await.unwrap();
    let mut planned: Vec<&str> = steps.iter().map(|s| s.source.as_str()).collect();
    planned.sort_unstable();
    assert_eq!(
        planned,
        ["analytics", "consent"],
        "only sources that hold consent-based processing"
    );
    // Withdrawing twice adds nothing.
    w.handle(w.sub(
        RightKind::ConsentWithdrawal,
        "alice@example.org",
        alice_ids.clone(),
    ))
    .await;
    assert_eq!(
        store
            .consent_records(ALICE_CONSENT, 10)
            .await
            .unwrap()
            .len(),
        2
    );

    // ---- objection (legitimate interest: analytics): opt-out on the server and deletion ------
    let bob_ids = RequestDetails {
        extra_identifiers: vec![(IdentifierKind::VisitorId, BOB_VISITOR.into())],
        after_death: None,
    };
    let (oid, _) = w
        .handle(w.sub(RightKind::Objection, "bob@example.org", bob_ids.clone()))
        .await;
    assert_eq!(events_of(&analytics, BOB_VISITOR).await, 0);
    assert!(
        matches!(
            hit(&analytics, BOB_VISITOR, "after-objection").await,
            Prepared::Skip(Skip::OptedOut)
        ),
        "Bob's browser still sends hits; none is recorded"
    );
    assert_eq!(events_of(&analytics, BOB_VISITOR).await, 0);
    assert!(matches!(
        hit(&analytics, OTHER_VISITOR, "pricing").await,
        Prepared::Track(_)
    ));
    let outcome = w.svc.steps(&oid).await.unwrap();
    assert_eq!(outcome.len(), 1);
    assert_eq!(outcome[0].source, "analytics");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(outcome[0].outcome.as_deref().unwrap()).unwrap()
            ["deleted"],
        1
    );
    // Another node (a fresh service on the same store) refuses Bob's hits too.
    let other_node = Analytics::start(
        AnalyticsSettings::default(),
        &SiteConfig::default_sites(),
        &register,
        store.clone(),
    )
    .unwrap();
    assert!(matches!(
        hit(&other_node, BOB_VISITOR, "x").await,
        Prepared::Skip(Skip::OptedOut)
    ));

    // ---- restriction: flagged in the vault and on the platform --------------------------------
    let (rid, _) = w
        .handle(w.sub(
            RightKind::Restriction,
            "bob@example.org",
            RequestDetails::default(),
        ))
        .await;
    let rsteps = w.svc.steps(&rid).await.unwrap();
    let restricted = |src: &str| -> u64 {
        let s = rsteps.iter().find(|s| s.source == src).unwrap();
        serde_json::from_str::<serde_json::Value>(s.outcome.as_deref().unwrap()).unwrap()
            ["restricted"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(restricted("vault"), 1);
    assert_eq!(restricted("sql:platform"), 1);

    // ---- after death: structured instructions, then a verified death notice -------------------
    let instr = RequestDetails {
        extra_identifiers: vec![],
        after_death: Some(AfterDeathInstructions {
            directive: AfterDeathDirective::Erase,
            particular: "erase everything".into(),
            executor_name: "Carol Stone".into(),
            executor_contact: "carol@example.org".into(),
        }),
    };
    let (iid, _) = w
        .handle(w.sub(
            RightKind::AfterDeathInstructions,
            "bob@example.org",
            instr.clone(),
        ))
        .await;
    let stored = w.svc.details(&iid).await.unwrap();
    assert_eq!(stored.after_death, instr.after_death, "recorded as given");
    assert!(
        w.svc
            .file_verified(
                w.sub(
                    RightKind::Access,
                    "bob@example.org",
                    RequestDetails {
                        extra_identifiers: vec![],
                        after_death: instr.after_death.clone(),
                    },
                ),
                "platform_token:t",
                "token:t",
                Timestamp::now(),
            )
            .await
            .is_err(),
        "instructions only on an after-death request"
    );
    let mut notice = w.sub(
        RightKind::DeathNotice,
        "bob@example.org",
        RequestDetails::default(),
    );
    notice.channel = Channel::Post;
    let (did, _) = w.handle(notice).await;
    let dsteps = w.svc.steps(&did).await.unwrap();
    assert!(
        dsteps
            .iter()
            .all(|s| s.action == "erase" && s.status == "done")
    );
    assert_eq!(dsteps.len(), 4);
    let history: Vec<String> = w
        .svc
        .history(&did)
        .await
        .unwrap()
        .into_iter()
        .map(|h| h.event)
        .collect();
    assert!(
        history.contains(&"after_death_directive:erase".to_string()),
        "{history:?}"
    );
    let bob = Subject {
        identifiers: vec![(IdentifierKind::Email, "bob@example.org".into())],
    };
    assert!(w.sql.access(&bob).await.unwrap().is_empty());

    // Carol asked for a copy for her executor before erasure: the copy first, then the erasure.
    assert!(matches!(
        hit(&analytics, CAROL_VISITOR, "carol-page").await,
        Prepared::Track(_)
    ));
    let carol_ids = |after_death| RequestDetails {
        extra_identifiers: vec![(IdentifierKind::VisitorId, CAROL_VISITOR.into())],
        after_death,
    };
    w.handle(w.sub(
        RightKind::AfterDeathInstructions,
        "carol@example.org",
        carol_ids(Some(AfterDeathInstructions {
            directive: AfterDeathDirective::CommunicateThenErase,
            particular: String::new(),
            executor_name: "Dan".into(),
            executor_contact: "dan@example.org".into(),
        })),
    ))
    .await;
    let now = Timestamp::now();
    let dn = w
        .svc
        .file_verified(
            w.sub(RightKind::DeathNotice, "carol@example.org", carol_ids(None)),
            "dpo:certificate",
            "dpo",
            now,
        )
        .await
        .unwrap();
    let cid = dn.request.id;
    w.exec.start(&cid, "dpo", now).await.unwrap();
    w.exec.run_due(now).await.unwrap();
    assert!(
        w.svc
            .steps(&cid)
            .await
            .unwrap()
            .iter()
            .all(|s| s.action == "access")
    );
    let copy = w.exec.finish(&cid, "dpo", now).await.unwrap();
    assert!(copy.is_some(), "the copy for the executor");
    assert_eq!(
        w.svc.status(&cid, now).await.unwrap().unwrap().state,
        RequestState::InProgress,
        "not answered before the erasure ran"
    );
    assert_eq!(
        events_of(&analytics, CAROL_VISITOR).await,
        1,
        "copied, not yet erased"
    );
    w.exec.run_due(now).await.unwrap();
    assert_eq!(events_of(&analytics, CAROL_VISITOR).await, 0);
    w.exec.finish(&cid, "dpo", now).await.unwrap();
    assert_eq!(
        w.svc.status(&cid, now).await.unwrap().unwrap().state,
        RequestState::Replied
    );

    // ---- the history is tamper-evident ---------------------------------------------------
    let before = w.svc.verify_history(&oid).await.unwrap();
    assert!(before.intact());
    sqlx::query("UPDATE rights_request_history SET actor = 'someone-else' WHERE request_id = $1 AND seq = 2")
        .bind(&oid)
        .execute(w.store.pool_for_tests())
        .await
        .unwrap();
    let after = w.svc.verify_history(&oid).await.unwrap();
    assert_eq!(after.broken_at, Some(2));
    sqlx::query("DELETE FROM rights_request_history WHERE request_id = $1 AND seq = 3")
        .bind(&did)
        .execute(w.store.pool_for_tests())
        .await
        .unwrap();
    assert_eq!(w.svc.verify_history(&did).await.unwrap().broken_at, Some(4));

    let view = w.svc.status(&eid, Timestamp::now()).await.unwrap().unwrap();
    assert_eq!(view.state, RequestState::Replied);
    drop(w);
    sql.close().await;
    drop(analytics);
    drop(other_node);
    store.vault_flush_erased().await.unwrap();
    store.close().await;
}

/// Nothing of Alice's erased data is left in Tutela's files.
fn forensic(dir: &Path) {
    let mut bytes = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            bytes.extend(std::fs::read(p).unwrap());
        }
    }
    // (Page addresses stay in the anonymous hourly and per-page counts, by design.)
    for needle in ["Alice Vaultname", "Bob Vaultname"] {
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "{needle} found in the store files"
        );
    }
    // The legal-obligation record stays (sealed: its text is not in clear either).
    assert!(!bytes.windows(13).any(|w| w == b"alice-old-app"));
}

#[tokio::test]
async fn every_right_every_source_sqlite_platform() {
    let dir = tempfile::tempdir().unwrap();
    let platform = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    run(
        &format!(
            "sqlite://{}?mode=rwc",
            platform.path().join("platform.db").display()
        ),
        &data,
    )
    .await;
    forensic(&data);
}

#[tokio::test]
async fn every_right_every_source_postgresql_platform() {
    let Ok(base) = std::env::var("TUTELA_TEST_POSTGRES_URL") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but TUTELA_TEST_POSTGRES_URL is not"
        );
        eprintln!("skipped on PostgreSQL: set TUTELA_TEST_POSTGRES_URL=postgres://… to run it");
        return;
    };
    let schema = format!("platform_sources_{}", std::process::id());
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
    let dir = tempfile::tempdir().unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    run(
        &format!("{base}{sep}options[search_path]={schema}"),
        &dir.path().join("data"),
    )
    .await;
    admin(format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).await;
}

/// MySQL/MariaDB: runs when `TUTELA_TEST_MYSQL_URL` is set or a server answers on 127.0.0.1:3306
/// (skipped only outside CI; under CI it must run).
#[tokio::test]
async fn every_right_every_source_mysql_platform() {
    let Some(base) = mysql_url().await else {
        return;
    };
    let db = format!("platform_sources_{}", std::process::id());
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
        "DROP DATABASE IF EXISTS {db}; CREATE DATABASE {db}"
    ))
    .await;
    let url = match base.rsplit_once('/') {
        Some((server, _)) => format!("{server}/{db}"),
        None => panic!("TUTELA_TEST_MYSQL_URL names a database"),
    };
    let dir = tempfile::tempdir().unwrap();
    run(&url, &dir.path().join("data")).await;
    admin(format!("DROP DATABASE IF EXISTS {db}")).await;
}

/// The MySQL URL to test against, or None (outside CI only) when there is none.
async fn mysql_url() -> Option<String> {
    sqlx::any::install_default_drivers();
    let ci = std::env::var_os("CI").is_some_and(|v| v != "false" && !v.is_empty());
    let url = std::env::var("TUTELA_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".to_string());
    match sqlx::AnyConnection::connect(&url).await {
        Ok(c) => {
            c.close().await.ok();
            Some(url)
        }
        Err(e) => {
            assert!(
                !ci,
                "CI is set but MySQL/MariaDB is unreachable at {url}: {e}"
            );
            eprintln!(
                "skipped on MySQL: no server (set TUTELA_TEST_MYSQL_URL=mysql://… to run it)"
            );
            None
        }
    }
}
