// The console's shell: login, the navigation, and one view per route (#/home, #/funnels …).
import { render } from 'preact';
import type { ComponentType } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { clearToken, getToken, onUnauthorized } from './api';
import { BUILT_EVENT, NotBuiltNotice } from './components/notbuilt';
import { ErrorNotice, Loading } from './components/notice';
import { Login } from './login';
import { forgetCatalogue, modelsBuilt, useCatalogue } from './meta';
import { analysisView } from './analysis-views';
import { SaveInsight } from './components/save-insight';
import { href, useRoute, type Route } from './router';
import { CoverageView } from './views/coverage';
import { DashboardsView } from './views/dashboards';
import { HomeView } from './views/home';
import { PeopleView } from './views/people';
import { QaView } from './views/qa';
import { SegmentsView } from './views/segments';
import { SqlView } from './views/sql';

interface ViewEntry {
  path: string;
  title: string;
  view: ComponentType<{ route: Route }>;
  /** Reads the model tables: before their first build the view explains that instead. */
  models?: boolean;
  /** An analysis: its state is in the URL, and the shell offers to save it as an insight. */
  analysis?: boolean;
}

/** An analysis view's entry (analysis-views.ts lists them for dashboards too). */
function analysis(path: string): ViewEntry {
  const found = analysisView(path);
  if (!found) throw new Error(`no analysis view ${path}`);
  return { ...found, models: true, analysis: true };
}

export const VIEWS: ViewEntry[] = [
  { path: '/home', title: 'Home', view: HomeView, models: true },
  { path: '/dashboards', title: 'Dashboards', view: DashboardsView, models: true },
  { path: '/qa', title: 'Live QA', view: QaView },
  { path: '/coverage', title: 'Plan coverage', view: CoverageView },
  analysis('/trends'),
  analysis('/funnels'),
  analysis('/retention'),
  analysis('/stickiness'),
  analysis('/paths'),
  analysis('/flows'),
  analysis('/pages'),
  analysis('/correlation'),
  analysis('/campaigns'),
  { path: '/segments', title: 'Segments', view: SegmentsView, models: true },
  { path: '/people', title: 'People', view: PeopleView, models: true },
  { path: '/sql', title: 'SQL', view: SqlView },
];

function App() {
  const [loggedIn, setLoggedIn] = useState(() => !!getToken());
  const [message, setMessage] = useState('');
  const [menuOpen, setMenuOpen] = useState(false);
  // Bumped when the tables are built from a view: the open view mounts again with the new catalogue.
  const [generation, setGeneration] = useState(0);
  const route = useRoute();

  useEffect(() => {
    onUnauthorized(() => {
      clearToken();
      forgetCatalogue();
      setMessage('The server refused the admin token. Log in again.');
      setLoggedIn(false);
    });
    const built = () => setGeneration((g) => g + 1);
    window.addEventListener(BUILT_EVENT, built);
    return () => window.removeEventListener(BUILT_EVENT, built);
  }, []);

  // A narrow screen's menu closes once a view is chosen.
  useEffect(() => setMenuOpen(false), [route.path]);

  if (!loggedIn) {
    return (
      <Login
        message={message}
        onLogin={() => {
          setMessage('');
          setLoggedIn(true);
        }}
      />
    );
  }

  const entry = VIEWS.find((v) => v.path === route.path) || VIEWS[0];
  return (
    <div class={`shell${menuOpen ? ' menu-open' : ''}`}>
      <a class="skip" href="#main" onClick={(e) => { e.preventDefault(); document.getElementById('main')?.focus(); }}>
        Skip to content
      </a>
      <header class="topbar">
        <button type="button" class="menu-button" aria-expanded={menuOpen} aria-controls="views-nav" onClick={() => setMenuOpen(!menuOpen)}>
          <span aria-hidden="true">☰</span> Menu
        </button>
        <span class="brand">funnelhouse</span>
        <button
          type="button"
          class="link"
          onClick={() => {
            clearToken();
            forgetCatalogue();
            setMessage('Logged out.');
            setLoggedIn(false);
          }}
        >
          Log out
        </button>
      </header>
      <nav class="sidebar" id="views-nav" aria-label="Views">
        <ul>
          {VIEWS.map((v) => (
            <li>
              <a href={href(v.path)} aria-current={v.path === entry.path ? 'page' : undefined}>
                {v.title}
              </a>
            </li>
          ))}
        </ul>
      </nav>
      <Main title={entry.title} key={`${entry.path}#${generation}`} tools={entry.analysis ? <SaveInsight title={entry.title} /> : null}>
        {entry.models ? <NeedsModels entry={entry} route={route} /> : <entry.view route={route} />}
      </Main>
    </div>
  );
}

/** A view that reads model tables: shown once they exist, else what to do about it. */
function NeedsModels({ entry, route }: { entry: ViewEntry; route: Route }) {
  const { catalogue, error } = useCatalogue();
  if (error) return <ErrorNotice error={error} what="Loading the event list" />;
  if (!catalogue) return <Loading />;
  if (!modelsBuilt(catalogue)) return <NotBuiltNotice />;
  const View = entry.view;
  return <View route={route} />;
}

function Main({ title, tools, children }: { title: string; tools: preact.ComponentChildren; children: preact.ComponentChildren }) {
  const ref = useRef<HTMLElement>(null);
  useEffect(() => {
    document.title = `${title} · funnelhouse console`;
  }, [title]);
  return (
    <main id="main" ref={ref} tabIndex={-1} aria-labelledby="view-title">
      <div class="view-head">
        <h1 id="view-title">{title}</h1>
        {tools}
      </div>
      {children}
    </main>
  );
}

const root = document.getElementById('app')!;
root.textContent = ''; // the "Loading…" line of index.html
render(<App />, root);
