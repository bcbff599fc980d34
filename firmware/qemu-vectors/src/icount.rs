//! Counting executed instructions under QEMU's `-icount`.
//!
//! QEMU has no cycle counter for these boards (the DWT is not emulated), but with
//! `-icount shift=S` it advances the guest's virtual clock by exactly 2^S ns per executed guest
//! instruction, and every timer of the board reads that clock. SysTick, clocked from the
//! processor clock, ticks every 40 ns on QEMU's mps2 boards (their system clock is 25 MHz), so
//! `ticks × 40 / 2^S` is the number of instructions executed between two readings. With
//! `S = ICOUNT_SHIFT = 6` (64 ns per instruction) a tick is 0.625 instructions: the figure is
//! exact to within one instruction, and it is the same on every run of the same binary.
//!
//! The 24-bit SysTick wraps every 2^24 ticks (≈10.5 M instructions); its exception handler counts
//! the wraps. Its few instructions per wrap (≈30) are part of what is measured, like any
//! interrupt on a real board. Every measurement restarts SysTick from the same state, so the
//! wraps fall at the same points of the same work whatever ran before it: a figure only changes
//! when the measured code or its input does. [`Counter::calibrate`] checks the whole chain
//! (clock rate, shift, conversion) against a loop of known length and makes the run fail when
//! QEMU was started differently.

use core::cell::Cell;

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::{SCB, SYST};
use cortex_m_rt::exception;
use critical_section::Mutex;

/// The `-icount shift=` QEMU must be started with (`.ci/firmware-qemu` passes it).
pub const ICOUNT_SHIFT: u32 = 6;
/// SysTick period on QEMU's mps2 boards: a 25 MHz processor clock.
const NS_PER_TICK: u64 = 40;
/// SysTick's largest reload value: it counts down from here to 0, then wraps.
const RELOAD: u32 = 0x00FF_FFFF;
/// Iterations of the calibration loop; each is two instructions (`subs`, `bne`).
const CALIBRATION_ITERATIONS: u32 = 1_000_000;

/// SysTick wraps since [`Counter::start`].
static WRAPS: Mutex<Cell<u32>> = Mutex::new(Cell::new(0));

#[exception]
fn SysTick() {
    critical_section::with(|cs| {
        let wraps = WRAPS.borrow(cs);
        wraps.set(wraps.get().wrapping_add(1));
    });
}

/// SysTick as a free-running instruction counter.
pub struct Counter {
    /// Owned, so nothing else reconfigures it.
    syst: SYST,
    /// Ticks an empty measurement takes, subtracted from every measurement.
    overhead: u64,
}

impl core::fmt::Debug for Counter {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Counter")
            .field("overhead", &self.overhead)
            .finish_non_exhaustive()
    }
}

impl Counter {
    /// Starts SysTick counting processor-clock ticks, with its wrap interrupt enabled.
    pub fn start(mut syst: SYST) -> Self {
        syst.set_clock_source(SystClkSource::Core);
        syst.set_reload(RELOAD);
        syst.enable_interrupt();
        let mut counter = Self { syst, overhead: 0 };
        let ((), empty) = counter.measure_ticks(|| ());
        counter.overhead = empty;
        counter
    }

    /// Puts SysTick back to its initial state: stopped, cleared, no wrap counted or pending;
    /// then starts it.
    fn restart(&mut self) {
        critical_section::with(|cs| {
            self.syst.disable_counter();
            self.syst.clear_current();
            SCB::clear_pendst();
            WRAPS.borrow(cs).set(0);
            self.syst.enable_counter();
        });
    }

    /// Ticks since the last [`Counter::restart`].
    #[inline(never)]
    fn ticks(&self) -> u64 {
        critical_section::with(|cs| {
            let mut wraps = WRAPS.borrow(cs).get();
            let mut current = SYST::get_current();
            if SCB::is_pendst_pending() {
                // It wrapped and the handler has not run yet: count that wrap, and read the
                // counter again, after it.
                wraps = wraps.wrapping_add(1);
                current = SYST::get_current();
            }
            u64::from(wraps) * (u64::from(RELOAD) + 1) + u64::from(RELOAD.saturating_sub(current))
        })
    }

    /// Runs `work` and returns its result with the number of instructions it executed.
    pub fn measure<T>(&mut self, work: impl FnOnce() -> T) -> (T, u64) {
        let (result, ticks) = self.measure_ticks(work);
        (result, instructions(ticks.saturating_sub(self.overhead)))
    }

    /// Runs `work` and returns its result with the SysTick ticks it took. Never inlined: the
    /// compiler could otherwise schedule the caller's unrelated instructions (such as the
    /// conversion of the previous figure) between the two readings.
    #[inline(never)]
    fn measure_ticks<T>(&mut self, work: impl FnOnce() -> T) -> (T, u64) {
        self.restart();
        let start = self.ticks();
        let result = work();
        let end = self.ticks();
        (result, end.saturating_sub(start))
    }

    /// Measures a loop of exactly `2 × CALIBRATION_ITERATIONS` instructions (the difference
    /// between `delay(N)` and `delay(0)`, through one copy of the code). Returns
    /// `(expected, measured)`.
    pub fn calibrate(&mut self) -> (u64, u64) {
        let ((), empty) = self.measure(|| spin(0));
        let ((), full) = self.measure(|| spin(CALIBRATION_ITERATIONS));
        let expected = 2 * u64::from(CALIBRATION_ITERATIONS);
        (expected, full.saturating_sub(empty))
    }
}

/// `cortex_m::asm::delay`: `n + 1` iterations of `subs` + `bne`. Never inlined, so every call
/// runs the same instructions (the loop's alignment padding included).
#[inline(never)]
fn spin(n: u32) {
    cortex_m::asm::delay(n);
}

/// Instructions executed in `ticks` SysTick ticks, rounded to the nearest.
fn instructions(ticks: u64) -> u64 {
    (ticks * NS_PER_TICK + (1 << (ICOUNT_SHIFT - 1))) >> ICOUNT_SHIFT
}
