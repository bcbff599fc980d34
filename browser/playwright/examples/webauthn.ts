// What a relying party's page does — navigator.credentials.create()/get() — as functions for
// page.evaluate(), and the checks its server would make, with node:crypto.

import { createHash, verify, type KeyObject } from 'node:crypto';

import { fromBase64Url } from '@fidelio/playwright';

export interface CeremonyResult {
  id?: string;
  response?: Record<string, string>;
  error?: { name: string; message: string };
}

/** Runs in the page: a registration, answered as RegistrationResponseJSON or `{error}`. */
export async function register(params: {
  rpId: string;
  userId: string;
  residentKey?: 'required' | 'discouraged';
  userVerification?: 'required' | 'preferred' | 'discouraged';
}): Promise<CeremonyResult> {
  try {
    const publicKey = PublicKeyCredential.parseCreationOptionsFromJSON({
      rp: { id: params.rpId, name: 'Shop' },
      user: { id: params.userId, name: 'alice@example.com', displayName: 'Alice' },
      challenge: 'cmVnaXN0ZXItY2hhbGxlbmdl',
      pubKeyCredParams: [{ type: 'public-key', alg: -7 }],
      authenticatorSelection: {
        residentKey: params.residentKey ?? 'required',
        userVerification: params.userVerification ?? 'preferred',
      },
      timeout: 30_000,
    });
    const credential = (await navigator.credentials.create({ publicKey })) as PublicKeyCredential;
    return credential.toJSON() as CeremonyResult;
  } catch (error) {
    const e = error as Error;
    return { error: { name: e.name, message: e.message } };
  }
}

/** Runs in the page: a sign-in, answered as AuthenticationResponseJSON or `{error}`. */
export async function login(params: {
  rpId: string;
  allow?: string[];
  mediation?: CredentialMediationRequirement;
}): Promise<CeremonyResult> {
  try {
    const publicKey = PublicKeyCredential.parseRequestOptionsFromJSON({
      rpId: params.rpId,
      challenge: 'bG9naW4tY2hhbGxlbmdl',
      allowCredentials: (params.allow ?? []).map((id) => ({ type: 'public-key' as const, id })),
      userVerification: 'discouraged',
      timeout: 30_000,
    });
    const request: CredentialRequestOptions = { publicKey };
    if (params.mediation !== undefined) request.mediation = params.mediation;
    const credential = (await navigator.credentials.get(request)) as PublicKeyCredential;
    return credential.toJSON() as CeremonyResult;
  } catch (error) {
    const e = error as Error;
    return { error: { name: e.name, message: e.message } };
  }
}

/** What the RP's server checks of an assertion: the signature over authenticatorData ‖
 * SHA-256(clientDataJSON) with the credential's public key. Returns the authenticator data. */
export function verifyAssertion(result: CeremonyResult, publicKey: KeyObject): Uint8Array {
  const response = result.response ?? {};
  const authenticatorData = fromBase64Url(response.authenticatorData ?? '');
  const clientDataHash = createHash('sha256').update(fromBase64Url(response.clientDataJSON ?? '')).digest();
  const signed = Buffer.concat([authenticatorData, clientDataHash]);
  if (!verify('sha256', signed, publicKey, fromBase64Url(response.signature ?? ''))) {
    throw new Error('the assertion signature does not verify');
  }
  return authenticatorData;
}

export function flags(authenticatorData: Uint8Array): number {
  return authenticatorData[32] ?? 0;
}

export function signCount(authenticatorData: Uint8Array): number {
  return new DataView(authenticatorData.buffer, authenticatorData.byteOffset).getUint32(33);
}
