//! The operating system's random number generator.

use core::convert::Infallible;

use rand_core::{TryCryptoRng, TryRng};

/// A [`rand_core::CryptoRng`] reading the operating system's random number generator through
/// [`getrandom`] (`getrandom(2)` on Linux, `getentropy` on macOS, `ProcessPrng` on Windows).
///
/// It has no state: every call asks the operating system. Its error type is
/// [`Infallible`], so the blanket impls make it a
/// [`rand_core::Rng`] and a [`rand_core::CryptoRng`].
///
/// # Aborts
///
/// If the operating system cannot supply random bytes the process aborts, after printing why
/// to standard error: an authenticator without randomness cannot make keys or nonces safely,
/// and there is nothing sensible to fall back to.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsRng;

impl TryRng for OsRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok(getrandom::u32().unwrap_or_else(|err| os_rng_failed(err)))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(getrandom::u64().unwrap_or_else(|err| os_rng_failed(err)))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        getrandom::fill(dst).unwrap_or_else(|err| os_rng_failed(err));
        Ok(())
    }
}

impl TryCryptoRng for OsRng {}

/// The one way out when the operating system has no random bytes to give.
#[cold]
fn os_rng_failed(err: getrandom::Error) -> ! {
    tracing::error!(error = %err, "the operating system's random number generator failed");
    eprintln!(
        "fidelio: the operating system's random number generator failed ({err}); aborting, \
         since keys and nonces cannot be made safely without it"
    );
    std::process::abort()
}

#[cfg(test)]
mod tests {
    use rand_core::{CryptoRng, Rng};

    use super::*;

    fn assert_crypto_rng<R: CryptoRng>(_: &R) {}

    #[test]
    fn is_a_crypto_rng_and_gives_varied_bytes() {
        let mut rng = OsRng;
        assert_crypto_rng(&rng);
        let mut a = [0u8; 32];
        let mut b = [0u8; 32];
        rng.fill_bytes(&mut a);
        rng.fill_bytes(&mut b);
        assert_ne!(a, b);
        assert_ne!(a, [0u8; 32]);
        // Two 64-bit draws colliding would be a 2^-64 event.
        assert_ne!(rng.next_u64(), rng.next_u64());
        let _ = rng.next_u32();
    }
}
