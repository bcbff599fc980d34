//! Fidelio's CTAPHID transport: the USB HID framing of CTAP 2.1 (§11.2), without I/O.
//!
//! Packets in, packets out, time passed in. A lower layer (the usb-device class on a board, a
//! UDP socket, Linux UHID, USB/IP) hands every 64-byte report the host sent to
//! [`CtapHid::handle_packet`], calls [`CtapHid::poll`] regularly, and sends whatever
//! [`CtapHid::next_outgoing`] yields. Complete CTAP requests come out of
//! [`CtapHid::take_request`]; their answers go back in through [`CtapHid::respond`]. Nothing
//! here blocks, reads a clock or panics on input, and every buffer is bounded.
//!
//! ```text
//!  host reports ──handle_packet──▶ ┌──────────┐ ──take_request──▶ authenticator core
//!  timers ───────────poll────────▶ │ CtapHid  │ ◀────respond────── (CBOR / U2F APDU)
//!  host ◀────────next_outgoing──── └──────────┘ ◀─set_keepalive_status / cancel_requested
//! ```
//!
//! # The transaction state machine
//!
//! CTAPHID serves one *transaction* (a request message and its response) at a time, for
//! every channel together. The device is in one of three states:
//!
//! ```text
//!             PING / CBOR / MSG init packet               message complete
//!   ┌──────┐ ───────────────────────────────▶ ┌────────────┐ ─────────────────┐
//!   │ Idle │                                  │ Assembling │ (at once when    │
//!   └──────┘ ◀─────────────────────────────── └────────────┘  BCNT ≤ 57)      │
//!    ▲   ▲    wrong SEQ, timeout, another                                     ▼
//!    │   │    message on its channel, INIT                    PING: echo, back to Idle
//!    │   │                                                    CBOR / MSG:
//!    │   │                                                    ┌─────────┐
//!    │   └──── respond(), INIT on its channel, ◀───────────── │ Pending │
//!    │         CANCEL before take_request()                   └─────────┘
//!    │
//!    └── INIT, WINK, LOCK: answered at once, the state does not change
//! ```
//!
//! * **Idle.** An initialization packet from an allocated channel starts a transaction. INIT,
//!   LOCK and WINK fit in one packet and are answered at once; PING, CBOR and MSG are
//!   reassembled first (at most [`Config::max_msg_size`] bytes, one buffer).
//! * **Assembling.** Continuation packets of that channel must come in order (SEQ 0, 1, ...)
//!   and the whole message within [`Config::message_timeout_ms`] of its initialization packet.
//!   A complete PING is echoed and the device is idle again; a complete CBOR or MSG request
//!   becomes *pending*.
//! * **Pending.** The request waits for [`CtapHid::take_request`] and then for
//!   [`CtapHid::respond`]. Meanwhile [`CtapHid::poll`] sends KEEPALIVE packets on the channel
//!   and a CANCEL on it sets [`CtapHid::cancel_requested`].
//!
//! While a transaction is under way (assembling or pending), every initialization packet from
//! another channel — the broadcast channel included — is refused with ERR_CHANNEL_BUSY. On the
//! transaction's own channel, INIT resynchronises (aborts the transaction and answers),
//! CANCEL is handled as above, and any other command is refused with ERR_INVALID_SEQ while
//! assembling (the half-received message is dropped) or ERR_CHANNEL_BUSY while pending.
//! Continuation packets that belong to no message in progress are ignored, as the
//! specification asks for spurious continuation packets. CANCEL is never answered.
//!
//! Besides, a channel may hold a LOCK (up to 10 s, renewable, released by LOCK 0 or by time):
//! as long as it does, every other channel's initialization packets are refused with
//! ERR_CHANNEL_BUSY.
//!
//! # The authenticator outlives aborted transactions
//!
//! The core cannot be stopped, only asked to stop. When an INIT aborts a request that was
//! already taken, [`CtapHid::cancel_requested`] turns true so the caller can wind the core
//! down, and the answer it eventually passes to [`CtapHid::respond`] is discarded. A new
//! request that completes in the meantime is held (and kept alive with PROCESSING) until then:
//! [`CtapHid::take_request`] hands out one request at a time.
//!
//! See `docs/ctaphid.md` for the error mapping.
#![no_std]

extern crate alloc;

mod channels;
pub mod packet;

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use channels::Channels;
pub use packet::{
    CONT_DATA_SIZE, INIT_DATA_SIZE, MAX_MESSAGE_SIZE, PACKET_SIZE, Packets, packet_count, packets,
};
use packet::{Parsed, fragment, parse};

/// The broadcast channel: only INIT may use it, to allocate a channel.
pub const BROADCAST_CHANNEL: u32 = 0xFFFF_FFFF;

/// The CTAPHID protocol version reported by INIT.
pub const PROTOCOL_VERSION: u8 = 2;

/// Capability flag: the device implements WINK.
pub const CAPABILITY_WINK: u8 = 0x01;
/// Capability flag: the device implements CBOR (CTAP2).
pub const CAPABILITY_CBOR: u8 = 0x04;
/// Capability flag: the device does **not** implement MSG (CTAP1/U2F).
pub const CAPABILITY_NMSG: u8 = 0x08;

/// The longest LOCK a host may ask for, in seconds.
pub const MAX_LOCK_SECONDS: u8 = 10;

/// CTAP2_ERR_KEEPALIVE_CANCEL: the CTAP status a cancelled CBOR request answers with.
pub const CTAP2_ERR_KEEPALIVE_CANCEL: u8 = 0x2D;

/// How many messages may wait in the outgoing queue. Each incoming packet or call queues at
/// most two, so a caller that drains after every call never comes near it; one that does not
/// loses the newest messages rather than memory.
pub const MAX_QUEUED_MESSAGES: usize = 32;

/// How many payload bytes may wait in the outgoing queue: two maximum-size messages (a long
/// response behind a long PING echo) plus room for small ones.
pub const MAX_QUEUED_BYTES: usize = 2 * MAX_MESSAGE_SIZE + 1024;

/// How many events may wait for [`CtapHid::take_event`]; further events are dropped.
pub const MAX_QUEUED_EVENTS: usize = 8;

/// CTAPHID command codes (without the initialization-packet bit).
pub mod command {
    /// Echo the payload.
    pub const PING: u8 = 0x01;
    /// A CTAP1/U2F APDU.
    pub const MSG: u8 = 0x03;
    /// Lock the device to one channel for a while.
    pub const LOCK: u8 = 0x04;
    /// Allocate a channel (on the broadcast channel) or resynchronise one.
    pub const INIT: u8 = 0x06;
    /// Identify the device to the user (LED, sound).
    pub const WINK: u8 = 0x08;
    /// A CTAP2 request: command byte and CBOR parameters.
    pub const CBOR: u8 = 0x10;
    /// Cancel the pending CBOR request of this channel. Never answered.
    pub const CANCEL: u8 = 0x11;
    /// Device to host: the request is still being processed.
    pub const KEEPALIVE: u8 = 0x3B;
    /// Device to host: the request failed; the payload is an [`ErrorCode`](crate::ErrorCode).
    pub const ERROR: u8 = 0x3F;
}

/// CTAPHID_ERROR codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ErrorCode {
    /// The command is unknown or not supported (MSG with NMSG, WINK without WINK, ...).
    InvalidCmd = 0x01,
    /// A parameter is invalid (LOCK longer than 10 s).
    InvalidPar = 0x02,
    /// BCNT is invalid for the command or longer than the maximum message size.
    InvalidLen = 0x03,
    /// A continuation packet out of order, or a new message on a channel still sending one.
    InvalidSeq = 0x04,
    /// The message was not complete in time.
    MsgTimeout = 0x05,
    /// Another channel holds the device (a transaction or a lock).
    ChannelBusy = 0x06,
    /// The command requires a channel lock. No standard command does; never sent here.
    LockRequired = 0x0A,
    /// Channel 0, the broadcast channel for anything but INIT, or an unallocated channel.
    InvalidChannel = 0x0B,
    /// Anything else (a response too long to frame, out of memory).
    Other = 0x7F,
}

impl ErrorCode {
    /// The byte on the wire.
    pub const fn code(self) -> u8 {
        self as u8
    }
}

/// Transport settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The longest request accepted, in bytes. Values above [`MAX_MESSAGE_SIZE`] (7609, what
    /// 64-byte reports can carry) are lowered to it. Keep it equal to the core's `maxMsgSize`.
    pub max_msg_size: usize,
    /// How many channels stay allocated; the least recently used idle one makes room for a new
    /// one. At least 1.
    pub max_channels: usize,
    /// How long a message may take from its initialization packet to its last packet.
    pub message_timeout_ms: u64,
    /// The longest gap between two KEEPALIVE packets while a request is pending.
    pub keepalive_interval_ms: u64,
    /// The device version INIT reports: major, minor, build.
    pub version: (u8, u8, u8),
    /// The capability flags INIT reports (`CAPABILITY_*`); they also decide whether WINK, CBOR
    /// and MSG are served. The default, WINK | CBOR, serves CTAP1/U2F (MSG) too: set
    /// [`CAPABILITY_NMSG`] for an authenticator that only speaks CTAP2.
    pub capabilities: u8,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_msg_size: MAX_MESSAGE_SIZE,
            max_channels: 16,
            message_timeout_ms: 500,
            keepalive_interval_ms: 100,
            version: (0, 1, 0),
            capabilities: CAPABILITY_WINK | CAPABILITY_CBOR,
        }
    }
}

/// What a request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestKind {
    /// CTAPHID_CBOR: a CTAP2 command byte followed by CBOR parameters.
    Cbor,
    /// CTAPHID_MSG: a CTAP1/U2F APDU.
    Msg,
}

impl RequestKind {
    const fn command(self) -> u8 {
        match self {
            Self::Cbor => command::CBOR,
            Self::Msg => command::MSG,
        }
    }
}

/// A complete request for the authenticator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The channel it came on (the response goes back there).
    pub channel: u32,
    /// CBOR or MSG.
    pub kind: RequestKind,
    /// The message payload.
    pub payload: Vec<u8>,
}

/// What KEEPALIVE tells the host about a pending request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum KeepaliveStatus {
    /// The authenticator is working.
    Processing = 1,
    /// The authenticator waits for the user (a touch).
    UpNeeded = 2,
}

impl KeepaliveStatus {
    /// The byte on the wire.
    pub const fn code(self) -> u8 {
        self as u8
    }
}

/// Something for the device's user interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Event {
    /// The host asked the device to identify itself (CTAPHID_WINK): blink a LED, log a line.
    Wink {
        /// The channel that asked.
        channel: u32,
    },
}

/// A message being received.
#[derive(Debug)]
struct Assembly {
    channel: u32,
    command: u8,
    length: usize,
    next_sequence: u8,
    started_ms: u64,
    buffer: Vec<u8>,
}

/// A complete CBOR or MSG request awaiting its response.
#[derive(Debug)]
struct Pending {
    channel: u32,
    kind: RequestKind,
    /// The payload until [`CtapHid::take_request`] hands it out.
    payload: Option<Vec<u8>>,
    /// A CANCEL arrived for it.
    cancelled: bool,
    status: KeepaliveStatus,
    /// The status changed since the last KEEPALIVE: send one at the next poll.
    status_changed: bool,
    /// When the last KEEPALIVE went out (or the request completed).
    last_keepalive_ms: u64,
}

#[derive(Debug)]
enum Transaction {
    Idle,
    Assembling(Assembly),
    Pending(Pending),
}

impl Transaction {
    fn channel(&self) -> Option<u32> {
        match self {
            Self::Idle => None,
            Self::Assembling(assembly) => Some(assembly.channel),
            Self::Pending(pending) => Some(pending.channel),
        }
    }
}

/// Whether the caller holds a request taken with [`CtapHid::take_request`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum App {
    /// No request out.
    Free,
    /// Working on the pending request.
    Working,
    /// Working on a request whose transaction was aborted; its answer will be dropped.
    WorkingAborted,
}

#[derive(Debug, Clone, Copy)]
struct Lock {
    channel: u32,
    until_ms: u64,
}

/// A message waiting to be sent, fragmented as it goes out.
#[derive(Debug)]
struct Outgoing {
    channel: u32,
    command: u8,
    payload: Vec<u8>,
    /// The next report to build (0: the initialization packet).
    next_packet: usize,
}

/// The CTAPHID state machine of one device. See the [crate documentation](crate).
#[derive(Debug)]
pub struct CtapHid {
    config: Config,
    channels: Channels,
    transaction: Transaction,
    app: App,
    lock: Option<Lock>,
    outgoing: VecDeque<Outgoing>,
    outgoing_bytes: usize,
    events: VecDeque<Event>,
}

impl CtapHid {
    /// A device with these settings and no channel allocated.
    ///
    /// `seed` seeds the generator of channel identifiers (xorshift64*): pass a random value on
    /// a real device (`rng.next_u64()` from the platform's `CryptoRng`), a fixed one in tests
    /// for reproducible identifiers. Identifiers only have to be unlikely to collide with
    /// another application's; nothing secret depends on them.
    pub fn new(mut config: Config, seed: u64) -> Self {
        config.max_msg_size = config.max_msg_size.min(MAX_MESSAGE_SIZE);
        config.max_channels = config.max_channels.max(1);
        Self {
            channels: Channels::new(config.max_channels, seed),
            config,
            transaction: Transaction::Idle,
            app: App::Free,
            lock: None,
            outgoing: VecDeque::new(),
            outgoing_bytes: 0,
            events: VecDeque::new(),
        }
    }

    /// The settings in force (after clamping).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Processes one report from the host (64 bytes, no report ID), received at `now_ms`.
    pub fn handle_packet(&mut self, packet: &[u8; PACKET_SIZE], now_ms: u64) {
        self.expire(now_ms);
        match parse(packet) {
            Parsed::Cont {
                channel,
                sequence,
                data,
            } => {
                self.on_continuation(channel, sequence, data, now_ms);
            }
            Parsed::Init {
                channel,
                command,
                length,
                data,
            } => {
                self.on_init_packet(channel, command, length, data, now_ms);
            }
        }
    }

    /// Lets time pass: times out a message in progress (ERR_MSG_TIMEOUT), ends an expired
    /// LOCK and sends a KEEPALIVE for a pending request when one is due — every
    /// [`Config::keepalive_interval_ms`] and as soon as the status changes. Call it at least as
    /// often as the keepalive interval; [`CtapHid::next_deadline`] says when it next matters.
    pub fn poll(&mut self, now_ms: u64) {
        self.expire(now_ms);
        let interval = self.config.keepalive_interval_ms;
        let Transaction::Pending(pending) = &mut self.transaction else {
            return;
        };
        let due =
            pending.status_changed || now_ms.saturating_sub(pending.last_keepalive_ms) >= interval;
        if !due {
            return;
        }
        pending.last_keepalive_ms = now_ms;
        pending.status_changed = false;
        let (channel, status) = (pending.channel, pending.status);
        self.queue_keepalive(channel, status);
    }

    /// When [`CtapHid::poll`] next has something to do (a KEEPALIVE, a timeout, a lock
    /// expiring), if anything.
    pub fn next_deadline(&self) -> Option<u64> {
        let transaction = match &self.transaction {
            Transaction::Idle => None,
            Transaction::Assembling(assembly) => Some(
                assembly
                    .started_ms
                    .saturating_add(self.config.message_timeout_ms)
                    .saturating_add(1),
            ),
            Transaction::Pending(pending) if pending.status_changed => {
                Some(pending.last_keepalive_ms)
            }
            Transaction::Pending(pending) => Some(
                pending
                    .last_keepalive_ms
                    .saturating_add(self.config.keepalive_interval_ms),
            ),
        };
        let lock = self.lock.map(|lock| lock.until_ms);
        match (transaction, lock) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next report to send to the host, if any. Messages go out whole and in order.
    pub fn next_outgoing(&mut self) -> Option<[u8; PACKET_SIZE]> {
        loop {
            let front = self.outgoing.front_mut()?;
            let packet = fragment(
                front.channel,
                front.command,
                &front.payload,
                front.next_packet,
            );
            front.next_packet = front.next_packet.saturating_add(1);
            if (packet.is_none() || front.next_packet >= packet_count(front.payload.len()))
                && let Some(done) = self.outgoing.pop_front()
            {
                self.outgoing_bytes = self.outgoing_bytes.saturating_sub(done.payload.len());
            }
            if packet.is_some() {
                return packet;
            }
        }
    }

    /// The pending CBOR or MSG request, once. From then until [`CtapHid::respond`] the
    /// request's channel stays busy and KEEPALIVE packets go out on it. `None` when there is
    /// none, or while an earlier request is still out (one at a time).
    pub fn take_request(&mut self) -> Option<Request> {
        if self.app != App::Free {
            return None;
        }
        let Transaction::Pending(pending) = &mut self.transaction else {
            return None;
        };
        let payload = pending.payload.take()?;
        self.app = App::Working;
        Some(Request {
            channel: pending.channel,
            kind: pending.kind,
            payload,
        })
    }

    /// What the next KEEPALIVE says about the request taken: [`KeepaliveStatus::UpNeeded`]
    /// while the core waits for a touch, [`KeepaliveStatus::Processing`] otherwise. A change
    /// is announced at the next [`CtapHid::poll`]. Ignored when no request is out.
    pub fn set_keepalive_status(&mut self, status: KeepaliveStatus) {
        if self.app != App::Working {
            return;
        }
        if let Transaction::Pending(pending) = &mut self.transaction
            && pending.payload.is_none()
            && pending.status != status
        {
            pending.status = status;
            pending.status_changed = true;
        }
    }

    /// Whether the request taken should be abandoned: the host sent CANCEL on its channel
    /// (answer it with [`CTAP2_ERR_KEEPALIVE_CANCEL`] through [`CtapHid::respond`]), or an
    /// INIT aborted its transaction (whatever is passed to `respond` is then dropped).
    pub fn cancel_requested(&self) -> bool {
        match self.app {
            App::Free => false,
            App::WorkingAborted => true,
            App::Working => {
                matches!(&self.transaction, Transaction::Pending(pending) if pending.cancelled)
            }
        }
    }

    /// Answers the request taken: fragments `response` for its channel and ends the
    /// transaction. A response longer than [`MAX_MESSAGE_SIZE`] cannot be framed; the host
    /// gets ERR_OTHER instead. Ignored when no request is out; dropped when the transaction
    /// was aborted meanwhile.
    pub fn respond(&mut self, response: &[u8], now_ms: u64) {
        self.expire(now_ms);
        let app = core::mem::replace(&mut self.app, App::Free);
        if app != App::Working {
            return;
        }
        let Transaction::Pending(pending) =
            core::mem::replace(&mut self.transaction, Transaction::Idle)
        else {
            return;
        };
        self.channels.touch(pending.channel);
        if response.len() > MAX_MESSAGE_SIZE {
            self.queue_error(pending.channel, ErrorCode::Other);
            return;
        }
        let mut payload = Vec::new();
        if payload.try_reserve_exact(response.len()).is_err() {
            self.queue_error(pending.channel, ErrorCode::Other);
            return;
        }
        payload.extend_from_slice(response);
        self.queue(pending.channel, pending.kind.command(), payload);
    }

    /// The next user-interface event, if any.
    pub fn take_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Power cycle: forgets every channel, the transaction, the lock, and queued reports and
    /// events. A request out is forgotten too: drop the work on it (a later `respond` is
    /// ignored).
    pub fn reset(&mut self) {
        self.channels.clear();
        self.transaction = Transaction::Idle;
        self.app = App::Free;
        self.lock = None;
        self.outgoing.clear();
        self.outgoing_bytes = 0;
        self.events.clear();
    }

    /// The channel of the transaction in progress (assembling or pending), if any.
    pub fn busy_channel(&self) -> Option<u32> {
        self.transaction.channel()
    }

    /// The channel holding a LOCK, if any (as of the last call that passed the time).
    pub fn locked_channel(&self) -> Option<u32> {
        self.lock.map(|lock| lock.channel)
    }

    /// How many channels are allocated.
    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    /// Whether `channel` is allocated.
    pub fn is_allocated(&self, channel: u32) -> bool {
        self.channels.contains(channel)
    }

    // ---- incoming packets ----

    /// Ends the lock and the message in progress when their time is up.
    fn expire(&mut self, now_ms: u64) {
        if let Some(lock) = self.lock
            && now_ms >= lock.until_ms
        {
            self.lock = None;
        }
        if let Transaction::Assembling(assembly) = &self.transaction
            && now_ms.saturating_sub(assembly.started_ms) > self.config.message_timeout_ms
        {
            let channel = assembly.channel;
            self.transaction = Transaction::Idle;
            self.queue_error(channel, ErrorCode::MsgTimeout);
        }
    }

    fn on_continuation(
        &mut self,
        channel: u32,
        sequence: u8,
        data: &[u8; CONT_DATA_SIZE],
        now_ms: u64,
    ) {
        let Transaction::Assembling(assembly) = &mut self.transaction else {
            // No message in progress: a spurious continuation packet, ignored.
            return;
        };
        if assembly.channel != channel {
            // Not the channel sending a message: nothing is in progress on this one either.
            return;
        }
        if sequence != assembly.next_sequence {
            self.transaction = Transaction::Idle;
            self.queue_error(channel, ErrorCode::InvalidSeq);
            return;
        }
        let missing = assembly.length.saturating_sub(assembly.buffer.len());
        let take = missing.min(CONT_DATA_SIZE);
        assembly
            .buffer
            .extend_from_slice(data.get(..take).unwrap_or_default());
        assembly.next_sequence = assembly.next_sequence.saturating_add(1);
        self.channels.touch(channel);
        if assembly.buffer.len() >= assembly.length {
            self.complete(now_ms);
        }
    }

    fn on_init_packet(
        &mut self,
        channel: u32,
        command: u8,
        length: usize,
        data: &[u8; INIT_DATA_SIZE],
        now_ms: u64,
    ) {
        if command == command::CANCEL {
            self.on_cancel(channel);
            return;
        }
        if channel == 0
            || (channel == BROADCAST_CHANNEL && command != command::INIT)
            || (channel != BROADCAST_CHANNEL && !self.channels.contains(channel))
        {
            self.queue_error(channel, ErrorCode::InvalidChannel);
            return;
        }
        if let Some(lock) = self.lock
            && lock.channel != channel
        {
            self.queue_error(channel, ErrorCode::ChannelBusy);
            return;
        }
        match &self.transaction {
            Transaction::Idle => {}
            Transaction::Assembling(assembly) if assembly.channel == channel => {
                if command != command::INIT {
                    // A new message before the last one was complete: the old one is lost.
                    self.transaction = Transaction::Idle;
                    self.queue_error(channel, ErrorCode::InvalidSeq);
                    return;
                }
                self.abort_transaction();
            }
            Transaction::Pending(pending) if pending.channel == channel => {
                if command != command::INIT {
                    self.queue_error(channel, ErrorCode::ChannelBusy);
                    return;
                }
                self.abort_transaction();
            }
            Transaction::Assembling(_) | Transaction::Pending(_) => {
                self.queue_error(channel, ErrorCode::ChannelBusy);
                return;
            }
        }
        self.channels.touch(channel);
        let capabilities = self.config.capabilities;
        match command {
            command::INIT => self.on_init(channel, length, data),
            command::LOCK => self.on_lock(channel, length, data, now_ms),
            command::WINK if capabilities & CAPABILITY_WINK != 0 => {
                if length != 0 {
                    self.queue_error(channel, ErrorCode::InvalidLen);
                    return;
                }
                self.queue(channel, command::WINK, Vec::new());
                if self.events.len() < MAX_QUEUED_EVENTS {
                    self.events.push_back(Event::Wink { channel });
                }
            }
            command::PING => self.start_message(channel, command, length, data, now_ms),
            command::CBOR if capabilities & CAPABILITY_CBOR != 0 => {
                self.start_message(channel, command, length, data, now_ms);
            }
            command::MSG if capabilities & CAPABILITY_NMSG == 0 => {
                self.start_message(channel, command, length, data, now_ms);
            }
            _ => self.queue_error(channel, ErrorCode::InvalidCmd),
        }
    }

    /// CTAPHID_CANCEL: never answered; only a pending CBOR request on the same channel is
    /// affected.
    fn on_cancel(&mut self, channel: u32) {
        let Transaction::Pending(pending) = &mut self.transaction else {
            return;
        };
        if pending.channel != channel || pending.kind != RequestKind::Cbor {
            return;
        }
        if pending.payload.is_some() {
            // Not taken yet: cancelled here, the core never sees it.
            self.transaction = Transaction::Idle;
            self.queue(
                channel,
                command::CBOR,
                alloc::vec![CTAP2_ERR_KEEPALIVE_CANCEL],
            );
        } else {
            pending.cancelled = true;
        }
    }

    /// Drops the transaction in progress (INIT resynchronisation).
    fn abort_transaction(&mut self) {
        if let Transaction::Pending(pending) = &self.transaction
            && pending.payload.is_none()
            && self.app == App::Working
        {
            self.app = App::WorkingAborted;
        }
        self.transaction = Transaction::Idle;
    }

    fn on_init(&mut self, channel: u32, length: usize, data: &[u8; INIT_DATA_SIZE]) {
        let Some(nonce) = data.first_chunk::<8>().filter(|_| length == 8) else {
            self.queue_error(channel, ErrorCode::InvalidLen);
            return;
        };
        let assigned = if channel == BROADCAST_CHANNEL {
            // The transaction's channel and the lock holder are never evicted.
            let protected = [
                self.transaction.channel(),
                self.lock.map(|lock| lock.channel),
            ];
            match self.channels.allocate(protected) {
                Some(assigned) => assigned,
                None => {
                    self.queue_error(channel, ErrorCode::Other);
                    return;
                }
            }
        } else {
            channel
        };
        let (major, minor, build) = self.config.version;
        let mut response = Vec::with_capacity(17);
        response.extend_from_slice(nonce);
        response.extend_from_slice(&assigned.to_be_bytes());
        response.extend_from_slice(&[
            PROTOCOL_VERSION,
            major,
            minor,
            build,
            self.config.capabilities,
        ]);
        self.queue(channel, command::INIT, response);
    }

    fn on_lock(&mut self, channel: u32, length: usize, data: &[u8; INIT_DATA_SIZE], now_ms: u64) {
        let Some(&seconds) = data.first().filter(|_| length == 1) else {
            self.queue_error(channel, ErrorCode::InvalidLen);
            return;
        };
        if seconds > MAX_LOCK_SECONDS {
            self.queue_error(channel, ErrorCode::InvalidPar);
            return;
        }
        self.lock = (seconds > 0).then(|| Lock {
            channel,
            until_ms: now_ms.saturating_add(u64::from(seconds) * 1000),
        });
        self.queue(channel, command::LOCK, Vec::new());
    }

    /// The initialization packet of PING, CBOR or MSG.
    fn start_message(
        &mut self,
        channel: u32,
        command: u8,
        length: usize,
        data: &[u8; INIT_DATA_SIZE],
        now_ms: u64,
    ) {
        if length > self.config.max_msg_size {
            self.queue_error(channel, ErrorCode::InvalidLen);
            return;
        }
        let mut buffer = Vec::new();
        if buffer.try_reserve_exact(length).is_err() {
            self.queue_error(channel, ErrorCode::Other);
            return;
        }
        buffer.extend_from_slice(data.get(..length.min(INIT_DATA_SIZE)).unwrap_or_default());
        self.transaction = Transaction::Assembling(Assembly {
            channel,
            command,
            length,
            next_sequence: 0,
            started_ms: now_ms,
            buffer,
        });
        if length <= INIT_DATA_SIZE {
            self.complete(now_ms);
        }
    }

    /// The message being assembled is complete: echo a PING, make a request pending.
    fn complete(&mut self, now_ms: u64) {
        let Transaction::Assembling(assembly) =
            core::mem::replace(&mut self.transaction, Transaction::Idle)
        else {
            return;
        };
        let kind = match assembly.command {
            command::CBOR => RequestKind::Cbor,
            command::MSG => RequestKind::Msg,
            _ => {
                self.queue(assembly.channel, assembly.command, assembly.buffer);
                return;
            }
        };
        self.transaction = Transaction::Pending(Pending {
            channel: assembly.channel,
            kind,
            payload: Some(assembly.buffer),
            cancelled: false,
            status: KeepaliveStatus::Processing,
            status_changed: false,
            last_keepalive_ms: now_ms,
        });
    }

    // ---- outgoing messages ----

    fn queue_error(&mut self, channel: u32, error: ErrorCode) {
        self.queue(channel, command::ERROR, alloc::vec![error.code()]);
    }

    fn queue_keepalive(&mut self, channel: u32, status: KeepaliveStatus) {
        // A KEEPALIVE still waiting in the queue is brought up to date rather than repeated,
        // so a host that reads slowly does not pile them up.
        if let Some(waiting) = self.outgoing.iter_mut().find(|message| {
            message.channel == channel
                && message.command == command::KEEPALIVE
                && message.next_packet == 0
        }) {
            waiting.payload = alloc::vec![status.code()];
            return;
        }
        self.queue(channel, command::KEEPALIVE, alloc::vec![status.code()]);
    }

    fn queue(&mut self, channel: u32, command: u8, payload: Vec<u8>) {
        let bytes = self.outgoing_bytes.saturating_add(payload.len());
        if self.outgoing.len() >= MAX_QUEUED_MESSAGES || bytes > MAX_QUEUED_BYTES {
            return;
        }
        self.outgoing_bytes = bytes;
        self.outgoing.push_back(Outgoing {
            channel,
            command,
            payload,
            next_packet: 0,
        });
    }
}

#[cfg(test)]
mod tests;
