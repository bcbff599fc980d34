//! `fidelio device …`: the devices of a running `fidelio serve --browser` daemon, through its
//! control API (`/v1/control/devices`, docs/devices.md).
//!
//! The daemon is found through the gateway's token file (URL + token; default: the one
//! `serve --browser` writes), or `--url` with `--token`/`FIDELIO_BROWSER_TOKEN`.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value as Json, json};

#[derive(Debug, Args)]
pub struct DeviceArgs {
    /// The gateway's token file (written by `fidelio serve --browser`). Default:
    /// $XDG_RUNTIME_DIR/fidelio/browser-gateway.json.
    #[arg(long, value_name = "PATH", global = true, conflicts_with = "url")]
    gateway_file: Option<PathBuf>,
    /// The gateway's URL (`http://127.0.0.1:8113`), with --token.
    #[arg(long, global = true, requires = "token")]
    url: Option<String>,
    /// The gateway's token, with --url.
    #[arg(
        long,
        global = true,
        env = "FIDELIO_BROWSER_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    /// Print the daemon's JSON answer instead of a summary.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: DeviceCommand,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ProfileName {
    /// Cross-platform, device-bound: BE=0, one global counter, packed self attestation.
    SecurityKey,
    /// Synced passkey: BE=1, BS=1, counter always 0, attestation none.
    SyncedPasskey,
    /// Platform authenticator: internal transport, built-in user verification.
    Platform,
}

impl ProfileName {
    fn name(self) -> &'static str {
        match self {
            Self::SecurityKey => "security-key",
            Self::SyncedPasskey => "synced-passkey",
            Self::Platform => "platform",
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum CounterName {
    Global,
    PerCredential,
    Zero,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum AttestationName {
    None,
    #[value(name = "self")]
    SelfSigned,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ExportFormat {
    /// FIDO Credential Exchange Format (with Fidelio's extension unless --strict).
    Cxf,
    /// W3C WebDriver "Credential Parameters" / CDP WebAuthn.Credential (base64url).
    Webdriver,
    /// The same, with standard base64 binary fields, as CDP's addCredential takes them.
    Cdp,
    /// Playwright's saved credentials (`context.credentials`).
    Playwright,
}

#[derive(Debug, Subcommand)]
enum DeviceCommand {
    /// List the daemon's devices: ID, profile, plugged in or not, UDP lane, credentials.
    List,
    /// Show one device's properties.
    Show { id: String },
    /// Add a device: its own store, settings and UDP lane, reachable through the browser
    /// gateway too.
    New {
        /// Its ID (1–64 of A–Z a–z 0–9 . _ -); default: device-N.
        #[arg(long)]
        id: Option<String>,
        /// The profile its settings start from.
        #[arg(long, value_enum, default_value_t = ProfileName::SecurityKey)]
        profile: ProfileName,
        /// Override the AAGUID (a UUID).
        #[arg(long)]
        aaguid: Option<String>,
        /// Override the algorithms offered (comma-separated: es256, eddsa).
        #[arg(long, value_delimiter = ',')]
        algorithms: Vec<String>,
        /// Override how signature counters advance.
        #[arg(long, value_enum)]
        counter: Option<CounterName>,
        /// Override the attestation of new credentials.
        #[arg(long, value_enum)]
        attestation: Option<AttestationName>,
        /// Override the backup-eligible flag of new credentials.
        #[arg(long)]
        backup_eligible: Option<bool>,
        /// Override the backup-state flag of new credentials.
        #[arg(long)]
        backup_state: Option<bool>,
        /// Override built-in user verification (on for the platform profile).
        #[arg(long)]
        uv: Option<bool>,
        /// Its UDP lane (loopback; default 127.0.0.1:0, a free port).
        #[arg(long)]
        udp: Option<SocketAddr>,
    },
    /// A second device holding the same credentials (a synced passkey on a new phone, or a
    /// cloned security key whose counters then diverge from the original's).
    Clone {
        /// The device to copy.
        source: String,
        /// The clone's ID; default: device-N.
        #[arg(long)]
        id: Option<String>,
        /// The clone's UDP lane (default: a free loopback port).
        #[arg(long)]
        udp: Option<SocketAddr>,
    },
    /// Bring two devices' credentials together: each gets the other's missing ones.
    Sync { first: String, second: String },
    /// Unplug a device ("lose" it): it answers nothing on any lane until plugged back in.
    #[command(alias = "lose")]
    Unplug { id: String },
    /// Plug an unplugged device back in.
    Plug { id: String },
    /// Make browser registrations (and logins no other device can answer) go to this device.
    Prefer { id: String },
    /// Wipe a device: credentials, PIN, large blobs; its settings go back to its profile's.
    Reset { id: String },
    /// Remove a device for good (its credentials are gone; the default device cannot go).
    Rm { id: String },
    /// Write a device's credentials, PRIVATE KEYS INCLUDED, to a file (mode 0600) or stdout.
    Export {
        id: String,
        /// The format.
        #[arg(long, value_enum, default_value_t = ExportFormat::Cxf)]
        format: ExportFormat,
        /// CXF only: plain CXF — no Fidelio extension; passkeys whose counter is not zero are
        /// left out (CXF forbids exporting them) with a warning.
        #[arg(long)]
        strict: bool,
        /// Where to write (created 0600, never overwritten unless --force); `-`: stdout.
        #[arg(long, short)]
        out: PathBuf,
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Add credentials from a file to a device (CXF, WebDriver/CDP or Playwright; the format
    /// is recognised).
    Import { id: String, file: PathBuf },
    /// Fault injection: make a device misbehave for the next N operations or until cleared.
    Fault {
        id: String,
        #[command(subcommand)]
        action: FaultAction,
    },
}

#[derive(Debug, Subcommand)]
enum FaultAction {
    /// Add a fault, given as JSON (docs/control-api.md, "Fault injection"), e.g.
    /// '{"type":"presence","outcome":"deny","count":1}'.
    Add { fault: String },
    /// List the device's active faults.
    List,
    /// Remove one fault by its ID.
    Rm { fault_id: String },
    /// Remove every fault.
    Clear,
}

/// The gateway, as the token file or the flags give it.
struct Gateway {
    address: SocketAddr,
    host: String,
    token: String,
}

impl Gateway {
    fn find(args: &DeviceArgs) -> Result<Self> {
        let (url, token) = match (&args.url, &args.token) {
            (Some(url), Some(token)) => (url.clone(), token.clone()),
            _ => {
                let path = args
                    .gateway_file
                    .clone()
                    .unwrap_or_else(fidelio_daemon::browser::default_token_file);
                let written =
                    fidelio_daemon::browser::TokenFile::read(&path).with_context(|| {
                        format!(
                            "reading the gateway's token file {} — is `fidelio serve --browser` \
                         running? (the control API lives on its browser gateway)",
                            path.display()
                        )
                    })?;
                (written.url, written.token)
            }
        };
        let host = url
            .strip_prefix("http://")
            .ok_or_else(|| anyhow!("the gateway URL must start with http:// ({url})"))?
            .trim_end_matches('/')
            .to_owned();
        let address = host
            .to_socket_addrs()
            .with_context(|| format!("resolving {host}"))?
            .next()
            .ok_or_else(|| anyhow!("{host} resolves to nothing"))?;
        Ok(Self {
            address,
            host,
            token,
        })
    }

    /// One request; the answer's `ok` value, or the daemon's error as the error.
    fn call(&self, method: &str, path: &str, body: Option<&Json>) -> Result<Json> {
        let payload = body.map(Json::to_string).unwrap_or_default();
        let mut stream = TcpStream::connect_timeout(&self.address, Duration::from_secs(5))
            .with_context(|| {
                format!(
                    "connecting to the daemon at {} (is it running?)",
                    self.address
                )
            })?;
        stream.set_read_timeout(Some(Duration::from_secs(120)))?;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.host,
            self.token,
            payload.len()
        );
        stream.write_all(head.as_bytes())?;
        stream.write_all(payload.as_bytes())?;
        let mut answer = Vec::new();
        stream
            .take(256 * 1024 * 1024)
            .read_to_end(&mut answer)
            .context("reading the daemon's answer")?;
        let split = answer
            .windows(4)
            .position(|window| window == b"\r\n\r\n")
            .ok_or_else(|| anyhow!("the daemon sent no HTTP answer"))?;
        let (head, body) = answer.split_at(split);
        let status: u16 = std::str::from_utf8(head)
            .ok()
            .and_then(|head| head.split(' ').nth(1))
            .and_then(|status| status.parse().ok())
            .ok_or_else(|| anyhow!("the daemon sent no HTTP status"))?;
        let body: Json = serde_json::from_slice(body.get(4..).unwrap_or_default())
            .context("the daemon's answer is not JSON")?;
        if let Some(error) = body.get("error") {
            bail!(
                "{} ({status}): {}",
                error.get("name").and_then(Json::as_str).unwrap_or("Error"),
                error.get("message").and_then(Json::as_str).unwrap_or("")
            );
        }
        if status != 200 {
            bail!("the daemon answered {status}");
        }
        Ok(body.get("ok").cloned().unwrap_or(Json::Null))
    }
}

fn summary(device: &Json) -> String {
    let text = |name: &str| device.get(name).and_then(Json::as_str).unwrap_or("-");
    format!(
        "{:<16} {:<15} {:<10} {:<22} {}",
        text("authenticatorId"),
        text("profile"),
        if device.get("plugged") == Some(&Json::Bool(false)) {
            "unplugged"
        } else {
            "plugged"
        },
        text("udp"),
        device
            .pointer("/properties/aaguid")
            .and_then(Json::as_str)
            .unwrap_or("-"),
    )
}

fn print(args: &DeviceArgs, value: &Json, text: impl FnOnce() -> String) -> Result<()> {
    if args.json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        println!("{}", text());
    }
    Ok(())
}

/// Writes `text` to `path` created with mode 0600 (never replacing a file unless `force`).
fn write_private(path: &Path, text: &str, force: bool) -> Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path).with_context(|| {
        format!(
            "creating {}{}",
            path.display(),
            if force {
                ""
            } else {
                " (it exists? --force replaces it)"
            }
        )
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

/// Runs `fidelio device …`.
pub fn run(args: &DeviceArgs) -> Result<()> {
    let gateway = Gateway::find(args)?;
    let path = |id: &str, action: &str| format!("/v1/control/devices/{id}{action}");
    match &args.command {
        DeviceCommand::List => {
            let devices = gateway.call("GET", "/v1/control/devices", None)?;
            print(args, &devices, || {
                let mut lines = vec![format!(
                    "{:<16} {:<15} {:<10} {:<22} AAGUID",
                    "ID", "PROFILE", "STATE", "UDP"
                )];
                for device in devices.as_array().into_iter().flatten() {
                    lines.push(summary(device));
                }
                lines.join("\n")
            })
        }
        DeviceCommand::Show { id } => {
            let device = gateway.call("GET", &path(id, ""), None)?;
            println!("{}", serde_json::to_string_pretty(&device)?);
            Ok(())
        }
        DeviceCommand::New {
            id,
            profile,
            aaguid,
            algorithms,
            counter,
            attestation,
            backup_eligible,
            backup_state,
            uv,
            udp,
        } => {
            let mut body = serde_json::Map::new();
            body.insert("profile".into(), json!(profile.name()));
            if let Some(id) = id {
                body.insert("id".into(), json!(id));
            }
            if let Some(aaguid) = aaguid {
                body.insert("aaguid".into(), json!(aaguid));
            }
            if !algorithms.is_empty() {
                body.insert("algorithms".into(), json!(algorithms));
            }
            if let Some(counter) = counter {
                body.insert(
                    "counter".into(),
                    json!(match counter {
                        CounterName::Global => "global",
                        CounterName::PerCredential => "per-credential",
                        CounterName::Zero => "zero",
                    }),
                );
            }
            if let Some(attestation) = attestation {
                body.insert(
                    "attestation".into(),
                    json!(match attestation {
                        AttestationName::None => "none",
                        AttestationName::SelfSigned => "self",
                    }),
                );
            }
            if let Some(value) = backup_eligible {
                body.insert("backupEligible".into(), json!(value));
            }
            if let Some(value) = backup_state {
                body.insert("backupState".into(), json!(value));
            }
            if let Some(value) = uv {
                body.insert("uv".into(), json!(value));
            }
            if let Some(udp) = udp {
                body.insert("udp".into(), json!(udp.to_string()));
            }
            let device = gateway.call("POST", "/v1/control/devices", Some(&Json::Object(body)))?;
            print(args, &device, || summary(&device))
        }
        DeviceCommand::Clone { source, id, udp } => {
            let mut body = serde_json::Map::new();
            if let Some(id) = id {
                body.insert("id".into(), json!(id));
            }
            if let Some(udp) = udp {
                body.insert("udp".into(), json!(udp.to_string()));
            }
            let device =
                gateway.call("POST", &path(source, "/clone"), Some(&Json::Object(body)))?;
            print(args, &device, || summary(&device))
        }
        DeviceCommand::Sync { first, second } => {
            let answer = gateway.call(
                "POST",
                &path(first, "/sync"),
                Some(&json!({ "with": second })),
            )?;
            print(args, &answer, || {
                let copied = |id: &str| {
                    answer
                        .pointer(&format!("/copied/{id}"))
                        .and_then(Json::as_u64)
                        .unwrap_or(0)
                };
                format!(
                    "{first}: +{} credential(s); {second}: +{} credential(s)",
                    copied(first),
                    copied(second)
                )
            })
        }
        DeviceCommand::Unplug { id } | DeviceCommand::Plug { id } => {
            let plugged = matches!(args.command, DeviceCommand::Plug { .. });
            let device = gateway.call(
                "POST",
                &path(id, "/plug"),
                Some(&json!({ "plugged": plugged })),
            )?;
            print(args, &device, || summary(&device))
        }
        DeviceCommand::Prefer { id } => {
            let device = gateway.call("POST", &path(id, "/prefer"), None)?;
            print(args, &device, || summary(&device))
        }
        DeviceCommand::Reset { id } => {
            let device = gateway.call("POST", &path(id, "/reset"), None)?;
            print(args, &device, || format!("{id}: wiped"))
        }
        DeviceCommand::Rm { id } => {
            let answer = gateway.call("DELETE", &path(id, ""), None)?;
            print(args, &answer, || format!("{id}: removed"))
        }
        DeviceCommand::Export {
            id,
            format,
            strict,
            out,
            force,
        } => {
            let format = match format {
                ExportFormat::Cxf => "cxf",
                ExportFormat::Webdriver => "webdriver",
                ExportFormat::Cdp => "cdp",
                ExportFormat::Playwright => "playwright",
            };
            let answer = gateway.call(
                "GET",
                &path(id, &format!("/export?format={format}&strict={strict}")),
                None,
            )?;
            let text = answer
                .get("document")
                .and_then(Json::as_str)
                .ok_or_else(|| anyhow!("the daemon's export has no document"))?;
            for warning in answer
                .get("warnings")
                .and_then(Json::as_array)
                .into_iter()
                .flatten()
            {
                eprintln!("warning: {}", warning.as_str().unwrap_or_default());
            }
            let count = answer.get("count").and_then(Json::as_u64).unwrap_or(0);
            if out.as_os_str() == "-" {
                println!("{text}");
            } else {
                write_private(out, text, *force)?;
                eprintln!(
                    "wrote {count} credential(s) to {} (mode 0600)",
                    out.display()
                );
            }
            eprintln!(
                "this export holds PRIVATE KEYS: anyone with it can sign in as these users; \
                 keep it out of logs and CI artifacts, and delete it when done"
            );
            Ok(())
        }
        DeviceCommand::Import { id, file } => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading {}", file.display()))?;
            let answer = gateway.call(
                "POST",
                &path(id, "/import"),
                Some(&json!({ "document": text })),
            )?;
            for warning in answer
                .get("warnings")
                .and_then(Json::as_array)
                .into_iter()
                .flatten()
            {
                eprintln!("warning: {}", warning.as_str().unwrap_or_default());
            }
            print(args, &answer, || {
                format!(
                    "{id}: imported {} credential(s) ({})",
                    answer.get("imported").and_then(Json::as_u64).unwrap_or(0),
                    answer.get("format").and_then(Json::as_str).unwrap_or("?")
                )
            })
        }
        DeviceCommand::Fault { id, action } => {
            let faults = format!("/v1/control/authenticator/{id}/faults");
            let answer = match action {
                FaultAction::Add { fault } => {
                    let value: Json = serde_json::from_str(fault)
                        .context("the fault must be JSON, e.g. '{\"type\":\"signature\"}'")?;
                    gateway.call("POST", &faults, Some(&value))?
                }
                FaultAction::List => gateway.call("GET", &faults, None)?,
                FaultAction::Rm { fault_id } => {
                    gateway.call("DELETE", &format!("{faults}/{fault_id}"), None)?
                }
                FaultAction::Clear => gateway.call("DELETE", &faults, None)?,
            };
            println!("{}", serde_json::to_string_pretty(&answer)?);
            Ok(())
        }
    }
}
