//! A member's execution mode (Rundeck's `active` / `passive`), kept in the replicated state so
//! that it survives restarts and the leader judges by it without waiting for a heartbeat.
//!
//! ```text
//! mode/{member uuid}    ModeRecord; absent means active
//! ```
//!
//! A passive member owns no schedules and starts no execution: the leader moves its jobs at
//! once (without `autotakeover.delay`) and gives the executions assigned to it, not yet started,
//! to another member. Executions it was already running finish there.

use serde::{Deserialize, Serialize};
use steward_raft::{ClusterError, Consistency, Member};
use steward_storage::{Op, Txn};

use crate::codec;

pub const MODES: &str = "mode/";

pub fn mode_key(uuid: &str) -> String {
    format!("{MODES}{uuid}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutionMode {
    #[default]
    Active,
    Passive,
}

impl ExecutionMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionMode::Active => "active",
            ExecutionMode::Passive => "passive",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModeRecord {
    pub mode: ExecutionMode,
    /// Who changed it, and when (ms since the epoch).
    pub user: String,
    pub changed_ms: i64,
}

fn decode(value: &[u8]) -> ExecutionMode {
    // An unreadable record must not make a member run what it was told not to: passive.
    codec::decode::<ModeRecord>(value).map(|r| r.mode).unwrap_or(ExecutionMode::Passive)
}

/// The mode of member `uuid` in this member's applied state.
pub fn local(member: &Member, uuid: &str) -> ExecutionMode {
    match member.kv().get(&mode_key(uuid)) {
        Ok(Some(kv)) => decode(&kv.value),
        Ok(None) => ExecutionMode::Active,
        Err(_) => ExecutionMode::Passive,
    }
}

/// Every member's recorded mode (members without a record are active).
pub fn all_local(member: &Member) -> std::collections::HashMap<String, ExecutionMode> {
    let rows = member.kv().range(MODES).unwrap_or_default();
    rows.into_iter().filter_map(|(k, kv)| Some((k.strip_prefix(MODES)?.to_string(), decode(&kv.value)))).collect()
}

/// The mode of member `uuid`, read linearizably.
pub async fn get(member: &Member, uuid: &str) -> Result<ExecutionMode, ClusterError> {
    Ok(match member.get(&mode_key(uuid), Consistency::Linearizable).await? {
        Some(kv) => decode(&kv.value),
        None => ExecutionMode::Active,
    })
}

/// Sets member `uuid`'s mode.
pub async fn set(member: &Member, uuid: &str, mode: ExecutionMode, user: &str) -> Result<(), ClusterError> {
    let rec = ModeRecord { mode, user: user.to_string(), changed_ms: chrono::Utc::now().timestamp_millis() };
    member.write(Txn::ops(vec![Op::Put { key: mode_key(uuid), value: codec::encode(&rec) }])).await?;
    Ok(())
}
