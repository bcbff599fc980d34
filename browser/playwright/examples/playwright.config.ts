// The examples run in Debian's Chromium (Playwright downloads no browser here), once through
// each lane: A (the extension) and B (the injected shim).

import { defineConfig } from '@playwright/test';
import type { FidelioTestOptions, FidelioWorkerOptions } from '@fidelio/playwright';

export default defineConfig<FidelioTestOptions, FidelioWorkerOptions>({
  testDir: '.',
  timeout: 120_000,
  expect: { timeout: 30_000 },
  workers: 1,
  reporter: [['list'], ['json', { outputFile: process.env.FIDELIO_RESULTS ?? 'test-results/results.json' }]],
  use: {
    browserName: 'chromium',
    headless: true,
    launchOptions: { executablePath: process.env.CHROMIUM_BIN ?? '/usr/bin/chromium' },
  },
  projects: [
    { name: 'lane-a', use: { fidelioLane: 'A' } },
    { name: 'lane-b', use: { fidelioLane: 'B' } },
  ],
});
