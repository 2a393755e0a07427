//! The HTTP API, in Rundeck's paths and shapes.
//!
//! # Layout
//! - [`error`]: the one mapping from errors to statuses and Rundeck's error envelope.
//! - [`version`]: the `/api/{v}` version check (14..=59).
//! - [`system`], [`cluster`], [`projects`]: the resources.
//! - [`internal`]: member-to-member HTTP entry points (join), authenticated by the cluster
//!   secret instead of a token.
//!
//! Every route but `/health` requires authentication; the token middleware wraps the whole
//! `/api` tree, so a route added there cannot forget it.

pub mod cluster;
pub mod error;
pub mod executions;
pub mod internal;
pub mod jobs;
pub mod projects;
pub mod system;
pub mod version;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use serde::de::DeserializeOwned;
use steward_raft::Member;

pub use error::{ApiError, ApiResult};

use crate::auth::{self, AuthError, Principal};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub member: Member,
    /// Execution output (local directory or S3-compatible bucket).
    pub logs: crate::logs::LogStore,
    /// What this member's scheduler fired.
    pub fire_stats: Arc<std::sync::Mutex<crate::engine::scheduler::FireStats>>,
    pub started: Instant,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub data_dir: std::path::PathBuf,
    pub cluster_secret: Arc<str>,
    /// Asks the server to stop (used when this member leaves the cluster).
    pub stop: tokio::sync::watch::Sender<Option<crate::server::StopReason>>,
}

/// The full router: `/health`, the internal member routes and the token-protected `/api` tree.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/api/{v}/system/info", get(system::info))
        .route("/api/{v}/metrics/metrics", get(system::metrics))
        .route("/api/{v}/cluster/members", get(cluster::members))
        .route("/api/{v}/cluster/members/{id}", delete(cluster::remove))
        .route("/api/{v}/cluster/join", post(cluster::join_peer))
        .route("/api/{v}/projects", get(projects::list).post(projects::create))
        .route("/api/{v}/project/{project}/jobs", get(jobs::list))
        .route("/api/{v}/project/{project}/jobs/import", post(jobs::import))
        .route("/api/{v}/project/{project}/jobs/export", get(jobs::export))
        .route("/api/{v}/jobs/delete", post(jobs::bulk_delete).delete(jobs::bulk_delete))
        .route("/api/{v}/job/{id}", get(jobs::get).delete(jobs::delete))
        .route("/api/{v}/job/{id}/info", get(jobs::info))
        .route("/api/{v}/job/{id}/run", post(jobs::run))
        .route("/api/{v}/job/{id}/execution/enable", post(jobs::enable_execution))
        .route("/api/{v}/job/{id}/execution/disable", post(jobs::disable_execution))
        .route("/api/{v}/job/{id}/schedule/enable", post(jobs::enable_schedule))
        .route("/api/{v}/job/{id}/schedule/disable", post(jobs::disable_schedule))
        .route("/api/{v}/execution/{id}", get(executions::get))
        .route("/api/{v}/execution/{id}/output", get(executions::output))
        .route("/api/{v}/execution/{id}/state", get(executions::state))
        .route("/api/{v}/execution/{id}/abort", post(executions::abort))
        .route("/api/{v}/project/{project}/executions/running", get(executions::running))
        .route("/api/{v}/project/{project}/executions", get(executions::query))
        .route("/api/{v}/job/{id}/executions", get(executions::job_history).post(jobs::run))
        .route("/api/{v}/project/{name}", get(projects::get).delete(projects::delete))
        .route("/api/{v}/project/{name}/config", get(projects::get_config).put(projects::put_config))
        .route(
            "/api/{v}/project/{name}/config/{key}",
            get(projects::get_config_key).put(projects::put_config_key).delete(projects::delete_config_key),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/health", get(system::health))
        .route("/internal/cluster/join", post(internal::join))
        .route("/internal/cluster/check", post(internal::check))
        .merge(api)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "api.error.invalid.request", format!("no such resource: {}", uri.path()))
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "api.error.invalid.request",
        format!("method {method} is not allowed on {}", uri.path()),
    )
}

/// The token of a request: Rundeck's `X-Rundeck-Auth-Token` header, `Authorization: Bearer`,
/// or Rundeck's `authtoken` query parameter.
fn request_token(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    if let Some(v) = headers.get("x-rundeck-auth-token").and_then(|v| v.to_str().ok()) {
        return Some(v.trim().to_string());
    }
    if let Some(v) = headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        if let Some(t) = v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")) {
            return Some(t.trim().to_string());
        }
    }
    query?.split('&').find_map(|kv| kv.strip_prefix("authtoken=").map(|t| t.to_string()))
}

async fn require_token(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let Some(token) = request_token(req.headers(), req.uri().query()) else {
        return ApiError::unauthenticated(
            "an API token is required: send it in the X-Rundeck-Auth-Token header or as Authorization: Bearer",
        )
        .into_response();
    };
    match auth::authenticate(&state.member, &token).await {
        Ok(principal) => {
            req.extensions_mut().insert::<Principal>(principal);
            next.run(req).await
        }
        Err(AuthError::Unknown) => ApiError::unauthenticated("the API token is not valid").into_response(),
        Err(AuthError::Expired) => ApiError::unauthenticated("the API token has expired").into_response(),
        Err(AuthError::Cluster(e)) => ApiError::from(e).into_response(),
        Err(AuthError::Decode(e)) => ApiError::from(e).into_response(),
    }
}

/// A JSON body whose rejection (malformed JSON, wrong content type, wrong shape) is answered
/// with Rundeck's error envelope instead of axum's plain text.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "api.error.invalid.request",
                format!("invalid request body: {}", rejection.body_text()),
            )),
        }
    }
}

/// `http://{advertised http address}`: the base of the `url` fields Rundeck puts in responses.
pub fn base_url(state: &AppState) -> String {
    format!("http://{}", state.member.node().http_addr)
}

impl IntoResponse for ApiJson<serde_json::Value> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}
