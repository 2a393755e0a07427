//! Nemeses: faults with a start, a stop and a final heal, mixed on a schedule drawn from the
//! seed.
//!
//! # Layout
//! - [`Package`]: the fault families `--nemesis` selects;
//! - [`schedule`]: the whole schedule, drawn up front from the seed (so the same seed gives the
//!   same faults in the same order at the same times, whatever the cluster does);
//! - [`Nemesis`]: carries a schedule out against the members and the network, recording each
//!   start and stop in the history, and heals everything at the end.
//!
//! Which concrete node a fault hits is drawn from the step's own seed among the members that
//! are up at that moment; "the leader" is resolved when the fault starts.
//!
//! Faults run one step at a time; a quarter of the steps add a second fault of another family,
//! at most one of them acting on processes (kill, pause, member, disk, power), e.g. a partition
//! during a membership change.
//!
//! Delay, duplication and reordering of member-to-member calls (`netfault`) go through
//! steward's test-only fault layer (`raft/src/netfault.rs`): this kernel has no `netem`. Each
//! member is started with `STEWARD_TEST_NET_FAULTS` naming a file of its own, which the nemesis
//! rewrites.

use std::sync::Arc;
use std::time::Duration;

use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::client::{Api, Cred, API};
use crate::db::{Members, State, START_TIMEOUT};
use crate::history::{Op, OpType, Process, Recorder};
use crate::net::{grudge, Net};

/// A fault family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Package {
    /// Network partitions (nftables at the bridge).
    Partition,
    /// SIGKILL, then restart.
    Kill,
    /// SIGSTOP longer than the election timeout, then SIGCONT.
    Pause,
    /// Wall-clock bumps and strobes (libfaketime).
    Clock,
    /// A member leaves; later it is wiped and joins again under a new identity.
    Member,
    /// Random packet loss between members (nftables `numgen`).
    Packet,
    /// I/O errors on fsync or writes (libfiu).
    Disk,
    /// Power loss: SIGKILL and lose what was not fsynced (loop-mounted images).
    Power,
    /// Delay with jitter (hence reordering) and duplication of member-to-member calls, in
    /// steward's test-only fault layer.
    NetFault,
}

impl Package {
    pub const ALL: [Package; 9] = [
        Package::Partition,
        Package::Kill,
        Package::Pause,
        Package::Clock,
        Package::Member,
        Package::Packet,
        Package::Disk,
        Package::Power,
        Package::NetFault,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Package::Partition => "partition",
            Package::Kill => "kill",
            Package::Pause => "pause",
            Package::Clock => "clock",
            Package::Member => "member",
            Package::Packet => "packet",
            Package::Disk => "disk",
            Package::Power => "power",
            Package::NetFault => "netfault",
        }
    }

    /// Acts on member processes (two of these never overlap).
    pub fn is_process(self) -> bool {
        matches!(self, Package::Kill | Package::Pause | Package::Member | Package::Disk | Package::Power)
    }

    /// Parses `--nemesis`: `all`, `none`, or a comma-separated list.
    pub fn parse_list(s: &str) -> Result<Vec<Package>, String> {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "all" => out.extend(Package::ALL),
                "none" => {}
                p => match Package::ALL.iter().find(|k| k.name() == p) {
                    Some(k) => out.push(*k),
                    None => {
                        return Err(format!(
                            "unknown nemesis '{p}': use all, none or a list of {}",
                            Package::ALL.map(|k| k.name()).join(", ")
                        ))
                    }
                },
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }
}

/// Which members a process fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    One,
    Minority,
    Majority,
    All,
    Leader,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PartitionKind {
    /// One node against the rest.
    One,
    /// Two random halves.
    Halves,
    /// Every node sees a majority, no two the same one.
    MajoritiesRing,
    /// Two halves joined by one node that sees both.
    Bridge,
    /// The current leader alone.
    Leader,
    /// One node's outgoing packets dropped (it still hears everyone).
    OneWay,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClockKind {
    /// A fixed offset on some members.
    Bump,
    /// Offsets flipping back and forth every second or two.
    Strobe,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DiskKind {
    /// Every fsync and fdatasync fails with EIO.
    Fsync,
    /// 5 % of pwrite calls (sled's data writes) fail with EIO.
    Write,
}

/// One fault of a step, with the seed that picks its nodes.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "package", rename_all = "lowercase")]
pub enum Fault {
    Partition {
        kind: PartitionKind,
        seed: u64,
    },
    Kill {
        target: Target,
        seed: u64,
    },
    Pause {
        target: Target,
        seed: u64,
    },
    Clock {
        kind: ClockKind,
        seed: u64,
    },
    Member {
        seed: u64,
    },
    Packet {
        percent: u32,
        one_node: bool,
        seed: u64,
    },
    Disk {
        kind: DiskKind,
        seed: u64,
    },
    Power {
        target: Target,
        seed: u64,
    },
    /// Every call waits `delay_ms` + `0..=jitter_ms`; `duplicate_pct` % of Raft RPCs are sent
    /// twice; on every member's calls, or only on calls to and from one.
    NetFault {
        delay_ms: u64,
        jitter_ms: u64,
        duplicate_pct: u32,
        one_node: bool,
        seed: u64,
    },
}

impl Fault {
    pub fn package(&self) -> Package {
        match self {
            Fault::Partition { .. } => Package::Partition,
            Fault::Kill { .. } => Package::Kill,
            Fault::Pause { .. } => Package::Pause,
            Fault::Clock { .. } => Package::Clock,
            Fault::Member { .. } => Package::Member,
            Fault::Packet { .. } => Package::Packet,
            Fault::Disk { .. } => Package::Disk,
            Fault::Power { .. } => Package::Power,
            Fault::NetFault { .. } => Package::NetFault,
        }
    }

    fn draw(p: Package, rng: &mut ChaCha8Rng) -> Fault {
        let seed = rng.random();
        match p {
            Package::Partition => Fault::Partition {
                kind: *[
                    PartitionKind::One,
                    PartitionKind::Halves,
                    PartitionKind::MajoritiesRing,
                    PartitionKind::Bridge,
                    PartitionKind::Leader,
                    PartitionKind::OneWay,
                ]
                .choose(rng)
                .expect("non-empty"),
                seed,
            },
            Package::Kill => Fault::Kill {
                target: *[Target::One, Target::Minority, Target::Majority, Target::All, Target::Leader]
                    .choose(rng)
                    .expect("non-empty"),
                seed,
            },
            Package::Pause => Fault::Pause {
                target: *[Target::One, Target::Leader, Target::Minority, Target::Majority]
                    .choose(rng)
                    .expect("non-empty"),
                seed,
            },
            Package::Clock => {
                Fault::Clock { kind: if rng.random_bool(0.5) { ClockKind::Bump } else { ClockKind::Strobe }, seed }
            }
            Package::Member => Fault::Member { seed },
            Package::Packet => Fault::Packet {
                percent: *[10, 20, 30, 50].choose(rng).expect("non-empty"),
                one_node: rng.random_bool(0.5),
                seed,
            },
            Package::Disk => {
                Fault::Disk { kind: if rng.random_bool(0.5) { DiskKind::Fsync } else { DiskKind::Write }, seed }
            }
            Package::Power => {
                Fault::Power { target: if rng.random_bool(0.5) { Target::One } else { Target::Majority }, seed }
            }
            // Delays stay well under the election timeout (300-600 ms) most of the time, so
            // Raft makes progress, slowly, and reorders; now and then they reach it.
            Package::NetFault => match rng.random_range(0..3) {
                0 => Fault::NetFault {
                    delay_ms: rng.random_range(10..150),
                    jitter_ms: rng.random_range(0..150),
                    duplicate_pct: 0,
                    one_node: rng.random_bool(0.5),
                    seed,
                },
                1 => Fault::NetFault {
                    delay_ms: 0,
                    jitter_ms: rng.random_range(20..200),
                    duplicate_pct: *[20, 50, 100].choose(rng).expect("non-empty"),
                    one_node: rng.random_bool(0.5),
                    seed,
                },
                _ => Fault::NetFault {
                    delay_ms: rng.random_range(10..100),
                    jitter_ms: rng.random_range(50..300),
                    duplicate_pct: *[10, 30].choose(rng).expect("non-empty"),
                    one_node: rng.random_bool(0.5),
                    seed,
                },
            },
        }
    }
}

/// One step of the schedule: faults that start together at `at_ms` (from the start of the
/// run's main phase) and stop together `duration_ms` later.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub at_ms: u64,
    pub duration_ms: u64,
    pub faults: Vec<Fault>,
}

/// Shortest fault: a pause must outlast steward's election timeout (at most 1 s) by far.
const MIN_FAULT_MS: u64 = 2_500;

/// Longest wait for a member dying of an injected disk fault to exit: its shutdown gives the
/// requests it forwarded to the leader their timeout (5 s by default) first.
const DYING_EXIT_TIMEOUT: Duration = Duration::from_secs(15);

/// Draws the schedule for `packages` over `time_limit`: a fault about every `interval` (held
/// for 0.6–1.4 intervals, then 0.3–0.6 intervals of quiet). The first steps go through every
/// package once, in a seeded order, so that a short run still exercises each.
pub fn schedule(packages: &[Package], seed: u64, time_limit: Duration, interval: Duration) -> Vec<Step> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6e65_6d65_7369_7321);
    let mut steps = Vec::new();
    if packages.is_empty() {
        return steps;
    }
    let limit = time_limit.as_millis() as u64;
    let iv = (interval.as_millis() as u64).max(MIN_FAULT_MS);
    let mut first_round: Vec<Package> = packages.to_vec();
    first_round.shuffle(&mut rng);
    first_round.reverse();
    // A quiet start, so the history has a baseline.
    let mut t = iv / 2;
    loop {
        let duration = ((iv as f64 * rng.random_range(0.6..1.4)) as u64).max(MIN_FAULT_MS);
        if t + MIN_FAULT_MS > limit {
            break;
        }
        let duration = duration.min(limit - t);
        let p = first_round.pop().unwrap_or_else(|| *packages.choose(&mut rng).expect("non-empty"));
        let mut faults = vec![Fault::draw(p, &mut rng)];
        if rng.random_bool(0.25) {
            let others: Vec<Package> =
                packages.iter().copied().filter(|q| *q != p && !(q.is_process() && p.is_process())).collect();
            if let Some(q) = others.choose(&mut rng) {
                faults.push(Fault::draw(*q, &mut rng));
            }
        }
        steps.push(Step { at_ms: t, duration_ms: duration, faults });
        t += duration + (iv as f64 * rng.random_range(0.3..0.6)) as u64;
    }
    steps
}

/// What a started fault did, so that its stop can undo exactly that.
enum Active {
    Partition,
    Loss,
    Killed(Vec<usize>),
    Paused(Vec<usize>),
    Clock(Vec<usize>, Option<tokio::task::JoinHandle<()>>),
    /// Member `victim` left (or may have: an indeterminate leave) with identity `uuid`.
    Left {
        victim: usize,
        uuid: String,
    },
    /// Members with these libfiu points enabled.
    Disk(Vec<usize>, Vec<&'static str>),
    PoweredOff(Vec<usize>),
    /// Members whose network fault files were written.
    NetFaults(Vec<usize>),
    /// The fault could not be applied (e.g. too few members up); nothing to undo.
    Nothing,
}

/// Carries out a schedule.
pub struct Nemesis {
    pub net: Arc<Net>,
    pub members: Arc<Members>,
    pub api: Arc<Api>,
    pub recorder: Arc<Recorder>,
    pub packages: Vec<Package>,
}

fn record(recorder: &Recorder, kind: OpType, f: &str, value: Value) {
    recorder.record(Op::new(kind, Process::nemesis(), "nemesis", f).value(value));
}

impl Nemesis {
    /// Runs `steps` from `start` until they are done or `stop` is set; stops what is active.
    pub async fn run(&self, steps: &[Step], start: Instant, mut stop: watch::Receiver<bool>) {
        for (n, step) in steps.iter().enumerate() {
            let at = start + Duration::from_millis(step.at_ms);
            tokio::select! {
                _ = tokio::time::sleep_until(at) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let mut active = Vec::new();
            for f in &step.faults {
                record(&self.recorder, OpType::Invoke, "start", json!({ "step": n, "fault": f }));
                let (a, what) = self.start_fault(f).await;
                record(
                    &self.recorder,
                    OpType::Info,
                    "start",
                    json!({ "step": n, "package": f.package().name(), "fault": f, "done": what }),
                );
                active.push((f.package(), a));
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(step.duration_ms)) => {}
                _ = stop.wait_for(|s| *s) => {}
            }
            for (p, a) in active.into_iter().rev() {
                record(&self.recorder, OpType::Invoke, "stop", json!({ "step": n, "package": p.name() }));
                let what = self.stop_fault(a).await;
                record(&self.recorder, OpType::Info, "stop", json!({ "step": n, "package": p.name(), "done": what }));
            }
            if *stop.borrow() {
                return;
            }
        }
    }

    /// Members that are up (running or paused), by index.
    async fn up(&self) -> Vec<usize> {
        let states = self.members.states().await;
        (0..states.len()).filter(|&i| matches!(states[i], State::Running | State::Paused)).collect()
    }

    async fn running(&self) -> Vec<usize> {
        let states = self.members.states().await;
        (0..states.len()).filter(|&i| states[i] == State::Running).collect()
    }

    /// Members of the cluster as far as the harness knows (not removed).
    async fn in_cluster(&self) -> Vec<usize> {
        let states = self.members.states().await;
        (0..states.len()).filter(|&i| states[i] != State::Removed).collect()
    }

    async fn targets(&self, target: Target, candidates: Vec<usize>, rng: &mut ChaCha8Rng) -> Vec<usize> {
        let n = self.in_cluster().await.len();
        let mut c = candidates;
        c.shuffle(rng);
        let k = match target {
            Target::One => 1,
            Target::Minority => ((n.max(1) - 1) / 2).max(1),
            Target::Majority => n / 2 + 1,
            Target::All => c.len(),
            Target::Leader => {
                return match self.members.leader().await {
                    Some(l) if c.contains(&l) => vec![l],
                    _ => c.into_iter().take(1).collect(),
                }
            }
        };
        c.into_iter().take(k).collect()
    }

    async fn names(&self, nodes: &[usize]) -> Vec<String> {
        let mut out = Vec::new();
        for &i in nodes {
            out.push(self.members.host(i).await.name);
        }
        out
    }

    async fn start_fault(&self, f: &Fault) -> (Active, Value) {
        match self.try_start(f).await {
            Ok(x) => x,
            Err(e) => (Active::Nothing, json!({ "error": format!("{e:#}") })),
        }
    }

    async fn try_start(&self, f: &Fault) -> anyhow::Result<(Active, Value)> {
        let n = self.members.len();
        let all: Vec<usize> = (0..n).collect();
        Ok(match *f {
            Fault::Partition { kind, seed } => {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                let mut order = all.clone();
                order.shuffle(&mut rng);
                let pairs = match kind {
                    PartitionKind::One => grudge::components(&[vec![order[0]], order[1..].to_vec()]),
                    PartitionKind::Halves => {
                        let (a, b) = order.split_at(n / 2);
                        grudge::components(&[a.to_vec(), b.to_vec()])
                    }
                    PartitionKind::MajoritiesRing => grudge::majorities_ring(&order),
                    PartitionKind::Bridge => grudge::bridge(&order),
                    PartitionKind::Leader => {
                        let l = self.members.leader().await.unwrap_or(order[0]);
                        let rest: Vec<usize> = all.iter().copied().filter(|&x| x != l).collect();
                        grudge::components(&[vec![l], rest])
                    }
                    PartitionKind::OneWay => grudge::one_way(order[0], &all),
                };
                self.net.partition(&pairs)?;
                let mut named = Vec::new();
                for (a, b) in &pairs {
                    named.push(format!("{}->{}", self.members.host(*a).await.name, self.members.host(*b).await.name));
                }
                (Active::Partition, json!({ "dropped": named }))
            }
            Fault::Packet { percent, one_node, seed } => {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                let (pairs, scope): (Vec<(usize, usize)>, String) = if one_node {
                    let x = *all.choose(&mut rng).expect("members");
                    let pairs = all.iter().filter(|&&y| y != x).flat_map(|&y| [(x, y), (y, x)]).collect();
                    (pairs, format!("to and from {}", self.members.host(x).await.name))
                } else {
                    let pairs =
                        all.iter().flat_map(|&a| all.iter().filter(move |&&b| b != a).map(move |&b| (a, b))).collect();
                    (pairs, "between all members".to_string())
                };
                self.net.loss(&pairs, percent)?;
                (Active::Loss, json!({ "percent": percent, "scope": scope }))
            }
            Fault::Kill { target, seed } => {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                let victims = self.targets(target, self.up().await, &mut rng).await;
                for &v in &victims {
                    self.members.kill(v).await;
                }
                let names = self.names(&victims).await;
                (Active::Killed(victims), json!({ "killed": names }))
            }
            Fault::Pause { target, seed } => {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                let victims = self.targets(target, self.running().await, &mut rng).await;
                let mut paused = Vec::new();
                for &v in &victims {
                    if self.members.pause(v).await {
                        paused.push(v);
                    }
                }
                let names = self.names(&paused).await;
                (Active::Paused(paused), json!({ "paused": names }))
            }
            Fault::Clock { kind, seed } => {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                let mut nodes = self.in_cluster().await;
                nodes.shuffle(&mut rng);
                nodes.truncate(rng.random_range(1..=nodes.len().max(1)));
                let names = self.names(&nodes).await;
                match kind {
                    ClockKind::Bump => {
                        let mut offsets = Vec::new();
                        for &i in &nodes {
                            // ±2 s … ±512 s, as Jepsen's bumps (which reach ±288 s).
                            let mag = 1i64 << rng.random_range(1..10);
                            let off = if rng.random_bool(0.5) { mag } else { -mag };
                            self.members.set_clock(i, off).await?;
                            offsets.push(off);
                        }
                        (Active::Clock(nodes, None), json!({ "bumped": names, "offsets_s": offsets }))
                    }
                    ClockKind::Strobe => {
                        let delta = 1i64 << rng.random_range(1..8);
                        let period = Duration::from_millis(rng.random_range(1000..2000));
                        let members = self.members.clone();
                        let targets = nodes.clone();
                        let task = tokio::spawn(async move {
                            let mut sign = 1;
                            loop {
                                for &i in &targets {
                                    let _ = members.set_clock(i, sign * delta).await;
                                }
                                sign = -sign;
                                tokio::time::sleep(period).await;
                            }
                        });
                        (
                            Active::Clock(nodes, Some(task)),
                            json!({ "strobed": names, "delta_s": delta, "period_ms": period.as_millis() as u64 }),
                        )
                    }
                }
            }
            Fault::Member { seed } => {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                let states = self.members.states().await;
                if states.contains(&State::Removed) || self.in_cluster().await.len() < 3 {
                    return Ok((
                        Active::Nothing,
                        json!({ "skipped": "a member is already out, or fewer than 3 are in" }),
                    ));
                }
                let mut running = self.running().await;
                running.shuffle(&mut rng);
                let (Some(&victim), Some(&via)) = (running.first(), running.get(1)) else {
                    return Ok((Active::Nothing, json!({ "skipped": "fewer than two members running" })));
                };
                let Some(uuid) = self.members.uuid(victim).await else {
                    return Ok((Active::Nothing, json!({ "skipped": "victim's uuid unknown" })));
                };
                let (outcome, detail) = self.leave(victim, via, &uuid).await;
                let (vname, via_name) = (self.members.host(victim).await.name, self.members.host(via).await.name);
                if outcome == OpType::Fail {
                    return Ok((Active::Nothing, json!({ "leave": vname, "via": via_name, "refused": detail })));
                }
                // Acknowledged or indeterminate: the member is out as far as faults go, and is
                // wiped and re-added at the stop either way.
                self.members.mark_removed(victim).await;
                if outcome == OpType::Ok {
                    self.probe_removed(victim, uuid.clone());
                }
                (
                    Active::Left { victim, uuid },
                    json!({ "left": vname, "via": via_name, "outcome": outcome, "detail": detail }),
                )
            }
            Fault::Disk { kind, seed } => {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                let victims = self.targets(Target::One, self.running().await, &mut rng).await;
                // pwrite only: sled writes its files with pwrite, while write(2) also carries
                // the log and tokio's own wake-ups (an eventfd never fails with EIO on a real
                // machine, and failing it only crashes the runtime).
                let points: Vec<(&str, String)> = match kind {
                    DiskKind::Fsync => vec![
                        ("posix/io/sync/fsync", "enable name=posix/io/sync/fsync,failinfo=5".into()),
                        ("posix/io/sync/fdatasync", "enable name=posix/io/sync/fdatasync,failinfo=5".into()),
                    ],
                    DiskKind::Write => vec![(
                        "posix/io/rw/pwrite",
                        "enable_random name=posix/io/rw/pwrite,probability=0.05,failinfo=5".into(),
                    )],
                };
                let mut hit = Vec::new();
                for &v in &victims {
                    // steward must stop on a storage error: that exit is the fault's doing.
                    self.members.expect_exit(v, Some(format!("injected disk fault ({kind:?})"))).await;
                    for (_, c) in &points {
                        self.members.fiu(v, c).await?;
                    }
                    hit.push(v);
                }
                let names = self.names(&hit).await;
                (Active::Disk(hit, points.iter().map(|p| p.0).collect()), json!({ "failing": names, "kind": kind }))
            }
            Fault::NetFault { delay_ms, jitter_ms, duplicate_pct, one_node, seed } => {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                let spec = |to: Vec<String>| json!({ "delay_ms": delay_ms, "jitter_ms": jitter_ms, "duplicate_pct": duplicate_pct, "to": to });
                let scope = if one_node {
                    // Its own calls to everyone, and everyone's calls to it.
                    let x = *all.choose(&mut rng).expect("members");
                    let x_host = self.members.host(x).await;
                    for &i in &all {
                        let to = if i == x { Vec::new() } else { vec![x_host.raft_addr()] };
                        self.members.set_net_faults(i, &spec(to)).await?;
                    }
                    format!("to and from {}", x_host.name)
                } else {
                    for &i in &all {
                        self.members.set_net_faults(i, &spec(Vec::new())).await?;
                    }
                    "between all members".to_string()
                };
                (
                    Active::NetFaults(all.clone()),
                    json!({ "delay_ms": delay_ms, "jitter_ms": jitter_ms, "duplicate_pct": duplicate_pct, "scope": scope }),
                )
            }
            Fault::Power { target, seed } => {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                let victims = self.targets(target, self.up().await, &mut rng).await;
                for &v in &victims {
                    self.members.power_cut(v).await?;
                }
                let names = self.names(&victims).await;
                (Active::PoweredOff(victims), json!({ "powered_off": names }))
            }
        })
    }

    /// Asks `via` to remove member `victim` (identity `uuid`); records it as a `cluster`
    /// `leave` operation. 404 means it is not a member (any more).
    async fn leave(&self, victim: usize, via: usize, uuid: &str) -> (OpType, Option<String>) {
        let host = self.members.host(via).await;
        let victim_name = self.members.host(victim).await.name;
        let p = Process::Named("nemesis".into());
        self.recorder.record(
            Op::new(OpType::Invoke, p.clone(), "cluster", "leave")
                .node(host.name.clone())
                .value(json!({ "member": victim_name, "uuid": uuid })),
        );
        let res = self
            .api
            .request(
                &host,
                reqwest::Method::DELETE,
                &format!("{API}/cluster/members/{uuid}"),
                &Cred::Admin,
                None,
                Some(Duration::from_secs(35)),
            )
            .await;
        let (kind, err) = crate::client::write_outcome(&res);
        let mut op = Op::new(kind, p, "cluster", "leave")
            .node(host.name.clone())
            .value(json!({ "member": victim_name, "uuid": uuid }));
        if let Some(e) = &err {
            op = op.error(e.clone());
        }
        self.recorder.record(op);
        (kind, err)
    }

    /// After an acknowledged removal, sends linearizable reads to the removed member for a
    /// few seconds. The first second is left out: that is how long the member may need to
    /// learn of its removal (ten heartbeats).
    fn probe_removed(&self, victim: usize, uuid: String) {
        let members = self.members.clone();
        let api = self.api.clone();
        let recorder = self.recorder.clone();
        tokio::spawn(async move {
            let host = members.host(victim).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            let until = Instant::now() + Duration::from_secs(3);
            let mut process = 0u64;
            while Instant::now() < until && members.state(victim).await == State::Removed {
                process += 1;
                let p = Process::Named(format!("removed-probe-{}-{process}", host.name));
                recorder.record(
                    Op::new(OpType::Invoke, p.clone(), "cluster", "removed-read")
                        .node(host.name.clone())
                        .value(json!({ "removed": uuid })),
                );
                let res = api
                    .request(
                        &host,
                        reqwest::Method::GET,
                        &format!("{API}/projects"),
                        &Cred::Admin,
                        None,
                        Some(Duration::from_secs(2)),
                    )
                    .await;
                let op = match res {
                    Ok(a) => Op::new(OpType::Ok, p, "cluster", "removed-read").value(json!({ "status": a.status })),
                    Err(e) => Op::new(OpType::Fail, p, "cluster", "removed-read").error(e.to_string()),
                };
                recorder.record(op.node(host.name.clone()));
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
    }

    async fn stop_fault(&self, a: Active) -> Value {
        match self.try_stop(a).await {
            Ok(v) => v,
            Err(e) => json!({ "error": format!("{e:#}") }),
        }
    }

    async fn try_stop(&self, a: Active) -> anyhow::Result<Value> {
        Ok(match a {
            Active::Nothing => json!({}),
            Active::Partition => {
                self.net.partition(&[])?;
                json!({ "healed": "partition" })
            }
            Active::Loss => {
                self.net.loss(&[], 0)?;
                json!({ "healed": "packet loss" })
            }
            Active::Killed(nodes) | Active::PoweredOff(nodes) => {
                let mut started = Vec::new();
                for &i in &nodes {
                    if self.members.start(i).await? {
                        started.push(i);
                    }
                }
                json!({ "restarted": self.names(&started).await })
            }
            Active::NetFaults(nodes) => {
                for &i in &nodes {
                    self.members.set_net_faults(i, &json!({})).await?;
                }
                json!({ "healed": "network faults" })
            }
            Active::Paused(nodes) => {
                for &i in &nodes {
                    self.members.resume(i).await;
                }
                json!({ "resumed": self.names(&nodes).await })
            }
            Active::Clock(nodes, task) => {
                if let Some(t) = task {
                    t.abort();
                    let _ = t.await;
                }
                for &i in &nodes {
                    self.members.set_clock(i, 0).await?;
                }
                json!({ "reset": self.names(&nodes).await })
            }
            Active::Disk(nodes, points) => {
                let mut restarted = Vec::new();
                for &i in &nodes {
                    for p in &points {
                        let _ = self.members.fiu(i, &format!("disable name={p}")).await;
                    }
                    // A member may be dying of the fault right now: its exit stays explained
                    // for a moment after the fault is gone, and, if its Raft has stopped on the
                    // error, until it has exited (it first gives the requests it forwarded to
                    // the leader their timeout, a few seconds when the leader is cut off).
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    if self.members.dying(i).await {
                        let until = Instant::now() + DYING_EXIT_TIMEOUT;
                        while self.members.state(i).await == State::Running && Instant::now() < until {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                    self.members.expect_exit(i, None).await;
                    if self.members.start(i).await? {
                        restarted.push(i);
                    }
                }
                json!({ "disabled": self.names(&nodes).await, "restarted_after_exit": self.names(&restarted).await })
            }
            Active::Left { victim, uuid } => self.rejoin(victim, &uuid).await?,
        })
    }

    /// Makes sure identity `uuid` is out of the cluster, then wipes member `victim` and adds it
    /// again under a new identity, through a running member.
    async fn rejoin(&self, victim: usize, uuid: &str) -> anyhow::Result<Value> {
        let until = Instant::now() + Duration::from_secs(40);
        for attempt in 0usize.. {
            let mut others = self.running().await;
            others.retain(|&i| i != victim);
            anyhow::ensure!(!others.is_empty(), "no running member to rejoin through");
            // A different member each attempt: one that cannot serve must not hold us up.
            let via = others[attempt % others.len()];
            let (kind, err) = self.leave(victim, via, uuid).await;
            let gone = kind == OpType::Ok || err.as_deref().is_some_and(|e| e.starts_with("404"));
            if gone {
                let url = self.members.host(via).await.url();
                self.members.wipe_and_rejoin(victim, &url).await?;
                self.members.wait_healthy(victim, START_TIMEOUT).await?;
                let new_uuid = self.members.learn_uuid(victim).await?;
                return Ok(
                    json!({ "rejoined": self.members.host(victim).await.name, "via": url, "old_uuid": uuid, "new_uuid": new_uuid }),
                );
            }
            if Instant::now() >= until {
                anyhow::bail!("identity {uuid} could not be removed before rejoining: {}", err.unwrap_or_default());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        unreachable!("the loop above only ends by returning")
    }

    /// The final heal: no network faults, nobody paused, clocks true, no disk faults, every
    /// member started, removed members back under a new identity.
    pub async fn final_heal(&self) -> Value {
        let mut done = serde_json::Map::new();
        record(&self.recorder, OpType::Invoke, "heal", json!({}));
        done.insert("network".into(), json!(self.net.heal().map_err(|e| e.to_string()).err()));
        let n = self.members.len();
        for i in 0..n {
            self.members.resume(i).await;
            let _ = self.members.set_clock(i, 0).await;
            let _ = self.members.set_net_faults(i, &json!({})).await;
            // Disk faults were disabled when their step stopped (steps always stop theirs).
            self.members.expect_exit(i, None).await;
        }
        let mut restarted = Vec::new();
        for i in 0..n {
            if self.members.start(i).await.unwrap_or(false) {
                restarted.push(self.members.host(i).await.name);
            }
        }
        done.insert("restarted".into(), json!(restarted));
        for i in 0..n {
            if self.members.state(i).await == State::Removed {
                let uuid = self.members.uuid(i).await.unwrap_or_default();
                let r = self.rejoin(i, &uuid).await.unwrap_or_else(|e| json!({ "error": format!("{e:#}") }));
                done.insert(format!("rejoin {}", self.members.host(i).await.name), r);
            }
        }
        let v = Value::Object(done);
        record(&self.recorder, OpType::Info, "heal", v.clone());
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_schedule_and_a_short_run_covers_every_package() {
        // The CI run's settings (scripts/test.sh): 60 s, a fault about every 4 s.
        for seed in 0..50 {
            let s = schedule(&Package::ALL, seed, Duration::from_secs(60), Duration::from_secs(4));
            let seen: std::collections::BTreeSet<Package> =
                s.iter().flat_map(|s| s.faults.iter().map(|f| f.package())).collect();
            assert_eq!(seen.len(), Package::ALL.len(), "seed {seed}: {s:?}");
        }
        let a = schedule(&Package::ALL, 7, Duration::from_secs(75), Duration::from_secs(4));
        let b = schedule(&Package::ALL, 7, Duration::from_secs(75), Duration::from_secs(4));
        assert_eq!(serde_json::to_string(&a).unwrap(), serde_json::to_string(&b).unwrap());
        let c = schedule(&Package::ALL, 8, Duration::from_secs(75), Duration::from_secs(4));
        assert_ne!(serde_json::to_string(&a).unwrap(), serde_json::to_string(&c).unwrap());
        let seen: std::collections::BTreeSet<Package> =
            a.iter().flat_map(|s| s.faults.iter().map(|f| f.package())).collect();
        assert_eq!(seen.len(), Package::ALL.len(), "{a:?}");
        for w in a.windows(2) {
            assert!(w[0].at_ms + w[0].duration_ms <= w[1].at_ms, "steps do not overlap");
        }
        let last = a.last().unwrap();
        assert!(last.at_ms + last.duration_ms <= 75_000);
        for s in &a {
            assert!(s.duration_ms >= MIN_FAULT_MS);
            let process = s.faults.iter().filter(|f| f.package().is_process()).count();
            assert!(process <= 1, "at most one process fault per step: {s:?}");
        }
    }

    #[test]
    fn nemesis_lists_parse() {
        assert_eq!(Package::parse_list("all").unwrap().len(), 9);
        assert_eq!(Package::parse_list("kill,partition,kill").unwrap(), vec![Package::Partition, Package::Kill]);
        assert!(Package::parse_list("none").unwrap().is_empty());
        assert!(Package::parse_list("flood").unwrap_err().contains("unknown nemesis"));
    }
}
