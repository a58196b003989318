/** Options of `new SynapClient(...)`. */
export interface SynapClientOptions {
  /**
   * The server's base URL, e.g. `http://localhost:15500`; or the URLs of a cluster's nodes
   * (at most 32), whose leader the client then finds and follows.
   */
  url: string | string[];
  /** An API key, sent as `Authorization: Bearer` (or `?api_key=` where a browser WebSocket cannot send headers). */
  apiKey?: string | undefined;
  /**
   * With several URLs: seconds a call keeps looking for the leader after a failure before it
   * rejects (default 10). Streams reconnect within the same bound.
   */
  failoverTimeout?: number | undefined;
  /**
   * Seconds one attempt may go unanswered before it counts as lost (long-polls get their wait
   * on top); 0 = no limit. Default: no limit with one URL, 30 with several (a lost attempt is
   * then resent to the next node).
   */
  requestTimeout?: number | undefined;
  /**
   * With several URLs, a publish without `idempotencyKey` (and without `debounce`) gets a
   * random one, so that resending it after a failover never adds a second message. Default
   * true; false leaves keyless publishes keyless (a resend may then double them).
   */
  autoIdempotencyKey?: boolean | undefined;
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
  /**
   * A publish repeating this key answers the first one's result (`duplicate: true`) and adds
   * nothing, for as long as `dedup` says.
   */
  idempotencyKey?: string;
  /**
   * How long `idempotencyKey` holds: `window` (the server's idempotency window, the default) or
   * `until_finished` (while the job it names is unfinished, whatever the window).
   */
  dedup?: DedupMode;
  /**
   * With `idempotencyKey` and `delay`: a publish whose key names a job still delayed replaces
   * that job's message and restarts its delay (the trailing call wins, `replaced: true`).
   */
  debounce?: boolean;
  /**
   * The message's group, 1–255 bytes without control characters (a user, a tenant, a video):
   * the queue's group settings (`groupConcurrency`, `orderedGroups`, `fairGroups`,
   * `groupRateLimit`) apply per group.
   */
  group?: string;
}

/** How long a publish's idempotency key holds. */
export type DedupMode = 'window' | 'until_finished';

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
  /** True when the idempotency key was seen already and nothing was added. */
  duplicate?: boolean;
  /** True when a debounced publish replaced the message of a still-delayed job. */
  replaced?: boolean;
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
  /** The group it was published with; absent for a message without one. */
  group?: string;
  /**
   * A flow parent's children (`flows.add`), all finished, in the order given: each one's
   * state, result and, when dead-lettered, reason. Under `onChildFailure: 'ignore'` the failed
   * ones are left out. Absent for any other message.
   */
  children?: FlowChild[];
}

/** Options of `queue.nack`. */
export interface NackOptions {
  /** Seconds before the retry (instead of the queue's retry policy). */
  delay?: number;
  /** The failure, kept with the message and shown in the DLQ. */
  error?: string;
  /** The lease being answered; a stale one is refused with `lease_mismatch`. */
  lease?: number;
  /**
   * Snooze: the message comes back after `delay` seconds (at once without one) without
   * spending an attempt (answered `'snoozed'`); past the queue's `maxSnoozes` it is
   * dead-lettered (`snoozed_out`). Needs `requeue` true.
   */
  snooze?: boolean;
}

/**
 * What a nack did (`cancelled`: the job was cancelled while in flight and is settled;
 * `snoozed`: a snooze, no attempt spent).
 */
export type NackAction = 'requeued' | 'delayed' | 'dead_lettered' | 'cancelled' | 'snoozed';

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
  /** Most leased messages of the queue across all its consumers (at least 1; no limit when absent). */
  maxInFlight?: number;
  /** Most leased messages of one group at a time (at least 1; no limit when absent). */
  groupConcurrency?: number;
  /**
   * A group's messages go one at a time in publish order, the next after the previous is
   * acked or dead-lettered (`groupConcurrency` must be 1 or absent).
   */
  orderedGroups?: boolean;
  /** Within a priority, ready messages are taken round robin across groups. */
  fairGroups?: boolean;
  /** Most deliveries of the queue per window. */
  rateLimit?: Rate;
  /** Most deliveries of each group per window. */
  groupRateLimit?: Rate;
  /** Snoozes a message may take before it is dead-lettered (`snoozed_out`); 100 by default. */
  maxSnoozes?: number;
}

/**
 * At most `max` deliveries per window of `perSecs` seconds (`{max, per_secs}` on the wire). A
 * window opens with the first delivery after the previous one closed.
 */
export interface Rate {
  /** Deliveries per window (at least 1). */
  max: number;
  /** The window's length, seconds (at most 30 days). */
  perSecs: number;
}

/** One group of `queue.groups`: its messages by state. */
export interface GroupInfo {
  group: string;
  /** Its ready messages. */
  ready: number;
  /** Its leased messages. */
  inFlight: number;
  /** Its messages waiting for a delay, a retry delay or a snooze. */
  delayed: number;
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
  /** Jobs cancelled. */
  cancelledTotal?: number;
  /** Completed and cancelled jobs kept for lookup. */
  keptJobs?: number;
  /** Schedules of the queue. */
  schedules?: number;
  /** Flow parents waiting for their children (not counted in `depth`). */
  waitingChildren?: number;
  avgWaitTimeMs: number;
  oldestReadyAgeMs: number | null;
  /** The queue's settings as the server reports them. */
  config: Record<string, unknown>;
  /** Paused: it delivers nothing until resumed. */
  paused: boolean;
  /**
   * Nothing is delivered before this time (Unix ms): a worker's `rateLimit`, or the queue's
   * `rateLimit` window while it is full; `null` when not rate limited.
   */
  rateLimitedUntilMs: number | null;
  /** Groups holding messages (ready, delayed or in flight). */
  groups: number;
  /**
   * Ready messages no consumer may take now: all of them while the queue is paused, rate
   * limited or at `maxInFlight`, else those of groups at a limit.
   */
  heldBack: number;
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

/** Options of `queue.ack`. */
export interface AckOptions {
  /** The job's result (any JSON, up to the queue's `max_result_bytes`), kept with the completed job. */
  result?: unknown;
}

/** Where a job is in its life (`waiting_children`: a flow parent waiting for its children). */
export type JobState = 'waiting_children' | 'delayed' | 'ready' | 'in_flight' | 'completed' | 'dead_lettered' | 'cancelled';

/** A job as it is now (`queue.job`, `queue.waitFor`). Times are Unix ms. */
export interface Job<T = unknown, R = unknown> {
  messageId: string;
  queue: string;
  state: JobState;
  priority: number;
  /** The group it was published with, `null` for a message without one. */
  group: string | null;
  /** Deliveries so far. */
  attempts: number;
  /** The last progress its worker reported, `null` if none. */
  progress: unknown;
  /** The result its ack carried, `null` if none. */
  result: R | null;
  /** The last nack's error (or `lease expired`), `null` if none. */
  lastError: string | null;
  publishedAt: number;
  /** When its latest delivery began, `null` before any. */
  startedAt: number | null;
  /** When it finished, `null` while unfinished. */
  finishedAt: number | null;
  /** Its body as JSON. */
  message: T;
  /** The bytes of a message published as bytes; absent otherwise. */
  payload?: number[];
  headers: Record<string, string>;
  /** In flight and cancelled: it settles as cancelled when its delivery ends. */
  cancelRequested: boolean;
  /** Why it was dead-lettered (dead-lettered jobs only; `child_failed` for a flow parent). */
  deadLetterReason?: string;
  /** The flow it belongs to (flow jobs only). */
  flowId?: string;
  /** Its parent in its flow, the job waiting for it (flow jobs with a parent only). */
  parentId?: string;
  /** The message ids of its children in its flow (flow parents only). */
  children?: string[];
}

/** Options of `queue.progress`. */
export interface ProgressOptions {
  /** The lease of the delivery reporting (409 `lease_mismatch` when stale). */
  lease?: number;
  /** Also extend the lease to now + this many seconds. */
  extend?: number;
}

/** What `queue.progress` answers. */
export interface ProgressResult {
  /** The job was cancelled: stop working on it and ack or nack it (it settles as cancelled). */
  cancelled: boolean;
  /** The lease deadline, Unix ms. */
  leaseDeadline: number;
}

/** What `queue.cancel` answers: `cancelled`, or `in_flight` for a job marked to settle as cancelled. */
export interface CancelResult {
  state: JobState;
}

/** A schedule of `queue.schedules.put`: exactly one of `everySecs` and `cron`. Times are Unix ms. */
export interface ScheduleSpec {
  /** A run every this many seconds (at least 1), from `startAt` or now. */
  everySecs?: number;
  /** A 5-field cron pattern (minute hour day-of-month month day-of-week), in UTC. */
  cron?: string;
  /** The body each run publishes (any JSON). */
  message: unknown;
  /** 0–9; the queue's default priority when absent. */
  priority?: number;
  /** Headers of each run's message. */
  headers?: Record<string, string>;
  /** No run before this time. */
  startAt?: number;
  /** No run after this time. */
  endAt?: number;
  /** Runs after which the schedule ends. */
  maxRuns?: number;
}

/** What `queue.schedules.put` answers. */
export interface ScheduleSet {
  id: string;
  /** Its next run (Unix ms), `null` if it will never run. */
  nextRunAt: number | null;
  /** False when it replaced a schedule with the same id (which keeps its history). */
  created: boolean;
}

/** One schedule of `queue.schedules.list`. Times are Unix ms. */
export interface Schedule<T = unknown> {
  id: string;
  everySecs: number | null;
  cron: string | null;
  message: T;
  priority: number | null;
  headers: Record<string, string>;
  startAt: number | null;
  endAt: number | null;
  maxRuns: number | null;
  nextRunAt: number | null;
  lastRunAt: number | null;
  /** Runs made. */
  runs: number;
  /** The message its latest run published. */
  lastMessageId: string | null;
  /** Why its latest run published nothing. */
  lastError: string | null;
}

/** What a flow parent does when one of its children fails (dead-lettered, expired, cancelled, purged, its queue deleted). */
export type OnChildFailure = 'fail' | 'continue' | 'ignore';

/**
 * A node of `flows.add`: one job and the jobs it waits for. The same fields as a publish but
 * delays and idempotency keys; durations in seconds.
 */
export interface FlowSpec {
  /** The job's queue (created as a publish would create it). */
  queue: string;
  /** Its body: any JSON but null. */
  message: unknown;
  /** 0–9; the queue's default priority when absent. */
  priority?: number;
  /** Its group (1–255 bytes, no control characters). */
  group?: string;
  /** String headers. */
  headers?: Record<string, string>;
  /** Seconds it may live unacked once ready (a parent's count from when its children finished). */
  ttl?: number;
  /** Retries after the first delivery, instead of the queue's setting. */
  maxRetries?: number;
  /**
   * What a failed child does to this job: `fail` (the default: it is dead-lettered with
   * reason `child_failed` and its unfinished children are cancelled), `continue` (it runs
   * once all are finished, with each child's state), `ignore` (as `continue`, failed children
   * left out of its delivery).
   */
  onChildFailure?: OnChildFailure;
  /** The jobs it waits for (nested, on any queues). */
  children?: FlowSpec[];
}

/** One job `flows.add` made, with its children's. */
export interface FlowJob {
  messageId: string;
  queue: string;
  children: FlowJob[];
}

/** What `flows.add` answers: the flow's id and its root job with every job below it. */
export interface FlowCreated {
  flowId: string;
  /** The root job's message id. */
  messageId: string;
  /** The root job's queue. */
  queue: string;
  children: FlowJob[];
}

/**
 * Where a job of a flow is, or how it finished (`expired`: its TTL passed; `purged`, and
 * `queue_deleted`: its queue was deleted before it finished).
 */
export type FlowJobState =
  | 'waiting_children' | 'delayed' | 'ready' | 'in_flight' | 'completed' | 'dead_lettered' | 'expired'
  | 'cancelled' | 'purged' | 'queue_deleted';

/** A finished child as its parent's delivery carries it. */
export interface FlowChild<R = unknown> {
  messageId: string;
  queue: string;
  /** How it finished. */
  state: FlowJobState;
  /** What its ack carried; null if nothing. */
  result: R | null;
  /** Why it was dead-lettered (`dead_lettered` and `expired` only). */
  reason?: string;
}

/** One job of `flows.get`, with its children. Times are Unix ms. */
export interface FlowNode<R = unknown> {
  messageId: string;
  queue: string;
  state: FlowJobState;
  /** Why it was dead-lettered: `rejected`, `max_retries_exceeded`, `expired`, `snoozed_out`, `child_failed`. */
  reason?: string;
  /** Its result while the flow or the job's retention keeps it; null otherwise. */
  result: R | null;
  /** When it finished; null while unfinished. */
  finishedAt: number | null;
  onChildFailure: OnChildFailure;
  children: FlowNode<R>[];
}

/** What `flows.get` answers: the flow, its root job's state (the flow's) and its tree. Times are Unix ms. */
export interface Flow<R = unknown> {
  flowId: string;
  createdAt: number;
  /** When the root job finished; null while the flow runs. */
  finishedAt: number | null;
  /** The root job's message id. */
  messageId: string;
  /** The root job's queue. */
  queue: string;
  state: FlowJobState;
  /** Why the root was dead-lettered (`child_failed` when a child failed under `fail`). */
  reason?: string;
  result: R | null;
  onChildFailure: OnChildFailure;
  children: FlowNode<R>[];
}
