//! `fidelio serve --usbip` driven by a USB/IP client written here from the protocol
//! description (what Linux's `usbip` tool and vhci-hcd send): list, import, enumeration on
//! endpoint 0, then CTAPHID over the interrupt endpoints up to a CBOR authenticatorGetInfo.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_debug_implementations,
    reason = "test code: a failed expectation should stop the test"
)]

mod common;

use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use authenticator_core::Config;
use fidelio_daemon::presence::PresenceMode;
use fidelio_daemon::{ServeOptions, StateLocation};

const BROADCAST: u32 = 0xFFFF_FFFF;
const EPIPE: i32 = -32;
const ECONNRESET: i32 = -104;

/// Starts `fidelio serve --ephemeral --usbip 127.0.0.1:PORT` on a free port.
fn start_daemon() -> SocketAddr {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let usbip = probe.local_addr().unwrap();
    drop(probe);
    let mut config = Config::security_key();
    config.reset_window_ms = None;
    let options = ServeOptions {
        config,
        state: StateLocation::Ephemeral,
        udp: SocketAddr::from(([127, 0, 0, 1], 0)),
        control: None,
        presence: PresenceMode::Auto,
        seed: Some(5),
        log_ctap: false,
        uhid: false,
        usbip: Some(usbip),
        browser: None,
        event_log: None,
    };
    common::serve_in_background(options);
    usbip
}

fn connect(address: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

fn read_exact(stream: &mut TcpStream, length: usize) -> Vec<u8> {
    let mut buffer = vec![0u8; length];
    stream.read_exact(&mut buffer).unwrap();
    buffer
}

fn be32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap())
}

fn op_request(code: u16) -> Vec<u8> {
    let mut request = 0x0111u16.to_be_bytes().to_vec();
    request.extend_from_slice(&code.to_be_bytes());
    request.extend_from_slice(&[0; 4]);
    request
}

/// The exported device as `struct usbip_usb_device` describes it.
#[derive(Debug)]
struct Exported {
    busid: String,
    busnum: u32,
    devnum: u32,
    speed: u32,
    vendor: u16,
    product: u16,
    configuration: u8,
    interfaces: u8,
}

fn parse_device(record: &[u8]) -> Exported {
    assert_eq!(record.len(), 312);
    let busid = &record[256..288];
    let end = busid.iter().position(|&b| b == 0).unwrap();
    Exported {
        busid: String::from_utf8(busid[..end].to_vec()).unwrap(),
        busnum: be32(record, 288),
        devnum: be32(record, 292),
        speed: be32(record, 296),
        vendor: u16::from_be_bytes([record[300], record[301]]),
        product: u16::from_be_bytes([record[302], record[303]]),
        configuration: record[309],
        interfaces: record[311],
    }
}

/// `usbip list -r`: the exported devices and their interfaces (class, subclass, protocol).
fn list(address: SocketAddr) -> Vec<(Exported, Vec<[u8; 3]>)> {
    let mut stream = connect(address);
    stream.write_all(&op_request(0x8005)).unwrap();
    let header = read_exact(&mut stream, 12);
    assert_eq!(
        header[..4],
        [0x01, 0x11, 0x00, 0x05],
        "OP_REP_DEVLIST 1.1.1"
    );
    assert_eq!(be32(&header, 4), 0, "status");
    let count = be32(&header, 8);
    let mut devices = Vec::new();
    for _ in 0..count {
        let device = parse_device(&read_exact(&mut stream, 312));
        let interfaces = (0..device.interfaces)
            .map(|_| {
                let interface = read_exact(&mut stream, 4);
                [interface[0], interface[1], interface[2]]
            })
            .collect();
        devices.push((device, interfaces));
    }
    // The server closes the connection after the list.
    let mut rest = Vec::new();
    assert_eq!(stream.read_to_end(&mut rest).unwrap(), 0);
    devices
}

/// `usbip attach`'s first step: OP_REQ_IMPORT. The status, and the stream when it is 0.
fn import(address: SocketAddr, busid: &str) -> (u32, Option<(TcpStream, Exported)>) {
    let mut stream = connect(address);
    let mut request = op_request(0x8003);
    let mut field = [0u8; 32];
    field[..busid.len()].copy_from_slice(busid.as_bytes());
    request.extend_from_slice(&field);
    stream.write_all(&request).unwrap();
    let header = read_exact(&mut stream, 8);
    assert_eq!(header[..4], [0x01, 0x11, 0x00, 0x03], "OP_REP_IMPORT 1.1.1");
    let status = be32(&header, 4);
    if status != 0 {
        return (status, None);
    }
    let device = parse_device(&read_exact(&mut stream, 312));
    (0, Some((stream, device)))
}

/// A completed URB.
#[derive(Debug)]
struct Completion {
    status: i32,
    actual: u32,
    data: Vec<u8>,
}

/// The attached device, seen from vhci-hcd: URBs out, completions back.
struct Urbs {
    stream: TcpStream,
    next_seqnum: u32,
    devid: u32,
    /// Whether each outstanding URB reads (its completion carries data).
    outstanding: HashMap<u32, bool>,
    done: HashMap<u32, Completion>,
    unlinked: HashMap<u32, i32>,
    /// The interrupt IN URBs, oldest first.
    in_urbs: VecDeque<u32>,
    ep_in: u32,
    ep_out: u32,
}

impl Urbs {
    fn new(stream: TcpStream, device: &Exported) -> Self {
        Self {
            stream,
            next_seqnum: 1,
            devid: (device.busnum << 16) | device.devnum,
            outstanding: HashMap::new(),
            done: HashMap::new(),
            unlinked: HashMap::new(),
            in_urbs: VecDeque::new(),
            ep_in: 0,
            ep_out: 0,
        }
    }

    fn submit(
        &mut self,
        device_to_host: bool,
        ep: u32,
        setup: [u8; 8],
        data: &[u8],
        length: u32,
    ) -> u32 {
        let seqnum = self.next_seqnum;
        self.next_seqnum += 1;
        let mut command = Vec::new();
        for word in [1, seqnum, self.devid, u32::from(device_to_host), ep] {
            command.extend_from_slice(&u32::to_be_bytes(word));
        }
        // transfer_flags, transfer_buffer_length, start_frame, number_of_packets, interval
        let flags = if device_to_host { 0x200 } else { 0 };
        for word in [flags, length, 0, 0, 5] {
            command.extend_from_slice(&u32::to_be_bytes(word));
        }
        command.extend_from_slice(&setup);
        if !device_to_host {
            command.extend_from_slice(data);
        }
        self.stream.write_all(&command).unwrap();
        self.outstanding.insert(seqnum, device_to_host);
        seqnum
    }

    fn unlink(&mut self, victim: u32) -> u32 {
        let seqnum = self.next_seqnum;
        self.next_seqnum += 1;
        let mut command = Vec::new();
        for word in [2, seqnum, self.devid, 0, 0, victim] {
            command.extend_from_slice(&u32::to_be_bytes(word));
        }
        command.extend_from_slice(&[0; 24]);
        self.stream.write_all(&command).unwrap();
        seqnum
    }

    /// Reads one reply from the device.
    fn receive(&mut self) {
        let header = read_exact(&mut self.stream, 48);
        let seqnum = be32(&header, 4);
        match be32(&header, 0) {
            3 => {
                let reads = self
                    .outstanding
                    .remove(&seqnum)
                    .unwrap_or_else(|| panic!("a completion for unknown URB {seqnum}"));
                let status = be32(&header, 20).cast_signed();
                let actual = be32(&header, 24);
                let data = if reads {
                    read_exact(&mut self.stream, usize::try_from(actual).unwrap())
                } else {
                    Vec::new()
                };
                self.done.insert(
                    seqnum,
                    Completion {
                        status,
                        actual,
                        data,
                    },
                );
            }
            4 => {
                self.unlinked
                    .insert(seqnum, be32(&header, 20).cast_signed());
            }
            other => panic!("unknown reply {other}"),
        }
    }

    fn wait(&mut self, seqnum: u32) -> Completion {
        loop {
            if let Some(done) = self.done.remove(&seqnum) {
                return done;
            }
            self.receive();
        }
    }

    fn control(&mut self, setup: [u8; 8], data: &[u8]) -> Completion {
        let device_to_host = setup[0] & 0x80 != 0;
        let length = if device_to_host {
            u32::from(u16::from_le_bytes([setup[6], setup[7]]))
        } else {
            u32::try_from(data.len()).unwrap()
        };
        let seqnum = self.submit(device_to_host, 0, setup, data, length);
        self.wait(seqnum)
    }

    fn descriptor(&mut self, kind: u8, index: u8, length: u16) -> Vec<u8> {
        let [lo, hi] = length.to_le_bytes();
        let done = self.control([0x80, 6, index, kind, 0x09, 0x04, lo, hi], &[]);
        assert_eq!(done.status, 0, "GET_DESCRIPTOR {kind:#x}");
        done.data
    }

    /// The enumeration Linux performs after the port reset (SET_ADDRESS stays in vhci-hcd).
    fn enumerate(&mut self) {
        let device = self.descriptor(1, 0, 64);
        assert_eq!(device.len(), 18);
        assert_eq!(
            u16::from_le_bytes([device[8], device[9]]),
            fidelio_usb::USB_VID
        );
        assert_eq!(
            u16::from_le_bytes([device[10], device[11]]),
            fidelio_usb::USB_PID
        );
        assert_eq!(device[7], 64, "bMaxPacketSize0");
        let head = self.descriptor(2, 0, 9);
        let total = u16::from_le_bytes([head[2], head[3]]);
        let config = self.descriptor(2, 0, total);
        assert_eq!(config.len(), usize::from(total));
        // Walk the descriptors for the interface class and the interrupt endpoints.
        let mut at = 0;
        while at < config.len() {
            let (length, kind) = (usize::from(config[at]), config[at + 1]);
            match kind {
                4 => assert_eq!(config[at + 5], 3, "a HID interface"),
                5 => {
                    let address = config[at + 2];
                    assert_eq!(config[at + 3], 3, "interrupt");
                    assert_eq!(u16::from_le_bytes([config[at + 4], config[at + 5]]), 64);
                    if address & 0x80 != 0 {
                        self.ep_in = u32::from(address & 0x0F);
                    } else {
                        self.ep_out = u32::from(address & 0x0F);
                    }
                }
                _ => {}
            }
            at += length;
        }
        assert!(
            self.ep_in != 0 && self.ep_out != 0,
            "both interrupt endpoints"
        );
        let product = self.descriptor(3, 2, 255);
        let units: Vec<u16> = product[2..]
            .chunks(2)
            .map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
            .collect();
        assert_eq!(String::from_utf16(&units).unwrap(), fidelio_usb::PRODUCT);

        assert_eq!(
            self.control([0x00, 9, 1, 0, 0, 0, 0, 0], &[]).status,
            0,
            "SET_CONFIGURATION"
        );
        // usbhid: SET_IDLE, the report descriptor.
        assert_eq!(
            self.control([0x21, 0x0A, 0, 0, 0, 0, 0, 0], &[]).status,
            0,
            "SET_IDLE"
        );
        let report = self.control([0x81, 6, 0, 0x22, 0, 0, 0xFF, 0], &[]);
        assert_eq!(report.status, 0);
        assert_eq!(report.data, fidelio_usb::report_descriptor());
    }

    /// Keeps one interrupt IN URB outstanding, as usbhid does.
    fn arm_in(&mut self) {
        if self.in_urbs.is_empty() {
            let seqnum = self.submit(true, self.ep_in, [0; 8], &[], 64);
            self.in_urbs.push_back(seqnum);
        }
    }

    fn send_report(&mut self, report: &[u8; 64]) {
        let seqnum = self.submit(false, self.ep_out, [0; 8], report, 64);
        let done = self.wait(seqnum);
        assert_eq!((done.status, done.actual), (0, 64), "interrupt OUT");
    }

    fn read_report(&mut self) -> [u8; 64] {
        self.arm_in();
        let seqnum = self.in_urbs.pop_front().unwrap();
        let done = self.wait(seqnum);
        assert_eq!(done.status, 0);
        self.arm_in();
        done.data.try_into().expect("a 64-byte report")
    }

    /// Sends a CTAPHID message and returns the answer (KEEPALIVEs skipped).
    fn transact(&mut self, channel: u32, command: u8, payload: &[u8]) -> (u8, Vec<u8>) {
        self.arm_in();
        let mut packet = [0u8; 64];
        packet[..4].copy_from_slice(&channel.to_be_bytes());
        packet[4] = 0x80 | command;
        packet[5..7].copy_from_slice(&u16::try_from(payload.len()).unwrap().to_be_bytes());
        let first = payload.len().min(57);
        packet[7..7 + first].copy_from_slice(&payload[..first]);
        self.send_report(&packet);
        for (sequence, chunk) in payload[first..].chunks(59).enumerate() {
            let mut packet = [0u8; 64];
            packet[..4].copy_from_slice(&channel.to_be_bytes());
            packet[4] = u8::try_from(sequence).unwrap();
            packet[5..5 + chunk.len()].copy_from_slice(chunk);
            self.send_report(&packet);
        }
        let head = loop {
            let report = self.read_report();
            assert_eq!(be32(&report, 0), channel, "answer on the channel asked");
            if report[4] != 0xBB {
                break report;
            }
        };
        let length = usize::from(u16::from_be_bytes([head[5], head[6]]));
        let mut answer = head[7..].to_vec();
        let mut sequence = 0u8;
        while answer.len() < length {
            let report = self.read_report();
            assert_eq!(be32(&report, 0), channel);
            assert_eq!(report[4], sequence, "continuation order");
            answer.extend_from_slice(&report[5..]);
            sequence += 1;
        }
        answer.truncate(length);
        (head[4] & 0x7F, answer)
    }

    /// CTAPHID_INIT on the broadcast channel: the new channel.
    fn allocate_channel(&mut self) -> u32 {
        let nonce = [0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88];
        let (command, answer) = self.transact(BROADCAST, 0x06, &nonce);
        assert_eq!(command, 0x06);
        assert_eq!(answer[..8], nonce, "the nonce comes back");
        assert_eq!(answer[12], 2, "CTAPHID protocol version");
        be32(&answer, 8)
    }
}

fn get_info_versions(urbs: &mut Urbs, channel: u32) -> Vec<String> {
    let (command, answer) = urbs.transact(channel, 0x10, &[0x04]);
    assert_eq!(command, 0x10, "CTAPHID_CBOR");
    assert_eq!(answer[0], 0, "CTAP2_OK");
    let info: ciborium::Value = ciborium::de::from_reader(&answer[1..]).expect("CBOR");
    let map = info.as_map().expect("getInfo is a CBOR map");
    let versions = map
        .iter()
        .find(|(key, _)| key.as_integer() == Some(1.into()))
        .and_then(|(_, value)| value.as_array())
        .expect("versions (0x01)");
    versions
        .iter()
        .map(|version| version.as_text().unwrap().to_owned())
        .collect()
}

#[test]
fn a_usbip_client_lists_imports_enumerates_and_gets_info() {
    let address = start_daemon();

    let devices = list(address);
    assert_eq!(devices.len(), 1);
    let (device, interfaces) = &devices[0];
    assert_eq!(device.busid, "1-1");
    assert_eq!(device.speed, 2, "full speed");
    assert_eq!(
        (device.vendor, device.product),
        (fidelio_usb::USB_VID, fidelio_usb::USB_PID)
    );
    assert_eq!(device.configuration, 0, "not configured yet");
    assert_eq!(interfaces, &vec![[3, 0, 0]], "one HID interface");

    assert_eq!(import(address, "2-7").0, 4, "unknown bus ID: ST_NODEV");
    let (status, attached) = import(address, "1-1");
    assert_eq!(status, 0);
    let (stream, device) = attached.unwrap();
    assert_eq!(device.busid, "1-1");
    assert_eq!(
        import(address, "1-1").0,
        2,
        "one host at a time: ST_DEV_BUSY"
    );

    let mut urbs = Urbs::new(stream, &device);
    urbs.enumerate();
    assert_eq!(list(address)[0].0.configuration, 1, "configured now");

    // GET_REPORT is not supported by the class: a STALL, -EPIPE; the pipe stays usable.
    let stalled = urbs.control([0xA1, 0x01, 0, 0x01, 0, 0, 64, 0], &[]);
    assert_eq!(stalled.status, EPIPE);
    assert_eq!(urbs.descriptor(1, 0, 18).len(), 18);

    let channel = urbs.allocate_channel();
    assert_ne!(channel, BROADCAST);
    let versions = get_info_versions(&mut urbs, channel);
    assert!(
        versions.iter().any(|v| v == "FIDO_2_1"),
        "versions: {versions:?}"
    );

    // A long PING comes back whole.
    let payload: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
    assert_eq!(urbs.transact(channel, 0x01, &payload), (0x01, payload));

    // Unlinking the waiting IN URB cancels it; unlinking a finished one reports 0.
    let waiting = urbs.in_urbs.pop_front().unwrap();
    let unlink = urbs.unlink(waiting);
    while !urbs.unlinked.contains_key(&unlink) {
        urbs.receive();
    }
    assert_eq!(urbs.unlinked[&unlink], ECONNRESET);
    urbs.outstanding.remove(&waiting);
    let again = urbs.unlink(waiting);
    while !urbs.unlinked.contains_key(&again) {
        urbs.receive();
    }
    assert_eq!(urbs.unlinked[&again], 0);
    // The device still answers afterwards.
    urbs.allocate_channel();

    // Detach, then attach again: the device starts over (unconfigured) and works.
    drop(urbs);
    let (stream, device) = import_when_free(address);
    let mut urbs = Urbs::new(stream, &device);
    urbs.enumerate();
    let channel = urbs.allocate_channel();
    assert!(get_info_versions(&mut urbs, channel).contains(&"FIDO_2_1".to_owned()));
}

#[test]
fn hostile_clients_are_dropped_and_the_device_survives() {
    let address = start_daemon();

    // Garbage instead of an operation: the connection is closed.
    let mut garbage = connect(address);
    garbage
        .write_all(&[0xDE, 0xAD, 0xBE, 0xEF, 1, 2, 3, 4])
        .unwrap();
    let mut rest = Vec::new();
    assert_eq!(garbage.read_to_end(&mut rest).unwrap_or(0), 0);

    // An attached client that sends an unknown command is dropped; one that claims a huge
    // transfer too; one that stops halfway through a header changes nothing.
    for bad in [
        {
            let mut command = vec![0u8; 48];
            command[3] = 0x77;
            command
        },
        {
            let mut command = Vec::new();
            for word in [1u32, 1, 0x0001_0001, 0, 1, 0, 0x7FFF_FFFF, 0, 0, 0, 0, 0] {
                command.extend_from_slice(&word.to_be_bytes());
            }
            command
        },
    ] {
        let (mut stream, _) = import_when_free(address);
        stream.write_all(&bad).unwrap();
        let mut rest = Vec::new();
        assert_eq!(
            stream.read_to_end(&mut rest).unwrap_or(0),
            0,
            "closed by the server"
        );
    }

    // Requests to endpoints that do not exist, stray OUT data, random control requests.
    let (stream, device) = import_when_free(address);
    let mut urbs = Urbs::new(stream, &device);
    urbs.enumerate();
    for ep in [7u32, 15, 200] {
        let seqnum = urbs.submit(false, ep, [0; 8], &[1, 2, 3], 3);
        assert_eq!(urbs.wait(seqnum).status, EPIPE, "OUT to endpoint {ep}");
        let seqnum = urbs.submit(true, ep, [0; 8], &[], 64);
        assert_eq!(urbs.wait(seqnum).status, EPIPE, "IN from endpoint {ep}");
    }
    // Short and odd-sized interrupt OUT transfers reach no one.
    for length in [0usize, 1, 63] {
        let data = vec![0xAB; length];
        let seqnum = urbs.submit(
            false,
            urbs.ep_out,
            [0; 8],
            &data,
            u32::try_from(length).unwrap(),
        );
        assert_eq!(urbs.wait(seqnum).status, 0);
    }
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    for _ in 0..300 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let mut setup = seed.to_le_bytes();
        setup[6] %= 100;
        setup[7] = 0;
        // Never a SET_CONFIGURATION to something else or a halt: that is legal and would
        // only make the rest of the test longer.
        if setup[1] == 9 || setup[1] == 3 || setup[1] == 1 {
            continue;
        }
        let data = vec![0x5A; usize::from(setup[6])];
        let done = urbs.control(setup, if setup[0] & 0x80 == 0 { &data } else { &[] });
        assert!(done.status == 0 || done.status == EPIPE, "{done:?}");
    }
    let channel = urbs.allocate_channel();
    assert!(get_info_versions(&mut urbs, channel).contains(&"FIDO_2_1".to_owned()));
}

/// Imports the device, waiting for the last host's detach to be noticed (ST_DEV_BUSY until
/// then).
fn import_when_free(address: SocketAddr) -> (TcpStream, Exported) {
    for _ in 0..100 {
        match import(address, "1-1") {
            (0, Some(attached)) => return attached,
            (2, _) => std::thread::sleep(Duration::from_millis(20)),
            (status, _) => panic!("import failed with status {status}"),
        }
    }
    panic!("the device stayed busy");
}

#[test]
fn a_taken_port_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let error = runtime
        .block_on(fidelio_daemon::usbip::UsbipLane::bind(address))
        .unwrap_err();
    let message = error.to_string();
    assert!(message.contains(&address.to_string()), "{message}");
    assert!(message.contains("--usbip"), "{message}");
}
