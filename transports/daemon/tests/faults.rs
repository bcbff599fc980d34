//! Fault injection (`/v1/control/authenticator/{id}/faults`) against a real `serve_until`: for
//! each kind of fault, a CTAP client over the UDP lane (fidelio-client, and fidelio-webauthn's
//! WebAuthn client) sees what a faulty real key would give it — the status codes, signatures
//! that p256/ed25519-dalek reject, flags and counters as injected, attestation swapped, lost or
//! late HID reports — and count, removal, clearing, events and per-device isolation behave.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed expectation should stop the test"
)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use authenticator_core::cbor::{self, Value};
use authenticator_core::{AttestationMode, BatchAttestation, Config};
use fidelio_client::{CtapHidClient, Keepalive, KeepaliveAction, UdpTransport};
use fidelio_daemon::browser::{BrowserOptions, TokenFile};
use fidelio_daemon::presence::PresenceMode;
use fidelio_daemon::{ServeOptions, StateLocation};
use p256::ecdsa::signature::Verifier;
use serde_json::{Value as Json, json};
use sha2::{Digest, Sha256};

const TOKEN: &str = "fault-token-0123456789abcdef";
const DEVICE: &str = "/v1/control/authenticator/default";
const RP_ID: &str = "example.com";

const OK: u8 = 0x00;
const OPERATION_DENIED: u8 = 0x27;
const USER_ACTION_TIMEOUT: u8 = 0x2F;
const PIN_BLOCKED: u8 = 0x32;
const UV_INVALID: u8 = 0x3F;
const KEY_STORE_FULL: u8 = 0x28;
const SW_NO_ERROR: u16 = 0x9000;
const SW_CONDITIONS_NOT_SATISFIED: u16 = 0x6985;

// ---------------------------------------------------------------- the daemon and its API

struct Daemon {
    gateway: SocketAddr,
    udp: SocketAddr,
    _dir: tempfile::TempDir,
}

fn start(config: Config) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("gateway.json");
    let udp = common::serve_in_background(ServeOptions {
        config,
        state: StateLocation::Ephemeral,
        udp: SocketAddr::from(([127, 0, 0, 1], 0)),
        control: None,
        presence: PresenceMode::Auto,
        seed: None,
        log_ctap: false,
        uhid: false,
        usbip: None,
        browser: Some(BrowserOptions {
            address: SocketAddr::from(([127, 0, 0, 1], 0)),
            token: TOKEN.into(),
            token_file: Some(token_file.clone()),
            pin: None,
        }),
        event_log: None,
    });
    let gateway = TokenFile::read(&token_file)
        .unwrap()
        .url
        .strip_prefix("http://")
        .unwrap()
        .parse()
        .unwrap();
    Daemon {
        gateway,
        udp,
        _dir: dir,
    }
}

fn emulator() -> Config {
    let mut config = Config::security_key();
    config.reset_window_ms = None;
    config
}

fn http(address: SocketAddr, method: &str, path: &str, body: &str) -> (u16, Json) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(90)))
        .unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap();
    (status, serde_json::from_str(body).unwrap())
}

/// A control call that must succeed; its `ok` value.
fn control(daemon: &Daemon, method: &str, path: &str, body: &Json) -> Json {
    let text = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let (status, answer) = http(daemon.gateway, method, path, &text);
    assert_eq!(status, 200, "{method} {path} {text}: {answer}");
    answer["ok"].clone()
}

/// Injects faults on the default device; their IDs.
fn inject(daemon: &Daemon, faults: &Json) -> Vec<u64> {
    inject_on(daemon, "default", faults)
}

fn inject_on(daemon: &Daemon, device: &str, faults: &Json) -> Vec<u64> {
    let answer = control(
        daemon,
        "POST",
        &format!("/v1/control/authenticator/{device}/faults"),
        faults,
    );
    answer["faultIds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_u64().unwrap())
        .collect()
}

fn active_faults(daemon: &Daemon) -> Vec<Json> {
    control(daemon, "GET", &format!("{DEVICE}/faults"), &Json::Null)["faults"]
        .as_array()
        .unwrap()
        .clone()
}

fn fault_events(daemon: &Daemon) -> Vec<Json> {
    let answer = control(
        daemon,
        "GET",
        "/v1/control/events?after=0&timeout=0",
        &Json::Null,
    );
    answer["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["type"] == "faultInjected")
        .cloned()
        .collect()
}

// ---------------------------------------------------------------- CTAP over UDP

fn client(udp: SocketAddr) -> CtapHidClient<UdpTransport> {
    CtapHidClient::new(UdpTransport::connect(udp).unwrap())
}

/// A CTAP2 request; the status and the decoded body.
fn ctap(
    client: &mut CtapHidClient<UdpTransport>,
    command: u8,
    params: Option<Value>,
) -> (u8, Option<Value>) {
    let mut request = vec![command];
    if let Some(params) = params {
        cbor::encode(&params, &mut request);
    }
    let response = client.cbor(&request).unwrap();
    let body = (response.len() > 1).then(|| cbor::decode(&response[1..]).unwrap());
    (response[0], body)
}

fn member(value: &Value, key: i64) -> &Value {
    match value {
        Value::Map(entries) => entries
            .iter()
            .find(|(k, _)| *k == cbor::int(key))
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("no member {key}")),
        other => panic!("not a map: {other:?}"),
    }
}

fn text_member<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    match value {
        Value::Map(entries) => entries
            .iter()
            .find(|(k, _)| *k == cbor::text(key))
            .map(|(_, v)| v),
        _ => None,
    }
}

fn bytes(value: &Value) -> Vec<u8> {
    match value {
        Value::Bytes(bytes) => bytes.clone(),
        other => panic!("not bytes: {other:?}"),
    }
}

fn client_data_hash(n: u8) -> Vec<u8> {
    Sha256::digest([n]).to_vec()
}

fn make_credential(alg: i64, options: Option<Value>) -> Value {
    let mut entries = vec![
        (cbor::int(1), cbor::bytes(&client_data_hash(1))),
        (
            cbor::int(2),
            cbor::map(vec![(cbor::text("id"), cbor::text(RP_ID))]),
        ),
        (
            cbor::int(3),
            cbor::map(vec![
                (cbor::text("id"), cbor::bytes(b"user-1")),
                (cbor::text("name"), cbor::text("alice")),
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
    if let Some(options) = options {
        entries.push((cbor::int(7), options));
    }
    cbor::map(entries)
}

fn get_assertion(credential_id: &[u8]) -> Value {
    cbor::map(vec![
        (cbor::int(1), cbor::text(RP_ID)),
        (cbor::int(2), cbor::bytes(&client_data_hash(2))),
        (
            cbor::int(3),
            Value::Array(vec![cbor::map(vec![
                (cbor::text("id"), cbor::bytes(credential_id)),
                (cbor::text("type"), cbor::text("public-key")),
            ])]),
        ),
    ])
}

fn uv_option() -> Option<Value> {
    Some(cbor::map(vec![(cbor::text("uv"), Value::Bool(true))]))
}

/// What authData says.
#[derive(Debug)]
struct AuthData {
    flags: u8,
    sign_count: u32,
    credential: Option<(Vec<u8>, Value)>,
}

fn parse_auth_data(data: &[u8]) -> AuthData {
    let flags = data[32];
    let sign_count = u32::from_be_bytes(data[33..37].try_into().unwrap());
    let credential = (flags & 0x40 != 0).then(|| {
        let length = usize::from(u16::from_be_bytes([data[53], data[54]]));
        let id = data[55..55 + length].to_vec();
        let mut rest = &data[55 + length..];
        let key: Value = ciborium::de::from_reader(&mut rest).unwrap();
        (id, key)
    });
    AuthData {
        flags,
        sign_count,
        credential,
    }
}

/// A registration: its response body, authData, credential ID and COSE key.
struct Registered {
    body: Value,
    auth_data: Vec<u8>,
    id: Vec<u8>,
    key: Value,
}

fn register(client: &mut CtapHidClient<UdpTransport>, alg: i64) -> Registered {
    let (status, body) = ctap(client, 0x01, Some(make_credential(alg, None)));
    assert_eq!(status, OK);
    registered(body.unwrap())
}

fn registered(body: Value) -> Registered {
    let auth_data = bytes(member(&body, 2));
    let (id, key) = parse_auth_data(&auth_data).credential.unwrap();
    Registered {
        body,
        auth_data,
        id,
        key,
    }
}

/// Whether a signature verifies with a COSE key; panics unless it is well-formed (DER for
/// ES256, 64 bytes for EdDSA).
fn verifies(cose_key: &Value, message: &[u8], signature: &[u8]) -> bool {
    let alg = match member(cose_key, 3) {
        Value::Integer(alg) => i64::try_from(*alg).unwrap(),
        other => panic!("alg {other:?}"),
    };
    match alg {
        -7 => {
            let mut point = vec![0x04];
            point.extend(bytes(member(cose_key, -2)));
            point.extend(bytes(member(cose_key, -3)));
            p256_verifies(&point, message, signature)
        }
        -8 => {
            let x: [u8; 32] = bytes(member(cose_key, -2)).try_into().unwrap();
            let key = ed25519_dalek::VerifyingKey::from_bytes(&x).unwrap();
            assert_eq!(signature.len(), 64, "an Ed25519 signature is 64 bytes");
            let signature = ed25519_dalek::Signature::from_slice(signature).unwrap();
            key.verify_strict(message, &signature).is_ok()
        }
        other => panic!("alg {other}"),
    }
}

fn p256_verifies(sec1_point: &[u8], message: &[u8], der: &[u8]) -> bool {
    let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(sec1_point).unwrap();
    let signature =
        p256::ecdsa::DerSignature::from_bytes(der).expect("a well-formed DER ECDSA signature");
    key.verify(message, &signature).is_ok()
}

/// The attestation statement's signature over authData ‖ clientDataHash, checked with `key`.
fn attestation_verifies(registered: &Registered, key: &Value) -> bool {
    let statement = member(&registered.body, 3);
    let signature = bytes(text_member(statement, "sig").unwrap());
    let mut message = registered.auth_data.clone();
    message.extend(client_data_hash(1));
    verifies(key, &message, &signature)
}

/// A getAssertion with the credential: its authData and whether its signature verifies.
fn assert_once(
    client: &mut CtapHidClient<UdpTransport>,
    registered: &Registered,
) -> (AuthData, bool) {
    let (status, body) = ctap(client, 0x02, Some(get_assertion(&registered.id)));
    assert_eq!(status, OK);
    let body = body.unwrap();
    let auth_data = bytes(member(&body, 2));
    let mut message = auth_data.clone();
    message.extend(client_data_hash(2));
    let ok = verifies(&registered.key, &message, &bytes(member(&body, 3)));
    (parse_auth_data(&auth_data), ok)
}

// ---------------------------------------------------------------- U2F

fn u2f(client: &mut CtapHidClient<UdpTransport>, ins: u8, p1: u8, data: &[u8]) -> (Vec<u8>, u16) {
    let mut apdu = vec![0x00, ins, p1, 0x00, 0x00];
    apdu.extend(u16::try_from(data.len()).unwrap().to_be_bytes());
    apdu.extend(data);
    apdu.extend([0x00, 0x00]);
    let mut response = client
        .transact(fidelio_client::command::MSG, &apdu)
        .unwrap();
    let sw = response.split_off(response.len() - 2);
    (response, u16::from_be_bytes([sw[0], sw[1]]))
}

fn application() -> [u8; 32] {
    Sha256::digest(RP_ID).into()
}

/// U2F_REGISTER: the public key and key handle.
fn u2f_register(client: &mut CtapHidClient<UdpTransport>) -> (Vec<u8>, Vec<u8>) {
    let (data, sw) = u2f(client, 0x01, 0, &[[7u8; 32], application()].concat());
    assert_eq!(sw, SW_NO_ERROR);
    let length = usize::from(data[66]);
    (data[1..66].to_vec(), data[67..67 + length].to_vec())
}

/// U2F_AUTHENTICATE (enforce presence): the response data and status word.
fn u2f_authenticate(client: &mut CtapHidClient<UdpTransport>, key_handle: &[u8]) -> (Vec<u8>, u16) {
    let mut data = [9u8; 32].to_vec();
    data.extend(application());
    data.push(u8::try_from(key_handle.len()).unwrap());
    data.extend(key_handle);
    u2f(client, 0x02, 0x03, &data)
}

fn u2f_signature_verifies(public_key: &[u8], response: &[u8]) -> bool {
    let mut signed = application().to_vec();
    signed.extend(&response[..5]);
    signed.extend([9u8; 32]);
    p256_verifies(public_key, &signed, &response[5..])
}

// ---------------------------------------------------------------- tests

#[test]
fn presence_denied_or_timed_out_as_a_real_key_would() {
    let daemon = start(emulator());
    let mut client = client(daemon.udp);

    // Deny, once: the user declined; then the key behaves again.
    inject(
        &daemon,
        &json!({"type": "presence", "outcome": "deny", "count": 1}),
    );
    let (status, _) = ctap(&mut client, 0x01, Some(make_credential(-7, None)));
    assert_eq!(status, OPERATION_DENIED);
    let registered = register(&mut client, -7);

    // Timeout after 200 ms, KEEPALIVE UPNEEDED meanwhile.
    inject(
        &daemon,
        &json!({"type": "presence", "outcome": "timeout", "ms": 200, "count": 1,
                "command": "getAssertion"}),
    );
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    client.on_keepalive(move |status| {
        record.lock().unwrap().push(status);
        KeepaliveAction::Continue
    });
    let started = Instant::now();
    let (status, _) = ctap(&mut client, 0x02, Some(get_assertion(&registered.id)));
    assert_eq!(status, USER_ACTION_TIMEOUT);
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert!(seen.lock().unwrap().contains(&Keepalive::UpNeeded));
    let (_, ok) = assert_once(&mut client, &registered);
    assert!(ok);

    // A presence fault counts only requests that asked the user: getInfo leaves it alone.
    inject(
        &daemon,
        &json!({"type": "presence", "outcome": "deny", "count": 1}),
    );
    assert_eq!(ctap(&mut client, 0x04, None).0, OK);
    assert_eq!(active_faults(&daemon).len(), 1);

    // U2F: SW_CONDITIONS_NOT_SATISFIED, as for a key nobody touched.
    let (data, sw) = u2f(&mut client, 0x01, 0, &[[7u8; 32], application()].concat());
    assert_eq!((data.len(), sw), (0, SW_CONDITIONS_NOT_SATISFIED));
    assert!(active_faults(&daemon).is_empty());
    let (public_key, key_handle) = u2f_register(&mut client);
    inject(
        &daemon,
        &json!({"type": "presence", "outcome": "timeout", "ms": 100, "count": 1}),
    );
    assert_eq!(
        u2f_authenticate(&mut client, &key_handle).1,
        SW_CONDITIONS_NOT_SATISFIED
    );
    let (response, sw) = u2f_authenticate(&mut client, &key_handle);
    assert_eq!(sw, SW_NO_ERROR);
    assert!(u2f_signature_verifies(&public_key, &response));

    // Through a WebAuthn client: the page's NotAllowedError.
    inject(
        &daemon,
        &json!({"type": "presence", "outcome": "deny", "count": 1}),
    );
    let mut webauthn = fidelio_webauthn::Client::new(
        self::client(daemon.udp),
        <rand_chacha::ChaCha20Rng as rand_core::SeedableRng>::seed_from_u64(5),
        fidelio_webauthn::ClientConfig::default(),
    );
    let error = webauthn
        .create_blocking(
            &fidelio_webauthn::Caller::new(&format!("https://{RP_ID}")).unwrap(),
            &json!({
                "rp": {"id": RP_ID, "name": "Example"},
                "user": {"id": "dXNlci0y", "name": "bob", "displayName": "Bob"},
                "challenge": "Y2hhbGxlbmdl",
                "pubKeyCredParams": [{"type": "public-key", "alg": -7}],
                "timeout": 10000,
            }),
            &mut fidelio_webauthn::Unattended,
            &fidelio_webauthn::AbortSignal::new(),
        )
        .unwrap_err();
    assert_eq!(
        error.name,
        fidelio_webauthn::ErrorName::NotAllowedError,
        "{error}"
    );
    assert!(
        error.message.contains("OPERATION_DENIED"),
        "{}",
        error.message
    );
}

#[test]
fn built_in_uv_fails_to_recognise_the_user() {
    let daemon = start(emulator());
    control(
        &daemon,
        "POST",
        "/v1/control/authenticator",
        &json!({"hasResidentKey": true, "hasUserVerification": true, "isUserVerified": true}),
    );
    let mut client = client(daemon.udp);
    inject(
        &daemon,
        &json!({"type": "uv", "outcome": "fail", "count": 1}),
    );
    let (status, _) = ctap(&mut client, 0x01, Some(make_credential(-7, uv_option())));
    assert_eq!(status, UV_INVALID);
    assert!(active_faults(&daemon).is_empty(), "used up");
    let (status, body) = ctap(&mut client, 0x01, Some(make_credential(-7, uv_option())));
    assert_eq!(status, OK);
    let registered = registered(body.unwrap());
    assert_eq!(parse_auth_data(&registered.auth_data).flags & 0x05, 0x05);

    // Without built-in UV asked for, a UV fault waits (it counts only failed verifications).
    inject(&daemon, &json!({"type": "uv", "count": 1}));
    let (_, ok) = assert_once(&mut client, &registered);
    assert!(ok);
    assert_eq!(active_faults(&daemon)[0]["remaining"], json!(1));
}

#[test]
fn a_status_is_answered_without_running_the_command() {
    let daemon = start(emulator());
    let mut client = client(daemon.udp);
    let registered = register(&mut client, -7);
    inject(
        &daemon,
        &json!({"faults": [
            {"type": "status", "command": "getAssertion", "status": "CTAP2_ERR_PIN_BLOCKED",
             "count": 1},
            {"type": "status", "command": 1, "status": KEY_STORE_FULL, "count": 1},
        ]}),
    );
    // getInfo is not concerned.
    assert_eq!(ctap(&mut client, 0x04, None).0, OK);
    let (status, body) = ctap(&mut client, 0x02, Some(get_assertion(&registered.id)));
    assert_eq!((status, body), (PIN_BLOCKED, None));
    let before = control(
        &daemon,
        "GET",
        &format!("{DEVICE}/credentials"),
        &Json::Null,
    );
    assert_eq!(
        ctap(&mut client, 0x01, Some(make_credential(-7, None))).0,
        KEY_STORE_FULL
    );
    let after = control(
        &daemon,
        "GET",
        &format!("{DEVICE}/credentials"),
        &Json::Null,
    );
    assert_eq!(
        before.as_array().unwrap().len(),
        after.as_array().unwrap().len(),
        "the command did not run"
    );
    // The signature counter did not move either: the next assertion is the registration's + 1.
    let (auth_data, ok) = assert_once(&mut client, &registered);
    assert!(ok);
    assert_eq!(auth_data.sign_count, 2);
    // A vendor status byte works too.
    inject(
        &daemon,
        &json!({"type": "status", "command": "getInfo", "status": "0xF3", "count": 1}),
    );
    assert_eq!(ctap(&mut client, 0x04, None), (0xF3, None));
}

#[test]
fn bogus_signatures_are_well_formed_and_do_not_verify() {
    let daemon = start(emulator());
    let mut client = client(daemon.udp);
    for alg in [-7, -8] {
        inject(&daemon, &json!({"type": "signature", "count": 2}));
        let registered = register(&mut client, alg);
        let key = registered.key.clone();
        assert!(
            !attestation_verifies(&registered, &key),
            "packed self attestation ({alg})"
        );
        let (_, ok) = assert_once(&mut client, &registered);
        assert!(!ok, "assertion ({alg})");
        let (_, ok) = assert_once(&mut client, &registered);
        assert!(ok, "the fault is used up ({alg})");
    }
    // U2F: the authentication signature.
    let (public_key, key_handle) = u2f_register(&mut client);
    inject(
        &daemon,
        &json!({"type": "signature", "command": "u2fAuthenticate", "count": 1}),
    );
    let (response, sw) = u2f_authenticate(&mut client, &key_handle);
    assert_eq!(sw, SW_NO_ERROR);
    assert!(!u2f_signature_verifies(&public_key, &response));
    let (response, _) = u2f_authenticate(&mut client, &key_handle);
    assert!(u2f_signature_verifies(&public_key, &response));
}

#[test]
fn wrong_flags_are_signed_consistently() {
    let daemon = start(emulator());
    let mut client = client(daemon.udp);
    inject(
        &daemon,
        &json!({"type": "flags", "up": false, "uv": true, "count": 2}),
    );
    let registered = register(&mut client, -7);
    assert_eq!(parse_auth_data(&registered.auth_data).flags & 0x05, 0x04);
    let key = registered.key.clone();
    assert!(attestation_verifies(&registered, &key));
    let (auth_data, ok) = assert_once(&mut client, &registered);
    assert_eq!(auth_data.flags & 0x05, 0x04, "UP off, UV on");
    assert!(ok, "the signature covers the wrong flags");
    let (auth_data, ok) = assert_once(&mut client, &registered);
    assert_eq!(auth_data.flags & 0x05, 0x01);
    assert!(ok);
}

#[test]
fn a_delayed_answer_keeps_keepalives_flowing() {
    let daemon = start(emulator());
    let mut client = client(daemon.udp);
    assert_eq!(ctap(&mut client, 0x04, None).0, OK);
    inject(
        &daemon,
        &json!({"type": "delay", "ms": 500, "command": "getInfo", "count": 1}),
    );
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    client.on_keepalive(move |status| {
        record.lock().unwrap().push(status);
        KeepaliveAction::Continue
    });
    let started = Instant::now();
    assert_eq!(ctap(&mut client, 0x04, None).0, OK);
    assert!(started.elapsed() >= Duration::from_millis(500));
    let keepalives = seen.lock().unwrap().clone();
    assert!(
        keepalives.len() >= 3 && keepalives.iter().all(|k| *k == Keepalive::Processing),
        "{keepalives:?}"
    );
    let started = Instant::now();
    assert_eq!(ctap(&mut client, 0x04, None).0, OK);
    assert!(started.elapsed() < Duration::from_millis(500));
}

#[test]
fn the_counter_rolls_back() {
    let daemon = start(emulator());
    let mut client = client(daemon.udp);
    let registered = register(&mut client, -7);
    assert_eq!(assert_once(&mut client, &registered).0.sign_count, 2);
    inject(
        &daemon,
        &json!({"type": "counter", "rollback": 2, "count": 1}),
    );
    let (auth_data, ok) = assert_once(&mut client, &registered);
    assert!(ok, "the rolled-back counter is signed");
    assert_eq!(auth_data.sign_count, 1, "3, reported 2 lower");
    assert_eq!(assert_once(&mut client, &registered).0.sign_count, 4);
    inject(
        &daemon,
        &json!({"type": "counter", "rollback": 1000, "count": 1}),
    );
    assert_eq!(
        assert_once(&mut client, &registered).0.sign_count,
        0,
        "saturates"
    );
    // U2F_AUTHENTICATE's counter too.
    let (_, key_handle) = u2f_register(&mut client);
    inject(
        &daemon,
        &json!({"type": "counter", "rollback": 3, "command": "u2fAuthenticate", "count": 1}),
    );
    let (response, _) = u2f_authenticate(&mut client, &key_handle);
    assert_eq!(u32::from_be_bytes(response[1..5].try_into().unwrap()), 3);
}

/// The signature of a DER certificate verifies with the CA's P-256 key.
fn issued_by(certificate: &[u8], ca_certificate: &[u8]) -> bool {
    use x509_cert::der::{Decode, Encode};
    let leaf = x509_cert::Certificate::from_der(certificate).unwrap();
    let ca = x509_cert::Certificate::from_der(ca_certificate).unwrap();
    let ca_key = ca
        .tbs_certificate()
        .subject_public_key_info()
        .subject_public_key
        .raw_bytes()
        .to_vec();
    let tbs = leaf.tbs_certificate().to_der().unwrap();
    p256_verifies(&ca_key, &tbs, leaf.signature().raw_bytes())
}

fn certificate_key(certificate: &[u8]) -> Value {
    use x509_cert::der::Decode;
    let leaf = x509_cert::Certificate::from_der(certificate).unwrap();
    let point = leaf
        .tbs_certificate()
        .subject_public_key_info()
        .subject_public_key
        .raw_bytes()
        .to_vec();
    cbor::map(vec![
        (cbor::int(1), cbor::int(2)),
        (cbor::int(3), cbor::int(-7)),
        (cbor::int(-1), cbor::int(1)),
        (cbor::int(-2), cbor::bytes(&point[1..33])),
        (cbor::int(-3), cbor::bytes(&point[33..65])),
    ])
}

#[test]
fn attestation_is_swapped_for_the_faulted_registration() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let provisioned = fidelio_attestation::generate(
        &fidelio_attestation::GenerateOptions::new(
            authenticator_core::config::FIDELIO_AAGUID,
            now - 86_400,
        ),
        &mut <rand_chacha::ChaCha20Rng as rand_core::SeedableRng>::seed_from_u64(11),
    )
    .unwrap();
    let mut config = emulator();
    config.attestation = AttestationMode::Batch(BatchAttestation {
        private_key: zeroize::Zeroizing::new(*provisioned.batch_key()),
        certificates: provisioned.attestation_chain(),
    });
    let daemon = start(config);
    let mut client = client(daemon.udp);
    let ca = provisioned.ca_cert_der().to_vec();
    let x5c = |registered: &Registered| -> Option<Vec<u8>> {
        match text_member(member(&registered.body, 3), "x5c") {
            Some(Value::Array(chain)) => Some(bytes(&chain[0])),
            _ => None,
        }
    };
    let format = |registered: &Registered| member(&registered.body, 1).clone();

    // The configured batch attestation, unfaulted.
    let normal = register(&mut client, -7);
    let leaf = x5c(&normal).unwrap();
    assert_eq!(leaf, provisioned.batch_cert_der());
    assert!(issued_by(&leaf, &ca));
    assert!(attestation_verifies(&normal, &certificate_key(&leaf)));

    // none
    inject(
        &daemon,
        &json!({"type": "attestation", "mode": "none", "count": 1}),
    );
    let none = register(&mut client, -7);
    assert_eq!(format(&none), cbor::text("none"));
    assert_eq!(member(&none.body, 3), &cbor::map(Vec::new()));

    // self: packed, no x5c, signed by the credential key.
    inject(
        &daemon,
        &json!({"type": "attestation", "mode": "self", "count": 1}),
    );
    let own = register(&mut client, -7);
    assert_eq!(format(&own), cbor::text("packed"));
    assert!(x5c(&own).is_none());
    let key = own.key.clone();
    assert!(attestation_verifies(&own, &key));

    // untrusted: packed x5c, a valid signature by a certificate the configured CA never issued.
    inject(
        &daemon,
        &json!({"type": "attestation", "mode": "untrusted", "count": 1}),
    );
    let untrusted = register(&mut client, -7);
    assert_eq!(format(&untrusted), cbor::text("packed"));
    let rogue = x5c(&untrusted).unwrap();
    assert_ne!(rogue, leaf);
    assert!(attestation_verifies(&untrusted, &certificate_key(&rogue)));
    assert!(
        !issued_by(&rogue, &ca),
        "does not chain to the configured CA"
    );

    // batch (the configured one) while the device's default is self… here batch is the
    // default, so check it after an explicit batch fault too; and back to normal after.
    inject(
        &daemon,
        &json!({"type": "attestation", "mode": "batch", "count": 1}),
    );
    let batch = register(&mut client, -7);
    assert_eq!(x5c(&batch).unwrap(), leaf);
    let after = register(&mut client, -7);
    assert_eq!(x5c(&after).unwrap(), leaf);

    // A daemon without a batch key refuses the batch fault (409), but takes untrusted.
    let plain = start(emulator());
    let (status, answer) = http(
        plain.gateway,
        "POST",
        &format!("{DEVICE}/faults"),
        &json!({"type": "attestation", "mode": "batch"}).to_string(),
    );
    assert_eq!(status, 409, "{answer}");
    inject(
        &plain,
        &json!({"type": "attestation", "mode": "untrusted", "count": 1}),
    );
    let mut plain_client = self::client(plain.udp);
    let untrusted = register(&mut plain_client, -7);
    let rogue = x5c(&untrusted).unwrap();
    assert!(attestation_verifies(&untrusted, &certificate_key(&rogue)));
    let own = register(&mut plain_client, -7);
    assert!(x5c(&own).is_none(), "self attestation again");
}

#[test]
fn lost_and_late_hid_reports() {
    let daemon = start(emulator());
    let mut client = client(daemon.udp);
    assert_eq!(ctap(&mut client, 0x04, None).0, OK);

    // The answer's first report is lost: the client times out (and CANCELs), then retries.
    inject(
        &daemon,
        &json!({"type": "hid", "dropReports": 1, "count": 1}),
    );
    client.set_timeout(Duration::from_millis(700));
    let started = Instant::now();
    let lost = client.cbor(&[0x04]);
    assert!(
        matches!(lost, Err(fidelio_client::Error::Timeout(_))),
        "{lost:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(700));
    assert_eq!(
        client.cbor(&[0x04]).unwrap()[0],
        OK,
        "the retry gets through"
    );

    // Every report 300 ms late: too late for a 150 ms client, in time for a patient one.
    inject(&daemon, &json!({"type": "hid", "delayMs": 300, "count": 2}));
    client.set_timeout(Duration::from_millis(150));
    assert!(matches!(
        client.cbor(&[0x04]),
        Err(fidelio_client::Error::Timeout(_))
    ));
    // Let the late answer arrive and be skipped, as a stray.
    std::thread::sleep(Duration::from_millis(400));
    let mut client = self::client(daemon.udp);
    client.set_timeout(Duration::from_secs(5));
    let started = Instant::now();
    assert_eq!(client.cbor(&[0x04]).unwrap()[0], OK);
    assert!(started.elapsed() >= Duration::from_millis(300));
    let started = Instant::now();
    assert_eq!(client.cbor(&[0x04]).unwrap()[0], OK);
    assert!(started.elapsed() < Duration::from_millis(300), "used up");
}

#[test]
fn count_remove_clear_events_and_errors() {
    let daemon = start(emulator());
    let mut client = client(daemon.udp);
    let registered = register(&mut client, -7);

    // A count-1 fault hits once, then normal.
    let ids = inject(
        &daemon,
        &json!({"type": "signature", "command": "getAssertion", "count": 1}),
    );
    let listed = active_faults(&daemon);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["faultId"], json!(ids[0]));
    assert_eq!(listed[0]["type"], json!("signature"));
    assert_eq!(listed[0]["command"], json!("getAssertion"));
    assert_eq!(
        (
            listed[0]["count"].clone(),
            listed[0]["remaining"].clone(),
            listed[0]["fired"].clone()
        ),
        (json!(1), json!(1), json!(0))
    );
    assert!(!assert_once(&mut client, &registered).1);
    assert!(assert_once(&mut client, &registered).1);
    assert!(active_faults(&daemon).is_empty());
    let events = fault_events(&daemon);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["faultId"], json!(ids[0]));
    assert_eq!(events[0]["faultType"], json!("signature"));
    assert_eq!(events[0]["command"], json!("getAssertion"));
    assert_eq!(events[0]["lane"], json!("udp"));
    assert_eq!(events[0]["authenticatorId"], json!("default"));

    // Until cleared; removed by ID; cleared all at once.
    let ids = inject(
        &daemon,
        &json!({"faults": [{"type": "signature"}, {"type": "counter", "rollback": 1}]}),
    );
    for _ in 0..3 {
        assert!(!assert_once(&mut client, &registered).1);
    }
    assert_eq!(active_faults(&daemon)[0]["fired"], json!(3));
    assert_eq!(active_faults(&daemon)[0]["remaining"], Json::Null);
    let removed = control(
        &daemon,
        "DELETE",
        &format!("{DEVICE}/faults/{}", ids[0]),
        &Json::Null,
    );
    assert_eq!(removed["type"], json!("signature"));
    assert!(assert_once(&mut client, &registered).1);
    let (status, _) = http(
        daemon.gateway,
        "DELETE",
        &format!("{DEVICE}/faults/{}", ids[0]),
        "",
    );
    assert_eq!(status, 404);
    inject(&daemon, &json!({"type": "delay", "ms": 50}));
    let cleared = control(&daemon, "DELETE", &format!("{DEVICE}/faults"), &Json::Null);
    assert_eq!(cleared["removed"], json!(2));
    assert!(active_faults(&daemon).is_empty());
    let (auth_data, ok) = assert_once(&mut client, &registered);
    assert!(ok);
    let before = auth_data.sign_count;
    assert_eq!(
        assert_once(&mut client, &registered).0.sign_count,
        before + 1
    );

    // Removing the authenticator (the "clean device" call) clears faults too.
    inject(&daemon, &json!({"type": "signature"}));
    control(&daemon, "DELETE", DEVICE, &Json::Null);
    assert!(active_faults(&daemon).is_empty());

    // Hostile or wrong requests: 400, 404, 405 — and the daemon serves on.
    for body in [
        "not json",
        "[]",
        "{}",
        r#"{"type": "presence", "outcome": "maybe"}"#,
        r#"{"type": "status", "status": "CTAP2_ERR_NOPE"}"#,
        r#"{"type": "signature", "count": 0}"#,
        r#"{"type": "signature", "command": "getInfo"}"#,
        r#"{"type": "delay", "ms": -5}"#,
        r#"{"type": "hid"}"#,
        r#"{"faults": [{"type": "signature"}, 7]}"#,
        r#"{"faults": []}"#,
    ] {
        let (status, answer) = http(daemon.gateway, "POST", &format!("{DEVICE}/faults"), body);
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["error"]["name"], json!("InvalidArgument"), "{body}");
    }
    assert_eq!(
        http(daemon.gateway, "DELETE", &format!("{DEVICE}/faults/x"), "").0,
        400
    );
    assert_eq!(
        http(daemon.gateway, "PUT", &format!("{DEVICE}/faults"), "").0,
        405
    );
    assert_eq!(
        http(
            daemon.gateway,
            "GET",
            "/v1/control/authenticator/nobody/faults",
            ""
        )
        .0,
        404
    );
    assert!(active_faults(&daemon).is_empty());
    // (Remove wiped the device: a new credential.)
    let registered = register(&mut client, -7);
    assert!(assert_once(&mut client, &registered).1);
}

#[test]
fn faults_stay_on_their_device() {
    let daemon = start(emulator());
    // A second device in the same daemon (multi-device host).
    let (status, second) = http(
        daemon.gateway,
        "POST",
        "/v1/control/devices",
        &json!({"id": "second"}).to_string(),
    );
    assert_eq!(status, 200, "{second}");
    let second_udp: SocketAddr = second["ok"]["udp"].as_str().unwrap().parse().unwrap();
    let mut first = client(daemon.udp);
    let mut other = client(second_udp);

    inject(
        &daemon,
        &json!({"type": "status", "status": "CTAP1_ERR_OTHER"}),
    );
    inject_on(&daemon, "second", &json!({"type": "signature"}));
    assert_eq!(ctap(&mut first, 0x04, None).0, 0x7F);
    assert_eq!(ctap(&mut other, 0x04, None).0, OK);
    let registered = register(&mut other, -7);
    assert!(!assert_once(&mut other, &registered).1);
    let second_faults = control(
        &daemon,
        "GET",
        "/v1/control/authenticator/second/faults",
        &Json::Null,
    );
    assert_eq!(second_faults["faults"][0]["type"], json!("signature"));
    assert_eq!(active_faults(&daemon)[0]["type"], json!("status"));
    // Clearing one device's faults leaves the other's.
    control(&daemon, "DELETE", &format!("{DEVICE}/faults"), &Json::Null);
    assert_eq!(ctap(&mut first, 0x04, None).0, OK);
    assert!(!assert_once(&mut other, &registered).1);
    let events = fault_events(&daemon);
    assert!(
        events
            .iter()
            .any(|event| event["authenticatorId"] == "second")
    );
    assert!(
        events
            .iter()
            .any(|event| event["authenticatorId"] == "default")
    );
}
