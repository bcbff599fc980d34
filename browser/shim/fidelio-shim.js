// Fidelio lane B: the WebAuthn shim. One function expression, injected by an embedder into every
// frame before the page's own scripts (Playwright: addInitScript; WebDriver BiDi: a preload
// script), that takes over navigator.credentials.create()/get() for `publicKey` and the
// PublicKeyCredential statics, and forwards each ceremony to the `fidelio serve --browser`
// gateway through the embedder:
//
//   (FIDELIO_SHIM_SOURCE)({transport})
//
// `transport(text) → Promise<text>`: the embedder's channel to Node. The shim sends a JSON
// message {op: "create"|"get"|"isUvpaa"|"cancel", doc, id, options?, opaque?} and receives the
// gateway's JSON answer text, {"ok": …} or {"error": {name, message}}. The embedder, not the
// page, says which origin is calling (it knows the calling frame), builds the gateway request
// {origin, topOrigin, sameOriginWithAncestors, requestId, options} and holds the token: nothing
// the page claims about itself widens what it may do (it may only claim to be opaque).
//
// What the page gets is as close to a browser's own objects as script allows: credentials are
// objects on the native prototypes (instanceof PublicKeyCredential, AuthenticatorAttestation/
// AssertionResponse, the right toStringTag, no own properties), and the native accessors and
// methods on those prototypes are wrapped (Proxy over the native function) so that they answer
// for the shim's objects and defer to the engine for everything else — a native getter never
// throws "Illegal invocation" on them. Binary members are ArrayBuffers; errors are the
// DOMException names a browser raises; AbortSignal and the lifetime timer are honoured (and the
// gateway told, /v1/cancel). Other credential types (password, federated, identity, otp) go to
// the engine untouched.
//
// The shim adds nothing to the page's global object (an embedder's channel may: see
// playwright.mjs).

(function fidelioShim(setup) {
  'use strict';

  const G = globalThis;
  // WebAuthn is [SecureContext]: where the engine exposes nothing, neither does the shim.
  if (!G.isSecureContext || typeof G.PublicKeyCredential !== 'function'
      || typeof G.CredentialsContainer !== 'function' || !G.navigator || !G.navigator.credentials) {
    return;
  }
  if (!setup || typeof setup.transport !== 'function') return;
  const transport = setup.transport;

  // --- Intrinsics, captured before the page can touch them -----------------------------------

  const {apply, defineProperty, getOwnPropertyDescriptor} = Reflect;
  const ObjectCreate = Object.create;
  const ObjectKeys = Object.keys;
  const ObjectGetPrototypeOf = Object.getPrototypeOf;
  const ArrayIsArray = Array.isArray;
  const PromiseCtor = Promise;
  const promiseThen = Promise.prototype.then;
  const ProxyCtor = Proxy;
  const WeakMapCtor = WeakMap;
  const weakMapGet = WeakMap.prototype.get;
  const weakMapSet = WeakMap.prototype.set;
  const MapCtor = Map;
  const mapSet = Map.prototype.set;
  const mapDelete = Map.prototype.delete;
  const mapForEach = Map.prototype.forEach;
  const Uint8ArrayCtor = Uint8Array;
  const arrayBufferIsView = ArrayBuffer.isView;
  const arrayBufferByteLength = getOwnPropertyDescriptor(ArrayBuffer.prototype, 'byteLength').get;
  const TypedArrayPrototype = ObjectGetPrototypeOf(Uint8Array.prototype);
  const typedArrayBuffer = getOwnPropertyDescriptor(TypedArrayPrototype, 'buffer').get;
  const typedArrayByteOffset = getOwnPropertyDescriptor(TypedArrayPrototype, 'byteOffset').get;
  const typedArrayByteLength = getOwnPropertyDescriptor(TypedArrayPrototype, 'byteLength').get;
  const dataViewBuffer = getOwnPropertyDescriptor(DataView.prototype, 'buffer').get;
  const dataViewByteOffset = getOwnPropertyDescriptor(DataView.prototype, 'byteOffset').get;
  const dataViewByteLength = getOwnPropertyDescriptor(DataView.prototype, 'byteLength').get;
  const uint8Slice = Uint8Array.prototype.slice;
  const JSONParse = JSON.parse;
  const JSONStringify = JSON.stringify;
  const StringCtor = String;
  const NumberCtor = Number;
  const stringCharCodeAt = String.prototype.charCodeAt;
  const arrayPush = Array.prototype.push;
  const arrayJoin = Array.prototype.join;
  const MathMin = Math.min;
  const MathMax = Math.max;
  const MathFloor = Math.floor;
  const NumberIsFinite = Number.isFinite;
  const SymbolIterator = Symbol.iterator;
  const DOMExceptionCtor = G.DOMException;
  const TypeErrorCtor = TypeError;
  const setTimeoutFn = G.setTimeout;
  const clearTimeoutFn = G.clearTimeout;
  const addEventListenerFn = EventTarget.prototype.addEventListener;
  const removeEventListenerFn = EventTarget.prototype.removeEventListener;
  const abortSignalAborted = G.AbortSignal
    ? getOwnPropertyDescriptor(G.AbortSignal.prototype, 'aborted')?.get : undefined;
  const abortSignalReason = G.AbortSignal
    ? getOwnPropertyDescriptor(G.AbortSignal.prototype, 'reason')?.get : undefined;
  const getRandomValues = G.crypto && G.crypto.getRandomValues
    ? (array) => apply(G.crypto.getRandomValues, G.crypto, [array]) : null;
  // The engine's own decision about permissions policy, where it exposes one (Chromium).
  const policy = G.document && (G.document.permissionsPolicy || G.document.featurePolicy);
  const policyAllows = policy && typeof policy.allowsFeature === 'function'
    ? (feature) => apply(policy.allowsFeature, policy, [feature]) : null;
  // An opaque origin (a sandboxed frame, a data: URL) stays opaque whatever the page does later.
  const opaque = G.origin === 'null';
  const PKC = G.PublicKeyCredential;
  const container = G.navigator.credentials;

  const call = (fn, self, ...args) => apply(fn, self, args);
  const then = (promise, onFulfilled, onRejected) => apply(promiseThen, promise, [onFulfilled, onRejected]);

  // --- Bytes and base64url --------------------------------------------------------------------

  const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  const DECODE = new Uint8ArrayCtor(128).fill(255);
  for (let i = 0; i < 64; i++) DECODE[call(stringCharCodeAt, ALPHABET, i)] = i;
  DECODE[43] = 62; // '+' and '/' too: parse*FromJSON is lenient about the alphabet in engines
  DECODE[47] = 63;

  function toBase64url(bytes) {
    const out = [];
    let i = 0;
    for (; i + 2 < bytes.length; i += 3) {
      const n = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2];
      call(arrayPush, out, ALPHABET[n >> 18], ALPHABET[(n >> 12) & 63], ALPHABET[(n >> 6) & 63], ALPHABET[n & 63]);
    }
    if (i + 1 === bytes.length) {
      const n = bytes[i] << 16;
      call(arrayPush, out, ALPHABET[n >> 18], ALPHABET[(n >> 12) & 63]);
    } else if (i + 2 === bytes.length) {
      const n = (bytes[i] << 16) | (bytes[i + 1] << 8);
      call(arrayPush, out, ALPHABET[n >> 18], ALPHABET[(n >> 12) & 63], ALPHABET[(n >> 6) & 63]);
    }
    return call(arrayJoin, out, '');
  }

  // base64url (padding tolerated) → ArrayBuffer; null when it is not base64url.
  function fromBase64url(text) {
    if (typeof text !== 'string') return null;
    let end = text.length;
    while (end > 0 && text[end - 1] === '=') end--;
    if (end % 4 === 1) return null;
    const bytes = new Uint8ArrayCtor(MathFloor((end * 3) / 4));
    let bits = 0;
    let value = 0;
    let o = 0;
    for (let i = 0; i < end; i++) {
      const c = call(stringCharCodeAt, text, i);
      const d = c < 128 ? DECODE[c] : 255;
      if (d === 255) return null;
      value = (value << 6) | d;
      bits += 6;
      if (bits >= 8) {
        bits -= 8;
        bytes[o++] = (value >> bits) & 255;
      }
    }
    return bytes.buffer;
  }

  function isArrayBuffer(value) {
    try {
      call(arrayBufferByteLength, value);
      return true;
    } catch {
      return false;
    }
  }

  // A BufferSource's bytes (a copy), or null when `value` is not one.
  function bufferSourceBytes(value) {
    if (value === null || (typeof value !== 'object' && typeof value !== 'function')) return null;
    if (arrayBufferIsView(value)) {
      let buffer, offset, length;
      try {
        buffer = call(typedArrayBuffer, value);
        offset = call(typedArrayByteOffset, value);
        length = call(typedArrayByteLength, value);
      } catch {
        buffer = call(dataViewBuffer, value);
        offset = call(dataViewByteOffset, value);
        length = call(dataViewByteLength, value);
      }
      if (!isArrayBuffer(buffer)) return null; // a view on a SharedArrayBuffer
      return call(uint8Slice, new Uint8ArrayCtor(buffer, offset, length));
    }
    if (isArrayBuffer(value)) return call(uint8Slice, new Uint8ArrayCtor(value));
    return null;
  }

  function copyBuffer(buffer) {
    return call(uint8Slice, new Uint8ArrayCtor(buffer)).buffer;
  }

  // --- Errors ---------------------------------------------------------------------------------

  function domError(name, message) {
    if (name === 'TypeError') return new TypeErrorCtor(message);
    return new DOMExceptionCtor(message, name);
  }

  const NOT_ALLOWED = 'The operation either timed out or was not allowed. See: '
    + 'https://www.w3.org/TR/webauthn-2/#sctn-privacy-considerations-client.';

  // --- WebIDL-ish conversion of the options to their JSON forms -------------------------------

  function typeError(method, message) {
    return new TypeErrorCtor(`Failed to execute '${method}' on 'CredentialsContainer': ${message}`);
  }

  function isObject(value) {
    return value !== null && (typeof value === 'object' || typeof value === 'function');
  }

  function dictionary(value, what, method) {
    if (value === undefined || value === null) return ObjectCreate(null);
    if (!isObject(value)) throw typeError(method, `${what} is not an object.`);
    return value;
  }

  function required(dict, member, what, method) {
    const value = dict[member];
    if (value === undefined) {
      throw typeError(method, `Failed to read the '${member}' property from '${what}': Required member is undefined.`);
    }
    return value;
  }

  function domString(value) {
    if (typeof value === 'symbol') throw new TypeErrorCtor('Cannot convert a Symbol value to a string');
    return StringCtor(value);
  }

  function sequence(value, what, method) {
    if (!isObject(value) || typeof value[SymbolIterator] !== 'function') {
      throw typeError(method, `${what} is not iterable.`);
    }
    const out = [];
    for (const item of value) call(arrayPush, out, item);
    return out;
  }

  function bufferSource(value, what, method) {
    const bytes = bufferSourceBytes(value);
    if (bytes === null) {
      throw typeError(method, `${what} is not of type '(ArrayBuffer or ArrayBufferView)'.`);
    }
    return toBase64url(bytes);
  }

  function descriptors(value, what, method) {
    const out = [];
    for (const item of sequence(value, what, method)) {
      const d = dictionary(item, what, method);
      const type = domString(required(d, 'type', 'PublicKeyCredentialDescriptor', method));
      const id = bufferSource(required(d, 'id', 'PublicKeyCredentialDescriptor', method), `${what}[].id`, method);
      const descriptor = {type, id};
      if (d.transports !== undefined) {
        const transports = [];
        for (const t of sequence(d.transports, `${what}[].transports`, method)) call(arrayPush, transports, domString(t));
        descriptor.transports = transports;
      }
      call(arrayPush, out, descriptor);
    }
    return out;
  }

  function strings(value, what, method) {
    const out = [];
    for (const item of sequence(value, what, method)) call(arrayPush, out, domString(item));
    return out;
  }

  // Extension inputs: BufferSources become base64url, the rest is copied as JSON values.
  function extensionInputs(value, method, depth = 0) {
    if (depth > 16) throw typeError(method, 'the extension inputs are nested too deeply.');
    if (value === null || typeof value !== 'object') {
      if (typeof value === 'function' || typeof value === 'symbol' || typeof value === 'bigint') {
        throw typeError(method, 'an extension input is not a JSON value.');
      }
      return value;
    }
    const bytes = bufferSourceBytes(value);
    if (bytes !== null) return toBase64url(bytes);
    if (ArrayIsArray(value)) {
      const out = [];
      for (const item of value) call(arrayPush, out, extensionInputs(item, method, depth + 1));
      return out;
    }
    const out = {};
    for (const key of ObjectKeys(value)) {
      const item = value[key];
      if (item !== undefined) out[key] = extensionInputs(item, method, depth + 1);
    }
    return out;
  }

  function timeoutOf(value) {
    if (value === undefined) return undefined;
    const n = NumberCtor(value);
    if (!NumberIsFinite(n)) return undefined;
    return MathMax(0, MathFloor(n));
  }

  function creationOptionsJSON(publicKey) {
    const method = 'create';
    const o = dictionary(publicKey, 'publicKey', method);
    const what = 'PublicKeyCredentialCreationOptions';
    const rp = dictionary(required(o, 'rp', what, method), 'rp', method);
    const user = dictionary(required(o, 'user', what, method), 'user', method);
    const out = {
      rp: {name: domString(required(rp, 'name', 'PublicKeyCredentialRpEntity', method))},
      user: {
        id: bufferSource(required(user, 'id', 'PublicKeyCredentialUserEntity', method), 'user.id', method),
        name: domString(required(user, 'name', 'PublicKeyCredentialUserEntity', method)),
        displayName: domString(required(user, 'displayName', 'PublicKeyCredentialUserEntity', method)),
      },
      challenge: bufferSource(required(o, 'challenge', what, method), 'challenge', method),
      pubKeyCredParams: [],
    };
    if (rp.id !== undefined) out.rp.id = domString(rp.id);
    for (const item of sequence(required(o, 'pubKeyCredParams', what, method), 'pubKeyCredParams', method)) {
      const p = dictionary(item, 'pubKeyCredParams[]', method);
      const type = domString(required(p, 'type', 'PublicKeyCredentialParameters', method));
      const alg = NumberCtor(required(p, 'alg', 'PublicKeyCredentialParameters', method));
      if (!NumberIsFinite(alg)) throw typeError(method, 'pubKeyCredParams[].alg is not a number.');
      call(arrayPush, out.pubKeyCredParams, {type, alg: MathFloor(alg)});
    }
    const timeout = timeoutOf(o.timeout);
    if (timeout !== undefined) out.timeout = timeout;
    if (o.excludeCredentials !== undefined) out.excludeCredentials = descriptors(o.excludeCredentials, 'excludeCredentials', method);
    if (o.authenticatorSelection !== undefined) {
      const s = dictionary(o.authenticatorSelection, 'authenticatorSelection', method);
      const selection = {};
      if (s.authenticatorAttachment !== undefined) selection.authenticatorAttachment = domString(s.authenticatorAttachment);
      if (s.residentKey !== undefined) selection.residentKey = domString(s.residentKey);
      selection.requireResidentKey = !!s.requireResidentKey;
      selection.userVerification = s.userVerification === undefined ? 'preferred' : domString(s.userVerification);
      out.authenticatorSelection = selection;
    }
    if (o.hints !== undefined) out.hints = strings(o.hints, 'hints', method);
    out.attestation = o.attestation === undefined ? 'none' : domString(o.attestation);
    if (o.attestationFormats !== undefined) out.attestationFormats = strings(o.attestationFormats, 'attestationFormats', method);
    if (o.extensions !== undefined) out.extensions = extensionInputs(dictionary(o.extensions, 'extensions', method), method);
    return out;
  }

  function requestOptionsJSON(publicKey) {
    const method = 'get';
    const o = dictionary(publicKey, 'publicKey', method);
    const out = {challenge: bufferSource(required(o, 'challenge', 'PublicKeyCredentialRequestOptions', method), 'challenge', method)};
    const timeout = timeoutOf(o.timeout);
    if (timeout !== undefined) out.timeout = timeout;
    if (o.rpId !== undefined) out.rpId = domString(o.rpId);
    if (o.allowCredentials !== undefined) out.allowCredentials = descriptors(o.allowCredentials, 'allowCredentials', method);
    out.userVerification = o.userVerification === undefined ? 'preferred' : domString(o.userVerification);
    if (o.hints !== undefined) out.hints = strings(o.hints, 'hints', method);
    if (o.extensions !== undefined) out.extensions = extensionInputs(dictionary(o.extensions, 'extensions', method), method);
    return out;
  }

  // --- Talking to the embedder ----------------------------------------------------------------

  function randomId() {
    const bytes = new Uint8ArrayCtor(16);
    if (getRandomValues) getRandomValues(bytes);
    else for (let i = 0; i < 16; i++) bytes[i] = MathFloor(Math.random() * 256);
    return toBase64url(bytes);
  }

  // This document's ID: the embedder cancels what an earlier document in the same frame left
  // pending when a new one starts a ceremony.
  const doc = randomId();

  // Sends a message; resolves with the parsed answer ({ok} or {error}), never rejects.
  function send(message) {
    message.doc = doc;
    let sent;
    try {
      sent = transport(JSONStringify(message));
    } catch (error) {
      sent = PromiseCtor.reject(error);
    }
    return then(PromiseCtor.resolve(sent), (text) => {
      try {
        const answer = typeof text === 'string' ? JSONParse(text) : text;
        if (isObject(answer) && ('ok' in answer || isObject(answer.error))) return answer;
      } catch {
        // fall through
      }
      return {error: {name: 'NotAllowedError', message: 'fidelio: the embedder sent no gateway answer'}};
    }, (error) => ({
      error: {name: 'NotAllowedError', message: `fidelio: the gateway could not be reached (${error && error.message || error})`},
    }));
  }

  // Ceremonies in flight: ID → cancel function.
  const pending = new MapCtor();
  call(addEventListenerFn, G, 'pagehide', () => {
    // The document goes away: stop its ceremonies on the authenticator.
    call(mapForEach, pending, (cancel) => cancel());
  });

  // --- The objects the page gets ---------------------------------------------------------------

  // Internal slots of the shim's objects.
  const slots = new WeakMapCtor();
  const slotOf = (object) => (isObject(object) ? call(weakMapGet, slots, object) : undefined);

  const BINARY_RESULTS = [['prf', 'results', 'first'], ['prf', 'results', 'second'], ['largeBlob', 'blob'], ['getCredBlob']];

  function cloneJSON(value) {
    return value === undefined ? undefined : JSONParse(JSONStringify(value));
  }

  // clientExtensionResults as the page sees them: binary members as ArrayBuffers.
  function extensionResults(json) {
    const out = isObject(json) ? cloneJSON(json) : {};
    for (const path of BINARY_RESULTS) {
      let parent = out;
      for (let i = 0; i < path.length - 1 && isObject(parent); i++) parent = parent[path[i]];
      const last = path[path.length - 1];
      if (isObject(parent) && typeof parent[last] === 'string') {
        const buffer = fromBase64url(parent[last]);
        if (buffer) parent[last] = buffer;
      }
    }
    return out;
  }

  function decode(json, member, nullable = false) {
    const value = json[member];
    if (nullable && (value === undefined || value === null)) return null;
    const buffer = fromBase64url(value);
    if (!buffer) throw new Error(`the gateway's ${member} is not base64url`);
    return buffer;
  }

  function credentialFrom(kind, json) {
    const r = isObject(json) ? json.response : undefined;
    if (!isObject(r) || typeof json.id !== 'string') throw new Error('the gateway sent no credential');
    const rawId = decode(json, 'rawId');
    let response;
    if (kind === 'create') {
      response = ObjectCreate(G.AuthenticatorAttestationResponse.prototype);
      call(weakMapSet, slots, response, {
        kind: 'attestation',
        clientDataJSON: decode(r, 'clientDataJSON'),
        attestationObject: decode(r, 'attestationObject'),
        authenticatorData: decode(r, 'authenticatorData'),
        publicKey: decode(r, 'publicKey', true),
        publicKeyAlgorithm: NumberCtor(r.publicKeyAlgorithm),
        transports: ArrayIsArray(r.transports) ? cloneJSON(r.transports) : [],
      });
    } else {
      response = ObjectCreate(G.AuthenticatorAssertionResponse.prototype);
      call(weakMapSet, slots, response, {
        kind: 'assertion',
        clientDataJSON: decode(r, 'clientDataJSON'),
        authenticatorData: decode(r, 'authenticatorData'),
        signature: decode(r, 'signature'),
        userHandle: decode(r, 'userHandle', true),
        attestationObject: decode(r, 'attestationObject', true),
      });
    }
    const credential = ObjectCreate(PKC.prototype);
    call(weakMapSet, slots, credential, {
      kind: 'credential',
      ceremony: kind,
      id: toBase64url(new Uint8ArrayCtor(rawId)),
      rawId,
      response,
      authenticatorAttachment: typeof json.authenticatorAttachment === 'string' ? json.authenticatorAttachment : null,
      extensions: isObject(json.clientExtensionResults) ? cloneJSON(json.clientExtensionResults) : {},
    });
    return credential;
  }

  function credentialJSON(s) {
    const r = slotOf(s.response);
    const b64 = (buffer) => toBase64url(new Uint8ArrayCtor(buffer));
    const response = {clientDataJSON: b64(r.clientDataJSON)};
    if (r.kind === 'attestation') {
      response.authenticatorData = b64(r.authenticatorData);
      response.transports = cloneJSON(r.transports);
      if (r.publicKey) response.publicKey = b64(r.publicKey);
      response.publicKeyAlgorithm = r.publicKeyAlgorithm;
      response.attestationObject = b64(r.attestationObject);
    } else {
      response.authenticatorData = b64(r.authenticatorData);
      response.signature = b64(r.signature);
      if (r.userHandle) response.userHandle = b64(r.userHandle);
      if (r.attestationObject) response.attestationObject = b64(r.attestationObject);
    }
    const out = {id: s.id, rawId: b64(s.rawId), response};
    if (s.authenticatorAttachment !== null) out.authenticatorAttachment = s.authenticatorAttachment;
    out.clientExtensionResults = cloneJSON(s.extensions);
    out.type = 'public-key';
    return out;
  }

  // --- Wrapping the engine's members ----------------------------------------------------------

  // Replaces `proto[name]`'s getter (or method) by a Proxy over the native one that answers
  // `answer(slot)` for the shim's objects of `kind` and defers to the engine otherwise. Defines
  // the member, WebIDL-style, if the engine lacks it.
  function hook(proto, name, kind, answer, {method = false, onlyIfNative = false} = {}) {
    if (!proto) return;
    const native = getOwnPropertyDescriptor(proto, name);
    const nativeFn = native && (method ? native.value : native.get);
    if (typeof nativeFn !== 'function' && onlyIfNative) return;
    const ours = (self, args) => {
      const s = slotOf(self);
      if (s !== undefined && (kind === null ? s.kind !== 'credential' : s.kind === kind)) return answer(s, args);
      if (typeof nativeFn === 'function') return apply(nativeFn, self, args);
      throw new TypeErrorCtor('Illegal invocation');
    };
    let fn;
    if (typeof nativeFn === 'function') {
      fn = new ProxyCtor(nativeFn, {apply: (target, self, args) => ours(self, args)});
    } else if (method) {
      fn = {[name](...args) { return ours(this, args); }}[name];
    } else {
      fn = getOwnPropertyDescriptor({get [name]() { return ours(this, []); }}, name).get;
    }
    defineProperty(proto, name, method
      ? {value: fn, writable: true, enumerable: true, configurable: true}
      : {get: fn, set: undefined, enumerable: true, configurable: true});
  }

  // Same for a static operation of an interface object.
  function hookStatic(ctor, name, implementation) {
    const native = getOwnPropertyDescriptor(ctor, name);
    const fn = native && typeof native.value === 'function'
      ? new ProxyCtor(native.value, {apply: (target, self, args) => implementation(args)})
      : {[name](...args) { return implementation(args); }}[name];
    defineProperty(ctor, name, {value: fn, writable: true, enumerable: true, configurable: true});
  }

  const CredentialProto = G.Credential ? G.Credential.prototype : PKC.prototype;
  hook(CredentialProto, 'id', 'credential', (s) => s.id);
  hook(CredentialProto, 'type', 'credential', () => 'public-key');
  hook(PKC.prototype, 'rawId', 'credential', (s) => s.rawId);
  hook(PKC.prototype, 'response', 'credential', (s) => s.response);
  hook(PKC.prototype, 'authenticatorAttachment', 'credential', (s) => s.authenticatorAttachment);
  hook(PKC.prototype, 'getClientExtensionResults', 'credential', (s) => extensionResults(s.extensions), {method: true});
  hook(PKC.prototype, 'toJSON', 'credential', (s) => credentialJSON(s), {method: true});

  const ResponseProto = G.AuthenticatorResponse ? G.AuthenticatorResponse.prototype : null;
  hook(ResponseProto, 'clientDataJSON', null, (s) => s.clientDataJSON);
  const AttestationProto = G.AuthenticatorAttestationResponse && G.AuthenticatorAttestationResponse.prototype;
  hook(AttestationProto, 'attestationObject', 'attestation', (s) => s.attestationObject);
  hook(AttestationProto, 'getTransports', 'attestation', (s) => cloneJSON(s.transports), {method: true});
  hook(AttestationProto, 'getAuthenticatorData', 'attestation', (s) => copyBuffer(s.authenticatorData), {method: true});
  hook(AttestationProto, 'getPublicKey', 'attestation', (s) => (s.publicKey ? copyBuffer(s.publicKey) : null), {method: true});
  hook(AttestationProto, 'getPublicKeyAlgorithm', 'attestation', (s) => s.publicKeyAlgorithm, {method: true});
  const AssertionProto = G.AuthenticatorAssertionResponse && G.AuthenticatorAssertionResponse.prototype;
  hook(AssertionProto, 'authenticatorData', 'assertion', (s) => s.authenticatorData);
  hook(AssertionProto, 'signature', 'assertion', (s) => s.signature);
  hook(AssertionProto, 'userHandle', 'assertion', (s) => s.userHandle);
  hook(AssertionProto, 'attestationObject', 'assertion', (s) => s.attestationObject, {onlyIfNative: true});

  // --- Ceremonies -------------------------------------------------------------------------------

  // WebAuthn's lifetime timer, with the clamp Chromium and the gateway apply.
  const DEFAULT_LIFETIME_MS = 300_000;
  const MIN_LIFETIME_MS = 10_000;
  const MAX_LIFETIME_MS = 600_000;

  function lifetimeOf(timeout) {
    if (timeout === undefined) return DEFAULT_LIFETIME_MS;
    return MathMin(MathMax(timeout, MIN_LIFETIME_MS), MAX_LIFETIME_MS);
  }

  function signalOf(options) {
    const signal = options.signal;
    if (signal === undefined || signal === null) return null;
    if (!abortSignalAborted) return null;
    try {
      call(abortSignalAborted, signal);
    } catch {
      throw new TypeErrorCtor("Failed to read the 'signal' property from 'CredentialRequestOptions': Failed to convert value to 'AbortSignal'.");
    }
    return signal;
  }

  // A conditional get() (passkey autofill) has no lifetime timer: like a browser's autofill
  // menu it waits until the user — here the test, through the control API — picks an account,
  // or the page aborts.
  function ceremony(kind, optionsJSON, signal, conditional) {
    return new PromiseCtor((resolve, reject) => {
      const id = randomId();
      let settled = false;
      let timer = null;
      const onAbort = () => {
        finish(reject, call(abortSignalReason, signal));
        cancel();
      };
      const cancel = () => { send({op: 'cancel', id}); };
      const finish = (settle, value) => {
        if (settled) return;
        settled = true;
        call(mapDelete, pending, id);
        if (timer !== null) clearTimeoutFn(timer);
        if (signal) call(removeEventListenerFn, signal, 'abort', onAbort);
        settle(value);
      };
      call(mapSet, pending, id, () => { finish(reject, domError('NotAllowedError', NOT_ALLOWED)); cancel(); });
      if (signal) call(addEventListenerFn, signal, 'abort', onAbort, {once: true});
      if (!conditional) {
        timer = setTimeoutFn(() => {
          finish(reject, domError('NotAllowedError', NOT_ALLOWED));
          cancel();
        }, lifetimeOf(optionsJSON.timeout));
      }
      const message = {op: kind, id, options: optionsJSON, opaque};
      if (conditional) message.mediation = 'conditional';
      then(send(message), (answer) => {
        if (settled) return;
        if (answer.error !== undefined) {
          const name = typeof answer.error.name === 'string' && answer.error.name ? answer.error.name : 'NotAllowedError';
          finish(reject, domError(name, StringCtor(answer.error.message || NOT_ALLOWED)));
          return;
        }
        try {
          finish(resolve, credentialFrom(kind, answer.ok));
        } catch (error) {
          finish(reject, domError('NotAllowedError', `fidelio: ${error.message}`));
        }
      });
    });
  }

  const CREDENTIAL_TYPES = ['password', 'federated', 'identity', 'otp', 'digital'];

  function credentialsCall(kind, nativeFn, self, args) {
    const options = args[0];
    if (self !== container || !isObject(options) || options.publicKey === undefined) {
      return apply(nativeFn, self, args);
    }
    try {
      for (const other of CREDENTIAL_TYPES) {
        if (options[other] !== undefined && kind === 'create') {
          throw new DOMExceptionCtor('Only exactly one of \'password\', \'federated\', and \'publicKey\' credential types are currently supported.', 'NotSupportedError');
        }
      }
      const signal = signalOf(options);
      const mediation = options.mediation === undefined ? 'optional' : domString(options.mediation);
      const conditional = mediation === 'conditional';
      if (conditional && kind === 'create') {
        // Conditional create (automatic passkey upgrade) is not offered, and says so.
        throw new TypeErrorCtor(`Failed to execute '${kind}' on 'CredentialsContainer': Conditional mediation is not supported for this credential type`);
      }
      const json = kind === 'create' ? creationOptionsJSON(options.publicKey) : requestOptionsJSON(options.publicKey);
      if (signal && call(abortSignalAborted, signal)) return PromiseCtor.reject(call(abortSignalReason, signal));
      if (opaque) return PromiseCtor.reject(domError('NotAllowedError', 'The origin of the document is opaque.'));
      if (policyAllows && !policyAllows(kind === 'create' ? 'publickey-credentials-create' : 'publickey-credentials-get')) {
        return PromiseCtor.reject(domError('NotAllowedError',
          `The 'publickey-credentials-${kind}' feature is not enabled in this document. Permissions Policy may be used to delegate Web Authentication capabilities to cross-origin child frames.`));
      }
      return ceremony(kind, json, signal, conditional);
    } catch (error) {
      return PromiseCtor.reject(error);
    }
  }

  const ContainerProto = G.CredentialsContainer.prototype;
  for (const kind of ['create', 'get']) {
    const native = getOwnPropertyDescriptor(ContainerProto, kind);
    if (!native || typeof native.value !== 'function') continue;
    defineProperty(ContainerProto, kind, {
      value: new ProxyCtor(native.value, {apply: (target, self, args) => credentialsCall(kind, target, self, args)}),
      writable: true, enumerable: true, configurable: true,
    });
  }

  // --- Statics --------------------------------------------------------------------------------

  function isUvpaa() {
    return then(send({op: 'isUvpaa'}), (answer) => answer.ok === true);
  }

  // What this client supports, truthfully: conditional get (the test picks the account through
  // the control API) but not conditional create, no hybrid, no related origins, the signal methods reach no authenticator; the extensions are
  // the ones the gateway's WebAuthn client processes.
  const EXTENSIONS = ['credBlob', 'credProps', 'credentialProtectionPolicy', 'enforceCredentialProtectionPolicy',
    'getCredBlob', 'largeBlob', 'minPinLength', 'prf'];

  function clientCapabilities() {
    return then(isUvpaa(), (uvpaa) => {
      const out = {
        conditionalCreate: false,
        conditionalGet: true,
        hybridTransport: false,
        passkeyPlatformAuthenticator: uvpaa,
        relatedOrigins: false,
        signalAllAcceptedCredentials: false,
        signalCurrentUserDetails: false,
        signalUnknownCredential: false,
        userVerifyingPlatformAuthenticator: uvpaa,
      };
      for (const name of EXTENSIONS) out[`extension:${name}`] = true;
      return out;
    });
  }

  hookStatic(PKC, 'isUserVerifyingPlatformAuthenticatorAvailable', () => isUvpaa());
  hookStatic(PKC, 'isConditionalMediationAvailable', () => PromiseCtor.resolve(true));
  hookStatic(PKC, 'getClientCapabilities', () => clientCapabilities());

  // parse*OptionsFromJSON, for engines without them.
  function b64Member(value, what, method) {
    const buffer = fromBase64url(value);
    if (!buffer) {
      throw new DOMExceptionCtor(`Failed to execute '${method}' on 'PublicKeyCredential': '${what}' contains invalid base64url data.`, 'EncodingError');
    }
    return buffer;
  }

  function descriptorsFromJSON(list, what, method) {
    const out = [];
    for (const item of sequence(list, what, method)) {
      const d = {type: domString(item.type), id: b64Member(item.id, `${what}[].id`, method)};
      if (item.transports !== undefined) d.transports = strings(item.transports, `${what}[].transports`, method);
      call(arrayPush, out, d);
    }
    return out;
  }

  function extensionsFromJSON(json, method) {
    if (!isObject(json)) return json;
    const out = cloneJSON(json);
    const prf = out.prf;
    const prfValues = (values, what) => {
      if (!isObject(values)) return values;
      const v = {first: b64Member(values.first, `${what}.first`, method)};
      if (values.second !== undefined) v.second = b64Member(values.second, `${what}.second`, method);
      return v;
    };
    if (isObject(prf)) {
      if (prf.eval !== undefined) prf.eval = prfValues(prf.eval, 'prf.eval');
      if (isObject(prf.evalByCredential)) {
        for (const key of ObjectKeys(prf.evalByCredential)) {
          prf.evalByCredential[key] = prfValues(prf.evalByCredential[key], 'prf.evalByCredential');
        }
      }
    }
    if (isObject(out.largeBlob) && typeof out.largeBlob.write === 'string') {
      out.largeBlob.write = b64Member(out.largeBlob.write, 'largeBlob.write', method);
    }
    if (typeof out.credBlob === 'string') out.credBlob = b64Member(out.credBlob, 'credBlob', method);
    return out;
  }

  if (typeof PKC.parseCreationOptionsFromJSON !== 'function') {
    hookStatic(PKC, 'parseCreationOptionsFromJSON', ([json]) => {
      const method = 'parseCreationOptionsFromJSON';
      const o = dictionary(json, 'options', method);
      const out = cloneJSON(o);
      out.challenge = b64Member(o.challenge, 'challenge', method);
      out.user = {...cloneJSON(o.user), id: b64Member(o.user && o.user.id, 'user.id', method)};
      if (o.excludeCredentials !== undefined) out.excludeCredentials = descriptorsFromJSON(o.excludeCredentials, 'excludeCredentials', method);
      if (o.extensions !== undefined) out.extensions = extensionsFromJSON(o.extensions, method);
      return out;
    });
  }
  if (typeof PKC.parseRequestOptionsFromJSON !== 'function') {
    hookStatic(PKC, 'parseRequestOptionsFromJSON', ([json]) => {
      const method = 'parseRequestOptionsFromJSON';
      const o = dictionary(json, 'options', method);
      const out = cloneJSON(o);
      out.challenge = b64Member(o.challenge, 'challenge', method);
      if (o.allowCredentials !== undefined) out.allowCredentials = descriptorsFromJSON(o.allowCredentials, 'allowCredentials', method);
      if (o.extensions !== undefined) out.extensions = extensionsFromJSON(o.extensions, method);
      return out;
    });
  }
})
