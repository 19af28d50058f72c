//! Rights requests: filing and merging, status updates with optimistic concurrency, due lists,
//! resumable steps, verification challenges and the purge.

use tutela_store::{
    Filed, RightsChallenge, RightsPackage, RightsRequestRow, RightsStatusUpdate, Store,
};

use crate::support::on_each_engine;

fn request(id: &str, index: u8, kind: &str, received: i64, due: i64) -> RightsRequestRow {
    RightsRequestRow {
        id: id.to_string(),
        kind: kind.to_string(),
        state: "received".into(),
        channel: "portal".into(),
        lang: "en".into(),
        requester_index: vec![index; 32],
        requester_sealed: vec![0xee, index, 1, 2, 3],
        repeats: 0,
        received_at: received,
        due_at: due,
        original_due_at: due,
        extended_until: None,
        extension_reasons: None,
        verified_at: None,
        verification: None,
        replied_at: None,
        purge_after: None,
        rejection_ground: None,
        rejection_reasons: None,
        updated_at: received,
    }
}

fn update(state: &str, open: bool, due: i64) -> RightsStatusUpdate {
    RightsStatusUpdate {
        state: state.into(),
        open,
        due_at: due,
        extended_until: None,
        extension_reasons: None,
        verified_at: None,
        verification: None,
        replied_at: None,
        purge_after: None,
        rejection_ground: None,
        rejection_reasons: None,
    }
}

#[tokio::test]
async fn repeated_requests_merge_while_open_only() {
    on_each_engine(|store: Store| async move {
        let a = store
            .file_rights_request(
                &request("r1", 1, "access", 100, 1000),
                b"m1",
                true,
                "portal",
            )
            .await
            .unwrap();
        assert_eq!(a, Filed::Created("r1".into()));
        // Same person, same right, still open: merged, the text kept.
        let b = store
            .file_rights_request(
                &request("r2", 1, "access", 200, 1100),
                b"m2",
                true,
                "portal",
            )
            .await
            .unwrap();
        assert_eq!(
            b,
            Filed::Merged {
                id: "r1".into(),
                repeats: 1
            }
        );
        assert!(store.rights_request("r2").await.unwrap().is_none());
        let msgs = store.rights_request_messages("r1").await.unwrap();
        assert_eq!(
            msgs.iter().map(|m| m.sealed.clone()).collect::<Vec<_>>(),
            vec![b"m1".to_vec(), b"m2".to_vec()]
        );
        assert_eq!(msgs[1].seq, 2);
        // Another right, or another person: separate requests.
        let c = store
            .file_rights_request(
                &request("r3", 1, "erasure", 300, 1200),
                b"m3",
                true,
                "portal",
            )
            .await
            .unwrap();
        assert_eq!(c, Filed::Created("r3".into()));
        let d = store
            .file_rights_request(&request("r4", 2, "access", 300, 1200), b"m4", true, "api")
            .await
            .unwrap();
        assert_eq!(d, Filed::Created("r4".into()));
        // Not merging when asked not to (death notices).
        let e = store
            .file_rights_request(&request("r5", 2, "access", 300, 1200), b"m5", false, "api")
            .await
            .unwrap();
        assert_eq!(e, Filed::Created("r5".into()));
        // Once r1 is answered, the slot is free: a new access request is a new request.
        let mut u = update("rejected", false, 1000);
        u.replied_at = Some(400);
        u.purge_after = Some(5000);
        u.rejection_ground = Some("excessive".into());
        u.rejection_reasons = Some("repetitive".into());
        assert!(
            store
                .update_rights_request("r1", "received", &u, "reject", "dpo:1", 400)
                .await
                .unwrap()
        );
        let f = store
            .file_rights_request(
                &request("r6", 1, "access", 500, 1500),
                b"m6",
                true,
                "portal",
            )
            .await
            .unwrap();
        assert_eq!(f, Filed::Created("r6".into()));
        let mine = store.rights_requests_of(&[1u8; 32]).await.unwrap();
        assert_eq!(
            mine.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            vec!["r6", "r3", "r1"]
        );
        let r1 = store.rights_request("r1").await.unwrap().unwrap();
        assert_eq!(r1.repeats, 1);
        assert_eq!(r1.rejection_reasons.as_deref(), Some("repetitive"));
        let hist = store.rights_request_history("r1").await.unwrap();
        assert_eq!(
            hist.iter()
                .map(|h| (h.event.as_str(), h.state.as_str()))
                .collect::<Vec<_>>(),
            vec![
                ("received", "received"),
                ("merged_repeat", "received"),
                ("reject", "rejected")
            ]
        );
    })
    .await;
}

#[tokio::test]
async fn concurrent_submissions_of_one_person_make_one_request() {
    on_each_engine(|store: Store| async move {
        let mut tasks = Vec::new();
        for i in 0..6 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .file_rights_request(
                        &request(&format!("c{i}"), 9, "access", 100 + i, 1000),
                        b"x",
                        true,
                        "portal",
                    )
                    .await
                    .unwrap()
            }));
        }
        let mut ids = Vec::new();
        for t in tasks {
            ids.push(t.await.unwrap().id().to_string());
        }
        ids.dedup();
        assert_eq!(ids.len(), 1, "{ids:?}");
        let r = store.rights_request(&ids[0]).await.unwrap().unwrap();
        assert_eq!(r.repeats, 5);
        assert_eq!(
            store.rights_request_messages(&ids[0]).await.unwrap().len(),
            6
        );
    })
    .await;
}

#[tokio::test]
async fn status_updates_refuse_stale_states_and_due_lists_order_by_date() {
    on_each_engine(|store: Store| async move {
        for (id, idx, due) in [("a", 1, 3000), ("b", 2, 1000), ("c", 3, 2000)] {
            store
                .file_rights_request(&request(id, idx, "access", 10, due), b"m", true, "api")
                .await
                .unwrap();
        }
        store
            .file_rights_request(
                &request("d", 4, "death_notice", 10, 1500),
                b"m",
                false,
                "post",
            )
            .await
            .unwrap();
        let due = store.rights_requests_due(2000, 10).await.unwrap();
        assert_eq!(
            due.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            vec!["b", "d", "c"]
        );
        let all = store.rights_requests_due(i64::MAX, 10).await.unwrap();
        assert_eq!(all.len(), 4);
        assert_eq!(
            store.rights_requests_due(i64::MAX, 2).await.unwrap().len(),
            2
        );

        let mut u = update("verified", true, 1000);
        u.verified_at = Some(50);
        u.verification = Some("email_code".into());
        assert!(
            store
                .update_rights_request("b", "received", &u, "verified", "requester", 50)
                .await
                .unwrap()
        );
        // A second node deciding from the old state loses.
        assert!(
            !store
                .update_rights_request("b", "received", &u, "verified", "requester", 51)
                .await
                .unwrap()
        );
        let b = store.rights_request("b").await.unwrap().unwrap();
        assert_eq!(b.state, "verified");
        assert_eq!(b.verification.as_deref(), Some("email_code"));
        assert_eq!(store.rights_request_history("b").await.unwrap().len(), 2);

        // Replied: no longer listed as due.
        let mut u = update("replied", false, 1000);
        u.replied_at = Some(60);
        u.purge_after = Some(100);
        assert!(
            store
                .update_rights_request("b", "verified", &u, "reply", "dpo:1", 60)
                .await
                .unwrap()
        );
        assert!(
            !store
                .rights_requests_due(i64::MAX, 10)
                .await
                .unwrap()
                .iter()
                .any(|r| r.id == "b")
        );
        store
            .note_rights_event("b", "package_downloaded", "requester", 70)
            .await
            .unwrap();
        assert_eq!(
            store
                .rights_request_history("b")
                .await
                .unwrap()
                .last()
                .unwrap()
                .event,
            "package_downloaded"
        );

        // Purge: only past the purge date, and with everything attached.
        store
            .plan_rights_step("b", "vault", "access", 60)
            .await
            .unwrap();
        assert_eq!(store.purge_rights_requests(99, 10).await.unwrap(), 0);
        assert_eq!(store.purge_rights_requests(100, 10).await.unwrap(), 1);
        assert!(store.rights_request("b").await.unwrap().is_none());
        assert!(store.rights_request_messages("b").await.unwrap().is_empty());
        assert!(store.rights_request_history("b").await.unwrap().is_empty());
        assert!(store.rights_steps("b").await.unwrap().is_empty());
        assert!(store.rights_request("a").await.unwrap().is_some());
    })
    .await;
}

#[tokio::test]
async fn steps_are_idempotent_resumable_and_retried() {
    on_each_engine(|store: Store| async move {
        store
            .file_rights_request(&request("s", 1, "erasure", 10, 1000), b"m", true, "api")
            .await
            .unwrap();
        assert!(
            store
                .plan_rights_step("s", "vault", "erase", 100)
                .await
                .unwrap()
        );
        assert!(
            store
                .plan_rights_step("s", "webhook:crm", "notify", 100)
                .await
                .unwrap()
        );
        // Planning again keeps progress.
        assert!(
            !store
                .plan_rights_step("s", "vault", "erase", 200)
                .await
                .unwrap()
        );

        let claimed = store.claim_rights_steps(100, 30, 10).await.unwrap();
        assert_eq!(claimed.len(), 2);
        assert!(
            claimed
                .iter()
                .all(|s| s.status == "running" && s.attempts == 1)
        );
        // Leased: nobody else gets them.
        assert!(
            store
                .claim_rights_steps(110, 30, 10)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            store
                .complete_rights_step(
                    "s",
                    "vault",
                    "erase",
                    r#"{"erased":3}"#,
                    Some(b"sealed".as_slice()),
                    111
                )
                .await
                .unwrap()
        );
        // Completing twice does nothing.
        assert!(
            !store
                .complete_rights_step("s", "vault", "erase", "{}", None, 112)
                .await
                .unwrap()
        );
        assert!(
            store
                .fail_rights_step("s", "webhook:crm", "notify", "HTTP 503", Some(200), 112)
                .await
                .unwrap()
        );
        assert!(
            store
                .claim_rights_steps(150, 30, 10)
                .await
                .unwrap()
                .is_empty()
        );
        // Retried after the back-off.
        let again = store.claim_rights_steps(200, 30, 10).await.unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].attempts, 2);
        assert_eq!(again[0].last_error.as_deref(), Some("HTTP 503"));
        // The runner crashes: its lease runs out and another takes over.
        let taken = store.claim_rights_steps(231, 30, 10).await.unwrap();
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].attempts, 3);
        assert!(
            store
                .fail_rights_step("s", "webhook:crm", "notify", "HTTP 500", None, 240)
                .await
                .unwrap()
        );
        let steps = store.rights_steps("s").await.unwrap();
        let by = |src: &str| steps.iter().find(|s| s.source == src).unwrap().clone();
        assert_eq!(by("vault").status, "done");
        assert_eq!(by("vault").outcome.as_deref(), Some(r#"{"erased":3}"#));
        assert_eq!(
            by("vault").result_sealed.as_deref(),
            Some(b"sealed".as_slice())
        );
        assert_eq!(by("webhook:crm").status, "failed");
        assert_eq!(by("webhook:crm").finished_at, Some(240));
        assert!(
            store
                .claim_rights_steps(10_000, 30, 10)
                .await
                .unwrap()
                .is_empty()
        );
    })
    .await;
}

#[tokio::test]
async fn challenges_count_attempts_expire_and_are_consumed_once() {
    on_each_engine(|store: Store| async move {
        store
            .file_rights_request(&request("v", 1, "access", 10, 1000), b"m", true, "portal")
            .await
            .unwrap();
        let ch = |id: &str, created: i64, link: u8| RightsChallenge {
            id: id.into(),
            request_id: "v".into(),
            purpose: "identity".into(),
            code_hash: vec![1; 32],
            link_hash: vec![link; 32],
            attempts: 0,
            max_attempts: 3,
            created_at: created,
            expires_at: created + 100,
            consumed_at: None,
        };
        store
            .insert_rights_challenge(&ch("c1", 10, 1))
            .await
            .unwrap();
        assert_eq!(
            store
                .live_rights_challenge("v", "identity", 20)
                .await
                .unwrap()
                .unwrap()
                .id,
            "c1"
        );
        // A new challenge retires the old one.
        store
            .insert_rights_challenge(&ch("c2", 20, 2))
            .await
            .unwrap();
        assert_eq!(
            store
                .live_rights_challenge("v", "identity", 21)
                .await
                .unwrap()
                .unwrap()
                .id,
            "c2"
        );
        assert!(
            store
                .rights_challenge_by_link(&[1; 32])
                .await
                .unwrap()
                .unwrap()
                .consumed_at
                .is_some()
        );
        // Attempts are bounded.
        for _ in 0..3 {
            assert!(
                store
                    .count_rights_challenge_attempt("c2", 30)
                    .await
                    .unwrap()
            );
        }
        assert!(
            !store
                .count_rights_challenge_attempt("c2", 30)
                .await
                .unwrap()
        );
        assert!(
            store
                .live_rights_challenge("v", "identity", 30)
                .await
                .unwrap()
                .is_none()
        );
        // Expiry.
        store
            .insert_rights_challenge(&ch("c3", 40, 3))
            .await
            .unwrap();
        assert!(
            !store
                .count_rights_challenge_attempt("c3", 140)
                .await
                .unwrap()
        );
        assert!(
            store
                .live_rights_challenge("v", "identity", 140)
                .await
                .unwrap()
                .is_none()
        );
        // Consumed once.
        store
            .insert_rights_challenge(&ch("c4", 150, 4))
            .await
            .unwrap();
        assert!(store.consume_rights_challenge("c4", 151).await.unwrap());
        assert!(!store.consume_rights_challenge("c4", 152).await.unwrap());
        assert_eq!(store.delete_rights_challenges("v").await.unwrap(), 4);
        assert!(
            store
                .rights_challenge_by_link(&[4; 32])
                .await
                .unwrap()
                .is_none()
        );
    })
    .await;
}

#[tokio::test]
async fn packages_are_found_by_token_hash_counted_and_purged() {
    on_each_engine(|store: Store| async move {
        store
            .file_rights_request(&request("p", 1, "access", 10, 1000), b"m", true, "api")
            .await
            .unwrap();
        let pkg = RightsPackage {
            id: "pk1".into(),
            request_id: "p".into(),
            token_hash: vec![7; 32],
            sealed: vec![1, 2, 3],
            created_at: 100,
            expires_at: 200,
            downloads: 0,
        };
        store.insert_rights_package(&pkg).await.unwrap();
        assert_eq!(
            store.rights_package_by_token(&[7; 32]).await.unwrap(),
            Some(pkg.clone())
        );
        assert!(
            store
                .rights_package_by_token(&[8; 32])
                .await
                .unwrap()
                .is_none()
        );
        store.count_rights_package_download("pk1").await.unwrap();
        assert_eq!(
            store
                .rights_package_by_token(&[7; 32])
                .await
                .unwrap()
                .unwrap()
                .downloads,
            1
        );
        assert_eq!(store.purge_expired_rights_packages(199).await.unwrap(), 0);
        assert_eq!(store.purge_expired_rights_packages(200).await.unwrap(), 1);
        assert!(
            store
                .rights_package_by_token(&[7; 32])
                .await
                .unwrap()
                .is_none()
        );
        // Identity and download challenges do not retire each other.
        let ch = |id: &str, purpose: &str, link: u8| RightsChallenge {
            id: id.into(),
            request_id: "p".into(),
            purpose: purpose.into(),
            code_hash: vec![1; 32],
            link_hash: vec![link; 32],
            attempts: 0,
            max_attempts: 3,
            created_at: 10,
            expires_at: 1000,
            consumed_at: None,
        };
        store
            .insert_rights_challenge(&ch("i1", "identity", 1))
            .await
            .unwrap();
        store
            .insert_rights_challenge(&ch("d1", "download", 2))
            .await
            .unwrap();
        assert_eq!(
            store
                .live_rights_challenge("p", "identity", 20)
                .await
                .unwrap()
                .unwrap()
                .id,
            "i1"
        );
        assert_eq!(
            store
                .live_rights_challenge("p", "download", 20)
                .await
                .unwrap()
                .unwrap()
                .id,
            "d1"
        );
    })
    .await;
}
