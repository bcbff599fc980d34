//! `fidelio serve` and `fidelio power-cycle`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use fidelio_daemon::presence::PresenceMode;
use fidelio_daemon::{ServeOptions, StateLocation};

use crate::Profile;

/// The UDP lane's default address, where CTAP test suites look for a simulator.
pub const DEFAULT_UDP: &str = "127.0.0.1:8111";
/// The control interface's default address.
pub const DEFAULT_CONTROL: &str = "127.0.0.1:8112";
/// The USB/IP lane's address when `--usbip` is given without one.
pub const DEFAULT_USBIP: &str = "127.0.0.1:3240";

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// State file holding the credentials (created if missing; locked while served).
    /// Default: $XDG_DATA_HOME/fidelio/default.redb (~/.local/share/fidelio/default.redb).
    #[arg(long, conflicts_with = "ephemeral")]
    state: Option<PathBuf>,
    /// Keep credentials in memory only; they are gone when the daemon stops.
    #[arg(long)]
    ephemeral: bool,
    /// Address of the UDP lane (one 64-byte CTAPHID report per datagram).
    #[arg(long, default_value = DEFAULT_UDP)]
    udp: SocketAddr,
    /// Address of the loopback control interface (JSON lines: status, power-cycle).
    #[arg(long, default_value = DEFAULT_CONTROL)]
    control: SocketAddr,
    /// How user presence is answered: auto (always consent), deny (always refuse), prompt
    /// (ask on this terminal; no answer within 30 s is a timeout).
    #[arg(long, default_value = "auto")]
    presence: PresenceMode,
    /// Seed every random value (keys, credential IDs, channel IDs): reproducible sessions.
    #[arg(long)]
    seed: Option<u64>,
    /// Device profile.
    #[arg(long, value_enum, default_value_t = Profile::SecurityKey)]
    profile: Profile,
    /// Attestation: self, none or batch:DIR (from `fidelio attestation init DIR`).
    /// Default: the profile's.
    #[arg(long)]
    attestation: Option<String>,
    /// Accept authenticatorReset at any time, not only within 10 s of start (power-up).
    #[arg(long)]
    reset_anytime: bool,
    /// Log every CTAP request and response, decoded (command names, CBOR diagnostic
    /// notation, secrets redacted).
    #[arg(long)]
    log_ctap: bool,
    /// Also appear on this machine as a USB security key, through /dev/uhid (the UDP lane
    /// stays on).
    ///
    /// Creates a FIDO HID device in this machine's kernel, so browsers, `ssh-keygen -t
    /// ecdsa-sk`, libfido2 and python-fido2 find it as /dev/hidrawN like a plugged-in key. Needs
    /// the uhid kernel module and read-write access to /dev/uhid; `fidelio doctor` checks both
    /// (and the hidraw node's permissions) and prints the fix. The device disappears when the
    /// daemon stops, and also if it crashes or is killed.
    #[arg(long)]
    uhid: bool,
    /// Also export the key as a full-speed USB device over USB/IP on ADDR (plain `--usbip`:
    /// 127.0.0.1:3240, the port usbip clients use by default). Another machine, a VM or this
    /// one then attaches it with `usbip attach -r HOST -b 1-1` (Linux vhci-hcd, Windows
    /// usbip-win2) and sees a USB security key. Off by default; USB/IP has no authentication,
    /// so keep ADDR on loopback or a trusted network.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = DEFAULT_USBIP)]
    usbip: Option<SocketAddr>,
    /// Also serve the browser gateway on ADDR (plain `--browser`: 127.0.0.1:8113): loopback
    /// HTTP that runs WebAuthn ceremonies for the Chromium extension against this device
    /// (docs/browser.md). Every request needs the gateway's token, printed at start and
    /// written with the URL to the token file.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = fidelio_daemon::browser::DEFAULT_ADDRESS)]
    browser: Option<SocketAddr>,
    /// The browser gateway's token (default: a fresh random one per start). For tests.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "FIDELIO_BROWSER_TOKEN",
        hide_env_values = true
    )]
    browser_token: Option<String>,
    /// Where to write the gateway's URL and token (JSON, mode 0600). Default:
    /// $XDG_RUNTIME_DIR/fidelio/browser-gateway.json (~/.local/state/fidelio/… without it).
    #[arg(long, value_name = "PATH", requires = "browser")]
    browser_token_file: Option<PathBuf>,
    /// A tester's knob: the PIN the gateway's user "types" when a ceremony needs user
    /// verification. If the device has no PIN, the gateway sets this one first.
    #[arg(
        long,
        value_name = "PIN",
        env = "FIDELIO_BROWSER_PIN",
        hide_env_values = true
    )]
    browser_pin: Option<String>,
    /// Write every event of every device to FILE as JSON lines, appended (created 0600): each
    /// CTAP operation with its time, device, lane, command, RP ID, credential ID, result and
    /// latency, and the credential, lifecycle and fault events. No secrets are ever in it.
    /// Meant as a CI artifact.
    #[arg(long, value_name = "FILE")]
    event_log: Option<PathBuf>,
}

/// Runs the daemon.
pub fn run(args: &ServeArgs) -> Result<()> {
    init_logging();
    let mut config = args.profile.config();
    if let Some(choice) = &args.attestation {
        config.attestation = crate::attestation::mode(choice)?;
    }
    if args.reset_anytime {
        config.reset_window_ms = None;
    }
    let state = if args.ephemeral {
        StateLocation::Ephemeral
    } else {
        StateLocation::File(
            args.state
                .clone()
                .unwrap_or_else(fidelio_daemon::default_state_path),
        )
    };
    let browser = match args.browser {
        Some(address) => Some(browser_options(args, address)?),
        None => None,
    };
    let options = ServeOptions {
        config,
        state,
        udp: args.udp,
        control: Some(args.control),
        presence: args.presence,
        seed: args.seed,
        log_ctap: args.log_ctap,
        uhid: args.uhid,
        usbip: args.usbip,
        browser: browser.clone(),
        event_log: args.event_log.clone(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let local = tokio::task::LocalSet::new();
    local.block_on(
        &runtime,
        fidelio_daemon::serve(options, |address| {
            eprintln!(
                "fidelio: serving a virtual FIDO2 authenticator on udp:{address} (Ctrl-C stops)"
            );
            if args.uhid {
                announce_uhid_node();
            }
            if let Some(browser) = &browser {
                announce_browser_gateway(browser);
            }
            if let Some(usbip) = args.usbip {
                eprintln!(
                    "fidelio: exporting it over USB/IP on {usbip} as bus ID {}; attach it with:",
                    fidelio_daemon::usbip::BUS_ID
                );
                for line in fidelio_daemon::usbip::attach_commands(usbip).lines() {
                    eprintln!("    {line}");
                }
            }
        }),
    )?;
    Ok(())
}

fn browser_options(
    args: &ServeArgs,
    address: SocketAddr,
) -> Result<fidelio_daemon::browser::BrowserOptions> {
    let mut options = fidelio_daemon::browser::BrowserOptions::new(address);
    if let Some(token) = &args.browser_token {
        fidelio_daemon::browser::check_token(token).map_err(anyhow::Error::msg)?;
        options.token = token.clone();
    }
    if let Some(path) = &args.browser_token_file {
        options.token_file = Some(path.clone());
    }
    if let Some(pin) = &args.browser_pin {
        if pin.chars().count() < 4 || pin.len() > 63 {
            bail!("--browser-pin: a PIN has at least 4 characters and at most 63 bytes");
        }
        options.pin = Some(pin.clone());
    }
    Ok(options)
}

/// Prints where the browser gateway is (the token file has the bound port) and its token.
fn announce_browser_gateway(options: &fidelio_daemon::browser::BrowserOptions) {
    let written = options
        .token_file
        .as_deref()
        .and_then(|path| fidelio_daemon::browser::TokenFile::read(path).ok());
    let url = written
        .map(|file| file.url)
        .unwrap_or_else(|| format!("http://{}", options.address));
    eprintln!("fidelio: browser gateway on {url}");
    eprintln!("fidelio: browser gateway token: {}", options.token);
    if let Some(path) = &options.token_file {
        eprintln!(
            "fidelio: (URL and token written to {}; `fidelio browser install` lets the Chromium \
             extension read them)",
            path.display()
        );
    }
}

/// How long to look for the UHID device's hidraw node: the kernel adds the HID device from a
/// worker just after `UHID_CREATE2` returns, and udev names the node then.
const HIDRAW_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Prints which hidraw node the UHID device got, once the kernel has made it (from a thread:
/// the device loop is starting meanwhile).
fn announce_uhid_node() {
    let uniq = fidelio_daemon::uhid::default_uniq();
    let serial = uniq.clone();
    let spawned = std::thread::Builder::new()
        .name("uhid-announce".to_owned())
        .spawn(move || {
            let started = std::time::Instant::now();
            loop {
                let sys = std::path::Path::new("/sys");
                if let Some(node) = fidelio_daemon::uhid::find_hidraw(sys, &uniq) {
                    let name = fidelio_daemon::uhid::DeviceIdentity::fidelio(&uniq).name;
                    eprintln!(
                        "fidelio: UHID device created: /dev/{node} (\"{name}\", serial {uniq})"
                    );
                    return;
                }
                if started.elapsed() >= HIDRAW_WAIT {
                    eprintln!("fidelio: UHID device created (serial {uniq})");
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
        });
    if spawned.is_err() {
        eprintln!("fidelio: UHID device created (serial {serial})");
    }
}

/// `fidelio power-cycle`: asks a running daemon to power-cycle its device.
pub fn power_cycle(control: SocketAddr) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let answer = runtime
        .block_on(fidelio_daemon::control::call(control, "power-cycle"))
        .with_context(|| format!("cannot reach the daemon's control interface on {control}"))?;
    if answer.get("ok").and_then(serde_json::Value::as_bool) != Some(true) {
        bail!("the daemon refused: {answer}");
    }
    println!("power-cycled: channels and transient state cleared, credentials kept");
    Ok(())
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FIDELIO_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}
