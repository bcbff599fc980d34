//! What CTAPHID over UDP adds to a getAssertion: the same request (ES256, allowList naming one
//! non-discoverable credential) sent by `CtapHidClient` over loopback to an in-process daemon
//! (`fidelio serve --ephemeral --presence auto`), and handed to `Authenticator::process`
//! directly (HostPlatform + MemoryStore + PolicyPresence::approve()).
//!
//! ```text
//! cargo bench -p fidelio-client --bench udp_roundtrip
//! FIDELIO_BENCH_SUMMARY_ONLY=1 cargo bench -p fidelio-client --bench udp_roundtrip  # no criterion
//! FIDELIO_BENCH_ENFORCE=1 cargo bench -p fidelio-client --bench udp_roundtrip       # exit 1 over the floor
//! FIDELIO_BENCH_BLOCK=1 cargo bench …  # alternate every iteration instead of every 100
//! ```
//!
//! After criterion, an interleaved `Instant` loop (2000 iterations of each, after a warm-up)
//! prints the median and p99 of both and the difference of the medians: the transport's added
//! cost, whose floor is 100 µs. The loop also times a second UDP client that never polls
//! (`set_spin(Duration::ZERO)`), to show what the default polling saves.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_debug_implementations,
    reason = "benchmark harness"
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use authenticator_core::cbor::{self, Key, Members, Value};
use authenticator_core::{Authenticator, Config, MemoryStore, block_on};
use criterion::Criterion;
use fidelio_client::{CtapHidClient, UdpTransport};
use fidelio_host::{HostPlatform, PolicyPresence};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

const RP_ID: &str = "example.com";
const CLIENT_DATA_HASH: [u8; 32] = [0x5A; 32];
const ITERATIONS: usize = 2000;
const WARM_UP: usize = 200;
/// Iterations of one kind in a row (`FIDELIO_BENCH_BLOCK` changes it): long enough for the daemon to stay in its steady state (a
/// daemon left idle while the in-process case runs wakes up more slowly), short enough that
/// all three kinds see the same machine.
const BLOCK: usize = 100;
/// The most the UDP transport may add at the median.
const FLOOR: Duration = Duration::from_micros(100);

fn with_command(command: u8, parameters: &Value) -> Vec<u8> {
    let mut request = vec![command];
    cbor::encode(parameters, &mut request);
    request
}

fn make_credential_request() -> Vec<u8> {
    let parameters = cbor::map(vec![
        (cbor::int(1), cbor::bytes(&CLIENT_DATA_HASH)),
        (
            cbor::int(2),
            cbor::map(vec![(cbor::text("id"), cbor::text(RP_ID))]),
        ),
        (
            cbor::int(3),
            cbor::map(vec![
                (cbor::text("id"), cbor::bytes(&[0x42; 16])),
                (cbor::text("name"), cbor::text("alice@example.com")),
            ]),
        ),
        (
            cbor::int(4),
            Value::Array(vec![cbor::map(vec![
                (cbor::text("alg"), cbor::int(-7)),
                (cbor::text("type"), cbor::text("public-key")),
            ])]),
        ),
    ]);
    with_command(authenticator_core::command::MAKE_CREDENTIAL, &parameters)
}

fn get_assertion_request(credential_id: &[u8]) -> Vec<u8> {
    let parameters = cbor::map(vec![
        (cbor::int(1), cbor::text(RP_ID)),
        (cbor::int(2), cbor::bytes(&CLIENT_DATA_HASH)),
        (
            cbor::int(3),
            Value::Array(vec![cbor::map(vec![
                (cbor::text("id"), cbor::bytes(credential_id)),
                (cbor::text("type"), cbor::text("public-key")),
            ])]),
        ),
    ]);
    with_command(authenticator_core::command::GET_ASSERTION, &parameters)
}

fn credential_id(response: &[u8]) -> Vec<u8> {
    assert_eq!(response.first(), Some(&0x00), "makeCredential failed");
    let body = cbor::decode(&response[1..]).unwrap();
    let auth_data = cbor::as_bytes(Members::of(&body).unwrap().required(Key::Int(2)).unwrap())
        .unwrap()
        .to_vec();
    let len = usize::from(u16::from_be_bytes([auth_data[53], auth_data[54]]));
    auth_data[55..55 + len].to_vec()
}

/// Median and 99th percentile of `samples` (sorted in place).
fn percentiles(samples: &mut [Duration]) -> (Duration, Duration) {
    samples.sort_unstable();
    // Nearest rank on the sorted samples.
    let at = |percent: usize| samples[(samples.len() - 1) * percent / 100];
    (at(50), at(99))
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let has = |flag: &str| args.iter().any(|a| a == flag);
    let measuring = has("--bench") && !has("--list") && !has("--test") && !has("--profile-time");

    // Over UDP: a daemon on its own thread, a client on this one.
    let address = common::start_daemon();
    let mut client = CtapHidClient::new(UdpTransport::connect(address).unwrap());
    client.init().unwrap();
    let udp_credential = credential_id(&client.cbor(&make_credential_request()).unwrap());
    let udp_request = get_assertion_request(&udp_credential);
    let mut sleeper = UdpTransport::connect(address).unwrap();
    sleeper.set_spin(Duration::ZERO);
    let mut sleeper = CtapHidClient::new(sleeper);
    sleeper.init().unwrap();
    let sleeper_request = udp_request.clone();
    let mut over_udp = move || {
        let response = client.cbor(black_box(&udp_request)).unwrap();
        assert_eq!(response.first(), Some(&0x00));
        black_box(response);
    };
    let mut over_udp_no_spin = move || {
        let response = sleeper.cbor(black_box(&sleeper_request)).unwrap();
        assert_eq!(response.first(), Some(&0x00));
        black_box(response);
    };

    // In process: the same core, platform and store, no transport.
    let platform = HostPlatform::new(
        ChaCha20Rng::seed_from_u64(1),
        MemoryStore::new(),
        PolicyPresence::approve(),
    );
    let mut authenticator = Authenticator::new(platform, Config::security_key());
    let local_credential =
        credential_id(&block_on(authenticator.process(&make_credential_request())));
    let local_request = get_assertion_request(&local_credential);
    let mut in_process = move || {
        let response = block_on(authenticator.process(black_box(&local_request)));
        assert_eq!(response.first(), Some(&0x00));
        black_box(response);
    };

    if std::env::var_os("FIDELIO_BENCH_SUMMARY_ONLY").is_none() {
        let mut criterion = Criterion::default()
            .warm_up_time(Duration::from_secs(2))
            .measurement_time(Duration::from_secs(5))
            .configure_from_args();
        let mut group = criterion.benchmark_group("get_assertion_es256_allow_list");
        group.bench_function("udp_loopback", |b| b.iter(&mut over_udp));
        group.bench_function("in_process", |b| b.iter(&mut in_process));
        group.finish();
        criterion.final_summary();
    }
    if !measuring {
        return;
    }

    // Interleaved, so all see the same machine.
    for _ in 0..WARM_UP {
        over_udp();
        over_udp_no_spin();
        in_process();
    }
    let mut udp = Vec::with_capacity(ITERATIONS);
    let mut udp_no_spin = Vec::with_capacity(ITERATIONS);
    let mut local = Vec::with_capacity(ITERATIONS);
    let time = |run: &mut dyn FnMut(), samples: &mut Vec<Duration>| {
        let start = Instant::now();
        run();
        samples.push(start.elapsed());
    };
    let block = std::env::var("FIDELIO_BENCH_BLOCK")
        .ok()
        .and_then(|b| b.parse::<usize>().ok())
        .filter(|b| (1..=ITERATIONS).contains(b))
        .unwrap_or(BLOCK);
    for _ in 0..ITERATIONS.div_ceil(block) {
        for _ in 0..block {
            time(&mut over_udp, &mut udp);
        }
        for _ in 0..block {
            time(&mut over_udp_no_spin, &mut udp_no_spin);
        }
        for _ in 0..block {
            time(&mut in_process, &mut local);
        }
    }
    let (udp_p50, udp_p99) = percentiles(&mut udp);
    let (sleeper_p50, sleeper_p99) = percentiles(&mut udp_no_spin);
    let (local_p50, local_p99) = percentiles(&mut local);
    let added = udp_p50.saturating_sub(local_p50);
    let row = |name: &str, p50: Duration, p99: Duration| {
        println!("  {name:<28} {:>10.1} {:>10.1}", micros(p50), micros(p99));
    };
    println!();
    println!("getAssertion ES256, allowList with one credential; {ITERATIONS} iterations each");
    println!("  {:<28} {:>10} {:>10}", "", "p50 µs", "p99 µs");
    row("UDP loopback (daemon)", udp_p50, udp_p99);
    row("UDP loopback, no polling", sleeper_p50, sleeper_p99);
    row("in process", local_p50, local_p99);
    let verdict = if added < FLOOR { "within" } else { "OVER" };
    println!(
        "  transport adds {:.1} µs at p50 ({verdict} the {} µs floor); {:.1} µs without polling",
        micros(added),
        FLOOR.as_micros(),
        micros(sleeper_p50.saturating_sub(local_p50))
    );
    if added >= FLOOR && std::env::var_os("FIDELIO_BENCH_ENFORCE").is_some() {
        eprintln!("the UDP transport's added cost is over its floor");
        std::process::exit(1);
    }
}
