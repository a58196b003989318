/**
 * Flow control in the live page (DESIGN.md §12, docs/controlling-throughput.md): the queue
 * table flags a paused or rate-limited queue and shows its in-flight count against
 * `max_in_flight`; the selected queue's panel shows whether it is paused (with Pause and
 * Resume, which need `queue:<name>:admin` and are hidden without it), its in-flight count
 * against the cap, the ready messages held back, until when it is rate limited (counting
 * down), its flow settings and its largest groups (`GET /queue/{name}/groups`).
 */
import type { GroupInfo, QueueStats, SynapClient } from 'synap-wasm/client';
import { say } from '../app.js';
import { errorText, fill, fmtInt, h } from '../dom.js';
import { Access } from './live-access.js';

/** Groups listed for the selected queue (the largest). */
const TOP_GROUPS = 5;

/** A `{max, per_secs}` rate as the stats' camelCased config has it. */
interface Rate {
  max?: unknown;
  perSecs?: unknown;
}

/** Whether the server reports flow control in its stats (servers before it do not). */
function hasFlow(s: QueueStats): boolean {
  return typeof s.paused === 'boolean';
}

/** The queue's `max_in_flight`, or null when it has none. */
function inFlightCap(s: QueueStats): number | null {
  const v = s.config?.maxInFlight;
  return typeof v === 'number' ? v : null;
}

/** When deliveries resume (Unix ms), or null when the queue is not rate limited now. */
function limitedUntil(s: QueueStats, now: number): number | null {
  const until = s.rateLimitedUntilMs;
  return typeof until === 'number' && until > now ? until : null;
}

/** The in-flight cell of the queue table: `3 / 8` under a `max_in_flight` of 8, else `3`. */
export function inFlightText(s: QueueStats): string {
  const cap = inFlightCap(s);
  return cap === null ? fmtInt(s.inFlight) : `${fmtInt(s.inFlight)} / ${fmtInt(cap)}`;
}

/** The badges beside a queue's name in the table: paused, rate limited. */
export function flowFlags(s: QueueStats, now = Date.now()): HTMLElement[] {
  const flags: HTMLElement[] = [];
  if (s.paused === true) flags.push(h('span', { class: 'badge flag f-paused', 'data-flag': 'paused' }, 'paused'));
  if (limitedUntil(s, now) !== null) flags.push(h('span', { class: 'badge flag f-limited', 'data-flag': 'rate_limited' }, 'rate limited'));
  return flags;
}

/** Time left as a countdown: `12 s`, `4 min 05 s`, `2 h 10 min`. */
export function fmtLeft(ms: number): string {
  const s = Math.max(0, Math.ceil(ms / 1000));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, '0')} s`;
  return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')} min`;
}

function rateText(v: unknown): string | null {
  if (v === null || typeof v !== 'object') return null;
  const r = v as Rate;
  return typeof r.max === 'number' && typeof r.perSecs === 'number' ? `${fmtInt(r.max)} per ${r.perSecs} s` : null;
}

/** The queue's flow settings in a line, or `none`. */
function limitsText(s: QueueStats): string {
  const c = s.config ?? {};
  const parts: string[] = [];
  const cap = inFlightCap(s);
  if (cap !== null) parts.push(`max_in_flight ${fmtInt(cap)}`);
  if (typeof c.groupConcurrency === 'number') parts.push(`group_concurrency ${fmtInt(c.groupConcurrency)}`);
  if (c.orderedGroups === true) parts.push('ordered groups');
  if (c.fairGroups === true) parts.push('fair groups');
  const rate = rateText(c.rateLimit);
  if (rate) parts.push(`rate_limit ${rate}`);
  const groupRate = rateText(c.groupRateLimit);
  if (groupRate) parts.push(`group_rate_limit ${groupRate}`);
  return parts.length === 0 ? 'none' : parts.join(' · ');
}

/** The selected queue's flow-control panel, inside the queue detail. */
export class FlowPanel {
  readonly el: HTMLElement;
  private readonly state: HTMLElement;
  private readonly pause: HTMLButtonElement;
  private readonly resume: HTMLButtonElement;
  private readonly access: HTMLElement;
  private readonly status: HTMLElement;
  private readonly facts: HTMLElement;
  private readonly groupsBox: HTMLElement;
  private readonly groupRows: HTMLTableSectionElement;
  private readonly groupsNote: HTMLElement;
  private client: SynapClient | null = null;
  private queue = '';
  /** Whether the caller may pause and resume the queue (`queue:<name>:admin`). */
  private admin = false;
  private stats: QueueStats | null = null;
  /** The countdown's timer while the queue is rate limited. */
  private timer = 0;
  /** Numbers the groups requests, so a late answer for an earlier one is dropped. */
  private groupsSeq = 0;

  /** `changed(queue)`: the queue's state changed here (read its stats again). */
  constructor(private readonly changed: (queue: string) => void) {
    this.state = h('span', { class: 'badge flow-state', id: 'flow-state' });
    this.pause = h('button', { type: 'button', id: 'queue-pause', hidden: true, onclick: () => void this.setPaused(true) }, 'Pause');
    this.resume = h('button', { type: 'button', id: 'queue-resume', hidden: true, onclick: () => void this.setPaused(false) }, 'Resume');
    this.access = h('p', { class: 'hint', id: 'flow-access', hidden: true });
    this.status = h('p', { class: 'status', id: 'flow-status', role: 'status', 'aria-live': 'polite' });
    this.facts = h('dl', { class: 'facts', id: 'flow-facts' });
    this.groupRows = h('tbody', { id: 'flow-group-rows' });
    this.groupsNote = h('p', { class: 'hint', id: 'flow-groups-note' });
    this.groupsBox = h(
      'div',
      { id: 'flow-groups', hidden: true },
      h('h5', { id: 'flow-groups-title' }, 'Largest groups'),
      h(
        'div',
        { class: 'table-wrap' },
        h(
          'table',
          { class: 'groups', 'aria-labelledby': 'flow-groups-title' },
          h('thead', {}, h('tr', {}, ['Group', 'Ready', 'In flight', 'Delayed'].map((t) => h('th', { scope: 'col' }, t)))),
          this.groupRows,
        ),
      ),
      this.groupsNote,
    );
    this.el = h(
      'section',
      { class: 'flow', id: 'queue-flow', 'aria-labelledby': 'flow-title', hidden: true },
      h('h4', { id: 'flow-title' }, 'Flow control'),
      h('div', { class: 'toolbar' }, this.state, this.pause, this.resume),
      this.access,
      this.status,
      this.facts,
      this.groupsBox,
    );
  }

  /** Shows `queue` (its `stats` when already read); `admin`: whether the caller may pause it. */
  show(client: SynapClient, queue: string, admin: boolean, stats?: QueueStats): void {
    if (queue !== this.queue) {
      say(this.status, '');
      this.groupRows.replaceChildren();
      this.groupsBox.hidden = true;
      this.stats = null;
    }
    this.client = client;
    this.queue = queue;
    this.admin = admin;
    this.access.hidden = admin;
    this.access.textContent = admin ? '' : `Pause and Resume need the permission ${Access.needs('queue', 'admin', queue)}, which this key does not have.`;
    this.stopTimer();
    if (stats) this.update(stats);
  }

  /** Forgets the queue shown (on disconnecting). */
  reset(): void {
    this.stopTimer();
    this.client = null;
    this.queue = '';
    this.stats = null;
    this.el.hidden = true;
  }

  /** New stats of the queue shown: state, counts, countdown, and its groups read again. */
  update(s: QueueStats): void {
    if (s.queue !== this.queue) return;
    this.stats = s;
    this.el.hidden = !hasFlow(s);
    if (!hasFlow(s)) return;
    const paused = s.paused === true;
    this.state.textContent = paused ? 'paused' : 'running';
    this.state.classList.toggle('f-paused', paused);
    this.el.dataset.paused = String(paused);
    this.pause.hidden = !this.admin || paused;
    this.resume.hidden = !this.admin || !paused;
    this.renderFacts();
    const limited = limitedUntil(s, Date.now()) !== null;
    if (limited && this.timer === 0) this.timer = window.setInterval(() => this.tick(), 1000);
    else if (!limited) this.stopTimer();
    if (s.groups > 0) void this.loadGroups();
    else {
      this.groupsSeq += 1;
      this.groupsBox.hidden = true;
      this.groupRows.replaceChildren();
    }
  }

  private renderFacts(): void {
    const s = this.stats;
    if (!s) return;
    const cap = inFlightCap(s);
    const until = limitedUntil(s, Date.now());
    const fact = (key: string, label: string, value: string) => h('div', { 'data-key': key }, h('dt', {}, label), h('dd', {}, value));
    fill(
      this.facts,
      fact('in_flight', 'In flight', cap === null ? `${fmtInt(s.inFlight)} in flight (no max_in_flight)` : `${fmtInt(s.inFlight)} / ${fmtInt(cap)} in flight`),
      fact('held_back', 'Held back (ready, not deliverable now)', fmtInt(s.heldBack ?? 0)),
      fact(
        'rate_limited',
        'Rate limited',
        until === null ? 'no' : `deliveries resume in ${fmtLeft(until - Date.now())} (at ${new Date(until).toLocaleTimeString()})`,
      ),
      fact('groups', 'Groups holding messages', fmtInt(s.groups ?? 0)),
      fact('limits', 'Flow settings', limitsText(s)),
    );
  }

  /** The countdown: once the limit has passed, the stats are read again. */
  private tick(): void {
    const s = this.stats;
    if (!s || limitedUntil(s, Date.now()) === null) {
      this.stopTimer();
      if (s) this.changed(s.queue);
      return;
    }
    this.renderFacts();
  }

  private stopTimer(): void {
    clearInterval(this.timer);
    this.timer = 0;
  }

  private async loadGroups(): Promise<void> {
    const client = this.client;
    const queue = this.queue;
    if (!client || !queue) return;
    const seq = ++this.groupsSeq;
    let groups: GroupInfo[];
    try {
      groups = await client.queue.groups(queue, TOP_GROUPS);
    } catch (e) {
      if (seq === this.groupsSeq) say(this.status, `Groups: ${errorText(e)}`, true);
      return;
    }
    if (seq !== this.groupsSeq || queue !== this.queue) return;
    this.renderGroups(groups);
  }

  private renderGroups(groups: GroupInfo[]): void {
    const num = (v: number, key: string) => h('td', { 'data-key': key }, fmtInt(v));
    this.groupRows.replaceChildren(
      ...groups.map((g) => h('tr', { 'data-group': g.group }, h('th', { scope: 'row' }, g.group), num(g.ready, 'ready'), num(g.inFlight, 'in_flight'), num(g.delayed, 'delayed'))),
    );
    this.groupsBox.hidden = groups.length === 0;
    const total = this.stats?.groups ?? groups.length;
    this.groupsNote.textContent =
      total > groups.length
        ? `The ${groups.length} largest of ${fmtInt(total)} groups (ready, delayed and in flight together).`
        : `${fmtInt(groups.length)} group${groups.length === 1 ? '' : 's'}, largest first (ready, delayed and in flight together).`;
  }

  /** Pauses or resumes the queue shown (`POST /queue/{name}/pause`, `/resume`). */
  private async setPaused(paused: boolean): Promise<void> {
    const client = this.client;
    const queue = this.queue;
    if (!client || !queue || !this.admin) return;
    try {
      if (paused) await client.queue.pause(queue);
      else await client.queue.resume(queue);
      // The other button takes the place (and the focus) of the one pressed.
      this.pause.hidden = paused;
      this.resume.hidden = !paused;
      (paused ? this.resume : this.pause).focus();
      say(this.status, paused ? `${queue} is paused: it takes publishes and acks and delivers nothing until resumed.` : `${queue} is running again.`);
    } catch (e) {
      say(this.status, errorText(e), true);
    }
    this.changed(queue);
  }
}
