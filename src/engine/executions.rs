//! Reading and changing execution records.
//!
//! An execution record is changed by read-modify-write under a `ModRevision` guard, retried on
//! conflict, so a concurrent change (an abort request arriving while the runner commits the
//! end) is never lost. Ending an execution also removes its running index and, for a job that
//! forbids concurrent runs, releases `jobrun/{uuid}` — but only if it still names this
//! execution (a guard), never another one's.

use steward_raft::{ClusterError, Consistency, Member};
use steward_storage::kv::{decode_seq, encode_seq};
use steward_storage::{Guard, Op, Txn};

use super::records::{
    exec_id, exec_key, fire_exec_key, job_run_key, running_request_key, ExecStatus, ExecutionRecord, Trigger, EXECS,
    RUNNING,
};
use crate::codec::{self, DecodeError};

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("execution {0} does not exist")]
    NotFound(u64),
    #[error("execution {0} kept changing; giving up after several attempts")]
    Contended(u64),
    #[error("execution {0} has not ended: abort it first, or wait for it to end")]
    NotEnded(u64),
}

/// Execution `id` and the revision it was read at.
pub async fn load(
    member: &Member,
    id: u64,
    consistency: Consistency,
) -> Result<Option<(ExecutionRecord, u64)>, ExecError> {
    match member.get(&exec_key(id), consistency).await? {
        Some(kv) => Ok(Some((codec::decode(&kv.value)?, kv.mod_revision))),
        None => Ok(None),
    }
}

/// Applies `change` to execution `id` and commits it. `change` returns false to leave the
/// record as it is (e.g. it already ended). Returns the record as committed (or as found).
pub async fn update(
    member: &Member,
    id: u64,
    mut change: impl FnMut(&mut ExecutionRecord) -> bool,
) -> Result<ExecutionRecord, ExecError> {
    for attempt in 0..20 {
        // The first try reads this member's applied state: the revision guard makes a stale
        // read fail rather than overwrite, and a burst of thousands of ends then costs no
        // leadership confirmation each. Later tries read linearizably.
        let consistency = if attempt == 0 { Consistency::Local } else { Consistency::Linearizable };
        let (mut rec, rev) = match load(member, id, consistency).await? {
            Some(found) => found,
            // Not applied here yet (a new execution seen first on the leader): ask the leader.
            None if attempt == 0 => continue,
            None => return Err(ExecError::NotFound(id)),
        };
        let was_final = rec.status.is_final();
        if !change(&mut rec) {
            return Ok(rec);
        }
        let key = exec_key(id);
        let ops = if rec.status.is_final() && !was_final {
            end_ops(id, &rec)
        } else {
            vec![Op::Put { key: key.clone(), value: codec::encode(&rec) }]
        };
        let res = member.write(Txn::guarded(vec![Guard::ModRevision { key, rev }], ops)).await?;
        if res.succeeded {
            return Ok(rec);
        }
    }
    Err(ExecError::Contended(id))
}

/// The operations that store execution `id` as `rec`, which has just ended: the record, the
/// removal of its running index and, for a job that forbids concurrent runs, the release of
/// `jobrun/{uuid}` if it still names this execution (a guard), never another one's.
pub fn end_ops(id: u64, rec: &ExecutionRecord) -> Vec<Op> {
    let mut ops =
        vec![Op::Put { key: exec_key(id), value: codec::encode(rec) }, Op::Delete { key: rec.running_index.clone() }];
    if rec.exclusive {
        let run = job_run_key(&rec.job_uuid);
        ops.push(Op::Txn(Txn::guarded(
            vec![Guard::ValueEquals { key: run.clone(), value: encode_seq(id) }],
            vec![Op::Delete { key: run }],
        )));
    }
    ops
}

/// The next attempt of execution `id`, which ended failed, timed out or incomplete: a new
/// execution (Rundeck gives each attempt its own id) assigned to `member`, waiting until
/// `start_ms` when that is in the future.
pub fn next_attempt(id: u64, ended: &ExecutionRecord, member: &str, start_ms: i64) -> ExecutionRecord {
    let now = chrono::Utc::now().timestamp_millis();
    let later = start_ms > now;
    ExecutionRecord {
        status: if later { ExecStatus::Scheduled } else { ExecStatus::Running },
        member: member.to_string(),
        trigger: Trigger::Retry,
        scheduled_ms: if later { Some(start_ms) } else { ended.scheduled_ms },
        created_ms: now,
        started_ms: None,
        ended_ms: None,
        attempt: ended.attempt + 1,
        retry_of: Some(id),
        runner: None,
        abort: None,
        message: None,
        running_index: running_request_key(&ended.project, &ended.job_uuid),
        ..ended.clone()
    }
}

/// Ends execution `id` with `status` (if it has not ended yet).
pub async fn finish(
    member: &Member,
    id: u64,
    status: ExecStatus,
    message: Option<String>,
) -> Result<ExecutionRecord, ExecError> {
    let now = chrono::Utc::now().timestamp_millis();
    update(member, id, |r| {
        if r.status.is_final() {
            return false;
        }
        r.status = status;
        r.ended_ms = Some(now);
        if message.is_some() {
            r.message = message.clone();
        }
        true
    })
    .await
}

/// Deletes execution `id`, which must have ended (as Rundeck, a running execution is never
/// deleted: its runner still writes to it), and its fire's link to it (`firexec/`). The fire
/// record itself stays: it is what tells the scheduler the slot was decided. `allow` judges the
/// record as read for the deletion (the caller's rights), so it is read once, not once to
/// judge and again to delete. Returns the deleted record; the member that holds its log
/// removes the log when it applies the deletion (`super::history`).
pub async fn delete<E: From<ExecError>>(
    member: &Member,
    id: u64,
    mut allow: impl FnMut(&ExecutionRecord) -> Result<(), E>,
) -> Result<ExecutionRecord, E> {
    for _ in 0..10 {
        let (rec, rev) = load(member, id, Consistency::Linearizable).await?.ok_or(ExecError::NotFound(id))?;
        allow(&rec)?;
        if !rec.status.is_final() {
            return Err(ExecError::NotEnded(id).into());
        }
        let guard = Guard::ModRevision { key: exec_key(id), rev };
        let done = member.write(Txn::guarded(vec![guard], delete_ops(id, &rec))).await.map_err(ExecError::from)?;
        if done.succeeded {
            return Ok(rec);
        }
    }
    Err(ExecError::Contended(id).into())
}

/// The executions not yet finished, of one project or of all (`None`), newest first.
pub async fn running(member: &Member, project: Option<&str>) -> Result<Vec<(u64, ExecutionRecord)>, ExecError> {
    let prefix = match project {
        Some(p) => format!("{RUNNING}{p}/"),
        None => RUNNING.to_string(),
    };
    let rows = member.range(&prefix, Consistency::Linearizable).await?;
    let mut ids: Vec<u64> = rows.iter().filter_map(|(_, kv)| decode_seq(&kv.value)).collect();
    ids.sort_unstable_by(|a, b| b.cmp(a));
    let mut out = Vec::new();
    for id in ids {
        if let Some((rec, _)) = load(member, id, Consistency::Local).await? {
            out.push((id, rec));
        }
    }
    Ok(out)
}

/// Every execution record, oldest first. A full scan: fine for the history sizes this version
/// keeps; an index by project and job is the next step when histories grow.
pub async fn all(member: &Member) -> Result<Vec<(u64, ExecutionRecord)>, ExecError> {
    Ok(all_read(member).await?.into_iter().map(|(id, _, rec)| (id, rec)).collect())
}

/// As [`all`], with the revision each record was read at (id, revision, record).
pub async fn all_read(member: &Member) -> Result<Vec<(u64, u64, ExecutionRecord)>, ExecError> {
    let rows = member.range(EXECS, Consistency::Linearizable).await?;
    let mut out = Vec::with_capacity(rows.len());
    for (k, kv) in rows {
        if let Some(id) = exec_id(&k) {
            out.push((id, kv.mod_revision, codec::decode(&kv.value)?));
        }
    }
    Ok(out)
}

/// Deletes the ended ones of `chosen` (as [`all_read`] gives them), many to a transaction,
/// each guarded on the revision it was read at; a batch in which one changed is retried one
/// by one. Returns how many were deleted.
pub async fn delete_read(member: &Member, chosen: &[(u64, u64, ExecutionRecord)]) -> Result<usize, ExecError> {
    let mut deleted = 0;
    let ended: Vec<&(u64, u64, ExecutionRecord)> = chosen.iter().filter(|(_, _, r)| r.status.is_final()).collect();
    for batch in ended.chunks(256) {
        let mut guards = Vec::with_capacity(batch.len());
        let mut ops = Vec::with_capacity(batch.len() * 2);
        for (id, rev, rec) in batch {
            guards.push(Guard::ModRevision { key: exec_key(*id), rev: *rev });
            ops.extend(delete_ops(*id, rec));
        }
        if member.write(Txn::guarded(guards, ops)).await?.succeeded {
            deleted += batch.len();
            continue;
        }
        for (id, _, _) in batch {
            match delete(member, *id, |_| Ok::<(), ExecError>(())).await {
                Ok(_) => deleted += 1,
                Err(ExecError::NotFound(_) | ExecError::NotEnded(_) | ExecError::Contended(_)) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(deleted)
}

/// What deleting execution `id` removes: its record and its fire's link to it.
fn delete_ops(id: u64, rec: &ExecutionRecord) -> Vec<Op> {
    let mut ops = vec![Op::Delete { key: exec_key(id) }];
    if let (Trigger::Schedule, Some(slot)) = (rec.trigger, rec.scheduled_ms) {
        ops.push(Op::Delete { key: fire_exec_key(&rec.job_uuid, slot) });
    }
    ops
}
