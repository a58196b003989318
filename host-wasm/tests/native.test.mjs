// Goal: the same scenario and seed give the same report natively and in wasm.
// Method: run the native `synap-server simulate` (built beforehand into target/release or
// target/debug; SYNAP_SERVER overrides the path) and the wasm Simulation, compare run_hash and
// the whole report.
import test from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Simulation } from 'synap-wasm';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

function server() {
  if (process.env.SYNAP_SERVER) return process.env.SYNAP_SERVER;
  const candidates = [join(root, 'target', 'release', 'synap-server'), join(root, 'target', 'debug', 'synap-server')];
  // The newer build: a release binary left from an earlier benchmark may predate the engine.
  const found = candidates.filter((p) => existsSync(p)).sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs)[0];
  assert.ok(found, `synap-server not built; looked at ${candidates.join(', ')} (run cargo build -p synap-server)`);
  return found;
}

function native(args) {
  const out = execFileSync(server(), ['simulate', ...args], { maxBuffer: 64 << 20 });
  return JSON.parse(out.toString());
}

test('the video preset hashes the same natively and in wasm', () => {
  const n = native(['--preset', 'video-processing']);
  const w = Simulation.fromPreset('video-processing').run();
  assert.equal(w.summary.run_hash, n.summary.run_hash);
  assert.deepEqual(w, n);
});

test('a scenario file with a seed override matches the wasm run', () => {
  const scenario = Simulation.presetScenario('video-processing');
  scenario.duration_ms = 1200000;
  scenario.workers[0].count = 2;
  scenario.task_types[0].service = { dist: 'exponential', mean_ms: 5000 };
  const dir = mkdtempSync(join(tmpdir(), 'synap-sim-'));
  const file = join(dir, 'scenario.json');
  writeFileSync(file, JSON.stringify(scenario));
  const n = native([file, '--seed', '99']);
  const w = new Simulation({ ...scenario, seed: 99 }).run();
  assert.equal(n.seed, '99');
  assert.equal(w.summary.run_hash, n.summary.run_hash);
  assert.deepEqual(w, n);
  assert.notEqual(n.summary.run_hash, native([file]).summary.run_hash);
});
