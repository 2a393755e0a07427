//! Re-sealing every stored secret under a new master key.
//!
//! Every record that holds a secret is a JSON object with a base64 `sealed` field and lives
//! under one of [`SEALED_PREFIXES`]; a rekey rewrites that field and nothing else.
//!
//! # Rotating the master key of a running cluster
//! 1. `steward keys new-master-key --out new.key`, and copy the file to every member.
//! 2. On every member, make it the primary and keep the old one for reading:
//!    `master-key-file = "new.key"`, `previous-master-key-files = ["old.key"]`; restart the
//!    members one at a time. Each publishes the keys it holds (`keyring/members/{uuid}`).
//! 3. `steward keys rekey --new-master-key-file new.key`: the member asked checks that **every**
//!    member seals under the new key (otherwise a member still sealing under the old key would
//!    write values the old key is needed for), names it the active key, and re-seals each value
//!    in a transaction guarded on the revision it read (a concurrent write is never overwritten;
//!    that value is read again). The key itself never crosses the network: the command sends its
//!    id only.
//! 4. Drop `previous-master-key-files` and restart the members one at a time.

use steward_raft::{ClusterError, Consistency};
use steward_storage::{Guard, Op, Txn};

use super::{open_field, seal_field, ActiveKey, KeyError, KeyId, KeyStore, Keyring, MemberKeys, ACTIVE_KEY};
use crate::codec;

/// Store prefixes (or exact keys) of the records that hold a `sealed` field.
pub const SEALED_PREFIXES: &[&str] = &[super::KEYS_PREFIX, crate::auth::session::SESSION_KEY];

/// Values re-sealed per Raft entry.
const BATCH: usize = 64;
/// Passes over the store before giving up on values that keep changing underneath.
const MAX_PASSES: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum RekeyError {
    #[error(
        "this member seals under master key {primary}, not {asked}: make the new key master-key-file on every \
         member (keeping the old one in previous-master-key-files) and restart them first"
    )]
    NotPrimary { asked: KeyId, primary: KeyId },
    #[error("these members do not seal under master key {key}: {members:?}; configure and restart them first")]
    MembersLack { key: KeyId, members: Vec<String> },
    #[error("values kept changing during the rekey; run it again")]
    Unfinished,
    #[error(transparent)]
    Key(#[from] KeyError),
}

impl From<ClusterError> for RekeyError {
    fn from(e: ClusterError) -> Self {
        RekeyError::Key(KeyError::Cluster(e))
    }
}

impl From<codec::DecodeError> for RekeyError {
    fn from(e: codec::DecodeError) -> Self {
        RekeyError::Key(KeyError::Decode(e))
    }
}

/// What a rekey did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RekeyReport {
    pub key_id: KeyId,
    /// Values re-sealed by this run.
    pub resealed: u64,
    /// Values already sealed under the key.
    pub unchanged: u64,
}

/// Re-seals every stored secret under `key_id`, which must be this member's primary key and the
/// primary key of every member of the cluster.
pub async fn rekey(store: &KeyStore, key_id: KeyId) -> Result<RekeyReport, RekeyError> {
    let keyring = store.keyring();
    if keyring.primary_id() != key_id {
        return Err(RekeyError::NotPrimary { asked: key_id, primary: keyring.primary_id() });
    }
    let member = store.member();
    let nodes: Vec<String> = {
        let m = member.raft().metrics().borrow().clone();
        m.membership_config.membership().nodes().map(|(_, n)| n.uuid.clone()).collect()
    };
    let mut lacking = Vec::new();
    for uuid in nodes {
        let key = format!("{}{uuid}", super::MEMBER_KEYS_PREFIX);
        let ok = match member.get(&key, Consistency::Linearizable).await? {
            Some(kv) => codec::decode::<MemberKeys>(&kv.value)?.primary == key_id.to_string(),
            None => false,
        };
        if !ok {
            lacking.push(uuid);
        }
    }
    if !lacking.is_empty() {
        return Err(RekeyError::MembersLack { key: key_id, members: lacking });
    }
    // From here on, a member that joins must hold the new key (the join check reads this).
    let active = codec::encode(&ActiveKey { key_id: key_id.to_string() });
    member.write(Txn::put(ACTIVE_KEY, active)).await?;

    let mut report = RekeyReport { key_id, resealed: 0, unchanged: 0 };
    let mut counted_unchanged = false;
    for _ in 0..MAX_PASSES {
        let mut pending = Vec::new();
        for prefix in SEALED_PREFIXES {
            for (key, kv) in member.range(prefix, Consistency::Linearizable).await? {
                let mut record: serde_json::Value = codec::decode(&kv.value)?;
                let Some(sealed) = record.get("sealed").and_then(|s| s.as_str()).map(str::to_string) else {
                    continue;
                };
                let raw = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &sealed)
                    .map_err(|e| KeyError::Corrupt(key.clone(), e.to_string()))?;
                if Keyring::sealed_key_id(&raw).map_err(KeyError::from)? == key_id {
                    if !counted_unchanged {
                        report.unchanged += 1;
                    }
                    continue;
                }
                let plain = open_field(keyring, &key, &sealed)?;
                record["sealed"] = serde_json::Value::String(seal_field(keyring, &key, &plain));
                pending.push(Op::Txn(Txn::guarded(
                    vec![Guard::ModRevision { key: key.clone(), rev: kv.mod_revision }],
                    vec![Op::Put { key, value: codec::encode(&record) }],
                )));
            }
        }
        counted_unchanged = true;
        if pending.is_empty() {
            return Ok(report);
        }
        while !pending.is_empty() {
            let batch: Vec<Op> = pending.drain(..pending.len().min(BATCH)).collect();
            let res = member.write(Txn::ops(batch)).await?;
            report.resealed += res.nested.iter().filter(|r| r.succeeded).count() as u64;
        }
    }
    Err(RekeyError::Unfinished)
}
