//! The steps the executor runs, and what a step's run says.
//!
//! These are steward's own types: the job definition format maps onto them, so the executor
//! does not depend on how jobs are written down.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;

use super::control::Control;
use super::{Context, Executor};
use crate::logs::LogSink;

/// One step of a sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub kind: StepKind,
    /// Runs when the step fails (not when the execution is aborted or times out).
    pub error_handler: Option<ErrorHandler>,
    /// The step's description, for the log.
    pub description: Option<String>,
}

impl Step {
    pub fn new(kind: StepKind) -> Step {
        Step { kind, error_handler: None, description: None }
    }

    /// `/bin/sh -c command`.
    pub fn exec(command: impl Into<String>) -> Step {
        Step::new(StepKind::Exec { command: command.into() })
    }

    /// An inline script, run by its shebang line (or `/bin/sh` without one).
    pub fn script(body: impl Into<String>) -> Step {
        Step::new(StepKind::Script { body: body.into(), args: Vec::new(), interpreter: None })
    }

    pub fn with_error_handler(mut self, handler: Step, keepgoing_on_success: bool) -> Step {
        self.error_handler = Some(ErrorHandler { step: Box::new(handler), keepgoing_on_success });
        self
    }
}

/// What a step runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepKind {
    /// A command line, run by `/bin/sh -c`.
    Exec { command: String },
    /// An inline script. It is written to a new file (mode 0700) and run by `interpreter` (a
    /// command line such as `python3 -u`, the file and `args` appended), else by the
    /// interpreter its `#!` line names, else by `/bin/sh`.
    Script { body: String, args: Vec<String>, interpreter: Option<String> },
    /// A script file on this member, run like an inline script with its content (Rundeck
    /// copies it too), so it need not be executable.
    ScriptFile { path: PathBuf, args: Vec<String>, interpreter: Option<String> },
    /// Another job, run by the caller's [`JobRefRunner`].
    JobRef(JobRef),
}

/// A reference to another job, as the job definition gives it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobRef {
    pub uuid: Option<String>,
    pub name: Option<String>,
    pub group: Option<String>,
    pub project: Option<String>,
    /// Rundeck's argument string for the referenced job (`-opt value ...`).
    pub args: Option<String>,
}

/// A step's error handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorHandler {
    pub step: Box<Step>,
    /// Rundeck's `keepgoingOnSuccess`: when the sequence does not keep going, a successful
    /// handler still lets it go on.
    pub keepgoing_on_success: bool,
}

/// A sequence of steps (Rundeck's workflow, node-first on this one node).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sequence {
    pub steps: Vec<Step>,
    /// Go on with the next step after a failed one (the execution still fails at the end).
    pub keepgoing: bool,
}

/// Why a step failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureReason {
    /// The process exited with this non-zero code.
    ExitCode(i32),
    /// The process was killed by this signal.
    Signal(i32),
    /// The process could not be started (missing interpreter, bad working directory, ...).
    NotStarted(String),
    /// A referenced job failed.
    JobRef(String),
}

impl std::fmt::Display for FailureReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // Rundeck's wording, which people grep their logs for.
            FailureReason::ExitCode(c) => write!(f, "NonZeroResultCode: Result code was {c}"),
            FailureReason::Signal(s) => write!(f, "NonZeroResultCode: Killed by signal {s}"),
            FailureReason::NotStarted(m) => write!(f, "could not start: {m}"),
            FailureReason::JobRef(m) => write!(f, "referenced job failed: {m}"),
        }
    }
}

/// What running one step (or a referenced job) gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOutcome {
    Succeeded,
    Failed(FailureReason),
}

/// What a [`JobRefRunner`] gets to run a referenced job.
pub struct JobRefCall<'a> {
    pub job: &'a JobRef,
    /// The referencing step's context (`"3"`); the referenced job's steps are `"3/1"`, ….
    pub step_ctx: &'a str,
    pub context: &'a Context,
    pub sink: &'a dyn LogSink,
    /// The execution's abort signal and deadline; the referenced job's steps must honour them
    /// (running them through `executor` does).
    pub control: &'a Control,
    /// Runs the referenced job's steps ([`Executor::run_sequence`]) in this execution.
    pub executor: &'a Executor,
}

/// Runs referenced jobs: the caller knows how to find a job and map it to steps.
pub trait JobRefRunner: Send + Sync {
    fn run_job_ref<'a>(&'a self, call: JobRefCall<'a>) -> BoxFuture<'a, StepOutcome>;
}

/// The state a step, or an execution, ended in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Succeeded,
    Failed,
    Aborted,
    TimedOut,
    Incomplete,
}

impl Status {
    /// Rundeck's name: `succeeded`, `failed`, `aborted`, `timedout`, `incomplete`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Aborted => "aborted",
            Status::TimedOut => "timedout",
            Status::Incomplete => "incomplete",
        }
    }
}

/// How one step went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepResult {
    /// `"1"`, `"2"`, …; `"2e"` for the error handler of step 2.
    pub step_ctx: String,
    pub status: Status,
    /// Why it failed (also set when it was killed by an abort or the timeout).
    pub reason: Option<FailureReason>,
    pub started: DateTime<Utc>,
    pub ended: DateTime<Utc>,
    /// The error handler's run, if the step failed and has one.
    pub handler: Option<Box<StepResult>>,
}

impl StepResult {
    /// Failed, but its error handler succeeded.
    pub fn recovered(&self) -> bool {
        self.status == Status::Failed && self.handler.as_ref().is_some_and(|h| h.status == Status::Succeeded)
    }
}
