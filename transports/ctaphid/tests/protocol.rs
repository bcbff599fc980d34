//! Commands and errors of CTAPHID (CTAP 2.1 §11.2.9), one behaviour per test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers outside #[test] functions: a failure is a test failure"
)]

mod common;

use common::*;
use fidelio_ctaphid::{
    BROADCAST_CHANNEL, CAPABILITY_CBOR, CAPABILITY_NMSG, CAPABILITY_WINK,
    CTAP2_ERR_KEEPALIVE_CANCEL, Config, ErrorCode, Event, MAX_MESSAGE_SIZE, RequestKind, command,
};

// ---- INIT ----

#[test]
fn init_on_broadcast_allocates_a_channel() {
    let config = Config {
        version: (2, 1, 7),
        capabilities: CAPABILITY_WINK | CAPABILITY_CBOR,
        ..Config::default()
    };
    let mut device = device_with(config);
    send(&mut device, BROADCAST_CHANNEL, command::INIT, &NONCE, 0);
    let out = drain(&mut device);
    assert_eq!(out.len(), 1);
    let response = &out[0];
    assert_eq!(
        (response.channel, response.command),
        (BROADCAST_CHANNEL, command::INIT)
    );
    assert_eq!(response.payload.len(), 17);
    assert_eq!(response.payload[..8], NONCE);
    let cid = u32::from_be_bytes(response.payload[8..12].try_into().unwrap());
    assert_ne!(cid, 0);
    assert_ne!(cid, BROADCAST_CHANNEL);
    assert_eq!(
        response.payload[12..],
        [2, 2, 1, 7, CAPABILITY_WINK | CAPABILITY_CBOR]
    );
    assert!(device.is_allocated(cid));
    assert_eq!(device.channel_count(), 1);
}

#[test]
fn each_broadcast_init_allocates_a_new_channel() {
    let mut device = device();
    let mut seen = Vec::new();
    for i in 0..10 {
        let cid = allocate(&mut device, i);
        assert!(!seen.contains(&cid));
        seen.push(cid);
    }
}

#[test]
fn init_on_an_allocated_channel_answers_with_the_same_channel() {
    let mut device = device();
    let cid = allocate(&mut device, 0);
    let nonce = [9; 8];
    send(&mut device, cid, command::INIT, &nonce, 1);
    let out = drain(&mut device);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].channel, out[0].command), (cid, command::INIT));
    assert_eq!(out[0].payload[..8], nonce);
    assert_eq!(out[0].payload[8..12], cid.to_be_bytes());
    assert_eq!(device.channel_count(), 1);
}

#[test]
fn init_with_a_nonce_other_than_8_bytes_is_invalid_len() {
    let mut device = device();
    for len in [0u16, 7, 9, 57, 100] {
        device.handle_packet(
            &init_packet(BROADCAST_CHANNEL, command::INIT, len, &[0xAA; 8]),
            0,
        );
        assert_eq!(
            drain(&mut device),
            [error(BROADCAST_CHANNEL, ErrorCode::InvalidLen)]
        );
    }
    assert_eq!(device.channel_count(), 0);
    // A resync with a bad length is refused the same way.
    let cid = allocate(&mut device, 1);
    device.handle_packet(&init_packet(cid, command::INIT, 4, &[1, 2, 3, 4]), 2);
    assert_eq!(drain(&mut device), [error(cid, ErrorCode::InvalidLen)]);
}

#[test]
fn init_resync_aborts_a_message_being_received() {
    let mut device = device();
    let cid = allocate(&mut device, 0);
    let long = payload(200);
    let packets = message_packets(cid, command::PING, &long);
    device.handle_packet(&packets[0], 10);
    device.handle_packet(&packets[1], 10);
    assert_eq!(device.busy_channel(), Some(cid));
    send(&mut device, cid, command::INIT, &NONCE, 11);
    let out = drain(&mut device);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].channel, out[0].command), (cid, command::INIT));
    assert_eq!(device.busy_channel(), None);
    // The rest of the aborted message is now spurious and ignored.
    device.handle_packet(&packets[2], 12);
    device.handle_packet(&packets[3], 12);
    assert_eq!(drain(&mut device), []);
    // And the channel works.
    send(&mut device, cid, command::PING, &long, 13);
    assert_eq!(drain(&mut device), [msg(cid, command::PING, &long)]);
}

#[test]
fn init_resync_aborts_a_taken_request_and_drops_its_answer() {
    let mut device = device();
    let cid = allocate(&mut device, 0);
    send(&mut device, cid, command::CBOR, &[0x04], 1);
    let request = device.take_request().unwrap();
    assert_eq!(request.payload, [0x04]);
    assert!(!device.cancel_requested());
    send(&mut device, cid, command::INIT, &NONCE, 2);
    assert_eq!(drain(&mut device)[0].command, command::INIT);
    // The core should wind down; its answer is dropped.
    assert!(device.cancel_requested());
    assert_eq!(device.busy_channel(), None);
    device.respond(&[0x00, 0xA0], 3);
    assert_eq!(drain(&mut device), []);
    assert!(!device.cancel_requested());
    // The next request goes through normally.
    send(&mut device, cid, command::CBOR, &[0x04], 4);
    assert!(device.take_request().is_some());
    device.respond(&[0x00], 5);
    assert_eq!(drain(&mut device), [msg(cid, command::CBOR, &[0x00])]);
}

#[test]
fn a_request_completing_while_the_core_finishes_an_aborted_one_is_held() {
    let mut device = device();
    let cid = allocate(&mut device, 0);
    send(&mut device, cid, command::CBOR, &[0x01], 1);
    assert!(device.take_request().is_some());
    send(&mut device, cid, command::INIT, &NONCE, 2);
    drain(&mut device);
    send(&mut device, cid, command::CBOR, &[0x02], 3);
    assert_eq!(device.busy_channel(), Some(cid));
    // One request at a time: the core has not answered the aborted one yet.
    assert_eq!(device.take_request(), None);
    // Meanwhile the host hears that the request is being processed.
    device.poll(3 + 100);
    assert_eq!(drain(&mut device), [msg(cid, command::KEEPALIVE, &[1])]);
    device.respond(&[0xEE], 104);
    assert_eq!(drain(&mut device), []);
    let request = device.take_request().unwrap();
    assert_eq!(request.payload, [0x02]);
    device.respond(&[0x00], 105);
    assert_eq!(drain(&mut device), [msg(cid, command::CBOR, &[0x00])]);
}

// ---- PING ----

#[test]
fn ping_echoes_a_single_packet_message() {
    let mut device = device();
    let cid = allocate(&mut device, 0);
    send(&mut device, cid, command::PING, b"hello", 1);
    assert_eq!(drain(&mut device), [msg(cid, command::PING, b"hello")]);
}

#[test]
fn ping_echoes_a_multi_packet_message() {
    let mut device = device();
    let cid = allocate(&mut device, 0);
    for len in [58, 500, 1000, 4096, MAX_MESSAGE_SIZE] {
        let data = payload(len);
        send(&mut device, cid, command::PING, &data, 1);
        assert_eq!(drain(&mut device), [msg(cid, command::PING, &data)]);
    }
}

// ---- MSG ----

#[test]
fn msg_is_invalid_when_the_device_declares_nmsg() {
    let mut device = device_with(Config {
        capabilities: CAPABILITY_WINK | CAPABILITY_CBOR | CAPABILITY_NMSG,
        ..Config::default()
    });
    let cid = allocate(&mut device, 0);
    send(&mut device, cid, command::MSG, &[0x00, 0x03, 0x00, 0x00], 1);
    assert_eq!(drain(&mut device), [error(cid, ErrorCode::InvalidCmd)]);
    assert_eq!(device.take_request(), None);
    assert_eq!(device.busy_channel(), None);
}

#[test]
fn msg_is_served_by_default() {
    let mut device = device();
    let cid = allocate(&mut device, 0);
    send(&mut device, cid, command::MSG, &[0x00, 0x03, 0x00, 0x00], 1);
    assert_eq!(drain(&mut device), []);
    let request = device.take_request().unwrap();
    assert_eq!((request.channel, request.kind), (cid, RequestKind::Msg));
}

#[test]
fn msg_is_a_request_without_nmsg() {
    let config = Config {
        capabilities: CAPABILITY_CBOR,
        ..Config::default()
    };
    let mut device = device_with(config);
    let cid = allocate(&mut device, 0);
    let apdu = [0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00];
    send(&mut device, cid, command::MSG, &apdu, 1);
    let request = device.take_request().unwrap();
    assert_eq!((request.channel, request.kind), (cid, RequestKind::Msg));
    assert_eq!(request.payload, apdu);
    device.respond(b"U2F_V2\x90\x00", 2);
    assert_eq!(
        drain(&mut device),
        [msg(cid, command::MSG, b"U2F_V2\x90\x00")]
    );
}

// ---- CBOR ----

#[test]
fn cbor_is_a_request_answered_on_its_channel() {
    let mut device = device();
    let cid = allocate(&mut device, 0);
    send(&mut device, cid, command::CBOR, &[0x04], 1);
    assert_eq!(drain(&mut device), []);
    let request = device.take_request().unwrap();
    assert_eq!((request.channel, request.kind), (cid, RequestKind::Cbor));
    assert_eq!(request.payload, [0x04]);
    assert_eq!(device.take_request(), None, "handed out once");
    assert_eq!(device.busy_channel(), Some(cid));
    let response = payload(300);
    device.respond(&response, 2);
    assert_eq!(drain(&mut device), [msg(cid, command::CBOR, &response)]);
    assert_eq!(device.busy_channel(), None);
}

#[test]
fn cbor_is_invalid_without_the_cbor_capability() {
    let config = Config {
        capabilities: CAPABILITY_WINK,
        ..Config::default()
    };
    let mut device = device_with(config);
    let cid = allocate(&mut device, 0);
    send(&mut device, cid, command::CBOR, &[0x04], 1);
    assert_eq!(drain(&mut device), [error(cid, ErrorCode::InvalidCmd)]);
}

#[test]
fn respond_without_a_request_out_is_ignored() {
    let mut device = device();
    let cid = allocate(&mut device, 0);
    device.respond(&[0x00], 1);
    assert_eq!(drain(&mut device), []);
    // Completed but not taken: still not answerable.
    send(&mut device, cid, command::CBOR, &[0x04], 2);
    device.respond(&[0x00], 3);
    assert_eq!(drain(&mut device), []);
    assert!(device.take_request().is_some());
}

// ---- CANCEL ----

#[test]
fn cancel_marks_the_taken_request_and_is_never_answered() {
    let mut device = device();
    let cid = allocate(&mut device, 0);
    send(&mut device, cid, command::CBOR, &[0x01, 0xA0], 1);
    assert!(device.take_request().is_some());
    send(&mut device, cid, command::CANCEL, &[], 2);
    assert_eq!(drain(&mut device), []);
    assert!(device.cancel_requested());
    device.respond(&[CTAP2_ERR_KEEPALIVE_CANCEL], 3);
    assert_eq!(
        drain(&mut device),
        [msg(cid, command::CBOR, &[CTAP2_ERR_KEEPALIVE_CANCEL])]
    );
    assert!(!device.cancel_requested());
}

#[test]
fn cancel_before_the_request_is_taken_answers_keepalive_cancel() {
    let mut device = device();
    let cid = allocate(&mut device, 0);
    send(&mut device, cid, command::CBOR, &[0x01, 0xA0], 1);
    send(&mut device, cid, command::CANCEL, &[], 2);
    assert_eq!(
        drain(&mut device),
        [msg(cid, command::CBOR, &[CTAP2_ERR_KEEPALIVE_CANCEL])]
    );
    assert_eq!(device.take_request(), None);
    assert_eq!(device.busy_channel(), None);
}

#[test]
fn cancel_for_anything_else_is_ignored() {
    let config = Config {
        capabilities: CAPABILITY_CBOR,
        ..Config::default()
    };
    let mut device = device_with(config);
    let a = allocate(&mut device, 0);
    let b = allocate(&mut device, 0);
    // Idle device; unallocated, broadcast and zero channels.
    for channel in [a, 0x1234_5678, BROADCAST_CHANNEL, 0] {
        send(&mut device, channel, command::CANCEL, &[], 1);
    }
    assert_eq!(drain(&mut device), []);
    // Another channel than the pending request's.
    send(&mut device, a, command::CBOR, &[0x02], 2);
    assert!(device.take_request().is_some());
    send(&mut device, b, command::CANCEL, &[], 3);
    assert_eq!(drain(&mut device), []);
    assert!(!device.cancel_requested());
    device.respond(&[0x00], 4);
    drain(&mut device);
    // A pending MSG request: CANCEL only applies to CBOR.
    send(&mut device, a, command::MSG, &[0x00, 0x02, 0x00, 0x00], 5);
    assert!(device.take_request().is_some());
    send(&mut device, a, command::CANCEL, &[], 6);
    assert!(!device.cancel_requested());
    assert_eq!(drain(&mut device), []);
}

#[test]
fn cancel_while_a_message_is_received_is_ignored() {
    let mut device = device();
    let cid = allocate(&mut device, 0);
    let data = payload(100);
    let packets = message_packets(cid, command::CBOR, &data);
    device.handle_packet(&packets[0], 1);
    send(&mut device, cid, command::CANCEL, &[], 2);
    device.handle_packet(&packets[1], 3);
    assert_eq!(drain(&mut device), []);
    assert_eq!(device.take_request().unwrap().payload, data);
}

// ---- WINK ----

#[test]
fn wink_answers_empty_and_raises_an_event() {
    let mut device = device();
    let cid = allocate(&mut device, 0);
    send(&mut device, cid, command::WINK, &[], 1);
    assert_eq!(drain(&mut device), [msg(cid, command::WINK, &[])]);
    assert_eq!(device.take_event(), Some(Event::Wink { channel: cid }));
    assert_eq!(device.take_event(), None);
}

#[test]
fn wink_with_a_payload_is_invalid_len() {
    let mut device = device();
    let cid = allocate(&mut device, 0);
    send(&mut device, cid, command::WINK, &[1], 1);
    assert_eq!(drain(&mut device), [error(cid, ErrorCode::InvalidLen)]);
    assert_eq!(device.take_event(), None);
}

#[test]
fn wink_is_invalid_without_the_wink_capability() {
    let config = Config {
        capabilities: CAPABILITY_CBOR | CAPABILITY_NMSG,
        ..Config::default()
    };
    let mut device = device_with(config);
    let cid = allocate(&mut device, 0);
    send(&mut device, cid, command::WINK, &[], 1);
    assert_eq!(drain(&mut device), [error(cid, ErrorCode::InvalidCmd)]);
    assert_eq!(device.take_event(), None);
}

#[test]
fn events_are_bounded() {
    let mut device = device();
    let cid = allocate(&mut device, 0);
    for i in 0..100 {
        send(&mut device, cid, command::WINK, &[], i);
        drain(&mut device);
    }
    let mut events = 0;
    while device.take_event().is_some() {
        events += 1;
    }
    assert_eq!(events, fidelio_ctaphid::MAX_QUEUED_EVENTS);
}

// ---- LOCK ----

#[test]
fn lock_keeps_other_channels_out_until_it_expires() {
    let mut device = device();
    let a = allocate(&mut device, 0);
    let b = allocate(&mut device, 0);
    send(&mut device, a, command::LOCK, &[2], 1000);
    assert_eq!(drain(&mut device), [msg(a, command::LOCK, &[])]);
    assert_eq!(device.locked_channel(), Some(a));
    // Other channels, allocation included, are busy; the holder is served.
    send(&mut device, b, command::PING, b"x", 1500);
    send(&mut device, b, command::INIT, &NONCE, 1500);
    send(&mut device, b, command::LOCK, &[1], 1500);
    send(&mut device, BROADCAST_CHANNEL, command::INIT, &NONCE, 1500);
    send(&mut device, a, command::PING, b"y", 1500);
    assert_eq!(
        drain(&mut device),
        [
            error(b, ErrorCode::ChannelBusy),
            error(b, ErrorCode::ChannelBusy),
            error(b, ErrorCode::ChannelBusy),
            error(BROADCAST_CHANNEL, ErrorCode::ChannelBusy),
            msg(a, command::PING, b"y"),
        ]
    );
    // CANCEL is never answered, locked or not.
    send(&mut device, b, command::CANCEL, &[], 1600);
    assert_eq!(drain(&mut device), []);
    // 2 s after the LOCK, it is gone.
    send(&mut device, b, command::PING, b"x", 2999);
    assert_eq!(drain(&mut device), [error(b, ErrorCode::ChannelBusy)]);
    send(&mut device, b, command::PING, b"x", 3000);
    assert_eq!(drain(&mut device), [msg(b, command::PING, b"x")]);
    assert_eq!(device.locked_channel(), None);
}

#[test]
fn lock_expiry_is_noticed_by_poll() {
    let mut device = device();
    let a = allocate(&mut device, 0);
    send(&mut device, a, command::LOCK, &[10], 0);
    drain(&mut device);
    assert_eq!(device.next_deadline(), Some(10_000));
    device.poll(9_999);
    assert_eq!(device.locked_channel(), Some(a));
    device.poll(10_000);
    assert_eq!(device.locked_channel(), None);
    assert_eq!(drain(&mut device), []);
}

#[test]
fn lock_zero_releases_and_relocking_extends() {
    let mut device = device();
    let a = allocate(&mut device, 0);
    let b = allocate(&mut device, 0);
    send(&mut device, a, command::LOCK, &[1], 0);
    send(&mut device, a, command::LOCK, &[3], 900);
    drain(&mut device);
    send(&mut device, b, command::PING, b"x", 3000);
    assert_eq!(drain(&mut device), [error(b, ErrorCode::ChannelBusy)]);
    send(&mut device, a, command::LOCK, &[0], 3001);
    assert_eq!(drain(&mut device), [msg(a, command::LOCK, &[])]);
    send(&mut device, b, command::PING, b"x", 3002);
    assert_eq!(drain(&mut device), [msg(b, command::PING, b"x")]);
}

#[test]
fn lock_parameters_are_checked() {
    let mut device = device();
    let a = allocate(&mut device, 0);
    send(&mut device, a, command::LOCK, &[11], 0);
    assert_eq!(drain(&mut device), [error(a, ErrorCode::InvalidPar)]);
    send(&mut device, a, command::LOCK, &[255], 0);
    assert_eq!(drain(&mut device), [error(a, ErrorCode::InvalidPar)]);
    send(&mut device, a, command::LOCK, &[], 0);
    assert_eq!(drain(&mut device), [error(a, ErrorCode::InvalidLen)]);
    send(&mut device, a, command::LOCK, &[1, 1], 0);
    assert_eq!(drain(&mut device), [error(a, ErrorCode::InvalidLen)]);
    send(&mut device, BROADCAST_CHANNEL, command::LOCK, &[1], 0);
    assert_eq!(
        drain(&mut device),
        [error(BROADCAST_CHANNEL, ErrorCode::InvalidChannel)]
    );
    assert_eq!(device.locked_channel(), None);
}

#[test]
fn the_lock_survives_a_resync_of_its_own_channel() {
    let mut device = device();
    let a = allocate(&mut device, 0);
    let b = allocate(&mut device, 0);
    send(&mut device, a, command::LOCK, &[5], 0);
    send(&mut device, a, command::INIT, &NONCE, 1);
    drain(&mut device);
    send(&mut device, b, command::PING, b"x", 2);
    assert_eq!(drain(&mut device), [error(b, ErrorCode::ChannelBusy)]);
}

#[test]
fn lock_required_is_never_sent() {
    // No CTAPHID command requires a lock, so the code exists only on the wire table: a locked
    // device answers other channels with ERR_CHANNEL_BUSY (checked above), never 0x0A.
    assert_eq!(ErrorCode::LockRequired.code(), 0x0A);
    let mut device = device();
    let a = allocate(&mut device, 0);
    let b = allocate(&mut device, 0);
    send(&mut device, a, command::LOCK, &[1], 0);
    for cmd in 0..0x80u8 {
        send(&mut device, b, cmd, &[0; 8], 1);
    }
    for message in drain(&mut device) {
        assert_ne!(
            message.payload,
            [ErrorCode::LockRequired.code()],
            "{message:?}"
        );
    }
}

// ---- errors ----

#[test]
fn unknown_and_device_only_commands_are_invalid_cmd() {
    let mut device = device();
    let cid = allocate(&mut device, 0);
    for cmd in [
        0x00,
        0x02,
        0x05,
        0x07,
        0x22,
        command::KEEPALIVE,
        command::ERROR,
        0x40,
        0x7F,
    ] {
        send(&mut device, cid, cmd, &[1, 2, 3], 1);
        assert_eq!(
            drain(&mut device),
            [error(cid, ErrorCode::InvalidCmd)],
            "cmd {cmd:#04x}"
        );
    }
}

#[test]
fn a_message_longer_than_the_maximum_is_invalid_len() {
    let mut device = device();
    let cid = allocate(&mut device, 0);
    for cmd in [command::PING, command::CBOR] {
        device.handle_packet(&init_packet(cid, cmd, 7610, &[0; 57]), 1);
        assert_eq!(drain(&mut device), [error(cid, ErrorCode::InvalidLen)]);
        device.handle_packet(&init_packet(cid, cmd, u16::MAX, &[0; 57]), 1);
        assert_eq!(drain(&mut device), [error(cid, ErrorCode::InvalidLen)]);
    }
    assert_eq!(device.busy_channel(), None);
    // A smaller configured maximum applies the same way.
    let mut device = device_with(Config {
        max_msg_size: 1024,
        ..Config::default()
    });
    let cid = allocate(&mut device, 0);
    device.handle_packet(&init_packet(cid, command::CBOR, 1025, &[0; 57]), 1);
    assert_eq!(drain(&mut device), [error(cid, ErrorCode::InvalidLen)]);
    send(&mut device, cid, command::PING, &payload(1024), 2);
    assert_eq!(
        drain(&mut device),
        [msg(cid, command::PING, &payload(1024))]
    );
}

#[test]
fn a_configured_maximum_above_7609_is_lowered() {
    let device = device_with(Config {
        max_msg_size: 100_000,
        max_channels: 0,
        ..Config::default()
    });
    assert_eq!(device.config().max_msg_size, MAX_MESSAGE_SIZE);
    assert_eq!(device.config().max_channels, 1);
}

#[test]
fn a_continuation_out_of_sequence_is_invalid_seq_and_drops_the_message() {
    let mut device = device();
    let cid = allocate(&mut device, 0);
    let data = payload(200);
    let packets = message_packets(cid, command::PING, &data);
    device.handle_packet(&packets[0], 1);
    device.handle_packet(&packets[2], 1); // SEQ 1 where 0 is expected
    assert_eq!(drain(&mut device), [error(cid, ErrorCode::InvalidSeq)]);
    assert_eq!(device.busy_channel(), None);
    device.handle_packet(&packets[1], 1); // now spurious
    device.handle_packet(&packets[3], 1);
    assert_eq!(drain(&mut device), []);
    // A repeated sequence number is just as wrong.
    device.handle_packet(&packets[0], 2);
    device.handle_packet(&packets[1], 2);
    device.handle_packet(&packets[1], 2);
    assert_eq!(drain(&mut device), [error(cid, ErrorCode::InvalidSeq)]);
}

#[test]
fn spurious_continuation_packets_are_ignored() {
    let mut device = device();
    let cid = allocate(&mut device, 0);
    for channel in [cid, 0, BROADCAST_CHANNEL, 0xDEAD_BEEF] {
        for seq in [0, 1, 0x7F] {
            device.handle_packet(&cont_packet(channel, seq, &[1; 59]), 1);
        }
    }
    assert_eq!(drain(&mut device), []);
}

#[test]
fn a_new_message_on_a_channel_still_sending_one_is_invalid_seq() {
    let mut device = device();
    let cid = allocate(&mut device, 0);
    let data = payload(100);
    let packets = message_packets(cid, command::CBOR, &data);
    device.handle_packet(&packets[0], 1);
    send(&mut device, cid, command::PING, b"x", 2);
    assert_eq!(drain(&mut device), [error(cid, ErrorCode::InvalidSeq)]);
    // The half-received message is gone.
    device.handle_packet(&packets[1], 3);
    assert_eq!(drain(&mut device), []);
    assert_eq!(device.take_request(), None);
}

#[test]
fn a_message_not_complete_in_time_is_msg_timeout_via_poll() {
    let mut device = device();
    let cid = allocate(&mut device, 0);
    let packets = message_packets(cid, command::PING, &payload(200));
    device.handle_packet(&packets[0], 1000);
    device.handle_packet(&packets[1], 1300);
    assert_eq!(device.next_deadline(), Some(1501));
    device.poll(1500);
    assert_eq!(drain(&mut device), []);
    device.poll(1501);
    assert_eq!(drain(&mut device), [error(cid, ErrorCode::MsgTimeout)]);
    assert_eq!(device.busy_channel(), None);
    device.handle_packet(&packets[2], 1502);
    assert_eq!(drain(&mut device), [], "the rest is spurious");
}

#[test]
fn a_message_not_complete_in_time_is_msg_timeout_via_the_next_packet() {
    let mut device = device();
    let cid = allocate(&mut device, 0);
    let data = payload(200);
    let packets = message_packets(cid, command::PING, &data);
    // Completing exactly at the limit is in time.
    for packet in &packets[..3] {
        device.handle_packet(packet, 1000);
    }
    device.handle_packet(&packets[3], 1500);
    assert_eq!(drain(&mut device), [msg(cid, command::PING, &data)]);
    // One millisecond later is not.
    for packet in &packets[..3] {
        device.handle_packet(packet, 2000);
    }
    device.handle_packet(&packets[3], 2501);
    assert_eq!(drain(&mut device), [error(cid, ErrorCode::MsgTimeout)]);
}

#[test]
fn a_timed_out_message_frees_the_device_for_the_packet_that_noticed() {
    let mut device = device();
    let a = allocate(&mut device, 0);
    let b = allocate(&mut device, 0);
    let packets = message_packets(a, command::PING, &payload(100));
    device.handle_packet(&packets[0], 0);
    send(&mut device, b, command::PING, b"b", 100);
    assert_eq!(drain(&mut device), [error(b, ErrorCode::ChannelBusy)]);
    send(&mut device, b, command::PING, b"b", 600);
    assert_eq!(
        drain(&mut device),
        [error(a, ErrorCode::MsgTimeout), msg(b, command::PING, b"b")]
    );
}

#[test]
fn a_pending_request_does_not_time_out() {
    let mut device = device();
    let cid = allocate(&mut device, 0);
    send(&mut device, cid, command::CBOR, &payload(100), 0);
    assert!(device.take_request().is_some());
    device.poll(60_000);
    assert_eq!(drain(&mut device), [msg(cid, command::KEEPALIVE, &[1])]);
    device.respond(&[0], 60_001);
    assert_eq!(drain(&mut device), [msg(cid, command::CBOR, &[0])]);
}

#[test]
fn other_channels_are_busy_during_a_transaction() {
    let mut device = device();
    let a = allocate(&mut device, 0);
    let b = allocate(&mut device, 0);
    // While A's message is being received.
    let data = payload(100);
    let packets = message_packets(a, command::CBOR, &data);
    device.handle_packet(&packets[0], 1);
    send(&mut device, b, command::PING, b"b", 2);
    send(&mut device, b, command::INIT, &NONCE, 2);
    send(&mut device, BROADCAST_CHANNEL, command::INIT, &NONCE, 2);
    assert_eq!(
        drain(&mut device),
        [
            error(b, ErrorCode::ChannelBusy),
            error(b, ErrorCode::ChannelBusy),
            error(BROADCAST_CHANNEL, ErrorCode::ChannelBusy),
        ]
    );
    // B's continuation packets belong to no message: ignored, A's message is intact.
    device.handle_packet(&cont_packet(b, 0, &[0xFF; 59]), 3);
    assert_eq!(drain(&mut device), []);
    device.handle_packet(&packets[1], 3);
    // While A's request is pending, taken or not.
    send(&mut device, b, command::PING, b"b", 4);
    assert_eq!(drain(&mut device), [error(b, ErrorCode::ChannelBusy)]);
    let request = device.take_request().unwrap();
    assert_eq!(request.payload, data);
    send(&mut device, b, command::CBOR, &[4], 5);
    // A itself may not start another transaction either.
    send(&mut device, a, command::PING, b"a", 5);
    assert_eq!(
        drain(&mut device),
        [
            error(b, ErrorCode::ChannelBusy),
            error(a, ErrorCode::ChannelBusy)
        ]
    );
    device.respond(&[0], 6);
    assert_eq!(drain(&mut device), [msg(a, command::CBOR, &[0])]);
    send(&mut device, b, command::PING, b"b", 7);
    assert_eq!(drain(&mut device), [msg(b, command::PING, b"b")]);
}

#[test]
fn bad_channels_are_invalid_channel() {
    let mut device = device();
    let cid = allocate(&mut device, 0);
    for cmd in [
        command::PING,
        command::CBOR,
        command::WINK,
        command::LOCK,
        command::MSG,
    ] {
        send(&mut device, BROADCAST_CHANNEL, cmd, &[1], 1);
        assert_eq!(
            drain(&mut device),
            [error(BROADCAST_CHANNEL, ErrorCode::InvalidChannel)]
        );
    }
    for cmd in [command::INIT, command::PING, command::CBOR] {
        send(&mut device, 0, cmd, &NONCE, 1);
        assert_eq!(drain(&mut device), [error(0, ErrorCode::InvalidChannel)]);
        send(&mut device, cid ^ 1, cmd, &NONCE, 1);
        assert_eq!(
            drain(&mut device),
            [error(cid ^ 1, ErrorCode::InvalidChannel)]
        );
    }
}

#[test]
fn a_response_too_long_to_frame_is_err_other() {
    let mut device = device();
    let cid = allocate(&mut device, 0);
    send(&mut device, cid, command::CBOR, &[4], 1);
    assert!(device.take_request().is_some());
    device.respond(&payload(MAX_MESSAGE_SIZE + 1), 2);
    assert_eq!(drain(&mut device), [error(cid, ErrorCode::Other)]);
    assert_eq!(device.busy_channel(), None);
}

#[test]
fn error_codes_match_the_specification() {
    let codes = [
        (ErrorCode::InvalidCmd, 0x01),
        (ErrorCode::InvalidPar, 0x02),
        (ErrorCode::InvalidLen, 0x03),
        (ErrorCode::InvalidSeq, 0x04),
        (ErrorCode::MsgTimeout, 0x05),
        (ErrorCode::ChannelBusy, 0x06),
        (ErrorCode::LockRequired, 0x0A),
        (ErrorCode::InvalidChannel, 0x0B),
        (ErrorCode::Other, 0x7F),
    ];
    for (code, byte) in codes {
        assert_eq!(code.code(), byte);
    }
}

// ---- reset ----

#[test]
fn reset_forgets_channels_transactions_locks_and_queues() {
    let mut device = device();
    let a = allocate(&mut device, 0);
    send(&mut device, a, command::LOCK, &[10], 0);
    send(&mut device, a, command::WINK, &[], 0);
    send(&mut device, a, command::CBOR, &[4], 0);
    assert!(device.take_request().is_some());
    device.reset();
    assert_eq!(device.next_outgoing(), None);
    assert_eq!(device.take_event(), None);
    assert_eq!(device.channel_count(), 0);
    assert_eq!(device.locked_channel(), None);
    assert_eq!(device.busy_channel(), None);
    assert!(!device.cancel_requested());
    device.respond(&[0], 1);
    device.poll(1000);
    assert_eq!(drain(&mut device), []);
    send(&mut device, a, command::PING, b"x", 2);
    assert_eq!(drain(&mut device), [error(a, ErrorCode::InvalidChannel)]);
    let b = allocate(&mut device, 3);
    assert_ne!(a, b, "identifiers after a power cycle are fresh");
}
