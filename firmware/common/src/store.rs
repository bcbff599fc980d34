//! Opening the credential store at boot.
//!
//! The store region is the firmware's by the board's memory map, but a board may come with
//! something else there: the file system of the program it ran before (MicroPython keeps one
//! at the end of a Pico's flash), or nothing at all. So:
//!
//! | the region holds | at boot |
//! |---|---|
//! | nothing (all erased) | a new, empty store (`FlashStore::open`) |
//! | a Fidelio store | it is opened; an interrupted commit is finished or discarded |
//! | anything else (no Fidelio superblock) | it is erased and a new store made (`FlashStore::format`) |
//! | a Fidelio store that cannot be read (newer format, other geometry, damaged) | nothing is written; the board shows the fault pattern (see the board's docs for the wipe build) |

use core::ops::Range;

use embedded_storage::nor_flash::NorFlash;
use fidelio_flash_store::{BlockingFlash, FlashStore, OpenError};

/// The first bytes of a Fidelio store's region: its superblock's magic (fidelio-flash-store's
/// documented layout).
const SUPERBLOCK_MAGIC: &[u8; 8] = b"FidelioS";

/// The store the firmware runs on.
pub type BoardStore<F> = FlashStore<BlockingFlash<F>>;

/// Opens the store in `region` (flash offsets, whole sectors), making one if the region holds
/// none (see the [module documentation](self)).
pub fn open_or_format<F: NorFlash>(
    mut flash: F,
    region: Range<u32>,
) -> Result<BoardStore<F>, OpenError<F::Error>> {
    let mut magic = [0u8; 8];
    flash
        .read(region.start, &mut magic)
        .map_err(OpenError::Flash)?;
    if &magic == SUPERBLOCK_MAGIC || is_erased(&mut flash, region.clone())? {
        FlashStore::open(BlockingFlash(flash), region)
    } else {
        FlashStore::format(BlockingFlash(flash), region)
    }
}

/// Whether every byte of `region` reads 0xFF.
fn is_erased<F: NorFlash>(flash: &mut F, region: Range<u32>) -> Result<bool, OpenError<F::Error>> {
    let mut chunk = [0u8; 256];
    let mut at = region.start;
    while at < region.end {
        let len = (region.end - at).min(256);
        let window = chunk
            .get_mut(..usize::try_from(len).unwrap_or(0))
            .unwrap_or_default();
        flash.read(at, window).map_err(OpenError::Flash)?;
        if window.iter().any(|byte| *byte != 0xFF) {
            return Ok(false);
        }
        at += len;
    }
    Ok(true)
}
