/**
 * Renders one report, or two side by side: the summary table first, then the charts, the
 * message groups' classes (heavy, light, ungrouped) when producers use groups, whole flows
 * when task types have children, and the worker groups.
 */
import { Chart, destroyCharts } from './charts.js';
import { h } from './dom.js';
import { mergeRanges, ranges, reportCharts } from './report-charts.js';
import { flowsTable, groupClassTable, summaryTable, workersTable } from './summary.js';
import type { Report } from './types.js';

export class ReportView {
  readonly el: HTMLElement;
  private charts: Chart[] = [];

  constructor(label: string) {
    this.el = h('section', { class: 'results', 'aria-label': label, 'data-state': 'empty' });
  }

  clear(): void {
    destroyCharts(this.charts);
    this.el.replaceChildren();
    this.el.dataset.state = 'empty';
  }

  /** Shows `reports` (one, or A and B) with column titles `names`. */
  show(reports: Report[], names: string[] = []): void {
    this.clear();
    const compare = reports.length === 2;
    const summary = h('div', { class: 'table-wrap' }, summaryTable(reports, names));
    const shared = compare ? mergeRanges(ranges(reports[0]), ranges(reports[1])) : undefined;
    const columns = reports.map((r, i) => {
      const charts = reportCharts(r, compare ? `${names[i] ?? ''}: ` : '', shared);
      this.charts.push(...charts);
      const workers = workersTable(r);
      const classes = groupClassTable(r);
      const flows = flowsTable(r);
      return h(
        'div',
        { class: 'run-column', 'data-run': String(i) },
        compare ? h('h3', {}, names[i] ?? `Run ${i + 1}`) : null,
        h('div', { class: compare ? 'chart-stack' : 'chart-grid' }, charts.map((c) => c.el)),
        // Wider than a narrow column: a scrollable region, reachable by keyboard.
        classes ? h('div', { class: 'table-wrap', tabindex: 0, role: 'region', 'aria-label': `${compare ? `${names[i] ?? ''}: ` : ''}message groups` }, classes) : null,
        flows ? h('div', { class: 'table-wrap flows-block' }, flows) : null,
        workers ? h('div', { class: 'table-wrap' }, workers) : null,
      );
    });
    if (compare) this.el.append(summary, h('div', { class: 'compare' }, columns));
    else this.el.append(h('div', { class: 'single' }, columns[0], h('div', { class: 'side' }, summary)));
    for (const c of this.charts) c.mount();
    this.el.dataset.state = 'done';
    this.el.dataset.runs = String(reports.length);
  }
}
