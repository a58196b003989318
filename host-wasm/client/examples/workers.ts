// Several sample workers in one process (SYNAP_WORKERS, default 3), as the sample's Python
// run_workers does; Ctrl-C (SIGINT) stops them all after their tasks in hand.
//
//   SYNAP_URL=http://127.0.0.1:15500 SYNAP_WORKERS=3 node host-wasm/client/build/examples/workers.js
import { QUEUE, settings } from './common.js';
import { VideoWorker } from './video-worker.js';

const count = Number(process.env.SYNAP_WORKERS ?? 3);
const workers = Array.from({ length: count }, (_, i) =>
  new VideoWorker(settings.url, settings.apiKey, QUEUE, `worker-${process.pid}-${i + 1}`));

process.on('SIGINT', () => {
  console.log('Shutting down gracefully...');
  for (const w of workers) w.stop();
});

Promise.all(workers.map((w) => w.start())).catch((e: unknown) => {
  console.error('workers failed:', e);
  process.exit(1);
});
