/**
 * The job page's flow tree (DESIGN.md §14): for a job that belongs to a flow, the whole flow
 * from `GET /flows/{flow_id}` as nested lists, each job with its queue, short id, state badge
 * and, once finished, its result or dead-letter reason. The job shown on the page is marked
 * (`aria-current`), and every job is a link to its own page (`#view=live&job_queue=…&job=…`).
 *
 * The tree is read again with the job page (its lookups, Refresh, its poll while the flow's root
 * is unfinished) and shortly after an event of any of its jobs on `/events`. Reading a flow
 * needs `queue:<root queue>:read`: a 403 is explained, as is a flow the server no longer keeps
 * (404 `flow_not_found`: its jobs finished and were forgotten).
 */
import { errorText, fmtInt, h } from '../dom.js';
import { readHash } from '../hash.js';
import { type Rest, RestError, seg } from './live-rest.js';

/** One job of a flow, as `GET /flows/{flow_id}` answers it. */
export interface FlowNode {
  message_id: string;
  queue: string;
  state: string;
  reason?: string | null;
  result: unknown;
  finished_at: number | null;
  on_child_failure: string;
  children: FlowNode[];
}

/** `GET /flows/{flow_id}`: the root job's fields and the flow's own. */
export interface Flow extends FlowNode {
  flow_id: string;
  created_at: number;
}

/** Jobs drawn (a flow has at most 1,000; beyond, a note says how many were left out). */
const MAX_NODES = 1000;
/** Levels drawn (a flow has at most 8). */
const MAX_DEPTH = 8;
/** Characters of a result shown in the tree (the job's own page shows it whole). */
const MAX_RESULT_CHARS = 160;
/** States after which nothing more happens to a job of a flow. */
const FINISHED = new Set(['completed', 'dead_lettered', 'expired', 'cancelled', 'purged', 'queue_deleted']);

/** The style of a state's badge: waiting, queued, running, done, failed or cancelled. */
export function stateKind(state: string): string {
  switch (state) {
    case 'waiting_children':
      return 'waiting';
    case 'ready':
    case 'delayed':
      return 'queued';
    case 'in_flight':
      return 'running';
    case 'completed':
      return 'done';
    case 'cancelled':
      return 'cancelled';
    default:
      return 'failed';
  }
}

/** The first 8 characters of an id (the link's title has it whole). */
export const shortId = (id: string): string => (id.length > 8 ? id.slice(0, 8) : id);

/** The URL hash of job `id` of `queue`'s page, keeping the hash's other parameters. */
export function jobHref(queue: string, id: string): string {
  const params = readHash();
  params.set('view', 'live');
  params.set('job_queue', queue);
  params.set('job', id);
  return `#${params.toString()}`;
}

/** The jobs of a subtree. */
function size(n: FlowNode): number {
  return n.children.reduce((sum, c) => sum + size(c), 1);
}

function compact(v: unknown): string {
  const text = JSON.stringify(v) ?? String(v);
  return text.length > MAX_RESULT_CHARS ? `${text.slice(0, MAX_RESULT_CHARS)}…` : text;
}

export class FlowTree {
  readonly el: HTMLElement;
  private readonly summary: HTMLElement;
  private readonly status: HTMLElement;
  private readonly tree: HTMLElement;
  private rest: Rest | null = null;
  private flowId: string | null = null;
  private current: { queue: string; id: string } | null = null;
  private flow: Flow | null = null;
  /** Ids of the jobs drawn, so their events refresh the tree. */
  private ids = new Set<string>();
  /** Answers older than the newest request are dropped. */
  private seq = 0;
  private timer = 0;

  constructor() {
    this.summary = h('p', { class: 'ft-summary', id: 'job-flow-summary' });
    this.status = h('p', { class: 'status', id: 'job-flow-status', role: 'status', 'aria-live': 'polite' });
    this.tree = h('div', { id: 'job-flow-tree' });
    this.el = h(
      'section',
      { class: 'flow-tree', id: 'job-flow', 'aria-labelledby': 'job-flow-title', hidden: true },
      h('h4', { id: 'job-flow-title' }, 'Flow'),
      this.summary,
      this.status,
      this.tree,
    );
  }

  /** Whether the flow shown is still running (its root unfinished): the page keeps reading it. */
  get running(): boolean {
    return this.flow !== null && !FINISHED.has(this.flow.state);
  }

  /**
   * Shows flow `flowId` with job `current` marked; a null `flowId` (a job outside any flow)
   * hides the tree.
   */
  async show(rest: Rest, flowId: string | null, current: { queue: string; id: string }): Promise<void> {
    this.rest = rest;
    this.current = current;
    if (flowId !== this.flowId) {
      this.flowId = flowId;
      this.flow = null;
      this.ids.clear();
      this.summary.textContent = '';
      this.tree.replaceChildren();
      this.status.textContent = '';
      this.status.classList.remove('error');
    }
    this.el.hidden = flowId === null;
    if (flowId === null) {
      this.seq += 1;
      delete this.el.dataset.state;
      return;
    }
    await this.load();
  }

  /** The page's poll: reads the flow again while its root is unfinished. */
  poll(): void {
    if (this.running) void this.load();
  }

  /** An event naming job `id`: reads the flow again shortly when the job is one of its own. */
  event(id: string): void {
    if (this.flowId === null || !this.ids.has(id) || this.timer) return;
    this.timer = window.setTimeout(() => {
      this.timer = 0;
      void this.load();
    }, 250);
  }

  private async load(): Promise<void> {
    const rest = this.rest;
    const flowId = this.flowId;
    if (!rest || flowId === null) return;
    this.seq += 1;
    const seq = this.seq;
    try {
      const flow = await rest.call<Flow>('GET', `/flows/${seg(flowId)}`);
      if (seq !== this.seq) return;
      this.flow = flow;
      this.status.textContent = '';
      this.status.classList.remove('error');
      this.render(flow);
    } catch (e) {
      if (seq !== this.seq) return;
      this.flow = null;
      this.ids.clear();
      this.summary.replaceChildren('This job belongs to flow ', h('code', {}, flowId), '.');
      this.tree.replaceChildren();
      const status = e instanceof RestError ? e.status : 0;
      let text = errorText(e);
      if (status === 404) {
        this.el.dataset.state = 'missing';
        text = 'The server no longer knows this flow: all its jobs finished and were forgotten (their queues\u2019 keep_completed, keep_cancelled and DLQ), so the flow was dropped.';
      } else if (status === 403) {
        this.el.dataset.state = 'forbidden';
        // The server names the permission: `… (needs the permission queue:notify:read)`.
        const needs = /needs the permission (\S+?)\)/.exec(text)?.[1];
        text = `Seeing the whole flow needs ${needs ? `the permission ${needs}` : 'read on its root job\u2019s queue'} (read on the queue of the flow's root job), which this key does not have.`;
      } else {
        this.el.dataset.state = 'error';
      }
      this.status.textContent = text;
      this.status.classList.add('error');
    }
  }

  private render(flow: Flow): void {
    // A keyboard user who followed a link of the tree keeps the focus on that job's link.
    const focused = this.tree.contains(document.activeElement) ? (document.activeElement as HTMLElement).closest('li')?.dataset.id : undefined;
    this.ids.clear();
    let drawn = 0;
    let left = 0;
    const node = (n: FlowNode, depth: number): HTMLLIElement | null => {
      if (drawn >= MAX_NODES) {
        left += size(n);
        return null;
      }
      drawn += 1;
      this.ids.add(n.message_id);
      const here = this.current !== null && this.current.id === n.message_id && this.current.queue === n.queue;
      const kind = stateKind(n.state);
      const link = h(
        'a',
        { class: 'ft-link', href: jobHref(n.queue, n.message_id), title: `${n.queue} ${n.message_id}`, 'aria-current': here ? 'page' : null },
        h('span', { class: 'ft-queue' }, n.queue),
        ' ',
        h('code', { class: 'ft-id' }, shortId(n.message_id)),
      );
      const row = h(
        'div',
        { class: 'ft-row' },
        link,
        h('span', { class: `badge ft-state ft-k-${kind}`, 'data-kind': kind }, n.state.replace(/_/g, ' ')),
        here ? h('span', { class: 'ft-here' }, 'this job') : null,
      );
      const li = h('li', { class: 'ft-node', 'data-id': n.message_id, 'data-queue': n.queue, 'data-state': n.state, 'data-current': here ? 'true' : null }, row);
      if (FINISHED.has(n.state)) {
        const outcome = h('p', { class: 'ft-outcome' });
        if (n.reason) outcome.append(h('span', { class: 'ft-reason' }, `reason: ${n.reason}`));
        if (n.result !== null && n.result !== undefined) {
          if (n.reason) outcome.append(' · ');
          outcome.append('result: ', h('code', { class: 'ft-result' }, compact(n.result)));
        } else if (!n.reason) {
          outcome.append(h('span', { class: 'hint' }, 'no result'));
        }
        li.append(outcome);
      }
      if (n.children.length > 0) {
        const children = depth + 1 < MAX_DEPTH ? n.children.map((c) => node(c, depth + 1)).filter((c): c is HTMLLIElement => c !== null) : [];
        if (depth + 1 >= MAX_DEPTH) left += n.children.reduce((sum, c) => sum + size(c), 0);
        if (children.length > 0) {
          li.append(h('ul', { class: 'ft-children', 'aria-label': `Jobs ${n.queue} ${shortId(n.message_id)} waits for` }, children));
        }
      }
      return li;
    };
    const root = node(flow, 0);
    this.el.dataset.state = flow.state;
    this.el.dataset.count = String(drawn);
    const finished = flow.finished_at === null ? 'running' : `finished ${new Date(flow.finished_at).toLocaleString()}`;
    this.summary.replaceChildren(
      'Flow ',
      h('code', { id: 'job-flow-id' }, flow.flow_id),
      `: ${fmtInt(drawn)} job${drawn === 1 ? '' : 's'}, created ${new Date(flow.created_at).toLocaleString()}, ${finished}.`,
      left > 0 ? ` ${fmtInt(left)} more not shown.` : '',
    );
    this.tree.replaceChildren(h('ul', { class: 'ft-tree', 'aria-label': `Jobs of flow ${shortId(flow.flow_id)}` }, root));
    if (focused) this.tree.querySelector<HTMLElement>(`li[data-id="${CSS.escape(focused)}"] > .ft-row > a`)?.focus();
  }
}
