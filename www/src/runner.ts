/**
 * The page's side of the simulation workers: a small pool (one worker per core, at most two)
 * so compare and sweeps run in parallel while the page stays responsive.
 */
import type { WorkerReply, WorkerRequest } from './worker.js';
import type { PresetInfo, ReplayOptions, Report, Scenario } from './types.js';

type Job = {
  req: WorkerRequest;
  onProgress?: (fraction: number) => void;
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
};

/** `Omit` applied to each member of a union. */
type DistributiveOmit<T, K extends keyof T> = T extends unknown ? Omit<T, K> : never;

type Slot = { worker: Worker; job: Job | null };

/** What a replay answers. */
export interface ReplayResult {
  report: Report;
  format: 'export' | 'replay';
  /** The record an export's snapshot covers: the replay starts from the state there. */
  snapshotIndex: number | null;
}

export class Runner {
  private slots: Slot[] = [];
  private queue: Job[] = [];
  private nextId = 1;

  constructor(private readonly size = Math.max(1, Math.min(2, navigator.hardwareConcurrency || 1))) {}

  private spawn(): Slot {
    const worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
    const slot: Slot = { worker, job: null };
    worker.onmessage = (ev: MessageEvent<WorkerReply>) => this.reply(slot, ev.data);
    worker.onerror = (ev) => {
      ev.preventDefault();
      this.fail(slot, new Error(ev.message || 'the simulation worker failed'));
    };
    this.slots.push(slot);
    return slot;
  }

  private reply(slot: Slot, msg: WorkerReply): void {
    const job = slot.job;
    if (!job || msg.id !== job.req.id) return;
    if (msg.type === 'progress') {
      job.onProgress?.(msg.fraction);
      return;
    }
    slot.job = null;
    if (msg.type === 'done') job.resolve(msg.result);
    else job.reject(new Error(msg.message));
    this.pump();
  }

  private fail(slot: Slot, error: Error): void {
    const job = slot.job;
    slot.worker.terminate();
    this.slots = this.slots.filter((s) => s !== slot);
    if (job) job.reject(error);
    this.pump();
  }

  private pump(): void {
    while (this.queue.length > 0) {
      let slot = this.slots.find((s) => s.job === null);
      if (!slot && this.slots.length < this.size) slot = this.spawn();
      if (!slot) return;
      const job = this.queue.shift() as Job;
      slot.job = job;
      slot.worker.postMessage(job.req);
    }
  }

  private submit<T>(req: DistributiveOmit<WorkerRequest, 'id'>, onProgress?: (f: number) => void): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const full = { ...req, id: this.nextId++ } as WorkerRequest;
      this.queue.push({ req: full, onProgress, resolve: resolve as (v: unknown) => void, reject });
      this.pump();
    });
  }

  /** Runs a scenario to the end, reporting progress in `chunks` steps. */
  run(scenario: Scenario, onProgress?: (f: number) => void, chunks = 40): Promise<Report> {
    return this.submit<Report>({ kind: 'run', scenario, chunks }, onProgress);
  }

  /** Replays a command log: a server's export or the simulator's replay lines. */
  replay(text: string, options: ReplayOptions): Promise<ReplayResult> {
    return this.submit<ReplayResult>({ kind: 'replay', text, options });
  }

  /** The presets with their scenarios. */
  presets(): Promise<(PresetInfo & { scenario: Scenario })[]> {
    return this.submit({ kind: 'presets' });
  }

  /** Stops every worker and drops queued jobs (a new run replaces them). */
  cancel(): void {
    for (const slot of this.slots) {
      slot.worker.terminate();
      slot.job?.reject(new Error('cancelled'));
    }
    this.slots = [];
    for (const job of this.queue) job.reject(new Error('cancelled'));
    this.queue = [];
  }
}
