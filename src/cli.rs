//! The `steward` command line.
//!
//! ```text
//! steward serve [--data-dir D] [--http A] [--raft A] [--join URL --cluster-secret S] ...
//! steward cluster status  [--url URL]              the members, as the leader sees them
//! steward cluster join --peer URL [--url URL]      a running member joins the cluster at URL
//! steward cluster leave   [--url URL] [--member ID] a member leaves (by default the one at --url)
//! steward keys new-master-key --out FILE           a new random master key (mode 0600)
//! steward keys rekey --new-master-key-file FILE    re-seal key storage under that key
//! steward bench writes [--etcd URL] ...            the replicated-write benchmark
//! steward bench fires [--jobs 10000] ...            fire lateness and memory with many jobs
//! steward bench takeover [--runs 10] ...           SIGKILL of a job owner to the first fire elsewhere
//! steward bench apply [--jobs 10000] ...            the state machine's cost of applying fires
//! steward bench floor [--rounds 2000] ...          the disk's and loopback's floor for a write
//! ```
//!
//! The cluster commands talk to a member's HTTP API with a token from `--token`,
//! `STEWARD_TOKEN`, or the `admin.token` file of `--data-dir`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use serde_json::Value;

use crate::config::{Config, ServeArgs, DEFAULT_DATA_DIR};

#[derive(Debug, Parser)]
#[command(name = "steward", version, about = "A job scheduler with an embedded, Raft-replicated store")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a member.
    Serve(Box<ServeArgs>),
    /// Inspect and change cluster membership.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// Manage the key storage master key.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Benchmarks (see BENCHMARKS.md).
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Write a new random master key to FILE (mode 0600; an existing file is never overwritten).
    NewMasterKey {
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Re-seal every stored secret under the master key in FILE. Every member must already use
    /// that key as its master-key-file (with the old key in previous-master-key-files); only the
    /// key's id is sent to the member at --url.
    Rekey {
        #[command(flatten)]
        client: ClientArgs,
        #[arg(long, value_name = "FILE")]
        new_master_key_file: PathBuf,
    },
}

/// How the cluster commands reach a member.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// HTTP URL of the member to talk to.
    #[arg(long, env = "STEWARD_URL", default_value = "http://127.0.0.1:4440")]
    pub url: String,
    /// API token [default: the admin.token file of --data-dir].
    #[arg(long, env = "STEWARD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Data dir whose admin.token to use when no token is given.
    #[arg(long, env = "STEWARD_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Durable replicated writes on 3 members on loopback (optionally against etcd).
    Writes(crate::bench::BenchArgs),
    /// Fire lateness and memory with many one-minute jobs over member processes.
    Fires(crate::bench::FiresArgs),
    /// Time from SIGKILL of a job owner to the first fire on its new owner.
    Takeover(crate::bench::TakeoverArgs),
    /// The state machine's cost of applying scheduled fires, on one store without Raft.
    Apply(crate::bench::apply::ApplyArgs),
    /// What the disk and loopback allow a replicated write at best, with no steward code.
    Floor(crate::bench::floor::FloorArgs),
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Show the members as the leader sees them.
    Status {
        #[command(flatten)]
        client: ClientArgs,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
    /// Make the running member at --url join the cluster of --peer. The member must be alone in
    /// its own cluster and hold no projects: its state is replaced by the cluster's.
    Join {
        #[command(flatten)]
        client: ClientArgs,
        /// HTTP URL of any member of the cluster to join.
        #[arg(long)]
        peer: String,
        /// The secret of the cluster to join [default: the member's own].
        #[arg(long, env = "STEWARD_CLUSTER_SECRET", hide_env_values = true)]
        cluster_secret: Option<String>,
        /// A file (on the member's machine) with the joined cluster's master key [default: the
        /// member's own key, which must then be the cluster's].
        #[arg(long)]
        master_key_file: Option<std::path::PathBuf>,
    },
    /// Remove a member from the cluster; it stops once the removal is committed.
    Leave {
        #[command(flatten)]
        client: ClientArgs,
        /// The member to remove (uuid) [default: the member at --url].
        #[arg(long)]
        member: Option<String>,
    },
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    // Before anything else: a step guard is started for every step and must stay cheap.
    if let Some(code) = crate::exec::guard::run_if_requested() {
        return code;
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => {
            crate::exec::guard::use_this_binary();
            serve(*args)
        }
        Command::Cluster { command } => runtime().and_then(|rt| rt.block_on(cluster(command))),
        Command::Keys { command } => runtime().and_then(|rt| rt.block_on(keys(command))),
        Command::Bench { what: BenchCommand::Writes(args) } => {
            runtime().and_then(|rt| rt.block_on(crate::bench::run(args)))
        }
        Command::Bench { what: BenchCommand::Fires(args) } => {
            runtime().and_then(|rt| rt.block_on(crate::bench::fires(args)))
        }
        Command::Bench { what: BenchCommand::Takeover(args) } => {
            runtime().and_then(|rt| rt.block_on(crate::bench::takeover(args)))
        }
        Command::Bench { what: BenchCommand::Floor(args) } => crate::bench::floor::floor(args),
        Command::Bench { what: BenchCommand::Apply(args) } => {
            runtime().and_then(|rt| rt.block_on(crate::bench::apply::apply(args)))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Most threads in tokio's blocking pool (its default is 512).
///
/// The pool serves file I/O (the log store's local files, `tokio::fs`), large state machine
/// applies, snapshots and password hashing, and each of its threads keeps an allocator heap of
/// its own. In a burst of thousands of scheduled runs it grew to 21 threads; a cap at 8 then
/// lowered the fire benchmark's peak memory (BENCHMARKS.md, session 4). Since small applies
/// stopped using the pool, the cap made no difference one run could show: it is a bound, not
/// a tuning. Work beyond it waits in the pool's queue.
const MAX_BLOCKING_THREADS: usize = 16;

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    runtime_with(None)
}

/// The multi-threaded runtime with `workers` async worker threads (tokio's default, one per
/// CPU, when `None`).
fn runtime_with(workers: Option<usize>) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = workers {
        builder.worker_threads(n);
    }
    Ok(builder.max_blocking_threads(MAX_BLOCKING_THREADS).enable_all().build()?)
}

/// Installs the log subscriber; `RUST_LOG` wins over the configured filter. Colours only on a
/// terminal: a log written to a file or a journal stays plain text that `grep` finds.
pub fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_target(false).with_ansi(ansi).try_init();
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = Config::load(&args)?;
    init_logging(&config.log);
    runtime_with(config.worker_threads)?.block_on(crate::server::run(config))
}

/// A small client of a member's HTTP API.
pub struct ApiClient {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl ApiClient {
    pub fn new(args: &ClientArgs) -> anyhow::Result<ApiClient> {
        let token = match &args.token {
            Some(t) => t.clone(),
            None => {
                let path = args.data_dir.join(crate::datadir::TOKEN_FILE);
                std::fs::read_to_string(&path)
                    .with_context(|| format!("no --token given and cannot read {}", path.display()))?
                    .trim()
                    .to_string()
            }
        };
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?;
        Ok(ApiClient { http, base: args.url.trim_end_matches('/').to_string(), token })
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<Option<Value>> {
        let resp = req
            .header("X-Rundeck-Auth-Token", &self.token)
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.base))?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            let msg = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_string))
                .unwrap_or(text);
            bail!("{status}: {msg}");
        }
        if text.is_empty() {
            return Ok(None);
        }
        Ok(Some(serde_json::from_str(&text)?))
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(self.http.get(format!("{}{path}", self.base))).await?.context("empty answer")
    }

    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Option<Value>> {
        self.send(self.http.post(format!("{}{path}", self.base)).json(body)).await
    }

    pub async fn delete(&self, path: &str) -> anyhow::Result<()> {
        self.send(self.http.delete(format!("{}{path}", self.base))).await.map(|_| ())
    }
}

async fn cluster(command: ClusterCommand) -> anyhow::Result<()> {
    match command {
        ClusterCommand::Status { client, json } => {
            let api = ApiClient::new(&client)?;
            let v = api.get("/api/59/cluster/members").await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            println!("{:<38} {:<9} {:<9} {:>10} {:>9}  http / raft", "member", "role", "state", "matched", "contact");
            for m in v["members"].as_array().into_iter().flatten() {
                let s = |k: &str| m[k].as_str().unwrap_or("-").to_string();
                let n = |k: &str| m[k].as_u64().map(|x| x.to_string()).unwrap_or_else(|| "-".into());
                println!(
                    "{:<38} {:<9} {:<9} {:>10} {:>7}ms  {} / {}",
                    s("id"),
                    s("role"),
                    s("state"),
                    n("matchedIndex"),
                    n("lastContactMs"),
                    s("httpAddress"),
                    s("raftAddress")
                );
            }
            Ok(())
        }
        ClusterCommand::Join { client, peer, cluster_secret, master_key_file } => {
            let api = ApiClient::new(&client)?;
            let mut body = serde_json::json!({ "peer": peer });
            if let Some(s) = cluster_secret {
                body["clusterSecret"] = Value::String(s);
            }
            if let Some(f) = master_key_file {
                let abs = std::fs::canonicalize(&f).with_context(|| format!("master key file {}", f.display()))?;
                body["masterKeyFile"] = Value::String(abs.display().to_string());
            }
            api.post("/api/59/cluster/join", &body).await?;
            println!("the member at {} is joining the cluster of {peer}", client.url);
            Ok(())
        }
        ClusterCommand::Leave { client, member } => {
            let api = ApiClient::new(&client)?;
            let id = match member {
                Some(m) => m,
                None => api.get("/api/59/system/info").await?["system"]["rundeck"]["serverUUID"]
                    .as_str()
                    .context("system/info has no serverUUID")?
                    .to_string(),
            };
            api.delete(&format!("/api/59/cluster/members/{id}")).await?;
            println!("member {id} left the cluster");
            Ok(())
        }
    }
}

async fn keys(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::NewMasterKey { out } => {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let key = crate::keys::MasterKey::generate();
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&out)
                .with_context(|| format!("cannot create {}", out.display()))?;
            f.write_all(format!("{}\n", key.to_hex().as_str()).as_bytes())?;
            f.sync_all()?;
            println!("wrote master key {} to {}", key.id(), out.display());
            Ok(())
        }
        KeysCommand::Rekey { client, new_master_key_file } => {
            let key = crate::keys::MasterKey::read_file(&new_master_key_file)?;
            let api = ApiClient::new(&client)?;
            let body = serde_json::json!({ "keyId": key.id().to_string() });
            let v = api.post("/api/59/system/keys/rekey", &body).await?.context("empty answer")?;
            println!(
                "key storage is sealed under master key {}: {} values re-sealed, {} already were",
                key.id(),
                v["resealed"],
                v["unchanged"]
            );
            Ok(())
        }
    }
}
