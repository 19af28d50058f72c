//! Console sessions, their CSRF tokens, and one-time setup links.
//!
//! A session id (and a setup token) is 32 random bytes in hex. The store keeps only a labelled
//! SHA-256 of it, so a copy of the database opens no session. The CSRF token of a session is a
//! differently labelled SHA-256 of the session id: it needs no storage, cannot be computed
//! without the (HttpOnly) cookie, and reveals nothing about it when a page is seen by someone
//! else. Comparisons are constant-time.

use ctutils::CtEq;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::CryptoError;
use crate::encoding::hex_lower;

const SESSION_LABEL: &[u8] = b"tutela/console-session/v1\0";
const CSRF_LABEL: &[u8] = b"tutela/console-csrf/v1\0";
const SETUP_LABEL: &[u8] = b"tutela/console-setup/v1\0";
const TOKEN_BYTES: usize = 32;

/// A new random secret: give `secret` to the browser (or print it), store `hash`.
pub struct NewSecret {
    pub secret: Zeroizing<String>,
    pub hash: [u8; 32],
}

fn random_hex() -> Result<Zeroizing<String>, CryptoError> {
    let mut raw = Zeroizing::new([0u8; TOKEN_BYTES]);
    getrandom::fill(&mut raw[..])?;
    Ok(Zeroizing::new(hex_lower(&raw[..])))
}

fn labelled(label: &[u8], text: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(label);
    h.update(text.as_bytes());
    h.finalize().into()
}

/// Whether `text` has the shape of a session id or setup token (64 lower-case hex digits).
pub fn well_formed(text: &str) -> bool {
    text.len() == TOKEN_BYTES * 2 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A new session id.
pub fn new_session() -> Result<NewSecret, CryptoError> {
    let secret = random_hex()?;
    let hash = session_hash(&secret);
    Ok(NewSecret { secret, hash })
}

/// The stored form of a session id.
pub fn session_hash(session: &str) -> [u8; 32] {
    labelled(SESSION_LABEL, session)
}

/// The CSRF token that forms of this session (or of this pre-login cookie) must carry.
pub fn csrf_token(session: &str) -> String {
    hex_lower(&labelled(CSRF_LABEL, session))
}

/// Whether a submitted CSRF token belongs to the session (constant-time).
pub fn csrf_matches(session: &str, presented: &str) -> bool {
    let expected = csrf_token(session);
    expected.len() == presented.len() && bool::from(expected.as_bytes().ct_eq(presented.as_bytes()))
}

/// A new one-time setup token (first administrator, invitations).
pub fn new_setup_token() -> Result<NewSecret, CryptoError> {
    let secret = random_hex()?;
    let hash = setup_hash(&secret);
    Ok(NewSecret { secret, hash })
}

/// The stored form of a setup token.
pub fn setup_hash(token: &str) -> [u8; 32] {
    labelled(SETUP_LABEL, token)
}

/// A random public identifier (8 bytes, hex) for operators and similar rows.
pub fn new_id() -> Result<String, CryptoError> {
    let mut raw = [0u8; 8];
    getrandom::fill(&mut raw)?;
    Ok(hex_lower(&raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_csrf_and_setup_tokens_are_separate() {
        let s = new_session().unwrap();
        assert!(well_formed(&s.secret));
        assert_eq!(session_hash(&s.secret), s.hash);
        let csrf = csrf_token(&s.secret);
        assert!(csrf_matches(&s.secret, &csrf));
        assert!(!csrf_matches(&s.secret, &csrf[1..]));
        assert!(!csrf_matches(&s.secret, ""));
        let other = new_session().unwrap();
        assert!(!csrf_matches(&other.secret, &csrf));
        // Labels keep the three uses apart: the CSRF token is not the stored hash, and a
        // session id is not a setup token.
        assert_ne!(csrf, hex_lower(&s.hash));
        assert_ne!(setup_hash(&s.secret), s.hash);
        assert!(!csrf.contains(s.secret.as_str()));
        let t = new_setup_token().unwrap();
        assert_eq!(setup_hash(&t.secret), t.hash);
        assert!(!well_formed("ABC"));
        assert!(!well_formed(&s.secret.to_uppercase()));
        assert_eq!(new_id().unwrap().len(), 16);
    }
}
