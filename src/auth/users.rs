//! Users and their groups. A password is hashed with argon2id (a fresh salt per hash) on the
//! member that receives it, before the write is proposed: only the PHC hash string enters the
//! Raft log.
//!
//! Hashing and checking cost tens of milliseconds of CPU by design, so both run on the
//! blocking pool, never on the async workers.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use serde::{Deserialize, Serialize};
use steward_raft::Member;

use super::AuthError;
use crate::codec;

pub const USERS_PREFIX: &str = "auth/users/";
/// Shortest accepted password.
pub const MIN_PASSWORD: usize = 8;
const MAX_PASSWORD: usize = 1024;

/// A stored user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserRecord {
    pub login: String,
    /// argon2id PHC string.
    pub password_hash: String,
    pub groups: Vec<String>,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub first_name: String,
    #[serde(default)]
    pub last_name: String,
    pub created_ms: i64,
    /// Sessions issued before this time are refused (set when the password changes).
    pub sessions_after_ms: i64,
}

pub fn user_key(login: &str) -> String {
    format!("{USERS_PREFIX}{login}")
}

/// Logins and group names: letters, digits and `_ . @ -`, 1 to 64 characters.
pub fn validate_name(what: &str, name: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || "_.@-".contains(c));
    if !ok {
        return Err(format!("{what} '{name}' is invalid: use 1 to 64 letters, digits and _ . @ -"));
    }
    Ok(())
}

pub fn validate_password(password: &str) -> Result<(), String> {
    if password.len() < MIN_PASSWORD || password.len() > MAX_PASSWORD {
        return Err(format!("a password has {MIN_PASSWORD} to {MAX_PASSWORD} characters"));
    }
    Ok(())
}

/// Hashes a password (blocking pool).
pub async fn hash_password(password: String) -> Result<String, AuthError> {
    let hashed = tokio::task::spawn_blocking(move || {
        let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).expect("16 bytes fit a salt");
        Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string())
    })
    .await;
    // Default parameters and a valid salt cannot fail; either error is a bug, reported as one.
    match hashed {
        Ok(Ok(h)) => Ok(h),
        Ok(Err(e)) => Err(AuthError::Internal(format!("argon2 failed to hash a password: {e}"))),
        Err(e) => Err(AuthError::Internal(format!("the password hashing task failed: {e}"))),
    }
}

/// A hash of a password nobody has, checked when the user does not exist, so that a login
/// for an unknown user costs as long as one with a wrong password.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        let salt = SaltString::encode_b64(&[7u8; 16]).expect("16 bytes fit a salt");
        Argon2::default().hash_password(&rand::random::<[u8; 32]>(), &salt).map(|h| h.to_string()).unwrap_or_default()
    })
}

/// Checks `password` for `login`; returns the user when it matches.
pub async fn check_login(member: &Member, login: &str, password: &str) -> Result<UserRecord, AuthError> {
    let user = match validate_name("user", login) {
        Ok(()) => get(member, login).await?,
        Err(_) => None,
    };
    let hash = user.as_ref().map(|u| u.password_hash.clone());
    let password = password.to_string();
    let ok = tokio::task::spawn_blocking(move || {
        let hash = hash.as_deref().unwrap_or_else(|| decoy_hash());
        PasswordHash::new(hash).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
    })
    .await
    .unwrap_or(false);
    match user {
        Some(u) if ok => Ok(u),
        _ => Err(AuthError::BadLogin),
    }
}

/// The user `login`, if it exists.
pub async fn get(member: &Member, login: &str) -> Result<Option<UserRecord>, AuthError> {
    match super::get_caught_up(member, &user_key(login)).await? {
        Some(kv) => Ok(Some(codec::decode(&kv.value)?)),
        None => Ok(None),
    }
}
