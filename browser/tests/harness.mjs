// Test harness for lane A: a `fidelio serve --browser` daemon, headless Debian Chromium with the
// Fidelio extension (driven by playwright-core), and the test RP. Everything waits on events
// (a line on the daemon's stderr, the extension's `fidelioReady` promise, a process exit) with
// generous deadlines — never on sleeps — so a loaded 2-core machine only makes it slower.

import {spawn} from 'node:child_process';
import {mkdtemp, readFile, rm} from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {createInterface} from 'node:readline';
import {fileURLToPath} from 'node:url';

import {chromium} from 'playwright-core';

import {startRp} from './rp-server.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
export const repo = path.resolve(here, '../..');
export const extensionSource = path.join(repo, 'browser/chromium-extension');

// Deadlines: generous, for a loaded machine.
export const STARTUP_MS = 120_000;
export const CEREMONY_MS = 60_000;

export function fidelioBinary() {
  if (process.env.FIDELIO_BIN) return process.env.FIDELIO_BIN;
  const target = process.env.CARGO_TARGET_DIR ?? path.join(repo, 'target');
  return path.join(target, 'debug', 'fidelio');
}

export function chromiumBinary() {
  return process.env.CHROMIUM_BIN ?? '/usr/bin/chromium';
}

function withDeadline(promise, ms, what) {
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no result within ${ms} ms`)), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

// Runs `fidelio ARGS…` to completion; rejects with its output on failure.
export function fidelio(args, {timeout = STARTUP_MS} = {}) {
  return withDeadline(new Promise((resolve, reject) => {
    const child = spawn(fidelioBinary(), args, {stdio: ['ignore', 'pipe', 'pipe']});
    let output = '';
    child.stdout.on('data', (d) => { output += d; });
    child.stderr.on('data', (d) => { output += d; });
    child.on('error', reject);
    child.on('exit', (code) => {
      if (code === 0) resolve(output);
      else reject(new Error(`fidelio ${args.join(' ')} exited with ${code}:\n${output}`));
    });
  }), timeout, `fidelio ${args[0]}`);
}

// Starts `fidelio serve --ephemeral --browser 127.0.0.1:0 …` and resolves once the gateway is
// up (its announcement on stderr), with the URL and token from the token file.
// `stdin: 'pipe'` keeps the daemon's standard input open and silent: with `--presence prompt`
// every presence question then waits (for lane B's timeout tests).
export async function startDaemon(dir, {pin, profile, gateway = '127.0.0.1:0', extraArgs = [], stdin = 'ignore', tokenFile: tokenFileName = 'browser-gateway.json'} = {}) {
  const tokenFile = path.join(dir, tokenFileName);
  const args = [
    'serve', '--ephemeral',
    '--udp', '127.0.0.1:0', '--control', '127.0.0.1:0',
    '--browser', gateway, '--browser-token-file', tokenFile,
    ...(pin ? ['--browser-pin', pin] : []),
    ...(profile ? ['--profile', profile] : []),
    ...extraArgs,
  ];
  const child = spawn(fidelioBinary(), args, {stdio: [stdin, 'ignore', 'pipe']});
  const log = [];
  const lines = createInterface({input: child.stderr});
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({code, signal})));
  const up = new Promise((resolve, reject) => {
    lines.on('line', (line) => {
      log.push(line);
      if (process.env.FIDELIO_TEST_VERBOSE) console.error(`[daemon] ${line}`);
      if (line.startsWith('fidelio: browser gateway token:')) resolve();
    });
    child.once('error', reject);
    exited.then(({code, signal}) => reject(new Error(
      `fidelio serve exited (${code ?? signal}) before the gateway was up:\n${log.join('\n')}`)));
  });
  await withDeadline(up, STARTUP_MS, 'starting fidelio serve --browser');
  const written = JSON.parse(await readFile(tokenFile, "utf8"));
  return {
    child,
    log,
    tokenFile,
    url: written.url,
    token: written.token,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await withDeadline(exited, 30_000, 'stopping fidelio serve').catch(() => child.kill('SIGKILL'));
    },
  };
}

// Launches headless Chromium with the extension at `extensionDir` in a fresh profile at
// `profileDir`, and waits until the extension's worker has attached the WebAuthn proxy and
// found the gateway.
export async function launchChromium(profileDir, extensionDir) {
  const context = await chromium.launchPersistentContext(profileDir, {
    executablePath: chromiumBinary(),
    headless: true,
    timeout: STARTUP_MS,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      `--disable-extensions-except=${extensionDir}`,
      `--load-extension=${extensionDir}`,
    ],
  });
  try {
    const worker = context.serviceWorkers().find((w) => w.url().startsWith('chrome-extension://'))
      ?? await context.waitForEvent('serviceworker', {timeout: STARTUP_MS});
    const ready = await withDeadline(worker.evaluate(() => self.fidelioReady), STARTUP_MS, 'the extension starting');
    if (!ready.attached) throw new Error(`the extension could not attach the WebAuthn proxy: ${ready.attachError}`);
    if (!ready.gateway) throw new Error('the extension did not find the gateway (native host or config.json)');
    return {context, worker, ready};
  } catch (error) {
    await context.close().catch(() => {});
    throw error;
  }
}

// Everything lane A needs for one test file. By default the extension reaches the gateway
// through the native-messaging host (`fidelio browser install --user-data-dir` into the fresh
// profile; Chromium reads `<user-data-dir>/NativeMessagingHosts/`), which relays its ceremonies
// over the native port. `bake`: an extension copy with the gateway's URL and token baked in
// instead (no native host; the fetch fallback). `presence: 'prompt'`: a daemon whose presence
// questions are never answered (ceremonies wait until cancelled or timed out).
export async function startLaneA({pin, profile, bake = false, presence} = {}) {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'fidelio-lane-a-'));
  const cleanup = [];
  const stop = async () => {
    for (const step of cleanup.reverse()) await step().catch((error) => console.error(error));
    await rm(dir, {recursive: true, force: true});
  };
  const lane = {dir, stop};
  try {
    const daemonOptions = presence
      ? {pin, profile, extraArgs: ['--presence', presence], stdin: presence === 'prompt' ? 'pipe' : 'ignore'}
      : {pin, profile};
    lane.daemon = await startDaemon(dir, daemonOptions);
    cleanup.push(() => lane.daemon.stop());
    const daemon = lane.daemon;
    const profileDir = path.join(dir, 'profile');
    let extensionDir = extensionSource;
    if (bake) {
      extensionDir = path.join(dir, 'extension');
      await fidelio(['browser', 'extension', '--out', extensionDir, '--bake', '--token-file', daemon.tokenFile]);
    } else {
      await fidelio(['browser', 'install', '--user-data-dir', profileDir, '--token-file', daemon.tokenFile]);
    }
    const rp = await startRp();
    cleanup.push(() => rp.close());
    const browser = await launchChromium(profileDir, extensionDir);
    cleanup.push(() => browser.context.close());
    // Stops the daemon and starts a new one on the same gateway address and token file (a new
    // token, no credentials): what a user's daemon restart looks like to the extension.
    lane.restartDaemon = async () => {
      const address = new URL(lane.daemon.url).host;
      await lane.daemon.stop();
      lane.daemon = await startDaemon(dir, {...daemonOptions, gateway: address});
    };
    return Object.assign(lane, {rp, ...browser});
  } catch (error) {
    await stop();
    throw error;
  }
}

// Opens `url` in a new page of `context`.
export async function open(context, url) {
  const page = await context.newPage();
  page.setDefaultTimeout(CEREMONY_MS);
  await page.goto(url, {waitUntil: 'load'});
  return page;
}

// Runs `fidelioRp.<method>(params)` in a page or frame, with a deadline.
export function ceremony(target, method, params = {}) {
  return withDeadline(
    target.evaluate(([m, p]) => window.fidelioRp[m](p), [method, params]),
    CEREMONY_MS,
    `fidelioRp.${method}`);
}

// ---------------------------------------------------------------------------------------------
// Lane B: the injected shim (browser/shim/), in any engine, no extension.

export const shimDirectory = path.join(repo, 'browser/shim');

export function firefoxBinary() {
  return process.env.FIREFOX_BIN ?? '/usr/bin/firefox-esr';
}

// Headless Chromium without any extension (lane B needs none).
export async function launchPlainChromium() {
  return chromium.launch({
    executablePath: chromiumBinary(),
    headless: true,
    timeout: STARTUP_MS,
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
}

// Headless Debian Firefox ESR driven by puppeteer-core over WebDriver BiDi.
export async function launchFirefox() {
  const {default: puppeteer} = await import('puppeteer-core');
  return puppeteer.launch({
    browser: 'firefox',
    executablePath: firefoxBinary(),
    headless: true,
    timeout: STARTUP_MS,
    protocolTimeout: STARTUP_MS,
  });
}

// A temporary directory and a list of clean-up steps run in reverse order.
export async function workspace(prefix) {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  const cleanup = [];
  return {
    dir,
    defer(step) { cleanup.push(step); },
    async stop() {
      for (const step of cleanup.reverse()) await step().catch((error) => console.error(error));
      await rm(dir, {recursive: true, force: true});
    },
  };
}

// Starts a daemon for lane B in `space`: `presence` ('auto', 'deny', 'prompt' — prompt is
// never answered), `pin`, `profile`. Each gets its own token file.
let daemonCount = 0;
export async function startLaneBDaemon(space, {presence, pin, profile} = {}) {
  daemonCount += 1;
  const daemon = await startDaemon(space.dir, {
    pin,
    profile,
    extraArgs: presence ? ['--presence', presence] : [],
    stdin: presence === 'prompt' ? 'pipe' : 'ignore',
    tokenFile: `gateway-${daemonCount}.json`,
  });
  space.defer(() => daemon.stop());
  return daemon;
}

// GET /v1/status of a daemon's gateway.
export async function gatewayStatus(daemon) {
  const response = await fetch(new URL('/v1/status', daemon.url), {headers: {Authorization: `Bearer ${daemon.token}`}});
  return (await response.json()).ok;
}

// A control-API call (`/v1/control/…`) on a daemon's gateway; resolves with its `ok` value and
// throws with the error otherwise.
export async function control(daemon, method, route, body) {
  const response = await fetch(new URL(route, daemon.url), {
    method,
    headers: {Authorization: `Bearer ${daemon.token}`, 'Content-Type': 'application/json'},
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const answer = await response.json();
  if (response.status !== 200 || answer.error) throw new Error(`${method} ${route}: ${response.status} ${JSON.stringify(answer)}`);
  return answer.ok;
}

// Runs `fidelioRp.<method>(params)` in a puppeteer page or frame, with a deadline.
export function puppeteerCeremony(target, method, params = {}) {
  return withDeadline(
    target.evaluate((m, p) => window.fidelioRp[m](p), method, params),
    CEREMONY_MS,
    `fidelioRp.${method}`);
}

export {withDeadline};
