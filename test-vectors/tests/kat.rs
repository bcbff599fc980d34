//! Replays every known-answer vector in `test-vectors/kat/` against the core.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers outside #[test] functions: a failure is a test failure"
)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use fidelio_test_vectors::{Vector, load_dir, run, vector_files};

/// Fewer than this many vectors means the directory was emptied or not generated.
const MINIMUM_VECTORS: usize = 25;

fn kat_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("kat")
}

fn vectors() -> Vec<Vector> {
    load_dir(kat_dir()).unwrap_or_else(|e| panic!("loading {}: {e}", kat_dir().display()))
}

fn vector(name: &str) -> Vector {
    vectors()
        .into_iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("no vector named {name}"))
}

#[test]
fn every_known_answer_vector_replays() {
    let vectors = vectors();
    assert!(
        vectors.len() >= MINIMUM_VECTORS,
        "only {} vectors in {} (expected at least {MINIMUM_VECTORS}); run \
         `cargo run -p fidelio-test-vectors --bin generate-vectors -- test-vectors/kat`",
        vectors.len(),
        kat_dir().display()
    );
    let failures: Vec<String> = vectors
        .iter()
        .filter_map(|v| run(v).err())
        .map(|m| m.to_string())
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} vectors failed:\n\n{}",
        failures.len(),
        vectors.len(),
        failures.join("\n\n")
    );
    let steps: usize = vectors.iter().map(|v| v.steps.len()).sum();
    println!(
        "{} known-answer vectors, {steps} steps, all byte-identical",
        vectors.len()
    );
}

#[test]
fn vectors_cover_every_command_and_profile() {
    let vectors = vectors();
    let commands: BTreeSet<u8> = vectors
        .iter()
        .flat_map(|v| &v.steps)
        .filter_map(|s| s.request.first().copied())
        .collect();
    for command in [0x01, 0x02, 0x04, 0x06, 0x07, 0x08, 0x0B] {
        assert!(
            commands.contains(&command),
            "no vector sends command 0x{command:02X}"
        );
    }
    let profiles: BTreeSet<String> = vectors
        .iter()
        .map(|v| format!("{:?}", v.setup.profile))
        .collect();
    assert_eq!(profiles.len(), 3, "profiles covered: {profiles:?}");
    let statuses: BTreeSet<u8> = vectors
        .iter()
        .flat_map(|v| &v.steps)
        .filter_map(|s| s.response.first().copied())
        .collect();
    for status in [
        0x00, 0x01, 0x11, 0x12, 0x14, 0x19, 0x26, 0x27, 0x2B, 0x2C, 0x2E, 0x2F, 0x30, 0x31, 0x34,
        0x35, 0x36,
    ] {
        assert!(
            statuses.contains(&status),
            "no vector expects status 0x{status:02X}"
        );
    }
}

#[test]
fn an_altered_response_byte_is_reported_as_a_mismatch() {
    let original = vector("get-assertion-discovery");
    // Step 3 is the first getAssertion: a long CTAP2_OK response ending in
    // numberOfCredentials. Flip a bit of its last byte.
    let index = 3;
    assert_eq!(original.steps[index].request.first(), Some(&0x02));
    let mut altered = original.clone();
    let response = &mut altered.steps[index].response;
    let last = response.len() - 1;
    response[last] ^= 0x01;

    let mismatch = run(&altered).expect_err("an altered byte must not replay");
    assert_eq!(mismatch.vector, "get-assertion-discovery");
    assert_eq!(mismatch.step, index);
    assert_eq!(mismatch.first_difference, last);
    assert_eq!(
        mismatch.expected,
        hex::encode(&altered.steps[index].response)
    );
    assert_eq!(
        mismatch.actual,
        hex::encode(&original.steps[index].response)
    );
    assert_eq!(
        mismatch.request,
        hex::encode(&original.steps[index].request)
    );
    assert_eq!(mismatch.expected_status, "CTAP2_OK (0x00)");
    assert_eq!(mismatch.actual_status, "CTAP2_OK (0x00)");
    let message = mismatch.to_string();
    assert!(message.contains("step 3"), "{message}");
    assert!(message.contains(&mismatch.expected) && message.contains(&mismatch.actual));
}

#[test]
fn an_altered_status_byte_is_reported_with_both_names() {
    let original = vector("get-assertion-discovery");
    let index = original.steps.len() - 1; // the final getNextAssertion → 0x30
    assert_eq!(original.steps[index].response, [0x30]);
    let mut altered = original.clone();
    altered.steps[index].response = vec![0x2E];

    let mismatch = run(&altered).expect_err("an altered status must not replay");
    assert_eq!(mismatch.step, index);
    assert_eq!(mismatch.first_difference, 0);
    assert_eq!(mismatch.expected_status, "CTAP2_ERR_NO_CREDENTIALS (0x2E)");
    assert_eq!(mismatch.actual_status, "CTAP2_ERR_NOT_ALLOWED (0x30)");
    let message = mismatch.to_string();
    assert!(
        message.contains("CTAP2_ERR_NO_CREDENTIALS") && message.contains("CTAP2_ERR_NOT_ALLOWED")
    );
}

#[test]
fn a_changed_setup_is_a_mismatch_too() {
    // The same steps on another seed give other credential IDs and keys.
    let mut altered = vector("make-credential-es256-packed-self");
    altered.seed ^= 1;
    let mismatch = run(&altered).expect_err("another seed must not replay");
    assert_eq!(mismatch.step, 0);
}

/// The committed vectors are exactly what the generator produces now: nobody edited a file by
/// hand, no scenario was added without regenerating, and the generator's own independent
/// checks still pass against today's core.
#[test]
fn generator_reproduces_the_committed_vectors() {
    let out = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_generate-vectors"))
        .arg(out.path())
        .status()
        .unwrap();
    assert!(
        status.success(),
        "generate-vectors failed: its checks did not pass"
    );

    let names = |dir: &Path| -> Vec<String> {
        vector_files(dir)
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    };
    assert_eq!(
        names(out.path()),
        names(&kat_dir()),
        "regenerate test-vectors/kat"
    );
    for name in names(out.path()) {
        let fresh = std::fs::read_to_string(out.path().join(&name)).unwrap();
        let committed = std::fs::read_to_string(kat_dir().join(&name)).unwrap();
        assert!(
            fresh == committed,
            "{name} differs from the generator's output; regenerate"
        );
    }
}
