// Engine throughput in WebAssembly under Node: publish + consume + ack cycles per second on one
// thread, through the package's JS API. `handle` moves each command and reply across the
// JS/wasm boundary as a plain object, so its lines include that conversion; `handleBatch`
// moves a batch of commands as one JSON string each way; `cycles` runs whole cycles inside
// the engine and returns only counts. Compare with the native figure of
// `cargo bench -p synap-core --bench cycles`.
// Run after host-wasm/build.sh: node host-wasm/bench/cycles.mjs [messages]
import { Engine } from 'synap-wasm';

const total = Number(process.argv[2] || 200_000);
const body = { video_id: 123456, user_id: 42, kind: 'transcode', resolution: '1080p', source: 's3://uploads/raw/123456.mp4' };

function oneAtATime(observe) {
  const engine = new Engine({ observe }, 1);
  const t0 = performance.now();
  for (let i = 0; i < total; i++) {
    const now = 1 + Math.floor(i / 1000);
    engine.handle(now, { type: 'publish', queue: 'bench', message: body });
    const { messages } = engine.handle(now, { type: 'consume', queue: 'bench' });
    for (const m of messages) {
      engine.handle(now, { type: 'ack', queue: 'bench', message_id: m.message_id, lease: m.lease });
    }
    engine.drainEvents();
  }
  return total / ((performance.now() - t0) / 1000);
}

function batches(observe) {
  const engine = new Engine({ observe }, 1);
  const batch = Array.from({ length: 100 }, () => ({ message: body }));
  const t0 = performance.now();
  for (let i = 0; i < total / 100; i++) {
    const now = 1 + Math.floor(i / 10);
    engine.handle(now, { type: 'publish_batch', queue: 'bench', messages: batch });
    const { messages } = engine.handle(now, { type: 'consume', queue: 'bench', max_messages: 100 });
    for (const m of messages) {
      engine.handle(now, { type: 'ack', queue: 'bench', message_id: m.message_id, lease: m.lease });
    }
    engine.drainEvents();
  }
  return total / ((performance.now() - t0) / 1000);
}

function jsonBatches(observe) {
  const engine = new Engine({ observe }, 1);
  const publish = JSON.stringify([{ type: 'publish_batch', queue: 'bench', messages: Array.from({ length: 100 }, () => ({ message: body })) },
    { type: 'consume', queue: 'bench', max_messages: 100 }]);
  const t0 = performance.now();
  for (let i = 0; i < total / 100; i++) {
    const now = 1 + Math.floor(i / 10);
    const [, consumed] = JSON.parse(engine.handleBatch(now, publish));
    const acks = consumed.ok.messages.map((m) => ({ type: 'ack', queue: 'bench', message_id: m.message_id, lease: m.lease }));
    engine.handleBatch(now, JSON.stringify(acks));
    if (observe) engine.drainEventsJson();
  }
  return total / ((performance.now() - t0) / 1000);
}

function inEngine(observe, batch) {
  const engine = new Engine({ observe }, 1);
  const message = JSON.stringify(body);
  const t0 = performance.now();
  // 1,000 messages per call, as a dashboard tick or a simulation step would ask.
  for (let i = 0; i < total / 1000; i++) {
    const done = engine.cycles(1 + i, 'bench', 1000, message, batch);
    if (done.acked !== 1000) throw new Error(`cycles acked ${done.acked}`);
  }
  return total / ((performance.now() - t0) / 1000);
}

console.log(`synap-wasm engine benchmark: ${total} messages, Node ${process.version}, 1 thread`);
console.log(`one at a time, events off : ${Math.round(oneAtATime(false))} cycles/s`);
console.log(`one at a time, events on  : ${Math.round(oneAtATime(true))} cycles/s`);
console.log(`batches of 100, events off: ${Math.round(batches(false))} cycles/s`);
console.log(`handleBatch JSON, 100s, events on : ${Math.round(jsonBatches(true))} cycles/s`);
console.log(`cycles(), one at a time, events on: ${Math.round(inEngine(true, 1))} cycles/s`);
console.log(`cycles(), one at a time, events off: ${Math.round(inEngine(false, 1))} cycles/s`);
console.log(`cycles(), batches of 100, events on: ${Math.round(inEngine(true, 100))} cycles/s`);
