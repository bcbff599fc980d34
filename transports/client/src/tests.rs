//! The client against a scripted device: framing, keepalives, errors and timeouts without a
//! daemon.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use super::*;

const CHANNEL: u32 = 0x0102_0304;

/// A device that answers from a script: every `receive` pops the next report (or times out
/// when the script is empty); everything sent is recorded.
#[derive(Debug, Default)]
struct Scripted {
    replies: VecDeque<Report>,
    sent: Vec<Report>,
}

impl Transport for Scripted {
    fn send(&mut self, report: &Report) -> io::Result<()> {
        self.sent.push(*report);
        Ok(())
    }

    fn receive(&mut self, timeout: Duration) -> io::Result<Option<Report>> {
        match self.replies.pop_front() {
            Some(report) => Ok(Some(report)),
            None => {
                std::thread::sleep(timeout.min(Duration::from_millis(5)));
                Ok(None)
            }
        }
    }
}

fn init_packet(channel: u32, command: u8, length: usize, data: &[u8]) -> Report {
    let mut report = [0u8; PACKET_SIZE];
    report[..4].copy_from_slice(&channel.to_be_bytes());
    report[4] = command | 0x80;
    report[5..7].copy_from_slice(&u16::try_from(length).unwrap().to_be_bytes());
    report[7..7 + data.len()].copy_from_slice(data);
    report
}

fn message(channel: u32, command: u8, payload: &[u8]) -> Vec<Report> {
    fidelio_ctaphid::packets(channel, command, payload)
        .unwrap()
        .collect()
}

fn init_answer(nonce: [u8; 8], channel: u32) -> Report {
    let mut data = nonce.to_vec();
    data.extend_from_slice(&channel.to_be_bytes());
    data.extend_from_slice(&[
        2,
        0,
        1,
        0,
        CAPABILITY_WINK | CAPABILITY_CBOR | CAPABILITY_NMSG,
    ]);
    init_packet(BROADCAST_CHANNEL, command::INIT, data.len(), &data)
}

/// A client whose channel is already allocated.
fn ready_client(replies: Vec<Report>) -> CtapHidClient<Scripted> {
    let nonce = [7; 8];
    let mut script = vec![init_answer(nonce, CHANNEL)];
    script.extend(replies);
    let mut client = CtapHidClient::new(Scripted {
        replies: script.into(),
        sent: Vec::new(),
    });
    client.set_reply_timeout(Duration::from_millis(50));
    client.set_timeout(Duration::from_millis(50));
    client.init_with_nonce(nonce).unwrap();
    client.transport_mut().sent.clear();
    client
}

#[test]
fn init_skips_other_hosts_answers_and_takes_the_echoed_channel() {
    let nonce = [1, 2, 3, 4, 5, 6, 7, 8];
    let replies = vec![
        init_answer([9; 8], 0xAAAA_AAAA),            // another host's nonce
        init_packet(CHANNEL, command::PING, 0, &[]), // another channel's traffic
        init_answer(nonce, 0x1122_3344),
    ];
    let mut client = CtapHidClient::new(Scripted {
        replies: replies.into(),
        sent: Vec::new(),
    });
    let info = client.init_with_nonce(nonce).unwrap();
    assert_eq!(info.channel, 0x1122_3344);
    assert_eq!(info.protocol_version, 2);
    assert_eq!(info.device_version, (0, 1, 0));
    assert!(info.wink() && info.cbor() && !info.msg());
    assert_eq!(info.capability_names(), ["WINK", "CBOR", "NMSG"]);
    let sent = &client.transport().sent;
    assert_eq!(sent.len(), 1);
    assert_eq!(&sent[0][..7], &[0xFF, 0xFF, 0xFF, 0xFF, 0x86, 0, 8]);
    assert_eq!(&sent[0][7..15], &nonce);
    assert_eq!(client.info(), Some(&info));
}

#[test]
fn init_times_out_without_a_matching_echo() {
    let replies = vec![init_answer([9; 8], 0xAAAA_AAAA)];
    let mut client = CtapHidClient::new(Scripted {
        replies: replies.into(),
        sent: Vec::new(),
    });
    client.set_reply_timeout(Duration::from_millis(30));
    assert!(matches!(
        client.init_with_nonce([1; 8]),
        Err(Error::Timeout(_))
    ));
}

#[test]
fn init_rejects_a_reserved_channel() {
    let mut client = CtapHidClient::new(Scripted {
        replies: vec![init_answer([1; 8], BROADCAST_CHANNEL)].into(),
        sent: Vec::new(),
    });
    assert!(matches!(
        client.init_with_nonce([1; 8]),
        Err(Error::Protocol(_))
    ));
}

#[test]
fn init_reports_a_busy_device() {
    let mut client = CtapHidClient::new(Scripted {
        replies: vec![init_packet(BROADCAST_CHANNEL, command::ERROR, 1, &[0x06])].into(),
        sent: Vec::new(),
    });
    assert!(matches!(
        client.init_with_nonce([1; 8]),
        Err(Error::Device(HidError::ChannelBusy))
    ));
}

#[test]
fn requests_are_fragmented_57_then_59() {
    let payload: Vec<u8> = (0..=255u8).cycle().take(57 + 59 + 1).collect();
    let mut client = ready_client(message(CHANNEL, command::PING, &payload));
    assert_eq!(client.ping(&payload).unwrap(), payload);
    let sent = &client.transport().sent;
    assert_eq!(sent.len(), 3);
    assert_eq!(&sent[0][..7], &[1, 2, 3, 4, 0x81, 0, 117]);
    assert_eq!(&sent[0][7..], &payload[..57]);
    assert_eq!(&sent[1][..5], &[1, 2, 3, 4, 0]);
    assert_eq!(&sent[1][5..], &payload[57..116]);
    assert_eq!(&sent[2][..5], &[1, 2, 3, 4, 1]);
    assert_eq!(sent[2][5], payload[116]);
    assert!(sent[2][6..].iter().all(|b| *b == 0));
}

#[test]
fn answers_are_reassembled_across_keepalives_and_foreign_packets() {
    let response: Vec<u8> = (0..300u16).map(|i| (i % 251).to_le_bytes()[0]).collect();
    let packets = message(CHANNEL, command::CBOR, &response);
    let mut replies = vec![
        init_packet(CHANNEL, command::KEEPALIVE, 1, &[1]),
        init_packet(CHANNEL, command::KEEPALIVE, 1, &[2]),
        init_packet(0x0909_0909, command::CBOR, 1, &[0]),
        init_packet(CHANNEL, command::KEEPALIVE, 1, &[2]),
    ];
    replies.extend(packets);
    let mut client = ready_client(replies);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    client.on_keepalive(move |status| {
        log.lock().unwrap().push(status);
        KeepaliveAction::Continue
    });
    assert_eq!(client.cbor(&[0x04]).unwrap(), response);
    assert_eq!(
        *seen.lock().unwrap(),
        [
            Keepalive::Processing,
            Keepalive::UpNeeded,
            Keepalive::UpNeeded
        ]
    );
}

#[test]
fn the_keepalive_callback_can_cancel() {
    let replies = vec![
        init_packet(CHANNEL, command::KEEPALIVE, 1, &[2]),
        init_packet(CHANNEL, command::KEEPALIVE, 1, &[2]),
        init_packet(CHANNEL, command::CBOR, 1, &[0x2D]),
    ];
    let mut client = ready_client(replies);
    client.on_keepalive(|_| KeepaliveAction::Cancel);
    assert_eq!(client.cbor(&[0x02]).unwrap(), [0x2D]);
    let sent = &client.transport().sent;
    // The request, then exactly one CANCEL.
    assert_eq!(sent.len(), 2);
    assert_eq!(&sent[1][..7], &[1, 2, 3, 4, 0x91, 0, 0]);
}

#[test]
fn error_packets_become_typed_errors() {
    for (code, expected) in [
        (0x01, HidError::InvalidCmd),
        (0x03, HidError::InvalidLen),
        (0x06, HidError::ChannelBusy),
        (0x0B, HidError::InvalidChannel),
        (0x7F, HidError::Other),
        (0x42, HidError::Unknown(0x42)),
    ] {
        let mut client = ready_client(vec![init_packet(CHANNEL, command::ERROR, 1, &[code])]);
        match client.transact(0x55, &[]) {
            Err(Error::Device(error)) => {
                assert_eq!(error, expected);
                assert_eq!(error.code(), code);
                assert_eq!(HidError::from_code(code), error);
            }
            other => panic!("{code:#04x}: {other:?}"),
        }
    }
    assert_eq!(
        Error::Device(HidError::InvalidCmd).to_string(),
        "the device answered CTAPHID ERR_INVALID_CMD (0x01)"
    );
}

#[test]
fn out_of_sequence_continuations_are_protocol_errors() {
    let mut packets = message(CHANNEL, command::PING, &[5; 200]);
    packets.swap(1, 2);
    let mut client = ready_client(packets);
    assert!(matches!(client.ping(&[5; 200]), Err(Error::Protocol(_))));
}

#[test]
fn another_command_in_answer_is_an_error() {
    let mut client = ready_client(vec![init_packet(CHANNEL, command::WINK, 0, &[])]);
    assert!(matches!(
        client.ping(b"x"),
        Err(Error::UnexpectedCommand {
            expected: 0x01,
            received: 0x08
        })
    ));
}

#[test]
fn a_different_echo_is_an_error() {
    let mut client = ready_client(message(CHANNEL, command::PING, b"y"));
    assert!(matches!(client.ping(b"x"), Err(Error::Protocol(_))));
}

#[test]
fn a_silent_device_times_out_and_a_cbor_request_is_cancelled() {
    let mut client = ready_client(vec![init_packet(CHANNEL, command::KEEPALIVE, 1, &[1])]);
    let started = Instant::now();
    assert!(matches!(client.cbor(&[0x04]), Err(Error::Timeout(_))));
    assert!(started.elapsed() >= Duration::from_millis(50));
    let sent = &client.transport().sent;
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[1][4], command::CANCEL | 0x80);
}

#[test]
fn too_long_requests_are_refused_before_sending() {
    let mut client = ready_client(Vec::new());
    let long = vec![0; MAX_MESSAGE_LEN + 1];
    assert!(matches!(
        client.ping(&long),
        Err(Error::MessageTooLong(7610))
    ));
    assert!(client.transport().sent.is_empty());
}

#[test]
fn the_first_request_allocates_a_channel() {
    // No explicit init: the INIT goes out first, with a random nonce the script cannot know,
    // so the scripted answer never matches and the call times out after sending INIT alone.
    let mut client = CtapHidClient::new(Scripted::default());
    client.set_reply_timeout(Duration::from_millis(20));
    assert!(matches!(client.ping(b"x"), Err(Error::Timeout(_))));
    let sent = &client.transport().sent;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0][4], command::INIT | 0x80);
}

#[test]
fn cancel_without_a_channel_sends_nothing() {
    let mut client = CtapHidClient::new(Scripted::default());
    client.cancel().unwrap();
    assert!(client.transport().sent.is_empty());
    let mut client = ready_client(Vec::new());
    client.cancel().unwrap();
    assert_eq!(&client.transport().sent[0][..7], &[1, 2, 3, 4, 0x91, 0, 0]);
}

#[test]
fn device_addresses_parse() {
    let udp = |host: &str, port| DeviceAddress::Udp {
        host: host.into(),
        port,
    };
    for (text, expected) in [
        ("udp:127.0.0.1:8111", udp("127.0.0.1", 8111)),
        ("udp:localhost:1", udp("localhost", 1)),
        ("udp:[::1]:8111", udp("::1", 8111)),
        ("  udp:host:65535 ", udp("host", 65535)),
        (
            "hid:/dev/hidraw0",
            DeviceAddress::Hid("/dev/hidraw0".into()),
        ),
    ] {
        let parsed: DeviceAddress = text.parse().unwrap();
        assert_eq!(parsed, expected, "{text}");
        assert_eq!(
            parsed.to_string().parse::<DeviceAddress>().unwrap(),
            expected
        );
    }
    assert_eq!(udp("::1", 8111).to_string(), "udp:[::1]:8111");
}

#[test]
fn device_address_errors_say_what_is_expected() {
    for (text, needle) in [
        ("", "empty device address"),
        ("udp:", "has no port"),
        ("udp:localhost", "has no port"),
        ("udp::8111", "has no host"),
        ("udp:localhost:0", "is not a port number"),
        ("udp:localhost:99999", "is not a port number"),
        ("udp:localhost:http", "is not a port number"),
        ("udp:::1:8111", "brackets"),
        ("udp:[::1:8111", "unclosed"),
        ("udp:[::1]", "has no port"),
        ("hid:", "names no device"),
        ("127.0.0.1:8111", "did you mean udp:127.0.0.1:8111?"),
        ("/dev/hidraw1", "did you mean hid:/dev/hidraw1?"),
        ("usb:1", "use udp:HOST:PORT"),
    ] {
        let error = text.parse::<DeviceAddress>().unwrap_err().to_string();
        assert!(error.contains(needle), "{text:?}: {error}");
    }
}

#[cfg(not(feature = "hidapi"))]
#[test]
fn hid_addresses_need_the_feature() {
    let address: DeviceAddress = "hid:/dev/hidraw0".parse().unwrap();
    let error = address.open().err().unwrap();
    assert!(error.to_string().contains("hidapi"), "{error}");
}

#[test]
fn keepalive_codes() {
    assert_eq!(Keepalive::from_code(1), Keepalive::Processing);
    assert_eq!(Keepalive::from_code(2), Keepalive::UpNeeded);
    assert_eq!(Keepalive::from_code(9), Keepalive::Other(9));
}

#[cfg(feature = "hidapi")]
#[test]
fn a_missing_hid_device_is_a_clear_error() {
    let address: DeviceAddress = "hid:/nonexistent/hidraw99".parse().unwrap();
    let error = address.open().err().unwrap().to_string();
    assert!(error.contains("/nonexistent/hidraw99"), "{error}");
}
