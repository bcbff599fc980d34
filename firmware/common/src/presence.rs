//! User presence from one button, for boards without a fingerprint sensor.
//!
//! The state machine, one poll per wake-up of the core loop (every tick, ≤ 10 ms):
//!
//! ```text
//!            request                 button up                 button down ≥ DEBOUNCE_MS
//!   idle ───────────▶ wait-release ─────────────▶ armed ──────────────────────────────▶ Granted
//!                         │                         │
//!                         └─── CANCEL ─▶ Cancelled ◀┤   timeout ─▶ TimedOut
//! ```
//!
//! A button already held when the request arrives does not count: it must be let go and
//! pressed again, so a stuck button (or a finger left on it) cannot approve a second request.
//! While the request lasts, [`Signals::waiting_for_user`] is set: the tick handler then sends
//! KEEPALIVE with UPNEEDED and blinks the LED.

use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};

use authenticator_core::Clock;
use authenticator_core::platform::{Presence, PresenceOutcome, PresenceRequest};

use crate::signals::Signals;

/// How long the button must stay down to count as a touch, in milliseconds.
pub const DEBOUNCE_MS: u64 = 30;

/// A push button.
pub trait Button {
    /// Whether the button is down right now.
    fn is_pressed(&mut self) -> bool;
}

/// [`Presence`] from a [`Button`]: a touch within the request's timeout grants it, a host
/// CANCEL cancels it.
#[derive(Debug)]
pub struct ButtonPresence<B, C> {
    button: B,
    clock: C,
    signals: &'static Signals,
}

impl<B: Button, C: Clock> ButtonPresence<B, C> {
    /// Presence from `button`, timed by `clock`, cancelled through `signals`.
    pub fn new(button: B, clock: C, signals: &'static Signals) -> Self {
        Self {
            button,
            clock,
            signals,
        }
    }

    /// The button, for checks outside a request (a wipe at boot, for instance).
    pub fn button(&mut self) -> &mut B {
        &mut self.button
    }
}

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Touch {
    /// The button was down when the request came: wait until it is let go.
    WaitRelease,
    /// Ready for a press.
    Armed,
    /// Down since this time (debouncing).
    Down(u64),
}

impl<B: Button, C: Clock> Presence for ButtonPresence<B, C> {
    async fn request(&mut self, request: PresenceRequest<'_>) -> PresenceOutcome {
        let started = self.clock.now_ms();
        let deadline = started.saturating_add(u64::from(request.timeout_ms));
        let mut touch = if self.button.is_pressed() {
            Touch::WaitRelease
        } else {
            Touch::Armed
        };
        self.signals.set_waiting_for_user(true);
        let outcome = loop {
            if self.signals.cancelled() {
                break PresenceOutcome::Cancelled;
            }
            let now = self.clock.now_ms();
            let pressed = self.button.is_pressed();
            touch = match (touch, pressed) {
                (Touch::WaitRelease, true) => Touch::WaitRelease,
                (_, false) => Touch::Armed,
                (Touch::Armed, true) => Touch::Down(now),
                (Touch::Down(since), true) => Touch::Down(since),
            };
            if let Touch::Down(since) = touch
                && now.saturating_sub(since) >= DEBOUNCE_MS
            {
                break PresenceOutcome::Granted;
            }
            if now >= deadline {
                break PresenceOutcome::TimedOut;
            }
            YieldNow(false).await;
        };
        self.signals.set_waiting_for_user(false);
        outcome
    }
}

/// Returns `Pending` once, so the executor can sleep until the next interrupt.
#[derive(Debug)]
struct YieldNow(bool);

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            context.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::cell::{Cell, RefCell};
    use std::rc::Rc;
    use std::vec::Vec;

    use authenticator_core::platform::{PresenceKind, PresencePurpose};

    use super::*;
    use crate::executor::block_on;

    /// A clock the test advances.
    #[derive(Clone, Default)]
    struct TestClock(Rc<Cell<u64>>);

    impl Clock for TestClock {
        fn now_ms(&self) -> u64 {
            self.0.get()
        }
    }

    /// A button that follows a script: (from this time on, pressed or not).
    #[derive(Clone)]
    struct ScriptedButton {
        clock: TestClock,
        script: Rc<RefCell<Vec<(u64, bool)>>>,
    }

    impl Button for ScriptedButton {
        fn is_pressed(&mut self) -> bool {
            let now = self.clock.now_ms();
            self.script
                .borrow()
                .iter()
                .rev()
                .find(|(from, _)| *from <= now)
                .is_some_and(|(_, pressed)| *pressed)
        }
    }

    fn ask(
        script: &[(u64, bool)],
        signals: &'static Signals,
        cancel_at: Option<u64>,
    ) -> (PresenceOutcome, u64) {
        let clock = TestClock::default();
        let button = ScriptedButton {
            clock: clock.clone(),
            script: Rc::new(RefCell::new(script.to_vec())),
        };
        let mut presence = ButtonPresence::new(button, clock.clone(), signals);
        let request = PresenceRequest {
            kind: PresenceKind::UserPresence,
            purpose: PresencePurpose::MakeCredential,
            rp_id: Some("example.com"),
            timeout_ms: 30_000,
        };
        let ticker = clock.clone();
        let outcome = block_on(presence.request(request), || {
            // One tick of the board: 10 ms.
            ticker.0.set(ticker.0.get() + 10);
            if cancel_at.is_some_and(|at| ticker.0.get() >= at) {
                signals.cancel();
            }
        });
        assert!(!signals.waiting_for_user(), "the LED stops blinking");
        (outcome, clock.now_ms())
    }

    #[test]
    fn a_press_after_the_request_grants_it_once_debounced() {
        static SIGNALS: Signals = Signals::new();
        let (outcome, at) = ask(&[(1_000, true)], &SIGNALS, None);
        assert_eq!(outcome, PresenceOutcome::Granted);
        assert!(
            (1_000 + DEBOUNCE_MS..1_000 + DEBOUNCE_MS + 20).contains(&at),
            "{at}"
        );
    }

    #[test]
    fn a_bounce_shorter_than_the_debounce_time_does_not_count() {
        static SIGNALS: Signals = Signals::new();
        let (outcome, at) = ask(&[(500, true), (510, false), (2_000, true)], &SIGNALS, None);
        assert_eq!(outcome, PresenceOutcome::Granted);
        assert!(at >= 2_000, "{at}");
    }

    #[test]
    fn a_button_held_from_before_must_be_released_first() {
        static SIGNALS: Signals = Signals::new();
        let (outcome, at) = ask(&[(0, true), (5_000, false), (6_000, true)], &SIGNALS, None);
        assert_eq!(outcome, PresenceOutcome::Granted);
        assert!(at >= 6_000, "{at}");
    }

    #[test]
    fn nobody_touching_times_out_after_thirty_seconds() {
        static SIGNALS: Signals = Signals::new();
        let (outcome, at) = ask(&[], &SIGNALS, None);
        assert_eq!(outcome, PresenceOutcome::TimedOut);
        assert!((30_000..30_020).contains(&at), "{at}");
    }

    #[test]
    fn a_host_cancel_ends_the_wait() {
        static SIGNALS: Signals = Signals::new();
        let (outcome, at) = ask(&[], &SIGNALS, Some(2_000));
        assert_eq!(outcome, PresenceOutcome::Cancelled);
        assert!((2_000..2_030).contains(&at), "{at}");
    }
}
