//! `fidelio client …` against a real `fidelio serve --ephemeral` process on free loopback ports.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers"
)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value as Json;

const FIDELIO: &str = env!("CARGO_BIN_EXE_fidelio");

/// A running `fidelio serve`, stopped (killed) when dropped.
struct Daemon {
    child: Child,
    device: String,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `fidelio serve --ephemeral` with both lanes on port 0 and reads the bound UDP address
/// from its "serving … on udp:ADDRESS" line.
fn start_daemon(extra: &[&str]) -> Daemon {
    let mut child = Command::new(FIDELIO)
        .args([
            "serve",
            "--ephemeral",
            "--udp",
            "127.0.0.1:0",
            "--control",
            "127.0.0.1:0",
        ])
        .args(extra)
        .env("FIDELIO_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("fidelio serve starts");
    let stderr = child.stderr.take().expect("stderr");
    let (found, address) = mpsc::channel();
    std::thread::spawn(move || {
        let mut found = Some(found);
        // Keep draining stderr so the daemon never blocks on a full pipe.
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.split(" on udp:").nth(1)
                && let Some(sender) = found.take()
            {
                let address = rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                let _ = sender.send(address);
            }
        }
    });
    let mut daemon = Daemon {
        child,
        device: String::new(),
    };
    match address.recv_timeout(Duration::from_secs(20)) {
        Ok(address) => daemon.device = format!("udp:{address}"),
        Err(_) => panic!("fidelio serve did not report its address"),
    }
    daemon
}

fn fidelio(daemon: &Daemon, args: &[&str]) -> Output {
    Command::new(FIDELIO)
        .arg("client")
        .args(args)
        .args(["--device", &daemon.device])
        .env_remove("FIDELIO_DEVICE")
        .stdin(Stdio::null())
        .output()
        .expect("fidelio client runs")
}

/// Runs a command that must succeed and print JSON.
fn json(daemon: &Daemon, args: &[&str]) -> Json {
    let output = fidelio(daemon, args);
    assert!(
        output.status.success(),
        "fidelio client {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "fidelio client {args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

fn text(value: &Json, key: &str) -> String {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} in {value}"))
        .to_owned()
}

#[test]
fn info_register_login_reset() {
    let daemon = start_daemon(&["--reset-anytime"]);

    let info = json(&daemon, &["info", "--json"]);
    assert_eq!(info["device"], daemon.device.as_str());
    assert_eq!(
        info["versions"],
        serde_json::json!(["U2F_V2", "FIDO_2_0", "FIDO_2_1"])
    );
    assert_eq!(info["aaguid"], "5f4d3c2b-1a09-4e8f-9d6c-0b1a2f3e4d5c");
    assert_eq!(info["max_msg_size"], 7609);
    assert_eq!(info["options"]["rk"], true);
    assert_eq!(info["options"]["up"], true);
    assert_eq!(info["options"]["clientPin"], false);
    assert_eq!(info["options"]["pinUvAuthToken"], true);
    assert_eq!(info["pin_uv_auth_protocols"], serde_json::json!([2, 1]));
    assert_eq!(info["min_pin_length"], 4);
    assert_eq!(info["force_pin_change"], false);
    assert_eq!(info["remaining_discoverable_credentials"], 100);
    let algorithms: Vec<i64> = info["algorithms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["alg"].as_i64().unwrap())
        .collect();
    assert_eq!(algorithms, [-7, -8]);
    assert_eq!(info["algorithms"][0]["name"], "ES256");
    assert_eq!(info["ctaphid"]["protocol_version"], 2);
    assert_eq!(
        info["ctaphid"]["capabilities"],
        serde_json::json!(["WINK", "CBOR"])
    );

    // A discoverable ES256 credential.
    let registered = json(
        &daemon,
        &[
            "register",
            "--json",
            "--rp-id",
            "example.com",
            "--resident",
            "--user",
            "bob",
        ],
    );
    assert_eq!(registered["algorithm"], -7);
    assert_eq!(registered["algorithm_name"], "ES256");
    assert_eq!(registered["format"], "packed");
    assert_eq!(registered["attestation_verified"], true);
    assert_eq!(registered["resident"], true);
    assert_eq!(registered["rp"]["id"], "example.com");
    assert_eq!(registered["rp"]["origin"], "https://example.com");
    assert_eq!(registered["flags"], serde_json::json!(["UP", "AT"]));
    let credential_id = text(&registered, "credential_id");
    let public_key = text(&registered, "public_key");
    assert_eq!(registered["response"]["id"], credential_id.as_str());
    assert_eq!(registered["response"]["type"], "public-key");
    let user_id = text(&registered["user"], "id");
    let info = json(&daemon, &["info", "--json"]);
    assert_eq!(info["remaining_discoverable_credentials"], 99);

    // Sign in naming it, with the signature checked.
    let login = json(
        &daemon,
        &[
            "login",
            "--json",
            "--rp-id",
            "example.com",
            "--credential-id",
            &credential_id,
            "--public-key",
            &public_key,
        ],
    );
    assert_eq!(login["credential_id"], credential_id.as_str());
    assert_eq!(login["signature_verified"], true);
    assert_eq!(login["discoverable"], false);
    assert_eq!(login["flags"], serde_json::json!(["UP"]));
    assert!(login["sign_count"].as_u64().unwrap() > registered["sign_count"].as_u64().unwrap());
    assert_eq!(login["response"]["id"], credential_id.as_str());

    // Sign in by discovery: the same credential, with its user handle.
    let discovered = json(
        &daemon,
        &[
            "login",
            "--json",
            "--rp-id",
            "example.com",
            "--public-key",
            &public_key,
        ],
    );
    assert_eq!(discovered["discoverable"], true);
    assert_eq!(discovered["credential_id"], credential_id.as_str());
    assert_eq!(discovered["user_handle"], user_id.as_str());
    assert_eq!(discovered["signature_verified"], true);

    // Without the public key, the signature is not checked.
    let unchecked = json(&daemon, &["login", "--json", "--rp-id", "example.com"]);
    assert_eq!(unchecked["signature_verified"], Json::Null);

    // A non-discoverable EdDSA credential.
    let eddsa = json(
        &daemon,
        &[
            "register",
            "--json",
            "--rp-id",
            "example.org",
            "--alg",
            "eddsa",
        ],
    );
    assert_eq!(eddsa["algorithm"], -8);
    assert_eq!(eddsa["resident"], false);
    let eddsa_login = json(
        &daemon,
        &[
            "login",
            "--json",
            "--rp-id",
            "example.org",
            "--credential-id",
            &text(&eddsa, "credential_id"),
            "--public-key",
            &text(&eddsa, "public_key"),
        ],
    );
    assert_eq!(eddsa_login["signature_verified"], true);

    // The wrong public key fails the check.
    let wrong = fidelio(
        &daemon,
        &[
            "login",
            "--rp-id",
            "example.com",
            "--credential-id",
            &credential_id,
            "--public-key",
            &text(&eddsa, "public_key"),
        ],
    );
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("does not verify"));

    // Reset wants --yes and changes nothing without it.
    let refused = fidelio(&daemon, &["reset"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--yes"));
    assert_eq!(
        json(&daemon, &["info", "--json"])["remaining_discoverable_credentials"],
        99
    );

    let reset = fidelio(&daemon, &["reset", "--yes"]);
    assert!(
        reset.status.success(),
        "{}",
        String::from_utf8_lossy(&reset.stderr)
    );
    assert!(String::from_utf8_lossy(&reset.stderr).contains("every credential"));
    let reset_json = json(&daemon, &["reset", "--yes", "--json"]);
    assert_eq!(reset_json["reset"], true);
    assert_eq!(
        json(&daemon, &["info", "--json"])["remaining_discoverable_credentials"],
        100
    );

    // Everything is gone: neither credential signs any more.
    let gone = fidelio(&daemon, &["login", "--json", "--rp-id", "example.com"]);
    assert!(!gone.status.success());
    assert!(String::from_utf8_lossy(&gone.stderr).contains("CTAP2_ERR_NO_CREDENTIALS"));
    let gone = fidelio(
        &daemon,
        &[
            "login",
            "--rp-id",
            "example.org",
            "--credential-id",
            &text(&eddsa, "credential_id"),
        ],
    );
    assert!(!gone.status.success());
}

#[test]
fn text_output_is_readable() {
    let daemon = start_daemon(&[]);
    let info = fidelio(&daemon, &["info"]);
    assert!(info.status.success());
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(
        info.contains("5f4d3c2b-1a09-4e8f-9d6c-0b1a2f3e4d5c"),
        "{info}"
    );
    assert!(info.contains("ES256 (-7), EdDSA (-8)"), "{info}");
    assert!(
        info.contains("remaining discoverable credentials  100"),
        "{info}"
    );

    let register = fidelio(&daemon, &["register", "--rp-id", "example.com"]);
    assert!(register.status.success());
    let register = String::from_utf8_lossy(&register.stdout);
    assert!(register.contains("non-discoverable"), "{register}");
    // It prints the login command line that works.
    let line = register
        .lines()
        .find(|l| l.trim_start().starts_with("fidelio client login"))
        .expect("login hint");
    let words: Vec<&str> = line.split_whitespace().skip(2).collect();
    let login = Command::new(FIDELIO)
        .arg("client")
        .args(&words)
        .output()
        .unwrap();
    assert!(
        login.status.success(),
        "{}",
        String::from_utf8_lossy(&login.stderr)
    );
    assert!(String::from_utf8_lossy(&login.stdout).contains("verified with the given public key"));
}

#[test]
fn bad_devices_are_clear_errors() {
    let run = |device: &str| {
        let output = Command::new(FIDELIO)
            .args(["client", "info", "--device", device])
            .env_remove("FIDELIO_DEVICE")
            .output()
            .unwrap();
        assert!(!output.status.success());
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    assert!(run("127.0.0.1:8111").contains("did you mean udp:127.0.0.1:8111?"));
    assert!(run("udp:localhost").contains("has no port"));
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let nobody = run(&format!("udp:127.0.0.1:{port}"));
    assert!(
        nobody.contains("nothing answers") || nobody.contains("did not answer"),
        "{nobody}"
    );
}
