//! Requests and replies of the `Cluster` gRPC service.

use serde::{Deserialize, Serialize};

use crate::types::{MemberNode, NodeId};

/// Asks the leader to add a member.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinRequest {
    pub node_id: NodeId,
    pub node: MemberNode,
    /// The cluster the newcomer already belongs to, if its data dir says so.
    pub cluster_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinReply {
    pub cluster_id: String,
    pub leader_id: NodeId,
    /// True when the newcomer became a voter; false when it stays a learner because the
    /// cluster already has its maximum number of voters.
    pub voter: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeaveRequest {
    pub node_id: NodeId,
}

/// A member's Raft role as the leader sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    Leader,
    Follower,
    Learner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Follower => "follower",
            Role::Learner => "learner",
        }
    }
}

/// One member in the leader's view of the cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemberStatus {
    pub id: NodeId,
    pub node: MemberNode,
    pub role: Role,
    /// Milliseconds since the leader last heard from this member (0 for the leader itself);
    /// `None` when it has not heard from it since it became leader.
    pub last_contact_ms: Option<u64>,
    /// The highest log index known to be replicated on this member.
    pub matched_index: Option<u64>,
}

/// The leader's view of the cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterStatus {
    pub leader_id: NodeId,
    pub term: u64,
    pub last_log_index: Option<u64>,
    pub members: Vec<MemberStatus>,
}

/// Why a request handled on the leader failed, as sent back to the member that forwarded it.
#[derive(Debug, Clone, Serialize, Deserialize, thiserror::Error)]
pub enum RemoteError {
    #[error("not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<(NodeId, MemberNode)> },
    #[error("the leader cannot reach a quorum")]
    NoQuorum,
    #[error("the request timed out on the leader; it may or may not have been applied")]
    Timeout,
    #[error("leadership changed while the request was in flight; it may or may not have been applied")]
    Indeterminate,
    #[error("{0}")]
    Rejected(String),
    #[error("the leader stopped: {0}")]
    Fatal(String),
}
