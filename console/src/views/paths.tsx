// Paths: where people came from and go next around one page or screen (POST /v1/analyses/paths),
// as a flow diagram and as ranked lists with conversion vs. exit.
import { useEffect, useMemo, useState } from 'preact/hooks';
import { postJson, type AnalysisResult } from '../api';
import { Chart, type ChartOption } from '../components/chart';
import { DateRange, Form, Select, TextField, type DateWindow } from '../components/fields';
import { Empty, ErrorNotice, Loading } from '../components/notice';
import { PeopleBehind, type PeopleQuery } from '../components/people-behind';
import { SqlDetails } from '../components/sql';
import { DataTable, type Column, type Row } from '../components/table';
import { useRequest } from '../components/useRequest';
import { num, pct } from '../format';
import { useCatalogue } from '../meta';
import { usePages } from '../pages';
import { useUrlState, type Route } from '../router';

interface Neighbour {
  page: string;
  views: number;
  sessions: number;
  people: number;
  converted_sessions: number;
}

type PathsResult = AnalysisResult<{ came_from: Neighbour[]; went_to: Neighbour[] }>;

export function PathsView({ route }: { route: Route }) {
  const { catalogue, error: metaError } = useCatalogue();
  const pages = usePages();
  // Links from other views (home, page report) name the page: #/paths?page=/cart
  const q = route.query;
  const [page, setPage] = useState(q.get('page') || '');
  const [conversion, setConversion] = useState(q.get('conversion') || 'purchase');
  const [top, setTop] = useState(q.get('top') || '10');
  const [dates, setDates] = useState<DateWindow>({ date_from: q.get('from') || '', date_to: q.get('to') || '' });
  // The URL holds the whole form, so a reload or a shared link follows the same page.
  useUrlState(route, { page, conversion, top, from: dates.date_from, to: dates.date_to });
  const req = useRequest<PathsResult>();
  const [people, setPeople] = useState<PeopleQuery | null>(null);

  useEffect(() => {
    if (!catalogue) return;
    const range = catalogue.meta.date_range;
    setDates((d) => (d.date_from ? d : { date_from: range.min || '', date_to: range.max || '' }));
    if (!catalogue.eventNames.includes('purchase')) setConversion((c) => c || catalogue.eventNames[0] || '');
  }, [catalogue]);

  // The most viewed page is a good first answer: run it without waiting for a click.
  const [started, setStarted] = useState(false);
  useEffect(() => {
    if (started || !catalogue || !pages.pages.length) return;
    setStarted(true);
    if (!page) setPage(pages.pages[0].page);
  }, [pages.pages, catalogue]);
  useEffect(() => {
    if (started && page && !req.data && !req.loading) run();
  }, [started]);

  function run() {
    if (!page.trim()) return;
    req.run((signal) =>
      postJson<PathsResult>(
        '/v1/analyses/paths',
        { page: page.trim(), conversion, top: Math.max(1, Number(top) || 10), date_from: dates.date_from || null, date_to: dates.date_to || null },
        signal,
      ),
    );
  }

  return (
    <section aria-label="Path analysis">
      <ErrorNotice error={metaError} what="Loading the event list" />
      <Form label="Path definition" onSubmit={run}>
        <div class="control-row">
          <TextField label="Page path or screen name" value={page} list="paths-pages" placeholder="/cart" required onInput={setPage} class="wide" />
          <datalist id="paths-pages">{pages.pages.map((p) => <option value={p.page}>{`${num(p.views)} views`}</option>)}</datalist>
          <Select label="Conversion event" value={conversion} onChange={setConversion} options={(catalogue?.eventNames || [conversion]).map((n) => ({ value: n, label: n }))} />
          <TextField label="Top pages each side" type="number" min="1" max="50" value={top} onInput={setTop} class="narrow" />
          <DateRange value={dates} onChange={setDates} />
          <button type="submit" class="primary" disabled={!page.trim() || req.loading}>
            {req.loading ? 'Running…' : 'Show paths'}
          </button>
        </div>
      </Form>
      <ErrorNotice error={pages.error} what="Loading page suggestions" />
      <ErrorNotice error={req.error} what="Paths" />
      {req.loading && <Loading>Following sessions…</Loading>}
      {req.data && <PathsAnswer result={req.data} onPeople={setPeople} />}
      {people && <PeopleBehind query={people} onClose={() => setPeople(null)} />}
    </section>
  );
}

const PATH_WHO: [string, string][] = [
  ['viewed', 'viewed'],
  ['exited', 'left the site from'],
  ['converted', 'converted after viewing'],
];

function PathsAnswer({ result, onPeople }: { result: PathsResult; onPeople: (q: PeopleQuery) => void }) {
  const s = result.summary as Record<string, unknown>;
  const page = String(s.page);
  const option = useMemo(() => sankey(page, result.data.came_from, result.data.went_to), [result]);
  if (!Number(s.views)) return <Empty>No views of {page} in these days.</Empty>;

  const columns = (side: string): Column[] => [
    { key: 'page', label: side, render: (r) => <span class={String(r.page).startsWith('(') ? 'special' : undefined}>{String(r.page)}</span> },
    { key: 'views', label: 'Views', numeric: true, sortable: true },
    { key: 'share', label: '% of views', numeric: true, sortable: true, render: (r) => pct(r.share) },
    { key: 'sessions', label: 'Sessions', numeric: true, sortable: true },
    { key: 'people', label: 'People', numeric: true, sortable: true },
    { key: 'converted_sessions', label: 'Converted sessions', numeric: true, sortable: true },
    { key: 'conversion', label: 'Conversion', numeric: true, sortable: true, render: (r) => <ConversionBar value={r.conversion as number | null} /> },
  ];
  const rows = (list: Neighbour[]): Row[] =>
    list.map((n) => ({ ...n, share: Number(s.views) ? Math.round((n.views / Number(s.views)) * 10000) / 100 : null, conversion: n.sessions ? Math.round((n.converted_sessions / n.sessions) * 10000) / 100 : null }));

  return (
    <div class="answer">
      <ul class="cards" aria-label="Paths summary">
        <li class="card"><span class="card-value">{num(s.views)}</span><span class="card-label">views of {page}</span></li>
        <li class="card"><span class="card-value">{num(s.sessions)}</span><span class="card-label">sessions</span></li>
        <li class="card"><span class="card-value">{pct(s.conversion_pct)}</span><span class="card-label">sessions converted after it</span></li>
        <li class="card"><span class="card-value">{pct(s.exit_pct)}</span><span class="card-label">exit here ({num(s.exits)} views)</span></li>
        <li class="card"><span class="card-value">{num(s.entrances)}</span><span class="card-label">entrances</span></li>
      </ul>
      <div class="row-buttons" role="group" aria-label={`People around ${page}`}>
        {PATH_WHO.map(([who, words]) => (
          <button type="button" onClick={() => onPeople({ analysis: 'paths', spec: result.spec, who, label: `${words} ${page}` })}>
            People who {words} {page}
          </button>
        ))}
      </div>
      <Chart option={option} height={360} label={`Flow through ${page}: ${num(s.views)} views; came from ${result.data.came_from.slice(0, 3).map((n) => `${n.page} ${n.views}`).join(', ')}; went to ${result.data.went_to.slice(0, 3).map((n) => `${n.page} ${n.views}`).join(', ')}. The tables below have every number.`} />
      <div class="two-col">
        <DataTable caption={`Next steps after ${page}`} columns={columns('Went to')} rows={rows(result.data.went_to)} />
        <DataTable caption={`Came to ${page} from`} columns={columns('Came from')} rows={rows(result.data.came_from)} />
      </div>
      <ul class="notes">{result.notes.map((n) => <li>{n}</li>)}</ul>
      <SqlDetails sql={result.sql} params={result.params} title="paths" />
    </div>
  );
}

function ConversionBar({ value }: { value: number | null }) {
  if (value === null) return <span class="muted">–</span>;
  return (
    <span class="bar-cell">
      <span class="bar" style={{ width: `${Math.min(100, value)}%` }} aria-hidden="true" />
      {pct(value)}
    </span>
  );
}

// Node names must be unique and the graph acyclic, so each side gets its own prefix; labels drop it.
function sankey(page: string, cameFrom: Neighbour[], wentTo: Neighbour[]): ChartOption {
  const centre = `●${page}`;
  const nodes = [
    ...cameFrom.map((n) => ({ name: `←${n.page}`, depth: 0 })),
    { name: centre, depth: 1, itemStyle: { color: '#0072B2' } },
    ...wentTo.map((n) => ({ name: `→${n.page}`, depth: 2, itemStyle: n.page === '(exit)' ? { color: '#D55E00' } : undefined })),
  ];
  const links = [
    ...cameFrom.map((n) => ({ source: `←${n.page}`, target: centre, value: n.views })),
    ...wentTo.map((n) => ({ source: centre, target: `→${n.page}`, value: n.views })),
  ];
  return {
    tooltip: { trigger: 'item', formatter: (p: { data: { source?: string; target?: string; value?: number; name?: string } }) => (p.data.source ? `${p.data.source.slice(1)} → ${p.data.target!.slice(1)}: ${num(p.data.value)} views` : p.data.name!.slice(1)) },
    series: [
      {
        type: 'sankey',
        left: 8,
        right: 150,
        top: 10,
        bottom: 10,
        nodeGap: 6,
        layoutIterations: 0,
        emphasis: { focus: 'adjacency' },
        data: nodes,
        links,
        label: { formatter: (p: { name: string }) => p.name.slice(1), fontSize: 11 },
        lineStyle: { color: 'gradient', opacity: 0.35 },
      },
    ],
  };
}
