// The console's shell: login, the navigation, and one view per route (#/qa, #/funnels …).
import { render } from 'preact';
import type { ComponentType } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { clearToken, getToken, onUnauthorized } from './api';
import { Login } from './login';
import { forgetCatalogue } from './meta';
import { href, useRoute, type Route } from './router';
import { CampaignsView } from './views/campaigns';
import { CoverageView } from './views/coverage';
import { FunnelsView } from './views/funnels';
import { PathsView } from './views/paths';
import { PeopleView } from './views/people';
import { QaView } from './views/qa';
import { RetentionView } from './views/retention';
import { SegmentsView } from './views/segments';
import { SqlView } from './views/sql';

interface ViewEntry {
  path: string;
  title: string;
  view: ComponentType<{ route: Route }>;
  nav?: boolean;
}

const VIEWS: ViewEntry[] = [
  { path: '/qa', title: 'Live QA', view: QaView },
  { path: '/coverage', title: 'Plan coverage', view: CoverageView },
  { path: '/funnels', title: 'Funnels', view: FunnelsView },
  { path: '/retention', title: 'Retention', view: RetentionView },
  { path: '/paths', title: 'Paths', view: PathsView },
  { path: '/campaigns', title: 'Campaigns', view: CampaignsView },
  { path: '/segments', title: 'Segments', view: SegmentsView },
  { path: '/people', title: 'People', view: PeopleView },
  { path: '/sql', title: 'SQL', view: SqlView },
];

function App() {
  const [loggedIn, setLoggedIn] = useState(() => !!getToken());
  const [message, setMessage] = useState('');
  const route = useRoute();

  useEffect(() => {
    onUnauthorized(() => {
      clearToken();
      forgetCatalogue();
      setMessage('The server refused the admin token. Log in again.');
      setLoggedIn(false);
    });
  }, []);

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
  const View = entry.view;
  return (
    <div class="shell">
      <a class="skip" href="#main" onClick={(e) => { e.preventDefault(); document.getElementById('main')?.focus(); }}>
        Skip to content
      </a>
      <header class="topbar">
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
      <nav class="sidebar" aria-label="Views">
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
      <Main title={entry.title} key={entry.path}>
        <View route={route} />
      </Main>
    </div>
  );
}

function Main({ title, children }: { title: string; children: preact.ComponentChildren }) {
  const ref = useRef<HTMLElement>(null);
  useEffect(() => {
    document.title = `${title} · funnelhouse console`;
  }, [title]);
  return (
    <main id="main" ref={ref} tabIndex={-1} aria-labelledby="view-title">
      <h1 id="view-title">{title}</h1>
      {children}
    </main>
  );
}

const root = document.getElementById('app')!;
root.textContent = ''; // the "Loading…" line of index.html
render(<App />, root);
