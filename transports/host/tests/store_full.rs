//! Out of space: `commit` reports `StoreError::Full`, writes nothing of the failed batch, and
//! the store works again once space is freed.
//!
//! Needs a small filesystem, so it is ignored by default. On Linux, as root:
//!
//! ```text
//! mkdir -p /tmp/fidelio-small && mount -t tmpfs -o size=4m tmpfs /tmp/fidelio-small
//! FIDELIO_TEST_SMALL_FS=/tmp/fidelio-small cargo test -p fidelio-host --test store_full -- --ignored
//! ```
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers outside #[test] functions: a failure is a test failure"
)]

use std::path::PathBuf;

use authenticator_core::platform::{Store, StoreError, Write};
use fidelio_host::RedbStore;

fn key(i: u32) -> Vec<u8> {
    let mut key = b"c/".to_vec();
    key.extend_from_slice(&i.to_be_bytes());
    key
}

#[test]
#[ignore = "needs a small filesystem: set FIDELIO_TEST_SMALL_FS to a directory on one"]
fn full_disk_reports_full_and_recovers_when_space_is_freed() {
    let dir = PathBuf::from(std::env::var_os("FIDELIO_TEST_SMALL_FS").unwrap());
    let path = dir.join("full.redb");
    let ballast = dir.join("ballast");
    let _ = std::fs::remove_file(&path);
    std::fs::write(&ballast, vec![0u8; 1 << 20]).unwrap();

    let mut store = RedbStore::open(&path).unwrap();
    let value = vec![0xa5; 16 * 1024];
    let mut stored = 0u32;
    let error = loop {
        let next = stored + 1;
        match store.commit(&[
            Write::Put(&key(next), &value),
            Write::Put(b"count", &next.to_be_bytes()),
        ]) {
            Ok(()) => stored = next,
            Err(err) => break err,
        }
        assert!(stored < 100_000, "the filesystem never filled up");
    };
    assert_eq!(error, StoreError::Full);
    assert!(stored > 0);

    // Free space; the store must work again without being reopened by the caller. (Reads may
    // fail until the next commit has reopened redb after its I/O failure.)
    std::fs::remove_file(&ballast).unwrap();
    store
        .commit(&[Write::Put(b"after", b"space was freed")])
        .unwrap();
    assert_eq!(
        store.get(&key(stored + 1)).unwrap(),
        None,
        "half a batch was kept"
    );
    assert_eq!(
        store.get(b"count").unwrap(),
        Some(stored.to_be_bytes().to_vec())
    );
    drop(store);

    let store = RedbStore::open(&path).unwrap();
    let mut count = 0u32;
    store
        .scan_prefix(b"c/", &mut |_, v| {
            assert_eq!(v, value);
            count += 1;
            true
        })
        .unwrap();
    assert_eq!(count, stored);
    assert_eq!(
        store.get(b"after").unwrap(),
        Some(b"space was freed".to_vec())
    );
    drop(store);
    std::fs::remove_file(&path).unwrap();
}
