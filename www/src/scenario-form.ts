/**
 * The scenario editor: a form over the fields people change most (run length, seed, queue
 * settings and its flow control, task types, producers and their message groups, worker
 * groups) beside the scenario's full JSON. Editing either updates the other; fields the form
 * does not show stay as the JSON has them.
 */
import { errorText, field, h, uid } from './dom.js';
import type { Json, Scenario } from './types.js';

type Path = (string | number)[];
type Kind = 'int' | 'float' | 'text' | 'list';

function get(obj: Json, path: Path): Json | undefined {
  let cur: Json | undefined = obj;
  for (const k of path) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string | number, Json>)[k as never];
  }
  return cur;
}

function set(obj: Scenario, path: Path, value: Json | undefined): void {
  let cur = obj as Record<string | number, Json>;
  for (let i = 0; i < path.length - 1; i++) {
    const k = path[i];
    if (cur[k] === null || typeof cur[k] !== 'object') cur[k] = typeof path[i + 1] === 'number' ? [] : {};
    cur = cur[k] as Record<string | number, Json>;
  }
  const last = path[path.length - 1];
  if (value === undefined) delete cur[last];
  else cur[last] = value;
}

/** Distribution fields per `dist`, with defaults for a newly chosen one. */
const DISTS: Record<string, Record<string, number>> = {
  constant: { ms: 1000 },
  uniform: { min_ms: 500, max_ms: 1500 },
  exponential: { mean_ms: 1000 },
  normal: { mean_ms: 1000, std_ms: 200 },
};
const ARRIVALS: Record<string, Record<string, number>> = {
  poisson: { rate_per_sec: 1 },
  constant: { rate_per_sec: 1 },
  bursts: { every_ms: 60000, size: 10 },
  // An engine schedule: `every_ms`, or a `cron` pattern (set in the JSON view).
  schedule: { every_ms: 3600000 },
};

export class ScenarioEditor {
  readonly el: HTMLElement;
  private scenario: Scenario = {};
  private readonly form: HTMLDivElement;
  private readonly json: HTMLTextAreaElement;
  private readonly jsonError: HTMLParagraphElement;

  constructor(
    title: string,
    private readonly onChange: (s: Scenario) => void,
  ) {
    this.form = h('div', { class: 'scenario-form' });
    const jsonId = uid('json');
    this.json = h('textarea', {
      id: jsonId,
      class: 'json',
      spellcheck: 'false',
      rows: 24,
      'aria-describedby': `${jsonId}-err`,
      oninput: () => this.fromJson(),
    });
    this.jsonError = h('p', { id: `${jsonId}-err`, class: 'error', role: 'status', 'aria-live': 'polite' });
    this.el = h(
      'section',
      { class: 'editor', 'aria-label': title },
      h('div', { class: 'editor-form' }, h('h3', {}, `${title}: form`), this.form),
      h('div', { class: 'editor-json' }, h('h3', {}, h('label', { for: jsonId }, `${title}: JSON`)), this.json, this.jsonError),
    );
  }

  /** The scenario as edited (a copy). */
  value(): Scenario {
    return structuredClone(this.scenario);
  }

  /** Shows `s` in the form and the JSON view. */
  load(s: Scenario): void {
    this.scenario = structuredClone(s);
    this.renderForm();
    this.json.value = JSON.stringify(this.scenario, null, 2);
    this.setJsonError('');
  }

  private setJsonError(text: string): void {
    this.jsonError.textContent = text;
    if (text) this.json.setAttribute('aria-invalid', 'true');
    else this.json.removeAttribute('aria-invalid');
  }

  private fromJson(): void {
    let v: unknown;
    try {
      v = JSON.parse(this.json.value);
    } catch (e) {
      this.setJsonError(`JSON error: ${errorText(e)}`);
      return;
    }
    if (v === null || typeof v !== 'object' || Array.isArray(v)) {
      this.setJsonError('The scenario must be a JSON object.');
      return;
    }
    this.setJsonError('');
    this.scenario = v as Scenario;
    this.renderForm();
    this.onChange(this.value());
  }

  private changed(rebuild = false): void {
    this.json.value = JSON.stringify(this.scenario, null, 2);
    this.setJsonError('');
    if (rebuild) this.renderForm();
    this.onChange(this.value());
  }

  /**
   * One input bound to `path`; `scale` converts the stored value to the shown one. A blank
   * field removes the value, or stores `null` when `nullable` (a limit that is off).
   */
  private input(label: string, path: Path, kind: Kind, opts: { scale?: number; min?: number; max?: number; step?: string; hint?: string; nullable?: boolean } = {}): HTMLDivElement {
    const scale = opts.scale ?? 1;
    const cur = get(this.scenario, path);
    let shown = '';
    if (kind === 'list' && Array.isArray(cur)) shown = cur.map((x) => Number(x) / scale).join(', ');
    else if (typeof cur === 'number') shown = String(Number((cur / scale).toPrecision(12)));
    else if (typeof cur === 'string') shown = cur;
    const el = h('input', {
      type: kind === 'text' || kind === 'list' ? 'text' : 'number',
      value: shown,
      min: opts.min,
      max: opts.max,
      step: opts.step ?? (kind === 'int' && scale === 1 ? '1' : 'any'),
      inputmode: kind === 'list' ? 'decimal' : undefined,
      placeholder: opts.nullable ? 'no limit' : undefined,
      'data-path': path.join('.'),
    });
    el.addEventListener('change', () => {
      const raw = el.value.trim();
      let v: Json | undefined;
      if (kind === 'text') v = raw;
      else if (kind === 'list') {
        const parts = raw === '' ? [] : raw.split(/[,\s]+/).map(Number);
        if (parts.some((x) => !Number.isFinite(x) || x < 0)) {
          el.setAttribute('aria-invalid', 'true');
          return;
        }
        v = parts.map((x) => Math.round(x * scale));
      } else if (raw === '') v = opts.nullable ? null : undefined;
      else {
        const n = Number(raw) * scale;
        if (!Number.isFinite(n)) {
          el.setAttribute('aria-invalid', 'true');
          return;
        }
        v = kind === 'int' ? Math.round(n) : n;
      }
      el.removeAttribute('aria-invalid');
      set(this.scenario, path, v);
      this.changed();
    });
    return field(label, el, opts.hint);
  }

  /** A checkbox bound to a boolean at `path`. */
  private check(label: string, path: Path, hint?: string): HTMLDivElement {
    const el = h('input', { type: 'checkbox', id: uid('f'), checked: get(this.scenario, path) === true, 'data-path': path.join('.') });
    el.addEventListener('change', () => {
      set(this.scenario, path, el.checked);
      this.changed();
    });
    const wrap = h('div', { class: 'field check' }, el, h('label', { for: el.id }, label));
    if (hint) {
      el.setAttribute('aria-describedby', `${el.id}-hint`);
      wrap.append(h('small', { id: `${el.id}-hint`, class: 'hint' }, hint));
    }
    return wrap;
  }

  /**
   * A rate limit (`{max, per_ms}` or `null`) as two fields: deliveries, and the window in
   * seconds (stored as `per_ms`, 1 s when left blank). A blank maximum turns the limit off.
   */
  private rateLimit(label: string, key: 'rate_limit' | 'group_rate_limit'): HTMLElement[] {
    const path: Path = ['queue_config', key];
    const cur = get(this.scenario, path);
    const rl = cur !== null && typeof cur === 'object' && !Array.isArray(cur) ? cur : null;
    const max = h('input', { type: 'number', min: 1, step: '1', placeholder: 'no limit', value: typeof rl?.max === 'number' ? rl.max : '', 'data-path': `${path.join('.')}.max` });
    const per = h('input', { type: 'number', min: 0.001, step: 'any', placeholder: '1', value: typeof rl?.per_ms === 'number' ? Number((rl.per_ms / 1000).toPrecision(12)) : '', 'data-path': `${path.join('.')}.per_ms` });
    const update = () => {
      const m = max.value.trim() === '' ? null : Number(max.value);
      const secs = per.value.trim() === '' ? 1 : Number(per.value);
      const bad = (el: HTMLInputElement, ok: boolean) => {
        if (ok) el.removeAttribute('aria-invalid');
        else el.setAttribute('aria-invalid', 'true');
        return !ok;
      };
      const badMax = bad(max, m === null || (Number.isInteger(m) && m >= 1));
      const perMs = Math.round(secs * 1000);
      if (badMax || bad(per, Number.isFinite(perMs) && perMs >= 1)) return;
      set(this.scenario, path, m === null ? null : { max: m, per_ms: perMs });
      this.changed();
    };
    max.addEventListener('change', update);
    per.addEventListener('change', update);
    return [field(`${label}: max deliveries`, max, 'blank: no limit'), field(`${label}: per (s)`, per)];
  }

  /**
   * A producer's message groups: how many light groups, and the share of its tasks that go
   * to the group `heavy`. Written as a number without a heavy share, `{count, heavy_share}`
   * with one, and left out when both are 0.
   */
  private groups(i: number): HTMLElement[] {
    const path: Path = ['producers', i, 'groups'];
    const cur = get(this.scenario, path);
    let count = typeof cur === 'number' ? cur : 0;
    let share = 0;
    if (cur !== null && typeof cur === 'object' && !Array.isArray(cur)) {
      count = typeof cur.count === 'number' ? cur.count : 0;
      share = typeof cur.heavy_share === 'number' ? cur.heavy_share : 0;
    }
    const countEl = h('input', { type: 'number', min: 0, max: 100000, step: '1', value: count, 'data-path': `${path.join('.')}.count` });
    const shareEl = h('input', { type: 'number', min: 0, max: 1, step: '0.05', value: share, 'data-path': `${path.join('.')}.heavy_share` });
    const update = () => {
      const c = countEl.value.trim() === '' ? 0 : Number(countEl.value);
      const sh = shareEl.value.trim() === '' ? 0 : Number(shareEl.value);
      const okC = Number.isInteger(c) && c >= 0 && c <= 100_000;
      const okS = Number.isFinite(sh) && sh >= 0 && sh <= 1;
      for (const [el, ok] of [[countEl, okC], [shareEl, okS]] as const) {
        if (ok) el.removeAttribute('aria-invalid');
        else el.setAttribute('aria-invalid', 'true');
      }
      if (!okC || !okS) return;
      set(this.scenario, path, sh > 0 ? { count: c, heavy_share: sh } : c > 0 ? c : undefined);
      this.changed();
    };
    countEl.addEventListener('change', update);
    shareEl.addEventListener('change', update);
    return [
      field('Groups', countEl, 'light groups group-0 … (0: none)'),
      field('Heavy share', shareEl, 'chance a task goes to the group heavy'),
    ];
  }

  private select(label: string, options: string[], current: string, onPick: (v: string) => void): HTMLDivElement {
    const el = h('select', {}, options.map((o) => h('option', { value: o, selected: o === current }, o)));
    el.addEventListener('change', () => onPick(el.value));
    return field(label, el);
  }

  private group(legend: string, ...fields: HTMLElement[]): HTMLFieldSetElement {
    return h('fieldset', {}, h('legend', {}, legend), h('div', { class: 'fields' }, fields));
  }

  private renderForm(): void {
    const s = this.scenario;
    const parts: HTMLElement[] = [
      this.group(
        'Run',
        this.input('Name', ['name'], 'text'),
        this.input('Duration (min)', ['duration_ms'], 'float', { scale: 60_000, min: 0 }),
        this.input('Seed', ['seed'], 'int', { min: 0 }),
        this.input('Sample every (s)', ['sample_interval_ms'], 'float', { scale: 1000, min: 0 }),
      ),
      this.group(
        `Queue ${typeof s.queue === 'string' ? s.queue : ''}`.trim(),
        this.input('Max retries', ['queue_config', 'max_retries'], 'int', { min: 0 }),
        this.input('Ack deadline (s)', ['queue_config', 'ack_deadline_ms'], 'float', { scale: 1000, min: 0 }),
        this.input('Retry delays (s)', ['queue_config', 'retry_delays_ms'], 'list', { scale: 1000, hint: 'comma-separated; the last repeats' }),
        this.input('Prefetch', ['queue_config', 'prefetch'], 'int', { min: 0 }),
        this.input('Max depth', ['queue_config', 'max_depth'], 'int', { min: 0 }),
      ),
      this.group(
        'Flow control',
        this.input('Max in flight', ['queue_config', 'max_in_flight'], 'int', { min: 1, nullable: true, hint: 'leases across all workers' }),
        this.input('Group concurrency', ['queue_config', 'group_concurrency'], 'int', { min: 1, nullable: true, hint: 'leases per group' }),
        this.check('Ordered groups', ['queue_config', 'ordered_groups'], 'one at a time, in order'),
        this.check('Fair groups', ['queue_config', 'fair_groups'], 'groups take turns'),
        ...this.rateLimit('Rate limit', 'rate_limit'),
        ...this.rateLimit('Group rate limit', 'group_rate_limit'),
        this.input('Max snoozes', ['queue_config', 'max_snoozes'], 'int', { min: 0 }),
      ),
    ];
    const tasks = Array.isArray(s.task_types) ? s.task_types : [];
    tasks.forEach((t, i) => {
      const name = typeof get(t, ['name']) === 'string' ? String(get(t, ['name'])) : `task ${i + 1}`;
      const svc = get(t, ['service']);
      const dist = typeof get(svc ?? null, ['dist']) === 'string' ? String(get(svc ?? null, ['dist'])) : 'constant';
      const distFields = Object.keys(DISTS[dist] ?? {}).map((k) =>
        this.input(`${k.replace(/_ms$/, '').replace('_', ' ')} (ms)`, ['task_types', i, 'service', k], 'int', { min: 0 }),
      );
      parts.push(
        this.group(
          `Task type ${name}`,
          this.select('Service time', Object.keys(DISTS), dist, (v) => {
            set(this.scenario, ['task_types', i, 'service'], { dist: v, ...DISTS[v] });
            this.changed(true);
          }),
          ...distFields,
          this.input('Failure probability', ['task_types', i, 'failure_probability'], 'float', { min: 0, max: 1, step: '0.01' }),
          this.input('Poison probability', ['task_types', i, 'poison_probability'], 'float', { min: 0, max: 1, step: '0.01' }),
          this.input('Cancelled fraction', ['task_types', i, 'cancel', 'fraction'], 'float', {
            min: 0,
            max: 1,
            step: '0.01',
            hint: 'cancel.after in the JSON (default 60 s)',
          }),
        ),
      );
    });
    const producers = Array.isArray(s.producers) ? s.producers : [];
    producers.forEach((p, i) => {
      const name = typeof get(p, ['name']) === 'string' ? String(get(p, ['name'])) : `producer ${i + 1}`;
      const proc = String(get(p, ['arrival', 'process']) ?? 'poisson');
      const every = this.input('Every (s)', ['producers', i, 'arrival', 'every_ms'], 'float', { scale: 1000, min: 0 });
      const fields =
        proc === 'bursts'
          ? [every, this.input('Burst size', ['producers', i, 'arrival', 'size'], 'int', { min: 1, max: 1000 })]
          : proc === 'schedule'
            ? [
                typeof get(p, ['arrival', 'cron']) === 'string'
                  ? this.input('Cron (UTC)', ['producers', i, 'arrival', 'cron'], 'text', { hint: 'time 0 is 1970-01-01 00:00 UTC' })
                  : every,
              ]
            : [this.input('Rate (per s)', ['producers', i, 'arrival', 'rate_per_sec'], 'float', { min: 0, step: '0.05' })];
      parts.push(
        this.group(
          `Producer ${name}`,
          this.select('Arrivals', Object.keys(ARRIVALS), proc, (v) => {
            set(this.scenario, ['producers', i, 'arrival'], { process: v, ...ARRIVALS[v] });
            if (v === 'schedule') set(this.scenario, ['producers', i, 'groups'], undefined);
            this.changed(true);
          }),
          ...fields,
          this.input('Start (min)', ['producers', i, 'start_ms'], 'float', { scale: 60_000, min: 0 }),
          // A schedule's runs carry no group.
          ...(proc === 'schedule' ? [] : this.groups(i)),
        ),
      );
    });
    const workers = Array.isArray(s.workers) ? s.workers : [];
    workers.forEach((w, i) => {
      const name = typeof get(w, ['name']) === 'string' ? String(get(w, ['name'])) : `group ${i + 1}`;
      parts.push(
        this.group(
          `Workers ${name}`,
          this.input('Count', ['workers', i, 'count'], 'int', { min: 0 }),
          this.input('Service factor', ['workers', i, 'service_factor'], 'float', { min: 0, step: '0.1', hint: '2 = half as fast' }),
          this.input('Failure probability', ['workers', i, 'failure_probability'], 'float', { min: 0, max: 1, step: '0.01' }),
          this.input('Crash probability', ['workers', i, 'crash_probability'], 'float', { min: 0, max: 1, step: '0.01' }),
        ),
      );
    });
    parts.push(h('p', { class: 'hint' }, "Add or remove task types, producers and worker groups in the JSON view; a task type's children, queue and on_child_failure are set there too."));
    this.form.replaceChildren(...parts);
  }
}
