//! Errors of the cluster layer. Two levels stay apart: a missing leader or a timeout is
//! retryable; a fatal error means this member's Raft has stopped and the process must restart.

use steward_storage::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("no leader is known: the cluster cannot serve this request now, retry shortly")]
    NoLeader,
    #[error("the request timed out; a write may or may not have been applied")]
    Timeout,
    #[error("{0}")]
    Rejected(String),
    #[error("this member has stopped after a fatal error: {0}")]
    Fatal(String),
    #[error("cannot reach {addr}: {detail}")]
    Unreachable { addr: String, detail: String },
    /// The request may or may not have taken effect: it reached a leader (or was sent to one)
    /// and then leadership changed or the connection failed. Repeating it blindly could apply it
    /// twice; guards make a repeat safe, and a read tells which happened.
    #[error("{0}")]
    Indeterminate(String),
    #[error(transparent)]
    Storage(#[from] StoreError),
}

impl ClusterError {
    /// True when retrying the same request later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ClusterError::NoLeader
                | ClusterError::Timeout
                | ClusterError::Unreachable { .. }
                | ClusterError::Indeterminate(_)
        )
    }
}

/// Errors of starting a member.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the store: {0}")]
    Store(#[from] StoreError),
    #[error("invalid Raft configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Secret(#[from] crate::network::InvalidSecret),
    #[error("Raft failed to start: {0}")]
    Raft(String),
}

impl StartError {
    /// True when the store is in use by another open instance.
    pub fn is_locked(&self) -> bool {
        matches!(self, StartError::Store(e) if e.is_locked())
    }
}
