//! Shared test fixtures: the test type config, store opening and entry builders.

use std::collections::BTreeSet;
use std::io::Cursor;
use std::path::Path;
use std::time::{Duration, Instant};

use openraft::{BasicNode, CommittedLeaderId, Entry, EntryPayload, LogId, Membership};
use steward_storage::{open, LogStore, StateMachineStore, StoreError, StoreOptions, Txn, TxnResult};

openraft::declare_raft_types!(
    pub TestConfig:
        D = Txn,
        R = TxnResult,
        NodeId = u64,
        Node = BasicNode,
        Entry = openraft::Entry<TestConfig>,
        SnapshotData = Cursor<Vec<u8>>,
);

pub type Log = LogStore<TestConfig>;
pub type Sm = StateMachineStore<TestConfig>;

pub fn options() -> StoreOptions {
    StoreOptions { cache_capacity: 8 * 1024 * 1024, feed_capacity: 1024 }
}

/// Opens the store in `dir`.
///
/// sled 0.34 finishes some file writes on its own thread pool, which may hold the database
/// file (and its lock) for a moment after the last handle of a previous open was dropped.
/// Reopening in the same process therefore retries while, and only while, the error is that
/// lock, for a bounded time.
pub fn open_store(dir: &Path) -> Result<(Log, Sm), StoreError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match open::<TestConfig>(dir, options()) {
            Err(e) if e.to_string().contains("could not acquire lock") && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            res => return res,
        }
    }
}

pub fn log_id(term: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, 0), index)
}

pub fn entry(index: u64, payload: EntryPayload<TestConfig>) -> Entry<TestConfig> {
    Entry { log_id: log_id(1, index), payload }
}

pub fn txn_entry(index: u64, txn: Txn) -> Entry<TestConfig> {
    entry(index, EntryPayload::Normal(txn))
}

pub fn blank(index: u64) -> Entry<TestConfig> {
    entry(index, EntryPayload::Blank)
}

pub fn membership_entry(index: u64, voters: &[u64]) -> Entry<TestConfig> {
    let set: BTreeSet<u64> = voters.iter().copied().collect();
    entry(index, EntryPayload::Membership(Membership::new(vec![set], None)))
}
