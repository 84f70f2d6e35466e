// End-to-end: the console in headless Chromium against a real `funnelhouse up` with demo data.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ADMIN_TOKEN, cellNumber, login, newPage, screenshot, SCREENSHOTS, tableHeaders, tableRows, useConsoleServer, waitFor } from './harness.mjs';

let fh;
let browser;

// Everything must finish; a hung browser or server fails the run instead of blocking it.
const TEST = { timeout: 180_000 };

useConsoleServer((started) => ({ fh, browser } = started));

const number = cellNumber;

// A wrong token makes the browser itself log the refused request; nothing else may be logged.
const REFUSED_401 = /Failed to load resource: the server responded with a status of 401/;
const unexpected = (errors) => errors.filter((e) => !REFUSED_401.test(e));

/** The sidebar: views link to each other too (home's "Campaigns"), so navigation clicks stay in it. */
const views = (page) => page.getByRole('navigation', { name: 'Views' });

/** Presses Tab until the focused element matches, like a keyboard user looking for a control. */
async function tabTo(page, matches, max = 60) {
  for (let i = 0; i < max; i++) {
    await page.keyboard.press('Tab');
    const hit = await page.evaluate(matches);
    if (hit) return;
  }
  throw new Error(`no focusable element matched after ${max} tabs: ${matches}`);
}

describe('funnelhouse console', () => {
  test('login and a view work from the keyboard alone; a refused token brings the login back', TEST, async () => {
    const { page, errors, context } = await newPage(browser);
    await page.goto(`${fh.url}/console/`);
    await screenshot(page, 'login');

    // The token field has focus on arrival; a wrong token is refused with the server's reason.
    assert.equal(await page.evaluate(() => document.activeElement?.getAttribute('name')), 'token');
    await page.keyboard.type('not-the-token');
    await page.keyboard.press('Enter');
    const alert = page.getByRole('alert');
    await alert.waitFor();
    assert.match(await alert.textContent(), /admin token required.*unauthorized/s);

    await page.keyboard.press('Control+A');
    await page.keyboard.type(ADMIN_TOKEN);
    await page.keyboard.press('Enter');
    await page.getByRole('navigation', { name: 'Views' }).waitFor();

    // To the Funnels view by Tab + Enter; the focused link shows a visible focus ring.
    await tabTo(page, () => document.activeElement?.textContent === 'Funnels');
    const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
    assert.notEqual(outline, 'none', 'focus must be visible');
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => location.hash === '#/funnels');

    // Step 1 defaults to page_view; choose step 2 by typing into the focused select, run with Enter.
    await page.getByLabel('Step 1 event').locator('option', { hasText: /^page_view$/ }).waitFor({ state: 'attached' });
    await tabTo(page, () => document.activeElement?.labels?.[0]?.textContent === 'Step 2 event');
    await page.keyboard.type('product_view');
    assert.equal(await page.getByLabel('Step 2 event').inputValue(), 'product_view');
    await tabTo(page, () => document.activeElement?.textContent === 'Run funnel');
    await page.keyboard.press('Enter');
    const table = page.getByRole('table', { name: 'Funnel steps' });
    await table.waitFor({ timeout: 60_000 });
    const rows = await tableRows(table);
    assert.deepEqual(rows.map((r) => r[1]), ['page_view', 'product_view']);

    // "View SQL" opens from the keyboard too.
    await tabTo(page, () => document.activeElement?.tagName === 'SUMMARY');
    await page.keyboard.press('Enter');
    await page.locator('pre.sql').first().waitFor();
    assert.match(await page.locator('pre.sql').first().textContent(), /FROM behavior_events/);

    // A token the server stops accepting sends the user back to the login, with a reason.
    await page.evaluate(() => sessionStorage.setItem('funnelhouse.console.token', 'revoked'));
    await views(page).getByRole('link', { name: 'Plan coverage', exact: true }).click();
    await page.getByLabel('Admin token').waitFor();
    assert.match(await page.locator('.login').textContent(), /refused the admin token/);

    assert.deepEqual(unexpected(errors), []);
    await context.close();
  });

  test('every view loads with demo data and logs no error', TEST, async () => {
    const { page, errors, context } = await newPage(browser);
    await login(page, fh.url);
    const ready = {
      qa: () => page.locator('table.qa-table tbody tr[data-message-id]').first().waitFor(),
      coverage: () => page.getByRole('table', { name: 'Plan coverage by event' }).waitFor(),
      funnels: () => page.getByLabel('Step 1 event').locator('option', { hasText: /^page_view$/ }).waitFor({ state: 'attached' }),
      retention: () => page.getByRole('table', { name: /Retention by cohort/ }).waitFor({ timeout: 60_000 }),
      paths: () => page.getByRole('table', { name: /Next steps after/ }).waitFor({ timeout: 60_000 }),
      campaigns: () => page.getByRole('table', { name: /Campaigns, last-touch attribution/ }).waitFor(),
      segments: () => page.getByRole('heading', { name: 'Saved segments' }).waitFor(),
      people: () => page.getByLabel(/Any id/).waitFor(),
      sql: () => page.getByRole('textbox', { name: 'SQL', exact: true }).waitFor(),
    };
    for (const [view, isReady] of Object.entries(ready)) {
      await page.goto(`${fh.url}/console/#/${view}`);
      await isReady();
      await page.waitForTimeout(300); // let charts finish drawing
      assert.equal(await page.locator('[role=alert]').count(), 0, `${view} shows an error: ${await page.locator('[role=alert]').allTextContents()}`);
      await screenshot(page, view);
      assert.deepEqual(errors, [], `${view} logged errors`);
    }

    // Every chart is labelled for assistive technology, and has a table beside it.
    await page.goto(`${fh.url}/console/#/retention`);
    await page.getByRole('table', { name: /Retention by cohort/ }).waitFor({ timeout: 60_000 });
    const chart = page.getByRole('img', { name: /Retention heatmap/ });
    await chart.waitFor();
    assert.ok((await chart.locator('svg').count()) === 1, 'the heatmap is drawn');

    // Retention: unbounded counts people who came back then or later, so no cell is below N-day's.
    const table = page.getByRole('table', { name: /Retention by cohort/ });
    const onRows = await tableRows(table);
    await page.getByLabel('Unbounded: then or later').check();
    await page.getByRole('button', { name: 'Show retention' }).click();
    await waitFor(async () => (await page.locator('.card-value', { hasText: 'unbounded' }).count()) === 1);
    const laterRows = await tableRows(table);
    assert.equal(laterRows.length, onRows.length);
    let larger = 0;
    onRows.forEach((row, i) =>
      row.slice(2).forEach((cell, j) => {
        if (cell === '–') return;
        assert.ok(number(laterRows[i][j + 2]) >= number(cell), `unbounded ${laterRows[i][j + 2]} < N-day ${cell}`);
        if (number(laterRows[i][j + 2]) > number(cell)) larger++;
      }),
    );
    assert.ok(larger > 0, 'unbounded retention changes some cells');
    await screenshot(page, 'retention');
    assert.deepEqual(errors, []);
    await context.close();
  });

  test('a funnel built by clicking matches the CLI, with and without a breakdown; its SQL opens in the SQL view', TEST, async () => {
    const { page, errors, context } = await newPage(browser);
    await login(page, fh.url);
    await views(page).getByRole('link', { name: 'Funnels', exact: true }).click();
    const steps = ['page_view', 'product_view', 'add_to_cart', 'purchase'];
    await page.getByLabel('Step 1 event').locator('option', { hasText: /^page_view$/ }).waitFor({ state: 'attached' });
    for (let i = 0; i < steps.length; i++) {
      if (i >= 2) await page.getByRole('button', { name: '+ Add step' }).click();
      await page.getByLabel(`Step ${i + 1} event`).selectOption(steps[i]);
    }
    const from = await page.getByLabel('From', { exact: true }).inputValue();
    const to = await page.getByLabel('To', { exact: true }).inputValue();
    assert.match(from, /^\d{4}-\d{2}-\d{2}$/);

    // Each answer has its own as-of time: a new one means the table shows the new answer.
    let lastAsOf = null;
    async function runAndRead() {
      await page.getByRole('button', { name: 'Run funnel' }).click();
      await page.waitForFunction((prev) => {
        const t = document.querySelector('time.as-of');
        return t && t.textContent !== prev && !document.querySelector('.loading');
      }, lastAsOf, { timeout: 60_000 });
      lastAsOf = await page.locator('time.as-of').textContent();
      const table = page.getByRole('table', { name: 'Funnel steps' });
      return { headers: await tableHeaders(table), rows: await tableRows(table), asOf: lastAsOf };
    }

    async function cliFunnel(asOf, extra = []) {
      const out = await fh.cli('funnel', ...steps.flatMap((s) => ['--step', s]), '--window', '7d', '--from', from, '--to', to, '--as-of', asOf, '--format', 'json', ...extra);
      return JSON.parse(out);
    }

    // Plain funnel.
    const plain = await runAndRead();
    assert.deepEqual(plain.headers.slice(0, 4), ['Step', 'Event', 'People', '% of step 1']);
    const cli = await cliFunnel(plain.asOf);
    const cliSteps = cli.data.groups[0].steps;
    assert.equal(plain.rows.length, steps.length);
    plain.rows.forEach((row, i) => {
      assert.equal(row[1], cliSteps[i].name);
      assert.equal(number(row[2]), cliSteps[i].people, `step ${i + 1} people: UI ${row[2]}, CLI ${cliSteps[i].people}`);
      assert.equal(number(row[5]), cliSteps[i].dropped, `step ${i + 1} dropped`);
      assert.equal(number(row[6]), cliSteps[i].in_window, `step ${i + 1} still in window`);
    });
    assert.ok(cliSteps[0].people > 0 && cliSteps[3].people > 0, 'the demo data converts');
    const summaryText = await page.getByRole('list', { name: 'Funnel summary' }).textContent();
    assert.ok(summaryText.includes(`${cli.summary.conversion_pct}%`), `summary shows the CLI's conversion ${cli.summary.conversion_pct}%: ${summaryText}`);
    await screenshot(page, 'funnels');

    // Broken down by device type: every group's steps match.
    await page.getByLabel('Breakdown', { exact: true }).selectOption('device_type');
    const split = await runAndRead();
    assert.equal(split.headers[0], 'Breakdown');
    const cliSplit = await cliFunnel(split.asOf, ['--breakdown', 'device_type']);
    const expected = cliSplit.data.groups.flatMap((g) => g.steps.map((s) => [g.breakdown === null ? '(all)' : g.breakdown || '(none)', s.step, s.people]));
    assert.ok(cliSplit.data.groups.length > 2, 'several device types');
    assert.deepEqual(split.rows.map((r) => [r[0], number(r[1]), number(r[3])]), expected);

    // View SQL → the SQL view runs the same query with the same parameters.
    await page.getByText('View SQL').click();
    const sqlText = await page.locator('pre.sql').first().textContent();
    assert.match(sqlText, /FROM behavior_events/);
    await page.getByRole('link', { name: /Open the funnel in the SQL view/ }).click();
    await page.waitForFunction(() => location.hash.startsWith('#/sql'));
    assert.equal((await page.getByRole('textbox', { name: 'SQL', exact: true }).inputValue()).trim(), sqlText.trim());
    const result = page.getByRole('table', { name: 'Query result' });
    await result.waitFor({ timeout: 60_000 });
    const resultHeaders = await tableHeaders(result);
    const resultRows = await tableRows(result);
    const col = (name) => resultHeaders.indexOf(name);
    const raw = resultRows.filter((r) => r[col('is_total')] === '1').sort((a, b) => number(a[col('step')]) - number(b[col('step')]));
    assert.deepEqual(raw.map((r) => number(r[col('people')])), cliSplit.data.groups[0].steps.map((s) => s.people), 'the SQL view reproduces the funnel');
    await screenshot(page, 'sql');
    assert.deepEqual(errors, []);
    await context.close();
  });

  test('a segment built in the UI shows the live member count the API gives it after saving', TEST, async () => {
    const { page, errors, context } = await newPage(browser, { acceptDownloads: true });
    await login(page, fh.url);
    await views(page).getByRole('link', { name: 'Segments', exact: true }).click();
    const name = `Carted, never ordered ${randomUUID().slice(0, 6)}`;
    await page.getByLabel('Segment name').fill(name);

    const first = page.getByRole('group', { name: /^Container 1, group 1/ });
    await first.getByLabel('Within the last (days)').fill('30');
    await first.getByLabel('Filter 1 value').fill('add_to_cart');
    await page.getByRole('button', { name: '+ Add group (and)' }).click();
    const second = page.getByRole('group', { name: /^Container 1, group 2/ });
    await second.getByLabel('Table').selectOption('orders');
    await second.getByRole('button', { name: /Remove filter 1/ }).click();
    await second.getByLabel('Exclude these people').check();

    // The live count settles (no request in flight, no error) on a number.
    const count = page.getByLabel('Live member count');
    await waitFor(async () => (await count.getAttribute('aria-busy')) === 'false' && /^[\d,]+$/.test((await count.textContent()).trim()), { timeout: 30_000 });
    assert.equal(await page.locator('.preview-error').count(), 0);
    const live = number(await count.textContent());
    assert.ok(live > 0, 'the demo has cart abandoners');
    await screenshot(page, 'segments-builder');

    await page.getByRole('button', { name: 'Save segment' }).click();
    const saved = page.getByText(/^Saved as /);
    await saved.waitFor({ timeout: 60_000 });

    // What the API says about the saved segment: its size, and the member export.
    const { segments } = await fh.api('GET', '/v1/segments');
    const mine = segments.find((s) => s.name === name);
    assert.ok(mine, 'the segment is saved');
    assert.equal(mine.members, live, `API members ${mine.members} vs live count ${live}`);
    const csv = await fh.api('GET', `/v1/segments/${mine.segment_id}/members?format=csv`);
    assert.equal(csv.trim().split('\n').length - 1, live);
    assert.match(await saved.textContent(), new RegExp(`with ${live.toLocaleString('en-US')} members`));

    // The list shows it with its size; size over time draws the snapshot; the CSV downloads.
    const list = page.getByRole('table', { name: 'Saved segments' });
    const row = list.locator('tr', { hasText: name });
    await row.waitFor();
    assert.ok((await row.textContent()).includes(live.toLocaleString('en-US')));
    await page.getByRole('table', { name: `Refreshes of ${name}` }).waitFor();
    assert.equal(await page.getByRole('img', { name: new RegExp(`Members of ${name}`) }).count(), 1);
    const [download] = await Promise.all([page.waitForEvent('download'), row.getByRole('button', { name: /Download CSV/ }).click()]);
    const file = join(SCREENSHOTS, '..', `segment-${mine.segment_id}.csv`);
    await download.saveAs(file);
    assert.equal(readFileSync(file, 'utf8').trim().split('\n').length - 1, live);
    await page.evaluate(() => window.scrollTo(0, 0));
    await screenshot(page, 'segments');
    assert.deepEqual(errors, []);
    await context.close();
  });

  test('a bad event sent to the collector shows up in the QA view with its error within seconds', TEST, async (t) => {
    const { page, errors, context } = await newPage(browser);
    await login(page, fh.url);
    await views(page).getByRole('link', { name: 'Live QA', exact: true }).click();
    await page.locator('table.qa-table tbody tr[data-message-id]').first().waitFor();

    const bad = `qa-bad-${randomUUID().slice(0, 8)}`;
    const good = `qa-good-${randomUUID().slice(0, 8)}`;
    const sent = Date.now();
    const answer = await fh.track({ event: 'purchase', anonymousId: bad, properties: { revenue: 12000, currency: 'KRW', items: [{ product_id: 'p1', price: 12000, quantity: 1 }] } });
    assert.equal(answer.status, 400);
    assert.ok(answer.body.rejected[0].errors.some((e) => e.path === '$.properties.order_id'), JSON.stringify(answer.body));
    const row = page.locator('tr[data-message-id]', { hasText: bad });
    await row.waitFor({ timeout: 5_000 });
    const seconds = (Date.now() - sent) / 1000;
    const text = await row.textContent();
    assert.match(text, /✗ invalid/);
    assert.match(text, /\$\.properties\.order_id/);
    assert.match(text, /'order_id' is a required property/);
    assert.ok(seconds < 5, `shown after ${seconds}s`);
    t.diagnostic(`the refused event was on screen ${seconds.toFixed(2)} s after it was sent`);

    await fh.track({ event: 'click', anonymousId: good, properties: { element: '#buy', element_text: 'Buy' } });
    const goodRow = page.locator('tr[data-message-id]', { hasText: good });
    await goodRow.waitFor({ timeout: 5_000 });
    assert.match(await goodRow.textContent(), /✓ valid/);

    // Details show every error and the payload as it was sent.
    await row.getByRole('button', { name: /Details/ }).click();
    const details = page.locator('tr.details-row');
    assert.match(await details.textContent(), new RegExp(bad));
    assert.match(await details.textContent(), /schema_violation/);
    await screenshot(page, 'qa');

    // Filters: invalid only hides the valid event; a person filter keeps only theirs.
    await page.getByLabel('Invalid only').check();
    await waitFor(async () => (await goodRow.count()) === 0 && (await row.count()) === 1, { timeout: 5_000 });
    assert.equal(await goodRow.count(), 0);
    await page.getByLabel('Invalid only').uncheck();
    await page.getByLabel(/^Person/).fill(good);
    await waitFor(async () => (await page.locator('tr[data-message-id]').count()) === 1, { timeout: 5_000 });
    assert.equal(await page.locator('tr[data-message-id]', { hasText: good }).count(), 1);

    // Coverage counts the refused purchase as failing, with its error path.
    await views(page).getByRole('link', { name: 'Plan coverage', exact: true }).click();
    const coverage = page.getByRole('table', { name: 'Plan coverage by event' });
    await coverage.waitFor();
    const purchase = coverage.locator('tr', { has: page.locator('th', { hasText: /^purchase$/ }) });
    assert.match(await purchase.textContent(), /✗ failing/);
    await page.getByLabel('Status').selectOption('failing');
    assert.ok((await tableRows(coverage)).every((r) => r[1].includes('failing')));
    await purchase.getByRole('button', { name: /Properties/ }).click();
    assert.match(await page.getByRole('table', { name: 'Properties of purchase' }).textContent(), /order_id/);
    await screenshot(page, 'coverage');
    assert.deepEqual(errors, []);
    await context.close();
  });

  test('campaigns sort by a clicked header and switch attribution; people search opens a cross-device timeline', TEST, async () => {
    const { page, errors, context } = await newPage(browser);
    await login(page, fh.url);
    await views(page).getByRole('link', { name: 'Campaigns', exact: true }).click();
    let table = page.getByRole('table', { name: /Campaigns, last-touch attribution/ });
    await table.waitFor();
    const header = table.locator('th', { hasText: /^Orders/ });
    const ordersAt = (await tableHeaders(table)).indexOf('Orders');
    let orders;
    // The server sorts: wait for the answer, not just for the header's state.
    const sortedBy = (desc) => waitFor(async () => {
      orders = (await tableRows(table)).map((r) => number(r[ordersAt]));
      const sorted = [...orders].sort((a, b) => (desc ? b - a : a - b));
      return orders.join() === sorted.join() && !(await page.locator('.loading').count());
    });
    await header.getByRole('button').click();
    await waitFor(async () => (await header.getAttribute('aria-sort')) === 'descending');
    await sortedBy(true);
    assert.deepEqual(orders, [...orders].sort((a, b) => b - a));
    assert.notEqual(orders[0], orders[orders.length - 1], 'campaigns differ in orders');
    await header.getByRole('button').click();
    await waitFor(async () => (await header.getAttribute('aria-sort')) === 'ascending');
    await sortedBy(false);
    assert.deepEqual(orders, [...orders].sort((a, b) => a - b));
    const api = await fh.api('GET', '/v1/campaigns?touch=first&sort=sessions&desc=true');
    await page.getByLabel('First touch').check();
    table = page.getByRole('table', { name: /Campaigns, first-touch attribution/ });
    await table.waitFor();
    const sessionsAt = (await tableHeaders(table)).indexOf('Sessions');
    const total = (await tableRows(table)).reduce((sum, r) => sum + number(r[sessionsAt]), 0);
    assert.equal(total, api.rows.reduce((sum, r) => sum + r.sessions, 0));
    await page.getByRole('radio', { name: 'Last touch' }).check();
    table = page.getByRole('table', { name: /last-touch/ });
    await table.waitFor();
    await header.getByRole('button').click();
    await waitFor(async () => (await header.getAttribute('aria-sort')) === 'descending');
    await sortedBy(true);
    await screenshot(page, 'campaigns');

    // A person with a user id and several devices: search by the user id, open the timeline.
    const people = await fh.api('POST', '/v1/sql', {
      sql: 'SELECT person_id, user_ids[1] AS user_id, length(anonymous_ids) AS devices FROM users WHERE length(user_ids) > 0 AND length(anonymous_ids) > 1 ORDER BY devices DESC, person_id LIMIT 1',
    });
    const person = people.data[0];
    assert.ok(person, 'the demo has a person with several devices');
    await views(page).getByRole('link', { name: 'People', exact: true }).click();
    await page.getByLabel(/Any id/).fill(person.user_id);
    await page.getByRole('button', { name: 'Search' }).click();
    const found = page.getByRole('table', { name: 'People found' });
    await found.waitFor();
    await found.getByRole('link', { name: person.person_id }).click();
    const timeline = page.getByRole('table', { name: /in order$/ });
    await timeline.waitFor({ timeout: 60_000 });
    const expected = await fh.api('GET', `/v1/timeline/${encodeURIComponent(person.person_id)}?limit=1000`);
    const rows = await tableRows(timeline);
    assert.equal(rows.length, expected.rows.length);
    const times = rows.map((r) => r[0]);
    assert.deepEqual(times, [...times].sort(), 'events in time order');
    // Across devices: every id of the person is listed, and events came from more than one.
    assert.ok(expected.data.ids.length > 1);
    assert.deepEqual(await page.locator('code.id-chip').allTextContents(), expected.data.ids);
    assert.ok(new Set(expected.rows.map((r) => r[expected.columns.indexOf('anonymous_id')])).size > 1, 'events from several devices');
    await screenshot(page, 'people');

    // Paths: the flow of the most viewed page; next steps add up with the exits.
    await views(page).getByRole('link', { name: 'Paths', exact: true }).click();
    const next = page.getByRole('table', { name: /Next steps after/ });
    await next.waitFor({ timeout: 60_000 });
    assert.ok((await tableRows(next)).some((r) => r[0] === '(exit)'));
    await page.getByRole('img', { name: /Flow through/ }).waitFor();
    await screenshot(page, 'paths');
    assert.deepEqual(errors, []);
    await context.close();
  });
});
