//! The error-code registry: every API error is JSON `{"code": "…", "message": "…"}` with the
//! HTTP status its code maps to.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Every error code Tutela's API can answer with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    NotFound,
    BadRequest,
    PayloadTooLarge,
    Unauthorized,
    Forbidden,
    /// The request's current state does not allow this (state machine), or it changed meanwhile.
    Conflict,
    /// An identity check failed (wrong, expired or used-up code, link or assertion).
    VerificationFailed,
    /// A browser request from an origin the configuration does not allow.
    OriginNotAllowed,
    /// The register does not declare what the request would store.
    NotDeclared,
    TooManyRequests,
    Unavailable,
    Internal,
    /// The purpose named is not in the register.
    UndeclaredPurpose,
    /// The category is not declared for that purpose.
    UndeclaredCategory,
    /// The category is marked `never_store` (e.g. payment cards).
    NeverStoreCategory,
    /// The payload holds what looks like a payment-card number.
    CardNumberRefused,
    /// No subject with that id or identifier.
    SubjectNotFound,
    /// No such record for that subject (or it is past its deadline).
    RecordNotFound,
    /// An identifier is malformed (kind unknown, not an e-mail, …).
    InvalidIdentifier,
    /// Identifiers belong to different subjects.
    IdentifierConflict,
    /// The anchor event does not apply to the purpose.
    EventNotApplicable,
}

impl ErrorCode {
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::Conflict => StatusCode::CONFLICT,
            ErrorCode::VerificationFailed => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::OriginNotAllowed => StatusCode::FORBIDDEN,
            ErrorCode::NotDeclared => StatusCode::CONFLICT,
            ErrorCode::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::UndeclaredPurpose
            | ErrorCode::UndeclaredCategory
            | ErrorCode::NeverStoreCategory
            | ErrorCode::CardNumberRefused
            | ErrorCode::EventNotApplicable => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::SubjectNotFound | ErrorCode::RecordNotFound => StatusCode::NOT_FOUND,
            ErrorCode::InvalidIdentifier => StatusCode::BAD_REQUEST,
            ErrorCode::IdentifierConflict => StatusCode::CONFLICT,
        }
    }
}

/// An error answered to an API client. The message is for people and never holds personal data.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
    }

    /// An internal failure: the cause goes to the log (it holds no personal data by the store's
    /// contract), the client gets a generic message.
    pub fn internal(context: &str, err: impl std::fmt::Display) -> Self {
        tracing::error!(context, error = %err, "internal error");
        ApiError::new(ErrorCode::Internal, "internal error; see the server log")
    }
}

impl From<tutela_vault::VaultError> for ApiError {
    fn from(e: tutela_vault::VaultError) -> Self {
        use tutela_vault::VaultError as V;
        let code = match &e {
            V::UndeclaredPurpose(_) => ErrorCode::UndeclaredPurpose,
            V::UndeclaredCategory { .. } => ErrorCode::UndeclaredCategory,
            V::NeverStoreCategory(_) => ErrorCode::NeverStoreCategory,
            V::CardNumberRefused { .. } => ErrorCode::CardNumberRefused,
            V::SubjectNotFound => ErrorCode::SubjectNotFound,
            V::RecordNotFound => ErrorCode::RecordNotFound,
            V::InvalidIdentifier(_) => ErrorCode::InvalidIdentifier,
            V::IdentifierConflict | V::IdentifierTaken | V::ConcurrentWrite => {
                ErrorCode::IdentifierConflict
            }
            V::EventNotApplicable { .. } => ErrorCode::EventNotApplicable,
            V::InvalidInput(_) | V::Deadline(_) => ErrorCode::BadRequest,
            // A master-key rotation happened since this node started: it refuses (nothing is
            // written) until it is restarted with the new key file. Not a 500: the data is safe
            // and the operator's fix is known, and the message says it.
            V::MasterKeyRotated | V::UnknownMasterKey(_) | V::WrappingKeyMismatch { .. } => {
                tracing::error!(error = %e, "vault refused: master key rotated");
                ErrorCode::Unavailable
            }
            V::Store(_) | V::Crypto(_) => return ApiError::internal("vault", &e),
        };
        // Vault messages never hold personal data (identifiers, payloads).
        ApiError::new(code, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.code.status(), axum::Json(self)).into_response()
    }
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such page or endpoint")
}
