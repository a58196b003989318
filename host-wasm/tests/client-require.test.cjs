// Goal: the npm package's CommonJS entry gives the TypeScript client beside Engine and
// Simulation. Method: require it by name; construct a client (no network call).
const test = require('node:test');
const assert = require('node:assert/strict');
const pkg = require('synap-wasm');

test('require() exports SynapClient and SynapError with the engine', () => {
  assert.equal(typeof pkg.Engine, 'function');
  assert.equal(typeof pkg.Simulation, 'function');
  const client = new pkg.SynapClient({ url: 'http://127.0.0.1:15500/' });
  assert.equal(client.url, 'http://127.0.0.1:15500');
  assert.equal(typeof client.queue.publish, 'function');
  const e = new pkg.SynapError('m', 'queue_not_found', 404);
  assert.ok(e instanceof Error);
  assert.equal(e.isNotFound, true);
});
