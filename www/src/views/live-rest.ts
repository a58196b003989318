/**
 * JSON requests to the server's REST routes that the TypeScript client does not wrap yet (the
 * job lifecycle: lookup, cancel, schedules), with the key the live page connected with.
 */

/** A refused request: the server's `{error, code}` and the HTTP status. */
export class RestError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly code: string,
  ) {
    super(message);
  }
}

export class Rest {
  constructor(
    readonly url: string,
    private readonly key: string | undefined,
  ) {}

  /** `method path` with `body` as JSON; the answer's JSON, or a `RestError`. */
  async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.key) headers.authorization = `Bearer ${this.key}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(`${this.url}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await res.text();
    let json: unknown = null;
    try {
      json = text === '' ? null : JSON.parse(text);
    } catch {
      // Not JSON: the status says what happened.
    }
    if (!res.ok) {
      const e = (json ?? {}) as { error?: unknown; code?: unknown };
      const message = typeof e.error === 'string' ? e.error : `${method} ${path}: HTTP ${res.status}`;
      throw new RestError(message, res.status, typeof e.code === 'string' ? e.code : '');
    }
    return json as T;
  }
}

/** A path segment (a queue name, a message or schedule id). */
export const seg = (s: string): string => encodeURIComponent(s);
