/**
 * Replay: load a command log — the export of `synap-server data export DIR`, or the
 * simulator's `{"at", "command"}` lines — and see the same charts and summary for it.
 */
import { type App, type View, say } from '../app.js';
import { errorText, field, fmtInt, h } from '../dom.js';
import { ReportView } from '../report-view.js';
import type { ReplayOptions } from '../types.js';

/** Largest file read (the text is held in the page and copied to the worker). */
const MAX_FILE_BYTES = 256 << 20;

export class ReplayView implements View {
  readonly el: HTMLElement;
  private readonly file: HTMLInputElement;
  private readonly paste: HTMLTextAreaElement;
  private readonly interval: HTMLInputElement;
  private readonly seed: HTMLInputElement;
  private readonly status: HTMLElement;
  private readonly results = new ReportView('Replay results');
  private text = '';
  private source = '';

  constructor(private readonly app: App) {
    this.file = h('input', { id: 'replay-file', type: 'file', accept: '.jsonl,.ndjson,.json,.txt,.log,application/json,text/plain' });
    this.paste = h('textarea', { id: 'replay-paste', rows: 6, spellcheck: 'false', class: 'json', placeholder: '{"type":"head","seed":…}\n{"index":1,"now":…,"commands":[…]}' });
    this.interval = h('input', { id: 'replay-interval', type: 'number', min: 0.001, step: 'any', value: 60 });
    this.seed = h('input', { id: 'replay-seed', type: 'text', inputmode: 'numeric', placeholder: 'from the export', pattern: '[0-9]*' });
    this.status = h('p', { class: 'status', role: 'status', 'aria-live': 'polite' });
    this.file.addEventListener('change', () => void this.readFile());
    const drop = h(
      'div',
      { class: 'drop', id: 'replay-drop' },
      field('Command-log file', this.file, 'The output of `synap-server data export DIR`, or simulator replay lines. You can also drop a file here.'),
    );
    drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
    drop.addEventListener('dragleave', () => drop.classList.remove('over'));
    drop.addEventListener('drop', (e) => {
      e.preventDefault();
      drop.classList.remove('over');
      const f = e.dataTransfer?.files[0];
      if (f) void this.readBlob(f);
    });
    const form = h(
      'form',
      { class: 'toolbar', onsubmit: (e: Event) => { e.preventDefault(); void this.replayPasted(); } },
      field('Sample every (s)', this.interval),
      field('Seed', this.seed, 'For replay lines without a head line; an export carries its own.'),
      h('button', { type: 'submit', id: 'replay-run', class: 'primary' }, 'Replay'),
    );
    this.el = h(
      'section',
      { id: 'view-replay', class: 'view', 'aria-labelledby': 'tab-replay' },
      h('h2', {}, 'Replay a server’s command log'),
      h('p', { class: 'lede' }, 'Feeds a recorded log to the same engine, running its timers as the server did, and charts what the queues went through. Nothing leaves your browser.'),
      drop,
      field('…or paste the log', this.paste),
      form,
      this.status,
      this.results.el,
    );
  }

  open(): void {}

  private async readFile(): Promise<void> {
    const f = this.file.files?.[0];
    if (f) await this.readBlob(f);
  }

  private async readBlob(f: File): Promise<void> {
    if (f.size > MAX_FILE_BYTES) {
      say(this.status, `${f.name} is larger than ${MAX_FILE_BYTES >> 20} MiB`, true);
      return;
    }
    this.text = await f.text();
    this.source = f.name;
    await this.replay();
  }

  private async replayPasted(): Promise<void> {
    if (this.paste.value.trim() !== '') {
      this.text = this.paste.value;
      this.source = 'the pasted log';
    }
    await this.replay();
  }

  private options(): ReplayOptions {
    const opts: ReplayOptions = {};
    const secs = Number(this.interval.value);
    if (Number.isFinite(secs) && secs > 0) opts.sample_interval_ms = Math.max(1, Math.round(secs * 1000));
    const seed = this.seed.value.trim();
    if (seed !== '') opts.seed = seed;
    return opts;
  }

  async replay(): Promise<void> {
    if (this.text.trim() === '') {
      say(this.status, 'Choose a file or paste a log first.', true);
      return;
    }
    const seed = this.seed.value.trim();
    if (seed !== '' && !/^\d+$/.test(seed)) {
      say(this.status, 'The seed must be a whole number.', true);
      return;
    }
    this.results.el.dataset.state = 'running';
    say(this.status, `Replaying ${this.source}…`);
    try {
      const r = await this.app.runner.replay(this.text, this.options());
      this.results.show([r.report]);
      const kind = r.format === 'export' ? 'server export' : 'replay log';
      const digest = r.report.state_digest;
      let text = `Replayed ${fmtInt(r.report.summary.commands)} commands from ${this.source} (${kind}).`;
      if (r.snapshotIndex !== null) {
        text += ` It starts from the server's snapshot at record ${fmtInt(r.snapshotIndex)}; the charts show what came after.`;
        if (r.report.summary.commands === 0) text += ' No records follow it.';
      }
      if (digest) text += ` State digest at the end: ${digest}.`;
      say(this.status, text);
    } catch (e) {
      this.results.el.dataset.state = 'error';
      say(this.status, `Cannot replay ${this.source}: ${errorText(e)}`, true);
    }
  }
}
