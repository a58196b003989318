// Goal: the sample's TypeScript programs (compiled from host-wasm/client/examples) process the
// sample's workload against the real server: every task ends acked exactly once or in the
// DLQ (the poison task among them), the status, progress and heartbeat keys exist, and a
// subscriber gets one notification per notify_user task done; the DLQ monitor, the progress
// route and the sample's integration test work. Method: a server whose config gives
// `video-processing` two retries 50 ms apart; producer.js queues 4 uploads and a poison task;
// workers.js runs three workers in one process with 30% injected failures and work shortened
// 100-fold. The test waits until nothing is ready, delayed or in flight, checks the ledger
// against the workers' `completed` lines and the DLQ, then stops the workers with SIGINT.
// Every process is stopped by its PID.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { SynapClient } from 'synap-wasm';
import { eventually, examples, startServer } from './harness.mjs';

const run = promisify(execFile);
const QUEUE = 'video-processing';
const CONFIG = 'queues:\n  video-processing:\n    max_retries: 2\n    retry_delays: [0.05]\n';
const UPLOADS = 4;

let server;
const children = [];
before(async () => {
  server = await startServer({ config: CONFIG });
});
after(async () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) process.kill(child.pid, 'SIGKILL');
  await server.stop();
});

function env(extra = {}) {
  const e = { ...process.env, SYNAP_URL: server.url, ...extra };
  delete e.SYNAP_API_KEY;
  return e;
}

/** Starts an example in the background, collecting its output. */
function start(name, extra) {
  const child = spawn(process.execPath, [join(examples, name)], { env: env(extra), stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  child.out = '';
  child.stdout.setEncoding('utf8').on('data', (d) => { if (child.out.length < 8 << 20) child.out += d; });
  child.stderr.setEncoding('utf8').on('data', (d) => { if (child.out.length < 8 << 20) child.out += d; });
  child.done = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
  return child;
}

test('the sample programs settle the workload with failures and a poison task', async () => {
  const synap = new SynapClient({ url: server.url });
  const sub = await synap.pubsub.subscribe('notifications.user.*');
  await run(process.execPath, [join(examples, 'producer.js')], { env: env({ SYNAP_UPLOADS: String(UPLOADS), SYNAP_POISON: '1' }) });
  assert.equal((await synap.queue.stats(QUEUE)).publishedTotal, 2 * UPLOADS + 1);

  const workers = start('workers.js', {
    SYNAP_WORKERS: '3', SYNAP_WORK_SCALE: '0.01', SYNAP_FAIL_RATE: '0.3', SYNAP_SEED: '7',
    SYNAP_WAIT_SECS: '0.5', SYNAP_HEARTBEAT_SECS: '0.5',
  });
  const stats = await eventually(async () => {
    const s = await synap.queue.stats(QUEUE);
    return s.depth === 0 && s.inFlight === 0 && s.ackedTotal + s.deadLetterCount === s.publishedTotal && s;
  }, 60_000, 'the workload to settle');
  const beats = (await synap.kv.keys('worker:')).filter((k) => k.endsWith(':heartbeat'));
  assert.equal(beats.length, 3, beats.join());
  const dlq = await synap.queue.dlqList(QUEUE, { limit: 1000 });
  const received = [];
  for (;;) {
    const next = await Promise.race([sub.next(), new Promise((r) => setTimeout(() => r('idle'), 500))]);
    if (next === 'idle' || next === null) break;
    received.push(next);
  }
  sub.close();

  const monitor = start('dlq-monitor.js', { SYNAP_MONITOR_ONCE: '1' });
  assert.equal(await monitor.done, 3, monitor.out);
  assert.ok(monitor.out.includes(`${stats.deadLetterCount} tasks in dead letter queue`), monitor.out);
  // A nested `node --test` would report to this runner in its binary protocol; plain text is wanted.
  const plain = env();
  delete plain.NODE_TEST_CONTEXT;
  const integration = await run(process.execPath, ['--test', join(examples, 'integration.test.js')], { env: plain });
  assert.match(integration.stdout, /# pass 1/);

  process.kill(workers.pid, 'SIGINT');
  assert.equal(await workers.done, 0, workers.out);
  const completed = [...workers.out.matchAll(/completed (\S+) (\S+)/g)].map((m) => [m[1], m[2]]);
  const ids = new Set(completed.map(([id]) => id));
  assert.equal(ids.size, completed.length, 'a task was acked twice');
  assert.equal(ids.size, stats.ackedTotal);
  const dead = new Map(dlq.messages.map((d) => [d.messageId, d]));
  for (const id of ids) assert.ok(!dead.has(id), 'a task was both acked and dead-lettered');
  assert.equal(ids.size + dead.size, stats.publishedTotal);
  const poison = [...dead.values()].filter((d) => d.message.type === 'corrupt_upload');
  assert.equal(poison.length, 1);
  assert.match(poison[0].lastError ?? '', /Unknown task type/);
  assert.match(workers.out, /error: injected failure/);
  const notified = completed.filter(([, kind]) => kind === 'notify_user').length;
  assert.ok(notified >= 1);
  assert.equal(received.length, notified);
  assert.equal(workers.out.match(/stopped after/g).length, 3);

  const deadTranscodes = new Set([...dead.values()].filter((d) => d.message.type === 'transcode').map((d) => d.message.videoId));
  const progressRoute = start('progress.js', { SYNAP_PROGRESS_PORT: '0' });
  const base = await eventually(() => /listening on (\S+)/.exec(progressRoute.out)?.[1], 10_000, 'the progress route');
  for (let n = 1; n <= UPLOADS; n++) {
    if (deadTranscodes.has(`vid-${n}`)) continue;
    assert.equal((await synap.kv.get(`video:vid-${n}:status`)).found, true);
    const res = await fetch(`${base}/api/videos/vid-${n}/progress`);
    assert.equal(res.status, 200);
    assert.equal((await res.json()).progress, 100);
  }
  assert.equal((await fetch(`${base}/api/videos/vid-none/progress`)).status, 404);
  process.kill(progressRoute.pid, 'SIGTERM');
  await progressRoute.done;
});
