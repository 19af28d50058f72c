//! Web analytics as a [`Source`]: the events of one visitor, found by the pseudonym of the
//! tracker's visitor id (the value the `/optout` page shows; knowing it is the proof of holding
//! it: it is random and lives in the visitor's browser), and, for a signed-in visitor, by the
//! pseudonym of their user id (the `uid` the platform's pages give the tracker, which is the
//! subject's `account_id` in the vault).
//!
//! - access and portability: every stored event of the visitor, on every site;
//! - erasure: those events and the visitor's day entries are deleted (the hourly totals are
//!   anonymous counts and stay);
//! - objection (art. 21, analytics rests on legitimate interests) and consent withdrawal:
//!   the visitor is opted out on the server (no hit of theirs is recorded any more, whatever
//!   their browser sends; the opt-out is keyed by visitor id, so a subject known only by
//!   their user id is not opted out) and their events are deleted;
//! - restriction: the visitor is opted out (nothing new is collected); what is stored stays,
//!   only stored (reports read the anonymous totals, never the events);
//! - rectification: analytics events record what happened and carry nothing to correct.
//!
//! Pseudonyms of earlier periods cannot be reached: their salt is destroyed, so nobody can link
//! those events to a visitor id any more (they are then anonymous and out of scope).

use std::sync::Arc;

use tutela_analytics::Analytics;
use tutela_crypto::IdentifierKind;
use tutela_store::analytics::{EventRow, kind};

use crate::source::{BoxFuture, Erased, Source, SourceError, SourceRecord, Subject};

/// How the tracker knew the subject.
#[derive(Clone, Copy)]
enum Who<'a> {
    /// The tracker's visitor id (cookie value).
    Visitor(&'a str),
    /// The platform's user id (`uid`), the subject's account id in the vault.
    User(&'a str),
}

pub struct AnalyticsSource {
    analytics: Arc<Analytics>,
    purpose: String,
    /// Portability covers the events: data observed from the subject's use of a service counts
    /// as provided by them (EDPB guidelines on portability, WP242 rev.01).
    provided: bool,
}

impl std::fmt::Debug for AnalyticsSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnalyticsSource")
            .field("purpose", &self.purpose)
            .finish_non_exhaustive()
    }
}

fn err(e: tutela_analytics::Error) -> SourceError {
    match e {
        tutela_analytics::Error::Store(s) => {
            SourceError::Temporary(format!("analytics storage: {s}"))
        }
        other => SourceError::Permanent(other.to_string()),
    }
}

fn date(secs: i64) -> String {
    jiff::Timestamp::from_second(secs)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn event_fields(e: &EventRow) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    m.insert("site_id".into(), e.site_id.into());
    m.insert("at".into(), date(e.ts).into());
    m.insert("visit_started_at".into(), date(e.visit_start).into());
    m.insert("type".into(), kind::name(e.kind).into());
    let opt = |m: &mut serde_json::Map<String, serde_json::Value>, k: &str, v: &Option<String>| {
        if let Some(v) = v {
            m.insert(k.into(), v.clone().into());
        }
    };
    opt(&mut m, "url", &e.url);
    opt(&mut m, "title", &e.title);
    opt(&mut m, "event_category", &e.ev_category);
    opt(&mut m, "event_action", &e.ev_action);
    opt(&mut m, "event_name", &e.ev_name);
    if let Some(v) = e.ev_value {
        m.insert("event_value".into(), v.into());
    }
    opt(&mut m, "referrer", &e.referrer);
    opt(&mut m, "ip_prefix", &e.ip_prefix);
    opt(&mut m, "browser", &e.browser);
    opt(&mut m, "browser_version", &e.browser_version);
    opt(&mut m, "os", &e.os);
    opt(&mut m, "os_version", &e.os_version);
    opt(&mut m, "device", &e.device);
    opt(&mut m, "resolution", &e.resolution);
    m
}

impl AnalyticsSource {
    /// Fails when analytics runs without a purpose (it then stores nothing).
    pub fn new(analytics: Arc<Analytics>) -> Result<AnalyticsSource, SourceError> {
        let Some(policy) = &analytics.policy else {
            return Err(SourceError::Permanent(
                "web analytics has no purpose in the register".into(),
            ));
        };
        let purpose = policy.purpose_id.clone();
        Ok(AnalyticsSource {
            purpose,
            provided: true,
            analytics,
        })
    }

    /// The visitor ids of the subject (normalised hexadecimal).
    fn visitor_ids(subject: &Subject) -> impl Iterator<Item = &str> {
        subject
            .identifiers
            .iter()
            .filter(|(k, v)| {
                *k == IdentifierKind::VisitorId && tutela_analytics::pseudonym::is_visitor_id(v)
            })
            .map(|(_, v)| v.as_str())
    }

    /// The subject's account ids: the user id (`uid`, Matomo's `setUserId`) under which the
    /// hits of a signed-in visitor are counted.
    fn user_ids(subject: &Subject) -> impl Iterator<Item = &str> {
        subject
            .identifiers
            .iter()
            .filter(|(k, _)| *k == IdentifierKind::AccountId)
            .map(|(_, v)| v.as_str())
    }

    /// The stored events of one of the subject's visitor ids or user ids on one site.
    async fn events_of(&self, site: i64, who: Who<'_>) -> Result<Vec<EventRow>, SourceError> {
        let found = match who {
            Who::Visitor(id) => self.analytics.visitor_events(site, id).await,
            Who::User(id) => self.analytics.user_events(site, id).await,
        };
        Ok(found.map_err(err)?.unwrap_or_default())
    }

    /// Everyone the subject was to the tracker: their visitor ids, then their user ids.
    fn whos(subject: &Subject) -> impl Iterator<Item = Who<'_>> {
        Self::visitor_ids(subject)
            .map(Who::Visitor)
            .chain(Self::user_ids(subject).map(Who::User))
    }

    async fn do_access(&self, subject: &Subject) -> Result<Vec<SourceRecord>, SourceError> {
        let mut out = Vec::new();
        for who in Self::whos(subject) {
            for site in self.analytics.sites() {
                let events = self.events_of(site.id, who).await?;
                out.extend(events.iter().map(|e| SourceRecord {
                    collection: "analytics_events".into(),
                    purpose: Some(self.purpose.clone()),
                    category: None,
                    provided_by_subject: self.provided,
                    fields: event_fields(e),
                }));
            }
        }
        Ok(out)
    }

    async fn do_erase(&self, subject: &Subject) -> Result<Erased, SourceError> {
        let mut out = Erased::default();
        for who in Self::whos(subject) {
            for site in self.analytics.sites() {
                let erased = match who {
                    Who::Visitor(id) => self.analytics.erase_visitor(site.id, id).await,
                    Who::User(id) => self.analytics.erase_user(site.id, id).await,
                };
                out.deleted += erased.map_err(err)?.unwrap_or(0);
            }
        }
        if out.deleted > 0 {
            // On SQLite, fold the WAL into the main file, where secure_delete zeroed the rows.
            self.analytics
                .store()
                .vault_flush_erased()
                .await
                .map_err(|e| SourceError::Temporary(format!("analytics storage: {e}")))?;
        }
        Ok(out)
    }

    /// Opts the visitor out on every site; returns on how many sites.
    async fn opt_out(&self, subject: &Subject) -> Result<u64, SourceError> {
        let now = jiff::Timestamp::now().as_second();
        let mut n = 0;
        for id in Self::visitor_ids(subject) {
            for site in self.analytics.sites() {
                if self
                    .analytics
                    .opt_out_visitor(site.id, id, now)
                    .await
                    .map_err(err)?
                {
                    n += 1;
                }
            }
        }
        Ok(n)
    }

    /// Opt-out first (no new event can slip in after the deletion), then deletion.
    async fn stop_and_erase(&self, subject: &Subject) -> Result<Erased, SourceError> {
        self.opt_out(subject).await?;
        self.do_erase(subject).await
    }
}

impl Source for AnalyticsSource {
    fn name(&self) -> &str {
        "analytics"
    }

    fn supports(&self, action: &str) -> bool {
        matches!(
            action,
            "access" | "erase" | "restrict" | "object" | "withdraw"
        )
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

    /// Restriction stops collection (opt-out); lifting it does not opt the visitor back in:
    /// their browser's own choice decides again only for new visitor ids.
    fn restrict<'a>(
        &'a self,
        subject: &'a Subject,
        restricted: bool,
    ) -> BoxFuture<'a, Result<u64, SourceError>> {
        Box::pin(async move {
            if restricted {
                self.opt_out(subject).await
            } else {
                Ok(0)
            }
        })
    }

    fn object<'a>(&'a self, subject: &'a Subject) -> BoxFuture<'a, Result<Erased, SourceError>> {
        Box::pin(self.stop_and_erase(subject))
    }

    fn withdraw<'a>(&'a self, subject: &'a Subject) -> BoxFuture<'a, Result<Erased, SourceError>> {
        Box::pin(self.stop_and_erase(subject))
    }
}
