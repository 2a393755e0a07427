//! Takeover: moving jobs' ownership between members, automatically on the leader when a member
//! dies or turns passive, and on request (`PUT /api/{v}/scheduler/takeover`).
//!
//! Every move is a guarded transaction on the job's owner record, byte for byte (member and
//! epoch): a move decided on an old view fails instead of overwriting a newer owner, and the
//! old owner, should it come back, fails its fire guard on the new epoch — a slot is never run
//! twice because two members believed they owned it.
//!
//! The leader's round, every quarter of a heartbeat interval:
//! - a member that is not in the cluster any more, or is passive, loses its jobs at once;
//! - a member silent past `considerDead` + `autotakeover.delay` loses them when the autotakeover
//!   policy allows it;
//! - the jobs go to available members (alive, recent, active), the least loaded first, so they
//!   spread evenly;
//! - the executions of a dead (or removed) member end `incomplete`, with a new attempt where the
//!   job asks for retries; one it never started (and one assigned to a passive member) is given
//!   to another member.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use steward_raft::{ClusterError, Member};
use steward_storage::kv::decode_seq;
use steward_storage::{Guard, Op, Txn};

use super::heartbeat::{judge, nodes, MemberState};
use super::mode::{self, ExecutionMode};
use super::placer::Placer;
use crate::codec;
use crate::engine::catalog::Catalog;
use crate::engine::executions::{end_ops, next_attempt};
use crate::engine::fire::create_execution_op;
use crate::engine::records::{
    exec_key, job_index_key, owner_key, ExecStatus, ExecutionRecord, OwnerRecord, OWNERS, RUNNING,
};

/// Owner changes per log entry.
const MOVE_BATCH: usize = 256;

/// How often the leader looks at every owner even when no member is lost and the membership has
/// not changed (a safety net: a removal is seen as a change of the membership at once).
const FULL_SCAN_EVERY: Duration = Duration::from_secs(10);

/// One job to move.
#[derive(Debug, Clone)]
pub struct Move {
    pub job: String,
    /// The owner record as read, byte for byte (the guard).
    pub old: Vec<u8>,
    pub from: String,
    pub to: String,
    pub epoch: u64,
}

impl Move {
    fn txn(&self) -> Txn {
        let new = OwnerRecord { member: self.to.clone(), epoch: self.epoch };
        let key = owner_key(&self.job);
        let guard = if self.old.is_empty() {
            Guard::Absent(key.clone())
        } else {
            Guard::ValueEquals { key: key.clone(), value: self.old.clone() }
        };
        // The job must still exist: a move racing a delete must not leave an owner behind.
        Txn::guarded(
            vec![guard, Guard::Exists(job_index_key(&self.job))],
            vec![Op::Put { key, value: codec::encode(&new) }],
        )
    }
}

/// Commits `moves`, many per log entry; returns whether each one took effect.
pub async fn commit_moves(member: &Member, moves: &[Move]) -> Result<Vec<bool>, ClusterError> {
    let mut out = Vec::with_capacity(moves.len());
    for chunk in moves.chunks(MOVE_BATCH) {
        let txn = Txn::ops(chunk.iter().map(|m| Op::Txn(m.txn())).collect());
        let res = member.write(txn).await?;
        out.extend((0..chunk.len()).map(|i| res.nested.get(i).is_some_and(|r| r.succeeded)));
    }
    Ok(out)
}

/// Every owner record in this member's applied state: job uuid → (record, bytes).
pub fn owners(member: &Member) -> Result<Vec<(String, OwnerRecord, Vec<u8>)>, ClusterError> {
    let rows = member.kv().range(OWNERS)?;
    Ok(rows
        .into_iter()
        .filter_map(|(k, kv)| {
            let job = k.strip_prefix(OWNERS)?.to_string();
            let rec = codec::decode::<OwnerRecord>(&kv.value).ok()?;
            Some((job, rec, kv.value))
        })
        .collect())
}

/// Picks, for each job, the available member that owns the fewest jobs (counting the ones
/// given so far), so a dead member's jobs spread evenly.
pub fn spread(
    jobs: Vec<(String, OwnerRecord, Vec<u8>)>,
    targets: &[String],
    counts: &mut HashMap<String, usize>,
) -> Vec<Move> {
    let mut moves = Vec::with_capacity(jobs.len());
    if targets.is_empty() {
        return moves;
    }
    for (job, rec, old) in jobs {
        let to = targets
            .iter()
            .min_by_key(|t| (counts.get(*t).copied().unwrap_or(0), (*t).clone()))
            .expect("targets is not empty")
            .clone();
        *counts.entry(to.clone()).or_default() += 1;
        moves.push(Move { job, old, from: rec.member, to, epoch: rec.epoch + 1 });
    }
    moves
}

/// Why a member's jobs and executions are taken from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Loss {
    /// Not in the cluster's membership any more.
    Gone,
    /// Silent past `considerDead` + `delay`.
    Dead,
    /// Execution mode passive.
    Passive,
}

/// The leader's autotakeover task.
pub struct Autotakeover {
    member: Member,
    placer: Arc<Placer>,
    catalog: Catalog,
    last_full_scan: Option<Instant>,
    /// Members whose loss was already logged, so a long outage is logged once.
    reported: HashSet<String>,
    /// The membership at the last round: a member that left owns jobs nobody else looks at
    /// (it is in no member's state), so a change means looking at every owner now.
    members: Vec<String>,
    /// When this leader first found each removed member still named by a running execution.
    gone_since: HashMap<String, Instant>,
}

impl Autotakeover {
    pub fn new(member: Member, placer: Arc<Placer>) -> Autotakeover {
        let catalog = Catalog::new(member.clone());
        let (reported, members, gone_since) = (HashSet::new(), Vec::new(), HashMap::new());
        Autotakeover { member, placer, catalog, last_full_scan: None, reported, members, gone_since }
    }

    fn settings(&self) -> &super::SchedulingSettings {
        self.placer.heartbeats().settings()
    }

    /// Runs until the task is aborted; acts only while this member leads.
    pub async fn run(mut self) {
        let every = (self.settings().heartbeat.interval / 4).max(Duration::from_millis(100));
        loop {
            tokio::time::sleep(every).await;
            if !self.member.is_leader() {
                self.last_full_scan = None;
                self.reported.clear();
                continue;
            }
            if let Err(e) = self.round().await {
                // The next round looks at every owner again, whatever this one had seen.
                self.members.clear();
                tracing::warn!(error = %e, "autotakeover round failed; retrying");
            }
        }
    }

    /// Whether removed member `uuid` has been gone, as far as this leader knows, for as long
    /// as a silent member must be before its runs are ended.
    fn gone_long_enough(&mut self, uuid: &str) -> bool {
        let s = self.settings();
        let wait = s.heartbeat.consider_dead + s.autotakeover.delay;
        self.gone_since.entry(uuid.to_string()).or_insert_with(Instant::now).elapsed() >= wait
    }

    fn loss(&self, uuid: &str, states: &HashMap<String, MemberState>) -> Option<Loss> {
        let s = self.settings();
        let Some(state) = states.get(uuid) else { return Some(Loss::Gone) };
        if state.silence >= s.heartbeat.consider_dead + s.autotakeover.delay {
            return Some(Loss::Dead);
        }
        if state.mode == ExecutionMode::Passive {
            return Some(Loss::Passive);
        }
        None
    }

    async fn round(&mut self) -> Result<(), ClusterError> {
        let Some(view) = self.member.heartbeat_view() else { return Ok(()) };
        let settings = self.settings().clone();
        let modes = mode::all_local(&self.member);
        let states: HashMap<String, MemberState> =
            judge(&view, Duration::ZERO, &nodes(&self.member), &modes, &settings.heartbeat)
                .into_iter()
                .map(|s| (s.node.uuid.clone(), s))
                .collect();
        let losing: Vec<(&String, Loss)> =
            states.keys().filter_map(|u| self.loss(u, &states).map(|l| (u, l))).collect();
        let mut members: Vec<String> = states.keys().cloned().collect();
        members.sort();
        let changed = members != self.members;
        self.members = members;
        let full = changed || self.last_full_scan.is_none_or(|t| t.elapsed() >= FULL_SCAN_EVERY);
        if losing.is_empty() && !full && self.gone_since.is_empty() {
            self.reported.clear();
            return Ok(());
        }
        if full {
            self.last_full_scan = Some(Instant::now());
        }
        let mut targets: Vec<String> = states.values().filter(|s| s.available()).map(|s| s.node.uuid.clone()).collect();
        targets.sort();
        // Jobs: owned by a member that lost them, and allowed to move.
        let all = owners(&self.member)?;
        let mut counts: HashMap<String, usize> = HashMap::new();
        let mut orphans: BTreeMap<String, Vec<(String, OwnerRecord, Vec<u8>)>> = BTreeMap::new();
        for (job, rec, bytes) in all {
            let movable = match self.loss(&rec.member, &states) {
                None => false,
                Some(Loss::Dead) => settings.autotakeover.may_take_from(&rec.member),
                Some(Loss::Gone) | Some(Loss::Passive) => true,
            };
            if movable {
                orphans.entry(rec.member.clone()).or_default().push((job, rec, bytes));
            } else {
                *counts.entry(rec.member.clone()).or_default() += 1;
            }
        }
        for (from, jobs) in orphans {
            let why = self.loss(&from, &states);
            if targets.is_empty() {
                if self.reported.insert(from.clone()) {
                    tracing::warn!(member = %from, jobs = jobs.len(), reason = ?why, "no available member to take over the jobs");
                }
                continue;
            }
            let moves = spread(jobs, &targets, &mut counts);
            let done = commit_moves(&self.member, &moves).await?;
            let moved = done.iter().filter(|d| **d).count();
            let silence = states.get(&from).map(|s| s.silence.as_millis() as u64);
            tracing::warn!(member = %from, reason = ?why, silent_ms = ?silence, moved, of = moves.len(), "took over the jobs of a member");
        }
        self.recover_executions(&states, &targets).await
    }

    /// Ends the executions of dead or removed members (`incomplete`, retried where the job
    /// asks for it) and gives the unstarted ones of dead, removed or passive members to
    /// available members.
    async fn recover_executions(
        &mut self,
        states: &HashMap<String, MemberState>,
        targets: &[String],
    ) -> Result<(), ClusterError> {
        let rows = self.member.kv().range(RUNNING)?;
        // Removed members whose runs wait for `gone_long_enough`: the rounds go on looking.
        let mut waiting: HashSet<String> = HashSet::new();
        for (_, kv) in rows {
            let Some(id) = decode_seq(&kv.value) else { continue };
            let Some(found) = self.member.kv().get(&exec_key(id))? else { continue };
            let Ok(rec) = codec::decode::<ExecutionRecord>(&found.value) else { continue };
            if rec.status.is_final() {
                continue;
            }
            let Some(loss) = self.loss(&rec.member, states) else { continue };
            let started = rec.runner.is_some();
            if started && loss == Loss::Passive {
                continue; // a passive member finishes what it started
            }
            if started && loss == Loss::Gone && !self.gone_long_enough(&rec.member) {
                waiting.insert(rec.member.clone());
                // A removed member may not know it yet (the leader stops replicating to it)
                // and may be running this step now: ended here, the job's next run would start
                // beside it. Its jobs have moved already; its runs are judged like a dead
                // member's, after `considerDead` + `delay` (jepsen/README.md, bug 17).
                continue;
            }
            let owner = self.member.kv().get(&owner_key(&rec.job_uuid))?;
            let owner = owner.and_then(|kv| codec::decode::<OwnerRecord>(&kv.value).ok()).map(|o| o.member);
            // With nobody to give it to, an unstarted execution waits; a started one is dead
            // either way and is recorded so, without a retry nobody could run.
            // Policy `None` runs where the run was asked; that member is gone, so the job's
            // owner (or the least busy member) takes it. Other policies choose again.
            let chosen = if self.placer.is_local(&rec.project) {
                pick_member(owner.as_deref(), states, targets)
            } else {
                let me = self.member.node().uuid.clone();
                self.placer.choose(&rec.project, &me, &mut None).ok()
            };
            let to = match chosen {
                Some(t) => t,
                None if !started => continue,
                None => String::new(),
            };
            let guard = Guard::ModRevision { key: exec_key(id), rev: found.mod_revision };
            let txn = if started {
                let now = chrono::Utc::now().timestamp_millis();
                let mut ended = rec.clone();
                ended.status = ExecStatus::Incomplete;
                ended.ended_ms = Some(now);
                // A slot decided ahead is claimed before its time: its member may or may not
                // have started it.
                let when = if rec.status == ExecStatus::Scheduled { "before or while it ran" } else { "while it ran" };
                ended.message = Some(match loss {
                    Loss::Gone => format!("its member {} left the cluster {when}", rec.member),
                    _ => format!("its member {} stopped responding {when}", rec.member),
                });
                let mut ops = end_ops(id, &ended);
                let retry = match self.catalog.retry_policy(&rec.job_uuid) {
                    Ok(Some(p)) if rec.attempt <= p.count && !to.is_empty() => Some(p),
                    _ => None,
                };
                if let Some(p) = retry {
                    let next = next_attempt(id, &ended, &to, now + p.delay.as_millis() as i64);
                    ops.push(create_execution_op(&next, Vec::new()));
                }
                Txn::guarded(vec![guard], ops)
            } else {
                let mut moved = rec.clone();
                moved.member = to.clone();
                Txn::guarded(vec![guard], vec![Op::Put { key: exec_key(id), value: codec::encode(&moved) }])
            };
            let res = self.member.write(txn).await?;
            if res.succeeded {
                if started {
                    tracing::warn!(execution = id, member = %rec.member, retry = ?res.allocated.first(), "execution of a lost member recorded incomplete");
                } else {
                    tracing::info!(execution = id, from = %rec.member, to = %to, "unstarted execution given to another member");
                }
            }
        }
        self.gone_since.retain(|u, _| waiting.contains(u));
        Ok(())
    }
}

/// The member to give an execution of a lost member: the job's owner when it is available,
/// else the available member running the fewest executions.
fn pick_member(owner: Option<&str>, states: &HashMap<String, MemberState>, targets: &[String]) -> Option<String> {
    if let Some(o) = owner.filter(|o| targets.iter().any(|t| t == o)) {
        return Some(o.to_string());
    }
    targets
        .iter()
        .min_by_key(|t| (states.get(*t).and_then(|s| s.info.as_ref()).map_or(0, |i| i.running), (*t).clone()))
        .cloned()
}
