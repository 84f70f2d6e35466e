// Breakdown groups side by side: for each step, every group's conversion from step 1 as bars next
// to each other, and a table with one column per group (people and % of step 1), so groups are
// compared at a glance instead of one at a time.
import { useMemo } from 'preact/hooks';
import { num, pct } from '../format';
import type { FunnelGroup } from '../funnel-spec';
import { breakdownLabel } from '../labels';
import { Chart, type ChartOption } from './chart';
import { DataTable, type Column, type Row } from './table';

/** Groups drawn side by side: more bars per step than this stop being comparable. */
export const MAX_COMPARED = 8;

export function FunnelCompare({ groups }: { groups: FunnelGroup[] }) {
  // The engine lists the whole population first, then groups by their step-1 people.
  const compared = groups.filter((g) => g.breakdown !== null).slice(0, MAX_COMPARED);
  const hidden = groups.filter((g) => g.breakdown !== null).length - compared.length;
  const steps = compared[0]?.steps || [];
  const option = useMemo<ChartOption>(
    () => ({
      grid: { left: 56, right: 16, top: 56, bottom: 40 },
      legend: { top: 0, type: 'scroll', data: compared.map((g) => breakdownLabel(g.breakdown)) },
      tooltip: {
        trigger: 'axis',
        axisPointer: { type: 'shadow' },
        formatter: (items: { dataIndex: number }[]) => {
          const k = items[0].dataIndex;
          return [`${steps[k].step}. ${steps[k].name}`, ...compared.map((g) => `${breakdownLabel(g.breakdown)}: ${pct(g.steps[k].pct_of_start)} (${num(g.steps[k].people)} people)`)];
        },
      },
      xAxis: { type: 'category', data: steps.map((s) => `${s.step}. ${s.name}`), axisLabel: { interval: 0, overflow: 'truncate', width: 140 } },
      yAxis: { type: 'value', name: '% of step 1', max: 100 },
      series: compared.map((g) => ({ name: breakdownLabel(g.breakdown), type: 'bar', data: g.steps.map((s) => s.pct_of_start) })),
    }),
    [groups],
  );
  if (compared.length < 2) return null;

  const rows: Row[] = steps.map((s, k) => ({ step: s.step, name: s.name, ...Object.fromEntries(compared.map((g, j) => [`g${j}`, g.steps[k]])) }));
  const columns: Column[] = [
    { key: 'step', label: 'Step', numeric: true },
    { key: 'name', label: 'Event' },
    ...compared.map((g, j) => ({
      key: `g${j}`,
      label: breakdownLabel(g.breakdown),
      numeric: true,
      render: (r: Row) => {
        const s = r[`g${j}`] as FunnelGroup['steps'][number];
        return (
          <span class="nowrap" data-people={s.people} data-pct={s.pct_of_start}>
            {num(s.people)} <span class="muted">({pct(s.pct_of_start)})</span>
          </span>
        );
      },
    })),
  ];
  return (
    <section class="funnel-compare" aria-label="Breakdown groups side by side">
      <h3>Breakdown groups side by side</h3>
      <Chart
        option={option}
        label={`Conversion from step 1 by breakdown group: ${compared.map((g) => `${breakdownLabel(g.breakdown)} ${pct(g.steps[g.steps.length - 1]?.pct_of_start)} reach the last step`).join('; ')}. The table below has every number.`}
      />
      <DataTable caption="Breakdown groups side by side (people, % of step 1)" columns={columns} rows={rows} />
      {hidden > 0 && <p class="muted">{num(hidden)} smaller groups are in the full table below.</p>}
    </section>
  );
}
