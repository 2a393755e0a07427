//! Cluster scheduling: which member owns each job's schedule and which member runs each
//! execution, kept right while members come, go, die and turn passive.
//!
//! # Layout
//! - [`settings`]: `[heartbeat]`, `[autotakeover]` and `[member]`, under Rundeck's names.
//! - [`mode`]: each member's execution mode (active / passive), replicated.
//! - [`heartbeat`]: heartbeats to the leader over gRPC and the liveness they tell.
//! - [`placer`]: which member runs an execution (the remote execution policy on live members).
//! - [`takeover`]: moving ownership — the leader's autotakeover and the manual takeover API.

pub mod heartbeat;
pub mod mode;
pub mod placer;
pub mod settings;
pub mod takeover;

use std::sync::Arc;

use steward_raft::Member;
use tokio::task::JoinHandle;

pub use heartbeat::{Heartbeats, Liveness, MemberInfo, MemberState};
pub use mode::ExecutionMode;
pub use placer::{NoRunner, Placer};
pub use settings::SchedulingSettings;

/// The cluster-scheduling tasks of one member: its heartbeat sender and the autotakeover (which
/// acts only while the member leads).
pub struct ClusterTasks {
    tasks: Vec<JoinHandle<()>>,
}

impl ClusterTasks {
    pub fn start(member: Member, placer: Arc<Placer>) -> ClusterTasks {
        let heartbeats = placer.heartbeats().clone();
        let takeover = takeover::Autotakeover::new(member, placer);
        ClusterTasks { tasks: vec![tokio::spawn(heartbeats.run()), tokio::spawn(takeover.run())] }
    }

    /// Stops the tasks at once: they keep nothing worth finishing, and a round blocked on a
    /// write to a cluster without a leader must not hold up a member that is shutting down.
    pub async fn shutdown(self) {
        crate::tasks::join_by(self.tasks, Some(tokio::time::Instant::now())).await;
    }
}
