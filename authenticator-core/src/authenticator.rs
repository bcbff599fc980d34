//! The authenticator: command dispatch and the state shared by the command handlers.

use alloc::vec::Vec;

use rand_core::Rng;
use sha2::Digest;
use zeroize::{Zeroize, Zeroizing};

use crate::cbor::{self, Value};
use crate::config::{Config, CounterMode};
use crate::credential::MasterKey;
use crate::platform::{
    Clock, Platform, Presence, PresenceKind, PresenceOutcome, PresencePurpose, PresenceRequest,
    Store, Write,
};
use crate::status::StatusCode;
use crate::storage;

/// CTAP2 command bytes (CTAP 2.1 §6).
pub mod command {
    /// authenticatorMakeCredential
    pub const MAKE_CREDENTIAL: u8 = 0x01;
    /// authenticatorGetAssertion
    pub const GET_ASSERTION: u8 = 0x02;
    /// authenticatorGetInfo
    pub const GET_INFO: u8 = 0x04;
    /// authenticatorClientPIN
    pub const CLIENT_PIN: u8 = 0x06;
    /// authenticatorReset
    pub const RESET: u8 = 0x07;
    /// authenticatorGetNextAssertion
    pub const GET_NEXT_ASSERTION: u8 = 0x08;
    /// authenticatorCredentialManagement
    pub const CREDENTIAL_MANAGEMENT: u8 = 0x0A;
    /// authenticatorSelection
    pub const SELECTION: u8 = 0x0B;
    /// authenticatorLargeBlobs
    pub const LARGE_BLOBS: u8 = 0x0C;
    /// authenticatorConfig
    pub const CONFIG: u8 = 0x0D;
    /// The credential management preview command (`credentialMgmtPreview`), same semantics
    pub const CREDENTIAL_MANAGEMENT_PREVIEW: u8 = 0x41;
}

/// authData flag bits (WebAuthn §6.1).
pub mod flags {
    /// User present.
    pub const UP: u8 = 0x01;
    /// User verified.
    pub const UV: u8 = 0x04;
    /// Backup eligible.
    pub const BE: u8 = 0x08;
    /// Backup state.
    pub const BS: u8 = 0x10;
    /// Attested credential data included.
    pub const AT: u8 = 0x40;
    /// Extension data included.
    pub const ED: u8 = 0x80;
}

/// A FIDO2 authenticator over a [`Platform`].
#[derive(Debug)]
pub struct Authenticator<P: Platform> {
    pub(crate) platform: P,
    pub(crate) config: Config,
    /// The master key, read from the store once and kept keyed.
    pub(crate) master: Option<MasterKey>,
    /// Credentials left for authenticatorGetNextAssertion.
    pub(crate) pending_assertions: Option<crate::get_assertion::PendingAssertions>,
    /// The RPs or credentials left for credential management's GetNext subcommands.
    pub(crate) pending_enumeration: Option<crate::credential_management::PendingEnumeration>,
    /// When the device last powered up, on the platform clock (the reset window counts from
    /// here).
    pub(crate) powered_up_ms: u64,
    /// PIN/UV auth state a power cycle loses: key-agreement keys, the pinUvAuthToken, the
    /// consecutive wrong PINs.
    pub(crate) pin: crate::pin::PinState,
    /// An authenticatorLargeBlobs write in progress (lost by a power cycle).
    pub(crate) large_blobs: crate::large_blobs::LargeBlobState,
    /// The test-fault hooks, all off unless a host turns them on ([`crate::hooks`]).
    pub(crate) hooks: crate::hooks::Hooks,
}

impl<P: Platform> Authenticator<P> {
    /// An authenticator with these settings on this platform.
    pub fn new(platform: P, config: Config) -> Self {
        let powered_up_ms = platform.clock().now_ms();
        Self {
            platform,
            config,
            master: None,
            pending_assertions: None,
            pending_enumeration: None,
            powered_up_ms,
            pin: crate::pin::PinState::default(),
            large_blobs: crate::large_blobs::LargeBlobState::default(),
            hooks: crate::hooks::Hooks::default(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Changes settings (knobs a tester turns between ceremonies).
    pub fn config_mut(&mut self) -> &mut Config {
        &mut self.config
    }

    /// The test-fault hooks ([`crate::hooks`]).
    pub fn hooks(&self) -> &crate::hooks::Hooks {
        &self.hooks
    }

    /// Turns test-fault hooks on or off ([`crate::hooks`]): deliberate misbehaviour for
    /// testing clients and relying parties. A device in service leaves them off.
    pub fn hooks_mut(&mut self) -> &mut crate::hooks::Hooks {
        &mut self.hooks
    }

    /// The platform, for inspection.
    pub fn platform(&self) -> &P {
        &self.platform
    }

    /// The platform, to script presence or advance a test clock.
    pub fn platform_mut(&mut self) -> &mut P {
        &mut self.platform
    }

    /// Gives the platform back.
    pub fn into_platform(self) -> P {
        self.platform
    }

    /// Forgets the state a power cycle loses (the pending getNextAssertion, the PIN/UV auth
    /// key-agreement keys and pinUvAuthToken, the count of consecutive wrong PINs), keeping
    /// credentials and the PIN, and opens a new reset window.
    pub fn power_cycle(&mut self) {
        self.pending_assertions = None;
        self.pending_enumeration = None;
        self.powered_up_ms = self.platform.clock().now_ms();
        // New key-agreement keys (made on first use), no token, and PIN entry unblocked.
        self.pin = crate::pin::PinState::default();
        self.abandon_large_blob_write();
    }

    /// Processes one CTAP2 request — the command byte, then its CBOR parameters — and returns
    /// the response: a status byte, then the CBOR result on success.
    pub async fn process(&mut self, request: &[u8]) -> Vec<u8> {
        let result = self.dispatch(request).await;
        match result {
            Ok(Some(value)) => {
                let mut out = Vec::with_capacity(256);
                out.push(StatusCode::Ok.to_byte());
                cbor::encode(&value, &mut out);
                out
            }
            Ok(None) => alloc::vec![StatusCode::Ok.to_byte()],
            Err(status) => alloc::vec![status.to_byte()],
        }
    }

    async fn dispatch(&mut self, request: &[u8]) -> Result<Option<Value>, StatusCode> {
        let (&command, parameters) = request.split_first().ok_or(StatusCode::InvalidLength)?;
        if request.len() > self.config.max_msg_size {
            return Err(StatusCode::RequestTooLarge);
        }
        // Only an authenticatorGetNextAssertion may follow the assertion that set it up.
        let pending = self.pending_assertions.take();
        // Likewise credential management's GetNext subcommands.
        let pending_enumeration = self.pending_enumeration.take();
        let parameters = if parameters.is_empty() {
            None
        } else {
            Some(cbor::decode(parameters)?)
        };
        match command {
            command::MAKE_CREDENTIAL => self
                .make_credential(parameters.as_ref().ok_or(StatusCode::MissingParameter)?)
                .await
                .map(Some),
            command::GET_ASSERTION => self
                .get_assertion(parameters.as_ref().ok_or(StatusCode::MissingParameter)?)
                .await
                .map(Some),
            command::GET_NEXT_ASSERTION => self.get_next_assertion(pending).map(Some),
            command::GET_INFO => self.get_info().map(Some),
            command::RESET => self.reset().await.map(|()| None),
            command::SELECTION => self.selection().await.map(|()| None),
            command::CREDENTIAL_MANAGEMENT | command::CREDENTIAL_MANAGEMENT_PREVIEW => {
                self.credential_management(parameters.as_ref(), pending_enumeration)
            }
            command::CLIENT_PIN => {
                self.client_pin(parameters.as_ref().ok_or(StatusCode::MissingParameter)?)
                    .await
            }
            command::LARGE_BLOBS => {
                self.large_blobs(parameters.as_ref().ok_or(StatusCode::MissingParameter)?)
            }
            command::CONFIG => self
                .authenticator_config(parameters.as_ref().ok_or(StatusCode::MissingParameter)?)
                .map(|()| None),
            _ => Err(StatusCode::InvalidCommand),
        }
    }

    /// Asks for user presence or verification and maps the outcome to a status.
    pub(crate) async fn ask_user(
        &mut self,
        kind: PresenceKind,
        purpose: PresencePurpose,
        rp_id: Option<&str>,
    ) -> Result<(), StatusCode> {
        let timeout_ms = self.config.presence_timeout_ms;
        let outcome = self
            .platform
            .presence()
            .request(PresenceRequest {
                kind,
                purpose,
                rp_id,
                timeout_ms,
            })
            .await;
        match outcome {
            PresenceOutcome::Granted => Ok(()),
            PresenceOutcome::Denied => Err(StatusCode::OperationDenied),
            PresenceOutcome::VerificationFailed => Err(StatusCode::UvInvalid),
            PresenceOutcome::TimedOut => Err(StatusCode::UserActionTimeout),
            PresenceOutcome::Cancelled => Err(StatusCode::KeepaliveCancel),
        }
    }

    /// The master key, created on first use.
    pub(crate) fn master_key(&mut self) -> Result<MasterKey, StatusCode> {
        if let Some(master) = &self.master {
            return Ok(master.clone());
        }
        let store = self.platform.store();
        let secret: Zeroizing<[u8; 32]> = match store.get(storage::MASTER_KEY)? {
            Some(bytes) => {
                let mut bytes = bytes;
                let secret = bytes.as_slice().try_into().map_err(|_| StatusCode::Other);
                bytes.zeroize();
                Zeroizing::new(secret?)
            }
            None => {
                let mut secret = Zeroizing::new([0u8; 32]);
                self.platform.rng().fill_bytes(secret.as_mut());
                self.platform
                    .store()
                    .commit(&[Write::Put(storage::MASTER_KEY, secret.as_slice())])?;
                secret
            }
        };
        let master = MasterKey::new(&secret);
        self.master = Some(master.clone());
        Ok(master)
    }

    /// Advances the signature counter for one signature by a credential whose counter is not
    /// kept in a resident record, and returns the value to put in authData.
    pub(crate) fn next_signature_count(&mut self, credential_id: &[u8]) -> Result<u32, StatusCode> {
        let key = match self.config.counter {
            CounterMode::AlwaysZero => return Ok(0),
            CounterMode::Global => storage::GLOBAL_COUNTER.to_vec(),
            CounterMode::PerCredential => storage::non_resident_counter_key(credential_id),
        };
        let store = self.platform.store();
        let next = storage::read_u32(store, &key)?.wrapping_add(1);
        store.commit(&[Write::Put(&key, &next.to_be_bytes())])?;
        Ok(next)
    }

    /// The backup flags every credential of this device carries.
    pub(crate) fn backup_flags(&self) -> u8 {
        let mut bits = 0;
        if self.config.backup_eligible {
            bits |= flags::BE;
            if self.config.backup_state {
                bits |= flags::BS;
            }
        }
        bits
    }

    /// authenticatorSelection (CTAP 2.1 §6.9): one user presence test.
    async fn selection(&mut self) -> Result<(), StatusCode> {
        self.ask_user(PresenceKind::UserPresence, PresencePurpose::Selection, None)
            .await
    }

    /// authenticatorReset (CTAP 2.1 §6.6).
    async fn reset(&mut self) -> Result<(), StatusCode> {
        // 1. Only within the window after power-up (emulators may lift the window).
        if let Some(window) = self.config.reset_window_ms
            && self
                .platform
                .clock()
                .now_ms()
                .saturating_sub(self.powered_up_ms)
                > window
        {
            return Err(StatusCode::NotAllowed);
        }
        // 2. The user must confirm.
        self.ask_user(PresenceKind::UserPresence, PresencePurpose::Reset, None)
            .await?;
        // 3. Forget every credential and the master key.
        self.wipe()
    }

    /// What authenticatorReset does once allowed and confirmed, without asking anyone (for
    /// hosts that automate the device): forgets every credential and the master key (so every
    /// non-discoverable ID dies too; a new master key is made on next use), the PIN, the
    /// large-blob array and authenticatorConfig's settings, and ends every pending operation.
    pub fn wipe(&mut self) -> Result<(), StatusCode> {
        self.platform.store().commit(&[Write::Clear])?;
        self.master = None;
        self.pending_assertions = None;
        self.pending_enumeration = None;
        // The PIN went with the store; no token survives it either. So did the large-blob
        // array and authenticatorConfig's settings: a write in progress ends too.
        self.pin = crate::pin::PinState::default();
        self.abandon_large_blob_write();
        Ok(())
    }

    /// How many more discoverable credentials fit.
    pub(crate) fn remaining_discoverable(&mut self) -> Result<u32, StatusCode> {
        let used = storage::read_u32(self.platform.store(), storage::RESIDENT_COUNT)?;
        Ok(self
            .config
            .max_discoverable_credentials
            .saturating_sub(used))
    }
}

/// SHA-256 of an RP ID.
pub fn rp_id_hash(rp_id: &str) -> [u8; 32] {
    sha2::Sha256::digest(rp_id.as_bytes()).into()
}

/// Authenticator data (WebAuthn §6.1): rpIdHash ‖ flags ‖ signCount ‖ [attested credential
/// data] ‖ [extensions].
pub fn authenticator_data(
    rp_id_hash: &[u8; 32],
    flags: u8,
    sign_count: u32,
    attested: Option<(&[u8; 16], &[u8], &Value)>,
    extensions: Option<&Value>,
) -> Vec<u8> {
    let mut data = Vec::with_capacity(256);
    data.extend_from_slice(rp_id_hash);
    data.push(flags);
    data.extend_from_slice(&sign_count.to_be_bytes());
    if let Some((aaguid, credential_id, public_key)) = attested {
        data.extend_from_slice(aaguid);
        let id_len = u16::try_from(credential_id.len()).unwrap_or(u16::MAX);
        data.extend_from_slice(&id_len.to_be_bytes());
        data.extend_from_slice(credential_id);
        cbor::encode(public_key, &mut data);
    }
    if let Some(extensions) = extensions {
        cbor::encode(extensions, &mut data);
    }
    data
}
