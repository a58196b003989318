import { SynapError } from './errors.js';
import { Targets, isMove, markRefused, wasRefused, type TargetOptions } from './failover.js';

/** An HTTP method the server's routes answer. */
export type Method = 'GET' | 'POST' | 'PUT' | 'DELETE';

/** How one request may be retried on another server. */
export interface RequestOptions {
  /** Seconds the server may hold the request (a long-poll): added to the attempt timeout. */
  wait?: number;
  /**
   * A request that must not run twice (`kv.incr`, pub/sub publish): moved to another server
   * only when its connection was refused, never after an unanswered attempt.
   */
  once?: boolean;
  /**
   * Codes that, answered to a resend, mean the earlier unanswered attempt did the work (an
   * ack resent after its first try landed finds no message): the call then succeeds.
   */
  doneIf?: readonly string[];
}

/**
 * Sends JSON requests to Synap and turns refusals into `SynapError`s. Uses the global `fetch`
 * (Node 18+ and browsers). With several server URLs it follows the cluster's leader (see
 * `Targets`).
 */
export class Transport {
  /** The API key sent as a bearer token, if any. */
  readonly apiKey: string | undefined;
  /** The servers and the one in use. */
  readonly targets: Targets;
  /** Whether publishes without an idempotency key get a generated one (several URLs only). */
  readonly autoKeys: boolean;

  constructor(options: TargetOptions & { apiKey?: string | undefined; autoIdempotencyKey?: boolean | undefined }) {
    this.targets = new Targets(options);
    this.apiKey = options.apiKey === '' ? undefined : options.apiKey;
    this.autoKeys = this.targets.multi && options.autoIdempotencyKey !== false;
  }

  /** The base URL requests go to now, without a trailing slash. */
  get baseUrl(): string {
    return this.targets.base;
  }

  /** `base` (default: the current one) with `ws:` or `wss:` for a WebSocket route. */
  wsUrl(path: string, query: URLSearchParams, base: string = this.targets.base): string {
    const q = query.toString();
    return `${base.replace(/^http/, 'ws')}${path}${q ? `?${q}` : ''}`;
  }

  /**
   * Sends one request and returns its JSON body; any non-2xx answer rejects. With several
   * server URLs, a connection error, an unanswered attempt, or a 503 `not_leader`/`no_leader`
   * moves it to the leader and sends it again (see `RequestOptions` for the exceptions).
   */
  async request<T>(method: Method, path: string, body?: unknown, opts: RequestOptions = {}): Promise<T> {
    let tries = 0;
    const attempt = async (base: string): Promise<T> => {
      tries += 1;
      try {
        return await this.send<T>(base, method, path, body, opts.wait);
      } catch (e) {
        if (tries > 1 && e instanceof SynapError && opts.doneIf?.includes(e.code)) return undefined as T;
        throw e;
      }
    };
    const retry = (e: SynapError): boolean => {
      if (wasRefused(e)) return true;
      if (opts.once === true) return false;
      return e.code === 'transport' || isMove(e);
    };
    return this.targets.run(`${method} ${path}`, attempt, retry);
  }

  /** One attempt at `base`. */
  private async send<T>(base: string, method: Method, path: string, body: unknown, wait = 0): Promise<T> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.apiKey !== undefined) headers.authorization = `Bearer ${this.apiKey}`;
    const init: RequestInit = { method, headers };
    if (body !== undefined) {
      headers['content-type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const limit = this.targets.attemptMs;
    const abort = limit === undefined ? undefined : new AbortController();
    const timer = abort === undefined ? undefined : setTimeout(() => abort.abort(), (limit as number) + wait * 1000);
    if (abort !== undefined) init.signal = abort.signal;
    try {
      let res: Response;
      try {
        res = await fetch(`${base}${path}`, init);
      } catch (e) {
        const why = abort?.signal.aborted ? `no answer within ${((limit as number) / 1000 + wait).toFixed(1)} s` : describe(e);
        const err = new SynapError(`${method} ${base}${path}: ${why}`, 'transport', 0);
        throw connectRefused(e) ? markRefused(err) : err;
      }
      const text = await res.text().catch((e: unknown) => {
        throw new SynapError(`${method} ${path}: reading the body: ${describe(e)}`, 'transport', res.status);
      });
      if (!res.ok) throw refusal(res.status, text);
      try {
        return JSON.parse(text) as T;
      } catch {
        throw new SynapError(`${method} ${path}: answer is not JSON: ${text.slice(0, 200)}`, 'decode', res.status);
      }
    } finally {
      if (timer !== undefined) clearTimeout(timer);
    }
  }
}

/** Whether a fetch failure is a refused connection (nothing was sent), as Node reports it. */
function connectRefused(e: unknown): boolean {
  const cause = (e as { cause?: { code?: unknown } } | undefined)?.cause;
  return cause?.code === 'ECONNREFUSED';
}

/**
 * The `SynapError` for a refused request: the server's `{error, code}` body when it has one,
 * with the leader's URL of a cluster follower's `not_leader`.
 */
export function refusal(status: number, text: string): SynapError {
  try {
    const body = JSON.parse(text) as { error?: unknown; code?: unknown; leader?: { http?: unknown } | null };
    if (typeof body.code === 'string') {
      const leader = typeof body.leader?.http === 'string' ? body.leader.http : undefined;
      return new SynapError(typeof body.error === 'string' ? body.error : body.code, body.code, status, leader);
    }
  } catch {
    // Not JSON: fall through to the generic error below.
  }
  return new SynapError(`HTTP ${status}: ${text.slice(0, 200)}`, `http_${status}`, status);
}

/** A readable description of a thrown value, including a fetch failure's cause. */
export function describe(e: unknown): string {
  if (e instanceof Error) {
    const cause = (e as { cause?: unknown }).cause;
    return cause instanceof Error ? `${e.message} (${cause.message})` : e.message;
  }
  return String(e);
}

/** One path segment, percent-encoded so any queue name or key travels intact. */
export function seg(s: string): string {
  return encodeURIComponent(s);
}

/** Converts snake_case keys to camelCase, recursively (for stats objects, never message bodies). */
export function camelize(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(camelize);
  if (value === null || typeof value !== 'object') return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    out[k.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase())] = camelize(v);
  }
  return out;
}
