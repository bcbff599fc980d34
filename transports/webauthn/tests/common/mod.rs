//! Shared by the end-to-end tests: a client over an in-process authenticator on the
//! deterministic platform double, options builders, and signature checks with RustCrypto's
//! verifiers (not the code that signed).
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers: a failed expectation should stop the test"
)]

use authenticator_core::cbor::Value;
use authenticator_core::testing::TestPlatform;
use authenticator_core::{Authenticator, Config};
use base64::Engine;
use fidelio_webauthn::{
    AbortSignal, AuthenticationResponse, Caller, Client, ClientConfig, RegistrationResponse,
    UserInterface, WebAuthnError, block_on,
};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use serde_json::{Value as Json, json};
use sha2::Digest;

pub type Device = Authenticator<TestPlatform>;
pub type TestClient = Client<Device, ChaCha20Rng>;

pub fn client_configured(config: Config, client_config: ClientConfig) -> TestClient {
    let mut config = config;
    config.reset_window_ms = None;
    Client::new(
        Authenticator::new(TestPlatform::new(7), config),
        ChaCha20Rng::seed_from_u64(7),
        client_config,
    )
}

pub fn client_with(config: Config) -> TestClient {
    client_configured(config, ClientConfig::default())
}

pub fn client() -> TestClient {
    client_with(Config::security_key())
}

pub fn caller() -> Caller {
    Caller::new("https://example.com").unwrap()
}

pub fn b64d(text: &str) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .unwrap()
}

/// Creation options for example.com with `extra` merged in at the top level.
pub fn creation(extra: Json) -> Json {
    let mut options = json!({
        "rp": {"id": "example.com", "name": "Example"},
        "user": {"id": "YWxpY2U", "name": "alice@example.com", "displayName": "Alice"},
        "challenge": "Y3JlYXRlLWNoYWxsZW5nZS0xMjM0NTY3OA",
        "pubKeyCredParams": [{"type": "public-key", "alg": -7}],
    });
    merge(&mut options, extra);
    options
}

/// Request options for example.com with `extra` merged in.
pub fn request(extra: Json) -> Json {
    let mut options = json!({
        "rpId": "example.com",
        "challenge": "Z2V0LWNoYWxsZW5nZS0xMjM0NTY3ODkw",
    });
    merge(&mut options, extra);
    options
}

fn merge(target: &mut Json, extra: Json) {
    if let (Some(target), Json::Object(extra)) = (target.as_object_mut(), extra) {
        for (key, value) in extra {
            target.insert(key, value);
        }
    }
}

pub fn create(
    client: &mut TestClient,
    caller: &Caller,
    options: &Json,
    ui: &mut impl UserInterface,
) -> Result<RegistrationResponse, WebAuthnError> {
    block_on(client.create(caller, options, ui, &AbortSignal::new()))
}

pub fn get(
    client: &mut TestClient,
    caller: &Caller,
    options: &Json,
    ui: &mut impl UserInterface,
) -> Result<AuthenticationResponse, WebAuthnError> {
    block_on(client.get(caller, options, ui, &AbortSignal::new()))
}

/// Sets the authenticator's PIN through the client's own setPIN.
pub fn set_pin(client: &mut TestClient, pin: &str) {
    let mut rng = ChaCha20Rng::seed_from_u64(99);
    block_on(fidelio_webauthn::pin::set_pin(
        client.ctap_mut(),
        fidelio_webauthn::pin::Protocol::Two,
        pin,
        &mut rng,
    ))
    .unwrap();
}

pub fn client_data(bytes: &[u8]) -> Json {
    serde_json::from_slice(bytes).unwrap()
}

/// The attestation object's members by name.
pub fn attestation_object(registration: &RegistrationResponse) -> Vec<(String, Value)> {
    let value: Value =
        ciborium::de::from_reader(registration.attestation_object.as_slice()).unwrap();
    let Value::Map(entries) = value else {
        panic!("not a map")
    };
    entries
        .into_iter()
        .map(|(k, v)| match k {
            Value::Text(name) => (name, v),
            other => panic!("key {other:?}"),
        })
        .collect()
}

pub fn member<'a>(entries: &'a [(String, Value)], name: &str) -> &'a Value {
    &entries.iter().find(|(k, _)| k == name).unwrap().1
}

pub fn flags(authenticator_data: &[u8]) -> u8 {
    authenticator_data[32]
}

/// Checks an assertion's signature with the registered SPKI public key.
pub fn verify_assertion(registration: &RegistrationResponse, assertion: &AuthenticationResponse) {
    let mut message = assertion.authenticator_data.clone();
    message.extend_from_slice(&sha2::Sha256::digest(&assertion.client_data_json));
    let spki = registration
        .public_key
        .as_ref()
        .expect("an SPKI public key");
    match registration.public_key_algorithm {
        -7 => {
            use p256::ecdsa::signature::Verifier;
            use p256::pkcs8::DecodePublicKey;
            let key = p256::ecdsa::VerifyingKey::from_public_key_der(spki).unwrap();
            let signature = p256::ecdsa::DerSignature::from_bytes(&assertion.signature).unwrap();
            key.verify(&message, &signature)
                .expect("ES256 signature verifies");
        }
        -8 => {
            let raw: [u8; 32] = spki[spki.len() - 32..].try_into().unwrap();
            let key = ed25519_dalek::VerifyingKey::from_bytes(&raw).unwrap();
            let signature = ed25519_dalek::Signature::from_slice(&assertion.signature).unwrap();
            key.verify_strict(&message, &signature)
                .expect("EdDSA signature verifies");
        }
        other => panic!("algorithm {other}"),
    }
}
