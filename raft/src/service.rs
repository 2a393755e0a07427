//! The server side of member-to-member gRPC: the `Raft` service (openraft's RPCs), the
//! `Cluster` service (forwarded writes, read index, membership, status), the check of the
//! cluster secret that guards both, and optional mutual TLS (see `network::TlsConfig`).

use std::io::Cursor;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, VoteRequest};
use openraft::{Snapshot, SnapshotMeta, Vote};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::StreamExt;
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status, Streaming};

use crate::member::Member;
use crate::messages::{HeartbeatRequest, JoinRequest, LeaveRequest};
use crate::network::{MAX_MESSAGE_BYTES, SECRET_HEADER, TARGET_HEADER};
use crate::pb::cluster_server::{Cluster, ClusterServer};
use crate::pb::raft_server::{Raft as RaftRpc, RaftServer};
use crate::pb::{Payload, SnapshotChunk};
use crate::types::{MemberNode, NodeId, TypeConfig};
use crate::wire;

/// Refuses every call that does not carry the cluster secret.
#[derive(Clone)]
pub struct CheckSecret {
    secret: Arc<[u8]>,
}

impl CheckSecret {
    pub fn new(secret: &str) -> Self {
        CheckSecret { secret: Arc::from(secret.as_bytes()) }
    }
}

impl tonic::service::Interceptor for CheckSecret {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        let given = req.metadata().get(SECRET_HEADER).map(|v| v.as_bytes());
        // Constant-time comparison: the time a refusal takes says nothing about the secret.
        let ok = given.is_some_and(|g| bool::from(g.ct_eq(&self.secret)));
        if ok {
            Ok(req)
        } else {
            let peer = req.remote_addr().map(|a| a.to_string()).unwrap_or_else(|| "unknown".into());
            tracing::warn!(%peer, secret_present = given.is_some(), "refused a member-to-member call: wrong cluster secret");
            Err(Status::unauthenticated("wrong or missing cluster secret"))
        }
    }
}

struct RaftSvc {
    member: Member,
}

impl RaftSvc {
    /// Refuses a Raft RPC meant for another node: this address belonged to a node whose data
    /// dir was wiped and which came back as a new one. Answering as that node, with an empty
    /// log, made its leader's openraft panic ("follower log reversion is not allowed") and
    /// stop. Unavailable, so that the leader backs off as from a node that is down, which, as
    /// that node, it is.
    fn check_target<T>(&self, req: &Request<T>) -> Result<(), Status> {
        let target = req.metadata().get(TARGET_HEADER).and_then(|v| v.to_str().ok()?.parse::<NodeId>().ok());
        match target {
            Some(t) if t != self.member.id() => {
                tracing::debug!(target = t, "refused a Raft call meant for another node at this address");
                Err(Status::unavailable(format!("this is node {}, not node {t}", self.member.id())))
            }
            _ => Ok(()),
        }
    }
}

#[tonic::async_trait]
impl RaftRpc for RaftSvc {
    async fn append_entries(&self, req: Request<Payload>) -> Result<Response<Payload>, Status> {
        self.check_target(&req)?;
        let rpc: AppendEntriesRequest<TypeConfig> = wire::decode(&req.into_inner().data)?;
        // What this member may consider committed once it accepts these entries.
        let last_index = rpc.entries.last().map(|e| e.log_id.index).or(rpc.prev_log_id.map(|l| l.index));
        let leader_commit = rpc.leader_commit.map(|l| l.index);
        let leader = Some(rpc.vote.leader_id().voted_for()).flatten();
        let res = self.member.raft().append_entries(rpc).await;
        if let Ok(AppendEntriesResponse::Success) = &res {
            let committed = match (leader_commit, last_index) {
                (Some(c), Some(l)) => Some(c.min(l)),
                _ => None,
            };
            self.member.inner.follower.saw_leader(leader, committed);
        }
        Ok(Response::new(Payload { data: wire::encode(&res) }))
    }

    async fn vote(&self, req: Request<Payload>) -> Result<Response<Payload>, Status> {
        self.check_target(&req)?;
        let rpc: VoteRequest<NodeId> = wire::decode(&req.into_inner().data)?;
        let res = self.member.raft().vote(rpc).await;
        Ok(Response::new(Payload { data: wire::encode(&res) }))
    }

    async fn install_snapshot(&self, req: Request<Payload>) -> Result<Response<Payload>, Status> {
        self.check_target(&req)?;
        let rpc: InstallSnapshotRequest<TypeConfig> = wire::decode(&req.into_inner().data)?;
        let res = self.member.raft().install_snapshot(rpc).await;
        Ok(Response::new(Payload { data: wire::encode(&res) }))
    }

    async fn stream_snapshot(&self, req: Request<Streaming<SnapshotChunk>>) -> Result<Response<Payload>, Status> {
        self.check_target(&req)?;
        let mut stream = req.into_inner();
        let first = stream.message().await?.ok_or_else(|| Status::invalid_argument("empty snapshot stream"))?;
        let (vote, meta): (Vote<NodeId>, SnapshotMeta<NodeId, MemberNode>) = wire::decode(&first.header)?;
        let mut data = first.data.to_vec();
        while let Some(chunk) = stream.message().await? {
            data.extend_from_slice(&chunk.data);
        }
        // Installing a snapshot replaces the whole state, and one the store cannot decode stops
        // the Raft node: refuse a stream that did not bring all of it (a chaos run saw one end
        // cleanly after its header), so that the leader sends it again.
        if data.is_empty() || (first.total_bytes != 0 && data.len() as u64 != first.total_bytes) {
            tracing::warn!(
                snapshot = %meta.snapshot_id,
                received = data.len(),
                expected = first.total_bytes,
                "refused an incomplete snapshot"
            );
            return Err(Status::invalid_argument(format!(
                "incomplete snapshot {}: received {} of {} bytes",
                meta.snapshot_id,
                data.len(),
                first.total_bytes
            )));
        }
        tracing::info!(snapshot = %meta.snapshot_id, bytes = data.len(), "received a snapshot");
        let snapshot = Snapshot { meta, snapshot: Box::new(Cursor::new(data)) };
        let res = self.member.raft().install_full_snapshot(vote, snapshot).await;
        if res.is_ok() {
            self.member.inner.follower.saw_leader(vote.leader_id().voted_for(), None);
        }
        Ok(Response::new(Payload { data: wire::encode(&res) }))
    }
}

struct ClusterSvc {
    member: Member,
}

impl ClusterSvc {
    /// The deadline the caller gave (its gRPC timeout), capped by our own request timeout.
    fn until(&self, timeout: Option<Duration>) -> Instant {
        Instant::now() + timeout.unwrap_or(self.member.config().request_timeout)
    }
}

fn grpc_timeout<T>(req: &Request<T>) -> Option<Duration> {
    let v = req.metadata().get("grpc-timeout")?.to_str().ok()?;
    let (num, unit) = v.split_at(v.len().checked_sub(1)?);
    let n: u64 = num.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[tonic::async_trait]
impl Cluster for ClusterSvc {
    async fn write(&self, req: Request<Payload>) -> Result<Response<Payload>, Status> {
        let until = self.until(grpc_timeout(&req));
        let txn = wire::decode(&req.into_inner().data)?;
        // Handled here or refused: a forwarded write never hops again, so it cannot loop.
        // The forwarding member waits until it has applied the write, so while it is in flight
        // the followers learn each commit index at once (`Peers::commit_may_wait`).
        let _forwarded = self.member.peers().forwarded_write();
        let res = self.member.local_write(txn, until).await;
        Ok(Response::new(Payload { data: wire::encode(&res) }))
    }

    async fn read_index(&self, req: Request<Payload>) -> Result<Response<Payload>, Status> {
        let until = self.until(grpc_timeout(&req));
        let res = self.member.local_read_index(until).await;
        Ok(Response::new(Payload { data: wire::encode(&res) }))
    }

    async fn join(&self, req: Request<Payload>) -> Result<Response<Payload>, Status> {
        let join: JoinRequest = wire::decode(&req.into_inner().data)?;
        let res = self.member.add_member(join).await;
        Ok(Response::new(Payload { data: wire::encode(&res) }))
    }

    async fn leave(&self, req: Request<Payload>) -> Result<Response<Payload>, Status> {
        let leave: LeaveRequest = wire::decode(&req.into_inner().data)?;
        let res = self.member.remove_member(leave.node_id).await;
        Ok(Response::new(Payload { data: wire::encode(&res) }))
    }

    async fn status(&self, _req: Request<Payload>) -> Result<Response<Payload>, Status> {
        let res = self.member.local_status();
        Ok(Response::new(Payload { data: wire::encode(&res) }))
    }

    async fn heartbeat(&self, req: Request<Payload>) -> Result<Response<Payload>, Status> {
        let beat: HeartbeatRequest = wire::decode(&req.into_inner().data)?;
        let res = self.member.local_heartbeat(beat);
        Ok(Response::new(Payload { data: wire::encode(&res) }))
    }
}

/// Serves the member-to-member gRPC on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    member: Member,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let check = CheckSecret::new(&member.config().cluster_secret);
    let tls = member.config().tls.clone();
    let raft = RaftServer::new(RaftSvc { member: member.clone() })
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let cluster = ClusterServer::new(ClusterSvc { member })
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &tls {
        builder = builder.tls_config(tls.server())?;
    }
    // tonic ignores its own `tcp_nodelay` setting for an incoming stream, so it is set on each
    // accepted connection here. Without it an AppendEntries answer waits behind Nagle's
    // algorithm for the leader's delayed ACK (40 ms on Linux): one write in every few hundred
    // took 40 ms.
    let incoming = TcpListenerStream::new(listener).map(|conn| {
        if let Ok(tcp) = &conn {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::warn!(error = %e, "could not set TCP_NODELAY on a member connection");
            }
        }
        conn
    });
    builder
        .add_service(InterceptedService::new(raft, check.clone()))
        .add_service(InterceptedService::new(cluster, check))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}
