//! Configuration of `steward serve`: one typed struct, filled from (in rising precedence) the
//! defaults, a TOML file (`--config`), `STEWARD_*` environment variables and flags.
//!
//! `steward.example.toml` at the repository root documents every setting.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::logs::{LogBackend, LogStoreConfig, S3Config, DEFAULT_S3_REGION};

/// Default HTTP API listen address.
pub const DEFAULT_HTTP: &str = "127.0.0.1:4440";
/// Default member-to-member gRPC listen address.
pub const DEFAULT_RAFT: &str = "127.0.0.1:4441";
/// Default log filter: steward at info, openraft's chatty internals at warn.
pub const DEFAULT_LOG: &str = "info,openraft=warn";
/// Largest accepted `worker-threads`: far more than any machine's CPUs, low enough to catch a
/// typo before it starts thousands of threads.
pub const MAX_WORKER_THREADS: usize = 1024;
/// Default data directory.
pub const DEFAULT_DATA_DIR: &str = "./steward-data";

/// Flags of `steward serve`. Each may also come from the environment variable named beside it.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    /// TOML configuration file (see steward.example.toml).
    #[arg(long, env = "STEWARD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where this member keeps its state [default: ./steward-data].
    #[arg(long, env = "STEWARD_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// HTTP API listen address [default: 127.0.0.1:4440].
    #[arg(long, env = "STEWARD_HTTP", value_name = "ADDR")]
    pub http: Option<String>,
    /// Member-to-member gRPC listen address [default: 127.0.0.1:4441].
    #[arg(long, env = "STEWARD_RAFT", value_name = "ADDR")]
    pub raft: Option<String>,
    /// HTTP address other members and clients use to reach this member [default: --http].
    #[arg(long, env = "STEWARD_ADVERTISE_HTTP", value_name = "HOST:PORT")]
    pub advertise_http: Option<String>,
    /// gRPC address other members use to reach this member [default: --raft].
    #[arg(long, env = "STEWARD_ADVERTISE_RAFT", value_name = "HOST:PORT")]
    pub advertise_raft: Option<String>,
    /// Shared secret every member-to-member call carries. Generated on the first member when
    /// absent and written to <data-dir>/cluster.secret.
    #[arg(long, env = "STEWARD_CLUSTER_SECRET", value_name = "SECRET", hide_env_values = true)]
    pub cluster_secret: Option<String>,
    /// The admin API token to create on the first start of a new cluster (instead of a
    /// generated one).
    #[arg(long, env = "STEWARD_ADMIN_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Join the cluster of this member (its HTTP URL) instead of creating a new cluster.
    #[arg(long, env = "STEWARD_JOIN", value_name = "URL")]
    pub join: Option<String>,
    /// Log filter, e.g. `info` or `steward=debug,openraft=warn`.
    #[arg(long, env = "STEWARD_LOG", value_name = "FILTER")]
    pub log: Option<String>,
    /// Threads that run the member's async work (HTTP, Raft, scheduling) [default: one per
    /// CPU]. Members that share a machine run better with fewer each.
    #[arg(long, env = "STEWARD_WORKER_THREADS", value_name = "N")]
    pub worker_threads: Option<usize>,
    /// File holding the master key (64 hex characters, mode 0600) that seals key storage.
    #[arg(long, env = "STEWARD_MASTER_KEY_FILE", value_name = "FILE")]
    pub master_key_file: Option<PathBuf>,
    /// The master key itself (64 hex characters); prefer --master-key-file.
    #[arg(long, env = "STEWARD_MASTER_KEY", value_name = "HEX", hide_env_values = true)]
    pub master_key: Option<String>,
    /// TLS certificate (PEM) of this member for member-to-member gRPC.
    #[arg(long, env = "STEWARD_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) of this member.
    #[arg(long, env = "STEWARD_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// CA certificate (PEM) that signed every member's certificate.
    #[arg(long, env = "STEWARD_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
}

/// The TOML file's shape. Every field is optional; see steward.example.toml.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub http: Option<String>,
    pub raft: Option<String>,
    pub advertise_http: Option<String>,
    pub advertise_raft: Option<String>,
    pub cluster_secret: Option<String>,
    pub admin_token: Option<String>,
    pub join: Option<String>,
    pub log: Option<String>,
    pub worker_threads: Option<usize>,
    #[serde(default)]
    pub cluster: ClusterFile,
    #[serde(default)]
    pub logs: LogsFile,
    #[serde(default)]
    pub keys: KeysFile,
    #[serde(default)]
    pub auth: AuthFile,
    #[serde(default)]
    pub tls: TlsFile,
    #[serde(default)]
    pub heartbeat: crate::cluster::settings::HeartbeatFile,
    #[serde(default)]
    pub autotakeover: crate::cluster::settings::AutotakeoverFile,
    #[serde(default)]
    pub member: crate::cluster::settings::MemberFile,
    #[serde(default, rename = "remoteExecution")]
    pub remote_execution: crate::placement::RemoteExecutionFile,
}

/// `[keys]` section: key storage.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct KeysFile {
    pub master_key_file: Option<PathBuf>,
    pub master_key: Option<String>,
    pub previous_master_key_files: Option<Vec<PathBuf>>,
    pub max_value_bytes: Option<usize>,
}

/// `[auth]` section: tokens and sessions.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AuthFile {
    pub token_max_duration: Option<String>,
    pub session_ttl: Option<String>,
}

/// `[tls]` section: member-to-member TLS.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TlsFile {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub server_name: Option<String>,
}

/// `[cluster]` section: Raft timing and limits.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ClusterFile {
    pub heartbeat_ms: Option<u64>,
    pub election_timeout_min_ms: Option<u64>,
    pub election_timeout_max_ms: Option<u64>,
    pub request_timeout_ms: Option<u64>,
    pub max_voters: Option<usize>,
    pub snapshot_every: Option<u64>,
    pub cache_capacity_mib: Option<u64>,
}

/// `[logs]` section: where execution output is kept.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LogsFile {
    /// `local` or `s3`.
    pub store: Option<String>,
    pub dir: Option<PathBuf>,
    pub prefix: Option<String>,
    pub checkpoint_interval_ms: Option<u64>,
    #[serde(default)]
    pub s3: S3File,
}

/// `[logs.s3]` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct S3File {
    pub bucket: Option<String>,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<SecretText>,
    pub allow_http: Option<bool>,
    pub virtual_hosted_style: Option<bool>,
}

/// The validated configuration a member runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the member keeps its state.
    pub data_dir: PathBuf,
    /// HTTP API listen address.
    pub http: SocketAddr,
    /// gRPC listen address.
    pub raft: SocketAddr,
    /// Advertised HTTP address; `None` means "the address actually bound".
    pub advertise_http: Option<String>,
    /// Advertised gRPC address; `None` means "the address actually bound".
    pub advertise_raft: Option<String>,
    /// Cluster secret given by the operator (else read from or generated into the data dir).
    pub cluster_secret: Option<String>,
    /// Admin token to create when a new cluster is created.
    pub admin_token: Option<String>,
    /// HTTP URL of a member to join through.
    pub join: Option<String>,
    /// Log filter.
    pub log: String,
    /// Async worker threads; `None` for one per CPU (tokio's default).
    pub worker_threads: Option<usize>,
    /// Raft timing and limits.
    pub cluster: ClusterTuning,
    /// The execution log store.
    pub logs: LogStoreConfig,
    /// Key storage.
    pub keys: KeysSettings,
    /// Tokens and sessions.
    pub auth: AuthSettings,
    /// Member-to-member TLS; `None` for plain gRPC (the cluster secret still guards every call).
    pub tls: Option<TlsFiles>,
    /// Heartbeats, autotakeover and what this member reports of itself.
    pub scheduling: crate::cluster::SchedulingSettings,
    /// The remote execution policy: which member runs an execution.
    pub placement: crate::placement::Placement,
}

/// Default largest key storage value: 1 MiB.
pub const DEFAULT_MAX_VALUE_BYTES: usize = 1024 * 1024;
/// Largest accepted `keys.max-value-bytes`: a sealed value travels base64 in one Raft entry.
pub const MAX_MAX_VALUE_BYTES: usize = 16 * 1024 * 1024;
/// Default longest API token lifetime (Rundeck's `rundeck.api.tokens.duration.max`).
pub const DEFAULT_TOKEN_MAX_DURATION: &str = "30d";
/// Default browser session lifetime.
pub const DEFAULT_SESSION_TTL: &str = "12h";

pub use crate::secret::SecretText;

/// Key storage settings.
#[derive(Debug, Clone)]
pub struct KeysSettings {
    /// The master key, given directly (hex). At most one of this and `master_key_file`; when
    /// both are unset the member uses `<data-dir>/master.key`, generated when it creates a
    /// cluster.
    pub master_key: Option<SecretText>,
    /// File holding the master key.
    pub master_key_file: Option<PathBuf>,
    /// Older master keys, kept to open values sealed under them during a rekey.
    pub previous_master_key_files: Vec<PathBuf>,
    /// Largest value accepted, bytes.
    pub max_value_bytes: usize,
}

impl Default for KeysSettings {
    fn default() -> Self {
        KeysSettings {
            master_key: None,
            master_key_file: None,
            previous_master_key_files: Vec::new(),
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
        }
    }
}

/// Token and session settings.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// Longest API token lifetime; `None` for no limit (`"0"`).
    pub token_max_duration: Option<Duration>,
    /// How long a browser session lasts.
    pub session_ttl: Duration,
}

impl Default for AuthSettings {
    fn default() -> Self {
        let parse = |s| crate::auth::tokens::parse_duration(s).expect("default durations parse");
        AuthSettings {
            token_max_duration: Some(parse(DEFAULT_TOKEN_MAX_DURATION)),
            session_ttl: parse(DEFAULT_SESSION_TTL),
        }
    }
}

/// The files of member-to-member TLS (all PEM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
    /// The name peers' certificates are checked against; default: the host of each peer's
    /// advertised gRPC address.
    pub server_name: Option<String>,
}

/// Raft timing and limits.
#[derive(Debug, Clone)]
pub struct ClusterTuning {
    /// Leader heartbeat interval; also the AppendEntries timeout.
    pub heartbeat: Duration,
    /// A follower that hears nothing for a random time in [min, max) starts an election.
    pub election_timeout_min: Duration,
    pub election_timeout_max: Duration,
    /// How long an API request waits for a leader before answering 503.
    pub request_timeout: Duration,
    /// Most voters; further members stay learners.
    pub max_voters: usize,
    /// Build a snapshot (and allow purging the log) after this many applied entries.
    pub snapshot_every: u64,
    /// sled page cache, MiB.
    pub cache_capacity_mib: u64,
}

impl Default for ClusterTuning {
    fn default() -> Self {
        let r = steward_raft::default_raft_config();
        ClusterTuning {
            heartbeat: Duration::from_millis(r.heartbeat_interval),
            election_timeout_min: Duration::from_millis(r.election_timeout_min),
            election_timeout_max: Duration::from_millis(r.election_timeout_max),
            request_timeout: Duration::from_secs(5),
            max_voters: 5,
            snapshot_every: 100_000,
            cache_capacity_mib: 128,
        }
    }
}

/// A configuration that cannot be used; the message names the setting.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{setting}: {message}")]
    Invalid { setting: &'static str, message: String },
    #[error(transparent)]
    Placement(#[from] crate::placement::PlacementError),
}

fn invalid(setting: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { setting, message: message.into() }
}

fn parse_addr(setting: &'static str, v: &str) -> Result<SocketAddr, ConfigError> {
    v.parse().map_err(|_| invalid(setting, format!("'{v}' is not a socket address like 127.0.0.1:4440")))
}

/// The log store the `[logs]` section describes; the local store defaults to
/// `<data-dir>/logs`.
fn logs_config(f: &LogsFile, data_dir: &std::path::Path) -> Result<LogStoreConfig, ConfigError> {
    let mut logs = LogStoreConfig::local(f.dir.clone().unwrap_or_else(|| data_dir.join(crate::datadir::LOGS_DIR)));
    match f.store.as_deref().unwrap_or("local") {
        "local" => {
            if f.s3.bucket.is_some() {
                return Err(invalid(
                    "logs.store",
                    "logs.s3.bucket is set but logs.store is \"local\"; set store = \"s3\"",
                ));
            }
        }
        "s3" => {
            let s3 = &f.s3;
            logs.backend = LogBackend::S3(S3Config {
                bucket: s3.bucket.clone().unwrap_or_default(),
                endpoint: s3.endpoint.clone(),
                region: s3.region.clone().unwrap_or_else(|| DEFAULT_S3_REGION.into()),
                access_key_id: s3.access_key_id.clone(),
                secret_access_key: s3.secret_access_key.clone(),
                allow_http: s3.allow_http.unwrap_or(false),
                virtual_hosted_style: s3.virtual_hosted_style.unwrap_or(false),
            });
        }
        other => return Err(invalid("logs.store", format!("'{other}' is not \"local\" or \"s3\""))),
    }
    if let Some(p) = &f.prefix {
        logs.prefix = p.clone();
    }
    if let Some(ms) = f.checkpoint_interval_ms {
        logs.checkpoint_interval = Duration::from_millis(ms);
    }
    Ok(logs)
}

fn check_advertise(setting: &'static str, v: &str) -> Result<String, ConfigError> {
    match v.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0) => Ok(v.to_string()),
        _ => Err(invalid(setting, format!("'{v}' is not HOST:PORT with a non-zero port"))),
    }
}

impl Config {
    /// Merges flags (already merged with the environment by clap) over the file over defaults,
    /// and checks every setting.
    pub fn load(args: &ServeArgs) -> Result<Config, ConfigError> {
        let file = match &args.config {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.clone(), source })?;
                toml::from_str::<FileConfig>(&text)
                    .map_err(|e| ConfigError::Parse { path: path.clone(), message: e.to_string() })?
            }
            None => FileConfig::default(),
        };
        let pick = |a: &Option<String>, f: &Option<String>| a.clone().or_else(|| f.clone());
        let http = parse_addr("http", &pick(&args.http, &file.http).unwrap_or_else(|| DEFAULT_HTTP.into()))?;
        let raft = parse_addr("raft", &pick(&args.raft, &file.raft).unwrap_or_else(|| DEFAULT_RAFT.into()))?;
        let advertise_http = pick(&args.advertise_http, &file.advertise_http)
            .map(|v| check_advertise("advertise-http", &v))
            .transpose()?;
        let advertise_raft = pick(&args.advertise_raft, &file.advertise_raft)
            .map(|v| check_advertise("advertise-raft", &v))
            .transpose()?;
        let cluster_secret = pick(&args.cluster_secret, &file.cluster_secret);
        if let Some(s) = &cluster_secret {
            steward_raft::network::validate_secret(s).map_err(|e| invalid("cluster-secret", e.to_string()))?;
        }
        let admin_token = pick(&args.admin_token, &file.admin_token);
        if let Some(t) = &admin_token {
            crate::auth::validate_token_shape(t).map_err(|m| invalid("admin-token", m))?;
        }
        let join = pick(&args.join, &file.join);
        if let Some(j) = &join {
            if !(j.starts_with("http://") || j.starts_with("https://")) {
                return Err(invalid("join", format!("'{j}' is not an http:// URL of a member")));
            }
        }
        let mut cluster = ClusterTuning::default();
        let c = &file.cluster;
        if let Some(v) = c.heartbeat_ms {
            cluster.heartbeat = Duration::from_millis(v);
        }
        if let Some(v) = c.election_timeout_min_ms {
            cluster.election_timeout_min = Duration::from_millis(v);
        }
        if let Some(v) = c.election_timeout_max_ms {
            cluster.election_timeout_max = Duration::from_millis(v);
        }
        if let Some(v) = c.request_timeout_ms {
            cluster.request_timeout = Duration::from_millis(v);
        }
        if let Some(v) = c.max_voters {
            cluster.max_voters = v;
        }
        if let Some(v) = c.snapshot_every {
            cluster.snapshot_every = v;
        }
        if let Some(v) = c.cache_capacity_mib {
            cluster.cache_capacity_mib = v;
        }
        let data_dir =
            args.data_dir.clone().or(file.data_dir.clone()).unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let logs = logs_config(&file.logs, &data_dir)?;
        let mut keys = KeysSettings::default();
        keys.master_key = pick(&args.master_key, &file.keys.master_key).map(SecretText);
        keys.master_key_file = args.master_key_file.clone().or(file.keys.master_key_file.clone());
        if let Some(v) = &file.keys.previous_master_key_files {
            keys.previous_master_key_files = v.clone();
        }
        if let Some(v) = file.keys.max_value_bytes {
            keys.max_value_bytes = v;
        }
        if let Some(k) = &keys.master_key {
            crate::keys::MasterKey::parse(&k.0).map_err(|e| invalid("keys.master-key", e.to_string()))?;
        }
        let mut auth = AuthSettings::default();
        if let Some(v) = &file.auth.token_max_duration {
            let d = crate::auth::tokens::parse_duration(v).map_err(|m| invalid("auth.token-max-duration", m))?;
            auth.token_max_duration = (!d.is_zero()).then_some(d);
        }
        if let Some(v) = &file.auth.session_ttl {
            auth.session_ttl = crate::auth::tokens::parse_duration(v).map_err(|m| invalid("auth.session-ttl", m))?;
        }
        let tls = match (
            args.tls_cert.clone().or(file.tls.cert_file.clone()),
            args.tls_key.clone().or(file.tls.key_file.clone()),
            args.tls_ca.clone().or(file.tls.ca_file.clone()),
        ) {
            (None, None, None) => None,
            (Some(cert), Some(key), Some(ca)) => {
                Some(TlsFiles { cert, key, ca, server_name: file.tls.server_name.clone() })
            }
            _ => return Err(invalid("tls", "cert-file, key-file and ca-file are given together or not at all")),
        };
        let scheduling =
            crate::cluster::SchedulingSettings::from_file(&file.heartbeat, &file.autotakeover, &file.member)
                .map_err(|e| ConfigError::Invalid { setting: e.setting, message: e.message })?;
        let placement = crate::placement::Placement::from_file(&file.remote_execution)?;
        let config = Config {
            data_dir,
            http,
            raft,
            advertise_http,
            advertise_raft,
            cluster_secret,
            admin_token,
            join,
            log: pick(&args.log, &file.log).unwrap_or_else(|| DEFAULT_LOG.into()),
            worker_threads: args.worker_threads.or(file.worker_threads),
            cluster,
            logs,
            keys,
            auth,
            tls,
            scheduling,
            placement,
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks the settings against each other.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(n) = self.worker_threads {
            if !(1..=MAX_WORKER_THREADS).contains(&n) {
                return Err(invalid("worker-threads", format!("must be 1 to {MAX_WORKER_THREADS}, not {n}")));
            }
        }
        let c = &self.cluster;
        if c.heartbeat.is_zero() {
            return Err(invalid("cluster.heartbeat-ms", "must be above 0"));
        }
        if c.election_timeout_min <= c.heartbeat {
            return Err(invalid("cluster.election-timeout-min-ms", "must be greater than cluster.heartbeat-ms"));
        }
        if c.election_timeout_max <= c.election_timeout_min {
            return Err(invalid(
                "cluster.election-timeout-max-ms",
                "must be greater than cluster.election-timeout-min-ms",
            ));
        }
        if !(1..=9).contains(&c.max_voters) {
            return Err(invalid("cluster.max-voters", "must be between 1 and 9"));
        }
        if c.snapshot_every == 0 {
            return Err(invalid("cluster.snapshot-every", "must be above 0"));
        }
        if self.http == self.raft {
            return Err(invalid("raft", "must differ from the http address"));
        }
        self.logs.validate().map_err(|(setting, message)| invalid(setting, message))?;
        if self.keys.master_key.is_some() && self.keys.master_key_file.is_some() {
            return Err(invalid("keys.master-key", "give the master key or its file, not both"));
        }
        if !(1..=MAX_MAX_VALUE_BYTES).contains(&self.keys.max_value_bytes) {
            return Err(invalid("keys.max-value-bytes", format!("must be between 1 and {MAX_MAX_VALUE_BYTES}")));
        }
        if self.auth.session_ttl.is_zero() {
            return Err(invalid("auth.session-ttl", "must be above 0"));
        }
        Ok(())
    }

    /// openraft's configuration for these settings.
    pub fn raft_config(&self) -> openraft::Config {
        let mut r = steward_raft::default_raft_config();
        let c = &self.cluster;
        r.heartbeat_interval = c.heartbeat.as_millis() as u64;
        r.election_timeout_min = c.election_timeout_min.as_millis() as u64;
        r.election_timeout_max = c.election_timeout_max.as_millis() as u64;
        r.snapshot_policy = openraft::SnapshotPolicy::LogsSinceLast(c.snapshot_every);
        r.max_in_snapshot_log_to_keep = c.snapshot_every.min(1000);
        r.purge_batch_size = c.snapshot_every.min(256);
        r
    }

    /// A configuration with every default and the given data dir: for tests and embedding.
    pub fn with_data_dir(data_dir: impl Into<PathBuf>) -> Config {
        let data_dir = data_dir.into();
        Config {
            logs: LogStoreConfig::local(data_dir.join(crate::datadir::LOGS_DIR)),
            data_dir,
            http: DEFAULT_HTTP.parse().expect("default http address"),
            raft: DEFAULT_RAFT.parse().expect("default raft address"),
            advertise_http: None,
            advertise_raft: None,
            cluster_secret: None,
            admin_token: None,
            join: None,
            log: DEFAULT_LOG.into(),
            worker_threads: None,
            cluster: ClusterTuning::default(),
            keys: KeysSettings::default(),
            auth: AuthSettings::default(),
            tls: None,
            scheduling: Default::default(),
            placement: Default::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("steward.example.toml")
    }

    #[test]
    fn the_example_file_parses_and_states_the_defaults() {
        let args = ServeArgs { config: Some(example()), ..Default::default() };
        let from_file = Config::load(&args).expect("example config loads");
        let defaults = Config::load(&ServeArgs::default()).expect("defaults load");
        assert_eq!(format!("{from_file:?}"), format!("{defaults:?}"));
        assert_eq!(defaults.http.to_string(), DEFAULT_HTTP);
        assert_eq!(defaults.raft.to_string(), DEFAULT_RAFT);
        assert_eq!(defaults.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(defaults.logs, LogStoreConfig::local(PathBuf::from(DEFAULT_DATA_DIR).join("logs")));
    }

    #[test]
    fn the_logs_section_selects_an_s3_bucket() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "data-dir = \"/srv/st\"\n[logs]\nstore = \"s3\"\nprefix = \"prod\"\ncheckpoint-interval-ms = 500\n\
             [logs.s3]\nbucket = \"logs\"\nendpoint = \"https://minio:9000\"\naccess-key-id = \"k\"\n\
             secret-access-key = \"s3cr3t\"\n",
        )
        .unwrap();
        let c = Config::load(&ServeArgs { config: Some(file), ..Default::default() }).unwrap();
        assert_eq!(c.logs.prefix, "prod");
        assert_eq!(c.logs.checkpoint_interval, Duration::from_millis(500));
        let LogBackend::S3(s3) = &c.logs.backend else { panic!("{:?}", c.logs) };
        assert_eq!((s3.bucket.as_str(), s3.region.as_str()), ("logs", DEFAULT_S3_REGION));
        assert_eq!(s3.endpoint.as_deref(), Some("https://minio:9000"));
        assert!(!format!("{c:?}").contains("s3cr3t"), "the secret key is never printed");
    }

    #[test]
    fn flags_win_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "http = \"127.0.0.1:5000\"\nraft = \"127.0.0.1:5001\"\nworker-threads = 1\n[cluster]\nmax-voters = 3\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(file),
            http: Some("127.0.0.1:6000".into()),
            worker_threads: Some(3),
            ..Default::default()
        };
        let c = Config::load(&args).unwrap();
        assert_eq!(c.http.to_string(), "127.0.0.1:6000");
        assert_eq!(c.worker_threads, Some(3));
        assert_eq!(c.raft.to_string(), "127.0.0.1:5001");
        assert_eq!(c.cluster.max_voters, 3);
    }

    #[test]
    fn bad_settings_are_refused_with_the_setting_named() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("http = \"nope\"", "http"),
            ("unknown-key = 1", "unknown-key"),
            ("[cluster]\nelection-timeout-min-ms = 50\nheartbeat-ms = 100", "cluster.election-timeout-min-ms"),
            ("[cluster]\nmax-voters = 0", "cluster.max-voters"),
            ("cluster-secret = \"short\"", "cluster-secret"),
            ("join = \"10.0.0.1:4440\"", "join"),
            ("http = \"127.0.0.1:7000\"\nraft = \"127.0.0.1:7000\"", "raft"),
            ("[logs]\nstore = \"nfs\"", "logs.store"),
            ("[logs]\nstore = \"s3\"", "logs.s3.bucket"),
            ("[logs.s3]\nbucket = \"b\"", "logs.store"),
            (
                "[logs]\nstore = \"s3\"\n[logs.s3]\nbucket = \"b\"\nendpoint = \"http://127.0.0.1:9000\"",
                "logs.s3.allow-http",
            ),
            ("[logs]\ncheckpoint-interval-ms = 0", "logs.checkpoint-interval-ms"),
            ("[logs]\nprefix = \"a/../b\"", "logs.prefix"),
            ("[keys]\nmaster-key = \"abc\"", "keys.master-key"),
            ("[keys]\nmax-value-bytes = 0", "keys.max-value-bytes"),
            ("[auth]\ntoken-max-duration = \"soon\"", "auth.token-max-duration"),
            ("[tls]\ncert-file = \"c.pem\"", "tls"),
            ("worker-threads = 0", "worker-threads"),
            ("worker-threads = 100000", "worker-threads"),
        ];
        for (text, setting) in cases {
            let file = dir.path().join("c.toml");
            std::fs::write(&file, text).unwrap();
            let err =
                Config::load(&ServeArgs { config: Some(file), ..Default::default() }).expect_err(text).to_string();
            assert!(err.contains(setting), "{text:?} -> {err}");
        }
        let missing = ServeArgs { config: Some(dir.path().join("absent.toml")), ..Default::default() };
        assert!(Config::load(&missing).unwrap_err().to_string().contains("absent.toml"));
    }
}
