//! The machine side: running system tools, checking that the harness can run at all (root, the
//! tools it needs), the register of everything a run creates so that it can be torn down, even
//! by a later `jepsen --cleanup` when this run was killed outright, and SIGINT/SIGTERM.
//!
//! Every resource is recorded *before* it is used and in creation order, and torn down in
//! reverse order: processes in our namespaces, mounts, loop devices, namespaces, directories.
//! The register is also written to `/run/steward-jepsen/<run id>.json`, so that resources of a
//! harness that died without tearing down (SIGKILL, power) can be found and removed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Why the harness cannot run, or a system command failed.
#[derive(Debug, thiserror::Error)]
pub enum SysError {
    #[error("the harness needs root (network namespaces, nftables, loop devices): run it with sudo")]
    NotRoot,
    #[error("missing tools: {}; install them with: apt-get install -y {}", .0.iter().map(|t| t.0.as_str()).collect::<Vec<_>>().join(", "), .0.iter().map(|t| t.1.as_str()).collect::<Vec<_>>().join(" "))]
    MissingTools(Vec<(String, String)>),
    #[error("`{cmd}` failed ({status}): {stderr}")]
    Command { cmd: String, status: String, stderr: String },
    #[error("`{cmd}` could not be started: {source}")]
    Spawn { cmd: String, source: std::io::Error },
    #[error("interrupted")]
    Interrupted,
}

/// Runs `cmd args…`, returning its stdout; a non-zero exit is an error carrying stderr.
pub fn run(cmd: &str, args: &[&str]) -> Result<String, SysError> {
    run_input(cmd, args, None)
}

/// Like [`run`], with `input` on stdin.
pub fn run_input(cmd: &str, args: &[&str], input: Option<&str>) -> Result<String, SysError> {
    use std::io::Write;
    let line = format!("{cmd} {}", args.join(" "));
    let mut child = Command::new(cmd)
        .args(args)
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| SysError::Spawn { cmd: line.clone(), source })?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(text.as_bytes()).map_err(|source| SysError::Spawn { cmd: line.clone(), source })?;
    }
    let out = child.wait_with_output().map_err(|source| SysError::Spawn { cmd: line.clone(), source })?;
    if !out.status.success() {
        return Err(SysError::Command {
            cmd: line,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Fails unless the process runs as root.
pub fn require_root() -> Result<(), SysError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(SysError::NotRoot);
    }
    Ok(())
}

/// A tool the harness runs, and the Debian package that has it.
#[derive(Debug, Clone, Copy)]
pub struct Tool {
    /// A command on PATH, or an absolute path to a file (a preload library).
    pub name: &'static str,
    pub package: &'static str,
}

pub const IP: Tool = Tool { name: "ip", package: "iproute2" };
pub const NFT: Tool = Tool { name: "nft", package: "nftables" };
pub const LIBFAKETIME: Tool =
    Tool { name: "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1", package: "libfaketime" };
pub const FIU_CTRL: Tool = Tool { name: "fiu-ctrl", package: "fiu-utils" };
pub const FIU_RUN_PRELOAD: Tool = Tool { name: "/usr/lib/fiu/fiu_run_preload.so", package: "fiu-utils" };
pub const FIU_POSIX_PRELOAD: Tool = Tool { name: "/usr/lib/fiu/fiu_posix_preload.so", package: "fiu-utils" };
pub const LOSETUP: Tool = Tool { name: "losetup", package: "mount" };
pub const MKFS_EXT4: Tool = Tool { name: "mkfs.ext4", package: "e2fsprogs" };
pub const MOUNT: Tool = Tool { name: "mount", package: "mount" };

fn on_path(name: &str) -> bool {
    if name.starts_with('/') {
        return Path::new(name).exists();
    }
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).chain(["/usr/sbin".into(), "/sbin".into()]).any(|d| d.join(name).is_file()))
        .unwrap_or(false)
}

/// Fails naming every missing tool and the packages to install.
pub fn require_tools(tools: &[Tool]) -> Result<(), SysError> {
    let mut missing: Vec<(String, String)> = Vec::new();
    for t in tools {
        if !on_path(t.name) && !missing.iter().any(|(n, _)| n == t.name) {
            missing.push((t.name.to_string(), t.package.to_string()));
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(SysError::MissingTools(missing))
    }
}

// ---------------------------------------------------------------------------------------------
// Signals

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    // Only an atomic store: the one thing a signal handler may safely do here.
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Turns SIGINT and SIGTERM into a flag the run polls, so that an interrupted run still heals,
/// stops its members and tears down. Installed first thing in `main`.
pub fn install_signal_flag() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic; sigaction with a zeroed struct and an
        // empty mask is the documented way to install it.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// True once SIGINT or SIGTERM arrived.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Fails with [`SysError::Interrupted`] once a signal arrived (for the synchronous set-up).
pub fn check_interrupt() -> Result<(), SysError> {
    if interrupted() {
        Err(SysError::Interrupted)
    } else {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The register of resources

/// Something a run created and must remove.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", content = "name", rename_all = "lowercase")]
pub enum Resource {
    /// A named network namespace (`ip netns`); processes inside it are killed first.
    Netns(String),
    /// A directory (data dirs, images); removed recursively.
    Dir(PathBuf),
    /// A loop device (`/dev/loopN`).
    Loop(String),
    /// A mount point.
    Mount(PathBuf),
}

/// The state file of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StateFile {
    run_id: String,
    harness_pid: u32,
    resources: Vec<Resource>,
}

/// Where state files live.
pub const STATE_DIR: &str = "/run/steward-jepsen";

/// Everything one run created, in creation order.
pub struct Resources {
    run_id: String,
    file: PathBuf,
    list: Mutex<Vec<Resource>>,
}

impl Resources {
    pub fn new(run_id: &str) -> std::io::Result<Resources> {
        std::fs::create_dir_all(STATE_DIR)?;
        let r = Resources {
            run_id: run_id.to_string(),
            file: Path::new(STATE_DIR).join(format!("{run_id}.json")),
            list: Mutex::new(Vec::new()),
        };
        r.save(&[]);
        Ok(r)
    }

    fn save(&self, list: &[Resource]) {
        let state =
            StateFile { run_id: self.run_id.clone(), harness_pid: std::process::id(), resources: list.to_vec() };
        // Best effort: the in-memory register is what this run's own teardown uses.
        let _ = std::fs::write(&self.file, serde_json::to_vec_pretty(&state).unwrap_or_default());
    }

    /// Records `r` (before it is created, so that a crash in between still finds it).
    pub fn add(&self, r: Resource) {
        let mut list = self.list.lock().unwrap_or_else(|p| p.into_inner());
        if !list.contains(&r) {
            list.push(r);
            self.save(&list);
        }
    }

    /// Forgets `r` after it was removed by the run itself (a remounted image).
    pub fn remove(&self, r: &Resource) {
        let mut list = self.list.lock().unwrap_or_else(|p| p.into_inner());
        list.retain(|x| x != r);
        self.save(&list);
    }

    /// Removes everything, newest first. Returns what could not be removed.
    pub fn teardown(&self) -> Vec<String> {
        let list = std::mem::take(&mut *self.list.lock().unwrap_or_else(|p| p.into_inner()));
        let problems = teardown_list(&list);
        if problems.is_empty() {
            let _ = std::fs::remove_file(&self.file);
            // Only when no other run's state file is in it.
            let _ = std::fs::remove_dir(STATE_DIR);
        } else {
            self.save(&list);
        }
        problems
    }
}

/// Kills every process in namespace `ns` (by pid, as `ip netns pids` lists them) and waits
/// until none is left.
pub fn kill_ns_processes(ns: &str) {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let pids: Vec<i32> = run(IP.name, &["netns", "pids", ns])
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .filter(|p| *p as u32 != std::process::id())
            .collect();
        if pids.is_empty() || Instant::now() >= until {
            return;
        }
        for pid in pids {
            // SAFETY: kill has no memory-safety preconditions; the pid is one the kernel says
            // lives in our own namespace.
            unsafe {
                libc::kill(pid, libc::SIGCONT);
                libc::kill(pid, libc::SIGKILL);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn teardown_list(list: &[Resource]) -> Vec<String> {
    let mut problems = Vec::new();
    // Processes first (they hold mounts and sockets), in every namespace.
    for r in list {
        if let Resource::Netns(ns) = r {
            kill_ns_processes(ns);
        }
    }
    for r in list.iter().rev() {
        let res = match r {
            Resource::Netns(ns) => {
                if Path::new("/run/netns").join(ns).exists() {
                    run(IP.name, &["netns", "delete", ns]).map(|_| ())
                } else {
                    Ok(())
                }
            }
            Resource::Mount(p) => {
                if is_mounted(p) {
                    run("umount", &[&p.to_string_lossy()])
                        .or_else(|_| run("umount", &["-l", &p.to_string_lossy()]))
                        .map(|_| ())
                } else {
                    Ok(())
                }
            }
            Resource::Loop(dev) => {
                if run(LOSETUP.name, &[dev]).is_ok() {
                    run(LOSETUP.name, &["-d", dev]).map(|_| ())
                } else {
                    Ok(())
                }
            }
            Resource::Dir(d) => match std::fs::remove_dir_all(d) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    problems.push(format!("remove {}: {e}", d.display()));
                    Ok(())
                }
                _ => Ok(()),
            },
        };
        if let Err(e) = res {
            problems.push(e.to_string());
        }
    }
    problems
}

/// True when `p` is a mount point.
pub fn is_mounted(p: &Path) -> bool {
    let target = p.to_string_lossy();
    std::fs::read_to_string("/proc/self/mounts")
        .map(|m| m.lines().any(|l| l.split_whitespace().nth(1) == Some(target.as_ref())))
        .unwrap_or(false)
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Removes what runs that are no longer alive left behind. Returns a line per run cleaned.
pub fn cleanup_stale() -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(STATE_DIR) else { return Ok(out) };
    for e in entries.flatten() {
        let path = e.path();
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        let Ok(state) = serde_json::from_str::<StateFile>(&text) else { continue };
        if state.harness_pid != std::process::id() && pid_alive(state.harness_pid) {
            out.push(format!("run {} is still running (pid {}); left alone", state.run_id, state.harness_pid));
            continue;
        }
        let problems = teardown_list(&state.resources);
        if problems.is_empty() {
            std::fs::remove_file(&path)?;
            let _ = std::fs::remove_dir(STATE_DIR);
            out.push(format!("run {}: removed {} resources", state.run_id, state.resources.len()));
        } else {
            out.push(format!("run {}: could not remove: {}", state.run_id, problems.join("; ")));
        }
    }
    Ok(out)
}

/// Runs of which state files exist whose harness is gone (what `--cleanup` would remove).
pub fn stale_runs() -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(STATE_DIR) else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|t| serde_json::from_str::<StateFile>(&t).ok())
        .filter(|s| !pid_alive(s.harness_pid))
        .map(|s| s.run_id)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_tools_are_named_with_their_packages() {
        let err = require_tools(&[
            Tool { name: "definitely-not-a-tool-xyz", package: "pkg-a" },
            Tool { name: "/nonexistent/lib.so", package: "pkg-b" },
            Tool { name: "sh", package: "dash" },
        ])
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("definitely-not-a-tool-xyz") && msg.contains("apt-get install -y pkg-a pkg-b"), "{msg}");
        assert!(!msg.contains("dash"));
    }

    #[test]
    fn a_failing_command_reports_its_stderr() {
        let err = run("sh", &["-c", "echo boom >&2; exit 3"]).unwrap_err();
        assert!(err.to_string().contains("boom"), "{err}");
        assert_eq!(run_input("cat", &[], Some("hi")).unwrap(), "hi");
    }
}
