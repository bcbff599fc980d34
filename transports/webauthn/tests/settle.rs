//! Every request settles: an abort before or during a ceremony is `AbortError`, an expired
//! lifetime timer is `NotAllowedError`, and an authenticator that never answers cannot hang a
//! caller.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed expectation should stop the test"
)]

mod common;

use std::time::{Duration, Instant};

use authenticator_core::memory_store::MemoryStore;
use authenticator_core::platform::{Platform, Presence, PresenceOutcome, PresenceRequest};
use authenticator_core::testing::{TestClock, TestPlatform};
use authenticator_core::{Authenticator, Config};
use common::{caller, creation, request};
use fidelio_webauthn::{AbortSignal, Client, ClientConfig, ErrorName, Unattended, block_on};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use serde_json::json;

/// A user who touches the key at once while `present`, and never otherwise.
struct Absent {
    present: bool,
}

impl Presence for Absent {
    async fn request(&mut self, _: PresenceRequest<'_>) -> PresenceOutcome {
        if self.present {
            return PresenceOutcome::Granted;
        }
        std::future::pending().await
    }
}

/// The platform double with a user who may be absent.
struct AbsentUser {
    inner: TestPlatform,
    presence: Absent,
}

impl Platform for AbsentUser {
    type Rng = ChaCha20Rng;
    type Store = MemoryStore;
    type Presence = Absent;
    type Clock = TestClock;

    fn rng(&mut self) -> &mut ChaCha20Rng {
        &mut self.inner.rng
    }
    fn store(&mut self) -> &mut MemoryStore {
        &mut self.inner.store
    }
    fn presence(&mut self) -> &mut Absent {
        &mut self.presence
    }
    fn clock(&self) -> &TestClock {
        &self.inner.clock
    }
}

fn stalled_client() -> Client<Authenticator<AbsentUser>, ChaCha20Rng> {
    let platform = AbsentUser {
        inner: TestPlatform::new(5),
        presence: Absent { present: false },
    };
    Client::new(
        Authenticator::new(platform, Config::security_key()),
        ChaCha20Rng::seed_from_u64(5),
        ClientConfig {
            min_timeout: Duration::from_millis(1),
            ..ClientConfig::default()
        },
    )
}

#[test]
fn an_aborted_signal_rejects_at_once() {
    let mut client = common::client();
    let signal = AbortSignal::new();
    signal.abort();
    let error = block_on(client.create(&caller(), &creation(json!({})), &mut Unattended, &signal))
        .unwrap_err();
    assert_eq!(error.name, ErrorName::AbortError);
    let error =
        block_on(client.get(&caller(), &request(json!({})), &mut Unattended, &signal)).unwrap_err();
    assert_eq!(error.name, ErrorName::AbortError);
    // Options errors come first, as WebIDL conversion happens before the algorithm.
    let error =
        block_on(client.create(&caller(), &json!({}), &mut Unattended, &signal)).unwrap_err();
    assert_eq!(error.name, ErrorName::TypeError);
}

#[test]
fn the_lifetime_timer_settles_a_ceremony_nobody_answers() {
    let mut client = stalled_client();
    let started = Instant::now();
    let error = client
        .create_blocking(
            &caller(),
            &creation(json!({"timeout": 100})),
            &mut Unattended,
            &AbortSignal::new(),
        )
        .unwrap_err();
    assert_eq!(error.name, ErrorName::NotAllowedError);
    assert!(error.message.contains("timed out"), "{}", error.message);
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(100) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
    // The authenticator is still usable afterwards.
    let info = block_on(fidelio_webauthn::ctap::get_info(client.ctap_mut())).unwrap();
    assert!(info.can_store_discoverable());
}

#[test]
fn an_abort_during_the_presence_wait() {
    let mut client = stalled_client();
    // A discoverable credential, made while the user was there.
    client.ctap_mut().platform_mut().presence.present = true;
    let options = creation(json!({"authenticatorSelection": {"residentKey": "required"}}));
    client
        .create_blocking(&caller(), &options, &mut Unattended, &AbortSignal::new())
        .unwrap();
    client.ctap_mut().platform_mut().presence.present = false;

    let signal = AbortSignal::new();
    let remote = signal.clone();
    let aborter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        remote.abort();
    });
    let error = client
        .get_blocking(&caller(), &request(json!({})), &mut Unattended, &signal)
        .unwrap_err();
    aborter.join().unwrap();
    assert_eq!(error.name, ErrorName::AbortError);

    let signal = AbortSignal::new();
    let remote = signal.clone();
    let aborter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        remote.abort_with("the page navigated away");
    });
    let error = client
        .create_blocking(&caller(), &creation(json!({})), &mut Unattended, &signal)
        .unwrap_err();
    aborter.join().unwrap();
    assert_eq!(error.name, ErrorName::AbortError);
    assert_eq!(error.message, "the page navigated away");
}

#[test]
fn user_cancel_is_not_allowed() {
    let mut client = stalled_client();
    let signal = AbortSignal::new();
    let remote = signal.clone();
    let canceller = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        remote.cancel();
    });
    let error = client
        .create_blocking(&caller(), &creation(json!({})), &mut Unattended, &signal)
        .unwrap_err();
    canceller.join().unwrap();
    assert_eq!(error.name, ErrorName::NotAllowedError);
}
