//! A simulated NOR flash for host tests (feature `sim`).
//!
//! It behaves like the chips the firmware runs on, and can lose power at any program or erase
//! operation:
//!
//! - **Programming only clears bits** (the new contents are the old AND the data), and each
//!   `WRITE`-byte word may be programmed once between erases: a second program of a word is
//!   refused with [`SimError::Rewrite`] and counted in [`SimFlash::violations`] (the
//!   `embedded-storage` `NorFlash` contract; a store that needs more is a bug). The one
//!   exception is a word a power cut left half-programmed: it may be programmed once more, as
//!   sequential-storage's recovery does with a page marker whose write was cut short (both
//!   chips allow it: the nRF52840 NVMC allows two writes per word between erases, and NOR
//!   programming only ever clears more bits).
//! - **Erase** sets a whole `ERASE`-byte sector to `0xFF`.
//! - **Operations** are what the chip does: a program operation covers at most one
//!   `PROGRAM`-byte page (RP2040: the ROM's 256-byte page program; nRF52840: the NVMC's 4-byte
//!   word write), so one `write` call spanning several pages is several operations; an erase
//!   is one operation per sector.
//! - **Power cuts**: [`SimFlash::cut_power_at`] makes the N-th operation from now the last. With
//!   [`Tear::Clean`] it does not happen at all; with [`Tear::Partial`] it is left half-done: a
//!   program has programmed a prefix of its bytes and some of the bits of the next byte, an
//!   erase has erased a prefix of the sector (front to back) and some bits of the next byte.
//!   Every later operation, reads included, fails with [`SimError::PowerCut`] until the image
//!   is taken with [`SimFlash::image`] ("the next boot").
//! - Alignment is checked as the drivers do: reads at `READ`-byte granularity, writes at
//!   `WRITE`, erases at `ERASE`.
//!
//! [`Rp2040Sim`] and [`Nrf52840Sim`] are the two boards' geometries.

use alloc::vec;
use alloc::vec::Vec;

use embedded_storage::nor_flash::{
    ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};

/// RP2040 with its QSPI NOR flash (W25Q16JV on the Pico): memory-mapped reads, 256-byte page
/// programs through the ROM routines, 4 KiB sectors. The driver exposes 4-byte writes by
/// programming the page with `0xFF` around them (sequential-storage accepts words of at most
/// 32 bytes).
pub type Rp2040Sim = SimFlash<1, 4, 256, 4096>;

/// nRF52840's internal flash through the NVMC: 4-byte reads and word writes, 4 KiB pages.
pub type Nrf52840Sim = SimFlash<4, 4, 4, 4096>;

/// A word not programmed since its last erase.
const ERASED: u8 = 0;
/// A word programmed since its last erase.
const PROGRAMMED: u8 = 1;
/// A word whose program a power cut interrupted: it may be programmed once more.
const TORN: u8 = 2;

/// How the operation a power cut lands on is left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tear {
    /// Not started.
    Clean,
    /// Part-way through (see the module documentation).
    Partial,
}

/// Why a simulated operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimError {
    /// The power is off.
    PowerCut,
    /// An address or length is not aligned as the chip requires.
    NotAligned,
    /// Outside the chip.
    OutOfBounds,
    /// A word already programmed since its last erase was programmed again.
    Rewrite,
}

impl NorFlashError for SimError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            Self::NotAligned => NorFlashErrorKind::NotAligned,
            Self::OutOfBounds => NorFlashErrorKind::OutOfBounds,
            Self::PowerCut | Self::Rewrite => NorFlashErrorKind::Other,
        }
    }
}

impl core::fmt::Display for SimError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Debug::fmt(self, f)
    }
}

/// Counters of what the chip did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Program operations (pages or words, see the module documentation).
    pub program_ops: u64,
    /// Bytes passed to `write`.
    pub bytes_written: u64,
    /// Sector erases.
    pub erase_ops: u64,
    /// `read` calls.
    pub reads: u64,
    /// Bytes read.
    pub bytes_read: u64,
}

/// A simulated NOR flash of `READ`-byte reads, `WRITE`-byte program words, `PROGRAM`-byte
/// program operations and `ERASE`-byte sectors.
#[derive(Debug, Clone)]
pub struct SimFlash<const READ: usize, const WRITE: usize, const PROGRAM: usize, const ERASE: usize>
{
    memory: Vec<u8>,
    /// Per `WRITE`-byte word: [`ERASED`], [`PROGRAMMED`] or [`TORN`].
    programmed: Vec<u8>,
    /// Operations (program or erase) since the last [`Self::cut_power_at`] or image.
    ops: u64,
    cut: Option<(u64, Tear)>,
    off: bool,
    seed: u64,
    stats: SimStats,
    violations: u32,
    last_violation: Option<(u32, usize)>,
}

impl<const READ: usize, const WRITE: usize, const PROGRAM: usize, const ERASE: usize>
    SimFlash<READ, WRITE, PROGRAM, ERASE>
{
    /// An erased chip of `sectors` sectors.
    pub fn new(sectors: usize) -> Self {
        let size = sectors.saturating_mul(ERASE);
        Self {
            memory: vec![0xFF; size],
            programmed: vec![ERASED; size / WRITE.max(1)],
            ops: 0,
            cut: None,
            off: false,
            seed: 0x5EED,
            stats: SimStats::default(),
            violations: 0,
            last_violation: None,
        }
    }

    /// The chip as the next boot finds it: the same bytes (and programmed words), power on,
    /// no cut planned, counters at zero.
    pub fn image(&self) -> Self {
        Self {
            memory: self.memory.clone(),
            programmed: self.programmed.clone(),
            ops: 0,
            cut: None,
            off: false,
            seed: self.seed,
            stats: SimStats::default(),
            violations: 0,
            last_violation: None,
        }
    }

    /// Makes the `n`-th program or erase operation from now (1-based) the last one before the
    /// power goes, left as `tear` says.
    pub fn cut_power_at(&mut self, n: u64, tear: Tear) {
        self.ops = 0;
        self.cut = Some((n, tear));
    }

    /// Seeds the choice of how far a partial operation got.
    pub fn set_tear_seed(&mut self, seed: u64) {
        self.seed = seed;
    }

    /// Whether a planned power cut has happened.
    pub fn is_off(&self) -> bool {
        self.off
    }

    /// Program and erase operations since the last [`Self::cut_power_at`] or image.
    pub fn ops(&self) -> u64 {
        self.ops
    }

    /// What the chip did since the image was taken (or [`Self::reset_stats`]).
    pub fn stats(&self) -> SimStats {
        self.stats
    }

    /// Zeroes [`Self::stats`].
    pub fn reset_stats(&mut self) {
        self.stats = SimStats::default();
    }

    /// How many times a word was programmed twice without an erase.
    pub fn violations(&self) -> u32 {
        self.violations
    }

    /// The offset and length of the last write refused with [`SimError::Rewrite`].
    pub fn last_violation(&self) -> Option<(u32, usize)> {
        self.last_violation
    }

    /// The raw contents.
    pub fn bytes(&self) -> &[u8] {
        &self.memory
    }

    /// The raw contents, for tests that damage them. Changing bytes here does not mark words
    /// as programmed.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.memory
    }

    fn next_random(&mut self) -> u64 {
        self.seed = self.seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn random_below(&mut self, bound: usize) -> usize {
        let bound_u64 = u64::try_from(bound).unwrap_or(u64::MAX).max(1);
        usize::try_from(self.next_random() % bound_u64).unwrap_or(0)
    }

    fn random_byte(&mut self) -> u8 {
        self.next_random()
            .to_le_bytes()
            .first()
            .copied()
            .unwrap_or(0)
    }

    /// Counts one operation; `Some(tear)` when the power goes during it.
    fn begin_op(&mut self) -> Result<Option<Tear>, SimError> {
        if self.off {
            return Err(SimError::PowerCut);
        }
        self.ops = self.ops.saturating_add(1);
        match self.cut {
            Some((n, tear)) if n == self.ops => {
                self.off = true;
                Ok(Some(tear))
            }
            _ => Ok(None),
        }
    }

    fn range(&self, offset: u32, len: usize, align: usize) -> Result<(usize, usize), SimError> {
        let start = usize::try_from(offset).map_err(|_| SimError::OutOfBounds)?;
        if align == 0 || !start.is_multiple_of(align) || !len.is_multiple_of(align) {
            return Err(SimError::NotAligned);
        }
        let end = start.checked_add(len).ok_or(SimError::OutOfBounds)?;
        if end > self.memory.len() {
            return Err(SimError::OutOfBounds);
        }
        Ok((start, end))
    }

    /// Marks the words of `start..end` torn when any of their bits is now cleared.
    fn mark_torn(&mut self, start: usize, end: usize) {
        let first = start / WRITE;
        let last = end.div_ceil(WRITE);
        for word in first..last {
            let from = word * WRITE;
            let cleared = self
                .memory
                .get(from..from + WRITE)
                .is_some_and(|bytes| bytes.iter().any(|b| *b != 0xFF));
            if cleared && let Some(flag) = self.programmed.get_mut(word) {
                *flag = TORN;
            }
        }
    }

    fn program_chunk(&mut self, start: usize, data: &[u8]) -> Result<(), SimError> {
        let tear = self.begin_op()?;
        self.stats.program_ops = self.stats.program_ops.saturating_add(1);
        let done = match tear {
            None => data.len(),
            Some(Tear::Clean) => return Err(SimError::PowerCut),
            Some(Tear::Partial) => self.random_below(data.len()),
        };
        for (i, byte) in data.iter().enumerate().take(done) {
            if let Some(cell) = self.memory.get_mut(start + i) {
                *cell &= *byte;
            }
        }
        if tear.is_some() {
            // The next byte got some of its bits.
            let keep = self.random_byte();
            if let (Some(byte), Some(cell)) = (data.get(done), self.memory.get_mut(start + done)) {
                *cell &= *byte | keep;
            }
            self.mark_torn(start, start + done + 1);
            return Err(SimError::PowerCut);
        }
        for word in start / WRITE..(start + data.len()).div_ceil(WRITE) {
            if let Some(flag) = self.programmed.get_mut(word) {
                *flag = PROGRAMMED;
            }
        }
        Ok(())
    }

    fn erase_sector(&mut self, start: usize) -> Result<(), SimError> {
        let tear = self.begin_op()?;
        self.stats.erase_ops = self.stats.erase_ops.saturating_add(1);
        let done = match tear {
            None => ERASE,
            Some(Tear::Clean) => return Err(SimError::PowerCut),
            Some(Tear::Partial) => self.random_below(ERASE),
        };
        if let Some(cells) = self.memory.get_mut(start..start + done) {
            cells.fill(0xFF);
        }
        if tear.is_some() {
            let set = self.random_byte();
            if let Some(cell) = self.memory.get_mut(start + done) {
                *cell |= set;
            }
        }
        // Words back to all ones are programmable again; the others stay as they are.
        for word in start / WRITE..(start + ERASE) / WRITE {
            let from = word * WRITE;
            let erased = self
                .memory
                .get(from..from + WRITE)
                .is_some_and(|bytes| bytes.iter().all(|b| *b == 0xFF));
            if erased && let Some(flag) = self.programmed.get_mut(word) {
                *flag = ERASED;
            }
        }
        if tear.is_some() {
            return Err(SimError::PowerCut);
        }
        Ok(())
    }
}

impl<const READ: usize, const WRITE: usize, const PROGRAM: usize, const ERASE: usize> ErrorType
    for SimFlash<READ, WRITE, PROGRAM, ERASE>
{
    type Error = SimError;
}

impl<const READ: usize, const WRITE: usize, const PROGRAM: usize, const ERASE: usize> ReadNorFlash
    for SimFlash<READ, WRITE, PROGRAM, ERASE>
{
    const READ_SIZE: usize = READ;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        if self.off {
            return Err(SimError::PowerCut);
        }
        let (start, end) = self.range(offset, bytes.len(), READ)?;
        let source = self.memory.get(start..end).ok_or(SimError::OutOfBounds)?;
        bytes.copy_from_slice(source);
        self.stats.reads = self.stats.reads.saturating_add(1);
        self.stats.bytes_read = self
            .stats
            .bytes_read
            .saturating_add(u64::try_from(bytes.len()).unwrap_or(u64::MAX));
        Ok(())
    }

    fn capacity(&self) -> usize {
        self.memory.len()
    }
}

impl<const READ: usize, const WRITE: usize, const PROGRAM: usize, const ERASE: usize> NorFlash
    for SimFlash<READ, WRITE, PROGRAM, ERASE>
{
    const WRITE_SIZE: usize = WRITE;
    const ERASE_SIZE: usize = ERASE;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        if self.off {
            return Err(SimError::PowerCut);
        }
        let len = usize::try_from(to.checked_sub(from).ok_or(SimError::OutOfBounds)?)
            .map_err(|_| SimError::OutOfBounds)?;
        let (start, end) = self.range(from, len, ERASE)?;
        for sector in (start..end).step_by(ERASE) {
            self.erase_sector(sector)?;
        }
        Ok(())
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        if self.off {
            return Err(SimError::PowerCut);
        }
        let (start, end) = self.range(offset, bytes.len(), WRITE)?;
        let words = start / WRITE..end / WRITE;
        if self
            .programmed
            .get(words)
            .is_none_or(|flags| flags.contains(&PROGRAMMED))
        {
            self.violations = self.violations.saturating_add(1);
            self.last_violation = Some((offset, bytes.len()));
            return Err(SimError::Rewrite);
        }
        self.stats.bytes_written = self
            .stats
            .bytes_written
            .saturating_add(u64::try_from(bytes.len()).unwrap_or(u64::MAX));
        // One program operation per chip page touched.
        let mut at = start;
        while at < end {
            let page_end = (at / PROGRAM + 1) * PROGRAM;
            let chunk_end = page_end.min(end);
            let data = bytes
                .get(at - start..chunk_end - start)
                .ok_or(SimError::OutOfBounds)?;
            self.program_chunk(at, data)?;
            at = chunk_end;
        }
        Ok(())
    }
}
