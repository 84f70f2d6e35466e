// One vocabulary across views: an empty traffic source is "(direct)", any other empty value "(none)".
export const DIRECT = '(direct)';
export const NONE = '(none)';

export function sourceLabel(source: unknown): string {
  return String(source ?? '') || DIRECT;
}

export function valueLabel(value: unknown): string {
  return String(value ?? '') || NONE;
}

/** source / medium / campaign as every view writes it. */
export function campaignLabel(source: unknown, medium: unknown, campaign: unknown): string {
  return `${sourceLabel(source)} / ${valueLabel(medium)} / ${valueLabel(campaign)}`;
}

/** The whole population beside a breakdown's groups. */
export const ALL = '(all)';

/** A breakdown group's name in every view: null is the whole population, '' the empty value. */
export function breakdownLabel(value: string | null | undefined): string {
  return value === null || value === undefined ? ALL : valueLabel(value);
}
