//! API tokens: stored under the SHA-256 of their text, so a leaked store reveals no usable
//! token, with an index by id for Rundeck's `/api/{v}/token/{id}`.
//!
//! ```text
//! auth/tokens/{sha256 hex}   TokenRecord (id, user, roles, name, creator, created, expiry)
//! auth/token-ids/{id}        TokenIndex: the hash of the token with that id
//! ```
//! A token and its index are written and deleted in one transaction.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use steward_raft::{Consistency, Member};
use steward_storage::{Guard, Op, Txn};

use super::AuthError;
use crate::codec;

pub const TOKENS_PREFIX: &str = "auth/tokens/";
pub const TOKEN_IDS_PREFIX: &str = "auth/token-ids/";

/// A stored API token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenRecord {
    #[serde(default)]
    pub id: String,
    pub user: String,
    pub roles: Vec<String>,
    pub name: String,
    /// Who created it.
    #[serde(default)]
    pub creator: String,
    pub created_ms: i64,
    /// Expiry, milliseconds since the epoch; `None` never expires.
    pub expires_ms: Option<i64>,
}

impl TokenRecord {
    pub fn is_expired(&self, now_ms: i64) -> bool {
        self.expires_ms.is_some_and(|e| e <= now_ms)
    }
}

/// `auth/token-ids/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenIndex {
    pub hash: String,
}

/// The key a token is stored under.
pub fn token_key(token: &str) -> String {
    format!("{TOKENS_PREFIX}{}", hash(token))
}

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn id_key(id: &str) -> String {
    format!("{TOKEN_IDS_PREFIX}{id}")
}

/// Checks that a token given by an operator is usable.
pub fn validate_token_shape(token: &str) -> Result<(), String> {
    if token.len() < 16 || token.len() > 256 || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("must be 16 to 256 printable ASCII characters without spaces".into());
    }
    Ok(())
}

/// A new random token.
pub fn new_token() -> String {
    crate::datadir::random_secret()
}

/// The operations that store `record` as the token `token`.
fn put_ops(token: &str, record: &TokenRecord) -> Vec<Op> {
    vec![
        Op::Put { key: token_key(token), value: codec::encode(record) },
        Op::Put { key: id_key(&record.id), value: codec::encode(&TokenIndex { hash: hash(token) }) },
    ]
}

/// The operations that store the bootstrap admin token (role `admin`, no expiry).
pub fn admin_token_ops(token: &str) -> Vec<Op> {
    let record = TokenRecord {
        id: uuid::Uuid::new_v4().to_string(),
        user: "admin".into(),
        roles: vec!["admin".into()],
        name: "bootstrap admin token".into(),
        creator: "admin".into(),
        created_ms: chrono::Utc::now().timestamp_millis(),
        expires_ms: None,
    };
    put_ops(token, &record)
}

/// Parses Rundeck's token durations (`120d`, `1h30m`; a bare number is seconds): the job
/// engine's duration syntax.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    crate::jobs::duration::parse_duration(text).map_err(|e| e.to_string())
}

/// Stores a new token (its id must be fresh).
pub async fn create(member: &Member, token: &str, record: &TokenRecord) -> Result<(), AuthError> {
    let guards = vec![Guard::Absent(token_key(token)), Guard::Absent(id_key(&record.id))];
    let res = member.write(Txn::guarded(guards, put_ops(token, record))).await?;
    if !res.succeeded {
        // 256 random bits and a v4 uuid: a collision means a bug, not bad luck.
        return Err(AuthError::Cluster(steward_raft::ClusterError::Rejected("token collision; try again".into())));
    }
    Ok(())
}

/// Every token, or those of `user`, sorted by creation time.
pub async fn list(member: &Member, user: Option<&str>) -> Result<Vec<TokenRecord>, AuthError> {
    let mut out = Vec::new();
    for (_, kv) in member.range(TOKENS_PREFIX, Consistency::Linearizable).await? {
        let r: TokenRecord = codec::decode(&kv.value)?;
        if user.is_none_or(|u| u == r.user) {
            out.push(r);
        }
    }
    out.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
    Ok(out)
}

/// The token with id `id`.
pub async fn get(member: &Member, id: &str) -> Result<Option<TokenRecord>, AuthError> {
    let Some(kv) = member.get(&id_key(id), Consistency::Linearizable).await? else { return Ok(None) };
    let index: TokenIndex = codec::decode(&kv.value)?;
    let Some(kv) = member.get(&format!("{TOKENS_PREFIX}{}", index.hash), Consistency::Local).await? else {
        return Ok(None);
    };
    Ok(Some(codec::decode(&kv.value)?))
}

/// Deletes (revokes) the token with id `id`; false when there is none.
pub async fn delete(member: &Member, id: &str) -> Result<bool, AuthError> {
    let Some(kv) = member.get(&id_key(id), Consistency::Linearizable).await? else { return Ok(false) };
    let index: TokenIndex = codec::decode(&kv.value)?;
    // Guarded on the index as read: the token it names is the one deleted.
    let txn = Txn::guarded(
        vec![Guard::ModRevision { key: id_key(id), rev: kv.mod_revision }],
        vec![Op::Delete { key: format!("{TOKENS_PREFIX}{}", index.hash) }, Op::Delete { key: id_key(id) }],
    );
    Ok(member.write(txn).await?.succeeded)
}

/// The operations that delete every token of `user` (when the user is deleted).
pub async fn delete_ops_for_user(member: &Member, user: &str) -> Result<Vec<Op>, AuthError> {
    let mut ops = Vec::new();
    for (key, kv) in member.range(TOKENS_PREFIX, Consistency::Linearizable).await? {
        let r: TokenRecord = codec::decode(&kv.value)?;
        if r.user == user {
            ops.push(Op::Delete { key });
            ops.push(Op::Delete { key: id_key(&r.id) });
        }
    }
    Ok(ops)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_rundecks_units() {
        assert_eq!(parse_duration("120d").unwrap(), Duration::from_secs(120 * 86_400));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("45").unwrap(), Duration::from_secs(45));
        for bad in ["", "d", "10x", "1h30", "-5m", "99999999999999999999y"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }
}
