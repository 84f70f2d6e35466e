// The tables a segment group may read and their columns (name → ClickHouse type), for the
// builder's pickers. From GET /v1/meta when it lists them, else from system.columns through
// the read-only SQL endpoint.
import { useEffect, useState } from 'preact/hooks';
import { postJson } from './api';
import { loadCatalogue } from './meta';

export type TableColumns = Record<string, string>;

// The order of funnelhouse.segments.SEGMENT_TABLES.
const SEGMENT_TABLES = ['behavior_events', 'users', 'sessions', 'orders', 'order_items', 'product_engagement', 'funnel_stages'];

let loading: Promise<Record<string, TableColumns>> | null = null;

async function fetchTables(): Promise<Record<string, TableColumns>> {
  const catalogue = await loadCatalogue();
  const listed = (catalogue.meta as { segment_tables?: Record<string, { name: string; type: string }[]> }).segment_tables;
  const tables: Record<string, TableColumns> = Object.fromEntries(SEGMENT_TABLES.map((t) => [t, {}]));
  if (listed) {
    for (const [table, columns] of Object.entries(listed)) tables[table] = Object.fromEntries(columns.map((c) => [c.name, c.type]));
    return tables;
  }
  const answer = await postJson<{ data: { table: string; name: string; type: string }[] }>('/v1/sql', {
    sql: `SELECT table, name, type FROM system.columns WHERE database = currentDatabase() AND table IN (${SEGMENT_TABLES.map((t) => `'${t}'`).join(', ')}) ORDER BY table, position`,
  });
  for (const c of answer.data) tables[c.table][c.name] = c.type;
  return tables;
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
