//! Analytics honours consent: when the register gives the analytics purpose the consent basis
//! (GDPR art. 6(1)(a)), the collector stores a hit only if it carries a consent id
//! (`tutela_consent=<uuid>`) whose latest record grants the `analytics` category. The id is
//! parsed with the hit's other parameters (`RawHit::consent_id`: the last value wins, the body's
//! over the query string's), in the one pass over a bulk body.
//!
//! Hits without that are answered as Matomo answers an excluded visitor (204, or the GIF) and
//! nothing is stored; they are counted in `tutela_analytics_hits_total{outcome="no_consent"}` and,
//! for bulk requests, in the answer's `no_consent` figure.
//!
//! The hit path must stay fast (tens of thousands of hits a second), so the answer per consent id
//! is kept in a bounded in-memory cache:
//! * the consent writer puts every committed record's analytics answer in the cache, so a grant
//!   or a withdrawal made through this server takes effect for the very next hit;
//! * an id the cache does not hold is looked up once in the store (at most
//!   [`MAX_CONCURRENT_LOOKUPS`] lookups at a time; beyond that the hit is not stored: the gate
//!   fails closed), and the answer (granted, refused or unknown) is cached;
//! * entries expire after [`ENTRY_TTL`], so records written by another Tutela instance sharing
//!   the database, or deleted by the retention purge, are seen within that time.
//!
//! The cache holds only random consent ids and one bit each: no personal data.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tutela_domain::Register;
use tutela_domain::register::LegalBasis;
use tutela_store::{ConsentCategory, Store};

/// How long a cached answer is trusted before the store is asked again.
pub const ENTRY_TTL: Duration = Duration::from_secs(300);
/// Most consent ids kept (two generations of half this size).
pub const MAX_ENTRIES: usize = 200_000;
/// Most store lookups running at once for ids the cache does not hold.
pub const MAX_CONCURRENT_LOOKUPS: usize = 64;

#[derive(Clone, Copy)]
struct Entry {
    granted: bool,
    at: Instant,
}

/// Two generations: when `current` is full it becomes `previous` and the oldest generation is
/// dropped. A hit in `previous` is promoted. Bounded, O(1), no per-entry bookkeeping.
#[derive(Default)]
struct Generations {
    current: HashMap<u128, Entry>,
    previous: HashMap<u128, Entry>,
}

impl Generations {
    fn get(&mut self, key: u128, now: Instant) -> Option<bool> {
        if let Some(e) = self.current.get(&key) {
            return (now.duration_since(e.at) < ENTRY_TTL).then_some(e.granted);
        }
        let e = self.previous.remove(&key)?;
        if now.duration_since(e.at) >= ENTRY_TTL {
            return None;
        }
        self.put(key, e);
        Some(e.granted)
    }

    fn put(&mut self, key: u128, e: Entry) {
        if self.current.len() >= MAX_ENTRIES / 2 && !self.current.contains_key(&key) {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(key, e);
    }
}

/// The consent gate of the analytics collector (see the module documentation).
pub struct AnalyticsGate {
    required: bool,
    cache: Mutex<Generations>,
    lookups: Semaphore,
}

impl std::fmt::Debug for AnalyticsGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnalyticsGate")
            .field("required", &self.required)
            .finish_non_exhaustive()
    }
}

/// A consent id as a number: 32 hex digits with the four hyphens of a UUID. None otherwise.
pub fn parse_id(id: &str) -> Option<u128> {
    let b = id.as_bytes();
    if b.len() != 36 || [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
        return None;
    }
    let mut v: u128 = 0;
    for (i, c) in b.iter().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            continue;
        }
        v = (v << 4) | u128::from((*c as char).to_digit(16)?);
    }
    Some(v)
}

/// Whether the register gives `purpose` the consent basis.
pub fn purpose_needs_consent(register: &Register, purpose: Option<&str>) -> bool {
    purpose
        .and_then(|id| register.purpose(id))
        .is_some_and(|p| p.legal_basis == LegalBasis::Consent)
}

impl AnalyticsGate {
    /// `required`: whether the register gives the analytics purpose the consent basis.
    pub fn new(required: bool) -> Self {
        AnalyticsGate {
            required,
            cache: Mutex::new(Generations::default()),
            lookups: Semaphore::new(MAX_CONCURRENT_LOOKUPS),
        }
    }

    /// Whether hits need a consent id that grants analytics.
    pub fn required(&self) -> bool {
        self.required
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Generations> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Called by the consent writer once a record is committed: its analytics answer is the
    /// newest for this consent id. (`None`, a record that does not answer for analytics, leaves
    /// the previous answer in force, as the store does.)
    pub fn recorded(&self, consent_id: &str, analytics: Option<bool>) {
        if !self.required {
            return;
        }
        let (Some(key), Some(granted)) = (parse_id(consent_id), analytics) else {
            return;
        };
        self.cache().put(
            key,
            Entry {
                granted,
                at: Instant::now(),
            },
        );
    }

    /// Whether a hit carrying `consent_id` may be stored.
    pub async fn allows(&self, store: &Store, consent_id: Option<&str>) -> bool {
        if !self.required {
            return true;
        }
        let Some(id) = consent_id else {
            return false;
        };
        // Upper- and lower-case hex digits give the same key: no copy needed for the cache.
        let Some(key) = parse_id(id) else {
            return false;
        };
        let now = Instant::now();
        if let Some(granted) = self.cache().get(key, now) {
            return granted;
        }
        // Not cached: ask the store, a bounded number at a time.
        let Ok(_permit) = self.lookups.try_acquire() else {
            metrics::counter!("tutela_analytics_consent_lookups_total", "outcome" => "busy")
                .increment(1);
            return false;
        };
        let id = id.to_ascii_lowercase();
        let granted = match store.consent_granted(&id, ConsentCategory::Analytics).await {
            Ok(answer) => answer == Some(true),
            Err(e) => {
                tracing::warn!(error = %e, "consent lookup failed; the hit is not stored");
                return false;
            }
        };
        metrics::counter!("tutela_analytics_consent_lookups_total", "outcome" => "store")
            .increment(1);
        // A record committed while we were asking wins over what we read.
        let mut cache = self.cache();
        if let Some(newer) = cache.get(key, Instant::now()) {
            return newer;
        }
        cache.put(
            key,
            Entry {
                granted,
                at: Instant::now(),
            },
        );
        granted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_params() {
        let id = "3f2c1e9a-8b7d-4c6e-9f01-23456789abcd";
        assert_eq!(
            parse_id(id),
            Some(0x3f2c1e9a_8b7d_4c6e_9f01_23456789abcd_u128)
        );
        assert_eq!(parse_id("3f2c1e9a8b7d4c6e9f0123456789abcd"), None);
        assert_eq!(parse_id("3f2c1e9a-8b7d-4c6e-9f01-23456789abcg"), None);
        assert_eq!(parse_id(""), None);
        // Bulk bodies: the ids come with the hits from the one parse of the body.
        let body = format!(
            r#"{{"requests": ["?idsite=1&tutela_consent={id}", "?idsite=1", {{"idsite": "1", "tutela_consent": "{id}"}}, 3]}}"#
        );
        let bulk = tutela_analytics::params::parse_bulk(body.as_bytes()).unwrap();
        let ids: Vec<Option<String>> = bulk
            .requests
            .iter()
            .map(|r| {
                r.hit()
                    .and_then(|h| h.consent_id.as_deref().map(str::to_string))
            })
            .collect();
        assert_eq!(
            ids,
            [Some(id), None, Some(id), None].map(|i| i.map(str::to_string))
        );
        // Upper-case hex is the same consent id.
        assert_eq!(parse_id(&id.to_ascii_uppercase()), parse_id(id));
    }

    #[test]
    fn the_cache_is_bounded_and_promotes() {
        let mut g = Generations::default();
        let now = Instant::now();
        let e = Entry {
            granted: true,
            at: now,
        };
        for k in 0..(MAX_ENTRIES as u128 + 10) {
            g.put(k, e);
        }
        assert!(g.current.len() + g.previous.len() <= MAX_ENTRIES);
        // The newest are there; the oldest generation went.
        assert_eq!(g.get(MAX_ENTRIES as u128 + 9, now), Some(true));
        assert_eq!(g.get(0, now), None);
        // Expired entries are not answered.
        assert_eq!(g.get(MAX_ENTRIES as u128 + 9, now + ENTRY_TTL), None);
    }
}
