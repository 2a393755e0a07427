//! Executions in Rundeck's paths and shapes: get, state, abort, delete (one, a list, a job's),
//! running per project (and `*`), the project's and a job's execution history.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Extension;
use axum::Json;
use serde_json::{json, Value};
use steward_raft::Consistency;

use super::authz;
use super::version::ApiVersion;
use super::{base_url, ApiError, ApiResult, AppState};
use crate::acl::{Context, Resource};
use crate::auth::Principal;
use crate::codec;
use crate::engine::executions::{self, ExecError};
use crate::engine::records::{fire_exec_key, AbortRequest, ExecStatus, ExecutionRecord, FireRecord, FIRES};
use crate::engine::view::{execution_json, execution_state};

impl From<ExecError> for ApiError {
    fn from(e: ExecError) -> Self {
        match e {
            ExecError::Cluster(c) => c.into(),
            ExecError::Decode(d) => d.into(),
            ExecError::NotFound(id) => ApiError::not_found(format!("Execution ID does not exist: {id}")),
            ExecError::Contended(_) => ApiError::unavailable("api.error.execution.contended", e.to_string()),
            ExecError::NotEnded(_) => {
                ApiError::new(StatusCode::CONFLICT, "api.error.exec.delete.failed", e.to_string())
            }
        }
    }
}

/// Refuses with 403 unless the caller may do `action` on the job of the execution (Rundeck
/// authorizes executions through their job).
fn require_exec(state: &AppState, p: &Principal, rec: &ExecutionRecord, action: &str) -> ApiResult<()> {
    let job = Resource::job(&rec.job_name, &rec.job_group, &rec.job_uuid);
    authz::require(state, p, Context::Project(&rec.project), &job, action)
}

fn may_read(state: &AppState, p: &Principal, rec: &ExecutionRecord) -> ApiResult<bool> {
    let job = Resource::job(&rec.job_name, &rec.job_group, &rec.job_uuid);
    authz::allowed(state, p, Context::Project(&rec.project), &job, "read")
}

pub fn parse_id(raw: &str) -> ApiResult<u64> {
    raw.parse().map_err(|_| ApiError::bad_request(format!("execution id '{raw}' is not a number")))
}

async fn load(state: &AppState, id: u64) -> ApiResult<ExecutionRecord> {
    Ok(executions::load(&state.member, id, Consistency::Linearizable).await?.ok_or(ExecError::NotFound(id))?.0)
}

pub async fn get(
    State(state): State<AppState>,
    ApiVersion(v): ApiVersion,
    Path((_, id)): Path<(String, String)>,
    Extension(principal): Extension<Principal>,
) -> ApiResult<Json<Value>> {
    let id = parse_id(&id)?;
    let rec = load(&state, id).await?;
    require_exec(&state, &principal, &rec, "read")?;
    Ok(Json(execution_json(&base_url(&state), v, id, &rec)))
}

pub async fn state(
    State(state): State<AppState>,
    _v: ApiVersion,
    Path((_, id)): Path<(String, String)>,
    Extension(principal): Extension<Principal>,
) -> ApiResult<Json<Value>> {
    let id = parse_id(&id)?;
    let rec = load(&state, id).await?;
    require_exec(&state, &principal, &rec, "read")?;
    let date = |ms: Option<i64>| {
        ms.and_then(chrono::DateTime::from_timestamp_millis)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    };
    Ok(Json(json!({
        "executionId": id,
        "serverNode": rec.member,
        "executionState": execution_state(rec.status_now()),
        "completed": rec.status.is_final(),
        "startTime": date(rec.started_ms),
        "endTime": date(rec.ended_ms),
        "updateTime": date(rec.ended_ms.or(rec.started_ms)),
        "targetNodes": [rec.member],
        "allNodes": [rec.member],
        "nodes": {},
        "stepCount": 0,
        "steps": [],
    })))
}

/// `POST /api/{v}/execution/{id}/abort[?asUser=U&forceIncomplete=true]`: the request is
/// recorded on the execution; its member stops the processes and records the end. An execution
/// still waiting for its `runAtTime` or its slot ends at once (if its runner started it in the
/// meantime, the runner sees the ended record and stops it).
pub async fn abort(
    State(state): State<AppState>,
    ApiVersion(v): ApiVersion,
    Path((_, id)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    Extension(principal): Extension<Principal>,
) -> ApiResult<Json<Value>> {
    let id = parse_id(&id)?;
    let found = load(&state, id).await?;
    require_exec(&state, &principal, &found, "kill")?;
    if q.get("asUser").is_some_and(|u| *u != principal.user) {
        require_exec(&state, &principal, &found, "killAs")?;
    }
    let user = q.get("asUser").cloned().unwrap_or_else(|| principal.user.clone());
    let force = q.get("forceIncomplete").is_some_and(|f| f == "true");
    let now = chrono::Utc::now().timestamp_millis();
    let mut already = false;
    let rec = executions::update(&state.member, id, |r| {
        if r.status.is_final() {
            already = true;
            return false;
        }
        r.abort = Some(AbortRequest { user: user.clone(), force_incomplete: force });
        if r.status_now() == ExecStatus::Scheduled {
            r.status = if force { ExecStatus::Incomplete } else { ExecStatus::Aborted };
            r.ended_ms = Some(now);
        }
        true
    })
    .await?;
    let status = if already {
        "failed"
    } else if rec.status.is_final() {
        "aborted"
    } else {
        "pending"
    };
    let mut abort = json!({ "status": status });
    if already {
        abort["reason"] = json!(format!("execution {id} has already ended ({})", rec.status.as_str()));
    }
    Ok(Json(json!({
        "abort": abort,
        "execution": {
            "id": id.to_string(),
            "status": rec.status_now().as_str(),
            "href": format!("{}/api/{v}/execution/{id}", base_url(&state)),
        },
    })))
}

fn paging(total: usize, offset: usize, max: usize, list: Vec<Value>) -> Value {
    json!({
        "paging": { "count": list.len(), "total": total, "offset": offset, "max": max },
        "executions": list,
    })
}

fn page_params(q: &HashMap<String, String>) -> ApiResult<(usize, usize)> {
    let num = |k: &str, d: usize| -> ApiResult<usize> {
        match q.get(k) {
            None => Ok(d),
            Some(s) => s.parse().map_err(|_| ApiError::bad_request(format!("{k} '{s}' is not a number"))),
        }
    };
    Ok((num("offset", 0)?, num("max", 20)?))
}

/// `GET /api/{v}/project/{project}/executions/running` (`*` for every project).
pub async fn running(
    State(state): State<AppState>,
    ApiVersion(v): ApiVersion,
    Path((_, project)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    Extension(principal): Extension<Principal>,
) -> ApiResult<Json<Value>> {
    let (offset, max) = page_params(&q)?;
    let scope = (project != "*").then_some(project.as_str());
    if let Some(p) = scope {
        super::projects::validate_name(p)?;
    }
    let mut all = executions::running(&state.member, scope).await?;
    // Only the executions of jobs the caller may read.
    let mut readable = Vec::with_capacity(all.len());
    for (id, r) in all.drain(..) {
        if may_read(&state, &principal, &r)? {
            readable.push((id, r));
        }
    }
    let all = readable;
    let base = base_url(&state);
    let list: Vec<Value> = all.iter().skip(offset).take(max).map(|(id, r)| execution_json(&base, v, *id, r)).collect();
    Ok(Json(paging(all.len(), offset, max, list)))
}

/// `GET /api/{v}/project/{project}/executions` with Rundeck's filters `jobIdListFilter`,
/// `statusFilter`, `userFilter`, `groupPath`, `jobFilter`, `begin`/`end` (ms) and paging.
pub async fn query(
    State(state): State<AppState>,
    ApiVersion(v): ApiVersion,
    Path((_, project)): Path<(String, String)>,
    Query(q): Query<Vec<(String, String)>>,
    Extension(principal): Extension<Principal>,
) -> ApiResult<Json<Value>> {
    super::projects::validate_name(&project)?;
    history(&state, &principal, v, Some(project), None, q).await
}

/// Job `job` must exist and be readable by `principal`: 404 / 403 rather than an empty list.
/// Returns its project.
async fn require_readable_job(state: &AppState, principal: &Principal, job: &str) -> ApiResult<String> {
    let catalog = crate::engine::catalog::Catalog::new(state.member.clone());
    state.member.read_barrier().await?;
    let (project, record) = catalog
        .job(job)
        .map_err(|e| ApiError::internal(e.to_string()))?
        .ok_or_else(|| ApiError::not_found(format!("Job ID does not exist: {job}")))?;
    let res = super::jobs::job_resource(&record.definition);
    authz::require(state, principal, Context::Project(&project), &res, "read")?;
    Ok(project)
}

/// `GET /api/{v}/job/{id}/executions`.
pub async fn job_history(
    State(state): State<AppState>,
    ApiVersion(v): ApiVersion,
    Path((_, job)): Path<(String, String)>,
    Query(q): Query<Vec<(String, String)>>,
    Extension(principal): Extension<Principal>,
) -> ApiResult<Json<Value>> {
    require_readable_job(&state, &principal, &job).await?;
    history(&state, &principal, v, None, Some(job), q).await
}

/// `DELETE /api/{v}/execution/{id}`: 204; 404 for an unknown execution, 409 for one that has
/// not ended.
pub async fn delete(
    State(state): State<AppState>,
    _v: ApiVersion,
    Path((_, id)): Path<(String, String)>,
    Extension(principal): Extension<Principal>,
) -> ApiResult<StatusCode> {
    delete_one(&state, &principal, parse_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes one execution; its log is removed by the member that ran it when that member
/// applies the deletion (`crate::engine::history`).
async fn delete_one(state: &AppState, principal: &Principal, id: u64) -> ApiResult<()> {
    executions::delete(&state.member, id, |rec| require_delete(state, principal, &rec.project)).await?;
    Ok(())
}

/// As Rundeck: deleting executions needs `delete_execution` (or `admin`) on their project, in
/// the application context.
fn require_delete(state: &AppState, principal: &Principal, project: &str) -> ApiResult<()> {
    authz::require(state, principal, Context::Application, &Resource::project(project), "delete_execution")
}

/// `POST /api/{v}/executions/delete` with `{"ids": [...]}`, a JSON list of ids, or `ids=1,2`.
pub async fn delete_bulk(
    State(state): State<AppState>,
    _v: ApiVersion,
    Query(q): Query<HashMap<String, String>>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let ids = super::jobs::bulk_ids(&body, &q, "ids", "executions")?;
    let mut wanted = Vec::with_capacity(ids.len());
    for raw in ids {
        wanted.push((parse_id(&raw).ok(), raw));
    }
    Ok(Json(delete_many(&state, &principal, wanted).await?))
}

/// `DELETE /api/{v}/job/{id}/executions`: every ended execution of the job, many to a
/// transaction; those not ended are listed as failures.
pub async fn delete_job_history(
    State(state): State<AppState>,
    _v: ApiVersion,
    Path((_, job)): Path<(String, String)>,
    Extension(principal): Extension<Principal>,
) -> ApiResult<Json<Value>> {
    let project = require_readable_job(&state, &principal, &job).await?;
    require_delete(&state, &principal, &project)?;
    let mut all = executions::all_read(&state.member).await?;
    all.retain(|(_, _, r)| r.job_uuid == job);
    let failures: Vec<Value> = all
        .iter()
        .filter(|(_, _, r)| !r.status.is_final())
        .map(|(id, _, _)| json!({ "id": id.to_string(), "message": ExecError::NotEnded(*id).to_string() }))
        .collect();
    let done = executions::delete_read(&state.member, &all).await?;
    Ok(Json(bulk_answer(all.len(), done, failures)))
}

/// Deletes each of `wanted` (an id, or `None` for a string that is not one) in turn. A
/// cluster that cannot take writes fails the whole request (503, retryable); anything else is
/// one id's failure.
async fn delete_many(state: &AppState, principal: &Principal, wanted: Vec<(Option<u64>, String)>) -> ApiResult<Value> {
    let (mut done, mut failures) = (0usize, Vec::new());
    let count = wanted.len();
    for (id, raw) in wanted {
        let Some(id) = id else {
            failures.push(json!({ "id": raw, "message": format!("execution id '{raw}' is not a number") }));
            continue;
        };
        match delete_one(state, principal, id).await {
            Ok(()) => done += 1,
            Err(e) if e.status == StatusCode::SERVICE_UNAVAILABLE => return Err(e),
            Err(e) => failures.push(json!({ "id": raw, "errorCode": e.code, "message": e.message })),
        }
    }
    Ok(bulk_answer(count, done, failures))
}

/// Rundeck's bulk delete answer.
fn bulk_answer(count: usize, done: usize, failures: Vec<Value>) -> Value {
    json!({
        "requestCount": count,
        "allsuccessful": failures.is_empty(),
        "successCount": done,
        "failedCount": failures.len(),
        "failures": failures,
    })
}

/// `GET /api/{v}/job/{id}/fires` (an extension; Rundeck shows missed slots as executions): what
/// became of each scheduled slot of the job, oldest first — `fired` (with its execution id),
/// `missed` or `skipped`, the member that recorded it and when. `begin` / `end` (ms since the
/// epoch) bound the slots; `max` (default 1000) bounds the answer.
pub async fn job_fires(
    State(state): State<AppState>,
    _v: ApiVersion,
    Path((_, job)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    Extension(principal): Extension<Principal>,
) -> ApiResult<Json<Value>> {
    require_readable_job(&state, &principal, &job).await?;
    let num = |k: &str| -> ApiResult<Option<i64>> {
        q.get(k)
            .map(|s| s.parse::<i64>().map_err(|_| ApiError::bad_request(format!("{k} '{s}' is not a number of ms"))))
            .transpose()
    };
    let (begin, end) = (num("begin")?, num("end")?);
    let max = num("max")?.unwrap_or(1000).clamp(1, 100_000) as usize;
    let prefix = format!("{FIRES}{job}/");
    let rows = state.member.kv().range(&prefix).map_err(steward_raft::ClusterError::from)?;
    let mut slots: Vec<(i64, FireRecord)> = rows
        .iter()
        .filter_map(|(k, kv)| Some((k.strip_prefix(&prefix)?.parse().ok()?, codec::decode(&kv.value).ok()?)))
        .filter(|(slot, _): &(i64, FireRecord)| begin.is_none_or(|b| *slot >= b) && end.is_none_or(|e| *slot <= e))
        .collect();
    slots.sort_by_key(|(slot, _)| *slot);
    let total = slots.len();
    let items: Vec<Value> = slots
        .into_iter()
        .take(max)
        .map(|(slot, f)| {
            let exec = state
                .member
                .kv()
                .get(&fire_exec_key(&job, slot))
                .ok()
                .flatten()
                .and_then(|kv| steward_storage::kv::decode_seq(&kv.value));
            json!({
                "slot": slot,
                "outcome": f.outcome,
                "member": f.member,
                "recorded": f.recorded_ms,
                "execution": exec,
            })
        })
        .collect();
    Ok(Json(json!({ "job": job, "total": total, "fires": items })))
}

async fn history(
    state: &AppState,
    principal: &Principal,
    v: u32,
    project: Option<String>,
    job: Option<String>,
    q: Vec<(String, String)>,
) -> ApiResult<Json<Value>> {
    let single: HashMap<String, String> = q.iter().cloned().collect();
    let (offset, max) = page_params(&single)?;
    let mut jobs: Vec<String> =
        q.iter().filter(|(k, _)| k == "jobIdListFilter" || k == "jobIdFilter").map(|(_, v)| v.clone()).collect();
    jobs.extend(job);
    let status = single.get("statusFilter").cloned();
    let user = single.get("userFilter").cloned();
    let group = single.get("groupPath").cloned();
    let name = single.get("jobFilter").cloned();
    let begin = single.get("begin").map(|s| time_param("begin", s)).transpose()?;
    let end = single.get("end").map(|s| time_param("end", s)).transpose()?;
    let mut all = executions::all(&state.member).await?;
    all.retain(|(_, r)| {
        project.as_ref().is_none_or(|p| &r.project == p)
            && (jobs.is_empty() || jobs.contains(&r.job_uuid))
            && status.as_ref().is_none_or(|s| r.status_now().as_str() == s)
            && user.as_ref().is_none_or(|u| &r.user == u)
            && group.as_ref().is_none_or(|g| r.job_group == *g || r.job_group.starts_with(&format!("{g}/")))
            && name.as_ref().is_none_or(|n| r.job_name.contains(n.as_str()))
            && begin.is_none_or(|b| r.started_ms.or(r.scheduled_ms).unwrap_or(r.created_ms) >= b)
            && end.is_none_or(|e| r.started_ms.or(r.scheduled_ms).unwrap_or(r.created_ms) <= e)
    });
    let mut readable = Vec::with_capacity(all.len());
    for (id, r) in all {
        if may_read(state, principal, &r)? {
            readable.push((id, r));
        }
    }
    let mut all = readable;
    all.reverse(); // newest first, as Rundeck lists them
    let base = base_url(state);
    let list: Vec<Value> = all.iter().skip(offset).take(max).map(|(id, r)| execution_json(&base, v, *id, r)).collect();
    Ok(Json(paging(all.len(), offset, max, list)))
}

/// A history query's `begin` / `end`: ms since the epoch or an ISO-8601 time (Rundeck's
/// `yyyy-MM-ddTHH:mm:ssZ`). A value that is neither is refused rather than ignored: ignoring it
/// would answer the whole history as if it were the filtered one.
fn time_param(name: &str, value: &str) -> ApiResult<i64> {
    if let Ok(ms) = value.parse::<i64>() {
        return Ok(ms);
    }
    chrono::DateTime::parse_from_rfc3339(value).map(|t| t.timestamp_millis()).map_err(|_| {
        ApiError::bad_request(format!(
            "{name} '{value}' is neither ms since the epoch nor an ISO-8601 time (yyyy-MM-ddTHH:mm:ssZ)"
        ))
    })
}

/// 404 for a project that does not exist, as Rundeck answers.
pub async fn require_project(state: &AppState, project: &str) -> ApiResult<()> {
    super::projects::validate_name(project)?;
    let key = format!("{}{project}", super::projects::PROJECTS_PREFIX);
    if state.member.get(&key, Consistency::Linearizable).await?.is_none() {
        return Err(ApiError::not_found(format!("Project does not exist: {project}")));
    }
    Ok(())
}

/// Header set on an output request forwarded to the member that runs the execution, so that
/// member never forwards it again.
const FORWARDED: &str = "x-steward-forwarded";

/// `GET /api/{v}/execution/{id}/output?offset=&lastlines=&maxlines=&lastmod=&nodename=&stepctx=`.
///
/// Any member answers, also while the execution runs: with a shared log store (S3) it reads
/// the segments itself; with logs on the executing member's own disk it forwards the request
/// to that member inside the cluster.
pub async fn output(
    State(state): State<AppState>,
    _v: ApiVersion,
    Path((_, id)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
    Extension(principal): Extension<Principal>,
) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse;
    let id = parse_id(&id)?;
    let rec = load(&state, id).await?;
    require_exec(&state, &principal, &rec, "read")?;
    let mine = rec.member == state.member.node().uuid;
    if !mine && !state.logs.is_shared() && !headers.contains_key(FORWARDED) {
        return forward_output(&state, &rec, &uri, &headers).await;
    }
    let num = |k: &str| -> ApiResult<Option<usize>> {
        q.get(k).map(|s| s.parse().map_err(|_| ApiError::bad_request(format!("{k} '{s}' is not a number")))).transpose()
    };
    let query = crate::logs::OutputQuery {
        offset: num("offset")?.unwrap_or(0) as u64,
        lastlines: num("lastlines")?,
        maxlines: num("maxlines")?,
        lastmod: q
            .get("lastmod")
            .map(|s| s.parse())
            .transpose()
            .map_err(|_| ApiError::bad_request("lastmod is not a number"))?,
        node: q.get("nodename").cloned(),
        step_ctx: q.get("stepctx").cloned(),
    };
    let chunk = state.logs.read(id, &query).await.map_err(|e| ApiError::internal(format!("reading the log: {e}")))?;
    let now = chrono::Utc::now().timestamp_millis();
    let info = crate::logs::ExecInfo {
        completed: rec.status.is_final(),
        state: rec.status_now().as_str().to_string(),
        has_failed_nodes: rec.status == ExecStatus::Failed,
        duration_ms: rec.ended_ms.unwrap_or(now) - rec.started_ms.unwrap_or(rec.created_ms),
        cluster_exec: Some(!mine),
        server_node_uuid: Some(rec.member.clone()),
    };
    Ok(Json(crate::logs::OutputResponse::new(id, chunk, &info)).into_response())
}

/// Sends an output request on to the member that runs the execution.
async fn forward_output(
    state: &AppState,
    rec: &ExecutionRecord,
    uri: &axum::http::Uri,
    headers: &axum::http::HeaderMap,
) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse;
    let metrics = state.member.raft().metrics().borrow().clone();
    let node =
        metrics.membership_config.membership().nodes().find(|(_, n)| n.uuid == rec.member).map(|(_, n)| n.clone());
    let Some(node) = node else {
        return Err(ApiError::unavailable(
            "api.error.execution.member-gone",
            format!(
                "the member {} that ran this execution is no longer in the cluster; its log is not reachable",
                rec.member
            ),
        ));
    };
    let url = format!("http://{}{}", node.http_addr, uri.path_and_query().map(|p| p.as_str()).unwrap_or(uri.path()));
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let mut req = client.get(&url).header(FORWARDED, "1");
    for h in ["x-rundeck-auth-token", "authorization", "accept", "cookie"] {
        if let Some(v) = headers.get(h) {
            req = req.header(h, v.clone());
        }
    }
    let resp = req.send().await.map_err(|e| {
        ApiError::unavailable(
            "api.error.execution.member-unreachable",
            format!("cannot reach member {}: {e}", rec.member),
        )
    })?;
    let status =
        axum::http::StatusCode::from_u16(resp.status().as_u16()).unwrap_or(axum::http::StatusCode::BAD_GATEWAY);
    let ctype = resp.headers().get(reqwest::header::CONTENT_TYPE).cloned();
    let body = resp
        .bytes()
        .await
        .map_err(|e| ApiError::unavailable("api.error.execution.member-unreachable", e.to_string()))?;
    let mut out = (status, body).into_response();
    if let Some(c) = ctype {
        if let Ok(v) = axum::http::HeaderValue::from_bytes(c.as_bytes()) {
            out.headers_mut().insert(axum::http::header::CONTENT_TYPE, v);
        }
    }
    Ok(out)
}
