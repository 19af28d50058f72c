//! The seam through which a rights request reaches the places that hold personal data.
//!
//! Every place — the vault, analytics events, consent and security records, the platform's own
//! database through the SQL connector, processors through webhooks — implements [`Source`] for one
//! subject, described by the identifiers the request established. The execution engine plans
//! one step per (source, action) in the store (`rights_request_steps`), runs it, records the
//! outcome and retries failures with back-off, so a crash resumes where it stopped. Sources must
//! therefore be idempotent: erasing twice erases nothing more and is not an error.
//!
//! Implementations: [`crate::vault_source`], [`crate::analytics_source`],
//! [`crate::consent_source`] and the connectors ([`crate::connectors`]).

use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};
use tutela_crypto::IdentifierKind;

/// A boxed future, so sources can be kept as `dyn Source`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Who the request is about: the identifiers established for the requester.
#[derive(Clone, Debug)]
pub struct Subject {
    pub identifiers: Vec<(IdentifierKind, String)>,
}

/// One record a source holds about the subject.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SourceRecord {
    /// Table, collection or record type.
    pub collection: String,
    /// Register purpose and category, when the source knows them.
    pub purpose: Option<String>,
    pub category: Option<String>,
    /// Whether the subject provided it (portability, art. 20).
    pub provided_by_subject: bool,
    pub fields: serde_json::Map<String, serde_json::Value>,
}

/// What an erasure kept, and why (legal obligations win, visibly).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Kept {
    pub collection: String,
    pub count: u64,
    pub reason: String,
    /// Until when it is kept (a date or words such as "10 years after the invoice"), when known.
    pub until: Option<String>,
}

/// The result of an erasure on one source. Counts and reasons only: no personal data.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Erased {
    pub deleted: u64,
    pub masked: u64,
    pub kept: Vec<Kept>,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Worth retrying later (network, lock, unavailable service).
    #[error("temporary failure: {0}")]
    Temporary(String),
    /// Retrying will not help (configuration, refused by the remote side).
    #[error("permanent failure: {0}")]
    Permanent(String),
}

/// A place that holds personal data, seen from a rights request.
pub trait Source: Send + Sync {
    /// Stable name recorded in the steps (`vault`, `analytics`, `sql:platform`, `webhook:crm`).
    fn name(&self) -> &str;
    /// Whether the source takes part in `action` (`access`, `erase`, `restrict`, `object`,
    /// `withdraw`); the engine plans steps only where it does. Every source serves the first three.
    fn supports(&self, action: &str) -> bool {
        matches!(action, "access" | "erase" | "restrict")
    }
    /// Objection (art. 21) to processing based on legitimate interests: stop it for the subject
    /// and delete what it collected. Only sources whose `supports("object")` is true are asked.
    fn object<'a>(&'a self, _subject: &'a Subject) -> BoxFuture<'a, Result<Erased, SourceError>> {
        Box::pin(async {
            Err(SourceError::Permanent(
                "this source holds no processing based on legitimate interests".into(),
            ))
        })
    }
    /// Consent withdrawal (art. 7(3)): record it and stop what rested on the consent. Only
    /// sources whose `supports("withdraw")` is true are asked.
    fn withdraw<'a>(&'a self, _subject: &'a Subject) -> BoxFuture<'a, Result<Erased, SourceError>> {
        Box::pin(async {
            Err(SourceError::Permanent(
                "this source holds no processing based on consent".into(),
            ))
        })
    }
    /// Everything the source holds about the subject (access, portability).
    fn access<'a>(
        &'a self,
        subject: &'a Subject,
    ) -> BoxFuture<'a, Result<Vec<SourceRecord>, SourceError>>;
    /// Erase the subject, except what the law obliges to keep (said in [`Erased::kept`]).
    fn erase<'a>(&'a self, subject: &'a Subject) -> BoxFuture<'a, Result<Erased, SourceError>>;
    /// Apply corrections (field → new value) to the subject's records; returns how many changed.
    fn rectify<'a>(
        &'a self,
        subject: &'a Subject,
        changes: &'a serde_json::Map<String, serde_json::Value>,
    ) -> BoxFuture<'a, Result<u64, SourceError>>;
    /// Flag (or unflag) the subject's records as restricted: stored, excluded from processing.
    fn restrict<'a>(
        &'a self,
        subject: &'a Subject,
        restricted: bool,
    ) -> BoxFuture<'a, Result<u64, SourceError>>;
}
