//! Several devices in one daemon (`/v1/control/devices…`, `devices.rs`), over real HTTP and
//! UDP against `serve_until`: new devices with profiles and overrides, each on its own UDP
//! lane; ceremonies through the gateway routed to the device holding the credential; clones
//! (a synced passkey on a second phone, a cloned security key whose counters diverge); sync;
//! unplugged ("lost") devices that answer nothing; reset and removal.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed expectation should stop the test"
)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use authenticator_core::Config;
use common::http::{
    Daemon, b64, control, enc, gateway_call, refused, sign_count, start, verify_assertion,
};
use p256::pkcs8::DecodePrivateKey;
use serde_json::{Value as Json, json};

fn device(daemon: &Daemon, id: &str) -> Json {
    control(
        daemon.gateway,
        "GET",
        &format!("/v1/control/devices/{id}"),
        &Json::Null,
    )
}

fn new_device(daemon: &Daemon, body: &Json) -> Json {
    control(daemon.gateway, "POST", "/v1/control/devices", body)
}

fn udp_of(described: &Json) -> SocketAddr {
    described["udp"].as_str().unwrap().parse().unwrap()
}

fn credentials(daemon: &Daemon, id: &str) -> Vec<Json> {
    control(
        daemon.gateway,
        "GET",
        &format!("/v1/control/authenticator/{id}/credentials"),
        &Json::Null,
    )
    .as_array()
    .unwrap()
    .clone()
}

fn register(daemon: &Daemon, user: &[u8]) -> Json {
    let answer = gateway_call(
        daemon.gateway,
        "/v1/create",
        &json!({"origin": "https://example.com", "options": {
            "rp": {"id": "example.com", "name": "Example"},
            "user": {"id": enc(user), "name": "alice", "displayName": "Alice"},
            "challenge": enc(b"register"),
            "pubKeyCredParams": [{"type": "public-key", "alg": -7}],
            "authenticatorSelection": {"residentKey": "required"}}}),
    );
    assert!(answer["ok"].is_object(), "{answer}");
    answer["ok"].clone()
}

/// A discoverable login through the gateway, with a lifetime of `timeout_ms`.
fn login_through_gateway(daemon: &Daemon, timeout_ms: u64) -> Json {
    gateway_call(
        daemon.gateway,
        "/v1/get",
        &json!({"origin": "https://example.com", "options": {
            "rpId": "example.com", "challenge": enc(b"login"), "timeout": timeout_ms}}),
    )
}

/// A discoverable login over a device's UDP lane; `Err` with the client's error.
fn login_over_udp(udp: SocketAddr) -> Result<Json, String> {
    let transport = fidelio_client::UdpTransport::connect(udp).map_err(|e| e.to_string())?;
    let mut client = fidelio_webauthn::Client::new(
        fidelio_client::CtapHidClient::new(transport),
        <rand_chacha::ChaCha20Rng as rand_core::SeedableRng>::seed_from_u64(7),
        fidelio_webauthn::ClientConfig::default(),
    );
    let signal = fidelio_webauthn::AbortSignal::new();
    let timer = signal.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(5));
        timer.time_out();
    });
    client
        .get_blocking(
            &fidelio_webauthn::Caller::new("https://example.com").unwrap(),
            &json!({"rpId": "example.com", "challenge": enc(b"udp")}),
            &mut fidelio_webauthn::Unattended,
            &signal,
        )
        .map(|response| response.to_json())
        .map_err(|error| format!("{}: {}", error.name.as_str(), error.message))
}

/// Verifies an assertion with the credential's exported private key; returns its authData.
fn verify(response: &Json, exported: &Json) -> Vec<u8> {
    let secret = p256::SecretKey::from_pkcs8_der(&b64(&exported["privateKey"])).unwrap();
    verify_assertion(
        response,
        &p256::ecdsa::VerifyingKey::from(secret.public_key()),
    )
}

fn flags(authenticator_data: &[u8]) -> u8 {
    authenticator_data[32]
}

#[test]
fn devices_have_profiles_overrides_and_their_own_lanes() {
    let daemon = start(Config::security_key());
    let listed = control(daemon.gateway, "GET", "/v1/control/devices", &Json::Null);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["authenticatorId"], "default");
    assert_eq!(listed[0]["profile"], "security-key");
    assert_eq!(listed[0]["udp"], daemon.udp.to_string());

    let phone = new_device(
        &daemon,
        &json!({"id": "phone", "profile": "synced-passkey",
                "aaguid": "01234567-89ab-cdef-0123-456789abcdef"}),
    );
    assert_eq!(phone["authenticatorId"], "phone");
    assert_eq!(phone["profile"], "synced-passkey");
    assert_eq!(phone["plugged"], true);
    assert_eq!(
        phone["properties"]["aaguid"],
        "01234567-89ab-cdef-0123-456789abcdef"
    );
    assert_ne!(udp_of(&phone), daemon.udp);
    let verifying = new_device(&daemon, &json!({"id": "uv-key", "uv": true}));
    assert_eq!(verifying["properties"]["hasUserVerification"], true);
    assert_eq!(verifying["profile"], "security-key");
    let plain = new_device(
        &daemon,
        &json!({"id": "plain", "profile": "platform", "uv": false}),
    );
    assert_eq!(plain["properties"]["hasUserVerification"], false);
    let anonymous = new_device(&daemon, &json!({"profile": "platform"}));
    assert_eq!(anonymous["properties"]["hasUserVerification"], true);
    assert!(
        anonymous["authenticatorId"]
            .as_str()
            .unwrap()
            .starts_with("device-")
    );
    assert_eq!(anonymous["properties"]["transport"], "internal");

    // Refused: a taken ID, a bad one, an unknown profile, a bad override, a non-loopback lane.
    for (body, status) in [
        (json!({"id": "phone"}), 409),
        (json!({"id": "no spaces"}), 400),
        (json!({"profile": "toaster"}), 400),
        (json!({"counter": "sometimes"}), 400),
        (json!({"udp": "0.0.0.0:0"}), 400),
        (json!({"udp": 7}), 400),
        (json!({"uv": "yes"}), 400),
    ] {
        refused(
            daemon.gateway,
            "POST",
            "/v1/control/devices",
            body.to_string().as_bytes(),
            status,
        );
    }
    refused(daemon.gateway, "POST", "/v1/control/devices", b"[]", 400);
    refused(
        daemon.gateway,
        "GET",
        "/v1/control/devices/absent",
        b"",
        404,
    );
    refused(
        daemon.gateway,
        "DELETE",
        "/v1/control/devices/default",
        b"",
        409,
    );

    // Each device on its own UDP lane: a credential made on the phone is not on the default.
    control(
        daemon.gateway,
        "POST",
        "/v1/control/devices/phone/prefer",
        &Json::Null,
    );
    let made = register(&daemon, b"user-1");
    assert_eq!(credentials(&daemon, "phone").len(), 1);
    assert!(credentials(&daemon, "default").is_empty());
    let over_udp = login_over_udp(udp_of(&phone)).unwrap();
    assert_eq!(over_udp["id"], made["id"]);
    let data = verify(&over_udp, &credentials(&daemon, "phone")[0]);
    assert_eq!(sign_count(&data), 0, "a synced passkey counts nothing");
    assert_eq!(flags(&data) & 0x18, 0x18, "BE and BS");
    let missing = login_over_udp(daemon.udp).unwrap_err();
    assert!(missing.starts_with("NotAllowedError"), "{missing}");

    // Removal: the lane closes, the ID is free again.
    control(
        daemon.gateway,
        "DELETE",
        "/v1/control/devices/phone",
        &Json::Null,
    );
    refused(daemon.gateway, "GET", "/v1/control/devices/phone", b"", 404);
    assert!(login_over_udp(udp_of(&phone)).is_err());
    new_device(&daemon, &json!({"id": "phone"}));
}

#[test]
fn a_synced_passkey_appears_on_a_clone_and_a_lost_phone_answers_nothing() {
    let daemon = start(Config::security_key());
    new_device(
        &daemon,
        &json!({"id": "phone", "profile": "synced-passkey"}),
    );
    control(
        daemon.gateway,
        "POST",
        "/v1/control/devices/phone/prefer",
        &Json::Null,
    );
    let made = register(&daemon, b"user-2");
    let clone = control(
        daemon.gateway,
        "POST",
        "/v1/control/devices/phone/clone",
        &json!({"id": "new-phone"}),
    );
    assert_eq!(clone["profile"], "synced-passkey");
    let copied = credentials(&daemon, "new-phone");
    assert_eq!(copied.len(), 1);
    let original = &credentials(&daemon, "phone")[0];
    assert_eq!(copied[0]["credentialId"], original["credentialId"]);
    assert_eq!(
        copied[0]["privateKey"], original["privateKey"],
        "the same key material"
    );

    // The old phone is lost: the gateway finds the passkey on the new one.
    control(
        daemon.gateway,
        "POST",
        "/v1/control/devices/phone/plug",
        &json!({"plugged": false}),
    );
    assert_eq!(device(&daemon, "phone")["plugged"], false);
    let login = login_through_gateway(&daemon, 30_000);
    assert_eq!(login["ok"]["id"], made["id"], "{login}");
    let data = verify(&login["ok"], original);
    assert_eq!(flags(&data) & 0x18, 0x18);
    let events = control(
        daemon.gateway,
        "GET",
        "/v1/control/events?after=0&timeout=0",
        &Json::Null,
    );
    let asserted: Vec<&Json> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["type"] == "credentialAsserted")
        .collect();
    assert_eq!(asserted.last().unwrap()["authenticatorId"], "new-phone");

    // A lost device answers nothing on its own lane, as a missing key: the host times out.
    let started = Instant::now();
    let lost = login_over_udp(udp_of(&device(&daemon, "phone"))).unwrap_err();
    assert!(started.elapsed() >= Duration::from_secs(1), "{lost}");

    // Every device with the passkey gone or unplugged: the ceremony waits for a key until its
    // lifetime ends (NotAllowedError), as a browser does with nothing plugged in.
    control(
        daemon.gateway,
        "POST",
        "/v1/control/devices/new-phone/plug",
        &json!({"plugged": false}),
    );
    control(
        daemon.gateway,
        "POST",
        "/v1/control/devices/default/plug",
        &json!({"plugged": false}),
    );
    let started = Instant::now();
    let nothing = login_through_gateway(&daemon, 10_000);
    assert_eq!(nothing["error"]["name"], "NotAllowedError", "{nothing}");
    assert!(started.elapsed() >= Duration::from_secs(9));

    // Plugged back in: the phone still has it.
    control(
        daemon.gateway,
        "POST",
        "/v1/control/devices/phone/plug",
        &json!({"plugged": true}),
    );
    let back = login_through_gateway(&daemon, 30_000);
    assert_eq!(back["ok"]["id"], made["id"], "{back}");
}

#[test]
fn a_cloned_security_key_counts_on_its_own() {
    let daemon = start(Config::security_key());
    let made = register(&daemon, b"user-3");
    let clone = control(
        daemon.gateway,
        "POST",
        "/v1/control/devices/default/clone",
        &json!({"id": "cloned"}),
    );
    assert_eq!(clone["profile"], "security-key");
    let exported = credentials(&daemon, "default")[0].clone();
    let on = |udp| {
        let response = login_over_udp(udp).unwrap();
        assert_eq!(response["id"], made["id"]);
        let data = verify(&response, &exported);
        assert_eq!(flags(&data) & 0x18, 0, "a device-bound key: BE=0, BS=0");
        sign_count(&data)
    };
    let first = on(daemon.udp);
    let second = on(daemon.udp);
    let cloned = on(udp_of(&clone));
    assert!(second > first);
    // The clone resumes from where the original was when copied: an RP that remembers the
    // original's last counter sees the clone go backwards.
    assert!(
        cloned <= first,
        "clone {cloned} vs original {first}, {second}"
    );
}

#[test]
fn sync_brings_two_devices_credentials_together_and_reset_wipes_one() {
    let daemon = start(Config::security_key());
    new_device(
        &daemon,
        &json!({"id": "laptop", "profile": "synced-passkey"}),
    );
    new_device(
        &daemon,
        &json!({"id": "tablet", "profile": "synced-passkey"}),
    );
    for (id, user) in [("laptop", b"user-l"), ("tablet", b"user-t")] {
        control(
            daemon.gateway,
            "POST",
            &format!("/v1/control/devices/{id}/prefer"),
            &Json::Null,
        );
        register(&daemon, user);
    }
    let synced = control(
        daemon.gateway,
        "POST",
        "/v1/control/devices/laptop/sync",
        &json!({"with": "tablet"}),
    );
    assert_eq!(synced["copied"], json!({"laptop": 1, "tablet": 1}));
    let ids = |id| {
        let mut ids: Vec<String> = credentials(&daemon, id)
            .iter()
            .map(|c| c["credentialId"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(ids("laptop"), ids("tablet"));
    assert_eq!(ids("laptop").len(), 2);
    // Again: nothing more to copy.
    let again = control(
        daemon.gateway,
        "POST",
        "/v1/control/devices/tablet/sync",
        &json!({"with": "laptop"}),
    );
    assert_eq!(again["copied"], json!({"laptop": 0, "tablet": 0}));
    refused(
        daemon.gateway,
        "POST",
        "/v1/control/devices/tablet/sync",
        br#"{"with": "tablet"}"#,
        400,
    );
    refused(
        daemon.gateway,
        "POST",
        "/v1/control/devices/tablet/sync",
        br#"{"with": "absent"}"#,
        404,
    );

    control(
        daemon.gateway,
        "POST",
        "/v1/control/devices/tablet/reset",
        &Json::Null,
    );
    assert!(credentials(&daemon, "tablet").is_empty());
    assert_eq!(credentials(&daemon, "laptop").len(), 2);
}

fn export(daemon: &Daemon, id: &str, query: &str) -> Json {
    control(
        daemon.gateway,
        "GET",
        &format!("/v1/control/devices/{id}/export?{query}"),
        &Json::Null,
    )
}

fn import(daemon: &Daemon, id: &str, document: &Json) -> Json {
    control(
        daemon.gateway,
        "POST",
        &format!("/v1/control/devices/{id}/import"),
        &json!({ "document": document }),
    )
}

#[test]
fn exports_import_elsewhere_with_byte_identical_keys() {
    let daemon = start(Config::security_key());
    register(&daemon, b"user-x");
    // A second credential, non-discoverable, Ed25519.
    let answer = gateway_call(
        daemon.gateway,
        "/v1/create",
        &json!({"origin": "https://example.com", "options": {
            "rp": {"id": "example.com", "name": "Example"},
            "user": {"id": enc(b"user-y"), "name": "bob", "displayName": "Bob"},
            "challenge": enc(b"c"),
            "pubKeyCredParams": [{"type": "public-key", "alg": -8}],
            "authenticatorSelection": {"residentKey": "discouraged"}}}),
    );
    assert!(answer["ok"].is_object(), "{answer}");
    let original = credentials(&daemon, "default");
    assert_eq!(original.len(), 2);
    let key_of = |listed: &[Json], id: &Json| {
        listed
            .iter()
            .find(|c| &c["credentialId"] == id)
            .map(|c| b64(&c["privateKey"]))
            .unwrap()
    };
    for (i, query) in [
        "format=cxf",
        "format=webdriver",
        "format=cdp",
        "format=playwright",
    ]
    .iter()
    .enumerate()
    {
        let exported = export(&daemon, "default", query);
        // Playwright's authenticator signs with ES256 only: the Ed25519 one is left out.
        let expected = if *query == "format=playwright" { 1 } else { 2 };
        assert_eq!(exported["count"], expected, "{query}: {exported}");
        let target = format!("copy-{i}");
        new_device(&daemon, &json!({"id": target}));
        let document = exported["document"].clone();
        let imported = import(&daemon, &target, &document);
        assert_eq!(imported["imported"], expected, "{query}: {imported}");
        let copied = credentials(&daemon, &target);
        assert_eq!(copied.len(), expected);
        for credential in original
            .iter()
            .filter(|c| expected == 2 || c["algorithm"] == -7)
        {
            assert_eq!(
                key_of(&copied, &credential["credentialId"]),
                b64(&credential["privateKey"]),
                "{query}: byte-identical key material"
            );
        }
        // Importing again adds nothing and says why.
        let again = import(&daemon, &target, &document);
        assert_eq!(again["imported"], 0);
        assert!(
            again["warnings"].as_array().unwrap().len() >= expected,
            "{again}"
        );
    }
    // A login on an imported copy verifies with the original key.
    let copy = device(&daemon, "copy-0");
    let login = login_over_udp(udp_of(&copy)).unwrap();
    verify(&login, &original[0]);

    // Strict CXF: the security key's credentials have counted, so CXF may not carry them.
    login_over_udp(daemon.udp).unwrap();
    let strict = export(&daemon, "default", "format=cxf&strict=true");
    assert_eq!(strict["count"], 0, "{strict}");
    assert!(!strict["warnings"].as_array().unwrap().is_empty());
    assert!(!strict["document"].as_str().unwrap().contains("fidelio"));
    // Refused: an unknown format, a document that is none, a missing one.
    refused(
        daemon.gateway,
        "GET",
        "/v1/control/devices/default/export?format=pem",
        b"",
        400,
    );
    refused(
        daemon.gateway,
        "POST",
        "/v1/control/devices/default/import",
        br#"{"document": "{\"not\": \"credentials\"}"}"#,
        400,
    );
    refused(
        daemon.gateway,
        "POST",
        "/v1/control/devices/default/import",
        b"{}",
        400,
    );
}

#[test]
fn every_operation_of_every_device_is_a_line_of_the_event_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let daemon = common::http::start_with(Config::security_key(), Some(path.clone()));
    let phone = new_device(
        &daemon,
        &json!({"id": "phone", "profile": "synced-passkey"}),
    );
    let made = register(&daemon, b"user-log");
    login_over_udp(daemon.udp).unwrap();
    // A failure: nothing for this RP on the phone.
    assert!(login_over_udp(udp_of(&phone)).is_err());
    control(
        daemon.gateway,
        "POST",
        "/v1/control/devices/phone/plug",
        &json!({"plugged": false}),
    );
    // Secrets pass through the control API, never into the log.
    let listed = credentials(&daemon, "default");
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<Json> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let operations: Vec<&Json> = lines
        .iter()
        .filter(|line| line["type"] == "operation")
        .collect();
    let made_on_default = operations
        .iter()
        .find(|op| op["command"] == "authenticatorMakeCredential")
        .unwrap();
    assert_eq!(made_on_default["authenticatorId"], "default");
    assert_eq!(made_on_default["lane"], "gateway");
    assert_eq!(made_on_default["rpId"], "example.com");
    assert_eq!(made_on_default["credentialId"], made["id"]);
    assert_eq!(made_on_default["result"], "CTAP2_OK");
    assert!(made_on_default["latencyMs"].as_f64().unwrap() >= 0.0);
    assert!(made_on_default["timeMs"].as_u64().unwrap() > 0);
    let on_phone: Vec<&&Json> = operations
        .iter()
        .filter(|op| op["authenticatorId"] == "phone")
        .collect();
    assert!(on_phone.iter().any(|op| op["lane"] == "udp"
        && op["command"] == "authenticatorGetAssertion"
        && op["result"] == "CTAP2_ERR_NO_CREDENTIALS"));
    assert!(
        operations
            .iter()
            .any(|op| op["authenticatorId"] == "default"
                && op["lane"] == "udp"
                && op["command"] == "authenticatorGetAssertion"
                && op["credentialId"] == made["id"])
    );
    for kind in [
        "deviceAdded",
        "credentialAdded",
        "credentialAsserted",
        "devicePlugged",
    ] {
        assert!(
            lines.iter().any(|line| line["type"] == kind),
            "no {kind} in the log"
        );
    }
    let key = listed[0]["privateKey"].as_str().unwrap();
    assert!(!text.contains(key), "a private key in the event log");
    assert!(!text.contains("privateKey"));
}

#[test]
fn a_kept_alive_connection_carries_several_requests() {
    use std::io::{Read, Write};
    let daemon = start(Config::security_key());
    let mut stream = std::net::TcpStream::connect(daemon.gateway).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let read_answer = |stream: &mut std::net::TcpStream| {
        let mut buffer = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(split) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buffer[..split]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .unwrap()
                    .trim()
                    .parse()
                    .unwrap();
                if buffer.len() >= split + 4 + length {
                    let body: Json = serde_json::from_slice(&buffer[split + 4..]).unwrap();
                    return (head, body);
                }
            }
            let read = stream.read(&mut chunk).unwrap();
            assert!(read > 0, "the gateway closed a kept connection");
            buffer.extend_from_slice(&chunk[..read]);
        }
    };
    let request = |keep: &str| {
        format!(
            "GET /v1/status HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
             Connection: {keep}\r\nContent-Length: 0\r\n\r\n",
            common::http::TOKEN
        )
    };
    for _ in 0..3 {
        stream.write_all(request("keep-alive").as_bytes()).unwrap();
        let (head, body) = read_answer(&mut stream);
        assert!(head.contains("connection: keep-alive"), "{head}");
        assert!(body["ok"].is_object());
    }
    // The last one closes.
    stream.write_all(request("close").as_bytes()).unwrap();
    let (head, _) = read_answer(&mut stream);
    assert!(head.contains("connection: close"), "{head}");
    let mut rest = Vec::new();
    assert_eq!(stream.read_to_end(&mut rest).unwrap(), 0);
}
