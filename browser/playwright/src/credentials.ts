// Credentials made in the test: a fresh key pair (node:crypto), in the shape Add Credential
// takes, with the public key to verify assertions against.

import { Buffer } from 'node:buffer';
import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';

import { fromBase64Url, toBase64Url } from './client.js';
import type { BinaryInput, CredentialInput } from './types.js';

/** What {@link createCredential} makes. */
export interface CreatedCredential {
  /** Ready for `fidelio.addCredential()`. */
  input: CredentialInput & { credentialId: string; privateKey: string };
  /** The public half, to verify signatures (`crypto.verify`). */
  publicKey: KeyObject;
}

/** Options of {@link createCredential}. */
export interface CreateCredentialOptions {
  rpId: string;
  /** Default: a discoverable credential (a passkey). */
  isResidentCredential?: boolean;
  /** Default: 16 random bytes for a discoverable credential. */
  userHandle?: BinaryInput;
  /** Default: 32 random bytes. */
  credentialId?: BinaryInput;
  /** `ES256` (P-256, default) or `EdDSA` (Ed25519). */
  algorithm?: 'ES256' | 'EdDSA';
  signCount?: number;
  userName?: string;
  userDisplayName?: string;
  backupEligibility?: boolean;
  backupState?: boolean;
  largeBlob?: BinaryInput;
}

/** A new credential with a key made here. */
export function createCredential(options: CreateCredentialOptions): CreatedCredential {
  const { privateKey, publicKey } =
    options.algorithm === 'EdDSA'
      ? generateKeyPairSync('ed25519')
      : generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const pkcs8 = privateKey.export({ format: 'der', type: 'pkcs8' });
  const discoverable = options.isResidentCredential ?? true;
  const input: CreatedCredential['input'] = {
    credentialId: toBase64Url(options.credentialId ?? randomBytes(32)),
    isResidentCredential: discoverable,
    rpId: options.rpId,
    privateKey: toBase64Url(pkcs8),
  };
  const userHandle = options.userHandle ?? (discoverable ? randomBytes(16) : undefined);
  if (userHandle !== undefined) input.userHandle = toBase64Url(userHandle);
  if (options.signCount !== undefined) input.signCount = options.signCount;
  if (options.userName !== undefined) input.userName = options.userName;
  if (options.userDisplayName !== undefined) input.userDisplayName = options.userDisplayName;
  if (options.backupEligibility !== undefined) input.backupEligibility = options.backupEligibility;
  if (options.backupState !== undefined) input.backupState = options.backupState;
  if (options.largeBlob !== undefined) input.largeBlob = toBase64Url(options.largeBlob);
  return { input, publicKey };
}

/** The public key of a PKCS#8 private key (as Get Credentials exports it). */
export function publicKeyOf(privateKey: BinaryInput): KeyObject {
  const der = typeof privateKey === 'string' ? fromBase64Url(privateKey) : privateKey;
  const bytes = der instanceof ArrayBuffer ? new Uint8Array(der) : der;
  return createPublicKey(createPrivateKey({ key: Buffer.from(bytes), format: 'der', type: 'pkcs8' }));
}
