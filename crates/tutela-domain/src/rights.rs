//! Data-subject rights requests: what can be asked, the life of a request, and its deadlines.
//!
//! No I/O. The store persists a [`RequestStatus`]; every change goes through
//! [`RequestStatus::apply`], a pure function that refuses illegal moves with a clear error, so
//! the HTTP API, the console and the jobs cannot disagree on what a request may do next.
//!
//! ```text
//!  received ──► awaiting_verification ◄──► need_more_information
//!     │                 │                          │
//!     └──────────────►  verified  ◄────────────────┘
//!                          │
//!                          ▼
//!                     in_progress ──► extended ──► replied ──► closed
//!                          └────────────────────────┘
//!  any open state ──► rejected (art. 12(5) with reasons, or identity not established)
//!  any open state ──► withdrawn (the requester takes the request back)
//! ```
//!
//! Deadlines (art. 12(3)) are calendar arithmetic in UTC through [`crate::retention::add_period`]:
//! one month after 31 January is the last day of February (28 or 29). The extension counts from
//! the original due date, so it is never longer than the register's `max_extension`, and it may
//! only be decided (and the requester told, with reasons) before that due date.

use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::register::RightsSettings;
use crate::retention::{DeadlineError, add_period};

/// Longest reason text accepted for an extension or a rejection (characters).
pub const MAX_REASON_CHARS: usize = 2000;

/// The rights a person may exercise. The DPV terms are those of the DPV GDPR extension
/// (`eu-gdpr:`), which names each right after its article.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RightKind {
    /// Art. 15, `eu-gdpr:A15` (right of access): a copy of the data and the art. 15 report.
    Access,
    /// Art. 16, `eu-gdpr:A16` (right to rectification).
    Rectification,
    /// Art. 17, `eu-gdpr:A17` (right to erasure).
    Erasure,
    /// Art. 18, `eu-gdpr:A18` (right to restriction of processing).
    Restriction,
    /// Art. 21, `eu-gdpr:A21` (right to object).
    Objection,
    /// Art. 20, `eu-gdpr:A20` (right to data portability).
    Portability,
    /// Art. 7(3), `eu-gdpr:A7-3` (right to withdraw consent).
    ConsentWithdrawal,
    /// French Loi Informatique et Libertés art. 85: a person records what is to happen to their
    /// data after death and who carries it out. No DPV term exists for it.
    AfterDeathInstructions,
    /// A death notice from an executor or heir (art. 85 LIL): once verified, the data is handled
    /// as instructed, or destroyed except evidence and legal-obligation records.
    DeathNotice,
}

impl RightKind {
    pub const ALL: [RightKind; 9] = [
        RightKind::Access,
        RightKind::Rectification,
        RightKind::Erasure,
        RightKind::Restriction,
        RightKind::Objection,
        RightKind::Portability,
        RightKind::ConsentWithdrawal,
        RightKind::AfterDeathInstructions,
        RightKind::DeathNotice,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RightKind::Access => "access",
            RightKind::Rectification => "rectification",
            RightKind::Erasure => "erasure",
            RightKind::Restriction => "restriction",
            RightKind::Objection => "objection",
            RightKind::Portability => "portability",
            RightKind::ConsentWithdrawal => "consent_withdrawal",
            RightKind::AfterDeathInstructions => "after_death_instructions",
            RightKind::DeathNotice => "death_notice",
        }
    }

    pub fn parse(s: &str) -> Option<RightKind> {
        RightKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The DPV term (GDPR extension), when one exists.
    pub fn dpv(self) -> Option<&'static str> {
        Some(match self {
            RightKind::Access => "eu-gdpr:A15",
            RightKind::Rectification => "eu-gdpr:A16",
            RightKind::Erasure => "eu-gdpr:A17",
            RightKind::Restriction => "eu-gdpr:A18",
            RightKind::Portability => "eu-gdpr:A20",
            RightKind::Objection => "eu-gdpr:A21",
            RightKind::ConsentWithdrawal => "eu-gdpr:A7-3",
            RightKind::AfterDeathInstructions | RightKind::DeathNotice => return None,
        })
    }

    /// The article that grants the right.
    pub fn article(self) -> &'static str {
        match self {
            RightKind::Access => "GDPR art. 15",
            RightKind::Rectification => "GDPR art. 16",
            RightKind::Erasure => "GDPR art. 17",
            RightKind::Restriction => "GDPR art. 18",
            RightKind::Objection => "GDPR art. 21",
            RightKind::Portability => "GDPR art. 20",
            RightKind::ConsentWithdrawal => "GDPR art. 7(3)",
            RightKind::AfterDeathInstructions | RightKind::DeathNotice => {
                "Loi Informatique et Libertés art. 85"
            }
        }
    }

    /// Whether several requests of this kind from one person are one request while it is open
    /// (an access request repeated while the first runs is the same request; two different
    /// rectifications are not merged away: their free texts are both kept).
    pub fn merges_repeats(self) -> bool {
        !matches!(self, RightKind::DeathNotice)
    }

    /// Label in the portal's language (`en`, `fr`; anything else gets English).
    pub fn label(self, lang: &str) -> &'static str {
        let fr = lang == "fr";
        match (self, fr) {
            (RightKind::Access, false) => "Access my data (a copy and how it is used)",
            (RightKind::Access, true) => "Accéder à mes données (copie et usage)",
            (RightKind::Rectification, false) => "Correct or complete my data",
            (RightKind::Rectification, true) => "Rectifier ou compléter mes données",
            (RightKind::Erasure, false) => "Erase my data",
            (RightKind::Erasure, true) => "Effacer mes données",
            (RightKind::Restriction, false) => "Restrict the processing of my data",
            (RightKind::Restriction, true) => "Limiter le traitement de mes données",
            (RightKind::Objection, false) => "Object to processing based on legitimate interest",
            (RightKind::Objection, true) => {
                "M'opposer aux traitements fondés sur l'intérêt légitime"
            }
            (RightKind::Portability, false) => "Receive the data I provided in a reusable format",
            (RightKind::Portability, true) => {
                "Recevoir les données que j'ai fournies dans un format réutilisable"
            }
            (RightKind::ConsentWithdrawal, false) => "Withdraw my consent",
            (RightKind::ConsentWithdrawal, true) => "Retirer mon consentement",
            (RightKind::AfterDeathInstructions, false) => {
                "Give instructions for my data after my death"
            }
            (RightKind::AfterDeathInstructions, true) => {
                "Donner des directives pour mes données après mon décès"
            }
            (RightKind::DeathNotice, false) => "Report the death of a person",
            (RightKind::DeathNotice, true) => "Signaler le décès d'une personne",
        }
    }
}

impl fmt::Display for RightKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a request is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    /// Recorded; nothing asked of the requester yet.
    Received,
    /// A verification challenge is out (e-mail code or link); nothing is executed meanwhile.
    AwaitingVerification,
    /// The DPO asked for more information to establish identity (art. 12(6)).
    NeedMoreInformation,
    /// Identity established; ready to execute.
    Verified,
    /// Being executed across the sources.
    InProgress,
    /// Deadline extended (art. 12(3)), the requester told why.
    Extended,
    /// The answer was sent; the request record is kept until its purge date.
    Replied,
    /// Nothing more to do.
    Closed,
    /// Refused, with reasons given to the requester (art. 12(4), 12(5)).
    Rejected,
    /// Taken back by the requester before the reply.
    Withdrawn,
}

impl RequestState {
    pub const ALL: [RequestState; 10] = [
        RequestState::Received,
        RequestState::AwaitingVerification,
        RequestState::NeedMoreInformation,
        RequestState::Verified,
        RequestState::InProgress,
        RequestState::Extended,
        RequestState::Replied,
        RequestState::Closed,
        RequestState::Rejected,
        RequestState::Withdrawn,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Received => "received",
            RequestState::AwaitingVerification => "awaiting_verification",
            RequestState::NeedMoreInformation => "need_more_information",
            RequestState::Verified => "verified",
            RequestState::InProgress => "in_progress",
            RequestState::Extended => "extended",
            RequestState::Replied => "replied",
            RequestState::Closed => "closed",
            RequestState::Rejected => "rejected",
            RequestState::Withdrawn => "withdrawn",
        }
    }

    pub fn parse(s: &str) -> Option<RequestState> {
        RequestState::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Open requests still owe the requester an answer: they count for deadlines and merging.
    pub fn is_open(self) -> bool {
        matches!(
            self,
            RequestState::Received
                | RequestState::AwaitingVerification
                | RequestState::NeedMoreInformation
                | RequestState::Verified
                | RequestState::InProgress
                | RequestState::Extended
        )
    }

    /// Whether the requester's identity is established in this state.
    pub fn is_verified(self) -> bool {
        matches!(
            self,
            RequestState::Verified
                | RequestState::InProgress
                | RequestState::Extended
                | RequestState::Replied
                | RequestState::Closed
        )
    }
}

impl fmt::Display for RequestState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a request is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectionGround {
    /// Art. 12(5): manifestly unfounded.
    ManifestlyUnfounded,
    /// Art. 12(5): manifestly excessive, in particular because repetitive.
    Excessive,
    /// Art. 12(2), 12(6): the controller could not establish the requester's identity.
    IdentityNotEstablished,
}

impl RejectionGround {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectionGround::ManifestlyUnfounded => "manifestly_unfounded",
            RejectionGround::Excessive => "excessive",
            RejectionGround::IdentityNotEstablished => "identity_not_established",
        }
    }

    pub fn parse(s: &str) -> Option<RejectionGround> {
        [
            RejectionGround::ManifestlyUnfounded,
            RejectionGround::Excessive,
            RejectionGround::IdentityNotEstablished,
        ]
        .into_iter()
        .find(|g| g.as_str() == s)
    }
}

/// Something that happens to a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A verification challenge was sent (e-mail code and link).
    ChallengeSent,
    /// The DPO asks for more information to establish identity (art. 12(6)).
    AskMoreInformation,
    /// The requester answered a "need more information" step; the DPO checks again.
    InformationReceived,
    /// Identity established (code, link, platform assertion or DPO).
    Verified,
    /// Execution across the sources starts.
    StartExecution,
    /// Extend the deadline to `until` (at most `max_extension` after the due date), with the
    /// reasons told to the requester in a notice sent before the original due date.
    Extend { until: Timestamp, reasons: String },
    /// The answer was sent.
    Reply,
    /// Nothing more to do after the reply.
    Close,
    /// Refused, with the ground and the explanation given to the requester.
    Reject {
        ground: RejectionGround,
        reasons: String,
    },
    /// The requester takes the request back.
    Withdraw,
}

impl Event {
    pub fn name(&self) -> &'static str {
        match self {
            Event::ChallengeSent => "challenge_sent",
            Event::AskMoreInformation => "ask_more_information",
            Event::InformationReceived => "information_received",
            Event::Verified => "verified",
            Event::StartExecution => "start_execution",
            Event::Extend { .. } => "extend",
            Event::Reply => "reply",
            Event::Close => "close",
            Event::Reject { .. } => "reject",
            Event::Withdraw => "withdraw",
        }
    }
}

/// Why a transition was refused. Messages name states and dates, never personal data.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("a request in state `{state}` cannot `{event}`{hint}")]
    Illegal {
        state: RequestState,
        event: &'static str,
        hint: &'static str,
    },
    #[error("an extension needs reasons: the requester must be told why (art. 12(3))")]
    MissingReasons,
    #[error("reasons are limited to {MAX_REASON_CHARS} characters")]
    ReasonsTooLong,
    #[error(
        "the deadline can only be extended before the original due date ({due}): the notice must reach the requester within the first month"
    )]
    ExtensionTooLate { due: Timestamp },
    #[error("the deadline was already extended once, to {0}")]
    AlreadyExtended(Timestamp),
    #[error("the extension may run to {limit} at the latest (the register's max_extension)")]
    ExtensionTooLong { limit: Timestamp },
    #[error("the new deadline {until} is not after the current one {due}")]
    ExtensionNotLater { until: Timestamp, due: Timestamp },
    #[error("a rejection needs an explanation for the requester (art. 12(4))")]
    MissingRejectionReasons,
    #[error("{0}")]
    Deadline(#[from] DeadlineError),
}

/// The facts of a request that its life depends on. Holds no personal data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RequestStatus {
    pub kind: RightKind,
    pub state: RequestState,
    pub received_at: Timestamp,
    /// Due date of the answer: receipt + `reply_within`, or the extended date.
    pub due_at: Timestamp,
    /// The original due date, before any extension (the extension notice must precede it).
    pub original_due_at: Timestamp,
    pub extended_until: Option<Timestamp>,
    pub extension_reasons: Option<String>,
    pub verified_at: Option<Timestamp>,
    pub replied_at: Option<Timestamp>,
    /// When the request's own record is purged: reply + `request_records_kept`.
    pub purge_after: Option<Timestamp>,
    pub rejection: Option<(RejectionGround, String)>,
}

/// Due date of a request received at `received_at`: `reply_within` later (calendar months clamp
/// to the month's end: received 31 January → due 28 or 29 February).
pub fn due_date(
    settings: &RightsSettings,
    received_at: Timestamp,
) -> Result<Timestamp, DeadlineError> {
    add_period(received_at, &settings.reply_within)
}

/// The latest date an extension may reach: the original due date + `max_extension`.
pub fn extension_limit(
    settings: &RightsSettings,
    original_due: Timestamp,
) -> Result<Timestamp, DeadlineError> {
    add_period(original_due, &settings.max_extension)
}

/// When the record of a request answered at `replied_at` is purged.
pub fn purge_date(
    settings: &RightsSettings,
    replied_at: Timestamp,
) -> Result<Timestamp, DeadlineError> {
    add_period(replied_at, &settings.request_records_kept)
}

/// How urgent an open request is at `now`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Urgency {
    /// Due in more than `soon`.
    OnTime,
    /// Due within the reminder window.
    DueSoon,
    /// Past its due date without a reply.
    Overdue,
}

fn bounded_reasons(reasons: &str) -> Result<String, TransitionError> {
    let reasons = reasons.trim();
    if reasons.chars().count() > MAX_REASON_CHARS {
        return Err(TransitionError::ReasonsTooLong);
    }
    Ok(reasons.to_string())
}

impl RequestStatus {
    /// A request just received.
    pub fn new(
        kind: RightKind,
        received_at: Timestamp,
        settings: &RightsSettings,
    ) -> Result<RequestStatus, DeadlineError> {
        let due = due_date(settings, received_at)?;
        Ok(RequestStatus {
            kind,
            state: RequestState::Received,
            received_at,
            due_at: due,
            original_due_at: due,
            extended_until: None,
            extension_reasons: None,
            verified_at: None,
            replied_at: None,
            purge_after: None,
            rejection: None,
        })
    }

    /// Whether an open request is on time, due within `soon_secs`, or overdue at `now`.
    pub fn urgency(&self, now: Timestamp, soon_secs: i64) -> Option<Urgency> {
        if !self.state.is_open() {
            return None;
        }
        let left = self.due_at.as_second() - now.as_second();
        Some(if left < 0 {
            Urgency::Overdue
        } else if left <= soon_secs {
            Urgency::DueSoon
        } else {
            Urgency::OnTime
        })
    }

    /// The status after `event` at `now`, or why the event is not allowed.
    pub fn apply(
        &self,
        event: &Event,
        now: Timestamp,
        settings: &RightsSettings,
    ) -> Result<RequestStatus, TransitionError> {
        use RequestState as S;
        let illegal = |hint: &'static str| TransitionError::Illegal {
            state: self.state,
            event: event.name(),
            hint,
        };
        let mut next = self.clone();
        match event {
            Event::ChallengeSent => match self.state {
                // A new challenge may replace an expired one.
                S::Received | S::AwaitingVerification => next.state = S::AwaitingVerification,
                _ => return Err(illegal(" (only an unverified request gets a challenge)")),
            },
            Event::AskMoreInformation => match self.state {
                S::Received | S::AwaitingVerification | S::NeedMoreInformation => {
                    next.state = S::NeedMoreInformation
                }
                _ => return Err(illegal(" (identity is already established)")),
            },
            Event::InformationReceived => match self.state {
                S::NeedMoreInformation => next.state = S::AwaitingVerification,
                _ => return Err(illegal(" (no information was asked for)")),
            },
            Event::Verified => match self.state {
                S::Received | S::AwaitingVerification | S::NeedMoreInformation => {
                    next.state = S::Verified;
                    next.verified_at = Some(now);
                }
                _ => {
                    return Err(illegal(
                        " (only an open, unverified request can be verified)",
                    ));
                }
            },
            Event::StartExecution => match self.state {
                S::Verified => next.state = S::InProgress,
                S::Received | S::AwaitingVerification | S::NeedMoreInformation => {
                    return Err(illegal(
                        " (unverified requests wait: establish the requester's identity first)",
                    ));
                }
                _ => return Err(illegal("")),
            },
            Event::Extend { until, reasons } => {
                if !self.state.is_open() {
                    return Err(illegal(" (only an open request can be extended)"));
                }
                if let Some(prev) = self.extended_until {
                    return Err(TransitionError::AlreadyExtended(prev));
                }
                let reasons = bounded_reasons(reasons)?;
                if reasons.is_empty() {
                    return Err(TransitionError::MissingReasons);
                }
                if now >= self.original_due_at {
                    return Err(TransitionError::ExtensionTooLate {
                        due: self.original_due_at,
                    });
                }
                let limit = extension_limit(settings, self.original_due_at)?;
                if *until > limit {
                    return Err(TransitionError::ExtensionTooLong { limit });
                }
                if *until <= self.due_at {
                    return Err(TransitionError::ExtensionNotLater {
                        until: *until,
                        due: self.due_at,
                    });
                }
                next.due_at = *until;
                next.extended_until = Some(*until);
                next.extension_reasons = Some(reasons);
                if self.state.is_verified() {
                    next.state = S::Extended;
                }
            }
            Event::Reply => match self.state {
                S::InProgress | S::Extended => {
                    next.state = S::Replied;
                    next.replied_at = Some(now);
                    next.purge_after = Some(purge_date(settings, now)?);
                }
                S::Verified => {
                    return Err(illegal(" (execute the request before replying)"));
                }
                _ => return Err(illegal(" (only a request being handled can be answered)")),
            },
            Event::Close => match self.state {
                S::Replied => next.state = S::Closed,
                _ => return Err(illegal(" (reply first)")),
            },
            Event::Reject { ground, reasons } => {
                if !self.state.is_open() {
                    return Err(illegal(" (the request is no longer open)"));
                }
                let reasons = bounded_reasons(reasons)?;
                if reasons.is_empty() {
                    return Err(TransitionError::MissingRejectionReasons);
                }
                next.state = S::Rejected;
                next.rejection = Some((*ground, reasons));
                // The refusal is the answer: the record is kept as long as any other reply's.
                next.replied_at = Some(now);
                next.purge_after = Some(purge_date(settings, now)?);
            }
            Event::Withdraw => {
                if !self.state.is_open() {
                    return Err(illegal(" (the request is no longer open)"));
                }
                next.state = S::Withdrawn;
                next.replied_at = Some(now);
                next.purge_after = Some(purge_date(settings, now)?);
            }
        }
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::register::{AfterDeath, Period, Text};

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn settings() -> RightsSettings {
        RightsSettings {
            reply_within: Period::parse("1 month"),
            max_extension: Period::parse("2 months"),
            request_records_kept: Period::parse("1 year"),
            after_death: AfterDeath::Destroy,
            email: "dpo@example.org".into(),
            postal_address: "1 rue".into(),
            identity_proof: Text::default(),
        }
    }

    fn verified(kind: RightKind, received: &str) -> RequestStatus {
        let s = settings();
        let r = RequestStatus::new(kind, ts(received), &s).unwrap();
        r.apply(&Event::Verified, ts(received), &s).unwrap()
    }

    #[test]
    fn due_date_is_one_calendar_month_with_month_end_clamping() {
        let s = settings();
        let cases = [
            ("2026-01-31T09:00:00Z", "2026-02-28T09:00:00Z"),
            ("2028-01-31T09:00:00Z", "2028-02-29T09:00:00Z"), // leap year
            ("2028-01-30T09:00:00Z", "2028-02-29T09:00:00Z"),
            ("2026-01-28T09:00:00Z", "2026-02-28T09:00:00Z"),
            ("2026-03-31T23:59:59Z", "2026-04-30T23:59:59Z"),
            ("2026-05-31T00:00:00Z", "2026-06-30T00:00:00Z"),
            ("2026-12-31T12:00:00Z", "2027-01-31T12:00:00Z"),
            ("2026-02-28T12:00:00Z", "2026-03-28T12:00:00Z"),
            ("2100-01-31T00:00:00Z", "2100-02-28T00:00:00Z"), // 2100 is not a leap year
            ("2000-01-31T00:00:00Z", "2000-02-29T00:00:00Z"), // 2000 is
        ];
        for (received, due) in cases {
            assert_eq!(due_date(&s, ts(received)).unwrap(), ts(due), "{received}");
        }
    }

    #[test]
    fn extension_limit_and_purge_date() {
        let s = settings();
        // Due 28 February 2026 → at most 28 April.
        assert_eq!(
            extension_limit(&s, ts("2026-02-28T09:00:00Z")).unwrap(),
            ts("2026-04-28T09:00:00Z")
        );
        // Due 31 December → end of February.
        assert_eq!(
            extension_limit(&s, ts("2026-12-31T09:00:00Z")).unwrap(),
            ts("2027-02-28T09:00:00Z")
        );
        // Replied on 29 February 2028 → purged 28 February 2029.
        assert_eq!(
            purge_date(&s, ts("2028-02-29T10:00:00Z")).unwrap(),
            ts("2029-02-28T10:00:00Z")
        );
    }

    #[test]
    fn happy_path_to_closed() {
        let s = settings();
        let r = RequestStatus::new(RightKind::Access, ts("2026-01-31T09:00:00Z"), &s).unwrap();
        assert_eq!(r.state, RequestState::Received);
        assert_eq!(r.due_at, ts("2026-02-28T09:00:00Z"));
        let r = r
            .apply(&Event::ChallengeSent, ts("2026-01-31T09:00:01Z"), &s)
            .unwrap();
        assert_eq!(r.state, RequestState::AwaitingVerification);
        let r = r
            .apply(&Event::Verified, ts("2026-01-31T10:00:00Z"), &s)
            .unwrap();
        assert_eq!(r.verified_at, Some(ts("2026-01-31T10:00:00Z")));
        let r = r
            .apply(&Event::StartExecution, ts("2026-02-01T00:00:00Z"), &s)
            .unwrap();
        let r = r
            .apply(&Event::Reply, ts("2026-02-02T00:00:00Z"), &s)
            .unwrap();
        assert_eq!(r.state, RequestState::Replied);
        assert_eq!(r.purge_after, Some(ts("2027-02-02T00:00:00Z")));
        let r = r
            .apply(&Event::Close, ts("2026-02-03T00:00:00Z"), &s)
            .unwrap();
        assert_eq!(r.state, RequestState::Closed);
        assert!(!r.state.is_open());
    }

    #[test]
    fn unverified_requests_wait() {
        let s = settings();
        let r = RequestStatus::new(RightKind::Erasure, ts("2026-03-01T00:00:00Z"), &s).unwrap();
        let err = r
            .apply(&Event::StartExecution, ts("2026-03-01T00:00:00Z"), &s)
            .unwrap_err();
        assert!(
            err.to_string().contains("unverified requests wait"),
            "{err}"
        );
        let r = r
            .apply(&Event::AskMoreInformation, ts("2026-03-02T00:00:00Z"), &s)
            .unwrap();
        assert_eq!(r.state, RequestState::NeedMoreInformation);
        assert!(
            r.apply(&Event::StartExecution, ts("2026-03-02T00:00:00Z"), &s)
                .is_err()
        );
        assert!(
            r.apply(&Event::Reply, ts("2026-03-02T00:00:00Z"), &s)
                .is_err()
        );
        let r = r
            .apply(&Event::InformationReceived, ts("2026-03-03T00:00:00Z"), &s)
            .unwrap();
        assert_eq!(r.state, RequestState::AwaitingVerification);
        let r = r
            .apply(&Event::Verified, ts("2026-03-04T00:00:00Z"), &s)
            .unwrap();
        assert!(
            r.apply(&Event::Verified, ts("2026-03-04T00:00:00Z"), &s)
                .is_err()
        );
        assert!(
            r.apply(&Event::AskMoreInformation, ts("2026-03-04T00:00:00Z"), &s)
                .is_err()
        );
        assert!(
            r.apply(&Event::InformationReceived, ts("2026-03-04T00:00:00Z"), &s)
                .is_err()
        );
    }

    #[test]
    fn extension_rules() {
        let s = settings();
        let r = verified(RightKind::Access, "2026-01-31T09:00:00Z");
        let r = r
            .apply(&Event::StartExecution, ts("2026-02-01T00:00:00Z"), &s)
            .unwrap();
        let extend = |until: &str, reasons: &str| Event::Extend {
            until: ts(until),
            reasons: reasons.into(),
        };
        // No reasons.
        assert_eq!(
            r.apply(
                &extend("2026-03-31T09:00:00Z", "  "),
                ts("2026-02-10T00:00:00Z"),
                &s
            ),
            Err(TransitionError::MissingReasons)
        );
        // Too long: due 28 Feb + 2 months = 28 April.
        assert_eq!(
            r.apply(
                &extend("2026-04-29T09:00:00Z", "volume"),
                ts("2026-02-10T00:00:00Z"),
                &s
            ),
            Err(TransitionError::ExtensionTooLong {
                limit: ts("2026-04-28T09:00:00Z")
            })
        );
        // Too late: the first month is over.
        assert!(matches!(
            r.apply(
                &extend("2026-03-31T09:00:00Z", "volume"),
                ts("2026-02-28T09:00:00Z"),
                &s
            ),
            Err(TransitionError::ExtensionTooLate { .. })
        ));
        // Not later than the current due date.
        assert!(matches!(
            r.apply(
                &extend("2026-02-20T09:00:00Z", "volume"),
                ts("2026-02-10T00:00:00Z"),
                &s
            ),
            Err(TransitionError::ExtensionNotLater { .. })
        ));
        // Reasons are bounded.
        let long = "x".repeat(MAX_REASON_CHARS + 1);
        assert_eq!(
            r.apply(
                &extend("2026-03-31T09:00:00Z", &long),
                ts("2026-02-10T00:00:00Z"),
                &s
            ),
            Err(TransitionError::ReasonsTooLong)
        );
        // Good.
        let e = r
            .apply(
                &extend("2026-04-28T09:00:00Z", "many systems to search"),
                ts("2026-02-27T23:59:59Z"),
                &s,
            )
            .unwrap();
        assert_eq!(e.state, RequestState::Extended);
        assert_eq!(e.due_at, ts("2026-04-28T09:00:00Z"));
        assert_eq!(e.original_due_at, ts("2026-02-28T09:00:00Z"));
        // Once only.
        assert!(matches!(
            e.apply(
                &extend("2026-04-20T09:00:00Z", "again"),
                ts("2026-02-27T23:59:59Z"),
                &s
            ),
            Err(TransitionError::AlreadyExtended(_))
        ));
        // Overdue relative to the new date only.
        assert_eq!(
            e.urgency(ts("2026-03-15T00:00:00Z"), 7 * 86400),
            Some(Urgency::OnTime)
        );
        assert_eq!(
            e.urgency(ts("2026-04-28T09:00:01Z"), 7 * 86400),
            Some(Urgency::Overdue)
        );
        let replied = e
            .apply(&Event::Reply, ts("2026-04-01T00:00:00Z"), &s)
            .unwrap();
        assert_eq!(replied.urgency(ts("2027-01-01T00:00:00Z"), 0), None);
    }

    #[test]
    fn an_unverified_request_can_be_extended_and_keeps_its_state() {
        let s = settings();
        let r = RequestStatus::new(RightKind::Access, ts("2026-06-01T00:00:00Z"), &s).unwrap();
        let r = r
            .apply(
                &Event::Extend {
                    until: ts("2026-08-01T00:00:00Z"),
                    reasons: "complex".into(),
                },
                ts("2026-06-15T00:00:00Z"),
                &s,
            )
            .unwrap();
        assert_eq!(r.state, RequestState::Received);
        assert_eq!(r.due_at, ts("2026-08-01T00:00:00Z"));
    }

    #[test]
    fn rejection_and_withdrawal() {
        let s = settings();
        let r = RequestStatus::new(RightKind::Access, ts("2026-06-01T00:00:00Z"), &s).unwrap();
        assert_eq!(
            r.apply(
                &Event::Reject {
                    ground: RejectionGround::Excessive,
                    reasons: "".into()
                },
                ts("2026-06-02T00:00:00Z"),
                &s
            ),
            Err(TransitionError::MissingRejectionReasons)
        );
        let rej = r
            .apply(
                &Event::Reject {
                    ground: RejectionGround::Excessive,
                    reasons: "fifth identical request this month".into(),
                },
                ts("2026-06-02T00:00:00Z"),
                &s,
            )
            .unwrap();
        assert_eq!(rej.state, RequestState::Rejected);
        assert_eq!(rej.purge_after, Some(ts("2027-06-02T00:00:00Z")));
        assert!(
            rej.apply(&Event::Verified, ts("2026-06-03T00:00:00Z"), &s)
                .is_err()
        );
        assert!(
            rej.apply(&Event::Withdraw, ts("2026-06-03T00:00:00Z"), &s)
                .is_err()
        );
        let w = r
            .apply(&Event::Withdraw, ts("2026-06-03T00:00:00Z"), &s)
            .unwrap();
        assert_eq!(w.state, RequestState::Withdrawn);
        assert!(
            w.apply(&Event::Close, ts("2026-06-03T00:00:00Z"), &s)
                .is_err()
        );
    }

    #[test]
    fn names_round_trip() {
        for k in RightKind::ALL {
            assert_eq!(RightKind::parse(k.as_str()), Some(k));
            assert!(!k.label("fr").is_empty() && k.label("fr") != k.label("en"));
        }
        for st in RequestState::ALL {
            assert_eq!(RequestState::parse(st.as_str()), Some(st));
        }
        assert_eq!(RightKind::parse("nope"), None);
        assert_eq!(RightKind::Access.dpv(), Some("eu-gdpr:A15"));
        assert_eq!(RightKind::DeathNotice.dpv(), None);
    }

    /// Every sequence of events leaves the status consistent: verification precedes execution
    /// and reply, the due date never moves beyond receipt + reply_within + max_extension, and a
    /// closed request never reopens.
    #[test]
    fn random_event_sequences_keep_the_invariants() {
        let s = settings();
        let events = |i: u64, now: Timestamp| -> Event {
            match i % 10 {
                0 => Event::ChallengeSent,
                1 => Event::AskMoreInformation,
                2 => Event::InformationReceived,
                3 => Event::Verified,
                4 => Event::StartExecution,
                5 => Event::Extend {
                    until: now + jiff::SignedDuration::from_hours(24 * (i as i64 % 90)),
                    reasons: "load".into(),
                },
                6 => Event::Reply,
                7 => Event::Close,
                8 => Event::Reject {
                    ground: RejectionGround::ManifestlyUnfounded,
                    reasons: "r".into(),
                },
                _ => Event::Withdraw,
            }
        };
        // A small deterministic generator (xorshift) keeps the test dependency-free.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..2000 {
            let start = ts("2024-01-31T12:00:00Z")
                + jiff::SignedDuration::from_hours((x % (24 * 800)) as i64);
            let mut r = RequestStatus::new(RightKind::Access, start, &s).unwrap();
            let hard_limit = extension_limit(&s, due_date(&s, start).unwrap()).unwrap();
            let mut now = start;
            for _ in 0..12 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                now += jiff::SignedDuration::from_hours((x % 240) as i64);
                let before = r.clone();
                if let Ok(next) = r.apply(&events(x >> 8, now), now, &s) {
                    assert!(before.state.is_open() || next.state == RequestState::Closed);
                    if matches!(next.state, RequestState::InProgress | RequestState::Replied) {
                        assert!(next.verified_at.is_some());
                    }
                    assert!(next.due_at <= hard_limit);
                    if let Some(replied) = next.replied_at {
                        assert!(next.purge_after.unwrap() > replied);
                    }
                    r = next;
                } else {
                    // A refused event changes nothing.
                    assert_eq!(r, before);
                }
            }
        }
    }
}
