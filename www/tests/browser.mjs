// Headless Chromium for the web app's tests: Debian's chromium driven by playwright-core.
// Every page records console errors, uncaught exceptions and requests to any origin other
// than the one it was opened on; `checkClean` fails the test on any of them.
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { root } from './server.mjs';

export const artifacts = join(root, 'www', 'test-artifacts');
mkdirSync(artifacts, { recursive: true });

export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
}

/** A new page on `origin` with error and network recording; `allow` filters expected console errors. */
export async function open(browser, origin, { width = 1280, height = 900, bypassCSP = false } = {}) {
  // bypassCSP only where axe-core's script is injected into the page.
  const context = await browser.newContext({ viewport: { width, height }, bypassCSP });
  const page = await context.newPage();
  const problems = { errors: [], foreign: [], allow: [] };
  page.on('console', (msg) => {
    if (msg.type() !== 'error') return;
    const text = msg.text();
    if (problems.allow.some((re) => re.test(text))) return;
    problems.errors.push(text);
  });
  page.on('pageerror', (e) => problems.errors.push(`uncaught: ${e.stack || e}`));
  page.on('request', (req) => {
    const u = req.url();
    if (u.startsWith('data:') || u.startsWith('blob:')) return;
    if (new URL(u).origin !== origin) problems.foreign.push(u);
  });
  page.problems = problems;
  return page;
}

export function checkClean(page) {
  assert.deepEqual(page.problems.errors, [], 'console errors');
  assert.deepEqual(page.problems.foreign, [], 'requests beyond the serving server');
}

export async function shot(page, name, fullPage = true) {
  await page.screenshot({ path: join(artifacts, `${name}.png`), fullPage });
}

/** Runs axe-core on the page; fails on serious or critical violations. */
export async function checkAccessible(page, what) {
  await page.addScriptTag({ path: join(root, 'www', 'node_modules', 'axe-core', 'axe.min.js') });
  const result = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const r = await axe.run(document, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map((n) => n.target.join(' ')) }));
  });
  const bad = result.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  assert.deepEqual(bad, [], `accessibility violations on ${what}`);
}
