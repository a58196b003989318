import { FlowsApi } from './flows.js';
import { KvApi } from './kv.js';
import { PubSubApi } from './pubsub.js';
import { QueueApi } from './queue.js';
import { Transport } from './transport.js';
import type { SynapClientOptions } from './types.js';

/**
 * A client for one Synap server, or for a cluster: `queue`, `kv`, `pubsub` and `flows`
 * operations over the REST routes (global `fetch`) and WebSockets (the global `WebSocket`,
 * else the `ws` package). Creating it makes no network call. Given several URLs, it moves to
 * the cluster's leader on a connection error or a `not_leader`/`no_leader` refusal, resends an
 * unanswered publish with its idempotency key, and reconnects queue streams.
 */
export class SynapClient {
  /** Queue operations. */
  readonly queue: QueueApi;
  /** Key-value operations. */
  readonly kv: KvApi;
  /** Pub/sub operations. */
  readonly pubsub: PubSubApi;
  /** Flows: trees of jobs in which each parent waits for its children. */
  readonly flows: FlowsApi;
  private readonly transport: Transport;

  constructor(options: SynapClientOptions) {
    this.transport = new Transport(options);
    this.queue = new QueueApi(this.transport);
    this.kv = new KvApi(this.transport);
    this.pubsub = new PubSubApi(this.transport);
    this.flows = new FlowsApi(this.transport);
  }

  /** The base URL of the server calls go to now (with several URLs, the last known leader). */
  get url(): string {
    return this.transport.baseUrl;
  }

  /** Every base URL the client was given, in order. */
  get urls(): readonly string[] {
    return this.transport.targets.urls;
  }

  /** `GET /health`: `{status: 'healthy', service, version}`. */
  health(): Promise<{ status: string; service: string; version: string }> {
    return this.transport.request('GET', '/health');
  }
}
