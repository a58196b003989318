// Goal: the TypeScript client's streaming consumer (queue WebSocket) keeps the server's credit
// rules and answers ack/nack/extend/publish frames; API keys work on REST and WebSockets and
// are refused with `unauthorized`; a stream and a subscription that lose their connection
// fail with code `closed` instead of hanging. Method: real in-memory servers on free ports,
// one of them stopped mid-stream (by its PID) to cut the connections.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { SynapClient, SynapError } from 'synap-wasm';
import { eventually, startServer } from './harness.mjs';

let server;
let synap;
before(async () => {
  server = await startServer();
  synap = new SynapClient({ url: server.url });
});
after(() => server.stop());

test('a stream gets at most prefetch messages until it acks', async () => {
  for (let i = 0; i < 5; i++) await synap.queue.publish('st-credit', { i });
  const stream = await synap.queue.stream('st-credit', { consumerId: 'st-1', prefetch: 2, ackDeadline: 30 });
  assert.equal(stream.consumerId, 'st-1');
  assert.equal(stream.prefetch, 2);
  const a = await stream.next();
  const b = await stream.next();
  assert.deepEqual([a.message.i, b.message.i], [0, 1]);
  await eventually(async () => (await synap.queue.stats('st-credit')).inFlight === 2, 5000, 'two in flight');
  await new Promise((r) => setTimeout(r, 200));
  assert.equal((await synap.queue.stats('st-credit')).inFlight, 2, 'no third push before an ack');
  await stream.ack(a.messageId, a.lease);
  const c = await stream.next();
  assert.equal(c.message.i, 2);
  assert.equal(await stream.nack(b.messageId, { requeue: false, error: 'bad', lease: b.lease }), 'dead_lettered');
  const deadline = await stream.extend(c.messageId, 120, c.lease);
  assert.ok(deadline > Date.now() + 100_000);
  const pub = await stream.publish({ i: 99 }, { priority: 9 });
  assert.ok(pub.messageId);
  await assert.rejects(stream.ack(c.messageId, c.lease + 7), (e) => e instanceof SynapError && e.code === 'lease_mismatch');
  stream.close();
  assert.equal(await stream.next(), null);
  await assert.rejects(stream.ack(c.messageId), (e) => e.code === 'closed');
  // Closing gave back what the stream held: nothing stays in flight.
  await eventually(async () => (await synap.queue.stats('st-credit')).inFlight === 0, 5000, 'given back');
});

test('for await over a stream, acking each message', async () => {
  const n = 6;
  await synap.queue.publishBatch('st-loop', Array.from({ length: n }, (_, i) => ({ message: i })));
  const stream = await synap.queue.stream('st-loop', { prefetch: 3 });
  const seen = [];
  for await (const msg of stream) {
    await stream.ack(msg.messageId, msg.lease);
    seen.push(msg.message);
    if (seen.length === n) break;
  }
  assert.deepEqual(seen, [0, 1, 2, 3, 4, 5]);
  const stats = await synap.queue.stats('st-loop');
  assert.equal(stats.ackedTotal, n);
});

test('a stream and a subscription that lose their connection fail with closed', async () => {
  const doomed = await startServer();
  try {
    const c = new SynapClient({ url: doomed.url });
    await c.queue.publish('st-lost', 'x');
    const stream = await c.queue.stream('st-lost', { prefetch: 1 });
    const sub = await c.pubsub.subscribe('a.#');
    const msg = await stream.next();
    assert.equal(msg.message, 'x');
    // Both reads are pending when the server goes away; their checks are attached first.
    const lost = [stream.next(), sub.next()].map((p) =>
      assert.rejects(p, (e) => e instanceof SynapError && e.code === 'closed'));
    await doomed.stop();
    await Promise.all(lost);
    await assert.rejects(stream.ack(msg.messageId, msg.lease), (e) => e.code === 'closed');
    await assert.rejects(c.queue.list(), (e) => e.code === 'transport');
  } finally {
    await doomed.stop();
  }
});

test('an API key is required, sent, and refused when wrong', async () => {
  const key = 'ts-secret-key';
  const guarded = await startServer({ env: { SYNAP_API_KEY: key } });
  try {
    const anon = new SynapClient({ url: guarded.url });
    const wrong = new SynapClient({ url: guarded.url, apiKey: 'nope' });
    const good = new SynapClient({ url: guarded.url, apiKey: key });
    for (const c of [anon, wrong]) {
      await assert.rejects(c.queue.list(), (e) => e instanceof SynapError && e.code === 'unauthorized' && e.status === 401);
      await assert.rejects(c.kv.get('k'), (e) => e.code === 'unauthorized');
      await assert.rejects(c.queue.stream('q'), (e) => e instanceof SynapError && e.code === 'unauthorized' && e.status === 401);
      await assert.rejects(c.pubsub.subscribe('a'), (e) => e.code === 'unauthorized' && e.status === 401);
    }
    assert.equal((await anon.health()).status, 'healthy', '/health stays public');
    await good.queue.publish('guarded', 'ok');
    const stream = await good.queue.stream('guarded');
    const m = await stream.next();
    await stream.ack(m.messageId, m.lease);
    stream.close();
    const sub = await good.pubsub.subscribe('g.*');
    assert.equal((await good.pubsub.publish('g.1', 1)).subscribersMatched, 1);
    assert.equal((await sub.next()).message, 1);
    sub.close();
  } finally {
    await guarded.stop();
  }
});
