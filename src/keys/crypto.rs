//! Sealing secrets under the master key: XChaCha20-Poly1305 with a random 192-bit nonce, a key
//! id in the header, and the record's store key as associated data.
//!
//! ```text
//! sealed = version (1 byte, = 1) | key id (8 bytes) | nonce (24 bytes) | ciphertext | tag (16 bytes)
//! key id = first 8 bytes of SHA-256("steward master key id v1" | master key)
//! ```
//!
//! The key id lets a member holding several master keys (a [`Keyring`]: the primary one that
//! seals new values, and previous ones that only open) pick the right one, and lets a member
//! that lacks a key say which one it lacks. Ids are derived from the key itself, so every member
//! computes the same id without coordination, and an id reveals nothing useful about the key.
//!
//! The associated data is the store key the sealed value lives under (e.g. `keys/db/password`):
//! a ciphertext copied to another path does not open there.

use std::fmt;
use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Format version of a sealed value.
const SEAL_VERSION: u8 = 1;
const ID_LEN: usize = 8;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = 1 + ID_LEN + NONCE_LEN;

/// The id of a master key (see the module docs).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId([u8; ID_LEN]);

impl KeyId {
    pub fn parse(hex_id: &str) -> Option<KeyId> {
        let bytes = hex::decode(hex_id).ok()?;
        Some(KeyId(bytes.try_into().ok()?))
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// A 256-bit master key. Its bytes are wiped when it is dropped and never printed.
#[derive(Clone)]
pub struct MasterKey {
    bytes: Zeroizing<[u8; 32]>,
    id: KeyId,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey({})", self.id)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    #[error("a master key is 64 hexadecimal characters (32 bytes)")]
    Shape,
    #[error("cannot read master key file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("master key file {path}: {message}")]
    File { path: String, message: String },
}

impl MasterKey {
    pub fn from_bytes(bytes: [u8; 32]) -> MasterKey {
        let mut h = Sha256::new();
        h.update(b"steward master key id v1");
        h.update(bytes);
        let digest = h.finalize();
        let mut id = [0u8; ID_LEN];
        id.copy_from_slice(&digest[..ID_LEN]);
        MasterKey { bytes: Zeroizing::new(bytes), id: KeyId(id) }
    }

    /// A new random key.
    pub fn generate() -> MasterKey {
        MasterKey::from_bytes(rand::random())
    }

    /// Parses the text form: 64 hex characters, surrounding whitespace ignored.
    pub fn parse(text: &str) -> Result<MasterKey, MasterKeyError> {
        let text = text.trim();
        if text.len() != 64 {
            return Err(MasterKeyError::Shape);
        }
        let mut bytes = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(text, bytes.as_mut()).map_err(|_| MasterKeyError::Shape)?;
        Ok(MasterKey::from_bytes(*bytes))
    }

    /// Reads a key file. The file must not be readable by group or others: a key that anyone
    /// on the machine can read protects nothing.
    pub fn read_file(path: &Path) -> Result<MasterKey, MasterKeyError> {
        use std::os::unix::fs::PermissionsExt;
        let shown = path.display().to_string();
        let meta = std::fs::metadata(path).map_err(|source| MasterKeyError::Read { path: shown.clone(), source })?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(MasterKeyError::File {
                path: shown,
                message: format!(
                    "mode {:o} lets others read it; make it readable by its owner only (chmod 600)",
                    meta.permissions().mode() & 0o777
                ),
            });
        }
        let text = Zeroizing::new(
            std::fs::read_to_string(path).map_err(|source| MasterKeyError::Read { path: shown.clone(), source })?,
        );
        MasterKey::parse(&text).map_err(|e| MasterKeyError::File { path: shown, message: e.to_string() })
    }

    /// The text form written to key files.
    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(*self.bytes))
    }

    pub fn id(&self) -> KeyId {
        self.id
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(self.bytes.as_ref().into())
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum CryptoError {
    #[error(
        "the value is sealed under master key {0}, which this member does not have: add that key's file to \
         keys.previous-master-key-files (or finish the rekey)"
    )]
    UnknownKey(KeyId),
    #[error("the sealed value is malformed: {0}")]
    Malformed(&'static str),
    #[error("the sealed value does not open under master key {0}: it was altered or moved")]
    Tampered(KeyId),
}

/// The master keys a member holds: the primary seals, every key opens.
#[derive(Debug, Clone)]
pub struct Keyring {
    primary: MasterKey,
    previous: Vec<MasterKey>,
}

impl Keyring {
    pub fn new(primary: MasterKey, previous: Vec<MasterKey>) -> Keyring {
        let previous = previous.into_iter().filter(|k| k.id() != primary.id()).collect();
        Keyring { primary, previous }
    }

    /// The id of the key new values are sealed under.
    pub fn primary_id(&self) -> KeyId {
        self.primary.id()
    }

    /// Every key id this keyring opens, primary first.
    pub fn ids(&self) -> Vec<KeyId> {
        std::iter::once(&self.primary).chain(&self.previous).map(|k| k.id()).collect()
    }

    pub fn has(&self, id: KeyId) -> bool {
        self.ids().contains(&id)
    }

    /// Seals `plaintext` under the primary key, bound to `aad` (the store key).
    pub fn seal(&self, aad: &str, plaintext: &[u8]) -> Vec<u8> {
        let nonce: [u8; NONCE_LEN] = rand::random();
        let ciphertext = self
            .primary
            .cipher()
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: plaintext, aad: aad.as_bytes() })
            // XChaCha20-Poly1305 fails only on inputs over 256 GiB; values are capped far below.
            .expect("XChaCha20-Poly1305 encryption of a bounded value");
        let mut out = Vec::with_capacity(HEADER_LEN + ciphertext.len());
        out.push(SEAL_VERSION);
        out.extend_from_slice(&self.primary.id().0);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        out
    }

    /// The id of the key `sealed` was sealed under.
    pub fn sealed_key_id(sealed: &[u8]) -> Result<KeyId, CryptoError> {
        if sealed.len() < HEADER_LEN + TAG_LEN {
            return Err(CryptoError::Malformed("too short"));
        }
        if sealed[0] != SEAL_VERSION {
            return Err(CryptoError::Malformed("unknown format version"));
        }
        let mut id = [0u8; ID_LEN];
        id.copy_from_slice(&sealed[1..1 + ID_LEN]);
        Ok(KeyId(id))
    }

    /// Opens a value sealed under any key of this keyring.
    pub fn open(&self, aad: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let id = Self::sealed_key_id(sealed)?;
        let key = std::iter::once(&self.primary)
            .chain(&self.previous)
            .find(|k| k.id() == id)
            .ok_or(CryptoError::UnknownKey(id))?;
        let nonce = XNonce::from_slice(&sealed[1 + ID_LEN..HEADER_LEN]);
        key.cipher()
            .decrypt(nonce, Payload { msg: &sealed[HEADER_LEN..], aad: aad.as_bytes() })
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::Tampered(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_under_its_key_and_path_only() {
        let ring = Keyring::new(MasterKey::generate(), vec![]);
        let sealed = ring.seal("keys/a", b"hunter2-hunter2");
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"), "no plaintext in the sealed value");
        assert_eq!(ring.open("keys/a", &sealed).unwrap().as_slice(), b"hunter2-hunter2");
        assert!(matches!(ring.open("keys/b", &sealed), Err(CryptoError::Tampered(_))), "bound to its path");
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(matches!(ring.open("keys/a", &flipped), Err(CryptoError::Tampered(_))));
        let other = Keyring::new(MasterKey::generate(), vec![]);
        assert!(matches!(other.open("keys/a", &sealed), Err(CryptoError::UnknownKey(id)) if id == ring.primary_id()));
    }

    #[test]
    fn a_keyring_opens_values_of_previous_keys_and_seals_under_the_primary() {
        let old = MasterKey::generate();
        let new = MasterKey::generate();
        let sealed_old = Keyring::new(old.clone(), vec![]).seal("k", b"v");
        let ring = Keyring::new(new.clone(), vec![old.clone()]);
        assert_eq!(ring.open("k", &sealed_old).unwrap().as_slice(), b"v");
        assert_eq!(Keyring::sealed_key_id(&ring.seal("k", b"v")).unwrap(), new.id());
        assert_eq!(ring.ids(), vec![new.id(), old.id()]);
    }

    #[test]
    fn key_text_round_trips_and_bad_text_is_refused() {
        let k = MasterKey::generate();
        assert_eq!(MasterKey::parse(&format!("{}\n", k.to_hex().as_str())).unwrap().id(), k.id());
        assert!(MasterKey::parse("abcd").is_err());
        assert!(MasterKey::parse(&"zz".repeat(32)).is_err());
        assert_eq!(KeyId::parse(&k.id().to_string()), Some(k.id()));
    }
}
