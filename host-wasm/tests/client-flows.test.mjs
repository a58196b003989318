// Goal: the TypeScript SynapClient drives flows (docs/pipelines-with-flows.md) against the real
// server with camelCase shapes: `flows.add` answers every job it made, `flows.get` shows each
// job's state at every step, a parent's delivery (REST consume and a queue stream) carries its
// children's states and results, a job lookup names its flow, parent and children; a failing
// child under `fail` dead-letters its parent and cancels its siblings, `continue` and `ignore`
// deliver the parent with and without the failed child; bad trees are refused (by the client
// before sending, or by the server) and create nothing; an unanswered `flows.add` is never
// resent to another node while `flows.get` is. Method: one in-memory synap-server on a free
// port (stopped by PID at the end), the test acting as the workers; a local HTTP server that
// hangs up on every request stands for a node that fails mid-request. The sample as a flow
// (examples/video-flow.js) runs two uploads to completed flows, checked through the client
// and a subscriber to the users' notifications.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { SynapClient, SynapError } from 'synap-wasm';
import { examples, startServer } from './harness.mjs';

const run = promisify(execFile);

const RENDITIONS = ['480p', '720p', '1080p'];

let server;
let synap;
before(async () => {
  server = await startServer();
  synap = new SynapClient({ url: server.url });
});
after(() => server.stop());

async function rejectsWith(promise, code, status, text) {
  await assert.rejects(promise, (e) => {
    assert.ok(e instanceof SynapError, `not a SynapError: ${e}`);
    assert.equal(e.code, code, e.message);
    assert.equal(e.status, status, e.message);
    if (text !== undefined) assert.ok(e.message.includes(text), `${e.message} does not mention ${text}`);
    return true;
  });
}

/** The video pipeline on queues prefixed by `p`: notify ← package ← three transcodes. */
function pipeline(p, video) {
  return {
    queue: `${p}-notify`,
    message: { video, step: 'notify' },
    children: [{
      queue: `${p}-package`,
      message: { video, step: 'package' },
      children: RENDITIONS.map((rendition) => ({ queue: `${p}-transcode`, message: { video, rendition } })),
    }],
  };
}

/** Every job below the root, depth first: [messageId, state]. */
function states(flow) {
  const out = [];
  const walk = (nodes) => nodes.forEach((n) => { out.push([n.messageId, n.state]); walk(n.children); });
  walk(flow.children);
  return out;
}

const url = (r) => ({ url: `s3://videos/7/${r}.mp4` });

async function take(queue, n) {
  const got = await synap.queue.consumeBatch(queue, { maxMessages: 10, timeout: 10, ackDeadline: 300 });
  assert.equal(got.length, n, `${queue}: ${JSON.stringify(got)}`);
  return got;
}

test('the video pipeline runs step by step to a completed tree', async () => {
  const created = await synap.flows.add(pipeline('ts', 7));
  assert.equal(created.queue, 'ts-notify');
  assert.equal(created.children.length, 1);
  const [pkg] = created.children;
  assert.equal(pkg.queue, 'ts-package');
  const transcodes = pkg.children.map((t) => {
    assert.deepEqual([t.queue, t.children], ['ts-transcode', []]);
    return t.messageId;
  });
  assert.equal(new Set([created.messageId, pkg.messageId, ...transcodes]).size, 5);

  let flow = await synap.flows.get(created.flowId);
  assert.equal(flow.flowId, created.flowId);
  assert.equal(flow.messageId, created.messageId);
  assert.deepEqual([flow.state, flow.finishedAt, flow.result, flow.onChildFailure], ['waiting_children', null, null, 'fail']);
  assert.equal(typeof flow.createdAt, 'number');
  assert.deepEqual(states(flow), [[pkg.messageId, 'waiting_children'], ...transcodes.map((t) => [t, 'ready'])]);

  let job = await synap.queue.job('ts-package', pkg.messageId);
  assert.deepEqual([job.state, job.flowId, job.parentId, job.children], ['waiting_children', created.flowId, created.messageId, transcodes]);
  job = await synap.queue.job('ts-notify', created.messageId);
  assert.deepEqual([job.parentId, job.children], [undefined, [pkg.messageId]]);
  job = await synap.queue.job('ts-transcode', transcodes[0]);
  assert.deepEqual([job.state, job.parentId, job.children], ['ready', pkg.messageId, undefined]);
  const stats = await synap.queue.stats('ts-package');
  assert.deepEqual([stats.waitingChildren, stats.depth], [1, 0]);
  assert.equal(await synap.queue.consume('ts-package'), null);

  // The transcode workers: two finish, one is still at work.
  const msgs = (await take('ts-transcode', 3)).sort((a, b) => transcodes.indexOf(a.messageId) - transcodes.indexOf(b.messageId));
  msgs.forEach((m, i) => {
    assert.equal(m.message.rendition, RENDITIONS[i]);
    assert.equal(m.children, undefined, 'a transcode has no children');
  });
  for (const i of [0, 1]) await synap.queue.ack('ts-transcode', msgs[i].messageId, msgs[i].lease, { result: url(RENDITIONS[i]) });
  flow = await synap.flows.get(created.flowId);
  assert.deepEqual(states(flow).map(([, s]) => s), ['waiting_children', 'completed', 'completed', 'in_flight']);
  assert.deepEqual(flow.children[0].children[1].result, url('720p'));
  assert.equal(await synap.queue.consume('ts-package'), null);
  await synap.queue.ack('ts-transcode', msgs[2].messageId, msgs[2].lease, { result: url('1080p') });

  // The package worker gets the renditions' results, in the order given.
  const [delivery] = await take('ts-package', 1);
  assert.equal(delivery.messageId, pkg.messageId);
  assert.deepEqual(delivery.message, { video: 7, step: 'package' });
  assert.deepEqual(delivery.children, transcodes.map((t, i) => ({
    messageId: t, queue: 'ts-transcode', state: 'completed', result: url(RENDITIONS[i]),
  })));
  flow = await synap.flows.get(created.flowId);
  assert.deepEqual([flow.state, flow.children[0].state], ['waiting_children', 'in_flight']);
  const manifest = { manifest: 's3://videos/7/master.m3u8' };
  await synap.queue.ack('ts-package', delivery.messageId, delivery.lease, { result: manifest });

  // The notify worker streams: its delivery carries the package and its manifest.
  const stream = await synap.queue.stream('ts-notify', { prefetch: 1 });
  try {
    const note = await stream.next();
    assert.equal(note.messageId, created.messageId);
    assert.deepEqual(note.children, [{ messageId: pkg.messageId, queue: 'ts-package', state: 'completed', result: manifest }]);
    await stream.ack(note.messageId, note.lease);
  } finally {
    await stream.close();
  }

  flow = await synap.flows.get(created.flowId);
  assert.equal(flow.state, 'completed');
  assert.ok(flow.finishedAt >= flow.createdAt);
  assert.ok(states(flow).every(([, s]) => s === 'completed'), JSON.stringify(flow));
  assert.deepEqual(flow.children[0].result, manifest);
  assert.deepEqual(flow.children[0].children.map((n) => n.result), RENDITIONS.map(url));
  assert.ok(flow.children[0].children.every((n) => n.onChildFailure === 'fail' && typeof n.finishedAt === 'number'));
  assert.equal((await synap.queue.job('ts-notify', created.messageId)).state, 'completed');

  // A message outside any flow has no children and no flow.
  const plain = await synap.queue.publish('ts-transcode', { video: 8 });
  const [m] = await take('ts-transcode', 1);
  assert.equal(m.children, undefined);
  job = await synap.queue.job('ts-transcode', plain.messageId);
  assert.deepEqual([job.flowId, job.parentId, job.children], [undefined, undefined, undefined]);
});

test('a failing child under fail dead-letters its parent and cancels the rest', async () => {
  const leaf = (q) => ({ queue: q, message: { part: q } });
  const created = await synap.flows.add({
    queue: 'ts-assemble',
    message: { step: 'assemble' },
    onChildFailure: 'fail',
    children: [leaf('ts-part-a'), leaf('ts-part-b'), { ...leaf('ts-part-c'), children: [leaf('ts-part-g')] }],
  });
  const [a, b, c] = created.children.map((j) => j.messageId);
  const g = created.children[2].children[0].messageId;
  const [bMsg] = await take('ts-part-b', 1);
  const [aMsg] = await take('ts-part-a', 1);
  assert.equal(await synap.queue.nack('ts-part-a', aMsg.messageId, false, { lease: aMsg.lease, error: 'corrupt input' }), 'dead_lettered');

  let flow = await synap.flows.get(created.flowId);
  assert.deepEqual([flow.state, flow.reason], ['dead_lettered', 'child_failed']);
  assert.equal(typeof flow.finishedAt, 'number');
  assert.deepEqual(states(flow), [[a, 'dead_lettered'], [b, 'in_flight'], [c, 'cancelled'], [g, 'cancelled']]);
  assert.equal(flow.children[0].reason, 'rejected');
  assert.equal(flow.children[1].reason, undefined);

  const p = await synap.queue.progress('ts-part-b', b, { pct: 50 }, { lease: bMsg.lease });
  assert.equal(p.cancelled, true, "b's worker learns that its job was cancelled");
  await synap.queue.ack('ts-part-b', b, bMsg.lease);
  flow = await synap.flows.get(created.flowId);
  assert.equal(flow.children[1].state, 'cancelled');

  const job = await synap.queue.job('ts-assemble', created.messageId);
  assert.deepEqual([job.state, job.deadLetterReason], ['dead_lettered', 'child_failed']);
  const dlq = await synap.queue.dlqList('ts-assemble');
  assert.deepEqual(dlq.messages.map((d) => [d.messageId, d.reason]), [[created.messageId, 'child_failed']]);
  for (const q of ['ts-assemble', 'ts-part-c', 'ts-part-g']) assert.equal(await synap.queue.consume(q), null, q);
});

test('continue delivers the parent with every child, ignore without the failed one', async () => {
  for (const mode of ['continue', 'ignore']) {
    const created = await synap.flows.add({
      queue: `ts-report-${mode}`,
      message: { mode },
      onChildFailure: mode,
      children: [{ queue: `ts-ok-${mode}`, message: { n: 1 } }, { queue: `ts-bad-${mode}`, message: { n: 2 }, maxRetries: 0 }],
    });
    const [ok, bad] = created.children.map((j) => j.messageId);
    const [badMsg] = await take(`ts-bad-${mode}`, 1);
    await synap.queue.nack(`ts-bad-${mode}`, badMsg.messageId, false, { lease: badMsg.lease });
    assert.equal((await synap.flows.get(created.flowId)).state, 'waiting_children', `${mode}: waits for ok`);
    const [okMsg] = await take(`ts-ok-${mode}`, 1);
    await synap.queue.ack(`ts-ok-${mode}`, okMsg.messageId, okMsg.lease, { result: { rows: 3 } });

    const [parent] = await take(`ts-report-${mode}`, 1);
    const want = [{ messageId: ok, queue: `ts-ok-${mode}`, state: 'completed', result: { rows: 3 } }];
    if (mode === 'continue') want.push({ messageId: bad, queue: `ts-bad-${mode}`, state: 'dead_lettered', result: null, reason: 'rejected' });
    assert.deepEqual(parent.children, want, mode);
    await synap.queue.ack(`ts-report-${mode}`, parent.messageId, parent.lease);
    const flow = await synap.flows.get(created.flowId);
    assert.deepEqual([flow.state, flow.onChildFailure, flow.children[1].reason], ['completed', mode, 'rejected']);
  }
});

test('bad trees are refused, before sending or by the server, and create nothing', async () => {
  const before = await synap.queue.list();
  // Refused by the client (status 0), named by their path.
  await rejectsWith(synap.flows.add({ queue: 'ts-bad-a', message: 1, children: [5] }), 'invalid_argument', 0, 'children[0]: a flow node must be an object');
  await rejectsWith(synap.flows.add({ queue: 'ts-bad-a', message: 1, children: [{ queue: 'ts-bad-b', message: 1, children: [null] }] }),
    'invalid_argument', 0, 'children[0].children[0]');
  await rejectsWith(synap.flows.add(['not', 'a', 'node']), 'invalid_argument', 0, 'the flow');
  await rejectsWith(synap.flows.add({ queue: 'ts-bad-a', message: 1, children: { queue: 'x' } }), 'invalid_argument', 0, 'children: must be an array');
  await rejectsWith(synap.flows.add({ queue: 'ts-bad-a' }), 'invalid_argument', 0, 'message: missing');
  await rejectsWith(synap.flows.add({ message: 1 }), 'invalid_argument', 0, 'queue');
  await rejectsWith(synap.flows.add({ queue: 'ts-bad-a', message: 1, children: [{ queue: 'ts-bad-b', message: 1, delay: 5 }] }),
    'invalid_argument', 0, 'children[0].delay: unknown field');
  await rejectsWith(synap.flows.add({ queue: 'ts-bad-a', message: 1, ttl: Number.NaN }), 'invalid_argument', 0, 'ttl: must be a finite number');
  await rejectsWith(synap.flows.add({ queue: 'ts-bad-a', message: 1, onChildFailure: 'retry' }), 'invalid_argument', 0, 'onChildFailure');
  await rejectsWith(synap.flows.add({ queue: 'ts-bad-a', message: 1, group: '' }), 'invalid_argument', 0, 'group');
  const cycle = { queue: 'ts-bad-a', message: 1, children: [] };
  cycle.children.push(cycle);
  await rejectsWith(synap.flows.add(cycle), 'limit_exceeded', 0, 'flow depth');

  // Refused by the server, named by their path; the whole tree or nothing.
  await rejectsWith(synap.flows.add({ queue: 'ts-bad-a', message: 1, children: [{ queue: 'ts-bad-b', message: null }] }),
    'invalid_argument', 400, 'children[0].message');
  const badPriority = pipeline('ts-bad', 1);
  badPriority.children[0].children[2].priority = 10;
  await rejectsWith(synap.flows.add(badPriority), 'invalid_argument', 400, 'children[0].children[2].priority');
  let deep = { queue: 'ts-bad-deep', message: 9 };
  for (let level = 8; level >= 1; level -= 1) deep = { queue: 'ts-bad-deep', message: level, children: [deep] };
  await rejectsWith(synap.flows.add(deep), 'limit_exceeded', 429, 'flow depth (limit 8)');
  const wide = { queue: 'ts-bad-wide', message: 0, children: Array.from({ length: 1000 }, (_, i) => ({ queue: 'ts-bad-wide', message: i })) };
  await rejectsWith(synap.flows.add(wide), 'limit_exceeded', 429, 'jobs per flow');
  assert.deepEqual(await synap.queue.list(), before, 'no queue was created');

  await rejectsWith(synap.flows.get('not-a-flow'), 'invalid_argument', 400, 'flow_id');
  await rejectsWith(synap.flows.get('00000000-0000-0000-0000-000000000000'), 'flow_not_found', 404);
});

test('an unanswered flows.add is not resent to another node; flows.get is', async () => {
  const requests = [];
  const hangsUp = createServer((req) => {
    requests.push(`${req.method} ${req.url}`);
    req.socket.destroy();
  });
  await new Promise((resolve) => hangsUp.listen(0, '127.0.0.1', resolve));
  try {
    const nodes = new SynapClient({ url: [`http://127.0.0.1:${hangsUp.address().port}`, server.url] });
    await rejectsWith(nodes.flows.add(pipeline('ts-once', 3)), 'transport', 0);
    assert.deepEqual(requests, ['POST /flows']);
    assert.ok(!(await synap.queue.list()).includes('ts-once-notify'), 'the real node never saw it');
    // A read is resent: the hung-up GET goes on to the next node, which answers it.
    const created = await synap.flows.add(pipeline('ts-once', 3));
    const flow = await nodes.flows.get(created.flowId);
    assert.equal(flow.messageId, created.messageId);
    assert.deepEqual(requests, ['POST /flows', `GET /flows/${created.flowId}`]);
  } finally {
    hangsUp.closeAllConnections?.();
    await new Promise((resolve) => hangsUp.close(resolve));
  }
});

test('the sample as a flow: every upload ends in a completed flow and a notification', async () => {
  const sub = await synap.pubsub.subscribe('notifications.user.*');
  try {
    const env = { ...process.env, SYNAP_URL: server.url, SYNAP_UPLOADS: '2', SYNAP_WORK_SCALE: '0.01' };
    delete env.SYNAP_API_KEY;
    const { stdout } = await run(process.execPath, [join(examples, 'video-flow.js')], { env, timeout: 60_000 });
    const flows = [...stdout.matchAll(/^flow (\S+) (\S+)$/gm)].map((m) => [m[1], m[2]]);
    assert.deepEqual(flows.map(([, state]) => state), ['completed', 'completed'], stdout);
    assert.equal(stdout.match(/^ {6}transcode \S+ completed \{"resolution"/gm)?.length, 6, stdout);
    for (const [i, [flowId]] of flows.entries()) {
      const flow = await synap.flows.get(flowId);
      const video = `vid-${i + 1}`;
      assert.equal(flow.state, 'completed');
      assert.deepEqual(flow.result, { topic: `notifications.user.user-${i + 1}` });
      const [pkg] = flow.children;
      assert.deepEqual(pkg.result, {
        manifest: `s3://videos/${video}/master.m3u8`,
        renditions: RENDITIONS.map((r) => `s3://videos/${video}/${r}.mp4`),
      });
      assert.deepEqual(pkg.children.map((t) => [t.queue, t.state, t.result.resolution]), RENDITIONS.map((r) => ['transcode', 'completed', r]));
    }
    const next = async () => {
      let timer;
      const late = new Promise((_, no) => { timer = setTimeout(() => no(new Error('no notification')), 10_000); });
      try {
        return await Promise.race([sub.next(), late]);
      } finally {
        clearTimeout(timer);
      }
    };
    const notes = [await next(), await next()].sort((a, b) => a.topic.localeCompare(b.topic));
    assert.deepEqual(notes.map((n) => [n.topic, n.message.manifest]),
      [1, 2].map((n) => [`notifications.user.user-${n}`, `s3://videos/vid-${n}/master.m3u8`]));
    for (const [queue, acked] of [['transcode', 6], ['package', 2], ['notify', 2]]) {
      const s = await synap.queue.stats(queue);
      assert.deepEqual([s.ackedTotal, s.depth, s.inFlight, s.waitingChildren], [acked, 0, 0, 0], queue);
    }
  } finally {
    sub.close();
  }
});
