// Labelled form controls. Text fields and selects get a <label for>, not a wrapping label: a
// wrapping label would add the control's own value to its accessible name ("Breakdown none").
import type { ComponentChildren } from 'preact';
import { useId } from 'preact/hooks';

export interface Option {
  value: string;
  label: string;
}

export function Select({ label, value, options, onChange, disabled }: { label: string; value: string; options: Option[]; onChange: (v: string) => void; disabled?: boolean }) {
  const id = useId();
  return (
    <div class="field">
      <label class="field-label" for={id}>{label}</label>
      <select id={id} value={value} disabled={disabled} onChange={(e) => onChange((e.target as HTMLSelectElement).value)}>
        {options.map((o) => (
          <option value={o.value} selected={o.value === value}>
            {o.label}
          </option>
        ))}
      </select>
    </div>
  );
}

interface InputProps {
  type?: 'text' | 'number' | 'date' | 'search' | 'password';
  placeholder?: string;
  min?: string;
  max?: string;
  minLength?: number;
  required?: boolean;
  /** id of a <datalist> with suggestions */
  list?: string;
  class?: string;
}

export function TextField({ label, value, onInput, list, class: className, ...rest }: { label: string; value: string | number; onInput: (v: string) => void } & InputProps) {
  const id = useId();
  return (
    <div class={`field ${className || ''}`}>
      <label class="field-label" for={id}>{label}</label>
      {/* Preact types <input> as a union keyed by `type`; these attributes are valid for every type used here. */}
      <input id={id} {...({ ...rest, list, type: rest.type || 'text' } as object)} value={value} onInput={(e) => onInput((e.target as HTMLInputElement).value)} />
    </div>
  );
}

export function Checkbox({ label, checked, onChange }: { label: string; checked: boolean; onChange: (v: boolean) => void }) {
  return (
    <label class="check">
      <input type="checkbox" checked={checked} onChange={(e) => onChange((e.target as HTMLInputElement).checked)} />
      <span>{label}</span>
    </label>
  );
}

/** A choice between a few options, as radio buttons in a fieldset (arrow keys move between them). */
export function Choice({ legend, name, value, options, onChange }: { legend: string; name: string; value: string; options: Option[]; onChange: (v: string) => void }) {
  return (
    <fieldset class="choice">
      <legend>{legend}</legend>
      {options.map((o) => (
        <label>
          <input type="radio" name={name} value={o.value} checked={value === o.value} onChange={() => onChange(o.value)} />
          <span>{o.label}</span>
        </label>
      ))}
    </fieldset>
  );
}

export interface DateWindow {
  date_from: string;
  date_to: string;
}

export function DateRange({ value, onChange, bounds }: { value: DateWindow; onChange: (v: DateWindow) => void; bounds?: { min?: string; max?: string } }) {
  return (
    <>
      <TextField label="From" type="date" value={value.date_from} min={bounds?.min} max={bounds?.max} onInput={(v) => onChange({ ...value, date_from: v })} />
      <TextField label="To" type="date" value={value.date_to} min={bounds?.min} max={bounds?.max} onInput={(v) => onChange({ ...value, date_to: v })} />
    </>
  );
}

export function Form({ label, onSubmit, children }: { label: string; onSubmit: () => void; children: ComponentChildren }) {
  return (
    <form
      class="controls"
      aria-label={label}
      onSubmit={(e) => {
        e.preventDefault();
        onSubmit();
      }}
    >
      {children}
    </form>
  );
}
