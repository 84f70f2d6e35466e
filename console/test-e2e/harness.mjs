// e2e harness for the console: a real `funnelhouse up` in a temp data folder serving console/dist,
// demo data through its HTTP API, the CLI against the same instance, and headless Chromium.
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { after, before } from 'node:test';
import { promisify } from 'node:util';
import { chromium } from 'playwright-core';
import { chromiumPath, startFunnelhouseUp, waitFor } from '../../e2e-support/funnelhouse.mjs';

export { waitFor } from '../../e2e-support/funnelhouse.mjs';

const here = dirname(fileURLToPath(import.meta.url));
export const CONSOLE_ROOT = resolve(here, '..');
export const SCREENSHOTS = join(CONSOLE_ROOT, 'test-artifacts', 'screenshots');
export const ADMIN_TOKEN = 'console-e2e-admin';
export const BROWSER_KEY = 'wk_console_web';
export const SERVER_KEY = 'sk_console_server';
export const VIEWPORT = { width: 1366, height: 768 };

const run = promisify(execFile);

// ---- funnelhouse up ---------------------------------------------------------------------

export async function startFunnelhouse() {
  const dist = join(CONSOLE_ROOT, '..', 'funnelhouse', 'console_dist');
  if (!existsSync(join(dist, 'index.html'))) throw new Error('funnelhouse/console_dist is not built: npm --prefix console run build');
  const fh = await startFunnelhouseUp({
    dataDirPrefix: 'fh-console-e2e-',
    env: {
      FUNNELHOUSE_WRITE_KEYS: `${BROWSER_KEY}:web,${SERVER_KEY}:backend:server`,
      FUNNELHOUSE_ADMIN_TOKEN: ADMIN_TOKEN,
      FUNNELHOUSE_CONSOLE_DIR: dist,
    },
  });
  const { url, dataDir, bin, env } = fh;

  /** The funnelhouse CLI on the same data folder: it finds the running instance and goes through HTTP. */
  async function cli(...args) {
    try {
      const { stdout } = await run(bin, [...args, '--data-dir', dataDir], { env, maxBuffer: 64 * 1024 * 1024, timeout: 300_000 });
      return stdout;
    } catch (err) {
      throw new Error(`funnelhouse ${args.join(' ')} failed: ${err.stderr || err.message}`);
    }
  }

  async function api(method, path, body) {
    const res = await fetch(`${url}${path}`, {
      method,
      headers: { Authorization: `Bearer ${ADMIN_TOKEN}`, ...(body ? { 'Content-Type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${path} → ${res.status}: ${text}`);
    return text.startsWith('{') || text.startsWith('[') ? JSON.parse(text) : text;
  }

  return {
    url,
    dataDir,
    log: fh.log,
    cli,
    api,
    /** One Segment-spec message to the collector with the browser key, as an SDK would send it. */
    async track(message) {
      const res = await fetch(`${url}/v1/track`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Authorization: `Basic ${Buffer.from(`${BROWSER_KEY}:`).toString('base64')}` },
        body: JSON.stringify(message),
      });
      return { status: res.status, body: await res.json() };
    },
    stop: fh.stop,
  };
}

/** Demo traffic through the HTTP API (server key: historical timestamps), then the models. */
export async function loadDemo(fh, { people = 400, days = 10 } = {}) {
  await notAcrossMidnight();
  let out;
  try {
    out = await fh.cli('demo', '--url', fh.url, '--write-key', SERVER_KEY, '--people', String(people), '--days', String(days));
  } catch (err) {
    // What the server said about it is in its log.
    throw new Error(`${err.message}\n--- funnelhouse up log (end) ---\n${fh.log().slice(-4000)}`);
  }
  const demoAccepted = Number((out.match(/accepted ([\d,]+)/) || [])[1]?.replace(/,/g, ''));
  if (!demoAccepted) throw new Error(`demo sent nothing: ${out}`);
  const accepted = demoAccepted + (await visitorsNow(fh));
  // Every accepted event must be in the warehouse before the models read it.
  const loaded = await waitFor(async () => {
    const answer = await fh.api('POST', '/v1/sql', { sql: 'SELECT count() AS n FROM events_raw' });
    return Number(answer.data[0].n) >= accepted;
  }, { timeout: 60_000, interval: 500 });
  if (!loaded) throw new Error(`the loader did not load the ${accepted} demo events in time`);
  await fh.cli('models', 'run');
  return accepted;
}

/** Tests read "today" from the clock and expect the demo's last day to be it: a demo loaded a
 * few minutes before midnight (UTC) would be yesterday's by the time they look, so wait the
 * day out first. */
async function notAcrossMidnight(margin = 3 * 60_000) {
  const now = Date.now();
  const left = 86_400_000 - (now % 86_400_000);
  if (left < margin) await new Promise((done) => setTimeout(done, left + 5_000));
}

// The demo's campaigns (funnelhouse/demo/generator.py CAMPAIGNS): source, medium, name.
const DEMO_CAMPAIGNS = [
  ['google', 'cpc', 'spring_sale'], ['naver', 'cpc', 'brand_keywords'], ['facebook', 'paid_social', 'retarget_cart'],
  ['newsletter', 'email', 'weekly_digest'], ['instagram', 'social', 'influencer_mina'], ['kakao', 'push', 'app_push_promo'],
];

/** A visitor from each demo campaign landing now. The demo sends nothing after its start, so
 * just after midnight (UTC, the reporting time zone) today would have no events yet; the views'
 * "today is in progress" answers need some. Returns how many events were accepted. */
async function visitorsNow(fh) {
  let sent = 0;
  for (const [source, medium, name] of DEMO_CAMPAIGNS) {
    const path = '/products/live';
    const answer = await fh.track({
      type: 'page', event: 'page_view', anonymousId: `live-${source}-${Date.now()}`,
      properties: { path, url: `https://shop.example${path}`, title: 'Live' },
      context: { campaign: { source, medium, name }, page: { path, url: `https://shop.example${path}?utm_source=${source}` } },
    });
    if (answer.status !== 200) throw new Error(`a live visitor was refused: ${JSON.stringify(answer.body)}`);
    sent++;
  }
  return sent;
}

// ---- the browser ------------------------------------------------------------------------

export async function startBrowser() {
  mkdirSync(SCREENSHOTS, { recursive: true });
  return chromium.launch({
    executablePath: chromiumPath('CHROMIUM'),
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
}

/**
 * A fresh page at laptop size that records every console error and uncaught page error;
 * `errors` is what the tests assert is empty.
 */
export async function newPage(browser, { acceptDownloads = false } = {}) {
  const context = await browser.newContext({ viewport: VIEWPORT, acceptDownloads, locale: 'en-US', timezoneId: 'UTC' });
  const page = await context.newPage();
  const errors = [];
  page.on('console', (msg) => {
    if (msg.type() === 'error') errors.push(`console: ${msg.text()}`);
  });
  page.on('pageerror', (err) => errors.push(`pageerror: ${err.message}`));
  return { page, errors, context };
}

export async function login(page, baseUrl, token = ADMIN_TOKEN) {
  await page.goto(`${baseUrl}/console/`);
  await page.getByLabel('Admin token').fill(token);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('navigation', { name: 'Views' }).waitFor();
}

export async function screenshot(page, name) {
  await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage: false });
}

/** A table's body as arrays of cell texts (header row excluded). */
export async function tableRows(locator) {
  return locator.locator('tbody tr').evaluateAll((trs) => trs.map((tr) => [...tr.querySelectorAll('th, td')].map((c) => c.textContent.trim())));
}

export async function tableHeaders(locator) {
  return locator.locator('thead th').evaluateAll((ths) => ths.map((th) => th.textContent.replace(/[↕▲▼]/g, '').trim()));
}

/**
 * For one test file: a funnelhouse (with the demo loaded unless `demo` is false) and a browser,
 * started before its tests and stopped after them. `onStarted` gets both, so the file keeps its
 * own `fh` and `browser` names.
 */
export function useConsoleServer(onStarted, { demo = true } = {}) {
  let started = {};
  before(async () => {
    const fh = await startFunnelhouse();
    started = { fh };
    if (demo) await loadDemo(fh);
    started.browser = await startBrowser();
    onStarted(started);
  }, { timeout: 600_000 });
  after(async () => {
    await started.browser?.close().catch(() => {});
    await started.fh?.stop().catch(() => {});
  }, { timeout: 60_000 });
}

/** The number a table cell starts with ("1,234 (45.6%)" → 1234; "–" → NaN). */
export const cellNumber = (text) => Number((String(text).replace(/,/g, '').match(/^\s*(-?[\d.]+)/) || [])[1]);
/** The percentage in a cell's brackets ("1,234 (45.6%)" → 45.6). */
export const cellPercent = (text) => Number((String(text).match(/\(([\d.]+)%\)/) || [])[1]);

const AXE = createRequire(import.meta.url).resolve('axe-core/axe.min.js');

/** axe's serious and critical violations on the page as it is, one line each. */
export async function seriousAxeViolations(page) {
  await page.addScriptTag({ path: AXE });
  return page.evaluate(async () => {
    const result = await window.axe.run(document, { resultTypes: ['violations'] });
    return result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical').map((v) => `${v.id} (${v.impact}): ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(' | ')}`);
  });
}

/**
 * A page whose context may run axe (the console's Content-Security-Policy refuses the inline
 * script axe is injected as, as it should; this context alone bypasses it), recording console
 * and page errors.
 */
export async function newAxePage(browser, viewport = VIEWPORT) {
  const context = await browser.newContext({ viewport, bypassCSP: true, locale: 'en-US', timezoneId: 'UTC' });
  const page = await context.newPage();
  const errors = [];
  page.on('console', (msg) => msg.type() === 'error' && errors.push(`console: ${msg.text()}`));
  page.on('pageerror', (err) => errors.push(`pageerror: ${err.message}`));
  return { page, errors, context };
}
