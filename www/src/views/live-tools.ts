/** The live page's tools: the event stream with filters, KV lookup and a test publish. */
import type { SynapClient } from 'synap-wasm/client';
import { say } from '../app.js';
import { errorText, field, h } from '../dom.js';
import { Access } from './live-access.js';

/** An engine event as `/events` sends it (its SSE name and JSON). */
export interface LiveEvent {
  name: string;
  data: Record<string, unknown>;
  at: number;
}

/** Events kept for display. */
const MAX_EVENTS = 500;

function queueOf(e: LiveEvent): string {
  const q = e.data.queue;
  return typeof q === 'string' ? q : '';
}

function kindOf(e: LiveEvent): string {
  const k = e.data.kind;
  return typeof k === 'string' ? k : e.name;
}

export class EventLog {
  readonly el: HTMLElement;
  private readonly list: HTMLOListElement;
  private readonly queue: HTMLInputElement;
  private readonly kind: HTMLSelectElement;
  private readonly pause: HTMLInputElement;
  private readonly count: HTMLElement;
  private events: LiveEvent[] = [];
  private timer = 0;

  /** `openJob`: called when a message id is pressed (the job page shows it). */
  constructor(private readonly openJob?: (queue: string, id: string) => void) {
    // The log role sits on a wrapper: on the list itself its items would not be list items.
    this.list = h('ol', { class: 'events', id: 'event-list', 'aria-label': 'Engine events, newest first' });
    this.queue = h('input', { id: 'event-queue', type: 'search', placeholder: 'any queue' });
    const kinds = ['published', 'delivered', 'acked', 'nacked', 'retry_scheduled', 'lease_expired', 'dead_lettered', 'expired', 'redriven', 'purged', 'cancelled', 'progress', 'pub_sub', 'key_expired', 'wait_timed_out'];
    this.kind = h('select', { id: 'event-kind' }, h('option', { value: '' }, 'every kind'), kinds.map((k) => h('option', { value: k }, k)));
    this.pause = h('input', { id: 'event-pause', type: 'checkbox' });
    this.count = h('span', { class: 'hint' });
    for (const el of [this.queue, this.kind, this.pause]) el.addEventListener('input', () => this.render());
    this.el = h(
      'section',
      { class: 'panel', id: 'events', 'aria-labelledby': 'events-title' },
      h('h3', { id: 'events-title' }, 'Event stream'),
      h(
        'div',
        { class: 'toolbar' },
        field('Queue', this.queue),
        field('Kind', this.kind),
        h('div', { class: 'field check' }, this.pause, h('label', { for: 'event-pause' }, 'Pause')),
        h('button', { type: 'button', onclick: () => { this.events = []; this.render(); } }, 'Clear'),
        this.count,
      ),
      h('div', { role: 'log', 'aria-live': 'off', 'aria-label': 'Engine events' }, this.list),
    );
  }

  add(e: LiveEvent): void {
    this.events.unshift(e);
    if (this.events.length > MAX_EVENTS) this.events.length = MAX_EVENTS;
    if (!this.pause.checked && !this.timer) this.timer = window.setTimeout(() => this.render(), 150);
  }

  private render(): void {
    this.timer = 0;
    if (this.pause.checked) return;
    const q = this.queue.value.trim();
    const k = this.kind.value;
    const shown = this.events.filter((e) => (!q || queueOf(e).includes(q)) && (!k || kindOf(e) === k)).slice(0, 200);
    this.list.replaceChildren(
      ...shown.map((e) => {
        const { kind, queue, message_id, type, ...rest } = e.data;
        void [kind, queue, type];
        return h(
          'li',
          { 'data-kind': kindOf(e) },
          h('time', {}, new Date(e.at).toLocaleTimeString()),
          h('span', { class: `kind k-${kindOf(e)}` }, kindOf(e)),
          h('span', { class: 'q' }, queueOf(e)),
          typeof message_id === 'string' ? this.idLink(queueOf(e), message_id) : null,
          h('code', { class: 'rest' }, JSON.stringify(rest)),
        );
      }),
    );
    this.count.textContent = `${shown.length} shown of ${this.events.length} kept`;
  }

  private idLink(queue: string, id: string): HTMLElement {
    const open = this.openJob;
    if (!open || queue === '') return h('code', {}, id);
    return h('button', { type: 'button', class: 'link mono', title: `Open job ${id} of ${queue}`, onclick: () => open(queue, id) }, id);
  }
}

export class KvLookup {
  readonly el: HTMLElement;
  private client: SynapClient | null = null;
  private access = new Access(null);
  private readonly key: HTMLInputElement;
  private readonly get: HTMLButtonElement;
  private readonly note: HTMLElement;
  private readonly out: HTMLElement;

  constructor() {
    this.key = h('input', { id: 'kv-key', type: 'text', placeholder: 'video:42:status', autocomplete: 'off' });
    this.get = h('button', { type: 'submit', id: 'kv-get' }, 'Get');
    this.note = h('p', { class: 'hint', id: 'kv-access', hidden: true });
    this.out = h('div', { id: 'kv-result', role: 'status', 'aria-live': 'polite' });
    this.key.addEventListener('input', () => this.check());
    this.el = h(
      'section',
      { class: 'panel', id: 'kv', 'aria-labelledby': 'kv-title' },
      h('h3', { id: 'kv-title' }, 'KV lookup'),
      h('form', { class: 'toolbar', onsubmit: (e: Event) => { e.preventDefault(); void this.lookup(); } }, field('Key', this.key), this.get),
      this.note,
      this.out,
    );
  }

  /** Uses `client`; hidden when the caller may read no key, Get disabled for a key it may not read. */
  use(client: SynapClient, access: Access): void {
    this.client = client;
    this.access = access;
    this.el.hidden = !access.canAny('kv', 'read');
    this.check();
  }

  private check(): void {
    const key = this.key.value;
    const ok = key === '' || this.access.can('kv', 'read', key);
    this.get.disabled = !ok;
    this.note.hidden = ok;
    this.note.textContent = ok ? '' : `Reading this key needs the permission ${Access.needs('kv', 'read', key)}.`;
  }

  private async lookup(): Promise<void> {
    const key = this.key.value;
    if (!this.client || key === '' || !this.access.can('kv', 'read', key)) return;
    try {
      const r = await this.client.kv.get(key);
      if (!r.found) {
        this.out.replaceChildren(h('p', {}, `No key ${key}.`));
        return;
      }
      const ttl = r.ttl === null || r.ttl === undefined ? 'no expiry' : `expires in ${r.ttl} s`;
      this.out.replaceChildren(h('pre', { class: 'json' }, JSON.stringify(r.value, null, 2)), h('p', { class: 'hint' }, ttl));
    } catch (e) {
      this.out.replaceChildren(h('p', { class: 'error' }, errorText(e)));
    }
  }
}

export class Publisher {
  readonly el: HTMLElement;
  private client: SynapClient | null = null;
  private access = new Access(null);
  readonly queue: HTMLInputElement;
  private readonly message: HTMLTextAreaElement;
  private readonly priority: HTMLInputElement;
  private readonly send: HTMLButtonElement;
  private readonly note: HTMLElement;
  private readonly status: HTMLElement;

  constructor(private readonly published: (queue: string) => void) {
    this.queue = h('input', { id: 'pub-queue', type: 'text', value: 'video-processing', list: 'queue-names', autocomplete: 'off' });
    this.message = h('textarea', { id: 'pub-message', rows: 3, class: 'json', spellcheck: 'false', value: '{"video_id": 1, "user_id": 7}' });
    this.priority = h('input', { id: 'pub-priority', type: 'number', min: 0, max: 9, step: '1', value: 5 });
    this.status = h('p', { class: 'status', role: 'status', 'aria-live': 'polite' });
    this.send = h('button', { type: 'submit', id: 'pub-send', class: 'primary' }, 'Publish');
    this.note = h('p', { class: 'hint', id: 'pub-access', hidden: true });
    this.queue.addEventListener('input', () => this.check());
    this.el = h(
      'section',
      { class: 'panel', id: 'publish', 'aria-labelledby': 'publish-title' },
      h('h3', { id: 'publish-title' }, 'Publish a test message'),
      h(
        'form',
        { class: 'stack', onsubmit: (e: Event) => { e.preventDefault(); void this.publish(); } },
        field('Queue', this.queue),
        field('Message (JSON)', this.message),
        field('Priority (0–9)', this.priority),
        this.send,
      ),
      this.note,
      this.status,
    );
  }

  /** Uses `client`; hidden when the caller may publish to no queue, Publish disabled for a
   * queue it may not publish to. */
  use(client: SynapClient, access: Access): void {
    this.client = client;
    this.access = access;
    this.el.hidden = !access.canAny('queue', 'publish');
    this.check();
  }

  /** Enables Publish for a queue the caller may publish to (call after setting `queue`). */
  check(): void {
    const queue = this.queue.value.trim();
    const ok = queue === '' || this.access.can('queue', 'publish', queue);
    this.send.disabled = !ok;
    this.note.hidden = ok;
    this.note.textContent = ok ? '' : `Publishing to this queue needs the permission ${Access.needs('queue', 'publish', queue)}.`;
  }

  private async publish(): Promise<void> {
    if (!this.client || !this.access.can('queue', 'publish', this.queue.value.trim())) return;
    let message: unknown;
    try {
      message = JSON.parse(this.message.value);
    } catch (e) {
      say(this.status, `The message is not JSON: ${errorText(e)}`, true);
      return;
    }
    const priority = Number(this.priority.value);
    if (!Number.isInteger(priority) || priority < 0 || priority > 9) {
      say(this.status, 'Priority must be a whole number from 0 to 9.', true);
      return;
    }
    const queue = this.queue.value.trim();
    try {
      const r = await this.client.queue.publish(queue, message, { priority });
      say(this.status, `Published ${r.messageId} to ${queue}.`);
      this.published(queue);
    } catch (e) {
      say(this.status, errorText(e), true);
    }
  }
}
