//! The global allocator: a linked-list first-fit heap in a static buffer.
//!
//! The core builds CBOR values and responses on the heap, and CTAPHID reassembles messages
//! there (up to 7609 bytes each); both run from thread mode and the USB interrupt, so the
//! allocator locks with a critical section (embedded-alloc does).

use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicBool, Ordering};

use embedded_alloc::LlffHeap;

#[cfg_attr(target_os = "none", global_allocator)]
static HEAP: LlffHeap = LlffHeap::empty();

static INITIALISED: AtomicBool = AtomicBool::new(false);

/// Hands `memory` to the allocator. Call once, first thing in `main`; later calls do
/// nothing. `memory` comes from `cortex_m::singleton!`, so it is `'static` and unaliased.
pub fn init(memory: &'static mut [MaybeUninit<u8>]) {
    critical_section::with(|_| {
        if INITIALISED.load(Ordering::Relaxed) {
            return;
        }
        INITIALISED.store(true, Ordering::Relaxed);
        #[expect(unsafe_code, reason = "the allocator must be given its memory")]
        // SAFETY: `memory` is a `'static` exclusive borrow, so nothing else can reach it for
        // the rest of the program, and the flag makes this the only call that hands memory
        // to HEAP. Its length is the buffer's.
        unsafe {
            HEAP.init(memory.as_mut_ptr() as usize, memory.len());
        }
    });
}

/// Bytes in use and bytes free, for diagnostics.
pub fn usage() -> (usize, usize) {
    (HEAP.used(), HEAP.free())
}
