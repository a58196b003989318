// The sample's producer: one transcode task per upload (priority 9 for premium users, 5 for
// others, with headers) and a thumbnail task (priority 7). Creates `video-processing` with the
// sample's retry settings unless it exists.
//
//   SYNAP_URL=http://127.0.0.1:15500 node host-wasm/client/build/examples/producer.js
//
// SYNAP_UPLOADS uploads (default 3); SYNAP_POISON=1 adds a task of an unknown type that every
// worker fails on, so it ends in the dead-letter queue.
import { SynapClient } from 'synap-wasm';
import { QUEUE, TaskType, isPremiumUser, settings, type VideoTask } from './common.js';

export class VideoTaskProducer {
  private synap: SynapClient;

  constructor(synapUrl: string, apiKey: string | undefined) {
    this.synap = new SynapClient({ url: synapUrl, apiKey });
  }

  /** Creates the queue with the sample's settings unless it exists already. */
  async ensureQueue(): Promise<void> {
    if (!(await this.synap.queue.list()).includes(QUEUE)) {
      await this.synap.queue.create(QUEUE, { maxRetries: 3, ackDeadlineSecs: 300, retryDelays: [10, 60, 300] });
    }
  }

  async queueTranscoding(videoId: string, userId: string, settings: VideoTask['settings']): Promise<string> {
    const task: VideoTask = { type: TaskType.TRANSCODE, videoId, userId, settings };
    const result = await this.synap.queue.publish(QUEUE, task, {
      priority: this.calculatePriority(userId),
      headers: { source: 'web-upload', user_id: userId, video_id: videoId },
    });
    console.log(`Task ${result.messageId} queued at position ${result.position}`);
    return result.messageId;
  }

  async queueThumbnail(videoId: string, userId: string): Promise<string> {
    const result = await this.synap.queue.publish(
      QUEUE,
      { type: TaskType.THUMBNAIL, videoId, userId },
      { priority: 7 }, // Higher priority for thumbnails
    );
    return result.messageId;
  }

  /** A task no worker knows: it fails on every delivery and is dead-lettered. */
  async queuePoison(videoId: string): Promise<string> {
    const result = await this.synap.queue.publish(QUEUE, { type: 'corrupt_upload', videoId, userId: 'user-0' });
    console.log(`Poison task ${result.messageId} queued`);
    return result.messageId;
  }

  private calculatePriority(userId: string): number {
    // Premium users get higher priority
    return isPremiumUser(userId) ? 9 : 5;
  }
}

async function main(): Promise<void> {
  const producer = new VideoTaskProducer(settings.url, settings.apiKey);
  await producer.ensureQueue();
  const uploads = Number(process.env.SYNAP_UPLOADS ?? 3);
  for (let n = 1; n <= uploads; n++) {
    const videoId = `vid-${n}`;
    const userId = `user-${n}`;
    // What the sample's upload route does: queue transcoding, then the thumbnail.
    const taskId = await producer.queueTranscoding(videoId, userId, { resolution: '1080p', format: 'mp4' });
    await producer.queueThumbnail(videoId, userId);
    console.log(JSON.stringify({ success: true, taskId, status: 'queued' }));
  }
  if (process.env.SYNAP_POISON === '1') await producer.queuePoison('vid-poison');
}

main().catch((e: unknown) => {
  console.error('producer failed:', e);
  process.exit(1);
});
