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

/** What a segment group's table holds, in the words of someone building an audience. */
export interface TableInfo {
  label: string;
  description: string;
}

// One entry per funnelhouse.people.segments.SEGMENT_TABLES; a table the server adds later
// falls back to a label made from its name (tableInfo).
export const TABLE_INFO: Record<string, TableInfo> = {
  behavior_events: { label: 'Events they did', description: 'Every event a person sent (page views, clicks, carts, purchases …) with its properties.' },
  users: { label: 'Their profile', description: 'One row per person: first and last seen, traits, lifetime figures.' },
  sessions: { label: 'Their visits', description: 'One row per session: when it started, how long it lasted, where it came from.' },
  product_engagement: { label: 'Products they looked at', description: 'One row per person, product and day: views, carts, swipes and whether it was bought.' },
  orders: { label: 'Their orders', description: 'One row per order: when, revenue, currency, channel.' },
  order_items: { label: 'Products they bought', description: 'One row per order line: product, price, quantity.' },
  funnel_stages: { label: 'How far they got', description: 'Their lifecycle stage (visited, viewed a product, bought once, bought again) on each active day.' },
};

export function tableInfo(table: string): TableInfo {
  return TABLE_INFO[table] ?? { label: columnLabel(table), description: '' };
}

// Words written in capitals (or otherwise) when a column name is read out.
const WORDS: Record<string, string> = { id: 'ID', ids: 'IDs', utm: 'UTM', url: 'URL', ms: '(ms)', ip: 'IP', os: 'OS', sdk: 'SDK', seq: 'sequence', ltv: 'LTV', qty: 'quantity', pct: '%', '7d': '(7 days)', '30d': '(30 days)' };

/** A column name as words: `lifetime_revenue` → "Lifetime revenue", `properties.plan` → "plan (property)". */
export function columnLabel(name: string): string {
  for (const prefix of ['properties.', 'traits.']) {
    if (name.startsWith(prefix)) return `${name.slice(prefix.length)} (${prefix === 'traits.' ? 'trait' : 'property'})`;
  }
  const words = name.split('_').filter(Boolean).map((w) => WORDS[w.toLowerCase()] ?? w.toLowerCase());
  const text = words.join(' ');
  return text ? text[0].toUpperCase() + text.slice(1) : name;
}

/** A ClickHouse type in plain words: "number", "text", "date and time", "list of text" … */
export function typeLabel(type: string | undefined): string {
  if (!type) return '';
  const inner = type.replace(/^(Nullable|LowCardinality)\((.*)\)$/, '$2').replace(/^(Nullable|LowCardinality)\((.*)\)$/, '$2');
  if (inner.startsWith('Array(')) return `list of ${typeLabel(inner.slice(6, -1))}`;
  if (inner.startsWith('Map(')) return 'key → value map';
  if (/Int|Float|Decimal/.test(inner)) return 'number';
  if (inner.startsWith('DateTime')) return 'date and time';
  if (inner.startsWith('Date')) return 'date';
  if (inner === 'Bool') return 'yes/no';
  if (inner.includes('String') || inner.startsWith('Enum')) return 'text';
  return inner;
}
