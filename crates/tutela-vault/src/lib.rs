//! Tutela's personal-data vault: the **only** place where plaintext personal data exists.
//!
//! The vault checks every write against the register (purpose declared, category declared for
//! that purpose, category not `never_store`, no payment-card number in the payload), encrypts
//! payloads under a per-subject key bound to subject, purpose and category, computes deletion
//! deadlines from the register's retention rules and anchor events, appends an audit entry for
//! every write and every read, erases subjects (keeping what the law obliges to keep, and
//! saying so), purges expired records and re-wraps subject keys after a master-key rotation.
//!
//! Below it, `tutela-store` only sees ciphertexts, blind indexes and metadata. Above it, the HTTP
//! API and the CLI call these methods and never touch the vault's tables.
//!
//! Invariants kept here:
//! - no identifier is stored in clear: subjects are found through keyed blind indexes;
//! - a record past its deadline is never returned by any read (the store filters on `now`);
//! - every read of personal data appends an audit entry *before* the data is handed out;
//! - once a subject has no record left, its wrapped key, identifiers and events are deleted
//!   (crypto-shredding).

mod audit;
mod erase;
mod keys;
mod read;
mod recompute;
mod retention;
mod write;

use std::sync::Arc;

use tutela_crypto::{CryptoError, IdentifierError, IdentifierKind};
use tutela_domain::Register;
use tutela_domain::register::{Anchor, Purpose, RetentionRule};
use tutela_domain::retention::DeadlineError;
use tutela_store::{Store, StoreError};

pub use audit::{AuditExportEntry, AuditProblem, AuditVerification};
pub use erase::{ErasureReport, ErasureScope, KeepReason, KeptRecord};
pub use keys::VaultKeys;
pub use read::{IdentifierView, PurposeView, ReadOptions, RecordView, SubjectView};
pub use recompute::{DEFAULT_RECOMPUTE_BATCH, RecomputeReport, RecomputedPurpose, changed_rules};
pub use retention::{PurgeProgress, PurgeReport};
pub use write::{
    AnchorEvent, BatchItem, EVENTS, EventPurpose, EventReport, IdentifierInput, RecordInput,
    RecordUpdate, SubjectResolution, WrittenRecord,
};

/// Largest payload accepted, as compact JSON.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;
/// Most records accepted in one call of [`Vault::put_records`].
pub const MAX_RECORDS_PER_CALL: usize = 100;
/// Most identifiers in one call.
pub const MAX_IDENTIFIERS_PER_CALL: usize = 16;
/// Longest `source` label.
pub const MAX_SOURCE_LEN: usize = 64;
/// Records deleted per transaction by the retention job (also the largest batch allowed).
/// Each batch has a fixed cost that grows with the vault: shredding its emptied subjects
/// deletes identifiers at random places in the blind-index B-tree (so each batch rewrites most
/// of that tree's pages), and each commit writes its pages to the WAL and checkpoints them.
/// Measured on SQLite, 1M expired records: 50,000 per batch took 9.0 s of CPU, 100,000 took
/// 7.75 s (and 10,000 was ~45 % slower than 50,000 in an earlier version). The price is holding
/// SQLite's write lock for up to about a second per batch, which writers wait out (busy timeout
/// 5 s). A run every 10 minutes rarely has more than one batch to do.
pub const DEFAULT_PURGE_BATCH: i64 = 100_000;

/// Errors of the vault. Messages never contain personal data (identifiers or payloads).
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("purpose `{0}` is not declared in the register")]
    UndeclaredPurpose(String),
    #[error("category `{category}` is not declared for purpose `{purpose}` in the register")]
    UndeclaredCategory { purpose: String, category: String },
    #[error("category `{0}` is marked `never_store` in the register: it is never stored")]
    NeverStoreCategory(String),
    #[error(
        "the payload of a `{category}` record for purpose `{purpose}` contains what looks like a \
         payment-card number; card data is never stored (it is handled by the payment processor only)"
    )]
    CardNumberRefused { purpose: String, category: String },
    #[error("no such subject")]
    SubjectNotFound,
    #[error("no such record")]
    RecordNotFound,
    #[error("{0}")]
    InvalidIdentifier(#[from] IdentifierError),
    #[error("these identifiers belong to different subjects; link them explicitly or erase one")]
    IdentifierConflict,
    #[error("an identifier given already belongs to another subject")]
    IdentifierTaken,
    #[error("another write registered one of these identifiers at the same moment; retry")]
    ConcurrentWrite,
    #[error("{0}")]
    InvalidInput(String),
    #[error("event `{event}` does not apply to purpose `{purpose}`: {why}")]
    EventNotApplicable {
        event: String,
        purpose: String,
        why: String,
    },
    #[error("cannot compute a deadline: {0}")]
    Deadline(#[from] DeadlineError),
    /// The database wraps new subject keys with another master key than this process's
    /// (`tutela keys rotate` ran since it started): nothing was written. The process must be
    /// restarted with the new key file.
    #[error(
        "the vault's master key was rotated (`tutela keys rotate`) and this Tutela process still \
         holds the old one: nothing was written. Restart it with the new key file"
    )]
    MasterKeyRotated,
    /// A subject key is wrapped by a master key this process's key file does not hold (the key
    /// was rotated since it started, or the key file is not the right one).
    #[error(
        "a subject key is wrapped by master key {0}, which this Tutela process does not hold: the \
         master key was probably rotated (`tutela keys rotate`) since it started. Restart it with \
         the new key file"
    )]
    UnknownMasterKey(String),
    /// `tutela keys rotate`: the database already uses another master key than the keyring's
    /// (another rotation switched it, or the key file is stale).
    #[error(
        "the database wraps subject keys with master key {database}, which is neither this key \
         file's master key nor one it replaced: another rotation switched it, or this key file is \
         out of date. Use the key file of the node that rotated"
    )]
    WrappingKeyMismatch { database: String },
    #[error("storage: {0}")]
    Store(StoreError),
    #[error("cryptography: {0}")]
    Crypto(#[from] CryptoError),
}

impl From<StoreError> for VaultError {
    fn from(e: StoreError) -> Self {
        if e.is_stale_master_key() {
            VaultError::MasterKeyRotated
        } else {
            VaultError::Store(e)
        }
    }
}

pub type Result<T, E = VaultError> = std::result::Result<T, E>;

/// Who acts, as recorded in the audit log: `token:<id>`, `cli:<command>`, `job:retention`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor(pub String);

impl Actor {
    pub fn new(name: impl Into<String>) -> Self {
        Actor(name.into())
    }
}

type Clock = Arc<dyn Fn() -> jiff::Timestamp + Send + Sync>;

/// The vault. Cheap to clone (everything is shared).
#[derive(Clone)]
pub struct Vault {
    store: Store,
    register: Arc<Register>,
    keys: Arc<VaultKeys>,
    clock: Clock,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("engine", &self.store.engine())
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl Vault {
    /// A vault over `store`, checking writes against `register` (which must have been
    /// validated), with `keys`.
    pub fn new(store: Store, register: Arc<Register>, keys: VaultKeys) -> Self {
        Vault {
            store,
            register,
            keys: Arc::new(keys),
            clock: Arc::new(jiff::Timestamp::now),
        }
    }

    /// Replaces the clock (tests, benchmarks and `retention run --now`).
    #[must_use]
    pub fn with_clock(
        mut self,
        clock: impl Fn() -> jiff::Timestamp + Send + Sync + 'static,
    ) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The same vault checking against another register (tests: the register in force changed).
    #[must_use]
    pub fn with_register(mut self, register: Arc<Register>) -> Self {
        self.register = register;
        self
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn register(&self) -> &Register {
        &self.register
    }

    pub fn keys(&self) -> &VaultKeys {
        &self.keys
    }

    pub(crate) fn now(&self) -> jiff::Timestamp {
        (self.clock)()
    }

    /// The purpose `id`, or [`VaultError::UndeclaredPurpose`].
    pub fn purpose(&self, id: &str) -> Result<&Purpose> {
        self.register
            .purpose(id)
            .ok_or_else(|| VaultError::UndeclaredPurpose(bounded(id)))
    }

    /// Checks that `category` may be stored for `purpose`, and returns its retention rule.
    pub fn check_category<'a>(
        &'a self,
        purpose: &'a Purpose,
        category: &str,
    ) -> Result<&'a RetentionRule> {
        if !purpose.categories.iter().any(|c| c == category) {
            return Err(VaultError::UndeclaredCategory {
                purpose: purpose.id.clone(),
                category: bounded(category),
            });
        }
        if self
            .register
            .category(category)
            .is_some_and(|c| c.never_store)
        {
            return Err(VaultError::NeverStoreCategory(category.to_string()));
        }
        purpose.retention_for(category).ok_or_else(|| {
            VaultError::InvalidInput(format!(
                "purpose `{}` has no retention rule for category `{category}`",
                purpose.id
            ))
        })
    }
}

/// A register name echoed in an error, cut to a sane length (it is caller input).
fn bounded(s: &str) -> String {
    let mut out: String = s.chars().take(64).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

/// A new opaque subject id, 32 hex digits: 6 bytes of the creation time (unix milliseconds)
/// then 10 random bytes. The time prefix keeps new subjects (and their records, indexed by
/// subject) at the end of the B-trees instead of scattered over them, which keeps bulk writes
/// fast as the vault grows; 80 random bits keep ids unguessable. The creation time it reveals
/// is stored beside it anyway.
fn new_subject_id(now_ms: i64) -> Result<String> {
    let mut b = [0u8; 16];
    b[..6].copy_from_slice(&now_ms.to_be_bytes()[2..]);
    getrandom::fill(&mut b[6..]).map_err(CryptoError::from)?;
    Ok(hex::encode(b))
}

/// Whether `id` looks like a subject id (so junk never reaches the database).
pub fn is_subject_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The event that starts (or moves) the clock of a rule, as the platform reports it.
pub fn anchor_event(rule: &RetentionRule) -> Option<&'static str> {
    rule.from.event()
}

/// Whether the clock of `anchor` starts when the datum is collected.
fn starts_at_collection(anchor: &Anchor) -> bool {
    matches!(anchor, Anchor::Collection | Anchor::LastContact)
}

/// Every identifier kind accepted, for error messages and the API documentation.
pub fn identifier_kinds() -> Vec<&'static str> {
    IdentifierKind::ALL.iter().map(|k| k.as_str()).collect()
}
