/**
 * What the live page's caller may do: `GET /auth/me` read once per connection, and the
 * server's permission rules (host-native/src/permissions.rs) applied in the page, so controls
 * the caller may not use are disabled or hidden instead of failing with 403.
 *
 * A permission is `kind:pattern:action`: the kind is the text before the first `:`, the action
 * the text after the last one (`*` = every action of the kind), the pattern what is between;
 * in it `*` matches any run of characters, and for topics a last segment `#` matches the prefix
 * itself and everything below it. An entry without permissions has full access.
 */

/** The answer of `GET /auth/me`. */
export interface Me {
  name: string;
  fullAccess: boolean;
  permissions: string[];
  authEnabled: boolean;
}

export type Kind = 'queue' | 'kv' | 'topic' | 'server';

const ACTIONS: Record<Kind, readonly string[]> = {
  queue: ['publish', 'consume', 'read', 'admin'],
  kv: ['read', 'write'],
  topic: ['publish', 'subscribe'],
  server: ['read'],
};

interface Grant {
  kind: Kind;
  /** The pattern as regular expressions (a topic's trailing `#` gives two). */
  globs: RegExp[];
  actions: ReadonlySet<string>;
}

/** A glob where `*` is any run of characters (dots and colons included), as a regex. */
function glob(pattern: string): RegExp {
  const body = pattern
    .split('*')
    .map((part) => part.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
    .join('[\\s\\S]*');
  return new RegExp(`^${body}$`);
}

/** Parses `kind:pattern:action`; null for text the server would not accept either. */
export function parsePermission(text: string): Grant | null {
  const first = text.indexOf(':');
  const last = text.lastIndexOf(':');
  if (first < 0 || last <= first) return null;
  const kind = text.slice(0, first);
  const pattern = text.slice(first + 1, last);
  const action = text.slice(last + 1);
  if (!(kind in ACTIONS) || pattern === '') return null;
  const valid = ACTIONS[kind as Kind];
  if (action !== '*' && !valid.includes(action)) return null;
  let globs: RegExp[];
  if (kind === 'topic') {
    if (pattern === '#') globs = [glob('*')];
    else if (pattern.endsWith('.#')) {
      const head = pattern.slice(0, -2);
      globs = [glob(head), glob(`${head}.*`)];
    } else globs = [glob(pattern)];
  } else globs = [glob(pattern)];
  return { kind: kind as Kind, globs, actions: new Set(action === '*' ? valid : [action]) };
}

/** The caller's rights: everything when the server has no `/auth/me` (an older server). */
export class Access {
  private readonly grants: Grant[] | null;

  constructor(readonly me: Me | null) {
    this.grants = me === null || me.fullAccess ? null : me.permissions.map(parsePermission).filter((g): g is Grant => g !== null);
  }

  get fullAccess(): boolean {
    return this.grants === null;
  }

  /** Whether the caller may `action` the resource `name` of `kind` (as the server decides). */
  can(kind: Kind, action: string, name: string): boolean {
    if (this.grants === null) return true;
    return this.grants.some((g) => g.kind === kind && g.actions.has(action) && g.globs.some((re) => re.test(name)));
  }

  /** Whether some permission grants `action` on some resource of `kind` (a panel is worth showing). */
  canAny(kind: Kind, action: string): boolean {
    if (this.grants === null) return true;
    return this.grants.some((g) => g.kind === kind && g.actions.has(action));
  }

  /** The permission a refused action needs, as the server's 403 names it. */
  static needs(kind: Kind, action: string, name: string): string {
    return `${kind}:${name}:${action}`;
  }
}

/** `GET /auth/me` on `url` with `key`; null when the server does not have the route. */
export async function whoAmI(url: string, key: string | undefined): Promise<Me | null> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (key) headers.authorization = `Bearer ${key}`;
  const res = await fetch(`${url}/auth/me`, { headers });
  if (res.status === 404) return null;
  if (!res.ok) throw new Error(`GET /auth/me: HTTP ${res.status}`);
  const body = (await res.json()) as { name?: unknown; full_access?: unknown; permissions?: unknown; auth_enabled?: unknown };
  return {
    name: typeof body.name === 'string' ? body.name : '',
    fullAccess: body.full_access === true,
    permissions: Array.isArray(body.permissions) ? body.permissions.filter((p): p is string => typeof p === 'string') : [],
    authEnabled: body.auth_enabled === true,
  };
}
