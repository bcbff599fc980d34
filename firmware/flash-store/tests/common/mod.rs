//! Shared test support: both chips behind one trait, store helpers, a model comparison and a
//! small seeded generator.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "test helpers: a failure is a test failure"
)]

use std::collections::BTreeMap;
use std::ops::Range;

use authenticator_core::MemoryStore;
use authenticator_core::platform::{Store, Write};
use embedded_storage::nor_flash::NorFlash;
use fidelio_flash_store::sim::{Nrf52840Sim, Rp2040Sim, SimError, SimFlash, SimStats, Tear};
use fidelio_flash_store::{BlockingFlash, FlashStore};

/// A simulated chip.
pub trait Chip: NorFlash<Error = SimError> + Sized {
    const NAME: &'static str;
    fn blank(sectors: usize) -> Self;
    fn image(&self) -> Self;
    fn cut(&mut self, n: u64, tear: Tear);
    fn seed(&mut self, seed: u64);
    fn is_off(&self) -> bool;
    fn ops(&self) -> u64;
    fn stats(&self) -> SimStats;
    fn reset_stats(&mut self);
    fn violations(&self) -> u32;
    fn bytes(&self) -> &[u8];
    fn bytes_mut(&mut self) -> &mut [u8];
}

macro_rules! chip {
    ($ty:ty, $name:literal) => {
        impl Chip for $ty {
            const NAME: &'static str = $name;
            fn blank(sectors: usize) -> Self {
                SimFlash::new(sectors)
            }
            fn image(&self) -> Self {
                SimFlash::image(self)
            }
            fn cut(&mut self, n: u64, tear: Tear) {
                self.cut_power_at(n, tear);
            }
            fn seed(&mut self, seed: u64) {
                self.set_tear_seed(seed);
            }
            fn is_off(&self) -> bool {
                SimFlash::is_off(self)
            }
            fn ops(&self) -> u64 {
                SimFlash::ops(self)
            }
            fn stats(&self) -> SimStats {
                SimFlash::stats(self)
            }
            fn reset_stats(&mut self) {
                SimFlash::reset_stats(self);
            }
            fn violations(&self) -> u32 {
                SimFlash::violations(self)
            }
            fn bytes(&self) -> &[u8] {
                SimFlash::bytes(self)
            }
            fn bytes_mut(&mut self) -> &mut [u8] {
                SimFlash::bytes_mut(self)
            }
        }
    };
}

chip!(Rp2040Sim, "RP2040");
chip!(Nrf52840Sim, "nRF52840");

/// Runs a generic test body once per chip.
#[macro_export]
macro_rules! on_both_chips {
    ($($name:ident => $body:ident;)*) => {
        $(
            mod $name {
                #[test]
                fn rp2040() {
                    super::$body::<fidelio_flash_store::sim::Rp2040Sim>();
                }
                #[test]
                fn nrf52840() {
                    super::$body::<fidelio_flash_store::sim::Nrf52840Sim>();
                }
            }
        )*
    };
}

pub type St<C> = FlashStore<BlockingFlash<C>>;

/// Sectors in front of the region: regions do not start at address 0 on the boards either.
pub const LEAD: usize = 2;

/// The region of `sectors` sectors, after [`LEAD`] others.
pub fn region(sectors: usize) -> Range<u32> {
    let start = (LEAD * 4096) as u32;
    start..start + (sectors * 4096) as u32
}

/// A blank chip big enough for [`region`]`(sectors)` (and one sector after it).
pub fn chip<C: Chip>(sectors: usize) -> C {
    C::blank(LEAD + sectors + 1)
}

/// Opens the store in `region(sectors)` of `chip`.
pub fn open<C: Chip>(chip: C, sectors: usize) -> St<C> {
    match FlashStore::open(BlockingFlash(chip), region(sectors)) {
        Ok(store) => store,
        Err(error) => panic!("open failed on {}: {error:?}", C::NAME),
    }
}

/// The chip as the next boot would find it.
pub fn image<C: Chip>(store: &St<C>) -> C {
    store.with_flash(|flash| flash.0.image()).unwrap()
}

/// Runs `f` on the store's chip.
pub fn on_chip<C: Chip, R>(store: &St<C>, f: impl FnOnce(&mut C) -> R) -> R {
    store.with_flash(|flash| f(&mut flash.0)).unwrap()
}

/// Reopens from the store's current image.
pub fn reopen<C: Chip>(store: &St<C>, sectors: usize) -> St<C> {
    open(image(store), sectors)
}

/// Everything in a store, checking that `scan_prefix` visits keys in strictly ascending order.
pub fn dump(store: &impl Store) -> BTreeMap<Vec<u8>, Vec<u8>> {
    scan(store, b"").into_iter().collect()
}

/// `scan_prefix(prefix)` as a list, checked for order and prefix.
pub fn scan(store: &impl Store, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    store
        .scan_prefix(prefix, &mut |key, value| {
            assert!(
                key.starts_with(prefix),
                "scan of {prefix:?} visited {key:?}"
            );
            if let Some((last, _)) = out.last() {
                assert!(
                    last.as_slice() < key,
                    "scan out of order: {last:?} then {key:?}"
                );
            }
            out.push((key.to_vec(), value.to_vec()));
            true
        })
        .unwrap();
    out
}

/// Applies a batch to a plain map (the reference semantics, via `MemoryStore`).
pub fn apply(
    model: &BTreeMap<Vec<u8>, Vec<u8>>,
    batch: &[Write<'_>],
) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut memory = MemoryStore::new();
    let existing: Vec<(Vec<u8>, Vec<u8>)> =
        model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let puts: Vec<Write<'_>> = existing
        .iter()
        .map(|(k, v)| Write::Put(k.as_slice(), v.as_slice()))
        .collect();
    memory.commit(&puts).unwrap();
    memory.commit(batch).unwrap();
    dump(&memory)
}

/// Checks that `store` holds exactly `model`: every key and value, in order, and a few
/// prefix scans and lookups.
pub fn assert_holds(store: &impl Store, model: &BTreeMap<Vec<u8>, Vec<u8>>, context: &str) {
    let found = dump(store);
    if &found != model {
        let missing: Vec<_> = model.keys().filter(|k| !found.contains_key(*k)).collect();
        let extra: Vec<_> = found.keys().filter(|k| !model.contains_key(*k)).collect();
        let differ: Vec<_> = model
            .iter()
            .filter(|(k, v)| found.get(*k).is_some_and(|f| f != *v))
            .map(|(k, _)| k)
            .collect();
        panic!(
            "{context}: store differs: missing {missing:?}, extra {extra:?}, values differ {differ:?}"
        );
    }
    for (key, value) in model.iter().take(8) {
        assert_eq!(
            store.get(key).unwrap().as_ref(),
            Some(value),
            "{context}: get {key:?}"
        );
    }
    assert_eq!(store.get(b"\xffabsent").unwrap(), None, "{context}");
}

/// SplitMix64.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// Owned writes, to build batches from generated data.
#[derive(Debug, Clone)]
pub enum Op {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    Clear,
}

pub fn writes(ops: &[Op]) -> Vec<Write<'_>> {
    ops.iter()
        .map(|op| match op {
            Op::Put(k, v) => Write::Put(k, v),
            Op::Delete(k) => Write::Delete(k),
            Op::Clear => Write::Clear,
        })
        .collect()
}

/// Keys shaped like the core's: meta keys, per-RP credential and account keys (long keys
/// sharing 16-byte heads), counters, and a few odd ones around the 16-byte boundary.
pub fn key(rng: &mut Rng) -> Vec<u8> {
    const RPS: [u8; 4] = [0x11, 0x22, 0x23, 0xEE];
    match rng.below(10) {
        0 => [
            b"m/".as_slice(),
            [
                b"counter".as_slice(),
                b"sequence",
                b"pin",
                b"large-blobs",
                b"resident-count",
            ][rng.below(5)],
        ]
        .concat(),
        1..=3 => {
            let mut k = b"c/".to_vec();
            k.extend(std::iter::repeat_n(RPS[rng.below(4)], 32));
            k.push(1);
            let n = 1 + rng.below(3);
            k.extend(rng.bytes(n));
            k
        }
        4..=5 => {
            let mut k = b"u/".to_vec();
            k.extend(std::iter::repeat_n(RPS[rng.below(4)], 32));
            k.extend(format!("user-{:04}", rng.below(12)).bytes());
            k
        }
        6 => {
            let mut k = b"n/".to_vec();
            k.extend(rng.bytes(16));
            k
        }
        7 => b"abcdefghijklmnop"
            .iter()
            .copied()
            .take(14 + rng.below(3))
            .collect(),
        8 => {
            let mut k = b"abcdefghijklmnop".to_vec();
            let n = rng.below(3);
            k.extend(rng.bytes(n));
            k
        }
        _ => {
            let n = rng.below(3);
            rng.bytes(n)
        }
    }
}

/// Values from empty to several blocks long.
pub fn value(rng: &mut Rng) -> Vec<u8> {
    let len = match rng.below(10) {
        0 => 0,
        1..=4 => 1 + rng.below(40),
        5..=7 => 100 + rng.below(400),
        8 => 500 + rng.below(600),
        _ => 1200 + rng.below(2000),
    };
    rng.bytes(len)
}

/// Everything a scan yields, with no ordering checks and `None` on error (for damaged stores).
pub fn dump_lenient(store: &impl Store) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    store
        .scan_prefix(b"", &mut |key, value| {
            out.push((key.to_vec(), value.to_vec()));
            true
        })
        .ok()?;
    Some(out)
}
