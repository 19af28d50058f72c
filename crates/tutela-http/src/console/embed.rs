//! Pages of other areas shown inside the console's layout (header, navigation, sign-out), for
//! operators signed in to the console: the analytics dashboard.

use askama::Template;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use tutela_domain::operator::Permission;

use super::web::{Chrome, signed_from_headers};
use crate::AppState;

#[derive(Template)]
#[template(path = "console/embedded.html")]
struct Embedded {
    chrome: Chrome,
    /// Trusted HTML, escaped by whoever built it.
    body: String,
    stylesheet: &'static str,
}

/// `body(fr)` inside the console's layout when a console operator is fully signed in on this
/// request and their role holds `permission`; the console's 403 page when it does not; None when
/// no console operator is signed in (the caller then tries its own authentication).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn in_console(
    state: &AppState,
    headers: &HeaderMap,
    query_lang: Option<&str>,
    permission: Permission,
    title: (&str, &str),
    current: &str,
    stylesheet: &'static str,
    body: impl FnOnce(bool) -> String,
) -> Option<Response> {
    let signed = signed_from_headers(state, headers, query_lang).await.ok()?;
    if let Err(refused) = signed.require(permission) {
        return Some(refused.into_response());
    }
    let fr = signed.t.code == "fr";
    let page = Embedded {
        chrome: signed.chrome(state, if fr { title.1 } else { title.0 }, current),
        body: body(fr),
        stylesheet,
    };
    Some(super::web::render(&page))
}
