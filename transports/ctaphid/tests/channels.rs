//! The channel table: allocation, bounds and least-recently-used eviction.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers outside #[test] functions: a failure is a test failure"
)]

mod common;

use common::*;
use fidelio_ctaphid::{BROADCAST_CHANNEL, Config, CtapHid, ErrorCode, command};

fn small_device(max_channels: usize) -> CtapHid {
    device_with(Config {
        max_channels,
        ..Config::default()
    })
}

#[test]
fn the_table_is_bounded() {
    let mut device = small_device(4);
    for i in 0..100 {
        allocate(&mut device, i);
        assert!(device.channel_count() <= 4);
    }
    assert_eq!(device.channel_count(), 4);
}

#[test]
fn a_full_table_evicts_the_least_recently_used_channel() {
    let mut device = small_device(3);
    let a = allocate(&mut device, 0);
    let b = allocate(&mut device, 1);
    let c = allocate(&mut device, 2);
    // Use A, so B is now the least recently used.
    send(&mut device, a, command::PING, b"a", 3);
    drain(&mut device);
    let d = allocate(&mut device, 4);
    assert!(device.is_allocated(a));
    assert!(!device.is_allocated(b));
    assert!(device.is_allocated(c));
    assert!(device.is_allocated(d));
    send(&mut device, b, command::PING, b"b", 5);
    assert_eq!(drain(&mut device), [error(b, ErrorCode::InvalidChannel)]);
    // Next to go is C, then A.
    let e = allocate(&mut device, 6);
    assert!(!device.is_allocated(c));
    let _ = allocate(&mut device, 7);
    assert!(!device.is_allocated(a));
    assert!(device.is_allocated(d) && device.is_allocated(e));
}

#[test]
fn a_resync_counts_as_use() {
    let mut device = small_device(2);
    let a = allocate(&mut device, 0);
    let b = allocate(&mut device, 1);
    send(&mut device, a, command::INIT, &NONCE, 2);
    drain(&mut device);
    allocate(&mut device, 3);
    assert!(device.is_allocated(a));
    assert!(!device.is_allocated(b));
}

#[test]
fn a_single_channel_table_reuses_its_slot() {
    let mut device = small_device(1);
    let a = allocate(&mut device, 0);
    let b = allocate(&mut device, 1);
    assert_ne!(a, b);
    assert!(!device.is_allocated(a));
    assert!(device.is_allocated(b));
}

#[test]
fn identifiers_are_never_reserved_values_and_follow_the_seed() {
    let mut first = device();
    let mut second = device();
    let mut other = CtapHid::new(Config::default(), SEED ^ 1);
    for i in 0..1000 {
        let cid = allocate(&mut first, i);
        assert_ne!(cid, 0);
        assert_ne!(cid, BROADCAST_CHANNEL);
        assert_eq!(allocate(&mut second, i), cid, "same seed, same identifiers");
        if i == 0 {
            assert_ne!(
                allocate(&mut other, i),
                cid,
                "another seed, other identifiers"
            );
        }
    }
}
