//! Fidelio's USB device class for CTAPHID: a FIDO security key as a [usb-device] class.
//!
//! One HID interface with the FIDO report descriptor (usage page 0xF1D0, usage 0x01, 64-byte
//! input and output reports, no report IDs) and two interrupt endpoints, IN and OUT, of 64
//! bytes, polled every [`POLL_INTERVAL_MS`] milliseconds. The HID plumbing (interface, HID and
//! report descriptors, SET_IDLE, GET_REPORT refused with a STALL) is usbd-hid's
//! [`HIDClass`]; this crate adds what a CTAPHID device needs on top of it:
//!
//! * raw report I/O: [`CtapHidClass::read_report`] hands out whole 64-byte reports and drops
//!   anything else, [`CtapHidClass::write_report`] sends one;
//! * a one-report *pending* slot: a report that meets a busy IN endpoint is kept and sent first
//!   when the endpoint frees up, so reports are never lost nor reordered;
//! * [`CtapHidClass::pump`], which moves reports between the endpoints and a
//!   [`fidelio_ctaphid::CtapHid`] state machine;
//! * [`build_device`], a [`UsbDevice`] with Fidelio's identity (IDs, strings, power).
//!
//! The same code runs on the boards (RP2040, nRF52840: their HALs provide the
//! [`UsbBus`]) and in `fidelio serve --usbip` (where the bus is a USB/IP server). It is
//! `no_std`; the class never blocks, never allocates (only `CtapHid`, which `pump` feeds, has
//! message buffers) and never panics on what the host sends. See `docs/usb.md`.
//!
//! ```ignore
//! let class = &mut CtapHidClass::new(&bus_allocator);
//! let device = &mut fidelio_usb::build_device(&bus_allocator, serial)?;
//! loop {
//!     device.poll(&mut [class]);          // at least every 10 ms, or from the USB interrupt
//!     class.pump(&mut ctaphid, now_ms);   // reports <-> CTAPHID
//!     if let Some(request) = ctaphid.take_request() { /* hand it to the core */ }
//! }
//! ```
//!
//! [usb-device]: usb_device
#![no_std]

use core::fmt;

use fidelio_ctaphid::{CtapHid, PACKET_SIZE};
use usb_device::UsbError;
use usb_device::bus::{InterfaceNumber, StringIndex, UsbBus, UsbBusAllocator};
use usb_device::class::{ControlIn, ControlOut, UsbClass};
use usb_device::descriptor::{BosWriter, DescriptorWriter};
use usb_device::device::{StringDescriptors, UsbDevice, UsbDeviceBuilder, UsbRev, UsbVidPid};
use usb_device::endpoint::EndpointAddress;
use usb_device::prelude::BuilderError;
use usbd_hid::hid_class::{HIDClass, ReportType};

pub use usb_device;
pub use usbd_hid;

/// USB vendor ID: pid.codes (0x1209), an open-source vendor ID.
pub const USB_VID: u16 = 0x1209;
/// USB product ID: pid.codes' test PID (0x0001), for private testing. Boards that ship to
/// other people should get a PID of their own.
pub const USB_PID: u16 = 0x0001;
/// Manufacturer string.
pub const MANUFACTURER: &str = "Fidelio";
/// Product string. Hosts name a USB HID device "<manufacturer> <product>", so the product
/// string does not repeat the manufacturer (that would read "Fidelio Fidelio …").
pub const PRODUCT: &str = "FIDO2 Authenticator";
/// The whole device name, as hosts show it: manufacturer and product. Transports without
/// string descriptors (Linux UHID) use it as the device name.
pub const DEVICE_NAME: &str = "Fidelio FIDO2 Authenticator";
/// bcdDevice, the device release number: 0.1.0 in binary-coded decimal (0xJJMN: major JJ,
/// minor M, patch N).
pub const DEVICE_RELEASE: u16 = 0x0010;
/// The most current the device draws from the bus, in mA (bMaxPower is twice smaller). A
/// microcontroller with a LED stays far below it.
pub const MAX_POWER_MA: usize = 100;
/// The control endpoint's packet size: the largest full speed allows, so descriptors go out
/// in one or two packets.
pub const EP0_PACKET_SIZE: u8 = 64;

/// One CTAPHID report: 64 bytes, no report ID.
pub const REPORT_SIZE: usize = PACKET_SIZE;

/// bInterval of both interrupt endpoints, in milliseconds (full speed counts in frames of
/// 1 ms): how often the host asks for an IN report and may send an OUT report.
///
/// Five milliseconds is what open-source keys built on usb-device use (SoloKeys, Nitrokey 3).
/// It bounds the round trip of a packet to a few milliseconds — a 7609-byte message (119
/// packets) takes well under a second — and leaves a busy microcontroller time to answer.
/// Hosts may poll more often than asked, never less.
pub const POLL_INTERVAL_MS: u8 = 5;

/// How many unusable OUT reports [`CtapHidClass::read_report`] skips in one call before it
/// gives up for now, so that a bus that keeps failing cannot keep it looping.
const MAX_SKIPPED_PER_READ: usize = 8;

/// The FIDO HID report descriptor (usage page 0xF1D0, usage 0x01, 64-byte input and output
/// reports, no report IDs), as usbd-hid defines it.
pub fn report_descriptor() -> &'static [u8] {
    use usbd_hid::descriptor::SerializedDescriptor as _;
    usbd_hid::descriptor::CtapReport::desc()
}

/// The IN endpoint is busy and the pending slot already holds a report: this one was not
/// taken. Try again after the next `UsbDevice::poll`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WouldBlock;

impl fmt::Display for WouldBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the HID IN endpoint is busy and a report is already waiting for it")
    }
}

impl core::error::Error for WouldBlock {}

/// What one [`CtapHidClass::pump`] moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Pumped {
    /// Reports read from the host and handed to CTAPHID.
    pub received: usize,
    /// Reports taken from CTAPHID and sent (or parked in the pending slot).
    pub sent: usize,
}

/// The CTAPHID USB class: usbd-hid's [`HIDClass`] with the FIDO report descriptor, raw
/// 64-byte report I/O and a pending slot for the IN endpoint. See the [crate
/// documentation](crate).
///
/// Pass it to `UsbDevice::poll` with the other classes of the device, if any, every time.
pub struct CtapHidClass<'a, B: UsbBus> {
    hid: HIDClass<'a, B>,
    /// A report that met a busy IN endpoint; sent before any other.
    pending: Option<[u8; REPORT_SIZE]>,
    /// The host reset the bus since [`CtapHidClass::take_bus_reset`] was last called.
    bus_reset: bool,
    /// OUT reports dropped because they were not 64 bytes (or 65 with report ID 0).
    dropped: u32,
}

impl<B: UsbBus> fmt::Debug for CtapHidClass<'_, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CtapHidClass")
            .field("pending", &self.pending.is_some())
            .field("bus_reset", &self.bus_reset)
            .field("dropped", &self.dropped)
            .finish_non_exhaustive()
    }
}

impl<'a, B: UsbBus> CtapHidClass<'a, B> {
    /// Allocates the HID interface and its two interrupt endpoints (OUT, then IN; 64 bytes,
    /// [`POLL_INTERVAL_MS`]) on `alloc`.
    ///
    /// Like every usb-device class, call it before [`build_device`] (which freezes the
    /// allocator). usb-device panics if the bus has no endpoint left — a board mistake seen at
    /// the first start, not something a host can cause.
    pub fn new(alloc: &'a UsbBusAllocator<B>) -> Self {
        Self {
            hid: HIDClass::new(alloc, report_descriptor(), POLL_INTERVAL_MS),
            pending: None,
            bus_reset: false,
            dropped: 0,
        }
    }

    /// The next report the host sent, if any.
    ///
    /// Reads the interrupt OUT endpoint first, then a report the host sent with a control
    /// SET_REPORT (output report, ID 0; some Windows clients use `HidD_SetOutputReport`).
    /// A report of any length but 64 bytes is dropped and counted ([`Self::dropped_reports`]);
    /// a 65-byte one that starts with report ID 0 is accepted without that byte, though a
    /// 64-byte endpoint never delivers one.
    pub fn read_report(&mut self) -> Option<[u8; REPORT_SIZE]> {
        let mut buffer = [0u8; REPORT_SIZE + 1];
        for _ in 0..MAX_SKIPPED_PER_READ {
            match self.hid.pull_raw_output(&mut buffer) {
                Ok(length) => match report_from(buffer.get(..length)) {
                    Some(report) => return Some(report),
                    None => self.count_dropped(),
                },
                // Too long for the buffer: the bus has dropped it or will say so again.
                Err(UsbError::BufferOverflow) => self.count_dropped(),
                Err(_) => break,
            }
        }
        match self.hid.pull_raw_report(&mut buffer) {
            Ok(info) if info.report_type == ReportType::Output && info.report_id == 0 => {
                let report = report_from(buffer.get(..info.len));
                if report.is_none() {
                    self.count_dropped();
                }
                report
            }
            Ok(_) => {
                // Feature reports and numbered reports mean nothing to CTAPHID.
                self.count_dropped();
                None
            }
            Err(_) => None,
        }
    }

    /// Sends one report to the host.
    ///
    /// `Ok(())` means the report is taken: it is in the IN endpoint, or — when the endpoint was
    /// busy — in the pending slot, from which the class sends it as soon as the host has read
    /// the one before (at the next IN completion or `UsbDevice::poll`). `Err(WouldBlock)` means
    /// the slot was already taken: this report was not, and the caller keeps it for later.
    /// Reports therefore leave in the order they were taken.
    pub fn write_report(&mut self, report: &[u8; REPORT_SIZE]) -> Result<(), WouldBlock> {
        if !self.flush() {
            return Err(WouldBlock);
        }
        if !self.try_send(report) {
            self.pending = Some(*report);
        }
        Ok(())
    }

    /// Retries the pending report. Returns whether the slot is free afterwards.
    pub fn flush(&mut self) -> bool {
        if let Some(report) = self.pending
            && self.try_send(&report)
        {
            self.pending = None;
        }
        self.pending.is_none()
    }

    /// Whether a report waits in the pending slot.
    pub fn has_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Whether the host reset the bus since the last call (a USB reset ends every CTAPHID
    /// transaction: the host re-enumerates and its drivers start over). The pending report is
    /// dropped at the reset.
    pub fn take_bus_reset(&mut self) -> bool {
        core::mem::take(&mut self.bus_reset)
    }

    /// How many OUT reports were dropped because they were not 64 bytes (wrapping).
    pub fn dropped_reports(&self) -> u32 {
        self.dropped
    }

    /// Moves reports between the endpoints and `hid`: every report the host sent goes to
    /// [`CtapHid::handle_packet`], time passes ([`CtapHid::poll`]), then
    /// [`CtapHid::next_outgoing`] feeds the IN endpoint for as long as it (and the pending
    /// slot) accepts. A bus reset since the last call resets `hid` first ([`CtapHid::reset`]).
    ///
    /// Call it after every `UsbDevice::poll`, and whenever the core has answered
    /// ([`CtapHid::respond`]). Never blocks.
    pub fn pump(&mut self, hid: &mut CtapHid, now_ms: u64) -> Pumped {
        let mut pumped = Pumped::default();
        if self.take_bus_reset() {
            hid.reset();
        }
        while let Some(report) = self.read_report() {
            hid.handle_packet(&report, now_ms);
            pumped.received = pumped.received.saturating_add(1);
        }
        hid.poll(now_ms);
        // Only take a report from CTAPHID when it has somewhere to go: the endpoint or the
        // free pending slot.
        while self.flush() {
            let Some(report) = hid.next_outgoing() else {
                break;
            };
            if self.write_report(&report).is_err() {
                // flush() just freed the slot, so this cannot happen; keep the report anyway.
                self.pending = Some(report);
                break;
            }
            pumped.sent = pumped.sent.saturating_add(1);
        }
        pumped
    }

    /// One attempt at the IN endpoint: whether the report went out.
    fn try_send(&mut self, report: &[u8; REPORT_SIZE]) -> bool {
        // Any error but success leaves the report with us: WouldBlock (the host has not read
        // the last one), or a bus that is not ready yet (before configuration, after a reset).
        matches!(self.hid.push_raw_input(report), Ok(REPORT_SIZE))
    }

    fn count_dropped(&mut self) {
        self.dropped = self.dropped.wrapping_add(1);
    }
}

/// A CTAPHID report from what a read returned: 64 bytes, or 65 with a leading report ID 0.
fn report_from(bytes: Option<&[u8]>) -> Option<[u8; REPORT_SIZE]> {
    match bytes? {
        [0, rest @ ..] if rest.len() == REPORT_SIZE => rest.try_into().ok(),
        report => report.try_into().ok(),
    }
}

impl<B: UsbBus> UsbClass<B> for CtapHidClass<'_, B> {
    fn get_configuration_descriptors(
        &self,
        writer: &mut DescriptorWriter,
    ) -> usb_device::Result<()> {
        self.hid.get_configuration_descriptors(writer)
    }

    fn get_bos_descriptors(&self, writer: &mut BosWriter) -> usb_device::Result<()> {
        self.hid.get_bos_descriptors(writer)
    }

    fn get_string(&self, index: StringIndex, lang_id: usb_device::LangID) -> Option<&str> {
        self.hid.get_string(index, lang_id)
    }

    fn reset(&mut self) {
        // Whatever waited was meant for the host that is gone.
        self.pending = None;
        self.bus_reset = true;
        self.hid.reset();
    }

    fn poll(&mut self) {
        self.hid.poll();
        self.flush();
    }

    fn control_out(&mut self, xfer: ControlOut<B>) {
        self.hid.control_out(xfer);
    }

    fn control_in(&mut self, xfer: ControlIn<B>) {
        self.hid.control_in(xfer);
    }

    fn endpoint_setup(&mut self, addr: EndpointAddress) {
        self.hid.endpoint_setup(addr);
    }

    fn endpoint_out(&mut self, addr: EndpointAddress) {
        self.hid.endpoint_out(addr);
    }

    fn endpoint_in_complete(&mut self, addr: EndpointAddress) {
        self.hid.endpoint_in_complete(addr);
        // The host took a report: the endpoint is free for the pending one.
        self.flush();
    }

    fn get_alt_setting(&mut self, interface: InterfaceNumber) -> Option<u8> {
        self.hid.get_alt_setting(interface)
    }

    fn set_alt_setting(&mut self, interface: InterfaceNumber, alternative: u8) -> bool {
        self.hid.set_alt_setting(interface, alternative)
    }
}

/// A [`UsbDevice`] with Fidelio's identity: [`USB_VID`]:[`USB_PID`], release
/// [`DEVICE_RELEASE`], USB 2.0 (no BOS descriptor), class defined by the interface, bus
/// powered at [`MAX_POWER_MA`], control endpoint of [`EP0_PACKET_SIZE`] bytes, and US-English
/// strings [`MANUFACTURER`], [`PRODUCT`] and `serial`.
///
/// Create the [`CtapHidClass`] (and any other class) on `alloc` first: building the device
/// freezes the allocator. The speed is the bus's (full speed on the RP2040 and the nRF52840).
/// The serial number should be unique per device (the chip's unique ID in hex, say): hosts use
/// it to tell two keys apart.
///
/// The error cannot happen with these constants; it is usb-device's builder's.
pub fn build_device<'a, B: UsbBus>(
    alloc: &'a UsbBusAllocator<B>,
    serial: &'a str,
) -> Result<UsbDevice<'a, B>, BuilderError> {
    let strings = StringDescriptors::default()
        .manufacturer(MANUFACTURER)
        .product(PRODUCT)
        .serial_number(serial);
    Ok(UsbDeviceBuilder::new(alloc, UsbVidPid(USB_VID, USB_PID))
        .usb_rev(UsbRev::Usb200)
        .device_class(0)
        .device_sub_class(0)
        .device_protocol(0)
        .device_release(DEVICE_RELEASE)
        .self_powered(false)
        .supports_remote_wakeup(false)
        .strings(&[strings])?
        .max_packet_size_0(EP0_PACKET_SIZE)?
        .max_power(MAX_POWER_MA)?
        .build())
}
