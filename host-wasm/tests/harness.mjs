// Starts real synap-server processes for the client tests: `--bind 127.0.0.1:0 --in-memory`
// (plus an optional YAML config and environment), reads the bound address from the
// `synap-server listening addr=…` log line, and stops exactly that process by its PID.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const examples = join(root, 'host-wasm', 'client', 'build', 'examples');

/** The server binary: SYNAP_SERVER, else target/debug or target/release of this workspace. */
export function serverBinary() {
  const target = process.env.CARGO_TARGET_DIR || join(root, 'target');
  const candidates = [process.env.SYNAP_SERVER, join(target, 'debug', 'synap-server'), join(target, 'release', 'synap-server')]
    .filter(Boolean);
  const found = candidates.find((p) => existsSync(p));
  if (!found) throw new Error(`synap-server not built; looked at ${candidates.join(', ')} (cargo build -p synap-server)`);
  return found;
}

/**
 * Starts a server; resolves to `{ url, pid, stop() }`. `config` is YAML for `--config`,
 * `env` extra environment (e.g. SYNAP_API_KEY), `dataDir` a data directory (else in memory).
 */
export async function startServer({ config, env = {}, dataDir } = {}) {
  // No SynapRPC: these clients speak HTTP, and parallel servers would contend for its port.
  // In memory, unless a data directory is given (then every reply waits for an fsync).
  const storage = dataDir ? ['--data-dir', dataDir, '--fsync', 'always'] : ['--in-memory'];
  const args = ['--bind', '127.0.0.1:0', ...storage, '--no-rpc'];
  if (config) {
    const file = join(mkdtempSync(join(tmpdir(), 'synap-ts-')), 'synap.yaml');
    writeFileSync(file, config);
    args.push('--config', file);
  }
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
    log: () => log,
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

/** Polls `check` every 50 ms until it returns a truthy value, for at most `ms`. */
export async function eventually(check, ms = 10_000, what = 'condition') {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
