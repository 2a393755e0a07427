//! Users: Rundeck's profile endpoints (`/api/{v}/user/info[/{user}]`, `/user/list`,
//! `/user/roles`), steward's user management (`POST /api/{v}/users`,
//! `PUT/DELETE /api/{v}/users/{user}`; Rundeck keeps users in files instead) and the form
//! login `POST /j_security_check` that starts a browser session.

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form, Json};
use serde::Deserialize;
use serde_json::{json, Value};
use steward_raft::Consistency;
use steward_storage::{Guard, Op, Txn};

use super::version::ApiVersion;
use super::{ApiError, ApiJson, ApiResult, AppState};
use crate::auth::users::{self, user_key, UserRecord, USERS_PREFIX};
use crate::auth::{session, tokens, Principal};
use crate::codec;

fn profile(login: &str, u: Option<&UserRecord>) -> Value {
    json!({
        "login": login,
        "firstName": u.map(|u| u.first_name.as_str()).unwrap_or(""),
        "lastName": u.map(|u| u.last_name.as_str()).unwrap_or(""),
        "email": u.map(|u| u.email.as_str()).unwrap_or(""),
    })
}

pub async fn info_self(
    State(state): State<AppState>,
    _v: ApiVersion,
    Extension(p): Extension<Principal>,
) -> ApiResult<Json<Value>> {
    let u = users::get(&state.member, &p.user).await?;
    Ok(Json(profile(&p.user, u.as_ref())))
}

pub async fn info(
    State(state): State<AppState>,
    _v: ApiVersion,
    Path((_, login)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let u = users::get(&state.member, &login)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("User does not exist: {login}")))?;
    Ok(Json(profile(&login, Some(&u))))
}

pub async fn list(State(state): State<AppState>, _v: ApiVersion) -> ApiResult<Json<Value>> {
    let mut out = Vec::new();
    for (_, kv) in state.member.range(USERS_PREFIX, Consistency::Linearizable).await? {
        let u: UserRecord = codec::decode(&kv.value)?;
        out.push(profile(&u.login, Some(&u)));
    }
    Ok(Json(Value::Array(out)))
}

pub async fn roles(_v: ApiVersion, Extension(p): Extension<Principal>) -> Json<Value> {
    Json(json!({ "roles": p.roles }))
}

/// Body of `POST /api/{v}/users` and `PUT /api/{v}/users/{user}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UserBody {
    #[serde(default)]
    pub login: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub groups: Option<Vec<String>>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub first_name: Option<String>,
    #[serde(default)]
    pub last_name: Option<String>,
}

fn check_groups(groups: &[String]) -> ApiResult<()> {
    for g in groups {
        users::validate_name("group", g).map_err(ApiError::bad_request)?;
    }
    Ok(())
}

pub async fn create(
    State(state): State<AppState>,
    _v: ApiVersion,
    ApiJson(body): ApiJson<UserBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let login = body.login.ok_or_else(|| ApiError::bad_request("login is required"))?;
    users::validate_name("user", &login).map_err(ApiError::bad_request)?;
    let password = body.password.ok_or_else(|| ApiError::bad_request("password is required"))?;
    users::validate_password(&password).map_err(ApiError::bad_request)?;
    let groups = body.groups.unwrap_or_default();
    check_groups(&groups)?;
    let now = chrono::Utc::now().timestamp_millis();
    let record = UserRecord {
        login: login.clone(),
        password_hash: users::hash_password(password).await?,
        groups,
        email: body.email.unwrap_or_default(),
        first_name: body.first_name.unwrap_or_default(),
        last_name: body.last_name.unwrap_or_default(),
        created_ms: now,
        sessions_after_ms: now,
    };
    let txn = Txn::guarded(
        vec![Guard::Absent(user_key(&login))],
        vec![Op::Put { key: user_key(&login), value: codec::encode(&record) }],
    );
    if !state.member.write(txn).await?.succeeded {
        return Err(ApiError::conflict(format!("user {login} already exists")));
    }
    Ok((StatusCode::CREATED, Json(profile(&login, Some(&record)))))
}

pub async fn update(
    State(state): State<AppState>,
    _v: ApiVersion,
    Path((_, login)): Path<(String, String)>,
    ApiJson(body): ApiJson<UserBody>,
) -> ApiResult<Json<Value>> {
    if body.login.as_ref().is_some_and(|l| *l != login) {
        return Err(ApiError::bad_request("a user's login cannot be changed"));
    }
    if let Some(pw) = &body.password {
        users::validate_password(pw).map_err(ApiError::bad_request)?;
    }
    if let Some(g) = &body.groups {
        check_groups(g)?;
    }
    let new_hash = match body.password {
        Some(pw) => Some(users::hash_password(pw).await?),
        None => None,
    };
    let key = user_key(&login);
    let kv = state
        .member
        .get(&key, Consistency::Linearizable)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("User does not exist: {login}")))?;
    let mut u: UserRecord = codec::decode(&kv.value)?;
    if let Some(h) = new_hash {
        u.password_hash = h;
        // A new password ends every session started with the old one.
        u.sessions_after_ms = chrono::Utc::now().timestamp_millis();
    }
    u.groups = body.groups.unwrap_or(u.groups);
    u.email = body.email.unwrap_or(u.email);
    u.first_name = body.first_name.unwrap_or(u.first_name);
    u.last_name = body.last_name.unwrap_or(u.last_name);
    let txn = Txn::guarded(
        vec![Guard::ModRevision { key: key.clone(), rev: kv.mod_revision }],
        vec![Op::Put { key, value: codec::encode(&u) }],
    );
    if !state.member.write(txn).await?.succeeded {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "api.error.item.conflict",
            format!("user {login} was changed concurrently; try again"),
        ));
    }
    Ok(Json(profile(&login, Some(&u))))
}

/// Deletes a user and revokes every token issued to them.
pub async fn delete(
    State(state): State<AppState>,
    _v: ApiVersion,
    Path((_, login)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let mut ops = vec![Op::Delete { key: user_key(&login) }];
    ops.extend(tokens::delete_ops_for_user(&state.member, &login).await?);
    let res = state.member.write(Txn::guarded(vec![Guard::Exists(user_key(&login))], ops)).await?;
    if !res.succeeded {
        return Err(ApiError::not_found(format!("User does not exist: {login}")));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The form of `POST /j_security_check`.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    pub j_username: String,
    pub j_password: String,
}

/// Rundeck's form login. On success: 200 with the user and the session's expiry, and the
/// `JSESSIONID` cookie that every member accepts; on failure: 401 (never a hint whether the
/// user exists).
pub async fn login(State(state): State<AppState>, form: Result<Form<LoginForm>, FormRejection>) -> ApiResult<Response> {
    let Form(form) =
        form.map_err(|e| ApiError::bad_request(format!("expected a form with j_username and j_password: {e}")))?;
    let user = users::check_login(&state.member, &form.j_username, &form.j_password).await.inspect_err(|_| {
        tracing::info!(user = %form.j_username, "refused a login");
    })?;
    let (cookie, expires) = state.sessions.issue(&user.login).await?;
    let max_age = state.sessions.ttl().as_secs();
    let set = format!("{}={cookie}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}", session::COOKIE);
    let set = HeaderValue::from_str(&set).map_err(|e| ApiError::internal(e.to_string()))?;
    let expires =
        chrono::DateTime::from_timestamp_millis(expires).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    let body = Json(json!({ "user": user.login, "roles": user.groups, "expires": expires }));
    Ok(([(header::SET_COOKIE, set)], body).into_response())
}
