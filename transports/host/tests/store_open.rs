//! Opening: creation, the file lock, and refusing files we must not touch.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers outside #[test] functions: a failure is a test failure"
)]

use std::path::Path;
use std::process::Command;

use authenticator_core::platform::{Store, Write};
use fidelio_host::{OpenError, RedbStore};

const TRY_OPEN_ENV: &str = "FIDELIO_TEST_TRY_OPEN";

fn open_err(path: &Path) -> OpenError {
    match RedbStore::open(path) {
        Ok(_) => panic!("{} opened but should have been refused", path.display()),
        Err(err) => err,
    }
}

#[test]
fn creates_a_missing_file_and_keeps_data_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.redb");
    assert!(!path.exists());
    let mut store = RedbStore::open(&path).unwrap();
    assert!(path.exists());
    assert_eq!(store.path(), path);
    store.commit(&[Write::Put(b"k", b"v")]).unwrap();
    drop(store);
    let store = RedbStore::open(&path).unwrap();
    assert_eq!(store.get(b"k").unwrap(), Some(b"v".to_vec()));
}

#[test]
fn initialises_an_empty_existing_file() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let mut store = RedbStore::open(file.path()).unwrap();
    store.commit(&[Write::Put(b"k", b"v")]).unwrap();
    drop(store);
    let store = RedbStore::open(file.path()).unwrap();
    assert_eq!(store.get(b"k").unwrap(), Some(b"v".to_vec()));
}

#[test]
fn a_second_open_in_the_same_process_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let first = RedbStore::open(&path).unwrap();
    let err = open_err(&path);
    assert!(matches!(err, OpenError::InUse { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("already in use by another fidelio process")
            && message.contains(&path.display().to_string()),
        "{message}"
    );
    drop(first);
    RedbStore::open(&path).unwrap();
}

/// Not a test on its own: the child half of `an_open_in_another_process_is_refused`.
#[test]
fn try_open_child() {
    let Some(path) = std::env::var_os(TRY_OPEN_ENV) else {
        return;
    };
    match RedbStore::open(&path) {
        // The leading newline ends the harness's unterminated "test try_open_child ... ".
        Ok(_) => println!("\nchild-open: ok"),
        Err(err) => println!("\nchild-open: {err}"),
    }
}

#[test]
fn an_open_in_another_process_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let run_child = || {
        let output = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "try_open_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(TRY_OPEN_ENV, &path)
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        let stdout = String::from_utf8(output.stdout).unwrap();
        stdout
            .lines()
            .find_map(|line| line.strip_prefix("child-open: "))
            .unwrap_or_else(|| panic!("no result from the child: {stdout}"))
            .to_owned()
    };

    let store = RedbStore::open(&path).unwrap();
    let refused = run_child();
    assert!(
        refused.contains("already in use by another fidelio process")
            && refused.contains(&path.display().to_string()),
        "{refused}"
    );
    drop(store);
    assert_eq!(run_child(), "ok");
}

/// Writes `bytes` to a new file, checks that opening it is refused as `NotAStore`, and that
/// the file is byte-for-byte unchanged afterwards.
fn assert_refused_untouched(bytes: &[u8]) -> OpenError {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    std::fs::write(&path, bytes).unwrap();
    let err = open_err(&path);
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bytes,
        "the file was modified"
    );
    err
}

#[test]
fn garbage_files_are_refused_and_left_untouched() {
    // Pseudo-random bytes, a short text file, a page of zeros.
    let mut x: u32 = 0x1234_5678;
    let noise: Vec<u8> = (0..20_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x.to_le_bytes()[0]
        })
        .collect();
    for bytes in [&noise[..], b"hello, world\n", &[0u8; 4096]] {
        let err = assert_refused_untouched(bytes);
        assert!(matches!(err, OpenError::NotAStore { .. }), "{err:?}");
        assert!(
            err.to_string().contains("not a usable fidelio store"),
            "{err}"
        );
    }
}

/// A store file with a value page damaged (one byte flipped inside a stored value) is caught by
/// redb's checksums on open and refused, unmodified.
#[test]
fn a_damaged_store_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let needle = b"this value will be damaged on disk, found by its bytes".repeat(4);
    {
        let mut store = RedbStore::open(&path).unwrap();
        for i in 0u32..200 {
            store
                .commit(&[Write::Put(&i.to_be_bytes(), &[0x5a; 200])])
                .unwrap();
        }
        store.commit(&[Write::Put(b"needle", &needle)]).unwrap();
    }
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes
        .windows(needle.len())
        .position(|window| window == needle)
        .expect("the value is stored verbatim");
    bytes[at + 10] ^= 0x01;
    let err = assert_refused_untouched(&bytes);
    assert!(matches!(err, OpenError::NotAStore { .. }), "{err:?}");
}

const META: redb::TableDefinition<'static, &str, u64> = redb::TableDefinition::new("meta");
const DATA: redb::TableDefinition<'static, &[u8], &[u8]> = redb::TableDefinition::new("data");

/// A redb file as a later fidelio would leave it, with format version `version`.
fn write_redb_file(path: &Path, version: Option<u64>) {
    let db = redb::Database::create(path).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut data = txn.open_table(DATA).unwrap();
        data.insert(&b"c/key"[..], &b"value"[..]).unwrap();
        if let Some(version) = version {
            txn.open_table(META)
                .unwrap()
                .insert("format_version", version)
                .unwrap();
        }
    }
    txn.commit().unwrap();
}

#[test]
fn a_newer_format_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    write_redb_file(&path, Some(99));
    let before = std::fs::read(&path).unwrap();
    let err = open_err(&path);
    assert!(
        matches!(
            err,
            OpenError::TooNew {
                found: 99,
                supported: 1,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("format version 99"), "{err}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "the file was modified"
    );
}

#[test]
fn a_foreign_redb_database_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    write_redb_file(&path, None);
    let before = std::fs::read(&path).unwrap();
    let err = open_err(&path);
    assert!(matches!(err, OpenError::NotAStore { .. }), "{err:?}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "the file was modified"
    );
}

#[test]
fn the_current_format_written_by_hand_opens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    write_redb_file(&path, Some(fidelio_host::store::FORMAT_VERSION));
    let store = RedbStore::open(&path).unwrap();
    assert_eq!(store.get(b"c/key").unwrap(), Some(b"value".to_vec()));
}

/// One damaged byte, anywhere in the file: the open either refuses the file and leaves it as
/// it was, or succeeds with every value intact (the byte was in unused space). redb panics on
/// some damage it does not expect; the open must turn that into a refusal too.
#[test]
fn single_byte_damage_is_refused_untouched_or_harmless() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let value = [0x5a; 200];
    {
        let mut store = RedbStore::open(&path).unwrap();
        for i in 0u32..300 {
            store
                .commit(&[Write::Put(&i.to_be_bytes(), &value)])
                .unwrap();
        }
    }
    let good = std::fs::read(&path).unwrap();
    // Every header byte's neighbourhood, then the start and the middle of every 4 KiB page.
    let offsets = (0..512).step_by(7).chain((4096..good.len()).step_by(2048));
    let (mut refused, mut harmless) = (0, 0);
    for offset in offsets {
        let mut bad = good.clone();
        bad[offset] ^= 0xff;
        std::fs::write(&path, &bad).unwrap();
        match RedbStore::open(&path) {
            Err(err) => {
                assert!(
                    matches!(err, OpenError::NotAStore { .. }),
                    "offset {offset}: {err:?}"
                );
                assert_eq!(
                    std::fs::read(&path).unwrap(),
                    bad,
                    "offset {offset}: refused but modified"
                );
                refused += 1;
            }
            Ok(store) => {
                let mut count = 0u32;
                store
                    .scan_prefix(b"", &mut |key, stored| {
                        assert_eq!(key, count.to_be_bytes(), "offset {offset}");
                        assert_eq!(stored, value, "offset {offset}");
                        count += 1;
                        true
                    })
                    .unwrap();
                assert_eq!(count, 300, "offset {offset}");
                harmless += 1;
            }
        }
    }
    assert!(
        refused > 0 && harmless > 0,
        "{refused} refused, {harmless} harmless"
    );
}
