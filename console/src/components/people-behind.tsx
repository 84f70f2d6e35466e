// From a figure to its people: who is behind a funnel step, a drop-off, a retention cell or a trend
// point (POST /v1/analyses/{analysis}/people), with a link to each person's timeline, "Download CSV"
// of every id, and "Save as segment", frozen (these people) or live (the definition, re-evaluated).
import { useEffect, useRef, useState } from 'preact/hooks';
import { download, postJson } from '../api';
import { num, stamp } from '../format';
import { sourceLabel } from '../labels';
import { href } from '../router';
import { Choice, TextField } from './fields';
import { ErrorNotice, Loading } from './notice';
import { DataTable, type Column, type Row } from './table';
import { useRequest } from './useRequest';

/** One figure's people: the analysis, the spec of the answer on screen (its as_of included), who. */
export interface PeopleQuery {
  analysis: string;
  spec: Record<string, unknown>;
  who: string;
  /** What the figure is, in words ("dropped before step 3, add_to_cart"). */
  label: string;
}

interface PeopleAnswer {
  count: number;
  people: Row[];
}

const SHOWN = 100;

const COLUMNS: Column[] = [
  { key: 'person_id', label: 'Person', render: (r) => <a href={href('/people', { id: String(r.person_id) })}>{String(r.person_id)}</a> },
  { key: 'email', label: 'Email', render: (r) => String(r.email || '') || <span class="muted">–</span> },
  { key: 'first_seen_at', label: 'First seen (UTC)', render: (r) => stamp(r.first_seen_at) },
  { key: 'last_seen_at', label: 'Last seen (UTC)', render: (r) => stamp(r.last_seen_at) },
  { key: 'first_touch_source', label: 'First touch', render: (r) => [sourceLabel(r.first_touch_source), r.first_touch_campaign].filter(Boolean).join(' / ') },
  { key: 'events', label: 'Events', numeric: true },
  { key: 'orders', label: 'Orders', numeric: true },
  { key: 'revenue', label: 'Revenue', numeric: true },
  { key: 'lifecycle_stage', label: 'Stage' },
];

export function PeopleBehind({ query, onClose }: { query: PeopleQuery; onClose: () => void }) {
  const req = useRequest<PeopleAnswer>();
  const heading = useRef<HTMLHeadingElement>(null);
  const body = { spec: query.spec, who: query.who };
  const path = `/v1/analyses/${query.analysis}`;

  useEffect(() => {
    req.run((signal) => postJson<PeopleAnswer>(`${path}/people`, { ...body, limit: SHOWN }, signal));
    heading.current?.focus();
  }, [query]);

  const [csvError, setCsvError] = useState<unknown>(null);
  async function csv() {
    setCsvError(null);
    try {
      await download(`${path}/people`, `${query.analysis}-${query.who.replace(/[^\w-]+/g, '_')}.csv`, { ...body, format: 'csv' });
    } catch (err) {
      setCsvError(err);
    }
  }

  const data = req.data;
  return (
    <section class="people-behind panel" aria-labelledby="people-behind-title">
      <div class="panel-head">
        <h2 id="people-behind-title" tabIndex={-1} ref={heading}>
          People: {query.label}
        </h2>
        <button type="button" class="small" onClick={onClose}>
          Close<span class="visually-hidden"> the people list</span>
        </button>
      </div>
      <ErrorNotice error={req.error} what="Listing the people" />
      {req.loading && <Loading>Finding the people…</Loading>}
      {data && (
        <>
          <p class="people-count" role="status">
            <strong class="count">{num(data.count)}</strong> {data.count === 1 ? 'person' : 'people'}
            {data.count > data.people.length && <span class="muted"> (the first {num(data.people.length)} are listed; the CSV has everyone)</span>}
          </p>
          <div class="row-buttons">
            <button type="button" onClick={csv} disabled={!data.count}>
              Download CSV
            </button>
          </div>
          <ErrorNotice error={csvError} what="The download" />
          <DataTable caption={`People: ${query.label}`} columns={COLUMNS} rows={data.people} empty="No one." />
          <SaveSegment query={query} count={data.count} />
        </>
      )}
    </section>
  );
}

function SaveSegment({ query, count }: { query: PeopleQuery; count: number }) {
  const [name, setName] = useState(query.label);
  const [kind, setKind] = useState('frozen');
  const save = useRequest<{ segment_id: string; members: number }>();
  // What the last save stored (not the form as it is now: it may have been edited since).
  const [saved, setSaved] = useState<{ name: string; kind: string; members: number } | null>(null);

  return (
    <form
      class="save-segment"
      aria-label="Save as segment"
      onSubmit={(e) => {
        e.preventDefault();
        if (!name.trim()) return;
        const wanted = { name: name.trim(), kind };
        setSaved(null);
        save
          .run((signal) => postJson<{ segment_id: string; members: number }>(`/v1/analyses/${query.analysis}/segment`, { spec: query.spec, who: query.who, name: wanted.name, live: kind === 'live' }, signal))
          .then((done) => done && setSaved({ ...wanted, members: done.members }));
      }}
    >
      <h3>Save as segment</h3>
      <div class="control-row">
        <TextField label="Segment name" value={name} onInput={setName} required class="wide" />
        <Choice
          legend="Keep"
          name="segment-kind"
          value={kind}
          onChange={setKind}
          options={[
            { value: 'frozen', label: `Frozen: these ${num(count)} people` },
            { value: 'live', label: 'Live: re-evaluated at every refresh' },
          ]}
        />
        <button type="submit" class="primary" disabled={!name.trim() || save.loading}>
          {save.loading ? 'Saving…' : 'Save segment'}
        </button>
      </div>
      <ErrorNotice error={save.error} what="Saving the segment" />
      {saved && !save.loading && (
        <p class="notice ok" role="status">
          Saved as {saved.kind} segment <a href={href('/segments')}>{saved.name}</a> with {num(saved.members)} members.
        </p>
      )}
    </form>
  );
}
