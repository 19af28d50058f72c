//! Bearer-token authentication for the API: `Authorization: Bearer tutela_<id>_<secret>`.
//!
//! Handlers take a [`Caller`] and call [`Caller::require`] with the scope they need.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use tutela_crypto::token;
use tutela_domain::scope::Scope;

use crate::AppState;
use crate::error::{ApiError, ErrorCode};

/// The authenticated client of an API call.
#[derive(Clone, Debug)]
pub struct Caller {
    pub token_id: String,
    pub token_name: String,
    pub scopes: Vec<Scope>,
}

impl Caller {
    /// Refuses the call (403) unless the token holds `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.scopes.iter().any(|s| s.grants(scope)) {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::Forbidden,
                format!("this token lacks the `{scope}` scope"),
            ))
        }
    }

    /// The actor recorded in the audit log for this caller.
    pub fn actor(&self) -> String {
        format!("token:{}", self.token_id)
    }
}

/// A 401 with the challenge header RFC 6750 asks for.
pub struct Unauthorized(ApiError);

impl IntoResponse for Unauthorized {
    fn into_response(self) -> Response {
        let mut res = self.0.into_response();
        res.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"tutela\""),
        );
        res
    }
}

fn unauthorized(message: &str) -> Unauthorized {
    Unauthorized(ApiError::new(ErrorCode::Unauthorized, message))
}

/// Reads and checks the bearer token of a request.
pub async fn authenticate(state: &AppState, presented: &str) -> Result<Caller, Unauthorized> {
    let Some((id, secret)) = token::parse_token(presented) else {
        return Err(unauthorized("malformed API token"));
    };
    let stored = state
        .store
        .api_token(id)
        .await
        .map_err(|e| Unauthorized(ApiError::internal("token lookup", e)))?;
    let now = jiff::Timestamp::now().as_second();
    let Some(stored) = stored else {
        // Same work as for a known token, so timing does not tell which ids exist.
        let _ = token::verify_secret(secret, &[0u8; 32]);
        return Err(unauthorized("invalid API token"));
    };
    if !token::verify_secret(secret, &stored.secret_hash) {
        return Err(unauthorized("invalid API token"));
    }
    if !stored.is_active(now) {
        return Err(unauthorized("this API token was revoked or has expired"));
    }
    if let Err(err) = state.store.touch_api_token(&stored.id, now).await {
        tracing::warn!(error = %err, "could not record token use");
    }
    Ok(Caller {
        token_id: stored.id,
        token_name: stored.name,
        scopes: stored
            .scopes
            .iter()
            .filter_map(|s| s.parse().ok())
            .collect(),
    })
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Unauthorized;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let value = parts.headers.get(header::AUTHORIZATION).ok_or_else(|| {
            unauthorized("this endpoint needs an API token: Authorization: Bearer …")
        })?;
        let value = value
            .to_str()
            .map_err(|_| unauthorized("malformed Authorization header"))?;
        let presented = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| unauthorized("the Authorization header must be `Bearer <token>`"))?;
        authenticate(state, presented.trim()).await
    }
}

pub(crate) fn routes() -> axum::Router<AppState> {
    axum::Router::new().route("/api/v1/token", axum::routing::get(whoami))
}

/// Tells a client which token it uses and what it may do (no secret is echoed).
async fn whoami(caller: Caller) -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({
        "id": caller.token_id,
        "name": caller.token_name,
        "scopes": caller.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
    }))
}
