//! The RP2040's QSPI flash for the credential store: [`Chip`] does the chip operations through
//! the RAM routines of [`crate::ram`], `fidelio_firmware::paged_flash` makes it an
//! `embedded-storage` NOR flash (4-byte writes, 4 KiB erases) writable only in the store
//! region. The layout is documented in memory.x.

use fidelio_firmware::paged_flash::{PAGE_SIZE, PageFlash, PagedFlash};

use crate::ram::{Qspi, SECTOR_SIZE, UNIQUE_ID_SIZE, XIP_NOCACHE_NOALLOC_BASE};

/// The flash on a Raspberry Pi Pico: 2 MiB.
pub const FLASH_SIZE: u32 = 2 * 1024 * 1024;
/// The credential store's size: the last 256 KiB of flash.
pub const STORE_SIZE: u32 = 256 * 1024;
/// Where the store starts (flash offset); memory.x ends the program region here.
pub const STORE_OFFSET: u32 = FLASH_SIZE - STORE_SIZE;

/// The flash as the store sees it: offsets from the start of flash, writable in the store.
pub type Flash = PagedFlash<Chip>;

/// The flash, writable only in the store region.
pub fn flash(qspi: Qspi) -> Flash {
    PagedFlash::new(Chip { qspi }, STORE_OFFSET..FLASH_SIZE)
}

/// The QSPI flash chip.
#[derive(Debug)]
pub struct Chip {
    qspi: Qspi,
}

impl Chip {
    /// The flash chip's unique ID (see [`Qspi::unique_id`]).
    pub fn unique_id(&mut self) -> [u8; UNIQUE_ID_SIZE] {
        self.qspi.unique_id()
    }
}

impl PageFlash for Chip {
    const CAPACITY: u32 = FLASH_SIZE;
    const SECTOR_SIZE: usize = SECTOR_SIZE as usize;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) {
        // Through the uncached alias: store scans do not evict code from the XIP cache.
        let source = XIP_NOCACHE_NOALLOC_BASE.wrapping_add(offset as usize) as *const u8;
        #[expect(
            unsafe_code,
            reason = "the flash is read through its memory-mapped window"
        )]
        // SAFETY: PagedFlash checked that [offset, offset + len) lies within the 2 MiB flash,
        // which the XIP window maps read-only at XIP_NOCACHE_NOALLOC_BASE; no Rust object lives
        // there, so the copy aliases nothing, and the flash only changes through `&mut self`.
        unsafe {
            core::ptr::copy_nonoverlapping(source, bytes.as_mut_ptr(), bytes.len());
        }
    }

    fn erase_sector(&mut self, offset: u32) {
        self.qspi.erase(offset, SECTOR_SIZE);
    }

    fn program_page(&mut self, offset: u32, page: &[u8; PAGE_SIZE]) {
        self.qspi.program(offset, page);
    }
}
