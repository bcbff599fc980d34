//! The browser gateway (`fidelio serve --browser`): WebAuthn ceremonies over loopback HTTP,
//! run by fidelio-webauthn's client against the daemon's own device.
//!
//! ```text
//!  extension / shim ──HTTP POST /v1/create, /v1/get──▶ gateway (the daemon's LocalSet)
//!     fidelio-webauthn Client of the device the ceremony goes to ── Direct::Request ──▶
//!     that device's loop (core) ── the CTAP response ──▶ the client ── JSON ──▶ caller
//! ```
//!
//! * **The same device.** The gateway's client is one more host of each device: its CTAP2
//!   requests go into the device loop ([`Direct`]) and wait their turn behind other hosts'
//!   requests, are answered by the same core, show up in events and the event log with the
//!   lane `gateway`, and meet the same injected faults. Credentials made through the browser
//!   are the ones `fidelio client` and python-fido2 see over UDP.
//! * **No framing, no thread hop.** The client runs on the daemon's own thread, so a ceremony
//!   costs the core's work and the HTTP exchange, nothing more: CTAPHID framing and a worker
//!   thread (what this lane used before) cost 6 cross-thread wake-ups per ceremony. A cancel
//!   (page abort, lifetime timer, caller gone) ends the device's wait for the user, as
//!   CTAPHID_CANCEL does. One ceremony at a time per device; devices run side by side.
//! * **Always an answer.** Every ceremony gets the options' lifetime timer (WebAuthn's clamp:
//!   10 s to 10 min, 5 min by default); when it fires the ceremony's signal times out, and if the
//!   ceremony has not settled a few seconds later the HTTP answer is `NotAllowedError` anyway.
//!   A caller that hangs up aborts its ceremony; `POST /v1/cancel` aborts one by request ID
//!   (what the extension sends when the page's `AbortSignal` fires).
//! * **Loopback and a token.** The server only binds loopback addresses and answers only
//!   requests with `Authorization: Bearer <token>`; the token is random per daemon unless
//!   given, printed at start, and written with the URL to a 0600 file
//!   ([`default_token_file`]) for the native-messaging host to hand to the extension.
//!
//! The HTTP/1.1 server is written here rather than taken from `hyper`/`axum`: the gateway
//! needs four JSON endpoints, one request per connection, `Content-Length` bodies and hard
//! limits — about as much code as wiring a framework, with nothing for a hostile local client
//! to reach beyond that, no new dependency tree in the daemon, and the current-thread `LocalSet`
//! the device loop already runs on.
//!
//! Endpoints (JSON in and out; every answer is an object):
//!
//! | request | answer |
//! |---|---|
//! | `POST /v1/create` `{origin, topOrigin?, sameOriginWithAncestors?, requestId?, options}` | `{ok: RegistrationResponseJSON}` or `{error: {name, message}}` |
//! | `POST /v1/get` (same body, request options) | `{ok: AuthenticationResponseJSON}` or `{error}` |
//! | `POST /v1/isUvpaa` | `{ok: bool}`: the device has built-in user verification |
//! | `POST /v1/cancel` `{requestId}` | `{ok: bool}`: whether a ceremony was aborted |
//! | `GET /v1/status` | `{ok: {service, version, ceremonies, pending, pin}}` |
//! | `POST /v1/get` with `mediation: "conditional"` | waits, with no timer, until an account is picked through `/v1/control/conditional` (below), then the get runs for it |
//! | `GET /v1/control/conditional`, `POST /v1/control/conditional/{id}/select` | the waiting conditional requests and the accounts each offers; picking one |
//! | `/v1/control/…` | the control API ([`crate::virtual_auth`], `docs/control-api.md`), when started with one |
//!
//! A WebAuthn failure is `200 {error}` with the `DOMException` name a browser would raise; a
//! body that is not a request is `400 {error: {name: "TypeError"}}`; a missing or wrong token is
//! `401`.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use fidelio_webauthn::ctap::{ChannelError, get_info};
use fidelio_webauthn::pin::{Protocol, set_pin};
use fidelio_webauthn::{
    AbortSignal, Caller, Client, ClientConfig, Ctap2, KnownPin, Unattended, UserInterface,
    WebAuthnError,
};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use serde_json::{Value as Json, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};

use crate::device::{Direct, Peer};
use crate::virtual_auth::{ControlApi, DEFAULT_AUTHENTICATOR, decode_b64, encode_b64};

/// The gateway's address when `--browser` is given without one.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:8113";

/// The longest request head (request line and headers).
const MAX_HEAD: usize = 16 * 1024;
/// The longest request body.
const MAX_BODY: usize = 1024 * 1024;
/// How long a client may take to send its whole request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a ceremony gets to settle after its timer fired, before the answer is
/// `NotAllowedError` regardless.
const SETTLE_GRACE: Duration = Duration::from_secs(5);
/// Connections served at once; more are answered 503 at once.
const MAX_CONNECTIONS: usize = 64;
/// Ceremonies waiting for one device; more are refused with `NotAllowedError`.
const MAX_QUEUED: usize = 32;

/// The gateway's settings.
#[derive(Clone)]
pub struct BrowserOptions {
    /// Where to listen (loopback only).
    pub address: SocketAddr,
    /// The token every request must carry (`Authorization: Bearer …`).
    pub token: String,
    /// Where to write `{url, token, pid}` (0600); `None`: nowhere.
    pub token_file: Option<PathBuf>,
    /// The PIN the gateway's user types when a ceremony needs user verification; the gateway
    /// sets it on the device first if the device has no PIN (a tester's knob).
    pub pin: Option<String>,
}

impl std::fmt::Debug for BrowserOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrowserOptions")
            .field("address", &self.address)
            .field("token", &"<redacted>")
            .field("token_file", &self.token_file)
            .field("pin", &self.pin.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl BrowserOptions {
    /// Options for `address` with a fresh random token, written to [`default_token_file`].
    pub fn new(address: SocketAddr) -> Self {
        Self {
            address,
            token: new_token(),
            token_file: Some(default_token_file()),
            pin: None,
        }
    }
}

/// A fresh token: 32 random bytes from the OS, in hex.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand_core::Rng::fill_bytes(&mut fidelio_host::OsRng, &mut bytes);
    hex::encode(bytes)
}

/// Whether a token given by the user is usable: 16 to 256 visible ASCII characters.
pub fn check_token(token: &str) -> Result<(), String> {
    if !(16..=256).contains(&token.len()) {
        return Err(format!(
            "a browser token has 16 to 256 characters, not {}",
            token.len()
        ));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("a browser token is visible ASCII characters only (no spaces)".into());
    }
    Ok(())
}

/// Where the gateway writes its URL and token by default:
/// `$XDG_RUNTIME_DIR/fidelio/browser-gateway.json`, else
/// `$XDG_STATE_HOME/fidelio/browser-gateway.json` (`~/.local/state/fidelio/…`).
pub fn default_token_file() -> PathBuf {
    let nonempty = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    let base = nonempty("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .or_else(|| nonempty("XDG_STATE_HOME").map(PathBuf::from))
        .or_else(|| nonempty("HOME").map(|home| PathBuf::from(home).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("fidelio").join("browser-gateway.json")
}

/// What a token file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenFile {
    /// The gateway's base URL (`http://127.0.0.1:8113`).
    pub url: String,
    /// The token.
    pub token: String,
}

impl TokenFile {
    /// Reads and checks a token file.
    pub fn read(path: &Path) -> io::Result<Self> {
        let text = std::fs::read_to_string(path)?;
        let value: Json = serde_json::from_str(&text)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let field = |name: &str| {
            value
                .get(name)
                .and_then(Json::as_str)
                .map(str::to_owned)
                .ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{} has no \"{name}\"", path.display()),
                    )
                })
        };
        Ok(Self {
            url: field("url")?,
            token: field("token")?,
        })
    }
}

/// Why the gateway could not start.
#[derive(Debug)]
pub enum GatewayError {
    /// The address is not a loopback address.
    NotLoopback(SocketAddr),
    /// Binding failed.
    Bind(SocketAddr, io::Error),
    /// The token file could not be written.
    TokenFile(PathBuf, io::Error),
}

impl std::fmt::Display for GatewayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotLoopback(address) => write!(
                f,
                "the browser gateway only listens on loopback addresses, not {address}"
            ),
            Self::Bind(address, error) => {
                write!(
                    f,
                    "cannot listen for the browser gateway on {address}: {error}"
                )?;
                if error.kind() == io::ErrorKind::AddrInUse {
                    write!(
                        f,
                        " (another fidelio serve --browser? pick a port with --browser ADDR)"
                    )?;
                }
                Ok(())
            }
            Self::TokenFile(path, error) => {
                write!(
                    f,
                    "cannot write the browser token file {}: {error}",
                    path.display()
                )
            }
        }
    }
}

impl std::error::Error for GatewayError {}

/// A running gateway. Dropping it stops accepting connections and removes the token file
/// (if it still holds this gateway's token).
#[derive(Debug)]
pub struct Gateway {
    address: SocketAddr,
    token: String,
    token_file: Option<PathBuf>,
    link: Rc<GatewayLink>,
    _stop: oneshot::Sender<()>,
}

impl Gateway {
    /// Binds, writes the token file, starts the HTTP server (a local task: call inside the
    /// daemon's `LocalSet`). `device` takes the default device's [`Direct`] requests (the
    /// device loop reads the other end).
    pub async fn start(
        options: &BrowserOptions,
        device: mpsc::Sender<Direct>,
        seed: Option<u64>,
    ) -> Result<Self, GatewayError> {
        Self::start_with_control(options, device, seed, None).await
    }

    /// [`start`](Self::start), also serving the control API (`/v1/control/…`,
    /// `virtual_auth.rs`) when given.
    pub async fn start_with_control(
        options: &BrowserOptions,
        device: mpsc::Sender<Direct>,
        seed: Option<u64>,
        control: Option<Rc<ControlApi>>,
    ) -> Result<Self, GatewayError> {
        if !options.address.ip().is_loopback() {
            return Err(GatewayError::NotLoopback(options.address));
        }
        let listener = TcpListener::bind(options.address)
            .await
            .map_err(|error| GatewayError::Bind(options.address, error))?;
        let address = listener.local_addr().unwrap_or(options.address);
        let url = format!("http://{address}");
        if let Some(path) = &options.token_file {
            write_token_file(path, &url, &options.token)
                .map_err(|error| GatewayError::TokenFile(path.clone(), error))?;
        }

        // Distinct from the device's stream: a seeded session stays reproducible.
        let rng = match seed {
            Some(seed) => ChaCha20Rng::seed_from_u64(seed ^ 0x6761_7465_7761_7931),
            None => ChaCha20Rng::from_rng(&mut fidelio_host::OsRng),
        };
        let link = Rc::new(GatewayLink {
            clients: RefCell::new(HashMap::new()),
            rng: RefCell::new(rng),
            next_peer: Cell::new(0),
        });
        crate::devices::GatewayAttach::attach(&*link, DEFAULT_AUTHENTICATOR, device);

        let shared = Rc::new(Shared {
            token: options.token.clone(),
            link: link.clone(),
            pin_value: options.pin.clone(),
            pending: RefCell::new(HashMap::new()),
            config: ClientConfig::default(),
            ceremonies: Cell::new(0),
            started: Instant::now(),
            pin: options.pin.is_some(),
            connections: Semaphore::new(MAX_CONNECTIONS),
            settle_grace: SETTLE_GRACE,
            control,
            conditional: RefCell::new(BTreeMap::new()),
            conditional_changed: Notify::new(),
        });
        let (stop, stopped) = oneshot::channel();
        tokio::task::spawn_local(accept(listener, shared, stopped));
        tracing::info!("browser gateway on {url}");
        Ok(Self {
            address,
            token: options.token.clone(),
            token_file: options.token_file.clone(),
            link,
            _stop: stop,
        })
    }

    /// The address bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    /// The base URL (`http://127.0.0.1:8113`).
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The token file, if one was written.
    pub fn token_file(&self) -> Option<&Path> {
        self.token_file.as_deref()
    }

    /// The lane's sending half, for the device loop's [`crate::device::Lanes`].
    /// How devices started later get (and lose) a client here.
    pub fn link(&self) -> Rc<dyn crate::devices::GatewayAttach> {
        self.link.clone()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(path) = &self.token_file
            && TokenFile::read(path).is_ok_and(|file| file.token == self.token)
        {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Writes `{url, token, pid}` to `path` with mode 0600 (a new file, renamed into place), making
/// its directory (0700) if needed.
pub fn write_token_file(path: &Path, url: &str, token: &str) -> io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)?;
    }
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(format!(".{}.tmp", std::process::id()));
    let temporary = PathBuf::from(temporary);
    let _ = std::fs::remove_file(&temporary);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temporary)?;
    let mut text = json!({"url": url, "token": token, "pid": std::process::id()}).to_string();
    text.push('\n');
    let written = file
        .write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::rename(&temporary, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}

// ---------------------------------------------------------------------------------------------
// The gateway's clients: one fidelio-webauthn client per device, on the daemon's own thread,
// sending CTAP2 requests straight into that device's loop (`device::Direct`).

/// A device's CTAP2 channel for the gateway's client: requests go into the device loop as
/// [`Direct`] messages and wait their turn behind other hosts' requests; a cancel ends the
/// device's wait for the user.
struct DirectChannel {
    device: mpsc::Sender<Direct>,
    peer: Peer,
    /// The latest request's serial (what a cancel names).
    serial: u64,
}

impl Ctap2 for DirectChannel {
    async fn transact(&mut self, request: &[u8]) -> Result<Vec<u8>, ChannelError> {
        self.serial = self.serial.wrapping_add(1);
        let (reply, answer) = oneshot::channel();
        let stopped = || ChannelError("the device has stopped or was unplugged".into());
        self.device
            .send(Direct::Request {
                serial: self.serial,
                payload: request.to_vec(),
                from: self.peer,
                reply,
            })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())
    }

    fn cancel(&mut self) {
        let _ = self.device.try_send(Direct::Cancel(self.serial));
    }
}

type GatewayClient = Client<DirectChannel, ChaCha20Rng>;

/// The gateway's client of one device, and its ceremonies' queue: one ceremony at a time per
/// device (as one user at one key), each device on its own.
struct DeviceClient {
    client: tokio::sync::Mutex<(GatewayClient, ChaCha20Rng)>,
    waiting: Cell<usize>,
}

/// The clients, by device ID; what devices started later are attached to.
struct GatewayLink {
    clients: RefCell<HashMap<String, Rc<DeviceClient>>>,
    rng: RefCell<ChaCha20Rng>,
    next_peer: Cell<u32>,
}

impl std::fmt::Debug for GatewayLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GatewayLink({} devices)", self.clients.borrow().len())
    }
}

impl GatewayLink {
    fn client(&self, id: &str) -> Option<Rc<DeviceClient>> {
        self.clients.borrow().get(id).cloned()
    }
}

impl crate::devices::GatewayAttach for GatewayLink {
    fn attach(&self, id: &str, device: mpsc::Sender<Direct>) {
        let peer = self.next_peer.get().saturating_add(1);
        self.next_peer.set(peer);
        let (client_rng, pin_rng) = {
            let mut rng = self.rng.borrow_mut();
            (
                ChaCha20Rng::from_rng(&mut *rng),
                ChaCha20Rng::from_rng(&mut *rng),
            )
        };
        let channel = DirectChannel {
            device,
            peer: Peer::Gateway(peer),
            serial: 0,
        };
        let client = Client::new(channel, client_rng, ClientConfig::default());
        self.clients.borrow_mut().insert(
            id.to_owned(),
            Rc::new(DeviceClient {
                client: tokio::sync::Mutex::new((client, pin_rng)),
                waiting: Cell::new(0),
            }),
        );
    }

    fn detach(&self, id: &str) {
        self.clients.borrow_mut().remove(id);
    }
}

/// The user at the gateway: types `--browser-pin` when asked, picks the first account.
enum GatewayUser {
    Pin(KnownPin),
    Nobody(Unattended),
}

impl UserInterface for GatewayUser {
    fn pin(
        &mut self,
        request: &fidelio_webauthn::PinRequest<'_>,
    ) -> Option<zeroize::Zeroizing<String>> {
        match self {
            Self::Pin(user) => user.pin(request),
            Self::Nobody(user) => user.pin(request),
        }
    }
}

/// What a ceremony does.
#[derive(Debug)]
enum Work {
    Create { caller: Caller, options: Json },
    Get { caller: Caller, options: Json },
    IsUvpaa,
}

/// Runs `work` with a device's client (its lock held).
async fn perform(
    client: &mut GatewayClient,
    pin_rng: &mut ChaCha20Rng,
    pin: Option<&str>,
    work: Work,
    signal: &AbortSignal,
) -> Result<Json, WebAuthnError> {
    match work {
        Work::Create { caller, options } => {
            ensure_pin(client, pin, pin_rng).await;
            let mut user = user(pin);
            client
                .create(&caller, &options, &mut user, signal)
                .await
                .map(|response| response.to_json())
        }
        Work::Get { caller, options } => {
            ensure_pin(client, pin, pin_rng).await;
            let mut user = user(pin);
            client
                .get(&caller, &options, &mut user, signal)
                .await
                .map(|response| response.to_json())
        }
        Work::IsUvpaa => get_info(client.ctap_mut())
            .await
            .map(|info| Json::Bool(info.built_in_uv()))
            .map_err(|error| {
                WebAuthnError::not_allowed(format!("authenticatorGetInfo failed: {error}"))
            }),
    }
}

fn user(pin: Option<&str>) -> GatewayUser {
    match pin {
        Some(pin) => GatewayUser::Pin(KnownPin::new(pin)),
        None => GatewayUser::Nobody(Unattended),
    }
}

/// With `--browser-pin`, gives a device without a PIN that PIN (the device may have been
/// reset since the last ceremony). Failures are logged; the ceremony then fails as it would.
async fn ensure_pin(client: &mut GatewayClient, pin: Option<&str>, rng: &mut ChaCha20Rng) {
    let Some(pin) = pin else { return };
    let info = match get_info(client.ctap_mut()).await {
        Ok(info) => info,
        Err(error) => {
            tracing::warn!("browser gateway: getInfo failed: {error}");
            return;
        }
    };
    if info.option("clientPin") != Some(false) {
        return;
    }
    let protocol = info
        .pin_uv_auth_protocol()
        .and_then(Protocol::from_version)
        .unwrap_or(Protocol::One);
    match set_pin(client.ctap_mut(), protocol, pin, rng).await {
        Ok(()) => tracing::info!("browser gateway: set the device's PIN (--browser-pin)"),
        Err(error) => tracing::warn!("browser gateway: cannot set the PIN: {error}"),
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP.

struct Shared {
    token: String,
    /// The devices' clients.
    link: Rc<GatewayLink>,
    /// `--browser-pin`.
    pin_value: Option<String>,
    /// Ceremonies in progress by request ID, for `/v1/cancel`, with a serial number telling
    /// entries apart when an ID is reused.
    pending: RefCell<HashMap<String, (u64, AbortSignal)>>,
    config: ClientConfig,
    ceremonies: Cell<u64>,
    started: Instant,
    pin: bool,
    connections: Semaphore,
    /// How long a ceremony gets to settle after its lifetime timer ([`SETTLE_GRACE`]).
    settle_grace: Duration,
    /// The control API, if served here.
    control: Option<Rc<ControlApi>>,
    /// Conditional get()s waiting for an account, by ceremony serial.
    conditional: RefCell<BTreeMap<u64, Conditional>>,
    /// Woken when a conditional request comes or goes.
    conditional_changed: Notify,
}

async fn accept(listener: TcpListener, shared: Rc<Shared>, mut stop: oneshot::Receiver<()>) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = &mut stop => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!("browser gateway: accept failed: {error}");
                // Out of file descriptors and the like: do not spin.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if !peer.ip().is_loopback() {
            tracing::warn!("browser gateway: refusing a connection from {peer}: loopback only");
            continue;
        }
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        tokio::task::spawn_local(async move {
            let mut stream = stream;
            let Ok(_permit) = shared.connections.try_acquire() else {
                let response = Response::error(
                    503,
                    "NotAllowedError",
                    "too many connections to the browser gateway",
                );
                let _ = stream.write_all(&response.to_bytes(false)).await;
                let _ = stream.shutdown().await;
                return;
            };
            // One request per connection, or several in a row when the client asks for
            // `Connection: keep-alive` (the shim's Node side does: no connect per ceremony).
            let mut first = true;
            loop {
                let mut keep_alive = false;
                let Some(response) = connection(&mut stream, &shared, first, &mut keep_alive).await
                else {
                    break;
                };
                first = false;
                let keep = keep_alive && response.status == 200;
                if stream.write_all(&response.to_bytes(keep)).await.is_err() || !keep {
                    let _ = stream.shutdown().await;
                    break;
                }
            }
        });
    }
}

/// A parsed request.
#[derive(Debug)]
struct Request {
    method: String,
    path: String,
    /// What follows `?` in the target (empty without one).
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// An answer.
#[derive(Debug)]
struct Response {
    status: u16,
    body: Json,
}

impl Response {
    fn ok(value: Json) -> Self {
        Self {
            status: 200,
            body: json!({ "ok": value }),
        }
    }

    fn webauthn_error(error: &WebAuthnError) -> Self {
        Self {
            status: 200,
            body: json!({ "error": error.to_json() }),
        }
    }

    fn error(status: u16, name: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: json!({ "error": {"name": name, "message": message.into()} }),
        }
    }

    fn to_bytes(&self, keep_alive: bool) -> Vec<u8> {
        let reason = match self.status {
            200 => "OK",
            400 => "Bad Request",
            401 => "Unauthorized",
            404 => "Not Found",
            405 => "Method Not Allowed",
            409 => "Conflict",
            408 => "Request Timeout",
            411 => "Length Required",
            413 => "Content Too Large",
            431 => "Request Header Fields Too Large",
            500 => "Internal Server Error",
            501 => "Not Implemented",
            503 => "Service Unavailable",
            _ => "Error",
        };
        let body = self.body.to_string();
        let extra = if self.status == 401 {
            "WWW-Authenticate: Bearer realm=\"fidelio\"\r\n"
        } else {
            ""
        };
        let connection = if keep_alive { "keep-alive" } else { "close" };
        let mut out = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n{extra}\
             Connection: {connection}\r\n\r\n",
            self.status,
            body.len()
        )
        .into_bytes();
        out.extend_from_slice(body.as_bytes());
        out
    }
}

/// Serves one connection; `None` when there is nobody left to answer.
async fn connection(
    stream: &mut TcpStream,
    shared: &Shared,
    first: bool,
    keep_alive: &mut bool,
) -> Option<Response> {
    let request = match tokio::time::timeout(REQUEST_TIMEOUT, read_request(stream)).await {
        // A kept connection that stays idle is closed without a word.
        Err(_) if !first => return None,
        Err(_) => {
            return Some(Response::error(
                408,
                "TypeError",
                "the request did not arrive in time",
            ));
        }
        Ok(Err(ReadError::Closed)) => return None,
        Ok(Err(ReadError::Http(response))) => return Some(response),
        Ok(Ok(request)) => request,
    };
    *keep_alive = request
        .header("connection")
        .is_some_and(|value| value.eq_ignore_ascii_case("keep-alive"));
    if !request.path.starts_with("/v1/") {
        return Some(Response::error(404, "NotFoundError", "no such endpoint"));
    }
    if !authorized(&request, &shared.token) {
        return Some(Response::error(
            401,
            "NotAllowedError",
            "missing or wrong token (send Authorization: Bearer <token>; fidelio serve prints \
             it and writes it to its token file)",
        ));
    }
    if let Some(rest) = request.path.strip_prefix("/v1/control/conditional")
        && (rest.is_empty() || rest.starts_with('/'))
    {
        return Some(
            conditional_control(shared, &request.method, rest, &request.query, &request.body).await,
        );
    }
    if let Some(rest) = request.path.strip_prefix("/v1/control") {
        let Some(control) = &shared.control else {
            return Some(Response::error(404, "NotFoundError", "no control API here"));
        };
        // The control API answers in its own words (docs/control-api.md); a caller that hangs
        // up (an abandoned long poll) gets nothing.
        let answer = tokio::select! {
            answer = control.handle(&request.method, rest, &request.query, &request.body) => answer,
            () = hung_up(Some(stream)) => return None,
        };
        let (status, body) = answer;
        return Some(Response { status, body });
    }
    let response = match (request.method.as_str(), request.path.as_str()) {
        ("POST", "/v1/create") => ceremony(shared, Kind::Create, &request.body, stream).await,
        ("POST", "/v1/get") => ceremony(shared, Kind::Get, &request.body, stream).await,
        ("POST", "/v1/isUvpaa") => is_uvpaa(shared).await,
        ("POST", "/v1/cancel") => cancel(shared, &request.body),
        ("GET", "/v1/status") => Response::ok(json!({
            "service": "fidelio-browser-gateway",
            "version": env!("CARGO_PKG_VERSION"),
            "uptimeMs": u64::try_from(shared.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "ceremonies": shared.ceremonies.get(),
            "pending": shared.pending.borrow().len(),
            "pin": shared.pin,
        })),
        (_, "/v1/create" | "/v1/get" | "/v1/isUvpaa" | "/v1/cancel" | "/v1/status") => {
            Response::error(405, "NotSupportedError", "method not allowed")
        }
        _ => Response::error(404, "NotFoundError", "no such endpoint"),
    };
    Some(response)
}

/// Compares the bearer token without an early exit on the first differing byte.
fn authorized(request: &Request, token: &str) -> bool {
    let Some(given) = request
        .header("authorization")
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
    else {
        return false;
    };
    let (given, token) = (given.as_bytes(), token.as_bytes());
    let mut difference = u8::from(given.len() != token.len());
    for (index, byte) in token.iter().enumerate() {
        difference |= byte ^ given.get(index).copied().unwrap_or(0);
    }
    difference == 0
}

enum ReadError {
    /// The peer closed before sending a request.
    Closed,
    /// An HTTP error to answer with.
    Http(Response),
}

impl From<io::Error> for ReadError {
    fn from(_: io::Error) -> Self {
        ReadError::Closed
    }
}

fn bad_request(message: &str) -> ReadError {
    ReadError::Http(Response::error(400, "TypeError", message))
}

async fn read_request(stream: &mut TcpStream) -> Result<Request, ReadError> {
    let mut buffer: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        if buffer.len() > MAX_HEAD {
            return Err(ReadError::Http(Response::error(
                431,
                "TypeError",
                "the request head is too long",
            )));
        }
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Err(if buffer.is_empty() {
                ReadError::Closed
            } else {
                bad_request("the request ended inside its head")
            });
        }
        buffer.extend_from_slice(chunk.get(..read).unwrap_or_default());
    };
    let head = buffer
        .get(..head_end)
        .and_then(|head| std::str::from_utf8(head).ok())
        .ok_or_else(|| bad_request("the request head is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad_request("malformed request line"));
    };
    if !matches!(version, "HTTP/1.1" | "HTTP/1.0") {
        return Err(ReadError::Http(Response::error(
            501,
            "NotSupportedError",
            "only HTTP/1.0 and HTTP/1.1",
        )));
    }
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(bad_request("malformed method"));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut headers = Vec::new();
    for line in lines {
        if line.starts_with([' ', '\t']) {
            return Err(bad_request("folded header lines are not accepted"));
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| bad_request("a header line without a colon"))?;
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(bad_request("malformed header name"));
        }
        headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
    }
    if headers.iter().any(|(name, _)| name == "transfer-encoding") {
        return Err(ReadError::Http(Response::error(
            501,
            "NotSupportedError",
            "send the body with Content-Length (no Transfer-Encoding)",
        )));
    }
    let mut length: Option<usize> = None;
    for (_, value) in headers.iter().filter(|(name, _)| name == "content-length") {
        let parsed = value
            .parse::<usize>()
            .ok()
            .filter(|_| value.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| bad_request("malformed Content-Length"))?;
        if length.is_some_and(|earlier| earlier != parsed) {
            return Err(bad_request("conflicting Content-Length headers"));
        }
        length = Some(parsed);
    }
    let length = match (length, method) {
        (Some(length), _) => length,
        (None, "POST" | "PUT") => {
            return Err(ReadError::Http(Response::error(
                411,
                "TypeError",
                "a POST needs Content-Length",
            )));
        }
        (None, _) => 0,
    };
    if length > MAX_BODY {
        return Err(ReadError::Http(Response::error(
            413,
            "TypeError",
            format!("the body is over {MAX_BODY} bytes"),
        )));
    }
    let mut body = buffer
        .get(head_end.saturating_add(4)..)
        .unwrap_or_default()
        .to_vec();
    while body.len() < length {
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Err(bad_request("the body is shorter than its Content-Length"));
        }
        body.extend_from_slice(chunk.get(..read).unwrap_or_default());
    }
    body.truncate(length);
    Ok(Request {
        method: method.to_owned(),
        path: path.to_owned(),
        query: query.to_owned(),
        headers,
        body,
    })
}

// ---------------------------------------------------------------------------------------------
// Endpoints.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Create,
    Get,
}

/// A ceremony request's body.
#[derive(Debug)]
struct CeremonyRequest {
    caller: Caller,
    options: Json,
    request_id: Option<String>,
    /// `mediation: "conditional"`: wait for the test to pick an account.
    conditional: bool,
}

/// Reads a ceremony body. Shape errors are `TypeError`; a bad origin is `SecurityError`.
fn ceremony_request(body: &[u8]) -> Result<CeremonyRequest, WebAuthnError> {
    let value: Json = serde_json::from_slice(body)
        .map_err(|error| WebAuthnError::type_error(format!("the body is not JSON: {error}")))?;
    let object = value
        .as_object()
        .ok_or_else(|| WebAuthnError::type_error("the body is not a JSON object"))?;
    let origin = object
        .get("origin")
        .and_then(Json::as_str)
        .ok_or_else(|| WebAuthnError::type_error("\"origin\" (a string) is required"))?;
    let top_origin = match object.get("topOrigin") {
        None | Some(Json::Null) => None,
        Some(Json::String(top)) => Some(top.as_str()),
        Some(_) => return Err(WebAuthnError::type_error("\"topOrigin\" must be a string")),
    };
    let same_origin = match object.get("sameOriginWithAncestors") {
        None | Some(Json::Null) => top_origin.is_none(),
        Some(Json::Bool(same)) => *same,
        Some(_) => {
            return Err(WebAuthnError::type_error(
                "\"sameOriginWithAncestors\" must be a boolean",
            ));
        }
    };
    let mut options = match object.get("options") {
        Some(options @ Json::Object(_)) => options.clone(),
        _ => {
            return Err(WebAuthnError::type_error(
                "\"options\" (an object) is required",
            ));
        }
    };
    // Chromium's proxy puts the caller in an extension input; it is not the RP's.
    if let Some(extensions) = options.get_mut("extensions").and_then(Json::as_object_mut) {
        extensions.remove("remoteDesktopClientOverride");
    }
    let request_id = match object.get("requestId") {
        None | Some(Json::Null) => None,
        Some(Json::String(id)) => Some(id.clone()),
        Some(Json::Number(id)) => Some(id.to_string()),
        Some(_) => {
            return Err(WebAuthnError::type_error(
                "\"requestId\" must be a string or a number",
            ));
        }
    };
    let conditional = match object.get("mediation") {
        None | Some(Json::Null) => false,
        Some(Json::String(mediation)) => match mediation.as_str() {
            "conditional" => true,
            "optional" | "required" | "silent" => false,
            other => {
                return Err(WebAuthnError::type_error(format!(
                    "\"mediation\" {other:?} is not a CredentialMediationRequirement"
                )));
            }
        },
        Some(_) => return Err(WebAuthnError::type_error("\"mediation\" must be a string")),
    };
    let caller = Caller::new(origin)?;
    let caller = match (same_origin, top_origin) {
        (true, _) => caller,
        (false, Some(top)) => caller.cross_origin(top)?,
        (false, None) => caller.cross_origin_unknown_top(),
    };
    Ok(CeremonyRequest {
        caller,
        options,
        request_id,
        conditional,
    })
}

/// The lifetime timer of these options (WebAuthn's clamp, as the client applies it).
fn lifetime(config: &ClientConfig, options: &Json) -> Duration {
    match options.get("timeout").and_then(Json::as_u64) {
        None => config.default_timeout,
        Some(ms) => Duration::from_millis(ms).clamp(
            config.min_timeout,
            config.max_timeout.max(config.min_timeout),
        ),
    }
}

/// Removes a pending ceremony's request ID when its handler ends, however it ends.
struct PendingGuard<'a> {
    shared: &'a Shared,
    id: Option<(String, u64)>,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        if let Some((id, serial)) = &self.id {
            let mut pending = self.shared.pending.borrow_mut();
            // Only our own entry: a later request may have reused the ID.
            if pending.get(id).is_some_and(|(other, _)| other == serial) {
                pending.remove(id);
            }
        }
    }
}

async fn ceremony(shared: &Shared, kind: Kind, body: &[u8], stream: &mut TcpStream) -> Response {
    let request = match ceremony_request(body) {
        Ok(request) => request,
        Err(error) if error.name == fidelio_webauthn::ErrorName::TypeError => {
            return Response {
                status: 400,
                body: json!({ "error": error.to_json() }),
            };
        }
        Err(error) => return Response::webauthn_error(&error),
    };
    let serial = shared.ceremonies.get().saturating_add(1);
    shared.ceremonies.set(serial);
    let lifetime = lifetime(&shared.config, &request.options);
    let signal = AbortSignal::new();
    if let Some(id) = &request.request_id {
        shared
            .pending
            .borrow_mut()
            .insert(id.clone(), (serial, signal.clone()));
    }
    let _guard = PendingGuard {
        shared,
        id: request.request_id.clone().map(|id| (id, serial)),
    };
    let mut request = request;
    // The device the user picked an account of (conditional mediation).
    let mut picked = None;
    if request.conditional {
        if kind == Kind::Create {
            let error =
                WebAuthnError::type_error("conditional mediation is not supported for create()");
            return Response {
                status: 400,
                body: json!({ "error": error.to_json() }),
            };
        }
        match conditional_pick(shared, serial, &request, &signal, stream).await {
            Ok((device, credential_id)) => {
                picked = Some(device);
                // The user picked this account: the ceremony runs for it alone.
                if let Some(options) = request.options.as_object_mut() {
                    options.insert(
                        "allowCredentials".into(),
                        json!([{"type": "public-key", "id": encode_b64(&credential_id)}]),
                    );
                }
            }
            Err(error) => return Response::webauthn_error(&error),
        }
    }
    let device = match picked {
        Some(device) => device,
        None => match route(shared, kind, &request, &signal, lifetime, stream).await {
            Ok(device) => device,
            Err(error) => return Response::webauthn_error(&error),
        },
    };
    let work = match kind {
        Kind::Create => Work::Create {
            caller: request.caller,
            options: request.options,
        },
        Kind::Get => Work::Get {
            caller: request.caller,
            options: request.options,
        },
    };
    match run(shared, device, work, &signal, lifetime, Some(stream)).await {
        Ok(value) => Response::ok(value),
        Err(error) => Response::webauthn_error(&error),
    }
}

// ---------------------------------------------------------------------------------------------
// Conditional mediation: a get() with `mediation: "conditional"` is what a page starts for
// passkey autofill. A browser offers the matching accounts in the field's autofill menu and the
// promise stays pending — no timeout — until the user picks one (or the page aborts). Here the
// test is the user: `GET /v1/control/conditional` lists the waiting requests with the accounts
// a browser would offer, `POST /v1/control/conditional/{id}/select {credentialId}` picks one,
// and the ceremony then runs for that credential alone.

/// A conditional get() waiting for an account to be picked.
struct Conditional {
    request_id: Option<String>,
    origin: String,
    top_origin: Option<String>,
    rp_id: String,
    /// The request's allowCredentials (empty: discoverable credentials are offered).
    allow: Vec<Vec<u8>>,
    since_ms: u64,
    pick: Option<oneshot::Sender<(String, Vec<u8>)>>,
}

/// Removes a conditional request from the list when its handler ends, however it ends.
struct ConditionalGuard<'a> {
    shared: &'a Shared,
    serial: u64,
}

impl Drop for ConditionalGuard<'_> {
    fn drop(&mut self) {
        self.shared.conditional.borrow_mut().remove(&self.serial);
        self.shared.conditional_changed.notify_waiters();
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The credential IDs of `allowCredentials`; a malformed list is a `TypeError`, as the
/// browser's conversion of the options would raise.
fn allowed_ids(options: &Json) -> Result<Vec<Vec<u8>>, WebAuthnError> {
    let Some(list) = options.get("allowCredentials") else {
        return Ok(Vec::new());
    };
    let list = list
        .as_array()
        .ok_or_else(|| WebAuthnError::type_error("\"allowCredentials\" must be a list"))?;
    list.iter()
        .map(|descriptor| {
            descriptor
                .get("id")
                .and_then(Json::as_str)
                .and_then(decode_b64)
                .ok_or_else(|| {
                    WebAuthnError::type_error("an allowCredentials entry has no base64url \"id\"")
                })
        })
        .collect()
}

/// Registers a conditional request and waits until an account is picked (its credential ID),
/// the page aborts, or the caller hangs up.
async fn conditional_pick(
    shared: &Shared,
    serial: u64,
    request: &CeremonyRequest,
    signal: &AbortSignal,
    stream: &mut TcpStream,
) -> Result<(String, Vec<u8>), WebAuthnError> {
    // What the browser checks before it offers anything: the caller may use this RP ID.
    let (rp_id, allow) = request_scope(request)?;
    let Some(control) = &shared.control else {
        return Err(WebAuthnError::not_allowed(
            "conditional mediation needs the control API to pick an account",
        ));
    };
    let (pick, picked) = oneshot::channel();
    let origin = request.caller.origin().serialize();
    let entry = Conditional {
        request_id: request.request_id.clone(),
        origin: origin.clone(),
        top_origin: request.caller.top_origin().map(|top| top.serialize()),
        rp_id: rp_id.clone(),
        allow,
        since_ms: now_ms(),
        pick: Some(pick),
    };
    shared.conditional.borrow_mut().insert(serial, entry);
    let _guard = ConditionalGuard { shared, serial };
    shared.conditional_changed.notify_waiters();
    let mut fields = serde_json::Map::new();
    fields.insert("conditionalId".into(), json!(serial.to_string()));
    fields.insert("rpId".into(), json!(rp_id));
    fields.insert("origin".into(), json!(origin));
    control.events().push("conditionalRequested", "", fields);
    tokio::select! {
        outcome = signal.race(picked) => match outcome {
            Ok(Ok(picked)) => Ok(picked),
            Ok(Err(_)) => Err(WebAuthnError::not_allowed("the conditional request was dropped")),
            Err(error) => Err(error),
        },
        () = hung_up(Some(stream)) => {
            signal.cancel();
            Err(WebAuthnError::not_allowed("the caller hung up"))
        }
    }
}

/// The accounts a browser would offer `entry`: the RP's discoverable credentials, or those in
/// its allowCredentials.
fn offered(entry: &Conditional, accounts: &[(String, Json)]) -> Vec<Json> {
    accounts
        .iter()
        .filter(|(_, credential)| usable(credential, &entry.rp_id, &entry.allow))
        .map(|(device, credential)| {
            let mut account = serde_json::Map::new();
            account.insert("authenticatorId".into(), json!(device));
            for field in ["credentialId", "userHandle", "userName", "userDisplayName"] {
                if let Some(value) = credential.get(field) {
                    account.insert(field.into(), value.clone());
                }
            }
            Json::Object(account)
        })
        .collect()
}

/// The RP ID a get() request may use (the caller's effective domain may claim it) and its
/// allowCredentials; the exception a browser raises otherwise.
fn request_scope(request: &CeremonyRequest) -> Result<(String, Vec<Vec<u8>>), WebAuthnError> {
    let domain = fidelio_webauthn::origin::effective_domain(request.caller.origin())?;
    let requested = request.options.get("rpId").and_then(Json::as_str);
    let rp_id = fidelio_webauthn::origin::relying_party_id(requested, &domain)?;
    Ok((rp_id, allowed_ids(&request.options)?))
}

/// Whether a listed credential answers a get() for `rp_id` with `allow` (empty: discoverable
/// credentials of the RP answer).
fn usable(credential: &Json, rp_id: &str, allow: &[Vec<u8>]) -> bool {
    if credential.get("rpId").and_then(Json::as_str) != Some(rp_id) {
        return false;
    }
    if allow.is_empty() {
        return credential.get("isResidentCredential") == Some(&Json::Bool(true));
    }
    credential
        .get("credentialId")
        .and_then(Json::as_str)
        .and_then(decode_b64)
        .is_some_and(|id| allow.contains(&id))
}

/// The accounts of the plugged-in devices (an unplugged key offers nothing).
async fn plugged_accounts(
    shared: &Shared,
    control: &ControlApi,
) -> Result<Vec<(String, Json)>, (u16, Json)> {
    let plugged = plugged_devices(shared);
    let mut accounts = control.accounts().await?;
    accounts.retain(|(device, _)| plugged.contains(device));
    Ok(accounts)
}

/// How long `GET /v1/control/conditional?wait=MS` may wait for a request to appear.
const CONDITIONAL_WAIT_MAX: Duration = Duration::from_secs(60);

/// `/v1/control/conditional…` (`rest` is what follows it).
async fn conditional_control(
    shared: &Shared,
    method: &str,
    rest: &str,
    query: &str,
    body: &[u8],
) -> Response {
    let Some(control) = &shared.control else {
        return Response::error(404, "NotFoundError", "no control API here");
    };
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    match (method, segments.as_slice()) {
        ("GET", []) => {
            let wait = query
                .split('&')
                .find_map(|pair| pair.strip_prefix("wait="))
                .and_then(|ms| ms.parse::<u64>().ok())
                .map_or(Duration::ZERO, Duration::from_millis)
                .min(CONDITIONAL_WAIT_MAX);
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                let changed = shared.conditional_changed.notified();
                if !shared.conditional.borrow().is_empty() {
                    break;
                }
                tokio::select! {
                    () = changed => {}
                    () = tokio::time::sleep_until(deadline) => break,
                }
            }
            let accounts = match plugged_accounts(shared, control).await {
                Ok(accounts) => accounts,
                Err((status, body)) => return Response { status, body },
            };
            let listed: Vec<Json> = shared
                .conditional
                .borrow()
                .iter()
                .map(|(serial, entry)| {
                    let mut item = serde_json::Map::new();
                    item.insert("id".into(), json!(serial.to_string()));
                    item.insert("origin".into(), json!(entry.origin));
                    if let Some(top) = &entry.top_origin {
                        item.insert("topOrigin".into(), json!(top));
                    }
                    item.insert("rpId".into(), json!(entry.rp_id));
                    item.insert("sinceMs".into(), json!(entry.since_ms));
                    if let Some(id) = &entry.request_id {
                        item.insert("requestId".into(), json!(id));
                    }
                    item.insert("accounts".into(), Json::Array(offered(entry, &accounts)));
                    Json::Object(item)
                })
                .collect();
            Response::ok(Json::Array(listed))
        }
        ("POST", [id, "select"]) => {
            let credential_id = serde_json::from_slice::<Json>(body)
                .ok()
                .and_then(|value| {
                    value
                        .get("credentialId")
                        .and_then(Json::as_str)
                        .and_then(decode_b64)
                })
                .filter(|id| !id.is_empty());
            let Some(credential_id) = credential_id else {
                return Response::error(
                    400,
                    "InvalidArgument",
                    "the body is {\"credentialId\": <base64url>}",
                );
            };
            let accounts = match plugged_accounts(shared, control).await {
                Ok(accounts) => accounts,
                Err((status, body)) => return Response { status, body },
            };
            let serial = id.parse::<u64>().ok();
            let mut waiting = shared.conditional.borrow_mut();
            let Some(entry) = serial.and_then(|serial| waiting.get_mut(&serial)) else {
                return Response::error(404, "NotFound", format!("no conditional request {id:?}"));
            };
            let wanted = encode_b64(&credential_id);
            let device = offered(entry, &accounts).iter().find_map(|account| {
                (account.get("credentialId").and_then(Json::as_str) == Some(wanted.as_str()))
                    .then(|| account.get("authenticatorId").and_then(Json::as_str))
                    .flatten()
                    .map(str::to_owned)
            });
            let Some(device) = device else {
                return Response::error(
                    404,
                    "NotFound",
                    "that credential is not among the accounts this request offers",
                );
            };
            let sent = entry
                .pick
                .take()
                .is_some_and(|pick| pick.send((device, credential_id)).is_ok());
            if sent {
                Response::ok(Json::Bool(true))
            } else {
                Response::error(409, "AlreadySelected", "an account was already picked")
            }
        }
        (_, [] | [_, "select"]) => Response::error(405, "MethodNotAllowed", "method not allowed"),
        _ => Response::error(404, "NotFound", "no such control endpoint"),
    }
}

// ---------------------------------------------------------------------------------------------
// Which device a ceremony goes to. With one plugged-in device, that one. With several, as a
// browser with several keys plugged in ends up: a get() goes to the first device holding a
// credential the request can use (allowCredentials, or a discoverable credential of the RP),
// a create() — and a get() nobody can answer — to the preferred device (the key the user
// touches: `POST /v1/control/devices/{id}/prefer`, else the first one added). With none
// plugged in, the ceremony waits as a browser waits for a key to be inserted, until one is
// plugged in, the lifetime timer fires (`NotAllowedError`) or the page aborts.

/// The plugged-in devices, the preferred one first.
fn plugged_devices(shared: &Shared) -> Vec<String> {
    match &shared.control {
        Some(control) => control.host().plugged(),
        None => vec![DEFAULT_AUTHENTICATOR.to_owned()],
    }
}

/// How often a ceremony with no device plugged in looks again.
const NO_DEVICE_POLL: Duration = Duration::from_millis(100);

async fn route(
    shared: &Shared,
    kind: Kind,
    request: &CeremonyRequest,
    signal: &AbortSignal,
    lifetime: Duration,
    stream: &mut TcpStream,
) -> Result<String, WebAuthnError> {
    let deadline = tokio::time::Instant::now() + lifetime;
    let mut plugged = plugged_devices(shared);
    while plugged.is_empty() {
        tokio::select! {
            () = tokio::time::sleep(NO_DEVICE_POLL) => {}
            () = tokio::time::sleep_until(deadline) => {
                return Err(fidelio_webauthn::AbortReason::TimedOut.to_error());
            }
            fired = signal.race(std::future::pending::<()>()) => fired?,
            () = hung_up(Some(&mut *stream)) => {
                return Err(WebAuthnError::not_allowed("the caller hung up"));
            }
        }
        plugged = plugged_devices(shared);
    }
    let first = plugged.first().cloned().unwrap_or_default();
    if plugged.len() == 1 || kind == Kind::Create {
        return Ok(first);
    }
    let Some(control) = &shared.control else {
        return Ok(first);
    };
    let Ok((rp_id, allow)) = request_scope(request) else {
        // The client raises the error on the first device.
        return Ok(first);
    };
    let Ok(accounts) = control.accounts().await else {
        return Ok(first);
    };
    let holder = plugged.into_iter().find(|device| {
        accounts
            .iter()
            .any(|(owner, credential)| owner == device && usable(credential, &rp_id, &allow))
    });
    Ok(holder.unwrap_or(first))
}

async fn is_uvpaa(shared: &Shared) -> Response {
    let signal = AbortSignal::new();
    let device = plugged_devices(shared)
        .into_iter()
        .next()
        .unwrap_or_else(|| DEFAULT_AUTHENTICATOR.to_owned());
    match run(
        shared,
        device,
        Work::IsUvpaa,
        &signal,
        Duration::from_secs(10),
        None,
    )
    .await
    {
        Ok(value) => Response::ok(value),
        // A browser answers false when it cannot tell.
        Err(error) => {
            tracing::info!("browser gateway: isUvpaa: {error}");
            Response::ok(Json::Bool(false))
        }
    }
}

fn cancel(shared: &Shared, body: &[u8]) -> Response {
    let id =
        serde_json::from_slice::<Json>(body)
            .ok()
            .and_then(|value| match value.get("requestId") {
                Some(Json::String(id)) => Some(id.clone()),
                Some(Json::Number(id)) => Some(id.to_string()),
                _ => None,
            });
    let Some(id) = id else {
        return Response::error(400, "TypeError", "\"requestId\" is required");
    };
    let signal = shared
        .pending
        .borrow()
        .get(&id)
        .map(|(_, signal)| signal.clone());
    match signal {
        Some(signal) => {
            signal.abort();
            Response::ok(Json::Bool(true))
        }
        None => Response::ok(Json::Bool(false)),
    }
}

/// Runs `work` on `device`'s client and waits for its answer, the lifetime timer, or the caller
/// hanging up — whichever comes first. Always settles: after the timer (or the hang-up) the
/// ceremony's signal fires, which cancels the request at the device, and the ceremony gets
/// [`SETTLE_GRACE`] to end before it is dropped.
async fn run(
    shared: &Shared,
    device: String,
    work: Work,
    signal: &AbortSignal,
    lifetime: Duration,
    stream: Option<&mut TcpStream>,
) -> Result<Json, WebAuthnError> {
    let Some(entry) = shared.link.client(&device) else {
        return Err(WebAuthnError::not_allowed(format!(
            "the authenticator {device:?} is gone"
        )));
    };
    if entry.waiting.get() >= MAX_QUEUED {
        return Err(WebAuthnError::not_allowed(
            "the browser gateway has too many ceremonies waiting for this authenticator",
        ));
    }
    entry.waiting.set(entry.waiting.get().saturating_add(1));
    let _waiting = WaitingGuard(&entry);
    let pin = shared.pin_value.as_deref();
    let ceremony = async {
        let mut held = entry.client.lock().await;
        signal.check()?;
        let (client, pin_rng) = &mut *held;
        perform(client, pin_rng, pin, work, signal).await
    };
    let mut ceremony = std::pin::pin!(ceremony);
    let hung = tokio::select! {
        settled = &mut ceremony => return log_outcome(settled),
        () = tokio::time::sleep(lifetime) => {
            signal.time_out();
            false
        }
        () = hung_up(stream) => {
            signal.cancel();
            true
        }
    };
    let settled = tokio::time::timeout(shared.settle_grace, ceremony).await;
    if hung {
        return Err(WebAuthnError::not_allowed("the caller hung up"));
    }
    match settled {
        Ok(settled) => log_outcome(settled),
        Err(_) => Err(fidelio_webauthn::AbortReason::TimedOut.to_error()),
    }
}

fn log_outcome(outcome: Result<Json, WebAuthnError>) -> Result<Json, WebAuthnError> {
    if let Err(error) = &outcome {
        tracing::info!("browser gateway: {error}");
    }
    outcome
}

/// Counts a ceremony waiting for (or holding) a device's client.
struct WaitingGuard<'a>(&'a DeviceClient);

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        self.0.waiting.set(self.0.waiting.get().saturating_sub(1));
    }
}

/// Resolves when the peer closes its side of the connection (never without a stream). Bytes
/// after the request are read and ignored.
async fn hung_up(stream: Option<&mut TcpStream>) {
    let Some(stream) = stream else {
        return std::future::pending().await;
    };
    let mut scratch = [0u8; 512];
    loop {
        match stream.read(&mut scratch).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_fresh_and_checked() {
        let a = new_token();
        assert_eq!(a.len(), 64);
        assert_ne!(a, new_token());
        assert!(check_token(&a).is_ok());
        assert!(check_token("short").is_err());
        assert!(check_token("has a space in the middle").is_err());
    }

    #[test]
    fn ceremony_bodies() {
        let ok = ceremony_request(
            br#"{"origin":"https://a.example","options":{"challenge":"AA","extensions":{"remoteDesktopClientOverride":{"origin":"x"},"credProps":true}},"requestId":7}"#,
        );
        let Ok(ok) = ok else { unreachable!("{ok:?}") };
        assert!(ok.caller.same_origin_with_ancestors());
        assert_eq!(ok.request_id.as_deref(), Some("7"));
        assert_eq!(ok.options["extensions"], json!({"credProps": true}));

        let framed = ceremony_request(
            br#"{"origin":"https://a.example","sameOriginWithAncestors":false,"options":{}}"#,
        );
        assert!(framed.is_ok_and(
            |r| !r.caller.same_origin_with_ancestors() && r.caller.top_origin().is_none()
        ));

        for (body, name) in [
            (&b"garbage"[..], "TypeError"),
            (b"[]", "TypeError"),
            (br#"{"options":{}}"#, "TypeError"),
            (br#"{"origin":"https://a.example"}"#, "TypeError"),
            (
                br#"{"origin":"https://a.example","options":{},"topOrigin":3}"#,
                "TypeError",
            ),
            (
                br#"{"origin":"not an origin","options":{}}"#,
                "SecurityError",
            ),
        ] {
            let error = ceremony_request(body).err().map(|e| e.name.as_str());
            assert_eq!(error, Some(name), "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn lifetimes_follow_the_clamp() {
        let config = ClientConfig::default();
        assert_eq!(lifetime(&config, &json!({})), Duration::from_secs(300));
        assert_eq!(
            lifetime(&config, &json!({"timeout": 1})),
            Duration::from_secs(10)
        );
        assert_eq!(
            lifetime(&config, &json!({"timeout": 1e12})),
            Duration::from_secs(300)
        );
        assert_eq!(
            lifetime(&config, &json!({"timeout": 10_000_000})),
            Duration::from_secs(600)
        );
    }

    #[test]
    fn bearer_tokens() {
        let request = |value: &str| Request {
            method: "GET".into(),
            path: "/v1/status".into(),
            query: String::new(),
            headers: vec![("authorization".into(), value.into())],
            body: Vec::new(),
        };
        assert!(authorized(&request("Bearer secret-token"), "secret-token"));
        assert!(!authorized(&request("Bearer secret-tokem"), "secret-token"));
        assert!(!authorized(&request("Bearer secret"), "secret-token"));
        assert!(!authorized(
            &request("Bearer secret-token-longer"),
            "secret-token"
        ));
        assert!(!authorized(&request("secret-token"), "secret-token"));
    }

    fn shared(device: mpsc::Sender<Direct>) -> Shared {
        let link = Rc::new(GatewayLink {
            clients: RefCell::new(HashMap::new()),
            rng: RefCell::new(ChaCha20Rng::seed_from_u64(1)),
            next_peer: Cell::new(0),
        });
        crate::devices::GatewayAttach::attach(&*link, DEFAULT_AUTHENTICATOR, device);
        Shared {
            token: "t".repeat(20),
            link,
            pin_value: None,
            pending: RefCell::new(HashMap::new()),
            config: ClientConfig::default(),
            ceremonies: Cell::new(0),
            started: Instant::now(),
            pin: false,
            connections: Semaphore::new(1),
            settle_grace: Duration::from_millis(50),
            control: None,
            conditional: RefCell::new(BTreeMap::new()),
            conditional_changed: Notify::new(),
        }
    }

    /// A device that answers a request only once it is cancelled (a ceremony waiting for a
    /// user who never comes), or never answers at all.
    fn stuck_device(mut device: mpsc::Receiver<Direct>, answers: bool) {
        std::thread::spawn(move || {
            let mut kept = Vec::new();
            while let Some(message) = device.blocking_recv() {
                match message {
                    Direct::Request { reply, .. } => kept.push(reply),
                    Direct::Cancel(_) if answers => {
                        for reply in kept.drain(..) {
                            let _ = reply.send(vec![0x2D]);
                        }
                    }
                    Direct::Cancel(_) => {}
                }
            }
        });
    }

    #[tokio::test(flavor = "current_thread")]
    async fn every_ceremony_settles() {
        use fidelio_webauthn::ErrorName;
        let name = |outcome: Result<Json, WebAuthnError>| outcome.err().map(|e| e.name);

        // The lifetime timer fires: the ceremony winds down with NotAllowedError.
        let (device, receiver) = mpsc::channel(4);
        stuck_device(receiver, true);
        let gateway = shared(device);
        let started = Instant::now();
        let timer = Duration::from_millis(30);
        let outcome = run(
            &gateway,
            DEFAULT_AUTHENTICATOR.to_owned(),
            Work::IsUvpaa,
            &AbortSignal::new(),
            timer,
            None,
        )
        .await;
        assert_eq!(name(outcome), Some(ErrorName::NotAllowedError));
        assert!(started.elapsed() >= timer);

        // /v1/cancel by request ID: AbortError at once, long before the timer.
        let signal = AbortSignal::new();
        gateway
            .pending
            .borrow_mut()
            .insert("9".into(), (1, signal.clone()));
        assert_eq!(
            cancel(&gateway, br#"{"requestId": 9}"#).body,
            json!({"ok": true})
        );
        let outcome = run(
            &gateway,
            DEFAULT_AUTHENTICATOR.to_owned(),
            Work::IsUvpaa,
            &signal,
            Duration::from_secs(600),
            None,
        )
        .await;
        assert_eq!(name(outcome), Some(ErrorName::AbortError));
        let unknown = cancel(&gateway, br#"{"requestId": "nope"}"#);
        assert_eq!(unknown.body, json!({"ok": false}));
        assert_eq!(cancel(&gateway, b"{}").status, 400);

        // A device that never answers: NotAllowedError after the timer and the grace period.
        let (device, receiver) = mpsc::channel(4);
        stuck_device(receiver, false);
        let gateway = shared(device);
        let timer = Duration::from_millis(20);
        let outcome = run(
            &gateway,
            DEFAULT_AUTHENTICATOR.to_owned(),
            Work::IsUvpaa,
            &AbortSignal::new(),
            timer,
            None,
        )
        .await;
        assert_eq!(name(outcome), Some(ErrorName::NotAllowedError));

        // No device loop: refused at once.
        let (device, receiver) = mpsc::channel(1);
        drop(receiver);
        let gateway = shared(device);
        let outcome = run(
            &gateway,
            DEFAULT_AUTHENTICATOR.to_owned(),
            Work::IsUvpaa,
            &AbortSignal::new(),
            timer,
            None,
        )
        .await;
        assert!(outcome.is_err_and(|e| e.message.contains("stopped")));
    }

    #[test]
    fn token_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let Ok(dir) = tempfile::tempdir() else { return };
        let path = dir.path().join("sub").join("gateway.json");
        assert!(write_token_file(&path, "http://127.0.0.1:1", "t0k3n-t0k3n-t0k3n").is_ok());
        let mode = std::fs::metadata(&path).map(|m| m.permissions().mode() & 0o777);
        assert_eq!(mode.ok(), Some(0o600));
        let read = TokenFile::read(&path);
        assert_eq!(
            read.ok(),
            Some(TokenFile {
                url: "http://127.0.0.1:1".into(),
                token: "t0k3n-t0k3n-t0k3n".into()
            })
        );
        // Rewriting replaces it.
        assert!(write_token_file(&path, "http://127.0.0.1:2", "another-token-here").is_ok());
        assert_eq!(
            TokenFile::read(&path).map(|f| f.url).ok().as_deref(),
            Some("http://127.0.0.1:2")
        );
    }
}
