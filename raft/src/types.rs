//! The openraft type configuration of steward and the member descriptor it replicates.

use std::fmt;
use std::io::Cursor;

use serde::{Deserialize, Serialize};
use steward_storage::{Txn, TxnResult};

/// A Raft node id. Chosen at random when a member is created and kept in its data dir.
pub type NodeId = u64;

/// What the cluster knows about a member: replicated in every membership entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberNode {
    /// The member's public id (Rundeck's `serverUUID`).
    pub uuid: String,
    /// `host:port` where other members reach its gRPC service.
    pub raft_addr: String,
    /// `host:port` where clients reach its HTTP API.
    pub http_addr: String,
}

impl fmt::Display for MemberNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (raft {}, http {})", self.uuid, self.raft_addr, self.http_addr)
    }
}

openraft::declare_raft_types!(
    /// steward's Raft: transactions in, transaction results out.
    pub TypeConfig:
        D = Txn,
        R = TxnResult,
        NodeId = NodeId,
        Node = MemberNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type Membership = openraft::Membership<NodeId, MemberNode>;
