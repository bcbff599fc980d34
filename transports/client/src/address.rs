//! Device addresses as people type them: `udp:HOST:PORT` and `hid:PATH`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::Error;
use crate::transport::{Transport, UdpTransport};

/// Where a device is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DeviceAddress {
    /// CTAPHID over UDP (`fidelio serve`, other simulators): `udp:127.0.0.1:8111`,
    /// `udp:localhost:8111`, `udp:[::1]:8111`.
    Udp {
        /// Host name or IP address (IPv6 without brackets).
        host: String,
        /// UDP port, 1–65535.
        port: u16,
    },
    /// A HID device node: `hid:/dev/hidraw0` (needs the `hidapi` feature to open).
    Hid(PathBuf),
}

/// Why a device address does not parse. The message says what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressError {
    message: String,
}

impl fmt::Display for AddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for AddressError {}

const FORMS: &str = "udp:HOST:PORT (e.g. udp:127.0.0.1:8111) or hid:PATH (e.g. hid:/dev/hidraw0)";

fn error(message: String) -> AddressError {
    AddressError { message }
}

impl FromStr for DeviceAddress {
    type Err = AddressError;

    fn from_str(text: &str) -> Result<Self, AddressError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(error(format!("empty device address: use {FORMS}")));
        }
        if let Some(rest) = text.strip_prefix("udp:") {
            return parse_udp(text, rest);
        }
        if let Some(path) = text.strip_prefix("hid:") {
            if path.is_empty() {
                return Err(error(format!(
                    "{text:?} names no device: use hid:PATH, e.g. hid:/dev/hidraw0"
                )));
            }
            return Ok(DeviceAddress::Hid(PathBuf::from(path)));
        }
        let hint = if text.parse::<std::net::SocketAddr>().is_ok() {
            format!(" (did you mean udp:{text}?)")
        } else if text.starts_with('/') {
            format!(" (did you mean hid:{text}?)")
        } else {
            String::new()
        };
        Err(error(format!(
            "unknown device address {text:?}{hint}: use {FORMS}"
        )))
    }
}

fn parse_udp(text: &str, rest: &str) -> Result<DeviceAddress, AddressError> {
    let example = "e.g. udp:127.0.0.1:8111 or udp:[::1]:8111";
    let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
        let Some((host, after)) = bracketed.split_once(']') else {
            return Err(error(format!(
                "{text:?}: unclosed '[' in the IPv6 address ({example})"
            )));
        };
        let Some(port) = after.strip_prefix(':') else {
            return Err(error(format!(
                "{text:?} has no port: use udp:HOST:PORT ({example})"
            )));
        };
        (host, port)
    } else {
        let Some((host, port)) = rest.rsplit_once(':') else {
            return Err(error(format!(
                "{text:?} has no port: use udp:HOST:PORT ({example})"
            )));
        };
        if host.contains(':') {
            return Err(error(format!(
                "{text:?}: put an IPv6 address in brackets, e.g. udp:[::1]:8111"
            )));
        }
        (host, port)
    };
    if host.is_empty() {
        return Err(error(format!(
            "{text:?} has no host: use udp:HOST:PORT ({example})"
        )));
    }
    let port = match port.parse::<u16>() {
        Ok(port) if port != 0 => port,
        _ => {
            return Err(error(format!(
                "{text:?}: {port:?} is not a port number (1-65535)"
            )));
        }
    };
    Ok(DeviceAddress::Udp {
        host: host.to_owned(),
        port,
    })
}

impl fmt::Display for DeviceAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceAddress::Udp { host, port } if host.contains(':') => {
                write!(f, "udp:[{host}]:{port}")
            }
            DeviceAddress::Udp { host, port } => write!(f, "udp:{host}:{port}"),
            DeviceAddress::Hid(path) => write!(f, "hid:{}", path.display()),
        }
    }
}

impl DeviceAddress {
    /// Opens a transport to the device. Nothing is sent yet (UDP is connectionless; a missing
    /// daemon shows up on the first exchange).
    pub fn open(&self) -> Result<Box<dyn Transport>, Error> {
        match self {
            DeviceAddress::Udp { host, port } => {
                let transport =
                    UdpTransport::connect((host.as_str(), *port)).map_err(|source| {
                        Error::Io(std::io::Error::new(
                            source.kind(),
                            format!("cannot reach {self}: {source}"),
                        ))
                    })?;
                Ok(Box::new(transport))
            }
            DeviceAddress::Hid(path) => open_hid(path),
        }
    }
}

#[cfg(feature = "hidapi")]
fn open_hid(path: &std::path::Path) -> Result<Box<dyn Transport>, Error> {
    Ok(Box::new(crate::hid::HidTransport::open(path)?))
}

#[cfg(not(feature = "hidapi"))]
fn open_hid(_path: &std::path::Path) -> Result<Box<dyn Transport>, Error> {
    Err(Error::Unsupported(
        "this build has no HID support: rebuild with the `hidapi` feature \
         (cargo build -p fidelio-cli --features hidapi)",
    ))
}
