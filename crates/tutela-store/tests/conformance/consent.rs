//! Consent records: append-only, latest answer per category, pagination, daily figures, purge,
//! group commit.

use tutela_store::{AppendError, ConsentCategory, ConsentRecord, ConsentWriter};

use crate::support::on_each_engine;

fn record(id: &str, consent: &str, at: i64, analytics: Option<bool>) -> ConsentRecord {
    ConsentRecord {
        record_id: id.to_string(),
        consent_id: consent.to_string(),
        recorded_at: at,
        site: Some("https://www.example.com".into()),
        revision: "2026-3".into(),
        register_hash: "abc123".into(),
        method: "banner".into(),
        source: "tutela".into(),
        gpc: false,
        language: Some("fr".into()),
        functional: Some(true),
        analytics,
        targeting: None,
        services: r#"{"functional":{"parlo":true}}"#.into(),
        purpose: "proof_of_consent".into(),
        category: "consent_record".into(),
        delete_after: at + 1_000,
    }
}

#[tokio::test]
async fn records_are_appended_and_read_back_in_order() {
    on_each_engine(|store| async move {
        let a1 = record("r1", "c-a", 100, Some(true));
        let mut a2 = record("r2", "c-a", 100, Some(false)); // same second: order still kept
        a2.method = "gpc".into();
        a2.gpc = true;
        a2.site = None;
        a2.language = None;
        let b1 = record("r3", "c-b", 150, None);
        store
            .insert_consent_records(std::slice::from_ref(&a1))
            .await
            .unwrap();
        store
            .insert_consent_records(&[a2.clone(), b1.clone()])
            .await
            .unwrap();

        assert_eq!(
            store.consent_records("c-a", 10).await.unwrap(),
            [a1.clone(), a2.clone()]
        );
        assert_eq!(store.consent_records("c-a", 1).await.unwrap(), [a2.clone()]);
        assert!(
            store
                .consent_records("nobody", 10)
                .await
                .unwrap()
                .is_empty()
        );

        // The latest answer per category wins; an unanswered category is None.
        assert_eq!(
            store
                .consent_granted("c-a", ConsentCategory::Analytics)
                .await
                .unwrap(),
            Some(false)
        );
        assert_eq!(
            store
                .consent_granted("c-a", ConsentCategory::Functional)
                .await
                .unwrap(),
            Some(true)
        );
        assert_eq!(
            store
                .consent_granted("c-a", ConsentCategory::Targeting)
                .await
                .unwrap(),
            None
        );
        // c-b never answered analytics: no consent.
        assert_eq!(
            store
                .consent_granted("c-b", ConsentCategory::Analytics)
                .await
                .unwrap(),
            None
        );

        // The database checks the method and the deadline; a failed batch writes nothing.
        let mut bad = record("r8", "c-c", 200, Some(true));
        bad.method = "magic".into();
        let fresh = record("r9", "c-c", 200, Some(true));
        assert!(
            store
                .insert_consent_records(&[fresh.clone(), bad])
                .await
                .is_err()
        );
        let mut late = record("r7", "c-c", 200, Some(true));
        late.delete_after = 100;
        assert!(store.insert_consent_records(&[fresh, late]).await.is_err());
        assert!(store.consent_records("c-c", 10).await.unwrap().is_empty());
    })
    .await;
}

#[tokio::test]
async fn records_cannot_be_updated() {
    on_each_engine(|store| async move {
        store
            .insert_consent_records(&[record("r1", "c-a", 100, Some(true))])
            .await
            .unwrap();
        let update = sqlx::query("UPDATE consent_records SET analytics = 0 WHERE record_id = 'r1'")
            .execute(store.pool_for_tests())
            .await;
        let err = update.expect_err("updates must be refused");
        assert!(err.to_string().contains("append-only"), "{err}");
        assert_eq!(
            store
                .consent_granted("c-a", ConsentCategory::Analytics)
                .await
                .unwrap(),
            Some(true)
        );
    })
    .await;
}

#[tokio::test]
async fn export_pages_daily_figures_and_purge() {
    on_each_engine(|store| async move {
        let day = 86_400;
        let mut rs = Vec::new();
        for i in 0..7i64 {
            let mut r = record(
                &format!("r{i}"),
                &format!("c{i}"),
                10 * day + i * 3_600 * 5,
                Some(i % 2 == 0),
            );
            r.targeting = Some(i == 3);
            r.gpc = i == 4;
            r.delete_after = 100 * day + i;
            rs.push(r);
        }
        store.insert_consent_records(&rs).await.unwrap();

        // Pages of 3 over the whole period, by sequence.
        let mut after = 0;
        let mut seen = Vec::new();
        loop {
            let page = store
                .consent_records_between(10 * day, 12 * day, after, 3)
                .await
                .unwrap();
            if page.is_empty() {
                break;
            }
            assert!(page.len() <= 3);
            after = page.last().unwrap().0;
            seen.extend(page.into_iter().map(|(_, r)| r.record_id));
        }
        assert_eq!(seen, ["r0", "r1", "r2", "r3", "r4", "r5", "r6"]);
        // The period bounds apply: [from, to).
        let first_day = store
            .consent_records_between(10 * day, 11 * day, 0, 100)
            .await
            .unwrap();
        assert_eq!(first_day.len(), 5, "records at 0, 5, 10, 15, 20 h");

        let days = store.consent_days(0, 20 * day).await.unwrap();
        assert_eq!(days.len(), 2);
        assert_eq!((days[0].day, days[0].records), (10, 5));
        assert_eq!((days[1].day, days[1].records), (11, 2));
        // Analytics granted for even i: day 10 has i = 0, 2, 4 granted and 1, 3 refused.
        assert_eq!(days[0].categories[1], (3, 2));
        assert_eq!(days[0].categories[2], (1, 4));
        assert_eq!(days[0].gpc, 1);
        assert_eq!(days[0].categories[0], (5, 0));

        // Purge: only records whose deadline passed.
        assert_eq!(store.purge_consent_records(100 * day + 2).await.unwrap(), 3);
        assert_eq!(store.purge_consent_records(100 * day + 2).await.unwrap(), 0);
        let left = store
            .consent_records_between(0, 20 * day, 0, 100)
            .await
            .unwrap();
        assert_eq!(left.len(), 4);
        assert!(left.iter().all(|(_, r)| r.delete_after > 100 * day + 2));
    })
    .await;
}

#[tokio::test]
async fn the_writer_commits_before_answering_and_refuses_when_full() {
    on_each_engine(|store| async move {
        let writer = ConsentWriter::spawn(store.clone(), 1024);
        let mut tasks = Vec::new();
        for i in 0..300 {
            let w = writer.clone();
            tasks.push(tokio::spawn(async move {
                w.append(record(
                    &format!("w{i}"),
                    &format!("c{}", i % 7),
                    1_000 + i,
                    Some(true),
                ))
                .await
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let all = store
            .consent_records_between(0, 10_000, 0, 1_000)
            .await
            .unwrap();
        assert_eq!(all.len(), 300);

        // A bad record in a batch fails alone; the others are written.
        let mut bad = record("bad", "dup", 5_000, None);
        bad.method = "magic".into();
        let (a, b) = tokio::join!(
            writer.append(bad),
            writer.append(record("fresh", "dup", 5_000, None))
        );
        assert!(matches!(a, Err(AppendError::Failed(_))), "{a:?}");
        b.unwrap();
        assert_eq!(store.consent_records("dup", 10).await.unwrap().len(), 1);

        // A queue of one, filled faster than it drains: some appends are refused, none is lost.
        let tiny = ConsentWriter::spawn(store.clone(), 1);
        let handles: Vec<_> = (0..50)
            .map(|i| {
                let w = tiny.clone();
                tokio::spawn(async move {
                    w.append(record(&format!("t{i}"), "tiny", 6_000, None))
                        .await
                })
            })
            .collect();
        let mut ok = 0;
        let mut full = 0;
        for h in handles {
            match h.await.unwrap() {
                Ok(()) => ok += 1,
                Err(AppendError::Full) => full += 1,
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert_eq!(ok + full, 50);
        assert!(
            full > 0,
            "a queue of one must refuse some of 50 simultaneous appends"
        );
        assert_eq!(store.consent_records("tiny", 100).await.unwrap().len(), ok);
    })
    .await;
}
