//! The step guard: a small process between a member and each step it runs, so that the step,
//! and everything it started, dies with the member even when the member is SIGKILLed.
//!
//! Why a process of its own: a SIGKILLed member runs no code, so only the kernel can stop its
//! steps, and it does so through `PR_SET_PDEATHSIG` (a signal sent to a process when the
//! thread that started it exits). Setting it needs code between fork and exec; in the member
//! that would make the standard library fork a multi-threaded process instead of calling
//! `posix_spawn`, and such a child deadlocked on a lock another thread held at the fork (seen
//! with the chaos harness's LD_PRELOADed libfiu; jepsen/README.md). So the member starts a
//! guard, `steward-step-guard __step-guard PARENT PROGRAM ARGS...` (or `steward` itself with
//! the same arguments; see [`use_this_binary`]), with `posix_spawn`, as the leader of a new
//! process group, and this single-threaded process:
//!
//! 1. asks for `SIGUSR1` when its parent dies, and checks the parent is still `PARENT` (it may
//!    have died before that); makes itself a child subreaper, so that the step's descendants
//!    whose parents die become its children rather than init's;
//! 2. starts the step as its child, in the same process group, with the environment, working
//!    directory and output it was given itself (stdin is `/dev/null`);
//! 3. on `SIGUSR1` kills every descendant it has with SIGKILL, found through /proc, including
//!    those that left the group (`setsid`, `setpgid`), then its group and itself;
//! 4. otherwise waits for the step and ends the same way: the same exit code, or the same
//!    signal. It survives a SIGTERM sent to the group (the member's abort), so that what the
//!    member sees is how the step ended, as without a guard. (An abort or a timeout reaches
//!    the group only: a descendant that left it outlives those, as in Rundeck.)
//!
//! Whether the step started is reported on the guard's stdin, which the member makes the
//! write end of a pipe: nothing before end of file means it started; otherwise the 4 bytes of
//! the `errno` of the failed start, and the member reports the step as not started, as when it
//! starts the step itself.
//!
//! The parent is the member's thread that started the guard: a worker of the async runtime,
//! which lives as long as the member does.

use std::ffi::OsString;
use std::io::Write;
use std::os::fd::FromRawFd;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::OnceLock;

/// The argument that makes `steward` a step guard.
pub const ARG: &str = "__step-guard";

/// The guard program of this process's executors, once [`use_this_binary`] was called.
static PROGRAM: OnceLock<PathBuf> = OnceLock::new();

/// The running binary, even if its file was replaced or removed since it started (an
/// upgrade): the path is resolved by the child, whose /proc/self/exe is still this binary then.
const THIS_BINARY: &str = "/proc/self/exe";

/// The small guard program's name, next to the `steward` binary.
const GUARD_BINARY: &str = "steward-step-guard";

/// Makes the executors of this process (the `steward` binary) start every step through a
/// guard: `steward-step-guard` next to this binary when it is there, else this binary itself.
/// A guarded `/bin/true` took 0.86 ms of CPU with the small program and 1.89 ms with the whole
/// `steward` binary, which applies some 78 000 relocations at every start (`perf stat`,
/// BENCHMARKS.md, session 10). Without this (a library user, the in-process tests) steps
/// start directly and outlive a SIGKILLed process.
pub fn use_this_binary() {
    let small = std::env::current_exe().ok().map(|exe| exe.with_file_name(GUARD_BINARY)).filter(|p| p.is_file());
    let _ = PROGRAM.set(small.unwrap_or_else(|| PathBuf::from(THIS_BINARY)));
}

/// The program to start as the guard `configured`: itself, unless it is the small program
/// [`use_this_binary`] chose and its file is gone (an upgrade removed it while this member
/// ran); then this binary, which is a guard too.
pub(crate) fn to_start(configured: &Path) -> &Path {
    if PROGRAM.get().is_some_and(|p| p == configured) && !configured.is_file() {
        Path::new(THIS_BINARY)
    } else {
        configured
    }
}

/// The guard program set for this process, if any.
pub(crate) fn program() -> Option<PathBuf> {
    PROGRAM.get().cloned()
}

/// The exit code when the guard cannot do its job (bad arguments): the shells' "cannot run".
const CANNOT_RUN: u8 = 127;

/// Runs the guard if the command line asks for it: `Some(code)` to exit with, `None` when the
/// process is an ordinary `steward` command.
pub fn run_if_requested() -> Option<ExitCode> {
    let mut args = std::env::args_os().skip(1);
    if args.next()? != ARG {
        return None;
    }
    let parent = args.next().and_then(|p| p.into_string().ok()).and_then(|p| p.parse::<libc::pid_t>().ok());
    let (Some(parent), Some(program)) = (parent, args.next()) else {
        eprintln!("steward: usage: steward {ARG} PARENT-PID PROGRAM [ARGS...]");
        return Some(ExitCode::from(CANNOT_RUN));
    };
    Some(guard(parent, program, args.collect()))
}

/// `SIGTERM`: meant for the step (the member signals the whole group); the guard waits on.
extern "C" fn ignore_signal(_: libc::c_int) {}

fn set_handler(signal: libc::c_int, handler: extern "C" fn(libc::c_int)) {
    // SAFETY: a zeroed sigaction is valid (empty mask, no flags); the handler is a plain
    // `extern "C"` function that makes no calls. A handler, unlike SIG_IGN, is reset to the
    // default by exec, so the step does not inherit it.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler as *const () as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(signal, &action, std::ptr::null_mut());
    }
}

/// The signals the guard waits for instead of handling them: `SIGUSR1` (the member is gone)
/// and `SIGCHLD` (a child ended). Blocked, they stay pending until `sigwaitinfo` takes them,
/// so neither can slip in between a check and a wait. The step does not inherit the mask:
/// the standard library gives a spawned program an empty one.
fn waited_signals() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set before sigaddset reads it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGUSR1);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        set
    }
}

/// The direct children of `pid` (every thread's), from /proc.
fn children_of(pid: libc::pid_t) -> Vec<libc::pid_t> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|list| list.split_whitespace().filter_map(|c| c.parse().ok()).collect::<Vec<_>>())
        .collect()
}

/// Kills every descendant of this guard, then the guard's whole group with the guard in it.
///
/// A descendant that left the step's process group (`setsid`, `setpgid`) is out of reach of
/// the group kill, but not of this: the guard is a child subreaper, so a descendant whose
/// parent dies becomes the guard's child rather than init's. Every live descendant therefore
/// has a live chain of parents up to the guard, and once the guard has no child left, it has
/// no descendant left. Each round kills what it finds and reaps what died; a process that
/// forked in between is found in the next round.
fn kill_everything() -> ! {
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    // Without /proc's children lists (a kernel without CONFIG_PROC_CHILDREN), the group is
    // all the guard can reach.
    if !std::path::Path::new(&format!("/proc/{me}/task/{me}/children")).exists() {
        // SAFETY: pid 0 is this process's own group, which the guard leads.
        unsafe { libc::kill(0, libc::SIGKILL) };
    }
    for _ in 0..1000 {
        let mut found = children_of(me);
        let mut i = 0;
        while i < found.len() {
            let grandchildren = children_of(found[i]);
            found.extend(grandchildren);
            i += 1;
        }
        for pid in &found {
            // SAFETY: plain syscall. The pid was in a children list a moment ago; for it to
            // name an unrelated process now, that descendant would have to die, be reaped by
            // its parent and the pid space wrap around in between.
            unsafe { libc::kill(*pid, libc::SIGKILL) };
        }
        // Reap whatever has died; ECHILD means no child is left, so no descendant is.
        loop {
            // SAFETY: a null status pointer is allowed.
            let r = unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) };
            if r > 0 {
                continue;
            }
            if r < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD) {
                // SAFETY: pid 0 is this process's own group, which the guard leads.
                unsafe { libc::kill(0, libc::SIGKILL) };
            }
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    // SAFETY: as above.
    unsafe { libc::kill(0, libc::SIGKILL) };
    std::process::abort()
}

fn guard(parent: libc::pid_t, program: OsString, args: Vec<OsString>) -> ExitCode {
    // The member starts the guard as a group leader; anyone else may not, and killing "our
    // group" must never reach the caller's.
    // SAFETY: plain syscalls without pointers.
    unsafe {
        if libc::getpgrp() != libc::getpid() && libc::setpgid(0, 0) != 0 {
            eprintln!("steward: the step guard cannot lead a process group: {}", std::io::Error::last_os_error());
            return ExitCode::from(CANNOT_RUN);
        }
    }
    set_handler(libc::SIGTERM, ignore_signal);
    let waited = waited_signals();
    // SAFETY: plain syscalls; `waited` is a valid, initialised set.
    unsafe {
        // An ignored SIGCHLD (inherited through exec) would reap children unseen.
        libc::signal(libc::SIGCHLD, libc::SIG_DFL);
        libc::sigprocmask(libc::SIG_BLOCK, &waited, std::ptr::null_mut());
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0);
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGUSR1 as libc::c_ulong, 0, 0, 0);
        // The parent may have died before the line above: then nothing would ever tell us.
        if libc::getppid() != parent {
            libc::kill(0, libc::SIGKILL);
        }
    }
    // SAFETY: fd 0 is the write end of the member's report pipe (see the module docs), owned
    // by nothing else in this process.
    let mut report = unsafe { std::fs::File::from_raw_fd(0) };
    let child = match Command::new(&program).args(&args).stdin(Stdio::null()).spawn() {
        Ok(child) => child,
        Err(e) => {
            let errno = e.raw_os_error().unwrap_or(libc::EIO);
            let _ = report.write_all(&errno.to_le_bytes());
            return ExitCode::from(CANNOT_RUN);
        }
    };
    // End of file on the pipe: the step started.
    drop(report);
    let step = child.id() as libc::pid_t;
    let status = loop {
        // SAFETY: `waited` is a valid set; a null info pointer is allowed.
        let signal = unsafe { libc::sigwaitinfo(&waited, std::ptr::null_mut()) };
        if signal == libc::SIGUSR1 {
            kill_everything();
        }
        // A SIGCHLD, or an interruption: reap every child that ended. Orphans of the step
        // (this guard is their subreaper) end here too, and are only reaped.
        let mut ended = None;
        loop {
            let mut raw = 0;
            // SAFETY: `raw` is a valid place for the status.
            let pid = unsafe { libc::waitpid(-1, &mut raw, libc::WNOHANG) };
            if pid <= 0 {
                break;
            }
            if pid == step {
                ended = Some(std::process::ExitStatus::from_raw(raw));
            }
        }
        if let Some(status) = ended {
            break status;
        }
    };
    if let Some(code) = status.code() {
        return ExitCode::from(u8::try_from(code).unwrap_or(CANNOT_RUN));
    }
    if let Some(signal) = status.signal() {
        // End by the same signal, without a core dump of the guard itself.
        // SAFETY: plain syscalls; the rlimit is a valid local value.
        unsafe {
            let no_core = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            libc::setrlimit(libc::RLIMIT_CORE, &no_core);
            libc::signal(signal, libc::SIG_DFL);
            libc::raise(signal);
        }
        // A signal whose default is not to terminate (it cannot have ended the step, but
        // still): the shells' convention.
        return ExitCode::from(u8::try_from(128 + signal).unwrap_or(CANNOT_RUN));
    }
    ExitCode::from(CANNOT_RUN)
}
