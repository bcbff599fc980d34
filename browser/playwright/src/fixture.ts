// The Playwright fixture: a Fidelio daemon per worker (or one attached to), ceremonies routed
// to it through lane A (Chromium: the extension, in a persistent context) or lane B (the injected
// shim, any engine), a clean device for every test, and the control API as `fidelio`.

import { rm } from 'node:fs/promises';
import { pathToFileURL } from 'node:url';

import { test as base, type BrowserContext } from '@playwright/test';

import { FidelioClient, type GatewayAddress } from './client.js';
import {
  attachDaemon,
  bakeExtension,
  type DaemonHandle,
  gatewayFromEnvironment,
  shimModulePath,
  startDaemon,
} from './daemon.js';
import type { FidelioLane } from './types.js';

/** The control API of the test's authenticator, and which lane the test's browser uses. */
export class Fidelio extends FidelioClient {
  /** `A` (Chromium's own WebAuthn client, through the extension) or `B` (the injected shim). */
  readonly lane: FidelioLane;
  /** The daemon (its URL and token; `started` false when attached). */
  readonly daemon: DaemonHandle;

  constructor(daemon: DaemonHandle, lane: FidelioLane, authenticatorId = 'default') {
    super(daemon, authenticatorId);
    this.lane = lane;
    this.daemon = daemon;
  }
}

/** Worker-scoped options (set them in `use` of the config or a project). */
export interface FidelioWorkerOptions {
  /** Attach to this gateway instead of starting a daemon per worker. Default: the environment's
   * `FIDELIO_GATEWAY` + `FIDELIO_TOKEN` or `FIDELIO_TOKEN_FILE`, else a new daemon per worker. */
  fidelioGateway: GatewayAddress | undefined;
  /** The `fidelio` binary. Default: `$FIDELIO_BIN`, else `fidelio` on the PATH. */
  fidelioBinary: string | undefined;
  /** More `fidelio serve` arguments for started daemons, e.g. `['--profile', 'platform']`. */
  fidelioServeArgs: string[];
  /** `auto` (default): lane A in Chromium, lane B elsewhere; or force `A` or `B`. */
  fidelioLane: 'auto' | FidelioLane;
}

/** Test-scoped options. */
export interface FidelioTestOptions {
  /** Wipe the authenticator and restore its start-up settings before each test (WebDriver
   * "Remove Virtual Authenticator"). Default true. */
  fidelioReset: boolean;
}

/** The fixtures this package adds. */
export interface FidelioFixtures extends FidelioTestOptions {
  /** The control API, typed; see {@link Fidelio}. */
  fidelio: Fidelio;
  /** The lane this test's `context` and `page` use. */
  fidelioLaneInUse: FidelioLane;
  _fidelioReset: void;
}

/** Worker fixtures. */
export interface FidelioWorkerFixtures extends FidelioWorkerOptions {
  /** The worker's daemon. */
  fidelioDaemon: DaemonHandle;
  _fidelioExtension: () => Promise<string>;
}

function laneFor(option: 'auto' | FidelioLane, browserName: string): FidelioLane {
  if (option === 'A' || option === 'B') return option;
  return browserName === 'chromium' ? 'A' : 'B';
}

/** Waits until lane A's extension has attached Chromium's WebAuthn proxy and found the gateway. */
async function extensionReady(context: BrowserContext): Promise<void> {
  const worker =
    context.serviceWorkers().find((w) => w.url().startsWith('chrome-extension://')) ??
    (await context.waitForEvent('serviceworker', { timeout: 60_000 }));
  const ready = (await worker.evaluate(
    () => (self as unknown as { fidelioReady: Promise<unknown> }).fidelioReady,
  )) as { attached?: boolean; attachError?: string; gateway?: unknown };
  if (!ready.attached) {
    throw new Error(`Fidelio's extension could not attach the WebAuthn proxy: ${ready.attachError ?? 'unknown'}`);
  }
  if (!ready.gateway) throw new Error("Fidelio's extension did not reach the gateway");
}

/**
 * Playwright's `test` with Fidelio:
 *
 * ```ts
 * import { test, expect } from '@fidelio/playwright';
 *
 * test('passkey login', async ({ page, fidelio }) => {
 *   await page.goto('https://localhost:3000/register');      // navigator.credentials.* → Fidelio
 *   const [credential] = await fidelio.getCredentials();
 * });
 * ```
 */
export const test = base.extend<FidelioFixtures, FidelioWorkerFixtures>({
  fidelioGateway: [undefined, { option: true, scope: 'worker' }],
  fidelioBinary: [undefined, { option: true, scope: 'worker' }],
  fidelioServeArgs: [[], { option: true, scope: 'worker' }],
  fidelioLane: ['auto', { option: true, scope: 'worker' }],
  fidelioReset: [true, { option: true }],

  fidelioDaemon: [
    async ({ fidelioGateway, fidelioBinary, fidelioServeArgs }, use) => {
      const gateway = fidelioGateway ?? (await gatewayFromEnvironment());
      const daemon = gateway
        ? attachDaemon(gateway)
        : await startDaemon({ binary: fidelioBinary, args: fidelioServeArgs });
      try {
        await use(daemon);
      } finally {
        await daemon.stop();
      }
    },
    { scope: 'worker', timeout: 90_000 },
  ],

  _fidelioExtension: [
    async ({ fidelioDaemon, fidelioBinary }, use) => {
      let baked: Promise<string> | undefined;
      await use(() => (baked ??= bakeExtension(fidelioDaemon, fidelioBinary)));
      if (baked) await rm(await baked, { recursive: true, force: true }).catch(() => {});
    },
    { scope: 'worker' },
  ],

  _fidelioReset: [
    async ({ fidelioDaemon, fidelioReset }, use) => {
      if (fidelioReset) {
        // A clean daemon: devices a test added are removed, the default one is wiped, plugged
        // in, preferred and rid of faults.
        const client = new FidelioClient(fidelioDaemon);
        for (const device of await client.listDevices()) {
          if (device.authenticatorId !== client.authenticatorId) {
            await client.forDevice(device.authenticatorId).removeDevice();
          }
        }
        await client.removeAuthenticator();
        await client.plug();
        await client.prefer();
      }
      await use();
    },
    { auto: true },
  ],

  fidelioLaneInUse: async ({ fidelioLane, browserName }, use) => {
    await use(laneFor(fidelioLane, browserName));
  },

  context: async (
    { context, fidelioLaneInUse, fidelioDaemon, _fidelioExtension, playwright, launchOptions, headless, contextOptions, viewport, baseURL, ignoreHTTPSErrors },
    use,
    testInfo,
  ) => {
    if (fidelioLaneInUse === 'B') {
      const shim = (await import(pathToFileURL(shimModulePath()).href)) as {
        installFidelio: (target: BrowserContext, options: GatewayAddress) => Promise<unknown>;
      };
      await shim.installFidelio(context, { url: fidelioDaemon.url, token: fidelioDaemon.token });
      await use(context);
      return;
    }
    // Lane A: the extension needs a persistent context of its own (one per test, a fresh
    // profile), launched like the configured browser.
    const extension = await _fidelioExtension();
    const executablePath = launchOptions.executablePath ?? process.env.CHROMIUM_BIN;
    const persistent = await playwright.chromium.launchPersistentContext(testInfo.outputPath('fidelio-profile'), {
      ...launchOptions,
      ...contextOptions,
      ...(executablePath ? { executablePath } : {}),
      headless,
      viewport,
      baseURL,
      ignoreHTTPSErrors,
      args: [
        ...(launchOptions.args ?? []),
        `--disable-extensions-except=${extension}`,
        `--load-extension=${extension}`,
      ],
    });
    try {
      await extensionReady(persistent);
      await use(persistent);
    } finally {
      await persistent.close();
    }
  },

  fidelio: async ({ fidelioDaemon, fidelioLaneInUse, _fidelioReset }, use) => {
    void _fidelioReset;
    const fidelio = new Fidelio(fidelioDaemon, fidelioLaneInUse);
    // waitForEvent() sees what happens in this test only.
    await fidelio.skipEvents();
    await use(fidelio);
  },
});

export { expect } from '@playwright/test';
