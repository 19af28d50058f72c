//! The rights engine's keys, all derived from one root so nothing new has to be stored.
//!
//! `root.derive(RightsRequests)` → HKDF contexts:
//! - `seal`: XChaCha20-Poly1305 key sealing requester details and what they wrote;
//! - `index`: HMAC key of the requester blind index (merging repeated requests);
//! - `form`: HMAC key of the portal's form tokens;
//! - `challenge`: HMAC key hashing verification codes and link tokens.
//!
//! The root must not rotate (blind indexes could not be recomputed): it is the installation's
//! master key file today; when the vault lands it is the vault's index root (see ARCHITECTURE.md).

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use tutela_crypto::{IdentifierKind, MasterKey, SubKeyPurpose, SubjectKey, Zeroizing};

/// Key material of the rights engine. Zeroized on drop, never printed.
pub struct RightsKeys {
    seal: SubjectKey,
    index: Zeroizing<[u8; 32]>,
    form: Zeroizing<[u8; 32]>,
    challenge: Zeroizing<[u8; 32]>,
}

impl fmt::Debug for RightsKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RightsKeys(..)")
    }
}

type HmacSha256 = Hmac<Sha256>;

pub(crate) fn hmac_parts(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        mac.update(&(p.len() as u64).to_be_bytes());
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

impl RightsKeys {
    pub fn from_root(root: &MasterKey) -> RightsKeys {
        let sub = root.derive(SubKeyPurpose::RightsRequests);
        let seal = sub.derive_bytes(b"seal");
        RightsKeys {
            seal: SubjectKey::from_bytes(&seal),
            index: sub.derive_bytes(b"index"),
            form: sub.derive_bytes(b"form"),
            challenge: sub.derive_bytes(b"challenge"),
        }
    }

    /// Random keys, for tests.
    pub fn generate() -> Result<RightsKeys, tutela_crypto::CryptoError> {
        Ok(Self::from_root(&MasterKey::generate()?))
    }

    pub(crate) fn seal_key(&self) -> &SubjectKey {
        &self.seal
    }

    /// Blind index of a normalised identifier of `kind`.
    pub fn requester_index(&self, kind: IdentifierKind, normalised: &str) -> [u8; 32] {
        hmac_parts(
            &self.index[..],
            &[
                b"requester",
                kind.as_str().as_bytes(),
                normalised.as_bytes(),
            ],
        )
    }

    pub(crate) fn form_mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        hmac_parts(&self.form[..], parts)
    }

    pub(crate) fn challenge_mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        hmac_parts(&self.challenge[..], parts)
    }
}

/// Constant-time equality of two byte strings (length is not secret).
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use ctutils::CtEq;
    a.len() == b.len() && a.ct_eq(b).to_bool()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_separate_and_stable() {
        let root = MasterKey::generate().unwrap();
        let a = RightsKeys::from_root(&root);
        let b = RightsKeys::from_root(&root);
        assert_eq!(
            a.requester_index(IdentifierKind::Email, "a@b.c"),
            b.requester_index(IdentifierKind::Email, "a@b.c")
        );
        assert_ne!(
            a.requester_index(IdentifierKind::Email, "a@b.c"),
            a.requester_index(IdentifierKind::Login, "a@b.c")
        );
        assert_ne!(a.form_mac(&[b"x"]), a.challenge_mac(&[b"x"]));
        let other = RightsKeys::generate().unwrap();
        assert_ne!(
            a.requester_index(IdentifierKind::Email, "a@b.c"),
            other.requester_index(IdentifierKind::Email, "a@b.c")
        );
        assert!(ct_eq(b"abc", b"abc") && !ct_eq(b"abc", b"abd") && !ct_eq(b"ab", b"abc"));
        assert_eq!(format!("{a:?}"), "RightsKeys(..)");
    }
}
