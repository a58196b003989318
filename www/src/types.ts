/** The simulator's report (docs/simulator.md, core/src/sim/report.rs) and scenario shapes. */

export interface PriorityWait {
  priority: number;
  count: number;
  p50: number;
  p99: number;
}

export interface Sample {
  t_ms: number;
  ready: number;
  delayed: number;
  in_flight: number;
  dead_letter: number;
  waiters: number;
  published: number;
  completed: number;
  dead_lettered: number;
  /** Tasks that ended cancelled in the interval. */
  cancelled?: number;
  throughput_per_sec: number;
  wait_ms: PriorityWait[];
  /** The interval's waits per group class (only when producers use groups). */
  group_wait_ms?: ClassWait[];
  /** The interval's flows (only when task types have children). */
  flows?: FlowSample;
}

/** Flows within one sample interval (`series[].flows`). */
export interface FlowSample {
  /** Parents waiting for their children at the sample's instant. */
  waiting_children: number;
  started: number;
  completed: number;
  failed: number;
  cancelled: number;
  /** End-to-end latency of the flows completed in the interval. */
  latency_ms: { count: number; p50: number; p99: number };
}

/** Flows over the run (`summary.flows`): a task of a type with children and everything below it. */
export interface FlowStats {
  started: number;
  completed: number;
  failed: number;
  cancelled: number;
  running: number;
  /** Completed flows in which some task failed (`continue`, `ignore`). */
  completed_with_failures: number;
  /** Flows the engine refused. */
  rejected: number;
  /** From the flow's `AddFlow` to its root's ack, of completed flows. */
  latency_ms: Percentiles;
}

/** A message group class of the report: the group `heavy`, every other group, no group. */
export type GroupClass = 'heavy' | 'light' | 'ungrouped';

/** Report order of the classes. */
export const GROUP_CLASSES: GroupClass[] = ['heavy', 'light', 'ungrouped'];

export interface ClassWait {
  class: GroupClass;
  count: number;
  p50: number;
  p99: number;
}

export interface Percentiles {
  count: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

export interface PriorityStats {
  priority: number;
  published: number;
  completed: number;
  dead_lettered: number;
  latency_ms: Percentiles;
  wait_ms: Percentiles;
}

/** One group class's figures over the whole run (`summary.by_group_class`). */
export interface GroupClassStats {
  class: GroupClass;
  /** 1 for `heavy`, the largest producer `count` for `light`, 0 for `ungrouped`. */
  groups: number;
  published: number;
  completed: number;
  dead_lettered: number;
  cancelled: number;
  latency_ms: Percentiles;
  wait_ms: Percentiles;
}

export interface WorkerStats {
  name: string;
  count: number;
  completed: number;
  failed: number;
  crashes: number;
  late: number;
  utilisation: number;
}

export interface Summary {
  simulated_ms: number;
  published: number;
  completed: number;
  dead_lettered: number;
  dead_letter_reasons: { rejected: number; max_retries_exceeded: number; expired: number };
  /** Jobs that ended cancelled (the scenario's `cancel` settings). */
  cancelled?: number;
  purged: number;
  still_in_system: number;
  deliveries: number;
  nacked: number;
  retries: number;
  lease_expired: number;
  rejected_publishes: number;
  by_priority: PriorityStats[];
  /** Per group class, heavy, light, ungrouped (only when producers use groups). */
  by_group_class?: GroupClassStats[];
  workers: WorkerStats[];
  utilisation: number;
  commands: number;
  events_processed: number;
  run_hash: string;
  /** Whole flows (only when task types have children). */
  flows?: FlowStats;
}

export interface Report {
  name: string;
  seed: string;
  finished: boolean;
  sample_interval_ms: number;
  series: Sample[];
  summary: Summary;
  /** A replay's final engine state digest, as a server's `/debug/state_digest` (hex). */
  state_digest?: string | null;
}

/** A scenario as JSON: the app edits the fields it knows and keeps the rest as they are. */
export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
export type Scenario = { [k: string]: Json };

/** Replay options of `Simulation.replay`. */
export interface ReplayOptions {
  seed?: number | string;
  sample_interval_ms?: number;
  until_ms?: number;
}

/** A preset's name and description. */
export interface PresetInfo {
  name: string;
  description: string;
}
