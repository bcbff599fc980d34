//! The board-independent half of Fidelio's firmware.
//!
//! Each board crate (`firmware/rp2040`, `firmware/nrf52840`) brings its clocks, pins, USB
//! peripheral, flash and entropy source; this crate connects them to the authenticator core
//! the same way on every board:
//!
//! * [`link`]: the usb-device, the CTAPHID class and state machine, served from interrupts,
//!   and [`link::serve`], the core loop in thread mode;
//! * [`presence`]: user presence from a button (debounced, cancellable, with a timeout);
//! * [`indicator`]: what the LED shows (busy, touch needed, WINK);
//! * [`platform`]: the core's [`Platform`](authenticator_core::Platform) (ChaCha20 CSPRNG
//!   seeded from the board's entropy, flash store, button, clock);
//! * [`paged_flash`]: a NOR flash with word writes over a page-programming chip (the RP2040's);
//! * [`store`]: opening (or making) the credential store in the board's flash region;
//! * [`heap`]: the allocator the core and CTAPHID allocate from;
//! * [`executor`]: a one-future `block_on` that sleeps between polls;
//! * [`attestation`]: self-attestation, or batch material embedded at build time.
//!
//! See `docs/firmware-rp2040.md` for the design and why it is interrupt-driven.
#![no_std]

extern crate alloc;

pub mod attestation;
pub mod executor;
pub mod heap;
pub mod indicator;
pub mod link;
pub mod paged_flash;
pub mod platform;
pub mod presence;
pub mod signals;
pub mod store;

pub use indicator::Indicator;
pub use link::{SharedLink, UsbLink, serve};
pub use platform::{FirmwarePlatform, seed_rng};
pub use presence::{Button, ButtonPresence};
pub use signals::Signals;
