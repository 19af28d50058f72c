//! Reports over a site and a range of site-local days, read from the rollups.
//!
//! **Unique visitors** are distinct pseudonyms. A pseudonym is tied to one pseudonym period
//! (`analytics.pseudonym_rotation`, 30 days by default; one day in cookieless mode), so a person
//! who comes back in a later period counts again: unique visitors are unique *per pseudonym
//! period*. They are exact for one day and for ranges of up to 50,000 visitor-days, and
//! estimated with HyperLogLog (about 0.8 % standard error) beyond.

use jiff::civil::Date;
use serde::Serialize;
use tutela_store::analytics::{SeriesPoint, Totals};

use crate::writer::dim;
use crate::{Analytics, Error, day_number};

/// Sections of a report, each a ranked table.
pub const SECTIONS: &[(&str, &str)] = &[
    ("pages", dim::PAGE),
    ("entry_pages", dim::ENTRY),
    ("exit_pages", dim::EXIT),
    ("browsers", dim::BROWSER),
    ("os", dim::OS),
    ("devices", dim::DEVICE),
    ("resolutions", dim::RESOLUTION),
    ("event_categories", dim::EVENT_CATEGORY),
    ("event_actions", dim::EVENT_ACTION),
    ("downloads", dim::DOWNLOAD),
    ("outlinks", dim::OUTLINK),
];

/// The dimension behind a section name.
pub fn section_dim(name: &str) -> Option<&'static str> {
    SECTIONS.iter().find(|(n, _)| *n == name).map(|(_, d)| *d)
}

/// Longest range a report covers, in days.
pub const MAX_RANGE_DAYS: i64 = 400;
/// Up to this many visitor-days in a range, unique visitors are counted exactly.
pub const EXACT_UNIQUES_UP_TO: i64 = 50_000;
/// Most rows of a ranked table.
pub const MAX_LIMIT: i64 = 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Granularity {
    Hour,
    Day,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Summary {
    pub visits: i64,
    pub unique_visitors: i64,
    pub pageviews: i64,
    pub actions: i64,
    pub events: i64,
    /// Share of visits with a single action, 0.0 to 1.0.
    pub bounce_rate: f64,
    /// Mean time between a visit's first and last action or heartbeat, in seconds.
    pub avg_visit_duration_secs: f64,
    pub actions_per_visit: f64,
}

impl Summary {
    fn new(t: Totals, unique_visitors: i64) -> Self {
        let per_visit = |x: i64| {
            if t.visits > 0 {
                x as f64 / t.visits as f64
            } else {
                0.0
            }
        };
        Summary {
            visits: t.visits,
            unique_visitors,
            pageviews: t.pageviews,
            actions: t.actions,
            events: t.events,
            bounce_rate: per_visit(t.bounces),
            avg_visit_duration_secs: per_visit(t.duration),
            actions_per_visit: per_visit(t.actions),
        }
    }
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Point {
    /// `2026-11-29` or `2026-11-29T14:00`.
    pub period: String,
    pub visits: i64,
    pub pageviews: i64,
    pub actions: i64,
    pub events: i64,
    /// Per-day points only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unique_visitors: Option<i64>,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Row {
    pub label: String,
    pub count: i64,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Report {
    pub site_id: i64,
    pub site_name: String,
    pub timezone: String,
    pub from: Date,
    pub to: Date,
    pub granularity: Granularity,
    pub summary: Summary,
    pub series: Vec<Point>,
    pub tables: Vec<(String, Vec<Row>)>,
}

impl Report {
    pub fn table(&self, name: &str) -> &[Row] {
        self.tables
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, r)| r.as_slice())
            .unwrap_or(&[])
    }
}

/// Why a report request is refused.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("no site with id {0}")]
    UnknownSite(i64),
    #[error("the range must end on or after its start, and cover at most {MAX_RANGE_DAYS} days")]
    BadRange,
    #[error("unknown report section {0:?}")]
    UnknownSection(String),
    #[error(transparent)]
    Internal(#[from] Error),
}

impl From<tutela_store::StoreError> for ReportError {
    fn from(e: tutela_store::StoreError) -> Self {
        ReportError::Internal(Error::Store(e))
    }
}

impl Analytics {
    /// Today in the site's time zone.
    pub fn site_today(&self, site_id: i64) -> Option<Date> {
        self.site(site_id).map(|s| {
            jiff::Timestamp::now()
                .to_zoned_datetime(s.tz.clone())
                .date()
        })
    }

    fn check(&self, site_id: i64, from: Date, to: Date) -> Result<&crate::Site, ReportError> {
        let site = self
            .site(site_id)
            .ok_or(ReportError::UnknownSite(site_id))?;
        let days = from.until(to).map(|s| s.get_days()).unwrap_or(-1);
        if to < from || i64::from(days) >= MAX_RANGE_DAYS {
            return Err(ReportError::BadRange);
        }
        Ok(site)
    }

    /// Distinct pseudonyms over the days `f..=t`: exact for one day (the day's counter) and for
    /// small ranges; estimated from the daily HyperLogLog sketches (about 0.8 % error) when the
    /// range holds more than [`EXACT_UNIQUES_UP_TO`] visitor-days.
    async fn unique_visitors(
        &self,
        site_id: i64,
        f: i64,
        t: i64,
        visitor_days: i64,
    ) -> Result<i64, ReportError> {
        if f == t {
            return Ok(visitor_days);
        }
        if visitor_days <= EXACT_UNIQUES_UP_TO {
            return Ok(self
                .store()
                .analytics_unique_visitors(site_id, f, t)
                .await?);
        }
        let mut regs = vec![0u8; crate::hll::M];
        for s in self.store().analytics_sketches(site_id, f, t).await? {
            crate::hll::merge(&mut regs, &s);
        }
        Ok(crate::hll::estimate(&regs).round() as i64)
    }

    /// One ranked table (`pages`, `browsers`, …) over the range.
    pub async fn table(
        &self,
        site_id: i64,
        section: &str,
        from: Date,
        to: Date,
        limit: i64,
    ) -> Result<Vec<Row>, ReportError> {
        self.check(site_id, from, to)?;
        let dim =
            section_dim(section).ok_or_else(|| ReportError::UnknownSection(section.into()))?;
        let rows = self
            .store()
            .analytics_top(
                site_id,
                dim,
                day_number(from),
                day_number(to),
                limit.clamp(1, MAX_LIMIT),
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|(label, count)| Row { label, count })
            .collect())
    }

    /// The full report: summary, time series and every table.
    pub async fn report(
        &self,
        site_id: i64,
        from: Date,
        to: Date,
        granularity: Granularity,
        limit: i64,
    ) -> Result<Report, ReportError> {
        let site = self.check(site_id, from, to)?;
        let (f, t) = (day_number(from), day_number(to));
        let store = self.store();
        // The ranked tables are independent reads: run them side by side (SQLite's WAL readers
        // and PostgreSQL's connections work in parallel) while the totals are read here.
        let mut set = tokio::task::JoinSet::new();
        for (i, (_, dim)) in SECTIONS.iter().enumerate() {
            let store = store.clone();
            let limit = limit.clamp(1, MAX_LIMIT);
            set.spawn(async move { (i, store.analytics_top(site_id, dim, f, t, limit).await) });
        }
        let totals = store.analytics_totals(site_id, f, t).await?;
        let uniques = self.unique_visitors(site_id, f, t, totals.visitors).await?;
        let points = store
            .analytics_series(site_id, f, t, granularity == Granularity::Hour)
            .await?;
        let daily_uniques: Vec<(i64, i64)> = if granularity == Granularity::Day {
            points.iter().map(|p| (p.day, p.totals.visitors)).collect()
        } else {
            Vec::new()
        };
        let series = fill_series(from, to, granularity, &points, &daily_uniques);
        let mut results: Vec<Option<Vec<Row>>> = vec![None; SECTIONS.len()];
        while let Some(joined) = set.join_next().await {
            let (i, rows) = joined.map_err(|e| Error::Config(format!("report task: {e}")))?;
            results[i] = Some(
                rows?
                    .into_iter()
                    .map(|(label, count)| Row { label, count })
                    .collect(),
            );
        }
        let tables = SECTIONS
            .iter()
            .zip(results)
            .map(|((name, _), rows)| (name.to_string(), rows.unwrap_or_default()))
            .collect();
        Ok(Report {
            site_id,
            site_name: site.name.clone(),
            timezone: site.timezone.clone(),
            from,
            to,
            granularity,
            summary: Summary::new(totals, uniques),
            series,
            tables,
        })
    }
}

/// Every period of the range, with zeros where nothing happened.
fn fill_series(
    from: Date,
    to: Date,
    granularity: Granularity,
    points: &[SeriesPoint],
    daily_uniques: &[(i64, i64)],
) -> Vec<Point> {
    let mut out = Vec::new();
    let mut day = from;
    while day <= to {
        let n = day_number(day);
        let hours: Vec<Option<i64>> = match granularity {
            Granularity::Day => vec![None],
            Granularity::Hour => (0..24).map(Some).collect(),
        };
        for hour in hours {
            let t = points
                .iter()
                .find(|p| p.day == n && (hour.is_none() || p.hour == hour))
                .map(|p| p.totals)
                .unwrap_or_default();
            out.push(Point {
                period: match hour {
                    Some(h) => format!("{day}T{h:02}:00"),
                    None => day.to_string(),
                },
                visits: t.visits,
                pageviews: t.pageviews,
                actions: t.actions,
                events: t.events,
                unique_visitors: hour.is_none().then(|| {
                    daily_uniques
                        .iter()
                        .find(|(d, _)| *d == n)
                        .map_or(0, |(_, c)| *c)
                }),
            });
        }
        match day.tomorrow() {
            Ok(next) => day = next,
            Err(_) => break,
        }
    }
    out
}
