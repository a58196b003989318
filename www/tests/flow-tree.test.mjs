// Browser tests of the live job page's flow tree (DESIGN.md §14, live-flow-tree.ts): a job of
// a flow shows the whole flow from GET /flows/{flow_id} with each job's queue, short id, state
// and result, the shown job marked, and each job a link to its own page. Against the real
// server binary with a full-access key (the test's own setup: adding flows and playing the
// workers over REST) and a key that may read only some of a flow's queues.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { api, startServer } from './server.mjs';
import { checkAccessible, checkClean, launch, open, shot } from './browser.mjs';

const ADMIN = 'flows-admin-key';
const SCOPED = 'flows-open-key';
const CONFIG = `server:
  api_keys:
    - ${ADMIN}
    - { name: open-reader, key: ${SCOPED}, permissions: [ "queue:ft-open-*:read" ] }
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

const admin = (method, path, body) => api(state.server.url, ADMIN, method, path, body);

async function connect(page, key) {
  await page.goto(`${state.server.url}/#view=live`);
  await page.locator('#live-key').fill(key);
  await page.locator('#live-connect').click();
  await page.locator('#view-live[data-state=connected]').waitFor();
  await page.locator('#live-stream', { hasText: 'live' }).waitFor();
}

async function lookUp(page, queue, id) {
  await page.locator('#job-queue').fill(queue);
  await page.locator('#job-id').fill(id);
  await page.locator('#job-lookup').click();
  await page.locator('#job-detail').waitFor();
}

/** The tree's entry of job `id` (its own row, state and outcome, not its children's). */
const node = (page, id) => page.locator(`#job-flow-tree li[data-id="${id}"]`);
const badge = (page, id) => node(page, id).locator(':scope > .ft-row .ft-state');
const outcome = (page, id) => node(page, id).locator(':scope > .ft-outcome');
const link = (page, id) => node(page, id).locator(':scope > .ft-row > a');

/** Takes the one ready job of `queue` and acks it with `result`; returns its id. */
async function work(queue, result) {
  const { messages } = await admin('POST', `/queue/${queue}/consume`, { timeout: 0, ack_deadline: 300 });
  assert.equal(messages.length, 1, `one job ready on ${queue}`);
  await admin('POST', `/queue/${queue}/ack`, { message_id: messages[0].message_id, lease: messages[0].lease, result });
  return messages[0].message_id;
}

test('flow tree: the video pipeline, its states and results, and links between its jobs', async () => {
  const renditions = ['480p', '720p', '1080p'];
  const created = await admin('POST', '/flows', {
    queue: 'ft-notify',
    message: { video: 7, step: 'notify' },
    children: [
      {
        queue: 'ft-package',
        message: { video: 7, step: 'package' },
        children: renditions.map((r) => ({ queue: `ft-transcode-${r}`, message: { video: 7, rendition: r } })),
      },
    ],
  });
  const notify = created.message_id;
  const pkg = created.children[0].message_id;
  const transcodes = created.children[0].children.map((c) => c.message_id);
  assert.equal(transcodes.length, 3);
  const lookup = await admin('GET', `/queue/ft-transcode-480p/messages/${transcodes[0]}`);
  assert.equal(lookup.flow_id, created.flow_id);
  assert.equal(lookup.parent_id, pkg);

  const page = await open(state.browser, state.server.url, { bypassCSP: true });
  await connect(page, ADMIN);
  await lookUp(page, 'ft-transcode-480p', transcodes[0]);
  await page.locator('#job-flow[data-count="5"]').waitFor();
  assert.equal(await page.locator('#job-flow-tree li.ft-node').count(), 5);
  assert.equal(await page.locator('#job-flow-id').textContent(), created.flow_id);
  // Nested as the flow is: notify > package > the three transcodes.
  assert.equal(await page.locator(`#job-flow-tree > ul > li[data-id="${notify}"] > ul > li[data-id="${pkg}"] > ul > li`).count(), 3);
  for (const id of [notify, pkg]) {
    assert.equal(await node(page, id).getAttribute('data-state'), 'waiting_children');
    assert.equal(await badge(page, id).textContent(), 'waiting children');
    assert.equal(await badge(page, id).getAttribute('data-kind'), 'waiting');
  }
  for (const [i, id] of transcodes.entries()) {
    assert.equal(await node(page, id).getAttribute('data-state'), 'ready');
    assert.equal(await node(page, id).getAttribute('data-queue'), `ft-transcode-${renditions[i]}`);
    assert.equal(await badge(page, id).textContent(), 'ready');
    // Queue and short id, the whole id in the title.
    assert.equal(await link(page, id).textContent(), `ft-transcode-${renditions[i]} ${id.slice(0, 8)}`);
    assert.match(await link(page, id).getAttribute('title'), new RegExp(id));
  }
  // The job shown is marked, and only it.
  assert.equal(await page.locator('#job-flow-tree [aria-current=page]').count(), 1);
  assert.equal(await link(page, transcodes[0]).getAttribute('aria-current'), 'page');
  assert.equal(await node(page, transcodes[0]).getAttribute('data-current'), 'true');
  // Each job links to its page by the URL-hash convention.
  const href = await link(page, pkg).getAttribute('href');
  const params = new URLSearchParams(href.replace(/^#/, ''));
  assert.equal(params.get('view'), 'live');
  assert.equal(params.get('job_queue'), 'ft-package');
  assert.equal(params.get('job'), pkg);
  // The lists are labelled (a nested list per parent).
  assert.match(await page.locator('#job-flow-tree > ul').getAttribute('aria-label'), /Jobs of flow/);
  await checkAccessible(page, 'the flow tree');
  await shot(page, 'live-flow-tree-waiting');

  // The workers finish the renditions with results: after the page's refresh the children
  // show completed with their results, and package is ready.
  for (const r of renditions) await work(`ft-transcode-${r}`, { url: `s3://videos/7/${r}.mp4` });
  await page.locator('#job-refresh').click();
  await page.locator(`#job-flow-tree li[data-id="${pkg}"][data-state=ready]`).waitFor();
  for (const [i, id] of transcodes.entries()) {
    await page.locator(`#job-flow-tree li[data-id="${id}"][data-state=completed]`).waitFor();
    assert.equal(await badge(page, id).getAttribute('data-kind'), 'done');
    assert.match(await outcome(page, id).textContent(), new RegExp(`s3://videos/7/${renditions[i]}\\.mp4`));
  }
  assert.equal(await badge(page, pkg).textContent(), 'ready');
  assert.equal(await outcome(page, pkg).count(), 0, 'an unfinished job has no outcome');
  assert.equal(await node(page, notify).getAttribute('data-state'), 'waiting_children');
  await page.locator('#job[data-state=completed]').waitFor();

  // Package's link opens package on the job page, and the tree marks it.
  await link(page, pkg).click();
  await page.locator('#job-title', { hasText: `Job ${pkg} of ft-package` }).waitFor();
  await page.locator('#job[data-state=ready]').waitFor();
  assert.equal(await page.locator('#job-id').inputValue(), pkg);
  assert.equal(await page.locator('#job-queue').inputValue(), 'ft-package');
  assert.match(page.url(), new RegExp(`job=${pkg}`));
  assert.match(page.url(), /job_queue=ft-package/);
  await page.locator(`#job-flow-tree li[data-id="${pkg}"][data-current=true]`).waitFor();
  assert.equal(await page.locator('#job-flow-tree [aria-current=page]').count(), 1);

  // Keyboard: the links are reachable, and Enter on one opens that job.
  await link(page, notify).focus();
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement?.closest('li')?.dataset.id), pkg);
  await link(page, transcodes[2]).focus();
  await page.keyboard.press('Enter');
  await page.locator('#job-title', { hasText: `Job ${transcodes[2]} of ft-transcode-1080p` }).waitFor();
  await page.locator(`#job-flow-tree li[data-id="${transcodes[2]}"][data-current=true]`).waitFor();
  assert.equal(await page.evaluate(() => document.activeElement?.closest('li')?.dataset.id), transcodes[2], 'the focus stays on the link followed');

  // The package worker's ack, seen on /events, moves the tree on: notify becomes ready.
  const { messages } = await admin('POST', '/queue/ft-package/consume', { timeout: 0 });
  assert.equal(messages[0].children.length, 3);
  await admin('POST', '/queue/ft-package/ack', { message_id: pkg, lease: messages[0].lease, result: { manifest: 's3://videos/7/master.m3u8' } });
  await page.locator(`#job-flow-tree li[data-id="${notify}"][data-state=ready]`).waitFor();
  assert.match(await outcome(page, pkg).textContent(), /master\.m3u8/);

  // At phone width the tree fits without sideways scrolling.
  await page.setViewportSize({ width: 390, height: 844 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 1, `the live view overflows by ${overflow}px`);
  await shot(page, 'live-flow-tree-phone');
  checkClean(page);
  await page.context().close();
});

test('flow tree: a failed child dead-letters its parent and cancels the sibling', async () => {
  const created = await admin('POST', '/flows', {
    queue: 'ft-fail-parent',
    message: { step: 'package' },
    on_child_failure: 'fail',
    children: [
      { queue: 'ft-fail-a', message: { rendition: '480p' } },
      { queue: 'ft-fail-b', message: { rendition: '720p' } },
    ],
  });
  const parent = created.message_id;
  const [a, b] = created.children.map((c) => c.message_id);
  const { messages } = await admin('POST', '/queue/ft-fail-a/consume', { timeout: 0 });
  assert.equal(messages[0].message_id, a);
  await admin('POST', '/queue/ft-fail-a/nack', { message_id: a, lease: messages[0].lease, requeue: false, error: 'codec missing' });

  const page = await open(state.browser, state.server.url, { bypassCSP: true });
  await connect(page, ADMIN);
  await lookUp(page, 'ft-fail-b', b);
  await page.locator('#job-flow[data-count="3"]').waitFor();
  assert.equal(await page.locator('#job-flow').getAttribute('data-state'), 'dead_lettered');
  assert.equal(await node(page, parent).getAttribute('data-state'), 'dead_lettered');
  assert.equal(await badge(page, parent).getAttribute('data-kind'), 'failed');
  assert.match(await outcome(page, parent).textContent(), /reason: child_failed/);
  assert.equal(await node(page, a).getAttribute('data-state'), 'dead_lettered');
  assert.match(await outcome(page, a).textContent(), /reason: rejected/);
  assert.equal(await node(page, b).getAttribute('data-state'), 'cancelled');
  assert.equal(await badge(page, b).getAttribute('data-kind'), 'cancelled');
  assert.equal(await badge(page, b).textContent(), 'cancelled');
  assert.equal(await node(page, b).getAttribute('data-current'), 'true');
  // The badges of the kinds look different (not told apart by their text alone).
  const look = (id) => badge(page, id).evaluate((el) => { const s = getComputedStyle(el); return `${s.color} ${s.backgroundColor} ${s.borderStyle}`; });
  assert.notEqual(await look(parent), await look(b));
  await page.locator('#job[data-state=cancelled]').waitFor();
  await checkAccessible(page, 'a failed flow');
  await shot(page, 'live-flow-tree-failed');
  checkClean(page);
  await page.context().close();
});

test('flow tree: a job outside any flow has none; a flow not kept or not readable is explained', async () => {
  // A plain job: no tree.
  const { message_id: plain } = await admin('POST', '/queue/ft-open-plain/publish', { message: { n: 1 } });
  const created = await admin('POST', '/flows', {
    queue: 'ft-secret-root',
    message: { step: 'notify' },
    children: [{ queue: 'ft-open-child', message: { step: 'work' } }],
  });
  const child = created.children[0].message_id;

  const page = await open(state.browser, state.server.url, { bypassCSP: true });
  await connect(page, ADMIN);
  await lookUp(page, 'ft-open-plain', plain);
  await page.locator('#job[data-state=ready]').waitFor();
  assert.equal(await page.locator('#job-flow').isHidden(), true);

  // The server's answer for a flow it no longer keeps (404 flow_not_found), given to the page
  // for this flow: the page says so.
  const res = await fetch(`${state.server.url}/flows/00000000-0000-4000-8000-000000000000`, { headers: { authorization: `Bearer ${ADMIN}` } });
  assert.equal(res.status, 404);
  const gone = await res.text();
  assert.equal(JSON.parse(gone).code, 'flow_not_found');
  page.problems.allow.push(/404/);
  await page.route(`**/flows/${created.flow_id}`, (route) => route.fulfill({ status: 404, contentType: 'application/json', body: gone }));
  await lookUp(page, 'ft-open-child', child);
  await page.locator('#job-flow[data-state=missing]').waitFor();
  assert.match(await page.locator('#job-flow-status').textContent(), /no longer knows this flow/);
  assert.equal(await page.locator('#job-flow-tree li').count(), 0);
  checkClean(page);
  await page.context().close();

  // A key that may read the child's queue but not the root's: the job shows, and the tree
  // names the permission the server asked for.
  const scoped = await open(state.browser, state.server.url);
  scoped.problems.allow.push(/403/);
  await connect(scoped, SCOPED);
  await lookUp(scoped, 'ft-open-child', child);
  await scoped.locator('#job[data-state=ready]').waitFor();
  await scoped.locator('#job-flow[data-state=forbidden]').waitFor();
  assert.match(await scoped.locator('#job-flow-status').textContent(), /needs the permission queue:ft-secret-root:read/);
  assert.match(await scoped.locator('#job-flow-summary').textContent(), new RegExp(created.flow_id));
  assert.equal(await scoped.locator('#job-flow-tree li').count(), 0);
  checkClean(scoped);
  await scoped.context().close();
});
