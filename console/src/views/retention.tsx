// Retention: cohort × period heatmap and table (POST /v1/analyses/retention), returned in the
// period (N-day) or in it or any later one (unbounded).
import { useEffect, useMemo, useState } from 'preact/hooks';
import { postJson, type AnalysisResult } from '../api';
import { Chart, type ChartOption } from '../components/chart';
import { Choice, DateRange, Form, Select, TextField, type DateWindow } from '../components/fields';
import { Empty, ErrorNotice, Loading } from '../components/notice';
import { PeopleBehind, type PeopleQuery } from '../components/people-behind';
import { PropertySelect } from '../components/property-picker';
import { SqlDetails } from '../components/sql';
import { DataTable, rowsOf, type Column } from '../components/table';
import { useRequest } from '../components/useRequest';
import { num, pct } from '../format';
import { ALL, valueLabel } from '../labels';
import { useCatalogue } from '../meta';
import { useUrlState, type Route } from '../router';

type RetentionResult = AnalysisResult<{
  // incomplete[k]: period k had begun but not ended at as_of (the server's flag, in the reporting time zone).
  cohorts: { cohort: string; breakdown: string | null; size: number; counts: (number | null)[]; pcts: (number | null)[]; incomplete?: boolean[] }[];
  overall_pcts?: (number | null)[];
}>;

const PERIOD_WORD: Record<string, string> = { day: 'day', week: 'week', month: 'month' };

export function RetentionView({ route }: { route: Route }) {
  const { catalogue, error: metaError } = useCatalogue();
  // The URL holds the form (#/retention?cohort=…&period=…): a reload or a shared link shows the same table.
  const q = route.query;
  const [cohort, setCohort] = useState(q.get('cohort') || 'first_seen');
  const [cohortEvent, setCohortEvent] = useState(q.get('cohort_event') || '');
  const [returnEvent, setReturnEvent] = useState(q.get('return') || '');
  const [period, setPeriod] = useState(q.get('period') || 'day');
  const [periods, setPeriods] = useState(q.get('periods') || '7');
  const [mode, setMode] = useState(q.get('mode') || 'on');
  const [breakdown, setBreakdown] = useState(q.get('breakdown') || '');
  const [dates, setDates] = useState<DateWindow>({ date_from: q.get('from') || '', date_to: q.get('to') || '' });
  useUrlState(route, { cohort, cohort_event: cohort === 'event' ? cohortEvent : '', return: returnEvent, period, periods, mode, breakdown, from: dates.date_from, to: dates.date_to });
  const req = useRequest<RetentionResult>();
  const [people, setPeople] = useState<PeopleQuery | null>(null);

  useEffect(() => {
    if (!catalogue) return;
    const range = catalogue.meta.date_range;
    setDates((d) => (d.date_from ? d : { date_from: range.min || '', date_to: range.max || '' }));
    setCohortEvent((e) => e || catalogue.eventNames[0] || '');
  }, [catalogue]);

  function run() {
    const spec = {
      cohort: cohort === 'event' ? `event:${cohortEvent}` : cohort,
      return_event: returnEvent || null,
      period,
      periods: Math.max(1, Number(periods) || 1),
      mode,
      breakdown: breakdown || null,
      date_from: dates.date_from || null,
      date_to: dates.date_to || null,
    };
    setPeople(null);
    req.run((signal) => postJson<RetentionResult>('/v1/analyses/retention', spec, signal));
  }

  // The first answer comes without a click: the defaults are a useful picture.
  useEffect(() => {
    if (catalogue && !req.data && !req.loading) run();
  }, [catalogue]);

  const events = (catalogue?.eventNames || []).map((n) => ({ value: n, label: n }));
  return (
    <section aria-label="Retention analysis">
      <ErrorNotice error={metaError} what="Loading the event list" />
      <Form label="Retention definition" onSubmit={run}>
        <div class="control-row">
          <Select
            label="Cohort by"
            value={cohort}
            onChange={setCohort}
            options={[
              { value: 'first_seen', label: 'first seen' },
              { value: 'first_purchase', label: 'first purchase' },
              { value: 'event', label: 'first time they did…' },
            ]}
          />
          {cohort === 'event' && <Select label="Cohort event" value={cohortEvent} onChange={setCohortEvent} options={events} />}
          <Select label="Coming back means" value={returnEvent} onChange={setReturnEvent} options={[{ value: '', label: 'any event' }, ...events]} />
          <Select label="Period" value={period} onChange={setPeriod} options={[{ value: 'day', label: 'day' }, { value: 'week', label: 'week' }, { value: 'month', label: 'month' }]} />
          <TextField label="Periods" type="number" min="1" max="120" value={periods} onInput={setPeriods} class="narrow" />
          <Choice
            legend="Count a return"
            name="retention-mode"
            value={mode}
            onChange={setMode}
            options={[
              { value: 'on', label: `N-${PERIOD_WORD[period]}: in that ${PERIOD_WORD[period]}` },
              { value: 'on_or_after', label: 'Unbounded: then or later' },
            ]}
          />
          <PropertySelect label="Breakdown" value={breakdown} names={catalogue?.meta.breakdowns || []} empty="none" searchable onChange={setBreakdown} />
          <DateRange value={dates} onChange={setDates} />
          <button type="submit" class="primary" disabled={req.loading}>
            {req.loading ? 'Running…' : 'Show retention'}
          </button>
        </div>
      </Form>
      <ErrorNotice error={req.error} what="Retention" />
      {req.loading && !req.data && <Loading>Computing retention…</Loading>}
      {req.data && <RetentionAnswer result={req.data} onPeople={setPeople} />}
      {people && <PeopleBehind query={people} onClose={() => setPeople(null)} />}
    </section>
  );
}

/** The last reporting day of the cohort period starting on `day`. */
function periodEnd(day: string, period: string): string {
  const d = new Date(`${day}T00:00:00Z`);
  if (period === 'week') d.setUTCDate(d.getUTCDate() + 6);
  else if (period === 'month') d.setUTCMonth(d.getUTCMonth() + 1, 0);
  return d.toISOString().slice(0, 10);
}

/** What a cell in progress says beside its number, and why (shown on hover and in the legend). */
const RUNNING_MARK = '(running)';
const RUNNING_TITLE = 'period in progress at as_of: incomplete, this number can still grow, and it is not in the (all cohorts) average';

/**
 * Whether row `index` (a cohort row, in the answer's order) is in progress at period k: the server
 * flags it (begun but not ended at as_of), so it is drawn hatched and not read as a drop.
 */
export function stillRunning(result: RetentionResult, index: number, k: number): boolean {
  return result.data.cohorts[index]?.incomplete?.[k] === true;
}

/** The people of one cell: that cohort's days (or every cohort) and came back in period K (K ≥ 1). */
function cellPeople(result: RetentionResult, row: Record<string, unknown>, column: string, k: number): PeopleQuery {
  const spec = { ...result.spec } as Record<string, unknown>;
  const cohort = String(row.cohort);
  if (cohort !== '(all cohorts)') {
    const from = String(spec.date_from || cohort);
    const to = String(spec.date_to || periodEnd(cohort, String(spec.period)));
    spec.date_from = cohort > from ? cohort : from;
    const end = periodEnd(cohort, String(spec.period));
    spec.date_to = end < to ? end : to;
  }
  // A breakdown row keeps the members with its value (`retained:2=mobile`).
  const whole = row.breakdown === undefined || row.breakdown === null || row.breakdown === ALL;
  const split = whole ? '' : `=${String(row.breakdown)}`;
  const group = split ? ` · ${valueLabel(row.breakdown)}` : '';
  return { analysis: 'retention', spec, who: `${k === 0 ? 'cohort' : `retained:${k}`}${split}`, label: `cohort ${cohort}${group}, ${k === 0 ? 'every member' : `came back in ${column}`}` };
}

function RetentionAnswer({ result, onPeople }: { result: RetentionResult; onPeople: (q: PeopleQuery) => void }) {
  const periodColumns = result.columns.filter((c) => c !== 'cohort' && c !== 'size' && c !== 'breakdown');
  const rows = rowsOf(result.columns, result.rows);
  // Rows are data.cohorts in order, then (all cohorts), which is never in progress.
  const indexOf = new Map(rows.map((r, i) => [r, i]));
  const running = (row: Record<string, unknown>, k: number) => stillRunning(result, indexOf.get(row) ?? -1, k);
  const option = useMemo(() => heatmap(rows, periodColumns, running), [result]);
  const anyRunning = result.data.cohorts.some((c) => c.incomplete?.some(Boolean));
  if (!rows.length) return <Empty>No cohort in these days.</Empty>;

  const columns: Column[] = [
    { key: 'cohort', label: 'Cohort' },
    ...(result.columns.includes('breakdown') ? [{ key: 'breakdown', label: 'Breakdown', render: (r: Record<string, unknown>) => valueLabel(r.breakdown) }] : []),
    { key: 'size', label: 'People', numeric: true },
    ...periodColumns.map((c, k) => ({
      key: c,
      label: c,
      numeric: true,
      render: (r: Record<string, unknown>) => {
        if (r[c] === null || r[c] === undefined) return <span class="muted" title="period not begun">–</span>;
        const open = running(r, k);
        const cell = (
          <span class={`heat${open ? ' running' : ''}`} style={{ '--heat': String(Number(r[c]) / 100) }} title={open ? RUNNING_TITLE : undefined} data-incomplete={open ? 'true' : undefined}>
            {pct(r[c])}
            {open && <span class="running-mark"> {RUNNING_MARK}</span>}
          </span>
        );
        const q = cellPeople(result, r, c, k);
        return (
          <button type="button" class="cell-link" onClick={() => onPeople(q)} aria-label={`People behind ${q.label}: ${pct(r[c])}`}>
            {cell}
          </button>
        );
      },
    })),
  ];
  const summary = result.summary as Record<string, unknown>;
  const cohortCount = rows.filter((r) => r.cohort !== '(all cohorts)').length;
  const height = Math.min(560, 90 + cohortCount * 26);
  return (
    <div class="answer">
      <ul class="cards" aria-label="Retention summary">
        <li class="card"><span class="card-value">{num(summary.people)}</span><span class="card-label">people</span></li>
        <li class="card"><span class="card-value">{num(summary.cohorts)}</span><span class="card-label">cohorts</span></li>
        <li class="card"><span class="card-value">{summary.mode === 'on' ? 'N-period' : 'unbounded'}</span><span class="card-label">returned {summary.mode === 'on' ? 'in the period' : 'then or later'}</span></li>
      </ul>
      <Chart
        option={option}
        height={height}
        onClick={(p) => {
          const [x, y] = (p.value as [number, number, number]) || [];
          const row = rows[y];
          if (row) onPeople(cellPeople(result, row, periodColumns[x], x));
        }}
        label={`Retention heatmap: ${cohortCount} cohorts by ${summary.period}, ${periodColumns.length} periods, cells are % of the cohort who returned${anyRunning ? '; cells ending in … are periods in progress at as_of (hatched, not in the all-cohorts average)' : ''}. The table below has every number.`} />
      <DataTable caption="Retention by cohort (% of the cohort)" columns={columns} rows={rows} />
      {anyRunning && (
        <p class="lede" id="retention-running-legend">
          <span class="heat running running-mark">{RUNNING_MARK}</span> = period in progress at as_of ({String(summary.as_of)} UTC): hatched and faded, its number can still grow, and it is not in the <em>(all cohorts)</em> average, which counts each period over the cohorts whose period had ended.
        </p>
      )}
      <ul class="notes">{result.notes.map((n) => <li>{n}</li>)}</ul>
      <SqlDetails sql={result.sql} params={result.params} title="retention" />
    </div>
  );
}

function heatmap(rows: Record<string, unknown>[], periods: string[], running: (row: Record<string, unknown>, k: number) => boolean): ChartOption {
  const cohorts = rows.map((r) => `${r.cohort}${r.breakdown !== undefined && r.breakdown !== null ? ` · ${valueLabel(r.breakdown)}` : ''} (${num(r.size)})`);
  // Dark cells get white numbers, so every number stays readable.
  const cells: { value: [number, number, number]; label: { color: string; formatter?: string }; open: boolean; itemStyle?: Record<string, unknown> }[] = [];
  rows.forEach((r, y) =>
    periods.forEach((p, x) => {
      if (r[p] === null || r[p] === undefined) return;
      const v = Number(r[p]);
      // A period still running is hatched and faded: not a drop, just not over yet.
      const open = running(r, x);
      // Not colour alone: an in-progress cell's number ends with "…".
      cells.push({ value: [x, y, v], label: { color: v > 55 && !open ? '#fff' : '#1d2330', ...(open ? { formatter: `${Math.round(v)}…` } : {}) }, open, ...(open ? { itemStyle: { opacity: 0.45, decal: { symbol: 'rect', dashArrayX: [1, 0], dashArrayY: [2, 4], rotation: 0.8, color: 'rgba(0,0,0,0.25)' } } } : {}) });
    }),
  );
  return {
    grid: { left: 170, right: 70, top: 10, bottom: 30 },
    tooltip: { formatter: (p: { value: [number, number, number]; data?: { open?: boolean } }) => [cohorts[p.value[1]], `${periods[p.value[0]]}: ${pct(p.value[2])}${p.data?.open ? ` ${RUNNING_MARK}: in progress at as_of, not in the (all cohorts) average` : ''}`] },
    xAxis: { type: 'category', data: periods, splitArea: { show: true } },
    yAxis: { type: 'category', data: cohorts, inverse: true, axisLabel: { fontSize: 11 } },
    visualMap: { min: 0, max: 100, calculable: false, orient: 'vertical', right: 0, top: 'center', itemHeight: 120, text: ['100%', '0%'], inRange: { color: ['#f7fbff', '#6baed6', '#08306b'] } },
    series: [
      {
        type: 'heatmap',
        data: cells,
        label: { show: true, fontSize: 10, formatter: (p: { value: [number, number, number] }) => `${Math.round(p.value[2])}` },
        itemStyle: { borderColor: '#fff', borderWidth: 1 },
      },
    ],
  };
}
