// What the pickers offer: events seen (GET /v1/meta) and planned (GET /v1/plan), breakdowns, the
// date range with data. Loaded once per login and shared by every view (the top pages and segment
// tables of pages.ts and segment-tables.ts are read from it too).
import { getJson } from './api';
import { useLoaded } from './components/useLoaded';

export interface Meta {
  events: { name: string; count: number }[];
  breakdowns: string[];
  date_range: { min: string | null; max: string | null };
  reporting_tz: string;
  sources: string[];
}

export interface PlanProperty {
  name: string;
  type: string | string[];
  required: boolean;
  description?: string;
}

export interface Plan {
  events: { name: string; version: number | string; description?: string; properties: PlanProperty[] }[];
  sources: unknown[];
}

export interface Catalogue {
  meta: Meta;
  plan: Plan;
  /** Every event name worth offering: planned ones and seen ones, most frequent first. */
  eventNames: string[];
}

let loading: Promise<Catalogue> | null = null;

export function loadCatalogue(): Promise<Catalogue> {
  if (!loading) {
    loading = Promise.all([getJson<Meta>('/v1/meta'), getJson<Plan>('/v1/plan')]).then(([meta, plan]) => {
      const seen = [...meta.events].sort((a, b) => b.count - a.count).map((e) => e.name);
      const planned = plan.events.map((e) => e.name).filter((n) => !seen.includes(n)).sort();
      return { meta, plan, eventNames: [...seen, ...planned] };
    });
    loading.catch(() => {
      loading = null; // let the next view try again
    });
  }
  return loading;
}

export function forgetCatalogue(): void {
  loading = null;
}

export function useCatalogue(): { catalogue: Catalogue | null; error: unknown } {
  const { value, error } = useLoaded<Catalogue | null>(loadCatalogue, null);
  return { catalogue: value, error };
}

/** Sources as strings, whatever shape the plan gives them in. */
export function sourceNames(c: Catalogue | null): string[] {
  if (!c) return [];
  const names = new Set<string>(c.meta.sources.map((s) => (typeof s === 'string' ? s : String((s as { name?: string }).name ?? s))));
  return [...names].sort();
}

/**
 * Whether the models have built the tables the analyses read: /v1/meta lists each segment table's
 * columns, and a table that does not exist yet has none. Unknown (an older server): assume built.
 */
export function modelsBuilt(c: Catalogue | null): boolean {
  const tables = (c?.meta as { segment_tables?: Record<string, unknown[]> } | undefined)?.segment_tables;
  if (!tables || !('behavior_events' in tables)) return true;
  return (tables.behavior_events || []).length > 0;
}
