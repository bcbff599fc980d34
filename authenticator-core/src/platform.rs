//! The platform seam: everything the core needs from the world, one small trait per concern.
//!
//! The core never touches a socket, a USB bus, a file or a clock register. A board, a host
//! daemon or a test supplies these four things through [`Platform`]:
//!
//! | trait | what it provides | invariants the core relies on |
//! |---|---|---|
//! | `Rng` ([`rand_core::CryptoRng`]) | every random byte (keys, nonces, master keys) | cryptographically secure; for tests a seeded generator makes sessions reproducible |
//! | [`Store`] | a key-value map with atomic batches | a [`Store::commit`] is all-or-nothing and durable when it returns `Ok` |
//! | [`Presence`] | user presence and the built-in user verification method | asynchronous: the transport keeps the host informed (KEEPALIVE) while the future is pending |
//! | [`Clock`] | monotonic milliseconds since power-up | never goes backwards |

use alloc::vec::Vec;

/// The bundle of platform services an [`Authenticator`](crate::Authenticator) runs on.
///
/// Accessors return mutable references so one implementation can own all four services; the
/// core borrows one at a time.
pub trait Platform {
    /// The random number generator.
    type Rng: rand_core::CryptoRng;
    /// Persistent storage.
    type Store: Store;
    /// User presence and built-in user verification.
    type Presence: Presence;
    /// Monotonic time.
    type Clock: Clock;

    /// The random number generator.
    fn rng(&mut self) -> &mut Self::Rng;
    /// Persistent storage.
    fn store(&mut self) -> &mut Self::Store;
    /// User presence and built-in user verification.
    fn presence(&mut self) -> &mut Self::Presence;
    /// Monotonic time.
    fn clock(&self) -> &Self::Clock;
}

/// Why a store operation failed. Detail stays with the implementation's own logs: the core
/// only needs to know whether the problem is lack of space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    /// There is no room for the batch; nothing was written.
    Full,
    /// The medium failed or holds something unreadable; nothing was written.
    Failed,
}

/// One write in an atomic batch handed to [`Store::commit`].
#[derive(Debug, Clone, Copy)]
pub enum Write<'a> {
    /// Insert or replace `key` with `value`.
    Put(&'a [u8], &'a [u8]),
    /// Remove `key` if it exists.
    Delete(&'a [u8]),
    /// Remove every key. Later writes in the same batch apply on the emptied store.
    Clear,
}

/// Atomic key-value storage.
///
/// Keys are short byte strings chosen by the core (see the `keys` module for the partition);
/// values are opaque bytes. Implementations must keep keys ordered so that [`Store::scan_prefix`]
/// visits only the keys with the given prefix without touching the rest: lookups must cost the
/// same with ten entries as with a hundred thousand.
pub trait Store {
    /// Reads one value.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Calls `visit(key, value)` for each key starting with `prefix`, in ascending key order,
    /// until `visit` returns `false`.
    fn scan_prefix(
        &self,
        prefix: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError>;

    /// Applies all writes or none. When this returns `Ok` the batch is durable: a power loss
    /// afterwards must not lose it, and a power loss during the call leaves the store as it was
    /// before or as it is after, never in between.
    fn commit(&mut self, batch: &[Write<'_>]) -> Result<(), StoreError>;
}

/// What the core is asking the user for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenceKind {
    /// A test of user presence: a touch, a button, a click.
    UserPresence,
    /// The built-in user verification method (an emulated fingerprint, for instance). Success
    /// also proves presence.
    UserVerification,
}

/// The command on whose behalf presence is requested, so that a UI or a scripted test can tell
/// them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresencePurpose {
    /// authenticatorMakeCredential (also when an excluded credential was found).
    MakeCredential,
    /// authenticatorGetAssertion.
    GetAssertion,
    /// authenticatorReset.
    Reset,
    /// authenticatorSelection.
    Selection,
    /// authenticatorClientPIN getPinUvAuthTokenUsingUvWithPermissions: the built-in method
    /// verifies the user so that a pinUvAuthToken can be issued.
    GetPinUvAuthToken,
    /// U2F_REGISTER (CTAP1 over CTAPHID_MSG). The RP ID is unknown there: only its hash, the
    /// application parameter, is sent.
    U2fRegister,
    /// U2F_AUTHENTICATE with "enforce-user-presence-and-sign" (CTAP1 over CTAPHID_MSG).
    U2fAuthenticate,
}

/// A request for user presence or verification.
#[derive(Debug, Clone, Copy)]
pub struct PresenceRequest<'a> {
    /// Presence or verification.
    pub kind: PresenceKind,
    /// The command asking.
    pub purpose: PresencePurpose,
    /// The relying party concerned, when there is one.
    pub rp_id: Option<&'a str>,
    /// How long the user has, in milliseconds; the implementation reports
    /// [`PresenceOutcome::TimedOut`] when it passes.
    pub timeout_ms: u32,
}

/// How a presence or verification request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenceOutcome {
    /// The user consented (and, for verification, was verified).
    Granted,
    /// The user refused.
    Denied,
    /// Built-in verification was attempted and did not match.
    VerificationFailed,
    /// Nobody answered within the timeout.
    TimedOut,
    /// The host cancelled the pending command (CTAPHID CANCEL).
    Cancelled,
}

/// The state of the built-in user verification method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuiltInUv {
    /// The authenticator has no built-in method (getInfo omits `uv`).
    Unsupported,
    /// A method exists but nothing is enrolled (getInfo `uv: false`).
    NotConfigured,
    /// A method exists and is enrolled (getInfo `uv: true`).
    Configured,
}

/// User presence and built-in user verification.
///
/// The future may stay pending for as long as the user takes; the transport polls it and keeps
/// the host informed meanwhile. Dropping the future abandons the request.
#[expect(
    async_fn_in_trait,
    reason = "the core is single-threaded and executor-agnostic; implementations choose Send"
)]
pub trait Presence {
    /// Asks the user; resolves with the outcome.
    async fn request(&mut self, request: PresenceRequest<'_>) -> PresenceOutcome;

    /// The state of the built-in user verification method.
    fn built_in_uv(&self) -> BuiltInUv {
        BuiltInUv::Unsupported
    }
}

/// Monotonic time.
pub trait Clock {
    /// Milliseconds since power-up; never decreases.
    fn now_ms(&self) -> u64;
}
