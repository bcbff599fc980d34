//! Fidelio's virtual authenticator daemon: the core behind CTAPHID, reachable through lanes
//! (UDP always; UHID and USB/IP on request), with a loopback control interface and decoded
//! CTAP logging.
//!
//! ```text
//!   UDP 127.0.0.1:8111 ──packets──▶ device loop (CtapHid + Authenticator) ──packets──▶ UDP
//!   /dev/uhid (--uhid) ──packets──▶ the same device loop ──packets──▶ /dev/uhid
//!   USB/IP (--usbip) ──URBs──▶ usb-device + fidelio-usb class ──packets──▶ the same loop
//!   control 127.0.0.1:8112 (JSON lines) ──▶ status, power-cycle
//!   browser gateway (--browser, HTTP 127.0.0.1:8113) ──▶ fidelio-webauthn client ──packets──▶
//!     the same loop (docs/browser.md)
//!   control API (the gateway's /v1/control/…) ──▶ virtual authenticator commands, events
//!     (docs/control-api.md)
//! ```

pub mod browser;
pub mod control;
pub mod ctap_log;
pub mod device;
pub mod devices;
pub mod exchange;
pub mod faults;
pub mod operation;
pub mod presence;
pub mod udp;
pub mod uhid;
pub mod usbip;
pub mod virtual_auth;

use std::io::{BufRead, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;

use authenticator_core::{Authenticator, Config, MemoryStore, Store};
use fidelio_host::{HostPlatform, RedbStore};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tokio::sync::mpsc;

use crate::device::DeviceOptions;
use crate::presence::{DaemonPresence, PresenceMode, PresenceSignals, PromptQuestion};

/// Where the daemon keeps its credentials.
#[derive(Debug, Clone)]
pub enum StateLocation {
    /// A state file (created if missing, locked while in use).
    File(PathBuf),
    /// Memory only: everything is forgotten at exit.
    Ephemeral,
}

/// Everything `fidelio serve` needs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The authenticator's settings.
    pub config: Config,
    /// Where credentials live.
    pub state: StateLocation,
    /// The UDP lane's address.
    pub udp: SocketAddr,
    /// The control interface's address (`None`: no control interface).
    pub control: Option<SocketAddr>,
    /// How presence is answered.
    pub presence: PresenceMode,
    /// A seed makes every random value reproducible.
    pub seed: Option<u64>,
    /// Log every request and response decoded.
    pub log_ctap: bool,
    /// Also serve a FIDO HID device in this machine's kernel through `/dev/uhid` (the UHID
    /// lane, serial [`uhid::default_uniq`]); the UDP lane stays on.
    pub uhid: bool,
    /// Also export the key as a USB device over USB/IP on this address (the USB/IP lane;
    /// `None`: off).
    pub usbip: Option<SocketAddr>,
    /// Also serve the browser gateway (WebAuthn ceremonies over loopback HTTP for the Chromium
    /// extension; `None`: off).
    pub browser: Option<browser::BrowserOptions>,
    /// Write every event of every device (operations, credentials, lifecycle, faults) to this
    /// file as JSON lines (`None`: nowhere).
    pub event_log: Option<PathBuf>,
}

/// Why the daemon could not start or stopped with an error.
#[derive(Debug)]
pub enum ServeError {
    /// The state file could not be opened (locked, corrupt, newer format…).
    State(fidelio_host::OpenError),
    /// A lane could not bind.
    Bind(udp::BindError),
    /// The event log file could not be opened.
    EventLog(PathBuf, std::io::Error),
    /// The control interface could not bind.
    Control(SocketAddr, std::io::Error),
    /// Signal handlers could not be installed.
    Signals(std::io::Error),
    /// The UHID lane could not start.
    Uhid(uhid::UhidError),
    /// The USB/IP lane could not bind.
    Usbip(usbip::BindError),
    /// The browser gateway could not start.
    Browser(browser::GatewayError),
}

impl std::fmt::Display for ServeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServeError::State(error) => write!(f, "{error}"),
            ServeError::Bind(error) => write!(f, "{error}"),
            ServeError::EventLog(path, error) => {
                write!(f, "cannot open the event log {}: {error}", path.display())
            }
            ServeError::Control(address, error) => {
                write!(
                    f,
                    "cannot listen for control connections on {address}: {error}"
                )
            }
            ServeError::Signals(error) => write!(f, "cannot install signal handlers: {error}"),
            ServeError::Uhid(error) => write!(f, "{error}"),
            ServeError::Usbip(error) => write!(f, "{error}"),
            ServeError::Browser(error) => write!(f, "{error}"),
        }
    }
}

impl std::error::Error for ServeError {}

/// The default state file: `$XDG_DATA_HOME/fidelio/default.redb`, or
/// `~/.local/share/fidelio/default.redb`.
pub fn default_state_path() -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("fidelio").join("default.redb")
}

/// Runs the daemon until SIGINT or SIGTERM. Must be called inside a `tokio::task::LocalSet`
/// on a current-thread runtime. `ready` is called with the bound UDP address once packets are
/// being served.
pub async fn serve(
    options: ServeOptions,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), ServeError> {
    let shutdown = shutdown_signal().map_err(ServeError::Signals)?;
    serve_until(options, ready, shutdown).await
}

/// Runs the daemon until `shutdown` resolves (for embedding in tests and tools; installs no
/// signal handlers).
pub async fn serve_until(
    options: ServeOptions,
    ready: impl FnOnce(SocketAddr),
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ServeError> {
    match &options.state {
        StateLocation::File(path) => {
            if let Some(parent) = path.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            let store = RedbStore::open(path).map_err(ServeError::State)?;
            tracing::info!("state: {}", path.display());
            serve_with(store, options, ready, shutdown).await
        }
        StateLocation::Ephemeral => {
            tracing::info!("state: in memory (forgotten at exit)");
            serve_with(MemoryStore::new(), options, ready, shutdown).await
        }
    }
}

async fn serve_with<S: Store + 'static>(
    store: S,
    options: ServeOptions,
    ready: impl FnOnce(SocketAddr),
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ServeError> {
    let mut rng = match options.seed {
        Some(seed) => ChaCha20Rng::seed_from_u64(seed),
        None => ChaCha20Rng::from_rng(&mut fidelio_host::OsRng),
    };
    let channel_seed = rand_core::Rng::next_u64(&mut rng);

    let signals = Rc::new(PresenceSignals::default());
    let prompts = (options.presence == PresenceMode::Prompt).then(start_prompt_thread);
    let mut presence = DaemonPresence::new(options.presence, signals.clone(), prompts);
    if options.config.platform_device {
        // A platform authenticator verifies its user itself (answered like presence).
        presence.built_in_uv = authenticator_core::platform::BuiltInUv::Configured;
    }
    let max_msg_size = options.config.max_msg_size;
    // A virtual authenticator keeps a record of its non-discoverable credentials too, so that
    // the control API can list and delete them (docs/control-api.md).
    let mut config = options.config.clone();
    config.keep_non_discoverable = true;
    let authenticator = Authenticator::new(HostPlatform::new(rng, store, presence), config);

    let lane = udp::UdpLane::bind(options.udp)
        .await
        .map_err(ServeError::Bind)?;
    let udp_address = lane.local_addr().unwrap_or(options.udp);
    let uhid_lane = if options.uhid {
        let identity = uhid::DeviceIdentity::fidelio(&uhid::default_uniq());
        let path = std::path::Path::new(uhid::DEFAULT_PATH);
        Some(uhid::UhidLane::open(path, &identity).map_err(ServeError::Uhid)?)
    } else {
        None
    };
    let usbip_lane = match options.usbip {
        Some(address) => Some(
            usbip::UsbipLane::bind(address)
                .await
                .map_err(ServeError::Usbip)?,
        ),
        None => None,
    };
    // The default device's lanes pass through its plug (`devices.rs`).
    let plug = devices::Plug::plugged_in();
    let (inbound_tx, inbound_rx) = plug.channel(256);
    // The gateway's client's requests, straight to the core (`device::Direct`).
    let (direct_tx, direct_rx) = plug.channel(64);
    let (control_tx, control_rx) = mpsc::channel(16);
    if let Some(address) = options.control {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|error| ServeError::Control(address, error))?;
        tracing::info!("control interface on {address}");
        tokio::task::spawn_local(control::run(listener, control_tx.clone()));
    }
    let mut lanes = device::Lanes::new();
    lanes.push(lane.outbound());
    let events = Rc::new(virtual_auth::EventLog::new());
    if let Some(path) = &options.event_log {
        events
            .write_to(path)
            .map_err(|error| ServeError::EventLog(path.clone(), error))?;
        tracing::info!("event log: {}", path.display());
    }
    let ctaphid = fidelio_ctaphid::Config {
        max_msg_size,
        // CTAP2 and CTAP1/U2F (no NMSG): MSG requests go to the core's U2F handler.
        capabilities: fidelio_ctaphid::CAPABILITY_WINK | fidelio_ctaphid::CAPABILITY_CBOR,
        ..fidelio_ctaphid::Config::default()
    };
    let host = Rc::new(devices::DeviceHost::new(
        devices::HostSettings {
            presence: options.presence,
            log_ctap: options.log_ctap,
            ctaphid: ctaphid.clone(),
            seed: options.seed,
        },
        events.clone(),
    ));
    host.register_default(
        virtual_auth::DEFAULT_AUTHENTICATOR,
        devices::DeviceSettings {
            profile: devices::profile_name_of(&options.config).to_owned(),
            config: options.config.clone(),
            built_in_uv: options.config.platform_device,
        },
        control_tx.clone(),
        plug.clone(),
        Some(udp_address),
    );
    let gateway = match &options.browser {
        Some(browser) => {
            // The control API lives on the gateway's server.
            let control_api = virtual_auth::ControlApi::new(host.clone());
            let gateway = browser::Gateway::start_with_control(
                browser,
                direct_tx,
                options.seed,
                Some(Rc::new(control_api)),
            )
            .await
            .map_err(ServeError::Browser)?;
            host.set_gateway(gateway.link());
            Some(gateway)
        }
        None => None,
    };
    if let Some(uhid) = &uhid_lane {
        lanes.push(uhid.outbound());
        // Detached: it ends at the UHID_STOP that follows UHID_DESTROY, or with the process.
        let _reader = uhid
            .spawn_reader(inbound_tx.clone())
            .map_err(ServeError::Uhid)?;
    }
    if let Some(usbip) = usbip_lane {
        lanes.push(usbip.outbound());
        if let Ok(address) = usbip.local_addr() {
            tracing::info!(
                "exporting a USB device over USB/IP on {address} (bus ID {}); attach it with:\n{}",
                usbip::BUS_ID,
                usbip::attach_commands(address)
            );
        }
        tokio::task::spawn_local(usbip.run(inbound_tx.clone()));
    }
    let outbound: Rc<dyn device::Outbound> = plug.outbound(Rc::new(lanes));
    tokio::task::spawn_local(lane.run(inbound_tx));

    let device_options = DeviceOptions {
        log_ctap: options.log_ctap,
        channel_seed,
        ctaphid,
    };
    tracing::info!("serving CTAPHID over UDP on {udp_address}");
    if uhid_lane.is_some() {
        tracing::info!("serving CTAPHID over UHID ({})", uhid::DEFAULT_PATH);
    }
    ready(udp_address);
    device::run_with(
        authenticator,
        signals,
        device_options,
        inbound_rx,
        control_rx,
        outbound,
        shutdown,
        device::DeviceExtras {
            id: virtual_auth::DEFAULT_AUTHENTICATOR.to_owned(),
            events,
            presence: options.presence,
            direct: Some(direct_rx),
        },
    )
    .await;
    drop(control_tx);
    // The gateway stops accepting and removes its token file.
    drop(gateway);
    // UHID_DESTROY: the hidraw node goes away now, not at process exit.
    drop(uhid_lane);
    tracing::info!("stopped cleanly");
    Ok(())
}

fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM: stopping"),
            _ = interrupt.recv() => tracing::info!("SIGINT: stopping"),
        }
    })
}

/// Reads yes/no answers from the terminal for `--presence prompt`.
fn start_prompt_thread() -> mpsc::UnboundedSender<PromptQuestion> {
    let (questions, mut receiver) = mpsc::unbounded_channel::<PromptQuestion>();
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        while let Some(question) = receiver.blocking_recv() {
            let mut stderr = std::io::stderr();
            let _ = write!(stderr, "{}", question.text);
            let _ = stderr.flush();
            let mut line = String::new();
            let answered = stdin
                .lock()
                .read_line(&mut line)
                .map(|n| n > 0)
                .unwrap_or(false);
            let yes = answered && matches!(line.trim(), "y" | "Y" | "yes" | "YES");
            if question.answer.send(yes).is_err() {
                let _ = writeln!(
                    stderr,
                    "[fidelio] (too late: the request had already timed out)"
                );
            }
        }
    });
    questions
}
