//! Keyed blind indexes: lookups by identifier without storing the identifier.
//!
//! `index = HMAC-SHA256(blind-index sub-key, kind || 0x00 || normalise(kind, raw))`.
//! The kind is part of the input, so the same string indexed as two kinds gives two unrelated
//! values.

use std::fmt;
use std::str::FromStr;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::CryptoError;
use crate::keyring::{KeyId, SubKey, SubKeyPurpose};

/// Longest raw identifier accepted, in bytes (before normalisation).
pub const MAX_IDENTIFIER_LEN: usize = 1024;

/// Kinds of identifier that can be indexed. Each has its own normalisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IdentifierKind {
    /// E-mail address: trimmed, Unicode NFC, lower-cased as a whole. Dots and `+tags` are kept.
    Email,
    /// Phone number: digits with an optional leading `+`; `00` prefix becomes `+`; with a
    /// default country calling code, a national number with a trunk `0` becomes international.
    Phone,
    /// Account id: trimmed, case kept.
    AccountId,
    /// Login name: trimmed, Unicode NFC, lower-cased.
    Login,
    /// Analytics visitor id: hexadecimal, trimmed and lower-cased.
    VisitorId,
    /// Reference of a job candidate in the recruitment tool: trimmed, Unicode NFC, upper-cased.
    CandidateRef,
    /// Consent id of the consent banner (a UUID kept in the browser): trimmed and lower-cased,
    /// hexadecimal digits and dashes only.
    ConsentId,
    /// Anything else: trimmed.
    Generic,
}

impl IdentifierKind {
    /// Every kind.
    pub const ALL: [IdentifierKind; 8] = [
        IdentifierKind::Email,
        IdentifierKind::Phone,
        IdentifierKind::AccountId,
        IdentifierKind::Login,
        IdentifierKind::VisitorId,
        IdentifierKind::CandidateRef,
        IdentifierKind::ConsentId,
        IdentifierKind::Generic,
    ];

    /// Stable name, also the prefix of the HMAC input (never change it: indexes depend on it).
    pub fn as_str(self) -> &'static str {
        match self {
            IdentifierKind::Email => "email",
            IdentifierKind::Phone => "phone",
            IdentifierKind::AccountId => "account_id",
            IdentifierKind::Login => "login",
            IdentifierKind::VisitorId => "visitor_id",
            IdentifierKind::CandidateRef => "candidate_ref",
            IdentifierKind::ConsentId => "consent_id",
            IdentifierKind::Generic => "generic",
        }
    }
}

impl fmt::Display for IdentifierKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for IdentifierKind {
    type Err = IdentifierError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        IdentifierKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| IdentifierError::UnknownKind(s.chars().take(64).collect()))
    }
}

/// Errors from identifier parsing and normalisation. Messages never include the identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentifierError {
    /// Not one of the [`IdentifierKind`] names.
    #[error(
        "unknown identifier kind {0:?} (expected email, phone, account_id, login, visitor_id, candidate_ref, consent_id or generic)"
    )]
    UnknownKind(String),
    /// Nothing left after trimming.
    #[error("empty {0} identifier")]
    Empty(IdentifierKind),
    /// Longer than [`MAX_IDENTIFIER_LEN`].
    #[error("{0} identifier longer than {MAX_IDENTIFIER_LEN} bytes")]
    TooLong(IdentifierKind),
    /// Not an e-mail address.
    #[error("invalid e-mail address: {0}")]
    InvalidEmail(&'static str),
    /// Not a phone number.
    #[error("invalid phone number: {0}")]
    InvalidPhone(&'static str),
    /// Not a hexadecimal visitor id.
    #[error("invalid visitor id: expected hexadecimal digits")]
    InvalidVisitorId,
    /// Not a consent id (hexadecimal digits and dashes).
    #[error("invalid consent id: expected hexadecimal digits and dashes")]
    InvalidConsentId,
    /// Not a country calling code (1 to 3 digits, not starting with 0).
    #[error("invalid country calling code: expected 1 to 3 digits, optionally after '+', e.g. +33")]
    InvalidCountryCode,
}

/// An international country calling code (ITU E.164), such as 33 for France.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CountryCallingCode(u16);

impl CountryCallingCode {
    /// 1 to 999.
    pub fn new(code: u16) -> Result<Self, IdentifierError> {
        if (1..=999).contains(&code) {
            Ok(CountryCallingCode(code))
        } else {
            Err(IdentifierError::InvalidCountryCode)
        }
    }

    /// The numeric code.
    pub fn get(self) -> u16 {
        self.0
    }
}

impl FromStr for CountryCallingCode {
    type Err = IdentifierError;

    /// Accepts `33` or `+33`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let digits = s.strip_prefix('+').unwrap_or(s);
        if digits.is_empty()
            || digits.len() > 3
            || !digits.bytes().all(|b| b.is_ascii_digit())
            || digits.starts_with('0')
        {
            return Err(IdentifierError::InvalidCountryCode);
        }
        digits
            .parse()
            .map_err(|_| IdentifierError::InvalidCountryCode)
            .and_then(CountryCallingCode::new)
    }
}

impl fmt::Display for CountryCallingCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "+{}", self.0)
    }
}

/// The canonical form of an identifier of `kind` (see [`IdentifierKind`] for the rules).
/// `default_country` only affects phone numbers.
pub fn normalise(
    kind: IdentifierKind,
    raw: &str,
    default_country: Option<CountryCallingCode>,
) -> Result<String, IdentifierError> {
    if raw.len() > MAX_IDENTIFIER_LEN {
        return Err(IdentifierError::TooLong(kind));
    }
    let s = raw.trim();
    if s.is_empty() {
        return Err(IdentifierError::Empty(kind));
    }
    match kind {
        IdentifierKind::Email => normalise_email(s),
        IdentifierKind::Phone => normalise_phone(s, default_country),
        IdentifierKind::AccountId | IdentifierKind::Generic => Ok(s.to_owned()),
        IdentifierKind::Login => Ok(nfc(s).to_lowercase()),
        IdentifierKind::CandidateRef => Ok(nfc(s).to_uppercase()),
        IdentifierKind::VisitorId => {
            if s.bytes().all(|b| b.is_ascii_hexdigit()) {
                Ok(s.to_ascii_lowercase())
            } else {
                Err(IdentifierError::InvalidVisitorId)
            }
        }
        IdentifierKind::ConsentId => {
            if s.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
                Ok(s.to_ascii_lowercase())
            } else {
                Err(IdentifierError::InvalidConsentId)
            }
        }
    }
}

fn normalise_email(s: &str) -> Result<String, IdentifierError> {
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(IdentifierError::InvalidEmail(
            "contains spaces or control characters",
        ));
    }
    let Some((local, domain)) = s.rsplit_once('@') else {
        return Err(IdentifierError::InvalidEmail("no '@'"));
    };
    if local.is_empty() || domain.is_empty() {
        return Err(IdentifierError::InvalidEmail("empty local part or domain"));
    }
    Ok(nfc(s).to_lowercase())
}

/// Unicode canonical composition (NFC), so that the same text typed with precomposed or
/// combining characters ("É" as U+00C9 or as E + U+0301) gives the same blind index. Text
/// already in NFC (nearly all input) is returned as is.
fn nfc(s: &str) -> std::borrow::Cow<'_, str> {
    icu_normalizer::ComposingNormalizerBorrowed::new_nfc().normalize(s)
}

fn normalise_phone(
    s: &str,
    default_country: Option<CountryCallingCode>,
) -> Result<String, IdentifierError> {
    let international_written = s.starts_with('+') || s.starts_with("00");
    // "+33 (0)6 12 34 56 78": the "(0)" is the national trunk prefix, not part of the number.
    let cleaned;
    let s = if international_written && s.contains("(0)") {
        cleaned = s.replace("(0)", "");
        cleaned.as_str()
    } else {
        s
    };
    let (mut plus, rest) = match s.strip_prefix('+') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let mut digits = String::with_capacity(rest.len());
    for c in rest.chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '\t' | '\u{a0}' | '-' | '.' | '(' | ')' | '/' => {}
            '+' => {
                return Err(IdentifierError::InvalidPhone(
                    "'+' is only allowed at the start",
                ));
            }
            _ => return Err(IdentifierError::InvalidPhone("unexpected character")),
        }
    }
    if !plus && digits.starts_with("00") {
        plus = true;
        digits.drain(..2);
    }
    if !plus
        && let Some(cc) = default_country
        && let Some(national) = digits.strip_prefix('0')
    {
        digits = format!("{}{national}", cc.get());
        plus = true;
    }
    if plus && digits.starts_with('0') {
        return Err(IdentifierError::InvalidPhone(
            "country code cannot start with 0",
        ));
    }
    if !(3..=15).contains(&digits.len()) {
        return Err(IdentifierError::InvalidPhone("expected 3 to 15 digits"));
    }
    Ok(if plus { format!("+{digits}") } else { digits })
}

/// Computes blind indexes with the [`SubKeyPurpose::BlindIndex`] sub-key.
///
/// Indexes depend on the master key they were derived from ([`BlindIndexer::key_id`]): after a
/// master-key rotation, stored indexes must be recomputed (or the indexer kept on the old key).
#[derive(Clone)]
pub struct BlindIndexer {
    mac: Hmac<Sha256>,
    key_id: KeyId,
    default_country: Option<CountryCallingCode>,
}

impl BlindIndexer {
    /// An indexer keyed by `key`, which must be a [`SubKeyPurpose::BlindIndex`] sub-key.
    pub fn new(key: &SubKey) -> Result<BlindIndexer, CryptoError> {
        key.require(SubKeyPurpose::BlindIndex)?;
        let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key.bytes()[..])
            .map_err(|_| CryptoError::Malformed("blind index key"))?;
        Ok(BlindIndexer {
            mac,
            key_id: key.master_id(),
            default_country: None,
        })
    }

    /// Use `code` to turn national phone numbers with a trunk `0` ("06 12 34 56 78") into
    /// international ones ("+33612345678") before indexing.
    #[must_use]
    pub fn with_default_country(mut self, code: Option<CountryCallingCode>) -> Self {
        self.default_country = code;
        self
    }

    /// Id of the master key the index key was derived from.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// `normalise` with this indexer's default country code.
    pub fn normalise(&self, kind: IdentifierKind, raw: &str) -> Result<String, IdentifierError> {
        normalise(kind, raw, self.default_country)
    }

    /// The blind index of `raw` as an identifier of `kind`.
    pub fn index(&self, kind: IdentifierKind, raw: &str) -> Result<[u8; 32], IdentifierError> {
        let normalised = Zeroizing::new(self.normalise(kind, raw)?);
        let mut mac = self.mac.clone();
        mac.update(kind.as_str().as_bytes());
        mac.update(&[0]);
        mac.update(normalised.as_bytes());
        Ok(mac.finalize().into_bytes().into())
    }
}

impl fmt::Debug for BlindIndexer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlindIndexer")
            .field("key_id", &self.key_id)
            .field("default_country", &self.default_country)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyring::MasterKey;

    fn indexer() -> BlindIndexer {
        let mk = MasterKey::from_bytes(&[7u8; 32]);
        BlindIndexer::new(&mk.derive(SubKeyPurpose::BlindIndex)).unwrap()
    }

    fn n(kind: IdentifierKind, raw: &str) -> Result<String, IdentifierError> {
        normalise(kind, raw, None)
    }

    #[test]
    fn kind_names_round_trip() {
        for k in IdentifierKind::ALL {
            assert_eq!(k.as_str().parse::<IdentifierKind>().unwrap(), k);
        }
        assert!(matches!(
            "Email".parse::<IdentifierKind>(),
            Err(IdentifierError::UnknownKind(_))
        ));
    }

    #[test]
    fn email_normalisation() {
        use IdentifierKind::Email;
        assert_eq!(
            n(Email, "  Alice.Smith+News@Example.COM \n").unwrap(),
            "alice.smith+news@example.com"
        );
        // Dots and plus tags are significant.
        assert_ne!(
            n(Email, "alice.smith@example.com"),
            n(Email, "alicesmith@example.com")
        );
        assert_ne!(
            n(Email, "alice+x@example.com"),
            n(Email, "alice@example.com")
        );
        assert_eq!(n(Email, "ÉLODIE@exemple.fr").unwrap(), "élodie@exemple.fr");
        // Precomposed or combining accents: one person, one form.
        assert_eq!(
            n(Email, "E\u{301}lodie@exemple.fr").unwrap(),
            "\u{e9}lodie@exemple.fr"
        );
        assert_eq!(
            n(IdentifierKind::Login, "Zoe\u{308}").unwrap(),
            n(IdentifierKind::Login, "zo\u{eb}").unwrap()
        );
        assert_eq!(
            n(IdentifierKind::CandidateRef, "r-e\u{301}1").unwrap(),
            "R-\u{c9}1"
        );
        for bad in [
            "",
            "   ",
            "alice",
            "@example.com",
            "alice@",
            "al ice@example.com",
            "a\u{0}b@c",
        ] {
            assert!(n(Email, bad).is_err(), "{bad:?}");
        }
        assert!(matches!(
            n(Email, &"a".repeat(2000)),
            Err(IdentifierError::TooLong(Email))
        ));
    }

    #[test]
    fn phone_normalisation() {
        use IdentifierKind::Phone;
        let fr = Some(CountryCallingCode::new(33).unwrap());
        let p = |raw: &str, cc| normalise(Phone, raw, cc);
        for raw in [
            "+33 6 12 34 56 78",
            "+33612345678",
            "0033 6 12 34 56 78",
            "+33 (0)6 12-34-56-78",
            "+33.6.12.34.56.78",
        ] {
            assert_eq!(p(raw, None).unwrap(), "+33612345678", "{raw}");
            assert_eq!(p(raw, fr).unwrap(), "+33612345678", "{raw}");
        }
        // National numbers become international only with a default country code.
        assert_eq!(p("06 12 34 56 78", fr).unwrap(), "+33612345678");
        assert_eq!(p("06 12 34 56 78", None).unwrap(), "0612345678");
        assert_eq!(p("(06) 12/34/56/78", None).unwrap(), "0612345678");
        let us = Some("+1".parse::<CountryCallingCode>().unwrap());
        assert_eq!(p("0 555 123 4567", us).unwrap(), "+15551234567");
        // No trunk zero: left alone even with a default.
        assert_eq!(p("3949", fr).unwrap(), "3949");
        for bad in [
            "",
            "+",
            "abc",
            "06 12 34 56 7x",
            "+33+6",
            "12",
            "+0612345678",
            "1234567890123456",
            "06 12 34 56 78 ext 5",
        ] {
            assert!(p(bad, fr).is_err(), "{bad:?}");
        }
        for bad in ["0", "+0", "1000", "+", "", "3a", "033"] {
            assert!(bad.parse::<CountryCallingCode>().is_err(), "{bad:?}");
        }
        assert!(CountryCallingCode::new(0).is_err());
        assert_eq!(CountryCallingCode::new(33).unwrap().to_string(), "+33");
    }

    #[test]
    fn other_kinds() {
        assert_eq!(n(IdentifierKind::AccountId, "  AbC-42 ").unwrap(), "AbC-42");
        assert_eq!(n(IdentifierKind::Login, "  JDoe ").unwrap(), "jdoe");
        assert_eq!(
            n(IdentifierKind::VisitorId, " 0123ABCDEF456789 ").unwrap(),
            "0123abcdef456789"
        );
        assert!(n(IdentifierKind::VisitorId, "xyz").is_err());
        assert_eq!(
            n(
                IdentifierKind::ConsentId,
                " 6F1C2A3B-0000-4000-8000-00000000ABCD "
            )
            .unwrap(),
            "6f1c2a3b-0000-4000-8000-00000000abcd"
        );
        assert!(n(IdentifierKind::ConsentId, "not a uuid").is_err());
        assert_eq!(
            n(IdentifierKind::CandidateRef, " cand-2026-017 ").unwrap(),
            "CAND-2026-017"
        );
        assert_eq!(
            n(IdentifierKind::Generic, "\t Some Thing \n").unwrap(),
            "Some Thing"
        );
        for k in IdentifierKind::ALL {
            assert!(
                matches!(n(k, " \n\t"), Err(IdentifierError::Empty(_))),
                "{k}"
            );
        }
    }

    #[test]
    fn index_equivalence_and_separation() {
        use IdentifierKind::*;
        let ix = indexer();
        assert_eq!(
            ix.index(Email, "Alice@Example.com").unwrap(),
            ix.index(Email, " alice@example.com\n").unwrap()
        );
        assert_ne!(
            ix.index(Email, "alice@example.com").unwrap(),
            ix.index(Email, "alice2@example.com").unwrap()
        );
        // Same string, different kind: different index.
        let kinds = [AccountId, Login, Generic, Email];
        let idx: Vec<_> = kinds
            .iter()
            .map(|&k| ix.index(k, "bob@example.com").unwrap())
            .collect();
        for i in 0..idx.len() {
            for j in i + 1..idx.len() {
                assert_ne!(idx[i], idx[j], "{:?} vs {:?}", kinds[i], kinds[j]);
            }
        }
        assert_ne!(
            ix.index(Login, "abc123").unwrap(),
            ix.index(VisitorId, "abc123").unwrap()
        );
        // Login is case-insensitive, account id is not.
        assert_eq!(
            ix.index(Login, "Bob").unwrap(),
            ix.index(Login, "bob").unwrap()
        );
        assert_ne!(
            ix.index(AccountId, "Bob").unwrap(),
            ix.index(AccountId, "bob").unwrap()
        );
        // Phones with the default country code.
        let ixfr = ix
            .clone()
            .with_default_country(Some(CountryCallingCode::new(33).unwrap()));
        assert_eq!(
            ixfr.index(Phone, "06 12 34 56 78").unwrap(),
            ixfr.index(Phone, "+33 6 12 34 56 78").unwrap()
        );
        assert_ne!(
            ix.index(Phone, "06 12 34 56 78").unwrap(),
            ix.index(Phone, "+33 6 12 34 56 78").unwrap()
        );
        // Different key, different index; the value matches the documented construction.
        let other =
            BlindIndexer::new(&MasterKey::from_bytes(&[8u8; 32]).derive(SubKeyPurpose::BlindIndex))
                .unwrap();
        assert_ne!(
            ix.index(Email, "a@b.c").unwrap(),
            other.index(Email, "a@b.c").unwrap()
        );
        let mk = MasterKey::from_bytes(&[7u8; 32]);
        let sk = mk.derive(SubKeyPurpose::BlindIndex);
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&sk.bytes()[..]).unwrap();
        mac.update(b"email\0a@b.c");
        let expected: [u8; 32] = mac.finalize().into_bytes().into();
        assert_eq!(ix.index(Email, "A@B.C").unwrap(), expected);
        assert_eq!(ix.key_id(), mk.id());
        // Wrong sub-key purpose is refused.
        assert!(BlindIndexer::new(&mk.derive(SubKeyPurpose::KeyWrap)).is_err());
        assert!(!format!("{ix:?}").contains("mac"));
    }
}
