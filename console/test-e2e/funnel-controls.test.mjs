// End-to-end: the funnel's every option in the console (a step filter picked from the data, an
// optional step, an exclusion, a held property, a breakdown with its attribution compared side by
// side) against POST /v1/analyses/funnel called directly with the same spec; the state survives a
// reload; axe finds no serious or critical violation; and the user-flow Sankey's labels never overlap.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { cellNumber, cellPercent, login, newAxePage, screenshot, seriousAxeViolations, tableRows, useConsoleServer } from './harness.mjs';

const TEST = { timeout: 240_000 };

let fh;
let browser;

useConsoleServer((started) => ({ fh, browser } = started));

const number = cellNumber;
const percent = cellPercent;
const groupLabel = (value) => (value === null ? '(all)' : value || '(none)');

describe('funnel controls', () => {
  test('exclusion, optional step, held property, picked filter value and breakdown side by side show what the API answers, and survive a reload', TEST, async () => {
    const { page, errors, context } = await newAxePage(browser);
    await login(page, fh.url);
    await page.goto(`${fh.url}/console/#/funnels`);
    await page.getByLabel('Step 1 event').locator('option', { hasText: /^product_view$/ }).waitFor({ state: 'attached' });

    const steps = ['product_view', 'add_to_cart', 'begin_checkout', 'purchase'];
    for (let i = 0; i < steps.length; i++) {
      if (i >= 2) await page.getByRole('button', { name: '+ Add step' }).click();
      await page.getByLabel(`Step ${i + 1} event`).selectOption(steps[i]);
    }
    // Only the steps between the first and the last may be optional.
    assert.equal(await page.getByLabel('Step 1 optional').count(), 0);
    assert.equal(await page.getByLabel('Step 4 optional').count(), 0);
    await page.getByLabel('Step 3 optional').check();

    // A step-1 filter: the property list and the value suggestions come from the data.
    await page.getByRole('button', { name: '+ Filter step 1' }).click();
    const property = page.getByLabel('Step 1 filter 1 property');
    await property.locator('option[value="product_category"]').waitFor({ state: 'attached' });
    const seen = await fh.api('GET', '/v1/meta/properties?event=product_view');
    const offered = await property.locator('option').evaluateAll((os) => os.map((o) => o.value).filter(Boolean));
    assert.deepEqual(offered.sort(), seen.properties.map((p) => p.name).sort(), 'the property picker offers what product views carry');
    await property.selectOption('product_category');
    const top = await fh.api('GET', '/v1/meta/values?event=product_view&property=product_category');
    assert.ok(top.values.length >= 2, 'several categories');
    const value = page.getByLabel('Step 1 filter 1 value');
    const suggestions = () => value.evaluate((input) => [...input.list.options].map((o) => o.value));
    await page.waitForFunction((input) => input.list && input.list.options.length > 0, await value.elementHandle());
    assert.deepEqual(await suggestions(), top.values.map((v) => v.value), 'the value picker suggests the most frequent values');
    const category = top.values[0].value;
    await value.fill(category);

    // An exclusion between steps 2 and 4, the product held, a breakdown found by searching.
    await page.getByRole('button', { name: '+ Add exclusion' }).click();
    await page.getByLabel('Exclusion 1 event').selectOption('remove_from_cart');
    await page.getByLabel('Exclusion 1 after').selectOption('2');
    await page.getByLabel('Exclusion 1 before').selectOption('4');
    await page.getByLabel('Hold constant').locator('option[value="product_id"]').waitFor({ state: 'attached' });
    await page.getByLabel('Hold constant').selectOption('product_id');
    const breakdown = page.getByLabel('Breakdown', { exact: true });
    await page.getByLabel('Find: Breakdown').fill('device');
    const narrowed = await breakdown.locator('option').evaluateAll((os) => os.map((o) => o.value));
    assert.ok(narrowed.includes('device_type') && narrowed.every((o) => o === '' || o.includes('device')), `search narrows the breakdowns: ${narrowed}`);
    await breakdown.selectOption('device_type');
    await page.getByLabel('Breakdown attribution').selectOption('last');

    const sent = [];
    page.on('request', (r) => r.url().endsWith('/v1/analyses/funnel') && sent.push(JSON.parse(r.postData())));
    await page.getByRole('button', { name: 'Run funnel' }).click();
    const table = page.getByRole('table', { name: 'Funnel steps' });
    await table.waitFor({ timeout: 60_000 });
    const asOf = await page.locator('time.as-of').textContent();
    const from = await page.getByLabel('From', { exact: true }).inputValue();
    const to = await page.getByLabel('To', { exact: true }).inputValue();

    // The spec, written here from what was clicked, not read from the page.
    const spec = {
      steps: [{ event: 'product_view', filters: [{ prop: 'product_category', op: '=', value: category }] }, 'add_to_cart', 'begin_checkout', 'purchase'],
      window: '7d',
      order: 'loose',
      optional: [3],
      exclude: [{ event: 'remove_from_cart', from_step: 2, to_step: 4 }],
      hold: 'product_id',
      breakdown: 'device_type',
      attribution: 'last',
      date_from: from,
      date_to: to,
    };
    assert.deepEqual(sent.at(-1), spec, 'the console sent the funnel as clicked');
    const answer = await fh.api('POST', '/v1/analyses/funnel', { ...spec, as_of: asOf.replace(' ', 'T') });
    assert.deepEqual(answer.spec.optional, [3]);
    assert.equal(answer.spec.hold, 'product_id');
    const groups = answer.data.groups;
    assert.ok(groups.length > 2, 'several device types');
    assert.ok(groups[0].steps[0].people > 0 && groups[0].steps[1].people > 0, 'the filtered funnel has people');

    // Every figure of the full table is the API's.
    const rows = await tableRows(table);
    const expected = groups.flatMap((g) => g.steps.map((s) => [groupLabel(g.breakdown), s.step, s.name, s.people, s.dropped, s.in_window]));
    assert.deepEqual(rows.map((r) => [r[0], number(r[1]), r[2], number(r[3]), number(r[6]), number(r[7])]), expected);
    const note = await page.locator('p.muted', { hasText: 'excluded' }).textContent();
    assert.match(note, new RegExp(`· ${answer.summary.excluded.toLocaleString('en-US')} excluded`));
    assert.ok((await page.getByRole('list', { name: 'Funnel summary' }).textContent()).includes(`${answer.summary.conversion_pct}%`));

    // Side by side: one column per breakdown group, people and % of step 1 per step.
    const compare = page.getByRole('table', { name: /Breakdown groups side by side/ });
    const headers = await compare.locator('thead th').evaluateAll((ths) => ths.map((th) => th.textContent.replace(/[↕▲▼]/g, '').trim()));
    const split = groups.filter((g) => g.breakdown !== null).slice(0, 8);
    assert.deepEqual(headers, ['Step', 'Event', ...split.map((g) => groupLabel(g.breakdown))]);
    const side = await tableRows(compare);
    assert.equal(side.length, steps.length);
    side.forEach((row, k) => {
      split.forEach((g, j) => {
        assert.equal(number(row[2 + j]), g.steps[k].people, `${groupLabel(g.breakdown)} step ${k + 1} people`);
        assert.equal(percent(row[2 + j]), g.steps[k].pct_of_start, `${groupLabel(g.breakdown)} step ${k + 1} %`);
      });
    });
    await screenshot(page, 'funnel-controls');

    // The people behind a figure are those of this very funnel: filter, exclusion, hold and all.
    const panel = page.getByRole('region', { name: /^People:/ });
    await table.getByRole('button', { name: 'Reached step 2: people' }).click();
    await panel.getByRole('status').filter({ hasText: /people|person/ }).waitFor({ timeout: 60_000 });
    const behind = await fh.api('POST', '/v1/analyses/funnel/people', { spec: { ...spec, as_of: asOf.replace(' ', 'T') }, who: 'reached:2', limit: 1 });
    assert.equal(behind.count, groups[0].steps[1].people);
    assert.equal(number(await panel.locator('.people-count .count').textContent()), behind.count);

    // axe on the controls and the answer: no serious or critical violation.
    assert.deepEqual(await seriousAxeViolations(page), []);

    // Reload: the URL carries every control, and the same funnel runs again.
    const link = page.url();
    assert.match(link, /exclude=/);
    await page.reload();
    await table.waitFor({ timeout: 60_000 });
    await page.waitForFunction(() => !document.querySelector('.loading'));
    assert.equal(await page.getByLabel('Step 4 event').inputValue(), 'purchase');
    assert.equal(await page.getByLabel('Step 3 optional').isChecked(), true);
    assert.equal(await page.getByLabel('Step 2 optional').isChecked(), false);
    assert.equal(await page.getByLabel('Step 1 filter 1 property').inputValue(), 'product_category');
    assert.equal(await page.getByLabel('Step 1 filter 1 value').inputValue(), category);
    assert.equal(await page.getByLabel('Exclusion 1 event').inputValue(), 'remove_from_cart');
    assert.equal(await page.getByLabel('Exclusion 1 after').inputValue(), '2');
    assert.equal(await page.getByLabel('Exclusion 1 before').inputValue(), '4');
    assert.equal(await page.getByLabel('Hold constant').inputValue(), 'product_id');
    assert.equal(await page.getByLabel('Breakdown', { exact: true }).inputValue(), 'device_type');
    assert.equal(await page.getByLabel('Breakdown attribution').inputValue(), 'last');
    const again = await tableRows(table);
    assert.deepEqual(again.map((r) => [r[0], number(r[1]), r[2]]), rows.map((r) => [r[0], number(r[1]), r[2]]));
    assert.deepEqual(sent.at(-1), spec, 'the reloaded funnel is the same spec');

    // On a phone every control and the side-by-side table fit: nothing scrolls sideways.
    await page.setViewportSize({ width: 390, height: 844 });
    await page.waitForTimeout(200);
    const [scroll, width] = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
    assert.ok(scroll <= width, `the funnel controls scroll sideways at 390 px: ${scroll} > ${width}`);
    await screenshot(page, 'funnel-controls-390');

    assert.deepEqual(errors, []);
    await context.close();
  });

  test('the optional step is offered only where the engine allows it', TEST, async () => {
    const { page, errors, context } = await newAxePage(browser);
    await login(page, fh.url);
    await page.goto(`${fh.url}/console/#/funnels`);
    await page.getByLabel('Step 1 event').locator('option', { hasText: /^page_view$/ }).waitFor({ state: 'attached' });
    await page.getByLabel('Step 2 event').selectOption('product_view');
    assert.equal(await page.getByLabel(/Step \d optional/).count(), 0, 'two steps: none may be optional');
    await page.getByRole('button', { name: '+ Add step' }).click();
    await page.getByLabel('Step 3 event').selectOption('purchase');
    assert.equal(await page.getByLabel(/Step \d optional/).count(), 1);
    await page.getByLabel('Order', { exact: true }).selectOption('any');
    assert.equal(await page.getByLabel(/Step \d optional/).count(), 0, 'any order: no optional steps');
    assert.deepEqual(errors, []);
    await context.close();
  });
});

describe('user flows Sankey', () => {
  test('the labels of the nodes never overlap', TEST, async () => {
    const { page, errors, context } = await newAxePage(browser);
    await login(page, fh.url);
    await page.goto(`${fh.url}/console/#/flows`);
    const table = page.getByRole('table', { name: 'Flow nodes by step' });
    await table.waitFor({ timeout: 60_000 });
    await page.waitForTimeout(300); // let the chart draw
    const nodes = await tableRows(table);
    const labels = await page.locator('.chart svg text').evaluateAll((texts) =>
      texts
        .filter((t) => t.textContent.trim() && t.getBoundingClientRect().height > 0)
        .map((t) => {
          const b = t.getBoundingClientRect();
          return { text: t.textContent, left: b.left, right: b.right, top: b.top, bottom: b.bottom };
        }),
    );
    assert.equal(labels.length, nodes.length, `one label per node: ${labels.map((l) => l.text).join(', ')}`);
    const busiest = Math.max(...Object.values(nodes.reduce((n, r) => ({ ...n, [r[0]]: (n[r[0]] || 0) + 1 }), {})));
    assert.ok(busiest >= 5, `a column with several nodes (${busiest})`);
    const clash = [];
    for (let i = 0; i < labels.length; i++) {
      for (let j = i + 1; j < labels.length; j++) {
        const a = labels[i];
        const b = labels[j];
        if (a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom) clash.push(`${a.text} / ${b.text}`);
      }
    }
    assert.deepEqual(clash, [], 'no two labels overlap');
    await screenshot(page, 'flows-sankey');
    assert.deepEqual(await seriousAxeViolations(page), []);
    assert.deepEqual(errors, []);
    await context.close();
  });
});
