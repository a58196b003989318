/**
 * The charts of a simulation or replay report: depth, in flight, DLQ, throughput, wait p99, and
 * when producers use message groups, wait p50 and p99 per group class, and when task types have
 * children, whole-flow latency p50 and p99.
 */
import { Chart, PALETTE } from './charts.js';
import { CLASS_LABELS, classesOf } from './summary.js';
import type { GroupClass, Report } from './types.js';

/** Chart keys, in display order (`group_wait` only for reports with group classes). */
export const CHART_KEYS = ['depth', 'in_flight', 'dlq', 'throughput', 'wait', 'group_wait', 'flow_latency'] as const;
export type ChartKey = (typeof CHART_KEYS)[number];

/** The charts `report` has: the group classes' chart only when its producers use groups, the flows' only with flows. */
function keysOf(report: Report): ChartKey[] {
  return CHART_KEYS.filter((k) => {
    if (k === 'group_wait') return classesOf([report]).length > 0;
    if (k === 'flow_latency') return report.summary.flows !== undefined || report.series.some((s) => s.flows);
    return true;
  });
}

/** Colour of a group class, the same in every chart (the planner's too). */
export const CLASS_COLOR: Record<GroupClass, string> = { heavy: PALETTE[1], light: PALETTE[0], ungrouped: PALETTE[7] };

/** Largest value each chart plots, to share y axes between compared runs. */
export type Ranges = Partial<Record<ChartKey, number>>;

function priorities(report: Report): number[] {
  const set = new Set<number>();
  for (const p of report.summary.by_priority) set.add(p.priority);
  for (const s of report.series) for (const w of s.wait_ms) set.add(w.priority);
  return [...set].sort((a, b) => b - a);
}

type Column = { series: { label: string; color?: string; dash?: boolean }[]; data: (number | null)[][] };

function columns(report: Report): Record<ChartKey, Column> {
  const t0 = report.series.length > 0 && report.name === 'replay' ? report.series[0].t_ms - report.sample_interval_ms : 0;
  const xs = report.series.map((s) => (s.t_ms - Math.max(0, t0)) / 60_000);
  const col = (f: (s: Report['series'][number]) => number | null) => report.series.map(f);
  const prios = priorities(report);
  const classes = classesOf([report]);
  const classWait = (c: GroupClass, q: 'p50' | 'p99') =>
    col((s) => {
      const w = s.group_wait_ms?.find((x) => x.class === c);
      return w && w.count > 0 ? w[q] / 1000 : null;
    });
  const flowLatency = (q: 'p50' | 'p99') =>
    col((s) => {
      const l = s.flows?.latency_ms;
      return l && l.count > 0 ? l[q] / 1000 : null;
    });
  return {
    depth: {
      series: [{ label: 'ready' }, { label: 'delayed' }],
      data: [xs, col((s) => s.ready), col((s) => s.delayed)],
    },
    in_flight: { series: [{ label: 'in flight' }, { label: 'waiting consumers' }], data: [xs, col((s) => s.in_flight), col((s) => s.waiters)] },
    dlq: { series: [{ label: 'DLQ entries' }], data: [xs, col((s) => s.dead_letter)] },
    throughput: { series: [{ label: 'completed / s' }], data: [xs, col((s) => s.throughput_per_sec)] },
    wait: {
      series: prios.map((p) => ({ label: `priority ${p}` })),
      data: [
        xs,
        ...prios.map((p) =>
          col((s) => {
            const w = s.wait_ms.find((x) => x.priority === p);
            return w && w.count > 0 ? w.p99 / 1000 : null;
          }),
        ),
      ],
    },
    group_wait: {
      series: [
        ...classes.map((c) => ({ label: `${CLASS_LABELS[c].toLowerCase()} p99`, color: CLASS_COLOR[c] })),
        ...classes.map((c) => ({ label: `${CLASS_LABELS[c].toLowerCase()} p50`, color: CLASS_COLOR[c], dash: true })),
      ],
      data: [xs, ...classes.map((c) => classWait(c, 'p99')), ...classes.map((c) => classWait(c, 'p50'))],
    },
    flow_latency: {
      series: [{ label: 'flow p99' }, { label: 'flow p50', dash: true }],
      data: [xs, flowLatency('p99'), flowLatency('p50')],
    },
  };
}

const META: Record<ChartKey, { title: string; y: string }> = {
  depth: { title: 'Queue depth', y: 'messages' },
  in_flight: { title: 'In flight', y: 'messages' },
  dlq: { title: 'Dead-letter queue', y: 'entries' },
  throughput: { title: 'Throughput', y: 'completed / s' },
  wait: { title: 'Wait p99 by priority', y: 'seconds' },
  group_wait: { title: 'Wait by group class (p99, p50 dashed)', y: 'seconds' },
  flow_latency: { title: 'Whole-flow latency (p99, p50 dashed)', y: 'seconds' },
};

/** The largest plotted value per chart. */
export function ranges(report: Report): Ranges {
  const out: Ranges = {};
  const cols = columns(report);
  for (const key of keysOf(report)) {
    let max = 0;
    for (const ys of cols[key].data.slice(1)) for (const v of ys) if (v !== null && v > max) max = v;
    out[key] = max;
  }
  return out;
}

/** The larger of two ranges, per chart. */
export function mergeRanges(a: Ranges, b: Ranges): Ranges {
  const out: Ranges = {};
  for (const key of CHART_KEYS) out[key] = Math.max(a[key] ?? 0, b[key] ?? 0) * 1.05;
  return out;
}

/** One chart per key; `label` prefixes titles (`A:`), `shared` fixes the y axes. */
export function reportCharts(report: Report, label = '', shared?: Ranges): Chart[] {
  const cols = columns(report);
  return keysOf(report).map((key) => {
    const c = cols[key];
    const chart = new Chart({
      title: `${label}${META[key].title}`,
      x: { label: report.name === 'replay' ? 'minutes since the first record' : 'virtual minutes' },
      y: { label: META[key].y, max: shared?.[key] },
      series: c.series.map((s, i) => ({ label: s.label, color: s.color ?? PALETTE[i % PALETTE.length], dash: s.dash })),
      data: c.data,
    });
    chart.el.dataset.chart = key;
    return chart;
  });
}
