//! `ApiError`: the only place that maps an error to an HTTP status and the error envelope
//! `{"error": {"code", "message"}}`.
//!
//! Policy: every variant has an explicit status and a stable snake_case code that clients
//! switch on (docs/api.md lists them). Internal causes (database, I/O, panics) are logged
//! once here, with the request's span, and never sent to the client.

use actix_web::{HttpResponse, ResponseError, http::StatusCode, http::header};
use serde::Serialize;
use utoipa::ToSchema;

/// One field that failed validation.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub code: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &str, code: &str, message: impl Into<String>) -> Self {
        Self {
            field: field.to_string(),
            code: code.to_string(),
            message: message.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("a bearer access token is required")]
    Unauthenticated,
    #[error("the access token is invalid")]
    InvalidToken,
    #[error("the access token has expired; refresh it")]
    TokenExpired,
    #[error("this device has been revoked; sign in again on a registered device")]
    DeviceRevoked,
    #[error("this token was revoked (signed out, or the refresh token was reused); sign in again")]
    TokenRevoked,
    #[error("this account is deactivated")]
    AccountDisabled,
    #[error("wrong username or password")]
    InvalidCredentials,
    #[error("the refresh token is invalid or expired; sign in again")]
    InvalidRefreshToken,
    #[error(
        "this refresh token was already used; all tokens of this device are revoked, sign in again"
    )]
    RefreshTokenReused,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("the request failed validation")]
    Validation(Vec<FieldError>),
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("the request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("the request body did not arrive in time")]
    RequestTimeout,
    #[error("too many failed sign-in attempts; retry after {retry_after_secs} seconds")]
    TooManyLoginAttempts { retry_after_secs: u64 },
    #[error("the server is busy; retry after {retry_after_secs} seconds")]
    ServerBusy { retry_after_secs: u64 },
    #[error(
        "this account or device already has its share of uploads in flight; retry after {retry_after_secs} seconds"
    )]
    TooManyUploads { retry_after_secs: u64 },
    #[error("the database is unavailable; retry later")]
    DatabaseUnavailable,
    #[error("internal error")]
    Internal(String),
    /// A database error other than "not found" or a lost connection; a 500, kept typed
    /// so callers can retry the kinds that a concurrent writer causes.
    #[error("internal error")]
    Database(diesel::result::Error),
}

/// The error envelope every error response carries.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable snake_case code; clients switch on it.
    pub code: String,
    /// Human-readable explanation; may change between releases.
    pub message: String,
    /// Per-field problems, for `validation_failed`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldError>,
}

impl ApiError {
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        Self::Internal(cause.to_string())
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            message: message.into(),
        }
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::Forbidden(message.into())
    }

    pub fn validation(field: &str, code: &str, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::new(field, code, message)])
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthenticated => "unauthenticated",
            Self::InvalidToken => "invalid_token",
            Self::TokenExpired => "token_expired",
            Self::DeviceRevoked => "device_revoked",
            Self::TokenRevoked => "token_revoked",
            Self::AccountDisabled => "account_disabled",
            Self::InvalidCredentials => "invalid_credentials",
            Self::InvalidRefreshToken => "invalid_refresh_token",
            Self::RefreshTokenReused => "refresh_token_reused",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::BadRequest { code, .. } => code,
            Self::Validation(_) => "validation_failed",
            Self::Conflict { code, .. } => code,
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::RequestTimeout => "request_timeout",
            Self::TooManyLoginAttempts { .. } => "too_many_login_attempts",
            Self::ServerBusy { .. } => "server_busy",
            Self::TooManyUploads { .. } => "too_many_uploads",
            Self::DatabaseUnavailable => "database_unavailable",
            Self::Internal(_) | Self::Database(_) => "internal_error",
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            Self::TooManyLoginAttempts { retry_after_secs }
            | Self::ServerBusy { retry_after_secs }
            | Self::TooManyUploads { retry_after_secs } => Some(*retry_after_secs),
            Self::DatabaseUnavailable => Some(5),
            _ => None,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Unauthenticated
            | Self::InvalidToken
            | Self::TokenExpired
            | Self::DeviceRevoked
            | Self::TokenRevoked
            | Self::AccountDisabled
            | Self::InvalidCredentials
            | Self::InvalidRefreshToken
            | Self::RefreshTokenReused => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::TooManyLoginAttempts { .. } | Self::TooManyUploads { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            Self::ServerBusy { .. } | Self::DatabaseUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) | Self::Database(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        match self {
            Self::Internal(cause) => tracing::error!(error.cause = %cause, "internal error"),
            Self::Database(cause) => tracing::error!(error.cause = %cause, "database error"),
            Self::DatabaseUnavailable => tracing::warn!("database unavailable"),
            _ => tracing::debug!(
                error.code = self.code(),
                status = status.as_u16(),
                "request failed"
            ),
        }
        let fields = match self {
            Self::Validation(fields) => fields.clone(),
            _ => Vec::new(),
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code().to_string(),
                message: self.to_string(),
                fields,
            },
        };
        let mut response = HttpResponse::build(status);
        if let Some(secs) = self.retry_after() {
            response.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        if status == StatusCode::UNAUTHORIZED {
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        response.json(body)
    }
}

impl From<diesel::result::Error> for ApiError {
    fn from(e: diesel::result::Error) -> Self {
        match e {
            diesel::result::Error::NotFound => Self::NotFound("record"),
            diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::ClosedConnection,
                _,
            ) => Self::DatabaseUnavailable,
            // SQLite's write lock stayed taken past busy_timeout: the server is
            // overloaded, the request is safe to repeat later.
            diesel::result::Error::DatabaseError(_, ref info)
                if info.message().contains("database is locked")
                    || info.message().contains("database is busy") =>
            {
                Self::ServerBusy {
                    retry_after_secs: 5,
                }
            }
            other => Self::Database(other),
        }
    }
}

/// A server change that could not be made: the record is gone (404), the edit changed
/// nothing (409 `no_change`), it exists already (409 `record_exists`), or something the caller cannot fix (500, logged).
impl From<crate::records::CommitError> for ApiError {
    fn from(e: crate::records::CommitError) -> Self {
        use crate::records::CommitError;
        match e {
            CommitError::NotFound => Self::NotFound("record"),
            CommitError::Unchanged => Self::Conflict {
                code: "no_change",
                message: "the record already holds this value".into(),
            },
            CommitError::Exists => Self::Conflict {
                code: "record_exists",
                message: "a record with this id exists already".into(),
            },
            CommitError::Internal(e) => Self::internal(e),
            CommitError::Database(e) => e.into(),
            CommitError::Edit(e) => Self::internal(format!("server change not written: {e}")),
            CommitError::Verify(e) => Self::internal(format!("server change does not verify: {e}")),
        }
    }
}

impl From<actix_web::error::BlockingError> for ApiError {
    fn from(e: actix_web::error::BlockingError) -> Self {
        Self::Internal(format!("blocking task failed: {e}"))
    }
}

/// Builds the envelope for errors raised outside handlers (panics, unmatched routes).
pub fn envelope(status: StatusCode, code: &str, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(ErrorBody {
        error: ErrorDetail {
            code: code.to_string(),
            message: message.to_string(),
            fields: Vec::new(),
        },
    })
}
