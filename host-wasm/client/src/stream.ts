import { SynapError, closedError } from './errors.js';
import { Inbox } from './inbox.js';
import { openSocket, type Socket } from './socket.js';
import { describe, seg, type Transport } from './transport.js';
import { obj, publishBody, toPublishResult, toQueueMessage } from './convert.js';
import type { NackAction, NackOptions, PublishOptions, PublishResult, QueueMessage, StreamOptions } from './types.js';

/** Most calls awaiting their answer on one stream; beyond it a call is refused at once. */
const MAX_PENDING = 10_000;
/** Most pushed messages held unread (the server pushes at most `prefetch`, ≤ 1000, plus redeliveries). */
const MAX_INBOX = 4_096;

interface Pending {
  resolve: (frame: Record<string, unknown>) => void;
  reject: (e: SynapError) => void;
}

/** `nack` options on a stream: whether to requeue, plus the REST nack's options. */
export interface StreamNackOptions extends NackOptions {
  /** Retry (true, the default) or dead-letter at once (false). */
  requeue?: boolean;
}

/**
 * A streaming consumer over `GET /queue/{name}/ws`: an async iterator of pushed messages. The
 * server pushes at most `prefetch` unsettled messages; each ack or nack earns one more. Calls
 * (ack, nack, extend, publish) may overlap: each frame carries an id and gets one answer.
 *
 * When the connection is lost, the iterator throws a `SynapError` with code `closed`, and so
 * does every call still waiting; after `close()` the iterator simply ends. Messages the
 * stream held unsettled go back to the queue at once (the server nacks them).
 */
export class QueueStream<T = unknown> implements AsyncIterable<QueueMessage<T>> {
  /** The consumer id the server confirmed. */
  consumerId = '';
  /** The prefetch the server confirmed. */
  prefetch = 0;
  private socket: Socket | undefined;
  private readonly inbox = new Inbox<QueueMessage<T>>(MAX_INBOX);
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private closing = false;

  private constructor(readonly queue: string) {}

  /** Opens the stream and waits for the server's `connected` frame. */
  static async open<T>(t: Transport, queue: string, opts: StreamOptions = {}): Promise<QueueStream<T>> {
    const q = new URLSearchParams();
    if (opts.consumerId !== undefined) q.set('consumer_id', opts.consumerId);
    if (opts.prefetch !== undefined) q.set('prefetch', String(opts.prefetch));
    if (opts.ackDeadline !== undefined) q.set('ack_deadline', String(opts.ackDeadline));
    const stream = new QueueStream<T>(queue);
    let ready!: (v: void) => void;
    let fail!: (e: SynapError) => void;
    const connected = new Promise<void>((res, rej) => {
      ready = res;
      fail = rej;
    });
    stream.socket = await openSocket(t.wsUrl(`/queue/${seg(queue)}/ws`, q), t.apiKey, {
      message: (text) => stream.onFrame(text, ready, fail),
      closed: (clean, reason) => {
        fail(closedError(`queue stream ${queue}`));
        stream.onClosed(clean, reason);
      },
    });
    await connected;
    return stream;
  }

  private onFrame(text: string, ready: () => void, fail: (e: SynapError) => void): void {
    let frame: Record<string, unknown>;
    try {
      frame = obj(JSON.parse(text), 'queue stream frame');
    } catch (e) {
      this.abort(new SynapError(`queue stream ${this.queue}: bad frame: ${describe(e)}`, 'decode', 0));
      return;
    }
    switch (frame.type) {
      case 'connected':
        this.consumerId = String(frame.consumer_id ?? '');
        this.prefetch = Number(frame.prefetch ?? 0);
        ready();
        return;
      case 'message':
        try {
          this.inbox.push(toQueueMessage<T>(frame));
        } catch (e) {
          this.abort(e instanceof SynapError ? e : new SynapError(describe(e), 'decode', 0));
        }
        return;
      default:
        this.onAnswer(frame, fail);
    }
  }

  private onAnswer(frame: Record<string, unknown>, fail: (e: SynapError) => void): void {
    const id = typeof frame.id === 'number' ? frame.id : undefined;
    const call = id === undefined ? undefined : this.pending.get(id);
    const error = frame.type === 'error'
      ? new SynapError(String(frame.error ?? 'error'), String(frame.code ?? 'error'), 0)
      : undefined;
    if (call === undefined || id === undefined) {
      // An error not tied to a call of ours (e.g. consuming failed): the server closes next.
      if (error) {
        fail(error);
        this.abort(error);
      }
      return;
    }
    this.pending.delete(id);
    if (error) call.reject(error);
    else call.resolve(frame);
  }

  private onClosed(clean: boolean, reason: string): void {
    const err = closedError(`queue stream ${this.queue}${reason ? ` (${reason})` : ''}`);
    for (const call of this.pending.values()) call.reject(err);
    this.pending.clear();
    // After close() the end is expected, whatever the close code; otherwise it is a loss.
    void clean;
    this.inbox.end(this.closing ? undefined : err);
  }

  private abort(e: SynapError): void {
    for (const call of this.pending.values()) call.reject(e);
    this.pending.clear();
    this.inbox.end(e);
    this.socket?.close();
  }

  private call(frame: Record<string, unknown>): Promise<Record<string, unknown>> {
    if (this.inbox.isEnded || this.closing) return Promise.reject(closedError(`queue stream ${this.queue}`));
    if (this.pending.size >= MAX_PENDING) {
      return Promise.reject(new SynapError(`more than ${MAX_PENDING} calls awaiting answers`, 'limit_exceeded', 0));
    }
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      if (!this.socket?.send(JSON.stringify({ ...frame, id }))) {
        this.pending.delete(id);
        reject(closedError(`queue stream ${this.queue}`));
      }
    });
  }

  /** Acks a pushed message (pass its `lease` so a stale delivery is refused). */
  async ack(messageId: string, lease?: number): Promise<void> {
    await this.call({ op: 'ack', message_id: messageId, ...(lease === undefined ? {} : { lease }) });
  }

  /** Nacks a pushed message: retried (default) or dead-lettered with `requeue: false`. */
  async nack(messageId: string, opts: StreamNackOptions = {}): Promise<NackAction> {
    const frame: Record<string, unknown> = { op: 'nack', message_id: messageId, requeue: opts.requeue ?? true };
    if (opts.delay !== undefined) frame.delay = opts.delay;
    if (opts.error !== undefined) frame.error = opts.error;
    if (opts.lease !== undefined) frame.lease = opts.lease;
    const answer = await this.call(frame);
    return answer.action as NackAction;
  }

  /** Extends a lease to now + `ackDeadline` seconds; returns the new deadline (Unix ms). */
  async extend(messageId: string, ackDeadline: number, lease?: number): Promise<number> {
    const frame: Record<string, unknown> = { op: 'extend', message_id: messageId, ack_deadline: ackDeadline };
    if (lease !== undefined) frame.lease = lease;
    const answer = await this.call(frame);
    return Number(answer.lease_deadline);
  }

  /** Publishes on the stream's queue and waits for the confirm. */
  async publish(message: unknown, opts: PublishOptions = {}): Promise<PublishResult> {
    return toPublishResult(await this.call({ op: 'publish', ...publishBody(message, opts) }));
  }

  /** The next pushed message; `null` once the stream was closed with `close()`. */
  async next(): Promise<QueueMessage<T> | null> {
    const r = await this.inbox.next();
    return r.done ? null : r.value;
  }

  /** Closes the connection; the server gives unsettled messages back to the queue. */
  close(): void {
    this.closing = true;
    this.inbox.end(undefined, true);
    this.socket?.close();
  }

  [Symbol.asyncIterator](): AsyncIterator<QueueMessage<T>> {
    return {
      next: () => this.inbox.next(),
      return: async () => {
        this.close();
        return { value: undefined, done: true };
      },
    };
  }
}
