// Live tagging QA: events as the collector receives them (GET /v1/debug/events, polled every
// second with since=), newest first, each with its validation result and errors. "Invalid only"
// reads the refusals from history instead (GET /v1/invalid-events over events_invalid): the
// collector's buffer keeps only its last events, so after a burst it would show a handful.
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
  days: string;
}

/** A refusal as GET /v1/invalid-events returns it: a live event's fields without the verdict. */
type StoredRefusal = Omit<DebugEvent, 'valid' | 'flags'>;

interface RefusalHistory {
  days: number;
  limit: number;
  total: number;
  reasons: Record<string, number>;
  events: StoredRefusal[];
}

const POLL_MS = 1000;
// History changes only as fast as the loader writes (about a second); a slower refresh is enough.
const HISTORY_POLL_MS = 5000;
const HISTORY_LIMIT = 200;
const PERIODS = [
  { value: '1', label: 'Last 24 hours' },
  { value: '7', label: 'Last 7 days' },
  { value: '30', label: 'Last 30 days' },
  { value: '90', label: 'Last 90 days (all kept)' },
];

const fromHistory = (e: StoredRefusal): DebugEvent => ({ ...e, valid: false, flags: [] });
const KEEP = 500;

const COLUMNS: Header[] = [{ label: 'Time' }, { label: 'Source' }, { label: 'Event' }, { label: 'Person' }, { label: 'Result' }, { label: 'Errors' }];

const keyOf = (e: DebugEvent) => `${e.source}|${e.message_id}|${e.received_at}`;

export function QaView() {
  const { catalogue } = useCatalogue();
  const [filters, setFilters] = useState<Filters>({ source: '', event: '', person: '', invalid: false, days: '7' });
  const [history, setHistory] = useState<RefusalHistory | null>(null);
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
    setHistory(null);
    closeAll();

    // One request at a time, none while paused; a refused token stops the polling, any other
    // error shows until the next answer.
    async function guarded(step: () => Promise<void>) {
      if (stopped || inFlight || pausedRef.current) return;
      inFlight = true;
      try {
        await step();
        if (stopped) return;
        setError(null);
        setUpdatedAt(Date.now());
      } catch (err) {
        if (!stopped) setError(err);
        if (err instanceof ApiError && err.status === 401) stopped = true;
      } finally {
        inFlight = false;
      }
    }

    // Invalid only: the refusals from history (events_invalid), not the collector's buffer.
    const loadHistory = () => guarded(async () => {
      const answer = await getJson<RefusalHistory>('/v1/invalid-events', {
        days: applied.days,
        limit: HISTORY_LIMIT,
        source: applied.source,
        event: applied.event.trim(),
        person: applied.person.trim(),
      });
      if (stopped) return;
      const keys = new Set(answer.events.map((e) => keyOf(fromHistory(e))));
      setFresh(seen.size ? new Set([...keys].filter((k) => !seen.has(k))) : new Set());
      seen = keys;
      setEvents(answer.events.map(fromHistory));
      setHistory(answer);
    });

    if (applied.invalid) {
      loadHistory();
      const timer = setInterval(loadHistory, HISTORY_POLL_MS);
      return () => {
        stopped = true;
        clearInterval(timer);
      };
    }

    // Every event: what arrived since the newest one shown, merged in.
    const poll = () => guarded(async () => {
      const answer = await getJson<{ events: DebugEvent[] }>('/v1/debug/events', {
        since: since || undefined,
        limit: 200,
        source: applied.source,
        event: applied.event.trim(),
        person: applied.person.trim(),
      });
      if (stopped) return;
      const arrived = answer.events.filter((e) => !seen.has(keyOf(e)));
      if (!arrived.length) return;
      for (const e of arrived) since = Math.max(since, e.received_at);
      const newKeys = new Set(arrived.map(keyOf));
      setEvents((old) => {
        const merged = [...arrived, ...old].sort((a, b) => b.received_at - a.received_at).slice(0, KEEP);
        seen = new Set(merged.map(keyOf));
        return merged;
      });
      for (const k of newKeys) seen.add(k);
      setFresh(newKeys);
    });

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
      <p class="lede">Events as the collector receives them, checked against the tracking plan. Newest first; the list updates every second from the collector's recent buffer (the last events it received). <strong>Invalid only</strong> lists the refusals from history instead: the <code>events_invalid</code> table, where every refused event is kept for 90 days with its reasons (also counted in <a href={href('/coverage')}>Plan coverage</a>; the <a href={href('/sql')}>SQL view</a> reads the table).</p>
      <div class="controls" role="group" aria-label="Filters">
        <Select label="Source" value={filters.source} onChange={(source) => setFilters({ ...filters, source })} options={[{ value: '', label: 'All sources' }, ...sources.map((s) => ({ value: s, label: s }))]} />
        <TextField label="Event" value={filters.event} list="qa-event-names" placeholder="any event" onInput={(event) => setFilters({ ...filters, event })} />
        <datalist id="qa-event-names">{catalogue?.eventNames.map((n) => <option value={n} />)}</datalist>
        <TextField label="Person (anonymous or user id)" value={filters.person} placeholder="any person" onInput={(person) => setFilters({ ...filters, person })} />
        <Checkbox label="Invalid only" checked={filters.invalid} onChange={(invalid) => setFilters({ ...filters, invalid })} />
        {filters.invalid && <Select label="Refused in" value={filters.days} onChange={(days) => setFilters({ ...filters, days })} options={PERIODS} />}
        <button type="button" aria-pressed={paused} onClick={() => setPaused(!paused)}>
          {paused ? 'Resume' : 'Pause'}
        </button>
      </div>
      <p class="status-line" aria-live="polite">
        {paused ? 'Paused. ' : applied.invalid ? 'From history. ' : 'Live. '}
        {applied.invalid && history ? (
          <>
            <span data-refusals-total={history.total}>
              {history.total} refused event{history.total === 1 ? '' : 's'} in the last {history.days === 1 ? '24 hours' : `${history.days} days`}
            </span>
            {history.total > history.events.length ? `, the newest ${history.events.length} shown` : ''}
            {Object.keys(history.reasons).length > 0 && <> ({Object.entries(history.reasons).map(([r, n]) => `${n} ${r}`).join(', ')})</>}
          </>
        ) : (
          <>
            {events.length} events shown, {invalidCount} invalid
          </>
        )}
        {updatedAt ? <span class="muted"> · updated {new Date(updatedAt).toLocaleTimeString('en-GB')}</span> : null}
      </p>
      <ErrorNotice error={error} what="Loading events" />
      <ExpandableTable
        caption="Live events"
        tableClass="qa-table"
        headers={COLUMNS}
        rows={events}
        keyOf={keyOf}
        emptyRow={applied.invalid ? <>No refused events in this period{applied.source || applied.event || applied.person ? ' for these filters' : ''}.</> : <>No events yet. Send one (see the SDK or the curl line <code>funnelhouse up</code> prints); it appears here within a second.</>}
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
