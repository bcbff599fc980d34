//! The control interface: loopback TCP, one JSON object per line each way.
//!
//! ```text
//! → {"command": "power-cycle"}
//! ← {"ok": true, "power_cycled": true}
//! ```
//! Commands: `status`, `power-cycle`. Only loopback addresses are accepted.

use std::net::SocketAddr;

use serde_json::{Value as Json, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use crate::device::{ControlCommand, ControlRequest};

/// Serves the control interface on `listener` until the device goes away.
pub async fn run(listener: TcpListener, device: mpsc::Sender<ControlRequest>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!("control accept failed: {error}");
                continue;
            }
        };
        if !peer.ip().is_loopback() {
            tracing::warn!("refusing control connection from {peer}: loopback only");
            continue;
        }
        tokio::task::spawn_local(connection(stream, device.clone()));
    }
}

async fn connection(stream: TcpStream, device: mpsc::Sender<ControlRequest>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let answer = answer(&line, &device).await;
        let mut text = answer.to_string();
        text.push('\n');
        if write.write_all(text.as_bytes()).await.is_err() {
            break;
        }
    }
}

async fn answer(line: &str, device: &mpsc::Sender<ControlRequest>) -> Json {
    let request: Json = match serde_json::from_str(line) {
        Ok(request) => request,
        Err(error) => return json!({"ok": false, "error": format!("not JSON: {error}")}),
    };
    let command = match request.get("command").and_then(Json::as_str) {
        Some("status") => ControlCommand::Status,
        Some("power-cycle") => ControlCommand::PowerCycle,
        Some(other) => return json!({"ok": false, "error": format!("unknown command {other:?}")}),
        None => return json!({"ok": false, "error": "missing \"command\""}),
    };
    let (reply, answer) = oneshot::channel();
    if device.send((command, reply)).await.is_err() {
        return json!({"ok": false, "error": "device stopped"});
    }
    answer
        .await
        .unwrap_or_else(|_| json!({"ok": false, "error": "device stopped"}))
}

/// Sends one command to a daemon's control interface and returns its answer.
pub async fn call(address: SocketAddr, command: &str) -> std::io::Result<Json> {
    let stream = TcpStream::connect(address).await?;
    let (read, mut write) = stream.into_split();
    let mut line = json!({"command": command}).to_string();
    line.push('\n');
    write.write_all(line.as_bytes()).await?;
    let mut lines = BufReader::new(read).lines();
    let answer = lines.next_line().await?.unwrap_or_default();
    serde_json::from_str(&answer).map_err(std::io::Error::other)
}
