//! Helpers shared by the integration tests: a host's view of the device.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers, each binary using a subset: a failure is a test failure"
)]

use fidelio_ctaphid::{
    BROADCAST_CHANNEL, CONT_DATA_SIZE, Config, CtapHid, ErrorCode, INIT_DATA_SIZE, PACKET_SIZE,
    command, packets,
};

pub const SEED: u64 = 0x5EED_F1DE_110C_7A1D;
pub const NONCE: [u8; 8] = [1, 2, 3, 4, 5, 6, 7, 8];

/// One message as the host reassembles it from the device's reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    pub channel: u32,
    pub command: u8,
    pub payload: Vec<u8>,
}

pub fn msg(channel: u32, command: u8, payload: &[u8]) -> Msg {
    Msg {
        channel,
        command,
        payload: payload.to_vec(),
    }
}

pub fn error(channel: u32, code: ErrorCode) -> Msg {
    msg(channel, command::ERROR, &[code.code()])
}

pub fn device() -> CtapHid {
    CtapHid::new(Config::default(), SEED)
}

pub fn device_with(config: Config) -> CtapHid {
    CtapHid::new(config, SEED)
}

/// An initialization packet with an arbitrary BCNT (which may disagree with `data`).
pub fn init_packet(channel: u32, cmd: u8, bcnt: u16, data: &[u8]) -> [u8; PACKET_SIZE] {
    assert!(data.len() <= INIT_DATA_SIZE);
    let mut packet = [0u8; PACKET_SIZE];
    packet[..4].copy_from_slice(&channel.to_be_bytes());
    packet[4] = cmd | 0x80;
    packet[5..7].copy_from_slice(&bcnt.to_be_bytes());
    packet[7..7 + data.len()].copy_from_slice(data);
    packet
}

pub fn cont_packet(channel: u32, seq: u8, data: &[u8]) -> [u8; PACKET_SIZE] {
    assert!(data.len() <= CONT_DATA_SIZE);
    assert!(seq < 0x80);
    let mut packet = [0u8; PACKET_SIZE];
    packet[..4].copy_from_slice(&channel.to_be_bytes());
    packet[4] = seq;
    packet[5..5 + data.len()].copy_from_slice(data);
    packet
}

/// The reports of a whole message, as a host sends them.
pub fn message_packets(channel: u32, cmd: u8, payload: &[u8]) -> Vec<[u8; PACKET_SIZE]> {
    packets(channel, cmd, payload)
        .expect("message fits")
        .collect()
}

pub fn send(device: &mut CtapHid, channel: u32, cmd: u8, payload: &[u8], now_ms: u64) {
    for packet in message_packets(channel, cmd, payload) {
        device.handle_packet(&packet, now_ms);
    }
}

/// Every message the device queued, checking framing: init packets start messages,
/// continuation packets follow in order on the same channel, padding is zero.
pub fn drain(device: &mut CtapHid) -> Vec<Msg> {
    let mut out = Vec::new();
    let mut current: Option<(Msg, usize, u8)> = None;
    while let Some(packet) = device.next_outgoing() {
        let channel = u32::from_be_bytes(packet[..4].try_into().unwrap());
        if let Some((mut message, length, seq)) = current.take() {
            assert_eq!(packet[4], seq, "continuation sequence");
            assert_eq!(channel, message.channel, "continuation channel");
            let take = (length - message.payload.len()).min(CONT_DATA_SIZE);
            message.payload.extend_from_slice(&packet[5..5 + take]);
            assert!(packet[5 + take..].iter().all(|b| *b == 0), "zero padding");
            if message.payload.len() == length {
                out.push(message);
            } else {
                current = Some((message, length, seq + 1));
            }
            continue;
        }
        assert_ne!(
            packet[4] & 0x80,
            0,
            "a message starts with an initialization packet"
        );
        let length = usize::from(u16::from_be_bytes([packet[5], packet[6]]));
        let take = length.min(INIT_DATA_SIZE);
        let message = Msg {
            channel,
            command: packet[4] & 0x7F,
            payload: packet[7..7 + take].to_vec(),
        };
        assert!(packet[7 + take..].iter().all(|b| *b == 0), "zero padding");
        if message.payload.len() == length {
            out.push(message);
        } else {
            current = Some((message, length, 0));
        }
    }
    assert!(
        current.is_none(),
        "the device stopped in the middle of a message"
    );
    out
}

/// Allocates a channel through INIT on the broadcast channel and returns it.
pub fn allocate(device: &mut CtapHid, now_ms: u64) -> u32 {
    send(device, BROADCAST_CHANNEL, command::INIT, &NONCE, now_ms);
    let out = drain(device);
    assert_eq!(out.len(), 1, "{out:?}");
    let response = &out[0];
    assert_eq!(response.channel, BROADCAST_CHANNEL);
    assert_eq!(response.command, command::INIT);
    assert_eq!(response.payload.len(), 17);
    assert_eq!(response.payload[..8], NONCE);
    u32::from_be_bytes(response.payload[8..12].try_into().unwrap())
}

/// A deterministic payload of `len` bytes.
pub fn payload(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| u8::try_from((i * 7 + 3) % 251).unwrap())
        .collect()
}
