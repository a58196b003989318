// The sample's monitoring: queue metrics and a dead-letter watch. Every SYNAP_MONITOR_SECS
// (the sample's 60 s) it prints the queue's stats and, when the DLQ holds tasks, an alert with
// the newest dead letters. SYNAP_MONITOR_ONCE=1 checks once and exits (status 3 when the DLQ is
// not empty), for scripts and tests.
//
//   SYNAP_URL=http://127.0.0.1:15500 node host-wasm/client/build/examples/dlq-monitor.js
import { SynapClient } from 'synap-wasm';
import { QUEUE, settings } from './common.js';

const synap = new SynapClient({ url: settings.url, apiKey: settings.apiKey });

async function monitorQueue(queueName: string): Promise<void> {
  const stats = await synap.queue.stats(queueName);
  console.log(`Queue: ${queueName}`);
  console.log(`  Depth: ${stats.depth}`);
  console.log(`  Consumers: ${stats.consumers}`);
  console.log(`  Published: ${stats.publishedTotal}`);
  console.log(`  Consumed: ${stats.consumedTotal}`);
  console.log(`  Acked: ${stats.ackedTotal}`);
  console.log(`  Dead Lettered: ${stats.deadLetteredTotal}`);
  console.log(`  Avg Wait Time: ${stats.avgWaitTimeMs}ms`);
}

/** The sample's alert hook: here a JSON line on stderr that an operator's tooling can pick up. */
function sendAlert(alert: Record<string, unknown>): void {
  console.error(`ALERT ${JSON.stringify(alert)}`);
}

/** Checks the DLQ once; returns how many tasks it holds. */
async function checkDeadLetterQueue(): Promise<number> {
  const stats = await synap.queue.stats(QUEUE);
  if (stats.deadLetterCount > 0) {
    console.warn(`${stats.deadLetterCount} tasks in dead letter queue`);
    const page = await synap.queue.dlqList(QUEUE, { limit: 10 });
    sendAlert({
      type: 'dead_letter_queue',
      queue: QUEUE,
      count: stats.deadLetterCount,
      recent: page.messages.map((d) => ({ messageId: d.messageId, reason: d.reason, lastError: d.lastError })),
    });
  }
  return stats.deadLetterCount;
}

async function main(): Promise<void> {
  if (process.env.SYNAP_MONITOR_ONCE === '1') {
    await monitorQueue(QUEUE);
    process.exitCode = (await checkDeadLetterQueue()) > 0 ? 3 : 0;
    return;
  }
  const every = Number(process.env.SYNAP_MONITOR_SECS ?? 60) * 1000;
  const tick = (): void => {
    monitorQueue(QUEUE)
      .then(checkDeadLetterQueue)
      .catch((e: unknown) => console.error('monitor check failed:', e));
  };
  tick();
  const timer = setInterval(tick, every);
  process.on('SIGINT', () => clearInterval(timer));
}

main().catch((e: unknown) => {
  console.error('monitor failed:', e);
  process.exit(1);
});
