// A table whose rows each open a details row beneath them (QA's event details, coverage's
// properties): the last column holds the Show/Hide button, and the view keeps which rows are open.
import { Fragment } from 'preact';
import type { ComponentChildren, HTMLAttributes } from 'preact';
import { useState } from 'preact/hooks';

export interface Header {
  label: string;
  numeric?: boolean;
}

/** Which rows are open, by key: toggle one, or close them all (when the rows change). */
export function useOpenRows(): { open: Set<string>; toggle: (key: string) => void; closeAll: () => void } {
  const [open, setOpen] = useState<Set<string>>(new Set());
  function toggle(key: string) {
    setOpen((old) => {
      const next = new Set(old);
      if (next.has(key)) next.delete(key);
      else next.add(key);
      return next;
    });
  }
  return { open, toggle, closeAll: () => setOpen(new Set()) };
}

interface Props<T> {
  caption: string;
  tableClass?: string;
  headers: Header[];
  rows: T[];
  keyOf: (row: T) => string;
  /** The row's cells, one per header (the toggle's cell is added). */
  cells: (row: T) => ComponentChildren;
  rowAttrs?: (row: T) => HTMLAttributes<HTMLTableRowElement>;
  details: (row: T) => ComponentChildren;
  detailsId: (row: T) => string;
  /** The button's text while closed ("Details"), and what it opens, for screen readers ("of page_view"). */
  toggleText: string;
  toggleOf: (row: T) => string;
  canExpand?: (row: T) => boolean;
  open: Set<string>;
  onToggle: (key: string) => void;
  /** A row shown in the body when there are no rows. */
  emptyRow?: ComponentChildren;
}

export function ExpandableTable<T>({ caption, tableClass, headers, rows, keyOf, cells, rowAttrs, details, detailsId, toggleText, toggleOf, canExpand, open, onToggle, emptyRow }: Props<T>) {
  const width = headers.length + 1;
  return (
    <div class="table-wrap tall" tabIndex={0}>
      <table class={tableClass}>
        <caption class="visually-hidden">{caption}</caption>
        <thead>
          <tr>
            {headers.map((h) => (
              <th scope="col" class={h.numeric ? 'num' : undefined}>{h.label}</th>
            ))}
            <th scope="col"><span class="visually-hidden">{toggleText}</span></th>
          </tr>
        </thead>
        <tbody>
          {rows.length === 0 && emptyRow && (
            <tr>
              <td colSpan={width} class="empty-row">{emptyRow}</td>
            </tr>
          )}
          {rows.map((row) => {
            const key = keyOf(row);
            const expanded = open.has(key);
            const id = detailsId(row);
            return (
              <Fragment key={key}>
                <tr {...rowAttrs?.(row)}>
                  {cells(row)}
                  <td>
                    {(!canExpand || canExpand(row)) && (
                      <button type="button" class="small" aria-expanded={expanded} aria-controls={id} onClick={() => onToggle(key)}>
                        {expanded ? 'Hide' : toggleText}
                        <span class="visually-hidden"> {toggleOf(row)}</span>
                      </button>
                    )}
                  </td>
                </tr>
                {expanded && (
                  <tr class="details-row" id={id}>
                    <td colSpan={width}>{details(row)}</td>
                  </tr>
                )}
              </Fragment>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}
