// Lane B end to end in headless Debian Chromium, no extension: the Fidelio shim
// (browser/shim/fidelio-shim.js, installed by browser/shim/playwright.mjs with addInitScript +
// exposeBinding) → `fidelio serve --browser` → the virtual authenticator; every response
// verified by @simplewebauthn/server in the test RP.

import assert from 'node:assert/strict';
import http from 'node:http';
import {after, before, describe, test} from 'node:test';

import {verifyAuthenticationResponse} from '@simplewebauthn/server';

import {installFidelio} from '../shim/playwright.mjs';
import {
  CEREMONY_MS, ceremony, control, gatewayStatus, launchPlainChromium, open, startDaemon, startLaneBDaemon, withDeadline, workspace,
} from './harness.mjs';
import {inspectCredentials, inspectStatics} from './lane-b-checks.mjs';
import {startRp} from './rp-server.mjs';

const originOf = (url) => new URL(url).origin;

describe('lane B in Chromium (Playwright shim → fidelio gateway)', () => {
  let space;
  let rp;
  let browser;
  // One browser; one context per daemon.
  const lanes = {};

  async function lane(name, daemonOptions) {
    const daemon = await startLaneBDaemon(space, daemonOptions);
    const context = await browser.newContext();
    space.defer(() => context.close());
    const fidelio = await installFidelio(context, {tokenFile: daemon.tokenFile});
    lanes[name] = {daemon, context, fidelio};
  }

  before(async () => {
    space = await workspace('fidelio-lane-b-');
    rp = await startRp();
    space.defer(() => rp.close());
    browser = await launchPlainChromium();
    space.defer(() => browser.close());
    await lane('auto', {});
    await lane('pin', {pin: '4321'});
    await lane('prompt', {presence: 'prompt'});
  });

  after(async () => {
    await space?.stop();
  });

  test('registration and login, verified by @simplewebauthn/server; the counter grows', async () => {
    const page = await open(lanes.auto.context, rp.url('rp.localhost'));
    const registration = await ceremony(page, 'register', {username: 'alice'});
    assert.equal(registration.error, undefined, JSON.stringify(registration.error));
    assert.equal(registration.verified, true);
    assert.deepEqual(registration.clientData, {
      type: 'webauthn.create',
      challenge: registration.clientData.challenge,
      origin: originOf(rp.url('rp.localhost')),
      crossOrigin: false,
    });
    assert.equal(registration.rpId, 'rp.localhost');
    assert.equal(registration.authenticatorAttachment, 'cross-platform');
    assert.deepEqual(registration.transports, ['usb']);
    const first = await ceremony(page, 'login', {username: 'alice'});
    assert.equal(first.error, undefined, JSON.stringify(first.error));
    assert.equal(first.verified, true);
    assert.equal(first.credentialId, registration.credentialId);
    assert.equal(first.clientData.type, 'webauthn.get');
    const second = await ceremony(page, 'login', {username: 'alice'});
    assert.equal(second.verified, true, JSON.stringify(second));
    assert.ok(second.counter > first.counter, `counter ${second.counter} after ${first.counter}`);
    assert.ok(lanes.auto.fidelio.host.stats.ceremonies >= 3, 'the ceremonies went through the shim');
    await page.close();
  });

  test('both channels: the Chromium fast path (raw CDP binding) for top-level documents, exposeBinding otherwise', async () => {
    const {fidelio, context} = lanes.auto;
    const page = await context.newPage();
    page.setDefaultTimeout(CEREMONY_MS);
    // The page's fast channel is set up as the page opens; documents loaded after it use it.
    for (const started = Date.now(); !fidelio.fastPages.has(page); await new Promise((resolve) => setTimeout(resolve, 20))) {
      assert.ok(Date.now() - started < CEREMONY_MS, 'the fast channel came up');
    }
    await page.goto(rp.url('fast.localhost'), {waitUntil: 'load'});
    const fastBefore = fidelio.host.stats.fast ?? 0;
    const registration = await ceremony(page, 'register', {username: 'quick'});
    assert.equal(registration.verified, true, JSON.stringify(registration));
    assert.equal(registration.clientData.origin, originOf(rp.url('fast.localhost')));
    assert.equal(fidelio.host.stats.fast, fastBefore + 1, 'the top-level document used the fast channel');
    await page.close();

    // The same with the fast channel off: exposeBinding only.
    const slowContext = await browser.newContext();
    try {
      const slow = await installFidelio(slowContext, {tokenFile: lanes.auto.daemon.tokenFile, fast: false});
      const slowPage = await open(slowContext, rp.url('slow.localhost'));
      const login = await ceremony(slowPage, 'register', {username: 'slow'});
      assert.equal(login.verified, true, JSON.stringify(login));
      assert.equal(slow.host.stats.ceremonies, 1);
      assert.equal(slow.host.stats.fast ?? 0, 0);
      assert.equal(slow.fastPages.size, 0);
    } finally {
      await slowContext.close();
    }
  });

  test('the objects the page gets: native prototypes and accessors, toJSON, getPublicKey, extension results', async () => {
    // On the PIN daemon: PRF (hmac-secret) answers only to a verified user, as in browsers.
    const page = await open(lanes.pin.context, rp.url('objects.localhost'));
    const out = await withDeadline(page.evaluate(inspectCredentials, {username: 'olga'}), CEREMONY_MS, 'inspectCredentials');
    assert.equal(out.error, undefined, JSON.stringify(out.error));
    assert.deepEqual(out.create, {
      ...out.create,
      instanceofPublicKeyCredential: true,
      instanceofCredential: true,
      prototypeIsNative: true,
      ownKeys: 0,
      tag: '[object PublicKeyCredential]',
      responseTag: '[object AuthenticatorAttestationResponse]',
      responseIsAttestation: true,
      responseIsAuthenticatorResponse: true,
      type: 'public-key',
      idIsBase64urlOfRawId: true,
      rawIdIsArrayBuffer: true,
      sameObject: true,
      nativeAccessorsWork: true,
      foreignThisThrows: 'TypeError',
      authenticatorAttachment: 'cross-platform',
      transports: ['usb'],
      publicKeyAlgorithm: -8, // EdDSA: first in @simplewebauthn's default list
      publicKeyIsArrayBuffer: true,
      authenticatorDataIsArrayBuffer: true,
      attestationObjectIsArrayBuffer: true,
      clientDataJSONIsArrayBuffer: true,
      credProps: {rk: true},
      toJSONMatchesStringify: true,
      toJSONKeys: ['id', 'rawId', 'response', 'authenticatorAttachment', 'clientExtensionResults', 'type'],
      toJSONResponseKeys: ['attestationObject', 'authenticatorData', 'clientDataJSON', 'publicKey', 'publicKeyAlgorithm', 'transports'],
      looksNative: true,
    });
    assert.equal(out.create.prf?.enabled, true, JSON.stringify(out.create.prf));
    assert.equal(out.registration.verified, true, JSON.stringify(out.registration));
    assert.deepEqual(out.get, {
      instanceofPublicKeyCredential: true,
      responseIsAssertion: true,
      tag: '[object PublicKeyCredential]',
      responseTag: '[object AuthenticatorAssertionResponse]',
      ownKeys: 0,
      signatureIsArrayBuffer: true,
      userHandleIsArrayBuffer: true,
      sameCredential: true,
      prfFirstIsArrayBuffer: true,
      prfFirstLength: 32,
      prfInJSONIsBase64url: true,
      attestationMethodsRefuse: 'TypeError',
      signatureVerifiedWithGetPublicKey: true,
    });
    assert.equal(out.login.verified, true, JSON.stringify(out.login));
    assert.equal(out.login.username, 'olga');
    await page.close();
  });

  test('conditional mediation: get() stays pending until the test picks an account through the control API', async () => {
    const {daemon, context} = lanes.auto;
    const page = await open(context, rp.url('autofill.localhost'));
    for (const username of ['carol', 'dave']) {
      const made = await ceremony(page, 'register', {username, residentKey: 'required'});
      assert.equal(made.verified, true, JSON.stringify(made));
    }
    assert.equal(await page.evaluate(() => PublicKeyCredential.isConditionalMediationAvailable()), true);
    // What an autofill page does on load: a conditional get() left pending.
    await page.evaluate(() => { window.autofill = window.fidelioRp.login({mediation: 'conditional'}); });
    const waiting = await control(daemon, 'GET', '/v1/control/conditional?wait=20000');
    const request = waiting.find((r) => r.rpId === 'autofill.localhost');
    assert.ok(request, JSON.stringify(waiting));
    assert.equal(request.origin, originOf(rp.url('autofill.localhost')));
    const names = request.accounts.map((a) => a.userName).sort();
    assert.deepEqual(names, ['carol', 'dave']);
    // Nothing happens until an account is picked (no lifetime timer for conditional requests).
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(await page.evaluate(() => Promise.race([window.autofill.then(() => 'settled'), new Promise((r) => setTimeout(() => r('pending'), 50))])), 'pending');
    const dave = request.accounts.find((a) => a.userName === 'dave');
    assert.equal(await control(daemon, 'POST', `/v1/control/conditional/${request.id}/select`, {credentialId: dave.credentialId}), true);
    const login = await withDeadline(page.evaluate(() => window.autofill), CEREMONY_MS, 'conditional login');
    assert.equal(login.error, undefined, JSON.stringify(login.error));
    assert.equal(login.verified, true);
    assert.equal(login.username, 'dave');
    assert.equal(login.credentialId, dave.credentialId);

    // The page aborts a pending conditional request (as it does before a modal get()).
    await page.evaluate(() => { window.autofill = window.fidelioRp.login({mediation: 'conditional'}); });
    const again = await control(daemon, 'GET', '/v1/control/conditional?wait=20000');
    assert.equal(again.filter((r) => r.rpId === 'autofill.localhost').length, 1, JSON.stringify(again));
    await page.evaluate(() => window.fidelioRpAbort());
    const aborted = await withDeadline(page.evaluate(() => window.autofill), CEREMONY_MS, 'aborted conditional login');
    assert.equal(aborted.error?.name, 'AbortError', JSON.stringify(aborted));
    for (const started = Date.now(); ; await new Promise((resolve) => setTimeout(resolve, 20))) {
      const left = await control(daemon, 'GET', '/v1/control/conditional');
      if (left.length === 0) break;
      assert.ok(Date.now() - started < 10_000, `the aborted request left the list: ${JSON.stringify(left)}`);
    }
    await page.close();
  });

  test('statics and argument handling: isUvpaa, conditional mediation, capabilities, TypeErrors, abort reasons', async () => {
    const page = await open(lanes.auto.context, rp.url('statics.localhost'));
    const out = await withDeadline(page.evaluate(inspectStatics), CEREMONY_MS, 'inspectStatics');
    assert.equal(out.isUvpaa, false);
    assert.equal(out.isConditionalMediationAvailable, true);
    assert.deepEqual(out.capabilities, {
      conditionalCreate: false,
      conditionalGet: true,
      hybridTransport: false,
      passkeyPlatformAuthenticator: false,
      relatedOrigins: false,
      signalAllAcceptedCredentials: false,
      signalCurrentUserDetails: false,
      signalUnknownCredential: false,
      userVerifyingPlatformAuthenticator: false,
      'extension:credBlob': true,
      'extension:credProps': true,
      'extension:credentialProtectionPolicy': true,
      'extension:enforceCredentialProtectionPolicy': true,
      'extension:getCredBlob': true,
      'extension:largeBlob': true,
      'extension:minPinLength': true,
      'extension:prf': true,
    });
    assert.equal(out.missingMembers.name, 'TypeError', JSON.stringify(out.missingMembers));
    assert.equal(out.challengeNotABuffer.name, 'TypeError', JSON.stringify(out.challengeNotABuffer));
    assert.equal(out.conditional.name, 'TypeError', JSON.stringify(out.conditional));
    assert.equal(out.alreadyAborted.name, 'AbortError');
    assert.equal(out.alreadyAborted.isDOMException, true);
    assert.equal(out.abortedWithReason.error, 'my reason', 'rejected with the signal\'s reason');
    // Other credential types still reach the engine.
    const password = await page.evaluate(async () => {
      const credential = await navigator.credentials.create({password: {id: 'alice', password: 'hunter2', name: 'Alice', origin: location.origin}});
      return {type: credential.type, isPasswordCredential: credential instanceof PasswordCredential};
    });
    assert.deepEqual(password, {type: 'password', isPasswordCredential: true});
    await page.close();
  });

  test('discoverable login (no allowCredentials) returns the user handle', async () => {
    const page = await open(lanes.auto.context, rp.url('discoverable.localhost'));
    const registration = await ceremony(page, 'register', {username: 'bob', residentKey: 'required'});
    assert.equal(registration.verified, true, JSON.stringify(registration));
    assert.deepEqual(registration.credProps, {rk: true});
    const login = await ceremony(page, 'login', {});
    assert.equal(login.error, undefined, JSON.stringify(login.error));
    assert.equal(login.verified, true);
    assert.equal(login.username, 'bob');
    assert.ok(login.userHandle, 'a discoverable assertion carries the user handle');
    await page.close();
  });

  test('five resident credentials for one RP, then discoverable and by-name logins', async () => {
    const page = await open(lanes.auto.context, rp.url('many.localhost'));
    const ids = new Set();
    for (const username of ['u1', 'u2', 'u3', 'u4', 'u5']) {
      const registration = await ceremony(page, 'register', {username, residentKey: 'required'});
      assert.equal(registration.verified, true, `${username}: ${JSON.stringify(registration)}`);
      ids.add(registration.credentialId);
    }
    assert.equal(ids.size, 5);
    const login = await ceremony(page, 'login', {});
    assert.equal(login.verified, true, JSON.stringify(login));
    assert.ok(ids.has(login.credentialId));
    const byName = await ceremony(page, 'login', {username: 'u4'});
    assert.equal(byName.verified, true, JSON.stringify(byName));
    assert.equal(byName.username, 'u4');
    await page.close();
  });

  test('excludeCredentials with a registered credential → InvalidStateError', async () => {
    const page = await open(lanes.auto.context, rp.url('exclude.localhost'));
    const registration = await ceremony(page, 'register', {username: 'carol'});
    assert.equal(registration.verified, true, JSON.stringify(registration));
    const again = await ceremony(page, 'register', {username: 'carol', exclude: true});
    assert.equal(again.error?.name, 'InvalidStateError', JSON.stringify(again));
    const dave = await ceremony(page, 'register', {username: 'dave', exclude: true});
    assert.equal(dave.verified, true, JSON.stringify(dave));
    await page.close();
  });

  test('an RP ID that is not a suffix of the origin → SecurityError (the gateway\'s client decides)', async () => {
    const page = await open(lanes.auto.context, rp.url('rp.localhost'));
    const create = await ceremony(page, 'register', {username: 'mallory', rpId: 'example.com'});
    assert.equal(create.error?.name, 'SecurityError', JSON.stringify(create));
    const get = await ceremony(page, 'login', {rpId: 'other.localhost'});
    assert.equal(get.error?.name, 'SecurityError', JSON.stringify(get));
    await page.close();
  });

  test('a cross-origin iframe: crossOrigin true and topOrigin in clientDataJSON, verified', async () => {
    const frameOrigin = originOf(rp.url('login.localhost'));
    const topUrl = rp.url('shop.localhost', `/frame?src=${encodeURIComponent(`${frameOrigin}/`)}`);
    const page = await open(lanes.auto.context, topUrl);
    const frame = page.frames().find((f) => f.url().startsWith(frameOrigin));
    assert.ok(frame, 'the iframe loaded');
    await frame.waitForFunction(() => window.fidelioRp !== undefined);
    const fastBefore = lanes.auto.fidelio.host.stats.fast ?? 0;
    const registration = await ceremony(frame, 'register', {username: 'erin'});
    assert.equal(registration.error, undefined, JSON.stringify(registration.error));
    assert.equal(registration.verified, true);
    assert.equal(lanes.auto.fidelio.host.stats.fast ?? 0, fastBefore, 'a frame goes through exposeBinding');
    assert.deepEqual(registration.clientData, {
      type: 'webauthn.create',
      challenge: registration.clientData.challenge,
      origin: frameOrigin,
      crossOrigin: true,
      topOrigin: originOf(topUrl),
    });
    // @simplewebauthn wants the RP to name the top origins it accepts: verified here with
    // expectedTopOrigin, against the RP's own state.
    const {ceremonyId, response} = await withDeadline(frame.evaluate(async () => {
      const answer = await fetch('/api/login/options', {method: 'POST', headers: {'Content-Type': 'application/json'}, body: JSON.stringify({username: 'erin'})});
      const {ceremonyId, options} = await answer.json();
      const credential = await navigator.credentials.get({publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(options)});
      return {ceremonyId, response: credential.toJSON()};
    }), CEREMONY_MS, 'get() in the iframe');
    const expected = rp.rp.take(ceremonyId, 'get');
    const stored = rp.rp.credentials.get(`${expected.rpId}/${response.id}`);
    assert.ok(stored, 'the assertion names the registered credential');
    const verification = await verifyAuthenticationResponse({
      response,
      expectedChallenge: expected.challenge,
      expectedOrigin: expected.origin,
      expectedRPID: expected.rpId,
      expectedTopOrigin: originOf(topUrl),
      credential: stored.credential,
      requireUserVerification: false,
    });
    assert.equal(verification.verified, true);
    const clientData = JSON.parse(Buffer.from(response.response.clientDataJSON, 'base64url').toString());
    assert.deepEqual(clientData, {
      type: 'webauthn.get',
      challenge: expected.challenge,
      origin: frameOrigin,
      crossOrigin: true,
      topOrigin: originOf(topUrl),
    });
    await page.close();
  });

  test('a cross-origin iframe allowed to get but not to create → NotAllowedError (permissions policy)', async () => {
    const frameOrigin = originOf(rp.url('login.localhost'));
    // An embedder page of our own that delegates only publickey-credentials-get.
    const embedder = http.createServer((request, response) => {
      response.writeHead(200, {'Content-Type': 'text/html'});
      response.end(`<!doctype html><iframe src="${frameOrigin}/" allow="publickey-credentials-get *"></iframe>`);
    });
    await new Promise((resolve) => embedder.listen(0, '127.0.0.1', resolve));
    try {
      const page = await open(lanes.auto.context, `http://strict.localhost:${embedder.address().port}/`);
      const frame = page.frames().find((f) => f.url().startsWith(frameOrigin));
      assert.ok(frame, 'the iframe loaded');
      await frame.waitForFunction(() => window.fidelioRp !== undefined);
      const registration = await ceremony(frame, 'register', {username: 'policy'});
      assert.equal(registration.error?.name, 'NotAllowedError', JSON.stringify(registration));
      await page.close();
    } finally {
      embedder.closeAllConnections();
      await new Promise((resolve) => embedder.close(resolve));
    }
  });

  test('a popup window registers and logs in', async () => {
    const page = await open(lanes.auto.context, rp.url('rp.localhost'));
    const popupUrl = rp.url('popup.localhost');
    const [popup] = await Promise.all([
      page.waitForEvent('popup'),
      page.evaluate((url) => { window.open(url, 'fidelio-popup', 'popup,width=500,height=400'); }, popupUrl),
    ]);
    await popup.waitForLoadState('load');
    await popup.waitForFunction(() => window.fidelioRp !== undefined);
    const registration = await ceremony(popup, 'register', {username: 'frank'});
    assert.equal(registration.verified, true, JSON.stringify(registration));
    assert.equal(registration.clientData.origin, originOf(popupUrl));
    const login = await ceremony(popup, 'login', {username: 'frank'});
    assert.equal(login.verified, true, JSON.stringify(login));
    await popup.close();
    await page.close();
  });

  test('AbortController.abort() right after get() → AbortError, and the next ceremony works', async () => {
    const page = await open(lanes.auto.context, rp.url('abort.localhost'));
    const registration = await ceremony(page, 'register', {username: 'grace'});
    assert.equal(registration.verified, true, JSON.stringify(registration));
    const aborted = await ceremony(page, 'login', {username: 'grace', abort: true});
    assert.equal(aborted.error?.name, 'AbortError', JSON.stringify(aborted));
    const login = await ceremony(page, 'login', {username: 'grace'});
    assert.equal(login.verified, true, JSON.stringify(login));
    await page.close();
  });

  test('abort while the authenticator waits for the user → AbortError at once; the gateway cancels', async () => {
    const {context, daemon} = lanes.prompt;
    const page = await open(context, rp.url('waiting.localhost'));
    const started = Date.now();
    const outcome = await page.evaluate(async () => {
      const controller = new AbortController();
      const pending = navigator.credentials.create({
        publicKey: {
          rp: {name: 'waiting'},
          user: {id: new Uint8Array(16), name: 'w', displayName: 'w'},
          challenge: crypto.getRandomValues(new Uint8Array(32)),
          pubKeyCredParams: [{type: 'public-key', alg: -7}],
          timeout: 60_000,
        },
        signal: controller.signal,
      });
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      const t = performance.now();
      controller.abort();
      return pending.then(() => ({resolved: true}), (error) => ({name: error.name, ms: performance.now() - t}));
    });
    assert.equal(outcome.name, 'AbortError', JSON.stringify(outcome));
    assert.ok(outcome.ms < 100, `rejected ${outcome.ms} ms after abort()`);
    // The ceremony ends at the gateway too (CTAPHID CANCEL to the device), well before its timer.
    for (;;) {
      const status = await gatewayStatus(daemon);
      if (status.pending === 0) break;
      assert.ok(Date.now() - started < 30_000, `the gateway still has ${status.pending} ceremonies`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await page.close();
  });

  test('nobody answers the authenticator: the lifetime timer (timeout 1 ms, clamped to 10 s) → NotAllowedError', async () => {
    const page = await open(lanes.prompt.context, rp.url('timeout.localhost'));
    const started = Date.now();
    const registration = await ceremony(page, 'register', {username: 'trudy', timeout: 1});
    const elapsed = Date.now() - started;
    assert.equal(registration.error?.name, 'NotAllowedError', JSON.stringify(registration));
    assert.ok(elapsed >= 9_500 && elapsed < 30_000, `settled after ${elapsed} ms`);
    await page.close();
  });

  test('PIN set (--browser-pin): userVerification required, registration and login verified with UV', async () => {
    const page = await open(lanes.pin.context, rp.url('pin.localhost'));
    const registration = await ceremony(page, 'register', {username: 'ivan', userVerification: 'required'});
    assert.equal(registration.error, undefined, JSON.stringify(registration.error));
    assert.equal(registration.verified, true);
    assert.equal(registration.userVerified, true);
    const login = await ceremony(page, 'login', {username: 'ivan', userVerification: 'required'});
    assert.equal(login.verified, true, JSON.stringify(login));
    assert.equal(login.userVerified, true);
    const discoverable = await ceremony(page, 'register', {username: 'judy', residentKey: 'required', userVerification: 'required'});
    assert.equal(discoverable.verified, true, JSON.stringify(discoverable));
    assert.equal(await ceremony(page, 'isUvpaa'), false, 'a PIN is not built-in UV');
    await page.close();
  });

  test('a restarted daemon (new token, same address) is found again through the token file', async () => {
    const first = await startDaemon(space.dir, {tokenFile: 'restart-gateway.json'});
    let daemon = first;
    const context = await browser.newContext();
    try {
      const fidelio = await installFidelio(context, {tokenFile: first.tokenFile});
      const page = await open(context, rp.url('restart.localhost'));
      const before = await ceremony(page, 'register', {username: 'trent'});
      assert.equal(before.verified, true, JSON.stringify(before));
      await first.stop();
      daemon = await startDaemon(space.dir, {tokenFile: 'restart-gateway.json', gateway: new URL(first.url).host});
      assert.notEqual(daemon.token, first.token);
      // The client's spare connection went with the old daemon; the old token is refused (401).
      const after = await ceremony(page, 'register', {username: 'trent2'});
      assert.equal(after.verified, true, JSON.stringify(after));
      assert.equal(fidelio.host.stats.ceremonies, 2);
      await page.close();
    } finally {
      await context.close();
      await daemon.stop();
    }
  });

  test('no PIN: userVerification required → NotAllowedError', async () => {
    const page = await open(lanes.auto.context, rp.url('nopin.localhost'));
    const registration = await ceremony(page, 'register', {username: 'heidi', userVerification: 'preferred'});
    assert.equal(registration.verified, true, JSON.stringify(registration));
    assert.equal(registration.userVerified, false);
    const required = await ceremony(page, 'login', {username: 'heidi', userVerification: 'required'});
    assert.equal(required.error?.name, 'NotAllowedError', JSON.stringify(required));
    await page.close();
  });
});
