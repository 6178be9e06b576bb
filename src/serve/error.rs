//! Errors as JSON: `{"error": "...", "hint": "..."}` with an HTTP status, worded as the commands word them.

use crate::error::Usage;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    error: String,
    hint: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, error: impl Into<String>) -> ApiError {
        ApiError {
            status,
            error: error.into(),
            hint: None,
        }
    }

    pub fn bad_request(error: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, error)
    }

    pub fn not_found(error: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, error)
    }

    pub fn message(&self) -> &str {
        &self.error
    }

    pub fn hint(mut self, hint: impl Into<String>) -> ApiError {
        self.hint = Some(hint.into());
        self
    }

    /// A question the commands would refuse with a usage error is a bad request; a database that does
    /// not answer is 503; anything else 500. The text never carries a password.
    pub fn from_error(e: anyhow::Error) -> ApiError {
        let text = crate::redact::redact(&format!("{e:#}"));
        if e.downcast_ref::<Usage>().is_some() {
            return ApiError::bad_request(text);
        }
        let closed = e.chain().any(|c| {
            c.downcast_ref::<tokio_postgres::Error>().is_some_and(|pg| {
                pg.is_closed()
                    || std::error::Error::source(pg).is_some_and(|s| s.is::<std::io::Error>())
            })
        });
        if closed {
            return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, text)
                .hint("the database did not answer; GET /healthz tells when it does again");
        }
        log::warn!("a request failed: {text}");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, text)
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> ApiError {
        ApiError::from_error(e)
    }
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(e: tokio_postgres::Error) -> ApiError {
        ApiError::from_error(e.into())
    }
}

impl From<serde_json::Error> for ApiError {
    fn from(e: serde_json::Error) -> ApiError {
        ApiError::from_error(e.into())
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(e: deadpool_postgres::PoolError) -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            crate::redact::redact(&format!("cannot get a connection to the database: {e}")),
        )
        .hint("the database did not answer; GET /healthz tells when it does again")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"error": self.error, "hint": self.hint})),
        )
            .into_response()
    }
}
