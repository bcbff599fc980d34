//! The client against a real in-process daemon over UDP loopback.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers"
)]

mod common;

use std::time::Duration;

use authenticator_core::cbor::{self, Key, Members, Value};
use fidelio_client::{
    CAPABILITY_CBOR, CAPABILITY_NMSG, CAPABILITY_WINK, CtapHidClient, DeviceAddress, Error,
    HidError, MAX_MESSAGE_LEN, Transport, UdpTransport, command,
};

fn client() -> CtapHidClient<UdpTransport> {
    let address = common::start_daemon();
    CtapHidClient::new(UdpTransport::connect(address).unwrap())
}

fn decode_ok(response: &[u8]) -> Value {
    let (status, body) = response.split_first().expect("empty response");
    assert_eq!(*status, 0, "CTAP status {status:#04x}");
    cbor::decode(body).expect("CBOR body")
}

#[test]
fn init_allocates_distinct_channels() {
    let address = common::start_daemon();
    let mut first = CtapHidClient::new(UdpTransport::connect(address).unwrap());
    let mut second = CtapHidClient::new(UdpTransport::connect(address).unwrap());
    let a = first.init().unwrap();
    let b = second.init().unwrap();
    assert_eq!(a.protocol_version, 2);
    // CTAP2 and CTAP1/U2F: NMSG is not set.
    assert_eq!(a.capabilities, CAPABILITY_WINK | CAPABILITY_CBOR);
    assert_eq!(a.capabilities & CAPABILITY_NMSG, 0);
    assert!(a.msg());
    assert_ne!(a.channel, b.channel);
    for channel in [a.channel, b.channel] {
        assert_ne!(channel, 0);
        assert_ne!(channel, u32::MAX);
    }
    // Both channels work, interleaved.
    assert_eq!(first.ping(b"first").unwrap(), b"first");
    assert_eq!(second.ping(b"second").unwrap(), b"second");
    // A second INIT allocates another channel, which works too.
    let c = first.init().unwrap();
    assert_ne!(c.channel, a.channel);
    assert_eq!(first.ping(b"again").unwrap(), b"again");
}

/// Every length around a fragment boundary (57 + 59·k − 1, 57 + 59·k, 57 + 59·k + 1), from the
/// empty message to the longest one CTAPHID can carry.
#[test]
fn ping_echoes_every_fragment_boundary_up_to_7609_bytes() {
    let mut client = client();
    client.init().unwrap();
    let mut lengths = vec![0, 1];
    for k in 0..=128 {
        let boundary = 57 + 59 * k;
        lengths.extend([boundary - 1, boundary, boundary + 1]);
    }
    lengths.retain(|len| *len <= MAX_MESSAGE_LEN);
    lengths.dedup();
    assert_eq!(lengths.last(), Some(&7609));
    for len in lengths {
        let payload: Vec<u8> = (0..len).map(|i| (i * 7 + len).to_le_bytes()[0]).collect();
        let echo = client
            .ping(&payload)
            .unwrap_or_else(|e| panic!("ping of {len} bytes: {e}"));
        assert_eq!(echo.len(), len);
        assert_eq!(echo, payload, "ping of {len} bytes");
    }
}

#[test]
fn ping_longer_than_ctaphid_allows_is_refused_locally() {
    let mut client = client();
    assert!(matches!(
        client.ping(&vec![0; 7610]),
        Err(Error::MessageTooLong(7610))
    ));
}

#[test]
fn cbor_get_info() {
    let mut client = client();
    let info = decode_ok(&client.cbor(&[0x04]).unwrap());
    let members = Members::of(&info).unwrap();
    let versions = cbor::as_array(members.required(Key::Int(1)).unwrap()).unwrap();
    assert!(versions.contains(&cbor::text("FIDO_2_0")));
    assert_eq!(
        cbor::as_bytes(members.required(Key::Int(3)).unwrap())
            .unwrap()
            .len(),
        16
    );
    assert_eq!(
        cbor::as_int(members.required(Key::Int(5)).unwrap()).unwrap(),
        7609
    );
}

#[test]
fn unknown_ctap_command_answers_invalid_command() {
    let mut client = client();
    // CTAP1_ERR_INVALID_COMMAND, a CTAP status inside a successful CTAPHID exchange.
    assert_eq!(client.cbor(&[0x55]).unwrap(), [0x01]);
    // Same with parameters attached.
    assert_eq!(client.cbor(&[0x55, 0xA0]).unwrap(), [0x01]);
}

#[test]
fn unknown_ctaphid_command_is_err_invalid_cmd() {
    let mut client = client();
    match client.transact(0x55, b"?") {
        Err(Error::Device(HidError::InvalidCmd)) => {}
        other => panic!("{other:?}"),
    }
    // The channel still works afterwards.
    assert_eq!(client.ping(b"ok").unwrap(), b"ok");
}

#[test]
fn msg_carries_u2f_apdus_to_the_core() {
    let mut client = client();
    // U2F_VERSION, extended encoding as python-fido2 sends it.
    let version = [0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00];
    assert_eq!(
        client
            .transact(fidelio_ctaphid::command::MSG, &version)
            .unwrap(),
        b"U2F_V2\x90\x00"
    );
    // An unknown instruction is a status word, not a CTAPHID error.
    assert_eq!(
        client
            .transact(fidelio_ctaphid::command::MSG, &[0x00, 0x40, 0x00, 0x00])
            .unwrap(),
        [0x6D, 0x00]
    );
}

#[test]
fn empty_cbor_request_is_refused() {
    let mut client = client();
    // CTAPHID carries it; the core answers CTAP1_ERR_INVALID_LENGTH.
    assert_eq!(client.cbor(&[]).unwrap(), [0x03]);
}

#[test]
fn wink_and_cancel_on_an_idle_channel() {
    let mut client = client();
    client.wink().unwrap();
    // CANCEL is never answered; with nothing pending it changes nothing.
    client.cancel().unwrap();
    assert_eq!(client.ping(b"still here").unwrap(), b"still here");
    assert_eq!(client.cbor(&[0x04]).unwrap().first(), Some(&0x00));
}

#[test]
fn unallocated_channel_is_err_invalid_channel() {
    let address = common::start_daemon();
    let mut transport = UdpTransport::connect(address).unwrap();
    transport
        .send(&raw_init_packet(0x1234_5678, command::PING, b"x"))
        .unwrap();
    let answer = transport
        .receive(Duration::from_secs(2))
        .unwrap()
        .expect("an answer");
    assert_eq!(&answer[..4], &0x1234_5678u32.to_be_bytes());
    assert_eq!(answer[4], command::ERROR | 0x80);
    assert_eq!(HidError::from_code(answer[7]), HidError::InvalidChannel);
}

/// A single initialization packet, built by hand.
fn raw_init_packet(channel: u32, command: u8, payload: &[u8]) -> [u8; 64] {
    let mut report = [0u8; 64];
    report[..4].copy_from_slice(&channel.to_be_bytes());
    report[4] = command | 0x80;
    report[5..7].copy_from_slice(&u16::try_from(payload.len()).unwrap().to_be_bytes());
    report[7..7 + payload.len()].copy_from_slice(payload);
    report
}

#[test]
fn make_credential_and_get_assertion_over_udp() {
    let mut client = client();
    let hash = cbor::bytes(&[0x5A; 32]);
    let make = cbor::map(vec![
        (cbor::int(1), hash.clone()),
        (
            cbor::int(2),
            cbor::map(vec![(cbor::text("id"), cbor::text("example.com"))]),
        ),
        (
            cbor::int(3),
            cbor::map(vec![
                (cbor::text("id"), cbor::bytes(&[1; 16])),
                (cbor::text("name"), cbor::text("alice")),
            ]),
        ),
        (
            cbor::int(4),
            Value::Array(vec![cbor::map(vec![
                (cbor::text("alg"), cbor::int(-7)),
                (cbor::text("type"), cbor::text("public-key")),
            ])]),
        ),
    ]);
    let mut request = vec![0x01];
    cbor::encode(&make, &mut request);
    let made = decode_ok(&client.cbor(&request).unwrap());
    let auth_data = cbor::as_bytes(Members::of(&made).unwrap().required(Key::Int(2)).unwrap())
        .unwrap()
        .to_vec();
    let len = usize::from(u16::from_be_bytes([auth_data[53], auth_data[54]]));
    let credential_id = auth_data[55..55 + len].to_vec();

    let get = cbor::map(vec![
        (cbor::int(1), cbor::text("example.com")),
        (cbor::int(2), hash),
        (
            cbor::int(3),
            Value::Array(vec![cbor::map(vec![
                (cbor::text("id"), cbor::bytes(&credential_id)),
                (cbor::text("type"), cbor::text("public-key")),
            ])]),
        ),
    ]);
    let mut request = vec![0x02];
    cbor::encode(&get, &mut request);
    let asserted = decode_ok(&client.cbor(&request).unwrap());
    let members = Members::of(&asserted).unwrap();
    assert!(
        !cbor::as_bytes(members.required(Key::Int(3)).unwrap())
            .unwrap()
            .is_empty()
    );
}

#[test]
fn device_address_opens_a_working_client() {
    let address = common::start_daemon();
    let parsed: DeviceAddress = format!("udp:127.0.0.1:{}", address.port()).parse().unwrap();
    let mut client = CtapHidClient::new(parsed.open().unwrap());
    assert_eq!(client.ping(b"boxed").unwrap(), b"boxed");
}

#[test]
fn nothing_listening_is_a_clear_error() {
    // A port that was just free: bind, note it, let it go.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut client = CtapHidClient::new(UdpTransport::connect(("127.0.0.1", port)).unwrap());
    client.set_reply_timeout(Duration::from_secs(2));
    match client.init() {
        Err(Error::Io(error)) => {
            let text = error.to_string();
            assert!(text.contains("nothing answers on udp:127.0.0.1"), "{text}");
        }
        // Some kernels drop the ICMP error; then it is a timeout.
        Err(Error::Timeout(_)) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn udp_transport_without_polling() {
    let address = common::start_daemon();
    let mut transport = UdpTransport::connect(address).unwrap();
    transport.set_spin(Duration::ZERO);
    let mut client = CtapHidClient::new(transport);
    client.init().unwrap();
    for len in [0, 57, 58, 1000, MAX_MESSAGE_LEN] {
        let payload = vec![0xA5; len];
        assert_eq!(client.ping(&payload).unwrap(), payload);
    }
    assert_eq!(client.cbor(&[0x04]).unwrap().first(), Some(&0x00));
}

#[test]
fn udp_receive_waits_about_the_timeout() {
    // A peer that never answers (bound, so no ICMP error either).
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for spin in [
        Duration::ZERO,
        fidelio_client::DEFAULT_SPIN,
        Duration::from_millis(80),
    ] {
        let mut transport = UdpTransport::connect(silent.local_addr().unwrap()).unwrap();
        transport.set_spin(spin);
        let started = std::time::Instant::now();
        assert!(
            transport
                .receive(Duration::from_millis(50))
                .unwrap()
                .is_none()
        );
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(49),
            "spin {spin:?}: {waited:?}"
        );
        assert!(waited < Duration::from_secs(1), "spin {spin:?}: {waited:?}");
    }
    // Datagrams that are not one report are skipped.
    let mut transport = UdpTransport::connect(silent.local_addr().unwrap()).unwrap();
    silent.connect(transport.local_addr().unwrap()).unwrap();
    silent.send(&[1, 2, 3]).unwrap();
    let mut with_report_id = [0u8; 65];
    with_report_id[1] = 0x42;
    silent.send(&with_report_id).unwrap();
    let mut received = None;
    for _ in 0..10 {
        if let Some(report) = transport.receive(Duration::from_millis(200)).unwrap() {
            received = Some(report);
            break;
        }
    }
    assert_eq!(received.map(|r| r[0]), Some(0x42));
}
