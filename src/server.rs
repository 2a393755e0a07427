//! Starting and stopping a member: listeners, data dir, Raft, the gRPC and HTTP servers, and
//! creating or joining a cluster.
//!
//! [`Server::start`] is what `steward serve` runs and what tests run in-process (port 0 works:
//! the bound addresses are advertised). Start-up order matters for "nothing half-written is
//! left behind": the listeners are bound first (a busy port fails before any file is made), and
//! when the first start of a fresh data dir fails, the data dir is removed again.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use steward_raft::{Member, MemberConfig, MemberNode};
use steward_storage::StoreOptions;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::acl::Authorizer;
use crate::api::internal::{JoinAnswer, JoinBody, SECRET_HEADER};
use crate::api::{self, AppState, AppStateInner};
use crate::auth::{self, session::Sessions};
use crate::cluster::{ClusterTasks, Heartbeats, Placer};
use crate::config::Config;
use crate::datadir::{self, DataDir, Identity};
use crate::engine::Engine;
use crate::keys::{self, KeyStore, Keyring, MasterKey};
use crate::logs::LogStore;

/// Why a running server stopped (other than a signal).
#[derive(Clone, PartialEq, Eq)]
pub enum StopReason {
    /// Asked to stop (signal, test, embedding program).
    Requested,
    /// This member was removed from the cluster.
    Removed,
    /// Raft stopped on a fatal (storage) error.
    Fatal(String),
    /// This member, alone in its own cluster, is to join the cluster of the member at `peer`
    /// (`steward cluster join`): it stops, drops its Raft state and starts again in join mode.
    Rejoin { peer: String, secret: String, master_key: Option<String> },
}

impl std::fmt::Debug for StopReason {
    // By hand, so that the secret of a `Rejoin` never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StopReason::Requested => f.write_str("Requested"),
            StopReason::Removed => f.write_str("Removed"),
            StopReason::Fatal(e) => f.debug_tuple("Fatal").field(e).finish(),
            StopReason::Rejoin { peer, .. } => f.debug_struct("Rejoin").field("peer", peer).finish_non_exhaustive(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind { what: &'static str, addr: SocketAddr, source: std::io::Error },
    #[error(transparent)]
    DataDir(#[from] datadir::DataDirError),
    #[error("{0}")]
    Start(String),
    #[error("cannot join through {url}: {message}")]
    Join { url: String, message: String },
}

/// A running member.
pub struct Server {
    pub member: Member,
    pub identity: Identity,
    /// The HTTP address actually bound.
    pub http_addr: SocketAddr,
    /// The gRPC address actually bound.
    pub raft_addr: SocketAddr,
    pub data_dir: DataDir,
    /// The job engine's scheduler and runner on this member.
    pub engine: Option<Engine>,
    /// Heartbeats and autotakeover.
    pub cluster: Option<ClusterTasks>,
    /// Key storage on this member (what the job engine resolves secure options with).
    pub keys: KeyStore,
    stop: watch::Sender<Option<StopReason>>,
    tasks: Vec<JoinHandle<()>>,
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr).await.map_err(|source| ServeError::Bind { what, addr, source })
}

impl Server {
    /// Starts a member with `config`: creates a new cluster, joins one (`config.join`), or
    /// resumes from the data dir.
    pub async fn start(config: Config) -> Result<Server, ServeError> {
        install_crypto_provider();
        let http_listener = bind("http", config.http).await?;
        let raft_listener = bind("raft", config.raft).await?;
        let http_addr = http_listener.local_addr().map_err(|e| ServeError::Start(e.to_string()))?;
        let raft_addr = raft_listener.local_addr().map_err(|e| ServeError::Start(e.to_string()))?;

        let data_dir = DataDir::new(&config.data_dir);
        let fresh = data_dir.is_empty()?;
        let result = Self::start_in(config, &data_dir, http_listener, raft_listener, http_addr, raft_addr).await;
        if result.is_err() && fresh {
            // A first start that failed leaves no half-made member behind.
            if let Err(e) = data_dir.remove_all() {
                tracing::warn!(error = %e, "could not remove the data dir of a failed first start");
            }
        }
        result
    }

    async fn start_in(
        config: Config,
        data_dir: &DataDir,
        http_listener: TcpListener,
        raft_listener: TcpListener,
        http_addr: SocketAddr,
        raft_addr: SocketAddr,
    ) -> Result<Server, ServeError> {
        data_dir.create()?;
        let mut identity = match data_dir.identity()? {
            Some(id) => id,
            None => {
                let id = DataDir::new_identity();
                data_dir.save_identity(&id)?;
                id
            }
        };

        let secret = match (&config.cluster_secret, data_dir.read_secret_file(datadir::SECRET_FILE)?) {
            (Some(s), _) => s.clone(),
            (None, Some(s)) => s,
            (None, None) if config.join.is_some() => {
                return Err(ServeError::Start(
                    "joining a cluster needs its secret: pass --cluster-secret (or STEWARD_CLUSTER_SECRET)".into(),
                ))
            }
            (None, None) if identity.cluster_id.is_some() => {
                return Err(ServeError::Start(format!(
                    "this member belongs to cluster {} but has no cluster secret: pass --cluster-secret",
                    identity.cluster_id.as_deref().unwrap_or_default()
                )))
            }
            (None, None) => {
                let s = datadir::random_secret();
                data_dir.write_secret_file(datadir::SECRET_FILE, &s)?;
                tracing::info!(path = %data_dir.path(datadir::SECRET_FILE).display(), "generated the cluster secret");
                s
            }
        };

        let creating = config.join.is_none() && identity.cluster_id.is_none();
        let keyring = Arc::new(load_keyring(&config, data_dir, creating)?);

        let node = MemberNode {
            uuid: identity.uuid.clone(),
            raft_addr: config.advertise_raft.clone().unwrap_or_else(|| raft_addr.to_string()),
            http_addr: config.advertise_http.clone().unwrap_or_else(|| http_addr.to_string()),
        };
        let mut mc = MemberConfig::new(identity.node_id, node.clone(), secret.clone());
        mc.raft = config.raft_config();
        mc.request_timeout = config.cluster.request_timeout;
        mc.max_voters = config.cluster.max_voters;
        mc.store =
            StoreOptions { cache_capacity: config.cluster.cache_capacity_mib * 1024 * 1024, ..Default::default() };
        mc.tls = load_tls(&config)?;
        let member = open_member(mc, data_dir).await?;

        let (stop, _) = watch::channel(None);
        let mut tasks = Vec::new();
        {
            let member = member.clone();
            let mut rx = stop.subscribe();
            tasks.push(tokio::spawn(async move {
                let shutdown = async move {
                    let _ = rx.wait_for(|r| r.is_some()).await;
                };
                if let Err(e) = steward_raft::service::serve(raft_listener, member, shutdown).await {
                    tracing::error!(error = %e, "gRPC server failed");
                }
            }));
        }

        let setup = Self::enter_cluster(&config, data_dir, &member, &mut identity, &secret, &keyring).await;
        if let Err(e) = setup {
            let _ = stop.send(Some(StopReason::Requested));
            member.shutdown().await;
            for t in tasks {
                let _ = t.await;
            }
            return Err(e);
        }

        let logs = match LogStore::open(&config.logs) {
            Ok(l) => l,
            Err(e) => {
                let _ = stop.send(Some(StopReason::Requested));
                member.shutdown().await;
                return Err(ServeError::Start(format!("log store: {e}")));
            }
        };
        if let Err(e) = logs.check().await {
            // A member must be able to write execution output; say so now rather than at the
            // first run.
            let _ = stop.send(Some(StopReason::Requested));
            member.shutdown().await;
            return Err(ServeError::Start(format!("log store {}: {e}", logs.describe())));
        }
        let scratch = data_dir.path(datadir::SCRATCH_DIR);
        std::fs::create_dir_all(&scratch)
            .map_err(|source| datadir::DataDirError::Io { path: scratch.clone(), source })?;
        tasks.push(spawn_publish_keys(member.clone(), keyring.clone(), stop.subscribe()));
        let keys = KeyStore::new(member.clone(), keyring.clone(), config.keys.max_value_bytes);
        let heartbeats = Heartbeats::new(member.clone(), config.scheduling.clone());
        let placer = Arc::new(Placer::new(member.clone(), heartbeats.clone(), config.placement.clone()));
        let capacity = config.scheduling.member.capacity as usize;
        let engine = Engine::start(member.clone(), logs.clone(), keys.clone(), scratch, placer.clone(), capacity);
        heartbeats.set_running(engine.running_counter());
        let cluster = ClusterTasks::start(member.clone(), placer.clone());
        let state = AppState::new(AppStateInner {
            placer,
            fire_stats: engine.stats.clone(),
            slots: engine.slots(),
            logs,
            member: member.clone(),
            started: Instant::now(),
            started_at: chrono::Utc::now(),
            data_dir: data_dir.root().to_path_buf(),
            cluster_secret: Arc::from(secret.as_str()),
            stop: stop.clone(),
            keys: keys.clone(),
            acl: Arc::new(Authorizer::new(member.clone())),
            sessions: Arc::new(Sessions::new(member.clone(), keyring.clone(), config.auth.session_ttl)),
            token_max_duration: config.auth.token_max_duration,
        });
        {
            let mut rx = stop.subscribe();
            let app = api::router(state);
            tasks.push(tokio::spawn(async move {
                let shutdown = async move {
                    let _ = rx.wait_for(|r| r.is_some()).await;
                };
                // TCP_NODELAY: with Nagle's algorithm a response written in more than one
                // segment waits for the client's delayed ACK (~40 ms on Linux).
                let http_listener = axum::serve::ListenerExt::tap_io(http_listener, |tcp| {
                    if let Err(e) = tcp.set_nodelay(true) {
                        tracing::debug!(error = %e, "cannot set TCP_NODELAY on an HTTP connection");
                    }
                });
                if let Err(e) = axum::serve(http_listener, app).with_graceful_shutdown(shutdown).await {
                    tracing::error!(error = %e, "HTTP server failed");
                }
            }));
        }
        tasks.push(Self::spawn_watchdog(member.clone(), stop.clone()));
        tracing::info!(
            uuid = %identity.uuid, http = %node.http_addr, raft = %node.raft_addr,
            cluster = identity.cluster_id.as_deref().unwrap_or("?"), "steward member started"
        );
        Ok(Server {
            member,
            identity,
            http_addr,
            raft_addr,
            data_dir: data_dir.clone(),
            engine: Some(engine),
            cluster: Some(cluster),
            keys,
            stop,
            tasks,
        })
    }

    /// Creates the cluster, joins one, or resumes membership, as the data dir and config say.
    async fn enter_cluster(
        config: &Config,
        data_dir: &DataDir,
        member: &Member,
        identity: &mut Identity,
        secret: &str,
        keyring: &Keyring,
    ) -> Result<(), ServeError> {
        let start_err = |e: steward_raft::ClusterError| ServeError::Start(e.to_string());
        let initialized = member.is_initialized().await.map_err(start_err)?;
        if initialized {
            if let Some(url) = &config.join {
                Self::confirm_cluster(url, secret, member, identity, keyring).await?;
            }
            // A crash between creating the cluster and writing its id leaves the id to write.
            if identity.cluster_id.is_none() && member.cluster_id().map_err(start_err)?.is_none() {
                return Self::create_cluster(config, data_dir, member, identity, keyring).await;
            }
            if identity.cluster_id.is_none() {
                member.read_barrier().await.map_err(start_err)?;
                identity.cluster_id = member.cluster_id().map_err(start_err)?;
                data_dir.save_identity(identity)?;
            }
            return Ok(());
        }
        match &config.join {
            Some(url) => {
                // A newcomer keeps asking while the cluster cannot take it (no leader, a majority
                // down, the peer not up yet): it was told to join, and exiting would only hand the
                // wait to whatever restarts it. One request may take minutes: the leader answers
                // once the newcomer has caught up.
                let answer =
                    join_through(url, secret, member, identity, keyring, None, Duration::from_secs(330)).await?;
                if let Some(mine) = &identity.cluster_id {
                    if *mine != answer.cluster_id {
                        return Err(ServeError::Join {
                            url: url.clone(),
                            message: format!("this data dir belongs to cluster {mine}, not {}", answer.cluster_id),
                        });
                    }
                }
                identity.cluster_id = Some(answer.cluster_id.clone());
                data_dir.save_identity(identity)?;
                tracing::info!(cluster = %answer.cluster_id, voter = answer.voter, "joined the cluster");
                Ok(())
            }
            None if identity.cluster_id.is_some() => Err(ServeError::Start(format!(
                "this data dir belongs to cluster {} but holds no Raft state; start it with --join URL",
                identity.cluster_id.as_deref().unwrap_or_default()
            ))),
            None => Self::create_cluster(config, data_dir, member, identity, keyring).await,
        }
    }

    /// A member that already belongs to a cluster and is started with `--join URL` (a unit file
    /// keeps its command line) checks that URL is its own cluster. A member of another cluster
    /// is refused; an unreachable URL only warns, so a restart never depends on one peer.
    async fn confirm_cluster(
        url: &str,
        secret: &str,
        member: &Member,
        identity: &Identity,
        keyring: &Keyring,
    ) -> Result<(), ServeError> {
        if identity.cluster_id.is_none() {
            return Ok(());
        }
        // A member already in the cluster is answered at once, so a request that takes longer
        // is not waited for: all members restarting together (a power cut, a unit file with
        // --join) would otherwise each wait on another that is not serving yet, whose port
        // takes the connection and never answers.
        let (patience, request) = (Duration::from_secs(3), Duration::from_secs(5));
        match join_through(url, secret, member, identity, keyring, Some(patience), request).await {
            Ok(_) => Ok(()),
            Err(ServeError::Join { message, .. }) if message.contains("belongs to cluster") => {
                Err(ServeError::Join { url: url.to_string(), message })
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not confirm membership through --join; resuming from the data dir");
                Ok(())
            }
        }
    }

    /// Creates a new single-member cluster with an admin token, the active master key id and the
    /// session signing key.
    async fn create_cluster(
        config: &Config,
        data_dir: &DataDir,
        member: &Member,
        identity: &mut Identity,
        keyring: &Keyring,
    ) -> Result<(), ServeError> {
        let cluster_id = uuid::Uuid::new_v4().to_string();
        let (token, generated) = match &config.admin_token {
            Some(t) => (t.clone(), false),
            None => (auth::new_token(), true),
        };
        // The token file is written before the token is proposed, so a committed token always
        // has its file.
        if generated {
            data_dir.write_secret_file(datadir::TOKEN_FILE, &token)?;
        }
        let mut ops = auth::admin_token_ops(&token);
        ops.extend(keys::bootstrap_ops(keyring));
        ops.push(auth::session::bootstrap_op(keyring));
        member
            .bootstrap(&cluster_id, ops)
            .await
            .map_err(|e| ServeError::Start(format!("creating the cluster failed: {e}")))?;
        identity.cluster_id = Some(cluster_id.clone());
        data_dir.save_identity(identity)?;
        if generated {
            tracing::info!(path = %data_dir.path(datadir::TOKEN_FILE).display(), "created the admin API token");
        } else {
            tracing::info!("created the admin API token given in the configuration");
        }
        tracing::info!(cluster = %cluster_id, "created a new cluster");
        Ok(())
    }

    /// Stops the server when Raft dies or this member is removed from the cluster.
    fn spawn_watchdog(member: Member, stop: watch::Sender<Option<StopReason>>) -> JoinHandle<()> {
        let mut rx = member.raft().metrics();
        let mut stopped = stop.subscribe();
        tokio::spawn(async move {
            let me = member.id();
            let mut was_member = false;
            loop {
                {
                    let m = rx.borrow_and_update();
                    if let Err(f) = &m.running_state {
                        tracing::error!(error = %f, "Raft stopped on a fatal error; shutting down");
                        let _ = stop.send(Some(StopReason::Fatal(f.to_string())));
                        return;
                    }
                    let in_membership = m.membership_config.membership().get_node(&me).is_some();
                    if was_member && !in_membership {
                        tracing::warn!("this member was removed from the cluster; shutting down");
                        let _ = stop.send(Some(StopReason::Removed));
                        return;
                    }
                    was_member |= in_membership;
                }
                tokio::select! {
                    changed = rx.changed() => if changed.is_err() {
                        // The metrics channel closes only when openraft's core task is gone
                        // (e.g. it panicked): this member can serve nothing any more.
                        // A normal shutdown closes it too, after asking to stop: never overwrite.
                        if stop_once(&stop, StopReason::Fatal("the Raft core stopped".into())) {
                            tracing::error!("the Raft core stopped; shutting down");
                        }
                        return;
                    },
                    _ = stopped.wait_for(|r| r.is_some()) => return,
                }
            }
        })
    }

    /// Resolves when the server stops by itself (removed, fatal) or is asked to.
    pub async fn stopped(&self) -> StopReason {
        let mut rx = self.stop.subscribe();
        let r = rx.wait_for(|r| r.is_some()).await.map(|r| r.clone());
        r.ok().flatten().unwrap_or(StopReason::Requested)
    }

    /// A handle that asks the server to stop.
    pub fn stopper(&self) -> watch::Sender<Option<StopReason>> {
        self.stop.clone()
    }

    /// Stops the job engine, the HTTP and gRPC servers and Raft, and waits for them.
    pub async fn shutdown(mut self) -> StopReason {
        // After a fatal error this member's own Raft is gone, so do not wait for what is in
        // flight: a member whose storage failed must be gone at once, not after the timeouts of
        // its clients' requests or of the writes its scheduler and runner forwarded to the
        // leader (the chaos harness saw 4.5 s with the leader cut off). Takeover records its
        // executions incomplete. Otherwise the engine records the ends of the executions it
        // stops, however long that takes, and a stuck HTTP connection gets 5 s.
        let fatal = matches!(*self.stop.borrow(), Some(StopReason::Fatal(_)));
        let fatal_deadline = fatal.then(|| tokio::time::Instant::now() + Duration::from_millis(200));
        if let Some(cluster) = self.cluster.take() {
            cluster.shutdown().await;
        }
        if let Some(engine) = self.engine.take() {
            engine.shutdown(fatal_deadline).await;
        }
        stop_once(&self.stop, StopReason::Requested);
        let reason = self.stop.borrow().clone().unwrap_or(StopReason::Requested);
        let servers_deadline = fatal_deadline.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(5));
        crate::tasks::join_by(self.tasks, Some(servers_deadline)).await;
        self.member.shutdown().await;
        reason
    }
}

/// The keyring: the configured master key (given, or its file), else the data dir's
/// `master.key`, generated there (mode 0600) when this member creates a new cluster. A member
/// that joins or resumes without any key is refused with a message that says where the key is.
fn load_keyring(config: &Config, data_dir: &DataDir, creating: bool) -> Result<Keyring, ServeError> {
    let err = |e: keys::crypto::MasterKeyError| ServeError::Start(e.to_string());
    let in_dir = data_dir.path(datadir::MASTER_KEY_FILE);
    let primary = if let Some(k) = &config.keys.master_key {
        MasterKey::parse(&k.0).map_err(err)?
    } else if let Some(f) = &config.keys.master_key_file {
        MasterKey::read_file(f).map_err(err)?
    } else if in_dir.exists() {
        MasterKey::read_file(&in_dir).map_err(err)?
    } else if creating {
        let k = MasterKey::generate();
        data_dir.write_secret_file(datadir::MASTER_KEY_FILE, &k.to_hex())?;
        tracing::info!(path = %in_dir.display(), key = %k.id(), "generated the key storage master key; \
            give this file to every member (--master-key-file) and keep a copy somewhere safe");
        k
    } else {
        return Err(ServeError::Start(
            "no master key: this cluster seals key storage under a master key every member needs; pass \
             --master-key-file (or STEWARD_MASTER_KEY_FILE) with a copy of the first member's <data-dir>/master.key"
                .into(),
        ));
    };
    let mut previous = Vec::new();
    for f in &config.keys.previous_master_key_files {
        previous.push(MasterKey::read_file(f).map_err(err)?);
    }
    Ok(Keyring::new(primary, previous))
}

/// Reads the member-to-member TLS files, when configured.
fn load_tls(config: &Config) -> Result<Option<steward_raft::network::TlsConfig>, ServeError> {
    let Some(t) = &config.tls else { return Ok(None) };
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| ServeError::Start(format!("cannot read TLS file {}: {e}", p.display())))
    };
    Ok(Some(steward_raft::network::TlsConfig {
        cert_pem: read(&t.cert)?,
        key_pem: read(&t.key)?,
        ca_pem: read(&t.ca)?,
        server_name: t.server_name.clone(),
    }))
}

/// Publishes the key ids this member holds (the rekey checks them), retrying until it is
/// committed; warns when the member lacks the cluster's active key.
fn spawn_publish_keys(
    member: Member,
    keyring: Arc<Keyring>,
    mut stopped: watch::Receiver<Option<StopReason>>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let publish = async {
            loop {
                let txn = steward_storage::Txn::ops(vec![keys::publish_op(&member.node().uuid, &keyring)]);
                match member.write(txn).await {
                    Ok(_) => break,
                    Err(e) => {
                        tracing::debug!(error = %e, "cannot publish this member's key ids yet; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
            match keys::active_key_caught_up(&member).await {
                Ok(Some(active)) if !keyring.has(active) => tracing::error!(
                    key = %active,
                    "this member lacks the cluster's active master key: key storage reads will fail here \
                     until it is given that key"
                ),
                Ok(Some(active)) if keyring.primary_id() != active => tracing::warn!(
                    key = %active, primary = %keyring.primary_id(),
                    "this member seals under a master key that is not the cluster's active one; run the rekey \
                     once every member has the new key"
                ),
                _ => {}
            }
        };
        tokio::select! {
            _ = publish => {}
            _ = stopped.wait_for(|r| r.is_some()) => {}
        }
    })
}

/// Asks the server to stop for `reason`, unless it is already stopping (the first reason is
/// the one the process reports). Returns whether this call set it.
fn stop_once(stop: &watch::Sender<Option<StopReason>>, reason: StopReason) -> bool {
    stop.send_if_modified(|r| {
        if r.is_some() {
            return false;
        }
        *r = Some(reason);
        true
    })
}

/// Chooses rustls's process-wide crypto provider (ring) once. Both ring (tonic's TLS) and
/// aws-lc (the S3 client) are compiled in, and rustls refuses to guess between them.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err means another provider was installed first (by an embedding program): keep it.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Starts the Raft member on the data dir's store. The store is locked while open: by another
/// process using the same data dir (an error after a short wait), or, in one process, by the
/// background tasks of a member that was just stopped (gone within moments).
async fn open_member(config: MemberConfig, data_dir: &DataDir) -> Result<Member, ServeError> {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        match Member::start(config.clone(), &data_dir.path(datadir::STORE_DIR)).await {
            Ok(m) => return Ok(m),
            Err(e) if e.is_locked() && Instant::now() < until => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) if e.is_locked() => {
                return Err(ServeError::Start(format!(
                    "data dir {} is in use by another steward process",
                    data_dir.root().display()
                )))
            }
            Err(e) => return Err(ServeError::Start(e.to_string())),
        }
    }
}

/// How long a newcomer retries a join before its retries are logged as warnings.
const JOIN_QUIET: Duration = Duration::from_secs(30);

/// Asks the member at `url` to add this member, retrying while it cannot be reached or the
/// cluster cannot take a member yet (503), for up to `patience` (`None`: until it answers);
/// one request gives up after `request_timeout`. Any other refusal is final.
async fn join_through(
    url: &str,
    secret: &str,
    member: &Member,
    identity: &Identity,
    keyring: &Keyring,
    patience: Option<Duration>,
    request_timeout: Duration,
) -> Result<JoinAnswer, ServeError> {
    let body = JoinBody {
        node_id: identity.node_id.to_string(),
        uuid: identity.uuid.clone(),
        raft_address: member.node().raft_addr.clone(),
        http_address: member.node().http_addr.clone(),
        cluster_id: identity.cluster_id.clone(),
        key_ids: keyring.ids().iter().map(|k| k.to_string()).collect(),
    };
    let client = reqwest::Client::builder()
        .timeout(request_timeout)
        .connect_timeout(Duration::from_secs(5).min(request_timeout))
        .build()
        .map_err(|e| ServeError::Start(e.to_string()))?;
    let endpoint = format!("{}/internal/cluster/join", url.trim_end_matches('/'));
    let err = |message: String| ServeError::Join { url: url.to_string(), message };
    let started = Instant::now();
    let mut pause = Duration::from_millis(500);
    loop {
        let resp = client.post(&endpoint).header(SECRET_HEADER, secret).json(&body).send().await;
        let retry_msg = match resp {
            Ok(r) if r.status().is_success() => {
                return r.json::<JoinAnswer>().await.map_err(|e| err(format!("unreadable answer: {e}")));
            }
            Ok(r) if r.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE => {
                format!("503: {}", r.text().await.unwrap_or_default())
            }
            Ok(r) => {
                let status = r.status();
                let text = r.text().await.unwrap_or_default();
                let message = serde_json::from_str::<serde_json::Value>(&text)
                    .ok()
                    .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_string))
                    .unwrap_or(text);
                return Err(err(format!("{status}: {message}")));
            }
            Err(e) => format!("{e}"),
        };
        let waited = started.elapsed();
        if patience.is_some_and(|p| waited >= p) {
            return Err(err(retry_msg));
        }
        if waited < JOIN_QUIET {
            tracing::info!(reason = %retry_msg, "join not possible yet; retrying");
        } else {
            tracing::warn!(reason = %retry_msg, waited_s = waited.as_secs(), %url,
                "still cannot join; retrying until the cluster takes this member (stop it to give up)");
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

/// Runs a member until SIGINT/SIGTERM or until it stops by itself. The error, if any, is what
/// the process should report before exiting non-zero.
pub async fn run(mut config: Config) -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        // A start may wait long (a newcomer waits for a cluster that can take it): a signal
        // meanwhile stops it, rather than waiting in the queue until the member is up.
        let server = tokio::select! {
            server = Server::start(config.clone()) => server?,
            _ = tokio::signal::ctrl_c() => {
                tracing::info!("SIGINT while starting: stopping");
                return Ok(());
            }
            _ = term.recv() => {
                tracing::info!("SIGTERM while starting: stopping");
                return Ok(());
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            reason = server.stopped() => tracing::info!(?reason, "stopping"),
        }
        let (http, raft, data_dir) = (server.http_addr, server.raft_addr, server.data_dir.clone());
        match server.shutdown().await {
            StopReason::Fatal(e) => anyhow::bail!("Raft stopped on a fatal error: {e}"),
            StopReason::Removed => {
                tracing::info!("this member left the cluster; its data dir can be deleted");
                return Ok(());
            }
            StopReason::Requested => return Ok(()),
            StopReason::Rejoin { peer, secret, master_key } => {
                prepare_rejoin(&data_dir, &secret, master_key.as_deref())?;
                tracing::info!(%peer, "joining another cluster");
                config.join = Some(peer);
                config.cluster_secret = Some(secret);
                config.admin_token = None;
                // The same addresses: they are what the operator and the new cluster know.
                config.http = http;
                config.raft = raft;
            }
        }
    }
}

/// Drops this member's Raft state and old-cluster files so that it can start again as a
/// newcomer: a fresh Raft node id (the new cluster must never confuse it with an old member),
/// the same public uuid, the new cluster's secret.
fn prepare_rejoin(data_dir: &DataDir, secret: &str, master_key: Option<&str>) -> Result<(), ServeError> {
    let store = data_dir.path(datadir::STORE_DIR);
    std::fs::remove_dir_all(&store).map_err(|source| datadir::DataDirError::Io { path: store, source })?;
    let token = data_dir.path(datadir::TOKEN_FILE);
    match std::fs::remove_file(&token) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(datadir::DataDirError::Io { path: token, source }.into()),
    }
    let old = data_dir.identity()?.unwrap_or_else(DataDir::new_identity);
    let fresh = Identity { uuid: old.uuid, cluster_id: None, ..DataDir::new_identity() };
    data_dir.save_identity(&fresh)?;
    data_dir.write_secret_file(datadir::SECRET_FILE, secret)?;
    // The new cluster's master key replaces this member's own in the data dir, so that a later
    // restart with the same command line finds it.
    if let Some(k) = master_key {
        data_dir.write_secret_file(datadir::MASTER_KEY_FILE, k)?;
    }
    Ok(())
}
