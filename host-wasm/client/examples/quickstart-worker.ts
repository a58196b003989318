// Quick start, worker: take tasks from `video-processing` under a 300 s lease and ack each;
// stops when the queue stays empty for 2 s (a real worker loops for ever).
//   node host-wasm/client/build/examples/quickstart-worker.js   (SYNAP_URL picks the server)
import { SynapClient } from 'synap-wasm';

const synap = new SynapClient({ url: process.env.SYNAP_URL ?? 'http://127.0.0.1:15500' });
for (;;) {
  const task = await synap.queue.consume<{ videoId: number }>('video-processing', { timeout: 2, ackDeadline: 300 });
  if (task === null) break;
  console.log(`transcoding video ${task.message.videoId}`);
  await synap.queue.ack('video-processing', task.messageId, task.lease);
}
