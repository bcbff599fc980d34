//! Crash consistency: a writer process committing credential-like batches is killed with
//! SIGKILL at random moments; after each kill the store must hold exactly what was committed.
//!
//! The writer is this test binary re-executed with `CRASH_WRITER_ENV` set (see
//! `crash_writer_child`). It prints `committed <n>` only after `commit` returned `Ok`, so every
//! number the parent reads is a batch the store promised to keep. SIGKILL tests the process
//! dying at any instruction, not power loss (the kernel still writes back its page cache).
//!
//! The kill delays come from a seeded generator: set `FIDELIO_CRASH_SEED` to replay a run.
#![cfg(unix)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers outside #[test] functions: a failure is a test failure"
)]

use std::io::{Read, Write as _};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use authenticator_core::platform::{Store, Write};
use fidelio_host::RedbStore;

const CRASH_WRITER_ENV: &str = "FIDELIO_TEST_CRASH_WRITER";
const SEED_ENV: &str = "FIDELIO_CRASH_SEED";
const ITERATIONS: u32 = 60;
const COUNTER_KEY: &[u8] = b"meta/counter";
const CREDENTIAL_PREFIX: &[u8] = b"c/";

fn credential_key(n: u64) -> Vec<u8> {
    let mut key = CREDENTIAL_PREFIX.to_vec();
    key.extend_from_slice(&n.to_be_bytes());
    key
}

fn credential_value(n: u64) -> Vec<u8> {
    let mut value = format!("credential {n}:").into_bytes();
    value.resize(200, u8::try_from(n % 251).unwrap());
    value
}

fn read_counter(store: &RedbStore) -> u64 {
    match store.get(COUNTER_KEY).unwrap() {
        None => 0,
        Some(bytes) => u64::from_be_bytes(bytes.try_into().unwrap()),
    }
}

/// Not a test on its own: the writer half of `killed_writer_leaves_exactly_what_it_committed`.
#[test]
fn crash_writer_child() {
    let Some(path) = std::env::var_os(CRASH_WRITER_ENV) else {
        return;
    };
    let mut store = RedbStore::open(&path).unwrap();
    let mut n = read_counter(&store);
    let mut stdout = std::io::stdout().lock();
    // End the harness's unterminated "test crash_writer_child ... " so reports start lines.
    writeln!(stdout).unwrap();
    loop {
        n += 1;
        let key = credential_key(n);
        let value = credential_value(n);
        store
            .commit(&[
                Write::Put(&key, &value),
                Write::Put(COUNTER_KEY, &n.to_be_bytes()),
            ])
            .unwrap();
        writeln!(stdout, "committed {n}").unwrap();
        stdout.flush().unwrap();
    }
}

/// SplitMix64, for reproducible kill delays.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Checks the store after a kill and returns its counter.
///
/// `reported` is the highest batch the writer announced (or the previous counter if it
/// announced none): the counter must be it, or one more if the kill landed after a commit
/// but before its announcement. Credential keys must be exactly 1..=counter, with their
/// values: a batch is all there or not at all.
fn verify(path: &Path, reported: u64) -> u64 {
    let store = RedbStore::open(path).unwrap();
    let counter = read_counter(&store);
    assert!(
        counter == reported || counter == reported + 1,
        "counter {counter}, but {reported} was the last batch reported committed"
    );
    let mut expected = 1u64;
    store
        .scan_prefix(CREDENTIAL_PREFIX, &mut |key, value| {
            assert_eq!(key, credential_key(expected), "missing or extra credential");
            assert_eq!(
                value,
                credential_value(expected),
                "wrong value for {expected}"
            );
            expected += 1;
            true
        })
        .unwrap();
    assert_eq!(
        expected - 1,
        counter,
        "credentials stored do not match the counter"
    );
    counter
}

#[test]
fn killed_writer_leaves_exactly_what_it_committed() {
    let seed = std::env::var(SEED_ENV)
        .ok()
        .map(|seed| seed.parse::<u64>().unwrap())
        .unwrap_or(0xf1de_110c_2a54);
    println!("crash test seed {seed} (set {SEED_ENV} to replay)");
    let mut rng = SplitMix(seed);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let exe = std::env::current_exe().unwrap();
    let started = Instant::now();

    let mut counter = 0u64;
    let mut in_flight_kills = 0u32;
    let mut idle_kills = 0u32;
    for iteration in 0..ITERATIONS {
        let delay = Duration::from_millis(5 + rng.next() % 146);
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash_writer_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CRASH_WRITER_ENV, &path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        child.kill().unwrap();
        let status = child.wait().unwrap();
        // The pipes keep what the child wrote (a full pipe merely stalls the child).
        let mut stdout = String::new();
        let mut stderr = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut stdout)
            .unwrap();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert_eq!(
            status.signal(),
            Some(9),
            "iteration {iteration}: the writer stopped by itself: {status}\n{stderr}"
        );

        // Only complete lines: the last one may have been cut by the kill.
        let mut reported = counter;
        for line in stdout.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
            if let Some(n) = line.trim_end().strip_prefix("committed ") {
                let n: u64 = n.parse().unwrap();
                assert_eq!(
                    n,
                    reported + 1,
                    "iteration {iteration}: batches out of order"
                );
                reported = n;
            }
        }
        let reported_now = reported - counter;
        let new_counter = verify(&path, reported);
        if new_counter > reported {
            in_flight_kills += 1;
        }
        if reported_now == 0 {
            idle_kills += 1;
        }
        counter = new_counter;
    }

    let elapsed = started.elapsed();
    println!(
        "{ITERATIONS} kills in {elapsed:?}: {counter} batches durable, {in_flight_kills} kills \
         between a commit and its report, {idle_kills} before any report"
    );
    assert!(counter > 0, "the writer never committed anything");
    assert!(
        elapsed < Duration::from_secs(50),
        "the crash test took {elapsed:?}"
    );
}
