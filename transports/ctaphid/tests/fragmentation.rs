//! Reassembly and fragmentation at every packet boundary (57-byte initialization payload,
//! 59-byte continuation payloads, 7609 bytes at most).
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
    ErrorCode, MAX_MESSAGE_SIZE, PACKET_SIZE, RequestKind, command, packet_count, packets,
};

const BOUNDARIES: [usize; 11] = [0, 1, 56, 57, 58, 115, 116, 117, 118, 7608, MAX_MESSAGE_SIZE];

#[test]
fn packet_counts() {
    let expected = [1, 1, 1, 1, 2, 2, 2, 3, 3, 129, 129];
    for (len, count) in BOUNDARIES.into_iter().zip(expected) {
        assert_eq!(packet_count(len), count, "length {len}");
        assert_eq!(
            packets(1, command::PING, &payload(len)).unwrap().len(),
            count
        );
    }
}

#[test]
fn a_message_longer_than_7609_cannot_be_fragmented() {
    assert!(packets(1, command::CBOR, &payload(MAX_MESSAGE_SIZE + 1)).is_none());
}

#[test]
fn outgoing_reports_are_laid_out_exactly() {
    let cid = 0x0102_0304;
    let data = payload(117);
    let reports: Vec<[u8; PACKET_SIZE]> = packets(cid, command::CBOR, &data).unwrap().collect();
    assert_eq!(reports.len(), 3);
    // Initialization packet: CID, CMD | 0x80, BCNT, 57 bytes.
    assert_eq!(reports[0][..7], [1, 2, 3, 4, 0x90, 0, 117]);
    assert_eq!(reports[0][7..], data[..57]);
    // Continuation packets: CID, SEQ, 59 bytes.
    assert_eq!(reports[1][..5], [1, 2, 3, 4, 0]);
    assert_eq!(reports[1][5..], data[57..116]);
    assert_eq!(reports[2][..5], [1, 2, 3, 4, 1]);
    assert_eq!(reports[2][5], data[116]);
    assert!(reports[2][6..].iter().all(|b| *b == 0), "zero padding");
}

#[test]
fn the_last_continuation_packet_of_a_maximum_message_is_sequence_127() {
    let reports: Vec<_> = packets(7, command::PING, &payload(MAX_MESSAGE_SIZE))
        .unwrap()
        .collect();
    assert_eq!(reports.len(), 129);
    assert_eq!(reports[128][4], 0x7F);
    // Exactly full: no padding at all.
    assert_eq!(
        reports[128][5..],
        payload(MAX_MESSAGE_SIZE)[MAX_MESSAGE_SIZE - 59..]
    );
}

#[test]
fn ping_echo_at_every_boundary() {
    let mut device = device();
    let cid = allocate(&mut device, 0);
    for len in BOUNDARIES {
        let data = payload(len);
        send(&mut device, cid, command::PING, &data, 1);
        let mut reports = Vec::new();
        while let Some(report) = device.next_outgoing() {
            reports.push(report);
        }
        assert_eq!(reports.len(), packet_count(len), "length {len}");
        let expected: Vec<_> = packets(cid, command::PING, &data).unwrap().collect();
        assert_eq!(reports, expected, "length {len}");
    }
}

#[test]
fn requests_and_responses_at_every_boundary() {
    let mut device = device();
    let cid = allocate(&mut device, 0);
    for len in BOUNDARIES {
        let data = payload(len);
        send(&mut device, cid, command::CBOR, &data, 1);
        let request = device
            .take_request()
            .unwrap_or_else(|| panic!("length {len}"));
        assert_eq!(request.kind, RequestKind::Cbor);
        assert_eq!(request.payload, data, "length {len}");
        let response: Vec<u8> = data.iter().rev().copied().collect();
        device.respond(&response, 2);
        assert_eq!(
            drain(&mut device),
            [msg(cid, command::CBOR, &response)],
            "length {len}"
        );
    }
}

#[test]
fn seven_thousand_six_hundred_and_ten_bytes_are_refused() {
    let mut device = device();
    let cid = allocate(&mut device, 0);
    device.handle_packet(&init_packet(cid, command::PING, 7610, &payload(57)), 1);
    assert_eq!(drain(&mut device), [error(cid, ErrorCode::InvalidLen)]);
    // Its continuation packets are then spurious.
    for seq in 0..=127 {
        device.handle_packet(&cont_packet(cid, seq, &payload(59)), 1);
    }
    assert_eq!(drain(&mut device), []);
    send(&mut device, cid, command::CBOR, &[4], 2);
    assert!(device.take_request().is_some());
    device.respond(&payload(7610), 3);
    assert_eq!(drain(&mut device), [error(cid, ErrorCode::Other)]);
}

#[test]
fn bytes_past_bcnt_in_the_last_packet_are_ignored() {
    let mut device = device();
    let cid = allocate(&mut device, 0);
    // BCNT 3 with garbage after it in the same packet.
    device.handle_packet(&init_packet(cid, command::PING, 3, &[1, 2, 3, 9, 9, 9]), 1);
    assert_eq!(drain(&mut device), [msg(cid, command::PING, &[1, 2, 3])]);
    // BCNT 60: 57 + 3, garbage after the third byte of the continuation packet.
    device.handle_packet(&init_packet(cid, command::PING, 60, &payload(57)), 2);
    device.handle_packet(&cont_packet(cid, 0, &[7, 7, 7, 0xFF, 0xFF]), 2);
    let mut expected = payload(57);
    expected.extend_from_slice(&[7, 7, 7]);
    assert_eq!(drain(&mut device), [msg(cid, command::PING, &expected)]);
}
