// Goal: the TypeScript client given a cluster's URLs finds and follows the leader: REST calls
// and a queue stream work with a follower first in the list; publishes sent in a loop while
// the leader is SIGKILLed are all answered, and the queue then holds each of them exactly
// once (an unanswered publish is resent under its idempotency key); a stream consumer
// reconnects to the new leader and receives everything published before and after the kill.
// A client with one URL keeps the single-server behaviour (a follower's `not_leader` is its
// answer). Method: three real synap-server processes on loopback (cluster-harness.mjs), the
// leader killed by its PID; no timing asserts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SynapClient, SynapError } from 'synap-wasm';
import { Targets } from '../pkg/client/esm/failover.js';
import { freePort, startCluster } from './cluster-harness.mjs';

/** A three-node cluster stopped (every process, by its PID) when test `t` ends. */
async function cluster(t) {
  const c = await startCluster(3);
  t.after(() => c.stop());
  return c;
}

/** Takes `n` messages off `queue` (acking each), then checks nothing more is there. */
async function drain(synap, queue, n) {
  const got = [];
  let empty = 0;
  while (got.length < n) {
    const batch = await synap.queue.consumeBatch(queue, { maxMessages: 100, timeout: 1, ackDeadline: 60 });
    if (batch.length === 0) {
      empty += 1;
      assert.ok(empty < 30, `only ${got.length} of ${n} messages arrived`);
      continue;
    }
    const r = await synap.queue.ackBatch(queue, batch.map((m) => ({ messageId: m.messageId, lease: m.lease })));
    assert.deepEqual(r.failed, []);
    got.push(...batch);
  }
  assert.equal(await synap.queue.consume(queue, { timeout: 0 }), null, 'no message beyond those published');
  return got;
}

test('with a follower first, REST calls and a stream reach the leader', { timeout: 120_000 }, async (t) => {
  const c = await cluster(t);
  const leader = await c.leader();
  const followers = c.others(leader).map((x) => x.url);
  const leaderUrl = c.nodes[leader - 1].url;
  const synap = new SynapClient({ url: [...followers, leaderUrl] });
  assert.deepEqual(synap.urls, [...followers, leaderUrl]);

  await synap.queue.create('fo-basic', { maxRetries: 2 });
  const published = [];
  for (let i = 0; i < 5; i++) published.push((await synap.queue.publish('fo-basic', { i })).messageId);
  const msg = await synap.queue.consume('fo-basic', { timeout: 1, ackDeadline: 30 });
  assert.equal(msg.message.i, 0);
  await synap.queue.ack('fo-basic', msg.messageId, msg.lease);
  assert.equal((await synap.queue.stats('fo-basic')).depth, 4);

  // A follower refuses the WebSocket with not_leader naming the leader: the stream goes there.
  const stream = await synap.queue.stream('fo-basic', { prefetch: 2 });
  assert.equal(synap.url, leaderUrl, 'the client moved to the leader');
  const seen = [];
  for await (const m of stream) {
    await stream.ack(m.messageId, m.lease);
    seen.push(m.message.i);
    if (seen.length === 4) break;
  }
  assert.deepEqual(seen, [1, 2, 3, 4]);
  const stats = await synap.queue.stats('fo-basic');
  assert.equal(stats.ackedTotal, 5);
  assert.equal(stats.publishedTotal, 5);
  await synap.kv.set('fo-key', { v: 1 });
  assert.equal(await synap.kv.incr('fo-count', 2), 2);
  assert.deepEqual((await synap.kv.get('fo-key')).value, { v: 1 });

  // One URL behaves as against a single server: the follower's refusal is the answer.
  const single = new SynapClient({ url: followers[0] });
  await assert.rejects(single.queue.stream('fo-basic'),
    (e) => e instanceof SynapError && e.code === 'not_leader' && e.leader === leaderUrl);
  // A follower still forwards REST calls to the leader.
  assert.equal((await single.queue.stats('fo-basic')).ackedTotal, 5);
});

test('a stream follows a leadership transfer', { timeout: 120_000 }, async (t) => {
  const c = await cluster(t);
  const first = await c.leader();
  const synap = new SynapClient({ url: c.urls });
  await synap.queue.create('fo-move');
  const stream = await synap.queue.stream('fo-move', { prefetch: 1 });
  await synap.queue.publish('fo-move', { n: 1 });
  const a = await stream.next();
  await stream.ack(a.messageId, a.lease);
  // The deposed leader ends its sessions (with queue_not_found): the stream finds the new one.
  const to = c.others(first)[0].id;
  let now = first;
  for (let i = 0; i < 30 && now === first; i++) {
    await fetch(`${c.nodes[first - 1].url}/cluster/transfer`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ to }),
    });
    now = await c.leader();
    if (now === first) await new Promise((r) => setTimeout(r, 500));
  }
  assert.notEqual(now, first, 'leadership moved');
  await synap.queue.publish('fo-move', { n: 2 });
  const b = await stream.next();
  assert.equal(b.message.n, 2);
  await stream.ack(b.messageId, b.lease);
  assert.equal(stream.reconnects, 1);
  stream.close();
  assert.equal((await synap.queue.stats('fo-move')).ackedTotal, 2);
});

test('with no server answering, a call gives up with the last error; one URL fails at once', async () => {
  // Ports that nothing listens on.
  const dead = [`http://127.0.0.1:${await freePort()}`, `http://127.0.0.1:${await freePort()}`];
  const many = new SynapClient({ url: dead, failoverTimeout: 0.3 });
  await assert.rejects(many.queue.publish('q', 1),
    (e) => e instanceof SynapError && e.code === 'transport' && /no server of .* answered as the leader within 0\.3 s/.test(e.message));
  await assert.rejects(many.queue.stream('q'), (e) => e.code === 'websocket' && /answered as the leader/.test(e.message));
  const one = new SynapClient({ url: dead[0] });
  await assert.rejects(one.queue.list(), (e) => e.code === 'transport' && !/answered as the leader/.test(e.message));
  assert.throws(() => new SynapClient({ url: [] }), (e) => e.code === 'invalid_argument');
  assert.throws(() => new SynapClient({ url: ['http://a:1', 'ftp://b'] }), (e) => e.code === 'invalid_argument');
  assert.throws(() => new SynapClient({ url: dead, failoverTimeout: -1 }), (e) => e.code === 'invalid_argument');
});

test('Targets follows a named leader, else the next URL, and ignores stale moves', () => {
  const t = new Targets({ url: ['http://a:1', 'http://b:2/', 'http://c:3'] });
  assert.deepEqual(t.urls, ['http://a:1', 'http://b:2', 'http://c:3']);
  assert.equal(t.base, 'http://a:1');
  t.moved('http://a:1', new SynapError('down', 'transport', 0));
  assert.equal(t.base, 'http://b:2');
  t.moved('http://a:1', new SynapError('late', 'transport', 0));
  assert.equal(t.base, 'http://b:2', 'a failure at a URL already left moves nothing');
  t.moved('http://b:2', new SynapError('not here', 'not_leader', 503, 'http://c:3'));
  assert.equal(t.base, 'http://c:3');
  t.moved('http://c:3', new SynapError('not here', 'not_leader', 503, 'http://d:4'));
  assert.equal(t.base, 'http://d:4', 'a leader not in the list is followed too');
  t.moved('http://d:4', new SynapError('down', 'transport', 0));
  assert.equal(t.base, 'http://a:1');
});

test('publishing while the leader is killed loses nothing and doubles nothing', { timeout: 180_000 }, async (t) => {
  const c = await cluster(t);
  const leader = await c.leader();
  // The leader first: the publishes in flight when it dies are the ones to resend.
  const urls = [c.nodes[leader - 1].url, ...c.others(leader).map((x) => x.url)];
  const synap = new SynapClient({ url: urls });
  await synap.queue.create('fo-pub', { maxRetries: 5 });
  const total = 400;
  const ids = new Array(total);
  let next = 0;
  let answered = 0;
  let killed;
  let duplicates = 0;
  // Four producers, so that several publishes are in flight at the kill.
  const producer = async () => {
    while (next < total) {
      const i = next++;
      const r = await synap.queue.publish('fo-pub', { i });
      ids[i] = r.messageId;
      if (r.duplicate) duplicates += 1;
      answered += 1;
      if (answered === 100) killed = c.kill(leader);
    }
  };
  await Promise.all([producer(), producer(), producer(), producer()]);
  await killed;
  assert.equal(answered, total, 'every publish was answered');
  assert.equal(new Set(ids).size, total, 'each publish has its own message');
  assert.notEqual(synap.url, urls[0], 'the client left the dead leader');
  assert.notEqual(await c.leader(), leader);

  const got = await drain(synap, 'fo-pub', total);
  const seen = new Map();
  for (const m of got) {
    assert.ok(!seen.has(m.message.i), `message ${m.message.i} delivered twice`);
    seen.set(m.message.i, m.messageId);
  }
  for (let i = 0; i < total; i++) assert.equal(seen.get(i), ids[i], `message ${i} is the one its publish named`);
  const stats = await synap.queue.stats('fo-pub');
  assert.deepEqual([stats.depth, stats.inFlight, stats.deadLetterCount], [0, 0, 0]);
  // Informational: how many resends found their first attempt had landed.
  console.log(`# ${duplicates} publish(es) answered as duplicates after the failover`);
});

test('a stream consumer keeps receiving after the leader is killed', { timeout: 180_000 }, async (t) => {
  const c = await cluster(t);
  const leader = await c.leader();
  const urls = [...c.others(leader).map((x) => x.url), c.nodes[leader - 1].url];
  const synap = new SynapClient({ url: urls });
  await synap.queue.create('fo-stream', { maxRetries: 50 });
  // Short leases: what the dead leader's session held comes back soon.
  const stream = await synap.queue.stream('fo-stream', { prefetch: 4, ackDeadline: 2 });
  const total = 60;
  const acked = new Set();
  let firstHalf;
  const reachedHalf = new Promise((r) => (firstHalf = r));
  const consumer = (async () => {
    for await (const m of stream) {
      try {
        await stream.ack(m.messageId, m.lease);
        acked.add(m.message.i);
      } catch (e) {
        // A delivery whose lease ended meanwhile: it comes back under a new lease.
        if (!(e instanceof SynapError && e.isLeaseMismatch)) throw e;
      }
      if (acked.size >= total / 2) firstHalf();
      if (acked.size === total) break;
    }
  })();
  for (let i = 0; i < total / 2; i++) await synap.queue.publish('fo-stream', { i });
  await reachedHalf;
  await c.kill(leader);
  for (let i = total / 2; i < total; i++) await synap.queue.publish('fo-stream', { i });
  await consumer;
  assert.equal(acked.size, total);
  assert.ok(stream.reconnects >= 1, 'the stream reconnected');
  assert.notEqual(synap.url, c.nodes[leader - 1].url);
  stream.close();
  const stats = await synap.queue.stats('fo-stream');
  assert.deepEqual([stats.depth, stats.inFlight, stats.deadLetterCount], [0, 0, 0]);
});
