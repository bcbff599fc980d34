// The device lifecycle (docs/devices.md) end to end through lane B in headless Debian Chromium:
// devices made, cloned, unplugged ("lost"), plugged back in, preferred, exported and imported,
// and given faults through the control API (`/v1/control/devices…`,
// `/v1/control/authenticator/{id}/…`), while pages on the test RP register and log in through
// the Fidelio shim — every answer judged by @simplewebauthn/server in rp-server.mjs, an RP
// library that is not ours: BE/BS as credentialDeviceType/credentialBackedUp, a clone's counter
// falling behind, a lost key failing as a missing one does, credentials moving both ways
// between Fidelio and Chrome's own CDP virtual authenticator, faults as the page and the RP see
// them. One daemon for the file; each test makes its own devices and its own RP ID.

import assert from 'node:assert/strict';
import {after, before, describe, test} from 'node:test';

import {installFidelio} from '../shim/playwright.mjs';
import {
  CEREMONY_MS, ceremony, control, gatewayStatus, launchPlainChromium, open, startLaneBDaemon, withDeadline, workspace,
} from './harness.mjs';
import {startRp} from './rp-server.mjs';

const STANDARD_BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const fromBase64 = (text) => Buffer.from(text, 'base64');
const fromBase64url = (text) => Buffer.from(text, 'base64url');
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

describe('device lifecycle through lane B in Chromium (control API; @simplewebauthn/server verifying)', () => {
  let space;
  let rp;
  let browser;
  let daemon;
  let context; // the lane B context: every page in it has the shim
  let fidelio;

  before(async () => {
    space = await workspace('fidelio-lifecycle-');
    rp = await startRp();
    space.defer(() => rp.close());
    browser = await launchPlainChromium();
    space.defer(() => browser.close());
    daemon = await startLaneBDaemon(space, {});
    context = await browser.newContext();
    space.defer(() => context.close());
    fidelio = await installFidelio(context, {tokenFile: daemon.tokenFile});
  });

  after(async () => {
    await space?.stop();
  });

  // --- the control API ----------------------------------------------------------------------

  const api = (method, route, body) => control(daemon, method, route, body);
  const newDevice = (body) => api('POST', '/v1/control/devices', body);
  const showDevice = (id) => api('GET', `/v1/control/devices/${id}`);
  const plug = (id, plugged) => api('POST', `/v1/control/devices/${id}/plug`, {plugged});
  const prefer = (id) => api('POST', `/v1/control/devices/${id}/prefer`);
  const credentialsOf = (id) => api('GET', `/v1/control/authenticator/${id}/credentials`);
  const addFault = (id, fault) => api('POST', `/v1/control/authenticator/${id}/faults`, fault);
  const listFaults = async (id) => (await api('GET', `/v1/control/authenticator/${id}/faults`)).faults;

  // The daemon's latest event number, and the events after a number (no waiting).
  const lastEvent = async () => (await api('GET', '/v1/control/events?after=0&timeout=0')).last;
  const eventsAfter = async (seq) => (await api('GET', `/v1/control/events?after=${seq}&timeout=0`)).events;
  // Which devices signed assertions after `seq`.
  const assertedBy = async (seq) => (await eventsAfter(seq))
    .filter((event) => event.type === 'credentialAsserted')
    .map((event) => event.authenticatorId);

  // Devices made by a test are removed after it, and `default` is preferred again.
  async function withDevices(ids, body) {
    try {
      await body();
    } finally {
      for (const id of ids) await api('DELETE', `/v1/control/devices/${id}`).catch(() => {});
      await prefer('default');
    }
  }

  // A login that the RP must have verified; returns the RP's answer.
  async function verifiedLogin(page, params, what) {
    const login = await ceremony(page, 'login', params);
    assert.equal(login.error, undefined, `${what}: ${JSON.stringify(login.error)}`);
    assert.equal(login.verified, true, `${what}: ${JSON.stringify(login)}`);
    return login;
  }

  async function verifiedRegistration(page, params, what) {
    const registration = await ceremony(page, 'register', params);
    assert.equal(registration.error, undefined, `${what}: ${JSON.stringify(registration.error)}`);
    assert.equal(registration.verified, true, `${what}: ${JSON.stringify(registration)}`);
    return registration;
  }

  // --- 1 ------------------------------------------------------------------------------------

  test('a synced passkey signs in on its clone while the first phone is lost; BE/BS reach the RP (multiDevice/backed up; a security key: singleDevice)', async () => {
    await withDevices(['phone-a', 'phone-b', 'usb-key'], async () => {
      const phone = await newDevice({id: 'phone-a', profile: 'synced-passkey'});
      assert.equal(phone.profile, 'synced-passkey');
      assert.equal(phone.plugged, true);
      assert.equal((await prefer('phone-a')).preferred, true);

      const page = await open(context, rp.url('synced.localhost'));
      const registration = await verifiedRegistration(page, {username: 'sam', residentKey: 'required'}, 'registration on phone A');
      assert.equal(registration.credentialDeviceType, 'multiDevice');
      assert.equal(registration.credentialBackedUp, true);
      assert.equal(registration.fmt, 'none', 'a synced passkey attests nothing');
      assert.equal(registration.counter, 0, 'a synced passkey counts nothing');
      assert.deepEqual(registration.credProps, {rk: true});
      assert.deepEqual((await credentialsOf('phone-a')).map((c) => c.credentialId), [registration.credentialId]);

      // The passkey syncs to a second phone; the first one is lost.
      const clone = await api('POST', '/v1/control/devices/phone-a/clone', {id: 'phone-b'});
      assert.equal(clone.authenticatorId, 'phone-b');
      assert.equal(clone.profile, 'synced-passkey');
      const copied = (await credentialsOf('phone-b')).find((c) => c.credentialId === registration.credentialId);
      assert.ok(copied, 'the clone holds the passkey');
      assert.equal(copied.backupEligibility, true);
      assert.equal(copied.backupState, true);
      assert.equal((await plug('phone-a', false)).plugged, false);
      assert.equal((await showDevice('phone-a')).plugged, false);

      const seq = await lastEvent();
      const discoverable = await verifiedLogin(page, {}, 'discoverable login on phone B');
      assert.equal(discoverable.credentialId, registration.credentialId);
      assert.equal(discoverable.username, 'sam');
      assert.ok(discoverable.userHandle, 'the user handle came along');
      assert.equal(discoverable.counter, 0);
      assert.equal(discoverable.credentialDeviceType, 'multiDevice');
      assert.equal(discoverable.credentialBackedUp, true);
      const byName = await verifiedLogin(page, {username: 'sam'}, 'allowCredentials login on phone B');
      assert.equal(byName.credentialId, registration.credentialId);
      assert.deepEqual(await assertedBy(seq), ['phone-b', 'phone-b'], 'the lost phone signed nothing');
      await page.close();

      // A device-bound security key, for contrast.
      await newDevice({id: 'usb-key', profile: 'security-key'});
      await prefer('usb-key');
      const keyPage = await open(context, rp.url('bound.localhost'));
      const bound = await verifiedRegistration(keyPage, {username: 'sam'}, 'registration on the security key');
      assert.equal(bound.credentialDeviceType, 'singleDevice');
      assert.equal(bound.credentialBackedUp, false);
      const boundLogin = await verifiedLogin(keyPage, {username: 'sam'}, 'login on the security key');
      assert.equal(boundLogin.credentialDeviceType, 'singleDevice');
      assert.equal(boundLogin.credentialBackedUp, false);
      assert.ok(boundLogin.counter > bound.counter, `counter ${boundLogin.counter} after ${bound.counter}`);
      await keyPage.close();
    });
  });

  // --- 2 ------------------------------------------------------------------------------------

  test('a cloned security key: after the original signs twice, the clone\'s counter is rejected by the RP', async (t) => {
    await withDevices(['original', 'copy'], async () => {
      await newDevice({id: 'original', profile: 'security-key'});
      await prefer('original');
      const page = await open(context, rp.url('cloned.localhost'));
      // A non-discoverable credential: the clone signs with it through allowCredentials too.
      const registration = await verifiedRegistration(page, {username: 'carl', residentKey: 'discouraged'}, 'registration');
      assert.deepEqual(registration.credProps, {rk: false});
      assert.equal(registration.credentialDeviceType, 'singleDevice');

      await api('POST', '/v1/control/devices/original/clone', {id: 'copy'});
      const copied = (await credentialsOf('copy')).find((c) => c.credentialId === registration.credentialId);
      assert.ok(copied, 'the clone holds the non-discoverable credential');
      assert.equal(copied.isResidentCredential, false);

      // The original signs in twice while the copy is unplugged.
      await plug('copy', false);
      let seq = await lastEvent();
      const first = await verifiedLogin(page, {username: 'carl'}, 'first login on the original');
      const second = await verifiedLogin(page, {username: 'carl'}, 'second login on the original');
      assert.ok(first.counter > registration.counter && second.counter > first.counter,
        `counters ${registration.counter}, ${first.counter}, ${second.counter}`);
      assert.deepEqual(await assertedBy(seq), ['original', 'original']);
      const stored = rp.rp.credentials.get(`cloned.localhost/${registration.credentialId}`);
      assert.equal(stored.credential.counter, second.counter, 'the RP keeps the counter of its last login');

      // Now the copy alone: its signature is good, its counter is behind what the RP saw.
      await plug('copy', true);
      await plug('original', false);
      seq = await lastEvent();
      const cloned = await ceremony(page, 'login', {username: 'carl'});
      assert.deepEqual(await assertedBy(seq), ['copy'], 'the copy signed');
      assert.equal(cloned.error?.name, 'RpError', JSON.stringify(cloned));
      const verdict = /Response counter value (\d+) was lower than expected (\d+)/.exec(cloned.error.message);
      assert.ok(verdict, `a counter verdict: ${cloned.error.message}`);
      assert.ok(Number(verdict[1]) <= second.counter, cloned.error.message);
      assert.equal(Number(verdict[2]), second.counter, cloned.error.message);
      assert.equal(stored.credential.counter, second.counter, 'a rejected login moves no counter');
      t.diagnostic(`counters: registration ${registration.counter}, original ${first.counter} and ${second.counter}; the RP on the copy's login: ${cloned.error.message}`);

      // The original, back, still signs in.
      await plug('original', true);
      const back = await verifiedLogin(page, {username: 'carl'}, 'the original again');
      assert.ok(back.counter > second.counter);
      await page.close();
    });
  });

  // --- 3 ------------------------------------------------------------------------------------

  test('a lost device fails as a missing key does: NotAllowedError at the timeout (≈10 s), not at once; plugged back in, it signs', async (t) => {
    await withDevices(['pocket'], async () => {
      await newDevice({id: 'pocket', profile: 'security-key'});
      await prefer('pocket');
      const page = await open(context, rp.url('lost.localhost'));
      const registration = await verifiedRegistration(page, {username: 'lena'}, 'registration');

      const wasPlugged = (await api('GET', '/v1/control/devices')).filter((d) => d.plugged).map((d) => d.authenticatorId);
      assert.ok(wasPlugged.includes('default') && wasPlugged.includes('pocket'), JSON.stringify(wasPlugged));
      try {
        for (const id of wasPlugged) await plug(id, false);
        assert.deepEqual((await api('GET', '/v1/control/devices')).filter((d) => d.plugged), []);

        // Nothing plugged in: the ceremony waits, as a browser waits for a key, until the
        // lifetime timer (10 s: the shortest the shim and the gateway allow) ends it.
        const started = Date.now();
        await page.evaluate(() => { window.lostLogin = window.fidelioRp.login({username: 'lena', timeout: 10_000}); });
        for (;;) {
          if ((await gatewayStatus(daemon)).pending === 1) break;
          assert.ok(Date.now() - started < 5_000, 'the gateway holds the ceremony');
          await sleep(50);
        }
        await sleep(1_000);
        assert.equal(await page.evaluate(() => Promise.race([window.lostLogin.then(() => 'settled'), new Promise((r) => setTimeout(() => r('pending'), 50))])),
          'pending', 'still waiting after a second');
        const lost = await withDeadline(page.evaluate(() => window.lostLogin), CEREMONY_MS, 'the lost login');
        const elapsed = Date.now() - started;
        assert.equal(lost.error?.name, 'NotAllowedError', JSON.stringify(lost));
        assert.ok(elapsed >= 9_500 && elapsed < 25_000, `settled after ${elapsed} ms`);
        t.diagnostic(`no device plugged in: ${lost.error.name} after ${elapsed} ms (${lost.error.message})`);
        for (const waited = Date.now(); (await gatewayStatus(daemon)).pending !== 0;) {
          assert.ok(Date.now() - waited < 10_000, 'the gateway\'s ceremony ended');
          await sleep(50);
        }

        // Found again: plugged back in, it has the credential and signs.
        await plug('pocket', true);
        const found = await verifiedLogin(page, {username: 'lena'}, 'login after plugging back in');
        assert.equal(found.credentialId, registration.credentialId);

        // And a key inserted while a login waits for one: the waiting login goes on to it.
        await plug('pocket', false);
        const waitingSince = Date.now();
        await page.evaluate(() => { window.lostLogin = window.fidelioRp.login({username: 'lena', timeout: 60_000}); });
        for (;;) {
          if ((await gatewayStatus(daemon)).pending === 1) break;
          assert.ok(Date.now() - waitingSince < 5_000, 'the gateway holds the ceremony');
          await sleep(50);
        }
        await sleep(300);
        await plug('pocket', true);
        const inserted = await withDeadline(page.evaluate(() => window.lostLogin), CEREMONY_MS, 'the waiting login');
        assert.equal(inserted.verified, true, JSON.stringify(inserted));
        const waitedMs = Date.now() - waitingSince;
        assert.ok(waitedMs < 10_000, `resolved ${waitedMs} ms after it started`);
        t.diagnostic(`a key plugged in while a login waited: verified ${waitedMs} ms after the login started`);
      } finally {
        for (const id of wasPlugged) await plug(id, true).catch(() => {});
      }
      await page.close();
    });
  });

  // --- 4 ------------------------------------------------------------------------------------

  test('CDP round trip: Fidelio\'s export signs in with Chrome\'s virtual authenticator, and Chrome\'s credentials imported into Fidelio sign in through lane B', async (t) => {
    await withDevices(['exporter', 'importer'], async () => {
      // Fidelio → Chrome. Two credentials (discoverable and not), ES256 (what CDP takes).
      await newDevice({id: 'exporter', profile: 'security-key'});
      await prefer('exporter');
      const fidelioPage = await open(context, rp.url('to-chrome.localhost'));
      const made = {
        cora: await verifiedRegistration(fidelioPage, {username: 'cora', residentKey: 'required', algorithms: [-7]}, 'discoverable registration'),
        cole: await verifiedRegistration(fidelioPage, {username: 'cole', residentKey: 'discouraged', algorithms: [-7]}, 'non-discoverable registration'),
      };
      const publicKeys = Object.fromEntries(Object.entries(made).map(([name, r]) => [
        name, Buffer.from(rp.rp.credentials.get(`to-chrome.localhost/${r.credentialId}`).credential.publicKey)]));
      await fidelioPage.close();

      const exported = await api('GET', '/v1/control/devices/exporter/export?format=cdp');
      assert.equal(exported.count, 2, JSON.stringify(exported.warnings));
      const credentials = JSON.parse(exported.document);
      assert.equal(credentials.length, 2);
      for (const credential of credentials) {
        for (const field of ['credentialId', 'privateKey', ...(credential.userHandle ? ['userHandle'] : [])]) {
          assert.match(credential[field], STANDARD_BASE64, `${field} in standard base64`);
          assert.equal(credential[field].length % 4, 0, `${field} padded`);
        }
      }
      const exportedIds = credentials.map((c) => fromBase64(c.credentialId).toString('base64url')).sort();
      assert.deepEqual(exportedIds, Object.values(made).map((r) => r.credentialId).sort());

      let chromeMade;
      const plain = await browser.newContext(); // no shim: Chrome's own WebAuthn
      try {
        const page = await plain.newPage();
        page.setDefaultTimeout(CEREMONY_MS);
        const cdp = await plain.newCDPSession(page);
        await cdp.send('WebAuthn.enable', {enableUI: false});
        const {authenticatorId} = await cdp.send('WebAuthn.addVirtualAuthenticator', {
          options: {
            protocol: 'ctap2', transport: 'usb', hasResidentKey: true, hasUserVerification: true,
            isUserVerified: true, automaticPresenceSimulation: true,
          },
        });
        for (const credential of credentials) await cdp.send('WebAuthn.addCredential', {authenticatorId, credential});
        const inChrome = (await cdp.send('WebAuthn.getCredentials', {authenticatorId})).credentials;
        for (const credential of credentials) {
          const there = inChrome.find((c) => c.credentialId === credential.credentialId);
          assert.ok(there, 'Chrome holds the credential');
          assert.deepEqual(fromBase64(there.privateKey), fromBase64(credential.privateKey), 'the same key in Chrome');
        }

        const ceremoniesBefore = (await gatewayStatus(daemon)).ceremonies;
        await page.goto(rp.url('to-chrome.localhost'), {waitUntil: 'load'});
        for (const name of ['cora', 'cole']) {
          const login = await verifiedLogin(page, {username: name}, `${name} in Chrome`);
          assert.equal(login.credentialId, made[name].credentialId);
          assert.equal(login.username, name);
          // Verified against the public key the RP stored at the Fidelio registration.
          assert.deepEqual(Buffer.from(rp.rp.credentials.get(`to-chrome.localhost/${login.credentialId}`).credential.publicKey), publicKeys[name]);
        }
        const discoverable = await verifiedLogin(page, {}, 'discoverable login in Chrome');
        assert.equal(discoverable.username, 'cora');
        assert.equal((await gatewayStatus(daemon)).ceremonies, ceremoniesBefore, 'Chrome\'s authenticator answered, not Fidelio');

        // Chrome → Fidelio: a passkey made by Chrome's virtual authenticator.
        await page.goto(rp.url('from-chrome.localhost'), {waitUntil: 'load'});
        chromeMade = await verifiedRegistration(page, {username: 'dana', residentKey: 'required', algorithms: [-7]}, 'registration in Chrome');
        await verifiedLogin(page, {username: 'dana'}, 'login in Chrome');
        assert.equal((await gatewayStatus(daemon)).ceremonies, ceremoniesBefore);
        const fromChrome = (await cdp.send('WebAuthn.getCredentials', {authenticatorId})).credentials
          .filter((c) => c.rpId === 'from-chrome.localhost');
        assert.equal(fromChrome.length, 1);
        assert.equal(fromBase64(fromChrome[0].credentialId).toString('base64url'), chromeMade.credentialId);

        await newDevice({id: 'importer', profile: 'security-key'});
        const imported = await api('POST', '/v1/control/devices/importer/import', {document: JSON.stringify(fromChrome)});
        assert.equal(imported.imported, 1, JSON.stringify(imported));
        const inFidelio = (await credentialsOf('importer')).find((c) => c.credentialId === chromeMade.credentialId);
        assert.ok(inFidelio, 'Fidelio holds Chrome\'s credential');
        assert.equal(inFidelio.rpId, 'from-chrome.localhost');
        assert.equal(inFidelio.isResidentCredential, true);
        assert.deepEqual(fromBase64url(inFidelio.privateKey), fromBase64(fromChrome[0].privateKey), 'the private key, byte for byte');
        assert.deepEqual(fromBase64url(inFidelio.userHandle), fromBase64(fromChrome[0].userHandle));
        assert.equal(inFidelio.signCount, fromChrome[0].signCount);
        t.diagnostic(`PKCS#8 keys: Fidelio's export ${credentials.map((c) => fromBase64(c.privateKey).length).join(', ')} bytes, Chrome's ${fromBase64(fromChrome[0].privateKey).length} bytes; Chrome's signCount ${fromChrome[0].signCount}`);
      } finally {
        await plain.close();
      }

      const lanePage = await open(context, rp.url('from-chrome.localhost'));
      const seq = await lastEvent();
      for (const params of [{username: 'dana'}, {}]) {
        const login = await verifiedLogin(lanePage, params, `lane B login ${JSON.stringify(params)}`);
        assert.equal(login.credentialId, chromeMade.credentialId);
        assert.equal(login.username, 'dana');
      }
      assert.deepEqual(await assertedBy(seq), ['importer', 'importer']);
      await lanePage.close();
    });
  });

  // --- 5 ------------------------------------------------------------------------------------

  test('faults as the page and the RP see them: presence deny, a bad signature, UP=0, a rolled-back counter, attestation none', async (t) => {
    await withDevices(['faulty'], async () => {
      await newDevice({id: 'faulty', profile: 'security-key'});
      await prefer('faulty');
      const page = await open(context, rp.url('faults.localhost'));
      const registration = await verifiedRegistration(page, {username: 'fay'}, 'registration');
      const login = {username: 'fay'};
      const firedOnce = async (faultId, type) => {
        const events = (await eventsAfter(0)).filter((e) => e.type === 'faultInjected' && e.faultId === faultId);
        assert.equal(events.length, 1, `${type} fired once: ${JSON.stringify(events)}`);
        assert.equal(events[0].faultType, type);
        assert.equal(events[0].authenticatorId, 'faulty');
        assert.deepEqual((await listFaults('faulty')).filter((f) => f.faultId === faultId && f.remaining !== 0), [], `${type} used up`);
      };

      // The user declines: the page's get() rejects.
      let {faultIds: [id]} = await addFault('faulty', {type: 'presence', outcome: 'deny', count: 1});
      const denied = await ceremony(page, 'login', login);
      assert.equal(denied.error?.name, 'NotAllowedError', JSON.stringify(denied));
      await firedOnce(id, 'presence');
      let good = await verifiedLogin(page, login, 'after the denial');

      // A signature that does not verify: the browser hands it over, the RP refuses it.
      ({faultIds: [id]} = await addFault('faulty', {type: 'signature', command: 'getAssertion', count: 1}));
      const badSignature = await ceremony(page, 'login', login);
      assert.deepEqual(badSignature, {verified: false, reason: 'signature'});
      await firedOnce(id, 'signature');
      good = await verifiedLogin(page, login, 'after the bad signature');

      // UP=0, signed consistently: our WebAuthn client (the gateway), like a browser, passes
      // the assertion on; the RP refuses it.
      ({faultIds: [id]} = await addFault('faulty', {type: 'flags', up: false, count: 1}));
      const absent = await ceremony(page, 'login', login);
      assert.equal(absent.error?.name, 'RpError', JSON.stringify(absent));
      assert.match(absent.error.message, /User not present/);
      await firedOnce(id, 'flags');
      good = await verifiedLogin(page, login, 'after UP=0');

      // A counter 5 lower than the last one the RP saw.
      const counterBefore = good.counter;
      assert.ok(counterBefore >= 3, `a few logins so far (counter ${counterBefore})`);
      ({faultIds: [id]} = await addFault('faulty', {type: 'counter', rollback: 5, count: 1}));
      const rolledBack = await ceremony(page, 'login', login);
      assert.equal(rolledBack.error?.name, 'RpError', JSON.stringify(rolledBack));
      const verdict = /Response counter value (\d+) was lower than expected (\d+)/.exec(rolledBack.error.message);
      assert.ok(verdict, rolledBack.error.message);
      assert.equal(Number(verdict[1]), Math.max(0, counterBefore + 1 - 5), rolledBack.error.message);
      assert.equal(Number(verdict[2]), counterBefore);
      await firedOnce(id, 'counter');
      t.diagnostic(`rollback 5: ${rolledBack.error.message}; UP=0: ${absent.error.message}`);
      const jumped = await verifiedLogin(page, login, 'after the rollback');
      assert.equal(jumped.counter, counterBefore + 2, 'the stored counter went on as usual');

      // Attestation: packed (self) when the RP asks for it, none with the fault.
      const packed = await verifiedRegistration(page, {username: 'gus', attestation: 'direct'}, 'direct attestation');
      assert.equal(packed.fmt, 'packed');
      ({faultIds: [id]} = await addFault('faulty', {type: 'attestation', mode: 'none', count: 1}));
      const none = await verifiedRegistration(page, {username: 'hal', attestation: 'direct'}, 'direct attestation with the fault');
      assert.equal(none.fmt, 'none');
      await firedOnce(id, 'attestation');
      assert.notEqual(registration.credentialId, none.credentialId);
      await page.close();
    });
  });
});
