//! Arbitrary report sequences against one CtapHid, driven like a transport would drive it.
//!
//! An input is a series of 65-byte records: one control byte, then one 64-byte report. For each
//! record the clock advances (never backwards), the report goes to `handle_packet`, and the
//! control byte decides what the "daemon" does next:
//!
//! | bits | meaning |
//! |---|---|
//! | 0–3 | clock step: one of [`STEPS`] milliseconds, around the keepalive, message and lock limits |
//! | 4 | call `poll` |
//! | 5 | report `UpNeeded` for the request taken |
//! | 6 | answer the request taken (an echo of at most 16 bytes of it) |
//! | 7 | replace the report's CID with the last channel INIT allocated, so that the fuzzer does not have to guess 32-bit identifiers |
//!
//! A pending request is always taken, and answered at once if the device says it was
//! cancelled. After every record all output is drained and checked: messages are framed in
//! order, no bigger than 7609 bytes, with known commands and error codes, and the queue never
//! holds more than its documented bounds. A trailing partial record is ignored.
#![no_main]

use fidelio_ctaphid::{
    BROADCAST_CHANNEL, CAPABILITY_CBOR, CAPABILITY_WINK, CONT_DATA_SIZE, Config, CtapHid,
    INIT_DATA_SIZE, KeepaliveStatus, MAX_MESSAGE_SIZE, MAX_QUEUED_MESSAGES, PACKET_SIZE, Request,
    command, packet_count,
};
use libfuzzer_sys::fuzz_target;

/// Fixed, so that every crash reproduces.
const SEED: u64 = 0xC7A9_41D0;

const STEPS: [u64; 16] = [
    0, 1, 2, 5, 10, 50, 99, 100, 101, 250, 499, 500, 501, 1000, 5000, 11_000,
];

const RECORD: usize = 1 + PACKET_SIZE;

const KNOWN_ERRORS: [u8; 8] = [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x0B, 0x7F];

/// Drains and checks the output; returns the channel a broadcast INIT allocated, if any.
fn drain(device: &mut CtapHid) -> Option<u32> {
    let mut allocated = None;
    let mut reports = 0usize;
    // (channel, command, length, received, next sequence)
    let mut current: Option<(u32, u8, usize, usize, u8)> = None;
    while let Some(report) = device.next_outgoing() {
        reports += 1;
        assert!(reports <= MAX_QUEUED_MESSAGES * packet_count(MAX_MESSAGE_SIZE));
        let channel = u32::from_be_bytes([report[0], report[1], report[2], report[3]]);
        if let Some((ch, cmd, length, received, seq)) = current.take() {
            assert_eq!(report[4], seq, "continuation out of order");
            assert_eq!(channel, ch, "continuation on another channel");
            let received = received + (length - received).min(CONT_DATA_SIZE);
            if received < length {
                current = Some((ch, cmd, length, received, seq + 1));
            }
            continue;
        }
        assert_ne!(
            report[4] & 0x80,
            0,
            "message without an initialization packet"
        );
        let cmd = report[4] & 0x7F;
        let length = usize::from(u16::from_be_bytes([report[5], report[6]]));
        assert!(length <= MAX_MESSAGE_SIZE);
        match cmd {
            command::ERROR => {
                assert_eq!(length, 1);
                assert!(
                    KNOWN_ERRORS.contains(&report[7]),
                    "error {:#04x}",
                    report[7]
                );
            }
            command::KEEPALIVE => assert!(length == 1 && (report[7] == 1 || report[7] == 2)),
            command::INIT => {
                assert_eq!(length, 17);
                // Nonce (8 bytes) then the channel.
                let cid = u32::from_be_bytes([report[15], report[16], report[17], report[18]]);
                assert!(cid != 0 && cid != BROADCAST_CHANNEL);
                if channel == BROADCAST_CHANNEL {
                    allocated = Some(cid);
                } else {
                    assert_eq!(cid, channel);
                }
            }
            command::WINK | command::LOCK => assert_eq!(length, 0),
            command::PING | command::CBOR | command::MSG => {}
            other => panic!("unexpected command {other:#04x}"),
        }
        if length > INIT_DATA_SIZE {
            current = Some((channel, cmd, length, INIT_DATA_SIZE, 0));
        }
    }
    assert!(current.is_none(), "message cut short");
    allocated
}

fuzz_target!(|data: &[u8]| {
    let config = Config {
        // MSG served too, so both request kinds are exercised.
        capabilities: CAPABILITY_WINK | CAPABILITY_CBOR,
        ..Config::default()
    };
    let mut device = CtapHid::new(config, SEED);
    let mut now = 0u64;
    let mut taken: Option<Request> = None;
    let mut last_channel: Option<u32> = None;
    for record in data.chunks_exact(RECORD) {
        let Some((&control, report)) = record.split_first() else {
            continue;
        };
        let Ok(mut packet) = <[u8; PACKET_SIZE]>::try_from(report) else {
            continue;
        };
        now += STEPS[usize::from(control & 0x0F)];
        if control & 0x80 != 0
            && let Some(channel) = last_channel
        {
            packet[..4].copy_from_slice(&channel.to_be_bytes());
        }
        device.handle_packet(&packet, now);
        if control & 0x10 != 0 {
            device.poll(now);
        }
        if taken.is_none() {
            taken = device.take_request();
            if let Some(request) = &taken {
                assert!(request.payload.len() <= device.config().max_msg_size);
            }
        }
        if control & 0x20 != 0 {
            device.set_keepalive_status(KeepaliveStatus::UpNeeded);
        }
        if control & 0x40 != 0 || device.cancel_requested() {
            if let Some(request) = taken.take() {
                let echo = &request.payload[..request.payload.len().min(16)];
                device.respond(echo, now);
            }
        }
        while device.take_event().is_some() {}
        let _ = device.next_deadline();
        if let Some(channel) = drain(&mut device) {
            last_channel = Some(channel);
        }
    }
});
