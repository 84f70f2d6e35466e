// The tables a segment group may read and their columns (name → ClickHouse type), for the
// builder's pickers, from GET /v1/meta.
import { useEffect, useState } from 'preact/hooks';
import { loadCatalogue } from './meta';

export type TableColumns = Record<string, string>;

let loading: Promise<Record<string, TableColumns>> | null = null;

// GET /v1/meta lists them in the order of funnelhouse.segments.SEGMENT_TABLES.
async function fetchTables(): Promise<Record<string, TableColumns>> {
  const catalogue = await loadCatalogue();
  const listed = (catalogue.meta as { segment_tables?: Record<string, { name: string; type: string }[]> }).segment_tables ?? {};
  return Object.fromEntries(Object.entries(listed).map(([table, columns]) => [table, Object.fromEntries(columns.map((c) => [c.name, c.type]))]));
}

export function useSegmentTables(): { tables: Record<string, TableColumns>; error: unknown } {
  const [tables, setTables] = useState<Record<string, TableColumns>>({});
  const [error, setError] = useState<unknown>(null);
  useEffect(() => {
    if (!loading) {
      loading = fetchTables();
      loading.catch(() => (loading = null));
    }
    let live = true;
    loading.then((t) => live && setTables(t), (e) => live && setError(e));
    return () => {
      live = false;
    };
  }, []);
  return { tables, error };
}
