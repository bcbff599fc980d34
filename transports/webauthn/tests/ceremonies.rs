//! End to end against an in-process authenticator: registration and authentication through
//! the client, the JSON a page receives, and the exceptions a browser raises.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed expectation should stop the test"
)]

mod common;

use authenticator_core::Config;
use authenticator_core::cbor::Value;
use authenticator_core::platform::BuiltInUv;
use common::*;
use fidelio_webauthn::{
    Account, Caller, ErrorName, KnownPin, PinRequest, Unattended, UserInterface,
};
use serde_json::json;
use zeroize::Zeroizing;

const UP: u8 = 0x01;
const UV: u8 = 0x04;
const BE: u8 = 0x08;
const BS: u8 = 0x10;
const AT: u8 = 0x40;

#[test]
fn register_then_authenticate() {
    let mut client = client();
    let registration = create(
        &mut client,
        &caller(),
        &creation(json!({})),
        &mut Unattended,
    )
    .unwrap();
    let json = registration.to_json();
    assert_eq!(json["type"], "public-key");
    assert_eq!(json["id"], json["rawId"]);
    assert_eq!(json["authenticatorAttachment"], "cross-platform");
    assert_eq!(json["response"]["transports"], json!(["usb"]));
    assert_eq!(json["response"]["publicKeyAlgorithm"], -7);
    assert!(json["response"]["publicKey"].is_string());
    assert_eq!(json["clientExtensionResults"], json!({}));
    assert_eq!(
        b64d(json["response"]["authenticatorData"].as_str().unwrap()),
        registration.authenticator_data
    );
    // The exact clientDataJSON bytes.
    assert_eq!(
        std::str::from_utf8(&registration.client_data_json).unwrap(),
        r#"{"type":"webauthn.create","challenge":"Y3JlYXRlLWNoYWxsZW5nZS0xMjM0NTY3OA","origin":"https://example.com","crossOrigin":false}"#
    );
    // Attestation "none" (the default): the statement is stripped, the AAGUID kept (L3).
    let attestation = attestation_object(&registration);
    assert_eq!(member(&attestation, "fmt"), &Value::Text("none".into()));
    assert_eq!(member(&attestation, "attStmt"), &Value::Map(vec![]));
    assert_eq!(
        &registration.authenticator_data[37..53],
        &authenticator_core::config::FIDELIO_AAGUID
    );
    assert_eq!(flags(&registration.authenticator_data), UP | AT);

    let assertion = get(
        &mut client,
        &caller(),
        &request(json!({"allowCredentials": [{"type": "public-key", "id": json["id"]}]})),
        &mut Unattended,
    )
    .unwrap();
    assert_eq!(assertion.credential_id, registration.credential_id);
    assert_eq!(assertion.user_handle, None);
    assert_eq!(flags(&assertion.authenticator_data), UP);
    verify_assertion(&registration, &assertion);
    let data = client_data(&assertion.client_data_json);
    assert_eq!(data["type"], "webauthn.get");
    assert_eq!(data["challenge"], "Z2V0LWNoYWxsZW5nZS0xMjM0NTY3ODkw");
    assert_eq!(data["crossOrigin"], false);
    assert!(data.get("topOrigin").is_none());
    let json = assertion.to_json();
    assert!(json["response"].get("userHandle").is_none());
    assert_eq!(json["clientExtensionResults"], json!({}));
}

#[test]
fn zeroing_the_aaguid_for_none_is_a_knob() {
    let mut client = client_configured(
        Config::security_key(),
        fidelio_webauthn::ClientConfig {
            zero_aaguid_for_none_attestation: true,
            ..fidelio_webauthn::ClientConfig::default()
        },
    );
    let registration = create(
        &mut client,
        &caller(),
        &creation(json!({})),
        &mut Unattended,
    )
    .unwrap();
    assert_eq!(&registration.authenticator_data[37..53], &[0; 16]);
    let attestation = attestation_object(&registration);
    assert_eq!(member(&attestation, "fmt"), &Value::Text("none".into()));
    let direct = create(
        &mut client,
        &caller(),
        &creation(json!({"attestation": "direct"})),
        &mut Unattended,
    )
    .unwrap();
    assert_ne!(&direct.authenticator_data[37..53], &[0; 16]);
}

#[test]
fn direct_attestation_is_conveyed_unaltered() {
    let mut client = client();
    let registration = create(
        &mut client,
        &caller(),
        &creation(json!({"attestation": "direct"})),
        &mut Unattended,
    )
    .unwrap();
    let attestation = attestation_object(&registration);
    assert_eq!(member(&attestation, "fmt"), &Value::Text("packed".into()));
    assert!(matches!(member(&attestation, "attStmt"), Value::Map(m) if m.len() == 2));
    // The attestation object is canonical: fmt, attStmt, authData.
    assert_eq!(
        &registration.attestation_object[..5],
        &[0xa3, 0x63, b'f', b'm', b't']
    );
}

#[test]
fn attestation_formats_reach_the_authenticator() {
    let mut client = client();
    let registration = create(
        &mut client,
        &caller(),
        &creation(json!({"attestation": "direct", "attestationFormats": ["tpm", "none"]})),
        &mut Unattended,
    )
    .unwrap();
    let attestation = attestation_object(&registration);
    assert_eq!(member(&attestation, "fmt"), &Value::Text("none".into()));
}

/// An authenticator that answers every request with the same bytes.
struct Garbage(Vec<u8>);

impl fidelio_webauthn::Ctap2 for Garbage {
    async fn transact(
        &mut self,
        _: &[u8],
    ) -> Result<Vec<u8>, fidelio_webauthn::ctap::ChannelError> {
        Ok(self.0.clone())
    }
}

#[test]
fn hostile_authenticators_are_not_allowed_errors() {
    let info = {
        let mut device = common::client();
        let mut out = vec![0];
        let body = fidelio_webauthn::block_on(authenticator_core::Authenticator::process(
            device.ctap_mut(),
            &[0x04],
        ));
        out.extend_from_slice(&body[1..]);
        out
    };
    for answer in [
        vec![],
        vec![0x00],
        vec![0x00, 0xff],
        vec![0x00, 0xa0],
        vec![0x00, 0x81, 0x00],
        vec![0x2e],
        vec![0x00, 0xa1, 0x01, 0x61, 0x78],
        info,
    ] {
        let mut client = fidelio_webauthn::Client::new(
            Garbage(answer.clone()),
            <rand_chacha::ChaCha20Rng as rand_core::SeedableRng>::seed_from_u64(1),
            fidelio_webauthn::ClientConfig::default(),
        );
        let signal = fidelio_webauthn::AbortSignal::new();
        let created = fidelio_webauthn::block_on(client.create(
            &caller(),
            &creation(json!({"excludeCredentials": [{"type": "public-key", "id": "AQ"}]})),
            &mut Unattended,
            &signal,
        ));
        assert_eq!(
            created.unwrap_err().name,
            ErrorName::NotAllowedError,
            "{answer:?}"
        );
        let got = fidelio_webauthn::block_on(client.get(
            &caller(),
            &request(json!({"extensions": {"largeBlob": {"read": true}}})),
            &mut Unattended,
            &signal,
        ));
        assert_eq!(
            got.unwrap_err().name,
            ErrorName::NotAllowedError,
            "{answer:?}"
        );
    }
}

#[test]
fn default_algorithms_and_eddsa() {
    let mut client = client();
    // An empty pubKeyCredParams means ES256 then RS256; the core has ES256.
    let registration = create(
        &mut client,
        &caller(),
        &creation(json!({"pubKeyCredParams": []})),
        &mut Unattended,
    )
    .unwrap();
    assert_eq!(registration.public_key_algorithm, -7);
    // The RP's order decides; RS256 is skipped because the authenticator lacks it.
    let eddsa = create(
        &mut client,
        &caller(),
        &creation(json!({"pubKeyCredParams": [
            {"type": "public-key", "alg": -257},
            {"type": "public-key", "alg": -8},
            {"type": "public-key", "alg": -7},
        ]})),
        &mut Unattended,
    )
    .unwrap();
    assert_eq!(eddsa.public_key_algorithm, -8);
    assert_eq!(eddsa.public_key.as_ref().unwrap().len(), 44);
    let assertion = get(
        &mut client,
        &caller(),
        &request(json!({"allowCredentials": [{"type": "public-key", "id": fidelio_webauthn::b64(&eddsa.credential_id)}]})),
        &mut Unattended,
    )
    .unwrap();
    verify_assertion(&eddsa, &assertion);
}

#[test]
fn unsupported_algorithms() {
    let mut client = client();
    let name = |client: &mut TestClient, params| {
        create(
            client,
            &caller(),
            &creation(json!({"pubKeyCredParams": params})),
            &mut Unattended,
        )
        .unwrap_err()
        .name
    };
    assert_eq!(
        name(&mut client, json!([{"type": "public-key", "alg": -257}])),
        ErrorName::NotSupportedError
    );
    assert_eq!(
        name(&mut client, json!([{"type": "password", "alg": -7}])),
        ErrorName::NotSupportedError
    );
}

#[test]
fn user_ids_must_be_1_to_64_bytes() {
    let mut client = client();
    for id in ["", &fidelio_webauthn::b64(&[1; 65])] {
        let error = create(
            &mut client,
            &caller(),
            &creation(json!({"user": {"id": id, "name": "a", "displayName": "A"}})),
            &mut Unattended,
        )
        .unwrap_err();
        assert_eq!(error.name, ErrorName::TypeError, "{id}");
    }
    let ok = fidelio_webauthn::b64(&[1; 64]);
    create(
        &mut client,
        &caller(),
        &creation(json!({"user": {"id": ok, "name": "a", "displayName": "A"}})),
        &mut Unattended,
    )
    .unwrap();
}

#[test]
fn origins_and_rp_ids() {
    let mut client = client();
    let create_at = |client: &mut TestClient, origin: &str, rp_id: Option<&str>| {
        let mut options = creation(json!({}));
        match rp_id {
            Some(id) => options["rp"]["id"] = json!(id),
            None => {
                options["rp"].as_object_mut().unwrap().remove("id");
            }
        }
        let caller = Caller::new(origin).unwrap();
        create(client, &caller, &options, &mut Unattended).map(|r| r.authenticator_data)
    };
    // The default RP ID is the effective domain.
    let data = create_at(&mut client, "https://login.example.com:8443", None).unwrap();
    assert_eq!(
        &data[..32],
        &authenticator_core::authenticator::rp_id_hash("login.example.com")
    );
    // A registrable suffix is fine, localhost over http too.
    create_at(
        &mut client,
        "https://login.example.com",
        Some("example.com"),
    )
    .unwrap();
    create_at(&mut client, "http://localhost:3000", Some("localhost")).unwrap();
    create_at(&mut client, "http://app.localhost", None).unwrap();
    for (origin, rp_id, name) in [
        (
            "https://example.com",
            Some("other.com"),
            ErrorName::SecurityError,
        ),
        ("https://example.com", Some("com"), ErrorName::SecurityError),
        (
            "https://example.com",
            Some("login.example.com"),
            ErrorName::SecurityError,
        ),
        (
            "https://example.co.uk",
            Some("co.uk"),
            ErrorName::SecurityError,
        ),
        (
            "http://example.com",
            Some("example.com"),
            ErrorName::SecurityError,
        ),
        ("https://127.0.0.1", None, ErrorName::SecurityError),
        (
            "https://127.0.0.1",
            Some("127.0.0.1"),
            ErrorName::SecurityError,
        ),
        ("https://[::1]", None, ErrorName::SecurityError),
        (
            "http://app.localhost",
            Some("localhost"),
            ErrorName::SecurityError,
        ),
        ("null", Some("example.com"), ErrorName::NotAllowedError),
    ] {
        assert_eq!(
            create_at(&mut client, origin, rp_id).unwrap_err().name,
            name,
            "{origin} {rp_id:?}"
        );
    }
    // get() follows the same rules.
    let error = get(
        &mut client,
        &Caller::new("https://example.com").unwrap(),
        &request(json!({"rpId": "evil.com"})),
        &mut Unattended,
    )
    .unwrap_err();
    assert_eq!(error.name, ErrorName::SecurityError);
}

#[test]
fn cross_origin_frames() {
    let mut client = client();
    let framed = Caller::new("https://idp.example.com")
        .unwrap()
        .cross_origin("https://shop.example")
        .unwrap();
    let mut options = creation(json!({}));
    options["rp"]["id"] = json!("idp.example.com");
    let registration = create(&mut client, &framed, &options, &mut Unattended).unwrap();
    assert_eq!(
        std::str::from_utf8(&registration.client_data_json).unwrap(),
        r#"{"type":"webauthn.create","challenge":"Y3JlYXRlLWNoYWxsZW5nZS0xMjM0NTY3OA","origin":"https://idp.example.com","crossOrigin":true,"topOrigin":"https://shop.example"}"#
    );
    let assertion = get(
        &mut client,
        &framed,
        &request(json!({"rpId": "idp.example.com"})),
        &mut Unattended,
    );
    // Non-discoverable: an empty allowList finds nothing.
    assert_eq!(assertion.unwrap_err().name, ErrorName::NotAllowedError);
    // A cross-origin create() without user activation is refused.
    let idle = framed.with_transient_activation(false);
    assert_eq!(
        create(&mut client, &idle, &options, &mut Unattended)
            .unwrap_err()
            .name,
        ErrorName::NotAllowedError
    );
}

#[test]
fn exclude_credentials_is_invalid_state() {
    let mut client = client();
    let first = create(
        &mut client,
        &caller(),
        &creation(json!({})),
        &mut Unattended,
    )
    .unwrap();
    let id = fidelio_webauthn::b64(&first.credential_id);
    let error = create(
        &mut client,
        &caller(),
        &creation(json!({"excludeCredentials": [{"type": "public-key", "id": id}]})),
        &mut Unattended,
    )
    .unwrap_err();
    assert_eq!(error.name, ErrorName::InvalidStateError);
    // More than maxCredentialCountInList (16): the client probes silently and still finds it.
    let mut list: Vec<_> = (0..40u8)
        .map(|i| json!({"type": "public-key", "id": fidelio_webauthn::b64(&[i; 70])}))
        .collect();
    list.insert(33, json!({"type": "public-key", "id": id}));
    let error = create(
        &mut client,
        &caller(),
        &creation(json!({"excludeCredentials": list})),
        &mut Unattended,
    )
    .unwrap_err();
    assert_eq!(error.name, ErrorName::InvalidStateError);
    // Unknown credentials exclude nothing.
    list.remove(33);
    create(
        &mut client,
        &caller(),
        &creation(json!({"excludeCredentials": list})),
        &mut Unattended,
    )
    .unwrap();
}

#[test]
fn long_allow_lists_are_probed() {
    let mut client = client();
    let registration = create(
        &mut client,
        &caller(),
        &creation(json!({})),
        &mut Unattended,
    )
    .unwrap();
    let mut list: Vec<_> = (0..40u8)
        .map(|i| json!({"type": "public-key", "id": fidelio_webauthn::b64(&[i; 70])}))
        .collect();
    list.push(
        json!({"type": "public-key", "id": fidelio_webauthn::b64(&registration.credential_id)}),
    );
    let assertion = get(
        &mut client,
        &caller(),
        &request(json!({"allowCredentials": list})),
        &mut Unattended,
    )
    .unwrap();
    assert_eq!(assertion.credential_id, registration.credential_id);
    verify_assertion(&registration, &assertion);
    list.pop();
    assert_eq!(
        get(
            &mut client,
            &caller(),
            &request(json!({"allowCredentials": list})),
            &mut Unattended
        )
        .unwrap_err()
        .name,
        ErrorName::NotAllowedError
    );
}

/// Picks the account with this user handle (names are only returned after user
/// verification, CTAP 2.1 §6.2.2).
struct Picks(&'static [u8], Vec<Account>);

impl UserInterface for Picks {
    fn choose_account(&mut self, accounts: &[Account]) -> Option<usize> {
        self.1 = accounts.to_vec();
        accounts
            .iter()
            .position(|a| a.user_id.as_deref() == Some(self.0))
    }
}

#[test]
fn discoverable_credentials_and_account_choice() {
    let mut client = client();
    let mut registrations = Vec::new();
    for (id, name) in [
        ("dXNlci0x", "One"),
        ("dXNlci0y", "Two"),
        ("dXNlci0z", "Three"),
    ] {
        let registration = create(
            &mut client,
            &caller(),
            &creation(json!({
                "user": {"id": id, "name": name, "displayName": name},
                "authenticatorSelection": {"residentKey": "required"},
                "extensions": {"credProps": true},
            })),
            &mut Unattended,
        )
        .unwrap();
        assert_eq!(
            registration.client_extension_results["credProps"],
            json!({"rk": true})
        );
        registrations.push(registration);
    }
    let mut ui = Picks(b"user-2", Vec::new());
    let assertion = get(&mut client, &caller(), &request(json!({})), &mut ui).unwrap();
    assert_eq!(ui.1.len(), 3);
    assert!(ui.1.iter().all(|a| a.name.is_none()));
    assert_eq!(assertion.user_handle.as_deref(), Some(&b"user-2"[..]));
    assert_eq!(assertion.credential_id, registrations[1].credential_id);
    verify_assertion(&registrations[1], &assertion);
    assert_eq!(assertion.to_json()["response"]["userHandle"], "dXNlci0y");
    // Cancelling the account chooser is NotAllowedError.
    let mut nobody = Picks(b"nobody", Vec::new());
    assert_eq!(
        get(&mut client, &caller(), &request(json!({})), &mut nobody)
            .unwrap_err()
            .name,
        ErrorName::NotAllowedError
    );
}

#[test]
fn resident_key_preferences() {
    let mut client = client();
    let rk = |client: &mut TestClient, selection| {
        create(
            client,
            &caller(),
            &creation(
                json!({"authenticatorSelection": selection, "extensions": {"credProps": true}}),
            ),
            &mut Unattended,
        )
        .unwrap()
        .client_extension_results["credProps"]["rk"]
            .clone()
    };
    assert_eq!(
        rk(&mut client, json!({"residentKey": "preferred"})),
        json!(true)
    );
    assert_eq!(
        rk(&mut client, json!({"residentKey": "discouraged"})),
        json!(false)
    );
    assert_eq!(
        rk(&mut client, json!({"requireResidentKey": true})),
        json!(true)
    );
    assert_eq!(rk(&mut client, json!({})), json!(false));
    // residentKey wins over requireResidentKey; unknown values count as absent.
    assert_eq!(
        rk(
            &mut client,
            json!({"residentKey": "discouraged", "requireResidentKey": true})
        ),
        json!(false)
    );
    assert_eq!(
        rk(
            &mut client,
            json!({"residentKey": "maybe", "requireResidentKey": true})
        ),
        json!(true)
    );
}

#[test]
fn attachment_mismatch_and_constraints() {
    let mut client = client();
    let error = create(
        &mut client,
        &caller(),
        &creation(json!({"authenticatorSelection": {"authenticatorAttachment": "platform"}})),
        &mut Unattended,
    )
    .unwrap_err();
    assert_eq!(error.name, ErrorName::NotAllowedError);
    // A platform authenticator answers "platform".
    let mut platform = client_with(Config::platform());
    let registration = create(
        &mut platform,
        &caller(),
        &creation(json!({"authenticatorSelection": {"authenticatorAttachment": "platform"}})),
        &mut Unattended,
    )
    .unwrap();
    assert_eq!(
        registration.to_json()["authenticatorAttachment"],
        "platform"
    );
    assert_eq!(registration.transports, vec!["internal"]);
}

#[test]
fn synced_passkeys_carry_backup_flags() {
    let mut client = client_with(Config::synced_passkey());
    let registration = create(
        &mut client,
        &caller(),
        &creation(json!({})),
        &mut Unattended,
    )
    .unwrap();
    assert_eq!(flags(&registration.authenticator_data), UP | AT | BE | BS);
    assert_eq!(registration.transports, vec!["hybrid", "internal"]);
}

/// A user who types the given PINs in turn and records the prompts.
struct Types(Vec<&'static str>, Vec<(u32, Option<u64>)>);

impl UserInterface for Types {
    fn pin(&mut self, request: &PinRequest<'_>) -> Option<Zeroizing<String>> {
        self.1.push((request.attempt, request.retries));
        if self.0.is_empty() {
            return None;
        }
        Some(Zeroizing::new(self.0.remove(0).to_owned()))
    }
}

#[test]
fn pin_user_verification() {
    let mut client = client();
    set_pin(&mut client, "1234");
    // A PIN is set: "preferred" verifies, with the PIN.
    let registration = create(
        &mut client,
        &caller(),
        &creation(json!({})),
        &mut KnownPin::new("1234"),
    )
    .unwrap();
    assert_eq!(flags(&registration.authenticator_data), UP | UV | AT);
    // No PIN typed: NotAllowedError.
    assert_eq!(
        create(
            &mut client,
            &caller(),
            &creation(json!({})),
            &mut Unattended
        )
        .unwrap_err()
        .name,
        ErrorName::NotAllowedError
    );
    // "discouraged" on a security key that allows it (makeCredUvNotRqd): no PIN needed.
    let quiet = create(
        &mut client,
        &caller(),
        &creation(json!({"authenticatorSelection": {"userVerification": "discouraged"}})),
        &mut Unattended,
    )
    .unwrap();
    assert_eq!(flags(&quiet.authenticator_data), UP | AT);
    // A discoverable credential on a protected authenticator always verifies the user.
    let mut ui = Types(vec!["0000", "1234"], Vec::new());
    let discoverable = create(
        &mut client,
        &caller(),
        &creation(json!({"authenticatorSelection": {"residentKey": "required", "userVerification": "discouraged"}})),
        &mut ui,
    )
    .unwrap();
    assert_eq!(flags(&discoverable.authenticator_data), UP | UV | AT);
    // One wrong PIN, then the right one; the prompt saw the retries drop.
    assert_eq!(ui.1, vec![(1, Some(8)), (2, Some(7))]);

    // get() with "required": verified; with "discouraged": presence only.
    let allow =
        json!([{"type": "public-key", "id": fidelio_webauthn::b64(&registration.credential_id)}]);
    let verified = get(
        &mut client,
        &caller(),
        &request(json!({"allowCredentials": allow, "userVerification": "required"})),
        &mut KnownPin::new("1234"),
    )
    .unwrap();
    assert_eq!(flags(&verified.authenticator_data), UP | UV);
    verify_assertion(&registration, &verified);
    let present = get(
        &mut client,
        &caller(),
        &request(json!({"allowCredentials": allow, "userVerification": "discouraged"})),
        &mut Unattended,
    )
    .unwrap();
    assert_eq!(flags(&present.authenticator_data), UP);
    // Wrong PINs end the ceremony (the third in a row blocks PIN entry until a power cycle).
    let mut wrong = Types(vec!["1111", "2222", "3333"], Vec::new());
    let error = get(
        &mut client,
        &caller(),
        &request(json!({"allowCredentials": allow, "userVerification": "required"})),
        &mut wrong,
    )
    .unwrap_err();
    assert_eq!(error.name, ErrorName::NotAllowedError);
    assert!(
        error.message.contains("PIN_AUTH_BLOCKED"),
        "{}",
        error.message
    );
    assert_eq!(wrong.1, vec![(1, Some(8)), (2, Some(7)), (3, Some(6))]);
    // After a power cycle the right PIN works again.
    client.ctap_mut().power_cycle();
    get(
        &mut client,
        &caller(),
        &request(json!({"allowCredentials": allow, "userVerification": "required"})),
        &mut KnownPin::new("1234"),
    )
    .unwrap();
}

#[test]
fn wrong_pins_up_to_the_limit() {
    let mut client = client();
    set_pin(&mut client, "1234");
    let mut wrong = Types(vec!["1111", "2222"], Vec::new());
    let error = create(&mut client, &caller(), &creation(json!({})), &mut wrong).unwrap_err();
    assert_eq!(error.name, ErrorName::NotAllowedError);
    // The user gave up at the third prompt.
    assert_eq!(wrong.1.len(), 3);
    assert!(error.message.contains("cancelled"), "{}", error.message);
}

#[test]
fn user_verification_required_without_any_method() {
    let mut client = client();
    let error = get(
        &mut client,
        &caller(),
        &request(json!({"userVerification": "required"})),
        &mut Unattended,
    )
    .unwrap_err();
    assert_eq!(error.name, ErrorName::NotAllowedError);
    let error = create(
        &mut client,
        &caller(),
        &creation(json!({"authenticatorSelection": {"userVerification": "required"}})),
        &mut Unattended,
    )
    .unwrap_err();
    // The authenticator could verify (it supports clientPin) but has no PIN set.
    assert_eq!(error.name, ErrorName::NotAllowedError);
}

#[test]
fn built_in_user_verification_uses_the_uv_option() {
    let mut client = client_with(Config::platform());
    client.ctap_mut().platform_mut().presence.built_in_uv = BuiltInUv::Configured;
    let registration = create(
        &mut client,
        &caller(),
        &creation(json!({"authenticatorSelection": {"userVerification": "required", "residentKey": "required"}})),
        &mut Unattended,
    )
    .unwrap();
    assert_eq!(flags(&registration.authenticator_data), UP | UV | AT);
    let assertion = get(
        &mut client,
        &caller(),
        &request(json!({"userVerification": "required"})),
        &mut Unattended,
    )
    .unwrap();
    assert_eq!(flags(&assertion.authenticator_data), UP | UV);
    assert_eq!(assertion.user_handle.as_deref(), Some(&b"alice"[..]));
    verify_assertion(&registration, &assertion);
}

#[test]
fn hostile_options_never_panic() {
    let mut client = client();
    for options in [
        json!(null),
        json!([]),
        json!({"rp": 1}),
        json!({"rp": {"name": "x"}, "user": {"id": "AQ", "name": "a", "displayName": "b"}, "challenge": "!!", "pubKeyCredParams": []}),
        creation(json!({"pubKeyCredParams": [{"type": "public-key", "alg": 1e300}]})),
        creation(json!({"excludeCredentials": [{"type": "public-key", "id": ""}]})),
        creation(json!({"timeout": 0})),
        creation(json!({"extensions": {"prf": {"eval": {"first": ""}}, "credBlob": ""}})),
    ] {
        let _ = create(&mut client, &caller(), &options, &mut Unattended);
        let _ = get(&mut client, &caller(), &options, &mut Unattended);
    }
    for options in [
        request(json!({"allowCredentials": [{"type": "public-key", "id": ""}]})),
        request(json!({"allowCredentials": [{"type": "other", "id": "AQ"}]})),
        request(
            json!({"extensions": {"largeBlob": {"read": true}, "getCredBlob": true, "prf": {"eval": {"first": "AA"}}}}),
        ),
    ] {
        let error = get(&mut client, &caller(), &options, &mut Unattended).unwrap_err();
        assert_eq!(error.name, ErrorName::NotAllowedError, "{options}");
    }
}
