//! The code that must not run from flash: QSPI flash erase and program, the flash's unique ID,
//! and the BOOTSEL button (which shares its pin with the flash's chip select).
//!
//! While any of these runs, the flash cannot serve instruction fetches: XIP is off (erase,
//! program, unique ID) or the chip-select pin is taken over (BOOTSEL). So each routine
//!
//! * lives in RAM (`.data.ram_func`, copied from flash at reset by cortex-m-rt's `.data`
//!   initialisation), is `#[inline(never)]`, and calls nothing but the ROM routines through
//!   pointers looked up beforehand — no Rust function, no panic path, no `.rodata` constant;
//! * runs with interrupts off (`cortex_m::interrupt::free`), since every handler is in flash;
//! * relies on core 1 never having been started (it sleeps in the boot ROM) and on no DMA
//!   channel reading flash — both true of this firmware.
//!
//! `.ci/firmware-build` disassembles the RAM routines and fails if one branches to flash.
//!
//! After an erase or program, XIP is brought back by a RAM copy of our boot2 (the
//! second-stage bootloader the ROM ran at reset), as the Pico SDK does: the ROM's own
//! `flash_enter_cmd_xip` would leave the flash in slow serial-read mode.
#![expect(
    unsafe_code,
    reason = "RAM-resident routines, ROM calls and raw register access for the QSPI flash"
)]

use core::ptr::{read_volatile, write_volatile};

use rp2040_hal::rom_data;

/// The XIP window's uncached alias: reads bypass (and do not evict) the XIP cache.
pub const XIP_NOCACHE_NOALLOC_BASE: usize = 0x1300_0000;
/// The flash's page: the unit of a program operation.
pub const PAGE_SIZE: usize = fidelio_firmware::paged_flash::PAGE_SIZE;
/// The flash's sector: the unit of an erase.
pub const SECTOR_SIZE: u32 = 4096;

/// SSI (the QSPI controller): status register.
const SSI_SR: usize = 0x1800_0028;
/// SSI: data register 0.
const SSI_DR0: usize = 0x1800_0060;
/// SSI status: transmit FIFO not full.
const SSI_SR_TFNF: u32 = 1 << 1;
/// SSI status: receive FIFO not empty.
const SSI_SR_RFNE: u32 = 1 << 3;
/// IO_QSPI: GPIO_QSPI_SS_CTRL, the chip-select pin's overrides.
const QSPI_SS_CTRL: usize = 0x4001_800C;
/// GPIO_QSPI_SS_CTRL.OUTOVER (bits 9:8): 2 drives low, 3 drives high.
const OUTOVER_MASK: u32 = 0b11 << 8;
const OUTOVER_LOW: u32 = 0b10 << 8;
const OUTOVER_HIGH: u32 = 0b11 << 8;
/// Block erase: 64 KiB with command 0xD8 where the range allows, sectors elsewhere (the ROM
/// picks), as the Pico SDK asks.
const BLOCK_SIZE: u32 = 1 << 16;
const BLOCK_ERASE_COMMAND: u8 = 0xD8;
/// Read Unique ID (Winbond 0x4B): the command, four dummy bytes, then eight ID bytes.
const UNIQUE_ID_COMMAND: u8 = 0x4B;
const UNIQUE_ID_DUMMY: usize = 4;
pub const UNIQUE_ID_SIZE: usize = 8;

type RomVoid = unsafe extern "C" fn();

/// The ROM routines one operation needs, looked up while XIP still works.
#[repr(C)]
struct Rom {
    connect_internal_flash: RomVoid,
    flash_exit_xip: RomVoid,
    flash_flush_cache: RomVoid,
    /// Our boot2 in RAM: re-enables fast XIP.
    enter_xip: RomVoid,
}

/// Owner of the QSPI flash: holds the RAM copy of boot2 the routines return through.
pub struct Qspi {
    boot2: [u32; 64],
}

impl core::fmt::Debug for Qspi {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Qspi")
    }
}

impl Qspi {
    /// Takes a RAM copy of `boot2` (the 256 bytes linked at the start of flash).
    pub fn new(boot2: &[u8; 256]) -> Self {
        let mut words = [0u32; 64];
        for (word, bytes) in words.iter_mut().zip(boot2.chunks_exact(4)) {
            *word = bytes.try_into().map(u32::from_le_bytes).unwrap_or_default();
        }
        Self { boot2: words }
    }

    fn rom(&self) -> Rom {
        // Thumb code: bit 0 of the address set.
        let boot2_entry = self.boot2.as_ptr() as usize | 1;
        Rom {
            connect_internal_flash: rom_data::connect_internal_flash::ptr(),
            flash_exit_xip: rom_data::flash_exit_xip::ptr(),
            flash_flush_cache: rom_data::flash_flush_cache::ptr(),
            // SAFETY: `boot2` holds the second-stage bootloader the ROM ran at reset: Thumb
            // code that, called with a non-zero return address, sets the QSPI up for XIP and
            // returns (its exit_from_boot2 path). It lives in RAM, in `self`, and `self` is
            // borrowed for as long as this `Rom` is used.
            enter_xip: unsafe { core::mem::transmute::<usize, RomVoid>(boot2_entry) },
        }
    }

    /// Erases the sectors `[offset, offset + len)` (flash offsets, multiples of 4 KiB), one
    /// sector per critical section so that interrupts are served between sectors.
    pub fn erase(&mut self, offset: u32, len: u32) {
        let erase = rom_data::flash_range_erase::ptr();
        let mut sector = offset;
        let end = offset.saturating_add(len);
        while sector < end {
            let rom = self.rom();
            cortex_m::interrupt::free(|_| {
                // SAFETY: interrupts are off, core 1 is parked in the ROM and no DMA reads
                // flash, so nothing fetches from flash while XIP is off; the routine and
                // `rom` are in RAM, the function pointers point into ROM or RAM. The caller
                // (flash.rs) checked that the sector lies in the store region.
                unsafe { ram_erase(&rom, erase, sector) };
            });
            sector = sector.saturating_add(SECTOR_SIZE);
        }
    }

    /// Programs one 256-byte page at `offset` (a multiple of 256). Bytes of `page` that are
    /// 0xFF leave the flash as it was.
    pub fn program(&mut self, offset: u32, page: &[u8; PAGE_SIZE]) {
        let program = rom_data::flash_range_program::ptr();
        let rom = self.rom();
        cortex_m::interrupt::free(|_| {
            // SAFETY: as in `erase`; `page` is on the stack (RAM), so the ROM reads it while
            // XIP is off; the caller checked that the page lies in the store region.
            unsafe { ram_program(&rom, program, offset, page.as_ptr()) };
        });
    }

    /// The flash chip's 64-bit unique ID (Winbond Read Unique ID, 0x4B): the board's serial
    /// number. Not secret.
    pub fn unique_id(&mut self) -> [u8; UNIQUE_ID_SIZE] {
        let mut id = [0u8; UNIQUE_ID_SIZE];
        let rom = self.rom();
        cortex_m::interrupt::free(|_| {
            // SAFETY: as in `erase`; the routine only exchanges 13 bytes with the flash over
            // the SSI and writes 8 of them into `id` (RAM).
            unsafe { ram_unique_id(&rom, &mut id) };
        });
        id
    }
}

/// connect, exit XIP, erase one sector, flush the cache, boot2.
///
/// # Safety
/// Nothing may fetch from flash meanwhile: interrupts off, core 1 and DMA away from flash.
#[unsafe(link_section = ".data.ram_func")]
#[inline(never)]
unsafe extern "C" fn ram_erase(
    rom: &Rom,
    erase: unsafe extern "C" fn(u32, usize, u32, u8),
    offset: u32,
) {
    // SAFETY: the caller guarantees exclusive use of the flash; these are the ROM's flash
    // routines and our boot2, called in the order the RP2040 datasheet gives (2.8.3.1.3).
    unsafe {
        (rom.connect_internal_flash)();
        (rom.flash_exit_xip)();
        erase(
            offset,
            SECTOR_SIZE as usize,
            BLOCK_SIZE,
            BLOCK_ERASE_COMMAND,
        );
        (rom.flash_flush_cache)();
        (rom.enter_xip)();
    }
}

/// connect, exit XIP, program one page, flush the cache, boot2.
///
/// # Safety
/// As [`ram_erase`]; `data` points to 256 readable bytes in RAM.
#[unsafe(link_section = ".data.ram_func")]
#[inline(never)]
unsafe extern "C" fn ram_program(
    rom: &Rom,
    program: unsafe extern "C" fn(u32, *const u8, usize),
    offset: u32,
    data: *const u8,
) {
    // SAFETY: as in `ram_erase`.
    unsafe {
        (rom.connect_internal_flash)();
        (rom.flash_exit_xip)();
        program(offset, data, PAGE_SIZE);
        (rom.flash_flush_cache)();
        (rom.enter_xip)();
    }
}

/// Sends Read Unique ID with chip select held low by hand, keeps the last 8 bytes.
///
/// # Safety
/// As [`ram_erase`].
#[unsafe(link_section = ".data.ram_func")]
#[inline(never)]
unsafe extern "C" fn ram_unique_id(rom: &Rom, id: &mut [u8; UNIQUE_ID_SIZE]) {
    // SAFETY: the caller guarantees exclusive use of the flash. After flash_exit_xip the SSI
    // is a plain 8-bit SPI master; one byte out for each byte in keeps both FIFOs far from
    // full. flash_flush_cache releases the chip-select override again.
    unsafe {
        (rom.connect_internal_flash)();
        (rom.flash_exit_xip)();
        let ctrl = read_volatile(QSPI_SS_CTRL as *const u32);
        write_volatile(
            QSPI_SS_CTRL as *mut u32,
            (ctrl & !OUTOVER_MASK) | OUTOVER_LOW,
        );
        let mut index = 0;
        while index < 1 + UNIQUE_ID_DUMMY + UNIQUE_ID_SIZE {
            while read_volatile(SSI_SR as *const u32) & SSI_SR_TFNF == 0 {}
            let out = if index == 0 { UNIQUE_ID_COMMAND } else { 0 };
            write_volatile(SSI_DR0 as *mut u32, u32::from(out));
            while read_volatile(SSI_SR as *const u32) & SSI_SR_RFNE == 0 {}
            let byte = read_volatile(SSI_DR0 as *const u32).to_le_bytes()[0];
            if let Some(slot) = id.get_mut(index.wrapping_sub(1 + UNIQUE_ID_DUMMY)) {
                *slot = byte;
            }
            index = index.wrapping_add(1);
        }
        let ctrl = read_volatile(QSPI_SS_CTRL as *const u32);
        write_volatile(
            QSPI_SS_CTRL as *mut u32,
            (ctrl & !OUTOVER_MASK) | OUTOVER_HIGH,
        );
        (rom.flash_flush_cache)();
        (rom.enter_xip)();
    }
}

/// The BOOTSEL button (not built with the `gpio-button` feature).
#[cfg(not(feature = "gpio-button"))]
pub mod bootsel {
    use core::ptr::{read_volatile, write_volatile};

    use super::QSPI_SS_CTRL;

    /// GPIO_QSPI_SS_CTRL.OEOVER (bits 13:12): 2 disables the output driver.
    const OEOVER_MASK: u32 = 0b11 << 12;
    const OEOVER_DISABLE: u32 = 0b10 << 12;
    /// SIO: GPIO_HI_IN, the QSPI pins' input levels; chip select is bit 1.
    const SIO_GPIO_HI_IN: usize = 0xD000_0008;
    const QSPI_SS_BIT: u32 = 1 << 1;

    /// Whether the BOOTSEL button is pressed.
    ///
    /// The button pulls the flash's chip select low. Reading it means letting go of the pin for
    /// a few microseconds: float it, wait, read it, give it back — during which the flash is
    /// unreachable, hence RAM code with interrupts off.
    pub fn pressed() -> bool {
        cortex_m::interrupt::free(|_| {
            // SAFETY: interrupts are off, core 1 is parked in the ROM and no DMA reads flash; the
            // routine is in RAM and touches two registers only, restoring the override it
            // changes before returning.
            unsafe { ram_bootsel() }
        })
    }

    /// Floats the chip-select pin, lets it settle, reads it, drives it again.
    ///
    /// # Safety
    /// As [`super::ram_erase`].
    #[unsafe(link_section = ".data.ram_func")]
    #[inline(never)]
    unsafe extern "C" fn ram_bootsel() -> bool {
        // SAFETY: the caller guarantees that nothing fetches from flash; the two registers are
        // the chip select's override (restored below) and the QSPI input levels.
        unsafe {
            let ctrl = read_volatile(QSPI_SS_CTRL as *const u32);
            write_volatile(
                QSPI_SS_CTRL as *mut u32,
                (ctrl & !OEOVER_MASK) | OEOVER_DISABLE,
            );
            // ~1000 reads (a few µs): the pin's pull-up or the button wins.
            let mut settle = 0u32;
            while settle < 1000 {
                let _ = read_volatile(SIO_GPIO_HI_IN as *const u32);
                settle = settle.wrapping_add(1);
            }
            let level = read_volatile(SIO_GPIO_HI_IN as *const u32) & QSPI_SS_BIT;
            write_volatile(QSPI_SS_CTRL as *mut u32, ctrl & !OEOVER_MASK);
            level == 0
        }
    }
}
