//! The class on a mock bus driven the way a host drives a full-speed device: enumeration,
//! the HID requests, then CTAPHID traffic on the interrupt endpoints.
//!
//! The mock is a `usb_device::bus::UsbBus` with one packet buffer per IN endpoint and a queue
//! per OUT endpoint; the `Host` below plays the host controller: it issues SETUP, DATA and
//! STATUS stages on endpoint 0, and takes IN reports when it "polls" the interrupt endpoint.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_debug_implementations,
    reason = "test code: a failed expectation should stop the test"
)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use fidelio_ctaphid::{BROADCAST_CHANNEL, Config, CtapHid, command};
use fidelio_usb::usb_device;
use fidelio_usb::usb_device::bus::{PollResult, UsbBus, UsbBusAllocator};
use fidelio_usb::usb_device::device::{UsbDevice, UsbDeviceState};
use fidelio_usb::usb_device::endpoint::{EndpointAddress, EndpointType};
use fidelio_usb::usb_device::{UsbDirection, UsbError};
use fidelio_usb::{CtapHidClass, REPORT_SIZE, WouldBlock};

const EP_COUNT: usize = 16;

#[derive(Default)]
struct State {
    /// Packets the host sent, per OUT endpoint; `true` marks a SETUP packet.
    out: [VecDeque<(bool, Vec<u8>)>; EP_COUNT],
    /// The packet each IN endpoint holds for the host.
    in_buffer: [Option<Vec<u8>>; EP_COUNT],
    /// IN endpoints whose packet the host took since the last poll.
    in_complete: u16,
    out_allocated: u16,
    in_allocated: u16,
    in_packet_size: [u16; EP_COUNT],
    in_interval: [u8; EP_COUNT],
    stalled_in: u16,
    stalled_out: u16,
    address: u8,
    reset_pending: bool,
    /// The interrupt IN endpoints refuse every write (WouldBlock), as a busy one does.
    block_in: bool,
}

#[derive(Clone, Default)]
struct MockBus(Arc<Mutex<State>>);

impl MockBus {
    fn state(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap()
    }
}

impl UsbBus for MockBus {
    fn alloc_ep(
        &mut self,
        dir: UsbDirection,
        addr: Option<EndpointAddress>,
        _ep_type: EndpointType,
        max_packet_size: u16,
        interval: u8,
    ) -> usb_device::Result<EndpointAddress> {
        let mut state = self.state();
        let used = match dir {
            UsbDirection::Out => state.out_allocated,
            UsbDirection::In => state.in_allocated,
        };
        let index = match addr {
            Some(addr) => addr.index(),
            None => (1..EP_COUNT)
                .find(|i| used & (1 << i) == 0)
                .ok_or(UsbError::EndpointOverflow)?,
        };
        if used & (1 << index) != 0 {
            return Err(UsbError::InvalidEndpoint);
        }
        match dir {
            UsbDirection::Out => state.out_allocated |= 1 << index,
            UsbDirection::In => {
                state.in_allocated |= 1 << index;
                state.in_packet_size[index] = max_packet_size;
                state.in_interval[index] = interval;
            }
        }
        Ok(EndpointAddress::from_parts(index, dir))
    }

    fn enable(&mut self) {}

    fn reset(&self) {
        let mut state = self.state();
        for queue in &mut state.out {
            queue.clear();
        }
        state.in_buffer = Default::default();
        state.in_complete = 0;
        state.stalled_in = 0;
        state.stalled_out = 0;
        state.address = 0;
    }

    fn set_device_address(&self, addr: u8) {
        self.state().address = addr;
    }

    fn write(&self, ep: EndpointAddress, buf: &[u8]) -> usb_device::Result<usize> {
        let mut state = self.state();
        let index = ep.index();
        if state.in_allocated & (1 << index) == 0 {
            return Err(UsbError::InvalidEndpoint);
        }
        if buf.len() > usize::from(state.in_packet_size[index]) {
            return Err(UsbError::BufferOverflow);
        }
        if (index != 0 && state.block_in) || state.in_buffer[index].is_some() {
            return Err(UsbError::WouldBlock);
        }
        state.in_buffer[index] = Some(buf.to_vec());
        Ok(buf.len())
    }

    fn read(&self, ep: EndpointAddress, buf: &mut [u8]) -> usb_device::Result<usize> {
        let mut state = self.state();
        let queue = &mut state.out[ep.index()];
        let Some((_, packet)) = queue.front() else {
            return Err(UsbError::WouldBlock);
        };
        if packet.len() > buf.len() {
            // Like a controller whose buffer overflowed: the packet is gone.
            queue.pop_front();
            return Err(UsbError::BufferOverflow);
        }
        let (_, packet) = queue.pop_front().unwrap();
        buf[..packet.len()].copy_from_slice(&packet);
        Ok(packet.len())
    }

    fn set_stalled(&self, ep: EndpointAddress, stalled: bool) {
        let mut state = self.state();
        let bit = 1u16 << ep.index();
        let flags = match ep.direction() {
            UsbDirection::In => &mut state.stalled_in,
            UsbDirection::Out => &mut state.stalled_out,
        };
        if stalled {
            *flags |= bit;
        } else {
            *flags &= !bit;
        }
    }

    fn is_stalled(&self, ep: EndpointAddress) -> bool {
        let state = self.state();
        let bit = 1u16 << ep.index();
        match ep.direction() {
            UsbDirection::In => state.stalled_in & bit != 0,
            UsbDirection::Out => state.stalled_out & bit != 0,
        }
    }

    fn suspend(&self) {}

    fn resume(&self) {}

    fn poll(&self) -> PollResult {
        let mut state = self.state();
        if std::mem::take(&mut state.reset_pending) {
            return PollResult::Reset;
        }
        let (mut ep_out, mut ep_setup) = (0u16, 0u16);
        for (index, queue) in state.out.iter().enumerate() {
            match queue.front() {
                Some((true, _)) => ep_setup |= 1 << index,
                Some((false, _)) => ep_out |= 1 << index,
                None => {}
            }
        }
        let ep_in_complete = std::mem::take(&mut state.in_complete);
        if ep_out | ep_setup | ep_in_complete == 0 {
            return PollResult::None;
        }
        PollResult::Data {
            ep_out,
            ep_in_complete,
            ep_setup,
        }
    }
}

/// A control transfer the device refused (STALL) or never finished.
#[derive(Debug, PartialEq, Eq)]
enum ControlError {
    Stall,
    NoAnswer,
}

struct Host {
    bus: MockBus,
    device: UsbDevice<'static, MockBus>,
    class: CtapHidClass<'static, MockBus>,
    hid: CtapHid,
    now_ms: u64,
}

impl Host {
    fn new() -> Self {
        let bus = MockBus::default();
        let alloc: &'static UsbBusAllocator<MockBus> =
            Box::leak(Box::new(UsbBusAllocator::new(bus.clone())));
        let class = CtapHidClass::new(alloc);
        let device = fidelio_usb::build_device(alloc, "0123456789ABCDEF").unwrap();
        let mut host = Self {
            bus,
            device,
            class,
            hid: CtapHid::new(Config::default(), 7),
            now_ms: 0,
        };
        // The host sees the device attach and resets the bus.
        host.bus.state().reset_pending = true;
        host.poll();
        host
    }

    fn poll(&mut self) -> bool {
        self.device.poll(&mut [&mut self.class])
    }

    /// Runs the device: polls the bus and pumps reports through CTAPHID.
    fn run(&mut self) {
        for _ in 0..4 {
            self.poll();
            self.class.pump(&mut self.hid, self.now_ms);
        }
    }

    /// One control transfer on endpoint 0: SETUP, DATA (either way), STATUS.
    fn control(&mut self, setup: [u8; 8], data_out: &[u8]) -> Result<Vec<u8>, ControlError> {
        let device_to_host = setup[0] & 0x80 != 0;
        let length = usize::from(u16::from_le_bytes([setup[6], setup[7]]));
        {
            let mut state = self.bus.state();
            // A SETUP clears a STALL on the control endpoint.
            state.stalled_in &= !1;
            state.stalled_out &= !1;
            state.in_buffer[0] = None;
            state.out[0].clear();
            state.out[0].push_back((true, setup.to_vec()));
            for chunk in data_out.chunks(64) {
                state.out[0].push_back((false, chunk.to_vec()));
            }
        }
        let mut collected = Vec::new();
        let mut data_done = !device_to_host;
        for _ in 0..64 {
            self.poll();
            let mut state = self.bus.state();
            if state.stalled_in & 1 != 0 || state.stalled_out & 1 != 0 {
                return Err(ControlError::Stall);
            }
            let Some(packet) = state.in_buffer[0].take() else {
                continue;
            };
            state.in_complete |= 1;
            if !data_done {
                collected.extend_from_slice(&packet);
                if packet.len() < 64 || collected.len() >= length {
                    data_done = true;
                    // STATUS stage of a control read: an empty OUT packet.
                    state.out[0].push_back((false, Vec::new()));
                }
            } else if device_to_host {
                panic!("a packet after the data stage: {packet:?}");
            } else {
                // STATUS stage of a control write: the empty IN packet.
                assert!(packet.is_empty(), "status stage with data: {packet:?}");
                drop(state);
                self.poll();
                return Ok(collected);
            }
            if data_done && device_to_host {
                drop(state);
                self.poll();
                self.poll();
                assert!(self.bus.state().out[0].is_empty());
                collected.truncate(length);
                return Ok(collected);
            }
        }
        Err(ControlError::NoAnswer)
    }

    fn get_descriptor(&mut self, kind: u8, index: u8, lang: u16, length: u16) -> Vec<u8> {
        let [lang_lo, lang_hi] = lang.to_le_bytes();
        let [len_lo, len_hi] = length.to_le_bytes();
        self.control(
            [0x80, 0x06, index, kind, lang_lo, lang_hi, len_lo, len_hi],
            &[],
        )
        .unwrap()
    }

    /// What a host does after the device attached, up to SET_CONFIGURATION.
    fn enumerate(&mut self) {
        let device = self.get_descriptor(1, 0, 0, 64);
        assert_eq!(device.len(), 18);
        self.control([0x00, 0x05, 9, 0, 0, 0, 0, 0], &[]).unwrap();
        assert_eq!(self.bus.state().address, 9);
        assert_eq!(self.device.state(), UsbDeviceState::Addressed);
        let head = self.get_descriptor(2, 0, 0, 9);
        let total = u16::from_le_bytes([head[2], head[3]]);
        assert_eq!(
            self.get_descriptor(2, 0, 0, total).len(),
            usize::from(total)
        );
        self.control([0x00, 0x09, 1, 0, 0, 0, 0, 0], &[]).unwrap();
        assert_eq!(self.device.state(), UsbDeviceState::Configured);
        // usbhid: SET_IDLE(0), then the report descriptor.
        self.control([0x21, 0x0A, 0, 0, 0, 0, 0, 0], &[]).unwrap();
        let report = self.get_descriptor(0x22, 0, 0, 0x100);
        assert_eq!(report, fidelio_usb::report_descriptor());
    }

    fn send_report(&mut self, packet: &[u8]) {
        self.bus.state().out[1].push_back((false, packet.to_vec()));
        self.run();
    }

    /// The host polls the interrupt IN endpoint once.
    fn take_report(&mut self) -> Option<[u8; 64]> {
        let packet = {
            let mut state = self.bus.state();
            let packet = state.in_buffer[1].take()?;
            state.in_complete |= 1 << 1;
            packet
        };
        self.run();
        Some(packet.try_into().expect("a 64-byte IN report"))
    }

    fn take_all_reports(&mut self) -> Vec<[u8; 64]> {
        std::iter::from_fn(|| self.take_report()).collect()
    }
}

fn init_packet(channel: u32, command: u8, payload: &[u8]) -> [u8; 64] {
    let mut packet = [0u8; 64];
    packet[..4].copy_from_slice(&channel.to_be_bytes());
    packet[4] = command | 0x80;
    packet[5..7].copy_from_slice(&u16::try_from(payload.len()).unwrap().to_be_bytes());
    let first = payload.len().min(57);
    packet[7..7 + first].copy_from_slice(&payload[..first]);
    packet
}

/// Every report of a message: initialization packet, then continuation packets.
fn message_packets(channel: u32, command: u8, payload: &[u8]) -> Vec<[u8; 64]> {
    let mut packets = vec![init_packet(channel, command, payload)];
    for (sequence, chunk) in payload.get(57..).unwrap_or_default().chunks(59).enumerate() {
        let mut packet = [0u8; 64];
        packet[..4].copy_from_slice(&channel.to_be_bytes());
        packet[4] = u8::try_from(sequence).unwrap();
        packet[5..5 + chunk.len()].copy_from_slice(chunk);
        packets.push(packet);
    }
    packets
}

/// Reassembles one message from reports: (channel, command, payload).
fn reassemble(reports: &[[u8; 64]]) -> (u32, u8, Vec<u8>) {
    let first = reports.first().expect("an initialization packet");
    let channel = u32::from_be_bytes(first[..4].try_into().unwrap());
    assert!(first[4] & 0x80 != 0, "not an initialization packet");
    let length = usize::from(u16::from_be_bytes([first[5], first[6]]));
    let mut payload = first[7..].to_vec();
    for (sequence, report) in reports[1..].iter().enumerate() {
        assert_eq!(u32::from_be_bytes(report[..4].try_into().unwrap()), channel);
        assert_eq!(
            usize::from(report[4]),
            sequence,
            "continuation out of order"
        );
        payload.extend_from_slice(&report[5..]);
    }
    payload.truncate(length);
    (channel, first[4] & 0x7F, payload)
}

/// INIT on the broadcast channel; returns the allocated channel.
fn allocate_channel(host: &mut Host) -> u32 {
    let nonce = *b"\x01\x02\x03\x04\x05\x06\x07\x08";
    host.send_report(&init_packet(BROADCAST_CHANNEL, command::INIT, &nonce));
    let reports = host.take_all_reports();
    assert_eq!(reports.len(), 1);
    let (channel, command, payload) = reassemble(&reports);
    assert_eq!(channel, BROADCAST_CHANNEL);
    assert_eq!(command, command::INIT);
    assert_eq!(payload.len(), 17);
    assert_eq!(payload[..8], nonce, "INIT echoes the nonce");
    u32::from_be_bytes(payload[8..12].try_into().unwrap())
}

#[test]
fn device_descriptor_carries_fidelio_identity() {
    let mut host = Host::new();
    let device = host.get_descriptor(1, 0, 0, 64);
    assert_eq!(device.len(), 18);
    assert_eq!(device[1], 1, "bDescriptorType DEVICE");
    assert_eq!(
        u16::from_le_bytes([device[2], device[3]]),
        0x0200,
        "USB 2.0"
    );
    assert_eq!(device[4..7], [0, 0, 0], "class defined by the interface");
    assert_eq!(device[7], 64, "bMaxPacketSize0");
    assert_eq!(
        u16::from_le_bytes([device[8], device[9]]),
        fidelio_usb::USB_VID
    );
    assert_eq!(
        u16::from_le_bytes([device[10], device[11]]),
        fidelio_usb::USB_PID
    );
    assert_eq!(
        u16::from_le_bytes([device[12], device[13]]),
        fidelio_usb::DEVICE_RELEASE
    );
    assert_eq!(
        device[14..18],
        [1, 2, 3, 1],
        "strings 1-3, one configuration"
    );

    // A host that asks for 8 bytes first (Windows, Linux with old_scheme_first) gets 8.
    assert_eq!(host.get_descriptor(1, 0, 0, 8), device[..8]);
}

#[test]
fn configuration_descriptor_describes_one_fido_hid_interface() {
    let mut host = Host::new();
    let head = host.get_descriptor(2, 0, 0, 9);
    let total = u16::from_le_bytes([head[2], head[3]]);
    let config = host.get_descriptor(2, 0, 0, 255);
    assert_eq!(config.len(), usize::from(total));
    assert_eq!(config.len(), 9 + 9 + 9 + 7 + 7);
    assert_eq!(config[4], 1, "one interface");
    assert_eq!(config[5], 1, "bConfigurationValue");
    assert_eq!(config[7] & 0x80, 0x80, "bmAttributes reserved bit");
    assert_eq!(config[7] & 0x40, 0, "bus powered");
    assert_eq!(config[8], 50, "100 mA in units of 2 mA");

    let interface = &config[9..18];
    assert_eq!(interface[1], 4, "INTERFACE");
    assert_eq!(interface[4], 2, "two endpoints");
    assert_eq!(
        interface[5..8],
        [3, 0, 0],
        "HID, no boot subclass, no protocol"
    );

    let hid = &config[18..27];
    assert_eq!(
        hid[..6],
        [9, 0x21, 0x10, 0x01, 0, 1],
        "HID 1.10, one descriptor"
    );
    assert_eq!(hid[6], 0x22, "a report descriptor follows");
    let report_length = usize::from(u16::from_le_bytes([hid[7], hid[8]]));
    assert_eq!(report_length, fidelio_usb::report_descriptor().len());

    let out = &config[27..34];
    let r#in = &config[34..41];
    assert_eq!(
        out[..7],
        [7, 5, 0x01, 0x03, 64, 0, 5],
        "interrupt OUT 1, 64 B, 5 ms"
    );
    assert_eq!(
        r#in[..7],
        [7, 5, 0x81, 0x03, 64, 0, 5],
        "interrupt IN 1, 64 B, 5 ms"
    );
    assert_eq!(fidelio_usb::POLL_INTERVAL_MS, 5);
}

fn string(host: &mut Host, index: u8) -> String {
    let raw = host.get_descriptor(3, index, 0x0409, 255);
    assert_eq!(usize::from(raw[0]), raw.len());
    assert_eq!(raw[1], 3);
    let units: Vec<u16> = raw[2..]
        .chunks(2)
        .map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
        .collect();
    String::from_utf16(&units).unwrap()
}

#[test]
fn strings_are_fidelio_s() {
    let mut host = Host::new();
    assert_eq!(host.get_descriptor(3, 0, 0, 255), [4, 3, 0x09, 0x04]);
    assert_eq!(string(&mut host, 1), fidelio_usb::MANUFACTURER);
    assert_eq!(string(&mut host, 2), fidelio_usb::PRODUCT);
    assert_eq!(string(&mut host, 3), "0123456789ABCDEF");
    assert_eq!(
        host.control([0x80, 0x06, 9, 3, 0x09, 0x04, 255, 0], &[]),
        Err(ControlError::Stall),
        "no string 9"
    );
}

#[test]
fn enumeration_and_hid_requests() {
    let mut host = Host::new();
    host.enumerate();

    // The HID descriptor on its own.
    let hid = host
        .control([0x81, 0x06, 0, 0x21, 0, 0, 9, 0], &[])
        .unwrap();
    assert_eq!(hid[..2], [9, 0x21]);
    // The report descriptor again, asked with the exact length.
    let length = u16::try_from(fidelio_usb::report_descriptor().len()).unwrap();
    let [lo, hi] = length.to_le_bytes();
    let report = host
        .control([0x81, 0x06, 0, 0x22, 0, 0, lo, hi], &[])
        .unwrap();
    assert_eq!(report, fidelio_usb::report_descriptor());
    // GET_REPORT is not supported: the device stalls, the host carries on.
    assert_eq!(
        host.control([0xA1, 0x01, 0, 0x01, 0, 0, 64, 0], &[]),
        Err(ControlError::Stall)
    );
    // GET_IDLE likewise; SET_IDLE is accepted.
    assert_eq!(
        host.control([0xA1, 0x02, 0, 0, 0, 0, 1, 0], &[]),
        Err(ControlError::Stall)
    );
    host.control([0x21, 0x0A, 0, 0, 0, 0, 0, 0], &[]).unwrap();
    // The device status, and the configuration back.
    assert_eq!(
        host.control([0x80, 0x00, 0, 0, 0, 0, 2, 0], &[]).unwrap(),
        [0, 0]
    );
    assert_eq!(
        host.control([0x80, 0x08, 0, 0, 0, 0, 1, 0], &[]).unwrap(),
        [1]
    );
    // After all that, reports still flow.
    allocate_channel(&mut host);
}

#[test]
fn init_on_the_broadcast_channel_is_answered_with_the_nonce() {
    let mut host = Host::new();
    host.enumerate();
    let first = allocate_channel(&mut host);
    let second = allocate_channel(&mut host);
    assert_ne!(first, second);
    assert!(host.hid.is_allocated(first) && host.hid.is_allocated(second));
}

#[test]
fn multi_packet_ping_is_echoed() {
    let mut host = Host::new();
    host.enumerate();
    let channel = allocate_channel(&mut host);
    let payload: Vec<u8> = (0..200u8).collect();
    let packets = message_packets(channel, command::PING, &payload);
    assert_eq!(packets.len(), 4);
    for packet in &packets {
        host.send_report(packet);
    }
    let reports = host.take_all_reports();
    assert_eq!(reports.len(), 4);
    assert_eq!(reassemble(&reports), (channel, command::PING, payload));
}

#[test]
fn a_busy_in_endpoint_loses_nothing_and_keeps_the_order() {
    let mut host = Host::new();
    host.enumerate();
    let channel = allocate_channel(&mut host);

    host.bus.state().block_in = true;
    let payload: Vec<u8> = (0..1000u32)
        .map(|i| u8::try_from(i * 7 % 251).unwrap())
        .collect();
    let packets = message_packets(channel, command::PING, &payload);
    for packet in &packets {
        host.send_report(packet);
    }
    // A WINK behind the PING echo: its answer must come after the whole echo.
    host.send_report(&init_packet(channel, command::WINK, &[]));
    for _ in 0..20 {
        host.run();
    }
    assert!(
        host.class.has_pending(),
        "the first report waits in the slot"
    );
    assert!(host.bus.state().in_buffer[1].is_none());

    // The endpoint frees up: everything comes out, once, in order.
    host.bus.state().block_in = false;
    host.run();
    let reports = host.take_all_reports();
    assert_eq!(reports.len(), packets.len() + 1);
    let (echo, wink) = reports.split_at(packets.len());
    assert_eq!(reassemble(echo), (channel, command::PING, payload));
    assert_eq!(reassemble(wink), (channel, command::WINK, Vec::new()));
    assert!(!host.class.has_pending());
}

#[test]
fn write_report_parks_one_report_and_refuses_the_next() {
    let mut host = Host::new();
    host.enumerate();
    host.bus.state().block_in = true;
    let (a, b, c) = ([0xAA; 64], [0xBB; 64], [0xCC; 64]);
    assert_eq!(host.class.write_report(&a), Ok(()), "parked");
    assert_eq!(host.class.write_report(&b), Err(WouldBlock), "slot taken");
    assert!(!host.class.flush());

    host.bus.state().block_in = false;
    // usb-device's poll gives the class a chance to flush.
    host.bus.state().in_complete |= 1 << 1;
    host.poll();
    assert_eq!(host.bus.state().in_buffer[1].as_deref(), Some(&a[..]));
    // The endpoint holds `a` until the host reads it: `b` is parked, `c` refused.
    assert_eq!(host.class.write_report(&b), Ok(()));
    assert_eq!(host.class.write_report(&c), Err(WouldBlock));
    assert_eq!(host.take_report(), Some(a));
    assert_eq!(host.take_report(), Some(b));
    assert_eq!(host.take_report(), None);
    assert_eq!(host.class.write_report(&c), Ok(()));
    assert_eq!(host.take_report(), Some(c));
}

#[test]
fn garbage_reports_are_dropped_or_refused_without_harm() {
    let mut host = Host::new();
    host.enumerate();
    // Wrong lengths: dropped and counted.
    for length in [0usize, 1, 7, 63] {
        host.send_report(&vec![0xFF; length]);
    }
    host.send_report(&[0x55; 65]); // 65 bytes without a leading report ID 0
    assert_eq!(host.class.dropped_reports(), 5);
    assert!(host.take_all_reports().is_empty());

    // 64 bytes of nonsense reach CTAPHID, which answers with errors or ignores them.
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..500 {
        let mut packet = [0u8; 64];
        for byte in &mut packet {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            *byte = seed.to_le_bytes()[0];
        }
        host.send_report(&packet);
        host.take_all_reports();
    }

    // A 65-byte report with report ID 0 is a report.
    let nonce = [9u8; 8];
    let mut with_id = vec![0u8];
    with_id.extend_from_slice(&init_packet(BROADCAST_CHANNEL, command::INIT, &nonce));
    host.send_report(&with_id);
    let reports = host.take_all_reports();
    let (_, command, payload) = reassemble(&reports);
    assert_eq!(command, command::INIT);
    assert_eq!(payload[..8], nonce);
}

#[test]
fn hostile_control_requests_do_not_panic() {
    let mut host = Host::new();
    host.enumerate();
    let mut seed = 0x0123_4567_89AB_CDEFu64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..2000 {
        let mut setup = next().to_le_bytes();
        // Mostly class and standard requests to interface 0 or the device.
        if next() % 2 == 0 {
            setup[4] = 0;
            setup[5] = 0;
        }
        // Not SET_ADDRESS/SET_CONFIGURATION to random values too often: they are legal.
        let data: Vec<u8> = (0..setup[6] % 200).collect();
        let data = if setup[0] & 0x80 == 0 { &data[..] } else { &[] };
        let _ = host.control(setup, data);
    }
    // Put the device back where a host would and check it still works.
    host.control([0x00, 0x09, 1, 0, 0, 0, 0, 0], &[]).unwrap();
    allocate_channel(&mut host);
}

#[test]
fn set_report_on_the_control_pipe_is_a_report_too() {
    let mut host = Host::new();
    host.enumerate();
    let nonce = [3u8; 8];
    let report = init_packet(BROADCAST_CHANNEL, command::INIT, &nonce);
    // SET_REPORT(Output, ID 0) to interface 0 with 64 bytes.
    host.control([0x21, 0x09, 0, 0x02, 0, 0, 64, 0], &report)
        .unwrap();
    host.run();
    let (_, command, payload) = reassemble(&host.take_all_reports());
    assert_eq!(command, command::INIT);
    assert_eq!(payload[..8], nonce);
    // A feature report is not.
    host.control([0x21, 0x09, 0, 0x03, 0, 0, 64, 0], &report)
        .unwrap();
    host.run();
    assert!(host.take_all_reports().is_empty());
}

#[test]
fn a_bus_reset_drops_the_pending_report_and_resets_ctaphid() {
    let mut host = Host::new();
    host.enumerate();
    let channel = allocate_channel(&mut host);
    host.bus.state().block_in = true;
    host.send_report(&init_packet(channel, command::WINK, &[]));
    assert!(host.class.has_pending());

    host.bus.state().reset_pending = true;
    host.poll();
    assert!(!host.class.has_pending());
    assert_eq!(host.device.state(), UsbDeviceState::Default);
    host.class.pump(&mut host.hid, 0);
    assert!(!host.hid.is_allocated(channel), "channels die with the bus");

    host.bus.state().block_in = false;
    host.enumerate();
    allocate_channel(&mut host);
}

#[test]
fn short_and_long_out_packets_do_not_starve_good_ones() {
    let mut host = Host::new();
    host.enumerate();
    {
        let mut state = host.bus.state();
        for _ in 0..20 {
            state.out[1].push_back((false, vec![1, 2, 3]));
        }
        let nonce = [5u8; 8];
        state.out[1].push_back((
            false,
            init_packet(BROADCAST_CHANNEL, command::INIT, &nonce).to_vec(),
        ));
    }
    // Eight skipped per read; the good report arrives within a few pumps.
    for _ in 0..4 {
        host.run();
    }
    let reports = host.take_all_reports();
    assert_eq!(reports.len(), 1);
    assert_eq!(host.class.dropped_reports(), 20);
}

#[test]
fn the_report_size_is_ctaphid_s() {
    assert_eq!(REPORT_SIZE, fidelio_ctaphid::PACKET_SIZE);
    // usage page 0xF1D0, usage 0x01: the first items of the descriptor.
    assert_eq!(
        fidelio_usb::report_descriptor()[..5],
        [0x06, 0xD0, 0xF1, 0x09, 0x01]
    );
}

#[test]
fn unused_endpoint_bookkeeping_is_sane() {
    let host = Host::new();
    let state = host.bus.state();
    assert_eq!(state.in_allocated, 0b11, "EP0 IN and the HID IN endpoint");
    assert_eq!(state.out_allocated, 0b11);
    assert_eq!(state.in_interval[1], 5);
}
