// Runs one sample worker; Ctrl-C (SIGINT) stops it after the task in hand.
//
//   SYNAP_URL=http://127.0.0.1:15500 node host-wasm/client/build/examples/worker.js
import { QUEUE, settings } from './common.js';
import { VideoWorker } from './video-worker.js';

const worker = new VideoWorker(settings.url, settings.apiKey, QUEUE, process.env.SYNAP_WORKER_ID || undefined);

// Graceful shutdown
process.on('SIGINT', () => {
  console.log('Shutting down gracefully...');
  worker.stop();
});

worker.start().catch((e: unknown) => {
  console.error('worker failed:', e);
  process.exit(1);
});
