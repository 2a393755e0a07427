//! ACL policy files in Rundeck's paths and shapes: `/api/{v}/system/acl/[name.aclpolicy]` and
//! `/api/{v}/project/{p}/acl/[name.aclpolicy]`.
//!
//! A body is the YAML itself (`application/yaml`, `text/yaml`, `application/x-yaml`,
//! `text/plain`) or JSON `{"contents": "<yaml>"}`. A policy is validated before it is stored;
//! an invalid one gets 400 listing every problem, and nothing is stored. `GET` of a file answers
//! `{"contents": …}`, or the YAML when `Accept` asks for YAML or text.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use steward_raft::Consistency;
use steward_storage::{Guard, Op, Txn};

use super::version::ApiVersion;
use super::{base_url, ApiError, ApiResult, AppState};
use crate::acl::{self, AclRecord, Scope};
use crate::codec;

const SUFFIX: &str = ".aclpolicy";

/// Where a set of policy files lives.
struct Place {
    prefix: String,
    /// The API path of the directory, after `/api/{v}/`.
    href: String,
    project: Option<String>,
    /// The project record a project policy's write is guarded on, so a policy never outlives
    /// its project (a project's deletion takes its policies along).
    project_key: Option<String>,
}

impl Place {
    fn system() -> Place {
        Place { prefix: acl::SYSTEM_PREFIX.into(), href: "system/acl/".into(), project: None, project_key: None }
    }

    async fn project(state: &AppState, p: &str) -> ApiResult<Place> {
        super::projects::validate_name(p)?;
        let project_key = format!("{}{p}", super::projects::PROJECTS_PREFIX);
        if state.member.get(&project_key, Consistency::Linearizable).await?.is_none() {
            return Err(ApiError::not_found(format!("Project does not exist: {p}")));
        }
        Ok(Place {
            prefix: format!("{}{p}/", acl::PROJECT_PREFIX),
            href: format!("project/{p}/acl/"),
            project: Some(p.into()),
            project_key: Some(project_key),
        })
    }

    fn scope(&self) -> Scope<'_> {
        match &self.project {
            Some(p) => Scope::Project(p),
            None => Scope::System,
        }
    }
}

fn check_name(name: &str) -> ApiResult<()> {
    let stem = name.strip_suffix(SUFFIX).unwrap_or("");
    let ok = !stem.is_empty()
        && name.len() <= 200
        && stem.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        && !stem.starts_with('.');
    if !ok {
        return Err(ApiError::bad_request(format!(
            "invalid policy name '{name}': use letters, digits and _ . - (not starting with .), ending in {SUFFIX}"
        )));
    }
    Ok(())
}

/// The YAML of a request body, by its content type.
fn contents(headers: &HeaderMap, body: &Bytes) -> ApiResult<String> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|c| c.to_str().ok()).unwrap_or("");
    let ct = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let text = std::str::from_utf8(body).map_err(|_| ApiError::bad_request("the policy is not UTF-8 text"))?;
    match ct.as_str() {
        "application/json" => {
            let v: Value =
                serde_json::from_str(text).map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
            v.get("contents")
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| ApiError::bad_request("a JSON body is {\"contents\": \"<yaml>\"}"))
        }
        "application/yaml" | "application/x-yaml" | "text/yaml" | "text/x-yaml" | "text/plain" => Ok(text.to_string()),
        other => Err(ApiError::unsupported_media_type(format!(
            "unsupported content type '{other}': send the policy as application/yaml or text/plain, or as \
             application/json {{\"contents\": \"…\"}}"
        ))),
    }
}

async fn list(state: &AppState, v: u32, place: Place) -> ApiResult<Json<Value>> {
    let base = format!("{}/api/{v}/{}", base_url(state), place.href);
    let rows = state.member.range(&place.prefix, Consistency::Linearizable).await?;
    let resources: Vec<Value> = rows
        .iter()
        .map(|(key, _)| {
            let name = &key[place.prefix.len()..];
            json!({ "path": name, "type": "file", "name": name, "href": format!("{base}{name}") })
        })
        .collect();
    Ok(Json(json!({ "path": "", "type": "directory", "href": base, "resources": resources })))
}

async fn get(state: &AppState, place: Place, name: &str, headers: &HeaderMap) -> ApiResult<Response> {
    check_name(name)?;
    let kv = state
        .member
        .get(&format!("{}{name}", place.prefix), Consistency::Linearizable)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("Policy does not exist: {name}")))?;
    let record: AclRecord = codec::decode(&kv.value)?;
    let accept = headers.get(header::ACCEPT).and_then(|a| a.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    if !accept.contains("json") && (accept.contains("yaml") || accept.contains("text/plain")) {
        return Ok(([(header::CONTENT_TYPE, "application/yaml")], record.contents).into_response());
    }
    Ok(Json(json!({ "contents": record.contents })).into_response())
}

/// Creates (`must_exist = false`) or replaces (`true`) a policy file.
async fn put(
    state: &AppState,
    place: Place,
    name: &str,
    headers: &HeaderMap,
    body: &Bytes,
    must_exist: bool,
) -> ApiResult<(StatusCode, Json<Value>)> {
    check_name(name)?;
    let text = contents(headers, body)?;
    acl::parse(name, &text, place.scope())?;
    let key = format!("{}{name}", place.prefix);
    let record = AclRecord { contents: text.clone(), modified_ms: chrono::Utc::now().timestamp_millis() };
    let guard = if must_exist { Guard::Exists(key.clone()) } else { Guard::Absent(key.clone()) };
    let mut guards = vec![guard];
    guards.extend(place.project_key.clone().map(Guard::Exists));
    let res = state.member.write(Txn::guarded(guards, vec![Op::Put { key, value: codec::encode(&record) }])).await?;
    if !res.succeeded && res.failed_guards.contains(&1) {
        return Err(ApiError::not_found(format!("Project does not exist: {}", place.project.unwrap_or_default())));
    }
    match (res.succeeded, must_exist) {
        (true, false) => Ok((StatusCode::CREATED, Json(json!({ "contents": text })))),
        (true, true) => Ok((StatusCode::OK, Json(json!({ "contents": text })))),
        (false, false) => Err(ApiError::conflict(format!("Policy already exists: {name}"))),
        (false, true) => Err(ApiError::not_found(format!("Policy does not exist: {name}"))),
    }
}

async fn remove(state: &AppState, place: Place, name: &str) -> ApiResult<StatusCode> {
    check_name(name)?;
    let key = format!("{}{name}", place.prefix);
    let res = state.member.write(Txn::guarded(vec![Guard::Exists(key.clone())], vec![Op::Delete { key }])).await?;
    if !res.succeeded {
        return Err(ApiError::not_found(format!("Policy does not exist: {name}")));
    }
    Ok(StatusCode::NO_CONTENT)
}

pub async fn list_system(State(state): State<AppState>, ApiVersion(v): ApiVersion) -> ApiResult<Json<Value>> {
    list(&state, v, Place::system()).await
}

pub async fn get_system(
    State(state): State<AppState>,
    _v: ApiVersion,
    Path((_, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    get(&state, Place::system(), &name, &headers).await
}

pub async fn create_system(
    State(state): State<AppState>,
    _v: ApiVersion,
    Path((_, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    put(&state, Place::system(), &name, &headers, &body, false).await
}

pub async fn update_system(
    State(state): State<AppState>,
    _v: ApiVersion,
    Path((_, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    put(&state, Place::system(), &name, &headers, &body, true).await
}

pub async fn delete_system(
    State(state): State<AppState>,
    _v: ApiVersion,
    Path((_, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    remove(&state, Place::system(), &name).await
}

pub async fn list_project(
    State(state): State<AppState>,
    ApiVersion(v): ApiVersion,
    Path((_, p)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let place = Place::project(&state, &p).await?;
    list(&state, v, place).await
}

pub async fn get_project(
    State(state): State<AppState>,
    _v: ApiVersion,
    Path((_, p, name)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let place = Place::project(&state, &p).await?;
    get(&state, place, &name, &headers).await
}

pub async fn create_project(
    State(state): State<AppState>,
    _v: ApiVersion,
    Path((_, p, name)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let place = Place::project(&state, &p).await?;
    put(&state, place, &name, &headers, &body, false).await
}

pub async fn update_project(
    State(state): State<AppState>,
    _v: ApiVersion,
    Path((_, p, name)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let place = Place::project(&state, &p).await?;
    put(&state, place, &name, &headers, &body, true).await
}

pub async fn delete_project(
    State(state): State<AppState>,
    _v: ApiVersion,
    Path((_, p, name)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    let place = Place::project(&state, &p).await?;
    remove(&state, place, &name).await
}
