//! Consent records as a [`Source`], found by the consent id the requester gives (the random id
//! the banner keeps in their browser; knowing it is the proof of holding it).
//!
//! - access and portability: every record of the consent id (what was chosen, when, how, under
//!   which register revision);
//! - consent withdrawal: a new record refusing every category is appended (records are never
//!   overwritten; the table refuses updates), so every collector asking
//!   `Store::consent_granted` gets "no" from then on;
//! - erasure: consent records are the proof of consent the controller must be able to show
//!   (art. 7(1)); they are kept under that legal obligation until their own deadline, and the
//!   reply says so (a declared exception, not a silent one);
//! - restriction and rectification: the records only prove what was chosen; they are already
//!   used for nothing else, and a past choice is not corrected but superseded by a new one.

use std::sync::Arc;

use tutela_crypto::IdentifierKind;
use tutela_domain::Register;
use tutela_domain::consent::CONSENT_RECORD_CATEGORY;
use tutela_store::{ConsentRecord, Store};

use crate::source::{BoxFuture, Erased, Kept, Source, SourceError, SourceRecord, Subject};

/// Most records read per consent id.
const MAX_RECORDS: i64 = 1000;

pub struct ConsentSource {
    store: Store,
    register: Arc<Register>,
    register_hash: String,
}

impl std::fmt::Debug for ConsentSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsentSource").finish_non_exhaustive()
    }
}

fn temporary(e: tutela_store::StoreError) -> SourceError {
    SourceError::Temporary(format!("consent storage: {e}"))
}

fn date(secs: i64) -> String {
    jiff::Timestamp::from_second(secs)
        .map(|t| {
            t.to_zoned_datetime(jiff::tz::TimeZone::UTC)
                .date()
                .to_string()
        })
        .unwrap_or_default()
}

fn record_fields(r: &ConsentRecord) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    let choice = |v: Option<bool>| match v {
        Some(true) => serde_json::Value::from("granted"),
        Some(false) => serde_json::Value::from("refused"),
        None => serde_json::Value::Null,
    };
    m.insert("record_id".into(), r.record_id.clone().into());
    m.insert("consent_id".into(), r.consent_id.clone().into());
    m.insert(
        "recorded_at".into(),
        jiff::Timestamp::from_second(r.recorded_at)
            .map(|t| t.to_string())
            .unwrap_or_default()
            .into(),
    );
    if let Some(s) = &r.site {
        m.insert("site".into(), s.clone().into());
    }
    m.insert("register_revision".into(), r.revision.clone().into());
    m.insert("method".into(), r.method.clone().into());
    m.insert("source".into(), r.source.clone().into());
    m.insert("global_privacy_control".into(), r.gpc.into());
    if let Some(l) = &r.language {
        m.insert("language".into(), l.clone().into());
    }
    m.insert("functional".into(), choice(r.functional));
    m.insert("analytics".into(), choice(r.analytics));
    m.insert("targeting".into(), choice(r.targeting));
    m.insert(
        "services".into(),
        serde_json::from_str(&r.services).unwrap_or(serde_json::Value::Null),
    );
    m.insert("deleted_on".into(), date(r.delete_after).into());
    m
}

impl ConsentSource {
    /// `register_hash`: the hash of the register in force (recorded in withdrawal records).
    /// Fails when the register keeps no consent records.
    pub fn new(
        store: Store,
        register: Arc<Register>,
        register_hash: &str,
    ) -> Result<ConsentSource, SourceError> {
        if tutela_domain::consent::record_purpose(&register).is_none() {
            return Err(SourceError::Permanent(format!(
                "the register declares no purpose for consent records (category `{CONSENT_RECORD_CATEGORY}`)"
            )));
        }
        Ok(ConsentSource {
            store,
            register,
            register_hash: register_hash.to_string(),
        })
    }

    fn consent_ids(subject: &Subject) -> impl Iterator<Item = &str> {
        subject
            .identifiers
            .iter()
            .filter(|(k, v)| *k == IdentifierKind::ConsentId && tutela_domain::consent::is_uuid(v))
            .map(|(_, v)| v.as_str())
    }

    async fn records(&self, subject: &Subject) -> Result<Vec<ConsentRecord>, SourceError> {
        let mut out = Vec::new();
        for id in Self::consent_ids(subject) {
            out.extend(
                self.store
                    .consent_records(id, MAX_RECORDS)
                    .await
                    .map_err(temporary)?,
            );
        }
        Ok(out)
    }

    async fn do_access(&self, subject: &Subject) -> Result<Vec<SourceRecord>, SourceError> {
        Ok(self
            .records(subject)
            .await?
            .iter()
            .map(|r| SourceRecord {
                collection: "consent_records".into(),
                purpose: Some(r.purpose.clone()),
                category: Some(r.category.clone()),
                provided_by_subject: true,
                fields: record_fields(r),
            })
            .collect())
    }

    /// Nothing is deleted: the records are the proof of consent, kept until their deadline.
    async fn do_erase(&self, subject: &Subject) -> Result<Erased, SourceError> {
        let records = self.records(subject).await?;
        let mut out = Erased::default();
        if let Some(until) = records.iter().map(|r| r.delete_after).max() {
            let (purpose, _) = tutela_domain::consent::record_purpose(&self.register)
                .expect("checked at construction");
            out.kept.push(Kept {
                collection: format!("{}/{}", purpose.id, CONSENT_RECORD_CATEGORY),
                count: records.len() as u64,
                reason: "legal obligation: proof of consent (GDPR art. 7(1))".into(),
                until: Some(date(until)),
            });
        }
        Ok(out)
    }

    /// Appends, per consent id that ever granted something, a record refusing every category.
    async fn do_withdraw(&self, subject: &Subject) -> Result<Erased, SourceError> {
        let (purpose, rule) = tutela_domain::consent::record_purpose(&self.register)
            .expect("checked at construction");
        let now = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second())
            .map_err(|e| SourceError::Permanent(e.to_string()))?;
        let deadline = tutela_domain::retention::deadline(rule, now)
            .map_err(|e| SourceError::Permanent(format!("consent deadline: {e}")))?
            .ok_or_else(|| SourceError::Permanent("the consent rule has no date".into()))?;
        let mut appended = Vec::new();
        for id in Self::consent_ids(subject) {
            let records = self
                .store
                .consent_records(id, MAX_RECORDS)
                .await
                .map_err(temporary)?;
            let Some(last) = records.last() else {
                continue;
            };
            // Idempotent: nothing to add when the latest record already refuses everything.
            let all_refused = [last.functional, last.analytics, last.targeting]
                .iter()
                .all(|c| *c != Some(true));
            if all_refused {
                continue;
            }
            let record_id = tutela_crypto::random_id::random_uuid()
                .map_err(|e| SourceError::Temporary(format!("random id: {e}")))?;
            appended.push(ConsentRecord {
                record_id,
                consent_id: id.to_string(),
                recorded_at: now.as_second(),
                site: last.site.clone(),
                revision: self
                    .register
                    .latest_revision()
                    .map(|r| r.id.clone())
                    .unwrap_or_else(|| last.revision.clone()),
                register_hash: self.register_hash.clone(),
                method: "api".into(),
                source: "rights-request".into(),
                gpc: false,
                language: last.language.clone(),
                functional: Some(false),
                analytics: Some(false),
                targeting: Some(false),
                services: "{}".into(),
                purpose: purpose.id.clone(),
                category: CONSENT_RECORD_CATEGORY.to_string(),
                delete_after: deadline.as_second(),
            });
        }
        if !appended.is_empty() {
            self.store
                .insert_consent_records(&appended)
                .await
                .map_err(temporary)?;
        }
        // Reported as "kept": the withdrawal is itself a record of proof.
        let mut out = self.do_erase(subject).await?;
        for k in &mut out.kept {
            k.reason = format!(
                "{}; {} withdrawal record(s) added",
                k.reason,
                appended.len()
            );
        }
        Ok(out)
    }
}

impl Source for ConsentSource {
    fn name(&self) -> &str {
        "consent"
    }

    fn supports(&self, action: &str) -> bool {
        matches!(action, "access" | "erase" | "withdraw")
    }

    fn access<'a>(
        &'a self,
        subject: &'a Subject,
    ) -> BoxFuture<'a, Result<Vec<SourceRecord>, SourceError>> {
        Box::pin(self.do_access(subject))
    }

    fn erase<'a>(&'a self, subject: &'a Subject) -> BoxFuture<'a, Result<Erased, SourceError>> {
        Box::pin(self.do_erase(subject))
    }

    fn rectify<'a>(
        &'a self,
        _subject: &'a Subject,
        _changes: &'a serde_json::Map<String, serde_json::Value>,
    ) -> BoxFuture<'a, Result<u64, SourceError>> {
        Box::pin(async { Ok(0) })
    }

    fn restrict<'a>(
        &'a self,
        _subject: &'a Subject,
        _restricted: bool,
    ) -> BoxFuture<'a, Result<u64, SourceError>> {
        Box::pin(async { Ok(0) })
    }

    fn withdraw<'a>(&'a self, subject: &'a Subject) -> BoxFuture<'a, Result<Erased, SourceError>> {
        Box::pin(self.do_withdraw(subject))
    }
}
