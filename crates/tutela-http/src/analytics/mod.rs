//! Web analytics over HTTP: the Matomo-compatible collector and tracker, the opt-out page, the
//! reports API, the rights hooks and the dashboard.

mod api;
mod collect;
pub mod dashboard;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

use crate::AppState;

pub use collect::{OPTOUT_COOKIE, TRACKER_JS};

/// What the analytics routes share.
pub struct AnalyticsState {
    pub analytics: Arc<tutela_analytics::Analytics>,
    pub(crate) sessions: dashboard::Sessions,
}

impl AnalyticsState {
    pub fn new(analytics: Arc<tutela_analytics::Analytics>) -> Self {
        AnalyticsState {
            analytics,
            sessions: dashboard::Sessions::default(),
        }
    }
}

pub(crate) fn routes() -> Router<AppState> {
    let collector = get(collect::track)
        .post(collect::track)
        .options(collect::preflight)
        .layer(axum::extract::DefaultBodyLimit::max(
            tutela_analytics::params::MAX_BULK_BYTES,
        ));
    Router::new()
        .route("/matomo.php", collector.clone())
        .route("/piwik.php", collector)
        .route("/matomo.js", get(collect::tracker_js))
        .route("/piwik.js", get(collect::tracker_js))
        .route("/tutela.js", get(collect::tracker_js))
        .route(
            "/optout",
            get(collect::optout_page).post(collect::optout_post),
        )
        .route("/assets/dashboard.css", get(dashboard::css))
        .route("/analytics", get(dashboard::index))
        .route("/analytics/login", post(dashboard::login))
        .route("/analytics/logout", post(dashboard::logout))
        .route("/analytics/sites/{id}", get(dashboard::site))
        .route("/api/v1/analytics/sites", get(api::sites))
        .route("/api/v1/analytics/sites/{id}/report", get(api::report))
        .route("/api/v1/analytics/sites/{id}/{section}", get(api::section))
        .route("/api/v1/analytics/visitors/find", post(api::visitor_find))
        .route(
            "/api/v1/analytics/visitors/export",
            post(api::visitor_export),
        )
        .route("/api/v1/analytics/visitors/erase", post(api::visitor_erase))
}
