/**
 * The simulation worker: runs the wasm `Simulation` off the page's thread. Requests:
 * `{id, kind: 'run', scenario, chunks}` steps the simulation in `chunks` slices of virtual
 * time, posting `{id, type: 'progress', fraction}` after each, then `{id, type: 'done',
 * report}`; `{id, kind: 'replay', text, options}` replays a command log; `{id, kind: 'presets'}`
 * lists the presets with their scenarios. Failures answer `{id, type: 'error', message}`.
 */
import init, { Simulation } from 'synap-wasm/web/raw';
import { parseCommandLog } from './replay-format.js';
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

/** Replays a log: `Simulation.replay` reads the text as it is when it can (the simulator's
 * `{"at", "command"}` lines, and exports where the wasm build reads them); otherwise an export
 * is translated to replay lines, with the seed and engine config of its head line. */
function replay(text: string, options: ReplayOptions): unknown {
  const parsed = parseCommandLog(text);
  let first: unknown;
  try {
    return { report: Simulation.replay(text, options), format: parsed.format, commands: parsed.commands, firstIndex: parsed.firstIndex };
  } catch (e) {
    if (parsed.format !== 'export') throw e;
    first = e;
  }
  try {
    const report = Simulation.replay(parsed.text, { ...parsed.options, ...options });
    return { report, format: parsed.format, commands: parsed.commands, firstIndex: parsed.firstIndex };
  } catch (e) {
    throw new Error(`${message(e)} (reading the export directly: ${message(first)})`);
  }
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
