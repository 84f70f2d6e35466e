// Drives one browser SDK of another vendor, unmodified, in Debian's Chromium against a running
// funnelhouse, and prints what went over the wire as JSON; tests/test_clients_browser.py asserts.
//
//   node drive.mjs '<json spec>'
//   spec: { sdk: "segment" | "rudderstack", collector: "http://127.0.0.1:PORT", writeKey,
//           options: {…SDK load options}, calls: [[method, ...args], …],
//           unload: bool (leave the page at the end), quietMs: how long the wire must stay
//           silent before the run counts as finished (longer than any retry delay) }
//
// The page is served from http://localhost:<port>, another origin than the collector's
// http://127.0.0.1:<port>, so every request is a real cross-origin one (CORS, preflights).
// Chromium resolves no other host name: an SDK reaching for a CDN fails, listed in `offsite`.
import { createServer, request } from 'node:http';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const modules = join(here, 'node_modules');
const SDK_FILES = {
  '/sdk/analytics-next.js': join(modules, '@segment/analytics-next/dist/umd/index.js'),
  '/sdk/rudderstack-analytics.js': join(modules, '@rudderstack/analytics-js/dist/npm/modern/bundled/umd/index.js'),
};
const PAGES = { segment: join(here, 'pages/segment.html'), rudderstack: join(here, 'pages/rudderstack.html') };
const LOCAL_HOSTS = new Set(['127.0.0.1', 'localhost']);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function serveSite(spec, collector) {
  // Test input, but still JSON (and no "</script>" can close anything: it is a .js file).
  const site = `window.FH_SITE = ${JSON.stringify({
    collector, writeKey: spec.writeKey, options: spec.options ?? {},
  })};`;
  const server = createServer((req, res) => {
    const path = new URL(req.url, 'http://x').pathname;
    const send = (type, body) => {
      res.writeHead(200, { 'Content-Type': type, 'Cache-Control': 'no-store' });
      res.end(body);
    };
    if (path === '/') return send('text/html; charset=utf-8', readFileSync(PAGES[spec.sdk]));
    if (path === '/site.js') return send('text/javascript', site);
    if (SDK_FILES[path]) return send('text/javascript', readFileSync(SDK_FILES[path]));
    if (path === '/favicon.ico') return send('image/x-icon', '');
    res.writeHead(404);
    return res.end('not found');
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

/**
 * A pass-through in front of the collector that writes down every exchange: the SDK is pointed
 * at it, and it forwards each request unchanged (Host included, so the settings documents name
 * it) and the answer back unchanged. It sees what the browser really sent, beacons sent while
 * the page unloads too, which the browser's own DevTools events do not report.
 */
function startWire(collector) {
  const upstream = new URL(collector);
  const log = { requests: [], inFlight: 0, lastActivity: Date.now() };
  const server = createServer((req, res) => {
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      const entry = { method: req.method, path: req.url, headers: req.headers, body: parseBody(raw),
        status: null, responseHeaders: {}, responseBody: null, failure: null };
      log.requests.push(entry);
      log.inFlight += 1;
      log.lastActivity = Date.now();
      const done = () => {
        log.inFlight -= 1;
        log.lastActivity = Date.now();
      };
      const forward = request({ host: upstream.hostname, port: upstream.port, method: req.method,
        path: req.url, headers: req.headers }, (answer) => {
        const body = [];
        answer.on('data', (chunk) => body.push(chunk));
        answer.on('end', () => {
          const bytes = Buffer.concat(body);
          Object.assign(entry, { status: answer.statusCode, responseHeaders: answer.headers,
            responseBody: parseBody(bytes) });
          res.writeHead(answer.statusCode, answer.headers);
          res.end(bytes);
          done();
        });
      });
      forward.on('error', (error) => {
        entry.failure = String(error);
        res.writeHead(502);
        res.end();
        done();
      });
      forward.end(raw);
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () =>
    resolve({ url: `http://127.0.0.1:${server.address().port}`, log, server })));
}

function parseBody(bytes) {
  if (!bytes.length) return null;
  const text = bytes.toString('utf8');
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** Requests for any host but this machine: an SDK reaching for a CDN or a vendor's API. */
function recordOffsite(context) {
  const offsite = [];
  context.on('request', (req) => {
    const url = new URL(req.url());
    if (url.protocol.startsWith('http') && !LOCAL_HOSTS.has(url.hostname)) offsite.push(req.url());
  });
  return offsite;
}

/** Until nothing is in flight and nothing was sent for quietMs (or the deadline passes). */
async function quiet(log, quietMs, deadline) {
  while (Date.now() < deadline) {
    if (log.inFlight === 0 && Date.now() - log.lastActivity >= quietMs) return true;
    await sleep(100);
  }
  return false;
}

// In the page: wait until the SDK has its settings, run the calls, report who it thinks it is.
const IN_PAGE = {
  segment: {
    ready: () => window.analytics.then(() => true),
    call: async ([method, ...args]) => {
      const ctx = await window.analytics[method](...args);
      return ctx?.event?.messageId ?? null;
    },
    anonymousId: async () => (await window.analytics.user()).anonymousId(),
  },
  rudderstack: {
    ready: () => new Promise((resolve) => window.rudderanalytics.ready(() => resolve(true))),
    call: async ([method, ...args]) => {
      window.rudderanalytics[method](...args);
      return null;
    },
    anonymousId: () => window.rudderanalytics.getAnonymousId(),
  },
};

async function main() {
  const spec = JSON.parse(process.argv[2]);
  const quietMs = spec.quietMs ?? 4000;
  const deadline = Date.now() + (spec.timeoutMs ?? 90_000);
  const wire = await startWire(spec.collector);
  const site = await serveSite(spec, wire.url);
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_BIN || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      // Nothing but this machine: a CDN fetch fails (and is listed in `offsite`).
      '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1'],
  });
  const result = { site: `http://localhost:${site.address().port}/`, collector: wire.url,
    ready: false, anonymousId: null, messageIds: [], finished: false, offsite: [],
    pageErrors: [], console: [], error: null };
  try {
    const context = await browser.newContext();
    result.offsite = recordOffsite(context);
    const page = await context.newPage();
    page.on('pageerror', (error) => result.pageErrors.push(String(error)));
    page.on('console', (message) => {
      if (['error', 'warning'].includes(message.type())) result.console.push(`${message.type()}: ${message.text()}`);
    });
    const inPage = IN_PAGE[spec.sdk];
    await page.goto(result.site);
    result.ready = await page.evaluate(`(${inPage.ready})()`);
    // All calls in one go, as a page makes them (no round trip to this driver in between).
    result.messageIds = await page.evaluate(`(async (calls) => {
      const ids = [];
      for (const call of calls) ids.push(await (${inPage.call})(call));
      return ids;
    })(${JSON.stringify(spec.calls)})`);
    result.anonymousId = await page.evaluate(`(${inPage.anonymousId})()`);
    result.finished = await quiet(wire.log, quietMs, deadline);
    if (spec.unload) {
      // Leaving the page is when a beacon queue flushes (pagehide).
      await page.goto('about:blank');
      wire.log.lastActivity = Date.now();
      result.finished = await quiet(wire.log, quietMs, deadline);
    }
    await context.close();
  } catch (error) {
    result.error = String(error?.stack ?? error);
  } finally {
    await browser.close();
    site.close();
    wire.server.close();
  }
  process.stdout.write(JSON.stringify({ ...result, requests: wire.log.requests }));
}

await main();
