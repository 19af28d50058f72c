//! Reads: lookups by identifier, everything held on a subject, one record. Every read that
//! hands out personal data (or says that a person is known) appends an audit entry first.

use serde_json::{Value, json};
use tutela_crypto::{open, record_aad};
use tutela_store::{NewAuditEntry, StoredRecord};

use crate::write::IdentifierInput;
use crate::{Actor, Result, Vault, VaultError, is_subject_id};

/// What a read returns beyond the default.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReadOptions {
    /// Include the payload of restricted records (art. 18). Only the rights engine answering
    /// the subject's own access request sets it; the platform's API never does.
    pub include_restricted: bool,
}

/// One record as read.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordView {
    pub id: i64,
    pub purpose: String,
    pub category: String,
    /// The decrypted payload; None for a restricted record (unless asked for) and in answers
    /// that carry no personal data (updates).
    pub payload: Option<Value>,
    pub source: String,
    pub collected_at: i64,
    /// When the retention clock started.
    pub anchor_at: Option<i64>,
    pub deadline: Option<i64>,
    /// When `deadline` is None: the event the clock waits for.
    pub waiting_for: Option<&'static str>,
    pub legal_hold: bool,
    pub restricted: bool,
    pub updated_at: i64,
}

/// The records of one purpose.
#[derive(Clone, Debug, PartialEq)]
pub struct PurposeView {
    pub purpose: String,
    /// The purpose's legal basis (`contract`, `legal_obligation`, …); empty when the purpose
    /// is no longer in the register.
    pub legal_basis: String,
    pub records: Vec<RecordView>,
}

/// An identifier of the subject: its kind only (the value is not stored).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentifierView {
    pub kind: String,
    pub linked_at: i64,
}

/// Everything held on a subject, grouped by purpose.
#[derive(Clone, Debug, PartialEq)]
pub struct SubjectView {
    pub subject_id: String,
    pub created_at: i64,
    pub identifiers: Vec<IdentifierView>,
    pub purposes: Vec<PurposeView>,
}

impl Vault {
    pub(crate) fn view_without_payload(&self, r: &StoredRecord) -> RecordView {
        let waiting_for = if r.deadline.is_none() {
            self.register
                .purpose(&r.purpose)
                .and_then(|p| p.retention_for(&r.category))
                .and_then(|rule| rule.from.event())
        } else {
            None
        };
        RecordView {
            id: r.id,
            purpose: r.purpose.clone(),
            category: r.category.clone(),
            payload: None,
            source: r.source.clone(),
            collected_at: r.collected_at,
            anchor_at: r.anchor_at,
            deadline: r.deadline,
            waiting_for,
            legal_hold: r.legal_hold,
            restricted: r.restricted,
            updated_at: r.updated_at,
        }
    }

    fn decrypt(
        &self,
        key: &tutela_crypto::SubjectKey,
        r: &StoredRecord,
        opts: ReadOptions,
    ) -> Result<RecordView> {
        let mut view = self.view_without_payload(r);
        if !r.restricted || opts.include_restricted {
            let aad = record_aad(r.subject_id.as_bytes(), &r.purpose, &r.category);
            let plain = open(key, &r.payload, &aad)?;
            view.payload =
                Some(serde_json::from_slice(&plain).map_err(|_| {
                    VaultError::InvalidInput("a stored payload is not JSON".into())
                })?);
        }
        Ok(view)
    }

    async fn audit_read(
        &self,
        actor: &Actor,
        action: &str,
        purpose: &str,
        subject_id: &str,
        details: Value,
    ) -> Result<()> {
        let entry = NewAuditEntry {
            time_ms: self.now().as_millisecond(),
            actor: actor.0.clone(),
            action: action.into(),
            purpose: purpose.to_string(),
            subject_commitment: Some(self.keys.commitment(subject_id)?),
            details: details.to_string(),
        };
        self.store
            .append_audit(&[entry], crate::audit::hasher)
            .await?;
        Ok(())
    }

    /// The subject an identifier belongs to. `purpose` is why the caller asks (checked against
    /// the register); a hit is audited.
    pub async fn lookup(
        &self,
        actor: &Actor,
        purpose: &str,
        identifier: &IdentifierInput,
    ) -> Result<String> {
        let purpose = self.purpose(purpose)?;
        let index = self
            .keys
            .indexer()
            .index(identifier.kind, &identifier.value)?;
        let found = self
            .store
            .vault_subjects_by_index(&[index.to_vec()])
            .await?;
        let Some((_, subject_id)) = found.into_iter().next() else {
            return Err(VaultError::SubjectNotFound);
        };
        self.audit_read(
            actor,
            "lookup",
            &purpose.id,
            &subject_id,
            json!({ "kind": identifier.kind.as_str() }),
        )
        .await?;
        Ok(subject_id)
    }

    /// Everything held on a subject, grouped by purpose, with deadlines. `purpose` is why the
    /// caller reads (checked against the register and recorded in the audit log, which is
    /// written before anything is returned). Expired records are never included.
    pub async fn read_subject(
        &self,
        actor: &Actor,
        purpose: &str,
        subject_id: &str,
        opts: ReadOptions,
    ) -> Result<SubjectView> {
        let purpose = self.purpose(purpose)?;
        if !is_subject_id(subject_id) {
            return Err(VaultError::SubjectNotFound);
        }
        let now = self.now().as_second();
        let subject = self
            .store
            .vault_subject(subject_id)
            .await?
            .ok_or(VaultError::SubjectNotFound)?;
        let records = self.store.vault_records(subject_id, None, now).await?;
        let identifiers = self.store.vault_identifiers(subject_id).await?;
        let key = self.keys.unwrap(subject_id, &subject.wrapped_key)?;
        let mut purposes: Vec<PurposeView> = Vec::new();
        for r in &records {
            let view = self.decrypt(&key, r, opts)?;
            match purposes.last_mut() {
                Some(p) if p.purpose == r.purpose => p.records.push(view),
                _ => purposes.push(PurposeView {
                    purpose: r.purpose.clone(),
                    legal_basis: self
                        .register
                        .purpose(&r.purpose)
                        .map(|p| p.legal_basis.as_str().to_string())
                        .unwrap_or_default(),
                    records: vec![view],
                }),
            }
        }
        self.audit_read(
            actor,
            "read",
            &purpose.id,
            subject_id,
            json!({
                "records": records.len(),
                "purposes": purposes.iter().map(|p| p.purpose.as_str()).collect::<Vec<_>>(),
                "restricted_included": opts.include_restricted,
            }),
        )
        .await?;
        Ok(SubjectView {
            subject_id: subject.id,
            created_at: subject.created_at,
            identifiers: identifiers
                .into_iter()
                .map(|i| IdentifierView {
                    kind: i.kind,
                    linked_at: i.created_at,
                })
                .collect(),
            purposes,
        })
    }

    /// One record of a subject, read under the purpose it was collected for (a record of
    /// another purpose is not found), audited like [`Vault::read_subject`].
    pub async fn read_record(
        &self,
        actor: &Actor,
        purpose: &str,
        subject_id: &str,
        record_id: i64,
    ) -> Result<RecordView> {
        let purpose = self.purpose(purpose)?;
        if !is_subject_id(subject_id) {
            return Err(VaultError::SubjectNotFound);
        }
        let now = self.now().as_second();
        let record = self
            .store
            .vault_record(subject_id, record_id, now)
            .await?
            // Purpose limitation: a record is read only under the purpose it was collected for.
            .filter(|r| r.purpose == purpose.id)
            .ok_or(VaultError::RecordNotFound)?;
        let subject = self
            .store
            .vault_subject(subject_id)
            .await?
            .ok_or(VaultError::SubjectNotFound)?;
        let key = self.keys.unwrap(subject_id, &subject.wrapped_key)?;
        let view = self.decrypt(&key, &record, ReadOptions::default())?;
        self.audit_read(
            actor,
            "read",
            &purpose.id,
            subject_id,
            json!({ "records": 1, "record": record_id, "purposes": [record.purpose] }),
        )
        .await?;
        Ok(view)
    }
}
