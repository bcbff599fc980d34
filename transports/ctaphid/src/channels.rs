//! The table of allocated channels and the generator of their identifiers.

use alloc::vec::Vec;

use crate::BROADCAST_CHANNEL;

/// How many identifiers allocation draws before giving up. A collision with the table or a
/// reserved value is rare (at most `max_channels + 2` of 2³² values are excluded), so failing
/// 16 draws in a row does not happen in practice; the bound only keeps the call finite.
const ALLOCATION_ATTEMPTS: usize = 16;

/// A small non-cryptographic generator (xorshift64*), seeded through splitmix64.
///
/// Channel identifiers only need to be hard to guess by accident, not secret: CTAPHID gives a
/// host application no protection against another one that reads the same device. A
/// deterministic seed also makes every session reproducible in tests.
#[derive(Debug, Clone)]
pub(crate) struct CidGenerator {
    state: u64,
}

impl CidGenerator {
    pub(crate) fn new(seed: u64) -> Self {
        // splitmix64 spreads similar seeds apart; `| 1` keeps the state away from zero, the
        // one state xorshift never leaves.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Self { state: z | 1 }
    }

    pub(crate) fn next_u32(&mut self) -> u32 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        let [a, b, c, d, ..] = x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_be_bytes();
        u32::from_be_bytes([a, b, c, d])
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    channel: u32,
    /// A logical clock: higher is more recent. Packets, not milliseconds, so that two uses in
    /// the same millisecond still order.
    last_used: u64,
}

/// Allocated channels, bounded; when full, allocation evicts the least recently used channel
/// that is not protected (the channel of the transaction in progress, the lock holder).
#[derive(Debug)]
pub(crate) struct Channels {
    entries: Vec<Entry>,
    capacity: usize,
    clock: u64,
    generator: CidGenerator,
}

impl Channels {
    pub(crate) fn new(capacity: usize, seed: u64) -> Self {
        let capacity = capacity.max(1);
        Self {
            entries: Vec::with_capacity(capacity),
            capacity,
            clock: 0,
            generator: CidGenerator::new(seed),
        }
    }

    pub(crate) fn contains(&self, channel: u32) -> bool {
        self.entries.iter().any(|entry| entry.channel == channel)
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Marks `channel` as just used, if it is allocated.
    pub(crate) fn touch(&mut self, channel: u32) {
        self.clock = self.clock.wrapping_add(1);
        let clock = self.clock;
        if let Some(entry) = self
            .entries
            .iter_mut()
            .find(|entry| entry.channel == channel)
        {
            entry.last_used = clock;
        }
    }

    /// Allocates a fresh identifier (never 0, never the broadcast channel, never one in use),
    /// evicting the least recently used unprotected channel if the table is full. `None` if
    /// the table is full of protected channels or no fresh identifier came up.
    pub(crate) fn allocate(&mut self, protected: [Option<u32>; 2]) -> Option<u32> {
        if self.entries.len() >= self.capacity {
            let victim = self
                .entries
                .iter()
                .enumerate()
                .filter(|(_, entry)| !protected.contains(&Some(entry.channel)))
                .min_by_key(|(_, entry)| entry.last_used)
                .map(|(index, _)| index)?;
            self.entries.swap_remove(victim);
        }
        for _ in 0..ALLOCATION_ATTEMPTS {
            let candidate = self.generator.next_u32();
            if candidate == 0 || candidate == BROADCAST_CHANNEL || self.contains(candidate) {
                continue;
            }
            self.clock = self.clock.wrapping_add(1);
            self.entries.push(Entry {
                channel: candidate,
                last_used: self.clock,
            });
            return Some(candidate);
        }
        None
    }

    /// Forgets every channel (power cycle). The generator goes on, so identifiers handed out
    /// after a reset differ from those before it.
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
    }
}
