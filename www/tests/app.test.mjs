// Browser tests of the web app against the real server binary: the page, its scripts and
// the engine's WebAssembly come from the server's embedded copy of www/dist.
//
// One server with auth on (SYNAP_API_KEY) serves every view; a second one, on a data
// directory, records the command log the replay test exports. Screenshots of each view go to
// www/test-artifacts/.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Simulation } from 'synap-wasm';
import { serverAndBrowser } from './server.mjs';
import { checkClean, launch, open, shot } from './browser.mjs';

const KEY = 'browser-test-key';
const env = serverAndBrowser(KEY, launch);

const summaryValue = (page, key) => page.locator(`.results[data-state=done] table.summary td[data-key="${key}"]`).first().textContent();

test('the server serves the app publicly, with content types, ETags and gzip', async () => {
  const page = await fetch(`${env.base}/`);
  assert.equal(page.status, 200);
  assert.match(page.headers.get('content-type'), /^text\/html/);
  assert.match(page.headers.get('content-security-policy'), /connect-src 'self'/);
  const wasm = await fetch(`${env.base}/assets/synap_wasm_bg.wasm`, { headers: { 'accept-encoding': 'gzip' } });
  assert.equal(wasm.headers.get('content-type'), 'application/wasm');
  assert.equal(wasm.headers.get('content-encoding'), 'gzip');
  const bytes = new Uint8Array(await wasm.arrayBuffer()); // fetch decodes the gzip
  assert.deepEqual([...bytes.slice(0, 4)], [0, 0x61, 0x73, 0x6d], 'a wasm module');
  const js = await fetch(`${env.base}/assets/app.js`);
  assert.match(js.headers.get('content-type'), /^text\/javascript/);
  const again = await fetch(`${env.base}/assets/app.js`, { headers: { 'if-none-match': js.headers.get('etag') } });
  assert.equal(again.status, 304);
  const missing = await fetch(`${env.base}/assets/nope.js`);
  assert.equal(missing.status, 404);
  assert.equal((await missing.json()).code, 'not_found');
  // The API itself still needs the key.
  assert.equal((await fetch(`${env.base}/queue/list`)).status, 401);
});

test('the preset runs from the URL: progress, charts and the summary', async () => {
  const page = await open(env.browser, env.base);
  await page.goto(`${env.base}/#preset=video-processing&run=1`);
  await page.locator('#view-simulator .results[data-state=done]').waitFor({ timeout: 60_000 });
  assert.equal(await page.locator('#sim-progress').evaluate((p) => p.value), 1);
  for (const key of ['depth', 'in_flight', 'dlq', 'throughput', 'wait']) {
    const points = await page.locator(`#view-simulator figure[data-chart=${key}] .chart-canvas`).getAttribute('data-points');
    assert.ok(Number(points) >= 60, `${key} chart has its points (${points})`);
    assert.equal(await page.locator(`#view-simulator figure[data-chart=${key}] canvas`).count(), 1);
  }
  const native = Simulation.fromPreset('video-processing').run().summary;
  assert.equal(await summaryValue(page, 'run_hash'), native.run_hash, 'the browser run equals the Node run');
  assert.equal(await summaryValue(page, 'published'), native.published.toLocaleString('en-US'));
  await shot(page, 'simulator');
  checkClean(page);
  await page.context().close();
});

test('compare runs two configurations on the same seed side by side', async () => {
  const page = await open(env.browser, env.base);
  await page.goto(`${env.base}/#preset=video-processing&compare=1&run=1`);
  const results = page.locator('#view-simulator .results[data-state=done]');
  await results.waitFor({ timeout: 90_000 });
  assert.equal(await results.getAttribute('data-runs'), '2');
  assert.equal(await page.locator('#view-simulator .run-column').count(), 2);
  assert.equal(await page.locator('#view-simulator figure.chart').count(), 10);
  const row = page.locator('#view-simulator table.summary tr', { has: page.locator('td[data-key=run_hash]') });
  const [a, b] = await row.locator('td[data-key=run_hash]').allTextContents();
  assert.notEqual(a, b, 'B (two more workers) is another run');
  const scenario = Simulation.presetScenario('video-processing');
  scenario.workers[0].count += 2;
  assert.equal(b, new Simulation(scenario).run().summary.run_hash);
  await shot(page, 'compare');
  checkClean(page);
  await page.context().close();
});

test('a sweep of the worker count draws its curves and answers the target', async () => {
  const page = await open(env.browser, env.base);
  await page.goto(`${env.base}/#view=planner&preset=video-processing&param=workers&group=0&from=1&to=5&run=1`);
  const out = page.locator('#plan-results[data-state=done]');
  await out.waitFor({ timeout: 120_000 });
  assert.equal(await out.getAttribute('data-points'), '5');
  for (const key of ['sweep-wait', 'sweep-dlq', 'sweep-util']) {
    assert.equal(await page.locator(`figure[data-chart=${key}] .chart-canvas`).getAttribute('data-points'), '5');
  }
  assert.equal(await page.locator('table.sweep tbody tr').count(), 5);
  const answer = await page.locator('#plan-answer').textContent();
  assert.match(answer, /priority 9 wait p99 under 10\.0 s/);
  // The answer is the first swept count whose priority-9 p99 is under 10 s, checked in Node.
  let expected = '';
  for (let n = 1; n <= 5; n++) {
    const s = Simulation.presetScenario('video-processing');
    s.workers[0].count = n;
    const p9 = new Simulation(s).run().summary.by_priority.find((p) => p.priority === 9);
    if (p9.wait_ms.p99 < 10_000) { expected = String(n); break; }
  }
  assert.equal(await page.locator('#plan-answer').getAttribute('data-value'), expected);
  await shot(page, 'planner');
  checkClean(page);
  await page.context().close();
});

test('a shared URL reproduces the same summary', async () => {
  const page = await open(env.browser, env.base);
  await page.goto(`${env.base}/#preset=steady`);
  // Edit only once the preset is in the form (it loads with the engine, asynchronously), and
  // run only once the edits are in the URL, so a late load cannot undo them.
  await page.waitForLoadState('networkidle');
  await page.waitForFunction(() => document.querySelector('#sim-seed')?.value !== '');
  await page.locator('#sim-seed').fill('7');
  await page.locator('#sim-seed').dispatchEvent('change');
  await page.locator('input[data-path="workers.0.count"]').first().fill('3');
  await page.locator('input[data-path="workers.0.count"]').first().dispatchEvent('change');
  await page.waitForFunction(() => location.hash.includes('scenario=') && location.hash.includes('seed=7'));
  await page.locator('#sim-run').click();
  await page.locator('#view-simulator .results[data-state=done]').waitFor({ timeout: 60_000 });
  const hash = await summaryValue(page, 'run_hash');
  const published = await summaryValue(page, 'published');
  await page.locator('#sim-share').click();
  await page.waitForFunction(() => location.hash.includes('run=1'));
  const url = page.url();
  assert.match(url, /seed=7/);
  assert.match(url, /scenario=/, 'the edited scenario travels in the URL');
  checkClean(page);
  await page.context().close();

  const other = await open(env.browser, env.base);
  await other.goto(url);
  await other.locator('#view-simulator .results[data-state=done]').waitFor({ timeout: 60_000 });
  assert.equal(await summaryValue(other, 'run_hash'), hash);
  assert.equal(await summaryValue(other, 'published'), published);
  const s = Simulation.presetScenario('steady');
  s.seed = 7;
  s.workers[0].count = 3;
  assert.equal(hash, new Simulation(s).run().summary.run_hash);
  checkClean(other);
  await other.context().close();
});
