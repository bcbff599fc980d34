//! The UDP lane: one 64-byte CTAPHID report per datagram, no report-ID byte, answers to the
//! sender's address — the "simulator" wire format that existing CTAP suites and client
//! libraries speak (authenticator on 127.0.0.1:8111 by default).

use std::net::SocketAddr;
use std::rc::Rc;

use fidelio_ctaphid::PACKET_SIZE;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::device::{Inbound, Outbound, Peer};

/// The bound socket of the UDP lane.
#[derive(Debug)]
pub struct UdpLane {
    socket: Rc<UdpSocket>,
}

/// Binding failed: names the address and the reason.
#[derive(Debug)]
pub struct BindError {
    /// The address asked for.
    pub address: SocketAddr,
    /// Why it failed.
    pub source: std::io::Error,
}

impl std::fmt::Display for BindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cannot listen for UDP on {}: {}",
            self.address, self.source
        )?;
        if self.source.kind() == std::io::ErrorKind::AddrInUse {
            write!(
                f,
                " (another fidelio serve, or another simulator, already uses this port; pick one with --udp)"
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for BindError {}

impl UdpLane {
    /// Binds the socket.
    pub async fn bind(address: SocketAddr) -> Result<Self, BindError> {
        let socket = UdpSocket::bind(address)
            .await
            .map_err(|source| BindError { address, source })?;
        Ok(Self {
            socket: Rc::new(socket),
        })
    }

    /// The address actually bound (port 0 picks one).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// The sending half, for the device.
    pub fn outbound(&self) -> Rc<dyn Outbound> {
        Rc::new(UdpOutbound {
            socket: self.socket.clone(),
        })
    }

    /// Receives datagrams until the device goes away. Datagrams that are not exactly one
    /// report are dropped with a log line (a 65-byte datagram starting with report ID 0 is
    /// accepted too, for clients that keep the HID report ID).
    pub async fn run(self, device: mpsc::Sender<Inbound>) {
        let mut buffer = [0u8; 2048];
        loop {
            let (len, from) = match self.socket.recv_from(&mut buffer).await {
                Ok(received) => received,
                Err(error) => {
                    tracing::warn!("UDP receive failed: {error}");
                    continue;
                }
            };
            let report = match buffer.get(..len) {
                Some(report) if len == PACKET_SIZE => report,
                Some([0, report @ ..]) if len == PACKET_SIZE + 1 => report,
                _ => {
                    tracing::warn!(
                        "dropping a {len}-byte datagram from {from}: a CTAPHID report is {PACKET_SIZE} bytes"
                    );
                    continue;
                }
            };
            let mut packet = [0u8; PACKET_SIZE];
            packet.copy_from_slice(report);
            if device
                .send(Inbound {
                    packet,
                    from: Peer::Udp(from),
                })
                .await
                .is_err()
            {
                break;
            }
        }
    }
}

struct UdpOutbound {
    socket: Rc<UdpSocket>,
}

impl Outbound for UdpOutbound {
    fn send(&self, to: &Peer, packet: &[u8; PACKET_SIZE]) {
        // Other lanes' peers are theirs to serve.
        let Peer::Udp(address) = to else { return };
        if let Err(error) = self.socket.try_send_to(packet, *address) {
            tracing::warn!("UDP send to {address} failed: {error}");
        }
    }
}
