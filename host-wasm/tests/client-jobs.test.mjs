// Goal: the job lifecycle of the TypeScript SynapClient (docs/tracking-jobs.md) works against
// the real server with camelCase shapes: lookup and waitFor, progress with its cancelled flag,
// ack with a result, cancel, schedules, and the dedup / debounce publish options. Method: one
// in-memory synap-server on a free port (stopped by PID at the end); each test uses its own
// queue names.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { SynapClient, SynapError } from 'synap-wasm';
import { startServer } from './harness.mjs';

let server;
let synap;
before(async () => {
  server = await startServer();
  synap = new SynapClient({ url: server.url });
});
after(() => server.stop());

async function rejectsWith(promise, code, status) {
  await assert.rejects(promise, (e) => {
    assert.ok(e instanceof SynapError, `not a SynapError: ${e}`);
    assert.equal(e.code, code, e.message);
    assert.equal(e.status, status);
    return true;
  });
}

test('a producer waits for the result a worker reports progress on', async () => {
  const { messageId } = await synap.queue.publish('ts-jobs', { video: 7 }, { priority: 8 });
  let job = await synap.queue.job('ts-jobs', messageId);
  assert.equal(job.state, 'ready');
  assert.equal(job.priority, 8);
  assert.equal(job.attempts, 0);
  assert.deepEqual(job.message, { video: 7 });
  assert.equal(job.progress, null);
  assert.equal(job.result, null);
  assert.equal(job.startedAt, null);
  assert.equal(job.cancelRequested, false);

  const waiting = synap.queue.waitFor('ts-jobs', messageId, { timeout: 20 });
  const msg = await synap.queue.consume('ts-jobs', { ackDeadline: 30 });
  assert.equal(msg.messageId, messageId);
  const p = await synap.queue.progress('ts-jobs', messageId, { pct: 40, stage: '1080p' }, { lease: msg.lease, extend: 120 });
  assert.equal(p.cancelled, false);
  assert.ok(p.leaseDeadline > msg.leaseDeadline + 60_000, 'extend moved the lease');
  job = await synap.queue.job('ts-jobs', messageId);
  assert.equal(job.state, 'in_flight');
  assert.deepEqual(job.progress, { pct: 40, stage: '1080p' });
  assert.equal(job.attempts, 1);
  assert.equal(typeof job.startedAt, 'number');
  await rejectsWith(synap.queue.progress('ts-jobs', messageId, 1, { lease: msg.lease + 1 }), 'lease_mismatch', 409);

  await synap.queue.ack('ts-jobs', messageId, msg.lease, { result: { url: 's3://v/7.mp4' } });
  const done = await waiting;
  assert.equal(done.state, 'completed');
  assert.deepEqual(done.result, { url: 's3://v/7.mp4' });
  assert.equal(typeof done.finishedAt, 'number');
  assert.deepEqual(await synap.queue.job('ts-jobs', messageId), done);

  // A wait that ends first answers the job as it is; the old ack signature still works.
  const later = await synap.queue.publish('ts-jobs', { video: 8 });
  assert.equal((await synap.queue.waitFor('ts-jobs', later.messageId, { timeout: 0.2 })).state, 'ready');
  const m2 = await synap.queue.consume('ts-jobs');
  await synap.queue.ack('ts-jobs', m2.messageId, m2.lease);
  assert.equal((await synap.queue.job('ts-jobs', m2.messageId)).result, null);
  await rejectsWith(synap.queue.job('ts-jobs', '00000000-0000-0000-0000-000000000000'), 'message_not_found', 404);
});

test('cancelled jobs are never delivered and a worker learns of it', async () => {
  const ready = await synap.queue.publish('ts-cancel', 1);
  assert.deepEqual(await synap.queue.cancel('ts-cancel', ready.messageId), { state: 'cancelled' });
  await rejectsWith(synap.queue.cancel('ts-cancel', ready.messageId), 'already_finished', 409);

  const running = await synap.queue.publish('ts-cancel', 2);
  const msg = await synap.queue.consume('ts-cancel');
  assert.equal(msg.messageId, running.messageId, 'the cancelled job was skipped');
  assert.deepEqual(await synap.queue.cancel('ts-cancel', msg.messageId), { state: 'in_flight' });
  assert.equal((await synap.queue.job('ts-cancel', msg.messageId)).cancelRequested, true);
  const p = await synap.queue.progress('ts-cancel', msg.messageId, { pct: 10 }, { lease: msg.lease });
  assert.equal(p.cancelled, true);
  assert.equal(await synap.queue.nack('ts-cancel', msg.messageId, true, { lease: msg.lease }), 'cancelled');
  assert.equal((await synap.queue.job('ts-cancel', msg.messageId)).state, 'cancelled');
  assert.equal(await synap.queue.consume('ts-cancel'), null, 'never retried');
  const stats = await synap.queue.stats('ts-cancel');
  assert.deepEqual([stats.cancelledTotal, stats.keptJobs], [2, 2]);
});

test('until_finished keys and debounced publishes', async () => {
  const keyed = { idempotencyKey: 'render-7', dedup: 'until_finished' };
  const first = await synap.queue.publish('ts-dedup', 1, keyed);
  const again = await synap.queue.publish('ts-dedup', 1, keyed);
  assert.equal(again.duplicate, true);
  assert.equal(again.messageId, first.messageId);
  const msg = await synap.queue.consume('ts-dedup');
  await synap.queue.ack('ts-dedup', msg.messageId, msg.lease);
  const next = await synap.queue.publish('ts-dedup', 1, keyed);
  assert.equal(next.duplicate, undefined, 'the key is released once the job finished');
  assert.notEqual(next.messageId, first.messageId);

  const debounced = { idempotencyKey: 'reindex', debounce: true, delay: 60 };
  const a = await synap.queue.publish('ts-debounce', { n: 1 }, debounced);
  const b = await synap.queue.publish('ts-debounce', { n: 2 }, debounced);
  assert.equal(b.replaced, true);
  assert.equal(a.replaced, undefined);
  assert.equal(b.messageId, a.messageId);
  const job = await synap.queue.job('ts-debounce', a.messageId);
  assert.equal(job.state, 'delayed');
  assert.deepEqual(job.message, { n: 2 });
  assert.equal((await synap.queue.stats('ts-debounce')).delayed, 1);
});

test('schedules are put, listed, run and deleted', async () => {
  const nightly = { cron: '0 3 * * *', message: { report: 'daily' }, priority: 7 };
  const set = await synap.queue.schedules.put('ts-reports', 'nightly', nightly);
  assert.equal(set.id, 'nightly');
  assert.equal(set.created, true);
  assert.equal(typeof set.nextRunAt, 'number');
  await synap.queue.schedules.put('ts-reports', 'hourly', { everySecs: 3600, message: { report: 'hourly' }, maxRuns: 10 });
  assert.equal((await synap.queue.schedules.put('ts-reports', 'nightly', nightly)).created, false);

  let list = await synap.queue.schedules.list('ts-reports');
  assert.deepEqual(list.map((s) => s.id), ['hourly', 'nightly']);
  assert.equal(list[0].everySecs, 3600);
  assert.equal(list[0].maxRuns, 10);
  assert.equal(list[0].cron, null);
  assert.equal(list[1].cron, '0 3 * * *');
  assert.equal(list[1].priority, 7);
  assert.equal(list[1].runs, 0);
  assert.equal(list[1].lastRunAt, null);

  const run = await synap.queue.schedules.run('ts-reports', 'nightly');
  const job = await synap.queue.job('ts-reports', run.messageId);
  assert.deepEqual(job.message, { report: 'daily' });
  assert.equal(job.priority, 7);
  list = await synap.queue.schedules.list('ts-reports');
  assert.equal(list[1].runs, 1);
  assert.equal(list[1].lastMessageId, run.messageId);
  assert.equal(typeof list[1].lastRunAt, 'number');

  assert.equal(await synap.queue.schedules.delete('ts-reports', 'nightly'), true);
  assert.equal(await synap.queue.schedules.delete('ts-reports', 'nightly'), false);
  await rejectsWith(synap.queue.schedules.run('ts-reports', 'nightly'), 'schedule_not_found', 404);
  await rejectsWith(synap.queue.schedules.put('ts-reports', 'bad', { message: 1 }), 'invalid_argument', 400);
  assert.equal((await synap.queue.schedules.list('ts-reports')).length, 1);
});
