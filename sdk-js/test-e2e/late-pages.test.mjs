// End-to-end: pages as people see them (single-page apps, results rendered after load, fast scrolls) and
// navigation during a flush, each checked against what the real `funnelhouse up` stored.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { screenshot, startBrowser, startFunnelhouse, startShop, startSlowProxy, waitFor } from './harness.mjs';

let fh;
let shop;
let browser;
const runId = randomUUID().slice(0, 8);
const TEST = { timeout: 120_000 };

before(async () => {
  fh = await startFunnelhouse();
  shop = await startShop(fh.url, runId);
  browser = await startBrowser();
}, { timeout: 150_000 });

after(async () => {
  await browser?.close().catch(() => {});
  await shop?.stop().catch(() => {});
  await fh?.stop().catch(() => {});
}, { timeout: 60_000 });

const q = (s) => `'${String(s).replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;

// In the order the device made them: `timestamp` is corrected per batch for clock skew
// (received_at - sent_at), so two messages of different flushes can cross by a few ms.
async function rows(anonymousId, where = '1') {
  return fh.sql(
    `SELECT message_id, event, page_path, page_title, referrer, properties, context
       FROM events_raw WHERE anonymous_id = ${q(anonymousId)} AND (${where}) ORDER BY original_timestamp`,
  );
}

async function sdkReady(page) {
  await page.waitForFunction(() => window.funnelhouse && window.funnelhouse.loaded === true, null, { timeout: 15_000 });
  return page.evaluate(() => window.funnelhouse.getAnonymousId());
}

/** Waits until the SDK has queued `n` messages of this type (page, track …) on this page. */
async function queued(page, type, n) {
  await page.waitForFunction(
    ([type, n]) => (window.__fhQueued || []).filter((m) => m.type === type).length >= n,
    [type, n],
    { timeout: 10_000 },
  );
}

/** Every row once `done(rows)` holds, after a moment more for late copies (duplicates) to show. */
async function stored(anonymousId, done) {
  const got = await waitFor(async () => {
    const r = await rows(anonymousId);
    return done(r) ? r : null;
  });
  assert.ok(got, `not everything arrived: ${JSON.stringify((await rows(anonymousId)).map((x) => [x.event, x.page_path]))}`);
  await new Promise((r) => setTimeout(r, 1500));
  return rows(anonymousId);
}

function assertEachOnce(r) {
  const ids = r.map((x) => x.message_id);
  assert.equal(new Set(ids).size, ids.length, 'a message was stored twice');
}

describe('pages as people see them', () => {
  for (const load of ['early', 'late']) {
    test(`single-page app with the SDK loaded ${load}: each page view carries the title and URL of the page shown, Back and Forward too`, TEST, async () => {
      const base = load === 'early' ? '/spa' : '/spa-late';
      const context = await browser.newContext();
      const page = await context.newPage();
      const pageErrors = [];
      page.on('pageerror', (e) => pageErrors.push(String(e)));
      await page.goto(`${shop.url}${base}/`);
      const anon = await sdkReady(page);
      await queued(page, 'page', 1);

      // Each click: pushState, then the app sets the title (as routers do).
      let views = 1;
      for (const link of ['#to-x', '#to-payment', '#to-thanks']) {
        await page.click(link);
        await queued(page, 'page', ++views);
      }
      // Back and Forward: popstate; whose listener runs first depends on when the SDK loaded.
      await page.goBack();
      await queued(page, 'page', ++views);
      await page.goForward();
      await queued(page, 'page', ++views);
      // A page whose title comes with its data, 150 ms after the navigation.
      await page.click('#to-product');
      await queued(page, 'page', ++views);
      await screenshot(page, `spa-${load}`);
      await page.evaluate(() => window.funnelhouse.flush());

      const r = await stored(anon, (r) => r.filter((x) => x.event === 'page_view').length >= views);
      assertEachOnce(r);
      const seen = r.filter((x) => x.event === 'page_view').map((x) => [x.page_path, x.page_title]);
      assert.deepEqual(seen, [
        [`${base}/`, 'SPA Home'],
        [`${base}/x`, 'X'],
        [`${base}/checkout/payment`, 'Payment'],
        [`${base}/thanks`, 'Thank you for your order'],
        [`${base}/checkout/payment`, 'Payment'],
        [`${base}/thanks`, 'Thank you for your order'],
        [`${base}/product/sku-42`, 'Road Runner'],
      ]);
      const referrers = r.filter((x) => x.event === 'page_view').slice(1).map((x) => new URL(x.referrer).pathname);
      assert.deepEqual(referrers, [`${base}/`, `${base}/x`, `${base}/checkout/payment`, `${base}/thanks`, `${base}/checkout/payment`, `${base}/thanks`]);
      assert.deepEqual(pageErrors, []);
      await context.close();
    });
  }

  for (const mode of ['attribute', 'api', 'api-now']) {
    test(`a results page that shows its count after load (${mode}): the search carries the count, a second search its own`, TEST, async () => {
      const context = await browser.newContext();
      const page = await context.newPage();
      await page.goto(`${shop.url}/shop/results.html?mode=${mode}&q=jacket`);
      const anon = await sdkReady(page);
      await page.waitForSelector('#results:has-text("7 results")');
      // A second search in the page: the first count is still on screen until the new results come.
      await page.fill('#search-input', 'boots');
      await page.press('#search-input', 'Enter');
      await page.waitForSelector('#results:has-text("2 results")');
      await queued(page, 'track', 2);
      await page.evaluate(() => window.funnelhouse.flush());

      const r = await stored(anon, (r) => r.filter((x) => x.event === 'search').length >= 2);
      assertEachOnce(r);
      const searches = r.filter((x) => x.event === 'search');
      assert.deepEqual(searches.map((x) => JSON.parse(x.properties)), [
        { query: 'jacket', result_count: 7 },
        { query: 'boots', result_count: 2 },
      ]);
      for (const x of searches) assert.equal(JSON.parse(x.context).missing, undefined, x.context);
      await context.close();
    });
  }

  test('a results page that never says how many: the search is sent after the wait, marked as missing its count', TEST, async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${shop.url}/shop/results.html?mode=never&waitForResults=300&q=jacket`);
    const anon = await sdkReady(page);
    await queued(page, 'track', 1);
    await page.evaluate(() => window.funnelhouse.flush());
    const r = await stored(anon, (r) => r.some((x) => x.event === 'search'));
    const searches = r.filter((x) => x.event === 'search');
    assert.deepEqual(searches.map((x) => JSON.parse(x.properties)), [{ query: 'jacket' }]);
    assert.deepEqual(JSON.parse(searches[0].context).missing, ['result_count']);
    await context.close();
  });

  test('a fast scroll to the end and straight back to the top: the 100% milestone is stored', TEST, async () => {
    const context = await browser.newContext({ viewport: { width: 1000, height: 700 } });
    const page = await context.newPage();
    await page.goto(`${shop.url}/`);
    const anon = await sdkReady(page);
    await page.mouse.move(300, 300);
    await page.mouse.wheel(0, 50_000);
    await page.waitForFunction(() => Math.ceil(scrollY + innerHeight) >= document.documentElement.scrollHeight, null, { polling: 'raf', timeout: 10_000 });
    await page.keyboard.press('Home');
    await page.waitForFunction(() => scrollY === 0, null, { polling: 'raf', timeout: 10_000 });
    await page.evaluate(() => window.funnelhouse.flush());

    const r = await stored(anon, (r) => r.some((x) => x.event === 'page_view'));
    assertEachOnce(r);
    const depths = r.filter((x) => x.event === 'scroll').map((x) => JSON.parse(x.properties).depth_percent);
    assert.deepEqual(depths.sort((a, b) => a - b), [25, 50, 75, 90, 100]);
    await context.close();
  });

  for (const hold of ['answer', 'request']) {
    test(`a navigation while a flush waits for its ${hold}: each message sent once, stored once, no duplicates at the collector`, TEST, async () => {
      const proxy = await startSlowProxy(fh.url, hold === 'answer' ? { holdAnswerMs: 2000 } : { holdRequestMs: 1500 });
      const context = await browser.newContext();
      const page = await context.newPage();
      // Nothing goes out by itself: only the flush below, and beacons when a page is left.
      const url = `${shop.url}/shop/plain.html?endpoint=${encodeURIComponent(proxy.url)}&flushInterval=600000&flushAt=1000`;
      await page.goto(url);
      const anon = await sdkReady(page);
      await queued(page, 'page', 1);
      await page.evaluate(() => {
        for (let i = 0; i < 5; i++) window.funnelhouse.track('inflight_tap', { seq: i });
        window.funnelhouse.flush();
      });
      assert.ok(await waitFor(() => proxy.requests.length >= 1), 'the flush reached the proxy');
      // Navigate while that request waits: the next page of the site starts with what the last one left.
      await page.goto(url);
      await sdkReady(page);
      await queued(page, 'page', 1);
      await page.evaluate(() => window.funnelhouse.track('next_page_tap'));
      await page.close({ runBeforeUnload: true });

      const r = await stored(anon, (r) => r.filter((x) => x.event === 'inflight_tap').length >= 5 && r.some((x) => x.event === 'next_page_tap'));
      assertEachOnce(r);
      assert.deepEqual(r.filter((x) => x.event === 'inflight_tap').map((x) => JSON.parse(x.properties).seq).sort(), [0, 1, 2, 3, 4]);
      assert.equal(r.filter((x) => x.event === 'page_view').length, 2);
      const sent = proxy.requests.flatMap((x) => x.ids);
      assert.equal(new Set(sent).size, sent.length, `the SDK sent a message twice (${proxy.requests.length} requests)`);
      const answers = await Promise.all(proxy.requests.map((x) => x.answered));
      assert.deepEqual(answers.map((a) => [a.status, a.duplicates]), answers.map(() => [200, 0]));
      await context.close();
      await proxy.stop();
    });
  }
});
