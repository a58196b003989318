// Quick start, producer: queue three transcode tasks on `video-processing`.
//   node host-wasm/client/build/examples/quickstart-producer.js   (SYNAP_URL picks the server)
import { SynapClient } from 'synap-wasm';

const synap = new SynapClient({ url: process.env.SYNAP_URL ?? 'http://127.0.0.1:15500' });
for (const videoId of [1, 2, 3]) {
  const queued = await synap.queue.publish('video-processing', { type: 'transcode', videoId }, { priority: 9 });
  console.log(`queued video ${videoId} as ${queued.messageId}`);
}
