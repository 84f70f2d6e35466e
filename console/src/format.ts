// How numbers, shares, durations and times read in the console (one place, so every view agrees).

const integer = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
const decimal = new Intl.NumberFormat('en-US', { maximumFractionDigits: 2 });

export function num(value: unknown): string {
  if (value === null || value === undefined || value === '') return '–';
  const n = Number(value);
  if (!Number.isFinite(n)) return String(value);
  return Number.isInteger(n) ? integer.format(n) : decimal.format(n);
}

export function pct(value: unknown): string {
  if (value === null || value === undefined || value === '') return '–';
  const n = Number(value);
  return Number.isFinite(n) ? `${decimal.format(n)}%` : String(value);
}

/** Seconds as "1 h 5 m", "3 m 20 s", "42 s". */
export function duration(seconds: unknown): string {
  if (seconds === null || seconds === undefined) return '–';
  let s = Math.round(Number(seconds));
  if (!Number.isFinite(s)) return '–';
  if (s < 60) return `${s} s`;
  const d = Math.floor(s / 86400);
  s -= d * 86400;
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  if (d) return `${d} d ${h} h`;
  if (h) return `${h} h ${m} m`;
  return `${m} m ${s} s`;
}

/** Epoch seconds (as the collector's debug buffer keeps them) as a local wall-clock time. */
export function clock(epochSeconds: number): string {
  const t = new Date(epochSeconds * 1000);
  return t.toLocaleTimeString('en-GB', { hour12: false }) + '.' + String(t.getMilliseconds()).padStart(3, '0');
}

/** A warehouse timestamp ("2026-11-22 21:35:36.226", UTC) shortened for a table cell. */
export function stamp(value: unknown): string {
  if (!value) return '–';
  return String(value).replace(/Z$/, '').replace('T', ' ').replace(/\.\d+$/, '');
}

export function isoDay(date: Date): string {
  return date.toISOString().slice(0, 10);
}
