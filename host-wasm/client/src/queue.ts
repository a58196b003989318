import { SynapError } from './errors.js';
import { QueueStream } from './stream.js';
import { withKey } from './failover.js';
import { camelize, seg, type Transport } from './transport.js';
import {
  configBody, obj, publishBody, toDeadLetter, toGroupInfo, toJob, toPublishResult, toQueueMessage, toSchedule,
} from './convert.js';
import type {
  AckBatchResult, AckEntry, AckOptions, BatchMessage, CancelResult, ConsumeOptions, DlqPage, GroupInfo,
  Job, JobState, NackAction, NackOptions, ProgressOptions, ProgressResult, PublishOptions, PublishResult,
  QueueConfig, QueueMessage, QueueStats, Schedule, ScheduleSet, ScheduleSpec, StreamOptions,
} from './types.js';

/** A queue's schedules: `client.queue.schedules`. Each run publishes the schedule's message as a job. */
export class ScheduleApi {
  constructor(private readonly t: Transport) {}

  /** Creates or replaces schedule `id` of queue `name` (a replaced one keeps its runs). */
  async put(name: string, id: string, spec: ScheduleSpec): Promise<ScheduleSet> {
    const body: Record<string, unknown> = { message: spec.message === undefined ? null : spec.message };
    if (spec.everySecs !== undefined) body.every_secs = spec.everySecs;
    if (spec.cron !== undefined) body.cron = spec.cron;
    if (spec.priority !== undefined) body.priority = spec.priority;
    if (spec.headers !== undefined) body.headers = spec.headers;
    if (spec.startAt !== undefined) body.start_at = spec.startAt;
    if (spec.endAt !== undefined) body.end_at = spec.endAt;
    if (spec.maxRuns !== undefined) body.max_runs = spec.maxRuns;
    const r = obj(await this.t.request('PUT', `/queue/${seg(name)}/schedules/${seg(id)}`, body), 'schedule put');
    return {
      id: String(r.id),
      nextRunAt: typeof r.next_run_at === 'number' ? r.next_run_at : null,
      created: r.created === true,
    };
  }

  /** The queue's schedules by id, with `nextRunAt`, `lastRunAt` and `runs`. */
  async list<T = unknown>(name: string): Promise<Schedule<T>[]> {
    const r = obj(await this.t.request('GET', `/queue/${seg(name)}/schedules`), 'schedules');
    return (r.schedules as unknown[]).map((s) => toSchedule<T>(s));
  }

  /** Deletes a schedule; false if there was none. */
  async delete(name: string, id: string): Promise<boolean> {
    const r = obj(await this.t.request('DELETE', `/queue/${seg(name)}/schedules/${seg(id)}`), 'schedule delete');
    return r.deleted === true;
  }

  /** Publishes one run of the schedule now (never resent after an unanswered attempt: it has no key). */
  async run(name: string, id: string): Promise<PublishResult> {
    const path = `/queue/${seg(name)}/schedules/${seg(id)}/run`;
    return toPublishResult(await this.t.request('POST', path, undefined, { once: true }));
  }
}

/** Queue operations: `client.queue`. Durations are seconds (fractions allowed). */
export class QueueApi {
  /** Recurring work: `put`, `list`, `delete` and `run` a queue's schedules. */
  readonly schedules: ScheduleApi;

  constructor(private readonly t: Transport) {
    this.schedules = new ScheduleApi(t);
  }

  /**
   * Creates a queue, or sets an existing one's settings when `config` has any (the flow
   * settings included: `maxInFlight`, `groupConcurrency`, `orderedGroups`, `fairGroups`,
   * `rateLimit`, `groupRateLimit`, `maxSnoozes`; a change applies at once).
   */
  async create(name: string, config: QueueConfig = {}): Promise<{ created: boolean }> {
    const r = obj(await this.t.request('POST', `/queue/${seg(name)}`, configBody(config)), 'create');
    return { created: r.created === true };
  }

  /** Names of all queues, sorted. */
  async list(): Promise<string[]> {
    const r = obj(await this.t.request('GET', '/queue/list'), 'list');
    return r.queues as string[];
  }

  /** Deletes a queue with its messages; false if there was none. */
  async delete(name: string): Promise<boolean> {
    const r = obj(await this.t.request('DELETE', `/queue/${seg(name)}`), 'delete');
    return r.deleted === true;
  }

  /** Removes ready and delayed messages (not those in flight); returns how many. Never resent after an unanswered attempt. */
  async purge(name: string): Promise<number> {
    const r = obj(await this.t.request('POST', `/queue/${seg(name)}/purge`, undefined, { once: true }), 'purge');
    return Number(r.purged);
  }

  /**
   * Publishes one message (any JSON). With several server URLs, an unanswered publish is
   * resent to the leader under the same idempotency key (generated when none is given).
   */
  async publish(name: string, message: unknown, opts: PublishOptions = {}): Promise<PublishResult> {
    const body = publishBody(message, withKey(this.t.autoKeys, opts));
    // Without a key a resend could add a second message.
    const once = { once: body.idempotency_key === undefined };
    return toPublishResult(await this.t.request('POST', `/queue/${seg(name)}/publish`, body, once));
  }

  /** Publishes several messages, all or none (each gets its own key as `publish` does). */
  async publishBatch(name: string, messages: BatchMessage[]): Promise<PublishResult[]> {
    const body = { messages: messages.map(({ message, ...opts }) => publishBody(message, withKey(this.t.autoKeys, opts))) };
    const once = { once: body.messages.some((m) => m.idempotency_key === undefined) };
    const r = obj(await this.t.request('POST', `/queue/${seg(name)}/publish_batch`, body, once), 'publish_batch');
    return (r.messages as unknown[]).map(toPublishResult);
  }

  /**
   * Takes one message, waiting up to `timeout` seconds; `null` when the wait ends empty. Takes
   * exactly one: a `maxMessages` other than 1 is refused (use `consumeBatch`), since extra
   * leased messages would have nowhere to go.
   */
  async consume<T = unknown>(name: string, opts: ConsumeOptions = {}): Promise<QueueMessage<T> | null> {
    if (opts.maxMessages !== undefined && opts.maxMessages !== 1) {
      throw new SynapError('consume takes one message; use consumeBatch for more', 'invalid_argument', 0);
    }
    const [first] = await this.consumeBatch<T>(name, { ...opts, maxMessages: 1 });
    return first ?? null;
  }

  /** Takes up to `maxMessages` (1–100) messages; empty when the wait ends with none. */
  async consumeBatch<T = unknown>(name: string, opts: ConsumeOptions = {}): Promise<QueueMessage<T>[]> {
    const body: Record<string, unknown> = {};
    if (opts.timeout !== undefined) body.timeout = opts.timeout;
    if (opts.ackDeadline !== undefined) body.ack_deadline = opts.ackDeadline;
    if (opts.consumerId !== undefined) body.consumer_id = opts.consumerId;
    if (opts.maxMessages !== undefined) body.max_messages = opts.maxMessages;
    const wait = { wait: opts.timeout ?? 0 };
    const r = obj(await this.t.request('POST', `/queue/${seg(name)}/consume`, body, wait), 'consume');
    return (r.messages as unknown[]).map((m) => toQueueMessage<T>(m));
  }

  /**
   * Acks a message; with `lease`, a stale delivery's ack is refused (`lease_mismatch`). With
   * `result`, the completed job keeps it for `job` and `waitFor`. An ack resent after a
   * failover that finds the message gone (`message_not_found`) counts as done: its first
   * attempt acked it.
   */
  async ack(name: string, messageId: string, lease?: number, opts: AckOptions = {}): Promise<void> {
    const body: Record<string, unknown> = { message_id: messageId };
    if (lease !== undefined) body.lease = lease;
    if (opts.result !== undefined) body.result = opts.result;
    await this.t.request('POST', `/queue/${seg(name)}/ack`, body, { doneIf: ['message_not_found'] });
  }

  /** A job as it is now; 404 `message_not_found` once a finished job is no longer kept. */
  async job<T = unknown, R = unknown>(name: string, messageId: string): Promise<Job<T, R>> {
    return toJob<T, R>(await this.t.request('GET', `/queue/${seg(name)}/messages/${seg(messageId)}`));
  }

  /**
   * Waits up to `timeout` seconds (default 30, capped by the server) for a job to finish
   * (completed, dead-lettered or cancelled); answers it then, or as it is when the wait ends.
   */
  async waitFor<T = unknown, R = unknown>(name: string, messageId: string, opts: { timeout?: number } = {}): Promise<Job<T, R>> {
    const qs = opts.timeout === undefined ? '' : `?timeout=${encodeURIComponent(String(opts.timeout))}`;
    const wait = { wait: opts.timeout ?? 30 };
    return toJob<T, R>(await this.t.request('GET', `/queue/${seg(name)}/messages/${seg(messageId)}/wait${qs}`, undefined, wait));
  }

  /**
   * Reports progress (any JSON up to 4 KiB) on a leased job; `extend` also extends its lease.
   * `cancelled: true` says the job was cancelled: stop and ack or nack it.
   */
  async progress(name: string, messageId: string, progress: unknown, opts: ProgressOptions = {}): Promise<ProgressResult> {
    const body: Record<string, unknown> = { message_id: messageId, progress: progress === undefined ? null : progress };
    if (opts.lease !== undefined) body.lease = opts.lease;
    if (opts.extend !== undefined) body.extend = opts.extend;
    const r = obj(await this.t.request('POST', `/queue/${seg(name)}/progress`, body), 'progress');
    return { cancelled: r.cancelled === true, leaseDeadline: Number(r.lease_deadline) };
  }

  /**
   * Cancels a job: a ready or delayed one at once (`state: 'cancelled'`), an in-flight one is
   * marked (`state: 'in_flight'`) and settles as cancelled when its delivery ends. A finished
   * job is refused with 409 `already_finished`.
   */
  async cancel(name: string, messageId: string): Promise<CancelResult> {
    const r = obj(await this.t.request('POST', `/queue/${seg(name)}/cancel`, { message_id: messageId }), 'cancel');
    return { state: r.state as JobState };
  }

  /** Acks several messages; those refused are listed with their codes. */
  async ackBatch(name: string, acks: AckEntry[]): Promise<AckBatchResult> {
    const body = { acks: acks.map((a) => ({ message_id: a.messageId, ...(a.lease === undefined ? {} : { lease: a.lease }) })) };
    const r = obj(await this.t.request('POST', `/queue/${seg(name)}/ack_batch`, body), 'ack_batch');
    const failed = (r.failed as { message_id: string; code: string }[]).map((f) => ({ messageId: f.message_id, code: f.code }));
    return { acked: Number(r.acked), failed };
  }

  /**
   * Gives a message back: retried when `requeue` (the default), else dead-lettered. Resent
   * after an unanswered attempt only with `lease` (without one it could settle a later
   * delivery); a resend whose first attempt landed is refused with `lease_mismatch`.
   */
  async nack(name: string, messageId: string, requeue = true, opts: NackOptions = {}): Promise<NackAction> {
    if (opts.snooze === true && !requeue) {
      throw new SynapError('a snooze brings the message back: it needs requeue true', 'invalid_argument', 0);
    }
    const body: Record<string, unknown> = { message_id: messageId, requeue };
    if (opts.delay !== undefined) body.delay = opts.delay;
    if (opts.error !== undefined) body.error = opts.error;
    if (opts.lease !== undefined) body.lease = opts.lease;
    if (opts.snooze !== undefined) body.snooze = opts.snooze;
    const once = { once: opts.lease === undefined };
    const r = obj(await this.t.request('POST', `/queue/${seg(name)}/nack`, body, once), 'nack');
    return r.action as NackAction;
  }

  /** Moves a lease's deadline to now + `ackDeadline` seconds; returns it (Unix ms). */
  async extend(name: string, messageId: string, ackDeadline: number, lease?: number): Promise<number> {
    const body: Record<string, unknown> = { message_id: messageId, ack_deadline: ackDeadline };
    if (lease !== undefined) body.lease = lease;
    const r = obj(await this.t.request('POST', `/queue/${seg(name)}/extend`, body), 'extend');
    return Number(r.lease_deadline);
  }

  /** The queue's statistics, camelCase. */
  async stats(name: string): Promise<QueueStats> {
    return camelize(await this.t.request('GET', `/queue/${seg(name)}/stats`)) as QueueStats;
  }

  /** A page of the dead-letter queue, oldest first (`limit` 1–1000, default 100). */
  async dlqList<T = unknown>(name: string, opts: { offset?: number; limit?: number } = {}): Promise<DlqPage<T>> {
    const q = new URLSearchParams();
    if (opts.offset !== undefined) q.set('offset', String(opts.offset));
    if (opts.limit !== undefined) q.set('limit', String(opts.limit));
    const qs = q.toString();
    const r = obj(await this.t.request('GET', `/queue/${seg(name)}/dlq${qs ? `?${qs}` : ''}`), 'dlq');
    return { total: Number(r.total), messages: (r.messages as unknown[]).map((m) => toDeadLetter<T>(m)) };
  }

  /**
   * Puts dead letters back on the queue (all of them without `messageIds`); returns how many.
   * Never resent after an unanswered attempt.
   */
  async dlqRetry(name: string, messageIds?: string[]): Promise<number> {
    const body = messageIds === undefined ? {} : { message_ids: messageIds };
    const r = obj(await this.t.request('POST', `/queue/${seg(name)}/dlq/retry`, body, { once: true }), 'dlq retry');
    return Number(r.retried);
  }

  /** Empties the dead-letter queue; returns how many were removed. Never resent after an unanswered attempt. */
  async dlqPurge(name: string): Promise<number> {
    const r = obj(await this.t.request('POST', `/queue/${seg(name)}/dlq/purge`, undefined, { once: true }), 'dlq purge');
    return Number(r.purged);
  }

  /**
   * Pauses the queue: it goes on taking publishes, acks and nacks and delivers nothing until
   * `resume`. Returns whether it is paused (true). 404 `queue_not_found` for an unknown queue.
   */
  async pause(name: string): Promise<boolean> {
    const r = obj(await this.t.request('POST', `/queue/${seg(name)}/pause`), 'pause');
    return r.paused === true;
  }

  /** Resumes a paused queue (its waiting consumers are served at once); returns whether it is paused (false). */
  async resume(name: string): Promise<boolean> {
    const r = obj(await this.t.request('POST', `/queue/${seg(name)}/resume`), 'resume');
    return r.paused === true;
  }

  /**
   * No deliveries from the queue for `forSecs` seconds (more than 0), what a worker does when
   * its downstream answered 429. A later call can lengthen the pause, never shorten it.
   * Returns the time deliveries resume, Unix ms.
   */
  async rateLimit(name: string, forSecs: number): Promise<number> {
    if (typeof forSecs !== 'number' || !Number.isFinite(forSecs) || forSecs <= 0) {
      throw new SynapError('rateLimit: forSecs must be a number of seconds above 0', 'invalid_argument', 0);
    }
    const r = obj(await this.t.request('POST', `/queue/${seg(name)}/rate_limit`, { for_secs: forSecs }), 'rate_limit');
    return Number(r.rate_limited_until_ms);
  }

  /**
   * The groups holding messages (ready, delayed or in flight), largest first, then by name;
   * at most `limit` (1–1000, the server's 100 when absent).
   */
  async groups(name: string, limit?: number): Promise<GroupInfo[]> {
    if (limit !== undefined && !(Number.isInteger(limit) && limit >= 1 && limit <= 1000)) {
      throw new SynapError('groups: limit must be an integer 1–1000', 'invalid_argument', 0);
    }
    const qs = limit === undefined ? '' : `?limit=${limit}`;
    const r = obj(await this.t.request('GET', `/queue/${seg(name)}/groups${qs}`), 'groups');
    if (!Array.isArray(r.groups)) throw new SynapError('groups: expected an array', 'decode', 0);
    return r.groups.map(toGroupInfo);
  }

  /** Opens a streaming consumer (WebSocket) on the queue; see `QueueStream`. */
  stream<T = unknown>(name: string, opts: StreamOptions = {}): Promise<QueueStream<T>> {
    return QueueStream.open<T>(this.t, name, opts);
  }
}
