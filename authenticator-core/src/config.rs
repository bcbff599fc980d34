//! The authenticator's settings: identity, capacity, counters, backup flags, attestation.
//!
//! Three profiles cover what testers ask for most — a device-bound security key, a synced
//! passkey, and a platform authenticator — and every field can be changed after.

use alloc::vec::Vec;
use zeroize::Zeroizing;

/// How signature counters advance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CounterMode {
    /// One counter for the whole device, incremented by every signature (most security keys).
    Global,
    /// One counter per credential. Non-discoverable credentials keep theirs in a small store
    /// entry, since their ID cannot change.
    PerCredential,
    /// Always zero (synced passkeys).
    AlwaysZero,
}

/// How makeCredential attests by default (`attestationFormatsPreference` may still ask for
/// "none").
#[derive(Clone)]
pub enum AttestationMode {
    /// `packed` signed by the credential's own key, no certificate.
    SelfAttestation,
    /// `packed` signed by a provisioned batch key, with its certificate chain in `x5c`.
    Batch(BatchAttestation),
    /// Format `none` with an empty statement, as passkey providers answer.
    None,
}

impl core::fmt::Debug for AttestationMode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            AttestationMode::SelfAttestation => f.write_str("SelfAttestation"),
            AttestationMode::Batch(batch) => f.debug_tuple("Batch").field(batch).finish(),
            AttestationMode::None => f.write_str("None"),
        }
    }
}

/// A provisioned batch attestation key (P-256) and its certificate chain, leaf first, root
/// omitted (as `x5c` carries it).
#[derive(Clone)]
pub struct BatchAttestation {
    /// The batch private key as a P-256 scalar (big-endian).
    pub private_key: Zeroizing<[u8; 32]>,
    /// DER certificates, leaf first.
    pub certificates: Vec<Vec<u8>>,
}

impl core::fmt::Debug for BatchAttestation {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BatchAttestation")
            .field("private_key", &"<redacted>")
            .field("certificates", &self.certificates.len())
            .finish()
    }
}

/// Which algorithms the authenticator offers, in no particular order: the RP's
/// `pubKeyCredParams` order decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Algorithms {
    /// ES256 (COSE -7).
    pub es256: bool,
    /// EdDSA / Ed25519 (COSE -8).
    pub eddsa: bool,
}

/// The authenticator's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// The model identifier reported in getInfo and attested credential data.
    pub aaguid: [u8; 16],
    /// How many discoverable credentials the store may hold.
    pub max_discoverable_credentials: u32,
    /// How signature counters advance.
    pub counter: CounterMode,
    /// The backup-eligible (BE) flag for new credentials.
    pub backup_eligible: bool,
    /// The backup-state (BS) flag.
    pub backup_state: bool,
    /// How long after power-up authenticatorReset is accepted, in ms (CTAP says 10 s). `None`
    /// accepts it at any time, which emulators that never power-cycle need.
    pub reset_window_ms: Option<u64>,
    /// How long the user has to answer a presence request, in ms.
    pub presence_timeout_ms: u32,
    /// How authenticatorGetNextAssertion stays valid after the previous assertion, in ms.
    pub next_assertion_timeout_ms: u64,
    /// Default attestation.
    pub attestation: AttestationMode,
    /// The largest request accepted, in bytes (reported as `maxMsgSize`).
    pub max_msg_size: usize,
    /// The longest allowList/excludeList accepted (reported as `maxCredentialCountInList`).
    pub max_credential_count_in_list: usize,
    /// Transports reported in getInfo.
    pub transports: Vec<&'static str>,
    /// Firmware version reported in getInfo.
    pub firmware_version: u32,
    /// Algorithms offered.
    pub algorithms: Algorithms,
    /// Whether this is a platform authenticator (getInfo option `plat`).
    pub platform_device: bool,
    /// `alwaysUv` (CTAP 2.1 §6.4): every makeCredential, and every getAssertion with user
    /// presence, needs user verification (a pinUvAuthToken, or the built-in method); getInfo
    /// then reports `alwaysUv: true` and `makeCredUvNotRqd: false`. This is the factory
    /// setting: once authenticatorConfig's toggleAlwaysUv has flipped it, the flipped value kept
    /// in the store wins until authenticatorReset.
    pub always_uv: bool,
    /// The largest serialized large-blob array authenticatorLargeBlobs keeps, in bytes
    /// (getInfo `maxSerializedLargeBlobArray`; CTAP 2.1 requires at least 1024).
    pub max_serialized_large_blob_array: usize,
    /// Whether the device can make enterprise attestations (getInfo `ep`, false until
    /// authenticatorConfig's enableEnterpriseAttestation; see `authenticator_config.rs`).
    /// They are signed by the batch key ([`AttestationMode::Batch`]).
    pub enterprise_attestation: bool,
    /// Whether the device makes discoverable credentials at all (getInfo option `rk`; without
    /// them makeCredential answers `rk: true` with `CTAP2_ERR_UNSUPPORTED_OPTION`). Credentials
    /// already stored stay usable.
    pub discoverable_credentials: bool,
    /// Keep a record of every non-discoverable credential made (`x/` in
    /// [`storage`](crate::storage)) so that it can be listed, exported and deleted
    /// ([`credential_io`](crate::credential_io)) as virtual authenticators allow. Costs one store
    /// entry per registration; off on boards, on in the daemon. Credentials made while it is on
    /// exist only while their record does (a deleted one stops working); those made while it was
    /// off stay stateless.
    pub keep_non_discoverable: bool,
}

/// Fidelio's AAGUID for the security-key profile: a fixed random UUID
/// (5f4d3c2b-1a09-4e8f-9d6c-0b1a2f3e4d5c) identifying this emulator model.
pub const FIDELIO_AAGUID: [u8; 16] = [
    0x5f, 0x4d, 0x3c, 0x2b, 0x1a, 0x09, 0x4e, 0x8f, 0x9d, 0x6c, 0x0b, 0x1a, 0x2f, 0x3e, 0x4d, 0x5c,
];

impl Config {
    /// A device-bound security key: BE=0, one global counter, packed self-attestation,
    /// reset only within 10 s of power-up, USB.
    pub fn security_key() -> Self {
        Self {
            aaguid: FIDELIO_AAGUID,
            max_discoverable_credentials: 100,
            counter: CounterMode::Global,
            backup_eligible: false,
            backup_state: false,
            reset_window_ms: Some(10_000),
            presence_timeout_ms: 30_000,
            next_assertion_timeout_ms: 30_000,
            attestation: AttestationMode::SelfAttestation,
            max_msg_size: 7609,
            max_credential_count_in_list: 16,
            transports: alloc::vec!["usb"],
            firmware_version: 1,
            algorithms: Algorithms {
                es256: true,
                eddsa: true,
            },
            platform_device: false,
            always_uv: false,
            max_serialized_large_blob_array: 4096,
            enterprise_attestation: false,
            discoverable_credentials: true,
            keep_non_discoverable: false,
        }
    }

    /// A synced passkey as password managers provide: BE=1, BS=1, counter always zero,
    /// attestation "none", roomy storage.
    pub fn synced_passkey() -> Self {
        Self {
            max_discoverable_credentials: 100_000,
            counter: CounterMode::AlwaysZero,
            backup_eligible: true,
            backup_state: true,
            attestation: AttestationMode::None,
            transports: alloc::vec!["hybrid", "internal"],
            reset_window_ms: None,
            max_serialized_large_blob_array: 16_384,
            ..Self::security_key()
        }
    }

    /// A platform authenticator (built into the device, verifying users itself): `plat`
    /// option, internal transport, device-bound.
    pub fn platform() -> Self {
        Self {
            max_discoverable_credentials: 100_000,
            platform_device: true,
            transports: alloc::vec!["internal"],
            reset_window_ms: None,
            max_serialized_large_blob_array: 16_384,
            ..Self::security_key()
        }
    }
}
