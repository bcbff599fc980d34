//! Test-fault hooks: deliberate misbehaviour for hosts that test relying parties and clients
//! against a faulty authenticator (the daemon's fault injection, `docs/control-api.md`).
//!
//! Everything here is off by default ([`Hooks::default`]) and a real device never turns it
//! on. When on, the hooks act where a buggy device would go wrong — *before* signing, so what
//! is signed is what is sent:
//!
//! | hook | makeCredential | getAssertion, getNextAssertion | U2F_REGISTER | U2F_AUTHENTICATE |
//! |---|---|---|---|---|
//! | [`flags`](Hooks::flags) | UP/UV in authData | UP/UV in authData | — | the user presence byte (UP) |
//! | [`corrupt_signature`](Hooks::corrupt_signature) | the packed attestation signature | the assertion signature | the registration signature | the signature |
//! | [`counter_rollback`](Hooks::counter_rollback) | signCount in authData | signCount in authData | — | the counter |
//!
//! A corrupted signature is a genuine signature by the right key over a message that differs
//! in one bit from the real one: well-formed (DER for ES256, 64 bytes for EdDSA), it does not
//! verify. A counter rollback lowers only what is reported (saturating at zero); the stored
//! counter advances as usual.

/// Which authData flags to force; `None` leaves a flag as the authenticator set it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlagsOverride {
    /// User present (UP, bit 0).
    pub up: Option<bool>,
    /// User verified (UV, bit 2).
    pub uv: Option<bool>,
}

/// The test-fault hooks of an [`Authenticator`](crate::Authenticator), all off by default
/// ([`Authenticator::hooks_mut`](crate::Authenticator::hooks_mut)). See the [module
/// documentation](self).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hooks {
    /// Forces UP/UV in the authData (and the U2F user presence byte) that is signed.
    pub flags: Option<FlagsOverride>,
    /// Signs a message one bit off, so the signature is well-formed but does not verify.
    pub corrupt_signature: bool,
    /// Reports the signature counter this much lower than it is (saturating at zero).
    pub counter_rollback: u32,
}

impl Hooks {
    /// Whether any hook is on.
    pub fn any(&self) -> bool {
        *self != Hooks::default()
    }

    /// authData flag bits after the flags override.
    pub(crate) fn flags(&self, bits: u8) -> u8 {
        let Some(forced) = self.flags else {
            return bits;
        };
        let set = |bits: u8, bit: u8, value: Option<bool>| match value {
            Some(true) => bits | bit,
            Some(false) => bits & !bit,
            None => bits,
        };
        let bits = set(bits, crate::authenticator::flags::UP, forced.up);
        set(bits, crate::authenticator::flags::UV, forced.uv)
    }

    /// The counter value to report.
    pub(crate) fn count(&self, count: u32) -> u32 {
        count.saturating_sub(self.counter_rollback)
    }

    /// Signs `message` with `key`, one bit off when the signature is to be corrupted (the
    /// message is left as it was).
    pub(crate) fn sign(
        &self,
        key: &crate::credential::PrivateKey,
        message: &mut [u8],
    ) -> Result<alloc::vec::Vec<u8>, crate::StatusCode> {
        if !self.corrupt_signature {
            return key.sign(message);
        }
        let flip = |message: &mut [u8]| {
            if let Some(last) = message.last_mut() {
                *last ^= 0x01;
            }
        };
        flip(message);
        let signature = key.sign(message);
        flip(message);
        signature
    }
}
