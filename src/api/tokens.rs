//! API tokens in Rundeck's shapes: `GET/POST /api/{v}/tokens[/{user}]`,
//! `GET/DELETE /api/{v}/token/{id}`.
//!
//! Everyone allowed `apitoken: generate_user_token` manages their own tokens, with roles they
//! hold themselves. Tokens of other users, or with roles the caller lacks, need
//! `generate_service_token` (create) or `admin` (anything). The token text is in the answer to
//! the create request only.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};

use super::authz;
use super::version::ApiVersion;
use super::{ApiError, ApiJson, ApiResult, AppState};
use crate::acl::{Context, Resource};
use crate::auth::tokens::{self, TokenRecord};
use crate::auth::{users, Principal};

fn time(ms: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_millis(ms).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

fn token_json(r: &TokenRecord) -> Value {
    json!({
        "id": r.id,
        "user": r.user,
        "creator": r.creator,
        "name": r.name,
        "roles": r.roles,
        "expiration": r.expires_ms.and_then(time),
        "expired": r.is_expired(chrono::Utc::now().timestamp_millis()),
    })
}

fn may(state: &AppState, p: &Principal, action: &str) -> ApiResult<bool> {
    authz::allowed(state, p, Context::Application, &Resource::generic("apitoken"), action)
}

/// Refuses unless the caller is `user` or may administer tokens.
fn require_own_or_admin(state: &AppState, p: &Principal, user: &str) -> ApiResult<()> {
    if p.user == user || may(state, p, "admin")? {
        return Ok(());
    }
    Err(authz::forbidden("admin", &Resource::generic("apitoken"), Context::Application))
}

pub async fn list(
    State(state): State<AppState>,
    _v: ApiVersion,
    Extension(p): Extension<Principal>,
) -> ApiResult<Json<Value>> {
    let user = if may(&state, &p, "admin")? { None } else { Some(p.user.as_str()) };
    let all = tokens::list(&state.member, user).await?;
    Ok(Json(Value::Array(all.iter().map(token_json).collect())))
}

pub async fn list_user(
    State(state): State<AppState>,
    _v: ApiVersion,
    Extension(p): Extension<Principal>,
    Path((_, user)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    require_own_or_admin(&state, &p, &user)?;
    let all = tokens::list(&state.member, Some(&user)).await?;
    Ok(Json(Value::Array(all.iter().map(token_json).collect())))
}

/// Roles as Rundeck takes them: a list, a comma-separated string, or `*` (the user's own).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Roles {
    List(Vec<String>),
    Text(String),
}

/// Body of a token creation.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub roles: Option<Roles>,
    #[serde(default)]
    pub duration: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

pub async fn create(
    State(state): State<AppState>,
    _v: ApiVersion,
    Extension(p): Extension<Principal>,
    ApiJson(body): ApiJson<CreateToken>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let user = body.user.clone().unwrap_or_else(|| p.user.clone());
    create_for(state, p, user, body).await
}

pub async fn create_user(
    State(state): State<AppState>,
    _v: ApiVersion,
    Extension(p): Extension<Principal>,
    Path((_, user)): Path<(String, String)>,
    ApiJson(body): ApiJson<CreateToken>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    if body.user.as_ref().is_some_and(|u| *u != user) {
        return Err(ApiError::bad_request("the user in the body differs from the user in the path"));
    }
    create_for(state, p, user, body).await
}

async fn create_for(
    state: AppState,
    p: Principal,
    user: String,
    body: CreateToken,
) -> ApiResult<(StatusCode, Json<Value>)> {
    users::validate_name("user", &user).map_err(ApiError::bad_request)?;
    // The roles the user holds: the caller's own for their own tokens, else the stored user's.
    let holds: Vec<String> = if user == p.user {
        p.roles.clone()
    } else {
        users::get(&state.member, &user).await?.map(|u| u.groups).unwrap_or_default()
    };
    let roles: Vec<String> = match body.roles {
        None => return Err(ApiError::bad_request("roles are required: a list, a comma-separated string or \"*\"")),
        Some(Roles::Text(t)) if t.trim() == "*" => holds.clone(),
        Some(Roles::Text(t)) => t.split(',').map(|r| r.trim().to_string()).filter(|r| !r.is_empty()).collect(),
        Some(Roles::List(l)) => l.into_iter().map(|r| r.trim().to_string()).collect(),
    };
    if roles.is_empty() {
        return Err(ApiError::bad_request("a token needs at least one role"));
    }
    for r in &roles {
        users::validate_name("role", r).map_err(ApiError::bad_request)?;
    }
    // A service token: for someone else, or with roles beyond what the user holds.
    let service = user != p.user || roles.iter().any(|r| !holds.contains(r));
    if service && !(may(&state, &p, "generate_service_token")? || may(&state, &p, "admin")?) {
        return Err(authz::forbidden("generate_service_token", &Resource::generic("apitoken"), Context::Application));
    }
    let now = chrono::Utc::now().timestamp_millis();
    let max = state.token_max_duration;
    let asked = match body.duration.as_deref().map(tokens::parse_duration).transpose().map_err(ApiError::bad_request)? {
        Some(d) if d.is_zero() => None,
        other => other,
    };
    let lifetime = match (asked, max) {
        (Some(d), Some(m)) if d > m => {
            return Err(ApiError::bad_request(format!(
                "duration {} exceeds the maximum token lifetime of {}s (auth.token-max-duration)",
                body.duration.unwrap_or_default(),
                m.as_secs()
            )))
        }
        (Some(d), _) => Some(d),
        (None, m) => m,
    };
    let record = TokenRecord {
        id: uuid::Uuid::new_v4().to_string(),
        user,
        roles,
        name: body.name.unwrap_or_default(),
        creator: p.user.clone(),
        created_ms: now,
        expires_ms: lifetime.map(|d| now.saturating_add(d.as_millis().min(i64::MAX as u128) as i64)),
    };
    let token = tokens::new_token();
    tokens::create(&state.member, &token, &record).await?;
    let mut out = token_json(&record);
    out["token"] = json!(token);
    Ok((StatusCode::CREATED, Json(out)))
}

pub async fn get(
    State(state): State<AppState>,
    _v: ApiVersion,
    Extension(p): Extension<Principal>,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let not_found = || ApiError::not_found(format!("Token does not exist: {id}"));
    let record = tokens::get(&state.member, &id).await?.ok_or_else(not_found)?;
    // Someone else's token is "not found" unless the caller may administer tokens, so token
    // ids cannot be probed.
    if require_own_or_admin(&state, &p, &record.user).is_err() {
        return Err(not_found());
    }
    Ok(Json(token_json(&record)))
}

pub async fn delete(
    State(state): State<AppState>,
    _v: ApiVersion,
    Extension(p): Extension<Principal>,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let not_found = || ApiError::not_found(format!("Token does not exist: {id}"));
    let record = tokens::get(&state.member, &id).await?.ok_or_else(not_found)?;
    if require_own_or_admin(&state, &p, &record.user).is_err() {
        return Err(not_found());
    }
    if !tokens::delete(&state.member, &id).await? {
        return Err(not_found());
    }
    Ok(StatusCode::NO_CONTENT)
}
