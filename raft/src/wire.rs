//! Encoding of RPC payloads: a format version byte, then bincode of the Rust value.

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The payload format this build writes and reads.
pub const WIRE_VERSION: u8 = 1;

pub fn encode<T: Serialize>(value: &T) -> Bytes {
    let mut out = vec![WIRE_VERSION];
    // Encoding plain data into a Vec cannot fail for our types; a failure is a programming
    // error worth a loud panic rather than a silently dropped message.
    bincode::serde::encode_into_std_write(value, &mut out, bincode::config::standard())
        .expect("encoding an RPC payload into memory");
    Bytes::from(out)
}

pub fn decode<T: DeserializeOwned>(data: &[u8]) -> Result<T, tonic::Status> {
    match data.split_first() {
        Some((&WIRE_VERSION, rest)) => bincode::serde::decode_from_slice(rest, bincode::config::standard())
            .map(|(v, _)| v)
            .map_err(|e| tonic::Status::invalid_argument(format!("undecodable payload: {e}"))),
        Some((v, _)) => Err(tonic::Status::invalid_argument(format!(
            "payload format version {v} is not supported (this member speaks {WIRE_VERSION})"
        ))),
        None => Err(tonic::Status::invalid_argument("empty payload")),
    }
}
