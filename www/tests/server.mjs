// Starts the real synap-server binary for the browser tests on free ports
// (`--bind 127.0.0.1:0 --rpc-bind 127.0.0.1:0`, in memory or on a data directory), reads the
// bound address from its `synap-server listening addr=…` line, and stops it by its PID.
import { spawn, execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The server binary: SYNAP_SERVER, else target/debug or target/release. */
export function serverBinary() {
  const target = process.env.CARGO_TARGET_DIR || join(root, 'target');
  const candidates = [process.env.SYNAP_SERVER, join(target, 'debug', 'synap-server'), join(target, 'release', 'synap-server')].filter(Boolean);
  const found = candidates.find((p) => existsSync(p));
  if (!found) throw new Error(`synap-server not built; looked at ${candidates.join(', ')}`);
  return found;
}

/** Starts a server; resolves to `{url, pid, stop()}`. */
export async function startServer({ dataDir, env = {} } = {}) {
  const args = ['--bind', '127.0.0.1:0', '--rpc-bind', '127.0.0.1:0'];
  args.push(...(dataDir ? ['--data-dir', dataDir, '--fsync', 'always'] : ['--in-memory']));
  const childEnv = { ...process.env, RUST_LOG: 'info', NO_COLOR: '1', ...env };
  if (!('SYNAP_API_KEY' in env)) delete childEnv.SYNAP_API_KEY;
  const child = spawn(serverBinary(), args, { env: childEnv, stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${log}`)), 30_000);
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk) => {
      if (log.length < 1 << 20) log += chunk;
      const m = /synap-server listening addr=(\S+)/.exec(log.replace(/\x1b\[[0-9;]*m/g, ''));
      if (m) {
        clearTimeout(timer);
        resolve(`http://${m[1]}`);
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code} before listening:\n${log}`));
    });
  });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  return {
    url,
    pid: child.pid,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      process.kill(child.pid, 'SIGTERM');
      const timer = setTimeout(() => {
        if (child.exitCode === null && child.signalCode === null) process.kill(child.pid, 'SIGKILL');
      }, 15_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

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
