//! Per-engine schema migrations, embedded in the binary and applied at start.
//!
//! Each applied migration is recorded with a checksum of its text; a shipped migration that was
//! edited afterwards is refused, as is a database that a newer Tutela migrated further.

use sqlx::{AssertSqlSafe, Row};

use crate::{Engine, Result, Store, StoreError};

/// One migration: a version number, a name and the SQL that applies it.
#[derive(Clone, Copy, Debug)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

macro_rules! migrations {
    ($engine:literal: $($version:literal $name:literal),+ $(,)?) => {
        &[$(Migration {
            version: $version,
            name: $name,
            sql: include_str!(concat!("../migrations/", $engine, "/", $name, ".sql")),
        }),+]
    };
}

pub const MIGRATIONS_SQLITE: &[Migration] = migrations!("sqlite":
    1 "0001_foundation",
    2 "0002_api_tokens",
    3 "0003_vault",
    4 "0004_analytics",
    5 "0005_operators",
    6 "0006_consent",
    7 "0007_rights",
    8 "0008_rights_more",
    10 "0010_analytics_chunks",
    11 "0011_analytics_visitor_days_pk_only",
    13 "0013_analytics_visitor_watermark",
    15 "0015_vault_wrapping_key",
    16 "0016_register_deadlines_applied",
);
pub const MIGRATIONS_POSTGRES: &[Migration] = migrations!("postgres":
    1 "0001_foundation",
    2 "0002_api_tokens",
    3 "0003_vault",
    4 "0004_analytics",
    5 "0005_operators",
    6 "0006_consent",
    7 "0007_rights",
    8 "0008_rights_more",
    10 "0010_analytics_chunks",
    11 "0011_analytics_visitor_days_pk_only",
    12 "0012_vault_subject_refs",
    15 "0015_vault_wrapping_key",
    16 "0016_register_deadlines_applied",
);

/// An arbitrary constant that identifies Tutela's migration lock among PostgreSQL advisory locks.
const PG_MIGRATION_LOCK: i64 = 0x7475_7465_6c61;

pub(crate) async fn run(store: &Store) -> Result<()> {
    let migrations = match store.engine {
        Engine::Sqlite => MIGRATIONS_SQLITE,
        Engine::Postgres => MIGRATIONS_POSTGRES,
    };
    let mut conn = store.pool().acquire().await?;
    if store.engine == Engine::Postgres {
        // Nodes starting together wait for each other instead of racing.
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(PG_MIGRATION_LOCK)
            .execute(&mut *conn)
            .await?;
    }
    let result = apply(&mut conn, migrations).await;
    if store.engine == Engine::Postgres {
        let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(PG_MIGRATION_LOCK)
            .execute(&mut *conn)
            .await;
    }
    result
}

async fn apply(conn: &mut sqlx::AnyConnection, migrations: &[Migration]) -> Result<()> {
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS tutela_migrations (\
            version BIGINT PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL, \
            applied_at BIGINT NOT NULL)",
    )
    .execute(&mut *conn)
    .await?;
    let applied: Vec<(i64, String)> =
        sqlx::query("SELECT version, checksum FROM tutela_migrations ORDER BY version")
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, sqlx::Error>>()?;
    for (version, sum) in &applied {
        match migrations.iter().find(|m| m.version == *version) {
            None => return Err(StoreError::UnknownMigration(*version)),
            Some(m) if checksum(m.sql) != *sum => {
                return Err(StoreError::MigrationChanged {
                    version: m.version,
                    name: m.name.to_string(),
                });
            }
            Some(_) => {}
        }
    }
    for m in migrations {
        if applied.iter().any(|(v, _)| *v == m.version) {
            continue;
        }
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        sqlx::raw_sql(AssertSqlSafe(m.sql))
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO tutela_migrations (version, name, checksum, applied_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(m.version)
        .bind(m.name)
        .bind(checksum(m.sql))
        .bind(jiff::Timestamp::now().as_second())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        tracing::info!(version = m.version, name = m.name, "applied migration");
    }
    Ok(())
}

/// A small dependency-free checksum (FNV-1a, 64 bit) of a migration's text: it only has to notice
/// accidental edits, not resist an attacker who can write to the database anyway.
fn checksum(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use sqlx::Connection;

    use super::*;

    const A: Migration = Migration {
        version: 1,
        name: "0001_a",
        sql: "CREATE TABLE a (x BIGINT)",
    };
    const C: Migration = Migration {
        version: 3,
        name: "0003_c",
        sql: "CREATE TABLE c (x BIGINT)",
    };
    const G: Migration = Migration {
        version: 7,
        name: "0007_g",
        sql: "CREATE TABLE g (x BIGINT)",
    };

    async fn versions(conn: &mut sqlx::AnyConnection) -> Vec<i64> {
        sqlx::query("SELECT version FROM tutela_migrations ORDER BY version")
            .fetch_all(&mut *conn)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<i64, _>(0))
            .collect()
    }

    /// Branches own version numbers: a database may have 1 and 7 before a binary that also
    /// knows 3 arrives. The gap is fine, and 3 is applied later without touching 7.
    #[tokio::test]
    async fn versions_need_not_be_contiguous_and_late_lower_versions_apply() {
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect("sqlite::memory:")
            .await
            .unwrap();
        apply(&mut conn, &[A, G]).await.unwrap();
        assert_eq!(versions(&mut conn).await, vec![1, 7]);
        apply(&mut conn, &[A, C, G]).await.unwrap();
        assert_eq!(versions(&mut conn).await, vec![1, 3, 7]);
        // Idempotent.
        apply(&mut conn, &[A, C, G]).await.unwrap();
        // A binary that does not know 7 refuses the database rather than guessing.
        assert!(matches!(
            apply(&mut conn, &[A, C]).await,
            Err(StoreError::UnknownMigration(7))
        ));
    }
}
