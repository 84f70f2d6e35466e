// Auto-capture of site search: search forms, and a search query parameter in the URL.

import type { Hub } from '../hub';

export interface SearchOptions {
  /** Query parameters that hold a search, default ['q', 'query', 'search', 's', 'keyword']. */
  params?: string[];
}

export function captureSearch(hub: Hub, options: SearchOptions = {}): void {
  const params = options.params || ['q', 'query', 'search', 's', 'keyword'];
  let last: { query: string; at: number } | null = null;

  const send = (query: string): void => {
    const q = query.trim();
    if (!q) return;
    // The same search seen twice (form submit, then the results URL of a single-page app).
    if (last && last.query === q && Date.now() - last.at < 10_000) return;
    last = { query: q, at: Date.now() };
    const props: Record<string, unknown> = {};
    const count = resultCount();
    if (count !== undefined) props.result_count = count;
    hub.analytics.search(q, props);
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
    send(field.value);
  });

  hub.onEnter(() => {
    const sp = new URLSearchParams(location.search);
    for (const p of params) {
      const v = sp.get(p);
      if (v) {
        send(v);
        return;
      }
    }
  });
}

function sameOrigin(action: string): boolean {
  try {
    return new URL(action, location.href).origin === location.origin;
  } catch {
    return false;
  }
}

/** A results page may say how many it found: <… data-search-result-count="12">. */
function resultCount(): number | undefined {
  const el = document.querySelector('[data-search-result-count]');
  if (!el) return undefined;
  const n = parseInt(el.getAttribute('data-search-result-count') || '', 10);
  return isNaN(n) || n < 0 ? undefined : n;
}
