//! Tutela's privacy-minimised web analytics.
//!
//! A hit travels: Matomo parameters ([`params`]) → [`Analytics::prepare`], which minimises it at
//! once (half IP, user-agent summary, URL without query, keyed pseudonym — the full address, the
//! raw user agent and the raw cookie value go no further) → [`Analytics::submit`], a bounded
//! queue → one writer task that groups hits into one transaction per flush ([`writer`]) and
//! answers each submitter after the commit. Reports ([`report`]) read rollups, never raw events.

pub mod config;
pub mod hll;
pub mod ip;
pub mod params;
pub mod pseudonym;
pub mod report;
pub mod ua;
pub mod url;
pub mod writer;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::{Semaphore, mpsc, oneshot};
use tutela_domain::Register;
use tutela_domain::register::Period;
use tutela_store::Store;
use tutela_store::analytics::{EventRow, PurgeCounts, kind};

pub use config::{AnalyticsSettings, Policy, Site, SiteConfig};
pub use params::RawHit;
pub use ua::{DeviceSummary, DeviceType};
pub use writer::DirectWriter;

/// Errors of the analytics service. Messages never hold personal data.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("analytics configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Store(#[from] tutela_store::StoreError),
    #[error("random number generator failed: {0}")]
    Rng(getrandom::Error),
}

/// Why a hit is refused (the client gets 400, or it counts as `invalid` in a bulk request).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Reject {
    #[error("idsite is missing or is not a configured site")]
    UnknownSite,
    #[error("the page's host is not allowed for this site")]
    HostNotAllowed,
    #[error("cip and cdt need a token_auth with the analytics:track scope")]
    TokenRequired,
    #[error("cdt is not a valid date")]
    BadDate,
    #[error("cdt is in the future, or older than the analytics retention period")]
    DateOutOfRange,
    #[error("the register declares no analytics purpose")]
    NoPurpose,
}

/// Why a well-formed hit is answered normally but not recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// `rec=1` missing.
    NotRecorded,
    OptedOut,
    DoNotTrack,
    GlobalPrivacyControl,
    Bot,
}

impl Skip {
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::NotRecorded => "not_recorded",
            Skip::OptedOut => "opted_out",
            Skip::DoNotTrack => "dnt",
            Skip::GlobalPrivacyControl => "gpc",
            Skip::Bot => "bot",
        }
    }
}

/// The outcome of preparing one hit.
#[derive(Debug)]
pub enum Prepared {
    Track(Box<MinHit>),
    Skip(Skip),
}

/// A minimised hit: all that is left of a tracking request once [`Analytics::prepare`] ran.
#[derive(Clone, Debug)]
pub struct MinHit {
    pub site_id: i64,
    pub ts: i64,
    pub visitor: i64,
    pub new_visit: bool,
    /// A heartbeat: extends the visit, is no action.
    pub ping: bool,
    pub kind: i16,
    pub url: Option<String>,
    pub title: Option<String>,
    pub ev_category: Option<String>,
    pub ev_action: Option<String>,
    pub ev_name: Option<String>,
    pub ev_value: Option<f64>,
    pub referrer: Option<String>,
    pub ip_prefix: Option<String>,
    pub device: Option<Arc<DeviceSummary>>,
    pub resolution: Option<String>,
}

/// What the HTTP layer knows about the sender of a request.
#[derive(Clone, Debug)]
pub struct Client<'a> {
    /// The connection's address (or the configured proxy header's).
    pub ip: IpAddr,
    pub user_agent: Option<&'a str>,
    pub dnt: bool,
    pub gpc: bool,
    /// The opt-out cookie is set.
    pub opted_out: bool,
}

/// What the hits of one request share, worked out for its first hit and reused for the others
/// (a bulk request carries up to 1,000 hits from one client at one moment): the client's
/// user-agent summary, the half address as text, the current salts, whether anyone opted out.
/// Lives only as long as the request; holds nothing of the full address or the raw user agent.
#[derive(Default)]
pub struct PrepareCache {
    /// The summary of the request's own `User-Agent` header (hits without `ua` and `uadata`).
    client_ua: Option<Arc<DeviceSummary>>,
    /// The last half address and its text.
    half_ip: Option<(IpAddr, String)>,
    /// Salts used so far: `(site, kind, period start, key)`.
    salts: Vec<(i64, &'static str, i64, Arc<pseudonym::PseudonymKey>)>,
    /// Whether the opt-out list was empty when the first hit looked.
    no_optouts: Option<bool>,
}

/// The queue refused or the writer failed.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("the ingestion queue is full; retry shortly")]
    Saturated,
    #[error("the ingestion writer has stopped")]
    Closed,
    #[error("the hits could not be written: {0}")]
    Store(String),
}

struct Job {
    hits: Vec<MinHit>,
    ack: oneshot::Sender<Result<(), String>>,
    permit: QueuePermit,
}

/// The queue places a job holds until the writer is done with it; giving them back (when the
/// writer acknowledges the job, or when the job is refused) updates the
/// `tutela_analytics_queue_depth` gauge, so it falls back to 0 when the writer is idle.
pub(crate) struct QueuePermit {
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    permits: Arc<Semaphore>,
    capacity: usize,
}

impl Drop for QueuePermit {
    fn drop(&mut self) {
        drop(self.permit.take());
        let depth = self
            .capacity
            .saturating_sub(self.permits.available_permits());
        metrics::gauge!("tutela_analytics_queue_depth").set(depth as f64);
    }
}

/// How far in the future a trusted `cdt` may be (clock drift between the sender and us).
pub const CDT_MAX_AHEAD_SECS: i64 = 300;

/// Salt kinds.
const SALT_VISITOR: &str = "visitor";
const SALT_DAILY: &str = "daily";
/// The salt of the opt-out keys: one per site, never rotated (period 0).
const SALT_OPTOUT: &str = "optout";
/// How often a node reloads the opt-outs other nodes recorded (seconds).
const OPTOUT_REFRESH_SECS: i64 = 60;

/// Visitors who objected or withdrew consent through a rights request: `(site, key)`, where the
/// key is a keyed hash of the visitor id under the site's opt-out salt.
#[derive(Default)]
struct OptOuts {
    loaded_at: Option<i64>,
    keys: HashSet<(i64, i64)>,
}
const DAY: i64 = 86_400;

/// Current salt per (site, kind): (period start, the salt's keyed HMAC state).
type SaltCache = HashMap<(i64, &'static str), (i64, Arc<pseudonym::PseudonymKey>)>;

/// The analytics service shared by the HTTP handlers and the periodic jobs.
pub struct Analytics {
    pub settings: AnalyticsSettings,
    pub policy: Option<Policy>,
    sites: Vec<Site>,
    store: Store,
    ua: ua::UaCache,
    rotation_secs: i64,
    salts: Mutex<SaltCache>,
    queue: mpsc::Sender<Job>,
    permits: Arc<Semaphore>,
    optouts: RwLock<OptOuts>,
    /// Without an analytics purpose in the register: the retention of the most recent stored
    /// register version that had one (None: no version had one), looked up once.
    stored_retention: tokio::sync::OnceCell<Option<(String, Period)>>,
}

impl std::fmt::Debug for Analytics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Analytics")
            .field("sites", &self.sites.len())
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Analytics {
    /// Starts the service and its writer task (call inside a Tokio runtime). A register without an
    /// analytics purpose gives a service that refuses every hit with [`Reject::NoPurpose`].
    pub fn start(
        settings: AnalyticsSettings,
        sites: &[SiteConfig],
        register: &Register,
        store: Store,
    ) -> Result<Arc<Analytics>, Error> {
        let sites = config::sites(sites)?;
        let rotation_secs = settings.rotation_secs()?;
        store.set_analytics_full_sync(settings.full_sync()?);
        let policy = match Policy::from_register(register, settings.purpose.as_deref()) {
            Ok(p) => Some(p),
            Err(e) if settings.purpose.is_none() => {
                tracing::warn!(reason = %e, "web analytics disabled");
                None
            }
            Err(e) => return Err(e),
        };
        if settings.queue_capacity < params::MAX_BULK_REQUESTS {
            // A bulk request is queued whole (its answer says how many of its hits were
            // tracked, all or none): one larger than the queue would get 503 forever.
            return Err(Error::Config(format!(
                "analytics.queue_capacity = {} is smaller than the largest bulk request ({} hits): \
                 such a request could never be queued; set it to at least {}",
                settings.queue_capacity,
                params::MAX_BULK_REQUESTS,
                params::MAX_BULK_REQUESTS
            )));
        }
        let capacity = settings.queue_capacity;
        let (tx, rx) = mpsc::channel(capacity);
        let analytics = Arc::new(Analytics {
            policy,
            sites,
            store: store.clone(),
            ua: ua::UaCache::default(),
            rotation_secs,
            salts: Mutex::new(HashMap::new()),
            queue: tx,
            permits: Arc::new(Semaphore::new(capacity)),
            optouts: RwLock::new(OptOuts::default()),
            stored_retention: tokio::sync::OnceCell::new(),
            settings,
        });
        let tz: HashMap<i64, jiff::tz::TimeZone> = analytics
            .sites
            .iter()
            .map(|s| (s.id, s.tz.clone()))
            .collect();
        // With an fsync per commit, waiting up to 1 ms for more hits pays; without, a few yields.
        let linger = if analytics.settings.full_sync()? {
            std::time::Duration::from_millis(1)
        } else {
            std::time::Duration::ZERO
        };
        tokio::spawn(writer::run(
            store,
            rx,
            tz,
            analytics.settings.max_batch.max(1),
            linger,
        ));
        Ok(analytics)
    }

    pub fn sites(&self) -> &[Site] {
        &self.sites
    }

    pub fn site(&self, id: i64) -> Option<&Site> {
        self.sites.iter().find(|s| s.id == id)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Hits waiting for the writer.
    pub fn queue_depth(&self) -> usize {
        self.settings
            .queue_capacity
            .saturating_sub(self.permits.available_permits())
    }

    /// Takes `n` places of the queue as if hits were waiting (tests of saturation: the queue
    /// cannot be made smaller than the largest bulk request).
    #[doc(hidden)]
    pub fn occupy_queue(&self, n: u32) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.permits.clone().try_acquire_many_owned(n).ok()
    }

    /// Minimises one hit. This is the only function that sees the full client address, the raw
    /// user agent and the raw visitor id or user id; it returns none of them.
    pub async fn prepare(
        &self,
        raw: &RawHit<'_>,
        client: &Client<'_>,
        trusted: bool,
        now: jiff::Timestamp,
    ) -> Result<Prepared, Reject> {
        self.prepare_with(&mut PrepareCache::default(), raw, client, trusted, now)
            .await
    }

    /// [`Analytics::prepare`] for one of several hits of the same request (same `client`, same
    /// `now`): what they share is computed once, in `cache`. Gives exactly the hit `prepare`
    /// gives.
    pub async fn prepare_with(
        &self,
        cache: &mut PrepareCache,
        raw: &RawHit<'_>,
        client: &Client<'_>,
        trusted: bool,
        now: jiff::Timestamp,
    ) -> Result<Prepared, Reject> {
        let policy = self.policy.as_ref().ok_or(Reject::NoPurpose)?;
        let site = raw
            .idsite
            .as_deref()
            .and_then(|s| s.parse::<i64>().ok())
            .and_then(|id| self.site(id))
            .ok_or(Reject::UnknownSite)?;
        if raw.needs_token() && !trusted {
            return Err(Reject::TokenRequired);
        }
        let host_ok = raw
            .url
            .as_deref()
            .and_then(url::host)
            .is_some_and(|h| site.allows_host(&h));
        if !host_ok {
            return Err(Reject::HostNotAllowed);
        }
        let ts = match raw.cdt.as_deref() {
            Some(cdt) => {
                let ts = parse_cdt(cdt).ok_or(Reject::BadDate)?;
                // Neither in the future (beyond clock drift) nor already past retention: such
                // a hit would escape the retention job, or be purged at once.
                if ts > now.as_second() + CDT_MAX_AHEAD_SECS
                    || ts < retention_cutoff(now, &policy.retention).ok_or(Reject::BadDate)?
                {
                    return Err(Reject::DateOutOfRange);
                }
                ts
            }
            None => now.as_second(),
        };
        if !raw.rec {
            return Ok(Prepared::Skip(Skip::NotRecorded));
        }
        if client.opted_out {
            return Ok(Prepared::Skip(Skip::OptedOut));
        }
        if client.dnt && self.settings.honour_dnt {
            return Ok(Prepared::Skip(Skip::DoNotTrack));
        }
        if client.gpc && self.settings.honour_gpc {
            return Ok(Prepared::Skip(Skip::GlobalPrivacyControl));
        }
        // An objection or a consent withdrawal made through a rights request, whatever the
        // browser says (costs nothing while nobody has objected).
        if let Some(id) = raw
            .visitor_id
            .as_deref()
            .filter(|id| pseudonym::is_visitor_id(id))
        {
            let none = match cache.no_optouts {
                Some(none) => none,
                None => {
                    let none = self.no_optouts(now.as_second()).await.map_err(|e| {
                        tracing::error!(error = %e, "cannot read the analytics opt-outs");
                        Reject::NoPurpose
                    })?;
                    cache.no_optouts = Some(none);
                    none
                }
            };
            if !none
                && self
                    .visitor_opted_out(site.id, id, now.as_second())
                    .await
                    .map_err(|e| {
                        tracing::error!(error = %e, "cannot read the analytics opt-outs");
                        Reject::NoPurpose
                    })?
            {
                return Ok(Prepared::Skip(Skip::OptedOut));
            }
        }

        // The address: the trusted override or the connection's, halved before anything else.
        let full_ip = raw
            .cip
            .as_deref()
            .filter(|_| trusted)
            .and_then(|c| c.trim().parse::<IpAddr>().ok())
            .unwrap_or(client.ip);
        let half = ip::ip_half(full_ip);

        let ua_string = raw.ua.as_deref().or(client.user_agent).unwrap_or("");
        let summary = if raw.ua.is_none() && raw.uadata.is_none() {
            // The request's own user agent, the same for all its hits.
            cache
                .client_ua
                .get_or_insert_with(|| self.ua.summarise(ua_string, None))
                .clone()
        } else {
            let hints = raw.uadata.as_deref().and_then(ua::ClientHints::parse);
            self.ua.summarise(ua_string, hints.as_ref())
        };
        if summary.device == DeviceType::Bot && !raw.bots {
            return Ok(Prepared::Skip(Skip::Bot));
        }

        // The pseudonym: user id, else the tracker's visitor id, else cookieless.
        let visitor = if !policy.keep_pseudonym {
            // No pseudonym declared: every hit is a visitor of its own, linked to nothing.
            let mut b = [0u8; 8];
            getrandom::fill(&mut b).map_err(|_| Reject::NoPurpose)?;
            i64::from_be_bytes(b)
        } else if let Some(uid) = raw.uid.as_deref().filter(|_| !self.settings.cookieless) {
            let key = self
                .cached_salt(cache, site.id, SALT_VISITOR, now.as_second())
                .await?;
            key.pseudonym(site.id, pseudonym::Source::UserId, &[uid.as_bytes()])
        } else if let Some(id) = raw
            .visitor_id
            .as_deref()
            .filter(|id| pseudonym::is_visitor_id(id) && !self.settings.cookieless)
        {
            let key = self
                .cached_salt(cache, site.id, SALT_VISITOR, now.as_second())
                .await?;
            key.pseudonym(
                site.id,
                pseudonym::Source::Cookie,
                &[&*visitor_id_lower(id)],
            )
        } else {
            let key = self
                .cached_salt(cache, site.id, SALT_DAILY, now.as_second())
                .await?;
            key.pseudonym(
                site.id,
                pseudonym::Source::Cookieless,
                &[half_text(cache, half).as_bytes(), ua_string.as_bytes()],
            )
        };

        let keep = &self.settings.campaign_parameters;
        let min_url = |u: Option<&str>| {
            if policy.keep_url {
                u.and_then(|u| url::without_query(u, keep))
            } else {
                None
            }
        };
        let (kind, url) = if let Some(d) = raw.download.as_deref() {
            (kind::DOWNLOAD, min_url(Some(d)))
        } else if let Some(l) = raw.link.as_deref() {
            (kind::OUTLINK, min_url(Some(l)))
        } else if raw.search.is_some() {
            (kind::SEARCH, min_url(raw.url.as_deref()))
        } else if raw.e_c.is_some() || raw.e_a.is_some() {
            (kind::EVENT, min_url(raw.url.as_deref()))
        } else {
            (kind::PAGEVIEW, min_url(raw.url.as_deref()))
        };
        // Titles and event names are the page's or the action's own words: kept only under the
        // category that declares the page or action (`url_without_query`), like the URL.
        let is_event = kind == kind::EVENT && policy.keep_url;
        let device = policy.keep_device.then(|| summary.clone());
        Ok(Prepared::Track(Box::new(MinHit {
            site_id: site.id,
            ts,
            visitor,
            new_visit: raw.new_visit,
            ping: raw.ping,
            kind,
            url,
            title: raw
                .action_name
                .as_deref()
                .filter(|_| policy.keep_url && kind == kind::PAGEVIEW)
                .map(str::to_string),
            ev_category: raw.e_c.as_deref().filter(|_| is_event).map(str::to_string),
            ev_action: raw.e_a.as_deref().filter(|_| is_event).map(str::to_string),
            ev_name: raw.e_n.as_deref().filter(|_| is_event).map(str::to_string),
            ev_value: raw
                .e_v
                .as_deref()
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|v| v.is_finite() && is_event),
            referrer: raw
                .urlref
                .as_deref()
                .filter(|_| policy.keep_referrer)
                .and_then(|r| url::without_query(r, &[])),
            ip_prefix: policy.keep_ip.then(|| half_text(cache, half).to_string()),
            resolution: raw.resolution().filter(|_| policy.keep_device),
            device,
        })))
    }

    /// Queues minimised hits and waits until the writer committed them. Refuses at once with
    /// [`IngestError::Saturated`] when the queue is full: never a silent drop.
    pub async fn submit(&self, hits: Vec<MinHit>) -> Result<usize, IngestError> {
        let n = hits.len();
        if n == 0 {
            return Ok(0);
        }
        let saturated = || {
            metrics::counter!("tutela_analytics_hits_total", "outcome" => "saturated")
                .increment(n as u64);
            IngestError::Saturated
        };
        let permit = u32::try_from(n)
            .ok()
            .and_then(|k| self.permits.clone().try_acquire_many_owned(k).ok())
            .ok_or_else(saturated)?;
        let permit = QueuePermit {
            permit: Some(permit),
            permits: self.permits.clone(),
            capacity: self.settings.queue_capacity,
        };
        let (ack, done) = oneshot::channel();
        self.queue
            .try_send(Job { hits, ack, permit })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => saturated(),
                mpsc::error::TrySendError::Closed(_) => IngestError::Closed,
            })?;
        metrics::gauge!("tutela_analytics_queue_depth").set(self.queue_depth() as f64);
        match done.await {
            Ok(Ok(())) => {
                metrics::counter!("tutela_analytics_hits_total", "outcome" => "tracked")
                    .increment(n as u64);
                Ok(n)
            }
            Ok(Err(e)) => Err(IngestError::Store(e)),
            Err(_) => Err(IngestError::Closed),
        }
    }

    /// [`Analytics::salt`] through the request's cache.
    async fn cached_salt(
        &self,
        cache: &mut PrepareCache,
        site_id: i64,
        kind: &'static str,
        now: i64,
    ) -> Result<Arc<pseudonym::PseudonymKey>, Reject> {
        let period = self.period_start(kind, now);
        if let Some((.., key)) = cache
            .salts
            .iter()
            .find(|(s, k, p, _)| *s == site_id && *k == kind && *p == period)
        {
            return Ok(key.clone());
        }
        let key = self.salt(site_id, kind, now).await?;
        cache.salts.push((site_id, kind, period, key.clone()));
        Ok(key)
    }

    /// The current salt of `(site, kind)`, created (random) when its period starts; the salts of
    /// earlier periods are destroyed at that moment.
    async fn salt(
        &self,
        site_id: i64,
        kind: &'static str,
        now: i64,
    ) -> Result<Arc<pseudonym::PseudonymKey>, Reject> {
        let period = self.period_start(kind, now);
        if let Some((p, salt)) = self.salts.lock().expect("salt lock").get(&(site_id, kind))
            && *p == period
        {
            return Ok(salt.clone());
        }
        let salt = self.rotate(site_id, kind, period).await.map_err(|e| {
            tracing::error!(error = %e, "cannot read or create a pseudonym salt");
            Reject::NoPurpose
        })?;
        Ok(salt)
    }

    fn period_start(&self, kind: &str, now: i64) -> i64 {
        let len = if kind == SALT_DAILY {
            DAY
        } else {
            self.rotation_secs
        };
        now.div_euclid(len) * len
    }

    async fn rotate(
        &self,
        site_id: i64,
        kind: &'static str,
        period: i64,
    ) -> Result<Arc<pseudonym::PseudonymKey>, Error> {
        let fresh = pseudonym::random_salt().map_err(Error::Rng)?;
        let salt = Arc::new(pseudonym::PseudonymKey::new(
            &self
                .store
                .analytics_salt(site_id, kind, period, &fresh)
                .await?,
        ));
        let destroyed = self
            .store
            .analytics_destroy_salts_before(site_id, kind, period)
            .await?;
        if destroyed > 0 {
            tracing::info!(
                site = site_id,
                kind,
                destroyed,
                "destroyed expired pseudonym salts"
            );
        }
        self.salts
            .lock()
            .expect("salt lock")
            .insert((site_id, kind), (period, salt.clone()));
        Ok(salt)
    }

    /// Destroys every salt whose period has ended (run periodically, so salts go on schedule
    /// even when no hit arrives), for every site that has salts in the store — also sites no
    /// longer configured. Returns how many were destroyed.
    pub async fn rotate_salts(&self, now: jiff::Timestamp) -> Result<u64, Error> {
        let mut destroyed = 0;
        for site_id in self.stored_site_ids().await? {
            for kind in [SALT_VISITOR, SALT_DAILY] {
                let period = self.period_start(kind, now.as_second());
                destroyed += self
                    .store
                    .analytics_destroy_salts_before(site_id, kind, period)
                    .await?;
                let mut cache = self.salts.lock().expect("salt lock");
                if cache
                    .get(&(site_id, kind))
                    .is_some_and(|(p, _)| *p < period)
                {
                    cache.remove(&(site_id, kind));
                }
            }
        }
        Ok(destroyed)
    }

    /// The configured sites and every site that still has data or salts in the store.
    async fn stored_site_ids(&self) -> Result<Vec<i64>, Error> {
        let mut ids = self.store.analytics_site_ids().await?;
        ids.extend(self.sites.iter().map(|s| s.id));
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }

    /// The retention that applies to stored events: the register's analytics purpose, or, when
    /// the register has none any more (nothing is collected), the retention of the most recent
    /// stored register version that had one. None when no version ever had one.
    pub async fn effective_retention(&self) -> Result<Option<(String, Period)>, Error> {
        if let Some(p) = &self.policy {
            return Ok(Some((p.purpose_id.clone(), p.retention.clone())));
        }
        let found = self
            .stored_retention
            .get_or_try_init(|| async {
                for v in self.store.register_versions().await? {
                    let Some(content) = self.store.register_version_content(v.id).await? else {
                        continue;
                    };
                    let Ok(register) = serde_json::from_str::<Register>(&content) else {
                        tracing::warn!(
                            version = v.id,
                            "a stored register version cannot be read; skipped"
                        );
                        continue;
                    };
                    if let Ok(p) =
                        Policy::from_register(&register, self.settings.purpose.as_deref())
                    {
                        tracing::warn!(
                            version = v.id,
                            purpose = %p.purpose_id,
                            retention = %p.retention.canonical(),
                            "the register declares no analytics purpose: stored analytics data \
                             is purged with the retention of the last register version that did"
                        );
                        return Ok::<_, Error>(Some((p.purpose_id, p.retention)));
                    }
                }
                tracing::warn!(
                    "the register declares no analytics purpose and no stored register version \
                     ever did: stored analytics data (if any) is kept, since it has no declared \
                     retention; declare the purpose again, or delete the data"
                );
                Ok(None)
            })
            .await?;
        Ok(found.clone())
    }

    /// Retention: deletes, for every site that has data in the store (configured or not), the
    /// whole days whose events are older than the register's retention for the analytics
    /// purpose (see [`Analytics::effective_retention`] when the register has none). Days are
    /// the site's (its time zone), UTC for sites no longer configured. The day that holds the
    /// cut-off instant goes entirely (a few hours early rather than late).
    pub async fn purge_expired(
        &self,
        now: jiff::Timestamp,
    ) -> Result<Vec<(i64, PurgeCounts)>, Error> {
        let Some((_, retention)) = self.effective_retention().await? else {
            return Ok(Vec::new());
        };
        let span = retention
            .span()
            .ok_or_else(|| Error::Config("invalid retention period".into()))?;
        let mut out = Vec::new();
        for site_id in self.stored_site_ids().await? {
            let tz = self
                .site(site_id)
                .map_or(jiff::tz::TimeZone::UTC, |s| s.tz.clone());
            let cutoff = now
                .to_zoned_datetime(tz)
                .checked_sub(span)
                .map_err(|e| Error::Config(format!("retention arithmetic: {e}")))?;
            let last_day = day_number(cutoff.date());
            let counts = self
                .store
                .analytics_purge_through(site_id, last_day)
                .await?;
            if counts.events > 0 || counts.rollup_rows > 0 {
                tracing::info!(
                    site = site_id,
                    configured = self.site(site_id).is_some(),
                    events = counts.events,
                    rollup_rows = counts.rollup_rows,
                    through_day = last_day,
                    "analytics retention purge"
                );
            }
            out.push((site_id, counts));
        }
        Ok(out)
    }

    /// The pseudonym a visitor's tracker cookie value (16 hex characters) has now, for the rights
    /// hooks. Events of earlier pseudonym periods cannot be linked any more: their salt is gone.
    pub async fn pseudonym_of_visitor_id(
        &self,
        site_id: i64,
        visitor_id: &str,
    ) -> Result<Option<i64>, Error> {
        if !pseudonym::is_visitor_id(visitor_id) {
            return Ok(None);
        }
        self.current_pseudonym(
            site_id,
            pseudonym::Source::Cookie,
            &visitor_id_lower(visitor_id),
        )
        .await
    }

    /// The pseudonym `source` = `value` has now on `site_id` (None for an unknown site).
    async fn current_pseudonym(
        &self,
        site_id: i64,
        source: pseudonym::Source,
        value: &[u8],
    ) -> Result<Option<i64>, Error> {
        if self.site(site_id).is_none() {
            return Ok(None);
        }
        let now = jiff::Timestamp::now().as_second();
        let key = self
            .salt(site_id, SALT_VISITOR, now)
            .await
            .map_err(|e| Error::Config(e.to_string()))?;
        Ok(Some(key.pseudonym(site_id, source, &[value])))
    }

    /// The pseudonym of a signed-in visitor's user id (the `uid` their hits carried: with a user
    /// id, hits are counted under it, not under the cookie), for the rights hooks. None in
    /// cookieless mode (user ids are then not used) or for an unknown site.
    pub async fn pseudonym_of_user_id(
        &self,
        site_id: i64,
        user_id: &str,
    ) -> Result<Option<i64>, Error> {
        let Some(uid) = params::user_id(user_id) else {
            return Ok(None);
        };
        if self.settings.cookieless {
            return Ok(None);
        }
        self.current_pseudonym(site_id, pseudonym::Source::UserId, uid.as_bytes())
            .await
    }

    /// Rights hook: every stored event of the signed-in visitor whose user id is `user_id`.
    pub async fn user_events(
        &self,
        site_id: i64,
        user_id: &str,
    ) -> Result<Option<Vec<EventRow>>, Error> {
        let p = self.pseudonym_of_user_id(site_id, user_id).await?;
        self.events_of(site_id, p).await
    }

    /// Rights hook: erases every stored event of that signed-in visitor; returns how many.
    pub async fn erase_user(&self, site_id: i64, user_id: &str) -> Result<Option<u64>, Error> {
        let p = self.pseudonym_of_user_id(site_id, user_id).await?;
        self.erase_of(site_id, p).await
    }

    /// Rights hook: every stored event of the visitor whose cookie value is `visitor_id`.
    pub async fn visitor_events(
        &self,
        site_id: i64,
        visitor_id: &str,
    ) -> Result<Option<Vec<EventRow>>, Error> {
        let p = self.pseudonym_of_visitor_id(site_id, visitor_id).await?;
        self.events_of(site_id, p).await
    }

    /// Rights hook: erases every stored event of that visitor. Returns how many were erased.
    pub async fn erase_visitor(
        &self,
        site_id: i64,
        visitor_id: &str,
    ) -> Result<Option<u64>, Error> {
        let p = self.pseudonym_of_visitor_id(site_id, visitor_id).await?;
        self.erase_of(site_id, p).await
    }

    /// The stored events of `pseudonym` (None: nobody the hooks can reach).
    async fn events_of(
        &self,
        site_id: i64,
        pseudonym: Option<i64>,
    ) -> Result<Option<Vec<EventRow>>, Error> {
        match pseudonym {
            Some(p) => Ok(Some(self.store.analytics_events_of(site_id, p).await?)),
            None => Ok(None),
        }
    }

    /// Erases the stored events of `pseudonym`; returns how many (None: nobody to erase).
    async fn erase_of(&self, site_id: i64, pseudonym: Option<i64>) -> Result<Option<u64>, Error> {
        match pseudonym {
            Some(p) => Ok(Some(self.store.analytics_erase_visitor(site_id, p).await?)),
            None => Ok(None),
        }
    }
}

impl Analytics {
    /// The key under which a visitor's opt-out is stored (not the cookie value, and unrelated
    /// to the pseudonyms of the stored events).
    async fn optout_key(&self, site_id: i64, visitor_id: &str) -> Result<i64, Error> {
        let cached = self
            .salts
            .lock()
            .expect("salt lock")
            .get(&(site_id, SALT_OPTOUT))
            .map(|(_, s)| s.clone());
        let salt = match cached {
            Some(s) => s,
            None => {
                let fresh = pseudonym::random_salt().map_err(Error::Rng)?;
                let salt = Arc::new(pseudonym::PseudonymKey::new(
                    &self
                        .store
                        .analytics_salt(site_id, SALT_OPTOUT, 0, &fresh)
                        .await?,
                ));
                self.salts
                    .lock()
                    .expect("salt lock")
                    .insert((site_id, SALT_OPTOUT), (0, salt.clone()));
                salt
            }
        };
        Ok(salt.pseudonym(
            site_id,
            pseudonym::Source::Cookie,
            &[b"optout", &*visitor_id_lower(visitor_id)],
        ))
    }

    /// Reloads the opt-outs when the local copy is older than a minute (other nodes' too). One
    /// caller claims the reload; the others go on with the copy they have.
    async fn refresh_optouts(&self, now: i64) -> Result<(), Error> {
        let stale = |o: &OptOuts| {
            o.loaded_at
                .is_none_or(|t| now - t >= OPTOUT_REFRESH_SECS || now < t)
        };
        if !stale(&self.optouts.read().expect("optout lock")) {
            return Ok(());
        }
        let first = {
            let mut o = self.optouts.write().expect("optout lock");
            if !stale(&o) {
                return Ok(());
            }
            let first = o.loaded_at.is_none();
            o.loaded_at = Some(now);
            first
        };
        let loaded = self.store.analytics_optouts().await;
        let keys: HashSet<(i64, i64)> = match loaded {
            Ok(rows) => rows
                .into_iter()
                .filter_map(|(site, k)| Some((site, i64::from_be_bytes(k.try_into().ok()?))))
                .collect(),
            Err(e) => {
                if first {
                    self.optouts.write().expect("optout lock").loaded_at = None;
                }
                return Err(e.into());
            }
        };
        let mut o = self.optouts.write().expect("optout lock");
        o.keys.extend(keys);
        Ok(())
    }

    /// Whether no visitor has objected or withdrawn consent through a rights request (the list
    /// reloaded first when it is stale).
    async fn no_optouts(&self, now: i64) -> Result<bool, Error> {
        self.refresh_optouts(now).await?;
        Ok(self.optouts.read().expect("optout lock").keys.is_empty())
    }

    /// Whether the visitor whose tracker id is `visitor_id` objected or withdrew consent
    /// through a rights request.
    pub async fn visitor_opted_out(
        &self,
        site_id: i64,
        visitor_id: &str,
        now: i64,
    ) -> Result<bool, Error> {
        self.refresh_optouts(now).await?;
        if self.optouts.read().expect("optout lock").keys.is_empty() {
            return Ok(false);
        }
        let key = self.optout_key(site_id, visitor_id).await?;
        Ok(self
            .optouts
            .read()
            .expect("optout lock")
            .keys
            .contains(&(site_id, key)))
    }

    /// Rights hook (objection, consent withdrawal): records none of this visitor's hits from now
    /// on, on every node (others within a minute). Returns false for an id that is not a tracker
    /// id or an unknown site, true otherwise (also when it was already recorded).
    pub async fn opt_out_visitor(
        &self,
        site_id: i64,
        visitor_id: &str,
        now: i64,
    ) -> Result<bool, Error> {
        if !pseudonym::is_visitor_id(visitor_id) || self.site(site_id).is_none() {
            return Ok(false);
        }
        let key = self.optout_key(site_id, visitor_id).await?;
        self.store
            .analytics_add_optout(site_id, &key.to_be_bytes(), now)
            .await?;
        self.optouts
            .write()
            .expect("optout lock")
            .keys
            .insert((site_id, key));
        Ok(true)
    }
}

/// The key under which the audit log commits to one visitor of one site (the vault stores only
/// its keyed commitment): stable across pseudonym periods, so every audit entry about the same
/// tracker cookie value can be found again from that value.
pub fn visitor_audit_subject(site_id: i64, visitor_id: &str) -> String {
    format!(
        "analytics_visitor:{site_id}:{}",
        visitor_id.trim().to_ascii_lowercase()
    )
}

/// The text of a half address (`192.168.0.0`), formatted once per request and address.
fn half_text(cache: &mut PrepareCache, half: IpAddr) -> &str {
    if cache.half_ip.as_ref().is_none_or(|(ip, _)| *ip != half) {
        cache.half_ip = Some((half, half.to_string()));
    }
    cache.half_ip.as_ref().map_or("", |(_, t)| t.as_str())
}

/// `id` in ASCII lower case: on the stack for ids of up to 16 bytes (a tracker's visitor id),
/// else in a new string.
fn visitor_id_lower(id: &str) -> LowerId {
    if id.len() <= 16 {
        let mut buf = [0u8; 16];
        for (o, b) in buf.iter_mut().zip(id.bytes()) {
            *o = b.to_ascii_lowercase();
        }
        LowerId::Short(buf, id.len())
    } else {
        LowerId::Long(id.to_ascii_lowercase())
    }
}

enum LowerId {
    Short([u8; 16], usize),
    Long(String),
}

impl std::ops::Deref for LowerId {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            LowerId::Short(b, n) => &b[..*n],
            LowerId::Long(s) => s.as_bytes(),
        }
    }
}

/// `YYYYMMDD` of a civil date.
pub fn day_number(d: jiff::civil::Date) -> i64 {
    i64::from(d.year()) * 10_000 + i64::from(d.month()) * 100 + i64::from(d.day())
}

/// The civil date of a `YYYYMMDD` number.
pub fn day_from_number(n: i64) -> Option<jiff::civil::Date> {
    let y = i16::try_from(n / 10_000).ok()?;
    let m = i8::try_from((n / 100) % 100).ok()?;
    let d = i8::try_from(n % 100).ok()?;
    jiff::civil::Date::new(y, m, d).ok()
}

/// The oldest instant a stored event may have under `retention` (None: not a fixed period).
fn retention_cutoff(now: jiff::Timestamp, retention: &Period) -> Option<i64> {
    let span = retention.span()?;
    let cutoff = now
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .checked_sub(span)
        .ok()?;
    Some(cutoff.timestamp().as_second())
}

/// `cdt`: unix seconds, or `YYYY-MM-DD HH:MM:SS` in UTC (Matomo's two forms).
fn parse_cdt(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(n) = s.parse::<f64>() {
        return (n.is_finite() && n > 0.0 && n < 1e11).then_some(n as i64);
    }
    let dt: jiff::civil::DateTime = s.replace(' ', "T").parse().ok()?;
    dt.to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp().as_second())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lower_case_ids_without_allocation() {
        assert_eq!(&*visitor_id_lower("0123456789ABCDEF"), b"0123456789abcdef");
        assert_eq!(&*visitor_id_lower("AbC"), b"abc");
        assert_eq!(&*visitor_id_lower(""), b"");
        let long = "X".repeat(40);
        assert_eq!(&*visitor_id_lower(&long), "x".repeat(40).as_bytes());
    }

    #[test]
    fn day_numbers_and_cdt() {
        let d = jiff::civil::date(2026, 2, 28);
        assert_eq!(day_number(d), 20260228);
        assert_eq!(day_from_number(20260228), Some(d));
        assert_eq!(day_from_number(20261340), None);
        assert_eq!(parse_cdt("1700000000"), Some(1_700_000_000));
        assert_eq!(parse_cdt("2026-11-29 10:00:00"), Some(1_795_946_400));
        assert_eq!(parse_cdt("yesterday"), None);
    }
}
