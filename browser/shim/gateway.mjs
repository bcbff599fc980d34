// The Node side of lane B, shared by the embedders (playwright.mjs, puppeteer.mjs): finds the
// `fidelio serve --browser` gateway (URL + token, given or from its token file), and turns the
// shim's messages from a frame into gateway requests with the caller the embedder vouches for.
//
// The shim (fidelio-shim.js) sends {op, doc, id, options?, opaque?, mediation?} as JSON text; the embedder
// calls `host.handle(frameKey, text, caller)` with a key for the calling frame and a function
// that tells that frame's true origin, top-level origin and whether it is same-origin with all
// its ancestors. The answer is the gateway's JSON text ({"ok": …} or {"error": {name, message}}),
// which the embedder hands back to the shim.

import {randomUUID} from 'node:crypto';
import {readFileSync} from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import {fileURLToPath} from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));

/** The shim's source: one function expression, `(source)({transport})`. */
export const shimSource = readFileSync(path.join(here, 'fidelio-shim.js'), 'utf8').trim().replace(/;$/, '');

// WebAuthn's lifetime clamp (as the shim and the gateway apply it) plus time for the answer.
const DEFAULT_LIFETIME_MS = 300_000;
const MIN_LIFETIME_MS = 10_000;
const MAX_LIFETIME_MS = 600_000;
const ANSWER_GRACE_MS = 15_000;
const SHORT_REQUEST_MS = 30_000;
const MAX_MESSAGE = 1 << 20;
// Kept connections to the gateway, at most.
const MAX_IDLE = 8;
// A conditional get() waits for an account to be picked, with no lifetime timer; the longest
// timer Node keeps (about 24.8 days) stands in for "until the page aborts".
const CONDITIONAL_WAIT_MS = 2 ** 31 - 1;

/** Where `fidelio serve --browser` writes its URL and token by default. */
export function defaultTokenFile() {
  const env = (name) => (process.env[name] ? process.env[name] : null);
  const base = env('XDG_RUNTIME_DIR') ?? env('XDG_STATE_HOME')
    ?? (env('HOME') ? path.join(env('HOME'), '.local/state') : os.homedir() ? path.join(os.homedir(), '.local/state') : '.');
  return path.join(base, 'fidelio', 'browser-gateway.json');
}

function answerText(name, message) {
  return JSON.stringify({error: {name, message: `fidelio: ${message}`}});
}

function lifetimeMs(options) {
  const timeout = options?.timeout;
  if (typeof timeout !== 'number' || !Number.isFinite(timeout)) return DEFAULT_LIFETIME_MS;
  return Math.min(Math.max(timeout, MIN_LIFETIME_MS), MAX_LIFETIME_MS);
}

/**
 * The gateway's HTTP client. `{url, token}`, or `{tokenFile}` (default: the daemon's default
 * token file), read again when the gateway refuses the connection or the token — so a
 * restarted daemon is found again.
 *
 * Requests are plain HTTP/1.1 on kept-alive connections (`Connection: keep-alive`, which the
 * gateway honours): no connect and accept per ceremony, and 0.2–0.3 ms less than node:http.
 */
export class GatewayClient {
  constructor({url, token, tokenFile} = {}) {
    if ((url === undefined) !== (token === undefined)) throw new TypeError('give both url and token, or neither');
    this.fixed = url !== undefined ? {url: String(url), token: String(token)} : null;
    this.tokenFile = this.fixed ? null : (tokenFile ?? defaultTokenFile());
    this.cached = null;
    this.idle = []; // kept connections: {key, socket, drop}
  }

  config({fresh = false} = {}) {
    if (this.fixed) return this.fixed;
    if (this.cached && !fresh) return this.cached;
    let written;
    try {
      written = JSON.parse(readFileSync(this.tokenFile, 'utf8'));
    } catch (error) {
      throw new Error(`cannot read the gateway's token file ${this.tokenFile} (is \`fidelio serve --browser\` running?): ${error.message}`);
    }
    if (typeof written?.url !== 'string' || typeof written?.token !== 'string') {
      throw new Error(`${this.tokenFile} has no url and token`);
    }
    this.cached = {url: written.url, token: written.token};
    return this.cached;
  }

  /** The gateway's base URL (reads the token file if needed). */
  get url() {
    return this.config().url;
  }

  // One request; resolves with {status, text}. The connection is kept (`Connection:
  // keep-alive`) and reused by the next request when the gateway agrees and the request ended
  // normally; a request that is aborted or times out closes its connection, which the gateway
  // takes as a cancel. A kept connection the gateway closed meanwhile is retried once, afresh.
  request(config, route, body, {timeoutMs, signal}) {
    const url = new URL(route, config.url);
    const address = {host: url.hostname.replace(/^\[|\]$/g, ''), port: Number(url.port || 80)};
    const payload = Buffer.from(JSON.stringify(body));
    const head = Buffer.from(`POST ${url.pathname} HTTP/1.1\r\nHost: ${url.host}\r\n`
      + `Authorization: Bearer ${config.token}\r\nContent-Type: application/json\r\n`
      + `Content-Length: ${payload.length}\r\nConnection: keep-alive\r\n\r\n`);
    const key = `${address.host}:${address.port}`;
    const once = (reused) => new Promise((resolve, reject) => {
      const socket = reused ?? net.connect({host: address.host, port: address.port, noDelay: true});
      let buffered = Buffer.alloc(0);
      let settled = false;
      let received = false;
      const detach = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        socket.removeListener('data', onData);
        socket.removeListener('error', onError);
        socket.removeListener('close', onClose);
        socket.removeListener('end', onEnd);
      };
      const finish = (error, value, keep = false) => {
        if (settled) return;
        settled = true;
        detach();
        if (keep && this.idle.length < MAX_IDLE) {
          this.park(key, socket);
        } else {
          socket.destroy();
        }
        if (error) {
          reject(Object.assign(error, {reused: Boolean(reused), received}));
        } else {
          resolve(value);
        }
      };
      const onAbort = () => finish(Object.assign(new Error('aborted'), {name: 'AbortError'}));
      const onData = (chunk) => {
        received = true;
        buffered = Buffer.concat([buffered, chunk]);
        const split = buffered.indexOf('\r\n\r\n');
        if (split < 0) return;
        const headText = buffered.subarray(0, split).toString('latin1');
        const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(headText)?.[1]);
        const length = Number(/\r\ncontent-length:\s*(\d+)/i.exec(headText)?.[1]);
        if (!status || !Number.isSafeInteger(length)) return finish(new Error('the gateway sent no HTTP answer'));
        if (buffered.length < split + 4 + length) return;
        const keep = /\r\nconnection:\s*keep-alive/i.test(headText) && buffered.length === split + 4 + length;
        finish(null, {status, text: buffered.subarray(split + 4, split + 4 + length).toString('utf8')}, keep);
      };
      const onError = (error) => finish(error);
      const onEnd = () => finish(Object.assign(new Error('the gateway closed the connection'), {code: 'ECONNRESET'}));
      const onClose = onEnd;
      if (signal?.aborted) return onAbort();
      signal?.addEventListener('abort', onAbort, {once: true});
      const timer = setTimeout(() => finish(new Error(`no answer from the gateway within ${timeoutMs} ms`)), timeoutMs);
      socket.on('data', onData);
      socket.on('error', onError);
      socket.on('end', onEnd);
      socket.on('close', onClose);
      // Written at once: Node sends it as soon as the connection is up.
      socket.write(Buffer.concat([head, payload]));
    });
    const reused = this.unpark(key);
    if (!reused) return once(null);
    return once(reused).catch((error) => {
      // The gateway closed the kept connection before this request reached it: once more.
      if (error.reused && !error.received && error.name !== 'AbortError' && !signal?.aborted) return once(null);
      throw error;
    });
  }

  // Kept connections, newest last; one that closes while idle is dropped.
  park(key, socket) {
    const drop = () => {
      socket.destroy();
      this.idle = this.idle.filter((entry) => entry.socket !== socket);
    };
    socket.once('close', drop);
    socket.once('error', drop);
    socket.once('data', drop); // nothing is expected while idle
    socket.unref();
    this.idle.push({key, socket, drop});
  }

  unpark(key) {
    for (let i = this.idle.length - 1; i >= 0; i--) {
      const entry = this.idle[i];
      if (entry.key !== key) continue;
      this.idle.splice(i, 1);
      entry.socket.removeListener('close', entry.drop);
      entry.socket.removeListener('error', entry.drop);
      entry.socket.removeListener('data', entry.drop);
      entry.socket.ref();
      if (entry.socket.destroyed) continue;
      return entry.socket;
    }
    return null;
  }

  /** Closes the kept connections. */
  close() {
    for (const entry of this.idle.splice(0)) entry.socket.destroy();
  }

  /**
   * POSTs `body` to `route`; resolves with {status, text}. `signal` (an AbortSignal) closes the
   * connection, which the gateway takes as a cancel.
   */
  post(route, body, {timeoutMs = SHORT_REQUEST_MS, signal} = {}) {
    return (async () => {
      const config = this.config();
      let outcome;
      try {
        outcome = await this.request(config, route, body, {timeoutMs, signal});
      } catch (error) {
        if (this.fixed || error?.name === 'AbortError' || error?.code !== 'ECONNREFUSED') throw error;
      }
      if (outcome && (outcome.status !== 401 || this.fixed)) return outcome;
      // Refused, or a token from before a restart: the token file again, once.
      return this.request(this.config({fresh: true}), route, body, {timeoutMs, signal});
    })();
  }
}

/**
 * Serves the shim's messages for one embedder. Ceremonies are tracked per frame: a frame that
 * goes away (`frameGone`), or a new document in the same frame, cancels what the old document
 * left pending, so the one authenticator is not kept busy for nobody.
 */
export class ShimHost {
  constructor(client) {
    this.client = client;
    this.frames = new Map(); // frameKey → {doc, ceremonies: Map<shimId, {gatewayId, controller}>}
    this.stats = {ceremonies: 0};
  }

  entry(frameKey, doc) {
    let entry = this.frames.get(frameKey);
    if (!entry) {
      entry = {doc, ceremonies: new Map()};
      this.frames.set(frameKey, entry);
    } else if (entry.doc !== doc) {
      this.abortAll(entry);
      entry.doc = doc;
    }
    return entry;
  }

  abortAll(entry) {
    for (const ceremony of entry.ceremonies.values()) ceremony.controller.abort();
    entry.ceremonies.clear();
  }

  /** The frame (or its document) is gone: its ceremonies are cancelled at the gateway. */
  frameGone(frameKey) {
    const entry = this.frames.get(frameKey);
    if (!entry) return;
    this.abortAll(entry);
    this.frames.delete(frameKey);
  }

  /** Forgets every frame `predicate` accepts (e.g. those of a closed page). */
  framesGone(predicate) {
    for (const key of [...this.frames.keys()]) if (predicate(key)) this.frameGone(key);
  }

  /**
   * One message from the shim in the frame `frameKey`. `caller()` → {origin, topOrigin?,
   * sameOriginWithAncestors} (may be async). Resolves with the answer text; never rejects.
   */
  async handle(frameKey, text, caller) {
    let message;
    try {
      if (typeof text !== 'string' || text.length > MAX_MESSAGE) throw new Error('not a message');
      message = JSON.parse(text);
      if (!message || typeof message !== 'object' || typeof message.op !== 'string'
          || typeof message.doc !== 'string' || message.doc.length > 128
          || (message.id !== undefined && (typeof message.id !== 'string' || message.id.length > 128))) {
        throw new Error('not a message');
      }
    } catch {
      return answerText('TypeError', 'the shim sent a malformed message');
    }
    const entry = this.entry(frameKey, message.doc);
    try {
      switch (message.op) {
        case 'create':
        case 'get':
          return await this.ceremony(entry, message, caller);
        case 'cancel': {
          const ceremony = entry.ceremonies.get(message.id);
          if (!ceremony) return '{"ok":false}';
          if (!ceremony.posted) {
            // Still finding out who is calling: it never reaches the gateway.
            ceremony.controller.abort();
            return '{"ok":true}';
          }
          const {text: answer} = await this.client.post('/v1/cancel', {requestId: ceremony.gatewayId});
          // Not (yet) known there — the cancel overtook the request: hanging up cancels too.
          if (!/^\{"ok":true\}$/.test(answer.trim())) ceremony.controller.abort();
          return answer;
        }
        case 'isUvpaa': {
          const {text: answer} = await this.client.post('/v1/isUvpaa', {});
          return answer;
        }
        default:
          return answerText('TypeError', `unknown operation ${JSON.stringify(message.op)}`);
      }
    } catch (error) {
      if (message.op === 'isUvpaa') return '{"ok":false}';
      return answerText('NotAllowedError', `the gateway could not be reached: ${error?.message ?? error}`);
    }
  }

  async ceremony(entry, message, caller) {
    if (!message.options || typeof message.options !== 'object' || Array.isArray(message.options)) {
      return answerText('TypeError', 'no options');
    }
    const gatewayId = randomUUID();
    const controller = new AbortController();
    const conditional = message.op === 'get' && message.mediation === 'conditional';
    const id = message.id ?? gatewayId;
    // Registered before anything is awaited, so a cancel that overtakes the caller look-up
    // (BiDi asks the browser) still finds it.
    const ceremony = {gatewayId, controller, posted: false};
    entry.ceremonies.set(id, ceremony);
    this.stats.ceremonies += 1;
    try {
      // The page may only make itself opaque, never claim an origin.
      const who = message.opaque === true ? {origin: 'null', sameOriginWithAncestors: true} : await caller();
      if (controller.signal.aborted) return answerText('AbortError', 'the ceremony was cancelled');
      ceremony.posted = true;
      const {text} = await this.client.post(`/v1/${message.op}`, {
        origin: who.origin,
        ...(who.topOrigin !== undefined ? {topOrigin: who.topOrigin} : {}),
        sameOriginWithAncestors: who.sameOriginWithAncestors !== false,
        requestId: gatewayId,
        ...(conditional ? {mediation: 'conditional'} : {}),
        options: message.options,
      }, {timeoutMs: conditional ? CONDITIONAL_WAIT_MS : lifetimeMs(message.options) + ANSWER_GRACE_MS, signal: controller.signal});
      return text;
    } catch (error) {
      if (controller.signal.aborted) return answerText('AbortError', 'the ceremony was cancelled');
      throw error;
    } finally {
      if (entry.ceremonies.get(id)?.gatewayId === gatewayId) entry.ceremonies.delete(id);
    }
  }
}

/** The origin of a URL as a browser serializes it ("null" when opaque). */
export function originOf(url) {
  try {
    return new URL(url).origin;
  } catch {
    return 'null';
  }
}

/** Whether a URL is a document that inherits its origin (about:blank, about:srcdoc). */
export function inheritsOrigin(url) {
  return !url || url === 'about:blank' || url.startsWith('about:blank#') || url.startsWith('about:blank?') || url === 'about:srcdoc';
}

/**
 * The caller from a chain of frame URLs, the calling frame's first and the top-level one's last.
 * A frame showing about:blank/about:srcdoc has its parent's origin.
 */
export function callerFromChain(urls) {
  const origins = new Array(urls.length);
  for (let i = urls.length - 1; i >= 0; i--) {
    origins[i] = inheritsOrigin(urls[i]) && i + 1 < urls.length ? origins[i + 1] : originOf(urls[i]);
  }
  const origin = origins[0];
  const topOrigin = origins[origins.length - 1];
  const same = origins.every((o) => o === origin);
  return same ? {origin, sameOriginWithAncestors: true} : {origin, topOrigin, sameOriginWithAncestors: false};
}
