//! authenticatorClientPIN (CTAP 2.1 §6.5.5).
//!
//! | subcommand | answer |
//! |---|---|
//! | getPINRetries (0x01) | `{3: pinRetries, 4: powerCycleState}` |
//! | getKeyAgreement (0x02) | `{1: COSE_Key}` of the protocol's key-agreement key |
//! | setPIN (0x03) | status only |
//! | changePIN (0x04) | status only; every token dies |
//! | getPinToken (0x05) | `{2: token}`, permissions `mc` and `ga`, no RP |
//! | getPinUvAuthTokenUsingUvWithPermissions (0x06) | `{2: token}` after built-in UV |
//! | getUVRetries (0x07) | `{5: uvRetries}` |
//! | getPinUvAuthTokenUsingPinWithPermissions (0x09) | `{2: token}` |
//!
//! Wrong PINs: each attempt first decrements `pinRetries` on the store (so cutting the power
//! saves no guess), a match restores it to 8. A mismatch also replaces the key-agreement key;
//! at 0 retries the PIN is blocked for good (`CTAP2_ERR_PIN_BLOCKED`, only a reset helps), and
//! after three mismatches in a row PIN entry is blocked until the next power cycle
//! (`CTAP2_ERR_PIN_AUTH_BLOCKED`).

use alloc::vec::Vec;

use sha2::Digest;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::token::DEFINED_PERMISSIONS;
use super::{
    MAX_CONSECUTIVE_PIN_FAILURES, Permission, PinUvAuthProtocol, SUPPORTED_PERMISSIONS,
    SharedSecret,
};
use crate::authenticator::Authenticator;
use crate::cbor::{self, Key, Members, Value};
use crate::platform::{BuiltInUv, Platform, Presence, PresencePurpose};
use crate::status::StatusCode;
use crate::storage::{self, PinRecord};

/// Request member keys.
mod key {
    pub const PIN_UV_AUTH_PROTOCOL: u64 = 0x01;
    pub const SUB_COMMAND: u64 = 0x02;
    pub const KEY_AGREEMENT: u64 = 0x03;
    pub const PIN_UV_AUTH_PARAM: u64 = 0x04;
    pub const NEW_PIN_ENC: u64 = 0x05;
    pub const PIN_HASH_ENC: u64 = 0x06;
    pub const PERMISSIONS: u64 = 0x09;
    pub const RP_ID: u64 = 0x0A;
}

/// Response member keys.
mod response {
    pub const KEY_AGREEMENT: i64 = 0x01;
    pub const PIN_RETRIES: i64 = 0x03;
    pub const POWER_CYCLE_STATE: i64 = 0x04;
    pub const UV_RETRIES: i64 = 0x05;
}

/// Subcommands.
mod subcommand {
    pub const GET_PIN_RETRIES: u64 = 0x01;
    pub const GET_KEY_AGREEMENT: u64 = 0x02;
    pub const SET_PIN: u64 = 0x03;
    pub const CHANGE_PIN: u64 = 0x04;
    pub const GET_PIN_TOKEN: u64 = 0x05;
    pub const GET_TOKEN_USING_UV: u64 = 0x06;
    pub const GET_UV_RETRIES: u64 = 0x07;
    pub const GET_TOKEN_USING_PIN: u64 = 0x09;
}

/// The length every padded PIN has (CTAP 2.1: `paddedNewPin` is 64 bytes).
const PADDED_PIN_LEN: usize = 64;
/// The longest PIN, in bytes of UTF-8.
const MAX_PIN_BYTES: usize = 63;
/// LEFT(SHA-256(PIN), 16).
const PIN_HASH_LEN: usize = 16;

/// An authenticatorClientPIN request, every member type-checked.
struct Request<'a> {
    protocol: Option<u64>,
    sub_command: u64,
    key_agreement: Option<&'a Value>,
    pin_uv_auth_param: Option<&'a [u8]>,
    new_pin_enc: Option<&'a [u8]>,
    pin_hash_enc: Option<&'a [u8]>,
    permissions: Option<u64>,
    rp_id: Option<&'a str>,
}

/// An unsigned integer, or `CTAP2_ERR_CBOR_UNEXPECTED_TYPE`.
fn as_uint(value: &Value) -> Result<u64, StatusCode> {
    match value {
        Value::Integer(i) => u64::try_from(*i).map_err(|_| StatusCode::CborUnexpectedType),
        _ => Err(StatusCode::CborUnexpectedType),
    }
}

impl<'a> Request<'a> {
    fn parse(parameters: &'a Value) -> Result<Self, StatusCode> {
        let members = Members::of(parameters)?;
        let get = |k| members.get(Key::Int(k));
        let bytes = |k| get(k).map(cbor::as_bytes).transpose();
        let key_agreement = get(key::KEY_AGREEMENT);
        if let Some(value) = key_agreement {
            Members::of(value)?;
        }
        Ok(Self {
            protocol: get(key::PIN_UV_AUTH_PROTOCOL).map(as_uint).transpose()?,
            key_agreement,
            pin_uv_auth_param: bytes(key::PIN_UV_AUTH_PARAM)?,
            new_pin_enc: bytes(key::NEW_PIN_ENC)?,
            pin_hash_enc: bytes(key::PIN_HASH_ENC)?,
            permissions: get(key::PERMISSIONS).map(as_uint).transpose()?,
            rp_id: get(key::RP_ID).map(cbor::as_text).transpose()?,
            sub_command: as_uint(members.required(Key::Int(key::SUB_COMMAND))?)?,
        })
    }

    /// The protocol, which must be present and offered.
    fn protocol(&self) -> Result<PinUvAuthProtocol, StatusCode> {
        let version = self.protocol.ok_or(StatusCode::MissingParameter)?;
        i64::try_from(version)
            .ok()
            .and_then(PinUvAuthProtocol::from_version)
            .ok_or(StatusCode::InvalidParameter)
    }
}

/// A member the subcommand needs.
fn need<T>(member: Option<T>) -> Result<T, StatusCode> {
    member.ok_or(StatusCode::MissingParameter)
}

/// A new PIN, decrypted and checked: its LEFT(SHA-256(PIN), 16) and its length in code points.
struct NewPin {
    hash: Zeroizing<[u8; PIN_HASH_LEN]>,
    code_points: u8,
}

/// Decrypts `newPinEnc` and applies the PIN rules: `paddedNewPin` of exactly 64 bytes
/// (`CTAP1_ERR_INVALID_PARAMETER`); after the trailing 0x00 bytes are dropped, at most 63 bytes
/// of valid UTF-8 and at least `min_length` code points (`CTAP2_ERR_PIN_POLICY_VIOLATION`).
fn new_pin(
    shared: &SharedSecret,
    new_pin_enc: &[u8],
    min_length: u8,
) -> Result<NewPin, StatusCode> {
    let padded = shared
        .decrypt(new_pin_enc)
        .map_err(|_| StatusCode::PinAuthInvalid)?;
    if padded.len() != PADDED_PIN_LEN {
        return Err(StatusCode::InvalidParameter);
    }
    let end = padded
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |last| last + 1);
    let pin = padded.get(..end).unwrap_or_default();
    if pin.len() > MAX_PIN_BYTES {
        return Err(StatusCode::PinPolicyViolation);
    }
    let code_points = core::str::from_utf8(pin)
        .map_err(|_| StatusCode::PinPolicyViolation)?
        .chars()
        .count();
    if code_points < usize::from(min_length) {
        return Err(StatusCode::PinPolicyViolation);
    }
    Ok(NewPin {
        hash: pin_hash(pin),
        code_points: u8::try_from(code_points).map_err(|_| StatusCode::PinPolicyViolation)?,
    })
}

/// LEFT(SHA-256(pin), 16).
fn pin_hash(pin: &[u8]) -> Zeroizing<[u8; PIN_HASH_LEN]> {
    let mut digest = sha2::Sha256::digest(pin);
    let mut hash = Zeroizing::new([0u8; PIN_HASH_LEN]);
    if let Some(left) = digest.get(..PIN_HASH_LEN) {
        hash.copy_from_slice(left);
    }
    zeroize::Zeroize::zeroize(digest.as_mut_slice());
    hash
}

impl<P: Platform> Authenticator<P> {
    /// authenticatorClientPIN: `Ok(None)` for the subcommands that answer with a status only.
    pub(crate) async fn client_pin(
        &mut self,
        parameters: &Value,
    ) -> Result<Option<Value>, StatusCode> {
        let request = Request::parse(parameters)?;
        match request.sub_command {
            subcommand::GET_PIN_RETRIES => self.get_pin_retries().map(Some),
            subcommand::GET_KEY_AGREEMENT => self.get_key_agreement(&request).map(Some),
            subcommand::SET_PIN => self.set_pin(&request).map(|()| None),
            subcommand::CHANGE_PIN => self.change_pin(&request).map(|()| None),
            subcommand::GET_PIN_TOKEN => self.get_pin_token(&request).map(Some),
            subcommand::GET_TOKEN_USING_UV => self.get_token_using_uv(&request).await.map(Some),
            subcommand::GET_UV_RETRIES => self.get_uv_retries().map(Some),
            subcommand::GET_TOKEN_USING_PIN => self.get_token_using_pin(&request).map(Some),
            _ => Err(StatusCode::InvalidSubcommand),
        }
    }

    /// getPINRetries (§6.5.5.2). `powerCycleState` is true while PIN entry waits for a power
    /// cycle.
    fn get_pin_retries(&mut self) -> Result<Value, StatusCode> {
        let record = self.pin_record()?;
        let power_cycle = self.pin.consecutive_pin_failures >= MAX_CONSECUTIVE_PIN_FAILURES;
        Ok(cbor::map(alloc::vec![
            (
                cbor::int(response::PIN_RETRIES),
                cbor::int(record.pin_retries.into())
            ),
            (
                cbor::int(response::POWER_CYCLE_STATE),
                Value::Bool(power_cycle)
            ),
        ]))
    }

    /// getUVRetries (§6.5.5.3): only with a built-in verification method.
    fn get_uv_retries(&mut self) -> Result<Value, StatusCode> {
        if self.platform.presence().built_in_uv() == BuiltInUv::Unsupported {
            return Err(StatusCode::InvalidSubcommand);
        }
        let record = self.pin_record()?;
        Ok(cbor::map(alloc::vec![(
            cbor::int(response::UV_RETRIES),
            cbor::int(record.uv_retries.into())
        )]))
    }

    /// getKeyAgreement (§6.5.5.4): the protocol's key-agreement public key.
    fn get_key_agreement(&mut self, request: &Request<'_>) -> Result<Value, StatusCode> {
        let protocol = request.protocol()?;
        let key = self
            .pin
            .key_agreement(protocol, self.platform.rng())
            .cose_public_key();
        Ok(cbor::map(alloc::vec![(
            cbor::int(response::KEY_AGREEMENT),
            key
        )]))
    }

    /// setPIN (§6.5.5.5).
    fn set_pin(&mut self, request: &Request<'_>) -> Result<(), StatusCode> {
        // 1–2. Mandatory members, then the protocol.
        let key_agreement = need(request.key_agreement)?;
        let new_pin_enc = need(request.new_pin_enc)?;
        let pin_uv_auth_param = need(request.pin_uv_auth_param)?;
        let protocol = request.protocol()?;
        // 3. Only once: a PIN is changed with changePIN.
        let mut record = self.pin_record()?;
        if record.pin_hash.is_some() {
            return Err(StatusCode::PinAuthInvalid);
        }
        // 4–5. The shared secret, and the platform's MAC over newPinEnc.
        let shared = self.decapsulate(protocol, key_agreement)?;
        shared.verify(new_pin_enc, pin_uv_auth_param)?;
        // 6–10. Decrypt and check the new PIN.
        let pin = new_pin(&shared, new_pin_enc, record.min_pin_length)?;
        // 11. Store its hash; every retry counter is full.
        record.pin_hash = Some(*pin.hash);
        record.pin_code_points = pin.code_points;
        record.pin_retries = storage::MAX_PIN_RETRIES;
        record.force_pin_change = false;
        self.store_pin_record(&record)
    }

    /// changePIN (§6.5.5.6).
    fn change_pin(&mut self, request: &Request<'_>) -> Result<(), StatusCode> {
        let key_agreement = need(request.key_agreement)?;
        let pin_hash_enc = need(request.pin_hash_enc)?;
        let new_pin_enc = need(request.new_pin_enc)?;
        let pin_uv_auth_param = need(request.pin_uv_auth_param)?;
        let protocol = request.protocol()?;
        let mut record = self.pin_record()?;
        self.check_pin_entry_allowed(&record)?;
        let shared = self.decapsulate(protocol, key_agreement)?;
        // The platform's MAC over newPinEnc ‖ pinHashEnc.
        let mut message = Vec::with_capacity(new_pin_enc.len() + pin_hash_enc.len());
        message.extend_from_slice(new_pin_enc);
        message.extend_from_slice(pin_hash_enc);
        shared.verify(&message, pin_uv_auth_param)?;
        // The current PIN, counted against the retries.
        self.check_pin_hash(protocol, &shared, pin_hash_enc, &mut record)?;
        // The new one.
        let pin = new_pin(&shared, new_pin_enc, record.min_pin_length)?;
        if record.force_pin_change
            && record
                .pin_hash
                .as_ref()
                .is_some_and(|current| bool::from(current.ct_eq(&*pin.hash)))
        {
            // A forced change must change something.
            return Err(StatusCode::PinPolicyViolation);
        }
        record.pin_hash = Some(*pin.hash);
        record.pin_code_points = pin.code_points;
        record.pin_retries = storage::MAX_PIN_RETRIES;
        record.force_pin_change = false;
        self.store_pin_record(&record)?;
        // Every token handed out with the old PIN dies.
        self.pin.token.reset(self.platform.rng());
        Ok(())
    }

    /// getPinToken (§6.5.5.7.1, superseded): a token with the default permissions (`mc`, `ga`)
    /// and no permissions RP ID (the first makeCredential or getAssertion binds it).
    fn get_pin_token(&mut self, request: &Request<'_>) -> Result<Value, StatusCode> {
        let key_agreement = need(request.key_agreement)?;
        let pin_hash_enc = need(request.pin_hash_enc)?;
        let protocol = request.protocol()?;
        if request.permissions.is_some() || request.rp_id.is_some() {
            return Err(StatusCode::InvalidParameter);
        }
        let shared = self.pin_checked_shared_secret(protocol, key_agreement, pin_hash_enc)?;
        if self.pin_record()?.force_pin_change {
            return Err(StatusCode::PinInvalid);
        }
        let permissions = Permission::MakeCredential.bit() | Permission::GetAssertion.bit();
        self.issue_pin_uv_auth_token(&shared, false, permissions, None)
    }

    /// getPinUvAuthTokenUsingPinWithPermissions (§6.5.5.7.2).
    fn get_token_using_pin(&mut self, request: &Request<'_>) -> Result<Value, StatusCode> {
        let key_agreement = need(request.key_agreement)?;
        let pin_hash_enc = need(request.pin_hash_enc)?;
        need(request.permissions)?;
        let protocol = request.protocol()?;
        let permissions = requested_permissions(request)?;
        let shared = self.pin_checked_shared_secret(protocol, key_agreement, pin_hash_enc)?;
        if self.pin_record()?.force_pin_change {
            return Err(StatusCode::PinPolicyViolation);
        }
        self.issue_pin_uv_auth_token(&shared, false, permissions, request.rp_id)
    }

    /// getPinUvAuthTokenUsingUvWithPermissions (§6.5.5.7.3): the built-in method verifies the
    /// user (which also proves presence), then a token is issued.
    async fn get_token_using_uv(&mut self, request: &Request<'_>) -> Result<Value, StatusCode> {
        let built_in = self.platform.presence().built_in_uv();
        if built_in == BuiltInUv::Unsupported {
            return Err(StatusCode::InvalidSubcommand);
        }
        let key_agreement = need(request.key_agreement)?;
        need(request.permissions)?;
        let protocol = request.protocol()?;
        let permissions = requested_permissions(request)?;
        // authenticatorConfig with built-in UV would need getInfo's uvAcfg, which is not
        // offered: acfg comes with a PIN only.
        if permissions & Permission::AuthenticatorConfig.bit() != 0 {
            return Err(StatusCode::UnauthorizedPermission);
        }
        if built_in != BuiltInUv::Configured {
            return Err(StatusCode::NotAllowed);
        }
        if self.pin_record()?.uv_retries == 0 {
            return Err(StatusCode::UvBlocked);
        }
        let shared = self.decapsulate(protocol, key_agreement)?;
        self.perform_built_in_uv(PresencePurpose::GetPinUvAuthToken, request.rp_id)
            .await?;
        self.issue_pin_uv_auth_token(&shared, true, permissions, request.rp_id)
    }

    /// PIN entry is possible: a PIN is set, not blocked, and no power cycle is awaited.
    fn check_pin_entry_allowed(&self, record: &PinRecord) -> Result<(), StatusCode> {
        if record.pin_hash.is_none() {
            return Err(StatusCode::PinNotSet);
        }
        if record.pin_retries == 0 {
            return Err(StatusCode::PinBlocked);
        }
        if self.pin.consecutive_pin_failures >= MAX_CONSECUTIVE_PIN_FAILURES {
            return Err(StatusCode::PinAuthBlocked);
        }
        Ok(())
    }

    /// The common part of the PIN-based token subcommands: PIN entry allowed, the shared
    /// secret, and `pinHashEnc` checked against the stored PIN.
    fn pin_checked_shared_secret(
        &mut self,
        protocol: PinUvAuthProtocol,
        key_agreement: &Value,
        pin_hash_enc: &[u8],
    ) -> Result<SharedSecret, StatusCode> {
        let mut record = self.pin_record()?;
        self.check_pin_entry_allowed(&record)?;
        let shared = self.decapsulate(protocol, key_agreement)?;
        self.check_pin_hash(protocol, &shared, pin_hash_enc, &mut record)?;
        Ok(shared)
    }

    /// Checks `pinHashEnc` against the stored PIN hash, in constant time. `pinRetries` is
    /// decremented on the store first and restored after a match; a mismatch regenerates the
    /// key-agreement key and answers `CTAP2_ERR_PIN_BLOCKED` (no retries left),
    /// `CTAP2_ERR_PIN_AUTH_BLOCKED` (third mismatch in a row) or `CTAP2_ERR_PIN_INVALID`.
    fn check_pin_hash(
        &mut self,
        protocol: PinUvAuthProtocol,
        shared: &SharedSecret,
        pin_hash_enc: &[u8],
        record: &mut PinRecord,
    ) -> Result<(), StatusCode> {
        let stored = Zeroizing::new(record.pin_hash.ok_or(StatusCode::PinNotSet)?);
        record.pin_retries = record.pin_retries.saturating_sub(1);
        self.store_pin_record(record)?;
        let matches = shared.decrypt(pin_hash_enc).is_ok_and(|hash| {
            hash.len() == PIN_HASH_LEN && bool::from(hash.as_slice().ct_eq(stored.as_slice()))
        });
        if !matches {
            self.pin.regenerate_key_agreement(protocol);
            self.pin.consecutive_pin_failures = self.pin.consecutive_pin_failures.saturating_add(1);
            return Err(if record.pin_retries == 0 {
                StatusCode::PinBlocked
            } else if self.pin.consecutive_pin_failures >= MAX_CONSECUTIVE_PIN_FAILURES {
                StatusCode::PinAuthBlocked
            } else {
                StatusCode::PinInvalid
            });
        }
        self.pin.consecutive_pin_failures = 0;
        record.pin_retries = storage::MAX_PIN_RETRIES;
        self.store_pin_record(record)
    }
}

/// The `permissions` of a with-permissions request: not 0 (`CTAP1_ERR_INVALID_PARAMETER`),
/// none this authenticator cannot grant (`CTAP2_ERR_UNAUTHORIZED_PERMISSION`; undefined bits
/// are ignored), and `mc`/`ga` only with an `rpId` (`CTAP1_ERR_INVALID_PARAMETER`: the
/// permissions table makes the RP ID required for them).
fn requested_permissions(request: &Request<'_>) -> Result<u8, StatusCode> {
    let requested = request.permissions.ok_or(StatusCode::MissingParameter)?;
    if requested == 0 {
        return Err(StatusCode::InvalidParameter);
    }
    let defined = u8::try_from(requested & u64::from(DEFINED_PERMISSIONS)).unwrap_or_default();
    if defined & !SUPPORTED_PERMISSIONS != 0 {
        return Err(StatusCode::UnauthorizedPermission);
    }
    let ceremony = Permission::MakeCredential.bit() | Permission::GetAssertion.bit();
    if defined & ceremony != 0 && request.rp_id.is_none() {
        return Err(StatusCode::InvalidParameter);
    }
    Ok(defined)
}
