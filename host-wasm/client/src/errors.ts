/**
 * The one error type of the Synap client: every failed call rejects with a `SynapError`.
 *
 * `code` is the server's machine code (`queue_not_found`, `lease_mismatch`, `unauthorized`, …)
 * when the server refused, or one of the client's own codes when it got no usable answer:
 * `transport` (no HTTP answer), `decode` (an answer of an unexpected shape), `websocket` (a
 * WebSocket could not be opened), `closed` (a streaming connection ended) and
 * `invalid_argument` for arguments the client refuses before sending. A client given several
 * server URLs throws, once it gave up looking for the leader, the last error it got, its
 * message saying so.
 */
export class SynapError extends Error {
  /** The machine code: the server's, or one of the client's listed above. */
  readonly code: string;
  /** The HTTP status of the refusal; 0 when there was none (transport or WebSocket frame). */
  readonly status: number;
  /** A cluster follower's `not_leader` refusal: the leader's base URL (`http://host:port`). */
  readonly leader: string | undefined;

  constructor(message: string, code: string, status: number, leader?: string) {
    super(message);
    this.name = 'SynapError';
    this.code = code;
    this.status = status;
    this.leader = leader;
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
