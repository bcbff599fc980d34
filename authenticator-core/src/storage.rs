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
//! | `m/pin` | the PIN and built-in UV state, a [`PinRecord`] (absent: no PIN, full retries) |
//! | `m/u2f-attestation` | the device's U2F attestation key (a 32-byte P-256 scalar) followed by its self-signed DER certificate, made at the first U2F_REGISTER without batch attestation |
//! | `m/config` | what authenticatorConfig changed, a [`ConfigRecord`](crate::authenticator_config::ConfigRecord) (absent: the [`Config`](crate::Config) defaults) |
//! | `m/large-blobs` | the serialized large-blob array of authenticatorLargeBlobs (CTAP 2.1 §6.10), written whole by its last fragment (absent: the empty array) |
//! | `c/` ‖ rpIdHash ‖ credentialId | a discoverable credential's [`ResidentRecord`] |
//! | `u/` ‖ rpIdHash ‖ userId | the credential ID holding that account (one per RP and user) |
//! | `n/` ‖ SHA-256(credentialId)\[..16\] | per-credential counter of a non-discoverable credential |
//! | `x/` ‖ rpIdHash ‖ credentialId | a *kept* non-discoverable credential's [`ResidentRecord`]: one made while [`Config::keep_non_discoverable`](crate::Config) is on, or one imported ([`credential_io`](crate::credential_io)); never discovered, never listed by credential management, found only by its ID |
//!
//! Records are CBOR maps with small integer keys and a format version; fields only ever get
//! added, with defaults for records written before them.
//!
//! A credential ID this device sealed carries the credential's key ([`crate::credential`]); an
//! *imported* credential keeps the ID it came with, and its key is sealed the same way into the
//! record's `sealedKey` member instead. Imported credentials count signatures with their own
//! counter (member 5) whatever the device's counter mode, except that
//! [`CounterMode::AlwaysZero`](crate::CounterMode) answers 0 for every credential.

use alloc::string::String;
use alloc::vec::Vec;

use zeroize::{Zeroize, Zeroizing};

use crate::cbor::{self, Key, Members, Value};
use crate::platform::{Store, Write};
use crate::status::StatusCode;

pub(crate) const MASTER_KEY: &[u8] = b"m/master";
pub(crate) const GLOBAL_COUNTER: &[u8] = b"m/counter";
pub(crate) const SEQUENCE: &[u8] = b"m/sequence";
pub(crate) const RESIDENT_COUNT: &[u8] = b"m/resident-count";
pub(crate) const U2F_ATTESTATION: &[u8] = b"m/u2f-attestation";
pub(crate) const PIN_STATE: &[u8] = b"m/pin";
pub(crate) const CONFIG: &[u8] = b"m/config";
pub(crate) const LARGE_BLOBS: &[u8] = b"m/large-blobs";

/// `c/`: the prefix of every discoverable credential.
pub(crate) const RESIDENT_PREFIX: &[u8] = b"c/";

/// `x/`: the prefix of every kept non-discoverable credential.
pub(crate) const KEPT_PREFIX: &[u8] = b"x/";

/// Where a credential's record lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partition {
    /// `c/`: a discoverable credential.
    Resident,
    /// `x/`: a kept non-discoverable credential.
    Kept,
}

impl Partition {
    /// The partition's key prefix.
    pub(crate) const fn prefix(self) -> &'static [u8] {
        match self {
            Partition::Resident => RESIDENT_PREFIX,
            Partition::Kept => KEPT_PREFIX,
        }
    }

    /// prefix ‖ rpIdHash ‖ credentialId.
    pub(crate) fn key(self, rp_id_hash: &[u8; 32], credential_id: &[u8]) -> Vec<u8> {
        let mut key = Vec::with_capacity(2 + 32 + credential_id.len());
        key.extend_from_slice(self.prefix());
        key.extend_from_slice(rp_id_hash);
        key.extend_from_slice(credential_id);
        key
    }
}

/// Splits a `x/` ‖ rpIdHash ‖ credentialId key into its rpIdHash and credential ID.
pub(crate) fn split_kept_key(key: &[u8]) -> Option<([u8; 32], &[u8])> {
    let rest = key.strip_prefix(KEPT_PREFIX)?;
    let (hash, credential_id) = rest.split_first_chunk::<32>()?;
    Some((*hash, credential_id))
}

/// Splits a `c/` ‖ rpIdHash ‖ credentialId key into its rpIdHash and credential ID.
pub(crate) fn split_credential_key(key: &[u8]) -> Option<([u8; 32], &[u8])> {
    let rest = key.strip_prefix(RESIDENT_PREFIX)?;
    let (hash, credential_id) = rest.split_first_chunk::<32>()?;
    Some((*hash, credential_id))
}

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

/// One RP's discoverable credentials, newest first. A record that does not decode makes the
/// whole read fail: a damaged store is reported, never silently shortened.
pub(crate) fn resident_records(
    store: &impl Store,
    rp_id_hash: &[u8; 32],
) -> Result<Vec<ResidentRecord>, StatusCode> {
    let mut records = Vec::new();
    let mut damaged = false;
    store.scan_prefix(&rp_prefix(rp_id_hash), &mut |_, value| {
        match ResidentRecord::from_bytes(value) {
            Ok(record) => records.push(record),
            Err(_) => damaged = true,
        }
        !damaged
    })?;
    if damaged {
        return Err(StatusCode::Other);
    }
    records.sort_by_key(|record| core::cmp::Reverse(record.sequence));
    Ok(records)
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

/// The authData bits a record's `backupFlags` may hold: BE (0x08) and BS (0x10).
const BACKUP_BITS: u8 = 0x08 | 0x10;

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
    /// The credBlob given at registration (CTAP 2.1 §12.2), at most
    /// [`MAX_CRED_BLOB_LENGTH`](crate::extensions::MAX_CRED_BLOB_LENGTH) bytes.
    pub cred_blob: Option<Vec<u8>>,
    /// The credential's largeBlobKey (CTAP 2.1 §12.3), made at registration when asked for.
    pub large_blob_key: Option<LargeBlobKey>,
    /// An imported credential's key, sealed like a credential ID of this device (same format,
    /// bound to the RP): its own ID is the one it was imported with, which this device cannot
    /// open. `None` for credentials this device made (their ID carries the key).
    pub sealed_key: Option<Vec<u8>>,
    /// The backup flags of this credential (authData bits BE `0x08` and BS `0x10`) when they
    /// differ from the device's ([`Config::backup_eligible`](crate::Config)/`backup_state`):
    /// set by an import or by [`set_backup_flags`](crate::Authenticator::set_backup_flags).
    pub backup_flags: Option<u8>,
}

impl ResidentRecord {
    /// Whether the credential was imported (it keeps its own signature counter).
    pub fn imported(&self) -> bool {
        self.sealed_key.is_some()
    }
}

/// A credential's largeBlobKey (CTAP 2.1 §12.3): 32 random bytes under which platforms encrypt
/// the credential's entry in the large-blob array. Zeroized on drop, never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct LargeBlobKey(Zeroizing<[u8; 32]>);

impl LargeBlobKey {
    /// The key with these bytes.
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The key's bytes (for the makeCredential, getAssertion and credential management
    /// responses that carry it).
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl core::fmt::Debug for LargeBlobKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("LargeBlobKey(<redacted>)")
    }
}

impl ResidentRecord {
    /// Encodes the record (format version 1): `{0: 1, 1: credentialId, 2: rpId, 3: user,
    /// 4: sequence, 5: counter}`, and `6: credBlob`, `7: largeBlobKey`, `8: sealedKey`,
    /// `9: backupFlags` when there are some.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut user = alloc::vec![(cbor::text("id"), cbor::bytes(&self.user.id))];
        if let Some(name) = &self.user.name {
            user.push((cbor::text("name"), cbor::text(name)));
        }
        if let Some(display_name) = &self.user.display_name {
            user.push((cbor::text("displayName"), cbor::text(display_name)));
        }
        let mut members = alloc::vec![
            (cbor::int(0), cbor::int(RECORD_VERSION)),
            (cbor::int(1), cbor::bytes(&self.credential_id)),
            (cbor::int(2), cbor::text(&self.rp_id)),
            (cbor::int(3), cbor::map(user)),
            (cbor::int(4), Value::Integer(self.sequence.into())),
            (cbor::int(5), Value::Integer(self.counter.into())),
        ];
        if let Some(blob) = &self.cred_blob {
            members.push((cbor::int(6), cbor::bytes(blob)));
        }
        if let Some(key) = &self.large_blob_key {
            members.push((cbor::int(7), cbor::bytes(key.expose())));
        }
        if let Some(sealed) = &self.sealed_key {
            members.push((cbor::int(8), cbor::bytes(sealed)));
        }
        if let Some(bits) = self.backup_flags {
            members.push((cbor::int(9), cbor::int(bits.into())));
        }
        cbor::to_vec(&cbor::map(members))
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
            cred_blob: members
                .get(Key::Int(6))
                .map(|blob| cbor::as_bytes(blob).map(<[u8]>::to_vec))
                .transpose()?,
            large_blob_key: members
                .get(Key::Int(7))
                .map(|key| {
                    <[u8; 32]>::try_from(cbor::as_bytes(key)?)
                        .map(LargeBlobKey::new)
                        .map_err(|_| StatusCode::Other)
                })
                .transpose()?,
            sealed_key: members
                .get(Key::Int(8))
                .map(|sealed| cbor::as_bytes(sealed).map(<[u8]>::to_vec))
                .transpose()?,
            backup_flags: members
                .get(Key::Int(9))
                .map(|bits| {
                    u8::try_from(cbor::as_int(bits)?)
                        .ok()
                        .filter(|bits| bits & !BACKUP_BITS == 0)
                        .ok_or(StatusCode::Other)
                })
                .transpose()?,
        })
    }
}

/// Deletes a discoverable credential in one atomic batch: its record, its account index entry
/// (when that still names this credential) and one off `m/resident-count`. The one place a
/// discoverable credential is deleted (credential management; makeCredential replaces an
/// account's credential in its own batch).
pub(crate) fn delete_resident(
    store: &mut impl Store,
    rp_id_hash: &[u8; 32],
    record: &ResidentRecord,
) -> Result<(), StatusCode> {
    let record_key = credential_key(rp_id_hash, &record.credential_id);
    let account_key = user_key(rp_id_hash, &record.user.id);
    let indexed = store.get(&account_key)?.as_deref() == Some(record.credential_id.as_slice());
    let count = read_u32(store, RESIDENT_COUNT)?
        .saturating_sub(1)
        .to_be_bytes();
    let mut batch = Vec::with_capacity(3);
    batch.push(Write::Delete(&record_key));
    if indexed {
        batch.push(Write::Delete(&account_key));
    }
    batch.push(Write::Put(RESIDENT_COUNT, &count));
    store.commit(&batch)?;
    Ok(())
}

const PIN_RECORD_VERSION: i64 = 1;

/// The most PIN retries (CTAP 2.1 §6.5.2: `pinRetries` starts at 8).
pub const MAX_PIN_RETRIES: u8 = 8;
/// The most built-in user verification retries (`uvRetries`).
pub const MAX_UV_RETRIES: u8 = 8;
/// The shortest PIN CTAP allows, in Unicode code points (the default `minPINLength`).
pub const DEFAULT_MIN_PIN_LENGTH: u8 = 4;

/// The PIN and built-in user verification state that survives power cycles (CTAP 2.1 §6.5.2),
/// kept under `m/pin`. No record means no PIN and every counter full.
///
/// Only LEFT(SHA-256(PIN), 16) is kept, never the PIN. The hash is zeroized on drop and never
/// shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct PinRecord {
    /// `CurrentStoredPIN`: LEFT(SHA-256(PIN), 16), `None` while no PIN is set.
    pub pin_hash: Option<[u8; 16]>,
    /// `PINCodePointLength`: the current PIN's length in Unicode code points (0 without PIN).
    pub pin_code_points: u8,
    /// `pinRetries`: wrong PINs left before the PIN blocks (0 = blocked until reset).
    pub pin_retries: u8,
    /// `forcePINChange`: the PIN must be changed before a token is issued again.
    pub force_pin_change: bool,
    /// `minPINLength`, in Unicode code points.
    pub min_pin_length: u8,
    /// `uvRetries`: failed built-in verifications left before it blocks.
    pub uv_retries: u8,
}

impl Default for PinRecord {
    fn default() -> Self {
        Self {
            pin_hash: None,
            pin_code_points: 0,
            pin_retries: MAX_PIN_RETRIES,
            force_pin_change: false,
            min_pin_length: DEFAULT_MIN_PIN_LENGTH,
            uv_retries: MAX_UV_RETRIES,
        }
    }
}

impl core::fmt::Debug for PinRecord {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PinRecord")
            .field("pin_hash", &self.pin_hash.map(|_| "<redacted>"))
            .field("pin_code_points", &self.pin_code_points)
            .field("pin_retries", &self.pin_retries)
            .field("force_pin_change", &self.force_pin_change)
            .field("min_pin_length", &self.min_pin_length)
            .field("uv_retries", &self.uv_retries)
            .finish()
    }
}

impl Drop for PinRecord {
    fn drop(&mut self) {
        if let Some(hash) = &mut self.pin_hash {
            hash.zeroize();
        }
    }
}

impl PinRecord {
    /// Encodes the record (format version 1):
    /// `{0: 1, 1: pinHash, 2: pinCodePoints, 3: pinRetries, 4: forcePINChange,
    /// 5: minPINLength, 6: uvRetries}`, members 1 and 2 only while a PIN is set.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut entries = alloc::vec![(cbor::int(0), cbor::int(PIN_RECORD_VERSION))];
        if let Some(hash) = &self.pin_hash {
            entries.push((cbor::int(1), cbor::bytes(hash)));
            entries.push((cbor::int(2), cbor::int(self.pin_code_points.into())));
        }
        entries.extend([
            (cbor::int(3), cbor::int(self.pin_retries.into())),
            (cbor::int(4), Value::Bool(self.force_pin_change)),
            (cbor::int(5), cbor::int(self.min_pin_length.into())),
            (cbor::int(6), cbor::int(self.uv_retries.into())),
        ]);
        let mut value = cbor::map(entries);
        let bytes = Zeroizing::new(cbor::to_vec(&value));
        if let Value::Map(entries) = &mut value
            && let Some((_, Value::Bytes(hash))) = entries.get_mut(1)
        {
            hash.zeroize();
        }
        bytes
    }

    /// Decodes a record; a newer format, a damaged record or out-of-range counters are an
    /// error, never a silent default.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, StatusCode> {
        let mut value = cbor::decode(bytes)?;
        let record = Self::from_value(&value);
        if let Value::Map(entries) = &mut value {
            for (_, item) in entries.iter_mut() {
                if let Value::Bytes(secret) = item {
                    secret.zeroize();
                }
            }
        }
        record
    }

    fn from_value(value: &Value) -> Result<Self, StatusCode> {
        let damaged = |_| StatusCode::Other;
        let members = Members::of(value).map_err(damaged)?;
        let small = |key: u64, max: u8| -> Result<u8, StatusCode> {
            let n =
                cbor::as_int(members.required(Key::Int(key)).map_err(damaged)?).map_err(damaged)?;
            u8::try_from(n)
                .ok()
                .filter(|n| *n <= max)
                .ok_or(StatusCode::Other)
        };
        if cbor::as_int(members.required(Key::Int(0)).map_err(damaged)?).map_err(damaged)?
            != PIN_RECORD_VERSION
        {
            return Err(StatusCode::Other);
        }
        let pin_hash = match members.get(Key::Int(1)) {
            Some(hash) => Some(
                <[u8; 16]>::try_from(cbor::as_bytes(hash).map_err(damaged)?)
                    .map_err(|_| StatusCode::Other)?,
            ),
            None => None,
        };
        let pin_code_points = if pin_hash.is_some() { small(2, 63)? } else { 0 };
        Ok(Self {
            pin_hash,
            pin_code_points,
            pin_retries: small(3, MAX_PIN_RETRIES)?,
            force_pin_change: cbor::as_bool(members.required(Key::Int(4)).map_err(damaged)?)
                .map_err(damaged)?,
            min_pin_length: small(5, 63)?,
            uv_retries: small(6, MAX_UV_RETRIES)?,
        })
    }
}

/// Reads the PIN record (absent = the default: no PIN, full counters).
pub(crate) fn read_pin_record(store: &impl Store) -> Result<PinRecord, StatusCode> {
    match store.get(PIN_STATE)? {
        None => Ok(PinRecord::default()),
        Some(bytes) => {
            let bytes = Zeroizing::new(bytes);
            PinRecord::from_bytes(&bytes)
        }
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
            cred_blob: None,
            large_blob_key: None,
            sealed_key: None,
            backup_flags: None,
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

    /// Golden bytes of a version-1 record with a largeBlobKey (member 7).
    #[test]
    fn record_v1_with_large_blob_key_golden_bytes() {
        let record = ResidentRecord {
            large_blob_key: Some(LargeBlobKey::new([0x4B; 32])),
            ..sample()
        };
        // {0: 1, 1: h'abababab', 2: "example.com", 3: {"id": h'0102', "name": "alice"},
        //  4: 7, 5: 3, 7: h'4b4b…4b' (32 bytes)}
        let expected = alloc::format!(
            "a700010144abababab026b6578616d706c652e636f6d03a262696442010264\
             6e616d6565616c69636504070503075820{}",
            "4b".repeat(32)
        );
        let hex: String = record
            .to_bytes()
            .iter()
            .map(|b| alloc::format!("{b:02x}"))
            .collect();
        assert_eq!(hex, expected);
        assert_eq!(
            ResidentRecord::from_bytes(&record.to_bytes()),
            Ok(record.clone())
        );
        // A key of another length is damage, not a key.
        let mut short = record.to_bytes();
        let at = short.len() - 34;
        assert_eq!(&short[at..at + 2], &[0x58, 0x20]);
        short[at + 1] = 0x1F;
        short.pop();
        assert_eq!(ResidentRecord::from_bytes(&short), Err(StatusCode::Other));
        // Debug never shows the key.
        let shown = alloc::format!("{record:?}");
        assert!(shown.contains("LargeBlobKey(<redacted>)"));
        assert!(!shown.contains("75, 75"));
    }

    /// Golden bytes of a version-1 record with a credBlob (member 6).
    #[test]
    fn record_v1_with_cred_blob_golden_bytes() {
        let record = ResidentRecord {
            cred_blob: Some(b"blob".to_vec()),
            ..sample()
        };
        // {0: 1, 1: h'abababab', 2: "example.com", 3: {"id": h'0102', "name": "alice"},
        //  4: 7, 5: 3, 6: h'626c6f62'}
        let expected = "a700010144abababab026b6578616d706c652e636f6d03a262696442010264\
                        6e616d6565616c696365040705030644626c6f62";
        let hex: String = record
            .to_bytes()
            .iter()
            .map(|b| alloc::format!("{b:02x}"))
            .collect();
        assert_eq!(hex, expected);
        assert_eq!(ResidentRecord::from_bytes(&record.to_bytes()), Ok(record));
        // An empty credBlob is kept as such, not dropped.
        let empty = ResidentRecord {
            cred_blob: Some(Vec::new()),
            ..sample()
        };
        assert_eq!(ResidentRecord::from_bytes(&empty.to_bytes()), Ok(empty));
    }

    /// Golden bytes of a version-1 record of an imported credential (members 8 and 9).
    #[test]
    fn record_v1_imported_golden_bytes() {
        let record = ResidentRecord {
            sealed_key: Some(alloc::vec![0x5E; 3]),
            backup_flags: Some(0x18),
            ..sample()
        };
        // {…, 4: 7, 5: 3, 8: h'5e5e5e', 9: 24}
        let expected = "a800010144abababab026b6578616d706c652e636f6d03a262696442010264\
                        6e616d6565616c6963650407050308435e5e5e091818";
        let hex: String = record
            .to_bytes()
            .iter()
            .map(|b| alloc::format!("{b:02x}"))
            .collect();
        assert_eq!(hex, expected);
        assert!(record.imported() && !sample().imported());
        assert_eq!(
            ResidentRecord::from_bytes(&record.to_bytes()),
            Ok(record.clone())
        );
        // Backup flags other than BE and BS are damage.
        let odd = ResidentRecord {
            backup_flags: Some(0x01),
            ..record
        };
        assert_eq!(
            ResidentRecord::from_bytes(&odd.to_bytes()),
            Err(StatusCode::Other)
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

    fn pin_sample() -> PinRecord {
        PinRecord {
            pin_hash: Some([0x11; 16]),
            pin_code_points: 4,
            pin_retries: 7,
            force_pin_change: true,
            min_pin_length: 6,
            uv_retries: 5,
        }
    }

    /// Golden bytes of the PIN record, format version 1.
    #[test]
    fn pin_record_v1_golden_bytes() {
        let hex =
            |bytes: &[u8]| -> String { bytes.iter().map(|b| alloc::format!("{b:02x}")).collect() };
        // {0: 1, 1: h'11…11', 2: 4, 3: 7, 4: true, 5: 6, 6: 5}
        assert_eq!(
            hex(&pin_sample().to_bytes()),
            "a700010150111111111111111111111111111111110204030704f505060605"
        );
        assert_eq!(
            PinRecord::from_bytes(&pin_sample().to_bytes()),
            Ok(pin_sample())
        );
        // Without a PIN: {0: 1, 3: 8, 4: false, 5: 4, 6: 8}
        assert_eq!(
            hex(&PinRecord::default().to_bytes()),
            "a50001030804f405040608"
        );
        assert_eq!(
            PinRecord::from_bytes(&PinRecord::default().to_bytes()),
            Ok(PinRecord::default())
        );
    }

    #[test]
    fn damaged_pin_records_are_refused() {
        let good = pin_sample().to_bytes();
        let mut newer = good.to_vec();
        newer[2] = 0x02; // version 2
        assert!(PinRecord::from_bytes(&newer).is_err());
        // pinRetries 9 is more than there can be.
        let mut too_many = good.to_vec();
        let at = too_many.len() - 8;
        assert_eq!(&too_many[at..at + 2], &[0x03, 0x07]);
        too_many[at + 1] = 0x09;
        assert!(PinRecord::from_bytes(&too_many).is_err());
        assert!(PinRecord::from_bytes(&[0xA0]).is_err());
        assert!(PinRecord::from_bytes(&good[..good.len() - 1]).is_err());
    }

    #[test]
    fn pin_record_debug_hides_the_hash() {
        let shown = alloc::format!("{:?}", pin_sample());
        assert!(shown.contains("redacted"));
        assert!(!shown.contains("17, 17"));
    }

    #[test]
    fn partitions_never_overlap() {
        let tags: Vec<Vec<u8>> = alloc::vec![
            MASTER_KEY.to_vec(),
            GLOBAL_COUNTER.to_vec(),
            SEQUENCE.to_vec(),
            RESIDENT_COUNT.to_vec(),
            U2F_ATTESTATION.to_vec(),
            PIN_STATE.to_vec(),
            CONFIG.to_vec(),
            LARGE_BLOBS.to_vec(),
            rp_prefix(&[0; 32]),
            user_key(&[0; 32], &[]),
            non_resident_counter_key(&[]),
            Partition::Kept.key(&[0; 32], &[]),
        ];
        let partitions: Vec<&[u8]> = tags.iter().map(|k| &k[..2]).collect();
        // Credential, user and counter partitions are distinct from each other and from meta.
        let meta_count = 8;
        assert_eq!(partitions[meta_count], b"c/");
        assert_eq!(partitions[meta_count + 1], b"u/");
        assert_eq!(partitions[meta_count + 2], b"n/");
        assert_eq!(partitions[meta_count + 3], b"x/");
        assert_eq!(
            Partition::Resident.key(&[0; 32], b"id"),
            credential_key(&[0; 32], b"id")
        );
        for meta in &partitions[..meta_count] {
            assert_eq!(*meta, b"m/");
        }
        // Meta keys are not prefixes of one another.
        for (i, a) in tags[..meta_count].iter().enumerate() {
            for (j, b) in tags[..meta_count].iter().enumerate() {
                assert!(i == j || !b.starts_with(a), "{i} prefixes {j}");
            }
        }
    }
}
