//! `fidelio browser native-host`: lane A's native-messaging host.
//!
//! Chromium starts it when the extension calls `chrome.runtime.connectNative(
//! "dev.fidelio.gateway")`, and talks to it over stdin/stdout: every message is a 32-bit length
//! in native byte order followed by that much UTF-8 JSON. Messages are at most 1 MiB either way
//! here (Chromium's own limit for what a host sends).
//!
//! | from the extension | answer |
//! |---|---|
//! | `{type: "config"}` | `{type: "config", url, token, relay: true}` or `{type: "config", error}` |
//! | `{type: "request", id, route, body, timeoutMs?}` | `{type: "response", id, status, body}` (the gateway's HTTP status and JSON answer) or `{type: "response", id, error}` (the gateway could not be asked) |
//! | `{type: "ping"}` | `{type: "pong"}` |
//! | anything else, a frame that is not JSON, one over 1 MiB (skipped) | `{type: "error", error}` |
//!
//! **The relay.** `route` is `/v1/create`, `/v1/get`, `/v1/cancel` or `/v1/isUvpaa`; the host
//! POSTs `body` there with the token from the gateway's token file (read once, and again when the
//! gateway refuses the connection or the token — a restarted daemon) and answers with the same
//! `id`. Every request gets its own loopback connection (the gateway answers one request per
//! connection) and its own relay thread waiting for the answer, so a ceremony that waits for the
//! user never holds up the cancel that ends it; answers are written whole under one lock. Relay
//! threads wait ready (a fresh thread can take milliseconds to first run on an idle virtual CPU),
//! and the reading thread sends a small request itself before handing the connection over. A
//! native-messaging round trip costs the extension's service worker well under a millisecond, a
//! `fetch()` to the gateway several.
//!
//! Closing the port (end of stdin) ends the host at once: its connections close, and the gateway
//! aborts their ceremonies as it does for any caller that hangs up. Hostile input never panics
//! the host: frames that are not JSON or too long are skipped with an error answer, and a frame
//! cut short by the end of input ends the host.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::{Context, Result};
use fidelio_daemon::browser::{TokenFile, default_token_file};
use serde_json::{Value as Json, json};

/// The largest message either way: what Chromium accepts from a host, and more than the
/// gateway takes as a request body (1 MiB) needs with the envelope around it.
const MAX_MESSAGE: usize = 1024 * 1024;
/// The gateway endpoints the relay reaches (not the control API).
const ROUTES: [&str; 4] = ["/v1/create", "/v1/get", "/v1/cancel", "/v1/isUvpaa"];
/// Requests relayed at once (the gateway serves 64 connections); more are refused.
const MAX_IN_FLIGHT: usize = 64;
/// The longest request ID echoed back.
const MAX_ID: usize = 256;
/// The longest HTTP head accepted from the gateway.
const MAX_HEAD: usize = 16 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an answer may take when the extension does not say (`timeoutMs`): longer than any
/// WebAuthn lifetime timer the gateway applies (≤ 10 min, then 5 s to settle).
const DEFAULT_ANSWER_TIMEOUT: Duration = Duration::from_secs(11 * 60);
const MIN_ANSWER_TIMEOUT: Duration = Duration::from_secs(1);
const MAX_ANSWER_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// Relay threads only parse and write JSON.
const RELAY_STACK: usize = 256 * 1024;
/// Relay threads started with the host, waiting for requests: a fresh thread can take
/// milliseconds to first run on an idle virtual CPU, a parked one wakes in microseconds.
const READY_WORKERS: usize = 2;
/// The largest body the reading thread sends itself (larger ones are sent by a relay thread:
/// writing them could wait for the gateway to read).
const SEND_AHEAD: usize = 64 * 1024;

/// Where answers go: stdout, or a buffer in tests. One lock per whole frame.
type Sink = Arc<Mutex<dyn Write + Send>>;

/// `fidelio browser native-host`: serves Chromium on stdin/stdout until the port closes.
pub fn run(token_file: Option<&Path>) -> Result<()> {
    let token_file = token_file.map_or_else(default_token_file, Path::to_path_buf);
    let sink: Sink = Arc::new(Mutex::new(io::stdout()));
    serve(&mut io::stdin().lock(), sink, token_file)
}

/// Reads messages from `input` until it ends, answering into `sink`. Relayed requests finish on
/// their own threads; the caller exiting (the process, in `run`) ends them.
fn serve(input: &mut impl Read, sink: Sink, token_file: PathBuf) -> Result<()> {
    let host = Host::new(token_file, sink);
    for _ in 0..READY_WORKERS {
        // Without them, each request starts its own thread.
        let _ = host.spawn_worker();
    }
    while let Some(incoming) = read_frame(input).context("reading from Chromium")? {
        let answer = match incoming {
            Incoming::Message(message) => host.handle(message),
            Incoming::NotJson => Some(error("a message that is not JSON")),
            Incoming::TooLarge(length) => Some(error(&format!(
                "a {length}-byte message (at most {MAX_MESSAGE}); skipped"
            ))),
        };
        if let Some(answer) = answer {
            send(&host.sink, &answer).context("writing to Chromium")?;
        }
    }
    Ok(())
}

/// One frame from Chromium.
#[derive(Debug)]
enum Incoming {
    Message(Json),
    NotJson,
    /// Longer than [`MAX_MESSAGE`]; its bytes were read and dropped.
    TooLarge(u32),
}

/// Reads one frame; `None` at the end of input (also inside a length). A frame cut short is an
/// error: the stream cannot be followed after it.
fn read_frame(input: &mut impl Read) -> io::Result<Option<Incoming>> {
    let mut length = [0u8; 4];
    match input.read_exact(&mut length) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(error),
    }
    let length = u32::from_ne_bytes(length);
    let Some(size) = usize::try_from(length)
        .ok()
        .filter(|&size| size <= MAX_MESSAGE)
    else {
        let skipped = io::copy(&mut input.by_ref().take(u64::from(length)), &mut io::sink())?;
        if skipped < u64::from(length) {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the input ended inside a message",
            ));
        }
        return Ok(Some(Incoming::TooLarge(length)));
    };
    let mut body = vec![0u8; size];
    input.read_exact(&mut body)?;
    Ok(Some(
        serde_json::from_slice(&body).map_or(Incoming::NotJson, Incoming::Message),
    ))
}

/// Writes one frame (length and JSON in one write, under the sink's lock). An answer too long
/// for Chromium is replaced by an error with the same `type` and `id`.
fn send(sink: &Sink, message: &Json) -> io::Result<()> {
    let mut body = serde_json::to_vec(message)?;
    if body.len() > MAX_MESSAGE {
        let mut replacement = json!({
            "type": message.get("type").cloned().unwrap_or(Json::Null),
            "error": format!(
                "the gateway's answer is {} bytes, more than a native message may carry",
                body.len()
            ),
        });
        if let (Some(id), Some(object)) = (message.get("id"), replacement.as_object_mut()) {
            object.insert("id".into(), id.clone());
        }
        body = serde_json::to_vec(&replacement)?;
    }
    let length = u32::try_from(body.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "an oversized answer"))?;
    let mut frame = Vec::with_capacity(body.len().saturating_add(4));
    frame.extend_from_slice(&length.to_ne_bytes());
    frame.extend_from_slice(&body);
    let mut output = lock(&**sink);
    output.write_all(&frame)?;
    output.flush()
}

fn error(text: &str) -> Json {
    json!({"type": "error", "error": text})
}

/// The host's state, shared with the relay threads.
struct Host {
    token_file: PathBuf,
    /// The token file as last read.
    config: Mutex<Option<TokenFile>>,
    /// Requests accepted and not answered yet.
    in_flight: AtomicUsize,
    sink: Sink,
    /// Requests for the relay threads, and how many threads there are and wait.
    queue: Mutex<Queue>,
    /// Signalled when a request is queued.
    queued: Condvar,
    /// Connections to the gateway kept for the next request (`Connection: keep-alive`).
    pool: Pool,
}

/// Kept connections: the gateway's URL, the connection, and since when it is idle.
type Pool = Mutex<Vec<(String, TcpStream, std::time::Instant)>>;

/// How long a kept connection may stay idle before it is not used again (the gateway closes
/// idle ones after 30 s).
const KEEP_IDLE: Duration = Duration::from_secs(20);
/// Kept connections, at most.
const KEEP_MAX: usize = 8;

/// A kept connection to `url`, if one is fresh enough.
fn take_kept(pool: &Pool, url: &str) -> Option<TcpStream> {
    let mut kept = lock(pool);
    kept.retain(|(_, _, since)| since.elapsed() < KEEP_IDLE);
    let at = kept.iter().rposition(|(kept_url, _, _)| kept_url == url)?;
    Some(kept.swap_remove(at).1)
}

fn keep(pool: &Pool, url: &str, stream: TcpStream) {
    let mut kept = lock(pool);
    if kept.len() < KEEP_MAX {
        kept.push((url.to_owned(), stream, std::time::Instant::now()));
    }
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    workers: usize,
    idle: usize,
}

/// A request to relay.
struct Job {
    id: Json,
    route: &'static str,
    body: Vec<u8>,
    timeout: Duration,
    /// The request as already sent (by the reading thread, so that starting the relay thread
    /// overlaps the gateway's work): the token file it used, and the connection or why none.
    sent: Option<(TokenFile, Result<Sent, PostError>)>,
}

/// The gateway's answer.
#[derive(Debug)]
struct Reply {
    status: u16,
    body: Json,
}

#[derive(Debug)]
enum PostError {
    /// No connection (the gateway is not there, or not there any more).
    Connect(String),
    /// Anything after connecting, or a token file the host will not use.
    Exchange(String),
    /// A kept connection the gateway had closed before the request reached it.
    Stale,
}

impl PostError {
    fn text(self) -> String {
        match self {
            Self::Connect(text) | Self::Exchange(text) => text,
            Self::Stale => "the gateway closed the connection".into(),
        }
    }
}

fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Host {
    fn new(token_file: PathBuf, sink: Sink) -> Arc<Self> {
        Arc::new(Self {
            token_file,
            config: Mutex::new(None),
            in_flight: AtomicUsize::new(0),
            sink,
            queue: Mutex::new(Queue::default()),
            queued: Condvar::new(),
            pool: Mutex::new(Vec::new()),
        })
    }

    /// Starts one more relay thread.
    fn spawn_worker(self: &Arc<Self>) -> io::Result<()> {
        lock(&self.queue).workers += 1;
        let host = Arc::clone(self);
        let started = std::thread::Builder::new()
            .name("fidelio-relay".into())
            .stack_size(RELAY_STACK)
            .spawn(move || host.work());
        if started.is_err() {
            let mut queue = lock(&self.queue);
            queue.workers = queue.workers.saturating_sub(1);
        }
        started.map(drop)
    }

    /// A relay thread: runs queued requests one after the other, for the host's lifetime.
    fn work(&self) {
        loop {
            let job = {
                let mut queue = lock(&self.queue);
                loop {
                    if let Some(job) = queue.jobs.pop_front() {
                        break job;
                    }
                    queue.idle += 1;
                    queue = self
                        .queued
                        .wait(queue)
                        .unwrap_or_else(PoisonError::into_inner);
                    queue.idle = queue.idle.saturating_sub(1);
                }
            };
            let answer = self.relay(job);
            // Nobody to tell when stdout is gone: the main loop ends on its own.
            let _ = send(&self.sink, &answer);
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Hands a request to a waiting relay thread, or to a new one when none waits (each request
    /// in flight holds its thread until the gateway answers, so none waits behind another).
    fn dispatch(self: &Arc<Self>, job: Job) -> Result<(), (Json, String)> {
        let spawn = {
            let mut queue = lock(&self.queue);
            queue.jobs.push_back(job);
            queue.idle < queue.jobs.len()
        };
        self.queued.notify_one();
        if spawn && let Err(spawn_error) = self.spawn_worker() {
            let mut queue = lock(&self.queue);
            if queue.workers == 0
                && let Some(job) = queue.jobs.pop_back()
            {
                return Err((
                    job.id,
                    format!("cannot start a relay thread: {spawn_error}"),
                ));
            }
            // Otherwise a busy thread takes it when it is done.
        }
        Ok(())
    }

    /// The answer to a message, or `None` when a relay thread will answer it.
    fn handle(self: &Arc<Self>, mut message: Json) -> Option<Json> {
        match message.get("type").and_then(Json::as_str) {
            Some("config") => Some(match self.config(true) {
                Ok(file) => json!({
                    "type": "config", "url": file.url, "token": file.token, "relay": true,
                }),
                Err(error) => json!({"type": "config", "error": self.no_gateway(&error)}),
            }),
            Some("ping") => Some(json!({"type": "pong", "pong": true})),
            Some("request") => self.request(&mut message),
            _ => Some(error(
                "unknown message (send {\"type\": \"config\"} or {\"type\": \"request\", …})",
            )),
        }
    }

    fn no_gateway(&self, error: &io::Error) -> String {
        format!(
            "no browser gateway: cannot read {} ({error}); start `fidelio serve --browser`",
            self.token_file.display()
        )
    }

    /// The gateway's URL and token: as last read, or read again (`fresh`).
    fn config(&self, fresh: bool) -> io::Result<TokenFile> {
        let mut cached = lock(&self.config);
        if !fresh && let Some(config) = cached.as_ref() {
            return Ok(config.clone());
        }
        let config = TokenFile::read(&self.token_file)?;
        *cached = Some(config.clone());
        Ok(config)
    }

    /// Checks a relay request and hands it to a relay thread; an answer when it is refused at
    /// once.
    fn request(self: &Arc<Self>, message: &mut Json) -> Option<Json> {
        let id = match message.get_mut("id").map(Json::take) {
            Some(Json::String(id)) if id.len() <= MAX_ID => Json::String(id),
            Some(Json::Number(id)) => Json::Number(id),
            _ => {
                return Some(error(&format!(
                    "a request needs an id: a string (at most {MAX_ID} bytes) or a number"
                )));
            }
        };
        let refuse = |text: String| Some(json!({"type": "response", "id": id, "error": text}));
        let requested = message.get("route").and_then(Json::as_str);
        let Some(route) = ROUTES.into_iter().find(|&route| Some(route) == requested) else {
            return refuse(format!("the route must be one of {}", ROUTES.join(", ")));
        };
        let body = match message.get_mut("body").map(Json::take) {
            None | Some(Json::Null) => json!({}),
            Some(body @ Json::Object(_)) => body,
            Some(_) => return refuse("the body must be a JSON object".into()),
        };
        let Ok(body) = serde_json::to_vec(&body) else {
            return refuse("the body cannot be serialized".into());
        };
        let timeout = message
            .get("timeoutMs")
            .and_then(Json::as_f64)
            .filter(|ms| ms.is_finite() && *ms > 0.0)
            .map_or(DEFAULT_ANSWER_TIMEOUT, |ms| {
                Duration::from_secs_f64((ms / 1000.0).min(MAX_ANSWER_TIMEOUT.as_secs_f64()))
                    .clamp(MIN_ANSWER_TIMEOUT, MAX_ANSWER_TIMEOUT)
            });
        if self.in_flight.fetch_add(1, Ordering::AcqRel) >= MAX_IN_FLIGHT {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return refuse(format!("{MAX_IN_FLIGHT} requests are already under way"));
        }
        // A small request is sent from here, so that the gateway starts on it while a relay
        // thread wakes up to read the answer. Connecting and writing to loopback do not wait for
        // the gateway's work (only a gateway too wedged to accept connections would hold this
        // thread, for up to CONNECT_TIMEOUT).
        let sent = if body.len() <= SEND_AHEAD {
            self.config(false).ok().map(|config| {
                let stream = open_request(&self.pool, &config, route, &body, timeout);
                (config, stream)
            })
        } else {
            None
        };
        let job = Job {
            id,
            route,
            body,
            timeout,
            sent,
        };
        match self.dispatch(job) {
            Ok(()) => None,
            Err((id, text)) => {
                self.in_flight.fetch_sub(1, Ordering::AcqRel);
                Some(json!({"type": "response", "id": id, "error": text}))
            }
        }
    }

    /// Runs one request against the gateway; asks the token file again (once) when the gateway
    /// refuses the connection or the token, as after a daemon restart.
    fn relay(&self, job: Job) -> Json {
        let answer = |outcome: Result<Reply, PostError>| match outcome {
            Ok(reply) => json!({
                "type": "response", "id": job.id, "status": reply.status, "body": reply.body,
            }),
            Err(failure) => json!({"type": "response", "id": job.id, "error": failure.text()}),
        };
        let (first, outcome) = match job.sent {
            Some((config, Ok(stream))) => {
                let outcome = match receive(&self.pool, stream, &config, job.timeout) {
                    // A kept connection the gateway had closed: the request never reached it.
                    Err(PostError::Stale) => {
                        post(&self.pool, &config, job.route, &job.body, job.timeout)
                    }
                    outcome => outcome,
                };
                (config, outcome)
            }
            Some((config, Err(failure))) => (config, Err(failure)),
            None => match self.config(false) {
                Ok(config) => {
                    let outcome = post(&self.pool, &config, job.route, &job.body, job.timeout);
                    (config, outcome)
                }
                Err(error) => return answer(Err(PostError::Connect(self.no_gateway(&error)))),
            },
        };
        let stale = match &outcome {
            Ok(reply) => reply.status == 401,
            Err(PostError::Connect(_)) => true,
            Err(PostError::Exchange(_) | PostError::Stale) => false,
        };
        if !stale {
            return answer(outcome);
        }
        match self.config(true) {
            Ok(fresh) if fresh != first => {
                answer(post(&self.pool, &fresh, job.route, &job.body, job.timeout))
            }
            _ => answer(outcome),
        }
    }
}

/// `http://HOST:PORT` (a loopback address) of a token file → the socket addresses and the Host
/// header.
fn gateway_address(url: &str) -> Result<(Vec<SocketAddr>, &str), PostError> {
    let not_ours = || {
        PostError::Exchange(format!(
            "the token file's URL {url:?} is not http://LOOPBACK:PORT"
        ))
    };
    let authority = url
        .strip_prefix("http://")
        .map(|rest| rest.trim_end_matches('/'))
        .filter(|authority| {
            !authority.is_empty() && authority.bytes().all(|b| b.is_ascii_graphic() && b != b'/')
        })
        .ok_or_else(not_ours)?;
    let addresses: Vec<SocketAddr> = authority
        .to_socket_addrs()
        .map_err(|_| not_ours())?
        .collect();
    if addresses.is_empty() || !addresses.iter().all(|a| a.ip().is_loopback()) {
        return Err(not_ours());
    }
    Ok((addresses, authority))
}

/// POSTs `body` to the gateway and reads its whole answer: plain HTTP/1.1 on a loopback
/// connection, kept for the next request when the gateway agrees (a kept one it closed
/// meanwhile is replaced once).
fn post(
    pool: &Pool,
    config: &TokenFile,
    route: &str,
    body: &[u8],
    timeout: Duration,
) -> Result<Reply, PostError> {
    match receive(
        pool,
        open_request(pool, config, route, body, timeout)?,
        config,
        timeout,
    ) {
        Err(PostError::Stale) => receive(
            pool,
            open_request(&Mutex::new(Vec::new()), config, route, body, timeout)?,
            config,
            timeout,
        ),
        outcome => outcome,
    }
}

/// A request written to a connection: the connection, and whether it was a kept one.
struct Sent {
    stream: TcpStream,
    reused: bool,
}

/// Connects to the gateway and sends the request; the answer is [`receive`]'s.
fn open_request(
    pool: &Pool,
    config: &TokenFile,
    route: &str,
    body: &[u8],
    timeout: Duration,
) -> Result<Sent, PostError> {
    let (addresses, authority) = gateway_address(&config.url)?;
    if config.token.is_empty() || !config.token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(PostError::Exchange(
            "the token file's token is not visible ASCII".into(),
        ));
    }
    let mut request = format!(
        "POST {route} HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: keep-alive\r\n\r\n",
        config.token,
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    if let Some(mut stream) = take_kept(pool, &config.url)
        && stream.set_read_timeout(Some(timeout)).is_ok()
        && stream.write_all(&request).is_ok()
    {
        return Ok(Sent {
            stream,
            reused: true,
        });
    }
    let mut connected = Err(PostError::Connect(format!(
        "cannot connect to the gateway at {}",
        config.url
    )));
    for address in &addresses {
        match TcpStream::connect_timeout(address, CONNECT_TIMEOUT) {
            Ok(stream) => {
                connected = Ok(stream);
                break;
            }
            Err(error) => {
                connected = Err(PostError::Connect(format!(
                    "cannot connect to the gateway at {} ({error}); is `fidelio serve --browser` \
                     running?",
                    config.url
                )));
            }
        }
    }
    let mut stream = connected?;
    let exchange = |what: &str, error: io::Error| {
        PostError::Exchange(format!("{what} the gateway at {}: {error}", config.url))
    };
    // One write, so Nagle never holds anything back; set anyway.
    let _ = stream.set_nodelay(true);
    stream
        .set_write_timeout(Some(WRITE_TIMEOUT))
        .and_then(|()| stream.set_read_timeout(Some(timeout)))
        .map_err(|error| exchange("setting up the connection to", error))?;
    stream
        .write_all(&request)
        .map_err(|error| exchange("sending to", error))?;
    Ok(Sent {
        stream,
        reused: false,
    })
}

/// Reads the gateway's answer on a connection [`open_request`] opened.
fn receive(
    pool: &Pool,
    sent: Sent,
    config: &TokenFile,
    timeout: Duration,
) -> Result<Reply, PostError> {
    let Sent { mut stream, reused } = sent;
    let mut started = false;
    match read_reply(&mut stream, &mut started) {
        Ok((reply, kept)) => {
            if kept {
                keep(pool, &config.url, stream);
            }
            return Ok(reply);
        }
        // Closed before a byte came (not a slow answer: that is a timeout, never resent).
        Err(error)
            if reused
                && !started
                && !matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
        {
            return Err(PostError::Stale);
        }
        Err(error) => Err(error),
    }
    .map_err(|error| match error.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => PostError::Exchange(format!(
            "the gateway at {} did not answer within {} s",
            config.url,
            timeout.as_secs()
        )),
        _ => PostError::Exchange(format!(
            "reading the answer of the gateway at {}: {error}",
            config.url
        )),
    })
}

fn invalid(text: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, text.to_owned())
}

/// Reads an HTTP/1.x answer with a JSON body (`Content-Length`, else up to the end).
/// Reads an HTTP/1.x answer; also whether the connection may carry the next request (the
/// gateway said keep-alive and sent nothing beyond the body). `started`: whether any byte came.
fn read_reply(stream: &mut impl Read, started: &mut bool) -> io::Result<(Reply, bool)> {
    let mut buffer: Vec<u8> = Vec::with_capacity(8 * 1024);
    let mut chunk = [0u8; 8 * 1024];
    let mut ended = false;
    let head_end = loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        if buffer.len() > MAX_HEAD {
            return Err(invalid("an answer head over 16 KiB"));
        }
        let read = stream.read(&mut chunk)?;
        if read == 0 {
            return Err(invalid("the connection closed before a whole answer"));
        }
        *started = true;
        buffer.extend_from_slice(chunk.get(..read).unwrap_or_default());
    };
    let head = buffer
        .get(..head_end)
        .and_then(|head| std::str::from_utf8(head).ok())
        .ok_or_else(|| invalid("an answer head that is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let mut status_line = lines.next().unwrap_or_default().split(' ');
    let status = match (status_line.next(), status_line.next()) {
        (Some("HTTP/1.1" | "HTTP/1.0"), Some(code)) if code.len() == 3 => code.parse::<u16>().ok(),
        _ => None,
    }
    .ok_or_else(|| invalid("not an HTTP/1.x answer"))?;
    let mut length = None;
    let mut keep_alive = false;
    for line in lines {
        if let Some((name, value)) = line.split_once(':')
            && name.trim().eq_ignore_ascii_case("connection")
        {
            keep_alive = value.trim().eq_ignore_ascii_case("keep-alive");
        }
        if let Some((name, value)) = line.split_once(':')
            && name.trim().eq_ignore_ascii_case("content-length")
        {
            length = Some(
                value
                    .trim()
                    .parse::<usize>()
                    .map_err(|_| invalid("a malformed Content-Length"))?,
            );
        }
    }
    if length.is_some_and(|length| length > MAX_MESSAGE) {
        return Err(invalid("an answer body over 1 MiB"));
    }
    let mut body = buffer
        .get(head_end.saturating_add(4)..)
        .unwrap_or_default()
        .to_vec();
    while !ended && length.is_none_or(|length| body.len() < length) {
        if body.len() > MAX_MESSAGE {
            return Err(invalid("an answer body over 1 MiB"));
        }
        let read = stream.read(&mut chunk)?;
        ended = read == 0;
        body.extend_from_slice(chunk.get(..read).unwrap_or_default());
    }
    let exact = length == Some(body.len()) && !ended;
    if let Some(length) = length {
        if body.len() < length {
            return Err(invalid("the answer is shorter than its Content-Length"));
        }
        body.truncate(length);
    }
    let body = serde_json::from_slice(&body).map_err(|_| {
        invalid(&format!(
            "HTTP {status} with a body that is not JSON: {}",
            String::from_utf8_lossy(body.get(..200).unwrap_or(&body))
        ))
    })?;
    Ok((Reply { status, body }, keep_alive && exact))
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        reason = "test code"
    )]
    use std::collections::HashMap;
    use std::net::TcpListener;
    use std::sync::mpsc;
    use std::time::Instant;

    use super::*;

    fn frame(message: &Json) -> Vec<u8> {
        let body = message.to_string();
        let mut out = u32::try_from(body.len()).unwrap().to_ne_bytes().to_vec();
        out.extend_from_slice(body.as_bytes());
        out
    }

    fn raw_frame(body: &[u8]) -> Vec<u8> {
        let mut out = u32::try_from(body.len()).unwrap().to_ne_bytes().to_vec();
        out.extend_from_slice(body);
        out
    }

    /// The frames written so far.
    fn frames(buffer: &Mutex<Vec<u8>>) -> Vec<Json> {
        let bytes = buffer.lock().unwrap().clone();
        let mut rest = bytes.as_slice();
        let mut out = Vec::new();
        while rest.len() >= 4 {
            let length = u32::from_ne_bytes(rest[..4].try_into().unwrap()) as usize;
            assert!(length <= MAX_MESSAGE, "an oversized frame");
            if rest.len() < 4 + length {
                break;
            }
            out.push(serde_json::from_slice(&rest[4..4 + length]).unwrap());
            rest = &rest[4 + length..];
        }
        out
    }

    /// Runs the host on `input`, then waits until `count` answers are out (relay threads finish
    /// after the input ends).
    fn host(input: &[u8], token_file: &Path, count: usize) -> (Result<()>, Vec<Json>) {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let sink: Sink = buffer.clone();
        let outcome = serve(&mut &input[..], sink, token_file.to_path_buf());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let answers = frames(&buffer);
            if answers.len() >= count || Instant::now() > deadline {
                return (outcome, answers);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn by_id(answers: &[Json], id: &str) -> Json {
        answers
            .iter()
            .find(|a| a["id"] == id)
            .unwrap_or_else(|| panic!("no answer for {id}: {answers:?}"))
            .clone()
    }

    /// A stand-in gateway: answers each connection on its own thread with `respond(route, auth
    /// header, body)` → (status, body text); reports every request on the returned channel.
    struct FakeGateway {
        url: String,
        seen: mpsc::Receiver<(String, String)>,
    }

    fn fake_gateway(
        respond: impl Fn(&str, &str, &Json) -> (u16, String) + Send + Sync + 'static,
    ) -> FakeGateway {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tell, seen) = mpsc::channel();
        let respond = Arc::new(respond);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let respond = Arc::clone(&respond);
                let tell = tell.clone();
                std::thread::spawn(move || {
                    let mut buffer = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let head_end = loop {
                        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                            break end;
                        }
                        let read = stream.read(&mut chunk).unwrap();
                        if read == 0 {
                            return;
                        }
                        buffer.extend_from_slice(&chunk[..read]);
                    };
                    let head = String::from_utf8(buffer[..head_end].to_vec()).unwrap();
                    let headers: HashMap<String, String> = head
                        .split("\r\n")
                        .skip(1)
                        .filter_map(|l| l.split_once(':'))
                        .map(|(n, v)| (n.to_ascii_lowercase(), v.trim().to_owned()))
                        .collect();
                    let route = head.split(' ').nth(1).unwrap().to_owned();
                    let length: usize = headers["content-length"].parse().unwrap();
                    let mut body = buffer[head_end + 4..].to_vec();
                    while body.len() < length {
                        let read = stream.read(&mut chunk).unwrap();
                        assert!(read > 0);
                        body.extend_from_slice(&chunk[..read]);
                    }
                    let body: Json = serde_json::from_slice(&body).unwrap();
                    let auth = headers.get("authorization").cloned().unwrap_or_default();
                    let _ = tell.send((route.clone(), auth.clone()));
                    let (status, text) = respond(&route, &auth, &body);
                    let answer = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{text}",
                        text.len()
                    );
                    let _ = stream.write_all(answer.as_bytes());
                });
            }
        });
        FakeGateway { url, seen }
    }

    fn token_file(dir: &Path, url: &str, token: &str) -> PathBuf {
        let file = dir.join("gateway.json");
        fidelio_daemon::browser::write_token_file(&file, url, token).unwrap();
        file
    }

    #[test]
    fn config_and_hostile_frames() {
        let dir = tempfile::tempdir().unwrap();
        let file = token_file(dir.path(), "http://127.0.0.1:9", "token-token-token");
        let mut input = Vec::new();
        input.extend(frame(&json!({"type": "config"})));
        input.extend(frame(&json!({"type": "what"})));
        input.extend(frame(&json!([1, 2])));
        input.extend(raw_frame(b"{x}"));
        input.extend(raw_frame(b""));
        // Over the limit: skipped, answered, and the next frame is read from its start.
        let huge = vec![b' '; MAX_MESSAGE + 1];
        input.extend(raw_frame(&huge));
        input.extend(frame(&json!({"type": "ping"})));
        // Relay requests the host refuses before any thread starts.
        input.extend(frame(&json!({"type": "request", "route": "/v1/get"})));
        input.extend(frame(
            &json!({"type": "request", "id": {"a": 1}, "route": "/v1/get"}),
        ));
        input.extend(frame(
            &json!({"type": "request", "id": "x".repeat(MAX_ID + 1)}),
        ));
        input.extend(frame(
            &json!({"type": "request", "id": "r1", "route": "/v1/control/authenticators"}),
        ));
        input.extend(frame(
            &json!({"type": "request", "id": 7, "route": "/v1/../v1/get"}),
        ));
        input.extend(frame(
            &json!({"type": "request", "id": "r3", "route": "/v1/get", "body": [1]}),
        ));
        input.extend(frame(
            &json!({"type": "request", "id": "r4", "route": "/v1/get", "body": "{}"}),
        ));
        // A length cut short by the end of input is the end, not an error.
        input.extend_from_slice(&[1, 0]);
        let (outcome, answers) = host(&input, &file, 14);
        outcome.unwrap();
        assert_eq!(answers.len(), 14, "{answers:?}");
        assert_eq!(
            answers[0],
            json!({"type": "config", "url": "http://127.0.0.1:9", "token": "token-token-token", "relay": true})
        );
        for answer in &answers[1..6] {
            assert_eq!(answer["type"], "error", "{answer}");
            assert!(answer["error"].is_string());
        }
        assert!(answers[5]["error"].as_str().unwrap().contains("skipped"));
        assert_eq!(answers[6]["type"], "pong");
        for answer in &answers[7..10] {
            assert_eq!(answer["type"], "error", "{answer}");
            assert!(answer["error"].as_str().unwrap().contains("id"));
        }
        for (answer, id) in
            answers[10..]
                .iter()
                .zip([json!("r1"), json!(7), json!("r3"), json!("r4")])
        {
            assert_eq!(answer["type"], "response");
            assert_eq!(answer["id"], id);
            assert!(answer["error"].is_string(), "{answer}");
            assert!(answer.get("status").is_none());
        }

        // The config of a missing token file is an error answer that says what to do.
        let (outcome, answers) = host(
            &frame(&json!({"type": "config"})),
            &dir.path().join("nope"),
            1,
        );
        outcome.unwrap();
        assert!(
            answers[0]["error"]
                .as_str()
                .unwrap()
                .contains("fidelio serve --browser")
        );

        // Frames cut short end the host with an error, never a panic.
        let mut cut = 10u32.to_ne_bytes().to_vec();
        cut.extend_from_slice(b"{}");
        assert!(host(&cut, &file, 0).0.is_err());
        let mut cut = u32::MAX.to_ne_bytes().to_vec();
        cut.extend_from_slice(b"{}");
        assert!(host(&cut, &file, 0).0.is_err());
    }

    #[test]
    fn kept_connections_are_reused_and_a_closed_one_is_replaced() {
        // A gateway that keeps each connection for two requests, then closes it unasked.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&accepted);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                counted.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || {
                    for _ in 0..2 {
                        let mut buffer = Vec::new();
                        let mut chunk = [0u8; 4096];
                        while !buffer.windows(4).any(|w| w == b"\r\n\r\n") {
                            let read = stream.read(&mut chunk).unwrap_or(0);
                            if read == 0 {
                                return;
                            }
                            buffer.extend_from_slice(&chunk[..read]);
                        }
                        let text = r#"{"ok":true}"#;
                        let answer = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: keep-alive\r\n\r\n{text}",
                            text.len()
                        );
                        stream.write_all(answer.as_bytes()).unwrap();
                    }
                });
            }
        });
        let pool: Pool = Mutex::new(Vec::new());
        let config = TokenFile {
            url,
            token: "secret-token-0123456789".into(),
        };
        for round in 0..5 {
            let reply = post(&pool, &config, "/v1/isUvpaa", b"{}", Duration::from_secs(5))
                .unwrap_or_else(|error| panic!("round {round}: {}", error.text()));
            assert_eq!(reply.body, json!({"ok": true}));
            // Give the closing side time to close before the next round.
            std::thread::sleep(Duration::from_millis(20));
        }
        // Two requests per connection: 5 requests took 3 connections, not 5 — and the
        // requests that met a connection closed meanwhile were sent again on a new one.
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn requests_are_relayed_with_the_token() {
        let gateway = fake_gateway(|route, auth, body| {
            (
                200,
                json!({"ok": {"route": route, "auth": auth, "body": body}}).to_string(),
            )
        });
        let dir = tempfile::tempdir().unwrap();
        let file = token_file(dir.path(), &gateway.url, "secret-token-0123456789");
        let mut input = Vec::new();
        input.extend(frame(
            &json!({"type": "request", "id": "c", "route": "/v1/create",
            "body": {"origin": "https://a.localhost", "options": {"x": "ü"}}, "timeoutMs": 20000}),
        ));
        input.extend(frame(
            &json!({"type": "request", "id": 2, "route": "/v1/isUvpaa"}),
        ));
        let (outcome, answers) = host(&input, &file, 2);
        outcome.unwrap();
        let create = by_id(&answers, "c");
        assert_eq!(create["type"], "response");
        assert_eq!(create["status"], 200);
        assert_eq!(create["body"]["ok"]["route"], "/v1/create");
        assert_eq!(
            create["body"]["ok"]["auth"],
            "Bearer secret-token-0123456789"
        );
        assert_eq!(create["body"]["ok"]["body"]["options"]["x"], "ü");
        // A body too large to be sent ahead by the reading thread goes from the relay thread.
        let big = "y".repeat(SEND_AHEAD + 1);
        let (outcome, answers) = host(
            &frame(
                &json!({"type": "request", "id": "big", "route": "/v1/get", "body": {"big": big}}),
            ),
            &file,
            1,
        );
        outcome.unwrap();
        assert_eq!(answers[0]["body"]["ok"]["body"]["big"], big);
        let (outcome, answers) = host(&input, &file, 2);
        outcome.unwrap();
        let uvpaa = answers.iter().find(|a| a["id"] == 2).unwrap();
        assert_eq!(uvpaa["body"]["ok"]["body"], json!({}));
        assert_eq!(uvpaa["body"]["ok"]["route"], "/v1/isUvpaa");
    }

    #[test]
    fn a_pending_ceremony_does_not_hold_up_its_cancel() {
        // The gateway holds /v1/create until /v1/cancel arrived (or 10 s passed).
        let (cancelled, wait) = mpsc::channel::<()>();
        let cancelled = Mutex::new(cancelled);
        let wait = Mutex::new(wait);
        let gateway = fake_gateway(move |route, _, _| match route {
            "/v1/cancel" => {
                cancelled.lock().unwrap().send(()).unwrap();
                (200, r#"{"ok":true}"#.into())
            }
            _ => match wait.lock().unwrap().recv_timeout(Duration::from_secs(10)) {
                Ok(()) => (
                    200,
                    r#"{"error":{"name":"AbortError","message":"cancelled"}}"#.into(),
                ),
                Err(_) => (200, r#"{"ok":"never cancelled"}"#.into()),
            },
        });
        let dir = tempfile::tempdir().unwrap();
        let file = token_file(dir.path(), &gateway.url, "secret-token-0123456789");
        let mut input = Vec::new();
        input.extend(frame(
            &json!({"type": "request", "id": "create", "route": "/v1/create",
            "body": {"requestId": "r"}}),
        ));
        input.extend(frame(
            &json!({"type": "request", "id": "cancel", "route": "/v1/cancel",
            "body": {"requestId": "r"}}),
        ));
        let (outcome, answers) = host(&input, &file, 2);
        outcome.unwrap();
        assert_eq!(answers.len(), 2, "{answers:?}");
        // The cancel reached the gateway while the ceremony was pending, and ended it.
        assert_eq!(by_id(&answers, "cancel")["body"], json!({"ok": true}));
        assert_eq!(
            by_id(&answers, "create")["body"]["error"]["name"],
            "AbortError"
        );
    }

    #[test]
    fn many_requests_at_once_each_get_their_answer() {
        let gateway = fake_gateway(|_, _, body| {
            std::thread::sleep(Duration::from_millis(20));
            (200, json!({"ok": body["n"]}).to_string())
        });
        let dir = tempfile::tempdir().unwrap();
        let file = token_file(dir.path(), &gateway.url, "secret-token-0123456789");
        let mut input = Vec::new();
        for n in 0..40 {
            input.extend(frame(&json!({"type": "request", "id": format!("r{n}"),
                "route": "/v1/get", "body": {"n": n}})));
        }
        let (outcome, answers) = host(&input, &file, 40);
        outcome.unwrap();
        assert_eq!(answers.len(), 40);
        for n in 0..40 {
            assert_eq!(by_id(&answers, &format!("r{n}"))["body"]["ok"], n);
        }
    }

    #[test]
    fn gateway_down_or_missing_is_an_error_answer() {
        let dir = tempfile::tempdir().unwrap();
        // A port nobody listens on.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let file = token_file(
            dir.path(),
            &format!("http://127.0.0.1:{port}"),
            "secret-token-0123456789",
        );
        let request = frame(&json!({"type": "request", "id": "g", "route": "/v1/get", "body": {}}));
        let (outcome, answers) = host(&request, &file, 1);
        outcome.unwrap();
        assert_eq!(answers[0]["id"], "g");
        assert!(
            answers[0]["error"]
                .as_str()
                .unwrap()
                .contains("cannot connect"),
            "{answers:?}"
        );

        // No token file at all.
        let (_, answers) = host(&request, &dir.path().join("nope"), 1);
        assert!(
            answers[0]["error"]
                .as_str()
                .unwrap()
                .contains("fidelio serve --browser")
        );

        // A token file that points away from loopback is not followed.
        let file = token_file(dir.path(), "http://192.0.2.1:80", "secret-token-0123456789");
        let (_, answers) = host(&request, &file, 1);
        assert!(
            answers[0]["error"].as_str().unwrap().contains("LOOPBACK"),
            "{answers:?}"
        );
        let file = token_file(
            dir.path(),
            "https://127.0.0.1:80",
            "secret-token-0123456789",
        );
        let (_, answers) = host(&request, &file, 1);
        assert!(
            answers[0]["error"].as_str().unwrap().contains("LOOPBACK"),
            "{answers:?}"
        );

        // A gateway that answers garbage, or nothing.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for (n, stream) in listener.incoming().enumerate() {
                let mut stream = stream.unwrap();
                let mut scratch = [0u8; 1024];
                let _ = stream.read(&mut scratch);
                let _ = match n {
                    0 => stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"),
                    1 => stream.write_all(b"SMTP ready\r\n\r\n"),
                    2 => stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n{}"),
                    _ => Ok(()),
                };
            }
        });
        let file = token_file(dir.path(), &url, "secret-token-0123456789");
        for expected in ["not JSON", "not an HTTP", "over 1 MiB", "closed before"] {
            let (_, answers) = host(&request, &file, 1);
            assert!(
                answers[0]["error"].as_str().unwrap().contains(expected),
                "{expected}: {answers:?}"
            );
        }
    }

    #[test]
    fn a_restarted_daemon_is_found_through_the_token_file() {
        let old = fake_gateway(|_, auth, _| {
            if auth == "Bearer old-token-0123456789" {
                (200, r#"{"ok":"old"}"#.into())
            } else {
                (
                    401,
                    r#"{"error":{"name":"NotAllowedError","message":"token"}}"#.into(),
                )
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let file = token_file(dir.path(), &old.url, "old-token-0123456789");
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let sink: Sink = buffer.clone();
        let host = Host::new(file.clone(), sink);
        let job = |id: &str| Job {
            id: json!(id),
            route: "/v1/get",
            body: b"{}".to_vec(),
            timeout: Duration::from_secs(10),
            sent: None,
        };
        assert_eq!(host.relay(job("1"))["body"]["ok"], "old");
        // The token file is read once, not per request.
        std::fs::remove_file(&file).unwrap();
        assert_eq!(host.relay(job("2"))["body"]["ok"], "old");
        assert_eq!(old.seen.try_iter().count(), 2);
        // A new address: the refused connection makes the host read the file again.
        let new = fake_gateway(|_, auth, _| {
            assert_eq!(auth, "Bearer new-token-0123456789");
            (200, r#"{"ok":"new"}"#.into())
        });
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        token_file(
            dir.path(),
            &format!("http://127.0.0.1:{port}"),
            "dead-token-0123456789",
        );
        host.config(true).unwrap();
        token_file(dir.path(), &new.url, "new-token-0123456789");
        assert_eq!(host.relay(job("3"))["body"]["ok"], "new");
        assert_eq!(new.seen.try_iter().count(), 1);
        // Same address, new token (`serve --browser ADDR` restarted): the 401 makes the host read
        // the file again, and the request is sent again with the new token.
        let rotating = fake_gateway(|_, auth, _| {
            if auth == "Bearer second-token-0123456789" {
                (200, r#"{"ok":"second"}"#.into())
            } else {
                (
                    401,
                    r#"{"error":{"name":"NotAllowedError","message":"token"}}"#.into(),
                )
            }
        });
        token_file(dir.path(), &rotating.url, "first-token-0123456789");
        host.config(true).unwrap();
        token_file(dir.path(), &rotating.url, "second-token-0123456789");
        assert_eq!(host.relay(job("4"))["body"]["ok"], "second");
        assert_eq!(rotating.seen.try_iter().count(), 2);
        assert!(frames(&buffer).is_empty());
    }

    #[test]
    fn oversized_answers_become_errors() {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let sink: Sink = buffer.clone();
        let big = "x".repeat(MAX_MESSAGE);
        send(
            &sink,
            &json!({"type": "response", "id": "big", "status": 200, "body": big}),
        )
        .unwrap();
        let answers = frames(&buffer);
        assert_eq!(answers[0]["id"], "big");
        assert_eq!(answers[0]["type"], "response");
        assert!(answers[0]["error"].as_str().unwrap().contains("bytes"));
    }
}
