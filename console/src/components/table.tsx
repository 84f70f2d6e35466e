// The data table every chart has beside it (and that the tests read). Sortable headers are buttons
// inside <th aria-sort>; sorting is done here, or by the server when the view passes onSort.
import type { ComponentChildren } from 'preact';
import { useMemo, useState } from 'preact/hooks';
import { num } from '../format';

export type Row = Record<string, unknown>;

export interface Column {
  key: string;
  label: string;
  numeric?: boolean;
  render?: (row: Row) => ComponentChildren;
  sortable?: boolean;
}

export interface Sort {
  key: string;
  desc: boolean;
}

interface Props {
  caption: string;
  columns: Column[];
  rows: Row[];
  /** Client-side sorting on every column marked sortable. */
  sort?: Sort | null;
  /** Server-side sorting: the view fetches again and passes the new `sort`. */
  onSort?: (sort: Sort) => void;
  rowClass?: (row: Row) => string;
  empty?: string;
  hideCaption?: boolean;
}

function compare(a: unknown, b: unknown): number {
  const na = Number(a);
  const nb = Number(b);
  if (a !== null && b !== null && a !== '' && b !== '' && Number.isFinite(na) && Number.isFinite(nb)) return na - nb;
  return String(a ?? '').localeCompare(String(b ?? ''));
}

export function DataTable({ caption, columns, rows, sort: initialSort = null, onSort, rowClass, empty = 'No rows.', hideCaption }: Props) {
  const [localSort, setLocalSort] = useState<Sort | null>(initialSort);
  const sort = onSort ? initialSort : localSort;

  const shown = useMemo(() => {
    if (onSort || !localSort) return rows;
    const sorted = [...rows].sort((a, b) => compare(a[localSort.key], b[localSort.key]));
    return localSort.desc ? sorted.reverse() : sorted;
  }, [rows, localSort, onSort]);

  function toggle(key: string, numeric?: boolean) {
    // Numbers sort largest first on the first click: that is the question people usually ask.
    const next = sort && sort.key === key ? { key, desc: !sort.desc } : { key, desc: !!numeric };
    if (onSort) onSort(next);
    else setLocalSort(next);
  }

  return (
    // Focusable, so a keyboard can scroll a table wider or taller than its box.
    <div class="table-wrap" tabIndex={0}>
      <table>
        <caption class={hideCaption ? 'visually-hidden' : undefined}>{caption}</caption>
        <thead>
          <tr>
            {columns.map((c) => {
              const active = sort && sort.key === c.key;
              const ariaSort = c.sortable ? (active ? (sort!.desc ? 'descending' : 'ascending') : 'none') : undefined;
              return (
                <th scope="col" class={c.numeric ? 'num' : undefined} aria-sort={ariaSort}>
                  {c.sortable ? (
                    <button type="button" class="sort" onClick={() => toggle(c.key, c.numeric)}>
                      {c.label}
                      <span class="sort-mark" aria-hidden="true">{active ? (sort!.desc ? '▼' : '▲') : '↕'}</span>
                    </button>
                  ) : (
                    c.label
                  )}
                </th>
              );
            })}
          </tr>
        </thead>
        <tbody>
          {shown.length === 0 ? (
            <tr>
              <td colSpan={columns.length} class="empty-row">{empty}</td>
            </tr>
          ) : (
            shown.map((row) => (
              <tr class={rowClass ? rowClass(row) : undefined}>
                {columns.map((c) => (
                  <td class={c.numeric ? 'num' : undefined}>{c.render ? c.render(row) : c.numeric ? num(row[c.key]) : String(row[c.key] ?? '')}</td>
                ))}
              </tr>
            ))
          )}
        </tbody>
      </table>
    </div>
  );
}

/** An analysis answer's columns + rows as row objects. */
export function rowsOf(columns: string[], rows: unknown[][]): Row[] {
  return rows.map((r) => Object.fromEntries(columns.map((c, i) => [c, r[i]])));
}
