//! openraft `RaftStateMachine` on sled, and the read handle for the layers above.
//!
//! The state machine is the `sm` tree: user keys (value = encoded [`KeyValue`]) and three
//! reserved keys, `\0last_applied`, `\0membership` and `\0redo`. Keeping them in one tree
//! lets each apply batch, and each snapshot install, be atomic after a crash, so data, last
//! applied and membership never disagree: an apply batch is a redo record followed by its
//! writes (see [`write_apply`]); an install is redone from its snapshot file (see
//! [`install_state`]). Neither is a sled batch (storage README, rule 8).
//!
//! Durability model: *the log is the durable record; the state machine is rebuilt from it*.
//! An apply batch is atomic (data, last applied and membership together) and is not flushed
//! on its own: it reaches the disk with the next flush of the writer thread
//! (sled's flush covers the whole database, and every log append is followed by one). After a
//! crash, sled recovers a prefix of its writes and `open` finishes an apply batch whose redo
//! record survived, so the state machine is exactly the state as of some earlier apply batch,
//! with the matching last-applied; openraft then re-applies the
//! committed entries after it from the log, deterministically, giving the same revisions and
//! results. Entries are only purged once a snapshot covering them is durable, and `open`
//! restores from that snapshot when the state machine is behind it. So nothing acknowledged is
//! lost, and the write path pays the log's fsync only — one fsync less per write than flushing
//! each apply, which is what etcd does with its backend too. `save_committed` is not needed:
//! a restarted member learns the commit index from the leader (or, alone, by committing its
//! new term's first entry).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Cursor;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine, Snapshot};
use openraft::{EntryPayload, LogId, OptionalSend, SnapshotMeta, StorageError, StorageIOError, StoredMembership};
use tokio::sync::{broadcast, watch};

use crate::codec::{self, SM_LAST_APPLIED, SM_MEMBERSHIP, SM_REDO};
use crate::kv::{is_valid_key, Change, RESERVED_PREFIX};
use crate::snapshot::{index_of, SaveMode, SnapshotFiles, SnapshotPayload};
use crate::txn::{read_value, user_key, Overlay};
use crate::{fatal, Event, KeyValue, KvTypeConfig, Shared, StoreError, StoreOptions, TxnResult};

/// What the state machine, its snapshot builders and every [`KvReader`] share.
struct SmShared {
    tree: sled::Tree,
    /// Write side: taken by `apply` and `install_snapshot` around their writes, and by
    /// a snapshot build to start and end its undo log. Read side: taken while reading a range
    /// (or, failing the undo log, building a snapshot). sled 0.34 has no point-in-time view,
    /// and a snapshot may be built concurrently with `apply` (openraft PR #816) and with
    /// `install_snapshot` (openraft #1130).
    lock: RwLock<()>,
    /// While a snapshot is being built: the value each key had when the build started, for
    /// the keys written since (see [`SnapshotBuilder::build`]). Written under the write side
    /// of `lock`.
    undo: Mutex<Option<Undo>>,
    /// The index of the last applied entry, published after it is durable.
    applied: watch::Sender<u64>,
    feed: broadcast::Sender<Event>,
}

/// What a snapshot build needs to see the state as of its start while applies go on.
#[derive(Default)]
struct Undo {
    /// Each key written since the build started, with its value at the start (`None`: absent).
    before: HashMap<sled::IVec, Option<sled::IVec>>,
    /// A snapshot install replaced the state meanwhile: the start state is gone.
    replaced: bool,
}

/// The state machine half of the store.
pub struct StateMachineStore<C: KvTypeConfig> {
    shared: Arc<Shared>,
    sm: Arc<SmShared>,
    snapshots: Arc<SnapshotFiles<C::Node>>,
    /// Tests only: see [`APPLY_LIMIT_ENV`].
    apply_limit: Option<std::path::PathBuf>,
}

/// Tests only: names a file holding a log index. While the file exists, this member applies
/// committed entries up to that index and waits before the next (the log goes on: the member
/// appends and acknowledges as before). It makes a member whose state lags the leader's at a
/// point a test chooses. Inert unless set when the store opens; never set in production.
pub const APPLY_LIMIT_ENV: &str = "STEWARD_TEST_APPLY_LIMIT";

/// The index the file at `path` allows applying up to; `None` when there is no limit.
fn apply_limit(path: &std::path::Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// A read handle on the applied state: local reads, the change feed and the applied index.
/// Cheap to clone; it stays valid across snapshot installs.
#[derive(Clone)]
pub struct KvReader {
    sm: Arc<SmShared>,
}

impl KvReader {
    /// The current value of `key` on this member.
    pub fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        if !is_valid_key(key) {
            return Ok(None);
        }
        read_value(&self.sm.tree, key)
    }
    /// Every key that starts with `prefix`, in key order.
    pub fn range(&self, prefix: &str) -> Result<Vec<(String, KeyValue)>, StoreError> {
        if prefix.starts_with(RESERVED_PREFIX) {
            return Ok(Vec::new());
        }
        // One consistent state, not a mix of two apply batches.
        let _view = self.sm.lock.read().unwrap_or_else(PoisonError::into_inner);
        let mut out = Vec::new();
        for item in self.sm.tree.scan_prefix(prefix.as_bytes()) {
            let (k, v) = item?;
            if let Some(key) = user_key(&k)? {
                out.push((key, codec::decode("value", &v)?));
            }
        }
        Ok(out)
    }
    /// At most `limit` keys that start with `prefix` and come after `after` (from the first
    /// when `None`), in key order: a range read a page at a time, for prefixes too large to
    /// hold in memory at once.
    pub fn range_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, KeyValue)>, StoreError> {
        use std::ops::Bound;
        if prefix.starts_with(RESERVED_PREFIX) || limit == 0 {
            return Ok(Vec::new());
        }
        let start = match after {
            Some(a) if a.as_bytes() >= prefix.as_bytes() => Bound::Excluded(a.as_bytes().to_vec()),
            _ => Bound::Included(prefix.as_bytes().to_vec()),
        };
        let _view = self.sm.lock.read().unwrap_or_else(PoisonError::into_inner);
        let mut out = Vec::new();
        for item in self.sm.tree.range::<Vec<u8>, _>((start, Bound::Unbounded)) {
            let (k, v) = item?;
            if !k.starts_with(prefix.as_bytes()) || out.len() == limit {
                break;
            }
            if let Some(key) = user_key(&k)? {
                out.push((key, codec::decode("value", &v)?));
            }
        }
        Ok(out)
    }
    /// The last key (in key order) that starts with `prefix`, with its value: one read however
    /// many keys the prefix holds.
    pub fn last_under(&self, prefix: &str) -> Result<Option<(String, KeyValue)>, StoreError> {
        if prefix.starts_with(RESERVED_PREFIX) {
            return Ok(None);
        }
        let _view = self.sm.lock.read().unwrap_or_else(PoisonError::into_inner);
        match self.sm.tree.scan_prefix(prefix.as_bytes()).next_back() {
            Some(item) => {
                let (k, v) = item?;
                Ok(user_key(&k)?.map(|key| Ok::<_, StoreError>((key, codec::decode("value", &v)?))).transpose()?)
            }
            None => Ok(None),
        }
    }
    /// The index of the last applied log entry (0 before any).
    pub fn applied_index(&self) -> u64 {
        *self.sm.applied.borrow()
    }
    /// Follows the applied index.
    pub fn watch_applied(&self) -> watch::Receiver<u64> {
        self.sm.applied.subscribe()
    }
    /// Subscribes to changes applied from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.sm.feed.subscribe()
    }
}

impl<C: KvTypeConfig> StateMachineStore<C> {
    /// A read handle for the layers above.
    pub fn reader(&self) -> KvReader {
        KvReader { sm: self.sm.clone() }
    }

    /// Opens the state machine on `tree` and finishes an interrupted snapshot install.
    pub(crate) fn open(
        shared: Arc<Shared>,
        tree: sled::Tree,
        snapshot_dir: &std::path::Path,
        options: &StoreOptions,
    ) -> Result<Self, StoreError> {
        let snapshots = SnapshotFiles::<C::Node>::open(snapshot_dir)?;
        let (mut applied, _) = read_applied_state::<C>(&tree)?;
        if redo_interrupted_apply(&tree, applied)? {
            tracing::warn!("finished an apply batch interrupted by a crash");
            applied = read_applied_state::<C>(&tree)?.0;
        }
        let (feed, _) = broadcast::channel(options.feed_capacity.max(1));
        let (applied_tx, _) = watch::channel(0);
        let sm = Arc::new(SmShared { tree, lock: RwLock::new(()), undo: Mutex::new(None), applied: applied_tx, feed });

        // `install_snapshot` saves the snapshot file before it replaces the state: the file
        // is the commit point. If it is ahead of the state, the install was interrupted;
        // finish it. (`open` flushes afterwards.)
        if let Some(meta) = snapshots.current_meta() {
            if index_of(&meta.last_log_id) > index_of(&applied) {
                tracing::warn!(
                    snapshot = %meta.snapshot_id,
                    "finishing a snapshot install interrupted by a crash"
                );
                let (meta, data) = snapshots.load()?.ok_or_else(|| StoreError::Corrupt {
                    what: "snapshot file".to_string(),
                    detail: "disappeared while opening".to_string(),
                })?;
                let payload = decode_payload::<C>(&meta, &data)?;
                install_state::<C>(&sm, &meta, payload.entries)?;
                applied = meta.last_log_id;
            }
        }
        sm.applied.send_replace(applied.map_or(0, |id| id.index));
        let apply_limit = std::env::var_os(APPLY_LIMIT_ENV).map(std::path::PathBuf::from);
        Ok(StateMachineStore { shared, sm, snapshots: Arc::new(snapshots), apply_limit })
    }
}

/// Last applied log id and last membership, as openraft's `applied_state` returns them.
type AppliedState<N> = (Option<LogId<u64>>, StoredMembership<u64, N>);

/// Reads last applied and membership from the reserved keys.
fn read_applied_state<C: KvTypeConfig>(tree: &sled::Tree) -> Result<AppliedState<C::Node>, StoreError> {
    let applied = match tree.get(SM_LAST_APPLIED)? {
        Some(v) => Some(codec::decode("last applied log id", &v)?),
        None => None,
    };
    let membership = match tree.get(SM_MEMBERSHIP)? {
        Some(v) => codec::decode("membership", &v)?,
        None => StoredMembership::default(),
    };
    Ok((applied, membership))
}

/// What one apply batch produced, to publish once it is durable.
struct Applied {
    last_index: u64,
    results: Vec<TxnResult>,
    changes: Vec<Change>,
}

/// Evaluates and writes one apply batch, atomically (data, last applied and membership; see
/// [`write_apply`]). A batch of a few entries runs on the caller's task, a larger one on a
/// blocking thread (see `apply`).
fn apply_entries<C: KvTypeConfig>(sm: &SmShared, entries: Vec<C::Entry>) -> Result<Applied, StoreError> {
    let mut overlay = Overlay::new(&sm.tree);
    let mut results = Vec::with_capacity(entries.len());
    let mut changes = Vec::new();
    let mut last_applied = None;
    let mut membership = None;
    for entry in entries {
        let log_id = entry.log_id;
        let revision = log_id.index;
        last_applied = Some(log_id);
        match entry.payload {
            EntryPayload::Blank => results.push(TxnResult::ok(revision)),
            EntryPayload::Normal(txn) => results.push(overlay.apply_txn(revision, &txn, &mut changes)?),
            EntryPayload::Membership(m) => {
                membership = Some(StoredMembership::new(Some(log_id), m));
                results.push(TxnResult::ok(revision));
            }
        }
    }
    let Some(last_applied) = last_applied else {
        return Ok(Applied { last_index: 0, results, changes });
    };

    let mut writes: Writes = Vec::new();
    for (key, value) in overlay.into_writes() {
        let value = value.map(|kv| codec::encode("value", &kv)).transpose()?;
        writes.push((key.into_bytes(), value));
    }
    if let Some(m) = &membership {
        writes.push((SM_MEMBERSHIP.to_vec(), Some(codec::encode("membership", m)?)));
    }
    writes.push((SM_LAST_APPLIED.to_vec(), Some(codec::encode("last applied log id", &last_applied)?)));
    {
        let _exclusive = sm.lock.write().unwrap_or_else(PoisonError::into_inner);
        let mut undo = sm.undo.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(undo) = undo.as_mut() {
            // A snapshot is being built: keep what these user keys held when it started.
            for (key, _) in writes.iter().filter(|(k, _)| k.first() != Some(&(RESERVED_PREFIX as u8))) {
                if !undo.before.contains_key(key.as_slice()) {
                    let old = sm.tree.get(key)?;
                    undo.before.insert(sled::IVec::from(key.as_slice()), old);
                }
            }
        }
        write_apply(&sm.tree, last_applied.index, writes)?;
    }
    Ok(Applied { last_index: last_applied.index, results, changes })
}

/// An apply batch's writes to the `sm` tree: each key with its new value, `None` to remove it.
type Writes = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// Writes one apply batch so that a crash keeps all of it or none of it.
///
/// A sled `apply_batch` would do that, but steward never uses one (see the storage README's
/// rule on sled batches): the first batch in a process switches every sled operation onto one
/// process-wide lock, and each batch also cost two more IO buffer writes. So an apply batch is
/// a redo record (every write of the batch and the index of its last entry, in one insert)
/// followed by the writes themselves, one insert each, last applied last. sled recovers a
/// prefix of its writes: after a crash either the record is missing, and so is every write
/// after it, or the record is there and [`redo_interrupted_apply`] finishes whatever part of
/// the batch was lost.
fn write_apply(tree: &sled::Tree, last_index: u64, writes: Writes) -> Result<(), StoreError> {
    tree.insert(SM_REDO, codec::encode("redo record", &(last_index, &writes))?)?;
    write_each(tree, writes)
}

/// Writes (or removes) each key in order, one sled operation each.
fn write_each(tree: &sled::Tree, writes: Writes) -> Result<(), StoreError> {
    for (key, value) in writes {
        match value {
            Some(v) => tree.insert(key, v)?,
            None => tree.remove(key)?,
        };
    }
    Ok(())
}

/// Finishes an apply batch a crash interrupted (see [`write_apply`]): the redo record is newer
/// than last applied, so some of its writes may be missing. Writing them all again is
/// harmless, since they are the batch's final values, and a crash during it leaves the record
/// newer than last applied still (last applied is the last write), so the next open does it
/// again. Returns whether it did.
fn redo_interrupted_apply(tree: &sled::Tree, applied: Option<LogId<u64>>) -> Result<bool, StoreError> {
    let Some(raw) = tree.get(SM_REDO)? else { return Ok(false) };
    let (last_index, writes): (u64, Writes) = codec::decode("redo record", &raw)?;
    if Some(last_index) <= index_of(&applied) {
        return Ok(false);
    }
    write_each(tree, writes)?;
    Ok(true)
}

/// Replaces the whole state with a snapshot's: every key the snapshot does not hold is removed
/// (a snapshot install is a replacement, not a merge), and last applied and membership are
/// taken from `meta`.
///
/// Not atomic on disk, and need not be: the snapshot file, saved before this runs, is the
/// commit point, and last applied is written last. A crash part way leaves last applied
/// behind the snapshot file, and `open` then does the whole install again.
fn install_state<C: KvTypeConfig>(
    sm: &SmShared,
    meta: &SnapshotMeta<u64, C::Node>,
    entries: Vec<(String, KeyValue)>,
) -> Result<(), StoreError> {
    let mut writes: Writes = Vec::new();
    {
        let keep: HashSet<&[u8]> = entries.iter().map(|(k, _)| k.as_bytes()).collect();
        // Only apply and install write this tree, and openraft never runs them
        // concurrently (both take `&mut self`), so this listing cannot go stale.
        for key in sm.tree.iter().keys() {
            let key = key?;
            let last = key.as_ref() == SM_LAST_APPLIED || key.as_ref() == SM_MEMBERSHIP;
            if !last && !keep.contains(key.as_ref()) {
                writes.push((key.to_vec(), None));
            }
        }
    }
    for (key, value) in &entries {
        writes.push((key.as_bytes().to_vec(), Some(codec::encode("value", value)?)));
    }
    writes.push((SM_MEMBERSHIP.to_vec(), Some(codec::encode("membership", &meta.last_membership)?)));
    let applied = meta.last_log_id.as_ref().map(|id| codec::encode("last applied log id", id)).transpose()?;
    writes.push((SM_LAST_APPLIED.to_vec(), applied));
    let _exclusive = sm.lock.write().unwrap_or_else(PoisonError::into_inner);
    if let Some(undo) = sm.undo.lock().unwrap_or_else(PoisonError::into_inner).as_mut() {
        undo.replaced = true;
    }
    write_each(&sm.tree, writes)
}

/// Decodes snapshot data and checks it against its meta and the key rules.
fn decode_payload<C: KvTypeConfig>(
    meta: &SnapshotMeta<u64, C::Node>,
    data: &[u8],
) -> Result<SnapshotPayload<C::Node>, StoreError> {
    let payload: SnapshotPayload<C::Node> = codec::decode("snapshot", data)?;
    let corrupt = |detail: String| StoreError::Corrupt { what: format!("snapshot {}", meta.snapshot_id), detail };
    if payload.last_applied != meta.last_log_id || payload.membership != meta.last_membership {
        return Err(corrupt("its data does not match its meta".to_string()));
    }
    if let Some((key, _)) = payload.entries.iter().find(|(k, _)| !is_valid_key(k)) {
        return Err(corrupt(format!("it holds the invalid key {key:?}")));
    }
    Ok(payload)
}

/// Most entries applied without leaving the state machine's task (see `apply`).
const INLINE_APPLY_MAX: usize = 4;

/// Runs blocking store work (sled calls, file I/O) off the async runtime's workers.
async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(res) => res,
        Err(e) => Err(StoreError::Io(std::io::Error::other(format!("storage task failed: {e}")))),
    }
}

/// Makes the calling thread yield the CPU to the rest of the process (nice 19).
fn lower_thread_priority() {
    // SAFETY: plain syscalls without pointers; on Linux `PRIO_PROCESS` with a thread id
    // applies to that thread only.
    #[allow(unsafe_code)]
    let ret = unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 19)
    };
    if ret != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "could not lower the snapshot thread's priority");
    }
}

/// Builds snapshots from a consistent view of the state machine.
pub struct SnapshotBuilder<C: KvTypeConfig> {
    sm: Arc<SmShared>,
    snapshots: Arc<SnapshotFiles<C::Node>>,
}

impl<C: KvTypeConfig> SnapshotBuilder<C> {
    fn build(sm: &SmShared, snapshots: &SnapshotFiles<C::Node>) -> Result<Snapshot<C>, StoreError> {
        let started = std::time::Instant::now();
        let ((last_applied, membership, raw), held) = match read_beside_applies::<C>(sm)? {
            Some(view) => (view, std::time::Duration::ZERO),
            // Another build is running, or an install replaced the state meanwhile.
            None => {
                let t = std::time::Instant::now();
                (read_holding_applies::<C>(sm)?, t.elapsed())
            }
        };
        // The rest (decoding, encoding tens of megabytes, writing them) holds no lock and can
        // wait: every member builds its snapshot at the same log index, and at normal priority
        // the three builds starve the appends and AppendEntries of a small machine.
        lower_thread_priority();
        let mut entries = Vec::with_capacity(raw.len());
        for (k, v) in raw {
            if let Some(key) = user_key(&k)? {
                entries.push((key, codec::decode::<KeyValue>("value", &v)?));
            }
        }
        let meta = SnapshotMeta {
            last_log_id: last_applied,
            last_membership: membership.clone(),
            snapshot_id: snapshots.next_id(last_applied.as_ref()),
        };
        let data = codec::encode("snapshot", &SnapshotPayload::<C::Node> { last_applied, membership, entries })?;
        if !snapshots.save(&meta, &data, SaveMode::IfNotOlder)? {
            tracing::info!(snapshot = %meta.snapshot_id, "a newer snapshot was saved meanwhile; not replacing it");
        }
        tracing::info!(
            snapshot = %meta.snapshot_id,
            bytes = data.len(),
            applies_held_ms = held.as_millis() as u64,
            total_ms = started.elapsed().as_millis() as u64,
            "snapshot built"
        );
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}

/// One state of the state machine: last applied, membership and every user entry.
type StateView<N> = (Option<LogId<u64>>, StoredMembership<u64, N>, Vec<(sled::IVec, sled::IVec)>);

/// Reads the state with applies and installs excluded.
fn read_holding_applies<C: KvTypeConfig>(sm: &SmShared) -> Result<StateView<C::Node>, StoreError> {
    let _view = sm.lock.read().unwrap_or_else(PoisonError::into_inner);
    let (last_applied, membership) = read_applied_state::<C>(&sm.tree)?;
    Ok((last_applied, membership, user_entries(&sm.tree)?))
}

/// Reads the state as of one moment while applies go on: sled 0.34 has no point-in-time
/// view, so applies record, for every key they write during the read, what it held at the
/// start ([`Undo`]), and the read is corrected with that afterwards. Holding applies back
/// instead took 60-130 ms per 100 000 keys, on every member at once. `None` when another
/// build is running or a snapshot install replaced the state meanwhile.
fn read_beside_applies<C: KvTypeConfig>(sm: &SmShared) -> Result<Option<StateView<C::Node>>, StoreError> {
    let (last_applied, membership) = {
        // No apply is half done while the write side is held.
        let _exclusive = sm.lock.write().unwrap_or_else(PoisonError::into_inner);
        let mut undo = sm.undo.lock().unwrap_or_else(PoisonError::into_inner);
        if undo.is_some() {
            return Ok(None);
        }
        let state = read_applied_state::<C>(&sm.tree)?;
        *undo = Some(Undo::default());
        state
    };
    let read = user_entries(&sm.tree);
    let undo = {
        let _exclusive = sm.lock.write().unwrap_or_else(PoisonError::into_inner);
        sm.undo.lock().unwrap_or_else(PoisonError::into_inner).take().unwrap_or_default()
    };
    let raw = read?;
    if undo.replaced {
        return Ok(None);
    }
    if undo.before.is_empty() {
        return Ok(Some((last_applied, membership, raw)));
    }
    // What the read saw of a key written meanwhile may be either value; the start's wins.
    let mut state: BTreeMap<sled::IVec, sled::IVec> = raw.into_iter().collect();
    for (key, old) in undo.before {
        match old {
            Some(v) => state.insert(key, v),
            None => state.remove(&key),
        };
    }
    Ok(Some((last_applied, membership, state.into_iter().collect())))
}

/// Every user key of the state machine with its stored value, in key order.
fn user_entries(tree: &sled::Tree) -> Result<Vec<(sled::IVec, sled::IVec)>, StoreError> {
    let mut raw = Vec::new();
    for item in tree.iter() {
        let (k, v) = item?;
        if k.first() != Some(&(RESERVED_PREFIX as u8)) {
            raw.push((k, v));
        }
    }
    Ok(raw)
}

impl<C: KvTypeConfig> RaftSnapshotBuilder<C> for SnapshotBuilder<C> {
    async fn build_snapshot(&mut self) -> Result<Snapshot<C>, StorageError<u64>> {
        let (sm, snapshots) = (self.sm.clone(), self.snapshots.clone());
        // A thread of its own rather than the blocking pool: the build lowers its thread's
        // priority, which an unprivileged process cannot raise again for a pooled thread.
        let (tx, rx) = tokio::sync::oneshot::channel();
        let spawned = std::thread::Builder::new().name("steward-snapshot".into()).spawn(move || {
            let _ = tx.send(Self::build(&sm, &snapshots));
        });
        let res = match spawned {
            Ok(_) => {
                rx.await.unwrap_or_else(|_| Err(StoreError::Io(std::io::Error::other("snapshot thread panicked"))))
            }
            Err(e) => Err(StoreError::Io(e)),
        };
        res.map_err(fatal(|e| StorageIOError::write_snapshot(None, e)))
    }
}

impl<C: KvTypeConfig> StateMachineStore<C> {
    /// Applies `entries`, committed and in order, as one batch.
    async fn apply_now(&mut self, entries: Vec<C::Entry>) -> Result<Vec<crate::TxnResult>, StorageError<u64>> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let sm = self.sm.clone();
        // No flush here: the entries are durable in the log already (see the module docs).
        // A few entries are applied on this task: sled's writes go to its page cache, so this
        // is tens of microseconds, and the hop to the blocking pool cost more than that (about
        // 7 context switches per write at one connection, across 3 members), and in the fire
        // benchmark the members' peak memory was a third higher with it (BENCHMARKS.md,
        // session 5). A larger batch (a member catching up) still goes to the pool.
        let applied = if entries.len() <= INLINE_APPLY_MAX {
            // Counts against the task's cooperative budget, so that a caller applying in a
            // loop still lets the other tasks of its thread run.
            tokio::task::consume_budget().await;
            apply_entries::<C>(&sm, entries)
        } else {
            run_blocking(move || apply_entries::<C>(&sm, entries)).await
        }
        .map_err(fatal(StorageIOError::write_state_machine))?;
        // The watch first, so that whoever hears of a change can already read it.
        self.sm.applied.send_replace(applied.last_index);
        for change in applied.changes {
            // No subscriber is not an error.
            let _ = self.sm.feed.send(Event::Change(change));
        }
        Ok(applied.results)
    }
}

impl<C: KvTypeConfig> RaftStateMachine<C> for StateMachineStore<C> {
    type SnapshotBuilder = SnapshotBuilder<C>;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, C::Node>), StorageError<u64>> {
        read_applied_state::<C>(&self.sm.tree).map_err(fatal(StorageIOError::read_state_machine))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<crate::TxnResult>, StorageError<u64>>
    where
        I: IntoIterator<Item = C::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut entries: Vec<C::Entry> = entries.into_iter().collect();
        let Some(path) = self.apply_limit.clone() else { return self.apply_now(entries).await };
        let mut results = Vec::with_capacity(entries.len());
        while !entries.is_empty() {
            let allowed = match apply_limit(&path) {
                None => entries.len(),
                Some(limit) => entries.iter().take_while(|e| e.log_id.index <= limit).count(),
            };
            if allowed == 0 {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                continue;
            }
            let rest = entries.split_off(allowed);
            results.extend(self.apply_now(entries).await?);
            entries = rest;
        }
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder { sm: self.sm.clone(), snapshots: self.snapshots.clone() }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError<u64>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, C::Node>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<u64>> {
        let data = snapshot.into_inner();
        let (sm, snapshots, owned_meta) = (self.sm.clone(), self.snapshots.clone(), meta.clone());
        let res = async {
            run_blocking(move || {
                // Validate everything before touching the store.
                let payload = decode_payload::<C>(&owned_meta, &data)?;
                // Save the file first: it is the commit point. A crash after this finishes
                // the install on the next open; a crash before it leaves the old state and
                // the old snapshot, both intact.
                snapshots.save(&owned_meta, &data, SaveMode::Always)?;
                install_state::<C>(&sm, &owned_meta, payload.entries)
            })
            .await?;
            self.shared.writer.flushed().await
        };
        let signature = Some(meta.signature());
        res.await.map_err(fatal(|e| StorageIOError::write_snapshot(signature, e)))?;

        let revision = meta.last_log_id.map_or(0, |id| id.index);
        self.sm.applied.send_replace(revision);
        let _ = self.sm.feed.send(Event::Reset { revision });
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<C>>, StorageError<u64>> {
        let snapshots = self.snapshots.clone();
        let loaded =
            run_blocking(move || snapshots.load()).await.map_err(fatal(|e| StorageIOError::read_snapshot(None, e)))?;
        Ok(loaded.map(|(meta, data)| Snapshot { meta, snapshot: Box::new(Cursor::new(data)) }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> (tempfile::TempDir, sled::Tree) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let tree = db.open_tree("sm").unwrap();
        (dir, tree)
    }

    fn applied(index: u64) -> Vec<u8> {
        codec::encode("last applied log id", &LogId::new(openraft::CommittedLeaderId::new(1, 0), index)).unwrap()
    }

    fn last_applied(tree: &sled::Tree) -> Option<LogId<u64>> {
        tree.get(SM_LAST_APPLIED).unwrap().map(|v| codec::decode("last applied log id", &v).unwrap())
    }

    fn writes(index: u64) -> Writes {
        vec![
            (b"a".to_vec(), Some(format!("a{index}").into_bytes())),
            (b"gone".to_vec(), None),
            (SM_LAST_APPLIED.to_vec(), Some(applied(index))),
        ]
    }

    #[test]
    fn an_apply_cut_short_after_its_redo_record_is_finished_from_the_record() {
        let (_dir, tree) = tree();
        write_apply(&tree, 1, writes(1)).unwrap();
        tree.insert("gone", "x").unwrap();
        // A crash kept the redo record of apply 2 and only its first write.
        tree.insert(SM_REDO, codec::encode("redo record", &(2u64, &writes(2))).unwrap()).unwrap();
        tree.insert("a", "a2").unwrap();
        let before = last_applied(&tree);
        assert_eq!(before.map(|id| id.index), Some(1));

        assert!(redo_interrupted_apply(&tree, before).unwrap());
        assert_eq!(tree.get("a").unwrap().as_deref(), Some(&b"a2"[..]));
        assert_eq!(tree.get("gone").unwrap(), None);
        let after = last_applied(&tree);
        assert_eq!(after.map(|id| id.index), Some(2));
        // Once applied, the record is old news.
        assert!(!redo_interrupted_apply(&tree, after).unwrap());
    }

    #[test]
    fn a_redo_record_older_than_last_applied_is_left_alone() {
        let (_dir, tree) = tree();
        write_apply(&tree, 3, writes(3)).unwrap();
        // A batch larger than a quarter segment: its record is a blob file of sled's.
        let mut big = writes(4);
        big.push((b"big".to_vec(), Some(vec![7; 300 * 1024])));
        write_apply(&tree, 4, big).unwrap();
        assert_eq!(tree.get("big").unwrap().map(|v| v.len()), Some(300 * 1024));
        tree.insert("a", "changed later").unwrap();
        let applied = last_applied(&tree);
        assert_eq!(applied.map(|id| id.index), Some(4));
        assert!(!redo_interrupted_apply(&tree, applied).unwrap());
        assert_eq!(tree.get("a").unwrap().as_deref(), Some(&b"changed later"[..]));
    }
}
