// Goal: the package loads with require() in Node, with no init call.
// Method: require it by name and run a small engine round-trip and a tiny simulation.
const test = require('node:test');
const assert = require('node:assert/strict');
const { Engine, Simulation } = require('synap-wasm');

test('require() gives working Engine and Simulation', () => {
  const engine = new Engine(null, 3);
  const p = engine.handle(0, { type: 'publish', queue: 'jobs', message: { a: 1 } });
  assert.equal(p.type, 'published');
  const c = engine.handle(1, { type: 'consume', queue: 'jobs' });
  assert.deepEqual(c.messages[0].message, { a: 1 });
  const report = Simulation.fromPreset('steady').run();
  assert.equal(report.finished, true);
  assert.ok(report.summary.completed > 1000);
});
