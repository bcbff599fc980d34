//! The platform's side of large, per-credential blobs (CTAP 2.1 §6.10.3): the serialized
//! large-blob array read and written with authenticatorLargeBlobs, and its entries sealed under
//! each credential's `largeBlobKey`.
//!
//! The array is a CBOR array followed by LEFT(SHA-256(array), 16); an array whose hash does
//! not match is treated as empty, as the spec tells platforms to. Each entry is
//! `{1: ciphertext, 2: nonce, 3: origSize}`: AES-256-GCM under the credential's largeBlobKey
//! with a random 12-byte nonce and associated data `"blob" ‖ uint64LE(origSize)`, over the
//! DEFLATE (RFC 1951, raw) compression of the blob. Reading tries every entry with the key
//! and inflates at most `origSize` bytes; writing replaces the entries that key opens with
//! one new entry and writes the whole array back in fragments of `maxMsgSize − 64`.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use authenticator_core::cbor::{self, Key, Members, Value};
use rand_core::CryptoRng;
use sha2::{Digest, Sha256};

use crate::ctap::{AuthenticatorInfo, CommandError, Ctap2, command, command_map};
use crate::pin::PinUvAuthToken;

/// The largest array read when the authenticator does not say (`maxSerializedLargeBlobArray`).
const DEFAULT_MAX_ARRAY: usize = 1 << 20;

/// The truncated hash's length.
const HASH_LEN: usize = 16;

fn truncated_hash(data: &[u8]) -> [u8; HASH_LEN] {
    let digest = Sha256::digest(data);
    let mut out = [0u8; HASH_LEN];
    out.copy_from_slice(digest.get(..HASH_LEN).unwrap_or(&[0; HASH_LEN]));
    out
}

/// The array's entries from its serialization; a bad hash or bad CBOR reads as empty.
pub fn parse_array(serialized: &[u8]) -> Vec<Value> {
    let Some(split) = serialized.len().checked_sub(HASH_LEN) else {
        return Vec::new();
    };
    let (body, hash) = serialized.split_at(split);
    if body.is_empty() || truncated_hash(body) != hash {
        return Vec::new();
    }
    match cbor::decode(body) {
        Ok(Value::Array(entries)) => entries,
        _ => Vec::new(),
    }
}

/// Serializes entries: the CBOR array and its truncated hash.
pub fn serialize_array(entries: &[Value]) -> Vec<u8> {
    let mut out = cbor::to_vec(&Value::Array(entries.to_vec()));
    let hash = truncated_hash(&out);
    out.extend_from_slice(&hash);
    out
}

fn associated_data(orig_size: u64) -> Vec<u8> {
    let mut ad = b"blob".to_vec();
    ad.extend_from_slice(&orig_size.to_le_bytes());
    ad
}

/// The blob an entry holds, if `key` opens it.
pub fn open_entry(entry: &Value, key: &[u8; 32]) -> Option<Vec<u8>> {
    let members = Members::of(entry).ok()?;
    let ciphertext = cbor::as_bytes(members.get(Key::Int(1))?).ok()?;
    let nonce: [u8; 12] = cbor::as_bytes(members.get(Key::Int(2))?)
        .ok()?
        .try_into()
        .ok()?;
    let orig_size = u64::try_from(cbor::as_int(members.get(Key::Int(3))?).ok()?).ok()?;
    let cipher = Aes256Gcm::new_from_slice(key).ok()?;
    let compressed = cipher
        .decrypt(
            &Nonce::from(nonce),
            Payload {
                msg: ciphertext,
                aad: &associated_data(orig_size),
            },
        )
        .ok()?;
    let limit = usize::try_from(orig_size).ok()?;
    let blob = miniz_oxide::inflate::decompress_to_vec_with_limit(&compressed, limit).ok()?;
    (blob.len() == limit).then_some(blob)
}

/// A new entry holding `blob` under `key`.
pub fn seal_entry(blob: &[u8], key: &[u8; 32], rng: &mut impl CryptoRng) -> Option<Value> {
    let orig_size = u64::try_from(blob.len()).ok()?;
    let compressed = miniz_oxide::deflate::compress_to_vec(blob, 6);
    let mut nonce = [0u8; 12];
    rng.fill_bytes(&mut nonce);
    let cipher = Aes256Gcm::new_from_slice(key).ok()?;
    let ciphertext = cipher
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: &compressed,
                aad: &associated_data(orig_size),
            },
        )
        .ok()?;
    Some(cbor::map(vec![
        (cbor::int(1), cbor::bytes(&ciphertext)),
        (cbor::int(2), cbor::bytes(&nonce)),
        (cbor::int(3), Value::Integer(orig_size.into())),
    ]))
}

fn uint(n: usize) -> Value {
    Value::Integer(u64::try_from(n).unwrap_or(u64::MAX).into())
}

/// Reads the whole serialized array and returns its entries.
pub async fn read_entries<C: Ctap2 + ?Sized>(
    channel: &mut C,
    info: &AuthenticatorInfo,
) -> Result<Vec<Value>, CommandError> {
    let fragment = info.max_fragment_length();
    let limit = info
        .max_serialized_large_blob_array
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(DEFAULT_MAX_ARRAY);
    let mut serialized = Vec::new();
    loop {
        let params = cbor::map(vec![
            (cbor::int(1), uint(fragment)),
            (cbor::int(3), uint(serialized.len())),
        ]);
        let response =
            command_map(channel, authenticator_core::command::LARGE_BLOBS, &params).await?;
        let chunk = Members::of(&response)
            .ok()
            .and_then(|m| m.get(Key::Int(1)))
            .and_then(|v| cbor::as_bytes(v).ok())
            .ok_or_else(|| CommandError::Malformed("largeBlobs get has no config".into()))?;
        if chunk.len() > fragment || serialized.len().saturating_add(chunk.len()) > limit {
            return Err(CommandError::Malformed(
                "the large-blob array is longer than announced".into(),
            ));
        }
        serialized.extend_from_slice(chunk);
        if chunk.len() < fragment {
            return Ok(parse_array(&serialized));
        }
    }
}

/// Replaces the entries `key` opens with one holding `blob`, and writes the array back.
/// `token` (with the largeBlobWrite permission) is required when the authenticator is
/// protected by user verification.
pub async fn write_blob<C: Ctap2 + ?Sized>(
    channel: &mut C,
    info: &AuthenticatorInfo,
    key: &[u8; 32],
    blob: &[u8],
    token: Option<&PinUvAuthToken>,
    rng: &mut impl CryptoRng,
) -> Result<(), CommandError> {
    let mut entries = read_entries(channel, info).await?;
    entries.retain(|entry| open_entry(entry, key).is_none());
    let entry = seal_entry(blob, key, rng)
        .ok_or_else(|| CommandError::Malformed("the blob could not be sealed".into()))?;
    entries.push(entry);
    let serialized = serialize_array(&entries);
    if info
        .max_serialized_large_blob_array
        .and_then(|n| usize::try_from(n).ok())
        .is_some_and(|max| serialized.len() > max)
    {
        return Err(CommandError::Status(crate::ctap::CtapStatus(
            authenticator_core::StatusCode::LargeBlobStorageFull.to_byte(),
        )));
    }
    let fragment = info.max_fragment_length();
    let mut offset = 0usize;
    for chunk in serialized.chunks(fragment) {
        let mut params = vec![
            (cbor::int(2), cbor::bytes(chunk)),
            (cbor::int(3), uint(offset)),
        ];
        if offset == 0 {
            params.push((cbor::int(4), uint(serialized.len())));
        }
        if let Some(token) = token {
            // authenticate(token, 32 × 0xff ‖ 0x0c 0x00 ‖ uint32LE(offset) ‖ SHA-256(set))
            let mut message = vec![0xff; 32];
            message.extend_from_slice(&[0x0c, 0x00]);
            let offset32 = u32::try_from(offset).unwrap_or(u32::MAX);
            message.extend_from_slice(&offset32.to_le_bytes());
            message.extend_from_slice(&Sha256::digest(chunk));
            params.push((cbor::int(5), cbor::bytes(&token.authenticate(&message))));
            params.push((cbor::int(6), cbor::int(token.protocol().version().into())));
        }
        command(
            channel,
            authenticator_core::command::LARGE_BLOBS,
            Some(&cbor::map(params)),
        )
        .await?;
        offset = offset.saturating_add(chunk.len());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn the_empty_array_is_the_cores() {
        assert_eq!(
            serialize_array(&[]),
            authenticator_core::large_blobs::EMPTY_ARRAY.to_vec()
        );
        assert!(parse_array(&authenticator_core::large_blobs::EMPTY_ARRAY).is_empty());
    }

    #[test]
    fn entries_open_only_with_their_key() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let blob = b"a certificate, say".repeat(20);
        let entry = seal_entry(&blob, &[1; 32], &mut rng).unwrap();
        assert_eq!(open_entry(&entry, &[1; 32]), Some(blob.clone()));
        assert_eq!(open_entry(&entry, &[2; 32]), None);
        let array = serialize_array(&[entry.clone(), entry]);
        assert_eq!(parse_array(&array).len(), 2);
        // A flipped hash bit empties the array.
        let mut corrupt = array.clone();
        if let Some(last) = corrupt.last_mut() {
            *last ^= 1;
        }
        assert!(parse_array(&corrupt).is_empty());
        assert!(parse_array(&[]).is_empty());
        assert!(parse_array(&[0; 16]).is_empty());
    }

    #[test]
    fn entries_that_lie_about_their_size_do_not_open() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let entry = seal_entry(b"hello", &[3; 32], &mut rng).unwrap();
        let Value::Map(mut entries) = entry else {
            panic!()
        };
        for (k, v) in &mut entries {
            if *k == cbor::int(3) {
                *v = cbor::int(4);
            }
        }
        assert_eq!(open_entry(&Value::Map(entries), &[3; 32]), None);
        assert_eq!(open_entry(&cbor::int(1), &[3; 32]), None);
    }
}
