import { SynapError, closedError } from './errors.js';
import { isMove, withKey } from './failover.js';
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
  /** The frame without its id, kept to be sent again after a reconnect. */
  frame: Record<string, unknown>;
  /** The connection it was last sent on. */
  sentOn: Conn | undefined;
  /** Whether it was sent again on a new connection. */
  resent: boolean;
  resolve: (frame: Record<string, unknown>) => void;
  reject: (e: SynapError) => void;
}

/** One connection of a stream (a reconnect opens another). */
interface Conn {
  base: string;
  socket: Socket | undefined;
  /** The server's `connected` frame arrived. */
  connected: boolean;
  /** An error frame not tied to a call: why the server is ending the connection. */
  error: SynapError | undefined;
  ready: () => void;
  fail: (e: SynapError) => void;
}

/** `nack` options on a stream: whether to requeue, plus the REST nack's options. */
export interface StreamNackOptions extends NackOptions {
  /** Retry (true, the default) or dead-letter at once (false). */
  requeue?: boolean;
}

/**
 * Whether a frame sent on a lost connection may be sent again: a nack only with its lease (it
 * could settle a later delivery), a publish only with its idempotency key.
 */
function resendable(frame: Record<string, unknown>): boolean {
  if (frame.op === 'nack') return frame.lease !== undefined;
  if (frame.op === 'publish') return frame.idempotency_key !== undefined;
  return true;
}

/** Errors after which a stream's connection is tried again elsewhere (several URLs only). */
function reconnectable(e: SynapError): boolean {
  return isMove(e) || ['transport', 'websocket', 'closed'].includes(e.code);
}

/**
 * A streaming consumer over `GET /queue/{name}/ws`: an async iterator of pushed messages. The
 * server pushes at most `prefetch` unsettled messages; each ack or nack earns one more. Calls
 * (ack, nack, extend, publish) may overlap: each frame carries an id and gets one answer.
 *
 * With one server URL, when the connection is lost the iterator throws a `SynapError` with
 * code `closed`, and so does every call still waiting; after `close()` the iterator simply
 * ends. Messages the stream held unsettled go back to the queue at once (the server nacks
 * them).
 *
 * With several URLs (a cluster), a lost connection or a `not_leader` refusal makes the stream
 * reconnect to the leader within the client's `failoverTimeout` and attach again with the same
 * options; calls still waiting are sent again on the new connection (a publish under its
 * idempotency key; an ack that finds its message gone counts as done). Messages pushed but
 * not read yet are dropped at a reconnect: the server gives them back, or after a failover
 * they come back when their leases end. Only when no leader answers in time does the
 * iterator throw.
 */
export class QueueStream<T = unknown> implements AsyncIterable<QueueMessage<T>> {
  /** The consumer id the server confirmed (on the latest connection). */
  consumerId = '';
  /** The prefetch the server confirmed. */
  prefetch = 0;
  /** How many times the stream reconnected after losing its connection. */
  reconnects = 0;
  private conn: Conn | undefined;
  private readonly inbox = new Inbox<QueueMessage<T>>(MAX_INBOX);
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private closing = false;

  private constructor(
    private readonly t: Transport,
    readonly queue: string,
    private readonly query: URLSearchParams,
  ) {}

  /** Opens the stream and waits for the server's `connected` frame. */
  static async open<T>(t: Transport, queue: string, opts: StreamOptions = {}): Promise<QueueStream<T>> {
    const q = new URLSearchParams();
    if (opts.consumerId !== undefined) q.set('consumer_id', opts.consumerId);
    if (opts.prefetch !== undefined) q.set('prefetch', String(opts.prefetch));
    if (opts.ackDeadline !== undefined) q.set('ack_deadline', String(opts.ackDeadline));
    const stream = new QueueStream<T>(t, queue, q);
    await t.targets.run(`queue stream ${queue}`, (base) => stream.connect(base), reconnectable);
    return stream;
  }

  /** Opens a connection to `base` and waits for its `connected` frame. */
  private async connect(base: string): Promise<void> {
    if (this.closing) throw closedError(`queue stream ${this.queue}`);
    const conn: Conn = {
      base, socket: undefined, connected: false, error: undefined, ready: () => undefined, fail: () => undefined,
    };
    const hello = new Promise<void>((res, rej) => {
      conn.ready = res;
      conn.fail = rej;
    });
    // The socket may fail before anyone awaits `hello`; the failure is read from it below.
    hello.catch(() => undefined);
    this.conn = conn;
    conn.socket = await openSocket(this.t.wsUrl(`/queue/${seg(this.queue)}/ws`, this.query, base), this.t.apiKey, {
      message: (text) => {
        if (this.conn === conn) this.onFrame(conn, text);
      },
      closed: (_clean, reason) => {
        if (this.conn === conn) this.onClosed(conn, reason);
      },
    });
    if (this.closing) conn.socket.close();
    await hello;
  }

  private onFrame(conn: Conn, text: string): void {
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
        conn.connected = true;
        conn.ready();
        return;
      case 'message':
        try {
          this.inbox.push(toQueueMessage<T>(frame));
        } catch (e) {
          this.abort(e instanceof SynapError ? e : new SynapError(describe(e), 'decode', 0));
        }
        return;
      default:
        this.onAnswer(conn, frame);
    }
  }

  private onAnswer(conn: Conn, frame: Record<string, unknown>): void {
    const id = typeof frame.id === 'number' ? frame.id : undefined;
    const call = id === undefined ? undefined : this.pending.get(id);
    const error = frame.type === 'error'
      ? new SynapError(String(frame.error ?? 'error'), String(frame.code ?? 'error'), 0)
      : undefined;
    if (call === undefined || id === undefined) {
      // An error not tied to a call of ours (e.g. consuming failed): the server closes next.
      if (error && id === undefined) {
        conn.error = error;
        conn.fail(error);
        if (conn.connected && !this.t.targets.multi) this.abort(error);
        else conn.socket?.close();
      }
      return;
    }
    this.pending.delete(id);
    if (error === undefined) call.resolve(frame);
    // A resent ack whose message is gone: its first send acked it before the connection fell.
    else if (call.resent && call.frame.op === 'ack' && error.code === 'message_not_found') call.resolve(frame);
    else call.reject(error);
  }

  private onClosed(conn: Conn, reason: string): void {
    const what = `queue stream ${this.queue}${reason ? ` (${reason})` : ''}`;
    if (!conn.connected) {
      conn.fail(conn.error ?? closedError(what));
      return;
    }
    if (this.closing || !this.t.targets.multi) {
      // After close() the end is expected, whatever the close code; otherwise it is a loss.
      const err = closedError(what);
      this.end(this.closing ? undefined : err, err);
      return;
    }
    const e = conn.error;
    if (e === undefined || reconnectable(e)) {
      this.reconnect();
    } else if (e.code === 'queue_not_found') {
      // A deposed leader ends its sessions this way; a real deletion leaves the node leading.
      void this.stillLeads(conn.base).then((leads) => (leads ? this.end(e) : this.reconnect()));
    } else {
      this.end(e);
    }
  }

  /** Whether the node at `base` still says it is the leader (a single server always is). */
  private async stillLeads(base: string): Promise<boolean> {
    try {
      const key = this.t.apiKey;
      const res = await fetch(`${base}/health/leader`, { headers: key === undefined ? {} : { authorization: `Bearer ${key}` } });
      await res.text().catch(() => '');
      return res.ok;
    } catch {
      return false;
    }
  }

  /**
   * Connects again (to the leader) and resends the calls still waiting; ends the stream if no
   * leader answers in time.
   */
  private reconnect(): void {
    this.conn = undefined;
    this.inbox.clear();
    const retry = (e: SynapError): boolean => !this.closing && reconnectable(e);
    this.t.targets.run(`queue stream ${this.queue}`, (base) => this.connect(base), retry).then(
      () => {
        const conn = this.conn;
        if (this.closing || conn === undefined || !conn.connected) {
          conn?.socket?.close();
          return;
        }
        this.reconnects += 1;
        for (const [id, call] of this.pending) {
          if (call.sentOn === conn) continue;
          if (call.sentOn !== undefined && !resendable(call.frame)) {
            this.pending.delete(id);
            const need = call.frame.op === 'nack' ? 'a lease' : 'an idempotency key';
            const what = `queue stream ${this.queue} (lost before the answer; a ${String(call.frame.op)} without ${need} is not resent)`;
            call.reject(closedError(what));
            continue;
          }
          call.resent = call.sentOn !== undefined;
          if (!conn.socket?.send(JSON.stringify({ ...call.frame, id }))) break;
          call.sentOn = conn;
        }
      },
      (e: unknown) => this.end(e instanceof SynapError ? e : new SynapError(describe(e), 'closed', 0)),
    );
  }

  /** Ends the stream: waiting calls reject with `failure` (or `closed`), the iterator ends or throws. */
  private end(failure: SynapError | undefined, err = failure ?? closedError(`queue stream ${this.queue}`)): void {
    for (const call of this.pending.values()) call.reject(err);
    this.pending.clear();
    this.inbox.end(failure);
  }

  private abort(e: SynapError): void {
    this.end(e);
    const socket = this.conn?.socket;
    this.conn = undefined;
    socket?.close();
  }

  private call(frame: Record<string, unknown>): Promise<Record<string, unknown>> {
    if (this.inbox.isEnded || this.closing) return Promise.reject(closedError(`queue stream ${this.queue}`));
    if (this.pending.size >= MAX_PENDING) {
      return Promise.reject(new SynapError(`more than ${MAX_PENDING} calls awaiting answers`, 'limit_exceeded', 0));
    }
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const call: Pending = { frame, sentOn: undefined, resent: false, resolve, reject };
      this.pending.set(id, call);
      // `sentOn` records a send that happened: frames of a new connection (its `connected`
      // among them) may be read before `connect` holds its socket, and a call made then is
      // sent by the reconnect that is still finishing.
      const conn = this.conn?.connected ? this.conn : undefined;
      if (conn?.socket?.send(JSON.stringify({ ...frame, id }))) {
        call.sentOn = conn;
        return;
      }
      // With several URLs the call waits for the reconnect, which sends it.
      if (!this.t.targets.multi) {
        this.pending.delete(id);
        reject(closedError(`queue stream ${this.queue}`));
      }
    });
  }

  /** Acks a pushed message (pass its `lease` so a stale delivery is refused). */
  async ack(messageId: string, lease?: number): Promise<void> {
    await this.call({ op: 'ack', message_id: messageId, ...(lease === undefined ? {} : { lease }) });
  }

  /**
   * Nacks a pushed message: retried (default) or dead-lettered with `requeue: false`; with
   * `snooze: true` it comes back after `delay` without spending an attempt (`'snoozed'`).
   */
  async nack(messageId: string, opts: StreamNackOptions = {}): Promise<NackAction> {
    const frame: Record<string, unknown> = { op: 'nack', message_id: messageId, requeue: opts.requeue ?? true };
    if (opts.delay !== undefined) frame.delay = opts.delay;
    if (opts.error !== undefined) frame.error = opts.error;
    if (opts.lease !== undefined) frame.lease = opts.lease;
    if (opts.snooze === true && frame.requeue === false) {
      throw new SynapError('a snooze brings the message back: it needs requeue true', 'invalid_argument', 0);
    }
    if (opts.snooze !== undefined) frame.snooze = opts.snooze;
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

  /** Publishes on the stream's queue and waits for the confirm (keyed as `queue.publish` is). */
  async publish(message: unknown, opts: PublishOptions = {}): Promise<PublishResult> {
    return toPublishResult(await this.call({ op: 'publish', ...publishBody(message, withKey(this.t.autoKeys, opts)) }));
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
    const conn = this.conn;
    // Between connections nothing will answer the calls still waiting.
    if (!conn?.connected) this.end(undefined);
    conn?.socket?.close();
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
