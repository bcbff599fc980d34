//! The control API (`/v1/control/…` on the browser gateway) over real HTTP against
//! `serve_until`: a credential added with a PKCS#8 key made here by `p256` signs assertions
//! over the UDP lane and through the gateway, verified with that key's public half; exports
//! give the key material back byte for byte; events are observed; authenticator options,
//! user verification and presence take effect; and wrong or hostile requests get errors.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed expectation should stop the test"
)]

mod common;

use common::http::{
    Daemon, TOKEN, b64, control, enc, gateway_call, http, refused, sign_count, start,
    verify_assertion,
};

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use authenticator_core::Config;
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey};
use serde_json::{Value as Json, json};
use sha2::{Digest, Sha256};

const DEVICE: &str = "/v1/control/authenticator/default";

/// A P-256 key made here: its PKCS#8 DER and its verifying key.
fn p256_key(seed: u8) -> (Vec<u8>, p256::ecdsa::VerifyingKey) {
    let secret = p256::SecretKey::from_slice(&Sha256::digest([seed, 0x5A])).unwrap();
    let der = secret.to_pkcs8_der().unwrap().as_bytes().to_vec();
    let verifying = p256::ecdsa::VerifyingKey::from(secret.public_key());
    (der, verifying)
}

/// A discoverable login over the UDP lane (fidelio-webauthn's client, as python-fido2 would).
fn login_over_udp(daemon: &Daemon, rp_id: &str) -> Json {
    let hid = fidelio_client::CtapHidClient::new(
        fidelio_client::UdpTransport::connect(daemon.udp).unwrap(),
    );
    let mut client = fidelio_webauthn::Client::new(
        hid,
        <rand_chacha::ChaCha20Rng as rand_core::SeedableRng>::seed_from_u64(3),
        fidelio_webauthn::ClientConfig::default(),
    );
    client
        .get_blocking(
            &fidelio_webauthn::Caller::new(&format!("https://{rp_id}")).unwrap(),
            &json!({"rpId": rp_id, "challenge": enc(b"udp-challenge")}),
            &mut fidelio_webauthn::Unattended,
            &fidelio_webauthn::AbortSignal::new(),
        )
        .unwrap()
        .to_json()
}

fn events_after(address: SocketAddr, after: u64, timeout_ms: u64) -> (Vec<Json>, u64) {
    let answer = control(
        address,
        "GET",
        &format!("/v1/control/events?after={after}&timeout={timeout_ms}"),
        &Json::Null,
    );
    (
        answer["events"].as_array().unwrap().clone(),
        answer["next"].as_u64().unwrap(),
    )
}

#[test]
fn an_added_credential_signs_over_udp_and_the_gateway_and_exports_byte_identical() {
    let daemon = start(Config::security_key());
    let (pkcs8, key) = p256_key(1);
    let credential_id = b"imported-credential-0001".to_vec();
    let added = control(
        daemon.gateway,
        "POST",
        &format!("{DEVICE}/credential"),
        &json!({
            "credentialId": enc(&credential_id),
            "isResidentCredential": true,
            "rpId": "example.com",
            "privateKey": enc(&pkcs8),
            "userHandle": enc(b"user-42"),
            "signCount": 10,
            "userName": "alice@example.com",
            "userDisplayName": "Alice",
        }),
    );
    assert_eq!(added["credentialId"], enc(&credential_id));
    assert!(
        added.get("privateKey").is_none(),
        "no key in the add answer"
    );

    // Over UDP: discovered, signed with the imported key, counted from 10.
    let over_udp = login_over_udp(&daemon, "example.com");
    assert_eq!(over_udp["id"], enc(&credential_id));
    assert_eq!(b64(&over_udp["response"]["userHandle"]), b"user-42");
    assert_eq!(sign_count(&verify_assertion(&over_udp, &key)), 11);

    // Through the gateway, by allowCredentials.
    let through_gateway = gateway_call(
        daemon.gateway,
        "/v1/get",
        &json!({"origin": "https://example.com", "options": {
            "rpId": "example.com", "challenge": enc(b"gateway-challenge"),
            "allowCredentials": [{"type": "public-key", "id": enc(&credential_id)}]}}),
    );
    assert_eq!(
        sign_count(&verify_assertion(&through_gateway["ok"], &key)),
        12
    );

    // Exported: the PKCS#8 bytes given, and the rest of the shape.
    let listed = control(
        daemon.gateway,
        "GET",
        &format!("{DEVICE}/credentials"),
        &Json::Null,
    );
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 1);
    let exported = &listed[0];
    assert_eq!(b64(&exported["privateKey"]), pkcs8, "byte-identical key");
    assert_eq!(exported["isResidentCredential"], true);
    assert_eq!(exported["rpId"], "example.com");
    assert_eq!(b64(&exported["userHandle"]), b"user-42");
    assert_eq!(exported["signCount"], 12);
    assert_eq!(exported["userName"], "alice@example.com");
    assert_eq!(exported["userDisplayName"], "Alice");
    assert_eq!(exported["backupEligibility"], false);
    assert_eq!(exported["algorithm"], -7);
    assert_eq!(exported["imported"], true);
    let one = control(
        daemon.gateway,
        "GET",
        &format!("{DEVICE}/credentials/{}", enc(&credential_id)),
        &Json::Null,
    );
    assert_eq!(&one, exported);

    // Re-imported elsewhere: the export is an import.
    let other = start(Config::security_key());
    control(
        other.gateway,
        "POST",
        &format!("{DEVICE}/credential"),
        exported,
    );
    let again = control(
        other.gateway,
        "GET",
        &format!("{DEVICE}/credentials"),
        &Json::Null,
    );
    assert_eq!(&again[0], exported);
    assert_eq!(
        sign_count(&verify_assertion(
            &login_over_udp(&other, "example.com"),
            &key
        )),
        13
    );
}

#[test]
fn credentials_made_by_ceremonies_are_listed_with_their_keys() {
    let daemon = start(Config::security_key());
    let create = |resident: &str, user: &[u8]| {
        gateway_call(
            daemon.gateway,
            "/v1/create",
            &json!({"origin": "https://example.com", "options": {
                "rp": {"id": "example.com", "name": "Example"},
                "user": {"id": enc(user), "name": "bob", "displayName": "Bob"},
                "challenge": enc(b"c"),
                "pubKeyCredParams": [{"type": "public-key", "alg": -7}],
                "authenticatorSelection": {"residentKey": resident}}}),
        )["ok"]
            .clone()
    };
    let resident = create("required", b"bob-1");
    let plain = create("discouraged", b"bob-2");
    let listed = control(
        daemon.gateway,
        "GET",
        &format!("{DEVICE}/credentials"),
        &Json::Null,
    );
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 2);
    for (registration, discoverable) in [(&resident, true), (&plain, false)] {
        let exported = listed
            .iter()
            .find(|c| c["credentialId"] == registration["id"])
            .expect("listed");
        assert_eq!(exported["isResidentCredential"], discoverable);
        assert_eq!(exported["imported"], false);
        // The exported private key's public half is the registered one.
        let secret = p256::SecretKey::from_pkcs8_der(&b64(&exported["privateKey"])).unwrap();
        let registered =
            p256::PublicKey::from_public_key_der(&b64(&registration["response"]["publicKey"]))
                .unwrap();
        assert_eq!(secret.public_key(), registered);
    }
    // Removing the non-discoverable one ends it: the RP cannot use it any more.
    control(
        daemon.gateway,
        "DELETE",
        &format!("{DEVICE}/credentials/{}", plain["id"].as_str().unwrap()),
        &Json::Null,
    );
    let gone = gateway_call(
        daemon.gateway,
        "/v1/get",
        &json!({"origin": "https://example.com", "options": {
            "rpId": "example.com", "challenge": enc(b"x"),
            "allowCredentials": [{"type": "public-key", "id": plain["id"]}]}}),
    );
    assert_eq!(gone["error"]["name"], "NotAllowedError", "{gone}");
    // Remove all: nothing left.
    let removed = control(
        daemon.gateway,
        "DELETE",
        &format!("{DEVICE}/credentials"),
        &Json::Null,
    );
    assert_eq!(removed["removed"], 1);
    assert_eq!(
        control(
            daemon.gateway,
            "GET",
            &format!("{DEVICE}/credentials"),
            &Json::Null
        ),
        json!([])
    );
}

#[test]
fn events_are_observed_by_long_poll() {
    let daemon = start(Config::security_key());
    // Nothing yet: an empty answer after the timeout.
    let started = Instant::now();
    let (events, next) = events_after(daemon.gateway, 0, 200);
    assert!(events.is_empty());
    assert_eq!(next, 0);
    assert!(started.elapsed() >= Duration::from_millis(150));

    // A poller waiting when the credential arrives is woken at once.
    let gateway = daemon.gateway;
    let poller = std::thread::spawn(move || events_after(gateway, 0, 30_000));
    std::thread::sleep(Duration::from_millis(100));
    let (pkcs8, key) = p256_key(2);
    let credential_id = enc(b"evented");
    control(
        daemon.gateway,
        "POST",
        &format!("{DEVICE}/credential"),
        &json!({"credentialId": credential_id, "isResidentCredential": true,
            "rpId": "example.com", "privateKey": enc(&pkcs8), "userHandle": enc(b"u")}),
    );
    let (events, next) = poller.join().unwrap();
    assert_eq!(events[0]["type"], "credentialAdded");
    assert_eq!(events[0]["source"], "control");
    assert_eq!(events[0]["credential"]["credentialId"], credential_id);
    assert!(events[0]["credential"].get("privateKey").is_none());

    // A ceremony over UDP, a registration through the gateway, a removal.
    verify_assertion(&login_over_udp(&daemon, "example.com"), &key);
    gateway_call(
        daemon.gateway,
        "/v1/create",
        &json!({"origin": "https://example.com", "options": {
            "rp": {"id": "example.com", "name": "Example"},
            "user": {"id": enc(b"v"), "name": "v", "displayName": "V"},
            "challenge": enc(b"c"),
            "pubKeyCredParams": [{"type": "public-key", "alg": -7}]}}),
    );
    control(
        daemon.gateway,
        "POST",
        &format!("{DEVICE}/credentials/{credential_id}/props"),
        &json!({"backupEligibility": true, "backupState": true}),
    );
    control(
        daemon.gateway,
        "DELETE",
        &format!("{DEVICE}/credentials/{credential_id}"),
        &Json::Null,
    );
    let mut seen = Vec::new();
    let mut after = next;
    while seen.len() < 4 {
        let (events, next) = events_after(daemon.gateway, after, 10_000);
        assert!(!events.is_empty(), "events stopped after {seen:?}");
        seen.extend(events);
        after = next;
    }
    let kinds: Vec<(&str, &str, Option<&str>)> = seen
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap(),
                e["source"].as_str().unwrap(),
                e["lane"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("credentialAsserted", "ctap", Some("udp")),
            ("credentialAdded", "ctap", Some("gateway")),
            ("credentialUpdated", "control", None),
            ("credentialDeleted", "control", None),
        ]
    );
    assert_eq!(seen[0]["credential"]["credentialId"], credential_id);
    assert_eq!(seen[0]["credential"]["rpId"], "example.com");
    assert_eq!(seen[0]["credential"]["signCount"], 1);
    assert_eq!(seen[1]["credential"]["isResidentCredential"], false);
    assert_eq!(seen[1]["credential"]["rpId"], "example.com");
    assert_eq!(seen[2]["credential"]["backupState"], true);
    // Numbered in order, without gaps.
    let numbers: Vec<u64> = seen.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(numbers, [2, 3, 4, 5]);
}

#[test]
fn authenticator_options_user_verification_and_presence() {
    let daemon = start(Config::security_key());
    let describe = || control(daemon.gateway, "GET", DEVICE, &Json::Null);
    assert_eq!(describe()["added"], false);
    assert_eq!(describe()["hasResidentKey"], true);
    let listed = control(
        daemon.gateway,
        "GET",
        "/v1/control/authenticator",
        &Json::Null,
    );
    assert_eq!(listed[0]["authenticatorId"], "default");

    // A credential before the add: the add wipes it.
    let (pkcs8, _) = p256_key(3);
    control(
        daemon.gateway,
        "POST",
        &format!("{DEVICE}/credential"),
        &json!({"credentialId": enc(b"before"), "isResidentCredential": false,
            "rpId": "example.com", "privateKey": enc(&pkcs8)}),
    );
    let added = control(
        daemon.gateway,
        "POST",
        "/v1/control/authenticator",
        &json!({"protocol": "ctap2_1", "transport": "internal", "hasResidentKey": true,
            "hasUserVerification": true, "isUserVerified": true,
            "defaultBackupEligibility": true, "defaultBackupState": true}),
    );
    assert_eq!(added["authenticatorId"], "default");
    assert_eq!(
        control(
            daemon.gateway,
            "GET",
            &format!("{DEVICE}/credentials"),
            &Json::Null
        ),
        json!([])
    );
    let properties = describe();
    assert_eq!(properties["added"], true);
    assert_eq!(properties["transport"], "internal");
    assert_eq!(properties["hasUserVerification"], true);
    assert_eq!(
        gateway_call(daemon.gateway, "/v1/isUvpaa", &json!({})),
        json!({"ok": true})
    );
    // A second add: a second device, listed, and removed again by WebDriver's remove.
    let second = control(
        daemon.gateway,
        "POST",
        "/v1/control/authenticator",
        &json!({"hasResidentKey": true}),
    );
    let second_id = second["authenticatorId"].as_str().unwrap().to_owned();
    assert_ne!(second_id, "default");
    let listed = control(
        daemon.gateway,
        "GET",
        "/v1/control/authenticator",
        &Json::Null,
    );
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    control(
        daemon.gateway,
        "DELETE",
        &format!("/v1/control/authenticator/{second_id}"),
        &Json::Null,
    );
    refused(
        daemon.gateway,
        "GET",
        &format!("/v1/control/authenticator/{second_id}"),
        b"",
        404,
    );

    // UV required: the built-in method verifies; the new credential carries BE and BS.
    let create = |user: &[u8]| {
        gateway_call(
            daemon.gateway,
            "/v1/create",
            &json!({"origin": "https://example.com", "options": {
                "rp": {"id": "example.com", "name": "Example"},
                "user": {"id": enc(user), "name": "x", "displayName": "X"},
                "challenge": enc(b"c"),
                "pubKeyCredParams": [{"type": "public-key", "alg": -7}],
                "authenticatorSelection": {"residentKey": "required", "userVerification": "required"},
                "timeout": 10_000}}),
        )
    };
    let made = create(b"x1");
    let auth_data = b64(&made["ok"]["response"]["authenticatorData"]);
    assert_eq!(auth_data[32] & 0x1D, 0x1D, "UP UV BE BS");

    // Set User Verified false: UV fails, the ceremony with it.
    control(
        daemon.gateway,
        "POST",
        &format!("{DEVICE}/uv"),
        &json!({"isUserVerified": false}),
    );
    assert_eq!(create(b"x2")["error"]["name"], "NotAllowedError");
    control(
        daemon.gateway,
        "POST",
        &format!("{DEVICE}/uv"),
        &json!({"isUserVerified": true}),
    );
    // Presence refused: every ceremony is refused.
    control(
        daemon.gateway,
        "POST",
        &format!("{DEVICE}/presence"),
        &json!({"isUserConsenting": false}),
    );
    assert_eq!(describe()["isUserConsenting"], false);
    assert_eq!(create(b"x3")["error"]["name"], "NotAllowedError");
    control(
        daemon.gateway,
        "POST",
        &format!("{DEVICE}/presence"),
        &json!({"isUserConsenting": true}),
    );
    assert!(create(b"x4")["ok"].is_object());

    // Remove: wiped, the start-up settings back.
    control(daemon.gateway, "DELETE", DEVICE, &Json::Null);
    let properties = describe();
    assert_eq!(properties["added"], false);
    assert_eq!(properties["transport"], "usb");
    assert_eq!(properties["hasUserVerification"], false);
    assert_eq!(
        control(
            daemon.gateway,
            "GET",
            &format!("{DEVICE}/credentials"),
            &Json::Null
        ),
        json!([])
    );

    // Without resident keys, a discoverable registration is refused.
    control(
        daemon.gateway,
        "POST",
        "/v1/control/authenticator",
        &json!({"protocol": "ctap2", "transport": "usb"}),
    );
    assert_eq!(describe()["hasResidentKey"], false);
    let refused_rk = gateway_call(
        daemon.gateway,
        "/v1/create",
        &json!({"origin": "https://example.com", "options": {
            "rp": {"id": "example.com", "name": "Example"},
            "user": {"id": enc(b"y"), "name": "y", "displayName": "Y"},
            "challenge": enc(b"c"),
            "pubKeyCredParams": [{"type": "public-key", "alg": -7}],
            "authenticatorSelection": {"residentKey": "required"},
            "timeout": 10_000}}),
    );
    assert!(refused_rk["error"]["name"].is_string(), "{refused_rk}");
}

#[test]
fn large_blobs_and_backup_flags() {
    let daemon = start(Config::security_key());
    let (pkcs8, key) = p256_key(4);
    let id = enc(b"with-a-blob");
    control(
        daemon.gateway,
        "POST",
        &format!("{DEVICE}/credential"),
        &json!({"credentialId": id, "isResidentCredential": true, "rpId": "example.com",
            "privateKey": enc(&pkcs8), "userHandle": enc(b"blob-user"),
            "largeBlob": enc(b"a large blob, for the browser to read")}),
    );
    let exported = control(
        daemon.gateway,
        "GET",
        &format!("{DEVICE}/credentials/{id}"),
        &Json::Null,
    );
    assert_eq!(
        b64(&exported["largeBlob"]),
        b"a large blob, for the browser to read"
    );
    // A WebAuthn client reads it with the largeBlob extension.
    let read = gateway_call(
        daemon.gateway,
        "/v1/get",
        &json!({"origin": "https://example.com", "options": {
            "rpId": "example.com", "challenge": enc(b"r"),
            "extensions": {"largeBlob": {"read": true}}}}),
    );
    assert_eq!(
        b64(&read["ok"]["clientExtensionResults"]["largeBlob"]["blob"]),
        b"a large blob, for the browser to read",
        "{read}"
    );
    verify_assertion(&read["ok"], &key);

    // Backup flags per credential.
    control(
        daemon.gateway,
        "POST",
        &format!("{DEVICE}/credentials/{id}/props"),
        &json!({"backupEligibility": true, "backupState": false}),
    );
    let login = gateway_call(
        daemon.gateway,
        "/v1/get",
        &json!({"origin": "https://example.com", "options": {
            "rpId": "example.com", "challenge": enc(b"r")}}),
    );
    let auth_data = verify_assertion(&login["ok"], &key);
    assert_eq!(auth_data[32] & 0x18, 0x08, "BE, not BS");

    // Removing it removes its blob from the array too.
    control(
        daemon.gateway,
        "DELETE",
        &format!("{DEVICE}/credentials/{id}"),
        &Json::Null,
    );
}

#[test]
fn wrong_or_hostile_requests_are_refused() {
    let daemon = start(Config::security_key());
    let path = format!("{DEVICE}/credentials");
    // No token, a wrong one: 401 before anything else.
    assert_eq!(http(daemon.gateway, "GET", &path, None, b"").0, 401);
    assert_eq!(
        http(
            daemon.gateway,
            "GET",
            &path,
            Some("control-token-0123456789abcdeX"),
            b""
        )
        .0,
        401
    );
    assert_eq!(
        http(
            daemon.gateway,
            "GET",
            "/v1/control/events",
            Some("wrong"),
            b""
        )
        .0,
        401
    );
    let add = format!("{DEVICE}/credential");
    // Garbage and wrong shapes: 400.
    for body in [
        &b"garbage"[..],
        b"[]",
        b"{\"credentialId\": 5}",
        b"{\"credentialId\": \"AQ\", \"isResidentCredential\": true, \"rpId\": \"a\", \"privateKey\": \"!!\"}",
        b"{\"credentialId\": \"AQ\", \"isResidentCredential\": true, \"rpId\": \"a\", \"privateKey\": \"AAAA\", \"userHandle\": \"dQ\"}",
        b"{\"credentialId\": \"AQ\", \"isResidentCredential\": \"yes\"}",
        b"\xff\xfe",
    ] {
        refused(daemon.gateway, "POST", &add, body, 400);
    }
    let (pkcs8, _) = p256_key(5);
    let good = json!({"credentialId": enc(b"dup"), "isResidentCredential": true,
        "rpId": "example.com", "privateKey": enc(&pkcs8), "userHandle": enc(b"u")});
    // A discoverable credential without a user handle, an ID too long, a negative counter.
    let mut no_user = good.clone();
    no_user.as_object_mut().unwrap().remove("userHandle");
    refused(
        daemon.gateway,
        "POST",
        &add,
        no_user.to_string().as_bytes(),
        400,
    );
    let mut long_id = good.clone();
    long_id["credentialId"] = json!(enc(&[7; 1024]));
    refused(
        daemon.gateway,
        "POST",
        &add,
        long_id.to_string().as_bytes(),
        400,
    );
    let mut negative = good.clone();
    negative["signCount"] = json!(-3);
    refused(
        daemon.gateway,
        "POST",
        &add,
        negative.to_string().as_bytes(),
        400,
    );
    // A key of another curve (P-384 PKCS#8 prefix), truncated: 400.
    let mut wrong_key = good.clone();
    wrong_key["privateKey"] = json!(enc(&pkcs8[..60]));
    refused(
        daemon.gateway,
        "POST",
        &add,
        wrong_key.to_string().as_bytes(),
        400,
    );
    // Twice: 409.
    control(daemon.gateway, "POST", &add, &good);
    let exists = refused(
        daemon.gateway,
        "POST",
        &add,
        good.to_string().as_bytes(),
        409,
    );
    assert_eq!(exists["name"], "CredentialExists");
    // Unknown things: 404; wrong methods: 405.
    refused(
        daemon.gateway,
        "GET",
        "/v1/control/authenticator/other/credentials",
        b"",
        404,
    );
    refused(daemon.gateway, "GET", "/v1/control/nothing", b"", 404);
    refused(daemon.gateway, "GET", "/v1/controlx", b"", 404);
    refused(
        daemon.gateway,
        "GET",
        &format!("{DEVICE}/credentials/{}", enc(b"absent")),
        b"",
        404,
    );
    refused(
        daemon.gateway,
        "DELETE",
        &format!("{DEVICE}/credentials/{}", enc(b"absent")),
        b"",
        404,
    );
    refused(
        daemon.gateway,
        "POST",
        &format!("{DEVICE}/credentials/{}/props", enc(b"absent")),
        b"{}",
        404,
    );
    refused(
        daemon.gateway,
        "GET",
        &format!("{DEVICE}/credentials/!!!"),
        b"",
        400,
    );
    refused(daemon.gateway, "PUT", &format!("{DEVICE}/uv"), b"{}", 405);
    refused(daemon.gateway, "POST", &format!("{DEVICE}/uv"), b"{}", 400);
    refused(
        daemon.gateway,
        "POST",
        &format!("{DEVICE}/uv"),
        b"{\"isUserVerified\": 1}",
        400,
    );
    refused(
        daemon.gateway,
        "POST",
        "/v1/control/authenticator",
        b"{\"protocol\": \"u2f\"}",
        409,
    );
    refused(
        daemon.gateway,
        "GET",
        "/v1/control/events?after=x",
        b"",
        400,
    );
    // Still serving, and the credential is intact.
    let listed = control(daemon.gateway, "GET", &path, &Json::Null);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(b64(&listed[0]["privateKey"]), pkcs8);
}

/// Adds a P-256 credential made from `seed`; returns its verifying key.
fn add_p256(
    daemon: &Daemon,
    seed: u8,
    id: &[u8],
    rp_id: &str,
    resident: bool,
) -> p256::ecdsa::VerifyingKey {
    let (pkcs8, key) = p256_key(seed);
    control(
        daemon.gateway,
        "POST",
        &format!("{DEVICE}/credential"),
        &json!({
            "credentialId": enc(id), "isResidentCredential": resident, "rpId": rp_id,
            "privateKey": enc(&pkcs8), "userHandle": enc(&[seed]), "signCount": 0,
            "userName": format!("user{seed}@{rp_id}"),
        }),
    );
    key
}

/// The waiting conditional requests, after waiting up to `wait_ms` for one to appear.
fn conditional_requests(daemon: &Daemon, wait_ms: u64) -> Vec<Json> {
    control(
        daemon.gateway,
        "GET",
        &format!("/v1/control/conditional?wait={wait_ms}"),
        &Json::Null,
    )
    .as_array()
    .unwrap()
    .clone()
}

#[test]
fn conditional_get_waits_until_the_test_picks_an_account() {
    let daemon = start(Config::security_key());
    let _alice = add_p256(&daemon, 1, b"cred-alice", "example.com", true);
    let bob = add_p256(&daemon, 2, b"cred-bob", "example.com", true);
    add_p256(&daemon, 3, b"cred-hidden", "example.com", false);
    add_p256(&daemon, 4, b"cred-other-rp", "other.example", true);
    let (_, before) = events_after(daemon.gateway, 0, 0);
    assert!(conditional_requests(&daemon, 0).is_empty());

    // The page's conditional get(): pending, with no timeout of its own, until a pick.
    let address = daemon.gateway;
    let page = std::thread::spawn(move || {
        gateway_call(
            address,
            "/v1/get",
            &json!({"origin": "https://login.example.com", "mediation": "conditional",
                "requestId": "autofill-1",
                "options": {"rpId": "example.com", "challenge": enc(b"conditional"), "timeout": 1}}),
        )
    });
    let waiting = conditional_requests(&daemon, 10_000);
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    let request = &waiting[0];
    assert_eq!(request["rpId"], "example.com");
    assert_eq!(request["origin"], "https://login.example.com");
    assert_eq!(request["requestId"], "autofill-1");
    let mut offered: Vec<String> = request["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|account| {
            assert_eq!(account["authenticatorId"], "default");
            assert!(account.get("privateKey").is_none(), "{account}");
            account["userName"].as_str().unwrap().to_owned()
        })
        .collect();
    offered.sort();
    // Discoverable credentials of this RP only: not the non-discoverable one, not other.example.
    assert_eq!(offered, ["user1@example.com", "user2@example.com"]);
    let (events, _) = events_after(daemon.gateway, before, 0);
    assert!(
        events
            .iter()
            .any(|event| event["type"] == "conditionalRequested"
                && event["conditionalId"] == request["id"]),
        "{events:?}"
    );

    // Still pending well after its `timeout` (conditional requests ignore it).
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!page.is_finished());
    let select = format!(
        "/v1/control/conditional/{}/select",
        request["id"].as_str().unwrap()
    );
    let body = |id: &[u8]| json!({ "credentialId": enc(id) }).to_string();
    refused(
        address,
        "POST",
        &select,
        body(b"cred-hidden").as_bytes(),
        404,
    );
    refused(
        address,
        "POST",
        &select,
        body(b"cred-other-rp").as_bytes(),
        404,
    );
    refused(
        address,
        "POST",
        "/v1/control/conditional/999/select",
        body(b"cred-bob").as_bytes(),
        404,
    );
    refused(address, "POST", &select, b"{}", 400);
    assert_eq!(
        control(
            address,
            "POST",
            &select,
            &json!({"credentialId": enc(b"cred-bob")})
        ),
        true
    );

    let answer = page.join().unwrap();
    let response = &answer["ok"];
    assert_eq!(response["id"], enc(b"cred-bob"), "{answer}");
    assert_eq!(b64(&response["response"]["userHandle"]), [2]);
    verify_assertion(response, &bob);
    assert!(conditional_requests(&daemon, 0).is_empty());
}

#[test]
fn conditional_get_settles_on_abort_and_refuses_what_a_browser_refuses() {
    let daemon = start(Config::security_key());
    let address = daemon.gateway;
    let page = std::thread::spawn(move || {
        gateway_call(
            address,
            "/v1/get",
            &json!({"origin": "https://example.com", "mediation": "conditional",
                "requestId": "autofill-2", "options": {"challenge": enc(b"c")}}),
        )
    });
    let waiting = conditional_requests(&daemon, 10_000);
    assert_eq!(waiting.len(), 1);
    // No credential at all: nothing offered, and it stays pending (as an autofill menu with
    // no passkeys does).
    assert_eq!(waiting[0]["accounts"], json!([]));
    assert_eq!(waiting[0]["rpId"], "example.com");
    let cancelled = gateway_call(address, "/v1/cancel", &json!({"requestId": "autofill-2"}));
    assert_eq!(cancelled["ok"], true);
    let answer = page.join().unwrap();
    assert_eq!(answer["error"]["name"], "AbortError", "{answer}");
    assert!(conditional_requests(&daemon, 0).is_empty());

    // An RP ID the origin may not claim: SecurityError at once, nothing listed.
    let answer = gateway_call(
        address,
        "/v1/get",
        &json!({"origin": "https://example.com", "mediation": "conditional",
            "options": {"rpId": "evil.example", "challenge": enc(b"c")}}),
    );
    assert_eq!(answer["error"]["name"], "SecurityError", "{answer}");
    // Conditional create is not offered (getClientCapabilities says conditionalCreate: false).
    let (status, answer) = http(
        address,
        "POST",
        "/v1/create",
        Some(TOKEN),
        json!({"origin": "https://example.com", "mediation": "conditional", "options": {}})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(
        (status, answer["error"]["name"].as_str()),
        (400, Some("TypeError"))
    );
    let (status, _) = http(
        address,
        "POST",
        "/v1/get",
        Some(TOKEN),
        json!({"origin": "https://example.com", "mediation": "sometimes", "options": {}})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(status, 400);
    refused(address, "PUT", "/v1/control/conditional", b"", 405);
}
