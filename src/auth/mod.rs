//! API tokens: stored hashed in the replicated state, so a token works on every member.
//!
//! A token is looked up by the SHA-256 of its text under `auth/tokens/{hex}`; the text itself is
//! never stored or logged.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use steward_raft::{Consistency, Member};
use steward_storage::Op;

use crate::codec;

pub const TOKENS_PREFIX: &str = "auth/tokens/";

/// A stored API token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenRecord {
    pub user: String,
    pub roles: Vec<String>,
    pub name: String,
    pub created_ms: i64,
    /// Expiry, milliseconds since the epoch; `None` never expires.
    pub expires_ms: Option<i64>,
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user: String,
    pub roles: Vec<String>,
}

/// The key a token is stored under.
pub fn token_key(token: &str) -> String {
    format!("{TOKENS_PREFIX}{}", hex::encode(Sha256::digest(token.as_bytes())))
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

/// The operation that stores the admin token.
pub fn admin_token_op(token: &str) -> Op {
    let record = TokenRecord {
        user: "admin".into(),
        roles: vec!["admin".into()],
        name: "bootstrap admin token".into(),
        created_ms: chrono::Utc::now().timestamp_millis(),
        expires_ms: None,
    };
    Op::Put { key: token_key(token), value: codec::encode(&record) }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("unknown API token")]
    Unknown,
    #[error("the API token has expired")]
    Expired,
    #[error(transparent)]
    Cluster(#[from] steward_raft::ClusterError),
    #[error(transparent)]
    Decode(#[from] codec::DecodeError),
}

/// Looks a token up. A token this member does not know yet may have been created on another
/// member a moment ago, so a miss is retried once after catching up with the leader.
pub async fn authenticate(member: &Member, token: &str) -> Result<Principal, AuthError> {
    let key = token_key(token);
    let found = match member.get(&key, Consistency::Local).await? {
        Some(kv) => Some(kv),
        None => member.get(&key, Consistency::Linearizable).await?,
    };
    let kv = found.ok_or(AuthError::Unknown)?;
    let record: TokenRecord = codec::decode(&kv.value)?;
    if record.expires_ms.is_some_and(|e| e <= chrono::Utc::now().timestamp_millis()) {
        return Err(AuthError::Expired);
    }
    Ok(Principal { user: record.user, roles: record.roles })
}
