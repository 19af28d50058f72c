//! Second factor for operators: TOTP (RFC 6238: HMAC-SHA1, 6 digits, 30-second steps, one step of
//! clock skew either way), its provisioning QR code as SVG, and one-time recovery codes.
//!
//! TOTP checks return the matched time step; the caller stores the last accepted step and refuses
//! any step that is not newer, so each code is accepted once (RFC 6238 §5.2).
//!
//! Recovery codes are 80 random bits written as 16 Crockford base-32 characters
//! (`XXXX-XXXX-XXXX-XXXX`); only their SHA-256 is stored. 80 bits make a stolen hash table
//! useless, so a fast hash is enough.

use sha2::{Digest, Sha256};
use totp_rs::{Algorithm, Builder, Totp};
use zeroize::Zeroizing;

use crate::CryptoError;

/// Bytes of a TOTP secret (160 bits, as RFC 4226 §4 recommends).
pub const TOTP_SECRET_LEN: usize = 20;
/// Number of recovery codes issued at once.
pub const RECOVERY_CODES: usize = 10;
const RECOVERY_CHARS: usize = 16;
const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const RECOVERY_LABEL: &[u8] = b"tutela/recovery-code/v1\0";

/// A TOTP shared secret. Zeroized on drop, never printed by `Debug`.
pub struct TotpSecret(Zeroizing<Vec<u8>>);

impl std::fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpSecret(…)")
    }
}

impl TotpSecret {
    /// A new random secret.
    pub fn generate() -> Result<TotpSecret, CryptoError> {
        let mut bytes = Zeroizing::new(vec![0u8; TOTP_SECRET_LEN]);
        getrandom::fill(&mut bytes[..])?;
        Ok(TotpSecret(bytes))
    }

    /// A stored secret.
    pub fn from_bytes(bytes: &[u8]) -> Result<TotpSecret, CryptoError> {
        if bytes.len() != TOTP_SECRET_LEN {
            return Err(CryptoError::Malformed("TOTP secret"));
        }
        Ok(TotpSecret(Zeroizing::new(bytes.to_vec())))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// A secret typed as base 32 (spaces ignored, any case), as shown for manual entry.
    pub fn from_base32(text: &str) -> Result<TotpSecret, CryptoError> {
        const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        let mut out = Zeroizing::new(Vec::with_capacity(TOTP_SECRET_LEN));
        let (mut buffer, mut bits) = (0u32, 0u32);
        for c in text
            .bytes()
            .filter(|b| !b.is_ascii_whitespace() && *b != b'=')
        {
            let v = ALPHABET
                .iter()
                .position(|a| *a == c.to_ascii_uppercase())
                .ok_or(CryptoError::Malformed("base-32 TOTP secret"))?;
            buffer = (buffer << 5) | v as u32;
            bits += 5;
            if bits >= 8 {
                bits -= 8;
                out.push(((buffer >> bits) & 0xff) as u8);
            }
        }
        Self::from_bytes(&out)
    }

    fn totp(&self, issuer: &str, account: &str) -> Result<Totp, CryptoError> {
        // Colons separate issuer and account in the otpauth label: keep them out.
        let clean = |s: &str| s.replace(':', " ");
        Builder::new()
            .with_algorithm(Algorithm::SHA1)
            .with_digits(6)
            .with_skew(1)
            .with_step_duration(30)
            .with_secret(self.0.to_vec())
            .with_issuer(Some(clean(issuer)))
            .with_account_name(clean(account))
            .build()
            .map_err(|_| CryptoError::Malformed("TOTP parameters"))
    }

    /// The secret in base 32, for typing into an authenticator by hand.
    pub fn to_base32(&self) -> Zeroizing<String> {
        Zeroizing::new(base32(&self.0))
    }

    /// The `otpauth://totp/…` URI that authenticator apps read from the QR code.
    pub fn provisioning_uri(
        &self,
        issuer: &str,
        account: &str,
    ) -> Result<Zeroizing<String>, CryptoError> {
        let uri = self
            .totp(issuer, account)?
            .to_url()
            .map_err(|_| CryptoError::Malformed("TOTP URI"))?;
        Ok(Zeroizing::new(uri))
    }

    /// The 6-digit code of the step containing `unix_time`.
    pub fn code_at(&self, unix_time: u64) -> Zeroizing<String> {
        let totp = self.totp("t", "t").expect("fixed valid parameters");
        Zeroizing::new(totp.generate(unix_time).to_string())
    }

    /// Checks a code typed at `unix_time` (spaces ignored); returns the matched time step.
    /// The comparison of codes is constant-time (done by `totp-rs`).
    pub fn verify(&self, code: &str, unix_time: u64) -> Option<u64> {
        let code: String = code
            .chars()
            .filter(|c| !c.is_whitespace())
            .take(16)
            .collect();
        if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let totp = self.totp("t", "t").ok()?;
        totp.check(&code, unix_time)
    }
}

/// RFC 4648 base 32 without padding.
fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for b in bytes {
        buffer = (buffer << 8) | u32::from(*b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// An SVG QR code of `text` (medium error correction, 4-module quiet zone), drawn as one path of
/// unit squares: no script, no style element, so it can be embedded under a strict CSP.
pub fn qr_svg(text: &str, title: &str) -> Result<String, CryptoError> {
    use qrcodegen::{QrCode, QrCodeEcc};
    let qr = QrCode::encode_text(text, QrCodeEcc::Medium)
        .map_err(|_| CryptoError::Malformed("QR code content (too long)"))?;
    let border = 4;
    let size = qr.size() + 2 * border;
    let mut path = String::new();
    for y in 0..qr.size() {
        for x in 0..qr.size() {
            if qr.get_module(x, y) {
                path.push_str(&format!("M{},{}h1v1h-1z", x + border, y + border));
            }
        }
    }
    let title = title
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;");
    Ok(format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {size} {size}\" \
         role=\"img\" aria-label=\"{title}\" class=\"qr\" shape-rendering=\"crispEdges\">\
         <title>{title}</title>\
         <rect width=\"{size}\" height=\"{size}\" fill=\"#ffffff\"/>\
         <path d=\"{path}\" fill=\"#000000\"/></svg>"
    ))
}

/// A fresh recovery code: show `code` once, store `hash`.
pub struct RecoveryCode {
    pub code: Zeroizing<String>,
    pub hash: [u8; 32],
}

/// Ten new recovery codes.
pub fn new_recovery_codes() -> Result<Vec<RecoveryCode>, CryptoError> {
    (0..RECOVERY_CODES)
        .map(|_| {
            let mut raw = Zeroizing::new([0u8; RECOVERY_CHARS]);
            getrandom::fill(&mut raw[..])?;
            let mut plain = Zeroizing::new(String::with_capacity(RECOVERY_CHARS));
            for b in raw.iter() {
                plain.push(char::from(CROCKFORD[usize::from(b & 31)]));
            }
            let hash = hash_normalised(&plain);
            let mut code = Zeroizing::new(String::with_capacity(RECOVERY_CHARS + 3));
            for (i, c) in plain.chars().enumerate() {
                if i > 0 && i % 4 == 0 {
                    code.push('-');
                }
                code.push(c);
            }
            Ok(RecoveryCode { code, hash })
        })
        .collect()
}

/// The stored hash of a typed recovery code (hyphens and spaces ignored, any case, Crockford's
/// look-alikes `O`→`0`, `I`/`L`→`1`). None when it cannot be a recovery code.
pub fn recovery_code_hash(typed: &str) -> Option<[u8; 32]> {
    if typed.len() > 64 {
        return None;
    }
    let mut plain = Zeroizing::new(String::with_capacity(RECOVERY_CHARS));
    for c in typed.chars() {
        let c = match c.to_ascii_uppercase() {
            '-' | ' ' => continue,
            'O' => '0',
            'I' | 'L' => '1',
            c => c,
        };
        if !c.is_ascii() || !CROCKFORD.contains(&(c as u8)) {
            return None;
        }
        plain.push(c);
    }
    (plain.len() == RECOVERY_CHARS).then(|| hash_normalised(&plain))
}

fn hash_normalised(plain: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(RECOVERY_LABEL);
    h.update(plain.as_bytes());
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6238_sha1_test_vectors() {
        // RFC 6238 Appendix B, SHA-1 seed "12345678901234567890", last 6 digits of each value.
        let secret = TotpSecret::from_bytes(b"12345678901234567890").unwrap();
        for (time, code) in [
            (59u64, "287082"),
            (1_111_111_109, "081804"),
            (1_111_111_111, "050471"),
            (1_234_567_890, "005924"),
            (2_000_000_000, "279037"),
            (20_000_000_000, "353130"),
        ] {
            assert_eq!(secret.code_at(time).as_str(), code, "t={time}");
            assert_eq!(secret.verify(code, time), Some(time / 30));
        }
    }

    #[test]
    fn verify_accepts_one_step_of_skew_and_nothing_else() {
        let s = TotpSecret::generate().unwrap();
        let t = 1_800_000_000u64;
        let code = s.code_at(t);
        assert_eq!(s.verify(&code, t + 30), Some(t / 30));
        assert_eq!(s.verify(&code, t - 30), Some(t / 30));
        assert_eq!(s.verify(&code, t + 90), None);
        let spaced = format!("{} {}", &code[..3], &code[3..]);
        assert_eq!(s.verify(&spaced, t), Some(t / 30));
        for bad in ["", "12345", "1234567", "abcdef", "１２３４５６"] {
            assert_eq!(s.verify(bad, t), None, "{bad}");
        }
        assert!(TotpSecret::from_bytes(&[1, 2, 3]).is_err());
        assert_eq!(format!("{s:?}"), "TotpSecret(…)");
    }

    #[test]
    fn provisioning_uri_and_qr() {
        let s = TotpSecret::from_bytes(b"12345678901234567890").unwrap();
        assert_eq!(s.to_base32().as_str(), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        let back = TotpSecret::from_base32("gezd gnbv gy3t qojq gezd gnbv gy3t qojq").unwrap();
        assert_eq!(back.as_bytes(), s.as_bytes());
        assert!(TotpSecret::from_base32("GEZD!").is_err());
        assert!(TotpSecret::from_base32("GEZD").is_err());
        let uri = s.provisioning_uri("Tutela: Nimbus", "alice").unwrap();
        assert!(uri.starts_with("otpauth://totp/"), "{}", uri.as_str());
        assert!(uri.contains("secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"));
        assert!(uri.contains("alice"));
        let svg = qr_svg(&uri, "QR <code>").unwrap();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("QR &lt;code&gt;"));
        assert!(!svg.contains("style") && !svg.contains("script"));
        assert!(qr_svg(&"x".repeat(5000), "t").is_err());
    }

    #[test]
    fn recovery_codes() {
        let codes = new_recovery_codes().unwrap();
        assert_eq!(codes.len(), 10);
        for c in &codes {
            assert_eq!(c.code.len(), 19);
            assert_eq!(recovery_code_hash(&c.code), Some(c.hash));
            let sloppy = c.code.to_lowercase().replace('-', " ");
            assert_eq!(recovery_code_hash(&sloppy), Some(c.hash));
        }
        let mut hashes: Vec<_> = codes.iter().map(|c| c.hash).collect();
        hashes.sort();
        hashes.dedup();
        assert_eq!(hashes.len(), 10);
        assert_eq!(
            recovery_code_hash("0000-0000-0000-000O"),
            recovery_code_hash("0000000000000000")
        );
        for bad in [
            "",
            "0000-0000-0000",
            "0000-0000-0000-000U",
            "ÀÀÀÀ-0000-0000-0000",
        ] {
            assert_eq!(recovery_code_hash(bad), None, "{bad}");
        }
        assert_eq!(recovery_code_hash(&"0".repeat(100)), None);
    }
}
