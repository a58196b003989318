// The sample's integration test, run with `node --test` against SYNAP_URL: publish a task,
// consume it, ack it, and the queue is empty.
//
//   SYNAP_URL=http://127.0.0.1:15500 node --test host-wasm/client/build/examples/integration.test.js
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { SynapClient } from 'synap-wasm';
import { settings } from './common.js';

describe('Task Queue', () => {
  it('should process task end-to-end', async () => {
    const synap = new SynapClient({ url: settings.url, apiKey: settings.apiKey });

    // Publish task
    const result = await synap.queue.publish('test-queue', { type: 'test_task', data: 'test' });
    assert.ok(result.messageId);

    // Consume task
    const msg = await synap.queue.consume<{ type: string }>('test-queue');
    assert.ok(msg);
    assert.equal(msg.message.type, 'test_task');

    // Acknowledge
    await synap.queue.ack('test-queue', msg.messageId);

    // Queue should be empty
    const stats = await synap.queue.stats('test-queue');
    assert.equal(stats.depth, 0);
  });
});
