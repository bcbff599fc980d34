//! Independent check of the generated material with the `openssl` CLI.
//!
//! These tests require `openssl` on PATH and fail (rather than skip) without
//! it, so a CI image that lacks it cannot silently pass.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{NOT_BEFORE, provision};
use fidelio_attestation::{BATCH_CERT_FILE, BATCH_KEY_FILE, CA_CERT_FILE, CA_KEY_FILE, save};

/// Runs `openssl` with `args` in `dir`, panicking loudly if the CLI is absent.
fn openssl(dir: &Path, args: &[&str]) -> Output {
    match Command::new("openssl").args(args).current_dir(dir).output() {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "the openssl CLI is required for this test but was not found on PATH \
             (install it, e.g. `apt-get install openssl`)"
        ),
        Err(e) => panic!("failed to run openssl {args:?}: {e}"),
    }
}

fn run_ok(dir: &Path, args: &[&str]) -> String {
    let out = openssl(dir, args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "openssl {args:?} failed ({}):\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn openssl_verifies_chain_and_reads_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let p = provision(11);
    save(dir.path(), &p, false).unwrap();
    let path = dir.path();

    // Verify at a fixed instant inside both validity periods so the test does
    // not depend on the wall clock.
    let at = (NOT_BEFORE + 86_400).to_string();
    let verified = run_ok(
        path,
        &[
            "verify",
            "-x509_strict",
            "-attime",
            &at,
            "-CAfile",
            CA_CERT_FILE,
            BATCH_CERT_FILE,
        ],
    );
    assert!(verified.contains(": OK"), "{verified}");

    let text = run_ok(path, &["x509", "-in", BATCH_CERT_FILE, "-noout", "-text"]);
    assert!(text.contains("Version: 3 (0x2)"), "{text}");
    assert!(text.contains("OU = Authenticator Attestation"), "{text}");
    assert!(
        text.contains("Subject: C = US, O = Fidelio, OU = Authenticator Attestation, CN = Fidelio Batch Attestation"),
        "{text}"
    );
    assert!(text.contains("CA:FALSE"), "{text}");
    assert!(
        text.contains("X509v3 Basic Constraints: critical"),
        "{text}"
    );
    assert!(text.contains("ecdsa-with-SHA256"), "{text}");
    assert!(text.contains("NIST CURVE: P-256"), "{text}");
    // OpenSSL does not know the FIDO OID, so it prints it dotted; it must not
    // be marked critical.
    assert!(text.contains("1.3.6.1.4.1.45724.1.1.4:"), "{text}");
    assert!(
        !text.contains("1.3.6.1.4.1.45724.1.1.4: critical"),
        "{text}"
    );
    assert!(text.contains("X509v3 Authority Key Identifier"), "{text}");

    let ca_text = run_ok(path, &["x509", "-in", CA_CERT_FILE, "-noout", "-text"]);
    assert!(ca_text.contains("CA:TRUE, pathlen:0"), "{ca_text}");
    assert!(ca_text.contains("Certificate Sign, CRL Sign"), "{ca_text}");

    // The PKCS#8 keys are readable by OpenSSL and match the certificates.
    for (key, cert) in [
        (BATCH_KEY_FILE, BATCH_CERT_FILE),
        (CA_KEY_FILE, CA_CERT_FILE),
    ] {
        let from_key = run_ok(path, &["pkey", "-in", key, "-pubout"]);
        let from_cert = run_ok(path, &["x509", "-in", cert, "-noout", "-pubkey"]);
        assert_eq!(from_key, from_cert, "{key} vs {cert}");
    }
}

#[test]
fn openssl_sees_the_aaguid_octets() {
    let dir = tempfile::tempdir().unwrap();
    let p = provision(12);
    save(dir.path(), &p, false).unwrap();
    // Dump the batch cert's ASN.1 and find the AAGUID extension: OID, then
    // the extnValue OCTET STRING whose contents are the inner OCTET STRING.
    let dump = run_ok(dir.path(), &["asn1parse", "-in", BATCH_CERT_FILE, "-i"]);
    let lines: Vec<&str> = dump.lines().collect();
    let idx = lines
        .iter()
        .position(|l| l.contains(":1.3.6.1.4.1.45724.1.1.4"))
        .unwrap_or_else(|| panic!("AAGUID OID not in asn1parse output:\n{dump}"));
    let next = lines.get(idx + 1).unwrap();
    let expected: String = {
        let mut inner = vec![0x04u8, 0x10];
        inner.extend_from_slice(&common::AAGUID);
        inner.iter().map(|b| format!("{b:02X}")).collect()
    };
    assert!(
        next.contains("OCTET STRING") && next.contains(&expected),
        "expected extnValue [HEX DUMP]:{expected} right after the OID, got {next:?}"
    );
}
