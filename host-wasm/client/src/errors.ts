/**
 * The one error type of the Synap client: every failed call rejects with a `SynapError`.
 *
 * `code` is the server's machine code (`queue_not_found`, `lease_mismatch`, `unauthorized`, …)
 * when the server refused, or one of the client's own codes when it got no usable answer:
 * `transport` (no HTTP answer), `decode` (an answer of an unexpected shape), `websocket` (a
 * WebSocket could not be opened), `closed` (a streaming connection ended) and
 * `invalid_argument` for arguments the client refuses before sending.
 */
export class SynapError extends Error {
  /** The machine code: the server's, or one of the client's listed above. */
  readonly code: string;
  /** The HTTP status of the refusal; 0 when there was none (transport or WebSocket frame). */
  readonly status: number;

  constructor(message: string, code: string, status: number) {
    super(message);
    this.name = 'SynapError';
    this.code = code;
    this.status = status;
  }

  /** True for a refused ack, nack or extend whose lease is no longer the message's. */
  get isLeaseMismatch(): boolean {
    return this.code === 'lease_mismatch';
  }

  /** True for a 404 of any kind (queue, message, key, subscriber, route). */
  get isNotFound(): boolean {
    return this.status === 404;
  }
}

/** The error for a streaming connection that ended while a call still needed it. */
export function closedError(what: string): SynapError {
  return new SynapError(`${what}: connection closed`, 'closed', 0);
}
