//! The UHID lane: a FIDO HID device in this machine's own kernel, made through `/dev/uhid`.
//!
//! Browsers, OpenSSH, libfido2 and python-fido2 find it as `/dev/hidrawN` exactly like a USB
//! security key; the packets they write reach the same device loop as the UDP lane's.
//!
//! ```text
//!   host: write(/dev/hidrawN) ─▶ kernel ─UHID_OUTPUT─▶ reader thread ─Inbound─▶ device loop
//!   host: read(/dev/hidrawN)  ◀─ kernel ◀─UHID_INPUT2── Outbound::send ◀──────── device loop
//! ```
//!
//! # The kernel interface, as this module uses it
//!
//! Everything crossing `/dev/uhid` is one `struct uhid_event` (`<linux/uhid.h>`): a
//! native-endian `u32` type followed by a union of packed requests, [`EVENT_SIZE`] bytes in
//! all. This module encodes and decodes those bytes by hand ([`offset`] holds the layout; a
//! test compiles a C program against the real header and compares).
//!
//! - A write must hold at least the 4-byte type; the kernel zero-fills the rest of the event
//!   and answers with the whole count or an error. So each event is written with one `write`
//!   of only the bytes it uses (70 for a report, 4 for `UHID_DESTROY`).
//! - A read returns one queued event, cut to the buffer; reads here use a full-size buffer, and
//!   a shorter event is treated as zero-extended, as the header asks.
//! - The kernel keeps at most 31 unread events and drops newer ones, so a dedicated thread
//!   blocks in `read` and hands reports to the device loop through its channel.
//! - `UHID_OUTPUT` carries, unchanged, what a host wrote to the hidraw node. For a report
//!   descriptor without report IDs (ours) hidraw callers put a report number 0 first, so one
//!   CTAPHID report normally arrives as 65 bytes starting with 0; 64 bytes are taken as the
//!   bare report. Anything else is dropped with a log line.
//! - `UHID_GET_REPORT` and `UHID_SET_REPORT` (feature-report ioctls) block the calling host
//!   for up to 5 s until answered: FIDO has no feature reports, so they get an immediate
//!   error reply (the host's ioctl fails with `EIO`).
//! - The device lives as long as the open file: [`UhidLane`] sends `UHID_DESTROY` when dropped,
//!   and if the daemon dies without doing so (crash, SIGKILL) the kernel closes the file and
//!   removes the device all the same. Nothing is left behind.

use std::fs::{File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use fidelio_ctaphid::PACKET_SIZE;
use tokio::sync::mpsc;

use crate::device::{Inbound, Outbound, Peer};

/// Where the kernel's UHID character device lives.
pub const DEFAULT_PATH: &str = "/dev/uhid";

/// The `phys` string the device is created with (shows up as `HID_PHYS`).
pub const PHYS: &str = "fidelio/uhid";

/// Event types (`enum uhid_event_type`). Types 0, 7 and 8 are obsolete forms this module
/// neither sends nor expects.
pub mod event_type {
    /// user → kernel: remove the device.
    pub const DESTROY: u32 = 1;
    /// kernel → user: a HID driver bound the device; carries `dev_flags`.
    pub const START: u32 = 2;
    /// kernel → user: the driver let go of the device.
    pub const STOP: u32 = 3;
    /// kernel → user: the first host opened the device.
    pub const OPEN: u32 = 4;
    /// kernel → user: the last host closed the device.
    pub const CLOSE: u32 = 5;
    /// kernel → user: a host sent an output report.
    pub const OUTPUT: u32 = 6;
    /// kernel → user: a host asks for a report (answered with `GET_REPORT_REPLY`).
    pub const GET_REPORT: u32 = 9;
    /// user → kernel: the answer to `GET_REPORT`.
    pub const GET_REPORT_REPLY: u32 = 10;
    /// user → kernel: create the device, report descriptor inline.
    pub const CREATE2: u32 = 11;
    /// user → kernel: an input report for the hosts.
    pub const INPUT2: u32 = 12;
    /// kernel → user: a host sets a report (answered with `SET_REPORT_REPLY`).
    pub const SET_REPORT: u32 = 13;
    /// user → kernel: the answer to `SET_REPORT`.
    pub const SET_REPORT_REPLY: u32 = 14;
}

/// Report types in the `rtype` fields (`enum uhid_report_type`).
pub mod report_type {
    /// A feature report.
    pub const FEATURE: u8 = 0;
    /// An output report (host → device).
    pub const OUTPUT: u8 = 1;
    /// An input report (device → host).
    pub const INPUT: u8 = 2;
}

/// `BUS_USB` from `<linux/input.h>`: hosts treat the device as a USB key.
pub const BUS_USB: u16 = 0x03;
/// `UHID_DATA_MAX`: the largest report an event carries.
pub const DATA_MAX: usize = 4096;
/// `HID_MAX_DESCRIPTOR_SIZE`: the largest report descriptor the kernel takes.
pub const DESCRIPTOR_MAX: usize = 4096;
/// `sizeof(struct uhid_event)`: the 4-byte type, then the union. The union holds
/// `uhid_create2_req` (4372 bytes, the largest member) and is padded to 4376, a multiple of the
/// 8-byte alignment of `uhid_start_req`'s `u64` — the packed event does not pack the union's
/// own type. 4380 in all.
pub const EVENT_SIZE: usize = 4380;
/// Sizes of the fixed string fields of `uhid_create2_req`, terminating NUL included.
pub const NAME_SIZE: usize = 128;
/// See [`NAME_SIZE`].
pub const PHYS_SIZE: usize = 64;
/// See [`NAME_SIZE`].
pub const UNIQ_SIZE: usize = 64;
/// The `err` value of our GET/SET_REPORT replies (`EIO`; the kernel only checks for non-zero).
pub const REPLY_ERROR: u16 = 5;

/// Byte offsets of every field this module touches, from the start of `struct uhid_event`
/// (what `offsetof(struct uhid_event, u.create2.name)` and friends give).
pub mod offset {
    /// `type`, a `u32`.
    pub const TYPE: usize = 0;

    /// `u.create2.name[128]`.
    pub const CREATE2_NAME: usize = 4;
    /// `u.create2.phys[64]`.
    pub const CREATE2_PHYS: usize = 132;
    /// `u.create2.uniq[64]`.
    pub const CREATE2_UNIQ: usize = 196;
    /// `u.create2.rd_size`, a `u16`.
    pub const CREATE2_RD_SIZE: usize = 260;
    /// `u.create2.bus`, a `u16`.
    pub const CREATE2_BUS: usize = 262;
    /// `u.create2.vendor`, a `u32`.
    pub const CREATE2_VENDOR: usize = 264;
    /// `u.create2.product`, a `u32`.
    pub const CREATE2_PRODUCT: usize = 268;
    /// `u.create2.version`, a `u32`.
    pub const CREATE2_VERSION: usize = 272;
    /// `u.create2.country`, a `u32`.
    pub const CREATE2_COUNTRY: usize = 276;
    /// `u.create2.rd_data[4096]`.
    pub const CREATE2_RD_DATA: usize = 280;

    /// `u.start.dev_flags`, a `u64`.
    pub const START_DEV_FLAGS: usize = 4;

    /// `u.input2.size`, a `u16`.
    pub const INPUT2_SIZE: usize = 4;
    /// `u.input2.data[4096]`.
    pub const INPUT2_DATA: usize = 6;

    /// `u.output.data[4096]`.
    pub const OUTPUT_DATA: usize = 4;
    /// `u.output.size`, a `u16`.
    pub const OUTPUT_SIZE: usize = 4100;
    /// `u.output.rtype`, a `u8`.
    pub const OUTPUT_RTYPE: usize = 4102;

    /// `u.get_report.id`, a `u32`.
    pub const GET_REPORT_ID: usize = 4;
    /// `u.get_report.rnum`, a `u8`.
    pub const GET_REPORT_RNUM: usize = 8;
    /// `u.get_report.rtype`, a `u8`.
    pub const GET_REPORT_RTYPE: usize = 9;

    /// `u.get_report_reply.id`, a `u32`.
    pub const GET_REPORT_REPLY_ID: usize = 4;
    /// `u.get_report_reply.err`, a `u16`.
    pub const GET_REPORT_REPLY_ERR: usize = 8;
    /// `u.get_report_reply.size`, a `u16`.
    pub const GET_REPORT_REPLY_SIZE: usize = 10;

    /// `u.set_report.id`, a `u32`.
    pub const SET_REPORT_ID: usize = 4;
    /// `u.set_report.rnum`, a `u8`.
    pub const SET_REPORT_RNUM: usize = 8;
    /// `u.set_report.rtype`, a `u8`.
    pub const SET_REPORT_RTYPE: usize = 9;
    /// `u.set_report.size`, a `u16`.
    pub const SET_REPORT_SIZE: usize = 10;

    /// `u.set_report_reply.id`, a `u32`.
    pub const SET_REPORT_REPLY_ID: usize = 4;
    /// `u.set_report_reply.err`, a `u16`.
    pub const SET_REPORT_REPLY_ERR: usize = 8;
}

/// Bytes written for one input report: type, `size`, 64 bytes of data.
pub const INPUT2_LEN: usize = offset::INPUT2_DATA + PACKET_SIZE;
/// Bytes written for a GET_REPORT reply without data: type, `id`, `err`, `size`.
pub const GET_REPORT_REPLY_LEN: usize = offset::GET_REPORT_REPLY_SIZE + 2;
/// Bytes written for a SET_REPORT reply: type, `id`, `err`.
pub const SET_REPORT_REPLY_LEN: usize = offset::SET_REPORT_REPLY_ERR + 2;
/// Bytes written for `UHID_DESTROY`: the type alone.
pub const DESTROY_LEN: usize = 4;

/// What the kernel is told about the device (`uhid_create2_req`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceIdentity {
    /// Product name (`HID_NAME`), at most 127 bytes.
    pub name: String,
    /// Physical location (`HID_PHYS`), at most 63 bytes.
    pub phys: String,
    /// Serial (`HID_UNIQ`), at most 63 bytes: how [`find_hidraw`] tells our device apart.
    pub uniq: String,
    /// Bus type (`BUS_USB`).
    pub bus: u16,
    /// Vendor ID.
    pub vendor: u32,
    /// Product ID.
    pub product: u32,
    /// Device version.
    pub version: u32,
    /// HID country code (0: not localised).
    pub country: u32,
    /// The HID report descriptor, 1 to 4096 bytes.
    pub report_descriptor: Vec<u8>,
}

impl DeviceIdentity {
    /// Fidelio's FIDO HID device: the same name, IDs and report descriptor as the USB class
    /// ([`fidelio_usb`]), on the USB bus, with serial `uniq`.
    pub fn fidelio(uniq: &str) -> Self {
        Self {
            name: fidelio_usb::DEVICE_NAME.to_owned(),
            phys: PHYS.to_owned(),
            uniq: uniq.to_owned(),
            bus: BUS_USB,
            vendor: u32::from(fidelio_usb::USB_VID),
            product: u32::from(fidelio_usb::USB_PID),
            version: 0x0100,
            country: 0,
            report_descriptor: fidelio_usb::report_descriptor().to_vec(),
        }
    }
}

/// The serial this process gives its UHID device: `fidelio-<pid>`, so two daemons' devices
/// differ and each can find its own hidraw node.
pub fn default_uniq() -> String {
    format!("fidelio-{}", std::process::id())
}

/// A [`DeviceIdentity`] the kernel could not take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityError {
    /// A string field is too long or holds a NUL byte.
    Field {
        /// Which field.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The most it may have.
        max: usize,
    },
    /// The report descriptor is empty or longer than [`DESCRIPTOR_MAX`].
    Descriptor(usize),
}

impl std::fmt::Display for IdentityError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IdentityError::Field { field, len, max } => write!(
                f,
                "the UHID device's {field} is {len} bytes or holds a NUL byte (at most {max} bytes, no NUL)"
            ),
            IdentityError::Descriptor(len) => write!(
                f,
                "the report descriptor is {len} bytes (1 to {DESCRIPTOR_MAX} accepted)"
            ),
        }
    }
}

impl std::error::Error for IdentityError {}

/// Writes `bytes` at `at`. Every caller passes constant offsets inside a buffer sized for
/// them (the tests check each field lands where `<linux/uhid.h>` puts it).
fn put(buffer: &mut [u8], at: usize, bytes: &[u8]) {
    let end = at.saturating_add(bytes.len());
    if let Some(slot) = buffer.get_mut(at..end) {
        slot.copy_from_slice(bytes);
    }
}

fn put_string(
    buffer: &mut [u8],
    at: usize,
    field: &'static str,
    value: &str,
    size: usize,
) -> Result<(), IdentityError> {
    let max = size.saturating_sub(1);
    if value.len() > max || value.as_bytes().contains(&0) {
        return Err(IdentityError::Field {
            field,
            len: value.len(),
            max,
        });
    }
    put(buffer, at, value.as_bytes());
    Ok(())
}

/// `UHID_CREATE2` for `identity`, the whole [`EVENT_SIZE`]-byte event.
pub fn encode_create2(identity: &DeviceIdentity) -> Result<Vec<u8>, IdentityError> {
    let descriptor = &identity.report_descriptor;
    let rd_size = u16::try_from(descriptor.len())
        .ok()
        .filter(|&size| size > 0 && usize::from(size) <= DESCRIPTOR_MAX)
        .ok_or(IdentityError::Descriptor(descriptor.len()))?;
    let mut event = vec![0u8; EVENT_SIZE];
    put(&mut event, offset::TYPE, &event_type::CREATE2.to_ne_bytes());
    put_string(
        &mut event,
        offset::CREATE2_NAME,
        "name",
        &identity.name,
        NAME_SIZE,
    )?;
    put_string(
        &mut event,
        offset::CREATE2_PHYS,
        "phys",
        &identity.phys,
        PHYS_SIZE,
    )?;
    put_string(
        &mut event,
        offset::CREATE2_UNIQ,
        "uniq",
        &identity.uniq,
        UNIQ_SIZE,
    )?;
    put(&mut event, offset::CREATE2_RD_SIZE, &rd_size.to_ne_bytes());
    put(&mut event, offset::CREATE2_BUS, &identity.bus.to_ne_bytes());
    put(
        &mut event,
        offset::CREATE2_VENDOR,
        &identity.vendor.to_ne_bytes(),
    );
    put(
        &mut event,
        offset::CREATE2_PRODUCT,
        &identity.product.to_ne_bytes(),
    );
    put(
        &mut event,
        offset::CREATE2_VERSION,
        &identity.version.to_ne_bytes(),
    );
    put(
        &mut event,
        offset::CREATE2_COUNTRY,
        &identity.country.to_ne_bytes(),
    );
    put(&mut event, offset::CREATE2_RD_DATA, descriptor);
    Ok(event)
}

/// `UHID_INPUT2` carrying one 64-byte CTAPHID report (no report ID: the descriptor has none).
pub fn encode_input2(report: &[u8; PACKET_SIZE]) -> [u8; INPUT2_LEN] {
    let mut event = [0u8; INPUT2_LEN];
    put(&mut event, offset::TYPE, &event_type::INPUT2.to_ne_bytes());
    // PACKET_SIZE (64) fits a u16.
    let size = u16::try_from(PACKET_SIZE).unwrap_or(u16::MAX);
    put(&mut event, offset::INPUT2_SIZE, &size.to_ne_bytes());
    put(&mut event, offset::INPUT2_DATA, report);
    event
}

/// `UHID_GET_REPORT_REPLY` for request `id`, with error `err` and no data.
pub fn encode_get_report_reply(id: u32, err: u16) -> [u8; GET_REPORT_REPLY_LEN] {
    let mut event = [0u8; GET_REPORT_REPLY_LEN];
    put(
        &mut event,
        offset::TYPE,
        &event_type::GET_REPORT_REPLY.to_ne_bytes(),
    );
    put(&mut event, offset::GET_REPORT_REPLY_ID, &id.to_ne_bytes());
    put(&mut event, offset::GET_REPORT_REPLY_ERR, &err.to_ne_bytes());
    event
}

/// `UHID_SET_REPORT_REPLY` for request `id`, with error `err`.
pub fn encode_set_report_reply(id: u32, err: u16) -> [u8; SET_REPORT_REPLY_LEN] {
    let mut event = [0u8; SET_REPORT_REPLY_LEN];
    put(
        &mut event,
        offset::TYPE,
        &event_type::SET_REPORT_REPLY.to_ne_bytes(),
    );
    put(&mut event, offset::SET_REPORT_REPLY_ID, &id.to_ne_bytes());
    put(&mut event, offset::SET_REPORT_REPLY_ERR, &err.to_ne_bytes());
    event
}

/// `UHID_DESTROY`.
pub fn encode_destroy() -> [u8; DESTROY_LEN] {
    event_type::DESTROY.to_ne_bytes()
}

/// An event read from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelEvent {
    /// A HID driver bound the device (`UHID_DEV_NUMBERED_*` bits in `dev_flags`).
    Start {
        /// Which report kinds carry report numbers (none, for our descriptor).
        dev_flags: u64,
    },
    /// The driver let go of the device (also sent after `UHID_DESTROY`).
    Stop,
    /// The first host opened the device.
    Open,
    /// The last host closed the device.
    Close,
    /// A host wrote a report.
    Output {
        /// The bytes as the host wrote them (report number first, for hidraw writers).
        data: Vec<u8>,
        /// [`report_type`] of the write.
        rtype: u8,
    },
    /// A host asks for a report and waits for the reply.
    GetReport {
        /// Request ID to echo in the reply.
        id: u32,
        /// Report number.
        rnum: u8,
        /// [`report_type`].
        rtype: u8,
    },
    /// A host sets a report and waits for the reply.
    SetReport {
        /// Request ID to echo in the reply.
        id: u32,
        /// Report number.
        rnum: u8,
        /// [`report_type`].
        rtype: u8,
        /// Bytes of report data.
        size: u16,
    },
    /// An event type this lane has no use for.
    Other(u32),
}

/// An event that cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer bytes than the 4-byte type.
    Short(usize),
    /// A `UHID_OUTPUT` whose size exceeds [`DATA_MAX`].
    OutputSize(u16),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Short(len) => write!(f, "a {len}-byte UHID event (at least 4 expected)"),
            DecodeError::OutputSize(size) => {
                write!(
                    f,
                    "a UHID output report of {size} bytes (at most {DATA_MAX})"
                )
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// Byte `at` of an event, bytes past the end reading as 0 (the kernel's convention for short
/// events).
fn byte_at(event: &[u8], at: usize) -> u8 {
    event.get(at).copied().unwrap_or(0)
}

fn bytes_at<const N: usize>(event: &[u8], at: usize) -> [u8; N] {
    std::array::from_fn(|i| byte_at(event, at.saturating_add(i)))
}

/// Decodes one event as read from `/dev/uhid`.
pub fn decode_event(event: &[u8]) -> Result<KernelEvent, DecodeError> {
    if event.len() < 4 {
        return Err(DecodeError::Short(event.len()));
    }
    let kind = u32::from_ne_bytes(bytes_at(event, offset::TYPE));
    Ok(match kind {
        event_type::START => KernelEvent::Start {
            dev_flags: u64::from_ne_bytes(bytes_at(event, offset::START_DEV_FLAGS)),
        },
        event_type::STOP => KernelEvent::Stop,
        event_type::OPEN => KernelEvent::Open,
        event_type::CLOSE => KernelEvent::Close,
        event_type::OUTPUT => {
            let size = u16::from_ne_bytes(bytes_at(event, offset::OUTPUT_SIZE));
            if usize::from(size) > DATA_MAX {
                return Err(DecodeError::OutputSize(size));
            }
            let data = (0..usize::from(size))
                .map(|i| byte_at(event, offset::OUTPUT_DATA.saturating_add(i)))
                .collect();
            KernelEvent::Output {
                data,
                rtype: byte_at(event, offset::OUTPUT_RTYPE),
            }
        }
        event_type::GET_REPORT => KernelEvent::GetReport {
            id: u32::from_ne_bytes(bytes_at(event, offset::GET_REPORT_ID)),
            rnum: byte_at(event, offset::GET_REPORT_RNUM),
            rtype: byte_at(event, offset::GET_REPORT_RTYPE),
        },
        event_type::SET_REPORT => KernelEvent::SetReport {
            id: u32::from_ne_bytes(bytes_at(event, offset::SET_REPORT_ID)),
            rnum: byte_at(event, offset::SET_REPORT_RNUM),
            rtype: byte_at(event, offset::SET_REPORT_RTYPE),
            size: u16::from_ne_bytes(bytes_at(event, offset::SET_REPORT_SIZE)),
        },
        other => KernelEvent::Other(other),
    })
}

/// An output report that is not one CTAPHID report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportError {
    /// Neither 64 bytes nor 65.
    Length(usize),
    /// 65 bytes, but the leading report number is not 0 (our descriptor has no report IDs).
    ReportId(u8),
}

impl std::fmt::Display for ReportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReportError::Length(len) => write!(
                f,
                "a {len}-byte output report (a CTAPHID report is {PACKET_SIZE} bytes, or {} with report number 0 first)",
                PACKET_SIZE + 1
            ),
            ReportError::ReportId(id) => write!(
                f,
                "an output report for report number {id} (this device has only report 0)"
            ),
        }
    }
}

impl std::error::Error for ReportError {}

/// The CTAPHID report in a `UHID_OUTPUT` payload: 65 bytes with report number 0 first (what
/// hidraw writers send for a descriptor without report IDs), or the bare 64 bytes.
pub fn ctaphid_report(data: &[u8]) -> Result<[u8; PACKET_SIZE], ReportError> {
    let report = match data {
        [0, report @ ..] if report.len() == PACKET_SIZE => report,
        [id, ..] if data.len() == PACKET_SIZE + 1 => return Err(ReportError::ReportId(*id)),
        _ => data,
    };
    <[u8; PACKET_SIZE]>::try_from(report).map_err(|_| ReportError::Length(data.len()))
}

/// One event in, one event out: how the lane reads and writes `/dev/uhid`. Implemented for
/// [`File`]; tests put a datagram socket pair in its place (it keeps event boundaries, as the
/// kernel does).
pub trait EventIo: Send + Sync + 'static {
    /// Reads one event into `buffer` (blocking); `Ok(0)` means the other side is gone.
    fn read_event(&self, buffer: &mut [u8]) -> io::Result<usize>;
    /// Writes one event with a single call; returns the count written.
    fn write_event(&self, event: &[u8]) -> io::Result<usize>;
}

impl EventIo for File {
    fn read_event(&self, buffer: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buffer)
    }

    fn write_event(&self, event: &[u8]) -> io::Result<usize> {
        (&*self).write(event)
    }
}

/// Writes one whole event with one call: a short count is an error (the kernel takes an event
/// whole or refuses it).
fn send_event<F: EventIo + ?Sized>(io: &F, event: &[u8]) -> io::Result<()> {
    loop {
        match io.write_event(event) {
            Ok(n) if n == event.len() => return Ok(()),
            Ok(n) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    format!("{n} of {} bytes of a UHID event written", event.len()),
                ));
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
}

/// `ENODEV`: the node exists but no driver is behind it (module not loaded and not loadable).
const ENODEV: i32 = 19;

/// Why the UHID lane could not start.
#[derive(Debug)]
pub enum UhidError {
    /// `/dev/uhid` could not be opened read-write.
    Open {
        /// The path tried.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The device description is not acceptable.
    Identity(IdentityError),
    /// The kernel refused `UHID_CREATE2`.
    Create(io::Error),
    /// The reader thread could not be started.
    Thread(io::Error),
}

impl std::fmt::Display for UhidError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const DOCTOR: &str = "`fidelio doctor` checks the UHID set-up and shows the fix";
        match self {
            UhidError::Open { path, source } => match source.kind() {
                io::ErrorKind::NotFound => write!(
                    f,
                    "cannot open {}: it does not exist — the uhid kernel module is not loaded \
                     (`sudo modprobe uhid`), or this kernel or container has no UHID; {DOCTOR}",
                    path.display()
                ),
                io::ErrorKind::PermissionDenied => write!(
                    f,
                    "cannot open {} read-write: permission denied — this user may not create \
                     HID devices; {DOCTOR} (a udev rule)",
                    path.display()
                ),
                _ if source.raw_os_error() == Some(ENODEV) => write!(
                    f,
                    "cannot open {}: no driver behind it — the uhid kernel module is not loaded \
                     (`sudo modprobe uhid`); {DOCTOR}",
                    path.display()
                ),
                _ => write!(f, "cannot open {}: {source}; {DOCTOR}", path.display()),
            },
            UhidError::Identity(error) => write!(f, "{error}"),
            UhidError::Create(error) => write!(
                f,
                "the kernel refused to create the UHID device: {error}; {DOCTOR}"
            ),
            UhidError::Thread(error) => write!(f, "cannot start the UHID reader thread: {error}"),
        }
    }
}

impl std::error::Error for UhidError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            UhidError::Open { source, .. } => Some(source),
            UhidError::Identity(error) => Some(error),
            UhidError::Create(error) | UhidError::Thread(error) => Some(error),
        }
    }
}

/// A created UHID device. Dropping it removes the device (`UHID_DESTROY`).
#[derive(Debug)]
pub struct UhidLane<F: EventIo = File> {
    io: Arc<F>,
    /// Set once `UHID_DESTROY` is on its way: the reader then ends at the next `UHID_STOP`.
    stopping: Arc<AtomicBool>,
    uniq: String,
}

impl UhidLane<File> {
    /// Opens `path` (normally [`DEFAULT_PATH`]) read-write and creates the device.
    pub fn open(path: &Path, identity: &DeviceIdentity) -> Result<Self, UhidError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|source| UhidError::Open {
                path: path.to_owned(),
                source,
            })?;
        Self::create(file, identity)
    }
}

impl<F: EventIo> UhidLane<F> {
    /// Creates the device on an already open `/dev/uhid` (or a test double).
    pub fn create(io: F, identity: &DeviceIdentity) -> Result<Self, UhidError> {
        let event = encode_create2(identity).map_err(UhidError::Identity)?;
        send_event(&io, &event).map_err(UhidError::Create)?;
        tracing::info!(
            "UHID device created: \"{}\" {:04x}:{:04x}, serial {}",
            identity.name,
            identity.vendor,
            identity.product,
            identity.uniq
        );
        Ok(Self {
            io: Arc::new(io),
            stopping: Arc::new(AtomicBool::new(false)),
            uniq: identity.uniq.clone(),
        })
    }

    /// The device's serial (`HID_UNIQ`).
    pub fn uniq(&self) -> &str {
        &self.uniq
    }

    /// The sending half, for the device loop: reports for [`Peer::Uhid`] become
    /// `UHID_INPUT2`; reports for other peers are not this lane's and are ignored.
    pub fn outbound(&self) -> Rc<dyn Outbound> {
        Rc::new(UhidOutbound {
            io: self.io.clone(),
        })
    }

    /// Starts the thread that reads the kernel's events: output reports go to `device` as
    /// [`Inbound`] from [`Peer::Uhid`], report requests are refused at once, the rest is
    /// logged. It ends when `device` closes, when the file reports an end or an error, or at
    /// the `UHID_STOP` that follows [`UhidLane::destroy`].
    pub fn spawn_reader(&self, device: mpsc::Sender<Inbound>) -> Result<JoinHandle<()>, UhidError> {
        let io = self.io.clone();
        let stopping = self.stopping.clone();
        std::thread::Builder::new()
            .name("uhid-reader".to_owned())
            .spawn(move || read_events(io.as_ref(), &device, &stopping))
            .map_err(UhidError::Thread)
    }

    /// Removes the device now (dropping the lane does the same).
    pub fn destroy(self) {
        drop(self);
    }
}

impl<F: EventIo> Drop for UhidLane<F> {
    fn drop(&mut self) {
        if self.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        match send_event(self.io.as_ref(), &encode_destroy()) {
            Ok(()) => tracing::info!("UHID device removed"),
            // Closing the file removes it too, at the latest when the process ends.
            Err(error) => tracing::debug!("UHID_DESTROY failed: {error}"),
        }
    }
}

struct UhidOutbound<F: EventIo> {
    io: Arc<F>,
}

impl<F: EventIo> Outbound for UhidOutbound<F> {
    fn send(&self, to: &Peer, packet: &[u8; PACKET_SIZE]) {
        if *to != Peer::Uhid {
            return;
        }
        if let Err(error) = send_event(self.io.as_ref(), &encode_input2(packet)) {
            tracing::warn!("UHID input report failed: {error}");
        }
    }
}

/// What the reader does after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    Stop,
}

fn read_events<F: EventIo + ?Sized>(io: &F, device: &mpsc::Sender<Inbound>, stopping: &AtomicBool) {
    let mut buffer = vec![0u8; EVENT_SIZE];
    loop {
        let len = match io.read_event(&mut buffer) {
            Ok(0) => {
                tracing::debug!("UHID: end of events");
                break;
            }
            Ok(len) => len,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => {
                if !stopping.load(Ordering::SeqCst) {
                    tracing::error!("reading UHID events failed, the UHID lane stops: {error}");
                }
                break;
            }
        };
        let event = buffer.get(..len).unwrap_or(&buffer);
        if handle_event(io, event, device, stopping) == Flow::Stop {
            break;
        }
    }
    tracing::debug!("UHID reader finished");
}

fn handle_event<F: EventIo + ?Sized>(
    io: &F,
    event: &[u8],
    device: &mpsc::Sender<Inbound>,
    stopping: &AtomicBool,
) -> Flow {
    let event = match decode_event(event) {
        Ok(event) => event,
        Err(error) => {
            tracing::warn!("UHID: ignoring {error}");
            return Flow::Continue;
        }
    };
    match event {
        KernelEvent::Output { data, rtype } => {
            if rtype != report_type::OUTPUT {
                tracing::warn!(
                    "UHID: ignoring a {}-byte report of type {rtype} (only output reports carry CTAPHID)",
                    data.len()
                );
                return Flow::Continue;
            }
            match ctaphid_report(&data) {
                Ok(packet) => {
                    let inbound = Inbound {
                        packet,
                        from: Peer::Uhid,
                    };
                    if device.blocking_send(inbound).is_err() {
                        tracing::debug!("UHID: the device loop is gone");
                        return Flow::Stop;
                    }
                }
                Err(error) => tracing::warn!("UHID: dropping {error}"),
            }
        }
        KernelEvent::GetReport { id, rnum, rtype } => {
            tracing::debug!("UHID: refusing GET_REPORT {id} (report {rnum}, type {rtype})");
            if let Err(error) = send_event(io, &encode_get_report_reply(id, REPLY_ERROR)) {
                tracing::warn!("UHID: GET_REPORT reply failed: {error}");
            }
        }
        KernelEvent::SetReport {
            id,
            rnum,
            rtype,
            size,
        } => {
            tracing::debug!(
                "UHID: refusing SET_REPORT {id} (report {rnum}, type {rtype}, {size} bytes)"
            );
            if let Err(error) = send_event(io, &encode_set_report_reply(id, REPLY_ERROR)) {
                tracing::warn!("UHID: SET_REPORT reply failed: {error}");
            }
        }
        KernelEvent::Start { dev_flags } => {
            tracing::debug!("UHID: START (a HID driver bound the device, flags {dev_flags:#x})");
        }
        KernelEvent::Stop => {
            tracing::debug!("UHID: STOP (the HID driver let go of the device)");
            if stopping.load(Ordering::SeqCst) {
                return Flow::Stop;
            }
        }
        KernelEvent::Open => tracing::debug!("UHID: OPEN (a host opened the device)"),
        KernelEvent::Close => tracing::debug!("UHID: CLOSE (the last host closed the device)"),
        KernelEvent::Other(kind) => tracing::debug!("UHID: ignoring event type {kind}"),
    }
    Flow::Continue
}

/// Reads a small sysfs text file (uevent), at most 64 KiB.
fn read_small(path: &Path) -> Option<String> {
    let file = File::open(path).ok()?;
    let mut text = String::new();
    file.take(64 * 1024).read_to_string(&mut text).ok()?;
    Some(text)
}

/// The value of `key` in a uevent file's `KEY=VALUE` lines.
pub fn uevent_value<'a>(uevent: &'a str, key: &str) -> Option<&'a str> {
    uevent.lines().find_map(|line| {
        line.split_once('=')
            .filter(|(name, _)| *name == key)
            .map(|(_, value)| value)
    })
}

/// Finds the hidraw node of the HID device whose serial (`HID_UNIQ`) is `uniq`, looking
/// through `<sys>/class/hidraw/*/device/uevent`; returns the node's name (`hidraw3`, so
/// `/dev/hidraw3`). `None` when there is none (yet: the kernel adds the device shortly after
/// `UHID_CREATE2` returns).
pub fn find_hidraw(sys: &Path, uniq: &str) -> Option<String> {
    let entries = std::fs::read_dir(sys.join("class/hidraw")).ok()?;
    let mut found: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|entry| {
            read_small(&entry.path().join("device/uevent"))
                .is_some_and(|uevent| uevent_value(&uevent, "HID_UNIQ") == Some(uniq))
        })
        .filter_map(|entry| entry.file_name().into_string().ok())
        .collect();
    found.sort();
    found.into_iter().next()
}

#[cfg(test)]
mod tests;
