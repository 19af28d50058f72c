//! The `rusqlite` connections of the writer threads (analytics `sqlite_fast.rs`, vault
//! `vault_batch.rs`, consent `consent_fast.rs`) and of their checkpointers, opened with the
//! settings of the pool's connections (see `Store::connect`): WAL, a 5 s busy timeout, foreign
//! keys, `secure_delete`, and the durability each writer asks for.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

/// `PRAGMA synchronous` of a writer connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Synchronous {
    /// The WAL is synced at every commit: an acknowledged write survives a power cut.
    Full,
    /// Synced at checkpoints only: commits survive a crash of the process, the last ones may
    /// not survive one of the operating system.
    Normal,
}

/// Opens `path` read-write (no SQLite mutex: each connection stays on one thread at a time)
/// with the common settings, then runs `extra` (more `PRAGMA`s, may be empty).
pub(crate) fn open(path: &Path, sync: Synchronous, extra: &str) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.execute_batch(match sync {
        Synchronous::Full => {
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000; \
             PRAGMA foreign_keys = ON; PRAGMA secure_delete = ON;"
        }
        Synchronous::Normal => {
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000; \
             PRAGMA foreign_keys = ON; PRAGMA secure_delete = ON;"
        }
    })?;
    if !extra.is_empty() {
        conn.execute_batch(extra)?;
    }
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_get_the_common_settings() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        std::fs::File::create(&path).unwrap();
        for (sync, want) in [(Synchronous::Full, 2), (Synchronous::Normal, 1)] {
            let conn = open(&path, sync, "PRAGMA cache_size = -1234;").unwrap();
            let get = |p: &str| -> i64 {
                conn.query_row(&format!("PRAGMA {p}"), [], |r| r.get(0))
                    .unwrap()
            };
            assert_eq!(get("synchronous"), want);
            assert_eq!(get("foreign_keys"), 1);
            assert_eq!(get("secure_delete"), 1);
            assert_eq!(get("busy_timeout"), 5000);
            assert_eq!(get("cache_size"), -1234);
            let mode: String = conn
                .query_row("PRAGMA journal_mode", [], |r| r.get(0))
                .unwrap();
            assert_eq!(mode, "wal");
        }
    }
}
