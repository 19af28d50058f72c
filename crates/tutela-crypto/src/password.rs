//! Operator passwords: Argon2id (RFC 9106) in the PHC string format.
//!
//! Production parameters are RFC 9106's *second recommended option* (§4): Argon2id with
//! m = 64 MiB, t = 3, p = 4. The first option (m = 2 GiB, t = 1) is meant for machines that can
//! spend 2 GiB per login; on the small servers Tutela targets, a handful of concurrent logins would
//! exhaust memory, which turns the password hash into a denial-of-service lever. The second option
//! is the RFC's choice "if much less memory is available", and still costs an attacker 64 MiB per
//! guess. The callers bound how many hashes run at once.
//!
//! Hashing is CPU-bound (hundreds of milliseconds): async callers must run it on a blocking
//! thread (`tokio::task::spawn_blocking`), never on the runtime's workers.

use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier, Version};

use crate::CryptoError;

/// Argon2id cost parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PasswordParams {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Passes.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl PasswordParams {
    /// RFC 9106 §4, second recommended option: what `tutela serve` always uses.
    pub const RFC9106_SECOND: PasswordParams = PasswordParams {
        m_kib: 64 * 1024,
        t: 3,
        p: 4,
    };

    /// Cheap parameters so that test suites on small machines stay fast. **Never** used by the
    /// server or the CLI: only tests construct a state with them, explicitly.
    pub const INSECURE_FOR_TESTS_ONLY: PasswordParams = PasswordParams {
        m_kib: 256,
        t: 1,
        p: 1,
    };

    fn argon2(self) -> Result<Argon2<'static>, CryptoError> {
        let params = Params::new(self.m_kib, self.t, self.p, None)
            .map_err(|_| CryptoError::Malformed("Argon2 parameters"))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }
}

/// Hashes a password with a fresh random salt. Returns the PHC string
/// (`$argon2id$v=19$m=65536,t=3,p=4$…`).
pub fn hash_password(password: &str, params: PasswordParams) -> Result<String, CryptoError> {
    let hash = params
        .argon2()?
        .hash_password(password.as_bytes())
        .map_err(|_| CryptoError::Malformed("password hash"))?;
    Ok(hash.to_string())
}

/// Whether `password` matches the stored PHC string. A malformed or non-Argon2id string never
/// matches. The comparison of the outputs is constant-time (done by the `password-hash` crate).
pub fn verify_password(password: &str, stored: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else {
        return false;
    };
    if parsed.algorithm.as_str() != "argon2id" {
        return false;
    }
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

/// Whether a stored hash was made with other parameters than `params` (then it is re-hashed at
/// the next successful login).
pub fn needs_rehash(stored: &str, params: PasswordParams) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else {
        return true;
    };
    match Params::try_from(&parsed) {
        Ok(p) => {
            parsed.algorithm.as_str() != "argon2id"
                || p.m_cost() != params.m_kib
                || p.t_cost() != params.t
                || p.p_cost() != params.p
        }
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_verify_and_rehash() {
        let p = PasswordParams::INSECURE_FOR_TESTS_ONLY;
        let h = hash_password("correct horse battery staple", p).unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=256,t=1,p=1$"), "{h}");
        assert!(verify_password("correct horse battery staple", &h));
        assert!(!verify_password("correct horse battery stapler", &h));
        assert!(!verify_password(
            "correct horse battery staple",
            "not a hash"
        ));
        assert!(!verify_password("x", ""));
        // Salts differ.
        assert_ne!(h, hash_password("correct horse battery staple", p).unwrap());
        assert!(!needs_rehash(&h, p));
        assert!(needs_rehash(&h, PasswordParams::RFC9106_SECOND));
        assert!(needs_rehash("garbage", p));
        // An Argon2i hash of the right password is still refused: only Argon2id is accepted.
        let argon2i = Argon2::new(
            Algorithm::Argon2i,
            Version::V0x13,
            Params::new(256, 1, 1, None).unwrap(),
        )
        .hash_password(b"pw-123456789")
        .unwrap()
        .to_string();
        assert!(!verify_password("pw-123456789", &argon2i));
    }

    #[test]
    fn production_parameters_are_rfc9106_second_option() {
        let h = hash_password("a production-cost hash", PasswordParams::RFC9106_SECOND).unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=65536,t=3,p=4$"), "{h}");
        assert!(verify_password("a production-cost hash", &h));
    }
}
