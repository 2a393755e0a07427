//! Key storage: Rundeck's tree of private keys, public keys and passwords, replicated through
//! Raft and sealed under the master key **before** a write is proposed, so neither the Raft log,
//! sled's files nor snapshots ever hold a plaintext value.
//!
//! # Layout
//! - [`crypto`]: master keys, key ids and the [`Keyring`] (XChaCha20-Poly1305).
//! - [`rekey`]: re-sealing every stored secret under a new master key.
//! - this module: paths, records, [`KeyStore`] (create, update, delete, list, read) and the two
//!   functions the job engine uses, [`resolve`] and [`mask`].
//!
//! # Stored form
//! ```text
//! keys/{path}          KeyRecord: type, content type, size, times, and `sealed` (base64)
//! keyring/active       the id of the master key every value is (or is being) sealed under
//! keyring/members/{id} the key ids each member holds, published at start-up (rekey checks them)
//! ```
//! Directories are implicit: `keys/a/b` makes `a` a directory. Invariants are guards in the
//! transaction that writes: a new key's path must be free, must not be a directory, and none of
//! its ancestors may be a file.
//!
//! # For the job engine
//! A secure option with a `storagePath` is resolved with [`resolve`], which accepts Rundeck's
//! spellings (`keys/db/password`, `/keys/db/password`) and returns a [`Secret`] whose bytes are
//! wiped when dropped; pass it to the step as an environment variable only. Every output line
//! goes through [`mask`] with the execution's secrets before it is stored or shown:
//!
//! ```ignore
//! let secret = steward::keys::resolve(&state.keys, "keys/db/password").await?;
//! cmd.env("RD_SECURE_DBPASS", secret.as_str().unwrap_or_default());
//! let shown = steward::keys::mask(&line, std::slice::from_ref(&secret));
//! ```

pub mod crypto;
pub mod rekey;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use base64::Engine;
use serde::{Deserialize, Serialize};
use steward_raft::{ClusterError, Consistency, Member};
use steward_storage::{Guard, Op, Txn};
use zeroize::Zeroizing;

pub use crypto::{CryptoError, KeyId, Keyring, MasterKey};

use crate::codec;

/// Prefix of key storage records in the replicated store.
pub const KEYS_PREFIX: &str = "keys/";
/// The id of the master key values are sealed under.
pub const ACTIVE_KEY: &str = "keyring/active";
/// Per-member published key ids.
pub const MEMBER_KEYS_PREFIX: &str = "keyring/members/";
/// Longest accepted path (bytes) and path segment.
const MAX_PATH_BYTES: usize = 1024;
const MAX_SEGMENT_BYTES: usize = 255;
/// What masked output shows instead of a secret.
pub const MASK: &str = "[SECURE]";

/// Rundeck's three kinds of stored key, chosen by the request's `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyType {
    Private,
    Public,
    Password,
}

impl KeyType {
    /// The type a `Content-Type` selects (parameters such as `; charset=` are ignored).
    pub fn from_content_type(ct: &str) -> Option<KeyType> {
        match ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase().as_str() {
            "application/octet-stream" => Some(KeyType::Private),
            "application/pgp-keys" => Some(KeyType::Public),
            "application/x-rundeck-data-password" => Some(KeyType::Password),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            KeyType::Private => "application/octet-stream",
            KeyType::Public => "application/pgp-keys",
            KeyType::Password => "application/x-rundeck-data-password",
        }
    }

    /// Private keys and passwords are write-only through the API.
    pub fn is_readable(self) -> bool {
        self == KeyType::Public
    }
}

/// A validated path below the key storage root: non-empty segments, none `.` or `..`, no
/// control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPath {
    segments: Vec<String>,
}

impl KeyPath {
    /// Parses a path relative to the root (`db/password`). The empty path is the root itself.
    pub fn parse(raw: &str) -> Result<KeyPath, KeyError> {
        if raw.is_empty() {
            return Ok(KeyPath { segments: Vec::new() });
        }
        let bad = |why: &str| KeyError::InvalidPath(format!("'{raw}': {why}"));
        if raw.len() > MAX_PATH_BYTES {
            return Err(bad(&format!("longer than {MAX_PATH_BYTES} bytes")));
        }
        let mut segments = Vec::new();
        for seg in raw.split('/') {
            if seg.is_empty() {
                return Err(bad("empty path segment"));
            }
            if seg == "." || seg == ".." {
                return Err(bad("'.' and '..' are not allowed in a key path"));
            }
            if seg.len() > MAX_SEGMENT_BYTES {
                return Err(bad(&format!("a segment is longer than {MAX_SEGMENT_BYTES} bytes")));
            }
            if seg.chars().any(|c| c.is_control() || c == '\\') {
                return Err(bad("control characters and backslashes are not allowed"));
            }
            segments.push(seg.to_string());
        }
        Ok(KeyPath { segments })
    }

    /// Parses a storage path as jobs and node attributes spell it: `keys/a/b`, `/keys/a/b`.
    pub fn parse_storage_path(raw: &str) -> Result<KeyPath, KeyError> {
        let rel = raw.strip_prefix('/').unwrap_or(raw);
        let rel = rel
            .strip_prefix("keys/")
            .ok_or_else(|| KeyError::InvalidPath(format!("'{raw}': storage paths start with keys/")))?;
        KeyPath::parse(rel)
    }

    pub fn is_root(&self) -> bool {
        self.segments.is_empty()
    }

    /// `a/b` (empty for the root).
    pub fn relative(&self) -> String {
        self.segments.join("/")
    }

    /// Rundeck's spelling: `keys/a/b` (`keys` for the root).
    pub fn display(&self) -> String {
        if self.is_root() {
            "keys".into()
        } else {
            format!("keys/{}", self.relative())
        }
    }

    /// The last segment.
    pub fn name(&self) -> &str {
        self.segments.last().map(String::as_str).unwrap_or("")
    }

    /// The store key of a file at this path.
    pub fn store_key(&self) -> String {
        format!("{KEYS_PREFIX}{}", self.relative())
    }

    /// The store prefix of everything below this path as a directory.
    pub fn dir_prefix(&self) -> String {
        if self.is_root() {
            KEYS_PREFIX.to_string()
        } else {
            format!("{KEYS_PREFIX}{}/", self.relative())
        }
    }

    /// The store keys of every proper ancestor (`keys/a` for `a/b`).
    fn ancestor_keys(&self) -> Vec<String> {
        (1..self.segments.len()).map(|n| format!("{KEYS_PREFIX}{}", self.segments[..n].join("/"))).collect()
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display())
    }
}

/// A stored key: metadata in clear, the value sealed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyRecord {
    pub key_type: KeyType,
    pub size: u64,
    pub created_ms: i64,
    pub modified_ms: i64,
    /// The sealed value, base64 (standard alphabet).
    pub sealed: String,
}

/// Metadata of a stored key, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyMeta {
    pub path: KeyPath,
    pub key_type: KeyType,
    pub size: u64,
    pub created_ms: i64,
    pub modified_ms: i64,
}

/// What a path names.
#[derive(Debug, Clone)]
pub enum Entry {
    File(KeyMeta),
    /// A directory: its files and its sub-directories (as paths), in name order.
    Directory {
        path: KeyPath,
        files: Vec<KeyMeta>,
        dirs: Vec<KeyPath>,
    },
}

/// A plaintext secret. Wiped from memory when dropped; `Debug` never shows it.
#[derive(Clone)]
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    pub fn new(bytes: Vec<u8>) -> Secret {
        Secret(Zeroizing::new(bytes))
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The secret as text, when it is UTF-8 (passwords are).
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("invalid key path {0}")]
    InvalidPath(String),
    #[error("the key value is empty")]
    Empty,
    #[error("the key value is {size} bytes; the limit is {max} bytes (keys.max-value-bytes)")]
    TooLarge { size: usize, max: usize },
    #[error(
        "unsupported content type '{0}': use application/octet-stream (private key), application/pgp-keys \
         (public key) or application/x-rundeck-data-password (password)"
    )]
    UnsupportedType(String),
    #[error("resource already exists: {0}")]
    Exists(String),
    #[error("resource not found: {0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("the content of {0} cannot be read: private keys and passwords are write-only")]
    WriteOnly(String),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Decode(#[from] codec::DecodeError),
    #[error("stored key {0} is corrupt: {1}")]
    Corrupt(String, String),
}

/// The record of the active key id.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActiveKey {
    pub key_id: String,
}

/// The key ids a member published.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberKeys {
    /// The key the member seals new values under.
    pub primary: String,
    /// Every key it can open, primary first.
    pub key_ids: Vec<String>,
}

/// The operation that names the active key when a cluster is created.
pub fn bootstrap_ops(keyring: &Keyring) -> Vec<Op> {
    vec![Op::Put {
        key: ACTIVE_KEY.into(),
        value: codec::encode(&ActiveKey { key_id: keyring.primary_id().to_string() }),
    }]
}

/// The operation that publishes this member's key ids.
pub fn publish_op(member_uuid: &str, keyring: &Keyring) -> Op {
    let record = MemberKeys {
        primary: keyring.primary_id().to_string(),
        key_ids: keyring.ids().iter().map(|k| k.to_string()).collect(),
    };
    Op::Put { key: format!("{MEMBER_KEYS_PREFIX}{member_uuid}"), value: codec::encode(&record) }
}

/// The active key id in this member's applied state.
pub fn active_key(member: &Member) -> Result<Option<KeyId>, KeyError> {
    let Some(kv) = member.kv().get(ACTIVE_KEY).map_err(ClusterError::from)? else { return Ok(None) };
    let rec: ActiveKey = codec::decode(&kv.value)?;
    Ok(KeyId::parse(&rec.key_id))
}

/// The active key id, as of a linearizable read.
pub async fn active_key_caught_up(member: &Member) -> Result<Option<KeyId>, KeyError> {
    member.read_barrier().await?;
    active_key(member)
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// Seals `value` for the store key `key` and returns the base64 text records carry.
pub fn seal_field(keyring: &Keyring, key: &str, value: &[u8]) -> String {
    b64().encode(keyring.seal(key, value))
}

/// Opens a base64 `sealed` field stored under `key`.
pub fn open_field(keyring: &Keyring, key: &str, sealed: &str) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let raw = b64().decode(sealed).map_err(|e| KeyError::Corrupt(key.to_string(), e.to_string()))?;
    Ok(keyring.open(key, &raw)?)
}

/// Key storage on one member: the replicated store plus this member's keyring.
#[derive(Clone)]
pub struct KeyStore {
    member: Member,
    keyring: Arc<Keyring>,
    max_value_bytes: usize,
}

impl KeyStore {
    pub fn new(member: Member, keyring: Arc<Keyring>, max_value_bytes: usize) -> KeyStore {
        KeyStore { member, keyring, max_value_bytes }
    }

    pub fn keyring(&self) -> &Arc<Keyring> {
        &self.keyring
    }

    pub fn member(&self) -> &Member {
        &self.member
    }

    pub fn max_value_bytes(&self) -> usize {
        self.max_value_bytes
    }

    fn check_value(&self, value: &[u8]) -> Result<(), KeyError> {
        if value.is_empty() {
            return Err(KeyError::Empty);
        }
        if value.len() > self.max_value_bytes {
            return Err(KeyError::TooLarge { size: value.len(), max: self.max_value_bytes });
        }
        Ok(())
    }

    fn record(&self, path: &KeyPath, key_type: KeyType, value: &[u8], created_ms: i64) -> KeyRecord {
        let now = chrono::Utc::now().timestamp_millis();
        KeyRecord {
            key_type,
            size: value.len() as u64,
            created_ms,
            modified_ms: now,
            sealed: seal_field(&self.keyring, &path.store_key(), value),
        }
    }

    /// Creates a key that must not exist (Rundeck's POST).
    pub async fn create(&self, path: &KeyPath, key_type: KeyType, value: &[u8]) -> Result<KeyMeta, KeyError> {
        if path.is_root() {
            return Err(KeyError::InvalidPath("'': a key needs a name".into()));
        }
        self.check_value(value)?;
        let now = chrono::Utc::now().timestamp_millis();
        let record = self.record(path, key_type, value, now);
        let key = path.store_key();
        // Guards, in order: the path is free, it is not a directory, no ancestor is a file.
        // Checked when the entry is applied, so two members creating the same path, or a file
        // and a directory at once, cannot both succeed.
        let mut guards = vec![Guard::Absent(key.clone()), Guard::PrefixEmpty(path.dir_prefix())];
        guards.extend(path.ancestor_keys().into_iter().map(Guard::Absent));
        let res = self.member.write(Txn::guarded(guards, vec![Op::Put { key, value: codec::encode(&record) }])).await?;
        if !res.succeeded {
            return Err(match res.failed_guards.first() {
                Some(0) => KeyError::Exists(path.display()),
                Some(1) => KeyError::Conflict(format!("{path} is a directory")),
                _ => KeyError::Conflict(format!("a parent of {path} is a key, not a directory")),
            });
        }
        Ok(meta(path.clone(), &record))
    }

    /// Replaces the value of a key that must exist (Rundeck's PUT); the type may change.
    pub async fn update(&self, path: &KeyPath, key_type: KeyType, value: &[u8]) -> Result<KeyMeta, KeyError> {
        self.check_value(value)?;
        let key = path.store_key();
        // Keep the creation time: read, then write guarded on the revision read. A concurrent
        // update makes the guard fail and we try again on the newer record. The read is
        // linearizable: a key created through another member a moment ago must be found.
        for _ in 0..5 {
            let Some(kv) = self.member.get(&key, Consistency::Linearizable).await? else {
                return Err(KeyError::NotFound(path.display()));
            };
            let old: KeyRecord = codec::decode(&kv.value)?;
            let record = self.record(path, key_type, value, old.created_ms);
            let txn = Txn::guarded(
                vec![Guard::ModRevision { key: key.clone(), rev: kv.mod_revision }],
                vec![Op::Put { key: key.clone(), value: codec::encode(&record) }],
            );
            if self.member.write(txn).await?.succeeded {
                return Ok(meta(path.clone(), &record));
            }
        }
        Err(KeyError::Conflict(format!("{path} is being changed concurrently; try again")))
    }

    /// Deletes a key that must exist.
    pub async fn delete(&self, path: &KeyPath) -> Result<(), KeyError> {
        let key = path.store_key();
        let res = self.member.write(Txn::guarded(vec![Guard::Exists(key.clone())], vec![Op::Delete { key }])).await?;
        if !res.succeeded {
            return Err(KeyError::NotFound(path.display()));
        }
        Ok(())
    }

    /// The file or directory at `path` (a linearizable read).
    pub async fn entry(&self, path: &KeyPath) -> Result<Entry, KeyError> {
        if !path.is_root() {
            if let Some(kv) = self.member.get(&path.store_key(), Consistency::Linearizable).await? {
                let record: KeyRecord = codec::decode(&kv.value)?;
                return Ok(Entry::File(meta(path.clone(), &record)));
            }
        }
        let prefix = path.dir_prefix();
        let rows = self.member.range(&prefix, Consistency::Linearizable).await?;
        if rows.is_empty() && !path.is_root() {
            return Err(KeyError::NotFound(path.display()));
        }
        let mut files = Vec::new();
        let mut dirs = BTreeMap::new();
        for (key, kv) in rows {
            let rest = &key[prefix.len()..];
            match rest.split_once('/') {
                None => {
                    let record: KeyRecord = codec::decode(&kv.value)?;
                    files.push(meta(KeyPath::parse(&key[KEYS_PREFIX.len()..])?, &record));
                }
                Some((dir, _)) => {
                    if !dirs.contains_key(dir) {
                        let sub = format!("{}{dir}", &prefix[KEYS_PREFIX.len()..]);
                        dirs.insert(dir.to_string(), KeyPath::parse(&sub)?);
                    }
                }
            }
        }
        Ok(Entry::Directory { path: path.clone(), files, dirs: dirs.into_values().collect() })
    }

    /// The plaintext of the key at `path`, whatever its type. For the job engine; the API never
    /// returns private keys or passwords (see [`KeyStore::read_public`]).
    pub async fn read_secret(&self, path: &KeyPath) -> Result<(KeyType, Secret), KeyError> {
        let key = path.store_key();
        let kv = self
            .member
            .get(&key, Consistency::Linearizable)
            .await?
            .ok_or_else(|| KeyError::NotFound(path.display()))?;
        let record: KeyRecord = codec::decode(&kv.value)?;
        let mut plain = open_field(&self.keyring, &key, &record.sealed)?;
        Ok((record.key_type, Secret::new(std::mem::take(&mut *plain))))
    }

    /// The content of a public key; private keys and passwords are refused.
    pub async fn read_public(&self, path: &KeyPath) -> Result<Secret, KeyError> {
        let (key_type, secret) = self.read_secret(path).await?;
        if !key_type.is_readable() {
            return Err(KeyError::WriteOnly(path.display()));
        }
        Ok(secret)
    }
}

fn meta(path: KeyPath, r: &KeyRecord) -> KeyMeta {
    KeyMeta { path, key_type: r.key_type, size: r.size, created_ms: r.created_ms, modified_ms: r.modified_ms }
}

/// Resolves a secure option's `storagePath` (`keys/…` or `/keys/…`) to its plaintext.
pub async fn resolve(store: &KeyStore, storage_path: &str) -> Result<Secret, KeyError> {
    let path = KeyPath::parse_storage_path(storage_path)?;
    Ok(store.read_secret(&path).await?.1)
}

/// Replaces every occurrence of each secret in `line` with [`MASK`]. Longer secrets are masked
/// first, so a secret that contains another is hidden whole. Secrets that are not UTF-8 or are
/// empty cannot appear in a text line and are skipped.
pub fn mask(line: &str, secrets: &[Secret]) -> String {
    let mut texts: Vec<&str> = secrets.iter().filter_map(Secret::as_str).filter(|s| !s.is_empty()).collect();
    texts.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut out = line.to_string();
    for s in texts {
        if out.contains(s) {
            out = out.replace(s, MASK);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_with_dot_dot_or_empty_segments_are_refused() {
        for bad in ["..", "a/../b", "a//b", "/a", "a/", "./a", "a/\u{7}", "a\\b"] {
            assert!(matches!(KeyPath::parse(bad), Err(KeyError::InvalidPath(_))), "{bad:?}");
        }
        let p = KeyPath::parse("project/ops/db.password").unwrap();
        assert_eq!(p.display(), "keys/project/ops/db.password");
        assert_eq!(p.name(), "db.password");
        assert_eq!(p.ancestor_keys(), vec!["keys/project", "keys/project/ops"]);
        assert_eq!(KeyPath::parse_storage_path("/keys/a/b").unwrap().relative(), "a/b");
        assert_eq!(KeyPath::parse_storage_path("keys/a/b").unwrap().relative(), "a/b");
        assert!(KeyPath::parse_storage_path("a/b").is_err());
    }

    #[test]
    fn content_types_choose_the_key_type() {
        assert_eq!(KeyType::from_content_type("application/octet-stream"), Some(KeyType::Private));
        assert_eq!(KeyType::from_content_type("application/pgp-keys; charset=utf-8"), Some(KeyType::Public));
        assert_eq!(KeyType::from_content_type("application/x-rundeck-data-password"), Some(KeyType::Password));
        assert_eq!(KeyType::from_content_type("text/plain"), None);
    }

    #[test]
    fn mask_hides_every_secret_longest_first() {
        let s = [Secret::new(b"pass".to_vec()), Secret::new(b"password1".to_vec()), Secret::new(Vec::new())];
        assert_eq!(mask("login password1 then pass", &s), "login [SECURE] then [SECURE]");
        assert_eq!(mask("nothing here", &s), "nothing here");
        assert_eq!(format!("{:?}", s[0]), "Secret(4 bytes)");
    }
}
