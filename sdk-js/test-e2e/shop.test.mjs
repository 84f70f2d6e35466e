// End-to-end: the SDK in headless Chromium against the real `funnelhouse up` (collector, queue, loader, chdb).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { screenshot, startBrowser, startFunnelhouse, startShop, waitFor } from './harness.mjs';

let fh;
let shop;
let browser;
const runId = randomUUID().slice(0, 8);

// Everything must finish; a hung browser or server fails the run instead of blocking it.
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
    `SELECT message_id, type, event, anonymous_id, session_id, channel, page_path, referrer, utm_source, utm_medium,
            utm_campaign, library_name, locale, timezone, properties, context, flags
       FROM events_raw WHERE anonymous_id = ${q(anonymousId)} AND (${where}) ORDER BY original_timestamp`,
  );
}

const props = (row) => JSON.parse(row.properties);

async function sdkReady(page) {
  await page.waitForFunction(() => window.funnelhouse && window.funnelhouse.loaded === true, null, { timeout: 15_000 });
  return page.evaluate(() => window.funnelhouse.getAnonymousId());
}

/** A touch swipe across an element, as a finger would do it (touchStart, moves, touchEnd). */
async function swipe(page, cdp, selector, fromFraction, toFraction) {
  const box = await page.locator(selector).boundingBox();
  const y = box.y + box.height / 2;
  const x0 = box.x + box.width * fromFraction;
  const x1 = box.x + box.width * toFraction;
  await cdp.send('Input.dispatchTouchEvent', { type: 'touchStart', touchPoints: [{ x: x0, y }] });
  for (let i = 1; i <= 5; i++) {
    await cdp.send('Input.dispatchTouchEvent', { type: 'touchMove', touchPoints: [{ x: x0 + ((x1 - x0) * i) / 5, y }] });
  }
  await cdp.send('Input.dispatchTouchEvent', { type: 'touchEnd', touchPoints: [] });
}

describe('funnelhouse-js in a real browser', () => {
  test('a shopper from a campaign link: every step lands in events_raw with one anonymous id and the campaign', TEST, async () => {
    const context = await browser.newContext({ hasTouch: true, isMobile: true, viewport: { width: 400, height: 800 }, locale: 'de-DE', timezoneId: 'Europe/Berlin' });
    const page = await context.newPage();
    const pageErrors = [];
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    const cdp = await context.newCDPSession(page);

    await page.goto(`${shop.url}/?utm_source=newsletter&utm_medium=email&utm_campaign=spring_sale`);
    const anon = await sdkReady(page);
    await screenshot(page, 'journey-1-landing');

    // Scroll the home page to the bottom in steps.
    for (const f of [0.3, 0.55, 0.8, 1]) {
      await page.evaluate((f) => window.scrollTo(0, (document.documentElement.scrollHeight - innerHeight) * f), f);
      await page.waitForTimeout(250);
    }
    await screenshot(page, 'journey-2-scrolled');
    await page.evaluate(() => window.scrollTo(0, 0));

    // Type into a form field, then click around it: the typed value must never be sent.
    await page.fill('#email', 'SECRET-VALUE-123');
    await page.click('#email');
    await page.click('#subscribe');

    // Site search (the app renders results and pushes /search?q=…).
    await page.fill('#search-input', 'running shoes');
    await page.press('#search-input', 'Enter');
    await page.waitForSelector('[data-search-result-count]');
    await screenshot(page, 'journey-3-search');

    // Open a product from the results, swipe its image carousel, add it to the cart.
    await page.click('a[data-product-id="sku-42"]');
    await page.waitForSelector('#gallery');
    await swipe(page, cdp, '#gallery', 0.9, 0.1);
    await page.waitForTimeout(200);
    await screenshot(page, 'journey-4-product-swiped');
    await page.click('#add-to-cart');
    await page.waitForTimeout(600); // the product page stays visible a while (dwell time)

    // Checkout is a separate page (full navigation, ES module build).
    await page.click('#to-checkout');
    await page.waitForURL('**/shop/checkout.html');
    await page.waitForSelector('#place-order:not([disabled])');
    await page.click('#place-order');
    await page.waitForSelector('#thanks:has-text("Thank you")');
    await screenshot(page, 'journey-5-thanks');
    await page.close();

    const orderId = `order-${runId}`;
    const all = await waitFor(async () => {
      const r = await rows(anon);
      const events = new Set(r.map((x) => x.event));
      const need = ['page_view', 'scroll', 'click', 'search', 'product_view', 'swipe', 'add_to_cart', 'product_dwell', 'begin_checkout', 'purchase'];
      return need.every((e) => events.has(e)) && r.filter((x) => x.event === 'page_view').length >= 4 ? r : null;
    });
    assert.ok(all, `not every event arrived; got ${JSON.stringify((await rows(anon)).map((r) => r.event))}\n${fh.log().slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 1500)); // anything late (duplicates) would show now
    const r = await rows(anon);
    const by = (e) => r.filter((x) => x.event === e);

    // One visitor, one session, the campaign on every event.
    const campaignIds = await fh.sql(`SELECT DISTINCT anonymous_id FROM events_raw WHERE utm_campaign = 'spring_sale'`);
    assert.deepEqual(campaignIds.map((x) => x.anonymous_id), [anon]);
    assert.equal(new Set(r.map((x) => x.session_id)).size, 1, 'one session');
    for (const x of r) {
      assert.equal(x.utm_campaign, 'spring_sale', `${x.event} lacks the campaign`);
      assert.equal(x.utm_source, 'newsletter');
      assert.equal(x.utm_medium, 'email');
      assert.equal(x.channel, 'web');
      assert.equal(x.library_name, 'funnelhouse-js');
      assert.equal(x.locale, "de-DE", `${x.event} ${x.page_path} ${x.context}`);
      assert.equal(x.timezone, 'Europe/Berlin');
    }
    assert.equal(new Set(r.map((x) => x.message_id)).size, r.length, 'no event stored twice');

    // Page views, including single-page-app navigation, with referrers.
    const paths = by('page_view').map((x) => x.page_path);
    assert.deepEqual(paths, ['/', '/search', '/product/sku-42', '/shop/checkout.html']);
    assert.match(by('page_view')[3].referrer, /\/product\/sku-42$/);

    const depths = by('scroll').filter((x) => x.page_path === '/').map((x) => props(x).depth_percent);
    assert.deepEqual(depths.sort((a, b) => a - b), [25, 50, 75, 90, 100]);

    const clicks = by('click').map(props);
    const box = clicks.find((c) => c.element === 'newsletter-box');
    assert.ok(box, `no click on the data-track element: ${JSON.stringify(clicks)}`);
    assert.equal(box.element_text, 'Newsletter: Subscribe');
    const subscribe = clicks.find((c) => c.element === '#subscribe');
    assert.deepEqual([subscribe.element_text, subscribe.element_type], ['Subscribe', 'button']);
    const link = clicks.find((c) => c.element_type === 'link' && c.product_id === 'sku-42');
    assert.ok(link && link.target_url.endsWith('/product/sku-42') && link.element_text === 'Road Runner', JSON.stringify(clicks));
    assert.ok(clicks.find((c) => c.element === '#add-to-cart' && c.product_id === 'sku-42'));
    assert.ok(!JSON.stringify(r).includes('SECRET-VALUE-123'), 'an input value was sent');

    const searches = by('search').map(props);
    assert.deepEqual(searches, [{ query: 'running shoes', result_count: 2 }]);

    const swipes = by('swipe').map(props);
    assert.equal(swipes.length, 1, JSON.stringify(swipes));
    assert.equal(swipes[0].direction, 'left');
    assert.equal(swipes[0].element, 'product-gallery');
    assert.equal(swipes[0].product_id, 'sku-42');
    assert.ok(swipes[0].distance_px > 200, `distance ${swipes[0].distance_px}`);

    assert.deepEqual(by('product_view').map(props), [{ product_id: 'sku-42', name: 'Road Runner', price: 89.9, currency: 'EUR', category: 'Shoes/Running' }]);
    const dwell = by('product_dwell').map(props);
    assert.ok(dwell.length >= 1 && dwell.every((d) => d.product_id === 'sku-42'), JSON.stringify(dwell));
    assert.ok(dwell.reduce((s, d) => s + d.dwell_ms, 0) >= 500, JSON.stringify(dwell));

    assert.deepEqual(by('add_to_cart').map(props), [
      { product_id: 'sku-42', name: 'Road Runner', price: 89.9, currency: 'EUR', category: 'Shoes/Running', quantity: 1, value: 89.9 },
    ]);
    const checkout = props(by('begin_checkout')[0]);
    assert.equal(checkout.value, 89.9);
    assert.equal(checkout.currency, 'EUR');
    assert.deepEqual(checkout.items.map((i) => [i.product_id, i.quantity]), [['sku-42', 1]]);
    const purchases = by('purchase').map(props);
    assert.equal(purchases.length, 1);
    assert.equal(purchases[0].order_id, orderId);
    assert.equal(purchases[0].revenue, 89.9);
    assert.equal(purchases[0].currency, 'EUR');
    assert.equal(purchases[0].coupon, 'SPRING10');
    assert.deepEqual(purchases[0].items, [{ product_id: 'sku-42', name: 'Road Runner', price: 89.9, category: 'Shoes/Running', quantity: 1 }]);

    // Planned events carry only planned properties (product_dwell is not in the plan yet: see README).
    for (const x of r.filter((x) => x.event !== 'product_dwell')) {
      assert.deepEqual(x.flags.filter((f) => f !== 'bot'), [], `${x.event} ${x.properties} flagged`);
    }

    // Nothing the SDK sent was refused by the tracking plan.
    const invalid = await fh.sql(`SELECT event, reason, errors FROM events_invalid WHERE position(payload, ${q(anon)}) > 0`);
    assert.deepEqual(invalid, []);
    assert.deepEqual(pageErrors, []);
    await context.close();
  });

  test('a visitor who goes offline and comes back: every event delivered exactly once', TEST, async () => {
    const context = await browser.newContext({ viewport: { width: 1000, height: 800 } });
    const page = await context.newPage();
    await page.goto(`${shop.url}/`);
    const anon = await sdkReady(page);
    assert.ok(await waitFor(async () => (await rows(anon, "event = 'page_view'")).length === 1), 'landing page view');

    await context.setOffline(true);
    assert.equal(await page.evaluate(() => navigator.onLine), false);
    await page.evaluate(() => {
      for (let i = 0; i < 10; i++) window.funnelhouse.track('offline_tap', { seq: i });
    });
    await page.click('#hero-cta'); // single-page navigation while offline: click, page view, product view
    await page.waitForSelector('#gallery');
    await page.waitForTimeout(1500);
    assert.equal((await rows(anon, "event = 'offline_tap'")).length, 0, 'nothing can arrive while offline');
    await screenshot(page, 'offline-1-queued');
    const stored = await page.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith('fh.q.')).map((k) => JSON.parse(localStorage.getItem(k)).items.length));
    assert.ok(stored.reduce((a, b) => a + b, 0) >= 13, `queue persisted while offline: ${stored}`);

    await context.setOffline(false);
    const arrived = await waitFor(async () => {
      const r = await rows(anon);
      return r.filter((x) => x.event === 'offline_tap').length >= 10 && r.some((x) => x.event === 'product_view') ? r : null;
    });
    assert.ok(arrived, 'events sent when back online');
    await new Promise((r) => setTimeout(r, 2000));
    const r = await rows(anon);
    const seqs = r.filter((x) => x.event === 'offline_tap').map((x) => props(x).seq).sort((a, b) => a - b);
    assert.deepEqual(seqs, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert.equal(r.filter((x) => x.event === 'product_view').length, 1);
    assert.deepEqual(r.filter((x) => x.event === 'page_view').map((x) => x.page_path), ['/', '/product/sku-42']);
    assert.equal(new Set(r.map((x) => x.message_id)).size, r.length, 'no event stored twice');
    await context.close();
  });

  test('collector unreachable, then 503, across a reload: the next page delivers every event exactly once', TEST, async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    let mode = 'abort';
    let aborted = 0;
    let unavailable = 0;
    await context.route(`${fh.url}/v1/**`, async (route) => {
      if (mode === 'abort') {
        aborted++;
        return route.abort('connectionrefused');
      }
      if (mode === '503' && unavailable === 0) {
        unavailable++;
        return route.fulfill({ status: 503, headers: { 'Access-Control-Allow-Origin': '*' }, body: '{"error":"queue_unavailable"}' });
      }
      return route.continue();
    });
    await page.goto(`${shop.url}/shop/plain.html?retryBaseDelay=200&retryMaxDelay=1000`);
    const anon = await sdkReady(page);
    await page.evaluate(() => {
      for (let i = 0; i < 5; i++) window.funnelhouse.track('stuck_tap', { seq: i });
    });
    assert.ok(await waitFor(() => aborted >= 1), 'the SDK tried and failed');
    // …and has taken the failure in (the page's side of an aborted request comes a moment
    // after the route's): until then it does not know the collector is unreachable, and
    // the reload's pagehide would beacon the queue (beacons bypass the route).
    assert.ok(await waitFor(() => page.evaluate(() => (window.__fhErrors || []).some((e) => e.kind === 'retrying'))),
      'the SDK saw its request fail');
    // Reload while the collector is unreachable: no beacon (it would be lost); the queue stays stored.
    await page.reload();
    await sdkReady(page);
    assert.equal(await page.evaluate(() => window.funnelhouse.getAnonymousId()), anon);
    mode = '503';
    const r = await waitFor(async () => {
      const got = await rows(anon, "event = 'stuck_tap'");
      return got.length >= 5 ? got : null;
    });
    assert.ok(r, `stuck events delivered after recovery (aborted ${aborted}, 503s ${unavailable})`);
    assert.equal(unavailable, 1, 'one request was answered 503 and retried');
    await new Promise((res) => setTimeout(res, 2000));
    const all = await rows(anon);
    assert.deepEqual(all.filter((x) => x.event === 'stuck_tap').map((x) => props(x).seq).sort(), [0, 1, 2, 3, 4]);
    assert.equal(all.filter((x) => x.event === 'page_view').length, 2);
    assert.equal(new Set(all.map((x) => x.message_id)).size, all.length, 'no event stored twice');
    await context.close();
  });

  test('events tracked right before the page goes away arrive (sendBeacon), and the page stays back-forward cacheable', TEST, async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    // Long interval, large batches: only the page-leave path can deliver these.
    await page.goto(`${shop.url}/shop/plain.html?flushInterval=600000&flushAt=1000`);
    const anon = await sdkReady(page);
    await page.evaluate(() => {
      for (let i = 0; i < 5; i++) window.funnelhouse.track('leaving_tap', { seq: i });
    });
    await page.click('#next'); // full navigation to a page without the SDK
    await page.waitForURL('**/other.html');
    const left = await waitFor(async () => {
      const got = await rows(anon, "event = 'leaving_tap'");
      return got.length >= 5 ? got : null;
    });
    assert.ok(left, 'events sent on navigation away arrive');
    const counts = await page.evaluate(() => [localStorage.getItem('test.beacons'), localStorage.getItem('test.fetches')]);
    assert.deepEqual(counts, ['1', null], 'sent by one beacon, no fetch');

    // Back: restored from the back-forward cache (no unload listener blocks it).
    await page.goBack({ waitUntil: 'commit' }); // a page restored from the cache fires no load event
    const restored = await page
      .waitForFunction(() => window.__shown && window.__shown.length > 1, null, { timeout: 10_000 })
      .then(() => page.evaluate(() => window.__shown))
      .catch(() => 'page was loaded again, not restored from the back-forward cache');
    assert.deepEqual(restored, [false, true]);
    assert.equal(await page.evaluate(() => window.funnelhouse.getAnonymousId()), anon);

    // Closing the tab.
    await page.evaluate(() => {
      for (let i = 0; i < 5; i++) window.funnelhouse.track('closing_tap', { seq: i });
    });
    await page.close({ runBeforeUnload: true });
    const closed = await waitFor(async () => {
      const got = await rows(anon, "event = 'closing_tap'");
      return got.length >= 5 ? got : null;
    });
    assert.ok(closed, 'events sent at tab close arrive');
    await new Promise((res) => setTimeout(res, 1000));
    const all = await rows(anon);
    assert.deepEqual(all.filter((x) => x.event === 'leaving_tap').map((x) => props(x).seq).sort(), [0, 1, 2, 3, 4]);
    assert.deepEqual(all.filter((x) => x.event === 'closing_tap').map((x) => props(x).seq).sort(), [0, 1, 2, 3, 4]);
    assert.equal(new Set(all.map((x) => x.message_id)).size, all.length, 'no event stored twice');
    await context.close();
  });

  test('with requireConsent nothing is sent or stored until optIn, and nothing after optOut', TEST, async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    const sent = [];
    context.on('request', (req) => {
      if (req.url().startsWith(fh.url)) sent.push(req.url());
    });
    await page.goto(`${shop.url}/shop/plain.html?requireConsent=1`);
    const anon = await sdkReady(page);
    await page.evaluate(() => {
      for (let i = 0; i < 3; i++) window.funnelhouse.track('consent_tap', { seq: i });
    });
    await page.waitForTimeout(1000);
    const snapshot = () =>
      page.evaluate(() => ({
        cookies: document.cookie.split('; ').filter((c) => c.startsWith('fh_')),
        keys: Object.keys(localStorage).filter((k) => k.startsWith('fh.')),
        consent: window.funnelhouse.consent(),
      }));
    assert.deepEqual(await snapshot(), { cookies: [], keys: [], consent: 'pending' });
    assert.deepEqual(sent, []);

    await page.evaluate(() => window.funnelhouse.optIn());
    const r = await waitFor(async () => {
      const got = await rows(anon);
      return got.filter((x) => x.event === 'consent_tap').length >= 3 && got.some((x) => x.event === 'page_view') ? got : null;
    });
    assert.ok(r, 'held events sent after optIn');
    const after = await snapshot();
    assert.ok(after.cookies.some((c) => c === `fh_aid=${anon}`), JSON.stringify(after));

    await page.evaluate(() => window.funnelhouse.optOut());
    const requestsBefore = sent.length;
    await page.evaluate(() => window.funnelhouse.track('after_opt_out'));
    await page.waitForTimeout(1200);
    assert.deepEqual(await snapshot(), { cookies: ['fh_consent=denied'], keys: ['fh.consent'], consent: 'denied' });
    await page.close();
    await new Promise((res) => setTimeout(res, 1000));
    assert.equal(sent.length, requestsBefore, 'nothing sent after optOut, not even at page close');
    assert.equal((await fh.sql(`SELECT count() AS n FROM events_raw WHERE event = 'after_opt_out'`))[0].n, 0);
    await context.close();
  });
});
