//! Operators of the console: their roles, what each role may do, and the password rules.
//!
//! The roles follow the principle of legitimate need (GDPR art. 5(1)(f), 32): an administrator
//! runs the installation but reads no personal data; the DPO sees everything and handles rights
//! requests; support staff see a subject's data for support purposes only; analysts see
//! aggregated analytics only, never personal data. The server checks a [`Permission`] in every
//! console handler; pages only hide what the server would refuse anyway.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

/// What an operator is employed to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Operators, API tokens, keys. No personal data of data subjects.
    Admin,
    /// The data protection officer: all personal data, rights requests, the audit log.
    Dpo,
    /// Support staff: a subject's data for support purposes only.
    Support,
    /// Aggregated analytics only, never personal data.
    Analyst,
}

impl Role {
    pub const ALL: &'static [Role] = &[Role::Admin, Role::Dpo, Role::Support, Role::Analyst];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Dpo => "dpo",
            Role::Support => "support",
            Role::Analyst => "analyst",
        }
    }

    /// Whether an operator of this role must use two-factor authentication before reaching
    /// anything (the roles that can change who has access, or see all personal data).
    pub fn requires_second_factor(self) -> bool {
        matches!(self, Role::Admin | Role::Dpo)
    }

    /// Whether this role holds `permission`. The single table of who may do what.
    pub fn can(self, permission: Permission) -> bool {
        use Permission as P;
        match self {
            Role::Admin => matches!(
                permission,
                P::ViewOverview
                    | P::ViewRegister
                    | P::ManageOperators
                    | P::ManageTokens
                    | P::ManageKeys
                    | P::ViewSecurityEvents
                    | P::ViewAuditLog
                    | P::ViewConsentRates
            ),
            Role::Dpo => matches!(
                permission,
                P::ViewOverview
                    | P::ViewRegister
                    | P::ViewAnalytics
                    | P::ReadPersonalData
                    | P::ReadSupportData
                    | P::HandleRightsRequests
                    | P::ViewSecurityEvents
                    | P::ViewAuditLog
                    | P::ViewConsentRates
                    | P::ReadConsentRecords
            ),
            Role::Support => matches!(
                permission,
                P::ViewOverview | P::ViewRegister | P::ReadSupportData
            ),
            Role::Analyst => matches!(
                permission,
                P::ViewOverview | P::ViewRegister | P::ViewAnalytics | P::ViewConsentRates
            ),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .iter()
            .copied()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role {s:?}; roles are: admin, dpo, support, analyst"))
    }
}

/// Something a console page or action needs. Checked by the server in every handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Permission {
    /// The overview page (its panels are filtered by the other permissions).
    ViewOverview,
    /// The register as loaded, its validation warnings, the notice preview.
    ViewRegister,
    /// Create, disable operators, reset their second factor.
    ManageOperators,
    /// Create and revoke API tokens.
    ManageTokens,
    /// Master keys and their rotation.
    ManageKeys,
    /// Operator sign-ins, throttling and other security events of the console.
    ViewSecurityEvents,
    /// Browse and verify the tamper-evident audit log.
    ViewAuditLog,
    /// Aggregated analytics (no personal data).
    ViewAnalytics,
    /// Every personal datum of a subject, whatever its purpose.
    ReadPersonalData,
    /// A subject's data held for support purposes only.
    ReadSupportData,
    /// File and handle data-subject rights requests.
    HandleRightsRequests,
    /// Consent rates per cookie category over time (aggregated: no consent id, no record).
    ViewConsentRates,
    /// Consent receipts looked up by consent id, and the proof export of a period (records
    /// keyed by pseudonymous consent ids: the DPO's proof of consent, GDPR art. 7(1)).
    ReadConsentRecords,
}

/// Shortest password accepted, in characters (NIST SP 800-63B asks for at least 8; operators
/// guard personal data, so Tutela asks for more).
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Longest password accepted, in characters: long passphrases are welcome, unbounded input is not.
pub const MAX_PASSWORD_CHARS: usize = 4096;

/// Why a password is refused. No composition rules: length, and not guessable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PasswordProblem {
    TooShort {
        min: usize,
    },
    TooLong {
        max: usize,
    },
    /// On the list of common passwords.
    Common,
    /// A common password (or the login name, or the product's name) with digits or symbols
    /// added before or after.
    CommonWithDecoration,
    /// One short pattern repeated, or a run of consecutive characters.
    Pattern,
    /// Contains the login name.
    ContainsLogin,
}

impl PasswordProblem {
    /// A stable key (used to pick the message in the console's language).
    pub fn key(&self) -> &'static str {
        match self {
            PasswordProblem::TooShort { .. } => "too_short",
            PasswordProblem::TooLong { .. } => "too_long",
            PasswordProblem::Common => "common",
            PasswordProblem::CommonWithDecoration => "common_decorated",
            PasswordProblem::Pattern => "pattern",
            PasswordProblem::ContainsLogin => "contains_login",
        }
    }
}

impl fmt::Display for PasswordProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PasswordProblem::TooShort { min } => {
                write!(f, "the password must have at least {min} characters")
            }
            PasswordProblem::TooLong { max } => {
                write!(f, "the password must have at most {max} characters")
            }
            PasswordProblem::Common => {
                f.write_str("this password is on a list of common passwords")
            }
            PasswordProblem::CommonWithDecoration => f.write_str(
                "this password is a common word or password with digits or symbols added",
            ),
            PasswordProblem::Pattern => f.write_str(
                "this password is a repeated pattern or a run of consecutive characters",
            ),
            PasswordProblem::ContainsLogin => {
                f.write_str("the password must not contain the login name")
            }
        }
    }
}

const COMMON_PASSWORDS: &str = include_str!("../assets/common-passwords.txt");

fn common_passwords() -> &'static HashSet<&'static str> {
    static SET: OnceLock<HashSet<&'static str>> = OnceLock::new();
    SET.get_or_init(|| COMMON_PASSWORDS.lines().filter(|l| !l.is_empty()).collect())
}

/// Checks a new password against Tutela's rules (NIST SP 800-63B style: a length floor and
/// ceiling, no composition rules, and a refusal of guessable passwords). `login` is the
/// operator's login name (context-specific word).
pub fn check_password(password: &str, login: &str) -> Result<(), PasswordProblem> {
    // Count characters, but never walk more than the ceiling (bounded work on huge input).
    let chars = password.chars().take(MAX_PASSWORD_CHARS + 1).count();
    if chars > MAX_PASSWORD_CHARS {
        return Err(PasswordProblem::TooLong {
            max: MAX_PASSWORD_CHARS,
        });
    }
    if chars < MIN_PASSWORD_CHARS {
        return Err(PasswordProblem::TooShort {
            min: MIN_PASSWORD_CHARS,
        });
    }
    let lower = password.to_lowercase();
    let list = common_passwords();
    if list.contains(lower.as_str()) {
        return Err(PasswordProblem::Common);
    }
    let login = login.trim().to_lowercase();
    let core = lower.trim_matches(|c: char| !c.is_alphabetic());
    if core.chars().count() >= 4
        && (list.contains(core) || core == login || core == "tutela" || core == "password")
    {
        return Err(PasswordProblem::CommonWithDecoration);
    }
    if login.chars().count() >= 3 && lower.contains(&login) {
        return Err(PasswordProblem::ContainsLogin);
    }
    if is_pattern(&lower) {
        return Err(PasswordProblem::Pattern);
    }
    Ok(())
}

/// A short unit (up to 4 characters) repeated, or a run of consecutive characters
/// (`abcdefghijkl`, `987654321098`).
fn is_pattern(text: &str) -> bool {
    let chars: Vec<char> = text.chars().collect();
    for period in 1..=4.min(chars.len() / 2) {
        if chars
            .iter()
            .enumerate()
            .all(|(i, c)| *c == chars[i % period])
        {
            return true;
        }
    }
    let steps: Vec<i64> = chars
        .windows(2)
        .map(|w| i64::from(u32::from(w[1])) - i64::from(u32::from(w[0])))
        .collect();
    // Digits wrap around (…8901…): treat 9→0 as +1 and 0→9 as -1.
    let norm = |s: i64, w: &[char]| {
        if w[0].is_ascii_digit() && w[1].is_ascii_digit() && s.abs() == 9 {
            -s.signum()
        } else {
            s
        }
    };
    let steps: Vec<i64> = steps
        .iter()
        .zip(chars.windows(2))
        .map(|(s, w)| norm(*s, w))
        .collect();
    steps.iter().all(|s| *s == 1) || steps.iter().all(|s| *s == -1)
}

/// Rules for an operator's login name: 3 to 64 characters of `a-z 0-9 . _ -`, stored lower-case.
pub fn normalise_login(text: &str) -> Result<String, String> {
    let login = text.trim().to_lowercase();
    let len = login.chars().count();
    if !(3..=64).contains(&len) {
        return Err("a login name has 3 to 64 characters".to_string());
    }
    if !login
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
    {
        return Err("a login name uses only letters a-z, digits and . _ -".to_string());
    }
    Ok(login)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_and_permissions_follow_need() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), *r);
        }
        assert!("root".parse::<Role>().unwrap_err().contains("admin, dpo"));
        use Permission as P;
        // The administrator runs the installation but reads no personal data.
        assert!(Role::Admin.can(P::ManageOperators) && Role::Admin.can(P::ManageTokens));
        assert!(!Role::Admin.can(P::ReadPersonalData) && !Role::Admin.can(P::ReadSupportData));
        // The DPO sees everything personal and handles requests, but manages no operators.
        assert!(Role::Dpo.can(P::ReadPersonalData) && Role::Dpo.can(P::HandleRightsRequests));
        assert!(!Role::Dpo.can(P::ManageOperators));
        // Support: support data only.
        assert!(Role::Support.can(P::ReadSupportData));
        assert!(!Role::Support.can(P::ReadPersonalData));
        assert!(!Role::Support.can(P::ViewSecurityEvents));
        // Analyst: analytics, never personal data.
        assert!(Role::Analyst.can(P::ViewAnalytics));
        for p in [
            P::ReadPersonalData,
            P::ReadSupportData,
            P::HandleRightsRequests,
            P::ViewSecurityEvents,
            P::ViewAuditLog,
            P::ManageOperators,
            P::ReadConsentRecords,
        ] {
            assert!(!Role::Analyst.can(p), "{p:?}");
        }
        // Consent: rates for the analyst, the DPO and the administrator; receipts and the proof
        // export for the DPO only.
        for r in [Role::Analyst, Role::Dpo, Role::Admin] {
            assert!(r.can(P::ViewConsentRates), "{r}");
        }
        assert!(!Role::Support.can(P::ViewConsentRates));
        assert!(Role::Dpo.can(P::ReadConsentRecords));
        for r in [Role::Admin, Role::Support, Role::Analyst] {
            assert!(!r.can(P::ReadConsentRecords), "{r}");
        }
        assert!(Role::Admin.requires_second_factor() && Role::Dpo.requires_second_factor());
        assert!(!Role::Support.requires_second_factor());
    }

    #[test]
    fn password_rules() {
        let ok = |p: &str| check_password(p, "alice");
        assert_eq!(ok("short"), Err(PasswordProblem::TooShort { min: 12 }));
        // Eleven characters are too short, twelve are enough: no composition rules.
        assert!(ok("mfkqpzwtrxv").is_err());
        assert_eq!(ok("mfkqpzwtrxvb"), Ok(()));
        assert_eq!(ok("correct horse battery staple"), Ok(()));
        assert_eq!(ok("ÉtéÀParisSousLaPluie"), Ok(()));
        let long = "x".repeat(4097);
        assert_eq!(ok(&long), Err(PasswordProblem::TooLong { max: 4096 }));
        let longest: String = "correct horse battery staple "
            .chars()
            .cycle()
            .take(4096)
            .collect();
        assert_eq!(ok(&longest), Ok(()));
        // On the list (case does not matter).
        assert_eq!(ok("1q2w3e4r5t6y"), Err(PasswordProblem::Common));
        assert_eq!(ok("1234567890QWERTYUIOP"), Err(PasswordProblem::Common));
        // Decorated common words, the login and the product's name.
        assert_eq!(
            ok("Password2024!"),
            Err(PasswordProblem::CommonWithDecoration)
        );
        assert_eq!(
            ok("!!sunshine123456"),
            Err(PasswordProblem::CommonWithDecoration)
        );
        assert_eq!(
            ok("tutela2026!!"),
            Err(PasswordProblem::CommonWithDecoration)
        );
        assert_eq!(
            ok("alice1234567!"),
            Err(PasswordProblem::CommonWithDecoration)
        );
        assert_eq!(
            ok("my name is alice, hi"),
            Err(PasswordProblem::ContainsLogin)
        );
        // Patterns.
        assert_eq!(ok("zzzzzzzzzzzzzz"), Err(PasswordProblem::Pattern));
        assert_eq!(ok("xq7!xq7!xq7!xq7!"), Err(PasswordProblem::Pattern));
        assert_eq!(ok("567890123456"), Err(PasswordProblem::Pattern));
        assert_eq!(ok("lkjihgfedcba"), Err(PasswordProblem::Pattern));
        assert!(common_passwords().len() > 19_000);
    }

    #[test]
    fn logins() {
        assert_eq!(normalise_login("  Alice.Martin ").unwrap(), "alice.martin");
        assert!(normalise_login("al").is_err());
        assert!(normalise_login("alice martin").is_err());
        assert!(normalise_login("alice@example.com").is_err());
        assert!(normalise_login(&"a".repeat(65)).is_err());
    }
}
