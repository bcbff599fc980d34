//! Client extensions end to end: what reaches the authenticator, what the page gets back.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed expectation should stop the test"
)]

mod common;

use authenticator_core::cbor::{self, Value};
use authenticator_core::testing::TestPlatform;
use authenticator_core::{Authenticator, Config};
use common::*;
use fidelio_webauthn::auth_data::AuthenticatorData;
use fidelio_webauthn::ctap::ChannelError;
use fidelio_webauthn::{
    AbortSignal, Client, ClientConfig, Ctap2, ErrorName, KnownPin, Unattended, b64, block_on,
};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use serde_json::json;

fn extension(authenticator_data: &[u8], name: &str) -> Option<Value> {
    AuthenticatorData::parse(authenticator_data)
        .unwrap()
        .extension(name)
        .cloned()
}

fn allow(id: &[u8]) -> serde_json::Value {
    json!([{"type": "public-key", "id": b64(id)}])
}

fn discoverable(extensions: serde_json::Value) -> serde_json::Value {
    creation(json!({
        "authenticatorSelection": {"residentKey": "required"},
        "extensions": extensions,
    }))
}

#[test]
fn cred_protect() {
    let mut client = client();
    let registration = create(
        &mut client,
        &caller(),
        &discoverable(json!({"credentialProtectionPolicy": "userVerificationRequired"})),
        &mut Unattended,
    )
    .unwrap();
    assert_eq!(
        extension(&registration.authenticator_data, "credProtect"),
        Some(cbor::int(3))
    );
    // No client output for credProtect.
    assert_eq!(
        registration.client_extension_results,
        serde_json::Map::new()
    );
    // Without user verification the credential stays invisible.
    let error = get(&mut client, &caller(), &request(json!({})), &mut Unattended).unwrap_err();
    assert_eq!(error.name, ErrorName::NotAllowedError);
    // With a PIN, it signs.
    set_pin(&mut client, "1234");
    let assertion = get(
        &mut client,
        &caller(),
        &request(json!({})),
        &mut KnownPin::new("1234"),
    )
    .unwrap();
    verify_assertion(&registration, &assertion);

    // Level 2 is visible with its ID.
    let optional_with_list = create(
        &mut client,
        &caller(),
        &creation(json!({"extensions": {"credentialProtectionPolicy": "userVerificationOptionalWithCredentialIDList"}})),
        &mut KnownPin::new("1234"),
    )
    .unwrap();
    assert_eq!(
        extension(&optional_with_list.authenticator_data, "credProtect"),
        Some(cbor::int(2))
    );
    get(
        &mut client,
        &caller(),
        &request(json!({"allowCredentials": allow(&optional_with_list.credential_id), "userVerification": "discouraged"})),
        &mut Unattended,
    )
    .unwrap();
}

/// An authenticator whose getInfo is edited: to test what the client does when an
/// authenticator lacks something.
struct Edited {
    device: Authenticator<TestPlatform>,
    edit: fn(&mut Vec<(Value, Value)>),
}

impl Ctap2 for Edited {
    async fn transact(&mut self, request: &[u8]) -> Result<Vec<u8>, ChannelError> {
        let response = self.device.process(request).await;
        if request != [0x04] {
            return Ok(response);
        }
        let mut info = cbor::decode(&response[1..]).unwrap();
        if let Value::Map(entries) = &mut info {
            (self.edit)(entries);
        }
        let mut out = vec![0];
        cbor::encode(&info, &mut out);
        Ok(out)
    }
}

fn without_extensions(entries: &mut Vec<(Value, Value)>) {
    entries.retain(|(k, _)| *k != cbor::int(2));
    for (k, v) in entries.iter_mut() {
        if *k == cbor::int(4)
            && let Value::Map(options) = v
        {
            options.retain(|(name, _)| *name != cbor::text("largeBlobs"));
        }
    }
}

fn edited_client() -> Client<Edited, ChaCha20Rng> {
    Client::new(
        Edited {
            device: Authenticator::new(TestPlatform::new(3), Config::security_key()),
            edit: without_extensions,
        },
        ChaCha20Rng::seed_from_u64(3),
        ClientConfig::default(),
    )
}

#[test]
fn authenticators_without_the_extensions() {
    let mut client = edited_client();
    let create = |client: &mut Client<Edited, ChaCha20Rng>, extensions| {
        block_on(client.create(
            &caller(),
            &discoverable(extensions),
            &mut Unattended,
            &AbortSignal::new(),
        ))
    };
    // An enforced policy above "optional" cannot be honoured: NotAllowedError.
    let error = create(
        &mut client,
        json!({"credentialProtectionPolicy": "userVerificationRequired", "enforceCredentialProtectionPolicy": true}),
    )
    .unwrap_err();
    assert_eq!(error.name, ErrorName::NotAllowedError);
    // Not enforced: the credential is made without it.
    let registration = create(
        &mut client,
        json!({
            "credentialProtectionPolicy": "userVerificationRequired",
            "prf": {},
            "credBlob": "AQID",
            "largeBlob": {"support": "preferred"},
        }),
    )
    .unwrap();
    assert_eq!(
        extension(&registration.authenticator_data, "credProtect"),
        None
    );
    assert_eq!(
        serde_json::Value::Object(registration.client_extension_results),
        json!({"prf": {"enabled": false}, "credBlob": false, "largeBlob": {"supported": false}})
    );
    // largeBlob "required" on an authenticator without large blobs.
    assert_eq!(
        create(&mut client, json!({"largeBlob": {"support": "required"}}))
            .unwrap_err()
            .name,
        ErrorName::NotAllowedError
    );
}

#[test]
fn cred_blob() {
    let mut client = client();
    let registration = create(
        &mut client,
        &caller(),
        &discoverable(json!({"credBlob": "c2VjcmV0"})),
        &mut Unattended,
    )
    .unwrap();
    assert_eq!(
        registration.client_extension_results["credBlob"],
        json!(true)
    );
    let assertion = get(
        &mut client,
        &caller(),
        &request(json!({"extensions": {"getCredBlob": true}})),
        &mut Unattended,
    )
    .unwrap();
    assert_eq!(
        assertion.client_extension_results["getCredBlob"],
        json!("c2VjcmV0")
    );
    // Only discoverable credentials keep a blob.
    let server_side = create(
        &mut client,
        &caller(),
        &creation(json!({"extensions": {"credBlob": "c2VjcmV0"}})),
        &mut Unattended,
    )
    .unwrap();
    assert_eq!(
        server_side.client_extension_results["credBlob"],
        json!(false)
    );
    let assertion = get(
        &mut client,
        &caller(),
        &request(json!({"allowCredentials": allow(&server_side.credential_id), "extensions": {"getCredBlob": true}})),
        &mut Unattended,
    )
    .unwrap();
    assert_eq!(assertion.client_extension_results["getCredBlob"], json!(""));
}

#[test]
fn min_pin_length_reaches_the_authenticator_and_outputs_nothing() {
    let mut client = client();
    let registration = create(
        &mut client,
        &caller(),
        &creation(json!({"extensions": {"minPinLength": true}})),
        &mut Unattended,
    )
    .unwrap();
    // example.com is not on the authenticator's minPinLengthRPIDs list: nothing is disclosed.
    assert_eq!(
        extension(&registration.authenticator_data, "minPinLength"),
        None
    );
    assert!(registration.client_extension_results.is_empty());
}

#[test]
fn prf_without_user_verification_enables_but_does_not_evaluate() {
    let mut client = client();
    let registration = create(
        &mut client,
        &caller(),
        &creation(json!({"extensions": {"prf": {"eval": {"first": "AQID"}}}})),
        &mut Unattended,
    )
    .unwrap();
    assert_eq!(
        registration.client_extension_results["prf"],
        json!({"enabled": true})
    );
    assert_eq!(
        extension(&registration.authenticator_data, "hmac-secret"),
        Some(Value::Bool(true))
    );
    let assertion = get(
        &mut client,
        &caller(),
        &request(json!({"allowCredentials": allow(&registration.credential_id), "extensions": {"prf": {"eval": {"first": "AQID"}}}})),
        &mut Unattended,
    )
    .unwrap();
    // The with-UV PRF cannot be reached: an empty prf output.
    assert_eq!(assertion.client_extension_results["prf"], json!({}));
}

#[test]
fn prf_with_a_pin() {
    let mut client = client();
    set_pin(&mut client, "1234");
    let registration = create(
        &mut client,
        &caller(),
        &creation(json!({"extensions": {"prf": {"eval": {"first": "AQID", "second": "BAUG"}}}})),
        &mut KnownPin::new("1234"),
    )
    .unwrap();
    let prf = &registration.client_extension_results["prf"];
    assert_eq!(prf["enabled"], json!(true));
    let first = prf["results"]["first"].as_str().unwrap().to_owned();
    let second = prf["results"]["second"].as_str().unwrap().to_owned();
    assert_eq!(b64d(&first).len(), 32);
    assert_ne!(first, second);

    // The same inputs at assertion time give the same outputs (the with-UV PRF both times).
    let get_prf = |client: &mut TestClient, prf: serde_json::Value| {
        get(
            client,
            &caller(),
            &request(json!({
                "allowCredentials": [
                    {"type": "public-key", "id": b64(&[9; 40])},
                    {"type": "public-key", "id": b64(&registration.credential_id)},
                ],
                "userVerification": "discouraged",
                "extensions": {"prf": prf},
            })),
            &mut KnownPin::new("1234"),
        )
        .unwrap()
    };
    let assertion = get_prf(
        &mut client,
        json!({"eval": {"first": "AQID", "second": "BAUG"}}),
    );
    // prf forced user verification despite "discouraged".
    assert_eq!(flags(&assertion.authenticator_data) & 0x04, 0x04);
    assert_eq!(
        assertion.client_extension_results["prf"],
        json!({"results": {"first": first, "second": second}})
    );
    // evalByCredential wins over eval for its credential (probed out of a two-entry list).
    let by_credential = get_prf(
        &mut client,
        json!({
            "eval": {"first": "CgsM"},
            "evalByCredential": {b64(&registration.credential_id): {"first": "AQID"}},
        }),
    );
    assert_eq!(
        by_credential.client_extension_results["prf"],
        json!({"results": {"first": first}})
    );
    let other = get_prf(&mut client, json!({"eval": {"first": "CgsM"}}));
    assert_ne!(
        other.client_extension_results["prf"]["results"]["first"],
        json!(first)
    );
}

#[test]
fn large_blob_write_then_read() {
    for pin in [None, Some("1234")] {
        let mut client = client();
        if let Some(pin) = pin {
            set_pin(&mut client, pin);
        }
        let mut ui = KnownPin::new("1234");
        let registration = create(
            &mut client,
            &caller(),
            &discoverable(json!({"largeBlob": {"support": "required"}})),
            &mut ui,
        )
        .unwrap();
        assert_eq!(
            registration.client_extension_results["largeBlob"],
            json!({"supported": true})
        );
        let blob = b64(&b"a certificate chain, or anything an RP wants kept".repeat(8));
        let written = get(
            &mut client,
            &caller(),
            &request(json!({
                "allowCredentials": allow(&registration.credential_id),
                "extensions": {"largeBlob": {"write": blob}},
            })),
            &mut KnownPin::new("1234"),
        )
        .unwrap();
        assert_eq!(
            written.client_extension_results["largeBlob"],
            json!({"written": true}),
            "{pin:?}"
        );
        let read = get(
            &mut client,
            &caller(),
            &request(json!({"extensions": {"largeBlob": {"read": true}}})),
            &mut KnownPin::new("1234"),
        )
        .unwrap();
        assert_eq!(
            read.client_extension_results["largeBlob"],
            json!({"blob": blob}),
            "{pin:?}"
        );
    }
    // A server-side credential cannot have a large blob.
    let mut client = client();
    let error = create(
        &mut client,
        &caller(),
        &creation(json!({"extensions": {"largeBlob": {"support": "required"}}})),
        &mut Unattended,
    )
    .unwrap_err();
    assert_eq!(error.name, ErrorName::NotSupportedError);
}
