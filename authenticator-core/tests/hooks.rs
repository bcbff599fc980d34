//! The test-fault hooks (`authenticator_core::hooks`), checked with independent verifiers
//! (RustCrypto's p256 and ed25519-dalek): a flags override is signed (the signature verifies
//! over the altered authData), a corrupted signature is well-formed and does not verify, and a
//! counter rollback lowers only what is reported — in makeCredential, getAssertion,
//! getNextAssertion, U2F_REGISTER and U2F_AUTHENTICATE.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed expectation should stop the test"
)]

mod common;

use authenticator_core::cbor::Value;
use authenticator_core::{FlagsOverride, Hooks, block_on};
use common::*;
use p256::ecdsa::signature::Verifier;
use sha2::Digest;

const RP_ID: &str = "example.com";
const UP: u8 = 0x01;
const UV: u8 = 0x04;

/// Whether `signature` verifies over `message` with a COSE key (ES256 or EdDSA); panics when
/// the signature is not well-formed.
fn verifies(cose_key: &Value, message: &[u8], signature: &[u8]) -> bool {
    let alg = match member(cose_key, 3) {
        Some(Value::Integer(i)) => i64::try_from(*i).unwrap(),
        other => panic!("no alg: {other:?}"),
    };
    match alg {
        -7 => {
            let mut sec1 = vec![0x04];
            sec1.extend(bytes_of(member(cose_key, -2).unwrap()));
            sec1.extend(bytes_of(member(cose_key, -3).unwrap()));
            let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).unwrap();
            let signature = p256::ecdsa::DerSignature::from_bytes(signature)
                .expect("a well-formed DER ECDSA signature");
            key.verify(message, &signature).is_ok()
        }
        -8 => {
            let x: [u8; 32] = bytes_of(member(cose_key, -2).unwrap()).try_into().unwrap();
            let key = ed25519_dalek::VerifyingKey::from_bytes(&x).unwrap();
            assert_eq!(signature.len(), 64, "an Ed25519 signature is 64 bytes");
            let signature = ed25519_dalek::Signature::from_slice(signature).unwrap();
            key.verify_strict(message, &signature).is_ok()
        }
        other => panic!("unexpected alg {other}"),
    }
}

/// makeCredential without checking anything: the body.
fn make_credential(device: &mut Device, alg: i64, resident: bool) -> Value {
    let mut params = make_credential_params(RP_ID, b"user-1", &[alg]);
    if resident {
        params = with(params, 7, tmap(&[("rk", Value::Bool(true))]));
    }
    let (status, body) = send(device, &request(0x01, params));
    assert_eq!(status, 0);
    body.unwrap()
}

/// authData, COSE key and the self-attestation verdict of a makeCredential body.
fn attested(body: &Value) -> (Vec<u8>, Value, bool) {
    let auth_data = bytes_of(member(body, 2).unwrap());
    let key = parse_auth_data(&auth_data).public_key.unwrap();
    let statement = member(body, 3).unwrap();
    let signature = bytes_of(text_member(statement, "sig").unwrap());
    let mut message = auth_data.clone();
    message.extend(client_data_hash(1));
    let ok = verifies(&key, &message, &signature);
    (auth_data, key, ok)
}

/// getAssertion for the credential; authData and the signature verdict.
fn assert_with(device: &mut Device, id: &[u8], key: &Value) -> (Vec<u8>, bool) {
    let (status, body) = send(device, &request(0x02, get_assertion_params(RP_ID, &[id])));
    assert_eq!(status, 0);
    let body = body.unwrap();
    let auth_data = bytes_of(member(&body, 2).unwrap());
    let mut message = auth_data.clone();
    message.extend(client_data_hash(2));
    let ok = verifies(key, &message, &bytes_of(member(&body, 3).unwrap()));
    (auth_data, ok)
}

#[test]
fn hooks_are_off_by_default() {
    let device = emulator();
    assert_eq!(*device.hooks(), Hooks::default());
    assert!(!device.hooks().any());
}

#[test]
fn a_flags_override_is_signed_into_auth_data() {
    for alg in [-7, -8] {
        let mut device = emulator();
        device.hooks_mut().flags = Some(FlagsOverride {
            up: Some(false),
            uv: Some(true),
        });
        let body = make_credential(&mut device, alg, false);
        let (auth_data, key, ok) = attested(&body);
        let flags = parse_auth_data(&auth_data).flags;
        assert_eq!(flags & (UP | UV), UV, "UP cleared, UV set: {flags:#04x}");
        assert_ne!(flags & 0x40, 0, "AT untouched");
        assert!(ok, "the attestation signs the altered flags");
        let id = parse_auth_data(&auth_data).credential_id.unwrap();

        // getAssertion: only UV forced on; UP stays as it was (set).
        device.hooks_mut().flags = Some(FlagsOverride {
            up: None,
            uv: Some(true),
        });
        let (auth_data, ok) = assert_with(&mut device, &id, &key);
        assert_eq!(parse_auth_data(&auth_data).flags & (UP | UV), UP | UV);
        assert!(ok, "the assertion signs the altered flags");

        // Off again: as the authenticator set them.
        *device.hooks_mut() = Hooks::default();
        let (auth_data, ok) = assert_with(&mut device, &id, &key);
        assert_eq!(parse_auth_data(&auth_data).flags & (UP | UV), UP);
        assert!(ok);
    }
}

#[test]
fn a_corrupted_signature_is_well_formed_and_does_not_verify() {
    for alg in [-7, -8] {
        let mut device = emulator();
        device.hooks_mut().corrupt_signature = true;
        let body = make_credential(&mut device, alg, false);
        let (auth_data, key, ok) = attested(&body);
        assert!(
            !ok,
            "the packed attestation signature must not verify ({alg})"
        );
        let id = parse_auth_data(&auth_data).credential_id.unwrap();
        let (_, ok) = assert_with(&mut device, &id, &key);
        assert!(!ok, "the assertion signature must not verify ({alg})");
        device.hooks_mut().corrupt_signature = false;
        let (_, ok) = assert_with(&mut device, &id, &key);
        assert!(ok, "and verifies again once the hook is off ({alg})");
    }
}

#[test]
fn get_next_assertion_takes_the_hooks_in_force_when_it_runs() {
    let mut device = emulator();
    let mut keys = Vec::new();
    for user in [b"user-1".as_slice(), b"user-2"] {
        let params = with(
            make_credential_params(RP_ID, user, &[-7]),
            7,
            tmap(&[("rk", Value::Bool(true))]),
        );
        let registered = register(&mut device, params);
        keys.push((registered.credential_id, registered.public_key));
    }
    let (status, first) = send(
        &mut device,
        &request(0x02, get_assertion_params(RP_ID, &[])),
    );
    assert_eq!(status, 0);
    let first = first.unwrap();
    let key_for = |body: &Value| {
        let id = bytes_of(text_member(member(body, 1).unwrap(), "id").unwrap());
        keys.iter().find(|(k, _)| *k == id).unwrap().1.clone()
    };
    check_assertion(&first, &key_for(&first), &client_data_hash(2));
    device.hooks_mut().corrupt_signature = true;
    device.hooks_mut().counter_rollback = 100;
    let (status, next) = send(&mut device, &[0x08]);
    assert_eq!(status, 0);
    let next = next.unwrap();
    let auth_data = bytes_of(member(&next, 2).unwrap());
    let mut message = auth_data.clone();
    message.extend(client_data_hash(2));
    assert!(!verifies(
        &key_for(&next),
        &message,
        &bytes_of(member(&next, 3).unwrap())
    ));
    assert_eq!(
        parse_auth_data(&auth_data).sign_count,
        0,
        "rolled back, saturating"
    );
}

#[test]
fn a_counter_rollback_lowers_only_the_reported_counter() {
    let mut device = emulator();
    device.hooks_mut().counter_rollback = 1;
    let body = make_credential(&mut device, -7, false);
    let (auth_data, key, ok) = attested(&body);
    assert!(ok);
    // The global counter went to 1 for the registration; reported one lower.
    assert_eq!(parse_auth_data(&auth_data).sign_count, 0);
    let id = parse_auth_data(&auth_data).credential_id.unwrap();

    *device.hooks_mut() = Hooks::default();
    let (auth_data, ok) = assert_with(&mut device, &id, &key);
    assert!(ok);
    assert_eq!(parse_auth_data(&auth_data).sign_count, 2);
    let (auth_data, _) = assert_with(&mut device, &id, &key);
    assert_eq!(parse_auth_data(&auth_data).sign_count, 3);

    device.hooks_mut().counter_rollback = 2;
    let (auth_data, ok) = assert_with(&mut device, &id, &key);
    assert!(ok, "the rolled-back counter is signed");
    assert_eq!(parse_auth_data(&auth_data).sign_count, 2, "4 reported as 2");
    device.hooks_mut().counter_rollback = u32::MAX;
    let (auth_data, _) = assert_with(&mut device, &id, &key);
    assert_eq!(
        parse_auth_data(&auth_data).sign_count,
        0,
        "saturates at zero"
    );

    *device.hooks_mut() = Hooks::default();
    let (auth_data, _) = assert_with(&mut device, &id, &key);
    assert_eq!(
        parse_auth_data(&auth_data).sign_count,
        6,
        "the stored counter advanced as usual"
    );
}

// ---------------------------------------------------------------- U2F

fn u2f(device: &mut Device, apdu: &[u8]) -> (Vec<u8>, u16) {
    let mut response = block_on(device.process_u2f(apdu));
    let sw = response.split_off(response.len() - 2);
    (response, u16::from_be_bytes([sw[0], sw[1]]))
}

fn extended(ins: u8, p1: u8, data: &[u8]) -> Vec<u8> {
    let mut apdu = vec![0x00, ins, p1, 0x00, 0x00];
    apdu.extend(u16::try_from(data.len()).unwrap().to_be_bytes());
    apdu.extend(data);
    apdu.extend([0x00, 0x00]);
    apdu
}

fn der_len(bytes: &[u8]) -> usize {
    match bytes[1] {
        n @ 0..=0x7F => 2 + usize::from(n),
        0x81 => 3 + usize::from(bytes[2]),
        0x82 => 4 + usize::from(u16::from_be_bytes([bytes[2], bytes[3]])),
        other => panic!("unexpected DER length byte {other:#04x}"),
    }
}

fn p256_verifies(sec1: &[u8], message: &[u8], der: &[u8]) -> bool {
    let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(sec1).unwrap();
    let signature = p256::ecdsa::DerSignature::from_bytes(der).expect("well-formed DER");
    key.verify(message, &signature).is_ok()
}

fn certificate_key(der: &[u8]) -> Vec<u8> {
    use x509_cert::der::Decode;
    x509_cert::Certificate::from_der(der)
        .unwrap()
        .tbs_certificate()
        .subject_public_key_info()
        .subject_public_key
        .raw_bytes()
        .to_vec()
}

#[test]
fn u2f_takes_the_hooks_too() {
    let mut device = emulator();
    let application: [u8; 32] = sha2::Sha256::digest(RP_ID).into();
    let challenge = [0x11u8; 32];

    // U2F_REGISTER: a corrupted registration signature.
    device.hooks_mut().corrupt_signature = true;
    let (data, sw) = u2f(
        &mut device,
        &extended(0x01, 0, &[&challenge[..], &application[..]].concat()),
    );
    assert_eq!(sw, 0x9000);
    let public_key = data[1..66].to_vec();
    let handle_len = usize::from(data[66]);
    let key_handle = data[67..67 + handle_len].to_vec();
    let rest = &data[67 + handle_len..];
    let certificate = &rest[..der_len(rest)];
    let signature = &rest[der_len(rest)..];
    let mut signed = vec![0x00];
    signed.extend(application);
    signed.extend(challenge);
    signed.extend(&key_handle);
    signed.extend(&public_key);
    assert!(!p256_verifies(
        &certificate_key(certificate),
        &signed,
        signature
    ));

    // U2F_AUTHENTICATE: UP byte forced off, counter rolled back, signed consistently.
    device.hooks_mut().corrupt_signature = false;
    device.hooks_mut().counter_rollback = 1;
    device.hooks_mut().flags = Some(FlagsOverride {
        up: Some(false),
        uv: None,
    });
    let mut request = challenge.to_vec();
    request.extend(application);
    request.push(u8::try_from(key_handle.len()).unwrap());
    request.extend(&key_handle);
    let authenticate = |device: &mut Device| {
        let (data, sw) = u2f(device, &extended(0x02, 0x03, &request));
        assert_eq!(sw, 0x9000);
        let counter = u32::from_be_bytes(data[1..5].try_into().unwrap());
        let mut signed = application.to_vec();
        signed.extend(&data[..5]);
        signed.extend(challenge);
        (
            data[0],
            counter,
            p256_verifies(&public_key, &signed, &data[5..]),
        )
    };
    assert_eq!(authenticate(&mut device), (0x00, 0, true));
    device.hooks_mut().corrupt_signature = true;
    device.hooks_mut().flags = None;
    device.hooks_mut().counter_rollback = 0;
    assert_eq!(authenticate(&mut device), (0x01, 2, false));
    *device.hooks_mut() = Hooks::default();
    assert_eq!(authenticate(&mut device), (0x01, 3, true));
}
