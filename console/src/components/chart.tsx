// One ECharts chart, drawn as SVG. The chart is an image to assistive technology (role="img" with a
// label); the numbers are always in the data table the view puts beside it.
//
// Tooltips are the one place ECharts would parse HTML (a formatter's string goes to innerHTML), and
// chart names are event data anyone with a browser write key can send. So a view never hands ECharts
// a string: its formatter returns plain text lines, and the chart turns them into DOM nodes with
// textContent. Views without a formatter get the same text tooltip (the default one builds HTML
// with inline style attributes, which the console's Content-Security-Policy refuses).
import { useEffect, useRef } from 'preact/hooks';
import * as echarts from 'echarts/core';
import { BarChart, HeatmapChart, LineChart, SankeyChart } from 'echarts/charts';
import { GridComponent, LegendComponent, TooltipComponent, VisualMapComponent } from 'echarts/components';
import { SVGRenderer } from 'echarts/renderers';
import type { EChartsCoreOption } from 'echarts/core';

echarts.use([BarChart, HeatmapChart, LineChart, SankeyChart, GridComponent, LegendComponent, TooltipComponent, VisualMapComponent, SVGRenderer]);

/** A tooltip's text: one string (lines split at "\n") or a list of lines; the first line is the heading. */
export type TipText = string | string[];

/** What ECharts passes a tooltip formatter (the fields the console reads). */
export interface TipParam {
  seriesName?: string;
  name?: string;
  value?: unknown;
  color?: unknown;
  dataIndex: number;
  axisValueLabel?: string;
  data?: unknown;
}

interface TextTooltip {
  trigger?: 'item' | 'axis' | 'none';
  axisPointer?: Record<string, unknown>;
  /** Plain text only: the chart escapes nothing because it never parses HTML. */
  formatter?: (params: any) => TipText;
  valueFormatter?: (value: any) => string;
}

/** An ECharts option whose tooltip, if any, is a text tooltip. */
export type ChartOption = Omit<EChartsCoreOption, 'tooltip'> & { tooltip?: TextTooltip };

// Okabe–Ito: distinguishable with the common colour-vision deficiencies.
export const PALETTE = ['#0072B2', '#E69F00', '#009E73', '#CC79A7', '#56B4E9', '#D55E00', '#F0E442', '#000000'];

// ECharts measures text on a canvas, which needs a real font list (not 'inherit') to lay out legends.
const FONT = "system-ui, 'DejaVu Sans', 'Liberation Sans', sans-serif";

/** Text lines as a tooltip node: every line through textContent, so markup in them stays text. */
export function tipNode(text: TipText, markers: unknown[] = []): HTMLElement {
  const box = document.createElement('div');
  box.className = 'chart-tip';
  const lines = Array.isArray(text) ? text : String(text).split('\n');
  lines.forEach((line, i) => {
    const row = document.createElement('div');
    if (i === 0) row.className = 'chart-tip-head';
    const marker = markers[i];
    if (typeof marker === 'string') {
      const dot = document.createElement('span');
      dot.className = 'chart-tip-marker';
      // CSSOM, not a style attribute: allowed by the Content-Security-Policy.
      dot.style.backgroundColor = marker;
      row.appendChild(dot);
    }
    row.appendChild(document.createTextNode(String(line)));
    box.appendChild(row);
  });
  return box;
}

/** The default tooltip as text: the item's or axis value's name, then one line per series. */
function defaultTip(params: TipParam | TipParam[], valueFormatter: (v: unknown) => string): { lines: string[]; markers: unknown[] } {
  const list = Array.isArray(params) ? params : [params];
  const head = list[0]?.axisValueLabel ?? list[0]?.seriesName ?? '';
  const lines = [String(head)];
  const markers: unknown[] = [undefined];
  for (const p of list) {
    const label = Array.isArray(params) ? p.seriesName : p.name;
    const value = Array.isArray(p.value) ? p.value[p.value.length - 1] : p.value;
    lines.push(`${label ?? ''}: ${valueFormatter(value)}`);
    markers.push(typeof p.color === 'string' ? p.color : undefined);
  }
  return { lines, markers };
}

/** The option ECharts gets: the tooltip's text formatter wrapped so its answer becomes DOM nodes. */
export function safeOption(option: ChartOption): EChartsCoreOption {
  const { tooltip, ...rest } = option;
  if (!tooltip) return rest;
  const text = tooltip.formatter;
  const valueFormatter = tooltip.valueFormatter ?? ((v: unknown) => String(v ?? '–'));
  const formatter = (params: TipParam | TipParam[]): HTMLElement => {
    if (text) return tipNode(text(params));
    const { lines, markers } = defaultTip(params, valueFormatter);
    return tipNode(lines, markers);
  };
  return { ...rest, tooltip: { ...tooltip, renderMode: 'html', formatter } };
}

/** What a click on a chart item gives (the mouse path; every figure also has a button in its table). */
export interface ChartClick {
  seriesIndex: number;
  seriesName?: string;
  dataIndex: number;
  name?: string;
  value?: unknown;
  data?: unknown;
}

export function Chart({ option, label, height = 280, onClick }: { option: ChartOption; label: string; height?: number; onClick?: (p: ChartClick) => void }) {
  const box = useRef<HTMLDivElement>(null);
  const chart = useRef<echarts.ECharts | null>(null);
  const clicked = useRef(onClick);
  clicked.current = onClick;

  useEffect(() => {
    const el = box.current!;
    const instance = echarts.init(el, undefined, { renderer: 'svg' });
    chart.current = instance;
    instance.on('click', (p) => clicked.current?.(p as unknown as ChartClick));
    const observer = new ResizeObserver(() => instance.resize());
    observer.observe(el);
    return () => {
      observer.disconnect();
      instance.dispose();
      chart.current = null;
    };
  }, []);

  useEffect(() => {
    chart.current?.setOption({ color: PALETTE, animation: false, textStyle: { fontFamily: FONT }, ...safeOption(option) }, true);
  }, [option]);

  return <div class="chart" ref={box} role="img" aria-label={label} style={{ height: `${height}px` }} />;
}
