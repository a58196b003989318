/**
 * The live page's cluster panel (DESIGN.md §11, docs/cluster.md): on a node of a cluster it
 * shows the node's view of the cluster (`GET /cluster`): the term, the leader, this node's
 * commit and applied index, and for each node its HTTP address, role, whether this node
 * reaches it, its match index and its lag behind the commit index (both known on the leader
 * only). **Make leader** asks for a leader transfer (`POST /cluster/transfer {to}`; a follower
 * forwards it to the leader) and follows `GET /cluster` until the new leader is in place.
 *
 * A single server has no `/cluster` (404): the panel first reads the public `GET /health`,
 * which names a `role` on cluster nodes only, and stays hidden without one, so a single server
 * is never asked for a route it does not have.
 *
 * No permission of `kind:pattern:action` grants a leader transfer, so Make leader is enabled
 * for a full-access caller only (or with auth off, or a server without `/auth/me`).
 */
import { say } from '../app.js';
import { errorText, fill, fmtInt, h } from '../dom.js';
import type { Access } from './live-access.js';
import type { Rest } from './live-rest.js';

/** Nodes shown (a cluster has 3 or 5; more are counted in a note). */
const MAX_NODES = 16;
/** After Make leader: how often, and for how long, the panel looks for the new leader. */
const FOLLOW_MS = 250;
const FOLLOW_FOR_MS = 10_000;

/** One node as `GET /cluster` lists it. */
export interface ClusterNode {
  id: number;
  raft: string;
  http: string;
  role: string;
  /** Highest log index known stored on the node: known on the leader only. */
  matchIndex: number | null;
  reachable: boolean;
}

/** `GET /cluster`: a node's view of its cluster. */
export interface ClusterStatus {
  nodeId: number;
  role: string;
  term: number;
  leader: { id: number; http: string } | null;
  commitIndex: number;
  appliedIndex: number;
  electionsTotal: number | null;
  nodes: ClusterNode[];
  /** Nodes listed beyond `MAX_NODES`. */
  more: number;
}

const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const isText = (v: unknown): v is string => typeof v === 'string' && v.length <= 300;

/** Reads a `GET /cluster` answer; null when it is not one. */
export function parseCluster(body: unknown): ClusterStatus | null {
  if (body === null || typeof body !== 'object') return null;
  const b = body as Record<string, unknown>;
  if (!isCount(b.node_id) || !isText(b.role) || !isCount(b.term) || !isCount(b.commit_index) || !isCount(b.applied_index) || !Array.isArray(b.nodes)) return null;
  let leader: ClusterStatus['leader'] = null;
  if (b.leader !== null && b.leader !== undefined) {
    const l = b.leader as Record<string, unknown>;
    if (typeof l !== 'object' || !isCount(l.id) || !isText(l.http)) return null;
    leader = { id: l.id, http: l.http };
  }
  const nodes: ClusterNode[] = [];
  for (const raw of b.nodes.slice(0, MAX_NODES)) {
    if (raw === null || typeof raw !== 'object') return null;
    const n = raw as Record<string, unknown>;
    if (!isCount(n.id) || !isText(n.http) || !isText(n.role) || typeof n.reachable !== 'boolean') return null;
    nodes.push({
      id: n.id,
      raft: isText(n.raft) ? n.raft : '',
      http: n.http,
      role: n.role,
      matchIndex: isCount(n.match_index) ? n.match_index : null,
      reachable: n.reachable,
    });
  }
  return {
    nodeId: b.node_id,
    role: b.role,
    term: b.term,
    leader,
    commitIndex: b.commit_index,
    appliedIndex: b.applied_index,
    electionsTotal: isCount(b.elections_total) ? b.elections_total : null,
    nodes,
    more: b.nodes.length - nodes.length,
  };
}

/** A role as shown: `pre_candidate` → `pre-candidate`. */
const roleText = (role: string): string => role.replace(/_/g, '-');

export class ClusterPanel {
  readonly el: HTMLElement;
  private readonly facts: HTMLElement;
  private readonly election: HTMLElement;
  private readonly note: HTMLElement;
  private readonly access: HTMLElement;
  private readonly status: HTMLElement;
  private readonly body: HTMLTableSectionElement;
  private rest: Rest | null = null;
  private admin = false;
  /** Whether the server is a cluster node: unknown (null) until `/health` says. */
  private cluster: boolean | null = null;
  private shown: ClusterStatus | null = null;
  /** A transfer asked for: the node that should lead, and until when to look. */
  private moving: { to: number; until: number } | null = null;
  private follow = 0;
  /** Whether the status line shows a failed read (cleared by the next good one). */
  private loadFailed = false;
  /** Answers older than the newest request asked are dropped. */
  private asked = 0;

  constructor() {
    this.facts = h('dl', { class: 'facts', id: 'cluster-facts' });
    this.election = h('p', { class: 'status error', id: 'cluster-election', hidden: true });
    this.note = h('p', { class: 'hint', id: 'cluster-note', hidden: true });
    this.access = h('p', { class: 'hint', id: 'cluster-access', hidden: true });
    this.status = h('p', { class: 'status', id: 'cluster-status', role: 'status', 'aria-live': 'polite' });
    this.body = h('tbody', { id: 'cluster-rows' });
    const cols = ['Node', 'HTTP address', 'Role', 'Reachable', 'Match index', 'Lag', 'Leadership'];
    this.el = h(
      'section',
      { class: 'panel', id: 'cluster', 'aria-labelledby': 'cluster-title', hidden: true },
      h('h3', { id: 'cluster-title' }, 'Cluster'),
      this.facts,
      this.election,
      this.note,
      this.access,
      this.status,
      h(
        'div',
        { class: 'table-wrap' },
        h(
          'table',
          { class: 'cluster' },
          h('caption', { class: 'sr-only' }, 'Nodes of the cluster as this node sees them'),
          h('thead', {}, h('tr', {}, cols.map((c) => h('th', { scope: 'col' }, c)))),
          this.body,
        ),
      ),
    );
  }

  /** Uses `rest` for a new connection; shown once the server turns out to be a cluster node. */
  use(rest: Rest, access: Access): void {
    this.reset();
    this.rest = rest;
    this.admin = access.fullAccess;
    this.access.hidden = this.admin;
    this.access.textContent = this.admin ? '' : 'Make leader needs a full-access key (no scoped permission grants a leader transfer); this key is limited to its permissions.';
  }

  /** Forgets the connection and hides the panel. */
  reset(): void {
    clearTimeout(this.follow);
    this.follow = 0;
    this.asked += 1;
    this.rest = null;
    this.cluster = null;
    this.shown = null;
    this.moving = null;
    this.loadFailed = false;
    this.el.hidden = true;
    say(this.status, '');
  }

  /** Reads the node's view again (the live page's poll). */
  async load(): Promise<void> {
    const rest = this.rest;
    if (!rest) return;
    const ask = ++this.asked;
    try {
      if (this.cluster === null) {
        const health = await rest.call<Record<string, unknown> | null>('GET', '/health');
        if (ask !== this.asked) return;
        this.cluster = health !== null && typeof health.role === 'string';
      }
      if (!this.cluster) {
        this.el.hidden = true;
        return;
      }
      const answer = parseCluster(await rest.call<unknown>('GET', '/cluster'));
      if (ask !== this.asked) return;
      if (answer === null) throw new Error('GET /cluster: the answer is not a cluster status');
      this.shown = answer;
      if (this.loadFailed) say(this.status, '');
      this.loadFailed = false;
      this.render(answer);
      this.followTransfer(answer);
    } catch (e) {
      if (ask !== this.asked || !this.cluster) return;
      this.el.hidden = false;
      this.el.dataset.state = 'error';
      this.loadFailed = true;
      say(this.status, `Cannot read the cluster's state: ${errorText(e)}`, true);
      if (this.moving && Date.now() > this.moving.until) this.moving = null;
      if (this.moving) this.scheduleFollow();
    }
  }

  private render(s: ClusterStatus): void {
    this.el.hidden = false;
    this.el.dataset.state = 'ok';
    this.el.dataset.node = String(s.nodeId);
    this.el.dataset.role = s.role;
    this.el.dataset.term = String(s.term);
    this.el.dataset.leader = s.leader === null ? 'none' : String(s.leader.id);
    this.el.dataset.count = String(s.nodes.length);
    const leading = s.role === 'leader';
    const fact = (label: string, value: Node | string, key: string) => h('div', { 'data-key': key }, h('dt', {}, label), h('dd', {}, value));
    fill(
      this.facts,
      fact('This node', `${s.nodeId} (${roleText(s.role)})`, 'node'),
      fact(s.leader === null ? 'Term' : "The leader's term", h('span', { id: 'cluster-term' }, fmtInt(s.term)), 'term'),
      fact('Leader', h('span', { id: 'cluster-leader' }, s.leader === null ? 'none' : `node ${s.leader.id} (${s.leader.http})`), 'leader'),
      fact('Commit index (this node)', fmtInt(s.commitIndex), 'commit_index'),
      fact('Applied index (this node)', fmtInt(s.appliedIndex), 'applied_index'),
      s.electionsTotal === null ? null : fact('Elections seen since start', fmtInt(s.electionsTotal), 'elections'),
    );
    this.election.hidden = s.leader !== null;
    this.election.textContent = s.leader === null ? 'No leader: an election is in progress. Requests are refused (503 no_leader) until one is elected.' : '';
    const notes: string[] = [];
    if (!leading && s.leader !== null) notes.push(`Match index and lag are known on the leader only: open the web app of node ${s.leader.id} (${s.leader.http}) to see them.`);
    if (s.more > 0) notes.push(`${fmtInt(s.more)} more node${s.more === 1 ? '' : 's'} not shown.`);
    this.note.hidden = notes.length === 0;
    this.note.textContent = notes.join(' ');
    this.body.replaceChildren(...s.nodes.map((n) => this.row(s, n)));
    if (s.nodes.length === 0) this.body.append(h('tr', {}, h('td', { colspan: 7, class: 'empty' }, 'This node lists no nodes.')));
  }

  private row(s: ClusterStatus, n: ClusterNode): HTMLTableRowElement {
    const self = n.id === s.nodeId;
    const lag = n.matchIndex === null ? null : Math.max(0, s.commitIndex - n.matchIndex);
    let action: Node | string = '–';
    if (n.role !== 'leader') {
      action = h(
        'button',
        {
          type: 'button',
          class: 'make-leader',
          'aria-label': `Make leader: node ${n.id}`,
          disabled: !this.admin || s.leader === null || this.moving !== null,
          onclick: () => void this.transfer(n.id),
        },
        'Make leader',
      );
    }
    return h(
      'tr',
      { 'data-node': n.id, 'data-role': n.role, class: self ? 'selected' : '' },
      h('th', { scope: 'row' }, String(n.id), self ? h('span', { class: 'hint' }, ' (this node)') : null),
      h('td', { 'data-key': 'http' }, n.http),
      h('td', { 'data-key': 'role' }, h('span', { class: `badge role r-${n.role}` }, roleText(n.role))),
      h('td', { 'data-key': 'reachable', class: n.reachable ? '' : 'error' }, self ? 'this node' : n.reachable ? 'yes' : 'no'),
      h('td', { 'data-key': 'match_index' }, n.matchIndex === null ? '–' : fmtInt(n.matchIndex)),
      h('td', { 'data-key': 'lag' }, lag === null ? '–' : fmtInt(lag)),
      h('td', { class: 'actions' }, action),
    );
  }

  /** Make leader: asks the leader to hand over to node `to`, then follows `/cluster`. */
  private async transfer(to: number): Promise<void> {
    const rest = this.rest;
    if (!rest || !this.admin || this.moving !== null) return;
    this.moving = { to, until: Date.now() + FOLLOW_FOR_MS };
    say(this.status, `Asked node ${to} to take over the leadership…`);
    if (this.shown) this.render(this.shown);
    try {
      await rest.call<{ success: boolean }>('POST', '/cluster/transfer', { to });
    } catch (e) {
      if (rest !== this.rest) return;
      this.moving = null;
      say(this.status, `Node ${to} cannot be made leader: ${errorText(e)}`, true);
      if (this.shown) this.render(this.shown);
      return;
    }
    if (rest === this.rest) this.scheduleFollow();
  }

  private scheduleFollow(): void {
    clearTimeout(this.follow);
    this.follow = window.setTimeout(() => {
      this.follow = 0;
      void this.load();
    }, FOLLOW_MS);
  }

  /** While a transfer is under way: says when it happened, or that it did not. */
  private followTransfer(s: ClusterStatus): void {
    const m = this.moving;
    if (!m) return;
    if (s.leader?.id === m.to) {
      this.moving = null;
      this.render(s);
      say(this.status, `Node ${m.to} is the leader now (term ${fmtInt(s.term)}).`);
    } else if (Date.now() > m.until) {
      this.moving = null;
      this.render(s);
      const now = s.leader === null ? 'no node leads yet' : `node ${s.leader.id} still leads`;
      say(this.status, `Node ${m.to} did not take over within ${FOLLOW_FOR_MS / 1000} s (a node that is behind or unreachable cannot); ${now}.`, true);
    } else {
      this.scheduleFollow();
    }
  }
}
