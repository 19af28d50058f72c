//! The register of processing activities (GDPR art. 30), as written by the data-protection
//! officer in `policy.toml`.
//!
//! The model is deliberately *lenient* when it is deserialised: an unknown legal basis, an
//! unparseable duration or a misspelt anchor does not stop parsing. Such values are kept as
//! `Unknown(..)` / [`Period::Invalid`] so that [`crate::validate`] can report **every** problem
//! of a register at once, each with its line. Code that runs after a successful validation never
//! sees those variants.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A human-readable text in every language of the register (`label.en = "…"`, `label.fr = "…"`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Text(pub BTreeMap<String, String>);

impl Text {
    /// The text in `lang`, falling back to English, then to any language present.
    pub fn get(&self, lang: &str) -> &str {
        self.0
            .get(lang)
            .or_else(|| self.0.get("en"))
            .or_else(|| self.0.values().next())
            .map(String::as_str)
            .unwrap_or("")
    }

    pub fn is_empty(&self) -> bool {
        self.0.values().all(|v| v.trim().is_empty())
    }
}

/// Generates a string-backed enum that deserialises leniently: unknown strings become
/// `Unknown(String)` so that validation can report them with their location.
macro_rules! string_enum {
    ($(#[$meta:meta])* pub enum $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
            /// A value the register used that Tutela does not know (reported by validation).
            Unknown(String),
        }

        impl $name {
            /// Every accepted spelling, for error hints.
            pub const ALL: &'static [&'static str] = &[$($text),+];

            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $text,)+
                    Self::Unknown(s) => s.as_str(),
                }
            }

            pub fn parse(s: &str) -> Self {
                match s {
                    $($text => Self::$variant,)+
                    other => Self::Unknown(other.to_string()),
                }
            }

            pub fn is_known(&self) -> bool {
                !matches!(self, Self::Unknown(_))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Ok(Self::parse(&s))
            }
        }
    };
}

string_enum! {
    /// The six lawful bases of GDPR art. 6(1).
    pub enum LegalBasis {
        Consent => "consent",
        Contract => "contract",
        LegalObligation => "legal_obligation",
        VitalInterests => "vital_interests",
        PublicTask => "public_task",
        LegitimateInterest => "legitimate_interest",
    }
}

impl LegalBasis {
    /// The GDPR article that provides this basis.
    pub fn article(&self) -> &'static str {
        match self {
            Self::Consent => "art. 6(1)(a)",
            Self::Contract => "art. 6(1)(b)",
            Self::LegalObligation => "art. 6(1)(c)",
            Self::VitalInterests => "art. 6(1)(d)",
            Self::PublicTask => "art. 6(1)(e)",
            Self::LegitimateInterest => "art. 6(1)(f)",
            Self::Unknown(_) => "",
        }
    }

    /// The W3C Data Privacy Vocabulary term for this basis.
    pub fn dpv(&self) -> &'static str {
        match self {
            Self::Consent => "dpv:Consent",
            Self::Contract => "dpv:Contract",
            Self::LegalObligation => "dpv:LegalObligation",
            Self::VitalInterests => "dpv:VitalInterest",
            Self::PublicTask => "dpv:PublicTask",
            Self::LegitimateInterest => "dpv:LegitimateInterest",
            Self::Unknown(_) => "",
        }
    }
}

string_enum! {
    /// What a retention period is counted from.
    pub enum Anchor {
        /// The moment the datum is collected.
        Collection => "collection",
        /// The last contact with the data subject (e.g. a candidate).
        LastContact => "last_contact",
        /// The end of the contract with the data subject.
        ContractEnd => "contract_end",
        /// For the duration of the contract, then a legal retention period after its end.
        ContractThenLegal => "contract_then_legal",
        /// The reply to a rights request.
        RequestReply => "request_reply",
        /// Kept only while the request it belongs to is open; no duration.
        WhileOpen => "while_open",
    }
}

impl Anchor {
    /// Whether this anchor needs a duration (`keep = "…"`).
    pub fn needs_duration(&self) -> bool {
        !matches!(self, Self::WhileOpen)
    }

    /// The event name the platform reports to start the clock (None: known at collection or never).
    pub fn event(&self) -> Option<&'static str> {
        match self {
            Self::LastContact => Some("last_contact"),
            Self::ContractEnd | Self::ContractThenLegal => Some("contract_ended"),
            Self::RequestReply => Some("request_replied"),
            Self::WhileOpen => Some("request_closed"),
            Self::Collection | Self::Unknown(_) => None,
        }
    }
}

string_enum! {
    /// Cookie categories, as grouped on the public site and in the consent banner.
    pub enum CookieCategory {
        Functional => "functional",
        Analytics => "analytics",
        Targeting => "targeting",
    }
}

string_enum! {
    /// How sensitive a category of data is.
    pub enum Sensitivity {
        /// Ordinary personal data.
        Normal => "normal",
        /// Identifiers that single a person out directly (e-mail, phone, IP address).
        Identifier => "identifier",
        /// Data whose misuse does particular harm (financial, location, content of messages).
        High => "high",
        /// Special categories of art. 9 and data of art. 10.
        Special => "special",
    }
}

string_enum! {
    /// Minimisation rules a collector applies before anything is stored.
    pub enum MinimisationRule {
        /// Keep the first half of an IP address: IPv4 /16, IPv6 /48.
        IpHalf => "ip_half",
        /// Reduce a user agent to browser and version, OS and version, device type.
        UserAgentSummary => "user_agent_summary",
        /// Keep a URL without its query string (except declared campaign parameters) and fragment.
        UrlWithoutQuery => "url_without_query",
        /// Replace an identifier with a keyed hash (pseudonym) that rotates.
        KeyedPseudonym => "keyed_pseudonym",
        /// Store only a salted password hash (Argon2id), never the secret itself.
        PasswordHash => "password_hash",
        /// Keep the value as it is.
        None => "none",
    }
}

string_enum! {
    /// The role of a recipient of personal data.
    pub enum RecipientRole {
        /// Processes data on the controller's behalf (art. 28).
        Processor => "processor",
        /// Receives data and decides on its own purposes.
        Controller => "controller",
        /// Joint controller (art. 26).
        JointController => "joint_controller",
        /// Public authority receiving data under a legal obligation.
        Authority => "authority",
    }
}

string_enum! {
    /// What happens by default to a person's data after their death when they left no instructions.
    pub enum AfterDeath {
        /// Destroy everything except what must be kept as evidence or by legal obligation.
        Destroy => "destroy",
        /// Keep until the heirs ask (only for registers that promise it).
        KeepUntilHeirsAsk => "keep_until_heirs_ask",
    }
}

/// Units a retention duration may be written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PeriodUnit {
    Hours,
    Days,
    Weeks,
    Months,
    Years,
}

/// A duration such as `"180 days"`, `"12 months"` or `"1 year"`.
///
/// Months and years are calendar units: one month after 31 January is the last day of February.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Period {
    Fixed {
        amount: u32,
        unit: PeriodUnit,
    },
    /// A text that does not parse (reported by validation).
    Invalid(String),
}

impl Period {
    pub fn parse(text: &str) -> Self {
        Self::try_parse(text).unwrap_or_else(|| Self::Invalid(text.to_string()))
    }

    fn try_parse(text: &str) -> Option<Self> {
        let mut parts = text.split_whitespace();
        let amount: u32 = parts.next()?.parse().ok()?;
        let unit = match parts.next()?.to_ascii_lowercase().as_str() {
            "hour" | "hours" => PeriodUnit::Hours,
            "day" | "days" => PeriodUnit::Days,
            "week" | "weeks" => PeriodUnit::Weeks,
            "month" | "months" => PeriodUnit::Months,
            "year" | "years" => PeriodUnit::Years,
            _ => return None,
        };
        if parts.next().is_some() || amount == 0 || amount > 100_000 {
            return None;
        }
        Some(Self::Fixed { amount, unit })
    }

    pub fn is_valid(&self) -> bool {
        matches!(self, Self::Fixed { .. })
    }

    /// The canonical English spelling, `"180 days"`, `"1 year"`.
    pub fn canonical(&self) -> String {
        match self {
            Self::Fixed { amount, unit } => {
                let word = match unit {
                    PeriodUnit::Hours => "hour",
                    PeriodUnit::Days => "day",
                    PeriodUnit::Weeks => "week",
                    PeriodUnit::Months => "month",
                    PeriodUnit::Years => "year",
                };
                if *amount == 1 {
                    format!("1 {word}")
                } else {
                    format!("{amount} {word}s")
                }
            }
            Self::Invalid(s) => s.clone(),
        }
    }

    /// The same duration as a calendar-aware jiff span (None for an invalid period).
    pub fn span(&self) -> Option<jiff::Span> {
        let Self::Fixed { amount, unit } = self else {
            return None;
        };
        let n = i64::from(*amount);
        let span = match unit {
            PeriodUnit::Hours => jiff::Span::new().try_hours(n),
            PeriodUnit::Days => jiff::Span::new().try_days(n),
            PeriodUnit::Weeks => jiff::Span::new().try_weeks(n),
            PeriodUnit::Months => jiff::Span::new().try_months(n),
            PeriodUnit::Years => jiff::Span::new().try_years(n),
        };
        span.ok()
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical())
    }
}

impl Serialize for Period {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.canonical())
    }
}

impl<'de> Deserialize<'de> for Period {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(Self::parse(&s))
    }
}

/// The whole register, as loaded from `policy.toml`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Register {
    /// Format version of the register file (currently 1).
    pub schema: u32,
    pub controller: Controller,
    pub authority: Authority,
    pub notice: NoticeSettings,
    pub rights: RightsSettings,
    #[serde(default)]
    pub subjects: Vec<SubjectType>,
    #[serde(default)]
    pub categories: Vec<Category>,
    #[serde(default)]
    pub recipients: Vec<Recipient>,
    #[serde(default)]
    pub purposes: Vec<Purpose>,
    #[serde(default)]
    pub revisions: Vec<Revision>,
}

/// Who is responsible for the processing, and how to reach them and their DPO.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Controller {
    pub name: String,
    /// Legal form and registration, e.g. "SAS, RCS Nantes 123 456 789".
    #[serde(default)]
    pub legal_entity: Option<String>,
    pub postal_address: String,
    pub email: String,
    #[serde(default)]
    pub website: Option<String>,
    pub dpo: Dpo,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dpo {
    #[serde(default)]
    pub name: Option<String>,
    pub email: String,
    pub postal_address: String,
}

/// The supervisory authority and the complaint route (art. 13(2)(d), art. 77).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Authority {
    pub name: Text,
    pub website: String,
    pub complaint_url: String,
    /// Link to the list of all European data-protection authorities.
    pub authorities_list_url: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoticeSettings {
    /// Languages the notice is published in; every text of the register must exist in each.
    pub languages: Vec<String>,
    pub default_language: String,
    pub title: Text,
    pub introduction: Text,
    /// Where the public site's notice lives (used in links and machine-readable renderings).
    #[serde(default)]
    pub url: Option<String>,
}

/// How rights requests are handled (art. 12).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RightsSettings {
    /// Time to answer a request, from receipt (art. 12(3)): "1 month".
    pub reply_within: Period,
    /// Longest extension, with notice and reasons: "2 months".
    pub max_extension: Period,
    /// How long the record of a handled request is kept after the reply: "1 year".
    pub request_records_kept: Period,
    /// Default handling of a person's data after death without instructions.
    pub after_death: AfterDeath,
    /// Where requests can be sent by e-mail.
    pub email: String,
    /// Where requests can be sent by post.
    pub postal_address: String,
    /// What a requester must provide to prove their identity.
    pub identity_proof: Text,
}

/// A kind of data subject (visitors, customers, candidates…).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubjectType {
    pub id: String,
    pub label: Text,
}

/// A category of personal data.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Category {
    pub id: String,
    pub label: Text,
    #[serde(default = "default_sensitivity")]
    pub sensitivity: Sensitivity,
    /// Minimisation applied by collectors before anything is stored.
    #[serde(default)]
    pub minimise: Option<MinimisationRule>,
    /// Data of this category is never stored by the platform (e.g. card numbers, handled only by
    /// the payment processor). Writes of it are refused.
    #[serde(default)]
    pub never_store: bool,
    /// Whether the data subject provided this data themselves (it is then part of portability, art. 20).
    #[serde(default)]
    pub provided_by_subject: bool,
}

fn default_sensitivity() -> Sensitivity {
    Sensitivity::Normal
}

/// A recipient of personal data: processor, other controller or authority.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipient {
    pub id: String,
    pub name: String,
    pub role: RecipientRole,
    /// What they do with the data.
    pub service: Text,
    /// Link to their own privacy policy.
    #[serde(default)]
    pub policy_url: Option<String>,
    /// Country where they process the data (ISO 3166 code).
    #[serde(default)]
    pub country: Option<String>,
    /// Safeguards for transfers outside the EEA (art. 46), if any.
    #[serde(default)]
    pub transfer_safeguards: Option<Text>,
}

/// A processing activity.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Purpose {
    pub id: String,
    pub label: Text,
    pub description: Text,
    pub legal_basis: LegalBasis,
    /// For legitimate interest: the interest pursued (art. 13(1)(d)).
    #[serde(default)]
    pub legitimate_interest: Option<Text>,
    /// Kinds of data subjects (ids of `[[subjects]]`).
    #[serde(default)]
    pub subjects: Vec<String>,
    /// Categories of data processed (ids of `[[categories]]`).
    #[serde(default)]
    pub categories: Vec<String>,
    /// Retention rules; the first rule without `categories` is the default for the purpose.
    #[serde(default)]
    pub retention: Vec<RetentionRule>,
    /// Recipients (ids of `[[recipients]]`); empty means nobody outside the controller.
    #[serde(default)]
    pub recipients: Vec<String>,
    #[serde(default)]
    pub cookies: Vec<Cookie>,
    /// For consent-based purposes: the cookie category the consent banner asks for.
    #[serde(default)]
    pub consent_category: Option<CookieCategory>,
    /// Where the data comes from (art. 14(2)(f)).
    pub source: Text,
}

/// How long (some of) a purpose's data is kept.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionRule {
    /// The categories this rule covers; empty = every category of the purpose not covered by
    /// another rule.
    #[serde(default)]
    pub categories: Vec<String>,
    /// What the period is counted from.
    pub from: Anchor,
    /// The duration; absent only for `while_open`.
    #[serde(default)]
    pub keep: Option<Period>,
    /// A legal basis that takes over for this data (e.g. a legal obligation to keep connection
    /// logs for one year). Data kept under `legal_obligation` survives erasure requests.
    #[serde(default)]
    pub basis: Option<LegalBasis>,
    /// The law that imposes the period, when there is one.
    #[serde(default)]
    pub law: Option<Text>,
    /// The subject may agree to keep their data longer (e.g. a candidate's résumé).
    #[serde(default)]
    pub extendable_with_consent: bool,
    /// Extra explanation shown in the notice.
    #[serde(default)]
    pub note: Option<Text>,
}

impl RetentionRule {
    /// Whether data under this rule is kept by legal obligation (and so survives erasure).
    pub fn is_legal_obligation(&self, purpose_basis: &LegalBasis) -> bool {
        matches!(
            self.basis.as_ref().unwrap_or(purpose_basis),
            LegalBasis::LegalObligation
        ) || matches!(self.from, Anchor::ContractThenLegal)
    }
}

/// A cookie (or similar tracker) set for a purpose.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cookie {
    pub name: String,
    pub category: CookieCategory,
    /// How long the cookie lives in the browser.
    pub lifetime: Period,
    /// Who sets it: "first-party" or a recipient id.
    #[serde(default)]
    pub provider: Option<String>,
    pub description: Text,
}

/// One change of the register, shown in the notice's revision history.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revision {
    pub id: String,
    /// ISO date, `2026-11-29`.
    pub date: String,
    pub summary: Text,
}

impl Register {
    pub fn category(&self, id: &str) -> Option<&Category> {
        self.categories.iter().find(|c| c.id == id)
    }

    pub fn purpose(&self, id: &str) -> Option<&Purpose> {
        self.purposes.iter().find(|p| p.id == id)
    }

    pub fn recipient(&self, id: &str) -> Option<&Recipient> {
        self.recipients.iter().find(|r| r.id == id)
    }

    pub fn subject_type(&self, id: &str) -> Option<&SubjectType> {
        self.subjects.iter().find(|s| s.id == id)
    }

    /// The newest revision (the one with the latest date; ties: the last listed).
    pub fn latest_revision(&self) -> Option<&Revision> {
        self.revisions
            .iter()
            .enumerate()
            .max_by(|(ia, a), (ib, b)| a.date.cmp(&b.date).then(ia.cmp(ib)))
            .map(|(_, r)| r)
    }

    /// Every cookie category some cookie or consent-based purpose uses, in banner order.
    pub fn cookie_categories(&self) -> Vec<CookieCategory> {
        let mut out = Vec::new();
        for want in [
            CookieCategory::Functional,
            CookieCategory::Analytics,
            CookieCategory::Targeting,
        ] {
            let used = self.purposes.iter().any(|p| {
                p.consent_category.as_ref() == Some(&want)
                    || p.cookies.iter().any(|c| c.category == want)
            });
            if used {
                out.push(want);
            }
        }
        out
    }
}

impl Purpose {
    /// The retention rule that applies to `category` in this purpose.
    pub fn retention_for(&self, category: &str) -> Option<&RetentionRule> {
        self.retention
            .iter()
            .find(|r| r.categories.iter().any(|c| c == category))
            .or_else(|| self.retention.iter().find(|r| r.categories.is_empty()))
    }
}
