//! Fidelio's host-side CTAPHID client: the other end of `fidelio-ctaphid`.
//!
//! [`CtapHidClient`] speaks CTAPHID (CTAP 2.1 §11.2) over any [`Transport`] that moves 64-byte
//! reports: [`UdpTransport`] for `fidelio serve` and other simulators, and `HidTransport` for
//! real devices with the `hidapi` feature (hidraw and a pure-Rust udev: no C library). It
//! allocates a channel with INIT (random nonce, echo checked), fragments requests (57 payload
//! bytes in the initialization packet, 59 in each continuation), reassembles answers, sits out
//! KEEPALIVE packets (reporting them to an optional callback, which may cancel), turns
//! CTAPHID_ERROR into [`HidError`], and gives up after a deadline.
//!
//! ```no_run
//! use fidelio_client::{CtapHidClient, DeviceAddress};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let address: DeviceAddress = "udp:127.0.0.1:8111".parse()?;
//! let mut client = CtapHidClient::new(address.open()?);
//! let info = client.init()?;
//! println!("channel {:08x}, CTAPHID version {}", info.channel, info.protocol_version);
//! assert_eq!(client.ping(b"hello")?, b"hello");
//! let response = client.cbor(&[0x04])?; // authenticatorGetInfo
//! assert_eq!(response.first(), Some(&0x00)); // CTAP2_OK, then the CBOR map
//! # Ok(())
//! # }
//! ```
//!
//! Everything here blocks the calling thread; a client is one host application's view of one
//! device and is used from one thread at a time.

mod address;
#[cfg(feature = "hidapi")]
mod hid;
mod transport;

use std::fmt;
use std::io;
use std::time::{Duration, Instant};

pub use address::{AddressError, DeviceAddress};
pub use fidelio_ctaphid::command;
use fidelio_ctaphid::{BROADCAST_CHANNEL, CONT_DATA_SIZE, INIT_DATA_SIZE, MAX_MESSAGE_SIZE};
pub use fidelio_ctaphid::{MAX_MESSAGE_SIZE as MAX_MESSAGE_LEN, PACKET_SIZE};
#[cfg(feature = "hidapi")]
pub use hid::HidTransport;
pub use transport::{DEFAULT_SPIN, Report, Transport, UdpTransport};

/// How long a CBOR request may take, keepalives included, unless changed with
/// [`CtapHidClient::set_timeout`]: longer than an authenticator's usual 30 s wait for a touch,
/// so its own timeout answer arrives first.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// How long INIT, PING, WINK and LOCK may take (answered at once by a device), unless changed
/// with [`CtapHidClient::set_reply_timeout`].
pub const DEFAULT_REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// The bit of byte 4 that marks an initialization packet.
const TYPE_INIT: u8 = 0x80;

/// The length of an INIT answer: nonce (8), channel (4), protocol version, major, minor,
/// build, capabilities.
const INIT_RESPONSE_LEN: usize = 17;

/// A CTAPHID_ERROR code sent by the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HidError {
    /// ERR_INVALID_CMD (0x01): the device does not know or offer the command.
    InvalidCmd,
    /// ERR_INVALID_PAR (0x02): a parameter is invalid.
    InvalidPar,
    /// ERR_INVALID_LEN (0x03): the message length is invalid for the command or too long.
    InvalidLen,
    /// ERR_INVALID_SEQ (0x04): a continuation packet came out of order.
    InvalidSeq,
    /// ERR_MSG_TIMEOUT (0x05): the message was not complete in time.
    MsgTimeout,
    /// ERR_CHANNEL_BUSY (0x06): another channel is in a transaction or holds a lock.
    ChannelBusy,
    /// ERR_LOCK_REQUIRED (0x0A): the command needs a channel lock.
    LockRequired,
    /// ERR_INVALID_CHANNEL (0x0B): the channel is not allocated (e.g. after a power cycle).
    InvalidChannel,
    /// ERR_OTHER (0x7F): unspecified.
    Other,
    /// A code CTAP 2.1 does not define.
    Unknown(u8),
}

impl HidError {
    /// The error for a code on the wire.
    pub const fn from_code(code: u8) -> Self {
        match code {
            0x01 => HidError::InvalidCmd,
            0x02 => HidError::InvalidPar,
            0x03 => HidError::InvalidLen,
            0x04 => HidError::InvalidSeq,
            0x05 => HidError::MsgTimeout,
            0x06 => HidError::ChannelBusy,
            0x0A => HidError::LockRequired,
            0x0B => HidError::InvalidChannel,
            0x7F => HidError::Other,
            other => HidError::Unknown(other),
        }
    }

    /// The code on the wire.
    pub const fn code(self) -> u8 {
        match self {
            HidError::InvalidCmd => 0x01,
            HidError::InvalidPar => 0x02,
            HidError::InvalidLen => 0x03,
            HidError::InvalidSeq => 0x04,
            HidError::MsgTimeout => 0x05,
            HidError::ChannelBusy => 0x06,
            HidError::LockRequired => 0x0A,
            HidError::InvalidChannel => 0x0B,
            HidError::Other => 0x7F,
            HidError::Unknown(code) => code,
        }
    }

    /// The specification's name: `ERR_INVALID_CMD`, ...
    pub const fn name(self) -> &'static str {
        match self {
            HidError::InvalidCmd => "ERR_INVALID_CMD",
            HidError::InvalidPar => "ERR_INVALID_PAR",
            HidError::InvalidLen => "ERR_INVALID_LEN",
            HidError::InvalidSeq => "ERR_INVALID_SEQ",
            HidError::MsgTimeout => "ERR_MSG_TIMEOUT",
            HidError::ChannelBusy => "ERR_CHANNEL_BUSY",
            HidError::LockRequired => "ERR_LOCK_REQUIRED",
            HidError::InvalidChannel => "ERR_INVALID_CHANNEL",
            HidError::Other => "ERR_OTHER",
            HidError::Unknown(_) => "unknown error",
        }
    }
}

impl fmt::Display for HidError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (0x{:02X})", self.name(), self.code())
    }
}

/// What went wrong in an exchange with the device.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The transport failed (socket, HID device); the message names the device.
    Io(io::Error),
    /// No complete answer within the deadline. For a CBOR request a CANCEL was sent.
    Timeout(Duration),
    /// The device answered with CTAPHID_ERROR.
    Device(HidError),
    /// The device answered with another command than the request's.
    UnexpectedCommand {
        /// The request's command.
        expected: u8,
        /// The answer's.
        received: u8,
    },
    /// The answer broke the framing rules (sequence numbers, lengths).
    Protocol(&'static str),
    /// The request is longer than CTAPHID can carry ([`MAX_MESSAGE_LEN`] bytes).
    MessageTooLong(usize),
    /// This build or this device cannot do what was asked.
    Unsupported(&'static str),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(error) => write!(f, "{error}"),
            Error::Timeout(waited) => {
                write!(
                    f,
                    "the device did not answer within {:.1} s",
                    waited.as_secs_f64()
                )
            }
            Error::Device(error) => write!(f, "the device answered CTAPHID {error}"),
            Error::UnexpectedCommand { expected, received } => write!(
                f,
                "the device answered command 0x{received:02X} to a 0x{expected:02X} request"
            ),
            Error::Protocol(what) => write!(f, "malformed CTAPHID answer: {what}"),
            Error::MessageTooLong(len) => write!(
                f,
                "a {len}-byte message does not fit CTAPHID's {MAX_MESSAGE_SIZE}-byte limit"
            ),
            Error::Unsupported(what) => f.write_str(what),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            // The I/O error's own text is already in this one's.
            Error::Io(error) => error.source(),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(error: io::Error) -> Self {
        Error::Io(error)
    }
}

/// What the device said in INIT's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeviceInfo {
    /// The channel allocated to this client.
    pub channel: u32,
    /// The CTAPHID protocol version (2).
    pub protocol_version: u8,
    /// The device's version: major, minor, build.
    pub device_version: (u8, u8, u8),
    /// Capability flags (`CAPABILITY_*`).
    pub capabilities: u8,
}

/// Capability flag: the device implements WINK.
pub const CAPABILITY_WINK: u8 = fidelio_ctaphid::CAPABILITY_WINK;
/// Capability flag: the device implements CBOR (CTAP2).
pub const CAPABILITY_CBOR: u8 = fidelio_ctaphid::CAPABILITY_CBOR;
/// Capability flag: the device does **not** implement MSG (CTAP1/U2F).
pub const CAPABILITY_NMSG: u8 = fidelio_ctaphid::CAPABILITY_NMSG;

impl DeviceInfo {
    /// Whether the device implements WINK.
    pub fn wink(&self) -> bool {
        self.capabilities & CAPABILITY_WINK != 0
    }

    /// Whether the device speaks CTAP2 (CBOR).
    pub fn cbor(&self) -> bool {
        self.capabilities & CAPABILITY_CBOR != 0
    }

    /// Whether the device speaks CTAP1/U2F (MSG).
    pub fn msg(&self) -> bool {
        self.capabilities & CAPABILITY_NMSG == 0
    }

    /// The capability names, for display: `["WINK", "CBOR", "NMSG"]`.
    pub fn capability_names(&self) -> Vec<&'static str> {
        [
            (CAPABILITY_WINK, "WINK"),
            (CAPABILITY_CBOR, "CBOR"),
            (CAPABILITY_NMSG, "NMSG"),
        ]
        .into_iter()
        .filter(|(bit, _)| self.capabilities & bit != 0)
        .map(|(_, name)| name)
        .collect()
    }
}

/// A KEEPALIVE status: what the device is doing while the host waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Keepalive {
    /// STATUS_PROCESSING (1): working.
    Processing,
    /// STATUS_UPNEEDED (2): waiting for the user's touch.
    UpNeeded,
    /// Another status byte.
    Other(u8),
}

impl Keepalive {
    /// The status for a byte on the wire.
    pub const fn from_code(code: u8) -> Self {
        match code {
            1 => Keepalive::Processing,
            2 => Keepalive::UpNeeded,
            other => Keepalive::Other(other),
        }
    }
}

/// What the keepalive callback wants done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeepaliveAction {
    /// Keep waiting.
    Continue,
    /// Send CTAPHID_CANCEL: the device winds the request down and answers it with
    /// CTAP2_ERR_KEEPALIVE_CANCEL (0x2D), which [`CtapHidClient::cbor`] returns.
    Cancel,
}

type KeepaliveCallback = Box<dyn FnMut(Keepalive) -> KeepaliveAction + Send>;

/// A CTAPHID client for one device: a channel, request fragmentation, answer reassembly.
///
/// Calls that need a channel allocate one with [`init`](Self::init) on first use.
pub struct CtapHidClient<T> {
    transport: T,
    info: Option<DeviceInfo>,
    timeout: Duration,
    reply_timeout: Duration,
    keepalive: Option<KeepaliveCallback>,
}

impl<T> fmt::Debug for CtapHidClient<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CtapHidClient")
            .field("info", &self.info)
            .field("timeout", &self.timeout)
            .field("reply_timeout", &self.reply_timeout)
            .field("keepalive_callback", &self.keepalive.is_some())
            .finish_non_exhaustive()
    }
}

/// A message being reassembled.
struct Assembly {
    message: Vec<u8>,
    length: usize,
    next_sequence: u8,
}

impl Assembly {
    fn complete(&self) -> bool {
        self.message.len() >= self.length
    }
}

impl<T: Transport> CtapHidClient<T> {
    /// A client on `transport`; nothing is sent until the first call.
    pub fn new(transport: T) -> Self {
        Self {
            transport,
            info: None,
            timeout: DEFAULT_TIMEOUT,
            reply_timeout: DEFAULT_REPLY_TIMEOUT,
            keepalive: None,
        }
    }

    /// The overall deadline of a CBOR request, keepalives included ([`DEFAULT_TIMEOUT`]).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// The deadline of INIT, PING, WINK and raw [`transact`](Self::transact) calls
    /// ([`DEFAULT_REPLY_TIMEOUT`]).
    pub fn set_reply_timeout(&mut self, timeout: Duration) {
        self.reply_timeout = timeout;
    }

    /// Calls `callback` for every KEEPALIVE the device sends while a request is pending (about
    /// every 100 ms), e.g. to tell the user to touch the key on [`Keepalive::UpNeeded`]. Its
    /// answer may cancel the request.
    pub fn on_keepalive(
        &mut self,
        callback: impl FnMut(Keepalive) -> KeepaliveAction + Send + 'static,
    ) {
        self.keepalive = Some(Box::new(callback));
    }

    /// What INIT said, once a channel is allocated.
    pub fn info(&self) -> Option<&DeviceInfo> {
        self.info.as_ref()
    }

    /// The transport.
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// The transport, mutably (to send raw reports in tests).
    pub fn transport_mut(&mut self) -> &mut T {
        &mut self.transport
    }

    /// Gives the transport back.
    pub fn into_transport(self) -> T {
        self.transport
    }

    /// CTAPHID_INIT on the broadcast channel: a random 8-byte nonce goes out, and the answer
    /// that echoes it (answers to other hosts' INITs are skipped) allocates this client's
    /// channel. Calling it again allocates a new channel.
    pub fn init(&mut self) -> Result<DeviceInfo, Error> {
        let mut nonce = [0u8; 8];
        getrandom::fill(&mut nonce)
            .map_err(|e| Error::Io(io::Error::other(format!("no random nonce for INIT: {e}"))))?;
        self.init_with_nonce(nonce)
    }

    /// [`init`](Self::init) with a given nonce (tests, reproducible traces).
    pub fn init_with_nonce(&mut self, nonce: [u8; 8]) -> Result<DeviceInfo, Error> {
        self.info = None;
        self.send_message(BROADCAST_CHANNEL, command::INIT, &nonce)?;
        let deadline = Instant::now() + self.reply_timeout;
        loop {
            let Some(report) = self.receive_until(deadline, self.reply_timeout)? else {
                continue;
            };
            let Some(init) = parse_init(&report) else {
                continue;
            };
            if init.channel != BROADCAST_CHANNEL {
                continue;
            }
            if init.command == command::ERROR {
                return Err(Error::Device(HidError::from_code(first(init.data))));
            }
            if init.command != command::INIT || init.length < INIT_RESPONSE_LEN {
                continue;
            }
            let Some(answer) = init.data.get(..INIT_RESPONSE_LEN) else {
                continue;
            };
            let Some((echo, rest)) = answer.split_first_chunk::<8>() else {
                continue;
            };
            if *echo != nonce {
                continue;
            }
            let [
                c0,
                c1,
                c2,
                c3,
                protocol_version,
                major,
                minor,
                build,
                capabilities,
            ] = *rest
            else {
                continue;
            };
            let channel = u32::from_be_bytes([c0, c1, c2, c3]);
            if channel == BROADCAST_CHANNEL || channel == 0 {
                return Err(Error::Protocol("INIT allocated a reserved channel"));
            }
            let info = DeviceInfo {
                channel,
                protocol_version,
                device_version: (major, minor, build),
                capabilities,
            };
            self.info = Some(info);
            return Ok(info);
        }
    }

    /// CTAPHID_PING: sends `data` (up to [`MAX_MESSAGE_LEN`] bytes) and returns the echo.
    pub fn ping(&mut self, data: &[u8]) -> Result<Vec<u8>, Error> {
        let echo = self.transact(command::PING, data)?;
        if echo != data {
            return Err(Error::Protocol("the PING echo differs from what was sent"));
        }
        Ok(echo)
    }

    /// CTAPHID_WINK: asks the device to identify itself.
    pub fn wink(&mut self) -> Result<(), Error> {
        self.transact(command::WINK, &[]).map(drop)
    }

    /// CTAPHID_CBOR: sends a CTAP2 request (command byte, then CBOR parameters) and returns
    /// the response (status byte, then CBOR). KEEPALIVEs are waited out; at the deadline a
    /// CANCEL is sent and [`Error::Timeout`] returned.
    pub fn cbor(&mut self, request: &[u8]) -> Result<Vec<u8>, Error> {
        let timeout = self.timeout;
        self.exchange(command::CBOR, request, timeout)
    }

    /// CTAPHID_CANCEL: asks the device to abandon this channel's pending CBOR request. Never
    /// answered; the request itself answers CTAP2_ERR_KEEPALIVE_CANCEL. Nothing is sent
    /// before a channel is allocated.
    pub fn cancel(&mut self) -> Result<(), Error> {
        match self.info {
            Some(info) => self.send_message(info.channel, command::CANCEL, &[]),
            None => Ok(()),
        }
    }

    /// Any CTAPHID command on this client's channel (allocated first if needed), with the
    /// reply deadline: the answer's payload, or the device's CTAPHID_ERROR.
    pub fn transact(&mut self, command: u8, payload: &[u8]) -> Result<Vec<u8>, Error> {
        let timeout = self.reply_timeout;
        self.exchange(command, payload, timeout)
    }

    fn channel(&mut self) -> Result<u32, Error> {
        match self.info {
            Some(info) => Ok(info.channel),
            None => Ok(self.init()?.channel),
        }
    }

    fn exchange(
        &mut self,
        command: u8,
        payload: &[u8],
        timeout: Duration,
    ) -> Result<Vec<u8>, Error> {
        if payload.len() > MAX_MESSAGE_SIZE {
            return Err(Error::MessageTooLong(payload.len()));
        }
        let channel = self.channel()?;
        let deadline = Instant::now() + timeout;
        self.send_message(channel, command, payload)?;
        let answer = self.receive_message(channel, command, deadline, timeout);
        if matches!(answer, Err(Error::Timeout(_))) && command == command::CBOR {
            // Best effort: do not leave the device waiting for a user nobody asks any more.
            let _ = self.send_message(channel, command::CANCEL, &[]);
        }
        answer
    }

    fn send_message(&mut self, channel: u32, command: u8, payload: &[u8]) -> Result<(), Error> {
        let packets = fidelio_ctaphid::packets(channel, command, payload)
            .ok_or(Error::MessageTooLong(payload.len()))?;
        for packet in packets {
            self.transport.send(&packet)?;
        }
        Ok(())
    }

    /// One report, or `None` if the transport's wait ended early; [`Error::Timeout`] at the
    /// deadline.
    fn receive_until(
        &mut self,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Option<Report>, Error> {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(Error::Timeout(timeout));
        }
        Ok(self.transport.receive(remaining)?)
    }

    fn receive_message(
        &mut self,
        channel: u32,
        command: u8,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Vec<u8>, Error> {
        let mut assembly: Option<Assembly> = None;
        let mut cancelled = false;
        loop {
            let Some(report) = self.receive_until(deadline, timeout)? else {
                continue;
            };
            let [c0, c1, c2, c3, kind, data @ ..] = &report;
            if u32::from_be_bytes([*c0, *c1, *c2, *c3]) != channel {
                // Another host's channel (HID devices answer every open handle).
                continue;
            }
            if kind & TYPE_INIT == 0 {
                // A continuation packet: part of the answer, or stray (ignored, like the
                // device ignores spurious continuation packets).
                let Some(current) = assembly.as_mut() else {
                    continue;
                };
                if *kind != current.next_sequence {
                    return Err(Error::Protocol("continuation packet out of sequence"));
                }
                let wanted = (current.length - current.message.len()).min(CONT_DATA_SIZE);
                current
                    .message
                    .extend_from_slice(data.get(..wanted).unwrap_or(data));
                current.next_sequence = current.next_sequence.wrapping_add(1);
                if current.complete() {
                    return Ok(std::mem::take(&mut current.message));
                }
                continue;
            }
            let Some(init) = parse_init(&report) else {
                continue;
            };
            match init.command {
                command::KEEPALIVE => {
                    let status = Keepalive::from_code(first(init.data));
                    let action = match self.keepalive.as_mut() {
                        Some(callback) => callback(status),
                        None => KeepaliveAction::Continue,
                    };
                    if action == KeepaliveAction::Cancel && !cancelled {
                        cancelled = true;
                        self.send_message(channel, command::CANCEL, &[])?;
                    }
                }
                command::ERROR => return Err(Error::Device(HidError::from_code(first(init.data)))),
                received if received == command => {
                    if assembly.is_some() {
                        return Err(Error::Protocol(
                            "a new message began before the previous one was complete",
                        ));
                    }
                    if init.length > MAX_MESSAGE_SIZE {
                        return Err(Error::Protocol("the answer is longer than CTAPHID allows"));
                    }
                    let first_part = init.length.min(INIT_DATA_SIZE);
                    let mut message = Vec::with_capacity(init.length);
                    message.extend_from_slice(init.data.get(..first_part).unwrap_or(init.data));
                    let current = Assembly {
                        message,
                        length: init.length,
                        next_sequence: 0,
                    };
                    if current.complete() {
                        return Ok(current.message);
                    }
                    assembly = Some(current);
                }
                received => {
                    return Err(Error::UnexpectedCommand {
                        expected: command,
                        received,
                    });
                }
            }
        }
    }
}

/// The fields of an initialization packet.
struct InitPacket<'a> {
    channel: u32,
    command: u8,
    length: usize,
    data: &'a [u8],
}

fn parse_init(report: &Report) -> Option<InitPacket<'_>> {
    let [c0, c1, c2, c3, kind, high, low, data @ ..] = report;
    if kind & TYPE_INIT == 0 {
        return None;
    }
    Some(InitPacket {
        channel: u32::from_be_bytes([*c0, *c1, *c2, *c3]),
        command: kind & !TYPE_INIT,
        length: usize::from(u16::from_be_bytes([*high, *low])),
        data,
    })
}

/// The first payload byte (status or error code); ERR_OTHER / 0 if there is none.
fn first(data: &[u8]) -> u8 {
    data.first().copied().unwrap_or(0x7F)
}

#[cfg(test)]
mod tests;
