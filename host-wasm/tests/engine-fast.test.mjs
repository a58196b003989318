// Goal: the engine's fast paths (handleBatch, drainEventsJson, cycles) give exactly what the
// per-object API gives: the same replies, errors, events and final state.
// Method: drive two engines with the same seed through the same commands, one with handle()
// and drainEvents(), the other with the fast call, and compare everything they return.
import test from 'node:test';
import assert from 'node:assert/strict';
import { Engine } from 'synap-wasm';

const body = { video_id: 123456, kind: 'transcode', resolution: '1080p' };

/** handle() as handleBatch reports it: {ok: reply} or {error: thrown object}. */
function outcome(engine, now, command) {
  try {
    return { ok: engine.handle(now, command) };
  } catch (e) {
    return { error: e };
  }
}

test('handleBatch answers each command as handle() does, errors included', () => {
  const commands = [
    { type: 'create_queue', queue: 'q', config: { ack_deadline_ms: 1000 } },
    { type: 'publish', queue: 'q', message: body, priority: 7 },
    { type: 'publish_batch', queue: 'q', messages: [{ message: 1 }, { message: 'two', priority: 9 }] },
    { type: 'consume', queue: 'q', max_messages: 10 },
    { type: 'ack', queue: 'missing', message_id: '00000000-0000-0000-0000-000000000000' },
    { type: 'publish', queue: 'q', message: 1, priority: 12 },
    { type: 'stats', queue: 'q' },
    { type: 'kv_set', key: 'k', value: { a: 1 } },
    { type: 'kv_get', key: 'k' },
  ];
  const slow = new Engine(null, 9);
  const fast = new Engine(null, 9);
  const expected = commands.map((c) => outcome(slow, 50, c));
  const got = JSON.parse(fast.handleBatch(50, JSON.stringify(commands)));
  assert.deepEqual(got, expected);
  assert.ok(got[4].error.code === 'queue_not_found' && got[5].error.code === 'invalid_argument');
  // The leases handed out are the same, so acking through either API works alike.
  const acks = got[3].ok.messages.map((m) => ({
    type: 'ack', queue: 'q', message_id: m.message_id, lease: m.lease,
  }));
  assert.equal(acks.length, 3);
  assert.deepEqual(
    JSON.parse(fast.handleBatch(60, JSON.stringify(acks))),
    acks.map((a) => outcome(slow, 60, a)),
  );
  assert.deepEqual(JSON.parse(fast.drainEventsJson()), slow.drainEvents());
  assert.equal(fast.drainEventsJson(), '[]');
});

test('handleBatch refuses a malformed batch before running any of it', () => {
  const engine = new Engine(null, 1);
  for (const text of ['not json', '{"type":"list_queues"}', '[{"type":"no_such_command"}]']) {
    let thrown;
    try {
      engine.handleBatch(0, text);
    } catch (e) {
      thrown = e;
    }
    assert.equal(thrown?.code, 'invalid_argument', text);
    assert.equal(thrown.field, 'commands');
  }
  const mixed = JSON.stringify([{ type: 'publish', queue: 'q', message: 1 }, { type: 'bogus' }]);
  assert.throws(() => engine.handleBatch(0, mixed));
  assert.deepEqual(engine.handle(0, { type: 'list_queues' }).queues, [], 'nothing ran');
  assert.throws(() => engine.handleBatch(-1, '[]'));
  assert.equal(engine.handleBatch(0, '[]'), '[]');
});

/** cycles() done by hand through handle(): publish, consume, ack each delivery. */
function cyclesByHand(engine, now, queue, count, message, batch) {
  const done = { published: 0, consumed: 0, acked: 0, events: 0 };
  for (let left = count; left > 0; left -= Math.min(left, batch)) {
    const n = Math.min(left, batch);
    if (n === 1) {
      engine.handle(now, { type: 'publish', queue, message });
    } else {
      engine.handle(now, { type: 'publish_batch', queue, messages: Array.from({ length: n }, () => ({ message })) });
    }
    done.published += n;
    const { messages } = engine.handle(now, { type: 'consume', queue, max_messages: n });
    done.consumed += messages.length;
    for (const m of messages) {
      engine.handle(now, { type: 'ack', queue, message_id: m.message_id, lease: m.lease });
      done.acked += 1;
    }
    done.events += engine.drainEvents().length;
  }
  return done;
}

for (const [observe, batch] of [[true, 1], [true, 100], [false, 7]]) {
  test(`cycles() equals publish/consume/ack by hand (events ${observe ? 'on' : 'off'}, batch ${batch})`, () => {
    const slow = new Engine({ observe }, 3);
    const fast = new Engine({ observe }, 3);
    for (const e of [slow, fast]) e.handle(0, { type: 'create_queue', queue: 'bench' });
    slow.drainEvents();
    fast.drainEvents();
    const count = 250;
    const expected = cyclesByHand(slow, 5, 'bench', count, body, batch);
    const got = fast.cycles(5, 'bench', count, JSON.stringify(body), batch);
    assert.deepEqual(got, expected);
    assert.equal(got.acked, count);
    assert.equal(got.events > 0, observe);
    const stats = (e) => e.handle(6, { type: 'stats', queue: 'bench' });
    assert.deepEqual(stats(fast), stats(slow));
    // Same seed, same work: the next message id agrees too.
    const next = (e) => e.handle(7, { type: 'publish', queue: 'bench', message: 1 }).message_id;
    assert.equal(next(fast), next(slow));
  });
}

test('cycles() checks its arguments and throws engine errors as objects', () => {
  const engine = new Engine(null, 1);
  const code = (fn) => {
    try {
      fn();
    } catch (e) {
      return e.code;
    }
    return 'no throw';
  };
  assert.equal(code(() => engine.cycles(0, 'q', 0)), 'invalid_argument');
  assert.equal(code(() => engine.cycles(0, 'q', 1.5)), 'invalid_argument');
  assert.equal(code(() => engine.cycles(0, 'q', 10, '{}', 101)), 'invalid_argument');
  assert.equal(code(() => engine.cycles(0, 'q', 10, '{nope')), 'invalid_argument');
  assert.equal(code(() => engine.cycles(0, '', 1)), 'invalid_argument');
  // Defaults: a `{}` body, one message per cycle; the queue is created on first publish.
  assert.deepEqual(engine.cycles(1, 'q', 3), { published: 3, consumed: 3, acked: 3, events: 9 });
  assert.equal(engine.handle(2, { type: 'stats', queue: 'q' }).acked_total, 3);
});
