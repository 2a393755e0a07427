//! [`Member`]: one steward member's Raft node, as a service for the layers above.
//!
//! - Writes go to the leader: a member that is not the leader forwards the transaction over
//!   gRPC (never an HTTP redirect) and retries while leadership moves, up to a deadline.
//! - Linearizable reads use Raft's read index: the leader confirms its leadership with a quorum
//!   and names the index to wait for; a follower asks the leader for it over gRPC and then waits
//!   until it has applied that far, and reads locally.
//! - Membership: a newcomer is added as a learner, and becomes a voter (joint consensus) once it
//!   has caught up, while there are fewer than `max_voters` voters. A reconciler on the leader
//!   finishes what a crash may have left half-done (a joint configuration, an unpromoted
//!   learner after a voter left).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::error::{ChangeMembershipError, CheckIsLeaderError, ClientWriteError, RaftError};
use openraft::{ChangeMembers, ServerState, SnapshotPolicy};
use steward_storage::{KeyValue, KvReader, StoreOptions, Txn, TxnResult};
use tokio::sync::watch;

use crate::coalesce::Coalescer;
use crate::error::{ClusterError, StartError};
use crate::messages::{
    Beat, ClusterStatus, HeartbeatRequest, HeartbeatView, JoinReply, JoinRequest, LeaveRequest, MemberStatus,
    RemoteError, Role,
};
use crate::network::Peers;
use crate::pb::Payload;
use crate::types::{MemberNode, NodeId, Raft};
use crate::wire;

/// The replicated key that names the cluster; written once when the cluster is created.
pub const CLUSTER_ID_KEY: &str = "cluster/id";

/// How a read is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Consistency {
    /// Sees every write acknowledged before the read started, on any member.
    #[default]
    Linearizable,
    /// This member's applied state, possibly behind the leader.
    Local,
}

/// Settings of one member.
#[derive(Debug, Clone)]
pub struct MemberConfig {
    pub id: NodeId,
    pub node: MemberNode,
    pub cluster_secret: String,
    pub raft: openraft::Config,
    /// How long a request waits for a leader (and for its own completion) before failing.
    pub request_timeout: Duration,
    /// How long the leader waits for a newcomer to catch up before giving up on a join.
    pub join_timeout: Duration,
    /// The most voters the cluster keeps; further members stay learners.
    pub max_voters: usize,
    pub store: StoreOptions,
    /// Mutual TLS on the member-to-member port; `None` for plain gRPC.
    pub tls: Option<crate::network::TlsConfig>,
}

impl MemberConfig {
    pub fn new(id: NodeId, node: MemberNode, cluster_secret: String) -> Self {
        MemberConfig {
            id,
            node,
            cluster_secret,
            raft: default_raft_config(),
            request_timeout: Duration::from_secs(5),
            join_timeout: Duration::from_secs(300),
            max_voters: 5,
            store: StoreOptions::default(),
            tls: None,
        }
    }
}

/// Raft timing for members on a LAN with fsync'ing disks.
///
/// The heartbeat interval is also openraft's AppendEntries timeout, so it must cover a batch
/// plus the follower's fsync; the election timeout is several heartbeats so a busy member is
/// not mistaken for a dead one, and short enough that a new leader is chosen within about a
/// second of the old one dying.
// Struct-update syntax (`..Default::default()`) would name openraft's deprecated
// `send_snapshot_timeout` field and warn; assigning fields one by one does not.
#[allow(clippy::field_reassign_with_default)]
pub fn default_raft_config() -> openraft::Config {
    let mut c = openraft::Config::default();
    c.cluster_name = "steward".into();
    c.heartbeat_interval = 100;
    c.election_timeout_min = 300;
    c.election_timeout_max = 600;
    c.install_snapshot_timeout = 30_000;
    c.max_payload_entries = 64;
    c.purge_batch_size = 256;
    c.snapshot_policy = SnapshotPolicy::LogsSinceLast(100_000);
    c.max_in_snapshot_log_to_keep = 1000;
    c.replication_lag_threshold = 5000;
    c
}

/// One member: the Raft node, its store and its connections. Cheap to clone.
#[derive(Clone)]
pub struct Member {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) id: NodeId,
    pub(crate) node: MemberNode,
    pub(crate) raft: Raft,
    pub(crate) kv: KvReader,
    pub(crate) peers: Peers,
    pub(crate) config: MemberConfig,
    pub(crate) follower: FollowerView,
    /// Proposes this member's writes while it leads, several to an entry under load.
    writes: Coalescer,
    /// The leader's heartbeat table (empty and unused on followers).
    beats: Mutex<BeatTable>,
    /// Serialises membership changes on the leader.
    membership_lock: tokio::sync::Mutex<()>,
    shutdown: watch::Sender<bool>,
}

/// What a follower has learned from its leader's AppendEntries, for the health check.
#[derive(Default)]
pub(crate) struct FollowerView {
    last_leader_contact: Mutex<Option<Instant>>,
    /// The leader that contacted it last (by AppendEntries).
    last_leader: AtomicU64,
    /// The highest log index this member knows to be committed.
    known_committed: AtomicU64,
}

impl FollowerView {
    pub(crate) fn saw_leader(&self, leader: Option<NodeId>, committed: Option<u64>) {
        *self.last_leader_contact.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        if let Some(l) = leader {
            self.last_leader.store(l, Ordering::Relaxed);
        }
        if let Some(c) = committed {
            self.known_committed.fetch_max(c, Ordering::Relaxed);
        }
    }
}

/// Heartbeats received by a leader in its current term.
#[derive(Default)]
struct BeatTable {
    term: u64,
    /// When this member, as leader of `term`, started collecting.
    since: Option<Instant>,
    beats: std::collections::HashMap<NodeId, (Instant, Vec<u8>)>,
}

impl Member {
    /// Opens the store in `dir` and starts the Raft node. The node joins no cluster by itself:
    /// call [`Member::bootstrap`] for a new cluster, or have the leader add it.
    pub async fn start(config: MemberConfig, dir: &Path) -> Result<Member, StartError> {
        let raft_config = Arc::new(config.raft.clone().validate().map_err(|e| StartError::Config(e.to_string()))?);
        let peers = Peers::with_tls(&config.cluster_secret, config.tls.clone())?;
        let (log, sm) = steward_storage::open(dir, config.store.clone())?;
        let kv = sm.reader();
        let raft = Raft::new(config.id, raft_config, peers.clone(), log, sm)
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
        let (shutdown, _) = watch::channel(false);
        let writes = Coalescer::start(raft.clone(), config.id);
        let member = Member {
            inner: Arc::new(Inner {
                id: config.id,
                node: config.node.clone(),
                raft,
                kv,
                peers,
                config,
                follower: FollowerView::default(),
                writes,
                beats: Mutex::new(BeatTable::default()),
                membership_lock: tokio::sync::Mutex::new(()),
                shutdown,
            }),
        };
        member.spawn_reconciler();
        Ok(member)
    }

    pub fn id(&self) -> NodeId {
        self.inner.id
    }

    pub fn node(&self) -> &MemberNode {
        &self.inner.node
    }

    pub fn raft(&self) -> &Raft {
        &self.inner.raft
    }

    /// The local read handle: applied state, change feed, applied index.
    pub fn kv(&self) -> &KvReader {
        &self.inner.kv
    }

    pub fn config(&self) -> &MemberConfig {
        &self.inner.config
    }

    /// True once this member is part of a cluster (bootstrapped or added by a leader).
    pub async fn is_initialized(&self) -> Result<bool, ClusterError> {
        self.inner.raft.is_initialized().await.map_err(|e| ClusterError::Fatal(e.to_string()))
    }

    /// Creates a new single-member cluster named `cluster_id` with this member as its voter,
    /// and waits until this member leads it. Does nothing if the member is already part of a
    /// cluster.
    ///
    /// `extra` is written in the same transaction as the cluster id (e.g. the first admin
    /// token), so either both exist or neither does.
    pub async fn bootstrap(&self, cluster_id: &str, extra: Vec<steward_storage::Op>) -> Result<(), ClusterError> {
        if !self.is_initialized().await? {
            let members = BTreeMap::from([(self.inner.id, self.inner.node.clone())]);
            match self.inner.raft.initialize(members).await {
                Ok(()) => {}
                Err(RaftError::APIError(_)) => {} // initialised concurrently: fine
                Err(RaftError::Fatal(f)) => return Err(ClusterError::Fatal(f.to_string())),
            }
        }
        // The cluster id is written exactly once; a restart finds it there and writes nothing.
        let mut ops =
            vec![steward_storage::Op::Put { key: CLUSTER_ID_KEY.into(), value: cluster_id.as_bytes().to_vec() }];
        ops.extend(extra);
        let txn = Txn::guarded(vec![steward_storage::Guard::Absent(CLUSTER_ID_KEY.into())], ops);
        self.write(txn).await?;
        Ok(())
    }

    /// The id of the cluster this member belongs to, as replicated (local read).
    pub fn cluster_id(&self) -> Result<Option<String>, ClusterError> {
        Ok(self.inner.kv.get(CLUSTER_ID_KEY)?.map(|kv| String::from_utf8_lossy(&kv.value).into_owned()))
    }

    /// The current leader as this member knows it.
    pub fn leader(&self) -> Option<NodeId> {
        self.inner.raft.metrics().borrow().current_leader
    }

    /// True when this member is the leader.
    pub fn is_leader(&self) -> bool {
        self.leader() == Some(self.inner.id)
    }

    fn node_of(&self, id: NodeId) -> Option<MemberNode> {
        self.inner.raft.metrics().borrow().membership_config.membership().get_node(&id).cloned()
    }

    fn fatal(&self) -> Option<String> {
        match &self.inner.raft.metrics().borrow().running_state {
            Ok(()) => None,
            Err(f) => Some(f.to_string()),
        }
    }

    /// Runs `call`, a request to leader `id` that is safe to repeat, unless this member learns
    /// of another leader first (`None`). A leader that is stopped or cut off never answers, and
    /// waiting for it until the deadline held reads on this member (a run's start check, the
    /// scheduler's first read after a restart) for seconds after a new leader had taken over,
    /// and then failed them (chaos seed 2).
    async fn unless_leader_moves<T>(&self, id: NodeId, call: impl std::future::Future<Output = T>) -> Option<T> {
        let mut rx = self.inner.raft.metrics();
        let moved = rx.wait_for(|m| m.current_leader.is_some_and(|l| l != id) || m.running_state.is_err());
        tokio::select! {
            r = call => Some(r),
            _ = moved => None,
        }
    }

    /// Waits until the known leader differs from `seen`, or `until`.
    async fn wait_leader_change(&self, seen: Option<NodeId>, until: Instant) {
        let mut rx = self.inner.raft.metrics();
        let wait = rx.wait_for(|m| m.current_leader != seen || m.running_state.is_err());
        // Poll again at least every 100 ms: a leader that is known but unreachable does not
        // change the metrics.
        let cap = until.saturating_duration_since(Instant::now()).min(Duration::from_millis(100));
        let _ = tokio::time::timeout(cap, wait).await;
    }

    /// Proposes `txn` and returns its result once it is committed and applied on the leader,
    /// and applied on this member too: what a caller reads from this member's local state
    /// after a write includes the write (otherwise a member that asked to become passive,
    /// then placed a run by its local view of the modes, could run it itself).
    ///
    /// Retries while there is no leader or leadership moves, until `request_timeout`; then
    /// fails with [`ClusterError::NoLeader`]. A request that reached a leader and then timed
    /// out fails with [`ClusterError::Timeout`]: it may or may not have been applied, which is
    /// why invariants are guards inside transactions.
    pub async fn write(&self, txn: Txn) -> Result<TxnResult, ClusterError> {
        let until = Instant::now() + self.inner.config.request_timeout;
        loop {
            if let Some(f) = self.fatal() {
                return Err(ClusterError::Fatal(f));
            }
            // A transaction is proposed again only when the earlier attempt certainly did not
            // take effect: no leader was known, the member asked was not the leader (so it
            // appended nothing), or the connection to it could not even be made. Any other
            // failure after the request left is indeterminate and reported as such: a blind
            // repeat would meet its own first attempt (a create answering "already exists").
            let leader = self.leader();
            match leader {
                Some(id) if id == self.inner.id => match self.local_write(txn.clone(), until).await {
                    Err(RemoteError::NotLeader { .. }) => {}
                    other => return other.map_err(remote_to_cluster),
                },
                Some(id) => {
                    if let Some(node) = self.node_of(id) {
                        let call = self.call_leader::<Txn, TxnResult>(&node, Rpc::Write, &txn, until);
                        // A leader that stopped answering is not waited for once another leads:
                        // the caller hears at once that its write is in doubt, and retries it
                        // (behind its guards) through the new leader.
                        let Some(res) = self.unless_leader_moves(id, call).await else {
                            return Err(remote_to_cluster(RemoteError::Indeterminate));
                        };
                        match res {
                            Ok(Ok(r)) => {
                                self.see_own_write(r.revision, until).await;
                                return Ok(r);
                            }
                            Ok(Err(RemoteError::NotLeader { .. })) => {}
                            Ok(Err(e)) => return Err(remote_to_cluster(e)),
                            Err(ClusterError::Unreachable { .. }) => {}
                            Err(ClusterError::Timeout) => {
                                return Err(ClusterError::Indeterminate(
                                    "the leader did not answer in time; the write may or may not have been applied"
                                        .into(),
                                ))
                            }
                            Err(e) => return Err(e),
                        }
                    }
                }
                None => {}
            }
            if Instant::now() >= until {
                return Err(ClusterError::NoLeader);
            }
            self.wait_leader_change(leader, until).await;
        }
    }

    /// `client_write` on this member, which believes it is the leader, coalesced with the
    /// other writes in flight here (`crate::coalesce`).
    pub(crate) async fn local_write(&self, txn: Txn, until: Instant) -> Result<TxnResult, RemoteError> {
        let budget = until.saturating_duration_since(Instant::now()).max(Duration::from_millis(200));
        match tokio::time::timeout(budget, self.inner.writes.write(txn)).await {
            Err(_) => Err(RemoteError::Timeout),
            Ok(res) => res,
        }
    }

    /// The connections to the other members.
    pub(crate) fn peers(&self) -> &Peers {
        &self.inner.peers
    }

    /// Makes this member's state current for a linearizable read: afterwards, local reads see
    /// every write acknowledged before this call started.
    pub async fn read_barrier(&self) -> Result<(), ClusterError> {
        let until = Instant::now() + self.inner.config.request_timeout;
        loop {
            if let Some(f) = self.fatal() {
                return Err(ClusterError::Fatal(f));
            }
            let leader = self.leader();
            let index = match leader {
                Some(id) if id == self.inner.id => match self.local_read_index(until).await {
                    Ok(i) => Some(i),
                    Err(RemoteError::NotLeader { .. }) | Err(RemoteError::NoQuorum) => None,
                    Err(e) => return Err(remote_to_cluster(e)),
                },
                Some(id) => match self.node_of(id) {
                    Some(node) => {
                        let call = self.call_leader::<(), u64>(&node, Rpc::ReadIndex, &(), until);
                        let res = self.unless_leader_moves(id, call).await;
                        match res {
                            // Another leader took over meanwhile: ask it.
                            None => None,
                            Some(Ok(Ok(i))) => Some(i),
                            Some(Ok(Err(RemoteError::NotLeader { .. })) | Ok(Err(RemoteError::NoQuorum))) => None,
                            Some(Ok(Err(e))) => return Err(remote_to_cluster(e)),
                            // Reads, joins, leaves and status are safe to repeat.
                            Some(Err(ClusterError::Unreachable { .. }) | Err(ClusterError::Indeterminate(_))) => None,
                            Some(Err(e)) => return Err(e),
                        }
                    }
                    None => None,
                },
                None => None,
            };
            if let Some(index) = index {
                return self.wait_applied(index, until).await;
            }
            if Instant::now() >= until {
                return Err(ClusterError::NoLeader);
            }
            self.wait_leader_change(leader, until).await;
        }
    }

    /// The leader's read index: confirms leadership with a quorum and returns the log index
    /// that a linearizable read must have applied.
    pub(crate) async fn local_read_index(&self, until: Instant) -> Result<u64, RemoteError> {
        let budget = until.saturating_duration_since(Instant::now()).max(Duration::from_millis(200));
        match tokio::time::timeout(budget, self.inner.raft.ensure_linearizable()).await {
            Err(_) => Err(RemoteError::NoQuorum),
            Ok(Ok(log_id)) => Ok(log_id.map(|l| l.index).unwrap_or(0)),
            Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)))) => {
                Err(RemoteError::NotLeader { leader: f.leader_id.zip(f.leader_node) })
            }
            Ok(Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_)))) => Err(RemoteError::NoQuorum),
            Ok(Err(RaftError::Fatal(f))) => Err(RemoteError::Fatal(f.to_string())),
        }
    }

    /// Waits until this member has applied `revision`, a write the leader committed. The
    /// write has taken effect whatever happens here, so a wait that runs out of time is only
    /// logged: the member is behind, and its local reads are stale for a while longer.
    async fn see_own_write(&self, revision: u64, until: Instant) {
        let until = until.min(Instant::now() + Duration::from_secs(1));
        if let Err(e) = self.wait_applied(revision, until).await {
            tracing::debug!(error = %e, revision, "a committed write is not applied on this member yet");
        }
    }

    async fn wait_applied(&self, index: u64, until: Instant) -> Result<(), ClusterError> {
        let mut rx = self.inner.kv.watch_applied();
        let budget = until.saturating_duration_since(Instant::now()).max(Duration::from_millis(100));
        let res = tokio::time::timeout(budget, rx.wait_for(|applied| *applied >= index)).await.map(|r| r.is_ok());
        match res {
            Ok(true) => Ok(()),
            Ok(false) => Err(ClusterError::Fatal("the state machine stopped".into())),
            Err(_) => Err(ClusterError::Timeout),
        }
    }

    /// Reads one key.
    pub async fn get(&self, key: &str, consistency: Consistency) -> Result<Option<KeyValue>, ClusterError> {
        if consistency == Consistency::Linearizable {
            self.read_barrier().await?;
        }
        Ok(self.inner.kv.get(key)?)
    }

    /// Reads every key under `prefix`, in key order.
    pub async fn range(&self, prefix: &str, consistency: Consistency) -> Result<Vec<(String, KeyValue)>, ClusterError> {
        if consistency == Consistency::Linearizable {
            self.read_barrier().await?;
        }
        Ok(self.inner.kv.range(prefix)?)
    }

    /// Sends one `Cluster` RPC to the leader `node`, bounded by `until`, and answers with the
    /// leader's answer; see [`leader_answer`] for a leader that stopped.
    async fn call_leader<Req, Resp>(
        &self,
        node: &MemberNode,
        rpc: Rpc,
        req: &Req,
        until: Instant,
    ) -> Result<Result<Resp, RemoteError>, ClusterError>
    where
        Req: serde::Serialize,
        Resp: serde::de::DeserializeOwned,
    {
        leader_answer(call_cluster(&self.inner.peers, &node.raft_addr, rpc, req, until).await?)
    }

    /// Adds a member to the cluster, from any member: the request goes to the leader, which adds
    /// the newcomer as a learner, waits until it has caught up, then makes it a voter while
    /// there are fewer than `max_voters` voters. Repeating a join that already happened is fine.
    pub async fn join(&self, req: JoinRequest) -> Result<JoinReply, ClusterError> {
        let until = Instant::now() + self.inner.config.join_timeout;
        self.on_leader(Rpc::Join, &req, until, |m| {
            let req = req.clone();
            async move { m.add_member(req).await }
        })
        .await
    }

    /// Removes a member from the cluster, from any member.
    pub async fn leave(&self, node_id: NodeId) -> Result<(), ClusterError> {
        let until = Instant::now() + self.inner.config.request_timeout.max(Duration::from_secs(30));
        let req = LeaveRequest { node_id };
        self.on_leader(Rpc::Leave, &req, until, |m| async move { m.remove_member(node_id).await }).await
    }

    /// The leader's view of the members, from any member.
    pub async fn cluster_status(&self) -> Result<ClusterStatus, ClusterError> {
        let until = Instant::now() + self.inner.config.request_timeout;
        self.on_leader(Rpc::Status, &(), until, |m| async move { m.local_status() }).await
    }

    /// Sends this member's heartbeat (`info`, opaque here) to the leader, or records it when
    /// this member leads, and returns the leader's heartbeat table. Fails after `timeout`
    /// without a leader.
    pub async fn heartbeat(&self, info: Vec<u8>, timeout: Duration) -> Result<HeartbeatView, ClusterError> {
        let until = Instant::now() + timeout;
        let req = HeartbeatRequest { node_id: self.inner.id, info };
        self.on_leader(Rpc::Heartbeat, &req, until, |m| {
            let req = req.clone();
            async move { m.local_heartbeat(req) }
        })
        .await
    }

    /// Leader side of [`Member::heartbeat`].
    pub(crate) fn local_heartbeat(&self, req: HeartbeatRequest) -> Result<HeartbeatView, RemoteError> {
        // A removed member may not know it (it gets no more entries): an answer would renew
        // the lease it starts runs under, while this leader ends those runs.
        if self.node_of(req.node_id).is_none() {
            return Err(RemoteError::Rejected(format!("member {} is not in the cluster", req.node_id)));
        }
        let mut table = self.beat_table().ok_or_else(|| self.not_leader())?;
        table.1.beats.insert(req.node_id, (Instant::now(), req.info));
        Ok(self.view_of(&table.1))
    }

    /// The heartbeat table, when this member leads.
    pub fn heartbeat_view(&self) -> Option<HeartbeatView> {
        let table = self.beat_table()?;
        Some(self.view_of(&table.1))
    }

    /// The table of the current term, started afresh when this member became leader of a new
    /// term; `None` when it does not lead.
    fn beat_table(&self) -> Option<(u64, std::sync::MutexGuard<'_, BeatTable>)> {
        let m = self.inner.raft.metrics().borrow().clone();
        if m.current_leader != Some(self.inner.id) || m.state != ServerState::Leader {
            return None;
        }
        let mut t = self.inner.beats.lock().unwrap_or_else(|p| p.into_inner());
        if t.term != m.current_term || t.since.is_none() {
            let now = Instant::now();
            *t = BeatTable { term: m.current_term, since: Some(now), beats: Default::default() };
            // The previous leader was heard from by its AppendEntries: judge it from then, not
            // from now, so a dead leader's jobs move as soon as a follower's would.
            let prev = self.inner.follower.last_leader.load(Ordering::Relaxed);
            let contact = *self.inner.follower.last_leader_contact.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(at) = contact.filter(|_| prev != 0 && prev != self.inner.id) {
                t.beats.insert(prev, (at, Vec::new()));
            }
        }
        Some((m.current_term, t))
    }

    fn view_of(&self, t: &BeatTable) -> HeartbeatView {
        let now = Instant::now();
        let since = t.since.unwrap_or(now);
        let log_index = self.inner.raft.metrics().borrow().last_log_index.unwrap_or(0);
        HeartbeatView {
            leader_id: self.inner.id,
            log_index,
            term: t.term,
            collecting_ms: now.saturating_duration_since(since).as_millis() as u64,
            beats: t
                .beats
                .iter()
                .map(|(id, (at, info))| Beat {
                    node_id: *id,
                    age_ms: now.saturating_duration_since(*at).as_millis() as u64,
                    info: info.clone(),
                })
                .collect(),
        }
    }

    /// Runs `local` if this member leads, or sends `rpc` to the leader, retrying while
    /// leadership moves.
    async fn on_leader<Req, Resp, F, Fut>(
        &self,
        rpc: Rpc,
        req: &Req,
        until: Instant,
        local: F,
    ) -> Result<Resp, ClusterError>
    where
        Req: serde::Serialize,
        Resp: serde::de::DeserializeOwned,
        F: Fn(Member) -> Fut,
        Fut: std::future::Future<Output = Result<Resp, RemoteError>>,
    {
        loop {
            if let Some(f) = self.fatal() {
                return Err(ClusterError::Fatal(f));
            }
            let leader = self.leader();
            let res = match leader {
                Some(id) if id == self.inner.id => Some(local(self.clone()).await),
                Some(id) => match self.node_of(id) {
                    Some(node) => {
                        let call = self.call_leader::<Req, Resp>(&node, rpc, req, until);
                        match self.unless_leader_moves(id, call).await {
                            // Another leader took over meanwhile: ask it.
                            None => None,
                            Some(Ok(r)) => Some(r),
                            // Reads, joins, leaves and status are safe to repeat.
                            Some(Err(ClusterError::Unreachable { .. }) | Err(ClusterError::Indeterminate(_))) => None,
                            Some(Err(e)) => return Err(e),
                        }
                    }
                    None => None,
                },
                None => None,
            };
            match res {
                Some(Ok(r)) => return Ok(r),
                Some(Err(RemoteError::NotLeader { .. })) | Some(Err(RemoteError::NoQuorum)) | None => {}
                Some(Err(e)) => return Err(remote_to_cluster(e)),
            }
            if Instant::now() >= until {
                return Err(ClusterError::NoLeader);
            }
            self.wait_leader_change(leader, until).await;
        }
    }

    fn not_leader(&self) -> RemoteError {
        let leader = self.leader().and_then(|id| self.node_of(id).map(|n| (id, n)));
        RemoteError::NotLeader { leader }
    }

    /// Leader side of [`Member::join`].
    pub(crate) async fn add_member(&self, req: JoinRequest) -> Result<JoinReply, RemoteError> {
        if !self.is_leader() {
            return Err(self.not_leader());
        }
        let cluster_id = self
            .cluster_id()
            .map_err(|e| RemoteError::Fatal(e.to_string()))?
            .ok_or_else(|| RemoteError::Rejected("the cluster is still being created; retry".into()))?;
        if let Some(theirs) = &req.cluster_id {
            if *theirs != cluster_id {
                return Err(RemoteError::Rejected(format!(
                    "the joining member's data dir belongs to cluster {theirs}, not to this cluster ({cluster_id}); \
                     start it with an empty data dir"
                )));
            }
        }
        let _guard = self.inner.membership_lock.lock().await;
        let membership = self.inner.raft.metrics().borrow().membership_config.membership().clone();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let mut stale = BTreeSet::new();
        for (id, node) in membership.nodes() {
            if *id != req.node_id && (node.uuid == req.node.uuid || node.raft_addr == req.node.raft_addr) {
                if voters.contains(id) {
                    return Err(RemoteError::Rejected(format!(
                        "voter {} already uses uuid {} or raft address {}; remove it first",
                        id, req.node.uuid, req.node.raft_addr
                    )));
                }
                stale.insert(*id);
            }
        }
        if !stale.is_empty() {
            // A learner with the newcomer's address or uuid is what an earlier join of the same
            // member left behind when it died before its promotion (its data dir wiped since):
            // its address now belongs to the newcomer, so it can never catch up again, and a
            // learner counts in no quorum, so dropping it is always safe.
            tracing::info!(?stale, member = req.node_id, uuid = %req.node.uuid,
                "removing learners left behind by an earlier join of this member");
            let until = Instant::now() + self.inner.config.request_timeout * 2;
            let remove = || self.inner.raft.change_membership(ChangeMembers::RemoveNodes(stale.clone()), false);
            membership_change(remove, until).await?;
        }
        match membership.get_node(&req.node_id) {
            Some(existing) if *existing != req.node => {
                return Err(RemoteError::Rejected(format!(
                    "member id {} is already in the cluster as {existing}",
                    req.node_id
                )));
            }
            Some(_) => {}
            None => {
                let until = Instant::now() + self.inner.config.join_timeout;
                let add = || self.inner.raft.add_learner(req.node_id, req.node.clone(), true);
                membership_change(add, until).await?;
            }
        }
        let voter = self.promote_if_room(req.node_id).await?;
        tracing::info!(member = req.node_id, uuid = %req.node.uuid, voter, "member joined");
        Ok(JoinReply { cluster_id, leader_id: self.inner.id, voter })
    }

    /// Makes `id` a voter if the cluster has room; returns whether it is a voter.
    async fn promote_if_room(&self, id: NodeId) -> Result<bool, RemoteError> {
        let membership = self.inner.raft.metrics().borrow().membership_config.membership().clone();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        if voters.contains(&id) {
            return Ok(true);
        }
        if voters.len() >= self.inner.config.max_voters {
            return Ok(false);
        }
        let until = Instant::now() + self.inner.config.request_timeout * 2;
        let change = || self.inner.raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false);
        membership_change(change, until).await?;
        Ok(true)
    }

    /// Leader side of [`Member::leave`].
    pub(crate) async fn remove_member(&self, id: NodeId) -> Result<(), RemoteError> {
        if !self.is_leader() {
            return Err(self.not_leader());
        }
        let _guard = self.inner.membership_lock.lock().await;
        let membership = self.inner.raft.metrics().borrow().membership_config.membership().clone();
        if membership.get_node(&id).is_none() {
            return Ok(());
        }
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let change = if voters.contains(&id) {
            if voters.len() == 1 {
                return Err(RemoteError::Rejected(
                    "the last voter cannot leave; the cluster would have no members".into(),
                ));
            }
            // As etcd's strict reconfiguration check: refuse a removal after which the voters
            // this leader can reach are not a majority, or the cluster would stop committing.
            let remaining: Vec<NodeId> = voters.iter().copied().filter(|v| *v != id).collect();
            let fresh = Duration::from_millis(self.inner.config.raft.election_timeout_max * 2);
            let reachable = remaining
                .iter()
                .filter(|v| {
                    **v == self.inner.id || self.inner.peers.last_contact(**v).is_some_and(|t| t.elapsed() < fresh)
                })
                .count();
            if reachable < remaining.len() / 2 + 1 {
                return Err(RemoteError::Rejected(format!(
                    "removing member {id} would leave {reachable} of {} voters reachable, not a majority: the cluster \
                     could not commit anything; bring the others back first",
                    remaining.len()
                )));
            }
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        };
        let res = tokio::time::timeout(
            self.inner.config.request_timeout * 2,
            self.inner.raft.change_membership(change, false),
        )
        .await;
        match res {
            Err(_) => return Err(RemoteError::Timeout),
            Ok(Err(e)) => return Err(write_error(e)),
            Ok(Ok(_)) => {}
        }
        tracing::info!(member = id, "member left");
        Ok(())
    }

    /// The leader's view of the cluster (leader only).
    pub(crate) fn local_status(&self) -> Result<ClusterStatus, RemoteError> {
        if !self.is_leader() {
            return Err(self.not_leader());
        }
        let m = self.inner.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let matched = m.replication.clone().unwrap_or_default();
        let members = membership
            .nodes()
            .map(|(id, node)| {
                let is_self = *id == self.inner.id;
                let role = if is_self {
                    Role::Leader
                } else if voters.contains(id) {
                    Role::Follower
                } else {
                    Role::Learner
                };
                let last_contact_ms = if is_self {
                    Some(0)
                } else {
                    self.inner.peers.last_contact(*id).map(|t| t.elapsed().as_millis() as u64)
                };
                let matched_index =
                    if is_self { m.last_log_index } else { matched.get(id).cloned().flatten().map(|l| l.index) };
                MemberStatus { id: *id, node: node.clone(), role, last_contact_ms, matched_index }
            })
            .collect();
        let heartbeats = self.heartbeat_view().unwrap_or_default();
        Ok(ClusterStatus {
            leader_id: self.inner.id,
            term: m.current_term,
            last_log_index: m.last_log_index,
            members,
            heartbeats,
        })
    }

    /// True while this member knows a leader and has applied everything it knows to be
    /// committed: a load balancer may send it traffic.
    pub fn is_healthy(&self) -> bool {
        let m = self.inner.raft.metrics().borrow().clone();
        if m.running_state.is_err() {
            return false;
        }
        let applied = m.last_applied.map(|l| l.index).unwrap_or(0);
        let election_max = Duration::from_millis(self.inner.config.raft.election_timeout_max);
        match m.current_leader {
            None => false,
            Some(id) if id == self.inner.id => {
                // A leader is healthy while a quorum acknowledged it recently and it has applied
                // its log (all of a leader's log is committed once its term's blank entry is).
                let quorum_recent = m.millis_since_quorum_ack.is_some_and(|ms| ms < election_max.as_millis() as u64);
                quorum_recent && m.state == ServerState::Leader
            }
            Some(_) => {
                let fv = &self.inner.follower;
                let recent = fv
                    .last_leader_contact
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .is_some_and(|t| t.elapsed() < election_max);
                recent && applied >= fv.known_committed.load(Ordering::Relaxed)
            }
        }
    }

    /// Watches the leader and repairs membership: finishes a joint configuration left by a
    /// crash, and promotes caught-up learners while there are fewer than `max_voters` voters.
    fn spawn_reconciler(&self) {
        let weak = Arc::downgrade(&self.inner);
        let mut stop = self.inner.shutdown.subscribe();
        tokio::spawn(async move {
            let mut was_leader = false;
            loop {
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
                let Some(inner) = weak.upgrade() else { return };
                let member = Member { inner };
                let leader = member.is_leader();
                if leader && !was_leader {
                    // Contacts recorded under an earlier term say nothing now.
                    member.inner.peers.forget_contacts();
                }
                was_leader = leader;
                if leader {
                    if let Err(e) = member.reconcile().await {
                        tracing::debug!(error = %e, "membership reconcile");
                    }
                }
            }
        });
    }

    async fn reconcile(&self) -> Result<(), RemoteError> {
        let _guard = match self.inner.membership_lock.try_lock() {
            Ok(g) => g,
            Err(_) => return Ok(()), // a join or leave is in progress
        };
        let m = self.inner.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership().clone();
        let configs = membership.get_joint_config();
        if configs.len() > 1 {
            let target = configs.last().cloned().unwrap_or_default();
            tracing::info!(?target, "finishing a joint membership change");
            self.inner
                .raft
                .change_membership(ChangeMembers::ReplaceAllVoters(target), false)
                .await
                .map_err(write_error)?;
            return Ok(());
        }
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        if voters.len() >= self.inner.config.max_voters {
            return Ok(());
        }
        let last = m.last_log_index.unwrap_or(0);
        let matched = m.replication.clone().unwrap_or_default();
        // The most caught-up live learner is the one to promote.
        let candidate = membership
            .learner_ids()
            .filter(|id| self.inner.peers.last_contact(*id).is_some_and(|t| t.elapsed() < Duration::from_secs(2)))
            .filter_map(|id| matched.get(&id).cloned().flatten().map(|l| (l.index, id)))
            .filter(|(idx, _)| last.saturating_sub(*idx) <= 64)
            .max();
        if let Some((_, id)) = candidate {
            tracing::info!(member = id, "promoting learner to voter");
            self.inner
                .raft
                .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
                .await
                .map_err(write_error)?;
        }
        Ok(())
    }

    /// Stops the Raft node and the background tasks. The store is closed when the last clone
    /// of this member is dropped.
    pub async fn shutdown(&self) {
        let _ = self.inner.shutdown.send(true);
        if let Err(e) = self.inner.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
    }
}

/// The `Cluster` RPCs a member sends to the leader.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Rpc {
    Write,
    ReadIndex,
    Join,
    Leave,
    Status,
    Heartbeat,
}

/// Sends one `Cluster` RPC to the member at `raft_addr`, bounded by `until`.
pub(crate) async fn call_cluster<Req, Resp>(
    peers: &Peers,
    raft_addr: &str,
    rpc: Rpc,
    req: &Req,
    until: Instant,
) -> Result<Resp, ClusterError>
where
    Req: serde::Serialize,
    Resp: serde::de::DeserializeOwned,
{
    let unreachable = |detail: String| ClusterError::Unreachable { addr: raft_addr.to_string(), detail };
    let mut client = peers.cluster_client(raft_addr).map_err(|e| unreachable(e.to_string()))?;
    // Tests only: delayed, never duplicated (a forwarded write is a client's request).
    peers.injected_delay(raft_addr).await;
    let budget = until.saturating_duration_since(Instant::now()).max(Duration::from_millis(100));
    let mut request = tonic::Request::new(Payload { data: wire::encode(req) });
    request.set_timeout(budget);
    let call = async {
        match rpc {
            Rpc::Write => client.write(request).await,
            Rpc::ReadIndex => client.read_index(request).await,
            Rpc::Join => client.join(request).await,
            Rpc::Leave => client.leave(request).await,
            Rpc::Status => client.status(request).await,
            Rpc::Heartbeat => client.heartbeat(request).await,
        }
    };
    let resp = match tokio::time::timeout(budget, call).await {
        Err(_) => return Err(ClusterError::Timeout),
        Ok(Ok(resp)) => resp.into_inner(),
        Ok(Err(status)) => {
            return Err(match status.code() {
                tonic::Code::Unauthenticated => ClusterError::Rejected(format!(
                    "member at {raft_addr} refused the cluster secret: {}",
                    status.message()
                )),
                tonic::Code::DeadlineExceeded => ClusterError::Timeout,
                tonic::Code::InvalidArgument => ClusterError::Rejected(status.message().to_string()),
                // Unreachable means "never sent": the only failure a caller may blindly repeat.
                _ if crate::network::never_sent(&status) => unreachable(status.message().to_string()),
                _ => ClusterError::Indeterminate(format!(
                    "the connection to {raft_addr} failed after the request was sent ({}); it may or may not have \
                     been applied",
                    status.message()
                )),
            });
        }
    };
    wire::decode(&resp.data).map_err(|s| ClusterError::Rejected(s.message().to_string()))
}

/// The leader's answer as this member sees it. The leader's own fatal error (its store failed)
/// is not this member's: to it the leader is gone, perhaps after it acted on the request (a
/// write may have been replicated), so the outcome is indeterminate: a write reports it, and
/// repeatable requests ask the next leader. Taken as this member's own fatal error, it made
/// callers give up; the runner stopped trying to record an execution's end, which then stayed
/// `running` for good.
fn leader_answer<T>(answer: Result<T, RemoteError>) -> Result<Result<T, RemoteError>, ClusterError> {
    match answer {
        Err(RemoteError::Fatal(m)) => Err(ClusterError::Indeterminate(format!(
            "the leader stopped after a fatal error ({m}); the request may or may not have taken effect"
        ))),
        other => Ok(other),
    }
}

fn remote_to_cluster(e: RemoteError) -> ClusterError {
    match e {
        RemoteError::NotLeader { .. } | RemoteError::NoQuorum => ClusterError::NoLeader,
        RemoteError::Timeout => ClusterError::Timeout,
        RemoteError::Indeterminate => ClusterError::Indeterminate(e.to_string()),
        RemoteError::Rejected(m) => ClusterError::Rejected(m),
        RemoteError::Fatal(m) => ClusterError::Fatal(m),
    }
}

/// Runs a membership change (`start` makes the request), waiting out one already in progress
/// (a removal or another join being committed): that is a matter of moments, and refusing
/// would fail a newcomer's join for good (jepsen: a member rejoining while another left).
/// Past `until`, a timeout, which the joining member retries.
async fn membership_change<F, Fut, R>(start: F, until: Instant) -> Result<R, RemoteError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<R, RaftError<NodeId, ClientWriteError<NodeId, MemberNode>>>>,
{
    loop {
        let budget = until.saturating_duration_since(Instant::now());
        match tokio::time::timeout(budget, start()).await {
            Err(_) => return Err(RemoteError::Timeout),
            Ok(Ok(r)) => return Ok(r),
            Ok(Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(
                ChangeMembershipError::InProgress(p),
            )))) => {
                if Instant::now() + Duration::from_millis(100) >= until {
                    return Err(RemoteError::Timeout);
                }
                tracing::debug!(in_progress = %p, "a membership change is in progress; waiting to make this one");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(Err(e)) => return Err(write_error(e)),
        }
    }
}

/// What a failed `client_write` means to a member that forwarded it.
pub(crate) fn write_error(e: RaftError<NodeId, ClientWriteError<NodeId, MemberNode>>) -> RemoteError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            RemoteError::NotLeader { leader: f.leader_id.zip(f.leader_node) }
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => RemoteError::Rejected(c.to_string()),
        RaftError::Fatal(f) => RemoteError::Fatal(f.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::{leader_answer, membership_change, remote_to_cluster, RemoteError};
    use crate::ClusterError;

    type ChangeResult = Result<
        u32,
        openraft::error::RaftError<crate::NodeId, openraft::error::ClientWriteError<crate::NodeId, crate::MemberNode>>,
    >;

    // openraft's error type, as `membership_change` gets it: its size is not ours to choose.
    #[allow(clippy::result_large_err)]
    fn in_progress() -> ChangeResult {
        let p = openraft::error::InProgress { committed: None, membership_log_id: None };
        Err(openraft::error::RaftError::APIError(openraft::error::ClientWriteError::ChangeMembershipError(p.into())))
    }

    #[tokio::test]
    async fn a_membership_change_waits_out_one_in_progress_and_times_out_retryably() {
        use std::sync::atomic::{AtomicU32, Ordering};
        use std::time::{Duration, Instant};
        let tries = AtomicU32::new(0);
        let start = || {
            let n = tries.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 2 {
                    in_progress()
                } else {
                    Ok(n)
                }
            }
        };
        let done = membership_change(start, Instant::now() + Duration::from_secs(5)).await;
        assert_eq!(done.unwrap(), 2, "made once the change in progress was over");
        let stuck = membership_change(|| async { in_progress() }, Instant::now() + Duration::from_millis(300)).await;
        assert!(matches!(stuck, Err(RemoteError::Timeout)), "{stuck:?}");
        assert!(remote_to_cluster(RemoteError::Timeout).is_retryable());
    }

    #[test]
    fn a_leaders_fatal_error_is_indeterminate_and_retryable_for_the_member_that_forwarded_the_write() {
        let e = leader_answer::<()>(Err(RemoteError::Fatal("when Write Logs: IO error".into()))).unwrap_err();
        assert!(matches!(e, ClusterError::Indeterminate(_)), "{e:?}");
        assert!(e.is_retryable());
        assert!(e.to_string().contains("when Write Logs: IO error"), "{e}");
        // Every other answer means what it means for any request.
        let timeout = leader_answer::<()>(Err(RemoteError::Timeout)).unwrap().unwrap_err();
        assert!(matches!(remote_to_cluster(timeout), ClusterError::Timeout));
        // The member's own fatal error stays fatal.
        assert!(matches!(remote_to_cluster(RemoteError::Fatal("x".into())), ClusterError::Fatal(_)));
    }
}
