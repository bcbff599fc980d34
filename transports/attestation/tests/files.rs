//! Save/load round trip, file permissions, overwrite protection and load
//! error reporting.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::provision;
use fidelio_attestation::{
    BATCH_CERT_FILE, BATCH_KEY_FILE, CA_CERT_FILE, CA_KEY_FILE, Error, Provisioned, load, save,
};

const ALL_FILES: [&str; 4] = [BATCH_KEY_FILE, BATCH_CERT_FILE, CA_CERT_FILE, CA_KEY_FILE];

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn assert_same(a: &Provisioned, b: &Provisioned) {
    assert_eq!(a.batch_key(), b.batch_key());
    assert_eq!(a.batch_cert_der(), b.batch_cert_der());
    assert_eq!(a.ca_cert_der(), b.ca_cert_der());
    assert_eq!(a.ca_key(), b.ca_key());
}

/// Saves fixture material into a fresh directory.
fn saved(seed: u8) -> (tempfile::TempDir, Provisioned) {
    let dir = tempfile::tempdir().unwrap();
    let p = provision(seed);
    save(dir.path(), &p, false).unwrap();
    (dir, p)
}

fn path_ends_with(path: &Path, name: &str) -> bool {
    path.file_name().and_then(|n| n.to_str()) == Some(name)
}

#[test]
fn round_trip_preserves_everything() {
    let (dir, p) = saved(21);
    let loaded = load(dir.path()).unwrap();
    assert_same(&p, &loaded);
    assert_eq!(
        loaded.attestation_chain(),
        vec![p.batch_cert_der().to_vec()]
    );
    assert_eq!(loaded.aaguid().unwrap(), Some(common::AAGUID));
}

#[test]
fn files_have_expected_names_modes_and_labels() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("nested").join("attestation");
    save(&dir, &provision(22), false).unwrap();

    assert_eq!(mode(&dir), 0o700, "created directory is private");
    assert_eq!(mode(&dir.join(BATCH_KEY_FILE)), 0o600);
    assert_eq!(mode(&dir.join(CA_KEY_FILE)), 0o600);
    assert_eq!(mode(&dir.join(BATCH_CERT_FILE)), 0o644);
    assert_eq!(mode(&dir.join(CA_CERT_FILE)), 0o644);

    for key in [BATCH_KEY_FILE, CA_KEY_FILE] {
        let text = fs::read_to_string(dir.join(key)).unwrap();
        assert!(text.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{key}");
        assert!(text.ends_with("-----END PRIVATE KEY-----\n"), "{key}");
    }
    for cert in [BATCH_CERT_FILE, CA_CERT_FILE] {
        let text = fs::read_to_string(dir.join(cert)).unwrap();
        assert!(text.starts_with("-----BEGIN CERTIFICATE-----\n"), "{cert}");
    }

    // Nothing but the four files: no temporary files left behind.
    let mut names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let mut expected: Vec<String> = ALL_FILES.iter().map(|s| (*s).to_owned()).collect();
    expected.sort();
    assert_eq!(names, expected);
}

#[test]
fn forced_save_restores_key_mode() {
    let (dir, _) = saved(23);
    let key = dir.path().join(BATCH_KEY_FILE);
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    save(dir.path(), &provision(24), true).unwrap();
    assert_eq!(mode(&key), 0o600);
}

#[test]
fn refuses_to_overwrite_without_force() {
    let (dir, first) = saved(25);
    let second = provision(26);

    let err = save(dir.path(), &second, false).unwrap_err();
    match &err {
        Error::AlreadyExists { path } => assert!(path_ends_with(path, BATCH_KEY_FILE)),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert!(err.to_string().contains(BATCH_KEY_FILE), "{err}");
    assert_same(&load(dir.path()).unwrap(), &first);

    save(dir.path(), &second, true).unwrap();
    assert_same(&load(dir.path()).unwrap(), &second);
}

#[test]
fn refusal_writes_nothing() {
    // Only the last file in write order exists: the earlier ones must not be
    // created either.
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(CA_KEY_FILE), "placeholder").unwrap();
    let err = save(dir.path(), &provision(27), false).unwrap_err();
    assert!(
        matches!(&err, Error::AlreadyExists { path } if path_ends_with(path, CA_KEY_FILE)),
        "{err:?}"
    );
    for name in [BATCH_KEY_FILE, BATCH_CERT_FILE, CA_CERT_FILE] {
        assert!(!dir.path().join(name).exists(), "{name} was written");
    }
    assert_eq!(
        fs::read_to_string(dir.path().join(CA_KEY_FILE)).unwrap(),
        "placeholder"
    );
}

#[test]
fn ca_key_is_optional_on_load() {
    let (dir, p) = saved(28);
    fs::remove_file(dir.path().join(CA_KEY_FILE)).unwrap();
    let loaded = load(dir.path()).unwrap();
    assert!(loaded.ca_key().is_none());
    assert_eq!(loaded.batch_key(), p.batch_key());
    assert!(format!("{loaded:?}").contains("ca_key: None"));

    // Saving material without a CA key writes three files.
    let other = tempfile::tempdir().unwrap();
    save(other.path(), &loaded, false).unwrap();
    assert!(!other.path().join(CA_KEY_FILE).exists());
    assert!(load(other.path()).unwrap().ca_key().is_none());

    // ... and leaves a matching CA key in place when re-saving over it.
    let (full, p) = saved(29);
    fs::remove_file(full.path().join(CA_KEY_FILE)).unwrap();
    let without_ca_key = load(full.path()).unwrap();
    save(full.path(), &p, true).unwrap();
    save(full.path(), &without_ca_key, true).unwrap();
    assert_eq!(load(full.path()).unwrap().ca_key(), p.ca_key());
}

#[test]
fn refuses_to_orphan_a_different_ca_key() {
    let (dir, _) = saved(30);
    let (other_dir, _) = saved(31);
    fs::remove_file(other_dir.path().join(CA_KEY_FILE)).unwrap();
    let without_ca_key = load(other_dir.path()).unwrap();

    let err = save(dir.path(), &without_ca_key, true).unwrap_err();
    assert!(
        matches!(&err, Error::StaleCaKey { path } if path_ends_with(path, CA_KEY_FILE)),
        "{err:?}"
    );
}

#[test]
fn missing_file_is_named() {
    for name in [BATCH_KEY_FILE, BATCH_CERT_FILE, CA_CERT_FILE] {
        let (dir, _) = saved(32);
        fs::remove_file(dir.path().join(name)).unwrap();
        let err = load(dir.path()).unwrap_err();
        assert!(
            matches!(&err, Error::Missing { path } if path_ends_with(path, name)),
            "{name}: {err:?}"
        );
        assert!(err.to_string().contains(name), "{err}");
    }
}

#[test]
fn corrupt_pem_is_reported_with_file_name() {
    for name in ALL_FILES {
        let (dir, _) = saved(33);
        fs::write(dir.path().join(name), "this is not PEM\n").unwrap();
        let err = load(dir.path()).unwrap_err();
        assert!(
            matches!(&err, Error::NotPem { path, .. } if path_ends_with(path, name)),
            "{name}: {err:?}"
        );
        assert!(err.to_string().contains(name), "{err}");
    }

    // Valid armour, damaged base64 body.
    let (dir, _) = saved(34);
    let path = dir.path().join(BATCH_CERT_FILE);
    let text = fs::read_to_string(&path).unwrap();
    fs::write(&path, text.replacen("MI", "M!", 1)).unwrap();
    let err = load(dir.path()).unwrap_err();
    assert!(
        matches!(&err, Error::NotPem { path, .. } if path_ends_with(path, BATCH_CERT_FILE)),
        "{err:?}"
    );

    // Valid PEM whose DER is not a certificate.
    let (dir, _) = saved(35);
    let key_pem = fs::read_to_string(dir.path().join(BATCH_KEY_FILE)).unwrap();
    let bogus = key_pem.replace("PRIVATE KEY", "CERTIFICATE");
    fs::write(dir.path().join(CA_CERT_FILE), bogus).unwrap();
    let err = load(dir.path()).unwrap_err();
    assert!(
        matches!(&err, Error::InvalidCertificate { path, .. } if path_ends_with(path, CA_CERT_FILE)),
        "{err:?}"
    );
}

#[test]
fn wrong_key_types_are_rejected() {
    // Ed25519 PKCS#8 (RFC 8410 §10.3 layout) with an arbitrary seed.
    let mut ed25519 = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    ed25519.extend_from_slice(&[0x42; 32]);
    let ed25519_pem = x509_cert::der::pem::encode_string(
        "PRIVATE KEY",
        x509_cert::der::pem::LineEnding::LF,
        &ed25519,
    )
    .unwrap();

    let (dir, _) = saved(36);
    let cert_pem = fs::read_to_string(dir.path().join(BATCH_CERT_FILE)).unwrap();
    let pkcs8 = fs::read_to_string(dir.path().join(BATCH_KEY_FILE)).unwrap();
    let sec1_label = pkcs8.replace("PRIVATE KEY", "EC PRIVATE KEY");

    for (what, contents) in [
        ("ed25519", ed25519_pem.as_str()),
        ("certificate in key file", cert_pem.as_str()),
        ("SEC1 label", sec1_label.as_str()),
    ] {
        for name in [BATCH_KEY_FILE, CA_KEY_FILE] {
            let (dir, _) = saved(37);
            fs::write(dir.path().join(name), contents).unwrap();
            let err = load(dir.path()).unwrap_err();
            assert!(
                matches!(&err, Error::WrongKeyType { path, .. } if path_ends_with(path, name)),
                "{what} in {name}: {err:?}"
            );
            assert!(err.to_string().contains(name), "{err}");
        }
    }
}

#[test]
fn mismatched_batch_key_is_rejected() {
    let (dir, _) = saved(38);
    let (other, _) = saved(39);
    fs::copy(
        other.path().join(BATCH_KEY_FILE),
        dir.path().join(BATCH_KEY_FILE),
    )
    .unwrap();
    let err = load(dir.path()).unwrap_err();
    match &err {
        Error::KeyMismatch { cert, key } => {
            assert!(path_ends_with(cert, BATCH_CERT_FILE));
            assert!(path_ends_with(key, BATCH_KEY_FILE));
        }
        other => panic!("expected KeyMismatch, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains(BATCH_CERT_FILE) && msg.contains(BATCH_KEY_FILE),
        "{msg}"
    );
}

#[test]
fn mismatched_ca_key_is_rejected() {
    let (dir, _) = saved(40);
    let (other, _) = saved(41);
    fs::copy(other.path().join(CA_KEY_FILE), dir.path().join(CA_KEY_FILE)).unwrap();
    let err = load(dir.path()).unwrap_err();
    assert!(
        matches!(&err, Error::KeyMismatch { cert, key }
            if path_ends_with(cert, CA_CERT_FILE) && path_ends_with(key, CA_KEY_FILE)),
        "{err:?}"
    );
}

#[test]
fn batch_not_issued_by_ca_is_rejected() {
    let (dir, _) = saved(42);
    let (other, _) = saved(43);
    fs::copy(
        other.path().join(CA_CERT_FILE),
        dir.path().join(CA_CERT_FILE),
    )
    .unwrap();
    let err = load(dir.path()).unwrap_err();
    assert!(
        matches!(&err, Error::NotIssuedByCa { cert, ca }
            if path_ends_with(cert, BATCH_CERT_FILE) && path_ends_with(ca, CA_CERT_FILE)),
        "{err:?}"
    );
}
