//! `fidelio serve` as a process: a second daemon on the same state is refused, bind failures
//! name the address, SIGTERM stops cleanly with credentials kept, and `--presence prompt`
//! asks on the terminal.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers"
)]

use std::io::{BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value as Json;

const FIDELIO: &str = env!("CARGO_BIN_EXE_fidelio");

struct Daemon {
    child: Child,
    device: String,
    lines: mpsc::Receiver<String>,
    stdin: Option<ChildStdin>,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    /// Waits for a stderr line containing `text`.
    fn expect_line(&self, text: &str) -> String {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(20)) {
                Ok(line) if line.contains(text) => return line,
                Ok(_) => {}
                Err(_) => panic!("no line containing {text:?} from fidelio serve"),
            }
        }
    }
}

fn spawn(args: &[&str]) -> (Child, mpsc::Receiver<String>) {
    let mut child = Command::new(FIDELIO)
        .arg("serve")
        .args(args)
        .env("FIDELIO_LOG", "info")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("fidelio serve starts");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        // The prompt has no newline: read bytes and cut lines at '\n' or at "] ".
        let mut reader = BufReader::new(stderr);
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while std::io::Read::read(&mut reader, &mut byte).unwrap_or(0) == 1 {
            line.push(byte[0]);
            if byte[0] == b'\n' || line.ends_with(b"[y/N] ") {
                let _ = tx.send(String::from_utf8_lossy(&line).into_owned());
                line.clear();
            }
        }
        if !line.is_empty() {
            let _ = tx.send(String::from_utf8_lossy(&line).into_owned());
        }
    });
    (child, lines)
}

fn start(args: &[&str]) -> Daemon {
    let mut all = vec!["--udp", "127.0.0.1:0", "--control", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let (mut child, lines) = spawn(&all);
    let stdin = child.stdin.take();
    let mut daemon = Daemon {
        child,
        device: String::new(),
        lines,
        stdin,
    };
    let line = daemon.expect_line(" on udp:");
    let address = line
        .split(" on udp:")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    daemon.device = format!("udp:{address}");
    daemon
}

fn client(device: &str, args: &[&str]) -> std::process::Output {
    Command::new(FIDELIO)
        .arg("client")
        .args(args)
        .args(["--device", device, "--json"])
        .output()
        .expect("fidelio client runs")
}

fn state_arg(path: &Path) -> String {
    path.to_str().unwrap().to_owned()
}

#[test]
fn a_second_daemon_on_the_same_state_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let state = state_arg(&dir.path().join("device.redb"));
    let _first = start(&["--state", &state]);
    let second = Command::new(FIDELIO)
        .args([
            "serve",
            "--state",
            &state,
            "--udp",
            "127.0.0.1:0",
            "--control",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("already in use"), "{stderr}");
    assert!(stderr.contains("device.redb"), "names the file: {stderr}");
}

#[test]
fn bind_failures_name_the_address_and_reason() {
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let output = Command::new(FIDELIO)
        .args([
            "serve",
            "--ephemeral",
            "--udp",
            &address,
            "--control",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("cannot listen for UDP on {address}")),
        "{stderr}"
    );
    assert!(
        stderr.to_lowercase().contains("in use"),
        "gives the reason: {stderr}"
    );
}

#[test]
fn sigterm_stops_cleanly_and_credentials_survive() {
    let dir = tempfile::tempdir().unwrap();
    let state = state_arg(&dir.path().join("device.redb"));
    let daemon = start(&["--state", &state]);
    let registered = client(
        &daemon.device,
        &["register", "--rp-id", "example.com", "--resident"],
    );
    assert!(
        registered.status.success(),
        "{}",
        String::from_utf8_lossy(&registered.stderr)
    );
    let registered: Json = serde_json::from_slice(&registered.stdout).unwrap();

    let pid = daemon.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    daemon.expect_line("stopped cleanly");
    let mut daemon = daemon;
    let status = daemon.child.wait().unwrap();
    assert!(status.success(), "exit status {status}");

    let again = start(&["--state", &state]);
    let login = client(&again.device, &["login", "--rp-id", "example.com"]);
    assert!(
        login.status.success(),
        "{}",
        String::from_utf8_lossy(&login.stderr)
    );
    let login: Json = serde_json::from_slice(&login.stdout).unwrap();
    assert_eq!(
        login["credential_id"], registered["credential_id"],
        "{login}"
    );
}

#[test]
fn prompt_asks_on_the_terminal() {
    let mut daemon = start(&["--ephemeral", "--presence", "prompt"]);
    let device = daemon.device.clone();
    let register =
        std::thread::spawn(move || client(&device, &["register", "--rp-id", "example.com"]));
    let question = daemon.expect_line("[y/N]");
    assert!(
        question.contains("register a credential at example.com"),
        "{question}"
    );
    let stdin = daemon.stdin.as_mut().unwrap();
    stdin.write_all(b"y\n").unwrap();
    stdin.flush().unwrap();
    let output = register.join().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let device = daemon.device.clone();
    let refused =
        std::thread::spawn(move || client(&device, &["register", "--rp-id", "example.com"]));
    daemon.expect_line("[y/N]");
    let stdin = daemon.stdin.as_mut().unwrap();
    stdin.write_all(b"n\n").unwrap();
    stdin.flush().unwrap();
    let output = refused.join().unwrap();
    assert!(!output.status.success());
    let text = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(text.contains("OPERATION_DENIED"), "{text}");
}
