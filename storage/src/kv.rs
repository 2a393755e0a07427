//! The replicated data model: a versioned key-value map changed only by transactions.
//!
//! This is etcd's model. A [`Txn`] carries guards and two operation lists; the state machine
//! evaluates every guard against the state left by all earlier log entries and then applies
//! `success` (all guards held) or `failure` (any guard failed). Each write takes the Raft log
//! index of its entry as its revision, so revisions increase across the whole cluster and the
//! same log applied anywhere yields the same state. Layers above encode their invariants as
//! guards; a check done before proposing a write is never enough, because another member may
//! write in between.

use serde::{Deserialize, Serialize};

/// A condition on the current state, evaluated when the entry is applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Guard {
    /// The key does not exist.
    Absent(String),
    /// The key exists.
    Exists(String),
    /// The key was last written at revision `rev` (0 means the key does not exist).
    ModRevision { key: String, rev: u64 },
    /// The key exists and its value equals `value` byte for byte.
    ValueEquals { key: String, value: Vec<u8> },
    /// No key starts with `prefix`.
    PrefixEmpty(String),
}

/// A write that a transaction performs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Create or replace a key.
    Put { key: String, value: Vec<u8> },
    /// Remove a key; removing a missing key is not an error.
    Delete { key: String },
    /// Remove every key that starts with `prefix`.
    DeletePrefix { prefix: String },
    /// A nested transaction, evaluated against the state as left by the operations before
    /// it, with its own guards and branches; its result is appended to
    /// [`TxnResult::nested`]. One log entry can so carry many independent guarded changes
    /// (e.g. a scheduler's batch of fires) where one failing guard does not sink the others.
    Txn(Txn),
    /// Allocates the next number `n` of the counter at key `counter` (absent counts as 0;
    /// stored with [`encode_seq`]), puts `value` under [`seq_key`]`(prefix, n)`, and puts
    /// [`encode_seq`]`(n)` under each key of `indexes` (so other records can find `n`). `n` is appended to
    /// [`TxnResult::allocated`]. Numbers come from the state machine, so they are unique and
    /// increase in log order on every member.
    PutSequenced { counter: String, prefix: String, value: Vec<u8>, indexes: Vec<String> },
}

/// The key a [`Op::PutSequenced`] writes: `prefix` then `n` zero-padded to 20 digits, so that
/// keys sort by number.
pub fn seq_key(prefix: &str, n: u64) -> String {
    format!("{prefix}{n:020}")
}

/// Parses the number back out of a [`seq_key`].
pub fn parse_seq_key(prefix: &str, key: &str) -> Option<u64> {
    key.strip_prefix(prefix)?.parse().ok()
}

/// Stored form of a sequence number (counters and indexes): a format version byte, then the
/// number as 8 big-endian bytes.
pub fn encode_seq(n: u64) -> Vec<u8> {
    let mut v = vec![1u8];
    v.extend_from_slice(&n.to_be_bytes());
    v
}

/// Reads a value written by [`encode_seq`].
pub fn decode_seq(value: &[u8]) -> Option<u64> {
    match value {
        [1, rest @ ..] if rest.len() == 8 => Some(u64::from_be_bytes(rest.try_into().ok()?)),
        _ => None,
    }
}

/// A transaction: if every guard holds, apply `success`, otherwise apply `failure`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Txn {
    pub guards: Vec<Guard>,
    pub success: Vec<Op>,
    pub failure: Vec<Op>,
}

impl Txn {
    /// A transaction with no guards that applies `ops`.
    pub fn ops(ops: Vec<Op>) -> Self {
        Txn { guards: Vec::new(), success: ops, failure: Vec::new() }
    }

    /// A transaction that applies `ops` only if every guard holds.
    pub fn guarded(guards: Vec<Guard>, ops: Vec<Op>) -> Self {
        Txn { guards, success: ops, failure: Vec::new() }
    }

    /// One unconditional put.
    pub fn put(key: impl Into<String>, value: Vec<u8>) -> Self {
        Txn::ops(vec![Op::Put { key: key.into(), value }])
    }

    /// True when no operation, in either branch, writes an invalid key (see
    /// [`is_valid_key`]) or deletes a prefix of the reserved keys. The state machine rejects
    /// an invalid transaction as a whole; see [`TxnResult`].
    pub fn is_valid(&self) -> bool {
        self.success.iter().chain(&self.failure).all(|op| match op {
            Op::Put { key, .. } | Op::Delete { key } => is_valid_key(key),
            // The empty prefix means "every user key"; reserved keys are never matched.
            Op::DeletePrefix { prefix } => !prefix.starts_with(RESERVED_PREFIX),
            Op::Txn(t) => t.is_valid(),
            Op::PutSequenced { counter, prefix, indexes, .. } => {
                is_valid_key(counter) && !prefix.starts_with(RESERVED_PREFIX) && indexes.iter().all(|k| is_valid_key(k))
            }
        })
    }

    /// About how many bytes this transaction takes in a log entry: its keys and values, and a
    /// few bytes per guard and operation. For sizing batches, not exact.
    pub fn size_hint(&self) -> usize {
        let guard = |g: &Guard| {
            8 + match g {
                Guard::Absent(k) | Guard::Exists(k) | Guard::PrefixEmpty(k) => k.len(),
                Guard::ModRevision { key, .. } => key.len() + 8,
                Guard::ValueEquals { key, value } => key.len() + value.len(),
            }
        };
        let op = |o: &Op| {
            8 + match o {
                Op::Put { key, value } => key.len() + value.len(),
                Op::Delete { key } => key.len(),
                Op::DeletePrefix { prefix } => prefix.len(),
                Op::Txn(t) => t.size_hint(),
                Op::PutSequenced { counter, prefix, value, indexes } => {
                    counter.len() + prefix.len() + value.len() + indexes.iter().map(|k| k.len() + 8).sum::<usize>()
                }
            }
        };
        self.guards.iter().map(guard).sum::<usize>() + self.success.iter().chain(&self.failure).map(op).sum::<usize>()
    }
}

/// What applying one log entry produced.
///
/// A transaction that is not [valid](Txn::is_valid) is rejected without writing anything and
/// reports `succeeded = false` with an empty `failed_guards`; a valid transaction never
/// produces that combination.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnResult {
    /// True when every guard held and `success` was applied. Entries that carry no
    /// transaction (blank and membership entries) report true.
    pub succeeded: bool,
    /// The revision of this entry (its Raft log index).
    pub revision: u64,
    /// Indexes into `Txn::guards` of the guards that did not hold.
    pub failed_guards: Vec<u32>,
    /// Results of the nested transactions ([`Op::Txn`]) that ran, in order.
    #[serde(default)]
    pub nested: Vec<TxnResult>,
    /// Numbers allocated by [`Op::PutSequenced`] operations that ran, in order.
    #[serde(default)]
    pub allocated: Vec<u64>,
}

impl TxnResult {
    /// The result of an entry that carries no transaction, or of a successful one.
    pub fn ok(revision: u64) -> Self {
        TxnResult { succeeded: true, revision, ..Default::default() }
    }
}

/// A stored value with its versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    /// Revision at which the key was created (since it last did not exist).
    pub create_revision: u64,
    /// Revision of the last write to the key.
    pub mod_revision: u64,
    /// Number of writes since creation, starting at 1.
    pub version: u64,
    pub value: Vec<u8>,
}

/// One applied change to one key, as published on the change feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub revision: u64,
    pub key: String,
    /// The value before the change, if the key existed.
    pub old: Option<KeyValue>,
    /// The value after the change, or `None` for a delete.
    pub new: Option<KeyValue>,
}

/// An item of the change feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// One key changed.
    Change(Change),
    /// The whole state was replaced by a snapshot applied up to `revision`; subscribers must
    /// re-read what they care about.
    Reset { revision: u64 },
}

/// Keys starting with this byte are reserved for the store's own bookkeeping.
pub const RESERVED_PREFIX: char = '\u{0}';

/// True when `key` may be written by a transaction.
pub fn is_valid_key(key: &str) -> bool {
    !key.is_empty() && !key.starts_with(RESERVED_PREFIX)
}
