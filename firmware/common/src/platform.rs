//! The [`Platform`] every board hands the core: a ChaCha20 CSPRNG seeded from the board's
//! entropy source, the board's flash store, button presence and the board's clock.

use authenticator_core::{Clock, Platform, Store};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sha2::{Digest, Sha256};
use zeroize::Zeroize;

use crate::presence::{Button, ButtonPresence};

/// Domain separation for the seed derivation, so the seed never equals a hash made for
/// another purpose from the same bytes.
const SEED_LABEL: &[u8] = b"Fidelio firmware CSPRNG seed v1";

/// Conditions raw entropy into a CSPRNG: the seed is SHA-256(label ‖ each input, length-
/// prefixed). Pass the hardware source's raw bits (with more raw bits than the 256 the seed
/// holds when the source is biased, as ring-oscillator bits are) and anything that differs
/// from boot to boot or device to device (a timer value, a chip ID).
pub fn seed_rng(inputs: &[&[u8]]) -> ChaCha20Rng {
    let mut hash = Sha256::new();
    hash.update(SEED_LABEL);
    for input in inputs {
        let length = u32::try_from(input.len()).unwrap_or(u32::MAX);
        hash.update(length.to_be_bytes());
        hash.update(input);
    }
    let mut seed: [u8; 32] = hash.finalize().into();
    let rng = ChaCha20Rng::from_seed(seed);
    seed.zeroize();
    rng
}

/// The firmware's platform: everything the core needs, owned by the core loop.
#[derive(Debug)]
pub struct FirmwarePlatform<S, B, C> {
    rng: ChaCha20Rng,
    store: S,
    presence: ButtonPresence<B, C>,
    clock: C,
}

impl<S: Store, B: Button, C: Clock + Clone> FirmwarePlatform<S, B, C> {
    /// Bundles the services.
    pub fn new(rng: ChaCha20Rng, store: S, presence: ButtonPresence<B, C>, clock: C) -> Self {
        Self {
            rng,
            store,
            presence,
            clock,
        }
    }
}

impl<S: Store, B: Button, C: Clock + Clone> Platform for FirmwarePlatform<S, B, C> {
    type Rng = ChaCha20Rng;
    type Store = S;
    type Presence = ButtonPresence<B, C>;
    type Clock = C;

    fn rng(&mut self) -> &mut ChaCha20Rng {
        &mut self.rng
    }

    fn store(&mut self) -> &mut S {
        &mut self.store
    }

    fn presence(&mut self) -> &mut ButtonPresence<B, C> {
        &mut self.presence
    }

    fn clock(&self) -> &C {
        &self.clock
    }
}
