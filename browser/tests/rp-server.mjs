// A tiny relying party for the browser tests: node's http server, pages that call
// navigator.credentials.create()/get(), and @simplewebauthn/server verifying every response.
//
// One server answers for every host name that resolves to it: the RP ID is the request's host
// (rp.localhost, other.localhost…, which Chromium resolves to loopback by itself) and the
// expected origin is `http://<Host header>`. State is in memory, per RP ID.

import {randomBytes} from 'node:crypto';
import http from 'node:http';

import {
  generateAuthenticationOptions,
  generateRegistrationOptions,
  verifyAuthenticationResponse,
  verifyRegistrationResponse,
} from '@simplewebauthn/server';

const MAX_BODY = 1 << 20;

// The script every page runs: `window.fidelioRp` drives one ceremony end to end and returns
// plain data (never throws), so tests can `page.evaluate` it.
const PAGE_SCRIPT = `
async function api(path, body) {
  const response = await fetch(path, {method: 'POST', headers: {'Content-Type': 'application/json'}, body: JSON.stringify(body)});
  const answer = await response.json();
  if (!response.ok) throw Object.assign(new Error(answer.error || response.statusText), {name: 'RpError'});
  return answer;
}
function failure(error) {
  return {error: {name: error?.name ?? 'Error', message: String(error?.message ?? error)}};
}
window.fidelioRp = {
  // Registration: options from the RP, create(), verification by the RP.
  async register(params = {}) {
    try {
      const {ceremonyId, options} = await api('/api/register/options', params);
      if (params.rpId !== undefined) options.rp.id = params.rpId;
      const publicKey = PublicKeyCredential.parseCreationOptionsFromJSON(options);
      const credential = await navigator.credentials.create({publicKey});
      return await api('/api/register/verify', {ceremonyId, response: credential.toJSON()});
    } catch (error) {
      return failure(error);
    }
  },
  // Authentication: options (allowCredentials for params.username, none otherwise), get(),
  // verification.
  async login(params = {}) {
    try {
      const {ceremonyId, options} = await api('/api/login/options', params);
      if (params.rpId !== undefined) options.rpId = params.rpId;
      const publicKey = PublicKeyCredential.parseRequestOptionsFromJSON(options);
      const controller = new AbortController();
      const request = {publicKey, signal: controller.signal};
      if (params.mediation !== undefined) request.mediation = params.mediation;
      window.fidelioRpAbort = () => controller.abort();
      const pending = navigator.credentials.get(request);
      if (params.abort) controller.abort();
      const credential = await pending;
      return await api('/api/login/verify', {ceremonyId, response: credential.toJSON()});
    } catch (error) {
      return failure(error);
    }
  },
  async isUvpaa() {
    return PublicKeyCredential.isUserVerifyingPlatformAuthenticatorAvailable();
  },
};
`;

function page(title, body) {
  return `<!doctype html><html><head><meta charset="utf-8"><title>${title}</title></head>
<body>${body}<script src="/rp.js"></script></body></html>`;
}

function escapeHtml(text) {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

class Rp {
  constructor() {
    this.users = new Map(); // `${rpId}/${username}` -> {id, username, credentials: []}
    this.credentials = new Map(); // `${rpId}/${credentialId}` -> {credential, username, userId}
    this.ceremonies = new Map(); // ceremonyId -> {kind, challenge, rpId, origin, uv}
  }

  user(rpId, username) {
    const key = `${rpId}/${username}`;
    let user = this.users.get(key);
    if (!user) {
      user = {id: randomBytes(16), username, credentials: []};
      this.users.set(key, user);
    }
    return user;
  }

  remember(kind, options, rpId, origin, extra) {
    const ceremonyId = randomBytes(12).toString('base64url');
    this.ceremonies.set(ceremonyId, {kind, challenge: options.challenge, rpId, origin, ...extra});
    return ceremonyId;
  }

  take(ceremonyId, kind) {
    const ceremony = this.ceremonies.get(ceremonyId);
    if (!ceremony || ceremony.kind !== kind) throw new Error('unknown ceremony');
    this.ceremonies.delete(ceremonyId);
    return ceremony;
  }

  async registerOptions({rpId, origin}, params) {
    const username = String(params.username ?? 'alice');
    const user = this.user(rpId, username);
    const userVerification = params.userVerification ?? 'preferred';
    const options = await generateRegistrationOptions({
      rpName: 'Fidelio test RP',
      rpID: rpId,
      userName: username,
      userID: user.id,
      userDisplayName: params.displayName ?? username,
      // 'direct' asks for the authenticator's attestation statement (fmt packed…).
      attestationType: params.attestation ?? 'none',
      timeout: params.timeout ?? 60_000,
      excludeCredentials: params.exclude
        ? user.credentials.map((c) => ({id: c.id, transports: c.transports}))
        : [],
      authenticatorSelection: {residentKey: params.residentKey ?? 'preferred', userVerification},
      extensions: {credProps: true},
      ...(params.algorithms ? {supportedAlgorithmIDs: params.algorithms} : {}),
    });
    const ceremonyId = this.remember('create', options, rpId, origin, {username, uv: userVerification});
    return {ceremonyId, options};
  }

  async registerVerify(params) {
    const ceremony = this.take(params.ceremonyId, 'create');
    const verification = await verifyRegistrationResponse({
      response: params.response,
      expectedChallenge: ceremony.challenge,
      expectedOrigin: ceremony.origin,
      expectedRPID: ceremony.rpId,
      requireUserVerification: ceremony.uv === 'required',
    });
    if (!verification.verified) return {verified: false};
    const info = verification.registrationInfo;
    const user = this.user(ceremony.rpId, ceremony.username);
    user.credentials.push(info.credential);
    this.credentials.set(`${ceremony.rpId}/${info.credential.id}`, {
      credential: info.credential,
      username: ceremony.username,
    });
    const clientData = JSON.parse(Buffer.from(params.response.response.clientDataJSON, 'base64url').toString());
    return {
      verified: true,
      credentialId: info.credential.id,
      userVerified: info.userVerified,
      fmt: info.fmt,
      aaguid: info.aaguid,
      // BE/BS as the RP library reads them (singleDevice/false, multiDevice/true|false).
      credentialDeviceType: info.credentialDeviceType,
      credentialBackedUp: info.credentialBackedUp,
      counter: info.credential.counter,
      origin: info.origin,
      rpId: info.rpID,
      clientData,
      credProps: params.response.clientExtensionResults?.credProps ?? null,
      transports: params.response.response.transports ?? [],
      authenticatorAttachment: params.response.authenticatorAttachment ?? null,
      residentCredentials: user.credentials.length,
    };
  }

  async loginOptions({rpId, origin}, params) {
    const userVerification = params.userVerification ?? 'preferred';
    const allowCredentials = params.username === undefined
      ? []
      : this.user(rpId, String(params.username)).credentials.map((c) => ({id: c.id, transports: c.transports}));
    const options = await generateAuthenticationOptions({
      rpID: rpId,
      allowCredentials,
      userVerification,
      timeout: params.timeout ?? 60_000,
    });
    return {ceremonyId: this.remember('get', options, rpId, origin, {uv: userVerification}), options};
  }

  async loginVerify(params) {
    const ceremony = this.take(params.ceremonyId, 'get');
    const stored = this.credentials.get(`${ceremony.rpId}/${params.response.id}`);
    if (!stored) throw new Error(`unknown credential ${params.response.id}`);
    const verification = await verifyAuthenticationResponse({
      response: params.response,
      expectedChallenge: ceremony.challenge,
      expectedOrigin: ceremony.origin,
      expectedRPID: ceremony.rpId,
      credential: stored.credential,
      requireUserVerification: ceremony.uv === 'required',
    });
    // Every other check (flags, counter…) throws; a signature that does not verify is the one
    // verdict @simplewebauthn/server answers with `verified: false`.
    if (!verification.verified) return {verified: false, reason: 'signature'};
    // The RP keeps the counter of every verified login, so a clone's lower one is judged.
    stored.credential.counter = verification.authenticationInfo.newCounter;
    const userHandle = params.response.response.userHandle ?? null;
    const clientData = JSON.parse(Buffer.from(params.response.response.clientDataJSON, 'base64url').toString());
    return {
      verified: true,
      username: stored.username,
      credentialId: params.response.id,
      userVerified: verification.authenticationInfo.userVerified,
      counter: verification.authenticationInfo.newCounter,
      credentialDeviceType: verification.authenticationInfo.credentialDeviceType,
      credentialBackedUp: verification.authenticationInfo.credentialBackedUp,
      userHandle,
      clientData,
    };
  }
}

function readBody(request) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    request.on('data', (chunk) => {
      size += chunk.length;
      if (size > MAX_BODY) {
        reject(new Error('body too large'));
        request.destroy();
      } else {
        chunks.push(chunk);
      }
    });
    request.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    request.on('error', reject);
  });
}

function send(response, status, type, body) {
  response.writeHead(status, {'Content-Type': type, 'Cache-Control': 'no-store'});
  response.end(body);
}

// Starts the RP on 127.0.0.1 (a free port unless given). `url(host, path)` builds page URLs.
export async function startRp({port = 0} = {}) {
  const rp = new Rp();
  const server = http.createServer(async (request, response) => {
    try {
      const host = request.headers.host ?? '';
      const hostname = host.replace(/:\d+$/, '');
      const origin = `http://${host}`;
      const url = new URL(request.url ?? '/', origin);
      if (request.method === 'GET') {
        if (url.pathname === '/rp.js') return send(response, 200, 'text/javascript', PAGE_SCRIPT);
        if (url.pathname === '/') return send(response, 200, 'text/html', page(`RP ${hostname}`, `<h1>${escapeHtml(hostname)}</h1>`));
        if (url.pathname === '/frame') {
          // A page embedding another origin's page with WebAuthn allowed in the frame.
          const src = url.searchParams.get('src') ?? '';
          return send(response, 200, 'text/html', page('embedder', `<h1>embedder ${escapeHtml(hostname)}</h1>
<iframe id="rp" src="${escapeHtml(src)}" allow="publickey-credentials-create *; publickey-credentials-get *" width="600" height="300"></iframe>`));
        }
        return send(response, 404, 'text/plain', 'not found');
      }
      if (request.method !== 'POST') return send(response, 405, 'text/plain', 'method not allowed');
      const params = JSON.parse((await readBody(request)) || '{}');
      const where = {rpId: hostname, origin};
      let answer;
      switch (url.pathname) {
        case '/api/register/options': answer = await rp.registerOptions(where, params); break;
        case '/api/register/verify': answer = await rp.registerVerify(params); break;
        case '/api/login/options': answer = await rp.loginOptions(where, params); break;
        case '/api/login/verify': answer = await rp.loginVerify(params); break;
        default: return send(response, 404, 'application/json', JSON.stringify({error: 'no such endpoint'}));
      }
      send(response, 200, 'application/json', JSON.stringify(answer));
    } catch (error) {
      // A verification failure is the test's finding: say why.
      send(response, 400, 'application/json', JSON.stringify({error: String(error?.message ?? error)}));
    }
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  const boundPort = server.address().port;
  return {
    rp,
    port: boundPort,
    url: (host, path = '/') => `http://${host}:${boundPort}${path}`,
    close: () => new Promise((resolve) => {
      server.closeAllConnections?.();
      server.close(() => resolve());
    }),
  };
}
