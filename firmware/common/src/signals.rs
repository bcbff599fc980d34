//! Flags shared between the interrupt handlers (USB, tick) and the core in thread mode.
//!
//! Only atomic loads and stores are used, never read-modify-write: `thumbv6m-none-eabi` has no
//! compare-and-swap, and every flag has exactly one writer per direction.

use core::sync::atomic::{AtomicBool, Ordering};

/// What the interrupt handlers and the core tell each other. One `static` per board.
#[derive(Debug)]
pub struct Signals {
    /// The host sent CTAPHID CANCEL for the request in progress (set by the USB interrupt,
    /// cleared by the core loop when it starts a request).
    cancel: AtomicBool,
    /// The core waits for a touch: KEEPALIVE says UPNEEDED and the LED blinks.
    waiting_for_user: AtomicBool,
    /// The core is working on a request: the LED is lit.
    busy: AtomicBool,
    /// The host sent CTAPHID WINK: the tick handler plays the wink pattern.
    wink: AtomicBool,
}

impl Signals {
    /// Everything off.
    pub const fn new() -> Self {
        Self {
            cancel: AtomicBool::new(false),
            waiting_for_user: AtomicBool::new(false),
            busy: AtomicBool::new(false),
            wink: AtomicBool::new(false),
        }
    }

    /// The host cancelled the request in progress.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Release);
    }

    /// Whether the host cancelled the request in progress.
    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Acquire)
    }

    /// A request starts: forget an earlier cancel, mark the core busy.
    pub fn begin_request(&self) {
        self.cancel.store(false, Ordering::Release);
        self.waiting_for_user.store(false, Ordering::Release);
        self.busy.store(true, Ordering::Release);
    }

    /// The request is answered.
    pub fn end_request(&self) {
        self.waiting_for_user.store(false, Ordering::Release);
        self.busy.store(false, Ordering::Release);
    }

    /// Whether the core is working on a request.
    pub fn busy(&self) -> bool {
        self.busy.load(Ordering::Acquire)
    }

    /// The core starts or stops waiting for a touch.
    pub fn set_waiting_for_user(&self, waiting: bool) {
        self.waiting_for_user.store(waiting, Ordering::Release);
    }

    /// Whether the core waits for a touch.
    pub fn waiting_for_user(&self) -> bool {
        self.waiting_for_user.load(Ordering::Acquire)
    }

    /// The host asked the device to identify itself.
    pub fn wink(&self) {
        self.wink.store(true, Ordering::Release);
    }

    /// Takes a pending WINK, if any. Only the tick handler calls this, so load-then-store
    /// loses nothing: the USB interrupt only ever sets the flag.
    pub fn take_wink(&self) -> bool {
        let wink = self.wink.load(Ordering::Acquire);
        if wink {
            self.wink.store(false, Ordering::Release);
        }
        wink
    }
}

impl Default for Signals {
    fn default() -> Self {
        Self::new()
    }
}
