// Page report: views, sessions, people, entrances, exits, exit % and time on page of every page and
// screen (POST /v1/analyses/pages).
import { useEffect, useMemo, useState } from 'preact/hooks';
import { postJson, type AnalysisResult } from '../api';
import { Chart, type ChartOption } from '../components/chart';
import { DateRange, Form, TextField, type DateWindow } from '../components/fields';
import { Empty, ErrorNotice, Loading } from '../components/notice';
import { SqlDetails } from '../components/sql';
import { DataTable, rowsOf, type Column } from '../components/table';
import { useRequest } from '../components/useRequest';
import { duration, num, pct } from '../format';
import { useCatalogue } from '../meta';
import { href, useUrlState, type Route } from '../router';

export function PageReportView({ route }: { route: Route }) {
  const { catalogue, error: metaError } = useCatalogue();
  // The URL holds the form (#/pages?top=…&from=…&to=…).
  const q = route.query;
  const [top, setTop] = useState(q.get('top') || '50');
  const [dates, setDates] = useState<DateWindow>({ date_from: q.get('from') || '', date_to: q.get('to') || '' });
  useUrlState(route, { top, from: dates.date_from, to: dates.date_to });
  const req = useRequest<AnalysisResult>();

  useEffect(() => {
    if (!catalogue) return;
    const range = catalogue.meta.date_range;
    setDates((d) => (d.date_from ? d : { date_from: range.min || '', date_to: range.max || '' }));
  }, [catalogue]);

  function run() {
    req.run((signal) => postJson<AnalysisResult>('/v1/analyses/pages', { top: Math.max(1, Number(top) || 50), date_from: dates.date_from || null, date_to: dates.date_to || null }, signal));
  }
  useEffect(() => {
    if (catalogue && dates.date_from && !req.data && !req.loading) run();
  }, [catalogue, dates.date_from]);

  return (
    <section aria-label="Page report">
      <ErrorNotice error={metaError} what="Loading the event list" />
      <Form label="Page report options" onSubmit={run}>
        <div class="control-row">
          <TextField label="Pages shown" type="number" min="1" max="500" value={top} onInput={setTop} class="narrow" />
          <DateRange value={dates} onChange={setDates} />
          <button type="submit" class="primary" disabled={req.loading}>
            {req.loading ? 'Running…' : 'Show pages'}
          </button>
        </div>
      </Form>
      <ErrorNotice error={req.error} what="The page report" />
      {req.loading && !req.data && <Loading>Reading page views…</Loading>}
      {req.data && <PagesAnswer result={req.data} />}
    </section>
  );
}

function PagesAnswer({ result }: { result: AnalysisResult }) {
  const rows = rowsOf(result.columns, result.rows);
  const shown = rows.slice(0, 15);
  const option = useMemo<ChartOption>(
    () => ({
      grid: { left: 160, right: 24, top: 10, bottom: 24 },
      tooltip: { trigger: 'axis', axisPointer: { type: 'shadow' }, valueFormatter: (v: number) => `${num(v)} views` },
      xAxis: { type: 'value' },
      yAxis: { type: 'category', inverse: true, data: shown.map((r) => String(r.page)), axisLabel: { width: 150, overflow: 'truncate' } },
      series: [{ name: 'Views', type: 'bar', data: shown.map((r) => Number(r.views)) }],
    }),
    [result],
  );
  if (!rows.length) return <Empty>No page or screen views in these days.</Empty>;
  const columns: Column[] = [
    { key: 'page', label: 'Page / screen', render: (r) => <a href={href('/paths', { page: String(r.page) })}>{String(r.page)}</a> },
    { key: 'views', label: 'Views', numeric: true, sortable: true },
    { key: 'sessions', label: 'Sessions', numeric: true, sortable: true },
    { key: 'people', label: 'People', numeric: true, sortable: true },
    { key: 'entrances', label: 'Entrances', numeric: true, sortable: true },
    { key: 'exits', label: 'Exits', numeric: true, sortable: true },
    { key: 'exit_pct', label: 'Exit %', numeric: true, sortable: true, render: (r) => pct(r.exit_pct) },
    { key: 'mean_s_on_page', label: 'Mean time on page', numeric: true, sortable: true, render: (r) => duration(r.mean_s_on_page) },
    { key: 'median_s_on_page', label: 'Median time on page', numeric: true, sortable: true, render: (r) => duration(r.median_s_on_page) },
  ];
  return (
    <div class="answer">
      <ul class="cards" aria-label="Page report summary">
        <li class="card"><span class="card-value">{num(result.summary.views)}</span><span class="card-label">views</span></li>
        <li class="card"><span class="card-value">{num(result.summary.pages)}</span><span class="card-label">pages and screens</span></li>
      </ul>
      <Chart option={option} height={Math.max(160, 40 + shown.length * 22)} label={`Views of the ${shown.length} most viewed pages: ${shown.slice(0, 5).map((r) => `${r.page} ${r.views}`).join(', ')}. The table below has every number.`} />
      <DataTable caption="Pages and screens" columns={columns} rows={rows} />
      <ul class="notes">{result.notes.map((n) => <li>{n}</li>)}</ul>
      <SqlDetails sql={result.sql} params={result.params} title="the page report" />
    </div>
  );
}
