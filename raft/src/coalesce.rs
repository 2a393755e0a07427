//! Coalescing of concurrent writes on the leader into one log entry.
//!
//! Every log entry costs the same bookkeeping whatever it carries: openraft's responders, a
//! key in the log tree on every member, an encoding for the log, one for the wire and a
//! decoding on each side, a place in an AppendEntries. Under load most of a write's cost was
//! that, not its operations. So writes that reach the leader while earlier ones are still in
//! flight are proposed together: one transaction whose nested transactions are theirs, in
//! arrival order, each answered with its own nested result.
//!
//! Applying `[t1, t2, …]` nested in one entry is applying t1, t2, … one after another, each
//! seeing the writes of the ones before (the state machine's overlay), with its own guards,
//! its own failure branch and its own allocated numbers. The difference is that they share one
//! revision, the entry's index, as the operations of one transaction always do. A transaction
//! that writes an invalid key is rejected by the state machine as a whole, so such a write is
//! proposed on its own and cannot take the others with it. A failure of the combined write
//! (no leader, leadership lost in flight, a stopped node) is every member write's failure, with
//! the same meaning it has for a single write.
//!
//! At most [`IN_FLIGHT`] writes (combined or single) are outstanding; what arrives meanwhile
//! waits and goes into the next one. A write that arrives when nothing waits and a slot is free
//! is proposed at once, alone, from its caller's task, so a single writer pays no delay.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use openraft::error::{ClientWriteError, RaftError};
use steward_storage::{Op, Txn, TxnResult};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::member::write_error;
use crate::messages::RemoteError;
use crate::types::{NodeId, Raft};

/// Combined writes outstanding at once.
const IN_FLIGHT: usize = 4;

/// Member writes in one entry at most.
const MAX_BATCH: usize = 128;

/// About the most bytes of member writes one combined entry carries (a single write may be
/// larger). An entry travels whole in one AppendEntries, which must complete within openraft's
/// heartbeat interval, follower fsync included; scheduled-fire batches are tens of kilobytes.
const MAX_BATCH_BYTES: usize = 256 * 1024;

struct Pending {
    txn: Txn,
    done: oneshot::Sender<Result<TxnResult, RemoteError>>,
}

/// Handle on the coalescing task of one member.
pub(crate) struct Coalescer {
    tx: mpsc::UnboundedSender<Pending>,
    raft: Raft,
    id: NodeId,
    permits: Arc<Semaphore>,
    /// Writes sent to the task and not yet taken into a batch.
    queued: Arc<AtomicUsize>,
}

impl Coalescer {
    /// Starts the task that proposes the writes of `raft`, whose node is `id`.
    pub(crate) fn start(raft: Raft, id: NodeId) -> Coalescer {
        let (tx, rx) = mpsc::unbounded_channel();
        let permits = Arc::new(Semaphore::new(IN_FLIGHT));
        let queued = Arc::new(AtomicUsize::new(0));
        tokio::spawn(run(raft.clone(), id, rx, permits.clone(), queued.clone()));
        Coalescer { tx, raft, id, permits, queued }
    }

    /// Proposes `txn` (alone or with others) and returns its own result once the entry that
    /// carries it is committed and applied.
    pub(crate) async fn write(&self, txn: Txn) -> Result<TxnResult, RemoteError> {
        // Nothing waiting and a permit free: propose it from here, without the hop through
        // the task (what a single writer sees).
        if self.queued.load(Ordering::Acquire) == 0 {
            if let Ok(permit) = self.permits.clone().try_acquire_owned() {
                let result = client_write(&self.raft, self.id, txn).await;
                drop(permit);
                return result;
            }
        }
        let (done, result) = oneshot::channel();
        self.queued.fetch_add(1, Ordering::AcqRel);
        if self.tx.send(Pending { txn, done }).is_err() {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(RemoteError::Fatal("the write path has stopped".into()));
        }
        result.await.unwrap_or_else(|_| Err(RemoteError::Fatal("the write path has stopped".into())))
    }
}

async fn run(
    raft: Raft,
    id: NodeId,
    mut rx: mpsc::UnboundedReceiver<Pending>,
    permits: Arc<Semaphore>,
    queued: Arc<AtomicUsize>,
) {
    // A write taken from the queue that did not fit into the previous entry.
    let mut carried: Option<Pending> = None;
    loop {
        let first = match carried.take() {
            Some(p) => p,
            None => match rx.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        let Ok(permit) = permits.clone().acquire_owned().await else { return };
        // Whatever queued while every permit was taken goes into this entry, up to its limits.
        let mut bytes = first.txn.size_hint();
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(p) => {
                    bytes += p.txn.size_hint();
                    if bytes > MAX_BATCH_BYTES {
                        carried = Some(p);
                        break;
                    }
                    batch.push(p);
                }
                Err(_) => break,
            }
        }
        queued.fetch_sub(batch.len() + usize::from(carried.is_some()), Ordering::AcqRel);
        let raft = raft.clone();
        tokio::spawn(async move {
            propose(&raft, id, batch).await;
            drop(permit);
        });
    }
}

async fn propose(raft: &Raft, id: NodeId, batch: Vec<Pending>) {
    let (mut valid, invalid): (Vec<Pending>, Vec<Pending>) = batch.into_iter().partition(|p| p.txn.is_valid());
    if valid.len() == 1 {
        let p = valid.remove(0);
        let _ = p.done.send(client_write(raft, id, p.txn).await);
    } else if !valid.is_empty() {
        let (txns, dones): (Vec<Txn>, Vec<_>) = valid.into_iter().map(|p| (p.txn, p.done)).unzip();
        let combined = Txn::ops(txns.into_iter().map(Op::Txn).collect());
        match client_write(raft, id, combined).await {
            Ok(result) => {
                let mut nested = result.nested.into_iter();
                for done in dones {
                    // An outer transaction without guards runs every nested one, so each has a
                    // result; a missing one would be a state machine bug, reported as such.
                    let own = nested.next().ok_or_else(|| {
                        RemoteError::Fatal("a combined write came back without this write's result".into())
                    });
                    let _ = done.send(own);
                }
            }
            Err(e) => {
                for done in dones {
                    let _ = done.send(Err(e.clone()));
                }
            }
        }
    }
    // Rare (a proposer's bug), so they go after the others, each alone.
    for p in invalid {
        let _ = p.done.send(client_write(raft, id, p.txn).await);
    }
}

/// `client_write` on this member, which believes it is the leader, with openraft's errors
/// mapped to what a forwarding member needs to know.
async fn client_write(raft: &Raft, id: NodeId, txn: Txn) -> Result<TxnResult, RemoteError> {
    // openraft answers "forward to leader" both when this member is not the leader (nothing
    // appended) and when it stepped down after appending (the entry may still commit under
    // the next leader). Only the first may be retried elsewhere; a member that believed it
    // led cannot tell them apart, so it reports the outcome as unknown.
    let believed_leader = raft.metrics().borrow().current_leader == Some(id);
    match raft.client_write(txn).await {
        Ok(resp) => Ok(resp.data),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) if believed_leader => {
            Err(RemoteError::Indeterminate)
        }
        Err(e) => Err(write_error(e)),
    }
}
