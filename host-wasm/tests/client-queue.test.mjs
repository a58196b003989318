// Goal: every queue method of the TypeScript SynapClient works against the real server, with
// the sample's camelCase shapes, and refusals arrive as SynapError with the server's code and
// HTTP status. Method: one in-memory synap-server on a free port (stopped by PID at the end);
// each test uses its own queue names.
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

test('publish, consume and ack carry the sample fields', async () => {
  const r = await synap.queue.publish('ts-basic', { type: 'test_task', data: 'test' }, {
    priority: 7, headers: { source: 'web-upload' }, maxRetries: 2,
  });
  assert.match(r.messageId, /^[0-9a-f-]{36}$/);
  assert.equal(r.position, 1);
  const msg = await synap.queue.consume('ts-basic', { timeout: 1, ackDeadline: 30, consumerId: 'c1' });
  assert.equal(msg.messageId, r.messageId);
  assert.deepEqual(msg.message, { type: 'test_task', data: 'test' });
  assert.equal(msg.priority, 7);
  assert.equal(msg.retryCount, 0);
  assert.equal(msg.maxRetries, 2);
  assert.deepEqual(msg.headers, { source: 'web-upload' });
  assert.equal(typeof msg.lease, 'number');
  assert.ok(msg.publishedAt > 1_600_000_000_000);
  assert.ok(msg.leaseDeadline > msg.publishedAt);
  await synap.queue.ack('ts-basic', msg.messageId, msg.lease);
  const stats = await synap.queue.stats('ts-basic');
  assert.equal(stats.depth, 0);
  assert.equal(stats.ackedTotal, 1);
  assert.equal(stats.publishedTotal, 1);
  assert.equal(stats.consumedTotal, 1);
  assert.equal(stats.consumers, 1);
  for (const k of ['deadLetteredTotal', 'deadLetterCount', 'avgWaitTimeMs', 'inFlight', 'nackedTotal']) {
    assert.equal(typeof stats[k], 'number', k);
  }
});

test('consume with no options answers at once, and a long-poll ends empty with null', async () => {
  await synap.queue.create('ts-empty');
  assert.equal(await synap.queue.consume('ts-empty'), null);
  const t0 = Date.now();
  assert.equal(await synap.queue.consume('ts-empty', { timeout: 0.3 }), null);
  assert.ok(Date.now() - t0 >= 250, 'the server held the long-poll');
  await rejectsWith(synap.queue.consume('ts-empty', { maxMessages: 2 }), 'invalid_argument', 0);
});

test('a long-poll is answered by a publish', async () => {
  await synap.queue.create('ts-poll');
  const waiting = synap.queue.consume('ts-poll', { timeout: 5 });
  await new Promise((r) => setTimeout(r, 100));
  await synap.queue.publish('ts-poll', 'late');
  assert.equal((await waiting).message, 'late');
});

test('priorities order delivery; delayed messages have no position', async () => {
  await synap.queue.publish('ts-prio', 'low', { priority: 1 });
  await synap.queue.publish('ts-prio', 'high', { priority: 9 });
  const delayed = await synap.queue.publish('ts-prio', 'later', { delay: 60 });
  assert.equal(delayed.position, null);
  const [a, b] = await synap.queue.consumeBatch('ts-prio', { maxMessages: 10 });
  assert.equal(a.message, 'high');
  assert.equal(b.message, 'low');
  const stats = await synap.queue.stats('ts-prio');
  assert.equal(stats.delayed, 1);
  assert.equal(stats.inFlight, 2);
});

test('batches: publishBatch, consumeBatch and ackBatch with a refused entry', async () => {
  const rs = await synap.queue.publishBatch('ts-batch', [{ message: 1 }, { message: 2, priority: 9 }, { message: 3 }]);
  assert.equal(rs.length, 3);
  const msgs = await synap.queue.consumeBatch('ts-batch', { maxMessages: 3 });
  assert.deepEqual(msgs.map((m) => m.message), [2, 1, 3]);
  const result = await synap.queue.ackBatch('ts-batch', [
    ...msgs.map((m) => ({ messageId: m.messageId, lease: m.lease })),
    { messageId: msgs[0].messageId },
  ]);
  assert.equal(result.acked, 3);
  assert.equal(result.failed.length, 1);
  assert.equal(result.failed[0].messageId, msgs[0].messageId);
  assert.equal(typeof result.failed[0].code, 'string');
});

test('nack retries, then dead-letters; the DLQ lists, retries and purges', async () => {
  await synap.queue.create('ts-dlq', { maxRetries: 1 });
  await synap.queue.publish('ts-dlq', { n: 1 });
  const first = await synap.queue.consume('ts-dlq');
  assert.equal(await synap.queue.nack('ts-dlq', first.messageId, true, { error: 'boom', lease: first.lease }), 'requeued');
  const second = await synap.queue.consume('ts-dlq');
  assert.equal(second.retryCount, 1);
  assert.equal(await synap.queue.nack('ts-dlq', second.messageId), 'dead_lettered');
  let stats = await synap.queue.stats('ts-dlq');
  assert.equal(stats.deadLetterCount, 1);
  assert.equal(stats.deadLetteredTotal, 1);
  const page = await synap.queue.dlqList('ts-dlq', { limit: 10 });
  assert.equal(page.total, 1);
  assert.equal(page.messages[0].messageId, first.messageId);
  assert.equal(page.messages[0].originQueue, 'ts-dlq');
  assert.deepEqual(page.messages[0].message, { n: 1 });
  assert.equal(page.messages[0].reason, 'max_retries_exceeded');
  assert.equal(await synap.queue.dlqRetry('ts-dlq'), 1);
  const again = await synap.queue.consume('ts-dlq');
  assert.equal(await synap.queue.nack('ts-dlq', again.messageId, false, { error: 'poison' }), 'dead_lettered');
  assert.equal((await synap.queue.dlqList('ts-dlq')).messages[0].lastError, 'poison');
  assert.equal(await synap.queue.dlqPurge('ts-dlq'), 1);
  stats = await synap.queue.stats('ts-dlq');
  assert.equal(stats.deadLetterCount, 0);
});

test('nack with a delay delays; extend moves the deadline; a stale lease is refused', async () => {
  await synap.queue.publish('ts-lease', 'x');
  const m = await synap.queue.consume('ts-lease', { ackDeadline: 5 });
  const deadline = await synap.queue.extend('ts-lease', m.messageId, 60, m.lease);
  assert.ok(deadline > m.leaseDeadline + 50_000);
  await rejectsWith(synap.queue.ack('ts-lease', m.messageId, m.lease + 1), 'lease_mismatch', 409);
  await rejectsWith(synap.queue.extend('ts-lease', m.messageId, 10, m.lease + 1), 'lease_mismatch', 409);
  assert.equal(await synap.queue.nack('ts-lease', m.messageId, true, { delay: 30, lease: m.lease }), 'delayed');
  assert.equal((await synap.queue.stats('ts-lease')).delayed, 1);
});

test('create, list, purge and delete queues', async () => {
  assert.deepEqual(await synap.queue.create('ts-admin', { ackDeadlineSecs: 12, retryDelays: [1, 2] }), { created: true });
  assert.deepEqual(await synap.queue.create('ts-admin'), { created: false });
  assert.ok((await synap.queue.list()).includes('ts-admin'));
  await synap.queue.publishBatch('ts-admin', [{ message: 1 }, { message: 2 }]);
  assert.equal(await synap.queue.purge('ts-admin'), 2);
  assert.equal(await synap.queue.delete('ts-admin'), true);
  assert.equal(await synap.queue.delete('ts-admin'), false);
  assert.ok(!(await synap.queue.list()).includes('ts-admin'));
});

test('refusals carry the server code and status', async () => {
  await rejectsWith(synap.queue.stats('ts-missing'), 'queue_not_found', 404);
  await rejectsWith(synap.queue.publish('bad name!', 1), 'invalid_argument', 400);
  await rejectsWith(synap.queue.publish('ts-x', 1, { priority: 12 }), 'invalid_argument', 400);
  await rejectsWith(synap.queue.ack('ts-basic', 'not-a-uuid'), 'invalid_argument', 400);
  await rejectsWith(synap.queue.create('ts-full', { maxDepth: 1 }).then(() =>
    synap.queue.publishBatch('ts-full', [{ message: 1 }, { message: 2 }])), 'queue_full', 507);
});

test('a server that is not there is a transport error; a bad URL is refused', async () => {
  const gone = new SynapClient({ url: 'http://127.0.0.1:1' });
  await rejectsWith(gone.queue.list(), 'transport', 0);
  assert.throws(() => new SynapClient({ url: 'not a url' }), (e) => e instanceof SynapError && e.code === 'invalid_argument');
  assert.throws(() => new SynapClient({ url: 'ftp://x' }), (e) => e instanceof SynapError && e.code === 'invalid_argument');
  assert.equal((await synap.health()).status, 'healthy');
});
