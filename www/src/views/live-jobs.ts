/**
 * The live page's job lifecycle panels (DESIGN.md §13):
 *
 * - `JobPanel`, the job page: a job looked up by queue and message id (`GET
 *   /queue/{name}/messages/{id}`) with its state, attempts, progress (a bar when it is a
 *   percentage), result, last error and message, the timeline of its events seen on `/events`
 *   since the page connected, and Cancel (`POST /queue/{name}/cancel`). Looking up needs
 *   `queue:<name>:read`, cancelling `queue:<name>:admin`. A job of a flow also shows the whole
 *   flow as a tree (live-flow-tree.ts).
 * - `SchedulesPanel`: the selected queue's schedules (`GET /queue/{name}/schedules`) with next
 *   run, last run and runs, Run now and Delete (which need `queue:<name>:admin`).
 */
import { say } from '../app.js';
import { errorText, field, fmtInt, fmtMs, h } from '../dom.js';
import { Access } from './live-access.js';
import { FlowTree } from './live-flow-tree.js';
import type { LiveEvent } from './live-tools.js';
import { Rest, RestError, seg } from './live-rest.js';

/** The lookup answer. */
export interface Job {
  message_id: string;
  queue: string;
  state: string;
  priority: number;
  group: string | null;
  attempts: number;
  progress: unknown;
  result: unknown;
  last_error: string | null;
  published_at: number | null;
  started_at: number | null;
  finished_at: number | null;
  message?: unknown;
  payload?: unknown;
  headers?: Record<string, string>;
  cancel_requested?: boolean;
  dead_letter_reason?: string;
  /** A job of a flow: the flow, the job waiting for this one, and this one's children. */
  flow_id?: string;
  parent_id?: string;
  children?: string[];
}

/** A schedule as `GET /queue/{name}/schedules` lists it. */
export interface Schedule {
  id: string;
  every_secs: number | null;
  cron: string | null;
  message: unknown;
  priority: number | null;
  max_runs: number | null;
  next_run_at: number | null;
  last_run_at: number | null;
  runs: number;
  last_message_id: string | null;
  last_error: string | null;
}

/** States after which nothing more happens to a job. */
const FINISHED = new Set(['completed', 'dead_lettered', 'cancelled']);
/** Events of jobs kept for timelines (across jobs: the newest are kept). */
const MAX_JOB_EVENTS = 5000;

/**
 * The percentage a progress report stands for: a number from 0 to 100, or an object whose
 * `percent`, `progress` or `pct` field is one; otherwise null (the report is shown as JSON).
 */
export function progressPercent(p: unknown): number | null {
  let n: unknown = p;
  if (p !== null && typeof p === 'object' && !Array.isArray(p)) {
    const o = p as Record<string, unknown>;
    n = [o.percent, o.progress, o.pct].find((v) => typeof v === 'number');
  }
  return typeof n === 'number' && Number.isFinite(n) && n >= 0 && n <= 100 ? n : null;
}

function json(v: unknown): string {
  return v === undefined ? '' : JSON.stringify(v, null, 2);
}

/** A Unix-ms time as local date and time, with how long ago or ahead it is. */
function when(ms: number | null, now = Date.now()): string {
  if (ms === null || ms === undefined) return '–';
  const d = ms - now;
  const rel = Math.abs(d) < 1000 ? 'now' : d > 0 ? `in ${fmtMs(d)}` : `${fmtMs(-d)} ago`;
  return `${new Date(ms).toLocaleString()} (${rel})`;
}

function idOf(e: LiveEvent): string | null {
  const id = e.data.message_id;
  return typeof id === 'string' ? id : null;
}

export class JobPanel {
  readonly el: HTMLElement;
  readonly queue: HTMLInputElement;
  readonly id: HTMLInputElement;
  private readonly lookupButton: HTMLButtonElement;
  private readonly note: HTMLElement;
  private readonly status: HTMLElement;
  private readonly detail: HTMLElement;
  private readonly title: HTMLElement;
  private readonly facts: HTMLElement;
  private readonly progress: HTMLElement;
  private readonly outcome: HTMLElement;
  private readonly cancel: HTMLButtonElement;
  private readonly cancelNote: HTMLElement;
  private readonly timeline: HTMLOListElement;
  private readonly timelineNote: HTMLElement;
  private readonly flowTree = new FlowTree();
  private rest: Rest | null = null;
  private access = new Access(null);
  /** Events that name a message, newest last. */
  private events: LiveEvent[] = [];
  /** The job shown (queue and id), and its latest lookup. */
  private shown: { queue: string; id: string } | null = null;
  private job: Job | null = null;
  private armed = false;
  private lookupFailed = false;
  private timer = 0;
  private since = 0;

  constructor(private readonly looked: (queue: string, id: string) => void) {
    this.queue = h('input', { id: 'job-queue', type: 'text', list: 'queue-names', autocomplete: 'off', placeholder: 'video-processing' });
    this.id = h('input', { id: 'job-id', type: 'text', autocomplete: 'off', spellcheck: 'false', placeholder: 'message id' });
    this.lookupButton = h('button', { type: 'submit', id: 'job-lookup', class: 'primary' }, 'Look up');
    this.note = h('p', { class: 'hint', id: 'job-access', hidden: true });
    this.status = h('p', { class: 'status', id: 'job-status', role: 'status', 'aria-live': 'polite' });
    this.title = h('h4', { id: 'job-title' });
    this.facts = h('dl', { class: 'facts', id: 'job-facts' });
    this.progress = h('div', { id: 'job-progress', class: 'job-progress' });
    this.outcome = h('div', { id: 'job-outcome' });
    this.cancel = h('button', { type: 'button', id: 'job-cancel', class: 'danger', onclick: () => void this.cancelClicked() }, 'Cancel job');
    this.cancelNote = h('p', { class: 'hint', id: 'job-cancel-access', hidden: true });
    this.timeline = h('ol', { class: 'events', id: 'job-timeline', 'aria-labelledby': 'job-timeline-title' });
    this.timelineNote = h('p', { class: 'hint' });
    this.queue.addEventListener('input', () => this.check());
    this.detail = h(
      'div',
      { id: 'job-detail', hidden: true },
      this.title,
      this.facts,
      this.progress,
      h('div', { class: 'toolbar' }, this.cancel, h('button', { type: 'button', id: 'job-refresh', onclick: () => void this.reload() }, 'Refresh')),
      this.cancelNote,
      this.flowTree.el,
      this.outcome,
      h('h4', { id: 'job-timeline-title' }, 'Timeline'),
      this.timelineNote,
      this.timeline,
    );
    this.el = h(
      'section',
      { class: 'panel', id: 'job', 'aria-labelledby': 'job-panel-title' },
      h('h3', { id: 'job-panel-title' }, 'Job'),
      h(
        'form',
        { class: 'toolbar', onsubmit: (e: Event) => { e.preventDefault(); void this.lookup(this.queue.value.trim(), this.id.value.trim()); } },
        field('Queue', this.queue),
        field('Message id', this.id),
        this.lookupButton,
      ),
      this.note,
      this.status,
      this.detail,
    );
  }

  /** Uses `rest`; hidden when the caller may read no queue. */
  use(rest: Rest, access: Access): void {
    this.rest = rest;
    this.access = access;
    this.since = Date.now();
    this.el.hidden = !access.canAny('queue', 'read');
    this.check();
  }

  /** Enables Look up for a queue the caller may read. */
  check(): void {
    const queue = this.queue.value.trim();
    const ok = queue === '' || this.access.can('queue', 'read', queue);
    this.lookupButton.disabled = !ok;
    this.note.hidden = ok;
    this.note.textContent = ok ? '' : `Looking up jobs of this queue needs the permission ${Access.needs('queue', 'read', queue)}.`;
  }

  /** An event from `/events`: kept when it names a message; the shown job follows its own. */
  event(e: LiveEvent): void {
    const id = idOf(e);
    if (id === null) return;
    this.events.push(e);
    this.flowTree.event(id);
    if (this.events.length > MAX_JOB_EVENTS) this.events.splice(0, this.events.length - MAX_JOB_EVENTS);
    const s = this.shown;
    if (s && id === s.id && e.data.queue === s.queue) {
      this.renderTimeline();
      if (!this.timer) this.timer = window.setTimeout(() => { this.timer = 0; void this.reload(); }, 150);
    }
  }

  /** Looks the shown job up again while it is unfinished, else reads its flow again while the
   * flow runs (the live page's poll). */
  poll(): void {
    if (this.shown && this.job && !FINISHED.has(this.job.state)) void this.reload();
    else if (this.shown && this.job) this.flowTree.poll();
  }

  /** Shows job `id` of `queue`. */
  async lookup(queue: string, id: string): Promise<void> {
    if (!this.rest || queue === '' || id === '') {
      if (this.rest) say(this.status, 'Enter a queue and a message id.', true);
      return;
    }
    if (!this.access.can('queue', 'read', queue)) return;
    this.queue.value = queue;
    this.id.value = id;
    this.check();
    this.shown = { queue, id };
    this.job = null;
    this.disarm();
    say(this.status, '');
    this.looked(queue, id);
    await this.reload();
  }

  private async reload(): Promise<void> {
    const rest = this.rest;
    const s = this.shown;
    if (!rest || !s) return;
    try {
      const job = await rest.call<Job>('GET', `/queue/${seg(s.queue)}/messages/${seg(s.id)}`);
      if (this.shown !== s) return;
      this.job = job;
      // A failed lookup's message goes; what Cancel said stays.
      if (this.lookupFailed) say(this.status, '');
      this.lookupFailed = false;
      this.render(job);
      void this.flowTree.show(rest, job.flow_id ?? null, s);
    } catch (e) {
      if (this.shown !== s) return;
      this.job = null;
      this.lookupFailed = true;
      this.detail.hidden = true;
      this.el.dataset.state = 'missing';
      const gone = e instanceof RestError && e.status === 404;
      say(
        this.status,
        gone
          ? `No job ${s.id} in ${s.queue}: it was never published there, or it finished and was forgotten (the queue's keep_completed / keep_cancelled); a dead-lettered job is in the DLQ.`
          : errorText(e),
        true,
      );
    }
  }

  private render(job: Job): void {
    this.detail.hidden = false;
    this.el.dataset.state = job.state;
    this.title.textContent = `Job ${job.message_id} of ${job.queue}`;
    const row = (label: string, value: Node | string, key: string) => h('div', { 'data-key': key }, h('dt', {}, label), h('dd', {}, value));
    const state = h('span', { class: `badge state s-${job.state}`, id: 'job-state' }, job.state.replace(/_/g, ' '));
    this.facts.replaceChildren(
      row('State', job.cancel_requested && !FINISHED.has(job.state) ? h('span', {}, state, ' (cancel requested)') : state, 'state'),
      row('Attempts', fmtInt(job.attempts), 'attempts'),
      row('Priority', String(job.priority), 'priority'),
      row('Published', when(job.published_at), 'published_at'),
      row('Started', when(job.started_at), 'started_at'),
      row('Finished', when(job.finished_at), 'finished_at'),
      ...(job.dead_letter_reason ? [row('Dead-letter reason', job.dead_letter_reason, 'dead_letter_reason')] : []),
    );
    this.renderProgress(job.progress);
    const block = (label: string, key: string, body: Node) => h('div', { class: 'job-block', 'data-key': key }, h('h5', {}, label), body);
    this.outcome.replaceChildren(
      block('Result', 'result', job.result === null || job.result === undefined ? h('p', { class: 'hint' }, FINISHED.has(job.state) ? 'None.' : 'None yet.') : h('pre', { class: 'json', id: 'job-result' }, json(job.result))),
      block('Last error', 'last_error', job.last_error ? h('p', { class: 'error', id: 'job-error' }, job.last_error) : h('p', { class: 'hint' }, 'None.')),
      block('Message', 'message', h('pre', { class: 'json', id: 'job-message' }, json(job.message ?? job.payload ?? null))),
    );
    // Cancel: for an unfinished job not already marked, with `queue:<name>:admin`.
    const admin = this.access.can('queue', 'admin', job.queue);
    const open = !FINISHED.has(job.state) && !job.cancel_requested;
    this.cancel.disabled = !admin || !open;
    this.cancelNote.hidden = admin;
    this.cancelNote.textContent = admin ? '' : `Cancelling needs the permission ${Access.needs('queue', 'admin', job.queue)}, which this key does not have.`;
    if (!open) this.disarm();
    this.renderTimeline();
  }

  private renderProgress(p: unknown): void {
    if (p === null || p === undefined) {
      this.progress.replaceChildren(h('p', { class: 'hint' }, 'Progress: none reported.'));
      this.progress.dataset.kind = 'none';
      return;
    }
    const pct = progressPercent(p);
    if (pct === null) {
      this.progress.replaceChildren(h('h5', {}, 'Progress'), h('pre', { class: 'json', id: 'job-progress-json' }, json(p)));
      this.progress.dataset.kind = 'json';
      return;
    }
    const text = `${Number(pct.toFixed(1))}%`;
    const bar = h('progress', { id: 'job-progress-bar', max: 100, value: pct, 'aria-valuetext': text });
    this.progress.replaceChildren(
      h('div', { class: 'progress-line' }, h('label', { for: 'job-progress-bar' }, 'Progress'), bar, h('span', { id: 'job-progress-text' }, text)),
    );
    if (typeof p === 'object') this.progress.append(h('code', { class: 'hint' }, JSON.stringify(p)));
    this.progress.dataset.kind = 'bar';
  }

  private renderTimeline(): void {
    const s = this.shown;
    if (!s) return;
    const mine = this.events.filter((e) => idOf(e) === s.id && e.data.queue === s.queue);
    this.timelineNote.textContent = `Events of this job seen on the event stream since ${new Date(this.since).toLocaleTimeString()} (earlier ones are not shown).`;
    this.timeline.replaceChildren(
      ...mine.map((e) => {
        const kind = typeof e.data.kind === 'string' ? e.data.kind : e.name;
        const at = typeof e.data.at === 'number' ? e.data.at : e.at;
        const detail: string[] = [];
        if (typeof e.data.attempts === 'number' && kind !== 'progress') detail.push(`attempt ${e.data.attempts}`);
        if (typeof e.data.ms === 'number') detail.push(kind === 'delivered' ? `waited ${fmtMs(e.data.ms)}` : `in ${fmtMs(e.data.ms)}`);
        if (typeof e.data.reason === 'string') detail.push(e.data.reason);
        if (kind === 'progress') detail.push(JSON.stringify(e.data.progress));
        return h(
          'li',
          { 'data-kind': kind },
          h('time', { datetime: new Date(at).toISOString() }, new Date(at).toLocaleTimeString()),
          h('span', { class: `kind k-${kind}` }, kind),
          h('code', { class: 'rest' }, detail.join(' · ')),
        );
      }),
    );
    if (mine.length === 0) this.timeline.append(h('li', { class: 'empty' }, 'No events of this job yet.'));
  }

  private disarm(): void {
    this.armed = false;
    this.cancel.textContent = 'Cancel job';
  }

  /** Cancelling asks twice: the first press arms the button, the second cancels. */
  private async cancelClicked(): Promise<void> {
    const rest = this.rest;
    const job = this.job;
    if (!rest || !job || !this.access.can('queue', 'admin', job.queue)) return;
    if (!this.armed) {
      this.armed = true;
      this.cancel.textContent = 'Confirm: cancel this job';
      say(this.status, 'Press again to cancel the job; it will not run (again), nor be retried.');
      return;
    }
    this.disarm();
    try {
      const r = await rest.call<{ success: boolean; state: string }>('POST', `/queue/${seg(job.queue)}/cancel`, { message_id: job.message_id });
      say(
        this.status,
        r.state === 'cancelled'
          ? 'Cancelled.'
          : 'Cancel requested: the worker is told at its next progress report or extend, and its ack, nack or lease expiry settles the job as cancelled.',
      );
      await this.reload();
    } catch (e) {
      say(this.status, errorText(e), true);
      await this.reload();
    }
  }
}

export class SchedulesPanel {
  readonly el: HTMLElement;
  private readonly title: HTMLElement;
  private readonly body: HTMLTableSectionElement;
  private readonly note: HTMLElement;
  private readonly status: HTMLElement;
  private rest: Rest | null = null;
  private queue = '';
  private admin = true;
  /** The schedule whose Delete was pressed once. */
  private armed = '';
  private list: Schedule[] = [];

  constructor(
    private readonly changed: (queue: string) => void,
    private readonly openJob: (queue: string, id: string) => void,
  ) {
    this.title = h('h3', { id: 'schedules-title' }, 'Schedules');
    this.body = h('tbody', { id: 'schedule-rows' });
    this.note = h('p', { class: 'hint', id: 'schedules-access', hidden: true });
    this.status = h('p', { class: 'status', id: 'schedules-status', role: 'status', 'aria-live': 'polite' });
    const cols = ['Id', 'Every / cron', 'Next run', 'Last run', 'Runs', 'Last error', 'Actions'];
    this.el = h(
      'section',
      { class: 'panel', id: 'schedules', 'aria-labelledby': 'schedules-title', hidden: true },
      this.title,
      h('div', { class: 'toolbar' }, h('button', { type: 'button', id: 'schedules-refresh', onclick: () => void this.load() }, 'Refresh')),
      this.note,
      this.status,
      h(
        'div',
        { class: 'table-wrap' },
        h(
          'table',
          { class: 'schedules' },
          h('caption', { class: 'sr-only' }, 'Schedules of the selected queue'),
          h('thead', {}, h('tr', {}, cols.map((c) => h('th', { scope: 'col' }, c)))),
          this.body,
        ),
      ),
    );
  }

  /** Shows `queue`'s schedules; `admin`: whether the caller may run and delete them. */
  async show(rest: Rest, queue: string, admin: boolean): Promise<void> {
    if (queue !== this.queue) this.armed = '';
    this.rest = rest;
    this.queue = queue;
    this.admin = admin;
    this.el.hidden = false;
    this.title.textContent = `Schedules of ${queue}`;
    this.note.hidden = admin;
    this.note.textContent = admin ? '' : `Run now and delete need the permission ${Access.needs('queue', 'admin', queue)}, which this key does not have.`;
    say(this.status, '');
    await this.load();
  }

  async load(): Promise<void> {
    const rest = this.rest;
    const queue = this.queue;
    if (!rest || !queue) return;
    try {
      const r = await rest.call<{ schedules: Schedule[] }>('GET', `/queue/${seg(queue)}/schedules`);
      if (queue !== this.queue) return;
      this.list = r.schedules;
      this.render();
    } catch (e) {
      say(this.status, errorText(e), true);
    }
  }

  private render(): void {
    const now = Date.now();
    this.el.dataset.count = String(this.list.length);
    this.body.replaceChildren(
      ...this.list.map((s) => {
        const armed = this.armed === s.id;
        const run = h('button', { type: 'button', class: 'run', 'aria-label': `Run now: ${s.id}`, disabled: !this.admin, onclick: () => void this.run(s.id) }, 'Run now');
        const del = h(
          'button',
          { type: 'button', class: 'danger delete', 'aria-label': armed ? `Confirm delete: ${s.id}` : `Delete: ${s.id}`, disabled: !this.admin, onclick: () => void this.remove(s.id) },
          armed ? 'Confirm delete' : 'Delete',
        );
        const every = s.cron !== null && s.cron !== undefined ? h('code', {}, s.cron) : s.every_secs ? fmtMs(s.every_secs * 1000) : '–';
        return h(
          'tr',
          { 'data-id': s.id },
          h('th', { scope: 'row' }, s.id),
          h('td', { 'data-key': 'every' }, every),
          h('td', { 'data-key': 'next_run' }, s.next_run_at === null ? 'never' : when(s.next_run_at, now)),
          h('td', { 'data-key': 'last_run' }, when(s.last_run_at, now)),
          h('td', { 'data-key': 'runs' }, fmtInt(s.runs) + (s.max_runs ? ` of ${fmtInt(s.max_runs)}` : '')),
          h('td', { 'data-key': 'last_error' }, s.last_error ?? '–'),
          h('td', { class: 'actions' }, run, ' ', del),
        );
      }),
    );
    if (this.list.length === 0) {
      this.body.append(h('tr', {}, h('td', { colspan: 7, class: 'empty' }, `No schedules on ${this.queue} (PUT /queue/${this.queue}/schedules/{id} creates one).`)));
    }
  }

  private async run(id: string): Promise<void> {
    const rest = this.rest;
    const queue = this.queue;
    if (!rest || !this.admin) return;
    this.armed = '';
    try {
      const r = await rest.call<{ message_id: string }>('POST', `/queue/${seg(queue)}/schedules/${seg(id)}/run`);
      this.status.classList.remove('error');
      this.status.replaceChildren(
        `${id} ran now: published job `,
        h('button', { type: 'button', class: 'link', id: 'schedule-ran', onclick: () => this.openJob(queue, r.message_id) }, r.message_id),
        '.',
      );
      this.changed(queue);
      await this.load();
    } catch (e) {
      say(this.status, errorText(e), true);
    }
  }

  /** Deleting asks twice: the first press arms the row's button, the second deletes. */
  private async remove(id: string): Promise<void> {
    const rest = this.rest;
    if (!rest || !this.admin) return;
    if (this.armed !== id) {
      this.armed = id;
      say(this.status, `Press Confirm delete to delete the schedule ${id} (jobs it published stay).`);
      this.render();
      this.body.querySelector<HTMLButtonElement>(`tr[data-id="${CSS.escape(id)}"] button.delete`)?.focus();
      return;
    }
    this.armed = '';
    try {
      await rest.call<{ deleted: boolean }>('DELETE', `/queue/${seg(this.queue)}/schedules/${seg(id)}`);
      say(this.status, `Schedule ${id} deleted.`);
      await this.load();
    } catch (e) {
      say(this.status, errorText(e), true);
    }
  }
}
