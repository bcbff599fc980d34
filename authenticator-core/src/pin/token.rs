//! The pinUvAuthToken and its state (CTAP 2.1 §6.5.2.1, §6.5.5.7).
//!
//! There is one token value per PIN/UV auth protocol (`resetPinUvAuthToken()` renews all of
//! them together) and one shared state: the permissions, the permissions RP ID, the
//! `userPresent` and `userVerified` flags, and the usage timer.
//!
//! Timer rules (USB values), evaluated against the platform clock whenever the token is looked
//! at — the observer of §6.5.5.7 run lazily:
//!
//! - **rolling timer**: the token stops being usable 30 s after its last use (the "initial
//!   usage time limit" counts from issuance until the first use, then restarts at every use);
//! - **max usage time period**: and in any case 10 minutes after it was issued;
//! - **user present time limit**: `userPresent` reads false 30 s after it was collected.

use alloc::string::String;

use rand_core::CryptoRng;
use zeroize::Zeroizing;

use super::PinUvAuthProtocol;

/// A pinUvAuthToken permission (CTAP 2.1 §6.5.5.7, the permissions table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// `mc` (0x01): authenticatorMakeCredential.
    MakeCredential,
    /// `ga` (0x02): authenticatorGetAssertion.
    GetAssertion,
    /// `cm` (0x04): authenticatorCredentialManagement.
    CredentialManagement,
    /// `be` (0x08): authenticatorBioEnrollment.
    BioEnrollment,
    /// `lbw` (0x10): authenticatorLargeBlobs writes.
    LargeBlobWrite,
    /// `acfg` (0x20): authenticatorConfig.
    AuthenticatorConfig,
}

impl Permission {
    /// Every permission CTAP 2.1 defines.
    pub const ALL: [Permission; 6] = [
        Permission::MakeCredential,
        Permission::GetAssertion,
        Permission::CredentialManagement,
        Permission::BioEnrollment,
        Permission::LargeBlobWrite,
        Permission::AuthenticatorConfig,
    ];

    /// The permission's bit in the `permissions` parameter.
    pub const fn bit(self) -> u8 {
        match self {
            Permission::MakeCredential => 0x01,
            Permission::GetAssertion => 0x02,
            Permission::CredentialManagement => 0x04,
            Permission::BioEnrollment => 0x08,
            Permission::LargeBlobWrite => 0x10,
            Permission::AuthenticatorConfig => 0x20,
        }
    }

    /// Whether using the permission consumes the token's `userVerified` flag
    /// (makeCredential and getAssertion).
    pub(crate) const fn is_ceremony(self) -> bool {
        matches!(self, Permission::MakeCredential | Permission::GetAssertion)
    }
}

/// The bits of the permissions CTAP 2.1 defines; other bits are ignored.
pub(crate) const DEFINED_PERMISSIONS: u8 = 0x3F;

/// Initial usage time limit, and the rolling timer's period, over USB.
pub(crate) const USAGE_TIME_LIMIT_MS: u64 = 30_000;
/// How long `userPresent` holds after it was collected.
pub(crate) const USER_PRESENT_TIME_LIMIT_MS: u64 = 30_000;
/// The longest a token lives, however often it is used.
pub(crate) const MAX_USAGE_TIME_PERIOD_MS: u64 = 600_000;

/// The pinUvAuthToken: per-protocol values and the shared state of an in-use token.
#[derive(Default)]
pub(crate) struct PinUvAuthToken {
    /// One random value per protocol, indexed by [`PinUvAuthProtocol::index`].
    values: [Zeroizing<[u8; 32]>; 2],
    /// `Some` while the token is in use.
    usage: Option<Usage>,
}

/// The state of an in-use token.
#[derive(Debug, Clone)]
struct Usage {
    permissions: u8,
    rp_id: Option<String>,
    user_present: bool,
    user_verified: bool,
    /// When beginUsingPinUvAuthToken ran (and, when `user_present`, when presence was
    /// collected).
    started_ms: u64,
    /// When the token was last used (`started_ms` until its first use).
    last_used_ms: u64,
}

impl Usage {
    fn expired(&self, now_ms: u64) -> bool {
        now_ms.saturating_sub(self.started_ms) > MAX_USAGE_TIME_PERIOD_MS
            || now_ms.saturating_sub(self.last_used_ms) > USAGE_TIME_LIMIT_MS
    }
}

impl core::fmt::Debug for PinUvAuthToken {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PinUvAuthToken")
            .field("values", &"<redacted>")
            .field("usage", &self.usage)
            .finish()
    }
}

impl PinUvAuthToken {
    /// `resetPinUvAuthToken()` for every protocol: fresh random values, and the token is no
    /// longer in use (every token handed out before is now invalid).
    pub(crate) fn reset(&mut self, rng: &mut impl CryptoRng) {
        for value in &mut self.values {
            rng.fill_bytes(value.as_mut_slice());
        }
        self.usage = None;
    }

    /// The token value for a protocol (what is encrypted to the platform).
    pub(crate) fn value(&self, protocol: PinUvAuthProtocol) -> &[u8; 32] {
        match self.values.get(protocol.index()) {
            Some(value) => value,
            None => &[0; 32],
        }
    }

    /// `beginUsingPinUvAuthToken(userIsPresent)`, then the permissions and the permissions RP
    /// ID the token is issued with.
    pub(crate) fn begin_using(
        &mut self,
        now_ms: u64,
        user_is_present: bool,
        permissions: u8,
        rp_id: Option<String>,
    ) {
        self.usage = Some(Usage {
            permissions: permissions & DEFINED_PERMISSIONS,
            rp_id,
            user_present: user_is_present,
            user_verified: true,
            started_ms: now_ms,
            last_used_ms: now_ms,
        });
    }

    /// `stopUsingPinUvAuthToken()`.
    pub(crate) fn stop_using(&mut self) {
        self.usage = None;
    }

    /// `pinUvAuthTokenUsageTimerObserver()`: forgets an expired token's state.
    pub(crate) fn observe(&mut self, now_ms: u64) {
        if self
            .usage
            .as_ref()
            .is_some_and(|usage| usage.expired(now_ms))
        {
            self.stop_using();
        }
    }

    /// The state of the token if it is in use and not expired at `now_ms`.
    fn live(&self, now_ms: u64) -> Option<&Usage> {
        self.usage.as_ref().filter(|usage| !usage.expired(now_ms))
    }

    /// Whether a token is in use (issued and not expired).
    pub(crate) fn in_use(&self, now_ms: u64) -> bool {
        self.live(now_ms).is_some()
    }

    /// `getUserPresentFlagValue()`: false when no token is in use, or once the user present
    /// time limit has passed.
    pub(crate) fn user_present(&self, now_ms: u64) -> bool {
        self.live(now_ms).is_some_and(|usage| {
            usage.user_present
                && now_ms.saturating_sub(usage.started_ms) <= USER_PRESENT_TIME_LIMIT_MS
        })
    }

    /// `getUserVerifiedFlagValue()`: false when no token is in use.
    pub(crate) fn user_verified(&self, now_ms: u64) -> bool {
        self.live(now_ms).is_some_and(|usage| usage.user_verified)
    }

    /// Whether the in-use token carries `permission`.
    pub(crate) fn has_permission(&self, now_ms: u64, permission: Permission) -> bool {
        self.live(now_ms)
            .is_some_and(|usage| usage.permissions & permission.bit() != 0)
    }

    /// The permissions RP ID of the in-use token, if it has one.
    pub(crate) fn rp_id(&self, now_ms: u64) -> Option<&str> {
        self.live(now_ms).and_then(|usage| usage.rp_id.as_deref())
    }

    /// Binds the in-use token to an RP (when it has no permissions RP ID yet).
    pub(crate) fn bind_rp_id(&mut self, rp_id: &str) {
        if let Some(usage) = &mut self.usage
            && usage.rp_id.is_none()
        {
            usage.rp_id = Some(String::from(rp_id));
        }
    }

    /// `verify(pinUvAuthToken, message, signature)`: fails when no token is in use.
    pub(crate) fn verify(
        &self,
        now_ms: u64,
        protocol: PinUvAuthProtocol,
        message: &[u8],
        signature: &[u8],
    ) -> bool {
        self.in_use(now_ms) && protocol.verify(self.value(protocol), message, signature)
    }

    /// Records a use: the rolling timer restarts.
    pub(crate) fn mark_used(&mut self, now_ms: u64) {
        if let Some(usage) = &mut self.usage {
            usage.last_used_ms = now_ms;
        }
    }

    /// After a ceremony that collected user presence: `clearUserPresentFlag()`,
    /// `clearUserVerifiedFlag()` and `clearPinUvAuthTokenPermissionsExceptLbw()`.
    pub(crate) fn consume(&mut self) {
        if let Some(usage) = &mut self.usage {
            usage.user_present = false;
            usage.user_verified = false;
            usage.permissions &= Permission::LargeBlobWrite.bit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn issued(user_present: bool) -> PinUvAuthToken {
        let mut token = PinUvAuthToken::default();
        token.reset(&mut ChaCha20Rng::seed_from_u64(1));
        token.begin_using(1_000, user_present, 0x03 | 0x10 | 0xC0, None);
        token
    }

    #[test]
    fn undefined_permissions_are_dropped() {
        let token = issued(false);
        assert_eq!(token.usage.as_ref().unwrap().permissions, 0x13);
        for permission in Permission::ALL {
            let expected = matches!(
                permission,
                Permission::MakeCredential | Permission::GetAssertion | Permission::LargeBlobWrite
            );
            assert_eq!(token.has_permission(1_000, permission), expected);
        }
    }

    #[test]
    fn rolling_timer_and_max_period() {
        let token = issued(false);
        // Unused for 30 s: still valid at the limit, gone just after.
        assert!(token.in_use(31_000));
        assert!(!token.in_use(31_001));
        // Each use restarts the timer, up to ten minutes in total.
        let mut token = issued(false);
        let mut now = 1_000;
        while now + 25_000 <= 1_000 + MAX_USAGE_TIME_PERIOD_MS {
            now += 25_000;
            assert!(token.in_use(now), "{now}");
            token.mark_used(now);
        }
        assert!(token.in_use(1_000 + MAX_USAGE_TIME_PERIOD_MS));
        assert!(!token.in_use(1_000 + MAX_USAGE_TIME_PERIOD_MS + 1));
        token.observe(1_000 + MAX_USAGE_TIME_PERIOD_MS + 1);
        assert!(token.usage.is_none());
    }

    #[test]
    fn user_present_expires_before_the_token() {
        let mut token = issued(true);
        assert!(token.user_present(31_000));
        token.mark_used(20_000);
        assert!(!token.user_present(31_001));
        assert!(token.in_use(31_001));
        assert!(token.user_verified(31_001));
    }

    #[test]
    fn consuming_keeps_only_large_blob_write() {
        let mut token = issued(true);
        token.consume();
        assert!(!token.user_present(1_000));
        assert!(!token.user_verified(1_000));
        assert!(!token.has_permission(1_000, Permission::MakeCredential));
        assert!(token.has_permission(1_000, Permission::LargeBlobWrite));
        assert!(token.in_use(1_000));
    }

    #[test]
    fn verification_needs_an_in_use_token_and_its_protocol() {
        let mut token = issued(false);
        let message = b"clientDataHash";
        let one = PinUvAuthProtocol::One.authenticate(token.value(PinUvAuthProtocol::One), message);
        let two = PinUvAuthProtocol::Two.authenticate(token.value(PinUvAuthProtocol::Two), message);
        assert!(token.verify(1_000, PinUvAuthProtocol::One, message, &one));
        assert!(token.verify(1_000, PinUvAuthProtocol::Two, message, &two));
        // Each protocol has its own value.
        assert!(!token.verify(1_000, PinUvAuthProtocol::One, message, &two[..16]));
        token.stop_using();
        assert!(!token.verify(1_000, PinUvAuthProtocol::Two, message, &two));
    }

    #[test]
    fn binding_happens_once() {
        let mut token = issued(false);
        token.bind_rp_id("a.example");
        token.bind_rp_id("b.example");
        assert_eq!(token.rp_id(1_000), Some("a.example"));
    }

    #[test]
    fn debug_never_shows_the_value() {
        let token = issued(false);
        let shown = alloc::format!("{token:?}");
        assert!(shown.contains("redacted"));
        assert!(!shown.contains(&alloc::format!("{:?}", *token.values[0])));
    }
}
