//! The API version in every `/api/{v}/…` path: Rundeck accepts 14 through 59.

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use std::collections::HashMap;

use super::error::ApiError;

pub const API_VERSION_MIN: u32 = 14;
pub const API_VERSION_MAX: u32 = 59;

/// The validated API version of a request.
#[derive(Debug, Clone, Copy)]
pub struct ApiVersion(pub u32);

impl<S: Send + Sync> FromRequestParts<S> for ApiVersion {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let params = Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let raw = params.get("v").cloned().unwrap_or_default();
        match raw.parse::<u32>() {
            Ok(v) if (API_VERSION_MIN..=API_VERSION_MAX).contains(&v) => Ok(ApiVersion(v)),
            _ => Err(ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "api.error.api-version.unsupported",
                format!(
                    "Unsupported API Version \"{raw}\". API Request: {}. Reason: supported versions are \
                     {API_VERSION_MIN} to {API_VERSION_MAX}",
                    parts.uri.path()
                ),
            )),
        }
    }
}
