//! Keyed pseudonyms (`keyed_pseudonym`): HMAC-SHA256 under a random per-site, per-period salt.
//!
//! The salts are random bytes stored in the database and deleted when their period ends; they are
//! never derived from a long-lived key. Once a salt is gone, nobody (including the operator) can
//! recompute a pseudonym from a cookie value, so old events become unlinkable.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Length of a salt in bytes.
pub const SALT_LEN: usize = 32;

/// What a pseudonym was computed from; part of the hashed input so the kinds never collide.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The tracker's visitor-id cookie (`_id`).
    Cookie,
    /// The site's own user id (`uid`).
    UserId,
    /// No cookie: truncated IP, user agent and site, under the daily salt.
    Cookieless,
}

impl Source {
    fn tag(self) -> &'static [u8] {
        match self {
            Source::Cookie => b"cookie",
            Source::UserId => b"uid",
            Source::Cookieless => b"cookieless",
        }
    }
}

/// The pseudonym of `input` for `site_id` under `salt`: the first 8 bytes of
/// HMAC-SHA256(salt, tag ‖ site ‖ input) as a signed integer.
pub fn pseudonym(salt: &[u8], site_id: i64, source: Source, input: &[&[u8]]) -> i64 {
    PseudonymKey::new(salt).pseudonym(site_id, source, input)
}

/// A salt ready for [`pseudonym`]: HMAC's keyed state (inner and outer pads already hashed), so
/// that each pseudonym costs two SHA-256 compressions instead of four. Kept only as long as its
/// salt (it is as secret as the salt: it is dropped with it) and wiped when dropped: the SHA-256
/// states and the block buffer inside zeroize themselves on drop (the `zeroize` features of
/// `sha2` and `hmac`, checked at compile time below), and so does every per-hit copy of the
/// state that [`PseudonymKey::pseudonym`] makes.
#[derive(Clone)]
pub struct PseudonymKey(Hmac<Sha256>);

// Compile-time proof that the parts of the keyed state wipe themselves: without the `zeroize`
// features these trait bounds fail to hold and the crate does not build.
const _: () = {
    fn wiped<T: zeroize::ZeroizeOnDrop>() {}
    #[allow(dead_code)]
    fn parts() {
        wiped::<<Sha256 as hmac::digest::block_api::EagerHash>::Core>();
        wiped::<
            hmac::digest::block_api::Buffer<<Sha256 as hmac::digest::block_api::EagerHash>::Core>,
        >();
    }
};

impl zeroize::ZeroizeOnDrop for PseudonymKey {}

impl std::fmt::Debug for PseudonymKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PseudonymKey(..)")
    }
}

impl PseudonymKey {
    /// The keyed state of `salt` (the caller wipes `salt` itself).
    pub fn new(salt: &[u8]) -> Self {
        PseudonymKey(
            <Hmac<Sha256> as KeyInit>::new_from_slice(salt).expect("HMAC takes any key length"),
        )
    }

    /// Same as [`pseudonym`] with this key's salt.
    pub fn pseudonym(&self, site_id: i64, source: Source, input: &[&[u8]]) -> i64 {
        let mut mac = self.0.clone();
        mac.update(source.tag());
        mac.update(&[0]);
        mac.update(&site_id.to_be_bytes());
        for part in input {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        let out = mac.finalize().into_bytes();
        i64::from_be_bytes(out[..8].try_into().expect("32-byte MAC"))
    }
}

/// A fresh random salt.
pub fn random_salt() -> Result<[u8; SALT_LEN], getrandom::Error> {
    let mut salt = [0u8; SALT_LEN];
    getrandom::fill(&mut salt)?;
    Ok(salt)
}

/// Whether a visitor id looks like the Matomo tracker's: 16 hexadecimal characters.
pub fn is_visitor_id(s: &str) -> bool {
    s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The memory that held a keyed state holds only zeros once it is dropped.
    #[test]
    fn keyed_state_is_wiped_on_drop() {
        use std::mem::{MaybeUninit, size_of};
        let bytes = |p: *const PseudonymKey| -> Vec<u8> {
            (0..size_of::<PseudonymKey>())
                // SAFETY: reads within the slot, which stays allocated (its bytes were all
                // written: by the key's construction and use, then by its wiping drop).
                .map(|i| unsafe { std::ptr::read_volatile(p.cast::<u8>().add(i)) })
                .collect()
        };
        let mut slot = MaybeUninit::<PseudonymKey>::uninit();
        let key = slot.write(PseudonymKey::new(&[7; 32]));
        assert_ne!(key.pseudonym(1, Source::Cookie, &[b"abcdef0123456789"]), 0);
        let before = bytes(slot.as_ptr());
        assert!(before.iter().filter(|b| **b != 0).count() >= 32);
        // SAFETY: initialised above, dropped once, not used afterwards.
        unsafe { slot.assume_init_drop() };
        let after = bytes(slot.as_ptr());
        assert!(after.iter().all(|b| *b == 0), "left after drop: {after:?}");
    }

    #[test]
    fn keyed_per_salt_site_and_source() {
        let a = pseudonym(&[1; 32], 1, Source::Cookie, &[b"abcdef0123456789"]);
        assert_eq!(
            a,
            pseudonym(&[1; 32], 1, Source::Cookie, &[b"abcdef0123456789"])
        );
        assert_ne!(
            a,
            pseudonym(&[2; 32], 1, Source::Cookie, &[b"abcdef0123456789"])
        );
        assert_ne!(
            a,
            pseudonym(&[1; 32], 2, Source::Cookie, &[b"abcdef0123456789"])
        );
        assert_ne!(
            a,
            pseudonym(&[1; 32], 1, Source::UserId, &[b"abcdef0123456789"])
        );
        // Length-prefixed parts: ("ab","c") and ("a","bc") differ.
        assert_ne!(
            pseudonym(&[1; 32], 1, Source::Cookieless, &[b"ab", b"c"]),
            pseudonym(&[1; 32], 1, Source::Cookieless, &[b"a", b"bc"])
        );
        assert!(is_visitor_id("0123456789abcdef") && !is_visitor_id("xyz"));
        // The cached keyed state gives the very same pseudonyms, also when reused.
        let key = PseudonymKey::new(&[1; 32]);
        assert_eq!(key.pseudonym(1, Source::Cookie, &[b"abcdef0123456789"]), a);
        assert_eq!(key.pseudonym(1, Source::Cookie, &[b"abcdef0123456789"]), a);
        // And the value is the one-shot HMAC-SHA256 of the documented message:
        // "cookie" 0x00 be64(site) be64(len) input.
        let mut msg = b"cookie\0".to_vec();
        msg.extend_from_slice(&1i64.to_be_bytes());
        msg.extend_from_slice(&16u64.to_be_bytes());
        msg.extend_from_slice(b"abcdef0123456789");
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&[1; 32]).unwrap();
        mac.update(&msg);
        let whole = mac.finalize().into_bytes();
        assert_eq!(a, i64::from_be_bytes(whole[..8].try_into().unwrap()));
    }
}
