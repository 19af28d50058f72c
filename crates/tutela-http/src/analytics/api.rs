//! The reports API (`/api/v1/analytics/…`, scope `analytics:read`) and the rights hooks
//! (`/api/v1/analytics/visitors/…`, scopes `rights:read` / `rights:write`).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use jiff::civil::Date;
use serde::Deserialize;
use tutela_analytics::report::{Granularity, Report, ReportError, Row};
use tutela_domain::scope::Scope;
use tutela_store::analytics::kind;

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorCode};

#[derive(Deserialize, Default)]
pub(crate) struct RangeQuery {
    pub from: Option<String>,
    pub to: Option<String>,
    /// `day` (default) or `hour`.
    pub period: Option<String>,
    pub limit: Option<i64>,
    /// `json` (default) or `csv`.
    pub format: Option<String>,
}

pub(crate) struct Range {
    pub from: Date,
    pub to: Date,
    pub granularity: Granularity,
    pub limit: i64,
}

/// Reads a range: `from`/`to` as `YYYY-MM-DD`, by default the 30 days up to today (site time).
pub(crate) fn range(state: &AppState, site: i64, q: &RangeQuery) -> Result<Range, ApiError> {
    let analytics = &state.analytics.analytics;
    let today = analytics
        .site_today(site)
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("no site with id {site}")))?;
    let parse = |s: &Option<String>, what: &str| -> Result<Option<Date>, ApiError> {
        s.as_deref()
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<Date>().map_err(|_| {
                    ApiError::new(
                        ErrorCode::BadRequest,
                        format!("{what} must be a date written YYYY-MM-DD"),
                    )
                })
            })
            .transpose()
    };
    let to = parse(&q.to, "to")?.unwrap_or(today);
    let from = match parse(&q.from, "from")? {
        Some(f) => f,
        None => to
            .checked_sub(jiff::Span::new().days(29))
            .map_err(|_| ApiError::new(ErrorCode::BadRequest, "date out of range"))?,
    };
    let granularity = match q.period.as_deref() {
        None | Some("day") => Granularity::Day,
        Some("hour") => Granularity::Hour,
        Some(_) => {
            return Err(ApiError::new(
                ErrorCode::BadRequest,
                "period must be day or hour",
            ));
        }
    };
    Ok(Range {
        from,
        to,
        granularity,
        limit: q.limit.unwrap_or(10),
    })
}

pub(crate) fn report_error(e: ReportError) -> ApiError {
    match e {
        ReportError::UnknownSite(_) => ApiError::new(ErrorCode::NotFound, e.to_string()),
        ReportError::BadRange | ReportError::UnknownSection(_) => {
            ApiError::new(ErrorCode::BadRequest, e.to_string())
        }
        ReportError::Internal(e) => ApiError::internal("analytics report", e),
    }
}

fn wants_csv(q: &RangeQuery) -> Result<bool, ApiError> {
    match q.format.as_deref() {
        None | Some("json") => Ok(false),
        Some("csv") => Ok(true),
        Some(_) => Err(ApiError::new(
            ErrorCode::BadRequest,
            "format must be json or csv",
        )),
    }
}

/// One CSV field: quoted, and defused when a spreadsheet would read it as a formula.
fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn csv_response(name: &str, body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}.csv\""),
            ),
        ],
        body,
    )
        .into_response()
}

fn rows_csv(rows: &[Row]) -> String {
    let mut out = String::from("label,count\n");
    for r in rows {
        out.push_str(&format!("{},{}\n", csv_field(&r.label), r.count));
    }
    out
}

fn series_csv(report: &Report) -> String {
    let mut out = String::from("period,visits,unique_visitors,pageviews,actions,events\n");
    for p in &report.series {
        out.push_str(&format!(
            "{},{},{},{},{},{}\n",
            p.period,
            p.visits,
            p.unique_visitors.map(|u| u.to_string()).unwrap_or_default(),
            p.pageviews,
            p.actions,
            p.events
        ));
    }
    out
}

/// `GET /api/v1/analytics/sites`
pub(crate) async fn sites(
    caller: Caller,
    State(state): State<AppState>,
) -> Result<Response, ApiError> {
    caller.require(Scope::AnalyticsRead)?;
    let a = &state.analytics.analytics;
    let sites: Vec<_> = a
        .sites()
        .iter()
        .map(|s| serde_json::json!({"id": s.id, "name": s.name, "hosts": s.hosts, "timezone": s.timezone}))
        .collect();
    Ok(Json(serde_json::json!({
        "sites": sites,
        "purpose": a.policy.as_ref().map(|p| p.purpose_id.clone()),
        "retention": a.policy.as_ref().map(|p| p.retention.canonical()),
    }))
    .into_response())
}

/// `GET /api/v1/analytics/sites/{id}/report`: summary, series and every table.
pub(crate) async fn report(
    caller: Caller,
    State(state): State<AppState>,
    Path(site): Path<i64>,
    Query(q): Query<RangeQuery>,
) -> Result<Response, ApiError> {
    caller.require(Scope::AnalyticsRead)?;
    let r = range(&state, site, &q)?;
    let csv = wants_csv(&q)?;
    let report = state
        .analytics
        .analytics
        .report(site, r.from, r.to, r.granularity, r.limit)
        .await
        .map_err(report_error)?;
    if csv {
        return Ok(csv_response(
            &format!("site-{site}-series"),
            series_csv(&report),
        ));
    }
    let tables: serde_json::Map<String, serde_json::Value> = report
        .tables
        .iter()
        .map(|(n, rows)| (n.clone(), serde_json::to_value(rows).unwrap_or_default()))
        .collect();
    Ok(Json(serde_json::json!({
        "site": {"id": report.site_id, "name": report.site_name, "timezone": report.timezone},
        "from": report.from.to_string(),
        "to": report.to.to_string(),
        "period": report.granularity,
        "summary": report.summary,
        "series": report.series,
        "tables": tables,
    }))
    .into_response())
}

/// `GET /api/v1/analytics/sites/{id}/{section}`: `summary`, `series` or a table (`pages`,
/// `entry_pages`, `exit_pages`, `browsers`, `os`, `devices`, `resolutions`, `event_categories`,
/// `event_actions`, `downloads`, `outlinks`). `?format=csv` for CSV.
pub(crate) async fn section(
    caller: Caller,
    State(state): State<AppState>,
    Path((site, section)): Path<(i64, String)>,
    Query(q): Query<RangeQuery>,
) -> Result<Response, ApiError> {
    caller.require(Scope::AnalyticsRead)?;
    let r = range(&state, site, &q)?;
    let csv = wants_csv(&q)?;
    let a = &state.analytics.analytics;
    match section.as_str() {
        "summary" | "series" => {
            let report = a
                .report(site, r.from, r.to, r.granularity, 1)
                .await
                .map_err(report_error)?;
            if section == "series" {
                if csv {
                    return Ok(csv_response(
                        &format!("site-{site}-series"),
                        series_csv(&report),
                    ));
                }
                return Ok(Json(report.series).into_response());
            }
            if csv {
                let s = &report.summary;
                return Ok(csv_response(
                    &format!("site-{site}-summary"),
                    format!(
                        "visits,unique_visitors,pageviews,actions,events,bounce_rate,avg_visit_duration_secs\n{},{},{},{},{},{:.4},{:.1}\n",
                        s.visits,
                        s.unique_visitors,
                        s.pageviews,
                        s.actions,
                        s.events,
                        s.bounce_rate,
                        s.avg_visit_duration_secs
                    ),
                ));
            }
            Ok(Json(report.summary).into_response())
        }
        name => {
            let rows = a
                .table(site, name, r.from, r.to, r.limit)
                .await
                .map_err(report_error)?;
            if csv {
                return Ok(csv_response(
                    &format!("site-{site}-{name}"),
                    rows_csv(&rows),
                ));
            }
            Ok(Json(rows).into_response())
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct VisitorRequest {
    site: i64,
    /// The value of the visitor's `_pk_id` cookie (its first 16 hexadecimal characters), as the
    /// opt-out page shows it.
    visitor_id: String,
}

fn visitor_not_found() -> ApiError {
    ApiError::new(
        ErrorCode::BadRequest,
        "visitor_id must be the 16 hexadecimal characters of the visitor's _pk_id cookie, and site a configured site",
    )
}

/// Appends an audit entry about one visitor's analytics data (actor, action, the analytics
/// purpose, a keyed commitment to the visitor — never the cookie value or the pseudonym in
/// clear). A read is not answered if it cannot be audited.
async fn audit_visitor(
    state: &AppState,
    caller: &Caller,
    action: &str,
    req: &VisitorRequest,
    details: serde_json::Value,
) -> Result<(), ApiError> {
    let a = &state.analytics.analytics;
    let purpose = a
        .policy
        .as_ref()
        .map(|p| p.purpose_id.as_str())
        .unwrap_or_default();
    let subject = tutela_analytics::visitor_audit_subject(req.site, &req.visitor_id);
    state
        .vault
        .audit_entry(
            &tutela_vault::Actor::new(caller.actor()),
            action,
            purpose,
            Some(&subject),
            details,
        )
        .await
        .map_err(|e| ApiError::internal("analytics rights: audit", e))
}

/// `POST /api/v1/analytics/visitors/find`: how many events, and which days, one visitor has.
pub(crate) async fn visitor_find(
    caller: Caller,
    State(state): State<AppState>,
    Json(req): Json<VisitorRequest>,
) -> Result<Response, ApiError> {
    caller.require(Scope::RightsRead)?;
    let events = state
        .analytics
        .analytics
        .visitor_events(req.site, req.visitor_id.trim())
        .await
        .map_err(|e| ApiError::internal("analytics rights: find", e))?
        .ok_or_else(visitor_not_found)?;
    audit_visitor(
        &state,
        &caller,
        "analytics_visitor_find",
        &req,
        serde_json::json!({ "site": req.site, "events": events.len() }),
    )
    .await?;
    let mut days: Vec<i64> = events.iter().map(|e| e.day).collect();
    days.dedup();
    Ok(Json(serde_json::json!({
        "site": req.site,
        "events": events.len(),
        "days": days.iter().filter_map(|d| tutela_analytics::day_from_number(*d)).map(|d| d.to_string()).collect::<Vec<_>>(),
        "note": "Only events of the current pseudonym period can be linked to a cookie value; older ones were pseudonymised with a salt that has been destroyed.",
    }))
    .into_response())
}

/// `POST /api/v1/analytics/visitors/export`: every stored event of one visitor (art. 15, 20).
pub(crate) async fn visitor_export(
    caller: Caller,
    State(state): State<AppState>,
    Json(req): Json<VisitorRequest>,
) -> Result<Response, ApiError> {
    caller.require(Scope::RightsRead)?;
    let events = state
        .analytics
        .analytics
        .visitor_events(req.site, req.visitor_id.trim())
        .await
        .map_err(|e| ApiError::internal("analytics rights: export", e))?
        .ok_or_else(visitor_not_found)?;
    audit_visitor(
        &state,
        &caller,
        "analytics_visitor_export",
        &req,
        serde_json::json!({ "site": req.site, "events": events.len() }),
    )
    .await?;
    let rows: Vec<serde_json::Value> = events
        .iter()
        .map(|e| {
            serde_json::json!({
                "time": jiff::Timestamp::from_second(e.ts).map(|t| t.to_string()).unwrap_or_default(),
                "visit_start": jiff::Timestamp::from_second(e.visit_start).map(|t| t.to_string()).unwrap_or_default(),
                "type": kind::name(e.kind),
                "url": e.url, "title": e.title,
                "event_category": e.ev_category, "event_action": e.ev_action,
                "event_name": e.ev_name, "event_value": e.ev_value,
                "referrer": e.referrer, "ip_prefix": e.ip_prefix,
                "browser": e.browser, "browser_version": e.browser_version,
                "os": e.os, "os_version": e.os_version,
                "device": e.device, "resolution": e.resolution,
            })
        })
        .collect();
    Ok(Json(serde_json::json!({
        "site": req.site,
        "purpose": state.analytics.analytics.policy.as_ref().map(|p| p.purpose_id.clone()),
        "events": rows,
    }))
    .into_response())
}

/// `POST /api/v1/analytics/visitors/erase`: deletes every stored event of one visitor (art. 17).
pub(crate) async fn visitor_erase(
    caller: Caller,
    State(state): State<AppState>,
    Json(req): Json<VisitorRequest>,
) -> Result<Response, ApiError> {
    caller.require(Scope::RightsWrite)?;
    let erased = state
        .analytics
        .analytics
        .erase_visitor(req.site, req.visitor_id.trim())
        .await
        .map_err(|e| ApiError::internal("analytics rights: erase", e))?
        .ok_or_else(visitor_not_found)?;
    tracing::info!(site = req.site, erased, actor = %caller.actor(), "analytics events of one visitor erased");
    audit_visitor(
        &state,
        &caller,
        "analytics_visitor_erase",
        &req,
        serde_json::json!({ "site": req.site, "erased": erased }),
    )
    .await?;
    Ok(Json(serde_json::json!({"site": req.site, "erased": erased})).into_response())
}
