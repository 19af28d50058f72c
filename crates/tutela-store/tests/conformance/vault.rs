//! Vault persistence: subjects, identifiers, sealed records with deadlines, anchors, purges,
//! re-wrapping and the append-only audit chain. The store sees opaque bytes only; these tests
//! use made-up ones.

use tutela_store::{NewAuditEntry, NewRecord, RecordPatch, StoredIdentifier, StoredSubject};

use crate::support::on_each_engine;

fn subject(id: &str, key_id: &str) -> StoredSubject {
    StoredSubject {
        id: id.to_string(),
        wrapped_key: format!("wrapped-{id}").into_bytes(),
        key_id: key_id.to_string(),
        created_at: 100,
    }
}

fn record(subject: &str, purpose: &str, category: &str, deadline: Option<i64>) -> NewRecord {
    NewRecord {
        subject_id: subject.to_string(),
        purpose: purpose.to_string(),
        category: category.to_string(),
        payload: vec![1, 2, 3, 0, 255],
        source: "test".into(),
        collected_at: 100,
        anchor_at: deadline.map(|_| 100),
        deadline,
        legal_hold: false,
        restricted: false,
    }
}

/// A stand-in for the real chain hash: any deterministic function of the inputs will do here.
fn fake_hash(prev: &[u8; 32], seq: i64, e: &NewAuditEntry) -> [u8; 32] {
    let mut h = *prev;
    h[0] = h[0].wrapping_add(seq as u8);
    h[1] = e.action.len() as u8;
    h[31] = h[31].wrapping_add(1);
    h
}

fn entry(action: &str) -> NewAuditEntry {
    NewAuditEntry {
        time_ms: 1_000,
        actor: "test".into(),
        action: action.into(),
        purpose: "support".into(),
        subject_commitment: Some([7; 32]),
        details: "{}".into(),
    }
}

#[tokio::test]
async fn subjects_identifiers_and_records_round_trip_with_deadline_filter() {
    on_each_engine(|store| async move {
        let mut tx = store.vault_begin().await.unwrap();
        tx.insert_subjects(&[subject("s1", "k1"), subject("s2", "k1")])
            .await
            .unwrap();
        tx.insert_identifiers(&[
            StoredIdentifier {
                blind_index: vec![1; 32],
                subject_id: "s1".into(),
                kind: "email".into(),
                created_at: 100,
            },
            StoredIdentifier {
                blind_index: vec![2; 32],
                subject_id: "s1".into(),
                kind: "phone".into(),
                created_at: 101,
            },
        ])
        .await
        .unwrap();
        // 1,200 records for s1 (over the insert chunk size), a few for s2.
        let mut many: Vec<NewRecord> = (0..1200)
            .map(|i| {
                let mut r = record("s1", "support", "support_messages", Some(1_000 + i));
                r.payload = (i as u32).to_be_bytes().to_vec();
                r
            })
            .collect();
        many.push(record("s2", "customer_accounts", "email", None));
        let ids = tx.insert_records(&many, 100).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(ids.len(), 1201);
        assert!(ids.windows(2).all(|w| w[0] < w[1]));

        // Ids match their records.
        let r = store
            .vault_record("s1", ids[700], 0)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r.payload, 700u32.to_be_bytes().to_vec());
        assert_eq!(
            (r.purpose.as_str(), r.deadline, r.updated_at),
            ("support", Some(1_700), 100)
        );
        assert!(
            store
                .vault_record("s2", ids[700], 0)
                .await
                .unwrap()
                .is_none(),
            "records are per subject"
        );

        // Lookups by blind index; unknown indexes are simply absent.
        let found = store
            .vault_subjects_by_index(&[vec![2; 32], vec![9; 32]])
            .await
            .unwrap();
        assert_eq!(found, vec![(vec![2; 32], "s1".to_string())]);
        let kinds: Vec<String> = store
            .vault_identifiers("s1")
            .await
            .unwrap()
            .into_iter()
            .map(|i| i.kind)
            .collect();
        assert_eq!(kinds, ["email", "phone"]);
        assert_eq!(
            store.vault_subject("s1").await.unwrap().unwrap(),
            subject("s1", "k1")
        );
        assert_eq!(
            store
                .vault_subjects(&["s2".into(), "nope".into()])
                .await
                .unwrap(),
            vec![subject("s2", "k1")]
        );

        // Expired records are never read: at now = 1,500 the first 501 are gone.
        assert_eq!(
            store.vault_records("s1", None, 1_500).await.unwrap().len(),
            699
        );
        assert!(
            store
                .vault_record("s1", ids[0], 1_500)
                .await
                .unwrap()
                .is_none()
        );
        // A NULL deadline never expires.
        assert_eq!(
            store
                .vault_records("s2", Some(&["customer_accounts".to_string()]), i64::MAX)
                .await
                .unwrap()
                .len(),
            1
        );
        assert!(
            store
                .vault_records("s2", Some(&["support".to_string()]), 0)
                .await
                .unwrap()
                .is_empty()
        );
        let counts = store.vault_expired_counts(1_500).await.unwrap();
        assert_eq!(counts.get("support"), Some(&501));
        assert_eq!(store.vault_counts().await.unwrap(), (2, 2, 1201));

        // A duplicate blind index is refused.
        let mut tx = store.vault_begin().await.unwrap();
        let dup = StoredIdentifier {
            blind_index: vec![1; 32],
            subject_id: "s2".into(),
            kind: "email".into(),
            created_at: 1,
        };
        assert!(tx.insert_identifiers(&[dup]).await.is_err());
    })
    .await;
}

#[tokio::test]
async fn updates_anchors_events_and_legal_hold() {
    on_each_engine(|store| async move {
        let mut tx = store.vault_begin().await.unwrap();
        tx.insert_subject(&subject("s1", "k1")).await.unwrap();
        let ids = tx
            .insert_records(
                &[
                    record("s1", "customer_accounts", "email", None),
                    record("s1", "customer_accounts", "invoices", None),
                    record("s1", "recruitment", "resume", Some(500)),
                ],
                100,
            )
            .await
            .unwrap();
        // Contract end starts the clock of the named categories only.
        let n = tx
            .set_anchor(
                "s1",
                "customer_accounts",
                &["email".into()],
                200,
                Some(900),
                false,
                150,
            )
            .await
            .unwrap();
        assert_eq!(n, 1);
        // Last contact only moves forward.
        assert_eq!(
            tx.set_anchor(
                "s1",
                "recruitment",
                &["resume".into()],
                50,
                Some(450),
                true,
                150
            )
            .await
            .unwrap(),
            0
        );
        assert_eq!(
            tx.set_anchor(
                "s1",
                "recruitment",
                &["resume".into()],
                300,
                Some(800),
                true,
                150
            )
            .await
            .unwrap(),
            1
        );
        tx.record_event("s1", "recruitment", "last_contact", 300, true)
            .await
            .unwrap();
        tx.record_event("s1", "recruitment", "last_contact", 100, true)
            .await
            .unwrap();
        tx.record_event("s1", "customer_accounts", "contract_ended", 200, false)
            .await
            .unwrap();
        tx.record_event("s1", "customer_accounts", "contract_ended", 190, false)
            .await
            .unwrap();
        assert!(
            tx.update_record(
                "s1",
                ids[1],
                &RecordPatch {
                    payload: Some(vec![9]),
                    legal_hold: Some(true),
                    restricted: None
                },
                160
            )
            .await
            .unwrap()
        );
        assert!(
            !tx.update_record(
                "s2",
                ids[1],
                &RecordPatch {
                    restricted: Some(true),
                    ..Default::default()
                },
                160
            )
            .await
            .unwrap()
        );
        tx.commit().await.unwrap();

        let events = store.vault_events(&["s1".into()]).await.unwrap();
        assert_eq!(
            events[&("s1".into(), "recruitment".into(), "last_contact".into())],
            300
        );
        assert_eq!(
            events[&(
                "s1".into(),
                "customer_accounts".into(),
                "contract_ended".into()
            )],
            190
        );
        let all = store.vault_records("s1", None, 0).await.unwrap();
        let email = all.iter().find(|r| r.id == ids[0]).unwrap();
        assert_eq!(
            (email.anchor_at, email.deadline, email.updated_at),
            (Some(200), Some(900), 150)
        );
        let invoices = all.iter().find(|r| r.id == ids[1]).unwrap();
        assert_eq!(
            (
                invoices.payload.clone(),
                invoices.legal_hold,
                invoices.deadline
            ),
            (vec![9], true, None)
        );
        assert_eq!(
            all.iter().find(|r| r.id == ids[2]).unwrap().deadline,
            Some(800)
        );

        // Past its deadline a held record is still readable (the hold suspends the deadline)
        // and never purged; lifting the hold makes it expire.
        let mut tx = store.vault_begin().await.unwrap();
        tx.set_anchor(
            "s1",
            "customer_accounts",
            &["invoices".into()],
            200,
            Some(300),
            false,
            160,
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        assert!(
            store
                .vault_record("s1", ids[1], 1_000)
                .await
                .unwrap()
                .is_some()
        );
        assert!(
            store
                .vault_expired_counts(1_000)
                .await
                .unwrap()
                .get("customer_accounts")
                .is_some_and(|n| *n == 1)
        );
        let mut tx = store.vault_begin().await.unwrap();
        assert!(
            tx.update_record(
                "s1",
                ids[1],
                &RecordPatch {
                    legal_hold: Some(false),
                    ..Default::default()
                },
                170
            )
            .await
            .unwrap()
        );
        tx.commit().await.unwrap();
        assert!(
            store
                .vault_record("s1", ids[1], 1_000)
                .await
                .unwrap()
                .is_none()
        );
    })
    .await;
}

#[tokio::test]
async fn purge_deletes_expired_records_in_batches_and_shreds_empty_subjects() {
    on_each_engine(|store| async move {
        let mut tx = store.vault_begin().await.unwrap();
        tx.insert_subjects(&[subject("a", "k"), subject("b", "k")])
            .await
            .unwrap();
        tx.insert_identifiers(&[StoredIdentifier {
            blind_index: vec![3; 32],
            subject_id: "a".into(),
            kind: "email".into(),
            created_at: 1,
        }])
        .await
        .unwrap();
        let mut held = record("b", "support", "support_messages", Some(10));
        held.legal_hold = true;
        tx.insert_records(
            &[
                record("a", "audience_statistics", "page_url", Some(10)),
                record("a", "audience_statistics", "page_url", Some(20)),
                record("a", "support", "email", Some(30)),
                held,
                record("b", "support", "email", Some(10_000)),
            ],
            1,
        )
        .await
        .unwrap();
        tx.record_event("a", "support", "last_contact", 5, true)
            .await
            .unwrap();
        tx.commit().await.unwrap();

        let mut tx = store.vault_begin().await.unwrap();
        let first = tx.purge_expired(100, 2).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(first.records, 2);
        assert_eq!(first.subjects_shredded, 0);
        let mut tx = store.vault_begin().await.unwrap();
        let second = tx.purge_expired(100, 2).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(second.records, 1);
        assert_eq!(second.per_purpose.get("support"), Some(&1));
        assert_eq!(second.subjects_shredded, 1, "subject a has nothing left");
        // a: key, identifiers and events gone; b: held record and live record remain.
        assert!(store.vault_subject("a").await.unwrap().is_none());
        assert!(
            store
                .vault_subjects_by_index(&[vec![3; 32]])
                .await
                .unwrap()
                .is_empty()
        );
        assert!(store.vault_events(&["a".into()]).await.unwrap().is_empty());
        assert_eq!(store.vault_counts().await.unwrap(), (1, 0, 2));
        let mut tx = store.vault_begin().await.unwrap();
        assert_eq!(tx.purge_expired(100, 2).await.unwrap().records, 0);
        // Erasure-style deletion and shredding.
        let ids: Vec<i64> = tx
            .all_records("b")
            .await
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(tx.delete_records("b", &ids).await.unwrap(), 2);
        assert_eq!(
            tx.shred_if_empty(&["b".into(), "zz".into()]).await.unwrap(),
            1
        );
        tx.commit().await.unwrap();
        assert_eq!(store.vault_counts().await.unwrap(), (0, 0, 0));
        assert!(store.vault_flush_erased().await.unwrap());
    })
    .await;
}

#[tokio::test]
async fn rewrap_is_compare_and_set() {
    on_each_engine(|store| async move {
        let mut tx = store.vault_begin().await.unwrap();
        tx.insert_subjects(&[
            subject("a", "old"),
            subject("b", "old"),
            subject("c", "new"),
        ])
        .await
        .unwrap();
        tx.commit().await.unwrap();
        let todo = store.vault_subjects_to_rewrap("new", 10).await.unwrap();
        assert_eq!(
            todo.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert!(
            store
                .vault_rewrap_subject("a", b"wrapped-a", b"rewrapped-a", "new")
                .await
                .unwrap()
        );
        // A stale old value does not overwrite.
        assert!(
            !store
                .vault_rewrap_subject("b", b"something else", b"x", "new")
                .await
                .unwrap()
        );
        let counts = store.vault_key_counts().await.unwrap();
        assert_eq!(counts.get("new"), Some(&2));
        assert_eq!(counts.get("old"), Some(&1));
        assert_eq!(
            store.vault_subject("a").await.unwrap().unwrap().wrapped_key,
            b"rewrapped-a"
        );
    })
    .await;
}

#[tokio::test]
async fn audit_appends_chain_from_the_head_even_when_concurrent() {
    on_each_engine(|store| async move {
        assert_eq!(store.audit_head().await.unwrap(), (0, vec![0; 32]));
        let last = store
            .append_audit(&[entry("write"), entry("read")], fake_hash)
            .await
            .unwrap();
        assert_eq!(last, 2);
        let mut tx = store.vault_begin().await.unwrap();
        assert_eq!(
            tx.append_audit(&[entry("erase")], fake_hash).await.unwrap(),
            3
        );
        drop(tx); // rolled back: nothing appended
        let last = store
            .append_audit(&[entry("purge")], fake_hash)
            .await
            .unwrap();
        assert_eq!(last, 3);
        let rows = store.audit_entries(0, 10).await.unwrap();
        assert_eq!(
            rows.iter().map(|r| r.action.as_str()).collect::<Vec<_>>(),
            ["write", "read", "purge"]
        );
        // Each hash chains on the previous one, and the head is the last.
        let mut prev = [0u8; 32];
        for r in &rows {
            let e = NewAuditEntry {
                time_ms: r.time_ms,
                actor: r.actor.clone(),
                action: r.action.clone(),
                purpose: r.purpose.clone(),
                subject_commitment: r
                    .subject_commitment
                    .as_ref()
                    .map(|c| c.as_slice().try_into().unwrap()),
                details: r.details.clone(),
            };
            prev = fake_hash(&prev, r.seq, &e);
            assert_eq!(r.hash, prev.to_vec());
        }
        assert_eq!(store.audit_head().await.unwrap(), (3, prev.to_vec()));
        assert_eq!(store.audit_entries(2, 10).await.unwrap().len(), 1);
        assert_eq!(store.audit_entries_for(&[7; 32]).await.unwrap().len(), 3);
        assert!(store.audit_entries_for(&[8; 32]).await.unwrap().is_empty());

        // Concurrent appends never fork the chain.
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let s = store.clone();
            tasks.push(tokio::spawn(async move {
                s.append_audit(&[entry("read")], fake_hash).await.unwrap()
            }));
        }
        let mut seqs = Vec::new();
        for t in tasks {
            seqs.push(t.await.unwrap());
        }
        seqs.sort_unstable();
        assert_eq!(seqs, (4..=11).collect::<Vec<_>>());

        // (That the table refuses UPDATE and DELETE is tested in tutela-vault's tests, which
        // hold a raw connection to both engines.)
    })
    .await;
}

/// SQLite's purge path: expired ids are listed from the deadline index in rounds (a cursor
/// carries on where a round stopped; held records are listed but never deleted), then deleted
/// by id with per-purpose counts, and subjects left empty are shredded.
#[tokio::test]
async fn sqlite_purge_lists_expired_ids_in_rounds_and_deletes_by_id() {
    let t = crate::support::TestStore::sqlite().await;
    let store = &t.store;
    let mut tx = store.vault_begin().await.unwrap();
    tx.insert_subjects(&[subject("a", "k"), subject("b", "k")])
        .await
        .unwrap();
    tx.insert_identifiers(&[StoredIdentifier {
        blind_index: vec![9; 32],
        subject_id: "a".into(),
        kind: "email".into(),
        created_at: 100,
    }])
    .await
    .unwrap();
    let mut held = record("b", "support", "email", Some(40));
    held.legal_hold = true;
    let ids = tx
        .insert_records(
            &[
                record("a", "support", "email", Some(50)),
                record("a", "recruitment", "resume", Some(30)),
                held,
                record("b", "support", "email", Some(50)),
                record("b", "support", "email", Some(500)),
                record("a", "support", "email", None),
            ],
            100,
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();

    // Rounds of 2 in (deadline, id) order: 30, then 40 (held) and 50, then the other 50.
    let (r1, c1) = store.vault_expired_ids(100, None, 2).await.unwrap();
    assert_eq!(r1, vec![ids[1], ids[2]]);
    assert_eq!(c1, Some((40, ids[2])));
    let (r2, c2) = store.vault_expired_ids(100, c1, 2).await.unwrap();
    assert_eq!(r2, vec![ids[0], ids[3]]);
    let (r3, c3) = store.vault_expired_ids(100, c2, 2).await.unwrap();
    assert!(r3.is_empty());
    assert_eq!(c3, None);

    let mut all: Vec<i64> = r1.into_iter().chain(r2).collect();
    all.sort_unstable();
    let mut tx = store.vault_begin().await.unwrap();
    let done = tx.purge_ids_sqlite(&all, 100).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(done.records, 3, "the held record is listed but kept");
    assert_eq!(done.per_purpose.get("support"), Some(&2));
    assert_eq!(done.per_purpose.get("recruitment"), Some(&1));
    assert_eq!(
        done.subjects_shredded, 0,
        "a still waits for an anchor event"
    );
    assert_eq!(store.vault_counts().await.unwrap(), (2, 1, 3));

    // A batch of held records deletes nothing.
    let mut tx = store.vault_begin().await.unwrap();
    let none = tx.purge_ids_sqlite(&[ids[2]], 100).await.unwrap();
    assert_eq!(none.records, 0);
    tx.commit().await.unwrap();
    // When a's last record expires, the purge shreds a (key and identifier).
    let (r, _) = store.vault_expired_ids(1_000, None, 10).await.unwrap();
    assert_eq!(
        r,
        vec![ids[2], ids[4]],
        "a's last record waits for an anchor"
    );
    let mut tx = store.vault_begin().await.unwrap();
    tx.set_anchor(
        "a",
        "support",
        &["email".into()],
        100,
        Some(200),
        false,
        100,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let (r, _) = store.vault_expired_ids(1_000, None, 10).await.unwrap();
    let mut tx = store.vault_begin().await.unwrap();
    let done = tx.purge_ids_sqlite(&r, 1_000).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(done.records, 2);
    assert_eq!(done.subjects_shredded, 1);
    assert!(store.vault_subject("a").await.unwrap().is_none());
    assert!(
        store
            .vault_subjects_by_index(&[vec![9; 32]])
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.vault_counts().await.unwrap(), (1, 0, 1));
}

/// One SQLite purge batch, on the vault writer thread (`fast`) or through sqlx: expired records
/// go except those on legal hold, including a hold placed after the ids were listed; counts are
/// per purpose; a subject left without records is shredded (key, identifiers, events), one
/// with records left is not.
async fn purge_batch_scenario(fast: bool) -> tutela_store::PurgedBatch {
    let t = crate::support::TestStore::sqlite().await;
    let store = &t.store;
    let mut tx = store.vault_begin().await.unwrap();
    tx.insert_subjects(&[subject("a", "k"), subject("b", "k"), subject("c", "k")])
        .await
        .unwrap();
    let ident = |ix: u8, s: &str| StoredIdentifier {
        blind_index: vec![ix; 32],
        subject_id: s.into(),
        kind: "email".into(),
        created_at: 100,
    };
    tx.insert_identifiers(&[ident(9, "a"), ident(8, "c"), ident(7, "c")])
        .await
        .unwrap();
    tx.record_event("c", "support", "last_contact", 90, false)
        .await
        .unwrap();
    let mut held = record("b", "support", "email", Some(40));
    held.legal_hold = true;
    let ids = tx
        .insert_records(
            &[
                record("a", "support", "email", Some(50)),
                record("a", "recruitment", "resume", Some(30)),
                record("a", "support", "email", None),
                held,
                record("b", "support", "email", Some(50)),
                record("b", "support", "email", Some(500)),
                record("b", "support", "email", Some(60)),
                record("c", "support", "email", Some(20)),
                record("c", "support", "email", Some(70)),
            ],
            100,
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let (listed, cursor) = store.vault_expired_ids(100, None, 100).await.unwrap();
    assert_eq!(cursor, None);
    assert_eq!(listed.len(), 7, "held records are listed too");
    // A hold placed after the listing wins.
    let mut tx = store.vault_begin().await.unwrap();
    let patch = RecordPatch {
        legal_hold: Some(true),
        ..RecordPatch::default()
    };
    assert!(tx.update_record("b", ids[6], &patch, 0).await.unwrap());
    tx.commit().await.unwrap();

    let mut tx = if fast {
        store.vault_batch_begin().await.unwrap()
    } else {
        store.vault_batch_begin_portable().await.unwrap()
    };
    assert_eq!(tx.is_pipelined(), fast);
    let done = tx.purge_ids_sqlite(listed, 100).await.unwrap();
    tx.append_audit(&[entry("purge")], fake_hash).await.unwrap();
    tx.commit().await.unwrap();
    // Left: a's record without deadline, b's two held records and its unexpired one.
    assert_eq!(store.vault_counts().await.unwrap(), (2, 1, 4));
    assert!(store.vault_subject("c").await.unwrap().is_none());
    assert!(
        store
            .vault_subjects_by_index(&[vec![8; 32], vec![7; 32]])
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .vault_events(&["c".to_string()])
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.vault_subjects_by_index(&[vec![9; 32]]).await.unwrap(),
        vec![(vec![9; 32], "a".to_string())]
    );
    for id in [ids[2], ids[3], ids[5], ids[6]] {
        let s = if id == ids[2] { "a" } else { "b" };
        assert!(store.vault_record(s, id, 0).await.unwrap().is_some());
    }
    // Nothing left to delete: an empty batch.
    let mut tx = if fast {
        store.vault_batch_begin().await.unwrap()
    } else {
        store.vault_batch_begin_portable().await.unwrap()
    };
    let again = tx.purge_ids_sqlite(ids.clone(), 100).await.unwrap();
    assert_eq!(again, tutela_store::PurgedBatch::default());
    drop(tx);
    assert_eq!(store.vault_counts().await.unwrap(), (2, 1, 4));
    done
}

#[tokio::test]
async fn sqlite_purge_batch_on_the_writer_thread_matches_the_sqlx_path() {
    let fast = purge_batch_scenario(true).await;
    let portable = purge_batch_scenario(false).await;
    assert_eq!(fast, portable);
    assert_eq!(fast.records, 5);
    assert_eq!(fast.subjects_shredded, 1, "c only: a and b keep records");
    assert_eq!(
        fast.per_purpose.into_iter().collect::<Vec<_>>(),
        vec![("recruitment".to_string(), 1), ("support".to_string(), 4)]
    );
}

/// Writes one bulk batch (two subjects, identifiers, records over the chunk sizes, audit
/// entries) through `tx`; returns the record ids and the audit sequence number reached.
async fn write_bulk(mut tx: tutela_store::BatchTx, tag: &str) -> (Vec<i64>, i64) {
    let s1 = format!("{tag}1");
    let s2 = format!("{tag}2");
    assert!(
        tx.subjects_by_index(vec![vec![1; 32]])
            .await
            .unwrap()
            .is_empty()
    );
    tx.insert_subjects(vec![subject(&s1, "k1"), subject(&s2, "k1")])
        .await
        .unwrap();
    let mut idx = vec![tag.as_bytes()[0]; 32];
    tx.insert_identifiers(vec![StoredIdentifier {
        blind_index: idx.clone(),
        subject_id: s1.clone(),
        kind: "email".into(),
        created_at: 100,
    }])
    .await
    .unwrap();
    idx[0] = 0;
    tx.insert_identifiers(vec![StoredIdentifier {
        blind_index: idx,
        subject_id: s2.clone(),
        kind: "phone".into(),
        created_at: 101,
    }])
    .await
    .unwrap();
    // Written in several calls, as `Vault::write_batch` hands them over.
    for part in 0..3 {
        let rows: Vec<NewRecord> = (0..700)
            .map(|i| {
                let mut r = record(
                    if i % 2 == 0 { &s1 } else { &s2 },
                    "support",
                    "support_messages",
                    if i % 3 == 0 { None } else { Some(1_000 + i) },
                );
                r.payload = format!("{part}-{i}").into_bytes();
                r.legal_hold = i % 5 == 0;
                r
            })
            .collect();
        tx.insert_records(rows, 100).await.unwrap();
    }
    // Reads inside the transaction see what it wrote.
    let mut found = tx.subjects(vec![s1.clone(), s2.clone()]).await.unwrap();
    found.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(found, vec![subject(&s1, "k1"), subject(&s2, "k1")]);
    assert!(tx.events(vec![s1.clone()]).await.unwrap().is_empty());
    let seq = tx
        .append_audit(&[entry("write"), entry("subject_created")], fake_hash)
        .await
        .unwrap();
    let ids = tx.record_ids(2100).await.unwrap();
    tx.commit().await.unwrap();
    (ids, seq)
}

#[tokio::test]
async fn bulk_batches_store_the_same_rows_on_both_paths() {
    on_each_engine(|store| async move {
        // The engine's own path (on SQLite: the writer thread), then the portable one.
        let (fast_ids, seq1) = write_bulk(store.vault_batch_begin().await.unwrap(), "a").await;
        let (port_ids, seq2) =
            write_bulk(store.vault_batch_begin_portable().await.unwrap(), "b").await;
        assert_eq!(
            (seq1, seq2),
            (2, 4),
            "the chain continues across both paths"
        );
        for ids in [&fast_ids, &port_ids] {
            assert_eq!(ids.len(), 2100);
            assert!(ids.windows(2).all(|w| w[0] < w[1]));
        }
        // Record by record, both paths stored the same thing.
        for (k, (a, b)) in fast_ids.iter().zip(&port_ids).enumerate() {
            let sa = if k % 2 == 0 { "a1" } else { "a2" };
            let sb = if k % 2 == 0 { "b1" } else { "b2" };
            let ra = store.vault_record(sa, *a, 0).await.unwrap().expect("a");
            let rb = store.vault_record(sb, *b, 0).await.unwrap().expect("b");
            assert_eq!(ra.payload, format!("{}-{}", k / 700, k % 700).into_bytes());
            assert_eq!(
                (
                    ra.payload,
                    ra.purpose,
                    ra.category,
                    ra.source,
                    ra.collected_at
                ),
                (
                    rb.payload,
                    rb.purpose,
                    rb.category,
                    rb.source,
                    rb.collected_at
                )
            );
            assert_eq!(
                (
                    ra.anchor_at,
                    ra.deadline,
                    ra.legal_hold,
                    ra.restricted,
                    ra.updated_at
                ),
                (
                    rb.anchor_at,
                    rb.deadline,
                    rb.legal_hold,
                    rb.restricted,
                    rb.updated_at
                )
            );
        }
        for (s, kind) in [
            ("a1", "email"),
            ("a2", "phone"),
            ("b1", "email"),
            ("b2", "phone"),
        ] {
            let ids = store.vault_identifiers(s).await.unwrap();
            assert_eq!(ids.len(), 1);
            assert_eq!(ids[0].kind, kind);
        }
        // The audit entries, hashes included, chain from one path to the other.
        let rows = store.audit_entries(0, 10).await.unwrap();
        assert_eq!(rows.len(), 4);
        let mut prev = [0u8; 32];
        for (i, r) in rows.iter().enumerate() {
            assert_eq!(r.seq, i as i64 + 1);
            let e = entry(&r.action);
            assert_eq!(
                (&r.actor, &r.purpose, &r.details, r.time_ms),
                (&e.actor, &e.purpose, &e.details, e.time_ms)
            );
            assert_eq!(r.subject_commitment.as_deref(), Some(&[7u8; 32][..]));
            prev = fake_hash(&prev, r.seq, &e);
            assert_eq!(r.hash, prev.to_vec());
        }
        assert_eq!(store.audit_head().await.unwrap(), (4, prev.to_vec()));
    })
    .await;
}

#[tokio::test]
async fn bulk_batch_errors_roll_everything_back() {
    on_each_engine(|store| async move {
        let mut tx = store.vault_batch_begin().await.unwrap();
        tx.insert_subjects(vec![subject("s1", "k1")]).await.unwrap();
        tx.insert_identifiers(vec![StoredIdentifier {
            blind_index: vec![1; 32],
            subject_id: "s1".into(),
            kind: "email".into(),
            created_at: 100,
        }])
        .await
        .unwrap();
        tx.insert_records(vec![record("s1", "support", "email", None)], 100)
            .await
            .unwrap();
        tx.commit().await.unwrap();

        // A second writer registers the same blind index: a unique violation, reported (on
        // SQLite, where the insert is queued, by a later call) and nothing of the transaction
        // is kept.
        let mut tx = store.vault_batch_begin().await.unwrap();
        tx.insert_subjects(vec![subject("s2", "k1")]).await.unwrap();
        let err = match tx
            .insert_identifiers(vec![StoredIdentifier {
                blind_index: vec![1; 32],
                subject_id: "s2".into(),
                kind: "email".into(),
                created_at: 100,
            }])
            .await
        {
            Err(e) => e,
            Ok(()) => {
                tx.insert_records(vec![record("s2", "support", "email", None)], 100)
                    .await
                    .unwrap();
                let e = tx
                    .record_ids(1)
                    .await
                    .expect_err("the queued insert failed");
                // Later calls of the failed transaction fail too, and commit refuses.
                assert!(tx.subjects(vec!["s1".into()]).await.is_err());
                assert!(tx.commit().await.is_err());
                e
            }
        };
        assert!(err.is_unique_violation(), "{err}");
        assert!(store.vault_subject("s2").await.unwrap().is_none());
        assert_eq!(store.vault_counts().await.unwrap(), (1, 1, 1));

        // A transaction dropped without commit leaves nothing either, and the next one works.
        let mut tx = store.vault_batch_begin().await.unwrap();
        tx.insert_subjects(vec![subject("s3", "k1")]).await.unwrap();
        tx.append_audit(&[entry("write")], fake_hash).await.unwrap();
        drop(tx);
        let mut tx = store.vault_batch_begin().await.unwrap();
        tx.insert_subjects(vec![subject("s4", "k1")]).await.unwrap();
        assert_eq!(
            tx.append_audit(&[entry("write")], fake_hash).await.unwrap(),
            1
        );
        tx.commit().await.unwrap();
        assert!(store.vault_subject("s3").await.unwrap().is_none());
        assert!(store.vault_subject("s4").await.unwrap().is_some());
        assert_eq!(store.audit_head().await.unwrap().0, 1);
    })
    .await;
}

/// Identifiers, records and events must name an existing subject, and a subject cannot be
/// deleted while anything names it. On SQLite foreign keys say so; on PostgreSQL statement-level
/// triggers (migration 0012), also on the bulk path's `COPY`.
#[tokio::test]
async fn references_to_subjects_are_enforced() {
    on_each_engine(|store| async move {
        let pg = store.engine() == tutela_store::Engine::Postgres;
        let mut tx = store.vault_begin().await.unwrap();
        tx.insert_subjects(&[subject("s1", "k1"), subject("s2", "k1")])
            .await
            .unwrap();
        tx.insert_records(&[record("s1", "support", "email", None)], 1)
            .await
            .unwrap();
        tx.commit().await.unwrap();

        // A record, an identifier or an event for a subject that does not exist.
        let mut tx = store.vault_begin().await.unwrap();
        assert!(
            tx.insert_records(
                &[
                    record("s1", "support", "email", None),
                    record("nope", "support", "email", None)
                ],
                1
            )
            .await
            .is_err()
        );
        drop(tx);
        let mut tx = store.vault_begin().await.unwrap();
        assert!(
            tx.insert_identifiers(&[StoredIdentifier {
                blind_index: vec![5; 32],
                subject_id: "nope".into(),
                kind: "email".into(),
                created_at: 1,
            }])
            .await
            .is_err()
        );
        drop(tx);
        let mut tx = store.vault_begin().await.unwrap();
        assert!(
            tx.record_event("nope", "support", "last_contact", 5, true)
                .await
                .is_err()
        );
        drop(tx);
        // The bulk path (COPY on PostgreSQL): the error comes back at the latest on commit.
        let failed = {
            // (The transaction is dropped, rolling back, at the end of this block.)
            let mut tx = store.vault_batch_begin().await.unwrap();
            match tx
                .insert_records(vec![record("nope", "support", "email", None)], 1)
                .await
            {
                Err(_) => true,
                Ok(()) => match tx.record_ids(1).await {
                    Err(_) => true,
                    Ok(_) => tx.commit().await.is_err(),
                },
            }
        };
        assert!(failed, "a bulk record for an unknown subject was accepted");
        assert_eq!(store.vault_counts().await.unwrap(), (2, 0, 1));

        // A subject that still has a record cannot go; one without can.
        let delete = |id: &'static str| {
            let store = store.clone();
            async move {
                sqlx::query("DELETE FROM vault_subjects WHERE id = $1")
                    .bind(id)
                    .execute(store.pool_for_tests())
                    .await
            }
        };
        assert!(delete("s1").await.is_err());
        assert_eq!(delete("s2").await.unwrap().rows_affected(), 1);
        // Records, identifiers and the subject deleted in one transaction: fine.
        let mut tx = store.vault_begin().await.unwrap();
        let ids: Vec<i64> = tx
            .all_records("s1")
            .await
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(tx.delete_records("s1", &ids).await.unwrap(), 1);
        assert_eq!(tx.shred_if_empty(&["s1".into()]).await.unwrap(), 1);
        tx.commit().await.unwrap();
        assert_eq!(store.vault_counts().await.unwrap(), (0, 0, 0));

        if pg {
            // PostgreSQL: a subject reference never changes.
            let mut tx = store.vault_begin().await.unwrap();
            tx.insert_subjects(&[subject("s3", "k1"), subject("s4", "k1")])
                .await
                .unwrap();
            tx.insert_records(&[record("s3", "support", "email", None)], 1)
                .await
                .unwrap();
            tx.commit().await.unwrap();
            for sql in [
                "UPDATE vault_records SET subject_id = 's4' WHERE subject_id = 's3'",
                "UPDATE vault_subjects SET id = 's5' WHERE id = 's4'",
            ] {
                let r = sqlx::query(sql).execute(store.pool_for_tests()).await;
                assert!(r.is_err(), "{sql}");
            }
            // Other updates are not affected.
            sqlx::query("UPDATE vault_records SET deadline = 5 WHERE subject_id = 's3'")
                .execute(store.pool_for_tests())
                .await
                .unwrap();
        }
    })
    .await;
}

/// PostgreSQL's purge: a legal hold committed while a batch waits for the record's row lock
/// wins (the record is picked but kept, the counts leave it out, its subject is not shredded);
/// batches of different slices run at the same time on two connections, each batch starting at
/// the previous one's last deadline, and together delete exactly the expired records and shred
/// exactly the emptied subjects.
#[tokio::test]
async fn pg_purge_slices_run_concurrently_and_a_hold_placed_during_a_batch_wins() {
    use tutela_store::PurgeSlice;
    let Some(t) = crate::support::TestStore::postgres().await else {
        return;
    };
    let store = t.store.clone();
    // 40 subjects with 3 expired records each (deadlines 10, 20, 30); s00 also has one waiting
    // for an anchor event, so it is never emptied. Each subject has an identifier, s01 an event.
    let subjects: Vec<String> = (0..40).map(|i| format!("s{i:02}")).collect();
    let mut tx = store.vault_begin().await.unwrap();
    tx.insert_subjects(&subjects.iter().map(|s| subject(s, "k")).collect::<Vec<_>>())
        .await
        .unwrap();
    tx.insert_identifiers(
        &subjects
            .iter()
            .enumerate()
            .map(|(i, s)| StoredIdentifier {
                blind_index: vec![i as u8; 32],
                subject_id: s.clone(),
                kind: "email".into(),
                created_at: 1,
            })
            .collect::<Vec<_>>(),
    )
    .await
    .unwrap();
    tx.record_event("s01", "support", "last_contact", 5, true)
        .await
        .unwrap();
    let mut records = Vec::new();
    for s in &subjects {
        records.push(record(s, "support", "email", Some(10)));
        records.push(record(s, "audience_statistics", "page_url", Some(20)));
        records.push(record(s, "support", "email", Some(30)));
    }
    records.push(record("s00", "support", "email", None));
    let ids = tx.insert_records(&records, 1).await.unwrap();
    tx.commit().await.unwrap();

    // 1. A hold on s02's first record, not yet committed when the batch starts.
    let held = ids[6];
    let mut hold = store.pool_for_tests().begin().await.unwrap();
    sqlx::query("UPDATE vault_records SET legal_hold = TRUE WHERE id = $1")
        .bind(held)
        .execute(&mut *hold)
        .await
        .unwrap();
    let hold_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *hold)
        .await
        .unwrap();
    let purge = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut tx = store.vault_begin().await.unwrap();
            // Deadline 10 only: one record of each subject.
            let step = tx
                .purge_expired_slice(10, 1000, PurgeSlice::ALL)
                .await
                .unwrap();
            tx.commit().await.unwrap();
            step
        })
    };
    // Wait until the batch waits for the hold's row lock (a backend blocked by this very
    // transaction: other tests on the same server cannot be mistaken for it), then commit the
    // hold.
    let mut waited = false;
    for _ in 0..500 {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))",
        )
        .bind(hold_pid)
        .fetch_one(store.pool_for_tests())
        .await
        .unwrap();
        if n > 0 {
            waited = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(waited, "the purge batch never waited for the hold's lock");
    hold.commit().await.unwrap();
    let step = purge.await.unwrap();
    assert_eq!(step.picked, 40, "the held record was picked");
    assert_eq!(step.batch.records, 39, "but not deleted");
    assert_eq!(step.batch.per_purpose.get("support"), Some(&39));
    assert_eq!(step.batch.subjects_shredded, 0);
    assert_eq!(step.last_deadline, Some(10));
    let kept = store.vault_record("s02", held, 0).await.unwrap().unwrap();
    assert!(kept.legal_hold);

    // 2. Two slices at the same time, 7 records per batch, until each picks a short batch.
    let run = |part: u32| {
        let store = store.clone();
        async move {
            let mut total = tutela_store::PurgedBatch::default();
            let mut from_deadline = None;
            loop {
                let mut tx = store.vault_begin().await.unwrap();
                let slice = PurgeSlice {
                    part,
                    parts: 2,
                    from_deadline,
                };
                let step = tx.purge_expired_slice(100, 7, slice).await.unwrap();
                tx.commit().await.unwrap();
                for (p, n) in step.batch.per_purpose {
                    *total.per_purpose.entry(p).or_default() += n;
                }
                total.records += step.batch.records;
                total.subjects_shredded += step.batch.subjects_shredded;
                if let Some(d) = step.last_deadline {
                    assert!(from_deadline.is_none_or(|f| d >= f), "deadline order");
                }
                from_deadline = step.last_deadline.or(from_deadline);
                if step.picked < 7 {
                    return total;
                }
            }
        }
    };
    let (a, b) = tokio::join!(run(0), run(1));
    assert!(a.records > 0 && b.records > 0, "both slices had work");
    assert_eq!(
        a.records + b.records,
        80,
        "the two later records of each subject"
    );
    assert_eq!(
        a.per_purpose.get("support").copied().unwrap_or(0)
            + b.per_purpose.get("support").copied().unwrap_or(0),
        40
    );
    // Emptied: every subject but s00 (a record without deadline) and s02 (the held one).
    assert_eq!(a.subjects_shredded + b.subjects_shredded, 38);
    assert_eq!(store.vault_counts().await.unwrap(), (2, 2, 2));
    assert!(store.vault_subject("s00").await.unwrap().is_some());
    assert!(store.vault_subject("s02").await.unwrap().is_some());
    assert!(store.vault_subject("s01").await.unwrap().is_none());
    assert!(
        store
            .vault_events(&["s01".to_string()])
            .await
            .unwrap()
            .is_empty()
    );
    t.cleanup().await;
}

/// Writes one subject wrapped by `key_id` through `tx`, then waits for the answer (queued
/// inserts report their error by the next call that waits) and commits.
async fn write_subject(
    mut tx: tutela_store::BatchTx,
    id: &str,
    key_id: &str,
) -> tutela_store::Result<()> {
    tx.insert_subjects(vec![subject(id, key_id)]).await?;
    tx.record_ids(0).await?;
    tx.commit().await
}

/// Migration 0015: once the database knows which master key wraps new subject keys, it
/// refuses a subject (or a re-wrap) under any other key, on every write path, in the writer's
/// own transaction, with an error the vault recognises; nothing of that transaction is kept.
#[tokio::test]
async fn the_database_refuses_subject_keys_wrapped_by_a_stale_master_key() {
    on_each_engine(|store| async move {
        // Nothing recorded yet: every key is accepted (databases of before the migration).
        assert_eq!(store.vault_wrapping_key().await.unwrap(), None);
        write_subject(store.vault_batch_begin().await.unwrap(), "a", "old")
            .await
            .unwrap();
        // A node records its key; another key is then not recorded over it.
        assert_eq!(
            store
                .vault_switch_wrapping_key(&[], "old", 1)
                .await
                .unwrap(),
            "old"
        );
        assert_eq!(
            store
                .vault_switch_wrapping_key(&[], "other", 2)
                .await
                .unwrap(),
            "old"
        );
        assert_eq!(
            store
                .vault_switch_wrapping_key(&["x".into()], "other", 2)
                .await
                .unwrap(),
            "old"
        );
        write_subject(store.vault_batch_begin().await.unwrap(), "b", "old")
            .await
            .unwrap();
        // The rotation's switch.
        assert_eq!(
            store
                .vault_switch_wrapping_key(&["old".into()], "new", 3)
                .await
                .unwrap(),
            "new"
        );
        assert_eq!(
            store.vault_wrapping_key().await.unwrap().as_deref(),
            Some("new")
        );

        // Every path refuses "old" now.
        let err = write_subject(store.vault_batch_begin().await.unwrap(), "c1", "old")
            .await
            .expect_err("native bulk path");
        assert!(err.is_stale_master_key(), "{err}");
        let err = write_subject(
            store.vault_batch_begin_portable().await.unwrap(),
            "c2",
            "old",
        )
        .await
        .expect_err("portable bulk path");
        assert!(err.is_stale_master_key(), "{err}");
        let mut tx = store.vault_begin().await.unwrap();
        let err = tx
            .insert_subject(&subject("c3", "old"))
            .await
            .expect_err("single insert");
        assert!(err.is_stale_master_key(), "{err}");
        drop(tx);
        let mut tx = store.vault_begin().await.unwrap();
        let err = tx
            .insert_subjects(&[subject("c4", "new"), subject("c5", "old")])
            .await
            .expect_err("one stale row among good ones");
        assert!(err.is_stale_master_key(), "{err}");
        drop(tx);
        // A re-wrap to a stale key is refused too; to the current one it goes through.
        let err = store
            .vault_rewrap_subject("a", b"wrapped-a", b"x", "old2")
            .await
            .expect_err("re-wrap under a stale key");
        assert!(err.is_stale_master_key(), "{err}");
        assert!(
            store
                .vault_rewrap_subject("a", b"wrapped-a", b"rewrapped-a", "new")
                .await
                .unwrap()
        );
        for id in ["c1", "c2", "c3", "c4", "c5"] {
            assert!(
                store.vault_subject(id).await.unwrap().is_none(),
                "{id} was kept"
            );
        }
        // The current key is accepted on every path.
        write_subject(store.vault_batch_begin().await.unwrap(), "d1", "new")
            .await
            .unwrap();
        write_subject(
            store.vault_batch_begin_portable().await.unwrap(),
            "d2",
            "new",
        )
        .await
        .unwrap();
        let counts = store.vault_key_counts().await.unwrap();
        assert_eq!(counts.get("new"), Some(&3));
        assert_eq!(counts.get("old"), Some(&1));
        // Other errors are not mistaken for it.
        let mut tx = store.vault_begin().await.unwrap();
        let err = tx
            .insert_subject(&subject("d1", "new"))
            .await
            .expect_err("duplicate");
        assert!(
            !err.is_stale_master_key() && err.is_unique_violation(),
            "{err}"
        );
    })
    .await;
}

/// The switch and a writer that checked the old key: the switch waits for the writer to
/// commit, so the writer's subject is there for the re-wrap that follows the switch; a writer
/// that comes after the switch is refused. (Without the wait, on PostgreSQL a subject could be
/// committed under the old key after the re-wrap had listed the last ones.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_switch_waits_for_writers_that_checked_the_old_key() {
    on_each_engine(|store| async move {
        store
            .vault_switch_wrapping_key(&[], "old", 1)
            .await
            .unwrap();
        let mut tx = store.vault_batch_begin().await.unwrap();
        tx.insert_subjects(vec![subject("w1", "old")])
            .await
            .unwrap();
        tx.record_ids(0).await.unwrap();
        let switch = {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .vault_switch_wrapping_key(&["old".into()], "new", 2)
                    .await
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(!switch.is_finished(), "the switch must wait for the writer");
        tx.commit().await.unwrap();
        assert_eq!(switch.await.unwrap().unwrap(), "new");
        let todo = store.vault_subjects_to_rewrap("new", 10).await.unwrap();
        assert_eq!(
            todo.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
            ["w1"]
        );
        let err = write_subject(store.vault_batch_begin().await.unwrap(), "w2", "old")
            .await
            .expect_err("after the switch");
        assert!(err.is_stale_master_key(), "{err}");
    })
    .await;
}
