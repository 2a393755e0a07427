//! steward's storage: the Raft log and the replicated state machine, both on one sled database.
//!
//! # Layout
//! - [`kv`]: the data model — a versioned KV map changed by guarded transactions ([`Txn`]),
//!   with a change feed ([`Event`]). This crate knows nothing of jobs.
//! - [`log_store`]: openraft's `RaftLogStorage` on sled (vote, append, truncate, purge).
//! - [`state_machine`]: openraft's `RaftStateMachine` on sled: applies transactions, builds and
//!   installs snapshots, and publishes the change feed. [`KvReader`] is the read handle the
//!   layers above use.
//! - [`codec`]: versioned encodings and the key layout; every persisted value starts with a
//!   format version byte.
//! - `writer` (private): the one thread that flushes sled and acknowledges durable writes,
//!   batching many appends, votes and apply batches into one `flush()`.
//! - `txn` (private): deterministic evaluation of transactions over one apply batch.
//! - `snapshot` (private): snapshot data and the crash-safe snapshot file.
//!
//! # Durability, in one paragraph
//! Writes are applied to sled by the caller, in call order (openraft calls the storage
//! traits one at a time), so they are readable at once; nothing is *acknowledged* (append
//! callback, `save_vote` return, `apply` return, change feed) until the writer thread's next
//! `flush()` covers it. Truncate, purge, apply and snapshot install each change their trees
//! in one atomic sled batch, so a crash never leaves a hole in the log or data that disagrees
//! with the applied index. Every error reaching openraft is a `StorageError`, which stops the
//! node. The full list is in `README.md` and in `ARCHITECTURE.md` at the root.

pub mod codec;
pub mod kv;
pub mod log_store;
mod snapshot;
pub mod state_machine;
mod txn;
mod writer;

use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;

use openraft::{AnyError, StorageError, StorageIOError};

pub use kv::{Change, Event, Guard, KeyValue, Op, Txn, TxnResult};
pub use log_store::LogStore;
pub use state_machine::{KvReader, StateMachineStore};

/// The openraft type configurations this store works with: the application data is a [`Txn`],
/// its response a [`TxnResult`], node ids are `u64`, and snapshots are byte buffers. The node
/// type (member addresses) is left to the layer above.
pub trait KvTypeConfig:
    openraft::RaftTypeConfig<
    D = Txn,
    R = TxnResult,
    NodeId = u64,
    Entry = openraft::Entry<Self>,
    SnapshotData = Cursor<Vec<u8>>,
>
{
}

impl<C> KvTypeConfig for C where
    C: openraft::RaftTypeConfig<
        D = Txn,
        R = TxnResult,
        NodeId = u64,
        Entry = openraft::Entry<C>,
        SnapshotData = Cursor<Vec<u8>>,
    >
{
}

/// Errors of opening and reading the store. Errors inside openraft's storage traits are
/// reported as `openraft::StorageError`, which stops the Raft node.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("sled error: {0}")]
    Sled(#[from] sled::Error),
    #[error("corrupt or unreadable stored value at {what}: {detail}")]
    Corrupt { what: String, detail: String },
    #[error("stored value at {what} has format version {found}, this build reads up to {supported}")]
    UnsupportedVersion { what: String, found: u8, supported: u8 },
    #[error("the storage writer has stopped")]
    WriterStopped,
}

impl StoreError {
    /// True when the store is locked by another open instance: another process, or, within one
    /// process, background tasks of an instance that is still shutting down.
    pub fn is_locked(&self) -> bool {
        match self {
            // sled reports a held file lock as an I/O error whose text says so.
            StoreError::Sled(sled::Error::Io(e)) | StoreError::Io(e) => {
                e.kind() == std::io::ErrorKind::WouldBlock || e.to_string().contains("could not acquire lock")
            }
            _ => false,
        }
    }
}

/// Tunables of the store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// sled's page cache size in bytes.
    pub cache_capacity: u64,
    /// Capacity of the change-feed broadcast channel; a subscriber that lags further behind
    /// receives `RecvError::Lagged` and must re-read.
    pub feed_capacity: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions { cache_capacity: 128 * 1024 * 1024, feed_capacity: 4096 }
    }
}

/// Opens (or creates) the store in `dir` and returns its two halves for `openraft::Raft::new`.
/// Keep a [`KvReader`] (from [`StateMachineStore::reader`]) before handing them over.
///
/// `dir` holds `sled/` (the database: trees `log`, `meta`, `sm`) and `snapshots/` (the current
/// snapshot file). Opening also finishes what a crash may have interrupted: a purge whose
/// deletions were lost, and a snapshot install whose file was saved but whose state was not.
///
/// Only one process may have the store open (sled locks its files); the files are released
/// when every handle (both halves, their clones and every [`KvReader`]) has been dropped.
pub fn open<C: KvTypeConfig>(
    dir: &Path,
    options: StoreOptions,
) -> Result<(LogStore<C>, StateMachineStore<C>), StoreError> {
    std::fs::create_dir_all(dir)?;
    // sled's default mode (LowSpace) and its 500 ms background flush are kept; durability
    // never relies on the background flush, only on the writer thread's explicit flushes.
    let db = sled::Config::new().path(dir.join("sled")).cache_capacity(options.cache_capacity).open()?;
    let log = db.open_tree(codec::LOG_TREE)?;
    let meta = db.open_tree(codec::META_TREE)?;
    let sm = db.open_tree(codec::SM_TREE)?;
    check_store_format(&db, &log, &meta, &sm)?;

    let writer = writer::Writer::start(db.clone(), &dir.join("sled"))?;
    let shared = Arc::new(Shared { _db: db, log, meta, writer });
    let log_store = LogStore::open(shared.clone())?;
    let sm_store = StateMachineStore::open(shared.clone(), sm, &dir.join("snapshots"), &options)?;
    // Make the repairs done while opening durable before anyone builds on them.
    shared.writer.flushed_blocking()?;
    Ok((log_store, sm_store))
}

/// What both halves of the store share: the database, the log-side trees and the writer.
pub(crate) struct Shared {
    /// Held so the database lives exactly as long as the store (the trees borrow from it).
    pub(crate) _db: sled::Db,
    pub(crate) log: sled::Tree,
    pub(crate) meta: sled::Tree,
    pub(crate) writer: writer::Writer,
}

/// Writes the store format version into a new store, or checks it in an existing one.
fn check_store_format(db: &sled::Db, log: &sled::Tree, meta: &sled::Tree, sm: &sled::Tree) -> Result<(), StoreError> {
    const WHAT: &str = "store format marker";
    match meta.get(codec::META_FORMAT)? {
        Some(v) => match v.as_ref() {
            [version] => codec::check_version(WHAT, *version, codec::STORE_FORMAT_VERSION),
            other => Err(StoreError::Corrupt {
                what: WHAT.to_string(),
                detail: format!("expected 1 byte, found {}", other.len()),
            }),
        },
        None if log.is_empty() && meta.is_empty() && sm.is_empty() => {
            meta.insert(codec::META_FORMAT, &[codec::STORE_FORMAT_VERSION])?;
            db.flush()?;
            Ok(())
        }
        None => Err(StoreError::Corrupt {
            what: WHAT.to_string(),
            detail: "the database holds data but no format marker; it was not written by \
                     this crate"
                .to_string(),
        }),
    }
}

/// Turns a [`StoreError`] into the `StorageError` openraft expects, which stops the node.
/// `make` chooses what the error is about (e.g. `StorageIOError::write_logs`).
pub(crate) fn fatal(
    make: impl FnOnce(AnyError) -> StorageIOError<u64>,
) -> impl FnOnce(StoreError) -> StorageError<u64> {
    move |e| {
        tracing::error!(error = %e, "storage error; the Raft node will stop");
        StorageError::from(make(AnyError::new(&e)))
    }
}
