//! Real USB HID authenticators through hidapi (the `hidapi` feature).

use std::ffi::CString;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fidelio_ctaphid::PACKET_SIZE;

use crate::transport::{Report, Transport};

/// A FIDO HID device opened by path (`/dev/hidraw3` on Linux), through hidapi.
///
/// Reports go out with report ID 0 in front (FIDO devices use no report IDs) and come back
/// without one.
pub struct HidTransport {
    device: hidapi::HidDevice,
    path: PathBuf,
}

impl std::fmt::Debug for HidTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HidTransport")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn hid_error(path: &Path, error: &hidapi::HidError) -> io::Error {
    io::Error::other(format!("HID device {}: {error}", path.display()))
}

impl HidTransport {
    /// Opens the device at `path` (a hidraw node on Linux).
    pub fn open(path: impl AsRef<Path>) -> io::Result<Self> {
        let path = path.as_ref().to_path_buf();
        let c_path = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "a device path cannot contain NUL bytes",
            )
        })?;
        // Enumeration is left on, as hidapi asks of libraries; opening by path does not need it.
        let api = hidapi::HidApi::new().map_err(|e| hid_error(&path, &e))?;
        let device = api.open_path(&c_path).map_err(|e| hid_error(&path, &e))?;
        Ok(Self { device, path })
    }

    /// The path the device was opened at.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Transport for HidTransport {
    fn send(&mut self, report: &Report) -> io::Result<()> {
        let mut out = [0u8; PACKET_SIZE + 1];
        if let Some(body) = out.get_mut(1..) {
            body.copy_from_slice(report);
        }
        let written = self
            .device
            .write(&out)
            .map_err(|e| hid_error(&self.path, &e))?;
        if written < PACKET_SIZE {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!(
                    "HID device {}: short write ({written} bytes)",
                    self.path.display()
                ),
            ));
        }
        Ok(())
    }

    fn receive(&mut self, timeout: Duration) -> io::Result<Option<Report>> {
        // hidapi counts in milliseconds; round up so a short wait is not a poll.
        let millis = timeout.as_micros().div_ceil(1000).max(1);
        let millis = i32::try_from(millis).unwrap_or(i32::MAX);
        let mut buffer = [0u8; PACKET_SIZE + 1];
        let len = self
            .device
            .read_timeout(&mut buffer, millis)
            .map_err(|e| hid_error(&self.path, &e))?;
        let report = match buffer.get(..len) {
            Some(report) if len == PACKET_SIZE => report,
            // Some backends leave report ID 0 in front.
            Some([0, report @ ..]) if len == PACKET_SIZE + 1 => report,
            _ => return Ok(None),
        };
        let mut out = [0u8; PACKET_SIZE];
        out.copy_from_slice(report);
        Ok(Some(out))
    }
}
