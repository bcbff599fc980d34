// Lane B for Playwright: installs the Fidelio WebAuthn shim into a BrowserContext (or one Page),
// in every frame before the page's scripts (addInitScript), with an exposeBinding channel to
// the `fidelio serve --browser` gateway. Works with any engine Playwright drives, no extension.
//
//   import {installFidelio} from './browser/shim/playwright.mjs';
//   const fidelio = await installFidelio(context);               // the daemon's default token file
//   const fidelio = await installFidelio(context, {url, token}); // or {tokenFile}
//
// Install before the pages that need it load (documents already loaded keep the engine's own
// WebAuthn until they navigate). The calling frame's origin comes from Playwright (the binding's
// `source.frame`), never from the page.

// In Chromium a page's top-level document also gets a faster channel: a raw CDP binding on a
// session of our own (Runtime.addBinding / Runtime.bindingCalled, the answer delivered with
// Runtime.callFunctionOn). Playwright's exposeBinding layer costs 0.4–1 ms more per call
// here (bench.mjs measures it). The caller's origin then comes from the same CDP session's
// execution-context description (its security origin, reported by Chromium), and a top-level
// document is same-origin with its (no) ancestors. Frames, other engines, and documents that
// started before the session was ready use exposeBinding. `{fast: false}` turns it off.

import {randomBytes} from 'node:crypto';

import {GatewayClient, ShimHost, callerFromChain, shimSource} from './gateway.mjs';

/** The caller as Playwright sees the frame: its URL and its ancestors'. */
export function playwrightCaller(frame) {
  const urls = [];
  for (let f = frame; f; f = f.parentFrame()) urls.push(f.url());
  return callerFromChain(urls);
}

// What the fast channel answers when it will not serve a call: the shim resends it through
// exposeBinding.
const FALLBACK = '{"fallback":true}';

/**
 * The init script: takes the bindings out of the page's reach, then runs the shim on them.
 * `fast`: {binding, deliver} names of the Chromium fast channel, or null.
 */
export function initScript(bindingName, fast = null) {
  return `(() => {
  const take = (name) => {
    const value = typeof globalThis[name] === 'function' ? globalThis[name] : null;
    if (value) { try { delete globalThis[name]; } catch {} }
    return value;
  };
  const name = ${JSON.stringify(bindingName)};
  const binding = take(name);
  const slow = (text) => (binding || globalThis[name])(text);
  let transport = slow;
  const fast = ${fast ? `take(${JSON.stringify(fast.binding)})` : 'null'};
  if (fast && globalThis.top === globalThis) {
    const PromiseCtor = Promise;
    const MapCtor = Map;
    const pending = new MapCtor();
    let sequence = 0;
    Object.defineProperty(globalThis, ${JSON.stringify(fast?.deliver ?? '')}, {
      value: (id, answer) => {
        const resolve = pending.get(id);
        if (resolve) { pending.delete(id); resolve(answer); }
      },
      enumerable: false, writable: false, configurable: false,
    });
    const call = (text) => new PromiseCtor((resolve) => {
      const id = ++sequence;
      pending.set(id, resolve);
      fast(JSON.stringify({id, text}));
    });
    transport = (text) => call(text).then((answer) => (answer === ${JSON.stringify(FALLBACK)} ? slow(text) : answer));
  }
  (${shimSource})({transport});
})();`;
}

const TUPLE_ORIGIN = /^[a-z][a-z0-9+.-]*:\/\/[^/]+$/;

// The fast channel for one Chromium page: a CDP session with the binding, the page's execution
// contexts (frame, default world, security origin), and the answers delivered into the caller's
// context. Resolves once the binding is in place (false when the page is not Chromium's).
async function fastChannel(context, page, names, host) {
  let session;
  try {
    session = await context.newCDPSession(page);
  } catch {
    return false; // not Chromium
  }
  const contexts = new Map(); // executionContextId → {frameId, isDefault, origin}
  let mainFrameId = null;
  session.on('Runtime.executionContextCreated', ({context: description}) => {
    contexts.set(description.id, {...description.auxData, origin: description.origin});
  });
  session.on('Runtime.executionContextDestroyed', ({executionContextId}) => contexts.delete(executionContextId));
  session.on('Runtime.executionContextsCleared', () => contexts.clear());
  session.on('Runtime.bindingCalled', async ({name, payload, executionContextId}) => {
    if (name !== names.binding) return;
    let id;
    let answer = FALLBACK;
    try {
      const message = JSON.parse(payload);
      id = message.id;
      const caller = contexts.get(executionContextId);
      if (typeof id === 'number' && typeof message.text === 'string' && caller && caller.isDefault
          && caller.frameId === mainFrameId && TUPLE_ORIGIN.test(caller.origin ?? '')) {
        host.stats.fast = (host.stats.fast ?? 0) + 1;
        answer = await host.handle(page.mainFrame(), message.text, () => ({origin: caller.origin, sameOriginWithAncestors: true}));
      }
    } catch {
      answer = FALLBACK;
    }
    if (typeof id !== 'number') return;
    session.send('Runtime.callFunctionOn', {
      functionDeclaration: `function (id, answer) { globalThis[${JSON.stringify(names.deliver)}](id, answer); }`,
      executionContextId,
      arguments: [{value: id}, {value: answer}],
      returnByValue: true,
    }).catch(() => {});
  });
  try {
    const {frameTree} = await session.send('Page.getFrameTree');
    mainFrameId = frameTree.frame.id;
    await session.send('Runtime.enable');
    await session.send('Runtime.addBinding', {name: names.binding});
  } catch {
    return false; // the page closed meanwhile
  }
  return true;
}

/**
 * Installs lane B into `target` (a BrowserContext, or a Page). Options: `url` + `token`, or
 * `tokenFile` (default: the daemon's default token file); `fast: false` to use exposeBinding
 * only. Resolves with {client, host, bindingName, fastPages}: `client.url` is the gateway,
 * `host.stats.ceremonies` counts, `fastPages` holds the pages with the Chromium fast channel.
 */
export async function installFidelio(target, options = {}) {
  const client = options.client ?? new GatewayClient(options);
  const host = new ShimHost(client);
  const random = () => randomBytes(8).toString('hex');
  const bindingName = options.bindingName ?? `__fidelio_${random()}`;
  const fast = options.fast === false ? null : {binding: `__fidelio_${random()}`, deliver: `__fidelio_${random()}`};
  const isPage = typeof target.mainFrame === 'function';
  const context = isPage ? target.context() : target;
  await target.exposeBinding(bindingName, (source, text) => host.handle(source.frame, text, () => playwrightCaller(source.frame)));
  await target.addInitScript({content: initScript(bindingName, fast)});

  // A frame or page that goes away cancels what it left pending at the gateway.
  const fastPages = new Set();
  const watch = async (page) => {
    page.on('framedetached', (frame) => host.frameGone(frame));
    page.on('close', () => host.framesGone((frame) => frame.page() === page));
    if (fast && await fastChannel(context, page, fast, host)) fastPages.add(page);
  };
  if (isPage) {
    await watch(target);
  } else {
    await Promise.all(target.pages().map(watch));
    target.on('page', (page) => { watch(page); });
  }
  return {client, host, bindingName, fastPages};
}
