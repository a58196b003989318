// Goal: the browser build (wasm-bindgen --target web) works and computes the same runs.
// Method: Node cannot fetch file: URLs, so instantiate the web glue from the .wasm bytes with
// initSync (what index.js does with fetch in a browser) and compare with the Node build.
import test from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { initSync, Simulation as WebSimulation } from 'synap-wasm/web/raw';
import { Simulation } from 'synap-wasm';

test('the web build runs the preset with the same hash as the node build', () => {
  const require = createRequire(import.meta.url);
  const pkgJson = require.resolve('synap-wasm/package.json');
  const bytes = readFileSync(new URL('./web/synap_wasm_bg.wasm', `file://${pkgJson}`));
  initSync({ module: bytes });
  const web = WebSimulation.fromPreset('video-processing').run();
  const node = Simulation.fromPreset('video-processing').run();
  assert.equal(web.summary.run_hash, node.summary.run_hash);
  assert.deepEqual(web, node);
});
