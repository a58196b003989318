/** The capacity planner's sweeps: one scenario parameter set to each value of a range. */
import type { Json, Scenario } from './types.js';

export type Param = 'workers' | 'retry' | 'ack' | 'rate';

export const PARAMS: Record<Param, { label: string; unit: string; integer: boolean }> = {
  workers: { label: 'Worker count', unit: 'workers', integer: true },
  retry: { label: 'Retry delays ×', unit: '× retry delays', integer: false },
  ack: { label: 'Ack deadline (s)', unit: 's ack deadline', integer: false },
  rate: { label: 'Arrival rate ×', unit: '× arrival rate', integer: false },
};

/** Most points in one sweep. */
export const MAX_POINTS = 25;

function objects(v: Json | undefined): { [k: string]: Json }[] {
  return Array.isArray(v) ? v.filter((x): x is { [k: string]: Json } => x !== null && typeof x === 'object' && !Array.isArray(x)) : [];
}

/** The values a sweep visits: `from`..`to` in `steps` points (whole numbers for counts). */
export function sweepValues(param: Param, from: number, to: number, steps: number): number[] {
  if (!Number.isFinite(from) || !Number.isFinite(to) || from < 0 || to < from) throw new Error('the range must satisfy 0 ≤ from ≤ to');
  if (PARAMS[param].integer) {
    const lo = Math.ceil(from);
    const hi = Math.floor(to);
    if (hi - lo + 1 > MAX_POINTS) throw new Error(`at most ${MAX_POINTS} points`);
    return Array.from({ length: Math.max(0, hi - lo + 1) }, (_, i) => lo + i);
  }
  const n = Math.floor(steps);
  if (!(n >= 2 && n <= MAX_POINTS)) throw new Error(`points must be 2–${MAX_POINTS}`);
  return Array.from({ length: n }, (_, i) => Number((from + ((to - from) * i) / (n - 1)).toPrecision(6)));
}

/** `base` with the parameter set to `x` (`group` picks the worker group for `workers`). */
export function applyParam(base: Scenario, param: Param, x: number, group = 0): Scenario {
  const s = structuredClone(base);
  const qc = (s.queue_config ??= {}) as { [k: string]: Json };
  switch (param) {
    case 'workers': {
      const g = objects(s.workers)[group];
      if (!g) throw new Error('the scenario has no such worker group');
      g.count = Math.round(x);
      break;
    }
    case 'retry': {
      if (Array.isArray(qc.retry_delays_ms)) qc.retry_delays_ms = qc.retry_delays_ms.map((d) => Math.round(Number(d) * x));
      const b = qc.backoff;
      if (b && typeof b === 'object' && !Array.isArray(b)) {
        for (const k of ['initial_ms', 'max_ms']) if (typeof b[k] === 'number') b[k] = Math.round((b[k] as number) * x);
      }
      break;
    }
    case 'ack': {
      const ms = Math.max(1, Math.round(x * 1000));
      qc.ack_deadline_ms = ms;
      for (const g of objects(s.workers)) if (typeof g.lease_ms === 'number') g.lease_ms = ms;
      break;
    }
    case 'rate': {
      for (const p of objects(s.producers)) {
        const a = p.arrival;
        if (!a || typeof a !== 'object' || Array.isArray(a)) continue;
        if (typeof a.rate_per_sec === 'number') a.rate_per_sec = Math.max(1e-6, a.rate_per_sec * x);
        if (typeof a.size === 'number') a.size = Math.max(1, Math.min(1000, Math.round(a.size * x)));
      }
      break;
    }
  }
  return s;
}

/** The current value of the parameter in `s` (a range's natural centre). */
export function currentValue(s: Scenario, param: Param, group = 0): number {
  if (param === 'workers') {
    const g = objects(s.workers)[group];
    return g && typeof g.count === 'number' ? g.count : 1;
  }
  if (param === 'ack') {
    const qc = s.queue_config as { [k: string]: Json } | undefined;
    return typeof qc?.ack_deadline_ms === 'number' ? qc.ack_deadline_ms / 1000 : 30;
  }
  return 1;
}
