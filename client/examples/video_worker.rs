//! The worker side of Synap's reference workload. It long-polls `video-processing` (30 s wait,
//! 300 s lease), reports progress on the job (which also extends its lease; a cancelled job is
//! acked and so settled as cancelled), acks with a result, keeps `video:{id}:status` and
//! `video:{id}:progress` in KV with a 3600 s TTL and
//! a `worker:{id}:heartbeat` key with a short TTL, queues a thumbnail task after each transcode,
//! stores the thumbnail's key, publishes `notifications.user.{userId}`, and nacks failures with
//! an error text so Synap retries them and finally dead-letters them. On Ctrl-C (SIGINT) it stops
//! taking work, hands back the task in hand (nack, so another worker gets it at once), and exits.
//!
//! ```text
//! cargo run -p synap-client --example video_worker -- --url http://127.0.0.1:15500
//! ```
//!
//! Flags: `--url`, `--api-key`, `--id` (default `worker-<pid>`), `--wait` and `--ack-deadline`
//! in seconds, `--work-ms` per task (default 400), `--heartbeat` seconds (default 5), and fault
//! injection for demos and tests: `--fail-rate` (nack with an error) and `--crash-rate` (walk
//! away from the lease, as a crashed process would), with `--seed`.

// Shared with the other video example, which uses different parts of it.
#[allow(dead_code)]
mod common;

use std::time::Duration;

use common::{Args, QUEUE, VideoTask};
use synap_client::{ConsumeOptions, NackOptions, PublishOptions, QueueMessage, SynapClient};
use tokio::sync::watch;

/// Status, progress and thumbnail keys outlive any realistic processing time.
const STATUS_TTL: Duration = Duration::from_secs(3600);

/// How one task ended, from the worker's side.
enum Outcome {
    /// Done: ack it.
    Done,
    /// Failed: nack it with this error so it is retried (or dead-lettered).
    Failed(String),
    /// Shutdown began mid-task: hand it back.
    Interrupted,
    /// The lease was lost (it expired and the task went to someone else): touch nothing.
    LeaseLost,
    /// An operator cancelled the job: stop and ack it, which settles it as cancelled.
    Cancelled,
}

struct Worker {
    client: SynapClient,
    id: String,
    consume: ConsumeOptions,
    work: Duration,
    fail_rate: f64,
    crash_rate: f64,
    rng: u64,
    shutdown: watch::Receiver<bool>,
    done: u64,
    failed: u64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse(
        "video_worker --url URL [--api-key KEY] [--id ID] [--wait S] [--ack-deadline S] \
         [--work-ms MS] [--heartbeat S] [--fail-rate P] [--crash-rate P] [--seed N]",
    );
    let url = args.get("url", "http://127.0.0.1:15500");
    let client = match args.get("api-key", "").as_str() {
        "" => SynapClient::connect(&url).await?,
        key => SynapClient::connect_with_key(&url, key).await?,
    };
    let id = args.get("id", &format!("worker-{}", std::process::id()));

    let (stop, shutdown) = watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = stop.send(true);
        }
    });
    let heartbeat = tokio::spawn(heartbeat(
        client.clone(),
        id.clone(),
        args.secs("heartbeat", 5.0),
        shutdown.clone(),
    ));

    let mut worker = Worker {
        consume: ConsumeOptions {
            timeout: Some(args.secs("wait", 30.0)),
            ack_deadline: Some(args.secs("ack-deadline", 300.0)),
            consumer_id: Some(id.clone()),
        },
        client,
        work: Duration::from_millis(args.num("work-ms", 400)),
        fail_rate: args.num("fail-rate", 0.0),
        crash_rate: args.num("crash-rate", 0.0),
        rng: args.num("seed", u64::from(std::process::id())) | 1,
        shutdown,
        done: 0,
        failed: 0,
        id,
    };
    println!("{} consuming {QUEUE}", worker.id);
    worker.run().await?;
    heartbeat.await?;
    worker
        .client
        .kv_del(&format!("worker:{}:heartbeat", worker.id))
        .await?;
    println!(
        "{} stopped: {} done, {} failed",
        worker.id, worker.done, worker.failed
    );
    Ok(())
}

impl Worker {
    /// Takes tasks until shutdown. A long-poll in progress is abandoned at once on shutdown;
    /// the server answers or times out the parked request on its own.
    async fn run(&mut self) -> Result<(), synap_client::SynapError> {
        let mut shutdown = self.shutdown.clone();
        while !*shutdown.borrow() {
            let consume = self
                .client
                .queue_consume::<VideoTask>(QUEUE, Some(self.consume.clone()));
            let msg = tokio::select! {
                r = consume => r?,
                _ = shutdown.changed() => break,
            };
            if let Some(msg) = msg {
                self.handle(msg).await?;
            }
        }
        Ok(())
    }

    async fn handle(
        &mut self,
        msg: QueueMessage<VideoTask>,
    ) -> Result<(), synap_client::SynapError> {
        if self.chance(self.crash_rate) {
            // A crashed worker never answers: the lease runs out and Synap retries the task.
            println!(
                "{}: crash while holding {} (lease left to expire)",
                self.id, msg.id
            );
            return Ok(());
        }
        let outcome = match &msg.body {
            VideoTask::Transcode { .. } => self.transcode(&msg).await?,
            VideoTask::Thumbnail { .. } => self.thumbnail(&msg).await?,
        };
        let status_key = format!("video:{}:status", msg.body.video_id());
        match outcome {
            Outcome::Done => {
                self.done += 1;
                println!(
                    "{}: {} {} done",
                    self.id,
                    msg.body.kind(),
                    msg.body.video_id()
                );
                let result = match &msg.body {
                    VideoTask::Transcode { .. } => serde_json::json!({"status": "transcoded"}),
                    VideoTask::Thumbnail { .. } => {
                        serde_json::json!({"thumbnail": format!("thumbnails/{}.jpg", msg.body.video_id())})
                    }
                };
                self.ack(&msg, Some(result)).await
            }
            Outcome::Failed(error) => {
                self.failed += 1;
                println!(
                    "{}: {} {} failed: {error}",
                    self.id,
                    msg.body.kind(),
                    msg.body.video_id()
                );
                let status = serde_json::json!({"state": "failed", "error": error,
                    "attempt": msg.retry_count + 1});
                self.client
                    .kv_set(&status_key, &status, Some(STATUS_TTL))
                    .await?;
                let opts = NackOptions {
                    lease: msg.lease,
                    ..NackOptions::retry_with_error(error)
                };
                self.answer(
                    self.client
                        .queue_nack_with(QUEUE, &msg.id, &opts)
                        .await
                        .map(drop),
                )
            }
            Outcome::Interrupted => {
                // Zero delay: the task is not at fault, another worker should take it now.
                let opts = NackOptions {
                    lease: msg.lease,
                    delay: Some(Duration::ZERO),
                    ..NackOptions::retry_with_error(format!("{} shut down", self.id))
                };
                self.answer(
                    self.client
                        .queue_nack_with(QUEUE, &msg.id, &opts)
                        .await
                        .map(drop),
                )
            }
            Outcome::LeaseLost => Ok(()),
            Outcome::Cancelled => {
                println!("{}: {} cancelled", self.id, msg.body.video_id());
                self.client
                    .kv_set(&status_key, &"cancelled", Some(STATUS_TTL))
                    .await?;
                self.ack(&msg, None).await
            }
        }
    }

    /// Acks under the delivery's lease, with the job's result when there is one (kept with
    /// the completed job for a producer's lookup or wait).
    async fn ack(
        &self,
        msg: &QueueMessage<VideoTask>,
        result: Option<serde_json::Value>,
    ) -> Result<(), synap_client::SynapError> {
        let r = match result {
            Some(result) => {
                self.client
                    .queue_ack_with_result(QUEUE, &msg.id, msg.lease, &result)
                    .await
            }
            None => {
                self.client
                    .queue_ack_with_lease(QUEUE, &msg.id, msg.lease)
                    .await
            }
        };
        self.answer(r)
    }

    /// A lease mismatch on ack or nack means the lease ran out and the task went to another
    /// worker; that delivery will answer for it, so this is not an error for us.
    fn answer(
        &self,
        r: Result<(), synap_client::SynapError>,
    ) -> Result<(), synap_client::SynapError> {
        match r {
            Err(e) if e.is_lease_mismatch() || e.is_not_found() => {
                println!("{}: lease lost before answering: {e}", self.id);
                Ok(())
            }
            other => other,
        }
    }

    async fn transcode(
        &mut self,
        msg: &QueueMessage<VideoTask>,
    ) -> Result<Outcome, synap_client::SynapError> {
        let task = &msg.body;
        let video = task.video_id();
        let status = serde_json::json!({"state": "processing", "worker": self.id,
            "attempt": msg.retry_count + 1});
        let client = self.client.clone();
        client
            .kv_set(&format!("video:{video}:status"), &status, Some(STATUS_TTL))
            .await?;
        for percent in [25, 50, 75, 100] {
            if !self.pause(self.work / 4).await {
                return Ok(Outcome::Interrupted);
            }
            if percent == 50 && self.chance(self.fail_rate) {
                return Ok(Outcome::Failed(format!(
                    "transcoder exited with status 1 at {percent}%"
                )));
            }
            // KV progress stays for readers of `video:{id}:progress`.
            client
                .kv_set(
                    &format!("video:{video}:progress"),
                    &percent,
                    Some(STATUS_TTL),
                )
                .await?;
            // The job keeps its progress too, and the same call keeps the lease a full deadline
            // ahead of the work, as a long transcode must.
            let deadline = self
                .consume
                .ack_deadline
                .unwrap_or(Duration::from_secs(300));
            let report = serde_json::json!({"pct": percent, "stage": "transcode"});
            match client
                .progress(QUEUE, &msg.id, msg.lease, &report, Some(deadline))
                .await
            {
                Ok(false) => {}
                Ok(true) => return Ok(Outcome::Cancelled),
                Err(e) if e.is_lease_mismatch() || e.is_not_found() => {
                    return Ok(Outcome::LeaseLost);
                }
                Err(e) => return Err(e),
            }
        }
        let follow_up = VideoTask::Thumbnail {
            video_id: video.to_owned(),
            user_id: task.user_id().to_owned(),
        };
        client
            .queue_publish(
                QUEUE,
                &follow_up,
                PublishOptions::priority(follow_up.priority()),
            )
            .await?;
        client
            .kv_set(
                &format!("video:{video}:status"),
                &"transcoded",
                Some(STATUS_TTL),
            )
            .await?;
        self.notify(task, "transcoded").await?;
        Ok(Outcome::Done)
    }

    async fn thumbnail(
        &mut self,
        msg: &QueueMessage<VideoTask>,
    ) -> Result<Outcome, synap_client::SynapError> {
        let task = &msg.body;
        if !self.pause(self.work / 2).await {
            return Ok(Outcome::Interrupted);
        }
        if self.chance(self.fail_rate) {
            return Ok(Outcome::Failed(
                "thumbnail renderer ran out of memory".into(),
            ));
        }
        let video = task.video_id();
        let client = self.client.clone();
        client
            .kv_set(
                &format!("video:{video}:thumbnail"),
                &format!("thumbnails/{video}.jpg"),
                Some(STATUS_TTL),
            )
            .await?;
        client
            .kv_set(&format!("video:{video}:status"), &"ready", Some(STATUS_TTL))
            .await?;
        self.notify(task, "ready").await?;
        Ok(Outcome::Done)
    }

    async fn notify(&self, task: &VideoTask, event: &str) -> Result<(), synap_client::SynapError> {
        let topic = format!("notifications.user.{}", task.user_id());
        let note =
            serde_json::json!({"event": event, "videoId": task.video_id(), "worker": self.id});
        self.client.pubsub_publish(&topic, &note).await.map(drop)
    }

    /// Simulates `d` of work; false if shutdown began first (checked before and during it, so
    /// Ctrl-C never waits for a long step to finish).
    async fn pause(&self, d: Duration) -> bool {
        let mut shutdown = self.shutdown.clone();
        if *shutdown.borrow() {
            return false;
        }
        tokio::select! {
            () = tokio::time::sleep(d) => true,
            _ = shutdown.changed() => false,
        }
    }

    /// True with probability `p`, from a xorshift generator seeded by `--seed` so a failing
    /// run can be repeated.
    fn chance(&mut self, p: f64) -> bool {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        #[expect(clippy::cast_precision_loss, reason = "53 random bits are plenty")]
        let unit = (self.rng >> 11) as f64 / (1u64 << 53) as f64;
        unit < p
    }
}

/// Refreshes `worker:{id}:heartbeat` until shutdown; its TTL of three beats makes a dead
/// worker's key vanish on its own.
async fn heartbeat(
    client: SynapClient,
    id: String,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let key = format!("worker:{id}:heartbeat");
    let mut beats: u64 = 0;
    while !*shutdown.borrow() {
        beats += 1;
        if let Err(e) = client
            .kv_set(&key, &serde_json::json!({"beats": beats}), Some(every * 3))
            .await
        {
            eprintln!("{id}: heartbeat failed: {e}");
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => {}
        }
    }
}
