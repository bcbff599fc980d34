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
//!
//! CTAP1/U2F messages (the APDUs a CTAPHID_MSG carries) go to [`Authenticator::process_u2f`]
//! instead, which answers with response data and a status word; see [`u2f`].
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

pub mod authenticator;
pub mod authenticator_config;
pub mod cbor;
pub mod config;
pub mod credential;
pub mod credential_io;
mod credential_management;
pub mod extensions;
mod get_assertion;
mod get_info;
pub mod hooks;
pub mod large_blobs;
mod make_credential;
pub mod pin;
mod request;
pub mod storage;
pub mod u2f;

pub use authenticator::{Authenticator, command};
pub use config::{AttestationMode, BatchAttestation, Config, CounterMode};
pub use hooks::{FlagsOverride, Hooks};

/// Runs a future to completion on the current thread by polling it in a loop.
///
/// For synchronous callers and tests whose platform answers presence immediately. A future
/// that waits on something external spins until it is ready; real transports poll the core
/// from their own executor instead.
pub fn block_on<F: core::future::Future>(future: F) -> F::Output {
    let mut future = core::pin::pin!(future);
    let mut context = core::task::Context::from_waker(core::task::Waker::noop());
    loop {
        if let core::task::Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        core::hint::spin_loop();
    }
}
