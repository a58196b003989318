// Goal: the flow-control API of the TypeScript SynapClient (docs/controlling-throughput.md)
// works against the real server with camelCase shapes: publishing with a `group`, pause and
// resume, a worker's rateLimit, a snoozing nack, the flow settings of `queue.create`
// (maxInFlight, groupConcurrency, fairGroups, rateLimit, maxSnoozes), the groups listing and
// the flow fields of the stats; and that the client refuses bad arguments before sending.
// Method: one in-memory synap-server on a free port (stopped by PID at the end); each test
// uses its own queue names. Nothing here depends on timing except waits that must end with a
// delivery (a long-poll answered by a resume or by the end of a rate limit).
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

test('a plain queue reports no flow state', async () => {
  await synap.queue.publish('ts-flow-plain', 1);
  const s = await synap.queue.stats('ts-flow-plain');
  assert.equal(s.paused, false);
  assert.equal(s.rateLimitedUntilMs, null);
  assert.equal(s.groups, 0);
  assert.equal(s.heldBack, 0);
  assert.deepEqual(await synap.queue.groups('ts-flow-plain'), []);
  const msg = await synap.queue.consume('ts-flow-plain');
  assert.equal(msg.group, undefined, 'an ungrouped delivery has no group');
});

test('a paused queue takes publishes, delivers nothing, and serves a waiting consumer on resume', async () => {
  await synap.queue.create('ts-flow-pause');
  assert.equal(await synap.queue.pause('ts-flow-pause'), true);
  assert.equal(await synap.queue.pause('ts-flow-pause'), true, 'pausing twice is harmless');
  const { messageId } = await synap.queue.publish('ts-flow-pause', { video: 1 });
  assert.equal(await synap.queue.consume('ts-flow-pause'), null);
  let s = await synap.queue.stats('ts-flow-pause');
  assert.equal(s.paused, true);
  assert.equal(s.ready, 1);
  assert.equal(s.heldBack, 1);

  const waiting = synap.queue.consume('ts-flow-pause', { timeout: 20 });
  // The long-poll is parked before the resume, so it is the resume that serves it.
  for (let i = 0; (await synap.queue.stats('ts-flow-pause')).waiters === 0; i++) {
    assert.ok(i < 200, 'the consume never parked');
    await new Promise((r) => setTimeout(r, 25));
  }
  assert.equal(await synap.queue.resume('ts-flow-pause'), false);
  const msg = await waiting;
  assert.equal(msg?.messageId, messageId);
  s = await synap.queue.stats('ts-flow-pause');
  assert.equal(s.paused, false);
  assert.equal(s.heldBack, 0);
  await synap.queue.ack('ts-flow-pause', msg.messageId, msg.lease);

  await rejectsWith(synap.queue.pause('ts-flow-no-such-queue'), 'queue_not_found', 404);
  await rejectsWith(synap.queue.resume('ts-flow-no-such-queue'), 'queue_not_found', 404);
});

test('groupConcurrency 1 holds a second message of a group while the first is leased', async () => {
  await synap.queue.create('ts-flow-gc', { groupConcurrency: 1 });
  const a1 = await synap.queue.publish('ts-flow-gc', 'a1', { group: 'user-alice' });
  const a2 = await synap.queue.publish('ts-flow-gc', 'a2', { group: 'user-alice' });
  const b1 = await synap.queue.publish('ts-flow-gc', 'b1', { group: 'user-bob' });
  const got = await synap.queue.consumeBatch('ts-flow-gc', { maxMessages: 10 });
  assert.deepEqual(got.map((m) => [m.messageId, m.group]), [[a1.messageId, 'user-alice'], [b1.messageId, 'user-bob']]);
  assert.equal(await synap.queue.consume('ts-flow-gc'), null, "alice's second waits for her first");
  const s = await synap.queue.stats('ts-flow-gc');
  assert.equal(s.groups, 2);
  assert.equal(s.heldBack, 1);
  assert.equal(s.inFlight, 2);
  assert.equal(s.config.groupConcurrency, 1);

  await synap.queue.ack('ts-flow-gc', got[0].messageId, got[0].lease);
  const next = await synap.queue.consume('ts-flow-gc');
  assert.equal(next.messageId, a2.messageId);
  assert.equal(next.group, 'user-alice');
  const job = await synap.queue.job('ts-flow-gc', a2.messageId);
  assert.equal(job.group, 'user-alice');
});

test('maxInFlight caps the leased messages across consumers', async () => {
  await synap.queue.create('ts-flow-mif', { maxInFlight: 2 });
  for (let i = 0; i < 5; i++) await synap.queue.publish('ts-flow-mif', i);
  const first = await synap.queue.consumeBatch('ts-flow-mif', { maxMessages: 10, consumerId: 'w1' });
  assert.equal(first.length, 2);
  assert.deepEqual(await synap.queue.consumeBatch('ts-flow-mif', { maxMessages: 10, consumerId: 'w2' }), []);
  let s = await synap.queue.stats('ts-flow-mif');
  assert.equal(s.inFlight, 2);
  assert.equal(s.heldBack, 3);
  await synap.queue.ack('ts-flow-mif', first[0].messageId, first[0].lease);
  const more = await synap.queue.consumeBatch('ts-flow-mif', { maxMessages: 10, consumerId: 'w2' });
  assert.equal(more.length, 1, 'one ack makes room for one');
  s = await synap.queue.stats('ts-flow-mif');
  assert.equal(s.inFlight, 2);
  assert.equal(s.config.maxInFlight, 2);
});

test("a worker's rateLimit holds deliveries until it ends, and never shortens", async () => {
  await synap.queue.publish('ts-flow-rl-long', 'x');
  const before = Date.now();
  const until = await synap.queue.rateLimit('ts-flow-rl-long', 30);
  assert.ok(until >= before + 29_000, `until ${until} is 30 s away`);
  assert.equal(await synap.queue.consume('ts-flow-rl-long'), null);
  const s = await synap.queue.stats('ts-flow-rl-long');
  assert.equal(s.rateLimitedUntilMs, until);
  assert.equal(s.heldBack, 1);
  assert.equal(await synap.queue.rateLimit('ts-flow-rl-long', 0.5), until, 'a shorter limit changes nothing');

  // A short one: the waiting consumer is served by the engine's timer when it ends.
  await synap.queue.publish('ts-flow-rl-short', 'y');
  const end = await synap.queue.rateLimit('ts-flow-rl-short', 0.3);
  assert.equal(await synap.queue.consume('ts-flow-rl-short'), null);
  const msg = await synap.queue.consume('ts-flow-rl-short', { timeout: 20 });
  assert.equal(msg?.message, 'y');
  assert.ok(Date.now() >= end - 5, 'not delivered before the limit ended');
  assert.equal((await synap.queue.stats('ts-flow-rl-short')).rateLimitedUntilMs, null);
});

test('the rateLimit setting goes over the wire as {max, per_secs}', async () => {
  const cfg = { rateLimit: { max: 2, perSecs: 60 }, groupRateLimit: { max: 5, perSecs: 1.5 } };
  assert.deepEqual(await synap.queue.create('ts-flow-rate', cfg), { created: true });
  for (let i = 0; i < 3; i++) await synap.queue.publish('ts-flow-rate', i);
  const got = await synap.queue.consumeBatch('ts-flow-rate', { maxMessages: 10 });
  assert.equal(got.length, 2);
  const s = await synap.queue.stats('ts-flow-rate');
  assert.deepEqual(s.config.rateLimit, { max: 2, perSecs: 60 });
  assert.deepEqual(s.config.groupRateLimit, { max: 5, perSecs: 1.5 });
  assert.equal(typeof s.rateLimitedUntilMs, 'number', 'the full window holds deliveries');
  assert.equal(s.heldBack, 1);
});

test('fairGroups takes groups in turn and orderedGroups keeps publish order', async () => {
  await synap.queue.create('ts-flow-fair', { fairGroups: true });
  for (const [body, group] of [['a1', 'a'], ['a2', 'a'], ['a3', 'a'], ['b1', 'b']]) {
    await synap.queue.publish('ts-flow-fair', body, { group });
  }
  const order = [];
  for (let m; (m = await synap.queue.consume('ts-flow-fair')) !== null;) order.push(m.message);
  assert.deepEqual(order, ['a1', 'b1', 'a2', 'a3']);

  await synap.queue.create('ts-flow-ordered', { orderedGroups: true, groupConcurrency: 1 });
  await synap.queue.publish('ts-flow-ordered', 'low', { group: 'g', priority: 1 });
  await synap.queue.publish('ts-flow-ordered', 'high', { group: 'g', priority: 9 });
  const first = await synap.queue.consume('ts-flow-ordered');
  assert.equal(first.message, 'low', 'priorities do not reorder an ordered group');
  assert.equal(await synap.queue.nack('ts-flow-ordered', first.messageId, true, { lease: first.lease }), 'requeued');
  const again = await synap.queue.consume('ts-flow-ordered', { timeout: 20 });
  assert.equal(again.message, 'low', 'a retried message keeps its group head');
  assert.equal((await synap.queue.stats('ts-flow-ordered')).config.orderedGroups, true);
});

test('a snooze brings the message back without spending an attempt, up to maxSnoozes', async () => {
  await synap.queue.create('ts-flow-snooze', { maxRetries: 0, maxSnoozes: 1 });
  const { messageId } = await synap.queue.publish('ts-flow-snooze', { task: 1 });
  const m1 = await synap.queue.consume('ts-flow-snooze');
  assert.equal(m1.retryCount, 0);
  assert.equal(await synap.queue.nack('ts-flow-snooze', messageId, true, { lease: m1.lease, snooze: true }), 'snoozed');
  const m2 = await synap.queue.consume('ts-flow-snooze');
  assert.equal(m2.messageId, messageId);
  assert.equal(m2.retryCount, 0, 'the snooze spent no attempt (maxRetries 0 would have dead-lettered a retry)');
  const action = await synap.queue.nack('ts-flow-snooze', messageId, true, { lease: m2.lease, snooze: true, delay: 0.1 });
  assert.equal(action, 'dead_lettered', 'the second snooze is past maxSnoozes 1');
  const dlq = await synap.queue.dlqList('ts-flow-snooze');
  assert.equal(dlq.messages[0].messageId, messageId);
  assert.equal(dlq.messages[0].reason, 'snoozed_out');
  assert.equal((await synap.queue.stats('ts-flow-snooze')).config.maxSnoozes, 1);

  // A delayed snooze comes back after its delay, still with no attempt spent.
  await synap.queue.publish('ts-flow-snooze2', 'later');
  const d1 = await synap.queue.consume('ts-flow-snooze2');
  assert.equal(await synap.queue.nack('ts-flow-snooze2', d1.messageId, true, { lease: d1.lease, snooze: true, delay: 0.2 }), 'snoozed');
  assert.equal((await synap.queue.stats('ts-flow-snooze2')).delayed, 1);
  const d2 = await synap.queue.consume('ts-flow-snooze2', { timeout: 20 });
  assert.equal(d2.messageId, d1.messageId);
  assert.equal(d2.retryCount, 0);
});

test('groups() lists the groups largest first, then by name, and limit cuts the list', async () => {
  const q = 'ts-flow-groups';
  for (const [group, n] of [['g-b', 1], ['g-a', 3], ['g-c', 2], ['g-d', 2]]) {
    for (let i = 0; i < n; i++) await synap.queue.publish(q, i, { group });
  }
  await synap.queue.publish(q, 'ungrouped');
  await synap.queue.publish(q, 'later', { group: 'g-b', delay: 60 });
  let groups = await synap.queue.groups(q);
  assert.deepEqual(groups, [
    { group: 'g-a', ready: 3, inFlight: 0, delayed: 0 },
    { group: 'g-b', ready: 1, inFlight: 0, delayed: 1 },
    { group: 'g-c', ready: 2, inFlight: 0, delayed: 0 },
    { group: 'g-d', ready: 2, inFlight: 0, delayed: 0 },
  ]);
  assert.equal((await synap.queue.stats(q)).groups, 4);
  const m = await synap.queue.consume(q);
  assert.equal(m.group, 'g-b', 'publish order without group settings');
  groups = await synap.queue.groups(q, 2);
  assert.deepEqual(groups, [
    { group: 'g-a', ready: 3, inFlight: 0, delayed: 0 },
    { group: 'g-b', ready: 0, inFlight: 1, delayed: 1 },
  ]);
  await rejectsWith(synap.queue.groups('ts-flow-no-such-queue'), 'queue_not_found', 404);
});

test('a stream publishes with a group and its deliveries carry it', async () => {
  await synap.queue.create('ts-flow-stream', { groupConcurrency: 1 });
  const stream = await synap.queue.stream('ts-flow-stream', { prefetch: 4 });
  try {
    const p1 = await stream.publish('s1', { group: 'tenant-1' });
    const p2 = await stream.publish('s2', { group: 'tenant-1' });
    const it = stream[Symbol.asyncIterator]();
    const first = (await it.next()).value;
    assert.equal(first.messageId, p1.messageId);
    assert.equal(first.group, 'tenant-1');
    const s = await synap.queue.stats('ts-flow-stream');
    assert.equal(s.inFlight, 1, 'the stream has credit left but the group is at its limit');
    assert.equal(s.heldBack, 1);
    await stream.ack(first.messageId, first.lease);
    const second = (await it.next()).value;
    assert.equal(second.messageId, p2.messageId);
    await stream.ack(second.messageId, second.lease);
    // A streamed snooze: the message comes back without spending an attempt.
    await stream.publish('s3', { group: 'tenant-2' });
    const third = (await it.next()).value;
    assert.equal(await stream.nack(third.messageId, { lease: third.lease, snooze: true }), 'snoozed');
    const again = (await it.next()).value;
    assert.equal(again.messageId, third.messageId);
    assert.equal(again.retryCount, 0, 'a snooze spends no attempt');
    await assert.rejects(stream.nack(again.messageId, { snooze: true, requeue: false }), (e) => e.code === 'invalid_argument');
    await stream.ack(again.messageId, again.lease);
  } finally {
    stream.close();
  }
});

test('bad flow arguments are refused before anything is sent', async () => {
  const q = 'ts-flow-args';
  for (const group of ['', 'x'.repeat(256), 'é'.repeat(128), 'a\nb', 'tab\there', 7]) {
    await rejectsWith(synap.queue.publish(q, 1, { group }), 'invalid_argument', 0);
    await rejectsWith(synap.queue.publishBatch(q, [{ message: 1 }, { message: 2, group }]), 'invalid_argument', 0);
  }
  const ok = 'é'.repeat(127); // 254 bytes
  assert.equal((await synap.queue.publish(q, 1, { group: ok })).position, 1);
  assert.equal((await synap.queue.publish(q, 2, { group: 'x'.repeat(255) })).position, 2);
  await rejectsWith(synap.queue.nack(q, '00000000-0000-0000-0000-000000000000', false, { snooze: true }), 'invalid_argument', 0);
  for (const forSecs of [0, -1, Number.NaN, Number.POSITIVE_INFINITY, '5']) {
    await rejectsWith(synap.queue.rateLimit(q, forSecs), 'invalid_argument', 0);
  }
  for (const limit of [0, 1001, 1.5]) {
    await rejectsWith(synap.queue.groups(q, limit), 'invalid_argument', 0);
  }
  // The server's own checks still answer for the settings.
  await rejectsWith(synap.queue.create(q, { maxInFlight: 0 }), 'invalid_argument', 400);
  await rejectsWith(synap.queue.create(q, { orderedGroups: true, groupConcurrency: 2 }), 'invalid_argument', 400);
  const s = await synap.queue.stats(q);
  assert.equal(s.depth, 2, 'only the two valid publishes landed');
  assert.equal(s.groups, 2);
});
