// One ECharts chart, drawn as SVG. The chart is an image to assistive technology (role="img" with a
// label); the numbers are always in the data table the view puts beside it.
import { useEffect, useRef } from 'preact/hooks';
import * as echarts from 'echarts/core';
import { BarChart, HeatmapChart, LineChart, SankeyChart } from 'echarts/charts';
import { GridComponent, LegendComponent, TooltipComponent, VisualMapComponent } from 'echarts/components';
import { SVGRenderer } from 'echarts/renderers';
import type { EChartsCoreOption } from 'echarts/core';

echarts.use([BarChart, HeatmapChart, LineChart, SankeyChart, GridComponent, LegendComponent, TooltipComponent, VisualMapComponent, SVGRenderer]);

export type ChartOption = EChartsCoreOption;

// Okabe–Ito: distinguishable with the common colour-vision deficiencies.
export const PALETTE = ['#0072B2', '#E69F00', '#009E73', '#CC79A7', '#56B4E9', '#D55E00', '#F0E442', '#000000'];

// ECharts measures text on a canvas, which needs a real font list (not 'inherit') to lay out legends.
const FONT = "system-ui, 'DejaVu Sans', 'Liberation Sans', sans-serif";

export function Chart({ option, label, height = 280 }: { option: ChartOption; label: string; height?: number }) {
  const box = useRef<HTMLDivElement>(null);
  const chart = useRef<echarts.ECharts | null>(null);

  useEffect(() => {
    const el = box.current!;
    const instance = echarts.init(el, undefined, { renderer: 'svg' });
    chart.current = instance;
    const observer = new ResizeObserver(() => instance.resize());
    observer.observe(el);
    return () => {
      observer.disconnect();
      instance.dispose();
      chart.current = null;
    };
  }, []);

  useEffect(() => {
    chart.current?.setOption({ color: PALETTE, animation: false, textStyle: { fontFamily: FONT }, ...option }, true);
  }, [option]);

  return <div class="chart" ref={box} role="img" aria-label={label} style={{ height: `${height}px` }} />;
}
