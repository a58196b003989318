// Goal: the wasm Simulation runs presets and custom scenarios, validates them with clear
// errors, steps for live charts, and replays command logs.
// Method: run through the package's ESM entry and check the reports' internal consistency.
import test from 'node:test';
import assert from 'node:assert/strict';
import { Simulation } from 'synap-wasm';

test('presets are listed and the video preset reports a consistent run', () => {
  const names = Simulation.presets().map((p) => p.name);
  assert.ok(names.includes('video-processing'));
  const r = Simulation.fromPreset('video-processing').run();
  const s = r.summary;
  assert.equal(r.finished, true);
  assert.equal(r.seed, '42');
  assert.equal(r.series.length, 60);
  assert.match(s.run_hash, /^[0-9a-f]{16}$/);
  assert.equal(s.published, s.completed + s.dead_lettered + s.still_in_system);
  const last = r.series.at(-1);
  assert.equal(s.still_in_system, last.ready + last.delayed + last.in_flight);
  const p9 = s.by_priority.find((p) => p.priority === 9);
  const p5 = s.by_priority.find((p) => p.priority === 5);
  assert.ok(p9.wait_ms.mean < p5.wait_ms.mean);
  assert.deepEqual(s.workers.map((w) => w.name), ['encoder', 'spot-encoder']);
});

test('step() then run() equals a single run()', () => {
  const whole = Simulation.fromPreset('video-processing').run();
  const sim = Simulation.fromPreset('video-processing');
  const partial = sim.step(600000);
  assert.equal(partial.finished, false);
  assert.equal(partial.series.length, 10);
  assert.equal(partial.summary.simulated_ms, 600000);
  sim.step(1234567);
  assert.deepEqual(sim.run(), whole);
});

test('custom scenarios run, and seeds may be strings', () => {
  const scenario = Simulation.presetScenario('steady');
  scenario.seed = '12345678901234567890';
  scenario.workers[0].count = 1;
  scenario.workers[0].failure_probability = 0.5;
  const a = new Simulation(scenario).run();
  const b = new Simulation(scenario).run();
  assert.equal(a.seed, '12345678901234567890');
  assert.deepEqual(a, b);
  assert.ok(a.summary.retries > 100);
  assert.notEqual(a.summary.run_hash, Simulation.fromPreset('steady').run().summary.run_hash);
});

test('schedules and cancellations: the nightly-reports preset', () => {
  const s = Simulation.fromPreset('nightly-reports').run().summary;
  // One 02:00 report (priority 3) and 35 cleanups (priority 1), published by engine schedules.
  assert.deepEqual(
    s.by_priority.filter((p) => p.priority < 5).map((p) => p.published),
    [1, 35],
  );
  assert.ok(s.cancelled > 0 && s.cancels.sent >= s.cancelled, JSON.stringify(s.cancels));
  assert.equal(s.published, s.completed + s.dead_lettered + s.cancelled + s.still_in_system);
  assert.equal(s.workers[0].completed, s.completed);
  const e = (() => {
    try {
      new Simulation({ task_types: [{ name: 't' }], producers: [{ arrival: { process: 'schedule', cron: 'nope' }, mix: [{ task_type: 't' }] }] });
    } catch (err) {
      return err;
    }
    assert.fail('expected a throw');
  })();
  assert.match(e.message, /arrival\.cron: not a 5-field cron pattern/);
});

test('bad scenarios throw objects with a code and a clear message', () => {
  const bad = (scenario) => {
    try {
      new Simulation(scenario);
    } catch (e) {
      return e;
    }
    assert.fail('expected a throw');
  };
  let e = bad({ workers: [{ name: 'w', count: 5000 }] });
  assert.equal(e.code, 'invalid_argument');
  assert.match(e.message, /at most 1000 workers/);
  e = bad({ duration_ms: 'soon' });
  assert.equal(e.code, 'invalid_argument');
  assert.match(e.message, /duration_ms|invalid type/);
  e = bad({ producers: [{ mix: [{ task_type: 'ghost' }] }] });
  assert.match(e.message, /unknown task type "ghost"/);
  assert.throws(() => Simulation.fromPreset('nope'), (err) => err.code === 'invalid_argument');
  assert.throws(() => Simulation.fromPreset('steady').step(-1), (err) => err.code === 'invalid_argument');
});

test('replay of a recorded command log', () => {
  const log = [
    { at: 1000, command: { type: 'create_queue', queue: 'q', config: { ack_deadline_ms: 5000, max_retries: 0 } } },
    { at: 1000, command: { type: 'publish', queue: 'q', message: { n: 1 } } },
    { at: 2000, command: { type: 'consume', queue: 'q' } },
  ].map((r) => JSON.stringify(r)).join('\n');
  const r = Simulation.replay(log, { until_ms: 10000, sample_interval_ms: 1000 });
  assert.equal(r.summary.published, 1);
  assert.equal(r.summary.lease_expired, 1);
  assert.equal(r.summary.dead_lettered, 1);
  assert.deepEqual(Simulation.replay(log, { until_ms: 10000, sample_interval_ms: 1000 }), r);
  assert.throws(() => Simulation.replay('{"at": 1}'), (err) => /line 1/.test(err.message));
  // A server's seed is a full u64: as a string of digits it arrives exact; the message ids
  // differ from another seed's, so the run hash does too.
  const big = Simulation.replay(log, { seed: '18446744073709551615', until_ms: 10000 });
  assert.notEqual(big.summary.run_hash, Simulation.replay(log, { seed: 1, until_ms: 10000 }).summary.run_hash);
  assert.deepEqual(Simulation.replay(log, { seed: '18446744073709551615', until_ms: 10000 }), big);
  assert.throws(() => Simulation.replay(log, { seed: '12x' }), (err) => err.code === 'invalid_argument');
});
