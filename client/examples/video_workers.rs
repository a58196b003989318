//! The sample's Rust worker, several in one process: each `VideoWorker` long-polls
//! `video-processing` (30 s wait, 300 s lease), runs `transcode`, `thumbnail`, `upload_cdn` and
//! `notify_user` tasks, reports a transcode's progress on the job (a cancelled job is nacked and
//! so settled as cancelled), keeps `video:{id}:status` / `:progress` / `:thumbnail` and
//! `worker:{id}:heartbeat` in KV with TTLs, queues each task's follow-up, publishes
//! `notifications.user.{user_id}` for `notify_user`, and nacks a failure (with its error, under
//! the delivery's lease) so Synap retries it and finally dead-letters it. A task of an unknown
//! type (a poison task) fails on every delivery. Ctrl-C (SIGINT) stops every worker after its
//! task in hand.
//!
//! ```text
//! cargo run -p synap-client --example video_workers -- --url http://127.0.0.1:15500 --workers 3
//! ```
//!
//! Flags: `--url`, `--api-key`, `--workers` (default 3), `--wait` (long-poll s, default 30),
//! `--work-scale` (multiplies the simulated 5 s / 2 s / 3 s of work; 0.01 for tests),
//! `--heartbeat` (s, default 30), `--fail-rate` (share of tasks failing before they start) and
//! `--seed`.

// Shared with the other video examples, which use different parts of it.
#[allow(dead_code)]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Args, QUEUE};
use serde::{Deserialize, Serialize};
use serde_json::json;
use synap_client::{
    ConsumeOptions, NackOptions, PublishOptions, QueueMessage, SynapClient, SynapError,
};

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq)]
#[serde(rename_all = "snake_case")]
enum TaskType {
    Transcode,
    Thumbnail,
    UploadCdn,
    NotifyUser,
}

#[derive(Serialize, Deserialize, Debug)]
struct VideoTask {
    #[serde(rename = "type")]
    task_type: TaskType,
    video_id: String,
    user_id: String,
    settings: Option<serde_json::Value>,
}

/// What every worker of the process shares.
struct Shared {
    client: SynapClient,
    consume: ConsumeOptions,
    work_scale: f64,
    fail_rate: f64,
    running: AtomicBool,
}

struct VideoWorker {
    shared: Arc<Shared>,
    worker_id: String,
    rng: u64,
    processed: Arc<AtomicU64>,
}

type Result<T> = std::result::Result<T, SynapError>;

#[tokio::main]
async fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse(
        "video_workers --url URL [--api-key KEY] [--workers N] [--wait S] [--work-scale X] \
         [--heartbeat S] [--fail-rate P] [--seed N]",
    );
    let url = args.get("url", "http://localhost:15500");
    let client = match args.get("api-key", "").as_str() {
        "" => SynapClient::connect(&url).await?,
        key => SynapClient::connect_with_key(&url, key).await?,
    };
    let shared = Arc::new(Shared {
        client,
        consume: ConsumeOptions {
            timeout: Some(args.secs("wait", 30.0)),
            ack_deadline: Some(Duration::from_secs(300)),
            consumer_id: None,
        },
        work_scale: args.num("work-scale", 1.0),
        fail_rate: args.num("fail-rate", 0.0),
        running: AtomicBool::new(true),
    });
    let heartbeat = args.secs("heartbeat", 30.0);
    let seed: u64 = args.num("seed", u64::from(std::process::id()));

    // Graceful shutdown
    let stop = Arc::clone(&shared);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            println!("Shutting down gracefully...");
            stop.running.store(false, Ordering::SeqCst);
        }
    });

    let mut handles = Vec::new();
    for i in 1..=args.num::<u64>("workers", 3) {
        let worker = VideoWorker {
            shared: Arc::clone(&shared),
            worker_id: format!("worker-{}-{i}", std::process::id()),
            rng: (seed.wrapping_mul(6_364_136_223_846_793_005) ^ i.wrapping_mul(0x9E37_79B9)) | 1,
            processed: Arc::new(AtomicU64::new(0)),
        };
        tokio::spawn(worker.heartbeat(heartbeat));
        handles.push(tokio::spawn(worker.start()));
    }
    for h in handles {
        h.await??;
    }
    Ok(())
}

impl VideoWorker {
    async fn start(mut self) -> Result<()> {
        println!("{} started, waiting for tasks...", self.worker_id);
        while self.shared.running.load(Ordering::SeqCst) {
            if let Err(e) = self.process_next_task().await {
                eprintln!("{} error: {e}", self.worker_id);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        println!(
            "{} stopped after {} tasks",
            self.worker_id,
            self.processed.load(Ordering::SeqCst)
        );
        Ok(())
    }

    async fn process_next_task(&mut self) -> Result<bool> {
        let opts = ConsumeOptions {
            consumer_id: Some(self.worker_id.clone()),
            ..self.shared.consume.clone()
        };
        // The body is read as JSON first, so a task of an unknown type is nacked like any
        // failure instead of stopping the worker.
        let msg = self
            .shared
            .client
            .queue_consume::<serde_json::Value>(QUEUE, Some(opts))
            .await?;
        let Some(msg) = msg else {
            return Ok(false);
        };
        println!("{} processing {}", self.worker_id, msg.id);
        let kind = msg.body["type"].as_str().unwrap_or("?").to_owned();
        let outcome = self.process(&msg).await;
        let client = &self.shared.client;
        match outcome {
            Ok(()) => {
                client
                    .queue_ack_with_lease(QUEUE, &msg.id, msg.lease)
                    .await?;
                self.processed.fetch_add(1, Ordering::SeqCst);
                println!("{} completed {} {kind}", self.worker_id, msg.id);
            }
            Err(e) => {
                println!("{} error: {e}", self.worker_id);
                let opts = NackOptions {
                    lease: msg.lease,
                    ..NackOptions::retry_with_error(e)
                };
                client.queue_nack_with(QUEUE, &msg.id, &opts).await?;
            }
        }
        Ok(true)
    }

    /// Runs one task; `Err` is the failure text the nack carries.
    async fn process(
        &mut self,
        msg: &QueueMessage<serde_json::Value>,
    ) -> std::result::Result<(), String> {
        let task: VideoTask = serde_json::from_value(msg.body.clone())
            .map_err(|e| format!("Unknown task type: {} ({e})", msg.body["type"]))?;
        if self.chance() {
            return Err(format!(
                "injected failure in {:?} of {}",
                task.task_type, task.video_id
            ));
        }
        let r = match task.task_type {
            // Its error text already says whether the job was cancelled.
            TaskType::Transcode => return self.transcode_video(&task, msg).await,
            TaskType::Thumbnail => self.generate_thumbnail(&task).await,
            TaskType::UploadCdn => self.upload_to_cdn(&task).await,
            TaskType::NotifyUser => self.notify_user(&task).await,
        };
        r.map_err(|e| e.to_string())
    }

    async fn transcode_video(
        &self,
        task: &VideoTask,
        msg: &QueueMessage<serde_json::Value>,
    ) -> std::result::Result<(), String> {
        println!("Transcoding video {}", task.video_id);
        let client = &self.shared.client;
        for progress in [25, 50, 75, 100] {
            self.work(1250).await;
            let status = if progress < 100 {
                "transcoding"
            } else {
                "transcoded"
            };
            // KV progress stays for readers of `video:{id}:progress`; the job keeps it too.
            update_progress(client, &task.video_id, progress, status)
                .await
                .map_err(|e| e.to_string())?;
            let report = json!({ "progress": progress, "status": status });
            let cancelled = client
                .progress(QUEUE, &msg.id, msg.lease, &report, None)
                .await
                .map_err(|e| e.to_string())?;
            if cancelled {
                // The nack that follows settles the job as cancelled; it is never retried.
                return Err(format!("transcode of {} cancelled", task.video_id));
            }
        }
        self.finish_transcode(task).await.map_err(|e| e.to_string())
    }

    async fn finish_transcode(&self, task: &VideoTask) -> Result<()> {
        let client = &self.shared.client;
        // Update status in KV store
        client
            .kv_set(
                &format!("video:{}:status", task.video_id),
                &json!({ "status": "transcoded", "completed_at": unix_secs() }),
                Some(Duration::from_secs(3600)),
            )
            .await?;
        self.follow_up(task, TaskType::Thumbnail, 7).await
    }

    async fn generate_thumbnail(&self, task: &VideoTask) -> Result<()> {
        println!("Generating thumbnail for {}", task.video_id);
        self.work(2000).await;
        let url = format!("https://cdn.example.com/thumb/{}.jpg", task.video_id);
        self.shared
            .client
            .kv_set(
                &format!("video:{}:thumbnail", task.video_id),
                &json!({ "url": url }),
                Some(Duration::from_secs(86400)),
            )
            .await?;
        self.follow_up(task, TaskType::UploadCdn, 5).await
    }

    async fn upload_to_cdn(&self, task: &VideoTask) -> Result<()> {
        println!("Uploading {} to CDN", task.video_id);
        self.work(3000).await;
        self.shared
            .client
            .kv_set(
                &format!("video:{}:status", task.video_id),
                &json!({ "status": "published", "completed_at": unix_secs() }),
                Some(Duration::from_secs(3600)),
            )
            .await?;
        self.follow_up(task, TaskType::NotifyUser, 5).await
    }

    async fn notify_user(&self, task: &VideoTask) -> Result<()> {
        println!(
            "Notifying user {} about video {}",
            task.user_id, task.video_id
        );
        let note = json!({ "type": "video_ready", "video_id": task.video_id,
            "message": "Your video is ready!" });
        let topic = format!("notifications.user.{}", task.user_id);
        self.shared
            .client
            .pubsub_publish(&topic, &note)
            .await
            .map(drop)
    }

    async fn follow_up(&self, task: &VideoTask, next: TaskType, priority: u8) -> Result<()> {
        let body = VideoTask {
            task_type: next,
            video_id: task.video_id.clone(),
            user_id: task.user_id.clone(),
            settings: None,
        };
        let opts = PublishOptions::priority(priority);
        self.shared
            .client
            .queue_publish(QUEUE, &body, opts)
            .await
            .map(drop)
    }

    /// Simulated work of `ms`, scaled by `--work-scale`.
    async fn work(&self, ms: u64) {
        #[expect(clippy::cast_precision_loss, reason = "work times are small")]
        let scaled = ms as f64 * self.shared.work_scale;
        tokio::time::sleep(Duration::from_secs_f64(scaled / 1000.0)).await;
    }

    /// True with probability `--fail-rate`, from a seeded xorshift generator.
    fn chance(&mut self) -> bool {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        #[expect(clippy::cast_precision_loss, reason = "53 random bits are plenty")]
        let unit = (self.rng >> 11) as f64 / (1u64 << 53) as f64;
        unit < self.shared.fail_rate
    }

    /// The sample's worker health report: `worker:{id}:heartbeat` every `every`, with a TTL of
    /// at least a minute.
    fn heartbeat(&self, every: Duration) -> impl Future<Output = ()> + use<> {
        let shared = Arc::clone(&self.shared);
        let key = format!("worker:{}:heartbeat", self.worker_id);
        let processed = Arc::clone(&self.processed);
        async move {
            let ttl = (every * 2).max(Duration::from_secs(60));
            while shared.running.load(Ordering::SeqCst) {
                let health = json!({ "status": "healthy",
                    "tasks_processed": processed.load(Ordering::SeqCst) });
                if let Err(e) = shared.client.kv_set(&key, &health, Some(ttl)).await {
                    eprintln!("{key}: heartbeat failed: {e}");
                }
                tokio::time::sleep(every).await;
            }
        }
    }
}

/// The sample's progress tracking: `video:{id}:progress` with a 5 minute TTL.
async fn update_progress(
    client: &SynapClient,
    video_id: &str,
    progress: u8,
    status: &str,
) -> Result<()> {
    let value = json!({ "progress": progress, "status": status, "updated_at": unix_secs() });
    let key = format!("video:{video_id}:progress");
    client
        .kv_set(&key, &value, Some(Duration::from_secs(300)))
        .await
}

/// Seconds since the Unix epoch (the sample uses chrono for this; std suffices).
fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
