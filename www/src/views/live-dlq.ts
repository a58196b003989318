/** The live page's DLQ browser: one queue's dead letters, with retry and purge (which need the
 * permission `queue:<name>:admin`; without it they are disabled and a note says so). */
import type { DeadLetter, SynapClient } from 'synap-wasm/client';
import { say } from '../app.js';
import { errorText, fmtInt, h } from '../dom.js';

const PAGE = 50;

function preview(v: unknown): string {
  const text = typeof v === 'string' ? v : JSON.stringify(v);
  return text === undefined ? '' : text.length > 160 ? `${text.slice(0, 157)}…` : text;
}

export class DlqBrowser {
  readonly el: HTMLElement;
  private readonly body: HTMLTableSectionElement;
  private readonly status: HTMLElement;
  private readonly range: HTMLElement;
  private readonly purge: HTMLButtonElement;
  private readonly retrySelected: HTMLButtonElement;
  private readonly retryAll: HTMLButtonElement;
  private readonly access: HTMLElement;
  private readonly prev: HTMLButtonElement;
  private readonly next: HTMLButtonElement;
  private client: SynapClient | null = null;
  private queue = '';
  private offset = 0;
  private total = 0;
  private armed = false;
  /** Whether the caller may retry and purge (`queue:<name>:admin`). */
  private admin = true;

  constructor(private readonly changed: () => void) {
    this.body = h('tbody');
    this.status = h('p', { class: 'status', role: 'status', 'aria-live': 'polite' });
    this.range = h('span', { class: 'range' });
    this.purge = h('button', { type: 'button', id: 'dlq-purge', class: 'danger', onclick: () => void this.purgeClicked() }, 'Purge DLQ');
    this.retrySelected = h('button', { type: 'button', id: 'dlq-retry', onclick: () => void this.retry(true) }, 'Retry selected');
    this.retryAll = h('button', { type: 'button', id: 'dlq-retry-all', onclick: () => void this.retry(false) }, 'Retry all');
    this.access = h('p', { class: 'hint', id: 'dlq-access', hidden: true });
    this.prev = h('button', { type: 'button', onclick: () => void this.page(-PAGE) }, 'Previous');
    this.next = h('button', { type: 'button', onclick: () => void this.page(PAGE) }, 'Next');
    const all = h('input', { type: 'checkbox', id: 'dlq-all', 'aria-label': 'Select every entry on this page' });
    all.addEventListener('change', () => {
      for (const box of this.body.querySelectorAll<HTMLInputElement>('input[type=checkbox]')) box.checked = all.checked;
    });
    this.el = h(
      'section',
      { class: 'panel', id: 'dlq', 'aria-labelledby': 'dlq-title' },
      h('h3', { id: 'dlq-title' }, 'Dead-letter queue'),
      h(
        'div',
        { class: 'toolbar' },
        h('button', { type: 'button', id: 'dlq-refresh', onclick: () => void this.load() }, 'Refresh'),
        this.retrySelected,
        this.retryAll,
        this.purge,
        this.prev,
        this.next,
        this.range,
      ),
      this.access,
      this.status,
      h(
        'div',
        { class: 'table-wrap' },
        h(
          'table',
          { class: 'dlq-table' },
          h('caption', { class: 'sr-only' }, 'Dead letters, oldest first'),
          h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, all), ...['Message id', 'Message', 'Reason', 'Attempts', 'Last error', 'Dead-lettered'].map((t) => h('th', { scope: 'col' }, t)))),
          this.body,
        ),
      ),
    );
  }

  /** Shows `queue`'s DLQ (from its first page); `admin`: whether the caller may retry and
   * purge it. */
  async show(client: SynapClient, queue: string, admin = true): Promise<void> {
    this.client = client;
    if (queue !== this.queue) this.offset = 0;
    this.queue = queue;
    this.admin = admin;
    this.disarm();
    this.retrySelected.disabled = !admin;
    this.retryAll.disabled = !admin;
    this.purge.disabled = !admin || this.total === 0;
    this.access.hidden = admin;
    this.access.textContent = admin ? '' : `Retry and purge need the permission queue:${queue}:admin, which this key does not have.`;
    await this.load();
  }

  private async page(delta: number): Promise<void> {
    this.offset = Math.max(0, Math.min(this.offset + delta, Math.max(0, this.total - 1)));
    await this.load();
  }

  async load(): Promise<void> {
    if (!this.client || !this.queue) return;
    try {
      const page = await this.client.queue.dlqList(this.queue, { offset: this.offset, limit: PAGE });
      if (page.total > 0 && this.offset >= page.total) {
        this.offset = Math.floor((page.total - 1) / PAGE) * PAGE;
        return this.load();
      }
      this.total = page.total;
      this.render(page.messages);
      this.el.dataset.total = String(page.total);
    } catch (e) {
      say(this.status, errorText(e), true);
    }
  }

  private render(entries: DeadLetter[]): void {
    this.body.replaceChildren(
      ...entries.map((m) =>
        h(
          'tr',
          { 'data-id': m.messageId },
          h('td', {}, h('input', { type: 'checkbox', value: m.messageId, 'aria-label': `Select ${m.messageId}` })),
          h('td', {}, h('code', {}, m.messageId)),
          h('td', {}, h('code', { class: 'msg' }, preview(m.message ?? m.payload))),
          h('td', {}, m.reason),
          h('td', {}, String(m.attempts)),
          h('td', {}, m.lastError ?? '–'),
          h('td', {}, new Date(m.deadLetteredAt).toLocaleString()),
        ),
      ),
    );
    if (entries.length === 0) this.body.append(h('tr', {}, h('td', { colspan: 7, class: 'empty' }, 'The DLQ is empty.')));
    const last = this.offset + entries.length;
    this.range.textContent = this.total === 0 ? '' : `${fmtInt(this.offset + 1)}–${fmtInt(last)} of ${fmtInt(this.total)}`;
    this.prev.disabled = this.offset === 0;
    this.next.disabled = last >= this.total;
    this.purge.disabled = !this.admin || this.total === 0;
  }

  private async retry(selected: boolean): Promise<void> {
    if (!this.client || !this.admin) return;
    const ids = [...this.body.querySelectorAll<HTMLInputElement>('input[type=checkbox]:checked')].map((b) => b.value);
    if (selected && ids.length === 0) {
      say(this.status, 'Select the entries to retry first.', true);
      return;
    }
    try {
      const n = await this.client.queue.dlqRetry(this.queue, selected ? ids : undefined);
      say(this.status, `${fmtInt(n)} message${n === 1 ? '' : 's'} moved back to ${this.queue}.`);
      await this.load();
      this.changed();
    } catch (e) {
      say(this.status, errorText(e), true);
    }
  }

  private disarm(): void {
    this.armed = false;
    this.purge.textContent = 'Purge DLQ';
  }

  /** Purging asks twice: the first press arms the button, the second purges. */
  private async purgeClicked(): Promise<void> {
    if (!this.client || !this.admin) return;
    if (!this.armed) {
      this.armed = true;
      this.purge.textContent = `Confirm: delete ${fmtInt(this.total)} dead letters`;
      say(this.status, 'Press again to delete every dead letter of this queue.');
      return;
    }
    this.disarm();
    try {
      const n = await this.client.queue.dlqPurge(this.queue);
      say(this.status, `${fmtInt(n)} dead letters deleted.`);
      await this.load();
      this.changed();
    } catch (e) {
      say(this.status, errorText(e), true);
    }
  }
}
