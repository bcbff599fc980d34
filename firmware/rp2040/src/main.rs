//! Fidelio on the Raspberry Pi Pico: a FIDO2/U2F security key over USB.
//!
//! ```text
//!  USBCTRL_IRQ ─▶ UsbLink::on_usb_interrupt   (usb-device poll, CTAPHID reports)
//!  SysTick 10 ms ─▶ UsbLink::on_tick + LED      (KEEPALIVE, timeouts, blink patterns)
//!  thread mode ─▶ fidelio_firmware::serve       (the core: CBOR/U2F requests, ECDSA, flash)
//! ```
//!
//! The design, the memory map and how to flash it are in docs/firmware-rp2040.md.
#![no_std]
#![no_main]

extern crate alloc;

mod flash;
mod ram;

use core::cell::{Cell, RefCell};
use core::mem::MaybeUninit;

use authenticator_core::{Authenticator, Clock, Config};
use cortex_m::peripheral::syst::SystClkSource;
use critical_section::Mutex;
use embedded_hal::digital::{OutputPin, PinState};
use fidelio_ctaphid::CtapHid;
use fidelio_firmware::{
    Button, ButtonPresence, FirmwarePlatform, Indicator, SharedLink, Signals, UsbLink,
};
use fidelio_usb::CtapHidClass;
use hal::gpio::bank0::Gpio25;
use hal::gpio::{FunctionSioOutput, Pin, PullDown};
use hal::pac::{self, interrupt};
use rand_core::Rng as _;
use rp2040_hal as hal;
use usb_device::bus::UsbBusAllocator;

use crate::flash::Flash;
use crate::ram::Qspi;

mod attestation {
    include!(concat!(env!("OUT_DIR"), "/attestation.rs"));
}

/// The second-stage bootloader for the Pico's W25Q16JV flash, linked at 0x10000000.
#[expect(unsafe_code, reason = "boot2 must sit in its own linker section")]
#[unsafe(link_section = ".boot2")]
#[used]
pub static BOOT2_FIRMWARE: [u8; 256] = rp2040_boot2::BOOT_LOADER_W25Q080;

/// The Pico's crystal.
const XOSC_HZ: u32 = 12_000_000;
/// The system clock init_clocks_and_plls sets: 125 MHz.
const SYSTEM_CLOCK_HZ: u32 = 125_000_000;
/// The tick: keepalives, timeouts, LED. CTAPHID wants a KEEPALIVE at least every 100 ms.
const TICK_MS: u32 = 10;
/// The heap, in .bss: CTAPHID reassembly (≤ 7609 bytes a message), the core's CBOR, the
/// flash store's index (≈ 80 bytes a key) and sequential-storage's caches.
const HEAP_SIZE: usize = 56 * 1024;
/// Raw ROSC bits drawn for the RNG seed: 8 per seed bit, as ROSC bits are biased and
/// correlated.
const ENTROPY_BYTES: usize = 256;

/// The presence button: BOOTSEL by default, GPIO 15 to ground with the `gpio-button` feature.
#[cfg(feature = "gpio-button")]
type ButtonPin = Pin<hal::gpio::bank0::Gpio15, hal::gpio::FunctionSioInput, hal::gpio::PullUp>;

type LedPin = Pin<Gpio25, FunctionSioOutput, PullDown>;
type Bus = hal::usb::UsbBus;

static SIGNALS: Signals = Signals::new();
static LINK: SharedLink<Bus> = SharedLink::new();
static CLOCK: Mutex<Cell<Option<TimerClock>>> = Mutex::new(Cell::new(None));
static TICK: Mutex<RefCell<Option<TickState>>> = Mutex::new(RefCell::new(None));

/// What the tick handler owns.
struct TickState {
    led: LedPin,
    indicator: Indicator,
}

/// Milliseconds from the RP2040's 64-bit microsecond timer (never wraps, never misses a tick,
/// even while a flash erase keeps interrupts off).
#[derive(Clone, Copy)]
struct TimerClock(hal::Timer);

impl Clock for TimerClock {
    fn now_ms(&self) -> u64 {
        self.0.get_counter().ticks() / 1000
    }
}

impl core::fmt::Debug for TimerClock {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("TimerClock")
    }
}

fn now_ms() -> u64 {
    critical_section::with(|cs| CLOCK.borrow(cs).get()).map_or(0, |clock| clock.now_ms())
}

/// The BOOTSEL button (read from RAM with the flash briefly let go; see ram.rs).
#[cfg(not(feature = "gpio-button"))]
#[derive(Debug)]
struct PresenceButton;

#[cfg(not(feature = "gpio-button"))]
impl Button for PresenceButton {
    fn is_pressed(&mut self) -> bool {
        ram::bootsel::pressed()
    }
}

/// A button from GPIO 15 to ground (internal pull-up).
#[cfg(feature = "gpio-button")]
struct PresenceButton(ButtonPin);

#[cfg(feature = "gpio-button")]
impl core::fmt::Debug for PresenceButton {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("PresenceButton(GPIO15)")
    }
}

#[cfg(feature = "gpio-button")]
impl Button for PresenceButton {
    fn is_pressed(&mut self) -> bool {
        use embedded_hal::digital::InputPin as _;
        let Ok(low) = self.0.is_low();
        low
    }
}

/// Resets the chip: for failures at start-up that cannot happen on a working Pico.
fn restart() -> ! {
    cortex_m::peripheral::SCB::sys_reset()
}

#[hal::entry]
fn main() -> ! {
    if let Some(heap) =
        cortex_m::singleton!(: [MaybeUninit<u8>; HEAP_SIZE] = [MaybeUninit::uninit(); HEAP_SIZE])
    {
        fidelio_firmware::heap::init(heap);
    }
    let (Some(mut pac), Some(mut core)) = (pac::Peripherals::take(), pac::CorePeripherals::take())
    else {
        restart()
    };

    // Clocks: 125 MHz system clock from the 12 MHz crystal, 48 MHz USB clock.
    let mut watchdog = hal::Watchdog::new(pac.WATCHDOG);
    let Ok(clocks) = hal::clocks::init_clocks_and_plls(
        XOSC_HZ,
        pac.XOSC,
        pac.CLOCKS,
        pac.PLL_SYS,
        pac.PLL_USB,
        &mut pac.RESETS,
        &mut watchdog,
    ) else {
        restart()
    };
    let timer = hal::Timer::new(pac.TIMER, &mut pac.RESETS, &clocks);
    let clock = TimerClock(timer);
    critical_section::with(|cs| CLOCK.borrow(cs).set(Some(clock)));

    let sio = hal::Sio::new(pac.SIO);
    let pins = hal::gpio::Pins::new(
        pac.IO_BANK0,
        pac.PADS_BANK0,
        sio.gpio_bank0,
        &mut pac.RESETS,
    );
    let mut led: LedPin = pins.gpio25.into_push_pull_output();
    #[cfg(feature = "gpio-button")]
    let button = PresenceButton(pins.gpio15.into_pull_up_input());
    #[cfg(not(feature = "gpio-button"))]
    let button = PresenceButton;

    // Flash: the store region and the chip's unique ID (the USB serial number).
    let mut nor = flash::flash(Qspi::new(&BOOT2_FIRMWARE));
    let unique_id = nor.chip().unique_id();

    if cfg!(feature = "wipe-store") {
        wipe_store_and_halt(nor, &mut led, clock);
    }

    // Entropy: ROSC bits, the flash ID and the time it took to get here.
    let rosc = hal::rosc::RingOscillator::new(pac.ROSC).initialize();
    let mut raw = [0u8; ENTROPY_BYTES];
    for byte in &mut raw {
        for _ in 0..8 {
            *byte = (*byte << 1) | u8::from(rosc.get_random_bit());
        }
    }
    let started_us = timer.get_counter().ticks().to_le_bytes();
    let mut rng = fidelio_firmware::seed_rng(&[&raw, &unique_id, &started_us]);
    raw.fill(0);

    // The store, before USB: the host starts enumerating as soon as the device is built,
    // and a first boot over foreign data erases the region first (seconds).
    let store = match fidelio_firmware::store::open_or_format(
        nor,
        flash::STORE_OFFSET..flash::FLASH_SIZE,
    ) {
        Ok(store) => store,
        Err(_) => fidelio_firmware::indicator::halt_with_fault(&clock, |on| {
            let _ = led.set_state(PinState::from(on));
        }),
    };

    // USB: the CTAPHID class, the device, the CTAPHID state machine.
    let Some(usb_bus) = cortex_m::singleton!(: UsbBusAllocator<Bus> = UsbBusAllocator::new(
        hal::usb::UsbBus::new(
            pac.USBCTRL_REGS,
            pac.USBCTRL_DPRAM,
            clocks.usb_clock,
            true,
            &mut pac.RESETS,
        )
    )) else {
        restart()
    };
    let usb_bus: &'static UsbBusAllocator<Bus> = usb_bus;
    let Some(serial) = cortex_m::singleton!(: [u8; 16] = hex(&unique_id)) else {
        restart()
    };
    let serial: &'static str = core::str::from_utf8(serial).unwrap_or("0");
    let class = CtapHidClass::new(usb_bus);
    let Ok(device) = fidelio_usb::build_device(usb_bus, serial) else {
        restart()
    };
    let hid = CtapHid::new(ctaphid_config(), rng.next_u64());
    LINK.install(UsbLink::new(device, class, hid));

    let mut config = Config::security_key();
    fidelio_firmware::attestation::configure(&mut config, attestation::BATCH.as_ref());
    let presence = ButtonPresence::new(button, clock, &SIGNALS);
    let platform = FirmwarePlatform::new(rng, store, presence, clock);
    let mut authenticator = Authenticator::new(platform, config);

    // The LED belongs to the tick from now on; the tick and the USB interrupt start.
    let _ = led.set_state(PinState::Low);
    critical_section::with(|cs| {
        TICK.borrow(cs).replace(Some(TickState {
            led,
            indicator: Indicator::new(),
        }))
    });
    core.SYST.set_clock_source(SystClkSource::Core);
    core.SYST.set_reload(SYSTEM_CLOCK_HZ / 1000 * TICK_MS - 1);
    core.SYST.clear_current();
    core.SYST.enable_counter();
    core.SYST.enable_interrupt();
    #[expect(unsafe_code, reason = "unmasking an interrupt in the NVIC")]
    // SAFETY: the handler only touches LINK and SIGNALS, which are installed above and only
    // ever reached through critical sections or atomics; no critical section is open here.
    unsafe {
        pac::NVIC::unmask(pac::Interrupt::USBCTRL_IRQ);
    }

    fidelio_firmware::serve(
        &mut authenticator,
        &LINK,
        &SIGNALS,
        &clock,
        cortex_m::asm::wfi,
    )
}

/// CTAPHID settings: the defaults (WINK, CBOR and MSG, 7609-byte messages, 100 ms
/// keepalives), with the firmware's version.
fn ctaphid_config() -> fidelio_ctaphid::Config {
    fidelio_ctaphid::Config {
        version: (0, 1, 0),
        ..fidelio_ctaphid::Config::default()
    }
}

/// Lower-case hex of the 8-byte ID.
fn hex(id: &[u8; 8]) -> [u8; 16] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 16];
    for (pair, byte) in out.chunks_exact_mut(2).zip(id) {
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
fn wipe_store_and_halt(mut nor: Flash, led: &mut LedPin, clock: TimerClock) -> ! {
    use embedded_storage::nor_flash::NorFlash as _;
    let wiped = nor.erase(flash::STORE_OFFSET, flash::FLASH_SIZE).is_ok();
    let period = if wiped { 100 } else { 1000 };
    loop {
        let on = (clock.now_ms() / period).is_multiple_of(2);
        let _ = led.set_state(PinState::from(on));
    }
}

#[cortex_m_rt::exception]
fn SysTick() {
    let now = now_ms();
    critical_section::with(|cs| {
        if let Some(tick) = TICK.borrow_ref_mut(cs).as_mut() {
            let on = tick.indicator.level(now, &SIGNALS);
            let _ = tick.led.set_state(PinState::from(on));
        }
    });
    LINK.with(|link| link.on_tick(now, &SIGNALS));
}

#[interrupt]
fn USBCTRL_IRQ() {
    let now = now_ms();
    LINK.with(|link| link.on_usb_interrupt(now, &SIGNALS));
}

/// A panic cannot come from input (the core and CTAPHID never panic on what the host sends);
/// if one ever happens, start over.
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    restart()
}
