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
//! process group, and this process (single-threaded, unless a preloaded library such as the
//! chaos harness's libfiu starts a thread in it):
//!
//! 1. asks for `SIGUSR1` when its parent dies, and checks the parent is still `PARENT` (it may
//!    have died before that); makes itself a child subreaper, so that the step's descendants
//!    whose parents die become its children rather than init's;
//! 2. starts the step as its child, in the same process group, with the environment, working
//!    directory and output it was given itself (stdin is `/dev/null`);
//! 3. on `SIGUSR1` kills every descendant it has with SIGKILL, found through /proc, including
//!    those that left the group (`setsid`, `setpgid`), then its group and itself. This runs
//!    in the signal handler, with async-signal-safe calls only, so that it does not matter
//!    which thread the kernel hands the signal to. (Waiting for `SIGUSR1` and `SIGCHLD` with
//!    `sigwaitinfo` instead left steps "running" after they had ended in three chaos runs of
//!    three with libfiu preloaded, most likely because a `SIGCHLD` went to libfiu's thread,
//!    which discards it; with the handler, none in the runs after);
//! 4. otherwise waits for the step and ends the same way: the same exit code, or the same
//!    signal. Meanwhile it reaps the step's orphans that end (from its `SIGCHLD` handler),
//!    so that a long step that keeps leaving processes behind leaves no zombies. It survives
//!    a SIGTERM sent to the group (the member's abort), so that what the member sees is how
//!    the step ended, as without a guard. (An abort or a timeout reaches the group only: a
//!    descendant that left it outlives those, as in Rundeck.)
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

/// The step's pid, once it is started (0 before).
static STEP: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// `SIGCHLD`: reaps the step's orphans that ended (this guard is their subreaper), so that a
/// long step that keeps leaving processes behind does not fill the process table with
/// zombies. The step itself is left for the main thread's `wait`, which needs its status:
/// `WNOWAIT` looks at an ended child without reaping it. Only async-signal-safe calls.
extern "C" fn on_child(_: libc::c_int) {
    let step = STEP.load(std::sync::atomic::Ordering::SeqCst);
    if step == 0 {
        return;
    }
    // SAFETY: waitid and waitpid are async-signal-safe; `info` is a valid place for the result.
    unsafe {
        // Keep errno as the interrupted code left it.
        let saved = *libc::__errno_location();
        loop {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let r = libc::waitid(libc::P_ALL, 0, &mut info, libc::WEXITED | libc::WNOHANG | libc::WNOWAIT);
            let pid = info.si_pid();
            if r != 0 || pid == 0 || pid == step {
                break;
            }
            libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG);
        }
        *libc::__errno_location() = saved;
    }
}

/// `SIGUSR1`: the member is gone. Runs on whichever thread the kernel picks (a library
/// loaded into the guard may have started threads of its own), and never returns.
extern "C" fn on_parent_death(_: libc::c_int) {
    kill_everything()
}

fn set_handler(signal: libc::c_int, handler: extern "C" fn(libc::c_int)) {
    // SAFETY: a zeroed sigaction is valid (empty mask, no flags); the handlers only make
    // async-signal-safe calls. A handler, unlike SIG_IGN, is reset to the default by exec,
    // so the step does not inherit it.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler as *const () as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(signal, &action, std::ptr::null_mut());
    }
}

/// The most descendants one round of [`kill_everything`] finds; more are found in the next.
const MAX_FOUND: usize = 2048;

/// Appends the direct children of `pid` (those its main thread started) to `found[*n..]`,
/// read from `/proc/PID/task/PID/children`. Only async-signal-safe calls: it runs in a signal
/// handler.
fn children_of(pid: libc::pid_t, found: &mut [libc::pid_t; MAX_FOUND], n: &mut usize) {
    // "/proc/" PID "/task/" PID "/children" NUL, built without allocating.
    let mut path = [0u8; 64];
    let mut len = 0;
    let mut put = |bytes: &[u8]| {
        path[len..len + bytes.len()].copy_from_slice(bytes);
        len += bytes.len();
    };
    let mut digits = [0u8; 12];
    let mut d = digits.len();
    let mut v = pid.unsigned_abs();
    loop {
        d -= 1;
        digits[d] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    put(b"/proc/");
    put(&digits[d..]);
    put(b"/task/");
    put(&digits[d..]);
    put(b"/children\0");
    // SAFETY: `path` is NUL-terminated; open, read and close are async-signal-safe.
    let fd = unsafe { libc::open(path.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return;
    }
    // The kernel writes each pid followed by a space.
    let mut buf = [0u8; 4096];
    let mut current: Option<libc::pid_t> = None;
    loop {
        // SAFETY: `buf` is valid for `buf.len()` bytes.
        let got = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if got <= 0 {
            break;
        }
        for &b in &buf[..got as usize] {
            if b.is_ascii_digit() {
                current = Some(current.unwrap_or(0).saturating_mul(10).saturating_add(libc::pid_t::from(b - b'0')));
            } else if let Some(child) = current.take().filter(|_| *n < MAX_FOUND) {
                found[*n] = child;
                *n += 1;
            }
        }
    }
    // SAFETY: `fd` was opened above.
    unsafe { libc::close(fd) };
}

/// Kills every descendant of this guard, then the guard's whole group with the guard in it.
///
/// A descendant that left the step's process group (`setsid`, `setpgid`) is out of reach of
/// the group kill, but not of this: the guard is a child subreaper, so a descendant whose
/// parent dies becomes the guard's child rather than init's. Every live descendant therefore
/// has a live chain of parents up to the guard, and once the guard has no child left, it has
/// no descendant left. Each round kills what it finds and reaps what died; a process that was
/// missed (it forked in between, or was started by a thread other than its parent's main
/// one) is the guard's child by the next round. Only async-signal-safe calls: this runs in
/// the `SIGUSR1` handler.
fn kill_everything() -> ! {
    // SAFETY: every call below is an async-signal-safe system call on plain values.
    unsafe {
        let me = libc::getpid();
        for _ in 0..1000 {
            let mut found = [0 as libc::pid_t; MAX_FOUND];
            let mut n = 0;
            children_of(me, &mut found, &mut n);
            let mut i = 0;
            while i < n {
                let pid = found[i];
                children_of(pid, &mut found, &mut n);
                i += 1;
            }
            // A pid read a moment ago from a children list: for it to name an unrelated
            // process now, that descendant would have to die, be reaped by its parent and
            // the pid space wrap around in between.
            for &pid in &found[..n] {
                libc::kill(pid, libc::SIGKILL);
            }
            // Reap whatever died; ECHILD: no child is left, so no descendant is.
            loop {
                let r = libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG | libc::__WALL);
                if r > 0 {
                    continue;
                }
                if r < 0 && *libc::__errno_location() == libc::ECHILD {
                    libc::kill(0, libc::SIGKILL);
                }
                break;
            }
            let pause = libc::timespec { tv_sec: 0, tv_nsec: 1_000_000 };
            libc::nanosleep(&pause, std::ptr::null_mut());
        }
        libc::kill(0, libc::SIGKILL);
        libc::_exit(i32::from(CANNOT_RUN))
    }
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
    set_handler(libc::SIGUSR1, on_parent_death);
    set_handler(libc::SIGTERM, ignore_signal);
    // Also replaces an ignored SIGCHLD inherited through exec, which would reap the step
    // before the wait below.
    set_handler(libc::SIGCHLD, on_child);
    // SAFETY: plain syscalls without pointers.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0);
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGUSR1 as libc::c_ulong, 0, 0, 0);
        // The parent may have died before the line above: then nothing would ever tell us.
        if libc::getppid() != parent {
            kill_everything();
        }
    }
    // SAFETY: fd 0 is the write end of the member's report pipe (see the module docs), owned
    // by nothing else in this process.
    let mut report = unsafe { std::fs::File::from_raw_fd(0) };
    let mut child = match Command::new(&program).args(&args).stdin(Stdio::null()).spawn() {
        Ok(child) => child,
        Err(e) => {
            let errno = e.raw_os_error().unwrap_or(libc::EIO);
            let _ = report.write_all(&errno.to_le_bytes());
            return ExitCode::from(CANNOT_RUN);
        }
    };
    // End of file on the pipe: the step started.
    drop(report);
    STEP.store(child.id() as libc::pid_t, std::sync::atomic::Ordering::SeqCst);
    // Orphans that ended before the line above are reaped at the next SIGCHLD, or with the
    // guard.
    let status = match child.wait() {
        Ok(status) => status,
        Err(e) => {
            eprintln!("steward: waiting for the step failed: {e}");
            kill_everything();
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
