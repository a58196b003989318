// Goal: a real server's command log replayed by the wasm `Simulation` ends in exactly the
// server's state. Method: a synap-server on a temp data directory (stopped by PID) gets
// publishes (one with a repeated idempotency key), a consume, an ack, a nack and KV writes;
// its `/debug/state_digest` at a fixed future time is compared with the `state_digest` of
// `Simulation.replay` on `synap-server data export DIR`, run to the same time.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Simulation } from 'synap-wasm';
import { serverBinary, startServer } from './harness.mjs';

let server;
let dir;
before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'synap-replay-'));
  server = await startServer({ dataDir: dir });
});
after(async () => {
  await server.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function call(method, path, body) {
  const res = await fetch(server.url + path, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await res.json();
  assert.ok(res.ok, `${path}: ${JSON.stringify(json)}`);
  return json;
}

test('Simulation.replay of a data export reaches the server state digest', async () => {
  for (let i = 0; i < 4; i++) await call('POST', '/queue/videos/publish', { message: { n: i }, priority: i });
  const first = await call('POST', '/queue/videos/publish', { message: 'once', idempotency_key: 'upload-7' });
  const again = await call('POST', '/queue/videos/publish', { message: 'once', idempotency_key: 'upload-7' });
  assert.equal(again.message_id, first.message_id);
  assert.equal(again.duplicate, true);
  const { messages } = await call('POST', '/queue/videos/consume', { max_messages: 2, ack_deadline: 30 });
  await call('POST', '/queue/videos/ack', { message_id: messages[0].message_id });
  await call('POST', '/queue/videos/nack', { message_id: messages[1].message_id, delay: 5 });
  await call('POST', '/kv/set', { key: 'video:1:progress', value: { pct: 40 }, ttl: 60 });
  await call('POST', '/kv/incr', { key: 'done', by: 3 });
  const at = Date.now() + 3_600_000;
  const live = await call('GET', `/debug/state_digest?at_ms=${at}`);

  const exported = execFileSync(serverBinary(), ['data', 'export', dir], { encoding: 'utf8' });
  const head = JSON.parse(exported.split('\n')[0]);
  assert.equal(head.type, 'head');
  const report = Simulation.replay(exported, { until_ms: at, sample_interval_ms: 60_000 });
  assert.equal(report.state_digest, live.state_digest);
  assert.equal(report.summary.published, 5, 'the repeated key published nothing');
  assert.ok(report.series.length > 1);
});
