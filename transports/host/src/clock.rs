//! Monotonic time since the clock was created.

use std::time::Instant;

use authenticator_core::platform::Clock;

/// A [`Clock`] counting milliseconds from its creation, which stands for "power-up".
///
/// It reads [`Instant`], the operating system's monotonic clock, so it never goes backwards
/// (wall-clock changes do not affect it).
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    start: Instant,
}

impl SystemClock {
    /// A clock reading 0 now.
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        // 2^64 ms is some 580 million years: saturating is only a formality.
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_near_zero_and_never_decreases() {
        let clock = SystemClock::new();
        let first = clock.now_ms();
        assert!(first < 1_000, "a new clock reads {first} ms");
        std::thread::sleep(std::time::Duration::from_millis(20));
        let second = clock.now_ms();
        assert!(second >= first.saturating_add(20), "{first} then {second}");
    }
}
