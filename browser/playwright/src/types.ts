// The control API's shapes (docs/control-api.md): the W3C WebDriver "Virtual Authenticators"
// vocabulary (WebAuthn L3 §11) and CDP's WebAuthn domain. Binary values travel as base64url
// strings; the client accepts bytes too.

/** base64url without padding, as the control API writes binary values. */
export type Base64Url = string;

/** Bytes for the control API: base64url (or standard base64) text, or the bytes themselves. */
export type BinaryInput = string | Uint8Array | ArrayBuffer;

/** Where ceremonies go: lane A (Chromium's own WebAuthn client, through the extension) or lane B
 * (an injected shim, any engine). */
export type FidelioLane = 'A' | 'B';

/** WebDriver's authenticator configuration ("Add Virtual Authenticator"). Absent members take
 * WebDriver's defaults: no resident keys, no user verification, consenting user. */
export interface VirtualAuthenticatorOptions {
  /** `ctap2` (CTAP 2.0) or `ctap2_1`; the device always speaks CTAP 2.1. Default `ctap2_1`. */
  protocol?: 'ctap2' | 'ctap2_1';
  /** CDP's spelling of the CTAP 2 version. */
  ctap2Version?: 'ctap2_0' | 'ctap2_1';
  /** Default `usb`; `internal` makes a platform authenticator. */
  transport?: 'usb' | 'nfc' | 'ble' | 'smart-card' | 'hybrid' | 'internal';
  /** Discoverable credentials (passkeys). Default false. */
  hasResidentKey?: boolean;
  /** Built-in user verification (a "fingerprint"). Default false. */
  hasUserVerification?: boolean;
  /** Presence tests succeed at once (false: refused). Default true. */
  isUserConsenting?: boolean;
  /** Built-in user verification recognises the user. Default false. */
  isUserVerified?: boolean;
  /** Extensions the authenticator must support (all of Fidelio's are always on). */
  extensions?: string[];
  /** BE flag of new credentials. Default false. */
  defaultBackupEligibility?: boolean;
  /** BS flag of new credentials. Default false. */
  defaultBackupState?: boolean;
}

/** An authenticator as the control API describes it. */
export interface AuthenticatorProperties {
  authenticatorId: string;
  /** Whether "Add Virtual Authenticator" configured it (else: as `fidelio serve` started). */
  added: boolean;
  protocol: 'ctap2' | 'ctap2_1';
  transport: string;
  hasResidentKey: boolean;
  hasUserVerification: boolean;
  isUserConsenting: boolean;
  isUserVerified: boolean;
  extensions: string[];
  defaultBackupEligibility: boolean;
  defaultBackupState: boolean;
  hasLargeBlob: boolean;
  hasCredBlob: boolean;
  hasMinPinLength: boolean;
  hasPrf: boolean;
  /** How presence is answered now. */
  presence: 'auto' | 'deny' | 'prompt';
  /** The AAGUID, as a UUID. */
  aaguid: string;
}

/** WebDriver's credential parameters ("Add Credential"). */
export interface CredentialInput {
  credentialId: BinaryInput;
  /** Discoverable (a passkey); false: found only through allowCredentials. */
  isResidentCredential: boolean;
  rpId: string;
  /** PKCS#8 DER of a P-256 (ES256) or Ed25519 (EdDSA) private key. */
  privateKey: BinaryInput;
  /** Required for a discoverable credential (1–64 bytes). */
  userHandle?: BinaryInput;
  /** Where the credential's own signature counter starts. Default 0. */
  signCount?: number;
  /** The credential's large blob (discoverable credentials only). */
  largeBlob?: BinaryInput;
  /** Default: the authenticator's defaultBackupEligibility. */
  backupEligibility?: boolean;
  /** Default: the authenticator's defaultBackupState. */
  backupState?: boolean;
  userName?: string;
  userDisplayName?: string;
  /** credProtect level. Default 1. */
  credProtect?: 1 | 2 | 3;
}

/** A credential without its secrets (what add, set properties, remove and events show). */
export interface CredentialInfo {
  credentialId: Base64Url;
  isResidentCredential: boolean;
  rpId: string;
  userHandle?: Base64Url;
  signCount: number;
  backupEligibility: boolean;
  backupState: boolean;
  userName?: string;
  userDisplayName?: string;
  /** COSE algorithm: -7 (ES256) or -8 (EdDSA). */
  algorithm: -7 | -8;
  credProtect: 1 | 2 | 3;
  /** Added through the control API (its ID is the one it came with). */
  imported: boolean;
}

/** A credential with its secrets (Get Credentials). Treat it as the secret it is. */
export interface Credential extends CredentialInfo {
  /** PKCS#8 DER, base64url. */
  privateKey: Base64Url;
  largeBlob?: Base64Url;
}

/** A device of the daemon (`/v1/control/devices`, docs/devices.md). */
export interface DeviceInfo {
  authenticatorId: string;
  profile: 'security-key' | 'synced-passkey' | 'platform';
  plugged: boolean;
  /** Its UDP lane (`127.0.0.1:PORT`). */
  udp: string | null;
  preferred: boolean;
  createdMs: number;
  properties: AuthenticatorProperties;
}

/** What a new device is made of: a profile, then overrides. */
export interface NewDeviceOptions {
  id?: string;
  profile?: 'security-key' | 'synced-passkey' | 'platform';
  aaguid?: string;
  algorithms?: Array<'ES256' | 'EdDSA'>;
  counter?: 'global' | 'per-credential' | 'zero';
  attestation?: 'none' | 'self';
  backupEligible?: boolean;
  backupState?: boolean;
  alwaysUv?: boolean;
  /** Built-in user verification (on for `platform`). */
  uv?: boolean;
  residentKeys?: boolean;
  maxDiscoverableCredentials?: number;
  transports?: string[];
  /** Its UDP lane, loopback (default `127.0.0.1:0`). */
  udp?: string;
}

/** An export of a device's credentials. `document` holds PRIVATE KEYS. */
export interface CredentialExport {
  document: string;
  format: 'cxf' | 'webdriver' | 'playwright';
  count: number;
  warnings: string[];
}

/** One injected fault (docs/control-api.md, "Fault injection"). */
export type Fault = { type: string; command?: string | number; count?: number } & Record<string, unknown>;

/** An account a conditional request offers (what a browser's autofill menu lists). */
export interface ConditionalAccount {
  authenticatorId: string;
  credentialId: Base64Url;
  userHandle?: Base64Url;
  userName?: string;
  userDisplayName?: string;
}

/** A conditional-mediation `get()` (passkey autofill) waiting for an account to be picked. */
export interface ConditionalRequest {
  /** What {@link FidelioClient.selectAccount} takes. */
  id: string;
  origin: string;
  topOrigin?: string;
  rpId: string;
  sinceMs: number;
  accounts: ConditionalAccount[];
}

export type FidelioEventType =
  | 'credentialAdded'
  | 'credentialAsserted'
  | 'credentialUpdated'
  | 'credentialDeleted';

/** One event of the device: from a CTAP request that succeeded (`source: 'ctap'`, with the lane
 * it came through) or from the control API (`source: 'control'`). */
export interface FidelioEvent {
  /** Numbered from 1, without gaps. */
  seq: number;
  type: FidelioEventType;
  authenticatorId: string;
  timeMs: number;
  source: 'ctap' | 'control';
  lane?: 'udp' | 'uhid' | 'usbip' | 'gateway';
  credential: Partial<CredentialInfo> & {
    credentialId: Base64Url;
    /** credentialAsserted: the authData flags. */
    flags?: { up: boolean; uv: boolean; be: boolean; bs: boolean };
    /** A U2F (CTAP1) registration or authentication. */
    u2f?: boolean;
  };
}

/** One answer of the events long poll. */
export interface EventBatch {
  events: FidelioEvent[];
  /** Pass as `after` next time. */
  next: number;
  /** The latest event's number. */
  last: number;
  /** Events after `after` were already dropped from the daemon's ring (4096 kept). */
  dropped: boolean;
}

/** An error answer of the control API. */
export class FidelioError extends Error {
  constructor(
    /** The HTTP status: 400 invalid argument, 401 token, 404 not found, 409 conflict or
     * unsupported, 500 store failure, 503 device stopped. */
    readonly status: number,
    /** `InvalidArgument`, `NotFound`, `Unsupported`, `CredentialExists`, `KeyStoreFull`, … */
    readonly errorName: string,
    message: string,
  ) {
    super(`${errorName}: ${message} (HTTP ${status})`);
    this.name = 'FidelioError';
  }
}
