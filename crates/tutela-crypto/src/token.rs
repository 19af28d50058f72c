//! API bearer tokens: `tutela_<id>_<secret>`.
//!
//! The id (8 random bytes, hex) is stored in clear to find the token; only a SHA-256 hash of the
//! secret (32 random bytes, hex) is stored. A high-entropy secret needs no slow password hash: a
//! stolen hash table cannot be brute-forced. Verification compares hashes in constant time.

use ctutils::CtEq;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::CryptoError;
use crate::encoding::hex_lower;

const PREFIX: &str = "tutela_";
const ID_BYTES: usize = 8;
const SECRET_BYTES: usize = 32;

/// A freshly created token: show `token` once to the operator, store `id` and `hash`.
pub struct NewToken {
    pub id: String,
    pub hash: [u8; 32],
    pub token: Zeroizing<String>,
}

/// Creates a random token.
pub fn new_token() -> Result<NewToken, CryptoError> {
    let mut id = [0u8; ID_BYTES];
    getrandom::fill(&mut id)?;
    let mut secret = Zeroizing::new([0u8; SECRET_BYTES]);
    getrandom::fill(&mut secret[..])?;
    let id = hex_lower(&id);
    let secret_hex = Zeroizing::new(hex_lower(&secret[..]));
    let hash = hash_secret(&secret_hex);
    let token = Zeroizing::new(format!("{PREFIX}{id}_{}", secret_hex.as_str()));
    Ok(NewToken { id, hash, token })
}

/// Splits a presented token into its id and secret; None when it is not shaped like a token.
pub fn parse_token(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(id, ID_BYTES * 2) && hex(secret, SECRET_BYTES * 2)).then_some((id, secret))
}

/// The stored form of a token's secret.
pub fn hash_secret(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Whether `secret` matches the stored hash (constant time).
pub fn verify_secret(secret: &str, stored: &[u8]) -> bool {
    let computed = hash_secret(secret);
    stored.len() == 32 && bool::from(computed[..].ct_eq(stored))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejections() {
        let t = new_token().unwrap();
        let (id, secret) = parse_token(&t.token).unwrap();
        assert_eq!(id, t.id);
        assert!(verify_secret(secret, &t.hash));
        let mut wrong = secret.to_string();
        wrong.replace_range(0..1, if wrong.starts_with('0') { "1" } else { "0" });
        assert!(!verify_secret(&wrong, &t.hash));
        assert!(!verify_secret(secret, &t.hash[..31]));
        assert!(parse_token("tutela_abc_def").is_none());
        assert!(parse_token("Bearer x").is_none());
        assert!(parse_token(&t.token.replace("tutela_", "tutelb_")).is_none());
        let other = new_token().unwrap();
        assert_ne!(other.id, t.id);
    }
}
