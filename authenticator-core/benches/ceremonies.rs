//! What one ceremony costs, in absolute time and in "sign-costs" (one ECDSA P-256 signature by
//! `credential::PrivateKey::sign`, measured in the same run).
//!
//! ```text
//! cargo bench -p authenticator-core --features testing --bench ceremonies
//! FIDELIO_BENCH_ENFORCE=1 cargo bench …      # exit 1 when a floor is missed
//! FIDELIO_BENCH_SUMMARY_ONLY=1 cargo bench …  # skip criterion, print only the summary
//! FIDELIO_BENCH_ONLY=get_assertion/es256_allow_list FIDELIO_BENCH_ITERS=500 \
//!   valgrind --tool=callgrind --toggle-collect='*profiled_iterations*' target/release/deps/ceremonies-…
//! ```
//!
//! After the criterion groups, a summary table gives each benchmark's mean and its multiple of
//! the sign cost, both from criterion's estimates and from blocks of iterations interleaved with
//! blocks of the reference sign (wall clock and on-CPU time; the on-CPU ratio is the figure
//! judged against the issue's floors: makeCredential with packed self-attestation ≤ 2.2
//! sign-costs, getAssertion ≤ 1.15). Interleaving matters on a shared machine: criterion
//! measures each benchmark at a different moment, so its ratios carry the load's drift.
//!
//! Every ceremony runs through `Authenticator::process` on the deterministic `TestPlatform`
//! with `Config::security_key()`: request CBOR decode, master-key AEAD, the global signature
//! counter's store write, and response encode are all part of the cost.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_debug_implementations,
    reason = "benchmark harness"
)]

mod common;

use std::hint::black_box;
use std::time::Duration;

use authenticator_core::Config;
use authenticator_core::credential::{Algorithm, PrivateKey};
use common::{Case, EDDSA, ES256, authenticator, credential_id, get_assertion_request, process};
use criterion::Criterion;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

const RP_ID: &str = "example.com";
const USER_ID: &[u8] = &[0x42; 16];

/// The message a signature covers: authData (37) ‖ clientDataHash (32).
fn message() -> Vec<u8> {
    (0..=u8::MAX).take(common::ASSERTION_MESSAGE_LEN).collect()
}

fn sign_cases() -> Vec<Case> {
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let message = message();

    let (es256, _) = PrivateKey::generate(Algorithm::Es256, &mut rng);
    let secret = *es256.expose_secret();
    let reference = {
        let message = message.clone();
        Case::new("p256_sign/private_key", move || {
            black_box(es256.sign(black_box(&message)).unwrap());
        })
    };

    let signing_key = p256::ecdsa::SigningKey::from_bytes(&secret.into()).unwrap();
    let plain = {
        let message = message.clone();
        Case::new("p256_sign/signing_key", move || {
            use p256::ecdsa::signature::Signer;
            let signature: p256::ecdsa::Signature = signing_key.sign(black_box(&message));
            black_box(signature);
        })
    };

    let keygen = {
        let mut rng = ChaCha20Rng::seed_from_u64(8);
        Case::new("p256_keygen/private_key", move || {
            black_box(PrivateKey::generate(Algorithm::Es256, &mut rng));
        })
    };

    let (eddsa, _) = PrivateKey::generate(Algorithm::EdDsa, &mut rng);
    let ed25519 = Case::new("ed25519_sign/private_key", move || {
        black_box(eddsa.sign(black_box(&message)).unwrap());
    });
    vec![reference, plain, keygen, ed25519]
}

/// makeCredential, repeated on one authenticator. The resident variant registers the same
/// account each time, so each iteration replaces the previous credential (delete + put) and
/// the store stays the same size.
fn make_credential_case(id: &'static str, alg: i64, rk: bool) -> Case {
    let mut authenticator = authenticator(1, Config::security_key());
    let request = common::make_credential_request(RP_ID, USER_ID, alg, rk);
    assert_eq!(
        process(&mut authenticator, &request).first(),
        Some(&0x00),
        "{id}"
    );
    Case::new(id, move || {
        // TestPlatform logs every presence request; keep the log (and memory) flat.
        authenticator.platform_mut().presence.calls.clear();
        let response = process(&mut authenticator, black_box(&request));
        assert_eq!(response.first(), Some(&0x00));
        black_box(response);
    })
}

/// getAssertion for one credential: named in the allowList, or discovered (one resident
/// credential for the RP, no allowList).
fn get_assertion_case(id: &'static str, alg: i64, discoverable: bool) -> Case {
    let mut authenticator = authenticator(2, Config::security_key());
    let registration = common::make_credential_request(RP_ID, USER_ID, alg, discoverable);
    let credential = credential_id(&process(&mut authenticator, &registration));
    let request = if discoverable {
        get_assertion_request(RP_ID, &[])
    } else {
        get_assertion_request(RP_ID, &[&credential])
    };
    common::expect_ok(&process(&mut authenticator, &request), id);
    Case::new(id, move || {
        // TestPlatform logs every presence request; keep the log (and memory) flat.
        authenticator.platform_mut().presence.calls.clear();
        let response = process(&mut authenticator, black_box(&request));
        assert_eq!(response.first(), Some(&0x00));
        black_box(response);
    })
}

fn cases() -> Vec<Case> {
    let mut cases = sign_cases();
    cases.extend([
        make_credential_case("make_credential/es256_packed_self", ES256, false).with_floor(2.2),
        make_credential_case("make_credential/es256_packed_self_rk", ES256, true).with_floor(2.2),
        make_credential_case("make_credential/eddsa_packed_self", EDDSA, false),
        make_credential_case("make_credential/eddsa_packed_self_rk", EDDSA, true),
        get_assertion_case("get_assertion/es256_allow_list", ES256, false).with_floor(1.15),
        get_assertion_case("get_assertion/es256_discoverable", ES256, true).with_floor(1.15),
        get_assertion_case("get_assertion/eddsa_allow_list", EDDSA, false),
        get_assertion_case("get_assertion/eddsa_discoverable", EDDSA, true),
    ]);
    cases
}

fn main() {
    let args = common::args();
    let mut cases = cases();
    if common::run_only(&mut cases) {
        return;
    }
    if std::env::var_os("FIDELIO_BENCH_SUMMARY_ONLY").is_none() {
        let mut criterion = Criterion::default()
            .warm_up_time(Duration::from_secs(2))
            .measurement_time(Duration::from_secs(5))
            .configure_from_args();
        common::run_criterion(&mut criterion, &mut cases);
        criterion.final_summary();
    }
    if args.measuring {
        let missed = common::summary(&mut cases, args.filter.as_deref(), 2000).missed;
        if missed > 0 && std::env::var_os("FIDELIO_BENCH_ENFORCE").is_some() {
            eprintln!("{missed} floor(s) missed");
            std::process::exit(1);
        }
    }
}
