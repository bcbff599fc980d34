// The control API client: typed methods over `fidelio serve --browser`'s /v1/control/…
// endpoints (loopback HTTP, Bearer token). Usable without Playwright.

import { Buffer } from 'node:buffer';

import {
  type AuthenticatorProperties,
  type BinaryInput,
  type ConditionalAccount,
  type ConditionalRequest,
  type CredentialExport,
  type DeviceInfo,
  type Fault,
  type NewDeviceOptions,
  type Credential,
  type CredentialInfo,
  type CredentialInput,
  type EventBatch,
  FidelioError,
  type FidelioEvent,
  type FidelioEventType,
  type VirtualAuthenticatorOptions,
} from './types.js';

/** Bytes or base64 text → base64url without padding. */
export function toBase64Url(value: BinaryInput): string {
  if (typeof value === 'string') {
    // Accept standard base64 and padding; normalise.
    return value.replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_');
  }
  const bytes = value instanceof ArrayBuffer ? new Uint8Array(value) : value;
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64url');
}

/** base64url (or base64) text → bytes. */
export function fromBase64Url(value: string): Uint8Array {
  return new Uint8Array(Buffer.from(toBase64Url(value), 'base64url'));
}

/** Where a daemon's gateway is: its base URL and token. */
export interface GatewayAddress {
  url: string;
  token: string;
}

/** Options of a long wait for an event. */
export interface WaitForEventOptions {
  /** How long to wait in all, in ms. Default 30 000. */
  timeout?: number;
}

/**
 * The control API of one authenticator of a Fidelio daemon.
 *
 * ```ts
 * const client = new FidelioClient({url: 'http://127.0.0.1:8113', token});
 * await client.addCredential({credentialId, isResidentCredential: true, rpId, privateKey, userHandle});
 * ```
 */
export class FidelioClient {
  readonly url: string;
  readonly authenticatorId: string;
  readonly #token: string;
  /** The events cursor of {@link waitForEvent}: events numbered above it are still to be seen. */
  cursor = 0;

  constructor(gateway: GatewayAddress, authenticatorId = 'default') {
    this.url = gateway.url.replace(/\/+$/, '');
    this.#token = gateway.token;
    this.authenticatorId = authenticatorId;
  }

  /** Sends one request; resolves with the answer's `ok` value, rejects with a {@link FidelioError}. */
  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = { authorization: `Bearer ${this.#token}` };
    let payload: string | undefined;
    if (body !== undefined) {
      headers['content-type'] = 'application/json';
      payload = JSON.stringify(body);
    }
    const response = await fetch(`${this.url}${path}`, { method, headers, body: payload });
    const text = await response.text();
    let answer: { ok?: T; error?: { name?: string; message?: string } };
    try {
      answer = JSON.parse(text) as typeof answer;
    } catch {
      throw new FidelioError(response.status, 'BadAnswer', `not JSON: ${text.slice(0, 200)}`);
    }
    if (!response.ok || answer.error !== undefined) {
      throw new FidelioError(
        response.status,
        answer.error?.name ?? 'Error',
        answer.error?.message ?? response.statusText,
      );
    }
    return answer.ok as T;
  }

  #device(suffix = ''): string {
    return `/v1/control/authenticator/${encodeURIComponent(this.authenticatorId)}${suffix}`;
  }

  /** Every authenticator of the daemon (one today: `default`). */
  listAuthenticators(): Promise<AuthenticatorProperties[]> {
    return this.request('GET', '/v1/control/authenticator');
  }

  /** This authenticator's properties. */
  getAuthenticator(): Promise<AuthenticatorProperties> {
    return this.request('GET', this.#device());
  }

  /**
   * WebDriver "Add Virtual Authenticator": reconfigures the daemon's default device with
   * `options` and wipes it; resolves with its ID. A second add without a remove starts a new
   * device (its own ID; use `new FidelioClient(gateway, id)` to drive it).
   */
  async addAuthenticator(options: VirtualAuthenticatorOptions = {}): Promise<string> {
    const added = await this.request<{ authenticatorId: string }>(
      'POST',
      '/v1/control/authenticator',
      options,
    );
    return added.authenticatorId;
  }

  /** WebDriver "Remove Virtual Authenticator": wipes the device and restores the settings the
   * daemon started with. */
  async removeAuthenticator(): Promise<void> {
    await this.request('DELETE', this.#device());
  }

  /** WebDriver "Add Credential". */
  addCredential(credential: CredentialInput): Promise<CredentialInfo> {
    const body: Record<string, unknown> = {
      ...credential,
      credentialId: toBase64Url(credential.credentialId),
      privateKey: toBase64Url(credential.privateKey),
    };
    if (credential.userHandle !== undefined) body.userHandle = toBase64Url(credential.userHandle);
    if (credential.largeBlob !== undefined) body.largeBlob = toBase64Url(credential.largeBlob);
    return this.request('POST', this.#device('/credential'), body);
  }

  /** WebDriver "Get Credentials": every credential the device keeps, with private keys. */
  getCredentials(): Promise<Credential[]> {
    return this.request('GET', this.#device('/credentials'));
  }

  /** One credential by its ID, with its private key. */
  getCredential(credentialId: BinaryInput): Promise<Credential> {
    return this.request('GET', this.#device(`/credentials/${toBase64Url(credentialId)}`));
  }

  /** WebDriver "Remove Credential". */
  removeCredential(credentialId: BinaryInput): Promise<CredentialInfo> {
    return this.request('DELETE', this.#device(`/credentials/${toBase64Url(credentialId)}`));
  }

  /** WebDriver "Remove All Credentials"; resolves with how many there were. */
  async removeAllCredentials(): Promise<number> {
    const answer = await this.request<{ removed: number }>('DELETE', this.#device('/credentials'));
    return answer.removed;
  }

  /** WebDriver "Set Credential Properties": the credential's backup flags. */
  setCredentialProperties(
    credentialId: BinaryInput,
    properties: { backupEligibility?: boolean; backupState?: boolean },
  ): Promise<CredentialInfo> {
    return this.request(
      'POST',
      this.#device(`/credentials/${toBase64Url(credentialId)}/props`),
      properties,
    );
  }

  /** WebDriver "Set User Verified": whether built-in user verification recognises the user. */
  async setUserVerified(isUserVerified: boolean): Promise<void> {
    await this.request('POST', this.#device('/uv'), { isUserVerified });
  }

  /** Whether presence tests succeed at once (true) or are refused (false). */
  async setUserConsenting(isUserConsenting: boolean): Promise<void> {
    await this.request('POST', this.#device('/presence'), { isUserConsenting });
  }

  // --- Devices (docs/devices.md) ---------------------------------------------------------------

  /** A client for another device of the same daemon. */
  forDevice(authenticatorId: string): FidelioClient {
    return new FidelioClient({ url: this.url, token: this.#token }, authenticatorId);
  }

  #lifecycle(suffix = ''): string {
    return `/v1/control/devices/${encodeURIComponent(this.authenticatorId)}${suffix}`;
  }

  /** Every device of the daemon. */
  listDevices(): Promise<DeviceInfo[]> {
    return this.request('GET', '/v1/control/devices');
  }

  /** This device, as the daemon describes it. */
  describeDevice(): Promise<DeviceInfo> {
    return this.request('GET', this.#lifecycle());
  }

  /** Adds a device (its own store, settings and UDP lane); resolves with a client for it. */
  async newDevice(options: NewDeviceOptions = {}): Promise<FidelioClient> {
    const made = await this.request<DeviceInfo>('POST', '/v1/control/devices', options);
    return this.forDevice(made.authenticatorId);
  }

  /** A new device holding this one's credentials (a synced passkey on a new phone, or a cloned
   * security key); resolves with a client for it. */
  async cloneDevice(options: { id?: string; udp?: string } = {}): Promise<FidelioClient> {
    const made = await this.request<DeviceInfo>('POST', this.#lifecycle('/clone'), options);
    return this.forDevice(made.authenticatorId);
  }

  /** Each of the two devices gets the credentials it lacks from the other. */
  async syncWith(other: FidelioClient | string): Promise<Record<string, number>> {
    const withId = typeof other === 'string' ? other : other.authenticatorId;
    const answer = await this.request<{ copied: Record<string, number> }>(
      'POST',
      this.#lifecycle('/sync'),
      { with: withId },
    );
    return answer.copied;
  }

  /** Unplugs ("loses") the device: it answers nothing until {@link plug}. */
  async unplug(): Promise<void> {
    await this.request('POST', this.#lifecycle('/plug'), { plugged: false });
  }

  /** Plugs the device back in. */
  async plug(): Promise<void> {
    await this.request('POST', this.#lifecycle('/plug'), { plugged: true });
  }

  /** Browser registrations go to this device. */
  async prefer(): Promise<void> {
    await this.request('POST', this.#lifecycle('/prefer'));
  }

  /** Wipes the device (credentials, PIN, large blobs). */
  async resetDevice(): Promise<void> {
    await this.request('POST', this.#lifecycle('/reset'));
  }

  /** Removes an added device for good. */
  async removeDevice(): Promise<void> {
    await this.request('DELETE', this.#lifecycle());
  }

  /** The device's credentials as CXF, WebDriver/CDP or Playwright JSON. Holds private keys. */
  exportCredentials(
    options: { format?: 'cxf' | 'webdriver' | 'cdp' | 'playwright'; strict?: boolean } = {},
  ): Promise<CredentialExport> {
    const format = options.format ?? 'cxf';
    return this.request('GET', this.#lifecycle(`/export?format=${format}&strict=${options.strict === true}`));
  }

  /** Adds the credentials of a CXF, WebDriver/CDP or Playwright document. */
  importCredentials(document: string): Promise<{ imported: number; format: string; warnings: string[] }> {
    return this.request('POST', this.#lifecycle('/import'), { document });
  }

  /** Injects faults (one or several); resolves with their IDs. */
  async addFaults(...faults: Fault[]): Promise<string[]> {
    const answer = await this.request<{ faultIds: Array<string | number> }>('POST', this.#device('/faults'), {
      faults,
    });
    return answer.faultIds.map(String);
  }

  /** The active faults, with their remaining counts. */
  async listFaults(): Promise<Array<Fault & { faultId: string | number; remaining: number | null }>> {
    const answer = await this.request<{ faults: Array<Fault & { faultId: string | number; remaining: number | null }> }>(
      'GET',
      this.#device('/faults'),
    );
    return answer.faults;
  }

  /** Removes every fault. */
  async clearFaults(): Promise<void> {
    await this.request('DELETE', this.#device('/faults'));
  }

  /**
   * The conditional-mediation `get()`s (passkey autofill) waiting for the user, each with the
   * accounts a browser would offer; waits up to `waitMs` (at most 60 000) for one to appear.
   * Lane B only: Chromium's proxy API (lane A) never forwards conditional requests.
   */
  conditionalRequests(waitMs = 0): Promise<ConditionalRequest[]> {
    const wait = Math.max(0, Math.min(60_000, Math.floor(waitMs)));
    return this.request('GET', `/v1/control/conditional?wait=${wait}`);
  }

  /**
   * Plays the user picking an account in the autofill menu: waits for a conditional request
   * (of `rpId`, if given) offering an account that matches `account` (a user name or a
   * credential ID), picks it, and resolves with that account. The page's `get()` then
   * completes with it.
   */
  async selectAccount(
    account: { userName?: string; credentialId?: BinaryInput; rpId?: string },
    options: WaitForEventOptions = {},
  ): Promise<ConditionalAccount> {
    const timeout = options.timeout ?? 30_000;
    const deadline = Date.now() + timeout;
    const wanted = account.credentialId === undefined ? undefined : toBase64Url(account.credentialId);
    for (;;) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no conditional request offered that account within ${timeout} ms`);
      for (const request of await this.conditionalRequests(Math.min(left, 1_000))) {
        if (account.rpId !== undefined && request.rpId !== account.rpId) continue;
        const match = request.accounts.find(
          (offered) =>
            (wanted === undefined || offered.credentialId === wanted) &&
            (account.userName === undefined || offered.userName === account.userName),
        );
        if (match) {
          await this.request('POST', `/v1/control/conditional/${encodeURIComponent(request.id)}/select`, {
            credentialId: match.credentialId,
          });
          return match;
        }
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /** Events numbered above `after`, waiting up to `timeoutMs` (at most 60 000) for the first. */
  events(after = 0, timeoutMs = 25_000): Promise<EventBatch> {
    const wait = Math.max(0, Math.min(60_000, Math.floor(timeoutMs)));
    return this.request('GET', `/v1/control/events?after=${after}&timeout=${wait}`);
  }

  /** Moves {@link cursor} to the latest event: later waits see only what happens from now on. */
  async skipEvents(): Promise<number> {
    const batch = await this.events(0, 0);
    this.cursor = batch.last;
    return this.cursor;
  }

  /**
   * Waits for the next event of this type (and matching `predicate`) after {@link cursor};
   * events passed over on the way are consumed. Rejects after `timeout` ms.
   */
  async waitForEvent(
    type: FidelioEventType,
    predicate: (event: FidelioEvent) => boolean = () => true,
    options: WaitForEventOptions = {},
  ): Promise<FidelioEvent> {
    const deadline = Date.now() + (options.timeout ?? 30_000);
    for (;;) {
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(`no ${type} event within ${options.timeout ?? 30_000} ms`);
      }
      const batch = await this.events(this.cursor, Math.min(left, 25_000));
      for (const event of batch.events) {
        this.cursor = event.seq;
        if (event.type === type && event.authenticatorId === this.authenticatorId && predicate(event)) {
          return event;
        }
      }
      if (batch.events.length === 0) this.cursor = Math.max(this.cursor, batch.next);
    }
  }
}
