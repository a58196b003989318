import { SynapError, closedError } from './errors.js';
import { isMove } from './failover.js';
import { Inbox } from './inbox.js';
import { openSocket, type Socket } from './socket.js';
import { camelize, describe, seg, type Transport } from './transport.js';
import { obj, toPubSubMessage } from './convert.js';
import type { PubSubMessage, PubSubPublishResult } from './types.js';

/** Messages a subscription holds unread; beyond it the oldest is dropped (counted in `dropped`). */
const MAX_UNREAD = 10_000;

/**
 * A live subscription over `GET /pubsub/ws`: an async iterator of messages. It ends when
 * `close()` is called; a lost connection makes the iterator throw a `closed` SynapError.
 */
export class Subscription<T = unknown> implements AsyncIterable<PubSubMessage<T>> {
  /** The subscriber id the server assigned. */
  subscriberId = '';
  private socket: Socket | undefined;
  private readonly inbox = new Inbox<PubSubMessage<T>>(MAX_UNREAD);
  private closing = false;

  private constructor(readonly patterns: string[]) {}

  /**
   * Subscribes and waits until the server confirms, so later publishes are delivered. With
   * several URLs the subscription is opened on the leader; it is not reopened when its
   * connection is lost (pub/sub is at-most-once: what was published meanwhile is gone anyway).
   */
  static async open<T>(t: Transport, patterns: string[]): Promise<Subscription<T>> {
    if (patterns.length === 0) throw new SynapError('subscribe needs at least one pattern', 'invalid_argument', 0);
    const sub = new Subscription<T>(patterns);
    const retry = (e: SynapError): boolean => isMove(e) || ['transport', 'websocket', 'closed'].includes(e.code);
    await t.targets.run(`subscribe ${patterns.join(',')}`, (base) => sub.connect(t, base), retry);
    return sub;
  }

  private async connect(t: Transport, base: string): Promise<void> {
    let connected = false;
    let ready!: () => void;
    let fail!: (e: SynapError) => void;
    const hello = new Promise<void>((res, rej) => {
      ready = res;
      fail = rej;
    });
    hello.catch(() => undefined);
    const patterns = this.patterns;
    const q = new URLSearchParams({ topics: patterns.join(',') });
    const socket = await openSocket(t.wsUrl('/pubsub/ws', q, base), t.apiKey, {
      message: (text) => {
        try {
          const frame = obj(JSON.parse(text), 'pub/sub frame');
          if (frame.type === 'connected') {
            this.subscriberId = String(frame.subscriber_id ?? '');
            connected = true;
            ready();
          } else if (frame.type === 'message') {
            this.inbox.push(toPubSubMessage<T>(frame));
          }
        } catch (e) {
          const err = e instanceof SynapError ? e : new SynapError(describe(e), 'decode', 0);
          fail(err);
          this.inbox.end(err);
          socket.close();
        }
      },
      closed: () => {
        const err = closedError(`subscription ${patterns.join(',')}`);
        fail(err);
        if (connected) this.inbox.end(this.closing ? undefined : err);
      },
    });
    this.socket = socket;
    await hello;
  }

  /** Messages dropped because more than the unread limit piled up. */
  get dropped(): number {
    return this.inbox.dropped;
  }

  /** The next message; `null` after `close()`. */
  async next(): Promise<PubSubMessage<T> | null> {
    const r = await this.inbox.next();
    return r.done ? null : r.value;
  }

  /** Unsubscribes (closes the connection). */
  close(): void {
    this.closing = true;
    this.inbox.end(undefined, true);
    this.socket?.close();
  }

  [Symbol.asyncIterator](): AsyncIterator<PubSubMessage<T>> {
    return {
      next: () => this.inbox.next(),
      return: async () => {
        this.close();
        return { value: undefined, done: true };
      },
    };
  }
}

/** Pub/sub operations: `client.pubsub`. */
export class PubSubApi {
  constructor(private readonly t: Transport) {}

  /** Publishes to a topic; delivered at most once to the subscribers connected now. */
  async publish(topic: string, message: unknown, headers?: Record<string, string>): Promise<PubSubPublishResult> {
    const body: Record<string, unknown> = { message: message === undefined ? null : message };
    if (headers !== undefined) body.headers = headers;
    // At most once: never resent after an unanswered attempt.
    const r = obj(await this.t.request('POST', `/pubsub/${seg(topic)}/publish`, body, { once: true }), 'pubsub publish');
    return { messageId: String(r.message_id), topic: String(r.topic), subscribersMatched: Number(r.subscribers_matched) };
  }

  /** Subscribes to patterns (`*` one segment, trailing `#` any number). */
  subscribe<T = unknown>(patterns: string | string[]): Promise<Subscription<T>> {
    return Subscription.open<T>(this.t, typeof patterns === 'string' ? [patterns] : patterns);
  }

  /** Pub/sub statistics, camelCase. */
  async stats(): Promise<Record<string, number>> {
    return camelize(await this.t.request('GET', '/pubsub/stats')) as Record<string, number>;
  }
}
