// The segment builder's column and value pickers: readable labels instead of raw column names.
// On behavior_events the columns are the properties seen on the group's event (GET
// /v1/meta/properties) and values are suggested from the data (GET /v1/meta/values); on the
// other tables the columns are the table's own, each with a label and its type. The value kept
// is always the raw name, so the definition sent to the API does not change.
import { useId, useMemo, useState } from 'preact/hooks';
import { num } from '../format';
import { useCatalogue } from '../meta';
import { columnLabel, typeLabel, type TableColumns } from '../segment-tables';
import { TextField } from './fields';
import { useProperties, ValueField } from './property-picker';

export const EVENTS_TABLE = 'behavior_events';
// The choice that reveals a text field, for a name not in the list (a JSON key, say).
const OTHER = '\u0000other';
// Columns of the events table that are ids or raw JSON: no use as a condition in a picker.
const HIDDEN = new Set(['message_id', 'properties', 'traits', 'context', 'session_event_seq',
  'day_event_seq']);

interface Choice {
  name: string;
  label: string;
  group: string;
}

/** The columns offered for a group's table, labelled and grouped. */
function useChoices(table: string, columns: TableColumns, event: string): Choice[] {
  const seen = useProperties(table === EVENTS_TABLE ? event : '');
  return useMemo(() => {
    if (table !== EVENTS_TABLE) {
      return Object.entries(columns).map(([name, type]) => ({ name, label: `${columnLabel(name)} (${typeLabel(type)})`, group: 'Columns' }));
    }
    const choices: Choice[] = [{ name: 'event', label: 'Event name', group: 'Event fields' }];
    for (const p of seen) {
      if (p.name === 'event' || HIDDEN.has(p.name)) continue;
      const type = p.kind === 'column' ? typeLabel(columns[p.name]) : '';
      choices.push({
        name: p.name,
        label: `${columnLabel(p.name)}${type ? ` (${type})` : ''} · ${num(p.events)} events`,
        group: p.kind === 'column' ? 'Event fields' : 'Event properties',
      });
    }
    return choices;
  }, [table, columns, seen]);
}

/** A column <select> with readable labels; "Other…" lets one type a name (e.g. traits.plan). */
export function ColumnSelect({ label, table, columns, event, value, onChange }: { label: string; table: string; columns: TableColumns; event: string; value: string; onChange: (column: string) => void }) {
  const id = useId();
  const choices = useChoices(table, columns, event);
  const known = choices.some((c) => c.name === value);
  const [other, setOther] = useState(false);
  // A name typed by hand (or not loaded yet) stays visible and editable.
  const typed = !known && (value !== '' || other);
  const groups = [...new Set(choices.map((c) => c.group))];
  return (
    <>
      <div class="field column-picker">
        <label class="field-label" for={id}>{label}</label>
        <select id={id} value={known ? value : typed ? OTHER : ''} onChange={(e) => {
          const picked = (e.target as HTMLSelectElement).value;
          setOther(picked === OTHER);
          onChange(picked === OTHER ? (typed ? value : table === EVENTS_TABLE ? 'properties.' : '') : picked);
        }}>
          <option value="" selected={!known && !typed}>Choose…</option>
          {groups.map((g) => (
            <optgroup label={g}>
              {choices.filter((c) => c.group === g).map((c) => (
                <option value={c.name} selected={c.name === value}>{c.label}</option>
              ))}
            </optgroup>
          ))}
          <option value={OTHER} selected={typed}>Other (type a name)…</option>
        </select>
      </div>
      {typed && <TextField label={`${label} name`} value={value} placeholder="column, properties.key or traits.key" onInput={onChange} />}
    </>
  );
}

/** The value of a filter: event names for the event, the data's values for an event property, else free text. */
export function FilterValue({ label, table, column, event, op, type, value, onInput }: { label: string; table: string; column: string; event: string; op: string; type: string | undefined; value: string; onInput: (v: string) => void }) {
  const { catalogue } = useCatalogue();
  const listId = useId();
  const many = op === 'in' || op === 'not_in';
  const placeholder = op === 'between' ? 'low, high' : many ? 'a, b, c' : type ? typeLabel(type) : 'value';
  if (table === EVENTS_TABLE && column === 'event') {
    return (
      <>
        <TextField label={label} value={value} list={listId} placeholder={many ? 'a, b, c' : 'pick or type an event'} onInput={onInput} />
        <datalist id={listId}>{catalogue?.eventNames.map((n) => <option value={n} />)}</datalist>
      </>
    );
  }
  if (table === EVENTS_TABLE && column && !column.endsWith('.') && !many && op !== 'between') {
    return <ValueField label={label} event={event} property={column} value={value} onInput={onInput} />;
  }
  return <TextField label={label} value={value} placeholder={placeholder} onInput={onInput} />;
}
