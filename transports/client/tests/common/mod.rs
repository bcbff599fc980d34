//! An in-process `fidelio serve --ephemeral --presence auto` on a free loopback port, for the
//! integration tests and the benchmark.
//!
//! The daemon runs on its own thread (a current-thread runtime with a `LocalSet`, as
//! `fidelio_daemon::serve_until` requires) until the process exits; it installs no signal
//! handlers.
#![allow(
    dead_code,
    clippy::expect_used,
    clippy::panic,
    reason = "test helper; each test binary and the bench use a subset"
)]

use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::Duration;

use authenticator_core::Config;
use fidelio_daemon::presence::PresenceMode;
use fidelio_daemon::{ServeOptions, StateLocation};

/// Starts a daemon with `config` (reset allowed at any time) and returns its UDP address.
pub fn start_daemon_with(mut config: Config) -> SocketAddr {
    config.reset_window_ms = None;
    let options = ServeOptions {
        config,
        state: StateLocation::Ephemeral,
        udp: SocketAddr::from(([127, 0, 0, 1], 0)),
        control: None,
        presence: PresenceMode::Auto,
        seed: None,
        log_ctap: false,
        uhid: false,
        usbip: None,
        browser: None,
        event_log: None,
    };
    let (ready_tx, ready_rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("fidelio-daemon".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let local = tokio::task::LocalSet::new();
            let failed = ready_tx.clone();
            let result = local.block_on(
                &runtime,
                fidelio_daemon::serve_until(
                    options,
                    move |address| {
                        let _ = ready_tx.send(Ok(address));
                    },
                    std::future::pending(),
                ),
            );
            if let Err(error) = result {
                let _ = failed.send(Err(error.to_string()));
            }
        })
        .expect("daemon thread");
    match ready_rx.recv_timeout(Duration::from_secs(10)) {
        Ok(Ok(address)) => address,
        Ok(Err(error)) => panic!("the daemon did not start: {error}"),
        Err(error) => panic!("the daemon did not report ready: {error}"),
    }
}

/// Starts a security-key daemon.
pub fn start_daemon() -> SocketAddr {
    start_daemon_with(Config::security_key())
}
