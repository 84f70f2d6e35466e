// Lines over time where the last periods may be incomplete (today, a week cut by the range): those
// are drawn dashed, apart from the complete ones, and averages leave them out.
import type { ChartOption } from './chart';
import { PALETTE } from './chart';

export interface Line {
  name: string;
  values: (number | null)[];
  /** The same line over the previous range, bucket by bucket. */
  previous?: (number | null)[];
}

/** The mean of the complete buckets (null when none is complete). */
export function completeMean(values: (number | null)[], incomplete: boolean[]): number | null {
  const kept = values.filter((v, i) => !incomplete[i] && v !== null && Number.isFinite(Number(v))).map(Number);
  return kept.length ? kept.reduce((a, b) => a + b, 0) / kept.length : null;
}

/** The sum of the complete buckets. */
export function completeSum(values: (number | null)[], incomplete: boolean[]): number {
  return values.reduce<number>((sum, v, i) => (incomplete[i] || v === null ? sum : sum + Number(v)), 0);
}

const SYMBOLS = ['circle', 'rect', 'triangle', 'diamond', 'roundRect', 'pin'];

/**
 * One solid line per series over the complete buckets, its dashed continuation over the incomplete
 * ones (joined to the last complete point), and the previous period as a thin dotted line.
 */
export function timeSeriesOption(buckets: string[], incomplete: boolean[], lines: Line[], format: (v: unknown) => string): ChartOption {
  const series: Record<string, unknown>[] = [];
  const firstIncomplete = incomplete.findIndex(Boolean);
  lines.forEach((line, i) => {
    const color = PALETTE[i % PALETTE.length];
    const symbol = SYMBOLS[i % SYMBOLS.length];
    series.push({
      name: line.name,
      type: 'line',
      symbol,
      symbolSize: 6,
      itemStyle: { color },
      data: line.values.map((v, j) => (incomplete[j] ? null : v)),
    });
    if (firstIncomplete >= 0) {
      series.push({
        name: line.name,
        type: 'line',
        symbol: 'emptyCircle',
        symbolSize: 6,
        itemStyle: { color },
        lineStyle: { type: 'dashed', color },
        data: line.values.map((v, j) => (incomplete[j] || j === firstIncomplete - 1 ? v : null)),
      });
    }
    if (line.previous) {
      series.push({
        name: `${line.name} (previous period)`,
        type: 'line',
        symbol: 'none',
        itemStyle: { color },
        lineStyle: { type: 'dotted', width: 1.5, color, opacity: 0.7 },
        data: line.previous,
      });
    }
  });
  return {
    grid: { left: 64, right: 16, top: 40, bottom: 30, containLabel: false },
    legend: { top: 0, type: 'scroll' },
    tooltip: {
      trigger: 'axis',
      formatter: (items: { dataIndex: number }[]) => {
        const j = items[0]?.dataIndex ?? 0;
        const head = `${buckets[j]}${incomplete[j] ? ' (incomplete)' : ''}`;
        return [head, ...lines.flatMap((l) => [`${l.name}: ${format(l.values[j])}`, ...(l.previous ? [`  previous period: ${format(l.previous[j])}`] : [])])];
      },
    },
    xAxis: { type: 'category', data: buckets, boundaryGap: false },
    yAxis: { type: 'value' },
    series,
  };
}
