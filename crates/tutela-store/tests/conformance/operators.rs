//! Operators: accounts, second factor, sessions, setup links, security log.

use tutela_store::{Operator, SessionRow, SetupLink};

use crate::support::on_each_engine;

fn operator(id: &str, login: &str, role: &str) -> Operator {
    Operator {
        id: id.into(),
        login: login.into(),
        display_name: format!("Name of {login}"),
        role: role.into(),
        password_hash: Some("$argon2id$v=19$m=256,t=1,p=1$c2FsdA$aGFzaA".into()),
        totp_secret: None,
        totp_last_step: None,
        language: None,
        created_at: 100,
        password_changed_at: Some(100),
        disabled_at: None,
    }
}

fn session(hash: u8, operator_id: &str, stage: &str) -> SessionRow {
    SessionRow {
        id_hash: vec![hash; 32],
        operator_id: operator_id.into(),
        stage: stage.into(),
        pending_totp: None,
        factor_failures: 0,
        created_at: 1_000,
        last_seen_at: 1_000,
        expires_at: 50_000,
    }
}

#[tokio::test]
async fn operators_round_trip_and_logins_are_unique() {
    on_each_engine(|store| async move {
        assert_eq!(store.operator_count().await.unwrap(), 0);
        store
            .insert_operator(&operator("a1", "alice", "admin"))
            .await
            .unwrap();
        store
            .insert_operator(&operator("b2", "bob", "support"))
            .await
            .unwrap();
        assert!(
            store
                .insert_operator(&operator("c3", "alice", "dpo"))
                .await
                .is_err()
        );
        assert_eq!(store.operator_count().await.unwrap(), 2);
        assert_eq!(
            store.operator("a1").await.unwrap().unwrap(),
            operator("a1", "alice", "admin")
        );
        assert_eq!(
            store.operator_by_login("bob").await.unwrap().unwrap().id,
            "b2"
        );
        assert!(store.operator_by_login("carol").await.unwrap().is_none());
        let all = store.operators().await.unwrap();
        assert_eq!(
            all.iter().map(|o| o.login.as_str()).collect::<Vec<_>>(),
            ["alice", "bob"]
        );

        assert!(
            store
                .set_operator_password("a1", "$argon2id$new", 200)
                .await
                .unwrap()
        );
        assert!(
            !store
                .set_operator_password("zz", "$argon2id$new", 200)
                .await
                .unwrap()
        );
        store.set_operator_language("a1", "fr").await.unwrap();
        let a = store.operator("a1").await.unwrap().unwrap();
        assert_eq!(a.password_hash.as_deref(), Some("$argon2id$new"));
        assert_eq!(a.password_changed_at, Some(200));
        assert_eq!(a.language.as_deref(), Some("fr"));

        // Disabling ends the sessions.
        store
            .insert_session(&session(1, "b2", "active"))
            .await
            .unwrap();
        assert!(store.disable_operator("b2", 300).await.unwrap());
        assert!(!store.disable_operator("b2", 301).await.unwrap());
        assert!(store.operator("b2").await.unwrap().unwrap().is_disabled());
        assert!(store.session(&[1; 32]).await.unwrap().is_none());
    })
    .await;
}

#[tokio::test]
async fn totp_steps_are_accepted_once_and_recovery_codes_once() {
    on_each_engine(|store| async move {
        store
            .insert_operator(&operator("a1", "alice", "admin"))
            .await
            .unwrap();
        // No second factor yet: no step is accepted.
        assert!(!store.accept_totp_step("a1", 10).await.unwrap());
        let codes = [[1u8; 32], [2u8; 32], [3u8; 32]];
        store
            .enroll_totp("a1", &[9u8; 20], 10, &codes)
            .await
            .unwrap();
        let a = store.operator("a1").await.unwrap().unwrap();
        assert_eq!(a.totp_secret.as_deref(), Some(&[9u8; 20][..]));
        assert_eq!(a.totp_last_step, Some(10));
        // The enrolment step is used; a newer one is accepted once; an older one never.
        assert!(!store.accept_totp_step("a1", 10).await.unwrap());
        assert!(store.accept_totp_step("a1", 11).await.unwrap());
        assert!(!store.accept_totp_step("a1", 11).await.unwrap());
        assert!(!store.accept_totp_step("a1", 9).await.unwrap());

        assert_eq!(store.recovery_codes_left("a1").await.unwrap(), 3);
        assert!(
            store
                .use_recovery_code("a1", &[2u8; 32], 500)
                .await
                .unwrap()
        );
        assert!(
            !store
                .use_recovery_code("a1", &[2u8; 32], 501)
                .await
                .unwrap()
        );
        assert!(
            !store
                .use_recovery_code("a1", &[7u8; 32], 501)
                .await
                .unwrap()
        );
        assert_eq!(store.recovery_codes_left("a1").await.unwrap(), 2);

        // Enrolling again replaces the codes.
        store
            .enroll_totp("a1", &[8u8; 20], 20, &[[5u8; 32]])
            .await
            .unwrap();
        assert_eq!(store.recovery_codes_left("a1").await.unwrap(), 1);
        assert!(
            !store
                .use_recovery_code("a1", &[1u8; 32], 600)
                .await
                .unwrap()
        );

        // Reset: no secret, no codes, no sessions.
        store
            .insert_session(&session(4, "a1", "active"))
            .await
            .unwrap();
        assert!(store.reset_operator_totp("a1").await.unwrap());
        let a = store.operator("a1").await.unwrap().unwrap();
        assert!(a.totp_secret.is_none() && a.totp_last_step.is_none());
        assert_eq!(store.recovery_codes_left("a1").await.unwrap(), 0);
        assert_eq!(store.session_count("a1").await.unwrap(), 0);
        assert!(!store.reset_operator_totp("nobody").await.unwrap());
    })
    .await;
}

#[tokio::test]
async fn sessions_stage_touch_failures_and_logout_everywhere() {
    on_each_engine(|store| async move {
        store
            .insert_operator(&operator("a1", "alice", "admin"))
            .await
            .unwrap();
        store
            .insert_session(&session(1, "a1", "second_factor"))
            .await
            .unwrap();
        store
            .insert_session(&session(2, "a1", "active"))
            .await
            .unwrap();
        store
            .insert_session(&session(3, "a1", "active"))
            .await
            .unwrap();
        assert_eq!(
            store.session(&[1; 32]).await.unwrap().unwrap(),
            session(1, "a1", "second_factor")
        );
        assert!(store.session(&[9; 32]).await.unwrap().is_none());

        assert_eq!(store.add_factor_failure(&[1; 32]).await.unwrap(), 1);
        assert_eq!(store.add_factor_failure(&[1; 32]).await.unwrap(), 2);
        store
            .set_session_stage(&[1; 32], "enroll", Some(&[5u8; 20]))
            .await
            .unwrap();
        let s = store.session(&[1; 32]).await.unwrap().unwrap();
        assert_eq!((s.stage.as_str(), s.factor_failures), ("enroll", 0));
        assert_eq!(s.pending_totp.as_deref(), Some(&[5u8; 20][..]));
        store
            .set_session_stage(&[1; 32], "active", None)
            .await
            .unwrap();
        assert!(
            store
                .session(&[1; 32])
                .await
                .unwrap()
                .unwrap()
                .pending_totp
                .is_none()
        );

        store.touch_session(&[2; 32], 1_030).await.unwrap(); // within a minute: not written
        assert_eq!(
            store.session(&[2; 32]).await.unwrap().unwrap().last_seen_at,
            1_000
        );
        store.touch_session(&[2; 32], 1_100).await.unwrap();
        assert_eq!(
            store.session(&[2; 32]).await.unwrap().unwrap().last_seen_at,
            1_100
        );

        // Idle purge: session 1 and 3 were last seen at 1 000, session 2 at 1 100.
        assert_eq!(store.purge_sessions(2_000, 1_050).await.unwrap(), 2);
        assert_eq!(store.session_count("a1").await.unwrap(), 1);
        // Absolute expiry.
        let mut old = session(4, "a1", "active");
        old.expires_at = 1_500;
        store.insert_session(&old).await.unwrap();
        assert_eq!(store.purge_sessions(2_000, 0).await.unwrap(), 1);

        store
            .insert_session(&session(5, "a1", "active"))
            .await
            .unwrap();
        assert_eq!(
            store.delete_other_sessions("a1", &[5; 32]).await.unwrap(),
            1
        );
        assert!(store.session(&[5; 32]).await.unwrap().is_some());
        store
            .insert_session(&session(6, "a1", "active"))
            .await
            .unwrap();
        assert_eq!(store.delete_operator_sessions("a1").await.unwrap(), 2);
        store.delete_session(&[6; 32]).await.unwrap();
        assert_eq!(store.session_count("a1").await.unwrap(), 0);
    })
    .await;
}

#[tokio::test]
async fn setup_links_create_one_first_admin_and_invitations_are_single_use() {
    on_each_engine(|store| async move {
        store
            .insert_setup_token(&[1; 32], None, 100, 200)
            .await
            .unwrap();
        store
            .insert_setup_token(&[2; 32], None, 100, 200)
            .await
            .unwrap();
        assert_eq!(
            store.setup_link(&[1; 32], 150).await.unwrap(),
            Some(SetupLink::FirstAdmin)
        );
        assert_eq!(
            store.setup_link(&[1; 32], 200).await.unwrap(),
            None,
            "expired"
        );
        assert_eq!(store.setup_link(&[9; 32], 150).await.unwrap(), None);
        // Expired: refused.
        assert!(
            !store
                .create_first_admin(&[1; 32], &operator("a1", "alice", "admin"), 250)
                .await
                .unwrap()
        );
        assert!(
            store
                .create_first_admin(&[1; 32], &operator("a1", "alice", "admin"), 150)
                .await
                .unwrap()
        );
        // Used, and the other first-admin link is void once an operator exists.
        assert!(
            !store
                .create_first_admin(&[1; 32], &operator("z9", "zed", "admin"), 151)
                .await
                .unwrap()
        );
        assert!(
            !store
                .create_first_admin(&[2; 32], &operator("z9", "zed", "admin"), 151)
                .await
                .unwrap()
        );
        assert_eq!(store.operator_count().await.unwrap(), 1);

        // Invitation.
        let mut bob = operator("b2", "bob", "dpo");
        bob.password_hash = None;
        store.insert_operator(&bob).await.unwrap();
        store
            .insert_setup_token(&[3; 32], Some("b2"), 300, 400)
            .await
            .unwrap();
        assert_eq!(
            store.setup_link(&[3; 32], 310).await.unwrap(),
            Some(SetupLink::Invitation {
                operator_id: "b2".into()
            })
        );
        // A first-admin link cannot be used as an invitation and vice versa.
        assert!(
            !store
                .create_first_admin(&[3; 32], &operator("z9", "zed", "admin"), 310)
                .await
                .unwrap()
        );
        assert_eq!(
            store
                .accept_invitation(&[3; 32], "$argon2id$bob", 320)
                .await
                .unwrap()
                .as_deref(),
            Some("b2")
        );
        assert_eq!(
            store
                .accept_invitation(&[3; 32], "$argon2id$again", 321)
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            store
                .operator("b2")
                .await
                .unwrap()
                .unwrap()
                .password_hash
                .as_deref(),
            Some("$argon2id$bob")
        );
        // A disabled operator's invitation is void.
        store
            .insert_setup_token(&[4; 32], Some("b2"), 330, 400)
            .await
            .unwrap();
        store.disable_operator("b2", 340).await.unwrap();
        assert_eq!(store.setup_link(&[4; 32], 350).await.unwrap(), None);
        assert_eq!(
            store
                .accept_invitation(&[4; 32], "$argon2id$x", 350)
                .await
                .unwrap(),
            None
        );
    })
    .await;
}

#[tokio::test]
async fn security_log_pages_newest_first() {
    on_each_engine(|store| async move {
        for i in 0..5 {
            store
                .record_operator_event(
                    1_000 + i,
                    Some("a1"),
                    if i % 2 == 0 { "login" } else { "login_failed" },
                    None,
                )
                .await
                .unwrap();
        }
        store
            .record_operator_event(2_000, None, "login_failed", Some("unknown login"))
            .await
            .unwrap();
        let page = store.operator_events(3, None).await.unwrap();
        assert_eq!(
            page.iter().map(|e| e.at).collect::<Vec<_>>(),
            [2_000, 1_004, 1_003]
        );
        assert_eq!(page[0].operator_id, None);
        assert_eq!(page[0].detail.as_deref(), Some("unknown login"));
        let next = store.operator_events(3, Some(page[2].id)).await.unwrap();
        assert_eq!(
            next.iter().map(|e| e.at).collect::<Vec<_>>(),
            [1_002, 1_001, 1_000]
        );
        assert_eq!(
            store
                .count_operator_events("login_failed", 1_002)
                .await
                .unwrap(),
            2
        );
        assert_eq!(store.count_operator_events("login", 0).await.unwrap(), 3);
    })
    .await;
}

#[tokio::test]
async fn overview_reads_the_last_verification_and_the_last_purge() {
    on_each_engine(|store| async move {
        assert!(
            store
                .last_operator_event("audit_verified")
                .await
                .unwrap()
                .is_none()
        );
        store
            .record_operator_event(10, Some("a1"), "audit_verified", Some("intact"))
            .await
            .unwrap();
        store
            .record_operator_event(20, Some("a1"), "audit_verified", Some("broken"))
            .await
            .unwrap();
        store
            .record_operator_event(30, Some("a1"), "login", None)
            .await
            .unwrap();
        let last = store
            .last_operator_event("audit_verified")
            .await
            .unwrap()
            .unwrap();
        assert_eq!((last.at, last.detail.as_deref()), (20, Some("broken")));

        assert_eq!(store.last_retention_purge().await.unwrap(), None);
        let entry = |time_ms: i64, action: &str, purpose: &str, details: &str| {
            tutela_store::NewAuditEntry {
                time_ms,
                actor: "job:retention".into(),
                action: action.into(),
                purpose: purpose.into(),
                subject_commitment: None,
                details: details.into(),
            }
        };
        let hash = |_: &[u8; 32], seq: i64, _: &tutela_store::NewAuditEntry| [seq as u8; 32];
        store
            .append_audit(
                &[
                    entry(
                        5_000,
                        "retention_purge",
                        "support",
                        r#"{"records":4,"deadline_before":5}"#,
                    ),
                    entry(
                        9_000,
                        "retention_purge",
                        "support",
                        r#"{"records":2,"deadline_before":9}"#,
                    ),
                    entry(
                        9_000,
                        "retention_purge",
                        "hotline",
                        r#"{"records":3,"deadline_before":9}"#,
                    ),
                    entry(9_500, "retention_shred", "", r#"{"subjects":1}"#),
                ],
                hash,
            )
            .await
            .unwrap();
        assert_eq!(store.last_retention_purge().await.unwrap(), Some((9, 5)));
    })
    .await;
}
