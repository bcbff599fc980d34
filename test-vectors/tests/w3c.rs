//! The W3C WebAuthn Level 3 test vectors (`test-vectors/w3c/`), where they apply to an
//! authenticator: Fidelio's COSE key encoding, authenticator data layout and signatures must
//! reproduce the spec's bytes exactly.
//!
//! The vectors fix the credential key, AAGUID, credential ID and flags, none of which a real
//! ceremony lets a caller choose, so these tests call the core's building blocks directly:
//! [`PrivateKey::from_secret`], [`PrivateKey::public_cose_key`], [`PrivateKey::sign`] and
//! [`authenticator_data`].
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers outside #[test] functions: a failure is a test failure"
)]

use std::path::{Path, PathBuf};

use authenticator_core::authenticator::{authenticator_data, rp_id_hash};
use authenticator_core::cbor;
use authenticator_core::credential::{Algorithm, PrivateKey};
use ciborium::Value;
use serde_json::Value as Json;
use sha2::{Digest, Sha256};

/// The files checked here, and the ones that do not apply (with why).
const CHECKED: &[&str] = &[
    "packed-self-es256",
    "packed-es256",
    "packed-ed25519",
    "none-es256",
];
const NOT_APPLICABLE: &[(&str, &str)] = &[(
    "prf-hmac-secret",
    "the core does not implement the hmac-secret extension yet",
)];

fn w3c_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("w3c")
}

fn load(name: &str) -> Json {
    let path = w3c_dir().join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// A hex member, by path.
fn hex_at(json: &Json, path: &[&str]) -> Vec<u8> {
    let value = path.iter().fold(json, |v, key| &v[*key]);
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("{path:?} is not a string"));
    hex::decode(text).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

fn text_at<'a>(json: &'a Json, path: &[&str]) -> &'a str {
    path.iter().fold(json, |v, key| &v[*key]).as_str().unwrap()
}

fn member<'a>(map: &'a Value, key: &str) -> Option<&'a Value> {
    map.as_map()
        .unwrap()
        .iter()
        .find(|(k, _)| k.as_text() == Some(key))
        .map(|(_, v)| v)
}

fn concat(a: &[u8], b: &[u8]) -> Vec<u8> {
    [a, b].concat()
}

/// Runs every check that applies to one vector file and returns what was checked.
fn check(name: &str) -> Vec<String> {
    let json = load(name);
    let registration = &json["registration"];
    let rp_id = text_at(&json, &["registration", "rp_id"]);
    let mut checked = Vec::new();

    // The credential key: Ed25519 files call it `private_key`, ES256 files
    // `credential_private_key`.
    let (algorithm, secret) = match registration.get("private_key") {
        Some(_) => (
            Algorithm::EdDsa,
            hex_at(&json, &["registration", "private_key"]),
        ),
        None => (
            Algorithm::Es256,
            hex_at(&json, &["registration", "credential_private_key"]),
        ),
    };
    let secret: [u8; 32] = secret.try_into().unwrap();
    let key = PrivateKey::from_secret(algorithm, &secret).unwrap();

    // The attestationObject (WebAuthn form, text keys).
    let attestation_object: Value = ciborium::de::from_reader(
        hex_at(&json, &["registration", "attestation_object"]).as_slice(),
    )
    .unwrap();
    let fmt = member(&attestation_object, "fmt")
        .unwrap()
        .as_text()
        .unwrap()
        .to_owned();
    let statement = member(&attestation_object, "attStmt").unwrap();
    let auth_data = member(&attestation_object, "authData")
        .unwrap()
        .as_bytes()
        .unwrap()
        .clone();
    assert_eq!(
        auth_data,
        hex_at(&json, &["decoded", "registration", "auth_data"])
    );

    // Registration authData, taken apart by offset.
    let flags = auth_data[32];
    let counter = u32::from_be_bytes(auth_data[33..37].try_into().unwrap());
    assert_eq!(flags & 0xC0, 0x40, "AT set, ED clear");
    let aaguid: [u8; 16] = auth_data[37..53].try_into().unwrap();
    let id_len = usize::from(u16::from_be_bytes(auth_data[53..55].try_into().unwrap()));
    let credential_id = &auth_data[55..55 + id_len];
    let cose_in_vector = &auth_data[55 + id_len..];
    assert_eq!(
        aaguid.as_slice(),
        hex_at(&json, &["registration", "aaguid"])
    );
    assert_eq!(
        credential_id,
        hex_at(&json, &["registration", "credential_id"])
    );

    // 1. Our COSE_Key encoding of the public key.
    let cose = key.public_cose_key();
    assert_eq!(
        hex::encode(cbor::to_vec(&cose)),
        hex::encode(cose_in_vector),
        "{name}: COSE public key"
    );
    checked.push(format!("COSE key ({} bytes)", cose_in_vector.len()));

    // 2. Registration authData rebuilt byte for byte.
    let rp_hash = rp_id_hash(rp_id);
    assert_eq!(rp_hash.as_slice(), &auth_data[..32], "{name}: rpIdHash");
    let rebuilt = authenticator_data(
        &rp_hash,
        flags,
        counter,
        Some((&aaguid, credential_id, &cose)),
        None,
    );
    assert_eq!(
        hex::encode(&rebuilt),
        hex::encode(&auth_data),
        "{name}: registration authData"
    );
    checked.push(format!("registration authData (flags 0x{flags:02x})"));

    // 3. Assertion authData rebuilt.
    let assertion_auth_data = hex_at(&json, &["authentication", "authenticator_data"]);
    assert_eq!(assertion_auth_data.len(), 37);
    let assertion_flags = assertion_auth_data[32];
    let assertion_counter = u32::from_be_bytes(assertion_auth_data[33..37].try_into().unwrap());
    let rebuilt = authenticator_data(&rp_hash, assertion_flags, assertion_counter, None, None);
    assert_eq!(
        hex::encode(&rebuilt),
        hex::encode(&assertion_auth_data),
        "{name}: assertion authData"
    );
    checked.push(format!(
        "assertion authData (flags 0x{assertion_flags:02x})"
    ));

    // 4. Assertion signature: ES256 is RFC 6979 deterministic, Ed25519 deterministic by
    //    definition, so both compare byte for byte.
    let client_data_hash = Sha256::digest(hex_at(&json, &["authentication", "client_data_json"]));
    assert_eq!(
        client_data_hash.as_slice(),
        hex_at(&json, &["decoded", "authentication", "client_data_hash"])
    );
    let signature = key
        .sign(&concat(&assertion_auth_data, &client_data_hash))
        .unwrap();
    assert_eq!(
        hex::encode(signature),
        hex::encode(hex_at(&json, &["authentication", "signature"])),
        "{name}: assertion signature"
    );
    checked.push(format!("assertion signature ({algorithm:?})"));

    // 5. The attestation statement.
    let registration_cdh = Sha256::digest(hex_at(&json, &["registration", "client_data_json"]));
    let signed = concat(&auth_data, &registration_cdh);
    assert_eq!(
        signed,
        hex_at(
            &json,
            &["decoded", "registration", "attestation_signed_data"]
        )
    );
    match (fmt.as_str(), member(statement, "x5c")) {
        ("none", _) => {
            assert!(
                statement.as_map().unwrap().is_empty(),
                "{name}: none attStmt is {{}}"
            );
            checked.push("attStmt none = {}".to_owned());
        }
        ("packed", None) => {
            // Self attestation: signed by the credential key itself.
            assert_eq!(
                member(statement, "alg"),
                Some(&Value::Integer(algorithm.cose().into()))
            );
            let sig = member(statement, "sig").unwrap().as_bytes().unwrap();
            assert_eq!(
                hex::encode(key.sign(&signed).unwrap()),
                hex::encode(sig),
                "{name}: self-attestation signature"
            );
            checked.push("self-attestation signature".to_owned());
        }
        ("packed", Some(x5c)) => {
            // Full attestation: always a P-256 attestation key (alg -7), even for Ed25519
            // credentials.
            assert_eq!(member(statement, "alg"), Some(&Value::Integer((-7).into())));
            let attestation_secret: [u8; 32] =
                hex_at(&json, &["registration", "attestation_private_key"])
                    .try_into()
                    .unwrap();
            let attestation_key =
                PrivateKey::from_secret(Algorithm::Es256, &attestation_secret).unwrap();
            let sig = member(statement, "sig").unwrap().as_bytes().unwrap();
            assert_eq!(
                hex::encode(attestation_key.sign(&signed).unwrap()),
                hex::encode(sig),
                "{name}: packed attestation signature"
            );
            // The leaf certificate carries the attestation public key (04 ‖ x ‖ y).
            let leaf = x5c.as_array().unwrap()[0].as_bytes().unwrap();
            assert_eq!(
                leaf,
                &hex_at_index(&json, &["decoded", "registration", "att_stmt", "x5c"], 0)[..]
            );
            let public = attestation_key.public_cose_key();
            let coordinate = |label: i64| {
                public
                    .as_map()
                    .unwrap()
                    .iter()
                    .find(|(k, _)| *k == Value::Integer(label.into()))
                    .unwrap()
                    .1
                    .as_bytes()
                    .unwrap()
                    .clone()
            };
            let point = [&[0x04][..], &coordinate(-2), &coordinate(-3)].concat();
            assert!(
                leaf.windows(point.len()).any(|w| w == point.as_slice()),
                "{name}: x5c[0] does not carry the attestation public key"
            );
            checked.push("packed attestation signature (x5c attestation key)".to_owned());
        }
        (other, _) => panic!("{name}: unexpected fmt {other}"),
    }

    println!("w3c {name}: checked {}", checked.join(", "));
    checked
}

/// A hex item of an array member, by path and index.
fn hex_at_index(json: &Json, path: &[&str], index: usize) -> Vec<u8> {
    let value = path.iter().fold(json, |v, key| &v[*key]);
    hex::decode(value[index].as_str().unwrap()).unwrap()
}

#[test]
fn packed_self_es256() {
    let checked = check("packed-self-es256");
    assert!(checked.iter().any(|c| c == "self-attestation signature"));
    assert_eq!(checked.len(), 5);
}

#[test]
fn packed_es256() {
    let checked = check("packed-es256");
    assert!(
        checked
            .iter()
            .any(|c| c.starts_with("packed attestation signature"))
    );
    assert_eq!(checked.len(), 5);
}

#[test]
fn packed_ed25519() {
    let checked = check("packed-ed25519");
    assert!(checked.iter().any(|c| c == "assertion signature (EdDsa)"));
    assert!(
        checked
            .iter()
            .any(|c| c.starts_with("packed attestation signature"))
    );
    assert_eq!(checked.len(), 5);
}

#[test]
fn none_es256() {
    let checked = check("none-es256");
    assert!(checked.iter().any(|c| c == "attStmt none = {}"));
    assert_eq!(checked.len(), 5);
}

/// Every W3C file is either checked above or listed as not applicable, so a file added later
/// is not silently ignored.
#[test]
fn every_w3c_file_is_accounted_for() {
    let mut files: Vec<String> = std::fs::read_dir(w3c_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut known: Vec<String> = CHECKED
        .iter()
        .copied()
        .chain(NOT_APPLICABLE.iter().map(|(name, _)| *name))
        .map(str::to_owned)
        .collect();
    known.sort();
    assert_eq!(files, known);
    println!("w3c vectors checked: {}", CHECKED.join(", "));
    for (name, why) in NOT_APPLICABLE {
        println!("w3c vector not applicable: {name} ({why})");
    }
}
