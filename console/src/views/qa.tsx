// Live tagging QA: events as the collector receives them (GET /v1/debug/events, polled every
// second with since=), newest first, each with its validation result and errors.
import { href } from '../router';
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { ApiError, getJson } from '../api';
import { ExpandableTable, useOpenRows, type Header } from '../components/expandable';
import { Checkbox, Select, TextField } from '../components/fields';
import { ErrorNotice } from '../components/notice';
import { clock } from '../format';
import { sourceNames, useCatalogue } from '../meta';

export interface DebugEvent {
  received_at: number;
  source: string;
  event: string;
  message_id: string;
  anonymous_id: string;
  user_id: string;
  valid: boolean;
  reason: string;
  errors: { path: string; message: string }[];
  flags: string[];
  payload: unknown;
}

interface Filters {
  source: string;
  event: string;
  person: string;
  invalid: boolean;
}

const POLL_MS = 1000;
const KEEP = 500;

const COLUMNS: Header[] = [{ label: 'Time' }, { label: 'Source' }, { label: 'Event' }, { label: 'Person' }, { label: 'Result' }, { label: 'Errors' }];

const keyOf = (e: DebugEvent) => `${e.source}|${e.message_id}|${e.received_at}`;

export function QaView() {
  const { catalogue } = useCatalogue();
  const [filters, setFilters] = useState<Filters>({ source: '', event: '', person: '', invalid: false });
  const [events, setEvents] = useState<DebugEvent[]>([]);
  const [paused, setPaused] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [updatedAt, setUpdatedAt] = useState<number | null>(null);
  const { open, toggle, closeAll } = useOpenRows();
  const [fresh, setFresh] = useState<Set<string>>(new Set());
  const pausedRef = useRef(paused);
  pausedRef.current = paused;

  // Typing in the event or person box should not restart polling on every key.
  const [applied, setApplied] = useState(filters);
  useEffect(() => {
    const t = setTimeout(() => setApplied(filters), 300);
    return () => clearTimeout(t);
  }, [filters]);

  useEffect(() => {
    let stopped = false;
    let since = 0;
    let seen = new Set<string>();
    let inFlight = false;
    setEvents([]);
    closeAll();

    async function poll() {
      if (stopped || inFlight || pausedRef.current) return;
      inFlight = true;
      try {
        const answer = await getJson<{ events: DebugEvent[] }>('/v1/debug/events', {
          since: since || undefined,
          limit: 200,
          source: applied.source,
          event: applied.event.trim(),
          person: applied.person.trim(),
          invalid: applied.invalid ? 1 : undefined,
        });
        if (stopped) return;
        const arrived = answer.events.filter((e) => !seen.has(keyOf(e)));
        if (arrived.length) {
          for (const e of arrived) since = Math.max(since, e.received_at);
          const newKeys = new Set(arrived.map(keyOf));
          setEvents((old) => {
            const merged = [...arrived, ...old].sort((a, b) => b.received_at - a.received_at).slice(0, KEEP);
            seen = new Set(merged.map(keyOf));
            return merged;
          });
          for (const k of newKeys) seen.add(k);
          setFresh(newKeys);
        }
        setError(null);
        setUpdatedAt(Date.now());
      } catch (err) {
        if (!stopped) setError(err);
        if (err instanceof ApiError && err.status === 401) stopped = true;
      } finally {
        inFlight = false;
      }
    }

    poll();
    const timer = setInterval(poll, POLL_MS);
    return () => {
      stopped = true;
      clearInterval(timer);
    };
  }, [applied]);

  const sources = useMemo(() => {
    const names = new Set([...sourceNames(catalogue), ...events.map((e) => e.source)]);
    return [...names].sort();
  }, [catalogue, events]);
  const invalidCount = events.filter((e) => !e.valid).length;

  return (
    <section aria-label="Live events">
      <p class="lede">Events as the collector receives them, checked against the tracking plan. Newest first; the list updates every second. It shows the collector's recent buffer (the last events it received since it started), not the history: every refusal ever made is counted in <a href={href('/coverage')}>Plan coverage</a> and kept in the <code>events_invalid</code> table (the <a href={href('/sql')}>SQL view</a> reads it).</p>
      <div class="controls" role="group" aria-label="Filters">
        <Select label="Source" value={filters.source} onChange={(source) => setFilters({ ...filters, source })} options={[{ value: '', label: 'All sources' }, ...sources.map((s) => ({ value: s, label: s }))]} />
        <TextField label="Event" value={filters.event} list="qa-event-names" placeholder="any event" onInput={(event) => setFilters({ ...filters, event })} />
        <datalist id="qa-event-names">{catalogue?.eventNames.map((n) => <option value={n} />)}</datalist>
        <TextField label="Person (anonymous or user id)" value={filters.person} placeholder="any person" onInput={(person) => setFilters({ ...filters, person })} />
        <Checkbox label="Invalid only" checked={filters.invalid} onChange={(invalid) => setFilters({ ...filters, invalid })} />
        <button type="button" aria-pressed={paused} onClick={() => setPaused(!paused)}>
          {paused ? 'Resume' : 'Pause'}
        </button>
      </div>
      <p class="status-line" aria-live="polite">
        {paused ? 'Paused. ' : 'Live. '}
        {events.length} events shown, {invalidCount} invalid
        {updatedAt ? <span class="muted"> · updated {new Date(updatedAt).toLocaleTimeString('en-GB')}</span> : null}
      </p>
      <ErrorNotice error={error} what="Loading events" />
      <ExpandableTable
        caption="Live events"
        tableClass="qa-table"
        headers={COLUMNS}
        rows={events}
        keyOf={keyOf}
        emptyRow={<>No events yet. Send one (see the SDK or the curl line <code>funnelhouse up</code> prints); it appears here within a second.</>}
        rowAttrs={(e) => ({ class: `${e.valid ? '' : 'invalid'} ${fresh.has(keyOf(e)) ? 'fresh' : ''}`, 'data-message-id': e.message_id })}
        cells={(e) => (
          <>
            <td class="mono">{clock(e.received_at)}</td>
            <td>{e.source}</td>
            <td>{e.event || <span class="muted">(none)</span>}</td>
            <td class="mono clip" title={[e.user_id, e.anonymous_id].filter(Boolean).join(' / ')}>
              {e.user_id || e.anonymous_id || '–'}
            </td>
            <td>
              {e.valid ? (
                <span class="badge ok">✓ valid</span>
              ) : (
                <span class="badge bad" title={e.reason}>✗ invalid</span>
              )}
              {e.flags.length > 0 && <span class="badge flag" title={e.flags.join(', ')}>⚑ {e.flags.length} flag{e.flags.length > 1 ? 's' : ''}</span>}
            </td>
            <td class="errors">
              {e.errors.slice(0, 2).map((err) => (
                <div>
                  <code>{err.path}</code> {err.message}
                </div>
              ))}
              {e.errors.length > 2 && <div class="muted">+{e.errors.length - 2} more</div>}
            </td>
          </>
        )}
        toggleText="Details"
        toggleOf={(e) => `of ${e.event || 'event'} at ${clock(e.received_at)}`}
        detailsId={(e) => `qa-${e.message_id}-${Math.round(e.received_at * 1000)}`}
        details={(e) => <EventDetails event={e} />}
        open={open}
        onToggle={toggle}
      />
    </section>
  );
}

function EventDetails({ event: e }: { event: DebugEvent }) {
  return (
    <div class="event-details">
      <div>
        <h3>Validation</h3>
        {e.valid ? (
          <p>Valid against the plan.</p>
        ) : (
          <>
            <p>
              Reason: <code>{e.reason}</code>
            </p>
            <ul class="error-list">
              {e.errors.map((err) => (
                <li>
                  <code>{err.path}</code>: {err.message}
                </li>
              ))}
            </ul>
          </>
        )}
        {e.flags.length > 0 && <p>Flags: {e.flags.join(', ')}</p>}
        <p class="mono small-print">message id {e.message_id}</p>
      </div>
      <div>
        <h3>Payload</h3>
        <pre class="payload" tabIndex={0} aria-label="Payload">{JSON.stringify(e.payload, null, 2)}</pre>
      </div>
    </div>
  );
}
