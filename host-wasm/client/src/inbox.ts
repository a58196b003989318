import { SynapError } from './errors.js';

/**
 * A bounded queue of received items that an async iterator drains. When full, the oldest item
 * is dropped (pub/sub's at-most-once delivery); queue streams never exceed their prefetch, so
 * their limit is never reached in practice.
 */
export class Inbox<T> {
  private readonly items: T[] = [];
  private readonly waiters: { resolve: (r: IteratorResult<T>) => void; reject: (e: unknown) => void }[] = [];
  private ended = false;
  private failure: SynapError | undefined;
  /** Items dropped because the inbox was full. */
  dropped = 0;

  constructor(private readonly limit: number) {}

  /** Adds one item, or hands it straight to a waiting reader. */
  push(item: T): void {
    if (this.ended) return;
    const w = this.waiters.shift();
    if (w) {
      w.resolve({ value: item, done: false });
      return;
    }
    if (this.items.length >= this.limit) {
      this.items.shift();
      this.dropped += 1;
    }
    this.items.push(item);
  }

  /**
   * Ends the inbox: readers get the buffered items, then `done`, or `failure` if given.
   * `discard` drops the buffered items instead (a closed stream's messages go back to the
   * queue, so they must not be handed out).
   */
  end(failure?: SynapError, discard = false): void {
    if (discard) this.items.length = 0;
    if (this.ended) return;
    this.ended = true;
    this.failure = failure;
    for (const w of this.waiters.splice(0)) {
      if (failure) w.reject(failure);
      else w.resolve({ value: undefined, done: true });
    }
  }

  /** Drops the buffered items (a stream that reconnects no longer holds their leases for sure). */
  clear(): void {
    this.items.length = 0;
  }

  /** Whether `end` was called. */
  get isEnded(): boolean {
    return this.ended;
  }

  /** The next item; `done` once ended and drained; rejects with the failure that ended it. */
  next(): Promise<IteratorResult<T>> {
    const item = this.items.shift();
    if (item !== undefined) return Promise.resolve({ value: item, done: false });
    if (this.ended) {
      return this.failure ? Promise.reject(this.failure) : Promise.resolve({ value: undefined, done: true });
    }
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }
}
