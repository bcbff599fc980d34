// Page-side checks for lane B, shared by the Chromium (Playwright) and Firefox (puppeteer)
// tests. Each function runs inside the page (serialized by the driver), so it is
// self-contained, and returns plain data.

// A registration and a login through the page's own RP endpoints, inspecting the objects the
// page gets as a page would: prototypes, accessors, toJSON, ArrayBuffers, extension results;
// the assertion's signature is verified in the page with WebCrypto against getPublicKey().
export async function inspectCredentials({username}) {
  const api = async (path, body) => {
    const response = await fetch(path, {method: 'POST', headers: {'Content-Type': 'application/json'}, body: JSON.stringify(body)});
    const answer = await response.json();
    if (!response.ok) throw new Error(answer.error || response.statusText);
    return answer;
  };
  const b64 = (buffer) => btoa(String.fromCharCode(...new Uint8Array(buffer))).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  const desc = (proto, name) => Object.getOwnPropertyDescriptor(proto, name);
  const isNative = (fn) => typeof fn === 'function' && Function.prototype.toString.call(fn).includes('[native code]');
  // DER ECDSA signature → r||s, as WebCrypto wants it.
  const derToRaw = (der) => {
    let offset = 2;
    const integer = () => {
      const length = der[offset + 1];
      let bytes = der.slice(offset + 2, offset + 2 + length);
      offset += 2 + length;
      while (bytes.length > 32 && bytes[0] === 0) bytes = bytes.slice(1);
      const out = new Uint8Array(32);
      out.set(bytes, 32 - bytes.length);
      return out;
    };
    const raw = new Uint8Array(64);
    raw.set(integer(), 0);
    raw.set(integer(), 32);
    return raw;
  };
  try {
    const out = {};
    const registration = await api('/api/register/options', {username, residentKey: 'required'});
    const publicKey = PublicKeyCredential.parseCreationOptionsFromJSON(registration.options);
    publicKey.extensions = {...publicKey.extensions, prf: {}};
    const cred = await navigator.credentials.create({publicKey});
    const createExtensions = cred.getClientExtensionResults();
    out.create = {
      instanceofPublicKeyCredential: cred instanceof PublicKeyCredential,
      instanceofCredential: cred instanceof Credential,
      prototypeIsNative: Object.getPrototypeOf(cred) === PublicKeyCredential.prototype
        && Object.getPrototypeOf(cred.response) === AuthenticatorAttestationResponse.prototype,
      ownKeys: Reflect.ownKeys(cred).length + Reflect.ownKeys(cred.response).length,
      tag: Object.prototype.toString.call(cred),
      responseTag: Object.prototype.toString.call(cred.response),
      responseIsAttestation: cred.response instanceof AuthenticatorAttestationResponse,
      responseIsAuthenticatorResponse: cred.response instanceof AuthenticatorResponse,
      type: cred.type,
      idIsBase64urlOfRawId: cred.id === b64(cred.rawId),
      rawIdIsArrayBuffer: cred.rawId instanceof ArrayBuffer,
      sameObject: cred.rawId === cred.rawId && cred.response === cred.response,
      nativeAccessorsWork: desc(PublicKeyCredential.prototype, 'rawId').get.call(cred) === cred.rawId
        && desc(Credential.prototype, 'id').get.call(cred) === cred.id
        && desc(AuthenticatorResponse.prototype, 'clientDataJSON').get.call(cred.response) === cred.response.clientDataJSON,
      foreignThisThrows: (() => {
        try {
          desc(PublicKeyCredential.prototype, 'rawId').get.call({});
          return 'no error';
        } catch (error) {
          return error instanceof TypeError ? 'TypeError' : String(error);
        }
      })(),
      authenticatorAttachment: cred.authenticatorAttachment,
      transports: cred.response.getTransports(),
      publicKeyAlgorithm: cred.response.getPublicKeyAlgorithm(),
      publicKeyIsArrayBuffer: cred.response.getPublicKey() instanceof ArrayBuffer,
      authenticatorDataIsArrayBuffer: cred.response.getAuthenticatorData() instanceof ArrayBuffer,
      attestationObjectIsArrayBuffer: cred.response.attestationObject instanceof ArrayBuffer,
      clientDataJSONIsArrayBuffer: cred.response.clientDataJSON instanceof ArrayBuffer,
      clientData: JSON.parse(new TextDecoder().decode(cred.response.clientDataJSON)),
      credProps: createExtensions.credProps ?? null,
      prf: createExtensions.prf ?? null,
      toJSONMatchesStringify: JSON.stringify(cred) === JSON.stringify(cred.toJSON()),
      toJSONKeys: Object.keys(cred.toJSON()),
      toJSONResponseKeys: Object.keys(cred.toJSON().response).sort(),
      looksNative: [navigator.credentials.create, navigator.credentials.get, PublicKeyCredential.prototype.toJSON,
        desc(PublicKeyCredential.prototype, 'rawId').get, PublicKeyCredential.isUserVerifyingPlatformAuthenticatorAvailable].every(isNative),
    };
    // The RP offers EdDSA first (@simplewebauthn's default list), then ES256.
    const algorithm = cred.response.getPublicKeyAlgorithm();
    const keyAlgorithm = algorithm === -8 ? {name: 'Ed25519'} : {name: 'ECDSA', namedCurve: 'P-256'};
    const key = await crypto.subtle.importKey('spki', cred.response.getPublicKey(), keyAlgorithm, false, ['verify']);
    // The RP gets what JSON.stringify makes of the credential (toJSON, as a page would send it).
    out.registration = await api('/api/register/verify', {ceremonyId: registration.ceremonyId, response: JSON.parse(JSON.stringify(cred))});

    const login = await api('/api/login/options', {username});
    const request = PublicKeyCredential.parseRequestOptionsFromJSON(login.options);
    request.extensions = {prf: {eval: {first: new TextEncoder().encode('fidelio prf salt')}}};
    const assertion = await navigator.credentials.get({publicKey: request});
    const getExtensions = assertion.getClientExtensionResults();
    const authData = new Uint8Array(assertion.response.authenticatorData);
    const hash = new Uint8Array(await crypto.subtle.digest('SHA-256', assertion.response.clientDataJSON));
    const signed = new Uint8Array(authData.length + hash.length);
    signed.set(authData);
    signed.set(hash, authData.length);
    out.get = {
      instanceofPublicKeyCredential: assertion instanceof PublicKeyCredential,
      responseIsAssertion: assertion.response instanceof AuthenticatorAssertionResponse,
      tag: Object.prototype.toString.call(assertion),
      responseTag: Object.prototype.toString.call(assertion.response),
      ownKeys: Reflect.ownKeys(assertion).length + Reflect.ownKeys(assertion.response).length,
      signatureIsArrayBuffer: assertion.response.signature instanceof ArrayBuffer,
      userHandleIsArrayBuffer: assertion.response.userHandle instanceof ArrayBuffer,
      sameCredential: assertion.id === cred.id,
      prfFirstIsArrayBuffer: getExtensions.prf?.results?.first instanceof ArrayBuffer,
      prfFirstLength: getExtensions.prf?.results?.first?.byteLength ?? null,
      prfInJSONIsBase64url: typeof assertion.toJSON().clientExtensionResults?.prf?.results?.first === 'string',
      attestationMethodsRefuse: (() => {
        try {
          AuthenticatorAttestationResponse.prototype.getPublicKey.call(assertion.response);
          return 'no error';
        } catch (error) {
          return error instanceof TypeError ? 'TypeError' : String(error);
        }
      })(),
      signatureVerifiedWithGetPublicKey: algorithm === -8
        ? await crypto.subtle.verify({name: 'Ed25519'}, key, assertion.response.signature, signed)
        : await crypto.subtle.verify({name: 'ECDSA', hash: 'SHA-256'}, key, derToRaw(new Uint8Array(assertion.response.signature)), signed),
    };
    out.login = await api('/api/login/verify', {ceremonyId: login.ceremonyId, response: assertion.toJSON()});
    return out;
  } catch (error) {
    return {error: {name: error?.name, message: String(error?.message ?? error)}};
  }
}

// The statics and the argument handling a page can observe without an authenticator answer.
export async function inspectStatics() {
  const outcome = (promise) => Promise.resolve(promise).then(
    (value) => ({resolved: value === null ? null : typeof value}),
    (error) => ({name: error?.name ?? null, message: String(error?.message ?? error), isDOMException: error instanceof DOMException, error: error === 'my reason' ? 'my reason' : undefined}));
  const challenge = crypto.getRandomValues(new Uint8Array(32));
  const aborted = new AbortController();
  aborted.abort();
  const withReason = new AbortController();
  const pendingWithReason = navigator.credentials.get({publicKey: {challenge, timeout: 60_000}, signal: withReason.signal});
  withReason.abort('my reason');
  return {
    isUvpaa: await PublicKeyCredential.isUserVerifyingPlatformAuthenticatorAvailable(),
    isConditionalMediationAvailable: await PublicKeyCredential.isConditionalMediationAvailable(),
    capabilities: typeof PublicKeyCredential.getClientCapabilities === 'function' ? await PublicKeyCredential.getClientCapabilities() : null,
    missingMembers: await outcome(navigator.credentials.create({publicKey: {}})),
    challengeNotABuffer: await outcome(navigator.credentials.get({publicKey: {challenge: 'not bytes'}})),
    // Conditional get waits for an account (tested with the control API); create is refused.
    conditional: await outcome(navigator.credentials.create({mediation: 'conditional', publicKey: {}})),
    alreadyAborted: await outcome(navigator.credentials.get({publicKey: {challenge}, signal: aborted.signal})),
    abortedWithReason: await outcome(pendingWithReason),
  };
}
