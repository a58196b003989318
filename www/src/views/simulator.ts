/**
 * Simulator: a preset or an edited scenario, run in the simulation worker with a progress
 * bar; charts and the summary; optionally a second configuration B on the same seed, side by
 * side: two more workers (`compare=1`), or, for a scenario with message groups, the same with
 * fair groups on against off (`compare=fair`, one click: "Compare with fair groups"). The URL
 * holds the preset or scenario, the seed, B and whether to run at once.
 */
import { type App, type View, say } from '../app.js';
import { errorText, field, h } from '../dom.js';
import { decodeScenario, encodeScenario } from '../hash.js';
import { ReportView } from '../report-view.js';
import { ScenarioEditor } from '../scenario-form.js';
import type { Json, Report, Scenario } from '../types.js';

/** B's starting point: A with two more workers in its first group (e.g. 3 vs 5 workers). */
export function moreWorkers(a: Scenario): Scenario {
  const b = structuredClone(a);
  const groups = Array.isArray(b.workers) ? b.workers : [];
  const g = groups[0];
  if (g && typeof g === 'object' && !Array.isArray(g)) g.count = (typeof g.count === 'number' ? g.count : 1) + 2;
  return b;
}

function queueConfig(s: Scenario): { [k: string]: Json } {
  const qc = s.queue_config;
  if (qc && typeof qc === 'object' && !Array.isArray(qc)) return qc;
  const fresh: { [k: string]: Json } = {};
  s.queue_config = fresh;
  return fresh;
}

/** `a` with `fair_groups` set to `on`. */
export function withFairGroups(a: Scenario, on = true): Scenario {
  const b = structuredClone(a);
  queueConfig(b).fair_groups = on;
  return b;
}

/** Whether some producer spreads its tasks over message groups (a count or a heavy share). */
export function usesGroups(s: Scenario): boolean {
  return (Array.isArray(s.producers) ? s.producers : []).some((p) => {
    const g = p && typeof p === 'object' && !Array.isArray(p) ? p.groups : undefined;
    if (typeof g === 'number') return g > 0;
    return Boolean(g && typeof g === 'object' && !Array.isArray(g) && ((Number(g.count) || 0) > 0 || (Number(g.heavy_share) || 0) > 0));
  });
}

/** Whether B is A with fair groups on and A has them off: the noisy-neighbour comparison. */
function isFairComparison(a: Scenario, b: Scenario): boolean {
  const qc = a.queue_config;
  const aFair = qc !== null && typeof qc === 'object' && !Array.isArray(qc) && qc.fair_groups === true;
  return !aFair && JSON.stringify(b) === JSON.stringify(withFairGroups(a));
}

export class SimulatorView implements View {
  readonly el: HTMLElement;
  private readonly presetSelect: HTMLSelectElement;
  private readonly seed: HTMLInputElement;
  private readonly compare: HTMLInputElement;
  private readonly runButton: HTMLButtonElement;
  private readonly fairButton: HTMLButtonElement;
  private readonly progress: HTMLProgressElement;
  private readonly status: HTMLElement;
  private readonly editorA: ScenarioEditor;
  private readonly editorB: ScenarioEditor;
  private readonly bBox: HTMLElement;
  private readonly results = new ReportView('Simulation results');
  private preset = 'video-processing';
  private presetScenario: Scenario = {};
  private running = 0;
  private urlTimer = 0;
  /** Counts `open` calls, so only the newest one loads its scenario. */
  private opens = 0;
  /** Counts URL writes, so a slower older one never lands after a newer one (or a share). */
  private urlWrites = 0;

  constructor(private readonly app: App) {
    this.presetSelect = h('select', { id: 'sim-preset' });
    this.seed = h('input', { id: 'sim-seed', type: 'number', min: 0, step: '1', inputmode: 'numeric' });
    this.compare = h('input', { id: 'sim-compare', type: 'checkbox' });
    this.runButton = h('button', { id: 'sim-run', class: 'primary', type: 'submit' }, 'Run');
    this.progress = h('progress', { id: 'sim-progress', max: 1, value: 0, 'aria-label': 'Simulation progress' });
    this.status = h('p', { class: 'status', role: 'status', 'aria-live': 'polite' });
    this.editorA = new ScenarioEditor('Configuration A', () => this.edited());
    this.editorB = new ScenarioEditor('Configuration B', () => this.edited());
    this.bBox = h('details', { class: 'config', open: true }, h('summary', {}, 'Configuration B'), this.editorB.el);
    this.bBox.hidden = true;
    const load = h('button', { type: 'button', onclick: () => void this.loadPreset() }, 'Load preset');
    const share = h('button', { type: 'button', id: 'sim-share', onclick: () => void this.share() }, 'Copy link');
    this.fairButton = h(
      'button',
      { type: 'button', id: 'sim-fair', title: 'Runs A with fair groups off and B with them on, side by side', onclick: () => void this.compareFair() },
      'Compare with fair groups',
    );
    this.fairButton.hidden = true;
    this.seed.addEventListener('change', () => this.seedChanged());
    this.compare.addEventListener('change', () => this.toggleCompare());
    const form = h(
      'form',
      { class: 'toolbar', onsubmit: (e: Event) => { e.preventDefault(); void this.run(); } },
      field('Preset', this.presetSelect),
      load,
      field('Seed (both runs)', this.seed),
      h('div', { class: 'field check' }, this.compare, h('label', { for: 'sim-compare' }, 'Compare with configuration B')),
      this.runButton,
      this.fairButton,
      share,
    );
    this.el = h(
      'section',
      { id: 'view-simulator', class: 'view', 'aria-labelledby': 'tab-simulator' },
      h('h2', {}, 'Workload simulator'),
      h('p', { class: 'lede' }, "Runs Synap's engine in your browser on a virtual clock: an hour of traffic in a second or two."),
      form,
      h('div', { class: 'progress-line' }, this.progress, this.status),
      this.results.el,
      h('details', { class: 'config', open: true }, h('summary', {}, 'Configuration A'), this.editorA.el),
      this.bBox,
    );
  }

  async open(params: URLSearchParams): Promise<void> {
    // A newer open (the hash changed again while this one awaited the engine) wins: a stale
    // one must not load its scenario over the newer one, or over edits made since.
    const gen = ++this.opens;
    const stale = () => gen !== this.opens;
    try {
      const presets = await this.app.presets();
      if (stale()) return;
      if (this.presetSelect.options.length === 0) {
        for (const p of presets) this.presetSelect.append(h('option', { value: p.name, title: p.description }, p.name));
      }
      this.preset = params.get('preset') ?? 'video-processing';
      const p = await this.app.preset(this.preset);
      if (stale()) return;
      this.presetSelect.value = p.name;
      this.presetScenario = p.scenario;
      const encoded = params.get('scenario');
      const a = encoded ? await decodeScenario(encoded) : structuredClone(p.scenario);
      if (stale()) return;
      const seed = params.get('seed');
      if (seed !== null && /^\d+$/.test(seed)) a.seed = Number(seed);
      this.editorA.load(a);
      this.seed.value = String(a.seed ?? 1);
      const b = params.get('compare');
      this.compare.checked = b !== null;
      this.bBox.hidden = b === null;
      this.showFairButton();
      if (b !== null) {
        const sb = b === '1' ? moreWorkers(a) : b === 'fair' ? withFairGroups(a) : await decodeScenario(b);
        if (stale()) return;
        sb.seed = a.seed ?? 1;
        this.editorB.load(sb);
      }
      if (params.get('run') === '1') await this.run();
    } catch (e) {
      say(this.status, errorText(e), true);
    }
  }

  private async loadPreset(): Promise<void> {
    const p = await this.app.preset(this.presetSelect.value);
    this.preset = p.name;
    this.presetScenario = p.scenario;
    this.editorA.load(p.scenario);
    this.seed.value = String(p.scenario.seed ?? 1);
    if (this.compare.checked) this.editorB.load(moreWorkers(p.scenario));
    this.showFairButton();
    this.results.clear();
    this.edited();
  }

  private seedChanged(): void {
    if (!/^\d+$/.test(this.seed.value)) return;
    const seed = Number(this.seed.value);
    for (const ed of [this.editorA, this.editorB]) {
      const s = ed.value();
      s.seed = seed;
      ed.load(s);
    }
    this.edited();
  }

  private toggleCompare(): void {
    this.bBox.hidden = !this.compare.checked;
    if (this.compare.checked) this.editorB.load(moreWorkers(this.editorA.value()));
    this.edited();
  }

  /** The fair-groups comparison is offered for scenarios whose producers use groups. */
  private showFairButton(): void {
    this.fairButton.hidden = !usesGroups(this.editorA.value());
  }

  /** A with fair groups off, B the same with them on, run side by side. */
  private async compareFair(): Promise<void> {
    const a = withFairGroups(this.editorA.value(), false);
    this.editorA.load(a);
    this.compare.checked = true;
    this.bBox.hidden = false;
    this.editorB.load(withFairGroups(a));
    clearTimeout(this.urlTimer);
    await this.writeUrl();
    await this.run();
  }

  /** Scenario or seed edited: the URL follows (shortly, so typing stays smooth). */
  private edited(): void {
    this.showFairButton();
    const a = this.editorA.value();
    if (typeof a.seed === 'number') this.seed.value = String(a.seed);
    clearTimeout(this.urlTimer);
    this.urlTimer = window.setTimeout(() => void this.writeUrl(), 250);
  }

  private async writeUrl(): Promise<Record<string, string | null>> {
    const write = ++this.urlWrites;
    const a = this.editorA.value();
    const sameAsPreset = JSON.stringify({ ...a, seed: 0 }) === JSON.stringify({ ...this.presetScenario, seed: 0 });
    const update: Record<string, string | null> = {
      view: 'simulator',
      preset: this.preset,
      seed: a.seed === undefined ? null : String(a.seed),
      scenario: sameAsPreset ? null : await encodeScenario(a),
      compare: null,
      run: null,
    };
    if (this.compare.checked) {
      const b = this.editorB.value();
      update.compare = JSON.stringify(b) === JSON.stringify(moreWorkers(a)) ? '1' : isFairComparison(a, b) ? 'fair' : await encodeScenario(b);
    }
    if (write === this.urlWrites) this.app.setParams(update);
    return update;
  }

  private async share(): Promise<void> {
    clearTimeout(this.urlTimer);
    await this.writeUrl();
    this.app.setParams({ run: '1' });
    try {
      await navigator.clipboard.writeText(location.href);
      say(this.status, 'Link copied: it opens these scenarios and runs them.');
    } catch {
      say(this.status, `Share this link: ${location.href}`);
    }
  }

  async run(): Promise<void> {
    const runs = [this.editorA.value()];
    if (this.compare.checked) runs.push(this.editorB.value());
    this.app.runner.cancel();
    const token = ++this.running;
    this.runButton.disabled = true;
    this.results.el.dataset.state = 'running';
    this.progress.value = 0;
    say(this.status, runs.length === 2 ? 'Running A and B…' : 'Running…');
    const fractions = runs.map(() => 0);
    const started = performance.now();
    try {
      const reports: Report[] = await Promise.all(
        runs.map((s, i) =>
          this.app.runner.run(s, (f) => {
            fractions[i] = f;
            if (token === this.running) this.progress.value = fractions.reduce((x, y) => x + y, 0) / runs.length;
          }),
        ),
      );
      if (token !== this.running) return;
      this.progress.value = 1;
      const fair = runs.length === 2 && isFairComparison(runs[0], runs[1]);
      this.results.show(reports, fair ? ['A: fair groups off', 'B: fair groups on'] : ['A', 'B']);
      const secs = ((performance.now() - started) / 1000).toFixed(1);
      say(this.status, `Done in ${secs} s: ${reports.map((r) => `${r.summary.published.toLocaleString('en-US')} tasks`).join(' and ')} simulated.`);
      void this.writeUrl();
    } catch (e) {
      if (token !== this.running || errorText(e) === 'cancelled') return;
      this.results.el.dataset.state = 'error';
      say(this.status, errorText(e), true);
    } finally {
      if (token === this.running) this.runButton.disabled = false;
    }
  }
}
