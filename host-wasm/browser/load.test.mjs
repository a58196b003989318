// Browser test: the synap-wasm npm package loads as an ES module in headless Chromium (through
// an import map, as a page without a bundler would use it), drives the Engine and runs the
// video-processing preset; the browser's run_hash must equal the one Node computes.
//
// Method: a static server on 127.0.0.1 (free port) serves host-wasm/pkg and a test page;
// Debian's chromium is driven by playwright-core. Both are stopped at the end.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { Simulation } from 'synap-wasm';

const here = path.dirname(fileURLToPath(import.meta.url));
const pkg = path.resolve(here, '../pkg');
const chromiumPath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

const page = `<!doctype html>
<meta charset="utf-8">
<title>synap-wasm browser test</title>
<script type="importmap">{ "imports": { "synap-wasm": "/pkg/web/index.js" } }</script>
<script type="module">
  import { Engine, Simulation } from 'synap-wasm';
  const out = {};
  try {
    const engine = new Engine({}, 7);
    out.published = engine.handle(1000, { type: 'publish', queue: 'q', message: { video_id: 1 }, priority: 9 });
    out.consumed = engine.handle(1000, { type: 'consume', queue: 'q', lease_ms: 100 });
    out.events = engine.drainEvents().length;
    engine.handleTimeout(1100);
    out.expired = engine.drainEvents().map((e) => e.kind || e.type);
    try { engine.handle(1100, { type: 'stats', queue: 'nope' }); } catch (e) { out.error = e.code; }
    out.report = Simulation.fromPreset('video-processing').run().summary;
  } catch (e) {
    out.failure = String(e && e.stack || e);
  }
  window.__synap = out;
</script>`;

const types = { '.js': 'text/javascript', '.wasm': 'application/wasm', '.json': 'application/json' };
let server;
let browser;
let origin;

before(async () => {
  server = http.createServer(async (req, res) => {
    const url = new URL(req.url, 'http://x');
    if (url.pathname === '/') {
      res.writeHead(200, { 'content-type': 'text/html' }).end(page);
      return;
    }
    const file = path.resolve(pkg, '.' + url.pathname.replace(/^\/pkg/, ''));
    if (!url.pathname.startsWith('/pkg/') || !file.startsWith(pkg)) {
      res.writeHead(404).end();
      return;
    }
    try {
      const body = await readFile(file);
      res.writeHead(200, { 'content-type': types[path.extname(file)] || 'application/octet-stream' }).end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  origin = `http://127.0.0.1:${server.address().port}`;
  browser = await chromium.launch({
    executablePath: chromiumPath,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  await browser?.close();
  await new Promise((resolve) => server?.close(resolve));
});

test('the package loads as an ES module in Chromium and matches Node', async () => {
  const tab = await browser.newPage();
  const errors = [];
  tab.on('pageerror', (e) => errors.push(String(e)));
  await tab.goto(origin + '/');
  await tab.waitForFunction(() => window.__synap !== undefined, null, { timeout: 60_000 });
  const out = await tab.evaluate(() => window.__synap);
  assert.deepEqual(errors, []);
  assert.equal(out.failure, undefined, out.failure);
  assert.equal(out.published.type, 'published');
  assert.equal(out.published.position, 1);
  assert.equal(out.consumed.messages.length, 1);
  assert.deepEqual(out.consumed.messages[0].message, { video_id: 1 });
  assert.ok(out.events >= 2, 'published and delivered were observed');
  assert.ok(out.expired.includes('lease_expired'), `events after the lease: ${out.expired}`);
  assert.equal(out.error, 'queue_not_found');
  const native = Simulation.fromPreset('video-processing').run().summary;
  assert.ok(out.report.published > 0);
  assert.equal(out.report.run_hash, native.run_hash);
  await tab.close();
});
