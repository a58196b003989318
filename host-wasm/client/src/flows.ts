import { SynapError } from './errors.js';
import { checkGroup, obj, toFlow, toFlowCreated } from './convert.js';
import { seg, type Transport } from './transport.js';
import type { Flow, FlowCreated, FlowSpec } from './types.js';

/**
 * Most levels of a flow (the root is the first) any server accepts: the ceiling of its
 * `limits.max_flow_depth` (8 by default, which the server enforces).
 */
export const MAX_FLOW_DEPTH = 32;
/** Most jobs in one flow any server accepts: the ceiling of its `limits.max_flow_jobs` (1,000 by default). */
export const MAX_FLOW_JOBS = 100_000;

/** A node's fields, camelCase as given → snake_case as sent. */
const FIELDS: Record<string, string> = {
  queue: 'queue',
  message: 'message',
  priority: 'priority',
  group: 'group',
  headers: 'headers',
  ttl: 'ttl',
  maxRetries: 'max_retries',
  onChildFailure: 'on_child_failure',
  children: 'children',
};

const ON_CHILD_FAILURE = ['fail', 'continue', 'ignore'];

function invalid(path: string, what: string): SynapError {
  return new SynapError(`${path}${what}`, 'invalid_argument', 0);
}

/** One node in the server's shape, its children left for the caller to fill. */
function nodeBody(node: unknown, path: string): { body: Record<string, unknown>; children: unknown[] } {
  if (node === null || typeof node !== 'object' || Array.isArray(node)) {
    const name = path === '' ? 'the flow' : path.slice(0, -1);
    throw invalid('', `${name}: a flow node must be an object {queue, message, …}, got ${JSON.stringify(node)?.slice(0, 50)}`);
  }
  const body: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(node)) {
    const wire = FIELDS[k];
    if (wire === undefined) throw invalid(path, `${k}: unknown field (a node takes ${Object.keys(FIELDS).join(', ')})`);
    if (v !== undefined && k !== 'children') body[wire] = v;
  }
  const n = node as FlowSpec;
  if (typeof n.queue !== 'string' || n.queue === '') throw invalid(path, 'queue: a non-empty string is required');
  if (n.message === undefined) throw invalid(path, 'message: missing (any JSON but null)');
  for (const k of ['priority', 'ttl', 'maxRetries'] as const) {
    const v = n[k];
    // NaN and infinities would travel as null and read as absent.
    if (v !== undefined && (typeof v !== 'number' || !Number.isFinite(v))) throw invalid(path, `${k}: must be a finite number`);
  }
  if (n.group !== undefined) {
    try {
      checkGroup(n.group);
    } catch (e) {
      throw invalid(path, (e as Error).message);
    }
  }
  if (n.onChildFailure !== undefined && !ON_CHILD_FAILURE.includes(n.onChildFailure)) {
    throw invalid(path, `onChildFailure: must be one of ${ON_CHILD_FAILURE.join(', ')}`);
  }
  if (n.children !== undefined && !Array.isArray(n.children)) throw invalid(path, 'children: must be an array of nodes');
  return { body, children: n.children ?? [] };
}

/**
 * The request body of `POST /flows` for `tree`, checked as far as the client can: every node
 * an object with a queue and a message, known fields only, numbers finite, a group the server
 * accepts, and no more levels or jobs than any server takes (`MAX_FLOW_DEPTH`,
 * `MAX_FLOW_JOBS`; this also stops a tree that contains itself). The server's own limits
 * (8 levels and 1,000 jobs by default) are its to enforce. Nodes are named by their path
 * (`children[1].children[0].`), as the server names them.
 */
export function flowBody(tree: unknown): Record<string, unknown> {
  let jobs = 0;
  const build = (node: unknown, path: string, depth: number): Record<string, unknown> => {
    jobs += 1;
    if (jobs > MAX_FLOW_JOBS) throw new SynapError(`limit exceeded: jobs per flow (limit ${MAX_FLOW_JOBS})`, 'limit_exceeded', 0);
    if (depth > MAX_FLOW_DEPTH) throw new SynapError(`limit exceeded: flow depth (limit ${MAX_FLOW_DEPTH})`, 'limit_exceeded', 0);
    const { body, children } = nodeBody(node, path);
    if (children.length > 0) body.children = children.map((c, i) => build(c, `${path}children[${i}].`, depth + 1));
    return body;
  };
  return build(tree, '', 1);
}

/**
 * Flows: `client.flows`. A flow is a tree of jobs in which each parent waits for its children
 * (docs/pipelines-with-flows.md): the renditions of a video run in parallel, the package job
 * runs when they are all finished and receives their results, the notification runs last.
 */
export class FlowsApi {
  constructor(private readonly t: Transport) {}

  /**
   * Adds a flow: `tree` is the root job, each of its `children` a job it waits for (nested,
   * on any queues). The whole tree is accepted or nothing is. Answers the flow's id and every
   * job made, as a tree in the order given. Never resent after an unanswered attempt: flows
   * take no idempotency key, and a repeat would add a second flow.
   */
  async add(tree: FlowSpec): Promise<FlowCreated> {
    const body = flowBody(tree);
    return toFlowCreated(await this.t.request('POST', '/flows', body, { once: true }));
  }

  /**
   * The flow as it is now: its root job's state (the flow's) and the tree of jobs with each
   * one's state, `reason`, `result` (while kept) and `finishedAt`. 404 `flow_not_found` for
   * an unknown flow or one no longer kept.
   */
  async get<R = unknown>(flowId: string): Promise<Flow<R>> {
    if (typeof flowId !== 'string' || flowId === '') throw invalid('', 'flowId: a non-empty string is required');
    return toFlow<R>(obj(await this.t.request('GET', `/flows/${seg(flowId)}`), 'flow'));
  }
}
