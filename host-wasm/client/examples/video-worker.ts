// The sample's worker as a class, used by worker.ts (one per process) and workers.ts (several
// in one process). It long-polls `video-processing` (30 s wait, 300 s lease), runs transcode,
// thumbnail, upload_cdn and notify_user tasks, reports a transcode's progress on the job (a
// cancelled job is nacked and so settled as cancelled), keeps status, progress and heartbeat
// keys in KV with TTLs, queues each task's follow-up, publishes a notification for notify_user, nacks
// on error (with the error text, under the delivery's lease) and stops gracefully.
import { SynapClient, type QueueMessage } from 'synap-wasm';
import { Chance, TaskType, settings, work, type VideoTask } from './common.js';

/** The sample's progress tracking: `video:{id}:progress` with a 5 minute TTL. */
export async function updateProgress(synap: SynapClient, videoId: string, progress: number, status: string): Promise<void> {
  await synap.kv.set(`video:${videoId}:progress`, { progress, status, updatedAt: Date.now() }, 300);
}

export class VideoWorker {
  private synap: SynapClient;
  private queueName: string;
  private running = false;
  readonly workerId: string;
  private processedCount = 0;
  private lastTaskTimestamp: number | null = null;
  private chance: Chance;
  private heartbeat: NodeJS.Timeout | undefined;

  constructor(synapUrl: string, apiKey: string | undefined, queueName: string, workerId = `worker-${process.pid}`) {
    this.synap = new SynapClient({ url: synapUrl, apiKey });
    this.queueName = queueName;
    this.workerId = workerId;
    this.chance = new Chance(settings.seed + workerId.length * 7919 + hash(workerId));
  }

  async start(): Promise<void> {
    this.running = true;
    console.log(`${this.workerId} started, waiting for tasks...`);
    await this.beat();
    this.heartbeat = setInterval(() => void this.beat(), settings.heartbeatSecs * 1000);

    while (this.running) {
      let msg: QueueMessage<VideoTask> | null = null;
      try {
        // Wait up to 30 seconds for a task, with 5 minutes to process it.
        msg = await this.synap.queue.consume<VideoTask>(this.queueName, {
          timeout: settings.waitSecs,
          ackDeadline: 300,
          consumerId: this.workerId,
        });
        if (!msg) continue;
        console.log(`${this.workerId} processing ${msg.messageId}`);
        await this.processTask(msg);
        await this.synap.queue.ack(this.queueName, msg.messageId, msg.lease);
        this.processedCount += 1;
        this.lastTaskTimestamp = Date.now();
        console.log(`${this.workerId} completed ${msg.messageId} ${msg.message.type}`);
      } catch (error) {
        console.error(`${this.workerId} error:`, error instanceof Error ? error.message : error);
        // NACK on error: Synap retries the task, then dead-letters it.
        if (msg) {
          await this.synap.queue
            .nack(this.queueName, msg.messageId, true, { error: String(error), lease: msg.lease })
            .catch((e: unknown) => console.error(`${this.workerId} nack failed:`, e));
        }
        // Brief pause before next task
        await work(1000);
      }
    }
    clearInterval(this.heartbeat);
    console.log(`${this.workerId} stopped after ${this.processedCount} tasks`);
  }

  /** The sample's worker health report: `worker:{id}:heartbeat` with a 1 minute TTL. */
  private async beat(): Promise<void> {
    await this.synap.kv
      .set(
        `worker:${this.workerId}:heartbeat`,
        { status: 'healthy', tasksProcessed: this.processedCount, lastTask: this.lastTaskTimestamp },
        Math.max(60, settings.heartbeatSecs * 2),
      )
      .catch((e: unknown) => console.error(`${this.workerId} heartbeat failed:`, e));
  }

  private async processTask(msg: QueueMessage<VideoTask>): Promise<void> {
    const task = msg.message;
    // Injected failures hit real tasks only, so a poison task always fails for its type.
    if (Object.values(TaskType).includes(task.type) && this.chance.hit(settings.failRate)) {
      throw new Error(`injected failure in ${task.type} of ${task.videoId}`);
    }
    switch (task.type) {
      case TaskType.TRANSCODE:
        await this.transcodeVideo(task, msg);
        break;
      case TaskType.THUMBNAIL:
        await this.generateThumbnail(task);
        break;
      case TaskType.UPLOAD_TO_CDN:
        await this.uploadToCDN(task);
        break;
      case TaskType.NOTIFY_USER:
        await this.notifyUser(task);
        break;
      default:
        throw new Error(`Unknown task type: ${String(task.type)}`);
    }
  }

  private async transcodeVideo(task: VideoTask, msg: QueueMessage<VideoTask>): Promise<void> {
    console.log(`Transcoding video ${task.videoId}`);
    // Simulate video transcoding (would use FFmpeg in reality), reporting progress.
    for (const progress of [25, 50, 75, 100]) {
      await work(1250);
      const status = progress < 100 ? 'transcoding' : 'transcoded';
      // KV progress stays for readers of `video:{id}:progress`; the job keeps it too.
      await updateProgress(this.synap, task.videoId, progress, status);
      const reported = await this.synap.queue.progress(this.queueName, msg.messageId, { progress, status }, { lease: msg.lease });
      // Cancelled by an operator: the nack that follows settles the job as cancelled, never retried.
      if (reported.cancelled) throw new Error(`transcode of ${task.videoId} cancelled`);
    }
    await this.synap.kv.set(`video:${task.videoId}:status`, { status: 'transcoded', completedAt: Date.now() }, 3600);
    // Queue next task (thumbnail generation)
    await this.synap.queue.publish(
      this.queueName,
      { type: TaskType.THUMBNAIL, videoId: task.videoId, userId: task.userId },
      { priority: 7 },
    );
  }

  private async generateThumbnail(task: VideoTask): Promise<void> {
    console.log(`Generating thumbnail for ${task.videoId}`);
    await work(2000);
    await this.synap.kv.set(
      `video:${task.videoId}:thumbnail`,
      { url: `https://cdn.example.com/thumb/${task.videoId}.jpg` },
      86400,
    );
    await this.synap.queue.publish(this.queueName, { type: TaskType.UPLOAD_TO_CDN, videoId: task.videoId, userId: task.userId });
  }

  private async uploadToCDN(task: VideoTask): Promise<void> {
    console.log(`Uploading ${task.videoId} to CDN`);
    await work(3000);
    await this.synap.kv.set(`video:${task.videoId}:status`, { status: 'published', completedAt: Date.now() }, 3600);
    await this.synap.queue.publish(this.queueName, { type: TaskType.NOTIFY_USER, videoId: task.videoId, userId: task.userId });
  }

  private async notifyUser(task: VideoTask): Promise<void> {
    console.log(`Notifying user ${task.userId} about video ${task.videoId}`);
    // Use pub/sub to notify
    await this.synap.pubsub.publish(`notifications.user.${task.userId}`, {
      type: 'video_ready',
      videoId: task.videoId,
      message: 'Your video is ready!',
    });
  }

  stop(): void {
    this.running = false;
  }
}

function hash(s: string): number {
  let h = 0;
  for (const c of s) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return h;
}

