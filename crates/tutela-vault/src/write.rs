//! Writes: subjects and their identifiers, records (checked against the register, sealed,
//! given their deadline), record updates and anchor events.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Value, json};
use tutela_crypto::{IdentifierKind, Sealer, SubjectKey, contains_card_number, record_aad, seal};
use tutela_domain::register::{Anchor, RetentionRule};
use tutela_domain::retention;
use tutela_store::{
    NewAuditEntry, NewRecord, RecordPatch, StoreError, StoredIdentifier, StoredSubject,
};

use crate::{
    Actor, MAX_IDENTIFIERS_PER_CALL, MAX_PAYLOAD_BYTES, MAX_RECORDS_PER_CALL, MAX_SOURCE_LEN,
    Result, Vault, VaultError, bounded, is_subject_id, new_subject_id, starts_at_collection,
};

/// An identifier of a data subject, in clear (it only lives in memory, long enough to compute
/// its blind index).
#[derive(Clone)]
pub struct IdentifierInput {
    pub kind: IdentifierKind,
    pub value: String,
}

impl std::fmt::Debug for IdentifierInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IdentifierInput({}, ..)", self.kind)
    }
}

impl IdentifierInput {
    pub fn new(kind: IdentifierKind, value: impl Into<String>) -> Self {
        IdentifierInput {
            kind,
            value: value.into(),
        }
    }
}

/// A record to write.
#[derive(Clone)]
pub struct RecordInput {
    pub purpose: String,
    pub category: String,
    pub payload: Value,
    /// Where the datum comes from: a short label such as `signup-form` (letters, digits and
    /// `._:/-`; it is stored in clear, so it must not hold personal data).
    pub source: String,
    /// When the datum was collected (unix seconds); default: now.
    pub collected_at: Option<i64>,
    pub legal_hold: bool,
}

impl std::fmt::Debug for RecordInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordInput")
            .field("purpose", &self.purpose)
            .field("category", &self.category)
            .finish_non_exhaustive()
    }
}

/// What a write produced for one record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrittenRecord {
    pub id: i64,
    pub purpose: String,
    pub category: String,
    pub collected_at: i64,
    pub deadline: Option<i64>,
    /// When `deadline` is None: the event the clock waits for (`contract_ended`, …).
    pub waiting_for: Option<&'static str>,
}

/// One subject's part of a batch write: the subject is found by `subject_id` or by any of
/// `identifiers` (created when none matches); identifiers not yet known are linked to it.
#[derive(Clone, Debug, Default)]
pub struct BatchItem {
    pub subject_id: Option<String>,
    pub identifiers: Vec<IdentifierInput>,
    pub records: Vec<RecordInput>,
}

/// The outcome of one [`BatchItem`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubjectResolution {
    pub subject_id: String,
    /// Whether the subject was created by this write.
    pub created: bool,
    /// How many identifiers were linked to it by this write.
    pub linked: usize,
    pub records: Vec<WrittenRecord>,
}

/// A change to one record.
#[derive(Clone, Default)]
pub struct RecordUpdate {
    pub payload: Option<Value>,
    pub legal_hold: Option<bool>,
    pub restricted: Option<bool>,
}

/// An anchor event reported by the platform.
#[derive(Clone, Debug)]
pub struct AnchorEvent {
    /// `contract_ended`, `last_contact`, `request_replied` or `request_closed`.
    pub event: String,
    /// The purpose it concerns; None: every purpose whose retention counts from it.
    pub purpose: Option<String>,
    /// When it happened (unix seconds); default: now.
    pub at: Option<i64>,
}

/// What an anchor event changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventReport {
    pub event: String,
    pub at: i64,
    pub purposes: Vec<EventPurpose>,
}

/// What an anchor event changed in one purpose.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventPurpose {
    pub purpose: String,
    /// Records whose deadline was (re)computed.
    pub records: u64,
    /// The deadline of each category whose clock the event starts.
    pub deadlines: Vec<(String, Option<i64>)>,
}

/// Events the platform may report.
pub const EVENTS: [&str; 4] = [
    "contract_ended",
    "last_contact",
    "request_replied",
    "request_closed",
];

/// Records sealed per chunk handed to the SQLite writer thread: small enough that the thread
/// starts inserting early and the two threads overlap, large enough that the hand-over (a
/// channel message) costs nothing per record.
const SEAL_CHUNK: usize = 256;

/// A unique violation on the identifiers means another transaction registered one of them
/// first (PostgreSQL); on SQLite a queued insert reports it from a later call, hence this
/// mapping on every call that follows the identifiers' insert.
fn conflict(e: StoreError) -> VaultError {
    if e.is_unique_violation() {
        VaultError::ConcurrentWrite
    } else {
        e.into()
    }
}

/// A checked, serialised record before encryption.
struct Prepared<'a> {
    purpose: &'a str,
    category: String,
    rule: &'a RetentionRule,
    /// Serialised and scanned for card numbers only when it is sealed (inside the
    /// transaction, while the SQLite writer thread inserts the previous records): a refusal
    /// then rolls the whole batch back.
    payload: &'a Value,
    source: String,
    collected_at: i64,
    legal_hold: bool,
}

/// Deadlines computed in one call, by (rule, anchor time).
#[derive(Default)]
pub(crate) struct DeadlineMemo(HashMap<(usize, i64), Option<i64>>);

impl DeadlineMemo {
    fn get(&mut self, rule: &RetentionRule, anchor: i64) -> Result<Option<i64>> {
        let key = (std::ptr::from_ref(rule) as usize, anchor);
        if let Some(d) = self.0.get(&key) {
            return Ok(*d);
        }
        let d = if matches!(rule.from, Anchor::WhileOpen) {
            // The data goes when the request closes: at the event itself.
            Some(anchor)
        } else {
            let ts = jiff::Timestamp::from_second(anchor)
                .map_err(|_| VaultError::InvalidInput("time out of range".into()))?;
            retention::deadline(rule, ts)?.map(|t| t.as_second())
        };
        self.0.insert(key, d);
        Ok(d)
    }

    /// `(anchor_at, deadline)` of a new record under `rule`, given the subject's events for the
    /// record's purpose.
    pub(crate) fn schedule(
        &mut self,
        rule: &RetentionRule,
        collected_at: i64,
        event_at: Option<i64>,
    ) -> Result<(Option<i64>, Option<i64>)> {
        let anchor = if starts_at_collection(&rule.from) {
            Some(event_at.map_or(collected_at, |e| e.max(collected_at)))
        } else {
            event_at
        };
        match anchor {
            Some(a) => Ok((Some(a), self.get(rule, a)?)),
            None => Ok((None, None)),
        }
    }
}

fn check_source(source: &str) -> Result<()> {
    let ok = !source.is_empty()
        && source.len() <= MAX_SOURCE_LEN
        && source
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:/-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(VaultError::InvalidInput(format!(
            "`source` must be 1 to {MAX_SOURCE_LEN} characters among letters, digits and `._:/-` \
             (e.g. \"signup-form\"); it is stored in clear, so it must not hold personal data"
        )))
    }
}

/// Whether any string or number in `v` (keys included) holds a payment-card number.
fn has_card_number(v: &Value) -> bool {
    match v {
        Value::String(s) => contains_card_number(s),
        // A card number has at least 13 digits: a smaller integer cannot hold one (and is
        // not worth formatting, which bulk writes would do millions of times).
        Value::Number(n) => {
            n.as_i64()
                .is_none_or(|v| v.unsigned_abs() >= 1_000_000_000_000)
                && contains_card_number(&n.to_string())
        }
        Value::Array(a) => a.iter().any(has_card_number),
        Value::Object(o) => o
            .iter()
            .any(|(k, v)| contains_card_number(k) || has_card_number(v)),
        Value::Bool(_) | Value::Null => false,
    }
}

impl Vault {
    /// Checks a payload for a record of `purpose`/`category` and serialises it.
    fn check_payload(&self, purpose: &str, category: &str, payload: &Value) -> Result<Vec<u8>> {
        let bytes = serde_json::to_vec(payload)
            .map_err(|_| VaultError::InvalidInput("the payload is not valid JSON".into()))?;
        if bytes.len() > MAX_PAYLOAD_BYTES {
            return Err(VaultError::InvalidInput(format!(
                "a payload may be at most {} KiB of JSON",
                MAX_PAYLOAD_BYTES / 1024
            )));
        }
        if has_card_number(payload) {
            return Err(VaultError::CardNumberRefused {
                purpose: purpose.to_string(),
                category: category.to_string(),
            });
        }
        Ok(bytes)
    }

    fn prepare<'a>(&'a self, input: &'a RecordInput, now: i64) -> Result<Prepared<'a>> {
        let purpose = self.purpose(&input.purpose)?;
        let rule = self.check_category(purpose, &input.category)?;
        check_source(&input.source)?;
        let collected_at = input.collected_at.unwrap_or(now);
        if collected_at > now + 300 {
            return Err(VaultError::InvalidInput(
                "`collected_at` is in the future".into(),
            ));
        }
        Ok(Prepared {
            purpose: &purpose.id,
            category: input.category.clone(),
            rule,
            payload: &input.payload,
            source: input.source.clone(),
            collected_at,
            legal_hold: input.legal_hold,
        })
    }

    /// Finds the subject with any of `identifiers`, or creates it; links the identifiers it
    /// did not have yet. Fails with [`VaultError::IdentifierConflict`] when they belong to
    /// different subjects.
    pub async fn resolve_subject(
        &self,
        actor: &Actor,
        identifiers: Vec<IdentifierInput>,
    ) -> Result<SubjectResolution> {
        if identifiers.is_empty() {
            return Err(VaultError::InvalidInput(
                "give at least one identifier".into(),
            ));
        }
        let mut out = self
            .write_batch(
                actor,
                vec![BatchItem {
                    subject_id: None,
                    identifiers,
                    records: Vec::new(),
                }],
            )
            .await?;
        Ok(out.remove(0))
    }

    /// Links more identifiers to an existing subject. An identifier that already belongs to
    /// another subject is refused ([`VaultError::IdentifierTaken`]).
    pub async fn link_identifiers(
        &self,
        actor: &Actor,
        subject_id: &str,
        identifiers: Vec<IdentifierInput>,
    ) -> Result<SubjectResolution> {
        let mut out = self
            .write_batch(
                actor,
                vec![BatchItem {
                    subject_id: Some(subject_id.to_string()),
                    identifiers,
                    records: Vec::new(),
                }],
            )
            .await?;
        Ok(out.remove(0))
    }

    /// Writes records of one subject (at most [`MAX_RECORDS_PER_CALL`]).
    pub async fn put_records(
        &self,
        actor: &Actor,
        subject_id: &str,
        records: Vec<RecordInput>,
    ) -> Result<Vec<WrittenRecord>> {
        if records.is_empty() || records.len() > MAX_RECORDS_PER_CALL {
            return Err(VaultError::InvalidInput(format!(
                "give 1 to {MAX_RECORDS_PER_CALL} records"
            )));
        }
        let mut out = self
            .write_batch(
                actor,
                vec![BatchItem {
                    subject_id: Some(subject_id.to_string()),
                    identifiers: Vec::new(),
                    records,
                }],
            )
            .await?;
        Ok(out.remove(0).records)
    }

    /// Writes many subjects' identifiers and records in one transaction (bulk imports, the
    /// benchmark). Every record is checked before anything is committed: one refusal refuses
    /// the whole batch. Register, identifier and source checks run before the transaction
    /// starts; payloads are serialised and scanned for card numbers as they are sealed.
    pub async fn write_batch(
        &self,
        actor: &Actor,
        items: Vec<BatchItem>,
    ) -> Result<Vec<SubjectResolution>> {
        let now_ts = self.now();
        let now = now_ts.as_second();
        let now_ms = now_ts.as_millisecond();

        // 1. Check everything but the payloads, compute blind indexes (no I/O yet).
        let mut prepared: Vec<Vec<Prepared<'_>>> = Vec::with_capacity(items.len());
        let mut indexes: Vec<Vec<(Vec<u8>, IdentifierKind)>> = Vec::with_capacity(items.len());
        for item in &items {
            if let Some(id) = &item.subject_id
                && !is_subject_id(id)
            {
                return Err(VaultError::SubjectNotFound);
            }
            if item.subject_id.is_none() && item.identifiers.is_empty() {
                return Err(VaultError::InvalidInput(
                    "a new subject needs at least one identifier".into(),
                ));
            }
            if item.identifiers.len() > MAX_IDENTIFIERS_PER_CALL {
                return Err(VaultError::InvalidInput(format!(
                    "give at most {MAX_IDENTIFIERS_PER_CALL} identifiers at once"
                )));
            }
            let mut ix = Vec::with_capacity(item.identifiers.len());
            for i in &item.identifiers {
                let b = self.keys.indexer().index(i.kind, &i.value)?;
                if !ix.iter().any(|(x, _): &(Vec<u8>, _)| x[..] == b[..]) {
                    ix.push((b.to_vec(), i.kind));
                }
            }
            indexes.push(ix);
            prepared.push(
                item.records
                    .iter()
                    .map(|r| self.prepare(r, now))
                    .collect::<Result<_>>()?,
            );
        }

        // 2. Resolve subjects inside the transaction (serialised with other writers).
        let mut tx = self.store.vault_batch_begin().await?;
        let all_indexes: Vec<Vec<u8>> = indexes.iter().flatten().map(|(b, _)| b.clone()).collect();
        let mut owner: HashMap<Vec<u8>, String> = tx
            .subjects_by_index(all_indexes)
            .await?
            .into_iter()
            .collect();
        let named: Vec<String> = items.iter().filter_map(|i| i.subject_id.clone()).collect();
        let mut subjects: HashMap<String, StoredSubject> = tx
            .subjects(named)
            .await?
            .into_iter()
            .map(|s| (s.id.clone(), s))
            .collect();
        // Subjects found only through identifiers: load them too.
        let by_ident: Vec<String> = owner
            .values()
            .filter(|id| !subjects.contains_key(*id))
            .cloned()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        for s in tx.subjects(by_ident).await? {
            subjects.insert(s.id.clone(), s);
        }

        let mut new_subjects: Vec<StoredSubject> = Vec::new();
        let mut new_keys: HashMap<String, SubjectKey> = HashMap::new();
        let mut new_identifiers: Vec<StoredIdentifier> = Vec::new();
        let mut results: Vec<SubjectResolution> = Vec::with_capacity(items.len());
        let key_id = self.keys.current_key_id().to_hex();
        for (item, ix) in items.iter().zip(&indexes) {
            let mut matched: Vec<&String> = ix.iter().filter_map(|(b, _)| owner.get(b)).collect();
            matched.sort();
            matched.dedup();
            let (subject_id, created) = match (&item.subject_id, matched.as_slice()) {
                (Some(id), found) => {
                    if !subjects.contains_key(id) {
                        return Err(VaultError::SubjectNotFound);
                    }
                    if found.iter().any(|f| *f != id) {
                        return Err(VaultError::IdentifierTaken);
                    }
                    (id.clone(), false)
                }
                (None, [one]) => ((*one).clone(), false),
                (None, []) => {
                    let id = new_subject_id(now_ms)?;
                    let key = SubjectKey::generate()?;
                    let wrapped = self.keys.wrap(&id, &key)?;
                    new_subjects.push(StoredSubject {
                        id: id.clone(),
                        wrapped_key: wrapped,
                        key_id: key_id.clone(),
                        created_at: now,
                    });
                    new_keys.insert(id.clone(), key);
                    (id, true)
                }
                (None, _) => return Err(VaultError::IdentifierConflict),
            };
            let mut linked = 0;
            for (b, kind) in ix {
                if !owner.contains_key(b) {
                    owner.insert(b.clone(), subject_id.clone());
                    new_identifiers.push(StoredIdentifier {
                        blind_index: b.clone(),
                        subject_id: subject_id.clone(),
                        kind: kind.as_str().to_string(),
                        created_at: now,
                    });
                    linked += 1;
                }
            }
            results.push(SubjectResolution {
                subject_id,
                created,
                linked,
                records: Vec::new(),
            });
        }
        tx.insert_subjects(new_subjects).await?;
        // On PostgreSQL two transactions may both find an identifier unknown and insert it;
        // the second fails on the unique index and is told to retry (it then finds it). On
        // SQLite the insert is queued: its error comes back from a later call (`conflict`).
        tx.insert_identifiers(new_identifiers)
            .await
            .map_err(conflict)?;

        // 3. Seal the records under their subjects' keys, with their deadlines. On SQLite the
        //    sealed records go to the writer thread in chunks, so that it inserts one chunk
        //    while this thread seals the next.
        let with_records: Vec<String> = results
            .iter()
            .zip(&prepared)
            .filter(|(r, p)| !p.is_empty() && !r.created)
            .map(|(r, _)| r.subject_id.clone())
            .collect();
        let events = tx.events(with_records).await.map_err(conflict)?;
        let chunk = if tx.is_pipelined() {
            SEAL_CHUNK
        } else {
            usize::MAX
        };
        let mut memo = DeadlineMemo::default();
        let mut sealer = Sealer::new();
        let mut rows: Vec<NewRecord> = Vec::new();
        for (res, recs) in results.iter_mut().zip(&prepared) {
            if recs.is_empty() {
                continue;
            }
            let loaded;
            let key = match new_keys.get(&res.subject_id) {
                Some(k) => k,
                None => {
                    let s = &subjects[&res.subject_id];
                    loaded = self.keys.unwrap(&s.id, &s.wrapped_key)?;
                    &loaded
                }
            };
            res.records.reserve(recs.len());
            for p in recs {
                let event_at = p.rule.from.event().and_then(|e| {
                    events
                        .get(&(res.subject_id.clone(), p.purpose.to_string(), e.to_string()))
                        .copied()
                });
                let (anchor_at, deadline) = memo.schedule(p.rule, p.collected_at, event_at)?;
                let plaintext = self.check_payload(p.purpose, &p.category, p.payload)?;
                let aad = record_aad(res.subject_id.as_bytes(), p.purpose, &p.category);
                rows.push(NewRecord {
                    subject_id: res.subject_id.clone(),
                    purpose: p.purpose.to_string(),
                    category: p.category.clone(),
                    payload: sealer.seal(key, &plaintext, &aad)?,
                    source: p.source.clone(),
                    collected_at: p.collected_at,
                    anchor_at,
                    deadline,
                    legal_hold: p.legal_hold,
                    restricted: false,
                });
                let waiting = if deadline.is_none() {
                    p.rule.from.event()
                } else {
                    None
                };
                // The id is filled in below, once the rows are inserted.
                res.records.push(WrittenRecord {
                    id: 0,
                    purpose: p.purpose.to_string(),
                    category: p.category.clone(),
                    collected_at: p.collected_at,
                    deadline,
                    waiting_for: waiting,
                });
            }
            if rows.len() >= chunk {
                tx.insert_records(std::mem::take(&mut rows), now)
                    .await
                    .map_err(conflict)?;
            }
        }
        if !rows.is_empty() {
            tx.insert_records(rows, now).await.map_err(conflict)?;
        }
        drop(prepared);

        // 4. Audit: one entry per subject. When one call writes under several purposes, the
        //    entry's purpose lists them ("recruitment,support") and its details count each.
        let mut audit = Vec::with_capacity(results.len());
        for res in &results {
            let commitment = Some(self.keys.commitment(&res.subject_id)?);
            let mut per_purpose: BTreeMap<&str, u64> = BTreeMap::new();
            for r in &res.records {
                *per_purpose.entry(&r.purpose).or_default() += 1;
            }
            let (action, details) = if per_purpose.is_empty() {
                (
                    if res.created {
                        "subject_created"
                    } else {
                        "identifiers_linked"
                    },
                    json!({ "identifiers_added": res.linked }),
                )
            } else {
                (
                    "write",
                    json!({
                        "records": per_purpose,
                        "subject_created": res.created,
                        "identifiers_added": res.linked,
                    }),
                )
            };
            audit.push(NewAuditEntry {
                time_ms: now_ms,
                actor: actor.0.clone(),
                action: action.into(),
                purpose: per_purpose.keys().copied().collect::<Vec<_>>().join(","),
                subject_commitment: commitment,
                details: details.to_string(),
            });
        }
        tx.append_audit(&audit, crate::audit::hasher)
            .await
            .map_err(conflict)?;
        // Every record's id, in the order the rows were built (subjects in order, then their
        // records in order).
        let count = results.iter().map(|r| r.records.len()).sum();
        let ids = tx.record_ids(count).await.map_err(conflict)?;
        let written = results.iter_mut().flat_map(|r| r.records.iter_mut());
        for (w, id) in written.zip(ids) {
            w.id = id;
        }
        tx.commit().await.map_err(conflict)?;
        Ok(results)
    }

    /// Changes a record: its payload (checked again and re-sealed), legal hold or restriction.
    /// The deadline does not move: the retention clock counts from collection or an event,
    /// not from updates. Returns the record's new metadata (no payload).
    pub async fn update_record(
        &self,
        actor: &Actor,
        subject_id: &str,
        record_id: i64,
        update: RecordUpdate,
    ) -> Result<crate::RecordView> {
        if !is_subject_id(subject_id) {
            return Err(VaultError::SubjectNotFound);
        }
        if update.payload.is_none() && update.legal_hold.is_none() && update.restricted.is_none() {
            return Err(VaultError::InvalidInput(
                "nothing to change: give `payload`, `legal_hold` or `restricted`".into(),
            ));
        }
        let now_ts = self.now();
        let now = now_ts.as_second();
        let mut tx = self.store.vault_begin().await?;
        let record = tx
            .record(subject_id, record_id, now)
            .await?
            .ok_or(VaultError::RecordNotFound)?;
        let mut patch = RecordPatch {
            payload: None,
            legal_hold: update.legal_hold,
            restricted: update.restricted,
        };
        let mut fields = Vec::new();
        if let Some(payload) = &update.payload {
            let bytes = self.check_payload(&record.purpose, &record.category, payload)?;
            let subject = tx
                .subjects(&[subject_id.to_string()])
                .await?
                .pop()
                .ok_or(VaultError::SubjectNotFound)?;
            let key = self.keys.unwrap(subject_id, &subject.wrapped_key)?;
            let aad = record_aad(subject_id.as_bytes(), &record.purpose, &record.category);
            patch.payload = Some(seal(&key, &bytes, &aad)?);
            fields.push("payload");
        }
        if update.legal_hold.is_some() {
            fields.push("legal_hold");
        }
        if update.restricted.is_some() {
            fields.push("restricted");
        }
        if !tx.update_record(subject_id, record_id, &patch, now).await? {
            return Err(VaultError::RecordNotFound);
        }
        let entry = NewAuditEntry {
            time_ms: now_ts.as_millisecond(),
            actor: actor.0.clone(),
            action: "update".into(),
            purpose: record.purpose.clone(),
            subject_commitment: Some(self.keys.commitment(subject_id)?),
            details: json!({ "record": record_id, "fields": fields, "legal_hold": update.legal_hold, "restricted": update.restricted }).to_string(),
        };
        tx.append_audit(&[entry], crate::audit::hasher).await?;
        let updated = tx
            .record(subject_id, record_id, now)
            .await?
            .ok_or(VaultError::RecordNotFound)?;
        tx.commit().await?;
        Ok(self.view_without_payload(&updated))
    }

    /// Records an anchor event for a subject and recomputes the deadlines it moves.
    pub async fn record_event(
        &self,
        actor: &Actor,
        subject_id: &str,
        event: AnchorEvent,
    ) -> Result<EventReport> {
        if !is_subject_id(subject_id) {
            return Err(VaultError::SubjectNotFound);
        }
        let Some(event_name) = EVENTS.iter().copied().find(|e| *e == event.event) else {
            return Err(VaultError::InvalidInput(format!(
                "unknown event `{}`; events are: {}",
                bounded(&event.event),
                EVENTS.join(", ")
            )));
        };
        let now_ts = self.now();
        let now = now_ts.as_second();
        let at = event.at.unwrap_or(now);
        if at > now + 300 {
            return Err(VaultError::InvalidInput(
                "the event's time `at` is in the future".into(),
            ));
        }
        let applies = |p: &tutela_domain::register::Purpose| {
            p.retention
                .iter()
                .any(|r| r.from.event() == Some(event_name))
        };
        let purposes: Vec<&tutela_domain::register::Purpose> = match &event.purpose {
            Some(id) => {
                let p = self.purpose(id)?;
                if !applies(p) {
                    let anchors: Vec<&str> = p.retention.iter().map(|r| r.from.as_str()).collect();
                    return Err(VaultError::EventNotApplicable {
                        event: event_name.to_string(),
                        purpose: p.id.clone(),
                        why: format!("its retention counts from {}", anchors.join(", ")),
                    });
                }
                vec![p]
            }
            None => self
                .register
                .purposes
                .iter()
                .filter(|p| applies(p))
                .collect(),
        };
        let keep_later = event_name == "last_contact";
        let mut tx = self.store.vault_begin().await?;
        if tx.subjects(&[subject_id.to_string()]).await?.is_empty() {
            return Err(VaultError::SubjectNotFound);
        }
        let mut memo = DeadlineMemo::default();
        let mut report = EventReport {
            event: event_name.to_string(),
            at,
            purposes: Vec::new(),
        };
        let mut audit = Vec::new();
        let commitment = Some(self.keys.commitment(subject_id)?);
        for p in purposes {
            tx.record_event(subject_id, &p.id, event_name, at, keep_later)
                .await?;
            // Group the purpose's categories whose clock this event starts by deadline.
            let mut groups: BTreeMap<Option<i64>, Vec<String>> = BTreeMap::new();
            let mut deadlines = Vec::new();
            for cat in &p.categories {
                let Some(rule) = p.retention_for(cat) else {
                    continue;
                };
                if rule.from.event() != Some(event_name) {
                    continue;
                }
                let d = memo.get(rule, at)?;
                groups.entry(d).or_default().push(cat.clone());
                deadlines.push((cat.clone(), d));
            }
            let mut updated = 0;
            for (deadline, cats) in groups {
                updated += tx
                    .set_anchor(subject_id, &p.id, &cats, at, deadline, keep_later, now)
                    .await?;
            }
            audit.push(NewAuditEntry {
                time_ms: now_ts.as_millisecond(),
                actor: actor.0.clone(),
                action: "event".into(),
                purpose: p.id.clone(),
                subject_commitment: commitment,
                details: json!({ "event": event_name, "at": at, "records": updated }).to_string(),
            });
            report.purposes.push(EventPurpose {
                purpose: p.id.clone(),
                records: updated,
                deadlines,
            });
        }
        tx.append_audit(&audit, crate::audit::hasher).await?;
        tx.commit().await?;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_numbers_are_found_anywhere_in_the_payload() {
        for v in [
            json!({"note": "card 4111 1111 1111 1111 exp 12/28"}),
            json!({"pan": 4111111111111111u64}),
            json!({"pan": -4111111111111111i64}),
            json!({"pan": 4111111111111111.0}),
            json!(["x", {"deep": ["4111-1111-1111-1111"]}]),
            json!({"4111111111111111": true}),
        ] {
            assert!(has_card_number(&v), "{v}");
        }
        for v in [
            json!({"phone": "+33 6 12 34 56 78", "n": 42}),
            json!({"n": 999_999_999_999i64, "m": -999_999_999_999i64, "x": 1.5}),
            json!({"order": "2026-11-29"}),
            json!(null),
        ] {
            assert!(!has_card_number(&v), "{v}");
        }
    }

    #[test]
    fn sources_are_short_labels() {
        assert!(check_source("signup-form").is_ok());
        assert!(check_source("crm:v2/import_1.0").is_ok());
        for bad in ["", "alice@example.com", "with space", &"x".repeat(65)] {
            assert!(check_source(bad).is_err(), "{bad:?}");
        }
    }
}
