// Stickiness: how many people were active on exactly 1, 2, … days of each week or month
// (POST /v1/analyses/stickiness). Periods cut by the range or by now are marked and left out of the
// chart, which shows the complete periods added up.
import { useEffect, useMemo, useState } from 'preact/hooks';
import { postJson, type AnalysisResult } from '../api';
import { Chart, type ChartOption } from '../components/chart';
import { DateRange, Form, Select, type DateWindow } from '../components/fields';
import { Empty, ErrorNotice, Loading } from '../components/notice';
import { SqlDetails } from '../components/sql';
import { DataTable, rowsOf, type Column } from '../components/table';
import { useRequest } from '../components/useRequest';
import { num, pct } from '../format';
import { useCatalogue } from '../meta';
import { useUrlState, type Route } from '../router';

type StickinessResult = AnalysisResult<{ periods: { period: string; counts: number[]; incomplete: boolean }[]; complete_periods_counts: number[] }>;

export function StickinessView({ route }: { route: Route }) {
  const { catalogue, error: metaError } = useCatalogue();
  // The URL holds the form (#/stickiness?event=…&period=…&from=…&to=…).
  const q = route.query;
  const [event, setEvent] = useState(q.get('event') || '*');
  const [period, setPeriod] = useState(q.get('period') || 'week');
  const [dates, setDates] = useState<DateWindow>({ date_from: q.get('from') || '', date_to: q.get('to') || '' });
  useUrlState(route, { event, period, from: dates.date_from, to: dates.date_to });
  const req = useRequest<StickinessResult>();

  useEffect(() => {
    if (!catalogue) return;
    const range = catalogue.meta.date_range;
    setDates((d) => (d.date_from ? d : { date_from: range.min || '', date_to: range.max || '' }));
  }, [catalogue]);

  function run() {
    req.run((signal) => postJson<StickinessResult>('/v1/analyses/stickiness', { event, period, date_from: dates.date_from || null, date_to: dates.date_to || null }, signal));
  }
  useEffect(() => {
    if (catalogue && dates.date_from && !req.data && !req.loading) run();
  }, [catalogue, dates.date_from]);

  return (
    <section aria-label="Stickiness analysis">
      <ErrorNotice error={metaError} what="Loading the event list" />
      <Form label="Stickiness definition" onSubmit={run}>
        <div class="control-row">
          <Select label="Active means doing" value={event} onChange={setEvent} options={[{ value: '*', label: 'any event' }, ...(catalogue?.eventNames || []).map((n) => ({ value: n, label: n }))]} />
          <Select label="Period" value={period} onChange={setPeriod} options={[{ value: 'week', label: 'week' }, { value: 'month', label: 'month' }]} />
          <DateRange value={dates} onChange={setDates} />
          <button type="submit" class="primary" disabled={req.loading}>
            {req.loading ? 'Running…' : 'Show stickiness'}
          </button>
        </div>
      </Form>
      <ErrorNotice error={req.error} what="Stickiness" />
      {req.loading && !req.data && <Loading>Counting active days…</Loading>}
      {req.data && <StickinessAnswer result={req.data} />}
    </section>
  );
}

function StickinessAnswer({ result }: { result: StickinessResult }) {
  const complete = result.data.complete_periods_counts;
  const option = useMemo<ChartOption>(
    () => ({
      grid: { left: 56, right: 16, top: 20, bottom: 40 },
      tooltip: { trigger: 'axis', axisPointer: { type: 'shadow' }, valueFormatter: (v: number) => `${num(v)} people` },
      xAxis: { type: 'category', data: complete.map((_, i) => `${i + 1} day${i ? 's' : ''}`), name: 'active days', nameLocation: 'middle', nameGap: 26 },
      yAxis: { type: 'value', name: 'people' },
      series: [{ name: 'People (complete periods)', type: 'bar', data: complete, label: { show: true, position: 'top' } }],
    }),
    [result],
  );
  const rows = rowsOf(result.columns, result.rows);
  if (!rows.length) return <Empty>No one was active in these days.</Empty>;
  const dayColumns = result.columns.filter((c) => /^\d+$/.test(c));
  const columns: Column[] = [
    { key: 'period', label: `${String(result.summary.period)} starting`, render: (r) => <>{String(r.period)}{r.incomplete ? <span class="badge flag">incomplete</span> : null}</> },
    { key: 'people', label: 'People', numeric: true },
    ...dayColumns.map((c) => ({ key: c, label: `${c} d`, numeric: true })),
  ];
  return (
    <div class="answer">
      <ul class="cards" aria-label="Stickiness summary">
        <li class="card"><span class="card-value">{pct(result.summary.dau_mau_pct)}</span><span class="card-label">DAU / MAU (mean)</span></li>
        <li class="card"><span class="card-value">{num(result.data.periods.filter((p) => !p.incomplete).length)}</span><span class="card-label">complete {String(result.summary.period)}s</span></li>
      </ul>
      {complete.some((n) => n > 0) ? (
        <Chart option={option} height={240} label={`People by number of active days, complete ${String(result.summary.period)}s added up: ${complete.map((n, i) => `${i + 1} d ${n}`).join(', ')}. The table below has each period.`} />
      ) : (
        <Empty>No complete {String(result.summary.period)} in these days yet: the table has the incomplete ones.</Empty>
      )}
      <DataTable caption="People by active days in each period" columns={columns} rows={rows} rowClass={(r) => (r.incomplete ? 'incomplete' : '')} />
      <ul class="notes">{result.notes.map((n) => <li>{n}</li>)}</ul>
      <SqlDetails sql={result.sql} params={result.params} title="stickiness" />
    </div>
  );
}
