//! Rundeck's scheduler endpoints: `PUT /api/{v}/scheduler/takeover` (this member claims the
//! schedules of another member, of all members, or of named jobs), `GET /api/{v}/scheduler/jobs`
//! (the jobs this member owns) and `GET /api/{v}/scheduler/server/{uuid}/jobs`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};

use super::jobs::{job_summary, may_read};
use super::version::ApiVersion;
use super::{base_url, ApiError, ApiJson, ApiResult, AppState};
use crate::auth::Principal;
use crate::cluster::mode::{self, ExecutionMode};
use crate::cluster::takeover::{commit_moves, owners, Move};
use crate::codec;
use crate::engine::catalog::JobRecord;
use crate::engine::records::{job_key, OwnerRecord};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSel {
    pub uuid: Option<String>,
    #[serde(default)]
    pub all: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSel {
    pub id: String,
}

/// Body of `PUT /api/{v}/scheduler/takeover`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TakeoverRequest {
    pub server: Option<ServerSel>,
    pub project: Option<String>,
    pub job: Option<JobSel>,
    pub jobs: Option<Vec<JobSel>>,
}

/// A job with its owner, from this member's applied state (after a read barrier).
struct Owned {
    project: String,
    record: JobRecord,
    owner: Option<OwnerRecord>,
    owner_bytes: Vec<u8>,
}

/// Every job with an owner record.
async fn owned_jobs(state: &AppState) -> ApiResult<Vec<(String, Owned)>> {
    state.member.read_barrier().await?;
    let catalog = crate::engine::catalog::Catalog::new(state.member.clone());
    let mut out = Vec::new();
    for (uuid, rec, bytes) in owners(&state.member)? {
        let Some(project) = catalog.project_of(&uuid).map_err(|e| ApiError::internal(e.to_string()))? else {
            continue;
        };
        let Some(kv) = state.member.kv().get(&job_key(&project, &uuid)).map_err(steward_raft::ClusterError::from)?
        else {
            continue;
        };
        let record: JobRecord = codec::decode(&kv.value)?;
        out.push((uuid, Owned { project, record, owner: Some(rec), owner_bytes: bytes }));
    }
    Ok(out)
}

fn is_scheduled(r: &JobRecord) -> bool {
    r.definition.schedule.is_some()
}

pub async fn takeover(
    State(state): State<AppState>,
    ApiVersion(v): ApiVersion,
    ApiJson(req): ApiJson<TakeoverRequest>,
) -> ApiResult<Json<Value>> {
    let server = req.server.unwrap_or_default();
    let mut ids: Vec<String> = req.jobs.unwrap_or_default().into_iter().map(|j| j.id).collect();
    if let Some(j) = req.job {
        ids.push(j.id);
    }
    if server.uuid.is_none() && !server.all && ids.is_empty() {
        return Err(ApiError::bad_request(
            "name what to take over: server.uuid, server.all = true, job.id or jobs[].id",
        ));
    }
    let me = state.member.node().uuid.clone();
    if mode::get(&state.member, &me).await? == ExecutionMode::Passive {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "api.error.execution.mode.passive",
            format!("member {me} is in passive execution mode and owns no schedules; enable executions first"),
        ));
    }
    let jobs = owned_jobs(&state).await?;
    if let Some(p) = &req.project {
        super::executions::require_project(&state, p).await?;
    }
    // Every named job must exist before anything moves.
    if let Some(missing) = ids.iter().find(|id| !jobs.iter().any(|(u, _)| u == *id)) {
        return Err(ApiError::not_found(format!("Job ID does not exist: {missing}")));
    }
    let selected: Vec<&(String, Owned)> = jobs
        .iter()
        .filter(|(uuid, o)| {
            let by_id = ids.contains(uuid);
            let by_server = (server.all
                || server.uuid.as_deref().is_some_and(|s| o.owner.as_ref().is_some_and(|r| r.member == s)))
                && is_scheduled(&o.record);
            (by_id || (ids.is_empty() && by_server)) && req.project.as_ref().is_none_or(|p| *p == o.project)
        })
        .collect();
    // Takeover from oneself moves nothing (as in Rundeck).
    let moves: Vec<(Move, &Owned)> = selected
        .iter()
        .filter(|(_, o)| o.owner.as_ref().is_none_or(|r| r.member != me))
        .map(|&(uuid, o)| {
            let epoch = o.owner.as_ref().map_or(1, |r| r.epoch + 1);
            let from = o.owner.as_ref().map(|r| r.member.clone()).unwrap_or_default();
            (Move { job: uuid.clone(), old: o.owner_bytes.clone(), from, to: me.clone(), epoch }, o)
        })
        .collect();
    let plain: Vec<Move> = moves.iter().map(|(m, _)| m.clone()).collect();
    let done = commit_moves(&state.member, &plain).await?;
    let base = base_url(&state);
    let (mut successful, mut failed) = (Vec::new(), Vec::new());
    for ((m, o), ok) in moves.iter().zip(done) {
        let item = json!({
            "id": m.job,
            "href": format!("{base}/api/{v}/job/{}", m.job),
            "permalink": format!("{base}/project/{}/job/show/{}", o.project, m.job),
            "previous-owner": m.from,
        });
        if ok {
            successful.push(item);
        } else {
            failed.push(item);
        }
    }
    if !successful.is_empty() {
        tracing::info!(jobs = successful.len(), "took over schedules on request");
    }
    let total = moves.len();
    let server_json = match (&server.uuid, server.all) {
        (_, true) => json!({ "all": true }),
        (Some(u), _) => json!({ "uuid": u }),
        _ => Value::Null,
    };
    let mut takeover = json!({
        "jobs": { "successful": successful, "failed": failed, "total": total },
    });
    if !server_json.is_null() {
        takeover["server"] = server_json;
    }
    if let Some(p) = &req.project {
        takeover["project"] = json!(p);
    }
    let ok_count = takeover["jobs"]["successful"].as_array().map_or(0, Vec::len);
    Ok(Json(json!({
        "takeoverSchedule": takeover,
        "self": { "server": { "uuid": me } },
        "message": format!("Schedule Takeover successful for {ok_count}/{total} Jobs."),
        "apiversion": v,
        "success": ok_count == total,
    })))
}

async fn jobs_of(state: &AppState, v: u32, principal: &Principal, uuid: &str) -> ApiResult<Json<Value>> {
    let me = state.member.node().uuid.clone();
    let base = base_url(state);
    let mut out = Vec::new();
    for (_, o) in owned_jobs(state).await? {
        let owner = o.owner.as_ref().filter(|r| r.member == uuid);
        if owner.is_none() || !is_scheduled(&o.record) {
            continue;
        }
        if may_read(state, principal, &o.project, &o.record.definition)? {
            out.push(job_summary(&base, v, &o.project, &o.record, owner, &me));
        }
    }
    Ok(Json(Value::Array(out)))
}

/// `GET /api/{v}/scheduler/jobs`: the scheduled jobs this member owns.
pub async fn my_jobs(
    State(state): State<AppState>,
    ApiVersion(v): ApiVersion,
    Extension(principal): Extension<Principal>,
) -> ApiResult<Json<Value>> {
    let me = state.member.node().uuid.clone();
    jobs_of(&state, v, &principal, &me).await
}

/// `GET /api/{v}/scheduler/server/{uuid}/jobs`: the scheduled jobs member `uuid` owns.
pub async fn server_jobs(
    State(state): State<AppState>,
    ApiVersion(v): ApiVersion,
    Path((_, uuid)): Path<(String, String)>,
    Extension(principal): Extension<Principal>,
) -> ApiResult<Json<Value>> {
    jobs_of(&state, v, &principal, &uuid).await
}
