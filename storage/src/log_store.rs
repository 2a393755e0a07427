//! openraft `RaftLogStorage` on sled.
//!
//! The log lives in the `log` tree (key = index as u64 big-endian, value = encoded entry),
//! the vote and the last purged log id in the `meta` tree. openraft calls these methods one
//! at a time from its core task (`&mut self`), so the sled writes below happen in call order;
//! durability comes from the writer thread (private module `writer`), which flushes the whole
//! database and only then acknowledges. The rules followed here:
//!
//! - `append` makes the entries readable before it returns and calls the `LogFlushed`
//!   callback only after a flush that covers them.
//! - `save_vote` returns only after a flush that covers the vote.
//! - `truncate` and `purge` remove their range in one atomic batch, so the log never has a
//!   hole; `purge` makes `last_purged` durable before removing anything.
//! - Any error is returned as `openraft::StorageError`, which stops the Raft node.

use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{LogId, OptionalSend, StorageError, StorageIOError, Vote};

use crate::codec::{self, META_LAST_PURGED, META_VOTE};
use crate::{fatal, KvTypeConfig, Shared, StoreError};

/// The Raft log half of the store. Cheap to clone; clones share the writer thread.
pub struct LogStore<C: KvTypeConfig> {
    shared: Arc<Shared>,
    _c: PhantomData<fn() -> C>,
}

impl<C: KvTypeConfig> Clone for LogStore<C> {
    fn clone(&self) -> Self {
        LogStore { shared: self.shared.clone(), _c: PhantomData }
    }
}

impl<C: KvTypeConfig> LogStore<C> {
    /// Wraps the shared database and finishes a purge that a crash interrupted.
    pub(crate) fn open(shared: Arc<Shared>) -> Result<Self, StoreError> {
        let store = LogStore { shared, _c: PhantomData };
        // `purge` persists `last_purged` before it removes entries; if the process died in
        // between, entries at or below it are still there. Remove them now so that the log
        // starts right after `last_purged`.
        if let Some(purged) = store.last_purged()? {
            while remove_chunk_up_to(&store.shared.log, purged.index)? {}
        }
        Ok(store)
    }

    fn last_purged(&self) -> Result<Option<LogId<u64>>, StoreError> {
        match self.shared.meta.get(META_LAST_PURGED)? {
            Some(v) => Ok(Some(codec::decode("last purged log id", &v)?)),
            None => Ok(None),
        }
    }

    fn decode_entry(key: &[u8], value: &[u8]) -> Result<C::Entry, StoreError> {
        let index = codec::log_index(key)?;
        let entry: C::Entry = codec::decode("log entry", value)?;
        if entry.log_id.index != index {
            return Err(StoreError::Corrupt {
                what: format!("log entry at index {index}"),
                detail: format!("it holds log id {}", entry.log_id),
            });
        }
        Ok(entry)
    }

    /// The keys of `range` that are part of the log: entries at or below `last_purged` may
    /// still be stored while their background removal runs, and are skipped.
    fn live_key_range<RB: RangeBounds<u64>>(&self, range: &RB) -> Result<Option<KeyRange>, StoreError> {
        let Some((Bound::Included(start), end)) = key_range(range) else {
            return Ok(None);
        };
        let Some(purged) = self.last_purged()? else {
            return Ok(Some((Bound::Included(start), end)));
        };
        let Some(first_live) = purged.index.checked_add(1).map(codec::log_key) else {
            return Ok(None);
        };
        let start = start.max(first_live);
        let empty = match end {
            Bound::Included(e) => e < start,
            Bound::Excluded(e) => e <= start,
            Bound::Unbounded => false,
        };
        Ok((!empty).then_some((Bound::Included(start), end)))
    }

    fn read_range<RB: RangeBounds<u64>>(&self, range: &RB) -> Result<Vec<C::Entry>, StoreError> {
        let Some((start, end)) = self.live_key_range(range)? else {
            return Ok(Vec::new());
        };
        self.shared
            .log
            .range((start, end))
            .map(|item| {
                let (k, v) = item?;
                Self::decode_entry(&k, &v)
            })
            .collect()
    }

    /// The entries of `[start, end)` up to about `max_bytes` of stored data (always at least
    /// one entry when the range is not empty).
    fn read_limited(&self, start: u64, end: u64, max_bytes: usize) -> Result<Vec<C::Entry>, StoreError> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let Some(range) = self.live_key_range(&(start..end))? else { return Ok(out) };
        for item in self.shared.log.range(range) {
            let (k, v) = item?;
            if !out.is_empty() && bytes + v.len() > max_bytes {
                break;
            }
            bytes += v.len();
            out.push(Self::decode_entry(&k, &v)?);
        }
        Ok(out)
    }

    fn log_state(&self) -> Result<LogState<C>, StoreError> {
        let last_purged = self.last_purged()?;
        let last_entry = match self.shared.log.last()? {
            Some((k, v)) => Some(Self::decode_entry(&k, &v)?.log_id),
            None => None,
        };
        // After a purge past the last entry (which follows a snapshot install) the log is
        // empty and the last log id is the purged one.
        let last_log_id = match (last_entry, last_purged) {
            (Some(e), Some(p)) if p.index >= e.index => Some(p),
            (Some(e), _) => Some(e),
            (None, p) => p,
        };
        Ok(LogState { last_purged_log_id: last_purged, last_log_id })
    }

    fn append_now<I>(&self, entries: I) -> Result<(), StoreError>
    where
        I: IntoIterator<Item = C::Entry>,
    {
        // One insert per entry, in index order, not one atomic batch: sled recovers a prefix
        // of its writes, so a crash leaves a prefix of these entries, never a hole, and that
        // is all Raft needs (none of them was acknowledged). A batch cost every append two
        // more IO buffer writes (sled seals the current buffer and gives the batch's manifest
        // one of its own), each a `pwrite` and a `sync_file_range` on a thread of sled's pool:
        // 28 of the 71 context switches per one-connection write (BENCHMARKS.md, session 8).
        for entry in entries {
            self.shared.log.insert(codec::log_key(entry.log_id.index), codec::encode("log entry", &entry)?)?;
        }
        Ok(())
    }

    fn truncate_now(&self, index: u64) -> Result<(), StoreError> {
        // Last entry first, one removal each (steward never uses a sled batch; see the
        // storage README): a crash keeps a prefix of these removals, so the log loses a
        // suffix of what was to go and never has a hole.
        for key in self.shared.log.range(codec::log_key(index)..).keys().rev() {
            self.shared.log.remove(key?)?;
        }
        Ok(())
    }
}

/// How many purged entries one call of [`remove_chunk_up_to`] removes.
const PURGE_CHUNK: usize = 2048;

/// Removes up to [`PURGE_CHUNK`] of the entries with index `<= index`, lowest first; says
/// whether there may be more. Only entries at or below `last_purged` are removed this way, and
/// nothing reads them again, so a crash part way leaves no hole in the live log.
fn remove_chunk_up_to(log: &sled::Tree, index: u64) -> Result<bool, StoreError> {
    let mut n = 0;
    for key in log.range(..=codec::log_key(index)).keys().take(PURGE_CHUNK) {
        log.remove(key?)?;
        n += 1;
    }
    Ok(n == PURGE_CHUNK)
}

/// A range of log keys, as sled takes it.
type KeyRange = (Bound<[u8; 8]>, Bound<[u8; 8]>);

/// Converts an index range into the matching range of log keys, or `None` when it is empty.
fn key_range<RB: RangeBounds<u64>>(range: &RB) -> Option<KeyRange> {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.checked_add(1)?,
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) if e >= start => Bound::Included(codec::log_key(e)),
        Bound::Excluded(&e) if e > start => Bound::Excluded(codec::log_key(e)),
        Bound::Unbounded => Bound::Unbounded,
        _ => return None,
    };
    Some((Bound::Included(codec::log_key(start)), end))
}

impl<C: KvTypeConfig> RaftLogReader<C> for LogStore<C> {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + std::fmt::Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<C::Entry>, StorageError<u64>> {
        self.read_range(&range).map_err(fatal(StorageIOError::read_logs))
    }

    /// What replication sends in one AppendEntries: openraft bounds it by entry count
    /// (`max_payload_entries`), this also by size. openraft gives an AppendEntries one heartbeat
    /// interval to complete, follower fsync included; 64 entries of a burst of scheduled fires
    /// (tens of kilobytes each) do not fit on a busy machine, time out again and again, and the
    /// leader loses its quorum. Small entries still go 64 at a time.
    async fn limited_get_log_entries(&mut self, start: u64, end: u64) -> Result<Vec<C::Entry>, StorageError<u64>> {
        self.read_limited(start, end, MAX_APPEND_BYTES).map_err(fatal(StorageIOError::read_logs))
    }
}

/// About the most stored log data one AppendEntries carries.
pub const MAX_APPEND_BYTES: usize = 256 * 1024;

impl<C: KvTypeConfig> RaftLogStorage<C> for LogStore<C> {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<C>, StorageError<u64>> {
        self.log_state().map_err(fatal(StorageIOError::read_logs))
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError<u64>> {
        let res = async {
            self.shared.meta.insert(META_VOTE, codec::encode("vote", vote)?)?;
            // A vote that is not on disk may be forgotten by a crash, and then this node
            // could vote twice in one term. Return only once a flush covers it.
            self.shared.writer.flushed().await
        };
        res.await.map_err(fatal(StorageIOError::write_vote))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError<u64>> {
        let res = match self.shared.meta.get(META_VOTE) {
            Ok(Some(v)) => codec::decode("vote", &v).map(Some),
            Ok(None) => Ok(None),
            Err(e) => Err(StoreError::from(e)),
        };
        res.map_err(fatal(StorageIOError::read_vote))
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<C>) -> Result<(), StorageError<u64>>
    where
        I: IntoIterator<Item = C::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        // The entries must be readable when this returns: write them now, on the caller.
        if let Err(e) = self.append_now(entries) {
            let err = fatal(StorageIOError::write_logs)(e);
            callback.log_io_completed(Err(std::io::Error::other(err.to_string())));
            return Err(err);
        }
        // The callback tells openraft the entries are durable (it then counts them towards
        // a quorum), so it runs only after the writer's next flush, which covers them.
        self.shared
            .writer
            .after_flush(move |res| callback.log_io_completed(res.map_err(|e| std::io::Error::other(e.to_string()))))
            .map_err(fatal(StorageIOError::write_logs))
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        let res = async {
            self.truncate_now(log_id.index)?;
            // Not required by openraft (a lost truncate leaves an older, valid log), but
            // cheap, since truncation only happens on a conflict, and it means we never rely
            // on how sled orders recovery of this removal and of the appends that follow.
            self.shared.writer.flushed().await
        };
        res.await.map_err(fatal(|e| StorageIOError::write_log_entry(log_id, e)))
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        let res = async {
            // Never move `last_purged` backwards, whatever the caller asks.
            if matches!(self.last_purged()?, Some(p) if p.index >= log_id.index) {
                return Ok(());
            }
            // Persist `last_purged` before removing entries: after a crash the log then
            // either still holds the entries or says they were purged, never a silent hole
            // at its head. (`open` removes leftovers at or below `last_purged`.)
            self.shared.meta.insert(META_LAST_PURGED, codec::encode("last purged log id", &log_id)?)?;
            self.shared.writer.flushed().await?;
            // The removal need not be flushed now: a later flush covers it, and if it is
            // lost `open` redoes it. Nor need it happen now: nothing reads at or below
            // `last_purged` again. After a snapshot it is some 100 000 entries, and removing
            // them here would hold openraft's core (no AppendEntries sent or answered) for
            // longer than an AppendEntries may take; so the writer thread does it between
            // flushes, a chunk at a time.
            let log = self.shared.log.clone();
            let index = log_id.index;
            self.shared.writer.in_background(move || match remove_chunk_up_to(&log, index) {
                Ok(more) => more,
                Err(e) => {
                    // The entries stay until the next start's `open` removes them.
                    tracing::warn!(error = %e, index, "removing purged log entries failed");
                    false
                }
            });
            Ok(())
        };
        res.await.map_err(fatal(|e| StorageIOError::write_log_entry(log_id, e)))
    }
}
