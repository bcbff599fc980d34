//! Fidelio's USB device class for CTAPHID (skeleton: the class itself is being written).
#![no_std]

/// USB vendor ID: pid.codes (0x1209), an open-source vendor ID.
pub const USB_VID: u16 = 0x1209;
/// USB product ID: pid.codes' test PID (0x0001), for private testing. Boards that ship to
/// other people should get a PID of their own.
pub const USB_PID: u16 = 0x0001;
/// Manufacturer string.
pub const MANUFACTURER: &str = "Fidelio";
/// Product string.
pub const PRODUCT: &str = "Fidelio FIDO2 Authenticator";

/// The FIDO HID report descriptor (usage page 0xF1D0, usage 0x01, 64-byte input and output
/// reports, no report IDs), as usbd-hid defines it.
pub fn report_descriptor() -> &'static [u8] {
    use usbd_hid::descriptor::SerializedDescriptor as _;
    usbd_hid::descriptor::CtapReport::desc()
}
