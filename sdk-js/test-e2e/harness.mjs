// e2e harness: starts the real `funnelhouse up`, a static server for the test shop, and headless Chromium.
import { createServer } from 'node:http';
import { readFileSync, mkdirSync, existsSync } from 'node:fs';
import { dirname, extname, join, normalize, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { chromiumPath, freePort, startFunnelhouseUp } from '../../e2e-support/funnelhouse.mjs';

export { waitFor } from '../../e2e-support/funnelhouse.mjs';

const here = dirname(fileURLToPath(import.meta.url));
export const SDK_ROOT = resolve(here, '..');
export const ARTIFACTS = join(SDK_ROOT, 'test-artifacts');
export const WRITE_KEY = 'wk_test';
const ADMIN_TOKEN = 'admintok';

// ---- funnelhouse up -----------------------------------------------------------------------

export async function startFunnelhouse() {
  const fh = await startFunnelhouseUp({
    dataDirPrefix: 'fh-sdk-e2e-',
    env: { FUNNELHOUSE_WRITE_KEYS: `${WRITE_KEY}:web`, FUNNELHOUSE_ADMIN_TOKEN: ADMIN_TOKEN },
  });
  return {
    url: fh.url,
    log: fh.log,
    async sql(sql) {
      const res = await fetch(`${fh.url}/v1/sql`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${ADMIN_TOKEN}`, 'Content-Type': 'application/json' },
        body: JSON.stringify({ sql }),
      });
      const text = await res.text();
      if (!res.ok) throw new Error(`sql ${res.status}: ${text}`);
      return JSON.parse(text).data;
    },
    stop: fh.stop,
  };
}

// ---- the shop ---------------------------------------------------------------------------

const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.css': 'text/css', '.map': 'application/json' };

/** Serves the test shop and dist/ on localhost (a different origin from the collector on 127.0.0.1). */
export async function startShop(collectorUrl, runId) {
  const port = await freePort();
  const dist = join(SDK_ROOT, 'dist');
  const shop = join(here, 'shop');
  const config = `(function () {
  var q = new URLSearchParams(location.search), c = {
    writeKey: ${JSON.stringify(WRITE_KEY)}, endpoint: ${JSON.stringify(collectorUrl)}, runId: ${JSON.stringify(runId)},
    flushInterval: 300
  };
  ['flushInterval', 'flushAt', 'maxBeaconBytes', 'retryBaseDelay', 'retryMaxDelay'].forEach(function (k) { if (q.get(k)) c[k] = Number(q.get(k)); });
  if (q.get('requireConsent')) c.requireConsent = true;
  if (q.get('endpoint')) c.endpoint = q.get('endpoint');
  if (q.get('waitForResults')) c.autocapture = { search: { waitForResults: Number(q.get('waitForResults')) } };
  c.onError = function (e) { (window.__fhErrors = window.__fhErrors || []).push(e); };
  // What the SDK queued, so a test can wait for it instead of sleeping.
  c.beforeSend = function (m) { (window.__fhQueued = window.__fhQueued || []).push(m); return m; };
  window.SHOP_CONFIG = c;
})();`;
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    let file;
    if (path === '/config.js') {
      res.writeHead(200, { 'Content-Type': 'text/javascript', 'Cache-Control': 'no-store' });
      return res.end(config);
    }
    if (path === '/' || path === '/search' || path.startsWith('/product/')) file = join(shop, 'index.html');
    // A router-style single-page app, with the SDK's script before the app (early) or loaded after it (late).
    else if (path.startsWith('/spa/')) file = join(shop, 'spa.html');
    else if (path.startsWith('/spa-late/')) file = join(shop, 'spa-late.html');
    else if (path.startsWith('/shop/')) file = join(shop, normalize(path.slice(6)));
    else if (path.startsWith('/dist/')) file = join(dist, normalize(path.slice(6)));
    if (!file || !(file.startsWith(shop) || file.startsWith(dist)) || !existsSync(file)) {
      res.writeHead(404);
      return res.end('not found');
    }
    // no-cache, not no-store: no-store would keep pages out of the back-forward cache.
    res.writeHead(200, { 'Content-Type': TYPES[extname(file)] || 'application/octet-stream', 'Cache-Control': 'no-cache' });
    res.end(readFileSync(file));
  });
  await new Promise((r) => server.listen(port, '127.0.0.1', r));
  return { url: `http://localhost:${port}`, stop: () => new Promise((r) => server.close(r)) };
}

// ---- the browser ------------------------------------------------------------------------

export async function startBrowser() {
  mkdirSync(ARTIFACTS, { recursive: true });
  return chromium.launch({
    executablePath: chromiumPath('CHROMIUM_BIN'),
    headless: true,
    // Playwright turns the back-forward cache off by default; the SDK must keep pages cacheable, so test with it on.
    ignoreDefaultArgs: ['--disable-back-forward-cache'],
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
}

export async function screenshot(page, name) {
  try {
    await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: false });
  } catch {
    // a closed page has nothing to show
  }
}

// ---- a slow way to the collector ---------------------------------------------------------

/**
 * A proxy in front of the collector that holds each /v1/batch request (`holdRequestMs`, before
 * passing it on) or its answer (`holdAnswerMs`, after the collector has stored it). It records the
 * message ids of every request that arrived and the collector's `duplicates` count of each answer.
 */
export async function startSlowProxy(collectorUrl, { holdRequestMs = 0, holdAnswerMs = 0 } = {}) {
  const port = await freePort();
  const requests = []; // { ids: string[], answered: Promise<{ status, duplicates }> }
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const server = createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      let ids = [];
      try {
        ids = JSON.parse(raw.toString('utf8')).batch.map((m) => m.messageId);
      } catch {
        // not a batch
      }
      const answered = (async () => {
        await sleep(holdRequestMs);
        const upstream = await fetch(collectorUrl + req.url, {
          method: req.method,
          headers: { 'Content-Type': req.headers['content-type'] || 'text/plain', Origin: req.headers.origin || '' },
          body: req.method === 'POST' ? raw : undefined,
        });
        const body = await upstream.text();
        await sleep(holdAnswerMs);
        const headers = { 'Content-Type': upstream.headers.get('content-type') || 'application/json' };
        for (const [k, v] of upstream.headers) if (k.startsWith('access-control-')) headers[k] = v;
        try {
          res.writeHead(upstream.status, headers);
          res.end(body);
        } catch {
          // the browser went away
        }
        let duplicates = 0;
        try {
          duplicates = JSON.parse(body).duplicates || 0;
        } catch {
          // not JSON
        }
        return { status: upstream.status, duplicates };
      })();
      requests.push({ ids, answered });
    });
  });
  await new Promise((r) => server.listen(port, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    stop: () =>
      new Promise((r) => {
        server.close(r);
        server.closeAllConnections();
      }),
  };
}
