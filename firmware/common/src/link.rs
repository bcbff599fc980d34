//! The USB side of the firmware: the usb-device, the CTAPHID class and the CTAPHID state
//! machine, served from interrupts; and the core loop that takes requests from it.
//!
//! ```text
//!  USB interrupt ──▶ UsbLink::on_usb_interrupt: device.poll, class.pump (reports ⇄ CtapHid),
//!                    CANCEL → Signals::cancel, WINK → Signals::wink
//!  tick (10 ms)  ──▶ UsbLink::on_tick: KEEPALIVE status from Signals, class.pump (poll, send)
//!  thread mode   ──▶ serve(): take_request → core (signs for ~0.3 s, or waits for a touch)
//!                    → respond; the interrupts keep the bus served meanwhile
//! ```
//!
//! The link sits in a [`SharedLink`], a `critical_section::Mutex`: interrupt handlers and the
//! core loop each hold it only for the few microseconds they move data, never while the core
//! computes.

use core::cell::RefCell;

use authenticator_core::{Authenticator, Clock, Platform};
use critical_section::Mutex;
use fidelio_ctaphid::{CtapHid, Event, KeepaliveStatus, Request, RequestKind};
use fidelio_usb::CtapHidClass;
use usb_device::bus::UsbBus;
use usb_device::device::UsbDevice;

use crate::executor::block_on;
use crate::signals::Signals;

/// Everything on the USB side of the device.
pub struct UsbLink<'a, B: UsbBus> {
    device: UsbDevice<'a, B>,
    class: CtapHidClass<'a, B>,
    hid: CtapHid,
}

impl<B: UsbBus> core::fmt::Debug for UsbLink<'_, B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("UsbLink")
            .field("class", &self.class)
            .field("hid", &self.hid)
            .finish_non_exhaustive()
    }
}

impl<'a, B: UsbBus> UsbLink<'a, B> {
    /// Bundles a built device, its class and a CTAPHID state machine.
    pub fn new(device: UsbDevice<'a, B>, class: CtapHidClass<'a, B>, hid: CtapHid) -> Self {
        Self { device, class, hid }
    }

    /// The USB interrupt: lets usb-device handle the bus, then moves reports.
    pub fn on_usb_interrupt(&mut self, now_ms: u64, signals: &Signals) {
        self.device.poll(&mut [&mut self.class]);
        self.pump(now_ms, signals);
    }

    /// The periodic tick: keeps KEEPALIVE up to date and lets CTAPHID time out messages.
    pub fn on_tick(&mut self, now_ms: u64, signals: &Signals) {
        self.hid
            .set_keepalive_status(if signals.waiting_for_user() {
                KeepaliveStatus::UpNeeded
            } else {
                KeepaliveStatus::Processing
            });
        self.pump(now_ms, signals);
    }

    /// The next complete request, if the core is free for it.
    pub fn take_request(&mut self) -> Option<Request> {
        self.hid.take_request()
    }

    /// Answers the request taken and starts sending the answer.
    pub fn respond(&mut self, response: &[u8], now_ms: u64, signals: &Signals) {
        self.hid.respond(response, now_ms);
        self.pump(now_ms, signals);
    }

    fn pump(&mut self, now_ms: u64, signals: &Signals) {
        self.class.pump(&mut self.hid, now_ms);
        // The host cancelled (CANCEL, or INIT on the request's channel), or the request is
        // gone altogether (a USB bus reset resets CTAPHID): stop waiting for the user.
        if self.hid.cancel_requested() || (signals.busy() && self.hid.busy_channel().is_none()) {
            signals.cancel();
        }
        while let Some(event) = self.hid.take_event() {
            if let Event::Wink { .. } = event {
                signals.wink();
            }
        }
    }
}

/// A [`UsbLink`] shared between interrupt handlers and the core loop: one `static` per board.
pub struct SharedLink<B: UsbBus + 'static> {
    link: Mutex<RefCell<Option<UsbLink<'static, B>>>>,
}

impl<B: UsbBus + 'static> core::fmt::Debug for SharedLink<B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("SharedLink")
    }
}

impl<B: UsbBus + 'static> SharedLink<B> {
    /// Empty until [`SharedLink::install`].
    pub const fn new() -> Self {
        Self {
            link: Mutex::new(RefCell::new(None)),
        }
    }

    /// Puts the link in place (before the USB interrupt is unmasked).
    pub fn install(&self, link: UsbLink<'static, B>) {
        critical_section::with(|cs| self.link.borrow_ref_mut(cs).replace(link));
    }

    /// Runs `f` on the link inside a critical section; `None` before [`SharedLink::install`].
    pub fn with<R>(&self, f: impl FnOnce(&mut UsbLink<'static, B>) -> R) -> Option<R> {
        critical_section::with(|cs| self.link.borrow_ref_mut(cs).as_mut().map(f))
    }
}

impl<B: UsbBus + 'static> Default for SharedLink<B> {
    fn default() -> Self {
        Self::new()
    }
}

/// The core loop: forever takes the next request from `link`, runs the core on it (calling
/// `idle` while it waits for the user) and answers. `idle` must return at the latest at the
/// next tick (a `wfi` does: the tick is an interrupt). Between requests the loop sleeps in
/// `wait`, which should return after any interrupt.
pub fn serve<P: Platform, B: UsbBus + 'static>(
    authenticator: &mut Authenticator<P>,
    link: &SharedLink<B>,
    signals: &Signals,
    clock: &impl Clock,
    mut idle: impl FnMut(),
) -> ! {
    loop {
        let request = link.with(|link| {
            let request = link.take_request();
            if request.is_some() {
                signals.begin_request();
            }
            request
        });
        let Some(Some(request)) = request else {
            idle();
            continue;
        };
        let response = match request.kind {
            RequestKind::Cbor => block_on(authenticator.process(&request.payload), &mut idle),
            RequestKind::Msg => block_on(authenticator.process_u2f(&request.payload), &mut idle),
        };
        drop(request);
        let now_ms = clock.now_ms();
        link.with(|link| link.respond(&response, now_ms, signals));
        signals.end_request();
    }
}
