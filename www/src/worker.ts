/**
 * The simulation worker: runs the wasm `Simulation` off the page's thread. Requests:
 * `{id, kind: 'run', scenario, chunks}` steps the simulation in `chunks` slices of virtual
 * time, posting `{id, type: 'progress', fraction}` after each, then `{id, type: 'done',
 * report}`; `{id, kind: 'replay', text, options}` replays a command log; `{id, kind: 'presets'}`
 * lists the presets with their scenarios. Failures answer `{id, type: 'error', message}`.
 */
import init, { Simulation } from 'synap-wasm/web/raw';
import type { ReplayOptions, Scenario } from './types.js';

export type WorkerRequest =
  | { id: number; kind: 'run'; scenario: Scenario; chunks: number }
  | { id: number; kind: 'replay'; text: string; options: ReplayOptions }
  | { id: number; kind: 'presets' };

export type WorkerReply =
  | { id: number; type: 'progress'; fraction: number }
  | { id: number; type: 'done'; result: unknown }
  | { id: number; type: 'error'; message: string };

const ready = init({ module_or_path: new URL('./synap_wasm_bg.wasm', import.meta.url) });

function message(e: unknown): string {
  if (e instanceof Error) return e.message;
  if (e && typeof e === 'object' && 'message' in e) return String((e as { message: unknown }).message);
  return String(e);
}

function post(reply: WorkerReply): void {
  (self as unknown as Worker).postMessage(reply);
}

function run(id: number, scenario: Scenario, chunks: number): unknown {
  const sim = new Simulation(scenario);
  const duration = Number((sim.scenario() as Scenario).duration_ms);
  const n = Math.max(1, Math.min(1000, Math.floor(chunks)));
  for (let i = 1; i < n; i++) {
    sim.step(Math.floor((duration * i) / n));
    post({ id, type: 'progress', fraction: i / n });
  }
  const report = sim.run();
  sim.free();
  post({ id, type: 'progress', fraction: 1 });
  return report;
}

/** Replays a log: a server's export (head line first) or the simulator's replay lines. An
 * export's head gives the seed, the engine config and the snapshot state it starts from. */
function replay(text: string, options: ReplayOptions): unknown {
  const first = text.split('\n', 64).find((l) => l.trim() !== '') ?? '';
  const format = /"type"\s*:\s*"head"/.test(first) ? 'export' : 'replay';
  const snap = /"snapshot_index"\s*:\s*(\d+)/.exec(first);
  return { report: Simulation.replay(text, options), format, snapshotIndex: snap ? Number(snap[1]) : null };
}

self.onmessage = async (ev: MessageEvent<WorkerRequest>) => {
  const req = ev.data;
  try {
    await ready;
    let result: unknown;
    if (req.kind === 'run') result = run(req.id, req.scenario, req.chunks);
    else if (req.kind === 'replay') result = replay(req.text, req.options);
    else {
      const list = Simulation.presets() as { name: string; description: string }[];
      result = list.map((p) => ({ ...p, scenario: Simulation.presetScenario(p.name) }));
    }
    post({ id: req.id, type: 'done', result });
  } catch (e) {
    post({ id: req.id, type: 'error', message: message(e) });
  }
};
