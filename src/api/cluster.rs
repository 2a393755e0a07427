//! `GET /api/{v}/cluster/members` (an extension: Rundeck documents no member list) and
//! `DELETE /api/{v}/cluster/members/{id}` (a member leaves).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::version::ApiVersion;
use super::{ApiError, ApiResult, AppState};
use crate::server::StopReason;

/// A member unheard of for longer than this is `inactive`.
pub const CONSIDER_INACTIVE_MS: u64 = 2_000;
/// A member unheard of for longer than this is `dead`.
pub const CONSIDER_DEAD_MS: u64 = 5_000;

fn liveness(last_contact_ms: Option<u64>) -> &'static str {
    match last_contact_ms {
        Some(ms) if ms <= CONSIDER_INACTIVE_MS => "active",
        Some(ms) if ms <= CONSIDER_DEAD_MS => "inactive",
        _ => "dead",
    }
}

pub async fn members(State(state): State<AppState>, _v: ApiVersion) -> ApiResult<Json<Value>> {
    let status = state.member.cluster_status().await?;
    let leader_uuid = status.members.iter().find(|m| m.id == status.leader_id).map(|m| m.node.uuid.clone());
    let members: Vec<Value> = status
        .members
        .iter()
        .map(|m| {
            json!({
                "id": m.node.uuid,
                "raftId": m.id.to_string(),
                "httpAddress": m.node.http_addr,
                "raftAddress": m.node.raft_addr,
                "role": m.role.as_str(),
                "lastContactMs": m.last_contact_ms,
                "state": liveness(m.last_contact_ms),
                "matchedIndex": m.matched_index,
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
