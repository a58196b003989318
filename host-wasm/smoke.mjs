// Build check: loads both glues of a freshly built package (Node CommonJS and web ESM) and
// runs an engine call and a short simulation through each. Usage: node smoke.mjs PKG_DIR
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const pkg = resolve(process.argv[2]);
const node = createRequire(import.meta.url)(join(pkg, 'node', 'synap_wasm.js'));
const web = await import(pathToFileURL(join(pkg, 'web', 'synap_wasm.js')).href);
web.initSync({ module: readFileSync(join(pkg, 'web', 'synap_wasm_bg.wasm')) });
const hashes = [node, web].map(({ Engine, Simulation }) => {
  const engine = new Engine(null, 1);
  engine.handle(0, { type: 'publish', queue: 'q', message: { n: 1 } });
  try {
    engine.handle(0, { type: 'ack', queue: 'nope', message_id: '00000000-0000-0000-0000-000000000000' });
    throw new Error('expected queue_not_found');
  } catch (e) {
    if (e.code !== 'queue_not_found') throw e;
  }
  return Simulation.fromPreset('steady').step(60000).summary.run_hash;
});
if (hashes[0] !== hashes[1]) throw new Error(`node and web builds disagree: ${hashes}`);
console.log(`smoke test passed (run_hash ${hashes[0]})`);
