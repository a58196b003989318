// Browser tests of the live dashboard, replay, the phone layout, accessibility and the app
// served by a plain static file server, each against the real server binary.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { extname, join, resolve } from 'node:path';
import { Simulation } from 'synap-wasm';
import { api, exportLog, root, serverAndBrowser, startServer } from './server.mjs';
import { checkAccessible, checkClean, launch, open, shot } from './browser.mjs';

const KEY = 'live-test-key';
const env = serverAndBrowser(KEY, launch);

const call = (method, path, body) => api(env.base, KEY, method, path, body);

/** The number shown in the queue table for `queue`'s column `key`. */
async function shown(page, queue, key) {
  const text = await page.locator(`#queue-rows tr[data-queue="${queue}"] td[data-key=${key}]`).textContent({ timeout: 10_000 });
  return Number(text.replace(/,/g, ''));
}

async function until(check, what, ms = 15_000) {
  const end = Date.now() + ms;
  for (;;) {
    if (await check()) return;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test('live: depth follows publishes, a dead letter shows in the DLQ browser and retry moves it back', async () => {
  const q = 'live-jobs';
  await call('POST', `/queue/${q}`, { max_retries: 0 });
  const page = await open(env.browser, env.base);
  await page.goto(`${env.base}/#view=live`);
  // Without a key the server refuses, and the page says so (the 401 is expected here).
  page.problems.allow.push(/status of 401/);
  await page.locator('#live-connect').click();
  await page.locator('#view-live[data-state=refused]').waitFor();
  assert.match(await page.locator('#live-status').textContent(), /API key/);
  page.problems.allow.length = 0;

  await page.locator('#live-key').fill(KEY);
  await page.locator('#live-connect').click();
  await page.locator('#view-live[data-state=connected]').waitFor();
  await page.locator('#live-stream', { hasText: 'live' }).waitFor();
  await page.locator(`#queue-rows tr[data-queue="${q}"]`).waitFor();
  assert.equal(await shown(page, q, 'depth'), 0);

  // Publishing through the API changes the depth on screen (through /events).
  for (let i = 0; i < 3; i++) await call('POST', `/queue/${q}/publish`, { message: { video_id: i }, priority: 9 });
  await until(async () => (await shown(page, q, 'depth')) === 3, 'depth 3 on screen');

  // A consumer rejects one: it is dead-lettered and appears in the DLQ browser.
  const { messages } = await call('POST', `/queue/${q}/consume`, { timeout: 0 });
  const id = messages[0].message_id;
  await call('POST', `/queue/${q}/nack`, { message_id: id, requeue: false, error: 'ffmpeg exited with 1' });
  await until(async () => (await shown(page, q, 'dlq')) === 1, 'DLQ 1 on screen');
  await page.locator(`#queue-rows tr[data-queue="${q}"] button`).click();
  const row = page.locator(`#dlq tr[data-id="${id}"]`);
  await row.waitFor();
  const cells = await row.locator('td').allTextContents();
  assert.match(cells[2], /"video_id":0/);
  assert.equal(cells[3], 'rejected');
  assert.equal(cells[4], '1');
  assert.equal(cells[5], 'ffmpeg exited with 1');
  await page.locator('#events li[data-kind=dead_lettered]').first().waitFor();
  assert.equal(await page.locator(`figure[data-chart=live-depth] canvas`).count(), 1);

  // The event filter narrows the stream.
  await page.locator('#event-kind').selectOption('dead_lettered');
  await until(async () => (await page.locator('#events li').count()) === (await page.locator('#events li[data-kind=dead_lettered]').count()), 'filtered events');
  await page.locator('#event-kind').selectOption('');
  await shot(page, 'live');

  // Retry from the page: the message leaves the DLQ and is ready again.
  await row.locator('input[type=checkbox]').check();
  await page.locator('#dlq-retry').click();
  await page.locator('#dlq td.empty').waitFor();
  await until(async () => (await shown(page, q, 'dlq')) === 0 && (await shown(page, q, 'depth')) === 3, 'DLQ 0 and depth 3 on screen');
  const stats = await call('GET', `/queue/${q}/stats`);
  assert.equal(stats.dead_letter_count, 0);
  assert.equal(stats.ready, 3);

  // Publish from the page, and look a key up.
  await page.locator('#pub-queue').fill(q);
  await page.locator('#pub-message').fill('{"video_id": 99}');
  await page.locator('#pub-send').click();
  await until(async () => (await shown(page, q, 'depth')) === 4, 'depth 4 after the page published');
  await call('POST', '/kv/set', { key: 'video:99:status', value: { state: 'transcoding' }, ttl: 3600 });
  await page.locator('#kv-key').fill('video:99:status');
  await page.locator('#kv-get').click();
  await page.locator('#kv-result pre', { hasText: 'transcoding' }).waitFor();
  checkClean(page);
  await page.context().close();
});

test('replay: an export of a real server log shows the same charts and summary', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'synap-www-'));
  try {
    const rec = await startServer({ dataDir: dir });
    const r = (method, path, body) => api(rec.url, null, method, path, body);
    await r('POST', '/queue/uploads', { max_retries: 0 });
    for (let i = 0; i < 20; i++) await r('POST', '/queue/uploads/publish', { message: { n: i }, priority: i % 2 ? 9 : 5 });
    const { messages } = await r('POST', '/queue/uploads/consume', { timeout: 0, max_messages: 6 });
    for (const m of messages.slice(0, 5)) await r('POST', '/queue/uploads/ack', { message_id: m.message_id });
    await r('POST', '/queue/uploads/nack', { message_id: messages[5].message_id, requeue: false });
    // Exported while the server runs (export only reads): the records are all in the log. A
    // stop would write a snapshot, after which the export starts from its state instead.
    const text = exportLog(dir);
    await rec.stop();
    assert.match(text.split('\n')[0], /"type":"head"/);
    const file = join(dir, 'export.jsonl');
    writeFileSync(file, text);

    const page = await open(env.browser, env.base);
    await page.goto(`${env.base}/#view=replay`);
    await page.locator('#replay-interval').fill('1');
    await page.locator('#replay-file').setInputFiles(file);
    await page.locator('#view-replay .results[data-state=done]').waitFor({ timeout: 30_000 });
    const value = (k) => page.locator(`#view-replay td[data-key=${k}]`).first().textContent();
    assert.equal(await value('published'), '20');
    assert.equal(await value('completed'), '5');
    assert.equal(await value('dead_lettered'), '1');
    assert.equal(await page.locator('#view-replay figure.chart').count(), 5);
    const status = await page.locator('#view-replay .status').textContent();
    assert.match(status, /server export/);
    // The digest the page shows is the engine's at the last record: the server's own then.
    assert.match(status, /State digest at the end: [0-9a-f]{16}/);
    await shot(page, 'replay');
    checkClean(page);
    await page.context().close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('phone width: the views fit without sideways scrolling', async () => {
  const page = await open(env.browser, env.base, { width: 390, height: 844 });
  await page.goto(`${env.base}/#preset=video-processing&compare=1&run=1`);
  await page.locator('#view-simulator .results[data-state=done]').waitFor({ timeout: 90_000 });
  for (const view of ['simulator', 'planner', 'replay', 'live']) {
    await page.locator(`#tab-${view}`).click();
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 1, `${view} overflows by ${overflow}px`);
  }
  await page.locator('#tab-simulator').click();
  await page.locator('#view-simulator .results').scrollIntoViewIfNeeded();
  await shot(page, 'simulator-phone', false);
  checkClean(page);
  await page.context().close();
});

test('keyboard: arrow keys move between the tabs', async () => {
  const page = await open(env.browser, env.base);
  await page.goto(`${env.base}/`);
  await page.locator('#tab-simulator').focus();
  await page.keyboard.press('ArrowRight');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'tab-planner');
  assert.equal(await page.locator('#view-planner').isVisible(), true);
  await page.keyboard.press('End');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'tab-live');
  assert.match(page.url(), /view=live/);
  checkClean(page);
  await page.context().close();
});

test('accessibility: no serious or critical axe-core violations in any view', async () => {
  const page = await open(env.browser, env.base, { bypassCSP: true });
  await page.goto(`${env.base}/#preset=video-processing&compare=1&run=1`);
  await page.locator('#view-simulator .results[data-state=done]').waitFor({ timeout: 90_000 });
  await checkAccessible(page, 'the simulator with results');
  await page.goto(`${env.base}/#view=planner&param=workers&from=2&to=4&run=1`);
  await page.locator('#plan-results[data-state=done]').waitFor({ timeout: 90_000 });
  await checkAccessible(page, 'the planner with results');
  await page.locator('#tab-replay').click();
  await checkAccessible(page, 'the replay view');
  await page.locator('#tab-live').click();
  await page.locator('#live-key').fill(KEY);
  await page.locator('#live-connect').click();
  await page.locator('#view-live[data-state=connected]').waitFor();
  await checkAccessible(page, 'the live view');
  checkClean(page);
  await page.context().close();
});

test('the app works from a plain static file server (www/dist alone)', async () => {
  const dist = join(root, 'www', 'dist');
  const types = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.wasm': 'application/wasm', '.svg': 'image/svg+xml' };
  const files = http.createServer((req, res) => {
    const path = new URL(req.url, 'http://x').pathname;
    const file = resolve(dist, `.${path === '/' ? '/index.html' : path}`);
    try {
      if (!file.startsWith(dist)) throw new Error('outside');
      res.writeHead(200, { 'content-type': types[extname(file)] || 'application/octet-stream' }).end(readFileSync(file));
    } catch {
      res.writeHead(404).end();
    }
  });
  await new Promise((r) => files.listen(0, '127.0.0.1', r));
  const origin = `http://127.0.0.1:${files.address().port}`;
  try {
    const page = await open(env.browser, origin);
    await page.goto(`${origin}/#preset=video-processing&run=1`);
    await page.locator('#view-simulator .results[data-state=done]').waitFor({ timeout: 60_000 });
    const hash = await page.locator('#view-simulator td[data-key=run_hash]').textContent();
    assert.equal(hash, Simulation.fromPreset('video-processing').run().summary.run_hash);
    checkClean(page);
    await page.context().close();
  } finally {
    await new Promise((r) => files.close(r));
  }
});
