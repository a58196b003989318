/** Options of `new SynapClient(...)`. */
export interface SynapClientOptions {
  /** The server's base URL, e.g. `http://localhost:15500`. */
  url: string;
  /** An API key, sent as `Authorization: Bearer` (or `?api_key=` where a browser WebSocket cannot send headers). */
  apiKey?: string | undefined;
}

/** Options of `queue.publish`; durations are seconds (fractions allowed). */
export interface PublishOptions {
  /** 0 (lowest) to 9; the queue's default priority (5) when absent. */
  priority?: number;
  /** String headers carried with the message. */
  headers?: Record<string, string>;
  /** Seconds before the message becomes ready. */
  delay?: number;
  /** Seconds the message may live unacked before it is dead-lettered as expired. */
  ttl?: number;
  /** Retries after the first delivery for this message, instead of the queue's setting. */
  maxRetries?: number;
}

/** One message of `queue.publishBatch`: its body plus its publish options. */
export interface BatchMessage extends PublishOptions {
  /** The message body (any JSON). */
  message: unknown;
}

/** What the server answers to a publish. */
export interface PublishResult {
  /** The message's id (a UUID). */
  messageId: string;
  /** Its place among the ready messages, or `null` when it was published with a delay. */
  position: number | null;
}

/** Options of `queue.consume`; durations are seconds. */
export interface ConsumeOptions {
  /** Long-poll: seconds to wait for a message (0 = answer at once; the server caps it). */
  timeout?: number;
  /** Seconds of lease before the message is delivered again. */
  ackDeadline?: number;
  /** Names this consumer (for the queue's `prefetch` limit and stats). */
  consumerId?: string;
  /** Messages to take at once, 1–100 (`consume` takes 1; `consumeBatch` uses this). */
  maxMessages?: number;
}

/** A delivered message. */
export interface QueueMessage<T = unknown> {
  /** The message's id. */
  messageId: string;
  /** The queue it came from. */
  queue: string;
  /** Its body: the JSON it was published with (bytes published by Synap's SDKs, parsed as JSON, or null). */
  message: T;
  /** The bytes of a message published as bytes; absent otherwise. */
  payload?: number[];
  /** 0–9. */
  priority: number;
  /** Earlier deliveries of this message. */
  retryCount: number;
  /** Retries allowed after the first delivery. */
  maxRetries: number;
  /** Its headers. */
  headers: Record<string, string>;
  /** The lease token for ack, nack and extend. */
  lease: number;
  /** When the lease ends (Unix ms). */
  leaseDeadline: number;
  /** When it was published (Unix ms). */
  publishedAt: number;
}

/** Options of `queue.nack`. */
export interface NackOptions {
  /** Seconds before the retry (instead of the queue's retry policy). */
  delay?: number;
  /** The failure, kept with the message and shown in the DLQ. */
  error?: string;
  /** The lease being answered; a stale one is refused with `lease_mismatch`. */
  lease?: number;
}

/** What a nack did. */
export type NackAction = 'requeued' | 'delayed' | 'dead_lettered';

/** One entry of `queue.ackBatch`. */
export interface AckEntry {
  /** The message. */
  messageId: string;
  /** Its lease, if known. */
  lease?: number;
}

/** What `queue.ackBatch` did. */
export interface AckBatchResult {
  /** Messages acked. */
  acked: number;
  /** Those refused, with the server's code. */
  failed: { messageId: string; code: string }[];
}

/** A queue's settings (`queue.create`); absent fields take the server's defaults. Durations in seconds. */
export interface QueueConfig {
  /** Retries after the first delivery. */
  maxRetries?: number;
  /** Default lease length. */
  ackDeadlineSecs?: number;
  /** Seconds before the i-th retry; the last one repeats. */
  retryDelays?: number[];
  /** Exponential backoff, used when `retryDelays` is empty. */
  backoff?: { initial: number; multiplier?: number; max?: number; jitter?: number };
  /** Ready + delayed messages allowed. */
  maxDepth?: number;
  /** Seconds a message may live unacked. */
  messageTtl?: number;
  /** Unacked messages per consumer id (0 = unlimited). */
  prefetch?: number;
  /** Keep dead-lettered messages in the DLQ. */
  deadLetter?: boolean;
  /** DLQ capacity. */
  dlqMax?: number;
  /** Priority of messages published without one. */
  defaultPriority?: number;
}

/** A queue's statistics, camelCase (`config` durations are in ms). */
export interface QueueStats {
  queue: string;
  /** Ready + delayed messages. */
  depth: number;
  ready: number;
  delayed: number;
  inFlight: number;
  deadLetterCount: number;
  consumers: number;
  waiters: number;
  publishedTotal: number;
  consumedTotal: number;
  ackedTotal: number;
  nackedTotal: number;
  leaseExpiredTotal: number;
  deadLetteredTotal: number;
  expiredTotal: number;
  dlqDroppedTotal: number;
  avgWaitTimeMs: number;
  oldestReadyAgeMs: number | null;
  /** The queue's settings as the server reports them. */
  config: Record<string, unknown>;
}

/** A dead-lettered message. */
export interface DeadLetter<T = unknown> {
  messageId: string;
  message: T;
  payload?: number[];
  priority: number;
  headers: Record<string, string>;
  /** Why: `max_retries_exceeded`, `rejected`, `expired`, … */
  reason: string;
  attempts: number;
  lastError: string | null;
  originQueue: string;
  publishedAt: number;
  deadLetteredAt: number;
}

/** One page of a DLQ, oldest first. */
export interface DlqPage<T = unknown> {
  /** Entries in the DLQ. */
  total: number;
  messages: DeadLetter<T>[];
}

/** What `kv.get` answers. */
export interface KvGetResult<T = unknown> {
  /** Whether the key exists (and has not expired). */
  found: boolean;
  /** Its value when found. */
  value?: T;
  /** Seconds left, or `null` without expiry (when found). */
  ttl?: number | null;
}

/** One entry of `kv.mset`. */
export interface KvEntry {
  key: string;
  value: unknown;
  /** Seconds. */
  ttl?: number;
}

/** What `pubsub.publish` answers. */
export interface PubSubPublishResult {
  messageId: string;
  topic: string;
  /** Live subscribers the message was delivered to. */
  subscribersMatched: number;
}

/** A message received by a subscription. */
export interface PubSubMessage<T = unknown> {
  topic: string;
  message: T;
  messageId: string;
  /** Unix ms. */
  publishedAt: number;
  headers: Record<string, string>;
}

/** Options of `queue.stream`. */
export interface StreamOptions {
  /** Names this consumer (default: the server picks `ws-N`). */
  consumerId?: string;
  /** Unacked messages pushed at once, 0–1000 (server default 16; 0 = publish only). */
  prefetch?: number;
  /** Seconds of lease (default: the queue's). */
  ackDeadline?: number;
}
