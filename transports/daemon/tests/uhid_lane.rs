//! The UHID lane in front of a real device loop, with a fake kernel on the other end of a
//! datagram socket pair: hidraw-style writes (report number 0 + 64 bytes) become CTAPHID
//! requests, the answers come back as `UHID_INPUT2`, UDP peers see none of it, and shutdown
//! sends `UHID_DESTROY`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed expectation should stop the test"
)]

use std::cell::RefCell;
use std::os::unix::net::UnixDatagram;
use std::rc::Rc;
use std::time::Duration;

use authenticator_core::{Authenticator, Config, MemoryStore};
use fidelio_daemon::device::{self, DeviceOptions, Lanes, Outbound, Peer};
use fidelio_daemon::presence::{DaemonPresence, PresenceMode, PresenceSignals};
use fidelio_daemon::uhid::{self, DeviceIdentity, EventIo, UhidLane, event_type, offset};
use fidelio_host::HostPlatform;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tokio::sync::{mpsc, oneshot};

/// `/dev/uhid` stand-in: a datagram socket keeps one event per read, as the kernel does.
#[derive(Debug)]
struct FakeUhid(UnixDatagram);

impl EventIo for FakeUhid {
    fn read_event(&self, buffer: &mut [u8]) -> std::io::Result<usize> {
        self.0.recv(buffer)
    }

    fn write_event(&self, event: &[u8]) -> std::io::Result<usize> {
        self.0.send(event)
    }
}

/// Records what the device sends to UDP peers.
#[derive(Default)]
struct UdpRecorder(RefCell<Vec<Peer>>);

impl Outbound for UdpRecorder {
    fn send(&self, to: &Peer, _packet: &[u8; 64]) {
        if matches!(to, Peer::Udp(_)) {
            self.0.borrow_mut().push(*to);
        }
    }
}

/// The kernel's end.
struct Kernel(UnixDatagram);

impl Kernel {
    /// A host writes `report` to the hidraw node: report number 0 first.
    fn host_writes(&self, report: &[u8; 64]) {
        let mut event = vec![0u8; uhid::EVENT_SIZE];
        event[..4].copy_from_slice(&event_type::OUTPUT.to_ne_bytes());
        event[offset::OUTPUT_DATA] = 0;
        event[offset::OUTPUT_DATA + 1..offset::OUTPUT_DATA + 65].copy_from_slice(report);
        event[offset::OUTPUT_SIZE..offset::OUTPUT_SIZE + 2].copy_from_slice(&65u16.to_ne_bytes());
        event[offset::OUTPUT_RTYPE] = uhid::report_type::OUTPUT;
        self.0.send(&event).unwrap();
    }

    /// The next event from the lane.
    fn next(&self) -> Vec<u8> {
        let mut buffer = vec![0u8; uhid::EVENT_SIZE];
        let len = self.0.recv(&mut buffer).expect("an event from the lane");
        buffer.truncate(len);
        buffer
    }

    /// The next input report a host would read from the hidraw node.
    fn host_reads(&self) -> [u8; 64] {
        let event = self.next();
        assert_eq!(event.len(), uhid::INPUT2_LEN);
        assert_eq!(
            u32::from_ne_bytes(event[..4].try_into().unwrap()),
            event_type::INPUT2
        );
        assert_eq!(
            &event[offset::INPUT2_SIZE..offset::INPUT2_SIZE + 2],
            &64u16.to_ne_bytes()
        );
        event[offset::INPUT2_DATA..].try_into().unwrap()
    }
}

fn init_packet(channel: u32, command: u8, payload: &[u8]) -> [u8; 64] {
    let mut packet = [0u8; 64];
    packet[..4].copy_from_slice(&channel.to_be_bytes());
    packet[4] = command | 0x80;
    packet[5..7].copy_from_slice(&u16::try_from(payload.len()).unwrap().to_be_bytes());
    packet[7..7 + payload.len()].copy_from_slice(payload);
    packet
}

#[test]
fn a_host_talks_ctaphid_through_the_uhid_lane() {
    let (ours, theirs) = UnixDatagram::pair().unwrap();
    theirs
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let kernel = Kernel(theirs);
    let lane = UhidLane::create(FakeUhid(ours), &DeviceIdentity::fidelio("fidelio-test")).unwrap();
    let create = kernel.next();
    assert_eq!(create.len(), uhid::EVENT_SIZE);
    assert_eq!(
        u32::from_ne_bytes(create[..4].try_into().unwrap()),
        event_type::CREATE2
    );

    let (inbound_tx, inbound_rx) = mpsc::channel(64);
    let reader = lane.spawn_reader(inbound_tx).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();

    // The device loop, on its own thread (the core is !Send: everything is built there), as
    // `fidelio serve` runs it: the lane is dropped — UHID_DESTROY — after the loop ends.
    let device = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let local = tokio::task::LocalSet::new();
        let udp = Rc::new(UdpRecorder::default());
        let mut lanes = Lanes::new();
        lanes.push(udp.clone());
        lanes.push(lane.outbound());
        let signals = Rc::new(PresenceSignals::default());
        let presence = DaemonPresence::new(PresenceMode::Auto, signals.clone(), None);
        let authenticator = Authenticator::new(
            HostPlatform::new(ChaCha20Rng::seed_from_u64(3), MemoryStore::new(), presence),
            Config::security_key(),
        );
        let (_control_tx, control_rx) = mpsc::channel(1);
        let options = DeviceOptions {
            log_ctap: false,
            channel_seed: 9,
            ctaphid: fidelio_ctaphid::Config::default(),
        };
        local.block_on(
            &runtime,
            device::run(
                authenticator,
                signals,
                options,
                inbound_rx,
                control_rx,
                Rc::new(lanes),
                async {
                    let _ = stopped.await;
                },
            ),
        );
        drop(lane);
        udp.0.borrow().len()
    });

    // CTAPHID_INIT on the broadcast channel.
    let nonce = [1, 2, 3, 4, 5, 6, 7, 8];
    kernel.host_writes(&init_packet(0xFFFF_FFFF, 0x06, &nonce));
    let answer = kernel.host_reads();
    assert_eq!(&answer[..4], &[0xFF; 4]);
    assert_eq!(answer[4], 0x86);
    assert_eq!(&answer[7..15], &nonce);
    let channel = u32::from_be_bytes(answer[15..19].try_into().unwrap());
    assert_ne!(channel, 0xFFFF_FFFF);

    // authenticatorGetInfo on the new channel: the answer starts with CTAP2_OK.
    kernel.host_writes(&init_packet(channel, 0x10, &[0x04]));
    let first = kernel.host_reads();
    assert_eq!(u32::from_be_bytes(first[..4].try_into().unwrap()), channel);
    assert_eq!(first[4], 0x90);
    let len = usize::from(u16::from_be_bytes([first[5], first[6]]));
    assert!(len > 50, "getInfo answered {len} bytes");
    assert_eq!(first[7], 0x00, "CTAP2_OK");
    // The rest of the answer follows in continuation packets (sequence 0, 1, …).
    let mut received = 57;
    let mut sequence = 0;
    while received < len {
        let next = kernel.host_reads();
        assert_eq!(u32::from_be_bytes(next[..4].try_into().unwrap()), channel);
        assert_eq!(next[4], sequence);
        sequence += 1;
        received += 59;
    }

    // Shutdown: the device loop ends, the lane removes the device.
    stop.send(()).unwrap();
    let udp_reports = device.join().unwrap();
    assert_eq!(udp_reports, 0, "nothing went to UDP peers");
    assert_eq!(kernel.next(), event_type::DESTROY.to_ne_bytes());
    // The kernel confirms with UHID_STOP; the reader ends.
    let mut stop_event = vec![0u8; uhid::EVENT_SIZE];
    stop_event[..4].copy_from_slice(&event_type::STOP.to_ne_bytes());
    kernel.0.send(&stop_event).unwrap();
    reader.join().unwrap();
}
