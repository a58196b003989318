// Browser tests of flow control in the web app's simulator and planner, against the real server
// binary (the page, its scripts and the engine's WebAssembly come from its embedded www/dist):
// the form's flow settings and a producer's message groups reach the scenario, the report shows
// waits per group class, the planner sweeps max_in_flight, group_concurrency and rate_limit, and
// the noisy-neighbour comparison (fair groups off and on) is one click. Every figure the page
// shows is checked against the same run in Node.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { inflateRawSync } from 'node:zlib';
import { Simulation } from 'synap-wasm';
import { serverAndBrowser } from './server.mjs';
import { checkAccessible, checkClean, launch, open, shot } from './browser.mjs';

const env = serverAndBrowser('browser-flow-key', launch);

/** The scenario the page keeps in its URL (`scenario=`: `z` + deflated JSON, or `j` + JSON). */
function scenarioFromUrl(url) {
  const text = new URLSearchParams(new URL(url).hash.slice(1)).get('scenario');
  assert.ok(text, 'the edited scenario is in the URL');
  const bytes = Buffer.from(text.slice(1), 'base64url');
  return JSON.parse((text[0] === 'z' ? inflateRawSync(bytes) : bytes).toString('utf8'));
}

/** Milliseconds of a duration as the page prints it (`850 ms`, `12.3 s`, `4.5 min`, `2.0 h`). */
function parseMs(text) {
  const m = /^([\d.,]+) (ms|s|min|h)$/.exec(text.trim());
  assert.ok(m, `a duration: ${JSON.stringify(text)}`);
  return Number(m[1].replace(/,/g, '')) * { ms: 1, s: 1000, min: 60_000, h: 3_600_000 }[m[2]];
}

/** The page's `fmtMs`, to compare what it prints with Node's figures. */
function fmtMs(ms) {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 3_600_000) return `${(ms / 60_000).toFixed(1)} min`;
  return `${(ms / 3_600_000).toFixed(1)} h`;
}

async function setField(page, path, value) {
  const input = page.locator(`#view-simulator input[data-path="${path}"]`).first();
  await input.fill(String(value));
  await input.dispatchEvent('change');
}

/** The summary table (not the per-class or worker tables beside it). */
const SUMMARY = '#view-simulator table.summary:not(.group-classes):not(.workers)';

const done = (page) => page.locator('#view-simulator .results[data-state=done]').waitFor({ timeout: 90_000 });

test("the form's flow settings and a producer's groups reach the scenario and the run", async () => {
  const page = await open(env.browser, env.base);
  await page.goto(`${env.base}/#preset=steady`);
  await page.waitForLoadState('networkidle');
  await page.waitForFunction(() => document.querySelector('#sim-seed')?.value !== '');
  assert.equal(await page.locator('#sim-fair').isVisible(), false, 'no groups, no fair-groups comparison');

  await setField(page, 'queue_config.max_in_flight', 1);
  await setField(page, 'queue_config.group_concurrency', 2);
  await page.locator('#view-simulator input[data-path="queue_config.fair_groups"]').first().check();
  await setField(page, 'queue_config.rate_limit.max', 2);
  await setField(page, 'queue_config.rate_limit.per_ms', 1.5); // shown in seconds
  await setField(page, 'queue_config.group_rate_limit.max', 1); // window left blank: 1 s
  await setField(page, 'queue_config.max_snoozes', 7);
  await setField(page, 'producers.0.groups.count', 10);
  await setField(page, 'producers.0.groups.heavy_share', 0.25);
  // The URL follows the form shortly after the last change (the heavy share).
  let scenario;
  for (let i = 0; i < 100 && scenario?.producers?.[0]?.groups?.heavy_share !== 0.25; i++) {
    await page.waitForTimeout(100);
    if (page.url().includes('scenario=')) scenario = scenarioFromUrl(page.url());
  }
  assert.ok(scenario?.queue_config, 'the URL holds the edited scenario');
  const qc = scenario.queue_config;
  assert.equal(qc.max_in_flight, 1);
  assert.equal(qc.group_concurrency, 2);
  assert.equal(qc.fair_groups, true);
  assert.equal(qc.ordered_groups, false);
  assert.deepEqual(qc.rate_limit, { max: 2, per_ms: 1500 });
  assert.deepEqual(qc.group_rate_limit, { max: 1, per_ms: 1000 });
  assert.equal(qc.max_snoozes, 7);
  assert.deepEqual(scenario.producers[0].groups, { count: 10, heavy_share: 0.25 });
  const json = JSON.parse(await page.locator('#view-simulator textarea.json').first().inputValue());
  assert.deepEqual(json, scenario, 'the JSON view holds the same scenario');
  assert.equal(await page.locator('#sim-fair').isVisible(), true, 'groups offer the fair-groups comparison');

  // The run is the engine's run of exactly that scenario.
  await page.locator('#sim-run').click();
  await done(page);
  const native = new Simulation(scenario).run().summary;
  assert.equal(await page.locator(`${SUMMARY} td[data-key=run_hash]`).textContent(), native.run_hash);
  const rows = page.locator('#view-simulator table.group-classes tbody tr');
  assert.deepEqual(await rows.evaluateAll((trs) => trs.map((tr) => tr.dataset.class)), native.by_group_class.map((c) => c.class));

  // A blank limit is no limit (null), a cleared share makes the groups a plain count again.
  await setField(page, 'queue_config.max_in_flight', '');
  await setField(page, 'queue_config.rate_limit.max', '');
  await setField(page, 'producers.0.groups.heavy_share', 0);
  const after = JSON.parse(await page.locator('#view-simulator textarea.json').first().inputValue());
  assert.equal(after.queue_config.max_in_flight, null);
  assert.equal(after.queue_config.rate_limit, null);
  assert.equal(after.producers[0].groups, 10);
  checkClean(page);
  await page.context().close();
});

test('a run with message groups shows wait p50 and p99 per group class', async () => {
  const page = await open(env.browser, env.base, { bypassCSP: true });
  await page.goto(`${env.base}/#preset=noisy-neighbour&run=1`);
  await done(page);
  const native = Simulation.fromPreset('noisy-neighbour').run();
  const classes = native.summary.by_group_class;
  assert.deepEqual(classes.map((c) => c.class), ['heavy', 'light']);
  for (const c of classes) {
    const row = page.locator(`#view-simulator table.group-classes tr[data-class=${c.class}]`);
    assert.equal(await row.locator('td[data-col=groups]').textContent(), c.groups.toLocaleString('en-US'));
    assert.equal(await row.locator('td[data-col=published]').textContent(), c.published.toLocaleString('en-US'));
    for (const q of ['p50', 'p99']) {
      const cell = row.locator(`td[data-col=wait_${q}]`);
      assert.equal(Number(await cell.getAttribute('data-value')), c.wait_ms[q]);
      assert.equal(await cell.textContent(), fmtMs(c.wait_ms[q]));
      // The summary table has the same figure.
      const s = page.locator(`${SUMMARY} td[data-key=${c.class}_wait_${q}]`);
      assert.equal(Number(await s.getAttribute('data-value')), c.wait_ms[q]);
    }
  }
  const chart = page.locator('#view-simulator figure[data-chart=group_wait] .chart-canvas');
  assert.equal(Number(await chart.getAttribute('data-points')), native.series.length);
  assert.match(await chart.getAttribute('aria-label'), /light groups p99: last/);
  await shot(page, 'simulator-groups');
  await checkAccessible(page, 'the simulator with group classes and the flow settings');
  checkClean(page);
  await page.context().close();

  // A report without groups has neither the table nor the chart.
  const plain = await open(env.browser, env.base);
  await plain.goto(`${env.base}/#preset=steady&run=1`);
  await done(plain);
  assert.equal(await plain.locator('#view-simulator figure[data-chart=wait]').count(), 1);
  assert.equal(await plain.locator('#view-simulator table.group-classes').count(), 0);
  assert.equal(await plain.locator('#view-simulator figure[data-chart=group_wait]').count(), 0);
  assert.equal(await plain.locator(`${SUMMARY} td[data-key=light_wait_p99]`).count(), 0);
  checkClean(plain);
  await plain.context().close();
});

/** Completed tasks per swept value, as the planner's table shows them. */
async function sweptCompleted(page) {
  return page.locator('table.sweep tbody tr').evaluateAll((trs) =>
    trs.map((tr) => [Number(tr.dataset.value), Number(tr.querySelector('td[data-key=completed]').textContent.replace(/,/g, ''))]),
  );
}

function nativeCompleted(edit, values) {
  return values.map((x) => {
    const s = Simulation.presetScenario('noisy-neighbour');
    edit(s.queue_config, x);
    return [x, new Simulation(s).run().summary.completed];
  });
}

test('the planner sweeps max_in_flight, group_concurrency, rate_limit and fair_groups', async () => {
  const page = await open(env.browser, env.base);
  await page.goto(`${env.base}/#view=planner&preset=noisy-neighbour&param=max_in_flight&from=1&to=4&run=1`);
  const out = page.locator('#plan-results[data-state=done]');
  await out.waitFor({ timeout: 120_000 });
  assert.equal(await out.getAttribute('data-points'), '4');
  assert.deepEqual(await sweptCompleted(page), nativeCompleted((qc, x) => (qc.max_in_flight = x), [1, 2, 3, 4]));
  assert.equal(await page.locator('figure[data-chart=sweep-class-wait] .chart-canvas').getAttribute('data-points'), '4');
  // The light groups' wait p99 per point, as Node computes it.
  const light = await page.locator('table.sweep tbody td[data-class=light]').evaluateAll((tds) => tds.map((td) => Number(td.dataset.value)));
  const expected = [1, 2, 3, 4].map((x) => {
    const s = Simulation.presetScenario('noisy-neighbour');
    s.queue_config.max_in_flight = x;
    return new Simulation(s).run().summary.by_group_class.find((c) => c.class === 'light').wait_ms.p99;
  });
  assert.deepEqual(light, expected);
  // With a heavy group the target is the light groups' wait.
  assert.equal(await page.locator('#plan-priority').inputValue(), 'light');
  assert.match(await page.locator('#plan-answer').textContent(), /light groups' wait p99 under 10\.0 s/);

  // group_concurrency from the form: whole numbers from 1.
  await page.locator('#plan-param').selectOption('group_concurrency');
  await page.locator('#plan-from').fill('1');
  await page.locator('#plan-to').fill('2');
  await page.locator('#plan-run').click();
  await page.waitForFunction(() => location.hash.includes('param=group_concurrency'));
  await page.locator('#plan-results[data-state=done][data-points="2"]').waitFor({ timeout: 120_000 });
  assert.deepEqual(await sweptCompleted(page), nativeCompleted((qc, x) => (qc.group_concurrency = x), [1, 2]));

  // rate_limit: deliveries per window of the scenario's per_ms, 1 s when it has none.
  await page.locator('#plan-param').selectOption('rate_limit');
  await page.locator('#plan-from').fill('1');
  await page.locator('#plan-to').fill('2');
  await page.locator('#plan-run').click();
  await page.waitForFunction(() => location.hash.includes('param=rate_limit'));
  await page.locator('#plan-results[data-state=done][data-points="2"]').waitFor({ timeout: 120_000 });
  assert.deepEqual(await sweptCompleted(page), nativeCompleted((qc, x) => (qc.rate_limit = { max: x, per_ms: 1000 }), [1, 2]));

  // fair_groups: off and on, side by side.
  await page.locator('#plan-param').selectOption('fair_groups');
  assert.deepEqual([await page.locator('#plan-from').inputValue(), await page.locator('#plan-to').inputValue()], ['0', '1']);
  await page.locator('#plan-run').click();
  await page.waitForFunction(() => location.hash.includes('param=fair_groups'));
  await page.locator('#plan-results[data-state=done][data-points="2"]').waitFor({ timeout: 120_000 });
  assert.deepEqual(await page.locator('table.sweep tbody th').allTextContents(), ['off', 'on']);
  const [off, on] = await page.locator('table.sweep tbody td[data-class=light]').evaluateAll((tds) => tds.map((td) => Number(td.dataset.value)));
  assert.ok(on < off, `fair groups shorten the light groups' wait p99 (${on} ms against ${off} ms)`);

  // 0 is no limit the engine takes: refused before anything runs, naming the parameter.
  await page.locator('#plan-param').selectOption('rate_limit');
  await page.locator('#plan-from').fill('0');
  await page.locator('#plan-run').click();
  await page.locator('#view-planner .status.error').waitFor();
  assert.match(await page.locator('#view-planner .status').textContent(), /rate_limit: 0 is not a whole number ≥ 1/);
  await shot(page, 'planner-flow');
  checkClean(page);
  await page.context().close();
});

test('the noisy neighbour with and without fair groups, side by side in one click', async () => {
  const page = await open(env.browser, env.base);
  await page.goto(`${env.base}/#preset=noisy-neighbour`);
  await page.waitForLoadState('networkidle');
  const button = page.locator('#sim-fair');
  await button.waitFor({ state: 'visible' });
  await button.click();
  const results = page.locator('#view-simulator .results[data-state=done][data-runs="2"]');
  await results.waitFor({ timeout: 90_000 });
  await page.waitForFunction(() => location.hash.includes('compare=fair'));
  const heads = await page.locator(`${SUMMARY} thead th`).allTextContents();
  assert.deepEqual(heads, ['Metric', 'A: fair groups off', 'B: fair groups on', 'B − A']);

  // The light groups' wait p99, A then B, as the page prints them.
  const row = page.locator(`${SUMMARY} tr`, { has: page.locator('td[data-key=light_wait_p99]') });
  const [a, b] = (await row.locator('td[data-key=light_wait_p99]').allTextContents()).map(parseMs);
  assert.ok(b < a, `fair groups shorten the light groups' wait p99 (${b} ms against ${a} ms)`);
  assert.equal(await row.locator('td').last().getAttribute('class'), 'better');
  const [ha, hb] = (await page.locator(`${SUMMARY} td[data-key=heavy_wait_p99]`).allTextContents()).map(parseMs);
  assert.ok(hb > ha, 'the heavy uploader waits longer instead');
  // Each column's per-class table says the same.
  const light = page.locator('#view-simulator .run-column table.group-classes tr[data-class=light] td[data-col=wait_p99]');
  assert.deepEqual((await light.allTextContents()).map(parseMs), [a, b]);

  // A is the preset, B the preset with fair groups: the runs Node gets.
  const scenario = Simulation.presetScenario('noisy-neighbour');
  const [hashA, hashB] = await page.locator(`${SUMMARY} td[data-key=run_hash]`).allTextContents();
  assert.equal(hashA, new Simulation(scenario).run().summary.run_hash);
  scenario.queue_config.fair_groups = true;
  const fair = new Simulation(scenario).run().summary;
  assert.equal(hashB, fair.run_hash);
  assert.equal(b, parseMs(fmtMs(fair.by_group_class.find((c) => c.class === 'light').wait_ms.p99)));
  await shot(page, 'noisy-neighbour');
  checkClean(page);
  await page.context().close();

  // The link opens the same comparison.
  const other = await open(env.browser, env.base);
  await other.goto(`${env.base}/#preset=noisy-neighbour&compare=fair&run=1`);
  await other.locator('#view-simulator .results[data-state=done][data-runs="2"]').waitFor({ timeout: 90_000 });
  assert.deepEqual(await other.locator(`${SUMMARY} td[data-key=run_hash]`).allTextContents(), [hashA, hashB]);
  checkClean(other);
  await other.context().close();
});
