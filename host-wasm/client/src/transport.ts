import { SynapError } from './errors.js';

/** An HTTP method the server's routes answer. */
export type Method = 'GET' | 'POST' | 'PUT' | 'DELETE';

/**
 * Sends JSON requests to one Synap server and turns refusals into `SynapError`s. Uses the
 * global `fetch` (Node 18+ and browsers).
 */
export class Transport {
  /** The server's base URL, without a trailing slash. */
  readonly baseUrl: string;
  /** The API key sent as a bearer token, if any. */
  readonly apiKey: string | undefined;

  constructor(url: string, apiKey?: string) {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new SynapError(`invalid server URL: ${url}`, 'invalid_argument', 0);
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
      throw new SynapError(`server URL must be http(s): ${url}`, 'invalid_argument', 0);
    }
    this.baseUrl = parsed.href.replace(/\/+$/, '');
    this.apiKey = apiKey === '' ? undefined : apiKey;
  }

  /** The base URL with `ws:` or `wss:` for WebSocket routes. */
  wsUrl(path: string, query: URLSearchParams): string {
    const base = this.baseUrl.replace(/^http/, 'ws');
    const q = query.toString();
    return `${base}${path}${q ? `?${q}` : ''}`;
  }

  /** Sends one request and returns its JSON body; any non-2xx answer rejects. */
  async request<T>(method: Method, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.apiKey !== undefined) headers.authorization = `Bearer ${this.apiKey}`;
    const init: RequestInit = { method, headers };
    if (body !== undefined) {
      headers['content-type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let res: Response;
    try {
      res = await fetch(`${this.baseUrl}${path}`, init);
    } catch (e) {
      throw new SynapError(`${method} ${path}: ${describe(e)}`, 'transport', 0);
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
  }
}

/** The `SynapError` for a refused request: the server's `{error, code}` body when it has one. */
export function refusal(status: number, text: string): SynapError {
  try {
    const body = JSON.parse(text) as { error?: unknown; code?: unknown };
    if (typeof body.code === 'string') {
      return new SynapError(typeof body.error === 'string' ? body.error : body.code, body.code, status);
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
