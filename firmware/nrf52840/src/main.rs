//! Fidelio on the nRF52840 (the Dongle PCA10059 by default, the DK with the `dk` feature): a
//! FIDO2/U2F security key over USB.
//!
//! ```text
//!  SysTick 1 ms ─▶ UsbLink::on_usb_interrupt   (usb-device poll, CTAPHID reports)
//!     every 10th ─▶ UsbLink::on_tick + LED      (KEEPALIVE, timeouts, blink patterns)
//!  thread mode  ─▶ fidelio_firmware::serve      (the core: CBOR/U2F requests, ECDSA, flash)
//! ```
//!
//! Unlike the RP2040 build, USB is polled from the 1 ms tick rather than from the USBD
//! interrupt: nrf-usbd is written for polling and leaves some USBD events set (EPDATA, an OUT
//! EP0DATADONE until its buffer is read), which as interrupt sources would fire without end.
//! A full-speed host schedules at most one transaction per endpoint per 1 ms frame, so a 1 ms
//! poll loses nothing. The design is in docs/firmware-nrf52840.md.
#![no_std]
#![no_main]

extern crate alloc;

use core::cell::RefCell;
use core::mem::MaybeUninit;

use authenticator_core::{Authenticator, Clock, Config};
use cortex_m::peripheral::syst::SystClkSource;
use critical_section::Mutex;
use embedded_hal::digital::{InputPin as _, OutputPin as _, PinState};
use fidelio_ctaphid::CtapHid;
use fidelio_firmware::{
    Button, ButtonPresence, FirmwarePlatform, Indicator, SharedLink, Signals, UsbLink,
};
use fidelio_usb::CtapHidClass;
use hal::clocks::{ExternalOscillator, Internal, LfOscStopped};
use hal::gpio::{Input, Level, Output, Pin, PullUp, PushPull};
use hal::pac;
use hal::usbd::{UsbPeripheral, Usbd};
use nrf52840_hal as hal;
use rand_core::Rng as _;
use usb_device::bus::UsbBusAllocator;

mod attestation {
    include!(concat!(env!("OUT_DIR"), "/attestation.rs"));
}

/// The credential store: 256 KiB at 0xA0000 (see memory.x).
const STORE_START: usize = 0x000A_0000;
/// The credential store's size.
const STORE_SIZE: usize = 256 * 1024;
/// The CPU clock.
const SYSTEM_CLOCK_HZ: u32 = 64_000_000;
/// SysTick period: USB is polled every millisecond.
const USB_POLL_MS: u32 = 1;
/// Every how many USB polls the tick (keepalives, timeouts, LED) runs: every 10 ms.
const POLLS_PER_TICK: u32 = 10;
/// The heap, in .bss (see firmware/rp2040 for what uses it).
const HEAP_SIZE: usize = 56 * 1024;

type Bus = Usbd<UsbPeripheral<'static>>;
type Clocks = hal::clocks::Clocks<ExternalOscillator, Internal, LfOscStopped>;

static SIGNALS: Signals = Signals::new();
static LINK: SharedLink<Bus> = SharedLink::new();
static MONOTONIC: Mutex<RefCell<Option<Monotonic>>> = Mutex::new(RefCell::new(None));
static TICK: Mutex<RefCell<Option<TickState>>> = Mutex::new(RefCell::new(None));

/// What the SysTick handler owns.
struct TickState {
    led: Pin<Output<PushPull>>,
    indicator: Indicator,
    polls: u32,
}

/// TIMER1 counting microseconds, widened to 64 bits: it wraps every 71 minutes, and is read
/// at least every 10 ms (by the tick), so a wrap is never missed.
struct Monotonic {
    timer: hal::Timer<pac::TIMER1, hal::timer::Periodic>,
    last: u32,
    wraps: u32,
}

impl Monotonic {
    fn now_us(&mut self) -> u64 {
        let now = self.timer.read();
        if now < self.last {
            self.wraps = self.wraps.wrapping_add(1);
        }
        self.last = now;
        (u64::from(self.wraps) << 32) | u64::from(now)
    }
}

/// The board clock for the core and the presence timeout.
#[derive(Debug, Clone, Copy)]
struct BoardClock;

impl Clock for BoardClock {
    fn now_ms(&self) -> u64 {
        critical_section::with(|cs| {
            MONOTONIC
                .borrow_ref_mut(cs)
                .as_mut()
                .map_or(0, |monotonic| monotonic.now_us() / 1000)
        })
    }
}

/// The presence button: SW1 on the Dongle (P1.06), Button 1 on the DK (P0.11); both to
/// ground, with the internal pull-up.
struct PresenceButton(Pin<Input<PullUp>>);

impl core::fmt::Debug for PresenceButton {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("PresenceButton")
    }
}

impl Button for PresenceButton {
    fn is_pressed(&mut self) -> bool {
        let Ok(low) = self.0.is_low();
        low
    }
}

/// Lights the LED (active low on both boards).
fn set_led(led: &mut Pin<Output<PushPull>>, on: bool) {
    let Ok(()) = led.set_state(PinState::from(!on));
}

/// Resets the chip: for failures at start-up that cannot happen on a working board.
fn restart() -> ! {
    cortex_m::peripheral::SCB::sys_reset()
}

#[cortex_m_rt::entry]
fn main() -> ! {
    if let Some(heap) =
        cortex_m::singleton!(: [MaybeUninit<u8>; HEAP_SIZE] = [MaybeUninit::uninit(); HEAP_SIZE])
    {
        fidelio_firmware::heap::init(heap);
    }
    let (Some(p), Some(mut core)) = (pac::Peripherals::take(), pac::CorePeripherals::take()) else {
        restart()
    };

    // Clocks: the 32 MHz crystal, which USB needs.
    let Some(clocks) =
        cortex_m::singleton!(: Clocks = hal::clocks::Clocks::new(p.CLOCK).enable_ext_hfosc())
    else {
        restart()
    };
    let clocks: &'static Clocks = clocks;
    let mut timer = hal::Timer::periodic(p.TIMER1);
    timer.start(u32::MAX);
    critical_section::with(|cs| {
        MONOTONIC.borrow(cs).replace(Some(Monotonic {
            timer,
            last: 0,
            wraps: 0,
        }))
    });
    let clock = BoardClock;

    // Pins.
    let port0 = hal::gpio::p0::Parts::new(p.P0);
    #[cfg(not(feature = "dk"))]
    let (mut led, button) = {
        let port1 = hal::gpio::p1::Parts::new(p.P1);
        (
            port0.p0_06.into_push_pull_output(Level::High).degrade(),
            PresenceButton(port1.p1_06.into_pullup_input().degrade()),
        )
    };
    #[cfg(feature = "dk")]
    let (mut led, button) = (
        port0.p0_13.into_push_pull_output(Level::High).degrade(),
        PresenceButton(port0.p0_11.into_pullup_input().degrade()),
    );

    // Flash: the NVMC over the store region.
    #[expect(
        unsafe_code,
        reason = "the NVMC driver takes the store region as a slice"
    )]
    // SAFETY: [STORE_START, STORE_START + STORE_SIZE) is on-chip flash that memory.x keeps out
    // of every linker region, so no Rust object lives there and nothing else refers to it;
    // this is the only slice ever made of it, handed to the NVMC driver for good. Both bounds
    // are 4 KiB-aligned, as the driver requires.
    let storage: &'static mut [u8] =
        unsafe { core::slice::from_raw_parts_mut(STORE_START as *mut u8, STORE_SIZE) };
    let flash = hal::nvmc::Nvmc::new(p.NVMC, storage);

    if cfg!(feature = "wipe-store") {
        wipe_store_and_halt(flash, &mut led, clock);
    }

    // Entropy: the RNG peripheral (bias correction on), the chip's ID and the time.
    let device_id = (u64::from(p.FICR.deviceid[1].read().bits()) << 32)
        | u64::from(p.FICR.deviceid[0].read().bits());
    let mut hardware = hal::rng::Rng::new(p.RNG);
    let mut raw = [0u8; 64];
    hardware.random(&mut raw);
    let started_ms = clock.now_ms().to_le_bytes();
    let mut rng = fidelio_firmware::seed_rng(&[&raw, &device_id.to_le_bytes(), &started_ms]);
    raw.fill(0);

    // The store, before USB: the host starts enumerating as soon as the device is built,
    // and a first boot over foreign data erases the region first (seconds).
    let region = 0..u32::try_from(STORE_SIZE).unwrap_or(0);
    let store = match fidelio_firmware::store::open_or_format(flash, region) {
        Ok(store) => store,
        Err(_) => fidelio_firmware::indicator::halt_with_fault(&clock, |on| set_led(&mut led, on)),
    };

    // USB.
    let Some(usb_bus) = cortex_m::singleton!(: UsbBusAllocator<Bus> =
        UsbBusAllocator::new(Usbd::new(UsbPeripheral::new(p.USBD, clocks))))
    else {
        restart()
    };
    let usb_bus: &'static UsbBusAllocator<Bus> = usb_bus;
    let Some(serial) = cortex_m::singleton!(: [u8; 16] = hex(device_id)) else {
        restart()
    };
    let serial: &'static str = core::str::from_utf8(serial).unwrap_or("0");
    let class = CtapHidClass::new(usb_bus);
    let Ok(device) = fidelio_usb::build_device(usb_bus, serial) else {
        restart()
    };
    let hid = CtapHid::new(
        fidelio_ctaphid::Config {
            version: (0, 1, 0),
            ..fidelio_ctaphid::Config::default()
        },
        rng.next_u64(),
    );
    LINK.install(UsbLink::new(device, class, hid));

    let mut config = Config::security_key();
    fidelio_firmware::attestation::configure(&mut config, attestation::BATCH.as_ref());
    let presence = ButtonPresence::new(button, clock, &SIGNALS);
    let platform = FirmwarePlatform::new(rng, store, presence, clock);
    let mut authenticator = Authenticator::new(platform, config);

    // The LED belongs to the tick from now on; the tick starts.
    set_led(&mut led, false);
    critical_section::with(|cs| {
        TICK.borrow(cs).replace(Some(TickState {
            led,
            indicator: Indicator::new(),
            polls: 0,
        }))
    });
    core.SYST.set_clock_source(SystClkSource::Core);
    core.SYST
        .set_reload(SYSTEM_CLOCK_HZ / 1000 * USB_POLL_MS - 1);
    core.SYST.clear_current();
    core.SYST.enable_counter();
    core.SYST.enable_interrupt();

    fidelio_firmware::serve(
        &mut authenticator,
        &LINK,
        &SIGNALS,
        &clock,
        cortex_m::asm::wfi,
    )
}

/// Lower-case hex of the 64-bit device ID, most significant first.
fn hex(id: u64) -> [u8; 16] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 16];
    for (pair, byte) in out.chunks_exact_mut(2).zip(id.to_be_bytes()) {
        if let [high, low] = pair {
            *high = DIGITS.get(usize::from(byte >> 4)).copied().unwrap_or(b'0');
            *low = DIGITS
                .get(usize::from(byte & 0x0F))
                .copied()
                .unwrap_or(b'0');
        }
    }
    out
}

/// The `wipe-store` build: erases the store region, then blinks fast forever (flash the
/// normal firmware next).
fn wipe_store_and_halt(
    mut flash: hal::nvmc::Nvmc<pac::NVMC>,
    led: &mut Pin<Output<PushPull>>,
    clock: BoardClock,
) -> ! {
    use embedded_storage::nor_flash::NorFlash as _;
    let end = u32::try_from(STORE_SIZE).unwrap_or(0);
    let period = if flash.erase(0, end).is_ok() {
        100
    } else {
        1000
    };
    loop {
        set_led(led, (clock.now_ms() / period).is_multiple_of(2));
    }
}

#[cortex_m_rt::exception]
fn SysTick() {
    let now = BoardClock.now_ms();
    LINK.with(|link| link.on_usb_interrupt(now, &SIGNALS));
    let tick = critical_section::with(|cs| {
        let mut state = TICK.borrow_ref_mut(cs);
        let Some(state) = state.as_mut() else {
            return false;
        };
        state.polls = state.polls.wrapping_add(1);
        if state.polls % POLLS_PER_TICK != 0 {
            return false;
        }
        let on = state.indicator.level(now, &SIGNALS);
        set_led(&mut state.led, on);
        true
    });
    if tick {
        LINK.with(|link| link.on_tick(now, &SIGNALS));
    }
}

/// A panic cannot come from input (the core and CTAPHID never panic on what the host sends);
/// if one ever happens, start over.
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    restart()
}
