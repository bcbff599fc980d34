//! The std platform for hosts: a persistent [`RedbStore`], the operating system's random
//! numbers ([`OsRng`]) and a monotonic [`SystemClock`].

pub mod clock;
pub mod platform;
pub mod rng;
pub mod store;

pub use clock::SystemClock;
pub use platform::{HostPlatform, PolicyPresence, PresencePolicy};
pub use rng::OsRng;
pub use store::{OpenError, RedbStore};
