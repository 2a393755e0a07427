//! Snapshots: the serialised state machine, and the file that keeps the current one.
//!
//! The snapshot *data* (what openraft ships to a follower) is the version byte followed by
//! a [`SnapshotPayload`]: last applied log id, membership and every user key with its
//! revisions. The snapshot *file* `snapshots/snapshot.bin` keeps the current snapshot:
//!
//! ```text
//! [file version: u8 = 1][meta length: u64 big-endian][encoded SnapshotMeta][snapshot data]
//! ```
//!
//! It is written to `snapshot.bin.tmp`, fsynced, renamed over the old file and the directory
//! is fsynced, so after a crash the file is either the old or the new snapshot, whole; only
//! the newest is kept. A leftover `.tmp` is removed on open.

use std::fs::{self, File};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use openraft::{LogId, Node, SnapshotMeta, StoredMembership};
use serde::{Deserialize, Serialize};

use crate::codec;
use crate::kv::KeyValue;
use crate::StoreError;

const FILE_NAME: &str = "snapshot.bin";
const TMP_NAME: &str = "snapshot.bin.tmp";
const FILE_VERSION: u8 = 1;

/// The content of a snapshot: the whole state machine at `last_applied`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(bound = "")]
pub(crate) struct SnapshotPayload<N: Node> {
    pub(crate) last_applied: Option<LogId<u64>>,
    pub(crate) membership: StoredMembership<u64, N>,
    /// Every user key, in key order.
    pub(crate) entries: Vec<(String, KeyValue)>,
}

/// A snapshot as kept in the file: its meta and its data.
pub(crate) type StoredSnapshot<N> = (SnapshotMeta<u64, N>, Vec<u8>);

/// Whether a save may replace a snapshot that covers more of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SaveMode {
    /// For snapshots we build: a build that finished late must not replace a newer snapshot
    /// (an install, or another build) that was saved meanwhile.
    IfNotOlder,
    /// For installs: the leader's snapshot replaces whatever we have.
    Always,
}

/// The snapshot directory and what the current snapshot file holds.
pub(crate) struct SnapshotFiles<N: Node> {
    dir: PathBuf,
    /// Meta of the snapshot in the file. The mutex also serialises every write and read of
    /// the file, so that `current` and the file always agree.
    current: Mutex<Option<SnapshotMeta<u64, N>>>,
    /// Makes snapshot ids unique; seeded from the clock so they stay unique across restarts.
    counter: AtomicU64,
}

impl<N: Node> SnapshotFiles<N> {
    /// Opens `dir` (creating it), removes an interrupted write and reads the current meta.
    pub(crate) fn open(dir: &Path) -> Result<Self, StoreError> {
        fs::create_dir_all(dir)?;
        match fs::remove_file(dir.join(TMP_NAME)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        let current = match File::open(dir.join(FILE_NAME)) {
            Ok(mut f) => Some(read_meta(&mut f)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e.into()),
        };
        let seed =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        Ok(SnapshotFiles { dir: dir.to_path_buf(), current: Mutex::new(current), counter: AtomicU64::new(seed) })
    }

    /// The meta of the current snapshot, if any.
    pub(crate) fn current_meta(&self) -> Option<SnapshotMeta<u64, N>> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// A new snapshot id: `{last_log_index}-{term}-{counter}`.
    pub(crate) fn next_id(&self, last: Option<&LogId<u64>>) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        match last {
            Some(id) => format!("{}-{}-{n}", id.index, id.leader_id.term),
            None => format!("0-0-{n}"),
        }
    }

    /// Makes `meta` + `data` the current snapshot, durably. Returns false when `mode` is
    /// [`SaveMode::IfNotOlder`] and the current snapshot covers more of the log.
    pub(crate) fn save(&self, meta: &SnapshotMeta<u64, N>, data: &[u8], mode: SaveMode) -> Result<bool, StoreError> {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if mode == SaveMode::IfNotOlder {
            if let Some(cur) = current.as_ref() {
                if index_of(&cur.last_log_id) > index_of(&meta.last_log_id) {
                    return Ok(false);
                }
            }
        }
        let meta_bytes = codec::encode("snapshot meta", meta)?;
        let tmp = self.dir.join(TMP_NAME);
        {
            let mut f = File::create(&tmp)?;
            f.write_all(&[FILE_VERSION])?;
            f.write_all(&(meta_bytes.len() as u64).to_be_bytes())?;
            f.write_all(&meta_bytes)?;
            write_paced(&f, data)?;
            f.sync_all()?;
        }
        // rename is atomic; fsyncing the directory makes the rename itself durable.
        fs::rename(&tmp, self.dir.join(FILE_NAME))?;
        File::open(&self.dir)?.sync_all()?;
        *current = Some(meta.clone());
        Ok(true)
    }

    /// The current snapshot's meta and data.
    pub(crate) fn load(&self) -> Result<Option<StoredSnapshot<N>>, StoreError> {
        let current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if current.is_none() {
            return Ok(None);
        }
        let mut f = File::open(self.dir.join(FILE_NAME))?;
        let meta = read_meta(&mut f)?;
        let mut data = Vec::new();
        f.read_to_end(&mut data)?;
        Ok(Some((meta, data)))
    }
}

/// How much snapshot data is written before its write-back is started and waited for.
const PACE_BYTES: usize = 4 << 20;

/// Writes `data` at the end of `f`, pushing each 4 MiB to the disk before writing the next.
///
/// A snapshot is tens of megabytes, written by every member at the same log index. Left to
/// the final `fsync`, all of it is dirty at once, and on ext4 the log's next `fdatasync` can
/// wait behind it (a journal commit writes such data out first). Written back a piece at a
/// time, the final `fsync` has little left to do. (What cost the leader its quorum at a
/// snapshot was the purge after it; see `LogStore::purge`.)
fn write_paced(mut f: &File, data: &[u8]) -> std::io::Result<()> {
    use std::os::unix::io::AsRawFd;
    let mut offset = f.stream_position()?;
    for chunk in data.chunks(PACE_BYTES) {
        f.write_all(chunk)?;
        // SAFETY: a plain syscall on a file descriptor we own, with no pointers.
        #[allow(unsafe_code)]
        let ret = unsafe {
            libc::sync_file_range(
                f.as_raw_fd(),
                offset as libc::off64_t,
                chunk.len() as libc::off64_t,
                libc::SYNC_FILE_RANGE_WAIT_BEFORE | libc::SYNC_FILE_RANGE_WRITE | libc::SYNC_FILE_RANGE_WAIT_AFTER,
            )
        };
        if ret != 0 {
            let err = std::io::Error::last_os_error();
            // Not every filesystem has it; the final fsync covers the data either way.
            if err.raw_os_error() != Some(libc::ENOSYS) && err.raw_os_error() != Some(libc::EINVAL) {
                return Err(err);
            }
        }
        offset += chunk.len() as u64;
    }
    Ok(())
}

/// The index a snapshot covers up to; `None` (nothing applied) sorts first.
pub(crate) fn index_of(id: &Option<LogId<u64>>) -> Option<u64> {
    id.as_ref().map(|id| id.index)
}

fn read_meta<N: Node>(f: &mut File) -> Result<SnapshotMeta<u64, N>, StoreError> {
    const WHAT: &str = "snapshot file";
    let corrupt = |detail: String| StoreError::Corrupt { what: WHAT.to_string(), detail };
    let mut header = [0u8; 9];
    f.read_exact(&mut header).map_err(|e| corrupt(format!("cannot read header: {e}")))?;
    codec::check_version(WHAT, header[0], FILE_VERSION)?;
    let mut len = [0u8; 8];
    len.copy_from_slice(&header[1..]);
    let len = u64::from_be_bytes(len);
    let file_len = f.metadata()?.len();
    if len > file_len.saturating_sub(9) {
        return Err(corrupt(format!("meta length {len} exceeds the file ({file_len} bytes)")));
    }
    let mut meta = vec![0u8; len as usize];
    f.read_exact(&mut meta).map_err(|e| corrupt(format!("cannot read meta: {e}")))?;
    codec::decode("snapshot meta", &meta)
}
