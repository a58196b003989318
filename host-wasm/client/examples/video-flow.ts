// The sample as a flow: each upload becomes three transcode renditions run in parallel, then a
// package job that receives their results, then the user's notification, all added at once
// with `flows.add` (docs/pipelines-with-flows.md). The sample's worker loop (long-poll, 300 s
// lease, ack with a result, nack a failure with its error under the delivery's lease) runs on
// each queue: three on `transcode`, one on `package`, one on `notify`. The program waits for
// each flow's root job, prints the final flow, and exits 0 when every flow completed.
//
//   SYNAP_URL=http://127.0.0.1:15500 node host-wasm/client/build/examples/video-flow.js
//
// SYNAP_UPLOADS uploads (default 1); SYNAP_WORK_SCALE shortens the simulated work (0.01 for
// tests); SYNAP_API_KEY is sent when set.
import { SynapClient, type Flow, type FlowNode, type FlowSpec, type QueueMessage } from 'synap-wasm';
import { TaskType, settings, work } from './common.js';

/** The pipeline's queues. */
export const QUEUES = { transcode: 'transcode', package: 'package', notify: 'notify' } as const;
/** The renditions of every upload. */
export const RENDITIONS = ['480p', '720p', '1080p'];
/** Each worker's long-poll, short so the workers stop soon after the last flow finished. */
const POLL_SECS = Math.min(settings.waitSecs, 1);

/** A job of the pipeline: the sample's task shape, with `package` between transcode and notify. */
interface FlowTask {
  type: TaskType.TRANSCODE | 'package' | TaskType.NOTIFY_USER;
  videoId: string;
  userId: string;
  settings?: { resolution: string; format: string };
}

/** One upload's pipeline as a flow: notify waits for package, which waits for the renditions. */
export function uploadFlow(videoId: string, userId: string): FlowSpec {
  const transcode = (resolution: string): FlowSpec => ({
    queue: QUEUES.transcode,
    message: { type: TaskType.TRANSCODE, videoId, userId, settings: { resolution, format: 'mp4' } },
  });
  return {
    queue: QUEUES.notify,
    message: { type: TaskType.NOTIFY_USER, videoId, userId },
    children: [{
      queue: QUEUES.package,
      message: { type: 'package', videoId, userId },
      children: RENDITIONS.map(transcode),
    }],
  };
}

/** The sample's worker loop on one queue; `handle` does the work and answers the job's result. */
class FlowWorker {
  private running = false;

  constructor(
    private readonly synap: SynapClient,
    private readonly queueName: string,
    readonly workerId: string,
    private readonly handle: (msg: QueueMessage<FlowTask>) => Promise<unknown>,
  ) {}

  async start(): Promise<void> {
    this.running = true;
    while (this.running) {
      let msg: QueueMessage<FlowTask> | null = null;
      try {
        msg = await this.synap.queue.consume<FlowTask>(this.queueName, {
          timeout: POLL_SECS,
          ackDeadline: 300,
          consumerId: this.workerId,
        });
        if (!msg) continue;
        const result = await this.handle(msg);
        // The result is kept with the job, and its parent's delivery carries it.
        await this.synap.queue.ack(this.queueName, msg.messageId, msg.lease, { result });
        console.log(`${this.workerId} completed ${msg.messageId}`);
      } catch (error) {
        console.error(`${this.workerId} error:`, error instanceof Error ? error.message : error);
        if (msg) {
          await this.synap.queue
            .nack(this.queueName, msg.messageId, true, { error: String(error), lease: msg.lease })
            .catch((e: unknown) => console.error(`${this.workerId} nack failed:`, e));
        }
        await work(1000);
      }
    }
  }

  stop(): void {
    this.running = false;
  }
}

async function transcode(msg: QueueMessage<FlowTask>): Promise<unknown> {
  const { videoId, settings: s } = msg.message;
  const resolution = s?.resolution ?? 'source';
  console.log(`Transcoding video ${videoId} to ${resolution}`);
  await work(5000);
  return { resolution, url: `s3://videos/${videoId}/${resolution}.mp4` };
}

async function pack(msg: QueueMessage<FlowTask>): Promise<unknown> {
  const { videoId } = msg.message;
  // The renditions' results arrive with the package job itself.
  const renditions = (msg.children ?? []).filter((c) => c.state === 'completed').map((c) => c.result as { url: string });
  if (renditions.length !== RENDITIONS.length) throw new Error(`package of ${videoId}: ${renditions.length} renditions`);
  console.log(`Packaging video ${videoId}: ${renditions.map((r) => r.url).join(', ')}`);
  await work(3000);
  return { manifest: `s3://videos/${videoId}/master.m3u8`, renditions: renditions.map((r) => r.url) };
}

function notifier(synap: SynapClient): (msg: QueueMessage<FlowTask>) => Promise<unknown> {
  return async (msg) => {
    const { videoId, userId } = msg.message;
    const manifest = (msg.children?.[0]?.result as { manifest?: string } | null)?.manifest;
    console.log(`Notifying user ${userId} about video ${videoId}`);
    const topic = `notifications.user.${userId}`;
    await synap.pubsub.publish(topic, { type: 'video_ready', videoId, manifest, message: 'Your video is ready!' });
    return { topic };
  };
}

/** Prints a flow: its state, then one line per job, children indented under their parent. */
function printFlow(flow: Flow): void {
  console.log(`flow ${flow.flowId} ${flow.state}`);
  const line = (n: Pick<FlowNode, 'queue' | 'messageId' | 'state' | 'reason' | 'result'>, depth: number): void => {
    const why = n.reason === undefined ? '' : ` (${n.reason})`;
    console.log(`${'  '.repeat(depth)}${n.queue} ${n.messageId} ${n.state}${why} ${JSON.stringify(n.result)}`);
  };
  const walk = (nodes: FlowNode[], depth: number): void => nodes.forEach((n) => {
    line(n, depth);
    walk(n.children, depth + 1);
  });
  line(flow, 1);
  walk(flow.children, 2);
}

const FINISHED = ['completed', 'dead_lettered', 'cancelled'];

async function main(): Promise<boolean> {
  const synap = new SynapClient({ url: settings.url, apiKey: settings.apiKey });
  const uploads = Number(process.env.SYNAP_UPLOADS ?? 1);
  const added = [];
  for (let n = 1; n <= uploads; n += 1) {
    const created = await synap.flows.add(uploadFlow(`vid-${n}`, `user-${n}`));
    console.log(`upload vid-${n}: flow ${created.flowId}, notify ${created.messageId}`);
    added.push(created);
  }

  const id = (q: string, i: number): string => `${q}-worker-${process.pid}-${i}`;
  const workers = [
    ...[1, 2, 3].map((i) => new FlowWorker(synap, QUEUES.transcode, id('transcode', i), transcode)),
    new FlowWorker(synap, QUEUES.package, id('package', 1), pack),
    new FlowWorker(synap, QUEUES.notify, id('notify', 1), notifier(synap)),
  ];
  const running = workers.map((w) => w.start());

  let ok = true;
  for (const created of added) {
    // The root job finishes last: completed, or dead-lettered when a job below it failed.
    let job = await synap.queue.waitFor(QUEUES.notify, created.messageId, { timeout: 30 });
    while (!FINISHED.includes(job.state)) job = await synap.queue.waitFor(QUEUES.notify, created.messageId, { timeout: 30 });
    const flow = await synap.flows.get(created.flowId);
    printFlow(flow);
    ok &&= flow.state === 'completed';
  }
  for (const w of workers) w.stop();
  await Promise.all(running);
  return ok;
}

main().then(
  (ok) => {
    process.exitCode = ok ? 0 : 1;
  },
  (e: unknown) => {
    console.error('video-flow failed:', e);
    process.exitCode = 1;
  },
);
