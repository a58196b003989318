/**
 * Live: connects to a Synap server (the one serving the page by default) with the TypeScript
 * client. Queue stats come from the stats route, refreshed when `/events` reports a change to
 * a queue and every few seconds; the selected queue gets charts over wall-clock time, a DLQ
 * browser, and beside them the event stream, KV lookup and a test publish. On connecting it
 * reads `GET /auth/me` and shows the caller's name; controls its permissions do not allow are
 * disabled (with a note naming the permission) or, when it may use them nowhere, hidden.
 * The job page looks a job up by queue and id and follows it on the event stream; the selected
 * queue also lists its schedules (live-jobs.ts). On a cluster node a panel shows the cluster's
 * nodes, roles, lag and term, with a leader transfer (live-cluster.ts). Flow control (paused,
 * in flight against `max_in_flight`, held back, rate limited, largest groups, Pause and
 * Resume) is in live-flow.ts.
 */
import { SynapClient, type QueueStats } from 'synap-wasm/client';
import { type App, type View, say } from '../app.js';
import { Chart, destroyCharts } from '../charts.js';
import { errorText, field, fill, fmtInt, fmtMs, h } from '../dom.js';
import { Access, whoAmI } from './live-access.js';
import { ClusterPanel } from './live-cluster.js';
import { DlqBrowser } from './live-dlq.js';
import { FlowPanel, flowFlags, inFlightText } from './live-flow.js';
import { JobPanel, SchedulesPanel } from './live-jobs.js';
import { Rest } from './live-rest.js';
import { EventLog, KvLookup, type LiveEvent, Publisher } from './live-tools.js';

/** Points kept per queue (at the refresh rate, some minutes of history). */
const MAX_HISTORY = 900;
/** Queues shown (the list route is sorted; the rest are named in a note). */
const MAX_QUEUES = 200;
const POLL_MS = 3000;
/** Where the tab remembers a successful connection (cleared when the tab closes). */
const SESSION_KEY = 'synap.live';
const EVENT_NAMES = ['observed', 'progress', 'delivered', 'wait_timed_out', 'pub_sub', 'key_expired', 'lagged'];

interface Point {
  t: number;
  depth: number;
  inFlight: number;
  dlq: number;
  acked: number;
}

export class LiveView implements View {
  readonly el: HTMLElement;
  private readonly url: HTMLInputElement;
  private readonly key: HTMLInputElement;
  private readonly status: HTMLElement;
  private readonly streamState: HTMLElement;
  private readonly who: HTMLElement;
  private readonly purgeQueue: HTMLButtonElement;
  private readonly queueStatus: HTMLElement;
  private readonly rows: HTMLTableSectionElement;
  private readonly names: HTMLDataListElement;
  private readonly detail: HTMLElement;
  private readonly detailTitle: HTMLElement;
  private readonly chartBox: HTMLElement;
  private readonly dlq = new DlqBrowser(() => this.refresh(this.selected));
  private readonly log = new EventLog((q, id) => this.showJob(q, id));
  private readonly kv = new KvLookup();
  private readonly cluster = new ClusterPanel();
  private readonly flow = new FlowPanel((q) => void this.refresh(q));
  private readonly publisher = new Publisher((q) => void this.refreshAll(q));
  private readonly job: JobPanel;
  private readonly schedules = new SchedulesPanel(
    (q) => this.soon(q),
    (q, id) => this.showJob(q, id),
  );
  private readonly app: App;
  private client: SynapClient | null = null;
  private rest: Rest | null = null;
  private access = new Access(null);
  private purgeArmed = false;
  private source: EventSource | null = null;
  private stats = new Map<string, QueueStats>();
  private history = new Map<string, Point[]>();
  private pending = new Map<string, number>();
  private selected = '';
  private charts: Chart[] = [];
  private poll = 0;

  constructor(app: App) {
    this.app = app;
    // The job shown is kept in the URL, so a link opens its page.
    this.job = new JobPanel((queue, id) => this.app.setParams({ job_queue: queue, job: id }));
    const here = location.protocol.startsWith('http') ? location.origin : 'http://127.0.0.1:15500';
    this.url = h('input', { id: 'live-url', type: 'url', value: here, autocomplete: 'off' });
    this.key = h('input', { id: 'live-key', type: 'password', autocomplete: 'off', placeholder: 'only when auth is on' });
    this.status = h('p', { class: 'status', id: 'live-status', role: 'status', 'aria-live': 'polite' });
    this.streamState = h('span', { class: 'badge', id: 'live-stream' }, 'disconnected');
    this.who = h('p', { class: 'hint', id: 'live-who', hidden: true });
    this.purgeQueue = h('button', { type: 'button', id: 'queue-purge', class: 'danger', onclick: () => void this.purgeClicked() }, 'Purge queue');
    this.queueStatus = h('p', { class: 'status', id: 'queue-status', role: 'status', 'aria-live': 'polite' });
    this.rows = h('tbody', { id: 'queue-rows' });
    this.names = h('datalist', { id: 'queue-names' });
    this.detailTitle = h('h3', { id: 'detail-title' });
    this.chartBox = h('div', { class: 'chart-grid' });
    this.detail = h(
      'section',
      { class: 'panel', id: 'queue-detail', 'aria-labelledby': 'detail-title', hidden: true },
      this.detailTitle,
      h('div', { class: 'toolbar' }, this.purgeQueue),
      this.queueStatus,
      this.flow.el,
      this.chartBox,
    );
    const form = h(
      'form',
      { class: 'toolbar', onsubmit: (e: Event) => { e.preventDefault(); void this.connect(); } },
      field('Server', this.url),
      field('API key', this.key),
      h('button', { type: 'submit', id: 'live-connect', class: 'primary' }, 'Connect'),
      this.streamState,
    );
    const cols = ['Queue', 'Depth', 'Ready', 'Delayed', 'In flight', 'DLQ', 'Consumers', 'Published', 'Acked', 'Avg wait'];
    this.el = h(
      'section',
      { id: 'view-live', class: 'view', 'aria-labelledby': 'tab-live' },
      h('h2', {}, 'Live dashboard'),
      form,
      this.status,
      this.who,
      this.names,
      this.cluster.el,
      h(
        'section',
        { class: 'panel', 'aria-labelledby': 'queues-title' },
        h('h3', { id: 'queues-title' }, 'Queues'),
        h('div', { class: 'table-wrap' }, h('table', { class: 'queues' }, h('thead', {}, h('tr', {}, cols.map((c) => h('th', { scope: 'col' }, c)))), this.rows)),
      ),
      this.job.el,
      this.detail,
      this.schedules.el,
      this.dlq.el,
      h('div', { class: 'two-col' }, this.publisher.el, this.kv.el),
      this.log.el,
    );
    this.dlq.el.hidden = true;
  }

  /** Connects at once when this tab connected before (its key is kept for the tab's session)
   * or the URL says `connect=1`; otherwise the form waits, so a server with auth on is not
   * asked first without a key. */
  open(params: URLSearchParams): void {
    const jobQueue = params.get('job_queue');
    const jobId = params.get('job');
    if (jobQueue !== null && jobId !== null) {
      this.job.queue.value = jobQueue;
      this.job.id.value = jobId;
      if (this.client) void this.job.lookup(jobQueue, jobId);
    }
    if (this.client) return;
    const saved = sessionStorage.getItem(SESSION_KEY);
    if (saved !== null) {
      const { url, key } = JSON.parse(saved) as { url: string; key: string };
      this.url.value = url;
      this.key.value = key;
    }
    if (saved !== null || params.get('connect') === '1') void this.connect();
    else say(this.status, 'Press Connect (with the API key when the server has auth on).');
  }

  close(): void {
    // Keeps the connection: coming back shows the history gathered meanwhile.
  }

  private async connect(): Promise<void> {
    this.disconnect();
    let client: SynapClient;
    let access: Access;
    try {
      client = new SynapClient({ url: this.url.value.trim(), apiKey: this.key.value || undefined });
      await client.queue.list();
      access = new Access(await whoAmI(client.url, this.key.value || undefined));
    } catch (e) {
      const text = errorText(e);
      say(this.status, /unauthorized|credentials/i.test(text) ? `${text}. Enter an API key.` : `Cannot reach the server: ${text}`, true);
      this.el.dataset.state = 'refused';
      sessionStorage.removeItem(SESSION_KEY);
      return;
    }
    this.client = client;
    this.access = access;
    sessionStorage.setItem(SESSION_KEY, JSON.stringify({ url: this.url.value.trim(), key: this.key.value }));
    this.showWho();
    this.kv.use(client, access);
    this.publisher.use(client, access);
    this.rest = new Rest(client.url, this.key.value || undefined);
    this.job.use(this.rest, access);
    this.cluster.use(this.rest, access);
    void this.cluster.load();
    say(this.status, `Connected to ${client.url}.`);
    this.el.dataset.state = 'connected';
    this.openStream(client);
    await this.refreshAll();
    if (this.job.queue.value.trim() && this.job.id.value.trim()) void this.job.lookup(this.job.queue.value.trim(), this.job.id.value.trim());
    this.poll = window.setInterval(() => {
      void this.refreshAll();
      this.job.poll();
      void this.cluster.load();
    }, POLL_MS);
  }

  /** Names the caller and what it may do (`GET /auth/me`). */
  private showWho(): void {
    const me = this.access.me;
    this.who.hidden = false;
    if (me === null) {
      this.who.textContent = 'This server does not say who the key is (no /auth/me): every control is shown.';
    } else if (!me.authEnabled) {
      this.who.textContent = 'The server has auth off: full access.';
    } else if (me.fullAccess) {
      fill(this.who, 'Signed in as ', h('strong', { id: 'live-who-name' }, me.name), ' with full access.');
    } else {
      const list = me.permissions.length === 0 ? 'no permissions' : `the permissions ${me.permissions.join(', ')}`;
      fill(this.who, 'Signed in as ', h('strong', { id: 'live-who-name' }, me.name), ` with ${list}; controls it may not use are disabled or hidden.`);
    }
    this.el.dataset.access = me === null || me.fullAccess ? 'full' : 'scoped';
  }

  private disconnect(): void {
    this.source?.close();
    this.source = null;
    clearInterval(this.poll);
    this.client = null;
    this.rest = null;
    this.cluster.reset();
    this.flow.reset();
    this.streamState.textContent = 'disconnected';
  }

  private openStream(client: SynapClient): void {
    const u = new URL(`${client.url}/events`);
    if (this.key.value) u.searchParams.set('api_key', this.key.value);
    const source = new EventSource(u.href);
    this.source = source;
    source.addEventListener('connected', () => { this.streamState.textContent = 'live'; });
    source.onerror = () => { this.streamState.textContent = source.readyState === EventSource.CLOSED ? 'closed' : 'reconnecting'; };
    for (const name of EVENT_NAMES) {
      source.addEventListener(name, (ev) => {
        let data: Record<string, unknown> = {};
        try {
          data = JSON.parse((ev as MessageEvent<string>).data) as Record<string, unknown>;
        } catch {
          return;
        }
        const event = { name, data, at: Date.now() } satisfies LiveEvent;
        this.log.add(event);
        this.job.event(event);
        const q = data.queue;
        if (typeof q === 'string') this.soon(q);
      });
    }
  }

  /** Refreshes a queue's stats shortly (events come in bursts; one request covers them). */
  private soon(queue: string): void {
    if (this.pending.has(queue)) return;
    this.pending.set(queue, window.setTimeout(() => { this.pending.delete(queue); void this.refresh(queue); }, 200));
  }

  private async refreshAll(also?: string): Promise<void> {
    const client = this.client;
    if (!client) return;
    try {
      // Stats need `queue:<name>:read`: queues listed for another permission are left out
      // rather than asked for (and refused) every few seconds.
      const names = (await client.queue.list()).filter((n) => this.access.can('queue', 'read', n)).slice(0, MAX_QUEUES);
      if (also && !names.includes(also) && this.access.can('queue', 'read', also)) names.push(also);
      for (const gone of [...this.stats.keys()].filter((n) => !names.includes(n))) this.stats.delete(gone);
      await Promise.all(names.map((n) => this.refresh(n, false)));
      this.renderRows();
      // Next-run times move: the selected queue's schedules are read again too.
      if (this.selected && this.access.can('queue', 'read', this.selected)) void this.schedules.load();
    } catch (e) {
      say(this.status, errorText(e), true);
    }
  }

  private async refresh(queue: string, render = true): Promise<void> {
    const client = this.client;
    if (!client || !queue || !this.access.can('queue', 'read', queue)) return;
    try {
      const s = await client.queue.stats(queue);
      this.stats.set(queue, s);
      const hist = this.history.get(queue) ?? [];
      hist.push({ t: Date.now() / 1000, depth: s.depth, inFlight: s.inFlight, dlq: s.deadLetterCount, acked: s.ackedTotal });
      if (hist.length > MAX_HISTORY) hist.splice(0, hist.length - MAX_HISTORY);
      this.history.set(queue, hist);
    } catch {
      this.stats.delete(queue);
    }
    if (render) this.renderRows();
    if (queue === this.selected) {
      const s = this.stats.get(queue);
      if (s) this.flow.update(s);
      this.updateCharts();
      if (render) {
        void this.dlq.load();
        void this.schedules.load();
      }
    }
  }

  private renderRows(): void {
    const names = [...this.stats.keys()].sort();
    this.names.replaceChildren(...names.map((n) => h('option', { value: n })));
    this.rows.replaceChildren(
      ...names.map((n) => {
        const s = this.stats.get(n) as QueueStats;
        const pick = h('button', { type: 'button', class: 'link', 'aria-pressed': String(n === this.selected), onclick: () => void this.select(n) }, n);
        const num = (v: number, key: string) => h('td', { 'data-key': key }, fmtInt(v));
        return h(
          'tr',
          { 'data-queue': n, class: n === this.selected ? 'selected' : '' },
          h('th', { scope: 'row' }, pick, ...flowFlags(s)),
          num(s.depth, 'depth'),
          num(s.ready, 'ready'),
          num(s.delayed, 'delayed'),
          h('td', { 'data-key': 'in_flight' }, inFlightText(s)),
          num(s.deadLetterCount, 'dlq'),
          num(s.consumers, 'consumers'),
          num(s.publishedTotal, 'published'),
          num(s.ackedTotal, 'acked'),
          h('td', { 'data-key': 'avg_wait' }, fmtMs(s.avgWaitTimeMs)),
        );
      }),
    );
    if (names.length === 0) this.rows.append(h('tr', {}, h('td', { colspan: 10, class: 'empty' }, 'No queues yet: publish a message to create one.')));
  }

  private async select(queue: string): Promise<void> {
    this.selected = queue;
    this.publisher.queue.value = queue;
    this.publisher.check();
    if (this.job.queue.value.trim() === '') {
      this.job.queue.value = queue;
      this.job.check();
    }
    const admin = this.access.can('queue', 'admin', queue);
    this.disarmPurge();
    this.purgeQueue.disabled = !admin;
    say(this.queueStatus, admin ? '' : `Purging needs the permission ${Access.needs('queue', 'admin', queue)}, which this key does not have.`);
    this.detail.hidden = false;
    this.dlq.el.hidden = false;
    this.detailTitle.textContent = `Queue ${queue}`;
    destroyCharts(this.charts);
    const mk = (title: string, y: string, labels: string[], key: string) => {
      const c = new Chart({ title, x: { label: 'time', time: true }, y: { label: y }, series: labels.map((label) => ({ label })), data: [[], ...labels.map(() => [])] });
      c.el.dataset.chart = key;
      return c;
    };
    this.charts = [
      mk('Depth', 'messages', ['ready + delayed'], 'live-depth'),
      mk('In flight', 'messages', ['in flight'], 'live-in-flight'),
      mk('Dead-letter queue', 'entries', ['DLQ'], 'live-dlq'),
      mk('Throughput', 'acked / s', ['acked / s'], 'live-throughput'),
    ];
    this.chartBox.replaceChildren(...this.charts.map((c) => c.el));
    for (const c of this.charts) c.mount();
    this.renderRows();
    this.updateCharts();
    if (this.client) this.flow.show(this.client, queue, admin, this.stats.get(queue));
    if (this.rest) void this.schedules.show(this.rest, queue, admin);
    if (this.client) await this.dlq.show(this.client, queue, admin);
  }

  /** Opens the job page on job `id` of `queue` and scrolls to it. */
  private showJob(queue: string, id: string): void {
    void this.job.lookup(queue, id);
    this.job.el.scrollIntoView({ block: 'start' });
    this.job.id.focus();
  }

  private disarmPurge(): void {
    this.purgeArmed = false;
    this.purgeQueue.textContent = 'Purge queue';
  }

  /** Purging the selected queue (its ready and delayed messages) asks twice, as the DLQ's. */
  private async purgeClicked(): Promise<void> {
    const client = this.client;
    const queue = this.selected;
    if (!client || !queue || !this.access.can('queue', 'admin', queue)) return;
    if (!this.purgeArmed) {
      this.purgeArmed = true;
      this.purgeQueue.textContent = `Confirm: delete the waiting messages of ${queue}`;
      say(this.queueStatus, 'Press again to delete every ready and delayed message of this queue (in-flight ones stay).');
      return;
    }
    this.disarmPurge();
    try {
      const n = await client.queue.purge(queue);
      say(this.queueStatus, `${fmtInt(n)} message${n === 1 ? '' : 's'} deleted from ${queue}.`);
      await this.refresh(queue);
    } catch (e) {
      say(this.queueStatus, errorText(e), true);
    }
  }

  private updateCharts(): void {
    const hist = this.history.get(this.selected) ?? [];
    if (this.charts.length !== 4) return;
    const ts = hist.map((p) => p.t);
    const rate = hist.map((p, i) => (i === 0 ? null : Math.max(0, (p.acked - hist[i - 1].acked) / Math.max(0.001, p.t - hist[i - 1].t))));
    this.charts[0].update([ts, hist.map((p) => p.depth)]);
    this.charts[1].update([ts, hist.map((p) => p.inFlight)]);
    this.charts[2].update([ts, hist.map((p) => p.dlq)]);
    this.charts[3].update([ts, rate]);
  }
}
