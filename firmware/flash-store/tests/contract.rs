//! The `Store` contract: on a long random sequence of batches, the flash store behaves exactly
//! like `MemoryStore` (the reference), after every commit and after every reopen.
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

use authenticator_core::platform::{Store, Write};
use common::{Chip, Op, Rng, apply, assert_holds, chip, key, open, reopen, scan, value, writes};

const SECTORS: usize = 40;

fn random_batch(rng: &mut Rng, model: &BTreeMap<Vec<u8>, Vec<u8>>) -> Vec<Op> {
    let size: usize = model.iter().map(|(k, v)| k.len() + v.len()).sum();
    let mut ops = Vec::new();
    for _ in 0..1 + rng.below(6) {
        let roll = rng.below(100);
        if roll < 2 {
            ops.push(Op::Clear);
        } else if roll < 30 || size > 60_000 {
            // Mostly keys that exist.
            let existing: Vec<&Vec<u8>> = model.keys().collect();
            let k = if !existing.is_empty() && rng.chance(80) {
                existing[rng.below(existing.len())].clone()
            } else {
                key(rng)
            };
            ops.push(Op::Delete(k));
        } else {
            ops.push(Op::Put(key(rng), value(rng)));
        }
    }
    ops
}

fn prefixes_of(rng: &mut Rng, model: &BTreeMap<Vec<u8>, Vec<u8>>) -> Vec<Vec<u8>> {
    let mut prefixes: Vec<Vec<u8>> = vec![
        b"c/".to_vec(),
        b"u/".to_vec(),
        b"m/".to_vec(),
        b"abcdefghijklmnop".to_vec(),
        b"abcdefghijklmno".to_vec(),
    ];
    for rp in [0x11u8, 0x22, 0x23, 0xEE] {
        let mut p = b"c/".to_vec();
        p.extend(std::iter::repeat_n(rp, 32));
        prefixes.push(p.clone());
        p.push(1);
        prefixes.push(p);
    }
    let keys: Vec<&Vec<u8>> = model.keys().collect();
    for _ in 0..3 {
        if let Some(k) = keys.get(rng.below(keys.len().max(1))) {
            prefixes.push(k[..rng.below(k.len() + 1)].to_vec());
        }
    }
    prefixes
}

fn contract<C: Chip>() {
    let mut rng = Rng(0xC0_47_2A_C7 ^ C::NAME.len() as u64);
    let mut store = open(chip::<C>(SECTORS), SECTORS);
    let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let mut memory = authenticator_core::MemoryStore::new();
    for round in 0..300 {
        let ops = random_batch(&mut rng, &model);
        let batch = writes(&ops);
        memory.commit(&batch).unwrap();
        model = apply(&model, &batch);
        store
            .commit(&batch)
            .unwrap_or_else(|e| panic!("round {round}: commit failed: {e:?}"));
        let context = format!("{} round {round}", C::NAME);
        assert_holds(&store, &model, &context);
        for prefix in prefixes_of(&mut rng, &model) {
            assert_eq!(
                scan(&store, &prefix),
                scan(&memory, &prefix),
                "{context}: scan {prefix:?}"
            );
        }
        // Early stop, as the core uses it.
        let mut first = None;
        store
            .scan_prefix(b"c/", &mut |k, _| {
                first = Some(k.to_vec());
                false
            })
            .unwrap();
        assert_eq!(first, scan(&memory, b"c/").first().map(|(k, _)| k.clone()));
        if round % 7 == 6 {
            store = reopen(&store, SECTORS);
            assert_holds(&store, &model, &format!("{context} after reopen"));
        }
        assert_eq!(common::on_chip(&store, |c| c.violations()), 0, "{context}");
    }
    let usage = store.usage().unwrap();
    println!(
        "{}: {} keys, {} of {} bytes, {} block ids",
        C::NAME,
        usage.keys,
        usage.used_bytes,
        usage.limit_bytes,
        usage.block_ids
    );
}

/// Lookups never confuse keys that share their first 16 bytes, length and hash bucket.
fn long_keys_sharing_heads<C: Chip>() {
    let mut store = open(chip::<C>(8), 8);
    let mut model = BTreeMap::new();
    let mut batch_ops = Vec::new();
    for i in 0..40u8 {
        let mut k = b"c/RPRPRPRPRPRPRP".to_vec();
        k.push(40 - i);
        k.extend(vec![i; usize::from(i % 3)]);
        batch_ops.push(Op::Put(k, vec![i; 3]));
    }
    // A 16-byte key that is a prefix of all of them sorts first.
    batch_ops.push(Op::Put(b"c/RPRPRPRPRPRPRP".to_vec(), b"short".to_vec()));
    let batch = writes(&batch_ops);
    model = apply(&model, &batch);
    store.commit(&batch).unwrap();
    assert_holds(&store, &model, "shared heads");
    let all = scan(&store, b"c/RPRPRPRPRPRPRP");
    assert_eq!(all.len(), 41);
    assert_eq!(all[0].0, b"c/RPRPRPRPRPRPRP");
    let store = reopen(&store, 8);
    assert_holds(&store, &model, "shared heads after reopen");
    assert_eq!(
        store.get(b"c/RPRPRPRPRPRPRP\x01").unwrap(),
        Some(vec![39; 3])
    );
    assert_eq!(store.get(b"c/RPRPRPRPRPRPRP\x01\x02").unwrap(), None);
}

/// A visit callback may read the store.
fn nested_reads<C: Chip>() {
    let mut store = open(chip::<C>(6), 6);
    store
        .commit(&[
            Write::Put(b"a/1", b"x"),
            Write::Put(b"a/2", b"y"),
            Write::Put(b"b", b"z"),
        ])
        .unwrap();
    let mut seen = Vec::new();
    store
        .scan_prefix(b"a/", &mut |k, _| {
            seen.push((k.to_vec(), store.get(b"b").unwrap()));
            true
        })
        .unwrap();
    assert_eq!(seen.len(), 2);
    assert!(
        seen.iter()
            .all(|(_, b)| b.as_deref() == Some(b"z".as_slice()))
    );
}

on_both_chips! {
    random_batches_match_memory_store => contract;
    shared_heads => long_keys_sharing_heads;
    callbacks_may_read => nested_reads;
}
