//! The members: one real `steward serve` process per host, started inside the host's network
//! namespace, and everything the nemeses do to a process or its disk.
//!
//! A member is started with `setns` into its namespace in the child just before `exec` (not
//! through `ip netns exec`, which would add a mount namespace and a wrapper process), so the
//! pid the harness holds is steward's own and a loop mount made by the harness is the one the
//! member writes to. Each member runs in its own process group (a Ctrl-C at the terminal
//! reaches the harness only, which then stops members in order) and dies with the harness
//! (`PR_SET_PDEATHSIG`), as a backstop to the teardown.
//!
//! Optional preloads, chosen by the nemeses in use:
//! - libfaketime with `FAKETIME_DONT_FAKE_MONOTONIC=1` (a tokio binary hangs when monotonic
//!   time is faked) and a per-member timestamp file the clock nemesis rewrites;
//! - libfiu's run and POSIX preloads, with a per-member control FIFO for `fiu-ctrl`.
//!
//! A member's command line never changes between restarts, as with a unit file: the first
//! member creates the cluster, the others start with `--join` through it (steward ignores the
//! flag once the member belongs to the cluster). A member wiped and re-added gets a fresh data
//! dir, hence a new identity, and joins through a member that is up at that moment.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use serde::Serialize;
use serde_json::json;
use tokio::sync::Mutex;

use crate::client::{Api, Cred, API};
use crate::history::{Op, OpType, Process, Recorder};
use crate::net::Host;
use crate::sys::{self, Resource, Resources, FIU_CTRL, FIU_POSIX_PRELOAD, FIU_RUN_PRELOAD, LIBFAKETIME, LOSETUP};

/// How members are started.
#[derive(Debug, Clone)]
pub struct MemberOpts {
    pub steward: PathBuf,
    pub secret: String,
    pub token: String,
    /// The key storage master key (64 hex digits) every member is given.
    pub master_key: String,
    /// Preload libfaketime (clock nemesis).
    pub faketime: bool,
    /// Preload libfiu (disk nemesis).
    pub fiu: bool,
    /// Put each data dir on its own loop-mounted ext4 image (power-loss nemesis).
    pub loop_images: bool,
    /// Give each member a file for steward's test-only network fault layer (netfault nemesis).
    pub net_faults: bool,
    /// steward's `snapshot-every`, low so that snapshots and their installation happen in runs.
    pub snapshot_every: u64,
    /// Scratch space: data dirs, images, FIFOs (a registered resource).
    pub work: PathBuf,
    /// The run folder: each member's log and config go to `<out>/<name>/`.
    pub out: PathBuf,
}

/// What the harness believes of a member process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Not running (never started, killed, or exited).
    Down,
    Running,
    /// SIGSTOPped.
    Paused,
    /// Its removal from the cluster was acknowledged; it is not restarted until it is wiped
    /// and added again.
    Removed,
}

struct Slot {
    host: Host,
    state: State,
    child: Option<tokio::process::Child>,
    data_dir: PathBuf,
    /// (image file, mount point, loop device) when on a loop-mounted image.
    image: Option<(PathBuf, PathBuf, String)>,
    clock_file: PathBuf,
    /// The file `STEWARD_TEST_NET_FAULTS` names (delay and duplication of its outgoing calls).
    net_fault_file: PathBuf,
    fiu_prefix: PathBuf,
    /// `--join URL` of the command line (`None` for the member that creates the cluster).
    join: Option<String>,
    uuid: Option<String>,
    /// Why the next exit of the process is expected (removal, an injected disk fault).
    expect_exit: Option<String>,
    starts: u32,
}

/// The members of the run.
pub struct Members {
    opts: MemberOpts,
    slots: Vec<Mutex<Slot>>,
    recorder: Arc<Recorder>,
    api: Arc<Api>,
    res: Arc<Resources>,
}

/// How long a member may take to become healthy after it starts.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

impl Members {
    /// Prepares the members' directories (and images), without starting anything.
    pub fn new(
        opts: MemberOpts,
        hosts: &[Host],
        recorder: Arc<Recorder>,
        api: Arc<Api>,
        res: Arc<Resources>,
    ) -> anyhow::Result<Members> {
        std::fs::create_dir_all(&opts.work)?;
        let mut slots = Vec::new();
        for (i, host) in hosts.iter().enumerate() {
            sys::check_interrupt()?;
            std::fs::create_dir_all(opts.out.join(&host.name))?;
            std::fs::write(
                opts.out.join(&host.name).join("steward.toml"),
                format!("# written by the jepsen harness\n[cluster]\nsnapshot-every = {}\n", opts.snapshot_every),
            )?;
            let image = if opts.loop_images { Some(make_image(&opts.work, &host.name, &res)?) } else { None };
            let data_dir = match &image {
                Some((_, mnt, _)) => mnt.join("data"),
                None => opts.work.join(&host.name).join("data"),
            };
            std::fs::create_dir_all(&data_dir)?;
            let clock_file = opts.work.join(format!("{}.faketime", host.name));
            std::fs::write(&clock_file, "+0\n")?;
            let net_fault_file = opts.work.join(format!("{}.netfaults", host.name));
            std::fs::write(&net_fault_file, "{}\n")?;
            slots.push(Mutex::new(Slot {
                host: host.clone(),
                state: State::Down,
                child: None,
                data_dir,
                image,
                clock_file,
                net_fault_file,
                fiu_prefix: opts.work.join(format!("{}.fiu", host.name)),
                join: (i > 0).then(|| hosts[0].url()),
                uuid: None,
                expect_exit: None,
                starts: 0,
            }));
        }
        Ok(Members { opts, slots, recorder, api, res })
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn log_path(&self, name: &str) -> PathBuf {
        self.opts.out.join(name).join("steward.log")
    }

    pub async fn host(&self, i: usize) -> Host {
        self.slots[i].lock().await.host.clone()
    }

    pub async fn state(&self, i: usize) -> State {
        self.slots[i].lock().await.state
    }

    pub async fn states(&self) -> Vec<State> {
        let mut out = Vec::new();
        for s in &self.slots {
            out.push(s.lock().await.state);
        }
        out
    }

    pub async fn uuid(&self, i: usize) -> Option<String> {
        self.slots[i].lock().await.uuid.clone()
    }

    /// Data dirs, for the final secret scan.
    pub async fn data_dirs(&self) -> Vec<(String, PathBuf)> {
        let mut out = Vec::new();
        for s in &self.slots {
            let s = s.lock().await;
            out.push((s.host.name.clone(), s.data_dir.clone()));
        }
        out
    }

    fn spawn(&self, slot: &mut Slot, admin: bool) -> anyhow::Result<()> {
        // Checkers need to know where a process's life begins: a state machine that crashed may
        // restart behind what it had applied (sled keeps a prefix; the log is the durable record).
        self.recorder.record(
            Op::new(OpType::Info, Process::Named("monitor".into()), "cluster", "start")
                .node(slot.host.name.clone())
                .value(json!({ "node": slot.host.name })),
        );
        let o = &self.opts;
        let dir = o.out.join(&slot.host.name);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("steward.log"))?;
        let mut cmd = tokio::process::Command::new(&o.steward);
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(&slot.data_dir)
            .arg("--http")
            .arg(slot.host.http_addr())
            .arg("--raft")
            .arg(slot.host.raft_addr())
            .arg("--config")
            .arg(dir.join("steward.toml"));
        if let Some(j) = &slot.join {
            cmd.arg("--join").arg(j);
        }
        // A clean environment: nothing of the operator's STEWARD_* or RUST_LOG leaks in.
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()))
            .env("STEWARD_CLUSTER_SECRET", &o.secret)
            .env("STEWARD_MASTER_KEY", &o.master_key)
            .env("STEWARD_LOG", "info,openraft=warn");
        if admin {
            cmd.env("STEWARD_ADMIN_TOKEN", &o.token);
        }
        if o.net_faults {
            cmd.env("STEWARD_TEST_NET_FAULTS", &slot.net_fault_file);
        }
        let mut preload = Vec::new();
        if o.fiu {
            preload.push(FIU_RUN_PRELOAD.name.to_string());
            preload.push(FIU_POSIX_PRELOAD.name.to_string());
            cmd.env("FIU_CTRL_FIFO", &slot.fiu_prefix).env("FIU_ENABLE", "");
        }
        if o.faketime {
            preload.push(LIBFAKETIME.name.to_string());
            cmd.env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
                .env("FAKETIME_TIMESTAMP_FILE", &slot.clock_file)
                // Re-read the offset at most once a second: cheap, and fast enough for strobes.
                .env("FAKETIME_CACHE_DURATION", "1");
        }
        if !preload.is_empty() {
            cmd.env("LD_PRELOAD", preload.join(" "));
        }
        cmd.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log).kill_on_drop(true).process_group(0);
        let ns = File::open(format!("/run/netns/{}", slot.host.ns)).context("open the member's namespace")?;
        let fd = ns.as_raw_fd();
        // SAFETY: between fork and exec only async-signal-safe calls: setns and prctl.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().with_context(|| format!("start {}", o.steward.display()))?;
        drop(ns);
        slot.child = Some(child);
        slot.state = State::Running;
        slot.starts += 1;
        slot.expect_exit = None;
        Ok(())
    }

    /// Starts member `i` if it is down (a removed member is not restarted).
    pub async fn start(&self, i: usize) -> anyhow::Result<bool> {
        let mut s = self.slots[i].lock().await;
        if s.state != State::Down {
            return Ok(false);
        }
        let admin = s.join.is_none();
        self.spawn(&mut s, admin)?;
        Ok(true)
    }

    /// Waits until member `i` answers `/health` with 200, fails early when it exits.
    pub async fn wait_healthy(&self, i: usize, timeout: Duration) -> anyhow::Result<()> {
        let until = Instant::now() + timeout;
        let host = self.host(i).await;
        loop {
            let res = self
                .api
                .request(&host, reqwest::Method::GET, "/health", &Cred::None, None, Some(Duration::from_secs(1)))
                .await;
            if res.as_ref().is_ok_and(|a| a.status == 200) {
                return Ok(());
            }
            {
                let mut s = self.slots[i].lock().await;
                let exited = match s.child.as_mut() {
                    Some(c) => c.try_wait().ok().flatten().map(|st| st.to_string()),
                    // The monitor reaped it already (and recorded the exit in the history).
                    None => Some("an exit status".to_string()),
                };
                if let Some(status) = exited {
                    s.child = None;
                    if s.state != State::Removed {
                        s.state = State::Down;
                    }
                    bail!("{} exited with {status} before it was healthy:\n{}", host.name, self.log_tail(&host.name));
                }
            }
            if Instant::now() >= until || sys::interrupted() {
                bail!("{} not healthy within {:?}:\n{}", host.name, timeout, self.log_tail(&host.name));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// True when member `i` runs and its current process has logged that its Raft stopped on a
    /// fatal error: it is shutting down, and will exit once its in-flight requests end.
    pub async fn dying(&self, i: usize) -> bool {
        let name = {
            let s = self.slots[i].lock().await;
            if s.state != State::Running {
                return false;
            }
            s.host.name.clone()
        };
        let text = std::fs::read_to_string(self.log_path(&name)).unwrap_or_default();
        let started = text.rfind("steward member started");
        let fatal = text.rfind("Raft stopped on a fatal error");
        matches!((started, fatal), (Some(s), Some(f)) if f > s) || (started.is_none() && fatal.is_some())
    }

    /// The last lines of a member's log, for error messages.
    pub fn log_tail(&self, name: &str) -> String {
        let text = std::fs::read_to_string(self.log_path(name)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Asks member `i` for its uuid and remembers it.
    pub async fn learn_uuid(&self, i: usize) -> anyhow::Result<String> {
        let host = self.host(i).await;
        let a = self
            .api
            .request(&host, reqwest::Method::GET, &format!("{API}/system/info"), &Cred::Admin, None, None)
            .await
            .map_err(|e| anyhow!("{}: system info: {e}", host.name))?;
        let uuid = a.body["system"]["rundeck"]["serverUUID"]
            .as_str()
            .ok_or_else(|| anyhow!("{}: system info without serverUUID: {}", host.name, a.error()))?
            .to_string();
        self.slots[i].lock().await.uuid = Some(uuid.clone());
        Ok(uuid)
    }

    /// SIGKILLs member `i` and reaps it. Returns whether it was running.
    pub async fn kill(&self, i: usize) -> bool {
        let mut s = self.slots[i].lock().await;
        let Some(mut child) = s.child.take() else { return false };
        let _ = child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
        // Checkers need to know when a member is down, whatever step killed it (a step may fail
        // after its kill and leave it down until the final heal): down from here to its next
        // `start`.
        self.recorder.record(
            Op::new(OpType::Info, Process::Named("monitor".into()), "cluster", "killed")
                .node(s.host.name.clone())
                .value(json!({ "node": s.host.name })),
        );
        if s.state != State::Removed {
            s.state = State::Down;
        }
        true
    }

    fn signal(slot: &Slot, sig: libc::c_int) -> bool {
        match slot.child.as_ref().and_then(|c| c.id()) {
            Some(pid) => {
                // SAFETY: the pid is our own unreaped child (reaping happens under this lock).
                unsafe { libc::kill(pid as i32, sig) == 0 }
            }
            None => false,
        }
    }

    /// SIGSTOPs member `i` if it runs.
    pub async fn pause(&self, i: usize) -> bool {
        let mut s = self.slots[i].lock().await;
        if s.state == State::Running && Self::signal(&s, libc::SIGSTOP) {
            s.state = State::Paused;
            return true;
        }
        false
    }

    /// SIGCONTs member `i` if it is paused.
    pub async fn resume(&self, i: usize) -> bool {
        let mut s = self.slots[i].lock().await;
        if s.state == State::Paused {
            Self::signal(&s, libc::SIGCONT);
            s.state = State::Running;
            return true;
        }
        false
    }

    /// Stops member `i` with SIGTERM (then SIGKILL after `grace`); returns the exit status.
    pub async fn terminate(&self, i: usize, grace: Duration) -> Option<std::process::ExitStatus> {
        let mut s = self.slots[i].lock().await;
        Self::signal(&s, libc::SIGCONT);
        Self::signal(&s, libc::SIGTERM);
        let mut child = s.child.take()?;
        let status = match tokio::time::timeout(grace, child.wait()).await {
            Ok(Ok(st)) => Some(st),
            _ => {
                let _ = child.start_kill();
                child.wait().await.ok()
            }
        };
        if s.state != State::Removed {
            s.state = State::Down;
        }
        status
    }

    /// Marks member `i` removed (its leave was acknowledged): its exit is expected.
    pub async fn mark_removed(&self, i: usize) {
        let mut s = self.slots[i].lock().await;
        s.state = State::Removed;
        s.expect_exit = Some("removed from the cluster".into());
    }

    /// Marks the next exit of member `i` as explained by `why` (an injected fault).
    pub async fn expect_exit(&self, i: usize, why: Option<String>) {
        self.slots[i].lock().await.expect_exit = why;
    }

    /// Kills member `i` if needed, wipes its data dir and starts it as a newcomer joining
    /// through `via`: a new identity (new uuid and Raft id).
    pub async fn wipe_and_rejoin(&self, i: usize, via: &str) -> anyhow::Result<()> {
        self.kill(i).await;
        let mut s = self.slots[i].lock().await;
        std::fs::remove_dir_all(&s.data_dir).with_context(|| format!("wipe {}", s.data_dir.display()))?;
        std::fs::create_dir_all(&s.data_dir)?;
        s.join = Some(via.to_string());
        s.uuid = None;
        s.state = State::Down;
        self.spawn(&mut s, false)
    }

    /// Sets member `i`'s wall-clock offset (libfaketime), in seconds.
    pub async fn set_clock(&self, i: usize, offset_s: i64) -> anyhow::Result<()> {
        let s = self.slots[i].lock().await;
        std::fs::write(&s.clock_file, format!("{offset_s:+}\n"))?;
        Ok(())
    }

    /// Sets the faults steward's test-only network layer applies to member `i`'s outgoing calls
    /// (`{}`: none). The member re-reads the file within 200 ms.
    pub async fn set_net_faults(&self, i: usize, spec: &serde_json::Value) -> anyhow::Result<()> {
        let s = self.slots[i].lock().await;
        // Written whole and renamed, so the member never reads half a file.
        let tmp = s.net_fault_file.with_extension("tmp");
        std::fs::write(&tmp, spec.to_string())?;
        std::fs::rename(&tmp, &s.net_fault_file)?;
        Ok(())
    }

    /// Sends a libfiu control command (`enable name=…`) to member `i`, if it runs and is not
    /// paused (a stopped process cannot answer on its FIFO).
    pub async fn fiu(&self, i: usize, command: &str) -> anyhow::Result<bool> {
        let (pid, prefix) = {
            let s = self.slots[i].lock().await;
            if s.state != State::Running {
                return Ok(false);
            }
            match s.child.as_ref().and_then(|c| c.id()) {
                Some(pid) => (pid, s.fiu_prefix.clone()),
                None => return Ok(false),
            }
        };
        let mut cmd = tokio::process::Command::new(FIU_CTRL.name);
        cmd.arg("-f").arg(&prefix).arg("-c").arg(command).arg(pid.to_string());
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        let out = tokio::time::timeout(Duration::from_secs(5), cmd.output())
            .await
            .map_err(|_| anyhow!("fiu-ctrl timed out"))??;
        let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
        if !out.status.success() || text.contains("rror") {
            bail!("fiu-ctrl {command}: {}", text.trim());
        }
        Ok(true)
    }

    /// Power loss: SIGKILL member `i`, then keep only what reached its disk image (the page
    /// cache of its mount is thrown away with the old mount). Leaves it down.
    pub async fn power_cut(&self, i: usize) -> anyhow::Result<()> {
        self.kill(i).await;
        // Power loss stops everything on the machine, also the job steps steward started (in
        // process groups of their own, they outlive a SIGKILL of steward); left running, they
        // keep the mount busy and the unmount fails.
        let ns = self.host(i).await.ns;
        let _ = tokio::task::spawn_blocking(move || sys::kill_ns_processes(&ns)).await;
        let mut s = self.slots[i].lock().await;
        let Some((img, mnt, dev)) = s.image.clone() else { bail!("{} is not on a disk image", s.host.name) };
        let crash = img.with_extension("crash");
        let (img_s, mnt_s, crash_s) = (img.to_string_lossy(), mnt.to_string_lossy(), crash.to_string_lossy());
        // The copy is what the device holds now: the power-loss state. Then the old mount
        // (and its dirty pages) goes away with the old image.
        sys::run("cp", &["--sparse=always", &img_s, &crash_s])?;
        sys::run("umount", &[&mnt_s])?;
        sys::run(LOSETUP.name, &["-d", &dev])?;
        self.res.remove(&Resource::Loop(dev.clone()));
        std::fs::rename(&crash, &img)?;
        let dev = attach_and_mount(&img, &mnt, &self.res)?;
        s.image = Some((img, mnt, dev));
        Ok(())
    }

    /// The member the cluster names as leader, asking running members in turn (1 s each).
    pub async fn leader(&self) -> Option<usize> {
        for i in 0..self.len() {
            if self.state(i).await != State::Running {
                continue;
            }
            let host = self.host(i).await;
            let Ok(a) = self
                .api
                .request(
                    &host,
                    reqwest::Method::GET,
                    &format!("{API}/cluster/members"),
                    &Cred::Admin,
                    None,
                    Some(Duration::from_secs(1)),
                )
                .await
            else {
                continue;
            };
            let Some(leader) = a.body["leader"].as_str() else { continue };
            for j in 0..self.len() {
                if self.uuid(j).await.as_deref() == Some(leader) {
                    return Some(j);
                }
            }
        }
        None
    }

    /// Watches every member process; records exits the harness did not cause as `cluster`
    /// `exit` operations, until `stop` is set.
    pub async fn monitor(self: Arc<Self>, stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            if *stop.borrow() {
                return;
            }
            for slot in &self.slots {
                let mut s = slot.lock().await;
                let Some(child) = s.child.as_mut() else { continue };
                let Ok(Some(status)) = child.try_wait() else { continue };
                s.child = None;
                let expected = s.expect_exit.take();
                let log_tail = self.log_tail(&s.host.name);
                self.recorder.record(
                    Op::new(OpType::Info, Process::Named("monitor".into()), "cluster", "exit")
                        .node(s.host.name.clone())
                        .value(json!({
                            "node": s.host.name, "uuid": s.uuid, "status": status.to_string(),
                            "expected": expected.is_some(), "why": expected,
                            "log_tail": if expected.is_some() { String::new() } else { log_tail },
                        })),
                );
                if s.state != State::Removed {
                    s.state = State::Down;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Creates, attaches and mounts a 256 MiB sparse ext4 image for member `name`.
fn make_image(work: &Path, name: &str, res: &Resources) -> anyhow::Result<(PathBuf, PathBuf, String)> {
    let img = work.join(format!("{name}.img"));
    let mnt = work.join(format!("{name}.mnt"));
    std::fs::create_dir_all(&mnt)?;
    File::create(&img)?.set_len(256 << 20)?;
    sys::run(sys::MKFS_EXT4.name, &["-q", "-F", &img.to_string_lossy()])?;
    let dev = attach_and_mount(&img, &mnt, res)?;
    Ok((img, mnt, dev))
}

fn attach_and_mount(img: &Path, mnt: &Path, res: &Resources) -> anyhow::Result<String> {
    // Direct I/O: the loop device writes straight to the image, so a copy of the image is
    // exactly what the "device" holds.
    let dev =
        sys::run(LOSETUP.name, &["--find", "--show", "--direct-io=on", &img.to_string_lossy()])?.trim().to_string();
    // Registered in teardown order: the mount (listed last) goes first, then the device.
    res.remove(&Resource::Mount(mnt.to_path_buf()));
    res.add(Resource::Loop(dev.clone()));
    res.add(Resource::Mount(mnt.to_path_buf()));
    sys::run(sys::MOUNT.name, &["-t", "ext4", &dev, &mnt.to_string_lossy()])?;
    Ok(dev)
}
