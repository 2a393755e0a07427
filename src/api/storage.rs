//! Key storage in Rundeck's paths and shapes: `GET/POST/PUT/DELETE /api/{v}/storage/keys/{path}`,
//! directory listings, and the steward extension `POST /api/{v}/system/keys/rekey`.
//!
//! `POST` creates (409 if the path exists), `PUT` replaces (404 if it does not), the type comes
//! from `Content-Type`. `GET` answers metadata as JSON; with an `Accept` that asks for content
//! (`application/pgp-keys`, `application/octet-stream`, `application/x-rundeck-data-password`,
//! `*/*`) it answers a public key's content, and 403 for private keys and passwords, which are
//! write-only.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};

use super::authz;
use super::version::ApiVersion;
use super::{base_url, ApiError, ApiJson, ApiResult, AppState};
use crate::acl::{Context, Resource};
use crate::auth::Principal;
use crate::keys::rekey::rekey as run_rekey;
use crate::keys::{Entry, KeyError, KeyId, KeyMeta, KeyPath, KeyType};

fn time(ms: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_millis(ms).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

fn meta_json(m: &KeyMeta) -> Value {
    let mut meta = json!({
        "Rundeck-content-type": m.key_type.content_type(),
        "Rundeck-content-size": m.size.to_string(),
        "Rundeck-content-creation-time": time(m.created_ms),
        "Rundeck-content-modify-time": time(m.modified_ms),
    });
    match m.key_type {
        KeyType::Private => {
            meta["Rundeck-key-type"] = json!("private");
            meta["Rundeck-content-mask"] = json!("content");
        }
        KeyType::Public => meta["Rundeck-key-type"] = json!("public"),
        KeyType::Password => {
            meta["Rundeck-data-type"] = json!("password");
            meta["Rundeck-content-mask"] = json!("content");
        }
    }
    meta
}

fn url(base: &str, v: u32, path: &KeyPath) -> String {
    format!("{base}/api/{v}/storage/{}", path.display())
}

fn file_json(base: &str, v: u32, m: &KeyMeta) -> Value {
    json!({
        "meta": meta_json(m),
        "url": url(base, v, &m.path),
        "name": m.path.name(),
        "type": "file",
        "path": m.path.display(),
    })
}

/// True when the `Accept` header asks for the content rather than the metadata.
fn wants_content(headers: &HeaderMap) -> bool {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|a| a.to_str().ok()) else { return false };
    let accept = accept.to_ascii_lowercase();
    if accept.contains("application/json") {
        return false;
    }
    ["application/pgp-keys", "application/octet-stream", "application/x-rundeck-data-password", "*/*"]
        .iter()
        .any(|t| accept.contains(t))
}

async fn show(state: &AppState, principal: &Principal, v: u32, raw: &str, headers: &HeaderMap) -> ApiResult<Response> {
    // A trailing slash names a directory (`GET …/keys/a/`).
    let path = KeyPath::parse(raw.strip_suffix('/').unwrap_or(raw))?;
    let base = base_url(state);
    match state.keys.entry(&path).await? {
        Entry::File(m) if wants_content(headers) => {
            let content = state.keys.read_public(&m.path).await?;
            Ok(([(header::CONTENT_TYPE, m.key_type.content_type())], content.expose().to_vec()).into_response())
        }
        Entry::File(m) => Ok(Json(file_json(&base, v, &m)).into_response()),
        Entry::Directory { path, files, dirs } => {
            // A listing shows only what the caller may read.
            let readable = |p: &KeyPath| {
                authz::allowed(state, principal, Context::Application, &Resource::storage(&p.display()), "read")
            };
            let mut resources = Vec::new();
            for d in dirs {
                if readable(&d)? {
                    resources.push(json!({ "url": url(&base, v, &d), "type": "directory", "path": d.display() }));
                }
            }
            for f in files {
                if readable(&f.path)? {
                    resources.push(file_json(&base, v, &f));
                }
            }
            Ok(Json(json!({
                "resources": resources,
                "url": url(&base, v, &path),
                "type": "directory",
                "path": path.display(),
            }))
            .into_response())
        }
    }
}

pub async fn get_root(
    State(state): State<AppState>,
    ApiVersion(v): ApiVersion,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    show(&state, &principal, v, "", &headers).await
}

pub async fn get(
    State(state): State<AppState>,
    ApiVersion(v): ApiVersion,
    Extension(principal): Extension<Principal>,
    Path((_, raw)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    show(&state, &principal, v, &raw, &headers).await
}

/// Path, type and value of a write, each checked before anything is proposed.
async fn write_input(
    state: &AppState,
    raw: &str,
    headers: &HeaderMap,
    body: Body,
) -> ApiResult<(KeyPath, KeyType, Vec<u8>)> {
    let path = KeyPath::parse(raw)?;
    if path.is_root() {
        return Err(KeyError::InvalidPath("'': a key needs a name".into()).into());
    }
    let ct = headers.get(header::CONTENT_TYPE).and_then(|c| c.to_str().ok()).unwrap_or("");
    let key_type = KeyType::from_content_type(ct).ok_or_else(|| KeyError::UnsupportedType(ct.to_string()))?;
    let max = state.keys.max_value_bytes();
    let too_large = || ApiError::from(KeyError::TooLarge { size: max + 1, max });
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|l| l.to_str().ok()).and_then(|l| l.parse::<usize>().ok());
    if declared.is_some_and(|l| l > max) {
        return Err(too_large());
    }
    // Read at most one byte past the limit: enough to know it is exceeded, whatever was declared.
    let bytes = axum::body::to_bytes(body, max + 1).await.map_err(|_| too_large())?;
    if bytes.len() > max {
        return Err(too_large());
    }
    Ok((path, key_type, bytes.to_vec()))
}

pub async fn create(
    State(state): State<AppState>,
    ApiVersion(v): ApiVersion,
    Path((_, raw)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let (path, key_type, value) = write_input(&state, &raw, &headers, body).await?;
    let m = state.keys.create(&path, key_type, &value).await?;
    Ok((StatusCode::CREATED, Json(file_json(&base_url(&state), v, &m))))
}

pub async fn update(
    State(state): State<AppState>,
    ApiVersion(v): ApiVersion,
    Path((_, raw)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Value>> {
    let (path, key_type, value) = write_input(&state, &raw, &headers, body).await?;
    let m = state.keys.update(&path, key_type, &value).await?;
    Ok(Json(file_json(&base_url(&state), v, &m)))
}

pub async fn delete(
    State(state): State<AppState>,
    _v: ApiVersion,
    Path((_, raw)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let path = KeyPath::parse(&raw)?;
    if path.is_root() {
        return Err(KeyError::InvalidPath("'': the root cannot be deleted".into()).into());
    }
    state.keys.delete(&path).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Body of `POST /api/{v}/system/keys/rekey`: the id of the new master key (never the key).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RekeyBody {
    pub key_id: String,
}

/// Re-seals every stored secret under the master key `keyId` (see `keys::rekey`).
pub async fn rekey(
    State(state): State<AppState>,
    _v: ApiVersion,
    ApiJson(body): ApiJson<RekeyBody>,
) -> ApiResult<Json<Value>> {
    let id = KeyId::parse(&body.key_id).ok_or_else(|| {
        ApiError::bad_request(format!("keyId '{}' is not a master key id (16 hex digits)", body.key_id))
    })?;
    let report = run_rekey(&state.keys, id).await?;
    tracing::info!(key = %id, resealed = report.resealed, "re-sealed key storage under a new master key");
    Ok(Json(json!({ "keyId": id.to_string(), "resealed": report.resealed, "unchanged": report.unchanged })))
}
