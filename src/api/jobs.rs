//! Jobs in Rundeck's paths and shapes: import, export, list, get, delete, bulk delete, run,
//! execution and schedule enable/disable, info.
//!
//! Every change to a job is one guarded transaction: the job record, the uuid index (a uuid is
//! unique across projects) and the owner record (as in Rundeck, the member that creates or last
//! changes a job owns its schedule; the epoch grows with every change of owner) commit together.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use steward_raft::Consistency;
use steward_storage::{Guard, Op, Txn};

use super::authz;
use super::executions::require_project;
use super::version::ApiVersion;
use super::{base_url, ApiError, ApiResult, AppState};
use crate::acl::{Context, Resource};
use crate::auth::Principal;
use crate::codec;
use crate::engine::catalog::{plain_options, JobRecord};
use crate::engine::fire::create_execution_op;
use crate::engine::records::{
    job_index_key, job_key, job_run_key, owner_key, project_key, running_request_key, ExecStatus, ExecutionRecord,
    OwnerRecord, Trigger, JOBS,
};
use crate::engine::view::execution_json;
use crate::jobs::definition::{export_jobs, parse_jobs, JobDefinition, JobFormat};
use crate::jobs::options::{collect_inputs, resolve_options};
use crate::jobs::schedule::JobSchedule;

/// A JSON body that may be absent (Rundeck's run and bulk delete accept an empty body).
pub(crate) fn optional_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> ApiResult<Option<T>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(body).map(Some).map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")))
}

/// The ACL resource of a job (Rundeck's `job` in the project context).
pub fn job_resource(d: &JobDefinition) -> Resource {
    Resource::job(&d.name, d.group.as_deref().unwrap_or(""), d.uuid().unwrap_or(""))
}

/// Refuses with 403 unless the caller may do `action` on the job.
fn require_job(state: &AppState, p: &Principal, project: &str, d: &JobDefinition, action: &str) -> ApiResult<()> {
    authz::require(state, p, Context::Project(project), &job_resource(d), action)
}

/// True when the caller may read the job (lists show only those).
pub(crate) fn may_read(state: &AppState, p: &Principal, project: &str, d: &JobDefinition) -> ApiResult<bool> {
    authz::allowed(state, p, Context::Project(project), &job_resource(d), "read")
}

/// A job as stored, with its project and the revisions its guards use.
struct Loaded {
    project: String,
    record: JobRecord,
    rev: u64,
}

async fn load_job(state: &AppState, uuid: &str) -> ApiResult<Loaded> {
    let not_found = || ApiError::not_found(format!("Job ID does not exist: {uuid}"));
    let idx = state.member.get(&job_index_key(uuid), Consistency::Linearizable).await?.ok_or_else(not_found)?;
    let project: String = codec::decode(&idx.value)?;
    let kv = state.member.kv().get(&job_key(&project, uuid)).map_err(steward_raft::ClusterError::from)?;
    let kv = kv.ok_or_else(not_found)?;
    Ok(Loaded { project, record: codec::decode(&kv.value)?, rev: kv.mod_revision })
}

/// The owner record this member writes when it creates or changes a job.
async fn next_owner(state: &AppState, uuid: &str) -> ApiResult<(OwnerRecord, u64)> {
    let current = state.member.get(&owner_key(uuid), Consistency::Local).await?;
    let (epoch, rev) = match &current {
        Some(kv) => (codec::decode::<OwnerRecord>(&kv.value)?.epoch + 1, kv.mod_revision),
        None => (1, 0),
    };
    Ok((OwnerRecord { member: state.member.node().uuid.clone(), epoch }, rev))
}

/// Writes `def` as job `uuid` of `project`: with `expect_rev` (the job's current revision, 0
/// for none) as the guard that nothing changed it meanwhile.
async fn store_job(
    state: &AppState,
    project: &str,
    uuid: &str,
    def: JobDefinition,
    expect_rev: u64,
    created_ms: Option<i64>,
    user: &str,
) -> ApiResult<bool> {
    let now = chrono::Utc::now().timestamp_millis();
    let record =
        JobRecord { definition: def, created_ms: created_ms.unwrap_or(now), updated_ms: now, updated_by: user.into() };
    let (owner, owner_rev) = next_owner(state, uuid).await?;
    let mut guards = vec![
        // Checked before, but a project deleted since must not get a job it would not delete.
        Guard::Exists(project_key(project)),
        Guard::ModRevision { key: job_key(project, uuid), rev: expect_rev },
        Guard::ModRevision { key: owner_key(uuid), rev: owner_rev },
    ];
    if expect_rev == 0 {
        // A uuid is unique across projects.
        guards.push(Guard::Absent(job_index_key(uuid)));
    }
    let txn = Txn::guarded(
        guards,
        vec![
            Op::Put { key: job_key(project, uuid), value: codec::encode(&record) },
            Op::Put { key: job_index_key(uuid), value: codec::encode(&project.to_string()) },
            Op::Put { key: owner_key(uuid), value: codec::encode(&owner) },
        ],
    );
    if state.member.write(txn).await?.succeeded {
        return Ok(true);
    }
    if state.member.get(&project_key(project), Consistency::Linearizable).await?.is_none() {
        return Err(ApiError::not_found(format!("project {project} does not exist: it was deleted")));
    }
    Ok(false)
}

/// A job as Rundeck lists it. `serverOwner` says whether the member answering owns it.
pub(crate) fn job_summary(
    base: &str,
    v: u32,
    project: &str,
    r: &JobRecord,
    owner: Option<&OwnerRecord>,
    me: &str,
) -> Value {
    let d = &r.definition;
    let uuid = d.uuid().unwrap_or_default();
    json!({
        "id": uuid,
        "name": d.name,
        "group": d.group.clone().unwrap_or_default(),
        "project": project,
        "description": d.description.clone().unwrap_or_default(),
        "href": format!("{base}/api/{v}/job/{uuid}"),
        "permalink": format!("{base}/project/{project}/job/show/{uuid}"),
        "scheduled": d.schedule.is_some(),
        "scheduleEnabled": d.schedule_enabled,
        "enabled": d.execution_enabled,
        "serverNodeUUID": owner.map(|o| o.member.clone()),
        "serverOwner": owner.is_some_and(|o| o.member == me),
    })
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ImportParams {
    pub fileformat: Option<String>,
    pub format: Option<String>,
    pub dupe_option: Option<String>,
    pub uuid_option: Option<String>,
}

fn format_of(param: Option<&str>, headers: &HeaderMap) -> ApiResult<JobFormat> {
    if let Some(f) = param {
        return f
            .parse()
            .map_err(|_| ApiError::bad_request(format!("format '{f}' is not supported: use yaml or json")));
    }
    let ctype = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    JobFormat::from_media_type(ctype).ok_or_else(|| {
        ApiError::bad_request(format!(
            "cannot tell the job format from Content-Type '{ctype}': send application/yaml or application/json, \
             or give fileformat=yaml|json"
        ))
    })
}

/// `POST /api/{v}/project/{project}/jobs/import`.
pub async fn import(
    State(state): State<AppState>,
    ApiVersion(v): ApiVersion,
    Path((_, project)): Path<(String, String)>,
    Query(q): Query<ImportParams>,
    headers: HeaderMap,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    require_project(&state, &project).await?;
    let format = format_of(q.fileformat.as_deref().or(q.format.as_deref()), &headers)?;
    let dupe = q.dupe_option.as_deref().unwrap_or("create");
    if !["create", "update", "skip"].contains(&dupe) {
        return Err(ApiError::bad_request(format!("dupeOption '{dupe}' is not one of create, update, skip")));
    }
    let uuid_option = q.uuid_option.as_deref().unwrap_or("preserve");
    if !["preserve", "remove"].contains(&uuid_option) {
        return Err(ApiError::bad_request(format!("uuidOption '{uuid_option}' is not one of preserve, remove")));
    }
    let text = std::str::from_utf8(&body).map_err(|_| ApiError::bad_request("the job document is not UTF-8 text"))?;
    let parsed = parse_jobs(format, text).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let base = base_url(&state);
    let (mut succeeded, mut failed, mut skipped) = (Vec::new(), Vec::new(), Vec::new());
    let mut seen_in_document = std::collections::HashSet::new();
    for (index, item) in parsed.into_iter().enumerate() {
        let mut def = match item {
            Ok(d) => d,
            Err(e) => {
                failed.push(
                    json!({ "index": index, "name": e.name, "id": e.uuid, "error": e.to_string(), "field": e.field() }),
                );
                continue;
            }
        };
        // Rundeck imports into the project of the URL, whatever the document says.
        def.project = Some(project.clone());
        if uuid_option == "remove" {
            def.uuid = None;
            def.id = None;
        }
        let entry = |d: &JobDefinition, msg: Option<String>| {
            let uuid = d.uuid().unwrap_or_default().to_string();
            let mut e = json!({
                "index": index, "id": uuid, "name": d.name, "group": d.group.clone().unwrap_or_default(),
                "project": project, "href": format!("{base}/api/{v}/job/{uuid}"),
                "permalink": format!("{base}/project/{project}/job/show/{uuid}"),
            });
            if let Some(m) = msg {
                e["error"] = json!(m);
            }
            e
        };
        match import_one(&state, &principal, &project, &mut def, dupe).await {
            Ok(ImportOutcome::Stored) => {
                seen_in_document.insert(def.uuid().unwrap_or_default().to_string());
                succeeded.push(entry(&def, None));
            }
            Ok(ImportOutcome::Skipped(why)) => skipped.push(entry(&def, Some(why))),
            Err(ImportFailure::Job(why)) => failed.push(entry(&def, Some(why))),
            Err(ImportFailure::Api(e)) => return Err(e),
        }
    }
    Ok(Json(json!({ "succeeded": succeeded, "failed": failed, "skipped": skipped })))
}

enum ImportOutcome {
    Stored,
    Skipped(String),
}

enum ImportFailure {
    /// This job cannot go in; the others still can.
    Job(String),
    /// The cluster cannot take writes now; the import stops.
    Api(ApiError),
}

impl From<ApiError> for ImportFailure {
    fn from(e: ApiError) -> Self {
        ImportFailure::Api(e)
    }
}

/// Finds a job of `project` with this group and name.
async fn find_by_name(state: &AppState, project: &str, def: &JobDefinition) -> ApiResult<Option<String>> {
    let rows = state.member.range(&format!("{JOBS}{project}/"), Consistency::Linearizable).await?;
    for (_, kv) in rows {
        let r: JobRecord = codec::decode(&kv.value)?;
        if r.definition.name == def.name && r.definition.group == def.group {
            return Ok(r.definition.uuid().map(str::to_string));
        }
    }
    Ok(None)
}

async fn import_one(
    state: &AppState,
    principal: &Principal,
    project: &str,
    def: &mut JobDefinition,
    dupe: &str,
) -> Result<ImportOutcome, ImportFailure> {
    let user = principal.user.as_str();
    // A job without uuid matches an existing job of the same group and name (Rundeck's rule).
    let existing_uuid = match def.uuid() {
        Some(u) => Some(u.to_string()),
        None => find_by_name(state, project, def).await?,
    };
    let existing = match &existing_uuid {
        Some(u) => {
            match state.member.get(&job_index_key(u), Consistency::Linearizable).await.map_err(ApiError::from)? {
                Some(idx) => {
                    let p: String = codec::decode(&idx.value).map_err(ApiError::from)?;
                    if p != project {
                        return Err(ImportFailure::Job(format!(
                        "uuid: job uuid {u} is already used by a job of project {p}; give another uuid or use uuidOption=remove"
                    )));
                    }
                    Some(load_job(state, u).await?)
                }
                None => None,
            }
        }
        None => None,
    };
    let (uuid, rev, created) = match (&existing, dupe) {
        (Some(_), "skip") => return Ok(ImportOutcome::Skipped("a job with this uuid or name already exists".into())),
        (Some(e), "update") => {
            if let Err(err) = require_job(state, principal, project, &e.record.definition, "update") {
                return Err(ImportFailure::Job(err.message));
            }
            (existing_uuid.clone().unwrap_or_default(), e.rev, Some(e.record.created_ms))
        }
        (Some(_), _) if def.uuid().is_some() => {
            return Err(ImportFailure::Job(format!(
                "uuid: a job with uuid {} already exists; use dupeOption=update or skip, or uuidOption=remove",
                def.uuid().unwrap_or_default()
            )))
        }
        // dupeOption=create without a uuid: a new job beside the one of the same name.
        _ => (def.uuid().map(str::to_string).unwrap_or_else(|| uuid::Uuid::new_v4().to_string()), 0, None),
    };
    def.uuid = Some(uuid.clone());
    def.id = Some(uuid.clone());
    if let Err(e) = def.validate() {
        return Err(ImportFailure::Job(e.to_string()));
    }
    if store_job(state, project, &uuid, def.clone(), rev, created, user).await? {
        Ok(ImportOutcome::Stored)
    } else {
        Err(ImportFailure::Job("the job changed while it was imported; import it again".into()))
    }
}

/// The jobs of `project` matching Rundeck's list filters.
async fn select_jobs(
    state: &AppState,
    principal: &Principal,
    project: &str,
    q: &HashMap<String, String>,
) -> ApiResult<Vec<(JobRecord, Option<OwnerRecord>)>> {
    require_project(state, project).await?;
    let rows = state.member.range(&format!("{JOBS}{project}/"), Consistency::Linearizable).await?;
    let ids: Option<Vec<&str>> = q.get("idlist").map(|s| s.split(',').map(str::trim).collect());
    let group = q.get("groupPath").filter(|g| !g.is_empty() && *g != "*");
    let name = q.get("jobFilter").or(q.get("jobExactFilter"));
    let exact = q.contains_key("jobExactFilter");
    let server = q.get("serverNodeUUIDFilter");
    let scheduled: Option<bool> = q.get("scheduledFilter").map(|s| s == "true");
    let mut out = Vec::new();
    for (_, kv) in rows {
        let r: JobRecord = codec::decode(&kv.value)?;
        let d = &r.definition;
        let uuid = d.uuid().unwrap_or_default();
        let owner = match state.member.kv().get(&owner_key(uuid)).map_err(steward_raft::ClusterError::from)? {
            Some(kv) => Some(codec::decode::<OwnerRecord>(&kv.value)?),
            None => None,
        };
        let g = d.group.clone().unwrap_or_default();
        let keep = ids.as_ref().is_none_or(|ids| ids.contains(&uuid))
            && group.is_none_or(|want| g == *want || g.starts_with(&format!("{want}/")))
            && name.is_none_or(|n| if exact { d.name == *n } else { d.name.contains(n.as_str()) })
            && server.is_none_or(|s| owner.as_ref().is_some_and(|o| &o.member == s))
            && scheduled.is_none_or(|s| d.schedule.is_some() == s);
        if keep && may_read(state, principal, project, d)? {
            out.push((r, owner));
        }
    }
    Ok(out)
}

/// `GET /api/{v}/project/{project}/jobs`.
pub async fn list(
    State(state): State<AppState>,
    ApiVersion(v): ApiVersion,
    Path((_, project)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    Extension(principal): Extension<Principal>,
) -> ApiResult<Json<Value>> {
    let base = base_url(&state);
    let jobs = select_jobs(&state, &principal, &project, &q).await?;
    Ok(Json(Value::Array(
        jobs.iter().map(|(r, o)| job_summary(&base, v, &project, r, o.as_ref(), &state.member.node().uuid)).collect(),
    )))
}

fn document(format: JobFormat, defs: &[JobDefinition]) -> Response {
    let exported: Vec<JobDefinition> = defs.iter().map(|d| d.for_export()).collect();
    ([(header::CONTENT_TYPE, format.media_type())], export_jobs(format, &exported)).into_response()
}

/// `GET /api/{v}/project/{project}/jobs/export?format=yaml|json&idlist=&groupPath=&jobFilter=`.
pub async fn export(
    State(state): State<AppState>,
    _v: ApiVersion,
    Path((_, project)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    Extension(principal): Extension<Principal>,
) -> ApiResult<Response> {
    let format =
        q.get("format").map(|f| f.parse()).transpose().map_err(ApiError::bad_request)?.unwrap_or(JobFormat::Json);
    let jobs = select_jobs(&state, &principal, &project, &q).await?;
    let defs: Vec<JobDefinition> = jobs.into_iter().map(|(r, _)| r.definition).collect();
    Ok(document(format, &defs))
}

/// `GET /api/{v}/job/{id}?format=yaml|json`: the job's definition as a one-job document.
pub async fn get(
    State(state): State<AppState>,
    _v: ApiVersion,
    Path((_, id)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    Extension(principal): Extension<Principal>,
) -> ApiResult<Response> {
    let format =
        q.get("format").map(|f| f.parse()).transpose().map_err(ApiError::bad_request)?.unwrap_or(JobFormat::Json);
    let job = load_job(&state, &id).await?;
    require_job(&state, &principal, &job.project, &job.record.definition, "read")?;
    Ok(document(format, &[job.record.definition]))
}

/// `GET /api/{v}/job/{id}/info`.
pub async fn info(
    State(state): State<AppState>,
    ApiVersion(v): ApiVersion,
    Path((_, id)): Path<(String, String)>,
    Extension(principal): Extension<Principal>,
) -> ApiResult<Json<Value>> {
    let job = load_job(&state, &id).await?;
    require_job(&state, &principal, &job.project, &job.record.definition, "read")?;
    let owner = match state.member.kv().get(&owner_key(&id)).map_err(steward_raft::ClusterError::from)? {
        Some(kv) => Some(codec::decode::<OwnerRecord>(&kv.value)?),
        None => None,
    };
    let mut out =
        job_summary(&base_url(&state), v, &job.project, &job.record, owner.as_ref(), &state.member.node().uuid);
    if let Ok(Some(s)) = JobSchedule::from_definition(&job.record.definition) {
        if job.record.definition.is_scheduled() {
            out["nextScheduledExecution"] =
                json!(s.next_after(chrono::Utc::now()).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)));
        }
    }
    Ok(Json(out))
}

/// Deletes job `uuid` (guarded on the revision it was read at).
async fn delete_one(state: &AppState, principal: &Principal, uuid: &str) -> ApiResult<()> {
    let job = load_job(state, uuid).await?;
    require_job(state, principal, &job.project, &job.record.definition, "delete")?;
    let txn = Txn::guarded(
        vec![Guard::ModRevision { key: job_key(&job.project, uuid), rev: job.rev }],
        vec![
            Op::Delete { key: job_key(&job.project, uuid) },
            Op::Delete { key: job_index_key(uuid) },
            Op::Delete { key: owner_key(uuid) },
        ],
    );
    if !state.member.write(txn).await?.succeeded {
        return Err(ApiError::conflict(format!("job {uuid} changed while it was being deleted; try again")));
    }
    // Its executions stay, as in Rundeck; the scheduler's records of its slots go.
    crate::engine::history::prune_deleted_jobs_fires(&state.member, vec![uuid.to_string()]);
    Ok(())
}

/// `DELETE /api/{v}/job/{id}` → 204.
pub async fn delete(
    State(state): State<AppState>,
    _v: ApiVersion,
    Path((_, id)): Path<(String, String)>,
    Extension(principal): Extension<Principal>,
) -> ApiResult<StatusCode> {
    delete_one(&state, &principal, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The ids of a bulk request, as Rundeck takes them: a JSON body `{"ids": [...]}` (strings or
/// numbers; `"idlist": "a,b"` too) or a bare JSON list, and the query parameter `param`
/// (`a,b`). Refuses an empty list, or a body of another shape, saying how to give them.
pub(crate) fn bulk_ids(body: &[u8], q: &HashMap<String, String>, param: &str, what: &str) -> ApiResult<Vec<String>> {
    let how = || format!("give the {what} to delete as {{\"ids\": [...]}} or {param}=a,b");
    let commas = |l: &str| l.split(',').map(|s| s.trim().to_string()).collect::<Vec<_>>();
    let mut ids: Vec<String> = q.get(param).map(|l| commas(l)).unwrap_or_default();
    let mut listed = |v: Value| -> ApiResult<()> {
        match v {
            Value::Array(items) => {
                for item in items {
                    match item {
                        Value::String(s) => ids.push(s),
                        Value::Number(n) => ids.push(n.to_string()),
                        other => return Err(ApiError::bad_request(format!("{other} is not an id; {}", how()))),
                    }
                }
            }
            Value::String(l) => ids.extend(commas(&l)),
            other => return Err(ApiError::bad_request(format!("{other} is not a list of ids; {}", how()))),
        }
        Ok(())
    };
    match optional_json::<Value>(body)? {
        None => {}
        Some(Value::Object(mut o)) => {
            for key in ["ids", "idlist"] {
                if let Some(v) = o.remove(key) {
                    listed(v)?;
                }
            }
            if let Some(k) = o.keys().next() {
                return Err(ApiError::bad_request(format!("unknown field '{k}'; {}", how())));
            }
        }
        Some(v @ Value::Array(_)) => listed(v)?,
        Some(other) => return Err(ApiError::bad_request(format!("{other} is not a list of ids; {}", how()))),
    }
    ids.retain(|s| !s.is_empty());
    if ids.is_empty() {
        return Err(ApiError::bad_request(how()));
    }
    Ok(ids)
}

/// `POST|DELETE /api/{v}/jobs/delete` with `{"ids":[…]}` (or `idlist=a,b`).
pub async fn bulk_delete(
    State(state): State<AppState>,
    _v: ApiVersion,
    Query(q): Query<HashMap<String, String>>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let ids = bulk_ids(&body, &q, "idlist", "jobs")?;
    let (mut ok, mut bad) = (Vec::new(), Vec::new());
    for id in &ids {
        match delete_one(&state, &principal, id).await {
            Ok(()) => ok.push(json!({ "id": id, "message": format!("Job {id} was successfully deleted") })),
            Err(e) if e.status == StatusCode::SERVICE_UNAVAILABLE => return Err(e),
            Err(e) => bad.push(json!({ "id": id, "errorCode": e.code, "message": e.message })),
        }
    }
    Ok(Json(json!({
        "requestCount": ids.len(),
        "allsuccessful": bad.is_empty(),
        "succeeded": ok,
        "failed": bad,
    })))
}

/// Sets one of the job's enable flags, as its owner.
async fn set_flag(
    state: &AppState,
    uuid: &str,
    schedule: bool,
    on: bool,
    principal: &Principal,
) -> ApiResult<Json<Value>> {
    let user = principal.user.as_str();
    for _ in 0..5 {
        let job = load_job(state, uuid).await?;
        let action = if schedule { "toggle_schedule" } else { "toggle_execution" };
        require_job(state, principal, &job.project, &job.record.definition, action)?;
        let mut def = job.record.definition.clone();
        if schedule {
            def.schedule_enabled = on;
        } else {
            def.execution_enabled = on;
        }
        if store_job(state, &job.project, uuid, def, job.rev, Some(job.record.created_ms), user).await? {
            return Ok(Json(json!({ "success": true })));
        }
    }
    Err(ApiError::unavailable("api.error.job.contended", format!("job {uuid} kept changing; retry")))
}

macro_rules! flag_handler {
    ($name:ident, $schedule:expr, $on:expr) => {
        pub async fn $name(
            State(state): State<AppState>,
            _v: ApiVersion,
            Path((_, id)): Path<(String, String)>,
            Extension(principal): Extension<Principal>,
        ) -> ApiResult<Json<Value>> {
            set_flag(&state, &id, $schedule, $on, &principal).await
        }
    };
}
flag_handler!(enable_execution, false, true);
flag_handler!(disable_execution, false, false);
flag_handler!(enable_schedule, true, true);
flag_handler!(disable_schedule, true, false);

/// Body of `POST /api/{v}/job/{id}/run`.
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct RunRequest {
    pub arg_string: Option<String>,
    pub options: Option<Map<String, Value>>,
    pub run_at_time: Option<String>,
    pub loglevel: Option<String>,
    pub as_user: Option<String>,
    #[serde(default)]
    pub filter: Option<String>,
}

/// `POST /api/{v}/job/{id}/run`: checks the options (400, nothing started, when they are
/// bad), then creates the execution — assigned to this member — in one guarded transaction.
pub async fn run(
    State(state): State<AppState>,
    ApiVersion(v): ApiVersion,
    Path((_, id)): Path<(String, String)>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let req: RunRequest = optional_json(&body)?.unwrap_or_default();
    let job = load_job(&state, &id).await?;
    let def = &job.record.definition;
    require_job(&state, &principal, &job.project, def, "run")?;
    if req.as_user.as_ref().is_some_and(|u| *u != principal.user) {
        require_job(&state, &principal, &job.project, def, "runAs")?;
    }
    if !def.execution_enabled {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "api.error.job.execution.disabled",
            format!("Job {id} has executions disabled"),
        ));
    }
    let inputs = collect_inputs(req.arg_string.as_deref(), req.options.as_ref())
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "api.error.job.options-invalid", e.to_string()))?;
    let resolved = resolve_options(&def.options, &inputs)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "api.error.job.options-invalid", e.to_string()))?;
    let loglevel = match &req.loglevel {
        Some(l) => l
            .parse::<crate::jobs::definition::LogLevel>()
            .map_err(|e| ApiError::bad_request(format!("loglevel: {e}")))?
            .as_str()
            .to_string(),
        None => def.log_level().as_str().to_string(),
    };
    let run_at = match &req.run_at_time {
        Some(t) => Some(
            chrono::DateTime::parse_from_rfc3339(t)
                .map_err(|e| ApiError::bad_request(format!("runAtTime '{t}' is not an ISO-8601 time: {e}")))?
                .timestamp_millis(),
        ),
        None => None,
    };
    let user = req.as_user.clone().unwrap_or_else(|| principal.user.clone());
    let now = chrono::Utc::now().timestamp_millis();
    let me = state.member.node().uuid.clone();
    let runner = state
        .placer
        .choose(&job.project, &me, &mut None)
        .map_err(|e| ApiError::unavailable("api.error.execution.no-member", e.to_string()))?;
    let exec = ExecutionRecord {
        project: job.project.clone(),
        job_uuid: id.clone(),
        job_name: def.name.clone(),
        job_group: def.group.clone().unwrap_or_default(),
        status: if run_at.is_some_and(|t| t > now) { ExecStatus::Scheduled } else { ExecStatus::Running },
        member: runner,
        user,
        trigger: Trigger::User,
        scheduled_ms: run_at,
        created_ms: now,
        started_ms: None,
        ended_ms: None,
        options: plain_options(&resolved),
        arg_string: req.arg_string.clone().unwrap_or_default(),
        loglevel,
        attempt: 1,
        retry_of: None,
        exclusive: !def.multiple_executions,
        running_index: running_request_key(&job.project, &id),
        abort: None,
        runner: None,
        message: None,
    };
    let mut guards = vec![Guard::ModRevision { key: job_key(&job.project, &id), rev: job.rev }];
    if exec.exclusive {
        guards.push(Guard::Absent(job_run_key(&id)));
    }
    let res = state.member.write(Txn::guarded(guards, vec![create_execution_op(&exec, Vec::new())])).await?;
    if !res.succeeded {
        if res.failed_guards.contains(&1) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "api.error.execution.conflict",
                format!("Job {id} is already running and does not allow multiple executions"),
            ));
        }
        return Err(ApiError::conflict(format!("job {id} changed while the run was requested; try again")));
    }
    let exec_id = res.allocated.first().copied().ok_or_else(|| ApiError::internal("no execution id was allocated"))?;
    Ok(Json(execution_json(&base_url(&state), v, exec_id, &exec)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_ids_are_taken_from_the_body_or_the_query_and_a_bad_list_is_refused_saying_how() {
        let q = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let none = HashMap::new();
        let ok = |body: &str, q: &HashMap<String, String>| bulk_ids(body.as_bytes(), q, "ids", "executions").unwrap();
        assert_eq!(ok(r#"{"ids": ["1", 2], "idlist": "3, 4"}"#, &none), vec!["1", "2", "3", "4"]);
        assert_eq!(ok("[5, \"6\"]", &none), vec!["5", "6"]);
        assert_eq!(ok("", &q(&[("ids", "7,8,")])), vec!["7", "8"]);
        for body in [r#"{"ids": []}"#, "", r#"{"ids": [true]}"#, r#"{"id": [1]}"#, "42"] {
            let e = bulk_ids(body.as_bytes(), &none, "ids", "executions").unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{body}");
            assert!(e.message.contains("ids=a,b"), "{body}: {}", e.message);
        }
    }
}
