// Goal: the TypeScript client's pure parts, without a server: refusal bodies become
// SynapErrors with code and status, stats keys become camelCase (bodies untouched), publish
// options become the server's snake_case, the bounded inbox drops its oldest item and ends
// readers, and a malformed delivery is a `decode` error. Method: import the compiled modules.
import test from 'node:test';
import assert from 'node:assert/strict';
import { camelize, refusal, seg } from '../pkg/client/esm/transport.js';
import { Inbox } from '../pkg/client/esm/inbox.js';
import { publishBody, toQueueMessage } from '../pkg/client/esm/convert.js';
import { SynapError } from '../pkg/client/esm/errors.js';

test('refusal reads the server error body, or falls back to the status', () => {
  const e = refusal(409, '{"error":"lease is stale","code":"lease_mismatch"}');
  assert.ok(e instanceof SynapError);
  assert.deepEqual([e.code, e.status, e.message, e.isLeaseMismatch], ['lease_mismatch', 409, 'lease is stale', true]);
  const g = refusal(502, '<html>bad gateway</html>');
  assert.deepEqual([g.code, g.status], ['http_502', 502]);
});

test('camelize converts keys recursively', () => {
  assert.deepEqual(camelize({ dead_letter_count: 1, config: { ack_deadline_ms: 5 }, list: [{ a_b: 1 }] }),
    { deadLetterCount: 1, config: { ackDeadlineMs: 5 }, list: [{ aB: 1 }] });
  assert.equal(seg('a/b c'), 'a%2Fb%20c');
});

test('publishBody maps options and keeps the message as is', () => {
  assert.deepEqual(publishBody({ video_id: 'v' }, { priority: 9, maxRetries: 2, delay: 1.5, ttl: 3, headers: { a: 'b' } }),
    { message: { video_id: 'v' }, priority: 9, max_retries: 2, delay: 1.5, ttl: 3, headers: { a: 'b' } });
  assert.deepEqual(publishBody(undefined), { message: null });
});

test('the inbox is bounded, drops the oldest, and ends waiting readers', async () => {
  const inbox = new Inbox(2);
  inbox.push(1);
  inbox.push(2);
  inbox.push(3);
  assert.equal(inbox.dropped, 1);
  assert.deepEqual(await inbox.next(), { value: 2, done: false });
  assert.deepEqual(await inbox.next(), { value: 3, done: false });
  const waiting = inbox.next();
  inbox.end(new SynapError('gone', 'closed', 0));
  await assert.rejects(waiting, (e) => e.code === 'closed');
  const done = new Inbox(1);
  const w = done.next();
  done.end();
  assert.deepEqual(await w, { value: undefined, done: true });
});

test('a delivery missing fields is a decode error', () => {
  assert.throws(() => toQueueMessage({ message_id: 'x' }), (e) => e instanceof SynapError && e.code === 'decode');
  assert.throws(() => toQueueMessage([]), (e) => e.code === 'decode');
});
