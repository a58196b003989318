// Browser tests of flows (task types with children) in the web app's simulator and planner,
// against the real server binary (the page, its scripts and the engine's WebAssembly come from
// its embedded www/dist): the video-pipeline preset's run shows its whole flows (counts and
// end-to-end latency) and their latency chart, the form keeps the children, queues and
// on_child_failure it does not edit, and the planner sweeps the gpu workers against a flow
// latency target. Every figure the page shows is checked against the same run in Node.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { inflateRawSync } from 'node:zlib';
import { Simulation } from 'synap-wasm';
import { serverAndBrowser } from './server.mjs';
import { checkAccessible, checkClean, launch, open, shot } from './browser.mjs';

const env = serverAndBrowser('browser-flows-key', launch);

/** The scenario the page keeps in its URL (`scenario=`: `z` + deflated JSON, or `j` + JSON). */
function scenarioFromUrl(url) {
  const text = new URLSearchParams(new URL(url).hash.slice(1)).get('scenario');
  if (!text) return undefined;
  const bytes = Buffer.from(text.slice(1), 'base64url');
  return JSON.parse((text[0] === 'z' ? inflateRawSync(bytes) : bytes).toString('utf8'));
}

/** The page's `fmtMs`, to compare what it prints with Node's figures. */
function fmtMs(ms) {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 3_600_000) return `${(ms / 60_000).toFixed(1)} min`;
  return `${(ms / 3_600_000).toFixed(1)} h`;
}

const SUMMARY = '#view-simulator table.summary:not(.group-classes):not(.workers):not(.flows)';
const FLOWS = '#view-simulator table.summary.flows';
const done = (page) => page.locator('#view-simulator .results[data-state=done]').waitFor({ timeout: 90_000 });

test('the video-pipeline run shows its whole flows as Node computes them', async () => {
  const page = await open(env.browser, env.base, { bypassCSP: true });
  await page.goto(`${env.base}/#preset=video-pipeline&run=1`);
  await done(page);
  const native = Simulation.fromPreset('video-pipeline').run();
  const f = native.summary.flows;
  assert.ok(f && f.completed > 0 && f.latency_ms.count > 0, 'the preset completes flows');
  assert.equal(await page.locator(`${SUMMARY} td[data-key=run_hash]`).textContent(), native.summary.run_hash);

  for (const key of ['started', 'completed', 'failed', 'cancelled', 'running', 'completed_with_failures']) {
    const cell = page.locator(`${FLOWS} td[data-col=${key}]`);
    assert.equal(Number(await cell.getAttribute('data-value')), f[key], key);
    assert.equal(await cell.textContent(), f[key].toLocaleString('en-US'), key);
  }
  for (const q of ['p50', 'p90', 'p99', 'max']) {
    const cell = page.locator(`${FLOWS} td[data-col=latency_${q}]`);
    assert.equal(Number(await cell.getAttribute('data-value')), f.latency_ms[q], q);
    assert.equal(await cell.textContent(), fmtMs(f.latency_ms[q]), q);
  }
  // The summary table has the flow latency too (for comparisons side by side).
  assert.equal(Number(await page.locator(`${SUMMARY} td[data-key=flow_p99]`).getAttribute('data-value')), f.latency_ms.p99);
  assert.equal(Number(await page.locator(`${SUMMARY} td[data-key=flows_completed]`).getAttribute('data-value')), f.completed);

  // The latency over time: one point per sample, p99 and p50.
  const chart = page.locator('#view-simulator figure[data-chart=flow_latency] .chart-canvas');
  assert.equal(Number(await chart.getAttribute('data-points')), native.series.length);
  assert.match(await chart.getAttribute('aria-label'), /flow p99: last/);

  // The form showed the preset without dropping what it does not edit.
  const json = JSON.parse(await page.locator('#view-simulator textarea.json').first().inputValue());
  assert.deepEqual(json, Simulation.presetScenario('video-pipeline'));
  await shot(page, 'simulator-flows');
  await checkAccessible(page, 'the simulator with flows');
  checkClean(page);
  await page.context().close();

  // A report without flows has neither the block nor the chart nor the summary rows.
  const plain = await open(env.browser, env.base);
  await plain.goto(`${env.base}/#preset=steady&run=1`);
  await done(plain);
  assert.equal(await plain.locator(FLOWS).count(), 0);
  assert.equal(await plain.locator('#view-simulator figure[data-chart=flow_latency]').count(), 0);
  assert.equal(await plain.locator(`${SUMMARY} td[data-key=flow_p99]`).count(), 0);
  checkClean(plain);
  await plain.context().close();
});

test("the form keeps children, queues and on_child_failure through edits and the run", async () => {
  const page = await open(env.browser, env.base);
  await page.goto(`${env.base}/#preset=video-pipeline`);
  await page.waitForLoadState('networkidle');
  await page.waitForFunction(() => document.querySelector('#sim-seed')?.value !== '');
  // A setting the preset leaves at its default, typed into the JSON view.
  const edited = Simulation.presetScenario('video-pipeline');
  edited.task_types[1].on_child_failure = 'continue';
  const textarea = page.locator('#view-simulator textarea.json').first();
  await textarea.fill(JSON.stringify(edited, null, 2));
  await textarea.dispatchEvent('input');
  // Then an edit in the form: one GPU fewer.
  const count = page.locator('#view-simulator input[data-path="workers.0.count"]').first();
  await count.fill('11');
  await count.dispatchEvent('change');
  edited.workers[0].count = 11;
  let scenario;
  for (let i = 0; i < 100 && scenario?.workers?.[0]?.count !== 11; i++) {
    await page.waitForTimeout(100);
    scenario = scenarioFromUrl(page.url());
  }
  assert.deepEqual(scenario, edited, 'the URL holds the whole scenario');
  assert.deepEqual(JSON.parse(await textarea.inputValue()), edited, 'and so does the JSON view');
  assert.equal(scenario.task_types[1].on_child_failure, 'continue');
  assert.deepEqual(scenario.task_types[0].children, [{ task_type: 'package', count: 1 }]);
  assert.deepEqual(scenario.workers.map((w) => w.queue), ['transcode', 'package', 'notify']);

  // The run is the engine's run of exactly that scenario.
  await page.locator('#sim-run').click();
  await done(page);
  const native = new Simulation(edited).run().summary;
  assert.equal(await page.locator(`${SUMMARY} td[data-key=run_hash]`).textContent(), native.run_hash);
  assert.equal(Number(await page.locator(`${FLOWS} td[data-col=completed]`).getAttribute('data-value')), native.flows.completed);
  checkClean(page);
  await page.context().close();
});

/** Node's flow latency per gpu count of the video-pipeline preset. */
function nativeFlows(values) {
  return values.map((n) => {
    const s = Simulation.presetScenario('video-pipeline');
    s.workers[0].count = n;
    return new Simulation(s).run().summary.flows;
  });
}

test('the planner sweeps the gpu workers against a flow latency target', async () => {
  const page = await open(env.browser, env.base);
  await page.goto(`${env.base}/#view=planner&preset=video-pipeline&param=workers&group=0&from=9&to=14&run=1`);
  const out = page.locator('#plan-results[data-state=done]');
  await out.waitFor({ timeout: 120_000 });
  assert.equal(await out.getAttribute('data-points'), '6');
  const values = [9, 10, 11, 12, 13, 14];
  const native = nativeFlows(values);
  const column = (key) => page.locator(`table.sweep tbody td[data-col=${key}]`).evaluateAll((tds) => tds.map((td) => Number(td.dataset.value)));
  assert.deepEqual(await column('flow_p99'), native.map((f) => f.latency_ms.p99));
  assert.deepEqual(await column('flow_p50'), native.map((f) => f.latency_ms.p50));
  assert.deepEqual(await column('flows_completed'), native.map((f) => f.completed));
  assert.equal(await page.locator('figure[data-chart=sweep-flow-latency] .chart-canvas').getAttribute('data-points'), '6');

  // With flows the target is the whole flow's p99, a minute to start with.
  assert.equal(await page.locator('#plan-priority').inputValue(), 'flow_p99');
  assert.equal(await page.locator('label[for=plan-target]').textContent(), 'flow p99 under (s)');
  const smallest = (q, ms) => String(values.find((_, i) => native[i].latency_ms[q] < ms) ?? '');
  const answer = page.locator('#plan-answer');
  assert.match(await answer.textContent(), /^Smallest worker count that keeps flow p99 under 1\.0 min: \d+ \(flow p99 /);
  const p99Answer = smallest('p99', 60_000);
  assert.notEqual(p99Answer, '', 'some gpu count meets the target');
  assert.notEqual(p99Answer, '9', 'and not every one');
  assert.equal(await answer.getAttribute('data-value'), p99Answer);

  // The median instead, under 30 s.
  await page.locator('#plan-priority').selectOption('flow_p50');
  await page.locator('#plan-target').fill('30');
  await page.locator('#plan-target').dispatchEvent('change');
  assert.equal(await page.locator('label[for=plan-target]').textContent(), 'flow p50 under (s)');
  assert.match(await answer.textContent(), /flow p50 under 30\.0 s/);
  assert.equal(await answer.getAttribute('data-value'), smallest('p50', 30_000));
  await shot(page, 'planner-flows');
  checkClean(page);
  await page.context().close();
});
