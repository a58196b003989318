import { SynapError } from './errors.js';
import type { PublishOptions } from './types.js';

/** Most server URLs one client takes. */
export const MAX_URLS = 32;
/** How long a call keeps looking for the leader after a failure, by default (seconds). */
export const DEFAULT_FAILOVER_SECS = 10;
/** With several URLs, how long one attempt may go unanswered by default (seconds, plus any long-poll wait). */
export const DEFAULT_REQUEST_TIMEOUT_SECS = 30;
/** The first wait between attempts after a full miss; it doubles up to `MAX_BACKOFF_MS`. */
const FIRST_BACKOFF_MS = 50;
const MAX_BACKOFF_MS = 1_000;

/** Server codes that say "not here, try the leader": a cluster follower's or a stopping node's 503. */
const MOVE_CODES = new Set(['not_leader', 'no_leader', 'shutting_down', 'unavailable']);

/** Errors of connections refused outright: the request never reached a server. */
const refused = new WeakSet<SynapError>();

/** Marks `e` as a connection refused before anything was sent. */
export function markRefused(e: SynapError): SynapError {
  refused.add(e);
  return e;
}

/** Whether `e` is a connection refused before anything was sent (safe to resend anything). */
export function wasRefused(e: SynapError): boolean {
  return refused.has(e);
}

/** A 503 that names another node, or no leader yet: the call belongs elsewhere. */
export function isMove(e: SynapError): boolean {
  return MOVE_CODES.has(e.code) && (e.status === 503 || e.status === 0);
}

/** A base URL: http(s), without a trailing slash. */
export function baseUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new SynapError(`invalid server URL: ${url}`, 'invalid_argument', 0);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new SynapError(`server URL must be http(s): ${url}`, 'invalid_argument', 0);
  }
  return parsed.href.replace(/\/+$/, '');
}

function seconds(v: number | undefined, name: string, fallback: number): number {
  if (v === undefined) return fallback;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > 86_400) {
    throw new SynapError(`${name} must be 0–86400 seconds`, 'invalid_argument', 0);
  }
  return v;
}

/** What `Targets` is built from: the client's URL options. */
export interface TargetOptions {
  url: string | string[];
  failoverTimeout?: number | undefined;
  requestTimeout?: number | undefined;
}

/**
 * The servers a client may talk to and the one it talks to now. With one URL every call goes
 * there and a failure is the caller's (as for a single server). With several, a call that
 * fails on a connection error or a 503 `not_leader`/`no_leader` moves on to the leader the
 * refusal names, else to the next URL, and tries again with a bounded backoff until
 * `failoverMs` after its first failure. REST calls and streams of one client share it, so
 * one call's move takes the others along.
 */
export class Targets {
  /** The configured base URLs, in the order given. */
  readonly urls: readonly string[];
  /** How long a call keeps trying after its first failure (ms). */
  readonly failoverMs: number;
  /** How long one attempt may go unanswered (ms; `undefined` = no limit), plus any long-poll wait. */
  readonly attemptMs: number | undefined;
  private current: string;

  constructor(options: TargetOptions) {
    const given = Array.isArray(options.url) ? options.url : [options.url];
    if (given.length === 0) throw new SynapError('url: give at least one server URL', 'invalid_argument', 0);
    if (given.length > MAX_URLS) throw new SynapError(`url: at most ${MAX_URLS} server URLs`, 'invalid_argument', 0);
    const urls: string[] = [];
    for (const u of given) {
      const b = baseUrl(String(u));
      if (!urls.includes(b)) urls.push(b);
    }
    this.urls = urls;
    this.failoverMs = seconds(options.failoverTimeout, 'failoverTimeout', DEFAULT_FAILOVER_SECS) * 1000;
    const multi = urls.length > 1;
    const attempt = seconds(options.requestTimeout, 'requestTimeout', multi ? DEFAULT_REQUEST_TIMEOUT_SECS : 0);
    this.attemptMs = attempt === 0 ? undefined : attempt * 1000;
    this.current = urls[0] as string;
  }

  /** Whether the client has several servers to move between. */
  get multi(): boolean {
    return this.urls.length > 1;
  }

  /** The base URL calls go to now. */
  get base(): string {
    return this.current;
  }

  /**
   * After a call to `from` failed with `e`: goes to the leader `e` names, or else to the URL
   * after `from`. Does nothing if another call moved on already.
   */
  moved(from: string, e: SynapError): void {
    if (from !== this.current) return;
    const leader = e.leader === undefined ? undefined : safeBase(e.leader);
    if (leader !== undefined && leader !== from) {
      // The leader's address as a configured URL spells it, when one does.
      this.current = this.urls.find((u) => sameOrigin(u, leader)) ?? leader;
      return;
    }
    const i = this.urls.indexOf(from);
    this.current = this.urls[(i + 1) % this.urls.length] as string;
  }

  /**
   * Runs `attempt` against the current base URL until it succeeds. With several URLs, an
   * error `retry` accepts moves the client on (see `moved`) and tries again: at once the first
   * time, then after 50 ms doubling to 1 s, until `failoverMs` after the first failure; then
   * the last error is thrown with a message saying so. `what` names the call in that message.
   */
  async run<T>(what: string, attempt: (base: string) => Promise<T>, retry: (e: SynapError) => boolean): Promise<T> {
    let deadline: number | undefined;
    let failures = 0;
    for (;;) {
      const base = this.current;
      try {
        return await attempt(base);
      } catch (e) {
        if (!this.multi || !(e instanceof SynapError) || !retry(e)) throw e;
        const now = Date.now();
        deadline ??= now + this.failoverMs;
        this.moved(base, e);
        failures += 1;
        const wait = failures === 1 ? 0 : Math.min(MAX_BACKOFF_MS, FIRST_BACKOFF_MS * 2 ** (failures - 2));
        if (now + wait > deadline) throw gaveUp(what, this, e);
        if (wait > 0) await sleep(wait);
      }
    }
  }
}

function gaveUp(what: string, t: Targets, last: SynapError): SynapError {
  const secs = t.failoverMs / 1000;
  const msg = `${what}: no server of ${t.urls.join(', ')} answered as the leader within ${secs} s; last error: ${last.message}`;
  const e = new SynapError(msg, last.code, last.status, last.leader);
  (e as { cause?: unknown }).cause = last;
  return e;
}

function safeBase(url: string): string | undefined {
  try {
    return baseUrl(url);
  } catch {
    return undefined;
  }
}

function sameOrigin(a: string, b: string): boolean {
  try {
    return new URL(a).origin === new URL(b).origin;
  } catch {
    return false;
  }
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * A random idempotency key (a UUID v4) for a publish that may be resent: from
 * `crypto.randomUUID` where there is one, else from `crypto.getRandomValues` (browsers on
 * plain http have only the latter).
 */
export function newIdempotencyKey(): string {
  const c = (globalThis as { crypto?: { randomUUID?: () => string; getRandomValues?: (a: Uint8Array) => Uint8Array } }).crypto;
  if (c?.randomUUID) return c.randomUUID();
  if (!c?.getRandomValues) throw new SynapError('no crypto.getRandomValues to draw an idempotency key', 'invalid_argument', 0);
  const b = c.getRandomValues(new Uint8Array(16));
  b[6] = ((b[6] as number) & 0x0f) | 0x40;
  b[8] = ((b[8] as number) & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/**
 * `opts` with a generated idempotency key when the client may resend the publish (`autoKeys`:
 * several URLs) and the caller gave none (nor `debounce`, which names a job by its own key).
 */
export function withKey(autoKeys: boolean, opts: PublishOptions): PublishOptions {
  if (!autoKeys || opts.idempotencyKey !== undefined || opts.debounce !== undefined) return opts;
  return { ...opts, idempotencyKey: newIdempotencyKey() };
}
