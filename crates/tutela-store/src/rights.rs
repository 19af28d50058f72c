//! Rights requests: the stored side. Requests, what their requesters wrote (sealed), their
//! history, their execution steps and their identity-verification challenges.
//!
//! This module stores bytes and names: it never sees an identifier, an address or a free text
//! in clear (the rights service seals them and computes the blind index) and it does not know
//! the state machine (`tutela_domain::rights` decides; [`Store::update_rights_request`] only
//! refuses to overwrite a state that changed meanwhile).

use sqlx::Row;

use crate::{Result, Store};

/// A stored rights request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RightsRequestRow {
    pub id: String,
    pub kind: String,
    pub state: String,
    pub channel: String,
    pub lang: String,
    /// Keyed blind index of the requester's normalised identifier.
    pub requester_index: Vec<u8>,
    /// Sealed requester identity and contact.
    pub requester_sealed: Vec<u8>,
    /// Repeated requests merged into this one.
    pub repeats: i64,
    pub received_at: i64,
    pub due_at: i64,
    pub original_due_at: i64,
    pub extended_until: Option<i64>,
    pub extension_reasons: Option<String>,
    pub verified_at: Option<i64>,
    pub verification: Option<String>,
    pub replied_at: Option<i64>,
    pub purge_after: Option<i64>,
    pub rejection_ground: Option<String>,
    pub rejection_reasons: Option<String>,
    pub updated_at: i64,
}

/// What one submission said, sealed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RightsMessage {
    pub seq: i64,
    pub channel: String,
    pub received_at: i64,
    pub sealed: Vec<u8>,
}

/// One line of a request's history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RightsHistoryEntry {
    pub seq: i64,
    pub at: i64,
    pub event: String,
    pub state: String,
    pub actor: String,
    /// Hex SHA-256 chaining this line to the previous one (None on lines older than the chain).
    pub hash: Option<String>,
}

/// The result of checking a request's hash-chained history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryCheck {
    pub entries: usize,
    /// Lines written before the chain existed (they can only come first).
    pub unchained: usize,
    /// The sequence number of the first line whose hash does not match, if any.
    pub broken_at: Option<i64>,
    /// The hash of the last line: a commitment to the whole history.
    pub head: Option<String>,
}

impl HistoryCheck {
    pub fn intact(&self) -> bool {
        self.broken_at.is_none()
    }
}

/// The hash of a history line: SHA-256 over the previous line's hash and this line's fields,
/// each length-prefixed (no personal data goes in: ids, event names, states, actors, times).
pub fn history_hash(
    prev: Option<&str>,
    request_id: &str,
    seq: i64,
    at: i64,
    event: &str,
    state: &str,
    actor: &str,
) -> String {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    h.update(b"tutela/rights/history/v1\0");
    let seq = seq.to_string();
    let at = at.to_string();
    for part in [
        prev.unwrap_or(""),
        request_id,
        seq.as_str(),
        at.as_str(),
        event,
        state,
        actor,
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

/// What filing a request did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Filed {
    /// A new request with this id.
    Created(String),
    /// The same person already had an open request of this kind: the submission was added to
    /// it (`repeats` counts the merged submissions).
    Merged { id: String, repeats: i64 },
}

impl Filed {
    pub fn id(&self) -> &str {
        match self {
            Filed::Created(id) | Filed::Merged { id, .. } => id,
        }
    }
}

/// A change of status decided by the domain's state machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RightsStatusUpdate {
    pub state: String,
    /// Whether the new state is open (keeps the request's merge slot) or not (frees it).
    pub open: bool,
    pub due_at: i64,
    pub extended_until: Option<i64>,
    pub extension_reasons: Option<String>,
    pub verified_at: Option<i64>,
    pub verification: Option<String>,
    pub replied_at: Option<i64>,
    pub purge_after: Option<i64>,
    pub rejection_ground: Option<String>,
    pub rejection_reasons: Option<String>,
}

/// An execution step of a request on one source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RightsStep {
    pub request_id: String,
    pub source: String,
    pub action: String,
    /// `pending`, `running`, `done` or `failed` (gave up after the last attempt).
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub outcome: Option<String>,
    /// What an access step found, sealed by the rights service.
    pub result_sealed: Option<Vec<u8>>,
    pub created_at: i64,
    pub finished_at: Option<i64>,
}

/// A response package (sealed zip) and its download link's hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RightsPackage {
    pub id: String,
    pub request_id: String,
    pub token_hash: Vec<u8>,
    pub sealed: Vec<u8>,
    pub created_at: i64,
    pub expires_at: i64,
    pub downloads: i64,
}

/// An identity-verification challenge (hashes only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RightsChallenge {
    pub id: String,
    pub request_id: String,
    /// `identity` (verifying the request) or `download` (fresh check before a download).
    pub purpose: String,
    pub code_hash: Vec<u8>,
    pub link_hash: Vec<u8>,
    pub attempts: i64,
    pub max_attempts: i64,
    pub created_at: i64,
    pub expires_at: i64,
    pub consumed_at: Option<i64>,
}

const REQUEST_COLUMNS: &str = "id, kind, state, channel, lang, requester_index, requester_sealed, \
    repeats, received_at, due_at, original_due_at, extended_until, extension_reasons, verified_at, \
    verification, replied_at, purge_after, rejection_ground, rejection_reasons, updated_at";

fn request_from_row(row: &sqlx::any::AnyRow) -> Result<RightsRequestRow> {
    Ok(RightsRequestRow {
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        state: row.try_get("state")?,
        channel: row.try_get("channel")?,
        lang: row.try_get("lang")?,
        requester_index: row.try_get("requester_index")?,
        requester_sealed: row.try_get("requester_sealed")?,
        repeats: row.try_get("repeats")?,
        received_at: row.try_get("received_at")?,
        due_at: row.try_get("due_at")?,
        original_due_at: row.try_get("original_due_at")?,
        extended_until: row.try_get("extended_until")?,
        extension_reasons: row.try_get("extension_reasons")?,
        verified_at: row.try_get("verified_at")?,
        verification: row.try_get("verification")?,
        replied_at: row.try_get("replied_at")?,
        purge_after: row.try_get("purge_after")?,
        rejection_ground: row.try_get("rejection_ground")?,
        rejection_reasons: row.try_get("rejection_reasons")?,
        updated_at: row.try_get("updated_at")?,
    })
}

const STEP_COLUMNS: &str = "request_id, source, action, status, attempts, next_attempt_at, \
    last_error, outcome, result_sealed, created_at, finished_at";

fn step_from_row(row: &sqlx::any::AnyRow) -> Result<RightsStep> {
    Ok(RightsStep {
        request_id: row.try_get("request_id")?,
        source: row.try_get("source")?,
        action: row.try_get("action")?,
        status: row.try_get("status")?,
        attempts: row.try_get("attempts")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        last_error: row.try_get("last_error")?,
        outcome: row.try_get("outcome")?,
        result_sealed: row.try_get("result_sealed")?,
        created_at: row.try_get("created_at")?,
        finished_at: row.try_get("finished_at")?,
    })
}

const CHALLENGE_COLUMNS: &str = "id, request_id, purpose, code_hash, link_hash, attempts, max_attempts, created_at, expires_at, consumed_at";

fn challenge_from_row(row: &sqlx::any::AnyRow) -> Result<RightsChallenge> {
    Ok(RightsChallenge {
        id: row.try_get("id")?,
        request_id: row.try_get("request_id")?,
        purpose: row.try_get("purpose")?,
        code_hash: row.try_get("code_hash")?,
        link_hash: row.try_get("link_hash")?,
        attempts: row.try_get("attempts")?,
        max_attempts: row.try_get("max_attempts")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        consumed_at: row.try_get("consumed_at")?,
    })
}

/// The merge slot of an open request: one open request per person and kind.
fn open_slot(index: &[u8], kind: &str) -> String {
    let mut s = String::with_capacity(index.len() * 2 + 1 + kind.len());
    for b in index {
        s.push_str(&format!("{b:02x}"));
    }
    s.push(':');
    s.push_str(kind);
    s
}

fn is_unique_violation(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(db) => {
            db.is_unique_violation()
                || db
                    .code()
                    .is_some_and(|c| c == "23505" || c == "2067" || c == "1555")
        }
        _ => false,
    }
}

async fn append_history(
    tx: &mut sqlx::AnyConnection,
    request_id: &str,
    at: i64,
    event: &str,
    state: &str,
    actor: &str,
) -> Result<()> {
    // The caller's transaction already wrote the request's row, so it holds that row's lock
    // (PostgreSQL) or the database's write lock (SQLite): lines of one request never race.
    let last = sqlx::query(
        "SELECT seq, hash FROM rights_request_history WHERE request_id = $1 \
         ORDER BY seq DESC LIMIT 1",
    )
    .bind(request_id)
    .fetch_optional(&mut *tx)
    .await?;
    let (prev_seq, prev_hash): (i64, Option<String>) = match &last {
        Some(r) => (r.try_get(0)?, r.try_get(1)?),
        None => (0, None),
    };
    let seq = prev_seq + 1;
    let hash = history_hash(
        prev_hash.as_deref(),
        request_id,
        seq,
        at,
        event,
        state,
        actor,
    );
    sqlx::query(
        "INSERT INTO rights_request_history (request_id, seq, at, event, state, actor, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(request_id)
    .bind(seq)
    .bind(at)
    .bind(event)
    .bind(state)
    .bind(actor)
    .bind(hash)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

impl Store {
    /// Files a request, or merges it into the same person's open request of the same kind
    /// (found by the blind index) when `merge` is true. The submission's sealed text is kept
    /// either way. Safe under concurrency: the open-request slot is unique.
    pub async fn file_rights_request(
        &self,
        request: &RightsRequestRow,
        message_sealed: &[u8],
        merge: bool,
        actor: &str,
    ) -> Result<Filed> {
        let slot = merge.then(|| open_slot(&request.requester_index, &request.kind));
        let mut last_err = None;
        for _ in 0..3 {
            match self
                .try_file_rights_request(request, message_sealed, slot.as_deref(), actor)
                .await
            {
                Ok(filed) => return Ok(filed),
                // Two submissions raced for the slot: the loser merges into the winner.
                Err(crate::StoreError::Database(e)) if is_unique_violation(&e) => {
                    last_err = Some(crate::StoreError::Database(e));
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_err.expect("the loop ran"))
    }

    async fn try_file_rights_request(
        &self,
        r: &RightsRequestRow,
        message_sealed: &[u8],
        slot: Option<&str>,
        actor: &str,
    ) -> Result<Filed> {
        // Every transaction here takes the write lock first (`begin_write`): on SQLite a deferred
        // transaction that reads first cannot upgrade to a writer while another one writes.
        let mut tx = self.begin_write().await?;
        if let Some(slot) = slot {
            let merged = sqlx::query(
                "UPDATE rights_requests SET repeats = repeats + 1, updated_at = $2 \
                 WHERE open_slot = $1 RETURNING id, repeats, state",
            )
            .bind(slot)
            .bind(r.received_at)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(row) = merged {
                let id: String = row.try_get(0)?;
                let repeats: i64 = row.try_get(1)?;
                let state: String = row.try_get(2)?;
                insert_message(&mut tx, &id, &r.channel, r.received_at, message_sealed).await?;
                append_history(&mut tx, &id, r.received_at, "merged_repeat", &state, actor).await?;
                tx.commit().await?;
                return Ok(Filed::Merged { id, repeats });
            }
        }
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO rights_requests ({REQUEST_COLUMNS}, open_slot) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)"
        )))
        .bind(&r.id)
        .bind(&r.kind)
        .bind(&r.state)
        .bind(&r.channel)
        .bind(&r.lang)
        .bind(&r.requester_index)
        .bind(&r.requester_sealed)
        .bind(r.repeats)
        .bind(r.received_at)
        .bind(r.due_at)
        .bind(r.original_due_at)
        .bind(r.extended_until)
        .bind(&r.extension_reasons)
        .bind(r.verified_at)
        .bind(&r.verification)
        .bind(r.replied_at)
        .bind(r.purge_after)
        .bind(&r.rejection_ground)
        .bind(&r.rejection_reasons)
        .bind(r.updated_at)
        .bind(slot)
        .execute(&mut *tx)
        .await?;
        insert_message(&mut tx, &r.id, &r.channel, r.received_at, message_sealed).await?;
        append_history(&mut tx, &r.id, r.received_at, "received", &r.state, actor).await?;
        tx.commit().await?;
        Ok(Filed::Created(r.id.clone()))
    }

    pub async fn rights_request(&self, id: &str) -> Result<Option<RightsRequestRow>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {REQUEST_COLUMNS} FROM rights_requests WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(request_from_row).transpose()
    }

    /// Every request (open or not) of the person with this blind index, newest first.
    pub async fn rights_requests_of(
        &self,
        requester_index: &[u8],
    ) -> Result<Vec<RightsRequestRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {REQUEST_COLUMNS} FROM rights_requests WHERE requester_index = $1 \
             ORDER BY received_at DESC, id"
        )))
        .bind(requester_index)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(request_from_row).collect()
    }

    /// Open requests due at or before `before` (unix seconds), soonest first: what is due and
    /// overdue. `before = i64::MAX` lists every open request.
    pub async fn rights_requests_due(
        &self,
        before: i64,
        limit: i64,
    ) -> Result<Vec<RightsRequestRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {REQUEST_COLUMNS} FROM rights_requests \
             WHERE open_slot IS NOT NULL AND due_at <= $1 ORDER BY due_at, id LIMIT $2"
        )))
        .bind(before)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        let mut out: Vec<RightsRequestRow> =
            rows.iter().map(request_from_row).collect::<Result<_>>()?;
        // Requests that never merge (death notices) have no slot but are open too.
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {REQUEST_COLUMNS} FROM rights_requests \
             WHERE open_slot IS NULL AND replied_at IS NULL AND due_at <= $1 \
             ORDER BY due_at, id LIMIT $2"
        )))
        .bind(before)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        for row in &rows {
            out.push(request_from_row(row)?);
        }
        out.sort_by(|a, b| a.due_at.cmp(&b.due_at).then_with(|| a.id.cmp(&b.id)));
        out.truncate(usize::try_from(limit).unwrap_or(0));
        Ok(out)
    }

    /// Applies a status change if the request is still in `expected_state`; returns false when
    /// another node changed it first (the caller reloads and decides again).
    pub async fn update_rights_request(
        &self,
        id: &str,
        expected_state: &str,
        u: &RightsStatusUpdate,
        event: &str,
        actor: &str,
        now: i64,
    ) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let result = sqlx::query(
            "UPDATE rights_requests SET state = $1, due_at = $2, extended_until = $3, \
             extension_reasons = $4, verified_at = $5, verification = $6, replied_at = $7, \
             purge_after = $8, rejection_ground = $9, rejection_reasons = $10, updated_at = $11, \
             open_slot = CASE WHEN $12 = 1 THEN open_slot ELSE NULL END \
             WHERE id = $13 AND state = $14",
        )
        .bind(&u.state)
        .bind(u.due_at)
        .bind(u.extended_until)
        .bind(&u.extension_reasons)
        .bind(u.verified_at)
        .bind(&u.verification)
        .bind(u.replied_at)
        .bind(u.purge_after)
        .bind(&u.rejection_ground)
        .bind(&u.rejection_reasons)
        .bind(now)
        .bind(i64::from(u.open))
        .bind(id)
        .bind(expected_state)
        .execute(&mut *tx)
        .await?;
        if result.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        append_history(&mut tx, id, now, event, &u.state, actor).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Appends a history line without changing the status (e.g. a reminder or a step).
    pub async fn note_rights_event(
        &self,
        id: &str,
        event: &str,
        actor: &str,
        now: i64,
    ) -> Result<()> {
        // A write first (locks the request's row), then the chained line.
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "UPDATE rights_requests SET updated_at = updated_at WHERE id = $1 RETURNING state",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(());
        };
        let state: String = row.try_get(0)?;
        append_history(&mut tx, id, now, event, &state, actor).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn rights_request_messages(&self, id: &str) -> Result<Vec<RightsMessage>> {
        let rows = sqlx::query(
            "SELECT seq, channel, received_at, sealed FROM rights_request_messages \
             WHERE request_id = $1 ORDER BY seq",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(RightsMessage {
                    seq: r.try_get("seq")?,
                    channel: r.try_get("channel")?,
                    received_at: r.try_get("received_at")?,
                    sealed: r.try_get("sealed")?,
                })
            })
            .collect()
    }

    pub async fn rights_request_history(&self, id: &str) -> Result<Vec<RightsHistoryEntry>> {
        let rows = sqlx::query(
            "SELECT seq, at, event, state, actor, hash FROM rights_request_history \
             WHERE request_id = $1 ORDER BY seq",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(RightsHistoryEntry {
                    seq: r.try_get("seq")?,
                    at: r.try_get("at")?,
                    event: r.try_get("event")?,
                    state: r.try_get("state")?,
                    actor: r.try_get("actor")?,
                    hash: r.try_get("hash")?,
                })
            })
            .collect()
    }

    /// Recomputes a request's history chain: any line changed, removed or inserted after it was
    /// written shows as the first line whose hash does not match.
    pub async fn verify_rights_history(&self, id: &str) -> Result<HistoryCheck> {
        let lines = self.rights_request_history(id).await?;
        let mut check = HistoryCheck {
            entries: lines.len(),
            unchained: 0,
            broken_at: None,
            head: None,
        };
        let mut prev: Option<String> = None;
        let mut expected_seq = 1;
        for l in &lines {
            let seq_ok = l.seq == expected_seq;
            expected_seq = l.seq + 1;
            match &l.hash {
                None if prev.is_none() && seq_ok => check.unchained += 1,
                None => {
                    check.broken_at = Some(l.seq);
                    break;
                }
                Some(h) => {
                    let want = history_hash(
                        prev.as_deref(),
                        id,
                        l.seq,
                        l.at,
                        &l.event,
                        &l.state,
                        &l.actor,
                    );
                    if !seq_ok || want != *h {
                        check.broken_at = Some(l.seq);
                        break;
                    }
                    prev = Some(h.clone());
                }
            }
        }
        check.head = prev;
        Ok(check)
    }

    /// Deletes requests whose purge date has passed, with their messages, history, steps and
    /// challenges. Returns how many requests went.
    pub async fn purge_rights_requests(&self, now: i64, limit: i64) -> Result<u64> {
        let ids: Vec<String> = sqlx::query(
            "SELECT id FROM rights_requests WHERE purge_after IS NOT NULL AND purge_after <= $1 \
             ORDER BY purge_after LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, sqlx::Error>>()?;
        let mut tx = self.begin_write().await?;
        for id in &ids {
            // Explicit deletes rather than relying on ON DELETE CASCADE alone: SQLite only
            // cascades when foreign keys are enabled on the connection.
            for table in [
                "rights_request_messages",
                "rights_request_history",
                "rights_request_steps",
                "rights_challenges",
                "rights_packages",
            ] {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DELETE FROM {table} WHERE request_id = $1"
                )))
                .bind(id)
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query("DELETE FROM rights_requests WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(ids.len() as u64)
    }

    // ---- execution steps -----------------------------------------------------------------

    /// Records that `action` must run on `source` for a request (idempotent: an existing step
    /// keeps its progress). Returns true when the step was new.
    pub async fn plan_rights_step(
        &self,
        request_id: &str,
        source: &str,
        action: &str,
        now: i64,
    ) -> Result<bool> {
        let r = sqlx::query(
            "INSERT INTO rights_request_steps \
             (request_id, source, action, status, attempts, next_attempt_at, created_at) \
             VALUES ($1, $2, $3, 'pending', 0, $4, $4) \
             ON CONFLICT (request_id, source, action) DO NOTHING",
        )
        .bind(request_id)
        .bind(source)
        .bind(action)
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Claims up to `limit` steps ready to run at `now` for `lease_secs` (a crashed runner's
    /// lease expires and another node takes the step over). Each claim counts as an attempt.
    pub async fn claim_rights_steps(
        &self,
        now: i64,
        lease_secs: i64,
        limit: i64,
    ) -> Result<Vec<RightsStep>> {
        let candidates = sqlx::query(
            "SELECT request_id, source, action FROM rights_request_steps \
             WHERE (status = 'pending' AND next_attempt_at <= $1) \
                OR (status = 'running' AND lease_until < $1) \
             ORDER BY next_attempt_at LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        let mut claimed = Vec::new();
        for c in &candidates {
            let (req, source, action): (String, String, String) =
                (c.try_get(0)?, c.try_get(1)?, c.try_get(2)?);
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE rights_request_steps SET status = 'running', attempts = attempts + 1, \
                 lease_until = $1 \
                 WHERE request_id = $2 AND source = $3 AND action = $4 \
                 AND ((status = 'pending' AND next_attempt_at <= $5) \
                   OR (status = 'running' AND lease_until < $5)) \
                 RETURNING {STEP_COLUMNS}"
            )))
            .bind(now + lease_secs)
            .bind(&req)
            .bind(&source)
            .bind(&action)
            .bind(now)
            .fetch_optional(self.pool())
            .await?;
            if let Some(row) = row {
                claimed.push(step_from_row(&row)?);
            }
        }
        Ok(claimed)
    }

    /// Marks a running step done with its outcome (a JSON summary without personal data).
    pub async fn complete_rights_step(
        &self,
        request_id: &str,
        source: &str,
        action: &str,
        outcome: &str,
        result_sealed: Option<&[u8]>,
        now: i64,
    ) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE rights_request_steps SET status = 'done', outcome = $1, finished_at = $2, \
             lease_until = NULL, last_error = NULL, result_sealed = $6 \
             WHERE request_id = $3 AND source = $4 AND action = $5 AND status = 'running'",
        )
        .bind(outcome)
        .bind(now)
        .bind(request_id)
        .bind(source)
        .bind(action)
        .bind(result_sealed)
        .execute(self.pool())
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Records a failed attempt: retried at `retry_at`, or given up (`failed`) when `None`.
    pub async fn fail_rights_step(
        &self,
        request_id: &str,
        source: &str,
        action: &str,
        error: &str,
        retry_at: Option<i64>,
        now: i64,
    ) -> Result<bool> {
        let (status, next, finished) = match retry_at {
            Some(t) => ("pending", t, None),
            None => ("failed", now, Some(now)),
        };
        let r = sqlx::query(
            "UPDATE rights_request_steps SET status = $1, next_attempt_at = $2, last_error = $3, \
             finished_at = $4, lease_until = NULL \
             WHERE request_id = $5 AND source = $6 AND action = $7 AND status = 'running'",
        )
        .bind(status)
        .bind(next)
        .bind(error)
        .bind(finished)
        .bind(request_id)
        .bind(source)
        .bind(action)
        .execute(self.pool())
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Puts a request's failed steps (given up after their last attempt) back in the queue, due
    /// at `now` with a fresh attempt count. Returns how many.
    pub async fn retry_failed_rights_steps(&self, request_id: &str, now: i64) -> Result<u64> {
        let r = sqlx::query(
            "UPDATE rights_request_steps SET status = 'pending', attempts = 0, \
             next_attempt_at = $2, lease_until = NULL, finished_at = NULL \
             WHERE request_id = $1 AND status = 'failed'",
        )
        .bind(request_id)
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(r.rows_affected())
    }

    pub async fn rights_steps(&self, request_id: &str) -> Result<Vec<RightsStep>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {STEP_COLUMNS} FROM rights_request_steps WHERE request_id = $1 \
             ORDER BY created_at, source, action"
        )))
        .bind(request_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(step_from_row).collect()
    }

    // ---- verification challenges ---------------------------------------------------------

    /// Stores a new challenge and retires the request's earlier ones (only the newest code and
    /// link work).
    pub async fn insert_rights_challenge(&self, c: &RightsChallenge) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE rights_challenges SET consumed_at = $1 \
             WHERE request_id = $2 AND purpose = $3 AND consumed_at IS NULL",
        )
        .bind(c.created_at)
        .bind(&c.request_id)
        .bind(&c.purpose)
        .execute(&mut *tx)
        .await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO rights_challenges ({CHALLENGE_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        )))
        .bind(&c.id)
        .bind(&c.request_id)
        .bind(&c.purpose)
        .bind(&c.code_hash)
        .bind(&c.link_hash)
        .bind(c.attempts)
        .bind(c.max_attempts)
        .bind(c.created_at)
        .bind(c.expires_at)
        .bind(c.consumed_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The request's live challenge for `purpose` at `now` (not consumed, not expired,
    /// attempts left).
    pub async fn live_rights_challenge(
        &self,
        request_id: &str,
        purpose: &str,
        now: i64,
    ) -> Result<Option<RightsChallenge>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CHALLENGE_COLUMNS} FROM rights_challenges WHERE request_id = $1 \
             AND purpose = $3 AND consumed_at IS NULL AND expires_at > $2 \
             AND attempts < max_attempts ORDER BY created_at DESC LIMIT 1"
        )))
        .bind(request_id)
        .bind(now)
        .bind(purpose)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(challenge_from_row).transpose()
    }

    /// The challenge a link token's hash belongs to (whatever its state).
    pub async fn rights_challenge_by_link(
        &self,
        link_hash: &[u8],
    ) -> Result<Option<RightsChallenge>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CHALLENGE_COLUMNS} FROM rights_challenges WHERE link_hash = $1"
        )))
        .bind(link_hash)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(challenge_from_row).transpose()
    }

    /// Counts one attempt against a live challenge. Returns false (and counts nothing) when the
    /// challenge is consumed, expired or out of attempts: the caller must refuse the attempt.
    pub async fn count_rights_challenge_attempt(&self, id: &str, now: i64) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE rights_challenges SET attempts = attempts + 1 WHERE id = $1 \
             AND consumed_at IS NULL AND expires_at > $2 AND attempts < max_attempts",
        )
        .bind(id)
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Consumes a challenge (once): returns false when it was consumed already.
    pub async fn consume_rights_challenge(&self, id: &str, now: i64) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE rights_challenges SET consumed_at = $1 WHERE id = $2 AND consumed_at IS NULL",
        )
        .bind(now)
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Deletes every challenge of a request (after verification nothing of it is kept).
    pub async fn delete_rights_challenges(&self, request_id: &str) -> Result<u64> {
        let r = sqlx::query("DELETE FROM rights_challenges WHERE request_id = $1")
            .bind(request_id)
            .execute(self.pool())
            .await?;
        Ok(r.rows_affected())
    }
}

impl Store {
    pub async fn insert_rights_package(&self, p: &RightsPackage) -> Result<()> {
        sqlx::query(
            "INSERT INTO rights_packages (id, request_id, token_hash, sealed, created_at, expires_at, downloads) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&p.id)
        .bind(&p.request_id)
        .bind(&p.token_hash)
        .bind(&p.sealed)
        .bind(p.created_at)
        .bind(p.expires_at)
        .bind(p.downloads)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The package a link token's hash belongs to (expired or not: the caller says which).
    pub async fn rights_package_by_token(
        &self,
        token_hash: &[u8],
    ) -> Result<Option<RightsPackage>> {
        let row = sqlx::query(
            "SELECT id, request_id, token_hash, sealed, created_at, expires_at, downloads \
             FROM rights_packages WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| {
            Ok(RightsPackage {
                id: r.try_get("id")?,
                request_id: r.try_get("request_id")?,
                token_hash: r.try_get("token_hash")?,
                sealed: r.try_get("sealed")?,
                created_at: r.try_get("created_at")?,
                expires_at: r.try_get("expires_at")?,
                downloads: r.try_get("downloads")?,
            })
        })
        .transpose()
    }

    pub async fn count_rights_package_download(&self, id: &str) -> Result<()> {
        sqlx::query("UPDATE rights_packages SET downloads = downloads + 1 WHERE id = $1")
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Deletes packages whose link expired (the request record itself stays until its purge).
    pub async fn purge_expired_rights_packages(&self, now: i64) -> Result<u64> {
        let r = sqlx::query("DELETE FROM rights_packages WHERE expires_at <= $1")
            .bind(now)
            .execute(self.pool())
            .await?;
        Ok(r.rows_affected())
    }
}

async fn insert_message(
    tx: &mut sqlx::AnyConnection,
    request_id: &str,
    channel: &str,
    received_at: i64,
    sealed: &[u8],
) -> Result<()> {
    sqlx::query(
        "INSERT INTO rights_request_messages (request_id, seq, channel, received_at, sealed) \
         SELECT $1, COALESCE(MAX(seq), 0) + 1, $2, $3, $4 FROM rights_request_messages \
         WHERE request_id = $1",
    )
    .bind(request_id)
    .bind(channel)
    .bind(received_at)
    .bind(sealed)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn open_slot_is_hex_and_kind() {
        assert_eq!(super::open_slot(&[0xab, 0x01], "access"), "ab01:access");
    }
}
