// Correlation: events and entry property values over- or under-represented among the people who
// converted in a funnel or came back in a retention period (POST /v1/analyses/correlation).
import { useEffect, useState } from 'preact/hooks';
import { postJson, type AnalysisResult } from '../api';
import { Choice, DateRange, Form, Select, TextField, type DateWindow } from '../components/fields';
import { PropertySelect, useProperties } from '../components/property-picker';
import { Empty, ErrorNotice, Loading } from '../components/notice';
import { SqlDetails } from '../components/sql';
import { DataTable, rowsOf, type Column } from '../components/table';
import { useRequest } from '../components/useRequest';
import { num } from '../format';
import { NONE, valueLabel } from '../labels';
import { useCatalogue } from '../meta';
import { jsonParam, useUrlState, type Route } from '../router';

const PREFERRED = ['product_view', 'add_to_cart', 'purchase'];

const validSteps = (v: unknown) => Array.isArray(v) && v.length === 3 && v.every((x) => typeof x === 'string');
// The analysis compares at most this many properties (MAX_PROPERTIES in analyses/correlation.py).
const MAX_PROPERTIES = 10;

/** The properties of the address: a JSON list, or the comma-separated text of earlier links. */
function propertiesParam(query: URLSearchParams): string[] {
  const text = query.get('properties');
  if (text === null) return ['device_type', 'utm_source'];
  const list = text.trim().startsWith('[') ? jsonParam<string[]>(query, 'properties', [], (v) => Array.isArray(v) && v.every((x) => typeof x === 'string')) : text.split(',');
  return [...new Set(list.map((p) => p.trim()).filter(Boolean))].slice(0, MAX_PROPERTIES);
}

export function CorrelationView({ route }: { route: Route }) {
  const { catalogue, error: metaError } = useCatalogue();
  // The URL holds the form (#/correlation?source=…&steps=…): a reload or a shared link compares the same.
  const q = route.query;
  const [source, setSource] = useState(q.get('source') === 'retention' ? 'retention' : 'funnel');
  const [steps, setSteps] = useState<string[]>(() => jsonParam(q, 'steps', ['', '', ''], validSteps));
  const [window, setWindow] = useState(q.get('window') || '2d');
  const [period, setPeriod] = useState(q.get('period') || 'week');
  const [retained, setRetained] = useState(q.get('retained') || '1');
  const [properties, setProperties] = useState<string[]>(() => propertiesParam(q));
  const [dates, setDates] = useState<DateWindow>({ date_from: q.get('from') || '', date_to: q.get('to') || '' });
  const funnel = source === 'funnel';
  useUrlState(route, { source, steps: funnel && steps.some(Boolean) ? JSON.stringify(steps) : '', window: funnel ? window : '', period: funnel ? '' : period, retained: funnel ? '' : retained, properties: JSON.stringify(properties), from: dates.date_from, to: dates.date_to });
  const req = useRequest<AnalysisResult>();
  // Entry properties are read on the entry event: the funnel's first step, or (a first-seen
  // cohort) a person's first event of any kind.
  const offered = useProperties(funnel ? steps[0] || '' : '');

  useEffect(() => {
    if (!catalogue) return;
    const range = catalogue.meta.date_range;
    setDates((d) => (d.date_from ? d : { date_from: range.min || '', date_to: range.max || '' }));
    setSteps((s) => (s.some(Boolean) ? s : PREFERRED.map((p, i) => (catalogue.eventNames.includes(p) ? p : catalogue.eventNames[i] || ''))));
  }, [catalogue]);

  function run() {
    const dateSpec = { date_from: dates.date_from || null, date_to: dates.date_to || null };
    const props = properties;
    const spec =
      source === 'funnel'
        ? { funnel: { steps: steps.filter(Boolean), window, ...dateSpec }, properties: props }
        : { retention: { cohort: 'first_seen', period, ...dateSpec }, retained_period: Math.max(1, Number(retained) || 1), properties: props };
    req.run((signal) => postJson<AnalysisResult>('/v1/analyses/correlation', spec, signal));
  }
  useEffect(() => {
    if (catalogue && dates.date_from && steps.some(Boolean) && !req.data && !req.loading) run();
  }, [catalogue, dates.date_from, steps.join()]);

  const events = [{ value: '', label: NONE }, ...(catalogue?.eventNames || []).map((n) => ({ value: n, label: n }))];
  return (
    <section aria-label="Correlation analysis">
      <ErrorNotice error={metaError} what="Loading the event list" />
      <Form label="Correlation definition" onSubmit={run}>
        <div class="control-row">
          <Choice legend="Success means" name="correlation-source" value={source} onChange={setSource} options={[{ value: 'funnel', label: 'converted in a funnel' }, { value: 'retention', label: 'came back (retention)' }]} />
          {source === 'funnel' ? (
            <>
              {steps.map((s, i) => (
                <Select label={`Step ${i + 1}`} value={s} options={events} onChange={(v) => setSteps(steps.map((x, j) => (j === i ? v : x)))} />
              ))}
              <TextField label="Window" value={window} onInput={setWindow} class="narrow" placeholder="2d" />
            </>
          ) : (
            <>
              <Select label="Cohort period" value={period} onChange={setPeriod} options={[{ value: 'day', label: 'day' }, { value: 'week', label: 'week' }, { value: 'month', label: 'month' }]} />
              <TextField label="Came back in period" type="number" min="1" value={retained} onInput={setRetained} class="narrow" />
            </>
          )}
          <PropertyList chosen={properties} offered={offered.map((p) => p.name)} counts={new Map(offered.map((p) => [p.name, p.events]))} onChange={setProperties} />
          <DateRange value={dates} onChange={setDates} />
          <button type="submit" class="primary" disabled={req.loading}>
            {req.loading ? 'Running…' : 'Find correlations'}
          </button>
        </div>
      </Form>
      <ErrorNotice error={req.error} what="Correlation" />
      {req.loading && !req.data && <Loading>Comparing successes and failures…</Loading>}
      {req.data && <CorrelationAnswer result={req.data} />}
    </section>
  );
}

/** The properties to compare: each chosen one with a button to drop it, and a picker to add one. */
function PropertyList({ chosen, offered, counts, onChange }: { chosen: string[]; offered: string[]; counts: Map<string, number>; onChange: (v: string[]) => void }) {
  const full = chosen.length >= MAX_PROPERTIES;
  return (
    <div class="field">
      <span class="field-label" aria-hidden="true">Properties compared</span>
      <ul aria-label="Properties compared" style={{ listStyle: 'none', padding: 0, margin: '0 0 0.3rem' }}>
        {chosen.map((p) => (
          <li class="id-chip">
            <span style={{ marginRight: '0.3rem' }}>{p}</span>
            <button type="button" class="small" onClick={() => onChange(chosen.filter((x) => x !== p))}>
              ×<span class="visually-hidden"> Stop comparing {p}</span>
            </button>
          </li>
        ))}
        {!chosen.length && <li class="muted">events only</li>}
      </ul>
      <PropertySelect
        label={full ? `Compare a property (at most ${MAX_PROPERTIES})` : 'Compare a property'}
        value=""
        names={offered.filter((n) => !chosen.includes(n))}
        counts={counts}
        empty="add a property…"
        searchable
        disabled={full}
        onChange={(v) => v && onChange([...chosen, v])}
      />
    </div>
  );
}

function CorrelationAnswer({ result }: { result: AnalysisResult }) {
  const rows = rowsOf(result.columns, result.rows);
  const s = result.summary;
  const columns: Column[] = [
    { key: 'name', label: 'Candidate', render: (r) => (r.kind === 'property' ? `${r.property} = ${valueLabel(r.name)}` : `did ${r.name}`) },
    { key: 'direction', label: 'Among successes', render: (r) => (r.direction === 'positive' ? '▲ over-represented' : '▼ under-represented') },
    { key: 'odds_ratio', label: 'Odds ratio', numeric: true, sortable: true },
    { key: 'p_value', label: 'p', numeric: true, sortable: true, render: (r) => (Number(r.p_value) < 0.001 ? '< 0.001' : Number(r.p_value).toFixed(3)) },
    { key: 'significant', label: 'Significant', render: (r) => (Number(r.p_value) < 0.05 ? 'yes (p < 0.05)' : 'no') },
    { key: 'success_with', label: 'Successes with', numeric: true },
    { key: 'failure_with', label: 'Failures with', numeric: true },
    { key: 'success_without', label: 'Successes without', numeric: true },
    { key: 'failure_without', label: 'Failures without', numeric: true },
  ];
  return (
    <div class="answer">
      <ul class="cards" aria-label="Correlation summary">
        <li class="card"><span class="card-value">{num(s.success)}</span><span class="card-label">successes</span></li>
        <li class="card"><span class="card-value">{num(s.failure)}</span><span class="card-label">failures</span></li>
        <li class="card"><span class="card-value">{num(s.candidates)}</span><span class="card-label">candidates compared</span></li>
      </ul>
      {rows.length ? <DataTable caption="Correlated events and values, significant first" columns={columns} rows={rows} /> : <Empty>No candidate to compare: no one succeeded or failed in these days.</Empty>}
      <ul class="notes">{result.notes.map((n) => <li>{n}</li>)}</ul>
      <SqlDetails sql={result.sql} params={result.params} title="the correlation" />
    </div>
  );
}
