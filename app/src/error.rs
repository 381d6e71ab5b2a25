//! One application error, shared by server functions, the REST API and the UI.
//!
//! Every variant maps to one HTTP status. Internal details never leave the server: the
//! `Internal` variant carries only a request-safe message, the cause is logged where it happens.

use serde::{Deserialize, Serialize};
use server_fn::{codec::JsonEncoding, error::{FromServerFnError, ServerFnErrorErr}};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum AppError {
    /// The input is malformed; `field` names the offending field when there is one.
    #[error("{message}")]
    Validation { field: Option<String>, message: String },
    /// The input conflicts with existing data (a duplicate name, ...).
    #[error("{message}")]
    Conflict { field: Option<String>, message: String },
    #[error("Please sign in to continue.")]
    Unauthorized,
    /// A sign-in with an email and password that do not match an account (which of the two
    /// is wrong is not said).
    #[error("That email and password do not match an account.")]
    InvalidCredentials,
    #[error("{message}")]
    Forbidden { message: String },
    #[error("{what} not found.")]
    NotFound { what: String },
    #[error("Too many attempts. Try again in {retry_after_secs} seconds.")]
    RateLimited { retry_after_secs: u64 },
    /// Too many of something held open at once (live streams): nothing to wait out, something
    /// to close; the message says what.
    #[error("{message}")]
    TooMany { message: String },
    /// A plan limit stops the action; the message says what to upgrade.
    #[error("{message}")]
    PlanLimit { message: String },
    /// The request body is larger than this platform accepts.
    #[error("{message}")]
    TooLarge { message: String },
    #[error("Something went wrong on our side. Please try again.")]
    Internal,
    /// The platform cannot reach its database for now; it recovers by itself.
    #[error("Roundhouse cannot reach its database right now and is recovering. Try again in a few seconds.")]
    Unavailable,
    /// The request could not reach the server or was not understood.
    #[error("{message}")]
    Transport { message: String },
}

impl AppError {
    pub fn validation(field: &str, message: impl Into<String>) -> Self {
        AppError::Validation { field: Some(field.to_string()), message: message.into() }
    }
    pub fn conflict(field: &str, message: impl Into<String>) -> Self {
        AppError::Conflict { field: Some(field.to_string()), message: message.into() }
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        AppError::Forbidden { message: message.into() }
    }
    pub fn not_found(what: impl Into<String>) -> Self {
        AppError::NotFound { what: what.into() }
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> u16 {
        match self {
            AppError::Validation { .. } => 422,
            AppError::Conflict { .. } => 409,
            AppError::Unauthorized | AppError::InvalidCredentials => 401,
            AppError::Forbidden { .. } => 403,
            AppError::NotFound { .. } => 404,
            AppError::RateLimited { .. } | AppError::TooMany { .. } => 429,
            AppError::PlanLimit { .. } => 402,
            AppError::TooLarge { .. } => 413,
            AppError::Internal => 500,
            AppError::Unavailable => 503,
            AppError::Transport { .. } => 400,
        }
    }

    /// A stable, machine-readable code for API clients.
    pub fn code(&self) -> &'static str {
        match self {
            AppError::Validation { .. } => "validation_failed",
            AppError::Conflict { .. } => "conflict",
            AppError::Unauthorized => "unauthorized",
            AppError::InvalidCredentials => "invalid_credentials",
            AppError::Forbidden { .. } => "forbidden",
            AppError::NotFound { .. } => "not_found",
            AppError::RateLimited { .. } => "rate_limited",
            AppError::TooMany { .. } => "too_many",
            AppError::PlanLimit { .. } => "plan_limit",
            AppError::TooLarge { .. } => "too_large",
            AppError::Internal => "internal",
            AppError::Unavailable => "unavailable",
            AppError::Transport { .. } => "bad_request",
        }
    }

    /// The field the error is about, for forms.
    pub fn field(&self) -> Option<&str> {
        match self {
            AppError::Validation { field, .. } | AppError::Conflict { field, .. } => field.as_deref(),
            _ => None,
        }
    }
}

impl FromServerFnError for AppError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        AppError::Transport { message: value.to_string() }
    }
}

pub type AppResult<T> = Result<T, AppError>;

#[cfg(feature = "ssr")]
mod ssr {
    use super::AppError;

    impl From<sqlx::Error> for AppError {
        fn from(err: sqlx::Error) -> Self {
            if crate::infra::db::is_unavailable(&err) {
                tracing::warn!(error = %err, "the database is unreachable");
                return AppError::Unavailable;
            }
            tracing::error!(error = %err, "database error");
            AppError::Internal
        }
    }

    impl From<anyhow::Error> for AppError {
        fn from(err: anyhow::Error) -> Self {
            tracing::error!(error = format!("{err:#}"), "internal error");
            AppError::Internal
        }
    }
}

#[cfg(feature = "ssr")]
mod http_response {
    use super::AppError;
    use axum::{
        extract::rejection::{JsonRejection, PathRejection, QueryRejection},
        http::{header, HeaderValue, StatusCode},
        response::{IntoResponse, Response},
    };

    /// `{"error": {"code": "...", "message": "...", "field": "..."}}` with the variant's status.
    impl IntoResponse for AppError {
        fn into_response(self) -> Response {
            let status = StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut error = serde_json::json!({ "code": self.code(), "message": self.to_string() });
            if let Some(field) = self.field() {
                error["field"] = serde_json::Value::String(field.to_string());
            }
            let mut response = (status, axum::Json(serde_json::json!({ "error": error }))).into_response();
            let retry_after = match self {
                AppError::RateLimited { retry_after_secs } => Some(retry_after_secs),
                AppError::Unavailable => Some(crate::infra::db::RETRY_AFTER_SECS),
                _ => None,
            };
            if let Some(Ok(v)) = retry_after.map(|secs| HeaderValue::from_str(&secs.to_string())) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
            response
        }
    }

    impl From<JsonRejection> for AppError {
        fn from(rejection: JsonRejection) -> Self {
            AppError::Validation { field: None, message: format!("The request body is not valid: {}", rejection.body_text()) }
        }
    }

    impl From<QueryRejection> for AppError {
        fn from(rejection: QueryRejection) -> Self {
            AppError::Validation { field: None, message: format!("The query string is not valid: {}", rejection.body_text()) }
        }
    }

    /// A path that does not parse (say, a malformed id) names nothing that exists.
    impl From<PathRejection> for AppError {
        fn from(_: PathRejection) -> Self {
            AppError::not_found("Resource")
        }
    }
}
