//! Encoding of the values steward stores in the replicated KV: a format version byte, then
//! JSON. JSON keeps stored records readable with the same serde types the API uses; the version
//! byte lets a later release migrate or refuse what it does not understand.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The record format this build writes.
pub const RECORD_VERSION: u8 = 1;

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![RECORD_VERSION];
    serde_json::to_writer(&mut out, value).expect("records serialise to JSON");
    out
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("empty record")]
    Empty,
    #[error("record format version {0} is not supported by this build (reads {RECORD_VERSION})")]
    Version(u8),
    #[error("unreadable record: {0}")]
    Json(#[from] serde_json::Error),
}

pub fn decode<T: DeserializeOwned>(data: &[u8]) -> Result<T, DecodeError> {
    match data.split_first() {
        None => Err(DecodeError::Empty),
        Some((&RECORD_VERSION, rest)) => Ok(serde_json::from_slice(rest)?),
        Some((&v, _)) => Err(DecodeError::Version(v)),
    }
}
