//! Unit tests of internals the public API does not show: buffer bounds, queue accounting, the
//! packet codec and the channel table.

use alloc::vec;
use alloc::vec::Vec;

use super::*;
use crate::channels::{Channels, CidGenerator};
use crate::packet::{MAX_SEQUENCE, Parsed, fragment, parse};

fn init(channel: u32, cmd: u8, bcnt: u16) -> [u8; PACKET_SIZE] {
    let mut packet = [0u8; PACKET_SIZE];
    packet[..4].copy_from_slice(&channel.to_be_bytes());
    packet[4] = cmd | 0x80;
    packet[5..7].copy_from_slice(&bcnt.to_be_bytes());
    packet
}

fn allocated(device: &mut CtapHid) -> u32 {
    let mut packet = init(BROADCAST_CHANNEL, command::INIT, 8);
    packet[7..15].copy_from_slice(&[1; 8]);
    device.handle_packet(&packet, 0);
    let response = device.next_outgoing().unwrap();
    assert_eq!(device.next_outgoing(), None);
    u32::from_be_bytes(response[15..19].try_into().unwrap())
}

#[test]
fn fragments_parse_back_to_the_message() {
    for len in 0..=MAX_MESSAGE_SIZE {
        let payload: Vec<u8> = (0..len).map(|i| u8::try_from(i % 251).unwrap()).collect();
        let mut rebuilt = Vec::new();
        let mut index = 0;
        while let Some(packet) = fragment(0xA1B2_C3D4, command::CBOR, &payload, index) {
            match parse(&packet) {
                Parsed::Init {
                    channel,
                    command,
                    length,
                    data,
                } => {
                    assert_eq!(index, 0);
                    assert_eq!(
                        (channel, command, length),
                        (0xA1B2_C3D4, command::CBOR, len)
                    );
                    rebuilt.extend_from_slice(&data[..len.min(INIT_DATA_SIZE)]);
                }
                Parsed::Cont {
                    channel,
                    sequence,
                    data,
                } => {
                    assert_eq!(channel, 0xA1B2_C3D4);
                    assert_eq!(usize::from(sequence), index - 1);
                    let take = (len - rebuilt.len()).min(CONT_DATA_SIZE);
                    rebuilt.extend_from_slice(&data[..take]);
                }
            }
            index += 1;
        }
        assert_eq!(index, packet_count(len));
        assert_eq!(rebuilt, payload);
    }
    assert_eq!(
        fragment(1, command::PING, &[0; MAX_MESSAGE_SIZE + 1], 0),
        None
    );
}

#[test]
fn generator_is_deterministic_and_spread() {
    let mut a = CidGenerator::new(0);
    let mut b = CidGenerator::new(0);
    let mut values = Vec::new();
    for _ in 0..1000 {
        let value = a.next_u32();
        assert_eq!(value, b.next_u32());
        values.push(value);
    }
    values.sort_unstable();
    values.dedup();
    assert_eq!(values.len(), 1000);
}

#[test]
fn protected_channels_are_never_evicted() {
    let mut channels = Channels::new(2, 7);
    let a = channels.allocate([None, None]).unwrap();
    let b = channels.allocate([None, None]).unwrap();
    // Full, both protected: no room.
    assert_eq!(channels.allocate([Some(a), Some(b)]), None);
    assert!(channels.contains(a) && channels.contains(b));
    // A is the least recently used but protected: B goes.
    let c = channels.allocate([Some(a), None]).unwrap();
    assert!(channels.contains(a) && !channels.contains(b) && channels.contains(c));
}

#[test]
fn the_reassembly_buffer_never_exceeds_the_maximum() {
    let config = Config {
        max_msg_size: 300,
        ..Config::default()
    };
    let mut device = CtapHid::new(config, 1);
    let cid = allocated(&mut device);
    for bcnt in [58u16, 299, 300, 301, 7609, u16::MAX] {
        device.handle_packet(&init(cid, command::PING, bcnt), 0);
        if let Transaction::Assembling(assembly) = &device.transaction {
            assert!(assembly.buffer.capacity() <= 300, "BCNT {bcnt}");
            assert_eq!(assembly.length, usize::from(bcnt));
        } else {
            assert!(usize::from(bcnt) > 300, "BCNT {bcnt}");
        }
        // Feed more continuation packets than the message needs.
        for seq in 0..=MAX_SEQUENCE {
            let mut packet = [0xAB; PACKET_SIZE];
            packet[..4].copy_from_slice(&cid.to_be_bytes());
            packet[4] = seq;
            device.handle_packet(&packet, 0);
            if let Transaction::Assembling(assembly) = &device.transaction {
                assert!(assembly.buffer.len() <= assembly.length);
                assert!(assembly.buffer.capacity() <= 300);
            }
        }
        while device.next_outgoing().is_some() {}
    }
}

#[test]
fn the_outgoing_queue_accounts_for_its_bytes() {
    let mut device = CtapHid::new(Config::default(), 1);
    let cid = allocated(&mut device);
    // Fill the queue with maximum PING echoes without draining.
    let payload = vec![0x55; MAX_MESSAGE_SIZE];
    for _ in 0..5 {
        for packet in packets(cid, command::PING, &payload).unwrap() {
            device.handle_packet(&packet, 0);
        }
    }
    assert_eq!(device.outgoing.len(), 2, "the third echo does not fit");
    assert_eq!(device.outgoing_bytes, 2 * MAX_MESSAGE_SIZE);
    // Small messages still fit in the slack, up to the message bound.
    for _ in 0..100 {
        device.handle_packet(&init(0, command::PING, 0), 0);
    }
    assert_eq!(device.outgoing.len(), MAX_QUEUED_MESSAGES);
    let mut reports = 0;
    while device.next_outgoing().is_some() {
        reports += 1;
    }
    assert_eq!(reports, 2 * 129 + MAX_QUEUED_MESSAGES - 2);
    assert_eq!(device.outgoing_bytes, 0);
}

#[test]
fn the_default_config_is_the_documented_one() {
    let config = Config::default();
    assert_eq!(config.max_msg_size, 7609);
    assert_eq!(config.max_channels, 16);
    assert_eq!(config.message_timeout_ms, 500);
    assert_eq!(config.keepalive_interval_ms, 100);
    assert_eq!(config.capabilities, 0x05);
    assert_eq!(MAX_MESSAGE_SIZE, 57 + 128 * 59);
}
