/**
 * The capacity planner's sweeps: one scenario parameter set to each value of a range, with the
 * rules of the core's sweeps (core/src/sim/sweep.rs): counts and flow limits are whole numbers
 * (`max_in_flight`, `group_concurrency` and `rate_limit` at least 1), `fair_groups` is 0 (off)
 * or 1 (on), and a swept `rate_limit` keeps the scenario's window (1 s when it has none).
 */
import type { Json, Scenario } from './types.js';

export type Param = 'workers' | 'retry' | 'ack' | 'rate' | 'max_in_flight' | 'group_concurrency' | 'rate_limit' | 'fair_groups';

/** `integer`: whole numbers from `min` (and up to `max`); otherwise factors or seconds. */
export const PARAMS: Record<Param, { label: string; unit: string; integer: boolean; min: number; max?: number }> = {
  workers: { label: 'Worker count', unit: 'workers', integer: true, min: 0 },
  retry: { label: 'Retry delays ×', unit: '× retry delays', integer: false, min: 0 },
  ack: { label: 'Ack deadline (s)', unit: 's ack deadline', integer: false, min: 0 },
  rate: { label: 'Arrival rate ×', unit: '× arrival rate', integer: false, min: 0 },
  max_in_flight: { label: 'Max in flight', unit: 'max in flight', integer: true, min: 1 },
  group_concurrency: { label: 'Group concurrency', unit: 'deliveries per group', integer: true, min: 1 },
  rate_limit: { label: 'Rate limit (per window)', unit: 'deliveries per window', integer: true, min: 1 },
  fair_groups: { label: 'Fair groups (0 off, 1 on)', unit: 'fair groups (0 off, 1 on)', integer: true, min: 0, max: 1 },
};

/** Window of a swept rate limit when the scenario has none: one second (as the core's). */
export const DEFAULT_RATE_WINDOW_MS = 1000;

/** Most points in one sweep. */
export const MAX_POINTS = 25;

function objects(v: Json | undefined): { [k: string]: Json }[] {
  return Array.isArray(v) ? v.filter((x): x is { [k: string]: Json } => x !== null && typeof x === 'object' && !Array.isArray(x)) : [];
}

/** The values a sweep visits: `from`..`to` in `steps` points (whole numbers for counts). */
export function sweepValues(param: Param, from: number, to: number, steps: number): number[] {
  if (!Number.isFinite(from) || !Number.isFinite(to) || from < 0 || to < from) throw new Error('the range must satisfy 0 ≤ from ≤ to');
  const spec = PARAMS[param];
  if (spec.integer) {
    const lo = Math.ceil(from);
    const hi = Math.floor(to);
    if (hi - lo + 1 > MAX_POINTS) throw new Error(`at most ${MAX_POINTS} points`);
    const values = Array.from({ length: Math.max(0, hi - lo + 1) }, (_, i) => lo + i);
    for (const x of values) {
      if (x < spec.min) throw new Error(`${param}: ${x} is not a whole number ≥ ${spec.min}`);
      if (spec.max !== undefined && x > spec.max) throw new Error(`${param}: ${x} is not 0 (off) or 1 (on)`);
    }
    return values;
  }
  const n = Math.floor(steps);
  if (!(n >= 2 && n <= MAX_POINTS)) throw new Error(`points must be 2–${MAX_POINTS}`);
  return Array.from({ length: n }, (_, i) => Number((from + ((to - from) * i) / (n - 1)).toPrecision(6)));
}

/** `base` with the parameter set to `x` (`group` picks the worker group for `workers`). */
export function applyParam(base: Scenario, param: Param, x: number, group = 0): Scenario {
  const s = structuredClone(base);
  const qc = (s.queue_config ??= {}) as { [k: string]: Json };
  const whole = Math.round(x);
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
    case 'max_in_flight':
      qc.max_in_flight = whole;
      break;
    case 'group_concurrency':
      qc.group_concurrency = whole;
      break;
    case 'rate_limit': {
      const old = qc.rate_limit;
      const per = old && typeof old === 'object' && !Array.isArray(old) && typeof old.per_ms === 'number' ? old.per_ms : DEFAULT_RATE_WINDOW_MS;
      qc.rate_limit = { max: whole, per_ms: per };
      break;
    }
    case 'fair_groups':
      qc.fair_groups = whole === 1;
      break;
  }
  return s;
}

/** The current value of the parameter in `s` (a range's natural centre). */
export function currentValue(s: Scenario, param: Param, group = 0): number {
  if (param === 'workers') {
    const g = objects(s.workers)[group];
    return g && typeof g.count === 'number' ? g.count : 1;
  }
  const qc = s.queue_config as { [k: string]: Json } | undefined;
  if (param === 'ack') return typeof qc?.ack_deadline_ms === 'number' ? qc.ack_deadline_ms / 1000 : 30;
  if (param === 'max_in_flight') {
    if (typeof qc?.max_in_flight === 'number') return qc.max_in_flight;
    // No cap yet: every worker's one message at a time.
    return objects(s.workers).reduce((n, g) => n + (typeof g.count === 'number' ? g.count : 1), 0) || 1;
  }
  if (param === 'group_concurrency') return typeof qc?.group_concurrency === 'number' ? qc.group_concurrency : 1;
  if (param === 'rate_limit') {
    const r = qc?.rate_limit;
    return r && typeof r === 'object' && !Array.isArray(r) && typeof r.max === 'number' ? r.max : 1;
  }
  if (param === 'fair_groups') return qc?.fair_groups === true ? 1 : 0;
  return 1;
}

/** A swept value as the planner shows it (`off`/`on` for fair groups). */
export function valueText(param: Param, x: number): string {
  return param === 'fair_groups' ? (x === 1 ? 'on' : 'off') : String(x);
}
