// Tracking-plan coverage: which planned events and properties were seen, never seen or failing,
// with counts and last seen (GET /v1/plan/coverage).
import { useEffect, useMemo, useState } from 'preact/hooks';
import { getJson } from '../api';
import { ExpandableTable, useOpenRows, type Header } from '../components/expandable';
import { Select, TextField } from '../components/fields';
import { Empty, ErrorNotice, Loading } from '../components/notice';
import { SqlDetails, type RanQuery } from '../components/sql';
import { useRequest } from '../components/useRequest';
import { num, stamp } from '../format';
import { sourceNames, useCatalogue } from '../meta';

type Status = 'seen' | 'never_seen' | 'failing' | 'unplanned';

interface PropertyCoverage {
  name: string;
  required: boolean;
  seen_count: number;
  failing_count: number;
  last_seen: string | null;
  status: Status;
}

interface EventCoverage {
  event: string;
  planned: boolean;
  status: Status;
  valid_count: number;
  invalid_count: number;
  last_seen: string | null;
  properties: PropertyCoverage[];
  top_errors: { path: string; message: string; count: number }[];
}

interface Coverage {
  events: EventCoverage[];
  summary: Record<Status | 'planned', number>;
  window: { days: number; from: string; to: string; source: string | null; time: string };
  sql: RanQuery[];
}

const STATUS_TEXT: Record<Status, string> = { seen: '✓ seen', never_seen: '○ never seen', failing: '✗ failing', unplanned: '? unplanned' };

const COLUMNS: Header[] = [
  { label: 'Event' },
  { label: 'Status' },
  { label: 'Valid', numeric: true },
  { label: 'Invalid', numeric: true },
  { label: 'Last seen (UTC)' },
  { label: 'Top error' },
];

export function StatusBadge({ status }: { status: Status }) {
  return <span class={`badge status-${status}`}>{STATUS_TEXT[status] || status}</span>;
}

export function CoverageView() {
  const { catalogue } = useCatalogue();
  const [days, setDays] = useState('30');
  const [source, setSource] = useState('');
  const [status, setStatus] = useState('');
  const [search, setSearch] = useState('');
  const { open, toggle } = useOpenRows();
  const req = useRequest<Coverage>();

  useEffect(() => {
    req.run((signal) => getJson<Coverage>('/v1/plan/coverage', { days, source }, signal));
  }, [days, source]);

  const events = req.data?.events || [];
  const counts = useMemo(() => {
    const c: Record<string, number> = { seen: 0, never_seen: 0, failing: 0, unplanned: 0 };
    for (const e of events) c[e.status] = (c[e.status] || 0) + 1;
    return c;
  }, [events]);
  const span = req.data?.window;
  const shown = events.filter((e) => (!status || e.status === status) && (!search || e.event.toLowerCase().includes(search.toLowerCase())));

  return (
    <section aria-label="Tracking-plan coverage">
      <p class="lede">Planned events and their properties: seen, never seen, or failing validation, over the last days.</p>
      <div class="controls" role="group" aria-label="Filters">
        <Select label="Period" value={days} onChange={setDays} options={['1', '7', '30', '90'].map((d) => ({ value: d, label: `last ${d} day${d === '1' ? '' : 's'}` }))} />
        <Select label="Source" value={source} onChange={setSource} options={[{ value: '', label: 'All sources' }, ...sourceNames(catalogue).map((s) => ({ value: s, label: s }))]} />
        <Select
          label="Status"
          value={status}
          onChange={setStatus}
          options={[{ value: '', label: 'Any status' }, ...(['seen', 'never_seen', 'failing', 'unplanned'] as Status[]).map((s) => ({ value: s, label: `${STATUS_TEXT[s]} (${counts[s] || 0})` }))]}
        />
        <TextField label="Event name" type="search" value={search} placeholder="filter by name" onInput={setSearch} />
      </div>
      <ul class="cards" aria-label="Coverage summary">
        {(['seen', 'never_seen', 'failing', 'unplanned'] as Status[]).map((s) => (
          <li class={`card status-${s}`}>
            <span class="card-value">{counts[s] || 0}</span>
            <span class="card-label">{STATUS_TEXT[s]}</span>
          </li>
        ))}
      </ul>
      {span && (
        <p class="muted">
          Events received {stamp(span.from)} – {stamp(span.to)} UTC{span.source ? ` from ${span.source}` : ''}; {counts.seen + counts.failing + counts.never_seen} planned events.
        </p>
      )}
      <ErrorNotice error={req.error} what="Loading coverage" />
      {req.loading && !req.data && <Loading />}
      {req.data && shown.length === 0 && <Empty>No event matches these filters.</Empty>}
      {shown.length > 0 && (
        <ExpandableTable
          caption="Plan coverage by event"
          headers={COLUMNS}
          rows={shown}
          keyOf={(e) => e.event}
          rowAttrs={(e) => ({ class: `status-row-${e.status}` })}
          cells={(e) => (
            <>
              <th scope="row">{e.event}{!e.planned && <span class="muted"> (not in plan)</span>}</th>
              <td><StatusBadge status={e.status} /></td>
              <td class="num">{num(e.valid_count)}</td>
              <td class="num">{num(e.invalid_count)}</td>
              <td class="nowrap">{stamp(e.last_seen)}</td>
              <td class="errors">
                {e.top_errors[0] ? (
                  <>
                    <code>{e.top_errors[0].path}</code> {e.top_errors[0].message} <span class="muted">×{num(e.top_errors[0].count)}</span>
                  </>
                ) : (
                  ''
                )}
              </td>
            </>
          )}
          canExpand={(e) => e.properties.length > 0 || e.top_errors.length > 1}
          toggleText="Properties"
          toggleOf={(e) => `of ${e.event}`}
          detailsId={(e) => `cov-${e.event}`}
          details={(e) => <PropertyTable event={e} />}
          open={open}
          onToggle={toggle}
        />
      )}
      {req.data?.sql && <SqlDetails sql={req.data.sql} title="plan coverage" />}
    </section>
  );
}

function PropertyTable({ event }: { event: EventCoverage }) {
  return (
    <div class="coverage-details">
      <table>
        <caption>Properties of {event.event}</caption>
        <thead>
          <tr>
            <th scope="col">Property</th>
            <th scope="col">Required</th>
            <th scope="col">Status</th>
            <th scope="col" class="num">Seen</th>
            <th scope="col" class="num">Failing</th>
            <th scope="col">Last seen (UTC)</th>
          </tr>
        </thead>
        <tbody>
          {event.properties.map((p) => (
            <tr>
              <th scope="row"><code>{p.name}</code></th>
              <td>{p.required ? 'required' : 'optional'}</td>
              <td><StatusBadge status={p.status} /></td>
              <td class="num">{num(p.seen_count)}</td>
              <td class="num">{num(p.failing_count)}</td>
              <td class="nowrap">{stamp(p.last_seen)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {event.top_errors.length > 0 && (
        <div>
          <h3>Most frequent errors</h3>
          <ul class="error-list">
            {event.top_errors.map((err) => (
              <li>
                <code>{err.path}</code>: {err.message} <span class="muted">×{num(err.count)}</span>
              </li>
            ))}
          </ul>
        </div>
      )}
    </div>
  );
}
