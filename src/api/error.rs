//! The one place where errors become HTTP responses, in Rundeck's error envelope:
//! `{"error":true,"errorCode":"…","message":"…","apiversion":N}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use steward_raft::ClusterError;

use super::version::API_VERSION_MAX;

/// An API failure: a status, Rundeck's machine-readable code and a message for people.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds a client should wait before retrying (sent as `Retry-After`).
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), retry_after: None }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "api.error.invalid.request", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "api.error.item.doesnotexist", message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "api.error.item.alreadyexists", message)
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "api.error.unauthenticated", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "api.error.internal", message)
    }

    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        ApiError { retry_after: Some(1), ..Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message) }
    }
}

impl From<ClusterError> for ApiError {
    fn from(e: ClusterError) -> Self {
        match &e {
            ClusterError::NoLeader => ApiError::unavailable("api.error.cluster.no-leader", e.to_string()),
            ClusterError::Timeout => ApiError::unavailable("api.error.cluster.timeout", e.to_string()),
            ClusterError::Unreachable { .. } => ApiError::unavailable("api.error.cluster.unreachable", e.to_string()),
            ClusterError::Rejected(m) => ApiError::bad_request(m.clone()),
            ClusterError::Fatal(_) | ClusterError::Storage(_) => {
                tracing::error!(error = %e, "request failed on a fatal error");
                ApiError::unavailable("api.error.member.stopped", e.to_string())
            }
        }
    }
}

impl From<crate::codec::DecodeError> for ApiError {
    fn from(e: crate::codec::DecodeError) -> Self {
        tracing::error!(error = %e, "unreadable stored record");
        ApiError::internal(format!("a stored record could not be read: {e}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "error": true,
            "errorCode": self.code,
            "message": self.message,
            "apiversion": API_VERSION_MAX,
        });
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
