//! The scheduled fire: one guarded transaction per slot, many slots per log entry.
//!
//! A slot's fate is decided by guards evaluated when the entry is applied, never by a check
//! before proposing (ARCHITECTURE.md, "Scheduled fire"):
//!
//! - `owner/{uuid}` still holds exactly the owner record this member scheduled under (member and
//!   epoch): a stale owner — one that lost the job while paused or partitioned — fails here;
//! - `fires/{uuid}/{slot}` is absent: a second member, a replayed timer or a retried proposal
//!   fails here, so a slot is recorded at most once;
//! - for `multipleExecutions: false`, `jobrun/{uuid}` is absent: otherwise the slot is recorded
//!   as skipped (the nested failure branch), never run beside the running execution.
//!
//! The fire record and the execution (id from the state machine's sequence) commit together,
//! before any process starts. A batch carries each slot as a nested transaction, so one slot's
//! failed guard does not sink the others.

use steward_storage::{Guard, Op, Txn, TxnResult};

use super::records::{
    fire_exec_key, fire_key, job_run_key, owner_key, running_slot_key, ExecStatus, ExecutionRecord, FireOutcome,
    FireRecord, Trigger, EXECS, EXEC_SEQ,
};
use crate::codec;

/// What a member knows of a job it schedules.
#[derive(Debug, Clone)]
pub struct ScheduledJob {
    pub uuid: String,
    pub project: String,
    pub name: String,
    pub group: String,
    /// The stored owner record this member fires under, byte for byte.
    pub owner_record: Vec<u8>,
    pub multiple_executions: bool,
    pub loglevel: String,
    /// The option values a scheduled run gets (defaults).
    pub options: std::collections::BTreeMap<String, String>,
    /// The user scheduled runs are attributed to.
    pub user: String,
}

/// What to do with a due slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotAction {
    Fire,
    RecordMissed,
}

/// One slot of one job, due now.
#[derive(Debug, Clone)]
pub struct DueSlot<'a> {
    pub job: &'a ScheduledJob,
    pub slot_ms: i64,
    pub action: SlotAction,
    /// The member the remote execution policy chose to run it; `None` for the firing member.
    pub runs_on: Option<String>,
}

/// What became of a slot once its batch was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotResult {
    /// An execution was created with this id.
    Fired(u64),
    Skipped,
    Missed,
    /// The slot was already recorded (by this member earlier, or another member).
    AlreadyRecorded,
    /// This member no longer owns the job (at the epoch it scheduled under).
    NotOwner,
}

/// The execution a fire creates. `runner` is the incarnation of this member's runner: the
/// owner runs its own fires, so the fire's commit is also the runner's claim (no second write
/// before the process starts); `None` leaves the claim to the runner.
///
/// A slot decided ahead of its time (a burst, see the scheduler) is created `scheduled`: its
/// runner starts it at the slot, never before.
pub fn scheduled_execution(
    job: &ScheduledJob,
    me: &str,
    runner: Option<&str>,
    slot_ms: i64,
    now_ms: i64,
) -> ExecutionRecord {
    ExecutionRecord {
        project: job.project.clone(),
        job_uuid: job.uuid.clone(),
        job_name: job.name.clone(),
        job_group: job.group.clone(),
        status: if slot_ms > now_ms { ExecStatus::Scheduled } else { ExecStatus::Running },
        member: me.to_string(),
        user: job.user.clone(),
        trigger: Trigger::Schedule,
        scheduled_ms: Some(slot_ms),
        created_ms: now_ms,
        started_ms: runner.map(|_| now_ms.max(slot_ms)),
        ended_ms: None,
        options: job.options.clone(),
        arg_string: String::new(),
        loglevel: job.loglevel.clone(),
        attempt: 1,
        retry_of: None,
        exclusive: !job.multiple_executions,
        running_index: running_slot_key(&job.project, &job.uuid, slot_ms),
        abort: None,
        runner: runner.map(str::to_string),
        message: None,
    }
}

/// The operation that creates `exec` (its id allocated by the state machine) with its indexes:
/// its running index, `extra` (e.g. the slot's `firexec/` key), and `jobrun/` when the job
/// forbids concurrent runs. Each index holds the new id.
pub fn create_execution_op(exec: &ExecutionRecord, extra_indexes: Vec<String>) -> Op {
    let mut indexes = extra_indexes;
    indexes.push(exec.running_index.clone());
    if exec.exclusive {
        indexes.push(job_run_key(&exec.job_uuid));
    }
    Op::PutSequenced { counter: EXEC_SEQ.into(), prefix: EXECS.into(), value: codec::encode(exec), indexes }
}

fn fire_record(outcome: FireOutcome, me: &str, now_ms: i64) -> Vec<u8> {
    codec::encode(&FireRecord { outcome, member: me.to_string(), recorded_ms: now_ms })
}

/// One log entry deciding every slot of `slots`; `runner` as in [`scheduled_execution`].
pub fn fire_batch(me: &str, runner: Option<&str>, slots: &[DueSlot<'_>], now_ms: i64) -> Txn {
    let ops = slots
        .iter()
        .map(|s| {
            let job = s.job;
            let fire = fire_key(&job.uuid, s.slot_ms);
            let guards = vec![
                Guard::ValueEquals { key: owner_key(&job.uuid), value: job.owner_record.clone() },
                Guard::Absent(fire.clone()),
            ];
            let success = match s.action {
                SlotAction::RecordMissed => {
                    vec![Op::Put { key: fire, value: fire_record(FireOutcome::Missed, me, now_ms) }]
                }
                SlotAction::Fire => {
                    // Run elsewhere, the execution is claimed by the runner of that member.
                    let exec = match s.runs_on.as_deref().filter(|m| *m != me) {
                        Some(other) => scheduled_execution(job, other, None, s.slot_ms, now_ms),
                        None => scheduled_execution(job, me, runner, s.slot_ms, now_ms),
                    };
                    let create = create_execution_op(&exec, vec![fire_exec_key(&job.uuid, s.slot_ms)]);
                    let run = Txn {
                        guards: if job.multiple_executions {
                            Vec::new()
                        } else {
                            vec![Guard::Absent(job_run_key(&job.uuid))]
                        },
                        success: vec![
                            Op::Put { key: fire.clone(), value: fire_record(FireOutcome::Fired, me, now_ms) },
                            create,
                        ],
                        failure: vec![Op::Put { key: fire, value: fire_record(FireOutcome::Skipped, me, now_ms) }],
                    };
                    vec![Op::Txn(run)]
                }
            };
            Op::Txn(Txn { guards, success, failure: Vec::new() })
        })
        .collect();
    Txn::ops(ops)
}

/// Reads the fate of each slot of a batch from its result.
pub fn interpret(slots: &[DueSlot<'_>], result: &TxnResult) -> Vec<SlotResult> {
    slots
        .iter()
        .zip(result.nested.iter().chain(std::iter::repeat(&TxnResult::default())))
        .map(|(s, r)| {
            if !r.succeeded {
                // Guard 0 is the owner, guard 1 the slot.
                return if r.failed_guards.contains(&0) { SlotResult::NotOwner } else { SlotResult::AlreadyRecorded };
            }
            match s.action {
                SlotAction::RecordMissed => SlotResult::Missed,
                SlotAction::Fire => match r.nested.first() {
                    Some(run) if run.succeeded => {
                        run.allocated.first().map_or(SlotResult::Skipped, |&id| SlotResult::Fired(id))
                    }
                    _ => SlotResult::Skipped,
                },
            }
        })
        .collect()
}
