import { SynapError } from './errors.js';
import type {
  DeadLetter, Flow, FlowChild, FlowCreated, FlowJob, FlowJobState, FlowNode, GroupInfo, Job, JobState,
  OnChildFailure, PublishOptions, PublishResult, PubSubMessage, QueueConfig, QueueMessage, Schedule,
} from './types.js';

type Raw = Record<string, unknown>;

/** Checks that a server answer is a JSON object. */
export function obj(v: unknown, what: string): Raw {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) {
    throw new SynapError(`${what}: expected an object, got ${JSON.stringify(v)?.slice(0, 100)}`, 'decode', 0);
  }
  return v as Raw;
}

function num(r: Raw, k: string): number {
  const v = r[k];
  if (typeof v !== 'number') throw new SynapError(`field ${k}: expected a number`, 'decode', 0);
  return v;
}

function str(r: Raw, k: string): string {
  const v = r[k];
  if (typeof v !== 'string') throw new SynapError(`field ${k}: expected a string`, 'decode', 0);
  return v;
}

function headers(r: Raw): Record<string, string> {
  const h = r.headers;
  return h !== null && typeof h === 'object' ? (h as Record<string, string>) : {};
}

/** A server delivery (REST consume or a queue WebSocket `message` frame) as a `QueueMessage`. */
export function toQueueMessage<T>(v: unknown): QueueMessage<T> {
  const r = obj(v, 'delivery');
  const m: QueueMessage<T> = {
    messageId: str(r, 'message_id'),
    queue: str(r, 'queue'),
    message: r.message as T,
    priority: num(r, 'priority'),
    retryCount: num(r, 'retry_count'),
    maxRetries: num(r, 'max_retries'),
    headers: headers(r),
    lease: num(r, 'lease'),
    leaseDeadline: num(r, 'lease_deadline'),
    publishedAt: num(r, 'published_at'),
  };
  if (Array.isArray(r.payload)) m.payload = r.payload as number[];
  if (typeof r.group === 'string') m.group = r.group;
  if (r.children !== undefined && r.children !== null) m.children = list(r, 'children').map((c) => toFlowChild(c));
  return m;
}

/** `r[k]` as an array, or a decode error. */
function list(r: Raw, k: string): unknown[] {
  const v = r[k];
  if (!Array.isArray(v)) throw new SynapError(`field ${k}: expected an array`, 'decode', 0);
  return v;
}

/** A child of a parent's delivery as a `FlowChild`; its result stays as sent. */
export function toFlowChild<R = unknown>(v: unknown): FlowChild<R> {
  const r = obj(v, 'flow child');
  const c: FlowChild<R> = {
    messageId: str(r, 'message_id'),
    queue: str(r, 'queue'),
    state: str(r, 'state') as FlowJobState,
    result: (r.result ?? null) as R | null,
  };
  if (typeof r.reason === 'string') c.reason = r.reason;
  return c;
}

function toFlowJob(v: unknown): FlowJob {
  const r = obj(v, 'flow job');
  return { messageId: str(r, 'message_id'), queue: str(r, 'queue'), children: list(r, 'children').map(toFlowJob) };
}

/** The answer of `POST /flows` as a `FlowCreated`. */
export function toFlowCreated(v: unknown): FlowCreated {
  const r = obj(v, 'flow added');
  return {
    flowId: str(r, 'flow_id'),
    messageId: str(r, 'message_id'),
    queue: str(r, 'queue'),
    children: list(r, 'children').map(toFlowJob),
  };
}

/** One job of `GET /flows/{id}` as a `FlowNode`, its children with it. */
export function toFlowNode<R = unknown>(v: unknown): FlowNode<R> {
  const r = obj(v, 'flow node');
  const n: FlowNode<R> = {
    messageId: str(r, 'message_id'),
    queue: str(r, 'queue'),
    state: str(r, 'state') as FlowJobState,
    result: (r.result ?? null) as R | null,
    finishedAt: optNum(r, 'finished_at'),
    onChildFailure: str(r, 'on_child_failure') as OnChildFailure,
    children: list(r, 'children').map((c) => toFlowNode<R>(c)),
  };
  if (typeof r.reason === 'string') n.reason = r.reason;
  return n;
}

/** `GET /flows/{id}` as a `Flow`. */
export function toFlow<R = unknown>(v: unknown): Flow<R> {
  const r = obj(v, 'flow');
  const f: Flow<R> = {
    flowId: str(r, 'flow_id'),
    createdAt: num(r, 'created_at'),
    finishedAt: optNum(r, 'finished_at'),
    messageId: str(r, 'message_id'),
    queue: str(r, 'queue'),
    state: str(r, 'state') as FlowJobState,
    result: (r.result ?? null) as R | null,
    onChildFailure: str(r, 'on_child_failure') as OnChildFailure,
    children: list(r, 'children').map((c) => toFlowNode<R>(c)),
  };
  if (typeof r.reason === 'string') f.reason = r.reason;
  return f;
}

/** One entry of `GET /queue/{name}/groups` as a `GroupInfo`. */
export function toGroupInfo(v: unknown): GroupInfo {
  const r = obj(v, 'group');
  return { group: str(r, 'group'), ready: num(r, 'ready'), inFlight: num(r, 'in_flight'), delayed: num(r, 'delayed') };
}

/** The longest group name, in UTF-8 bytes. */
export const MAX_GROUP_BYTES = 255;

/** Refuses (`invalid_argument`) a group the server would refuse: 1–255 bytes, no control characters. */
export function checkGroup(group: unknown): void {
  if (typeof group !== 'string' || group.length === 0) {
    throw new SynapError('group must be a non-empty string', 'invalid_argument', 0);
  }
  if (new TextEncoder().encode(group).length > MAX_GROUP_BYTES) {
    throw new SynapError(`group must be at most ${MAX_GROUP_BYTES} bytes`, 'invalid_argument', 0);
  }
  if (/\p{Cc}/u.test(group)) {
    throw new SynapError('group must not contain control characters', 'invalid_argument', 0);
  }
}

/**
 * A queue's settings in the server's snake_case, nested objects included (`rateLimit:
 * {max, perSecs}` becomes `rate_limit: {max, per_secs}`); absent fields are left out.
 */
export function configBody(config: QueueConfig): Raw {
  const snake = (v: unknown): unknown => {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return v;
    const out: Raw = {};
    for (const [k, x] of Object.entries(v)) {
      if (x !== undefined) out[k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)] = snake(x);
    }
    return out;
  };
  return snake(config) as Raw;
}

/** A DLQ entry as a `DeadLetter`. */
export function toDeadLetter<T>(v: unknown): DeadLetter<T> {
  const r = obj(v, 'dead letter');
  const d: DeadLetter<T> = {
    messageId: str(r, 'message_id'),
    message: r.message as T,
    priority: num(r, 'priority'),
    headers: headers(r),
    reason: str(r, 'reason'),
    attempts: num(r, 'attempts'),
    lastError: typeof r.last_error === 'string' ? r.last_error : null,
    originQueue: str(r, 'origin_queue'),
    publishedAt: num(r, 'published_at'),
    deadLetteredAt: num(r, 'dead_lettered_at'),
  };
  if (Array.isArray(r.payload)) d.payload = r.payload as number[];
  return d;
}

/** A pub/sub `message` frame as a `PubSubMessage`. */
export function toPubSubMessage<T>(v: unknown): PubSubMessage<T> {
  const r = obj(v, 'pub/sub message');
  return {
    topic: str(r, 'topic'),
    message: r.message as T,
    messageId: str(r, 'message_id'),
    publishedAt: num(r, 'published_at'),
    headers: headers(r),
  };
}

/** `{message_id, position}` as a `PublishResult`. */
export function toPublishResult(v: unknown): PublishResult {
  const r = obj(v, 'publish answer');
  const position = r.position;
  const p: PublishResult = { messageId: str(r, 'message_id'), position: typeof position === 'number' ? position : null };
  if (r.duplicate === true) p.duplicate = true;
  if (r.replaced === true) p.replaced = true;
  return p;
}

function optNum(r: Raw, k: string): number | null {
  const v = r[k];
  return typeof v === 'number' ? v : null;
}

function optStr(r: Raw, k: string): string | null {
  const v = r[k];
  return typeof v === 'string' ? v : null;
}

/** A job lookup (`GET /queue/{name}/messages/{id}`) as a `Job`; bodies stay as sent. */
export function toJob<T, R>(v: unknown): Job<T, R> {
  const r = obj(v, 'job');
  const j: Job<T, R> = {
    messageId: str(r, 'message_id'),
    queue: str(r, 'queue'),
    state: str(r, 'state') as JobState,
    priority: num(r, 'priority'),
    group: optStr(r, 'group'),
    attempts: num(r, 'attempts'),
    progress: r.progress ?? null,
    result: (r.result ?? null) as R | null,
    lastError: optStr(r, 'last_error'),
    publishedAt: num(r, 'published_at'),
    startedAt: optNum(r, 'started_at'),
    finishedAt: optNum(r, 'finished_at'),
    message: r.message as T,
    headers: headers(r),
    cancelRequested: r.cancel_requested === true,
  };
  if (Array.isArray(r.payload)) j.payload = r.payload as number[];
  if (typeof r.dead_letter_reason === 'string') j.deadLetterReason = r.dead_letter_reason;
  if (typeof r.flow_id === 'string') j.flowId = r.flow_id;
  if (typeof r.parent_id === 'string') j.parentId = r.parent_id;
  if (Array.isArray(r.children)) j.children = r.children as string[];
  return j;
}

/** A schedule of `GET /queue/{name}/schedules` as a `Schedule`. */
export function toSchedule<T>(v: unknown): Schedule<T> {
  const r = obj(v, 'schedule');
  return {
    id: str(r, 'id'),
    everySecs: optNum(r, 'every_secs'),
    cron: optStr(r, 'cron'),
    message: r.message as T,
    priority: optNum(r, 'priority'),
    headers: headers(r),
    startAt: optNum(r, 'start_at'),
    endAt: optNum(r, 'end_at'),
    maxRuns: optNum(r, 'max_runs'),
    nextRunAt: optNum(r, 'next_run_at'),
    lastRunAt: optNum(r, 'last_run_at'),
    runs: num(r, 'runs'),
    lastMessageId: optStr(r, 'last_message_id'),
    lastError: optStr(r, 'last_error'),
  };
}

/** A publish body: the message plus its options in the server's snake_case. */
export function publishBody(message: unknown, opts: PublishOptions = {}): Raw {
  const body: Raw = { message: message === undefined ? null : message };
  if (opts.priority !== undefined) body.priority = opts.priority;
  if (opts.headers !== undefined) body.headers = opts.headers;
  if (opts.delay !== undefined) body.delay = opts.delay;
  if (opts.ttl !== undefined) body.ttl = opts.ttl;
  if (opts.maxRetries !== undefined) body.max_retries = opts.maxRetries;
  if (opts.idempotencyKey !== undefined) body.idempotency_key = opts.idempotencyKey;
  if (opts.dedup !== undefined) body.dedup = opts.dedup;
  if (opts.debounce !== undefined) body.debounce = opts.debounce;
  if (opts.group !== undefined) {
    checkGroup(opts.group);
    body.group = opts.group;
  }
  return body;
}
