//! Pieces shared by the benchmarks: CTAP2 request builders, response readers, and the
//! "sign-cost" summary that runs after criterion.
//!
//! Each bench binary includes this file with `mod common;`, so not every item is used by each.
#![allow(dead_code, reason = "each bench binary uses its own subset")]

use std::path::PathBuf;
use std::time::Instant;

use authenticator_core::cbor::{self, Key, Members, Value};
use authenticator_core::testing::TestPlatform;
use authenticator_core::{Authenticator, Config, block_on, command};

/// The clientDataHash every request carries.
pub const CLIENT_DATA_HASH: [u8; 32] = [0x5A; 32];

/// COSE algorithm identifiers.
pub const ES256: i64 = -7;
/// EdDSA (Ed25519).
pub const EDDSA: i64 = -8;

/// The message size a ceremony signs: authData without attested data (37 bytes) ‖
/// clientDataHash (32 bytes).
pub const ASSERTION_MESSAGE_LEN: usize = 37 + 32;

/// A fresh authenticator over the deterministic test platform.
pub fn authenticator(seed: u64, config: Config) -> Authenticator<TestPlatform> {
    Authenticator::new(TestPlatform::new(seed), config)
}

/// Processes one request to completion.
pub fn process(authenticator: &mut Authenticator<TestPlatform>, request: &[u8]) -> Vec<u8> {
    block_on(authenticator.process(request))
}

/// An authenticatorMakeCredential request as a browser sends it: user with name and display
/// name, one algorithm, `rk` as given.
pub fn make_credential_request(rp_id: &str, user_id: &[u8], alg: i64, rk: bool) -> Vec<u8> {
    let mut entries = vec![
        (cbor::int(1), cbor::bytes(&CLIENT_DATA_HASH)),
        (
            cbor::int(2),
            cbor::map(vec![(cbor::text("id"), cbor::text(rp_id))]),
        ),
        (
            cbor::int(3),
            cbor::map(vec![
                (cbor::text("id"), cbor::bytes(user_id)),
                (cbor::text("name"), cbor::text("alice@example.com")),
                (cbor::text("displayName"), cbor::text("Alice Example")),
            ]),
        ),
        (
            cbor::int(4),
            Value::Array(vec![cbor::map(vec![
                (cbor::text("alg"), cbor::int(alg)),
                (cbor::text("type"), cbor::text("public-key")),
            ])]),
        ),
    ];
    if rk {
        entries.push((
            cbor::int(7),
            cbor::map(vec![(cbor::text("rk"), Value::Bool(true))]),
        ));
    }
    with_command(command::MAKE_CREDENTIAL, &cbor::map(entries))
}

/// An authenticatorGetAssertion request; an empty `allow_list` asks for discovery.
pub fn get_assertion_request(rp_id: &str, allow_list: &[&[u8]]) -> Vec<u8> {
    let mut entries = vec![
        (cbor::int(1), cbor::text(rp_id)),
        (cbor::int(2), cbor::bytes(&CLIENT_DATA_HASH)),
    ];
    if !allow_list.is_empty() {
        let descriptors = allow_list
            .iter()
            .map(|id| {
                cbor::map(vec![
                    (cbor::text("id"), cbor::bytes(id)),
                    (cbor::text("type"), cbor::text("public-key")),
                ])
            })
            .collect();
        entries.push((cbor::int(3), Value::Array(descriptors)));
    }
    with_command(command::GET_ASSERTION, &cbor::map(entries))
}

fn with_command(command: u8, parameters: &Value) -> Vec<u8> {
    let mut request = vec![command];
    cbor::encode(parameters, &mut request);
    request
}

/// Panics unless the response is a success with a body; returns the decoded body.
pub fn expect_ok(response: &[u8], what: &str) -> Value {
    match response.split_first() {
        Some((0x00, body)) if !body.is_empty() => match cbor::decode(body) {
            Ok(value) => value,
            Err(status) => panic!("{what}: undecodable response ({status})"),
        },
        Some((status, _)) => panic!("{what}: status {status:#04x}"),
        None => panic!("{what}: empty response"),
    }
}

/// The credential ID from a makeCredential response (out of its authData).
pub fn credential_id(response: &[u8]) -> Vec<u8> {
    let body = expect_ok(response, "makeCredential");
    let members = Members::of(&body).unwrap_or_else(|s| panic!("response not a map: {s}"));
    let auth_data = members
        .get(Key::Int(2))
        .and_then(|v| cbor::as_bytes(v).ok())
        .unwrap_or_else(|| panic!("no authData"));
    // rpIdHash (32) ‖ flags (1) ‖ signCount (4) ‖ AAGUID (16) ‖ L (2) ‖ credentialId (L) ‖ …
    let len_bytes: [u8; 2] = auth_data
        .get(53..55)
        .and_then(|b| b.try_into().ok())
        .unwrap_or_else(|| panic!("short"));
    let len = usize::from(u16::from_be_bytes(len_bytes));
    auth_data
        .get(55..55 + len)
        .unwrap_or_else(|| panic!("short authData"))
        .to_vec()
}

/// One benchmark: an id (criterion's `group/function`) and the work of one iteration.
pub struct Case {
    /// `group/function`.
    pub id: &'static str,
    /// One iteration.
    pub run: Box<dyn FnMut()>,
    /// An upper bound in sign-costs, if the issue set one.
    pub floor: Option<f64>,
}

impl Case {
    /// A case without a floor.
    pub fn new(id: &'static str, run: impl FnMut() + 'static) -> Self {
        Self {
            id,
            run: Box::new(run),
            floor: None,
        }
    }

    /// A case that must stay within `floor` sign-costs.
    pub fn with_floor(mut self, floor: f64) -> Self {
        self.floor = Some(floor);
        self
    }
}

/// Registers every case with criterion, one group per id prefix.
pub fn run_criterion(criterion: &mut criterion::Criterion, cases: &mut [Case]) {
    let mut index = 0;
    while let Some(first) = cases.get(index) {
        let group_name = first.id.split('/').next().unwrap_or(first.id).to_owned();
        let mut group = criterion.benchmark_group(&group_name);
        while let Some(case) = cases.get_mut(index) {
            let (group_of, function) = case.id.split_once('/').unwrap_or((case.id, ""));
            if group_of != group_name {
                break;
            }
            let run = &mut case.run;
            group.bench_function(function, |b| b.iter(&mut *run));
            index += 1;
        }
        group.finish();
    }
}

/// What the command line asked criterion for, as far as the summary cares.
pub struct Args {
    /// `--bench` was given and not `--list`/`--test`/`--profile-time`: a real measurement run.
    pub measuring: bool,
    /// The name filter, if any.
    pub filter: Option<String>,
}

/// Reads the arguments cargo bench passes (criterion parses them again itself).
pub fn args() -> Args {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let has = |flag: &str| args.iter().any(|a| a == flag);
    let measuring = has("--bench") && !has("--list") && !has("--test") && !has("--profile-time");
    // Flags that take a value (criterion's CLI); everything else starting with '-' is a switch.
    const WITH_VALUE: &[&str] = &[
        "--color",
        "-c",
        "--save-baseline",
        "-s",
        "--baseline",
        "--baseline-lenient",
        "--load-baseline",
        "--sample-size",
        "--warm-up-time",
        "--measurement-time",
        "--nresamples",
        "--noise-threshold",
        "--confidence-level",
        "--significance-level",
        "--plotting-backend",
        "--output-format",
        "--format",
        "--profile-time",
    ];
    let mut filter = None;
    let mut skip_next = false;
    for arg in &args {
        if skip_next {
            skip_next = false;
        } else if WITH_VALUE.contains(&arg.as_str()) {
            skip_next = true;
        } else if !arg.starts_with('-') {
            filter = Some(arg.clone());
            break;
        }
    }
    Args { measuring, filter }
}

/// Criterion's mean estimate for `id` in nanoseconds, read back from
/// `<target>/criterion/<id>/new/estimates.json`.
pub fn criterion_mean_ns(id: &str) -> Option<f64> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            // <target>/release/deps/<bench binary>
            let exe = std::env::current_exe().ok()?;
            Some(exe.parent()?.parent()?.parent()?.to_path_buf())
        })?;
    let path = target
        .join("criterion")
        .join(id)
        .join("new")
        .join("estimates.json");
    let json = std::fs::read_to_string(path).ok()?;
    // {"mean":{"confidence_interval":{…},"point_estimate":123.4,"standard_error":…},…}
    let mean = json.get(json.find("\"mean\"")?..)?;
    let estimate = mean.get(mean.find("\"point_estimate\":")? + "\"point_estimate\":".len()..)?;
    let end = estimate.find([',', '}'])?;
    estimate.get(..end)?.trim().parse().ok()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    match (values.get(mid.wrapping_sub(1)), values.get(mid)) {
        (Some(a), Some(b)) if values.len().is_multiple_of(2) => (a + b) / 2.0,
        (_, Some(b)) => *b,
        _ => f64::NAN,
    }
}

/// This thread's on-CPU time in ns (Linux `/proc/thread-self/schedstat`), so that time spent
/// preempted by other processes on a busy machine does not count. The kernel may update it
/// only at scheduler ticks (4 ms here), so only sums over many milliseconds are meaningful.
fn thread_cpu_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    stat.split_whitespace().next()?.parse().ok()
}

/// One timed block: iterations, wall-clock ns, on-CPU ns.
#[derive(Clone, Copy)]
struct Block {
    iterations: usize,
    wall_ns: f64,
    cpu_ns: Option<f64>,
}

fn time_block(run: &mut dyn FnMut(), iterations: usize) -> Block {
    let cpu_start = thread_cpu_ns();
    let start = Instant::now();
    for _ in 0..iterations {
        run();
    }
    let wall_ns = start.elapsed().as_secs_f64() * 1e9;
    let cpu_ns = match (cpu_start, thread_cpu_ns()) {
        (Some(a), Some(b)) if b >= a => Some((b - a) as f64),
        _ => None,
    };
    Block {
        iterations,
        wall_ns,
        cpu_ns,
    }
}

/// Per-iteration figures from a series of blocks.
struct Timing {
    /// Median of the blocks' wall-clock means.
    wall_ns: f64,
    /// Fastest block's wall-clock mean (least disturbed by other processes).
    wall_min_ns: f64,
    /// Total on-CPU time over total iterations (tick-granular readings average out).
    cpu_ns: Option<f64>,
}

fn timing(blocks: &[Block]) -> Timing {
    let mut wall: Vec<f64> = blocks
        .iter()
        .map(|b| b.wall_ns / b.iterations as f64)
        .collect();
    let wall_min_ns = wall.iter().copied().fold(f64::INFINITY, f64::min);
    let iterations: usize = blocks.iter().map(|b| b.iterations).sum();
    let cpu: Option<f64> = blocks.iter().map(|b| b.cpu_ns).sum();
    Timing {
        wall_ns: median(&mut wall),
        wall_min_ns,
        cpu_ns: cpu.filter(|&c| c > 0.0).map(|c| c / iterations as f64),
    }
}

/// Iterations for a block of at least 50 ms, and at least `minimum`.
fn block_size(run: &mut dyn FnMut(), minimum: usize) -> usize {
    const BLOCK_NS: u128 = 50_000_000;
    const PROBE: u128 = 20;
    let start = Instant::now();
    for _ in 0..PROBE {
        run();
    }
    let per_iteration = (start.elapsed().as_nanos() / PROBE).max(1);
    usize::try_from(BLOCK_NS.div_ceil(per_iteration))
        .unwrap_or(usize::MAX)
        .max(minimum)
}

/// Times `case` against the `reference` in interleaved blocks (so that frequency drift and
/// noisy neighbours hit both alike), 20 blocks each of at least 50 ms and together at least
/// `iterations` iterations.
fn paired(
    reference: &mut dyn FnMut(),
    case: &mut dyn FnMut(),
    iterations: usize,
) -> (Timing, Timing) {
    const ROUNDS: usize = 20;
    let reference_block = block_size(reference, iterations / ROUNDS);
    let case_block = block_size(case, iterations / ROUNDS);
    let mut reference_blocks = Vec::with_capacity(ROUNDS);
    let mut case_blocks = Vec::with_capacity(ROUNDS);
    for round in 0..ROUNDS {
        if round.is_multiple_of(2) {
            reference_blocks.push(time_block(reference, reference_block));
            case_blocks.push(time_block(case, case_block));
        } else {
            case_blocks.push(time_block(case, case_block));
            reference_blocks.push(time_block(reference, reference_block));
        }
    }
    (timing(&reference_blocks), timing(&case_blocks))
}

fn micros(ns: f64) -> String {
    if ns.is_nan() {
        "—".to_owned()
    } else {
        format!("{:.1} µs", ns / 1000.0)
    }
}

/// Prints each case's mean and its multiple of the reference sign (the first case), from
/// criterion's estimates of this run and from interleaved loops of `iterations` (wall-clock and
/// on-CPU time). Floors are judged on the on-CPU ratio when available (a busy machine inflates
/// wall-clock time unevenly), else on the wall-clock one. Returns the number of floors missed.
pub fn summary(cases: &mut [Case], filter: Option<&str>, iterations: usize) -> Summary {
    let mut summary = Summary {
        missed: 0,
        results: Vec::new(),
    };
    let Some((reference, rest)) = cases.split_first_mut() else {
        return summary;
    };
    let reference_criterion = criterion_mean_ns(reference.id);
    println!();
    println!(
        "Sign-cost summary: 1 sign-cost = {} (ECDSA P-256 over {} bytes), measured in this run.",
        reference.id, ASSERTION_MESSAGE_LEN
    );
    println!(
        "criterion: this run's criterion mean (wall clock). Then each case runs in 20 blocks \
         (>= 50 ms, >= {iterations} iterations in all) interleaved with 20 blocks of the \
         reference sign: wall = median block, min = fastest blocks' ratio, cpu = on-CPU time \
         per iteration (judged against the floors; wall when unavailable)."
    );
    println!(
        "{:<46} {:>10} {:>6} | {:>10} {:>6} | {:>6} | {:>10} {:>10} {:>6} | floor",
        "benchmark", "criterion", "×sign", "wall", "×sign", "min×", "cpu", "cpu sign", "×sign"
    );
    let mut lines = Vec::new();
    for case in rest.iter_mut() {
        if filter.is_some_and(|f| !case.id.contains(f)) {
            continue;
        }
        let (sign, timing) = paired(&mut reference.run, &mut case.run, iterations);
        let wall_ratio = timing.wall_ns / sign.wall_ns;
        let min_ratio = timing.wall_min_ns / sign.wall_min_ns;
        let cpu_ratio = match (timing.cpu_ns, sign.cpu_ns) {
            (Some(c), Some(r)) => Some(c / r),
            _ => None,
        };
        let criterion_ns = criterion_mean_ns(case.id);
        let criterion_ratio = match (criterion_ns, reference_criterion) {
            (Some(c), Some(r)) => format!("{:.2}", c / r),
            _ => "—".to_owned(),
        };
        let ratio = cpu_ratio.unwrap_or(wall_ratio);
        let verdict = match case.floor {
            Some(floor) if ratio <= floor => format!("≤ {floor:.2} ok"),
            Some(floor) => {
                summary.missed += 1;
                format!("≤ {floor:.2} MISSED")
            }
            None => String::new(),
        };
        println!(
            "{:<46} {:>10} {:>6} | {:>10} {:>6.2} | {:>6.2} | {:>10} {:>10} {:>6} | {}",
            case.id,
            micros(criterion_ns.unwrap_or(f64::NAN)),
            criterion_ratio,
            micros(timing.wall_ns),
            wall_ratio,
            min_ratio,
            micros(timing.cpu_ns.unwrap_or(f64::NAN)),
            micros(sign.cpu_ns.unwrap_or(f64::NAN)),
            cpu_ratio.map_or_else(|| "—".to_owned(), |r| format!("{r:.2}")),
            verdict
        );
        let (ns, kind) = match timing.cpu_ns {
            Some(cpu) if cpu_ratio.is_some() => (cpu, "cpu"),
            _ => (timing.wall_ns, "wall"),
        };
        summary.results.push((case.id, ns, ratio));
        lines.push(format!(
            "{}: {:.0} µs = {:.2} sign-costs ({kind})",
            case.id,
            ns / 1000.0,
            ratio
        ));
    }
    println!();
    for line in lines {
        println!("{line}");
    }
    if let Some(reference_ns) = reference_criterion {
        println!(
            "(reference {}: criterion mean {})",
            reference.id,
            micros(reference_ns)
        );
    }
    summary
}

/// What [`summary`] found.
pub struct Summary {
    /// Floors missed.
    pub missed: usize,
    /// Per case: id, ns per iteration (on-CPU when available, else wall), sign-costs.
    pub results: Vec<(&'static str, f64, f64)>,
}

/// `FIDELIO_BENCH_ONLY=<id> [FIDELIO_BENCH_ITERS=n]`: runs that one case n times (default
/// 1000) after as many warm-up iterations (at most 200), with no criterion and no summary, for
/// profilers: `valgrind --tool=callgrind --toggle-collect='*profiled_iterations*'` counts the
/// n measured iterations only. Returns whether it did.
pub fn run_only(cases: &mut [Case]) -> bool {
    let Some(id) = std::env::var_os("FIDELIO_BENCH_ONLY") else {
        return false;
    };
    let iterations: usize = std::env::var("FIDELIO_BENCH_ITERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000);
    let Some(case) = cases.iter_mut().find(|c| std::ffi::OsStr::new(c.id) == id) else {
        let ids: Vec<&str> = cases.iter().map(|c| c.id).collect();
        panic!("FIDELIO_BENCH_ONLY={id:?} matches none of {ids:?}");
    };
    // Warm-up: first-use costs (allocator bins, caches) stay out of the profile.
    for _ in 0..iterations.min(200) {
        (case.run)();
    }
    profiled_iterations(&mut case.run, iterations);
    true
}

/// The measured loop of [`run_only`] (a separate symbol for `--toggle-collect`).
#[inline(never)]
pub fn profiled_iterations(run: &mut dyn FnMut(), iterations: usize) {
    for _ in 0..iterations {
        run();
    }
}
