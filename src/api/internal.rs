//! Member-to-member HTTP entry points. A newcomer knows only a member's HTTP URL and the
//! cluster secret, so these routes authenticate with the secret rather than an API token.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::{Deserialize, Serialize};
use steward_raft::{JoinReply, JoinRequest, MemberNode};
use subtle::ConstantTimeEq;

use super::{ApiError, ApiJson, ApiResult, AppState};

/// Header carrying the cluster secret on internal HTTP routes.
pub const SECRET_HEADER: &str = "x-steward-cluster-secret";

/// Body of `POST /internal/cluster/join`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinBody {
    /// Raft node id, as a decimal string (JSON numbers lose precision above 2^53).
    pub node_id: String,
    pub uuid: String,
    pub raft_address: String,
    pub http_address: String,
    pub cluster_id: Option<String>,
    /// The master key ids the newcomer holds: it must hold the cluster's active one, or it
    /// could not read key storage.
    #[serde(default)]
    pub key_ids: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinAnswer {
    pub cluster_id: String,
    pub leader_id: String,
    pub voter: bool,
}

pub fn check_secret(headers: &HeaderMap, secret: &str) -> ApiResult<()> {
    let given = headers.get(SECRET_HEADER).map(|v| v.as_bytes());
    if given.is_some_and(|g| bool::from(g.ct_eq(secret.as_bytes()))) {
        return Ok(());
    }
    Err(ApiError::new(StatusCode::UNAUTHORIZED, "api.error.cluster.secret", "wrong or missing cluster secret"))
}

pub async fn join(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<JoinBody>,
) -> ApiResult<Json<JoinAnswer>> {
    if let Err(e) = check_secret(&headers, &state.cluster_secret) {
        tracing::warn!(member = %body.uuid, raft = %body.raft_address, "refused a join: wrong cluster secret");
        return Err(e);
    }
    // Refused before any membership change: a member without the active master key would
    // join and then fail every key storage read.
    // A data dir of another cluster is refused by the join itself, with a message that says so.
    let other_cluster = body.cluster_id.is_some() && body.cluster_id != state.member.cluster_id()?;
    let active = if other_cluster { None } else { crate::keys::active_key_caught_up(&state.member).await? };
    if let Some(active) = active {
        if !body.key_ids.iter().any(|k| *k == active.to_string()) {
            tracing::warn!(member = %body.uuid, raft = %body.raft_address, key = %active,
                "refused a join: the newcomer lacks the cluster's master key");
            return Err(ApiError::bad_request(format!(
                "this cluster seals key storage under master key {active}, which the joining member does not hold: \
                 give it that key (--master-key-file; a generated key is in the first member's data dir as master.key)"
            )));
        }
    }
    let node_id: u64 = body
        .node_id
        .parse()
        .map_err(|_| ApiError::bad_request(format!("nodeId '{}' is not an unsigned integer", body.node_id)))?;
    let req = JoinRequest {
        node_id,
        node: MemberNode { uuid: body.uuid, raft_addr: body.raft_address, http_addr: body.http_address },
        cluster_id: body.cluster_id,
    };
    tracing::info!(member = %req.node.uuid, raft = %req.node.raft_addr, "join requested");
    let JoinReply { cluster_id, leader_id, voter } = state.member.join(req).await?;
    Ok(Json(JoinAnswer { cluster_id, leader_id: leader_id.to_string(), voter }))
}

/// Header of `POST /internal/cluster/check`: the id of the master key the caller will use.
pub const MASTER_KEY_ID_HEADER: &str = "x-steward-master-key-id";

/// `POST /internal/cluster/check`: 204 when the caller holds the cluster secret and, if it
/// says which master key it will use, that key is the cluster's. Lets a member that is about to
/// drop its own state for this cluster find out first whether it could join.
pub async fn check(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<StatusCode> {
    check_secret(&headers, &state.cluster_secret)?;
    if let Some(theirs) = headers.get(MASTER_KEY_ID_HEADER).and_then(|v| v.to_str().ok()) {
        let ours =
            crate::keys::active_key_caught_up(&state.member).await.map_err(|e| ApiError::internal(e.to_string()))?;
        if let Some(ours) = ours {
            if ours.to_string() != theirs {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "api.error.keys.master-key-mismatch",
                    format!(
                        "this cluster seals key storage under master key {ours}, but the joining member would use \
                         {theirs}: give it the cluster's master key (masterKeyFile / --master-key-file)"
                    ),
                ));
            }
        }
    }
    Ok(StatusCode::NO_CONTENT)
}
