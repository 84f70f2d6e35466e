// Trends: events, people, sessions, sums or active people per hour/day/week/month
// (POST /v1/analyses/trends), with a breakdown and the previous period; incomplete buckets dashed.
// Every number in the table opens the people behind it.
import { useEffect, useMemo, useState } from 'preact/hooks';
import { postJson } from '../api';
import { valueLabel } from '../labels';
import { Chart } from '../components/chart';
import { Checkbox, DateRange, Form, Select, type DateWindow } from '../components/fields';
import { Empty, ErrorNotice, Loading } from '../components/notice';
import { PeopleBehind, type PeopleQuery } from '../components/people-behind';
import { PropertySelect } from '../components/property-picker';
import { SqlDetails } from '../components/sql';
import { DataTable, type Column, type Row } from '../components/table';
import { completeMean, timeSeriesOption } from '../components/timeseries';
import { useRequest } from '../components/useRequest';
import { num } from '../format';
import { useCatalogue } from '../meta';
import { jsonParam, useUrlState, type Route } from '../router';
import type { TrendsResult } from './home';

interface SeriesInput {
  event: string;
  math: string;
}

const MATHS = [
  { value: 'total', label: 'events' },
  { value: 'people', label: 'people' },
  { value: 'sessions', label: 'sessions' },
  { value: 'sum:revenue', label: 'sum of revenue' },
  { value: 'dau', label: 'daily active people' },
  { value: 'wau', label: 'weekly active people' },
  { value: 'mau', label: 'monthly active people' },
];

const LETTERS = 'ABCDEFGHIJ';

function seriesSpec(s: SeriesInput) {
  const [math, property] = s.math.split(':');
  const label = `${s.event === '*' ? 'any event' : s.event} · ${MATHS.find((m) => m.value === s.math)?.label || s.math}`;
  return { event: s.event, math, property: property || null, label };
}

const validSeries = (v: unknown) => Array.isArray(v) && v.length > 0 && v.length <= 5 && v.every((s) => typeof s?.event === 'string' && typeof s?.math === 'string');

export function TrendsView({ route }: { route: Route }) {
  const { catalogue, error: metaError } = useCatalogue();
  // The URL holds the form (#/trends?series=…&interval=…): a reload or a shared link shows the same trend.
  const q = route.query;
  const [series, setSeries] = useState<SeriesInput[]>(() => jsonParam(q, 'series', [{ event: '*', math: 'people' }], validSeries));
  const [interval, setInterval] = useState(q.get('interval') || 'day');
  const [breakdown, setBreakdown] = useState(q.get('breakdown') || '');
  const [compare, setCompare] = useState(q.get('compare') !== '0');
  const [dates, setDates] = useState<DateWindow>({ date_from: q.get('from') || '', date_to: q.get('to') || '' });
  useUrlState(route, { series: JSON.stringify(series.map(({ event, math }) => ({ event, math }))), interval, breakdown, compare: compare ? '1' : '0', from: dates.date_from, to: dates.date_to });
  const [people, setPeople] = useState<PeopleQuery | null>(null);
  const req = useRequest<TrendsResult>();

  useEffect(() => {
    if (!catalogue) return;
    const range = catalogue.meta.date_range;
    setDates((d) => (d.date_from ? d : { date_from: range.min || '', date_to: range.max || '' }));
  }, [catalogue]);

  function run() {
    setPeople(null);
    req.run((signal) =>
      postJson<TrendsResult>(
        '/v1/analyses/trends',
        { series: series.map(seriesSpec), interval, breakdown: breakdown || null, compare, date_from: dates.date_from || null, date_to: dates.date_to || null },
        signal,
      ),
    );
  }

  useEffect(() => {
    if (catalogue && dates.date_from && !req.data && !req.loading) run();
  }, [catalogue, dates.date_from]);

  const events = [{ value: '*', label: 'any event' }, ...(catalogue?.eventNames || []).map((n) => ({ value: n, label: n }))];
  const update = (i: number, change: Partial<SeriesInput>) => setSeries(series.map((s, j) => (j === i ? { ...s, ...change } : s)));

  return (
    <section aria-label="Trends analysis">
      <ErrorNotice error={metaError} what="Loading the event list" />
      <Form label="Trend definition" onSubmit={run}>
        <fieldset class="steps">
          <legend>Series</legend>
          <ol>
            {series.map((s, i) => (
              <li class="step-card">
                <Select label={`Series ${LETTERS[i]} event`} value={s.event} options={events} onChange={(event) => update(i, { event })} />
                <Select label={`Series ${LETTERS[i]} counts`} value={s.math} options={MATHS} onChange={(math) => update(i, { math })} />
                <button type="button" class="small" disabled={series.length <= 1} onClick={() => setSeries(series.filter((_, j) => j !== i))}>
                  Remove<span class="visually-hidden"> series {LETTERS[i]}</span>
                </button>
              </li>
            ))}
            <li class="step-add">
              <button type="button" disabled={series.length >= 5} onClick={() => setSeries([...series, { event: catalogue?.eventNames[0] || '*', math: 'total' }])}>
                + Add series
              </button>
            </li>
          </ol>
        </fieldset>
        <div class="control-row">
          <Select label="Interval" value={interval} onChange={setInterval} options={['hour', 'day', 'week', 'month'].map((v) => ({ value: v, label: v }))} />
          <PropertySelect label="Breakdown" value={breakdown} names={catalogue?.meta.breakdowns || []} empty="none" searchable onChange={setBreakdown} />
          <Checkbox label="Compare with the previous period" checked={compare} onChange={setCompare} />
          <DateRange value={dates} onChange={setDates} />
          <button type="submit" class="primary" disabled={req.loading}>
            {req.loading ? 'Running…' : 'Show trend'}
          </button>
        </div>
      </Form>
      <ErrorNotice error={req.error} what="The trend" />
      {req.loading && !req.data && <Loading>Counting…</Loading>}
      {req.data && <TrendsAnswer result={req.data} onPeople={setPeople} />}
      {people && <PeopleBehind query={people} onClose={() => setPeople(null)} />}
    </section>
  );
}

const lineName = (l: { label: string; breakdown: string | null }) => (l.breakdown === null ? l.label : `${l.label} [${valueLabel(l.breakdown)}]`);

function TrendsAnswer({ result, onPeople }: { result: TrendsResult; onPeople: (q: PeopleQuery) => void }) {
  const { buckets, incomplete, series, previous } = result.data;
  const option = useMemo(
    () =>
      timeSeriesOption(
        buckets,
        incomplete,
        series.map((l) => ({
          name: lineName(l),
          values: l.values,
          previous: l.breakdown === null ? previous?.find((p) => p.label === l.label && p.breakdown === null)?.values : undefined,
        })),
        num,
      ),
    [result],
  );
  if (!buckets.length) return <Empty>No buckets in these days.</Empty>;

  // The people behind one point: series letter, bucket, and the breakdown value if any.
  const peopleOf = (line: (typeof series)[number], j: number): PeopleQuery | null => {
    if (line.breakdown === '(other)') return null; // a sum of values, not one group of people
    const index = Number((line as { series?: number }).series ?? series.indexOf(line));
    const value = line.breakdown === null ? '' : `=${valueLabel(line.breakdown)}`;
    return { analysis: 'trends', spec: result.spec, who: `${LETTERS[index]}@${buckets[j]}${value}`, label: `${lineName(line)} on ${buckets[j]}` };
  };

  const rows: Row[] = buckets.map((b, j) => ({ bucket: b, incomplete: incomplete[j], j }));
  const columns: Column[] = [
    { key: 'bucket', label: 'Period', render: (r) => <>{String(r.bucket)}{r.incomplete ? <span class="badge flag">incomplete</span> : null}</> },
    ...series.map((l, i) => ({
      key: `s${i}`,
      label: lineName(l),
      numeric: true,
      render: (r: Row) => {
        const j = Number(r.j);
        const q = peopleOf(l, j);
        const text = num(l.values[j]);
        return q ? (
          <button type="button" class="cell-link" onClick={() => onPeople(q)} aria-label={`People behind ${q.label}: ${text}`}>
            {text}
          </button>
        ) : (
          text
        );
      },
    })),
  ];
  const main = series[0];
  return (
    <div class="answer">
      <ul class="cards" aria-label="Trend summary">
        {series.filter((l) => l.breakdown === null).map((l) => (
          <li class="card">
            <span class="card-value">{num(completeMean(l.values, incomplete))}</span>
            <span class="card-label">{l.label}: mean per complete {String(result.summary.interval)}</span>
          </li>
        ))}
      </ul>
      <Chart
        option={option}
        onClick={(p) => {
          const line = series.find((l) => lineName(l) === p.seriesName);
          const q = line && peopleOf(line, p.dataIndex);
          if (q) onPeople(q);
        }}
        label={`Trend of ${series.length} line(s) over ${buckets.length} ${String(result.summary.interval)}s; ${main ? `${lineName(main)} from ${num(main.values[0])} to ${num(main.values[main.values.length - 1])}` : ''}; incomplete periods dashed. Click a point, or a number in the table, for the people behind it.`}
      />
      <DataTable caption="Trend by period" columns={columns} rows={rows} rowClass={(r) => (r.incomplete ? 'incomplete' : '')} />
      <ul class="notes">{result.notes.map((n) => <li>{n}</li>)}</ul>
      <SqlDetails sql={result.sql} params={result.params} title="the trend" />
    </div>
  );
}
