//! `steward bench`: durable replicated writes on a 3-member cluster on loopback, and the same
//! load against etcd when `--etcd URL` is given, with the same client in the same run.
//!
//! Each write on steward creates a project whose description is a 256-byte value (a guarded
//! transaction, committed by a majority with fsync on each member, applied, answered over HTTP);
//! each write on etcd is a `PUT` of a fresh key with a 256-byte value through its JSON gateway
//! (`/v3/kv/put`). Writers run closed loops: each sends its next request when the previous one
//! is answered.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;

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

/// Runs `writers` closed-loop writers for `seconds`; `request(n)` builds the n-th request.
async fn load<F>(writers: usize, seconds: u64, request: F) -> Figures
where
    F: Fn(u64) -> reqwest::RequestBuilder + Send + Sync + 'static,
{
    let request = Arc::new(request);
    let counter = Arc::new(AtomicU64::new(0));
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
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort();
    Figures {
        writers,
        writes: all.len() as u64,
        errors: errors.load(Ordering::Relaxed),
        per_second: all.len() as f64 / elapsed,
        p50: percentile(&all, 0.50),
        p99: percentile(&all, 0.99),
    }
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

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
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
    let tmp;
    let root = match &args.dir {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile_dir()?;
            tmp.clone()
        }
    };
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
        let f = load(w, args.seconds, move |n| {
            h.post(&u)
                .header("X-Rundeck-Auth-Token", &t)
                .json(&json!({ "name": format!("b{run_id}-{n}"), "description": v }))
        })
        .await;
        print_row("steward", &f);
        if let Some(etcd) = &args.etcd {
            let (h, u, v) =
                (http.clone(), format!("{}/v3/kv/put", etcd.trim_end_matches('/')), base64(value.as_bytes()));
            let f = load(w, args.seconds, move |n| {
                h.post(&u).json(&json!({ "key": base64(format!("bench/{run_id}/{n}").as_bytes()), "value": v }))
            })
            .await;
            print_row("etcd", &f);
        }
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
