//! Every request settles: aborting (`AbortSignal`, → `AbortError`) and the ceremony's
//! lifetime timer (→ `NotAllowedError`), without tying the client to an executor.
//!
//! The ceremony futures check an [`AbortSignal`] before each step and race it against every
//! request to the authenticator, so a signal fired from anywhere — another thread, a timer
//! task, a test — settles the ceremony at once (an in-process authenticator waiting for
//! presence is dropped; a CTAPHID device is sent CTAPHID_CANCEL). Who fires the timer is the
//! caller's business:
//!
//! * synchronous callers use [`block_on_with_deadline`], which parks the thread until the
//!   future progresses or the deadline passes, then fires [`AbortSignal::time_out`];
//! * async callers spawn a timer on their own executor (`tokio::time::sleep(d)` then
//!   `signal.time_out()`), with `d` from [`crate::Client::lifetime`].

use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use crate::error::{ErrorName, WebAuthnError};

/// Why a signal fired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AbortReason {
    /// `AbortController.abort(reason)`: the page gave up (`AbortError`).
    Aborted(Option<String>),
    /// The lifetime timer expired (`NotAllowedError`).
    TimedOut,
    /// The user dismissed the browser's dialog (`NotAllowedError`).
    Cancelled,
}

impl AbortReason {
    /// The exception the ceremony rejects with.
    pub fn to_error(&self) -> WebAuthnError {
        match self {
            Self::Aborted(reason) => WebAuthnError::new(
                ErrorName::AbortError,
                reason
                    .clone()
                    .unwrap_or_else(|| "the operation was aborted".to_owned()),
            ),
            Self::TimedOut => WebAuthnError::not_allowed(
                "the operation either timed out or was not allowed (the ceremony's timeout \
                 expired)",
            ),
            Self::Cancelled => WebAuthnError::not_allowed("the user cancelled the ceremony"),
        }
    }
}

#[derive(Default)]
struct Inner {
    reason: Option<AbortReason>,
    wakers: Vec<Waker>,
}

/// A cloneable signal that ends a ceremony: the page's `AbortSignal`, the lifetime timer and
/// the user's cancel button in one.
#[derive(Clone, Default)]
pub struct AbortSignal {
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for AbortSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AbortSignal")
            .field("reason", &self.reason())
            .finish()
    }
}

impl AbortSignal {
    /// A signal that has not fired.
    pub fn new() -> Self {
        Self::default()
    }

    fn fire(&self, reason: AbortReason) {
        let wakers = {
            let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
            if inner.reason.is_some() {
                return;
            }
            inner.reason = Some(reason);
            std::mem::take(&mut inner.wakers)
        };
        for waker in wakers {
            waker.wake();
        }
    }

    /// `AbortController.abort()`: the ceremony rejects with `AbortError`.
    pub fn abort(&self) {
        self.fire(AbortReason::Aborted(None));
    }

    /// `AbortController.abort(reason)` with a message.
    pub fn abort_with(&self, message: impl Into<String>) {
        self.fire(AbortReason::Aborted(Some(message.into())));
    }

    /// The lifetime timer expired: the ceremony rejects with `NotAllowedError`.
    pub fn time_out(&self) {
        self.fire(AbortReason::TimedOut);
    }

    /// The user cancelled: `NotAllowedError`.
    pub fn cancel(&self) {
        self.fire(AbortReason::Cancelled);
    }

    /// Why the signal fired, if it has.
    pub fn reason(&self) -> Option<AbortReason> {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .reason
            .clone()
    }

    /// `Err` with the ceremony's exception once fired.
    pub fn check(&self) -> Result<(), WebAuthnError> {
        match self.reason() {
            Some(reason) => Err(reason.to_error()),
            None => Ok(()),
        }
    }

    /// Polls the signal: ready with the exception once fired, otherwise registers the waker.
    fn poll_fired(&self, cx: &Context<'_>) -> Poll<WebAuthnError> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        match &inner.reason {
            Some(reason) => Poll::Ready(reason.to_error()),
            None => {
                if !inner.wakers.iter().any(|w| w.will_wake(cx.waker())) {
                    inner.wakers.push(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }

    /// Runs `future` unless the signal fires first.
    pub async fn race<F: Future>(&self, future: F) -> Result<F::Output, WebAuthnError> {
        let mut future = pin!(future);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(error) = self.poll_fired(cx) {
                return Poll::Ready(Err(error));
            }
            future.as_mut().poll(cx).map(Ok)
        })
        .await
    }
}

/// The longest a blocked thread sleeps between polls even without a wake-up: futures that
/// return `Pending` without arranging a wake-up (spin-polled presence sources do) still make
/// progress.
const MAX_PARK: Duration = Duration::from_millis(10);

struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs a future on this thread, parking between polls (at most 10 ms at a time).
pub fn block_on<F: Future>(future: F) -> F::Output {
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut context = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        std::thread::park_timeout(MAX_PARK);
    }
}

/// Runs a ceremony future on this thread; when `deadline` passes, fires
/// [`AbortSignal::time_out`] on `signal` and keeps polling until the future settles (which a
/// ceremony future does as soon as it sees the signal).
pub fn block_on_with_deadline<F: Future>(
    future: F,
    signal: &AbortSignal,
    deadline: Instant,
) -> F::Output {
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut context = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        let now = Instant::now();
        if now >= deadline {
            signal.time_out();
            // Firing woke us (the future registered the waker); poll again at once.
            continue;
        }
        std::thread::park_timeout(deadline.saturating_duration_since(now).min(MAX_PARK));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fired_signal_wins_the_race() {
        let signal = AbortSignal::new();
        assert_eq!(block_on(signal.race(async { 7 })), Ok(7));
        signal.abort();
        let error = block_on(signal.race(std::future::pending::<()>())).unwrap_err();
        assert_eq!(error.name, ErrorName::AbortError);
        // The first reason sticks.
        signal.time_out();
        assert_eq!(signal.reason(), Some(AbortReason::Aborted(None)));
    }

    #[test]
    fn reasons_map_to_exceptions() {
        assert_eq!(
            AbortReason::TimedOut.to_error().name,
            ErrorName::NotAllowedError
        );
        assert_eq!(
            AbortReason::Cancelled.to_error().name,
            ErrorName::NotAllowedError
        );
        let aborted = AbortReason::Aborted(Some("bye".into())).to_error();
        assert_eq!(
            (aborted.name, aborted.message.as_str()),
            (ErrorName::AbortError, "bye")
        );
    }

    #[test]
    fn a_deadline_settles_a_future_that_never_ends() {
        let signal = AbortSignal::new();
        let started = Instant::now();
        let result = block_on_with_deadline(
            signal.race(std::future::pending::<()>()),
            &signal,
            started + Duration::from_millis(30),
        );
        assert_eq!(result.unwrap_err().name, ErrorName::NotAllowedError);
        assert!(started.elapsed() >= Duration::from_millis(30));
    }

    #[test]
    fn another_thread_can_abort() {
        let signal = AbortSignal::new();
        let remote = signal.clone();
        let handle = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            remote.abort_with("stop");
        });
        let result = block_on(signal.race(std::future::pending::<()>()));
        assert_eq!(result.unwrap_err().message, "stop");
        handle.join().unwrap();
    }
}
