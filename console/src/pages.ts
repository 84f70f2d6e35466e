// Page paths and screen names people view most (GET /v1/meta "pages"), offered as Paths' start page.
import { useEffect, useState } from 'preact/hooks';
import { loadCatalogue } from './meta';

export interface PageCount {
  page: string;
  views: number;
}

let loading: Promise<PageCount[]> | null = null;

async function fetchPages(): Promise<PageCount[]> {
  const catalogue = await loadCatalogue();
  return (catalogue.meta as { pages?: PageCount[] }).pages ?? [];
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
