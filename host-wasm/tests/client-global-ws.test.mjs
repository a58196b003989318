// Goal: the TypeScript client's browser path: with a global WebSocket (as in browsers and
// Node 22+), streams and subscriptions use it, and the API key travels as `?api_key=` since
// such a socket cannot send headers; a wrong key is refused. Method: install the `ws`
// package's browser-compatible WebSocket as the global (this file runs in its own process),
// against a real server started with SYNAP_API_KEY.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocket as WsSocket } from 'ws';
import { SynapClient, SynapError } from 'synap-wasm';
import { startServer } from './harness.mjs';

const KEY = 'browser-path-key';
let server;
let opened = [];
before(async () => {
  server = await startServer({ env: { SYNAP_API_KEY: KEY } });
  // Records each URL and refuses to send headers, as a browser's WebSocket cannot.
  globalThis.WebSocket = class extends WsSocket {
    constructor(url) {
      opened.push(url);
      super(url);
    }
  };
});
after(() => server.stop());

test('the global WebSocket carries the key in the query', async () => {
  opened = [];
  const synap = new SynapClient({ url: server.url, apiKey: KEY });
  await synap.queue.publish('gw', { hello: 1 });
  const stream = await synap.queue.stream('gw', { prefetch: 1 });
  const msg = await stream.next();
  assert.deepEqual(msg.message, { hello: 1 });
  await stream.ack(msg.messageId, msg.lease);
  stream.close();
  const sub = await synap.pubsub.subscribe(['gw.#']);
  assert.equal((await synap.pubsub.publish('gw.a', 'x')).subscribersMatched, 1);
  assert.equal((await sub.next()).message, 'x');
  sub.close();
  assert.equal(opened.length, 2);
  for (const url of opened) assert.match(url, new RegExp(`[?&]api_key=${KEY}`));
});

test('a wrong key through the global WebSocket is refused', async () => {
  const wrong = new SynapClient({ url: server.url, apiKey: 'nope' });
  await assert.rejects(wrong.pubsub.subscribe('a'), (e) => e instanceof SynapError && e.code === 'websocket');
});
