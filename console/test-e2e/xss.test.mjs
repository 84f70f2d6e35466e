// End-to-end: events whose every field is an XSS payload, sent with the public browser key, are drawn in
// every view and every chart tooltip as text; no payload runs, no markup is injected, the CSP is never hit.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { BROWSER_KEY, login, newPage, screenshot, startBrowser, startFunnelhouse, waitFor } from './harness.mjs';

let fh;
let browser;
const TEST = { timeout: 600_000 };

// Each payload calls __xss(tag) if it ever runs (the test exposes that function to the page), in the
// shapes an attacker tries: a handler on an injected tag, breaking out of an attribute, a javascript:
// URL, closing a script element, and quotes that would open an attribute of the surrounding tag.
const VARIANTS = [
  (t) => `<img src=x onerror=__xss('${t}')>`,
  (t) => `"><svg onload=__xss('${t}')>`,
  (t) => `javascript:__xss('${t}')`,
  (t) => `</script><script>__xss('${t}')</script>`,
  (t) => `' onmouseover='__xss("${t}")' x='`,
  (t) => `<a href="javascript:__xss('${t}')" id=x>{b|${t}}</a>`,
];
const PEOPLE = VARIANTS.length;
const pay = (p, field) => VARIANTS[p % VARIANTS.length](`${field}-${p}`);
// The literal text a tooltip must show for the first variant: proof the payload reached it, as text.
const IMG_TEXT = '<img src=x onerror=__xss(';

/** One hostile visitor's events over four days: pages, clicks, products, a purchase, identify, junk. */
function hostileBatch(p) {
  const day = (d, minute) => new Date(Date.now() - d * 86_400_000 - (PEOPLE - p) * 60_000 + minute * 1000).toISOString();
  const anonymousId = `a${p}${pay(p, 'anon')}`;
  const userId = `u${p}${pay(p, 'user')}`;
  const campaign = { source: pay(p, 'utm_source'), medium: pay(p, 'utm_medium'), name: pay(p, 'utm_campaign'), content: pay(p, 'utm_content'), term: pay(p, 'utm_term') };
  const centre = `/centre${pay(0, 'centre')}`;
  const pageProps = (path, tag) => ({
    path,
    title: pay(p, `${tag}-title`),
    url: `https://shop.example${encodeURI(path)}?utm_source=${encodeURIComponent(campaign.source)}&utm_campaign=${encodeURIComponent(campaign.name)}`,
    referrer: pay(p, `${tag}-referrer`),
    search: `?q=${pay(p, `${tag}-search`)}`,
    name: pay(p, `${tag}-name`),
    category: pay(p, `${tag}-category`),
    [pay(p, `${tag}-key`)]: pay(p, `${tag}-value`),
  });
  const context = { campaign, page: { referrer: pay(p, 'ctx-referrer'), title: pay(p, 'ctx-title') }, userAgent: pay(p, 'ua') };
  const batch = [];
  for (const d of [3, 2, 1, 0]) {
    const at = (m) => day(d, m);
    batch.push(
      { type: 'page', anonymousId, name: pay(p, 'page-name'), properties: pageProps(`/from${pay(p, `from${d}`)}`, 'from'), context, timestamp: at(0) },
      { type: 'page', anonymousId, name: pay(p, 'page-name'), properties: pageProps(centre, 'centre'), context, timestamp: at(1) },
      { type: 'page', anonymousId, name: pay(p, 'page-name'), properties: pageProps(`/next${pay(p, `next${d}`)}`, 'next'), context, timestamp: at(2) },
      { type: 'track', anonymousId, event: 'click', properties: { element: pay(p, 'element'), element_text: pay(p, 'element_text'), target_url: pay(p, 'target_url') }, context, timestamp: at(3) },
      { type: 'track', anonymousId, event: 'product_view', properties: { product_id: pay(p, 'product'), name: pay(p, 'product-name'), category: pay(p, 'product-category'), brand: pay(p, 'brand') }, context, timestamp: at(4) },
      { type: 'track', anonymousId, event: 'add_to_cart', properties: { product_id: pay(p, 'product'), name: pay(p, 'product-name') }, context, timestamp: at(5) },
      { type: 'track', anonymousId, event: 'search', properties: { query: pay(p, 'query'), category: pay(p, 'search-category') }, context, timestamp: at(6) },
    );
  }
  batch.push(
    { type: 'identify', anonymousId, userId, traits: { name: pay(p, 'trait-name'), email: pay(p, 'trait-email'), plan: pay(p, 'trait-plan') }, context, timestamp: day(0, 7) },
    { type: 'track', anonymousId, userId, event: 'purchase', properties: { order_id: `o${p}${pay(p, 'order')}`, revenue: 10 + p, currency: 'USD', coupon: pay(p, 'coupon'), items: [{ product_id: pay(p, 'product'), name: pay(p, 'item-name'), price: 10 + p, quantity: 1 }] }, context, timestamp: day(0, 8) },
    // Refused ones, shown in QA and coverage with their errors: an unknown event, a wrong type.
    { type: 'track', anonymousId, event: `evt${pay(p, 'event-name')}`, properties: { [pay(p, 'bad-key')]: pay(p, 'bad-value') }, context, timestamp: day(0, 9) },
    { type: 'track', anonymousId, event: 'purchase', properties: { order_id: { [pay(p, 'nested')]: 1 }, revenue: pay(p, 'revenue'), currency: pay(p, 'currency'), items: pay(p, 'items') }, context, timestamp: day(0, 10) },
  );
  return batch;
}

async function sendWithBrowserKey(batch) {
  const res = await fetch(`${fh.url}/v1/batch`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Basic ${Buffer.from(`${BROWSER_KEY}:`).toString('base64')}` },
    body: JSON.stringify({ batch, sentAt: new Date().toISOString() }),
  });
  const body = await res.json();
  assert.equal(res.status, 200, JSON.stringify(body));
  return body;
}

before(async () => {
  fh = await startFunnelhouse();
  let accepted = 0;
  for (let p = 0; p < PEOPLE; p++) {
    const answer = await sendWithBrowserKey(hostileBatch(p));
    accepted += answer.accepted;
    assert.equal(answer.rejected.length, 2, `only the two junk events are refused: ${JSON.stringify(answer.rejected)}`);
  }
  const loaded = await waitFor(async () => {
    const answer = await fh.api('POST', '/v1/sql', { sql: 'SELECT count() AS n FROM events_raw' });
    return Number(answer.data[0].n) >= accepted;
  }, { timeout: 60_000, interval: 500 });
  assert.ok(loaded, `the loader did not load the ${accepted} hostile events in time`);
  await fh.cli('models', 'run');
  // A saved segment whose name and filter value are payloads too (segment names are drawn in lists and the size chart).
  await fh.api('POST', '/v1/segments', {
    segment_id: 'hostile',
    name: `seg${pay(0, 'segment-name')}`,
    containers: [{ groups: [{ table: 'behavior_events', filters: [{ column: 'page_title', op: 'contains', value: '<' }] }] }],
  });
  browser = await startBrowser();
}, { timeout: 400_000 });

after(async () => {
  await browser?.close().catch(() => {});
  await fh?.stop().catch(() => {});
}, { timeout: 60_000 });

// Runs before any page script, in every document: records payload calls' fallbacks, injected markup
// (handler attributes, javascript: URLs, foreign script/img/iframe elements), CSP violations, and the
// text every chart tooltip showed.
function watchPage() {
  window.__injected = [];
  window.__csp = [];
  window.__tips = [];
  const suspicious = (el) => {
    if (!(el instanceof Element)) return null;
    const tag = el.tagName.toLowerCase();
    if (tag === 'script' && !/\/console\/app\.js$/.test(el.getAttribute('src') || '')) return `script ${el.outerHTML.slice(0, 120)}`;
    if (['iframe', 'object', 'embed', 'base', 'meta', 'style', 'link'].includes(tag) && el.closest('#app')) return `${tag} ${el.outerHTML.slice(0, 120)}`;
    if (tag === 'img' && el.closest('#app, .chart')) return `img ${el.outerHTML.slice(0, 120)}`;
    for (const attr of el.attributes) {
      if (/^on/i.test(attr.name)) return `handler ${attr.name}=${attr.value} on <${tag}>`;
      if (/^\s*javascript:/i.test(attr.value) && /href|src|action|formaction|xlink:href/i.test(attr.name)) return `${attr.name}=${attr.value} on <${tag}>`;
    }
    return null;
  };
  const scan = (node) => {
    if (!(node instanceof Element)) return;
    for (const el of [node, ...node.querySelectorAll('*')]) {
      const found = suspicious(el);
      if (found) window.__injected.push(found);
    }
  };
  const observer = new MutationObserver((mutations) => {
    for (const m of mutations) {
      if (m.type === 'attributes') scan(m.target);
      for (const n of m.addedNodes) scan(n);
      // A chart's tooltip is the HTML (non-SVG) box ECharts keeps inside the chart element.
      const target = m.target instanceof Element ? m.target : m.target.parentElement;
      const tip = target?.closest('.chart > div:not(:first-child), .chart-tip');
      if (tip && window.__tips.length < 5000) window.__tips.push(tip.textContent);
    }
  });
  const start = () => observer.observe(document.documentElement, { subtree: true, childList: true, attributes: true, characterData: true });
  if (document.documentElement) start();
  else document.addEventListener('DOMContentLoaded', start);
  document.addEventListener('securitypolicyviolation', (e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI} ${e.sample}`));
}

/** Moves the mouse over the centre of every drawn shape and label of every chart on the page. */
async function hoverEveryChartElement(page) {
  const charts = page.locator('.chart');
  const count = await charts.count();
  let moves = 0;
  for (let i = 0; i < count; i++) {
    const chart = charts.nth(i);
    await chart.scrollIntoViewIfNeeded();
    const points = await chart.evaluate((el) => {
      const seen = new Set();
      const out = [];
      for (const shape of el.querySelectorAll('svg path, svg rect, svg circle, svg polygon, svg polyline, svg text, svg image')) {
        const r = shape.getBoundingClientRect();
        if (!r.width && !r.height) continue;
        // The centre, and for wide shapes (sankey links, bars) a few points along them too.
        for (const f of r.width > 60 ? [0.15, 0.5, 0.85] : [0.5]) {
          const x = Math.round(r.left + r.width * f);
          const y = Math.round(r.top + r.height / 2);
          const key = `${x},${y}`;
          if (!seen.has(key)) {
            seen.add(key);
            out.push([x, y]);
          }
        }
      }
      return out;
    });
    for (const [x, y] of points) {
      await page.mouse.move(x, y);
      moves++;
    }
    await page.mouse.move(0, 0);
  }
  return moves;
}

async function assertClean(page, state, where) {
  await page.waitForTimeout(100);
  const injected = await page.evaluate(() => window.__injected);
  const csp = await page.evaluate(() => window.__csp);
  assert.deepEqual(state.fired, [], `${where}: payload script ran`);
  assert.deepEqual(state.dialogs, [], `${where}: a dialog opened`);
  assert.deepEqual(injected, [], `${where}: markup from event data was injected into the page`);
  assert.deepEqual(csp, [], `${where}: the Content-Security-Policy was violated`);
  assert.deepEqual(state.errors, [], `${where}: errors in the browser`);
}

/** Opens every closed details row of a table (each opened row adds content, so one at a time). */
async function openAll(page, table) {
  const closed = table.locator('button[aria-expanded="false"]');
  let opened = 0;
  while ((await closed.count()) > 0 && opened < 400) {
    await closed.first().click();
    opened++;
  }
  assert.ok(opened > 0, 'there were rows to open');
  return opened;
}

async function tipTexts(page) {
  return page.evaluate(() => window.__tips);
}

async function breakdownsToTry(page) {
  const options = await page.getByLabel('Breakdown', { exact: true }).locator('option').evaluateAll((os) => os.map((o) => o.value));
  const wanted = options.filter((o) => /^(page_path|page_title|page_referrer|referrer|utm_source|utm_campaign|traffic_source|properties\.(element_text|name|category|query))$/.test(o));
  assert.ok(wanted.length >= 3, `breakdowns with event strings: ${options.join(', ')}`);
  return wanted;
}

describe('the console draws hostile event data as text', () => {
  test('every view, every chart element hovered, every details row opened: no payload runs', TEST, async () => {
    const { page, errors } = await newPage(browser);
    const state = { fired: [], dialogs: [], errors };
    await page.exposeFunction('__xss', (tag) => state.fired.push(String(tag)));
    await page.addInitScript(watchPage);
    page.on('dialog', (d) => {
      state.dialogs.push(d.message());
      d.dismiss().catch(() => {});
    });

    const first = await page.goto(`${fh.url}/console/`);
    assert.match(first.headers()['content-security-policy'] || '', /script-src 'self'(;|$)/);
    await login(page, fh.url);

    // Live QA: every row's details (payload and errors).
    await page.goto(`${fh.url}/console/#/qa`);
    await page.locator('table.qa-table tbody tr[data-message-id]').first().waitFor();
    await openAll(page, page.locator('table.qa-table'));
    assert.ok(await page.locator('pre.payload').count() > 0);
    assert.match(await page.locator('table.qa-table').textContent(), /<img src=x onerror=__xss\(/);
    await assertClean(page, state, 'QA');

    // Plan coverage: unplanned payload event names, failing properties opened.
    await page.goto(`${fh.url}/console/#/coverage`);
    const coverage = page.getByRole('table', { name: 'Plan coverage by event' });
    await coverage.waitFor();
    await openAll(page, coverage);
    assert.match(await coverage.textContent(), /evt<img src=x onerror=__xss\(/);
    await assertClean(page, state, 'coverage');

    // Paths: the centre page is a payload, so are the pages before and after it.
    await page.goto(`${fh.url}/console/#/paths`);
    await page.getByRole('table', { name: /Next steps after/ }).waitFor({ timeout: 60_000 });
    let moves = await hoverEveryChartElement(page);
    assert.ok(moves > 10, `paths: hovered ${moves} points`);
    await assertClean(page, state, 'paths');
    assert.ok((await tipTexts(page)).some((t) => t.includes(IMG_TEXT)), 'a paths tooltip showed the payload as text');
    await screenshot(page, 'xss-paths');

    // Funnels, broken down by fields holding payloads.
    await page.goto(`${fh.url}/console/#/funnels`);
    await page.getByLabel('Step 1 event').locator('option', { hasText: /^page_view$/ }).waitFor({ state: 'attached' });
    await page.getByLabel('Step 2 event').selectOption('product_view');
    await page.getByRole('button', { name: '+ Add step' }).click();
    await page.getByLabel('Step 3 event').selectOption('purchase');
    for (const breakdown of ['', ...(await breakdownsToTry(page))]) {
      await page.getByLabel('Breakdown', { exact: true }).selectOption(breakdown);
      await page.getByRole('button', { name: 'Run funnel' }).click();
      await page.getByRole('table', { name: 'Funnel steps' }).waitFor({ timeout: 60_000 });
      await page.waitForLoadState('networkidle');
      moves = await hoverEveryChartElement(page);
      assert.ok(moves > 3, `funnel by ${breakdown}: hovered ${moves} points`);
      await assertClean(page, state, `funnel by ${breakdown || 'nothing'}`);
    }

    // Retention, broken down by the same fields (breakdown values are the tooltip's cohort names).
    await page.goto(`${fh.url}/console/#/retention`);
    await page.getByRole('table', { name: /Retention by cohort/ }).waitFor({ timeout: 60_000 });
    await page.evaluate(() => (window.__tips = []));
    for (const breakdown of await breakdownsToTry(page)) {
      await page.getByLabel('Breakdown', { exact: true }).selectOption(breakdown);
      await page.getByRole('button', { name: 'Show retention' }).click();
      await waitFor(async () => (await page.getByRole('table', { name: /Retention by cohort/ }).locator('th', { hasText: 'Breakdown' }).count()) === 1, { timeout: 60_000 });
      await page.waitForLoadState('networkidle');
      moves = await hoverEveryChartElement(page);
      assert.ok(moves > 5, `retention by ${breakdown}: hovered ${moves} points`);
      await assertClean(page, state, `retention by ${breakdown}`);
    }
    assert.ok((await tipTexts(page)).some((t) => t.includes(IMG_TEXT)), 'a retention tooltip showed a payload breakdown value as text');
    await screenshot(page, 'xss-retention');

    // Campaigns: payload source / medium / campaign names, both attributions, the trend hovered.
    for (const touch of ['Last touch', 'First touch']) {
      await page.goto(`${fh.url}/console/#/campaigns`);
      await page.getByLabel(touch).check();
      const table = page.getByRole('table', { name: /Campaigns, (first|last)-touch attribution/ });
      await table.waitFor({ timeout: 60_000 });
      await page.waitForLoadState('networkidle');
      assert.match(await table.textContent(), /<img src=x onerror=__xss\(/);
      moves = await hoverEveryChartElement(page);
      assert.ok(moves > 5, `campaigns: hovered ${moves} points`);
      await assertClean(page, state, `campaigns ${touch}`);
    }

    // Segments: the payload-named segment in the list, its size-over-time chart hovered.
    await page.goto(`${fh.url}/console/#/segments`);
    const list = page.getByRole('table', { name: 'Saved segments' });
    await list.waitFor();
    await list.getByRole('button', { name: /Size over time/ }).first().click();
    await page.getByRole('table', { name: /^Refreshes of / }).waitFor();
    moves = await hoverEveryChartElement(page);
    assert.ok(moves > 1, `segments: hovered ${moves} points`);
    assert.match(await list.textContent(), /seg<img src=x onerror=__xss\(/);
    await assertClean(page, state, 'segments');

    // People: every hostile person found and their timeline opened.
    for (let p = 0; p < PEOPLE; p++) {
      await page.goto(`${fh.url}/console/#/people`);
      await page.getByLabel(/Any id/).fill(`u${p}`);
      await page.getByRole('button', { name: 'Search' }).click();
      await page.getByRole('table', { name: /People found|Timeline|Events/ }).first().waitFor({ timeout: 30_000 });
      const person = page.getByRole('table', { name: 'People found' }).getByRole('link').first();
      if (await person.count()) await person.click();
      await page.waitForLoadState('networkidle');
      await page.locator('table').last().waitFor();
      await assertClean(page, state, `people ${p}`);
    }

    // SQL: the raw rows of every hostile event as a result table.
    await page.goto(`${fh.url}/console/#/sql`);
    await page.getByRole('textbox', { name: 'SQL', exact: true }).fill('SELECT * FROM behavior_events ORDER BY event_at LIMIT 500');
    await page.getByRole('button', { name: /Run/ }).click();
    const result = page.getByRole('table', { name: 'Query result' });
    await result.waitFor({ timeout: 60_000 });
    assert.match(await result.textContent(), /<svg onload=__xss\(/);
    await assertClean(page, state, 'SQL');
  });

  test('home, trends, flows, page report, correlation and the people behind a figure draw payloads as text', TEST, async () => {
    const { page, errors, context } = await newPage(browser);
    const state = { fired: [], dialogs: [], errors };
    await page.exposeFunction('__xss', (tag) => state.fired.push(String(tag)));
    await page.addInitScript(watchPage);
    page.on('dialog', (d) => {
      state.dialogs.push(d.message());
      d.dismiss().catch(() => {});
    });
    await login(page, fh.url);

    // Home: payload pages and campaigns in the top lists; the trend hovered.
    await page.goto(`${fh.url}/console/#/home`);
    await page.getByRole('table', { name: 'Top campaigns' }).waitFor({ timeout: 60_000 });
    await page.getByRole('table', { name: 'Per day' }).waitFor({ timeout: 60_000 });
    assert.match(await page.getByRole('table', { name: 'Top pages' }).textContent(), /<img src=x onerror=__xss\(|<svg onload=__xss\(/);
    assert.match(await page.getByRole('table', { name: 'Top campaigns' }).textContent(), /__xss\(/);
    assert.ok((await hoverEveryChartElement(page)) > 3);
    await assertClean(page, state, 'home');

    // Trends broken down by a payload field: legend, table headers, tooltips; a point's people.
    await page.goto(`${fh.url}/console/#/trends`);
    await page.getByRole('table', { name: 'Trend by period' }).waitFor({ timeout: 60_000 });
    await page.getByLabel('Breakdown', { exact: true }).selectOption('page_title');
    await page.getByRole('button', { name: 'Show trend' }).click();
    await page.waitForFunction(() => [...document.querySelectorAll('th')].some((th) => th.textContent.includes('__xss(')), null, { timeout: 60_000 });
    assert.ok((await hoverEveryChartElement(page)) > 3);
    await page.getByRole('table', { name: 'Trend by period' }).getByRole('button', { name: /People behind .*__xss\(/ }).first().click();
    const panel = page.getByRole('region', { name: /^People:/ });
    await panel.getByRole('table').waitFor({ timeout: 60_000 });
    assert.match(await panel.textContent(), /__xss\(/);
    await assertClean(page, state, 'trends and their people');

    // User flows from the payload centre page; the page report; correlation by payload properties.
    await page.goto(`${fh.url}/console/#/flows`);
    await page.getByLabel('Page, screen or event').fill(`/centre${pay(0, 'centre')}`);
    await page.getByRole('button', { name: 'Show flows' }).click();
    await page.getByRole('table', { name: 'Flow nodes by step' }).waitFor({ timeout: 60_000 });
    assert.match(await page.getByRole('table', { name: 'Flow nodes by step' }).textContent(), /__xss\(/);
    assert.ok((await hoverEveryChartElement(page)) > 3);
    await assertClean(page, state, 'flows');
    await page.goto(`${fh.url}/console/#/pages`);
    await page.getByRole('table', { name: 'Pages and screens' }).waitFor({ timeout: 60_000 });
    assert.ok((await hoverEveryChartElement(page)) > 3);
    await assertClean(page, state, 'page report');
    // The properties to compare come from a picker; the address names them (as a shared link would).
    await page.goto(`${fh.url}/console/#/correlation?properties=${encodeURIComponent(JSON.stringify(['page_title', 'utm_campaign']))}`);
    await page.getByLabel('Step 1', { exact: true }).selectOption('product_view');
    await page.getByLabel('Step 2', { exact: true }).selectOption('add_to_cart');
    await page.getByLabel('Step 3', { exact: true }).selectOption('purchase');
    await page.getByRole('button', { name: 'Find correlations' }).click();
    await page.getByRole('table', { name: /Correlated events/ }).waitFor({ timeout: 60_000 });
    await page.waitForFunction(() => !document.querySelector('.loading'));
    await assertClean(page, state, 'correlation');
    await context.close();
  });
});
