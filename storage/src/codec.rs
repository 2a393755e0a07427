//! Versioned encodings of everything this crate persists.
//!
//! Every value written to sled or to a snapshot file starts with one format version byte,
//! followed by the `bincode` 2 encoding (standard configuration) of the value. A build reads
//! only the versions it knows; a newer version is reported as
//! [`StoreError::UnsupportedVersion`] instead of being misread, and bytes that do not decode
//! are reported as [`StoreError::Corrupt`]. When a format changes, bump the version for that
//! value and keep decoding the old one.
//!
//! This module also owns the key layout of the three sled trees, so that the byte-level
//! format of the store is described in one place.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::StoreError;

/// The format version written in front of every persisted value.
pub const FORMAT_VERSION: u8 = 1;

/// The on-disk layout version of the whole store (tree names, key layout, file layout).
/// Written once when the store is created and checked on every open.
pub const STORE_FORMAT_VERSION: u8 = 1;

/// Name of the tree holding the Raft log: key = index (u64 big-endian), value = entry.
pub(crate) const LOG_TREE: &str = "log";
/// Name of the tree holding the log store's metadata (vote, last purged id, format).
pub(crate) const META_TREE: &str = "meta";
/// Name of the tree holding the state machine: user keys plus reserved `\0` keys.
pub(crate) const SM_TREE: &str = "sm";

/// `meta` key: the store format version (value = one byte).
pub(crate) const META_FORMAT: &[u8] = b"format";
/// `meta` key: the last saved vote.
pub(crate) const META_VOTE: &[u8] = b"vote";
/// `meta` key: the id of the last purged log entry.
pub(crate) const META_LAST_PURGED: &[u8] = b"last_purged";

/// `sm` key: the log id of the last applied entry. Reserved keys start with `\0`, which no
/// valid user key does (see [`crate::kv::is_valid_key`]), so they live in one tree and one
/// apply batch updates data and bookkeeping atomically.
pub(crate) const SM_LAST_APPLIED: &[u8] = b"\0last_applied";
/// `sm` key: the last applied membership.
pub(crate) const SM_MEMBERSHIP: &[u8] = b"\0membership";
/// `sm` key: the redo record of the latest apply batch, its writes and the index of its last
/// entry (see `state_machine::write_apply`).
pub(crate) const SM_REDO: &[u8] = b"\0redo";

/// The sled key of the log entry at `index`. Big-endian so that byte order is index order.
pub(crate) fn log_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

/// The index stored in a log key.
pub(crate) fn log_index(key: &[u8]) -> Result<u64, StoreError> {
    let bytes: [u8; 8] = key.try_into().map_err(|_| StoreError::Corrupt {
        what: "log key".to_string(),
        detail: format!("expected 8 bytes, found {}", key.len()),
    })?;
    Ok(u64::from_be_bytes(bytes))
}

/// Encodes `value` as the version byte followed by its bincode encoding.
pub fn encode<T: Serialize + ?Sized>(what: &str, value: &T) -> Result<Vec<u8>, StoreError> {
    let mut out = vec![FORMAT_VERSION];
    let body = bincode::serde::encode_to_vec(value, bincode::config::standard())
        .map_err(|e| StoreError::Corrupt { what: what.to_string(), detail: format!("cannot encode: {e}") })?;
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decodes a value written by [`encode`]. `what` names the value in errors.
pub fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, StoreError> {
    let (&version, body) = bytes
        .split_first()
        .ok_or_else(|| StoreError::Corrupt { what: what.to_string(), detail: "empty value".to_string() })?;
    check_version(what, version, FORMAT_VERSION)?;
    let (value, used) = bincode::serde::decode_from_slice::<T, _>(body, bincode::config::standard())
        .map_err(|e| StoreError::Corrupt { what: what.to_string(), detail: e.to_string() })?;
    if used != body.len() {
        return Err(StoreError::Corrupt {
            what: what.to_string(),
            detail: format!("{} trailing bytes after the value", body.len() - used),
        });
    }
    Ok(value)
}

/// Accepts exactly the versions this build writes; anything else is unsupported.
pub(crate) fn check_version(what: &str, found: u8, supported: u8) -> Result<(), StoreError> {
    if found == supported {
        Ok(())
    } else {
        Err(StoreError::UnsupportedVersion { what: what.to_string(), found, supported })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KeyValue;

    fn kv() -> KeyValue {
        KeyValue { create_revision: 3, mod_revision: 7, version: 2, value: b"hello".to_vec() }
    }

    #[test]
    fn round_trip_starts_with_version() {
        let bytes = encode("kv", &kv()).unwrap();
        assert_eq!(bytes[0], FORMAT_VERSION);
        assert_eq!(decode::<KeyValue>("kv", &bytes).unwrap(), kv());
    }

    #[test]
    fn unknown_version_is_unsupported() {
        let mut bytes = encode("kv", &kv()).unwrap();
        bytes[0] = FORMAT_VERSION + 1;
        match decode::<KeyValue>("kv", &bytes) {
            Err(StoreError::UnsupportedVersion { found, supported, .. }) => {
                assert_eq!(found, FORMAT_VERSION + 1);
                assert_eq!(supported, FORMAT_VERSION);
            }
            other => panic!("expected UnsupportedVersion, got {other:?}"),
        }
    }

    #[test]
    fn garbage_is_corrupt() {
        for bytes in [&[][..], &[FORMAT_VERSION][..], &[FORMAT_VERSION, 0xff, 0xff, 0xff][..]] {
            assert!(matches!(decode::<KeyValue>("kv", bytes), Err(StoreError::Corrupt { .. })), "{bytes:?}");
        }
        // A valid value followed by junk is corrupt too, not silently accepted.
        let mut bytes = encode("kv", &kv()).unwrap();
        bytes.push(0);
        assert!(matches!(decode::<KeyValue>("kv", &bytes), Err(StoreError::Corrupt { .. })));
    }

    #[test]
    fn log_keys_sort_by_index() {
        assert!(log_key(255) < log_key(256));
        assert_eq!(log_index(&log_key(42)).unwrap(), 42);
        assert!(matches!(log_index(b"abc"), Err(StoreError::Corrupt { .. })));
    }
}
