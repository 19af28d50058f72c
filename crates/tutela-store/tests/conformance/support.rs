//! Runs each conformance test against every engine available.

use std::future::Future;

use tutela_store::Store;

/// A store under test, with whatever keeps it alive (temporary directory, PostgreSQL schema).
pub struct TestStore {
    pub store: Store,
    _dir: Option<tempfile::TempDir>,
    pg: Option<(String, String)>,
}

impl TestStore {
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = Store::open_data_dir(dir.path())
            .await
            .expect("open SQLite store");
        TestStore {
            store,
            _dir: Some(dir),
            pg: None,
        }
    }

    /// A store in a fresh PostgreSQL schema, or None (with a message) when no server is configured.
    pub async fn postgres() -> Option<Self> {
        let Ok(base) = std::env::var("TUTELA_TEST_POSTGRES_URL") else {
            if std::env::var_os("CI").is_some() {
                panic!(
                    "CI is set but TUTELA_TEST_POSTGRES_URL is not: the PostgreSQL suite may not skip in CI"
                );
            }
            eprintln!("skipped on PostgreSQL: set TUTELA_TEST_POSTGRES_URL=postgres://… to run it");
            return None;
        };
        let schema = format!(
            "t_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        admin(
            &base,
            &format!("DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"),
        )
        .await;
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}options[search_path]={schema}");
        let store = Store::open_url(&url).await.expect("open PostgreSQL store");
        Some(TestStore {
            store,
            _dir: None,
            pg: Some((base, schema)),
        })
    }

    /// Drops the PostgreSQL schema (SQLite's directory goes with the value).
    pub async fn cleanup(self) {
        self.store.close().await;
        if let Some((base, schema)) = self.pg {
            admin(&base, &format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).await;
        }
    }
}

static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

async fn admin(base: &str, sql: &str) {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(base)
        .await
        .expect("connect to PostgreSQL");
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&mut conn)
        .await
        .expect("administer test schema");
}

/// Runs `test` on SQLite, then on PostgreSQL when available.
pub async fn on_each_engine<F, Fut>(test: F)
where
    F: Fn(Store) -> Fut,
    Fut: Future<Output = ()>,
{
    let sqlite = TestStore::sqlite().await;
    test(sqlite.store.clone()).await;
    sqlite.cleanup().await;
    if let Some(pg) = TestStore::postgres().await {
        test(pg.store.clone()).await;
        pg.cleanup().await;
    }
}
