//! What an API token may do. Scopes are granted when a token is created and checked by the
//! server on every call.

use std::fmt;
use std::str::FromStr;

/// One permission of an API token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Read a subject's records in the vault (every read is audited).
    VaultRead,
    /// Write, update and erase records, and report anchor events.
    VaultWrite,
    /// Read aggregated analytics reports.
    AnalyticsRead,
    /// Send hits with overrides reserved to trusted senders (`cip`, `cdt`, `token_auth`).
    AnalyticsTrack,
    /// Read consent records and export proof of consent.
    ConsentRead,
    /// Read rights requests.
    RightsRead,
    /// File and handle rights requests.
    RightsWrite,
    /// Read and verify the audit log.
    AuditRead,
    /// Everything above.
    Admin,
}

impl Scope {
    pub const ALL: &'static [Scope] = &[
        Scope::VaultRead,
        Scope::VaultWrite,
        Scope::AnalyticsRead,
        Scope::AnalyticsTrack,
        Scope::ConsentRead,
        Scope::RightsRead,
        Scope::RightsWrite,
        Scope::AuditRead,
        Scope::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::VaultRead => "vault:read",
            Scope::VaultWrite => "vault:write",
            Scope::AnalyticsRead => "analytics:read",
            Scope::AnalyticsTrack => "analytics:track",
            Scope::ConsentRead => "consent:read",
            Scope::RightsRead => "rights:read",
            Scope::RightsWrite => "rights:write",
            Scope::AuditRead => "audit:read",
            Scope::Admin => "admin",
        }
    }

    /// Whether holding `self` grants `wanted`.
    pub fn grants(self, wanted: Scope) -> bool {
        self == wanted || self == Scope::Admin
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .iter()
            .copied()
            .find(|sc| sc.as_str() == s)
            .ok_or_else(|| {
                let all: Vec<&str> = Scope::ALL.iter().map(|s| s.as_str()).collect();
                format!("unknown scope {s:?}; scopes are: {}", all.join(", "))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_display_and_grants() {
        for s in Scope::ALL {
            assert_eq!(s.as_str().parse::<Scope>().unwrap(), *s);
        }
        assert!(
            "vault:delete"
                .parse::<Scope>()
                .unwrap_err()
                .contains("vault:read")
        );
        assert!(Scope::Admin.grants(Scope::VaultWrite));
        assert!(!Scope::VaultRead.grants(Scope::VaultWrite));
    }
}
