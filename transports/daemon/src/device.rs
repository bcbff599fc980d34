//! One virtual device: the authenticator core behind a CTAPHID channel table, fed packets by
//! any number of lanes, answering control commands.
//!
//! Everything runs on one thread (a `LocalSet`): the core is `!Send` by design and needs no
//! locks. The loop owns the [`CtapHid`] state; the authenticator moves into the future that
//! processes a request and comes back with the response, so packets keep flowing — KEEPALIVE
//! every 100 ms, CHANNEL_BUSY for other channels, CANCEL — while the core waits for the user.
//!
//! Injected faults (`faults.rs`) are planned at each request's start and applied here: a
//! status answered without the core, a delay, presence/UV outcomes (through
//! [`PresenceSignals`]), the core's hooks and a swapped attestation for the one request, and
//! outgoing reports dropped or delayed; at the answer they are counted and logged as
//! `faultInjected` events.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use authenticator_core::{AttestationMode, Authenticator, Hooks, Platform, StatusCode};
use fidelio_ctaphid::{BROADCAST_CHANNEL, CtapHid, KeepaliveStatus, PACKET_SIZE, RequestKind};
use serde_json::{Value as Json, json};
use tokio::sync::{mpsc, oneshot};

use crate::ctap_log;
use crate::faults::{self, RequestPlan};
use crate::presence::PresenceSignals;
use crate::virtual_auth::{EventLog, Observation, VirtualCommand, VirtualState};

/// Where a packet came from, and so where its answers go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Peer {
    /// A UDP client.
    Udp(SocketAddr),
    /// The hosts of this machine's kernel, through the UHID device (one device per daemon;
    /// the kernel gives every report to every open hidraw file, CTAPHID channels tell the
    /// hosts apart).
    Uhid,
    /// The host that attached the USB/IP device (one at a time).
    Usbip,
    /// An in-process client of the browser gateway (`browser.rs`), by its number: the
    /// gateway's WebAuthn client reaches the device through the same CTAPHID channel table.
    Gateway(u32),
}

impl Peer {
    /// The lane's name, as events and the event log give it.
    pub fn lane_name(self) -> &'static str {
        match self {
            Peer::Udp(_) => "udp",
            Peer::Uhid => "uhid",
            Peer::Usbip => "usbip",
            Peer::Gateway(_) => "gateway",
        }
    }
}

/// A packet from a lane.
#[derive(Debug, Clone, Copy)]
pub struct Inbound {
    /// One CTAPHID report (no report ID).
    pub packet: [u8; PACKET_SIZE],
    /// Its sender.
    pub from: Peer,
}

/// How the device hands packets back to the lanes.
pub trait Outbound {
    /// Sends one report to a peer; failures are the lane's to log.
    fn send(&self, to: &Peer, packet: &[u8; PACKET_SIZE]);
}

/// Several lanes behind one [`Outbound`]: every report is offered to each lane, and each lane
/// sends only to its own kind of [`Peer`] and ignores the others.
#[derive(Default)]
pub struct Lanes(Vec<Rc<dyn Outbound>>);

impl Lanes {
    /// No lanes yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a lane's sending half.
    pub fn push(&mut self, lane: Rc<dyn Outbound>) {
        self.0.push(lane);
    }
}

impl std::fmt::Debug for Lanes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Lanes({})", self.0.len())
    }
}

impl Outbound for Lanes {
    fn send(&self, to: &Peer, packet: &[u8; PACKET_SIZE]) {
        for lane in &self.0 {
            lane.send(to, packet);
        }
    }
}

/// Commands of the control interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlCommand {
    /// What the device is doing.
    Status,
    /// A power cycle: channels and transient state are lost, credentials kept.
    PowerCycle,
    /// A control API command (`virtual_auth.rs`), answered `{"status", "body"}`; run when the
    /// device is idle (a request in progress finishes first). Needs [`run_with`].
    Virtual(VirtualCommand),
}

/// A control command with the channel for its JSON answer.
pub type ControlRequest = (ControlCommand, oneshot::Sender<Json>);

type Processing<P> = Pin<Box<dyn Future<Output = (Authenticator<P>, Vec<u8>)>>>;

/// Settings of the device loop.
#[derive(Debug, Clone)]
pub struct DeviceOptions {
    /// Log every CTAP request and response decoded.
    pub log_ctap: bool,
    /// Seed of the channel-ID generator.
    pub channel_seed: u64,
    /// The CTAPHID settings.
    pub ctaphid: fidelio_ctaphid::Config,
}

/// What a device needs to answer the control API ([`ControlCommand::Virtual`]) and to log
/// its events.
#[derive(Debug)]
pub struct DeviceExtras {
    /// The device's authenticator ID.
    pub id: String,
    /// Where its events go.
    pub events: Rc<EventLog>,
    /// How presence is answered unless the control API says otherwise.
    pub presence: crate::presence::PresenceMode,
    /// CTAP requests from in-process clients (the browser gateway), without CTAPHID framing.
    pub direct: Option<mpsc::Receiver<Direct>>,
}

/// A message of an in-process client (the browser gateway's WebAuthn client): a CTAP2 request
/// straight to the core — no CTAPHID framing, no thread hop — or the cancel of one. The device
/// treats it as one more host: it waits its turn behind other hosts' requests, it is answered
/// in full when done, and a cancel ends its wait for the user (`CTAP2_ERR_KEEPALIVE_CANCEL`).
#[derive(Debug)]
pub enum Direct {
    /// A CBOR request (command byte and parameters).
    Request {
        /// Tells this request apart for [`Direct::Cancel`].
        serial: u64,
        /// The command byte and its CBOR parameters.
        payload: Vec<u8>,
        /// The lane it came through (for events and the event log).
        from: Peer,
        /// Where the response goes (closed: the client gave up; the request is skipped).
        reply: oneshot::Sender<Vec<u8>>,
    },
    /// authenticatorCancel for request `serial`.
    Cancel(u64),
}

/// Runs the device until `inbound` closes or `shutdown` resolves. A request in progress at
/// shutdown is abandoned: the core commits each change atomically, so nothing committed is
/// lost and nothing half-done is kept. Control API commands are refused; see [`run_with`].
pub async fn run<P: Platform + 'static>(
    authenticator: Authenticator<P>,
    signals: Rc<PresenceSignals>,
    options: DeviceOptions,
    inbound: mpsc::Receiver<Inbound>,
    control: mpsc::Receiver<ControlRequest>,
    outbound: Rc<dyn Outbound>,
    shutdown: impl Future<Output = ()>,
) {
    run_device(
        authenticator,
        signals,
        options,
        inbound,
        control,
        outbound,
        shutdown,
        None,
    )
    .await;
}

/// [`run`], also answering the control API and logging events.
#[expect(
    clippy::too_many_arguments,
    reason = "the device loop's parts, as run() takes them, plus the extras"
)]
pub async fn run_with<P: Platform + 'static>(
    authenticator: Authenticator<P>,
    signals: Rc<PresenceSignals>,
    options: DeviceOptions,
    inbound: mpsc::Receiver<Inbound>,
    control: mpsc::Receiver<ControlRequest>,
    outbound: Rc<dyn Outbound>,
    shutdown: impl Future<Output = ()>,
    extras: DeviceExtras,
) {
    run_device(
        authenticator,
        signals,
        options,
        inbound,
        control,
        outbound,
        shutdown,
        Some(extras),
    )
    .await;
}

#[expect(
    clippy::too_many_arguments,
    clippy::too_many_lines,
    reason = "one loop owning every part of the device"
)]
async fn run_device<P: Platform + 'static>(
    authenticator: Authenticator<P>,
    signals: Rc<PresenceSignals>,
    options: DeviceOptions,
    mut inbound: mpsc::Receiver<Inbound>,
    mut control: mpsc::Receiver<ControlRequest>,
    outbound: Rc<dyn Outbound>,
    shutdown: impl Future<Output = ()>,
    extras: Option<DeviceExtras>,
) {
    // Where `faultInjected` and `operation` events go.
    let fault_log = extras
        .as_ref()
        .map(|extras| (extras.id.clone(), extras.events.clone()));
    // The request in progress, for its `operation` event.
    let mut operation: Option<crate::operation::Started> = None;
    let mut extras = extras;
    let mut direct = extras.as_mut().and_then(|extras| extras.direct.take());
    let mut direct_queue: VecDeque<QueuedDirect> = VecDeque::new();
    // The direct request in progress: its serial and where its answer goes.
    let mut direct_in_progress: Option<(u64, oneshot::Sender<Vec<u8>>)> = None;
    let mut virtual_state = extras.map(|extras| {
        VirtualState::new(
            extras.id,
            extras.events,
            extras.presence,
            authenticator.config().clone(),
        )
    });
    // The request in progress, when its success will be an event.
    let mut observed: Option<Observation> = None;
    let started = Instant::now();
    let now = || u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let mut hid = CtapHid::new(options.ctaphid.clone(), options.channel_seed);
    let mut routes: HashMap<u32, Peer> = HashMap::new();
    let mut idle: Option<Authenticator<P>> = Some(authenticator);
    let mut processing: Option<Processing<P>> = None;
    // What the request in progress was, for the log: CBOR command byte or U2F INS.
    let mut current = (RequestKind::Cbor, 0u8);
    let mut deferred: Vec<ControlRequest> = Vec::new();
    // The faults of the request in progress, and what they change on the way out.
    let mut faulted: Option<Faulted> = None;
    let mut outgoing = OutgoingFaults::default();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shutdown = std::pin::pin!(shutdown);

    loop {
        // Start the next complete request when the core is free.
        if processing.is_none()
            && let Some(mut authenticator) = idle.take()
        {
            let next = match hid.take_request() {
                Some(request) => Some(Next {
                    kind: request.kind,
                    from: routes.get(&request.channel).copied(),
                    channel: Some(request.channel),
                    payload: request.payload,
                }),
                None => next_direct(&mut direct_queue).map(|(serial, payload, from, reply)| {
                    direct_in_progress = Some((serial, reply));
                    Next {
                        kind: RequestKind::Cbor,
                        from: Some(from),
                        channel: None,
                        payload,
                    }
                }),
            };
            match next {
                Some(request) => {
                    signals.clear();
                    let kind = request.kind;
                    let command = match kind {
                        RequestKind::Cbor => request.payload.first(),
                        RequestKind::Msg => request.payload.get(1),
                    };
                    current = (kind, command.copied().unwrap_or(0));
                    if options.log_ctap {
                        let described = match kind {
                            RequestKind::Cbor => ctap_log::describe_request(&request.payload),
                            RequestKind::Msg => ctap_log::describe_u2f_request(&request.payload),
                        };
                        tracing::info!(target: "ctap", channel = format_args!("{:08x}", request.channel.unwrap_or(0)), "→ {described}");
                    }
                    let from = request.from;
                    observed = virtual_state.as_mut().and_then(|state| {
                        state.observe_request(&mut authenticator, kind, &request.payload, from)
                    });
                    // Decoded for the event log only when there is one (not on every request).
                    if fault_log
                        .as_ref()
                        .is_some_and(|(_, events)| events.is_recording())
                    {
                        let lane = from.map(Peer::lane_name);
                        operation =
                            Some(crate::operation::Started::new(kind, &request.payload, lane));
                    }
                    let plan = signals.with_faults(|set| set.plan(request_command(current)));
                    signals.set_request_faults(plan.presence);
                    outgoing.begin(plan.drop_reports, plan.report_delay);
                    let (status_override, delay) = (plan.status, plan.delay);
                    if !plan.is_empty() {
                        *authenticator.hooks_mut() = plan.hooks;
                        let replaced = plan.attestation.clone().map(|mode| {
                            std::mem::replace(&mut authenticator.config_mut().attestation, mode)
                        });
                        if status_override.is_some() {
                            // The command does not run: nothing to observe.
                            observed = None;
                        }
                        let lane = from.map(Peer::lane_name);
                        faulted = Some(Faulted {
                            plan,
                            replaced,
                            lane,
                        });
                    }
                    let payload = request.payload;
                    let cancel = signals.clone();
                    processing = Some(Box::pin(async move {
                        // An injected delay: a slow device, still sending KEEPALIVE (PROCESSING)
                        // and, for CBOR, still cancellable.
                        if let Some(delay) = delay {
                            if kind == RequestKind::Cbor {
                                tokio::select! {
                                    () = tokio::time::sleep(delay) => {}
                                    () = cancel.cancelled() => {
                                        let cancelled = vec![StatusCode::KeepaliveCancel.to_byte()];
                                        return (authenticator, cancelled);
                                    }
                                }
                            } else {
                                tokio::time::sleep(delay).await;
                            }
                        }
                        // An injected status: answered without running the command.
                        if let Some(status) = status_override {
                            return (authenticator, vec![status]);
                        }
                        // KEEPALIVE goes out while either waits for the user (CTAP 2.1 sends it
                        // for MSG too); CANCEL only applies to CBOR, as CTAPHID defines it.
                        let response = match kind {
                            RequestKind::Cbor => authenticator.process(&payload).await,
                            RequestKind::Msg => authenticator.process_u2f(&payload).await,
                        };
                        (authenticator, response)
                    }));
                }
                None => idle = Some(authenticator),
            }
        }
        flush(&mut hid, &routes, outbound.as_ref(), &mut outgoing);

        tokio::select! {
            packet = inbound.recv() => {
                let Some(packet) = packet else { break };
                remember_route(&mut routes, &packet);
                hid.handle_packet(&packet.packet, now());
                if hid.cancel_requested() {
                    signals.cancel();
                }
                // Immediate answers (INIT, PING, errors) go back to the sender.
                while let Some(out) = hid.next_outgoing() {
                    learn_allocated_channel(&mut routes, &out, packet.from);
                    outbound.send(&packet.from, &out);
                }
            }
            (authenticator, response) = wait(&mut processing) => {
                processing = None;
                if options.log_ctap {
                    let described = match current {
                        (RequestKind::Cbor, command) => ctap_log::describe_response(command, &response),
                        (RequestKind::Msg, _) => ctap_log::describe_u2f_response(&response),
                    };
                    tracing::info!(target: "ctap", "← {described}");
                }
                match direct_in_progress.take() {
                    Some((_, reply)) => {
                        let _ = reply.send(response.clone());
                    }
                    None => hid.respond(&response, now()),
                }
                // The answer leaves under its own request's HID faults, which end with it.
                flush(&mut hid, &routes, outbound.as_ref(), &mut outgoing);
                outgoing.begin(0, None);
                let mut authenticator = authenticator;
                let fired = signals.take_request_faults_fired();
                if let Some(faulted) = faulted.take() {
                    let log = fault_log.as_ref();
                    settle_faults(
                        faulted, &mut authenticator, &signals, fired, current, &response, log,
                    );
                }
                if let (Some((id, events)), Some(started)) = (fault_log.as_ref(), operation.take()) {
                    events.record("operation", id, started.finish(&response));
                }
                if let (Some(state), Some(observation)) = (virtual_state.as_mut(), observed.take()) {
                    state.observe_response(&mut authenticator, observation, &response);
                }
                idle = Some(authenticator);
                for (command, reply) in deferred.drain(..) {
                    let answer = control_command(
                        command,
                        &mut idle,
                        &mut hid,
                        &mut routes,
                        virtual_state.as_mut(),
                        &signals,
                    );
                    let _ = reply.send(answer);
                }
            }
            () = outgoing.due() => outgoing.send_due(outbound.as_ref()),
            message = receive_direct(&mut direct) => match message {
                Some(Direct::Request { serial, payload, from, reply }) => {
                    direct_queue.push_back((serial, payload, from, reply));
                }
                Some(Direct::Cancel(serial)) => {
                    if direct_in_progress.as_ref().is_some_and(|(current, _)| *current == serial) {
                        signals.cancel();
                    }
                }
                // The client is gone: no more direct requests.
                None => direct = None,
            },
            _ = tick.tick() => {
                let status = if signals.waiting_for_user() { KeepaliveStatus::UpNeeded } else { KeepaliveStatus::Processing };
                hid.set_keepalive_status(status);
                hid.poll(now());
                while let Some(event) = hid.take_event() {
                    tracing::info!("CTAPHID event: {event:?}");
                }
            }
            request = control.recv() => {
                let Some((command, reply)) = request else { continue };
                if idle.is_none() && command == ControlCommand::PowerCycle {
                    // Power goes away mid-command: the host sees the command cancelled.
                    signals.cancel();
                    deferred.push((command, reply));
                } else if idle.is_none() && matches!(command, ControlCommand::Virtual(_)) {
                    // The control API waits for the request in progress to end.
                    deferred.push((command, reply));
                } else {
                    let answer = control_command(
                        command,
                        &mut idle,
                        &mut hid,
                        &mut routes,
                        virtual_state.as_mut(),
                        &signals,
                    );
                    let _ = reply.send(answer);
                }
            }
            () = &mut shutdown => break,
        }
    }
    tracing::info!("device stopped");
}

fn control_command<P: Platform>(
    command: ControlCommand,
    idle: &mut Option<Authenticator<P>>,
    hid: &mut CtapHid,
    routes: &mut HashMap<u32, Peer>,
    virtual_state: Option<&mut VirtualState>,
    signals: &PresenceSignals,
) -> Json {
    match command {
        ControlCommand::Virtual(command) => match (virtual_state, idle.as_mut()) {
            (Some(state), Some(authenticator)) => {
                // Adding or removing the authenticator gives a clean device: no faults either.
                let fresh = matches!(command, VirtualCommand::Add(_) | VirtualCommand::Remove);
                let answer = state.execute(command, authenticator, signals);
                if fresh && answer.get("status").and_then(Json::as_u64) == Some(200) {
                    signals.with_faults(faults::FaultSet::clear);
                }
                answer
            }
            (None, _) => json!({"status": 404, "body": {"error": {
                "name": "NotFound", "message": "this device has no control API"}}}),
            (_, None) => json!({"status": 503, "body": {"error": {
                "name": "Busy", "message": "the device is busy"}}}),
        },
        ControlCommand::Status => json!({
            "ok": true,
            "busy": idle.is_none(),
            "channels": routes.len(),
        }),
        ControlCommand::PowerCycle => {
            if let Some(authenticator) = idle.as_mut() {
                authenticator.power_cycle();
            }
            hid.reset();
            routes.clear();
            tracing::info!("power cycle: channels and transient state cleared, credentials kept");
            json!({"ok": true, "power_cycled": true})
        }
    }
}

async fn wait<P: Platform>(processing: &mut Option<Processing<P>>) -> (Authenticator<P>, Vec<u8>) {
    match processing {
        Some(future) => future.await,
        None => std::future::pending().await,
    }
}

fn channel_of(packet: &[u8; PACKET_SIZE]) -> u32 {
    u32::from_be_bytes([packet[0], packet[1], packet[2], packet[3]])
}

fn remember_route(routes: &mut HashMap<u32, Peer>, inbound: &Inbound) {
    let channel = channel_of(&inbound.packet);
    if channel != BROADCAST_CHANNEL && channel != 0 && routes.contains_key(&channel) {
        routes.insert(channel, inbound.from);
    }
}

/// An INIT answer on the broadcast channel carries a newly allocated channel: its answers go
/// to whoever asked.
fn learn_allocated_channel(routes: &mut HashMap<u32, Peer>, out: &[u8; PACKET_SIZE], to: Peer) {
    if channel_of(out) == BROADCAST_CHANNEL && out[4] == (fidelio_ctaphid::command::INIT | 0x80) {
        let allocated = u32::from_be_bytes([out[15], out[16], out[17], out[18]]);
        routes.insert(allocated, to);
    }
}

fn flush(
    hid: &mut CtapHid,
    routes: &HashMap<u32, Peer>,
    outbound: &dyn Outbound,
    outgoing: &mut OutgoingFaults,
) {
    while let Some(out) = hid.next_outgoing() {
        match routes.get(&channel_of(&out)) {
            Some(peer) => outgoing.send(outbound, *peer, out),
            None => tracing::debug!(
                "dropping a report for channel {:08x} with no peer",
                channel_of(&out)
            ),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Injected faults (`faults.rs`).

/// The faults of the request in progress.
struct Faulted {
    plan: RequestPlan,
    /// The configured attestation, while an attestation fault's stands in for it.
    replaced: Option<AttestationMode>,
    /// The lane the request came from.
    lane: Option<&'static str>,
}

/// A request's command, as faults name it: the CBOR command byte or the U2F INS.
fn request_command((kind, byte): (RequestKind, u8)) -> faults::Command {
    match kind {
        RequestKind::Cbor => faults::Command::Ctap(byte),
        RequestKind::Msg => faults::Command::U2f(byte),
    }
}

/// At a faulted request's answer: the authenticator back to normal, the faults that took
/// effect counted, and a `faultInjected` event for each.
fn settle_faults<P: Platform>(
    faulted: Faulted,
    authenticator: &mut Authenticator<P>,
    signals: &PresenceSignals,
    presence: crate::presence::PresenceFaultsFired,
    request: (RequestKind, u8),
    response: &[u8],
    log: Option<&(String, Rc<EventLog>)>,
) {
    *authenticator.hooks_mut() = Hooks::default();
    if let Some(attestation) = faulted.replaced {
        authenticator.config_mut().attestation = attestation;
    }
    let succeeded = match request.0 {
        RequestKind::Cbor => response.first() == Some(&0),
        RequestKind::Msg => response.ends_with(&[0x90, 0x00]),
    };
    let outcome = faults::Outcome {
        presence,
        succeeded,
    };
    let fired = signals.with_faults(|set| set.settle(&faulted.plan, outcome));
    for fault in fired {
        tracing::info!(
            "fault {} ({}) injected into {}",
            fault.fault_id,
            fault.fault_type,
            fault.command.name()
        );
        if let Some((id, events)) = log {
            events.push("faultInjected", id, fault.event_fields(faulted.lane));
        }
    }
}

/// Outgoing reports under HID faults: the request's first N dropped, each one delayed.
#[derive(Debug, Default)]
struct OutgoingFaults {
    /// Reports still to drop.
    drop: u32,
    /// How late each report goes out.
    delay: Option<Duration>,
    /// Reports waiting for their time, in order.
    queue: VecDeque<(tokio::time::Instant, Peer, [u8; PACKET_SIZE])>,
}

impl OutgoingFaults {
    /// A request starts: its HID faults.
    fn begin(&mut self, drop: u32, delay: Option<Duration>) {
        self.drop = drop;
        self.delay = delay;
    }

    fn send(&mut self, outbound: &dyn Outbound, to: Peer, packet: [u8; PACKET_SIZE]) {
        if self.drop > 0 {
            self.drop = self.drop.saturating_sub(1);
            tracing::debug!(
                "fault: dropping a report for channel {:08x}",
                channel_of(&packet)
            );
            return;
        }
        let now = tokio::time::Instant::now();
        match self.delay {
            Some(delay) => self.queue.push_back((now + delay, to, packet)),
            // Behind reports still waiting: order is kept.
            None if !self.queue.is_empty() => self.queue.push_back((now, to, packet)),
            None => outbound.send(&to, &packet),
        }
    }

    /// Resolves when the first waiting report is due (never, with none waiting).
    async fn due(&self) {
        match self.queue.front() {
            Some((at, _, _)) => tokio::time::sleep_until(*at).await,
            None => std::future::pending().await,
        }
    }

    /// Sends the reports that are due.
    fn send_due(&mut self, outbound: &dyn Outbound) {
        let now = tokio::time::Instant::now();
        while self.queue.front().is_some_and(|(at, _, _)| *at <= now) {
            if let Some((_, to, packet)) = self.queue.pop_front() {
                outbound.send(&to, &packet);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// In-process clients ([`Direct`]).

/// A direct request waiting its turn: serial, payload, lane, reply.
type QueuedDirect = (u64, Vec<u8>, Peer, oneshot::Sender<Vec<u8>>);

/// The request to start next.
struct Next {
    kind: RequestKind,
    /// The CTAPHID channel (`None`: a direct request).
    channel: Option<u32>,
    from: Option<Peer>,
    payload: Vec<u8>,
}

/// The first queued direct request whose client still waits.
fn next_direct(queue: &mut VecDeque<QueuedDirect>) -> Option<QueuedDirect> {
    while let Some(request) = queue.pop_front() {
        if !request.3.is_closed() {
            return Some(request);
        }
    }
    None
}

async fn receive_direct(direct: &mut Option<mpsc::Receiver<Direct>>) -> Option<Direct> {
    match direct {
        Some(receiver) => receiver.recv().await,
        None => std::future::pending().await,
    }
}
