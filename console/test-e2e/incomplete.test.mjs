// End-to-end (issue 19): periods still in progress at the answer's as_of are drawn as such and left
// out of averages. Demo data's last day is today (reporting time zone UTC), so: the retention
// diagonal (day k of a cohort is today) carries the in-progress marker in the table and the heatmap,
// and the (all cohorts) row equals the average computed here from the API's complete cells only; the
// campaign trend's last day (today) is flagged incomplete and drawn dashed.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { cellNumber, login, newPage, screenshot, tableHeaders, tableRows, useConsoleServer } from './harness.mjs';

const TEST = { timeout: 180_000 };
let fh;
let browser;

useConsoleServer((started) => ({ fh, browser } = started));

const number = cellNumber;
const round2 = (x) => Math.round(x * 100) / 100;
const addDays = (day, k) => new Date(Date.parse(`${day}T00:00:00Z`) + k * 86_400_000).toISOString().slice(0, 10);

describe('incomplete periods', () => {
  test('retention: the diagonal is marked in progress; (all cohorts) averages the complete cells only', TEST, async () => {
    const { page, errors } = await newPage(browser);
    await login(page, fh.url);
    // The answer the view draws (day cohorts, the default), read as it arrives.
    const answered = page.waitForResponse((r) => r.url().endsWith('/v1/analyses/retention') && r.request().method() === 'POST', { timeout: 90_000 });
    await page.goto(`${fh.url}/console/#/retention`);
    const answer = await (await answered).json();
    const table = page.getByRole('table', { name: /Retention by cohort/ });
    await table.waitFor({ timeout: 60_000 });
    assert.equal(answer.spec.period, 'day');

    // The flags: a day cohort's day k is in progress exactly when that day is today (UTC here).
    const today = new Date().toISOString().slice(0, 10);
    assert.equal(answer.spec.date_to, today, "the demo's last day is today");
    const cohorts = answer.data.cohorts;
    let open = 0;
    for (const c of cohorts) {
      c.counts.forEach((count, k) => {
        const inProgress = addDays(c.cohort, k) === today;
        assert.equal(c.incomplete[k], inProgress && count !== null, `${c.cohort} d${k}`);
        if (c.incomplete[k]) open++;
      });
    }
    assert.ok(open >= 5, `the last days' cohorts each have a cell in progress (${open})`);

    // The table: exactly those cells say "(running)" and explain it on hover.
    const headers = await tableHeaders(table);
    const rows = await tableRows(table);
    assert.equal(rows.length, cohorts.length + 1);
    cohorts.forEach((c, i) => {
      c.counts.forEach((_, k) => {
        const text = rows[i][headers.indexOf(`d${k}`)];
        assert.equal(/\(running\)/.test(text), c.incomplete[k], `${c.cohort} d${k}: ${text}`);
      });
    });
    const marked = table.locator('[data-incomplete="true"]');
    assert.equal(await marked.count(), open);
    for (const title of await marked.evaluateAll((els) => els.map((e) => e.getAttribute('title')))) {
      assert.match(title, /in progress at as_of.*not in the \(all cohorts\) average/);
    }
    assert.match(await page.locator('#retention-running-legend').textContent(), /\(running\) = period in progress at as_of.*not in the \(all cohorts\) average/s);

    // The heatmap: in-progress cells' numbers end with "…" (not colour alone).
    const chart = page.getByRole('img', { name: /Retention heatmap/ });
    assert.match(await chart.getAttribute('aria-label'), /ending in … are periods in progress/);
    const ellipsis = await chart.locator('text').evaluateAll((ts) => ts.filter((t) => /^\d+…$/.test(t.textContent.trim())).length);
    assert.equal(ellipsis, open);

    // (all cohorts): each period over the cohorts whose period had ended, from the API's cells.
    const all = rows[rows.length - 1];
    assert.equal(all[0], '(all cohorts)');
    let differs = false;
    for (let k = 0; k <= answer.spec.periods; k++) {
      const done = cohorts.filter((c) => c.counts[k] !== null && !c.incomplete[k]);
      const size = done.reduce((s, c) => s + c.size, 0);
      const expected = size ? round2((100 * done.reduce((s, c) => s + c.counts[k], 0)) / size) : null;
      const shown = all[headers.indexOf(`d${k}`)];
      if (expected === null) assert.equal(shown, '–', `d${k}`);
      else assert.equal(number(shown), expected, `(all cohorts) d${k}: ${shown}`);
      // With today's partial cells the average would read differently.
      const begun = cohorts.filter((c) => c.counts[k] !== null);
      const naive = round2((100 * begun.reduce((s, c) => s + c.counts[k], 0)) / begun.reduce((s, c) => s + c.size, 0));
      if (expected !== null && naive !== expected) differs = true;
    }
    assert.ok(differs, 'leaving the in-progress cells out changes some all-cohorts figure');
    await screenshot(page, 'retention-incomplete');
    assert.deepEqual(errors, []);
  });

  test('campaigns: today, the trend’s last day, is flagged incomplete and drawn dashed', TEST, async () => {
    const { page, errors } = await newPage(browser);
    await login(page, fh.url);
    const asked = [];
    page.on('request', (r) => { if (r.url().includes('/v1/campaigns?') && r.url().includes('trend_campaigns=6')) asked.push(new URL(r.url())); });
    const answered = page.waitForResponse((r) => r.url().includes('/v1/campaigns?') && r.url().includes('trend_campaigns=6'), { timeout: 90_000 });
    await page.goto(`${fh.url}/console/#/campaigns`);
    const answer = await (await answered).json();
    await page.getByRole('table', { name: /Campaigns, last-touch attribution/ }).waitFor({ timeout: 60_000 });
    // One request on opening, already over the catalogue's dates (an empty-dated first request
    // used to be aborted by a second one, and its answer lost).
    assert.equal(asked.length, 1, asked.map(String).join(' '));
    assert.notEqual(asked[0].searchParams.get('date_from'), '');

    const today = new Date().toISOString().slice(0, 10);
    const days = [...new Set(answer.trend.map((r) => r.day))].sort();
    assert.equal(days[days.length - 1], today, 'the trend reaches today');
    assert.deepEqual(answer.incomplete_days, [today]);
    for (const r of answer.trend) assert.equal(r.incomplete, r.day === today, `${r.day} ${r.campaign}`);
    assert.ok(answer.trend.some((r) => r.day === addDays(today, -1) && r.incomplete === false), 'yesterday is complete');

    // The chart says which day is incomplete and draws it dashed; the note beside it names it.
    const chart = page.getByRole('img', { name: /^Daily sessions/ });
    await page.waitForTimeout(300); // the chart draws on the next frame
    assert.match(await chart.getAttribute('aria-label'), new RegExp(`incomplete \\(dashed\\): ${today}\\.`));
    const dashed = await chart.locator('path[stroke-dasharray]').count();
    const lines = Math.min(6, answer.rows.length);
    assert.ok(dashed >= lines, `one dashed stretch per line (${dashed} for ${lines} lines)`);
    assert.match(await page.locator('#campaigns-incomplete').textContent(), new RegExp(`Incomplete: ${today}: the day had not ended`));
    await screenshot(page, 'campaigns-incomplete');
    assert.deepEqual(errors, []);
  });
});
