// Starts a cluster of real synap-server processes on loopback for the client's failover
// tests: writes a `cluster:` config with free ports (picked by binding port 0 and releasing
// it; if a node then cannot bind, the whole cluster starts again on new ports), starts one
// process per node with its own data directory, waits until `GET /cluster` shows a leader,
// and signals every process by its own PID (SIGKILL for a crash, SIGTERM to stop).
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serverBinary } from './harness.mjs';

/** A loopback port free now (bound to port 0, then released). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Starts one node; resolves once it listens, rejects with its log if it exits first. */
function startNode(node, config) {
  const args = ['--config', config, '--node-id', String(node.id), '--data-dir', node.dataDir, '--no-rpc', '--fsync', 'always'];
  const env = { ...process.env, RUST_LOG: 'info', NO_COLOR: '1' };
  delete env.SYNAP_API_KEY;
  delete env.SYNAP_CLUSTER_SECRET;
  const child = spawn(serverBinary(), args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
  node.child = child;
  node.log = '';
  node.exited = new Promise((resolve) => child.once('exit', resolve));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`node ${node.id} did not start:\n${node.log}`)), 60_000);
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk) => {
      if (node.log.length < 1 << 20) node.log += chunk;
      if (node.log.includes('synap-server listening')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      const err = new Error(`node ${node.id} exited with ${code} before listening:\n${node.log}`);
      err.addrInUse = /in use/i.test(node.log);
      reject(err);
    });
  });
}

async function getJson(url) {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
    return res.ok ? await res.json() : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Starts an `n`-node cluster (Raft ticks of 50 ms: elections within about a second). Resolves
 * to `{ nodes: [{ id, url, pid }], urls, leader(), followers(), kill(id), stop() }` once a
 * leader is elected.
 */
export async function startCluster(n = 3) {
  for (let attempt = 0; attempt < 5; attempt++) {
    const root = mkdtempSync(join(tmpdir(), 'synap-ts-cluster-'));
    const nodes = [];
    for (let id = 1; id <= n; id++) {
      const [http, raft] = [await freePort(), await freePort()];
      const addr = `127.0.0.1:${http}`;
      nodes.push({ id, http: addr, raft: `127.0.0.1:${raft}`, url: `http://${addr}`, dataDir: join(root, `node${id}`) });
    }
    const lines = nodes.map((x) => `    - { id: ${x.id}, raft: "${x.raft}", http: "${x.http}" }`);
    const config = join(root, 'cluster.yaml');
    // A secret of its own: nodes of an earlier cluster that still dial a port this one reuses
    // are refused.
    writeFileSync(config, `cluster:\n  secret: "${randomUUID()}"\n  tick_ms: 50\n  nodes:\n${lines.join('\n')}\n`);
    const cluster = makeCluster(nodes, root);
    try {
      for (const node of nodes) await startNode(node, config);
    } catch (e) {
      await cluster.stop();
      if (e.addrInUse) continue;
      throw e;
    }
    try {
      await cluster.leader();
    } catch (e) {
      await cluster.stop();
      throw e;
    }
    return cluster;
  }
  throw new Error('could not find free ports for the cluster in 5 attempts');
}

function makeCluster(nodes, root) {
  const alive = (x) => x.child !== undefined && x.child.exitCode === null && x.child.signalCode === null;
  const cluster = {
    nodes,
    urls: nodes.map((x) => x.url),
    /** The id of the leader every live node agrees on, waiting (up to 30 s) for one. */
    async leader() {
      const end = Date.now() + 30_000;
      for (;;) {
        const views = await Promise.all(nodes.filter(alive).map((x) => getJson(`${x.url}/cluster`)));
        const leaders = views.map((v) => v?.leader?.id);
        const lead = views.find((v) => v?.role === 'leader');
        if (lead && leaders.every((id) => id === lead.node_id)) return lead.node_id;
        if (Date.now() > end) throw new Error(`no leader within 30 s: ${JSON.stringify(views)}\n${cluster.logs()}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    /** The nodes that are not `id`, live ones only. */
    others(id) {
      return nodes.filter((x) => x.id !== id && alive(x));
    },
    /** Kills node `id` with SIGKILL (to its PID) and waits until it is gone. */
    async kill(id) {
      const node = nodes[id - 1];
      if (!alive(node)) return;
      process.kill(node.child.pid, 'SIGKILL');
      await node.exited;
    },
    /** The nodes' logs (for failure messages). */
    logs() {
      return nodes.map((x) => `--- node ${x.id}\n${(x.log ?? '').slice(-4000)}`).join('\n');
    },
    /** Stops every node still running (SIGTERM to its PID, SIGKILL after 15 s) and removes the data. */
    async stop() {
      await Promise.all(nodes.filter(alive).map(async (x) => {
        process.kill(x.child.pid, 'SIGTERM');
        const timer = setTimeout(() => {
          if (alive(x)) process.kill(x.child.pid, 'SIGKILL');
        }, 15_000);
        await x.exited;
        clearTimeout(timer);
      }));
      rmSync(root, { recursive: true, force: true });
    },
  };
  for (const x of nodes) {
    Object.defineProperty(x, 'pid', { get: () => x.child?.pid, enumerable: true });
  }
  return cluster;
}
