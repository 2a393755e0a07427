//! Keeping execution history bounded: Rundeck's per-project history cleanup, and the removal of
//! deleted executions' logs.
//!
//! - **Cleanup.** A project whose config has `project.execution.history.cleanup.enabled=true`
//!   is cleaned at each slot of its `…cleanup.schedule` (Quartz, UTC): ended executions older
//!   than `…retention.days` go, oldest first, at most `…batch` of them, and never one of the
//!   project's newest `…retention.minimum`. Only the leader cleans, so members do not race to
//!   delete the same records; when each project was last cleaned is replicated
//!   (`histclean/{project}/last`), so a slot that passed while leadership moved or the cluster
//!   was down is cleaned for as soon as a leader looks.
//! - **Fire records.** Each scheduled slot leaves a `fires/{job}/{slot}` record. A project's
//!   cleanup also deletes those of slots older than `…retention.days`, except each job's latest
//!   (the scheduler resumes after it; any slot it could decide again is later) and those whose
//!   execution is still kept. A deleted job's records go right after its deletion, and the
//!   leader's sweep every 10 min finds those a deletion left behind. The same sweep deletes the
//!   id index and owner record of a job whose record is gone (a job made in a project while
//!   the project's deletion was under way).
//! - **Logs.** An execution's log lives on the disk of the member that ran it (or in the shared
//!   store). Each member follows the change feed: when an execution it ran is deleted, it removes
//!   the log (with a shared store, the leader does). Whatever the feed cannot tell (a member down
//!   during deletions, a snapshot installed, a feed that fell behind) a sweep finds: a log whose
//!   execution id was allocated but has no record any more.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use steward_raft::{Consistency, Member};
use steward_storage::kv::{decode_seq, encode_seq};
use steward_storage::{Event, Guard, Op, Txn};
use tokio::sync::{broadcast, watch};

use super::executions::{self, ExecError};
use super::records::{
    exec_id, exec_key, job_index_key, job_key, owner_key, ExecutionRecord, ProjectRecord, EXEC_SEQ, FIRES, FIRE_EXEC,
    JOBS, JOB_INDEX, PROJECTS_PREFIX,
};
use crate::codec;
use crate::jobs::schedule::JobSchedule;
use crate::logs::LogStore;

pub const CLEANUP_ENABLED: &str = "project.execution.history.cleanup.enabled";
pub const RETENTION_DAYS: &str = "project.execution.history.cleanup.retention.days";
pub const RETENTION_MINIMUM: &str = "project.execution.history.cleanup.retention.minimum";
pub const CLEANUP_BATCH: &str = "project.execution.history.cleanup.batch";
pub const CLEANUP_SCHEDULE: &str = "project.execution.history.cleanup.schedule";

/// A project's history cleanup settings, with Rundeck's defaults.
#[derive(Debug, Clone)]
pub struct Retention {
    pub days: u32,
    pub minimum: usize,
    pub batch: usize,
    pub schedule: JobSchedule,
}

impl Retention {
    /// The settings in a project's config: `None` when cleanup is off; an error naming the key
    /// for a value that is not what it must be.
    pub fn from_config(config: &BTreeMap<String, String>) -> Result<Option<Retention>, String> {
        let enabled = match config.get(CLEANUP_ENABLED).map(|s| s.trim()) {
            None | Some("") | Some("false") => false,
            Some("true") => true,
            Some(other) => return Err(format!("{CLEANUP_ENABLED} must be true or false, not '{other}'")),
        };
        fn number<T: std::str::FromStr>(config: &BTreeMap<String, String>, key: &str, default: T) -> Result<T, String> {
            match config.get(key).map(|s| s.trim()).filter(|s| !s.is_empty()) {
                None => Ok(default),
                Some(v) => v.parse().map_err(|_| format!("{key} must be a whole number of at least 0, not '{v}'")),
            }
        }
        let days = number(config, RETENTION_DAYS, 60u32)?;
        let minimum = number(config, RETENTION_MINIMUM, 50usize)?;
        let batch = number(config, CLEANUP_BATCH, 500usize)?;
        if batch == 0 {
            return Err(format!("{CLEANUP_BATCH} must be at least 1"));
        }
        let expr =
            config.get(CLEANUP_SCHEDULE).map(|s| s.trim()).filter(|s| !s.is_empty()).unwrap_or("0 0 0 1/1 * ? *");
        let schedule =
            JobSchedule::new(expr, chrono_tz::UTC).map_err(|e| format!("{CLEANUP_SCHEDULE}: {}", e.message))?;
        Ok(enabled.then_some(Retention { days, minimum, batch, schedule }))
    }

    /// Checks the cleanup settings in `config` whether cleanup is on or not, so that a bad value
    /// is refused when it is written rather than found when cleanup is turned on.
    pub fn check(config: &BTreeMap<String, String>) -> Result<(), String> {
        Retention::from_config(config)?;
        let mut on = config.clone();
        on.insert(CLEANUP_ENABLED.into(), "true".into());
        Retention::from_config(&on).map(|_| ())
    }

    /// Which of a project's executions (`execs`, oldest first, as
    /// [`executions::all_read`] gives them) one cleanup at `now_ms` deletes.
    pub fn to_delete(&self, execs: &[(u64, u64, ExecutionRecord)], now_ms: i64) -> Vec<(u64, u64, ExecutionRecord)> {
        let cutoff = now_ms - i64::from(self.days) * 86_400_000;
        let older = execs.len().saturating_sub(self.minimum);
        execs[..older]
            .iter()
            .filter(|(_, _, r)| r.status.is_final() && r.ended_ms.or(r.started_ms).unwrap_or(r.created_ms) < cutoff)
            .take(self.batch)
            .cloned()
            .collect()
    }
}

/// Where the time of a project's last cleanup is kept: replicated, so that a leader elected
/// after a slot (or a cluster started again after one) still cleans for it.
pub const CLEANED: &str = "histclean/";

fn cleaned_key(project: &str) -> String {
    format!("{CLEANED}{project}/last")
}

/// The leader's cleanup loop (every member runs it; only the leader acts).
pub async fn clean_up(member: Member, mut stop: watch::Receiver<bool>) {
    // A bad setting is logged once per value, not at every tick.
    let mut reported: HashMap<String, String> = HashMap::new();
    let mut orphans_checked = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        if !member.is_leader() {
            continue;
        }
        if let Err(e) = clean_due(&member, Utc::now(), &mut reported).await {
            tracing::warn!(error = %e, "execution history cleanup failed; retrying");
        }
        if orphans_checked.elapsed() >= ORPHAN_SPACING {
            orphans_checked = tokio::time::Instant::now();
            match delete_orphans(&member, None).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "deleted the executions of deleted projects"),
                Err(e) => tracing::warn!(error = %e, "deleting the executions of deleted projects failed"),
            }
            match delete_orphan_jobs(&member).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "deleted the id indexes and owners of jobs whose record is gone"),
                Err(e) => tracing::warn!(error = %e, "deleting the leftovers of deleted jobs failed"),
            }
            match prune_orphan_fires(&member).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "deleted the fire records of deleted jobs"),
                Err(e) => tracing::warn!(error = %e, "deleting the fire records of deleted jobs failed"),
            }
        }
    }
}

/// Whether a project whose last cleanup was at `cleaned` has one due at `now`: a slot of its
/// schedule since. A project never cleaned is not due: its first cleanup is at the first slot
/// after cleanup was turned on, not at once.
fn is_due(r: &Retention, cleaned: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    cleaned.is_some_and(|c| r.schedule.slots_between(c, now).next().is_some())
}

/// Cleans every project with a cleanup due, and marks when each was cleaned.
async fn clean_due(
    member: &Member,
    now: DateTime<Utc>,
    reported: &mut HashMap<String, String>,
) -> Result<(), ExecError> {
    let mut due = Vec::new();
    for (_, kv) in member.range(PROJECTS_PREFIX, Consistency::Local).await? {
        let project: ProjectRecord = codec::decode(&kv.value)?;
        match Retention::from_config(&project.config) {
            Ok(Some(r)) => {
                let cleaned = member
                    .kv()
                    .get(&cleaned_key(&project.name))
                    .map_err(steward_raft::ClusterError::from)?
                    .and_then(|kv| decode_seq(&kv.value))
                    .and_then(|ms| DateTime::from_timestamp_millis(ms as i64));
                if cleaned.is_none() {
                    mark_cleaned(member, &project.name, now).await?;
                } else if is_due(&r, cleaned, now) {
                    due.push((project.name, r));
                }
            }
            Ok(None) => {}
            Err(e) => {
                if reported.get(&project.name) != Some(&e) {
                    tracing::warn!(project = %project.name, error = %e, "history cleanup not run: bad setting");
                    reported.insert(project.name.clone(), e);
                }
            }
        }
    }
    if due.is_empty() {
        return Ok(());
    }
    let all = executions::all_read(member).await?;
    for (project, retention) in due {
        let execs: Vec<_> = all.iter().filter(|(_, _, r)| r.project == project).cloned().collect();
        let deleted = executions::delete_read(member, &retention.to_delete(&execs, now.timestamp_millis())).await?;
        if deleted > 0 {
            tracing::info!(%project, deleted, days = retention.days, minimum = retention.minimum, "execution history cleaned");
        }
        let cutoff = now.timestamp_millis() - i64::from(retention.days) * 86_400_000;
        let jobs_prefix = format!("{JOBS}{project}/");
        let mut fires = 0;
        for (key, _) in member.kv().range(&jobs_prefix).map_err(steward_raft::ClusterError::from)? {
            if let Some(uuid) = key.strip_prefix(&jobs_prefix) {
                fires += prune_job_fires(member, uuid, FirePrune::Before(cutoff)).await?;
            }
        }
        if fires > 0 {
            tracing::info!(%project, deleted = fires, "old fire records deleted");
        }
        mark_cleaned(member, &project, now).await?;
    }
    Ok(())
}

async fn mark_cleaned(member: &Member, project: &str, at: DateTime<Utc>) -> Result<(), ExecError> {
    let op = Op::Put { key: cleaned_key(project), value: encode_seq(at.timestamp_millis().max(0) as u64) };
    member.write(Txn::guarded(vec![], vec![op])).await?;
    Ok(())
}

/// Deletes the ended executions of projects that no longer exist (of project `only`, when
/// given): right after a project's deletion, then every 10 min for those still running at it
/// or left by a deletion cut short. Executions are read before the projects, so one of a
/// project made meanwhile (a deleted project's name taken again) is never taken for an orphan.
/// Returns how many were deleted.
pub async fn delete_orphans(member: &Member, only: Option<&str>) -> Result<usize, ExecError> {
    let mut all = executions::all_read(member).await?;
    all.retain(|(_, _, r)| only.is_none_or(|p| r.project == p));
    if all.is_empty() {
        return Ok(0);
    }
    let projects: std::collections::HashSet<String> = member
        .range(PROJECTS_PREFIX, Consistency::Linearizable)
        .await?
        .into_iter()
        .filter_map(|(k, _)| k.strip_prefix(PROJECTS_PREFIX).map(str::to_string))
        .collect();
    all.retain(|(_, _, r)| !projects.contains(&r.project));
    executions::delete_read(member, &all).await
}

/// Which of a job's fire records [`prune_job_fires`] deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirePrune {
    /// Every one: the job was deleted. Each deletion is guarded on its id index being absent, so
    /// a job made again under the same id keeps them.
    All,
    /// Those of slots before this time (ms since the epoch), except the job's latest record and
    /// those whose execution is still kept.
    Before(i64),
}

/// How many fire records one read takes.
const FIRE_PAGE: usize = 1024;

/// How many fire records one transaction deletes (each with its link to its execution).
const FIRE_DELETE_BATCH: usize = 256;

/// Deletes fire records of job `uuid` as `prune` says, with their links to executions, reading
/// them a page at a time. Returns how many it deleted.
///
/// What keeps "exactly once" safe: the scheduler decides only slots after the latest one
/// recorded for the job (see `scheduler::resume_after`). So with the job still there, only
/// records of slots *before* its latest go: the latest stays, and so does every record written
/// while this runs, which is later still.
pub async fn prune_job_fires(member: &Member, uuid: &str, prune: FirePrune) -> Result<usize, ExecError> {
    let prefix = format!("{FIRES}{uuid}/");
    let slot_of = |key: &str| key.strip_prefix(&prefix).and_then(|s| s.parse::<i64>().ok());
    let bound = match prune {
        FirePrune::All => None,
        FirePrune::Before(cutoff) => match super::scheduler::latest_recorded_slot(member.kv(), uuid) {
            Some(latest) => Some(cutoff.min(latest)),
            None => return Ok(0),
        },
    };
    let mut after: Option<String> = None;
    let mut deleted = 0;
    loop {
        let page =
            member.kv().range_page(&prefix, after.as_deref(), FIRE_PAGE).map_err(steward_raft::ClusterError::from)?;
        let Some((last, _)) = page.last() else { return Ok(deleted) };
        after = Some(last.clone());
        let mut slots: Vec<&str> = Vec::new();
        for (key, _) in &page {
            let Some(slot) = key.strip_prefix(&prefix) else { continue };
            if let Some(bound) = bound {
                // A key that is not a slot was not written by the scheduler: left alone.
                let Some(n) = slot_of(key) else { continue };
                if n >= bound || execution_kept(member, uuid, slot)? {
                    continue;
                }
            }
            slots.push(slot);
        }
        for batch in slots.chunks(FIRE_DELETE_BATCH) {
            let guards = match prune {
                FirePrune::All => vec![Guard::Absent(job_index_key(uuid))],
                FirePrune::Before(_) => vec![],
            };
            let ops = batch
                .iter()
                .flat_map(|slot| {
                    [
                        Op::Delete { key: format!("{prefix}{slot}") },
                        Op::Delete { key: format!("{FIRE_EXEC}{uuid}/{slot}") },
                    ]
                })
                .collect();
            if !member.write(Txn::guarded(guards, ops)).await?.succeeded {
                // The job was made again meanwhile: its records are its own.
                return Ok(deleted);
            }
            deleted += batch.len();
        }
        if page.len() < FIRE_PAGE {
            return Ok(deleted);
        }
    }
}

/// Whether the execution that job `uuid`'s slot `slot` created is still kept.
fn execution_kept(member: &Member, uuid: &str, slot: &str) -> Result<bool, ExecError> {
    let kv = member.kv();
    let link = kv.get(&format!("{FIRE_EXEC}{uuid}/{slot}")).map_err(steward_raft::ClusterError::from)?;
    let Some(id) = link.and_then(|l| decode_seq(&l.value)) else { return Ok(false) };
    Ok(kv.get(&exec_key(id)).map_err(steward_raft::ClusterError::from)?.is_some())
}

/// Deletes the fire records of jobs that no longer exist: those a deletion left behind (it
/// prunes them after answering, and may be cut short). Reads one key per job. Returns how many
/// it deleted.
pub async fn prune_orphan_fires(member: &Member) -> Result<usize, ExecError> {
    let mut after: Option<String> = None;
    let mut deleted = 0;
    loop {
        let page = member.kv().range_page(FIRES, after.as_deref(), 1).map_err(steward_raft::ClusterError::from)?;
        let Some((key, _)) = page.first() else { return Ok(deleted) };
        let Some((uuid, _)) = key.strip_prefix(FIRES).and_then(|rest| rest.split_once('/')) else {
            after = Some(key.clone());
            continue;
        };
        let uuid = uuid.to_string();
        if member.kv().get(&job_index_key(&uuid)).map_err(steward_raft::ClusterError::from)?.is_none() {
            deleted += prune_job_fires(member, &uuid, FirePrune::All).await?;
        }
        // Past every record of the job: a slot is digits (or '-'), which sort before '~'.
        after = Some(format!("{FIRES}{uuid}/~"));
    }
}

/// Deletes the id index and owner record of each job whose record is gone: left by a job made
/// in a project while the project's deletion was under way (the deletion removes every job
/// record under the project, but the index and owner only of the jobs it had read). Each is
/// guarded on the index being the one read and the job record still being absent. Returns how
/// many jobs it cleared.
pub async fn delete_orphan_jobs(member: &Member) -> Result<usize, ExecError> {
    let mut cleared = 0;
    for (key, kv) in member.range(JOB_INDEX, Consistency::Linearizable).await? {
        let Some(uuid) = key.strip_prefix(JOB_INDEX) else { continue };
        let Ok(project) = codec::decode::<String>(&kv.value) else { continue };
        let job = job_key(&project, uuid);
        if member.kv().get(&job).map_err(steward_raft::ClusterError::from)?.is_some() {
            continue;
        }
        let txn = Txn::guarded(
            vec![Guard::ModRevision { key: key.clone(), rev: kv.mod_revision }, Guard::Absent(job)],
            vec![Op::Delete { key: key.clone() }, Op::Delete { key: owner_key(uuid) }],
        );
        if member.write(txn).await?.succeeded {
            cleared += 1;
        }
    }
    Ok(cleared)
}

/// Prunes the fire records of deleted jobs after the deletion was answered: a job's history
/// can be long, and its deletion need not wait for it. What this misses the leader's sweep
/// finds.
pub fn prune_deleted_jobs_fires(member: &Member, uuids: Vec<String>) {
    let member = member.clone();
    tokio::spawn(async move {
        for uuid in uuids {
            if let Err(e) = prune_job_fires(&member, &uuid, FirePrune::All).await {
                tracing::warn!(job = %uuid, error = %e, "the deleted job's fire records are left to the leader's sweep");
                return;
            }
        }
    });
}

/// How often the leader looks for executions of deleted projects and fire records of deleted
/// jobs.
const ORPHAN_SPACING: Duration = Duration::from_secs(600);

/// The least time between two sweeps of the log store.
const SWEEP_SPACING: Duration = Duration::from_secs(600);

/// Removes the logs of deleted executions that this member holds (see the module doc).
pub async fn remove_deleted_logs(member: Member, logs: LogStore, mut stop: watch::Receiver<bool>) {
    let me = member.node().uuid.clone();
    let mut feed = member.kv().subscribe();
    // A sweep lists every log the store holds: after a burst of fires the feed falls behind
    // again and again, so sweeps are spaced out.
    let mut last_sweep: Option<tokio::time::Instant> = None;
    let mut sweep_needed = true;
    loop {
        let wait = last_sweep.map_or(Duration::ZERO, |t| SWEEP_SPACING.saturating_sub(t.elapsed()));
        let event = tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(wait), if sweep_needed => {
                sweep_needed = false;
                last_sweep = Some(tokio::time::Instant::now());
                if let Err(e) = sweep(&member, &logs).await {
                    tracing::warn!(error = %e, "log sweep failed; retrying later");
                    sweep_needed = true;
                }
                continue;
            }
            e = feed.recv() => e,
        };
        match event {
            Ok(Event::Change(c)) if c.new.is_none() => {
                let (Some(id), Some(old)) = (exec_id(&c.key), c.old) else { continue };
                let Ok(rec) = codec::decode::<ExecutionRecord>(&old.value) else { continue };
                let mine = if logs.is_shared() { member.is_leader() } else { rec.member == me };
                if mine {
                    if let Err(e) = logs.delete(id).await {
                        tracing::warn!(execution = id, error = %e, "deleted execution's log not removed; the next sweep retries");
                    }
                }
            }
            Ok(Event::Change(_)) => {}
            Ok(Event::Reset { .. }) | Err(broadcast::error::RecvError::Lagged(_)) => sweep_needed = true,
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Removes every stored log whose execution was allocated (its id is at most the last one this
/// member has applied) and has no record any more. A log of an execution this member has not
/// heard of yet is left alone: with a shared store another member may be writing it.
async fn sweep(member: &Member, logs: &LogStore) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let ids = logs.stored_ids().await?;
    if ids.is_empty() {
        return Ok(());
    }
    let last = member.kv().get(EXEC_SEQ)?.and_then(|kv| decode_seq(&kv.value)).unwrap_or(0);
    let mut removed = 0;
    for id in ids.into_iter().filter(|id| *id <= last) {
        if member.kv().get(&exec_key(id))?.is_none() {
            logs.delete(id).await?;
            removed += 1;
        }
    }
    if removed > 0 {
        tracing::info!(removed, "removed the logs of deleted executions");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::records::{ExecStatus, Trigger};

    fn rec(status: ExecStatus, ended_ms: Option<i64>) -> ExecutionRecord {
        ExecutionRecord {
            project: "p".into(),
            job_uuid: "j".into(),
            job_name: "j".into(),
            job_group: String::new(),
            status,
            member: "m".into(),
            user: "u".into(),
            trigger: Trigger::User,
            scheduled_ms: None,
            created_ms: 0,
            started_ms: Some(0),
            ended_ms,
            options: BTreeMap::new(),
            arg_string: String::new(),
            loglevel: "INFO".into(),
            attempt: 1,
            retry_of: None,
            exclusive: false,
            running_index: String::new(),
            abort: None,
            runner: None,
            message: None,
        }
    }

    fn config(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn cleanup_is_off_unless_enabled_and_takes_rundecks_defaults() {
        assert!(Retention::from_config(&config(&[])).unwrap().is_none());
        assert!(Retention::from_config(&config(&[(CLEANUP_ENABLED, "false")])).unwrap().is_none());
        let r = Retention::from_config(&config(&[(CLEANUP_ENABLED, "true")])).unwrap().unwrap();
        assert_eq!((r.days, r.minimum, r.batch), (60, 50, 500));
        assert_eq!(r.schedule.expression(), JobSchedule::new("0 0 0 1/1 * ? *", chrono_tz::UTC).unwrap().expression());
    }

    #[test]
    fn a_cleanup_is_due_at_the_first_slot_after_the_last_one_and_never_before_the_first_mark() {
        let r = Retention::from_config(&config(&[(CLEANUP_ENABLED, "true")])).unwrap().unwrap(); // daily, 00:00 UTC
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        assert!(!is_due(&r, None, at("2026-11-24T00:00:05Z")), "never cleaned: wait for the first slot");
        assert!(!is_due(&r, Some(at("2026-11-24T00:00:01Z")), at("2026-11-24T23:59:59Z")));
        assert!(is_due(&r, Some(at("2026-11-23T23:59:59Z")), at("2026-11-24T00:00:01Z")));
        // A slot that passed while no leader acted (a leadership change, the cluster down) is
        // cleaned for when a leader next looks.
        assert!(is_due(&r, Some(at("2026-11-20T00:00:01Z")), at("2026-11-24T07:00:00Z")));
    }

    #[test]
    fn a_bad_setting_is_refused_with_its_key_named() {
        for (key, value) in [
            (CLEANUP_ENABLED, "yes"),
            (RETENTION_DAYS, "-1"),
            (RETENTION_MINIMUM, "ten"),
            (CLEANUP_BATCH, "0"),
            (CLEANUP_SCHEDULE, "every day"),
        ] {
            let err = Retention::from_config(&config(&[(CLEANUP_ENABLED, "true"), (key, value)])).unwrap_err();
            assert!(err.contains(key), "{key}={value}: {err}");
            let err = Retention::check(&config(&[(key, value)])).unwrap_err();
            assert!(err.contains(key), "{key}={value} with cleanup off: {err}");
        }
    }

    #[test]
    fn a_cleanup_deletes_old_ended_executions_oldest_first_keeping_the_newest_minimum_and_at_most_a_batch() {
        let day = 86_400_000;
        let now = 100 * day;
        let mut r =
            Retention::from_config(&config(&[(CLEANUP_ENABLED, "true"), (RETENTION_DAYS, "10")])).unwrap().unwrap();
        r.minimum = 2;
        r.batch = 3;
        let execs = vec![
            (1, 0, rec(ExecStatus::Succeeded, Some(now - 50 * day))),
            (2, 0, rec(ExecStatus::Running, None)),
            (3, 0, rec(ExecStatus::Failed, Some(now - 40 * day))),
            (4, 0, rec(ExecStatus::Succeeded, Some(now - 5 * day))),
            (5, 0, rec(ExecStatus::Succeeded, Some(now - 30 * day))),
            (6, 0, rec(ExecStatus::Aborted, Some(now - 20 * day))),
            (7, 0, rec(ExecStatus::Succeeded, Some(now - 20 * day))),
            (8, 0, rec(ExecStatus::Succeeded, Some(now - 20 * day))),
        ];
        let ids = |v: Vec<(u64, u64, ExecutionRecord)>| v.into_iter().map(|(id, _, _)| id).collect::<Vec<_>>();
        // 2 is running, 4 is recent; 7 and 8 are the newest two; the batch stops after 3.
        assert_eq!(ids(r.to_delete(&execs, now)), vec![1, 3, 5]);
        r.batch = 10;
        assert_eq!(ids(r.to_delete(&execs, now)), vec![1, 3, 5, 6]);
        r.minimum = 100;
        assert!(r.to_delete(&execs, now).is_empty(), "fewer executions than the minimum");
    }
}
