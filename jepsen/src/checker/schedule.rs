//! The schedule checker: jobs on 1–2 s schedules report each run to a sink in the harness
//! (job, slot, member, execution id, arrival time on the harness's clock); at the end the
//! executions steward lists are read once. [`facts`] turns the `schedule` workload's history
//! (and the nemesis's) into [`Facts`]; [`check`] judges them.
//!
//! Invariants (after Jepsen's Chronos checker, plus fencing-era scheduler bugs):
//! - **no double fire**: at most one execution per (job, slot), counting the sink's runs and
//!   steward's execution list;
//! - **no ghost fire**: every run belongs to a created job, a slot of its schedule, not before
//!   the job was created nor after its delete was acknowledged, and to an execution steward
//!   lists;
//! - **no early fire**: a run never starts before its slot (less a tolerance, plus the clock
//!   offset the nemesis gave the member);
//! - **no overlap** for jobs with `multipleExecutions: false`;
//! - **no execution left running**: a run whose step reported its end more than the bound
//!   before the final read is not still `running` in steward's list;
//! - **exactly once or recorded missed, within the bound**: every slot due `bound` before the
//!   final read has an execution (started within the bound, when it reported), or was
//!   recorded missed or skipped.
//!
//! # Missed and skipped slots are not observable
//! steward records every decided slot under `fires/{job}/{slot}` (fired, missed or skipped),
//! but its API does not expose those records; only per-member counters in
//! `/metrics/metrics`, lost on restart. So the checker infers them from steward's documented
//! policy (`jobs::schedule::plan_due_slots`): a slot reached at most 5 s late fires; a slot
//! reached later is recorded missed (except the last one, which runs late), so a slot without
//! an execution is "recorded missed" when the job's next run started between 5 s and the bound
//! after it; for `multipleExecutions: false`, a slot is "skipped" when a run of the job was
//! going (from its start, or from its slot when it was fired late in a catch-up, to
//! [`RELEASE_MS`] after its end, or the bound while a fault may hold the release up). A slot lost
//! while its owner was deciding on time is still caught (the next run comes too early).
//!
//! # Owners that cannot fire
//! Until steward moves a dead or cut-off member's jobs to another member (issue "cluster
//! scheduling"), slots of an owner that the nemesis killed, paused, partitioned, skewed or
//! removed cannot be decided within the bound. [`Facts::impaired`] lists those windows (from
//! the nemesis's own records); a slot not decided in time during one is counted as
//! `owner_impaired`, which is a violation only with `require_takeover`.
//!
//! Times are milliseconds of wall-clock time on the harness's clock: slots are instants of
//! the schedule, run times the harness's clock at arrival, never a member's (faked) clock.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{json, Value};

use super::{Examples, Validity, Verdict};
use crate::history::{Op, OpType};

/// steward's `ON_TIME_TOLERANCE`: a slot reached at most this late fires, whatever the policy.
pub const ON_TIME_MS: u64 = 5_000;

/// How long after a run's reported end its job may still count as running: the runner
/// commits the end (and releases `jobrun/`) through Raft after the step exits. Short, so that
/// a lost slot of a healthy exclusive job is still caught; while the nemesis acts on any
/// member (a leader election may hold the release up) the bound is used instead.
pub const RELEASE_MS: u64 = 500;

/// A run that started this long after its slot was fired late, in a catch-up.
pub const CATCH_UP_MS: u64 = 1_000;

/// A scheduled job as the workload created it.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: String,
    /// The first slot it may fire and the period: slots are `first_slot_ms + k * interval_ms`.
    pub first_slot_ms: u64,
    pub interval_ms: u64,
    /// When its create was acknowledged; `None` when the create was indeterminate (the job
    /// may exist: its runs are not ghosts, its slots are not required).
    pub created_ms: Option<u64>,
    /// When a delete was invoked (its slots from then on are not required).
    pub delete_invoked_ms: Option<u64>,
    /// When a delete was acknowledged (a slot after it is a ghost).
    pub deleted_ms: Option<u64>,
    pub multiple_executions: bool,
    /// The member (name) that created it, hence owns it.
    pub owner: String,
}

/// One run reported to the sink.
#[derive(Debug, Clone)]
pub struct Run {
    pub job: String,
    pub slot_ms: u64,
    /// The member's uuid (`RD_JOB_SERVERUUID`).
    pub member: String,
    pub execution: String,
    pub started_ms: u64,
    pub ended_ms: Option<u64>,
}

/// A member the nemesis acted on, from `from_ms` to `to_ms` (`None`: for good, as a removed
/// identity), with the wall-clock offset it may have had.
#[derive(Debug, Clone)]
pub struct Impairment {
    pub node: String,
    pub from_ms: u64,
    pub to_ms: Option<u64>,
    pub skew_ms: u64,
}

/// Everything the checker needs.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub jobs: Vec<Job>,
    pub runs: Vec<Run>,
    /// (job, slot, execution id) of every execution steward listed at the end; `None` when
    /// that read failed.
    pub executions: Option<Vec<(String, u64, String)>>,
    /// Executions steward still listed as running (or scheduled) at the end.
    pub running: Vec<String>,
    /// Slots steward recorded as missed or skipped, when it exposes them (today it does not:
    /// `None`, and they are inferred).
    pub missed: Option<Vec<(String, u64)>>,
    /// When the final read happened.
    pub read_ms: u64,
    /// How late a slot may be decided after it is due (the takeover bound); each job adds
    /// its period.
    pub bound_ms: u64,
    /// How early a run may seem to start (arrival is after the start, but steps' and the
    /// harness's clocks differ a little).
    pub early_tolerance_ms: u64,
    pub impaired: Vec<Impairment>,
    /// Judge slots of impaired owners too (once steward moves their jobs).
    pub require_takeover: bool,
}

impl Facts {
    /// The largest clock offset `node` may have had around `t`.
    fn skew(&self, node: &str, t: u64) -> u64 {
        self.impaired
            .iter()
            .filter(|i| i.node == node && i.skew_ms > 0)
            .filter(|i| t + 2_000 >= i.from_ms && i.to_ms.is_none_or(|to| t <= to + 2_000))
            .map(|i| i.skew_ms)
            .max()
            .unwrap_or(0)
    }

    /// Whether the nemesis acted on any member during `[from, to]`.
    fn any_fault_during(&self, from: u64, to: u64) -> bool {
        self.impaired.iter().any(|i| i.from_ms <= to && i.to_ms.is_none_or(|end| end >= from))
    }

    /// The largest clock offset `node` had at any time in `[from, to]`.
    fn max_skew(&self, node: &str, from: u64, to: u64) -> u64 {
        self.impaired
            .iter()
            .filter(|i| i.node == node && i.from_ms <= to + 2_000 && i.to_ms.is_none_or(|end| end + 2_000 >= from))
            .map(|i| i.skew_ms)
            .max()
            .unwrap_or(0)
    }

    /// Whether `node` was acted on in `[from, to]` (a clock fault's window lasts its offset
    /// longer: a member set back by D seconds waits that long for slots it already decided).
    fn impaired_during(&self, node: &str, from: u64, to: u64) -> bool {
        self.impaired.iter().any(|i| {
            i.node == node && i.from_ms <= to && i.to_ms.is_none_or(|end| end + i.skew_ms + self.bound_ms >= from)
        })
    }
}

pub fn check(f: &Facts) -> Verdict {
    let jobs: BTreeMap<&str, &Job> = f.jobs.iter().map(|j| (j.id.as_str(), j)).collect();
    let missed: BTreeSet<(&str, u64)> = f.missed.iter().flatten().map(|(j, s)| (j.as_str(), *s)).collect();
    // Every execution of every slot: the sink's and steward's list.
    let mut execs: BTreeMap<(&str, u64), BTreeSet<&str>> = BTreeMap::new();
    for (j, s, e) in f.executions.iter().flatten() {
        execs.entry((j.as_str(), *s)).or_default().insert(e.as_str());
    }
    let listed: BTreeSet<&str> = f.executions.iter().flatten().map(|(_, _, e)| e.as_str()).collect();
    let mut runs_of: BTreeMap<&str, Vec<&Run>> = BTreeMap::new();
    for r in &f.runs {
        execs.entry((r.job.as_str(), r.slot_ms)).or_default().insert(r.execution.as_str());
        runs_of.entry(r.job.as_str()).or_default().push(r);
    }
    for runs in runs_of.values_mut() {
        runs.sort_by_key(|r| (r.started_ms, r.slot_ms));
    }
    let mut double = Examples::default();
    let mut ghost = Examples::default();
    let mut early = Examples::default();
    let mut overlap = Examples::default();
    let mut not_run = Examples::default();
    let mut late = Examples::default();
    let mut impaired = Examples::default();
    let mut stuck = Examples::default();
    let mut inferred_missed = 0usize;
    let mut inferred_skipped = 0usize;
    let mut unfinished = 0usize;

    let owner_of = |job: &str| jobs.get(job).map(|j| j.owner.as_str()).unwrap_or("");
    let slot_is_ghost = |job: &str, slot: u64| -> Option<&'static str> {
        let Some(j) = jobs.get(job) else { return Some("no such job") };
        // The owner's clock offset when the job was created (a member set back fires slots
        // from before the create) and when it was deleted (one set ahead fires future slots).
        let skew = f.skew(&j.owner, j.first_slot_ms);
        if slot < j.first_slot_ms.saturating_sub(skew) || !slot.is_multiple_of(j.interval_ms.max(1)) {
            return Some("not a slot of the job's schedule");
        }
        // The fire's guard reads the job's owner record, which the delete removes: no slot
        // after the delete can fire, except early, by the offset of an owner whose clock ran
        // ahead at some time while the job existed.
        if j.deleted_ms.is_some_and(|d| slot > d + f.max_skew(&j.owner, j.first_slot_ms, d) + 1_000) {
            return Some("a slot after the job's delete was acknowledged");
        }
        None
    };
    for r in &f.runs {
        let describe = json!({ "job": r.job, "slot_ms": r.slot_ms, "member": r.member, "execution": r.execution, "started_ms": r.started_ms });
        if let Some(why) = slot_is_ghost(&r.job, r.slot_ms) {
            ghost.push(json!({ "why": why, "run": describe }));
        } else if f.executions.is_some() && !listed.contains(r.execution.as_str()) {
            ghost.push(json!({ "why": "a run of an execution steward does not list", "run": describe }));
        }
        if r.started_ms + f.early_tolerance_ms + f.skew(owner_of(&r.job), r.started_ms) < r.slot_ms {
            early.push(describe.clone());
        }
        if r.ended_ms.is_none() {
            unfinished += 1;
        }
        // Its step ended long before the read, yet steward still says it runs: for an
        // exclusive job that also blocks every later slot.
        if r.ended_ms.is_some_and(|e| e + f.bound_ms < f.read_ms) && f.running.contains(&r.execution) {
            stuck.push(describe.clone());
        }
    }
    for (j, s, e) in f.executions.iter().flatten() {
        if let Some(why) = slot_is_ghost(j, *s) {
            ghost.push(json!({ "why": why, "execution": e, "job": j, "slot_ms": s }));
        }
    }
    for ((job, slot), ids) in &execs {
        if ids.len() > 1 {
            double.push(json!({ "job": job, "slot_ms": slot, "executions": ids }));
        }
    }
    for j in jobs.values() {
        let runs = runs_of.get(j.id.as_str()).map(Vec::as_slice).unwrap_or(&[]);
        if !j.multiple_executions {
            // Arrival times lie inside the real run (the start is reported after it began, the
            // end before it ended), so overlapping reports are overlapping runs.
            for w in runs.windows(2) {
                if let Some(end) = w[0].ended_ms.filter(|e| *e > w[1].started_ms) {
                    overlap.push(json!({ "job": j.id, "first": w[0].execution, "first_ended_ms": end, "second": w[1].execution, "second_started_ms": w[1].started_ms }));
                }
            }
        }
        let Some(created) = j.created_ms else { continue };
        let interval = j.interval_ms.max(1);
        // The bound is the takeover bound plus the job's period.
        let bound = f.bound_ms + interval;
        let mut slot = j.first_slot_ms.max(created.div_ceil(interval) * interval);
        while slot + bound < f.read_ms && j.delete_invoked_ms.is_none_or(|d| slot < d) {
            let key = (j.id.as_str(), slot);
            let skew = f.skew(&j.owner, slot);
            let owner_impaired = || f.impaired_during(&j.owner, slot.saturating_sub(2_000), slot + bound);
            let mut report = |kind: &mut Examples, v: Value| {
                if owner_impaired() && !f.require_takeover {
                    impaired.push(v);
                } else {
                    kind.push(v);
                }
            };
            let here: Vec<&&Run> = runs.iter().filter(|r| r.slot_ms == slot).collect();
            if execs.contains_key(&key) {
                if !here.is_empty() && here.iter().all(|r| r.started_ms > slot + bound + skew) {
                    report(&mut late, json!({ "job": j.id, "slot_ms": slot, "started_ms": here[0].started_ms }));
                }
            } else if missed.contains(&key) {
            } else if !j.multiple_executions
                && runs.iter().any(|r| {
                    // Going when the slot came; or fired late, catching up: the owner decides
                    // every due slot at once, oldest first, so the first fires and the others
                    // find it running.
                    let going = r.started_ms <= slot + f.early_tolerance_ms || r.started_ms > r.slot_ms + CATCH_UP_MS;
                    let end = r.ended_ms.unwrap_or(r.started_ms);
                    // The release is a Raft write: any fault (the leader's, a partition) may
                    // hold it up, for as long as the bound.
                    let release = if f.any_fault_during(end, slot) { bound } else { RELEASE_MS };
                    r.slot_ms < slot && going && slot <= end + release
                })
            {
                inferred_skipped += 1;
            } else if f.missed.is_none()
                && runs.iter().filter(|r| r.slot_ms > slot).map(|r| r.started_ms).min().is_some_and(|next| {
                    next + skew + f.early_tolerance_ms >= slot + ON_TIME_MS && next <= slot + bound + skew
                })
            {
                inferred_missed += 1;
            } else {
                let next = runs.iter().filter(|r| r.slot_ms > slot).map(|r| r.started_ms).min();
                report(
                    &mut not_run,
                    json!({ "job": j.id, "owner": j.owner, "slot_ms": slot, "next_run_started_ms": next }),
                );
            }
            slot += interval;
        }
    }
    let bad = [&double, &ghost, &early, &overlap, &not_run, &late, &stuck].iter().any(|x| !x.is_empty());
    let summary = format!(
        "{} jobs, {} runs: {} double fires, {} ghost, {} early, {} overlaps, {} slots neither run nor missed in time, {} late, {} ended but still running; {} slots of impaired owners{}; inferred {} missed, {} skipped",
        jobs.len(),
        f.runs.len(),
        double.count,
        ghost.count,
        early.count,
        overlap.count,
        not_run.count,
        late.count,
        stuck.count,
        impaired.count,
        if f.require_takeover { "" } else { " (not judged: no takeover)" },
        inferred_missed,
        inferred_skipped,
    );
    Verdict::new(
        "schedule",
        if bad { Validity::Invalid } else { Validity::Valid },
        summary,
        json!({
            "double_fires": double, "ghost_fires": ghost, "early_fires": early, "overlaps": overlap,
            "not_run": not_run, "late": late, "still_running": stuck, "owner_impaired": impaired,
            "inferred_missed": inferred_missed, "inferred_skipped": inferred_skipped,
            "unfinished_runs": unfinished, "bound_ms": f.bound_ms, "require_takeover": f.require_takeover,
            "executions_listed": f.executions.as_ref().map(Vec::len),
        }),
    )
}

/// The `schedule` workload's records, turned into [`Facts`]. Its ops:
/// - `config` (value: `wall_ms`, `bound_ms`, `early_tolerance_ms`, `require_takeover`,
///   `nodes`): the wall-clock time at that history time, to place the nemesis's records;
/// - `create` (invoke value: `id`, `interval_ms`, `multiple_executions`, `wall_ms`; completion
///   value: `wall_ms`; `node`: the owner), `delete` (the same shape);
/// - `run-start` / `run-end` from the sink (value: `job`, `slot_ms`, `member`, `execution`,
///   `wall_ms`);
/// - `read` (value: `wall_ms`) and `executions` (value: a list of `{job, slot_ms, id}`, or an
///   `info` when no member answered).
pub fn facts(history: &[Op]) -> Facts {
    let mut f = Facts::default();
    let mut wall_at_zero: i64 = 0;
    let mut nodes: Vec<String> = Vec::new();
    let mut open: HashMap<(&str, String), &Op> = HashMap::new();
    let mut jobs: BTreeMap<String, Job> = BTreeMap::new();
    let mut runs: BTreeMap<String, Run> = BTreeMap::new();
    let wall = |v: &Value| v["wall_ms"].as_u64().unwrap_or(0);
    for op in history.iter().filter(|o| o.workload == "schedule") {
        let v = &op.value;
        match (op.f.as_str(), op.kind) {
            ("config", _) => {
                wall_at_zero = wall(v) as i64 - (op.time / 1_000_000) as i64;
                f.bound_ms = v["bound_ms"].as_u64().unwrap_or(0);
                f.early_tolerance_ms = v["early_tolerance_ms"].as_u64().unwrap_or(0);
                f.require_takeover = v["require_takeover"].as_bool().unwrap_or(false);
                nodes =
                    v["nodes"].as_array().into_iter().flatten().filter_map(|n| n.as_str().map(String::from)).collect();
            }
            (g @ ("create" | "delete"), OpType::Invoke) => {
                open.insert((if g == "create" { "create" } else { "delete" }, format!("{:?}", op.process)), op);
            }
            ("create", kind) => {
                let Some(inv) = open.remove(&("create", format!("{:?}", op.process))) else { continue };
                if kind == OpType::Fail {
                    continue;
                }
                let iv = &inv.value;
                let interval = iv["interval_ms"].as_u64().unwrap_or(1000).max(1);
                let id = iv["id"].as_str().unwrap_or_default().to_string();
                jobs.insert(
                    id.clone(),
                    Job {
                        id,
                        first_slot_ms: wall(iv).div_ceil(interval) * interval,
                        interval_ms: interval,
                        created_ms: (kind == OpType::Ok).then(|| wall(v)),
                        delete_invoked_ms: None,
                        deleted_ms: None,
                        multiple_executions: iv["multiple_executions"].as_bool().unwrap_or(true),
                        owner: inv.node.clone().unwrap_or_default(),
                    },
                );
            }
            ("delete", kind) => {
                let Some(inv) = open.remove(&("delete", format!("{:?}", op.process))) else { continue };
                if kind == OpType::Fail {
                    continue;
                }
                if let Some(j) = inv.value["id"].as_str().and_then(|id| jobs.get_mut(id)) {
                    j.delete_invoked_ms = Some(wall(&inv.value));
                    if kind == OpType::Ok {
                        j.deleted_ms = Some(wall(v));
                    }
                }
            }
            ("run-start", _) => {
                let exec = v["execution"].as_str().unwrap_or_default().to_string();
                runs.entry(exec.clone()).or_insert(Run {
                    job: v["job"].as_str().unwrap_or_default().into(),
                    slot_ms: v["slot_ms"].as_u64().unwrap_or(0),
                    member: v["member"].as_str().unwrap_or_default().into(),
                    execution: exec,
                    started_ms: wall(v),
                    ended_ms: None,
                });
            }
            ("run-end", _) => {
                if let Some(r) = v["execution"].as_str().and_then(|e| runs.get_mut(e)) {
                    r.ended_ms = Some(wall(v));
                }
            }
            ("read", _) => f.read_ms = wall(v),
            ("executions", OpType::Ok) => {
                f.running = v
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|e| e["status"] == json!("running") || e["status"] == json!("scheduled"))
                    .filter_map(|e| e["id"].as_str().map(String::from))
                    .collect();
                f.executions = Some(
                    v.as_array()
                        .into_iter()
                        .flatten()
                        .map(|e| {
                            (
                                e["job"].as_str().unwrap_or_default().to_string(),
                                e["slot_ms"].as_u64().unwrap_or(0),
                                e["id"].as_str().map(String::from).unwrap_or_else(|| e["id"].to_string()),
                            )
                        })
                        .collect(),
                )
            }
            _ => {}
        }
    }
    f.jobs = jobs.into_values().collect();
    f.runs = runs.into_values().collect();
    f.impaired = impairments(history, wall_at_zero, &nodes);
    f
}

/// Every member name a nemesis record mentions (`n3`, `n1->n4`, `to and from n2`).
fn names_in(v: &Value, nodes: &[String], out: &mut BTreeSet<String>) {
    match v {
        Value::String(s) => {
            if s == "between all members" {
                out.extend(nodes.iter().cloned());
            }
            for part in s.split(|c: char| !c.is_ascii_alphanumeric()) {
                if nodes.iter().any(|n| n == part) {
                    out.insert(part.to_string());
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| names_in(x, nodes, out)),
        Value::Object(m) => m.values().for_each(|x| names_in(x, nodes, out)),
        _ => {}
    }
}

/// The nemesis's steps as windows per member: from the step's start to its stop, with the
/// clock offsets it set; a member that left the cluster is impaired for good (its identity is
/// gone, and with it the owner of its jobs).
fn impairments(history: &[Op], wall_at_zero: i64, nodes: &[String]) -> Vec<Impairment> {
    let at = |op: &Op| (wall_at_zero + (op.time / 1_000_000) as i64).max(0) as u64;
    let mut started: HashMap<(u64, String), (u64, &Value)> = HashMap::new();
    let mut out = Vec::new();
    for op in history.iter().filter(|o| o.workload == "nemesis" && o.kind == OpType::Info) {
        let step = op.value["step"].as_u64().unwrap_or(u64::MAX);
        let package = op.value["package"].as_str().unwrap_or_default().to_string();
        match op.f.as_str() {
            "start" => {
                started.insert((step, package), (at(op), &op.value["done"]));
            }
            "stop" => {
                let Some((from, done)) = started.remove(&(step, package.clone())) else { continue };
                let mut names = BTreeSet::new();
                names_in(done, nodes, &mut names);
                let offsets: HashMap<String, u64> = match package.as_str() {
                    "clock" => {
                        let strobe = done["delta_s"].as_u64().map(|d| d * 1000);
                        let bumped: Vec<&str> =
                            done["bumped"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
                        let offs: Vec<u64> = done["offsets_s"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(Value::as_i64)
                            .map(|o| o.unsigned_abs() * 1000)
                            .collect();
                        names
                            .iter()
                            .map(|n| {
                                let bump = bumped.iter().position(|b| b == n).and_then(|i| offs.get(i).copied());
                                (n.clone(), bump.or(strobe).unwrap_or(0))
                            })
                            .collect()
                    }
                    _ => HashMap::new(),
                };
                let left = done["left"].as_str().filter(|_| package == "member");
                for n in names {
                    let forever = left == Some(n.as_str());
                    out.push(Impairment {
                        skew_ms: offsets.get(&n).copied().unwrap_or(0),
                        node: n,
                        from_ms: from,
                        to_ms: if forever { None } else { Some(at(op)) },
                    });
                }
            }
            _ => {}
        }
    }
    // Steps still open at the end (an interrupted run) last until the end.
    for ((_, package), (from, done)) in started {
        let mut names = BTreeSet::new();
        names_in(done, nodes, &mut names);
        for n in names {
            out.push(Impairment {
                node: n,
                from_ms: from,
                to_ms: None,
                skew_ms: if package == "clock" { 512_000 } else { 0 },
            });
        }
    }
    out
}

/// The verdict on a history.
pub fn check_history(history: &[Op]) -> Verdict {
    check(&facts(history))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Process;

    fn job() -> Job {
        Job {
            id: "j1".into(),
            first_slot_ms: 1000,
            interval_ms: 1000,
            created_ms: Some(500),
            delete_invoked_ms: None,
            deleted_ms: None,
            multiple_executions: false,
            owner: "n1".into(),
        }
    }

    fn run(slot: u64, member: &str, exec: &str, started: u64) -> Run {
        Run {
            job: "j1".into(),
            slot_ms: slot,
            member: member.into(),
            execution: exec.into(),
            started_ms: started,
            ended_ms: Some(started + 100),
        }
    }

    fn facts_of(runs: Vec<Run>) -> Facts {
        Facts { jobs: vec![job()], runs, read_ms: 5000, bound_ms: 1500, early_tolerance_ms: 50, ..Facts::default() }
    }

    #[test]
    fn every_slot_once_is_valid_and_a_recorded_miss_is_allowed() {
        let mut f = facts_of(vec![run(1000, "A", "1", 1010), run(2000, "A", "2", 2005), run(3000, "B", "3", 3400)]);
        f.jobs[0].multiple_executions = true;
        assert_eq!(check(&f).valid, Validity::Valid, "{}", check(&f).details);
        f.runs.remove(1);
        let v = check(&f);
        assert_eq!(v.valid, Validity::Invalid, "slot 2000 lost while the next ran on time");
        assert_eq!(v.details["not_run"]["count"], 1);
        f.missed = Some(vec![("j1".into(), 2000)]);
        assert_eq!(check(&f).valid, Validity::Valid, "steward recorded it missed");
    }

    #[test]
    fn a_slot_without_a_run_is_inferred_missed_only_when_the_owner_came_back_late() {
        // Nothing ran until slot 7000, at 7100: slots 1000 and 2000 were reached more than 5 s
        // late (missed); 3000..=6000 less than 5 s late: they must have run.
        let mut f = facts_of(vec![run(7000, "A", "7", 7100)]);
        f.jobs[0].multiple_executions = true;
        f.read_ms = 20_000;
        f.bound_ms = 8_000;
        let v = check(&f);
        assert_eq!(v.details["inferred_missed"], 2, "{}", v.details);
        // 3000..=6000 and 8000..=10000 (due a bound of 8 s + 1 s before the read, no run).
        assert_eq!(v.details["not_run"]["count"], 7, "{}", v.details);
        assert_eq!(v.valid, Validity::Invalid);
    }

    #[test]
    fn a_busy_exclusive_job_skips_slots_and_an_impaired_owner_is_judged_only_on_request() {
        // A 1 s job whose run takes 1.5 s: every other slot is skipped.
        let mut runs = vec![run(1000, "A", "1", 1010), run(3000, "A", "3", 3010)];
        runs[0].ended_ms = Some(2500);
        runs[1].ended_ms = Some(4500);
        let mut f = facts_of(runs);
        f.read_ms = 4600;
        let v = check(&f);
        assert_eq!(v.valid, Validity::Valid, "{}", v.details);
        assert_eq!(v.details["inferred_skipped"], 1);

        // Catching up after an outage: slot 2000 fired at 5000, slots 3000..=5000 found it
        // running; slot 6000 came after it ended (plus the release) and must run.
        let mut runs = vec![run(1000, "A", "1", 1010), run(2000, "A", "2", 5000)];
        runs[1].ended_ms = Some(5300);
        let mut f = facts_of(runs);
        f.read_ms = 11_000;
        f.bound_ms = 3500;
        let v = check(&f);
        assert_eq!(v.details["inferred_skipped"], 3, "{}", v.details);
        assert_eq!(v.details["not_run"]["examples"][0]["slot_ms"], 6000, "{}", v.details);
        // A healthy exclusive job that loses a slot is caught: its runs end long before.
        let mut f = facts_of(vec![run(1000, "A", "1", 1010), run(3000, "A", "3", 3010)]);
        f.read_ms = 4600;
        assert_eq!(check(&f).details["not_run"]["count"], 1);

        // Nothing runs while the owner is killed (no takeover yet).
        let mut f = facts_of(vec![run(1000, "A", "1", 1010)]);
        f.read_ms = 10_000;
        f.impaired.push(Impairment { node: "n1".into(), from_ms: 1500, to_ms: Some(9000), skew_ms: 0 });
        let v = check(&f);
        assert_eq!(v.valid, Validity::Valid, "{}", v.details);
        assert!(v.details["owner_impaired"]["count"].as_u64().unwrap() > 0);
        f.require_takeover = true;
        assert_eq!(check(&f).valid, Validity::Invalid, "with takeover required");
    }

    #[test]
    fn a_double_fire_is_rejected_also_when_only_steward_lists_the_second_execution() {
        let f = facts_of(vec![
            run(1000, "A", "1", 1010),
            run(2000, "A", "2", 2005),
            run(2000, "B", "7", 2300),
            run(3000, "B", "3", 3010),
        ]);
        let v = check(&f);
        assert_eq!(v.valid, Validity::Invalid);
        assert_eq!(v.details["double_fires"]["count"], 1);
        assert_eq!(v.details["overlaps"]["count"], 0, "2005+100 ends before 2300");

        let mut f = facts_of(vec![run(1000, "A", "1", 1010), run(2000, "A", "2", 2005), run(3000, "A", "3", 3010)]);
        f.executions = Some(
            [("1", 1000), ("2", 2000), ("9", 2000), ("3", 3000)]
                .iter()
                .map(|(e, s)| ("j1".to_string(), *s, e.to_string()))
                .collect(),
        );
        let v = check(&f);
        assert_eq!(v.details["double_fires"]["count"], 1, "{}", v.details);
        // Its step ended long ago, yet steward still lists it as running.
        f.running = vec!["2".into()];
        assert_eq!(check(&f).details["still_running"]["count"], 1);
        f.running.clear();
        // A run whose execution steward does not list is a ghost.
        f.executions.as_mut().unwrap().retain(|e| e.2 != "3");
        assert_eq!(check(&f).details["ghost_fires"]["count"], 1);
    }

    #[test]
    fn early_ghost_and_overlapping_runs_are_rejected_and_clock_skew_excuses_early_runs() {
        let mut runs = vec![run(1000, "A", "1", 900), run(2000, "A", "2", 2005), run(3000, "A", "3", 3010)];
        runs[1].ended_ms = Some(3500);
        runs.push(Run { job: "nope".into(), ..run(1000, "A", "9", 1000) });
        let mut f = facts_of(runs);
        f.jobs[0].deleted_ms = Some(3600);
        f.jobs[0].delete_invoked_ms = Some(3550);
        f.runs.push(run(6000, "A", "6", 6000));
        let v = check(&f);
        assert_eq!(v.details["early_fires"]["count"], 1);
        assert_eq!(v.details["overlaps"]["count"], 1);
        assert_eq!(v.details["ghost_fires"]["count"], 2, "no such job; a slot after the delete: {}", v.details);
        assert_eq!(v.valid, Validity::Invalid);

        // An owner 10 s ahead fired slot 11000 at 1500; the job was deleted at 4000, after
        // the offset was gone: an early fire, excused by the offset, not a ghost.
        let mut f = facts_of(vec![run(1000, "A", "1", 1000), run(11_000, "A", "11", 1500)]);
        f.read_ms = 3000;
        f.jobs[0].deleted_ms = Some(4000);
        f.jobs[0].delete_invoked_ms = Some(3900);
        f.impaired.push(Impairment { node: "n1".into(), from_ms: 1200, to_ms: Some(1800), skew_ms: 10_000 });
        let v = check(&f);
        assert_eq!(v.details["ghost_fires"]["count"], 0, "{}", v.details);
        assert_eq!(v.details["early_fires"]["count"], 0, "{}", v.details);

        // The owner's clock ran 4 s ahead: it fired slot 5000 at 1000.
        let mut f = facts_of(vec![run(1000, "A", "1", 1000), run(5000, "A", "5", 1001)]);
        f.read_ms = 2000;
        assert_eq!(check(&f).details["early_fires"]["count"], 1);
        f.impaired.push(Impairment { node: "n1".into(), from_ms: 900, to_ms: Some(1500), skew_ms: 4000 });
        assert_eq!(check(&f).details["early_fires"]["count"], 0);
    }

    #[test]
    fn facts_are_read_from_the_workload_and_nemesis_records() {
        let sink = || Process::Named("sink".into());
        let mut h = Vec::new();
        let mut push = |kind, p: Process, w: &str, f: &str, node: Option<&str>, v: Value, ms: u64| {
            let mut op = Op::new(kind, p, w, f).value(v);
            op.node = node.map(String::from);
            op.time = ms * 1_000_000;
            h.push(op);
        };
        // History time 0 is wall time 100 000.
        let w0 = 100_000;
        push(
            OpType::Info,
            Process::Named("harness".into()),
            "schedule",
            "config",
            None,
            json!({ "wall_ms": w0 + 10, "bound_ms": 8000, "early_tolerance_ms": 100, "require_takeover": false, "nodes": ["n1", "n2"] }),
            10,
        );
        push(
            OpType::Invoke,
            Process::Client(1),
            "schedule",
            "create",
            Some("n2"),
            json!({ "id": "j", "interval_ms": 2000, "multiple_executions": false, "wall_ms": w0 + 500 }),
            500,
        );
        push(OpType::Ok, Process::Client(1), "schedule", "create", Some("n2"), json!({ "wall_ms": w0 + 900 }), 900);
        push(
            OpType::Info,
            sink(),
            "schedule",
            "run-start",
            None,
            json!({ "job": "j", "slot_ms": w0 + 2000, "member": "u2", "execution": "5", "wall_ms": w0 + 2050 }),
            2050,
        );
        push(
            OpType::Info,
            sink(),
            "schedule",
            "run-end",
            None,
            json!({ "job": "j", "slot_ms": w0 + 2000, "member": "u2", "execution": "5", "wall_ms": w0 + 2400 }),
            2400,
        );
        push(
            OpType::Info,
            Process::nemesis(),
            "nemesis",
            "start",
            None,
            json!({ "step": 0, "package": "clock", "done": { "bumped": ["n2", "n1"], "offsets_s": [-8, 4] } }),
            3000,
        );
        push(OpType::Info, Process::nemesis(), "nemesis", "stop", None, json!({ "step": 0, "package": "clock" }), 6000);
        push(
            OpType::Info,
            Process::nemesis(),
            "nemesis",
            "start",
            None,
            json!({ "step": 1, "package": "member", "done": { "left": "n1", "via": "n2" } }),
            7000,
        );
        push(
            OpType::Info,
            Process::nemesis(),
            "nemesis",
            "stop",
            None,
            json!({ "step": 1, "package": "member" }),
            9000,
        );
        push(
            OpType::Info,
            Process::Named("harness".into()),
            "schedule",
            "read",
            None,
            json!({ "wall_ms": w0 + 20_000 }),
            20_000,
        );
        push(
            OpType::Ok,
            Process::Named("harness".into()),
            "schedule",
            "executions",
            None,
            json!([{ "job": "j", "slot_ms": w0 + 2000, "id": "5" }]),
            20_100,
        );

        let f = facts(&h);
        assert_eq!(f.bound_ms, 8000);
        assert_eq!(f.read_ms, w0 + 20_000);
        assert_eq!(f.jobs.len(), 1);
        let j = &f.jobs[0];
        assert_eq!((j.first_slot_ms, j.created_ms, j.owner.as_str()), (w0 + 2000, Some(w0 + 900), "n2"));
        assert_eq!(f.runs.len(), 1);
        assert_eq!((f.runs[0].started_ms, f.runs[0].ended_ms), (w0 + 2050, Some(w0 + 2400)));
        assert_eq!(f.executions.as_ref().unwrap().len(), 1);
        let mut imp: Vec<(String, u64, Option<u64>, u64)> =
            f.impaired.iter().map(|i| (i.node.clone(), i.from_ms, i.to_ms, i.skew_ms)).collect();
        imp.sort();
        assert_eq!(
            imp,
            vec![
                ("n1".into(), w0 + 3000, Some(w0 + 6000), 4000),
                ("n1".into(), w0 + 7000, None, 0),
                ("n2".into(), w0 + 3000, Some(w0 + 6000), 8000),
                ("n2".into(), w0 + 7000, Some(w0 + 9000), 0),
            ]
        );
        // Slots of n2's job during its clock fault are the owner's, not judged; the verdict
        // holds together.
        let v = check(&f);
        assert_eq!(v.details["double_fires"]["count"], 0, "{}", v.details);
    }
}
