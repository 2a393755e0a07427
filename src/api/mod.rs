//! The HTTP API, in Rundeck's paths and shapes.
//!
//! # Layout
//! - [`error`]: the one mapping from errors to statuses and Rundeck's error envelope.
//! - [`version`]: the `/api/{v}` version check (14..=59).
//! - [`authz`]: what each route requires ([`authz::Perm`]) and the middleware that checks it.
//! - [`system`], [`cluster`], [`projects`]: the resources; [`storage`] key storage;
//!   [`tokens`] and [`users`] API tokens, users and the form login; [`acl`] ACL policies.
//! - [`internal`]: member-to-member HTTP entry points (join), authenticated by the cluster
//!   secret instead of a token.
//!
//! Every route but `/health`, `/j_security_check` and the internal ones requires
//! authentication (an API token or a session cookie): that middleware wraps the whole `/api`
//! tree. Every `/api` route is a line of [`ROUTES`], which pairs it with the permission it
//! requires; the router is built from that table (a route cannot be added without one) and the
//! authorization test walks it.

pub mod acl;
pub mod authz;
pub mod cluster;
pub mod error;
pub mod executions;
pub mod internal;
pub mod jobs;
pub mod projects;
pub mod scheduler;
pub mod storage;
pub mod system;
pub mod tokens;
pub mod users;
pub mod version;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{on, post, MethodFilter};
use axum::Router;
use serde::de::DeserializeOwned;
use steward_raft::Member;

pub use error::{ApiError, ApiResult};

use crate::auth::session::{self, Sessions};
use crate::auth::{self, Principal};
use authz::{Perm, RouteSpec};

/// What every handler can reach: a handle, cloned for every request (axum's `State` and each
/// middleware layer clone it), so one `Arc` rather than a dozen.
#[derive(Clone)]
pub struct AppState(Arc<AppStateInner>);

impl AppState {
    pub fn new(inner: AppStateInner) -> AppState {
        AppState(Arc::new(inner))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppStateInner;
    fn deref(&self) -> &AppStateInner {
        &self.0
    }
}

/// The fields of [`AppState`].
pub struct AppStateInner {
    pub member: Member,
    /// Execution output (local directory or S3-compatible bucket).
    pub logs: crate::logs::LogStore,
    /// What this member's scheduler fired.
    pub fire_stats: Arc<std::sync::Mutex<crate::engine::scheduler::FireStats>>,
    /// The executions whose steps run, and those waiting for a free slot.
    pub slots: Arc<crate::engine::runner::Slots>,
    pub started: Instant,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub data_dir: std::path::PathBuf,
    pub cluster_secret: Arc<str>,
    /// Asks the server to stop (used when this member leaves the cluster).
    pub stop: tokio::sync::watch::Sender<Option<crate::server::StopReason>>,
    /// Key storage, with this member's keyring.
    pub keys: crate::keys::KeyStore,
    /// The ACL policies.
    pub acl: Arc<crate::acl::Authorizer>,
    /// Browser sessions.
    pub sessions: Arc<Sessions>,
    /// Which member runs an execution; through it, the heartbeats (who is alive).
    pub placer: Arc<crate::cluster::Placer>,
    /// The longest lifetime of an API token; `None` for no limit.
    pub token_max_duration: Option<std::time::Duration>,
}

/// Declares the `/api` routes once: [`ROUTES`] (method, path, permission) and the router built
/// from it, each route behind the authorization middleware of its own line.
macro_rules! api_routes {
    ($($method:ident $path:literal, $perm:expr => $handler:expr;)*) => {
        /// Every `/api` route with the permission it requires.
        pub static ROUTES: &[RouteSpec] = &[$(RouteSpec { method: stringify!($method), path: $path, perm: $perm },)*];

        fn api_router(state: &AppState) -> Router<AppState> {
            let mut router = Router::new();
            let mut specs = ROUTES.iter();
            $(
                let spec: &'static RouteSpec = specs.next().expect("one spec per route");
                let layer = middleware::from_fn_with_state((state.clone(), spec), authz::authorize);
                router = router.route($path, on(MethodFilter::$method, $handler).route_layer(layer));
            )*
            router
        }
    };
}

api_routes! {
    GET "/api/{v}/system/info", Perm::App { kind: "system", action: "read" } => system::info;
    GET "/api/{v}/cluster/members", Perm::App { kind: "system", action: "read" } => cluster::members;
    DELETE "/api/{v}/cluster/members/{id}", Perm::App { kind: "system", action: "admin" } => cluster::remove;
    POST "/api/{v}/system/keys/rekey", Perm::App { kind: "system", action: "admin" } => storage::rekey;
    POST "/api/{v}/system/executions/enable", Perm::App { kind: "system", action: "enable_executions" } => system::enable_executions;
    POST "/api/{v}/system/executions/disable", Perm::App { kind: "system", action: "disable_executions" } => system::disable_executions;
    GET "/api/{v}/system/executions/status", Perm::App { kind: "system", action: "read" } => system::executions_status;
    POST "/api/{v}/enterprise/cluster/executions/enable", Perm::App { kind: "system", action: "enable_executions" } => system::cluster_enable_executions;
    POST "/api/{v}/enterprise/cluster/executions/disable", Perm::App { kind: "system", action: "disable_executions" } => system::cluster_disable_executions;
    PUT "/api/{v}/scheduler/takeover", Perm::App { kind: "job", action: "admin" } => scheduler::takeover;
    GET "/api/{v}/scheduler/jobs", Perm::Filtered => scheduler::my_jobs;
    GET "/api/{v}/scheduler/server/{id}/jobs", Perm::Filtered => scheduler::server_jobs;

    GET "/api/{v}/projects", Perm::Filtered => projects::list;
    POST "/api/{v}/projects", Perm::App { kind: "project", action: "create" } => projects::create;
    GET "/api/{v}/project/{p}", Perm::Project("read") => projects::get;
    DELETE "/api/{v}/project/{p}", Perm::Project("delete") => projects::delete;
    GET "/api/{v}/project/{p}/config", Perm::Project("configure") => projects::get_config;
    PUT "/api/{v}/project/{p}/config", Perm::Project("configure") => projects::put_config;
    GET "/api/{v}/project/{p}/config/{key}", Perm::Project("configure") => projects::get_config_key;
    PUT "/api/{v}/project/{p}/config/{key}", Perm::Project("configure") => projects::put_config_key;
    DELETE "/api/{v}/project/{p}/config/{key}", Perm::Project("configure") => projects::delete_config_key;

    GET "/api/{v}/metrics/metrics", Perm::App { kind: "system", action: "read" } => system::metrics;
    POST "/api/{v}/cluster/join", Perm::App { kind: "system", action: "admin" } => cluster::join_peer;

    GET "/api/{v}/project/{p}/jobs", Perm::Project("read") => jobs::list;
    POST "/api/{v}/project/{p}/jobs/import", Perm::InProject { kind: "job", action: "create" } => jobs::import;
    GET "/api/{v}/project/{p}/jobs/export", Perm::Project("read") => jobs::export;
    POST "/api/{v}/jobs/delete", Perm::InHandler => jobs::bulk_delete;
    DELETE "/api/{v}/jobs/delete", Perm::InHandler => jobs::bulk_delete;
    GET "/api/{v}/job/{id}", Perm::InHandler => jobs::get;
    DELETE "/api/{v}/job/{id}", Perm::InHandler => jobs::delete;
    GET "/api/{v}/job/{id}/info", Perm::InHandler => jobs::info;
    POST "/api/{v}/job/{id}/run", Perm::InHandler => jobs::run;
    POST "/api/{v}/job/{id}/executions", Perm::InHandler => jobs::run;
    GET "/api/{v}/job/{id}/executions", Perm::InHandler => executions::job_history;
    DELETE "/api/{v}/job/{id}/executions", Perm::InHandler => executions::delete_job_history;
    GET "/api/{v}/job/{id}/fires", Perm::InHandler => executions::job_fires;
    POST "/api/{v}/job/{id}/execution/enable", Perm::InHandler => jobs::enable_execution;
    POST "/api/{v}/job/{id}/execution/disable", Perm::InHandler => jobs::disable_execution;
    POST "/api/{v}/job/{id}/schedule/enable", Perm::InHandler => jobs::enable_schedule;
    POST "/api/{v}/job/{id}/schedule/disable", Perm::InHandler => jobs::disable_schedule;

    GET "/api/{v}/execution/{id}", Perm::InHandler => executions::get;
    GET "/api/{v}/execution/{id}/state", Perm::InHandler => executions::state;
    GET "/api/{v}/execution/{id}/output", Perm::InHandler => executions::output;
    POST "/api/{v}/execution/{id}/abort", Perm::InHandler => executions::abort;
    DELETE "/api/{v}/execution/{id}", Perm::InHandler => executions::delete;
    POST "/api/{v}/executions/delete", Perm::InHandler => executions::delete_bulk;
    GET "/api/{v}/project/{p}/executions/running", Perm::Filtered => executions::running;
    GET "/api/{v}/project/{p}/executions", Perm::Project("read") => executions::query;

    GET "/api/{v}/storage/keys", Perm::Storage("read") => storage::get_root;
    GET "/api/{v}/storage/keys/", Perm::Storage("read") => storage::get_root;
    GET "/api/{v}/storage/keys/{*path}", Perm::Storage("read") => storage::get;
    POST "/api/{v}/storage/keys/{*path}", Perm::Storage("create") => storage::create;
    PUT "/api/{v}/storage/keys/{*path}", Perm::Storage("update") => storage::update;
    DELETE "/api/{v}/storage/keys/{*path}", Perm::Storage("delete") => storage::delete;

    GET "/api/{v}/tokens", Perm::App { kind: "apitoken", action: "generate_user_token" } => tokens::list;
    POST "/api/{v}/tokens", Perm::App { kind: "apitoken", action: "generate_user_token" } => tokens::create;
    GET "/api/{v}/tokens/{user}", Perm::App { kind: "apitoken", action: "generate_user_token" } => tokens::list_user;
    POST "/api/{v}/tokens/{user}", Perm::App { kind: "apitoken", action: "generate_user_token" } => tokens::create_user;
    GET "/api/{v}/token/{id}", Perm::App { kind: "apitoken", action: "generate_user_token" } => tokens::get;
    DELETE "/api/{v}/token/{id}", Perm::App { kind: "apitoken", action: "generate_user_token" } => tokens::delete;

    GET "/api/{v}/user/info", Perm::Authenticated => users::info_self;
    GET "/api/{v}/user/info/{user}", Perm::App { kind: "user", action: "admin" } => users::info;
    GET "/api/{v}/user/list", Perm::App { kind: "user", action: "admin" } => users::list;
    GET "/api/{v}/user/roles", Perm::Authenticated => users::roles;
    POST "/api/{v}/users", Perm::App { kind: "user", action: "admin" } => users::create;
    PUT "/api/{v}/users/{user}", Perm::App { kind: "user", action: "admin" } => users::update;
    DELETE "/api/{v}/users/{user}", Perm::App { kind: "user", action: "admin" } => users::delete;

    GET "/api/{v}/system/acl", Perm::App { kind: "system_acl", action: "read" } => acl::list_system;
    GET "/api/{v}/system/acl/", Perm::App { kind: "system_acl", action: "read" } => acl::list_system;
    GET "/api/{v}/system/acl/{name}", Perm::App { kind: "system_acl", action: "read" } => acl::get_system;
    POST "/api/{v}/system/acl/{name}", Perm::App { kind: "system_acl", action: "create" } => acl::create_system;
    PUT "/api/{v}/system/acl/{name}", Perm::App { kind: "system_acl", action: "update" } => acl::update_system;
    DELETE "/api/{v}/system/acl/{name}", Perm::App { kind: "system_acl", action: "delete" } => acl::delete_system;
    GET "/api/{v}/project/{p}/acl", Perm::ProjectAcl("read") => acl::list_project;
    GET "/api/{v}/project/{p}/acl/", Perm::ProjectAcl("read") => acl::list_project;
    GET "/api/{v}/project/{p}/acl/{name}", Perm::ProjectAcl("read") => acl::get_project;
    POST "/api/{v}/project/{p}/acl/{name}", Perm::ProjectAcl("create") => acl::create_project;
    PUT "/api/{v}/project/{p}/acl/{name}", Perm::ProjectAcl("update") => acl::update_project;
    DELETE "/api/{v}/project/{p}/acl/{name}", Perm::ProjectAcl("delete") => acl::delete_project;
}

/// The full router: `/health`, the form login, the internal member routes and the
/// authenticated `/api` tree.
pub fn router(state: AppState) -> Router {
    let api = api_router(&state).route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    Router::new()
        .route("/health", on(MethodFilter::GET, system::health))
        .route("/j_security_check", post(users::login))
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

/// Who the caller is: an API token if one is sent, else a session cookie.
async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let found = match request_token(req.headers(), req.uri().query()) {
        Some(token) => auth::authenticate(&state.member, &token).await,
        None => {
            let cookie = req
                .headers()
                .get_all(axum::http::header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(|h| session::cookie_value(h, session::COOKIE).map(str::to_string));
            match cookie {
                Some(c) => state.sessions.verify(&c).await,
                None => {
                    return ApiError::unauthenticated(
                        "authentication is required: send an API token in the X-Rundeck-Auth-Token header (or as \
                         Authorization: Bearer), or log in at /j_security_check",
                    )
                    .into_response()
                }
            }
        }
    };
    match found {
        Ok(principal) => {
            req.extensions_mut().insert::<Principal>(principal);
            next.run(req).await
        }
        Err(e) => ApiError::from(e).into_response(),
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
