//! A one-future executor for the core loop.
//!
//! The core's futures only wait on the user (see [`crate::presence`]); everything else they do
//! is computation. So the executor polls, and between two polls lets the board sleep until the
//! next interrupt (the tick comes every few milliseconds).

use core::future::Future;
use core::task::{Context, Poll, Waker};

/// Runs `future` to completion, calling `idle` (typically `wfi`) whenever it is pending.
pub fn block_on<F: Future>(future: F, mut idle: impl FnMut()) -> F::Output {
    let mut future = core::pin::pin!(future);
    let mut context = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        idle();
    }
}
