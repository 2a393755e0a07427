//! The schedule checker: jobs on 1–2 s schedules report each run to a sink in the harness
//! (job, slot, member, execution id, arrival time on the harness's clock); at the end, after
//! the final heal and recovery, the executions steward lists are read once, and every job's
//! fire records (`GET /job/{id}/fires`: what became of each slot — fired with an execution,
//! missed, or skipped —, which member recorded it and when, on that member's clock). [`facts`]
//! turns the `schedule` workload's history (and the nemesis's) into [`Facts`]; [`check`]
//! judges them.
//!
//! Invariants (after Jepsen's Chronos checker, plus fencing-era scheduler bugs):
//! - **no double fire**: at most one execution per (job, slot), counting the sink's runs and
//!   steward's execution list;
//! - **no ghost fire**: every run (and fire record) belongs to a created job, a slot of its
//!   schedule, not before the job was created nor after its delete was acknowledged, and every
//!   run to an execution steward lists;
//! - **no early fire**: a run never starts before its slot (less a tolerance, plus the clock
//!   offset the nemesis gave the member);
//! - **no overlap** for jobs with `multipleExecutions: false`;
//! - **no execution left running**: a run whose step reported its end more than the bound
//!   before the final read is not still `running` in steward's list;
//! - **every due slot decided once, in time** (jobs steward still has): each slot from the
//!   job's creation to its delete or the end has a record; a `fired` record names the one
//!   execution of that slot (the sink's run and steward's list agree with it); a `missed` or
//!   `skipped` slot has no execution; a `skipped` slot belongs to a `multipleExecutions: false`
//!   job and was decided while a run of that job was going; every record was made by
//!   [`Facts::deadline`] (the bound plus the period after its slot, later only while a majority
//!   of members was faulted), and every run started by then.
//! - **deleted jobs** (404: their records went with them) are judged from their runs as before
//!   the records were exposed: a slot without an execution is inferred "missed" when the job's
//!   next run started between 5 s and the bound after it, "skipped" when a run of the
//!   exclusive job was going (see [`infer_slot`]). A slot without a run whose deadline came
//!   after the delete is not judged (`cut_by_delete`): its owner still had time to decide it
//!   when the job and its records went.
//!
//! # Whose clock
//! Slots are instants of the schedule, run times the harness's clock at arrival. A record's
//! `recorded` time is the recording member's wall clock, which the clock nemesis skews: the
//! checker turns it into an interval of harness time using the offsets the nemesis gave that
//! member (its uuid is tied to a node by the set-up's and rejoins' records and the address its
//! runs reported from), and calls a record late only when even the earliest real time is past
//! the deadline. A member whose clock was set back by D decides nothing until its clock reaches
//! the slot, and when its clock is restored it records the slots it sat on at once, late: a
//! slot whose recording member (or its previous owner, or its creator) had a clock fault
//! between the slot and its deadline is not judged late (`clock_excused`) — a property of
//! clock faults, not a takeover failure (takeover acts on silence, and a skewed member still
//! sends heartbeats).
//!
//! # Owners that cannot act
//! steward's leader moves a dead member's jobs (silent past considerDead, 5 s) and a removed
//! member's at once, so by default slots of a killed, paused, cut-off or removed owner are
//! judged like any other (`require_takeover`). Without it, a slot not decided in time while
//! its creating owner was impaired ([`Facts::impaired`], from the nemesis's own records) is
//! only counted as `owner_impaired`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{json, Value};

use super::{Examples, Validity, Verdict};
use crate::history::{Op, OpType, Process};

/// steward's `ON_TIME_TOLERANCE`: a slot reached at most this late fires, whatever the policy.
pub const ON_TIME_MS: u64 = 5_000;

/// How long after a run's reported end its job may still count as running: the runner
/// commits the end (and releases `jobrun/`) through Raft after the step exits. Short, so that
/// a lost slot of a healthy exclusive job is still caught; while the nemesis acts on any
/// member (a leader election may hold the release up) the deadline is used instead.
pub const RELEASE_MS: u64 = 500;

/// A run that started this long after its slot was fired late, in a catch-up.
pub const CATCH_UP_MS: u64 = 1_000;

/// Slots due this soon after a create was acknowledged are not required: the owner starts
/// scheduling a job when it applies the create, which may come a moment after the answer.
pub const SETTLE_MS: u64 = 1_000;

/// How far around a clock step's start and stop its offset may still (or already) apply:
/// libfaketime re-reads its timestamp file now and then.
pub const CLOCK_MARGIN_MS: u64 = 2_000;

/// How long before a run's start its fire may have been decided: a burst's runs wait for the
/// member's execution slots (`member.capacity`), each step behind a step guard's start. A run
/// that starts early is excused by a clock offset its member or owner had in this window,
/// not only at its start (the harness's seed 17 with bursts: a member strobed 128 s ahead
/// decided a burst's slot, and its runs began 2 s after the strobe had ended).
pub const FIRE_TO_START_MS: u64 = 30_000;

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
    /// The member (name) that created it, hence owned it first.
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

/// What steward recorded for a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Fired,
    Missed,
    Skipped,
}

/// One of a job's fire records (`GET /job/{id}/fires`).
#[derive(Debug, Clone)]
pub struct FireRecord {
    pub slot_ms: u64,
    pub outcome: Outcome,
    /// The uuid of the member that recorded it.
    pub member: String,
    /// When, on that member's (possibly skewed) wall clock.
    pub recorded_ms: u64,
    /// The execution a `fired` slot created.
    pub execution: Option<String>,
}

/// A member the nemesis acted on, from `from_ms` to `to_ms` (`None`: for good, as a removed
/// identity, or a step that never stopped), with the wall-clock offset it may have had.
#[derive(Debug, Clone)]
pub struct Impairment {
    pub node: String,
    pub from_ms: u64,
    pub to_ms: Option<u64>,
    /// When the step stopped (a removed member is back, under a new identity, from then on).
    pub stopped_ms: Option<u64>,
    pub skew_ms: u64,
}

impl Impairment {
    fn is_clock(&self) -> bool {
        self.skew_ms > 0
    }
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
    /// Each listed execution's status at the end.
    pub statuses: HashMap<String, String>,
    /// The fire records of each job steward still had at the end.
    pub fires: BTreeMap<String, Vec<FireRecord>>,
    /// Jobs steward answered 404 for at the end (deleted: their records are gone too).
    pub gone: BTreeSet<String>,
    /// When the fire records were read (`None`: they were not; every job is judged from its
    /// runs).
    pub fires_read_ms: Option<u64>,
    /// Member uuid → node name.
    pub uuids: HashMap<String, String>,
    /// The members (node names), to tell a majority.
    pub nodes: Vec<String>,
    /// When the final read of executions happened.
    pub read_ms: u64,
    /// How late a slot may be decided after it is due (the takeover bound); each job adds
    /// its period.
    pub bound_ms: u64,
    /// How early a run may seem to start (arrival is after the start, but steps' and the
    /// harness's clocks differ a little).
    pub early_tolerance_ms: u64,
    pub impaired: Vec<Impairment>,
    /// Judge slots of impaired owners too (steward moves their jobs); otherwise they are only
    /// counted.
    pub require_takeover: bool,
}

impl Facts {
    /// The largest clock offset `node` may have had around `t`.
    fn skew(&self, node: &str, t: u64) -> u64 {
        self.impaired
            .iter()
            .filter(|i| i.node == node && i.is_clock())
            .filter(|i| t + CLOCK_MARGIN_MS >= i.from_ms && i.to_ms.is_none_or(|to| t <= to + CLOCK_MARGIN_MS))
            .map(|i| i.skew_ms)
            .max()
            .unwrap_or(0)
    }

    /// The earliest harness time at which a member of `node` (`None`: unknown, any node)
    /// could have read `t` on its clock: `t` less the largest offset it may have had then.
    fn earliest_real(&self, node: Option<&str>, t: u64) -> u64 {
        let skew = self
            .impaired
            .iter()
            .filter(|i| i.is_clock() && node.is_none_or(|n| i.node == n))
            // The offset applies if the real time `t - skew ..= t + skew` meets its window.
            .filter(|i| {
                t + i.skew_ms + CLOCK_MARGIN_MS >= i.from_ms
                    && i.to_ms.is_none_or(|to| t.saturating_sub(i.skew_ms) <= to + CLOCK_MARGIN_MS)
            })
            .map(|i| i.skew_ms)
            .max()
            .unwrap_or(0);
        t.saturating_sub(skew)
    }

    /// Whether `node` had a clock fault at some time in `[from, to]`.
    fn clock_fault_during(&self, node: &str, from: u64, to: u64) -> bool {
        self.impaired.iter().any(|i| {
            i.node == node
                && i.is_clock()
                && i.from_ms <= to + CLOCK_MARGIN_MS
                && i.to_ms.is_none_or(|end| end + CLOCK_MARGIN_MS >= from)
        })
    }

    /// Whether a slot in `[from, to]` may lie in the shadow of a clock fault of `node`: while
    /// its clock was off, and, for as long as the offset, after it was restored (a member set
    /// ahead by D decided the next D of slots early: after the reset it waits for them; the
    /// checker cannot tell which of them it fired early or recorded missed once their records
    /// are gone).
    fn clock_shadow(&self, node: &str, from: u64, to: u64) -> bool {
        self.impaired.iter().any(|i| {
            i.node == node
                && i.is_clock()
                && i.from_ms <= to + CLOCK_MARGIN_MS
                && i.to_ms.is_none_or(|end| end + i.skew_ms + CLOCK_MARGIN_MS >= from)
        })
    }

    /// Whether the nemesis acted on any member during `[from, to]`.
    fn any_fault_during(&self, from: u64, to: u64) -> bool {
        self.impaired.iter().any(|i| i.from_ms <= to && i.to_ms.is_none_or(|end| end >= from))
    }

    /// The largest clock offset `node` had at any time in `[from, to]`.
    fn max_skew(&self, node: &str, from: u64, to: u64) -> u64 {
        self.impaired
            .iter()
            .filter(|i| {
                i.node == node
                    && i.from_ms <= to + CLOCK_MARGIN_MS
                    && i.to_ms.is_none_or(|end| end + CLOCK_MARGIN_MS >= from)
            })
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

    /// The periods when a majority of the members was killed, paused, cut off, lossy, delayed,
    /// out of the cluster (until it rejoined) or failing its disk: nobody may be able to decide
    /// anything then (no quorum, or no stable leader). Clock faults do not count: they do not
    /// stop the cluster.
    fn outages(&self) -> Vec<(u64, u64)> {
        let faults: Vec<(&str, u64, u64)> = self
            .impaired
            .iter()
            .filter(|i| !i.is_clock())
            .map(|i| (i.node.as_str(), i.from_ms, i.stopped_ms.or(i.to_ms).unwrap_or(u64::MAX)))
            .collect();
        // Without the member list no majority can be told: no outage.
        let members = self.nodes.len();
        if members == 0 {
            return Vec::new();
        }
        let mut cuts: Vec<u64> = faults.iter().flat_map(|f| [f.1, f.2]).collect();
        cuts.sort_unstable();
        cuts.dedup();
        let mut out: Vec<(u64, u64)> = Vec::new();
        for w in cuts.windows(2) {
            let (a, b) = (w[0], w[1]);
            let down: BTreeSet<&str> = faults.iter().filter(|f| f.1 <= a && f.2 >= b).map(|f| f.0).collect();
            if down.len() * 2 > members {
                match out.last_mut() {
                    Some(last) if last.1 >= a => last.1 = last.1.max(b),
                    _ => out.push((a, b)),
                }
            }
        }
        out
    }

    /// When a slot must have been decided (and its run started): `bound` after it, and, when
    /// a majority outage overlaps that window, `bound` after the outage ends (repeatedly: the
    /// next outage may start before the new deadline).
    pub fn deadline(&self, outages: &[(u64, u64)], slot: u64, bound: u64) -> u64 {
        let mut d = slot + bound;
        loop {
            let later = outages
                .iter()
                .filter(|(a, b)| *a <= d && *b >= slot)
                .map(|(_, b)| b.saturating_add(bound))
                .max()
                .unwrap_or(d);
            if later <= d {
                return d;
            }
            d = later;
        }
    }

    fn node_of(&self, uuid: &str) -> Option<&str> {
        self.uuids.get(uuid).map(String::as_str)
    }
}

/// What the legacy inference made of a slot without an execution (jobs whose records are gone).
enum Inferred {
    Skipped,
    Missed,
    NotRun,
}

/// Infers what became of a slot of a job steward no longer has, from steward's documented
/// policy (`jobs::schedule::plan_due_slots`): a slot reached at most 5 s late fires; a slot
/// reached later is recorded missed (except the last one, which runs late), so a slot without
/// an execution was "missed" when the job's next run started between 5 s and the bound after
/// it; for `multipleExecutions: false`, "skipped" when a run of the job was going (from its
/// start, or from its slot when it was fired late in a catch-up, to [`RELEASE_MS`] after its
/// end, or the bound while a fault may hold the release up).
fn infer_slot(f: &Facts, j: &Job, runs: &[&Run], slot: u64, bound: u64) -> Inferred {
    let skew = f.skew(&j.owner, slot);
    let going = !j.multiple_executions
        && runs.iter().any(|r| {
            // Going when the slot came; or fired late, catching up: the owner decides every
            // due slot at once, oldest first, so the first fires and the others find it
            // running.
            let going = r.started_ms <= slot + f.early_tolerance_ms || r.started_ms > r.slot_ms + CATCH_UP_MS;
            let end = r.ended_ms.unwrap_or(r.started_ms);
            // The release is a Raft write: any fault (the leader's, a partition) may hold it
            // up, for as long as the bound.
            let release = if f.any_fault_during(end, slot) { bound } else { RELEASE_MS };
            r.slot_ms < slot && going && slot <= end + release
        });
    if going {
        return Inferred::Skipped;
    }
    let next = runs.iter().filter(|r| r.slot_ms > slot).map(|r| r.started_ms).min();
    if next.is_some_and(|next| next + skew + f.early_tolerance_ms >= slot + ON_TIME_MS && next <= slot + bound + skew) {
        Inferred::Missed
    } else {
        Inferred::NotRun
    }
}

/// Counters and examples of one verdict.
#[derive(Default)]
struct Findings {
    double: Examples,
    ghost: Examples,
    early: Examples,
    overlap: Examples,
    /// Jobs with records: a due slot without one. Jobs without: a slot neither run nor
    /// inferred missed or skipped.
    unrecorded: Examples,
    not_run: Examples,
    late: Examples,
    bad_skip: Examples,
    mismatch: Examples,
    lost_job: Examples,
    impaired: Examples,
    stuck: Examples,
    clock_excused: usize,
    fired_without_run: Examples,
    recorded: BTreeMap<&'static str, usize>,
    inferred_missed: usize,
    inferred_skipped: usize,
    /// Slots of deleted jobs, without a run, whose deadline came after the delete.
    cut_by_delete: usize,
    unfinished: usize,
    judged_from_records: usize,
    judged_from_runs: usize,
}

pub fn check(f: &Facts) -> Verdict {
    let jobs: BTreeMap<&str, &Job> = f.jobs.iter().map(|j| (j.id.as_str(), j)).collect();
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
    let outages = f.outages();
    let mut x = Findings::default();

    let owner_of = |job: &str| jobs.get(job).map(|j| j.owner.as_str()).unwrap_or("");
    let slot_is_ghost = |job: &str, slot: u64, extra_skew: u64| -> Option<&'static str> {
        let Some(j) = jobs.get(job) else { return Some("no such job") };
        // The owner's clock offset when the job was created (a member set back fires slots
        // from before the create) and when it was deleted (one set ahead fires future slots).
        // The create's own time stamps the job on the creating member's clock; the first slot
        // may come later, after an offset is gone (seed 28 with bursts: a job created 1.1 s
        // after its creator's clock was reset, which libfaketime had not seen yet, fired the
        // slot before its create).
        let created = j.created_ms.map_or(j.first_slot_ms, |c| c.min(j.first_slot_ms));
        let skew = f.skew(&j.owner, created).max(f.skew(&j.owner, j.first_slot_ms)).max(extra_skew);
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
    let run_of: HashMap<&str, &Run> = f.runs.iter().map(|r| (r.execution.as_str(), r)).collect();
    // Execution ids only grow: one above every listed id was created after the list was read
    // (the jobs keep firing while the final reads run), so its absence proves nothing.
    let max_listed: Option<u64> =
        f.executions.as_ref().and_then(|e| e.iter().filter_map(|(_, _, id)| id.parse().ok()).max());
    let after_the_list = |id: &str| id.parse::<u64>().ok().zip(max_listed).is_some_and(|(id, max)| id > max);
    for r in &f.runs {
        let describe = json!({ "job": r.job, "slot_ms": r.slot_ms, "member": r.member, "execution": r.execution, "started_ms": r.started_ms });
        let member_skew = f.node_of(&r.member).map(|n| f.skew(n, r.started_ms)).unwrap_or(0);
        if let Some(why) = slot_is_ghost(&r.job, r.slot_ms, member_skew) {
            x.ghost.push(json!({ "why": why, "run": describe }));
        } else if f.executions.is_some() && !listed.contains(r.execution.as_str()) && !after_the_list(&r.execution) {
            x.ghost.push(json!({ "why": "a run of an execution steward does not list", "run": describe }));
        }
        // The member that ran it may not be the owner that created the job (a takeover). The
        // offset that matters is the one when the fire was decided, up to FIRE_TO_START_MS
        // before the run began.
        let decided_from = r.started_ms.saturating_sub(FIRE_TO_START_MS);
        let skew_then = |node: &str| f.max_skew(node, decided_from, r.started_ms);
        let skew = skew_then(owner_of(&r.job)).max(f.node_of(&r.member).map(skew_then).unwrap_or(0));
        if r.started_ms + f.early_tolerance_ms + skew < r.slot_ms {
            x.early.push(describe.clone());
        }
        if r.ended_ms.is_none() {
            x.unfinished += 1;
        }
        // Its step ended long before the read, yet steward still says it runs: for an
        // exclusive job that also blocks every later slot.
        if r.ended_ms.is_some_and(|e| e + f.bound_ms < f.read_ms) && f.running.contains(&r.execution) {
            x.stuck.push(describe.clone());
        }
    }
    for (j, s, e) in f.executions.iter().flatten() {
        if let Some(why) = slot_is_ghost(j, *s, 0) {
            x.ghost.push(json!({ "why": why, "execution": e, "job": j, "slot_ms": s }));
        }
    }
    for (job, recs) in &f.fires {
        for r in recs {
            let skew = f.node_of(&r.member).map(|n| f.skew(n, r.slot_ms)).unwrap_or(0);
            if let Some(why) = slot_is_ghost(job, r.slot_ms, skew) {
                x.ghost.push(json!({ "why": why, "record": describe_record(f, job, r) }));
            }
        }
    }
    for ((job, slot), ids) in &execs {
        if ids.len() > 1 {
            x.double.push(json!({ "job": job, "slot_ms": slot, "executions": ids }));
        }
    }
    for j in jobs.values() {
        let runs = runs_of.get(j.id.as_str()).map(Vec::as_slice).unwrap_or(&[]);
        if !j.multiple_executions {
            // Arrival times lie inside the real run (the start is reported after it began, the
            // end before it ended), so overlapping reports are overlapping runs.
            for w in runs.windows(2) {
                if let Some(end) = w[0].ended_ms.filter(|e| *e > w[1].started_ms) {
                    x.overlap.push(json!({ "job": j.id, "first": w[0].execution, "first_ended_ms": end, "second": w[1].execution, "second_started_ms": w[1].started_ms }));
                }
            }
        }
        let Some(created) = j.created_ms else { continue };
        if f.gone.contains(&j.id) && j.delete_invoked_ms.is_none() {
            x.lost_job.push(json!({ "job": j.id, "owner": j.owner, "created_ms": created }));
        }
        match (f.fires.get(&j.id), f.fires_read_ms) {
            (Some(recs), Some(read)) => {
                x.judged_from_records += 1;
                judge_records(f, &outages, j, runs, recs, read, &execs, &run_of, &mut x);
            }
            _ => {
                x.judged_from_runs += 1;
                judge_runs(f, &outages, j, runs, created, &execs, &mut x);
            }
        }
    }
    let bad = [
        &x.double,
        &x.ghost,
        &x.early,
        &x.overlap,
        &x.unrecorded,
        &x.not_run,
        &x.late,
        &x.bad_skip,
        &x.mismatch,
        &x.lost_job,
        &x.stuck,
    ]
    .iter()
    .any(|e| !e.is_empty());
    let summary = format!(
        "{} jobs ({} judged from steward's fire records, {} from runs only), {} runs: {} double fires, {} ghost, {} early, {} overlaps, {} slots without a record, {} slots neither run nor inferred missed, {} late, {} skipped without a run going, {} records disagreeing with the runs, {} jobs lost, {} ended but still running; {} slots of impaired owners{}; {} slots excused by clock faults; recorded {} fired, {} missed, {} skipped; inferred {} missed, {} skipped",
        jobs.len(),
        x.judged_from_records,
        x.judged_from_runs,
        f.runs.len(),
        x.double.count,
        x.ghost.count,
        x.early.count,
        x.overlap.count,
        x.unrecorded.count,
        x.not_run.count,
        x.late.count,
        x.bad_skip.count,
        x.mismatch.count,
        x.lost_job.count,
        x.stuck.count,
        x.impaired.count,
        if f.require_takeover { "" } else { " (not judged: --require-takeover=false)" },
        x.clock_excused,
        x.recorded.get("fired").unwrap_or(&0),
        x.recorded.get("missed").unwrap_or(&0),
        x.recorded.get("skipped").unwrap_or(&0),
        x.inferred_missed,
        x.inferred_skipped,
    );
    Verdict::new(
        "schedule",
        if bad { Validity::Invalid } else { Validity::Valid },
        summary,
        json!({
            "double_fires": x.double, "ghost_fires": x.ghost, "early_fires": x.early, "overlaps": x.overlap,
            "unrecorded": x.unrecorded, "not_run": x.not_run, "late": x.late, "bad_skips": x.bad_skip,
            "record_mismatch": x.mismatch, "lost_jobs": x.lost_job, "still_running": x.stuck,
            "owner_impaired": x.impaired, "clock_excused": x.clock_excused,
            "fired_without_run": x.fired_without_run, "recorded": x.recorded,
            "inferred_missed": x.inferred_missed, "inferred_skipped": x.inferred_skipped,
            "cut_by_delete": x.cut_by_delete,
            "judged_from_records": x.judged_from_records, "judged_from_runs": x.judged_from_runs,
            "unfinished_runs": x.unfinished, "bound_ms": f.bound_ms, "require_takeover": f.require_takeover,
            "majority_outages": outages, "executions_listed": f.executions.as_ref().map(Vec::len),
        }),
    )
}

fn describe_record(f: &Facts, job: &str, r: &FireRecord) -> Value {
    json!({
        "job": job, "slot_ms": r.slot_ms, "outcome": format!("{:?}", r.outcome).to_lowercase(),
        "member": r.member, "node": f.node_of(&r.member), "recorded_ms": r.recorded_ms, "execution": r.execution,
    })
}

/// Judges a job steward still has by its fire records: every due slot from its creation (plus
/// [`SETTLE_MS`] and the offset its owner's clock had then: an owner whose clock ran ahead
/// starts after the slots it thinks are past) to its delete or the read, less the deadline.
#[allow(clippy::too_many_arguments)]
fn judge_records(
    f: &Facts,
    outages: &[(u64, u64)],
    j: &Job,
    runs: &[&Run],
    recs: &[FireRecord],
    read: u64,
    execs: &BTreeMap<(&str, u64), BTreeSet<&str>>,
    run_of: &HashMap<&str, &Run>,
    x: &mut Findings,
) {
    let Some(created) = j.created_ms else { return };
    let interval = j.interval_ms.max(1);
    let bound = f.bound_ms + interval;
    let by_slot: BTreeMap<u64, &FireRecord> = recs.iter().map(|r| (r.slot_ms, r)).collect();
    let fired: Vec<&FireRecord> = recs.iter().filter(|r| r.outcome == Outcome::Fired).collect();
    let start = created + SETTLE_MS + f.skew(&j.owner, created);
    let mut slot = j.first_slot_ms.max(start.div_ceil(interval) * interval);
    loop {
        let deadline = f.deadline(outages, slot, bound);
        if deadline >= read || j.delete_invoked_ms.is_some_and(|d| slot >= d) {
            break;
        }
        let mut report = |kind: &mut Examples, v: Value| {
            if !f.require_takeover && f.impaired_during(&j.owner, slot.saturating_sub(2_000), deadline) {
                x.impaired.push(v);
            } else {
                kind.push(v);
            }
        };
        let ids = execs.get(&(j.id.as_str(), slot));
        let here: Vec<&&Run> = runs.iter().filter(|r| r.slot_ms == slot).collect();
        let Some(r) = by_slot.get(&slot) else {
            let before = by_slot.range(..slot).next_back().map(|(_, r)| describe_record(f, &j.id, r));
            let after = by_slot.range(slot..).next().map(|(_, r)| describe_record(f, &j.id, r));
            report(
                &mut x.unrecorded,
                json!({ "job": j.id, "owner": j.owner, "slot_ms": slot, "executions": ids, "record_before": before, "record_after": after }),
            );
            slot += interval;
            continue;
        };
        let outcome = match r.outcome {
            Outcome::Fired => "fired",
            Outcome::Missed => "missed",
            Outcome::Skipped => "skipped",
        };
        *x.recorded.entry(outcome).or_default() += 1;
        let describe = describe_record(f, &j.id, r);
        match (r.outcome, &r.execution) {
            (Outcome::Fired, None) => {
                x.mismatch.push(json!({ "why": "fired without an execution", "record": describe }))
            }
            (Outcome::Fired, Some(e)) => {
                // The sink's runs and steward's list name this execution and no other (a
                // second one is also a double fire).
                if ids.is_some_and(|ids| ids.iter().any(|i| i != e)) {
                    x.mismatch.push(
                        json!({ "why": "another execution for a fired slot", "record": describe, "executions": ids }),
                    );
                }
                if here.is_empty() {
                    x.fired_without_run.push(json!({ "record": describe, "status": f.statuses.get(e) }));
                }
            }
            (_, _) => {
                if ids.is_some_and(|ids| !ids.is_empty()) {
                    x.mismatch.push(json!({ "why": "an execution for a slot recorded without one", "record": describe, "executions": ids }));
                }
            }
        }
        if r.outcome == Outcome::Skipped {
            if j.multiple_executions {
                x.bad_skip.push(json!({ "why": "skipped, but the job may run concurrently", "record": describe }));
            } else if !run_going(f, outages, j, &fired, run_of, r, bound) {
                x.bad_skip.push(json!({ "why": "skipped while no run of the job was going", "record": describe }));
            }
        }
        // Decided late? `recorded` is the member's clock: the earliest real time it may mean.
        let node = f.node_of(&r.member);
        let recorded_real = f.earliest_real(node, r.recorded_ms);
        let started_late = !here.is_empty()
            && here.iter().all(|run| {
                let skew = f.node_of(&run.member).map(|n| f.skew(n, run.started_ms)).unwrap_or(0);
                run.started_ms.saturating_sub(skew) > deadline
            });
        if recorded_real > deadline || started_late {
            // A member whose clock was set back sits on its slots until its clock gets there
            // or is restored; so may the one it took the job over from, or its creator.
            let previous = by_slot.range(..slot).next_back().and_then(|(_, p)| f.node_of(&p.member));
            let clocked = [node, previous, Some(j.owner.as_str())]
                .into_iter()
                .flatten()
                .chain(here.iter().filter_map(|run| f.node_of(&run.member)))
                .any(|n| f.clock_fault_during(n, slot, deadline));
            if clocked {
                x.clock_excused += 1;
            } else {
                report(
                    &mut x.late,
                    json!({ "record": describe, "earliest_real_ms": recorded_real, "deadline_ms": deadline, "run_started_ms": here.first().map(|r| r.started_ms) }),
                );
            }
        }
        slot += interval;
    }
}

/// Whether a run of exclusive job `j` may have been going when `skip` was decided: its claim
/// (`jobrun/`) is taken in the fire's own transaction and released when the run's end is
/// committed. A run counts from its fire record (or its reported start) to its reported end
/// plus [`RELEASE_MS`] (the release is a Raft write after the step exits), or up to the
/// deadline after its end when a fault may have held the release up; a fired execution that
/// never reported its end (its member died with it, or it never started) until the job's next
/// fire, which could not have happened while the claim stood.
fn run_going(
    f: &Facts,
    outages: &[(u64, u64)],
    j: &Job,
    fired: &[&FireRecord],
    run_of: &HashMap<&str, &Run>,
    skip: &FireRecord,
    bound: u64,
) -> bool {
    let tol = f.early_tolerance_ms;
    let skip_node = f.node_of(&skip.member);
    // When the skip was decided, on the harness's clock: within the recording member's offset.
    let skew = skip.recorded_ms - f.earliest_real(skip_node, skip.recorded_ms);
    let (lo, hi) = (skip.recorded_ms.saturating_sub(skew + tol), skip.recorded_ms + skew + tol);
    fired.iter().filter(|g| g.slot_ms < skip.slot_ms).any(|g| {
        let run = g.execution.as_deref().and_then(|e| run_of.get(e));
        let claimed = f.earliest_real(f.node_of(&g.member), g.recorded_ms);
        let from = run.map_or(claimed, |r| r.started_ms.min(claimed)).saturating_sub(tol);
        let until = match run.and_then(|r| r.ended_ms) {
            Some(end) if f.any_fault_during(end, hi) => f.deadline(outages, end, bound),
            Some(end) => end + RELEASE_MS,
            None => fired
                .iter()
                .filter(|n| n.slot_ms > g.slot_ms)
                .map(|n| n.recorded_ms + f.skew(f.node_of(&n.member).unwrap_or(&j.owner), n.recorded_ms) + tol)
                .min()
                .unwrap_or(u64::MAX),
        };
        from <= hi && lo <= until
    })
}

/// Judges a job whose records are gone (deleted) or could not be read, from its runs.
fn judge_runs(
    f: &Facts,
    outages: &[(u64, u64)],
    j: &Job,
    runs: &[&Run],
    created: u64,
    execs: &BTreeMap<(&str, u64), BTreeSet<&str>>,
    x: &mut Findings,
) {
    let interval = j.interval_ms.max(1);
    let bound = f.bound_ms + interval;
    let mut slot = j.first_slot_ms.max(created.div_ceil(interval) * interval);
    while j.delete_invoked_ms.is_none_or(|d| slot < d) {
        let deadline = f.deadline(outages, slot, bound);
        if deadline >= f.read_ms {
            break;
        }
        let key = (j.id.as_str(), slot);
        let skew = f.skew(&j.owner, slot);
        let mut report = |kind: &mut Examples, v: Value| {
            if !f.require_takeover && f.impaired_during(&j.owner, slot.saturating_sub(2_000), deadline) {
                x.impaired.push(v);
            } else {
                kind.push(v);
            }
        };
        let here: Vec<&&Run> = runs.iter().filter(|r| r.slot_ms == slot).collect();
        // Without records, a clock fault of the owner (or of a member that ran the job: it may
        // have taken it over) makes the policy unpredictable: the slot is not judged.
        let clocked = || {
            std::iter::once(j.owner.as_str())
                .chain(runs.iter().filter_map(|r| f.node_of(&r.member)))
                .any(|n| f.clock_shadow(n, slot, deadline))
        };
        if execs.contains_key(&key) {
            if !here.is_empty() && here.iter().all(|r| r.started_ms > deadline + skew) {
                if clocked() {
                    x.clock_excused += 1;
                } else {
                    report(&mut x.late, json!({ "job": j.id, "slot_ms": slot, "started_ms": here[0].started_ms }));
                }
            }
        } else if j.delete_invoked_ms.is_some_and(|d| deadline >= d) {
            // The job was deleted before this slot's deadline: its owner (or the member
            // taking it over) had until then to decide the slot, and the delete took the job
            // and its records away first. Nothing can be judged.
            x.cut_by_delete += 1;
        } else {
            match infer_slot(f, j, runs, slot, deadline - slot) {
                Inferred::Skipped => x.inferred_skipped += 1,
                Inferred::Missed => x.inferred_missed += 1,
                Inferred::NotRun if clocked() => x.clock_excused += 1,
                Inferred::NotRun => {
                    let next = runs.iter().filter(|r| r.slot_ms > slot).map(|r| r.started_ms).min();
                    report(
                        &mut x.not_run,
                        json!({ "job": j.id, "owner": j.owner, "slot_ms": slot, "next_run_started_ms": next }),
                    );
                }
            }
        }
        slot += interval;
    }
}

/// The `schedule` workload's records, turned into [`Facts`]. Its ops:
/// - `config` (value: `wall_ms`, `bound_ms`, `early_tolerance_ms`, `require_takeover`,
///   `nodes`, `uuids`): the wall-clock time at that history time, to place the nemesis's
///   records, and each member's uuid;
/// - `create` (invoke value: `id`, `interval_ms`, `multiple_executions`, `wall_ms`; completion
///   value: `wall_ms`; `node`: the owner), `delete` (the same shape);
/// - `run-start` / `run-end` from the sink (value: `job`, `slot_ms`, `member`, `execution`,
///   `wall_ms`, `from`: the node whose address the report came from);
/// - `read` (value: `wall_ms`) and `executions` (value: a list of `{job, slot_ms, id,
///   status}`, or an `info` when no member answered);
/// - `fires-read` (value: `wall_ms`, `uuids`) and one `fires` per job (value: `job`, `found`,
///   `fires`: steward's records `{slot, outcome, member, recorded, execution}`; an `info`
///   when no member answered).
///
/// Member uuids are tied to nodes by the `uuids` maps, the sink's `from`, and the nemesis's
/// rejoin records (`rejoined`, `old_uuid`, `new_uuid`).
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
                learn_uuids(&v["uuids"], &mut f.uuids);
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
                if let (Some(m), Some(n)) = (v["member"].as_str(), v["from"].as_str()) {
                    f.uuids.entry(m.to_string()).or_insert_with(|| n.to_string());
                }
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
            ("fires-read", _) => {
                f.fires_read_ms = Some(wall(v));
                learn_uuids(&v["uuids"], &mut f.uuids);
            }
            ("fires", OpType::Ok) => {
                let Some(job) = v["job"].as_str() else { continue };
                if v["found"] == json!(false) {
                    f.gone.insert(job.to_string());
                    continue;
                }
                let recs = v["fires"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|r| {
                        Some(FireRecord {
                            slot_ms: r["slot"].as_i64()?.max(0) as u64,
                            outcome: match r["outcome"].as_str()? {
                                "fired" => Outcome::Fired,
                                "missed" => Outcome::Missed,
                                "skipped" => Outcome::Skipped,
                                _ => return None,
                            },
                            member: r["member"].as_str().unwrap_or_default().to_string(),
                            recorded_ms: r["recorded"].as_i64().unwrap_or(0).max(0) as u64,
                            execution: match &r["execution"] {
                                Value::Null => None,
                                Value::String(s) => Some(s.clone()),
                                e => Some(e.to_string()),
                            },
                        })
                    })
                    .collect();
                f.fires.insert(job.to_string(), recs);
            }
            ("executions", OpType::Ok) => {
                f.statuses = v
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|e| Some((e["id"].as_str()?.to_string(), e["status"].as_str()?.to_string())))
                    .collect();
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
    // A rejoined member's old and new identities are the same node.
    for op in history.iter().filter(|o| o.workload == "nemesis") {
        let mut found = Vec::new();
        rejoins(&op.value, &mut found);
        for (node, uuid) in found {
            f.uuids.entry(uuid).or_insert(node);
        }
    }
    f.nodes = nodes;
    f
}

/// Adds a `{uuid: node}` map to `uuids`.
fn learn_uuids(v: &Value, uuids: &mut HashMap<String, String>) {
    for (u, n) in v.as_object().into_iter().flatten() {
        if let Some(n) = n.as_str() {
            uuids.entry(u.clone()).or_insert_with(|| n.to_string());
        }
    }
}

/// Every (node, uuid) a nemesis record of a rejoin names (`{rejoined, old_uuid, new_uuid}`,
/// at any depth: the final heal nests them).
fn rejoins(v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            if let Some(node) = m.get("rejoined").and_then(Value::as_str) {
                for k in ["old_uuid", "new_uuid"] {
                    if let Some(u) = m.get(k).and_then(Value::as_str) {
                        out.push((node.to_string(), u.to_string()));
                    }
                }
            }
            m.values().for_each(|x| rejoins(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| rejoins(x, out)),
        _ => {}
    }
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
    // A step's window opens when it was invoked: its `info` comes once the fault is in place,
    // which can be seconds later (a leave that times out), and the fault acts from the start.
    let mut invoked: HashMap<u64, u64> = HashMap::new();
    let mut out = Vec::new();
    for op in history.iter().filter(|o| o.workload == "nemesis") {
        let step = op.value["step"].as_u64().unwrap_or(u64::MAX);
        if op.kind == OpType::Invoke {
            if op.f == "start" {
                invoked.insert(step, at(op));
            }
            continue;
        }
        if op.kind != OpType::Info {
            continue;
        }
        let package = op.value["package"].as_str().unwrap_or_default().to_string();
        match op.f.as_str() {
            "start" => {
                let from = invoked.get(&step).copied().unwrap_or_else(|| at(op)).min(at(op));
                started.insert((step, package), (from, &op.value["done"]));
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
                        stopped_ms: Some(at(op)),
                    });
                }
            }
            _ => {}
        }
    }
    // A member is down from its kill (whatever step killed it) or its own exit until it
    // starts again: a step may leave it down for longer than the step (a power cut whose
    // remount failed; an exit of a disk fault noticed after the step stopped).
    let mut down: HashMap<String, u64> = HashMap::new();
    for op in history.iter().filter(|o| o.workload == "cluster" && o.process == Process::Named("monitor".into())) {
        let Some(node) = op.node.clone() else { continue };
        match op.f.as_str() {
            "killed" | "exit" => {
                down.entry(node).or_insert(at(op));
            }
            "start" => {
                if let Some(from) = down.remove(&node) {
                    out.push(Impairment {
                        node,
                        from_ms: from,
                        to_ms: Some(at(op)),
                        stopped_ms: Some(at(op)),
                        skew_ms: 0,
                    });
                }
            }
            _ => {}
        }
    }
    for (node, from) in down {
        out.push(Impairment { node, from_ms: from, to_ms: None, stopped_ms: None, skew_ms: 0 });
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
                stopped_ms: None,
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

    fn imp(node: &str, from: u64, to: u64, skew: u64) -> Impairment {
        Impairment { node: node.into(), from_ms: from, to_ms: Some(to), stopped_ms: Some(to), skew_ms: skew }
    }

    fn rec(slot: u64, outcome: Outcome, member: &str, recorded: u64, exec: Option<&str>) -> FireRecord {
        FireRecord {
            slot_ms: slot,
            outcome,
            member: member.into(),
            recorded_ms: recorded,
            execution: exec.map(String::from),
        }
    }

    /// A job created at 0 whose records were read at `read`; members A (n1) and B (n2).
    fn recorded_facts(runs: Vec<Run>, recs: Vec<FireRecord>, read: u64) -> Facts {
        let mut f = facts_of(runs);
        f.jobs[0].created_ms = Some(0);
        f.read_ms = read;
        f.fires_read_ms = Some(read);
        f.fires.insert("j1".into(), recs);
        f.uuids = [("A", "n1"), ("B", "n2")].iter().map(|(u, n)| (u.to_string(), n.to_string())).collect();
        f.nodes = vec!["n1".into(), "n2".into(), "n3".into()];
        f.require_takeover = true;
        f
    }

    #[test]
    fn a_slot_recorded_missed_is_accepted_and_a_slot_without_a_record_is_rejected() {
        // Bound 1.5 s + period 1 s: slots 1000, 2000 and 3000 are due before the read at 6000.
        let runs = vec![run(1000, "A", "1", 1010), run(3000, "B", "3", 3010)];
        let recs = vec![
            rec(1000, Outcome::Fired, "A", 1003, Some("1")),
            rec(2000, Outcome::Missed, "B", 3001, None),
            rec(3000, Outcome::Fired, "B", 3002, Some("3")),
        ];
        let mut f = recorded_facts(runs, recs, 6000);
        f.jobs[0].multiple_executions = true;
        let v = check(&f);
        assert_eq!(v.valid, Validity::Valid, "{}", v.details);
        assert_eq!(v.details["judged_from_records"], 1);
        assert_eq!(v.details["recorded"]["missed"], 1);
        // Without its record, slot 2000 is neither fired nor recorded missed.
        f.fires.get_mut("j1").unwrap().remove(1);
        let v = check(&f);
        assert_eq!(v.valid, Validity::Invalid);
        assert_eq!(v.details["unrecorded"]["count"], 1, "{}", v.details);
        assert_eq!(v.details["unrecorded"]["examples"][0]["slot_ms"], 2000);
        // Nor may a slot recorded missed have run.
        let mut f = recorded_facts(
            vec![run(1000, "A", "1", 1010), run(2000, "A", "2", 2010), run(3000, "B", "3", 3010)],
            vec![
                rec(1000, Outcome::Fired, "A", 1003, Some("1")),
                rec(2000, Outcome::Missed, "A", 2003, None),
                rec(3000, Outcome::Fired, "B", 3002, Some("3")),
            ],
            6000,
        );
        f.jobs[0].multiple_executions = true;
        assert_eq!(check(&f).details["record_mismatch"]["count"], 1);
        // A job that was not deleted but is gone is lost; a deleted one is judged from runs.
        f.fires.clear();
        f.gone.insert("j1".into());
        let v = check(&f);
        assert_eq!(v.details["lost_jobs"]["count"], 1, "{}", v.details);
        assert_eq!(v.details["judged_from_runs"], 1);
    }

    #[test]
    fn a_slot_fired_twice_is_rejected() {
        let runs = vec![run(1000, "A", "1", 1010), run(2000, "A", "2", 2005), run(2000, "B", "7", 2300)];
        let recs = vec![
            rec(1000, Outcome::Fired, "A", 1003, Some("1")),
            rec(2000, Outcome::Fired, "A", 2002, Some("2")),
            rec(3000, Outcome::Missed, "A", 3002, None),
        ];
        let v = check(&recorded_facts(runs, recs.clone(), 6000));
        assert_eq!(v.valid, Validity::Invalid);
        assert_eq!(v.details["double_fires"]["count"], 1, "{}", v.details);
        assert_eq!(v.details["record_mismatch"]["count"], 1, "{}", v.details);
        // Also when only steward's list has the second execution.
        let mut f = recorded_facts(vec![run(1000, "A", "1", 1010), run(2000, "A", "2", 2005)], recs, 6000);
        f.executions = Some(
            [("1", 1000), ("2", 2000), ("9", 2000)].iter().map(|(e, s)| ("j1".into(), *s, e.to_string())).collect(),
        );
        let v = check(&f);
        assert_eq!(v.details["double_fires"]["count"], 1, "{}", v.details);
        assert_eq!(v.valid, Validity::Invalid);
    }

    #[test]
    fn a_skip_is_accepted_only_while_a_run_of_the_exclusive_job_was_going() {
        // The run of slot 1000 lasts until 2400: slot 2000 found it going; slot 3000 did not
        // (its end was released by 2900).
        let mut runs = vec![run(1000, "A", "1", 1010), run(4000, "A", "4", 4010)];
        runs[0].ended_ms = Some(2400);
        let recs = vec![
            rec(1000, Outcome::Fired, "A", 1003, Some("1")),
            rec(2000, Outcome::Skipped, "A", 2003, None),
            rec(3000, Outcome::Skipped, "A", 3003, None),
            rec(4000, Outcome::Fired, "A", 4003, Some("4")),
        ];
        let f = recorded_facts(runs, recs, 7000);
        let v = check(&f);
        assert_eq!(v.valid, Validity::Invalid);
        assert_eq!(v.details["bad_skips"]["count"], 1, "{}", v.details);
        assert_eq!(v.details["bad_skips"]["examples"][0]["record"]["slot_ms"], 3000);
        // A job whose runs may overlap never skips.
        let mut f = f;
        f.fires.get_mut("j1").unwrap().remove(2);
        f.fires.get_mut("j1").unwrap().insert(2, rec(3000, Outcome::Missed, "A", 3003, None));
        assert_eq!(check(&f).valid, Validity::Valid, "{}", check(&f).details);
        f.jobs[0].multiple_executions = true;
        assert_eq!(check(&f).details["bad_skips"]["count"], 1);
        // A fired execution that never reported (its member died with it) holds the claim
        // until the job's next fire.
        let recs = vec![
            rec(1000, Outcome::Fired, "A", 1003, Some("1")),
            rec(2000, Outcome::Skipped, "B", 8000, None),
            rec(3000, Outcome::Fired, "B", 8001, Some("3")),
        ];
        let mut f = recorded_facts(vec![run(3000, "B", "3", 8010)], recs, 20_000);
        f.impaired.push(imp("n1", 1100, 4000, 0));
        f.impaired.push(imp("n1", 1100, 4000, 0));
        f.bound_ms = 7000;
        assert_eq!(check(&f).details["bad_skips"]["count"], 0, "{}", check(&f).details);
    }

    #[test]
    fn a_slot_recorded_too_late_is_rejected_unless_a_majority_was_down_or_a_clock_explains_it() {
        // Deadline of slot 2000: 2000 + 1.5 s + 1 s = 4500.
        let recs = |at: u64| {
            vec![
                rec(1000, Outcome::Fired, "A", 1003, Some("1")),
                rec(2000, Outcome::Missed, "B", at, None),
                rec(3000, Outcome::Missed, "B", at, None),
            ]
        };
        let mut f = recorded_facts(vec![run(1000, "A", "1", 1010)], recs(4400), 6000);
        f.jobs[0].multiple_executions = true;
        assert_eq!(check(&f).valid, Validity::Valid, "{}", check(&f).details);
        f.fires.insert("j1".into(), recs(4600));
        let v = check(&f);
        assert_eq!(v.valid, Validity::Invalid);
        assert_eq!(v.details["late"]["count"], 1, "only slot 2000: {}", v.details);
        // Without takeover required, a late slot of an owner the nemesis acted on is counted.
        f.impaired.push(imp("n1", 1500, 2200, 0));
        f.require_takeover = false;
        assert_eq!(check(&f).details["owner_impaired"]["count"], 1, "{}", check(&f).details);
        f.require_takeover = true;
        assert_eq!(check(&f).details["late"]["count"], 1);
        // A majority (two of three) down until 3000: nothing could be decided; the deadline
        // is the bound after the outage.
        f.impaired.push(imp("n3", 1800, 3000, 0));
        let v = check(&f);
        assert_eq!(v.valid, Validity::Valid, "{}", v.details);
        assert_eq!(v.details["majority_outages"][0], json!([1800, 2200]));
        // B's clock ran 2 s ahead when it recorded 4600: it was 2600 on the harness's clock.
        f.impaired.clear();
        f.impaired.push(imp("n2", 4000, 5000, 2000));
        assert_eq!(check(&f).valid, Validity::Valid, "{}", check(&f).details);
        // B's clock was set back from 1500 to 2500: it sat on the slots and recorded them
        // once restored, at 9000. A property of clock faults, not judged late.
        f.impaired.clear();
        f.impaired.push(imp("n2", 1500, 2500, 1000));
        f.fires.insert("j1".into(), recs(9000));
        f.fires_read_ms = Some(8400);
        f.fires
            .get_mut("j1")
            .unwrap()
            .extend([rec(4000, Outcome::Missed, "B", 9000, None), rec(5000, Outcome::Missed, "B", 5100, None)]);
        let v = check(&f);
        assert_eq!(v.valid, Validity::Valid, "{}", v.details);
        assert_eq!(v.details["clock_excused"], 3, "slots 2000 to 4000: {}", v.details);
        // Slot 5000 came after the clock was restored (and its margin): recorded at 9000, late.
        f.fires.get_mut("j1").unwrap()[4].recorded_ms = 9000;
        assert_eq!(check(&f).details["late"]["count"], 1);
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
        f.impaired.push(imp("n1", 1500, 9000, 0));
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
        // One created after the list was read (an id above every listed one) is not.
        f.runs.push(run(4000, "A", "10", 4000));
        assert_eq!(check(&f).details["ghost_fires"]["count"], 1, "{}", check(&f).details);
    }

    #[test]
    fn slots_of_a_job_deleted_before_their_deadline_are_not_judged() {
        // The owner ran slots 1000 and 2000, then went down; slots 3000 and 4000 came due,
        // and the job was deleted at 4200, before either slot's deadline (bound 1500 + the
        // period): nobody could still decide them, and their records went with the job.
        let mut f = facts_of(vec![run(1000, "A", "1", 1000), run(2000, "A", "2", 2000)]);
        f.read_ms = 9000;
        f.jobs[0].delete_invoked_ms = Some(4200);
        f.jobs[0].deleted_ms = Some(4210);
        f.gone.insert("j1".into());
        let v = check(&f);
        assert_eq!(v.details["not_run"]["count"], 0, "{}", v.details);
        assert_eq!(v.details["cut_by_delete"], 2, "{}", v.details);
        // Deleted after slot 3000's deadline: that slot was the owner's to decide.
        f.jobs[0].delete_invoked_ms = Some(5600);
        f.jobs[0].deleted_ms = Some(5610);
        let v = check(&f);
        assert_eq!(v.details["not_run"]["count"], 1, "{}", v.details);
        assert_eq!(v.details["not_run"]["examples"][0]["slot_ms"], 3000, "{}", v.details);
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
        f.impaired.push(imp("n1", 1200, 1800, 10_000));
        let v = check(&f);
        assert_eq!(v.details["ghost_fires"]["count"], 0, "{}", v.details);
        assert_eq!(v.details["early_fires"]["count"], 0, "{}", v.details);

        // The creator's clock was 2 s behind until 1000 (reset then; libfaketime may see it up
        // to CLOCK_MARGIN_MS later); the job, created at 2900 (first slot 4000), fired slot 2000
        // at 3000: its creator stamped the create at about 1900. Not a ghost; it would be with
        // a create long after the reset.
        for (created, ghosts) in [(2_900, 0), (1_000 + CLOCK_MARGIN_MS + 1_500, 1)] {
            let mut f = facts_of(vec![run(2000, "A", "2", 3000)]);
            f.jobs[0].interval_ms = 1000;
            f.jobs[0].first_slot_ms = 4000;
            f.jobs[0].created_ms = Some(created);
            f.read_ms = 5000;
            f.impaired.push(imp("n1", 500, 1000, 2000));
            let v = check(&f);
            assert_eq!(v.details["ghost_fires"]["count"], ghosts, "created {created}: {}", v.details);
        }

        // The owner's clock ran 4 s ahead: it fired slot 5000 at 1000.
        let mut f = facts_of(vec![run(1000, "A", "1", 1000), run(5000, "A", "5", 1001)]);
        f.read_ms = 2000;
        assert_eq!(check(&f).details["early_fires"]["count"], 1);
        f.impaired.push(imp("n1", 900, 1500, 4000));
        assert_eq!(check(&f).details["early_fires"]["count"], 0);

        // The owner's clock ran 128 s ahead from 1000 to 1500, when it fired slot 130000; the
        // run began at 4000, waiting for an execution slot: excused. One beginning more than
        // FIRE_TO_START_MS after the offset was gone is not.
        for (start, early) in [(4_000, 0), (1_500 + CLOCK_MARGIN_MS + FIRE_TO_START_MS + 1_000, 1)] {
            let mut f = facts_of(vec![run(1000, "A", "1", 1000), run(130_000, "A", "130", start)]);
            f.read_ms = start + 1_000;
            f.impaired.push(imp("n1", 1000, 1500, 128_000));
            assert_eq!(check(&f).details["early_fires"]["count"], early, "start {start}: {}", check(&f).details);
        }
    }

    #[test]
    fn members_are_down_from_their_kill_or_exit_to_their_start_and_steps_act_from_their_invocation() {
        let at = |kind, p: Process, w: &str, f: &str, node: Option<&str>, v: Value, ms: u64| {
            let mut op = Op::new(kind, p, w, f).value(v);
            op.node = node.map(String::from);
            op.time = ms * 1_000_000;
            op
        };
        let monitor = || Process::Named("monitor".into());
        let h = vec![
            at(OpType::Info, monitor(), "cluster", "killed", Some("n3"), json!({}), 1000),
            at(OpType::Info, monitor(), "cluster", "exit", Some("n4"), json!({}), 2000),
            at(OpType::Info, monitor(), "cluster", "start", Some("n3"), json!({}), 9000),
            at(OpType::Invoke, Process::nemesis(), "nemesis", "start", None, json!({ "step": 4 }), 3000),
            at(
                OpType::Info,
                Process::nemesis(),
                "nemesis",
                "start",
                None,
                json!({ "step": 4, "package": "member", "done": { "left": "n5" } }),
                8000,
            ),
            at(
                OpType::Info,
                Process::nemesis(),
                "nemesis",
                "stop",
                None,
                json!({ "step": 4, "package": "member" }),
                20_000,
            ),
        ];
        let nodes: Vec<String> = (1..=5).map(|i| format!("n{i}")).collect();
        let mut imp: Vec<(String, u64, Option<u64>)> =
            impairments(&h, 0, &nodes).into_iter().map(|i| (i.node, i.from_ms, i.to_ms)).collect();
        imp.sort();
        assert_eq!(imp, vec![("n3".into(), 1000, Some(9000)), ("n4".into(), 2000, None), ("n5".into(), 3000, None)]);
        // n3, n4 and n5 down together: a majority outage from the leave's invocation.
        let f = Facts {
            nodes,
            impaired: impairments(&h, 0, &(1..=5).map(|i| format!("n{i}")).collect::<Vec<_>>()),
            ..Facts::default()
        };
        assert_eq!(f.outages(), vec![(3000, 9000)]);
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
            json!({ "step": 1, "package": "member", "done": { "rejoined": "n1", "old_uuid": "u1", "new_uuid": "u1b" } }),
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
            json!([{ "job": "j", "slot_ms": w0 + 2000, "id": "5", "status": "succeeded" }]),
            20_100,
        );
        push(
            OpType::Info,
            Process::Named("harness".into()),
            "schedule",
            "fires-read",
            None,
            json!({ "wall_ms": w0 + 20_200, "uuids": { "u2": "n2" } }),
            20_200,
        );
        push(
            OpType::Ok,
            Process::Named("harness".into()),
            "schedule",
            "fires",
            Some("n1"),
            json!({ "job": "j", "found": true, "wall_ms": w0 + 20_300, "fires": [
                { "slot": w0 + 2000, "outcome": "fired", "member": "u2", "recorded": w0 + 2001, "execution": 5 },
                { "slot": w0 + 4000, "outcome": "missed", "member": "u1b", "recorded": w0 + 9500, "execution": null },
            ] }),
            20_300,
        );
        push(
            OpType::Ok,
            Process::Named("harness".into()),
            "schedule",
            "fires",
            Some("n1"),
            json!({ "job": "gone", "found": false, "fires": [], "wall_ms": w0 + 20_400 }),
            20_400,
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
        assert_eq!(f.statuses["5"], "succeeded");
        assert_eq!(f.fires_read_ms, Some(w0 + 20_200));
        let recs = &f.fires["j"];
        assert_eq!(recs.len(), 2);
        assert_eq!((recs[0].outcome, recs[0].execution.as_deref()), (Outcome::Fired, Some("5")));
        assert_eq!(
            (recs[1].outcome, recs[1].recorded_ms, recs[1].execution.as_deref()),
            (Outcome::Missed, w0 + 9500, None)
        );
        assert!(f.gone.contains("gone"));
        // Identities: from the fires-read map, and both of n1's from its rejoin.
        assert_eq!((f.node_of("u2"), f.node_of("u1"), f.node_of("u1b")), (Some("n2"), Some("n1"), Some("n1")));
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
