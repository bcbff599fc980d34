// @fidelio/playwright: WebAuthn ceremonies in Playwright tests against a real (virtual)
// authenticator, Fidelio, with its control API as typed methods. See README.md.

export { expect, Fidelio, test } from './fixture.js';
export type {
  FidelioFixtures,
  FidelioTestOptions,
  FidelioWorkerFixtures,
  FidelioWorkerOptions,
} from './fixture.js';
export { FidelioClient, fromBase64Url, toBase64Url } from './client.js';
export type { GatewayAddress, WaitForEventOptions } from './client.js';
export { createCredential, publicKeyOf } from './credentials.js';
export type { CreateCredentialOptions, CreatedCredential } from './credentials.js';
export {
  attachDaemon,
  bakeExtension,
  fidelioBinary,
  gatewayFromEnvironment,
  shimModulePath,
  startDaemon,
} from './daemon.js';
export type { DaemonHandle, StartDaemonOptions } from './daemon.js';
export { FidelioError } from './types.js';
export type {
  AuthenticatorProperties,
  Base64Url,
  BinaryInput,
  ConditionalAccount,
  ConditionalRequest,
  CredentialExport,
  DeviceInfo,
  Fault,
  NewDeviceOptions,
  Credential,
  CredentialInfo,
  CredentialInput,
  EventBatch,
  FidelioEvent,
  FidelioEventType,
  FidelioLane,
  VirtualAuthenticatorOptions,
} from './types.js';
