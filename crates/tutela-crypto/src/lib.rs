//! Tutela's cryptographic building blocks: the master keyring, envelope encryption of
//! personal data under per-subject keys (crypto-shredding), keyed blind indexes for
//! lookups, the hash-chained audit log, and a payment-card number detector.
//!
//! Nothing here does I/O except the key-file functions of [`MasterKey`]. Secret material
//! ([`MasterKey`], [`SubKey`], [`SubjectKey`]) lives on the heap, is zeroized on drop and is
//! never printed by `Debug`.
//!
//! Algorithms: HKDF-SHA256 for sub-keys, XChaCha20-Poly1305 for encryption (random 24-byte
//! nonces), HMAC-SHA256 for blind indexes and subject commitments, SHA-256 for the audit chain.

mod audit;
mod blind_index;
mod card;
mod encoding;
mod envelope;
mod keyring;
pub mod password;
pub mod random_id;
pub mod session;
pub mod token;
pub mod totp;

pub use audit::{
    AuditEntry, ChainError, ChainErrorKind, ChainHead, FIRST_SEQ, GENESIS_HASH, chain_hash,
    commit_subject, verify_chain, verify_chain_from,
};
pub use blind_index::{
    BlindIndexer, CountryCallingCode, IdentifierError, IdentifierKind, MAX_IDENTIFIER_LEN,
    normalise,
};
pub use card::{contains_card_number, luhn_valid};
pub use envelope::{
    Sealer, SubjectKey, WRAPPED_KEY_LEN, open, record_aad, rewrap, seal, unwrap_subject_key,
    wrap_subject_key, wrapped_key_id,
};
pub use keyring::{KeyId, Keyring, MasterKey, SubKey, SubKeyPurpose};
/// Re-exported so callers can name the return type of [`open`] and [`SubKey::derive_bytes`].
pub use zeroize::Zeroizing;

/// Errors from key handling and envelope encryption.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// Reading or writing a key file failed.
    #[error("key file {path}: {source}")]
    Io {
        /// The key file.
        path: std::path::PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The key file can be read by group or others.
    #[error(
        "key file {path} is accessible by group or others (mode {mode:04o}); \
         restrict it with `chmod 600 {path}`"
    )]
    InsecurePermissions {
        /// The key file.
        path: std::path::PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Refused to overwrite an existing key file.
    #[error("key file {path} already exists; refusing to overwrite it")]
    AlreadyExists {
        /// The key file.
        path: std::path::PathBuf,
    },
    /// The key text is not 64 hexadecimal characters.
    #[error(
        "invalid master key encoding: expected 64 hexadecimal characters (32 bytes), \
         optionally followed by a newline"
    )]
    InvalidKeyEncoding,
    /// The operating system's random number generator failed.
    #[error("random number generator failed: {0}")]
    Rng(getrandom::Error),
    /// A sub-key was used for something other than its purpose.
    #[error("sub-key for {actual} used where a {expected} sub-key is required")]
    WrongSubKey {
        /// The purpose the operation needs.
        expected: SubKeyPurpose,
        /// The purpose of the key that was given.
        actual: SubKeyPurpose,
    },
    /// A ciphertext or wrapped key is too short or otherwise not in the expected format.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// A ciphertext or wrapped key has a format version this build does not know.
    #[error("unsupported {what} format version {version}")]
    UnsupportedVersion {
        /// What was being parsed.
        what: &'static str,
        /// The version byte found.
        version: u8,
    },
    /// A wrapped key names a master key that is not in the keyring.
    #[error("wrapped key was made with master key {0}, which is not in the keyring")]
    UnknownKeyId(KeyId),
    /// A wrapped key was made with another master key than the key-wrapping key given.
    #[error("wrapped key was made with master key {blob}, not {kek}")]
    KeyIdMismatch {
        /// Master key id recorded in the wrapped key.
        blob: KeyId,
        /// Master key id of the key-wrapping key given.
        kek: KeyId,
    },
    /// Authentication failed: wrong key, wrong associated data, or tampered data.
    #[error("decryption failed: wrong key, wrong associated data, or the data was modified")]
    Decrypt,
}

impl From<getrandom::Error> for CryptoError {
    fn from(e: getrandom::Error) -> Self {
        CryptoError::Rng(e)
    }
}
