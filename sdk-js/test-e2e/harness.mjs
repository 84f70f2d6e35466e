// e2e harness: starts the real `funnelhouse up`, a static server for the test shop, and headless Chromium.
import { spawn, execFileSync } from 'node:child_process';
import { createServer } from 'node:http';
import { mkdtempSync, readFileSync, rmSync, mkdirSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, extname, join, normalize, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import net from 'node:net';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const SDK_ROOT = resolve(here, '..');
export const ARTIFACTS = join(SDK_ROOT, 'test-artifacts');
export const WRITE_KEY = 'wk_test';
const ADMIN_TOKEN = 'admintok';

export async function freePort() {
  return new Promise((res, rej) => {
    const s = net.createServer();
    s.unref();
    s.on('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls fn until it returns a truthy value or the deadline passes (then returns the last value). */
export async function waitFor(fn, { timeout = 20_000, interval = 250 } = {}) {
  const end = Date.now() + timeout;
  let last;
  for (;;) {
    last = await fn();
    if (last || Date.now() > end) return last;
    await sleep(interval);
  }
}

// ---- funnelhouse up -----------------------------------------------------------------------

export async function startFunnelhouse() {
  const bin = process.env.FUNNELHOUSE_BIN || resolve(SDK_ROOT, '..', '.venv', 'bin', 'funnelhouse');
  if (!existsSync(bin)) throw new Error(`funnelhouse not found at ${bin} (set FUNNELHOUSE_BIN or set up ../.venv)`);
  const port = await freePort();
  const dataDir = mkdtempSync(join(tmpdir(), 'fh-sdk-e2e-'));
  let log = '';
  const proc = spawn(bin, ['up', '--host', '127.0.0.1', '--port', String(port), '--data-dir', dataDir], {
    env: { ...process.env, FUNNELHOUSE_WRITE_KEYS: `${WRITE_KEY}:web`, FUNNELHOUSE_ADMIN_TOKEN: ADMIN_TOKEN },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true, // its own process group, so stop() ends any children too
  });
  proc.stdout.on('data', (d) => (log += d));
  proc.stderr.on('data', (d) => (log += d));
  const url = `http://127.0.0.1:${port}`;
  const ready = await waitFor(
    async () => {
      if (proc.exitCode !== null) return 'exited';
      try {
        return (await fetch(`${url}/healthz`)).ok;
      } catch {
        return false;
      }
    },
    { timeout: 90_000, interval: 300 },
  );
  if (ready !== true) {
    stopProcess(proc);
    throw new Error(`funnelhouse up did not become ready:\n${log}`);
  }
  return {
    url,
    log: () => log,
    async sql(sql) {
      const res = await fetch(`${url}/v1/sql`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${ADMIN_TOKEN}`, 'Content-Type': 'application/json' },
        body: JSON.stringify({ sql }),
      });
      const text = await res.text();
      if (!res.ok) throw new Error(`sql ${res.status}: ${text}`);
      return JSON.parse(text).data;
    },
    async stop() {
      await stopProcess(proc);
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

async function stopProcess(proc) {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((r) => proc.once('exit', r));
  try {
    process.kill(-proc.pid, 'SIGTERM');
  } catch {
    return;
  }
  const t = setTimeout(() => {
    try {
      process.kill(-proc.pid, 'SIGKILL');
    } catch {
      // gone
    }
  }, 15_000);
  await exited;
  clearTimeout(t);
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
  c.onError = function (e) { (window.__fhErrors = window.__fhErrors || []).push(e); };
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

function chromiumPath() {
  if (process.env.CHROMIUM_BIN) return process.env.CHROMIUM_BIN;
  for (const name of ['chromium', 'chromium-browser', 'google-chrome']) {
    try {
      return execFileSync('which', [name], { encoding: 'utf8' }).trim();
    } catch {
      // next
    }
  }
  throw new Error('no chromium found: apt-get install -y chromium (or set CHROMIUM_BIN)');
}

export async function startBrowser() {
  mkdirSync(ARTIFACTS, { recursive: true });
  return chromium.launch({
    executablePath: chromiumPath(),
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
