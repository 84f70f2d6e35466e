// End-to-end: user flows and correlation keep their form in the address, in headless Chromium
// against a real `funnelhouse up` with demo data. A flow set by hand (start, steps, kind of nodes,
// repeats not collapsed) survives a reload with the same form and the figures the flows API gives
// for that spec; saved as an insight and put on a dashboard, its card shows the same figures.
// Correlation: a property picked with the property picker is compared (the table is the
// correlation API's answer for the spec), and a reload keeps it. axe: no serious or critical
// violation on either view.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { cellNumber, login, newAxePage, screenshot, seriousAxeViolations, tableRows, useConsoleServer, waitFor } from './harness.mjs';


let fh;
let browser;
const TEST = { timeout: 300_000 };
const number = cellNumber;

useConsoleServer((started) => ({ fh, browser } = started));

const addressQuery = async (page) => new URLSearchParams(await page.evaluate(() => location.hash.split('?')[1] || ''));

/** The flows API's spec for a flows query of the address, read from its own parameters. */
function flowSpec(query) {
  const q = new URLSearchParams(query);
  const anchor = q.get('end') ? 'end' : 'start';
  return { [anchor]: q.get(anchor), steps: Number(q.get('steps')), nodes: q.get('nodes'), collapse: q.get('collapse') !== '0', conversion: q.get('conversion'), top: 8, date_from: q.get('from'), date_to: q.get('to') };
}

/** A flows table's rows as [step, node, sessions, exits, converted]; the API's nodes likewise. */
const shownNodes = async (table) => (await tableRows(table)).map((r) => [number(r[0]), r[1], number(r[2]), number(r[3]), number(r[5])]);
const answerNodes = (answer) => answer.data.nodes.map((n) => [n.step, n.node, n.sessions, n.exits, n.converted]);

/** A correlation table's rows as [candidate, successes/failures with/without]; the API's likewise. */
const shownCandidates = async (table) => (await tableRows(table)).map((r) => [r[0], ...r.slice(5, 9).map(number)]);
function answerCandidates(answer) {
  const at = (name) => answer.columns.indexOf(name);
  return answer.rows.map((r) => {
    const label = r[at('kind')] === 'property' ? `${r[at('property')]} = ${String(r[at('name')] ?? '') || '(none)'}` : `did ${r[at('name')]}`;
    return [label, ...['success_with', 'failure_with', 'success_without', 'failure_without'].map((c) => Number(r[at(c)]))];
  });
}

describe('user flows and correlation in the address', () => {
  test('a flow set by hand survives a reload with the API figures, is saved, and a dashboard card shows them; axe clean', TEST, async (t) => {
    const { page, errors, context } = await newAxePage(browser);
    await login(page, fh.url);
    await page.goto(`${fh.url}/console/#/flows`);
    const table = page.getByRole('table', { name: 'Flow nodes by step' });
    await table.waitFor({ timeout: 90_000 });
    // The view offers Save insight now that its state is in the address.
    await page.getByRole('button', { name: 'Save insight' }).waitFor();

    // -- set the flow: from page_view, events as nodes, 3 steps, repeats kept -----------------------
    await page.getByRole('radio', { name: 'from', exact: true }).check();
    await page.getByLabel('Page, screen or event', { exact: true }).fill('page_view');
    await page.getByLabel('Nodes are', { exact: true }).selectOption('events');
    await page.getByLabel('Steps', { exact: true }).fill('3');
    await page.getByLabel('Count back-to-back repeats once').uncheck();
    await page.getByRole('button', { name: 'Show flows' }).click();
    await page.waitForFunction(() => ['start=page_view', 'nodes=events', 'steps=3', 'collapse=0'].every((p) => location.hash.includes(p)), null, { timeout: 30_000 });
    const query = await addressQuery(page);
    assert.match(query.get('from'), /^\d{4}-\d{2}-\d{2}$/);
    assert.equal(query.get('end'), null);
    const spec = flowSpec(query.toString());
    const answer = await fh.api('POST', '/v1/analyses/flows', spec);
    assert.ok(answer.summary.sessions > 0, 'sessions start at page_view');
    // The setting the test turned off matters for these data: the figures tell the two apart.
    const collapsed = await fh.api('POST', '/v1/analyses/flows', { ...spec, collapse: true });
    assert.notDeepEqual(answerNodes(collapsed), answerNodes(answer), 'collapsing repeats changes this flow');
    assert.ok(await waitFor(async () => JSON.stringify(await shownNodes(table)) === JSON.stringify(answerNodes(answer)), { timeout: 60_000 }), 'the table is the API answer');

    // -- reload: same form, same figures ------------------------------------------------------------
    await page.reload();
    await table.waitFor({ timeout: 90_000 });
    assert.equal(await page.getByRole('radio', { name: 'from', exact: true }).isChecked(), true);
    assert.equal(await page.getByLabel('Page, screen or event', { exact: true }).inputValue(), 'page_view');
    assert.equal(await page.getByLabel('Nodes are', { exact: true }).inputValue(), 'events');
    assert.equal(await page.getByLabel('Steps', { exact: true }).inputValue(), '3');
    assert.equal(await page.getByLabel('Count back-to-back repeats once').isChecked(), false);
    assert.equal(await page.getByLabel('From', { exact: true }).inputValue(), query.get('from'));
    assert.equal((await addressQuery(page)).toString(), query.toString());
    assert.deepEqual(await shownNodes(table), answerNodes(answer));
    const cards = Object.fromEntries(await page.getByRole('list', { name: 'Flows summary' }).locator('li').evaluateAll((lis) => lis.map((li) => [li.querySelector('.card-label').textContent.trim(), li.querySelector('.card-value').textContent.trim()])));
    assert.equal(number(cards.sessions), answer.summary.sessions);
    assert.equal(number(cards.steps), 3);

    const violations = await seriousAxeViolations(page);
    assert.deepEqual(violations, []);
    t.diagnostic('axe scanned user flows');

    // -- save it, put it on a dashboard -------------------------------------------------------------
    const name = 'Three events from a page view';
    await page.getByRole('button', { name: 'Save insight' }).click();
    await page.getByLabel('Insight name').fill(name);
    await page.getByRole('form', { name: 'Save insight' }).getByRole('button', { name: 'Save', exact: true }).click();
    await page.getByRole('status').filter({ hasText: `Saved as “${name}”` }).waitFor();
    const insight = (await fh.api('GET', '/v1/insights')).insights.find((i) => i.name === name);
    assert.equal(insight.path, '/flows');
    assert.equal(new URLSearchParams(insight.query).toString(), query.toString());

    await page.getByRole('navigation', { name: 'Views' }).getByRole('link', { name: 'Dashboards' }).click();
    await page.getByLabel('Dashboard name').fill('Flows board');
    await page.getByRole('button', { name: 'Create dashboard' }).click();
    await page.waitForFunction(() => /^#\/dashboards\?id=\d+$/.test(location.hash));
    const address = await page.evaluate(() => location.hash);
    await page.getByLabel('Insight to add').selectOption(String(insight.id));
    await page.getByRole('button', { name: 'Add to dashboard' }).click();
    const card = page.getByRole('article', { name });
    const cardTable = card.getByRole('table', { name: 'Flow nodes by step' });
    await cardTable.waitFor({ timeout: 90_000 });
    assert.equal(await card.locator('form').isVisible(), false, 'the card hides the form');
    assert.deepEqual(await shownNodes(cardTable), answerNodes(answer));
    assert.equal(await page.evaluate(() => location.hash), address, 'the card leaves the address alone');
    // Opened again by its address, the card runs the saved flow again.
    await page.reload();
    await cardTable.waitFor({ timeout: 90_000 });
    assert.deepEqual(await shownNodes(cardTable), answerNodes(answer));
    await screenshot(page, 'flows-dashboard');
    assert.deepEqual(errors, []);
    await context.close();
  });

  test('correlation compares a property picked with the picker; the table is the API answer; a reload keeps it; axe clean', TEST, async (t) => {
    const { page, errors, context } = await newAxePage(browser);
    await login(page, fh.url);
    await page.goto(`${fh.url}/console/#/correlation`);
    const table = page.getByRole('table', { name: /Correlated events/ });
    await table.waitFor({ timeout: 90_000 });
    const chosen = page.getByRole('list', { name: 'Properties compared' }).locator('li');
    assert.deepEqual(await chosen.allTextContents().then((l) => l.map((x) => x.replace(/×.*$/, '').trim())), ['device_type', 'utm_source']);

    // The picker lists what the first step's event carries (as /v1/meta/properties says).
    const firstStep = await page.getByLabel('Step 1', { exact: true }).inputValue();
    const offered = (await fh.api('GET', `/v1/meta/properties?event=${encodeURIComponent(firstStep)}`)).properties.map((p) => p.name);
    assert.ok(offered.includes('product_category'), `${firstStep} carries product_category: ${offered}`);
    const picker = page.getByLabel('Compare a property', { exact: true });
    await picker.locator('option[value="product_category"]').waitFor({ state: 'attached', timeout: 30_000 });
    const options = await picker.locator('option').evaluateAll((os) => os.map((o) => o.value).filter(Boolean));
    assert.deepEqual(options.sort(), offered.filter((n) => !['device_type', 'utm_source'].includes(n)).sort());

    await page.getByRole('button', { name: 'Stop comparing utm_source' }).click();
    await picker.selectOption('product_category');
    assert.deepEqual(await chosen.allTextContents().then((l) => l.map((x) => x.replace(/×.*$/, '').trim())), ['device_type', 'product_category']);
    await page.getByRole('button', { name: 'Find correlations' }).click();
    await page.waitForFunction(() => decodeURIComponent(location.hash).includes('properties=["device_type","product_category"]'), null, { timeout: 30_000 });
    const q = await addressQuery(page);
    const spec = { funnel: { steps: JSON.parse(q.get('steps')).filter(Boolean), window: q.get('window'), date_from: q.get('from'), date_to: q.get('to') }, properties: JSON.parse(q.get('properties')) };
    const answer = await fh.api('POST', '/v1/analyses/correlation', spec);
    const expected = answerCandidates(answer);
    assert.ok(expected.some(([label]) => label.startsWith('product_category = ')), 'the picked property is compared');
    assert.ok(!expected.some(([label]) => label.startsWith('utm_source = ')), 'the dropped one is not');
    assert.ok(await waitFor(async () => JSON.stringify(await shownCandidates(table)) === JSON.stringify(expected), { timeout: 60_000 }), 'the table is the API answer');

    // -- reload: the same properties, the same table -------------------------------------------------
    await page.reload();
    await table.waitFor({ timeout: 90_000 });
    assert.deepEqual(await chosen.allTextContents().then((l) => l.map((x) => x.replace(/×.*$/, '').trim())), ['device_type', 'product_category']);
    assert.equal((await addressQuery(page)).toString(), q.toString());
    assert.deepEqual(await shownCandidates(table), expected);
    const violations = await seriousAxeViolations(page);
    assert.deepEqual(violations, []);
    t.diagnostic('axe scanned correlation');

    // An older link with the comma-separated list still opens with those properties.
    await page.goto(`${fh.url}/console/#/correlation?properties=${encodeURIComponent('channel, device_type')}`);
    await page.reload();
    await table.waitFor({ timeout: 90_000 });
    assert.deepEqual(await chosen.allTextContents().then((l) => l.map((x) => x.replace(/×.*$/, '').trim())), ['channel', 'device_type']);
    assert.deepEqual(errors, []);
    await context.close();
  });
});
