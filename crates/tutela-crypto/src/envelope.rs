//! Envelope encryption: personal payloads are sealed under a random per-subject key, and that
//! key is stored only wrapped by the key-wrapping sub-key of a master key. Destroying the
//! wrapped key (crypto-shredding) makes every payload of the subject unreadable, in backups too.
//!
//! # Formats (all integers big-endian)
//! Wrapped subject key, [`WRAPPED_KEY_LEN`] = 81 bytes:
//! `0x01 | master key id (8) | nonce (24) | encrypted key (32) | tag (16)`,
//! XChaCha20-Poly1305 under the [`SubKeyPurpose::KeyWrap`] sub-key, associated data
//! `"tutela/wrap/v1\0" | first 9 bytes | u64 len | subject id`.
//!
//! Sealed record: `0x01 | nonce (24) | ciphertext | tag (16)`, XChaCha20-Poly1305 under the
//! subject key, associated data `"tutela/seal/v1\0" | 0x01 | caller's aad`
//! (normally [`record_aad`]).

use std::fmt;

use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{Key, KeyInit, Tag, XChaCha20Poly1305, XNonce};
use ctutils::CtEq;
use zeroize::{Zeroize, Zeroizing};

use crate::CryptoError;
use crate::encoding::push_lp;
use crate::keyring::{KEY_LEN, KeyId, Keyring, MasterKey, SubKey, SubKeyPurpose};

const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

const WRAP_VERSION: u8 = 1;
const WRAP_AAD_LABEL: &[u8] = b"tutela/wrap/v1\0";
const WRAP_HEADER_LEN: usize = 1 + 8;
/// Length of a wrapped subject key.
pub const WRAPPED_KEY_LEN: usize = WRAP_HEADER_LEN + NONCE_LEN + KEY_LEN + TAG_LEN;

const SEAL_VERSION: u8 = 1;
const SEAL_AAD_LABEL: &[u8] = b"tutela/seal/v1\0";
const SEAL_HEADER_LEN: usize = 1 + NONCE_LEN;

const RECORD_AAD_LABEL: &[u8] = b"tutela/record-aad/v1\0";

/// A data subject's random 32-byte data key. Heap-allocated, zeroized on drop, never printed,
/// compared in constant time. Stored only wrapped ([`wrap_subject_key`]).
pub struct SubjectKey {
    bytes: Box<[u8; KEY_LEN]>,
}

impl SubjectKey {
    /// A new random key from the operating system's generator.
    pub fn generate() -> Result<SubjectKey, CryptoError> {
        let mut bytes = Box::new([0u8; KEY_LEN]);
        getrandom::fill(&mut bytes[..])?;
        Ok(SubjectKey { bytes })
    }

    /// A key from bytes derived elsewhere (e.g. [`crate::SubKey::derive_bytes`] for a service's
    /// own sealing key). The caller should zeroize its copy.
    pub fn from_bytes(bytes: &[u8; KEY_LEN]) -> SubjectKey {
        SubjectKey {
            bytes: Box::new(*bytes),
        }
    }

    /// A data key for [`seal`]/[`open`] made from a sub-key derived for
    /// [`SubKeyPurpose::OperatorSecrets`] (the console's TOTP secrets are sealed with it).
    pub fn for_operator_secrets(key: &SubKey) -> Result<SubjectKey, CryptoError> {
        if key.purpose() != SubKeyPurpose::OperatorSecrets {
            return Err(CryptoError::WrongSubKey {
                expected: SubKeyPurpose::OperatorSecrets,
                actual: key.purpose(),
            });
        }
        let mut bytes = Box::new([0u8; KEY_LEN]);
        bytes.copy_from_slice(key.bytes());
        Ok(SubjectKey { bytes })
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(<&Key>::from(&*self.bytes))
    }
}

impl PartialEq for SubjectKey {
    fn eq(&self, other: &Self) -> bool {
        self.bytes.ct_eq(&*other.bytes).to_bool()
    }
}
impl Eq for SubjectKey {}

impl Drop for SubjectKey {
    fn drop(&mut self) {
        let b: &mut [u8; KEY_LEN] = &mut self.bytes;
        b.zeroize();
    }
}

impl zeroize::ZeroizeOnDrop for SubjectKey {}

impl fmt::Debug for SubjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SubjectKey(..)")
    }
}

fn random_nonce() -> Result<[u8; NONCE_LEN], CryptoError> {
    let mut n = [0u8; NONCE_LEN];
    getrandom::fill(&mut n)?;
    Ok(n)
}

fn wrap_aad(header: &[u8], subject_id: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(WRAP_AAD_LABEL.len() + header.len() + 8 + subject_id.len());
    aad.extend_from_slice(WRAP_AAD_LABEL);
    aad.extend_from_slice(header);
    push_lp(&mut aad, subject_id);
    aad
}

/// Wrap `key` for `subject_id` under `kek`, a [`SubKeyPurpose::KeyWrap`] sub-key. The result
/// is [`WRAPPED_KEY_LEN`] bytes and records `kek`'s master key id.
pub fn wrap_subject_key(
    kek: &SubKey,
    subject_id: &[u8],
    key: &SubjectKey,
) -> Result<Vec<u8>, CryptoError> {
    kek.require(SubKeyPurpose::KeyWrap)?;
    let nonce = random_nonce()?;
    let mut out = Vec::with_capacity(WRAPPED_KEY_LEN);
    out.push(WRAP_VERSION);
    out.extend_from_slice(kek.master_id().as_bytes());
    out.extend_from_slice(&nonce);
    let aad = wrap_aad(&out[..WRAP_HEADER_LEN], subject_id);
    out.extend_from_slice(&key.bytes[..]);
    let cipher = XChaCha20Poly1305::new(<&Key>::from(kek.bytes()));
    let tag = cipher
        .encrypt_inout_detached(
            &XNonce::from(nonce),
            &aad,
            (&mut out[WRAP_HEADER_LEN + NONCE_LEN..]).into(),
        )
        .map_err(|_| CryptoError::Malformed("subject key"))?;
    out.extend_from_slice(&tag);
    Ok(out)
}

struct WrappedParts<'a> {
    header: &'a [u8],
    key_id: KeyId,
    nonce: [u8; NONCE_LEN],
    ciphertext: &'a [u8],
    tag: Tag,
}

fn parse_wrapped(blob: &[u8]) -> Result<WrappedParts<'_>, CryptoError> {
    let Some(&version) = blob.first() else {
        return Err(CryptoError::Malformed("wrapped key: empty"));
    };
    if version != WRAP_VERSION {
        return Err(CryptoError::UnsupportedVersion {
            what: "wrapped key",
            version,
        });
    }
    if blob.len() != WRAPPED_KEY_LEN {
        return Err(CryptoError::Malformed("wrapped key: wrong length"));
    }
    let (header, rest) = blob.split_at(WRAP_HEADER_LEN);
    let (nonce, rest) = rest.split_at(NONCE_LEN);
    let (ciphertext, tag) = rest.split_at(KEY_LEN);
    let mut id = [0u8; 8];
    id.copy_from_slice(&header[1..]);
    let mut n = [0u8; NONCE_LEN];
    n.copy_from_slice(nonce);
    Ok(WrappedParts {
        header,
        key_id: KeyId(id),
        nonce: n,
        ciphertext,
        tag: Tag::try_from(tag).map_err(|_| CryptoError::Malformed("wrapped key: tag"))?,
    })
}

/// The master key id recorded in a wrapped key (to find the key, or to see whether it needs
/// re-wrapping after a rotation).
pub fn wrapped_key_id(blob: &[u8]) -> Result<KeyId, CryptoError> {
    Ok(parse_wrapped(blob)?.key_id)
}

/// Unwrap a key made by [`wrap_subject_key`] for the same `subject_id`. `kek` must be the
/// key-wrapping sub-key of the master key recorded in `blob`.
pub fn unwrap_subject_key(
    kek: &SubKey,
    subject_id: &[u8],
    blob: &[u8],
) -> Result<SubjectKey, CryptoError> {
    kek.require(SubKeyPurpose::KeyWrap)?;
    let parts = parse_wrapped(blob)?;
    if parts.key_id != kek.master_id() {
        return Err(CryptoError::KeyIdMismatch {
            blob: parts.key_id,
            kek: kek.master_id(),
        });
    }
    let aad = wrap_aad(parts.header, subject_id);
    let mut bytes = Box::new([0u8; KEY_LEN]);
    bytes.copy_from_slice(parts.ciphertext);
    let mut key = SubjectKey { bytes };
    let cipher = XChaCha20Poly1305::new(<&Key>::from(kek.bytes()));
    cipher
        .decrypt_inout_detached(
            &XNonce::from(parts.nonce),
            &aad,
            (&mut key.bytes[..]).into(),
            &parts.tag,
        )
        .map_err(|_| CryptoError::Decrypt)?;
    Ok(key)
}

/// Unwrap `blob` with whichever key of `old` it names and wrap the subject key again under
/// `new_key`. Used after a rotation; the subject's sealed records are unchanged.
pub fn rewrap(
    old: &Keyring,
    new_key: &MasterKey,
    subject_id: &[u8],
    blob: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let key = old.unwrap_subject_key(subject_id, blob)?;
    wrap_subject_key(&new_key.derive(SubKeyPurpose::KeyWrap), subject_id, &key)
}

impl Keyring {
    /// [`wrap_subject_key`] under the current master key.
    pub fn wrap_subject_key(
        &self,
        subject_id: &[u8],
        key: &SubjectKey,
    ) -> Result<Vec<u8>, CryptoError> {
        wrap_subject_key(
            &self.current.derive(SubKeyPurpose::KeyWrap),
            subject_id,
            key,
        )
    }

    /// [`unwrap_subject_key`] with the master key (current or previous) that `blob` names.
    pub fn unwrap_subject_key(
        &self,
        subject_id: &[u8],
        blob: &[u8],
    ) -> Result<SubjectKey, CryptoError> {
        let id = wrapped_key_id(blob)?;
        let master = self.find(id).ok_or(CryptoError::UnknownKeyId(id))?;
        unwrap_subject_key(&master.derive(SubKeyPurpose::KeyWrap), subject_id, blob)
    }

    /// Whether `blob` was wrapped by another key than the current one.
    pub fn needs_rewrap(&self, blob: &[u8]) -> Result<bool, CryptoError> {
        Ok(wrapped_key_id(blob)? != self.current.id())
    }
}

/// Encrypt `plaintext` under the subject key, binding `aad` (see [`record_aad`]).
/// Output: `0x01 | random 24-byte nonce | ciphertext | 16-byte tag`.
pub fn seal(key: &SubjectKey, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
    seal_with_nonce(key, random_nonce()?, plaintext, aad)
}

/// Random bytes for nonces fetched from the OS per call of `getrandom`, by [`Sealer`].
const NONCE_POOL: usize = NONCE_LEN * 170;

/// Seals many records, drawing their random nonces from a buffer of OS randomness refilled
/// 4 KiB at a time (one `getrandom` call per 170 records instead of one per record; bulk
/// writes seal millions). The output is exactly that of [`seal`]: each nonce is 24 fresh
/// random bytes, used once (the buffer only moves forward and a `Sealer` cannot be cloned).
pub struct Sealer {
    pool: Box<[u8; NONCE_POOL]>,
    used: usize,
}

impl Default for Sealer {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sealer")
    }
}

impl Sealer {
    /// An empty sealer: its first seal fetches randomness.
    pub fn new() -> Self {
        Sealer {
            pool: Box::new([0u8; NONCE_POOL]),
            used: NONCE_POOL,
        }
    }

    fn nonce(&mut self) -> Result<[u8; NONCE_LEN], CryptoError> {
        if self.used + NONCE_LEN > NONCE_POOL {
            getrandom::fill(&mut self.pool[..])?;
            self.used = 0;
        }
        let mut n = [0u8; NONCE_LEN];
        let slot = &mut self.pool[self.used..self.used + NONCE_LEN];
        n.copy_from_slice(slot);
        // A nonce is not secret, but nothing should ever read it from here again.
        slot.fill(0);
        self.used += NONCE_LEN;
        Ok(n)
    }

    /// Same as [`seal`].
    pub fn seal(
        &mut self,
        key: &SubjectKey,
        plaintext: &[u8],
        aad: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let nonce = self.nonce()?;
        seal_with_nonce(key, nonce, plaintext, aad)
    }
}

fn seal_with_nonce(
    key: &SubjectKey,
    nonce: [u8; NONCE_LEN],
    plaintext: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let mut out = Vec::with_capacity(SEAL_HEADER_LEN + plaintext.len() + TAG_LEN);
    out.push(SEAL_VERSION);
    out.extend_from_slice(&nonce);
    let full_aad = seal_aad(&out[..1], aad);
    out.extend_from_slice(plaintext);
    let tag = key
        .cipher()
        .encrypt_inout_detached(
            &XNonce::from(nonce),
            &full_aad,
            (&mut out[SEAL_HEADER_LEN..]).into(),
        )
        .map_err(|_| CryptoError::Malformed("plaintext: too long"))?;
    out.extend_from_slice(&tag);
    Ok(out)
}

fn seal_aad(version: &[u8], aad: &[u8]) -> Vec<u8> {
    let mut full = Vec::with_capacity(SEAL_AAD_LABEL.len() + version.len() + aad.len());
    full.extend_from_slice(SEAL_AAD_LABEL);
    full.extend_from_slice(version);
    full.extend_from_slice(aad);
    full
}

/// Decrypt what [`seal`] produced, with the same key and `aad`. Any tampering, wrong key or
/// wrong `aad` gives [`CryptoError::Decrypt`]. The plaintext is zeroized when dropped.
pub fn open(
    key: &SubjectKey,
    sealed: &[u8],
    aad: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let Some(&version) = sealed.first() else {
        return Err(CryptoError::Malformed("sealed record: empty"));
    };
    if version != SEAL_VERSION {
        return Err(CryptoError::UnsupportedVersion {
            what: "sealed record",
            version,
        });
    }
    if sealed.len() < SEAL_HEADER_LEN + TAG_LEN {
        return Err(CryptoError::Malformed("sealed record: too short"));
    }
    let (header, rest) = sealed.split_at(SEAL_HEADER_LEN);
    let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&header[1..]);
    let tag = Tag::try_from(tag).map_err(|_| CryptoError::Malformed("sealed record: tag"))?;
    let full_aad = seal_aad(&header[..1], aad);
    let mut out = Zeroizing::new(ciphertext.to_vec());
    key.cipher()
        .decrypt_inout_detached(
            &XNonce::from(nonce),
            &full_aad,
            out.as_mut_slice().into(),
            &tag,
        )
        .map_err(|_| CryptoError::Decrypt)?;
    Ok(out)
}

/// Associated data binding a record to its subject, purpose and data category:
/// `"tutela/record-aad/v1\0"` then each part as a u64 big-endian length and its bytes, so
/// that no two different triples give the same bytes.
pub fn record_aad(subject_id: &[u8], purpose: &str, category: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(
        RECORD_AAD_LABEL.len() + 24 + subject_id.len() + purpose.len() + category.len(),
    );
    aad.extend_from_slice(RECORD_AAD_LABEL);
    push_lp(&mut aad, subject_id);
    push_lp(&mut aad, purpose.as_bytes());
    push_lp(&mut aad, category.as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ring() -> Keyring {
        Keyring::new(MasterKey::generate().unwrap())
    }

    #[test]
    fn sealer_output_opens_and_never_repeats_a_nonce() {
        let key = SubjectKey::generate().unwrap();
        let aad = record_aad(b"subject-1", "billing", "email");
        let mut sealer = Sealer::new();
        let mut nonces = std::collections::HashSet::new();
        // More than two refills of the pool.
        for i in 0..(2 * NONCE_POOL / NONCE_LEN + 7) {
            let pt = format!("message {i}");
            let sealed = sealer.seal(&key, pt.as_bytes(), &aad).unwrap();
            assert_eq!(sealed.len(), 1 + 24 + pt.len() + 16);
            assert_eq!(&open(&key, &sealed, &aad).unwrap()[..], pt.as_bytes());
            assert!(open(&key, &sealed, b"other aad").is_err());
            assert!(nonces.insert(sealed[1..25].to_vec()), "nonce reused at {i}");
        }
    }

    #[test]
    fn seal_open_round_trip_and_failures() {
        let key = SubjectKey::generate().unwrap();
        let aad = record_aad(b"subject-1", "billing", "email");
        let sealed = seal(&key, b"alice@example.com", &aad).unwrap();
        assert_eq!(sealed.len(), 1 + 24 + 17 + 16);
        assert_eq!(sealed[0], 1);
        assert_eq!(
            &open(&key, &sealed, &aad).unwrap()[..],
            b"alice@example.com"
        );
        // Fresh nonce each time.
        assert_ne!(seal(&key, b"alice@example.com", &aad).unwrap(), sealed);
        // Empty plaintext.
        let e = seal(&key, b"", &aad).unwrap();
        assert!(open(&key, &e, &aad).unwrap().is_empty());

        // Wrong key.
        let other = SubjectKey::generate().unwrap();
        assert!(matches!(
            open(&other, &sealed, &aad),
            Err(CryptoError::Decrypt)
        ));
        // Wrong AAD: each part matters.
        for wrong in [
            record_aad(b"subject-2", "billing", "email"),
            record_aad(b"subject-1", "support", "email"),
            record_aad(b"subject-1", "billing", "phone"),
            Vec::new(),
        ] {
            assert!(matches!(
                open(&key, &sealed, &wrong),
                Err(CryptoError::Decrypt)
            ));
        }
        // Every single-bit flip after the version byte is caught.
        for i in 1..sealed.len() {
            let mut t = sealed.clone();
            t[i] ^= 0x01;
            assert!(
                matches!(open(&key, &t, &aad), Err(CryptoError::Decrypt)),
                "byte {i}"
            );
        }
        // Version byte, truncation, garbage.
        let mut t = sealed.clone();
        t[0] = 2;
        assert!(matches!(
            open(&key, &t, &aad),
            Err(CryptoError::UnsupportedVersion { version: 2, .. })
        ));
        for n in 0..sealed.len() {
            assert!(open(&key, &sealed[..n], &aad).is_err(), "truncated to {n}");
        }
        let mut longer = sealed.clone();
        longer.push(0);
        assert!(open(&key, &longer, &aad).is_err());
    }

    #[test]
    fn record_aad_is_unambiguous() {
        assert_ne!(record_aad(b"ab", "c", "d"), record_aad(b"a", "bc", "d"));
        assert_ne!(record_aad(b"a", "b", "cd"), record_aad(b"a", "bc", "d"));
        assert_ne!(record_aad(b"", "", "x"), record_aad(b"x", "", ""));
    }

    #[test]
    fn wrap_unwrap_and_failures() {
        let ring = ring();
        let kek = ring.derive(SubKeyPurpose::KeyWrap);
        let key = SubjectKey::generate().unwrap();
        let blob = wrap_subject_key(&kek, b"subject-1", &key).unwrap();
        assert_eq!(blob.len(), WRAPPED_KEY_LEN);
        assert_eq!(wrapped_key_id(&blob).unwrap(), ring.current.id());
        assert!(unwrap_subject_key(&kek, b"subject-1", &blob).unwrap() == key);
        assert!(ring.unwrap_subject_key(b"subject-1", &blob).unwrap() == key);

        // Wrong subject (AAD).
        assert!(matches!(
            unwrap_subject_key(&kek, b"subject-2", &blob),
            Err(CryptoError::Decrypt)
        ));
        // Wrong purpose of sub-key.
        let bi = ring.derive(SubKeyPurpose::BlindIndex);
        assert!(matches!(
            unwrap_subject_key(&bi, b"subject-1", &blob),
            Err(CryptoError::WrongSubKey { .. })
        ));
        assert!(wrap_subject_key(&bi, b"subject-1", &key).is_err());
        // Another master key.
        let other = MasterKey::generate()
            .unwrap()
            .derive(SubKeyPurpose::KeyWrap);
        assert!(matches!(
            unwrap_subject_key(&other, b"subject-1", &blob),
            Err(CryptoError::KeyIdMismatch { .. })
        ));
        assert!(matches!(
            Keyring::new(MasterKey::generate().unwrap()).unwrap_subject_key(b"subject-1", &blob),
            Err(CryptoError::UnknownKeyId(_))
        ));
        // Tampering anywhere; changing the recorded key id is a mismatch, elsewhere Decrypt.
        for i in 0..blob.len() {
            let mut t = blob.clone();
            t[i] ^= 0x80;
            assert!(
                unwrap_subject_key(&kek, b"subject-1", &t).is_err(),
                "byte {i}"
            );
        }
        for n in 0..blob.len() {
            assert!(unwrap_subject_key(&kek, b"subject-1", &blob[..n]).is_err());
        }
        // A forged blob claiming our key id, with wrong contents.
        let mut forged = blob.clone();
        forged[20] ^= 1;
        assert!(matches!(
            ring.unwrap_subject_key(b"subject-1", &forged),
            Err(CryptoError::Decrypt)
        ));
    }

    #[test]
    fn rotation_rewrap() {
        let old_master = MasterKey::generate().unwrap();
        let old_id = old_master.id();
        let old_ring = Keyring::new(old_master);
        let key = SubjectKey::generate().unwrap();
        let aad = record_aad(b"s", "billing", "name");
        let record = seal(&key, b"Alice", &aad).unwrap();
        let blob = old_ring.wrap_subject_key(b"s", &key).unwrap();

        let new_master = MasterKey::generate().unwrap();
        let new_id = new_master.id();
        let new_blob = rewrap(&old_ring, &new_master, b"s", &blob).unwrap();
        assert_eq!(wrapped_key_id(&new_blob).unwrap(), new_id);
        assert_ne!(new_id, old_id);

        // The new keyring keeps the old key as previous: both blobs unwrap.
        let Keyring {
            current: old_current,
            ..
        } = old_ring;
        let ring = Keyring {
            current: new_master,
            previous: vec![old_current],
        };
        assert!(ring.needs_rewrap(&blob).unwrap());
        assert!(!ring.needs_rewrap(&new_blob).unwrap());
        let k1 = ring.unwrap_subject_key(b"s", &blob).unwrap();
        let k2 = ring.unwrap_subject_key(b"s", &new_blob).unwrap();
        assert!(k1 == key && k2 == key);
        assert_eq!(&open(&k2, &record, &aad).unwrap()[..], b"Alice");

        // Once the old key is dropped, only the re-wrapped blob opens.
        let ring = Keyring::new(ring.current);
        assert!(matches!(
            ring.unwrap_subject_key(b"s", &blob),
            Err(CryptoError::UnknownKeyId(id)) if id == old_id
        ));
        assert!(ring.unwrap_subject_key(b"s", &new_blob).unwrap() == key);
        // Rewrap with a ring that doesn't hold the blob's key fails cleanly.
        assert!(rewrap(&ring, &MasterKey::generate().unwrap(), b"s", &blob).is_err());
        assert!(format!("{key:?}").contains(".."));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn prop_seal_open(pt in proptest::collection::vec(any::<u8>(), 0..512),
                          aad in proptest::collection::vec(any::<u8>(), 0..64),
                          flip in any::<prop::sample::Index>()) {
            let key = SubjectKey::generate().unwrap();
            let sealed = seal(&key, &pt, &aad).unwrap();
            prop_assert_eq!(&open(&key, &sealed, &aad).unwrap()[..], &pt[..]);
            let mut t = sealed.clone();
            let i = flip.index(t.len());
            t[i] ^= 0x04;
            prop_assert!(open(&key, &t, &aad).is_err());
        }

        #[test]
        fn prop_wrap_unwrap(subject in proptest::collection::vec(any::<u8>(), 0..64),
                            other in proptest::collection::vec(any::<u8>(), 0..64)) {
            let ring = Keyring::new(MasterKey::generate().unwrap());
            let key = SubjectKey::generate().unwrap();
            let blob = ring.wrap_subject_key(&subject, &key).unwrap();
            prop_assert!(ring.unwrap_subject_key(&subject, &blob).unwrap() == key);
            if other != subject {
                prop_assert!(ring.unwrap_subject_key(&other, &blob).is_err());
            }
        }

        #[test]
        fn prop_open_garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..128)) {
            let key = SubjectKey::generate().unwrap();
            prop_assert!(open(&key, &data, b"").is_err());
            let ring = Keyring::new(MasterKey::generate().unwrap());
            prop_assert!(ring.unwrap_subject_key(b"s", &data).is_err());
        }
    }
}
