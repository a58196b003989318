// Browser tests of the live view's job lifecycle panels (DESIGN.md §13): the job page (lookup
// by queue and id, state, attempts, the progress bar, the timeline from /events, Cancel) and
// a queue's schedules (listed, Run now, delete), under a full-access key and a scoped one.
// Against the real server binary, with a config file holding a full-access key (for the
// test's own setup, playing producer and worker over REST) and scoped keys.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { api, startServer } from './server.mjs';
import { checkAccessible, checkClean, launch, open, shot } from './browser.mjs';

const ADMIN = 'jobs-admin-key';
const SCOPED = 'jobs-watcher-key';
const KV_ONLY = 'jobs-kv-key';
const CONFIG = `server:
  api_keys:
    - ${ADMIN}
    - { name: watcher, key: ${SCOPED}, permissions: [ "queue:jobs-*:read", "queue:jobs-*:consume" ] }
    - { name: kv-reader, key: ${KV_ONLY}, permissions: [ "kv:*:read" ] }
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

async function until(check, what, ms = 15_000) {
  const end = Date.now() + ms;
  for (;;) {
    if (await check()) return;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The number shown in the queue table for `queue`'s column `key`. */
async function shown(page, queue, key) {
  const text = await page.locator(`#queue-rows tr[data-queue="${queue}"] td[data-key=${key}]`).textContent({ timeout: 10_000 });
  return Number(text.replace(/,/g, ''));
}

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

const barValue = (page) => page.locator('#job-progress-bar').evaluate((el) => el.value);

test('job page: state, progress bar, timeline, and cancel settled by the worker\'s ack', async () => {
  const q = 'jobs-video';
  await admin('POST', `/queue/${q}`, {});
  const { message_id: id } = await admin('POST', `/queue/${q}/publish`, { message: { video_id: 'v1' }, priority: 9 });
  const { messages } = await admin('POST', `/queue/${q}/consume`, { timeout: 0 });
  assert.equal(messages[0].message_id, id);
  const lease = messages[0].lease;
  await admin('POST', `/queue/${q}/progress`, { message_id: id, lease, progress: { percent: 40, stage: '1080p' } });

  const page = await open(state.browser, state.server.url, { bypassCSP: true });
  await connect(page, ADMIN);
  await lookUp(page, q, id);
  await page.locator('#job[data-state=in_flight]').waitFor();
  assert.equal(await page.locator('#job-state').textContent(), 'in flight');
  assert.equal(await page.locator('#job-facts [data-key=attempts] dd').textContent(), '1');
  assert.equal(await barValue(page), 40);
  assert.equal(await page.locator('#job-progress-text').textContent(), '40%');
  assert.match(await page.locator('#job-message').textContent(), /"video_id": "v1"/);
  // The job is in the URL, so a link opens its page.
  assert.match(page.url(), new RegExp(`job=${id}`));
  assert.match(page.url(), new RegExp(`job_queue=${q}`));

  // Progress reported now moves the bar (through /events) and shows in the timeline.
  await admin('POST', `/queue/${q}/progress`, { message_id: id, lease, progress: { percent: 70, stage: '720p' } });
  await until(async () => (await barValue(page)) === 70, 'the bar at 70');
  await page.locator('#job-timeline li[data-kind=progress]').first().waitFor();
  assert.match(await page.locator('#job-timeline li[data-kind=progress]').first().textContent(), /"percent":70/);
  await checkAccessible(page, 'the job page');

  // Cancel asks twice; an in-flight job is marked, and Cancel is then disabled.
  assert.equal(await page.locator('#job-cancel').isDisabled(), false);
  await page.locator('#job-cancel').click();
  assert.match(await page.locator('#job-cancel').textContent(), /Confirm/);
  await page.locator('#job-cancel').click();
  await page.locator('#job-status', { hasText: 'Cancel requested' }).waitFor();
  await page.locator('#job-facts [data-key=state]', { hasText: 'cancel requested' }).waitFor();
  assert.equal(await page.locator('#job-cancel').isDisabled(), true);
  assert.equal((await admin('GET', `/queue/${q}/messages/${id}`)).state, 'in_flight');

  // The worker learns of it at its next report, and its ack settles the job as cancelled.
  const p = await admin('POST', `/queue/${q}/progress`, { message_id: id, lease, progress: 80 });
  assert.equal(p.cancelled, true);
  await admin('POST', `/queue/${q}/ack`, { message_id: id, lease });
  await page.locator('#job[data-state=cancelled]').waitFor();
  assert.equal(await page.locator('#job-state').textContent(), 'cancelled');
  assert.notEqual(await page.locator('#job-facts [data-key=finished_at] dd').textContent(), '–');
  await page.locator('#job-timeline li[data-kind=cancelled]').first().waitFor();
  assert.equal(await page.locator('#job-cancel').isDisabled(), true);
  await shot(page, 'live-job');

  // Progress that is not a percentage is shown as JSON; a number 0–100 as a bar.
  const { message_id: id2 } = await admin('POST', `/queue/${q}/publish`, { message: { video_id: 'v2' } });
  const second = (await admin('POST', `/queue/${q}/consume`, { timeout: 0 })).messages[0];
  assert.equal(second.message_id, id2);
  await admin('POST', `/queue/${q}/progress`, { message_id: id2, lease: second.lease, progress: { stage: 'upload' } });
  await lookUp(page, q, id2);
  await page.locator('#job-progress-json', { hasText: 'upload' }).waitFor();
  assert.equal(await page.locator('#job-progress-bar').count(), 0);
  await admin('POST', `/queue/${q}/progress`, { message_id: id2, lease: second.lease, progress: 55 });
  await until(async () => (await page.locator('#job-progress-bar').count()) === 1 && (await barValue(page)) === 55, 'the bar at 55');
  // Acked with a result: completed, the result shown, Cancel disabled.
  await admin('POST', `/queue/${q}/ack`, { message_id: id2, lease: second.lease, result: { url: 's3://videos/v2.mp4' } });
  await page.locator('#job[data-state=completed]').waitFor();
  assert.match(await page.locator('#job-result').textContent(), /s3:\/\/videos\/v2\.mp4/);
  assert.equal(await page.locator('#job-cancel').isDisabled(), true);
  // A message id in the event stream opens its job.
  await page.locator(`#event-list li button`, { hasText: id }).first().click();
  await page.locator('#job[data-state=cancelled]').waitFor();
  assert.equal(await page.locator('#job-id').inputValue(), id);
  checkClean(page);
  await page.context().close();
});

test('schedules: listed per queue, Run now publishes a job, delete removes one', async () => {
  const q = 'jobs-reports';
  await admin('POST', `/queue/${q}`, {});
  await admin('PUT', `/queue/${q}/schedules/nightly`, { cron: '0 3 * * *', message: { report: 'daily' }, priority: 7 });
  await admin('PUT', `/queue/${q}/schedules/cleanup`, { every_secs: 3600, message: { task: 'cleanup' } });

  const page = await open(state.browser, state.server.url, { bypassCSP: true });
  await connect(page, ADMIN);
  await page.locator(`#queue-rows tr[data-queue="${q}"] button`).click();
  const nightly = page.locator('#schedule-rows tr[data-id=nightly]');
  await nightly.waitFor();
  await page.locator('#schedule-rows tr[data-id=cleanup]').waitFor();
  assert.equal(await nightly.locator('td[data-key=every]').textContent(), '0 3 * * *');
  assert.equal(await nightly.locator('td[data-key=runs]').textContent(), '0');
  assert.equal(await nightly.locator('td[data-key=last_run]').textContent(), '–');
  assert.match(await nightly.locator('td[data-key=next_run]').textContent(), /\(in /);
  assert.equal(await page.locator('#schedule-rows tr[data-id=cleanup] td[data-key=every]').textContent(), '1.0 h');
  await checkAccessible(page, 'the schedules list');

  // Run now publishes one job: the queue's published count rises on screen and in the stats.
  const before = await shown(page, q, 'published');
  await nightly.getByRole('button', { name: 'Run now: nightly' }).click();
  await page.locator('#schedule-ran').waitFor();
  await until(async () => (await shown(page, q, 'published')) === before + 1, 'published +1 on screen');
  assert.equal((await admin('GET', `/queue/${q}/stats`)).published_total, before + 1);
  await until(async () => (await nightly.locator('td[data-key=runs]').textContent()) === '1', 'runs 1');
  assert.notEqual(await nightly.locator('td[data-key=last_run]').textContent(), '–');
  // The published job opens on the job page.
  const ran = await page.locator('#schedule-ran').textContent();
  await page.locator('#schedule-ran').click();
  await page.locator('#job[data-state=ready]').waitFor();
  assert.equal(await page.locator('#job-id').inputValue(), ran);
  assert.match(await page.locator('#job-message').textContent(), /"report": "daily"/);
  // At phone width the job page and the schedules list fit without sideways scrolling.
  await page.setViewportSize({ width: 390, height: 844 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 1, `the live view overflows by ${overflow}px`);
  await page.setViewportSize({ width: 1280, height: 900 });

  // Delete asks twice, then the row is gone (and the server has only the other schedule).
  await nightly.getByRole('button', { name: 'Delete: nightly' }).click();
  await nightly.getByRole('button', { name: 'Confirm delete: nightly' }).click();
  await page.locator('#schedules-status', { hasText: 'nightly deleted' }).waitFor();
  await until(async () => (await nightly.count()) === 0, 'the row removed');
  const { schedules } = await admin('GET', `/queue/${q}/schedules`);
  assert.deepEqual(schedules.map((s) => s.id), ['cleanup']);
  await shot(page, 'live-schedules');
  checkClean(page);
  await page.context().close();
});

test('scoped key: the job page shows, Cancel, Run now and delete are disabled', async () => {
  const q = 'jobs-scoped';
  await admin('POST', `/queue/${q}`, {});
  await admin('POST', '/queue/secret', {});
  const { message_id: id } = await admin('POST', `/queue/${q}/publish`, { message: { n: 1 } });
  await admin('POST', `/queue/${q}/consume`, { timeout: 0 });
  await admin('PUT', `/queue/${q}/schedules/hourly`, { every_secs: 3600, message: { n: 2 } });

  const page = await open(state.browser, state.server.url);
  await connect(page, SCOPED);
  await lookUp(page, q, id);
  await page.locator('#job[data-state=in_flight]').waitFor();
  assert.equal(await page.locator('#job-cancel').isDisabled(), true);
  assert.equal(await page.locator('#job-cancel-access').isVisible(), true);
  assert.match(await page.locator('#job-cancel-access').textContent(), new RegExp(`queue:${q}:admin`));
  await page.locator('#job-cancel').click({ force: true });
  await page.locator('#job-cancel').click({ force: true });
  const job = await admin('GET', `/queue/${q}/messages/${id}`);
  assert.equal(job.state, 'in_flight');
  assert.equal(job.cancel_requested ?? false, false, 'nothing was cancelled');

  // A queue the key may not read cannot be looked up.
  await page.locator('#job-queue').fill('secret');
  assert.equal(await page.locator('#job-lookup').isDisabled(), true);
  assert.match(await page.locator('#job-access').textContent(), /queue:secret:read/);

  // The schedules are listed, but cannot be run or deleted.
  await page.locator(`#queue-rows tr[data-queue="${q}"] button`).click();
  const row = page.locator('#schedule-rows tr[data-id=hourly]');
  await row.waitFor();
  for (const name of ['Run now: hourly', 'Delete: hourly']) {
    assert.equal(await row.getByRole('button', { name }).isDisabled(), true, `${name} is disabled`);
    await row.getByRole('button', { name }).click({ force: true });
  }
  assert.match(await page.locator('#schedules-access').textContent(), new RegExp(`queue:${q}:admin`));
  const { schedules } = await admin('GET', `/queue/${q}/schedules`);
  assert.equal(schedules.length, 1);
  assert.equal(schedules[0].runs, 0);
  await shot(page, 'live-job-scoped');
  // No request was refused: a 403 would be a console error.
  checkClean(page);
  await page.context().close();

  // A key that may read no queue gets no job page.
  const other = await open(state.browser, state.server.url);
  await connect(other, KV_ONLY);
  assert.equal(await other.locator('#job').isHidden(), true);
  checkClean(other);
  await other.context().close();
});
