//! The deterministic platform double: seeded RNG, advanceable clock, scripted presence.
//!
//! With the same seed and the same requests, a session produces the same bytes — credential
//! IDs, keys and signatures (ECDSA uses RFC 6979) — which is how the known-answer vectors in
//! `test-vectors/` are made and replayed.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::cell::Cell;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use crate::memory_store::MemoryStore;
use crate::platform::{
    BuiltInUv, Clock, Platform, Presence, PresenceKind, PresenceOutcome, PresenceRequest, Store,
};

/// A clock that only moves when told to.
#[derive(Debug, Default)]
pub struct TestClock {
    now_ms: Cell<u64>,
}

impl TestClock {
    /// Moves time forward.
    pub fn advance(&self, ms: u64) {
        self.now_ms.set(self.now_ms.get().saturating_add(ms));
    }
}

impl Clock for TestClock {
    fn now_ms(&self) -> u64 {
        self.now_ms.get()
    }
}

/// A record of one presence request the core made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceCall {
    /// Presence or verification.
    pub kind: PresenceKind,
    /// The command that asked.
    pub purpose: crate::platform::PresencePurpose,
    /// The relying party, if any.
    pub rp_id: Option<alloc::string::String>,
}

/// How many presence requests [`ScriptedPresence`] remembers.
pub const MAX_RECORDED_CALLS: usize = 4096;

/// Presence answered from a script: queued outcomes first, then a default.
#[derive(Debug)]
pub struct ScriptedPresence {
    script: VecDeque<PresenceOutcome>,
    /// The answer once the script is exhausted.
    pub default: PresenceOutcome,
    /// The state of the emulated built-in user verification.
    pub built_in_uv: BuiltInUv,
    /// The requests made, oldest first (the most recent [`MAX_RECORDED_CALLS`]).
    pub calls: Vec<PresenceCall>,
}

impl Default for ScriptedPresence {
    fn default() -> Self {
        Self {
            script: VecDeque::new(),
            default: PresenceOutcome::Granted,
            built_in_uv: BuiltInUv::Unsupported,
            calls: Vec::new(),
        }
    }
}

impl ScriptedPresence {
    /// Queues the answer to the next request.
    pub fn push(&mut self, outcome: PresenceOutcome) {
        self.script.push_back(outcome);
    }
}

impl Presence for ScriptedPresence {
    async fn request(&mut self, request: PresenceRequest<'_>) -> PresenceOutcome {
        // Keep the record bounded for long-running emulators: drop the older half.
        if self.calls.len() >= MAX_RECORDED_CALLS {
            self.calls.drain(..MAX_RECORDED_CALLS / 2);
        }
        self.calls.push(PresenceCall {
            kind: request.kind,
            purpose: request.purpose,
            rp_id: request.rp_id.map(alloc::string::ToString::to_string),
        });
        self.script.pop_front().unwrap_or(self.default)
    }

    fn built_in_uv(&self) -> BuiltInUv {
        self.built_in_uv
    }
}

/// The platform double: every service deterministic and inspectable. The store is a
/// [`MemoryStore`] unless another is given ([`TestPlatform::with_store`]: a flash store on a
/// simulated chip, for instance).
#[derive(Debug)]
pub struct TestPlatform<S: Store = MemoryStore> {
    /// Seeded ChaCha20.
    pub rng: ChaCha20Rng,
    /// The store (in memory by default).
    pub store: S,
    /// Scripted presence.
    pub presence: ScriptedPresence,
    /// Advanceable clock, starting at 0 ms (power-up).
    pub clock: TestClock,
}

impl TestPlatform {
    /// A fresh platform whose random stream is fixed by `seed`, with an empty memory store.
    pub fn new(seed: u64) -> Self {
        Self::with_store(seed, MemoryStore::new())
    }
}

impl<S: Store> TestPlatform<S> {
    /// A fresh platform whose random stream is fixed by `seed`, on `store`.
    pub fn with_store(seed: u64, store: S) -> Self {
        Self {
            rng: ChaCha20Rng::seed_from_u64(seed),
            store,
            presence: ScriptedPresence::default(),
            clock: TestClock::default(),
        }
    }
}

impl<S: Store> Platform for TestPlatform<S> {
    type Rng = ChaCha20Rng;
    type Store = S;
    type Presence = ScriptedPresence;
    type Clock = TestClock;

    fn rng(&mut self) -> &mut Self::Rng {
        &mut self.rng
    }
    fn store(&mut self) -> &mut Self::Store {
        &mut self.store
    }
    fn presence(&mut self) -> &mut Self::Presence {
        &mut self.presence
    }
    fn clock(&self) -> &Self::Clock {
        &self.clock
    }
}
