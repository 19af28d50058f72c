//! Tutela's data-subject rights engine: intake of requests, identity verification, deadlines,
//! and (through [`source::Source`]) execution across every place that holds personal data.
//!
//! Layers: `tutela_domain::rights` decides what a request may do (pure state machine and
//! deadline arithmetic); `tutela_store` keeps requests (sealed, blind-indexed); this crate joins
//! them with keys, mail and the sources. The HTTP crate and the CLI only call [`RightsService`].
//!
//! Invariants kept here:
//! - no identifier, address or free text is stored in clear: they are sealed under the rights
//!   key and found through a keyed blind index of the normalised identifier;
//! - nothing is executed for an unverified request (the state machine refuses it);
//! - verification codes and link tokens are stored only as keyed hashes, compared in constant
//!   time, limited in attempts and time, and deleted once the identity is established: no copy
//!   of any identity proof outlives verification;
//! - errors and logs never carry personal data.

pub mod analytics_source;
pub mod connectors;
pub mod consent_source;
pub mod execute;
mod keys;
pub mod mail;
pub mod package;
mod service;
pub mod source;
mod text;
pub mod vault_source;

pub use keys::RightsKeys;
pub use mail::{MailError, Mailer, Transport};
pub use service::{
    AfterDeathDirective, AfterDeathInstructions, Channel, FormToken, MAX_EXTRA_IDENTIFIERS,
    MAX_IDENTIFIER_CHARS, MAX_TEXT_CHARS, PackageInfo, Receipt, RequestDetails, RequestView,
    RightsConfig, RightsService, Submission, VerificationRoute, VerifyOutcome, assertion_signature,
};

use tutela_domain::rights::TransitionError;

/// Errors of the rights engine. Messages never contain personal data.
#[derive(Debug, thiserror::Error)]
pub enum RightsError {
    /// The input is not acceptable; the message says which field and why.
    #[error("{0}")]
    Invalid(String),
    #[error("no such request")]
    NotFound,
    /// The state machine refused the event.
    #[error("{0}")]
    Transition(#[from] TransitionError),
    /// Another node changed the request at the same time; try again.
    #[error("the request changed meanwhile; reload and try again")]
    Conflict,
    /// Verification failed (wrong, expired or used-up code or link).
    #[error("{0}")]
    Verification(&'static str),
    #[error("storage: {0}")]
    Store(#[from] tutela_store::StoreError),
    #[error("crypto: {0}")]
    Crypto(#[from] tutela_crypto::CryptoError),
    #[error("mail: {0}")]
    Mail(#[from] MailError),
    #[error("deadline: {0}")]
    Deadline(#[from] tutela_domain::retention::DeadlineError),
}

pub type Result<T, E = RightsError> = std::result::Result<T, E>;
