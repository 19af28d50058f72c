//! The vault as a [`Source`]: access, erasure (crypto-shredding, legal obligations kept and
//! said), rectification and restriction of a subject's records. Every vault operation appends
//! to the vault's hash-chained audit log under the actor `rights-engine`, with the purpose
//! the register gives to the handling of rights requests.

use std::collections::BTreeMap;

use tutela_vault::{
    Actor, ErasureScope, IdentifierInput, KeepReason, ReadOptions, RecordUpdate, Vault, VaultError,
};

use crate::source::{BoxFuture, Erased, Kept, Source, SourceError, SourceRecord, Subject};

pub struct VaultSource {
    vault: Vault,
    /// The register purpose under which the rights engine reads (e.g. `rights_requests`).
    purpose: String,
    actor: Actor,
}

impl std::fmt::Debug for VaultSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultSource")
            .field("purpose", &self.purpose)
            .finish_non_exhaustive()
    }
}

fn err(e: VaultError) -> SourceError {
    match e {
        VaultError::Store(s) => SourceError::Temporary(format!("vault storage: {s}")),
        other => SourceError::Permanent(other.to_string()),
    }
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

impl VaultSource {
    /// `purpose` must be a purpose of the register (the one for handling rights requests).
    pub fn new(vault: Vault, purpose: &str) -> Result<VaultSource, SourceError> {
        if vault.register().purpose(purpose).is_none() {
            return Err(SourceError::Permanent(format!(
                "purpose `{purpose}` is not in the register"
            )));
        }
        Ok(VaultSource {
            vault,
            purpose: purpose.to_string(),
            actor: Actor::new("rights-engine"),
        })
    }

    /// The vault subjects the identifiers lead to (usually one).
    async fn subjects(&self, subject: &Subject) -> Result<Vec<String>, SourceError> {
        let mut out: Vec<String> = Vec::new();
        for (kind, value) in &subject.identifiers {
            match self
                .vault
                .lookup(
                    &self.actor,
                    &self.purpose,
                    &IdentifierInput::new(*kind, value.clone()),
                )
                .await
            {
                Ok(id) => {
                    if !out.contains(&id) {
                        out.push(id);
                    }
                }
                Err(VaultError::SubjectNotFound) => {}
                Err(e) => return Err(err(e)),
            }
        }
        Ok(out)
    }

    async fn do_access(&self, subject: &Subject) -> Result<Vec<SourceRecord>, SourceError> {
        let mut out = Vec::new();
        for id in self.subjects(subject).await? {
            // The subject's own access includes restricted records (art. 18 restricts processing,
            // not the subject's right to see their data).
            let view = self
                .vault
                .read_subject(
                    &self.actor,
                    &self.purpose,
                    &id,
                    ReadOptions {
                        include_restricted: true,
                    },
                )
                .await
                .map_err(err)?;
            for p in view.purposes {
                for r in p.records {
                    let mut fields = match r.payload {
                        Some(serde_json::Value::Object(m)) => m,
                        Some(other) => {
                            let mut m = serde_json::Map::new();
                            m.insert("value".into(), other);
                            m
                        }
                        None => serde_json::Map::new(),
                    };
                    fields.insert("collected_on".into(), date(r.collected_at).into());
                    if let Some(d) = r.deadline {
                        fields.insert("deleted_on".into(), date(d).into());
                    }
                    let provided = self
                        .vault
                        .register()
                        .category(&r.category)
                        .is_some_and(|c| c.provided_by_subject);
                    out.push(SourceRecord {
                        collection: r.category.clone(),
                        purpose: Some(r.purpose.clone()),
                        category: Some(r.category.clone()),
                        provided_by_subject: provided,
                        fields,
                    });
                }
            }
        }
        Ok(out)
    }

    async fn do_erase(&self, subject: &Subject) -> Result<Erased, SourceError> {
        let mut out = Erased::default();
        for id in self.subjects(subject).await? {
            let report = self
                .vault
                .erase(&self.actor, &id, ErasureScope::All)
                .await
                .map_err(err)?;
            out.deleted += report.erased.values().sum::<u64>();
            let mut kept: BTreeMap<(String, String, Option<i64>), u64> = BTreeMap::new();
            for k in &report.kept {
                let reason = match &k.reason {
                    KeepReason::LegalHold => "legal hold".to_string(),
                    KeepReason::LegalObligation { law: Some(l) } => {
                        format!("legal obligation: {l}")
                    }
                    KeepReason::LegalObligation { law: None } => "legal obligation".to_string(),
                };
                *kept
                    .entry((format!("{}/{}", k.purpose, k.category), reason, k.deadline))
                    .or_default() += 1;
            }
            for ((collection, reason, until), count) in kept {
                out.kept.push(Kept {
                    collection,
                    count,
                    reason,
                    until: until.map(date),
                });
            }
        }
        Ok(out)
    }

    async fn each_record(
        &self,
        subject: &Subject,
        mut f: impl FnMut(&tutela_vault::RecordView) -> Option<RecordUpdate>,
    ) -> Result<u64, SourceError> {
        let mut changed = 0;
        for id in self.subjects(subject).await? {
            let view = self
                .vault
                .read_subject(
                    &self.actor,
                    &self.purpose,
                    &id,
                    ReadOptions {
                        include_restricted: true,
                    },
                )
                .await
                .map_err(err)?;
            for p in &view.purposes {
                for r in &p.records {
                    if let Some(update) = f(r) {
                        self.vault
                            .update_record(&self.actor, &id, r.id, update)
                            .await
                            .map_err(err)?;
                        changed += 1;
                    }
                }
            }
        }
        Ok(changed)
    }
}

impl Source for VaultSource {
    fn name(&self) -> &str {
        "vault"
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

    /// Sets the given fields in every object payload that has them (the vault re-checks and
    /// re-seals the payload, and its audit log commits to the change).
    fn rectify<'a>(
        &'a self,
        subject: &'a Subject,
        changes: &'a serde_json::Map<String, serde_json::Value>,
    ) -> BoxFuture<'a, Result<u64, SourceError>> {
        Box::pin(self.each_record(subject, move |r| {
            let serde_json::Value::Object(m) = r.payload.as_ref()? else {
                return None;
            };
            let mut next = m.clone();
            let mut touched = false;
            for (k, v) in changes {
                if next.contains_key(k) && next.get(k) != Some(v) {
                    next.insert(k.clone(), v.clone());
                    touched = true;
                }
            }
            touched.then_some(RecordUpdate {
                payload: Some(serde_json::Value::Object(next)),
                legal_hold: None,
                restricted: None,
            })
        }))
    }

    fn restrict<'a>(
        &'a self,
        subject: &'a Subject,
        restricted: bool,
    ) -> BoxFuture<'a, Result<u64, SourceError>> {
        Box::pin(self.each_record(subject, move |r| {
            (r.restricted != restricted).then_some(RecordUpdate {
                payload: None,
                legal_hold: None,
                restricted: Some(restricted),
            })
        }))
    }
}
