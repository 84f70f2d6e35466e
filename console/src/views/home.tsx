// Home: the first screen after login. Visitors, sessions, events, revenue and conversion per day
// beside the previous period (POST /v1/analyses/trends with compare), the top pages (pages), top
// events (trends by event) and top campaigns (GET /v1/campaigns). Today, still running, is drawn
// dashed and left out of the averages.
import { useEffect, useMemo, useState } from 'preact/hooks';
import { getJson, postJson, type AnalysisResult } from '../api';
import { Chart } from '../components/chart';
import { Select } from '../components/fields';
import { Empty, ErrorNotice, Loading } from '../components/notice';
import { SqlDetails } from '../components/sql';
import { DataTable, type Column, type Row } from '../components/table';
import { completeMean, timeSeriesOption, type Line } from '../components/timeseries';
import { useLoaded } from '../components/useLoaded';
import { useRequest } from '../components/useRequest';
import { num, pct } from '../format';
import { listDashboards } from '../insights';
import { campaignLabel } from '../labels';
import { useCatalogue } from '../meta';
import { href, useUrlState, type Route } from '../router';

interface TrendLine {
  label: string;
  breakdown: string | null;
  values: (number | null)[];
  buckets?: string[];
}

export type TrendsResult = AnalysisResult<{ buckets: string[]; incomplete: boolean[]; series: TrendLine[]; previous?: TrendLine[] }>;

interface Metric {
  key: string;
  label: string;
  format: (v: unknown) => string;
}

const METRICS: Metric[] = [
  { key: 'visitors', label: 'Visitors', format: num },
  { key: 'sessions', label: 'Sessions', format: num },
  { key: 'events', label: 'Events', format: num },
  { key: 'revenue', label: 'Revenue', format: num },
  { key: 'conversion', label: 'Conversion', format: (v) => pct(v === null || v === undefined ? null : Math.round(Number(v) * 100) / 100) },
];

const SERIES = [
  { event: '*', math: 'people', label: 'visitors' },
  { event: '*', math: 'sessions', label: 'sessions' },
  { event: '*', math: 'total', label: 'events' },
  { event: 'purchase', math: 'sum', property: 'revenue', label: 'revenue' },
  { event: 'purchase', math: 'people', label: 'buyers' },
];

function addDays(day: string, n: number): string {
  const d = new Date(`${day}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() + n);
  return d.toISOString().slice(0, 10);
}

/** Each metric per bucket: the trend's lines, conversion = buyers / visitors. */
function metricValues(lines: TrendLine[] | undefined): Record<string, (number | null)[]> {
  const of = (label: string) => lines?.find((l) => l.label === label && l.breakdown === null)?.values || [];
  const visitors = of('visitors');
  const buyers = of('buyers');
  return {
    visitors,
    sessions: of('sessions'),
    events: of('events'),
    revenue: of('revenue'),
    conversion: visitors.map((v, i) => (Number(v) ? (Number(buyers[i] || 0) / Number(v)) * 100 : null)),
  };
}

export function HomeView({ route }: { route: Route }) {
  const { catalogue } = useCatalogue();
  // The URL holds the period and the metric charted (#/home?days=28&metric=revenue).
  const [days, setDays] = useState(['7', '14', '28'].includes(route.query.get('days') || '') ? route.query.get('days')! : '14');
  const [metric, setMetric] = useState(METRICS.some((m) => m.key === route.query.get('metric')) ? route.query.get('metric')! : 'visitors');
  // Defaults are left out: the plain #/home stays the plain home.
  useUrlState(route, { days: days === '14' ? '' : days, metric: metric === 'visitors' ? '' : metric });
  const trend = useRequest<TrendsResult>();
  const pages = useRequest<AnalysisResult>();
  const events = useRequest<TrendsResult>();
  const campaigns = useRequest<{ rows: Row[]; sql: string; params: Record<string, unknown> }>();

  const last = catalogue?.meta.date_range.max || '';
  const range = last ? { date_from: addDays(last, 1 - Number(days)), date_to: last } : null;

  useEffect(() => {
    if (!range) return;
    trend.run((signal) => postJson<TrendsResult>('/v1/analyses/trends', { series: SERIES, interval: 'day', compare: true, ...range }, signal));
    pages.run((signal) => postJson<AnalysisResult>('/v1/analyses/pages', { top: 8, ...range }, signal));
    events.run((signal) => postJson<TrendsResult>('/v1/analyses/trends', { series: ['*'], breakdown: 'event', interval: 'day', ...range }, signal));
    campaigns.run((signal) => getJson('/v1/campaigns', { ...range, sort: 'sessions', desc: true, trend_campaigns: 0 }, signal));
  }, [last, days]);

  if (catalogue && !last) return <Empty>No events in the warehouse yet: send some (or run <code>funnelhouse demo</code>), then build the tables.</Empty>;

  return (
    <section aria-label="Overview">
      <div class="controls" role="group" aria-label="Options">
        <Select
          label="Period"
          value={days}
          onChange={setDays}
          options={[
            { value: '7', label: 'last 7 days' },
            { value: '14', label: 'last 14 days' },
            { value: '28', label: 'last 28 days' },
          ]}
        />
        {range && (
          <p class="muted range-note">
            {range.date_from} … {range.date_to}, against the {days} days before. Averages are per complete day; an incomplete day (today) is drawn dashed and left out.
          </p>
        )}
      </div>
      <DashboardLinks />
      <ErrorNotice error={trend.error} what="The overview" />
      {trend.loading && !trend.data && <Loading>Counting visitors…</Loading>}
      {trend.data && <Overview result={trend.data} metric={metric} setMetric={setMetric} />}
      <div class="home-tops">
        <TopPages req={pages} />
        <TopEvents req={events} />
        <TopCampaigns req={campaigns} />
      </div>
    </section>
  );
}

/** The saved dashboards, one click away (none saved, or the list failing: the home page goes on without it). */
function DashboardLinks() {
  const { value: boards } = useLoaded(() => listDashboards(), null);
  if (!boards?.length) return null;
  return (
    <p class="dashboard-links">
      Dashboards:{' '}
      {boards.map((b, i) => (
        <>
          {i ? ' · ' : ''}
          <a href={href('/dashboards', { id: String(b.id) })}>{b.name}</a>
        </>
      ))}
    </p>
  );
}

function change(now: number | null, before: number | null): string {
  if (now === null || before === null || !before) return 'no previous data';
  const d = ((now - before) / before) * 100;
  return `${d >= 0 ? '▲ +' : '▼ '}${Math.round(d * 10) / 10}% vs previous`;
}

function Overview({ result, metric, setMetric }: { result: TrendsResult; metric: string; setMetric: (m: string) => void }) {
  const { buckets, incomplete } = result.data;
  const current = metricValues(result.data.series);
  const previous = metricValues(result.data.previous);
  const chosen = METRICS.find((m) => m.key === metric) || METRICS[0];
  const option = useMemo(
    () => timeSeriesOption(buckets, incomplete, [{ name: chosen.label, values: current[chosen.key], previous: previous[chosen.key] } as Line], chosen.format),
    [result, metric],
  );
  const rows: Row[] = buckets.map((b, i) => ({
    day: b,
    status: incomplete[i] ? 'incomplete' : '',
    ...Object.fromEntries(METRICS.map((m) => [m.key, current[m.key][i] ?? null])),
  }));
  const columns: Column[] = [
    { key: 'day', label: 'Day', render: (r) => <>{String(r.day)}{r.status ? <span class="badge flag">incomplete</span> : null}</> },
    ...METRICS.map((m) => ({ key: m.key, label: m.label, numeric: true, render: (r: Row) => m.format(r[m.key]) })),
  ];
  const done = incomplete.filter((x) => !x).length;
  return (
    <div class="answer">
      <ul class="cards" aria-label="Averages per complete day">
        {METRICS.map((m) => {
          const now = completeMean(current[m.key], incomplete);
          const before = completeMean(previous[m.key], incomplete.map(() => false));
          return (
            <li class={`card${m.key === metric ? ' chosen' : ''}`}>
              <span class="card-value">{m.format(now)}</span>
              <span class="card-label">{m.label} per day</span>
              <span class="card-change">{change(now, before)}</span>
            </li>
          );
        })}
      </ul>
      <div class="controls compact">
        <Select label="Chart shows" value={metric} onChange={setMetric} options={METRICS.map((m) => ({ value: m.key, label: m.label }))} />
      </div>
      <Chart
        option={option}
        height={260}
        label={`${chosen.label} per day, ${buckets[0]} to ${buckets[buckets.length - 1]}, with the previous period dotted; ${incomplete.filter(Boolean).length} incomplete day(s) dashed. Mean of ${done} complete days: ${chosen.format(completeMean(current[chosen.key], incomplete))}. The table below has every number.`}
      />
      <DataTable caption="Per day" columns={columns} rows={rows} rowClass={(r) => (r.status ? 'incomplete' : '')} />
      <SqlDetails sql={result.sql} params={result.params} title="the overview" />
    </div>
  );
}

function TopPages({ req }: { req: ReturnType<typeof useRequest<AnalysisResult>> }) {
  const rows = (req.data?.data as { pages?: Row[] } | undefined)?.pages || [];
  return (
    <div class="panel">
      <h2>Top pages</h2>
      <ErrorNotice error={req.error} what="Top pages" />
      {req.loading && !req.data && <Loading />}
      {req.data && (
        <>
          <DataTable
            caption="Top pages"
            hideCaption
            columns={[
              { key: 'page', label: 'Page / screen', render: (r) => <a href={href('/paths', { page: String(r.page) })}>{String(r.page)}</a> },
              { key: 'views', label: 'Views', numeric: true },
              { key: 'people', label: 'People', numeric: true },
              { key: 'exit_pct', label: 'Exit %', numeric: true, render: (r) => pct(r.exit_pct) },
            ]}
            rows={rows}
            empty="No page views in these days."
          />
          <p><a href={href('/pages')}>Page report</a></p>
          <SqlDetails sql={req.data.sql} params={req.data.params} title="top pages" />
        </>
      )}
    </div>
  );
}

function TopEvents({ req }: { req: ReturnType<typeof useRequest<TrendsResult>> }) {
  const d = req.data?.data;
  const rows: Row[] = (d?.series || [])
    .filter((l) => l.breakdown !== null && l.breakdown !== '(other)')
    .map((l) => ({ event: l.breakdown, events: l.values.reduce<number>((s, v) => s + Number(v || 0), 0) }));
  return (
    <div class="panel">
      <h2>Top events</h2>
      <ErrorNotice error={req.error} what="Top events" />
      {req.loading && !req.data && <Loading />}
      {req.data && (
        <>
          <DataTable caption="Top events" hideCaption columns={[{ key: 'event', label: 'Event' }, { key: 'events', label: 'Events', numeric: true }]} rows={rows} empty="No events in these days." />
          <p><a href={href('/trends')}>Trends</a></p>
          <SqlDetails sql={req.data.sql} params={req.data.params} title="top events" />
        </>
      )}
    </div>
  );
}

function TopCampaigns({ req }: { req: ReturnType<typeof useRequest<{ rows: Row[]; sql: string; params: Record<string, unknown> }>> }) {
  const rows = (req.data?.rows || []).slice(0, 8);
  return (
    <div class="panel">
      <h2>Top campaigns</h2>
      <ErrorNotice error={req.error} what="Top campaigns" />
      {req.loading && !req.data && <Loading />}
      {req.data && (
        <>
          <DataTable
            caption="Top campaigns"
            hideCaption
            columns={[
              { key: 'campaign', label: 'Source / medium / campaign', render: (r) => campaignLabel(r.source, r.medium, r.campaign) },
              { key: 'sessions', label: 'Sessions', numeric: true },
              { key: 'orders', label: 'Orders', numeric: true },
              { key: 'revenue', label: 'Revenue', numeric: true },
            ]}
            rows={rows}
            empty="No campaign traffic in these days."
          />
          <p><a href={href('/campaigns')}>Campaigns</a></p>
          <SqlDetails sql={req.data.sql} params={req.data.params} title="top campaigns" />
        </>
      )}
    </div>
  );
}
