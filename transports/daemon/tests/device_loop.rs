//! The device loop with a presence request left pending: KEEPALIVE UPNEEDED while waiting,
//! CHANNEL_BUSY for other channels, CANCEL → CTAP2_ERR_KEEPALIVE_CANCEL, power cycle.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed expectation should stop the test"
)]

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use authenticator_core::{Authenticator, Config, MemoryStore};
use fidelio_daemon::device::{self, ControlCommand, DeviceOptions, Inbound, Outbound, Peer};
use fidelio_daemon::presence::{DaemonPresence, PresenceMode, PresenceSignals, PromptQuestion};
use fidelio_host::HostPlatform;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tokio::sync::{mpsc, oneshot};

#[derive(Default)]
struct Collected(RefCell<Vec<(Peer, [u8; 64])>>);

impl Outbound for Collected {
    fn send(&self, to: &Peer, packet: &[u8; 64]) {
        self.0.borrow_mut().push((*to, *packet));
    }
}

fn peer(port: u16) -> Peer {
    Peer::Udp(SocketAddr::from(([127, 0, 0, 1], port)))
}

fn init_packet(channel: u32, command: u8, payload: &[u8]) -> [u8; 64] {
    let mut packet = [0u8; 64];
    packet[..4].copy_from_slice(&channel.to_be_bytes());
    packet[4] = command | 0x80;
    let len = u16::try_from(payload.len()).unwrap();
    packet[5..7].copy_from_slice(&len.to_be_bytes());
    packet[7..7 + payload.len()].copy_from_slice(payload);
    packet
}

fn channel_of(packet: &[u8; 64]) -> u32 {
    u32::from_be_bytes(packet[..4].try_into().unwrap())
}

struct Harness {
    inbound: mpsc::Sender<Inbound>,
    control: mpsc::Sender<device::ControlRequest>,
    out: Rc<Collected>,
    questions: mpsc::UnboundedReceiver<PromptQuestion>,
}

impl Harness {
    async fn send(&self, from: u16, packet: [u8; 64]) {
        self.inbound
            .send(Inbound {
                packet,
                from: peer(from),
            })
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    fn take(&self) -> Vec<(Peer, [u8; 64])> {
        std::mem::take(&mut *self.out.0.borrow_mut())
    }

    /// INIT on the broadcast channel; returns the allocated channel.
    async fn allocate(&self, from: u16) -> u32 {
        self.send(
            from,
            init_packet(0xFFFF_FFFF, 0x06, &[1, 2, 3, 4, 5, 6, 7, 8]),
        )
        .await;
        let out = self.take();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, peer(from));
        u32::from_be_bytes(out[0].1[15..19].try_into().unwrap())
    }
}

fn start(local: &tokio::task::LocalSet) -> Harness {
    let (inbound, inbound_rx) = mpsc::channel(64);
    let (control, control_rx) = mpsc::channel(4);
    let (questions_tx, questions) = mpsc::unbounded_channel();
    let signals = Rc::new(PresenceSignals::default());
    let presence = DaemonPresence::new(PresenceMode::Prompt, signals.clone(), Some(questions_tx));
    let mut config = Config::security_key();
    config.reset_window_ms = None;
    let authenticator = Authenticator::new(
        HostPlatform::new(ChaCha20Rng::seed_from_u64(1), MemoryStore::new(), presence),
        config,
    );
    let out = Rc::new(Collected::default());
    let options = DeviceOptions {
        log_ctap: true,
        channel_seed: 5,
        ctaphid: fidelio_ctaphid::Config::default(),
    };
    local.spawn_local(device::run(
        authenticator,
        signals,
        options,
        inbound_rx,
        control_rx,
        out.clone(),
        std::future::pending(),
    ));
    Harness {
        inbound,
        control,
        out,
        questions,
    }
}

#[tokio::test(flavor = "current_thread")]
async fn keepalive_busy_cancel_and_power_cycle() {
    let local = tokio::task::LocalSet::new();
    let mut h = start(&local);
    local
        .run_until(async move {
            let a = h.allocate(1000).await;
            let b = h.allocate(2000).await;
            assert_ne!(a, b);

            // authenticatorSelection on A waits for the user (prompt).
            h.send(1000, init_packet(a, 0x10, &[0x0B])).await;
            let question = h.questions.recv().await.unwrap();
            assert!(
                question.text.contains("select this authenticator"),
                "{}",
                question.text
            );

            // While waiting: KEEPALIVE with UPNEEDED (2) to A, about every 100 ms.
            tokio::time::sleep(Duration::from_millis(350)).await;
            let keepalives: Vec<_> = h.take().into_iter().filter(|(_, p)| p[4] == 0xBB).collect();
            assert!(
                (2..=5).contains(&keepalives.len()),
                "{} keepalives",
                keepalives.len()
            );
            for (to, packet) in &keepalives {
                assert_eq!(*to, peer(1000));
                assert_eq!(channel_of(packet), a);
                assert_eq!(packet[7], 2, "UPNEEDED");
            }

            // Another channel is told the device is busy.
            h.send(2000, init_packet(b, 0x10, &[0x04])).await;
            let busy = h.take();
            let error = busy
                .iter()
                .find(|(_, p)| p[4] == 0xBF)
                .expect("an ERROR packet");
            assert_eq!(error.0, peer(2000));
            assert_eq!(error.1[7], 0x06, "ERR_CHANNEL_BUSY");

            // CANCEL ends the wait with CTAP2_ERR_KEEPALIVE_CANCEL on A.
            h.send(1000, init_packet(a, 0x11, &[])).await;
            tokio::time::sleep(Duration::from_millis(30)).await;
            let answers: Vec<_> = h.take().into_iter().filter(|(_, p)| p[4] == 0x90).collect();
            assert_eq!(answers.len(), 1);
            assert_eq!(answers[0].0, peer(1000));
            assert_eq!(&answers[0].1[5..8], &[0, 1, 0x2D]);
            drop(question);

            // B works now.
            h.send(2000, init_packet(b, 0x10, &[0x04])).await;
            let info: Vec<_> = h.take().into_iter().filter(|(_, p)| p[4] == 0x90).collect();
            assert_eq!(info.len(), 1);
            assert_eq!(info[0].1[7], 0x00, "getInfo OK");

            // Power cycle: channels are forgotten.
            let (reply, answer) = oneshot::channel();
            h.control
                .send((ControlCommand::PowerCycle, reply))
                .await
                .unwrap();
            assert_eq!(answer.await.unwrap()["power_cycled"], true);
            h.send(2000, init_packet(b, 0x10, &[0x04])).await;
            let after = h.take();
            assert_eq!(after.len(), 1);
            assert_eq!(after[0].1[4], 0xBF);
            assert_eq!(after[0].1[7], 0x0B, "ERR_INVALID_CHANNEL after power cycle");
        })
        .await;
}
