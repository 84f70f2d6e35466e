// Funnels: pick steps, window, order, breakdown and days; POST /v1/analyses/funnel; a bar funnel
// (reached, dropped, still inside the window) with conversion and time to convert, and the table.
import { useEffect, useMemo, useState } from 'preact/hooks';
import { postJson, type AnalysisResult } from '../api';
import { Chart, type ChartOption } from '../components/chart';
import { DateRange, Form, Select, TextField, type DateWindow } from '../components/fields';
import { Empty, ErrorNotice, Loading } from '../components/notice';
import { PeopleBehind, type PeopleQuery } from '../components/people-behind';
import { SqlDetails } from '../components/sql';
import { DataTable, type Column } from '../components/table';
import { useRequest } from '../components/useRequest';
import { duration, num, pct } from '../format';
import { useCatalogue } from '../meta';
import { href, type Route } from '../router';

interface FunnelStep {
  step: number;
  name: string;
  optional: boolean;
  people: number;
  pct_of_start: number;
  pct_of_previous: number | null;
  dropped: number;
  in_window: number;
  median_s_from_prev: number | null;
  mean_s_from_prev: number | null;
  median_s_from_start: number | null;
  mean_s_from_start: number | null;
}

interface FunnelGroup {
  breakdown: string | null;
  excluded: number;
  steps: FunnelStep[];
}

type FunnelResult = AnalysisResult<{ groups: FunnelGroup[] }>;

interface StepInput {
  event: string;
  filter: string;
}

const ALL = '(all)';
const PREFERRED = ['page_view', 'product_view', 'add_to_cart', 'begin_checkout', 'purchase'];

const groupName = (g: FunnelGroup) => (g.breakdown === null ? ALL : g.breakdown === '' ? '(none)' : g.breakdown);

/** The funnel a link carries (#/funnels?steps=…&window=…): what was run, so it can be shared. */
function fromLink(query: URLSearchParams): { steps: StepInput[]; window: [string, string]; order: string; breakdown: string; dates: DateWindow } | null {
  let steps: StepInput[] = [];
  try {
    const parsed = JSON.parse(query.get('steps') || '[]');
    if (Array.isArray(parsed)) steps = parsed.map((x) => ({ event: String(x?.event ?? ''), filter: String(x?.filter ?? '') }));
  } catch {
    return null; // a damaged link: start from the defaults
  }
  if (steps.length < 2) return null;
  const [, value = '7', unit = 'd'] = (query.get('window') || '').match(/^(\d+)([mhd])$/) || [];
  return { steps, window: [value, unit], order: query.get('order') || 'loose', breakdown: query.get('breakdown') || '', dates: { date_from: query.get('from') || '', date_to: query.get('to') || '' } };
}

export function FunnelsView({ route }: { route: Route }) {
  const { catalogue, error: metaError } = useCatalogue();
  const [linked] = useState(() => fromLink(route.query));
  const [steps, setSteps] = useState<StepInput[]>(linked?.steps || []);
  const [windowValue, setWindowValue] = useState(linked?.window[0] || '7');
  const [windowUnit, setWindowUnit] = useState(linked?.window[1] || 'd');
  const [order, setOrder] = useState(linked?.order || 'loose');
  const [breakdown, setBreakdown] = useState(linked?.breakdown || '');
  const [dates, setDates] = useState<DateWindow>(linked?.dates || { date_from: '', date_to: '' });
  const [group, setGroup] = useState(ALL);
  const req = useRequest<FunnelResult>();
  const [people, setPeople] = useState<PeopleQuery | null>(null);

  useEffect(() => {
    if (!catalogue) return;
    const names = catalogue.eventNames;
    const first = PREFERRED.find((n) => names.includes(n)) || names[0] || '';
    setSteps((s) => (s.length ? s : [{ event: first, filter: '' }, { event: '', filter: '' }]));
    const range = catalogue.meta.date_range;
    setDates((d) => (d.date_from ? d : { date_from: range.min || '', date_to: range.max || '' }));
  }, [catalogue]);

  const eventOptions = [{ value: '', label: 'Choose an event…' }, ...(catalogue?.eventNames || []).map((n) => ({ value: n, label: n }))];
  const ready = steps.length >= 2 && steps.every((s) => s.event);

  function update(i: number, change: Partial<StepInput>) {
    setSteps(steps.map((s, j) => (j === i ? { ...s, ...change } : s)));
  }

  function move(i: number, by: number) {
    const next = [...steps];
    [next[i], next[i + by]] = [next[i + by], next[i]];
    setSteps(next);
  }

  function run() {
    if (!ready) return;
    const spec = {
      steps: steps.map((s) => (s.filter.trim() ? `${s.event}:${s.filter.trim()}` : s.event)),
      window: `${Math.max(1, Number(windowValue) || 1)}${windowUnit}`,
      order,
      breakdown: breakdown || null,
      date_from: dates.date_from || null,
      date_to: dates.date_to || null,
    };
    setGroup(ALL);
    setPeople(null);
    // The URL says what ran: copy it to share the funnel, reload it to run it again.
    const link = href('/funnels', { steps: JSON.stringify(steps), window: spec.window, order, breakdown, from: dates.date_from, to: dates.date_to });
    history.replaceState(null, '', link);
    req.run((signal) => postJson<FunnelResult>('/v1/analyses/funnel', spec, signal));
  }

  // A shared link runs its funnel once the event list is in.
  useEffect(() => {
    if (linked && catalogue && !req.data && !req.loading) run();
  }, [catalogue]);

  return (
    <section aria-label="Funnel analysis">
      <ErrorNotice error={metaError} what="Loading the event list" />
      <Form label="Funnel definition" onSubmit={run}>
        <fieldset class="steps">
          <legend>Steps, in order</legend>
          <ol>
            {steps.map((s, i) => (
              <li class="step-card">
                <Select label={`Step ${i + 1} event`} value={s.event} options={eventOptions} onChange={(event) => update(i, { event })} />
                <TextField label={`Step ${i + 1} filter`} value={s.filter} placeholder="optional: category~shoes" onInput={(filter) => update(i, { filter })} />
                <div class="step-buttons">
                  <button type="button" class="icon" disabled={i === 0} onClick={() => move(i, -1)} aria-label={`Move step ${i + 1} earlier`}>←</button>
                  <button type="button" class="icon" disabled={i === steps.length - 1} onClick={() => move(i, 1)} aria-label={`Move step ${i + 1} later`}>→</button>
                  <button type="button" class="icon" disabled={steps.length <= 2} onClick={() => setSteps(steps.filter((_, j) => j !== i))} aria-label={`Remove step ${i + 1}`}>✕</button>
                </div>
              </li>
            ))}
            <li class="step-add">
              <button type="button" onClick={() => setSteps([...steps, { event: '', filter: '' }])}>
                + Add step
              </button>
            </li>
          </ol>
        </fieldset>
        <div class="control-row">
          <TextField label="Conversion window" type="number" min="1" value={windowValue} onInput={setWindowValue} class="narrow" />
          <Select label="Window unit" value={windowUnit} onChange={setWindowUnit} options={[{ value: 'm', label: 'minutes' }, { value: 'h', label: 'hours' }, { value: 'd', label: 'days' }]} />
          <Select
            label="Order"
            value={order}
            onChange={setOrder}
            options={[
              { value: 'loose', label: 'loose (other events allowed between)' },
              { value: 'strict', label: 'strict (another step breaks it)' },
              { value: 'any', label: 'any order' },
            ]}
          />
          <Select label="Breakdown" value={breakdown} onChange={setBreakdown} options={[{ value: '', label: 'none' }, ...(catalogue?.meta.breakdowns || []).map((b) => ({ value: b, label: b }))]} />
          <DateRange value={dates} onChange={setDates} bounds={{ min: catalogue?.meta.date_range.min || undefined, max: catalogue?.meta.date_range.max || undefined }} />
          <button type="submit" class="primary" disabled={!ready || req.loading}>
            {req.loading ? 'Running…' : 'Run funnel'}
          </button>
        </div>
        {!ready && steps.length > 0 && <p class="help">Choose an event for every step (at least two).</p>}
      </Form>
      <ErrorNotice error={req.error} what="The funnel" />
      {req.loading && <Loading>Running the funnel…</Loading>}
      {req.data && <FunnelAnswer result={req.data} group={group} setGroup={setGroup} onPeople={setPeople} />}
      {people && <PeopleBehind query={people} onClose={() => setPeople(null)} />}
    </section>
  );
}

const WHO_WORDS: Record<string, string> = { reached: 'reached', dropped: 'dropped before', in_window: 'still in the window before' };

function FunnelAnswer({ result, group, setGroup, onPeople }: { result: FunnelResult; group: string; setGroup: (g: string) => void; onPeople: (q: PeopleQuery) => void }) {
  const groups = result.data.groups;
  const shown = groups.find((g) => groupName(g) === group) || groups[0];
  const summary = result.summary as Record<string, number | string>;
  const steps = shown?.steps || [];
  const last = steps[steps.length - 1];

  const option = useMemo<ChartOption>(() => funnelChart(steps), [steps]);
  // Where most of those who got to a step were lost before the next (window closed: dropped).
  const worst = steps
    .slice(1)
    .map((step, i) => ({ step, lost: steps[i].people ? Math.round((step.dropped / steps[i].people) * 10000) / 100 : 0 }))
    .filter((d) => d.step.dropped > 0)
    .sort((a, b) => b.lost - a.lost)[0];

  if (!shown || !steps.length) return <Empty>No one did step 1 in these days.</Empty>;

  const rows = groups.flatMap((g) => g.steps.map((s) => ({ ...s, group: groupName(g) })));
  const columns: Column[] = [
    ...(groups.length > 1 ? [{ key: 'group', label: 'Breakdown' }] : []),
    { key: 'step', label: 'Step', numeric: true },
    { key: 'name', label: 'Event' },
    { key: 'people', label: 'People', numeric: true },
    { key: 'pct_of_start', label: '% of step 1', numeric: true, render: (r) => pct(r.pct_of_start) },
    { key: 'pct_of_previous', label: '% of previous', numeric: true, render: (r) => pct(r.pct_of_previous) },
    { key: 'dropped', label: 'Dropped', numeric: true },
    { key: 'in_window', label: 'Still in window', numeric: true },
    { key: 'median_s_from_prev', label: 'Median time from previous', numeric: true, render: (r) => duration(r.median_s_from_prev) },
    { key: 'median_s_from_start', label: 'Median time from step 1', numeric: true, render: (r) => duration(r.median_s_from_start) },
    { key: 'who', label: 'People', render: (r) => (r.group === ALL ? <PeopleButtons step={r as unknown as FunnelStep} /> : <span class="muted">–</span>) },
  ];

  // The people behind a step (the whole funnel's, not one breakdown group's).
  const query = (kind: string, s: FunnelStep): PeopleQuery => ({ analysis: 'funnel', spec: result.spec, who: `${kind}:${s.step}`, label: `${WHO_WORDS[kind]} step ${s.step} (${s.name})` });
  function PeopleButtons({ step }: { step: FunnelStep }) {
    return (
      <span class="nowrap">
        <button type="button" class="small" onClick={() => onPeople(query('reached', step))}>
          Reached<span class="visually-hidden"> step {step.step}: people</span>
        </button>{' '}
        {step.step > 1 && (
          <button type="button" class="small" onClick={() => onPeople(query('dropped', step))}>
            Dropped<span class="visually-hidden"> before step {step.step}: people</span>
          </button>
        )}
      </span>
    );
  }

  return (
    <div class="answer">
      <ul class="cards" aria-label="Funnel summary">
        <li class="card"><span class="card-value">{num(summary.entered)}</span><span class="card-label">entered</span></li>
        <li class="card"><span class="card-value">{num(summary.converted)}</span><span class="card-label">converted</span></li>
        <li class="card"><span class="card-value">{pct(summary.conversion_pct)}</span><span class="card-label">conversion</span></li>
        <li class="card"><span class="card-value">{duration(last?.median_s_from_start)}</span><span class="card-label">median time to convert</span></li>
        <li class="card"><span class="card-value">{num(summary.still_in_window)}</span><span class="card-label">still in window</span></li>
        {worst && (
          <li class="card drop-card">
            <span class="card-value">{pct(worst.lost)}</span>
            <span class="card-label">
              biggest drop-off: {num(worst.step.dropped)} people dropped before step {worst.step.step} ({worst.step.name})
            </span>
          </li>
        )}
      </ul>
      <p class="muted">
        Taken as of <time class="as-of">{String(summary.as_of)}</time> UTC (later events are ignored) · window {String(summary.window)} · {String(summary.order)} order · {num(summary.excluded)} excluded
      </p>
      {groups.length > 1 && (
        <div class="controls compact">
          <Select label="Chart shows" value={groupName(shown)} onChange={setGroup} options={groups.map((g) => ({ value: groupName(g), label: groupName(g) }))} />
        </div>
      )}
      <Chart
        option={option}
        onClick={(p) => {
          const s = steps[p.dataIndex];
          if (!s || groupName(shown) !== ALL) return;
          const kind = ['reached', 'dropped', 'in_window'][p.seriesIndex];
          if (kind) onPeople(query(kind, s));
        }}
        label={`Funnel chart${groups.length > 1 ? ` for ${groupName(shown)}` : ''}: ${steps.map((s) => `step ${s.step} ${s.name} ${s.people} people (${pct(s.pct_of_start)})`).join('; ')}. The table below has every number.`}
      />
      <DataTable caption="Funnel steps" columns={columns} rows={rows} />
      <ul class="notes">
        {result.notes.map((n) => <li>{n}</li>)}
      </ul>
      <SqlDetails sql={result.sql} params={result.params} title="the funnel" />
    </div>
  );
}

function funnelChart(steps: FunnelStep[]): ChartOption {
  const labels = steps.map((s) => `${s.step}. ${s.name}`);
  return {
    grid: { left: 56, right: 16, top: 36, bottom: 40 },
    legend: { top: 0, data: ['Reached', 'Dropped', 'Still in window'] },
    tooltip: {
      trigger: 'axis',
      axisPointer: { type: 'shadow' },
      formatter: (items: { dataIndex: number }[]) => {
        const s = steps[items[0].dataIndex];
        return [
          `${s.step}. ${s.name}`,
          `reached: ${num(s.people)} (${pct(s.pct_of_start)} of step 1)`,
          s.pct_of_previous !== null ? `from previous: ${pct(s.pct_of_previous)}` : '',
          s.step > 1 ? `dropped: ${num(s.dropped)}, still in window: ${num(s.in_window)}` : '',
          s.median_s_from_prev !== null ? `median time from previous: ${duration(s.median_s_from_prev)}` : '',
        ].filter(Boolean);
      },
    },
    xAxis: { type: 'category', data: labels, axisLabel: { interval: 0, overflow: 'truncate', width: 140 } },
    yAxis: { type: 'value', name: 'people' },
    series: [
      {
        name: 'Reached',
        type: 'bar',
        stack: 'funnel',
        data: steps.map((s) => s.people),
        label: { show: true, position: 'insideTop', color: '#fff', lineHeight: 15, formatter: (p: { dataIndex: number }) => `${num(steps[p.dataIndex].people)}\n${pct(steps[p.dataIndex].pct_of_start)}` },
      },
      { name: 'Dropped', type: 'bar', stack: 'funnel', data: steps.map((s) => s.dropped), itemStyle: { color: '#D55E00', opacity: 0.35, decal: { symbol: 'rect', dashArrayX: [1, 0], dashArrayY: [2, 4], rotation: 0.8 } } },
      { name: 'Still in window', type: 'bar', stack: 'funnel', data: steps.map((s) => s.in_window), itemStyle: { color: '#999', opacity: 0.35 } },
    ],
  };
}
