// Fidelio WebAuthn proxy (lane A): every navigator.credentials.create()/get() of this browser
// profile goes to a local `fidelio serve --browser` gateway, whose WebAuthn client runs the
// ceremony against the daemon's virtual authenticator.
//
// Chromium has already checked the RP ID against the caller's origin when a request reaches us
// (chrome.webAuthenticationProxy); the caller's true origin is in the options'
// `extensions.remoteDesktopClientOverride`. Every request is completed — with the gateway's
// answer, or with an error — because a request this extension leaves open leaves the page's
// promise pending forever.
//
// How requests reach the gateway:
// * the native-messaging host `dev.fidelio.gateway` (installed by `fidelio browser install`),
//   over the port this worker keeps open: each request is a `{type: "request", id, route, body}`
//   message, the host POSTs it to the gateway (with the token, which it reads from the daemon's
//   token file and reads again when the gateway refuses it) and answers `{type: "response", id,
//   status, body}`. A port round trip costs well under a millisecond; a fetch() from this worker
//   to the gateway costs several. Requests are matched by id, so a pending ceremony never holds
//   up the cancel that ends it. The open port also keeps this service worker alive.
// * the fallback, fetch() to the gateway: with a `config.json` next to this file (written by
//   `fidelio browser extension --out DIR --bake`, no native host needed), or with a native host
//   too old to relay (it only tells the URL and token; asked again whenever the gateway refuses
//   the connection or the token, so a restarted daemon's new token is picked up).
// If the port closes while requests are under way (the host exited), each of them is completed
// with NotAllowedError; the next request starts the host again.

const NATIVE_HOST = 'dev.fidelio.gateway';
const NATIVE_ANSWER_MS = 5_000;
// How long after its own deadline a relayed request may still be answered by the host.
const RELAY_GRACE_MS = 5_000;
// The host reads messages up to 1 MiB; a body longer than this (in UTF-16 units, ≤ 3 bytes of
// UTF-8 each) goes by fetch() (where the gateway's own 1 MiB limit applies).
const MAX_RELAY_CHARS = 300_000;
// WebAuthn's lifetime timer as the gateway applies it, plus time for the gateway to answer.
const DEFAULT_LIFETIME_MS = 300_000;
const MIN_LIFETIME_MS = 10_000;
const MAX_LIFETIME_MS = 600_000;
const ANSWER_GRACE_MS = 15_000;
const KEEPALIVE_MS = 20_000;

const proxy = chrome.webAuthenticationProxy;

function log(...args) {
  console.log('[fidelio]', ...args);
}

// --- Where the gateway is -------------------------------------------------------------------

let bakedConfig; // undefined: not looked up yet; null: there is none
// The open port to the native host: {port, pending: Map(id → settle), waiters: [settle]} —
// `pending` are relayed requests, `waiters` config questions.
let native = null;
let relaySerial = 0;

// Counters for tests and the benchmark: requests sent each way.
self.fidelioStats = {relay: 0, fetch: 0};
// Testing knobs for the benchmark: `fidelioForceFetch` true sends requests with fetch() even
// when the native host could relay them; `fidelioObserver(transport, path, ms)`, when set, is
// told how long each request took here.
self.fidelioForceFetch = false;
self.fidelioObserver = null;

async function baked() {
  if (bakedConfig === undefined) {
    try {
      const response = await fetch(chrome.runtime.getURL('config.json'), {cache: 'no-store'});
      const config = response.ok ? await response.json() : null;
      bakedConfig = config && typeof config.url === 'string' && typeof config.token === 'string'
        ? config : null;
    } catch {
      bakedConfig = null;
    }
  }
  return bakedConfig;
}

function connectNative() {
  if (native) return native;
  const link = {port: chrome.runtime.connectNative(NATIVE_HOST), pending: new Map(), waiters: []};
  link.port.onMessage.addListener((message) => {
    if (message?.type === 'response') {
      const settle = link.pending.get(message.id);
      if (settle) {
        link.pending.delete(message.id);
        settle({message});
      }
      return;
    }
    // A config answer (a host of any version), or an error about a message it could not read.
    const waiters = link.waiters;
    link.waiters = [];
    for (const waiter of waiters) waiter({message});
  });
  link.port.onDisconnect.addListener(() => {
    const reason = chrome.runtime.lastError?.message ?? 'the native host exited';
    if (native === link) {
      native = null;
      cachedConfig = null;
    }
    const error = new Error(`native host ${NATIVE_HOST}: ${reason}`);
    const settles = [...link.pending.values(), ...link.waiters];
    link.pending.clear();
    link.waiters = [];
    for (const settle of settles) settle({error});
  });
  native = link;
  return link;
}

function askNative() {
  return new Promise((resolve, reject) => {
    let done = false;
    const finish = ({message, error}) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (error) reject(error);
      else resolve(message);
    };
    const timer = setTimeout(
      () => finish({error: new Error(`native host ${NATIVE_HOST} did not answer`)}),
      NATIVE_ANSWER_MS);
    try {
      const link = connectNative();
      link.waiters.push(finish);
      link.port.postMessage({type: 'config'});
    } catch (error) {
      finish({error});
    }
  });
}

let cachedConfig = null;

// The gateway's URL and token: the baked config, else the native host's answer (cached with the
// port it came from; asked again when the cached one fails, e.g. after the daemon restarted with
// a new token). `relay`: the host carries requests itself.
async function gatewayConfig({fresh = false} = {}) {
  const fixed = await baked();
  if (fixed) return fixed;
  if (cachedConfig && !fresh) return cachedConfig;
  cachedConfig = null;
  const answer = await askNative();
  if (answer && typeof answer.error === 'string') throw new Error(answer.error);
  if (!answer || typeof answer.url !== 'string' || typeof answer.token !== 'string') {
    throw new Error(`native host ${NATIVE_HOST} sent no gateway URL and token`);
  }
  cachedConfig = {url: answer.url, token: answer.token, relay: answer.relay === true && native !== null};
  return cachedConfig;
}

// One request over the native port; resolves with the gateway's JSON answer.
function relay(link, route, body, timeoutMs) {
  return new Promise((resolve, reject) => {
    relaySerial += 1;
    const id = relaySerial;
    // The host gives up after timeoutMs (closing its connection ends the ceremony, as fetch's
    // abort did); this timer only guards against a host that never answers.
    const timer = setTimeout(() => {
      if (link.pending.delete(id)) reject(new Error(`native host ${NATIVE_HOST} did not answer within ${timeoutMs} ms`));
    }, timeoutMs + RELAY_GRACE_MS);
    link.pending.set(id, ({message, error}) => {
      clearTimeout(timer);
      if (error) reject(error);
      else if (typeof message.error === 'string') reject(new Error(`native host ${NATIVE_HOST}: ${message.error}`));
      else resolve(message.body);
    });
    try {
      link.port.postMessage({type: 'request', id, route, body, timeoutMs});
    } catch (error) {
      link.pending.delete(id);
      clearTimeout(timer);
      reject(error);
    }
  });
}

async function postTo(config, path, body, timeoutMs) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  try {
    const response = await fetch(new URL(path, config.url), {
      method: 'POST',
      headers: {'Content-Type': 'application/json', 'Authorization': `Bearer ${config.token}`},
      body: JSON.stringify(body),
      signal: controller.signal,
      cache: 'no-store',
    });
    const text = await response.text();
    try {
      return {status: response.status, answer: JSON.parse(text)};
    } catch {
      throw new Error(`the gateway answered HTTP ${response.status}: ${text.slice(0, 200)}`);
    }
  } finally {
    clearTimeout(timer);
  }
}

// Sends a request to the gateway and resolves with its JSON answer: over the native port when
// the host relays (and the request fits in a native message: `size` is the body's length as
// JSON, or a bound of it), else with fetch(), where a refused connection or a 401 with a cached
// config asks the native host again and retries once.
async function post(path, body, timeoutMs, size = 0) {
  const started = performance.now();
  let transport = null;
  try {
    const config = await gatewayConfig();
    if (config.relay && native && !self.fidelioForceFetch && size <= MAX_RELAY_CHARS) {
      transport = 'relay';
      self.fidelioStats.relay += 1;
      return await relay(native, path, body, timeoutMs);
    }
    transport = 'fetch';
    self.fidelioStats.fetch += 1;
    return await fetchPost(config, path, body, timeoutMs);
  } finally {
    // The benchmark's probe: how long each request took in this worker.
    if (self.fidelioObserver) {
      try {
        self.fidelioObserver(transport, path, performance.now() - started);
      } catch (error) {
        log('fidelioObserver:', error?.message ?? error);
      }
    }
  }
}

async function fetchPost(config, path, body, timeoutMs) {
  const cached = config === cachedConfig;
  let outcome;
  try {
    outcome = await postTo(config, path, body, timeoutMs);
  } catch (error) {
    if (!cached || error?.name === 'AbortError') throw error;
    outcome = null;
  }
  if (outcome && (outcome.status !== 401 || !cached)) return outcome.answer;
  return (await postTo(await gatewayConfig({fresh: true}), path, body, timeoutMs)).answer;
}

// --- Requests -------------------------------------------------------------------------------

function lifetimeMs(options) {
  const timeout = options?.timeout;
  if (typeof timeout !== 'number' || !Number.isFinite(timeout)) return DEFAULT_LIFETIME_MS;
  return Math.min(Math.max(timeout, MIN_LIFETIME_MS), MAX_LIFETIME_MS);
}

// The caller: Chromium's override extension input, else members of the request itself.
function callerOf(options) {
  const override = options?.extensions?.remoteDesktopClientOverride;
  const source = override && typeof override.origin === 'string' ? override : options;
  if (!source || typeof source.origin !== 'string') return null;
  const caller = {origin: source.origin, sameOriginWithAncestors: source.sameOriginWithAncestors !== false};
  if (typeof source.topOrigin === 'string') caller.topOrigin = source.topOrigin;
  return caller;
}

function failure(name, message) {
  return {name: typeof name === 'string' && name ? name : 'NotAllowedError', message: `fidelio: ${message}`};
}

// complete*Request, and if Chromium refuses that answer (its parser is strict; an error name it
// does not know), complete again with NotAllowedError so the page never waits forever.
async function complete(kind, details) {
  const finish = kind === 'create' ? proxy.completeCreateRequest : proxy.completeGetRequest;
  try {
    await finish(details);
    return;
  } catch (error) {
    log(`complete${kind === 'create' ? 'Create' : 'Get'}Request(${details.requestId}) refused:`, error?.message ?? error);
    if (details.error?.name === 'NotAllowedError') return;
    const why = details.error
      ? `${details.error.name}: ${details.error.message}`
      : `Chromium refused the authenticator's response (${error?.message ?? error})`;
    try {
      await finish({requestId: details.requestId, error: failure('NotAllowedError', why)});
    } catch (again) {
      // The request is gone (cancelled by the page, timed out): nothing is waiting.
      log('and the error too:', again?.message ?? again);
    }
  }
}

async function ceremony(kind, request) {
  const {requestId, requestDetailsJson} = request;
  let details;
  try {
    const options = JSON.parse(requestDetailsJson);
    const caller = callerOf(options);
    if (!caller) {
      details = {requestId, error: failure('NotAllowedError', 'the request does not say which origin made it')};
    } else {
      // The body's size as JSON: the options' and at most a few hundred characters more.
      const size = requestDetailsJson.length + 1024;
      const answer = await post(`/v1/${kind}`, {requestId, ...caller, options}, lifetimeMs(options) + ANSWER_GRACE_MS, size);
      if (answer && answer.ok !== undefined && answer.ok !== null) {
        details = {requestId, responseJson: JSON.stringify(answer.ok)};
      } else {
        const error = answer?.error ?? {};
        details = {requestId, error: {name: error.name || 'NotAllowedError', message: String(error.message ?? 'the gateway failed')}};
      }
    }
  } catch (error) {
    details = {requestId, error: failure('NotAllowedError', error?.message ?? String(error))};
  }
  await complete(kind, details);
}

async function isUvpaa({requestId}) {
  let answer = false;
  try {
    answer = (await post('/v1/isUvpaa', {}, MIN_LIFETIME_MS + ANSWER_GRACE_MS))?.ok === true;
  } catch (error) {
    log('isUvpaa:', error?.message ?? error);
  }
  try {
    await proxy.completeIsUvpaaRequest({requestId, isUvpaa: answer});
  } catch (error) {
    log('completeIsUvpaaRequest:', error?.message ?? error);
  }
}

async function cancelled(requestId) {
  // The page aborted (or Chromium timed the request out): stop the ceremony on the device.
  try {
    await post('/v1/cancel', {requestId}, MIN_LIFETIME_MS);
  } catch (error) {
    log('cancel:', error?.message ?? error);
  }
}

// Listeners are registered synchronously, so that events wake a stopped worker.
proxy.onCreateRequest.addListener((request) => { ceremony('create', request); });
proxy.onGetRequest.addListener((request) => { ceremony('get', request); });
proxy.onIsUvpaaRequest.addListener((request) => { isUvpaa(request); });
proxy.onRequestCanceled.addListener((requestId) => { cancelled(requestId); });

// --- Start ----------------------------------------------------------------------------------

let attachError = null;

// Resolves once the proxy is attached and the gateway's whereabouts were looked up; tests await
// it (`self.fidelioReady`) before their first ceremony. `transport`: 'relay' (the native port)
// or 'fetch'.
self.fidelioReady = (async () => {
  attachError = (await proxy.attach()) ?? null;
  if (attachError) log('attach:', attachError);
  let gateway = null;
  try {
    gateway = (await gatewayConfig()).url;
  } catch (error) {
    log('the gateway is not known yet:', error?.message ?? error);
  }
  const isBaked = (await baked()) !== null;
  const transport = gateway === null ? null : cachedConfig?.relay ? 'relay' : 'fetch';
  return {attached: attachError === null, attachError, gateway, baked: isBaked, transport};
})();

// An extension API call every 20 s keeps the service worker from being stopped while idle (the
// native port does too, when there is one).
setInterval(() => { chrome.runtime.getPlatformInfo(() => {}); }, KEEPALIVE_MS);
