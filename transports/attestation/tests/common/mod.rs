//! Fixtures shared by the integration tests.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use fidelio_attestation::{GenerateOptions, Provisioned, generate};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

/// 2025-01-01T00:00:00Z.
pub const NOT_BEFORE: u64 = 1_735_689_600;

/// An arbitrary but recognisable AAGUID.
pub const AAGUID: [u8; 16] = [
    0xf1, 0xd0, 0xc0, 0xde, 0x00, 0x01, 0x42, 0x17, 0x80, 0x9a, 0xa5, 0x5a, 0x0f, 0xf0, 0x12, 0x34,
];

pub fn options() -> GenerateOptions {
    GenerateOptions::new(AAGUID, NOT_BEFORE)
}

pub fn provision_with_seed(options: &GenerateOptions, seed: u8) -> Provisioned {
    let mut rng = ChaCha20Rng::from_seed([seed; 32]);
    generate(options, &mut rng).expect("generate")
}

pub fn provision(seed: u8) -> Provisioned {
    provision_with_seed(&options(), seed)
}
