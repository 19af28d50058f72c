//! Console operators: accounts, second factor, sessions, one-time setup links and sign-in events.
//!
//! The store holds no secret in usable form: passwords as Argon2id PHC strings, recovery codes,
//! session ids and setup tokens as SHA-256 hashes (computed by `tutela-crypto`). The TOTP secret
//! must be readable to check codes; the console stores it sealed under the vault's
//! operator-secrets key (see ARCHITECTURE.md), so this module only sees ciphertext.
//!
//! Roles and session stages are plain strings here; their meaning lives in `tutela-domain` and
//! `tutela-http`.

use sqlx::Row;

use crate::{Engine, Result, Store};

/// A console operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operator {
    pub id: String,
    /// Lower-case login name, unique.
    pub login: String,
    pub display_name: String,
    /// `admin`, `dpo`, `support` or `analyst`.
    pub role: String,
    /// Argon2id PHC string; None until the operator chose a password (invitation pending).
    pub password_hash: Option<String>,
    /// TOTP secret, sealed by the caller; None until the operator enrolled a second factor.
    pub totp_secret: Option<Vec<u8>>,
    /// The last TOTP time step accepted (each step is accepted once).
    pub totp_last_step: Option<i64>,
    /// Preferred console language (`en`, `fr`), if chosen.
    pub language: Option<String>,
    pub created_at: i64,
    pub password_changed_at: Option<i64>,
    pub disabled_at: Option<i64>,
}

impl Operator {
    pub fn is_disabled(&self) -> bool {
        self.disabled_at.is_some()
    }
}

impl std::fmt::Debug for SessionRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionRow")
            .field("operator_id", &self.operator_id)
            .field("stage", &self.stage)
            .field("created_at", &self.created_at)
            .field("last_seen_at", &self.last_seen_at)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A console session (found by the hash of its id).
#[derive(Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub id_hash: Vec<u8>,
    pub operator_id: String,
    /// `second_factor` (password accepted, code awaited), `enroll` (second factor must be set
    /// up first) or `active`.
    pub stage: String,
    /// A TOTP secret being enrolled, until the operator confirms it with a code.
    pub pending_totp: Option<Vec<u8>>,
    /// Wrong second-factor codes typed in this session.
    pub factor_failures: i64,
    pub created_at: i64,
    pub last_seen_at: i64,
    /// Absolute expiry.
    pub expires_at: i64,
}

/// One entry of the console's security log (sign-ins, account changes). Holds no secret and no
/// login name typed by an unknown visitor: only the id of a known operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperatorEvent {
    pub id: i64,
    pub at: i64,
    pub operator_id: Option<String>,
    pub event: String,
    pub detail: Option<String>,
}

/// What a valid setup link is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SetupLink {
    /// Creating the first administrator (no operator exists).
    FirstAdmin,
    /// Choosing the password of an invited operator.
    Invitation { operator_id: String },
}

const OPERATOR_COLUMNS: &str = "id, login, display_name, role, password_hash, totp_secret, \
     totp_last_step, language, created_at, password_changed_at, disabled_at";
const SESSION_COLUMNS: &str = "id_hash, operator_id, stage, pending_totp, factor_failures, \
     created_at, last_seen_at, expires_at";

fn operator_from_row(row: &sqlx::any::AnyRow) -> Result<Operator> {
    Ok(Operator {
        id: row.try_get("id")?,
        login: row.try_get("login")?,
        display_name: row.try_get("display_name")?,
        role: row.try_get("role")?,
        password_hash: row.try_get("password_hash")?,
        totp_secret: row.try_get("totp_secret")?,
        totp_last_step: row.try_get("totp_last_step")?,
        language: row.try_get("language")?,
        created_at: row.try_get("created_at")?,
        password_changed_at: row.try_get("password_changed_at")?,
        disabled_at: row.try_get("disabled_at")?,
    })
}

fn session_from_row(row: &sqlx::any::AnyRow) -> Result<SessionRow> {
    Ok(SessionRow {
        id_hash: row.try_get("id_hash")?,
        operator_id: row.try_get("operator_id")?,
        stage: row.try_get("stage")?,
        pending_totp: row.try_get("pending_totp")?,
        factor_failures: row.try_get("factor_failures")?,
        created_at: row.try_get("created_at")?,
        last_seen_at: row.try_get("last_seen_at")?,
        expires_at: row.try_get("expires_at")?,
    })
}

async fn insert_operator_in<'c, E>(exec: E, op: &Operator) -> Result<()>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    sqlx::query(
        "INSERT INTO operators (id, login, display_name, role, password_hash, totp_secret, \
         totp_last_step, language, created_at, password_changed_at, disabled_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(&op.id)
    .bind(&op.login)
    .bind(&op.display_name)
    .bind(&op.role)
    .bind(&op.password_hash)
    .bind(&op.totp_secret)
    .bind(op.totp_last_step)
    .bind(&op.language)
    .bind(op.created_at)
    .bind(op.password_changed_at)
    .bind(op.disabled_at)
    .execute(exec)
    .await?;
    Ok(())
}

impl Store {
    // --- operators -----------------------------------------------------------------------------

    /// Adds an operator. Fails when the login is taken.
    pub async fn insert_operator(&self, op: &Operator) -> Result<()> {
        insert_operator_in(self.pool(), op).await
    }

    pub async fn operator(&self, id: &str) -> Result<Option<Operator>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {OPERATOR_COLUMNS} FROM operators WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(operator_from_row).transpose()
    }

    pub async fn operator_by_login(&self, login: &str) -> Result<Option<Operator>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {OPERATOR_COLUMNS} FROM operators WHERE login = $1"
        )))
        .bind(login)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(operator_from_row).transpose()
    }

    /// Every operator, by login.
    pub async fn operators(&self) -> Result<Vec<Operator>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {OPERATOR_COLUMNS} FROM operators ORDER BY login"
        )))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(operator_from_row).collect()
    }

    pub async fn operator_count(&self) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) FROM operators")
            .fetch_one(self.pool())
            .await?;
        Ok(row.try_get(0)?)
    }

    /// Replaces an operator's password hash.
    pub async fn set_operator_password(&self, id: &str, hash: &str, now: i64) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE operators SET password_hash = $1, password_changed_at = $2 WHERE id = $3",
        )
        .bind(hash)
        .bind(now)
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn set_operator_language(&self, id: &str, language: &str) -> Result<()> {
        sqlx::query("UPDATE operators SET language = $1 WHERE id = $2")
            .bind(language)
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Enrols a second factor: stores the TOTP secret and replaces the recovery codes, in one
    /// transaction. `first_step` is the step of the code that confirmed it (not accepted again).
    pub async fn enroll_totp(
        &self,
        id: &str,
        secret: &[u8],
        first_step: i64,
        recovery_hashes: &[[u8; 32]],
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE operators SET totp_secret = $1, totp_last_step = $2 WHERE id = $3")
            .bind(secret)
            .bind(first_step)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM operator_recovery_codes WHERE operator_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        for h in recovery_hashes {
            sqlx::query(
                "INSERT INTO operator_recovery_codes (operator_id, code_hash) VALUES ($1, $2)",
            )
            .bind(id)
            .bind(&h[..])
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Removes an operator's second factor and recovery codes and ends their sessions (an
    /// administrator's "reset two-factor"). Returns false when no such operator exists.
    pub async fn reset_operator_totp(&self, id: &str) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let r = sqlx::query(
            "UPDATE operators SET totp_secret = NULL, totp_last_step = NULL WHERE id = $1",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM operator_recovery_codes WHERE operator_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM operator_sessions WHERE operator_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(r.rows_affected() == 1)
    }

    /// Accepts TOTP time step `step` for the operator if it is newer than the last one accepted.
    /// Atomic, so a code is accepted once even when several nodes see it at the same moment.
    pub async fn accept_totp_step(&self, id: &str, step: i64) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE operators SET totp_last_step = $1 WHERE id = $2 \
             AND totp_secret IS NOT NULL AND (totp_last_step IS NULL OR totp_last_step < $1)",
        )
        .bind(step)
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Uses up a recovery code (by its hash). False when it is unknown or already used.
    pub async fn use_recovery_code(&self, id: &str, hash: &[u8; 32], now: i64) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE operator_recovery_codes SET used_at = $1 \
             WHERE operator_id = $2 AND code_hash = $3 AND used_at IS NULL",
        )
        .bind(now)
        .bind(id)
        .bind(&hash[..])
        .execute(self.pool())
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// How many unused recovery codes the operator has left.
    pub async fn recovery_codes_left(&self, id: &str) -> Result<i64> {
        let row = sqlx::query(
            "SELECT COUNT(*) FROM operator_recovery_codes WHERE operator_id = $1 AND used_at IS NULL",
        )
        .bind(id)
        .fetch_one(self.pool())
        .await?;
        Ok(row.try_get(0)?)
    }

    /// Disables an operator and ends their sessions. False when no enabled operator has that id.
    pub async fn disable_operator(&self, id: &str, now: i64) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let r = sqlx::query(
            "UPDATE operators SET disabled_at = $1 WHERE id = $2 AND disabled_at IS NULL",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM operator_sessions WHERE operator_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM operator_setup_tokens WHERE operator_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(r.rows_affected() == 1)
    }

    // --- sessions ------------------------------------------------------------------------------

    pub async fn insert_session(&self, s: &SessionRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO operator_sessions (id_hash, operator_id, stage, pending_totp, \
             factor_failures, created_at, last_seen_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&s.id_hash)
        .bind(&s.operator_id)
        .bind(&s.stage)
        .bind(&s.pending_totp)
        .bind(s.factor_failures)
        .bind(s.created_at)
        .bind(s.last_seen_at)
        .bind(s.expires_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn session(&self, id_hash: &[u8; 32]) -> Result<Option<SessionRow>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SESSION_COLUMNS} FROM operator_sessions WHERE id_hash = $1"
        )))
        .bind(&id_hash[..])
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(session_from_row).transpose()
    }

    /// Notes activity (at most once a minute, to spare writes).
    pub async fn touch_session(&self, id_hash: &[u8; 32], now: i64) -> Result<()> {
        sqlx::query(
            "UPDATE operator_sessions SET last_seen_at = $1 WHERE id_hash = $2 AND last_seen_at < $3",
        )
        .bind(now)
        .bind(&id_hash[..])
        .bind(now - 60)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Moves a session to another stage (and sets or clears the secret being enrolled).
    pub async fn set_session_stage(
        &self,
        id_hash: &[u8; 32],
        stage: &str,
        pending_totp: Option<&[u8]>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE operator_sessions SET stage = $1, pending_totp = $2, factor_failures = 0 \
             WHERE id_hash = $3",
        )
        .bind(stage)
        .bind(pending_totp)
        .bind(&id_hash[..])
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Counts a wrong second-factor code in a session; returns the new count.
    pub async fn add_factor_failure(&self, id_hash: &[u8; 32]) -> Result<i64> {
        let row = sqlx::query(
            "UPDATE operator_sessions SET factor_failures = factor_failures + 1 \
             WHERE id_hash = $1 RETURNING factor_failures",
        )
        .bind(&id_hash[..])
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?.unwrap_or(i64::MAX))
    }

    pub async fn delete_session(&self, id_hash: &[u8; 32]) -> Result<()> {
        sqlx::query("DELETE FROM operator_sessions WHERE id_hash = $1")
            .bind(&id_hash[..])
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Ends every session of an operator ("log out everywhere"); returns how many there were.
    pub async fn delete_operator_sessions(&self, operator_id: &str) -> Result<u64> {
        let r = sqlx::query("DELETE FROM operator_sessions WHERE operator_id = $1")
            .bind(operator_id)
            .execute(self.pool())
            .await?;
        Ok(r.rows_affected())
    }

    /// Ends every session of an operator except one (after a password change).
    pub async fn delete_other_sessions(&self, operator_id: &str, keep: &[u8; 32]) -> Result<u64> {
        let r =
            sqlx::query("DELETE FROM operator_sessions WHERE operator_id = $1 AND id_hash <> $2")
                .bind(operator_id)
                .bind(&keep[..])
                .execute(self.pool())
                .await?;
        Ok(r.rows_affected())
    }

    /// Deletes sessions past their absolute expiry or idle since before `idle_before`.
    pub async fn purge_sessions(&self, now: i64, idle_before: i64) -> Result<u64> {
        let r = sqlx::query(
            "DELETE FROM operator_sessions WHERE expires_at <= $1 OR last_seen_at < $2",
        )
        .bind(now)
        .bind(idle_before)
        .execute(self.pool())
        .await?;
        Ok(r.rows_affected())
    }

    /// Active sessions of an operator.
    pub async fn session_count(&self, operator_id: &str) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) FROM operator_sessions WHERE operator_id = $1")
            .bind(operator_id)
            .fetch_one(self.pool())
            .await?;
        Ok(row.try_get(0)?)
    }

    // --- setup links ---------------------------------------------------------------------------

    /// Stores a setup token (by hash). `operator_id` None: the link creates the first
    /// administrator. Expired links are deleted on the way.
    pub async fn insert_setup_token(
        &self,
        hash: &[u8; 32],
        operator_id: Option<&str>,
        now: i64,
        expires_at: i64,
    ) -> Result<()> {
        sqlx::query("DELETE FROM operator_setup_tokens WHERE expires_at <= $1")
            .bind(now)
            .execute(self.pool())
            .await?;
        sqlx::query(
            "INSERT INTO operator_setup_tokens (token_hash, operator_id, created_at, expires_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(&hash[..])
        .bind(operator_id)
        .bind(now)
        .bind(expires_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// What an unused, unexpired setup link is for (without using it up).
    pub async fn setup_link(&self, hash: &[u8; 32], now: i64) -> Result<Option<SetupLink>> {
        let row = sqlx::query(
            "SELECT operator_id FROM operator_setup_tokens \
             WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2",
        )
        .bind(&hash[..])
        .bind(now)
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let operator_id: Option<String> = row.try_get(0)?;
        Ok(Some(match operator_id {
            None => SetupLink::FirstAdmin,
            Some(operator_id) => SetupLink::Invitation { operator_id },
        }))
    }

    /// Uses a first-administrator link: creates `admin` if, and only if, the link is valid and
    /// no operator exists yet (checked in the same transaction, under a table lock on PostgreSQL,
    /// so two nodes cannot both create one). Returns false otherwise.
    pub async fn create_first_admin(
        &self,
        hash: &[u8; 32],
        admin: &Operator,
        now: i64,
    ) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        if self.engine() == Engine::Postgres {
            sqlx::query("LOCK TABLE operators IN SHARE ROW EXCLUSIVE MODE")
                .execute(&mut *tx)
                .await?;
        }
        let count: i64 = sqlx::query("SELECT COUNT(*) FROM operators")
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        let used = sqlx::query(
            "UPDATE operator_setup_tokens SET used_at = $1 \
             WHERE token_hash = $2 AND operator_id IS NULL AND used_at IS NULL AND expires_at > $1",
        )
        .bind(now)
        .bind(&hash[..])
        .execute(&mut *tx)
        .await?;
        if count != 0 || used.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        insert_operator_in(&mut *tx, admin).await?;
        // Any other first-administrator link is void now.
        sqlx::query(
            "DELETE FROM operator_setup_tokens WHERE operator_id IS NULL AND used_at IS NULL",
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Uses an invitation link: sets the invited operator's password. Returns the operator id,
    /// or None when the link is not valid (unknown, used, expired, or the operator is disabled).
    pub async fn accept_invitation(
        &self,
        hash: &[u8; 32],
        password_hash: &str,
        now: i64,
    ) -> Result<Option<String>> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "UPDATE operator_setup_tokens SET used_at = $1 \
             WHERE token_hash = $2 AND operator_id IS NOT NULL AND used_at IS NULL AND expires_at > $1 \
             RETURNING operator_id",
        )
        .bind(now)
        .bind(&hash[..])
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(None);
        };
        let id: String = row.try_get(0)?;
        let r = sqlx::query(
            "UPDATE operators SET password_hash = $1, password_changed_at = $2 \
             WHERE id = $3 AND disabled_at IS NULL",
        )
        .bind(password_hash)
        .bind(now)
        .bind(&id)
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(None);
        }
        tx.commit().await?;
        Ok(Some(id))
    }

    // --- security log --------------------------------------------------------------------------

    pub async fn record_operator_event(
        &self,
        at: i64,
        operator_id: Option<&str>,
        event: &str,
        detail: Option<&str>,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO operator_events (at, operator_id, event, detail) VALUES ($1, $2, $3, $4)",
        )
        .bind(at)
        .bind(operator_id)
        .bind(event)
        .bind(detail)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The newest events (at most `limit`), older than event id `before` when given.
    pub async fn operator_events(
        &self,
        limit: i64,
        before: Option<i64>,
    ) -> Result<Vec<OperatorEvent>> {
        let rows = sqlx::query(
            "SELECT id, at, operator_id, event, detail FROM operator_events \
             WHERE id < $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(OperatorEvent {
                    id: row.try_get("id")?,
                    at: row.try_get("at")?,
                    operator_id: row.try_get("operator_id")?,
                    event: row.try_get("event")?,
                    detail: row.try_get("detail")?,
                })
            })
            .collect()
    }

    /// The newest event of a kind, if any.
    pub async fn last_operator_event(&self, event: &str) -> Result<Option<OperatorEvent>> {
        let row = sqlx::query(
            "SELECT id, at, operator_id, event, detail FROM operator_events \
             WHERE event = $1 ORDER BY id DESC LIMIT 1",
        )
        .bind(event)
        .fetch_optional(self.pool())
        .await?;
        row.map(|row| {
            Ok(OperatorEvent {
                id: row.try_get("id")?,
                at: row.try_get("at")?,
                operator_id: row.try_get("operator_id")?,
                event: row.try_get("event")?,
                detail: row.try_get("detail")?,
            })
        })
        .transpose()
    }

    /// When the retention job last deleted records, and how many it deleted then (read from the
    /// audit log, where each purge run appends one `retention_purge` entry per purpose).
    pub async fn last_retention_purge(&self) -> Result<Option<(i64, i64)>> {
        let row = sqlx::query(
            "SELECT time_ms FROM audit_log WHERE action = 'retention_purge' ORDER BY seq DESC LIMIT 1",
        )
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let time_ms: i64 = row.try_get(0)?;
        let rows = sqlx::query(
            "SELECT details FROM audit_log WHERE action = 'retention_purge' AND time_ms = $1",
        )
        .bind(time_ms)
        .fetch_all(self.pool())
        .await?;
        let mut records = 0i64;
        for r in rows {
            let details: String = r.try_get(0)?;
            // `{"records":N,…}` — written by the vault; a malformed entry counts as 0.
            records += details
                .split("\"records\":")
                .nth(1)
                .and_then(|rest| {
                    rest.split(|c: char| !c.is_ascii_digit())
                        .next()
                        .and_then(|n| n.parse::<i64>().ok())
                })
                .unwrap_or(0);
        }
        Ok(Some((time_ms / 1000, records)))
    }

    /// How many events of a kind happened since `since`.
    pub async fn count_operator_events(&self, event: &str, since: i64) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) FROM operator_events WHERE event = $1 AND at >= $2")
            .bind(event)
            .bind(since)
            .fetch_one(self.pool())
            .await?;
        Ok(row.try_get(0)?)
    }
}
