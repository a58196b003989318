/**
 * Synap's TypeScript client, with the API of Synap's task-queue sample:
 * `new SynapClient({ url, apiKey })`, then `queue`, `kv` and `pubsub` operations.
 */
export { SynapClient } from './client.js';
export { SynapError } from './errors.js';
export { QueueApi, ScheduleApi } from './queue.js';
export { QueueStream, type StreamNackOptions } from './stream.js';
export { KvApi } from './kv.js';
export { PubSubApi, Subscription } from './pubsub.js';
export type * from './types.js';
