// People: find a person by any id (GET /v1/people/search), then their events across every device
// and id, in order (GET /v1/timeline/{id}).
import { useEffect, useState } from 'preact/hooks';
import { getJson, type AnalysisResult } from '../api';
import { Form, TextField } from '../components/fields';
import { Empty, ErrorNotice, Loading } from '../components/notice';
import { SqlDetails } from '../components/sql';
import { DataTable, rowsOf, type Column, type Row } from '../components/table';
import { useRequest } from '../components/useRequest';
import { num, stamp } from '../format';
import { href, type Route } from '../router';

interface Person {
  person_id: string;
  match: string;
  matched_ids: string[];
  user_ids: string[];
  anonymous_ids: string[];
  first_seen: string;
  last_seen: string;
  events: number;
  sessions: number;
  orders: number;
  email?: string;
  lifecycle_stage?: string;
}

type Timeline = AnalysisResult<{ person_id: string; ids: string[] }>;

export function PeopleView({ route }: { route: Route }) {
  const opened = route.query.get('id') || '';
  const [q, setQ] = useState(route.query.get('q') || opened);
  const search = useRequest<{ people: Person[] }>();

  function run(text = q) {
    const query = text.trim();
    if (query.length < 2) return;
    search.run((signal) => getJson<{ people: Person[] }>('/v1/people/search', { q: query, limit: 20 }, signal));
  }

  useEffect(() => {
    if (q.trim().length >= 2) run();
  }, []);

  // One exact match: open it at once.
  useEffect(() => {
    const people = search.data?.people || [];
    if (!opened && people.length === 1) location.hash = href('/people', { q: q.trim(), id: people[0].person_id });
  }, [search.data]);

  const columns: Column[] = [
    { key: 'person_id', label: 'Person', render: (r) => <a href={href('/people', { q: q.trim(), id: String(r.person_id) })} aria-current={r.person_id === opened ? 'true' : undefined}>{String(r.person_id)}</a> },
    { key: 'user_ids', label: 'User ids', render: (r) => (r.user_ids as string[]).join(', ') || <span class="muted">anonymous</span> },
    { key: 'anonymous_ids', label: 'Devices (anonymous ids)', numeric: true, render: (r) => num((r.anonymous_ids as string[]).length) },
    { key: 'events', label: 'Events', numeric: true },
    { key: 'orders', label: 'Orders', numeric: true },
    { key: 'first_seen', label: 'First seen (UTC)', render: (r) => stamp(r.first_seen) },
    { key: 'last_seen', label: 'Last seen (UTC)', render: (r) => stamp(r.last_seen) },
  ];

  return (
    <section aria-label="People">
      <Form label="Find a person" onSubmit={() => run()}>
        <div class="control-row">
          <TextField label="Any id: user id, anonymous id or person id" type="search" value={q} minLength={2} placeholder="u-42 or an anonymous id" onInput={setQ} class="wide" />
          <button type="submit" class="primary" disabled={q.trim().length < 2 || search.loading}>
            Search
          </button>
          {q.trim().length >= 2 && (
            <a class="button" href={href('/people', { q: q.trim(), id: q.trim() })}>
              Open timeline of exactly this id
            </a>
          )}
        </div>
      </Form>
      <ErrorNotice error={search.error} what="Search" />
      {search.loading && <Loading>Searching…</Loading>}
      {search.data && search.data.people.length === 0 && <Empty>No person has an id starting with “{q.trim()}”.</Empty>}
      {search.data && search.data.people.length > 0 && <DataTable caption="People found" columns={columns} rows={search.data.people as unknown as Row[]} />}
      {opened && <PersonTimeline id={opened} />}
    </section>
  );
}

function PersonTimeline({ id }: { id: string }) {
  const req = useRequest<Timeline>();
  useEffect(() => {
    req.run((signal) => getJson<Timeline>(`/v1/timeline/${encodeURIComponent(id)}`, { limit: 1000 }, signal));
  }, [id]);
  if (req.loading) return <Loading>Loading the timeline…</Loading>;
  if (req.error) return <ErrorNotice error={req.error} what="The timeline" />;
  if (!req.data) return null;
  const t = req.data;
  const s = t.summary as Record<string, unknown>;
  const rows = rowsOf(t.columns, t.rows);
  if (!rows.length) return <Empty>No events for {id}.</Empty>;

  const devices = [...new Set(rows.map((r) => `${r.channel}/${r.device_type}`))];
  const columns: Column[] = [
    { key: 'event_at', label: 'Time (UTC)', render: (r) => <span class="mono">{stamp(r.event_at)}</span> },
    { key: 'event', label: 'Event', render: (r) => <strong>{String(r.event)}</strong> },
    { key: 'channel', label: 'Device', render: (r) => <span class={`device d${devices.indexOf(`${r.channel}/${r.device_type}`) % 6}`}>{`${r.channel} · ${r.device_type}${r.os_name ? ` · ${r.os_name}` : ''}`}</span> },
    { key: 'page_path', label: 'Page / screen', render: (r) => String(r.page_path || '') },
    { key: 'detail', label: 'Detail', render: (r) => detail(r) },
    { key: 'ids', label: 'Id used', render: (r) => <span class="mono clip" title={`anonymous ${r.anonymous_id}${r.user_id ? `, user ${r.user_id}` : ''}`}>{String(r.user_id || r.anonymous_id)}</span> },
    { key: 'session_id', label: 'Session', render: (r) => <span class="mono">{String(r.session_id).slice(0, 8)}</span> },
  ];
  return (
    <div class="answer">
      <h2>Timeline of {String(s.person_id)}</h2>
      <ul class="cards" aria-label="Person summary">
        <li class="card"><span class="card-value">{num(s.events)}</span><span class="card-label">events shown</span></li>
        <li class="card"><span class="card-value">{num(s.ids)}</span><span class="card-label">ids</span></li>
        <li class="card"><span class="card-value">{devices.length}</span><span class="card-label">devices / channels</span></li>
      </ul>
      <p class="muted">Ids: {t.data.ids.map((i) => <code class="id-chip">{i}</code>)}</p>
      <DataTable caption={`Events of ${s.person_id}, in order`} hideCaption columns={columns} rows={rows} />
      <ul class="notes">{t.notes.map((n) => <li>{n}</li>)}</ul>
      <SqlDetails sql={t.sql} params={t.params} title="the timeline" />
    </div>
  );
}

function detail(r: Row): string {
  const parts: string[] = [];
  if (r.product_id) parts.push(`product ${r.product_id}`);
  if (r.order_id) parts.push(`order ${r.order_id}`);
  if (Number(r.revenue)) parts.push(`${num(r.revenue)} ${r.currency || ''}`.trim());
  if (r.utm_campaign) parts.push(`campaign ${r.utm_campaign}`);
  return parts.join(' · ');
}
