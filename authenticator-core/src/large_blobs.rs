//! authenticatorLargeBlobs (CTAP 2.1 §6.10): the serialized large-blob array.
//!
//! The authenticator keeps one opaque byte string, the *serialized large-blob array*: a CBOR
//! array followed by LEFT(SHA-256(array), 16). Platforms read it in fragments and replace it
//! whole, in fragments too; what the entries mean (each is encrypted under some credential's
//! `largeBlobKey`, see `make_credential.rs`) is the platforms' business. Before any write, and
//! after authenticatorReset, it is the empty array [`EMPTY_ARRAY`]: `0x80` and its hash.
//!
//! | request member | type | meaning |
//! |---|---|---|
//! | `get` (0x01) | unsigned | read this many bytes (at most maxFragmentLength = `maxMsgSize` − 64) |
//! | `set` (0x02) | bytes | write this fragment (at most maxFragmentLength) |
//! | `offset` (0x03) | unsigned | where the fragment starts (required) |
//! | `length` (0x04) | unsigned | the whole new array's length: with `set` at offset 0 only |
//! | `pinUvAuthParam` (0x05) | bytes | authenticate(pinUvAuthToken, 32 × 0xff ‖ 0x0c 0x00 ‖ uint32LE(offset) ‖ SHA-256(set)) |
//! | `pinUvAuthProtocol` (0x06) | unsigned | its PIN/UV auth protocol |
//!
//! A read answers `{1: fragment}`; a write answers nothing until the last fragment arrives, whose
//! trailing 16 bytes must be the truncated hash of the rest (`CTAP2_ERR_INTEGRITY_FAILURE`);
//! then the whole array replaces the stored one in one atomic store commit (`m/large-blobs`).
//! The pending array lives in RAM: a power cycle or authenticatorReset drops it, and a new
//! write at offset 0 starts over.
//!
//! | check (in the spec's order) | status |
//! |---|---|
//! | no `offset`; neither or both of `get` and `set` | `CTAP1_ERR_INVALID_PARAMETER` |
//! | `get` with `length`, `pinUvAuthParam` or `pinUvAuthProtocol` | `CTAP1_ERR_INVALID_PARAMETER` |
//! | `get` more than maxFragmentLength | `CTAP1_ERR_INVALID_LENGTH` |
//! | `get` at an offset past the array's end | `CTAP1_ERR_INVALID_PARAMETER` |
//! | `set` longer than maxFragmentLength | `CTAP1_ERR_INVALID_LENGTH` |
//! | offset 0 without `length`; `length` below 17 | `CTAP1_ERR_INVALID_PARAMETER` |
//! | offset 0, `length` above `maxSerializedLargeBlobArray` | `CTAP2_ERR_LARGE_BLOB_STORAGE_FULL` |
//! | another offset with `length` | `CTAP1_ERR_INVALID_PARAMETER` |
//! | offset other than where the pending array ends | `CTAP1_ERR_INVALID_SEQ` |
//! | PIN set, built-in UV enrolled or alwaysUv: no `pinUvAuthParam` | `CTAP2_ERR_PUAT_REQUIRED` |
//! | … no `pinUvAuthProtocol` / one not offered | `CTAP2_ERR_MISSING_PARAMETER` / `CTAP1_ERR_INVALID_PARAMETER` |
//! | … wrong MAC, or a token without `lbw` | `CTAP2_ERR_PIN_AUTH_INVALID` |
//! | the fragment would overrun `length` | `CTAP1_ERR_INVALID_PARAMETER` |
//! | last fragment, hash mismatch | `CTAP2_ERR_INTEGRITY_FAILURE` |
//!
//! Without a PIN (or built-in UV, or alwaysUv) writes need no token, as §6.10.2 has it.

use alloc::vec::Vec;

use sha2::{Digest, Sha256};

use crate::authenticator::Authenticator;
use crate::cbor::{self, Key, Members, Value};
use crate::pin::Permission;
use crate::platform::{Platform, Store, StoreError, Write};
use crate::status::StatusCode;
use crate::storage;

/// Request member keys.
mod key {
    pub const GET: u64 = 0x01;
    pub const SET: u64 = 0x02;
    pub const OFFSET: u64 = 0x03;
    pub const LENGTH: u64 = 0x04;
    pub const PIN_UV_AUTH_PARAM: u64 = 0x05;
    pub const PIN_UV_AUTH_PROTOCOL: u64 = 0x06;
}

/// The response member holding a read fragment (`config`).
const CONFIG: i64 = 0x01;

/// The serialized large-blob array before anything is written: the empty CBOR array `0x80`
/// followed by LEFT(SHA-256(0x80), 16).
pub const EMPTY_ARRAY: [u8; 17] = [
    0x80, 0x76, 0xbe, 0x8b, 0x52, 0x8d, 0x00, 0x75, 0xf7, 0xaa, 0xe9, 0x8d, 0x6f, 0xa5, 0x7a, 0x6d,
    0x3c,
];

/// The length of the truncated hash that ends a serialized large-blob array.
const HASH_LEN: usize = 16;

/// The shortest serialized large-blob array: one byte of CBOR and the hash.
const MIN_LENGTH: u64 = 17;

/// What CTAP 2.1 requires `maxSerializedLargeBlobArray` to be at least.
pub const MIN_MAX_SERIALIZED_LARGE_BLOB_ARRAY: usize = 1024;

/// How much the platform may read or write per request: `maxMsgSize` − 64.
pub(crate) fn max_fragment_length(max_msg_size: usize) -> usize {
    max_msg_size.saturating_sub(64)
}

/// The state of a write in progress (`expectedLength`; `expectedNextOffset` is the length of
/// the pending array so far). A power cycle loses it.
#[derive(Default)]
pub(crate) struct LargeBlobState {
    pending: Option<PendingArray>,
}

struct PendingArray {
    expected_length: u64,
    buffer: Vec<u8>,
}

impl core::fmt::Debug for LargeBlobState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match &self.pending {
            None => f.write_str("LargeBlobState { pending: None }"),
            Some(pending) => f
                .debug_struct("LargeBlobState")
                .field("expected_length", &pending.expected_length)
                .field("received", &pending.buffer.len())
                .finish(),
        }
    }
}

/// A request after its members were type-checked.
struct Request<'a> {
    get: Option<u64>,
    set: Option<&'a [u8]>,
    offset: Option<u64>,
    length: Option<u64>,
    pin_uv_auth_param: Option<&'a [u8]>,
    pin_uv_auth_protocol: Option<u64>,
}

/// An unsigned integer (a negative one is another CBOR major type).
fn as_uint(value: &Value) -> Result<u64, StatusCode> {
    match value {
        Value::Integer(i) => u64::try_from(*i).map_err(|_| StatusCode::CborUnexpectedType),
        _ => Err(StatusCode::CborUnexpectedType),
    }
}

fn len_u64(len: usize) -> u64 {
    u64::try_from(len).unwrap_or(u64::MAX)
}

/// Whether `array` ends with LEFT(SHA-256(the rest), 16).
pub(crate) fn hash_matches(array: &[u8]) -> bool {
    let Some(split) = array.len().checked_sub(HASH_LEN) else {
        return false;
    };
    let (data, hash) = array.split_at(split);
    Sha256::digest(data).get(..HASH_LEN) == Some(hash)
}

impl<P: Platform> Authenticator<P> {
    /// authenticatorLargeBlobs (§6.10.2).
    pub(crate) fn large_blobs(&mut self, parameters: &Value) -> Result<Option<Value>, StatusCode> {
        let members = Members::of(parameters)?;
        let uint = |k| members.get(Key::Int(k)).map(as_uint).transpose();
        let request = Request {
            get: uint(key::GET)?,
            set: members
                .get(Key::Int(key::SET))
                .map(cbor::as_bytes)
                .transpose()?,
            offset: uint(key::OFFSET)?,
            length: uint(key::LENGTH)?,
            pin_uv_auth_param: members
                .get(Key::Int(key::PIN_UV_AUTH_PARAM))
                .map(cbor::as_bytes)
                .transpose()?,
            pin_uv_auth_protocol: uint(key::PIN_UV_AUTH_PROTOCOL)?,
        };
        // Steps 1–3: an offset, and exactly one of get and set.
        let offset = request.offset.ok_or(StatusCode::InvalidParameter)?;
        match (request.get, request.set) {
            (Some(get), None) => self.read_large_blobs(&request, get, offset).map(Some),
            (None, Some(set)) => self.write_large_blobs(&request, set, offset).map(|()| None),
            _ => Err(StatusCode::InvalidParameter),
        }
    }

    /// The stored serialized large-blob array (the empty one if nothing was written).
    pub(crate) fn serialized_large_blob_array(&mut self) -> Result<Vec<u8>, StatusCode> {
        Ok(self
            .platform
            .store()
            .get(storage::LARGE_BLOBS)?
            .unwrap_or_else(|| EMPTY_ARRAY.to_vec()))
    }

    /// Step 4: a read.
    fn read_large_blobs(
        &mut self,
        request: &Request<'_>,
        get: u64,
        offset: u64,
    ) -> Result<Value, StatusCode> {
        // a–b: nothing that belongs to a write.
        if request.length.is_some()
            || request.pin_uv_auth_param.is_some()
            || request.pin_uv_auth_protocol.is_some()
        {
            return Err(StatusCode::InvalidParameter);
        }
        // c: at most one fragment.
        if get > len_u64(max_fragment_length(self.config.max_msg_size)) {
            return Err(StatusCode::InvalidLength);
        }
        // d–e: from offset, as many bytes as there are up to `get` (none at the very end).
        let array = self.serialized_large_blob_array()?;
        let start = usize::try_from(offset)
            .ok()
            .filter(|start| *start <= array.len())
            .ok_or(StatusCode::InvalidParameter)?;
        let count = usize::try_from(get).unwrap_or(usize::MAX);
        let fragment = array.get(start..).unwrap_or_default();
        let fragment = fragment.get(..count).unwrap_or(fragment);
        Ok(cbor::map(alloc::vec![(
            cbor::int(CONFIG),
            cbor::bytes(fragment)
        )]))
    }

    /// Step 5: a write.
    fn write_large_blobs(
        &mut self,
        request: &Request<'_>,
        set: &[u8],
        offset: u64,
    ) -> Result<(), StatusCode> {
        // a: at most one fragment.
        if set.len() > max_fragment_length(self.config.max_msg_size) {
            return Err(StatusCode::InvalidLength);
        }
        if offset == 0 {
            // b: a new array, whose whole length comes with its first fragment.
            let length = request.length.ok_or(StatusCode::InvalidParameter)?;
            if length > len_u64(self.config.max_serialized_large_blob_array) {
                return Err(StatusCode::LargeBlobStorageFull);
            }
            if length < MIN_LENGTH {
                return Err(StatusCode::InvalidParameter);
            }
            // expectedLength = length, expectedNextOffset = 0 (an empty pending array).
            self.large_blobs.pending = Some(PendingArray {
                expected_length: length,
                buffer: Vec::new(),
            });
        } else if request.length.is_some() {
            // c: only the first fragment says how long the array is.
            return Err(StatusCode::InvalidParameter);
        }
        // d: fragments come in order.
        let expected_length = match &self.large_blobs.pending {
            Some(pending) if len_u64(pending.buffer.len()) == offset => pending.expected_length,
            _ => return Err(StatusCode::InvalidSeq),
        };
        // e: user verification, when the authenticator has some form of it (or alwaysUv).
        if self.protected_by_user_verification()? || self.always_uv()? {
            let param = request.pin_uv_auth_param.ok_or(StatusCode::PuatRequired)?;
            let protocol = request
                .pin_uv_auth_protocol
                .ok_or(StatusCode::MissingParameter)?;
            let protocol = u8::try_from(protocol).map_err(|_| StatusCode::InvalidParameter)?;
            let offset_le = u32::try_from(offset)
                .map_err(|_| StatusCode::InvalidParameter)?
                .to_le_bytes();
            let mut message = Vec::with_capacity(32 + 2 + 4 + 32);
            message.extend_from_slice(&[0xff; 32]);
            message.extend_from_slice(&[0x0c, 0x00]);
            message.extend_from_slice(&offset_le);
            message.extend_from_slice(&Sha256::digest(set));
            self.verify_pin_uv_auth_param(
                protocol,
                param,
                &message,
                Permission::LargeBlobWrite,
                None,
            )?;
        }
        // f: never past the announced length.
        if offset.saturating_add(len_u64(set.len())) > expected_length {
            return Err(StatusCode::InvalidParameter);
        }
        // g–i: append; expectedNextOffset moves with the pending array's length.
        let Some(pending) = self.large_blobs.pending.as_mut() else {
            return Err(StatusCode::InvalidSeq);
        };
        pending.buffer.extend_from_slice(set);
        if len_u64(pending.buffer.len()) < expected_length {
            // k: more to come.
            return Ok(());
        }
        // j: complete: the hash must match, then the array replaces the stored one.
        let Some(complete) = self.large_blobs.pending.take() else {
            return Err(StatusCode::InvalidSeq);
        };
        if !hash_matches(&complete.buffer) {
            return Err(StatusCode::IntegrityFailure);
        }
        self.platform
            .store()
            .commit(&[Write::Put(storage::LARGE_BLOBS, &complete.buffer)])
            .map_err(|error| match error {
                StoreError::Full => StatusCode::LargeBlobStorageFull,
                StoreError::Failed => StatusCode::from(error),
            })
    }

    /// Forgets a write in progress (power cycle, authenticatorReset).
    pub(crate) fn abandon_large_blob_write(&mut self) {
        self.large_blobs = LargeBlobState::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_empty_array_is_0x80_and_its_hash() {
        let digest = Sha256::digest([0x80]);
        assert_eq!(EMPTY_ARRAY.first(), Some(&0x80));
        assert_eq!(EMPTY_ARRAY.get(1..), digest.get(..16));
        assert!(hash_matches(&EMPTY_ARRAY));
        assert!(!hash_matches(&EMPTY_ARRAY[..16]));
        let mut damaged = EMPTY_ARRAY;
        damaged[0] = 0x81;
        assert!(!hash_matches(&damaged));
    }

    #[test]
    fn fragments_are_max_msg_size_less_64() {
        assert_eq!(max_fragment_length(7609), 7545);
        assert_eq!(max_fragment_length(1024), 960);
        assert_eq!(max_fragment_length(10), 0);
    }

    #[test]
    fn debug_shows_lengths_only() {
        let state = LargeBlobState {
            pending: Some(PendingArray {
                expected_length: 40,
                buffer: alloc::vec![0x5a; 20],
            }),
        };
        let shown = alloc::format!("{state:?}");
        assert!(shown.contains("40") && shown.contains("20"));
        assert!(!shown.contains("90"));
    }
}
