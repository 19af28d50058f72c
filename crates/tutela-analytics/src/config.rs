//! Sites and analytics settings (`[[sites]]` and `[analytics]` in `tutela.toml`), and the policy
//! read from the register's analytics purpose.

use jiff::tz::TimeZone;
use serde::Deserialize;
use tutela_domain::Register;
use tutela_domain::register::{MinimisationRule, Period, PeriodUnit};

use crate::Error;

/// A site as written in `tutela.toml`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    /// The Matomo `idsite`.
    pub id: i64,
    pub name: String,
    /// Host names hits may come from: `www.example.com`, or `*.example.com` for the domain and
    /// every subdomain.
    pub hosts: Vec<String>,
    /// IANA time zone of the site's reports (days and hours), e.g. `Europe/Paris`.
    #[serde(default = "default_tz")]
    pub timezone: String,
}

fn default_tz() -> String {
    "UTC".to_string()
}

impl SiteConfig {
    /// The site the embedded default serves: `localhost` and `127.0.0.1`.
    pub fn default_sites() -> Vec<SiteConfig> {
        vec![SiteConfig {
            id: 1,
            name: "localhost".into(),
            hosts: vec!["localhost".into(), "127.0.0.1".into(), "[::1]".into()],
            timezone: default_tz(),
        }]
    }
}

/// A configured site, ready to use.
#[derive(Clone, Debug)]
pub struct Site {
    pub id: i64,
    pub name: String,
    pub hosts: Vec<String>,
    pub timezone: String,
    pub tz: TimeZone,
}

impl Site {
    /// Whether a hit from `host` is allowed for this site.
    pub fn allows_host(&self, host: &str) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        self.hosts.iter().any(|h| {
            let h = h.trim_start_matches('[').trim_end_matches(']');
            match h.strip_prefix("*.") {
                Some(domain) => {
                    // The domain itself, or a name that ends with `.domain` (no allocation:
                    // this runs for every hit).
                    host.eq_ignore_ascii_case(domain)
                        || host
                            .len()
                            .checked_sub(domain.len() + 1)
                            .and_then(|dot| host.get(dot..))
                            .is_some_and(|tail| {
                                tail.starts_with('.') && tail[1..].eq_ignore_ascii_case(domain)
                            })
                }
                None => host.eq_ignore_ascii_case(h),
            }
        })
    }
}

/// `[analytics]` settings. Every key is optional.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AnalyticsSettings {
    /// The register purpose analytics runs under (default: the purpose that declares a
    /// `keyed_pseudonym` category and a `url_without_query` category).
    pub purpose: Option<String>,
    /// How long a visitor salt lives before it is destroyed and replaced ("30 days", "1 day",
    /// "12 hours"). Unique visitors are counted per such period.
    pub pseudonym_rotation: String,
    /// Never use the tracker's visitor cookie: every pseudonym is the cookieless one (half IP,
    /// user agent, site) under a daily salt destroyed the next day.
    pub cookieless: bool,
    /// Query parameters kept in page URLs (campaign parameters).
    pub campaign_parameters: Vec<String>,
    /// Do not record hits from browsers that send `DNT: 1`.
    pub honour_dnt: bool,
    /// Do not record hits from browsers that send `Sec-GPC: 1`.
    pub honour_gpc: bool,
    /// Hits waiting for the writer before new ones are refused with 503.
    pub queue_capacity: usize,
    /// Most hits written in one transaction.
    pub max_batch: usize,
    /// `"os"` (default): an acknowledged hit is in the database's write-ahead log, so it survives a
    /// crash or restart of Tutela, but the last second of hits may be lost if the machine itself
    /// loses power. `"power"`: every commit is flushed to disk first (fsync) — several times
    /// slower on most disks. PostgreSQL follows its own `synchronous_commit`.
    pub durability: String,
    /// Take the client address from this header (e.g. `x-forwarded-for`; its last entry, the one
    /// your proxy added) — only when Tutela runs behind a proxy that sets it.
    pub client_ip_header: Option<String>,
}

impl Default for AnalyticsSettings {
    fn default() -> Self {
        AnalyticsSettings {
            purpose: None,
            pseudonym_rotation: "30 days".into(),
            cookieless: false,
            campaign_parameters: [
                "mtm_campaign",
                "mtm_source",
                "mtm_medium",
                "pk_campaign",
                "utm_campaign",
                "utm_source",
                "utm_medium",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            honour_dnt: true,
            honour_gpc: true,
            queue_capacity: 100_000,
            max_batch: 5_000,
            durability: "os".into(),
            client_ip_header: None,
        }
    }
}

impl AnalyticsSettings {
    /// The rotation period in seconds (hours, days or weeks only: a fixed length).
    pub fn rotation_secs(&self) -> Result<i64, Error> {
        match Period::parse(&self.pseudonym_rotation) {
            Period::Fixed { amount, unit } => {
                let unit = match unit {
                    PeriodUnit::Hours => 3_600,
                    PeriodUnit::Days => 86_400,
                    PeriodUnit::Weeks => 7 * 86_400,
                    _ => {
                        return Err(Error::Config(format!(
                            "analytics.pseudonym_rotation {:?}: use hours, days or weeks (a fixed length)",
                            self.pseudonym_rotation
                        )));
                    }
                };
                Ok(i64::from(amount) * unit)
            }
            Period::Invalid(s) => Err(Error::Config(format!(
                "analytics.pseudonym_rotation {s:?} is not a duration such as \"30 days\""
            ))),
        }
    }
}

impl AnalyticsSettings {
    /// Whether commits are flushed to disk (`durability = "power"`).
    pub fn full_sync(&self) -> Result<bool, Error> {
        match self.durability.as_str() {
            "os" => Ok(false),
            "power" => Ok(true),
            other => Err(Error::Config(format!(
                "analytics.durability {other:?}: use \"os\" or \"power\""
            ))),
        }
    }
}

/// What the register's analytics purpose allows to be stored, and for how long.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub purpose_id: String,
    /// The shortest retention of the purpose's categories.
    pub retention: Period,
    /// `ip_half` declared: keep the first half of the address.
    pub keep_ip: bool,
    /// `user_agent_summary` declared: keep browser, OS, device type and resolution.
    pub keep_device: bool,
    /// `url_without_query` declared: keep page URLs, titles and event names (else only the
    /// action type).
    pub keep_url: bool,
    /// `keyed_pseudonym` declared: keep the pseudonym (else each hit is a visit of its own).
    pub keep_pseudonym: bool,
    /// A category whose id starts with `referrer` declared: keep the referrer (minimised).
    pub keep_referrer: bool,
}

impl Policy {
    /// Reads the analytics purpose from the register: the named one, or the first purpose that
    /// declares both a `keyed_pseudonym` and a `url_without_query` category.
    pub fn from_register(register: &Register, purpose: Option<&str>) -> Result<Policy, Error> {
        let rules_of =
            |p: &tutela_domain::register::Purpose| -> Vec<(String, Option<MinimisationRule>)> {
                p.categories
                    .iter()
                    .map(|c| {
                        (
                            c.clone(),
                            register.category(c).and_then(|c| c.minimise.clone()),
                        )
                    })
                    .collect()
            };
        let purpose = match purpose {
            Some(id) => register.purpose(id).ok_or_else(|| {
                Error::Config(format!("analytics.purpose {id:?} is not a purpose of the register"))
            })?,
            None => register
                .purposes
                .iter()
                .find(|p| {
                    let rules = rules_of(p);
                    rules.iter().any(|(_, r)| r == &Some(MinimisationRule::KeyedPseudonym))
                        && rules.iter().any(|(_, r)| r == &Some(MinimisationRule::UrlWithoutQuery))
                })
                .ok_or_else(|| {
                    Error::Config(
                        "the register declares no analytics purpose (one with a keyed_pseudonym and a url_without_query category)".into(),
                    )
                })?,
        };
        let rules = rules_of(purpose);
        let has = |rule: MinimisationRule| rules.iter().any(|(_, r)| r.as_ref() == Some(&rule));
        let now = jiff::Timestamp::now();
        let mut shortest: Option<(jiff::Timestamp, Period)> = None;
        for c in &purpose.categories {
            let rule = purpose.retention_for(c).ok_or_else(|| {
                Error::Config(format!(
                    "purpose {} has no retention rule for {c}",
                    purpose.id
                ))
            })?;
            let period = rule.keep.clone().ok_or_else(|| {
                Error::Config(format!(
                    "purpose {}: the retention of {c} has no duration",
                    purpose.id
                ))
            })?;
            let until = tutela_domain::retention::add_period(now, &period)
                .map_err(|e| Error::Config(format!("purpose {}: {e}", purpose.id)))?;
            if shortest.as_ref().is_none_or(|(t, _)| until < *t) {
                shortest = Some((until, period));
            }
        }
        let retention = shortest
            .map(|(_, p)| p)
            .ok_or_else(|| Error::Config(format!("purpose {} declares no category", purpose.id)))?;
        Ok(Policy {
            purpose_id: purpose.id.clone(),
            retention,
            keep_ip: has(MinimisationRule::IpHalf),
            keep_device: has(MinimisationRule::UserAgentSummary),
            keep_url: has(MinimisationRule::UrlWithoutQuery),
            keep_pseudonym: has(MinimisationRule::KeyedPseudonym),
            keep_referrer: purpose.categories.iter().any(|c| c.starts_with("referrer")),
        })
    }
}

/// Checks and prepares the configured sites.
pub fn sites(configs: &[SiteConfig]) -> Result<Vec<Site>, Error> {
    let mut out: Vec<Site> = Vec::with_capacity(configs.len());
    for c in configs {
        if c.id <= 0 {
            return Err(Error::Config(format!(
                "site {:?}: id must be a positive integer",
                c.name
            )));
        }
        if out.iter().any(|s| s.id == c.id) {
            return Err(Error::Config(format!("two sites have the id {}", c.id)));
        }
        if c.hosts.is_empty() {
            return Err(Error::Config(format!(
                "site {} ({}) allows no host: list them in hosts = [\"www.example.com\"]",
                c.id, c.name
            )));
        }
        let tz = TimeZone::get(&c.timezone).map_err(|_| {
            Error::Config(format!(
                "site {} ({}): unknown time zone {:?}; use an IANA name such as \"Europe/Paris\"",
                c.id, c.name, c.timezone
            ))
        })?;
        out.push(Site {
            id: c.id,
            name: c.name.clone(),
            hosts: c.hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
            timezone: c.timezone.clone(),
            tz,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn register() -> Register {
        tutela_domain::load(tutela_domain::EXAMPLE_REGISTER, "example").unwrap()
    }

    #[test]
    fn policy_comes_from_the_register() {
        let mut reg = register();
        let p = Policy::from_register(&reg, None).unwrap();
        assert_eq!(p.purpose_id, "audience_statistics");
        assert_eq!(p.retention.canonical(), "180 days");
        assert!(p.keep_ip && p.keep_device && p.keep_url && p.keep_pseudonym && !p.keep_referrer);

        // A shorter retention and a dropped category change the policy.
        let purpose = reg
            .purposes
            .iter_mut()
            .find(|p| p.id == "audience_statistics")
            .unwrap();
        purpose.retention[0].keep = Some(Period::parse("90 days"));
        purpose.categories.retain(|c| c != "ip_half");
        let p = Policy::from_register(&reg, Some("audience_statistics")).unwrap();
        assert_eq!(p.retention.canonical(), "90 days");
        assert!(!p.keep_ip && p.keep_device);
        assert!(Policy::from_register(&reg, Some("nope")).is_err());
    }

    #[test]
    fn sites_and_hosts() {
        let s = sites(&[SiteConfig {
            id: 7,
            name: "ex".into(),
            hosts: vec!["*.Example.com".into(), "shop.test".into()],
            timezone: "Europe/Paris".into(),
        }])
        .unwrap();
        assert!(s[0].allows_host("example.com") && s[0].allows_host("www.example.com"));
        assert!(!s[0].allows_host("badexample.com") && !s[0].allows_host("evil.test"));
        assert!(s[0].allows_host("SHOP.test"));
        assert!(s[0].allows_host("a.B.Example.COM") && !s[0].allows_host(".example.com.x"));
        let bad_tz = SiteConfig {
            id: 1,
            name: "x".into(),
            hosts: vec!["a".into()],
            timezone: "Mars/Olympus".into(),
        };
        assert!(
            sites(std::slice::from_ref(&bad_tz))
                .unwrap_err()
                .to_string()
                .contains("time zone")
        );
        let dup = SiteConfig {
            timezone: "UTC".into(),
            ..bad_tz
        };
        assert!(sites(&[dup.clone(), dup]).is_err());
        assert!(SiteConfig::default_sites().len() == 1);
        let d = AnalyticsSettings::default();
        assert_eq!(d.rotation_secs().unwrap(), 30 * 86_400);
        let m = AnalyticsSettings {
            pseudonym_rotation: "1 month".into(),
            ..d
        };
        assert!(m.rotation_secs().is_err());
    }
}
