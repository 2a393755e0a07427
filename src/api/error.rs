//! The one place where errors become HTTP responses, in Rundeck's error envelope:
//! `{"error":true,"errorCode":"…","message":"…","apiversion":N}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use steward_raft::ClusterError;

use super::version::API_VERSION_MAX;
use crate::acl::{AclError, PolicyError};
use crate::auth::AuthError;
use crate::keys::rekey::RekeyError;
use crate::keys::{CryptoError, KeyError};

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

    /// An authenticated caller whose ACL policies do not allow the action (Rundeck's code).
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "api.error.item.unauthorized", message)
    }

    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "api.error.invalid.request", message)
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "api.error.invalid.request", message)
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
            ClusterError::Indeterminate(_) => ApiError::unavailable("api.error.cluster.indeterminate", e.to_string()),
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

impl From<KeyError> for ApiError {
    fn from(e: KeyError) -> Self {
        let msg = e.to_string();
        match e {
            KeyError::InvalidPath(_) | KeyError::Empty => ApiError::bad_request(msg),
            KeyError::TooLarge { .. } => ApiError::too_large(msg),
            KeyError::UnsupportedType(_) => ApiError::unsupported_media_type(msg),
            KeyError::Exists(_) => ApiError::conflict(msg),
            KeyError::Conflict(_) => ApiError::new(StatusCode::CONFLICT, "api.error.item.conflict", msg),
            KeyError::NotFound(_) => ApiError::not_found(msg),
            KeyError::WriteOnly(_) => ApiError::forbidden(msg),
            // Another member may hold the key: retryable there, not a failure of the request.
            KeyError::Crypto(CryptoError::UnknownKey(_)) => {
                tracing::error!(error = %msg, "a stored secret is sealed under a master key this member lacks");
                ApiError::unavailable("api.error.keys.master-key-missing", msg)
            }
            KeyError::Crypto(_) | KeyError::Corrupt(..) => {
                tracing::error!(error = %msg, "a stored secret could not be opened");
                ApiError::internal(msg)
            }
            KeyError::Cluster(c) => c.into(),
            KeyError::Decode(d) => d.into(),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Unknown => ApiError::unauthenticated("the API token is not valid"),
            AuthError::Expired | AuthError::BadSession | AuthError::BadLogin => {
                ApiError::unauthenticated(e.to_string())
            }
            AuthError::Cluster(c) => c.into(),
            AuthError::Decode(d) => d.into(),
            AuthError::Key(k) => k.into(),
            AuthError::Internal(m) => {
                tracing::error!(error = %m, "authentication failed internally");
                ApiError::internal(m)
            }
        }
    }
}

impl From<AclError> for ApiError {
    fn from(e: AclError) -> Self {
        match e {
            AclError::Cluster(c) => c.into(),
            AclError::Decode(d) => d.into(),
        }
    }
}

impl From<PolicyError> for ApiError {
    fn from(e: PolicyError) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "api.error.invalid.request", e.to_string())
    }
}

impl From<RekeyError> for ApiError {
    fn from(e: RekeyError) -> Self {
        match e {
            RekeyError::Key(k) => k.into(),
            other => ApiError::new(StatusCode::CONFLICT, "api.error.keys.rekey", other.to_string()),
        }
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
