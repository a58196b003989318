// Simulator throughput in Node: simulated tasks (messages published) per wall-clock second on
// the video-processing preset, and on a variant with ten times the load and workers.
// Run after host-wasm/build.sh: node host-wasm/bench/sim.mjs
import { Simulation } from 'synap-wasm';

function measure(make, runs) {
  let best = Infinity;
  let report;
  for (let i = 0; i < runs; i++) {
    const sim = make();
    const t0 = performance.now();
    report = sim.run();
    best = Math.min(best, performance.now() - t0);
  }
  return { best, report };
}

const preset = measure(() => Simulation.fromPreset('video-processing'), 5);
const s = preset.report.summary;
console.log(`preset video-processing: published ${s.published}, events ${s.events_processed}, run_hash ${s.run_hash}`);
console.log(`wasm (Node ${process.version}): best of 5 ${preset.best.toFixed(1)} ms wall, ` +
  `${Math.round(s.published / (preset.best / 1000))} simulated tasks/s, ` +
  `${Math.round(s.events_processed / (preset.best / 1000))} events/s`);

const big = Simulation.presetScenario('video-processing');
for (const p of big.producers) {
  if (p.arrival.process === 'poisson') p.arrival.rate_per_sec *= 10;
}
for (const w of big.workers) w.count *= 10;
const scaled = measure(() => new Simulation(big), 1);
console.log(`10x preset: published ${scaled.report.summary.published} in ${scaled.best.toFixed(1)} ms wall: ` +
  `${Math.round(scaled.report.summary.published / (scaled.best / 1000))} simulated tasks/s`);
