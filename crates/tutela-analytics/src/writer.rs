//! The single writer: drains the queue, turns minimised hits into event rows and rollup
//! increments (sessionising them into visits), writes them in one transaction per flush and
//! answers every submitter after the commit.
//!
//! Visits: a visitor's actions belong to one visit until 30 minutes pass without any, or the
//! tracker asks for `new_visit`. The state of open visits lives in this task's memory (bounded).
//! Visits, bounces and durations count in the hour the visit started; actions in their own hour.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// The writer's maps: foldhash, randomly seeded per map (SipHash took ~8 % of the ingest CPU).
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
type Set<K> = HashSet<K, foldhash::fast::RandomState>;
use std::time::Instant;

use jiff::tz::TimeZone;
use tokio::sync::mpsc;
use tutela_store::Store;
use tutela_store::analytics::{AnalyticsBatch, DimDelta, HourlyDelta, kind};
use tutela_store::event_chunk::{ChunkEncoder, EventRef};

use crate::{Job, MinHit, day_number};

/// Inactivity that ends a visit (Matomo's default).
pub const VISIT_TIMEOUT_SECS: i64 = 30 * 60;
/// Open visits kept in memory at most. The table is allocated for this many up front (its
/// pages become resident as they are used) and never grows: with a 16-byte key and a 48-byte
/// visit, 2^20 slots are 64 MiB. Growing instead would briefly hold the old and the new table
/// (the bulk benchmark peaked at 283 MiB that way, over the 200 MB budget).
const MAX_OPEN_VISITS: usize = 800_000;

/// The batch size that ends the wait for more hits before a commit.
const LINGER_UNTIL: usize = 256;
const MAX_INTERNED_URLS: usize = 100_000;

/// Dimension names of the daily rollups.
pub mod dim {
    pub const PAGE: &str = "page";
    pub const ENTRY: &str = "entry";
    pub const EXIT: &str = "exit";
    pub const BROWSER: &str = "browser";
    pub const OS: &str = "os";
    pub const DEVICE: &str = "device";
    pub const RESOLUTION: &str = "resolution";
    pub const EVENT_CATEGORY: &str = "event_category";
    pub const EVENT_ACTION: &str = "event_action";
    pub const DOWNLOAD: &str = "download";
    pub const OUTLINK: &str = "outlink";
}

/// One open visit: 48 bytes, no allocation of its own (the exit page is shared through
/// [`State::urls`]), since up to [`MAX_OPEN_VISITS`] of them stay in memory for 30 minutes.
struct Visit {
    start: i64,
    last: i64,
    exit: Option<Arc<str>>,
    start_day: i32,
    /// The last day this visit recorded as a visitor-day of its visitor (a visitor seen again
    /// in a later visit of the same day is recorded again: the store keeps one row, and the
    /// sketch is idempotent).
    seen_day: i32,
    actions: u32,
    start_hour: u8,
}

/// One site's current local hour: `[from, to)` in unix seconds.
struct HourCache {
    site: i64,
    from: i64,
    to: i64,
    day: i64,
    hour: i64,
}

pub(crate) struct State {
    tz: HashMap<i64, TimeZone>,
    hours: Vec<HourCache>,
    visits: Map<(i64, i64), Visit>,
    /// [`MAX_OPEN_VISITS`], smaller in tests.
    max_open: usize,
    /// The pages that are some open visit's exit page, stored once (bounded: cleared when
    /// larger than [`MAX_INTERNED_URLS`]; visits keep their own reference).
    urls: Set<Arc<str>>,
    last_sweep: i64,
    /// This writer's HyperLogLog sketch per (site, day), and whether it changed since written.
    sketches: Map<(i64, i64), (Vec<u8>, bool)>,
    node: String,
    last_sketch_write: Option<Instant>,
    /// No batch built yet (the direct writer prepares the store before its first).
    fresh: bool,
}

/// Sketches are written at most this often (they are rebuilt from the exact visitor-days when a
/// writer first touches a day, so a crash loses nothing for days that see new hits).
const SKETCH_WRITE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
const MAX_SKETCHES: usize = 64;

#[derive(Default)]
struct Acc {
    /// The batch's events, encoded as they come, one chunk per (site, day).
    chunks: Vec<ChunkEncoder>,
    hourly: Map<(i64, i64, i64), HourlyDelta>,
    /// Per (site, day, dimension): value → count (looked up by `&str`: no allocation for a
    /// value already seen in the batch).
    dims: Map<(i64, i64, &'static str), Map<String, i64>>,
    visitor_days: Vec<(i64, i64, i64, i64)>,
}

impl Acc {
    fn hour(&mut self, site: i64, day: i64, hour: i64) -> &mut HourlyDelta {
        self.hourly
            .entry((site, day, hour))
            .or_insert_with(|| HourlyDelta {
                site_id: site,
                day,
                hour,
                ..HourlyDelta::default()
            })
    }

    fn dim(&mut self, site: i64, day: i64, dim: &'static str, value: &str, n: i64) {
        let values = self.dims.entry((site, day, dim)).or_default();
        match values.get_mut(value) {
            Some(c) => *c += n,
            None => {
                values.insert(value.to_string(), n);
            }
        }
    }

    fn chunk(&mut self, site: i64, day: i64) -> &mut ChunkEncoder {
        // Few (site, day) pairs per batch: a linear search beats hashing.
        match self
            .chunks
            .iter()
            .position(|c| c.site_id() == site && c.day() == day)
        {
            Some(i) => &mut self.chunks[i],
            None => {
                self.chunks.push(ChunkEncoder::new(site, day));
                self.chunks.last_mut().expect("just pushed")
            }
        }
    }

    fn into_batch(self) -> AnalyticsBatch {
        AnalyticsBatch {
            events: Vec::new(),
            chunks: self.chunks.into_iter().map(ChunkEncoder::finish).collect(),
            hourly: self
                .hourly
                .into_values()
                .filter(|h| {
                    h.visits != 0
                        || h.actions != 0
                        || h.bounces != 0
                        || h.duration != 0
                        || h.pageviews != 0
                        || h.events != 0
                })
                .collect(),
            dims: self
                .dims
                .into_iter()
                .flat_map(|((site_id, day, dim), values)| {
                    values
                        .into_iter()
                        .filter(|(_, n)| *n != 0)
                        .map(move |(value, n)| DimDelta {
                            site_id,
                            day,
                            dim,
                            value,
                            n,
                        })
                })
                .collect(),
            visitor_days: self.visitor_days,
            sketches: Vec::new(),
        }
    }
}

impl State {
    pub(crate) fn new(tz: HashMap<i64, TimeZone>) -> Self {
        let mut b = [0u8; 8];
        let _ = getrandom::fill(&mut b);
        State {
            tz,
            hours: Vec::new(),
            visits: Map::with_capacity_and_hasher(MAX_OPEN_VISITS, Default::default()),
            max_open: MAX_OPEN_VISITS,
            urls: Set::default(),
            last_sweep: 0,
            sketches: Map::default(),
            node: b.iter().map(|x| format!("{x:02x}")).collect(),
            last_sketch_write: None,
            fresh: true,
        }
    }

    /// Loads (rebuilds from the exact visitor-days) the sketches the hits will touch.
    async fn load_sketches(
        &mut self,
        store: &Store,
        hits: &[MinHit],
    ) -> Result<(), tutela_store::StoreError> {
        let mut days: Vec<(i64, i64)> = Vec::new();
        for h in hits.iter().filter(|h| !h.ping) {
            let key = (h.site_id, self.local_cached(h.site_id, h.ts).0);
            // Hits are in time order: most repeat the previous day.
            if days.last() != Some(&key) {
                days.push(key);
            }
        }
        days.sort_unstable();
        days.dedup();
        for key in days {
            if self.sketches.contains_key(&key) {
                continue;
            }
            if self.sketches.len() >= MAX_SKETCHES {
                // Keep the newest days; older ones were written when they changed.
                let oldest = self
                    .sketches
                    .iter()
                    .filter(|(_, (_, dirty))| !dirty)
                    .map(|(k, _)| *k)
                    .min_by_key(|(_, d)| *d);
                if let Some(k) = oldest {
                    self.sketches.remove(&k);
                }
            }
            let mut regs = vec![0u8; crate::hll::M];
            for v in store.analytics_visitors_of_day(key.0, key.1).await? {
                crate::hll::add(&mut regs, v);
            }
            self.sketches.insert(key, (regs, false));
        }
        Ok(())
    }

    /// The changed sketches to write now (all of them when `force`).
    fn take_sketches(&mut self, force: bool) -> Vec<(i64, i64, String, Vec<u8>)> {
        if !force
            && self
                .last_sketch_write
                .is_some_and(|t| t.elapsed() < SKETCH_WRITE_EVERY)
        {
            return Vec::new();
        }
        let mut out = Vec::new();
        for ((site, day), (regs, dirty)) in self.sketches.iter_mut() {
            if *dirty {
                *dirty = false;
                out.push((*site, *day, self.node.clone(), regs.clone()));
            }
        }
        if !out.is_empty() {
            self.last_sketch_write = Some(Instant::now());
        }
        out
    }

    fn local(&self, site: i64, ts: i64) -> (i64, i64) {
        local_day_hour(&self.tz, site, ts)
    }

    /// [`State::local`] through a per-site cache of the current local hour: hits come in time
    /// order, so most fall in the hour of the previous one. An hour is cached only when the
    /// zone's offset is the same at both its ends (no transition inside it).
    fn local_cached(&mut self, site: i64, ts: i64) -> (i64, i64) {
        if let Some(c) = self.hours.iter().find(|c| c.site == site)
            && ts >= c.from
            && ts < c.to
        {
            return (c.day, c.hour);
        }
        let tz = self.tz.get(&site).cloned().unwrap_or(TimeZone::UTC);
        let Ok(t) = jiff::Timestamp::from_second(ts) else {
            return self.local(site, ts);
        };
        let dt = tz.to_datetime(t);
        let out = (day_number(dt.date()), i64::from(dt.hour()));
        let from = ts - i64::from(dt.minute()) * 60 - i64::from(dt.second());
        let to = from + 3600;
        let offset_at = |s: i64| {
            jiff::Timestamp::from_second(s)
                .ok()
                .map(|t| tz.to_offset(t).seconds())
        };
        let here = Some(tz.to_offset(t).seconds());
        if offset_at(from) == here && offset_at(to - 1) == here {
            let entry = HourCache {
                site,
                from,
                to,
                day: out.0,
                hour: out.1,
            };
            match self.hours.iter_mut().find(|c| c.site == site) {
                Some(c) => *c = entry,
                None => self.hours.push(entry),
            }
        }
        out
    }

    /// The shared copy of `url` (an exit page), stored once however many visits end on it.
    fn intern(&mut self, url: &str) -> Arc<str> {
        if let Some(u) = self.urls.get(url) {
            return u.clone();
        }
        if self.urls.len() >= MAX_INTERNED_URLS {
            // Visits keep their own references; only the sharing of new copies restarts.
            self.urls.clear();
        }
        let u: Arc<str> = Arc::from(url);
        self.urls.insert(u.clone());
        u
    }

    /// Ends the visits idle for longer than the timeout (at most once a minute).
    fn sweep(&mut self, now: i64) {
        if now - self.last_sweep < 60 {
            return;
        }
        self.last_sweep = now;
        self.visits
            .retain(|_, v| now - v.last <= VISIT_TIMEOUT_SECS);
    }

    /// Called when the table is full: keeps the most recently active three quarters of
    /// `max_open` visits and ends the others (a later hit of one of them starts a new visit).
    /// Two passes over the table: a histogram of idle seconds gives the cut, then one
    /// `retain`; ties at the cut are kept first come, so the result is exact even when every
    /// visit was active in the same second (a flood of new visitors).
    fn evict(&mut self, now: i64) {
        let keep = self.max_open / 4 * 3;
        let idle = |v: &Visit| usize::try_from((now - v.last).max(0)).unwrap_or(usize::MAX);
        let mut histogram = vec![0usize; VISIT_TIMEOUT_SECS as usize + 1];
        for v in self.visits.values() {
            if let Some(n) = histogram.get_mut(idle(v)) {
                *n += 1;
            }
        }
        // The cut: visits idle for less than `cut` seconds are all kept, `budget` of those
        // idle for exactly `cut` seconds too, none idle for longer.
        let (mut cut, mut below) = (histogram.len(), 0usize);
        for (secs, n) in histogram.iter().enumerate() {
            if below + n > keep {
                cut = secs;
                break;
            }
            below += n;
        }
        let mut budget = keep - below;
        let before = self.visits.len();
        self.visits.retain(|_, v| {
            let i = idle(v);
            if i < cut {
                true
            } else if i == cut && budget > 0 {
                budget -= 1;
                true
            } else {
                false
            }
        });
        metrics::counter!("tutela_analytics_visits_evicted_total")
            .increment((before - self.visits.len()) as u64);
        tracing::warn!(
            open_visits = self.visits.len(),
            "the open-visit table was full: the least recently active visits were ended early"
        );
    }

    fn add(&mut self, acc: &mut Acc, h: MinHit) {
        let key = (h.site_id, h.visitor);
        let (day, hour) = self.local_cached(h.site_id, h.ts);
        if h.ping {
            if let Some(v) = self.visits.get_mut(&key)
                && h.ts - v.last <= VISIT_TIMEOUT_SECS
                && h.ts > v.last
            {
                let (d, hr) = (i64::from(v.start_day), i64::from(v.start_hour));
                let delta = h.ts - v.last;
                v.last = h.ts;
                acc.hour(h.site_id, d, hr).duration += delta;
            }
            return;
        }
        let open = self
            .visits
            .get(&key)
            .is_some_and(|v| !h.new_visit && h.ts - v.last <= VISIT_TIMEOUT_SECS);
        if !open {
            if self.visits.len() >= self.max_open && !self.visits.contains_key(&key) {
                self.evict(h.ts);
            }
            self.visits.insert(
                key,
                Visit {
                    start: h.ts,
                    // Day numbers fit an i32 for millions of years; hours are 0..=23.
                    start_day: i32::try_from(day).unwrap_or(i32::MAX),
                    start_hour: u8::try_from(hour).unwrap_or(0),
                    seen_day: i32::MIN,
                    last: h.ts,
                    actions: 0,
                    exit: None,
                },
            );
            acc.hour(h.site_id, day, hour).visits += 1;
            if let Some(d) = &h.device {
                if let Some(b) = &d.browser {
                    let label = match &d.browser_version {
                        Some(v) => format!("{b} {v}"),
                        None => b.clone(),
                    };
                    acc.dim(h.site_id, day, dim::BROWSER, &label, 1);
                }
                if let Some(os) = &d.os {
                    let label = match &d.os_version {
                        Some(v) => format!("{os} {v}"),
                        None => os.clone(),
                    };
                    acc.dim(h.site_id, day, dim::OS, &label, 1);
                }
                acc.dim(h.site_id, day, dim::DEVICE, d.device.as_str(), 1);
            }
            if let Some(r) = &h.resolution {
                acc.dim(h.site_id, day, dim::RESOLUTION, r, 1);
            }
        }
        let exit_page = match (&h.url, h.kind == kind::PAGEVIEW) {
            (Some(url), true) => Some(self.intern(url)),
            _ => None,
        };
        let v = self.visits.get_mut(&key).expect("visit just ensured");
        v.actions += 1;
        let (sd, sh) = (i64::from(v.start_day), i64::from(v.start_hour));
        let visit_start = v.start;
        let mut bounce = 0;
        if v.actions == 1 {
            bounce = 1;
        } else if v.actions == 2 {
            bounce = -1;
        }
        let duration = (h.ts - v.last).max(0);
        v.last = v.last.max(h.ts);
        if let Some(url) = exit_page {
            if v.exit.is_none() {
                acc.dim(h.site_id, sd, dim::ENTRY, &url, 1);
            }
            // The visit's exit page moves to this one.
            if v.exit.as_deref() != Some(&*url) {
                acc.dim(h.site_id, sd, dim::EXIT, &url, 1);
                if let Some(old) = v.exit.replace(url) {
                    acc.dim(h.site_id, sd, dim::EXIT, &old, -1);
                }
            }
        }
        {
            let start = acc.hour(h.site_id, sd, sh);
            start.bounces += bounce;
            start.duration += duration;
        }
        let this = acc.hour(h.site_id, day, hour);
        this.actions += 1;
        match h.kind {
            kind::PAGEVIEW => this.pageviews += 1,
            kind::EVENT => this.events += 1,
            _ => {}
        }
        match h.kind {
            kind::PAGEVIEW => {
                if let Some(u) = &h.url {
                    acc.dim(h.site_id, day, dim::PAGE, u, 1);
                }
            }
            kind::EVENT => {
                let cat = h.ev_category.as_deref().unwrap_or("-");
                acc.dim(h.site_id, day, dim::EVENT_CATEGORY, cat, 1);
                let action = format!("{cat} / {}", h.ev_action.as_deref().unwrap_or("-"));
                acc.dim(h.site_id, day, dim::EVENT_ACTION, &action, 1);
            }
            kind::DOWNLOAD => {
                if let Some(u) = &h.url {
                    acc.dim(h.site_id, day, dim::DOWNLOAD, u, 1);
                }
            }
            kind::OUTLINK => {
                if let Some(u) = &h.url {
                    acc.dim(h.site_id, day, dim::OUTLINK, u, 1);
                }
            }
            _ => {}
        }
        let day32 = i32::try_from(day).unwrap_or(i32::MAX);
        if v.seen_day != day32 {
            v.seen_day = day32;
            acc.visitor_days.push((h.site_id, day, h.visitor, hour));
            let (regs, dirty) = self
                .sketches
                .entry((h.site_id, day))
                .or_insert_with(|| (vec![0u8; crate::hll::M], false));
            crate::hll::add(regs, h.visitor);
            *dirty = true;
        }
        let d = h.device.as_deref();
        acc.chunk(h.site_id, day).push(&EventRef {
            ts: h.ts,
            visitor: h.visitor,
            visit_start,
            kind: h.kind,
            ev_value: h.ev_value,
            strs: [
                h.url.as_deref(),
                h.title.as_deref(),
                h.ev_category.as_deref(),
                h.ev_action.as_deref(),
                h.ev_name.as_deref(),
                h.referrer.as_deref(),
                h.ip_prefix.as_deref(),
                d.and_then(|d| d.browser.as_deref()),
                d.and_then(|d| d.browser_version.as_deref()),
                d.and_then(|d| d.os.as_deref()),
                d.and_then(|d| d.os_version.as_deref()),
                d.map(|d| d.device.as_str()),
                h.resolution.as_deref(),
            ],
        });
    }
}

/// The site-local day number and hour of a unix time (UTC for an unknown site).
fn local_day_hour(tz: &HashMap<i64, TimeZone>, site: i64, ts: i64) -> (i64, i64) {
    let tz = tz.get(&site).cloned().unwrap_or(TimeZone::UTC);
    let t = jiff::Timestamp::from_second(ts).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let dt = tz.to_datetime(t);
    (day_number(dt.date()), i64::from(dt.hour()))
}

/// Tells the store the sites' local hours (for visitor-days it inserts after a crash), then has
/// it insert those a previous run left behind.
async fn prepare_store(store: &Store, tz: &HashMap<i64, TimeZone>) {
    let tz = tz.clone();
    store.set_analytics_local_hour(Arc::new(move |site, ts| local_day_hour(&tz, site, ts).1));
    if let Err(e) = store.analytics_flush_visitor_days().await {
        tracing::warn!(error = %e, "could not insert the visitor-days of the last run");
    }
}

/// Builds the batch for a set of hits (time-ordered).
pub(crate) async fn build_batch(
    state: &mut State,
    store: &Store,
    hits: Vec<MinHit>,
    force_sketches: bool,
) -> Result<AnalyticsBatch, tutela_store::StoreError> {
    state.load_sketches(store, &hits).await?;
    let mut acc = Acc::default();
    let now = hits.iter().map(|h| h.ts).max().unwrap_or(0);
    for h in hits {
        state.add(&mut acc, h);
    }
    state.sweep(now);
    let mut batch = acc.into_batch();
    batch.sketches = state.take_sketches(force_sketches);
    Ok(batch)
}

/// A batch being committed while the next one is built: its submitters, answered once it is.
struct InFlight {
    write: tokio::task::JoinHandle<Result<(), tutela_store::StoreError>>,
    acks: Vec<(
        tokio::sync::oneshot::Sender<Result<(), String>>,
        crate::QueuePermit,
    )>,
    started: Instant,
    built: std::time::Duration,
    hits: usize,
}

impl InFlight {
    /// Waits for the commit, then answers every submitter of the batch.
    async fn finish(self) {
        let result = match self.write.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                tracing::error!(error = %e, hits = self.hits, "analytics batch not written");
                Err("database write failed".to_string())
            }
            Err(e) => {
                tracing::error!(error = %e, hits = self.hits, "analytics write task failed");
                Err("database write failed".to_string())
            }
        };
        tracing::debug!(
            hits = self.hits,
            build_ms = self.built.as_secs_f64() * 1e3,
            write_ms = (self.started.elapsed() - self.built).as_secs_f64() * 1e3,
            "analytics batch"
        );
        metrics::histogram!("tutela_analytics_batch_hits").record(self.hits as f64);
        metrics::histogram!("tutela_analytics_commit_seconds")
            .record(self.started.elapsed().as_secs_f64());
        if result.is_err() {
            metrics::counter!("tutela_analytics_write_errors_total").increment(1);
        }
        for (ack, permit) in self.acks {
            let _ = ack.send(result.clone());
            drop(permit);
        }
    }
}

/// The writer task. Batches are pipelined: while one batch commits (on another thread), the
/// next is taken from the queue and built (visits, rollups, encoded events); commits stay in
/// order and each submitter is answered after its own batch's commit.
pub(crate) async fn run(
    store: Store,
    mut rx: mpsc::Receiver<Job>,
    tz: HashMap<i64, TimeZone>,
    max_batch: usize,
    linger: std::time::Duration,
) {
    prepare_store(&store, &tz).await;
    let mut state = State::new(tz);
    let mut in_flight: Option<InFlight> = None;
    loop {
        let first = match rx.try_recv() {
            Ok(job) => job,
            Err(mpsc::error::TryRecvError::Empty) if in_flight.is_some() => {
                // Nothing else to build: answer the batch being committed first.
                if let Some(f) = in_flight.take() {
                    f.finish().await;
                }
                continue;
            }
            Err(_) => match tokio::time::timeout(SKETCH_WRITE_EVERY, rx.recv()).await {
                Ok(Some(job)) => job,
                Ok(None) => break,
                Err(_) => {
                    // Idle: insert the visitor-days waiting in the SQLite writer's memory, and
                    // write the sketches that changed since the last write.
                    if let Err(e) = store.analytics_flush_visitor_days().await {
                        tracing::warn!(error = %e, "could not insert the waiting visitor-days");
                    }
                    let sketches = state.take_sketches(true);
                    if !sketches.is_empty() {
                        let batch = AnalyticsBatch {
                            sketches,
                            ..AnalyticsBatch::default()
                        };
                        if let Err(e) = store.analytics_write_batch(&batch).await {
                            tracing::warn!(error = %e, "could not write unique-visitor sketches");
                        }
                    }
                    continue;
                }
            },
        };
        let started = Instant::now();
        let mut jobs = vec![first];
        let mut n = jobs[0].hits.len();
        let mut yields = 0;
        // Group commit: take what is queued, and linger a moment for more while the batch is
        // small, so that one commit (one fsync) serves many concurrent hits.
        while n < max_batch {
            let job = match rx.try_recv() {
                Ok(job) => Some(job),
                Err(mpsc::error::TryRecvError::Disconnected) => None,
                Err(mpsc::error::TryRecvError::Empty) => {
                    let waited = started.elapsed();
                    if n >= LINGER_UNTIL {
                        None
                    } else if linger.is_zero() {
                        // Cheap commits (no fsync): let the request tasks run a moment, then go.
                        if yields < 3 {
                            yields += 1;
                            tokio::task::yield_now().await;
                            rx.try_recv().ok()
                        } else {
                            None
                        }
                    } else if waited >= linger {
                        None
                    } else {
                        tokio::time::timeout(linger - waited, rx.recv())
                            .await
                            .ok()
                            .flatten()
                    }
                }
            };
            match job {
                Some(job) => {
                    n += job.hits.len();
                    jobs.push(job);
                }
                None => break,
            }
        }
        let mut hits = Vec::with_capacity(n);
        let mut acks = Vec::with_capacity(jobs.len());
        for job in jobs {
            hits.extend(job.hits);
            acks.push((job.ack, job.permit));
        }
        hits.sort_by_key(|h| h.ts);
        let built = build_batch(&mut state, &store, hits, false).await;
        let built_in = started.elapsed();
        // Commits stay in order: the previous batch's first.
        if let Some(f) = in_flight.take() {
            f.finish().await;
        }
        let write = match built {
            Ok(batch) => {
                let store = store.clone();
                tokio::spawn(async move { store.analytics_write_batch_owned(batch).await })
            }
            Err(e) => tokio::spawn(async move { Err(e) }),
        };
        in_flight = Some(InFlight {
            write,
            acks,
            started,
            built: built_in,
            hits: n,
        });
    }
    if let Some(f) = in_flight.take() {
        f.finish().await;
    }
    // Last sketches before stopping.
    let sketches = state.take_sketches(true);
    if !sketches.is_empty() {
        let batch = AnalyticsBatch {
            sketches,
            ..AnalyticsBatch::default()
        };
        if let Err(e) = store.analytics_write_batch(&batch).await {
            tracing::warn!(error = %e, "could not write the last unique-visitor sketches");
        }
    }
    if let Err(e) = store.analytics_flush_visitor_days().await {
        tracing::warn!(error = %e, "could not insert the last visitor-days");
    }
    tracing::debug!("analytics writer stopped");
}

/// Writes hits straight through the writer's logic, bypassing the queue: for seeding benchmark
/// data and for tests. Hits must be in time order across calls.
pub struct DirectWriter {
    state: State,
    store: Store,
}

impl DirectWriter {
    pub fn new(store: Store, sites: &[crate::Site]) -> Self {
        DirectWriter {
            state: State::new(sites.iter().map(|s| (s.id, s.tz.clone())).collect()),
            store,
        }
    }

    pub async fn write(&mut self, hits: Vec<MinHit>) -> Result<(), tutela_store::StoreError> {
        if self.state.fresh {
            self.state.fresh = false;
            prepare_store(&self.store, &self.state.tz).await;
        }
        let batch = build_batch(&mut self.state, &self.store, hits, false).await?;
        self.store.analytics_write_batch_owned(batch).await
    }

    /// Writes what is still only in memory (the unique-visitor sketches, and on SQLite the
    /// visitor-days waiting in the store's writer).
    pub async fn finish(&mut self) -> Result<(), tutela_store::StoreError> {
        let batch = AnalyticsBatch {
            sketches: self.state.take_sketches(true),
            ..AnalyticsBatch::default()
        };
        self.store.analytics_write_batch(&batch).await?;
        self.store.analytics_flush_visitor_days().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(visitor: i64, ts: i64) -> MinHit {
        MinHit {
            site_id: 1,
            ts,
            visitor,
            new_visit: false,
            ping: false,
            kind: 0,
            url: Some("https://example.org/".into()),
            title: None,
            ev_category: None,
            ev_action: None,
            ev_name: None,
            ev_value: None,
            referrer: None,
            ip_prefix: None,
            device: None,
            resolution: None,
        }
    }

    #[test]
    fn the_open_visit_table_never_grows_past_its_bound() {
        let mut state = State::new(HashMap::new());
        assert!(state.visits.capacity() >= MAX_OPEN_VISITS);
        state.max_open = 40;
        let mut acc = Acc::default();
        // Visitors 0..40 fill the table, visitor v active at second 1000 + v.
        for v in 0..40 {
            state.add(&mut acc, hit(v, 1_000 + v));
        }
        assert_eq!(state.visits.len(), 40);
        // A new visitor: the 30 most recently active stay, plus the newcomer.
        state.add(&mut acc, hit(1_000, 1_100));
        assert_eq!(state.visits.len(), 31);
        for v in 0..10 {
            assert!(!state.visits.contains_key(&(1, v)), "visitor {v} kept");
        }
        for v in 10..40 {
            assert!(state.visits.contains_key(&(1, v)), "visitor {v} ended");
        }
        // A flood: hundreds of new visitors in one second never overfill the table.
        for v in 2_000..2_500 {
            state.add(&mut acc, hit(v, 1_200));
            assert!(state.visits.len() <= 40);
        }
        // An ended visit's visitor starts a new visit (counted), the table stays bounded.
        let (day, hour) = state.local_cached(1, 1_201);
        let visits_before = acc.hour(1, day, hour).visits;
        state.add(&mut acc, hit(0, 1_201));
        assert_eq!(acc.hour(1, day, hour).visits, visits_before + 1);
        assert!(state.visits.len() <= 40);
    }
}
