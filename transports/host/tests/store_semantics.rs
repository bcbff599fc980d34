//! `RedbStore` behaves like the reference `MemoryStore`, and keeps what it committed across a
//! reopen.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers outside #[test] functions: a failure is a test failure"
)]

use authenticator_core::MemoryStore;
use authenticator_core::platform::{Store, StoreError, Write};
use fidelio_host::RedbStore;

type Entries = Vec<(Vec<u8>, Vec<u8>)>;

fn scan(store: &impl Store, prefix: &[u8]) -> Result<Entries, StoreError> {
    let mut entries = Vec::new();
    store.scan_prefix(prefix, &mut |key, value| {
        entries.push((key.to_vec(), value.to_vec()));
        true
    })?;
    Ok(entries)
}

fn new_store() -> (tempfile::TempDir, std::path::PathBuf, RedbStore) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let store = RedbStore::open(&path).unwrap();
    (dir, path, store)
}

#[test]
fn get_put_delete() {
    let (_dir, _path, mut store) = new_store();
    assert_eq!(store.get(b"a").unwrap(), None);
    store
        .commit(&[Write::Put(b"a", b"1"), Write::Put(b"b", b"2")])
        .unwrap();
    assert_eq!(store.get(b"a").unwrap(), Some(b"1".to_vec()));
    assert_eq!(store.get(b"b").unwrap(), Some(b"2".to_vec()));
    store
        .commit(&[
            Write::Put(b"a", b"one"),
            Write::Delete(b"b"),
            Write::Delete(b"zz"),
        ])
        .unwrap();
    assert_eq!(store.get(b"a").unwrap(), Some(b"one".to_vec()));
    assert_eq!(store.get(b"b").unwrap(), None);
    // An empty value is a value, not an absence.
    store.commit(&[Write::Put(b"e", b"")]).unwrap();
    assert_eq!(store.get(b"e").unwrap(), Some(Vec::new()));
    // An empty batch is fine.
    store.commit(&[]).unwrap();
}

#[test]
fn later_writes_in_a_batch_win() {
    let (_dir, _path, mut store) = new_store();
    store
        .commit(&[
            Write::Put(b"k", b"1"),
            Write::Delete(b"k"),
            Write::Put(b"k", b"2"),
            Write::Put(b"gone", b"x"),
            Write::Delete(b"gone"),
        ])
        .unwrap();
    assert_eq!(store.get(b"k").unwrap(), Some(b"2".to_vec()));
    assert_eq!(store.get(b"gone").unwrap(), None);
}

#[test]
fn scan_prefix_visits_only_the_prefix_in_order_and_stops_when_asked() {
    let (_dir, _path, mut store) = new_store();
    store
        .commit(&[
            Write::Put(b"c0", b"after"),
            Write::Put(b"c/\x02", b"2"),
            Write::Put(b"b/\xff", b"before"),
            Write::Put(b"c/", b"bare prefix"),
            Write::Put(b"c/\x01", b"1"),
            Write::Put(b"c/\x01\x00", b"1.0"),
            Write::Put(b"c", b"shorter"),
        ])
        .unwrap();
    assert_eq!(
        scan(&store, b"c/").unwrap(),
        vec![
            (b"c/".to_vec(), b"bare prefix".to_vec()),
            (b"c/\x01".to_vec(), b"1".to_vec()),
            (b"c/\x01\x00".to_vec(), b"1.0".to_vec()),
            (b"c/\x02".to_vec(), b"2".to_vec()),
        ]
    );
    assert_eq!(scan(&store, b"x").unwrap(), Vec::new());
    assert_eq!(scan(&store, b"").unwrap().len(), 7);

    let mut seen = Vec::new();
    store
        .scan_prefix(b"c/", &mut |key, _| {
            seen.push(key.to_vec());
            seen.len() < 2
        })
        .unwrap();
    assert_eq!(seen, vec![b"c/".to_vec(), b"c/\x01".to_vec()]);
}

#[test]
fn clear_empties_the_store_and_later_writes_apply_after_it() {
    let (_dir, path, mut store) = new_store();
    let keys: Vec<Vec<u8>> = (0u32..500).map(|i| i.to_be_bytes().to_vec()).collect();
    let batch: Vec<Write<'_>> = keys.iter().map(|k| Write::Put(k, b"v")).collect();
    store.commit(&batch).unwrap();
    store
        .commit(&[
            Write::Put(b"before", b"x"),
            Write::Clear,
            Write::Put(b"after", b"y"),
        ])
        .unwrap();
    assert_eq!(
        scan(&store, b"").unwrap(),
        vec![(b"after".to_vec(), b"y".to_vec())]
    );
    drop(store);
    let store = RedbStore::open(&path).unwrap();
    assert_eq!(
        scan(&store, b"").unwrap(),
        vec![(b"after".to_vec(), b"y".to_vec())]
    );
}

/// SplitMix64: a tiny deterministic generator for the differential test.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> usize {
        usize::try_from(self.next() % n).unwrap()
    }
}

/// Random batches over a small key space, applied to both stores; after each batch, and after
/// reopening, the contents agree.
#[test]
fn matches_memory_store_on_random_batches_and_after_reopen() {
    let (_dir, path, mut store) = new_store();
    let mut reference = MemoryStore::new();
    let mut rng = SplitMix(0x0f1d_e110);
    let prefixes: [&[u8]; 4] = [b"c/", b"c/\x01", b"m/", b"x"];

    for round in 0..300 {
        // Build owned keys and values first, then the borrowed batch.
        let mut owned: Vec<(u8, Vec<u8>, Vec<u8>)> = Vec::new();
        for _ in 0..=rng.below(6) {
            let op = match rng.below(40) {
                0 => 2, // Clear, rarely
                n if n < 12 => 1,
                _ => 0,
            };
            let prefix = prefixes[rng.below(3)];
            let mut key = prefix.to_vec();
            key.extend((0..rng.below(3)).map(|_| u8::try_from(rng.below(4)).unwrap()));
            let value = (0..rng.below(300))
                .map(|_| u8::try_from(rng.below(256)).unwrap())
                .collect();
            owned.push((op, key, value));
        }
        let batch: Vec<Write<'_>> = owned
            .iter()
            .map(|(op, key, value)| match op {
                0 => Write::Put(key, value),
                1 => Write::Delete(key),
                _ => Write::Clear,
            })
            .collect();
        assert_eq!(
            store.commit(&batch),
            reference.commit(&batch),
            "round {round}"
        );
        for prefix in prefixes.iter().chain([&&b""[..]]) {
            assert_eq!(
                scan(&store, prefix).unwrap(),
                scan(&reference, prefix).unwrap(),
                "round {round}, prefix {prefix:?}"
            );
        }
        for (_, key, _) in &owned {
            assert_eq!(store.get(key).unwrap(), reference.get(key).unwrap());
        }
    }

    drop(store);
    let store = RedbStore::open(&path).unwrap();
    assert_eq!(scan(&store, b"").unwrap(), scan(&reference, b"").unwrap());
    assert!(
        !reference.is_empty(),
        "the test should end with something stored"
    );
}
