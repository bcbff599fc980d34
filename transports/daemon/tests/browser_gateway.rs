//! The browser gateway over real HTTP against `serve_until`: create and get through
//! `/v1/create` and `/v1/get` (the assertion's signature verified with `p256` against the
//! registration's public key), the same credential reached over the UDP lane, and hostile or
//! wrong requests answered with errors — never a crash or a hang.
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
use std::path::PathBuf;
use std::time::Duration;

use authenticator_core::Config;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use fidelio_daemon::browser::{BrowserOptions, TokenFile};
use fidelio_daemon::presence::PresenceMode;
use fidelio_daemon::{ServeOptions, StateLocation};
use p256::ecdsa::signature::Verifier;
use p256::pkcs8::DecodePublicKey;
use serde_json::{Value as Json, json};
use sha2::{Digest, Sha256};

const TOKEN: &str = "test-token-0123456789abcdef";

struct Daemon {
    gateway: SocketAddr,
    udp: SocketAddr,
    _dir: tempfile::TempDir,
}

/// `fidelio serve --ephemeral --browser 127.0.0.1:0 --browser-token TOKEN` on its own thread.
fn start(config: Config) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let token_file: PathBuf = dir.path().join("gateway.json");
    let options = ServeOptions {
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
    };
    let udp = common::serve_in_background(options);
    // The token file is written before the daemon says it is ready.
    let written = TokenFile::read(&token_file).unwrap();
    assert_eq!(written.token, TOKEN);
    let gateway = written
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

/// Sends raw bytes, returns the status and the JSON body.
fn raw(address: SocketAddr, request: &[u8]) -> (u16, Json) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    let text = String::from_utf8(answer).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(body.len(), length);
    (status, serde_json::from_str(body).unwrap())
}

fn post(address: SocketAddr, path: &str, token: Option<&str>, body: &[u8]) -> (u16, Json) {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    raw(address, &request)
}

fn call(address: SocketAddr, path: &str, body: &Json) -> Json {
    let (status, answer) = post(address, path, Some(TOKEN), body.to_string().as_bytes());
    assert_eq!(status, 200, "{answer}");
    answer
}

fn b64(text: &Json) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(text.as_str().unwrap()).unwrap()
}

fn creation_options(challenge: &[u8]) -> Json {
    json!({
        "rp": {"id": "example.com", "name": "Example"},
        "user": {"id": URL_SAFE_NO_PAD.encode(b"user-1"), "name": "alice", "displayName": "Alice"},
        "challenge": URL_SAFE_NO_PAD.encode(challenge),
        "pubKeyCredParams": [{"type": "public-key", "alg": -7}],
        "authenticatorSelection": {"residentKey": "required"},
        "timeout": 30000,
    })
}

#[test]
fn create_and_get_over_http_verify_with_p256() {
    let daemon = start(Config::security_key());

    let registration = call(
        daemon.gateway,
        "/v1/create",
        &json!({"origin": "https://login.example.com", "options": creation_options(b"register-challenge")}),
    );
    let registration = &registration["ok"];
    assert_eq!(registration["type"], "public-key");
    assert_eq!(registration["response"]["publicKeyAlgorithm"], -7);
    let client_data: Json =
        serde_json::from_slice(&b64(&registration["response"]["clientDataJSON"])).unwrap();
    assert_eq!(client_data["type"], "webauthn.create");
    assert_eq!(client_data["origin"], "https://login.example.com");
    assert_eq!(client_data["crossOrigin"], false);
    assert_eq!(
        b64(&client_data["challenge"]),
        b"register-challenge".to_vec()
    );
    let key = p256::ecdsa::VerifyingKey::from_public_key_der(&b64(
        &registration["response"]["publicKey"],
    ))
    .expect("an SPKI P-256 key");
    let credential_id = registration["rawId"].clone();

    // A cross-origin frame whose top-level origin is unknown (as lane A reports it).
    let assertion = call(
        daemon.gateway,
        "/v1/get",
        &json!({
            "origin": "https://login.example.com",
            "sameOriginWithAncestors": false,
            "requestId": 41,
            "options": {
                "rpId": "example.com",
                "challenge": URL_SAFE_NO_PAD.encode(b"login-challenge"),
                "allowCredentials": [{"type": "public-key", "id": credential_id}],
                "extensions": {"remoteDesktopClientOverride": {"origin": "https://login.example.com", "sameOriginWithAncestors": false}},
            },
        }),
    );
    let assertion = &assertion["ok"];
    assert_eq!(assertion["id"], registration["id"]);
    let client_data_json = b64(&assertion["response"]["clientDataJSON"]);
    assert_eq!(
        String::from_utf8(client_data_json.clone()).unwrap(),
        format!(
            r#"{{"type":"webauthn.get","challenge":"{}","origin":"https://login.example.com","crossOrigin":true}}"#,
            URL_SAFE_NO_PAD.encode(b"login-challenge")
        )
    );
    let authenticator_data = b64(&assertion["response"]["authenticatorData"]);
    assert_eq!(
        authenticator_data[..32],
        Sha256::digest(b"example.com")[..],
        "rpIdHash"
    );
    let mut signed = authenticator_data.clone();
    signed.extend_from_slice(&Sha256::digest(&client_data_json));
    let signature =
        p256::ecdsa::DerSignature::try_from(b64(&assertion["response"]["signature"]).as_slice())
            .unwrap();
    key.verify(&signed, &signature)
        .expect("the assertion verifies with the registered key");
    assert_eq!(
        b64(&assertion["response"]["userHandle"]),
        b"user-1".to_vec()
    );

    // The same device serves the UDP lane: the credential is there.
    let hid = fidelio_client::CtapHidClient::new(
        fidelio_client::UdpTransport::connect(daemon.udp).unwrap(),
    );
    let mut client = fidelio_webauthn::Client::new(
        hid,
        <rand_chacha::ChaCha20Rng as rand_core::SeedableRng>::seed_from_u64(3),
        fidelio_webauthn::ClientConfig::default(),
    );
    let over_udp = client
        .get_blocking(
            &fidelio_webauthn::Caller::new("https://example.com").unwrap(),
            &json!({"rpId": "example.com", "challenge": "AAAA"}),
            &mut fidelio_webauthn::Unattended,
            &fidelio_webauthn::AbortSignal::new(),
        )
        .unwrap()
        .to_json();
    assert_eq!(over_udp["id"], registration["id"]);

    // excludeCredentials with it: InvalidStateError.
    let mut options = creation_options(b"again");
    options["excludeCredentials"] = json!([{"type": "public-key", "id": credential_id}]);
    let excluded = call(
        daemon.gateway,
        "/v1/create",
        &json!({"origin": "https://example.com", "options": options}),
    );
    assert_eq!(excluded["error"]["name"], "InvalidStateError");

    // Concurrent ceremonies queue up and all succeed.
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let gateway = daemon.gateway;
            std::thread::spawn(move || {
                let mut options = creation_options(format!("c{i}").as_bytes());
                options["user"]["id"] = json!(URL_SAFE_NO_PAD.encode(format!("user-c{i}")));
                call(
                    gateway,
                    "/v1/create",
                    &json!({"origin": "https://example.com", "options": options}),
                )
            })
        })
        .collect();
    for handle in handles {
        assert_eq!(handle.join().unwrap()["ok"]["type"], "public-key");
    }

    // Status and isUvpaa (a security key has no built-in UV).
    let status = raw(
        daemon.gateway,
        format!("GET /v1/status HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\n\r\n").as_bytes(),
    );
    assert_eq!(status.0, 200);
    assert_eq!(status.1["ok"]["service"], "fidelio-browser-gateway");
    assert_eq!(
        call(daemon.gateway, "/v1/isUvpaa", &json!({})),
        json!({"ok": false})
    );
}

#[test]
fn a_platform_profile_has_built_in_uv() {
    let daemon = start(Config::platform());
    assert_eq!(
        call(daemon.gateway, "/v1/isUvpaa", &json!({})),
        json!({"ok": true})
    );
    let mut options = creation_options(b"uv");
    options["authenticatorSelection"]["userVerification"] = json!("required");
    let registration = call(
        daemon.gateway,
        "/v1/create",
        &json!({"origin": "https://example.com", "options": options}),
    );
    assert_eq!(registration["ok"]["authenticatorAttachment"], "platform");
    let auth_data = b64(&registration["ok"]["response"]["authenticatorData"]);
    assert_eq!(auth_data[32] & 0x05, 0x05, "UP and UV flags");
}

#[test]
fn wrong_and_hostile_requests_get_errors() {
    let daemon = start(Config::security_key());
    let gateway = daemon.gateway;
    let body =
        json!({"origin": "https://example.com", "options": creation_options(b"x")}).to_string();

    // Tokens.
    let (status, answer) = post(gateway, "/v1/create", None, body.as_bytes());
    assert_eq!(status, 401, "{answer}");
    let (status, _) = post(
        gateway,
        "/v1/create",
        Some("wrong-token-0123456789"),
        body.as_bytes(),
    );
    assert_eq!(status, 401);
    let (status, _) = post(
        gateway,
        "/v1/create",
        Some(&TOKEN[..TOKEN.len() - 1]),
        body.as_bytes(),
    );
    assert_eq!(status, 401);
    let (status, _) = raw(gateway, b"GET /v1/status HTTP/1.1\r\n\r\n");
    assert_eq!(status, 401);

    // An origin that may not claim the RP ID, and one that is not an origin.
    let evil = call(
        gateway,
        "/v1/create",
        &json!({"origin": "https://evil.example", "options": creation_options(b"x")}),
    );
    assert_eq!(evil["error"]["name"], "SecurityError", "{evil}");
    let http = call(
        gateway,
        "/v1/get",
        &json!({"origin": "http://example.com", "options": {"challenge": "AAAA"}}),
    );
    assert_eq!(http["error"]["name"], "SecurityError", "{http}");

    // Bodies that are not requests.
    for garbage in [
        &b"garbage"[..],
        b"{\"origin\": 1}",
        b"[1,2,3]",
        b"{\"origin\":\"https://example.com\",\"options\":\"x\"}",
        b"\xff\xfe\x00",
        b"",
    ] {
        let (status, answer) = post(gateway, "/v1/create", Some(TOKEN), garbage);
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["error"]["name"], "TypeError", "{answer}");
    }
    // Options the client refuses: a TypeError from the WebAuthn rules, as an answer.
    let bad_options = call(
        gateway,
        "/v1/create",
        &json!({"origin": "https://example.com", "options": {"rp": {}, "challenge": "AAAA"}}),
    );
    assert_eq!(bad_options["error"]["name"], "TypeError", "{bad_options}");

    // HTTP-level abuse.
    let (status, _) = raw(gateway, b"POST /v1/create HTTP/1.1\r\n\r\n");
    assert_eq!(status, 411);
    let (status, _) = raw(
        gateway,
        b"POST /v1/create HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n",
    );
    assert_eq!(status, 413);
    let (status, _) = raw(
        gateway,
        b"POST /v1/create HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    );
    assert_eq!(status, 501);
    let (status, _) = raw(gateway, b"NONSENSE\r\n\r\n");
    assert_eq!(status, 400);
    let (status, _) = raw(gateway, b"GET /v1/status HTTP/2\r\n\r\n");
    assert_eq!(status, 501);
    let mut huge = b"GET /v1/status HTTP/1.1\r\nX: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 40_000));
    let (status, _) = raw(gateway, &huge);
    assert_eq!(status, 431);
    let (status, _) = raw(
        gateway,
        format!("GET /v1/nothing HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\n\r\n").as_bytes(),
    );
    assert_eq!(status, 404);
    let (status, _) = raw(
        gateway,
        format!("GET /v1/create HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\n\r\n").as_bytes(),
    );
    assert_eq!(status, 405);

    // A connection closed half-way and one closed at once do not disturb the gateway.
    {
        let mut stream = TcpStream::connect(gateway).unwrap();
        stream
            .write_all(b"POST /v1/create HTTP/1.1\r\nContent-Length: 100\r\n\r\n{")
            .unwrap();
    }
    drop(TcpStream::connect(gateway).unwrap());

    // Unknown cancel: answered, nothing aborted.
    assert_eq!(
        call(gateway, "/v1/cancel", &json!({"requestId": 5})),
        json!({"ok": false})
    );

    // Still serving.
    let fine = call(
        gateway,
        "/v1/create",
        &json!({"origin": "https://example.com", "options": creation_options(b"x")}),
    );
    assert_eq!(fine["ok"]["type"], "public-key", "{fine}");
}

#[test]
fn the_gateway_binds_loopback_only() {
    let options = BrowserOptions {
        address: SocketAddr::from(([0, 0, 0, 0], 0)),
        token: TOKEN.into(),
        token_file: None,
        pin: None,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    let (device, _inbound) = tokio::sync::mpsc::channel(1);
    let started = local.block_on(
        &runtime,
        fidelio_daemon::browser::Gateway::start(&options, device, None),
    );
    assert!(matches!(
        started,
        Err(fidelio_daemon::browser::GatewayError::NotLoopback(_))
    ));
}
