//! The schedule checker, ready for the job engine's schedules (issue 3/4). There is no
//! schedule workload yet: when there is, jobs on 1–2 s schedules report each run to a sink in
//! the harness (job, slot, member, execution id, arrival time on the harness clock), the
//! workload turns those reports into [`Run`]s and the job creates and deletes of its history
//! into [`Job`]s, and calls [`check`].
//!
//! Invariants (after Jepsen's Chronos checker, plus fencing-era scheduler bugs):
//! - **no double fire**: at most one run per (job, slot);
//! - **no ghost fire**: every run belongs to a created job and a slot of its schedule, not
//!   before the job was created nor after it was deleted;
//! - **no early fire**: a run never starts before its slot (less a tolerance for the clock
//!   difference between the member and the harness);
//! - **no overlap** for jobs with `multipleExecutions: false`;
//! - **exactly once or recorded missed**: every slot due long enough before the final read
//!   (slot + takeover bound) has a run that started within the bound, or steward recorded the
//!   slot as missed.
//!
//! Times are milliseconds on one clock: slots are wall-clock instants of the schedule; run
//! times are the harness's own wall clock at arrival, never a member's (faked) clock.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;

use super::{Examples, Validity, Verdict};

/// A scheduled job as the workload created it.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: String,
    /// The first slot and the period: slots are `first_slot_ms + k * interval_ms`.
    pub first_slot_ms: u64,
    pub interval_ms: u64,
    /// When its create was acknowledged.
    pub created_ms: u64,
    /// When its delete was invoked, if it was.
    pub deleted_ms: Option<u64>,
    pub multiple_executions: bool,
}

/// One run reported to the sink.
#[derive(Debug, Clone)]
pub struct Run {
    pub job: String,
    pub slot_ms: u64,
    pub member: String,
    pub execution: String,
    pub started_ms: u64,
    pub ended_ms: Option<u64>,
}

/// Everything the checker needs.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub jobs: Vec<Job>,
    pub runs: Vec<Run>,
    /// Slots steward recorded as missed, per job.
    pub missed: Vec<(String, u64)>,
    /// When the final read of the sink happened.
    pub read_ms: u64,
    /// How late a run may start after its slot (takeover after a failover included).
    pub bound_ms: u64,
    /// How early a run may seem to start, for clock differences between member and harness.
    pub early_tolerance_ms: u64,
}

pub fn check(f: &Facts) -> Verdict {
    let jobs: BTreeMap<&str, &Job> = f.jobs.iter().map(|j| (j.id.as_str(), j)).collect();
    let missed: BTreeSet<(&str, u64)> = f.missed.iter().map(|(j, s)| (j.as_str(), *s)).collect();
    let mut by_slot: BTreeMap<(&str, u64), Vec<&Run>> = BTreeMap::new();
    let mut double = Examples::default();
    let mut ghost = Examples::default();
    let mut early = Examples::default();
    let mut overlap = Examples::default();
    let mut not_run = Examples::default();
    let mut late = Examples::default();

    for r in &f.runs {
        by_slot.entry((r.job.as_str(), r.slot_ms)).or_default().push(r);
        let describe = json!({ "job": r.job, "slot_ms": r.slot_ms, "member": r.member, "execution": r.execution, "started_ms": r.started_ms });
        match jobs.get(r.job.as_str()) {
            None => ghost.push(json!({ "why": "no such job", "run": describe })),
            Some(j) => {
                let on_schedule = r.slot_ms >= j.first_slot_ms && (r.slot_ms - j.first_slot_ms) % j.interval_ms == 0;
                if !on_schedule || r.slot_ms < j.created_ms.saturating_sub(j.interval_ms) {
                    ghost.push(json!({ "why": "not a slot of the job's schedule", "run": describe }));
                } else if j.deleted_ms.is_some_and(|d| r.started_ms > d + f.bound_ms) {
                    ghost.push(json!({ "why": "ran after the job was deleted", "run": describe }));
                }
                if r.started_ms + f.early_tolerance_ms < r.slot_ms {
                    early.push(describe.clone());
                }
            }
        }
    }
    for ((job, slot), runs) in &by_slot {
        if runs.len() > 1 {
            double.push(json!({
                "job": job, "slot_ms": slot,
                "runs": runs.iter().map(|r| json!({ "member": r.member, "execution": r.execution, "started_ms": r.started_ms })).collect::<Vec<_>>(),
            }));
        }
    }
    for j in jobs.values().filter(|j| !j.multiple_executions) {
        let mut runs: Vec<&Run> = f.runs.iter().filter(|r| r.job == j.id).collect();
        runs.sort_by_key(|r| r.started_ms);
        for w in runs.windows(2) {
            if let Some(end) = w[0].ended_ms.or(Some(u64::MAX)).filter(|e| *e > w[1].started_ms) {
                overlap.push(json!({ "job": j.id, "first": w[0].execution, "first_ended_ms": end, "second": w[1].execution, "second_started_ms": w[1].started_ms }));
            }
        }
        // Every slot due long enough before the read ran once, in time, or was recorded missed.
        let mut slot = j.first_slot_ms;
        while slot + f.bound_ms < f.read_ms && j.deleted_ms.is_none_or(|d| slot < d) {
            if slot >= j.created_ms {
                match by_slot.get(&(j.id.as_str(), slot)) {
                    None if !missed.contains(&(j.id.as_str(), slot)) => {
                        not_run.push(json!({ "job": j.id, "slot_ms": slot }))
                    }
                    Some(runs) if runs.iter().all(|r| r.started_ms > slot + f.bound_ms) => {
                        late.push(json!({ "job": j.id, "slot_ms": slot, "started_ms": runs[0].started_ms }))
                    }
                    _ => {}
                }
            }
            slot += j.interval_ms.max(1);
        }
    }
    let bad = [&double, &ghost, &early, &overlap, &not_run, &late].iter().any(|x| !x.is_empty());
    let summary = format!(
        "{} jobs, {} runs: {} double fires, {} ghost, {} early, {} overlaps, {} slots neither run nor recorded missed, {} late",
        jobs.len(),
        f.runs.len(),
        double.count,
        ghost.count,
        early.count,
        overlap.count,
        not_run.count,
        late.count
    );
    Verdict::new(
        "schedule",
        if bad { Validity::Invalid } else { Validity::Valid },
        summary,
        json!({ "double_fires": double, "ghost_fires": ghost, "early_fires": early, "overlaps": overlap, "not_run": not_run, "late": late }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> Job {
        Job {
            id: "j1".into(),
            first_slot_ms: 1000,
            interval_ms: 1000,
            created_ms: 500,
            deleted_ms: None,
            multiple_executions: false,
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

    fn facts(runs: Vec<Run>) -> Facts {
        Facts { jobs: vec![job()], runs, missed: vec![], read_ms: 5000, bound_ms: 1500, early_tolerance_ms: 50 }
    }

    #[test]
    fn every_slot_once_is_valid_and_a_recorded_miss_is_allowed() {
        let mut f = facts(vec![run(1000, "A", "1", 1010), run(2000, "A", "2", 2005), run(3000, "B", "3", 3400)]);
        assert_eq!(check(&f).valid, Validity::Valid, "{}", check(&f).details);
        f.runs.remove(1);
        assert_eq!(check(&f).valid, Validity::Invalid, "a slot neither run nor recorded missed");
        f.missed.push(("j1".into(), 2000));
        assert_eq!(check(&f).valid, Validity::Valid);
    }

    #[test]
    fn a_double_fire_is_rejected() {
        let f = facts(vec![
            run(1000, "A", "1", 1010),
            run(2000, "A", "2", 2005),
            run(2000, "B", "7", 2300),
            run(3000, "B", "3", 3010),
        ]);
        let v = check(&f);
        assert_eq!(v.valid, Validity::Invalid);
        assert_eq!(v.details["double_fires"]["count"], 1);
        assert_eq!(v.details["overlaps"]["count"], 0, "2005+100 ends before 2300");
    }

    #[test]
    fn early_ghost_and_overlapping_runs_are_rejected() {
        let mut runs = vec![run(1000, "A", "1", 900), run(2000, "A", "2", 2005), run(3000, "A", "3", 3010)];
        runs[1].ended_ms = Some(3500);
        runs.push(Run { job: "nope".into(), ..run(1000, "A", "9", 1000) });
        let v = check(&facts(runs));
        assert_eq!(v.details["early_fires"]["count"], 1);
        assert_eq!(v.details["overlaps"]["count"], 1);
        assert_eq!(v.details["ghost_fires"]["count"], 1);
        assert_eq!(v.valid, Validity::Invalid);
    }
}
