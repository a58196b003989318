/**
 * Line charts (uPlot) in a `figure` with a caption. Each chart has a text description for
 * screen readers (`role="img"` with `aria-label`), follows its container's width, and keeps
 * the data it draws in `data-points` (the browser tests read it).
 */
import uPlot from 'uplot';
import { h } from './dom.js';

/** Colours with at least 4.5:1 contrast on white, told apart by colour-blind readers too. */
export const PALETTE = ['#0b5fa5', '#b34700', '#1a7f5a', '#6b4fbb', '#b0246b', '#4d7a0e', '#7a5a00', '#555555'];

export interface SeriesSpec {
  label: string;
  color?: string;
  /** Dashed line (a second run in a comparison). */
  dash?: boolean;
}

export interface ChartSpec {
  title: string;
  /** The x axis: virtual minutes, wall-clock time or a swept parameter. */
  x: { label: string; time?: boolean };
  /** `max` fixes the top of the y axis (two charts compared side by side share it). */
  y: { label: string; max?: number };
  series: SeriesSpec[];
  /** `[xs, ys1, ys2, …]`; `null` leaves a gap. */
  data: (number | null)[][];
  height?: number;
}

const live = new Set<Chart>();
let observer: ResizeObserver | null = null;

function resizeAll(): void {
  for (const c of live) c.fit();
}

export class Chart {
  readonly el: HTMLElement;
  private plot: uPlot | null = null;
  private readonly holder: HTMLDivElement;

  constructor(private spec: ChartSpec) {
    this.holder = h('div', { class: 'chart-canvas', role: 'img' });
    this.el = h('figure', { class: 'chart' }, h('figcaption', {}, spec.title), this.holder);
    this.describe();
    observer ??= new ResizeObserver(resizeAll);
  }

  /** Draws the chart; call once `el` is in the document. */
  mount(): void {
    const width = Math.max(240, this.holder.clientWidth || 320);
    const s = this.spec;
    const opts: uPlot.Options = {
      width,
      height: s.height ?? 200,
      scales: {
        x: { time: Boolean(s.x.time) },
        y: s.y.max !== undefined ? { range: [0, Math.max(1, s.y.max)] } : { range: (_u, _min, max) => [0, max > 0 ? max * 1.05 : 1] },
      },
      axes: [
        { label: s.x.label, stroke: '#333', grid: { stroke: '#e6e6e6' } },
        { label: s.y.label, stroke: '#333', grid: { stroke: '#e6e6e6' }, size: 60 },
      ],
      legend: { show: true, live: false },
      series: [
        { label: s.x.label },
        ...s.series.map((ser, i) => ({
          label: ser.label,
          stroke: ser.color ?? PALETTE[i % PALETTE.length],
          width: 2,
          dash: ser.dash ? [6, 4] : undefined,
          spanGaps: false,
          points: { show: s.data[0].length < 40 },
        })),
      ],
    };
    this.plot?.destroy();
    this.plot = new uPlot(opts, s.data as uPlot.AlignedData, this.holder);
    live.add(this);
    observer?.observe(this.holder);
  }

  /** Replaces the data (same series). */
  update(data: (number | null)[][]): void {
    this.spec = { ...this.spec, data };
    this.describe();
    if (this.plot) this.plot.setData(data as uPlot.AlignedData);
  }

  fit(): void {
    if (!this.plot || !this.holder.isConnected) return;
    const width = Math.max(240, this.holder.clientWidth);
    if (Math.abs(width - this.plot.width) > 2) this.plot.setSize({ width, height: this.spec.height ?? 200 });
  }

  destroy(): void {
    this.plot?.destroy();
    this.plot = null;
    live.delete(this);
    observer?.unobserve(this.holder);
  }

  /** A sentence per series (last and largest value) for assistive technology. */
  private describe(): void {
    const s = this.spec;
    const xs = s.data[0] ?? [];
    const parts = s.series.map((ser, i) => {
      const ys = (s.data[i + 1] ?? []).filter((v): v is number => v !== null);
      if (ys.length === 0) return `${ser.label}: no data`;
      const max = Math.max(...ys);
      return `${ser.label}: last ${round(ys[ys.length - 1])}, max ${round(max)}`;
    });
    this.holder.setAttribute('aria-label', `${s.title}. ${xs.length} points. ${parts.join('; ')}.`);
    this.holder.dataset.points = String(xs.length);
  }
}

function round(v: number): string {
  return Number.isInteger(v) ? String(v) : v.toFixed(2);
}

/** Destroys every chart inside `root` (before its content is replaced). */
export function destroyCharts(charts: Chart[]): void {
  for (const c of charts) c.destroy();
  charts.length = 0;
}
