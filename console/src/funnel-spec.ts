// A funnel as the console edits it, and its two other forms: the link that carries it
// (#/funnels?steps=…&exclude=…&hold=…) and the spec POST /v1/analyses/funnel takes (docs/analyses.md).
import type { DateWindow } from './components/fields';

export const OPERATORS = ['=', '!=', '~', '!~', '>', '>=', '<', '<='] as const;

export interface FilterInput {
  prop: string;
  op: string;
  value: string;
}

export interface StepInput {
  event: string;
  filters: FilterInput[];
  /** may be skipped (the engine allows it on steps 2..n-1, not in an any-order funnel) */
  optional: boolean;
}

/** A person doing `event` after reaching step `from` and before step `to` leaves the funnel. */
export interface ExclusionInput {
  event: string;
  from: number;
  to: number;
}

export interface FunnelState {
  steps: StepInput[];
  window: [string, string];
  order: string;
  breakdown: string;
  attribution: string;
  hold: string;
  exclusions: ExclusionInput[];
  dates: DateWindow;
}

const FILTER = /^\s*([^=!~<>]+?)\s*(!=|!~|>=|<=|=|~|>|<)(.*)$/;

/** `category=shoes,price>100` (how links written before the pickers carried filters). */
export function parseFilters(text: string): FilterInput[] {
  return text
    .split(',')
    .map((part) => part.match(FILTER))
    .filter((m): m is RegExpMatchArray => !!m)
    .map((m) => ({ prop: m[1], op: m[2], value: m[3] }));
}

/** Whether step i (0-based) of n may be optional in this order. */
export function canBeOptional(i: number, n: number, order: string): boolean {
  return order !== 'any' && i > 0 && i < n - 1;
}

const asInt = (v: unknown, fallback: number) => (Number.isInteger(Number(v)) && Number(v) > 0 ? Number(v) : fallback);

function stepFromLink(x: any): StepInput {
  const filters = Array.isArray(x?.filters)
    ? x.filters.map((f: any) => ({ prop: String(f?.prop ?? ''), op: OPERATORS.includes(f?.op) ? String(f.op) : '=', value: String(f?.value ?? '') }))
    : parseFilters(String(x?.filter ?? ''));
  return { event: String(x?.event ?? ''), filters, optional: x?.optional === true };
}

/** The funnel a link carries, or null when it carries none (or a damaged one). */
export function fromLink(query: URLSearchParams): FunnelState | null {
  let steps: StepInput[] = [];
  let exclusions: ExclusionInput[] = [];
  try {
    const parsed = JSON.parse(query.get('steps') || '[]');
    if (Array.isArray(parsed)) steps = parsed.map(stepFromLink);
    const excluded = JSON.parse(query.get('exclude') || '[]');
    if (Array.isArray(excluded)) exclusions = excluded.map((x) => ({ event: String(x?.event ?? ''), from: asInt(x?.from, 1), to: asInt(x?.to, steps.length) }));
  } catch {
    return null; // a damaged link: start from the defaults
  }
  if (steps.length < 2) return null;
  const [, value = '7', unit = 'd'] = (query.get('window') || '').match(/^(\d+)([mhd])$/) || [];
  return {
    steps,
    window: [value, unit],
    order: query.get('order') || 'loose',
    breakdown: query.get('breakdown') || '',
    attribution: query.get('attribution') === 'last' ? 'last' : 'first',
    hold: query.get('hold') || '',
    exclusions,
    dates: { date_from: query.get('from') || '', date_to: query.get('to') || '' },
  };
}

export function windowText(state: FunnelState): string {
  return `${Math.max(1, Number(state.window[0]) || 1)}${state.window[1]}`;
}

/** The link's query: everything needed to open the same funnel again. */
export function toLink(state: FunnelState): Record<string, string> {
  const link: Record<string, string> = {
    steps: JSON.stringify(state.steps.map((s) => ({ event: s.event, filters: s.filters.filter((f) => f.prop), ...(s.optional ? { optional: true } : {}) }))),
    window: windowText(state),
    order: state.order,
    from: state.dates.date_from,
    to: state.dates.date_to,
  };
  if (state.breakdown) link.breakdown = state.breakdown;
  if (state.breakdown && state.attribution !== 'first') link.attribution = state.attribution;
  if (state.hold) link.hold = state.hold;
  if (state.exclusions.length) link.exclude = JSON.stringify(state.exclusions);
  return link;
}

/** The problems that keep the funnel from running, in words. */
export function problems(state: FunnelState): string[] {
  const out: string[] = [];
  const n = state.steps.length;
  if (n < 2 || !state.steps.every((s) => s.event)) out.push('Choose an event for every step (at least two).');
  state.exclusions.forEach((x, i) => {
    if (!x.event) out.push(`Choose the event of exclusion ${i + 1}.`);
    if (!(1 <= x.from && x.from < x.to && x.to <= n)) out.push(`Exclusion ${i + 1}: "after step" must come before "before step".`);
  });
  return out;
}

/** The spec of POST /v1/analyses/funnel. */
export function toSpec(state: FunnelState): Record<string, unknown> {
  const n = state.steps.length;
  return {
    steps: state.steps.map((s) => {
      const filters = s.filters.filter((f) => f.prop.trim());
      return filters.length ? { event: s.event, filters: filters.map((f) => ({ prop: f.prop.trim(), op: f.op, value: f.value })) } : s.event;
    }),
    window: windowText(state),
    order: state.order,
    optional: state.steps.map((s, i) => (s.optional && canBeOptional(i, n, state.order) ? i + 1 : 0)).filter(Boolean),
    exclude: state.exclusions.map((x) => ({ event: x.event, from_step: x.from, to_step: x.to })),
    hold: state.hold || null,
    breakdown: state.breakdown || null,
    attribution: state.attribution,
    date_from: state.dates.date_from || null,
    date_to: state.dates.date_to || null,
  };
}

/** One step of one group of the answer (data.groups[].steps[]). */
export interface FunnelStep {
  step: number;
  name: string;
  optional: boolean;
  people: number;
  pct_of_start: number;
  pct_of_previous: number | null;
  dropped: number;
  in_window: number;
  median_s_from_prev: number | null;
  mean_s_from_prev: number | null;
  median_s_from_start: number | null;
  mean_s_from_start: number | null;
}

/** The whole population (breakdown null) or one breakdown value's people. */
export interface FunnelGroup {
  breakdown: string | null;
  excluded: number;
  steps: FunnelStep[];
}
