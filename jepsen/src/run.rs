//! One run, start to end:
//!
//! 1. preflight: root, the tools the chosen nemeses need, the steward binary;
//! 2. hosts: namespaces, bridge, firewall (synchronously, then the harness enters the hub
//!    namespace and only then starts its async runtime, so every thread lives there);
//! 3. members: the first creates the cluster, the others join it, each must become healthy;
//! 4. workloads set up, then clients and the nemesis run for `--time-limit`;
//! 5. the nemesis stops, the final heal (network, pauses, clocks, disks, restarts, rejoins);
//! 6. recovery: every member healthy and serving a linearizable read, within a bound;
//! 7. final reads of every workload, on every member; members stopped;
//! 8. checkers, results, report; teardown (also on error, panic, SIGINT or SIGTERM).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use rand::distr::{Alphanumeric, SampleString};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::checker::{Validity, Verdict};
use crate::cli::Opts;
use crate::client::{Api, Cred, API};
use crate::db::{MemberOpts, Members, START_TIMEOUT};
use crate::history::{Op, OpType, Process, Recorder};
use crate::nemesis::{self, Nemesis, Package};
use crate::net::Net;
use crate::sys::{self, Resource, Resources, Tool};
use crate::workload::{self, Ctx, Workload};

/// Exit statuses.
pub const EXIT_VALID: u8 = 0;
pub const EXIT_INVALID: u8 = 1;
pub const EXIT_HARNESS: u8 = 2;
pub const EXIT_UNKNOWN: u8 = 3;

fn exit_for(v: Validity) -> ExitCode {
    ExitCode::from(match v {
        Validity::Valid => EXIT_VALID,
        Validity::Invalid => EXIT_INVALID,
        Validity::Unknown => EXIT_UNKNOWN,
    })
}

/// `main`, minus parsing.
pub fn main(opts: Opts) -> ExitCode {
    sys::install_signal_flag();
    if opts.cleanup {
        return match sys::require_root().map_err(anyhow::Error::from).and_then(|_| sys::cleanup_stale()) {
            Ok(lines) => {
                for l in &lines {
                    println!("{l}");
                }
                if lines.is_empty() {
                    println!("nothing to clean up");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("jepsen: {e:#}");
                ExitCode::from(EXIT_HARNESS)
            }
        };
    }
    if let Some(dir) = &opts.recheck {
        return match recheck(dir, &opts) {
            Ok(v) => exit_for(v),
            Err(e) => {
                eprintln!("jepsen: {e:#}");
                ExitCode::from(EXIT_HARNESS)
            }
        };
    }
    match run(opts) {
        Ok(v) => exit_for(v),
        Err(e) => {
            eprintln!("jepsen: {e:#}");
            ExitCode::from(EXIT_HARNESS)
        }
    }
}

/// The tools a run with `packages` needs.
fn tools_for(packages: &[Package]) -> Vec<Tool> {
    let mut t = vec![sys::IP, sys::NFT];
    if packages.contains(&Package::Clock) {
        t.push(sys::LIBFAKETIME);
    }
    if packages.contains(&Package::Disk) {
        t.extend([sys::FIU_CTRL, sys::FIU_RUN_PRELOAD, sys::FIU_POSIX_PRELOAD]);
    }
    if packages.contains(&Package::Power) {
        t.extend([sys::LOSETUP, sys::MKFS_EXT4, sys::MOUNT]);
    }
    t
}

fn find_steward(opts: &Opts) -> anyhow::Result<PathBuf> {
    if let Some(p) = &opts.steward {
        anyhow::ensure!(p.is_file(), "--steward {}: no such file", p.display());
        return Ok(p.clone());
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("target"));
    for profile in ["release", "debug"] {
        let p = target.join(profile).join("steward");
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!(
        "no steward binary in {}/{{release,debug}}: build it (cargo build -p steward) or pass --steward PATH",
        target.display()
    )
}

/// Removes everything on drop: the backstop for errors and panics.
struct TeardownGuard {
    res: Arc<Resources>,
    done: bool,
}

impl TeardownGuard {
    fn finish(&mut self) -> Vec<String> {
        self.done = true;
        self.res.teardown()
    }
}

impl Drop for TeardownGuard {
    fn drop(&mut self) {
        if !self.done {
            for p in self.res.teardown() {
                eprintln!("jepsen: teardown: {p}");
            }
        }
    }
}

fn run(opts: Opts) -> anyhow::Result<Validity> {
    let wall = std::time::Instant::now();
    sys::require_root()?;
    let packages = opts.nemesis.0.clone();
    sys::require_tools(&tools_for(&packages))?;
    let steward = std::fs::canonicalize(find_steward(&opts)?)?;
    for w in &opts.workload {
        anyhow::ensure!(
            ["register", "set", "cluster", "auth", "schedule"].contains(&w.as_str()),
            "unknown workload '{w}': use register, set, cluster, auth, schedule"
        );
    }
    let stale = sys::stale_runs();
    if !stale.is_empty() {
        eprintln!(
            "jepsen: runs that died left resources behind ({}); `jepsen --cleanup` removes them",
            stale.join(", ")
        );
    }
    let seed = opts.seed.unwrap_or_else(|| rand::rng().random_range(0..1_000_000));
    let out = match &opts.out {
        Some(o) => o.clone(),
        None => PathBuf::from("store").join(format!("{}-seed{seed}", chrono::Utc::now().format("%Y%m%dT%H%M%S"))),
    };
    std::fs::create_dir_all(&out).with_context(|| format!("create {}", out.display()))?;
    let out = std::fs::canonicalize(&out)?;
    // Names must not clash with another run on this machine: not drawn from the seed.
    let run_id = format!("{:04x}", rand::rng().random::<u16>());
    let secret = Alphanumeric.sample_string(&mut rand::rng(), 40);
    let token = Alphanumeric.sample_string(&mut rand::rng(), 40);
    // steward seals key storage under a master key every member must hold.
    let master_key: String = (0..32).map(|_| format!("{:02x}", rand::rng().random::<u8>())).collect();
    println!(
        "jepsen: run {run_id}, seed {seed}, {} members, nemeses [{}], output in {}",
        opts.nodes,
        packages.iter().map(|p| p.name()).collect::<Vec<_>>().join(","),
        out.display()
    );

    let res = Arc::new(Resources::new(&run_id).context("register the run's resources")?);
    let mut guard = TeardownGuard { res: res.clone(), done: false };
    let work = PathBuf::from(format!("/var/tmp/steward-jepsen-{run_id}"));
    res.add(Resource::Dir(work.clone()));
    let net = Arc::new(Net::create(&run_id, opts.nodes as usize, &res)?);
    net.enter_hub().context("enter the hub namespace")?;
    let meta = json!({
        "seed": seed,
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "steward": steward.display().to_string(),
        "members": opts.nodes,
        "nemesis": packages.iter().map(|p| p.name()).collect::<Vec<_>>(),
        "time_limit_s": opts.time_limit,
        "nemesis_interval_s": opts.nemesis_interval,
        "workloads": opts.workload,
        "register_on": opts.register_on,
        "run_id": run_id,
    });
    let member_opts = MemberOpts {
        steward,
        secret: secret.clone(),
        token: token.clone(),
        master_key,
        faketime: packages.contains(&Package::Clock),
        fiu: packages.contains(&Package::Disk),
        loop_images: packages.contains(&Package::Power),
        net_faults: packages.contains(&Package::NetFault),
        snapshot_every: opts.snapshot_every,
        work,
        out: out.clone(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let result = rt.block_on(run_async(&opts, seed, net.clone(), res.clone(), member_opts, &out, meta, &packages));
    // Dropping the runtime drops the members' child handles, which kills any still running.
    rt.shutdown_timeout(Duration::from_secs(10));
    let _ = std::fs::write(out.join("firewall.txt"), net.ruleset());
    let problems = guard.finish();
    for p in &problems {
        eprintln!("jepsen: teardown: {p}");
    }
    let v = result?;
    println!("jepsen: wall time {:.1} s", wall.elapsed().as_secs_f64());
    if !problems.is_empty() {
        bail!("teardown left resources behind; `jepsen --cleanup` retries");
    }
    Ok(v)
}

fn build_workloads(opts: &Opts) -> Vec<Arc<dyn Workload>> {
    let mut out: Vec<Arc<dyn Workload>> = Vec::new();
    for w in &opts.workload {
        match w.as_str() {
            "register" if opts.register_on == "config" => out.push(Arc::new(workload::register::Register::new(
                workload::register::ProjectConfig,
                opts.register_workers,
            ))),
            "register" => out.push(Arc::new(workload::register::Register::new(
                workload::register::KeyStorage,
                opts.register_workers,
            ))),
            "set" => out.push(Arc::new(workload::set::SetWorkload::new(opts.set_workers))),
            "cluster" => out.push(Arc::new(workload::cluster::ClusterWorkload::new(opts.nodes as usize))),
            "auth" => out.push(Arc::new(workload::auth::AuthWorkload::new())),
            "schedule" => out.push(Arc::new(workload::schedule::ScheduleWorkload::new(
                Duration::from_secs(opts.schedule_bound),
                opts.require_takeover,
                opts.schedule_burst,
            ))),
            _ => {}
        }
    }
    out
}

/// Resolves once SIGINT or SIGTERM arrived.
async fn interrupted() {
    while !sys::interrupted() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_async(
    opts: &Opts,
    seed: u64,
    net: Arc<Net>,
    res: Arc<Resources>,
    member_opts: MemberOpts,
    out: &Path,
    meta: Value,
    packages: &[Package],
) -> anyhow::Result<Validity> {
    let recorder = Arc::new(Recorder::new(Some(&out.join("history.jsonl")))?);
    let api = Arc::new(Api::new(&member_opts.token, &member_opts.secret, recorder.clone())?);
    let secret = member_opts.secret.clone();
    let members = Arc::new(Members::new(member_opts, &net.hosts, recorder.clone(), api.clone(), res)?);
    let (stop_tx, stop_rx) = watch::channel(false);
    let (monitor_tx, monitor_rx) = watch::channel(false);
    let monitor = tokio::spawn(members.clone().monitor(monitor_rx));

    // Members: the first creates the cluster, each other joins it once the previous is healthy.
    for i in 0..members.len() {
        members.start(i).await?;
        members.wait_healthy(i, START_TIMEOUT).await?;
        members.learn_uuid(i).await?;
    }
    println!("jepsen: {} members healthy", members.len());
    let ctx = Arc::new(Ctx::new(
        api.clone(),
        members.clone(),
        recorder.clone(),
        net.hosts.clone(),
        secret,
        out.to_path_buf(),
        Duration::from_secs(opts.final_patience),
    ));
    let workloads = build_workloads(opts);
    for w in &workloads {
        w.setup(&ctx).await.with_context(|| format!("set up the {} workload", w.name()))?;
    }

    let steps = nemesis::schedule(
        packages,
        seed,
        Duration::from_secs(opts.time_limit),
        Duration::from_secs(opts.nemesis_interval),
    );
    std::fs::write(out.join("nemesis-schedule.json"), serde_json::to_vec_pretty(&steps)?)?;
    let nem = Arc::new(Nemesis {
        net: net.clone(),
        members: members.clone(),
        api: api.clone(),
        recorder: recorder.clone(),
        packages: packages.to_vec(),
    });

    // Clients.
    let mut tasks = Vec::new();
    for (wi, w) in workloads.iter().enumerate() {
        for id in 0..w.workers() {
            let (w, ctx, mut stop) = (w.clone(), ctx.clone(), stop_rx.clone());
            let rng =
                ChaCha8Rng::seed_from_u64(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ ((wi as u64) << 32) ^ id as u64);
            tasks.push(tokio::spawn(async move {
                let mut worker = ctx.worker(w.name(), id, rng);
                let stagger = w.stagger().as_millis().max(1) as u64;
                while !*stop.borrow() {
                    w.step(&ctx, &mut worker).await;
                    let pause = Duration::from_millis(worker.rng.random_range(0..stagger));
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = stop.wait_for(|s| *s) => {}
                    }
                }
            }));
        }
    }
    let start = Instant::now();
    let nem_task = {
        let (nem, stop) = (nem.clone(), stop_rx.clone());
        tokio::spawn(async move { nem.run(&steps, start, stop).await })
    };
    println!("jepsen: workloads and nemesis running for {} s", opts.time_limit);
    let was_interrupted = tokio::select! {
        _ = tokio::time::sleep(Duration::from_secs(opts.time_limit)) => false,
        _ = interrupted() => true,
    };
    let _ = stop_tx.send(true);
    let _ = nem_task.await;
    println!("jepsen: final heal");
    let heal = nem.final_heal().await;
    for t in tasks {
        let _ = t.await;
    }
    if was_interrupted {
        stop_members(&members).await;
        let _ = monitor_tx.send(true);
        let _ = monitor.await;
        recorder.flush();
        bail!("interrupted: healed, stopped the members and tore down; the partial history is in {}", out.display());
    }

    // Recovery: every member healthy and serving a linearizable read.
    let recovery_start = Instant::now();
    let recovered = wait_recovered(&ctx, Duration::from_secs(opts.recovery_timeout)).await;
    let took = recovery_start.elapsed().as_secs_f64();
    let p = Process::Named("harness".into());
    recorder.record(Op::new(OpType::Invoke, p.clone(), "cluster", "recovery"));
    recorder.record(Op::new(OpType::Ok, p, "cluster", "recovery").value(json!({
        "recovered": recovered.is_ok(), "seconds": took, "why_not": recovered.err(), "heal": heal,
    })));
    println!("jepsen: recovery after the final heal took {took:.1} s");

    for w in &workloads {
        w.finish(&ctx).await;
    }
    stop_members(&members).await;
    let _ = monitor_tx.send(true);
    let _ = monitor.await;
    recorder.flush();

    let history = recorder.snapshot();
    let verdicts =
        check_and_write(&workloads.iter().map(|w| w.name().to_string()).collect::<Vec<_>>(), &history, out, &meta)?;
    Ok(Validity::all(verdicts.iter().map(|v| v.valid)))
}

/// Waits until every member answers `/health` with 200 and a linearizable read.
async fn wait_recovered(ctx: &Ctx, timeout: Duration) -> Result<(), String> {
    let until = Instant::now() + timeout;
    let mut last = String::new();
    loop {
        let mut all = true;
        for h in &ctx.hosts {
            let health = ctx
                .api
                .request(h, reqwest::Method::GET, "/health", &Cred::None, None, Some(Duration::from_secs(2)))
                .await;
            let read = ctx
                .api
                .request(
                    h,
                    reqwest::Method::GET,
                    &format!("{API}/projects"),
                    &Cred::Admin,
                    None,
                    Some(Duration::from_secs(6)),
                )
                .await;
            match (&health, &read) {
                (Ok(a), Ok(b)) if a.status == 200 && b.ok() => {}
                _ => {
                    all = false;
                    last = format!(
                        "{}: health {}, read {}",
                        h.name,
                        health.map(|a| a.status.to_string()).unwrap_or_else(|e| e.to_string()),
                        read.map(|a| a.status.to_string()).unwrap_or_else(|e| e.to_string())
                    );
                    break;
                }
            }
        }
        if all {
            return Ok(());
        }
        if Instant::now() >= until {
            return Err(last);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn stop_members(members: &Members) {
    for i in 0..members.len() {
        members.terminate(i, Duration::from_secs(10)).await;
    }
}

/// Runs the checkers of `workloads` on `history`, writes each verdict, `results.json` and
/// `report.html` to `out`, prints the verdicts.
fn check_and_write(workloads: &[String], history: &[Op], out: &Path, meta: &Value) -> anyhow::Result<Vec<Verdict>> {
    let mut verdicts = Vec::new();
    for w in workloads {
        let v = match w.as_str() {
            "register" => {
                crate::checker::linear::check_registers(history, "register", crate::checker::linear::DEFAULT_BUDGET)
            }
            "set" => crate::checker::set::check(history),
            "cluster" => crate::checker::cluster::check(history),
            "auth" => crate::checker::auth::check(history),
            "schedule" => crate::checker::schedule::check_history(history),
            _ => continue,
        };
        std::fs::write(out.join(format!("{w}.json")), serde_json::to_vec_pretty(&v)?)?;
        verdicts.push(v);
    }
    let valid = Validity::all(verdicts.iter().map(|v| v.valid));
    let results = json!({
        "valid": valid,
        "meta": meta,
        "operations": history.len(),
        "verdicts": verdicts.iter().map(|v| json!({ "checker": v.checker, "valid": v.valid, "summary": v.summary })).collect::<Vec<_>>(),
    });
    std::fs::write(out.join("results.json"), serde_json::to_vec_pretty(&results)?)?;
    std::fs::write(out.join("report.html"), crate::report::html(history, &verdicts, meta))?;
    for v in &verdicts {
        let word = match v.valid {
            Validity::Valid => "valid",
            Validity::Invalid => "INVALID",
            Validity::Unknown => "unknown",
        };
        println!("jepsen: {:<9} {word:<8} {}", v.checker, v.summary);
    }
    println!("jepsen: report: {}", out.join("report.html").display());
    Ok(verdicts)
}

/// Checks a run folder's history again (after a checker change, or to read a saved failure).
fn recheck(dir: &Path, opts: &Opts) -> anyhow::Result<Validity> {
    let history = crate::history::load(&dir.join("history.jsonl"))?;
    let meta = std::fs::read(dir.join("results.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .map(|r| r["meta"].clone())
        .unwrap_or_else(|| json!({ "recheck": dir.display().to_string() }));
    let verdicts = check_and_write(&opts.workload, &history, dir, &meta)?;
    Ok(Validity::all(verdicts.iter().map(|v| v.valid)))
}
