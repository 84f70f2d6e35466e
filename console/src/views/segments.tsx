// Segments: a builder for containers → groups → filters with a live member count
// (POST /v1/segments/preview), save (POST /v1/segments), the saved list with size over time
// (GET /v1/segments/{id}/history) and the member download (GET …/members?format=csv).
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { ApiError, download, getJson, postJson } from '../api';
import { Chart, type ChartOption } from '../components/chart';
import { Checkbox, Select, TextField } from '../components/fields';
import { Empty, ErrorNotice, Loading } from '../components/notice';
import { SqlDetails } from '../components/sql';
import { DataTable, type Column, type Row } from '../components/table';
import { useRequest } from '../components/useRequest';
import { num, stamp } from '../format';
import { ColumnSelect, FilterValue } from '../components/column-picker';
import { columnLabel, tableInfo, typeLabel, useSegmentTables, type TableColumns } from '../segment-tables';

interface FilterInput {
  column: string;
  op: string;
  value: string;
}

interface HavingInput {
  fn: string;
  column: string;
  op: string;
  value: string;
}

interface GroupInput {
  table: string;
  exclude: boolean;
  withinDays: string;
  filters: FilterInput[];
  having: HavingInput[];
}

interface ContainerInput {
  groups: GroupInput[];
}

interface SegmentSummary {
  segment_id: string;
  version: number;
  name: string;
  kind: string;
  description: string;
  updated_at: string;
  members: number | null;
  materialised_at: string | null;
}

interface Preview {
  members: number;
  sample: string[];
  sql: string;
  params: Record<string, unknown>;
}

const OPS = [
  { value: '=', label: '=' },
  { value: '!=', label: '≠' },
  { value: '>', label: '>' },
  { value: '>=', label: '≥' },
  { value: '<', label: '<' },
  { value: '<=', label: '≤' },
  { value: 'in', label: 'is one of' },
  { value: 'not_in', label: 'is none of' },
  { value: 'between', label: 'between' },
  { value: 'contains', label: 'contains' },
  { value: 'not_contains', label: 'does not contain' },
  { value: 'starts_with', label: 'starts with' },
  { value: 'has', label: 'has (array)' },
  { value: 'is_set', label: 'is set' },
  { value: 'is_not_set', label: 'is not set' },
];
const COMPARISONS = OPS.slice(0, 6);
const AGGREGATES = ['count', 'sum', 'avg', 'min', 'max', 'uniq'].map((f) => ({ value: f, label: f }));
const NO_VALUE = new Set(['is_set', 'is_not_set']);
const DEBOUNCE_MS = 500;

const newFilter = (table: string): FilterInput => ({ column: table === 'behavior_events' ? 'event' : '', op: '=', value: '' });
const newGroup = (table = 'behavior_events'): GroupInput => ({ table, exclude: false, withinDays: '', filters: [newFilter(table)], having: [] });

/** The list with item i replaced, or removed: every editor below edits its list this way. */
const replaceAt = <T,>(list: T[], i: number, item: T): T[] => list.map((x, j) => (j === i ? item : x));
const removeAt = <T,>(list: T[], i: number): T[] => list.filter((_, j) => j !== i);

const isNumericType = (type: string | undefined) => !!type && /Int|Float|Decimal/.test(type);
const looksNumeric = (text: string) => text.trim() !== '' && Number.isFinite(Number(text));

/** A typed value for the definition: numbers where the column (or a JSON comparison) wants one. */
function typed(text: string, column: string, op: string, columns: TableColumns): string | number {
  const t = text.trim();
  const jsonKey = column.startsWith('properties.') || column.startsWith('traits.');
  const numeric = jsonKey ? ['>', '>=', '<', '<=', 'between'].includes(op) : isNumericType(columns[column]);
  return numeric && looksNumeric(t) ? Number(t) : t;
}

export function toDefinition(name: string, containers: ContainerInput[], tables: Record<string, TableColumns>) {
  return {
    name: name.trim() || 'Untitled segment',
    containers: containers.map((c) => ({
      groups: c.groups.map((g) => {
        const columns = tables[g.table] || {};
        const group: Record<string, unknown> = {
          table: g.table,
          filters: g.filters.map((f) => {
            const out: Record<string, unknown> = { column: f.column.trim(), op: f.op };
            if (NO_VALUE.has(f.op)) return out;
            if (f.op === 'in' || f.op === 'not_in' || f.op === 'between') {
              out.value = f.value.split(',').map((v) => typed(v, f.column, f.op, columns)).filter((v) => v !== '');
            } else out.value = typed(f.value, f.column, f.op, columns);
            return out;
          }),
        };
        if (g.exclude) group.exclude = true;
        if (g.withinDays.trim()) group.within_days = Number(g.withinDays);
        if (g.having.length) {
          group.having = g.having.map((h) => ({ fn: h.fn, ...(h.fn !== 'count' ? { column: h.column.trim() } : {}), op: h.op, value: Number(h.value) }));
        }
        return group;
      }),
    })),
  };
}

/** What the server would refuse for certain in a definition being edited (a filter with no
 *  column yet, a number compared with nothing), said in the builder's words; null when
 *  it can be counted. Such a definition is not sent: the count says what is missing. */
export function unfinished(containers: ContainerInput[], tables: Record<string, TableColumns>): string | null {
  for (const [ci, container] of containers.entries()) {
    for (const [gi, group] of container.groups.entries()) {
      const where = `group ${gi + 1} of container ${ci + 1}`;
      const columns = tables[group.table] || {};
      for (const [fi, f] of group.filters.entries()) {
        if (!f.column.trim()) return `choose a column for filter ${fi + 1} in ${where}`;
        if (!NO_VALUE.has(f.op) && !f.value.trim() && isNumericType(columns[f.column.trim()])) {
          return `type a number for filter ${fi + 1} in ${where}`;
        }
      }
      const hi = group.having.findIndex((h) => h.fn !== 'count' && !h.column.trim());
      if (hi >= 0) return `choose a column for condition ${hi + 1} in ${where}`;
    }
  }
  return null;
}

export function SegmentsView() {
  const tables = useSegmentTables();
  const list = useRequest<{ segments: SegmentSummary[] }>();
  const [selected, setSelected] = useState<string | null>(null);

  const refresh = () => list.run((signal) => getJson<{ segments: SegmentSummary[] }>('/v1/segments', undefined, signal));
  useEffect(() => {
    refresh();
  }, []);

  return (
    <div class="segments">
      <ErrorNotice error={tables.error} what="Loading table columns" />
      <Builder tables={tables.tables} onSaved={(id) => { refresh(); setSelected(id); }} />
      <section aria-labelledby="saved-title" class="panel">
        <h2 id="saved-title">Saved segments</h2>
        <ErrorNotice error={list.error} what="Loading segments" />
        {list.loading && !list.data && <Loading />}
        {list.data && <SegmentList segments={list.data.segments} selected={selected} onSelect={setSelected} />}
        {selected && <History segmentId={selected} name={list.data?.segments.find((s) => s.segment_id === selected)?.name || selected} />}
      </section>
    </div>
  );
}

function Builder({ tables, onSaved }: { tables: Record<string, TableColumns>; onSaved: (id: string) => void }) {
  const [name, setName] = useState('');
  const [containers, setContainers] = useState<ContainerInput[]>([{ groups: [newGroup()] }]);
  const [preview, setPreview] = useState<Preview | null>(null);
  const [previewError, setPreviewError] = useState<ApiError | Error | null>(null);
  const [counting, setCounting] = useState(false);
  const [saveError, setSaveError] = useState<unknown>(null);
  const [saved, setSaved] = useState<{ id: string; members: number | null } | null>(null);
  const [saving, setSaving] = useState(false);
  const latest = useRef(0);

  const definition = useMemo(() => toDefinition(name, containers, tables), [name, containers, tables]);
  const shape = JSON.stringify(definition.containers);
  const missing = unfinished(containers, tables);

  // The live count: debounced, and only the newest answer is shown.
  useEffect(() => {
    const ticket = ++latest.current;
    if (missing) {
      setCounting(false);
      setPreviewError(new Error(missing));
      return;
    }
    setCounting(true);
    const timer = setTimeout(async () => {
      try {
        const answer = await postJson<Preview>('/v1/segments/preview', { containers: definition.containers });
        if (ticket !== latest.current) return;
        setPreview(answer);
        setPreviewError(null);
      } catch (err) {
        if (ticket !== latest.current) return;
        setPreviewError(err as Error);
      } finally {
        if (ticket === latest.current) setCounting(false);
      }
    }, DEBOUNCE_MS);
    return () => clearTimeout(timer);
  }, [shape, missing]);

  const updateContainer = (ci: number, c: ContainerInput) => setContainers(replaceAt(containers, ci, c));

  async function save(e: Event) {
    e.preventDefault();
    setSaving(true);
    setSaveError(null);
    setSaved(null);
    try {
      const answer = await postJson<{ segment: { segment_id: string }; materialisation?: { members: number } }>('/v1/segments', definition);
      setSaved({ id: answer.segment.segment_id, members: answer.materialisation?.members ?? null });
      onSaved(answer.segment.segment_id);
    } catch (err) {
      setSaveError(err);
    } finally {
      setSaving(false);
    }
  }

  const stale = counting || !!previewError;
  return (
    <section aria-labelledby="builder-title" class="panel">
      <h2 id="builder-title">Build a segment</h2>
      <p class="help">People in <strong>any</strong> container are in the segment; inside a container they must match <strong>every</strong> group (an excluded group removes its people). A group's filters are conditions on one table.</p>
      <form onSubmit={save} aria-label="Segment definition">
        <TextField label="Segment name" value={name} placeholder="e.g. Cart abandoners" required onInput={setName} class="wide" />
        {containers.map((c, ci) => (
          <ContainerEditor
            index={ci}
            container={c}
            tables={tables}
            canRemove={containers.length > 1}
            onChange={(next) => updateContainer(ci, next)}
            onRemove={() => setContainers(removeAt(containers, ci))}
          />
        ))}
        <button type="button" onClick={() => setContainers([...containers, { groups: [newGroup()] }])}>
          + Add container (or)
        </button>
        <div class="live-count" aria-live="polite" aria-atomic="true">
          <span class="muted">Members now:</span>{' '}
          <output class={`count ${stale ? 'stale' : ''}`} aria-label="Live member count" aria-busy={counting}>
            {preview && !previewError ? num(preview.members) : '–'}
          </output>
          {counting && <span class="muted"> counting…</span>}
          {previewError && (
            <span class="preview-error">
              {' '}
              Cannot count yet: {previewError.message}
              {previewError instanceof ApiError && previewError.path ? <> at <code>{previewError.path}</code></> : null}
            </span>
          )}
        </div>
        {preview && !previewError && <SqlDetails sql={preview.sql} params={preview.params} title="the segment" />}
        <ErrorNotice error={saveError} what="Saving" />
        {saved && (
          <p class="notice ok" role="status">
            Saved as <code>{saved.id}</code> with {num(saved.members)} members.
          </p>
        )}
        <button type="submit" class="primary" disabled={saving || !name.trim()}>
          {saving ? 'Saving…' : 'Save segment'}
        </button>
      </form>
    </section>
  );
}

function ContainerEditor({ index, container, tables, canRemove, onChange, onRemove }: { index: number; container: ContainerInput; tables: Record<string, TableColumns>; canRemove: boolean; onChange: (c: ContainerInput) => void; onRemove: () => void }) {
  const label = `Container ${index + 1}`;
  return (
    <fieldset class="container">
      <legend>{label}{index > 0 ? ' (or)' : ''}</legend>
      {container.groups.map((g, gi) => (
        <GroupEditor
          label={`${label}, group ${gi + 1}`}
          first={gi === 0}
          group={g}
          tables={tables}
          canRemove={container.groups.length > 1}
          onChange={(next) => onChange({ groups: replaceAt(container.groups, gi, next) })}
          onRemove={() => onChange({ groups: removeAt(container.groups, gi) })}
        />
      ))}
      <div class="row-buttons">
        <button type="button" onClick={() => onChange({ groups: [...container.groups, newGroup()] })}>
          + Add group (and)
        </button>
        {canRemove && <RemoveButton label={label} onRemove={onRemove} />}
      </div>
    </fieldset>
  );
}

/** The event a group of behavior_events is about (its first `event = …` filter), for the property pickers. */
const eventOf = (group: GroupInput) => group.filters.find((f) => f.column === 'event' && f.op === '=' && f.value.trim())?.value.trim() || '';

function GroupEditor({ label, first, group, tables, canRemove, onChange, onRemove }: { label: string; first: boolean; group: GroupInput; tables: Record<string, TableColumns>; canRemove: boolean; onChange: (g: GroupInput) => void; onRemove: () => void }) {
  const columns = tables[group.table] || {};
  const columnNames = Object.keys(columns);
  const listId = `cols-${label.replace(/\W+/g, '-')}`;
  const tableHelpId = `${listId}-table-help`;
  const event = group.table === 'behavior_events' ? eventOf(group) : '';
  const set = (change: Partial<GroupInput>) => onChange({ ...group, ...change });
  const setFilter = (i: number, change: Partial<FilterInput>) => set({ filters: replaceAt(group.filters, i, { ...group.filters[i], ...change }) });
  const setHaving = (i: number, change: Partial<HavingInput>) => set({ having: replaceAt(group.having, i, { ...group.having[i], ...change }) });

  return (
    <fieldset class={`group ${group.exclude ? 'excluded' : ''}`}>
      <legend>
        {label}
        {!first && <span class="muted"> (and)</span>}
        {group.exclude && <span class="badge bad">excluded</span>}
      </legend>
      <datalist id={listId}>
        {columnNames.map((c) => <option value={c}>{`${columnLabel(c)} (${typeLabel(columns[c])})`}</option>)}
        <option value="properties.">a key of the event's properties</option>
        <option value="traits.">a key of the traits</option>
      </datalist>
      <div class="control-row">
        <Select
          label="Table"
          value={group.table}
          onChange={(table) => set({ table, filters: [newFilter(table)], having: [] })}
          options={(Object.keys(tables).length ? Object.keys(tables) : [group.table]).map((t) => ({ value: t, label: tableInfo(t).label }))}
        />
        <p class="help table-help" id={tableHelpId}>
          {tableInfo(group.table).description} <span class="muted">(table <code>{group.table}</code>)</span>
        </p>
        <TextField label="Within the last (days)" type="number" min="1" value={group.withinDays} placeholder="any" onInput={(withinDays) => set({ withinDays })} class="narrow" />
        <Checkbox label="Exclude these people" checked={group.exclude} onChange={(exclude) => set({ exclude })} />
      </div>
      <ol class="filters" aria-label={`${label} filters`}>
        {group.filters.map((f, i) => (
          <li class="control-row">
            <ColumnSelect label={`Filter ${i + 1} column`} table={group.table} columns={columns} event={event} value={f.column} onChange={(column) => setFilter(i, { column, value: column === f.column ? f.value : '' })} />
            <Select label={`Filter ${i + 1} operator`} value={f.op} options={OPS} onChange={(op) => setFilter(i, { op })} />
            {!NO_VALUE.has(f.op) && (
              <FilterValue label={`Filter ${i + 1} value`} table={group.table} column={f.column} event={event} op={f.op} type={columns[f.column]} value={f.value} onInput={(value) => setFilter(i, { value })} />
            )}
            <button type="button" class="icon" onClick={() => set({ filters: removeAt(group.filters, i) })} aria-label={`Remove filter ${i + 1} of ${label.toLowerCase()}`}>
              ✕
            </button>
          </li>
        ))}
      </ol>
      {group.having.length > 0 && (
        <ol class="filters" aria-label={`${label} per-person conditions`}>
          {group.having.map((h, i) => (
            <li class="control-row">
              <Select label={`Per person ${i + 1}`} value={h.fn} options={AGGREGATES} onChange={(fn) => setHaving(i, { fn })} />
              {h.fn !== 'count' && <TextField label={`Per person ${i + 1} column`} value={h.column} list={listId} onInput={(column) => setHaving(i, { column })} />}
              <Select label={`Per person ${i + 1} operator`} value={h.op} options={COMPARISONS} onChange={(op) => setHaving(i, { op })} />
              <TextField label={`Per person ${i + 1} value`} type="number" value={h.value} onInput={(value) => setHaving(i, { value })} class="narrow" />
              <button type="button" class="icon" onClick={() => set({ having: removeAt(group.having, i) })} aria-label={`Remove per-person condition ${i + 1} of ${label.toLowerCase()}`}>
                ✕
              </button>
            </li>
          ))}
        </ol>
      )}
      <div class="row-buttons">
        <button type="button" onClick={() => set({ filters: [...group.filters, { column: '', op: '=', value: '' }] })}>
          + Add filter
        </button>
        <button type="button" onClick={() => set({ having: [...group.having, { fn: 'count', column: '', op: '>=', value: '2' }] })}>
          + Add per-person condition
        </button>
        {canRemove && <RemoveButton label={label} onRemove={onRemove} />}
      </div>
    </fieldset>
  );
}

function RemoveButton({ label, onRemove }: { label: string; onRemove: () => void }) {
  return (
    <button type="button" class="danger" onClick={onRemove}>
      Remove {label.toLowerCase()}
    </button>
  );
}

function SegmentList({ segments, selected, onSelect }: { segments: SegmentSummary[]; selected: string | null; onSelect: (id: string) => void }) {
  const [error, setError] = useState<unknown>(null);
  if (!segments.length) return <Empty>No segments yet. Build one above and save it.</Empty>;
  const columns: Column[] = [
    { key: 'name', label: 'Segment', sortable: true, render: (r) => <><strong>{String(r.name)}</strong><br /><code class="muted">{String(r.segment_id)}</code></> },
    { key: 'members', label: 'Members', numeric: true, sortable: true },
    { key: 'materialised_at', label: 'Refreshed (UTC)', sortable: true, render: (r) => stamp(r.materialised_at) },
    {
      key: 'actions',
      label: 'Actions',
      render: (r) => (
        <div class="stack-buttons">
          <button type="button" class="small" aria-pressed={selected === r.segment_id} onClick={() => onSelect(String(r.segment_id))}>
            Size over time<span class="visually-hidden"> of {String(r.name)}</span>
          </button>
          <button
            type="button"
            class="small"
            onClick={() => download(`/v1/segments/${encodeURIComponent(String(r.segment_id))}/members?format=csv`, `segment__${r.segment_id}.csv`).then(() => setError(null), setError)}
          >
            Download CSV<span class="visually-hidden"> of {String(r.name)}</span>
          </button>
        </div>
      ),
    },
  ];
  return (
    <>
      <ErrorNotice error={error} what="Download" />
      <DataTable caption="Saved segments" hideCaption columns={columns} rows={segments as unknown as Row[]} />
    </>
  );
}

interface Snapshot {
  materialised_at: string;
  version: number;
  members: number;
  added: number;
  removed: number;
  identified: number;
  buyers: number;
  active_7d: number;
}

function History({ segmentId, name }: { segmentId: string; name: string }) {
  const req = useRequest<{ history: Snapshot[] }>();
  useEffect(() => {
    req.run((signal) => getJson<{ history: Snapshot[] }>(`/v1/segments/${encodeURIComponent(segmentId)}/history`, undefined, signal));
  }, [segmentId]);
  const history = req.data?.history || [];
  const option = useMemo<ChartOption>(
    () => ({
      grid: { left: 56, right: 16, top: 20, bottom: 30 },
      tooltip: { trigger: 'axis' },
      xAxis: { type: 'time' },
      yAxis: { type: 'value', name: 'members', minInterval: 1 },
      series: [{ name: 'Members', type: 'line', step: 'end', showSymbol: true, data: history.map((h) => [h.materialised_at.replace(' ', 'T') + (h.materialised_at.endsWith('Z') ? '' : 'Z'), h.members]) }],
    }),
    [req.data],
  );
  return (
    <div class="history">
      <h3>Size over time: {name}</h3>
      <ErrorNotice error={req.error} what="Loading history" />
      {req.loading && <Loading />}
      {req.data && history.length === 0 && <Empty>Not materialised yet.</Empty>}
      {history.length > 0 && (
        <>
          <Chart option={option} height={200} label={`Members of ${name} at each refresh: ${history.map((h) => `${stamp(h.materialised_at)} ${h.members}`).join('; ')}. The table below has every number.`} />
          <DataTable
            caption={`Refreshes of ${name}`}
            hideCaption
            columns={[
              { key: 'materialised_at', label: 'Refreshed (UTC)', render: (r) => stamp(r.materialised_at) },
              { key: 'version', label: 'Version', numeric: true },
              { key: 'members', label: 'Members', numeric: true },
              { key: 'added', label: 'Added', numeric: true },
              { key: 'removed', label: 'Removed', numeric: true },
              { key: 'identified', label: 'Identified', numeric: true },
              { key: 'buyers', label: 'Buyers (30 d)', numeric: true },
              { key: 'active_7d', label: 'Active (7 d)', numeric: true },
            ]}
            rows={[...history].reverse() as unknown as Row[]}
          />
        </>
      )}
    </div>
  );
}
