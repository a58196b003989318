/**
 * The app's state in the URL hash, so a run can be shared: `#view=simulator&preset=…&seed=…
 * &run=1`, an edited scenario as `scenario=` (deflated JSON, base64url), a compared one as
 * `compare=` (`1`: A with two more workers; `fair`: A with fair groups on; else a scenario),
 * and the planner's sweep as `param`, `from`, `to`, `steps`, `group` and its `target`.
 */
import type { Scenario } from './types.js';

export type View = 'simulator' | 'planner' | 'replay' | 'live';
export const VIEWS: View[] = ['simulator', 'planner', 'replay', 'live'];

/** Longest encoded scenario the app reads from a URL. */
const MAX_ENCODED = 200_000;

export function readHash(): URLSearchParams {
  return new URLSearchParams(location.hash.replace(/^#/, ''));
}

export function viewOf(params: URLSearchParams): View {
  const v = params.get('view') as View | null;
  return v && VIEWS.includes(v) ? v : 'simulator';
}

/** Replaces the hash without adding a history entry or firing `hashchange`. */
export function writeHash(params: URLSearchParams): void {
  const text = params.toString();
  const url = `${location.pathname}${location.search}${text ? `#${text}` : ''}`;
  history.replaceState(null, '', url);
}

function toBase64Url(bytes: Uint8Array): string {
  let bin = '';
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function fromBase64Url(text: string): Uint8Array {
  const b64 = text.replace(/-/g, '+').replace(/_/g, '/');
  const bin = atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

async function pipe(bytes: Uint8Array, stream: CompressionStream | DecompressionStream): Promise<Uint8Array> {
  const out = new Blob([bytes as BlobPart]).stream().pipeThrough(stream);
  return new Uint8Array(await new Response(out).arrayBuffer());
}

/** `z` + deflated JSON when the browser compresses, else `j` + JSON, base64url. */
export async function encodeScenario(s: Scenario): Promise<string> {
  const json = new TextEncoder().encode(JSON.stringify(s));
  if (typeof CompressionStream === 'function') {
    return `z${toBase64Url(await pipe(json, new CompressionStream('deflate-raw')))}`;
  }
  return `j${toBase64Url(json)}`;
}

/** Reads `encodeScenario`'s output; throws a readable Error when it is damaged. */
export async function decodeScenario(text: string): Promise<Scenario> {
  if (text.length > MAX_ENCODED) throw new Error('the scenario in the URL is too long');
  let bytes: Uint8Array;
  try {
    bytes = fromBase64Url(text.slice(1));
    if (text[0] === 'z') bytes = await pipe(bytes, new DecompressionStream('deflate-raw'));
    else if (text[0] !== 'j') throw new Error('unknown encoding');
  } catch {
    throw new Error('the scenario in the URL is damaged');
  }
  const value: unknown = JSON.parse(new TextDecoder().decode(bytes));
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Error('the scenario in the URL is not an object');
  return value as Scenario;
}
