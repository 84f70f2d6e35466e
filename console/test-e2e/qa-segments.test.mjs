// End-to-end: Live QA's "Invalid only" lists refusals from history (events_invalid), not just the
// collector's recent buffer: a burst of refused events pushed out of the buffer by valid ones is
// still listed, every one with its reason, and the total matches the warehouse. The segment builder
// with its labelled pickers (table label, column picked from the data, value picked from the
// suggestions) counts what POST /v1/segments/preview answers for the same definition. Axe clean.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { BROWSER_KEY, cellNumber, login, newAxePage, screenshot, seriousAxeViolations, useConsoleServer, waitFor } from './harness.mjs';

const TEST = { timeout: 240_000 };
// More valid events than the collector's per-source buffer keeps (200): they push the refusals out
// of it, so only history can list them.
const REFUSED = 37;
const VALID_AFTER = 220;

let fh;
let browser;

useConsoleServer((started) => ({ fh, browser } = started));

async function batch(messages) {
  const res = await fetch(`${fh.url}/v1/batch`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Basic ${Buffer.from(`${BROWSER_KEY}:`).toString('base64')}` },
    body: JSON.stringify({ batch: messages }),
  });
  return { status: res.status, body: await res.json() };
}

const sql = async (text) => (await fh.api('POST', '/v1/sql', { sql: text })).data;

describe('Live QA history and the labelled segment builder', () => {
  test('"Invalid only" lists every refused event from history with its reasons, even after the buffer moved on', TEST, async () => {
    const person = `qa-burst-${randomUUID().slice(0, 8)}`;
    // Clicks without their required `element`: refused by the plan.
    const refused = Array.from({ length: REFUSED }, (_, i) => ({ type: 'track', event: 'click', anonymousId: person, messageId: `${person}-bad-${i}`, properties: { selector: `#x${i}` } }));
    const answer = await batch(refused);
    assert.equal(answer.status, 400, JSON.stringify(answer.body).slice(0, 300));
    const valid = Array.from({ length: VALID_AFTER }, (_, i) => ({ type: 'track', event: 'click', anonymousId: `${person}-ok`, messageId: `${person}-ok-${i}`, properties: { element: '#buy', element_text: 'Buy' } }));
    assert.equal((await batch(valid)).status, 200);
    const stored = await waitFor(async () => {
      const rows = await sql(`SELECT message_id, toString(reason) AS reason, errors FROM events_invalid WHERE message_id LIKE '${person}-bad-%'`);
      return rows.length === REFUSED && rows;
    }, { timeout: 30_000, interval: 300 });
    assert.ok(stored, 'the loader stored every refusal');

    const { page, errors, context } = await newAxePage(browser);
    await login(page, fh.url);
    await page.goto(`${fh.url}/console/#/qa`);
    await page.getByLabel('Invalid only').check();
    await page.getByLabel(/^Person/).fill(person);
    const rows = page.locator('table.qa-table tbody tr[data-message-id]');
    await waitFor(async () => (await rows.count()) === REFUSED, { timeout: 15_000 });
    assert.equal(await rows.count(), REFUSED);
    const total = page.locator('[data-refusals-total]');
    await waitFor(async () => Number(await total.getAttribute('data-refusals-total')) === REFUSED, { timeout: 10_000 });
    assert.match(await total.textContent(), new RegExp(`^${REFUSED} refused events in the last 7 days`));

    // Every row is one of those sent, marked invalid, showing its stored errors; the reason is in its title.
    const shown = await rows.evaluateAll((trs) => trs.map((tr) => ({ id: tr.dataset.messageId, text: tr.textContent, reason: tr.querySelector('.badge.bad')?.title })));
    const byId = new Map(stored.map((r) => [r.message_id, r]));
    assert.deepEqual(shown.map((r) => r.id).sort(), [...byId.keys()].sort());
    for (const row of shown) {
      const want = byId.get(row.id);
      assert.match(row.text, /✗ invalid/);
      assert.equal(row.reason, want.reason);
      // A named tuple comes back as an object, an unnamed one as a list.
      const first = want.errors[0];
      const [path, message] = Array.isArray(first) ? first : [first.path, first.message];
      assert.ok(row.text.includes(path) && row.text.includes(message), `${row.id}: ${row.text}`);
    }

    // Without the person filter: the total is every refusal of the last 7 days in the warehouse.
    await page.getByLabel(/^Person/).fill('');
    const [{ n }] = await sql("SELECT count() AS n FROM events_invalid WHERE received_at >= now64(3) - INTERVAL 7 DAY");
    await waitFor(async () => Number(await total.getAttribute('data-refusals-total')) === Number(n), { timeout: 10_000 });
    assert.equal(await rows.count(), Math.min(Number(n), 200));
    assert.deepEqual(await seriousAxeViolations(page), []);
    await screenshot(page, 'qa-invalid-history');
    assert.deepEqual(errors, []);
    await context.close();
  });

  test('a segment built with the labelled pickers counts what the preview API answers', TEST, async () => {
    const { page, errors, context } = await newAxePage(browser);
    await login(page, fh.url);
    const sent = [];
    page.on('request', (r) => r.url().endsWith('/v1/segments/preview') && sent.push(JSON.parse(r.postData())));
    await page.goto(`${fh.url}/console/#/segments`);
    const group = page.getByRole('group', { name: /^Container 1, group 1/ });
    // Tables are offered by what they hold, not by name.
    const table = group.getByLabel('Table');
    await table.locator('option', { hasText: 'Their profile' }).waitFor({ state: 'attached' });
    const labels = await table.locator('option').evaluateAll((os) => os.map((o) => o.textContent));
    assert.ok(labels.includes('Events they did') && labels.includes('Their orders') && !labels.includes('behavior_events'), labels.join(', '));
    await table.selectOption({ label: 'Events they did' });
    assert.match(await group.textContent(), /Every event a person sent/);

    // Filter 1: the event, picked from the event names offered.
    const eventValue = group.getByLabel('Filter 1 value');
    await page.waitForFunction((input) => input.list && [...input.list.options].some((o) => o.value === 'product_view'), await eventValue.elementHandle());
    await eventValue.fill('product_view');
    // Filter 2: a property of product views, picked by its label; its value from the suggestions.
    await group.getByRole('button', { name: '+ Add filter' }).click();
    // A filter with no column yet is not sent: the count says what is missing.
    await page.locator('.preview-error', { hasText: 'choose a column for filter 2 in group 1 of container 1' }).waitFor();
    const column = group.getByLabel('Filter 2 column');
    await column.locator('option[value="product_category"]').waitFor({ state: 'attached' });
    const seen = await fh.api('GET', '/v1/meta/properties?event=product_view');
    const offered = await column.locator('option').evaluateAll((os) => os.map((o) => o.value).filter((v) => v && !v.startsWith('\u0000')));
    const expected = ['event', ...seen.properties.map((p) => p.name).filter((n) => !['message_id', 'properties', 'traits', 'context', 'session_event_seq'].includes(n))];
    assert.deepEqual(offered.sort(), expected.sort(), 'the column picker offers what product views carry');
    const categoryLabel = await column.locator('option[value="product_category"]').textContent();
    assert.match(categoryLabel, /^Product category \(text\) · [\d,]+ events$/);
    await column.selectOption({ label: categoryLabel });
    const top = await fh.api('GET', '/v1/meta/values?event=product_view&property=product_category');
    const value = group.getByLabel('Filter 2 value');
    await page.waitForFunction((input) => input.list && input.list.options.length > 0, await value.elementHandle());
    const suggested = await value.evaluate((input) => [...input.list.options].map((o) => o.value));
    assert.deepEqual(suggested, top.values.map((v) => v.value));
    const category = suggested[0];
    await value.fill(category);

    // Group 2: their profile, a numeric column picked by its label.
    await page.getByRole('button', { name: '+ Add group (and)' }).click();
    const profile = page.getByRole('group', { name: /^Container 1, group 2/ });
    await profile.getByLabel('Table').selectOption({ label: 'Their profile' });
    await profile.getByLabel('Filter 1 column').selectOption({ label: 'Orders (number)' });
    await profile.getByLabel('Filter 1 operator').selectOption('>=');
    await profile.getByLabel('Filter 1 value').fill('1');

    const count = page.getByLabel('Live member count');
    const definition = {
      containers: [{
        groups: [
          { table: 'behavior_events', filters: [{ column: 'event', op: '=', value: 'product_view' }, { column: 'product_category', op: '=', value: category }] },
          { table: 'users', filters: [{ column: 'orders', op: '>=', value: 1 }] },
        ],
      }],
    };
    const direct = await fh.api('POST', '/v1/segments/preview', definition);
    assert.ok(direct.members > 0, 'buyers who viewed the category exist in the demo');
    await waitFor(async () => (await count.getAttribute('aria-busy')) === 'false' && cellNumber(await count.textContent()) === direct.members, { timeout: 30_000 });
    assert.equal(cellNumber(await count.textContent()), direct.members);
    // The pickers change the words, not the definition: the console sent the raw table and column names.
    assert.deepEqual(sent.at(-1).containers, definition.containers);
    const columns = sent.flatMap((d) => d.containers.flatMap((c) => c.groups.flatMap((g) => g.filters.map((f) => f.column))));
    assert.ok(columns.length && columns.every((c) => c), 'no preview was sent with a filter still missing its column');
    assert.equal(await page.locator('.preview-error').count(), 0);
    assert.deepEqual(await seriousAxeViolations(page), []);
    await screenshot(page, 'segments-labelled-pickers');
    assert.deepEqual(errors, []);
    await context.close();
  });
});
