// Goal: the wasm Engine speaks the core's vocabulary as plain JSON objects, drives leases and
// long-polls through handleTimeout/pollTimeout, and throws error objects carrying `code`.
// Method: import the built package by name (through its `exports`) and walk one message
// through publish, consume, ack, and another through lease expiry and redelivery.
import test from 'node:test';
import assert from 'node:assert/strict';
import { Engine } from 'synap-wasm';

function codeOf(fn) {
  try {
    fn();
  } catch (e) {
    return e;
  }
  assert.fail('expected a throw');
}

test('publish, consume, ack round-trip', () => {
  const engine = new Engine(null, 42);
  const created = engine.handle(0, {
    type: 'create_queue',
    queue: 'video-processing',
    config: { ack_deadline_ms: 1000, max_retries: 1, retry_delays_ms: [500] },
  });
  assert.deepEqual(created, { type: 'queue_created', queue: 'video-processing', created: true });
  const published = engine.handle(10, {
    type: 'publish', queue: 'video-processing', message: { video_id: 7 }, priority: 9,
  });
  assert.equal(published.type, 'published');
  assert.match(published.message_id, /^[0-9a-f-]{36}$/);
  assert.equal(published.position, 1);
  const events = engine.drainEvents();
  assert.equal(events.length, 1);
  assert.equal(events[0].type, 'observed');
  assert.equal(events[0].kind, 'published');
  assert.equal(events[0].priority, 9);
  assert.deepEqual(engine.drainEvents(), []);

  const got = engine.handle(20, { type: 'consume', queue: 'video-processing', max_messages: 10 });
  assert.equal(got.type, 'messages');
  assert.equal(got.messages.length, 1);
  const [d] = got.messages;
  assert.deepEqual(d.message, { video_id: 7 });
  assert.equal(d.retry_count, 0);
  assert.equal(d.lease_deadline, 1020);
  assert.equal(engine.pollTimeout(), 1020);
  assert.deepEqual(
    engine.handle(30, { type: 'ack', queue: 'video-processing', message_id: d.message_id, lease: d.lease }),
    { type: 'acked' },
  );
  // The completed job is kept for lookups for an hour (the queue's keep_completed), then
  // forgotten at that timer.
  assert.equal(engine.pollTimeout(), 30 + 3_600_000);
  const stats = engine.handle(40, { type: 'stats', queue: 'video-processing' });
  assert.equal(stats.acked_total, 1);
  assert.equal(stats.depth, 0);
});

test('a lease expires under handleTimeout and the message is redelivered', () => {
  const engine = new Engine({ default_queue: { ack_deadline_ms: 1000, retry_delays_ms: [500] } }, '7');
  engine.handle(0, { type: 'publish', queue: 'q', message: 'hello' });
  const first = engine.handle(0, { type: 'consume', queue: 'q' }).messages[0];
  engine.drainEvents();
  assert.equal(engine.pollTimeout(), 1000);
  engine.handleTimeout(999);
  assert.deepEqual(engine.drainEvents(), []);
  engine.handleTimeout(1000);
  const kinds = engine.drainEvents().map((e) => e.kind);
  assert.deepEqual(kinds, ['lease_expired', 'retry_scheduled']);
  assert.equal(engine.pollTimeout(), 1500);
  assert.deepEqual(engine.handle(1200, { type: 'consume', queue: 'q' }).messages, []);
  engine.handleTimeout(1500);
  const again = engine.handle(1500, { type: 'consume', queue: 'q' }).messages[0];
  assert.equal(again.message_id, first.message_id);
  assert.equal(again.retry_count, 1);
  assert.notEqual(again.lease, first.lease);
  // The old lease no longer acks it.
  const e = codeOf(() =>
    engine.handle(1600, { type: 'ack', queue: 'q', message_id: first.message_id, lease: first.lease }));
  assert.equal(e.code, 'lease_mismatch');
});

test('long-poll waiters are answered by delivered and wait_timed_out events', () => {
  const engine = new Engine(undefined, 1);
  engine.handle(0, { type: 'create_queue', queue: 'q' });
  const parked = engine.handle(0, { type: 'consume', queue: 'q', wait_ms: 30000 });
  assert.equal(parked.type, 'waiting');
  engine.handle(100, { type: 'publish', queue: 'q', message: { n: 1 } });
  const delivered = engine.drainEvents().find((e) => e.type === 'delivered');
  assert.equal(delivered.waiter_id, parked.waiter_id);
  assert.deepEqual(delivered.messages[0].message, { n: 1 });
  const second = engine.handle(200, { type: 'consume', queue: 'q', wait_ms: 5000 });
  engine.drainEvents();
  assert.equal(engine.pollTimeout(), 5200);
  engine.handleTimeout(5200);
  assert.deepEqual(engine.drainEvents(), [{ type: 'wait_timed_out', waiter_id: second.waiter_id }]);
});

test('errors are thrown as objects with a code and a message', () => {
  const engine = new Engine(null, 0);
  let e = codeOf(() => engine.handle(0, {
    type: 'ack', queue: 'missing', message_id: '00000000-0000-0000-0000-000000000000',
  }));
  assert.equal(e.code, 'queue_not_found');
  assert.equal(e.queue, 'missing');
  assert.match(e.message, /queue not found/);
  e = codeOf(() => engine.handle(0, { type: 'publish', queue: 'q', message: 1, priority: 12 }));
  assert.equal(e.code, 'invalid_argument');
  e = codeOf(() => engine.handle(0, { type: 'no_such_command' }));
  assert.equal(e.code, 'invalid_argument');
  assert.equal(e.field, 'command');
  e = codeOf(() => engine.handle(-5, { type: 'list_queues' }));
  assert.equal(e.code, 'invalid_argument');
  e = codeOf(() => engine.handleTimeout(1.5));
  assert.equal(e.code, 'invalid_argument');
  e = codeOf(() => new Engine(null, 2 ** 60));
  assert.equal(e.field, 'seed');
  e = codeOf(() => new Engine(null, 'abc'));
  assert.equal(e.field, 'seed');
  e = codeOf(() => new Engine({ bogus: true }, 1));
  assert.equal(e.field, 'config');
});

test('the seed determines message ids; large seeds pass as strings', () => {
  const ids = (seed) => {
    const engine = new Engine(null, seed);
    return [1, 2, 3].map((n) => engine.handle(n, { type: 'publish', queue: 'q', message: n }).message_id);
  };
  assert.deepEqual(ids('18446744073709551615'), ids('18446744073709551615'));
  assert.deepEqual(ids(5), ids('5'));
  assert.notDeepEqual(ids(5), ids(6));
});
