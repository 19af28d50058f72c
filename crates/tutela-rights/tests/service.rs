//! The rights service end to end on SQLite with the file mail transport: filing, merging,
//! e-mail verification by code and by link (read from the real .eml files), attempt limits,
//! platform assertions, form tokens, extensions with their notice, and no plaintext at rest.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use jiff::Timestamp;
use tutela_crypto::IdentifierKind;
use tutela_domain::rights::{RequestState, RightKind};
use tutela_rights::{
    Channel, Mailer, RightsConfig, RightsError, RightsKeys, RightsService, Submission, Transport,
    VerificationRoute, assertion_signature,
};
use tutela_store::Store;

struct Env {
    svc: RightsService,
    store: Store,
    dir: tempfile::TempDir,
}

impl Env {
    fn outbox(&self) -> PathBuf {
        self.dir.path().join("outbox")
    }
}

async fn env_with(config: RightsConfig) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_data_dir(&dir.path().join("data"))
        .await
        .unwrap();
    let register = tutela_domain::load(tutela_domain::EXAMPLE_REGISTER, "example").unwrap();
    let mailer = Mailer::new(
        "DPO <dpo@nimbus.example>",
        &Transport::File(dir.path().join("outbox")),
    )
    .unwrap();
    let svc = RightsService::new(
        store.clone(),
        Arc::new(register),
        RightsKeys::generate().unwrap(),
        Some(mailer),
        config,
    );
    Env { svc, store, dir }
}

async fn env() -> Env {
    env_with(RightsConfig {
        platform_secret: Some(b"platform-shared-secret".to_vec().into()),
        ..RightsConfig::default()
    })
    .await
}

fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn sub(kind: RightKind, email: &str, text: &str) -> Submission {
    Submission {
        kind,
        channel: Channel::Portal,
        lang: "en".into(),
        details: Default::default(),
        identifier_kind: IdentifierKind::Email,
        identifier: email.into(),
        contact_email: None,
        text: text.into(),
    }
}

/// Decodes a message body written as 7bit or quoted-printable.
fn decode_qp(raw: &str) -> String {
    let joined = raw.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && i + 2 < bytes.len()
            && bytes[i + 1].is_ascii_hexdigit()
            && bytes[i + 2].is_ascii_hexdigit()
        {
            out.push(u8::from_str_radix(&joined[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// The messages in the outbox, oldest first (by modification time, then name).
fn mails(dir: &Path) -> Vec<String> {
    let mut files: Vec<_> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "eml"))
            .collect(),
        Err(_) => return vec![],
    };
    files.sort_by_key(|p| (std::fs::metadata(p).unwrap().modified().unwrap(), p.clone()));
    files
        .iter()
        .map(|p| decode_qp(&std::fs::read_to_string(p).unwrap()))
        .collect()
}

fn code_in(mail: &str) -> String {
    mail.lines()
        .map(str::trim)
        .find(|l| l.len() == 6 && l.bytes().all(|b| b.is_ascii_digit()))
        .expect("a 6-digit code line")
        .to_string()
}

fn link_token_in(mail: &str) -> String {
    let i = mail.find("/rights/verify/").expect("a verification link") + "/rights/verify/".len();
    mail[i..i + 64].to_string()
}

#[tokio::test]
async fn email_code_verifies_and_leaves_no_proof_behind() {
    let e = env().await;
    let now = t("2026-01-31T09:00:00Z");
    let r = e
        .svc
        .file(
            sub(
                RightKind::Access,
                "Alice@Example.org",
                "please send me my data",
            ),
            "portal",
            now,
        )
        .await
        .unwrap();
    assert_eq!(r.verification, VerificationRoute::EmailSent);
    assert_eq!(r.request.state, RequestState::AwaitingVerification);
    assert_eq!(r.request.due_at, t("2026-02-28T09:00:00Z"));
    assert!(!r.merged);
    let id = r.request.id.clone();

    let m = mails(&e.outbox());
    assert_eq!(m.len(), 1);
    assert!(m[0].contains("To: alice@example.org"), "{}", m[0]);
    assert!(
        m[0].contains("Subject: Confirm your request to Nimbus Cloud"),
        "{}",
        m[0]
    );
    assert!(m[0].contains("2026-02-28"), "the due date is in the mail");
    let code = code_in(&m[0]);

    // Unverified requests wait.
    assert!(matches!(
        e.svc
            .transition(
                &id,
                &tutela_domain::rights::Event::StartExecution,
                None,
                "dpo",
                now
            )
            .await,
        Err(RightsError::Transition(_))
    ));
    // A wrong code counts.
    let wrong = if code == "000000" { "000001" } else { "000000" };
    assert!(matches!(
        e.svc.verify_code(&id, wrong, now).await,
        Err(RightsError::Verification("wrong code"))
    ));
    assert!(matches!(
        e.svc.verify_code(&id, "12ab56", now).await,
        Err(RightsError::Verification(_))
    ));
    let ok = e.svc.verify_code(&id, &code, now).await.unwrap();
    assert_eq!(ok.request.state, RequestState::Verified);
    assert_eq!(ok.request.verification.as_deref(), Some("email_code"));
    // Used once only, and nothing of the challenge is left.
    assert!(e.svc.verify_code(&id, &code, now).await.is_err());
    assert!(
        e.store
            .live_rights_challenge(&id, "identity", now.as_second())
            .await
            .unwrap()
            .is_none()
    );
    assert!(e.svc.verify_link(&link_token_in(&m[0]), now).await.is_err());
    let hist: Vec<String> = e
        .svc
        .history(&id)
        .await
        .unwrap()
        .into_iter()
        .map(|h| h.event)
        .collect();
    assert_eq!(
        hist,
        ["received", "challenge_sent", "challenge_mailed", "verified"]
    );

    // The same person again while the request is open: merged, no new mail.
    let again = e
        .svc
        .file(
            sub(RightKind::Access, " alice@EXAMPLE.org", "second message"),
            "portal",
            now,
        )
        .await
        .unwrap();
    assert!(again.merged);
    assert_eq!(again.request.id, id);
    assert_eq!(again.verification, VerificationRoute::AlreadyVerified);
    assert_eq!(again.request.repeats, 1);
    assert_eq!(mails(&e.outbox()).len(), 1);
    let texts: Vec<String> = e
        .svc
        .messages(&id)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    assert_eq!(texts, ["please send me my data", "second message"]);

    // Nothing personal is stored in clear.
    e.store.close().await;
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(e.dir.path().join("data")).unwrap() {
        bytes.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    for needle in [
        "alice@example.org",
        "Alice@Example.org",
        "please send me my data",
        "second message",
        code.as_str(),
    ] {
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "found {needle:?} in the database files"
        );
    }
}

#[tokio::test]
async fn link_verification_attempt_limits_expiry_and_resend_throttle() {
    let e = env_with(RightsConfig {
        max_attempts: 2,
        challenge_ttl_secs: 3600,
        resend_after_secs: 600,
        ..RightsConfig::default()
    })
    .await;
    let now = t("2026-03-01T10:00:00Z");
    let r = e
        .svc
        .file(
            sub(RightKind::Erasure, "bob@example.net", ""),
            "portal",
            now,
        )
        .await
        .unwrap();
    let id = r.request.id;
    // A repeat within minutes does not mail again.
    let again = e
        .svc
        .file(
            sub(RightKind::Erasure, "bob@example.net", "again"),
            "portal",
            now,
        )
        .await
        .unwrap();
    assert_eq!(again.verification, VerificationRoute::ChallengeRecentlySent);
    assert_eq!(mails(&e.outbox()).len(), 1);
    let first = mails(&e.outbox()).remove(0);

    // Two wrong codes use up the attempts: the right code is refused afterwards.
    let code = code_in(&first);
    let wrong = if code == "999999" { "999998" } else { "999999" };
    assert!(e.svc.verify_code(&id, wrong, now).await.is_err());
    assert!(e.svc.verify_code(&id, wrong, now).await.is_err());
    assert!(
        matches!(e.svc.verify_code(&id, &code, now).await, Err(RightsError::Verification(m)) if m.contains("no code"))
    );

    // Later, a new challenge replaces the old one; the old link no longer works.
    let later = now + jiff::SignedDuration::from_mins(11);
    assert_eq!(
        e.svc.send_challenge(&id, later).await.unwrap(),
        VerificationRoute::EmailSent
    );
    let second = mails(&e.outbox())
        .into_iter()
        .find(|m| *m != first)
        .expect("a second message");
    assert!(
        e.svc
            .verify_link(&link_token_in(&first), later)
            .await
            .is_err()
    );
    // Expired after an hour.
    let token = link_token_in(&second);
    assert!(
        e.svc
            .verify_link(&token, later + jiff::SignedDuration::from_mins(61))
            .await
            .is_err()
    );
    // In time, the link works once.
    let ok = e.svc.verify_link(&token, later).await.unwrap();
    assert_eq!(ok.request.state, RequestState::Verified);
    assert_eq!(ok.request.verification.as_deref(), Some("email_link"));
    assert!(e.svc.verify_link(&token, later).await.is_err());
    assert!(e.svc.verify_link("zz", later).await.is_err());
}

#[tokio::test]
async fn french_mail_and_dpo_route_without_email() {
    let e = env().await;
    let now = t("2028-01-31T12:00:00Z");
    let mut s = sub(
        RightKind::Rectification,
        "claire@exemple.fr",
        "mon nom est mal écrit",
    );
    s.lang = "fr".into();
    let r = e.svc.file(s, "portal", now).await.unwrap();
    assert_eq!(r.request.due_at, t("2028-02-29T12:00:00Z"), "leap year");
    let m = mails(&e.outbox()).remove(0);
    assert!(m.contains("Confirmez votre demande"), "{m}");
    assert!(m.contains("2028-02-29"), "{m}");

    // A login and no e-mail: the DPO verifies by hand.
    let by_post = Submission {
        kind: RightKind::Access,
        channel: Channel::Post,
        lang: "de".into(),
        details: Default::default(),
        identifier_kind: IdentifierKind::Login,
        identifier: "dupont42".into(),
        contact_email: None,
        text: "lettre reçue le 2 février".into(),
    };
    let r = e.svc.file(by_post, "dpo:1", now).await.unwrap();
    assert_eq!(r.verification, VerificationRoute::WaitingForDpo);
    assert_eq!(
        r.request.lang,
        e.svc.register().notice.default_language,
        "unknown languages fall back to the register's default"
    );
    assert_eq!(mails(&e.outbox()).len(), 1);
}

#[tokio::test]
async fn bounds_are_enforced_with_clear_errors() {
    let e = env().await;
    let now = Timestamp::now();
    let long = "x".repeat(tutela_rights::MAX_TEXT_CHARS + 1);
    let err = e
        .svc
        .file(sub(RightKind::Access, "a@b.c", &long), "portal", now)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("limited to 5000"), "{err}");
    let err = e
        .svc
        .file(sub(RightKind::Access, "not-an-email", ""), "portal", now)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("invalid e-mail address")
            && !err.to_string().contains("not-an-email"),
        "{err}"
    );
    let err = e
        .svc
        .file(sub(RightKind::Access, "a@b.c", "bell\u{7}"), "portal", now)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("control characters"), "{err}");
    let huge = format!("{}@b.c", "a".repeat(400));
    assert!(
        e.svc
            .file(sub(RightKind::Access, &huge, ""), "portal", now)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn platform_assertions_and_form_tokens() {
    let e = env().await;
    let now = t("2026-05-01T00:00:00Z");
    let sig = assertion_signature(
        b"platform-shared-secret",
        IdentifierKind::Email,
        "dan@example.com",
        now.as_second(),
    );
    e.svc
        .check_assertion(
            IdentifierKind::Email,
            "Dan@Example.com",
            now.as_second(),
            &sig,
            now,
        )
        .unwrap();
    assert!(
        e.svc
            .check_assertion(
                IdentifierKind::Email,
                "eve@example.com",
                now.as_second(),
                &sig,
                now
            )
            .is_err()
    );
    let stale = now + jiff::SignedDuration::from_mins(6);
    assert!(
        e.svc
            .check_assertion(
                IdentifierKind::Email,
                "dan@example.com",
                now.as_second(),
                &sig,
                stale
            )
            .is_err()
    );
    let forged = assertion_signature(
        b"guess",
        IdentifierKind::Email,
        "dan@example.com",
        now.as_second(),
    );
    assert!(
        e.svc
            .check_assertion(
                IdentifierKind::Email,
                "dan@example.com",
                now.as_second(),
                &forged,
                now
            )
            .is_err()
    );

    let r = e
        .svc
        .file_verified(
            sub(RightKind::Portability, "dan@example.com", ""),
            "platform_assertion",
            "token:abc",
            now,
        )
        .await
        .unwrap();
    assert_eq!(r.verification, VerificationRoute::Platform);
    assert_eq!(r.request.state, RequestState::Verified);
    assert_eq!(
        r.request.verification.as_deref(),
        Some("platform_assertion")
    );
    assert!(
        mails(&e.outbox()).is_empty(),
        "no mail when the platform vouches"
    );

    let tok = e.svc.form_token(now).unwrap();
    assert!(e.svc.check_form_token(&tok.0, now));
    assert!(
        !e.svc
            .check_form_token(&tok.0, now + jiff::SignedDuration::from_hours(3))
    );
    let mut tampered = tok.0.clone();
    tampered.replace_range(0..1, if tampered.starts_with('9') { "8" } else { "9" });
    assert!(!e.svc.check_form_token(&tampered, now));
    assert!(!e.svc.check_form_token("", now));
    assert!(!e.svc.check_form_token("1.2.3", now));

    // Without a configured secret, assertions are refused with a clear error.
    let bare = env_with(RightsConfig::default()).await;
    let err = bare
        .svc
        .check_assertion(
            IdentifierKind::Email,
            "dan@example.com",
            now.as_second(),
            &sig,
            now,
        )
        .unwrap_err();
    assert!(err.to_string().contains("not configured"), "{err}");
}

#[tokio::test]
async fn extension_sends_its_notice_first_and_due_lists_follow() {
    use tutela_domain::rights::{Event, Urgency};
    let e = env().await;
    let now = t("2026-01-31T09:00:00Z");
    let r = e
        .svc
        .file_verified(
            sub(RightKind::Access, "fay@example.com", ""),
            "platform_token:t1",
            "token:t1",
            now,
        )
        .await
        .unwrap();
    let id = r.request.id;
    e.svc
        .transition(&id, &Event::StartExecution, None, "tutela", now)
        .await
        .unwrap();
    // Too late: nothing is mailed, nothing changes.
    let late = t("2026-02-28T09:00:00Z");
    assert!(
        e.svc
            .extend(&id, t("2026-04-28T09:00:00Z"), "volume", "dpo:1", late)
            .await
            .is_err()
    );
    assert!(mails(&e.outbox()).is_empty());
    // In time: the notice goes out with the reasons, then the extension is recorded.
    let v = e
        .svc
        .extend(
            &id,
            t("2026-04-28T09:00:00Z"),
            "three systems to search",
            "dpo:1",
            t("2026-02-20T00:00:00Z"),
        )
        .await
        .unwrap();
    assert_eq!(v.state, RequestState::Extended);
    let m = mails(&e.outbox());
    assert_eq!(m.len(), 1);
    assert!(
        m[0].contains("three systems to search")
            && m[0].contains("2026-04-28")
            && m[0].contains("2026-02-28"),
        "{}",
        m[0]
    );
    assert!(
        m[0].contains("cnil.fr"),
        "the complaint route is in the notice: {}",
        m[0]
    );

    // Due lists.
    let other = e
        .svc
        .file(
            sub(RightKind::Erasure, "gus@example.com", ""),
            "portal",
            t("2026-02-01T00:00:00Z"),
        )
        .await
        .unwrap();
    let at = t("2026-03-02T00:00:00Z");
    let due = e.svc.due(at, 7 * 86400, 100).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].id, other.request.id);
    assert_eq!(due[0].urgency, Some(Urgency::Overdue));
    let all = e.svc.due(at, i64::MAX / 2, 100).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(
        e.svc.status(&id, at).await.unwrap().unwrap().urgency,
        Some(Urgency::OnTime)
    );
    assert!(e.svc.status("nope", at).await.unwrap().is_none());
}

#[tokio::test]
async fn the_dpo_is_reminded_of_due_and_overdue_requests_without_personal_data() {
    let e = env().await;
    let t0 = t("2026-01-10T09:00:00Z");
    let a = e
        .svc
        .file_verified(
            sub(RightKind::Access, "ann@example.com", "secret words"),
            "platform_token:t",
            "token:t",
            t0,
        )
        .await
        .unwrap();
    let b = e
        .svc
        .file_verified(
            sub(RightKind::Erasure, "ben@example.com", ""),
            "platform_token:t",
            "token:t",
            t("2026-02-05T09:00:00Z"),
        )
        .await
        .unwrap();
    // 12 February: a is overdue (due 10 February), b is due 5 March (outside the 7-day window).
    assert_eq!(e.svc.remind(t("2026-02-12T00:00:00Z")).await.unwrap(), 1);
    // 1 March: both.
    assert_eq!(e.svc.remind(t("2026-03-01T00:00:00Z")).await.unwrap(), 2);
    let m = mails(&e.outbox());
    assert_eq!(m.len(), 2);
    let last = m
        .iter()
        .find(|x| x.contains("2 rights request(s)"))
        .unwrap();
    assert!(
        last.contains(&a.request.id) && last.contains(&b.request.id) && last.contains("OVERDUE"),
        "{last}"
    );
    assert!(
        last.contains(&format!("To: {}", e.svc.register().controller.dpo.email)),
        "{last}"
    );
    assert!(
        !last.contains("ann@example.com") && !last.contains("secret words"),
        "{last}"
    );
}
