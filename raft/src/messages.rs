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
    /// The leader's heartbeat table.
    pub heartbeats: HeartbeatView,
}

/// A member's heartbeat to the leader. `info` is opaque here: the layer above says what a
/// member reports (execution mode, load…).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeartbeatRequest {
    pub node_id: NodeId,
    pub info: Vec<u8>,
}

/// The last heartbeat the leader received from one member.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Beat {
    pub node_id: NodeId,
    /// Milliseconds since the leader received it.
    pub age_ms: u64,
    /// What the member reported; empty when the leader only knows the member was alive (a new
    /// leader's last contact with the leader before it).
    pub info: Vec<u8>,
}

/// The leader's heartbeat table: what it heard from each member in its current term.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HeartbeatView {
    pub leader_id: NodeId,
    pub term: u64,
    /// How long this leader has been collecting heartbeats, in milliseconds. A member it has not
    /// heard from is judged by this (the grace period a new leader gives every member).
    pub collecting_ms: u64,
    pub beats: Vec<Beat>,
    /// The leader's last log index when it answered: a member that has applied this far has
    /// applied everything committed before the answer.
    #[serde(default)]
    pub log_index: u64,
}

impl HeartbeatView {
    /// Milliseconds since the leader last heard from `id`: its beat's age, or, for a member it
    /// has not heard from, the time it has been collecting.
    pub fn silence_ms(&self, id: NodeId) -> u64 {
        self.beat(id).map(|b| b.age_ms).unwrap_or(self.collecting_ms).min(self.collecting_ms)
    }

    pub fn beat(&self, id: NodeId) -> Option<&Beat> {
        self.beats.iter().find(|b| b.node_id == id)
    }
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
