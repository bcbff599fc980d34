//! `RedbStore` costs with 10 and with 100,000 stored credentials: they should barely differ.
//!
//! Keys are shaped like the core's credential keys, `c/` + a 32-byte RP ID hash + a 64-byte
//! credential ID, with 250-byte values. Every RP holds one credential, so `scan_prefix` over
//! `c/` + hash visits one entry. `commit` is a 2-put batch (a new credential and a counter),
//! fsync included.
//!
//! ```text
//! cargo bench -p fidelio-host --bench store -- --warm-up-time 1 --measurement-time 3
//! ```
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "bench setup: a failure should stop the bench"
)]

use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use authenticator_core::platform::{Store, Write};
use criterion::{Criterion, criterion_group, criterion_main};
use fidelio_host::RedbStore;

const HASH_LEN: usize = 32;
const ID_LEN: usize = 64;
const VALUE_LEN: usize = 250;
const FILL_BATCH: usize = 10_000;

/// SplitMix64: stands in for hashes and random credential IDs.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(len);
        out
    }
}

/// `c/` + RP ID hash: the prefix an assertion scans.
fn rp_prefix(rng: &mut SplitMix) -> Vec<u8> {
    let mut prefix = b"c/".to_vec();
    prefix.extend(rng.bytes(HASH_LEN));
    prefix
}

fn credential_key(prefix: &[u8], rng: &mut SplitMix) -> Vec<u8> {
    let mut key = prefix.to_vec();
    key.extend(rng.bytes(ID_LEN));
    key
}

/// An RP prefix and the key of its one credential.
type Sample = (Vec<u8>, Vec<u8>);

/// Opens a new store at `path` holding `count` credentials; returns it with the RP prefixes
/// and keys of a sample of them (spread over the key space) for lookups.
fn filled_store(path: &Path, count: usize) -> (RedbStore, Vec<Sample>) {
    let mut store = RedbStore::open(path).unwrap();
    let mut rng = SplitMix(u64::try_from(count).unwrap());
    let value = rng.bytes(VALUE_LEN);
    let mut sample = Vec::new();
    let mut remaining = count;
    while remaining > 0 {
        let n = remaining.min(FILL_BATCH);
        let entries: Vec<Sample> = (0..n)
            .map(|_| {
                let prefix = rp_prefix(&mut rng);
                let key = credential_key(&prefix, &mut rng);
                (prefix, key)
            })
            .collect();
        let batch: Vec<Write<'_>> = entries
            .iter()
            .map(|(_, key)| Write::Put(key, &value))
            .collect();
        store.commit(&batch).unwrap();
        sample.extend(entries.into_iter().step_by((n / 100).max(1)));
        remaining -= n;
    }
    (store, sample)
}

fn bench_store(c: &mut Criterion) {
    for count in [10usize, 100_000] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bench.redb");
        let started = Instant::now();
        let (store, sample) = filled_store(&path, count);
        println!("store/{count}: filled in {:?}", started.elapsed());
        drop(store);
        let started = Instant::now();
        let mut store = RedbStore::open(&path).unwrap();
        println!(
            "store/{count}: reopened (with redb's integrity check) in {:?}, file {} KiB",
            started.elapsed(),
            std::fs::metadata(&path).unwrap().len() / 1024
        );

        let mut group = c.benchmark_group(format!("store/{count}"));
        let mut samples = sample.iter().cycle();
        group.bench_function("get", |b| {
            b.iter(|| {
                let (_, key) = samples.next().expect("the sample is not empty");
                black_box(store.get(black_box(key)).unwrap()).expect("stored")
            });
        });
        group.bench_function("scan_prefix (1 entry)", |b| {
            b.iter(|| {
                let (prefix, _) = samples.next().expect("the sample is not empty");
                let mut visited = 0u32;
                store
                    .scan_prefix(black_box(prefix), &mut |key, value| {
                        black_box((key, value));
                        visited += 1;
                        true
                    })
                    .unwrap();
                assert_eq!(visited, 1);
            });
        });
        let mut rng = SplitMix(0xc0ff_ee00);
        let value = rng.bytes(VALUE_LEN);
        let mut counter = 0u64;
        group.bench_function("commit (2 puts, fsync)", |b| {
            b.iter(|| {
                let prefix = rp_prefix(&mut rng);
                let key = credential_key(&prefix, &mut rng);
                counter += 1;
                store
                    .commit(&[
                        Write::Put(&key, &value),
                        Write::Put(b"m/counter", &counter.to_be_bytes()),
                    ])
                    .unwrap();
            });
        });
        group.finish();
    }
}

criterion_group!(benches, bench_store);
criterion_main!(benches);
