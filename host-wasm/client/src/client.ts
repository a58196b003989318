import { KvApi } from './kv.js';
import { PubSubApi } from './pubsub.js';
import { QueueApi } from './queue.js';
import { Transport } from './transport.js';
import type { SynapClientOptions } from './types.js';

/**
 * A client for one Synap server: `queue`, `kv` and `pubsub` operations over its REST routes
 * (global `fetch`) and WebSockets (the global `WebSocket`, else the `ws` package). Creating it
 * makes no network call.
 */
export class SynapClient {
  /** Queue operations. */
  readonly queue: QueueApi;
  /** Key-value operations. */
  readonly kv: KvApi;
  /** Pub/sub operations. */
  readonly pubsub: PubSubApi;
  private readonly transport: Transport;

  constructor(options: SynapClientOptions) {
    this.transport = new Transport(options.url, options.apiKey);
    this.queue = new QueueApi(this.transport);
    this.kv = new KvApi(this.transport);
    this.pubsub = new PubSubApi(this.transport);
  }

  /** The server's base URL. */
  get url(): string {
    return this.transport.baseUrl;
  }

  /** `GET /health`: `{status: 'healthy', service, version}`. */
  health(): Promise<{ status: string; service: string; version: string }> {
    return this.transport.request('GET', '/health');
  }
}
