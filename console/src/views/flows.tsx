// User flows: the steps sessions take after a start page/event or before an end one
// (POST /v1/analyses/flows), as a flow diagram and a table per step; each node opens its people.
import { useEffect, useMemo, useState } from 'preact/hooks';
import { postJson, type AnalysisResult } from '../api';
import { Chart, type ChartOption } from '../components/chart';
import { Checkbox, Choice, DateRange, Form, Select, TextField, type DateWindow } from '../components/fields';
import { Empty, ErrorNotice, Loading } from '../components/notice';
import { PeopleBehind, type PeopleQuery } from '../components/people-behind';
import { SqlDetails } from '../components/sql';
import { DataTable, type Column, type Row } from '../components/table';
import { useRequest } from '../components/useRequest';
import { num, pct } from '../format';
import { useCatalogue } from '../meta';
import { usePages } from '../pages';
import { useUrlState, type Route } from '../router';

interface FlowNode {
  step: number;
  node: string;
  sessions: number;
  exits: number;
  converted: number;
  exit_pct: number;
  conversion_pct: number;
}

type FlowsResult = AnalysisResult<{ nodes: FlowNode[]; edges: { step: number; from: string; to: string; sessions: number }[] }>;

export function FlowsView({ route }: { route: Route }) {
  const { catalogue, error: metaError } = useCatalogue();
  const pages = usePages();
  // The URL holds the whole form (#/flows?start=/cart&steps=4&nodes=views&collapse=1&…), so a
  // reload, a shared link or a saved insight follows the same sessions.
  const q = route.query;
  const [anchor, setAnchor] = useState(q.get('end') && !q.get('start') ? 'end' : 'start');
  const [node, setNode] = useState(q.get('start') || q.get('end') || '');
  const [nodes, setNodes] = useState(q.get('nodes') === 'events' ? 'events' : 'views');
  const [steps, setSteps] = useState(q.get('steps') || '4');
  const [collapse, setCollapse] = useState(q.get('collapse') !== '0');
  const [conversion, setConversion] = useState(q.get('conversion') || 'purchase');
  const [dates, setDates] = useState<DateWindow>({ date_from: q.get('from') || '', date_to: q.get('to') || '' });
  useUrlState(route, { [anchor]: node, steps, nodes, collapse: collapse ? '1' : '0', conversion, from: dates.date_from, to: dates.date_to });
  const [people, setPeople] = useState<PeopleQuery | null>(null);
  const req = useRequest<FlowsResult>();

  useEffect(() => {
    if (!catalogue) return;
    const range = catalogue.meta.date_range;
    setDates((d) => (d.date_from ? d : { date_from: range.min || '', date_to: range.max || '' }));
  }, [catalogue]);
  useEffect(() => {
    if (!node && pages.pages.length) setNode(pages.pages[0].page);
  }, [pages.pages]);

  function run() {
    if (!node.trim()) return;
    setPeople(null);
    const spec = {
      [anchor]: node.trim(),
      steps: Math.max(2, Number(steps) || 4),
      nodes,
      collapse,
      conversion,
      top: 8,
      date_from: dates.date_from || null,
      date_to: dates.date_to || null,
    };
    req.run((signal) => postJson<FlowsResult>('/v1/analyses/flows', spec, signal));
  }
  useEffect(() => {
    if (catalogue && node && dates.date_from && !req.data && !req.loading) run();
  }, [catalogue, node, dates.date_from]);

  return (
    <section aria-label="User flows">
      <ErrorNotice error={metaError} what="Loading the event list" />
      <Form label="Flow definition" onSubmit={run}>
        <div class="control-row">
          <Choice legend="Follow sessions" name="flow-anchor" value={anchor} onChange={setAnchor} options={[{ value: 'start', label: 'from' }, { value: 'end', label: 'up to' }]} />
          <TextField label="Page, screen or event" value={node} list="flows-pages" required onInput={setNode} class="wide" />
          <datalist id="flows-pages">{pages.pages.map((p) => <option value={p.page}>{`${num(p.views)} views`}</option>)}</datalist>
          <Select label="Nodes are" value={nodes} onChange={setNodes} options={[{ value: 'views', label: 'pages and screens' }, { value: 'events', label: 'events' }]} />
          <TextField label="Steps" type="number" min="2" max="10" value={steps} onInput={setSteps} class="narrow" />
          <Checkbox label="Count back-to-back repeats once" checked={collapse} onChange={setCollapse} />
          <Select label="Conversion event" value={conversion} onChange={setConversion} options={(catalogue?.eventNames || [conversion]).map((n) => ({ value: n, label: n }))} />
          <DateRange value={dates} onChange={setDates} />
          <button type="submit" class="primary" disabled={!node.trim() || req.loading}>
            {req.loading ? 'Running…' : 'Show flows'}
          </button>
        </div>
      </Form>
      <ErrorNotice error={pages.error} what="Loading page suggestions" />
      <ErrorNotice error={req.error} what="User flows" />
      {req.loading && !req.data && <Loading>Following sessions…</Loading>}
      {req.data && <FlowsAnswer result={req.data} onPeople={setPeople} />}
      {people && <PeopleBehind query={people} onClose={() => setPeople(null)} />}
    </section>
  );
}

// One line of a node label (px); the chart grows with the busiest column so that every node of it
// gets at least a label's height plus the gap.
const LABEL_LINE = 14;

export function sankeyHeight(nodes: FlowNode[]): number {
  const perStep = new Map<number, number>();
  for (const n of nodes) perStep.set(n.step, (perStep.get(n.step) || 0) + 1);
  const busiest = Math.max(0, ...perStep.values());
  return Math.max(380, busiest * (2 * LABEL_LINE + 2) + 20);
}

function FlowsAnswer({ result, onPeople }: { result: FlowsResult; onPeople: (q: PeopleQuery) => void }) {
  const { nodes, edges } = result.data;
  const option = useMemo<ChartOption>(() => {
    const id = (step: number, name: string) => `${step}\u2003${name}`;
    const steps = [...new Set(nodes.map((n) => n.step))].sort((a, b) => a - b);
    const next = (step: number) => steps[steps.indexOf(step) + 1];
    return {
      tooltip: { trigger: 'item', formatter: (p: { data: { source?: string; target?: string; value?: number; name?: string } }) => (p.data.source ? `${p.data.source.split('\u2003')[1]} → ${p.data.target!.split('\u2003')[1]}: ${num(p.data.value)} sessions` : String(p.data.name).split('\u2003')[1]) },
      series: [
        {
          type: 'sankey',
          left: 8,
          right: 140,
          top: 10,
          bottom: 10,
          // A label is centred on its node and one line tall: a gap of at least a line between the
          // nodes of a column keeps their labels apart, however thin the nodes are.
          nodeGap: LABEL_LINE + 2,
          layoutIterations: 0,
          data: nodes.map((n) => ({ name: id(n.step, n.node), depth: steps.indexOf(n.step) })),
          links: edges.filter((e) => next(e.step) !== undefined && nodes.some((n) => n.step === next(e.step) && n.node === e.to)).map((e) => ({ source: id(e.step, e.from), target: id(next(e.step), e.to), value: e.sessions })),
          label: { formatter: (p: { name: string }) => p.name.split('\u2003')[1], fontSize: 11, lineHeight: LABEL_LINE, width: 130, overflow: 'truncate', ellipsis: '…' },
          lineStyle: { color: 'gradient', opacity: 0.35 },
        },
      ],
    };
  }, [result]);
  if (!nodes.length) return <Empty>No session reached {String(result.spec.start || result.spec.end)} in these days.</Empty>;

  const columns: Column[] = [
    { key: 'step', label: 'Step', numeric: true },
    { key: 'node', label: 'Node', render: (r) => <span class={String(r.node).startsWith('(') ? 'special' : undefined}>{String(r.node)}</span> },
    { key: 'sessions', label: 'Sessions', numeric: true },
    { key: 'exits', label: 'Exits', numeric: true },
    { key: 'exit_pct', label: 'Exit %', numeric: true, render: (r) => pct(r.exit_pct) },
    { key: 'converted', label: 'Converted', numeric: true },
    { key: 'conversion_pct', label: 'Conversion', numeric: true, render: (r) => pct(r.conversion_pct) },
    {
      key: 'who',
      label: 'People',
      render: (r) =>
        r.node === '(other)' ? (
          <span class="muted">–</span>
        ) : (
          <button type="button" class="small" onClick={() => onPeople({ analysis: 'flows', spec: result.spec, who: `at:${r.step}:${r.node}`, label: `at ${r.node}, step ${r.step}` })}>
            People<span class="visually-hidden"> at {String(r.node)}, step {String(r.step)}</span>
          </button>
        ),
    },
  ];
  return (
    <div class="answer">
      <ul class="cards" aria-label="Flows summary">
        <li class="card"><span class="card-value">{num(result.summary.sessions)}</span><span class="card-label">sessions</span></li>
        <li class="card"><span class="card-value">{num(result.summary.steps)}</span><span class="card-label">steps</span></li>
      </ul>
      <Chart option={option} height={sankeyHeight(nodes)} label={`User flow over ${String(result.summary.steps)} steps of ${num(result.summary.sessions)} sessions. The table below has every node.`} />
      <DataTable caption="Flow nodes by step" columns={columns} rows={nodes as unknown as Row[]} />
      <ul class="notes">{result.notes.map((n) => <li>{n}</li>)}</ul>
      <SqlDetails sql={result.sql} params={result.params} title="the flows" />
    </div>
  );
}
