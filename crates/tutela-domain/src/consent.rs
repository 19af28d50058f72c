//! Consent: what the banner asks, how a choice is read, and the receipt a person can keep.
//!
//! Everything here is computed from the register, without I/O:
//!
//! - [`banner_categories`] and [`services`]: the cookie categories the banner asks about and the
//!   services (recipients or first-party purposes) behind each;
//! - [`BannerConfig`]: the facts `/consent.js` needs (revision, cookie lifetime, categories,
//!   services, wording in English and French);
//! - [`parse_submission`]: reads a choice posted by Tutela's banner, by vanilla-cookieconsent v3
//!   (its `CookieValue`) or by Klaro (its `saveConsents` notification), and checks it against the
//!   register; [`Submission::apply_gpc`] applies Global Privacy Control;
//! - [`receipt`]: a consent receipt shaped after ISO/IEC TS 27560:2023 and the Kantara Initiative
//!   Consent Receipt Specification v1.1.
//!
//! Two ids of the register have a meaning here (see `examples/policy.toml`): the data category
//! [`CONSENT_RECORD_CATEGORY`], under which consent records are stored (its purpose gives them
//! their deadline), and the cookie [`CONSENT_COOKIE`], whose `lifetime` is how long the browser
//! remembers the choice.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::register::{CookieCategory, LegalBasis, Purpose, Register, RetentionRule, Text};
use crate::validate::FIRST_PARTY;

/// The first-party cookie in which the banner keeps the choice. Declare it in the register (in
/// the purpose that keeps consent records, category `functional`): its `lifetime` is how long a
/// choice is remembered before the banner asks again.
pub const CONSENT_COOKIE: &str = "tutela_consent";

/// The data category under which consent records are stored. Exactly one purpose may declare it;
/// its retention rule (counted from `collection`) gives every record its deadline.
pub const CONSENT_RECORD_CATEGORY: &str = "consent_record";

/// Longest accepted text value in a submission (ids, revision, language, site).
const MAX_TEXT: usize = 255;
/// Most services accepted per category in a submission.
const MAX_SERVICES: usize = 64;

/// The categories the banner asks about, in banner order: every cookie category the register
/// uses, except for the consent cookie itself (remembering a choice needs no consent).
pub fn banner_categories(reg: &Register) -> Vec<CookieCategory> {
    let mut out = Vec::new();
    for want in [
        CookieCategory::Functional,
        CookieCategory::Analytics,
        CookieCategory::Targeting,
    ] {
        let used = reg.purposes.iter().any(|p| {
            p.consent_category.as_ref() == Some(&want)
                || p.cookies
                    .iter()
                    .any(|c| c.category == want && c.name != CONSENT_COOKIE)
        });
        if used {
            out.push(want);
        }
    }
    out
}

/// Whether a Global Privacy Control signal refuses this category: GPC is a request not to sell or
/// share personal data, which is what targeting (advertising) cookies do.
pub fn gpc_refuses(category: &CookieCategory) -> bool {
    *category == CookieCategory::Targeting
}

/// A service behind a cookie category: a recipient that sets cookies, or a first-party purpose.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Service {
    /// The recipient id, or the purpose id for first-party cookies.
    pub id: String,
    pub name: Text,
    /// Ids of the purposes the service serves.
    pub purposes: Vec<String>,
    /// Names of the cookies it sets.
    pub cookies: Vec<String>,
}

/// The services of `category`, in register order.
pub fn services(reg: &Register, category: &CookieCategory) -> Vec<Service> {
    let mut out: Vec<Service> = Vec::new();
    let mut add = |id: &str, name: Text, purpose: &str, cookie: Option<&str>| {
        let s = match out.iter_mut().position(|s| s.id == id) {
            Some(i) => &mut out[i],
            None => {
                out.push(Service {
                    id: id.to_string(),
                    name,
                    purposes: Vec::new(),
                    cookies: Vec::new(),
                });
                out.last_mut().expect("just pushed")
            }
        };
        if !s.purposes.iter().any(|p| p == purpose) {
            s.purposes.push(purpose.to_string());
        }
        if let Some(c) = cookie {
            s.cookies.push(c.to_string());
        }
    };
    for p in &reg.purposes {
        let mut any = false;
        for c in p
            .cookies
            .iter()
            .filter(|c| &c.category == category && c.name != CONSENT_COOKIE)
        {
            any = true;
            match c.provider.as_deref() {
                Some(r) if r != FIRST_PARTY => {
                    let name = reg
                        .recipient(r)
                        .map(|x| Text(BTreeMap::from([("en".to_string(), x.name.clone())])))
                        .unwrap_or_default();
                    add(r, name, &p.id, Some(&c.name));
                }
                _ => add(&p.id, p.label.clone(), &p.id, Some(&c.name)),
            }
        }
        if !any && p.consent_category.as_ref() == Some(category) {
            add(&p.id, p.label.clone(), &p.id, None);
        }
    }
    out
}

/// The purpose that keeps consent records and its retention rule for them, if the register has one.
pub fn record_purpose(reg: &Register) -> Option<(&Purpose, &RetentionRule)> {
    let p = reg
        .purposes
        .iter()
        .find(|p| p.categories.iter().any(|c| c == CONSENT_RECORD_CATEGORY))?;
    Some((p, p.retention_for(CONSENT_RECORD_CATEGORY)?))
}

/// The consent cookie as the register declares it.
pub fn consent_cookie(reg: &Register) -> Option<&crate::register::Cookie> {
    reg.purposes
        .iter()
        .flat_map(|p| p.cookies.iter())
        .find(|c| c.name == CONSENT_COOKIE)
}

/// How a choice was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// A person's action in a consent interface (Tutela's banner or another consent manager).
    Banner,
    /// Set by a program (the site's code through `window.tutela.consent.set`, or a server).
    Api,
    /// Derived from the browser's Global Privacy Control signal, without any action.
    Gpc,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Banner => "banner",
            Method::Api => "api",
            Method::Gpc => "gpc",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "banner" => Some(Method::Banner),
            "api" => Some(Method::Api),
            "gpc" => Some(Method::Gpc),
            _ => None,
        }
    }
}

/// Which consent interface sent a choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Source {
    /// Tutela's own banner (`/consent.js`) or its JSON API.
    #[serde(rename = "tutela")]
    Tutela,
    /// vanilla-cookieconsent v3: the `cookie` value its `onConsent`/`onChange` callbacks receive.
    #[serde(rename = "vanilla-cookieconsent")]
    VanillaCookieconsent,
    /// Klaro: the data of its `saveConsents` notification to watchers.
    #[serde(rename = "klaro")]
    Klaro,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Tutela => "tutela",
            Source::VanillaCookieconsent => "vanilla-cookieconsent",
            Source::Klaro => "klaro",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "tutela" => Some(Source::Tutela),
            "vanilla-cookieconsent" | "cookieconsent" => Some(Source::VanillaCookieconsent),
            "klaro" => Some(Source::Klaro),
            _ => None,
        }
    }
}

/// The choice for one category.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Choice {
    /// Whether the category's scripts may run (for services, see `services`).
    pub granted: bool,
    /// The choice per service of the category (service id → granted).
    pub services: BTreeMap<String, bool>,
}

/// A choice as received and checked against the register, ready to be recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Submission {
    /// The consent id the browser already has (lower-case UUID), or None for a new one.
    pub consent_id: Option<String>,
    /// Choices per banner category; a category that is absent was not asked or not answered.
    pub choices: BTreeMap<CookieCategory, Choice>,
    pub method: Method,
    pub source: Source,
    /// The register revision the person was shown; None means the current one.
    pub revision: Option<String>,
    /// The language of the banner, when it is one of the notice's languages.
    pub language: Option<String>,
    /// The site, as an origin (`https://www.example.com`), when the body names one.
    pub site: Option<String>,
    /// Whether the browser sent a Global Privacy Control signal.
    pub gpc: bool,
}

/// Why a submission is refused. Messages name the offending value, never personal data.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConsentError {
    #[error("the body is not a JSON object")]
    NotAnObject,
    #[error(
        "the body is neither Tutela's consent payload (`choices`), vanilla-cookieconsent's cookie (`categories`, `consentId`) nor Klaro's saveConsents data (`consents`)"
    )]
    UnknownShape,
    #[error("`{field}` must be {expected}")]
    Field {
        field: String,
        expected: &'static str,
    },
    #[error("unknown cookie category `{0}`; this register's banner asks about: {1}")]
    UnknownCategory(String, String),
    #[error("unknown service `{service}`; the services are: {known}")]
    UnknownService { service: String, known: String },
    #[error("unknown register revision `{0}`; the current revision is `{1}`")]
    UnknownRevision(String, String),
    #[error("the choice is empty: give at least one category (or `\"withdraw\": true`)")]
    Empty,
}

fn field(name: &str, expected: &'static str) -> ConsentError {
    ConsentError::Field {
        field: name.to_string(),
        expected,
    }
}

/// Whether `s` is a UUID in its canonical text form (8-4-4-4-12 hexadecimal digits).
pub fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Reduces a site to its origin (`scheme://host[:port]`, lower case); None when it isn't one.
pub fn normalise_origin(s: &str) -> Option<String> {
    let s = s.trim().to_ascii_lowercase();
    let (scheme, rest) = s.split_once("://")?;
    if !matches!(scheme, "http" | "https") {
        return None;
    }
    let host = rest.split(['/', '?', '#']).next()?;
    let ok = !host.is_empty()
        && host.len() <= MAX_TEXT
        && !host.contains('@')
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    ok.then(|| format!("{scheme}://{host}"))
}

fn text_field(obj: &Map<String, Value>, name: &str) -> Result<Option<String>, ConsentError> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() <= MAX_TEXT => Ok(Some(s.clone())),
        Some(_) => Err(field(name, "a string of at most 255 characters")),
    }
}

fn consent_id_field(obj: &Map<String, Value>, name: &str) -> Result<Option<String>, ConsentError> {
    match text_field(obj, name)? {
        None => Ok(None),
        Some(s) if is_uuid(&s) => Ok(Some(s.to_ascii_lowercase())),
        Some(_) => Err(field(
            name,
            "a UUID such as 3f2c1e9a-8b7d-4c6e-9f01-23456789abcd",
        )),
    }
}

/// The register's facts a submission is checked against: the banner's categories and their
/// services. Build it once per register ([`ConsentModel::new`]) on hot paths.
#[derive(Clone, Debug)]
pub struct ConsentModel {
    categories: Vec<CookieCategory>,
    services: Vec<(CookieCategory, Vec<Service>)>,
}

type Known = ConsentModel;

impl ConsentModel {
    pub fn new(reg: &Register) -> Self {
        let categories = banner_categories(reg);
        let services = categories
            .iter()
            .map(|c| (c.clone(), services(reg, c)))
            .collect();
        Known {
            categories,
            services,
        }
    }

    fn category(&self, name: &str) -> Result<CookieCategory, ConsentError> {
        let c = CookieCategory::parse(name);
        if self.categories.contains(&c) {
            Ok(c)
        } else {
            let names: Vec<&str> = self.categories.iter().map(|c| c.as_str()).collect();
            Err(ConsentError::UnknownCategory(
                truncate(name),
                names.join(", "),
            ))
        }
    }

    fn services_of(&self, c: &CookieCategory) -> &[Service] {
        self.services
            .iter()
            .find(|(k, _)| k == c)
            .map(|(_, s)| s.as_slice())
            .unwrap_or(&[])
    }

    fn unknown_service(&self, service: &str, of: Option<&CookieCategory>) -> ConsentError {
        let known: Vec<&str> = self
            .services
            .iter()
            .filter(|(c, _)| of.is_none_or(|o| o == c))
            .flat_map(|(_, s)| s.iter().map(|s| s.id.as_str()))
            .collect();
        ConsentError::UnknownService {
            service: truncate(service),
            known: if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            },
        }
    }

    /// Every service of `c` with the same answer.
    fn all_services(&self, c: &CookieCategory, granted: bool) -> BTreeMap<String, bool> {
        self.services_of(c)
            .iter()
            .map(|s| (s.id.clone(), granted))
            .collect()
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

/// Reads a posted choice. `source` forces a format (`?source=` of the endpoint); without it the
/// format is recognised by its shape. The result is checked against the register: categories
/// and services must be the banner's, the revision one of the register's.
pub fn parse_submission(
    reg: &Register,
    body: &Value,
    source: Option<Source>,
) -> Result<Submission, ConsentError> {
    parse_submission_with(reg, &ConsentModel::new(reg), body, source)
}

/// [`parse_submission`] with a model built beforehand from the same register.
pub fn parse_submission_with(
    reg: &Register,
    known: &ConsentModel,
    body: &Value,
    source: Option<Source>,
) -> Result<Submission, ConsentError> {
    let obj = body.as_object().ok_or(ConsentError::NotAnObject)?;
    // vanilla-cookieconsent's callbacks receive `{cookie}`: accept the wrapper as well.
    let vcc_inner = obj
        .get("cookie")
        .and_then(Value::as_object)
        .filter(|c| c.contains_key("categories"));
    let source = match source {
        Some(s) => s,
        None if obj.contains_key("choices") || obj.contains_key("withdraw") => Source::Tutela,
        None if vcc_inner.is_some()
            || (obj.get("categories").is_some_and(Value::is_array)
                && obj.contains_key("consentId")) =>
        {
            Source::VanillaCookieconsent
        }
        None if obj.get("consents").is_some_and(Value::is_object) => Source::Klaro,
        None => return Err(ConsentError::UnknownShape),
    };
    let mut sub = match source {
        Source::Tutela => parse_tutela(known, obj)?,
        Source::VanillaCookieconsent => parse_vcc(known, vcc_inner.unwrap_or(obj))?,
        Source::Klaro => parse_klaro(known, obj)?,
    };
    if let Some(rev) = &sub.revision
        && !reg.revisions.iter().any(|r| &r.id == rev)
    {
        let current = reg.latest_revision().map_or("", |r| r.id.as_str());
        return Err(ConsentError::UnknownRevision(truncate(rev), current.into()));
    }
    if let Some(lang) = &sub.language {
        let lang = lang
            .split(['-', '_'])
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        sub.language = reg.notice.languages.iter().find(|l| **l == lang).cloned();
    }
    if sub.choices.is_empty() {
        return Err(ConsentError::Empty);
    }
    Ok(sub)
}

/// Tutela's own payload:
///
/// ```json
/// {"consent_id": "…uuid…", "choices": {"analytics": true, "targeting": {"granted": true,
///  "services": {"meta": true, "linkedin": false}}}, "method": "banner", "revision": "2026-3",
///  "language": "fr", "gpc": false}
/// ```
///
/// or `{"consent_id": "…", "withdraw": true}` to refuse every category.
fn parse_tutela(known: &Known, obj: &Map<String, Value>) -> Result<Submission, ConsentError> {
    let method = match text_field(obj, "method")? {
        None => Method::Api,
        Some(m) => Method::parse(&m).ok_or_else(|| field("method", "banner, api or gpc"))?,
    };
    let gpc = match obj.get("gpc") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(field("gpc", "true or false")),
    };
    let withdraw = match obj.get("withdraw") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(field("withdraw", "true or false")),
    };
    let mut choices = BTreeMap::new();
    if withdraw {
        for c in &known.categories {
            choices.insert(
                c.clone(),
                Choice {
                    granted: false,
                    services: known.all_services(c, false),
                },
            );
        }
    } else {
        let given = match obj.get("choices") {
            Some(Value::Object(m)) => m,
            _ => return Err(field("choices", "an object of category → true/false")),
        };
        for (name, value) in given {
            let c = known.category(name)?;
            let choice = match value {
                Value::Bool(b) => Choice {
                    granted: *b,
                    services: known.all_services(&c, *b),
                },
                Value::Object(o) => {
                    let granted = o.get("granted").and_then(Value::as_bool).ok_or_else(|| {
                        field(&format!("choices.{name}.granted"), "true or false")
                    })?;
                    let mut services = known.all_services(&c, granted);
                    if let Some(s) = o.get("services") {
                        let s = s.as_object().ok_or_else(|| {
                            field(
                                &format!("choices.{name}.services"),
                                "an object of service → true/false",
                            )
                        })?;
                        if s.len() > MAX_SERVICES {
                            return Err(field(
                                &format!("choices.{name}.services"),
                                "at most 64 services",
                            ));
                        }
                        for (id, v) in s {
                            if !known.services_of(&c).iter().any(|x| &x.id == id) {
                                return Err(known.unknown_service(id, Some(&c)));
                            }
                            let v = v.as_bool().ok_or_else(|| {
                                field(&format!("choices.{name}.services.{id}"), "true or false")
                            })?;
                            // A service can't be granted in a refused category.
                            services.insert(id.clone(), v && granted);
                        }
                    }
                    Choice { granted, services }
                }
                _ => {
                    return Err(field(
                        &format!("choices.{name}"),
                        "true, false or {\"granted\": …, \"services\": {…}}",
                    ));
                }
            };
            choices.insert(c, choice);
        }
    }
    Ok(Submission {
        consent_id: consent_id_field(obj, "consent_id")?,
        choices,
        method,
        source: Source::Tutela,
        revision: text_field(obj, "revision")?,
        language: text_field(obj, "language")?,
        site: text_field(obj, "site")?.and_then(|s| normalise_origin(&s)),
        gpc,
    })
}

/// vanilla-cookieconsent v3's `CookieValue` (what `CookieConsent.getCookie()` returns and what its
/// `onFirstConsent`/`onConsent`/`onChange` callbacks receive as `cookie`): `categories` lists the
/// accepted categories (every other banner category was refused), `services` the accepted
/// services per category, `consentId` a random UUID v4, `languageCode` the banner's language.
/// Its category `necessary` (read-only, strictly necessary) needs no consent and is ignored.
fn parse_vcc(known: &Known, obj: &Map<String, Value>) -> Result<Submission, ConsentError> {
    let accepted: Vec<&str> = match obj.get("categories") {
        Some(Value::Array(a)) if a.len() <= 32 => a
            .iter()
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| field("categories", "an array of category names"))
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(field("categories", "an array of at most 32 category names")),
    };
    let mut granted_categories = Vec::new();
    for name in &accepted {
        if *name == "necessary" {
            continue;
        }
        granted_categories.push(known.category(name)?);
    }
    let services = match obj.get("services") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => Some(m),
        Some(_) => {
            return Err(field(
                "services",
                "an object of category → accepted services",
            ));
        }
    };
    if let Some(services) = services {
        for name in services.keys() {
            if name != "necessary" {
                known.category(name)?;
            }
        }
    }
    let mut choices = BTreeMap::new();
    for c in &known.categories {
        let granted = granted_categories.contains(c);
        let mut per_service = known.all_services(c, granted);
        if let Some(list) = services.and_then(|s| s.get(c.as_str())) {
            let list = list
                .as_array()
                .filter(|a| a.len() <= MAX_SERVICES)
                .ok_or_else(|| {
                    field(
                        &format!("services.{c}"),
                        "an array of at most 64 service names",
                    )
                })?;
            // Listed services are accepted; the category's other services are not.
            per_service = known.all_services(c, false);
            for v in list {
                let id = v
                    .as_str()
                    .ok_or_else(|| field(&format!("services.{c}"), "an array of service names"))?;
                if !per_service.contains_key(id) {
                    return Err(known.unknown_service(id, Some(c)));
                }
                per_service.insert(id.to_string(), granted);
            }
        }
        choices.insert(
            c.clone(),
            Choice {
                granted,
                services: per_service,
            },
        );
    }
    Ok(Submission {
        consent_id: consent_id_field(obj, "consentId")?,
        choices,
        method: Method::Banner,
        source: Source::VanillaCookieconsent,
        revision: None,
        language: text_field(obj, "languageCode")?,
        site: None,
        gpc: false,
    })
}

/// Klaro's `saveConsents` notification data, `{changes, consents, type}`: `consents` maps each
/// Klaro service name to true/false; `type` is `accept`, `decline` or `save` for a person's click
/// and `script` when the site's code saved. A Klaro service must be named after a service of the
/// register (a recipient id, or a purpose id for first-party cookies) or after a category; a
/// category counts as granted when at least one of its services is.
fn parse_klaro(known: &Known, obj: &Map<String, Value>) -> Result<Submission, ConsentError> {
    let consents = match obj.get("consents") {
        Some(Value::Object(m)) if m.len() <= 4 * MAX_SERVICES => m,
        _ => {
            return Err(field(
                "consents",
                "an object of at most 256 service → true/false",
            ));
        }
    };
    let method = match text_field(obj, "type")?.as_deref() {
        Some("script") => Method::Api,
        _ => Method::Banner,
    };
    let mut choices: BTreeMap<CookieCategory, Choice> = BTreeMap::new();
    for (name, v) in consents {
        let granted = v
            .as_bool()
            .ok_or_else(|| field(&format!("consents.{name}"), "true or false"))?;
        let as_category = CookieCategory::parse(name);
        if known.categories.contains(&as_category) {
            let choice = choices.entry(as_category.clone()).or_insert(Choice {
                granted: false,
                services: known.all_services(&as_category, false),
            });
            choice.granted |= granted;
            for s in choice.services.values_mut() {
                *s |= granted;
            }
            continue;
        }
        let mut found = false;
        for (c, list) in &known.services {
            if list.iter().any(|s| &s.id == name) {
                found = true;
                let choice = choices.entry(c.clone()).or_insert(Choice {
                    granted: false,
                    services: known.all_services(c, false),
                });
                choice.granted |= granted;
                choice.services.insert(name.clone(), granted);
            }
        }
        if !found {
            return Err(known.unknown_service(name, None));
        }
    }
    Ok(Submission {
        consent_id: consent_id_field(obj, "consent_id")?,
        choices,
        method,
        source: Source::Klaro,
        revision: None,
        language: None,
        site: None,
        gpc: false,
    })
}

impl Submission {
    /// Applies a Global Privacy Control signal: every category GPC refuses ([`gpc_refuses`])
    /// starts refused. A person who grants such a category in a consent interface makes an
    /// explicit exception, which stands (method `banner`); otherwise the category is recorded as
    /// refused, and when that changed the submission, its method becomes `gpc`.
    pub fn apply_gpc(&mut self, reg: &Register) {
        self.apply_gpc_with(&ConsentModel::new(reg));
    }

    /// [`Submission::apply_gpc`] with a model built beforehand.
    pub fn apply_gpc_with(&mut self, known: &ConsentModel) {
        if !self.gpc {
            return;
        }
        let mut changed = false;
        for c in known.categories.iter().filter(|c| gpc_refuses(c)) {
            let explicit = self.method == Method::Banner && self.choices.contains_key(c);
            if explicit {
                continue;
            }
            let refused = Choice {
                granted: false,
                services: known.all_services(c, false),
            };
            if self.choices.get(c) != Some(&refused) {
                changed = true;
                self.choices.insert(c.clone(), refused);
            }
        }
        if changed {
            self.method = Method::Gpc;
        }
    }
}

/// The banner's configuration, embedded in `/consent.js` and served at `/api/v1/consent/config`.
#[derive(Clone, Debug, Serialize)]
pub struct BannerConfig {
    /// The register's latest revision: a stored choice for another revision is asked again.
    pub revision: String,
    pub languages: Vec<String>,
    pub default_language: String,
    pub cookie: CookieConfig,
    /// The privacy notice the banner links to (the register's `notice.url`; None: Tutela's own
    /// `/privacy`).
    pub privacy_url: Option<String>,
    pub categories: Vec<CategoryConfig>,
    /// Wording per language.
    pub texts: BTreeMap<String, BannerTexts>,
}

#[derive(Clone, Debug, Serialize)]
pub struct CookieConfig {
    pub name: &'static str,
    /// Lifetime in seconds from the register's `tutela_consent` cookie; None: a session cookie
    /// (the register declares no lifetime, so the choice lasts until the browser closes).
    pub max_age: Option<i64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct CategoryConfig {
    pub id: &'static str,
    /// Refused by a Global Privacy Control signal.
    pub gpc: bool,
    pub label: BTreeMap<String, String>,
    pub description: BTreeMap<String, String>,
    pub services: Vec<ServiceConfig>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ServiceConfig {
    pub id: String,
    pub name: BTreeMap<String, String>,
    /// Cookies with their lifetime, per language, e.g. `_pk_id (13 months)`.
    pub cookies: BTreeMap<String, Vec<String>>,
}

/// The banner's words in one language.
#[derive(Clone, Debug, Serialize)]
pub struct BannerTexts {
    pub title: &'static str,
    pub intro: &'static str,
    pub accept_all: &'static str,
    pub reject_all: &'static str,
    pub customise: &'static str,
    pub save: &'static str,
    pub privacy: &'static str,
    pub gpc_note: &'static str,
    pub receipt: &'static str,
    pub services: &'static str,
    pub close: &'static str,
}

/// The wording of the banner (facts come from the register).
fn banner_texts(lang: &str) -> BannerTexts {
    match lang {
        "fr" => BannerTexts {
            title: "Vos choix en matière de cookies",
            intro: "Nous n'utilisons les cookies et scripts ci-dessous qu'avec votre accord. Vous pouvez tout accepter, tout refuser ou choisir par catégorie, et changer d'avis à tout moment.",
            accept_all: "Tout accepter",
            reject_all: "Tout refuser",
            customise: "Choisir par catégorie",
            save: "Enregistrer mes choix",
            privacy: "Politique de confidentialité",
            gpc_note: "Votre navigateur envoie le signal Global Privacy Control : les cookies de ciblage restent refusés, sauf si vous les activez vous-même ci-dessous.",
            receipt: "Reçu de consentement",
            services: "Services",
            close: "Fermer",
        },
        _ => BannerTexts {
            title: "Your cookie choices",
            intro: "We only use the cookies and scripts below with your agreement. You can accept all, reject all or choose by category, and change your mind at any time.",
            accept_all: "Accept all",
            reject_all: "Reject all",
            customise: "Choose by category",
            save: "Save my choices",
            privacy: "Privacy policy",
            gpc_note: "Your browser sends the Global Privacy Control signal: targeting cookies stay refused unless you turn them on yourself below.",
            receipt: "Consent receipt",
            services: "Services",
            close: "Close",
        },
    }
}

fn category_words(c: &CookieCategory, lang: &str) -> (&'static str, &'static str) {
    match (c, lang) {
        (CookieCategory::Functional, "fr") => (
            "Fonctionnels",
            "Des fonctions que vous utilisez, comme la discussion en direct, qui gardent des informations d'une page à l'autre.",
        ),
        (CookieCategory::Functional, _) => (
            "Functional",
            "Features you use, such as live chat, that keep information from one page to the next.",
        ),
        (CookieCategory::Analytics, "fr") => (
            "Mesure d'audience",
            "Compter les visites et comprendre l'utilisation du site pour l'améliorer.",
        ),
        (CookieCategory::Analytics, _) => (
            "Audience statistics",
            "Count visits and understand how the site is used, to improve it.",
        ),
        (CookieCategory::Targeting, "fr") => (
            "Ciblage publicitaire",
            "Permettre à des réseaux publicitaires de mesurer nos campagnes et de vous montrer nos publicités.",
        ),
        (CookieCategory::Targeting, _) => (
            "Targeting",
            "Let advertising networks measure our campaigns and show you our ads.",
        ),
        (CookieCategory::Unknown(_), _) => ("", ""),
    }
}

/// How long a period lasts from `now`, in seconds (calendar-aware).
fn period_seconds(period: &crate::register::Period, now: jiff::Timestamp) -> Option<i64> {
    let end = crate::retention::add_period(now, period).ok()?;
    Some(end.as_second() - now.as_second())
}

impl BannerConfig {
    /// The configuration for `reg` (a validated register), at `now` (cookie lifetimes in months
    /// are counted from it).
    pub fn new(reg: &Register, now: jiff::Timestamp) -> Self {
        let languages = reg.notice.languages.clone();
        let per_lang = |f: &dyn Fn(&str) -> String| -> BTreeMap<String, String> {
            languages.iter().map(|l| (l.clone(), f(l))).collect()
        };
        let categories = banner_categories(reg)
            .into_iter()
            .map(|c| {
                let services = services(reg, &c)
                    .into_iter()
                    .map(|s| {
                        let cookies: Vec<&crate::register::Cookie> = reg
                            .purposes
                            .iter()
                            .flat_map(|p| p.cookies.iter())
                            .filter(|k| s.cookies.contains(&k.name) && k.category == c)
                            .collect();
                        ServiceConfig {
                            name: per_lang(&|l| s.name.get(l).to_string()),
                            id: s.id,
                            cookies: languages
                                .iter()
                                .map(|l| {
                                    let list = cookies
                                        .iter()
                                        .map(|k| {
                                            let life = crate::notice::period_text(&k.lifetime, l);
                                            format!("{} ({life})", k.name)
                                        })
                                        .collect();
                                    (l.clone(), list)
                                })
                                .collect(),
                        }
                    })
                    .collect();
                let id: &'static str = match c {
                    CookieCategory::Functional => "functional",
                    CookieCategory::Analytics => "analytics",
                    CookieCategory::Targeting => "targeting",
                    CookieCategory::Unknown(_) => "unknown",
                };
                CategoryConfig {
                    id,
                    gpc: gpc_refuses(&c),
                    label: per_lang(&|l| category_words(&c, l).0.to_string()),
                    description: per_lang(&|l| category_words(&c, l).1.to_string()),
                    services,
                }
            })
            .collect();
        BannerConfig {
            revision: reg
                .latest_revision()
                .map(|r| r.id.clone())
                .unwrap_or_default(),
            default_language: reg.notice.default_language.clone(),
            cookie: CookieConfig {
                name: CONSENT_COOKIE,
                max_age: consent_cookie(reg).and_then(|c| period_seconds(&c.lifetime, now)),
            },
            privacy_url: reg.notice.url.clone(),
            categories,
            texts: languages
                .iter()
                .map(|l| (l.clone(), banner_texts(l)))
                .collect(),
            languages,
        }
    }
}

/// One stored consent record, as the receipt and the export show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RecordView {
    pub record_id: String,
    pub consent_id: String,
    /// Unix seconds.
    pub recorded_at: i64,
    pub site: Option<String>,
    pub revision: String,
    pub register_hash: String,
    pub method: String,
    pub source: String,
    pub gpc: bool,
    pub language: Option<String>,
    pub choices: BTreeMap<CookieCategory, Choice>,
    /// When the record will be deleted (unix seconds).
    pub delete_after: i64,
}

fn rfc3339(secs: i64) -> String {
    jiff::Timestamp::from_second(secs)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// The ISO/IEC TS 27560 consent status of a choice: given or refused; a refusal that follows a
/// grant for the same category is a withdrawal.
fn status(granted: bool, previously_granted: bool) -> &'static str {
    match (granted, previously_granted) {
        (true, _) => "given",
        (false, true) => "withdrawn",
        (false, false) => "refused",
    }
}

/// A consent receipt for the records of one consent id (`records` oldest first, not empty).
///
/// The shape follows two specifications, in our own words:
///
/// - **Kantara Initiative Consent Receipt Specification v1.1** (top-level fields, as its
///   "consent receipt fields" table names them): `version`, `jurisdiction`, `consentTimestamp`
///   (seconds since the epoch), `collectionMethod`, `consentReceiptID`, `language`,
///   `piiPrincipalId` (here the random consent id: the receipt identifies no one),
///   `piiControllers` (name, contact, address, e-mail, URL), `policyUrl`, `services` (each with
///   its `purposes`: `purpose`, `purposeCategory`, `consentType`, `piiCategory`,
///   `primaryPurpose`, `termination`, `thirdPartyDisclosure`, `thirdPartyName`), `sensitive` and
///   `spiCat`.
/// - **ISO/IEC TS 27560:2023** consent record structure (under `record`): the record's metadata
///   (schema version, record identifier, PII principal identifier, creation time), the notice
///   presented (here the register revision and its hash), the processing consented to (purposes,
///   legal basis, data categories, recipients, retention), and the consent *events* with their
///   state (`given`, `refused`, `withdrawn`), time, method and source — the whole history,
///   because a change never overwrites a record.
pub fn receipt(reg: &Register, records: &[RecordView]) -> Value {
    let latest = records.last().expect("a receipt needs at least one record");
    let lang = latest
        .language
        .clone()
        .unwrap_or_else(|| reg.notice.default_language.clone());
    let c = &reg.controller;

    // Current state per category: the latest record that answered it.
    let mut current: BTreeMap<CookieCategory, (&Choice, &RecordView)> = BTreeMap::new();
    for r in records {
        for (cat, choice) in &r.choices {
            current.insert(cat.clone(), (choice, r));
        }
    }

    let mut services_out = Vec::new();
    for (cat, (choice, _)) in &current {
        for s in services(reg, cat) {
            let purposes: Vec<Value> = s
                .purposes
                .iter()
                .filter_map(|id| reg.purpose(id))
                .map(|p| {
                    let recipients: Vec<&str> = p
                        .recipients
                        .iter()
                        .filter_map(|r| reg.recipient(r))
                        .map(|r| r.name.as_str())
                        .collect();
                    json!({
                        "purpose": p.label.get(&lang),
                        "purposeId": p.id,
                        "purposeCategory": [cat.as_str()],
                        "consentType": "EXPLICIT",
                        "piiCategory": p.categories.iter()
                            .filter_map(|x| reg.category(x))
                            .map(|x| x.label.get(&lang))
                            .collect::<Vec<_>>(),
                        "primaryPurpose": p.consent_category.as_ref() == Some(cat)
                            || p.legal_basis == LegalBasis::Consent,
                        "termination": termination(p, &lang),
                        "thirdPartyDisclosure": !recipients.is_empty(),
                        "thirdPartyName": recipients.join(", "),
                    })
                })
                .collect();
            services_out.push(json!({
                "service": s.name.get(&lang),
                "serviceId": s.id,
                "category": cat.as_str(),
                "granted": choice.services.get(&s.id).copied().unwrap_or(choice.granted),
                "purposes": purposes,
            }));
        }
    }

    let mut events = Vec::new();
    let mut granted_before: BTreeMap<CookieCategory, bool> = BTreeMap::new();
    for r in records {
        let states: Map<String, Value> = r
            .choices
            .iter()
            .map(|(cat, ch)| {
                let before = granted_before.get(cat).copied().unwrap_or(false);
                (
                    cat.as_str().to_string(),
                    json!({
                        "state": status(ch.granted, before),
                        "services": ch.services,
                    }),
                )
            })
            .collect();
        for (cat, ch) in &r.choices {
            granted_before.insert(cat.clone(), ch.granted);
        }
        events.push(json!({
            "record_id": r.record_id,
            "event_time": rfc3339(r.recorded_at),
            "event_type": if records.first().map(|f| &f.record_id) == Some(&r.record_id) { "given" } else { "modified" },
            "method": r.method,
            "source": r.source,
            "gpc": r.gpc,
            "site": r.site,
            "notice": {"revision": r.revision, "register_hash": r.register_hash},
            "states": states,
            "delete_after": rfc3339(r.delete_after),
        }));
    }

    let record_rule = record_purpose(reg);
    json!({
        "version": "KI-CR-v1.1.0",
        "jurisdiction": "EU (GDPR)",
        "consentTimestamp": latest.recorded_at,
        "collectionMethod": latest.method,
        "consentReceiptID": latest.record_id,
        "language": lang,
        "piiPrincipalId": latest.consent_id,
        "piiControllers": [{
            "piiController": c.name,
            "contact": c.dpo.name.clone().unwrap_or_else(|| "DPO".into()),
            "address": c.postal_address,
            "email": c.dpo.email,
            "piiControllerUrl": c.website,
        }],
        "policyUrl": reg.notice.url,
        "services": services_out,
        "sensitive": false,
        "spiCat": [],
        "record": {
            "schema_version": "ISO/IEC TS 27560:2023",
            "record_id": latest.record_id,
            "pii_principal_id": latest.consent_id,
            "pii_principal_note": "a random identifier that identifies no one; keep this receipt to show which choices you made",
            "created": rfc3339(records[0].recorded_at),
            "current_state": current.iter().map(|(cat, (ch, r))| {
                let state = if ch.granted { "given" } else if records.iter().any(|x| x.record_id != r.record_id && x.recorded_at <= r.recorded_at && x.choices.get(cat).is_some_and(|c| c.granted)) { "withdrawn" } else { "refused" };
                (cat.as_str().to_string(), json!({"state": state, "since": rfc3339(r.recorded_at)}))
            }).collect::<Map<String, Value>>(),
            "events": events,
            "record_keeping": record_rule.map(|(p, rule)| json!({
                "purpose": p.label.get(&lang),
                "legal_basis": p.legal_basis.article(),
                "kept": rule.keep.as_ref().map(|k| k.canonical()),
                "from": rule.from.as_str(),
            })),
        },
    })
}

/// When consent for a purpose ends, in words: the person can withdraw at any time; the data is
/// kept as the purpose's default retention rule says.
fn termination(p: &Purpose, lang: &str) -> String {
    let rule = p
        .retention
        .iter()
        .find(|r| r.categories.is_empty())
        .or(p.retention.first());
    let kept = rule.map(|r| crate::notice::retention_text(r, &p.legal_basis, lang));
    match (lang, kept) {
        ("fr", Some(k)) => format!("Retrait possible à tout moment. {k}"),
        ("fr", None) => "Retrait possible à tout moment".to_string(),
        (_, Some(k)) => format!("Withdraw at any time. {k}"),
        (_, None) => "Withdraw at any time".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EXAMPLE_REGISTER;

    fn example() -> Register {
        crate::load(EXAMPLE_REGISTER, "example").unwrap()
    }

    #[test]
    fn banner_asks_about_the_example_categories_without_the_consent_cookie() {
        let reg = example();
        assert_eq!(
            banner_categories(&reg),
            [
                CookieCategory::Functional,
                CookieCategory::Analytics,
                CookieCategory::Targeting
            ]
        );
        let targeting: Vec<String> = services(&reg, &CookieCategory::Targeting)
            .into_iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(targeting, ["meta", "linkedin"]);
        let functional: Vec<String> = services(&reg, &CookieCategory::Functional)
            .into_iter()
            .map(|s| s.id)
            .collect();
        // The consent cookie is not a service the person chooses.
        assert_eq!(functional, ["parlo"]);
        let analytics = services(&reg, &CookieCategory::Analytics);
        assert_eq!(analytics[0].id, "audience_statistics");
        assert_eq!(analytics[0].cookies, ["_pk_id", "_pk_ses"]);

        // A register whose only functional cookie is the consent cookie asks nothing about it.
        let mut reg = example();
        for p in &mut reg.purposes {
            p.cookies
                .retain(|c| c.category != CookieCategory::Functional || c.name == CONSENT_COOKIE);
        }
        assert!(!banner_categories(&reg).contains(&CookieCategory::Functional));
    }

    #[test]
    fn config_takes_revision_and_cookie_lifetime_from_the_register() {
        let mut reg = example();
        let now: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let cfg = BannerConfig::new(&reg, now);
        assert_eq!(cfg.revision, reg.latest_revision().unwrap().id);
        // 6 months from 1 January 2026 is 1 July 2026: 181 days.
        assert_eq!(cfg.cookie.max_age, Some(181 * 86_400));
        assert_eq!(cfg.categories.len(), 3);
        assert!(
            cfg.categories
                .iter()
                .find(|c| c.id == "targeting")
                .unwrap()
                .gpc
        );
        assert!(
            !cfg.categories
                .iter()
                .find(|c| c.id == "analytics")
                .unwrap()
                .gpc
        );
        assert!(cfg.texts.contains_key("fr") && cfg.texts.contains_key("en"));
        let ads = &cfg.categories[2].services[0];
        assert_eq!(ads.name["fr"], "Meta Platforms Ireland Limited");
        assert_eq!(ads.cookies["en"], ["_fbp (90 days)"]);
        assert_eq!(ads.cookies["fr"], ["_fbp (90 jours)"]);

        // Change the cookie's lifetime and the latest revision: the config follows.
        for p in &mut reg.purposes {
            for c in &mut p.cookies {
                if c.name == CONSENT_COOKIE {
                    c.lifetime = crate::register::Period::parse("30 days");
                }
            }
        }
        reg.revisions.push(crate::register::Revision {
            id: "2027-1".into(),
            date: "2027-01-01".into(),
            summary: Text::default(),
        });
        let cfg = BannerConfig::new(&reg, now);
        assert_eq!(cfg.cookie.max_age, Some(30 * 86_400));
        assert_eq!(cfg.revision, "2027-1");

        // Without the consent cookie, the choice lasts for the browser session.
        for p in &mut reg.purposes {
            p.cookies.retain(|c| c.name != CONSENT_COOKIE);
        }
        assert_eq!(BannerConfig::new(&reg, now).cookie.max_age, None);
    }

    #[test]
    fn tutela_payload() {
        let reg = example();
        let body = json!({
            "consent_id": "3F2C1E9A-8B7D-4C6E-9F01-23456789ABCD",
            "choices": {"analytics": true, "targeting": {"granted": true, "services": {"linkedin": false}}, "functional": false},
            "method": "banner", "revision": "2026-2", "language": "fr-FR", "site": "https://www.nimbus.example.com/pricing?x=1"
        });
        let s = parse_submission(&reg, &body, None).unwrap();
        assert_eq!(s.source, Source::Tutela);
        assert_eq!(
            s.consent_id.as_deref(),
            Some("3f2c1e9a-8b7d-4c6e-9f01-23456789abcd")
        );
        assert_eq!(s.method, Method::Banner);
        assert_eq!(s.language.as_deref(), Some("fr"));
        assert_eq!(s.site.as_deref(), Some("https://www.nimbus.example.com"));
        let t = &s.choices[&CookieCategory::Targeting];
        assert!(t.granted);
        assert!(t.services["meta"]);
        assert!(!t.services["linkedin"]);
        assert!(!s.choices[&CookieCategory::Functional].services["parlo"]);

        // Withdrawal: every category refused.
        let w = parse_submission(
            &reg,
            &json!({"consent_id": "3f2c1e9a-8b7d-4c6e-9f01-23456789abcd", "withdraw": true}),
            None,
        )
        .unwrap();
        assert_eq!(w.choices.len(), 3);
        assert!(
            w.choices
                .values()
                .all(|c| !c.granted && c.services.values().all(|s| !s))
        );
    }

    #[test]
    fn bad_payloads_get_clear_errors() {
        let reg = example();
        let err = |v: Value| parse_submission(&reg, &v, None).unwrap_err().to_string();
        assert!(err(json!([1])).contains("not a JSON object"));
        assert!(err(json!({"hello": 1})).contains("neither"));
        assert!(
            err(json!({"choices": {"marketing": true}}))
                .contains("unknown cookie category `marketing`")
        );
        assert!(err(json!({"choices": {"analytics": "yes"}})).contains("choices.analytics"));
        assert!(
            err(json!({"choices": {"targeting": {"granted": true, "services": {"tiktok": true}}}}))
                .contains("meta, linkedin")
        );
        assert!(err(json!({"choices": {}})).contains("empty"));
        assert!(
            err(json!({"choices": {"analytics": true}, "consent_id": "1.2.3.4"})).contains("UUID")
        );
        assert!(
            err(json!({"choices": {"analytics": true}, "revision": "1999"}))
                .contains("unknown register revision")
        );
        assert!(
            err(json!({"choices": {"analytics": true}, "method": "magic"}))
                .contains("banner, api or gpc")
        );
        let long = "x".repeat(300);
        assert!(err(json!({"choices": {"analytics": true}, "language": long})).contains("255"));
    }

    #[test]
    fn vanilla_cookieconsent_cookie_as_it_is() {
        let reg = example();
        // The shape of vanilla-cookieconsent 3.1's CookieValue (types/index.d.ts).
        let cookie = json!({
            "categories": ["necessary", "analytics", "targeting"],
            "revision": 0,
            "data": null,
            "consentTimestamp": "2026-11-29T10:00:00.000Z",
            "consentId": "0b6f7c3e-2f7a-4d5e-8c9b-1a2b3c4d5e6f",
            "services": {"necessary": [], "analytics": ["audience_statistics"], "targeting": ["meta"]},
            "lastConsentTimestamp": "2026-11-29T10:00:00.000Z",
            "languageCode": "en",
            "expirationTime": 1_780_000_000_000i64
        });
        for body in [cookie.clone(), json!({"cookie": cookie.clone()})] {
            let s = parse_submission(&reg, &body, None).unwrap();
            assert_eq!(s.source, Source::VanillaCookieconsent);
            assert_eq!(s.method, Method::Banner);
            assert_eq!(
                s.consent_id.as_deref(),
                Some("0b6f7c3e-2f7a-4d5e-8c9b-1a2b3c4d5e6f")
            );
            assert!(!s.choices[&CookieCategory::Functional].granted);
            assert!(s.choices[&CookieCategory::Analytics].granted);
            let t = &s.choices[&CookieCategory::Targeting];
            assert!(t.granted && t.services["meta"] && !t.services["linkedin"]);
        }
        let mut bad = cookie;
        bad["categories"] = json!(["ads"]);
        assert!(
            parse_submission(&reg, &bad, None)
                .unwrap_err()
                .to_string()
                .contains("`ads`")
        );
    }

    #[test]
    fn klaro_save_consents_as_it_is() {
        let reg = example();
        let data = json!({
            "changes": {"meta": true},
            "consents": {"parlo": true, "audience_statistics": false, "meta": true, "linkedin": false},
            "type": "save"
        });
        let s = parse_submission(&reg, &data, None).unwrap();
        assert_eq!(s.source, Source::Klaro);
        assert_eq!(s.method, Method::Banner);
        assert!(s.choices[&CookieCategory::Functional].granted);
        assert!(!s.choices[&CookieCategory::Analytics].granted);
        let t = &s.choices[&CookieCategory::Targeting];
        assert!(t.granted && t.services["meta"] && !t.services["linkedin"]);
        // Services named after a category work too; unknown names are refused.
        let s = parse_submission(
            &reg,
            &json!({"consents": {"analytics": true}, "type": "accept"}),
            None,
        )
        .unwrap();
        assert!(s.choices[&CookieCategory::Analytics].granted);
        let e = parse_submission(
            &reg,
            &json!({"consents": {"googleAnalytics": true}, "type": "accept"}),
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("googleAnalytics"), "{e}");
        let s = parse_submission(
            &reg,
            &json!({"consents": {"analytics": true}, "type": "script"}),
            Some(Source::Klaro),
        )
        .unwrap();
        assert_eq!(s.method, Method::Api);
    }

    #[test]
    fn gpc_refuses_targeting_unless_a_person_grants_it() {
        let reg = example();
        // An automatic record under GPC: targeting refused, method gpc.
        let mut s = parse_submission(
            &reg,
            &json!({"choices": {"analytics": true}, "method": "api"}),
            None,
        )
        .unwrap();
        s.gpc = true;
        s.apply_gpc(&reg);
        assert_eq!(s.method, Method::Gpc);
        assert!(!s.choices[&CookieCategory::Targeting].granted);
        assert!(s.choices[&CookieCategory::Analytics].granted);
        // An API call cannot grant targeting under GPC.
        let mut s = parse_submission(
            &reg,
            &json!({"choices": {"targeting": true}, "method": "api"}),
            None,
        )
        .unwrap();
        s.gpc = true;
        s.apply_gpc(&reg);
        assert_eq!(s.method, Method::Gpc);
        assert!(!s.choices[&CookieCategory::Targeting].granted);
        // A person's explicit grant in the banner is an exception GPC allows.
        let mut s = parse_submission(
            &reg,
            &json!({"choices": {"targeting": true}, "method": "banner"}),
            None,
        )
        .unwrap();
        s.gpc = true;
        s.apply_gpc(&reg);
        assert_eq!(s.method, Method::Banner);
        assert!(s.choices[&CookieCategory::Targeting].granted);
        // Already refused: nothing changes, the method stays.
        let mut s = parse_submission(
            &reg,
            &json!({"choices": {"targeting": false}, "method": "banner"}),
            None,
        )
        .unwrap();
        s.gpc = true;
        s.apply_gpc(&reg);
        assert_eq!(s.method, Method::Banner);
    }

    fn view(id: &str, at: i64, choices: &[(CookieCategory, bool)]) -> RecordView {
        RecordView {
            record_id: id.into(),
            consent_id: "3f2c1e9a-8b7d-4c6e-9f01-23456789abcd".into(),
            recorded_at: at,
            site: Some("https://www.nimbus.example.com".into()),
            revision: "2026-3".into(),
            register_hash: "abc".into(),
            method: "banner".into(),
            source: "tutela".into(),
            gpc: false,
            language: Some("en".into()),
            choices: choices
                .iter()
                .map(|(c, g)| {
                    (
                        c.clone(),
                        Choice {
                            granted: *g,
                            services: BTreeMap::new(),
                        },
                    )
                })
                .collect(),
            delete_after: at + 100,
        }
    }

    #[test]
    fn receipt_has_kantara_and_27560_fields_and_the_history() {
        let reg = example();
        let records = [
            view(
                "r1",
                1_780_000_000,
                &[
                    (CookieCategory::Analytics, true),
                    (CookieCategory::Targeting, false),
                ],
            ),
            view("r2", 1_780_000_100, &[(CookieCategory::Analytics, false)]),
        ];
        let r = receipt(&reg, &records);
        for k in [
            "version",
            "jurisdiction",
            "consentTimestamp",
            "collectionMethod",
            "consentReceiptID",
            "language",
            "piiPrincipalId",
            "piiControllers",
            "policyUrl",
            "services",
            "sensitive",
            "spiCat",
        ] {
            assert!(r.get(k).is_some(), "missing {k}");
        }
        assert_eq!(r["consentReceiptID"], "r2");
        assert_eq!(r["piiControllers"][0]["piiController"], reg.controller.name);
        assert_eq!(
            r["record"]["current_state"]["analytics"]["state"],
            "withdrawn"
        );
        assert_eq!(
            r["record"]["current_state"]["targeting"]["state"],
            "refused"
        );
        let events = r["record"]["events"].as_array().unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[1]["states"]["analytics"]["state"], "withdrawn");
        assert_eq!(r["record"]["record_keeping"]["kept"], "5 years");
        let ads = r["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["serviceId"] == "meta")
            .unwrap();
        assert_eq!(ads["purposes"][0]["thirdPartyDisclosure"], true);
        assert_eq!(ads["granted"], false);
    }

    #[test]
    fn origins_and_uuids() {
        assert_eq!(
            normalise_origin("HTTPS://Www.Example.com:8443/a/b"),
            Some("https://www.example.com:8443".into())
        );
        assert_eq!(normalise_origin("javascript:alert(1)"), None);
        assert_eq!(normalise_origin("https://user@evil"), None);
        assert!(is_uuid("3f2c1e9a-8b7d-4c6e-9f01-23456789abcd"));
        assert!(!is_uuid("3f2c1e9a8b7d4c6e9f0123456789abcd"));
    }
}
