//! Transaction evaluation: the deterministic heart of the state machine.
//!
//! One apply batch (several log entries) is evaluated against an [`Overlay`]: the state left
//! by earlier batches (the `sm` tree) plus, in memory, every write made by earlier entries of
//! this batch. Guards therefore see exactly the state that applying the entries one by one
//! would produce, yet the whole batch reaches sled as one redo record and its writes (see
//! `state_machine::write_apply`).
//!
//! Nothing here touches the clock, randomness or the environment: the same log applied on
//! any member yields the same state and the same results.

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::codec;
use crate::kv::{
    decode_seq, encode_seq, is_valid_key, seq_key, Change, Guard, KeyValue, Op, Txn, TxnResult, RESERVED_PREFIX,
};
use crate::StoreError;

/// The state as seen by the entries of one apply batch.
pub(crate) struct Overlay<'a> {
    base: &'a sled::Tree,
    /// Keys written by earlier entries of this batch: `Some` = current value, `None` = deleted.
    writes: BTreeMap<String, Option<KeyValue>>,
}

impl<'a> Overlay<'a> {
    pub(crate) fn new(base: &'a sled::Tree) -> Self {
        Overlay { base, writes: BTreeMap::new() }
    }

    /// The writes to persist, in key order.
    pub(crate) fn into_writes(self) -> BTreeMap<String, Option<KeyValue>> {
        self.writes
    }

    /// The current value of a user key. Reserved keys read as absent: they are not part of
    /// the user-visible state.
    fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        if !is_valid_key(key) {
            return Ok(None);
        }
        if let Some(v) = self.writes.get(key) {
            return Ok(v.clone());
        }
        read_value(self.base, key)
    }

    /// Every live user key starting with `prefix`, in key order, with its value.
    fn with_prefix(&self, prefix: &str) -> Result<BTreeMap<String, KeyValue>, StoreError> {
        let mut out = BTreeMap::new();
        for item in self.base.scan_prefix(prefix.as_bytes()) {
            let (k, v) = item?;
            let key = user_key(&k)?;
            let Some(key) = key else { continue };
            if self.writes.contains_key(&key) {
                continue; // The overlay decides below.
            }
            out.insert(key, codec::decode("value", &v)?);
        }
        let overlaid = self
            .writes
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix));
        for (k, v) in overlaid {
            if let Some(v) = v {
                out.insert(k.clone(), v.clone());
            }
        }
        Ok(out)
    }

    /// True when no live user key starts with `prefix`.
    fn prefix_empty(&self, prefix: &str) -> Result<bool, StoreError> {
        let overlaid = self
            .writes
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix));
        for (_, v) in overlaid {
            if v.is_some() {
                return Ok(false);
            }
        }
        for item in self.base.scan_prefix(prefix.as_bytes()) {
            let (k, _) = item?;
            match user_key(&k)? {
                // Deleted earlier in this batch (or rewritten, seen above): keep looking.
                Some(key) if self.writes.contains_key(&key) => continue,
                Some(_) => return Ok(false),
                None => continue,
            }
        }
        Ok(true)
    }

    fn holds(&self, guard: &Guard) -> Result<bool, StoreError> {
        Ok(match guard {
            Guard::Absent(key) => self.get(key)?.is_none(),
            Guard::Exists(key) => self.get(key)?.is_some(),
            Guard::ModRevision { key, rev } => self.get(key)?.map_or(0, |kv| kv.mod_revision) == *rev,
            Guard::ValueEquals { key, value } => self.get(key)?.is_some_and(|kv| kv.value == *value),
            Guard::PrefixEmpty(prefix) => self.prefix_empty(prefix)?,
        })
    }

    fn put(&mut self, revision: u64, key: &str, value: &[u8], changes: &mut Vec<Change>) -> Result<(), StoreError> {
        let old = self.get(key)?;
        // etcd semantics: create_revision and version survive updates; a key that did not
        // exist (never, or deleted since) starts again at version 1.
        let new = KeyValue {
            create_revision: old.as_ref().map_or(revision, |o| o.create_revision),
            mod_revision: revision,
            version: old.as_ref().map_or(1, |o| o.version + 1),
            value: value.to_vec(),
        };
        self.writes.insert(key.to_string(), Some(new.clone()));
        changes.push(Change { revision, key: key.to_string(), old, new: Some(new) });
        Ok(())
    }

    fn delete(&mut self, revision: u64, key: &str, changes: &mut Vec<Change>) -> Result<(), StoreError> {
        if let Some(old) = self.get(key)? {
            self.writes.insert(key.to_string(), None);
            changes.push(Change { revision, key: key.to_string(), old: Some(old), new: None });
        }
        Ok(())
    }

    /// Applies `txn` as the entry at log index `revision`, appending one [`Change`] per key
    /// actually changed (deleting a missing key changes nothing).
    ///
    /// A transaction that would write an invalid key (empty, or starting with the reserved
    /// `\0`; see [`Txn::is_valid`]) in either branch is rejected as a whole: nothing is
    /// written and the result is `succeeded = false` with no failed guards, a combination no
    /// valid transaction produces. Rejecting it here, deterministically on every member,
    /// keeps a buggy proposer from touching the store's bookkeeping keys.
    pub(crate) fn apply_txn(
        &mut self,
        revision: u64,
        txn: &Txn,
        changes: &mut Vec<Change>,
    ) -> Result<TxnResult, StoreError> {
        if !txn.is_valid() {
            tracing::warn!(revision, "rejecting a transaction that writes an invalid key");
            return Ok(TxnResult { succeeded: false, revision, ..Default::default() });
        }
        let mut failed_guards = Vec::new();
        for (i, guard) in txn.guards.iter().enumerate() {
            if !self.holds(guard)? {
                failed_guards.push(u32::try_from(i).unwrap_or(u32::MAX));
            }
        }
        let succeeded = failed_guards.is_empty();
        let ops = if succeeded { &txn.success } else { &txn.failure };
        let mut result = TxnResult { succeeded, revision, failed_guards, ..Default::default() };
        for op in ops {
            match op {
                Op::Put { key, value } => self.put(revision, key, value, changes)?,
                Op::Delete { key } => self.delete(revision, key, changes)?,
                Op::DeletePrefix { prefix } => {
                    for key in self.with_prefix(prefix)?.into_keys() {
                        self.delete(revision, &key, changes)?;
                    }
                }
                Op::Txn(nested) => {
                    // Already validated as part of the outer transaction.
                    let r = self.apply_txn(revision, nested, changes)?;
                    result.nested.push(r);
                }
                Op::PutSequenced { counter, prefix, value, indexes } => {
                    let n = self.next_seq(revision, counter, changes)?;
                    self.put(revision, &seq_key(prefix, n), value, changes)?;
                    for index in indexes {
                        self.put(revision, index, &encode_seq(n), changes)?;
                    }
                    result.allocated.push(n);
                }
            }
        }
        Ok(result)
    }

    /// Increments the counter at `counter` and returns its new value. A counter whose value is
    /// unreadable is a corrupt store, not something to paper over.
    fn next_seq(&mut self, revision: u64, counter: &str, changes: &mut Vec<Change>) -> Result<u64, StoreError> {
        let current = match self.get(counter)? {
            None => 0,
            Some(kv) => decode_seq(&kv.value).ok_or_else(|| StoreError::Corrupt {
                what: format!("sequence counter {counter}"),
                detail: "not a sequence number".into(),
            })?,
        };
        let n = current + 1;
        self.put(revision, counter, &encode_seq(n), changes)?;
        Ok(n)
    }
}

/// Reads a user key straight from the `sm` tree.
pub(crate) fn read_value(tree: &sled::Tree, key: &str) -> Result<Option<KeyValue>, StoreError> {
    match tree.get(key.as_bytes())? {
        Some(v) => Ok(Some(codec::decode("value", &v)?)),
        None => Ok(None),
    }
}

/// The user key stored under `raw`, or `None` for a reserved key.
pub(crate) fn user_key(raw: &[u8]) -> Result<Option<String>, StoreError> {
    if raw.first() == Some(&(RESERVED_PREFIX as u8)) {
        return Ok(None);
    }
    match std::str::from_utf8(raw) {
        Ok(s) => Ok(Some(s.to_string())),
        Err(e) => Err(StoreError::Corrupt { what: format!("state machine key {raw:?}"), detail: e.to_string() }),
    }
}
