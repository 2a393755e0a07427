//! The client side of member-to-member gRPC: one cached channel per peer address, the cluster
//! secret on every call, optional mutual TLS, and openraft's `RaftNetwork` on top.
//!
//! `openraft` calls `new_client` for every read-index round and every vote, so it must be cheap:
//! it only clones a cached, lazily connecting `Channel` (HTTP/2 multiplexes all calls to a peer
//! over one connection).
//!
//! Tests only: [`crate::netfault`] delays and duplicates calls when `STEWARD_TEST_NET_FAULTS`
//! is set; otherwise its hooks here are a `None` check.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use openraft::error::{
    Fatal, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, ReplicationClosed, StreamingError,
    Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, SnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{OptionalSend, Snapshot, Vote};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};

use crate::netfault::NetFaults;
use crate::pb::cluster_client::ClusterClient;
use crate::pb::raft_client::RaftClient;
use crate::pb::{Payload, SnapshotChunk};
use crate::types::{MemberNode, NodeId, TypeConfig};
use crate::wire;

/// gRPC metadata key that carries the cluster secret.
pub const SECRET_HEADER: &str = "x-steward-cluster-secret";

/// gRPC metadata key that carries the Raft node id a Raft RPC is meant for: an address can
/// outlive the node that had it (a member whose data dir was wiped comes back on the same
/// address as a new node, while the old one is still in the membership).
pub const TARGET_HEADER: &str = "x-steward-target-node";

/// Largest gRPC message either side accepts. AppendEntries batches and snapshot pieces stay
/// well under it; tonic's default of 4 MiB is too small for a full batch of large entries.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Size of one streamed snapshot piece.
const SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;

/// A snapshot transfer gets at least this long, whatever openraft's per-RPC budget says.
const SNAPSHOT_MIN_DEADLINE: Duration = Duration::from_secs(60);

/// Adds the cluster secret to every outgoing call.
#[derive(Clone)]
pub struct AddSecret(MetadataValue<Ascii>);

impl Interceptor for AddSecret {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        req.metadata_mut().insert(SECRET_HEADER, self.0.clone());
        Ok(req)
    }
}

pub type RaftRpcClient = RaftClient<InterceptedService<Channel, AddSecret>>;
pub type ClusterRpcClient = ClusterClient<InterceptedService<Channel, AddSecret>>;

/// The secret is not usable as a gRPC header value.
#[derive(Debug, thiserror::Error)]
#[error("the cluster secret must be 16 to 256 printable ASCII characters without spaces")]
pub struct InvalidSecret;

/// Checks a cluster secret's shape.
pub fn validate_secret(secret: &str) -> Result<MetadataValue<Ascii>, InvalidSecret> {
    let ok = (16..=256).contains(&secret.len()) && secret.bytes().all(|b| b.is_ascii_graphic());
    if !ok {
        return Err(InvalidSecret);
    }
    MetadataValue::try_from(secret).map_err(|_| InvalidSecret)
}

/// Mutual TLS between members: every member presents its certificate (as server and as
/// client) and accepts only certificates signed by the cluster's CA. The cluster secret is still
/// checked on every call: TLS says "a machine the CA vouches for", the secret "a member of this
/// cluster".
#[derive(Clone)]
pub struct TlsConfig {
    /// This member's certificate chain, PEM.
    pub cert_pem: Vec<u8>,
    /// This member's private key, PEM.
    pub key_pem: Vec<u8>,
    /// The CA certificate, PEM.
    pub ca_pem: Vec<u8>,
    /// The name to check peers' certificates against; default: the host of the peer's address.
    pub server_name: Option<String>,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig").field("server_name", &self.server_name).finish_non_exhaustive()
    }
}

impl TlsConfig {
    fn identity(&self) -> Identity {
        Identity::from_pem(&self.cert_pem, &self.key_pem)
    }

    /// The server side: our certificate, client certificates required and checked against the CA.
    pub fn server(&self) -> ServerTlsConfig {
        ServerTlsConfig::new().identity(self.identity()).client_ca_root(Certificate::from_pem(&self.ca_pem))
    }

    /// The client side towards the peer at `host`.
    pub fn client(&self, host: &str) -> ClientTlsConfig {
        let name =
            self.server_name.clone().unwrap_or_else(|| host.trim_start_matches('[').trim_end_matches(']').to_string());
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .identity(self.identity())
            .domain_name(name)
    }
}

/// Connections to the other members, shared by Raft replication and cluster calls.
#[derive(Clone)]
pub struct Peers {
    inner: Arc<PeersInner>,
}

struct PeersInner {
    secret: AddSecret,
    tls: Option<TlsConfig>,
    channels: Mutex<HashMap<String, Channel>>,
    /// When each peer last answered a Raft RPC; the leader's view of liveness.
    contacts: Mutex<HashMap<NodeId, Instant>>,
    /// The test-only fault layer, when its variable is set.
    faults: Option<Arc<NetFaults>>,
    /// Writes other members forwarded to this one that are still in flight here.
    forwarded_writes: AtomicUsize,
}

/// Counts one forwarded write while it is alive (`Peers::forwarded_write`).
pub struct ForwardedWrite(Peers);

impl Drop for ForwardedWrite {
    fn drop(&mut self) {
        self.0.inner.forwarded_writes.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Peers {
    pub fn new(secret: &str) -> Result<Self, InvalidSecret> {
        Self::with_tls(secret, None)
    }

    /// Peers reached over mutual TLS when `tls` is given.
    pub fn with_tls(secret: &str, tls: Option<TlsConfig>) -> Result<Self, InvalidSecret> {
        let secret = AddSecret(validate_secret(secret)?);
        Ok(Peers {
            inner: Arc::new(PeersInner {
                secret,
                tls,
                channels: Mutex::new(HashMap::new()),
                contacts: Mutex::new(HashMap::new()),
                faults: NetFaults::from_env(),
                forwarded_writes: AtomicUsize::new(0),
            }),
        })
    }

    /// The cached channel to `addr` (`host:port`), created without connecting.
    pub fn channel(&self, addr: &str) -> Result<Channel, tonic::transport::Error> {
        let mut channels = self.inner.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(ch) = channels.get(addr) {
            return Ok(ch.clone());
        }
        let endpoint = match &self.inner.tls {
            None => Endpoint::from_shared(format!("http://{addr}"))?,
            Some(tls) => {
                let host = addr.rsplit_once(':').map(|(h, _)| h).unwrap_or(addr);
                Endpoint::from_shared(format!("https://{addr}"))?.tls_config(tls.client(host))?
            }
        };
        let ch = endpoint
            .connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5))
            .keep_alive_while_idle(true)
            .connect_lazy();
        channels.insert(addr.to_string(), ch.clone());
        Ok(ch)
    }

    pub fn raft_client(&self, addr: &str) -> Result<RaftRpcClient, tonic::transport::Error> {
        Ok(RaftClient::with_interceptor(self.channel(addr)?, self.inner.secret.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES))
    }

    pub fn cluster_client(&self, addr: &str) -> Result<ClusterRpcClient, tonic::transport::Error> {
        Ok(ClusterClient::with_interceptor(self.channel(addr)?, self.inner.secret.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES))
    }

    /// Waits as the test-only fault layer says before a call to `addr` that must not be
    /// duplicated (the `Cluster` service: forwarded client writes among them).
    pub async fn injected_delay(&self, addr: &str) {
        if let Some(f) = &self.inner.faults {
            let plan = f.plan(addr, false);
            if !plan.delay.is_zero() {
                tokio::time::sleep(plan.delay).await;
            }
        }
    }

    /// Marks a write another member forwarded here as in flight until the value is dropped.
    /// Meanwhile the Raft leader sends each newer commit index to the followers at once: the
    /// forwarding member answers only once it has applied the write, and with no write in
    /// flight that way the commit index may wait a moment for the next append to carry it
    /// (`commit_may_wait`).
    pub fn forwarded_write(&self) -> ForwardedWrite {
        self.inner.forwarded_writes.fetch_add(1, Ordering::Relaxed);
        ForwardedWrite(self.clone())
    }

    fn record_contact(&self, id: NodeId) {
        let mut c = self.inner.contacts.lock().unwrap_or_else(|p| p.into_inner());
        c.insert(id, Instant::now());
    }

    /// When `id` last answered a Raft RPC from this member.
    pub fn last_contact(&self, id: NodeId) -> Option<Instant> {
        let c = self.inner.contacts.lock().unwrap_or_else(|p| p.into_inner());
        c.get(&id).copied()
    }

    /// Forgets every peer's last contact, e.g. when this member becomes leader.
    pub fn forget_contacts(&self) {
        self.inner.contacts.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

impl RaftNetworkFactory<TypeConfig> for Peers {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &MemberNode) -> Self::Network {
        PeerClient { target, node: node.clone(), peers: self.clone() }
    }

    /// A commit index alone waits up to 2 ms for the next append to carry it, unless a member
    /// that forwarded a write here is waiting to apply it (`Peers::forwarded_write`). At one
    /// writer, an AppendEntries sent for the commit index alone held the next write's entries
    /// back until it was answered. Asked when the leader commits, while every forwarded write
    /// the commit covers still waits for its apply here, so is still counted.
    fn commit_may_wait(&self) -> bool {
        self.inner.forwarded_writes.load(Ordering::Relaxed) == 0
    }
}

/// openraft's handle for sending Raft RPCs to one peer.
pub struct PeerClient {
    target: NodeId,
    node: MemberNode,
    peers: Peers,
}

/// A gRPC failure as openraft understands it: an unreachable peer makes openraft back off.
///
/// A call that ran out of time is not "unreachable": the peer was reached and is slow, most
/// often in an fsync the disk stalled (three members on one disk stall together). openraft
/// sends the entries again at once after any other error, and the peer answers the repeat as
/// soon as its flush is done; after an unreachable one it first waits 25 ms and more, which
/// only lengthened every stall. A peer that answers nothing is still tried at most once per
/// timeout.
fn rpc_error<E: std::error::Error>(status: tonic::Status) -> RPCError<NodeId, MemberNode, E> {
    use tonic::Code;
    match status.code() {
        _ if timed_out(&status) => RPCError::Network(NetworkError::new(&status)),
        Code::Unavailable | Code::Cancelled => RPCError::Unreachable(Unreachable::new(&status)),
        _ => RPCError::Network(NetworkError::new(&status)),
    }
}

/// Whether a call failed because its deadline passed (this side's timer, or the peer's).
fn timed_out(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::DeadlineExceeded || causes(status).any(|e| e.is::<tonic::TimeoutExpired>())
}

/// The errors beneath `status`, nearest first.
fn causes(status: &tonic::Status) -> impl Iterator<Item = &(dyn std::error::Error + 'static)> {
    std::iter::successors(std::error::Error::source(status), |e| e.source())
}

fn transport_error<E: std::error::Error>(e: tonic::transport::Error) -> RPCError<NodeId, MemberNode, E> {
    RPCError::Unreachable(Unreachable::new(&e))
}

fn decode_error<E: std::error::Error>(status: tonic::Status) -> RPCError<NodeId, MemberNode, E> {
    RPCError::Network(NetworkError::new(&status))
}

impl PeerClient {
    fn request(&self, data: Bytes, ttl: Duration) -> tonic::Request<Payload> {
        let mut req = tonic::Request::new(Payload { data });
        req.set_timeout(ttl);
        req.metadata_mut().insert(TARGET_HEADER, MetadataValue::from(self.target));
        req
    }

    /// Decodes a reply that carries openraft's `Result`, and records the contact.
    // The error type is openraft's, returned as openraft's trait demands.
    #[allow(clippy::result_large_err)]
    fn reply<T, E>(&self, payload: Payload) -> Result<T, RPCError<NodeId, MemberNode, E>>
    where
        T: serde::de::DeserializeOwned,
        E: std::error::Error + serde::de::DeserializeOwned,
    {
        let res: Result<T, E> = wire::decode(&payload.data).map_err(decode_error)?;
        self.peers.record_contact(self.target);
        res.map_err(|e| RPCError::RemoteError(RemoteError::new_with_node(self.target, self.node.clone(), e)))
    }
}

/// Which Raft RPC a duplicate repeats.
#[derive(Clone, Copy)]
enum Idempotent {
    AppendEntries,
    Vote,
}

impl PeerClient {
    /// The test-only fault layer's part of a call: waits the injected delay, and sends a copy of
    /// an idempotent RPC (`data`, encoded) after a delay of its own, dropping its answer. A
    /// no-op unless the layer is enabled.
    async fn inject(&self, client: &RaftRpcClient, rpc: Option<Idempotent>, data: &Bytes, ttl: Duration) {
        let Some(f) = &self.peers.inner.faults else { return };
        let plan = f.plan(&self.node.raft_addr, rpc.is_some());
        if let (Some(rpc), Some(after)) = (rpc, plan.duplicate) {
            let mut copy = client.clone();
            let req = self.request(data.clone(), ttl);
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                let _ = match rpc {
                    Idempotent::AppendEntries => copy.append_entries(req).await,
                    Idempotent::Vote => copy.vote(req).await,
                };
            });
        }
        if !plan.delay.is_zero() {
            tokio::time::sleep(plan.delay).await;
        }
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, MemberNode, RaftError<NodeId>>> {
        let mut client = self.peers.raft_client(&self.node.raft_addr).map_err(transport_error)?;
        let data = wire::encode(&rpc);
        self.inject(&client, Some(Idempotent::AppendEntries), &data, option.hard_ttl()).await;
        let req = self.request(data, option.hard_ttl());
        let resp = client.append_entries(req).await.map_err(rpc_error)?;
        self.reply(resp.into_inner())
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, MemberNode, RaftError<NodeId, InstallSnapshotError>>>
    {
        let mut client = self.peers.raft_client(&self.node.raft_addr).map_err(transport_error)?;
        let data = wire::encode(&rpc);
        self.inject(&client, None, &data, option.hard_ttl()).await;
        let req = self.request(data, option.hard_ttl());
        let resp = client.install_snapshot(req).await.map_err(rpc_error)?;
        self.reply(resp.into_inner())
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, MemberNode, RaftError<NodeId>>> {
        let mut client = self.peers.raft_client(&self.node.raft_addr).map_err(transport_error)?;
        let data = wire::encode(&rpc);
        self.inject(&client, Some(Idempotent::Vote), &data, option.hard_ttl()).await;
        let req = self.request(data, option.hard_ttl());
        let resp = client.vote(req).await.map_err(rpc_error)?;
        self.reply(resp.into_inner())
    }

    /// After a failed RPC openraft waits before the next: 25 ms, doubling up to 500 ms. One
    /// slow AppendEntries on a busy member (its budget is the heartbeat interval) then costs a
    /// few milliseconds, not openraft's default half second; a dead peer is still retried only
    /// twice a second.
    fn backoff(&self) -> Backoff {
        Backoff::new((0..).map(|i: u32| Duration::from_millis(25u64.saturating_mul(1 << i.min(5)).min(500))))
    }

    /// Streams the whole snapshot in one client-streaming call: a header with the vote and the
    /// metadata, then the data in pieces. openraft puts no deadline around this call, so it
    /// keeps its own and gives up as soon as replication is closed.
    async fn full_snapshot(
        &mut self,
        vote: Vote<NodeId>,
        snapshot: Snapshot<TypeConfig>,
        cancel: impl std::future::Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<NodeId>, StreamingError<TypeConfig, Fatal<NodeId>>> {
        let mut client = self
            .peers
            .raft_client(&self.node.raft_addr)
            .map_err(|e| StreamingError::Unreachable(Unreachable::new(&e)))?;
        let header = wire::encode(&(vote, snapshot.meta.clone()));
        self.inject(&client, None, &header, option.hard_ttl()).await;
        let data = Bytes::from(snapshot.snapshot.into_inner());
        let mut msgs = vec![SnapshotChunk { header, data: Bytes::new(), total_bytes: data.len() as u64 }];
        let mut off = 0;
        while off < data.len() {
            let end = (off + SNAPSHOT_CHUNK_BYTES).min(data.len());
            msgs.push(SnapshotChunk { header: Bytes::new(), data: data.slice(off..end), total_bytes: 0 });
            off = end;
        }
        let deadline = option.hard_ttl().max(SNAPSHOT_MIN_DEADLINE);
        let mut req = tonic::Request::new(tokio_stream::iter(msgs));
        req.set_timeout(deadline);
        req.metadata_mut().insert(TARGET_HEADER, MetadataValue::from(self.target));
        let call = client.stream_snapshot(req);
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            res = tokio::time::timeout(deadline, call) => {
                let resp = match res {
                    Err(_) => {
                        let e = io::Error::new(io::ErrorKind::TimedOut, "snapshot transfer timed out");
                        return Err(StreamingError::Network(NetworkError::new(&e)));
                    }
                    Ok(Err(status)) => return Err(match rpc_error::<Fatal<NodeId>>(status) {
                        RPCError::Unreachable(u) => StreamingError::Unreachable(u),
                        RPCError::Network(n) => StreamingError::Network(n),
                        other => StreamingError::Network(NetworkError::new(&other)),
                    }),
                    Ok(Ok(resp)) => resp.into_inner(),
                };
                let res: Result<SnapshotResponse<NodeId>, Fatal<NodeId>> =
                    wire::decode(&resp.data).map_err(|s| StreamingError::Network(NetworkError::new(&s)))?;
                self.peers.record_contact(self.target);
                res.map_err(|f| StreamingError::RemoteError(RemoteError::new_with_node(self.target, self.node.clone(), f)))
            }
        }
    }
}

/// True when a failed call certainly never reached the peer: the connection could not be made.
/// Only such a call may be repeated without knowing whether it took effect.
pub fn never_sent(status: &tonic::Status) -> bool {
    if status.code() == tonic::Code::Unavailable && status.message().contains("connect error") {
        return true;
    }
    causes(status)
        .filter_map(|e| e.downcast_ref::<io::Error>())
        .any(|io| matches!(io.kind(), io::ErrorKind::ConnectionRefused | io::ErrorKind::AddrNotAvailable))
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn a_refused_connection_is_known_to_have_sent_nothing() {
        let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let peers = super::Peers::new("0123456789abcdef0123").unwrap();
        let mut c = peers.cluster_client(&addr.to_string()).unwrap();
        let err = c.status(crate::pb::Payload { data: Default::default() }).await.unwrap_err();
        assert!(super::never_sent(&err), "{err:?}");
        assert!(!super::never_sent(&tonic::Status::unavailable("connection reset")));
        assert!(!super::never_sent(&tonic::Status::deadline_exceeded("timeout")));
    }

    /// While a write another member forwarded is in flight here, the leader sends each commit
    /// index at once (that member waits to apply the write); otherwise it may wait a moment.
    #[tokio::test]
    async fn commit_indexes_go_out_at_once_only_while_a_forwarded_write_is_in_flight() {
        use openraft::network::RaftNetworkFactory;
        let peers = super::Peers::new("0123456789abcdef0123").unwrap();
        assert!(peers.commit_may_wait());
        let first = peers.forwarded_write();
        let second = peers.forwarded_write();
        assert!(!peers.commit_may_wait());
        drop(first);
        assert!(!peers.commit_may_wait(), "one forwarded write is still in flight");
        drop(second);
        assert!(peers.commit_may_wait());
    }

    /// An AppendEntries carrying nothing, from a leader of term 1.
    fn empty_append() -> openraft::raft::AppendEntriesRequest<crate::types::TypeConfig> {
        openraft::raft::AppendEntriesRequest {
            vote: openraft::Vote::new_committed(1, 1),
            prev_log_id: None,
            leader_commit: None,
            entries: vec![],
        }
    }

    /// A peer that takes the connection and never answers (a member stuck in a stalled fsync
    /// looks so) must not count as unreachable, which makes openraft back off before it sends
    /// again; any other error it follows with the next AppendEntries at once.
    #[tokio::test]
    async fn an_append_that_runs_out_of_time_is_not_counted_unreachable() {
        use openraft::error::RPCError;
        use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};

        // Takes the connection, reads what comes and answers nothing, until the test ends.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            while matches!(tokio::io::AsyncReadExt::read(&mut conn, &mut buf).await, Ok(n) if n > 0) {}
        });
        let mut peers = super::Peers::new("0123456789abcdef0123").unwrap();
        let node = crate::types::MemberNode { uuid: "u".into(), raft_addr: addr, http_addr: String::new() };
        let mut client = peers.new_client(2, &node).await;
        let ttl = RPCOption::new(std::time::Duration::from_millis(200));
        let err = client.append_entries(empty_append(), ttl.clone()).await.unwrap_err();
        assert!(matches!(err, RPCError::Network(_)), "a timeout should be a network error, without backoff: {err:?}");
        // A refused connection still makes openraft back off.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
        let node = crate::types::MemberNode { uuid: "v".into(), raft_addr: closed, http_addr: String::new() };
        let mut client2 = peers.new_client(3, &node).await;
        let err = client2.append_entries(empty_append(), ttl).await.unwrap_err();
        assert!(matches!(err, RPCError::Unreachable(_)), "{err:?}");
    }
}
