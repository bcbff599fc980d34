//! What the store refuses, and how: foreign data, a newer format, another geometry, damaged
//! records (errors, never panics, never overwritten), and a full region (`Full`, nothing lost).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "tests"
)]

mod common;

use std::collections::BTreeMap;

use authenticator_core::platform::{Store, StoreError, Write};
use common::{Chip, LEAD, Op, Rng, apply, assert_holds, chip, image, open, region, writes};
use fidelio_flash_store::sim::Nrf52840Sim;
use fidelio_flash_store::{BlockingFlash, FORMAT_VERSION, FlashStore, OpenError, RegionError};
use sequential_storage::cache::Cache;
use sequential_storage::map::{MapConfig, MapStorage};

const SECTORS: usize = 8;

fn region_bytes<C: Chip>(chip: &C) -> Vec<u8> {
    let r = region(SECTORS);
    chip.bytes()[r.start as usize..r.end as usize].to_vec()
}

fn try_open<C: Chip>(chip: C) -> (Result<(), OpenError<fidelio_flash_store::sim::SimError>>, C) {
    let mut flash = BlockingFlash(chip);
    let result = FlashStore::open(&mut flash, region(SECTORS)).map(|_| ());
    (result, flash.0)
}

/// A store with a little of everything.
fn populated<C: Chip>() -> (C, BTreeMap<Vec<u8>, Vec<u8>>) {
    let mut rng = Rng(5);
    let mut store = open(chip::<C>(SECTORS), SECTORS);
    let mut model = BTreeMap::new();
    for round in 0..12 {
        let ops: Vec<Op> = (0..3)
            .map(|i| {
                let len = [4, 60, 300, 900][rng.below(4)];
                Op::Put(
                    format!("k/{}", (round * 3 + i) % 9).into_bytes(),
                    rng.bytes(len),
                )
            })
            .collect();
        let batch = writes(&ops);
        store.commit(&batch).unwrap();
        model = apply(&model, &batch);
    }
    (image(&store), model)
}

fn foreign_data<C: Chip>() {
    // Random bytes where the store would be.
    let mut chip = chip::<C>(SECTORS);
    let r = region(SECTORS);
    let mut rng = Rng(1);
    for byte in &mut chip.bytes_mut()[r.start as usize..r.end as usize] {
        *byte = rng.next() as u8;
    }
    let before = region_bytes(&chip);
    let (result, chip) = try_open(chip);
    assert_eq!(result, Err(OpenError::NotAStore));
    assert_eq!(region_bytes(&chip), before, "refused data was changed");

    // A blank superblock in front of data: refused too.
    let mut chip = chip;
    chip.bytes_mut()[r.start as usize..r.start as usize + 4096].fill(0xFF);
    let before = region_bytes(&chip);
    let (result, chip) = try_open(chip);
    assert_eq!(result, Err(OpenError::NotAStore));
    assert_eq!(region_bytes(&chip), before);

    // `format` takes it anyway.
    let mut store = FlashStore::format(BlockingFlash(chip), region(SECTORS)).unwrap();
    store.commit(&[Write::Put(b"k", b"v")]).unwrap();
    let store = open(image(&store), SECTORS);
    assert_eq!(store.get(b"k").unwrap(), Some(b"v".to_vec()));
}

fn newer_format<C: Chip>() {
    let (mut chip, _) = populated::<C>();
    let at = region(SECTORS).start as usize + 8;
    chip.bytes_mut()[at..at + 4].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    let before = region_bytes(&chip);
    let (result, chip) = try_open(chip);
    assert_eq!(
        result,
        Err(OpenError::TooNew {
            found: FORMAT_VERSION + 1,
            supported: FORMAT_VERSION
        })
    );
    assert_eq!(region_bytes(&chip), before, "a newer store was changed");
}

fn other_geometry<C: Chip>() {
    let (populated_chip, _) = populated::<C>();
    // The same sectors opened as a region one sector longer.
    let r = region(SECTORS);
    let mut flash = BlockingFlash(populated_chip);
    let before = flash.0.bytes().to_vec();
    let result = FlashStore::open(&mut flash, r.start..r.end + 4096).map(|_| ());
    assert_eq!(result, Err(OpenError::OtherGeometry));
    assert_eq!(flash.0.bytes(), before.as_slice());
    // Regions that cannot work.
    let mut flash = BlockingFlash(chip::<C>(SECTORS));
    for (bad, why) in [
        (r.start + 1..r.end, RegionError::NotAligned),
        (r.start..r.start + 3 * 4096, RegionError::TooSmall),
        (r.start..r.end + 64 * 4096, RegionError::OutOfFlash),
    ] {
        assert_eq!(
            FlashStore::open(&mut flash, bad).map(|_| ()),
            Err(OpenError::Region(why))
        );
    }
}

/// Flipped bytes anywhere: opening and using the store returns errors or works, never
/// panics; what it refuses it does not overwrite.
fn random_damage<C: Chip>() {
    let (pristine, model) = populated::<C>();
    let r = region(SECTORS);
    let mut rng = Rng(77);
    let (mut refused, mut opened) = (0, 0);
    for trial in 0..150 {
        let mut chip = pristine.image();
        for _ in 0..1 + rng.below(4) {
            let at = r.start as usize + rng.below((r.end - r.start) as usize);
            chip.bytes_mut()[at] ^= 1 << rng.below(8);
        }
        let mut flash = BlockingFlash(chip);
        match FlashStore::open(&mut flash, region(SECTORS)) {
            Err(_) => refused += 1,
            Ok(mut store) => {
                opened += 1;
                // Reads and writes may fail; they must not panic.
                let _ = common::dump_lenient(&store);
                for key in model.keys().take(3) {
                    let _ = store.get(key);
                }
                let _ = store.commit(&[Write::Put(b"k/0", &[trial as u8; 40])]);
                let _ = store.commit(&[Write::Delete(b"k/1"), Write::Clear]);
            }
        }
    }
    println!(
        "{}: {refused} damaged images refused, {opened} opened",
        C::NAME
    );
}

/// Records that sequential-storage accepts (valid CRCs) but that this format never writes.
fn malformed_records<C: Chip>() {
    let r = region(SECTORS);
    let cases: [(u16, &[u8]); 6] = [
        (1, b"X"),                                              // unknown tag
        (1, &[b'H', 1, 0, 0, 0, 200, 0, 3, 0, b'k']),           // key longer than the record
        (0, &[b'M', 1, 0, 0, 0, 2, 0, 0, 0]),                   // epoch after the commit
        (0, &[b'M', 1]),                                        // short commit record
        (1, &[b'C', 1, 0, 0, 0, 0, 0, 0, b'x']),                // continuation owned by id 0
        (1, &[b'H', 1, 0, 0, 0, 1, 2, 1, 0, 9, 0, 8, 0, b'k']), // head naming missing blocks
    ];
    for (id, bytes) in cases {
        let (chip, _) = populated::<C>();
        let mut flash = BlockingFlash(chip);
        {
            let config = MapConfig::new(r.start + 4096..r.end);
            let mut map = MapStorage::<u16, _, _>::new(&mut flash, config, Cache::new_uncached());
            let mut buffer = [0u8; 64];
            authenticator_core::block_on(map.store_item(&mut buffer, &id, &bytes)).unwrap();
        }
        let before = flash.0.bytes().to_vec();
        let result = FlashStore::open(&mut flash, region(SECTORS)).map(|_| ());
        assert_eq!(result, Err(OpenError::Damaged), "{bytes:?}");
        assert_eq!(
            flash.0.bytes(),
            before.as_slice(),
            "{bytes:?}: damaged store changed"
        );
    }
}

/// Filling the region: `Full` before anything is lost, deletions still work when full, and
/// the store reopens with everything it acknowledged.
fn fill_up<C: Chip>() {
    const SMALL: usize = 6;
    let mut store = open(chip::<C>(SMALL), SMALL);
    let mut model = BTreeMap::new();
    let mut rng = Rng(3);
    let mut n = 0u32;
    loop {
        let value = rng.bytes(350);
        let key = format!("c/{n:05}").into_bytes();
        match store.commit(&[
            Write::Put(&key, &value),
            Write::Put(b"m/count", &n.to_be_bytes()),
        ]) {
            Ok(()) => {
                model.insert(key, value);
                model.insert(b"m/count".to_vec(), n.to_be_bytes().to_vec());
                n += 1;
            }
            Err(StoreError::Full) => break,
            Err(other) => panic!("{other:?} after {n}"),
        }
        assert!(n < 1000);
    }
    let usage = store.usage().unwrap();
    assert!(usage.used_bytes <= usage.limit_bytes, "{usage:?}");
    assert_holds(&store, &model, "full");
    // A big value is refused, a small update still fits, deletions fit.
    assert_eq!(
        store.commit(&[Write::Put(b"big", &[1; 3000])]),
        Err(StoreError::Full)
    );
    store.commit(&[Write::Put(b"m/count", b"1234")]).unwrap();
    model.insert(b"m/count".to_vec(), b"1234".to_vec());
    for i in 0..n / 2 {
        let key = format!("c/{i:05}").into_bytes();
        store.commit(&[Write::Delete(&key)]).unwrap();
        model.remove(&key);
    }
    assert_holds(&store, &model, "after deletions");
    let mut store = open(image(&store), SMALL);
    assert_holds(&store, &model, "reopened");
    // The space came back.
    store.commit(&[Write::Put(b"big", &[1; 3000])]).unwrap();
    assert_eq!(common::on_chip(&store, |c| c.violations()), 0);
    println!(
        "{}: {n} records of 350 bytes filled a {SMALL}-sector region",
        C::NAME
    );
}

/// A torn superblock in front of data is not ours to repair.
#[test]
fn torn_superblock_over_data_is_refused() {
    let (mut chip, _) = populated::<Nrf52840Sim>();
    let at = LEAD * 4096;
    chip.bytes_mut()[at + 20..at + 32].fill(0xFF);
    let (result, _) = try_open(chip);
    assert_eq!(result, Err(OpenError::NotAStore));
}

on_both_chips! {
    refuses_foreign_data => foreign_data;
    refuses_newer_format => newer_format;
    refuses_other_geometry => other_geometry;
    survives_random_damage => random_damage;
    refuses_malformed_records => malformed_records;
    fills_up_cleanly => fill_up;
}
