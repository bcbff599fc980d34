//! [`BlockingFlash`]: a blocking `embedded-storage` flash driver seen through the async
//! `embedded-storage-async` traits that sequential-storage uses.

use embedded_storage::nor_flash::{ErrorType, NorFlash, ReadNorFlash};
use embedded_storage_async::nor_flash as asynch;

/// Wraps a blocking NOR flash driver (nRF52840's NVMC, an RP2040 driver over the ROM flash
/// routines) so that [`FlashStore`](crate::FlashStore) can drive it. Every operation completes
/// on its first poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockingFlash<F>(pub F);

impl<F> BlockingFlash<F> {
    /// The wrapped driver.
    pub fn into_inner(self) -> F {
        self.0
    }
}

impl<F: ErrorType> ErrorType for BlockingFlash<F> {
    type Error = F::Error;
}

impl<F: ReadNorFlash> asynch::ReadNorFlash for BlockingFlash<F> {
    const READ_SIZE: usize = F::READ_SIZE;

    async fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
        self.0.read(offset, bytes)
    }

    fn capacity(&self) -> usize {
        self.0.capacity()
    }
}

impl<F: NorFlash> asynch::NorFlash for BlockingFlash<F> {
    const WRITE_SIZE: usize = F::WRITE_SIZE;
    const ERASE_SIZE: usize = F::ERASE_SIZE;

    async fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
        self.0.erase(from, to)
    }

    async fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
        self.0.write(offset, bytes)
    }
}
