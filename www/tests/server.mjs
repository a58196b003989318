// The real server for the browser tests: host-wasm's test harness starts synap-server on a
// free port (in memory or on a data directory) and stops it by its PID; this adds the data
// export and a JSON request helper, and the shared setup of a test file.
import { execFileSync } from 'node:child_process';
import { after, before } from 'node:test';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { serverBinary, startServer } from '../../host-wasm/tests/harness.mjs';

export { startServer };
export const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** `synap-server data export DIR`. */
export function exportLog(dir) {
  return execFileSync(serverBinary(), ['data', 'export', dir], { encoding: 'utf8' });
}

/** A JSON request to the server; rejects on a non-2xx answer. */
export async function api(base, key, method, path, body) {
  const headers = { accept: 'application/json' };
  if (key) headers.authorization = `Bearer ${key}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(base + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return JSON.parse(text);
}

/**
 * For one test file: a server with auth on (`key`) and a browser, started before its tests
 * and stopped after them. Returns `{ base, browser }` getters.
 */
export function serverAndBrowser(key, launch) {
  const state = {};
  before(async () => {
    state.server = await startServer({ env: { SYNAP_API_KEY: key } });
    state.browser = await launch();
  });
  after(async () => {
    await state.browser?.close();
    await state.server?.stop();
  });
  return {
    get base() {
      return state.server.url;
    },
    get browser() {
      return state.browser;
    },
  };
}
