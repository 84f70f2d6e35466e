// Funnels: steps (each with property filters picked from the data), window, order, optional steps,
// exclusions, a held property, a breakdown and its attribution, and days; POST /v1/analyses/funnel;
// a bar funnel (reached, dropped, still inside the window) with conversion and time to convert, the
// breakdown groups side by side, and the table. The URL carries the whole funnel.
import { useEffect, useMemo, useState } from 'preact/hooks';
import { postJson, type AnalysisResult } from '../api';
import { Chart, type ChartOption } from '../components/chart';
import { Checkbox, DateRange, Form, Select, TextField } from '../components/fields';
import { FunnelCompare } from '../components/funnel-compare';
import { ExclusionList, StepFilters } from '../components/funnel-controls';
import { Empty, ErrorNotice, Loading } from '../components/notice';
import { PeopleBehind, type PeopleQuery } from '../components/people-behind';
import { PropertySelect, useProperties } from '../components/property-picker';
import { SqlDetails } from '../components/sql';
import { DataTable, type Column } from '../components/table';
import { useRequest } from '../components/useRequest';
import { duration, num, pct } from '../format';
import { canBeOptional, fromLink, problems, toLink, toSpec, type ExclusionInput, type FunnelGroup, type FunnelState, type FunnelStep, type StepInput } from '../funnel-spec';
import { ALL, breakdownLabel } from '../labels';
import { useCatalogue } from '../meta';
import { useUrlState, type Route } from '../router';

type FunnelResult = AnalysisResult<{ groups: FunnelGroup[] }>;

const PREFERRED = ['page_view', 'product_view', 'add_to_cart', 'begin_checkout', 'purchase'];
const NEW_STEP: StepInput = { event: '', filters: [], optional: false };

const groupName = (g: FunnelGroup) => breakdownLabel(g.breakdown);

export function FunnelsView({ route }: { route: Route }) {
  const { catalogue, error: metaError } = useCatalogue();
  const [linked] = useState(() => fromLink(route.query));
  const [steps, setStepList] = useState<StepInput[]>(linked?.steps || []);
  const [windowValue, setWindowValue] = useState(linked?.window[0] || '7');
  const [windowUnit, setWindowUnit] = useState(linked?.window[1] || 'd');
  const [order, setOrder] = useState(linked?.order || 'loose');
  const [breakdown, setBreakdown] = useState(linked?.breakdown || '');
  const [attribution, setAttribution] = useState(linked?.attribution || 'first');
  const [hold, setHold] = useState(linked?.hold || '');
  const [exclusions, setExclusions] = useState<ExclusionInput[]>(linked?.exclusions || []);
  const [dates, setDates] = useState(linked?.dates || { date_from: '', date_to: '' });
  const [group, setGroup] = useState(ALL);
  const req = useRequest<FunnelResult>();
  const [people, setPeople] = useState<PeopleQuery | null>(null);
  // What step 1's events carry: the held property and the breakdown are read from them.
  const firstProperties = useProperties(steps[0]?.event || '');

  useEffect(() => {
    if (!catalogue) return;
    const names = catalogue.eventNames;
    const first = PREFERRED.find((n) => names.includes(n)) || names[0] || '';
    setStepList((s) => (s.length ? s : [{ ...NEW_STEP, event: first }, { ...NEW_STEP }]));
    const range = catalogue.meta.date_range;
    setDates((d) => (d.date_from ? d : { date_from: range.min || '', date_to: range.max || '' }));
  }, [catalogue]);

  const state: FunnelState = { steps, window: [windowValue, windowUnit], order, breakdown, attribution, hold, exclusions, dates };
  // Once a funnel has run (or came from a link), the address holds the whole form as it is edited:
  // a reload or a shared link opens and runs it. Before that, #/funnels stays as it was opened.
  const [ran, setRan] = useState(!!linked);
  useUrlState(route, ran ? toLink(state) : {});
  const blockers = problems(state);
  const ready = blockers.length === 0;
  const eventOptions = [{ value: '', label: 'Choose an event…' }, ...(catalogue?.eventNames || []).map((n) => ({ value: n, label: n }))];
  const counts = useMemo(() => new Map(firstProperties.map((p) => [p.name, p.events])), [firstProperties]);
  const breakdownNames = useMemo(() => [...new Set([...(catalogue?.meta.breakdowns || []), ...firstProperties.map((p) => p.name)])], [catalogue, firstProperties]);

  /** New steps: exclusions keep to steps that exist. */
  function setSteps(next: StepInput[]) {
    setStepList(next);
    const n = next.length;
    setExclusions((xs) => xs.map((x) => ({ ...x, to: Math.min(Math.max(x.to, 2), n), from: Math.min(x.from, Math.min(Math.max(x.to, 2), n) - 1) })));
  }

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
    setRan(true);
    setGroup(ALL);
    setPeople(null);
    const spec = toSpec(state);
    // The answer's spec writes steps and exclusions as text ("event:prop=value"), which a value
    // holding a comma would not survive; the people behind a figure are asked with the objects sent.
    req.run((signal) => postJson<FunnelResult>('/v1/analyses/funnel', spec, signal).then((r) => ({ ...r, spec: { ...r.spec, steps: spec.steps, exclude: spec.exclude } })));
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
                <Select label={`Step ${i + 1} event`} value={s.event} options={eventOptions} onChange={(event) => update(i, { event, filters: event === s.event ? s.filters : [] })} />
                <StepFilters n={i + 1} event={s.event} filters={s.filters} onChange={(filters) => update(i, { filters })} />
                {canBeOptional(i, steps.length, order) && <Checkbox label={`Step ${i + 1} optional`} checked={s.optional} onChange={(optional) => update(i, { optional })} />}
                <div class="step-buttons">
                  <button type="button" class="icon" disabled={i === 0} onClick={() => move(i, -1)} aria-label={`Move step ${i + 1} earlier`}>←</button>
                  <button type="button" class="icon" disabled={i === steps.length - 1} onClick={() => move(i, 1)} aria-label={`Move step ${i + 1} later`}>→</button>
                  <button type="button" class="icon" disabled={steps.length <= 2} onClick={() => setSteps(steps.filter((_, j) => j !== i))} aria-label={`Remove step ${i + 1}`}>✕</button>
                </div>
              </li>
            ))}
            <li class="step-add">
              <button type="button" onClick={() => setSteps([...steps, { ...NEW_STEP }])}>
                + Add step
              </button>
            </li>
          </ol>
        </fieldset>
        <ExclusionList exclusions={exclusions} steps={steps.length} eventOptions={eventOptions} onChange={setExclusions} />
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
              { value: 'any', label: 'any order (no optional steps)' },
            ]}
          />
          <PropertySelect label="Hold constant" value={hold} names={firstProperties.map((p) => p.name)} counts={counts} empty="nothing held" onChange={setHold} />
          <PropertySelect label="Breakdown" value={breakdown} names={breakdownNames} counts={counts} empty="none" searchable onChange={setBreakdown} />
          <Select
            label="Breakdown attribution"
            value={attribution}
            onChange={setAttribution}
            disabled={!breakdown}
            options={[
              { value: 'first', label: 'first touch (step 1 event)' },
              { value: 'last', label: 'last touch (last step reached)' },
            ]}
          />
          <DateRange value={dates} onChange={setDates} bounds={{ min: catalogue?.meta.date_range.min || undefined, max: catalogue?.meta.date_range.max || undefined }} />
          <button type="submit" class="primary" disabled={!ready || req.loading}>
            {req.loading ? 'Running…' : 'Run funnel'}
          </button>
        </div>
        {!ready && steps.length > 0 && (
          <ul class="help">
            {blockers.map((b) => <li>{b}</li>)}
          </ul>
        )}
      </Form>
      <ErrorNotice error={req.error} what="The funnel" />
      {req.loading && <Loading>Running the funnel…</Loading>}
      {/* A new answer replaces the old one: figures never stand beside controls they do not answer. */}
      {req.data && !req.loading && <FunnelAnswer result={req.data} group={group} setGroup={setGroup} onPeople={setPeople} />}
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
      <FunnelCompare groups={groups} />
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
