/** The summary table of one report, or of two side by side (with the difference). */
import { fmtInt, fmtMs, fmtPct, h } from './dom.js';
import { GROUP_CLASSES, type GroupClass, type Report, type Summary } from './types.js';

/** How a group class reads in tables and charts. */
export const CLASS_LABELS: Record<GroupClass, string> = { heavy: 'Heavy group', light: 'Light groups', ungrouped: 'Ungrouped' };

/** The group classes any of `reports` has figures for, in report order. */
export function classesOf(reports: Report[]): GroupClass[] {
  const seen = new Set<GroupClass>();
  for (const r of reports) {
    for (const c of r.summary.by_group_class ?? []) seen.add(c.class);
    for (const s of r.series) for (const w of s.group_wait_ms ?? []) seen.add(w.class);
  }
  return GROUP_CLASSES.filter((c) => seen.has(c));
}

type Row = { label: string; key: string; value: (s: Summary) => number | string | undefined; fmt: (v: number) => string; better?: 'low' | 'high' };

function rows(reports: Report[]): Row[] {
  const prios = new Set<number>();
  for (const r of reports) for (const p of r.summary.by_priority) prios.add(p.priority);
  const byP = (s: Summary, p: number) => s.by_priority.find((x) => x.priority === p);
  const out: Row[] = [
    { label: 'Simulated time', key: 'simulated_ms', value: (s) => s.simulated_ms, fmt: fmtMs },
    { label: 'Published', key: 'published', value: (s) => s.published, fmt: fmtInt },
    { label: 'Completed', key: 'completed', value: (s) => s.completed, fmt: fmtInt, better: 'high' },
    { label: 'Dead-lettered', key: 'dead_lettered', value: (s) => s.dead_lettered, fmt: fmtInt, better: 'low' },
    { label: '… rejected', key: 'dlq_rejected', value: (s) => s.dead_letter_reasons.rejected, fmt: fmtInt },
    { label: '… out of retries', key: 'dlq_retries', value: (s) => s.dead_letter_reasons.max_retries_exceeded, fmt: fmtInt },
    { label: '… expired', key: 'dlq_expired', value: (s) => s.dead_letter_reasons.expired, fmt: fmtInt },
    { label: 'Cancelled', key: 'cancelled', value: (s) => s.cancelled ?? 0, fmt: fmtInt },
    { label: 'Still in the system', key: 'still_in_system', value: (s) => s.still_in_system, fmt: fmtInt, better: 'low' },
    { label: 'Deliveries', key: 'deliveries', value: (s) => s.deliveries, fmt: fmtInt },
    { label: 'Retries', key: 'retries', value: (s) => s.retries, fmt: fmtInt, better: 'low' },
    { label: 'Leases expired', key: 'lease_expired', value: (s) => s.lease_expired, fmt: fmtInt, better: 'low' },
    { label: 'Refused publishes', key: 'rejected_publishes', value: (s) => s.rejected_publishes, fmt: fmtInt, better: 'low' },
    { label: 'Worker utilisation', key: 'utilisation', value: (s) => s.utilisation, fmt: fmtPct },
  ];
  for (const p of [...prios].sort((a, b) => b - a)) {
    out.push(
      { label: `Priority ${p}: wait p50`, key: `p${p}_wait_p50`, value: (s) => byP(s, p)?.wait_ms.p50, fmt: fmtMs, better: 'low' },
      { label: `Priority ${p}: wait p99`, key: `p${p}_wait_p99`, value: (s) => byP(s, p)?.wait_ms.p99, fmt: fmtMs, better: 'low' },
      { label: `Priority ${p}: latency p99`, key: `p${p}_latency_p99`, value: (s) => byP(s, p)?.latency_ms.p99, fmt: fmtMs, better: 'low' },
    );
  }
  const byC = (s: Summary, c: GroupClass) => s.by_group_class?.find((x) => x.class === c);
  for (const c of classesOf(reports)) {
    const label = CLASS_LABELS[c];
    out.push(
      { label: `${label}: wait p50`, key: `${c}_wait_p50`, value: (s) => byC(s, c)?.wait_ms.p50, fmt: fmtMs, better: 'low' },
      { label: `${label}: wait p99`, key: `${c}_wait_p99`, value: (s) => byC(s, c)?.wait_ms.p99, fmt: fmtMs, better: 'low' },
      { label: `${label}: completed`, key: `${c}_completed`, value: (s) => byC(s, c)?.completed, fmt: fmtInt, better: 'high' },
    );
  }
  if (reports.some((r) => r.summary.flows)) {
    const fl = (s: Summary) => s.flows;
    const lat = (s: Summary, q: 'p50' | 'p99') => {
      const f = fl(s);
      return f && f.latency_ms.count > 0 ? f.latency_ms[q] : undefined;
    };
    out.push(
      { label: 'Flows completed', key: 'flows_completed', value: (s) => fl(s)?.completed, fmt: fmtInt, better: 'high' },
      { label: 'Flows failed', key: 'flows_failed', value: (s) => fl(s)?.failed, fmt: fmtInt, better: 'low' },
      { label: 'Flow latency p50', key: 'flow_p50', value: (s) => lat(s, 'p50'), fmt: fmtMs, better: 'low' },
      { label: 'Flow latency p99', key: 'flow_p99', value: (s) => lat(s, 'p99'), fmt: fmtMs, better: 'low' },
    );
  }
  out.push({ label: 'Run hash', key: 'run_hash', value: (s) => s.run_hash, fmt: String });
  return out;
}

function cell(row: Row, s: Summary): HTMLTableCellElement {
  const v = row.value(s);
  const text = v === undefined ? '–' : typeof v === 'string' ? v : row.fmt(v);
  // The raw number beside the formatted one (milliseconds, counts, fractions).
  return h('td', { 'data-key': row.key, 'data-value': typeof v === 'number' ? v : undefined }, text);
}

/** The summary of `reports` (one, or two compared: A, B and B − A). */
export function summaryTable(reports: Report[], names: string[] = ['A', 'B']): HTMLTableElement {
  const compare = reports.length === 2;
  const head = h('tr', {}, h('th', { scope: 'col' }, 'Metric'), ...reports.map((_, i) => h('th', { scope: 'col' }, compare ? names[i] : 'Value')));
  if (compare) head.append(h('th', { scope: 'col' }, 'B − A'));
  const body = rows(reports).map((row) => {
    const tr = h('tr', {}, h('th', { scope: 'row' }, row.label), ...reports.map((r) => cell(row, r.summary)));
    if (compare) {
      const [a, b] = reports.map((r) => row.value(r.summary));
      let text = '';
      let cls = '';
      if (typeof a === 'number' && typeof b === 'number') {
        const d = b - a;
        text = d === 0 ? '=' : `${d > 0 ? '+' : '−'}${row.fmt(Math.abs(d))}`;
        if (d !== 0 && row.better) cls = (d < 0) === (row.better === 'low') ? 'better' : 'worse';
      } else if (typeof a === 'string') {
        text = a === b ? 'same' : 'differs';
      }
      tr.append(h('td', { class: cls }, text, cls ? h('span', { class: 'sr-only' }, ` (${cls})`) : null));
    }
    return tr;
  });
  const table = h('table', { class: 'summary' }, h('caption', {}, compare ? 'Summary, side by side' : 'Summary'), h('thead', {}, head), h('tbody', {}, body));
  return table;
}

/** Per worker group: completed, failed, crashes, late, utilisation. */
export function workersTable(report: Report): HTMLTableElement | null {
  const ws = report.summary.workers;
  if (ws.length === 0) return null;
  return h(
    'table',
    { class: 'summary workers' },
    h('caption', {}, 'Worker groups'),
    h('thead', {}, h('tr', {}, ...['Group', 'Workers', 'Completed', 'Failed', 'Crashes', 'Late', 'Utilisation'].map((t) => h('th', { scope: 'col' }, t)))),
    h(
      'tbody',
      {},
      ws.map((w) =>
        h('tr', {}, h('th', { scope: 'row' }, w.name), h('td', {}, fmtInt(w.count)), h('td', {}, fmtInt(w.completed)), h('td', {}, fmtInt(w.failed)), h('td', {}, fmtInt(w.crashes)), h('td', {}, fmtInt(w.late)), h('td', {}, fmtPct(w.utilisation))),
      ),
    ),
  );
}

/** Per group class (when producers use groups): groups, tasks, and latency and wait percentiles. */
export function groupClassTable(report: Report): HTMLTableElement | null {
  const cs = report.summary.by_group_class ?? [];
  if (cs.length === 0) return null;
  const heads = ['Class', 'Groups', 'Published', 'Completed', 'Dead', 'Cancelled', 'Latency p50', 'Latency p99', 'Wait p50', 'Wait p99'];
  return h(
    'table',
    { class: 'summary group-classes' },
    h('caption', {}, 'Message groups: heavy and light'),
    h('thead', {}, h('tr', {}, heads.map((t) => h('th', { scope: 'col' }, t)))),
    h(
      'tbody',
      {},
      cs.map((c) => {
        const ms = (key: string, v: number, count: number) => h('td', { 'data-col': key, 'data-value': count > 0 ? v : undefined }, count > 0 ? fmtMs(v) : '–');
        return h(
          'tr',
          { 'data-class': c.class },
          h('th', { scope: 'row' }, CLASS_LABELS[c.class] ?? c.class),
          h('td', { 'data-col': 'groups' }, fmtInt(c.groups)),
          h('td', { 'data-col': 'published' }, fmtInt(c.published)),
          h('td', { 'data-col': 'completed' }, fmtInt(c.completed)),
          h('td', { 'data-col': 'dead_lettered' }, fmtInt(c.dead_lettered)),
          h('td', { 'data-col': 'cancelled' }, fmtInt(c.cancelled)),
          ms('latency_p50', c.latency_ms.p50, c.latency_ms.count),
          ms('latency_p99', c.latency_ms.p99, c.latency_ms.count),
          ms('wait_p50', c.wait_ms.p50, c.wait_ms.count),
          ms('wait_p99', c.wait_ms.p99, c.wait_ms.count),
        );
      }),
    ),
  );
}

/**
 * Whole flows (when task types have children): how many started and how they ended, and the
 * end-to-end latency (from the flow's `AddFlow` to its root's ack) of the completed ones.
 */
export function flowsTable(report: Report): HTMLTableElement | null {
  const f = report.summary.flows;
  if (!f) return null;
  const some = f.latency_ms.count > 0;
  const counts: [string, string, number][] = [
    ['Started', 'started', f.started],
    ['Completed', 'completed', f.completed],
    ['Failed', 'failed', f.failed],
    ['Cancelled', 'cancelled', f.cancelled],
    ['Still running', 'running', f.running],
    ['Completed with failures', 'completed_with_failures', f.completed_with_failures],
  ];
  if (f.rejected > 0) counts.push(['Refused', 'rejected', f.rejected]);
  const lat: [string, string, number][] = [
    ['Latency p50', 'latency_p50', f.latency_ms.p50],
    ['Latency p90', 'latency_p90', f.latency_ms.p90],
    ['Latency p99', 'latency_p99', f.latency_ms.p99],
    ['Latency max', 'latency_max', f.latency_ms.max],
  ];
  return h(
    'table',
    { class: 'summary flows' },
    h('caption', {}, 'Flows'),
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Whole flows'), h('th', { scope: 'col' }, 'Value'))),
    h(
      'tbody',
      {},
      counts.map(([label, key, v]) => h('tr', {}, h('th', { scope: 'row' }, label), h('td', { 'data-col': key, 'data-value': v }, fmtInt(v)))),
      lat.map(([label, key, v]) => h('tr', {}, h('th', { scope: 'row' }, label), h('td', { 'data-col': key, 'data-value': some ? v : undefined }, some ? fmtMs(v) : '–'))),
    ),
  );
}
