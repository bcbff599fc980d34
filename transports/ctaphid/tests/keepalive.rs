//! KEEPALIVE cadence and status while a request is pending, and CANCEL.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers outside #[test] functions: a failure is a test failure"
)]

mod common;

use common::*;
use fidelio_ctaphid::{CTAP2_ERR_KEEPALIVE_CANCEL, Config, KeepaliveStatus, command};

const PROCESSING: u8 = 1;
const UP_NEEDED: u8 = 2;

#[test]
fn keepalives_follow_the_interval_and_the_status() {
    let mut device = device();
    let cid = allocate(&mut device, 0);
    send(&mut device, cid, command::CBOR, &[0x01, 0xA0], 1000);
    assert!(device.take_request().is_some());
    assert_eq!(device.next_deadline(), Some(1100));

    let mut heard = Vec::new();
    for now in (1000..=1400).step_by(10) {
        if now == 1230 {
            device.set_keepalive_status(KeepaliveStatus::UpNeeded);
        }
        device.poll(now);
        for message in drain(&mut device) {
            assert_eq!(
                (message.channel, message.command),
                (cid, command::KEEPALIVE)
            );
            heard.push((now, message.payload[0]));
        }
    }
    // Every 100 ms, and at once when the status changes.
    assert_eq!(
        heard,
        [
            (1100, PROCESSING),
            (1200, PROCESSING),
            (1230, UP_NEEDED),
            (1330, UP_NEEDED),
        ]
    );

    // Back to processing (the user touched), then the answer: no more keepalives.
    device.set_keepalive_status(KeepaliveStatus::Processing);
    device.poll(1401);
    assert_eq!(
        drain(&mut device),
        [msg(cid, command::KEEPALIVE, &[PROCESSING])]
    );
    device.respond(&[0x00], 1402);
    assert_eq!(drain(&mut device), [msg(cid, command::CBOR, &[0x00])]);
    device.poll(5000);
    assert_eq!(drain(&mut device), []);
    assert_eq!(device.next_deadline(), None);
}

/// CTAP 2.1 §11.2.9.2.1: KEEPALIVE is sent "while processing a CTAPHID_MSG" too, so a U2F
/// request waiting for a touch keeps the host informed the same way; CANCEL does not apply.
#[test]
fn a_pending_msg_request_is_kept_alive_like_cbor() {
    let mut device = device();
    let cid = allocate(&mut device, 0);
    let apdu = [0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00];
    send(&mut device, cid, command::MSG, &apdu, 1000);
    assert!(device.take_request().is_some());
    device.set_keepalive_status(KeepaliveStatus::UpNeeded);
    device.poll(1001);
    assert_eq!(
        drain(&mut device),
        [msg(cid, command::KEEPALIVE, &[UP_NEEDED])]
    );
    device.poll(1101);
    assert_eq!(
        drain(&mut device),
        [msg(cid, command::KEEPALIVE, &[UP_NEEDED])]
    );
    send(&mut device, cid, command::CANCEL, &[], 1150);
    assert!(!device.cancel_requested());
    assert_eq!(drain(&mut device), []);
    device.respond(&[0x69, 0x85], 1160);
    assert_eq!(drain(&mut device), [msg(cid, command::MSG, &[0x69, 0x85])]);
}

#[test]
fn setting_the_same_status_again_sends_nothing_extra() {
    let mut device = device();
    let cid = allocate(&mut device, 0);
    send(&mut device, cid, command::CBOR, &[0x01], 0);
    assert!(device.take_request().is_some());
    device.set_keepalive_status(KeepaliveStatus::Processing);
    device.poll(50);
    assert_eq!(drain(&mut device), []);
}

#[test]
fn a_sparse_poll_sends_one_keepalive_not_a_burst() {
    let mut device = device();
    let cid = allocate(&mut device, 0);
    send(&mut device, cid, command::CBOR, &[0x01], 0);
    assert!(device.take_request().is_some());
    device.poll(1000);
    assert_eq!(
        drain(&mut device),
        [msg(cid, command::KEEPALIVE, &[PROCESSING])]
    );
    device.poll(1099);
    assert_eq!(drain(&mut device), []);
    device.poll(1100);
    assert_eq!(
        drain(&mut device),
        [msg(cid, command::KEEPALIVE, &[PROCESSING])]
    );
}

#[test]
fn undrained_keepalives_do_not_pile_up() {
    let mut device = device();
    let cid = allocate(&mut device, 0);
    send(&mut device, cid, command::CBOR, &[0x01], 0);
    assert!(device.take_request().is_some());
    for now in (100..10_000).step_by(100) {
        device.poll(now);
    }
    device.set_keepalive_status(KeepaliveStatus::UpNeeded);
    device.poll(10_001);
    // One keepalive, carrying the latest status.
    assert_eq!(
        drain(&mut device),
        [msg(cid, command::KEEPALIVE, &[UP_NEEDED])]
    );
}

#[test]
fn the_interval_is_configurable() {
    let mut device = device_with(Config {
        keepalive_interval_ms: 40,
        ..Config::default()
    });
    let cid = allocate(&mut device, 0);
    send(&mut device, cid, command::CBOR, &[0x01], 0);
    assert!(device.take_request().is_some());
    let mut times = Vec::new();
    for now in 0..=200 {
        device.poll(now);
        if !drain(&mut device).is_empty() {
            times.push(now);
        }
    }
    assert_eq!(times, [40, 80, 120, 160, 200]);
}

#[test]
fn keepalive_status_is_ignored_without_a_request_out() {
    let mut device = device();
    let cid = allocate(&mut device, 0);
    device.set_keepalive_status(KeepaliveStatus::UpNeeded);
    device.poll(1000);
    assert_eq!(drain(&mut device), []);
    send(&mut device, cid, command::CBOR, &[0x01], 1000);
    assert!(device.take_request().is_some());
    device.poll(1100);
    assert_eq!(
        drain(&mut device),
        [msg(cid, command::KEEPALIVE, &[PROCESSING])]
    );
}

#[test]
fn cancel_during_user_presence() {
    let mut device = device();
    let cid = allocate(&mut device, 0);
    send(&mut device, cid, command::CBOR, &[0x01, 0xA0], 0);
    assert!(device.take_request().is_some());
    device.set_keepalive_status(KeepaliveStatus::UpNeeded);
    device.poll(10);
    assert_eq!(
        drain(&mut device),
        [msg(cid, command::KEEPALIVE, &[UP_NEEDED])]
    );
    assert!(!device.cancel_requested());
    send(&mut device, cid, command::CANCEL, &[], 50);
    assert!(device.cancel_requested());
    assert_eq!(drain(&mut device), [], "CANCEL is not answered");
    // Keepalives go on until the core answers.
    device.poll(110);
    assert_eq!(
        drain(&mut device),
        [msg(cid, command::KEEPALIVE, &[UP_NEEDED])]
    );
    device.respond(&[CTAP2_ERR_KEEPALIVE_CANCEL], 120);
    assert_eq!(
        drain(&mut device),
        [msg(cid, command::CBOR, &[CTAP2_ERR_KEEPALIVE_CANCEL])]
    );
    assert!(!device.cancel_requested());
    device.poll(1000);
    assert_eq!(drain(&mut device), []);
}

#[test]
fn keepalives_stop_when_init_aborts_the_request() {
    let mut device = device();
    let cid = allocate(&mut device, 0);
    send(&mut device, cid, command::CBOR, &[0x01], 0);
    assert!(device.take_request().is_some());
    send(&mut device, cid, command::INIT, &NONCE, 50);
    drain(&mut device);
    device.poll(1000);
    assert_eq!(drain(&mut device), []);
}
