// End-to-end: every analysis view keeps its state in the URL; saved insights and dashboards in
// headless Chromium against a real `funnelhouse up` with demo data. A trend's settings survive a
// reload; a trend and a funnel are saved as insights and put on a dashboard; the dashboard opened by
// its address in a fresh page shows, in each card, the figures the analyses API gives for the saved
// spec; a card is removed; axe finds no serious or critical violation on the dashboard.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { cellNumber, login, newPage, screenshot, seriousAxeViolations, tableRows, useConsoleServer, waitFor } from './harness.mjs';


let fh;
let browser;
const TEST = { timeout: 240_000 };
const number = cellNumber;

useConsoleServer((started) => ({ fh, browser } = started));

/** The query of the page's address (#/view?…), as URLSearchParams. */
const addressQuery = async (page) => new URLSearchParams(await page.evaluate(() => location.hash.split('?')[1] || ''));

/** Saves the open analysis view as an insight with the shell's "Save insight". */
async function saveAsInsight(page, name) {
  await page.getByRole('button', { name: 'Save insight' }).click();
  const field = page.getByLabel('Insight name');
  await field.fill(name);
  await page.getByRole('form', { name: 'Save insight' }).getByRole('button', { name: 'Save', exact: true }).click();
  await page.getByRole('status').filter({ hasText: `Saved as “${name}”` }).waitFor();
  const saved = (await fh.api('GET', '/v1/insights')).insights.filter((i) => i.name === name);
  assert.equal(saved.length, 1, `one insight named ${name}`);
  return saved[0];
}

/** The trends API's spec for a saved trends query, read here from the query's own parameters. */
function trendSpec(query) {
  const q = new URLSearchParams(query);
  const series = JSON.parse(q.get('series')).map((s) => {
    const [math, property] = s.math.split(':');
    return { event: s.event, math, property: property || null };
  });
  return { series, interval: q.get('interval'), breakdown: q.get('breakdown') || null, compare: q.get('compare') === '1', date_from: q.get('from'), date_to: q.get('to') };
}

/** The funnel API's spec for a saved funnel query of plain steps (no filters). */
function funnelSpec(query) {
  const q = new URLSearchParams(query);
  const steps = JSON.parse(q.get('steps'));
  for (const s of steps) assert.ok(!(s.filters || []).length && !s.filter, 'this funnel has no step filters');
  return { steps: steps.map((s) => s.event), window: q.get('window'), order: q.get('order'), date_from: q.get('from'), date_to: q.get('to') };
}

describe('saved insights and dashboards', () => {
  test('every analysis view keeps a changed setting in the address and has it again after a reload', TEST, async (t) => {
    const { page, errors, context } = await newPage(browser);
    await login(page, fh.url);
    const field = (label) => page.getByLabel(label, { exact: true });
    // view → [what shows it answered, change one setting, read that setting back, what the address then says]
    const cases = {
      retention: [() => page.getByRole('table', { name: /Retention by cohort/ }), () => field('Period').selectOption('week'), () => field('Period').inputValue(), 'week', 'period=week'],
      stickiness: [() => page.getByRole('table', { name: 'People by active days in each period' }), () => field('Period').selectOption('month'), () => field('Period').inputValue(), 'month', 'period=month'],
      paths: [() => page.getByRole('table', { name: /Next steps after/ }), () => field('Top pages each side').fill('4'), () => field('Top pages each side').inputValue(), '4', 'top=4'],
      pages: [() => page.getByRole('table', { name: 'Pages and screens' }), () => field('Pages shown').fill('7'), () => field('Pages shown').inputValue(), '7', 'top=7'],
      correlation: [() => page.getByRole('table', { name: /Correlated events/ }), () => page.getByRole('radio', { name: 'came back (retention)' }).check(), () => page.getByRole('radio', { name: 'came back (retention)' }).isChecked(), true, 'source=retention'],
      campaigns: [() => page.getByRole('table', { name: /Campaigns, last-touch attribution/ }), () => page.getByRole('radio', { name: 'First touch' }).check(), () => page.getByRole('radio', { name: 'First touch' }).isChecked(), true, 'touch=first'],
      home: [() => page.getByRole('table', { name: 'Per day' }), () => field('Period').selectOption('28'), () => field('Period').inputValue(), '28', 'days=28'],
    };
    for (const [view, [answered, change, read, expected, inAddress]] of Object.entries(cases)) {
      t.diagnostic(view); // a timeout below then names the view it happened in
      await page.goto(`${fh.url}/console/#/${view}`);
      await answered().waitFor({ timeout: 90_000 });
      await change();
      await page.waitForFunction((part) => location.hash.includes(part), inAddress, { timeout: 30_000 });
      const address = await page.evaluate(() => location.hash);
      assert.ok(address.startsWith(`#/${view}?`), `${view}: ${address}`);
      await page.reload();
      await page.getByRole('heading', { level: 1 }).waitFor();
      assert.equal(await read(), expected, `${view} after a reload`);
      assert.equal(await page.evaluate(() => location.hash), address, `${view}: the address is kept`);
    }
    // The campaigns table after the reload is the first-touch one.
    await page.goto(`${fh.url}/console/#/campaigns?touch=first`);
    await page.reload();
    await page.getByRole('table', { name: /Campaigns, first-touch attribution/ }).waitFor({ timeout: 60_000 });
    assert.deepEqual(errors, []);
    await context.close();
  });

  test('a trend keeps its settings over a reload; a trend and a funnel saved; a dashboard opened by its address shows the API figures; a card removed; axe clean', TEST, async (t) => {
    const { page, errors, context } = await newPage(browser);
    await login(page, fh.url);

    // -- trends: change the settings, reload, same settings ------------------------------------
    await page.goto(`${fh.url}/console/#/trends`);
    const trendTable = page.getByRole('table', { name: 'Trend by period' });
    await trendTable.waitFor({ timeout: 60_000 });
    await page.getByLabel('Series A counts', { exact: true }).selectOption('sessions');
    await page.getByLabel('Interval', { exact: true }).selectOption('week');
    await page.getByLabel('Compare with the previous period').uncheck();
    const from = await page.getByLabel('From', { exact: true }).inputValue();
    assert.match(from, /^\d{4}-\d{2}-\d{2}$/);
    await page.waitForFunction(() => location.hash.includes('interval=week') && location.hash.includes('compare=0'));
    const before = await addressQuery(page);
    assert.deepEqual(JSON.parse(before.get('series')), [{ event: '*', math: 'sessions' }]);
    assert.equal(before.get('from'), from);

    await page.reload();
    await trendTable.waitFor({ timeout: 60_000 });
    assert.equal(await page.getByLabel('Series A counts', { exact: true }).inputValue(), 'sessions');
    assert.equal(await page.getByLabel('Interval', { exact: true }).inputValue(), 'week');
    assert.equal(await page.getByLabel('Compare with the previous period').isChecked(), false);
    assert.equal(await page.getByLabel('From', { exact: true }).inputValue(), from);
    assert.equal((await addressQuery(page)).toString(), before.toString());
    // The table after the reload is the weekly one: its periods are 7 days apart.
    const weeks = (await tableRows(trendTable)).map((r) => r[0].slice(0, 10));
    assert.ok(weeks.length >= 2, `weeks: ${weeks}`);
    assert.equal((Date.parse(weeks[1]) - Date.parse(weeks[0])) / 86_400_000, 7);

    const trend = await saveAsInsight(page, 'Sessions per week <b>all</b>');
    assert.equal(trend.path, '/trends');
    assert.equal(new URLSearchParams(trend.query).toString(), before.toString());

    // -- a funnel --------------------------------------------------------------------------------
    await page.goto(`${fh.url}/console/#/funnels`);
    await page.getByLabel('Step 1 event').locator('option', { hasText: /^page_view$/ }).waitFor({ state: 'attached' });
    await page.getByLabel('Step 1 event').selectOption('page_view');
    await page.getByLabel('Step 2 event').selectOption('add_to_cart');
    await page.getByRole('button', { name: 'Run funnel' }).click();
    await page.getByRole('table', { name: 'Funnel steps' }).waitFor({ timeout: 60_000 });
    await page.waitForFunction(() => location.hash.startsWith('#/funnels?'));
    const funnel = await saveAsInsight(page, 'Views to carts');
    assert.equal(funnel.path, '/funnels');
    assert.deepEqual(funnelSpec(funnel.query).steps, ['page_view', 'add_to_cart']);
    // The CLI lists the same insights, through the running instance.
    const listed = JSON.parse(await fh.cli('insights', 'list', '--format', 'json'));
    assert.deepEqual(listed.map(({ link, ...row }) => row), (await fh.api('GET', '/v1/insights')).insights);
    assert.deepEqual(listed.map((row) => row.link), [`#/trends?${trend.query}`, `#/funnels?${funnel.query}`]);

    // -- a dashboard with both -------------------------------------------------------------------
    await page.getByRole('navigation', { name: 'Views' }).getByRole('link', { name: 'Dashboards' }).click();
    await page.getByLabel('Dashboard name').fill('Weekly review');
    await page.getByRole('button', { name: 'Create dashboard' }).click();
    await page.waitForFunction(() => /^#\/dashboards\?id=\d+$/.test(location.hash));
    const id = Number((await addressQuery(page)).get('id'));
    await page.getByRole('heading', { name: 'Weekly review' }).waitFor();
    for (const insight of [trend, funnel]) {
      await page.getByLabel('Insight to add').selectOption(String(insight.id));
      await page.getByRole('button', { name: 'Add to dashboard' }).click();
      await page.getByRole('article', { name: insight.name }).waitFor();
    }
    assert.deepEqual((await fh.api('GET', `/v1/dashboards/${id}`)).dashboard.insight_ids, [trend.id, funnel.id]);
    // Views inside the cards leave the address alone: it is still the dashboard's.
    await page.getByRole('article', { name: funnel.name }).getByRole('table', { name: 'Funnel steps' }).waitFor({ timeout: 60_000 });
    assert.equal(await page.evaluate(() => location.hash), `#/dashboards?id=${id}`);
    assert.deepEqual(errors, []);
    await context.close();

    // -- the dashboard by its address, in a fresh page --------------------------------------------
    const fresh = await browser.newContext({ viewport: { width: 1440, height: 900 }, bypassCSP: true, locale: 'en-US', timezoneId: 'UTC' });
    const other = await fresh.newPage();
    const freshErrors = [];
    other.on('console', (msg) => msg.type() === 'error' && freshErrors.push(`console: ${msg.text()}`));
    other.on('pageerror', (err) => freshErrors.push(`pageerror: ${err.message}`));
    await login(other, fh.url);
    await other.goto(`${fh.url}/console/#/dashboards?id=${id}`);
    await other.reload();
    await other.getByRole('heading', { name: 'Weekly review' }).waitFor();
    const cards = other.getByRole('article');
    assert.ok(await waitFor(async () => (await cards.count()) === 2, { timeout: 30_000 }), 'two cards');
    assert.deepEqual(await other.locator('.insight-card h3').allTextContents(), [trend.name, funnel.name]);
    // A name with markup in it is shown as the text it is, never as markup.
    assert.equal(await other.locator('.insight-card h3 b').count(), 0);

    // The trend card: every period's number is the trends API's for the saved spec.
    const trendCard = other.getByRole('article', { name: trend.name });
    const cardTable = trendCard.getByRole('table', { name: 'Trend by period' });
    await cardTable.waitFor({ timeout: 60_000 });
    assert.equal(await trendCard.locator('form').isVisible(), false, 'the card hides the form');
    const answer = await fh.api('POST', '/v1/analyses/trends', trendSpec(trend.query));
    assert.equal(answer.summary.interval, 'week');
    const shown = await tableRows(cardTable);
    assert.deepEqual(shown.map((r) => r[0].slice(0, 10)), answer.data.buckets.map((b) => String(b).slice(0, 10)));
    assert.deepEqual(shown.map((r) => number(r[1])), answer.data.series[0].values.map(Number));
    assert.ok(answer.data.series[0].values.some((v) => v > 0));
    assert.equal(await trendCard.getByRole('link', { name: /Open full size/ }).getAttribute('href'), `#/trends?${trend.query}`);

    // The funnel card: people at each step, entered and converted, as the funnel API counts them.
    const funnelCard = other.getByRole('article', { name: funnel.name });
    const stepsTable = funnelCard.getByRole('table', { name: 'Funnel steps' });
    await stepsTable.waitFor({ timeout: 60_000 });
    assert.equal(await funnelCard.locator('form').isVisible(), false, 'the card hides the form');
    const funnelAnswer = await fh.api('POST', '/v1/analyses/funnel', funnelSpec(funnel.query));
    const summary = Object.fromEntries(
      await funnelCard.getByRole('list', { name: 'Funnel summary' }).locator('li').evaluateAll((lis) => lis.map((li) => [li.querySelector('.card-label')?.textContent.trim(), li.querySelector('.card-value')?.textContent.trim()])),
    );
    assert.equal(number(summary.entered), funnelAnswer.summary.entered);
    assert.equal(number(summary.converted), funnelAnswer.summary.converted);
    assert.ok(funnelAnswer.summary.entered > funnelAnswer.summary.converted && funnelAnswer.summary.converted > 0);
    const people = funnelAnswer.data.groups[0].steps.map((s) => s.people);
    const rows = await tableRows(stepsTable);
    const peopleColumn = (await stepsTable.locator('thead th').allTextContents()).findIndex((h) => /^People/.test(h.trim()));
    assert.deepEqual(rows.map((r) => number(r[peopleColumn])), people);
    assert.equal(await other.evaluate(() => location.hash), `#/dashboards?id=${id}`);
    await screenshot(other, 'dashboard');

    // axe: no serious or critical violation on the dashboard with its cards.
    const violations = await seriousAxeViolations(other);
    assert.deepEqual(violations, []);
    t.diagnostic('axe scanned the dashboard with 2 cards');
    // On a phone the cards stack and nothing scrolls sideways.
    await other.setViewportSize({ width: 390, height: 844 });
    await other.waitForTimeout(300);
    const [scroll, width] = await other.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
    assert.ok(scroll <= width, `the dashboard scrolls sideways at 390 px: ${scroll} > ${width}`);
    await screenshot(other, 'dashboard-390');
    await other.setViewportSize({ width: 1440, height: 900 });

    // -- remove one card ---------------------------------------------------------------------------
    await trendCard.getByRole('button', { name: `Remove ${trend.name} from the dashboard` }).click();
    assert.ok(await waitFor(async () => (await cards.count()) === 1, { timeout: 10_000 }), 'one card left');
    assert.deepEqual(await other.locator('.insight-card h3').allTextContents(), [funnel.name]);
    assert.deepEqual((await fh.api('GET', `/v1/dashboards/${id}`)).dashboard.insight_ids, [funnel.id]);
    await other.reload();
    await other.getByRole('article', { name: funnel.name }).waitFor();
    assert.equal(await cards.count(), 1);
    // The insight itself is still saved: only the card went.
    assert.ok((await fh.api('GET', '/v1/insights')).insights.some((i) => i.id === trend.id));
    // Home links to the dashboard.
    await other.goto(`${fh.url}/console/#/home`);
    const link = other.locator('.dashboard-links').getByRole('link', { name: 'Weekly review' });
    await link.waitFor();
    assert.equal(await link.getAttribute('href'), `#/dashboards?id=${id}`);
    // Deleting the funnel insight from the list takes it off the dashboard too.
    await other.goto(`${fh.url}/console/#/dashboards`);
    await other.getByRole('button', { name: `Delete insight ${funnel.name}` }).click();
    const boards = other.getByRole('table', { name: 'Dashboards' });
    assert.ok(await waitFor(async () => (await tableRows(boards)).some((r) => r[0] === 'Weekly review' && r[1] === '0'), { timeout: 10_000 }), 'the dashboard shows no insight');
    assert.deepEqual((await fh.api('GET', `/v1/dashboards/${id}`)).dashboard.insight_ids, []);
    assert.ok(!(await fh.api('GET', '/v1/insights')).insights.some((i) => i.id === funnel.id));
    // Renamed on its page: the heading and the API say the new name.
    await boards.getByRole('link', { name: 'Weekly review' }).click();
    await other.getByRole('button', { name: 'Rename the dashboard' }).click();
    await other.getByLabel('New name', { exact: true }).fill('Monday review');
    await other.getByRole('button', { name: 'Save name' }).click();
    await other.getByRole('heading', { name: 'Monday review' }).waitFor();
    assert.equal((await fh.api('GET', `/v1/dashboards/${id}`)).dashboard.name, 'Monday review');
    assert.deepEqual(freshErrors, []);
    await fresh.close();
  });
});
