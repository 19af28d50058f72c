//! Execution of verified requests across every [`Source`]: one step per (request, source,
//! action), planned in the store, claimed under a lease, recorded when done, retried with
//! exponential back-off when a source fails temporarily. A crash loses nothing: an unfinished
//! step's lease runs out and the next run takes it over; sources are idempotent.

use std::sync::Arc;

use jiff::Timestamp;
use tutela_domain::rights::{Event, RequestState, RightKind};
use tutela_store::RightsStep;

use crate::package::Results;
use crate::service::AfterDeathDirective;
use crate::service::{RequestView, RightsService};
use crate::source::{Erased, Source, SourceError, SourceRecord};
use crate::{Result, RightsError};

/// How long a claimed step is leased to its runner (seconds).
pub const STEP_LEASE_SECS: i64 = 300;

/// Delay before retry number `attempt` (1 = after the first failure): `base · 2^(attempt-1)`,
/// capped at six hours.
pub fn backoff_secs(attempt: i64, base_secs: i64) -> i64 {
    let exp = attempt.clamp(1, 20) - 1;
    base_secs.saturating_mul(1_i64 << exp).min(6 * 3600)
}

/// What a request of `kind` does on each source.
pub fn action_for(kind: RightKind) -> Option<&'static str> {
    match kind {
        RightKind::Access | RightKind::Portability => Some("access"),
        RightKind::Erasure | RightKind::DeathNotice => Some("erase"),
        RightKind::Restriction => Some("restrict"),
        // Objection stops legitimate-interest processing (analytics: opt-out and deletion);
        // withdrawal is recorded (consent records) and applied (analytics).
        RightKind::Objection => Some("object"),
        RightKind::ConsentWithdrawal => Some("withdraw"),
        // Rectification needs the corrections the DPO settles with the requester
        // (`Executor::rectify`); after-death instructions are recorded, and act on a death notice.
        RightKind::Rectification | RightKind::AfterDeathInstructions => None,
    }
}

/// What one run of the step engine did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunReport {
    pub done: usize,
    pub retried: usize,
    pub failed: usize,
}

pub struct Executor {
    svc: RightsService,
    sources: Vec<Arc<dyn Source>>,
    max_attempts: i64,
    base_backoff_secs: i64,
}

impl Executor {
    pub fn new(svc: RightsService, sources: Vec<Arc<dyn Source>>) -> Executor {
        Executor {
            svc,
            sources,
            max_attempts: 8,
            base_backoff_secs: 30,
        }
    }

    /// Attempts per step before it is given up, and the first retry delay.
    pub fn with_retries(mut self, max_attempts: i64, base_backoff_secs: i64) -> Executor {
        self.max_attempts = max_attempts.max(1);
        self.base_backoff_secs = base_backoff_secs.max(1);
        self
    }

    fn source(&self, name: &str) -> Option<&Arc<dyn Source>> {
        self.sources.iter().find(|s| s.name() == name)
    }

    /// Starts a verified request: moves it to `in_progress` and plans one step per source.
    pub async fn start(&self, id: &str, actor: &str, now: Timestamp) -> Result<RequestView> {
        let view = self
            .svc
            .transition(id, &Event::StartExecution, None, actor, now)
            .await?;
        let mut action = action_for(view.kind);
        if view.kind == RightKind::DeathNotice {
            // Loi Informatique et Libertés art. 85: the person's own instructions win; without
            // them the register's default applies (destroy, except evidence and legal obligations).
            let instructions = self
                .svc
                .same_person_requests(id, RightKind::AfterDeathInstructions, now)
                .await?;
            if let Some(instr) = instructions.iter().find(|r| r.state.is_verified()) {
                let directive = self
                    .svc
                    .details(&instr.id)
                    .await?
                    .after_death
                    .map(|a| a.directive);
                self.svc
                    .store()
                    .note_rights_event(
                        id,
                        &format!("after_death_instructions_on_file:{}", instr.id),
                        actor,
                        now.as_second(),
                    )
                    .await?;
                action = match directive {
                    // The person's own directive: erase (except evidence and legal obligations).
                    Some(AfterDeathDirective::Erase) => Some("erase"),
                    // First a copy for the executor; `finish` plans the erasure once it is ready.
                    Some(AfterDeathDirective::CommunicateThenErase) => Some("access"),
                    // Keep, or free-text instructions the DPO applies by hand.
                    Some(AfterDeathDirective::Keep) | None => None,
                };
                if let Some(d) = directive {
                    self.svc
                        .store()
                        .note_rights_event(
                            id,
                            &format!("after_death_directive:{}", d.as_str()),
                            actor,
                            now.as_second(),
                        )
                        .await?;
                }
            } else if self.svc.register().rights.after_death
                == tutela_domain::register::AfterDeath::KeepUntilHeirsAsk
            {
                self.svc
                    .store()
                    .note_rights_event(
                        id,
                        "after_death_default_keep_until_heirs_ask",
                        actor,
                        now.as_second(),
                    )
                    .await?;
                action = None;
            }
        }
        if let Some(action) = action {
            self.plan(id, action, actor, now).await?;
        }
        Ok(view)
    }

    /// Plans one step of `action` on every source that takes part in it.
    async fn plan(&self, id: &str, action: &str, actor: &str, now: Timestamp) -> Result<()> {
        for s in self.sources.iter().filter(|s| s.supports(action)) {
            if self
                .svc
                .store()
                .plan_rights_step(id, s.name(), action, now.as_second())
                .await?
            {
                self.svc
                    .store()
                    .note_rights_event(
                        id,
                        &format!("step_planned:{}:{action}", s.name()),
                        actor,
                        now.as_second(),
                    )
                    .await?;
            }
        }
        Ok(())
    }

    /// Runs every step that is due at `now`.
    pub async fn run_due(&self, now: Timestamp) -> Result<RunReport> {
        let mut report = RunReport::default();
        loop {
            let steps = self
                .svc
                .store()
                .claim_rights_steps(now.as_second(), STEP_LEASE_SECS, 50)
                .await?;
            if steps.is_empty() {
                return Ok(report);
            }
            for step in steps {
                match self.run_step(&step, now).await? {
                    StepEnd::Done => report.done += 1,
                    StepEnd::Retry => report.retried += 1,
                    StepEnd::Failed => report.failed += 1,
                }
            }
        }
    }

    async fn run_step(&self, step: &RightsStep, now: Timestamp) -> Result<StepEnd> {
        let store = self.svc.store();
        let at = now.as_second();
        let outcome: Result<(String, Option<Vec<u8>>), SourceError> =
            match self.source(&step.source) {
                None => Err(SourceError::Permanent(format!(
                    "source `{}` is not configured any more",
                    step.source
                ))),
                Some(source) => {
                    let subject = self.svc.subject_of(&step.request_id).await?;
                    match step.action.as_str() {
                        "access" => match source.access(&subject).await {
                            Ok(records) => {
                                let json = tutela_crypto::Zeroizing::new(
                                    serde_json::to_vec(&records).expect("serialisable"),
                                );
                                let sealed =
                                    self.svc
                                        .seal_result(&step.request_id, &step.source, &json)?;
                                Ok((
                                    serde_json::json!({"records": records.len()}).to_string(),
                                    Some(sealed),
                                ))
                            }
                            Err(e) => Err(e),
                        },
                        "erase" => source
                            .erase(&subject)
                            .await
                            .map(|e| (serde_json::to_string(&e).expect("serialisable"), None)),
                        "restrict" => source
                            .restrict(&subject, true)
                            .await
                            .map(|n| (serde_json::json!({"restricted": n}).to_string(), None)),
                        "object" => source
                            .object(&subject)
                            .await
                            .map(|e| (serde_json::to_string(&e).expect("serialisable"), None)),
                        "withdraw" => source
                            .withdraw(&subject)
                            .await
                            .map(|e| (serde_json::to_string(&e).expect("serialisable"), None)),
                        other => Err(SourceError::Permanent(format!("unknown action `{other}`"))),
                    }
                }
            };
        let tag = format!("{}:{}", step.source, step.action);
        match outcome {
            Ok((summary, sealed)) => {
                store
                    .complete_rights_step(
                        &step.request_id,
                        &step.source,
                        &step.action,
                        &summary,
                        sealed.as_deref(),
                        at,
                    )
                    .await?;
                store
                    .note_rights_event(&step.request_id, &format!("step_done:{tag}"), "tutela", at)
                    .await?;
                Ok(StepEnd::Done)
            }
            Err(e) => {
                let message = e.to_string();
                let retry =
                    matches!(e, SourceError::Temporary(_)) && step.attempts < self.max_attempts;
                let retry_at =
                    retry.then(|| at + backoff_secs(step.attempts, self.base_backoff_secs));
                store
                    .fail_rights_step(
                        &step.request_id,
                        &step.source,
                        &step.action,
                        &message,
                        retry_at,
                        at,
                    )
                    .await?;
                let event = if retry {
                    format!("step_retry:{tag}:attempt{}", step.attempts)
                } else {
                    format!("step_failed:{tag}")
                };
                store
                    .note_rights_event(&step.request_id, &event, "tutela", at)
                    .await?;
                tracing::warn!(request = %step.request_id, source = %step.source, attempt = step.attempts, retry, "rights step failed: {message}");
                Ok(if retry {
                    StepEnd::Retry
                } else {
                    StepEnd::Failed
                })
            }
        }
    }

    /// Applies corrections the DPO settled with the requester (field → new value) on every
    /// source, and tells the recipients (webhooks). Each source's outcome is recorded in the
    /// history; the vault's audit log commits to the old and new payloads.
    pub async fn rectify(
        &self,
        id: &str,
        changes: &serde_json::Map<String, serde_json::Value>,
        actor: &str,
        now: Timestamp,
    ) -> Result<Vec<(String, std::result::Result<u64, String>)>> {
        let view = self
            .svc
            .status(id, now)
            .await?
            .ok_or(RightsError::NotFound)?;
        if view.kind != RightKind::Rectification {
            return Err(RightsError::Invalid(
                "only a rectification request carries corrections".into(),
            ));
        }
        if !matches!(
            view.state,
            RequestState::InProgress | RequestState::Extended
        ) {
            return Err(RightsError::Invalid(format!(
                "the request is {}, not being handled",
                view.state
            )));
        }
        if changes.is_empty() || changes.len() > 50 {
            return Err(RightsError::Invalid(
                "give 1 to 50 fields to correct".into(),
            ));
        }
        let subject = self.svc.subject_of(id).await?;
        let mut out = Vec::new();
        for s in &self.sources {
            let r = s
                .rectify(&subject, changes)
                .await
                .map_err(|e| e.to_string());
            let event = match &r {
                Ok(n) => format!("rectified:{}:{n}", s.name()),
                Err(_) => format!("rectify_failed:{}", s.name()),
            };
            self.svc
                .store()
                .note_rights_event(id, &event, actor, now.as_second())
                .await?;
            out.push((s.name().to_string(), r));
        }
        Ok(out)
    }

    /// What the steps of a request produced so far, and whether any is still pending.
    pub async fn results(&self, id: &str) -> Result<(Results, usize)> {
        let mut results = Results::default();
        let mut pending = 0;
        for step in self.svc.store().rights_steps(id).await? {
            match step.status.as_str() {
                "done" => {
                    if let Some(sealed) = &step.result_sealed {
                        let plain = self.svc.open_result(id, &step.source, sealed)?;
                        let records: Vec<SourceRecord> =
                            serde_json::from_slice(&plain).map_err(|_| {
                                RightsError::Invalid("stored step result is unreadable".into())
                            })?;
                        results
                            .records
                            .extend(records.into_iter().map(|r| (step.source.clone(), r)));
                    }
                    if matches!(step.action.as_str(), "erase" | "object" | "withdraw") {
                        let erased: Erased = step
                            .outcome
                            .as_deref()
                            .and_then(|o| serde_json::from_str(o).ok())
                            .unwrap_or_default();
                        results.erased.push((step.source.clone(), erased));
                    }
                }
                "failed" => results.failed.push((
                    step.source.clone(),
                    step.last_error.clone().unwrap_or_default(),
                )),
                _ => pending += 1,
            }
        }
        Ok((results, pending))
    }

    /// Once every step is done: builds the response package, stores it behind an expiring link,
    /// tells the requester, and records the reply. Returns the link token (for the API caller).
    pub async fn finish(&self, id: &str, actor: &str, now: Timestamp) -> Result<Option<String>> {
        let view = self
            .svc
            .status(id, now)
            .await?
            .ok_or(RightsError::NotFound)?;
        if !matches!(
            view.state,
            RequestState::InProgress | RequestState::Extended
        ) {
            return Err(RightsError::Invalid(format!(
                "the request is {}, not being handled",
                view.state
            )));
        }
        let (results, pending) = self.results(id).await?;
        if pending > 0 {
            return Err(RightsError::Invalid(format!(
                "{pending} step(s) still running or waiting for a retry"
            )));
        }
        // A death notice whose person asked for a copy before erasure: the copy goes out first,
        // then the erasure is planned; the request is answered once the erasure ran too.
        if view.kind == RightKind::DeathNotice {
            let steps = self.svc.store().rights_steps(id).await?;
            let accessed = steps.iter().any(|s| s.action == "access");
            let erased = steps.iter().any(|s| s.action == "erase");
            if accessed && !erased {
                let zip =
                    crate::package::build_zip(self.svc.register(), &view.lang, &view, &results)
                        .map_err(|e| {
                            RightsError::Invalid(format!("cannot build the package: {e}"))
                        })?;
                let token = self.svc.store_package(&view, zip, now).await?;
                self.plan(id, "erase", actor, now).await?;
                self.svc
                    .store()
                    .note_rights_event(
                        id,
                        "after_death_copy_ready_erasure_planned",
                        actor,
                        now.as_second(),
                    )
                    .await?;
                return Ok(Some(token));
            }
        }
        let replied = self
            .svc
            .transition(id, &Event::Reply, None, actor, now)
            .await?;
        let zip = crate::package::build_zip(self.svc.register(), &replied.lang, &replied, &results)
            .map_err(|e| RightsError::Invalid(format!("cannot build the package: {e}")))?;
        let token = self.svc.store_package(&replied, zip, now).await?;
        Ok(Some(token))
    }
}

enum StepEnd {
    Done,
    Retry,
    Failed,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff_secs(1, 30), 30);
        assert_eq!(backoff_secs(2, 30), 60);
        assert_eq!(backoff_secs(5, 30), 480);
        assert_eq!(backoff_secs(40, 30), 6 * 3600);
        assert_eq!(backoff_secs(0, 30), 30);
    }

    #[test]
    fn every_kind_has_a_plan_or_a_reason() {
        assert_eq!(action_for(RightKind::Access), Some("access"));
        assert_eq!(action_for(RightKind::Portability), Some("access"));
        assert_eq!(action_for(RightKind::Erasure), Some("erase"));
        assert_eq!(action_for(RightKind::DeathNotice), Some("erase"));
        assert_eq!(action_for(RightKind::Restriction), Some("restrict"));
        assert_eq!(action_for(RightKind::Rectification), None);
        assert_eq!(action_for(RightKind::Objection), Some("object"));
        assert_eq!(action_for(RightKind::ConsentWithdrawal), Some("withdraw"));
        assert_eq!(action_for(RightKind::AfterDeathInstructions), None);
    }
}
