// Page paths and screen names people view most (GET /v1/meta "pages"), offered as Paths' start page.
import { useLoaded } from './components/useLoaded';
import { loadCatalogue } from './meta';

export interface PageCount {
  page: string;
  views: number;
}

const NONE: PageCount[] = [];

async function fetchPages(): Promise<PageCount[]> {
  const catalogue = await loadCatalogue();
  return (catalogue.meta as { pages?: PageCount[] }).pages ?? [];
}

export function usePages(): { pages: PageCount[]; error: unknown } {
  const { value, error } = useLoaded(fetchPages, NONE);
  return { pages: value, error };
}
