// The funnel's finer controls: a step's property filters (property and value picked from the data)
// and the exclusions (an event between two steps that takes a person out of the funnel).
import { OPERATORS, type ExclusionInput, type FilterInput } from '../funnel-spec';
import { Select, type Option } from './fields';
import { PropertySelect, useProperties, ValueField } from './property-picker';

const OPERATOR_WORDS: Record<string, string> = {
  '=': 'is',
  '!=': 'is not',
  '~': 'contains',
  '!~': 'does not contain',
  '>': '>',
  '>=': '≥',
  '<': '<',
  '<=': '≤',
};

/** The filters of step `n` (1-based) on `event`: each a property, an operator and a value. */
export function StepFilters({ n, event, filters, onChange }: { n: number; event: string; filters: FilterInput[]; onChange: (f: FilterInput[]) => void }) {
  const properties = useProperties(event);
  const names = properties.map((p) => p.name);
  const counts = new Map(properties.map((p) => [p.name, p.events]));
  const set = (i: number, change: Partial<FilterInput>) => onChange(filters.map((f, j) => (j === i ? { ...f, ...change } : f)));
  return (
    <div class="step-filters">
      {filters.map((f, i) => (
        <div class="step-filter" role="group" aria-label={`Step ${n} filter ${i + 1}`}>
          <PropertySelect label={`Step ${n} filter ${i + 1} property`} value={f.prop} names={names} counts={counts} empty="Choose a property…" onChange={(prop) => set(i, { prop, value: '' })} />
          <Select label={`Step ${n} filter ${i + 1} operator`} value={f.op} options={OPERATORS.map((op) => ({ value: op, label: OPERATOR_WORDS[op] }))} onChange={(op) => set(i, { op })} />
          <ValueField label={`Step ${n} filter ${i + 1} value`} event={event} property={f.prop} value={f.value} onInput={(value) => set(i, { value })} />
          <button type="button" class="icon" onClick={() => onChange(filters.filter((_, j) => j !== i))} aria-label={`Remove filter ${i + 1} of step ${n}`}>✕</button>
        </div>
      ))}
      <button type="button" class="small" disabled={!event} onClick={() => onChange([...filters, { prop: '', op: '=', value: '' }])}>
        + Filter<span class="visually-hidden"> step {n}</span>
      </button>
    </div>
  );
}

/** Exclusions: each an event and the two steps between which doing it excludes the person. */
export function ExclusionList({ exclusions, steps, eventOptions, onChange }: { exclusions: ExclusionInput[]; steps: number; eventOptions: Option[]; onChange: (x: ExclusionInput[]) => void }) {
  const set = (i: number, change: Partial<ExclusionInput>) => onChange(exclusions.map((x, j) => (j === i ? { ...x, ...change } : x)));
  const stepOptions = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, k) => ({ value: String(from + k), label: `step ${from + k}` }));
  return (
    <fieldset class="exclusions">
      <legend>Exclusions</legend>
      <p class="help">A person who does the event after reaching one step and before reaching a later one leaves the funnel (counted as excluded).</p>
      {exclusions.map((x, i) => (
        <div class="exclusion" role="group" aria-label={`Exclusion ${i + 1}`}>
          <Select label={`Exclusion ${i + 1} event`} value={x.event} options={eventOptions} onChange={(event) => set(i, { event })} />
          <Select label={`Exclusion ${i + 1} after`} value={String(x.from)} options={stepOptions(1, steps - 1)} onChange={(v) => set(i, { from: Number(v) })} />
          <Select label={`Exclusion ${i + 1} before`} value={String(x.to)} options={stepOptions(2, steps)} onChange={(v) => set(i, { to: Number(v) })} />
          <button type="button" class="icon" onClick={() => onChange(exclusions.filter((_, j) => j !== i))} aria-label={`Remove exclusion ${i + 1}`}>✕</button>
        </div>
      ))}
      <button type="button" class="small" onClick={() => onChange([...exclusions, { event: '', from: 1, to: steps }])}>
        + Add exclusion
      </button>
    </fieldset>
  );
}
