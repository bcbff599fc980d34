//! Helpers shared by the command tests: request builders, response parsing and independent
//! signature checks (RustCrypto verifiers, not our signing code).
#![allow(dead_code)]

pub mod pin;

use authenticator_core::cbor::{self, Value};
use authenticator_core::testing::TestPlatform;
use authenticator_core::{Authenticator, Config, block_on};
use sha2::Digest;

pub type Device = Authenticator<TestPlatform>;

pub fn device(config: Config) -> Device {
    Authenticator::new(TestPlatform::new(7), config)
}

pub fn emulator() -> Device {
    let mut config = Config::security_key();
    config.reset_window_ms = None;
    device(config)
}

pub fn text(s: &str) -> Value {
    cbor::text(s)
}

pub fn int(n: i64) -> Value {
    cbor::int(n)
}

pub fn entry(key: i64, value: Value) -> (Value, Value) {
    (int(key), value)
}

pub fn tmap(entries: &[(&str, Value)]) -> Value {
    Value::Map(entries.iter().map(|(k, v)| (text(k), v.clone())).collect())
}

pub fn client_data_hash(n: u8) -> Vec<u8> {
    sha2::Sha256::digest([n]).to_vec()
}

/// A makeCredential request's members, ready to be altered.
pub fn make_credential_params(rp_id: &str, user_id: &[u8], algs: &[i64]) -> Vec<(Value, Value)> {
    vec![
        entry(1, Value::Bytes(client_data_hash(1))),
        entry(2, tmap(&[("id", text(rp_id)), ("name", text("Example"))])),
        entry(
            3,
            tmap(&[
                ("id", Value::Bytes(user_id.to_vec())),
                ("name", text("alice@example.com")),
                ("displayName", text("Alice")),
            ]),
        ),
        entry(
            4,
            Value::Array(
                algs.iter()
                    .map(|alg| tmap(&[("alg", int(*alg)), ("type", text("public-key"))]))
                    .collect(),
            ),
        ),
    ]
}

pub fn with(mut params: Vec<(Value, Value)>, key: i64, value: Value) -> Vec<(Value, Value)> {
    params.retain(|(k, _)| *k != int(key));
    params.push(entry(key, value));
    params
}

pub fn without(mut params: Vec<(Value, Value)>, key: i64) -> Vec<(Value, Value)> {
    params.retain(|(k, _)| *k != int(key));
    params
}

/// A request's members.
pub type Params = Vec<(Value, Value)>;

pub fn request(command: u8, params: Vec<(Value, Value)>) -> Vec<u8> {
    let mut bytes = vec![command];
    bytes.extend(cbor::to_vec(&Value::Map(params)));
    bytes
}

/// Sends a request; returns the status byte and the decoded CBOR body (if any).
pub fn send(device: &mut Device, bytes: &[u8]) -> (u8, Option<Value>) {
    let response = block_on(device.process(bytes));
    let status = response[0];
    let body = (response.len() > 1).then(|| cbor::decode(&response[1..]).expect("response CBOR"));
    (status, body)
}

pub fn member(value: &Value, key: i64) -> Option<&Value> {
    match value {
        Value::Map(entries) => entries.iter().find(|(k, _)| *k == int(key)).map(|(_, v)| v),
        _ => None,
    }
}

pub fn text_member<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    match value {
        Value::Map(entries) => entries
            .iter()
            .find(|(k, _)| *k == text(key))
            .map(|(_, v)| v),
        _ => None,
    }
}

pub fn bytes_of(value: &Value) -> Vec<u8> {
    match value {
        Value::Bytes(b) => b.clone(),
        other => panic!("expected bytes, got {other:?}"),
    }
}

/// Parsed authenticator data.
#[derive(Debug)]
pub struct AuthData {
    pub rp_id_hash: [u8; 32],
    pub flags: u8,
    pub sign_count: u32,
    pub aaguid: Option<[u8; 16]>,
    pub credential_id: Option<Vec<u8>>,
    pub public_key: Option<Value>,
    pub extensions: Option<Value>,
}

pub fn parse_auth_data(data: &[u8]) -> AuthData {
    let rp_id_hash: [u8; 32] = data[..32].try_into().unwrap();
    let flags = data[32];
    let sign_count = u32::from_be_bytes(data[33..37].try_into().unwrap());
    let mut rest = &data[37..];
    let (mut aaguid, mut credential_id, mut public_key, mut extensions) = (None, None, None, None);
    if flags & 0x40 != 0 {
        aaguid = Some(rest[..16].try_into().unwrap());
        let len = usize::from(u16::from_be_bytes([rest[16], rest[17]]));
        credential_id = Some(rest[18..18 + len].to_vec());
        rest = &rest[18 + len..];
        let mut reader = rest;
        let key: Value = ciborium::de::from_reader(&mut reader).unwrap();
        public_key = Some(key);
        rest = reader;
    }
    if flags & 0x80 != 0 {
        let mut reader = rest;
        let ext: Value = ciborium::de::from_reader(&mut reader).unwrap();
        extensions = Some(ext);
        rest = reader;
    }
    assert!(rest.is_empty(), "trailing bytes in authData");
    AuthData {
        rp_id_hash,
        flags,
        sign_count,
        aaguid,
        credential_id,
        public_key,
        extensions,
    }
}

/// Verifies `signature` over `message` with a COSE public key, using RustCrypto's verifiers.
pub fn verify(cose_key: &Value, message: &[u8], signature: &[u8]) {
    let alg = match member(cose_key, 3) {
        Some(Value::Integer(i)) => i64::try_from(*i).unwrap(),
        other => panic!("no alg in COSE key: {other:?}"),
    };
    match alg {
        -7 => {
            use p256::ecdsa::signature::Verifier;
            let x = bytes_of(member(cose_key, -2).unwrap());
            let y = bytes_of(member(cose_key, -3).unwrap());
            let mut sec1 = vec![0x04];
            sec1.extend(x);
            sec1.extend(y);
            let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).unwrap();
            let sig = p256::ecdsa::DerSignature::from_bytes(signature).unwrap();
            key.verify(message, &sig).expect("ES256 signature verifies");
        }
        -8 => {
            let x: [u8; 32] = bytes_of(member(cose_key, -2).unwrap()).try_into().unwrap();
            let key = ed25519_dalek::VerifyingKey::from_bytes(&x).unwrap();
            let sig = ed25519_dalek::Signature::from_slice(signature).unwrap();
            key.verify_strict(message, &sig)
                .expect("EdDSA signature verifies");
        }
        other => panic!("unexpected alg {other}"),
    }
}

/// A registration's useful outputs.
#[derive(Debug)]
pub struct Registered {
    pub credential_id: Vec<u8>,
    pub public_key: Value,
    pub auth_data: AuthData,
}

/// Registers and checks the attestation signature; panics on any failure.
pub fn register(device: &mut Device, params: Vec<(Value, Value)>) -> Registered {
    let (status, body) = send(device, &request(0x01, params.clone()));
    assert_eq!(status, 0, "makeCredential failed with 0x{status:02X}");
    let body = body.unwrap();
    let auth_data_bytes = bytes_of(member(&body, 2).unwrap());
    let auth_data = parse_auth_data(&auth_data_bytes);
    let public_key = auth_data.public_key.clone().unwrap();
    let statement = member(&body, 3).unwrap();
    if member(&body, 1) == Some(&text("packed")) {
        let mut message = auth_data_bytes.clone();
        let cdh = params
            .iter()
            .find(|(k, _)| *k == int(1))
            .map(|(_, v)| bytes_of(v))
            .unwrap();
        message.extend(cdh);
        if text_member(statement, "x5c").is_none() {
            verify(
                &public_key,
                &message,
                &bytes_of(text_member(statement, "sig").unwrap()),
            );
        }
    }
    Registered {
        credential_id: auth_data.credential_id.clone().unwrap(),
        public_key,
        auth_data,
    }
}

pub fn get_assertion_params(rp_id: &str, allow: &[&[u8]]) -> Vec<(Value, Value)> {
    let mut params = vec![
        entry(1, text(rp_id)),
        entry(2, Value::Bytes(client_data_hash(2))),
    ];
    if !allow.is_empty() {
        params.push(entry(
            3,
            Value::Array(
                allow
                    .iter()
                    .map(|id| {
                        tmap(&[
                            ("id", Value::Bytes(id.to_vec())),
                            ("type", text("public-key")),
                        ])
                    })
                    .collect(),
            ),
        ));
    }
    params
}

/// Checks an assertion response's signature with the registered key; returns its authData.
pub fn check_assertion(body: &Value, public_key: &Value, client_data_hash: &[u8]) -> AuthData {
    let auth_data_bytes = bytes_of(member(body, 2).unwrap());
    let mut message = auth_data_bytes.clone();
    message.extend_from_slice(client_data_hash);
    verify(public_key, &message, &bytes_of(member(body, 3).unwrap()));
    parse_auth_data(&auth_data_bytes)
}
