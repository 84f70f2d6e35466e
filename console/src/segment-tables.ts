// The tables a segment group may read and their columns (name → ClickHouse type), for the
// builder's pickers, from GET /v1/meta.
import { useLoaded } from './components/useLoaded';
import { loadCatalogue } from './meta';

export type TableColumns = Record<string, string>;

const NONE: Record<string, TableColumns> = {};

// GET /v1/meta lists them in the order of funnelhouse.segments.SEGMENT_TABLES.
async function fetchTables(): Promise<Record<string, TableColumns>> {
  const catalogue = await loadCatalogue();
  const listed = (catalogue.meta as { segment_tables?: Record<string, { name: string; type: string }[]> }).segment_tables ?? {};
  return Object.fromEntries(Object.entries(listed).map(([table, columns]) => [table, Object.fromEntries(columns.map((c) => [c.name, c.type]))]));
}

export function useSegmentTables(): { tables: Record<string, TableColumns>; error: unknown } {
  const { value, error } = useLoaded(fetchTables, NONE);
  return { tables: value, error };
}
