//! What the daemon's integration tests share: a real `serve_until` on its own thread.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

pub mod http;

use std::net::SocketAddr;
use std::time::Duration;

use fidelio_daemon::ServeOptions;

/// Runs the daemon with `options` on a thread of its own (current-thread runtime, `LocalSet`,
/// as `fidelio serve` does) until the test process ends; returns the UDP lane's address once
/// the daemon reports ready, and fails the test if it does not start within 60 s.
pub fn serve_in_background(options: ServeOptions) -> SocketAddr {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
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
    });
    match ready_rx.recv_timeout(Duration::from_secs(60)) {
        Ok(Ok(address)) => address,
        Ok(Err(error)) => panic!("the daemon did not start: {error}"),
        Err(error) => panic!("the daemon did not report ready: {error}"),
    }
}
