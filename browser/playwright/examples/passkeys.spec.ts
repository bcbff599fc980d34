// Passkey tests as a Playwright user writes them with @fidelio/playwright: the only Fidelio
// lines are the import and the `fidelio` fixture's calls.

import { createCredential, expect, fromBase64Url, publicKeyOf, test } from '@fidelio/playwright';

import { startSite, type Site } from './site.js';
import { flags, login, register, signCount, verifyAssertion } from './webauthn.js';

let site: Site;
test.beforeAll(async () => {
  site = await startSite();
});
test.afterAll(async () => {
  await site.close();
});

test('a passkey registered by the page is on the authenticator, and signs in', async ({ page, fidelio }) => {
  expect(fidelio.lane).toBe(test.info().project.name === 'lane-a' ? 'A' : 'B');
  await page.goto(site.url('shop.localhost'));
  const created = await page.evaluate(register, { rpId: 'shop.localhost', userId: 'dXNlci0x' });
  expect(created.error).toBeUndefined();

  const [credential, ...others] = await fidelio.getCredentials();
  expect(others).toHaveLength(0);
  expect(credential?.credentialId).toBe(created.id);
  expect(credential?.isResidentCredential).toBe(true);
  expect(credential?.rpId).toBe('shop.localhost');
  expect((await fidelio.waitForEvent('credentialAdded')).lane).toBe('gateway');

  // A discoverable sign-in, verified with the key the authenticator exported.
  const signedIn = await page.evaluate(login, { rpId: 'shop.localhost' });
  expect(signedIn.id).toBe(created.id);
  verifyAssertion(signedIn, publicKeyOf(credential!.privateKey));
  const asserted = await fidelio.waitForEvent('credentialAsserted');
  expect(asserted.credential.credentialId).toBe(created.id);
});

test('a credential made by the test signs in, counting from its signCount', async ({ page, fidelio }) => {
  const { input, publicKey } = createCredential({ rpId: 'shop.localhost', userName: 'alice', signCount: 41 });
  await fidelio.addCredential(input);
  await page.goto(site.url('shop.localhost'));
  const signedIn = await page.evaluate(login, { rpId: 'shop.localhost', allow: [input.credentialId] });
  expect(signedIn.error).toBeUndefined();
  expect(signedIn.id).toBe(input.credentialId);
  expect(signCount(verifyAssertion(signedIn, publicKey))).toBe(42);
});

test('user verification follows setUserVerified', async ({ page, fidelio }) => {
  await fidelio.addAuthenticator({
    transport: 'internal',
    hasResidentKey: true,
    hasUserVerification: true,
    isUserVerified: false,
  });
  await page.goto(site.url('uv.localhost'));
  const refused = await page.evaluate(register, {
    rpId: 'uv.localhost',
    userId: 'dXNlci0y',
    userVerification: 'required',
  });
  expect(refused.error?.name).toBe('NotAllowedError');

  await fidelio.setUserVerified(true);
  const created = await page.evaluate(register, {
    rpId: 'uv.localhost',
    userId: 'dXNlci0y',
    userVerification: 'required',
  });
  expect(created.error).toBeUndefined();
  const authenticatorData = fromBase64Url(created.response?.authenticatorData ?? '');
  expect(flags(authenticatorData) & 0x05).toBe(0x05); // UP and UV
  expect((await fidelio.getAuthenticator()).transport).toBe('internal');
});

test('backup flags set on a credential reach the relying party', async ({ page, fidelio }) => {
  const { input, publicKey } = createCredential({ rpId: 'sync.localhost' });
  await fidelio.addCredential(input);
  await fidelio.setCredentialProperties(input.credentialId, { backupEligibility: true, backupState: true });
  await page.goto(site.url('sync.localhost'));
  const signedIn = await page.evaluate(login, { rpId: 'sync.localhost' });
  expect(flags(verifyAssertion(signedIn, publicKey)) & 0x18).toBe(0x18);
  const asserted = await fidelio.waitForEvent('credentialAsserted');
  expect(asserted.credential.flags?.bs).toBe(true);
});

test('passkey autofill: a conditional get() signs in with the account the test picks', async ({ page, fidelio }) => {
  // Chromium's proxy API never forwards conditional requests: lane B only.
  test.skip(fidelio.lane === 'A', 'conditional mediation needs lane B (Chromium does not proxy it)');
  const alice = createCredential({ rpId: 'autofill.localhost', userName: 'alice' });
  const bob = createCredential({ rpId: 'autofill.localhost', userName: 'bob' });
  await fidelio.addCredential(alice.input);
  await fidelio.addCredential(bob.input);
  await page.goto(site.url('autofill.localhost'));
  expect(await page.evaluate(() => PublicKeyCredential.isConditionalMediationAvailable())).toBe(true);
  const pending = page.evaluate(login, { rpId: 'autofill.localhost', mediation: 'conditional' });
  const picked = await fidelio.selectAccount({ userName: 'bob' });
  expect(picked.credentialId).toBe(bob.input.credentialId);
  const signedIn = await pending;
  expect(signedIn.error).toBeUndefined();
  expect(signedIn.id).toBe(bob.input.credentialId);
  verifyAssertion(signedIn, bob.publicKey);
});

test('a synced passkey signs in from a second device after the first is lost', async ({ page, fidelio }) => {
  const phone = await fidelio.newDevice({ profile: 'synced-passkey' });
  await phone.prefer();
  await page.goto(site.url('sync.localhost'));
  const created = await page.evaluate(register, { rpId: 'sync.localhost', userId: 'dXNlci1z' });
  expect(created.error).toBeUndefined();
  const [credential] = await phone.getCredentials();
  expect(credential?.backupState).toBe(true);

  const newPhone = await phone.cloneDevice();
  await phone.unplug();
  const signedIn = await page.evaluate(login, { rpId: 'sync.localhost' });
  expect(signedIn.error).toBeUndefined();
  expect(signedIn.id).toBe(created.id);
  const authenticatorData = verifyAssertion(signedIn, publicKeyOf(credential!.privateKey));
  expect(flags(authenticatorData) & 0x10).toBe(0x10); // BS
  expect((await newPhone.waitForEvent('credentialAsserted')).credential.credentialId).toBe(created.id);
  await newPhone.removeDevice();
  await phone.removeDevice();
});

test('an injected fault: the user declines once, then signs in', async ({ page, fidelio }) => {
  const { input } = createCredential({ rpId: 'fault.localhost', userName: 'carol' });
  await fidelio.addCredential(input);
  await fidelio.addFaults({ type: 'presence', outcome: 'deny', count: 1 });
  await page.goto(site.url('fault.localhost'));
  const declined = await page.evaluate(login, { rpId: 'fault.localhost' });
  expect(declined.error?.name).toBe('NotAllowedError');
  const signedIn = await page.evaluate(login, { rpId: 'fault.localhost' });
  expect(signedIn.error).toBeUndefined();
  expect(await fidelio.listFaults()).toHaveLength(0);
});
