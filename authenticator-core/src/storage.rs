//! What the core keeps in the [`Store`], and under which keys.
//!
//! The key space is partitioned by a one-byte tag followed by `/`; no two partitions share a
//! tag, so a prefix scan of one never sees another (tested below).
//!
//! | key | value |
//! |---|---|
//! | `m/master` | the 32-byte master key that seals credential IDs |
//! | `m/counter` | the global signature counter (u32, big-endian) |
//! | `m/sequence` | the creation sequence of discoverable credentials (u64, big-endian) |
//! | `m/resident-count` | how many discoverable credentials exist (u32, big-endian) |
//! | `c/` ‖ rpIdHash ‖ credentialId | a discoverable credential's [`ResidentRecord`] |
//! | `u/` ‖ rpIdHash ‖ userId | the credential ID holding that account (one per RP and user) |
//! | `n/` ‖ SHA-256(credentialId)\[..16\] | per-credential counter of a non-discoverable credential |
//!
//! Records are CBOR maps with small integer keys and a format version; fields only ever get
//! added, with defaults for records written before them.

use alloc::string::String;
use alloc::vec::Vec;

use crate::cbor::{self, Key, Members, Value};
use crate::platform::Store;
use crate::status::StatusCode;

pub(crate) const MASTER_KEY: &[u8] = b"m/master";
pub(crate) const GLOBAL_COUNTER: &[u8] = b"m/counter";
pub(crate) const SEQUENCE: &[u8] = b"m/sequence";
pub(crate) const RESIDENT_COUNT: &[u8] = b"m/resident-count";

/// `c/` ‖ rpIdHash: the prefix of one RP's discoverable credentials.
pub(crate) fn rp_prefix(rp_id_hash: &[u8; 32]) -> Vec<u8> {
    let mut key = Vec::with_capacity(2 + 32 + 64);
    key.extend_from_slice(b"c/");
    key.extend_from_slice(rp_id_hash);
    key
}

/// `c/` ‖ rpIdHash ‖ credentialId.
pub(crate) fn credential_key(rp_id_hash: &[u8; 32], credential_id: &[u8]) -> Vec<u8> {
    let mut key = rp_prefix(rp_id_hash);
    key.extend_from_slice(credential_id);
    key
}

/// `u/` ‖ rpIdHash ‖ userId.
pub(crate) fn user_key(rp_id_hash: &[u8; 32], user_id: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(2 + 32 + user_id.len());
    key.extend_from_slice(b"u/");
    key.extend_from_slice(rp_id_hash);
    key.extend_from_slice(user_id);
    key
}

/// `n/` ‖ SHA-256(credentialId)[..16].
pub(crate) fn non_resident_counter_key(credential_id: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(credential_id);
    let mut key = Vec::with_capacity(18);
    key.extend_from_slice(b"n/");
    key.extend_from_slice(digest.get(..16).unwrap_or_default());
    key
}

/// Reads a big-endian u32 (absent = 0).
pub(crate) fn read_u32(store: &impl Store, key: &[u8]) -> Result<u32, StatusCode> {
    match store.get(key)? {
        None => Ok(0),
        Some(bytes) => Ok(u32::from_be_bytes(
            bytes.as_slice().try_into().map_err(|_| StatusCode::Other)?,
        )),
    }
}

/// Reads a big-endian u64 (absent = 0).
pub(crate) fn read_u64(store: &impl Store, key: &[u8]) -> Result<u64, StatusCode> {
    match store.get(key)? {
        None => Ok(0),
        Some(bytes) => Ok(u64::from_be_bytes(
            bytes.as_slice().try_into().map_err(|_| StatusCode::Other)?,
        )),
    }
}

/// The account a credential belongs to (WebAuthn's PublicKeyCredentialUserEntity).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct User {
    /// The user handle (1–64 bytes).
    pub id: Vec<u8>,
    /// Account name, as the RP gave it (truncated to 64 bytes).
    pub name: Option<String>,
    /// Display name (truncated to 64 bytes).
    pub display_name: Option<String>,
}

const RECORD_VERSION: i64 = 1;

/// A discoverable credential as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResidentRecord {
    /// The sealed credential ID (which also carries the private key).
    pub credential_id: Vec<u8>,
    /// The RP ID as given at registration.
    pub rp_id: String,
    /// The account.
    pub user: User,
    /// Creation order across the device: higher is newer.
    pub sequence: u64,
    /// Per-credential signature counter (used in [`CounterMode::PerCredential`](crate::config::CounterMode)).
    pub counter: u32,
}

impl ResidentRecord {
    /// Encodes the record (format version 1).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut user = alloc::vec![(cbor::text("id"), cbor::bytes(&self.user.id))];
        if let Some(name) = &self.user.name {
            user.push((cbor::text("name"), cbor::text(name)));
        }
        if let Some(display_name) = &self.user.display_name {
            user.push((cbor::text("displayName"), cbor::text(display_name)));
        }
        cbor::to_vec(&cbor::map(alloc::vec![
            (cbor::int(0), cbor::int(RECORD_VERSION)),
            (cbor::int(1), cbor::bytes(&self.credential_id)),
            (cbor::int(2), cbor::text(&self.rp_id)),
            (cbor::int(3), cbor::map(user)),
            (cbor::int(4), Value::Integer(self.sequence.into())),
            (cbor::int(5), Value::Integer(self.counter.into())),
        ]))
    }

    /// Decodes a record; a record from a newer format or a damaged one is an error, never a
    /// silent default.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, StatusCode> {
        let value = cbor::decode(bytes)?;
        let members = Members::of(&value)?;
        let version = cbor::as_int(members.required(Key::Int(0))?)?;
        if version != RECORD_VERSION {
            return Err(StatusCode::Other);
        }
        let user_value = members.required(Key::Int(3))?;
        let user = Members::of(user_value)?;
        let optional_text = |key| -> Result<Option<String>, StatusCode> {
            user.get(Key::Text(key))
                .map(|v| cbor::as_text(v).map(String::from))
                .transpose()
        };
        Ok(Self {
            credential_id: cbor::as_bytes(members.required(Key::Int(1))?)?.to_vec(),
            rp_id: String::from(cbor::as_text(members.required(Key::Int(2))?)?),
            user: User {
                id: cbor::as_bytes(user.required(Key::Text("id"))?)?.to_vec(),
                name: optional_text("name")?,
                display_name: optional_text("displayName")?,
            },
            sequence: u64::try_from(cbor::as_int(members.required(Key::Int(4))?)?)
                .map_err(|_| StatusCode::Other)?,
            counter: u32::try_from(cbor::as_int(members.required(Key::Int(5))?)?)
                .map_err(|_| StatusCode::Other)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ResidentRecord {
        ResidentRecord {
            credential_id: alloc::vec![0xAB; 4],
            rp_id: String::from("example.com"),
            user: User {
                id: alloc::vec![1, 2],
                name: Some(String::from("alice")),
                display_name: None,
            },
            sequence: 7,
            counter: 3,
        }
    }

    /// Golden bytes of format version 1: if this changes, old stores stop reading.
    #[test]
    fn record_v1_golden_bytes() {
        // {0: 1, 1: h'abababab', 2: "example.com", 3: {"id": h'0102', "name": "alice"},
        //  4: 7, 5: 3}
        let expected = "a600010144abababab026b6578616d706c652e636f6d03a262696442010264\
                        6e616d6565616c69636504070503";
        let hex: String = sample()
            .to_bytes()
            .iter()
            .map(|b| alloc::format!("{b:02x}"))
            .collect();
        assert_eq!(hex, expected);
        assert_eq!(
            ResidentRecord::from_bytes(&sample().to_bytes()),
            Ok(sample())
        );
    }

    #[test]
    fn newer_or_damaged_records_are_refused() {
        let mut bytes = sample().to_bytes();
        bytes[2] = 0x02; // version 2
        assert!(ResidentRecord::from_bytes(&bytes).is_err());
        assert!(ResidentRecord::from_bytes(&[0xA0]).is_err());
        assert!(ResidentRecord::from_bytes(&[0xFF]).is_err());
    }

    #[test]
    fn partitions_never_overlap() {
        let tags: Vec<Vec<u8>> = alloc::vec![
            MASTER_KEY.to_vec(),
            GLOBAL_COUNTER.to_vec(),
            SEQUENCE.to_vec(),
            RESIDENT_COUNT.to_vec(),
            rp_prefix(&[0; 32]),
            user_key(&[0; 32], &[]),
            non_resident_counter_key(&[]),
        ];
        let partitions: Vec<&[u8]> = tags.iter().map(|k| &k[..2]).collect();
        // Credential, user and counter partitions are distinct from each other and from meta.
        assert_eq!(partitions[4], b"c/");
        assert_eq!(partitions[5], b"u/");
        assert_eq!(partitions[6], b"n/");
        for meta in &partitions[..4] {
            assert_eq!(*meta, b"m/");
        }
        // Meta keys are not prefixes of one another.
        for (i, a) in tags[..4].iter().enumerate() {
            for (j, b) in tags[..4].iter().enumerate() {
                assert!(i == j || !b.starts_with(a), "{i} prefixes {j}");
            }
        }
    }
}
