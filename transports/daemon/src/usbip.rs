//! The USB/IP lane: the key exported as a full-speed USB device over TCP, so that a Linux
//! (vhci-hcd) or Windows (usbip-win2) machine attaches it like a key plugged into a port.
//!
//! ```text
//!   usbip attach ─TCP─▶ UsbipLane ── URBs ──▶ VirtualBus ◀── usb-device ── CtapHidClass
//!                                                                 │ 64-byte reports
//!                                       device loop ◀── Inbound ──┘ ◀── Outbound ── device loop
//! ```
//!
//! What the host talks to is the firmware's own USB stack: usb-device's `UsbDevice` and
//! `fidelio_usb::CtapHidClass` (descriptors, control requests, the HID interface and its
//! interrupt endpoints), on a [`usb_device::bus::UsbBus`] implemented here over the USB/IP
//! protocol (Linux `Documentation/usb/usbip_protocol.rst`). As on a board, the class only moves
//! 64-byte reports; the CTAPHID state machine and the authenticator are the daemon's device
//! loop, shared with the other lanes.
//!
//! # Why not the usbip-device crate
//!
//! usbip-device 0.2.0 implements the same idea, but it binds 127.0.0.1:3240 itself with
//! `unwrap()` (no other address, no port 0 for tests, a panic when the port is taken), panics on
//! a short TCP read or an unexpected direction, allocates whatever transfer length a client
//! claims, reports a high-speed device with made-up IDs, and leaves the status-stage packet of a
//! control write in the endpoint, which answers the next control read with nothing. Each of
//! those breaks a rule of this daemon (hostile bytes give a clear error, never a panic), so the
//! bus is written here instead: about as long, and every byte checked.
//!
//! # The protocol, as served here
//!
//! * One device, bus ID [`BUS_ID`], full speed, listed by `OP_REQ_DEVLIST` at any time.
//! * `OP_REQ_IMPORT` of that bus ID attaches it, one host at a time (another import gets
//!   "device busy"); the connection then carries `USBIP_CMD_SUBMIT` / `USBIP_CMD_UNLINK` until
//!   it closes, which detaches the device (a bus reset for the USB stack).
//! * Control transfers on endpoint 0 run through usb-device's control pipe at once: SETUP,
//!   DATA, STATUS; a STALL becomes `-EPIPE`. Interrupt OUT transfers are read by the class
//!   and acknowledged; interrupt IN transfers wait until the class has a report for them.
//!   `USBIP_CMD_UNLINK` cancels a waiting IN transfer (`-ECONNRESET`).
//! * Malformed input (an unknown command, a transfer longer than [`MAX_TRANSFER`]) closes the
//!   connection with a log line; a request that stalls closes nothing.

use std::cell::Cell;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use fidelio_ctaphid::PACKET_SIZE;
use fidelio_usb::CtapHidClass;
use fidelio_usb::usb_device::bus::{PollResult, UsbBus, UsbBusAllocator};
use fidelio_usb::usb_device::device::{UsbDevice, UsbDeviceState};
use fidelio_usb::usb_device::endpoint::{EndpointAddress, EndpointType};
use fidelio_usb::usb_device::{self, UsbDirection, UsbError};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::device::{Inbound, Outbound, Peer};

/// The bus ID the device is exported under (`usbip attach -b 1-1`).
pub const BUS_ID: &str = "1-1";
/// The port USB/IP clients use unless told otherwise (`usbip --tcp-port`).
pub const DEFAULT_PORT: u16 = 3240;
/// The serial number of the exported device.
pub const SERIAL: &str = "FIDELIO-USBIP";
/// The longest transfer accepted from a client. Our endpoints move 64-byte packets and control
/// transfers carry at most 128 bytes; anything longer is a broken or hostile client.
pub const MAX_TRANSFER: usize = 16 * 1024;

/// The protocol version in every operation header (1.1.1).
const USBIP_VERSION: u16 = 0x0111;
const OP_REQ_DEVLIST: u16 = 0x8005;
const OP_REP_DEVLIST: u16 = 0x0005;
const OP_REQ_IMPORT: u16 = 0x8003;
const OP_REP_IMPORT: u16 = 0x0003;
/// Operation status: done.
const ST_OK: u32 = 0x00;
/// Operation status: the device is attached elsewhere.
const ST_DEV_BUSY: u32 = 0x02;
/// Operation status: no such device.
const ST_NODEV: u32 = 0x04;

const CMD_SUBMIT: u32 = 1;
const CMD_UNLINK: u32 = 2;
const RET_SUBMIT: u32 = 3;
const RET_UNLINK: u32 = 4;
const DIR_IN: u32 = 1;
/// Every URB command and reply is a 48-byte header (plus data).
const HEADER_SIZE: usize = 48;
const BUSID_SIZE: usize = 32;
const PATH_SIZE: usize = 256;
/// `enum usb_device_speed`: full speed, as on the boards.
const SPEED_FULL: u32 = 2;
const BUSNUM: u32 = 1;
const DEVNUM: u32 = 1;
/// A stalled endpoint, as Linux reports it.
const EPIPE: i32 = -32;
/// An unlinked URB.
const ECONNRESET: i32 = -104;

/// IN transfers a client may leave waiting per endpoint (Linux's usbhid keeps one).
const MAX_PENDING_IN: usize = 32;
/// Reports from the device loop waiting for the host, at most (four maximum-size messages).
const MAX_QUEUED_REPORTS: usize = 4 * 120;
/// Connections in the operation phase at once (list, import); more are closed at once.
const MAX_OPERATION_CONNECTIONS: usize = 8;
/// How long a client may take to send an operation request.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may leave our answers unread before it is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// usb-device polls per batch of work, at most (each moves a packet or a control stage).
const MAX_POLLS: usize = 256;

const ENDPOINTS: usize = 16;

// ------------------------------------------------------------------------------------------
// The lane

/// The bound listener of the USB/IP lane.
#[derive(Debug)]
pub struct UsbipLane {
    listener: TcpListener,
    reports: mpsc::UnboundedSender<[u8; PACKET_SIZE]>,
    incoming: mpsc::UnboundedReceiver<[u8; PACKET_SIZE]>,
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
            "cannot listen for USB/IP on {}: {}",
            self.address, self.source
        )?;
        match self.source.kind() {
            std::io::ErrorKind::AddrInUse => write!(
                f,
                " (usbipd or another `fidelio serve --usbip` already uses this port; pick another \
                 with --usbip HOST:PORT and give the client `usbip --tcp-port PORT`)"
            )?,
            std::io::ErrorKind::PermissionDenied => {
                write!(f, " (ports below 1024 need privileges)")?;
            }
            _ => {}
        }
        Ok(())
    }
}

impl std::error::Error for BindError {}

impl UsbipLane {
    /// Listens on `address`. USB/IP has no authentication: whoever reaches the port can attach
    /// the key, so anything but a loopback address is logged as a warning.
    pub async fn bind(address: SocketAddr) -> Result<Self, BindError> {
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| BindError { address, source })?;
        if !address.ip().is_loopback() {
            tracing::warn!(
                "USB/IP on {address}: anyone who can reach it can attach this authenticator \
                 (USB/IP has no authentication)"
            );
        }
        let (reports, incoming) = mpsc::unbounded_channel();
        Ok(Self {
            listener,
            reports,
            incoming,
        })
    }

    /// The address actually bound (port 0 picks one).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The sending half, for the device loop: reports for [`Peer::Usbip`] go to the attached
    /// host; other peers' reports are not this lane's.
    pub fn outbound(&self) -> Rc<dyn Outbound> {
        Rc::new(UsbipOutbound {
            reports: self.reports.clone(),
        })
    }

    /// Serves clients until the device loop goes away. Must run on a `LocalSet`.
    pub async fn run(self, device: mpsc::Sender<Inbound>) {
        let Self {
            listener,
            reports,
            mut incoming,
        } = self;
        // Only the device loop sends from now on; when it is gone, `incoming` ends.
        drop(reports);

        let bus = VirtualBus::default();
        let state = bus.state.clone();
        let allocator = UsbBusAllocator::new(bus);
        let mut class = CtapHidClass::new(&allocator);
        let mut usb = match fidelio_usb::build_device(&allocator, SERIAL) {
            Ok(usb) => usb,
            Err(error) => {
                tracing::error!("USB/IP lane: cannot build the USB device: {error:?}");
                return;
            }
        };

        let shared = Rc::new(Shared::default());
        let (imports, mut imported) = mpsc::channel::<(TcpStream, SocketAddr)>(1);
        let acceptor = tokio::task::spawn_local(accept(listener, shared.clone(), imports));

        loop {
            tokio::select! {
                import = imported.recv() => {
                    let Some((stream, peer)) = import else { break };
                    tracing::info!("USB/IP: {peer} attached the device (bus ID {BUS_ID})");
                    let mut session = Session {
                        usb: &mut usb,
                        class: &mut class,
                        state: &state,
                        shared: &shared,
                        device: &device,
                        incoming: &mut incoming,
                        queue: VecDeque::new(),
                        pending_in: Default::default(),
                        replies: Vec::new(),
                    };
                    let end = session.run(stream).await;
                    drop(session);
                    shared.attached.set(false);
                    shared.configuration.set(0);
                    // Unplugged: the next host starts from a reset device.
                    state.lock_state().reset_pending = true;
                    usb.poll(&mut [&mut class]);
                    match end {
                        SessionEnd::Detached => tracing::info!("USB/IP: {peer} detached the device"),
                        SessionEnd::Error(reason) => {
                            tracing::warn!("USB/IP: dropped {peer}: {reason}");
                        }
                        SessionEnd::DeviceGone => break,
                    }
                }
                report = incoming.recv() => {
                    if report.is_none() { break }
                    tracing::debug!("USB/IP: no host attached, dropping a report");
                }
            }
        }
        acceptor.abort();
    }
}

/// Instructions for attaching the device served on `address`, one command a line.
pub fn attach_commands(address: SocketAddr) -> String {
    let host = if address.ip().is_unspecified() {
        "HOST".to_owned()
    } else {
        address.ip().to_string()
    };
    let port = if address.port() == DEFAULT_PORT {
        String::new()
    } else {
        format!("--tcp-port {} ", address.port())
    };
    format!(
        "sudo modprobe vhci-hcd\n\
         usbip {port}list -r {host}\n\
         sudo usbip {port}attach -r {host} -b {BUS_ID}"
    )
}

struct UsbipOutbound {
    reports: mpsc::UnboundedSender<[u8; PACKET_SIZE]>,
}

impl Outbound for UsbipOutbound {
    fn send(&self, to: &Peer, packet: &[u8; PACKET_SIZE]) {
        if *to == Peer::Usbip {
            // Fails only when the lane has stopped; the report has nowhere to go then.
            let _ = self.reports.send(*packet);
        }
    }
}

/// What the accepting task and the device task share.
#[derive(Debug, Default)]
struct Shared {
    /// A host has imported the device.
    attached: Cell<bool>,
    /// bConfigurationValue as of the last activity (0 or 1), for device lists.
    configuration: Cell<u8>,
    /// Connections in the operation phase.
    operations: Cell<usize>,
}

async fn accept(
    listener: TcpListener,
    shared: Rc<Shared>,
    imports: mpsc::Sender<(TcpStream, SocketAddr)>,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: wait rather than spin.
                tracing::warn!("USB/IP: accept failed: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if shared.operations.get() >= MAX_OPERATION_CONNECTIONS {
            tracing::warn!("USB/IP: too many connections at once, closing {peer}");
            continue;
        }
        shared
            .operations
            .set(shared.operations.get().saturating_add(1));
        let shared = shared.clone();
        let imports = imports.clone();
        tokio::task::spawn_local(async move {
            let outcome = tokio::time::timeout(
                OPERATION_TIMEOUT,
                operation(stream, peer, &shared, &imports),
            )
            .await;
            shared
                .operations
                .set(shared.operations.get().saturating_sub(1));
            match outcome {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::warn!("USB/IP: {peer}: {error}"),
                Err(_) => tracing::warn!("USB/IP: {peer} sent no request in time"),
            }
        });
    }
}

/// One connection's operation phase: a device list, or an import that hands the connection
/// to the device.
async fn operation(
    mut stream: TcpStream,
    peer: SocketAddr,
    shared: &Shared,
    imports: &mpsc::Sender<(TcpStream, SocketAddr)>,
) -> std::io::Result<()> {
    let mut header = [0u8; 8];
    stream.read_exact(&mut header).await?;
    let [v0, v1, c0, c1, ..] = header;
    let version = u16::from_be_bytes([v0, v1]);
    let code = u16::from_be_bytes([c0, c1]);
    if version != USBIP_VERSION {
        tracing::debug!("USB/IP: {peer} speaks version {version:#06x}; answering as 1.1.1");
    }
    match code {
        OP_REQ_DEVLIST => {
            let reply = devlist_reply(shared.configuration.get());
            stream.write_all(&reply).await?;
            stream.shutdown().await
        }
        OP_REQ_IMPORT => {
            let mut busid = [0u8; BUSID_SIZE];
            stream.read_exact(&mut busid).await?;
            let asked = c_string(&busid);
            let status = if asked != BUS_ID.as_bytes() {
                tracing::warn!(
                    "USB/IP: {peer} asked for bus ID {:?}; the device is {BUS_ID}",
                    String::from_utf8_lossy(asked)
                );
                ST_NODEV
            } else if shared.attached.get() {
                tracing::warn!("USB/IP: {peer} asked for the device, already attached elsewhere");
                ST_DEV_BUSY
            } else {
                ST_OK
            };
            if status != ST_OK {
                stream.write_all(&op_header(OP_REP_IMPORT, status)).await?;
                return stream.shutdown().await;
            }
            shared.attached.set(true);
            let mut reply = op_header(OP_REP_IMPORT, ST_OK).to_vec();
            reply.extend_from_slice(&device_record(shared.configuration.get()));
            if let Err(error) = stream.write_all(&reply).await {
                shared.attached.set(false);
                return Err(error);
            }
            if imports.send((stream, peer)).await.is_err() {
                shared.attached.set(false);
            }
            Ok(())
        }
        other => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("unknown USB/IP operation {other:#06x}, closing"),
        )),
    }
}

/// The bytes of a NUL-padded C string field.
fn c_string(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    field.get(..end).unwrap_or_default()
}

// ------------------------------------------------------------------------------------------
// Wire formats (all big-endian)

fn op_header(code: u16, status: u32) -> [u8; 8] {
    let mut header = [0u8; 8];
    header[..2].copy_from_slice(&USBIP_VERSION.to_be_bytes());
    header[2..4].copy_from_slice(&code.to_be_bytes());
    header[4..].copy_from_slice(&status.to_be_bytes());
    header
}

/// `struct usbip_usb_device`: what the list and the import say about the device (312 bytes).
fn device_record(configuration: u8) -> Vec<u8> {
    let mut record = Vec::with_capacity(312);
    record.extend_from_slice(&padded::<PATH_SIZE>(
        b"/sys/devices/platform/fidelio/usb1/1-1",
    ));
    record.extend_from_slice(&padded::<BUSID_SIZE>(BUS_ID.as_bytes()));
    record.extend_from_slice(&BUSNUM.to_be_bytes());
    record.extend_from_slice(&DEVNUM.to_be_bytes());
    record.extend_from_slice(&SPEED_FULL.to_be_bytes());
    record.extend_from_slice(&fidelio_usb::USB_VID.to_be_bytes());
    record.extend_from_slice(&fidelio_usb::USB_PID.to_be_bytes());
    record.extend_from_slice(&fidelio_usb::DEVICE_RELEASE.to_be_bytes());
    // bDeviceClass/SubClass/Protocol (defined by the interface), bConfigurationValue,
    // bNumConfigurations, bNumInterfaces.
    record.extend_from_slice(&[0, 0, 0, configuration, 1, 1]);
    record
}

/// `text` in a NUL-padded field of `N` bytes (cut to `N - 1`).
fn padded<const N: usize>(text: &[u8]) -> [u8; N] {
    let mut field = [0u8; N];
    for (slot, &byte) in field.iter_mut().zip(text).take(N.saturating_sub(1)) {
        *slot = byte;
    }
    field
}

fn devlist_reply(configuration: u8) -> Vec<u8> {
    let mut reply = op_header(OP_REP_DEVLIST, ST_OK).to_vec();
    reply.extend_from_slice(&1u32.to_be_bytes());
    reply.extend_from_slice(&device_record(configuration));
    // The one interface: HID, no subclass, no protocol, padding.
    reply.extend_from_slice(&[3, 0, 0, 0]);
    reply
}

/// `USBIP_RET_SUBMIT`; `data` follows for IN transfers.
fn ret_submit(replies: &mut Vec<u8>, seqnum: u32, status: i32, actual: usize, data: &[u8]) {
    let actual = u32::try_from(actual).unwrap_or(u32::MAX);
    for word in [RET_SUBMIT, seqnum, 0, 0, 0] {
        replies.extend_from_slice(&word.to_be_bytes());
    }
    replies.extend_from_slice(&status.to_be_bytes());
    replies.extend_from_slice(&actual.to_be_bytes());
    // start_frame, number_of_packets, error_count, 8 bytes of padding.
    replies.extend_from_slice(&[0u8; 20]);
    replies.extend_from_slice(data);
}

/// `USBIP_RET_UNLINK`.
fn ret_unlink(replies: &mut Vec<u8>, seqnum: u32, status: i32) {
    for word in [RET_UNLINK, seqnum, 0, 0, 0] {
        replies.extend_from_slice(&word.to_be_bytes());
    }
    replies.extend_from_slice(&status.to_be_bytes());
    replies.extend_from_slice(&[0u8; 24]);
}

/// A URB command from the client.
#[derive(Debug, PartialEq, Eq)]
enum Command {
    Submit(Submit),
    Unlink { seqnum: u32, victim: u32 },
}

#[derive(Debug, PartialEq, Eq)]
struct Submit {
    seqnum: u32,
    device_to_host: bool,
    endpoint: u32,
    transfer_length: usize,
    setup: [u8; 8],
    /// The OUT data (empty for IN).
    data: Vec<u8>,
}

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    bytes
        .get(at..at.saturating_add(4))
        .and_then(|word| word.try_into().ok())
        .map_or(0, u32::from_be_bytes)
}

/// Takes the first complete command off `buffer`: `Ok(None)` until one is complete, `Err`
/// (close the connection) for what is not the protocol.
fn take_command(buffer: &mut Vec<u8>) -> Result<Option<Command>, String> {
    if buffer.len() < HEADER_SIZE {
        return Ok(None);
    }
    let command = be_u32(buffer, 0);
    let seqnum = be_u32(buffer, 4);
    match command {
        CMD_SUBMIT => {
            let device_to_host = be_u32(buffer, 12) == DIR_IN;
            let endpoint = be_u32(buffer, 16);
            let transfer_length = usize::try_from(be_u32(buffer, 24)).unwrap_or(usize::MAX);
            if transfer_length > MAX_TRANSFER {
                return Err(format!(
                    "a {transfer_length}-byte transfer (at most {MAX_TRANSFER} are accepted)"
                ));
            }
            // Isochronous packet descriptors would follow the data; this device has no
            // isochronous endpoint, so a client has no reason to send any (number_of_packets
            // is ignored).
            let data_length = if device_to_host { 0 } else { transfer_length };
            let total = HEADER_SIZE.saturating_add(data_length);
            if buffer.len() < total {
                return Ok(None);
            }
            let mut setup = [0u8; 8];
            if let Some(bytes) = buffer.get(40..48) {
                setup.copy_from_slice(bytes);
            }
            let data = buffer.get(HEADER_SIZE..total).unwrap_or_default().to_vec();
            buffer.drain(..total);
            Ok(Some(Command::Submit(Submit {
                seqnum,
                device_to_host,
                endpoint,
                transfer_length,
                setup,
                data,
            })))
        }
        CMD_UNLINK => {
            let victim = be_u32(buffer, 20);
            buffer.drain(..HEADER_SIZE);
            Ok(Some(Command::Unlink { seqnum, victim }))
        }
        other => Err(format!("unknown USB/IP command {other:#x}")),
    }
}

// ------------------------------------------------------------------------------------------
// The session of an attached host

enum SessionEnd {
    Detached,
    Error(String),
    DeviceGone,
}

/// An IN transfer waiting for a packet.
#[derive(Debug, Clone, Copy)]
struct PendingIn {
    seqnum: u32,
    length: usize,
}

struct Session<'s, 'a> {
    usb: &'s mut UsbDevice<'a, VirtualBus>,
    class: &'s mut CtapHidClass<'a, VirtualBus>,
    state: &'s SharedState,
    shared: &'s Shared,
    device: &'s mpsc::Sender<Inbound>,
    incoming: &'s mut mpsc::UnboundedReceiver<[u8; PACKET_SIZE]>,
    /// Reports from the device loop the class has not taken yet.
    queue: VecDeque<[u8; PACKET_SIZE]>,
    pending_in: [VecDeque<PendingIn>; ENDPOINTS],
    /// Replies not written yet.
    replies: Vec<u8>,
}

impl Session<'_, '_> {
    async fn run(&mut self, mut stream: TcpStream) -> SessionEnd {
        // A new host: the device sees a bus reset before anything else.
        self.state.lock_state().reset_pending = true;
        let mut received: Vec<u8> = Vec::with_capacity(4096);
        let (mut reader, mut writer) = stream.split();
        loop {
            if let Err(end) = self.service().await {
                return end;
            }
            if !self.replies.is_empty() {
                match tokio::time::timeout(WRITE_TIMEOUT, writer.write_all(&self.replies)).await {
                    Ok(Ok(())) => self.replies.clear(),
                    Ok(Err(error)) => return SessionEnd::Error(format!("write failed: {error}")),
                    Err(_) => return SessionEnd::Error("the client stopped reading".to_owned()),
                }
            }
            tokio::select! {
                read = reader.read_buf(&mut received) => match read {
                    Ok(0) => return SessionEnd::Detached,
                    Ok(_) => loop {
                        match take_command(&mut received) {
                            Ok(Some(command)) => self.handle(command),
                            Ok(None) => break,
                            Err(reason) => return SessionEnd::Error(reason),
                        }
                    },
                    Err(error) => return SessionEnd::Error(format!("read failed: {error}")),
                },
                report = self.incoming.recv() => match report {
                    Some(report) => {
                        self.enqueue(report);
                        while let Ok(report) = self.incoming.try_recv() {
                            self.enqueue(report);
                        }
                    }
                    None => return SessionEnd::DeviceGone,
                },
            }
        }
    }

    fn enqueue(&mut self, report: [u8; PACKET_SIZE]) {
        if self.queue.len() >= MAX_QUEUED_REPORTS {
            tracing::warn!("USB/IP: the host reads no reports; dropping one");
            return;
        }
        self.queue.push_back(report);
    }

    fn handle(&mut self, command: Command) {
        match command {
            Command::Submit(submit) => self.submit(submit),
            Command::Unlink { seqnum, victim } => {
                let mut found = false;
                for waiting in &mut self.pending_in {
                    if let Some(at) = waiting.iter().position(|urb| urb.seqnum == victim) {
                        waiting.remove(at);
                        found = true;
                    }
                }
                // -ECONNRESET: unlinked before it completed; 0: it had completed already.
                ret_unlink(
                    &mut self.replies,
                    seqnum,
                    if found { ECONNRESET } else { 0 },
                );
            }
        }
    }

    fn submit(&mut self, submit: Submit) {
        let Submit {
            seqnum,
            device_to_host,
            endpoint,
            transfer_length,
            setup,
            data,
        } = submit;
        let Some(index) = usize::try_from(endpoint).ok().filter(|&i| i < ENDPOINTS) else {
            ret_submit(&mut self.replies, seqnum, EPIPE, 0, &[]);
            return;
        };
        if index == 0 {
            match self.control(setup, &data) {
                Ok(answer) => {
                    let answer = answer.get(..transfer_length).unwrap_or(&answer);
                    if setup[0] & 0x80 != 0 {
                        ret_submit(&mut self.replies, seqnum, 0, answer.len(), answer);
                    } else {
                        ret_submit(&mut self.replies, seqnum, 0, data.len(), &[]);
                    }
                }
                Err(()) => ret_submit(&mut self.replies, seqnum, EPIPE, 0, &[]),
            }
            return;
        }
        let mut state = self.state.lock_state();
        let Some(ep) = state.endpoints.get_mut(index) else {
            return;
        };
        if device_to_host {
            let waiting = self.pending_in.get_mut(index);
            match waiting {
                Some(waiting)
                    if ep.in_allocated && !ep.stalled_in && waiting.len() < MAX_PENDING_IN =>
                {
                    waiting.push_back(PendingIn {
                        seqnum,
                        length: transfer_length,
                    });
                }
                _ => ret_submit(&mut self.replies, seqnum, EPIPE, 0, &[]),
            }
        } else if ep.out_allocated && !ep.stalled_out {
            let size = usize::from(ep.out_packet_size.max(1));
            for chunk in data.chunks(size) {
                ep.out.push_back((false, chunk.to_vec()));
            }
            // Read by the class in the service step that follows, before more is received.
            ret_submit(&mut self.replies, seqnum, 0, data.len(), &[]);
        } else {
            ret_submit(&mut self.replies, seqnum, EPIPE, 0, &[]);
        }
    }

    /// One control transfer on endpoint 0 through usb-device's control pipe: SETUP, DATA,
    /// STATUS. `Ok` with the data read (control reads), `Err` for a STALL.
    fn control(&mut self, setup: [u8; 8], data_out: &[u8]) -> Result<Vec<u8>, ()> {
        let device_to_host = setup[0] & 0x80 != 0;
        let length = usize::from(u16::from_le_bytes([setup[6], setup[7]]));
        let packet_size = usize::from(fidelio_usb::EP0_PACKET_SIZE);
        {
            let mut state = self.state.lock_state();
            let Some(ep0) = state.endpoints.get_mut(0) else {
                return Err(());
            };
            // A SETUP clears a STALL of the control endpoint and starts afresh.
            ep0.stalled_in = false;
            ep0.stalled_out = false;
            ep0.in_buffer = None;
            ep0.in_complete = false;
            ep0.out.clear();
            ep0.out.push_back((true, setup.to_vec()));
            if !device_to_host {
                for chunk in data_out.chunks(packet_size) {
                    ep0.out.push_back((false, chunk.to_vec()));
                }
            }
        }
        let mut answer = Vec::new();
        let mut data_done = !device_to_host;
        for _ in 0..MAX_POLLS {
            self.usb.poll(&mut [&mut *self.class]);
            let mut state = self.state.lock_state();
            let Some(ep0) = state.endpoints.get_mut(0) else {
                return Err(());
            };
            if ep0.stalled_in || ep0.stalled_out {
                return Err(());
            }
            let Some(packet) = ep0.in_buffer.take() else {
                if data_done && device_to_host && ep0.out.is_empty() && !ep0.in_complete {
                    answer.truncate(length);
                    return Ok(answer);
                }
                continue;
            };
            ep0.in_complete = true;
            if !data_done {
                answer.extend_from_slice(&packet);
                if packet.len() < packet_size || answer.len() >= length {
                    data_done = true;
                    // The host's STATUS stage of a control read: an empty OUT packet.
                    ep0.out.push_back((false, Vec::new()));
                }
            } else if !device_to_host {
                // The device's STATUS stage of a control write: the empty IN packet. Let
                // usb-device see it go (SET_ADDRESS takes effect then).
                drop(state);
                self.usb.poll(&mut [&mut *self.class]);
                return Ok(Vec::new());
            }
            // A zero-length packet after a control read's data is not asked for: ignored.
        }
        Err(())
    }

    /// Lets the USB stack work: polls it, forwards OUT reports to the device loop, feeds it
    /// reports for the host, completes waiting IN transfers. `Err` ends the session.
    async fn service(&mut self) -> Result<(), SessionEnd> {
        for _ in 0..MAX_POLLS {
            let mut progressed = self.usb.poll(&mut [&mut *self.class]);
            self.class.take_bus_reset();
            while let Some(packet) = self.class.read_report() {
                progressed = true;
                let inbound = Inbound {
                    packet,
                    from: Peer::Usbip,
                };
                if self.device.send(inbound).await.is_err() {
                    return Err(SessionEnd::DeviceGone);
                }
            }
            while let Some(report) = self.queue.front() {
                if self.class.write_report(report).is_err() {
                    break;
                }
                self.queue.pop_front();
                progressed = true;
            }
            if self.complete_in_transfers() {
                progressed = true;
            }
            if !progressed {
                break;
            }
        }
        let configured = self.usb.state() == UsbDeviceState::Configured;
        self.shared.configuration.set(u8::from(configured));
        Ok(())
    }

    /// Hands the packets the device wrote to waiting IN transfers. Whether any completed.
    fn complete_in_transfers(&mut self) -> bool {
        let mut state = self.state.lock_state();
        let mut completed = false;
        for (ep, waiting) in state.endpoints.iter_mut().zip(&mut self.pending_in).skip(1) {
            if ep.stalled_in {
                for urb in waiting.drain(..) {
                    ret_submit(&mut self.replies, urb.seqnum, EPIPE, 0, &[]);
                    completed = true;
                }
                continue;
            }
            while ep.in_buffer.is_some() {
                let Some(urb) = waiting.pop_front() else {
                    break;
                };
                let packet = ep.in_buffer.take().unwrap_or_default();
                let data = packet.get(..urb.length).unwrap_or(&packet);
                ret_submit(&mut self.replies, urb.seqnum, 0, data.len(), data);
                ep.in_complete = true;
                completed = true;
            }
        }
        completed
    }
}

// ------------------------------------------------------------------------------------------
// The bus

type SharedState = Arc<Mutex<BusState>>;

trait LockState {
    fn lock_state(&self) -> MutexGuard<'_, BusState>;
}

impl LockState for SharedState {
    fn lock_state(&self) -> MutexGuard<'_, BusState> {
        // Nothing panics while holding it; if something did, the state is still usable.
        self.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Debug, Default)]
struct EndpointState {
    out_allocated: bool,
    in_allocated: bool,
    out_packet_size: u16,
    in_packet_size: u16,
    /// Packets from the host, oldest first; `true` marks a SETUP packet.
    out: VecDeque<(bool, Vec<u8>)>,
    /// The packet the device wrote for the host's next IN transfer.
    in_buffer: Option<Vec<u8>>,
    /// The host took the IN packet; usb-device hears of it at the next poll.
    in_complete: bool,
    stalled_in: bool,
    stalled_out: bool,
}

#[derive(Debug, Default)]
struct BusState {
    endpoints: [EndpointState; ENDPOINTS],
    address: u8,
    /// Report a bus reset at the next poll (a host attached or detached).
    reset_pending: bool,
}

/// usb-device's view of the USB/IP connection: one packet buffer per IN endpoint, a queue per
/// OUT endpoint, filled and emptied by the session as URBs come and go.
#[derive(Debug, Default)]
struct VirtualBus {
    state: SharedState,
}

impl UsbBus for VirtualBus {
    fn alloc_ep(
        &mut self,
        direction: UsbDirection,
        address: Option<EndpointAddress>,
        ep_type: EndpointType,
        max_packet_size: u16,
        _interval: u8,
    ) -> usb_device::Result<EndpointAddress> {
        if matches!(ep_type, EndpointType::Isochronous { .. }) || max_packet_size > 64 {
            return Err(UsbError::Unsupported);
        }
        let mut state = self.state.lock_state();
        let taken = |ep: &EndpointState| match direction {
            UsbDirection::Out => ep.out_allocated,
            UsbDirection::In => ep.in_allocated,
        };
        let index = match address {
            Some(address) => address.index(),
            None => (1..ENDPOINTS)
                .find(|&i| state.endpoints.get(i).is_some_and(|ep| !taken(ep)))
                .ok_or(UsbError::EndpointOverflow)?,
        };
        let ep = state
            .endpoints
            .get_mut(index)
            .ok_or(UsbError::InvalidEndpoint)?;
        if taken(ep) {
            return Err(UsbError::InvalidEndpoint);
        }
        match direction {
            UsbDirection::Out => {
                ep.out_allocated = true;
                ep.out_packet_size = max_packet_size;
            }
            UsbDirection::In => {
                ep.in_allocated = true;
                ep.in_packet_size = max_packet_size;
            }
        }
        Ok(EndpointAddress::from_parts(index, direction))
    }

    fn enable(&mut self) {}

    fn reset(&self) {
        let mut state = self.state.lock_state();
        for ep in &mut state.endpoints {
            ep.out.clear();
            ep.in_buffer = None;
            ep.in_complete = false;
            ep.stalled_in = false;
            ep.stalled_out = false;
        }
        state.address = 0;
    }

    fn set_device_address(&self, address: u8) {
        self.state.lock_state().address = address;
    }

    fn write(&self, address: EndpointAddress, buf: &[u8]) -> usb_device::Result<usize> {
        let mut state = self.state.lock_state();
        let ep = state
            .endpoints
            .get_mut(address.index())
            .filter(|ep| ep.in_allocated)
            .ok_or(UsbError::InvalidEndpoint)?;
        if buf.len() > usize::from(ep.in_packet_size) {
            return Err(UsbError::BufferOverflow);
        }
        if ep.in_buffer.is_some() {
            return Err(UsbError::WouldBlock);
        }
        ep.in_buffer = Some(buf.to_vec());
        Ok(buf.len())
    }

    fn read(&self, address: EndpointAddress, buf: &mut [u8]) -> usb_device::Result<usize> {
        let mut state = self.state.lock_state();
        let ep = state
            .endpoints
            .get_mut(address.index())
            .filter(|ep| ep.out_allocated)
            .ok_or(UsbError::InvalidEndpoint)?;
        let (_, packet) = ep.out.pop_front().ok_or(UsbError::WouldBlock)?;
        // Too long for the reader: dropped, as a controller's overflowing buffer would.
        let target = buf
            .get_mut(..packet.len())
            .ok_or(UsbError::BufferOverflow)?;
        target.copy_from_slice(&packet);
        Ok(packet.len())
    }

    fn set_stalled(&self, address: EndpointAddress, stalled: bool) {
        let mut state = self.state.lock_state();
        if let Some(ep) = state.endpoints.get_mut(address.index()) {
            match address.direction() {
                UsbDirection::In => ep.stalled_in = stalled,
                UsbDirection::Out => ep.stalled_out = stalled,
            }
        }
    }

    fn is_stalled(&self, address: EndpointAddress) -> bool {
        let state = self.state.lock_state();
        state
            .endpoints
            .get(address.index())
            .is_some_and(|ep| match address.direction() {
                UsbDirection::In => ep.stalled_in,
                UsbDirection::Out => ep.stalled_out,
            })
    }

    fn suspend(&self) {}

    fn resume(&self) {}

    fn poll(&self) -> PollResult {
        let mut state = self.state.lock_state();
        if std::mem::take(&mut state.reset_pending) {
            return PollResult::Reset;
        }
        let (mut ep_out, mut ep_setup, mut ep_in_complete) = (0u16, 0u16, 0u16);
        for (index, ep) in state.endpoints.iter_mut().enumerate() {
            let bit = 1u16.checked_shl(u32::try_from(index).unwrap_or(u32::MAX));
            let bit = bit.unwrap_or(0);
            match ep.out.front() {
                Some((true, _)) => ep_setup |= bit,
                Some((false, _)) => ep_out |= bit,
                None => {}
            }
            if std::mem::take(&mut ep.in_complete) {
                ep_in_complete |= bit;
            }
        }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

    use super::*;

    #[test]
    fn device_record_is_312_bytes_and_names_the_device() {
        let record = device_record(1);
        assert_eq!(record.len(), 312);
        assert_eq!(c_string(&record[256..288]), BUS_ID.as_bytes());
        assert_eq!(be_u32(&record, 296), SPEED_FULL);
        assert_eq!(record[308..312], [0, 1, 1, 1][..]);
        assert_eq!(devlist_reply(0).len(), 8 + 4 + 312 + 4);
    }

    #[test]
    fn commands_are_taken_whole_and_only_whole() {
        let mut submit = Vec::new();
        for word in [CMD_SUBMIT, 7, 0x0001_0001, 0, 1, 0, 3, 0, 0, 0] {
            submit.extend_from_slice(&u32::to_be_bytes(word));
        }
        submit.extend_from_slice(&[0u8; 8]);
        submit.extend_from_slice(&[1, 2, 3]);
        for cut in 0..submit.len() {
            let mut partial = submit[..cut].to_vec();
            assert_eq!(take_command(&mut partial), Ok(None), "cut at {cut}");
        }
        let mut whole = submit.clone();
        whole.extend_from_slice(&[0xEE]);
        let Ok(Some(Command::Submit(taken))) = take_command(&mut whole) else {
            panic!("no command");
        };
        assert_eq!(taken.seqnum, 7);
        assert_eq!(taken.endpoint, 1);
        assert!(!taken.device_to_host);
        assert_eq!(taken.data, [1, 2, 3]);
        assert_eq!(whole, [0xEE], "the next command's bytes stay");
    }

    #[test]
    fn hostile_headers_close_the_connection() {
        let mut unknown = vec![0u8; HEADER_SIZE];
        unknown[3] = 9;
        assert!(take_command(&mut unknown).is_err());
        let mut huge = Vec::new();
        for word in [CMD_SUBMIT, 1, 0, 0, 1, 0, u32::MAX, 0, 0, 0, 0, 0] {
            huge.extend_from_slice(&u32::to_be_bytes(word));
        }
        assert!(take_command(&mut huge).is_err());
    }

    #[test]
    fn attach_commands_name_the_port_only_when_unusual() {
        let default = attach_commands(SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)));
        assert!(default.contains("usbip list -r 127.0.0.1"));
        assert!(default.contains("usbip attach -r 127.0.0.1 -b 1-1"));
        let other = attach_commands(SocketAddr::from(([0, 0, 0, 0], 4000)));
        assert!(other.contains("usbip --tcp-port 4000 attach -r HOST -b 1-1"));
    }
}
