//! The host platform: a bundle of services the daemon and the CLI run the core on.

use authenticator_core::platform::{
    BuiltInUv, Platform, Presence, PresenceKind, PresenceOutcome, PresenceRequest, Store,
};

use crate::SystemClock;

/// What an unattended virtual authenticator answers when asked for presence or verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresencePolicy {
    /// Consent (and verify) at once, like a user who always touches the key.
    Approve,
    /// Refuse at once (`CTAP2_ERR_OPERATION_DENIED`).
    Deny,
    /// Never answer (`CTAP2_ERR_USER_ACTION_TIMEOUT`), without actually waiting.
    TimeOut,
}

/// Presence answered by a fixed policy, with an emulated built-in UV method.
#[derive(Debug, Clone)]
pub struct PolicyPresence {
    /// The answer to every request.
    pub policy: PresencePolicy,
    /// The emulated built-in user verification method.
    pub built_in_uv: BuiltInUv,
    /// Whether an enrolled built-in method recognises the user.
    pub uv_matches: bool,
}

impl PolicyPresence {
    /// Approves everything; no built-in UV.
    pub fn approve() -> Self {
        Self {
            policy: PresencePolicy::Approve,
            built_in_uv: BuiltInUv::Unsupported,
            uv_matches: true,
        }
    }
}

impl Presence for PolicyPresence {
    async fn request(&mut self, request: PresenceRequest<'_>) -> PresenceOutcome {
        match self.policy {
            PresencePolicy::Deny => PresenceOutcome::Denied,
            PresencePolicy::TimeOut => PresenceOutcome::TimedOut,
            PresencePolicy::Approve => {
                if request.kind == PresenceKind::UserVerification && !self.uv_matches {
                    PresenceOutcome::VerificationFailed
                } else {
                    PresenceOutcome::Granted
                }
            }
        }
    }

    fn built_in_uv(&self) -> BuiltInUv {
        self.built_in_uv
    }
}

/// A platform for hosts, generic over the RNG (the OS source, or a seeded one for
/// reproducible sessions), the store (in memory or [`RedbStore`](crate::RedbStore)) and the
/// presence source.
#[derive(Debug)]
pub struct HostPlatform<R, S, P = PolicyPresence> {
    /// Random numbers.
    pub rng: R,
    /// Storage.
    pub store: S,
    /// Presence and built-in UV.
    pub presence: P,
    /// Time since this platform was made ("power-up").
    pub clock: SystemClock,
}

impl<R, S, P> HostPlatform<R, S, P> {
    /// Bundles the services; the clock starts now.
    pub fn new(rng: R, store: S, presence: P) -> Self {
        Self {
            rng,
            store,
            presence,
            clock: SystemClock::new(),
        }
    }
}

impl<R: rand_core::CryptoRng, S: Store, P: Presence> Platform for HostPlatform<R, S, P> {
    type Rng = R;
    type Store = S;
    type Presence = P;
    type Clock = SystemClock;

    fn rng(&mut self) -> &mut R {
        &mut self.rng
    }
    fn store(&mut self) -> &mut S {
        &mut self.store
    }
    fn presence(&mut self) -> &mut P {
        &mut self.presence
    }
    fn clock(&self) -> &SystemClock {
        &self.clock
    }
}
