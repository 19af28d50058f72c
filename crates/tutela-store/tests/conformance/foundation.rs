//! Foundation: migrations, register versions, leases.

use tutela_store::{Engine, Store};

use crate::support::{TestStore, on_each_engine};

#[tokio::test]
async fn ping_and_engine() {
    on_each_engine(|store| async move {
        store.ping().await.unwrap();
        assert!(matches!(store.engine(), Engine::Sqlite | Engine::Postgres));
    })
    .await;
}

#[tokio::test]
async fn register_deadlines_state_lists_the_versions_since_the_last_applied_one() {
    on_each_engine(|store: Store| async move {
        let s = store.register_deadlines_state().await.unwrap();
        assert!(s.latest.is_none() && !s.latest_applied && s.since_applied.is_empty());
        let (v1, _) = store
            .record_register_version("aaa", None, "{\"a\":1}", 1_000)
            .await
            .unwrap();
        // Never applied: no history to compare with.
        let s = store.register_deadlines_state().await.unwrap();
        assert_eq!(s.latest.as_ref().map(|v| v.id), Some(v1.id));
        assert!(!s.latest_applied && s.since_applied.is_empty());
        store
            .mark_register_deadlines_applied(v1.id, 1_001)
            .await
            .unwrap();
        let s = store.register_deadlines_state().await.unwrap();
        assert!(s.latest_applied);
        assert_eq!(s.since_applied, vec![(v1.id, "{\"a\":1}".to_string())]);
        // Two versions recorded, neither applied: both are history beside the applied one.
        let (v2, _) = store
            .record_register_version("bbb", None, "{\"a\":2}", 2_000)
            .await
            .unwrap();
        let (v3, _) = store
            .record_register_version("ccc", None, "{\"a\":3}", 3_000)
            .await
            .unwrap();
        let s = store.register_deadlines_state().await.unwrap();
        assert_eq!(s.latest.as_ref().map(|v| v.id), Some(v3.id));
        assert!(!s.latest_applied);
        let ids: Vec<i64> = s.since_applied.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, vec![v1.id, v2.id, v3.id]);
        store
            .mark_register_deadlines_applied(v3.id, 3_001)
            .await
            .unwrap();
        let s = store.register_deadlines_state().await.unwrap();
        assert!(s.latest_applied);
        assert_eq!(s.since_applied.len(), 1);
    })
    .await;
}

#[tokio::test]
async fn register_versions_are_recorded_only_on_change() {
    on_each_engine(|store: Store| async move {
        assert!(store.register_versions().await.unwrap().is_empty());
        let (v1, created) = store
            .record_register_version("aaa", Some("r1"), "{\"a\":1}", 1_000)
            .await
            .unwrap();
        assert!(created);
        assert_eq!(
            (v1.hash.as_str(), v1.revision.as_deref(), v1.recorded_at),
            ("aaa", Some("r1"), 1_000)
        );

        // Same content again: nothing new, and the date stays the first one.
        let (again, created) = store
            .record_register_version("aaa", Some("r1"), "{\"a\":1}", 2_000)
            .await
            .unwrap();
        assert!(!created);
        assert_eq!(again, v1);

        // A change is recorded, and going back to an older content is a change too.
        let (v2, created) = store
            .record_register_version("bbb", Some("r2"), "{\"a\":2}", 3_000)
            .await
            .unwrap();
        assert!(created);
        let (v3, created) = store
            .record_register_version("aaa", Some("r1"), "{\"a\":1}", 4_000)
            .await
            .unwrap();
        assert!(created);
        assert!(v3.id > v2.id && v2.id > v1.id);

        let all = store.register_versions().await.unwrap();
        assert_eq!(
            all.iter().map(|v| v.recorded_at).collect::<Vec<_>>(),
            vec![4_000, 3_000, 1_000]
        );
        assert_eq!(
            store
                .register_version_content(v2.id)
                .await
                .unwrap()
                .as_deref(),
            Some("{\"a\":2}")
        );
        assert_eq!(store.register_version_content(9_999).await.unwrap(), None);
    })
    .await;
}

#[tokio::test]
async fn leases_exclude_other_holders_until_expiry() {
    on_each_engine(|store| async move {
        assert!(
            store
                .try_lease("retention", "node-a", 100, 60)
                .await
                .unwrap()
        );
        // The holder renews; another node is refused while the lease runs.
        assert!(
            store
                .try_lease("retention", "node-a", 120, 60)
                .await
                .unwrap()
        );
        assert!(
            !store
                .try_lease("retention", "node-b", 150, 60)
                .await
                .unwrap()
        );
        // After expiry another node takes it.
        assert!(
            store
                .try_lease("retention", "node-b", 181, 60)
                .await
                .unwrap()
        );
        assert!(
            !store
                .try_lease("retention", "node-a", 182, 60)
                .await
                .unwrap()
        );
        // Released leases are free at once.
        store.release_lease("retention", "node-b").await.unwrap();
        assert!(
            store
                .try_lease("retention", "node-a", 183, 60)
                .await
                .unwrap()
        );
        // Leases are per job.
        assert!(store.try_lease("other", "node-b", 183, 60).await.unwrap());
    })
    .await;
}

#[tokio::test]
async fn reopening_applies_no_migration_twice_and_refuses_edited_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_data_dir(dir.path()).await.unwrap();
    store.close().await;
    // Reopening is fine.
    let store = Store::open_data_dir(dir.path()).await.unwrap();
    // Tamper with the recorded checksum: the next start must refuse to run.
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    store.close().await;
    let url = format!(
        "sqlite://{}",
        dir.path().join(tutela_store::SQLITE_FILE).display()
    );
    let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
    sqlx::query("UPDATE tutela_migrations SET checksum = 'edited' WHERE version = 1")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    let err = Store::open_data_dir(dir.path()).await.unwrap_err();
    assert!(err.to_string().contains("must never be edited"), "{err}");
}

#[tokio::test]
async fn sqlite_runs_in_wal_with_secure_delete() {
    let t = TestStore::sqlite().await;
    use sqlx::Row;
    let _ = &t.store;
    let path = t.store.sqlite_path().unwrap().to_path_buf();
    assert!(path.ends_with(tutela_store::SQLITE_FILE));
    let url = format!("sqlite://{}", path.display());
    use sqlx::Connection;
    let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
    let mode: String = sqlx::query("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .unwrap()
        .get(0);
    assert_eq!(mode.to_lowercase(), "wal");
    conn.close().await.unwrap();
    t.cleanup().await;
}

#[tokio::test]
async fn unsupported_url_is_refused_without_echoing_secrets() {
    let err = Store::open_url("mysql://user:hunter2@db/x")
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("unsupported"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}
