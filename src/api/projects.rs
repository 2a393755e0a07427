//! Projects in Rundeck's paths and shapes: `POST/GET /api/{v}/projects`,
//! `GET/DELETE /api/{v}/project/{name}`.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};
use steward_raft::Consistency;
use steward_storage::{Guard, Op, Txn};

use super::authz;
use super::version::ApiVersion;
use super::{base_url, ApiError, ApiJson, ApiResult, AppState};
use crate::acl::{Context, Resource};
use crate::auth::Principal;
use crate::codec;
use crate::engine::records::{job_index_key, owner_key, project_key, JOBS};

pub use crate::engine::records::{ProjectRecord, PROJECTS_PREFIX};
/// Everything that belongs to a project lives under these prefixes and goes with it.
const PROJECT_OWNED_PREFIXES: &[&str] = &["jobs/", crate::acl::PROJECT_PREFIX, crate::engine::history::CLEANED];

impl ProjectRecord {
    fn description(&self) -> String {
        self.config.get("project.description").cloned().unwrap_or_default()
    }
    fn label(&self) -> String {
        self.config.get("project.label").cloned().unwrap_or_default()
    }
}

/// `POST /projects` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateProject {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

/// Rundeck's rule for project names.
pub fn validate_name(name: &str) -> Result<(), ApiError> {
    let mut chars = name.chars();
    let ok_first = chars.next().is_some_and(|c| c.is_ascii_alphanumeric() || "-_+".contains(c));
    let ok_rest = chars.all(|c| c.is_ascii_alphanumeric() || "-_.+".contains(c));
    if !ok_first || !ok_rest || name.len() > 200 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "api.error.invalid.request",
            format!(
                "project name '{name}' is invalid: use letters, digits and - _ . + (not starting with .), \
                 at most 200 characters"
            ),
        ));
    }
    Ok(())
}

fn summary(base: &str, v: u32, p: &ProjectRecord) -> Value {
    json!({
        "url": format!("{base}/api/{v}/project/{}", p.name),
        "name": p.name,
        "description": p.description(),
        "label": p.label(),
        "created": chrono::DateTime::from_timestamp_millis(p.created_ms)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
    })
}

fn detail(base: &str, v: u32, p: &ProjectRecord) -> Value {
    json!({
        "url": format!("{base}/api/{v}/project/{}", p.name),
        "name": p.name,
        "description": p.description(),
        "config": p.config,
    })
}

/// The projects the caller may read.
pub async fn list(
    State(state): State<AppState>,
    ApiVersion(v): ApiVersion,
    Extension(principal): Extension<Principal>,
) -> ApiResult<Json<Value>> {
    let base = base_url(&state);
    let rows = state.member.range(PROJECTS_PREFIX, Consistency::Linearizable).await?;
    let mut out = Vec::with_capacity(rows.len());
    for (_, kv) in rows {
        let p: ProjectRecord = codec::decode(&kv.value)?;
        if authz::allowed(&state, &principal, Context::Application, &Resource::project(&p.name), "read")? {
            out.push(summary(&base, v, &p));
        }
    }
    Ok(Json(Value::Array(out)))
}

pub async fn create(
    State(state): State<AppState>,
    ApiVersion(v): ApiVersion,
    ApiJson(body): ApiJson<CreateProject>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    validate_name(&body.name)?;
    check_config(&body.config)?;
    let mut config = body.config;
    if let Some(d) = body.description {
        config.insert("project.description".into(), d);
    }
    config.insert("project.name".into(), body.name.clone());
    let record = ProjectRecord { name: body.name.clone(), config, created_ms: chrono::Utc::now().timestamp_millis() };
    // The guard, not an earlier read, decides: two members creating the same project at once
    // cannot both succeed.
    let txn = Txn::guarded(
        vec![Guard::Absent(project_key(&record.name))],
        vec![Op::Put { key: project_key(&record.name), value: codec::encode(&record) }],
    );
    let res = state.member.write(txn).await?;
    if !res.succeeded {
        return Err(ApiError::conflict(format!("project {} already exists", record.name)));
    }
    Ok((StatusCode::CREATED, Json(detail(&base_url(&state), v, &record))))
}

async fn load(state: &AppState, name: &str) -> ApiResult<ProjectRecord> {
    validate_name(name)?;
    let kv = state
        .member
        .get(&project_key(name), Consistency::Linearizable)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("Project does not exist: {name}")))?;
    Ok(codec::decode(&kv.value)?)
}

pub async fn get(
    State(state): State<AppState>,
    ApiVersion(v): ApiVersion,
    Path((_, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let p = load(&state, &name).await?;
    Ok(Json(detail(&base_url(&state), v, &p)))
}

pub async fn delete(
    State(state): State<AppState>,
    _v: ApiVersion,
    Path((_, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    validate_name(&name)?;
    for _ in 0..5 {
        let mut guards = vec![Guard::Exists(project_key(&name))];
        let mut ops = vec![Op::Delete { key: project_key(&name) }];
        ops.extend(PROJECT_OWNED_PREFIXES.iter().map(|p| Op::DeletePrefix { prefix: format!("{p}{name}/") }));
        // Each job goes as a job deletion takes it: with its id index and its owner record,
        // or the scheduler and `ownedJobs` would go on counting it.
        let jobs_prefix = format!("{JOBS}{name}/");
        let mut uuids = Vec::new();
        for (k, kv) in state.member.range(&jobs_prefix, Consistency::Linearizable).await? {
            let Some(uuid) = k.strip_prefix(&jobs_prefix) else { continue };
            uuids.push(uuid.to_string());
            ops.push(Op::Delete { key: job_index_key(uuid) });
            ops.push(Op::Delete { key: owner_key(uuid) });
            guards.push(Guard::ModRevision { key: k.clone(), rev: kv.mod_revision });
        }
        if state.member.write(Txn::guarded(guards, ops)).await?.succeeded {
            crate::engine::history::prune_deleted_jobs_fires(&state.member, uuids);
            // Its history goes with it; what is still running is deleted by the leader once it
            // has ended (`engine::history`).
            match crate::engine::history::delete_orphans(&state.member, Some(&name)).await {
                Ok(n) => tracing::info!(project = %name, executions = n, "project deleted"),
                Err(e) => tracing::warn!(project = %name, error = %e,
                    "project deleted; its executions are left to the leader's sweep"),
            }
            return Ok(StatusCode::NO_CONTENT);
        }
        if state.member.get(&project_key(&name), Consistency::Linearizable).await?.is_none() {
            return Err(ApiError::not_found(format!("Project does not exist: {name}")));
        }
        // A job of the project changed meanwhile: read them again.
    }
    Err(ApiError::unavailable("api.error.project.contended", format!("project {name} kept changing; retry")))
}

/// Rewrites project `name` with `change`, guarded on the revision it was read at, so a
/// concurrent change is never lost (retried a few times, then 503).
async fn modify(state: &AppState, name: &str, mut change: impl FnMut(&mut ProjectRecord)) -> ApiResult<ProjectRecord> {
    validate_name(name)?;
    for _ in 0..10 {
        let kv = state
            .member
            .get(&project_key(name), Consistency::Linearizable)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("Project does not exist: {name}")))?;
        let mut p: ProjectRecord = codec::decode(&kv.value)?;
        change(&mut p);
        let txn = Txn::guarded(
            vec![Guard::ModRevision { key: project_key(name), rev: kv.mod_revision }],
            vec![Op::Put { key: project_key(name), value: codec::encode(&p) }],
        );
        if state.member.write(txn).await?.succeeded {
            return Ok(p);
        }
    }
    Err(ApiError::unavailable("api.error.project.contended", format!("project {name} kept changing; retry")))
}

/// Refuses settings steward acts on that it could not act on (the history cleanup's).
fn check_config(config: &BTreeMap<String, String>) -> ApiResult<()> {
    crate::engine::history::Retention::check(config).map_err(ApiError::bad_request)
}

fn validate_config_key(k: &str) -> ApiResult<()> {
    if k.is_empty() || k.len() > 256 || k.chars().any(|c| c.is_whitespace() || c.is_control() || c == '/') {
        return Err(ApiError::bad_request(format!("config key '{k}' is invalid")));
    }
    Ok(())
}

/// `GET /api/{v}/project/{name}/config`: the whole configuration.
pub async fn get_config(
    State(state): State<AppState>,
    _v: ApiVersion,
    Path((_, name)): Path<(String, String)>,
) -> ApiResult<Json<BTreeMap<String, String>>> {
    Ok(Json(load(&state, &name).await?.config))
}

/// `PUT /api/{v}/project/{name}/config`: replaces the whole configuration.
pub async fn put_config(
    State(state): State<AppState>,
    _v: ApiVersion,
    Path((_, name)): Path<(String, String)>,
    ApiJson(config): ApiJson<BTreeMap<String, String>>,
) -> ApiResult<Json<BTreeMap<String, String>>> {
    for k in config.keys() {
        validate_config_key(k)?;
    }
    check_config(&config)?;
    let p = modify(&state, &name, |p| {
        p.config = config.clone();
        p.config.insert("project.name".into(), p.name.clone());
    })
    .await?;
    Ok(Json(p.config))
}

/// `GET /api/{v}/project/{name}/config/{key}` → `{"key":…,"value":…}`.
pub async fn get_config_key(
    State(state): State<AppState>,
    _v: ApiVersion,
    Path((_, name, k)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    validate_config_key(&k)?;
    let p = load(&state, &name).await?;
    let value =
        p.config.get(&k).ok_or_else(|| ApiError::not_found(format!("property {k} is not set in project {name}")))?;
    Ok(Json(json!({ "key": k, "value": value })))
}

/// Body of `PUT /api/{v}/project/{name}/config/{key}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigValue {
    pub value: String,
}

/// `PUT /api/{v}/project/{name}/config/{key}` with `{"value":…}`.
pub async fn put_config_key(
    State(state): State<AppState>,
    _v: ApiVersion,
    Path((_, name, k)): Path<(String, String, String)>,
    ApiJson(body): ApiJson<ConfigValue>,
) -> ApiResult<Json<Value>> {
    validate_config_key(&k)?;
    check_config(&BTreeMap::from([(k.clone(), body.value.clone())]))?;
    modify(&state, &name, |p| {
        p.config.insert(k.clone(), body.value.clone());
    })
    .await?;
    Ok(Json(json!({ "key": k, "value": body.value })))
}

/// `DELETE /api/{v}/project/{name}/config/{key}` → 204.
pub async fn delete_config_key(
    State(state): State<AppState>,
    _v: ApiVersion,
    Path((_, name, k)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    validate_config_key(&k)?;
    modify(&state, &name, |p| {
        p.config.remove(&k);
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
