import { camelize, seg, type Transport } from './transport.js';
import { obj } from './convert.js';
import type { KvEntry, KvGetResult } from './types.js';

/** Key-value operations: `client.kv`. TTLs are seconds. */
export class KvApi {
  constructor(private readonly t: Transport) {}

  /** Stores any JSON value, optionally expiring after `ttlSecs`. */
  async set(key: string, value: unknown, ttlSecs?: number): Promise<void> {
    const body: Record<string, unknown> = { key, value: value === undefined ? null : value };
    if (ttlSecs !== undefined) body.ttl = ttlSecs;
    await this.t.request('POST', '/kv/set', body);
  }

  /** `{found: true, value, ttl}` (ttl in seconds or null), or `{found: false}`. */
  async get<T = unknown>(key: string): Promise<KvGetResult<T>> {
    const r = obj(await this.t.request('GET', `/kv/get/${seg(key)}`), 'kv get');
    if (r.found !== true) return { found: false };
    return { found: true, value: r.value as T, ttl: typeof r.ttl === 'number' ? r.ttl : null };
  }

  /** Deletes a key; false if it did not exist. */
  async del(key: string): Promise<boolean> {
    return obj(await this.t.request('DELETE', `/kv/del/${seg(key)}`), 'kv del').deleted === true;
  }

  /** Whether the key exists. */
  async exists(key: string): Promise<boolean> {
    return obj(await this.t.request('GET', `/kv/exists/${seg(key)}`), 'kv exists').exists === true;
  }

  /** Seconds left, or null without expiry; a missing key rejects with `key_not_found`. */
  async ttl(key: string): Promise<number | null> {
    const r = obj(await this.t.request('GET', `/kv/ttl/${seg(key)}`), 'kv ttl');
    return typeof r.ttl === 'number' ? r.ttl : null;
  }

  /** Sets a key's TTL; false if the key does not exist. */
  async expire(key: string, ttlSecs: number): Promise<boolean> {
    return obj(await this.t.request('POST', '/kv/expire', { key, ttl: ttlSecs }), 'kv expire').updated === true;
  }

  /** Removes a key's TTL; false if the key does not exist or had none. */
  async persist(key: string): Promise<boolean> {
    return obj(await this.t.request('POST', '/kv/persist', { key }), 'kv persist').updated === true;
  }

  /**
   * Adds `by` (default 1) to an integer value (a missing key counts as 0); returns the new
   * value. Never resent after an unanswered attempt (it could add twice).
   */
  async incr(key: string, by = 1): Promise<number> {
    return Number(obj(await this.t.request('POST', '/kv/incr', { key, by }, { once: true }), 'kv incr').value);
  }

  /** Subtracts `by` (default 1). */
  decr(key: string, by = 1): Promise<number> {
    return this.incr(key, -by);
  }

  /** Keys starting with `prefix`, sorted (at most `limit`, server maximum 10,000). */
  async keys(prefix = '', limit?: number): Promise<string[]> {
    const q = new URLSearchParams({ prefix });
    if (limit !== undefined) q.set('limit', String(limit));
    return obj(await this.t.request('GET', `/kv/keys?${q.toString()}`), 'kv keys').keys as string[];
  }

  /** Values of several keys, `null` for missing ones. */
  async mget<T = unknown>(keys: string[]): Promise<(T | null)[]> {
    return obj(await this.t.request('POST', '/kv/mget', { keys }), 'kv mget').values as (T | null)[];
  }

  /** Stores several entries (all validated before any is stored). */
  async mset(entries: KvEntry[]): Promise<void> {
    await this.t.request('POST', '/kv/mset', { entries });
  }

  /** Store statistics, camelCase (`totalKeys`, `hits`, `hitRate`, …). */
  async stats(): Promise<Record<string, number>> {
    return camelize(await this.t.request('GET', '/kv/stats')) as Record<string, number>;
  }
}
