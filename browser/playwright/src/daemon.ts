// Starting `fidelio serve --browser` for a Playwright worker, or attaching to a running one.

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

import type { GatewayAddress } from './client.js';

/** This package's directory inside the Fidelio repository (`browser/playwright`). */
const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** A daemon the fixture uses. */
export interface DaemonHandle extends GatewayAddress {
  /** Started by the fixture (false: attached to a running one). */
  readonly started: boolean;
  /** The token file (started daemons). */
  readonly tokenFile?: string;
  /** What the daemon printed on stderr (started daemons). */
  readonly log: string[];
  /** Stops a started daemon; nothing for an attached one. */
  stop(): Promise<void>;
}

/** Options of {@link startDaemon}. */
export interface StartDaemonOptions {
  /** The `fidelio` binary. Default: `$FIDELIO_BIN`, else `fidelio` on the PATH. */
  binary?: string;
  /** More `fidelio serve` arguments, e.g. `['--profile', 'platform']`. */
  args?: string[];
  /** How long the daemon may take to come up, in ms. Default 60 000. */
  timeout?: number;
}

/** The `fidelio` binary to run. */
export function fidelioBinary(binary?: string): string {
  return binary ?? process.env.FIDELIO_BIN ?? 'fidelio';
}

function withDeadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

/**
 * Starts `fidelio serve --ephemeral --browser 127.0.0.1:0` (UDP and control ports picked by the
 * system too, so workers never collide) and resolves once its gateway is up, with the URL and
 * the token from its token file.
 */
export async function startDaemon(options: StartDaemonOptions = {}): Promise<DaemonHandle> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'fidelio-playwright-'));
  const tokenFile = path.join(dir, 'browser-gateway.json');
  const args = [
    'serve',
    '--ephemeral',
    '--udp',
    '127.0.0.1:0',
    '--control',
    '127.0.0.1:0',
    '--browser',
    '127.0.0.1:0',
    '--browser-token-file',
    tokenFile,
    ...(options.args ?? []),
  ];
  const binary = fidelioBinary(options.binary);
  const child: ChildProcess = spawn(binary, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const log: string[] = [];
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const up = new Promise<void>((resolve, reject) => {
    if (child.stderr) {
      createInterface({ input: child.stderr }).on('line', (line) => {
        log.push(line);
        if (process.env.FIDELIO_VERBOSE) console.error(`[fidelio] ${line}`);
        if (line.startsWith('fidelio: browser gateway token:')) resolve();
      });
    }
    child.once('error', (error) =>
      reject(new Error(`cannot run ${binary} (set FIDELIO_BIN or the fidelioBinary option): ${error.message}`)),
    );
    void exited.then(({ code, signal }) =>
      reject(new Error(`fidelio serve exited (${code ?? signal}) before its gateway was up:\n${log.join('\n')}`)),
    );
  });
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await withDeadline(exited, 20_000, 'stopping fidelio serve').catch(() => child.kill('SIGKILL'));
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await withDeadline(up, options.timeout ?? 60_000, 'starting fidelio serve --browser');
    const written = JSON.parse(await readFile(tokenFile, 'utf8')) as { url: string; token: string };
    return { url: written.url, token: written.token, started: true, tokenFile, log, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** A daemon that is already running (nothing is started or stopped). */
export function attachDaemon(gateway: GatewayAddress): DaemonHandle {
  return { ...gateway, started: false, log: [], stop: async () => {} };
}

/**
 * The gateway to attach to from the environment: `FIDELIO_GATEWAY` (URL) with `FIDELIO_TOKEN`,
 * or `FIDELIO_TOKEN_FILE` (a daemon's token file); `undefined` when neither is set.
 */
export async function gatewayFromEnvironment(): Promise<GatewayAddress | undefined> {
  const url = process.env.FIDELIO_GATEWAY;
  const token = process.env.FIDELIO_TOKEN;
  if (url && token) return { url, token };
  const file = process.env.FIDELIO_TOKEN_FILE;
  if (file) {
    const written = JSON.parse(await readFile(file, 'utf8')) as { url: string; token: string };
    return { url: written.url, token: written.token };
  }
  if (url || token) {
    throw new Error('FIDELIO_GATEWAY and FIDELIO_TOKEN go together');
  }
  return undefined;
}

/**
 * Writes lane A's Chromium extension with the gateway's URL and token baked in (`config.json`)
 * to a new directory: copied from `$FIDELIO_EXTENSION_DIR` or the repository's
 * `browser/chromium-extension`, else written by `fidelio browser extension --bake`.
 */
export async function bakeExtension(gateway: GatewayAddress, binary?: string): Promise<string> {
  const out = await mkdtemp(path.join(os.tmpdir(), 'fidelio-extension-'));
  const source =
    process.env.FIDELIO_EXTENSION_DIR ?? path.resolve(packageRoot, '..', 'chromium-extension');
  if (existsSync(path.join(source, 'manifest.json'))) {
    await mkdir(out, { recursive: true });
    await cp(source, out, { recursive: true });
    await writeFile(path.join(out, 'config.json'), JSON.stringify({ url: gateway.url, token: gateway.token }), {
      mode: 0o600,
    });
    return out;
  }
  await new Promise<void>((resolve, reject) => {
    const child = spawn(
      fidelioBinary(binary),
      ['browser', 'extension', '--out', out, '--bake', '--url', gateway.url, '--token', gateway.token],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let output = '';
    child.stderr?.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    child.once('error', reject);
    child.once('exit', (code) =>
      code === 0 ? resolve() : reject(new Error(`fidelio browser extension failed (${code}): ${output}`)),
    );
  });
  return out;
}

/** Lane B's Playwright installer (`browser/shim/playwright.mjs`): `$FIDELIO_SHIM`, or the
 * repository's copy next to this package. */
export function shimModulePath(): string {
  return process.env.FIDELIO_SHIM ?? path.resolve(packageRoot, '..', 'shim', 'playwright.mjs');
}
