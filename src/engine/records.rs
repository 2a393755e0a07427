//! What the job engine stores in the replicated KV, and under which keys.
//!
//! ```text
//! projects/{name}                  ProjectRecord: the name and the config
//! jobs/{project}/{uuid}            JobRecord: the definition and who changed it when
//! jobidx/{uuid}                    the project of job {uuid} (lookup by id alone)
//! owner/{uuid}                     OwnerRecord: the member that fires the job's schedule
//! fires/{uuid}/{slot_ms}           FireRecord: what became of one scheduled slot
//! firexec/{uuid}/{slot_ms}         the execution id a fired slot created (sequence index)
//! exec/{id:020}                    ExecutionRecord (ids allocated by the state machine)
//! seq/exec                         the last allocated execution id
//! running/{project}/{uuid}/{tag}   while an execution is not finished: its id (tag: s{slot} or u{nonce})
//! jobrun/{uuid}                    the running execution of a job with multipleExecutions false
//! ```
//!
//! Every value is a versioned record (`crate::codec`) except the sequence indexes, which are
//! the storage layer's `encode_seq` numbers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use steward_storage::kv::{parse_seq_key, seq_key};

pub const PROJECTS_PREFIX: &str = "projects/";
pub const JOBS: &str = "jobs/";
pub const JOB_INDEX: &str = "jobidx/";
pub const OWNERS: &str = "owner/";
pub const FIRES: &str = "fires/";
pub const FIRE_EXEC: &str = "firexec/";
pub const EXECS: &str = "exec/";
pub const EXEC_SEQ: &str = "seq/exec";
pub const RUNNING: &str = "running/";
pub const JOB_RUN: &str = "jobrun/";

pub fn project_key(name: &str) -> String {
    format!("{PROJECTS_PREFIX}{name}")
}
pub fn job_key(project: &str, uuid: &str) -> String {
    format!("{JOBS}{project}/{uuid}")
}
pub fn job_index_key(uuid: &str) -> String {
    format!("{JOB_INDEX}{uuid}")
}
pub fn owner_key(uuid: &str) -> String {
    format!("{OWNERS}{uuid}")
}
pub fn fire_key(uuid: &str, slot_ms: i64) -> String {
    format!("{FIRES}{uuid}/{slot_ms}")
}
pub fn fire_exec_key(uuid: &str, slot_ms: i64) -> String {
    format!("{FIRE_EXEC}{uuid}/{slot_ms}")
}
pub fn exec_key(id: u64) -> String {
    seq_key(EXECS, id)
}
pub fn exec_id(key: &str) -> Option<u64> {
    parse_seq_key(EXECS, key)
}
/// The running index of a scheduled fire's execution.
pub fn running_slot_key(project: &str, uuid: &str, slot_ms: i64) -> String {
    format!("{RUNNING}{project}/{uuid}/s{slot_ms}")
}
/// The running index of an execution started by a request.
pub fn running_request_key(project: &str, uuid: &str) -> String {
    format!("{RUNNING}{project}/{uuid}/u{}", uuid::Uuid::new_v4().simple())
}
pub fn job_run_key(uuid: &str) -> String {
    format!("{JOB_RUN}{uuid}")
}

/// A stored project (`projects/{name}`): the HTTP API writes it, the engine reads its history
/// settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectRecord {
    pub name: String,
    pub config: BTreeMap<String, String>,
    pub created_ms: i64,
}

/// The member that fires a job's schedule. `epoch` grows with every change of owner, so a
/// guard on the whole record (bytes) fails for a member holding an older view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OwnerRecord {
    /// The owning member's uuid.
    pub member: String,
    pub epoch: u64,
}

/// What became of one scheduled slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FireOutcome {
    /// An execution was created for it (its id is under `firexec/`).
    Fired,
    /// Nobody fired it within the misfire window (or the job's policy records misses).
    Missed,
    /// It came while a run of a job with `multipleExecutions: false` was going.
    Skipped,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FireRecord {
    pub outcome: FireOutcome,
    /// The member that recorded it.
    pub member: String,
    /// When it was recorded (the member's clock), for lateness.
    pub recorded_ms: i64,
}

/// Rundeck's execution states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExecStatus {
    /// Waiting for `runAtTime`.
    Scheduled,
    Running,
    Succeeded,
    Failed,
    Aborted,
    Timedout,
    /// Ended without an outcome: its member died, or it was aborted with `forceIncomplete`.
    Incomplete,
}

impl ExecStatus {
    pub fn is_final(self) -> bool {
        !matches!(self, ExecStatus::Scheduled | ExecStatus::Running)
    }

    /// Rundeck's spelling in API responses.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecStatus::Scheduled => "scheduled",
            ExecStatus::Running => "running",
            ExecStatus::Succeeded => "succeeded",
            ExecStatus::Failed => "failed",
            ExecStatus::Aborted => "aborted",
            ExecStatus::Timedout => "timedout",
            ExecStatus::Incomplete => "incomplete",
        }
    }
}

/// Who asked for an execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    Schedule,
    User,
    Retry,
}

/// A request to stop an execution, set by the abort API and acted on by the runner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AbortRequest {
    pub user: String,
    pub force_incomplete: bool,
}

/// One execution of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionRecord {
    pub project: String,
    pub job_uuid: String,
    pub job_name: String,
    pub job_group: String,
    pub status: ExecStatus,
    /// The member that runs it (uuid).
    pub member: String,
    pub user: String,
    pub trigger: Trigger,
    /// The slot a scheduled fire was for, or the `runAtTime` of a delayed run.
    pub scheduled_ms: Option<i64>,
    pub created_ms: i64,
    pub started_ms: Option<i64>,
    pub ended_ms: Option<i64>,
    /// Option values given to this run (secure values are never stored).
    pub options: BTreeMap<String, String>,
    pub arg_string: String,
    pub loglevel: String,
    /// 1 for the first attempt, then one more per retry.
    pub attempt: u32,
    pub retry_of: Option<u64>,
    /// Whether the job forbids a second concurrent run: the runner then releases `jobrun/`.
    pub exclusive: bool,
    /// Its key under `running/`, removed when it ends.
    pub running_index: String,
    pub abort: Option<AbortRequest>,
    /// The member process (`{uuid}/{incarnation}`) that claimed it and may run it. Set through
    /// Raft before any process starts, so a restarted member never runs it a second time.
    #[serde(default)]
    pub runner: Option<String>,
    /// Why it ended the way it did, for people (failed step, exit code, timeout…).
    pub message: Option<String>,
}

impl ExecutionRecord {
    /// Its status as people see it at `now_ms`. A scheduled slot decided ahead of its time is
    /// stored `scheduled` and claimed by its runner at creation; the runner starts it at the
    /// slot without another write, so from the slot on it is running.
    pub fn status_at(&self, now_ms: i64) -> ExecStatus {
        match (self.status, &self.runner, self.scheduled_ms) {
            (ExecStatus::Scheduled, Some(_), Some(at)) if at <= now_ms => ExecStatus::Running,
            (status, ..) => status,
        }
    }

    /// [`Self::status_at`] now.
    pub fn status_now(&self) -> ExecStatus {
        self.status_at(chrono::Utc::now().timestamp_millis())
    }
}
