//! Many virtual authenticators in one daemon: the device that `fidelio serve` starts with
//! (`"default"`, on the lanes given on the command line) and any number added later through the
//! control API or `fidelio device new` — each with its own store, settings, presence answers,
//! CTAPHID channel table and UDP lane, and each reachable through the browser gateway.
//!
//! ```text
//!  control API ── new / clone / plug / rm ──▶ DeviceHost ── spawns ──▶ device loop (its own
//!      Authenticator, MemoryStore) ◀── packets ── its UDP lane (127.0.0.1:<port>)
//!                                                 ◀── the gateway's client for this device
//! ```
//!
//! * **Plugged or not.** Every device's lanes pass through a plug: an unplugged device ("lost",
//!   or taken out for a while) neither receives nor answers anything — a UDP host times out,
//!   the gateway no longer routes ceremonies to it — and keeps its credentials for when it is
//!   plugged back in.
//! * **Clones.** A clone is a new device with its source's settings holding every credential
//!   the source keeps — private keys, IDs, counters, backup flags, large blobs — imported through
//!   `credential_io` (so non-discoverable credentials made on the source work on the clone
//!   through allowCredentials too). From then on each counts on its own: a cloned security key's
//!   counters diverge, a synced passkey's stay zero. The PIN is not copied.
//! * **Removal.** The default device cannot go away (the command line's lanes are its); the
//!   others are stopped, their UDP port closed and their credentials dropped.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;

use authenticator_core::config::{AttestationMode, CounterMode};
use authenticator_core::platform::BuiltInUv;
use authenticator_core::{Authenticator, Config, MemoryStore};
use fidelio_ctaphid::PACKET_SIZE;
use fidelio_host::HostPlatform;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use serde_json::{Value as Json, json};
use tokio::sync::{mpsc, oneshot};

use crate::device::{self, ControlRequest, DeviceExtras, DeviceOptions, Outbound, Peer};
use crate::presence::{DaemonPresence, PresenceMode, PresenceSignals};
use crate::virtual_auth::EventLog;

/// The most devices one daemon hosts.
pub const MAX_DEVICES: usize = 64;

/// How the lanes let a device's packets through: a plug that can be pulled.
#[derive(Debug, Clone, Default)]
pub struct Plug(Rc<Cell<bool>>);

impl Plug {
    /// A plugged-in device.
    pub fn plugged_in() -> Self {
        Self(Rc::new(Cell::new(true)))
    }

    /// Whether the device is plugged in.
    pub fn is_plugged(&self) -> bool {
        self.0.get()
    }

    fn set(&self, plugged: bool) {
        self.0.set(plugged);
    }

    /// The queue the lanes (or the gateway's client) send into, and the one the device reads:
    /// what arrives while unplugged is dropped here, before the device sees it.
    pub fn channel<T: 'static>(&self, capacity: usize) -> (mpsc::Sender<T>, mpsc::Receiver<T>) {
        let (lanes_tx, mut lanes_rx) = mpsc::channel::<T>(capacity);
        let (device_tx, device_rx) = mpsc::channel(capacity);
        let plug = self.clone();
        tokio::task::spawn_local(async move {
            while let Some(packet) = lanes_rx.recv().await {
                if plug.is_plugged() && device_tx.send(packet).await.is_err() {
                    break;
                }
            }
        });
        (lanes_tx, device_rx)
    }

    /// `lanes` behind the plug: nothing goes out while unplugged.
    pub fn outbound(&self, lanes: Rc<dyn Outbound>) -> Rc<dyn Outbound> {
        Rc::new(PluggedOutbound {
            plug: self.clone(),
            lanes,
        })
    }
}

struct PluggedOutbound {
    plug: Plug,
    lanes: Rc<dyn Outbound>,
}

impl Outbound for PluggedOutbound {
    fn send(&self, to: &Peer, packet: &[u8; PACKET_SIZE]) {
        if self.plug.is_plugged() {
            self.lanes.send(to, packet);
        }
    }
}

/// What the gateway does for the host: give a new device its own client, forget a removed one.
pub trait GatewayAttach {
    /// Connects a gateway client to device `id`, sending CTAP2 requests into `device`.
    fn attach(&self, id: &str, device: mpsc::Sender<crate::device::Direct>);
    /// Forgets device `id`.
    fn detach(&self, id: &str);
}

/// A device's settings: a profile, then overrides.
#[derive(Debug, Clone)]
pub struct DeviceSettings {
    /// The profile's name.
    pub profile: String,
    /// The settings the device runs with.
    pub config: Config,
    /// Whether it verifies users itself (built-in UV, as a platform authenticator does).
    pub built_in_uv: bool,
}

/// Reads a profile name: `security-key`, `synced-passkey` or `platform`.
pub fn profile_config(name: &str) -> Option<Config> {
    match name {
        "security-key" => Some(Config::security_key()),
        "synced-passkey" => Some(Config::synced_passkey()),
        "platform" => Some(Config::platform()),
        _ => None,
    }
}

/// The profile a configuration most resembles, for listings.
pub fn profile_name_of(config: &Config) -> &'static str {
    if config.platform_device {
        "platform"
    } else if config.backup_eligible && matches!(config.counter, CounterMode::AlwaysZero) {
        "synced-passkey"
    } else {
        "security-key"
    }
}

/// The profile names, for messages.
pub const PROFILES: &str = "security-key, synced-passkey, platform";

/// Applies a device request's overrides (`aaguid`, `algorithms`, `counter`, `attestation`,
/// `backupEligible`, `backupState`, `maxDiscoverableCredentials`, `alwaysUv`, `transports`) to
/// `config`. The error says which field is wrong.
pub fn apply_overrides(config: &mut Config, request: &Json) -> Result<(), String> {
    if let Some(aaguid) = request.get("aaguid") {
        let text = aaguid.as_str().ok_or("\"aaguid\" must be a UUID string")?;
        config.aaguid = parse_uuid(text).ok_or("\"aaguid\" must be a UUID (8-4-4-4-12 hex)")?;
    }
    if let Some(algorithms) = request.get("algorithms") {
        let list = algorithms
            .as_array()
            .ok_or("\"algorithms\" must be a list of ES256, EdDSA (or -7, -8)")?;
        let mut chosen = authenticator_core::config::Algorithms {
            es256: false,
            eddsa: false,
        };
        for item in list {
            match (item.as_str(), item.as_i64()) {
                (Some("ES256" | "es256"), _) | (_, Some(-7)) => chosen.es256 = true,
                (Some("EdDSA" | "eddsa" | "Ed25519"), _) | (_, Some(-8)) => chosen.eddsa = true,
                _ => return Err(format!("unsupported algorithm {item} (ES256, EdDSA)")),
            }
        }
        if !chosen.es256 && !chosen.eddsa {
            return Err("\"algorithms\" must name at least one algorithm".into());
        }
        config.algorithms = chosen;
    }
    if let Some(counter) = request.get("counter") {
        config.counter = match counter.as_str() {
            Some("global") => CounterMode::Global,
            Some("per-credential") => CounterMode::PerCredential,
            Some("zero") => CounterMode::AlwaysZero,
            _ => return Err("\"counter\" must be global, per-credential or zero".into()),
        };
    }
    if let Some(attestation) = request.get("attestation") {
        config.attestation = match attestation.as_str() {
            Some("none") => AttestationMode::None,
            Some("self") => AttestationMode::SelfAttestation,
            Some("profile") => config.attestation.clone(),
            _ => {
                return Err(
                    "\"attestation\" must be none or self (batch attestation comes from \
                     `fidelio serve --attestation batch:DIR` for the default device)"
                        .into(),
                );
            }
        };
    }
    let flag = |name: &str| -> Result<Option<bool>, String> {
        match request.get(name) {
            None => Ok(None),
            Some(Json::Bool(value)) => Ok(Some(*value)),
            Some(_) => Err(format!("\"{name}\" must be a boolean")),
        }
    };
    if let Some(value) = flag("backupEligible")? {
        config.backup_eligible = value;
    }
    if let Some(value) = flag("backupState")? {
        config.backup_state = value;
    }
    if let Some(value) = flag("alwaysUv")? {
        config.always_uv = value;
    }
    if let Some(value) = flag("residentKeys")? {
        config.discoverable_credentials = value;
    }
    if let Some(limit) = request.get("maxDiscoverableCredentials") {
        config.max_discoverable_credentials = limit
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| (1..=1_000_000).contains(n))
            .ok_or("\"maxDiscoverableCredentials\" must be 1 to 1000000")?;
    }
    if let Some(transports) = request.get("transports") {
        let list = transports
            .as_array()
            .ok_or("\"transports\" must be a list of strings")?;
        let mut chosen = Vec::new();
        for item in list {
            let name = match item.as_str() {
                Some("usb") => "usb",
                Some("nfc") => "nfc",
                Some("ble") => "ble",
                Some("internal") => "internal",
                Some("hybrid") => "hybrid",
                Some("smart-card") => "smart-card",
                _ => return Err(format!("unknown transport {item}")),
            };
            chosen.push(name);
        }
        config.transports = chosen;
    }
    if config.backup_state && !config.backup_eligible {
        return Err("backupState needs backupEligible (BS=1 with BE=0 is invalid)".into());
    }
    Ok(())
}

fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 || text.len() != 36 {
        return None;
    }
    let bytes = hex::decode(hex).ok()?;
    bytes.try_into().ok()
}

/// Formats an AAGUID as a UUID.
pub fn format_uuid(bytes: &[u8; 16]) -> String {
    let hex = hex::encode(bytes);
    let part = |range: std::ops::Range<usize>| hex.get(range).unwrap_or_default().to_owned();
    format!(
        "{}-{}-{}-{}-{}",
        part(0..8),
        part(8..12),
        part(12..16),
        part(16..20),
        part(20..32)
    )
}

/// Whether `id` may name a device: 1–64 of `A–Z a–z 0–9 . _ -`.
pub fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// One device the host knows.
#[derive(Debug)]
struct Entry {
    id: String,
    settings: DeviceSettings,
    control: mpsc::Sender<ControlRequest>,
    plug: Plug,
    udp: Option<SocketAddr>,
    /// Stops a device the host started (`None`: the default device, which `serve` runs).
    stop: Option<oneshot::Sender<()>>,
    created_ms: u64,
}

/// What every device the host starts shares.
#[derive(Debug)]
pub struct HostSettings {
    /// How presence is answered (a terminal prompt is for the default device only; added
    /// devices consent automatically instead).
    pub presence: PresenceMode,
    /// Log CTAP requests decoded.
    pub log_ctap: bool,
    /// The CTAPHID settings.
    pub ctaphid: fidelio_ctaphid::Config,
    /// Seeds: reproducible sessions stay reproducible.
    pub seed: Option<u64>,
}

/// The daemon's devices.
pub struct DeviceHost {
    settings: HostSettings,
    events: Rc<EventLog>,
    devices: RefCell<Vec<Entry>>,
    gateway: RefCell<Option<Rc<dyn GatewayAttach>>>,
    /// The device browser create() ceremonies go to (the key the user touches); `None`: the
    /// first plugged-in device.
    preferred: RefCell<Option<String>>,
    /// The batch attestation key `serve --attestation batch:DIR` gave the default device.
    batch: RefCell<Option<authenticator_core::BatchAttestation>>,
    rng: RefCell<ChaCha20Rng>,
    numbered: Cell<u32>,
}

impl std::fmt::Debug for DeviceHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceHost")
            .field("devices", &self.devices.borrow().len())
            .finish_non_exhaustive()
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A started device, as [`DeviceHost::describe`] lists it.
fn entry_json(entry: &Entry, preferred: bool) -> Json {
    json!({
        "authenticatorId": entry.id,
        "profile": entry.settings.profile,
        "plugged": entry.plug.is_plugged(),
        "udp": entry.udp.map(|address| address.to_string()),
        "preferred": preferred,
        "createdMs": entry.created_ms,
    })
}

impl DeviceHost {
    /// A host with no device yet.
    pub fn new(settings: HostSettings, events: Rc<EventLog>) -> Self {
        let rng = match settings.seed {
            Some(seed) => ChaCha20Rng::seed_from_u64(seed ^ 0x6465_7669_6365_7331),
            None => ChaCha20Rng::from_rng(&mut fidelio_host::OsRng),
        };
        Self {
            settings,
            events,
            devices: RefCell::new(Vec::new()),
            gateway: RefCell::new(None),
            preferred: RefCell::new(None),
            batch: RefCell::new(None),
            rng: RefCell::new(rng),
            numbered: Cell::new(1),
        }
    }

    /// The event log every device writes to.
    pub fn events(&self) -> &Rc<EventLog> {
        &self.events
    }

    /// Connects the browser gateway: devices started from now on get a client there.
    pub fn set_gateway(&self, gateway: Rc<dyn GatewayAttach>) {
        *self.gateway.borrow_mut() = Some(gateway);
    }

    /// Registers the device `serve` runs itself.
    pub fn register_default(
        &self,
        id: &str,
        settings: DeviceSettings,
        control: mpsc::Sender<ControlRequest>,
        plug: Plug,
        udp: Option<SocketAddr>,
    ) {
        if let AttestationMode::Batch(batch) = &settings.config.attestation {
            *self.batch.borrow_mut() = Some(batch.clone());
        }
        self.devices.borrow_mut().push(Entry {
            id: id.to_owned(),
            settings,
            control,
            plug,
            udp,
            stop: None,
            created_ms: now_ms(),
        });
    }

    /// The control queue of device `id`.
    pub fn control(&self, id: &str) -> Option<mpsc::Sender<ControlRequest>> {
        self.devices
            .borrow()
            .iter()
            .find(|entry| entry.id == id)
            .map(|entry| entry.control.clone())
    }

    /// Every device's ID and control queue, in the order they were added.
    pub fn controls(&self) -> Vec<(String, mpsc::Sender<ControlRequest>)> {
        self.devices
            .borrow()
            .iter()
            .map(|entry| (entry.id.clone(), entry.control.clone()))
            .collect()
    }

    /// The plugged-in devices, the preferred one first, then in the order they were added.
    pub fn plugged(&self) -> Vec<String> {
        let devices = self.devices.borrow();
        let preferred = self.preferred.borrow().clone();
        let mut ids: Vec<String> = devices
            .iter()
            .filter(|entry| entry.plug.is_plugged())
            .map(|entry| entry.id.clone())
            .collect();
        if let Some(preferred) = preferred
            && let Some(at) = ids.iter().position(|id| *id == preferred)
        {
            let id = ids.remove(at);
            ids.insert(0, id);
        }
        ids
    }

    /// What the host knows of device `id` (`None`: no such device).
    pub fn describe(&self, id: &str) -> Option<Json> {
        let first = self.plugged().into_iter().next();
        self.devices
            .borrow()
            .iter()
            .find(|entry| entry.id == id)
            .map(|entry| entry_json(entry, first.as_deref() == Some(id)))
    }

    /// Plugs device `id` in or out; `None`: no such device.
    pub fn set_plugged(&self, id: &str, plugged: bool) -> Option<()> {
        let devices = self.devices.borrow();
        let entry = devices.iter().find(|entry| entry.id == id)?;
        entry.plug.set(plugged);
        let mut fields = serde_json::Map::new();
        fields.insert("plugged".into(), json!(plugged));
        self.events.push("devicePlugged", id, fields);
        tracing::info!(
            "device {id:?} {}",
            if plugged { "plugged in" } else { "unplugged" }
        );
        Some(())
    }

    /// Makes device `id` the one browser registrations go to; `None`: no such device.
    pub fn prefer(&self, id: &str) -> Option<()> {
        if !self.devices.borrow().iter().any(|entry| entry.id == id) {
            return None;
        }
        *self.preferred.borrow_mut() = Some(id.to_owned());
        Some(())
    }

    /// A fresh device ID: `device-2`, `device-3`, …
    pub fn next_id(&self) -> String {
        loop {
            let number = self.numbered.get().saturating_add(1);
            self.numbered.set(number);
            let id = format!("device-{number}");
            if !self.devices.borrow().iter().any(|entry| entry.id == id) {
                return id;
            }
        }
    }

    /// Starts a device: `settings`, an empty store, a UDP lane on `udp`, and a client at the
    /// gateway. Answers its description, or an error message.
    pub async fn start(
        &self,
        id: &str,
        settings: DeviceSettings,
        udp: SocketAddr,
    ) -> Result<Json, (u16, String)> {
        if !valid_id(id) {
            return Err((
                400,
                "a device ID is 1–64 letters, digits, '.', '_' or '-'".into(),
            ));
        }
        if self.devices.borrow().iter().any(|entry| entry.id == id) {
            return Err((409, format!("there is already a device {id:?}")));
        }
        if self.devices.borrow().len() >= MAX_DEVICES {
            return Err((409, format!("a daemon hosts at most {MAX_DEVICES} devices")));
        }
        if !udp.ip().is_loopback() {
            return Err((
                400,
                format!("an added device's UDP lane listens on loopback only, not {udp}"),
            ));
        }
        let store = MemoryStore::new();
        let lane = crate::udp::UdpLane::bind(udp)
            .await
            .map_err(|error| (409, error.to_string()))?;
        let udp_address = lane.local_addr().ok();

        let (rng, channel_seed) = {
            let mut seeds = self.rng.borrow_mut();
            let rng = ChaCha20Rng::from_rng(&mut *seeds);
            (rng, rand_core::Rng::next_u64(&mut *seeds))
        };
        let signals = Rc::new(PresenceSignals::default());
        signals.set_daemon_batch(self.batch.borrow().clone());
        let presence_mode = match self.settings.presence {
            PresenceMode::Prompt => PresenceMode::Auto,
            other => other,
        };
        let mut presence = DaemonPresence::new(presence_mode, signals.clone(), None);
        if settings.built_in_uv {
            presence.built_in_uv = BuiltInUv::Configured;
        }
        let mut config = settings.config.clone();
        config.keep_non_discoverable = true;
        let ctaphid = fidelio_ctaphid::Config {
            max_msg_size: config.max_msg_size,
            ..self.settings.ctaphid.clone()
        };
        let authenticator = Authenticator::new(HostPlatform::new(rng, store, presence), config);

        let plug = Plug::plugged_in();
        let (inbound_tx, inbound_rx) = plug.channel(256);
        let (control_tx, control_rx) = mpsc::channel(16);
        let mut lanes = device::Lanes::new();
        lanes.push(lane.outbound());
        let gateway = self.gateway.borrow().clone();
        let direct = match &gateway {
            Some(gateway) => {
                let (direct_tx, direct_rx) = plug.channel(64);
                gateway.attach(id, direct_tx);
                Some(direct_rx)
            }
            None => None,
        };
        let outbound = plug.outbound(Rc::new(lanes));
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (lane_stop_tx, lane_stop_rx) = oneshot::channel::<()>();
        tokio::task::spawn_local(async move {
            tokio::select! {
                () = lane.run(inbound_tx) => {}
                _ = lane_stop_rx => {}
            }
        });
        let options = DeviceOptions {
            log_ctap: self.settings.log_ctap,
            channel_seed,
            ctaphid,
        };
        let extras = DeviceExtras {
            id: id.to_owned(),
            events: self.events.clone(),
            presence: presence_mode,
            direct,
        };
        let device_id = id.to_owned();
        tokio::task::spawn_local(async move {
            device::run_with(
                authenticator,
                signals,
                options,
                inbound_rx,
                control_rx,
                outbound,
                async move {
                    let _ = stop_rx.await;
                },
                extras,
            )
            .await;
            drop(lane_stop_tx);
            tracing::info!("device {device_id:?} stopped");
        });
        let entry = Entry {
            id: id.to_owned(),
            settings,
            control: control_tx,
            plug,
            udp: udp_address,
            stop: Some(stop_tx),
            created_ms: now_ms(),
        };
        let described = entry_json(&entry, false);
        self.devices.borrow_mut().push(entry);
        let mut fields = serde_json::Map::new();
        fields.insert("udp".into(), json!(udp_address.map(|a| a.to_string())));
        self.events.push("deviceAdded", id, fields);
        tracing::info!(
            "device {id:?} started{}",
            udp_address
                .map(|address| format!(", CTAPHID over UDP on {address}"))
                .unwrap_or_default()
        );
        Ok(described)
    }

    /// Stops and forgets device `id`. The default device cannot be removed (`Err`).
    pub fn remove(&self, id: &str) -> Result<(), (u16, String)> {
        let mut devices = self.devices.borrow_mut();
        let Some(at) = devices.iter().position(|entry| entry.id == id) else {
            return Err((404, format!("no authenticator {id:?}")));
        };
        let Some(entry) = devices.get_mut(at) else {
            return Err((404, format!("no authenticator {id:?}")));
        };
        let Some(stop) = entry.stop.take() else {
            return Err((
                409,
                "the device fidelio serve started with cannot be removed (unplug or reset it \
                 instead)"
                    .into(),
            ));
        };
        let _ = stop.send(());
        entry.plug.set(false);
        devices.remove(at);
        drop(devices);
        if let Some(gateway) = self.gateway.borrow().as_ref() {
            gateway.detach(id);
        }
        if self.preferred.borrow().as_deref() == Some(id) {
            *self.preferred.borrow_mut() = None;
        }
        self.events
            .push("deviceRemoved", id, serde_json::Map::new());
        tracing::info!("device {id:?} removed");
        Ok(())
    }

    /// The settings device `id` was started with.
    pub fn settings(&self, id: &str) -> Option<DeviceSettings> {
        self.devices
            .borrow()
            .iter()
            .find(|entry| entry.id == id)
            .map(|entry| entry.settings.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_are_checked_and_applied() {
        let mut config = Config::security_key();
        let request = json!({
            "aaguid": "01234567-89ab-cdef-0123-456789abcdef",
            "algorithms": ["EdDSA"],
            "counter": "per-credential",
            "attestation": "none",
            "backupEligible": true,
            "backupState": true,
            "maxDiscoverableCredentials": 5,
        });
        apply_overrides(&mut config, &request).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            format_uuid(&config.aaguid),
            "01234567-89ab-cdef-0123-456789abcdef"
        );
        assert!(config.algorithms.eddsa && !config.algorithms.es256);
        assert!(matches!(config.counter, CounterMode::PerCredential));
        assert!(matches!(config.attestation, AttestationMode::None));
        assert!(config.backup_eligible && config.backup_state);
        assert_eq!(config.max_discoverable_credentials, 5);
        for bad in [
            json!({"aaguid": "nope"}),
            json!({"aaguid": 7}),
            json!({"algorithms": []}),
            json!({"algorithms": ["RS256"]}),
            json!({"counter": "sometimes"}),
            json!({"attestation": "batch"}),
            json!({"backupEligible": "yes"}),
            json!({"backupEligible": false, "backupState": true}),
            json!({"maxDiscoverableCredentials": 0}),
            json!({"transports": ["pigeon"]}),
        ] {
            let mut config = Config::security_key();
            assert!(apply_overrides(&mut config, &bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ids_and_profiles() {
        assert!(valid_id("phone-2"));
        assert!(valid_id("a.b_c"));
        assert!(!valid_id(""));
        assert!(!valid_id("with space"));
        assert!(!valid_id("../x"));
        assert!(!valid_id(&"x".repeat(65)));
        assert!(profile_config("security-key").is_some());
        assert!(profile_config("synced-passkey").is_some());
        assert!(profile_config("platform").is_some());
        assert!(profile_config("toaster").is_none());
    }
}
