// Auto-capture of site search: search forms, and a search query parameter in the URL, with the
// result count once the page shows it.

import type { Hub } from '../hub';
import { settle, type Stop } from '../settle';

export interface SearchOptions {
  /** Query parameters that hold a search, default ['q', 'query', 'search', 's', 'keyword']. */
  params?: string[];
  /** How long a search waits for its result count, in ms (default 3000; 0: send at once). */
  waitForResults?: number;
}

const COUNT_ATTR = 'data-search-result-count';
// searchResults() called just before the SDK sees the search (the app rendered first, or the
// call was queued by the snippet before the script loaded) belongs to the search seen next.
const TOLD_MS = 1000;

/** Sets up search capture; returns what searchResults(count) calls. */
export function captureSearch(hub: Hub, options: SearchOptions = {}): (count: number) => void {
  const params = options.params || ['q', 'query', 'search', 's', 'keyword'];
  const waitMs = options.waitForResults !== undefined ? options.waitForResults : 3000;
  let last: { query: string; at: number } | null = null;
  // The count element last reported: still on screen after a new search, it is the old count.
  let used: { el: Element; n: number } | null = null;
  let told: { n: number; at: number } | null = null;
  let pending: { n?: number; stop?: Stop } | null = null;

  const start = (query: string): void => {
    const q = query.trim();
    const at = Date.now();
    // The same search seen twice (form submit, then the results URL of a single-page app).
    if (!q || (last && last.query === q && at - last.at < 10_000)) return;
    last = { query: q, at };
    if (pending) pending.stop!();
    const search: { n?: number; stop?: Stop } = told && at - told.at < TOLD_MS ? { n: told.n } : {};
    told = null;
    pending = search;
    search.stop = settle(
      () => {
        if (pending === search) pending = null;
        const n = search.n;
        // Dated when it was searched; a count that never came is marked, so it reads as unknown, not zero.
        hub.analytics.search(q, n === undefined ? {} : { result_count: n }, {
          timestamp: at,
          context: n === undefined ? { missing: ['result_count'] } : {},
        });
      },
      waitMs,
      (records) => {
        if (search.n !== undefined) return true;
        const c = countElement();
        // The count of the last search, still on screen, is not this one's (unless set again).
        if (!c || (used && c.el === used.el && c.n === used.n && !records.some((r) => r.type === 'attributes'))) return false;
        used = c;
        search.n = c.n;
        return true;
      },
    );
  };

  const searchField = (form: HTMLFormElement): HTMLInputElement | null =>
    form.querySelector<HTMLInputElement>('[data-track-search], input[type="search"]') ||
    form.querySelector<HTMLInputElement>(params.map((p) => `input[name="${p}"]`).join(','));

  // Bubble phase on document: by then the page's own handler has run, so we know whether it
  // stays on this page (defaultPrevented: a single-page app) or navigates to a results URL.
  hub.listen(document, 'submit', (e) => {
    const form = e.target as HTMLFormElement;
    if (!form || form.tagName !== 'FORM') return;
    const field = searchField(form);
    if (!field) return;
    const method = (form.getAttribute('method') || 'get').toLowerCase();
    const navigatesWithParam = !e.defaultPrevented && method === 'get' && params.indexOf(field.name) >= 0 && sameOrigin(form.action);
    // That results page reports the search from its URL, with its result count.
    if (navigatesWithParam) return;
    start(field.value);
  });

  hub.onEnter(() => {
    const sp = new URLSearchParams(location.search);
    for (const p of params) {
      const v = sp.get(p);
      if (v) return start(v);
    }
  });
  // Leaving the page for good: send what is known.
  hub.onHide(() => pending && pending.stop!());
  hub.onCleanup(() => pending && pending.stop!(false));

  return (count) => {
    const n = Math.floor(count);
    if (!(n >= 0)) return;
    if (pending) {
      pending.n = n;
      pending.stop!();
    } else told = { n, at: Date.now() };
  };
}

function sameOrigin(action: string): boolean {
  try {
    return new URL(action, location.href).origin === location.origin;
  } catch {
    return false;
  }
}

/** A results page says how many it found: <… data-search-result-count="12">. */
function countElement(): { el: Element; n: number } | undefined {
  const el = document.querySelector(`[${COUNT_ATTR}]`);
  if (!el) return undefined;
  const n = parseInt(el.getAttribute(COUNT_ATTR) || '', 10);
  return isNaN(n) || n < 0 ? undefined : { el, n };
}
