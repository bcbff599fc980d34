// A tiny site for the examples: one page on every host name that resolves to 127.0.0.1
// (Chromium resolves *.localhost to loopback by itself), so each test can use its own RP ID.

import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Site {
  /** `http://<host>:<port>/` */
  url(host: string): string;
  close(): Promise<void>;
}

const PAGE = `<!doctype html><meta charset="utf-8"><title>Shop</title><h1>Shop</h1>`;

export async function startSite(): Promise<Site> {
  const server = http.createServer((request, response) => {
    response.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    response.end(PAGE);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: (host) => `http://${host}:${port}/`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
