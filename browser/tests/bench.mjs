// Benchmark: navigator.credentials.create() and get() as a Playwright test sees them, for
//   lane A — the Chromium extension (chrome.webAuthenticationProxy → native-messaging port →
//            `fidelio browser native-host` → gateway), and lane A with its fetch() fallback
//            (the same extension told to fetch() the gateway itself, as a baked copy does),
//   lane B — the injected shim (browser/shim/playwright.mjs: the raw-CDP fast channel for a
//            top-level document), and lane B with exposeBinding only (what frames and other
//            engines use),
//   CDP    — Chrome's own virtual authenticator (WebAuthn.enable + addVirtualAuthenticator),
// in the same run, the same Chromium, pages of the same origin, rounds interleaved (the lane
// order rotates every round). One more row, "gateway alone", is the same ceremony POSTed from
// Node straight to the gateway: what the daemon costs without any browser hop. Then where the
// time goes: the gateway's parts, lane B's Node handler vs its binding hop, lane A's
// service-worker request (native port or fetch) vs Chromium's proxy hop.
//
//   node browser/tests/bench.mjs [--n 20] [--warmup 3] [--fidelio PATH] [--json FILE] [--strict]
//
// Use a release build for figures (`cargo build --release -p fidelio-cli`); the default is
// $CARGO_TARGET_DIR/release/fidelio (copied first), else FIDELIO_BIN; the header says which.
// `driver` is the whole `page.evaluate` round trip from Node; `page` is performance.now() around
// the call inside the page (0.1 ms resolution). The floor: each lane's p50 no more than
// 1.5× CDP's (driver). --strict exits 1 when a lane misses it. run.sh runs it with a small N as a
// smoke test (FIDELIO_BENCH=N, 0 to skip).

import {execFileSync} from 'node:child_process';
import {copyFileSync, existsSync, writeFileSync} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {parseArgs} from 'node:util';

import {installFidelio} from '../shim/playwright.mjs';
import {GatewayClient} from '../shim/gateway.mjs';
import {startRp} from './rp-server.mjs';

const {values: args} = parseArgs({
  options: {
    n: {type: 'string', default: '20'},
    warmup: {type: 'string', default: '3'},
    fidelio: {type: 'string'},
    json: {type: 'string'},
    strict: {type: 'boolean', default: false},
  },
});
const ROUNDS = Number(args.n);
const WARMUP = Number(args.warmup);
const FLOOR = 1.5;

const harness = await import('./harness.mjs');
const space = await harness.workspace('fidelio-bench-');

// The binary: a private copy (others may relink the original meanwhile).
const target = process.env.CARGO_TARGET_DIR ?? path.join(harness.repo, 'target');
const source = args.fidelio ?? (existsSync(path.join(target, 'release', 'fidelio'))
  ? path.join(target, 'release', 'fidelio') : harness.fidelioBinary());
const binary = path.join(space.dir, 'fidelio');
copyFileSync(source, binary);
process.env.FIDELIO_BIN = binary;
const build = process.env.FIDELIO_BUILD
  ?? (/\/release\//.test(source) ? 'release' : /\/debug\//.test(source) ? 'debug' : 'unknown');

function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1];
}

function summary(samples) {
  const sorted = [...samples].sort((a, b) => a - b);
  return {n: sorted.length, p50: percentile(sorted, 50), p90: percentile(sorted, 90), min: sorted[0], max: sorted.at(-1)};
}

// One create() and one get() in a page; the credential is kept in the page for the next get().
const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Before a lane's turn: its page focused (Chromium's own WebAuthn — lane A, CDP — refuses an
// unfocused page), the renderer settled after the focus change (≈3 ms here), and a short pause
// so the previous lane's background work (2 cores) is not billed to this one. Not timed.
async function prepare(page) {
  await pause(20);
  if (!page) return;
  await page.bringToFront();
  await page.evaluate(() => 0);
}

async function pageCeremony(page, kind) {
  const started = performance.now();
  const pageMs = await page.evaluate(async (what) => {
    const random = (n) => crypto.getRandomValues(new Uint8Array(n));
    let t0;
    if (what === 'create') {
      const publicKey = {
        rp: {name: 'bench'},
        user: {id: random(16), name: 'bench', displayName: 'bench'},
        challenge: random(32),
        pubKeyCredParams: [{type: 'public-key', alg: -7}],
        authenticatorSelection: {residentKey: 'discouraged', userVerification: 'discouraged'},
        attestation: 'none',
      };
      t0 = performance.now();
      const credential = await navigator.credentials.create({publicKey});
      const ms = performance.now() - t0;
      window.benchCredential = credential.rawId;
      return ms;
    }
    const publicKey = {
      challenge: random(32),
      allowCredentials: [{type: 'public-key', id: window.benchCredential}],
      userVerification: 'discouraged',
    };
    t0 = performance.now();
    await navigator.credentials.get({publicKey});
    return performance.now() - t0;
  }, kind);
  return {driver: performance.now() - started, page: pageMs};
}

// The same ceremonies straight to the gateway over HTTP, from Node.
async function gatewayCeremony(client, origin, state, kind) {
  const b64 = (n) => Buffer.from(crypto.getRandomValues(new Uint8Array(n))).toString('base64url');
  const options = kind === 'create'
    ? {
      rp: {name: 'bench'},
      user: {id: b64(16), name: 'bench', displayName: 'bench'},
      challenge: b64(32),
      pubKeyCredParams: [{type: 'public-key', alg: -7}],
      authenticatorSelection: {residentKey: 'discouraged', userVerification: 'discouraged'},
      attestation: 'none',
    }
    : {challenge: b64(32), allowCredentials: [{type: 'public-key', id: state.id}], userVerification: 'discouraged'};
  const started = performance.now();
  const {text} = await client.post(`/v1/${kind}`, {origin, options});
  const ms = performance.now() - started;
  const answer = JSON.parse(text);
  if (!answer.ok) throw new Error(`gateway ${kind}: ${text}`);
  if (kind === 'create') state.id = answer.ok.rawId;
  return {driver: ms, page: ms};
}

const results = {};
const loadBefore = os.loadavg();
try {
  const daemon = await harness.startLaneBDaemon(space, {});
  // Lane A as users set it up: the repository's extension and the native host (this binary)
  // installed into the profile.
  const profileDir = path.join(space.dir, 'profile');
  await harness.fidelio(['browser', 'install', '--user-data-dir', profileDir, '--token-file', daemon.tokenFile]);
  const rp = await startRp();
  space.defer(() => rp.close());
  const chromium = await harness.launchChromium(profileDir, harness.extensionSource);
  space.defer(() => chromium.context.close());
  if (chromium.ready.transport !== 'relay') throw new Error(`lane A: the extension uses ${chromium.ready.transport}, not the native host's relay`);
  const {context} = chromium;
  const url = rp.url('bench.localhost');
  const origin = new URL(url).origin;

  const pageA = await harness.open(context, url);
  const pageF = await harness.open(context, url);
  // Lane A's two transports: set in the worker before each lane's turn (untimed).
  const forceFetch = (on) => chromium.worker.evaluate((value) => { self.fidelioForceFetch = value; }, on);

  const pageB = await context.newPage();
  const laneB = await installFidelio(pageB, {tokenFile: daemon.tokenFile});
  await pageB.goto(url, {waitUntil: 'load'});
  if (!laneB.fastPages.has(pageB)) throw new Error('lane B: no Chromium fast channel');

  const pageS = await context.newPage();
  const laneS = await installFidelio(pageS, {tokenFile: daemon.tokenFile, fast: false});
  await pageS.goto(url, {waitUntil: 'load'});

  const pageC = await context.newPage();
  const cdp = await context.newCDPSession(pageC);
  await cdp.send('WebAuthn.enable', {enableUI: false});
  await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: {
      protocol: 'ctap2', transport: 'usb', hasResidentKey: true, hasUserVerification: true,
      isUserVerified: true, automaticPresenceSimulation: true,
    },
  });
  await pageC.goto(url, {waitUntil: 'load'});

  const gateway = new GatewayClient({tokenFile: daemon.tokenFile});
  const gatewayState = {};
  const lanes = [
    {key: 'A', name: 'lane A (extension, relay)', page: pageA, before: () => forceFetch(false), run: (kind) => pageCeremony(pageA, kind)},
    {key: 'F', name: 'lane A, fetch fallback', page: pageF, before: () => forceFetch(true), run: (kind) => pageCeremony(pageF, kind)},
    {key: 'B', name: 'lane B (shim)', page: pageB, run: (kind) => pageCeremony(pageB, kind)},
    {key: 'S', name: 'lane B, exposeBinding only', page: pageS, run: (kind) => pageCeremony(pageS, kind)},
    {key: 'CDP', name: 'CDP virtual authenticator', page: pageC, run: (kind) => pageCeremony(pageC, kind)},
    {key: 'G', name: 'gateway alone (Node HTTP)', page: null, run: (kind) => gatewayCeremony(gateway, origin, gatewayState, kind)},
  ];

  // Where the time goes: lane B's Node handler (the gateway's HTTP answer as Node sees it),
  // lane A's request from its service worker (native port or fetch), and an empty binding round
  // trip.
  const handlerMs = {B: {create: [], get: []}, S: {create: [], get: []}};
  for (const [key, lane] of [['B', laneB], ['S', laneS]]) {
    const handle = lane.host.handle.bind(lane.host);
    lane.host.handle = async (frame, text, caller) => {
      const started = performance.now();
      try {
        return await handle(frame, text, caller);
      } finally {
        const op = /"op":"(create|get)"/.exec(text)?.[1];
        if (op && measuring) handlerMs[key][op].push(performance.now() - started);
      }
    };
  }
  let measuring = false;
  await chromium.worker.evaluate(() => {
    const samples = {relay: {create: [], get: []}, fetch: {create: [], get: []}, on: false};
    self.fidelioBenchWorker = samples;
    self.fidelioObserver = (transport, route, ms) => {
      const op = /^\/v1\/(create|get)$/.exec(route)?.[1];
      if (op && transport && samples.on) samples[transport][op].push(ms);
    };
  });
  await pageB.exposeBinding('__fidelioBenchEcho', () => '{}');
  
  for (const lane of lanes) results[lane.key] = {name: lane.name, create: {driver: [], page: []}, get: {driver: [], page: []}};

  const ceremoniesBefore = (await harness.gatewayStatus(daemon)).ceremonies;
  for (let round = 0; round < WARMUP + ROUNDS; round++) {
    // Rotate the order so no lane always runs right after another.
    const order = lanes.map((_, i) => lanes[(i + round) % lanes.length]);
    if (round === WARMUP) {
      measuring = true;
      await chromium.worker.evaluate(() => { self.fidelioBenchWorker.on = true; });
    }
    for (const lane of order) {
      await lane.before?.();
      await prepare(lane.page);
      for (const kind of ['create', 'get']) {
        const sample = await lane.run(kind);
        if (round >= WARMUP) {
          results[lane.key][kind].driver.push(sample.driver);
          results[lane.key][kind].page.push(sample.page);
        }
      }
    }
  }
  const through = (await harness.gatewayStatus(daemon)).ceremonies - ceremoniesBefore;
  const workerSamples = await chromium.worker.evaluate(() => self.fidelioBenchWorker);
  const extensionStats = await chromium.worker.evaluate(() => self.fidelioStats);
  await prepare(pageB);
  const emptyBinding = await pageB.evaluate(async (n) => {
    const samples = [];
    for (let i = 0; i < n; i++) {
      const started = performance.now();
      await window.__fidelioBenchEcho('{}');
      samples.push(performance.now() - started);
    }
    return samples;
  }, Math.max(ROUNDS, 20));
  // The gateway's parts, alone and in a row: HTTP only, + getInfo, + makeCredential/getAssertion.
  const gatewayParts = {status: [], isUvpaa: [], create: [], get: []};
  for (let i = 0; i < Math.max(ROUNDS, 20) + WARMUP; i++) {
    const keep = i >= WARMUP;
    // HTTP only: a cancel for no ceremony is answered without the device.
    let started = performance.now();
    await gateway.post('/v1/cancel', {requestId: 'none'});
    if (keep) gatewayParts.status.push(performance.now() - started);
    started = performance.now();
    await gateway.post('/v1/isUvpaa', {});
    if (keep) gatewayParts.isUvpaa.push(performance.now() - started);
    for (const kind of ['create', 'get']) {
      const sample = await gatewayCeremony(gateway, origin, gatewayState, kind);
      if (keep) gatewayParts[kind].push(sample.driver);
    }
  }
  // Lanes A (relay), A (fetch), B, B (exposeBinding) and the gateway row each ran 2 ceremonies a
  // round through the gateway; CDP none.
  const expected = 5 * 2 * (WARMUP + ROUNDS);
  if (through !== expected) throw new Error(`the gateway saw ${through} ceremonies, expected ${expected}: a lane did not go where it should`);
  if (laneB.host.stats.fast !== 2 * (WARMUP + ROUNDS)) throw new Error('lane B did not use its fast channel');
  if (laneS.host.stats.ceremonies !== 2 * (WARMUP + ROUNDS) || laneS.host.stats.fast) throw new Error('lane B (exposeBinding) did not go through its binding');
  if (extensionStats.relay !== 2 * (WARMUP + ROUNDS) || extensionStats.fetch !== 2 * (WARMUP + ROUNDS)) {
    throw new Error(`lane A: ${JSON.stringify(extensionStats)} requests by relay/fetch, expected ${2 * (WARMUP + ROUNDS)} each`);
  }

  const chromiumVersion = chromium.context.browser()?.version() ?? execFileSync(harness.chromiumBinary(), ['--version']).toString().trim();
  const fmt = (ms) => (Number.isFinite(ms) ? ms.toFixed(2).padStart(7) : '      -');
  const stats = {};
  for (const [key, r] of Object.entries(results)) {
    stats[key] = {};
    for (const kind of ['create', 'get']) {
      stats[key][kind] = {driver: summary(r[kind].driver), page: summary(r[kind].page)};
    }
  }
  const lines = [];
  lines.push(`fidelio bench: ${ROUNDS} rounds (+${WARMUP} warm-up), ${build} build of fidelio (${source}), Chromium ${chromiumVersion}, headless, playwright-core; `
    + `${os.cpus().length} CPUs, load average before ${loadBefore.map((l) => l.toFixed(2)).join(' ')}`);
  lines.push(`same page origin ${origin}; ms; driver = page.evaluate round trip from Node, page = performance.now() around the call`);
  lines.push('');
  lines.push('                               |  create() driver  |   create() page   |   get() driver    |    get() page     | p50 ÷ CDP (driver)');
  lines.push('                               |    p50      p90   |    p50      p90   |    p50      p90   |    p50      p90   |  create     get');
  lines.push('-------------------------------+-------------------+-------------------+-------------------+-------------------+-----------------');
  const verdicts = [];
  for (const [key, r] of Object.entries(results)) {
    const s = stats[key];
    const ratio = (kind) => s[kind].driver.p50 / stats.CDP[kind].driver.p50;
    const ratios = key === 'CDP' ? '   1.00    1.00' : `${ratio('create').toFixed(2).padStart(7)} ${ratio('get').toFixed(2).padStart(7)}`;
    lines.push(`${r.name.padEnd(30)} | ${fmt(s.create.driver.p50)}  ${fmt(s.create.driver.p90)}  | ${fmt(s.create.page.p50)}  ${fmt(s.create.page.p90)}  | ${fmt(s.get.driver.p50)}  ${fmt(s.get.driver.p90)}  | ${fmt(s.get.page.p50)}  ${fmt(s.get.page.p90)}  | ${ratios}`);
    if (key === 'A' || key === 'F' || key === 'B' || key === 'S') {
      for (const kind of ['create', 'get']) {
        const value = ratio(kind);
        verdicts.push({key, lane: r.name, kind, ratio: value, meets: value <= FLOOR});
      }
    }
  }
  lines.push('');
  for (const v of verdicts) {
    const pageRatio = stats[v.key][v.kind].page.p50 / stats.CDP[v.kind].page.p50;
    lines.push(`${v.meets ? 'within' : 'MISSES'} the floor (≤ ${FLOOR}× CDP): ${v.lane} ${v.kind}() p50 = ${v.ratio.toFixed(2)}× CDP as the driver sees it (${pageRatio.toFixed(2)}× in the page)`);
  }

  // Where the time goes (p50, ms).
  const p50 = (samples) => summary(samples).p50;
  const breakdown = {
    gateway: {
      httpOnly: p50(gatewayParts.status),
      getInfo: p50(gatewayParts.isUvpaa) - p50(gatewayParts.status),
      create: p50(gatewayParts.create),
      get: p50(gatewayParts.get),
    },
    laneB: {emptyBinding: p50(emptyBinding), handler: {
      create: p50(handlerMs.B.create), get: p50(handlerMs.B.get)}, handlerExposeBinding: {create: p50(handlerMs.S.create), get: p50(handlerMs.S.get)}},
    laneA: {
      relay: {create: p50(workerSamples.relay.create), get: p50(workerSamples.relay.get)},
      fetch: {create: p50(workerSamples.fetch.create), get: p50(workerSamples.fetch.get)},
    },
  };
  const f = (ms) => ms.toFixed(2);
  lines.push('');
  lines.push('where the time goes (p50, ms):');
  lines.push(`  gateway alone, Node → loopback HTTP → daemon, in a row: HTTP only (/v1/cancel of nothing) ${f(breakdown.gateway.httpOnly)}, `
    + `+ authenticatorGetInfo ${f(breakdown.gateway.getInfo)} (isUvpaa − that); whole create ${f(breakdown.gateway.create)}, get ${f(breakdown.gateway.get)} `
    + '(each = HTTP + getInfo + makeCredential/getAssertion over CTAPHID, crypto included)');
  for (const kind of ['create', 'get']) {
    const page = stats.B[kind].page.p50;
    const handler = breakdown.laneB.handler[kind];
    const pageS = stats.S[kind].page.p50;
    const handlerS = breakdown.laneB.handlerExposeBinding[kind];
    lines.push(`  lane B ${kind}(): in the page ${f(page)} = Node handler (gateway HTTP + ceremony) ${f(handler)} `
      + `+ CDP binding hop and shim ${f(page - handler)}; with exposeBinding: ${f(pageS)} = ${f(handlerS)} + ${f(pageS - handlerS)} `
      + `(an empty exposeBinding round trip: ${f(breakdown.laneB.emptyBinding)})`);
  }
  for (const kind of ['create', 'get']) {
    const page = stats.A[kind].page.p50;
    const relayMs = breakdown.laneA.relay[kind];
    const pageF = stats.F[kind].page.p50;
    const fetchMs = breakdown.laneA.fetch[kind];
    lines.push(`  lane A ${kind}(): in the page ${f(page)} = the worker's request over the native port (host + gateway) ${f(relayMs)} `
      + `+ Chromium's proxy hop (renderer → browser → extension worker → back) ${f(page - relayMs)}; `
      + `with fetch(): ${f(pageF)} = ${f(fetchMs)} + ${f(pageF - fetchMs)} (Node's HTTP to the gateway: ${f(stats.G[kind].driver.p50)})`);
  }
  console.log(lines.join('\n'));
  if (args.json) {
    writeFileSync(args.json, JSON.stringify({rounds: ROUNDS, warmup: WARMUP, build, source, chromium: chromiumVersion, stats, breakdown, samples: results, verdicts}, null, 2));
  }
  if (args.strict && verdicts.some((v) => !v.meets)) process.exitCode = 1;
} catch (error) {
  console.error('bench failed:', error);
  process.exitCode = 1;
} finally {
  await space.stop();
}
