//! Who is calling: API tokens, users and browser sessions, all kept in the replicated state so
//! that every member authenticates every caller the same way (no sticky sessions).
//!
//! # Layout
//! - [`tokens`]: API tokens, stored hashed (`auth/tokens/{sha256}`), with an id index
//!   (`auth/token-ids/{id}`), roles and an expiry. The text of a token is shown once, when it is
//!   created, and never stored or logged.
//! - [`users`]: users and their groups (`auth/users/{login}`); passwords hashed with argon2id
//!   on the member that receives them, before anything is proposed.
//! - [`session`]: browser sessions (`POST /j_security_check`): a cookie signed with HMAC-SHA256
//!   under a key kept, sealed under the master key, in the replicated state
//!   (`auth/session-key`), so a session started on one member is accepted by all.
//!
//! What a caller may do is decided by the ACL policies (`crate::acl`); this module only says
//! who the caller is, as a [`Principal`].

pub mod session;
pub mod tokens;
pub mod users;

use steward_raft::{Consistency, Member};

use crate::codec;
use crate::keys::KeyError;

pub use tokens::{admin_token_ops, new_token, token_key, validate_token_shape, TokenRecord, TOKENS_PREFIX};

/// How a caller proved who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// An API token, by its id.
    Token { id: String },
    /// A browser session cookie.
    Session,
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user: String,
    /// The roles (Rundeck's word for groups) the ACL policies match with `group:`.
    pub roles: Vec<String>,
    pub via: Via,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("unknown API token")]
    Unknown,
    #[error("the API token has expired")]
    Expired,
    #[error("the session is not valid or has expired; log in again")]
    BadSession,
    #[error("wrong user name or password")]
    BadLogin,
    #[error(transparent)]
    Cluster(#[from] steward_raft::ClusterError),
    #[error(transparent)]
    Decode(#[from] codec::DecodeError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("internal error: {0}")]
    Internal(String),
}

/// Reads a key locally, and when this member does not have it yet, after catching up with the
/// leader: a record created on another member a moment ago may not have reached this one.
pub(crate) async fn get_caught_up(
    member: &Member,
    key: &str,
) -> Result<Option<steward_storage::KeyValue>, steward_raft::ClusterError> {
    match member.get(key, Consistency::Local).await? {
        Some(kv) => Ok(Some(kv)),
        None => member.get(key, Consistency::Linearizable).await,
    }
}

/// Looks an API token up.
pub async fn authenticate(member: &Member, token: &str) -> Result<Principal, AuthError> {
    let kv = get_caught_up(member, &token_key(token)).await?.ok_or(AuthError::Unknown)?;
    let record: TokenRecord = codec::decode(&kv.value)?;
    if record.is_expired(chrono::Utc::now().timestamp_millis()) {
        return Err(AuthError::Expired);
    }
    Ok(Principal { user: record.user, roles: record.roles, via: Via::Token { id: record.id } })
}
