//! Tutela's domain: the register of processing activities and everything that can be computed
//! from it without I/O — validation, retention deadlines, the privacy notice and the record of
//! processing activities (art. 30).

pub mod consent;
pub mod notice;
pub mod operator;
pub mod register;
pub mod retention;
pub mod rights;
pub mod ropa;
pub mod scope;
pub mod validate;

pub use register::Register;
pub use validate::{Diagnostic, Diagnostics, Severity, check, load};

use sha2::{Digest, Sha256};

/// The register that ships with Tutela: the complete register of the reference customer
/// (`examples/policy.toml`). `tutela serve` uses it when no other register is configured.
pub const EXAMPLE_REGISTER: &str = include_str!("../../../examples/policy.toml");

impl Register {
    /// SHA-256 of the register's canonical JSON form: a change of meaning changes the hash,
    /// a change of comments or layout in the TOML file does not.
    pub fn content_hash(&self) -> String {
        let json = serde_json::to_vec(self).expect("the register always serialises");
        hex::encode(Sha256::digest(&json))
    }
}
