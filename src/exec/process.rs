//! One step's process: started in a process group of its own, its stdout and stderr read line
//! by line into the sink, and the whole group killed on abort or timeout.
//!
//! Why a process group: a step is usually a shell, and the shell's children (and theirs) are
//! what does the work. Signalling only the shell would leave them running, still holding the
//! step's pipes. `process_group(0)` makes the step's process the leader of a new group that
//! its descendants inherit, and `killpg` reaches all of them at once. (A descendant that calls
//! `setsid` or `setpgid` itself leaves the group and is out of reach of an abort or a
//! timeout.) In the `steward` binary the group's leader is a step guard ([`super::guard`])
//! whose child is the step: if the member dies, even by SIGKILL, it kills every descendant of
//! the step, those that left the group too; otherwise it ends as the step did, so nothing
//! below tells the two cases apart.
//!
//! Killing: SIGTERM to the group, then, once the leader has exited and the rest of the group
//! has had until the end of the grace period to do the same, SIGKILL to whatever is left.
//! `forceIncomplete` sends SIGKILL at once. If the future running a process is dropped (its
//! caller gave up on the execution), a guard kills the group too: no step outlives the
//! executor by accident.
//!
//! Output: when the leader exits, the pipes are read until end of file, but for at most
//! [`DRAIN`]: a step that leaves a background process holding its stdout (`daemon &`) ends
//! when its leader does instead of hanging until the daemon exits. Such leftovers are not
//! killed after a normal exit, as in Rundeck: starting a daemon is a legitimate step.

use std::ffi::OsString;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use chrono::Utc;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use tokio::time::Instant;

use super::control::{Control, Interrupt};
use super::lines::{LineSplitter, Masker, MAX_LINE_BYTES};
use super::Context;
use crate::logs::{LogEntry, LogLevel, LogSink};

/// How long the pipes are read after the step's process has exited.
pub const DRAIN: Duration = Duration::from_secs(1);

/// Where a step's output goes, with what it is attributed to.
pub(crate) struct StepIo<'a> {
    pub sink: &'a dyn LogSink,
    pub masker: &'a Masker,
    pub step_ctx: &'a str,
    pub node: Option<&'a str>,
    pub user: Option<&'a str>,
}

impl StepIo<'_> {
    /// Emits an already masked line.
    fn emit(&self, level: LogLevel, log: String) {
        self.sink.emit(LogEntry {
            time: Utc::now(),
            level,
            log,
            // Execution-level messages have no step.
            step_ctx: (!self.step_ctx.is_empty()).then(|| self.step_ctx.to_string()),
            node: self.node.map(str::to_string),
            user: self.user.map(str::to_string),
        });
    }

    /// Emits a message of steward's own (masked too: it may quote a command line).
    pub fn note(&self, level: LogLevel, log: impl Into<String>) {
        self.emit(level, self.masker.mask(log.into()));
    }
}

/// How a process ended.
#[derive(Debug)]
pub(crate) enum ProcessEnd {
    Exited(ExitStatus),
    /// Killed because the execution was interrupted.
    Interrupted(Interrupt, ExitStatus),
    NotStarted(std::io::Error),
}

/// Sends `signal` to process group `pgid`; false when the group has no process left.
fn signal_group(pgid: i32, signal: i32) -> bool {
    // SAFETY: killpg has no memory-safety preconditions. pgid is the id of a group this module
    // created (the leader's pid), never 0 or negative, so it cannot address our own group or
    // every process.
    unsafe { libc::killpg(pgid, signal) == 0 }
}

fn group_alive(pgid: i32) -> bool {
    signal_group(pgid, 0) || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Kills the group when dropped while armed.
struct GroupGuard {
    pgid: i32,
    armed: bool,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if self.armed {
            signal_group(self.pgid, libc::SIGKILL);
        }
    }
}

/// Runs `argv` in `ctx` until it exits or `control` interrupts it; through a step guard run by
/// `guard` (see [`super::guard`]) if given, so that the step dies with this process.
pub(crate) async fn run(
    argv: &[OsString],
    ctx: &Context,
    io: &StepIo<'_>,
    control: &Control,
    grace: Duration,
    guard: Option<&Path>,
) -> ProcessEnd {
    let Some((program, args)) = argv.split_first() else {
        return ProcessEnd::NotStarted(std::io::Error::new(std::io::ErrorKind::InvalidInput, "empty command"));
    };
    let (mut cmd, report) = match guard {
        Some(guard) => {
            // The guard says on its stdin whether the step started (see the guard's docs).
            let (report, report_tx) = match std::io::pipe() {
                Ok(pipe) => pipe,
                Err(e) => return ProcessEnd::NotStarted(e),
            };
            let mut cmd = Command::new(super::guard::to_start(guard));
            cmd.arg(super::guard::ARG).arg(std::process::id().to_string()).arg(program).args(args).stdin(report_tx);
            (cmd, Some(report))
        }
        None => {
            let mut cmd = Command::new(program);
            cmd.args(args).stdin(Stdio::null());
            (cmd, None)
        }
    };
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
    // The member's own settings (the cluster secret, the admin token) are not the jobs' business.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("STEWARD_") {
            cmd.env_remove(key);
        }
    }
    cmd.envs(ctx.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    if let Some(dir) = &ctx.working_dir {
        cmd.current_dir(dir);
    }
    // No `pre_exec` (e.g. PR_SET_PDEATHSIG, which the guard sets instead): it makes the
    // standard library fork and run code in the child instead of posix_spawn, and a forked
    // child of this multi-threaded process can deadlock on a lock another thread held (seen with
    // the chaos harness's LD_PRELOADed libfiu: members hung between fork and exec).
    let spawned = cmd.spawn();
    // Closes this process's copy of the report pipe's write end, so that its reader sees the
    // end of file once the guard is done with it.
    drop(cmd);
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => return ProcessEnd::NotStarted(e),
    };
    let Some(pgid) = child.id().and_then(|id| i32::try_from(id).ok()) else {
        return ProcessEnd::NotStarted(std::io::Error::other("the process has no id"));
    };
    let mut guard = GroupGuard { pgid, armed: true };
    let failed = match report {
        Some(report) => failed_start(report).await,
        None => None,
    };
    if let Some(errno) = failed {
        guard.armed = false;
        let _ = child.wait().await;
        return ProcessEnd::NotStarted(std::io::Error::from_raw_os_error(errno));
    }

    let pumps = futures::future::join(
        pump(child.stdout.take(), LogLevel::Normal, io),
        pump(child.stderr.take(), LogLevel::Error, io),
    );
    let mut pumps = std::pin::pin!(pumps);
    let supervise = supervise(&mut child, pgid, control, grace);
    let mut supervise = std::pin::pin!(supervise);
    let mut pumped = false;
    let end = loop {
        tokio::select! {
            end = &mut supervise => break end,
            _ = &mut pumps, if !pumped => pumped = true,
        }
    };
    // The group is dealt with: killed if interrupted, left alone (Rundeck does) if the leader
    // exited by itself.
    guard.armed = false;
    if !pumped && tokio::time::timeout(DRAIN, &mut pumps).await.is_err() {
        io.note(
            LogLevel::Warn,
            "steward: the step's process exited but something it started still holds its output; \
             output after this point is not captured",
        );
    }
    match end {
        Ok((status, None)) => ProcessEnd::Exited(status),
        Ok((status, Some(why))) => ProcessEnd::Interrupted(why, status),
        Err(e) => ProcessEnd::NotStarted(e),
    }
}

/// What the step guard reported on `report`: the `errno` of a failed start, or `None` when the
/// step started (end of file with nothing before it; also when the pipe cannot be read, and
/// the guard's own end then tells what happened).
async fn failed_start(report: std::io::PipeReader) -> Option<i32> {
    let mut rx = tokio::net::unix::pipe::Receiver::from_owned_fd(std::os::fd::OwnedFd::from(report)).ok()?;
    let mut buf = Vec::new();
    rx.read_to_end(&mut buf).await.ok()?;
    Some(i32::from_le_bytes(buf.get(..4)?.try_into().ok()?))
}

/// Waits for the leader to exit, or kills the group when `control` interrupts.
async fn supervise(
    child: &mut Child,
    pgid: i32,
    control: &Control,
    grace: Duration,
) -> std::io::Result<(ExitStatus, Option<Interrupt>)> {
    let why = tokio::select! {
        status = child.wait() => return Ok((status?, None)),
        why = control.until_interrupted() => why,
    };
    let grace_end = Instant::now() + grace;
    let mut status = None;
    if why != Interrupt::ForceIncomplete {
        signal_group(pgid, libc::SIGTERM);
        let force = control.abort_signal().force_requested();
        let mut force = std::pin::pin!(force);
        tokio::select! {
            s = child.wait() => status = Some(s?),
            _ = tokio::time::sleep_until(grace_end) => {}
            _ = &mut force => {}
        }
        if status.is_some() {
            // The leader is gone; give the rest of the group the rest of the grace period.
            while group_alive(pgid)
                && Instant::now() < grace_end
                && control.interrupted() != Some(Interrupt::ForceIncomplete)
            {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                    _ = &mut force => {}
                }
            }
        }
    }
    if status.is_none() || group_alive(pgid) {
        signal_group(pgid, libc::SIGKILL);
    }
    let status = match status {
        Some(s) => s,
        None => child.wait().await?,
    };
    // An abort may have become a forceIncomplete meanwhile.
    Ok((status, Some(control.interrupted().unwrap_or(why))))
}

/// Reads one pipe to its end, emitting masked lines.
async fn pump<R: AsyncRead + Unpin>(reader: Option<R>, level: LogLevel, io: &StepIo<'_>) {
    let Some(mut reader) = reader else { return };
    let mut splitter = LineSplitter::new(io.masker, MAX_LINE_BYTES);
    let mut emit = |line: String| io.emit(level, line);
    let mut buf = vec![0u8; 8192];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => splitter.push(&buf[..n], &mut emit),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                io.note(LogLevel::Error, format!("steward: reading the step's output failed: {e}"));
                break;
            }
        }
    }
    splitter.finish(&mut emit);
}
