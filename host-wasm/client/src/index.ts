/**
 * Synap's TypeScript client, with the API of Synap's task-queue sample:
 * `new SynapClient({ url, apiKey })`, then `queue`, `kv`, `pubsub` and `flows` operations.
 */
export { SynapClient } from './client.js';
export { SynapError } from './errors.js';
export { QueueApi, ScheduleApi } from './queue.js';
export { QueueStream, type StreamNackOptions } from './stream.js';
export { KvApi } from './kv.js';
export { FlowsApi, MAX_FLOW_DEPTH, MAX_FLOW_JOBS } from './flows.js';
export { PubSubApi, Subscription } from './pubsub.js';
export type * from './types.js';
