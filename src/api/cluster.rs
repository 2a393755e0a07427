//! `GET /api/{v}/cluster/members` (an extension: Rundeck documents no member list) and
//! `DELETE /api/{v}/cluster/members/{id}` (a member leaves).

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use steward_raft::Consistency;

use super::internal::{MASTER_KEY_ID_HEADER, SECRET_HEADER};
use super::version::ApiVersion;
use super::{ApiError, ApiJson, ApiResult, AppState};
use crate::server::StopReason;

/// The members with, for each: its Raft role and replication, and from the leader's heartbeat
/// table its liveness (`active`, `inactive`, `dead`), execution mode, load and the age of its
/// last heartbeat; and the number of jobs it owns. With `view=local`, liveness and load come from
/// this member's own copy of the leader's table (what its remote execution policy decides by,
/// up to one heartbeat interval old) instead of the leader's.
pub async fn members(
    State(state): State<AppState>,
    _v: ApiVersion,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let mut status = state.member.cluster_status().await?;
    let mut staleness = Duration::ZERO;
    match q.get("view").map(String::as_str) {
        None | Some("leader") => {}
        Some("local") => {
            let (view, age) = state.placer.heartbeats().view().unwrap_or_default();
            status.heartbeats = view;
            staleness = age;
        }
        Some(other) => return Err(ApiError::bad_request(format!("view '{other}' is not 'leader' or 'local'"))),
    }
    let leader_uuid = status.members.iter().find(|m| m.id == status.leader_id).map(|m| m.node.uuid.clone());
    let nodes: Vec<_> = status.members.iter().map(|m| (m.id, m.node.clone())).collect();
    let modes = crate::cluster::mode::all_local(&state.member);
    let settings = state.placer.heartbeats().settings();
    let judged = crate::cluster::heartbeat::judge(&status.heartbeats, staleness, &nodes, &modes, &settings.heartbeat);
    let mut owned: HashMap<String, usize> = HashMap::new();
    for (_, rec, _) in crate::cluster::takeover::owners(&state.member)? {
        *owned.entry(rec.member).or_default() += 1;
    }
    let members: Vec<Value> = status
        .members
        .iter()
        .zip(&judged)
        .map(|(m, j)| {
            let beat = status.heartbeats.beat(m.id);
            json!({
                "id": m.node.uuid,
                "raftId": m.id.to_string(),
                "httpAddress": m.node.http_addr,
                "raftAddress": m.node.raft_addr,
                "role": m.role.as_str(),
                "lastContactMs": m.last_contact_ms,
                "matchedIndex": m.matched_index,
                "state": j.liveness.as_str(),
                "executionMode": j.mode.as_str(),
                "ownedJobs": owned.get(&m.node.uuid).copied().unwrap_or(0),
                "runningExecutions": j.info.as_ref().map(|i| i.running),
                "capacity": j.info.as_ref().map(|i| i.capacity),
                "loadAverage": j.info.as_ref().map(|i| i.load1),
                "tags": j.info.as_ref().map(|i| i.tags.clone()).unwrap_or_default(),
                "lastHeartbeatAgeMs": beat.filter(|b| !b.info.is_empty()).map(|b| b.age_ms + staleness.as_millis() as u64),
                "self": m.node.uuid == state.member.node().uuid,
            })
        })
        .collect();
    Ok(Json(json!({
        "leader": leader_uuid,
        "term": status.term,
        "lastLogIndex": status.last_log_index,
        "members": members,
    })))
}

/// Removes the member with uuid (or Raft id) `id`. When it is this member, it stops once the
/// removal is committed.
pub async fn remove(
    State(state): State<AppState>,
    _v: ApiVersion,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let status = state.member.cluster_status().await?;
    let target = status
        .members
        .iter()
        .find(|m| m.node.uuid == id || m.id.to_string() == id)
        .ok_or_else(|| ApiError::not_found(format!("no cluster member with id {id}")))?;
    let target_id = target.id;
    state.member.leave(target_id).await?;
    if target_id == state.member.id() {
        let _ = state.stop.send(Some(StopReason::Removed));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Body of `POST /api/{v}/cluster/join`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JoinPeer {
    /// HTTP URL of any member of the cluster to join.
    pub peer: String,
    /// The secret of the cluster to join; this member's own when absent.
    pub cluster_secret: Option<String>,
    /// A file on this member holding the joined cluster's key storage master key; this member's
    /// own key when absent (then both clusters must use the same key).
    pub master_key_file: Option<String>,
}

/// Keys a member that was never used holds: its cluster's id, API tokens, the session key and
/// the key ids of its keyring.
fn is_bootstrap_key(key: &str) -> bool {
    key == steward_raft::member::CLUSTER_ID_KEY
        || key == crate::auth::session::SESSION_KEY
        || key.starts_with(crate::auth::tokens::TOKENS_PREFIX)
        || key.starts_with(crate::auth::tokens::TOKEN_IDS_PREFIX)
        || key.starts_with("keyring/")
}

/// `POST /api/{v}/cluster/join`: this running member, alone in its own cluster and holding no
/// data, joins the cluster of `peer`. It checks the peer and the secret first, answers 202, then
/// restarts itself in join mode; its state is replaced by the cluster's.
pub async fn join_peer(
    State(state): State<AppState>,
    _v: ApiVersion,
    ApiJson(body): ApiJson<JoinPeer>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    if !(body.peer.starts_with("http://") || body.peer.starts_with("https://")) {
        return Err(ApiError::bad_request(format!("peer '{}' is not an http:// URL of a member", body.peer)));
    }
    let secret = body.cluster_secret.clone().unwrap_or_else(|| state.cluster_secret.to_string());
    steward_raft::network::validate_secret(&secret)
        .map_err(|e| ApiError::bad_request(format!("clusterSecret: {e}")))?;
    let status = state.member.cluster_status().await?;
    if status.members.len() > 1 {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "api.error.cluster.not-alone",
            format!(
                "this member already belongs to a cluster of {} members; `steward cluster leave` it first",
                status.members.len()
            ),
        ));
    }
    let data = state.member.range("", Consistency::Linearizable).await?;
    if let Some((key, _)) = data.iter().find(|(k, _)| !is_bootstrap_key(k)) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "api.error.cluster.has-data",
            format!("this member holds data ({key}); only a member without projects or jobs can join another cluster"),
        ));
    }
    // The master key this member will seal key storage with in the new cluster.
    let master_key = match &body.master_key_file {
        Some(f) => Some(
            crate::keys::MasterKey::read_file(std::path::Path::new(f))
                .map_err(|e| ApiError::bad_request(format!("masterKeyFile: {e}")))?,
        ),
        None => None,
    };
    let key_id = master_key.as_ref().map(|k| k.id()).unwrap_or_else(|| state.keys.keyring().primary_id());
    let url = format!("{}/internal/cluster/check", body.peer.trim_end_matches('/'));
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .build()
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let check = client.post(&url).header(SECRET_HEADER, &secret).header(MASTER_KEY_ID_HEADER, key_id.to_string());
    match check.send().await {
        Ok(r) if r.status().is_success() => {}
        Ok(r) if r.status() == reqwest::StatusCode::UNAUTHORIZED => {
            return Err(ApiError::bad_request(format!("{} refused the cluster secret", body.peer)))
        }
        Ok(r) if r.status() == reqwest::StatusCode::CONFLICT => {
            let text = r.text().await.unwrap_or_default();
            let msg = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["message"].as_str().map(str::to_string))
                .unwrap_or(text);
            return Err(ApiError::bad_request(msg));
        }
        Ok(r) => {
            return Err(ApiError::bad_request(format!("{} answered {} to the secret check", body.peer, r.status())))
        }
        Err(e) => return Err(ApiError::bad_request(format!("cannot reach {}: {e}", body.peer))),
    }
    tracing::info!(peer = %body.peer, "leaving this single-member cluster to join another");
    let master_key = master_key.map(|k| k.to_hex().to_string());
    let _ = state.stop.send(Some(StopReason::Rejoin { peer: body.peer.clone(), secret, master_key }));
    Ok((StatusCode::ACCEPTED, Json(json!({ "status": "joining", "peer": body.peer }))))
}
