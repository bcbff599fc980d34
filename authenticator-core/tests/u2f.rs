//! CTAP1/U2F (`Authenticator::process_u2f`): APDU framing in both encodings, every status word,
//! registration and authentication checked with independent verifiers (RustCrypto's p256 and
//! x509-cert's certificate parser), counters, and interoperability with CTAP2 both ways.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed expectation should stop the test"
)]

mod common;

use authenticator_core::cbor::Value;
use authenticator_core::platform::{PresenceKind, PresenceOutcome, PresencePurpose, Store};
use authenticator_core::testing::PresenceCall;
use authenticator_core::{
    AttestationMode, BatchAttestation, Config, CounterMode, StatusCode, block_on,
};
use common::*;
use p256::ecdsa::signature::Verifier;
use sha2::Digest;
use x509_cert::der::{Decode, Encode};

const REGISTER: u8 = 0x01;
const AUTHENTICATE: u8 = 0x02;
const VERSION: u8 = 0x03;

const CHECK_ONLY: u8 = 0x07;
const ENFORCE: u8 = 0x03;
const DONT_ENFORCE: u8 = 0x08;

const SW_NO_ERROR: u16 = 0x9000;
const SW_CONDITIONS_NOT_SATISFIED: u16 = 0x6985;
const SW_WRONG_DATA: u16 = 0x6A80;
const SW_WRONG_LENGTH: u16 = 0x6700;
const SW_CLA_NOT_SUPPORTED: u16 = 0x6E00;
const SW_INS_NOT_SUPPORTED: u16 = 0x6D00;

const RP_ID: &str = "example.com";

// ---------------------------------------------------------------- helpers

/// Extended encoding as python-fido2 and libfido2 send it: `00 ‖ Lc (2)`, data, `Le (2) = 0`.
fn extended(ins: u8, p1: u8, data: &[u8]) -> Vec<u8> {
    let mut apdu = vec![0x00, ins, p1, 0x00, 0x00];
    apdu.extend(u16::try_from(data.len()).unwrap().to_be_bytes());
    apdu.extend(data);
    apdu.extend([0x00, 0x00]);
    apdu
}

/// Short encoding: `Lc (1)` when there is data, and an optional one-byte Le.
fn short(ins: u8, p1: u8, data: &[u8], le: Option<u8>) -> Vec<u8> {
    let mut apdu = vec![0x00, ins, p1, 0x00];
    if !data.is_empty() {
        apdu.push(u8::try_from(data.len()).unwrap());
        apdu.extend(data);
    }
    apdu.extend(le);
    apdu
}

/// Sends an APDU; returns the response data and the status word.
fn u2f(device: &mut Device, apdu: &[u8]) -> (Vec<u8>, u16) {
    let mut response = block_on(device.process_u2f(apdu));
    assert!(response.len() >= 2, "no status word: {response:02x?}");
    let sw = response.split_off(response.len() - 2);
    let sw = u16::from_be_bytes([sw[0], sw[1]]);
    if sw != SW_NO_ERROR {
        assert!(
            response.is_empty(),
            "data with SW {sw:04X}: {response:02x?}"
        );
    }
    (response, sw)
}

fn sw(device: &mut Device, apdu: &[u8]) -> u16 {
    u2f(device, apdu).1
}

fn application(rp_id: &str) -> [u8; 32] {
    sha2::Sha256::digest(rp_id.as_bytes()).into()
}

fn challenge(n: u8) -> [u8; 32] {
    sha2::Sha256::digest([0xC0, n]).into()
}

fn register_data(challenge: &[u8; 32], application: &[u8; 32]) -> Vec<u8> {
    [&challenge[..], &application[..]].concat()
}

fn authenticate_data(challenge: &[u8; 32], application: &[u8; 32], key_handle: &[u8]) -> Vec<u8> {
    let mut data = register_data(challenge, application);
    data.push(u8::try_from(key_handle.len()).unwrap());
    data.extend(key_handle);
    data
}

/// The length of the DER TLV at the start of `bytes`.
fn der_len(bytes: &[u8]) -> usize {
    match bytes[1] {
        n @ 0..=0x7F => 2 + usize::from(n),
        0x81 => 3 + usize::from(bytes[2]),
        0x82 => 4 + usize::from(u16::from_be_bytes([bytes[2], bytes[3]])),
        other => panic!("unexpected DER length byte {other:#04x}"),
    }
}

#[derive(Debug, Clone)]
struct Registration {
    public_key: Vec<u8>,
    key_handle: Vec<u8>,
    certificate: Vec<u8>,
    signature: Vec<u8>,
}

fn parse_registration(data: &[u8]) -> Registration {
    assert_eq!(data[0], 0x05, "reserved byte");
    let public_key = data[1..66].to_vec();
    assert_eq!(public_key[0], 0x04, "uncompressed point");
    let key_handle_len = usize::from(data[66]);
    let key_handle = data[67..67 + key_handle_len].to_vec();
    let rest = &data[67 + key_handle_len..];
    let certificate_len = der_len(rest);
    let certificate = rest[..certificate_len].to_vec();
    let signature = rest[certificate_len..].to_vec();
    // The signature is one DER ECDSA-Sig-Value and nothing follows it.
    assert_eq!(der_len(&signature), signature.len());
    Registration {
        public_key,
        key_handle,
        certificate,
        signature,
    }
}

fn verify_p256(sec1_point: &[u8], message: &[u8], der_signature: &[u8]) {
    let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(sec1_point).unwrap();
    let signature = p256::ecdsa::DerSignature::from_bytes(der_signature).unwrap();
    key.verify(message, &signature)
        .expect("P-256 signature verifies");
}

/// The certificate's subject public key (a SEC1 point).
fn certificate_key(der: &[u8]) -> Vec<u8> {
    let certificate = x509_cert::Certificate::from_der(der).expect("the certificate parses");
    certificate
        .tbs_certificate()
        .subject_public_key_info()
        .subject_public_key
        .raw_bytes()
        .to_vec()
}

/// Checks the registration signature over 0x00 ‖ application ‖ challenge ‖ key handle ‖
/// public key with the key of the certificate that came with it.
fn verify_registration(registration: &Registration, application: &[u8; 32], challenge: &[u8; 32]) {
    let mut signed = vec![0x00];
    signed.extend(application);
    signed.extend(challenge);
    signed.extend(&registration.key_handle);
    signed.extend(&registration.public_key);
    verify_p256(
        &certificate_key(&registration.certificate),
        &signed,
        &registration.signature,
    );
}

fn u2f_register(device: &mut Device, rp_id: &str) -> Registration {
    let (application, challenge) = (application(rp_id), challenge(1));
    let (data, status) = u2f(
        device,
        &extended(REGISTER, 0x00, &register_data(&challenge, &application)),
    );
    assert_eq!(status, SW_NO_ERROR);
    let registration = parse_registration(&data);
    verify_registration(&registration, &application, &challenge);
    registration
}

#[derive(Debug)]
struct Signed {
    user_presence: u8,
    counter: u32,
}

/// U2F_AUTHENTICATE that must succeed; checks the signature over application ‖ UP ‖ counter ‖
/// challenge with `public_key` (SEC1).
fn u2f_authenticate(
    device: &mut Device,
    p1: u8,
    rp_id: &str,
    key_handle: &[u8],
    public_key: &[u8],
) -> Signed {
    let (application, challenge) = (application(rp_id), challenge(2));
    let (data, status) = u2f(
        device,
        &extended(
            AUTHENTICATE,
            p1,
            &authenticate_data(&challenge, &application, key_handle),
        ),
    );
    assert_eq!(status, SW_NO_ERROR);
    let mut signed = application.to_vec();
    signed.extend(&data[..5]);
    signed.extend(challenge);
    verify_p256(public_key, &signed, &data[5..]);
    assert_eq!(der_len(&data[5..]), data.len() - 5);
    Signed {
        user_presence: data[0],
        counter: u32::from_be_bytes(data[1..5].try_into().unwrap()),
    }
}

/// A COSE EC2 key as SEC1.
fn cose_to_sec1(cose: &Value) -> Vec<u8> {
    let mut point = vec![0x04];
    point.extend(bytes_of(member(cose, -2).unwrap()));
    point.extend(bytes_of(member(cose, -3).unwrap()));
    point
}

fn presence_calls(device: &Device) -> Vec<PresenceCall> {
    device.platform().presence.calls.clone()
}

const ES256: i64 = -7;
const EDDSA: i64 = -8;

fn rk(params: Params) -> Params {
    with(params, 7, tmap(&[("rk", Value::Bool(true))]))
}

// ---------------------------------------------------------------- U2F_VERSION and framing

#[test]
fn version_in_every_encoding() {
    let mut device = emulator();
    for apdu in [
        vec![0x00, VERSION, 0x00, 0x00],                   // case 1
        vec![0x00, VERSION, 0x00, 0x00, 0x00],             // case 2S, Le = 256
        vec![0x00, VERSION, 0x00, 0x00, 0x00, 0x00, 0x00], // case 2E, Le = 65536
        extended(VERSION, 0x00, &[]),                      // python-fido2: Lc 0, then Le
    ] {
        assert_eq!(
            u2f(&mut device, &apdu),
            (b"U2F_V2".to_vec(), SW_NO_ERROR),
            "{apdu:02x?}"
        );
    }
    // P1 and P2 are ignored.
    assert_eq!(
        u2f(&mut device, &[0x00, VERSION, 0x12, 0x34]),
        (b"U2F_V2".to_vec(), SW_NO_ERROR)
    );
}

#[test]
fn header_errors_in_order_length_cla_ins() {
    let mut device = emulator();
    for short_header in [&[][..], &[0x00], &[0x00, 0x03], &[0x00, 0x03, 0x00]] {
        assert_eq!(sw(&mut device, short_header), SW_WRONG_LENGTH);
    }
    for cla in [0x01, 0x80, 0xFF] {
        assert_eq!(
            sw(&mut device, &[cla, VERSION, 0x00, 0x00]),
            SW_CLA_NOT_SUPPORTED
        );
        // CLA is checked before INS.
        assert_eq!(
            sw(&mut device, &[cla, 0x55, 0x00, 0x00]),
            SW_CLA_NOT_SUPPORTED
        );
    }
    for ins in [0x00, 0x04, 0x10, 0x40, 0xBF, 0xC0, 0xFF] {
        assert_eq!(
            sw(&mut device, &[0x00, ins, 0x00, 0x00]),
            SW_INS_NOT_SUPPORTED,
            "INS {ins:#04x}"
        );
        // INS is checked before the framing of the lengths.
        assert_eq!(
            sw(&mut device, &[0x00, ins, 0x00, 0x00, 0x05]),
            SW_INS_NOT_SUPPORTED
        );
    }
}

#[test]
fn lengths_that_do_not_add_up_are_wrong_length() {
    let mut device = emulator();
    let data = register_data(&challenge(1), &application(RP_ID));
    let good = extended(REGISTER, 0, &data);
    for bad in [
        good[..good.len() - 1].to_vec(), // Le cut short
        [&good[..], &[0x00]].concat(),   // a byte too many
        good[..good.len() - 3].to_vec(), // data cut short
        short(REGISTER, 0, &data, None)[..67].to_vec(),
        [&short(REGISTER, 0, &data, Some(0))[..], &[0x00]].concat(),
        vec![0x00, REGISTER, 0x00, 0x00, 0x00, 0x01], // an Lc of zero is not short form
    ] {
        assert_eq!(sw(&mut device, &bad), SW_WRONG_LENGTH, "{bad:02x?}");
    }
    // Request data of the wrong size for the instruction.
    assert_eq!(
        sw(&mut device, &extended(VERSION, 0, &[0x01])),
        SW_WRONG_LENGTH
    );
    for len in [0, 1, 32, 63, 65, 200] {
        assert_eq!(
            sw(&mut device, &extended(REGISTER, 0, &vec![0xAB; len])),
            SW_WRONG_LENGTH,
            "register with {len} bytes"
        );
    }
    let handle = [0x01; 64];
    let mut authenticate = authenticate_data(&challenge(1), &application(RP_ID), &handle);
    for cut in [0, 32, 64] {
        assert_eq!(
            sw(
                &mut device,
                &extended(AUTHENTICATE, ENFORCE, &authenticate[..cut])
            ),
            SW_WRONG_LENGTH,
            "authenticate with {cut} bytes"
        );
    }
    // The key handle length byte disagrees with the data.
    authenticate[64] = 63;
    assert_eq!(
        sw(&mut device, &extended(AUTHENTICATE, ENFORCE, &authenticate)),
        SW_WRONG_LENGTH
    );
    authenticate[64] = 65;
    assert_eq!(
        sw(&mut device, &extended(AUTHENTICATE, ENFORCE, &authenticate)),
        SW_WRONG_LENGTH
    );
    // Nothing asked the user.
    assert!(presence_calls(&device).is_empty());
}

// ---------------------------------------------------------------- U2F_REGISTER

#[test]
fn register_in_both_encodings_verifies_with_the_certificate_key() {
    let mut device = emulator();
    let (application, challenge) = (application(RP_ID), challenge(1));
    let data = register_data(&challenge, &application);
    for (apdu, encoding) in [
        (extended(REGISTER, 0x00, &data), "extended with Le"),
        (
            [
                &[0x00, REGISTER, 0x00, 0x00, 0x00, 0x00, 0x40][..],
                &data[..],
            ]
            .concat(),
            "extended without Le",
        ),
        (short(REGISTER, 0x00, &data, None), "short"),
        (short(REGISTER, 0x00, &data, Some(0x00)), "short with Le"),
        (extended(REGISTER, 0x03, &data), "P1 0x03, as Chrome sends"),
    ] {
        let (response, status) = u2f(&mut device, &apdu);
        assert_eq!(status, SW_NO_ERROR, "{encoding}");
        let registration = parse_registration(&response);
        assert_eq!(registration.key_handle.len(), 64, "{encoding}");
        verify_registration(&registration, &application, &challenge);
    }
    let calls = presence_calls(&device);
    assert_eq!(calls.len(), 5);
    for call in calls {
        assert_eq!(
            call,
            PresenceCall {
                kind: PresenceKind::UserPresence,
                purpose: PresencePurpose::U2fRegister,
                rp_id: None,
            }
        );
    }
}

#[test]
fn the_device_certificate_is_a_self_signed_v3_certificate() {
    use x509_cert::certificate::Version;
    use x509_cert::ext::pkix::BasicConstraints;
    let mut device = emulator();
    let registration = u2f_register(&mut device, RP_ID);
    let certificate = x509_cert::Certificate::from_der(&registration.certificate).unwrap();
    // Canonical DER: re-encoding gives the same bytes.
    assert_eq!(certificate.to_der().unwrap(), registration.certificate);
    let tbs = certificate.tbs_certificate();
    assert_eq!(tbs.version(), Version::V3);
    assert_eq!(tbs.subject().to_string(), "CN=Fidelio U2F");
    assert_eq!(tbs.issuer().to_string(), "CN=Fidelio U2F");
    assert_eq!(
        tbs.validity().not_before.to_string(),
        "2024-01-01T00:00:00Z"
    );
    assert_eq!(tbs.validity().not_after.to_string(), "9999-12-31T23:59:59Z");
    let ecdsa_with_sha256 = "1.2.840.10045.4.3.2";
    assert_eq!(
        certificate.signature_algorithm().oid.to_string(),
        ecdsa_with_sha256
    );
    assert_eq!(tbs.signature().oid.to_string(), ecdsa_with_sha256);
    assert!(certificate.signature_algorithm().parameters.is_none());
    let spki = tbs.subject_public_key_info();
    assert_eq!(spki.algorithm.oid.to_string(), "1.2.840.10045.2.1");
    let serial = tbs.serial_number().as_bytes();
    assert_eq!(serial.len(), 16);
    assert!(serial[0] & 0x80 == 0, "positive serial");
    let (critical, constraints) = tbs.get_extension::<BasicConstraints>().unwrap().unwrap();
    assert!(critical);
    assert!(!constraints.ca);
    // Self-signed: the signature over the TBS verifies with the subject key.
    verify_p256(
        spki.subject_public_key.raw_bytes(),
        &tbs.to_der().unwrap(),
        certificate.signature().raw_bytes(),
    );
    // The attestation key is not the credential key.
    assert_ne!(
        spki.subject_public_key.raw_bytes(),
        &registration.public_key[..]
    );
}

#[test]
fn the_device_attestation_key_is_made_once_and_dies_with_a_reset() {
    let mut device = emulator();
    assert_eq!(device.platform().store.get(b"m/u2f-attestation"), Ok(None));
    let first = u2f_register(&mut device, RP_ID);
    // The scalar, then the certificate made for it once.
    let stored = device
        .platform()
        .store
        .get(b"m/u2f-attestation")
        .unwrap()
        .unwrap();
    assert_eq!(stored[32..], first.certificate);
    let point = authenticator_core::credential::PrivateKey::from_secret(
        authenticator_core::credential::Algorithm::Es256,
        stored[..32].try_into().unwrap(),
    )
    .unwrap()
    .p256_public_point()
    .unwrap();
    assert_eq!(certificate_key(&first.certificate), point);
    let second = u2f_register(&mut device, "other.example");
    assert_eq!(first.certificate, second.certificate);
    assert_ne!(first.key_handle, second.key_handle);
    assert_ne!(first.public_key, second.public_key);

    assert_eq!(send(&mut device, &[0x07]).0, 0x00, "authenticatorReset");
    assert_eq!(device.platform().store.get(b"m/u2f-attestation"), Ok(None));
    let after = u2f_register(&mut device, RP_ID);
    assert_ne!(after.certificate, first.certificate);
    // And the old key handle is gone with the master key.
    assert_eq!(
        sw(
            &mut device,
            &extended(
                AUTHENTICATE,
                CHECK_ONLY,
                &authenticate_data(&challenge(1), &application(RP_ID), &first.key_handle)
            )
        ),
        SW_WRONG_DATA
    );
}

#[test]
fn batch_attestation_signs_registrations_with_the_batch_key_and_leaf() {
    let batch_secret = [0x11u8; 32];
    let leaf = vec![0x30, 0x03, 0x02, 0x01, 0x01];
    {
        let mut config = Config::security_key();
        config.attestation = AttestationMode::Batch(BatchAttestation {
            private_key: zeroize::Zeroizing::new(batch_secret),
            certificates: vec![leaf.clone(), vec![0x30, 0x03, 0x02, 0x01, 0x02]],
        });
        let mut device = device(config);
        let (application, challenge) = (application(RP_ID), challenge(3));
        let (data, status) = u2f(
            &mut device,
            &extended(REGISTER, 0, &register_data(&challenge, &application)),
        );
        assert_eq!(status, SW_NO_ERROR);
        let registration = parse_registration(&data);
        assert_eq!(registration.certificate, leaf, "the leaf, not the chain");
        let batch_point = authenticator_core::credential::PrivateKey::from_secret(
            authenticator_core::credential::Algorithm::Es256,
            &batch_secret,
        )
        .unwrap()
        .p256_public_point()
        .unwrap();
        let mut signed = vec![0x00];
        signed.extend(application);
        signed.extend(challenge);
        signed.extend(&registration.key_handle);
        signed.extend(&registration.public_key);
        verify_p256(&batch_point, &signed, &registration.signature);
        // No device attestation key was made.
        assert_eq!(device.platform().store.get(b"m/u2f-attestation"), Ok(None));
    }
}

#[test]
fn attestation_none_still_attests_u2f_with_the_device_key() {
    let mut device = device(Config::synced_passkey());
    let registration = u2f_register(&mut device, RP_ID);
    assert!(
        device
            .platform()
            .store
            .get(b"m/u2f-attestation")
            .unwrap()
            .is_some()
    );
    assert!(!registration.certificate.is_empty());
}

#[test]
fn register_without_presence_is_conditions_not_satisfied() {
    for outcome in [
        PresenceOutcome::Denied,
        PresenceOutcome::TimedOut,
        PresenceOutcome::Cancelled,
    ] {
        let mut device = emulator();
        device.platform_mut().presence.push(outcome);
        let apdu = extended(
            REGISTER,
            0,
            &register_data(&challenge(1), &application(RP_ID)),
        );
        assert_eq!(
            sw(&mut device, &apdu),
            SW_CONDITIONS_NOT_SATISFIED,
            "{outcome:?}"
        );
        // The client polls; the next try gets the touch.
        let (data, status) = u2f(&mut device, &apdu);
        assert_eq!(status, SW_NO_ERROR);
        parse_registration(&data);
    }
}

// ---------------------------------------------------------------- U2F_AUTHENTICATE

#[test]
fn authenticate_enforce_and_dont_enforce() {
    let mut device = emulator();
    let registration = u2f_register(&mut device, RP_ID);
    let before = presence_calls(&device).len();

    let first = u2f_authenticate(
        &mut device,
        ENFORCE,
        RP_ID,
        &registration.key_handle,
        &registration.public_key,
    );
    assert_eq!(first.user_presence, 0x01);
    let calls = presence_calls(&device);
    assert_eq!(calls.len(), before + 1);
    assert_eq!(calls[before].purpose, PresencePurpose::U2fAuthenticate);
    assert_eq!(calls[before].kind, PresenceKind::UserPresence);

    let silent = u2f_authenticate(
        &mut device,
        DONT_ENFORCE,
        RP_ID,
        &registration.key_handle,
        &registration.public_key,
    );
    assert_eq!(silent.user_presence, 0x00);
    assert_eq!(
        presence_calls(&device).len(),
        before + 1,
        "no presence test"
    );
    assert_eq!(silent.counter, first.counter + 1);
}

#[test]
fn authenticate_in_the_short_encoding() {
    let mut device = emulator();
    let registration = u2f_register(&mut device, RP_ID);
    let (application, challenge) = (application(RP_ID), challenge(9));
    let data = authenticate_data(&challenge, &application, &registration.key_handle);
    for le in [None, Some(0x00)] {
        let (response, status) = u2f(&mut device, &short(AUTHENTICATE, ENFORCE, &data, le));
        assert_eq!(status, SW_NO_ERROR);
        let mut signed = application.to_vec();
        signed.extend(&response[..5]);
        signed.extend(challenge);
        verify_p256(&registration.public_key, &signed, &response[5..]);
    }
}

#[test]
fn check_only_tells_ours_from_not_ours_without_asking() {
    let mut device = emulator();
    let registration = u2f_register(&mut device, RP_ID);
    let calls = presence_calls(&device).len();
    let check = |device: &mut Device, rp_id: &str, handle: &[u8]| {
        sw(
            device,
            &extended(
                AUTHENTICATE,
                CHECK_ONLY,
                &authenticate_data(&challenge(4), &application(rp_id), handle),
            ),
        )
    };
    assert_eq!(
        check(&mut device, RP_ID, &registration.key_handle),
        SW_CONDITIONS_NOT_SATISFIED
    );
    assert_eq!(
        check(&mut device, "other.example", &registration.key_handle),
        SW_WRONG_DATA,
        "another application"
    );
    let mut tampered = registration.key_handle.clone();
    tampered[20] ^= 0x01;
    assert_eq!(check(&mut device, RP_ID, &tampered), SW_WRONG_DATA);
    assert_eq!(check(&mut device, RP_ID, &[]), SW_WRONG_DATA);
    assert_eq!(check(&mut device, RP_ID, &[0xAB; 255]), SW_WRONG_DATA);
    // Another device's key handle.
    let mut other = device_with_seed(99);
    let foreign = u2f_register(&mut other, RP_ID);
    assert_eq!(
        check(&mut device, RP_ID, &foreign.key_handle),
        SW_WRONG_DATA
    );
    assert_eq!(presence_calls(&device).len(), calls);
}

fn device_with_seed(seed: u64) -> Device {
    authenticator_core::Authenticator::new(
        authenticator_core::testing::TestPlatform::new(seed),
        Config::security_key(),
    )
}

#[test]
fn unknown_key_handles_are_wrong_data_for_every_control_byte() {
    let mut device = emulator();
    let data = authenticate_data(&challenge(5), &application(RP_ID), &[0x01; 64]);
    for p1 in [CHECK_ONLY, ENFORCE, DONT_ENFORCE] {
        assert_eq!(
            sw(&mut device, &extended(AUTHENTICATE, p1, &data)),
            SW_WRONG_DATA
        );
    }
    assert!(presence_calls(&device).is_empty(), "never asks the user");
}

#[test]
fn an_unknown_control_byte_is_wrong_data() {
    let mut device = emulator();
    let registration = u2f_register(&mut device, RP_ID);
    let calls = presence_calls(&device).len();
    let data = authenticate_data(&challenge(6), &application(RP_ID), &registration.key_handle);
    for p1 in [0x00, 0x01, 0x04, 0x09, 0x83, 0xFF] {
        assert_eq!(
            sw(&mut device, &extended(AUTHENTICATE, p1, &data)),
            SW_WRONG_DATA,
            "P1 {p1:#04x}"
        );
    }
    assert_eq!(presence_calls(&device).len(), calls);
}

#[test]
fn authenticate_without_presence_is_conditions_not_satisfied() {
    let mut device = emulator();
    let registration = u2f_register(&mut device, RP_ID);
    let data = authenticate_data(&challenge(7), &application(RP_ID), &registration.key_handle);
    for outcome in [
        PresenceOutcome::Denied,
        PresenceOutcome::TimedOut,
        PresenceOutcome::Cancelled,
    ] {
        device.platform_mut().presence.push(outcome);
        assert_eq!(
            sw(&mut device, &extended(AUTHENTICATE, ENFORCE, &data)),
            SW_CONDITIONS_NOT_SATISFIED
        );
    }
    // Refused attempts sign nothing and so advance no counter.
    let signed = u2f_authenticate(
        &mut device,
        ENFORCE,
        RP_ID,
        &registration.key_handle,
        &registration.public_key,
    );
    assert_eq!(signed.counter, 1);
}

// ---------------------------------------------------------------- counters

#[test]
fn counters_follow_the_counter_mode() {
    for (mode, expected) in [
        (CounterMode::Global, [1, 2, 3]),
        (CounterMode::PerCredential, [1, 1, 2]),
        (CounterMode::AlwaysZero, [0, 0, 0]),
    ] {
        let mut config = Config::security_key();
        config.counter = mode;
        let mut device = device(config);
        let a = u2f_register(&mut device, RP_ID);
        let b = u2f_register(&mut device, RP_ID);
        let counters = [
            u2f_authenticate(&mut device, ENFORCE, RP_ID, &a.key_handle, &a.public_key).counter,
            u2f_authenticate(&mut device, ENFORCE, RP_ID, &b.key_handle, &b.public_key).counter,
            u2f_authenticate(&mut device, ENFORCE, RP_ID, &b.key_handle, &b.public_key).counter,
        ];
        assert_eq!(counters, expected, "{mode:?}");
    }
}

// ---------------------------------------------------------------- interoperability with CTAP2

#[test]
fn a_u2f_credential_signs_ctap2_assertions_for_its_rp() {
    for mode in [CounterMode::Global, CounterMode::PerCredential] {
        let mut config = Config::security_key();
        config.counter = mode;
        let mut device = device(config);
        let registration = u2f_register(&mut device, RP_ID);
        let first = u2f_authenticate(
            &mut device,
            ENFORCE,
            RP_ID,
            &registration.key_handle,
            &registration.public_key,
        );

        let (code, body) = send(
            &mut device,
            &request(2, get_assertion_params(RP_ID, &[&registration.key_handle])),
        );
        assert_eq!(code, 0);
        let body = body.unwrap();
        let credential = member(&body, 1).unwrap();
        assert_eq!(
            bytes_of(text_member(credential, "id").unwrap()),
            registration.key_handle
        );
        let auth_data_bytes = bytes_of(member(&body, 2).unwrap());
        let mut signed = auth_data_bytes.clone();
        signed.extend(client_data_hash(2));
        verify_p256(
            &registration.public_key,
            &signed,
            &bytes_of(member(&body, 3).unwrap()),
        );
        let auth_data = parse_auth_data(&auth_data_bytes);
        assert_eq!(auth_data.rp_id_hash, application(RP_ID));
        assert_eq!(auth_data.flags & 0x01, 0x01);
        // One counter for both protocols.
        assert_eq!(auth_data.sign_count, first.counter + 1, "{mode:?}");
        assert!(member(&body, 4).is_none(), "no user: not discoverable");

        // And back to U2F: the counter keeps going.
        let again = u2f_authenticate(
            &mut device,
            DONT_ENFORCE,
            RP_ID,
            &registration.key_handle,
            &registration.public_key,
        );
        assert_eq!(again.counter, auth_data.sign_count + 1);

        // Another RP does not see it; discovery does not find it.
        assert_eq!(
            send(
                &mut device,
                &request(
                    2,
                    get_assertion_params("other.example", &[&registration.key_handle])
                )
            )
            .0,
            StatusCode::NoCredentials.to_byte()
        );
        assert_eq!(
            send(&mut device, &request(2, get_assertion_params(RP_ID, &[]))).0,
            StatusCode::NoCredentials.to_byte()
        );
    }
}

#[test]
fn a_u2f_credential_is_excluded_by_ctap2_make_credential() {
    let mut device = emulator();
    let registration = u2f_register(&mut device, RP_ID);
    let params = make_credential_params(RP_ID, b"u1", &[ES256]);
    let exclude = Value::Array(vec![tmap(&[
        ("id", Value::Bytes(registration.key_handle.clone())),
        ("type", text("public-key")),
    ])]);
    assert_eq!(
        send(&mut device, &request(1, with(params, 5, exclude))).0,
        StatusCode::CredentialExcluded.to_byte()
    );
}

#[test]
fn a_ctap2_credential_answers_u2f_authenticate() {
    let mut device = emulator();
    let registered = register(&mut device, make_credential_params(RP_ID, b"u1", &[ES256]));
    let public_key = cose_to_sec1(&registered.public_key);
    let credential_id = registered.credential_id.clone();
    assert_eq!(
        sw(
            &mut device,
            &extended(
                AUTHENTICATE,
                CHECK_ONLY,
                &authenticate_data(&challenge(1), &application(RP_ID), &credential_id)
            )
        ),
        SW_CONDITIONS_NOT_SATISFIED
    );
    let signed = u2f_authenticate(&mut device, ENFORCE, RP_ID, &credential_id, &public_key);
    assert_eq!(signed.user_presence, 0x01);
    // makeCredential advanced the global counter to 1.
    assert_eq!(signed.counter, 2);

    // credProtect 2 (optional with a credential ID list) still works: U2F always names it.
    let protected = with(
        make_credential_params(RP_ID, b"u2", &[ES256]),
        6,
        tmap(&[("credProtect", int(2))]),
    );
    let registered = register(&mut device, protected);
    u2f_authenticate(
        &mut device,
        ENFORCE,
        RP_ID,
        &registered.credential_id,
        &cose_to_sec1(&registered.public_key),
    );
}

#[test]
fn credentials_u2f_cannot_use_are_wrong_data() {
    let mut device = emulator();
    let eddsa = register(&mut device, make_credential_params(RP_ID, b"u1", &[EDDSA]));
    let discoverable = register(
        &mut device,
        rk(make_credential_params(RP_ID, b"u2", &[ES256])),
    );
    let uv_required = register(
        &mut device,
        with(
            make_credential_params(RP_ID, b"u3", &[ES256]),
            6,
            tmap(&[("credProtect", int(3))]),
        ),
    );
    let calls = presence_calls(&device).len();
    for (name, id) in [
        ("EdDSA", &eddsa.credential_id),
        ("discoverable", &discoverable.credential_id),
        ("credProtect 3", &uv_required.credential_id),
    ] {
        for p1 in [CHECK_ONLY, ENFORCE, DONT_ENFORCE] {
            assert_eq!(
                sw(
                    &mut device,
                    &extended(
                        AUTHENTICATE,
                        p1,
                        &authenticate_data(&challenge(1), &application(RP_ID), id)
                    )
                ),
                SW_WRONG_DATA,
                "{name}, P1 {p1:#04x}"
            );
        }
    }
    assert_eq!(presence_calls(&device).len(), calls);
}

#[test]
fn a_u2f_message_ends_a_pending_get_next_assertion() {
    let mut device = emulator();
    for user in [b"u1", b"u2"] {
        register(
            &mut device,
            rk(make_credential_params(RP_ID, user, &[ES256])),
        );
    }
    let (code, body) = send(&mut device, &request(2, get_assertion_params(RP_ID, &[])));
    assert_eq!(code, 0);
    assert_eq!(member(&body.unwrap(), 5), Some(&int(2)));
    assert_eq!(sw(&mut device, &[0x00, VERSION, 0x00, 0x00]), SW_NO_ERROR);
    assert_eq!(
        send(&mut device, &[0x08]).0,
        StatusCode::NotAllowed.to_byte()
    );
}

#[test]
fn same_seed_same_bytes() {
    let run = || {
        let mut device = emulator();
        let register = extended(
            REGISTER,
            0,
            &register_data(&challenge(1), &application(RP_ID)),
        );
        let registered = block_on(device.process_u2f(&register));
        let registration = parse_registration(&registered[..registered.len() - 2]);
        let authenticated = block_on(device.process_u2f(&extended(
            AUTHENTICATE,
            ENFORCE,
            &authenticate_data(&challenge(2), &application(RP_ID), &registration.key_handle),
        )));
        (registered, authenticated)
    };
    assert_eq!(run(), run());
}

#[test]
fn always_uv_switches_u2f_off() {
    let mut config = authenticator_core::Config::security_key();
    config.always_uv = true;
    let mut device = device(config);
    assert_eq!(
        u2f(&mut device, &[0x00, VERSION, 0x00, 0x00]),
        (Vec::new(), 0x6986)
    );
    let info = send(&mut device, &[0x04]).1.unwrap();
    assert_eq!(
        member(&info, 1),
        Some(&Value::Array(vec![text("FIDO_2_0"), text("FIDO_2_1")])),
        "getInfo drops U2F_V2"
    );
}
