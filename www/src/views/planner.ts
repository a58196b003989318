/**
 * Capacity planner: sweeps one parameter of a scenario (worker count, retry delays, ack
 * deadline, arrival rate, and the flow settings max in flight, group concurrency, rate limit
 * and fair groups), runs the simulation at each value, and plots wait p99 by priority (and by
 * group class when producers use groups, and whole-flow latency when task types have children),
 * dead-lettered tasks and utilisation against it. A target ("priority 9 wait p99 under 10 s",
 * the light groups', or "flow p99 under 60 s") is answered with the values that meet it.
 */
import { type App, type View, say } from '../app.js';
import { Chart, PALETTE, destroyCharts } from '../charts.js';
import { errorText, field, fmtInt, fmtMs, fmtPct, h } from '../dom.js';
import { decodeScenario } from '../hash.js';
import { CLASS_COLOR } from '../report-charts.js';
import { CLASS_LABELS, classesOf } from '../summary.js';
import { MAX_POINTS, PARAMS, type Param, applyParam, currentValue, sweepValues, valueText } from '../sweep.js';
import { GROUP_CLASSES, type GroupClass, type Json, type Report, type Scenario } from '../types.js';

interface Point {
  x: number;
  report: Report;
}

function p99(r: Report, priority: number): number | null {
  const p = r.summary.by_priority.find((x) => x.priority === priority);
  return p && p.wait_ms.count > 0 ? p.wait_ms.p99 : null;
}

function classP99(r: Report, c: GroupClass): number | null {
  const w = r.summary.by_group_class?.find((x) => x.class === c)?.wait_ms;
  return w && w.count > 0 ? w.p99 : null;
}

/** Whole-flow latency at `q` of a report's completed flows (none without any). */
function flowLatency(r: Report, q: 'p50' | 'p99'): number | null {
  const l = r.summary.flows?.latency_ms;
  return l && l.count > 0 ? l[q] : null;
}

/** Target values for whole-flow latency, beside the priorities and group classes. */
const FLOW_TARGETS = { flow_p99: 'p99', flow_p50: 'p50' } as const;
type FlowTarget = keyof typeof FLOW_TARGETS;

/** A target: a priority (`"9"`), a group class (`"light"`) or a flow latency (`"flow_p99"`). */
function targetOf(value: string): { label: string; p99: (r: Report) => number | null } {
  if (value in FLOW_TARGETS) {
    const q = FLOW_TARGETS[value as FlowTarget];
    return { label: `flow ${q}`, p99: (r) => flowLatency(r, q) };
  }
  const c = GROUP_CLASSES.find((x) => x === value);
  if (c) return { label: `${CLASS_LABELS[c].toLowerCase()}' wait p99`, p99: (r) => classP99(r, c) };
  const pr = Number(value);
  return { label: `priority ${pr} wait p99`, p99: (r) => p99(r, pr) };
}

/** Whether some task type of the scenario has children (its tasks are published as flows). */
function hasFlows(s: Scenario): boolean {
  return (Array.isArray(s.task_types) ? s.task_types : []).some((t) => {
    const c = t && typeof t === 'object' && !Array.isArray(t) ? t.children : undefined;
    return Array.isArray(c) && c.length > 0;
  });
}

/** The group classes a scenario's producers publish to (`heavy` with a share, `light` with a count). */
function scenarioClasses(s: Scenario): GroupClass[] {
  const out = new Set<GroupClass>();
  for (const p of Array.isArray(s.producers) ? s.producers : []) {
    const g = (p as { groups?: Json }).groups;
    if (typeof g === 'number' && g > 0) out.add('light');
    if (g && typeof g === 'object' && !Array.isArray(g)) {
      if (typeof g.count === 'number' && g.count > 0) out.add('light');
      if (typeof g.heavy_share === 'number' && g.heavy_share > 0) out.add('heavy');
    }
  }
  return GROUP_CLASSES.filter((c) => out.has(c));
}

export class PlannerView implements View {
  readonly el: HTMLElement;
  private base: Scenario = {};
  private readonly param: HTMLSelectElement;
  private readonly group: HTMLSelectElement;
  private readonly from: HTMLInputElement;
  private readonly to: HTMLInputElement;
  private readonly steps: HTMLInputElement;
  private readonly targetPriority: HTMLSelectElement;
  private readonly targetSecs: HTMLInputElement;
  private readonly targetSecsLabel: HTMLElement;
  private readonly runButton: HTMLButtonElement;
  private readonly progress: HTMLProgressElement;
  private readonly status: HTMLElement;
  private readonly answer: HTMLElement;
  private readonly out: HTMLElement;
  private readonly baseLine: HTMLElement;
  private charts: Chart[] = [];
  private points: Point[] = [];
  private token = 0;

  constructor(private readonly app: App) {
    this.param = h('select', { id: 'plan-param' }, Object.entries(PARAMS).map(([k, v]) => h('option', { value: k }, v.label)));
    this.group = h('select', { id: 'plan-group' });
    this.from = h('input', { id: 'plan-from', type: 'number', min: 0, step: 'any', value: 1 });
    this.to = h('input', { id: 'plan-to', type: 'number', min: 0, step: 'any', value: 8 });
    this.steps = h('input', { id: 'plan-steps', type: 'number', min: 2, max: MAX_POINTS, step: '1', value: 8 });
    this.targetPriority = h('select', { id: 'plan-priority' });
    this.targetSecs = h('input', { id: 'plan-target', type: 'number', min: 0, step: 'any', value: 10 });
    this.runButton = h('button', { id: 'plan-run', class: 'primary', type: 'submit' }, 'Sweep');
    this.progress = h('progress', { id: 'plan-progress', max: 1, value: 0, 'aria-label': 'Sweep progress' });
    this.status = h('p', { class: 'status', role: 'status', 'aria-live': 'polite' });
    this.answer = h('p', { id: 'plan-answer', class: 'answer', 'aria-live': 'polite' });
    this.out = h('section', { class: 'results', id: 'plan-results', 'aria-label': 'Sweep results', 'data-state': 'empty' });
    this.baseLine = h('p', { class: 'hint' });
    this.param.addEventListener('change', () => this.paramChanged());
    this.group.addEventListener('change', () => this.paramChanged());
    this.targetPriority.addEventListener('change', () => this.targetLabel());
    for (const el of [this.targetPriority, this.targetSecs]) el.addEventListener('change', () => this.showAnswer());
    this.targetPriority.addEventListener('change', () => this.app.setParams({ target: this.targetPriority.value }));
    const form = h(
      'form',
      { class: 'toolbar', onsubmit: (e: Event) => { e.preventDefault(); void this.sweep(); } },
      field('Parameter', this.param),
      field('Worker group', this.group),
      field('From', this.from),
      field('To', this.to),
      field('Points', this.steps),
      this.runButton,
    );
    const secsField = field('wait p99 under (s)', this.targetSecs);
    this.targetSecsLabel = secsField.querySelector('label') as HTMLElement;
    const target = h('div', { class: 'toolbar target' }, field('Target', this.targetPriority), secsField);
    this.el = h(
      'section',
      { id: 'view-planner', class: 'view', 'aria-labelledby': 'tab-planner' },
      h('h2', {}, 'Capacity planner'),
      h('p', { class: 'lede' }, 'Sweeps one parameter of the scenario and plots what happens: how many workers keep premium uploads waiting under 10 s?'),
      this.baseLine,
      form,
      target,
      h('div', { class: 'progress-line' }, this.progress, this.status),
      this.answer,
      this.out,
    );
  }

  async open(params: URLSearchParams): Promise<void> {
    try {
      const preset = await this.app.preset(params.get('preset') ?? 'video-processing');
      const encoded = params.get('scenario');
      this.base = encoded ? await decodeScenario(encoded) : structuredClone(preset.scenario);
      const seed = params.get('seed');
      if (seed !== null && /^\d+$/.test(seed)) this.base.seed = Number(seed);
      this.baseLine.textContent = `Base scenario: ${String(this.base.name ?? 'custom')}, seed ${String(this.base.seed ?? 1)} (edit it in the Simulator).`;
      const groups = Array.isArray(this.base.workers) ? this.base.workers : [];
      this.group.replaceChildren(...groups.map((g, i) => h('option', { value: i }, String((g as { name?: Json }).name ?? `group ${i + 1}`))));
      const prios = new Set<number>();
      for (const p of Array.isArray(this.base.producers) ? this.base.producers : []) {
        for (const m of (p as { mix?: { priority?: number }[] }).mix ?? []) if (typeof m.priority === 'number') prios.add(m.priority);
      }
      if (prios.size === 0) prios.add(5);
      const sorted = [...prios].sort((a, b) => b - a);
      const classes = scenarioClasses(this.base);
      const flows = hasFlows(this.base);
      this.targetPriority.replaceChildren(
        ...sorted.map((p) => h('option', { value: p }, `priority ${p}`)),
        ...classes.map((c) => h('option', { value: c }, CLASS_LABELS[c].toLowerCase())),
        ...(flows ? [h('option', { value: 'flow_p99' }, 'whole flow, p99 latency'), h('option', { value: 'flow_p50' }, 'whole flow, p50 latency')] : []),
      );
      // With a heavy group, the light groups' wait is what fairness is about; with flows, the
      // whole pipeline's latency (a minute as a first limit).
      if (classes.includes('light') && classes.includes('heavy')) this.targetPriority.value = 'light';
      if (flows) {
        this.targetPriority.value = 'flow_p99';
        this.targetSecs.value = '60';
      }
      const target = params.get('target');
      if (target !== null && [...this.targetPriority.options].some((o) => o.value === target)) this.targetPriority.value = target;
      this.targetLabel();
      const param = params.get('param') as Param | null;
      if (param && param in PARAMS) this.param.value = param;
      if (params.get('group')) this.group.value = params.get('group') as string;
      this.paramChanged();
      for (const [k, el] of [['from', this.from], ['to', this.to], ['steps', this.steps]] as const) {
        const v = params.get(k);
        if (v !== null && Number.isFinite(Number(v))) el.value = v;
      }
      if (params.get('run') === '1') await this.sweep();
    } catch (e) {
      say(this.status, errorText(e), true);
    }
  }

  /** The limit's label names what it limits: a wait or a flow's latency. */
  private targetLabel(): void {
    const q = FLOW_TARGETS[this.targetPriority.value as FlowTarget];
    this.targetSecsLabel.textContent = q ? `flow ${q} under (s)` : 'wait p99 under (s)';
  }

  private paramChanged(): void {
    const param = this.param.value as Param;
    this.group.disabled = param !== 'workers';
    this.steps.disabled = PARAMS[param].integer;
    const g = Number(this.group.value) || 0;
    const now = currentValue(this.base, param, g);
    if (param === 'workers') {
      this.from.value = '1';
      this.to.value = String(Math.max(now + 5, 8));
    } else if (param === 'max_in_flight' || param === 'group_concurrency' || param === 'rate_limit') {
      // From 1 to past the current value (the workers' count for an unset max in flight).
      this.from.value = '1';
      this.to.value = String(Math.min(MAX_POINTS, Math.max(4, now * 2)));
    } else if (param === 'fair_groups') {
      this.from.value = '0';
      this.to.value = '1';
    } else if (param === 'ack') {
      this.from.value = String(Math.max(1, Math.round(now / 10)));
      this.to.value = String(now * 2);
    } else {
      this.from.value = param === 'rate' ? '0.5' : '0.1';
      this.to.value = param === 'rate' ? '1.5' : '3';
    }
  }

  async sweep(): Promise<void> {
    const param = this.param.value as Param;
    const group = Number(this.group.value) || 0;
    let values: number[];
    try {
      values = sweepValues(param, Number(this.from.value), Number(this.to.value), Number(this.steps.value));
      if (values.length === 0) throw new Error('the range holds no value');
    } catch (e) {
      say(this.status, errorText(e), true);
      return;
    }
    this.app.setParams({ view: 'planner', param, group: String(group), from: this.from.value, to: this.to.value, steps: this.steps.value, run: null });
    this.app.runner.cancel();
    const token = ++this.token;
    this.runButton.disabled = true;
    this.out.dataset.state = 'running';
    this.progress.value = 0;
    let done = 0;
    say(this.status, `Simulating ${values.length} points…`);
    try {
      const scenarios = values.map((x) => applyParam(this.base, param, x, group));
      const reports = await Promise.all(
        scenarios.map((s) =>
          this.app.runner.run(s, undefined, 1).then((r) => {
            done += 1;
            if (token === this.token) this.progress.value = done / values.length;
            return r;
          }),
        ),
      );
      if (token !== this.token) return;
      this.points = values.map((x, i) => ({ x, report: reports[i] }));
      this.render(param);
      say(this.status, `${values.length} points simulated.`);
    } catch (e) {
      if (token !== this.token || errorText(e) === 'cancelled') return;
      this.out.dataset.state = 'error';
      say(this.status, errorText(e), true);
    } finally {
      if (token === this.token) this.runButton.disabled = false;
    }
  }

  private render(param: Param): void {
    destroyCharts(this.charts);
    const xs = this.points.map((p) => p.x);
    const prios = [...new Set(this.points.flatMap((p) => p.report.summary.by_priority.map((b) => b.priority)))].sort((a, b) => b - a);
    const classes = classesOf(this.points.map((p) => p.report));
    const unit = PARAMS[param].unit;
    const secs = (v: number | null) => (v === null ? null : v / 1000);
    const wait = new Chart({
      title: 'Wait p99 by priority',
      x: { label: unit },
      y: { label: 'seconds' },
      series: prios.map((p, i) => ({ label: `priority ${p}`, color: PALETTE[i % PALETTE.length] })),
      data: [xs, ...prios.map((pr) => this.points.map((p) => secs(p99(p.report, pr))))],
    });
    const dlq = new Chart({ title: 'Dead-lettered tasks', x: { label: unit }, y: { label: 'tasks' }, series: [{ label: 'dead-lettered' }], data: [xs, this.points.map((p) => p.report.summary.dead_lettered)] });
    const util = new Chart({ title: 'Worker utilisation', x: { label: unit }, y: { label: '%', max: 100 }, series: [{ label: 'utilisation' }], data: [xs, this.points.map((p) => p.report.summary.utilisation * 100)] });
    wait.el.dataset.chart = 'sweep-wait';
    dlq.el.dataset.chart = 'sweep-dlq';
    util.el.dataset.chart = 'sweep-util';
    this.charts = [wait, dlq, util];
    if (classes.length > 0) {
      const byClass = new Chart({
        title: 'Wait p99 by group class',
        x: { label: unit },
        y: { label: 'seconds' },
        series: classes.map((c) => ({ label: CLASS_LABELS[c].toLowerCase(), color: CLASS_COLOR[c] })),
        data: [xs, ...classes.map((c) => this.points.map((p) => secs(classP99(p.report, c))))],
      });
      byClass.el.dataset.chart = 'sweep-class-wait';
      this.charts.splice(1, 0, byClass);
    }
    const flows = this.points.some((p) => p.report.summary.flows);
    if (flows) {
      const flowChart = new Chart({
        title: 'Whole-flow latency (p99, p50 dashed)',
        x: { label: unit },
        y: { label: 'seconds' },
        series: [
          { label: 'flow p99', color: PALETTE[0] },
          { label: 'flow p50', color: PALETTE[0], dash: true },
        ],
        data: [xs, this.points.map((p) => secs(flowLatency(p.report, 'p99'))), this.points.map((p) => secs(flowLatency(p.report, 'p50')))],
      });
      flowChart.el.dataset.chart = 'sweep-flow-latency';
      this.charts.unshift(flowChart);
    }
    const flowMs = (key: string, v: number | null) => h('td', { 'data-col': key, 'data-value': v ?? undefined }, v === null ? '–' : fmtMs(v));
    const flowCells = (p: Point) => {
      const f = p.report.summary.flows;
      return [
        h('td', { 'data-col': 'flows_completed', 'data-value': f?.completed }, f ? fmtInt(f.completed) : '–'),
        h('td', { 'data-col': 'flows_failed', 'data-value': f?.failed }, f ? fmtInt(f.failed) : '–'),
        flowMs('flow_p50', flowLatency(p.report, 'p50')),
        flowMs('flow_p99', flowLatency(p.report, 'p99')),
      ];
    };
    const ms = (v: number | null, c?: GroupClass) => h('td', { 'data-class': c, 'data-value': v ?? undefined }, v === null ? '–' : fmtMs(v));
    const table = h(
      'table',
      { class: 'summary sweep' },
      h('caption', {}, 'Outcome at each value'),
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          h('th', { scope: 'col' }, PARAMS[param].label),
          ...prios.map((p) => h('th', { scope: 'col' }, `p${p} wait p99`)),
          ...classes.map((c) => h('th', { scope: 'col' }, `${CLASS_LABELS[c]} wait p99`)),
          ...(flows ? ['Flows done', 'Flows failed', 'Flow p50', 'Flow p99'].map((t) => h('th', { scope: 'col' }, t)) : []),
          h('th', { scope: 'col' }, 'Dead-lettered'),
          h('th', { scope: 'col' }, 'Utilisation'),
          h('th', { scope: 'col' }, 'Completed'),
        ),
      ),
      h(
        'tbody',
        {},
        this.points.map((p) =>
          h(
            'tr',
            { 'data-value': p.x },
            h('th', { scope: 'row' }, valueText(param, p.x)),
            ...prios.map((pr) => ms(p99(p.report, pr))),
            ...classes.map((c) => ms(classP99(p.report, c), c)),
            ...(flows ? flowCells(p) : []),
            h('td', {}, fmtInt(p.report.summary.dead_lettered)),
            h('td', {}, fmtPct(p.report.summary.utilisation)),
            h('td', { 'data-key': 'completed' }, fmtInt(p.report.summary.completed)),
          ),
        ),
      ),
    );
    this.out.replaceChildren(h('div', { class: 'chart-grid' }, this.charts.map((c) => c.el)), h('div', { class: 'table-wrap' }, table));
    for (const c of this.charts) c.mount();
    this.out.dataset.state = 'done';
    this.out.dataset.points = String(this.points.length);
    this.showAnswer();
  }

  /** The swept values meeting the target, in words (the best one first for counts and rates). */
  private showAnswer(): void {
    if (this.points.length === 0) return;
    const param = (new URLSearchParams(location.hash.slice(1)).get('param') as Param | null) ?? (this.param.value as Param);
    const target = targetOf(this.targetPriority.value);
    const limit = Number(this.targetSecs.value) * 1000;
    const meets = this.points.filter((p) => { const v = target.p99(p.report); return v !== null && v < limit; });
    const name = PARAMS[param].label.replace(/ \(.*\)$/, '').toLowerCase();
    const goal = `${target.label} under ${fmtMs(limit)}`;
    if (meets.length === 0) {
      this.answer.textContent = `No ${name} in the sweep keeps ${goal}.`;
      this.answer.dataset.value = '';
      return;
    }
    if (param !== 'workers' && param !== 'rate') {
      this.answer.textContent = `Values of ${name} that keep ${goal}: ${meets.map((p) => valueText(param, p.x)).join(', ')}.`;
      this.answer.dataset.value = String(meets[0].x);
      return;
    }
    // Fewest workers that suffice; or the highest arrival rate still served in time.
    const best = param === 'workers' ? meets[0] : meets[meets.length - 1];
    const v = target.p99(best.report) as number;
    const word = param === 'workers' ? 'Smallest' : 'Largest';
    this.answer.textContent = `${word} ${name} that keeps ${goal}: ${best.x} (${target.label} ${fmtMs(v)}, utilisation ${fmtPct(best.report.summary.utilisation)}).`;
    this.answer.dataset.value = String(best.x);
  }
}
