// Goal: the README's TypeScript quick start runs as written. Method: a fresh server; the
// compiled quickstart-producer.js queues three tasks, quickstart-worker.js takes and acks each
// of them and stops when the queue stays empty; the queue's stats then show three acked and
// nothing left. The server is stopped by its PID.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { SynapClient } from 'synap-wasm';
import { examples, startServer } from './harness.mjs';

const run = promisify(execFile);

let server;
before(async () => {
  server = await startServer();
});
after(async () => {
  await server.stop();
});

test('the quick start producer queues three tasks and the worker acks them', async () => {
  const env = { ...process.env, SYNAP_URL: server.url };
  const produced = await run(process.execPath, [join(examples, 'quickstart-producer.js')], { env });
  assert.equal(produced.stdout.split('\n').filter((l) => l.startsWith('queued video ')).length, 3, produced.stdout);
  const worked = await run(process.execPath, [join(examples, 'quickstart-worker.js')], { env });
  const videos = worked.stdout.split('\n').filter((l) => l.startsWith('transcoding video ')).map((l) => l.slice(18)).sort();
  assert.deepEqual(videos, ['1', '2', '3'], worked.stdout);
  const stats = await new SynapClient({ url: server.url }).queue.stats('video-processing');
  assert.equal(stats.ackedTotal, 3);
  assert.equal(stats.depth, 0);
  assert.equal(stats.inFlight, 0);
});
