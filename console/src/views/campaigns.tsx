// Campaigns: campaign_performance under first- or last-touch attribution (GET /v1/campaigns), a
// table sorted by the server when a header is clicked, and a daily trend of one metric (days not over
// at the answer's as_of, today, drawn dashed).
import { useEffect, useMemo, useState } from 'preact/hooks';
import { getJson } from '../api';
import { Chart, type ChartOption } from '../components/chart';
import { timeSeriesOption } from '../components/timeseries';
import { Choice, DateRange, Select, type DateWindow } from '../components/fields';
import { Empty, ErrorNotice, Loading } from '../components/notice';
import { SqlDetails } from '../components/sql';
import { DataTable, type Column, type Row, type Sort } from '../components/table';
import { useRequest } from '../components/useRequest';
import { num, pct } from '../format';
import { campaignLabel, DIRECT, NONE } from '../labels';
import { useCatalogue } from '../meta';
import { useUrlState, type Route } from '../router';

interface CampaignColumn {
  name: string;
  label: string;
  type: string;
}

interface Campaigns {
  date_from: string;
  date_to: string;
  rows: Row[];
  totals: Row;
  trend: Row[];
  /** Trend days that had not ended at as_of (today in the reporting time zone, or later). */
  incomplete_days?: string[];
  as_of?: string;
  columns: CampaignColumn[];
  touch: string;
  sql: string;
  params: Record<string, unknown>;
}

const TREND_LINES = 6;

// Column types the server gives: string | integer | money | ratio (0..1).
const isNumeric = (c: CampaignColumn) => c.type === 'integer' || c.type === 'money' || c.type === 'ratio';
const isShare = (c: CampaignColumn) => c.type === 'ratio';

function share(value: unknown): string {
  const n = Number(value);
  if (value === null || value === undefined || !Number.isFinite(n)) return '–';
  return pct(Math.round(n * 10000) / 100);
}

const campaignName = (r: Row) => campaignLabel(r.source, r.medium, r.campaign);

export function CampaignsView({ route }: { route: Route }) {
  const { catalogue } = useCatalogue();
  // The URL holds the options (#/campaigns?touch=…&sort=…&metric=…): a reload or a shared link shows the same table.
  const q = route.query;
  const [touch, setTouch] = useState(q.get('touch') === 'first' ? 'first' : 'last');
  const [dates, setDates] = useState<DateWindow>({ date_from: q.get('from') || '', date_to: q.get('to') || '' });
  const [sort, setSort] = useState<Sort>({ key: q.get('sort') || 'sessions', desc: q.get('desc') !== '0' });
  const [metric, setMetric] = useState(q.get('metric') || 'sessions');
  useUrlState(route, { touch, from: dates.date_from, to: dates.date_to, sort: sort.key, desc: sort.desc ? '1' : '0', metric });
  const req = useRequest<Campaigns>();

  useEffect(() => {
    if (!catalogue) return;
    const range = catalogue.meta.date_range;
    setDates((d) => (d.date_from ? d : { date_from: range.min || '', date_to: range.max || '' }));
  }, [catalogue]);

  useEffect(() => {
    // Wait for the effect above to fill the window from the catalogue: asking first with empty
    // dates sent a second request that aborted the first on every visit.
    if (!catalogue || (!dates.date_from && catalogue.meta.date_range.min)) return;
    req.run((signal) => getJson<Campaigns>('/v1/campaigns', { touch, date_from: dates.date_from, date_to: dates.date_to, sort: sort.key, desc: sort.desc, trend_campaigns: TREND_LINES }, signal));
  }, [catalogue, touch, dates.date_from, dates.date_to, sort.key, sort.desc]);

  const data = req.data;
  const metrics = (data?.columns || []).filter(isNumeric);
  const option = useMemo(() => (data ? trendChart(data, metrics.find((m) => m.name === metric) || metrics[0]) : null), [data, metric]);
  const openDays = data?.incomplete_days || [];

  const columns: Column[] = (data?.columns || []).map((c) => ({
    key: c.name,
    label: c.label || c.name,
    numeric: isNumeric(c),
    sortable: true,
    render: isShare(c) ? (r: Row) => share(r[c.name]) : isNumeric(c) ? undefined : (r: Row) => String(r[c.name] ?? '') || <span class="muted">{c.name === 'source' ? DIRECT : NONE}</span>,
  }));

  return (
    <section aria-label="Campaign performance">
      <p class="lede">What each campaign (source / medium / campaign) brought. Click a column header to sort.</p>
      <div class="controls" role="group" aria-label="Options">
        <Choice
          legend="Attribution"
          name="touch"
          value={touch}
          onChange={setTouch}
          options={[
            { value: 'first', label: 'First touch' },
            { value: 'last', label: 'Last touch' },
          ]}
        />
        <DateRange value={dates} onChange={setDates} />
        <Select label="Trend metric" value={metric} onChange={setMetric} options={metrics.map((m) => ({ value: m.name, label: m.label || m.name }))} />
      </div>
      <ErrorNotice error={req.error} what="Loading campaigns" />
      {req.loading && !data && <Loading />}
      {data && data.rows.length === 0 && <Empty>No campaign data in these days (the models may not have run yet).</Empty>}
      {data && data.rows.length > 0 && option && (
        <div class="answer">
          <Chart
            option={option}
            height={260}
            label={`Daily ${metric} of the first ${Math.min(TREND_LINES, data.rows.length)} campaigns in the table's order, ${touch}-touch attribution${openDays.length ? `; incomplete (dashed): ${openDays.join(', ')}` : ''}. The table below has the totals.`}
          />
          {openDays.length > 0 && (
            <p class="lede" id="campaigns-incomplete">
              Incomplete: <strong>{openDays.join(', ')}</strong>: the day had not ended at the answer's as-of time ({data.as_of} UTC), so its numbers can still grow; the chart draws it dashed.
            </p>
          )}
          <DataTable caption={`Campaigns, ${touch}-touch attribution`} columns={columns} rows={data.rows} sort={sort} onSort={setSort} />
          <SqlDetails sql={data.sql} params={data.params} title="campaign performance" />
        </div>
      )}
    </section>
  );
}

function trendChart(data: Campaigns, metric: CampaignColumn | undefined): ChartOption {
  if (!metric) return {};
  // The server sends the trend of the first rows in the table's order.
  const top = [...new Set(data.rows.slice(0, TREND_LINES).map(campaignName))];
  const days = [...new Set(data.trend.map((r) => String(r.day)))].sort();
  const open = new Set(data.incomplete_days || []);
  const lines = top.map((name) => {
    const byDay = new Map(data.trend.filter((r) => campaignName(r) === name).map((r) => [String(r.day), Number(r[metric.name] || 0)]));
    return { name, values: days.map((d) => byDay.get(d) ?? 0) };
  });
  const format = (v: unknown) => (isShare(metric) ? share(v) : num(v));
  const base = timeSeriesOption(days, days.map((d) => open.has(d)), lines, format);
  return {
    ...base,
    grid: { left: 56, right: 16, top: 64, bottom: 30 },
    legend: { top: 0, type: 'scroll', formatter: (n: string) => (n.length > 40 ? `${n.slice(0, 39)}…` : n) },
    yAxis: { type: 'value', name: metric.label || metric.name },
  };
}
