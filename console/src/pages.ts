// Page paths and screen names people view most, offered as Paths' start page. From GET /v1/meta
// when it lists them, else read through the read-only SQL endpoint.
import { useEffect, useState } from 'preact/hooks';
import { postJson } from './api';
import { loadCatalogue } from './meta';

export interface PageCount {
  page: string;
  views: number;
}

const TOP_PAGES_SQL = `SELECT page_path AS page, count() AS views
FROM behavior_events
WHERE event IN ('page_view', 'screen_view') AND page_path != ''
GROUP BY page
ORDER BY views DESC, page
LIMIT 200`;

let loading: Promise<PageCount[]> | null = null;

async function fetchPages(): Promise<PageCount[]> {
  const catalogue = await loadCatalogue();
  const listed = (catalogue.meta as { pages?: PageCount[] }).pages;
  if (Array.isArray(listed)) return listed;
  const answer = await postJson<{ data: { page: string; views: string | number }[] }>('/v1/sql', { sql: TOP_PAGES_SQL });
  return answer.data.map((r) => ({ page: r.page, views: Number(r.views) }));
}

export function usePages(): { pages: PageCount[]; error: unknown } {
  const [pages, setPages] = useState<PageCount[]>([]);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => {
    if (!loading) {
      loading = fetchPages();
      loading.catch(() => (loading = null));
    }
    let live = true;
    loading.then((p) => live && setPages(p), (e) => live && setError(e));
    return () => {
      live = false;
    };
  }, []);
  return { pages, error };
}
