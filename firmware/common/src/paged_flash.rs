//! An `embedded-storage` NOR flash over a chip that programs whole 256-byte pages — the
//! RP2040's QSPI flash through its ROM routines — with word writes and a writable window.
//!
//! * Offsets are flash offsets; reads may go anywhere in [`PageFlash::CAPACITY`], erases and
//!   writes only inside the window given to [`PagedFlash::new`] (the credential store), so no
//!   bug above can overwrite the program.
//! * Writes are word-granular ([`WRITE_SIZE`](NorFlash::WRITE_SIZE) = 4): each touched page is
//!   programmed with `0xFF` everywhere but the bytes written, which NOR flash leaves unchanged.
//!   A word may so be written again with bits going 1 → 0 only ([`MultiwriteNorFlash`]).
//! * Erases are whole sectors ([`PageFlash::SECTOR_SIZE`]), one [`PageFlash::erase_sector`]
//!   call each, so a board can let interrupts in between.

use core::ops::Range;

use embedded_storage::nor_flash::{
    ErrorType, MultiwriteNorFlash, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};

/// The page a program operation writes.
pub const PAGE_SIZE: usize = 256;
const PAGE: u32 = 256;
/// The write granularity offered.
const WORD: u32 = 4;

/// What a board's flash chip does; [`PagedFlash`] checks every offset before calling.
pub trait PageFlash {
    /// The flash's size in bytes.
    const CAPACITY: u32;
    /// The erase unit, a multiple of the page size.
    const SECTOR_SIZE: usize;
    /// Copies `bytes.len()` bytes from `offset` (in bounds).
    fn read(&mut self, offset: u32, bytes: &mut [u8]);
    /// Erases the sector at `offset` (sector-aligned, inside the window).
    fn erase_sector(&mut self, offset: u32);
    /// Programs the page at `offset` (page-aligned, inside the window): each bit is ANDed in.
    fn program_page(&mut self, offset: u32, page: &[u8; PAGE_SIZE]);
}

/// Why an operation was refused. Nothing was changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PagedFlashError {
    /// Outside the flash, or a write or erase outside the writable window.
    OutOfBounds,
    /// Offset or length not a multiple of the operation's unit.
    NotAligned,
}

impl NorFlashError for PagedFlashError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            PagedFlashError::OutOfBounds => NorFlashErrorKind::OutOfBounds,
            PagedFlashError::NotAligned => NorFlashErrorKind::NotAligned,
        }
    }
}

/// A [`PageFlash`] as a NOR flash with 4-byte writes, writable in one window.
#[derive(Debug)]
pub struct PagedFlash<P> {
    chip: P,
    writable: Range<u32>,
}

impl<P: PageFlash> PagedFlash<P> {
    /// `chip`, writable (and erasable) in `writable` only.
    pub fn new(chip: P, writable: Range<u32>) -> Self {
        Self { chip, writable }
    }

    /// The chip, for what the NOR flash interface does not cover (an ID, say).
    pub fn chip(&mut self) -> &mut P {
        &mut self.chip
    }

    /// The writable window.
    pub fn writable(&self) -> Range<u32> {
        self.writable.clone()
    }

    /// `[offset, offset + len)` as a range, if it lies inside `within`.
    fn span(offset: u32, len: usize, within: &Range<u32>) -> Result<Range<u32>, PagedFlashError> {
        let len = u32::try_from(len).map_err(|_| PagedFlashError::OutOfBounds)?;
        let end = offset
            .checked_add(len)
            .ok_or(PagedFlashError::OutOfBounds)?;
        if offset < within.start || end > within.end {
            return Err(PagedFlashError::OutOfBounds);
        }
        Ok(offset..end)
    }
}

impl<P> ErrorType for PagedFlash<P> {
    type Error = PagedFlashError;
}

impl<P: PageFlash> ReadNorFlash for PagedFlash<P> {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), PagedFlashError> {
        Self::span(offset, bytes.len(), &(0..P::CAPACITY))?;
        self.chip.read(offset, bytes);
        Ok(())
    }

    fn capacity(&self) -> usize {
        usize::try_from(P::CAPACITY).unwrap_or(0)
    }
}

impl<P: PageFlash> NorFlash for PagedFlash<P> {
    const WRITE_SIZE: usize = 4;
    const ERASE_SIZE: usize = P::SECTOR_SIZE;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), PagedFlashError> {
        let sector = u32::try_from(P::SECTOR_SIZE).map_err(|_| PagedFlashError::NotAligned)?;
        if !from.is_multiple_of(sector) || !to.is_multiple_of(sector) {
            return Err(PagedFlashError::NotAligned);
        }
        let len = to.checked_sub(from).ok_or(PagedFlashError::OutOfBounds)?;
        let span = Self::span(
            from,
            usize::try_from(len).unwrap_or(usize::MAX),
            &self.writable,
        )?;
        for sector in span.step_by(P::SECTOR_SIZE) {
            self.chip.erase_sector(sector);
        }
        Ok(())
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), PagedFlashError> {
        if !offset.is_multiple_of(WORD) || !bytes.len().is_multiple_of(Self::WRITE_SIZE) {
            return Err(PagedFlashError::NotAligned);
        }
        let span = Self::span(offset, bytes.len(), &self.writable)?;
        let mut rest = bytes;
        let mut at = span.start;
        while let Some(page_start) = Some(at - at % PAGE).filter(|_| !rest.is_empty()) {
            let in_page = usize::try_from(at - page_start).unwrap_or(0);
            let count = (PAGE_SIZE - in_page).min(rest.len());
            let (now, later) = rest.split_at(count);
            let mut page = [0xFF; PAGE_SIZE];
            if let Some(target) = page.get_mut(in_page..in_page + count) {
                target.copy_from_slice(now);
            }
            self.chip.program_page(page_start, &page);
            rest = later;
            at = page_start + PAGE;
        }
        Ok(())
    }
}

impl<P: PageFlash> MultiwriteNorFlash for PagedFlash<P> {}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::vec;
    use std::vec::Vec;

    use super::*;

    /// 64 KiB of simulated NOR flash: programs AND bits in, erases set them; every operation
    /// is logged.
    struct SimChip {
        memory: Vec<u8>,
        log: Vec<(&'static str, u32)>,
    }

    impl SimChip {
        fn new() -> Self {
            Self {
                memory: vec![0xFF; 64 * 1024],
                log: Vec::new(),
            }
        }
    }

    impl PageFlash for SimChip {
        const CAPACITY: u32 = 64 * 1024;
        const SECTOR_SIZE: usize = 4096;

        fn read(&mut self, offset: u32, bytes: &mut [u8]) {
            let start = offset as usize;
            bytes.copy_from_slice(&self.memory[start..start + bytes.len()]);
        }

        fn erase_sector(&mut self, offset: u32) {
            assert_eq!(offset % 4096, 0);
            self.log.push(("erase", offset));
            let start = offset as usize;
            self.memory[start..start + 4096].fill(0xFF);
        }

        fn program_page(&mut self, offset: u32, page: &[u8; PAGE_SIZE]) {
            assert_eq!(offset % 256, 0);
            self.log.push(("program", offset));
            let start = offset as usize;
            for (cell, byte) in self.memory[start..start + 256].iter_mut().zip(page) {
                *cell &= byte;
            }
        }
    }

    /// Writable from 32 KiB to the end.
    fn flash() -> PagedFlash<SimChip> {
        PagedFlash::new(SimChip::new(), 0x8000..0x10000)
    }

    #[test]
    fn a_write_across_pages_programs_each_page_once_and_reads_back() {
        let mut flash = flash();
        let data: Vec<u8> = (0..=255u8).cycle().step_by(7).take(600).collect();
        flash.write(0x80F8, &data).unwrap();
        assert_eq!(
            flash.chip.log,
            [
                ("program", 0x8000),
                ("program", 0x8100),
                ("program", 0x8200),
                ("program", 0x8300)
            ]
        );
        let mut back = vec![0; 600];
        flash.read(0x80F8, &mut back).unwrap();
        assert_eq!(back, data);
        let mut around = [0; 8];
        flash.read(0x80F0, &mut around).unwrap();
        assert_eq!(
            around[..8],
            [0xFF; 8],
            "bytes before the write are untouched"
        );
        flash.read(0x80F8 + 600, &mut around).unwrap();
        assert_eq!(around, [0xFF; 8], "bytes after the write are untouched");
    }

    #[test]
    fn a_word_can_be_written_again_with_bits_cleared_only() {
        let mut flash = flash();
        flash.write(0x9000, &[0xF0, 0xFF, 0x0F, 0xAA]).unwrap();
        flash.write(0x9000, &[0x30, 0x7F, 0xFF, 0xFF]).unwrap();
        let mut back = [0; 4];
        flash.read(0x9000, &mut back).unwrap();
        assert_eq!(back, [0x30, 0x7F, 0x0F, 0xAA]);
    }

    #[test]
    fn misaligned_or_outside_the_window_is_refused_without_touching_the_chip() {
        let mut flash = flash();
        assert_eq!(
            flash.write(0x8002, &[0; 4]),
            Err(PagedFlashError::NotAligned)
        );
        assert_eq!(
            flash.write(0x8000, &[0; 3]),
            Err(PagedFlashError::NotAligned)
        );
        assert_eq!(
            flash.write(0x7FFC, &[0; 8]),
            Err(PagedFlashError::OutOfBounds)
        );
        assert_eq!(
            flash.write(0xFFFC, &[0; 8]),
            Err(PagedFlashError::OutOfBounds)
        );
        assert_eq!(
            flash.write(0x1000, &[0; 4]),
            Err(PagedFlashError::OutOfBounds)
        );
        assert_eq!(
            flash.erase(0x7000, 0x9000),
            Err(PagedFlashError::OutOfBounds)
        );
        assert_eq!(
            flash.erase(0x8000, 0x8100),
            Err(PagedFlashError::NotAligned)
        );
        assert_eq!(
            flash.erase(0x9000, 0x8000),
            Err(PagedFlashError::OutOfBounds)
        );
        assert_eq!(
            flash.read(0xFFFF, &mut [0; 2]),
            Err(PagedFlashError::OutOfBounds)
        );
        assert!(flash.chip.log.is_empty());
        // Reads may go anywhere in the chip, program region included.
        flash.read(0x0000, &mut [0; 16]).unwrap();
    }

    #[test]
    fn an_erase_goes_sector_by_sector_and_restores_ones() {
        let mut flash = flash();
        flash.write(0xA010, &[0; 16]).unwrap();
        flash.erase(0xA000, 0xC000).unwrap();
        assert_eq!(flash.chip.log[1..], [("erase", 0xA000), ("erase", 0xB000)]);
        let mut back = [0; 16];
        flash.read(0xA010, &mut back).unwrap();
        assert_eq!(back, [0xFF; 16]);
        assert_eq!(flash.capacity(), 64 * 1024);
    }

    #[test]
    fn the_flash_store_runs_on_it() {
        use authenticator_core::Store as _;
        use authenticator_core::platform::Write;

        let store = crate::store::open_or_format(flash(), 0x8000..0x10000);
        let mut store = store.unwrap();
        store
            .commit(&[Write::Put(b"k1", b"one"), Write::Put(b"k2", &[7; 700])])
            .unwrap();
        assert_eq!(store.get(b"k1").unwrap().as_deref(), Some(&b"one"[..]));
        let flash = store
            .into_flash()
            .map(|blocking| blocking.into_inner())
            .unwrap();
        // Reopened from the same bytes, as after a power cycle.
        let store = crate::store::open_or_format(flash, 0x8000..0x10000).unwrap();
        assert_eq!(store.get(b"k2").unwrap(), Some(vec![7; 700]));
    }

    #[test]
    fn a_region_holding_something_else_is_formatted_and_an_erased_one_opened() {
        let mut chip = SimChip::new();
        chip.memory[0x8000..0x8010].copy_from_slice(b"littlefs, say...");
        let flash = PagedFlash::new(chip, 0x8000..0x10000);
        let store = crate::store::open_or_format(flash, 0x8000..0x10000).unwrap();
        let flash = store.into_flash().unwrap().into_inner();
        assert!(
            flash.chip.log.iter().any(|(op, _)| *op == "erase"),
            "formatted"
        );

        let store = crate::store::open_or_format(self::flash(), 0x8000..0x10000).unwrap();
        let flash = store.into_flash().unwrap().into_inner();
        assert!(
            !flash.chip.log.iter().any(|(op, _)| *op == "erase"),
            "nothing to erase"
        );
    }
}
