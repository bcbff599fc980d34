//! Moving single reports between the host and a device: the [`Transport`] trait and its UDP
//! implementation.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};

use fidelio_ctaphid::PACKET_SIZE;

/// How long [`UdpTransport`] polls for a report before sleeping, unless changed with
/// [`UdpTransport::set_spin`]: long enough for a device on the same machine to sign an assertion
/// or make a credential, short enough that a wait for a touch costs next to nothing (at most
/// this much CPU time per KEEPALIVE, which come every 100 ms).
///
/// Waking a thread that sleeps in `recv` takes tens of microseconds (60 µs p50 on a 2-core
/// virtual machine); polling first takes a loopback round trip from about 60 µs to 25 µs.
pub const DEFAULT_SPIN: Duration = Duration::from_micros(500);

/// One CTAPHID report: [`PACKET_SIZE`] bytes, without a HID report ID.
pub type Report = [u8; PACKET_SIZE];

/// A way to exchange 64-byte CTAPHID reports with one device.
///
/// Implementations deal in whole reports: a HID report ID, a datagram boundary or any other
/// framing of the lower layer is theirs to add and strip.
pub trait Transport {
    /// Sends one report.
    fn send(&mut self, report: &Report) -> io::Result<()>;

    /// Waits up to `timeout` for one report. `Ok(None)` means nothing came in time; it may also
    /// come a little early (callers loop until their own deadline).
    fn receive(&mut self, timeout: Duration) -> io::Result<Option<Report>>;
}

impl<T: Transport + ?Sized> Transport for &mut T {
    fn send(&mut self, report: &Report) -> io::Result<()> {
        (**self).send(report)
    }

    fn receive(&mut self, timeout: Duration) -> io::Result<Option<Report>> {
        (**self).receive(timeout)
    }
}

impl<T: Transport + ?Sized> Transport for Box<T> {
    fn send(&mut self, report: &Report) -> io::Result<()> {
        (**self).send(report)
    }

    fn receive(&mut self, timeout: Duration) -> io::Result<Option<Report>> {
        (**self).receive(timeout)
    }
}

/// CTAPHID over UDP, the "simulator" wire format of `fidelio serve`, python-fido2's and
/// libfido2's test harnesses: one report per datagram, no report-ID byte.
///
/// The socket is connected, so datagrams from anyone but the device are dropped by the kernel,
/// and a device that is not there shows up as "connection refused" (an ICMP port-unreachable
/// on the next receive) rather than as a long timeout.
#[derive(Debug)]
pub struct UdpTransport {
    socket: UdpSocket,
    peer: SocketAddr,
    /// The read timeout the socket has now (changing it is a system call; see `receive`).
    read_timeout: Option<Duration>,
    /// Whether the socket is in non-blocking mode now (while spinning).
    nonblocking: bool,
    /// How long `receive` polls before sleeping in the kernel.
    spin: Duration,
}

/// What one read from the socket gave.
enum Datagram {
    Report(Report),
    /// Something that is not one CTAPHID report.
    Junk,
    /// Nothing there (non-blocking) or nothing in time (blocking).
    Nothing,
}

impl UdpTransport {
    /// Connects to a device at `address` (`"127.0.0.1:8111"`, `("localhost", 8111)`, ...):
    /// binds an ephemeral local port of the same address family and connects it.
    pub fn connect(address: impl ToSocketAddrs) -> io::Result<Self> {
        let mut last_error = None;
        for peer in address.to_socket_addrs()? {
            let local: SocketAddr = match peer {
                SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
                SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
            };
            let attempt = UdpSocket::bind(local).and_then(|socket| {
                socket.connect(peer)?;
                Ok(socket)
            });
            match attempt {
                Ok(socket) => {
                    return Ok(Self {
                        socket,
                        peer,
                        read_timeout: None,
                        nonblocking: false,
                        spin: DEFAULT_SPIN,
                    });
                }
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "the address resolved to nothing",
            )
        }))
    }

    /// The device's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// The local address the device answers to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    fn refused(&self, error: &io::Error) -> io::Error {
        io::Error::new(
            error.kind(),
            format!(
                "nothing answers on udp:{} ({error}); is `fidelio serve` (or another CTAPHID \
                 simulator) running there?",
                self.peer
            ),
        )
    }

    /// How long [`Transport::receive`] polls the socket before it sleeps in the kernel
    /// ([`DEFAULT_SPIN`]). Polling spends CPU time to save the wake-up latency of a sleeping
    /// thread (tens of microseconds, more on virtual machines) when the answer comes quickly;
    /// zero never polls.
    pub fn set_spin(&mut self, spin: Duration) {
        self.spin = spin;
    }

    fn set_nonblocking(&mut self, nonblocking: bool) -> io::Result<()> {
        if self.nonblocking != nonblocking {
            self.socket.set_nonblocking(nonblocking)?;
            self.nonblocking = nonblocking;
        }
        Ok(())
    }

    /// One read: a report, junk, or nothing (would block, timed out, interrupted).
    fn read(&mut self) -> io::Result<Datagram> {
        let mut buffer = [0u8; 2048];
        let len = match self.socket.recv(&mut buffer) {
            Ok(len) => len,
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                return Ok(Datagram::Nothing);
            }
            Err(error) if error.kind() == io::ErrorKind::ConnectionRefused => {
                return Err(self.refused(&error));
            }
            Err(error) => return Err(error),
        };
        // Exactly one report; a 65-byte datagram starting with report ID 0 is accepted too.
        // Anything else is not CTAPHID: skipped, and the caller asks again with what is left
        // of its deadline.
        let report = match buffer.get(..len) {
            Some(report) if len == PACKET_SIZE => report,
            Some([0, report @ ..]) if len == PACKET_SIZE + 1 => report,
            _ => return Ok(Datagram::Junk),
        };
        let mut out = [0u8; PACKET_SIZE];
        out.copy_from_slice(report);
        Ok(Datagram::Report(out))
    }

    /// Sets the socket's read timeout to about `timeout`. The timeout is only changed when the
    /// current one would wait more than 1 % + 1 ms too long, or less than half as long as asked:
    /// a caller counting down to a deadline then costs one system call per few hundred
    /// milliseconds of waiting instead of one per report.
    fn set_read_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        let wanted = timeout.max(Duration::from_micros(1));
        let too_long = wanted + wanted / 100 + Duration::from_millis(1);
        let fits = self
            .read_timeout
            .is_some_and(|current| current <= too_long && current >= wanted / 2);
        if !fits {
            self.socket.set_read_timeout(Some(wanted))?;
            self.read_timeout = Some(wanted);
        }
        Ok(())
    }
}

impl Transport for UdpTransport {
    fn send(&mut self, report: &Report) -> io::Result<()> {
        match self.socket.send(report) {
            Ok(_) => Ok(()),
            Err(error) if error.kind() == io::ErrorKind::ConnectionRefused => {
                Err(self.refused(&error))
            }
            Err(error) => Err(error),
        }
    }

    fn receive(&mut self, timeout: Duration) -> io::Result<Option<Report>> {
        let started = Instant::now();
        let spin = self.spin.min(timeout);
        if !spin.is_zero() {
            self.set_nonblocking(true)?;
            loop {
                match self.read()? {
                    Datagram::Report(report) => return Ok(Some(report)),
                    Datagram::Junk => return Ok(None),
                    Datagram::Nothing if started.elapsed() < spin => std::hint::spin_loop(),
                    Datagram::Nothing => break,
                }
            }
        }
        let left = timeout.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Ok(None);
        }
        self.set_nonblocking(false)?;
        self.set_read_timeout(left)?;
        match self.read()? {
            Datagram::Report(report) => Ok(Some(report)),
            Datagram::Junk | Datagram::Nothing => Ok(None),
        }
    }
}
