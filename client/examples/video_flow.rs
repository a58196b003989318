//! The sample as a flow: each upload becomes three transcode renditions run in parallel, then
//! a package job that receives their results, then the user's notification, all added at once
//! with `flow_add` (docs/pipelines-with-flows.md). The sample's worker loop (long-poll, 300 s
//! lease, ack with a result, nack a failure with its error under the delivery's lease) runs on
//! each queue: three on `transcode`, one on `package`, one on `notify`. The program waits for
//! each flow's root job, prints the final flow, and exits 0 when every flow completed.
//!
//! ```text
//! cargo run -p synap-client --example video_flow -- --url http://127.0.0.1:15500
//! ```
//!
//! Flags: `--url`, `--api-key`, `--uploads` (default 1), `--work-scale` (multiplies the
//! simulated 5 s transcode and 3 s package; 0.01 for tests).

// Shared with the other video examples, which use different parts of it.
#[allow(dead_code)]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::Args;
use serde_json::{Value, json};
use synap_client::{
    ConsumeOptions, Flow, FlowJobState, FlowNode, FlowRequest, NackOptions, QueueMessage,
    SynapClient, SynapError,
};

const TRANSCODE: &str = "transcode";
const PACKAGE: &str = "package";
const NOTIFY: &str = "notify";
const RENDITIONS: [&str; 3] = ["480p", "720p", "1080p"];

/// Each worker's long-poll, short so the workers stop soon after the last flow finished.
const POLL: Duration = Duration::from_secs(1);

/// One upload's pipeline as a flow: notify waits for package, which waits for the renditions.
fn upload_flow(video_id: &str, user_id: &str) -> FlowRequest {
    let job = |queue: &str, message: Value, children: Vec<FlowRequest>| FlowRequest {
        queue: queue.into(),
        message,
        children,
        ..FlowRequest::default()
    };
    let transcodes = RENDITIONS
        .iter()
        .map(|r| {
            let settings = json!({"resolution": r, "format": "mp4"});
            let task = json!({"type": "transcode", "video_id": video_id, "user_id": user_id,
                "settings": settings});
            job(TRANSCODE, task, vec![])
        })
        .collect();
    let package = json!({"type": "package", "video_id": video_id, "user_id": user_id});
    let notify = json!({"type": "notify_user", "video_id": video_id, "user_id": user_id});
    job(NOTIFY, notify, vec![job(PACKAGE, package, transcodes)])
}

/// What a worker of one queue does with a job; `Ok` is the job's result, `Err` the failure.
#[derive(Clone, Copy)]
enum Step {
    Transcode,
    Package,
    Notify,
}

/// The sample's worker loop on one queue.
struct FlowWorker {
    client: SynapClient,
    queue: &'static str,
    worker_id: String,
    step: Step,
    work_scale: f64,
    running: Arc<AtomicBool>,
}

impl FlowWorker {
    async fn start(self) {
        let opts = ConsumeOptions {
            timeout: Some(POLL),
            ack_deadline: Some(Duration::from_secs(300)),
            consumer_id: Some(self.worker_id.clone()),
        };
        while self.running.load(Ordering::SeqCst) {
            if let Err(e) = self.next_task(&opts).await {
                eprintln!("{} error: {e}", self.worker_id);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }

    async fn next_task(&self, opts: &ConsumeOptions) -> Result<(), SynapError> {
        let c = &self.client;
        let Some(msg) = c
            .queue_consume::<Value>(self.queue, Some(opts.clone()))
            .await?
        else {
            return Ok(());
        };
        match self.process(&msg).await {
            Ok(result) => {
                // The result is kept with the job, and its parent's delivery carries it.
                c.queue_ack_with_result(self.queue, &msg.id, msg.lease, &result)
                    .await?;
                println!("{} completed {}", self.worker_id, msg.id);
            }
            Err(error) => {
                println!("{} error: {error}", self.worker_id);
                let opts = NackOptions {
                    lease: msg.lease,
                    ..NackOptions::retry_with_error(error)
                };
                c.queue_nack_with(self.queue, &msg.id, &opts).await?;
            }
        }
        Ok(())
    }

    async fn process(&self, msg: &QueueMessage<Value>) -> Result<Value, String> {
        let video = msg.body["video_id"].as_str().unwrap_or("?");
        match self.step {
            Step::Transcode => {
                let resolution = msg.body["settings"]["resolution"]
                    .as_str()
                    .unwrap_or("source");
                println!("Transcoding video {video} to {resolution}");
                self.work(5000).await;
                let url = format!("s3://videos/{video}/{resolution}.mp4");
                Ok(json!({"resolution": resolution, "url": url}))
            }
            Step::Package => {
                // The renditions' results arrive with the package job itself.
                let urls: Vec<Value> = msg
                    .children
                    .iter()
                    .flatten()
                    .filter(|c| c.state == FlowJobState::Completed)
                    .filter_map(|c| c.result.as_ref().map(|r| r["url"].clone()))
                    .collect();
                if urls.len() != RENDITIONS.len() {
                    return Err(format!("package of {video}: {} renditions", urls.len()));
                }
                println!("Packaging video {video}: {} renditions", urls.len());
                self.work(3000).await;
                let manifest = format!("s3://videos/{video}/master.m3u8");
                Ok(json!({"manifest": manifest, "renditions": urls}))
            }
            Step::Notify => self.notify(msg, video).await.map_err(|e| e.to_string()),
        }
    }

    async fn notify(&self, msg: &QueueMessage<Value>, video: &str) -> Result<Value, SynapError> {
        let user = msg.body["user_id"].as_str().unwrap_or("?");
        let manifest = msg
            .children
            .as_ref()
            .and_then(|c| c.first())
            .and_then(|c| c.result.as_ref())
            .map_or(Value::Null, |r| r["manifest"].clone());
        println!("Notifying user {user} about video {video}");
        let topic = format!("notifications.user.{user}");
        let note = json!({"type": "video_ready", "video_id": video, "manifest": manifest,
            "message": "Your video is ready!"});
        self.client.pubsub_publish(&topic, &note).await?;
        Ok(json!({ "topic": topic }))
    }

    /// Simulated work of `ms`, scaled by `--work-scale`.
    async fn work(&self, ms: u64) {
        #[expect(clippy::cast_precision_loss, reason = "work times are small")]
        let scaled = ms as f64 * self.work_scale;
        tokio::time::sleep(Duration::from_secs_f64(scaled / 1000.0)).await;
    }
}

/// Prints a flow: its state, then one line per job, children indented under their parent.
fn print_flow(flow: &Flow) {
    fn state(s: FlowJobState) -> String {
        serde_json::to_value(s)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }
    fn walk(nodes: &[FlowNode], depth: usize) {
        for n in nodes {
            line(
                &n.queue,
                &n.message_id,
                n.state,
                n.reason.map(|r| r.as_str()),
                n.result.as_ref(),
                depth,
            );
            walk(&n.children, depth + 1);
        }
    }
    fn line(
        queue: &str,
        id: &str,
        s: FlowJobState,
        reason: Option<&str>,
        result: Option<&Value>,
        depth: usize,
    ) {
        let why = reason.map(|r| format!(" ({r})")).unwrap_or_default();
        let result = result.map_or_else(|| "null".to_owned(), Value::to_string);
        println!(
            "{}{queue} {id} {}{why} {result}",
            "  ".repeat(depth),
            state(s)
        );
    }
    println!("flow {} {}", flow.flow_id, state(flow.state));
    line(
        &flow.queue,
        &flow.message_id,
        flow.state,
        flow.reason.map(|r| r.as_str()),
        flow.result.as_ref(),
        1,
    );
    walk(&flow.children, 2);
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse("video_flow --url URL [--api-key KEY] [--uploads N] [--work-scale X]");
    let url = args.get("url", "http://127.0.0.1:15500");
    let client = match args.get("api-key", "").as_str() {
        "" => SynapClient::connect(&url).await?,
        key => SynapClient::connect_with_key(&url, key).await?,
    };
    let mut added = Vec::new();
    for n in 1..=args.num::<u32>("uploads", 1) {
        let created = client
            .flow_add(&upload_flow(&format!("vid-{n}"), &format!("user-{n}")))
            .await?;
        println!(
            "upload vid-{n}: flow {}, notify {}",
            created.flow_id, created.message_id
        );
        added.push(created);
    }

    let running = Arc::new(AtomicBool::new(true));
    let worker = |queue: &'static str, step: Step, i: u32| FlowWorker {
        client: client.clone(),
        queue,
        worker_id: format!("{queue}-worker-{}-{i}", std::process::id()),
        step,
        work_scale: args.num("work-scale", 1.0),
        running: Arc::clone(&running),
    };
    let mut workers: Vec<FlowWorker> = (1..=3)
        .map(|i| worker(TRANSCODE, Step::Transcode, i))
        .collect();
    workers.push(worker(PACKAGE, Step::Package, 1));
    workers.push(worker(NOTIFY, Step::Notify, 1));
    let handles: Vec<_> = workers
        .into_iter()
        .map(|w| tokio::spawn(w.start()))
        .collect();

    let mut ok = true;
    for created in &added {
        // The root job finishes last: completed, or dead-lettered when a job below it failed.
        let wait = Duration::from_secs(30);
        while !client
            .wait_for(NOTIFY, &created.message_id, wait)
            .await?
            .state
            .is_finished()
        {}
        let flow = client.flow_get(&created.flow_id).await?;
        print_flow(&flow);
        ok &= flow.state == FlowJobState::Completed;
    }
    running.store(false, Ordering::SeqCst);
    for h in handles {
        h.await?;
    }
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}
