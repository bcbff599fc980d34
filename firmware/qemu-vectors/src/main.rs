//! Fidelio's known-answer vectors on an emulated Cortex-M.
//!
//! Every vector of `test-vectors/kat/` (compiled in by `build.rs`) is replayed on
//! `authenticator-core` over its `TestPlatform`, with the host runner's own setup, step and
//! comparison code (`fidelio_test_vectors` built `no_std`): each response must equal the
//! vector's byte for byte. One `PASS`/`FAIL` line per vector, then a summary, the instruction
//! counts of a reference makeCredential and getAssertion (see [`icount`]), and a semihosting exit:
//! 0 when everything passed, 1 otherwise.
//!
//! Runs on QEMU's `mps2-an385` (the thumbv6m-none-eabi build, on its Cortex-M3) and
//! `mps2-an386` (thumbv7em-none-eabihf, Cortex-M4); see README.md.
#![no_std]
#![no_main]

extern crate alloc;

mod icount;

use cortex_m::peripheral::CPUID;
use cortex_m_rt::{ExceptionFrame, entry, exception};
use cortex_m_semihosting::debug::{self, EXIT_FAILURE, EXIT_SUCCESS, ExitStatus};
use cortex_m_semihosting::hio;
use embedded_alloc::LlffHeap;
use fidelio_test_vectors::{
    BuiltInUvState, PresenceAnswer, Profile, Session, Setup, StepRef, check_response,
};
use panic_semihosting as _;

use icount::Counter;

/// Prints one line on the host's standard output (semihosting), `format!`-style.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::say_line(format_args!($($arg)*))
    };
}

/// The vectors, generated from `test-vectors/kat/*.json` by `build.rs`.
mod vectors {
    include!(concat!(env!("OUT_DIR"), "/vectors.rs"));
}

/// The rust target this image was built for (set by `build.rs`).
const TARGET: &str = env!("FIDELIO_QEMU_TARGET");

/// Heap for the core's CBOR values, responses and in-memory store. The rest of the 4 MiB RAM
/// is `.data`/`.bss` and the stack.
const HEAP_BYTES: usize = 2 * 1024 * 1024;

#[global_allocator]
static HEAP: LlffHeap = LlffHeap::empty();

/// One vector as compiled-in statics: the fields of `fidelio_test_vectors::Vector` that replay
/// needs, borrowed.
#[derive(Debug)]
pub struct Kat {
    name: &'static str,
    seed: u64,
    profile: Profile,
    built_in_uv: BuiltInUvState,
    reset_window_ms: Option<u64>,
    clock_ms: u64,
    presence: &'static [PresenceAnswer],
    steps: &'static [StepRef<'static>],
}

impl Kat {
    /// The vector's setup, as the host runner's `Setup`.
    fn setup(&self) -> Setup {
        Setup {
            profile: self.profile,
            built_in_uv: self.built_in_uv,
            reset_window_ms: self.reset_window_ms,
            clock_ms: self.clock_ms,
            presence: self.presence.to_vec(),
        }
    }
}

/// A step whose instruction count is reported on its own, as the performance figure of its
/// command.
#[derive(Debug)]
struct Reference {
    command: &'static str,
    what: &'static str,
    vector: &'static str,
    step: usize,
}

/// The reference steps: a registration and an assertion as a security key does them.
const REFERENCES: [Reference; 2] = [
    Reference {
        command: "makeCredential",
        what: "ES256, packed self-attestation",
        vector: "make-credential-es256-packed-self",
        step: 0,
    },
    Reference {
        command: "getAssertion",
        what: "ES256, allowList of 2, non-resident credential",
        vector: "get-assertion-allow-list",
        step: 1,
    },
];

/// What one vector's replay came to.
#[derive(Debug)]
struct Outcome {
    passed: bool,
    /// Instructions spent in the core over all steps run.
    instructions: u64,
}

#[entry]
fn main() -> ! {
    #[allow(unsafe_code, reason = "the allocator must be handed its memory")]
    // SAFETY: this is the first statement of the program and runs once: nothing has allocated
    // yet, and `init!` creates the static buffer it hands over, which nothing else can name.
    unsafe {
        embedded_alloc::init!(HEAP, HEAP_BYTES);
    }
    let Some(peripherals) = cortex_m::Peripherals::take() else {
        say!("FAIL the core peripherals were already taken");
        exit(EXIT_FAILURE)
    };
    let cpu = cpu_name(&peripherals.CPUID);
    let mut counter = Counter::start(peripherals.SYST);

    say!(
        "fidelio-qemu-vectors: {} vectors, built for {TARGET}, running on {cpu}",
        vectors::VECTORS.len()
    );
    let (expected, measured) = counter.calibrate();
    say!(
        "calibration: a loop of {expected} instructions counted as {measured} \
         (qemu -icount shift={})",
        icount::ICOUNT_SHIFT
    );
    // A couple of instructions either way is rounding; anything more means the counter is not
    // counting instructions (QEMU started without -icount, or with another shift).
    let calibrated = measured.abs_diff(expected) <= 2;
    if !calibrated {
        say!(
            "FAIL calibration: instruction counts are wrong; run QEMU with -icount shift={}",
            icount::ICOUNT_SHIFT
        );
    }

    let mut passed = 0_usize;
    let mut failed = 0_usize;
    let mut figures: [Option<u64>; REFERENCES.len()] = [None; REFERENCES.len()];
    for kat in vectors::VECTORS {
        let outcome = replay(kat, &mut counter, &mut figures);
        if outcome.passed {
            passed += 1;
            say!(
                "PASS {} ({} steps, {} instructions)",
                kat.name,
                kat.steps.len(),
                outcome.instructions
            );
        } else {
            failed += 1;
        }
    }
    let steps: usize = vectors::VECTORS.iter().map(|kat| kat.steps.len()).sum();
    say!(
        "summary: {passed} passed, {failed} failed ({} vectors, {steps} steps); heap in use \
         afterwards: {} bytes",
        vectors::VECTORS.len(),
        HEAP.used()
    );

    let mut figures_ok = calibrated;
    for (reference, figure) in REFERENCES.iter().zip(figures) {
        match figure {
            // Uncalibrated counts are not instruction counts: not printed as figures.
            Some(_) if !calibrated => {}
            Some(count) => say!(
                "instructions {} {count} ({}; vector {} step {}; {cpu}, {TARGET})",
                reference.command,
                reference.what,
                reference.vector,
                reference.step
            ),
            None => {
                figures_ok = false;
                say!(
                    "FAIL no figure for {}: vector {} step {} is missing or failed \
                     (update REFERENCES in src/main.rs if the vectors were renamed)",
                    reference.command,
                    reference.vector,
                    reference.step
                );
            }
        }
    }
    exit(if failed == 0 && calibrated && figures_ok {
        EXIT_SUCCESS
    } else {
        EXIT_FAILURE
    })
}

/// Replays one vector on a fresh session, as `fidelio_test_vectors::run` does, counting the
/// instructions of each request and recording those of the reference steps in `figures`.
/// Prints the mismatch report of the first step that differs.
fn replay(
    kat: &Kat,
    counter: &mut Counter,
    figures: &mut [Option<u64>; REFERENCES.len()],
) -> Outcome {
    let mut session = Session::new(kat.seed, &kat.setup());
    let mut total = 0_u64;
    for (index, step) in kat.steps.iter().enumerate() {
        let (actual, instructions) =
            counter.measure(|| session.send(step.advance_ms, step.request));
        total = total.saturating_add(instructions);
        if let Err(mismatch) = check_response(kat.name, index, *step, &actual) {
            say!("FAIL {mismatch}");
            return Outcome {
                passed: false,
                instructions: total,
            };
        }
        for (reference, figure) in REFERENCES.iter().zip(figures.iter_mut()) {
            if reference.vector == kat.name && reference.step == index {
                *figure = Some(instructions);
            }
        }
    }
    Outcome {
        passed: true,
        instructions: total,
    }
}

/// Writes `args` and a newline to the host's standard output in one semihosting call. Output
/// is best effort: there is nowhere to report a failure to print.
fn say_line(args: core::fmt::Arguments<'_>) {
    let line = alloc::format!("{args}\n");
    if let Ok(mut stdout) = hio::hstdout() {
        let _ = stdout.write_all(line.as_bytes());
    }
}

/// The processor QEMU emulates, from CPUID's part number.
fn cpu_name(cpuid: &CPUID) -> &'static str {
    match (cpuid.base.read() >> 4) & 0xFFF {
        0xC20 => "Cortex-M0",
        0xC60 => "Cortex-M0+",
        0xC23 => "Cortex-M3",
        0xC24 => "Cortex-M4",
        0xC27 => "Cortex-M7",
        0xD21 => "Cortex-M33",
        _ => "an unknown Cortex-M",
    }
}

/// Ends the QEMU session with `status` (semihosting SYS_EXIT: exit code 0 or 1).
fn exit(status: ExitStatus) -> ! {
    debug::exit(status);
    // Reached only under a debugger that ignores the request.
    loop {
        cortex_m::asm::wfi();
    }
}

#[allow(
    unsafe_code,
    reason = "cortex-m-rt requires the HardFault handler to be an `unsafe fn`"
)]
#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    say!("FAIL hard fault: {frame:?}");
    exit(EXIT_FAILURE)
}
