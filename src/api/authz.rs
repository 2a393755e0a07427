//! Authorization of API routes: what each route requires ([`Perm`]), the middleware that checks
//! it before the handler runs, and helpers for handlers that decide per item.
//!
//! The route table in `api/mod.rs` pairs every `/api` route with a [`Perm`]; the router is built
//! from that table and the authorization test walks it, so a route cannot be added without
//! saying what it requires. Adding a route is one line there, e.g. for jobs:
//!
//! ```text
//! GET  "/api/{v}/project/{p}/jobs", Perm::Project("read") => jobs::list;   // then authz::allowed per job
//! POST "/api/{v}/project/{p}/jobs/import", Perm::InProject { kind: "job", action: "create" } => jobs::import;
//! POST "/api/{v}/job/{id}/run", Perm::InHandler => jobs::run;
//!      // the handler loads the job, then: authz::require(&state, &principal,
//!      //     Context::Project(&job.project), &Resource::job(&name, &group, &id), "run")?
//! ```

use axum::extract::{RawPathParams, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::RequestExt;

use super::{ApiError, ApiResult, AppState};
use crate::acl::{Context, Decision, Resource, Subject};
use crate::auth::Principal;

/// What a route requires beyond authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Perm {
    /// Any authenticated caller: the route only shows the caller's own data.
    Authenticated,
    /// Any authenticated caller: the handler returns only the items the caller may read.
    Filtered,
    /// The handler authorizes once it has loaded the resource (e.g. a job by id, whose project is
    /// not in the path) with [`require`].
    InHandler,
    /// A generic application resource: `for: resource: - equals: {kind: KIND}`.
    App { kind: &'static str, action: &'static str },
    /// The `project` named by the `{p}` path parameter (application context).
    Project(&'static str),
    /// The ACL policies of the `{p}` project (application context, `project_acl`).
    ProjectAcl(&'static str),
    /// The key storage path of the `{*path}` parameter (the root without it).
    Storage(&'static str),
    /// A generic resource of `kind` in the `{p}` project (project context), e.g. job create.
    InProject { kind: &'static str, action: &'static str },
    /// Adhoc commands in the `{p}` project (project context).
    Adhoc(&'static str),
}

/// One API route: method, axum path and requirement.
#[derive(Debug, Clone, Copy)]
pub struct RouteSpec {
    pub method: &'static str,
    pub path: &'static str,
    pub perm: Perm,
}

/// Where a [`Perm`] is decided: the application, or a project by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Where {
    Application,
    Project(String),
}

impl Where {
    pub fn context(&self) -> Context<'_> {
        match self {
            Where::Application => Context::Application,
            Where::Project(p) => Context::Project(p),
        }
    }
}

/// The context, resource and action a [`Perm`] stands for, given the route's path parameters;
/// `None` for the variants that need no decision before the handler.
pub fn target(perm: Perm, param: impl Fn(&str) -> Option<String>) -> Option<(Where, Resource, &'static str)> {
    let project = || param("p").unwrap_or_default();
    let app = Where::Application;
    Some(match perm {
        Perm::Authenticated | Perm::Filtered | Perm::InHandler => return None,
        Perm::App { kind, action } => (app, Resource::generic(kind), action),
        Perm::Project(action) => (app, Resource::project(&project()), action),
        Perm::ProjectAcl(action) => (app, Resource::project_acl(&project()), action),
        Perm::Storage(action) => {
            let rel = param("path").unwrap_or_default();
            let rel = rel.trim_end_matches('/');
            let path = if rel.is_empty() { "keys".to_string() } else { format!("keys/{rel}") };
            (app, Resource::storage(&path), action)
        }
        Perm::InProject { kind, action } => (Where::Project(project()), Resource::generic(kind), action),
        Perm::Adhoc(action) => (Where::Project(project()), Resource::adhoc(), action),
    })
}

/// Rundeck's 403 for a refused action.
pub fn forbidden(action: &str, resource: &Resource, ctx: Context) -> ApiError {
    let what = resource
        .props
        .get("path")
        .or_else(|| resource.props.get("name"))
        .or_else(|| resource.props.get("kind"))
        .cloned()
        .unwrap_or_default();
    let scope = match ctx {
        Context::Application => String::new(),
        Context::Project(p) => format!(" in project {p}"),
    };
    ApiError::forbidden(format!("Not authorized for action \"{action}\" for {} {what}{scope}", resource.kind))
}

/// True when `principal` may do `action` on `resource` in `ctx`.
pub fn allowed(
    state: &AppState,
    principal: &Principal,
    ctx: Context,
    resource: &Resource,
    action: &str,
) -> ApiResult<bool> {
    let subject = Subject { user: &principal.user, groups: &principal.roles };
    Ok(state.acl.check(&subject, ctx, resource, action)? == Decision::Allowed)
}

/// Refuses with 403 unless `principal` may do `action` on `resource` in `ctx`.
pub fn require(
    state: &AppState,
    principal: &Principal,
    ctx: Context,
    resource: &Resource,
    action: &str,
) -> ApiResult<()> {
    if allowed(state, principal, ctx, resource, action)? {
        Ok(())
    } else {
        Err(forbidden(action, resource, ctx))
    }
}

/// The middleware of one route: checks its [`Perm`] for the authenticated caller.
pub async fn authorize(
    State((state, spec)): State<(AppState, &'static RouteSpec)>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(principal) = req.extensions().get::<Principal>().cloned() else {
        // The authentication layer runs first; a route outside it is a wiring bug.
        return ApiError::internal("request reached authorization unauthenticated").into_response();
    };
    let params: Vec<(String, String)> = match req.extract_parts::<RawPathParams>().await {
        Ok(p) => p.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        Err(_) => Vec::new(),
    };
    let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let Some((place, resource, action)) = target(spec.perm, param) else {
        return next.run(req).await;
    };
    match require(&state, &principal, place.context(), &resource, action) {
        Ok(()) => next.run(req).await,
        Err(e) => {
            tracing::debug!(user = %principal.user, route = spec.path, method = spec.method, "refused by ACL");
            e.into_response()
        }
    }
}
