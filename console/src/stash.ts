// Hands a query from one view to the SQL view: the SQL is too long for a URL, so the link carries a key.
export interface StashedQuery {
  sql: string;
  params: Record<string, unknown>;
  title: string;
}

const PREFIX = 'funnelhouse.console.sql.';

export function stashQuery(query: StashedQuery): string {
  const key = Math.random().toString(36).slice(2, 10);
  sessionStorage.setItem(PREFIX + key, JSON.stringify(query));
  return key;
}

export function readStashedQuery(key: string): StashedQuery | null {
  const text = sessionStorage.getItem(PREFIX + key);
  return text ? (JSON.parse(text) as StashedQuery) : null;
}
