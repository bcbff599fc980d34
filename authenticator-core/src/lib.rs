//! Fidelio's authenticator core: a `no_std`, sans-IO FIDO2 authenticator.
//!
//! Bytes in, bytes out. A transport hands [`Authenticator::process`] one CTAP2 request (the
//! command byte followed by its CBOR parameters) and sends back the response it returns (a
//! status byte followed by canonical CBOR). Everything the core needs from the world — random
//! numbers, storage, user presence, time — comes through the [`platform`] seam.
//!
//! ```text
//!   transport ──request bytes──▶ Authenticator::process ──response bytes──▶ transport
//!                                      │ Platform: Rng · Store · Presence · Clock
//! ```
#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]

extern crate alloc;

pub mod memory_store;
pub mod platform;
pub mod status;
#[cfg(feature = "testing")]
pub mod testing;

pub use memory_store::MemoryStore;
pub use platform::{Clock, Platform, Presence, Store};
pub use status::StatusCode;
