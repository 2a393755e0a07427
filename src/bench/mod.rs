//! `steward bench`: durable replicated writes on a 3-member cluster on loopback, and the same
//! load against etcd when `--etcd URL` is given, with the same client in the same run.
//!
//! Each write on steward creates a project whose description is a 256-byte value (a guarded
//! transaction, committed by a majority with fsync on each member, applied, answered over HTTP);
//! each write on etcd is a `PUT` of a fresh key with a 256-byte value through its JSON gateway
//! (`/v3/kv/put`). Writers run closed loops: each sends its next request when the previous one
//! is answered. With etcd, each side runs in two halves, in the order steward, etcd, etcd,
//! steward, and its figures are those of both halves together.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;

pub mod apply;
pub mod floor;

use crate::config::Config;
use crate::server::Server;

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Concurrent writer counts to measure, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64,256")]
    pub writers: Vec<usize>,
    /// Measuring time per writer count, seconds.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 256)]
    pub value_size: usize,
    /// Also run the same load against etcd's JSON gateway at this URL (e.g. http://127.0.0.1:23791).
    #[arg(long)]
    pub etcd: Option<String>,
    /// Where to put the members' data dirs [default: a temporary directory].
    #[arg(long)]
    pub dir: Option<std::path::PathBuf>,
}

/// Throughput and latency of one run.
#[derive(Debug, Clone)]
pub struct Figures {
    pub writers: usize,
    pub writes: u64,
    pub errors: u64,
    pub per_second: f64,
    pub p50: Duration,
    pub p99: Duration,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// What one timed run of closed-loop writers saw.
struct Run {
    latencies: Vec<Duration>,
    errors: u64,
    elapsed: Duration,
}

impl Figures {
    /// The figures of several runs taken together: writes/s over their summed time,
    /// percentiles over all their latencies.
    fn of(writers: usize, runs: Vec<Run>) -> Figures {
        let elapsed: f64 = runs.iter().map(|r| r.elapsed.as_secs_f64()).sum();
        let errors = runs.iter().map(|r| r.errors).sum();
        let mut all: Vec<Duration> = runs.into_iter().flat_map(|r| r.latencies).collect();
        all.sort();
        Figures {
            writers,
            writes: all.len() as u64,
            errors,
            per_second: if elapsed > 0.0 { all.len() as f64 / elapsed } else { 0.0 },
            p50: percentile(&all, 0.50),
            p99: percentile(&all, 0.99),
        }
    }
}

/// Runs `writers` closed-loop writers for `seconds`; `request(n)` builds the n-th request, n
/// counting from `first`.
async fn load<F>(writers: usize, seconds: u64, first: u64, request: Arc<F>) -> Run
where
    F: Fn(u64) -> reqwest::RequestBuilder + Send + Sync + 'static,
{
    let counter = Arc::new(AtomicU64::new(first));
    let errors = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..writers {
        let request = request.clone();
        let counter = counter.clone();
        let errors = errors.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < end {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let t = Instant::now();
                match request(n).send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        lat.push(t.elapsed());
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            lat
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap_or_default());
    }
    Run { latencies, errors: errors.load(Ordering::Relaxed), elapsed: started.elapsed() }
}

fn print_row(target: &str, f: &Figures) {
    println!(
        "{target:<8} writers={:<4} writes/s={:>8.0}  p50={:>8.2}ms  p99={:>8.2}ms  (writes {}, errors {})",
        f.writers,
        f.per_second,
        f.p50.as_secs_f64() * 1000.0,
        f.p99.as_secs_f64() * 1000.0,
        f.writes,
        f.errors
    );
}

/// At one writer, the p50 as a multiple of the fsync floor and of the bare replicated write.
fn print_against_floor(target: &str, f: &Figures, floors: &floor::Floors) {
    if f.writers != 1 {
        return;
    }
    let times = |d: Duration| f.p50.as_secs_f64() / d.as_secs_f64().max(1e-9);
    println!(
        "{target:<8} one-writer p50 = {:.1}x the fsync floor in place, {:.1}x the bare replicated append",
        times(floors.in_place.p50),
        times(floors.replicated.p50)
    );
}

fn base64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// Starts three members in-process on loopback (ports chosen by the OS).
pub async fn start_cluster(root: &std::path::Path) -> anyhow::Result<(Vec<Server>, String)> {
    let token = crate::auth::new_token();
    let secret = crate::datadir::random_secret();
    let master_key = crate::keys::MasterKey::generate().to_hex().to_string();
    let mut servers = Vec::new();
    for i in 0..3 {
        let mut c = Config::with_data_dir(root.join(format!("m{i}")));
        c.http = "127.0.0.1:0".parse()?;
        c.raft = "127.0.0.1:0".parse()?;
        c.cluster_secret = Some(secret.clone());
        c.keys.master_key = Some(crate::config::SecretText(master_key.clone()));
        c.log = "warn".into();
        if i == 0 {
            c.admin_token = Some(token.clone());
        } else {
            c.join = Some(format!("http://{}", servers.first().map(|s: &Server| s.http_addr).context("first member")?));
        }
        servers.push(Server::start(c).await?);
    }
    Ok((servers, token))
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    crate::cli::init_logging("warn");
    let root = bench_root(args.dir.as_ref())?;
    // Measured before the members start, on the disk they use, so the one-writer latency can be
    // read against what the disk and loopback allow in this same run.
    let floors = floor::measure(&root, 1000)?;
    floor::print(&floors);
    let (servers, token) = start_cluster(&root).await?;
    let http = reqwest::Client::builder().pool_max_idle_per_host(1024).build()?;
    let value = "x".repeat(args.value_size);
    let url = format!("http://{}/api/59/projects", servers[0].http_addr);
    println!(
        "steward bench: 3 members on loopback, {}-byte values, {} s per writer count, writes sent to the leader",
        args.value_size, args.seconds
    );
    for (run_id, &w) in args.writers.iter().enumerate() {
        let (h, u, t, v) = (http.clone(), url.clone(), token.clone(), value.clone());
        let steward = Arc::new(move |n: u64| {
            h.post(&u)
                .header("X-Rundeck-Auth-Token", &t)
                .json(&json!({ "name": format!("b{run_id}-{n}"), "description": v }))
        });
        let Some(etcd) = &args.etcd else {
            let f = Figures::of(w, vec![load(w, args.seconds, 0, steward).await]);
            print_row("steward", &f);
            print_against_floor("steward", &f, &floors);
            continue;
        };
        let (h, u, v) = (http.clone(), format!("{}/v3/kv/put", etcd.trim_end_matches('/')), base64(value.as_bytes()));
        let etcd = Arc::new(move |n: u64| {
            h.post(&u).json(&json!({ "key": base64(format!("bench/{run_id}/{n}").as_bytes()), "value": v }))
        });
        // Each side runs in two halves, steward, etcd, etcd, steward: the host's noise drifts
        // over seconds, and this order gives both sides the same share of a linear drift.
        // The second halves number their requests from 2^40, so no name repeats.
        let (half, second) = (args.seconds.div_ceil(2), 1 << 40);
        let s1 = load(w, half, 0, steward.clone()).await;
        let e1 = load(w, half, 0, etcd.clone()).await;
        let e2 = load(w, half, second, etcd).await;
        let s2 = load(w, half, second, steward).await;
        let (s, e) = (Figures::of(w, vec![s1, s2]), Figures::of(w, vec![e1, e2]));
        print_row("steward", &s);
        print_row("etcd", &e);
        print_against_floor("steward", &s, &floors);
        print_against_floor("etcd", &e, &floors);
    }
    for s in servers {
        s.shutdown().await;
    }
    if args.dir.is_none() {
        let _ = std::fs::remove_dir_all(&root);
    }
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("steward-bench-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// `steward bench fires`: many jobs on a one-minute schedule spread over real member processes;
/// reports fire lateness (slot to committed fire, from each member's metrics) and each
/// member's memory.
#[derive(Debug, Clone, clap::Args)]
pub struct FiresArgs {
    /// Number of jobs, each on a one-minute schedule (second 0 of every minute: the worst case,
    /// every job fires at the same instant).
    #[arg(long, default_value_t = 10_000)]
    pub jobs: usize,
    /// Minutes of firing to measure.
    #[arg(long, default_value_t = 3)]
    pub minutes: u64,
    /// Members (separate processes).
    #[arg(long, default_value_t = 3)]
    pub members: usize,
    /// Where to put the members' data dirs [default: a temporary directory].
    #[arg(long)]
    pub dir: Option<std::path::PathBuf>,
}

struct Child {
    proc: std::process::Child,
    http: std::net::SocketAddr,
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.proc.kill();
        let _ = self.proc.wait();
    }
}

/// `dir` (created if needed), or a new temporary directory.
fn bench_root(dir: Option<&std::path::PathBuf>) -> anyhow::Result<std::path::PathBuf> {
    match dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            Ok(d.clone())
        }
        None => tempfile_dir(),
    }
}

fn free_addr() -> anyhow::Result<std::net::SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

fn rss_mib(pid: u32, field: &str) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l[field.len()..].trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Starts `n` member processes of a new cluster under `root` (the first creates it, the others
/// join), each logging to `root/m{i}.log`; waits until each is healthy. Returns them with the
/// admin token.
async fn spawn_members(
    root: &std::path::Path,
    n: usize,
    http: &reqwest::Client,
) -> anyhow::Result<(Vec<Child>, String)> {
    let exe = std::env::current_exe()?;
    let token = crate::auth::new_token();
    let secret = crate::datadir::random_secret();
    let master_key = crate::keys::MasterKey::generate().to_hex().to_string();
    let mut members: Vec<Child> = Vec::new();
    for i in 0..n {
        let (h, r) = (free_addr()?, free_addr()?);
        let mut cmd = std::process::Command::new(&exe);
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(root.join(format!("m{i}")))
            // The scheduler's debug line times each round of due slots.
            .args([
                "--http",
                &h.to_string(),
                "--raft",
                &r.to_string(),
                "--log",
                "warn,steward::engine::scheduler=debug",
            ])
            .env("STEWARD_CLUSTER_SECRET", &secret)
            .env("STEWARD_MASTER_KEY", &master_key)
            .stdout(std::fs::File::create(root.join(format!("m{i}.log")))?)
            .stderr(std::fs::File::create(root.join(format!("m{i}.err")))?);
        if i == 0 {
            cmd.env("STEWARD_ADMIN_TOKEN", &token);
        } else {
            cmd.args(["--join", &format!("http://{}", members[0].http)]);
        }
        members.push(Child { proc: cmd.spawn()?, http: h });
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = http.get(format!("http://{h}/health")).send().await.is_ok_and(|r| r.status().is_success());
            if ok {
                break;
            }
            anyhow::ensure!(Instant::now() < until, "member {i} did not become healthy; see {}", root.display());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok((members, token))
}

pub async fn fires(args: FiresArgs) -> anyhow::Result<()> {
    crate::cli::init_logging("warn");
    let root = bench_root(args.dir.as_ref())?;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(120)).build()?;
    let (members, token) = spawn_members(&root, args.members, &http).await?;
    let api = |i: usize, path: &str| format!("http://{}/api/59{path}", members[i].http);
    let r = http
        .post(api(0, "/projects"))
        .header("X-Rundeck-Auth-Token", &token)
        .json(&json!({ "name": "bench" }))
        .send()
        .await?;
    anyhow::ensure!(r.status().is_success(), "creating the project: {}", r.status());

    // Import the jobs in batches, each batch through one member (which then owns them).
    let started = Instant::now();
    let batch = 250;
    let mut pending = Vec::new();
    for (b, chunk) in (0..args.jobs).collect::<Vec<_>>().chunks(batch).enumerate() {
        let mut doc = String::new();
        for i in chunk {
            doc.push_str(&format!(
                "- name: job-{i}\n  uuid: {}\n  schedule:\n    crontab: '0 * * * * ? *'\n  multipleExecutions: true\n  \
                 sequence:\n    commands:\n      - exec: 'true'\n",
                uuid::Uuid::new_v4()
            ));
        }
        let url = api(b % args.members, "/project/bench/jobs/import");
        let req =
            http.post(url).header("X-Rundeck-Auth-Token", &token).header("content-type", "application/yaml").body(doc);
        pending.push(tokio::spawn(async move { req.send().await }));
        if pending.len() >= args.members {
            for p in pending.drain(..) {
                let r = p.await??;
                anyhow::ensure!(r.status().is_success(), "import failed: {}", r.status());
            }
        }
    }
    for p in pending {
        let r = p.await??;
        anyhow::ensure!(r.status().is_success(), "import failed: {}", r.status());
    }
    println!("imported {} jobs over {} members in {:.1?}", args.jobs, args.members, started.elapsed());

    // Measure whole minutes: from the next minute boundary, `minutes` bursts, then settle.
    let now = chrono::Utc::now();
    let to_boundary = 60_000 - (now.timestamp_millis() % 60_000);
    let end = Instant::now() + Duration::from_millis(to_boundary as u64) + Duration::from_secs(60 * args.minutes - 30);
    let mut peak = vec![0.0f64; members.len()];
    while Instant::now() < end {
        for (i, m) in members.iter().enumerate() {
            peak[i] = peak[i].max(rss_mib(m.proc.id(), "VmRSS:"));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!(
        "steward bench fires: {} jobs on '0 * * * * ? *' (all at second 0), {} members, {} minute(s)",
        args.jobs, args.members, args.minutes
    );
    let mut worst = (i64::MIN, i64::MIN);
    let mut total = 0u64;
    for (i, m) in members.iter().enumerate() {
        let v: serde_json::Value =
            http.get(api(i, "/metrics/metrics")).header("X-Rundeck-Auth-Token", &token).send().await?.json().await?;
        let h = &v["histograms"]["steward.scheduler.fireLateness"];
        let fired = v["counters"]["steward.scheduler.fired"]["count"].as_u64().unwrap_or(0);
        let missed = v["counters"]["steward.scheduler.missed"]["count"].as_u64().unwrap_or(0);
        // Slots whose fire write timed out but took effect: decided, but their lateness is
        // unknown (at least the write's timeout), so they are not in the histogram.
        let unknown = v["counters"]["steward.scheduler.alreadyRecorded"]["count"].as_u64().unwrap_or(0);
        total += fired;
        let (p50, p99, max) =
            (h["p50"].as_i64().unwrap_or(0), h["p99"].as_i64().unwrap_or(0), h["max"].as_i64().unwrap_or(0));
        worst = (worst.0.max(p99), worst.1.max(max));
        let s = &v["histograms"]["steward.executions.startLateness"];
        let (s50, s99, smax) =
            (s["p50"].as_i64().unwrap_or(0), s["p99"].as_i64().unwrap_or(0), s["max"].as_i64().unwrap_or(0));
        println!(
            "member {i}: fired {fired:>6}  missed {missed}  decided with unknown lateness {unknown}  \
             lateness p50 {p50} ms  p99 {p99} ms  max {max} ms  \
             (steps began: p50 {s50} ms  p99 {s99} ms  max {smax} ms after the slot)  \
             rss {:.0} MiB (peak sampled {:.0} MiB, kernel high-water {:.0} MiB)",
            rss_mib(m.proc.id(), "VmRSS:"),
            peak[i],
            rss_mib(m.proc.id(), "VmHWM:")
        );
    }
    println!("all members: fired {total}; worst p99 {} ms, worst max {} ms", worst.0, worst.1);
    // Every fired execution must also have run and ended: a member that bounded its memory by
    // not running them would show here.
    let v: serde_json::Value = http
        .get(api(0, "/project/bench/executions/running"))
        .header("X-Rundeck-Auth-Token", &token)
        .send()
        .await?
        .json()
        .await?;
    println!("executions not yet ended 30 s after the last burst: {}", v["paging"]["total"]);
    drop(members);
    if args.dir.is_none() {
        let _ = std::fs::remove_dir_all(&root);
    }
    Ok(())
}

/// `steward bench takeover`: the time from SIGKILL of the member owning scheduled jobs to the
/// first fire of one of them on its new owner, over several runs, each on a new cluster of real
/// member processes with the default settings.
#[derive(Debug, Clone, clap::Args)]
pub struct TakeoverArgs {
    /// Runs (a new cluster each).
    #[arg(long, default_value_t = 10)]
    pub runs: usize,
    /// Members per cluster.
    #[arg(long, default_value_t = 3)]
    pub members: usize,
    /// Jobs on the killed member, each firing every second.
    #[arg(long, default_value_t = 10)]
    pub jobs: usize,
    /// Where to put the members' data dirs [default: a temporary directory].
    #[arg(long)]
    pub dir: Option<std::path::PathBuf>,
}

/// The fire records of `job` as `(slot, outcome, member, recorded ms)`.
async fn job_fires(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    job: &str,
) -> anyhow::Result<Vec<(i64, String, String, i64)>> {
    let v: serde_json::Value = http
        .get(format!("{base}/api/59/job/{job}/fires?max=100000"))
        .header("X-Rundeck-Auth-Token", token)
        .send()
        .await?
        .json()
        .await?;
    Ok(v["fires"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| {
                    (
                        f["slot"].as_i64().unwrap_or(0),
                        f["outcome"].as_str().unwrap_or("").to_string(),
                        f["member"].as_str().unwrap_or("").to_string(),
                        f["recorded"].as_i64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default())
}

/// One run: a new cluster, jobs owned by a follower, SIGKILL, the first fire elsewhere. Returns
/// (first fire on a new owner, the last job's first fire on a new owner) after the kill.
async fn takeover_once(root: &std::path::Path, args: &TakeoverArgs) -> anyhow::Result<(Duration, Duration)> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    let (mut members, token) = spawn_members(root, args.members, &http).await?;
    let addrs: Vec<String> = members.iter().map(|m| format!("http://{}", m.http)).collect();
    let base = |i: usize| addrs[i].clone();
    let get = |url: String| http.get(url).header("X-Rundeck-Auth-Token", &token).send();
    let info: serde_json::Value = get(format!("{}/api/59/cluster/members", base(0))).await?.json().await?;
    let leader = info["leader"].as_str().unwrap_or_default().to_string();
    let mut uuids = Vec::new();
    for i in 0..members.len() {
        let v: serde_json::Value = get(format!("{}/api/59/system/info", base(i))).await?.json().await?;
        uuids.push(v["system"]["rundeck"]["serverUUID"].as_str().unwrap_or_default().to_string());
    }
    // The owner is a follower: the figure is the takeover itself, not an election before it.
    let owner = uuids.iter().position(|u| *u != leader).ok_or_else(|| anyhow::anyhow!("no follower"))?;
    let via = (owner + 1) % members.len();
    let r = http
        .post(format!("{}/api/59/projects", base(owner)))
        .header("X-Rundeck-Auth-Token", &token)
        .json(&json!({ "name": "bench" }))
        .send()
        .await?;
    anyhow::ensure!(r.status().is_success(), "creating the project: {}", r.status());
    let mut doc = String::new();
    for i in 0..args.jobs {
        doc.push_str(&format!(
            "- name: job-{i}\n  schedule:\n    crontab: '* * * * * ? *'\n  sequence:\n    commands:\n      - exec: 'true'\n"
        ));
    }
    let v: serde_json::Value = http
        .post(format!("{}/api/59/project/bench/jobs/import", base(owner)))
        .header("X-Rundeck-Auth-Token", &token)
        .header("content-type", "application/yaml")
        .body(doc)
        .send()
        .await?
        .json()
        .await?;
    let jobs: Vec<String> = v["succeeded"]
        .as_array()
        .map(|a| a.iter().filter_map(|j| j["id"].as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    anyhow::ensure!(jobs.len() == args.jobs, "import: {v}");
    // Wait until the owner has fired every job once.
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let mut all = true;
        for j in &jobs {
            let f = job_fires(&http, &base(via), &token, j).await?;
            all &= f.iter().any(|(_, o, m, _)| o == "fired" && *m == uuids[owner]);
        }
        if all {
            break;
        }
        anyhow::ensure!(Instant::now() < until, "the owner never fired its jobs");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let victim = &mut members[owner];
    let _ = victim.proc.kill();
    let killed = chrono::Utc::now().timestamp_millis();
    let _ = victim.proc.wait();
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let mut firsts = Vec::new();
        for j in &jobs {
            let f = job_fires(&http, &base(via), &token, j).await?;
            if let Some((_, _, _, at)) = f.iter().find(|(_, o, m, _)| o == "fired" && *m != uuids[owner]) {
                firsts.push(*at);
            }
        }
        if firsts.len() == jobs.len() {
            let ms = |t: i64| Duration::from_millis((t - killed).max(0) as u64);
            let first = firsts.iter().copied().min().unwrap_or(killed);
            let last = firsts.iter().copied().max().unwrap_or(killed);
            return Ok((ms(first), ms(last)));
        }
        anyhow::ensure!(Instant::now() < until, "the jobs were not taken over within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn takeover(args: TakeoverArgs) -> anyhow::Result<()> {
    crate::cli::init_logging("warn");
    let root = bench_root(args.dir.as_ref())?;
    let mut firsts = Vec::new();
    let mut lasts = Vec::new();
    for run in 0..args.runs {
        let dir = root.join(format!("run{run}"));
        std::fs::create_dir_all(&dir)?;
        let (first, last) = takeover_once(&dir, &args).await?;
        println!("run {run}: first fire on a new owner {first:.2?} after SIGKILL; all {} jobs {last:.2?}", args.jobs);
        firsts.push(first);
        lasts.push(last);
    }
    firsts.sort();
    lasts.sort();
    println!(
        "steward bench takeover: {} runs, {} members, {} one-second jobs on the killed member, default settings",
        args.runs, args.members, args.jobs
    );
    println!(
        "first fire on the new owner after SIGKILL: p50 {:.2?}  max {:.2?}; every job moved: p50 {:.2?}  max {:.2?}",
        percentile(&firsts, 0.5),
        firsts.last().copied().unwrap_or_default(),
        percentile(&lasts, 0.5),
        lasts.last().copied().unwrap_or_default()
    );
    if args.dir.is_none() {
        let _ = std::fs::remove_dir_all(&root);
    }
    Ok(())
}
