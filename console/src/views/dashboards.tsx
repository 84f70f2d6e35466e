// Dashboards: #/dashboards lists them (and the saved insights) and creates one; #/dashboards?id=N
// shows one, its id in the address so the link can be shared. Each card mounts the insight's own
// view from its saved route in a compact mode (no form: chart, table and numbers), with a link to
// open it full size; insights are added, removed and moved from here, and the dashboard renamed.
import { useEffect, useState } from 'preact/hooks';
import { analysisView } from '../analysis-views';
import { Select, TextField } from '../components/fields';
import { Empty, ErrorNotice, Loading } from '../components/notice';
import { DataTable, type Column } from '../components/table';
import { createDashboard, deleteDashboard, deleteInsight, getDashboard, insightLink, listDashboards, listInsights, updateDashboard, type Dashboard, type Insight } from '../insights';
import { href, type Route } from '../router';

export function DashboardsView({ route }: { route: Route }) {
  // Views in cards get an embedded route: useUrlState leaves the dashboard's address alone.
  const id = Number(route.query.get('id'));
  return Number.isInteger(id) && id > 0 ? <DashboardPage id={id} key={id} /> : <DashboardList />;
}

/** Loads with `load` on mount and whenever `reload` is called; an older answer never wins. */
function useData<T>(load: () => Promise<T>): { data: T | null; error: unknown; reload: () => void } {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [turn, setTurn] = useState(0);
  useEffect(() => {
    let live = true;
    load().then(
      (d) => {
        if (!live) return;
        setData(d);
        setError(null);
      },
      (e) => live && setError(e),
    );
    return () => {
      live = false;
    };
  }, [turn]);
  return { data, error, reload: () => setTurn((t) => t + 1) };
}

const viewTitle = (path: string) => analysisView(path)?.title || path;

function DashboardList() {
  const boards = useData(listDashboards);
  const insights = useData(() => listInsights());
  const [name, setName] = useState('');
  const [error, setError] = useState<unknown>(null);

  async function create() {
    if (!name.trim()) return;
    setError(null);
    try {
      const board = await createDashboard(name.trim());
      location.hash = href('/dashboards', { id: String(board.id) });
    } catch (err) {
      setError(err);
    }
  }

  async function remove(insight: Insight) {
    setError(null);
    try {
      await deleteInsight(insight.id);
      insights.reload();
      boards.reload(); // the server took it off every dashboard: their counts change
    } catch (err) {
      setError(err);
    }
  }

  const boardColumns: Column[] = [
    { key: 'name', label: 'Dashboard', render: (r) => <a href={href('/dashboards', { id: String(r.id) })}>{String(r.name)}</a> },
    { key: 'cards', label: 'Insights', numeric: true },
    { key: 'updated_at', label: 'Changed (UTC)' },
  ];
  const insightColumns: Column[] = [
    { key: 'name', label: 'Insight', render: (r) => <a href={insightLink(r as unknown as Insight)}>{String(r.name)}</a> },
    { key: 'view', label: 'View' },
    { key: 'updated_at', label: 'Saved (UTC)' },
    {
      key: 'delete',
      label: 'Delete',
      render: (r) => (
        <button type="button" class="small" onClick={() => remove(r as unknown as Insight)}>
          Delete<span class="visually-hidden"> insight {String(r.name)}</span>
        </button>
      ),
    },
  ];

  return (
    <section aria-label="Dashboards and saved insights">
      <form
        class="controls"
        aria-label="New dashboard"
        onSubmit={(e) => {
          e.preventDefault();
          create();
        }}
      >
        <TextField label="Dashboard name" value={name} onInput={setName} required class="wide" />
        <button type="submit" class="primary" disabled={!name.trim()}>
          Create dashboard
        </button>
      </form>
      <ErrorNotice error={error} what="The change" />
      <h2>Dashboards</h2>
      <ErrorNotice error={boards.error} what="Loading dashboards" />
      {!boards.data && !boards.error && <Loading />}
      {boards.data && (
        <DataTable caption="Dashboards" hideCaption columns={boardColumns} rows={boards.data.map((b) => ({ ...b, cards: b.insight_ids.length }))} empty="No dashboard yet: name one above." />
      )}
      <h2>Saved insights</h2>
      <p class="muted">Save one with “Save insight” on any analysis view; then add it to a dashboard.</p>
      <ErrorNotice error={insights.error} what="Loading insights" />
      {insights.data && (
        <DataTable caption="Saved insights" hideCaption columns={insightColumns} rows={insights.data.map((i) => ({ ...i, view: viewTitle(i.path) }))} empty="No insight saved yet." />
      )}
    </section>
  );
}

function DashboardPage({ id }: { id: number }) {
  const board = useData(() => getDashboard(id));
  const insights = useData(() => listInsights());
  const [shown, setShown] = useState<Dashboard | null>(null);
  const [adding, setAdding] = useState('');
  const [error, setError] = useState<unknown>(null);
  const [confirming, setConfirming] = useState(false);
  const [renaming, setRenaming] = useState<string | null>(null);
  const current = shown || board.data;

  async function change(update: { name?: string; insight_ids?: number[] }) {
    setError(null);
    try {
      setShown(await updateDashboard(id, update));
      return true;
    } catch (err) {
      setError(err);
      return false;
    }
  }

  async function remove() {
    setError(null);
    try {
      await deleteDashboard(id);
      location.hash = href('/dashboards');
    } catch (err) {
      setError(err);
    }
  }

  if (board.error) {
    return (
      <>
        <ErrorNotice error={board.error} what={`Opening dashboard ${id}`} />
        <p><a href={href('/dashboards')}>All dashboards</a></p>
      </>
    );
  }
  if (!current) return <Loading>Opening the dashboard…</Loading>;

  const ids = current.insight_ids;
  const cards = current.insights || [];
  const addable = (insights.data || []).filter((i) => !ids.includes(i.id));
  const move = (i: number, by: number) => {
    const next = [...ids];
    [next[i], next[i + by]] = [next[i + by], next[i]];
    change({ insight_ids: next });
  };

  return (
    <section aria-labelledby="dashboard-name">
      <div class="dashboard-head">
        <h2 id="dashboard-name">{current.name}</h2>
        {renaming === null ? (
          <button type="button" class="small" onClick={() => setRenaming(current.name)}>
            Rename<span class="visually-hidden"> the dashboard</span>
          </button>
        ) : (
          <form
            class="save-insight-form"
            aria-label="Rename the dashboard"
            onSubmit={async (e) => {
              e.preventDefault();
              if (renaming.trim() && (await change({ name: renaming.trim() }))) setRenaming(null);
            }}
          >
            <TextField label="New name" value={renaming} onInput={setRenaming} required class="wide" />
            <button type="submit" class="primary" disabled={!renaming.trim()}>
              Save name
            </button>
            <button type="button" onClick={() => setRenaming(null)}>
              Cancel
            </button>
          </form>
        )}
        <p class="muted">
          {cards.length} insight{cards.length === 1 ? '' : 's'} · this page's address opens this dashboard · <a href={href('/dashboards')}>All dashboards</a>
        </p>
      </div>
      <div class="controls" role="group" aria-label="Dashboard options">
        <Select
          label="Insight to add"
          value={adding}
          onChange={setAdding}
          disabled={!addable.length}
          options={[{ value: '', label: addable.length ? 'Choose a saved insight…' : 'No other saved insight' }, ...addable.map((i) => ({ value: String(i.id), label: `${i.name} (${viewTitle(i.path)})` }))]}
        />
        <button
          type="button"
          class="primary"
          disabled={!adding}
          onClick={() => {
            change({ insight_ids: [...ids, Number(adding)] });
            setAdding('');
          }}
        >
          Add to dashboard
        </button>
        {confirming ? (
          <>
            <button type="button" class="danger" onClick={remove}>
              Yes, delete “{current.name}”
            </button>
            <button type="button" onClick={() => setConfirming(false)}>
              Keep it
            </button>
          </>
        ) : (
          <button type="button" onClick={() => setConfirming(true)}>
            Delete dashboard
          </button>
        )}
      </div>
      <ErrorNotice error={error} what="The change" />
      {!cards.length && <Empty>No insight on this dashboard yet: add a saved one above.</Empty>}
      <ol class="insight-cards">
        {cards.map((insight, i) => (
          <li key={insight.id}>
            <InsightCard insight={insight} first={i === 0} last={i === cards.length - 1} onMove={(by) => move(i, by)} onRemove={() => change({ insight_ids: ids.filter((x) => x !== insight.id) })} />
          </li>
        ))}
      </ol>
    </section>
  );
}

function InsightCard({ insight, first, last, onMove, onRemove }: { insight: Insight; first: boolean; last: boolean; onMove: (by: number) => void; onRemove: () => void }) {
  const found = analysisView(insight.path);
  const headingId = `insight-${insight.id}`;
  // The saved route, marked embedded: the view hides its form (CSS) and leaves the address alone.
  const [route] = useState<Route>(() => ({ path: insight.path, query: new URLSearchParams(insight.query), embedded: true }));
  return (
    <article class="insight-card" aria-labelledby={headingId} data-insight-id={insight.id}>
      <header class="insight-card-head">
        <h3 id={headingId}>{insight.name}</h3>
        <span class="muted">{viewTitle(insight.path)}</span>
        <span class="insight-card-tools">
          <a href={insightLink(insight)}>
            Open full size<span class="visually-hidden">: {insight.name}</span>
          </a>
          <button type="button" class="icon" disabled={first} onClick={() => onMove(-1)} aria-label={`Move ${insight.name} earlier`}>↑</button>
          <button type="button" class="icon" disabled={last} onClick={() => onMove(1)} aria-label={`Move ${insight.name} later`}>↓</button>
          <button type="button" class="small" onClick={onRemove}>
            Remove<span class="visually-hidden"> {insight.name} from the dashboard</span>
          </button>
        </span>
      </header>
      <div class="insight-card-body">{found ? <found.view route={route} /> : <Empty>{insight.path} cannot be shown in a card.</Empty>}</div>
    </article>
  );
}
