// Browser tests of the live dashboard under a scoped API key: the page reads `GET /auth/me`,
// names the caller, and disables or hides what its permissions do not allow (DLQ retry and
// purge and queue purge need `queue:<name>:admin`, publish `queue:<name>:publish`, KV lookup
// `kv:<key>:read`), while the allowed controls work. Against the real server binary, with a
// config file holding a full-access key (for the test's own setup) and the scoped one.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { api, startServer } from './server.mjs';
import { checkClean, launch, open, shot } from './browser.mjs';

const ADMIN = 'perm-admin-key';
const SCOPED = 'perm-dashboard-key';
const CONFIG = `server:
  api_keys:
    - ${ADMIN}
    - { name: dashboard, key: ${SCOPED}, permissions: [ "queue:jobs-*:read", "queue:jobs-*:publish", "kv:public:*:read" ] }
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

async function connect(page, key) {
  await page.goto(`${state.server.url}/#view=live`);
  await page.locator('#live-key').fill(key);
  await page.locator('#live-connect').click();
  await page.locator('#view-live[data-state=connected]').waitFor();
  await page.locator('#live-stream', { hasText: 'live' }).waitFor();
}

test('live, scoped key: admin controls are disabled, publish and KV lookup work where allowed', async () => {
  const q = 'jobs-render';
  await admin('POST', `/queue/${q}`, { max_retries: 0 });
  await admin('POST', '/queue/secret-jobs', {});
  for (let i = 0; i < 2; i++) await admin('POST', `/queue/${q}/publish`, { message: { n: i } });
  const { messages } = await admin('POST', `/queue/${q}/consume`, { timeout: 0 });
  await admin('POST', `/queue/${q}/nack`, { message_id: messages[0].message_id, requeue: false, error: 'bad frame' });
  await admin('POST', '/kv/set', { key: 'public:motd', value: 'hello' });
  await admin('POST', '/kv/set', { key: 'private:token', value: 'x' });

  const page = await open(state.browser, state.server.url);
  await connect(page, SCOPED);
  // The caller is named, with its permissions.
  assert.equal(await page.locator('#live-who-name').textContent(), 'dashboard');
  assert.match(await page.locator('#live-who').textContent(), /queue:jobs-\*:read/);
  assert.equal(await page.locator('#view-live').getAttribute('data-access'), 'scoped');

  // Only the queues the key may see are listed.
  await page.locator(`#queue-rows tr[data-queue="${q}"]`).waitFor();
  assert.equal(await page.locator('#queue-rows tr[data-queue="secret-jobs"]').count(), 0);
  assert.equal(await shown(page, q, 'dlq'), 1);

  // The DLQ can be read, but not retried or purged; the queue cannot be purged.
  await page.locator(`#queue-rows tr[data-queue="${q}"] button`).click();
  await page.locator(`#dlq tr[data-id="${messages[0].message_id}"]`).waitFor();
  for (const id of ['dlq-retry', 'dlq-retry-all', 'dlq-purge', 'queue-purge']) {
    assert.equal(await page.locator(`#${id}`).isDisabled(), true, `#${id} is disabled`);
  }
  assert.match(await page.locator('#dlq-access').textContent(), new RegExp(`queue:${q}:admin`));
  assert.equal(await page.locator('#dlq-access').isVisible(), true);
  assert.match(await page.locator('#queue-status').textContent(), new RegExp(`queue:${q}:admin`));
  await page.locator('#dlq-purge').click({ force: true });
  await page.locator('#queue-purge').click({ force: true });
  assert.equal((await admin('GET', `/queue/${q}/stats`)).dead_letter_count, 1, 'nothing was purged');

  // Publishing to a queue the key may publish to works; to another, the button is disabled.
  assert.equal(await page.locator('#pub-queue').inputValue(), q);
  assert.equal(await page.locator('#pub-send').isDisabled(), false);
  const before = await shown(page, q, 'depth');
  await page.locator('#pub-message').fill('{"n": 99}');
  await page.locator('#pub-send').click();
  await until(async () => (await shown(page, q, 'depth')) === before + 1, 'the page published');
  await page.locator('#pub-queue').fill('secret-jobs');
  assert.equal(await page.locator('#pub-send').isDisabled(), true);
  assert.match(await page.locator('#pub-access').textContent(), /queue:secret-jobs:publish/);
  await page.locator('#pub-queue').fill('jobs-new');
  assert.equal(await page.locator('#pub-send').isDisabled(), false);

  // KV lookup: a readable key is shown; an unreadable one cannot be asked for.
  await page.locator('#kv-key').fill('public:motd');
  await page.locator('#kv-get').click();
  await page.locator('#kv-result pre', { hasText: 'hello' }).waitFor();
  await page.locator('#kv-key').fill('private:token');
  assert.equal(await page.locator('#kv-get').isDisabled(), true);
  assert.match(await page.locator('#kv-access').textContent(), /kv:private:token:read/);
  await shot(page, 'live-scoped');
  // No request was refused: a 403 would be a console error.
  checkClean(page);
  await page.context().close();
});

test('live, read-only key: the publish and KV panels are hidden', async () => {
  const server = await startServer({
    config: `server:\n  api_keys:\n    - ${ADMIN}\n    - { name: viewer, key: view-key, permissions: [ "queue:*:read" ] }\n`,
  });
  try {
    await api(server.url, ADMIN, 'POST', '/queue/anything', {});
    const page = await open(state.browser, server.url);
    await page.goto(`${server.url}/#view=live`);
    await page.locator('#live-key').fill('view-key');
    await page.locator('#live-connect').click();
    await page.locator('#view-live[data-state=connected]').waitFor();
    await page.locator('#queue-rows tr[data-queue="anything"]').waitFor();
    assert.equal(await page.locator('#live-who-name').textContent(), 'viewer');
    assert.equal(await page.locator('#publish').isHidden(), true);
    assert.equal(await page.locator('#kv').isHidden(), true);
    checkClean(page);
    await page.context().close();
  } finally {
    await server.stop();
  }
});

test('live, full-access key: every control is enabled and the queue purge works', async () => {
  const q = 'jobs-purge';
  await admin('POST', `/queue/${q}`, {});
  for (let i = 0; i < 3; i++) await admin('POST', `/queue/${q}/publish`, { message: { n: i } });
  const page = await open(state.browser, state.server.url);
  await connect(page, ADMIN);
  assert.equal(await page.locator('#live-who-name').textContent(), 'api-key');
  assert.match(await page.locator('#live-who').textContent(), /full access/);
  assert.equal(await page.locator('#view-live').getAttribute('data-access'), 'full');
  await page.locator(`#queue-rows tr[data-queue="${q}"]`).waitFor();
  await page.locator(`#queue-rows tr[data-queue="${q}"] button`).click();
  await page.locator('#dlq td.empty').waitFor();
  for (const id of ['dlq-retry', 'dlq-retry-all', 'queue-purge', 'pub-send', 'kv-get']) {
    assert.equal(await page.locator(`#${id}`).isDisabled(), false, `#${id} is enabled`);
  }
  assert.equal(await page.locator('#dlq-access').isHidden(), true);
  assert.equal(await shown(page, q, 'depth'), 3);
  // Purge asks twice.
  await page.locator('#queue-purge').click();
  assert.match(await page.locator('#queue-purge').textContent(), /Confirm/);
  await page.locator('#queue-purge').click();
  await page.locator('#queue-status', { hasText: '3 messages deleted' }).waitFor();
  await until(async () => (await shown(page, q, 'depth')) === 0, 'depth 0 after the purge');
  assert.equal((await admin('GET', `/queue/${q}/stats`)).depth, 0);
  checkClean(page);
  await page.context().close();
});
