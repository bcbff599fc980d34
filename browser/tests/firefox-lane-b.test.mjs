// Lane B end to end in headless Debian Firefox ESR, driven by puppeteer-core over WebDriver BiDi
// (Playwright cannot drive Debian's Firefox): the Fidelio shim as a BiDi preload script
// (browser/shim/puppeteer.mjs) → `fidelio serve --browser` → the virtual authenticator; every
// response verified by @simplewebauthn/server. Firefox's own WebAuthn never runs: the shim has
// replaced navigator.credentials.create/get before the page's first script.

import assert from 'node:assert/strict';
import http from 'node:http';
import {after, before, describe, test} from 'node:test';

import {verifyAuthenticationResponse} from '@simplewebauthn/server';

import {installFidelio} from '../shim/puppeteer.mjs';
import {
  CEREMONY_MS, control, gatewayStatus, launchFirefox, puppeteerCeremony as ceremony, startLaneBDaemon, withDeadline, workspace,
} from './harness.mjs';
import {inspectCredentials, inspectStatics} from './lane-b-checks.mjs';
import {startRp} from './rp-server.mjs';

const originOf = (url) => new URL(url).origin;

describe('lane B in Firefox ESR (puppeteer-core, WebDriver BiDi preload shim → fidelio gateway)', () => {
  let space;
  let rp;
  let browser;
  const lanes = {};

  // One Firefox; one user context (BrowserContext) per daemon, each with its own shim install.
  async function lane(name, daemonOptions) {
    const daemon = await startLaneBDaemon(space, daemonOptions);
    const context = await browser.createBrowserContext();
    space.defer(() => context.close());
    const fidelio = await installFidelio(context, {tokenFile: daemon.tokenFile});
    lanes[name] = {daemon, context, fidelio};
  }

  async function open(name, url) {
    const page = await lanes[name].context.newPage();
    page.setDefaultTimeout(CEREMONY_MS);
    await page.goto(url, {waitUntil: 'load'});
    return page;
  }

  before(async () => {
    space = await workspace('fidelio-firefox-');
    rp = await startRp();
    space.defer(() => rp.close());
    browser = await launchFirefox();
    space.defer(() => browser.close());
    await lane('auto', {});
    await lane('pin', {pin: '2468'});
    await lane('prompt', {presence: 'prompt'});
  });

  after(async () => {
    await space?.stop();
  });

  test('it is Firefox, and the shim answers the page\'s very first script', async () => {
    assert.match(await browser.version(), /^firefox\//i);
    // A page whose first inline script, before anything else, calls create(): Firefox's own
    // WebAuthn (no authenticator here) would never answer it.
    const early = http.createServer((request, response) => {
      response.writeHead(200, {'Content-Type': 'text/html'});
      response.end(`<!doctype html><html><head><script>
window.early = navigator.credentials.create({publicKey: {
  rp: {name: 'early'}, user: {id: new Uint8Array(16), name: 'e', displayName: 'e'},
  challenge: new Uint8Array(32), pubKeyCredParams: [{type: 'public-key', alg: -7}]}})
  .then((c) => ({id: c.id, isPublicKeyCredential: c instanceof PublicKeyCredential, origin: JSON.parse(new TextDecoder().decode(c.response.clientDataJSON)).origin}),
        (e) => ({name: e.name, message: e.message}));
</script></head><body>early</body></html>`);
    });
    await new Promise((resolve) => early.listen(0, '127.0.0.1', resolve));
    try {
      const before = lanes.auto.fidelio.host.stats.ceremonies;
      const url = `http://early.localhost:${early.address().port}/`;
      const page = await open('auto', url);
      const outcome = await withDeadline(page.evaluate(() => window.early), CEREMONY_MS, 'the first script\'s create()');
      assert.equal(outcome.name, undefined, JSON.stringify(outcome));
      assert.equal(outcome.isPublicKeyCredential, true);
      assert.equal(outcome.origin, originOf(url));
      assert.equal(lanes.auto.fidelio.host.stats.ceremonies, before + 1, 'the ceremony went through the shim');
      assert.match(await page.evaluate(() => navigator.userAgent), /Firefox\//);
      await page.close();
    } finally {
      early.closeAllConnections();
      await new Promise((resolve) => early.close(resolve));
    }
  });

  test('registration and login, verified by @simplewebauthn/server; the counter grows', async () => {
    const page = await open('auto', rp.url('rp.localhost'));
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
    const first = await ceremony(page, 'login', {username: 'alice'});
    assert.equal(first.verified, true, JSON.stringify(first));
    assert.equal(first.credentialId, registration.credentialId);
    const second = await ceremony(page, 'login', {username: 'alice'});
    assert.equal(second.verified, true, JSON.stringify(second));
    assert.ok(second.counter > first.counter, `counter ${second.counter} after ${first.counter}`);
    await page.close();
  });

  test('the objects the page gets: native prototypes and accessors, toJSON, getPublicKey, PRF', async () => {
    const page = await open('pin', rp.url('objects.localhost'));
    const out = await withDeadline(page.evaluate(inspectCredentials, {username: 'olga'}), CEREMONY_MS, 'inspectCredentials');
    assert.equal(out.error, undefined, JSON.stringify(out.error));
    for (const check of ['instanceofPublicKeyCredential', 'instanceofCredential', 'prototypeIsNative', 'responseIsAttestation',
      'responseIsAuthenticatorResponse', 'idIsBase64urlOfRawId', 'rawIdIsArrayBuffer', 'sameObject', 'nativeAccessorsWork',
      'publicKeyIsArrayBuffer', 'authenticatorDataIsArrayBuffer', 'attestationObjectIsArrayBuffer', 'toJSONMatchesStringify', 'looksNative']) {
      assert.equal(out.create[check], true, `create: ${check}`);
    }
    assert.equal(out.create.ownKeys, 0);
    assert.equal(out.create.tag, '[object PublicKeyCredential]');
    assert.equal(out.create.responseTag, '[object AuthenticatorAttestationResponse]');
    assert.equal(out.create.foreignThisThrows, 'TypeError');
    assert.equal(out.create.prf?.enabled, true);
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
    assert.equal(out.login.userVerified, true, 'the PIN verified the user');
    await page.close();
  });

  test('statics: isUvpaa false, conditional get only, TypeErrors, abort reasons', async () => {
    const page = await open('auto', rp.url('statics.localhost'));
    const out = await withDeadline(page.evaluate(inspectStatics), CEREMONY_MS, 'inspectStatics');
    assert.equal(out.isUvpaa, false);
    assert.equal(out.isConditionalMediationAvailable, true);
    assert.equal(out.capabilities?.conditionalGet, true);
    assert.equal(out.capabilities?.conditionalCreate, false);
    assert.equal(out.capabilities?.['extension:prf'], true);
    assert.equal(out.missingMembers.name, 'TypeError');
    assert.equal(out.challengeNotABuffer.name, 'TypeError');
    assert.equal(out.conditional.name, 'TypeError');
    assert.equal(out.alreadyAborted.name, 'AbortError');
    assert.equal(out.abortedWithReason.error, 'my reason');
    await page.close();
  });

  test('conditional mediation: get() stays pending until the test picks an account through the control API', async () => {
    const {daemon} = lanes.auto;
    const page = await open('auto', rp.url('autofill.localhost'));
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
    assert.deepEqual(request.accounts.map((a) => a.userName).sort(), ['carol', 'dave']);
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

  test('discoverable login (no allowCredentials) returns the user handle', async () => {
    const page = await open('auto', rp.url('discoverable.localhost'));
    const registration = await ceremony(page, 'register', {username: 'bob', residentKey: 'required'});
    assert.equal(registration.verified, true, JSON.stringify(registration));
    assert.deepEqual(registration.credProps, {rk: true});
    const login = await ceremony(page, 'login', {});
    assert.equal(login.verified, true, JSON.stringify(login));
    assert.equal(login.username, 'bob');
    assert.ok(login.userHandle);
    await page.close();
  });

  test('five resident credentials for one RP, then discoverable and by-name logins', async () => {
    const page = await open('auto', rp.url('many.localhost'));
    const ids = new Map();
    for (const username of ['u1', 'u2', 'u3', 'u4', 'u5']) {
      const registration = await ceremony(page, 'register', {username, residentKey: 'required'});
      assert.equal(registration.verified, true, `${username}: ${JSON.stringify(registration)}`);
      assert.deepEqual(registration.credProps, {rk: true});
      ids.set(username, registration.credentialId);
    }
    assert.equal(new Set(ids.values()).size, 5);
    const login = await ceremony(page, 'login', {});
    assert.equal(login.verified, true, JSON.stringify(login));
    assert.ok([...ids.values()].includes(login.credentialId));
    assert.equal(ids.get(login.username), login.credentialId);
    // Each one by allowCredentials returns its own.
    for (const [username, credentialId] of ids) {
      const byName = await ceremony(page, 'login', {username});
      assert.equal(byName.verified, true, `${username}: ${JSON.stringify(byName)}`);
      assert.equal(byName.username, username);
      assert.equal(byName.credentialId, credentialId);
    }
    await page.close();
  });

  test('excludeCredentials with a registered credential → InvalidStateError', async () => {
    const page = await open('auto', rp.url('exclude.localhost'));
    const registration = await ceremony(page, 'register', {username: 'carol'});
    assert.equal(registration.verified, true, JSON.stringify(registration));
    const again = await ceremony(page, 'register', {username: 'carol', exclude: true});
    assert.equal(again.error?.name, 'InvalidStateError', JSON.stringify(again));
    // Another user (nothing to exclude) still registers.
    const dave = await ceremony(page, 'register', {username: 'dave', exclude: true});
    assert.equal(dave.verified, true, JSON.stringify(dave));
    await page.close();
  });

  test('an RP ID that is not a suffix of the origin → SecurityError', async () => {
    const page = await open('auto', rp.url('rp.localhost'));
    const create = await ceremony(page, 'register', {username: 'mallory', rpId: 'example.com'});
    assert.equal(create.error?.name, 'SecurityError', JSON.stringify(create));
    const get = await ceremony(page, 'login', {rpId: 'other.localhost'});
    assert.equal(get.error?.name, 'SecurityError', JSON.stringify(get));
    await page.close();
  });

  test('a cross-origin iframe: crossOrigin true and topOrigin in clientDataJSON, verified', async () => {
    const frameOrigin = originOf(rp.url('login.localhost'));
    const topUrl = rp.url('shop.localhost', `/frame?src=${encodeURIComponent(`${frameOrigin}/`)}`);
    const page = await open('auto', topUrl);
    const frame = page.frames().find((f) => f.url().startsWith(frameOrigin));
    assert.ok(frame, 'the iframe loaded');
    await frame.waitForFunction(() => window.fidelioRp !== undefined);
    const registration = await ceremony(frame, 'register', {username: 'erin'});
    assert.equal(registration.verified, true, JSON.stringify(registration));
    assert.deepEqual(registration.clientData, {
      type: 'webauthn.create',
      challenge: registration.clientData.challenge,
      origin: frameOrigin,
      crossOrigin: true,
      topOrigin: originOf(topUrl),
    });
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
    assert.equal(clientData.crossOrigin, true);
    assert.equal(clientData.topOrigin, originOf(topUrl));
    await page.close();
  });

  test('a page cannot claim another origin: the iframe of a page that lies about itself', async () => {
    // The embedder (puppeteer.mjs) takes the origin from the browsing context tree; a page that
    // rewrites what it says about itself changes nothing.
    const embedder = http.createServer((request, response) => {
      response.writeHead(200, {'Content-Type': 'text/html'});
      response.end(`<!doctype html><script>history.replaceState(null, '', '/pretend'); try { Object.defineProperty(window, 'origin', {value: 'http://rp.localhost'}); } catch {}</script><p>evil</p><script src="${rp.url('rp.localhost', '/rp.js')}"></script>`);
    });
    await new Promise((resolve) => embedder.listen(0, '127.0.0.1', resolve));
    try {
      const page = await open('auto', `http://evil.localhost:${embedder.address().port}/`);
      await page.waitForFunction(() => window.fidelioRp !== undefined);
      const outcome = await withDeadline(page.evaluate(async (port) => {
        try {
          const credential = await navigator.credentials.create({publicKey: {
            rp: {id: 'rp.localhost', name: 'victim'},
            user: {id: new Uint8Array(16), name: 'x', displayName: 'x'},
            challenge: crypto.getRandomValues(new Uint8Array(32)),
            pubKeyCredParams: [{type: 'public-key', alg: -7}],
          }});
          return {origin: JSON.parse(new TextDecoder().decode(credential.response.clientDataJSON)).origin, port};
        } catch (error) {
          return {name: error.name};
        }
      }, embedder.address().port), CEREMONY_MS, 'create() from evil.localhost');
      assert.equal(outcome.name, 'SecurityError', JSON.stringify(outcome));
      await page.close();
    } finally {
      embedder.closeAllConnections();
      await new Promise((resolve) => embedder.close(resolve));
    }
  });

  test('a popup window registers and logs in', async () => {
    const page = await open('auto', rp.url('rp.localhost'));
    const popupUrl = rp.url('popup.localhost');
    const before = lanes.auto.fidelio.host.stats.ceremonies;
    // puppeteer's BiDi page emits 'popup' for a browsing context whose opener is this page.
    const [popup] = await Promise.all([
      new Promise((resolve) => page.once('popup', resolve)),
      page.evaluate((url) => { window.open(url, 'fidelio-popup', 'popup,width=500,height=400'); }, popupUrl),
    ]);
    popup.setDefaultTimeout(CEREMONY_MS);
    // It opens on about:blank, then navigates: wait for the RP's document.
    await popup.waitForFunction((origin) => location.origin === origin && window.fidelioRp !== undefined, {polling: 50}, originOf(popupUrl));
    assert.equal(await popup.evaluate(() => window.opener !== null), true, 'a popup, with its opener');
    const registration = await ceremony(popup, 'register', {username: 'frank'});
    assert.equal(registration.verified, true, JSON.stringify(registration));
    assert.equal(registration.clientData.origin, originOf(popupUrl));
    assert.equal(registration.clientData.crossOrigin, false);
    const login = await ceremony(popup, 'login', {username: 'frank'});
    assert.equal(login.verified, true, JSON.stringify(login));
    assert.equal(login.credentialId, registration.credentialId);
    assert.equal(lanes.auto.fidelio.host.stats.ceremonies, before + 2, 'the popup\'s ceremonies went through the shim');
    await popup.close();
    await page.close();
  });

  test('AbortController.abort() right after get() → AbortError, and the next ceremony works', async () => {
    const page = await open('auto', rp.url('abort.localhost'));
    const registration = await ceremony(page, 'register', {username: 'grace'});
    assert.equal(registration.verified, true, JSON.stringify(registration));
    const aborted = await ceremony(page, 'login', {username: 'grace', abort: true});
    assert.equal(aborted.error?.name, 'AbortError', JSON.stringify(aborted));
    const login = await ceremony(page, 'login', {username: 'grace'});
    assert.equal(login.verified, true, JSON.stringify(login));
    await page.close();
  });

  test('abort while the authenticator waits for the user → AbortError at once; the gateway cancels', async () => {
    const {daemon} = lanes.prompt;
    const page = await open('prompt', rp.url('waiting.localhost'));
    const started = Date.now();
    // Aborted right after the call: the cancel overtakes the embedder's look-up of the caller.
    const outcome = await withDeadline(page.evaluate(async () => {
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
      controller.abort();
      const first = await pending.then(() => ({resolved: true}), (error) => ({name: error.name}));
      // And once the ceremony is surely at the gateway, waiting for the user.
      const second = new AbortController();
      const waiting = navigator.credentials.create({
        publicKey: {
          rp: {name: 'waiting'},
          user: {id: new Uint8Array(16), name: 'w', displayName: 'w'},
          challenge: crypto.getRandomValues(new Uint8Array(32)),
          pubKeyCredParams: [{type: 'public-key', alg: -7}],
          timeout: 60_000,
        },
        signal: second.signal,
      });
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      second.abort();
      return {first, second: await waiting.then(() => ({resolved: true}), (error) => ({name: error.name}))};
    }), CEREMONY_MS, 'aborted create()');
    assert.deepEqual(outcome, {first: {name: 'AbortError'}, second: {name: 'AbortError'}});
    for (;;) {
      const status = await gatewayStatus(daemon);
      if (status.pending === 0) break;
      assert.ok(Date.now() - started < 30_000, `the gateway still has ${status.pending} ceremonies`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await page.close();
  });

  test('nobody answers the authenticator: the lifetime timer (timeout 1 ms, clamped to 10 s) → NotAllowedError', async () => {
    const {daemon} = lanes.prompt;
    const page = await open('prompt', rp.url('timeout.localhost'));
    const started = Date.now();
    const registration = await ceremony(page, 'register', {username: 'trudy', timeout: 1});
    const elapsed = Date.now() - started;
    assert.equal(registration.error?.name, 'NotAllowedError', JSON.stringify(registration));
    assert.ok(elapsed >= 9_500 && elapsed < 30_000, `settled after ${elapsed} ms`);
    // The gateway was told: its ceremony ends too.
    for (;;) {
      const status = await gatewayStatus(daemon);
      if (status.pending === 0) break;
      assert.ok(Date.now() - started < 40_000, `the gateway still has ${status.pending} ceremonies`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await page.close();
  });

  test('PIN set: userVerification required, registration and login verified with UV', async () => {
    const page = await open('pin', rp.url('pin.localhost'));
    const registration = await ceremony(page, 'register', {username: 'ivan', userVerification: 'required'});
    assert.equal(registration.verified, true, JSON.stringify(registration));
    assert.equal(registration.userVerified, true);
    const login = await ceremony(page, 'login', {username: 'ivan', userVerification: 'required'});
    assert.equal(login.verified, true, JSON.stringify(login));
    assert.equal(login.userVerified, true);
    await page.close();
  });
});
