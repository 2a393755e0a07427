//! The executor: runs one execution's steps as local processes on this member, independent of
//! Raft. The scheduler decides what runs where and records states; this module only runs.
//!
//! # Layout
//! - [`step`]: the step types ([`Step`], [`Sequence`]), outcomes and the [`JobRefRunner`]
//!   hook for job references.
//! - [`env`]: Rundeck's `RD_JOB_*` / `RD_OPTION_*` variables.
//! - [`control`]: abort (and `forceIncomplete`) and the timeout.
//! - `process`: one step's process in its own process group; output capture; killing.
//! - [`guard`]: the process between the member and a step that kills the step's group when
//!   the member dies.
//! - [`lines`]: output to lines, secrets masked.
//! - [`retry`]: the retry loop (count and delay, abortable).
//!
//! # Semantics (Rundeck's)
//! Steps run one after another. A failed step's error handler runs (with step context `"Ne"`);
//! if the handler succeeds, the step is *recovered*. After a failed step the sequence goes on
//! when `keepgoing` is set, or when the step was recovered and its handler has
//! `keepgoing_on_success`; the execution fails if any step failed and was not recovered. An
//! abort or the timeout kills the running step's whole process group, runs no handler and no
//! further step, and ends the execution `aborted`, `timedout`, or `incomplete` for
//! `forceIncomplete`.

pub mod control;
pub mod env;
pub mod guard;
pub mod lines;
mod process;
pub mod retry;
pub mod step;

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::time::Instant;

pub use control::{abort_pair, AbortHandle, AbortKind, AbortSignal, Control, Interrupt};
pub use env::{option_var, JobVars};
pub use lines::{Masker, MASK};
pub use process::DRAIN;
pub use retry::{retry, RetryPolicy};
pub use step::{
    ErrorHandler, FailureReason, JobRef, JobRefCall, JobRefRunner, Sequence, Status, Step, StepKind, StepOutcome,
    StepResult,
};

use crate::logs::{LogLevel, LogSink};
use process::{ProcessEnd, StepIo};

/// Default time between SIGTERM and SIGKILL when a step is stopped.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(5);

/// Where and how an execution's processes run.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// Working directory of every step; `None`: the member's own.
    pub working_dir: Option<PathBuf>,
    /// Variables added to the member's environment (less its `STEWARD_*` variables): the
    /// `RD_JOB_*` of [`JobVars::to_env`], the `RD_OPTION_*` of [`option_var`], ….
    pub env: Vec<(String, String)>,
    /// Values replaced by `*****` in every line of output before it reaches the sink (secure
    /// option values, keys).
    pub secrets: Vec<String>,
    /// The node name log entries carry (this member's).
    pub node: Option<String>,
    /// The user log entries carry.
    pub user: Option<String>,
}

/// One execution to run.
#[derive(Debug, Clone, Default)]
pub struct Execution {
    pub sequence: Sequence,
    pub context: Context,
    /// Timeout of the whole execution.
    pub timeout: Option<Duration>,
}

/// How an execution ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub status: Status,
    pub started: DateTime<Utc>,
    pub ended: DateTime<Utc>,
    /// Every step that ran, in order (steps after a stop are not listed).
    pub steps: Vec<StepResult>,
}

impl Outcome {
    /// The step to report for a failed execution: the first that failed and was not
    /// recovered, else (a recovered step that still stopped the sequence) the last that failed.
    pub fn failed_step(&self) -> Option<&StepResult> {
        self.steps
            .iter()
            .find(|s| s.status == Status::Failed && !s.recovered())
            .or_else(|| self.steps.iter().rev().find(|s| s.status == Status::Failed))
    }

    /// The failed step's exit code, if it exited with one.
    pub fn exit_code(&self) -> Option<i32> {
        match self.failed_step()?.reason {
            Some(FailureReason::ExitCode(c)) => Some(c),
            _ => None,
        }
    }
}

/// How a sequence ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SequenceResult {
    /// `None`: every step succeeded or was recovered.
    pub failed: bool,
    /// Set when an abort or the timeout stopped the sequence.
    pub interrupted: Option<Interrupt>,
    pub steps: Vec<StepResult>,
}

/// Runs executions. One per member is enough; it holds no per-execution state.
#[derive(Clone)]
pub struct Executor {
    job_refs: Option<std::sync::Arc<dyn JobRefRunner>>,
    kill_grace: Duration,
    scratch_dir: PathBuf,
    step_guard: Option<PathBuf>,
}

impl Default for Executor {
    fn default() -> Self {
        Executor::new()
    }
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("job_refs", &self.job_refs.is_some())
            .field("kill_grace", &self.kill_grace)
            .field("scratch_dir", &self.scratch_dir)
            .field("step_guard", &self.step_guard)
            .finish()
    }
}

impl Executor {
    /// An executor with the default grace period, writing scripts to the system's temp dir,
    /// failing job references (until [`Executor::with_job_refs`]), starting steps through the
    /// process's step guard if [`guard::use_this_binary`] set one.
    pub fn new() -> Executor {
        Executor {
            job_refs: None,
            kill_grace: DEFAULT_KILL_GRACE,
            scratch_dir: std::env::temp_dir(),
            step_guard: guard::program(),
        }
    }

    /// Steps are started through `program` run as a step guard (a `steward` binary; see
    /// [`guard`]).
    pub fn with_step_guard(mut self, program: impl Into<PathBuf>) -> Executor {
        self.step_guard = Some(program.into());
        self
    }

    /// Job reference steps are run by `runner`.
    pub fn with_job_refs(mut self, runner: std::sync::Arc<dyn JobRefRunner>) -> Executor {
        self.job_refs = Some(runner);
        self
    }

    /// Time between SIGTERM and SIGKILL when a step is stopped.
    pub fn with_kill_grace(mut self, grace: Duration) -> Executor {
        self.kill_grace = grace;
        self
    }

    /// Where inline scripts are written (e.g. `<data-dir>/tmp`); it must exist.
    pub fn with_scratch_dir(mut self, dir: impl Into<PathBuf>) -> Executor {
        self.scratch_dir = dir.into();
        self
    }

    /// Runs `execution` to its end, writing its output to `sink`; `abort` stops it.
    pub async fn run(&self, execution: &Execution, sink: &dyn LogSink, abort: AbortSignal) -> Outcome {
        let started = Utc::now();
        let control = Control::new(abort, execution.timeout.map(|t| Instant::now() + t));
        let result = self.run_sequence(&execution.sequence, "", &execution.context, sink, &control).await;
        let status = match result.interrupted {
            Some(Interrupt::Aborted) => Status::Aborted,
            Some(Interrupt::ForceIncomplete) => Status::Incomplete,
            Some(Interrupt::TimedOut) => Status::TimedOut,
            None if result.failed => Status::Failed,
            None => Status::Succeeded,
        };
        let masker = Masker::new(&execution.context.secrets);
        let io = io_for(sink, &masker, "", &execution.context);
        match (status, execution.timeout) {
            (Status::TimedOut, Some(t)) => io.note(LogLevel::Error, format!("Execution timed out after {t:?}")),
            (Status::Aborted, _) => io.note(LogLevel::Warn, "Execution aborted"),
            (Status::Incomplete, _) => io.note(LogLevel::Warn, "Execution stopped: marked incomplete"),
            _ => {}
        }
        Outcome { status, started, ended: Utc::now(), steps: result.steps }
    }

    /// Runs a sequence within an execution: the steps' contexts are `prefix` + their number.
    /// For a [`JobRefRunner`] running a referenced job's steps, `prefix` is `"<step>/"`.
    pub fn run_sequence<'a>(
        &'a self,
        sequence: &'a Sequence,
        prefix: &'a str,
        ctx: &'a Context,
        sink: &'a dyn LogSink,
        control: &'a Control,
    ) -> BoxFuture<'a, SequenceResult> {
        // Boxed: a job reference runs a sequence from inside a step of a sequence.
        async move {
            let masker = Masker::new(&ctx.secrets);
            let mut result = SequenceResult { failed: false, interrupted: None, steps: Vec::new() };
            for (i, step) in sequence.steps.iter().enumerate() {
                if let Some(why) = control.interrupted() {
                    result.interrupted = Some(why);
                    break;
                }
                let step_ctx = format!("{prefix}{}", i + 1);
                let mut r = self.run_step(step, &step_ctx, ctx, &masker, sink, control).await;
                if let Some(why) = interrupted_status(r.status) {
                    result.interrupted = Some(why);
                    result.steps.push(r);
                    break;
                }
                if r.status == Status::Succeeded {
                    result.steps.push(r);
                    continue;
                }
                // Failed: the error handler, then keepgoing decides.
                let mut go_on = sequence.keepgoing;
                if let Some(handler) = &step.error_handler {
                    let h_ctx = format!("{step_ctx}e");
                    let h = self.run_step(&handler.step, &h_ctx, ctx, &masker, sink, control).await;
                    let h_status = h.status;
                    r.handler = Some(Box::new(h));
                    if let Some(why) = interrupted_status(h_status) {
                        result.interrupted = Some(why);
                        result.steps.push(r);
                        break;
                    }
                    if h_status == Status::Succeeded {
                        go_on |= handler.keepgoing_on_success;
                    }
                }
                // With keepgoing, a recovered step does not fail the execution; without it, the
                // sequence stops here and fails unless the handler may keep it going.
                if !r.recovered() || !go_on {
                    result.failed = true;
                }
                result.steps.push(r);
                if !go_on {
                    break;
                }
            }
            result
        }
        .boxed()
    }

    async fn run_step(
        &self,
        step: &Step,
        step_ctx: &str,
        ctx: &Context,
        masker: &Masker,
        sink: &dyn LogSink,
        control: &Control,
    ) -> StepResult {
        let started = Utc::now();
        let io = StepIo { sink, masker, step_ctx, node: ctx.node.as_deref(), user: ctx.user.as_deref() };
        let (status, reason) = match &step.kind {
            StepKind::JobRef(job) => self.run_job_ref(job, step_ctx, ctx, sink, control).await,
            kind => {
                // The script file lives until the process has ended.
                let prepared = self.prepare(kind);
                let (grace, guard) = (self.kill_grace, self.step_guard.as_deref());
                match prepared {
                    Ok((argv, _script)) => match process::run(&argv, ctx, &io, control, grace, guard).await {
                        ProcessEnd::Exited(s) => match exit_reason(s) {
                            None => (Status::Succeeded, None),
                            Some(r) => (Status::Failed, Some(r)),
                        },
                        ProcessEnd::Interrupted(why, s) => (interrupt_status(why), exit_reason(s)),
                        ProcessEnd::NotStarted(e) => (Status::Failed, Some(FailureReason::NotStarted(e.to_string()))),
                    },
                    Err(reason) => (Status::Failed, Some(reason)),
                }
            }
        };
        if status == Status::Failed {
            if let Some(r) = &reason {
                io.note(LogLevel::Error, format!("Failed: {r}"));
            }
        }
        StepResult { step_ctx: step_ctx.to_string(), status, reason, started, ended: Utc::now(), handler: None }
    }

    async fn run_job_ref(
        &self,
        job: &JobRef,
        step_ctx: &str,
        ctx: &Context,
        sink: &dyn LogSink,
        control: &Control,
    ) -> (Status, Option<FailureReason>) {
        let Some(runner) = &self.job_refs else {
            return (Status::Failed, Some(FailureReason::JobRef("job references are not available".into())));
        };
        let call = JobRefCall { job, step_ctx, context: ctx, sink, control, executor: self };
        let outcome = runner.run_job_ref(call).await;
        // The referenced job's steps stopped because of this execution's abort or timeout.
        if let Some(why) = control.interrupted() {
            let reason = match outcome {
                StepOutcome::Failed(r) => Some(r),
                StepOutcome::Succeeded => None,
            };
            return (interrupt_status(why), reason);
        }
        match outcome {
            StepOutcome::Succeeded => (Status::Succeeded, None),
            StepOutcome::Failed(r) => (Status::Failed, Some(r)),
        }
    }

    /// The command line of a process step, and the script file it runs (removed on drop).
    fn prepare(&self, kind: &StepKind) -> Result<(Vec<OsString>, Option<ScriptFile>), FailureReason> {
        match kind {
            StepKind::Exec { command } => Ok((vec!["/bin/sh".into(), "-c".into(), command.into()], None)),
            StepKind::Script { body, args, interpreter } => self.script(body.as_bytes(), args, interpreter.as_deref()),
            StepKind::ScriptFile { path, args, interpreter } => {
                let body = std::fs::read(path).map_err(|e| {
                    FailureReason::NotStarted(format!("cannot read script file {}: {e}", path.display()))
                })?;
                self.script(&body, args, interpreter.as_deref())
            }
            StepKind::JobRef(_) => Err(FailureReason::NotStarted("a job reference is not a process".into())),
        }
    }

    fn script(
        &self,
        body: &[u8],
        args: &[String],
        interpreter: Option<&str>,
    ) -> Result<(Vec<OsString>, Option<ScriptFile>), FailureReason> {
        let file = ScriptFile::write(&self.scratch_dir, body).map_err(|e| {
            FailureReason::NotStarted(format!("cannot write the script to {}: {e}", self.scratch_dir.display()))
        })?;
        // The file is handed to an interpreter rather than executed: executing a file this
        // process just wrote can fail with ETXTBSY when another thread forks meanwhile (the
        // write descriptor leaks into that child until it execs), and the kernel's own `#!`
        // handling is easy to do here.
        let mut argv: Vec<OsString> = match interpreter.map(str::trim).filter(|i| !i.is_empty()) {
            Some(i) => i.split_whitespace().map(OsString::from).collect(),
            None => match shebang(body) {
                Some(words) => words,
                None => vec!["/bin/sh".into()],
            },
        };
        argv.push(file.path.clone().into_os_string());
        argv.extend(args.iter().map(OsString::from));
        Ok((argv, Some(file)))
    }
}

/// The interpreter (and its one optional argument) a `#!` line names, as the kernel reads it.
fn shebang(body: &[u8]) -> Option<Vec<OsString>> {
    let rest = body.strip_prefix(b"#!")?;
    let line = rest.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let line = line.trim();
    let (interp, arg) = match line.split_once([' ', '\t']) {
        Some((i, a)) => (i, Some(a.trim())),
        None => (line, None),
    };
    if interp.is_empty() {
        return None;
    }
    let mut argv = vec![OsString::from(interp)];
    argv.extend(arg.filter(|a| !a.is_empty()).map(OsString::from));
    Some(argv)
}

/// A script written for one step; removed when dropped.
#[derive(Debug)]
struct ScriptFile {
    path: PathBuf,
}

impl ScriptFile {
    fn write(dir: &Path, body: &[u8]) -> std::io::Result<ScriptFile> {
        let path = dir.join(format!("steward-script-{}", uuid::Uuid::new_v4().simple()));
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o700).open(&path)?;
        let file = ScriptFile { path };
        f.write_all(body)?;
        f.flush()?;
        Ok(file)
    }
}

impl Drop for ScriptFile {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "could not remove a step's script file");
        }
    }
}

fn io_for<'a>(sink: &'a dyn LogSink, masker: &'a Masker, step_ctx: &'a str, ctx: &'a Context) -> StepIo<'a> {
    StepIo { sink, masker, step_ctx, node: ctx.node.as_deref(), user: ctx.user.as_deref() }
}

fn exit_reason(status: std::process::ExitStatus) -> Option<FailureReason> {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(0), _) => None,
        (Some(c), _) => Some(FailureReason::ExitCode(c)),
        (None, Some(s)) => Some(FailureReason::Signal(s)),
        (None, None) => Some(FailureReason::NotStarted("the process ended without a status".into())),
    }
}

fn interrupt_status(why: Interrupt) -> Status {
    match why {
        Interrupt::Aborted => Status::Aborted,
        Interrupt::ForceIncomplete => Status::Incomplete,
        Interrupt::TimedOut => Status::TimedOut,
    }
}

fn interrupted_status(status: Status) -> Option<Interrupt> {
    match status {
        Status::Aborted => Some(Interrupt::Aborted),
        Status::Incomplete => Some(Interrupt::ForceIncomplete),
        Status::TimedOut => Some(Interrupt::TimedOut),
        Status::Succeeded | Status::Failed => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shebang_lines_are_read_as_the_kernel_reads_them() {
        assert_eq!(shebang(b"#!/bin/bash\necho"), Some(vec!["/bin/bash".into()]));
        assert_eq!(shebang(b"#! /usr/bin/env python3 \nx"), Some(vec!["/usr/bin/env".into(), "python3".into()]));
        assert_eq!(shebang(b"#!/bin/sh -e -u\n"), Some(vec!["/bin/sh".into(), "-e -u".into()]));
        assert_eq!(shebang(b"echo hi"), None);
        assert_eq!(shebang(b"#!\n"), None);
    }
}
