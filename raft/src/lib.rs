//! steward's Raft layer: openraft wired to the sled store and to tonic.
//!
//! # Layout
//! - [`types`]: the openraft type configuration and [`MemberNode`], the replicated member
//!   descriptor.
//! - [`network`]: the gRPC client side: cached channels, the cluster secret, `RaftNetwork`.
//! - [`service`]: the gRPC server side: the `Raft` and `Cluster` services and the secret check.
//! - [`member`]: [`Member`], the service the rest of steward uses: `write` (forwarded to the
//!   leader when needed), linearizable reads, membership (`join`, `leave`, learner → voter),
//!   status and health.
//! - `coalesce`: several concurrent writes proposed as one log entry on the leader.
//! - [`messages`], [`wire`], [`error`]: what crosses the wire and what can go wrong.
//! - [`netfault`]: a test-only fault layer (delay, duplication) for the chaos harness, inert
//!   unless `STEWARD_TEST_NET_FAULTS` is set.

mod coalesce;
pub mod error;
pub mod member;
pub mod messages;
pub mod netfault;
pub mod network;
pub mod service;
pub mod types;
pub mod wire;

/// Code generated from `proto/steward.proto`.
pub mod pb {
    tonic::include_proto!("stewardpb");
}

pub use error::{ClusterError, StartError};
pub use member::{default_raft_config, Consistency, Member, MemberConfig};
pub use messages::{Beat, ClusterStatus, HeartbeatView, JoinReply, JoinRequest, MemberStatus, Role};
pub use types::{MemberNode, NodeId, TypeConfig};
