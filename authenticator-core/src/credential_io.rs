//! Importing and exporting credentials: the shape of the W3C WebDriver "Add Credential" /
//! "Get Credentials" commands and of CDP's `WebAuthn.Credential`, for hosts that automate a
//! device (the daemon's control API) or move credentials between devices.
//!
//! | field | here |
//! |---|---|
//! | credentialId | [`PortableCredential::credential_id`], any 1–1023 bytes |
//! | isResidentCredential | [`PortableCredential::discoverable`] |
//! | rpId | [`PortableCredential::rp_id`] |
//! | privateKey (PKCS#8) | [`PortableCredential::private_key`]; [`private_key_from_pkcs8`] / [`private_key_to_pkcs8`] (P-256 ECDSA and Ed25519) |
//! | userHandle, userName, userDisplayName | [`PortableCredential::user`] |
//! | signCount | [`PortableCredential::sign_count`] |
//! | backupEligibility, backupState | [`PortableCredential::backup_eligible`], [`backup_state`](PortableCredential::backup_state) |
//! | largeBlob | the credential's [`LargeBlobKey`] here; the blob itself is an entry of the large-blob array ([`Authenticator::large_blob_array`], [`Authenticator::replace_large_blob_array`]), sealed by the host as platforms do (CTAP 2.1 §6.10.3) |
//!
//! How each kind of credential is kept (see [`crate::storage`]):
//!
//! * **discoverable** — a `c/` record, as makeCredential makes: discovered by getAssertion,
//!   listed and deleted by credential management, counted against
//!   [`Config::max_discoverable_credentials`](crate::Config).
//! * **non-discoverable, kept** — an `x/` record: found only when its ID is in an allowList,
//!   never discovered nor shown by credential management — exactly how a non-discoverable
//!   credential behaves — yet listable, exportable and deletable here. Imported
//!   non-discoverable credentials always live here, and so do those makeCredential makes while
//!   [`Config::keep_non_discoverable`](crate::Config) is on.
//! * **non-discoverable, stateless** — made while that knob was off: the key lives only in the
//!   sealed ID, the device holds nothing, so it can be neither listed nor deleted (only
//!   authenticatorReset ends it). Importing an ID that is such a credential of this device
//!   answers [`CredentialIoError::Exists`].
//!
//! An imported credential keeps the ID it came with; as that ID is not one this device sealed,
//! its key is sealed into the record instead (same cipher, bound to the RP, gone with the master
//! key at reset). It keeps its own signature counter (starting at the imported `signCount`)
//! whatever the device's [`CounterMode`], except that `AlwaysZero` answers 0 for every
//! credential. hmac-secret (PRF) works on imported credentials, with this device's values.
//!
//! Private keys leave the core only through [`Authenticator::export_credentials`] and
//! [`Authenticator::export_credential`]: callers must treat the result as the secret it is.

use alloc::string::String;
use alloc::vec::Vec;

use zeroize::Zeroizing;

use crate::authenticator::{Authenticator, flags, rp_id_hash};
use crate::config::CounterMode;
use crate::credential::{Algorithm, MasterKey, PrivateKey, SealedCredential};
use crate::platform::{Platform, Store, Write};
use crate::status::StatusCode;
use crate::storage::{self, LargeBlobKey, Partition, ResidentRecord, User};

/// The longest credential ID accepted (WebAuthn: at most 1023 bytes).
pub const MAX_CREDENTIAL_ID_LENGTH: usize = 1023;
/// The longest user handle (WebAuthn: at most 64 bytes).
pub const MAX_USER_HANDLE_LENGTH: usize = 64;
/// The longest RP ID accepted (a DNS name is at most 253 characters).
pub const MAX_RP_ID_LENGTH: usize = 253;

/// A credential in the portable shape, with its private key.
///
/// `Debug` never shows the key (nor a largeBlobKey).
#[derive(Debug, Clone)]
pub struct PortableCredential {
    /// The credential ID (1–1023 bytes).
    pub credential_id: Vec<u8>,
    /// The RP ID.
    pub rp_id: String,
    /// Discoverable (WebDriver `isResidentCredential`).
    pub discoverable: bool,
    /// The private key (ES256 or EdDSA).
    pub private_key: PrivateKey,
    /// The account: user handle (required for discoverable credentials, at most 64 bytes,
    /// may be empty otherwise), name and display name (cut to 64 bytes).
    pub user: User,
    /// The signature counter: on import, where the credential's own counter starts; on export,
    /// the value of the latest signature as the device counts for this credential.
    pub sign_count: u32,
    /// The BE flag this credential's assertions carry.
    pub backup_eligible: bool,
    /// The BS flag this credential's assertions carry.
    pub backup_state: bool,
    /// credProtect level (1–3).
    pub cred_protect: u8,
    /// Whether hmac-secret (PRF) answers for this credential.
    pub hmac_secret: bool,
    /// credBlob (at most [`MAX_CRED_BLOB_LENGTH`](crate::extensions::MAX_CRED_BLOB_LENGTH)
    /// bytes; discoverable credentials only, as makeCredential keeps it).
    pub cred_blob: Option<Vec<u8>>,
    /// The largeBlobKey, for a credential with a large blob.
    pub large_blob_key: Option<LargeBlobKey>,
    /// Whether the credential was imported (its key is sealed in its record, its ID is
    /// foreign); `false` for credentials this device made. Ignored by import.
    pub imported: bool,
}

/// Why an import, export or change failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialIoError {
    /// The input is not acceptable; the text says which field and why.
    Invalid(&'static str),
    /// A credential with this ID already exists for this RP on this device.
    Exists,
    /// No room for another discoverable credential (`CTAP2_ERR_KEY_STORE_FULL`).
    KeyStoreFull,
    /// No such credential.
    NotFound,
    /// The store failed, or holds something damaged.
    Store(StatusCode),
}

impl From<StatusCode> for CredentialIoError {
    fn from(status: StatusCode) -> Self {
        CredentialIoError::Store(status)
    }
}

impl From<crate::platform::StoreError> for CredentialIoError {
    fn from(error: crate::platform::StoreError) -> Self {
        CredentialIoError::Store(StatusCode::from(error))
    }
}

impl core::fmt::Display for CredentialIoError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            CredentialIoError::Invalid(why) => f.write_str(why),
            CredentialIoError::Exists => {
                f.write_str("a credential with this ID already exists for this RP")
            }
            CredentialIoError::KeyStoreFull => {
                f.write_str("no room for another discoverable credential")
            }
            CredentialIoError::NotFound => f.write_str("no such credential"),
            CredentialIoError::Store(status) => write!(f, "the store failed ({status:?})"),
        }
    }
}

/// A credential the core found for an RP and an ID: its key and flags, and its record when it
/// has one (discoverable, kept or imported) with the partition that record lives in.
#[derive(Debug)]
pub(crate) struct Found {
    pub(crate) sealed: SealedCredential,
    pub(crate) stored: Option<(Partition, ResidentRecord)>,
}

/// The key and flags of a stored record: from its sealed key when imported, else from its ID.
pub(crate) fn open_record(
    master: &MasterKey,
    rp_id_hash: &[u8; 32],
    record: &ResidentRecord,
) -> Option<SealedCredential> {
    match &record.sealed_key {
        Some(sealed) => master.open(rp_id_hash, sealed),
        None => master.open(rp_id_hash, &record.credential_id),
    }
}

fn backup_bits(eligible: bool, state: bool) -> u8 {
    let mut bits = 0;
    if eligible {
        bits |= flags::BE;
    }
    if state {
        bits |= flags::BS;
    }
    bits
}

impl<P: Platform> Authenticator<P> {
    /// The credential `id` names for this RP, if it exists on this device: a sealed ID of this
    /// device (discoverable or kept ones only while their record exists), or the ID of an
    /// imported credential. Anything else is `None` ("not found").
    pub(crate) fn find_credential(
        &mut self,
        master: &MasterKey,
        rp_id_hash: &[u8; 32],
        id: &[u8],
    ) -> Result<Option<Found>, StatusCode> {
        if let Some(sealed) = master.open(rp_id_hash, id) {
            let partition = if sealed.discoverable {
                Partition::Resident
            } else if sealed.kept {
                Partition::Kept
            } else {
                return Ok(Some(Found {
                    sealed,
                    stored: None,
                }));
            };
            return match self.platform.store().get(&partition.key(rp_id_hash, id))? {
                // Deleted or replaced: the ID still opens, but the credential is gone.
                None => Ok(None),
                Some(bytes) => {
                    let record = ResidentRecord::from_bytes(&bytes)?;
                    let sealed = match &record.sealed_key {
                        // Re-imported after a deletion: the record's key is the one in use.
                        Some(_) => {
                            open_record(master, rp_id_hash, &record).ok_or(StatusCode::Other)?
                        }
                        None => sealed,
                    };
                    Ok(Some(Found {
                        sealed,
                        stored: Some((partition, record)),
                    }))
                }
            };
        }
        // Not an ID this device sealed: an imported credential, or nothing.
        if id.is_empty() || id.len() > MAX_CREDENTIAL_ID_LENGTH {
            return Ok(None);
        }
        for partition in [Partition::Resident, Partition::Kept] {
            if let Some(bytes) = self.platform.store().get(&partition.key(rp_id_hash, id))? {
                let record = ResidentRecord::from_bytes(&bytes)?;
                // A stored credential whose key does not open is damage, not absence.
                let sealed = open_record(master, rp_id_hash, &record).ok_or(StatusCode::Other)?;
                return Ok(Some(Found {
                    sealed,
                    stored: Some((partition, record)),
                }));
            }
        }
        Ok(None)
    }

    /// The signature counter value for one signature by this credential, persisted before it
    /// is used: 0 in `AlwaysZero` mode; the record's own counter for imported credentials and
    /// (in `PerCredential` mode) discoverable ones; otherwise the global or the `n/` counter.
    pub(crate) fn count_signature(
        &mut self,
        rp_id_hash: &[u8; 32],
        credential_id: &[u8],
        stored: Option<(Partition, &ResidentRecord)>,
    ) -> Result<u32, StatusCode> {
        let mode = self.config.counter;
        match stored {
            _ if mode == CounterMode::AlwaysZero => Ok(0),
            Some((partition, record))
                if record.imported()
                    || (mode == CounterMode::PerCredential && partition == Partition::Resident) =>
            {
                let mut updated = record.clone();
                updated.counter = record.counter.wrapping_add(1);
                let key = partition.key(rp_id_hash, &record.credential_id);
                let bytes = updated.to_bytes();
                self.platform.store().commit(&[Write::Put(&key, &bytes)])?;
                Ok(updated.counter)
            }
            _ => self.next_signature_count(credential_id),
        }
    }

    /// The backup flags (BE, BS bits) a credential's assertions carry: its own when set, else
    /// the device's.
    pub(crate) fn credential_backup_flags(&self, record: Option<&ResidentRecord>) -> u8 {
        record
            .and_then(|record| record.backup_flags)
            .unwrap_or_else(|| self.backup_flags())
    }

    /// Stores a kept non-discoverable credential's record (`x/`), with the next creation
    /// sequence, in one atomic batch.
    pub(crate) fn store_kept(
        &mut self,
        rp_id_hash: &[u8; 32],
        mut record: ResidentRecord,
    ) -> Result<(), StatusCode> {
        let store = self.platform.store();
        let sequence = storage::read_u64(store, storage::SEQUENCE)?.wrapping_add(1);
        record.sequence = sequence;
        let key = Partition::Kept.key(rp_id_hash, &record.credential_id);
        let bytes = record.to_bytes();
        let sequence_bytes = sequence.to_be_bytes();
        store.commit(&[
            Write::Put(&key, &bytes),
            Write::Put(storage::SEQUENCE, &sequence_bytes),
        ])?;
        Ok(())
    }

    /// Imports a credential (WebDriver "Add Credential"). A discoverable one replaces the
    /// account's existing discoverable credential for the RP (the same user handle), as
    /// makeCredential does; an ID that already exists for the RP is
    /// [`CredentialIoError::Exists`].
    pub fn import_credential(
        &mut self,
        credential: &PortableCredential,
    ) -> Result<(), CredentialIoError> {
        let invalid = CredentialIoError::Invalid;
        if credential.credential_id.is_empty()
            || credential.credential_id.len() > MAX_CREDENTIAL_ID_LENGTH
        {
            return Err(invalid("credentialId must be 1 to 1023 bytes"));
        }
        if credential.rp_id.is_empty() || credential.rp_id.len() > MAX_RP_ID_LENGTH {
            return Err(invalid("rpId must be 1 to 253 bytes"));
        }
        if credential.user.id.len() > MAX_USER_HANDLE_LENGTH {
            return Err(invalid("userHandle must be at most 64 bytes"));
        }
        if credential.discoverable && credential.user.id.is_empty() {
            return Err(invalid("a discoverable credential needs a userHandle"));
        }
        if !(1..=3).contains(&credential.cred_protect) {
            return Err(invalid("credProtect must be 1, 2 or 3"));
        }
        if let Some(blob) = &credential.cred_blob {
            if !credential.discoverable {
                return Err(invalid("only a discoverable credential keeps a credBlob"));
            }
            if blob.len() > crate::extensions::MAX_CRED_BLOB_LENGTH {
                return Err(invalid("credBlob is at most 32 bytes"));
            }
        }
        let rp_id_hash = rp_id_hash(&credential.rp_id);
        let master = self.master_key()?;
        if self
            .find_credential(&master, &rp_id_hash, &credential.credential_id)?
            .is_some()
        {
            return Err(CredentialIoError::Exists);
        }
        let sealed_key = master.seal(
            self.platform.rng(),
            &rp_id_hash,
            &SealedCredential {
                key: credential.private_key.clone(),
                discoverable: credential.discoverable,
                cred_protect: credential.cred_protect,
                hmac_secret: credential.hmac_secret,
                kept: false,
            },
        )?;
        let truncate = |name: &Option<String>| name.as_deref().map(crate::request::truncate_64);
        let record = ResidentRecord {
            credential_id: credential.credential_id.clone(),
            rp_id: credential.rp_id.clone(),
            user: User {
                id: credential.user.id.clone(),
                name: truncate(&credential.user.name),
                display_name: truncate(&credential.user.display_name),
            },
            sequence: 0,
            counter: credential.sign_count,
            cred_blob: credential.cred_blob.clone(),
            large_blob_key: credential.large_blob_key.clone(),
            sealed_key: Some(sealed_key),
            backup_flags: Some(backup_bits(
                credential.backup_eligible,
                credential.backup_state,
            )),
        };
        if !credential.discoverable {
            return Ok(self.store_kept(&rp_id_hash, record)?);
        }
        let user_key = storage::user_key(&rp_id_hash, &record.user.id);
        let replaced = self.platform.store().get(&user_key)?;
        if replaced.is_none() && self.remaining_discoverable()? == 0 {
            return Err(CredentialIoError::KeyStoreFull);
        }
        self.store_resident(&rp_id_hash, &user_key, replaced.as_deref(), record)?;
        Ok(())
    }

    /// Every credential the device keeps a record of — discoverable ones, then kept
    /// non-discoverable ones, each in creation order — with private keys. Stateless
    /// non-discoverable credentials cannot be listed (the device holds nothing of them).
    pub fn export_credentials(&mut self) -> Result<Vec<PortableCredential>, StatusCode> {
        let mut exported = Vec::new();
        for partition in [Partition::Resident, Partition::Kept] {
            let mut records = Vec::new();
            let mut damaged = false;
            self.platform
                .store()
                .scan_prefix(partition.prefix(), &mut |key, value| {
                    let hash = match partition {
                        Partition::Resident => storage::split_credential_key(key),
                        Partition::Kept => storage::split_kept_key(key),
                    };
                    match (hash, ResidentRecord::from_bytes(value)) {
                        (Some((hash, _)), Ok(record)) => records.push((hash, record)),
                        _ => damaged = true,
                    }
                    !damaged
                })?;
            if damaged {
                return Err(StatusCode::Other);
            }
            records.sort_by_key(|(_, record)| record.sequence);
            for (hash, record) in records {
                exported.push(self.portable(&hash, partition, record)?);
            }
        }
        Ok(exported)
    }

    /// One credential by its ID: given its RP, any credential of this device for that RP
    /// (a stored one, or a stateless one this device made; a few store reads); without an RP,
    /// a stored one of any RP (a pass over the stored keys). `None` when there is none.
    pub fn export_credential(
        &mut self,
        credential_id: &[u8],
        rp_id: Option<&str>,
    ) -> Result<Option<PortableCredential>, StatusCode> {
        let Some(rp_id) = rp_id else {
            return match self.stored_by_id(credential_id)? {
                Some((hash, partition, record)) => {
                    self.portable(&hash, partition, record).map(Some)
                }
                None => Ok(None),
            };
        };
        let hash = rp_id_hash(rp_id);
        let master = self.master_key()?;
        let Some(found) = self.find_credential(&master, &hash, credential_id)? else {
            return Ok(None);
        };
        if let Some((partition, record)) = found.stored {
            return self.portable(&hash, partition, record).map(Some);
        }
        let sign_count = self.current_count(&hash, credential_id, None)?;
        let bits = self.backup_flags();
        Ok(Some(PortableCredential {
            credential_id: credential_id.to_vec(),
            rp_id: String::from(rp_id),
            discoverable: false,
            private_key: found.sealed.key,
            user: User::default(),
            sign_count,
            backup_eligible: bits & flags::BE != 0,
            backup_state: bits & flags::BS != 0,
            cred_protect: found.sealed.cred_protect,
            hmac_secret: found.sealed.hmac_secret,
            cred_blob: None,
            large_blob_key: None,
            imported: false,
        }))
    }

    /// Deletes one stored credential by its ID (any RP). Returns what was deleted (without
    /// its key's use: callers should drop it), or `None` if no stored credential has this ID.
    /// Its large-blob entry, if any, stays in the array (as with credential management);
    /// [`delete_all_credentials`](Self::delete_all_credentials) empties the array.
    pub fn delete_credential(
        &mut self,
        credential_id: &[u8],
    ) -> Result<Option<PortableCredential>, StatusCode> {
        let Some((hash, partition, record)) = self.stored_by_id(credential_id)? else {
            return Ok(None);
        };
        let deleted = self.portable(&hash, partition, record.clone())?;
        match partition {
            Partition::Resident => {
                storage::delete_resident(self.platform.store(), &hash, &record)?;
            }
            Partition::Kept => {
                let key = Partition::Kept.key(&hash, credential_id);
                let counter = storage::non_resident_counter_key(credential_id);
                self.platform
                    .store()
                    .commit(&[Write::Delete(&key), Write::Delete(&counter)])?;
            }
        }
        Ok(Some(deleted))
    }

    /// Deletes every stored credential (discoverable and kept) and empties the large-blob
    /// array, in one atomic commit; the master key, PIN, settings and global counter stay (so
    /// stateless non-discoverable credentials keep working: only a reset ends them). Returns
    /// how many credentials were deleted.
    pub fn delete_all_credentials(&mut self) -> Result<usize, StatusCode> {
        let mut keys: Vec<Vec<u8>> = Vec::new();
        let mut count = 0usize;
        for prefix in [
            storage::RESIDENT_PREFIX,
            storage::KEPT_PREFIX,
            b"u/".as_slice(),
            b"n/".as_slice(),
        ] {
            let counted = prefix == storage::RESIDENT_PREFIX || prefix == storage::KEPT_PREFIX;
            self.platform.store().scan_prefix(prefix, &mut |key, _| {
                keys.push(key.to_vec());
                if counted {
                    count = count.saturating_add(1);
                }
                true
            })?;
        }
        let zero = 0u32.to_be_bytes();
        let mut batch: Vec<Write<'_>> = keys.iter().map(|key| Write::Delete(key)).collect();
        batch.push(Write::Put(storage::RESIDENT_COUNT, &zero));
        batch.push(Write::Delete(storage::LARGE_BLOBS));
        self.platform.store().commit(&batch)?;
        self.pending_assertions = None;
        self.pending_enumeration = None;
        self.abandon_large_blob_write();
        Ok(count)
    }

    /// Sets a stored credential's backup flags (WebDriver "Set Credential Properties"); a
    /// flag left `None` keeps its current value. BS without BE is accepted on purpose (WebAuthn
    /// forbids it; testing how an RP reacts is the point). Returns the credential as it is now.
    pub fn set_backup_flags(
        &mut self,
        credential_id: &[u8],
        backup_eligible: Option<bool>,
        backup_state: Option<bool>,
    ) -> Result<PortableCredential, CredentialIoError> {
        let (hash, partition, mut record) = self
            .stored_by_id(credential_id)?
            .ok_or(CredentialIoError::NotFound)?;
        let current = self.credential_backup_flags(Some(&record));
        let eligible = backup_eligible.unwrap_or(current & flags::BE != 0);
        let state = backup_state.unwrap_or(current & flags::BS != 0);
        record.backup_flags = Some(backup_bits(eligible, state));
        let key = partition.key(&hash, credential_id);
        let bytes = record.to_bytes();
        self.platform.store().commit(&[Write::Put(&key, &bytes)])?;
        Ok(self.portable(&hash, partition, record)?)
    }

    /// The serialized large-blob array (CTAP 2.1 §6.10): a CBOR array of entries and its
    /// truncated hash; the empty array when nothing was written.
    pub fn large_blob_array(&mut self) -> Result<Vec<u8>, StatusCode> {
        self.serialized_large_blob_array()
    }

    /// Replaces the serialized large-blob array, as a platform's write would: it must end
    /// with LEFT(SHA-256(rest), 16) and fit `maxSerializedLargeBlobArray`. A write in progress
    /// over authenticatorLargeBlobs is abandoned.
    pub fn replace_large_blob_array(&mut self, serialized: &[u8]) -> Result<(), CredentialIoError> {
        if serialized.len() < crate::large_blobs::EMPTY_ARRAY.len()
            || !crate::large_blobs::hash_matches(serialized)
        {
            return Err(CredentialIoError::Invalid(
                "a serialized large-blob array ends with its truncated SHA-256",
            ));
        }
        if serialized.len() > self.config.max_serialized_large_blob_array {
            return Err(CredentialIoError::Invalid(
                "the large-blob array would exceed maxSerializedLargeBlobArray",
            ));
        }
        self.abandon_large_blob_write();
        self.platform
            .store()
            .commit(&[Write::Put(storage::LARGE_BLOBS, serialized)])?;
        Ok(())
    }

    /// A stored credential (`c/` or `x/`) by its ID alone: one pass over the keys of each
    /// partition.
    fn stored_by_id(
        &mut self,
        credential_id: &[u8],
    ) -> Result<Option<([u8; 32], Partition, ResidentRecord)>, StatusCode> {
        if credential_id.is_empty() || credential_id.len() > MAX_CREDENTIAL_ID_LENGTH {
            return Ok(None);
        }
        for partition in [Partition::Resident, Partition::Kept] {
            let mut found = None;
            self.platform
                .store()
                .scan_prefix(partition.prefix(), &mut |key, value| {
                    let split = match partition {
                        Partition::Resident => storage::split_credential_key(key),
                        Partition::Kept => storage::split_kept_key(key),
                    };
                    match split {
                        Some((hash, id)) if id == credential_id => {
                            found = Some((hash, value.to_vec()));
                            false
                        }
                        _ => true,
                    }
                })?;
            if let Some((hash, bytes)) = found {
                let bytes = Zeroizing::new(bytes);
                return Ok(Some((hash, partition, ResidentRecord::from_bytes(&bytes)?)));
            }
        }
        Ok(None)
    }

    /// The portable shape of a stored credential.
    fn portable(
        &mut self,
        hash: &[u8; 32],
        partition: Partition,
        record: ResidentRecord,
    ) -> Result<PortableCredential, StatusCode> {
        let master = self.master_key()?;
        let sealed = open_record(&master, hash, &record).ok_or(StatusCode::Other)?;
        let sign_count =
            self.current_count(hash, &record.credential_id, Some((partition, &record)))?;
        let bits = self.credential_backup_flags(Some(&record));
        let imported = record.imported();
        Ok(PortableCredential {
            discoverable: partition == Partition::Resident,
            private_key: sealed.key,
            sign_count,
            backup_eligible: bits & flags::BE != 0,
            backup_state: bits & flags::BS != 0,
            cred_protect: sealed.cred_protect,
            hmac_secret: sealed.hmac_secret,
            imported,
            credential_id: record.credential_id,
            rp_id: record.rp_id,
            user: record.user,
            cred_blob: record.cred_blob,
            large_blob_key: record.large_blob_key,
        })
    }

    /// The counter value of the latest signature, as [`count_signature`](Self::count_signature)
    /// counts for this credential (without advancing it).
    fn current_count(
        &mut self,
        _rp_id_hash: &[u8; 32],
        credential_id: &[u8],
        stored: Option<(Partition, &ResidentRecord)>,
    ) -> Result<u32, StatusCode> {
        let mode = self.config.counter;
        let store = self.platform.store();
        match (mode, stored) {
            (CounterMode::AlwaysZero, _) => Ok(0),
            (_, Some((_, record))) if record.imported() => Ok(record.counter),
            (CounterMode::PerCredential, Some((Partition::Resident, record))) => Ok(record.counter),
            (CounterMode::PerCredential, _) => {
                storage::read_u32(store, &storage::non_resident_counter_key(credential_id))
            }
            (CounterMode::Global, _) => storage::read_u32(store, storage::GLOBAL_COUNTER),
        }
    }
}

// PKCS#8 (RFC 5208/5958) private keys: P-256 through the p256 crate's strict DER decoder,
// Ed25519 (RFC 8410) by the small reader below.

/// `SEQUENCE { INTEGER 0, SEQUENCE { id-ecPublicKey, prime256v1 }, OCTET STRING {
/// ECPrivateKey { 1, d, [1] publicKey } } }`: the 138-byte form WebCrypto and the RustCrypto
/// crates write. The 32 bytes of `d` follow this prefix.
const P256_PREFIX: [u8; 36] = [
    0x30, 0x81, 0x87, 0x02, 0x01, 0x00, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02,
    0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x04, 0x6d, 0x30, 0x6b, 0x02,
    0x01, 0x01, 0x04, 0x20,
];
/// Between `d` and the uncompressed public point: `[1] { BIT STRING (0 unused bits) }`.
const P256_PUBLIC_PREFIX: [u8; 5] = [0xa1, 0x44, 0x03, 0x42, 0x00];
/// `SEQUENCE { INTEGER 0, SEQUENCE { id-Ed25519 }, OCTET STRING { OCTET STRING (32) } }`: the
/// 48-byte RFC 8410 form; the seed follows.
const ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];
/// The id-Ed25519 OID's content (1.3.101.112).
const ED25519_OID: [u8; 3] = [0x2b, 0x65, 0x70];

/// A private key from PKCS#8 DER: P-256 (`id-ecPublicKey` with `prime256v1`, an ES256 key) or
/// Ed25519 (`id-Ed25519`, an EdDSA key), in PKCS#8 v1 or v2. A public key inside must match
/// the private one; anything else — other curves, RSA, trailing bytes, bad DER — is refused.
pub fn private_key_from_pkcs8(der: &[u8]) -> Result<PrivateKey, CredentialIoError> {
    let invalid = CredentialIoError::Invalid(
        "privateKey must be a PKCS#8 P-256 (ECDSA) or Ed25519 private key",
    );
    if let Some(key) = ed25519_from_pkcs8(der) {
        return key.ok_or(invalid);
    }
    use p256::pkcs8::DecodePrivateKey;
    let secret = p256::SecretKey::from_pkcs8_der(der).map_err(|_| invalid)?;
    let bytes = Zeroizing::new(<[u8; 32]>::from(secret.to_bytes()));
    PrivateKey::from_secret(Algorithm::Es256, &bytes).ok_or(invalid)
}

/// The key as PKCS#8 DER: for P-256 the 138-byte v1 form with the public key inside (as
/// WebCrypto's `exportKey("pkcs8")` writes it), for Ed25519 the 48-byte RFC 8410 form.
/// Secret: zeroized on drop.
pub fn private_key_to_pkcs8(key: &PrivateKey) -> Zeroizing<Vec<u8>> {
    let mut der = Zeroizing::new(Vec::with_capacity(138));
    match key.algorithm() {
        Algorithm::Es256 => {
            der.extend_from_slice(&P256_PREFIX);
            der.extend_from_slice(key.expose_secret());
            der.extend_from_slice(&P256_PUBLIC_PREFIX);
            der.extend_from_slice(&key.p256_public_point().unwrap_or([0; 65]));
        }
        Algorithm::EdDsa => {
            der.extend_from_slice(&ED25519_PREFIX);
            der.extend_from_slice(key.expose_secret());
        }
    }
    der
}

/// One DER element: (tag, contents, the rest). Definite lengths only, in their shortest form.
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (length, rest) = match first {
        0..=0x7f => (usize::from(first), rest),
        0x81 => {
            let (&n, rest) = rest.split_first()?;
            (n >= 0x80).then_some((usize::from(n), rest))?
        }
        0x82 => {
            let (bytes, rest) = rest.split_first_chunk::<2>()?;
            let n = usize::from(u16::from_be_bytes(*bytes));
            (n >= 0x100).then_some((n, rest))?
        }
        _ => return None,
    };
    let (contents, rest) = rest.split_at_checked(length)?;
    Some((tag, contents, rest))
}

/// `None`: not an Ed25519 PKCS#8 key (maybe P-256). `Some(None)`: an Ed25519 key that is
/// malformed or whose public key does not match. `Some(Some(key))`: the key.
fn ed25519_from_pkcs8(der: &[u8]) -> Option<Option<PrivateKey>> {
    let (tag, body, trailing) = der_element(der)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, version, body) = der_element(body)?;
    if tag != 0x02 {
        return None;
    }
    let (tag, algorithm, body) = der_element(body)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, oid, parameters) = der_element(algorithm)?;
    if tag != 0x06 || oid != ED25519_OID {
        return None;
    }
    // From here on it claims to be Ed25519: every defect is an error.
    Some(ed25519_body(trailing, version, parameters, body))
}

fn ed25519_body(
    trailing: &[u8],
    version: &[u8],
    parameters: &[u8],
    body: &[u8],
) -> Option<PrivateKey> {
    // RFC 8410: the parameters are absent; v1 (0) or v2 (1, may carry the public key).
    if !trailing.is_empty() || !parameters.is_empty() || !matches!(version, [0] | [1]) {
        return None;
    }
    let (tag, outer, mut rest) = der_element(body)?;
    if tag != 0x04 {
        return None;
    }
    let (tag, seed, after) = der_element(outer)?;
    if tag != 0x04 || !after.is_empty() {
        return None;
    }
    let seed = Zeroizing::new(<[u8; 32]>::try_from(seed).ok()?);
    let key = PrivateKey::from_secret(Algorithm::EdDsa, &seed)?;
    // Optional [0] attributes, then optional [1] public key (v2 only).
    if let Some((tag, _, after)) = der_element(rest)
        && tag == 0xa0
    {
        rest = after;
    }
    if let Some((tag, public, after)) = der_element(rest) {
        if tag != 0x81 || !after.is_empty() || version != [1] {
            return None;
        }
        let (&unused, point) = public.split_first()?;
        let expected = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
        if unused != 0 || point != expected.as_bytes() {
            return None;
        }
    } else if !rest.is_empty() {
        return None;
    }
    Some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_lengths_are_definite_and_shortest() {
        assert_eq!(
            der_element(&[0x04, 0x01, 0xaa]),
            Some((0x04, &[0xaa][..], &[][..]))
        );
        assert_eq!(
            der_element(&[0x04, 0x81, 0x05]),
            None,
            "long form for a short length"
        );
        assert_eq!(der_element(&[0x04, 0x80]), None, "indefinite");
        assert_eq!(der_element(&[0x04, 0x02, 0xaa]), None, "truncated");
        assert_eq!(
            der_element(&[0x04, 0x84, 0, 0, 0, 1]),
            None,
            "too long a length"
        );
        assert_eq!(der_element(&[]), None);
    }

    #[test]
    fn ed25519_pkcs8_round_trip_and_defects() {
        let key = PrivateKey::from_secret(Algorithm::EdDsa, &[7; 32]).unwrap();
        let der = private_key_to_pkcs8(&key);
        assert_eq!(der.len(), 48);
        let back = private_key_from_pkcs8(&der).unwrap();
        assert_eq!(back.algorithm(), Algorithm::EdDsa);
        assert_eq!(back.expose_secret(), &[7; 32]);

        // v2 with the matching public key is accepted; with another one, refused.
        let public = ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key();
        let v2 = |point: &[u8]| {
            let mut body = alloc::vec![0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70];
            body.extend_from_slice(&[0x04, 0x22, 0x04, 0x20]);
            body.extend_from_slice(&[7; 32]);
            body.extend_from_slice(&[0x81, 0x21, 0x00]);
            body.extend_from_slice(point);
            let mut der = alloc::vec![0x30, u8::try_from(body.len()).unwrap()];
            der.extend_from_slice(&body);
            der
        };
        assert!(private_key_from_pkcs8(&v2(public.as_bytes())).is_ok());
        assert!(private_key_from_pkcs8(&v2(&[1; 32])).is_err());

        // Trailing bytes, a short seed, parameters, a v1 with a public key: refused.
        let mut trailing = der.to_vec();
        trailing.push(0);
        assert!(private_key_from_pkcs8(&trailing).is_err());
        let mut short = der.to_vec();
        short[1] = 0x2d;
        short[13] = 0x21;
        short[15] = 0x1f;
        short.pop();
        assert!(private_key_from_pkcs8(&short).is_err());
        assert!(private_key_from_pkcs8(&der[..47]).is_err());
    }

    #[test]
    fn p256_pkcs8_matches_the_rustcrypto_encoding() {
        use p256::pkcs8::EncodePrivateKey;
        let secret = p256::SecretKey::from_slice(&[0x42; 32]).unwrap();
        let theirs = secret.to_pkcs8_der().unwrap();
        let key = PrivateKey::from_secret(Algorithm::Es256, &[0x42; 32]).unwrap();
        let ours = private_key_to_pkcs8(&key);
        assert_eq!(ours.as_slice(), theirs.as_bytes());
        let back = private_key_from_pkcs8(&ours).unwrap();
        assert_eq!(back.algorithm(), Algorithm::Es256);
        assert_eq!(back.expose_secret(), &[0x42; 32]);

        // A public key that is not the private key's: refused.
        let mut wrong = ours.to_vec();
        let other = PrivateKey::from_secret(Algorithm::Es256, &[0x43; 32]).unwrap();
        let point = other.p256_public_point().unwrap();
        wrong.truncate(138 - 65);
        wrong.extend_from_slice(&point);
        assert!(private_key_from_pkcs8(&wrong).is_err());
        // Garbage, an empty input, a truncated key: refused.
        assert!(private_key_from_pkcs8(b"not a key").is_err());
        assert!(private_key_from_pkcs8(&[]).is_err());
        assert!(private_key_from_pkcs8(&ours[..100]).is_err());
        // A zero scalar: refused.
        let mut zero = ours.to_vec();
        zero[36..68].fill(0);
        zero.truncate(68);
        assert!(private_key_from_pkcs8(&zero).is_err());
    }
}
