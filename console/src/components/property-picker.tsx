// Pickers filled from the data: the properties seen on an event (GET /v1/meta/properties) and a
// property's most frequent values (GET /v1/meta/values), so nobody types a property name or a
// value blind. Property lists are cached per event for the session; values are asked as one types.
import { useEffect, useId, useMemo, useState } from 'preact/hooks';
import { getJson } from '../api';
import { num } from '../format';

export interface PropertyInfo {
  name: string;
  kind: 'column' | 'property';
  events: number;
}

export interface ValueInfo {
  value: string;
  events: number;
  people: number;
}

const propertyCache = new Map<string, Promise<PropertyInfo[]>>();

export function loadProperties(event: string): Promise<PropertyInfo[]> {
  let found = propertyCache.get(event);
  if (!found) {
    found = getJson<{ properties: PropertyInfo[] }>('/v1/meta/properties', { event }).then((r) => r.properties);
    propertyCache.set(event, found);
    found.catch(() => propertyCache.delete(event)); // ask again next time
  }
  return found;
}

/** The properties seen on `event` ('' = on any event); [] until they arrive or if they fail. */
export function useProperties(event: string): PropertyInfo[] {
  const [list, setList] = useState<PropertyInfo[]>([]);
  useEffect(() => {
    let live = true;
    loadProperties(event).then(
      (p) => live && setList(p),
      () => live && setList([]),
    );
    return () => {
      live = false;
    };
  }, [event]);
  return list;
}

/** The most frequent values of `property` on `event` containing `q` (debounced while typing). */
export function useValues(event: string, property: string, q: string, limit = 50): ValueInfo[] {
  const [values, setValues] = useState<ValueInfo[]>([]);
  useEffect(() => {
    if (!property) {
      setValues([]);
      return;
    }
    const controller = new AbortController();
    const timer = setTimeout(() => {
      getJson<{ values: ValueInfo[] }>('/v1/meta/values', { event, property, q, limit }, controller.signal).then(
        (r) => setValues(r.values),
        () => !controller.signal.aborted && setValues([]),
      );
    }, 200);
    return () => {
      clearTimeout(timer);
      controller.abort();
    };
  }, [event, property, q, limit]);
  return values;
}

export interface PropertyGroup {
  label: string;
  names: string[];
}

/** Columns first, then keys of the properties JSON: how the pickers group property names. */
export function groupProperties(names: string[]): PropertyGroup[] {
  const fields = names.filter((n) => !n.startsWith('properties.') && !n.startsWith('segment:'));
  const props = names.filter((n) => n.startsWith('properties.'));
  const segments = names.filter((n) => n.startsWith('segment:'));
  return [
    { label: 'Event fields', names: fields },
    { label: 'Event properties', names: props },
    { label: 'Segments', names: segments },
  ].filter((g) => g.names.length);
}

/**
 * A property <select> grouped by kind, with an optional search box that narrows it: the list of an
 * event's properties (or every breakdown) is long, so it is grouped and searchable. The chosen value
 * always stays among the options, even when the search hides its group.
 */
export function PropertySelect({
  label,
  value,
  names,
  counts,
  onChange,
  empty,
  searchable = false,
  disabled = false,
}: {
  label: string;
  value: string;
  names: string[];
  counts?: Map<string, number>;
  onChange: (v: string) => void;
  /** the label of the "no property" choice ('' value); none when omitted */
  empty?: string;
  searchable?: boolean;
  disabled?: boolean;
}) {
  const id = useId();
  const [search, setSearch] = useState('');
  const shown = useMemo(() => {
    const needle = search.trim().toLowerCase();
    const kept = needle ? names.filter((n) => n.toLowerCase().includes(needle) || n === value) : names;
    return groupProperties(value && !kept.includes(value) ? [value, ...kept] : kept);
  }, [names, search, value]);
  const optionLabel = (n: string) => (counts?.has(n) ? `${n} (${num(counts.get(n))} events)` : n);
  return (
    <div class="field property-picker">
      <label class="field-label" for={id}>{label}</label>
      {searchable && (
        <input
          type="search"
          class="property-search"
          aria-label={`Find: ${label}`}
          placeholder="type to narrow…"
          value={search}
          disabled={disabled}
          onInput={(e) => setSearch((e.target as HTMLInputElement).value)}
        />
      )}
      <select id={id} value={value} disabled={disabled} onChange={(e) => onChange((e.target as HTMLSelectElement).value)}>
        {empty !== undefined && <option value="" selected={value === ''}>{empty}</option>}
        {shown.map((g) => (
          <optgroup label={g.label}>
            {g.names.map((n) => (
              <option value={n} selected={n === value}>
                {optionLabel(n)}
              </option>
            ))}
          </optgroup>
        ))}
      </select>
    </div>
  );
}

/** A value field with suggestions: the property's most frequent values on the event, as one types. */
export function ValueField({ label, event, property, value, onInput }: { label: string; event: string; property: string; value: string; onInput: (v: string) => void }) {
  const id = useId();
  const listId = `${id}-values`;
  const values = useValues(event, property, value);
  return (
    <div class="field">
      <label class="field-label" for={id}>{label}</label>
      <input id={id} type="text" list={listId} value={value} autocomplete="off" placeholder={property ? 'pick or type a value' : 'choose a property first'} disabled={!property} onInput={(e) => onInput((e.target as HTMLInputElement).value)} />
      <datalist id={listId}>
        {values.map((v) => (
          <option value={v.value}>{`${num(v.events)} events, ${num(v.people)} people`}</option>
        ))}
      </datalist>
    </div>
  );
}
