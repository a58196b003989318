/** Entry point: the tab bar, and the view the URL hash names. */
import './style.css';
import 'uplot/dist/uPlot.min.css';
import { App, type View } from './app.js';
import { h } from './dom.js';
import { type View as ViewName, VIEWS, readHash, viewOf } from './hash.js';
import { LiveView } from './views/live.js';
import { PlannerView } from './views/planner.js';
import { ReplayView } from './views/replay.js';
import { SimulatorView } from './views/simulator.js';

const LABELS: Record<ViewName, string> = { simulator: 'Simulator', planner: 'Capacity planner', replay: 'Replay', live: 'Live' };

const app = new App();
const views: Record<ViewName, View> = {
  simulator: new SimulatorView(app),
  planner: new PlannerView(app),
  replay: new ReplayView(app),
  live: new LiveView(app),
};

const tabs = VIEWS.map((v) =>
  h('button', { type: 'button', role: 'tab', id: `tab-${v}`, 'aria-controls': `view-${v}`, 'aria-selected': 'false', tabindex: -1, 'data-view': v }, LABELS[v]),
);
const tablist = h('nav', { class: 'tabs', role: 'tablist', 'aria-label': 'Views' }, tabs);
const main = h('main', { id: 'main' }, VIEWS.map((v) => views[v].el));
for (const v of VIEWS) {
  views[v].el.setAttribute('role', 'tabpanel');
  views[v].el.hidden = true;
}

let current: ViewName | null = null;

function show(view: ViewName, params: URLSearchParams, focus = false): void {
  if (current && current !== view) views[current].close?.();
  current = view;
  tabs.forEach((t, i) => {
    const on = VIEWS[i] === view;
    t.setAttribute('aria-selected', String(on));
    t.tabIndex = on ? 0 : -1;
    views[VIEWS[i]].el.hidden = !on;
  });
  if (focus) tabs[VIEWS.indexOf(view)].focus();
  document.title = `${LABELS[view]} · Synap`;
  void views[view].open(params);
}

function pick(view: ViewName, focus = false): void {
  const params = readHash();
  params.set('view', view);
  params.delete('run');
  history.replaceState(null, '', `#${params.toString()}`);
  show(view, params, focus);
}

tablist.addEventListener('click', (e) => {
  const t = (e.target as HTMLElement).closest<HTMLButtonElement>('[role=tab]');
  if (t?.dataset.view) pick(t.dataset.view as ViewName);
});
// Arrow keys, Home and End move between tabs (the WAI-ARIA tabs pattern).
tablist.addEventListener('keydown', (e) => {
  const i = VIEWS.indexOf(current ?? 'simulator');
  const next = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: VIEWS.length - 1 }[e.key];
  if (next === undefined) return;
  e.preventDefault();
  pick(VIEWS[(next + VIEWS.length) % VIEWS.length], true);
});
window.addEventListener('hashchange', () => {
  const params = readHash();
  show(viewOf(params), params);
});

document.body.append(
  h('a', { class: 'skip', href: '#main' }, 'Skip to content'),
  h('header', { class: 'top' }, h('h1', {}, 'Synap'), h('p', { class: 'tagline' }, 'task queue · simulator · dashboard'), tablist),
  main,
  h('footer', {}, 'Simulations run in your browser (WebAssembly); the live view talks only to the server you connect to.'),
);
const params = readHash();
show(viewOf(params), params);
