//! Heartbeats: each member tells the leader, over gRPC and never through the Raft log, that it is
//! alive and how loaded it is; the leader's table of last heartbeats is what liveness is judged
//! by (`active`, `inactive`, `dead`).
//!
//! Every member keeps the table the leader sent back with its last heartbeat, so any member can
//! say who is alive (for the remote execution policy and the member list) with a view at most
//! one interval old; the leader judges from its own table.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use steward_raft::{HeartbeatView, Member, MemberNode, NodeId};

use super::mode::{self, ExecutionMode};
use super::settings::{HeartbeatSettings, SchedulingSettings};
use crate::codec;

/// How much shorter than `considerDead` a member's lease is ([`Heartbeats::lease`]): room for
/// the time between deciding on the lease and acting, and for the leader's clock.
const LEASE_MARGIN: Duration = Duration::from_secs(1);

/// What a member reports in its heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberInfo {
    pub mode: ExecutionMode,
    /// Executions it runs now.
    pub running: u32,
    /// Executions it takes at once (`member.capacity`).
    pub capacity: u32,
    /// 1-minute load average and processor count.
    pub load1: f64,
    pub cpus: u32,
    pub tags: Vec<String>,
}

/// Rundeck's heartbeat states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    Active,
    Inactive,
    Dead,
}

impl Liveness {
    pub fn as_str(self) -> &'static str {
        match self {
            Liveness::Active => "active",
            Liveness::Inactive => "inactive",
            Liveness::Dead => "dead",
        }
    }

    pub fn of(silence: Duration, hb: &HeartbeatSettings) -> Liveness {
        if silence < hb.consider_inactive {
            Liveness::Active
        } else if silence < hb.consider_dead {
            Liveness::Inactive
        } else {
            Liveness::Dead
        }
    }
}

/// One member as the heartbeats and the replicated state describe it.
#[derive(Debug, Clone)]
pub struct MemberState {
    pub node_id: NodeId,
    pub node: MemberNode,
    pub liveness: Liveness,
    /// How long the leader has not heard from it (for a new leader: at most how long it leads).
    pub silence: Duration,
    /// Its last report, if the leader has one in its current term.
    pub info: Option<MemberInfo>,
    /// Its execution mode as replicated (authoritative; the heartbeat's copy may be older).
    pub mode: ExecutionMode,
}

impl MemberState {
    /// Alive, recent and active: it may own schedules and start executions.
    /// A member the leader has no report from (a new leader's predecessor, known only by its
    /// last AppendEntries) is not available either.
    pub fn available(&self) -> bool {
        self.liveness == Liveness::Active && self.mode == ExecutionMode::Active && self.info.is_some()
    }
}

/// Judges every member of `nodes` from the leader's `view`, seen `staleness` after the leader
/// sent it. `leader` is never judged silent by its own table.
pub fn judge(
    view: &HeartbeatView,
    staleness: Duration,
    nodes: &[(NodeId, MemberNode)],
    modes: &HashMap<String, ExecutionMode>,
    hb: &HeartbeatSettings,
) -> Vec<MemberState> {
    nodes
        .iter()
        .map(|(id, node)| {
            let silence =
                if *id == view.leader_id { staleness } else { Duration::from_millis(view.silence_ms(*id)) + staleness };
            let info = view.beat(*id).filter(|b| !b.info.is_empty()).and_then(|b| codec::decode(&b.info).ok());
            MemberState {
                node_id: *id,
                node: node.clone(),
                liveness: Liveness::of(silence, hb),
                silence,
                info,
                mode: modes.get(&node.uuid).copied().unwrap_or_default(),
            }
        })
        .collect()
}

/// The members of the cluster as this member's Raft knows them.
pub fn nodes(member: &Member) -> Vec<(NodeId, MemberNode)> {
    let m = member.raft().metrics().borrow().clone();
    m.membership_config.membership().nodes().map(|(id, n)| (*id, n.clone())).collect()
}

/// First number of `/proc/loadavg`.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}

/// This member's heartbeat sender and its copy of the leader's table.
pub struct Heartbeats {
    member: Member,
    settings: SchedulingSettings,
    /// How many executions this member runs now (set once the runner exists).
    running: std::sync::OnceLock<Box<dyn Fn() -> u32 + Send + Sync>>,
    /// The leader's table from the last heartbeat reply.
    last: Mutex<Option<Answer>>,
}

/// A heartbeat's answer: the leader's table, when the heartbeat was sent and when the answer
/// arrived.
struct Answer {
    sent: Instant,
    arrived: Instant,
    view: HeartbeatView,
}

impl Heartbeats {
    pub fn new(member: Member, settings: SchedulingSettings) -> Arc<Heartbeats> {
        Arc::new(Heartbeats { member, settings, running: Default::default(), last: Mutex::new(None) })
    }

    /// Tells the heartbeats how to count this member's running executions.
    pub fn set_running(&self, running: Box<dyn Fn() -> u32 + Send + Sync>) {
        let _ = self.running.set(running);
    }

    pub fn settings(&self) -> &SchedulingSettings {
        &self.settings
    }

    /// What this member reports now.
    pub fn info(&self) -> MemberInfo {
        MemberInfo {
            mode: mode::local(&self.member, &self.member.node().uuid),
            running: self.running.get().map_or(0, |f| f()),
            capacity: self.settings.member.capacity,
            load1: load_average().unwrap_or(0.0),
            cpus: std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1),
            tags: self.settings.member.tags.clone(),
        }
    }

    /// Sends a heartbeat every `heartbeat.interval`, until the task is aborted.
    pub async fn run(self: Arc<Self>) {
        let interval = self.settings.heartbeat.interval;
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let info = codec::encode(&self.info());
            let sent = Instant::now();
            // Bounded by the interval: a heartbeat that cannot reach a leader in time is
            // replaced by the next one rather than queued behind it.
            match self.member.heartbeat(info, interval.max(Duration::from_millis(500))).await {
                Ok(view) => {
                    *self.last.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some(Answer { sent, arrived: Instant::now(), view })
                }
                Err(e) => tracing::debug!(error = %e, "heartbeat not delivered"),
            }
        }
    }

    /// Whether this member may act on its applied state without asking the leader first: its
    /// last heartbeat was answered by another member (the leader), was sent less than
    /// `considerDead - LEASE_MARGIN` ago, and it has applied the leader's log index of that
    /// answer. The leader takes a member's jobs and ends its runs only after `considerDead` of
    /// silence since it last heard from it, which came after that send; so nothing of the
    /// kind was committed before the answer that is not applied here, and nothing can be
    /// committed after it until the lease is over. A leader holds no lease: it answers its own
    /// heartbeats, also after it has been deposed without knowing it. A removed member gets no
    /// answer (the leader refuses heartbeats from non-members), so its lease runs out.
    pub fn lease(&self) -> bool {
        let lease = self.settings.heartbeat.consider_dead.saturating_sub(LEASE_MARGIN);
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        last.as_ref().is_some_and(|a| {
            a.view.leader_id != self.member.id()
                && a.sent.elapsed() < lease
                && self.member.kv().applied_index() >= a.view.log_index
        })
    }

    /// The leader's table and how old this member's copy is: the leader's own table when this
    /// member leads, else the one its last heartbeat brought back.
    pub fn view(&self) -> Option<(HeartbeatView, Duration)> {
        if let Some(v) = self.member.heartbeat_view() {
            return Some((v, Duration::ZERO));
        }
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        last.as_ref().map(|a| (a.view.clone(), a.arrived.elapsed()))
    }

    /// Every member, judged from [`Heartbeats::view`]; `None` when this member has no view yet
    /// (it never reached a leader).
    pub fn members(&self) -> Option<Vec<MemberState>> {
        let (view, staleness) = self.view()?;
        let modes = mode::all_local(&self.member);
        Some(judge(&view, staleness, &nodes(&self.member), &modes, &self.settings.heartbeat))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use steward_raft::Beat;

    fn node(uuid: &str) -> MemberNode {
        MemberNode { uuid: uuid.into(), raft_addr: String::new(), http_addr: String::new() }
    }

    #[test]
    fn liveness_follows_silence_and_a_new_leader_gives_grace() {
        let hb = HeartbeatSettings::default();
        let view = HeartbeatView {
            leader_id: 1,
            term: 3,
            collecting_ms: 10_000,
            log_index: 0,
            beats: vec![
                Beat { node_id: 2, age_ms: 500, info: Vec::new() },
                Beat { node_id: 3, age_ms: 3_000, info: Vec::new() },
            ],
        };
        let nodes = vec![(1, node("a")), (2, node("b")), (3, node("c")), (4, node("d"))];
        let modes = HashMap::from([("b".to_string(), ExecutionMode::Passive)]);
        let s = judge(&view, Duration::ZERO, &nodes, &modes, &hb);
        let l: Vec<Liveness> = s.iter().map(|m| m.liveness).collect();
        assert_eq!(l, vec![Liveness::Active, Liveness::Active, Liveness::Inactive, Liveness::Dead]);
        assert!(!s[1].available(), "a passive member is not available");
        assert!(!s[0].available(), "a member without a report is not available");
        // A leader of 1 s has not heard from member 4 yet: not dead before considerDead.
        let young = HeartbeatView { collecting_ms: 1_000, ..view };
        let s = judge(&young, Duration::ZERO, &nodes, &modes, &hb);
        assert_eq!(s[3].liveness, Liveness::Active);
        // A stale copy of the table ages everyone but nobody more than the copy's age.
        let s = judge(&young, Duration::from_secs(2), &nodes, &modes, &hb);
        assert_eq!(s[1].liveness, Liveness::Inactive);
    }
}
