//! PIN/UV auth (CTAP 2.1 §6.5): the PIN/UV auth protocols, authenticatorClientPIN, the
//! pinUvAuthToken, and the checks makeCredential, getAssertion and the commands to come
//! (credential management, large blobs, authenticatorConfig, hmac-secret) build on.
//!
//! | piece | where |
//! |---|---|
//! | protocols one and two: key agreement, [`SharedSecret`] (encrypt, decrypt, authenticate, verify) | `protocol.rs` |
//! | authenticatorClientPIN (0x06) and its subcommands | `client_pin.rs` |
//! | the pinUvAuthToken: permissions, RP binding, `userPresent`/`userVerified`, usage timer | `token.rs` |
//! | the persistent part: PIN hash, retries, forcePINChange, minPINLength, UV retries | [`crate::storage::PinRecord`] under `m/pin` |
//!
//! What a power cycle forgets lives in `PinState`: the key-agreement keys (made lazily, on
//! first use after power-up), the token, and the count of consecutive wrong PINs (three block
//! PIN entry until the next power cycle: `CTAP2_ERR_PIN_AUTH_BLOCKED`).
//!
//! # The API other commands use
//!
//! - `Authenticator::verify_pin_uv_auth_param`: checks a `pinUvAuthParam` against the
//!   in-use token for a [`Permission`] and an RP, and marks the token used;
//! - `Authenticator::pin_protocol`, `Authenticator::decapsulate` and [`SharedSecret`]:
//!   a fresh key agreement with the platform (hmac-secret's `keyAgreement`/`saltEnc`);
//! - `Authenticator::pin_is_set`, `Authenticator::token_user_verified`,
//!   `Authenticator::pin_record` / `Authenticator::store_pin_record` (minPINLength and
//!   forcePINChange for authenticatorConfig);
//! - [`SUPPORTED_PERMISSIONS`]: add a permission's bit when its command lands.

mod client_pin;
mod protocol;
mod token;

use alloc::string::String;

pub use protocol::{PinUvAuthProtocol, SharedSecret};
pub use token::Permission;

use crate::authenticator::Authenticator;
use crate::cbor::Value;
use crate::platform::{
    BuiltInUv, Clock, Platform, Presence, PresenceKind, PresencePurpose, Store, Write,
};
use crate::request::PinUvAuthInput;
use crate::status::StatusCode;
use crate::storage::{self, PinRecord};
use protocol::KeyAgreementKey;
use token::PinUvAuthToken;

/// Consecutive wrong PINs after which PIN entry is blocked until the next power cycle.
pub const MAX_CONSECUTIVE_PIN_FAILURES: u8 = 3;

/// The permissions a pinUvAuthToken can be issued with. Requesting any other permission CTAP
/// 2.1 defines is `CTAP2_ERR_UNAUTHORIZED_PERMISSION`.
///
/// makeCredential, getAssertion, credential management, large-blob writes and
/// authenticatorConfig. `acfg` comes only with a PIN: getInfo reports no `uvAcfg`, so
/// getPinUvAuthTokenUsingUvWithPermissions refuses it (`CTAP2_ERR_UNAUTHORIZED_PERMISSION`).
pub const SUPPORTED_PERMISSIONS: u8 = Permission::MakeCredential.bit()
    | Permission::GetAssertion.bit()
    | Permission::CredentialManagement.bit()
    | Permission::LargeBlobWrite.bit()
    | Permission::AuthenticatorConfig.bit();

/// The PIN/UV auth state a power cycle loses.
#[derive(Default)]
pub(crate) struct PinState {
    /// The key-agreement key of protocol one, made on first use.
    key_agreement_one: Option<KeyAgreementKey>,
    /// The key-agreement key of protocol two, made on first use.
    key_agreement_two: Option<KeyAgreementKey>,
    /// The pinUvAuthToken.
    token: PinUvAuthToken,
    /// Wrong PINs in a row since power-up (or the last right one).
    consecutive_pin_failures: u8,
}

impl core::fmt::Debug for PinState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PinState")
            .field(
                "key_agreement",
                &(
                    self.key_agreement_one.is_some(),
                    self.key_agreement_two.is_some(),
                ),
            )
            .field("token", &self.token)
            .field("consecutive_pin_failures", &self.consecutive_pin_failures)
            .finish()
    }
}

impl PinState {
    /// The key-agreement key of a protocol, made now if there is none since power-up (or since
    /// the last wrong PIN).
    fn key_agreement(
        &mut self,
        protocol: PinUvAuthProtocol,
        rng: &mut impl rand_core::CryptoRng,
    ) -> &KeyAgreementKey {
        let slot = match protocol {
            PinUvAuthProtocol::One => &mut self.key_agreement_one,
            PinUvAuthProtocol::Two => &mut self.key_agreement_two,
        };
        slot.get_or_insert_with(|| KeyAgreementKey::generate(rng))
    }

    /// Regenerates a protocol's key-agreement key (the new one is made on next use).
    fn regenerate_key_agreement(&mut self, protocol: PinUvAuthProtocol) {
        match protocol {
            PinUvAuthProtocol::One => self.key_agreement_one = None,
            PinUvAuthProtocol::Two => self.key_agreement_two = None,
        }
    }
}

impl<P: Platform> Authenticator<P> {
    /// Whether a PIN is set (getInfo's `clientPin`).
    pub(crate) fn pin_is_set(&mut self) -> Result<bool, StatusCode> {
        Ok(self.pin_record()?.pin_hash.is_some())
    }

    /// The persistent PIN/UV state (PIN hash, retries, forcePINChange, minPINLength, UV
    /// retries).
    pub(crate) fn pin_record(&mut self) -> Result<PinRecord, StatusCode> {
        storage::read_pin_record(self.platform.store())
    }

    /// Writes the persistent PIN/UV state (one atomic, durable write).
    pub(crate) fn store_pin_record(&mut self, record: &PinRecord) -> Result<(), StatusCode> {
        let bytes = record.to_bytes();
        self.platform
            .store()
            .commit(&[Write::Put(storage::PIN_STATE, &bytes)])?;
        Ok(())
    }

    /// Whether the in-use pinUvAuthToken still carries user verification
    /// (`getUserVerifiedFlagValue()`); false without an in-use token, and false once a
    /// makeCredential or getAssertion with presence has used it up — inside those commands,
    /// extensions go by the UV flag of the response being built instead.
    #[allow(
        dead_code,
        reason = "API for the extensions to come (hmac-secret chooses CredRandomWithUV by it)"
    )]
    pub(crate) fn token_user_verified(&self) -> bool {
        self.pin.token.user_verified(self.platform.clock().now_ms())
    }

    /// Whether the in-use pinUvAuthToken still carries user presence
    /// (`getUserPresentFlagValue()`).
    pub(crate) fn token_user_present(&self) -> bool {
        self.pin.token.user_present(self.platform.clock().now_ms())
    }

    /// The permissions RP ID of the in-use pinUvAuthToken, if it is bound to one (credential
    /// management compares it with an rpIDHash or a credential's RP).
    pub(crate) fn token_rp_id(&self) -> Option<&str> {
        self.pin.token.rp_id(self.platform.clock().now_ms())
    }

    /// The PIN/UV auth protocol with this version number, if this authenticator offers it.
    /// `None` is what the commands answer with `CTAP1_ERR_INVALID_PARAMETER`.
    pub(crate) fn pin_protocol(&self, version: u8) -> Option<PinUvAuthProtocol> {
        PinUvAuthProtocol::from_version(version.into())
    }

    /// `decapsulate(platformKeyAgreementKey)`: the secret shared with the platform, whose
    /// COSE_Key came in the request, under this protocol's key-agreement key.
    /// A malformed key or one not on P-256 is `CTAP1_ERR_INVALID_PARAMETER`.
    pub(crate) fn decapsulate(
        &mut self,
        protocol: PinUvAuthProtocol,
        platform_key: &Value,
    ) -> Result<SharedSecret, StatusCode> {
        self.pin
            .key_agreement(protocol, self.platform.rng())
            .decapsulate(protocol, platform_key)
    }

    /// Checks a `pinUvAuthParam` for an operation, as CTAP 2.1 prescribes for every command that
    /// takes one, and marks the token used (its rolling timer restarts):
    ///
    /// 1. `protocol` is one this authenticator offers, else `CTAP1_ERR_INVALID_PARAMETER`;
    /// 2. a pinUvAuthToken is in use (issued, not expired) and `param` is
    ///    `authenticate(pinUvAuthToken, message)` for that protocol;
    /// 3. the token carries `permission`;
    /// 4. the RP: with `Some(rp_id)`, a token bound to another RP fails; with `None` (an
    ///    operation on no single RP), a token bound to an RP fails for
    ///    [`Permission::CredentialManagement`], and the binding is ignored for the others;
    /// 5. for [`Permission::MakeCredential`] and [`Permission::GetAssertion`], the token's
    ///    `userVerified` flag is still set; an unbound token becomes bound to `rp_id`.
    ///
    /// Every failure of 2–5 is `CTAP2_ERR_PIN_AUTH_INVALID`. Consuming the token's flags after
    /// a ceremony is the caller's business ([`Authenticator::consume_pin_uv_auth_token`]).
    pub(crate) fn verify_pin_uv_auth_param(
        &mut self,
        protocol: u8,
        param: &[u8],
        message: &[u8],
        permission: Permission,
        rp_id: Option<&str>,
    ) -> Result<(), StatusCode> {
        let protocol = self
            .pin_protocol(protocol)
            .ok_or(StatusCode::InvalidParameter)?;
        let now = self.platform.clock().now_ms();
        let token = &mut self.pin.token;
        token.observe(now);
        if !token.verify(now, protocol, message, param) || !token.has_permission(now, permission) {
            return Err(StatusCode::PinAuthInvalid);
        }
        let bound_elsewhere = match (token.rp_id(now), rp_id) {
            (Some(bound), Some(rp_id)) => bound != rp_id,
            (Some(_), None) => permission == Permission::CredentialManagement,
            (None, _) => false,
        };
        if bound_elsewhere {
            return Err(StatusCode::PinAuthInvalid);
        }
        if permission.is_ceremony() {
            if !token.user_verified(now) {
                return Err(StatusCode::PinAuthInvalid);
            }
            if let Some(rp_id) = rp_id {
                token.bind_rp_id(rp_id);
            }
        }
        token.mark_used(now);
        Ok(())
    }

    /// After a makeCredential or getAssertion collected user presence: the token's
    /// `userPresent` and `userVerified` flags are consumed, and its permissions except `lbw`.
    pub(crate) fn consume_pin_uv_auth_token(&mut self) {
        self.pin.token.consume();
    }

    /// Whether the authenticator is "protected by some form of user verification": a PIN is
    /// set, or the built-in method is enrolled.
    pub(crate) fn protected_by_user_verification(&mut self) -> Result<bool, StatusCode> {
        Ok(self.platform.presence().built_in_uv() == BuiltInUv::Configured || self.pin_is_set()?)
    }

    /// Built-in user verification (`performBuiltInUv`), counting `uvRetries`: a failed
    /// verification is `CTAP2_ERR_UV_INVALID`, the one that uses up the last retry — and any
    /// attempt after — `CTAP2_ERR_UV_BLOCKED` (the platform falls back to the PIN). A success
    /// restores the retries and is also evidence of user presence.
    pub(crate) async fn perform_built_in_uv(
        &mut self,
        purpose: PresencePurpose,
        rp_id: Option<&str>,
    ) -> Result<(), StatusCode> {
        let mut record = self.pin_record()?;
        if record.uv_retries == 0 {
            return Err(StatusCode::UvBlocked);
        }
        match self
            .ask_user(PresenceKind::UserVerification, purpose, rp_id)
            .await
        {
            Ok(()) => {
                if record.uv_retries != storage::MAX_UV_RETRIES {
                    record.uv_retries = storage::MAX_UV_RETRIES;
                    self.store_pin_record(&record)?;
                }
                Ok(())
            }
            Err(StatusCode::UvInvalid) => {
                record.uv_retries = record.uv_retries.saturating_sub(1);
                self.store_pin_record(&record)?;
                Err(if record.uv_retries == 0 {
                    StatusCode::UvBlocked
                } else {
                    StatusCode::UvInvalid
                })
            }
            Err(other) => Err(other),
        }
    }

    /// Steps 1 and 2 of makeCredential (§6.1.2) and getAssertion (§6.2.2):
    ///
    /// 1. a zero-length `pinUvAuthParam` asks for a touch (to let the user pick this
    ///    authenticator), then answers `CTAP2_ERR_PIN_NOT_SET` or `CTAP2_ERR_PIN_INVALID`
    ///    (declined or timed out: `CTAP2_ERR_OPERATION_DENIED`);
    /// 2. a `pinUvAuthParam` needs a `pinUvAuthProtocol` (`CTAP2_ERR_MISSING_PARAMETER`) that
    ///    is offered (`CTAP1_ERR_INVALID_PARAMETER`).
    ///
    /// Returns the protocol version when there is a `pinUvAuthParam` to verify.
    pub(crate) async fn pin_uv_auth_precheck(
        &mut self,
        input: &PinUvAuthInput<'_>,
        purpose: PresencePurpose,
        rp_id: &str,
    ) -> Result<Option<u8>, StatusCode> {
        match input.param {
            None => Ok(None),
            Some([]) => {
                let presence = self
                    .ask_user(PresenceKind::UserPresence, purpose, Some(rp_id))
                    .await;
                Err(match presence {
                    Ok(()) if self.pin_is_set()? => StatusCode::PinInvalid,
                    Ok(()) => StatusCode::PinNotSet,
                    Err(StatusCode::KeepaliveCancel) => StatusCode::KeepaliveCancel,
                    Err(_) => StatusCode::OperationDenied,
                })
            }
            Some(_) => {
                let version = input.protocol.ok_or(StatusCode::MissingParameter)?;
                u8::try_from(version)
                    .ok()
                    .filter(|v| self.pin_protocol(*v).is_some())
                    .map(Some)
                    .ok_or(StatusCode::InvalidParameter)
            }
        }
    }

    /// Issues a new pinUvAuthToken (every earlier one dies) and returns the clientPIN response
    /// carrying it encrypted to the platform: `{2: encrypt(sharedSecret, pinUvAuthToken)}`.
    fn issue_pin_uv_auth_token(
        &mut self,
        shared: &SharedSecret,
        user_is_present: bool,
        permissions: u8,
        rp_id: Option<&str>,
    ) -> Result<Value, StatusCode> {
        let now = self.platform.clock().now_ms();
        self.pin.token.reset(self.platform.rng());
        self.pin
            .token
            .begin_using(now, user_is_present, permissions, rp_id.map(String::from));
        let encrypted =
            shared.encrypt(self.platform.rng(), self.pin.token.value(shared.protocol()))?;
        Ok(crate::cbor::map(alloc::vec![(
            crate::cbor::int(2),
            Value::Bytes(encrypted)
        )]))
    }
}
