//! Cluster scheduling: which member owns each job's schedule and which member runs each
//! execution, kept right while members come, go, die and turn passive.
//!
//! # Layout
//! - [`settings`]: `[heartbeat]`, `[autotakeover]` and `[member]`, under Rundeck's names.
//! - [`mode`]: each member's execution mode (active / passive), replicated.
//! - [`heartbeat`]: heartbeats to the leader over gRPC and the liveness they tell.
//! - [`takeover`]: moving ownership — the leader's autotakeover and the manual takeover API.

pub mod heartbeat;
pub mod mode;
pub mod settings;
pub mod takeover;

use std::sync::Arc;

use steward_raft::Member;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use heartbeat::{Heartbeats, Liveness, MemberInfo, MemberState};
pub use mode::ExecutionMode;
pub use settings::SchedulingSettings;

/// The cluster-scheduling tasks of one member: its heartbeat sender and the autotakeover (which
/// acts only while the member leads).
pub struct ClusterTasks {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    pub heartbeats: Arc<Heartbeats>,
}

impl ClusterTasks {
    /// `running` tells how many executions this member runs now (its heartbeats report it).
    pub fn start(
        member: Member,
        settings: SchedulingSettings,
        running: Box<dyn Fn() -> u32 + Send + Sync>,
    ) -> ClusterTasks {
        let (stop, _) = watch::channel(false);
        let heartbeats = Heartbeats::new(member.clone(), settings, running);
        let takeover = takeover::Autotakeover::new(member, heartbeats.clone());
        let tasks =
            vec![tokio::spawn(heartbeats.clone().run(stop.subscribe())), tokio::spawn(takeover.run(stop.subscribe()))];
        ClusterTasks { stop, tasks, heartbeats }
    }

    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Why no member could be chosen to run an execution.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct NoRunner(pub String);

/// The member that runs an execution requested on this member. This member, unless it is
/// passive: then the available member running the fewest executions (a load balancer may send
/// a run to any member; a passive one hands it on rather than refusing it).
pub fn choose_runner(heartbeats: &Heartbeats, me: &str, member: &Member) -> Result<String, NoRunner> {
    if mode::local(member, me) == ExecutionMode::Active {
        return Ok(me.to_string());
    }
    let states = heartbeats.members().unwrap_or_default();
    states
        .iter()
        .filter(|s| s.available() && s.node.uuid != me)
        .min_by_key(|s| (s.info.as_ref().map_or(0, |i| i.running), s.node.uuid.clone()))
        .map(|s| s.node.uuid.clone())
        .ok_or_else(|| NoRunner(format!("member {me} is passive and no active member is available to run it")))
}
