// Browser tests of flow control in the live dashboard: pausing and resuming a queue from the
// page (checked through the stats route), in flight against `max_in_flight`, held-back
// messages, a rate limit's countdown, the largest groups with their counts, and a read-only
// key that gets no Pause button. Against the real server binary, with a config file holding a
// full-access key and a key that may only read queues.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { api, startServer } from './server.mjs';
import { checkAccessible, checkClean, launch, open, shot } from './browser.mjs';

const ADMIN = 'flow-admin-key';
const VIEWER = 'flow-viewer-key';
const CONFIG = `server:
  api_keys:
    - ${ADMIN}
    - { name: viewer, key: ${VIEWER}, permissions: [ "queue:*:read" ] }
`;

const state = {};
before(async () => {
  state.server = await startServer({ config: CONFIG });
  state.browser = await launch();
});
after(async () => {
  await state.browser?.close();
  await state.server?.stop();
});

const call = (method, path, body) => api(state.server.url, ADMIN, method, path, body);

async function until(check, what, ms = 15_000) {
  const end = Date.now() + ms;
  for (;;) {
    if (await check()) return;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Opens the live view with `key`, connects, and selects `queue`. */
async function openQueue(key, queue, { bypassCSP = false, width = 1280 } = {}) {
  const page = await open(state.browser, state.server.url, { bypassCSP, width });
  await page.goto(`${state.server.url}/#view=live`);
  await page.locator('#live-key').fill(key);
  await page.locator('#live-connect').click();
  await page.locator('#view-live[data-state=connected]').waitFor();
  await page.locator('#live-stream', { hasText: 'live' }).waitFor();
  await page.locator(`#queue-rows tr[data-queue="${queue}"] button`).click();
  await page.locator('#queue-flow').waitFor();
  return page;
}

/** The text of the flow panel's fact `key`. */
const fact = (page, key) => page.locator(`#flow-facts [data-key=${key}] dd`).textContent();
/** The queue table's cell `key` of `queue`. */
const cell = (page, queue, key) => page.locator(`#queue-rows tr[data-queue="${queue}"] td[data-key=${key}]`).textContent();
const flag = (page, queue, name) => page.locator(`#queue-rows tr[data-queue="${queue}"] [data-flag=${name}]`);

test('live flow: Pause from the page pauses the queue on the server and shows the badge; Resume clears it', async () => {
  const q = 'flow-pause';
  await call('POST', `/queue/${q}`, {});
  for (let i = 0; i < 2; i++) await call('POST', `/queue/${q}/publish`, { message: { n: i } });
  const page = await openQueue(ADMIN, q);
  assert.equal(await page.locator('#flow-state').textContent(), 'running');
  assert.equal(await page.locator('#queue-resume').isHidden(), true);
  assert.equal(await page.locator('#flow-access').isHidden(), true);
  assert.equal(await flag(page, q, 'paused').count(), 0);
  assert.equal(await fact(page, 'held_back'), '0');

  await page.locator('#queue-pause').click();
  await until(async () => (await call('GET', `/queue/${q}/stats`)).paused === true, 'the server to say paused');
  await page.locator('#flow-state', { hasText: 'paused' }).waitFor();
  await flag(page, q, 'paused').waitFor();
  assert.equal(await page.locator('#queue-pause').isHidden(), true);
  assert.equal(await page.locator('#queue-resume').isVisible(), true);
  // Paused, both ready messages are held back, and a consumer gets nothing.
  await until(async () => (await fact(page, 'held_back')) === '2', 'held back 2 on screen');
  assert.deepEqual((await call('POST', `/queue/${q}/consume`, { timeout: 0 })).messages, []);
  await shot(page, 'live-flow-paused');

  await page.locator('#queue-resume').click();
  await until(async () => (await call('GET', `/queue/${q}/stats`)).paused === false, 'the server to say running');
  await page.locator('#flow-state', { hasText: 'running' }).waitFor();
  await until(async () => (await flag(page, q, 'paused').count()) === 0, 'the paused badge to go');
  await until(async () => (await fact(page, 'held_back')) === '0', 'held back 0 on screen');
  assert.equal(await page.locator('#queue-pause').isVisible(), true);
  assert.equal((await call('POST', `/queue/${q}/consume`, { timeout: 0 })).messages.length, 1);
  checkClean(page);
  await page.context().close();
});

test('live flow: a queue with max_in_flight shows in flight against its cap, held back and a rate limit', async () => {
  const q = 'flow-capped';
  await call('POST', `/queue/${q}`, { max_in_flight: 3, rate_limit: { max: 100, per_secs: 60 } });
  for (let i = 0; i < 5; i++) await call('POST', `/queue/${q}/publish`, { message: { n: i } });
  const got = await call('POST', `/queue/${q}/consume`, { timeout: 0, max_messages: 10 });
  assert.equal(got.messages.length, 3, 'the cap lets three out');
  const page = await openQueue(ADMIN, q);
  await until(async () => (await cell(page, q, 'in_flight')) === '3 / 3', 'in flight 3 / 3 in the table');
  assert.equal(await fact(page, 'in_flight'), '3 / 3 in flight');
  assert.equal(await fact(page, 'held_back'), '2');
  assert.match(await fact(page, 'limits'), /max_in_flight 3 · rate_limit 100 per 60 s/);
  assert.equal(await fact(page, 'rate_limited'), 'no');

  // A worker's rate limit: the flag shows and the panel counts down to it.
  await call('POST', `/queue/${q}/rate_limit`, { for_secs: 600 });
  await flag(page, q, 'rate_limited').waitFor();
  await until(async () => /^deliveries resume in (9|10) min \d\d s \(at .+\)$/.test(await fact(page, 'rate_limited')), 'the countdown');
  const first = await fact(page, 'rate_limited');
  await until(async () => (await fact(page, 'rate_limited')) !== first, 'the countdown to move');

  // An ack makes room: two in flight of three.
  await call('POST', `/queue/${q}/ack`, { message_id: got.messages[0].message_id });
  await until(async () => (await cell(page, q, 'in_flight')) === '2 / 3', 'in flight 2 / 3 in the table');
  await until(async () => (await fact(page, 'in_flight')) === '2 / 3 in flight', 'in flight 2 / 3 in the panel');
  // A queue without a cap shows the plain count.
  await call('POST', '/queue/flow-uncapped', {});
  await until(async () => (await page.locator('#queue-rows tr[data-queue="flow-uncapped"]').count()) === 1, 'the other queue listed', 10_000);
  assert.equal(await cell(page, 'flow-uncapped', 'in_flight'), '0');
  checkClean(page);
  await page.context().close();
});

test('live flow: a grouped queue lists its five largest groups with their counts', async () => {
  const q = 'flow-groups';
  await call('POST', `/queue/${q}`, { group_concurrency: 1 });
  // alice 4, carol 3, bob 2, and four groups of one: seven groups.
  const groups = ['alice', 'alice', 'alice', 'alice', 'bob', 'bob', 'carol', 'carol', 'carol', 'dave', 'erin', 'frank', 'grace'];
  for (const g of groups) await call('POST', `/queue/${q}/publish`, { message: { user: g }, group: g });
  // One of each group goes out (group_concurrency 1); the rest of each group is held back.
  const got = await call('POST', `/queue/${q}/consume`, { timeout: 0, max_messages: 100 });
  assert.equal(got.messages.length, 7);
  const expected = await call('GET', `/queue/${q}/groups?limit=5`);

  const page = await openQueue(ADMIN, q, { bypassCSP: true });
  await page.locator('#flow-groups').waitFor();
  const rows = page.locator('#flow-group-rows tr');
  await until(async () => (await rows.count()) === 5, 'five groups listed');
  const shownRows = await rows.evaluateAll((trs) => trs.map((tr) => [...tr.children].map((c) => c.textContent)));
  assert.deepEqual(shownRows.slice(0, 3), [
    ['alice', '3', '1', '0'],
    ['carol', '2', '1', '0'],
    ['bob', '1', '1', '0'],
  ]);
  assert.deepEqual(
    shownRows,
    expected.groups.map((g) => [g.group, String(g.ready), String(g.in_flight), String(g.delayed)]),
  );
  assert.match(await page.locator('#flow-groups-note').textContent(), /The 5 largest of 7 groups/);
  assert.equal(await fact(page, 'groups'), '7');
  assert.equal(await fact(page, 'held_back'), '6');

  // Acking alice's message lets her next one out: the listing follows.
  const alice = got.messages.find((m) => m.group === 'alice');
  await call('POST', `/queue/${q}/ack`, { message_id: alice.message_id });
  await until(
    async () => (await page.locator('#flow-group-rows tr[data-group=alice] td').allTextContents()).join(',') === '3,0,0',
    'alice with 3 ready and none in flight',
  );
  await shot(page, 'live-flow-groups');
  await checkAccessible(page, 'the flow panel with groups');
  checkClean(page);
  await page.context().close();
});

test('live flow: a read-only key sees the state and the groups but no Pause or Resume (at phone width)', async () => {
  const q = 'flow-viewed';
  await call('POST', `/queue/${q}`, {});
  await call('POST', `/queue/${q}/publish`, { message: 1, group: 'tenant-1' });
  await call('POST', `/queue/${q}/pause`);
  const page = await openQueue(VIEWER, q, { width: 390 });
  assert.equal(await page.locator('#live-who-name').textContent(), 'viewer');
  await page.locator('#flow-state', { hasText: 'paused' }).waitFor();
  await flag(page, q, 'paused').waitFor();
  assert.equal(await page.locator('#queue-pause').isHidden(), true);
  assert.equal(await page.locator('#queue-resume').isHidden(), true);
  assert.equal(await page.locator('#flow-access').isVisible(), true);
  assert.match(await page.locator('#flow-access').textContent(), new RegExp(`queue:${q}:admin`));
  await page.locator('#flow-group-rows tr[data-group="tenant-1"]').waitFor();
  assert.deepEqual(await page.locator('#flow-group-rows tr[data-group="tenant-1"] td').allTextContents(), ['1', '0', '0']);
  assert.equal((await call('GET', `/queue/${q}/stats`)).paused, true, 'still paused');
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 1, `the live view overflows by ${overflow}px`);
  await page.locator('#queue-flow').scrollIntoViewIfNeeded();
  await shot(page, 'live-flow-phone', false);
  // No request was refused: a 403 would be a console error.
  checkClean(page);
  await page.context().close();
});
