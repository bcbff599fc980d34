//! HTTP helpers for the tests of the browser gateway and the control API: a daemon with the
//! gateway on an ephemeral port, raw HTTP/1.1 requests, control calls that must succeed or fail.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test support: each test file uses some of it; a failed expectation stops the test"
)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use authenticator_core::Config;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use fidelio_daemon::browser::{BrowserOptions, TokenFile};
use fidelio_daemon::presence::PresenceMode;
use fidelio_daemon::{ServeOptions, StateLocation};
use p256::ecdsa::signature::Verifier as _;
use serde_json::Value as Json;
use sha2::{Digest as _, Sha256};

pub const TOKEN: &str = "control-token-0123456789abcdef";

pub struct Daemon {
    pub gateway: SocketAddr,
    pub udp: SocketAddr,
    pub _dir: tempfile::TempDir,
}

pub fn start(config: Config) -> Daemon {
    start_with(config, None)
}

/// [`start`], writing the event log to `event_log` (JSON lines).
pub fn start_with(config: Config, event_log: Option<std::path::PathBuf>) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("gateway.json");
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
        event_log,
    };
    let udp = super::serve_in_background(options);
    let written = TokenFile::read(&token_file).unwrap();
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

/// Sends raw bytes; returns the status and the JSON body.
pub fn raw(address: SocketAddr, request: &[u8]) -> (u16, Json) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(90)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    let text = String::from_utf8(answer).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap();
    (status, serde_json::from_str(body).unwrap())
}

pub fn http(
    address: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> (u16, Json) {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    raw(address, &request)
}

/// A control call that must succeed; returns its `ok` value.
pub fn control(address: SocketAddr, method: &str, path: &str, body: &Json) -> Json {
    let text = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let (status, answer) = http(address, method, path, Some(TOKEN), text.as_bytes());
    assert_eq!(status, 200, "{method} {path}: {answer}");
    answer["ok"].clone()
}

/// A control call that must fail with this status; returns the error.
pub fn refused(address: SocketAddr, method: &str, path: &str, body: &[u8], status: u16) -> Json {
    let (got, answer) = http(address, method, path, Some(TOKEN), body);
    assert_eq!(got, status, "{method} {path}: {answer}");
    assert!(answer["error"]["name"].is_string(), "{answer}");
    answer["error"].clone()
}

pub fn gateway_call(address: SocketAddr, path: &str, body: &Json) -> Json {
    let (status, answer) = http(
        address,
        "POST",
        path,
        Some(TOKEN),
        body.to_string().as_bytes(),
    );
    assert_eq!(status, 200, "{answer}");
    answer
}

pub fn b64(text: &Json) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(text.as_str().unwrap()).unwrap()
}

pub fn enc(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Checks an AuthenticationResponseJSON's signature with `key`; returns its authData.
pub fn verify_assertion(response: &Json, key: &p256::ecdsa::VerifyingKey) -> Vec<u8> {
    let authenticator_data = b64(&response["response"]["authenticatorData"]);
    let mut signed = authenticator_data.clone();
    signed.extend_from_slice(&Sha256::digest(b64(
        &response["response"]["clientDataJSON"],
    )));
    let signature =
        p256::ecdsa::DerSignature::try_from(b64(&response["response"]["signature"]).as_slice())
            .unwrap();
    key.verify(&signed, &signature)
        .expect("the assertion verifies with the credential's key");
    authenticator_data
}

pub fn sign_count(authenticator_data: &[u8]) -> u32 {
    u32::from_be_bytes(authenticator_data[33..37].try_into().unwrap())
}
