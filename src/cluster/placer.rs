//! Where an execution runs: the remote execution policy (`crate::placement`) applied to the
//! members as the heartbeats see them. The choice is written into the execution record before it
//! is proposed, so it is part of the committed state, never a message that may get lost; if the
//! chosen member dies before it starts the execution, the leader gives it to another
//! (`super::takeover`).

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use steward_raft::Member;

use super::heartbeat::{Heartbeats, Liveness};
use super::mode::{self, ExecutionMode};
use crate::placement::{Candidate, Placement};

/// Why no member could be chosen to run an execution; the message names the policy or the
/// setting.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct NoRunner(pub String);

pub struct Placer {
    member: Member,
    heartbeats: Arc<Heartbeats>,
    placement: Placement,
    /// Round-robin counters, one per policy (the default policy, then each profile by name).
    rr: Mutex<HashMap<Option<String>, Arc<AtomicU64>>>,
}

impl Placer {
    pub fn new(member: Member, heartbeats: Arc<Heartbeats>, placement: Placement) -> Placer {
        Placer { member, heartbeats, placement, rr: Mutex::new(HashMap::new()) }
    }

    pub fn heartbeats(&self) -> &Arc<Heartbeats> {
        &self.heartbeats
    }

    /// True when `project` runs its executions where they are requested (policy `None`).
    pub fn is_local(&self, project: &str) -> bool {
        self.placement.policy_for(project).name() == "None"
    }

    /// The members as the policy sees them. Without a heartbeat table yet (this member never
    /// reached a leader) only this member is known.
    fn candidates(&self) -> Vec<Candidate> {
        let me = &self.member.node().uuid;
        match self.heartbeats.members() {
            Some(states) => states
                .into_iter()
                .map(|s| {
                    let info = s.info.clone();
                    Candidate {
                        uuid: s.node.uuid.clone(),
                        active: s.liveness == Liveness::Active && info.is_some(),
                        passive: s.mode == ExecutionMode::Passive,
                        tags: info.as_ref().map(|i| i.tags.clone()).unwrap_or_default(),
                        running: info.as_ref().map_or(0, |i| i.running),
                        capacity: info.as_ref().map_or(0, |i| i.capacity),
                        load1: info.as_ref().map_or(0.0, |i| i.load1),
                        cpus: info.as_ref().map_or(1, |i| i.cpus),
                    }
                })
                .collect(),
            None => {
                let info = self.heartbeats.info();
                vec![Candidate {
                    uuid: me.clone(),
                    active: true,
                    passive: info.mode == ExecutionMode::Passive,
                    tags: info.tags,
                    running: info.running,
                    capacity: info.capacity,
                    load1: info.load1,
                    cpus: info.cpus,
                }]
            }
        }
    }

    /// The member that runs an execution of `project` decided by member `me`. The members are
    /// read into `candidates` only when the decision needs them (policy `None` on an active
    /// member does not); a caller deciding many executions passes the same cache to each.
    ///
    /// Under `None` that is `me`, unless `me` is passive: then the available member running the
    /// fewest executions (a load balancer may send a run to any member; a passive one hands it
    /// on rather than refusing it).
    pub fn choose(&self, project: &str, me: &str, candidates: &mut Option<Vec<Candidate>>) -> Result<String, NoRunner> {
        let policy = self.placement.policy_for(project);
        if policy.name() == "None" && mode::local(&self.member, me) == ExecutionMode::Active {
            return Ok(me.to_string());
        }
        let candidates = candidates.get_or_insert_with(|| self.candidates());
        if policy.name() == "None" {
            return candidates
                .iter()
                .filter(|c| c.active && !c.passive && c.uuid != me)
                .min_by_key(|c| (c.running, c.uuid.clone()))
                .map(|c| c.uuid.clone())
                .ok_or_else(|| {
                    NoRunner(format!("member {me} is passive and no active member is available to run it"))
                });
        }
        let uuids: Vec<String> = super::heartbeat::nodes(&self.member).into_iter().map(|(_, n)| n.uuid).collect();
        self.placement.check_members(&uuids).map_err(|e| NoRunner(e.to_string()))?;
        let rr = {
            let mut map = self.rr.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(policy.profile().map(str::to_string)).or_default().clone()
        };
        policy.choose(me, candidates, &rr, &mut rand::rng()).map_err(|e| NoRunner(e.to_string()))
    }
}
