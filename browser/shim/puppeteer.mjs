// Lane B for puppeteer-core over WebDriver BiDi (Firefox — Debian's firefox-esr included — or
// Chrome with protocol 'webDriverBiDi'): installs the Fidelio WebAuthn shim as a BiDi preload
// script, which runs in every frame (iframes and popups included) before the page's scripts.
// The shim talks to Node through a BiDi channel argument (`script.message`), which names the
// calling browsing context; the frame's true origin and its ancestors' come from
// `browsingContext.getTree`, never from the page.
//
//   import puppeteer from 'puppeteer-core';
//   import {installFidelio} from './browser/shim/puppeteer.mjs';
//   const browser = await puppeteer.launch({browser: 'firefox', executablePath: '/usr/bin/firefox-esr', headless: true});
//   const fidelio = await installFidelio(browser, {tokenFile});   // or {url, token}; or a BrowserContext
//
// Why not page.evaluateOnNewDocument + page.exposeFunction: under BiDi, puppeteer's
// exposeFunction installs the function only in the frames that exist when it is called (plus a
// preload for the page's top-level context), tells the callback nothing about which frame
// called, and costs several protocol round trips per call (handles for the arguments, one more
// to settle); the preload script with a channel is one message in and one call back.

import {randomBytes} from 'node:crypto';

import {GatewayClient, ShimHost, callerFromChain, shimSource} from './gateway.mjs';

/** The preload script's function declaration: the shim, with the channel as its transport. */
export function preloadScript() {
  return `(channel) => {
  const PromiseCtor = Promise;
  const transport = (text) => new PromiseCtor((resolve) => { channel([resolve, text]); });
  (${shimSource})({transport});
}`;
}

function findChain(contexts, id, ancestors = []) {
  for (const info of contexts ?? []) {
    const chain = [info, ...ancestors];
    if (info.context === id) return chain;
    const found = findChain(info.children, id, chain);
    if (found) return found;
  }
  return null;
}

/** The caller: the browsing context's URL and its ancestors', from browsingContext.getTree. */
export async function bidiCaller(connection, context) {
  const {result} = await connection.send('browsingContext.getTree', {});
  const chain = findChain(result.contexts, context);
  if (!chain) return {origin: 'null', sameOriginWithAncestors: true};
  return callerFromChain(chain.map((info) => info.url));
}

/**
 * Installs lane B into a puppeteer Browser (every page of every user context) or a
 * BrowserContext (its pages) driven over WebDriver BiDi. Options: `url` + `token`, or
 * `tokenFile`. Resolves with {client, host, dispose()}. Pages loaded before keep the engine's
 * WebAuthn until they navigate.
 */
export async function installFidelio(target, options = {}) {
  const browser = typeof target.browser === 'function' ? target.browser() : target;
  const connection = browser.connection;
  if (!connection || typeof connection.send !== 'function' || browser.protocol !== 'webDriverBiDi') {
    throw new Error("installFidelio needs puppeteer driving the browser over WebDriver BiDi (browser: 'firefox', or protocol: 'webDriverBiDi')");
  }
  const client = options.client ?? new GatewayClient(options);
  const host = new ShimHost(client);
  const channel = `fidelio-${randomBytes(8).toString('hex')}`;

  const onMessage = async (params) => {
    if (params?.channel !== channel) return;
    const handle = params.data?.handle;
    const text = params.data?.value?.[1]?.value;
    const {realm, context} = params.source ?? {};
    if (!handle || !realm) return;
    const answer = await host.handle(context, text, () => bidiCaller(connection, context));
    try {
      await connection.send('script.callFunction', {
        functionDeclaration: '(message, answer) => { message[0](answer); }',
        awaitPromise: false,
        target: {realm},
        arguments: [{handle}, {type: 'string', value: answer}],
        resultOwnership: 'none',
      });
    } catch {
      // The document is gone: nobody is waiting.
    }
    connection.send('script.disown', {handles: [handle], target: {realm}}).catch(() => {});
  };
  const onDestroyed = (params) => host.frameGone(params?.context);
  connection.on('script.message', onMessage);
  connection.on('browsingContext.contextDestroyed', onDestroyed);

  // puppeteer names the default user context `undefined`; BiDi calls it "default".
  const userContext = target !== browser ? (target.id ?? 'default') : undefined;
  const {result} = await connection.send('script.addPreloadScript', {
    functionDeclaration: preloadScript(),
    arguments: [{type: 'channel', value: {channel, ownership: 'root', serializationOptions: {maxObjectDepth: 1}}}],
    ...(userContext ? {userContexts: [userContext]} : {}),
  });
  return {
    client,
    host,
    async dispose() {
      connection.off('script.message', onMessage);
      connection.off('browsingContext.contextDestroyed', onDestroyed);
      await connection.send('script.removePreloadScript', {script: result.script}).catch(() => {});
    },
  };
}
