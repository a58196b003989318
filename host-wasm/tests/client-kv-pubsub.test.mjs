// Goal: the TypeScript client's KV and pub/sub methods against the real server: values with
// TTLs, counters, prefixes, bulk calls, their error codes, and subscriptions with `*` and `#`
// patterns as async iterators. Method: one in-memory synap-server, stopped by PID at the end.
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

test('kv set/get with and without TTL, exists, del', async () => {
  await synap.kv.set('video:1:status', { status: 'transcoded' }, 3600);
  const r = await synap.kv.get('video:1:status');
  assert.equal(r.found, true);
  assert.deepEqual(r.value, { status: 'transcoded' });
  assert.ok(r.ttl > 3500 && r.ttl <= 3600);
  await synap.kv.set('plain', 'v');
  assert.deepEqual(await synap.kv.get('plain'), { found: true, value: 'v', ttl: null });
  assert.deepEqual(await synap.kv.get('nope'), { found: false });
  assert.equal(await synap.kv.exists('plain'), true);
  assert.equal(await synap.kv.del('plain'), true);
  assert.equal(await synap.kv.del('plain'), false);
  assert.equal(await synap.kv.exists('plain'), false);
});

test('kv keys travel percent-encoded', async () => {
  const key = 'odd key/with?chars#and%';
  await synap.kv.set(key, 1);
  assert.deepEqual((await synap.kv.get(key)).value, 1);
  assert.equal(await synap.kv.del(key), true);
});

test('kv ttl, expire, persist, and a short TTL expiring', async () => {
  await synap.kv.set('t', 1);
  assert.equal(await synap.kv.ttl('t'), null);
  assert.equal(await synap.kv.expire('t', 100), true);
  assert.ok((await synap.kv.ttl('t')) > 90);
  assert.equal(await synap.kv.persist('t'), true);
  assert.equal(await synap.kv.ttl('t'), null);
  assert.equal(await synap.kv.expire('missing', 5), false);
  await assert.rejects(synap.kv.ttl('missing'), (e) => e instanceof SynapError && e.code === 'key_not_found' && e.status === 404);
  await synap.kv.set('short', 1, 0.2);
  await new Promise((r) => setTimeout(r, 400));
  assert.equal((await synap.kv.get('short')).found, false);
});

test('kv incr and decr; a non-integer is refused with not_an_integer', async () => {
  assert.equal(await synap.kv.incr('n'), 1);
  assert.equal(await synap.kv.incr('n', 10), 11);
  assert.equal(await synap.kv.decr('n', 2), 9);
  assert.equal(await synap.kv.decr('n'), 8);
  await synap.kv.set('text', 'abc');
  await assert.rejects(synap.kv.incr('text'), (e) => e instanceof SynapError && e.code === 'not_an_integer' && e.status === 400);
});

test('kv keys, mset, mget, stats', async () => {
  await synap.kv.mset([{ key: 'p:a', value: 1 }, { key: 'p:b', value: { x: 2 }, ttl: 60 }, { key: 'q:c', value: 3 }]);
  assert.deepEqual(await synap.kv.keys('p:'), ['p:a', 'p:b']);
  assert.deepEqual(await synap.kv.keys('p:', 1), ['p:a']);
  assert.deepEqual(await synap.kv.mget(['p:a', 'p:b', 'p:zz']), [1, { x: 2 }, null]);
  const stats = await synap.kv.stats();
  assert.ok(stats.totalKeys >= 3);
  assert.equal(typeof stats.hitRate, 'number');
  await assert.rejects(synap.kv.mset([{ key: '', value: 1 }]), (e) => e instanceof SynapError && e.status === 400);
});

test('pub/sub: subscribe with * and #, publish reports matches, close unsubscribes', async () => {
  const one = await synap.pubsub.subscribe('notifications.user.*');
  const all = await synap.pubsub.subscribe(['notifications.#']);
  assert.ok(one.subscriberId);
  const r = await synap.pubsub.publish('notifications.user.42', { type: 'video_ready', videoId: 'v1' }, { k: 'v' });
  assert.equal(r.subscribersMatched, 2);
  assert.equal(r.topic, 'notifications.user.42');
  assert.ok(r.messageId);
  assert.equal((await synap.pubsub.publish('notifications.system', 'x')).subscribersMatched, 1);
  const got = await one.next();
  assert.equal(got.topic, 'notifications.user.42');
  assert.deepEqual(got.message, { type: 'video_ready', videoId: 'v1' });
  assert.deepEqual(got.headers, { k: 'v' });
  assert.equal(got.messageId, r.messageId);
  const seen = [];
  for await (const m of all) {
    seen.push(m.topic);
    if (seen.length === 2) break; // leaving the loop closes the subscription
  }
  assert.deepEqual(seen, ['notifications.user.42', 'notifications.system']);
  one.close();
  assert.equal(await one.next(), null);
  const stats = await synap.pubsub.stats();
  assert.equal(typeof stats.messagesPublished, 'number');
  // Both sockets are closed: nobody matches any more (the server unsubscribes on close).
  let matched = 1;
  for (let i = 0; i < 100 && matched !== 0; i++) {
    matched = (await synap.pubsub.publish('notifications.user.1', 'y')).subscribersMatched;
    if (matched) await new Promise((res) => setTimeout(res, 20));
  }
  assert.equal(matched, 0);
});

test('pub/sub refusals: no patterns, a bad topic', async () => {
  await assert.rejects(synap.pubsub.subscribe([]), (e) => e instanceof SynapError && e.code === 'invalid_argument');
  await assert.rejects(synap.pubsub.publish('', 1), (e) => e instanceof SynapError && e.status >= 400);
});
