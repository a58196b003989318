// The sample's progress route: `GET /api/videos/{videoId}/progress` answers the
// `video:{id}:progress` key that workers keep (see updateProgress in video-worker.ts), or 404.
// A small node:http server stands in for the sample's web framework. It listens on
// 127.0.0.1:SYNAP_PROGRESS_PORT (default 3000; 0 picks a free port) and logs the address.
//
//   SYNAP_URL=http://127.0.0.1:15500 node host-wasm/client/build/examples/progress.js
import { createServer } from 'node:http';
import { SynapClient } from 'synap-wasm';
import { settings } from './common.js';

const synap = new SynapClient({ url: settings.url, apiKey: settings.apiKey });
const route = /^\/api\/videos\/([^/]{1,200})\/progress$/;

const server = createServer((req, res) => {
  const match = req.method === 'GET' ? route.exec(req.url ?? '') : null;
  const reply = (status: number, body: unknown): void => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  if (!match) return reply(404, { error: 'Not found' });
  const videoId = decodeURIComponent(match[1] ?? '');
  synap.kv
    .get(`video:${videoId}:progress`)
    .then((result) => (result.found ? reply(200, result.value) : reply(404, { error: 'Video not found' })))
    .catch((e: unknown) => reply(502, { error: String(e) }));
});

server.listen(Number(process.env.SYNAP_PROGRESS_PORT ?? 3000), '127.0.0.1', () => {
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  console.log(`progress endpoint listening on http://127.0.0.1:${port}`);
});
const shutdown = (): void => {
  server.close(() => process.exit(0));
};
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);
