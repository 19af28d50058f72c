//! [`RightsService`]: files requests, verifies identities, moves requests through the state
//! machine and lists what is due.

use std::sync::Arc;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tutela_crypto::{IdentifierKind, Zeroizing, normalise, open, seal};
use tutela_domain::Register;
use tutela_domain::rights::{
    Event, RejectionGround, RequestState, RequestStatus, RightKind, Urgency,
};
use tutela_store::{Filed, RightsChallenge, RightsRequestRow, RightsStatusUpdate, Store};

use crate::keys::{RightsKeys, ct_eq, hmac_parts};
use crate::mail::Mailer;
use crate::{Result, RightsError, text};

/// Longest identifier accepted (characters).
pub const MAX_IDENTIFIER_CHARS: usize = 320;
/// Longest free text accepted (characters).
pub const MAX_TEXT_CHARS: usize = 5000;
/// Digits of a verification code.
const CODE_DIGITS: usize = 6;
/// How long a platform assertion stays valid either side of its issue time (seconds).
const ASSERTION_SKEW_SECS: i64 = 300;
const REQUESTER_AAD: &[u8] = b"tutela/rights/requester/v1\0";
const MESSAGE_AAD: &[u8] = b"tutela/rights/message/v1\0";
const RESULT_AAD: &[u8] = b"tutela/rights/result/v1\0";
const PACKAGE_AAD: &[u8] = b"tutela/rights/package/v1\0";
const IDENTITY: &str = "identity";
const DOWNLOAD: &str = "download";

/// Settings of the rights engine (from `tutela.toml`'s `[rights]` and `[mail]`).
pub struct RightsConfig {
    /// Public base URL of this Tutela, for links in e-mails (`https://privacy.example.org`).
    pub public_url: String,
    /// Lifetime of a verification code and link (seconds).
    pub challenge_ttl_secs: i64,
    /// Attempts allowed per code.
    pub max_attempts: i64,
    /// A new code is not sent when the last one is younger than this (seconds): repeated
    /// submissions cannot flood someone's mailbox.
    pub resend_after_secs: i64,
    /// Lifetime of a portal form token (seconds).
    pub form_ttl_secs: i64,
    /// "Due soon" window for the due list and reminders (seconds).
    pub soon_secs: i64,
    /// Shared secret of signed platform assertions (HMAC-SHA256), when configured.
    pub platform_secret: Option<Zeroizing<Vec<u8>>>,
    /// How long a response package can be downloaded (seconds; default 7 days).
    pub package_ttl_secs: i64,
}

impl Default for RightsConfig {
    fn default() -> Self {
        RightsConfig {
            public_url: "http://127.0.0.1:8080".into(),
            challenge_ttl_secs: 24 * 3600,
            max_attempts: 5,
            resend_after_secs: 600,
            form_ttl_secs: 2 * 3600,
            soon_secs: 7 * 86400,
            platform_secret: None,
            package_ttl_secs: 7 * 86400,
        }
    }
}

/// How a request reached us.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// The public portal `/rights`.
    Portal,
    /// The platform's API call.
    Api,
    /// An e-mail, entered by the DPO.
    Email,
    /// A letter, entered by the DPO.
    Post,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Portal => "portal",
            Channel::Api => "api",
            Channel::Email => "email",
            Channel::Post => "post",
        }
    }

    pub fn parse(s: &str) -> Option<Channel> {
        [Channel::Portal, Channel::Api, Channel::Email, Channel::Post]
            .into_iter()
            .find(|c| c.as_str() == s)
    }
}

/// A request as submitted. Holds personal data: it is sealed before it is stored.
pub struct Submission {
    pub kind: RightKind,
    pub channel: Channel,
    pub lang: String,
    pub identifier_kind: IdentifierKind,
    pub identifier: String,
    /// Where to write to the requester (defaults to the identifier when it is an e-mail).
    pub contact_email: Option<String>,
    pub text: String,
    /// Further identifiers and, for after-death instructions, the instructions themselves.
    pub details: RequestDetails,
}

/// Most further identifiers one request may carry.
pub const MAX_EXTRA_IDENTIFIERS: usize = 8;
/// Longest executor name or contact (characters).
pub const MAX_EXECUTOR_CHARS: usize = 200;

/// What a request carries beyond its main identifier. Personal data: sealed with the requester.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestDetails {
    /// Further identifiers of the same person, e.g. the analytics visitor id shown on `/optout`
    /// or the consent id of the banner: knowing them is the proof of holding them (they are
    /// random values kept in the person's browser). At most [`MAX_EXTRA_IDENTIFIERS`].
    #[serde(default, with = "kinds_serde")]
    pub extra_identifiers: Vec<(IdentifierKind, String)>,
    /// Structured instructions for after death (Loi Informatique et Libertés art. 85).
    #[serde(default)]
    pub after_death: Option<AfterDeathInstructions>,
}

mod kinds_serde {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use tutela_crypto::IdentifierKind;

    pub fn serialize<S: Serializer>(
        v: &[(IdentifierKind, String)],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        v.iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect::<Vec<_>>()
            .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<(IdentifierKind, String)>, D::Error> {
        Vec::<(String, String)>::deserialize(d)?
            .into_iter()
            .map(|(k, v)| {
                k.parse::<IdentifierKind>()
                    .map(|k| (k, v))
                    .map_err(serde::de::Error::custom)
            })
            .collect()
    }
}

/// Particular directives about one's data after death, and who carries them out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AfterDeathInstructions {
    /// What to do with the data: destroy it, hand it to the executor, or keep it as it is.
    pub directive: AfterDeathDirective,
    /// Free-text particular directives (bounded like the request text).
    pub particular: String,
    /// The person designated to carry them out (art. 85 II), with a way to reach them.
    pub executor_name: String,
    pub executor_contact: String,
}

/// The main choice of after-death instructions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AfterDeathDirective {
    /// Erase everything, except evidence and legal-obligation records.
    Erase,
    /// Give the executor a copy (access package), then erase.
    CommunicateThenErase,
    /// Keep the data under the usual retention; the executor may ask later.
    Keep,
}

impl AfterDeathDirective {
    pub const ALL: [AfterDeathDirective; 3] = [
        AfterDeathDirective::Erase,
        AfterDeathDirective::CommunicateThenErase,
        AfterDeathDirective::Keep,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AfterDeathDirective::Erase => "erase",
            AfterDeathDirective::CommunicateThenErase => "communicate_then_erase",
            AfterDeathDirective::Keep => "keep",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.as_str() == s)
    }
}

#[derive(Serialize, Deserialize)]
struct Requester {
    identifier_kind: String,
    identifier: String,
    contact_email: Option<String>,
    #[serde(default)]
    details: RequestDetails,
}

#[derive(Serialize, Deserialize)]
struct MessageBody {
    text: String,
}

/// What happens next about the requester's identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VerificationRoute {
    /// A code and a link were e-mailed.
    EmailSent,
    /// A code was e-mailed a few minutes ago; no new one was sent.
    ChallengeRecentlySent,
    /// Verified by the platform (signed assertion or vouching token).
    Platform,
    /// The request (or the one it merged into) was already verified.
    AlreadyVerified,
    /// No e-mail route: the DPO verifies by hand (and may ask for more information).
    WaitingForDpo,
}

/// A request as shown to the API, the portal and the console. No personal data.
#[derive(Clone, Debug, Serialize)]
pub struct RequestView {
    pub id: String,
    pub kind: RightKind,
    pub state: RequestState,
    pub channel: String,
    pub lang: String,
    pub repeats: i64,
    pub received_at: Timestamp,
    pub due_at: Timestamp,
    pub original_due_at: Timestamp,
    pub extended_until: Option<Timestamp>,
    pub extension_reasons: Option<String>,
    pub verified_at: Option<Timestamp>,
    pub verification: Option<String>,
    pub replied_at: Option<Timestamp>,
    pub purge_after: Option<Timestamp>,
    pub rejection_ground: Option<RejectionGround>,
    pub rejection_reasons: Option<String>,
    /// For open requests: on time, due soon or overdue.
    pub urgency: Option<Urgency>,
}

/// The answer to a filing.
#[derive(Clone, Debug, Serialize)]
pub struct Receipt {
    pub request: RequestView,
    /// The submission was merged into the same person's open request of the same kind.
    pub merged: bool,
    pub verification: VerificationRoute,
}

/// The answer to a successful verification.
#[derive(Clone, Debug, Serialize)]
pub struct VerifyOutcome {
    pub request: RequestView,
}

/// A response package as the download page sees it.
#[derive(Clone, Debug, Serialize)]
pub struct PackageInfo {
    pub request_id: String,
    pub kind: RightKind,
    pub lang: String,
    pub expires_at: Timestamp,
    pub expired: bool,
}

/// A portal form token (signed, expiring): proof that a form was fetched from us.
pub struct FormToken(pub String);

fn ts(secs: i64) -> Result<Timestamp> {
    Timestamp::from_second(secs)
        .map_err(|_| RightsError::Invalid("stored time out of range".into()))
}

fn opt_ts(secs: Option<i64>) -> Result<Option<Timestamp>> {
    secs.map(ts).transpose()
}

fn status_of(row: &RightsRequestRow) -> Result<RequestStatus> {
    let kind = RightKind::parse(&row.kind).ok_or_else(|| {
        RightsError::Invalid(format!("stored request has unknown kind `{}`", row.kind))
    })?;
    let state = RequestState::parse(&row.state).ok_or_else(|| {
        RightsError::Invalid(format!("stored request has unknown state `{}`", row.state))
    })?;
    let rejection = match (&row.rejection_ground, &row.rejection_reasons) {
        (Some(g), Some(r)) => Some((
            RejectionGround::parse(g)
                .ok_or_else(|| RightsError::Invalid(format!("unknown rejection ground `{g}`")))?,
            r.clone(),
        )),
        _ => None,
    };
    Ok(RequestStatus {
        kind,
        state,
        received_at: ts(row.received_at)?,
        due_at: ts(row.due_at)?,
        original_due_at: ts(row.original_due_at)?,
        extended_until: opt_ts(row.extended_until)?,
        extension_reasons: row.extension_reasons.clone(),
        verified_at: opt_ts(row.verified_at)?,
        replied_at: opt_ts(row.replied_at)?,
        purge_after: opt_ts(row.purge_after)?,
        rejection,
    })
}

fn random_hex(bytes: usize) -> Result<String> {
    let mut b = Zeroizing::new(vec![0u8; bytes]);
    getrandom::fill(&mut b[..]).map_err(tutela_crypto::CryptoError::from)?;
    Ok(hex::encode(&b[..]))
}

/// A uniformly random code of [`CODE_DIGITS`] digits.
fn random_code() -> Result<Zeroizing<String>> {
    const MODULUS: u32 = 1_000_000;
    // Rejection sampling: no bias towards small codes.
    let limit = u32::MAX - (u32::MAX % MODULUS);
    loop {
        let mut b = [0u8; 4];
        getrandom::fill(&mut b).map_err(tutela_crypto::CryptoError::from)?;
        let n = u32::from_be_bytes(b);
        if n < limit {
            return Ok(Zeroizing::new(format!(
                "{:0width$}",
                n % MODULUS,
                width = CODE_DIGITS
            )));
        }
    }
}

/// Checks a free text: bounded, no control characters but line breaks and tabs.
fn check_text(field: &str, text: &str, max: usize) -> Result<()> {
    if text.chars().count() > max {
        return Err(RightsError::Invalid(format!(
            "{field} is limited to {max} characters"
        )));
    }
    if text
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(RightsError::Invalid(format!(
            "{field} contains control characters"
        )));
    }
    Ok(())
}

/// Checks and normalises what a request carries beyond its main identifier.
fn check_details(kind: RightKind, d: &RequestDetails) -> Result<RequestDetails> {
    if d.extra_identifiers.len() > MAX_EXTRA_IDENTIFIERS {
        return Err(RightsError::Invalid(format!(
            "at most {MAX_EXTRA_IDENTIFIERS} further identifiers"
        )));
    }
    let mut extra: Vec<(IdentifierKind, String)> = Vec::new();
    for (k, v) in &d.extra_identifiers {
        if v.chars().count() > MAX_IDENTIFIER_CHARS {
            return Err(RightsError::Invalid(format!(
                "an identifier is limited to {MAX_IDENTIFIER_CHARS} characters"
            )));
        }
        let n = normalise(*k, v, None).map_err(|e| RightsError::Invalid(e.to_string()))?;
        if !extra.iter().any(|(k2, v2)| k2 == k && *v2 == n) {
            extra.push((*k, n));
        }
    }
    let after_death = match (&d.after_death, kind) {
        (None, _) => None,
        (Some(_), k) if k != RightKind::AfterDeathInstructions => {
            return Err(RightsError::Invalid(
                "after-death instructions belong to an after-death-instructions request".into(),
            ));
        }
        (Some(a), _) => {
            check_text("the particular directives", &a.particular, MAX_TEXT_CHARS)?;
            for (field, v) in [
                ("the executor's name", &a.executor_name),
                ("the executor's contact", &a.executor_contact),
            ] {
                check_text(field, v, MAX_EXECUTOR_CHARS)?;
                if v.contains(['\n', '\r']) {
                    return Err(RightsError::Invalid(format!("{field} fits on one line")));
                }
            }
            let name = a.executor_name.trim();
            let contact = a.executor_contact.trim();
            if name.is_empty() != contact.is_empty() {
                return Err(RightsError::Invalid(
                    "give both the executor's name and a way to reach them, or neither".into(),
                ));
            }
            Some(AfterDeathInstructions {
                directive: a.directive,
                particular: a.particular.trim().to_string(),
                executor_name: name.to_string(),
                executor_contact: contact.to_string(),
            })
        }
    };
    Ok(RequestDetails {
        extra_identifiers: extra,
        after_death,
    })
}

/// The signature a platform puts on an assertion that a logged-in user is who they say:
/// hex HMAC-SHA256 over the identifier kind, the normalised identifier and the issue time.
pub fn assertion_signature(
    secret: &[u8],
    kind: IdentifierKind,
    normalised: &str,
    issued_at: i64,
) -> String {
    hex::encode(hmac_parts(
        secret,
        &[
            b"tutela-rights-assertion/v1",
            kind.as_str().as_bytes(),
            normalised.as_bytes(),
            issued_at.to_string().as_bytes(),
        ],
    ))
}

/// Files, verifies and moves rights requests. Cheap to clone.
#[derive(Clone)]
pub struct RightsService {
    store: Store,
    register: Arc<Register>,
    keys: Arc<RightsKeys>,
    mailer: Option<Arc<Mailer>>,
    config: Arc<RightsConfig>,
}

impl std::fmt::Debug for RightsService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RightsService")
            .field("mailer", &self.mailer)
            .finish_non_exhaustive()
    }
}

impl RightsService {
    pub fn new(
        store: Store,
        register: Arc<Register>,
        keys: RightsKeys,
        mailer: Option<Mailer>,
        config: RightsConfig,
    ) -> RightsService {
        RightsService {
            store,
            register,
            keys: Arc::new(keys),
            mailer: mailer.map(Arc::new),
            config: Arc::new(config),
        }
    }

    pub fn register(&self) -> &Register {
        &self.register
    }

    pub fn config(&self) -> &RightsConfig {
        &self.config
    }

    fn view(&self, row: &RightsRequestRow, now: Timestamp) -> Result<RequestView> {
        let status = status_of(row)?;
        Ok(RequestView {
            id: row.id.clone(),
            kind: status.kind,
            state: status.state,
            channel: row.channel.clone(),
            lang: row.lang.clone(),
            repeats: row.repeats,
            received_at: status.received_at,
            due_at: status.due_at,
            original_due_at: status.original_due_at,
            extended_until: status.extended_until,
            extension_reasons: status.extension_reasons.clone(),
            verified_at: status.verified_at,
            verification: row.verification.clone(),
            replied_at: status.replied_at,
            purge_after: status.purge_after,
            rejection_ground: status.rejection.as_ref().map(|(g, _)| *g),
            rejection_reasons: status.rejection.as_ref().map(|(_, r)| r.clone()),
            urgency: status.urgency(now, self.config.soon_secs),
        })
    }

    fn language(&self, lang: &str) -> String {
        let n = &self.register.notice;
        if n.languages.iter().any(|l| l == lang) {
            lang.to_string()
        } else {
            n.default_language.clone()
        }
    }

    /// Files a request (or merges it into the same person's open request of the same kind),
    /// then starts identity verification: an e-mailed code and link when there is an address
    /// to write to, otherwise the DPO's manual check.
    pub async fn file(&self, sub: Submission, actor: &str, now: Timestamp) -> Result<Receipt> {
        self.file_received(sub, actor, now, now).await
    }

    /// Like [`RightsService::file`] for a request received earlier than `now` (a letter opened
    /// late): the deadline counts from `received`, the verification code from `now`.
    pub async fn file_received(
        &self,
        sub: Submission,
        actor: &str,
        received: Timestamp,
        now: Timestamp,
    ) -> Result<Receipt> {
        if received > now {
            return Err(RightsError::Invalid(
                "the date of receipt is in the future".into(),
            ));
        }
        let (row, merged) = self.file_only(&sub, actor, received).await?;
        let state = RequestState::parse(&row.state).unwrap_or(RequestState::Received);
        let route = if state.is_verified() {
            VerificationRoute::AlreadyVerified
        } else if !state.is_open() {
            VerificationRoute::WaitingForDpo
        } else if self.mailer.is_some() && self.requester(&row)?.contact_email.is_some() {
            self.send_challenge(&row.id, now).await?
        } else {
            VerificationRoute::WaitingForDpo
        };
        let row = self.load(&row.id).await?;
        Ok(Receipt {
            request: self.view(&row, now)?,
            merged,
            verification: route,
        })
    }

    /// Files a request whose requester the platform vouches for (a signed assertion was
    /// checked, or an API token with `rights:write` speaks for its logged-in user): it is
    /// verified at once with `method` recorded.
    pub async fn file_verified(
        &self,
        sub: Submission,
        method: &str,
        actor: &str,
        now: Timestamp,
    ) -> Result<Receipt> {
        let (row, merged) = self.file_only(&sub, actor, now).await?;
        let state = RequestState::parse(&row.state).unwrap_or(RequestState::Received);
        let route = if state.is_verified() {
            VerificationRoute::AlreadyVerified
        } else {
            self.transition(&row.id, &Event::Verified, Some(method), actor, now)
                .await?;
            self.store.delete_rights_challenges(&row.id).await?;
            VerificationRoute::Platform
        };
        let row = self.load(&row.id).await?;
        Ok(Receipt {
            request: self.view(&row, now)?,
            merged,
            verification: route,
        })
    }

    async fn file_only(
        &self,
        sub: &Submission,
        actor: &str,
        now: Timestamp,
    ) -> Result<(RightsRequestRow, bool)> {
        if sub.identifier.chars().count() > MAX_IDENTIFIER_CHARS {
            return Err(RightsError::Invalid(format!(
                "the identifier is limited to {MAX_IDENTIFIER_CHARS} characters"
            )));
        }
        check_text("the text", &sub.text, MAX_TEXT_CHARS)?;
        let normalised = normalise(sub.identifier_kind, &sub.identifier, None)
            .map_err(|e| RightsError::Invalid(e.to_string()))?;
        let contact = match (&sub.contact_email, sub.identifier_kind) {
            (Some(c), _) if !c.trim().is_empty() => {
                if c.chars().count() > MAX_IDENTIFIER_CHARS {
                    return Err(RightsError::Invalid(
                        "the e-mail address is too long".into(),
                    ));
                }
                Some(
                    normalise(IdentifierKind::Email, c, None)
                        .map_err(|e| RightsError::Invalid(e.to_string()))?,
                )
            }
            (_, IdentifierKind::Email) => Some(normalised.clone()),
            _ => None,
        };
        let details = check_details(sub.kind, &sub.details)?;
        let index = self.keys.requester_index(sub.identifier_kind, &normalised);
        let requester = Requester {
            identifier_kind: sub.identifier_kind.as_str().to_string(),
            identifier: normalised,
            contact_email: contact,
            details,
        };
        let requester_json = Zeroizing::new(serde_json::to_vec(&requester).expect("serialisable"));
        let message_json = Zeroizing::new(
            serde_json::to_vec(&MessageBody {
                text: sub.text.trim().to_string(),
            })
            .expect("serialisable"),
        );
        let requester_sealed = seal(
            self.keys.seal_key(),
            &requester_json,
            &[REQUESTER_AAD, &index].concat(),
        )?;
        let message_sealed = seal(
            self.keys.seal_key(),
            &message_json,
            &[MESSAGE_AAD, &index].concat(),
        )?;
        let status = RequestStatus::new(sub.kind, now, &self.register.rights)?;
        let row = RightsRequestRow {
            id: random_hex(16)?,
            kind: sub.kind.as_str().to_string(),
            state: status.state.as_str().to_string(),
            channel: sub.channel.as_str().to_string(),
            lang: self.language(&sub.lang),
            requester_index: index.to_vec(),
            requester_sealed,
            repeats: 0,
            received_at: now.as_second(),
            due_at: status.due_at.as_second(),
            original_due_at: status.original_due_at.as_second(),
            extended_until: None,
            extension_reasons: None,
            verified_at: None,
            verification: None,
            replied_at: None,
            purge_after: None,
            rejection_ground: None,
            rejection_reasons: None,
            updated_at: now.as_second(),
        };
        let filed = self
            .store
            .file_rights_request(&row, &message_sealed, sub.kind.merges_repeats(), actor)
            .await?;
        let merged = matches!(filed, Filed::Merged { .. });
        tracing::info!(
            request = filed.id(),
            kind = sub.kind.as_str(),
            channel = sub.channel.as_str(),
            merged,
            "rights request filed"
        );
        Ok((self.load(filed.id()).await?, merged))
    }

    async fn load(&self, id: &str) -> Result<RightsRequestRow> {
        self.store
            .rights_request(id)
            .await?
            .ok_or(RightsError::NotFound)
    }

    fn requester(&self, row: &RightsRequestRow) -> Result<Requester> {
        let plain = open(
            self.keys.seal_key(),
            &row.requester_sealed,
            &[REQUESTER_AAD, &row.requester_index].concat(),
        )?;
        serde_json::from_slice(&plain)
            .map_err(|_| RightsError::Invalid("stored requester is unreadable".into()))
    }

    /// The texts the requester wrote (every merged submission, oldest first). Personal data:
    /// for the DPO's console and the execution, never for logs.
    pub async fn messages(&self, id: &str) -> Result<Vec<(Timestamp, String)>> {
        let row = self.load(id).await?;
        let mut out = Vec::new();
        for m in self.store.rights_request_messages(id).await? {
            let plain = open(
                self.keys.seal_key(),
                &m.sealed,
                &[MESSAGE_AAD, &row.requester_index].concat(),
            )?;
            let body: MessageBody = serde_json::from_slice(&plain)
                .map_err(|_| RightsError::Invalid("stored message is unreadable".into()))?;
            out.push((ts(m.received_at)?, body.text));
        }
        Ok(out)
    }

    /// Applies `event` through the state machine and stores the result (retrying when another
    /// node changed the request meanwhile).
    pub async fn transition(
        &self,
        id: &str,
        event: &Event,
        verification: Option<&str>,
        actor: &str,
        now: Timestamp,
    ) -> Result<RequestView> {
        for _ in 0..3 {
            let row = self.load(id).await?;
            let status = status_of(&row)?;
            let next = status.apply(event, now, &self.register.rights)?;
            let update = RightsStatusUpdate {
                state: next.state.as_str().to_string(),
                open: next.state.is_open(),
                due_at: next.due_at.as_second(),
                extended_until: next.extended_until.map(|t| t.as_second()),
                extension_reasons: next.extension_reasons.clone(),
                verified_at: next.verified_at.map(|t| t.as_second()),
                verification: if matches!(event, Event::Verified) {
                    verification.map(str::to_string)
                } else {
                    row.verification.clone()
                },
                replied_at: next.replied_at.map(|t| t.as_second()),
                purge_after: next.purge_after.map(|t| t.as_second()),
                rejection_ground: next.rejection.as_ref().map(|(g, _)| g.as_str().to_string()),
                rejection_reasons: next.rejection.as_ref().map(|(_, r)| r.clone()),
            };
            if self
                .store
                .update_rights_request(
                    id,
                    &row.state,
                    &update,
                    event.name(),
                    actor,
                    now.as_second(),
                )
                .await?
            {
                tracing::info!(
                    request = id,
                    event = event.name(),
                    state = next.state.as_str(),
                    "rights request moved"
                );
                return self.view(&self.load(id).await?, now);
            }
        }
        Err(RightsError::Conflict)
    }

    /// E-mails a fresh code and link to the requester (unless one went out a few minutes ago).
    pub async fn send_challenge(&self, id: &str, now: Timestamp) -> Result<VerificationRoute> {
        let row = self.load(id).await?;
        let status = status_of(&row)?;
        if status.state.is_verified() {
            return Ok(VerificationRoute::AlreadyVerified);
        }
        // Refuses closed requests before anything is sent.
        status.apply(&Event::ChallengeSent, now, &self.register.rights)?;
        let Some(mailer) = &self.mailer else {
            return Ok(VerificationRoute::WaitingForDpo);
        };
        let requester = self.requester(&row)?;
        let Some(to) = requester.contact_email else {
            return Ok(VerificationRoute::WaitingForDpo);
        };
        if let Some(live) = self
            .store
            .live_rights_challenge(id, IDENTITY, now.as_second())
            .await?
            && now.as_second() - live.created_at < self.config.resend_after_secs
        {
            return Ok(VerificationRoute::ChallengeRecentlySent);
        }
        let (code, link, expires) = self.issue_challenge(id, IDENTITY, now).await?;
        if status.state == RequestState::Received {
            self.transition(id, &Event::ChallengeSent, None, "tutela", now)
                .await?;
        }
        let base = self.config.public_url.trim_end_matches('/');
        let mail = text::verification_mail(
            &row.lang,
            &self.register,
            status.kind,
            &code,
            &format!("{base}/rights/verify/{}", link.as_str()),
            &format!("{base}/rights/requests/{id}?lang={}", row.lang),
            ts(expires)?,
            self.config.max_attempts,
            status.due_at,
        );
        mailer.send(&to, &mail.subject, mail.body).await?;
        self.store
            .note_rights_event(id, "challenge_mailed", "tutela", now.as_second())
            .await?;
        tracing::info!(request = id, "verification code mailed");
        Ok(VerificationRoute::EmailSent)
    }

    /// Stores a new challenge (hashes only) and returns the code, the link token and the expiry.
    async fn issue_challenge(
        &self,
        id: &str,
        purpose: &str,
        now: Timestamp,
    ) -> Result<(Zeroizing<String>, Zeroizing<String>, i64)> {
        let code = random_code()?;
        let link = Zeroizing::new(random_hex(32)?);
        let expires = now.as_second() + self.config.challenge_ttl_secs;
        let challenge = RightsChallenge {
            id: random_hex(12)?,
            request_id: id.to_string(),
            purpose: purpose.to_string(),
            code_hash: self
                .keys
                .challenge_mac(&[purpose.as_bytes(), id.as_bytes(), code.as_bytes()])
                .to_vec(),
            link_hash: self
                .keys
                .challenge_mac(&[b"link", link.as_bytes()])
                .to_vec(),
            attempts: 0,
            max_attempts: self.config.max_attempts,
            created_at: now.as_second(),
            expires_at: expires,
            consumed_at: None,
        };
        self.store.insert_rights_challenge(&challenge).await?;
        Ok((code, link, expires))
    }

    /// Checks a code against the live challenge of `purpose`; consumes it when right.
    async fn check_code(
        &self,
        id: &str,
        purpose: &str,
        code: &str,
        now: Timestamp,
    ) -> Result<RightsChallenge> {
        let code = code.trim();
        if code.len() != CODE_DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(RightsError::Verification("the code has 6 digits"));
        }
        let none = RightsError::Verification(
            "no code is waiting for this request: it expired, was used up or replaced; ask for a new one",
        );
        let Some(live) = self
            .store
            .live_rights_challenge(id, purpose, now.as_second())
            .await?
        else {
            return Err(none);
        };
        if !self
            .store
            .count_rights_challenge_attempt(&live.id, now.as_second())
            .await?
        {
            return Err(none);
        }
        let presented =
            self.keys
                .challenge_mac(&[purpose.as_bytes(), id.as_bytes(), code.as_bytes()]);
        if !ct_eq(&presented, &live.code_hash) {
            tracing::info!(request = id, purpose, "wrong verification code");
            return Err(RightsError::Verification("wrong code"));
        }
        if !self
            .store
            .consume_rights_challenge(&live.id, now.as_second())
            .await?
        {
            return Err(RightsError::Verification(
                "this code or link was already used",
            ));
        }
        Ok(live)
    }

    /// Checks a code typed by the requester. Wrong codes count against the attempts.
    pub async fn verify_code(&self, id: &str, code: &str, now: Timestamp) -> Result<VerifyOutcome> {
        let ch = self.check_code(id, IDENTITY, code, now).await?;
        self.finish_verification(&ch, "email_code", now).await
    }

    /// Checks the token of an e-mailed link.
    pub async fn verify_link(&self, token: &str, now: Timestamp) -> Result<VerifyOutcome> {
        let invalid =
            RightsError::Verification("this link is not valid: it expired, was used or replaced");
        if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid);
        }
        let hash = self
            .keys
            .challenge_mac(&[b"link", token.to_ascii_lowercase().as_bytes()]);
        let Some(ch) = self.store.rights_challenge_by_link(&hash).await? else {
            return Err(invalid);
        };
        // The lookup was by hash; compare anyway so a lookup quirk can never let a wrong token in.
        if ch.purpose != IDENTITY
            || !ct_eq(&hash, &ch.link_hash)
            || !self
                .store
                .count_rights_challenge_attempt(&ch.id, now.as_second())
                .await?
            || !self
                .store
                .consume_rights_challenge(&ch.id, now.as_second())
                .await?
        {
            return Err(invalid);
        }
        self.finish_verification(&ch, "email_link", now).await
    }

    async fn finish_verification(
        &self,
        ch: &RightsChallenge,
        method: &str,
        now: Timestamp,
    ) -> Result<VerifyOutcome> {
        let view = self
            .transition(
                &ch.request_id,
                &Event::Verified,
                Some(method),
                "requester",
                now,
            )
            .await?;
        // Nothing of the proof is kept once the identity is established.
        self.store.delete_rights_challenges(&ch.request_id).await?;
        Ok(VerifyOutcome { request: view })
    }

    /// Checks a platform assertion that a logged-in user owns `identifier`.
    pub fn check_assertion(
        &self,
        kind: IdentifierKind,
        identifier: &str,
        issued_at: i64,
        signature: &str,
        now: Timestamp,
    ) -> Result<()> {
        let Some(secret) = &self.config.platform_secret else {
            return Err(RightsError::Invalid(
                "platform assertions are not configured (rights.platform_secret)".into(),
            ));
        };
        if (now.as_second() - issued_at).abs() > ASSERTION_SKEW_SECS {
            return Err(RightsError::Verification(
                "the platform assertion is too old or from the future",
            ));
        }
        let normalised =
            normalise(kind, identifier, None).map_err(|e| RightsError::Invalid(e.to_string()))?;
        let expected = assertion_signature(secret, kind, &normalised, issued_at);
        if !ct_eq(
            expected.as_bytes(),
            signature.trim().to_ascii_lowercase().as_bytes(),
        ) {
            return Err(RightsError::Verification(
                "the platform assertion's signature does not match",
            ));
        }
        Ok(())
    }

    /// Extends the deadline with reasons: the state machine checks the limits, the requester is
    /// told (e-mail in their language) and only then is the extension recorded.
    pub async fn extend(
        &self,
        id: &str,
        until: Timestamp,
        reasons: &str,
        actor: &str,
        now: Timestamp,
    ) -> Result<RequestView> {
        let row = self.load(id).await?;
        let status = status_of(&row)?;
        let event = Event::Extend {
            until,
            reasons: reasons.to_string(),
        };
        let next = status.apply(&event, now, &self.register.rights)?;
        let requester = self.requester(&row)?;
        match (&self.mailer, requester.contact_email) {
            (Some(mailer), Some(to)) => {
                let mail = text::extension_mail(
                    &row.lang,
                    &self.register,
                    status.kind,
                    status.original_due_at,
                    until,
                    next.extension_reasons.as_deref().unwrap_or(""),
                );
                mailer.send(&to, &mail.subject, mail.body).await?;
                self.store
                    .note_rights_event(id, "extension_notice_mailed", actor, now.as_second())
                    .await?;
            }
            _ => {
                // Post: the DPO sends the letter; the history says it is theirs to send.
                self.store
                    .note_rights_event(
                        id,
                        "extension_notice_by_post_required",
                        actor,
                        now.as_second(),
                    )
                    .await?;
            }
        }
        self.transition(id, &event, None, actor, now).await
    }

    pub async fn status(&self, id: &str, now: Timestamp) -> Result<Option<RequestView>> {
        match self.store.rights_request(id).await? {
            Some(row) => Ok(Some(self.view(&row, now)?)),
            None => Ok(None),
        }
    }

    /// Open requests due within `within_secs` of `now` (negative: only overdue), soonest first.
    pub async fn due(
        &self,
        now: Timestamp,
        within_secs: i64,
        limit: i64,
    ) -> Result<Vec<RequestView>> {
        let before = now.as_second().saturating_add(within_secs);
        self.store
            .rights_requests_due(before, limit)
            .await?
            .iter()
            .map(|r| self.view(r, now))
            .collect()
    }

    /// The request's history (events, actors, dates).
    pub async fn history(&self, id: &str) -> Result<Vec<tutela_store::RightsHistoryEntry>> {
        Ok(self.store.rights_request_history(id).await?)
    }

    /// Recomputes the request's hash-chained history (see `Store::verify_rights_history`).
    pub async fn verify_history(&self, id: &str) -> Result<tutela_store::HistoryCheck> {
        Ok(self.store.verify_rights_history(id).await?)
    }

    /// The request's execution steps (sources, actions, outcomes; results stay sealed).
    pub async fn steps(&self, id: &str) -> Result<Vec<tutela_store::RightsStep>> {
        Ok(self.store.rights_steps(id).await?)
    }

    /// Puts the request's failed steps back in the queue (the DPO's "retry").
    pub async fn retry_failed_steps(&self, id: &str, actor: &str, now: Timestamp) -> Result<u64> {
        let n = self
            .store
            .retry_failed_rights_steps(id, now.as_second())
            .await?;
        if n > 0 {
            self.store
                .note_rights_event(id, &format!("steps_retried:{n}"), actor, now.as_second())
                .await?;
        }
        Ok(n)
    }

    /// Deletes request records past their purge date (reply + `request_records_kept`).
    pub async fn purge(&self, now: Timestamp) -> Result<u64> {
        Ok(self
            .store
            .purge_rights_requests(now.as_second(), 1000)
            .await?)
    }

    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// The subject a request is about: the identifier it was filed with, and the contact
    /// address when it is another e-mail address. Personal data, for the sources only.
    pub async fn subject_of(&self, id: &str) -> Result<crate::source::Subject> {
        let row = self.load(id).await?;
        let r = self.requester(&row)?;
        let kind: IdentifierKind = r.identifier_kind.parse().map_err(|_| {
            RightsError::Invalid("stored requester has an unknown identifier kind".into())
        })?;
        let mut identifiers = vec![(kind, r.identifier.clone())];
        if let Some(c) = r.contact_email
            && !(kind == IdentifierKind::Email && c == r.identifier)
        {
            identifiers.push((IdentifierKind::Email, c));
        }
        for (k, v) in r.details.extra_identifiers {
            if !identifiers.iter().any(|(k2, v2)| *k2 == k && *v2 == v) {
                identifiers.push((k, v));
            }
        }
        Ok(crate::source::Subject { identifiers })
    }

    /// What the request carries beyond its main identifier (further identifiers, after-death
    /// instructions). Personal data: for the DPO's console and the execution only.
    pub async fn details(&self, id: &str) -> Result<RequestDetails> {
        let row = self.load(id).await?;
        Ok(self.requester(&row)?.details)
    }

    /// The kinds of identifier a request carries (never their values), for the console.
    pub async fn identifier_kinds(&self, id: &str) -> Result<Vec<IdentifierKind>> {
        let subject = self.subject_of(id).await?;
        let mut out: Vec<IdentifierKind> = Vec::new();
        for (k, _) in subject.identifiers {
            if !out.contains(&k) {
                out.push(k);
            }
        }
        Ok(out)
    }

    pub(crate) fn seal_result(&self, id: &str, source: &str, plain: &[u8]) -> Result<Vec<u8>> {
        let aad = [RESULT_AAD, id.as_bytes(), b"\0", source.as_bytes()].concat();
        Ok(seal(self.keys.seal_key(), plain, &aad)?)
    }

    pub(crate) fn open_result(
        &self,
        id: &str,
        source: &str,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>> {
        let aad = [RESULT_AAD, id.as_bytes(), b"\0", source.as_bytes()].concat();
        Ok(open(self.keys.seal_key(), sealed, &aad)?)
    }

    /// Stores a response package (sealed) behind a new expiring link, e-mails the link to the
    /// requester when there is an address, and returns the link token.
    pub async fn store_package(
        &self,
        view: &RequestView,
        zip: Vec<u8>,
        now: Timestamp,
    ) -> Result<String> {
        let zip = Zeroizing::new(zip);
        let id = random_hex(16)?;
        let token = random_hex(32)?;
        let sealed = seal(
            self.keys.seal_key(),
            &zip,
            &[PACKAGE_AAD, id.as_bytes()].concat(),
        )?;
        let expires = now.as_second() + self.config.package_ttl_secs;
        self.store
            .insert_rights_package(&tutela_store::RightsPackage {
                id,
                request_id: view.id.clone(),
                token_hash: self
                    .keys
                    .challenge_mac(&[b"package", token.as_bytes()])
                    .to_vec(),
                sealed,
                created_at: now.as_second(),
                expires_at: expires,
                downloads: 0,
            })
            .await?;
        let row = self.load(&view.id).await?;
        if let (Some(mailer), Some(to)) = (&self.mailer, self.requester(&row)?.contact_email) {
            let base = self.config.public_url.trim_end_matches('/');
            let link = format!("{base}/rights/packages/{token}?lang={}", row.lang);
            let mail =
                text::package_mail(&row.lang, &self.register, view.kind, &link, ts(expires)?);
            mailer.send(&to, &mail.subject, mail.body).await?;
            self.store
                .note_rights_event(&view.id, "package_link_mailed", "tutela", now.as_second())
                .await?;
        } else {
            self.store
                .note_rights_event(
                    &view.id,
                    "package_ready_send_by_post",
                    "tutela",
                    now.as_second(),
                )
                .await?;
        }
        Ok(token)
    }

    async fn package(&self, token: &str) -> Result<tutela_store::RightsPackage> {
        if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(RightsError::NotFound);
        }
        let hash = self
            .keys
            .challenge_mac(&[b"package", token.to_ascii_lowercase().as_bytes()]);
        self.store
            .rights_package_by_token(&hash)
            .await?
            .ok_or(RightsError::NotFound)
    }

    /// What a package link leads to (no personal data).
    pub async fn package_info(&self, token: &str, now: Timestamp) -> Result<PackageInfo> {
        let p = self.package(token).await?;
        let row = self.load(&p.request_id).await?;
        let status = status_of(&row)?;
        Ok(PackageInfo {
            request_id: p.request_id,
            kind: status.kind,
            lang: row.lang,
            expires_at: ts(p.expires_at)?,
            expired: now.as_second() >= p.expires_at,
        })
    }

    /// E-mails a fresh code before a package download (the link alone is not enough).
    pub async fn send_download_code(
        &self,
        token: &str,
        now: Timestamp,
    ) -> Result<VerificationRoute> {
        let p = self.package(token).await?;
        if now.as_second() >= p.expires_at {
            return Err(RightsError::Verification("this download link has expired"));
        }
        let row = self.load(&p.request_id).await?;
        let (Some(mailer), Some(to)) = (&self.mailer, self.requester(&row)?.contact_email) else {
            return Ok(VerificationRoute::WaitingForDpo);
        };
        if let Some(live) = self
            .store
            .live_rights_challenge(&p.request_id, DOWNLOAD, now.as_second())
            .await?
            && now.as_second() - live.created_at < 60
        {
            return Ok(VerificationRoute::ChallengeRecentlySent);
        }
        let (code, _link, expires) = self.issue_challenge(&p.request_id, DOWNLOAD, now).await?;
        let mail = text::download_code_mail(
            &row.lang,
            &self.register,
            &code,
            ts(expires.min(p.expires_at))?,
        );
        mailer.send(&to, &mail.subject, mail.body).await?;
        self.store
            .note_rights_event(
                &p.request_id,
                "download_code_mailed",
                "tutela",
                now.as_second(),
            )
            .await?;
        Ok(VerificationRoute::EmailSent)
    }

    /// The package's zip, after a fresh code check. Counts the download in the history.
    pub async fn download(
        &self,
        token: &str,
        code: &str,
        now: Timestamp,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let p = self.package(token).await?;
        if now.as_second() >= p.expires_at {
            return Err(RightsError::Verification("this download link has expired"));
        }
        self.check_code(&p.request_id, DOWNLOAD, code, now).await?;
        let zip = open(
            self.keys.seal_key(),
            &p.sealed,
            &[PACKAGE_AAD, p.id.as_bytes()].concat(),
        )?;
        self.store.count_rights_package_download(&p.id).await?;
        self.store.delete_rights_challenges(&p.request_id).await?;
        self.store
            .note_rights_event(
                &p.request_id,
                "package_downloaded",
                "requester",
                now.as_second(),
            )
            .await?;
        Ok(zip)
    }

    /// Deletes request records past their purge date and packages whose link expired.
    pub async fn purge_all(&self, now: Timestamp) -> Result<(u64, u64)> {
        let requests = self
            .store
            .purge_rights_requests(now.as_second(), 1000)
            .await?;
        let packages = self
            .store
            .purge_expired_rights_packages(now.as_second())
            .await?;
        Ok((requests, packages))
    }

    /// Mails the DPO the open requests that are overdue or due within the reminder window
    /// (references, kinds and dates only; no personal data). Returns how many were listed.
    pub async fn remind(&self, now: Timestamp) -> Result<usize> {
        let due = self.due(now, self.config.soon_secs, 500).await?;
        if due.is_empty() {
            return Ok(0);
        }
        let Some(mailer) = &self.mailer else {
            tracing::warn!(
                count = due.len(),
                "rights requests due soon or overdue (no mailer for the reminder)"
            );
            return Ok(due.len());
        };
        let mail = text::reminder_mail(&self.register, &due, now);
        mailer
            .send(
                &self.register.controller.dpo.email,
                &mail.subject,
                mail.body,
            )
            .await?;
        for r in &due {
            self.store
                .note_rights_event(&r.id, "reminder_sent", "tutela", now.as_second())
                .await?;
        }
        Ok(due.len())
    }

    /// The same person's other requests of `kind` (found by the blind index), newest first.
    pub async fn same_person_requests(
        &self,
        id: &str,
        kind: RightKind,
        now: Timestamp,
    ) -> Result<Vec<RequestView>> {
        let row = self.load(id).await?;
        self.store
            .rights_requests_of(&row.requester_index)
            .await?
            .iter()
            .filter(|r| r.id != id && r.kind == kind.as_str())
            .map(|r| self.view(r, now))
            .collect()
    }

    /// A signed, expiring token for the portal form (CSRF protection without a session).
    pub fn form_token(&self, now: Timestamp) -> Result<FormToken> {
        let expires = now.as_second() + self.config.form_ttl_secs;
        let nonce = random_hex(12)?;
        let mac = self
            .keys
            .form_mac(&[b"form", expires.to_string().as_bytes(), nonce.as_bytes()]);
        Ok(FormToken(format!("{expires}.{nonce}.{}", hex::encode(mac))))
    }

    /// Whether a form token is ours and unexpired.
    pub fn check_form_token(&self, token: &str, now: Timestamp) -> bool {
        if token.len() > 128 {
            return false;
        }
        let mut parts = token.split('.');
        let (Some(exp), Some(nonce), Some(mac), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        let Ok(expires) = exp.parse::<i64>() else {
            return false;
        };
        let Ok(mac) = hex::decode(mac) else {
            return false;
        };
        let expected = self
            .keys
            .form_mac(&[b"form", exp.as_bytes(), nonce.as_bytes()]);
        ct_eq(&expected, &mac)
            && now.as_second() < expires
            && expires - now.as_second() <= self.config.form_ttl_secs
    }
}
