// What the sample's TypeScript programs share: the task shapes, the queue, and the settings
// read from the environment (SYNAP_URL, SYNAP_API_KEY, and the knobs that let tests shorten
// the simulated work and inject failures).

/** The sample's task types; any other `type` is a poison task no worker can process. */
export enum TaskType {
  TRANSCODE = 'transcode',
  THUMBNAIL = 'thumbnail',
  UPLOAD_TO_CDN = 'upload_cdn',
  NOTIFY_USER = 'notify_user',
}

/** A task on `video-processing`. */
export interface VideoTask {
  type: TaskType;
  videoId: string;
  userId: string;
  settings?: {
    resolution?: string;
    format?: string;
    quality?: number;
  };
}

/** The sample's queue. */
export const QUEUE = 'video-processing';

function env(name: string, fallback: string): string {
  const v = process.env[name];
  return v === undefined || v === '' ? fallback : v;
}

function envNumber(name: string, fallback: number): number {
  const raw = env(name, String(fallback));
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0) {
    console.error(`${name}: not a non-negative number: ${raw}`);
    process.exit(2);
  }
  return n;
}

/** Settings from the environment; the defaults are the sample's. */
export const settings = {
  /** SYNAP_URL: the server. */
  url: env('SYNAP_URL', 'http://localhost:15500'),
  /** SYNAP_API_KEY: sent when set. */
  apiKey: process.env.SYNAP_API_KEY || undefined,
  /** SYNAP_WORK_SCALE: multiplies every simulated work time (0.01 turns 5 s into 50 ms). */
  workScale: envNumber('SYNAP_WORK_SCALE', 1),
  /** SYNAP_FAIL_RATE: share of tasks that fail before doing anything (0–1). */
  failRate: envNumber('SYNAP_FAIL_RATE', 0),
  /** SYNAP_SEED: seeds the failure injection so a run repeats. */
  seed: envNumber('SYNAP_SEED', process.pid),
  /** SYNAP_WAIT_SECS: the long-poll (the sample's 30 s). */
  waitSecs: envNumber('SYNAP_WAIT_SECS', 30),
  /** SYNAP_HEARTBEAT_SECS: the heartbeat period (the sample's 30 s). */
  heartbeatSecs: envNumber('SYNAP_HEARTBEAT_SECS', 30),
};

/** Sleeps `ms` of simulated work, scaled by SYNAP_WORK_SCALE. */
export function work(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms * settings.workScale));
}

/** Premium users (every third) get priority 9, others 5. */
export function isPremiumUser(userId: string): boolean {
  const n = Number(userId.replace(/\D/g, ''));
  return Number.isFinite(n) && n % 3 === 0;
}

/** A seeded xorshift generator for repeatable failure injection. */
export class Chance {
  private state: number;

  constructor(seed: number) {
    this.state = (Math.floor(seed) >>> 0) || 1;
  }

  /** True with probability `p`. */
  hit(p: number): boolean {
    let x = this.state;
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    this.state = x;
    return x / 0x1_0000_0000 < p;
  }
}
