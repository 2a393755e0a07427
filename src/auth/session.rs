//! Browser sessions that every member accepts: the cookie carries its own claims, signed with
//! HMAC-SHA256 under a key kept in the replicated state, so no member keeps session state and a
//! load balancer needs no stickiness (Rundeck's §3.6 pain point).
//!
//! ```text
//! cookie  JSESSIONID = base64url(claims JSON) "." base64url(HMAC-SHA256(session key, claims))
//! claims  {"u": login, "iat": issued ms, "exp": expiry ms}
//! store   auth/session-key = {"sealed": base64(sealed 32 random bytes)}  (sealed like key storage)
//! ```
//!
//! A session is refused after its expiry, when its user no longer exists, or when it was issued
//! before the user's password last changed. The cookie is `HttpOnly` and `SameSite=Strict`,
//! which keeps other sites from riding on it (no cross-site request carries it).

use std::sync::Mutex;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use steward_raft::{Consistency, Member};
use steward_storage::{Guard, Op, Txn};
use zeroize::Zeroizing;

use super::{users, AuthError, Principal, Via};
use crate::codec;
use crate::keys::{open_field, seal_field, Keyring};
use std::sync::Arc;

/// Where the signing key lives.
pub const SESSION_KEY: &str = "auth/session-key";
/// The cookie's name: Rundeck's, so existing clients find it.
pub const COOKIE: &str = "JSESSIONID";

/// The stored, sealed signing key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SealedKey {
    pub sealed: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Claims {
    u: String,
    iat: i64,
    exp: i64,
}

/// The operation that creates the signing key (with the cluster, or later if missing).
pub fn bootstrap_op(keyring: &Keyring) -> Op {
    let key: Zeroizing<[u8; 32]> = Zeroizing::new(rand::random());
    let record = SealedKey { sealed: seal_field(keyring, SESSION_KEY, key.as_ref()) };
    Op::Put { key: SESSION_KEY.into(), value: codec::encode(&record) }
}

/// Issues and checks session cookies on one member.
pub struct Sessions {
    member: Member,
    keyring: Arc<Keyring>,
    ttl: Duration,
    /// The opened signing key and the revision it was read at: opening costs a decryption, so
    /// it is done again only when the stored key changes (a rekey re-seals it).
    cache: Mutex<Option<(u64, Zeroizing<Vec<u8>>)>>,
}

impl Sessions {
    pub fn new(member: Member, keyring: Arc<Keyring>, ttl: Duration) -> Sessions {
        Sessions { member, keyring, ttl, cache: Mutex::new(None) }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    async fn key(&self) -> Result<Zeroizing<Vec<u8>>, AuthError> {
        let mut kv = super::get_caught_up(&self.member, SESSION_KEY).await?;
        if kv.is_none() {
            // A cluster created before sessions existed: create the key once, whichever member
            // gets there first (the guard makes the others' writes no-ops).
            let txn = Txn::guarded(vec![Guard::Absent(SESSION_KEY.into())], vec![bootstrap_op(&self.keyring)]);
            self.member.write(txn).await?;
            kv = self.member.get(SESSION_KEY, Consistency::Linearizable).await?;
        }
        let kv = kv.ok_or_else(|| AuthError::Internal("the session key could not be created".into()))?;
        {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((rev, key)) = cache.as_ref() {
                if *rev == kv.mod_revision {
                    return Ok(key.clone());
                }
            }
        }
        let record: SealedKey = codec::decode(&kv.value)?;
        let key = open_field(&self.keyring, SESSION_KEY, &record.sealed)?;
        *self.cache.lock().unwrap_or_else(|p| p.into_inner()) = Some((kv.mod_revision, key.clone()));
        Ok(key)
    }

    fn mac(key: &[u8]) -> Hmac<Sha256> {
        // HMAC accepts keys of any length.
        <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length")
    }

    /// A signed cookie value for `login`, and its expiry (ms since the epoch).
    pub async fn issue(&self, login: &str) -> Result<(String, i64), AuthError> {
        let key = self.key().await?;
        let now = chrono::Utc::now().timestamp_millis();
        let exp = now + self.ttl.as_millis() as i64;
        let claims = serde_json::to_vec(&Claims { u: login.to_string(), iat: now, exp })
            .map_err(|e| AuthError::Internal(e.to_string()))?;
        let mut mac = Self::mac(&key);
        mac.update(&claims);
        let sig = mac.finalize().into_bytes();
        Ok((format!("{}.{}", URL_SAFE_NO_PAD.encode(&claims), URL_SAFE_NO_PAD.encode(sig)), exp))
    }

    /// The caller a cookie value stands for.
    pub async fn verify(&self, cookie: &str) -> Result<Principal, AuthError> {
        let (claims_b64, sig_b64) = cookie.split_once('.').ok_or(AuthError::BadSession)?;
        let claims = URL_SAFE_NO_PAD.decode(claims_b64).map_err(|_| AuthError::BadSession)?;
        let sig = URL_SAFE_NO_PAD.decode(sig_b64).map_err(|_| AuthError::BadSession)?;
        let key = self.key().await?;
        let mut mac = Self::mac(&key);
        mac.update(&claims);
        // verify_slice compares in constant time.
        mac.verify_slice(&sig).map_err(|_| AuthError::BadSession)?;
        let claims: Claims = serde_json::from_slice(&claims).map_err(|_| AuthError::BadSession)?;
        if claims.exp <= chrono::Utc::now().timestamp_millis() {
            return Err(AuthError::BadSession);
        }
        let user = users::get(&self.member, &claims.u).await?.ok_or(AuthError::BadSession)?;
        if claims.iat < user.sessions_after_ms {
            return Err(AuthError::BadSession);
        }
        Ok(Principal { user: user.login, roles: user.groups, via: Via::Session })
    }
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}
