//! What the LED shows, as a pure function of time and state (the tick handler drives the pin).
//!
//! | state | LED |
//! |---|---|
//! | idle | off |
//! | working on a request | on |
//! | waiting for a touch | blinks, 2 Hz |
//! | WINK (2 s, over anything else) | three quick flashes, then a long one |

use authenticator_core::Clock;

use crate::signals::Signals;

/// How long the WINK pattern lasts, in milliseconds.
pub const WINK_MS: u64 = 2_000;

/// The LED state machine.
#[derive(Debug, Default)]
pub struct Indicator {
    wink_started: Option<u64>,
}

impl Indicator {
    /// Nothing showing.
    pub const fn new() -> Self {
        Self { wink_started: None }
    }

    /// Whether the LED is lit at `now_ms`; takes a pending WINK from `signals`.
    pub fn level(&mut self, now_ms: u64, signals: &Signals) -> bool {
        if signals.take_wink() {
            self.wink_started = Some(now_ms);
        }
        if let Some(started) = self.wink_started {
            let elapsed = now_ms.saturating_sub(started);
            if elapsed < WINK_MS {
                return wink_level(elapsed);
            }
            self.wink_started = None;
        }
        if signals.waiting_for_user() {
            (now_ms / 250).is_multiple_of(2)
        } else {
            signals.busy()
        }
    }
}

/// The wink pattern: three 100 ms flashes, a pause, a 600 ms flash, dark until the end.
fn wink_level(elapsed_ms: u64) -> bool {
    match elapsed_ms {
        0..600 => (elapsed_ms / 100).is_multiple_of(2),
        800..1400 => true,
        _ => false,
    }
}

/// A fault the device cannot serve through (its store is unreadable): the LED repeats two
/// short flashes and a long one, forever. `set_led` drives the LED; nothing else runs.
pub fn halt_with_fault(clock: &impl Clock, mut set_led: impl FnMut(bool)) -> ! {
    loop {
        set_led(fault_level(clock.now_ms() % FAULT_PERIOD_MS));
    }
}

/// The fault pattern's period, in milliseconds.
const FAULT_PERIOD_MS: u64 = 2_000;

fn fault_level(phase_ms: u64) -> bool {
    matches!(phase_ms, 0..150 | 300..450 | 600..1400)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wink_wins_then_falls_back() {
        static SIGNALS: Signals = Signals::new();
        let mut indicator = Indicator::new();
        SIGNALS.begin_request();
        SIGNALS.wink();
        assert!(indicator.level(1_000, &SIGNALS));
        assert!(!indicator.level(1_150, &SIGNALS));
        assert!(indicator.level(2_000, &SIGNALS));
        assert!(!indicator.level(2_500, &SIGNALS));
        assert!(
            indicator.level(3_100, &SIGNALS),
            "busy again after the wink"
        );
        SIGNALS.set_waiting_for_user(true);
        assert_ne!(
            indicator.level(3_100, &SIGNALS),
            indicator.level(3_350, &SIGNALS)
        );
        SIGNALS.end_request();
        assert!(!indicator.level(3_400, &SIGNALS));
    }
}
