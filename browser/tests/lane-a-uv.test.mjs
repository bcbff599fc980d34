// Lane A with user verification: a daemon whose gateway "types" a PIN (`--browser-pin`, set on
// the device on first use) reached through an extension copy with the gateway baked in
// (`fidelio browser extension --bake`: the fetch fallback, no native host), and a
// platform-profile daemon with built-in UV (through the native host's relay).

import assert from 'node:assert/strict';
import {after, before, describe, test} from 'node:test';

import {ceremony, open, startLaneA} from './harness.mjs';

describe('lane A, PIN set (--browser-pin), baked extension config', () => {
  let lane;

  before(async () => {
    lane = await startLaneA({pin: '4321', bake: true});
  });

  after(async () => {
    await lane?.stop();
  });

  test('the extension uses its baked config.json (fetch, no native host)', () => {
    assert.equal(lane.ready.baked, true);
    assert.equal(lane.ready.gateway, lane.daemon.url);
    assert.equal(lane.ready.transport, 'fetch');
  });

  test('userVerification required: registration and login verified with UV', async () => {
    const page = await open(lane.context, lane.rp.url('pin.localhost'));
    const registration = await ceremony(page, 'register', {username: 'ivan', userVerification: 'required'});
    assert.equal(registration.error, undefined, JSON.stringify(registration.error));
    assert.equal(registration.verified, true);
    assert.equal(registration.userVerified, true);
    const login = await ceremony(page, 'login', {username: 'ivan', userVerification: 'required'});
    assert.equal(login.error, undefined, JSON.stringify(login.error));
    assert.equal(login.verified, true);
    assert.equal(login.userVerified, true);
    await page.close();
  });

  test('discoverable login with UV preferred on a key with a PIN is verified', async () => {
    const page = await open(lane.context, lane.rp.url('pin-discoverable.localhost'));
    const registration = await ceremony(page, 'register', {username: 'judy', residentKey: 'required'});
    assert.equal(registration.verified, true, JSON.stringify(registration));
    const login = await ceremony(page, 'login', {userVerification: 'preferred'});
    assert.equal(login.verified, true, JSON.stringify(login));
    assert.equal(login.username, 'judy');
    assert.equal(login.userVerified, true);
    await page.close();
  });

  test('a PIN is not built-in UV: isUserVerifyingPlatformAuthenticatorAvailable() is false', async () => {
    const page = await open(lane.context, lane.rp.url('pin.localhost'));
    assert.equal(await ceremony(page, 'isUvpaa'), false);
    await page.close();
  });

  test('every request went with fetch(), none over a native port', async () => {
    const counts = await lane.worker.evaluate(() => ({...self.fidelioStats}));
    assert.equal(counts.relay, 0, JSON.stringify(counts));
    assert.ok(counts.fetch >= 5, JSON.stringify(counts));
  });
});

describe('lane A, platform profile (built-in UV)', () => {
  let lane;

  before(async () => {
    lane = await startLaneA({profile: 'platform'});
  });

  after(async () => {
    await lane?.stop();
  });

  test('isUserVerifyingPlatformAuthenticatorAvailable() is true', async () => {
    const page = await open(lane.context, lane.rp.url('platform.localhost'));
    assert.equal(await ceremony(page, 'isUvpaa'), true);
    await page.close();
  });

  test('userVerification required is met by built-in UV, attachment platform', async () => {
    const page = await open(lane.context, lane.rp.url('platform.localhost'));
    const registration = await ceremony(page, 'register', {username: 'kim', userVerification: 'required', residentKey: 'required'});
    assert.equal(registration.error, undefined, JSON.stringify(registration.error));
    assert.equal(registration.verified, true);
    assert.equal(registration.userVerified, true);
    assert.equal(registration.authenticatorAttachment, 'platform');
    assert.deepEqual(registration.transports, ['internal']);
    const login = await ceremony(page, 'login', {userVerification: 'required'});
    assert.equal(login.verified, true, JSON.stringify(login));
    assert.equal(login.userVerified, true);
    assert.equal(login.username, 'kim');
    await page.close();
  });
});
