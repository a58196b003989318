//! The producer side of Synap's reference workload: a video platform queues a `transcode` task
//! per upload on `video-processing` (premium users at priority 9, others at 5) and some
//! thumbnail re-renders (priority 7), and marks each video `queued` in KV.
//!
//! ```text
//! cargo run -p synap-client --example video_producer -- --url http://127.0.0.1:15500 --count 20
//! ```
//!
//! Flags: `--url`, `--api-key`, `--count` uploads (default 10), `--premium-every` (every n-th
//! upload is premium, default 3), `--thumbnails` extra thumbnail tasks (default 2),
//! `--start` first video number (default 1), `--poison 1` adds a task of an unknown type that
//! every worker fails on, so it ends in the dead-letter queue.

// Shared with the other video example, which uses different parts of it.
#[allow(dead_code)]
mod common;

use std::time::Duration;

use common::{Args, QUEUE, VideoTask};
use synap_client::{PublishOptions, SynapClient};

/// Status keys outlive any realistic processing time, then clean themselves up.
const STATUS_TTL: Duration = Duration::from_secs(3600);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse(
        "video_producer --url URL [--api-key KEY] [--count N] [--premium-every N] \
         [--thumbnails N] [--start N] [--poison 1]",
    );
    let url = args.get("url", "http://127.0.0.1:15500");
    let client = match args.get("api-key", "").as_str() {
        "" => SynapClient::connect(&url).await?,
        key => SynapClient::connect_with_key(&url, key).await?,
    };

    // A queue the server's config file already defines keeps its settings; otherwise create
    // it with the reference workload's lease and retry schedule.
    if !client.queue_list().await?.iter().any(|q| q == QUEUE) {
        client.queue_create(QUEUE, common::queue_config()).await?;
    }

    let count: u64 = args.num("count", 10);
    let premium_every: u64 = args.num("premium-every", 3).max(1);
    let start: u64 = args.num("start", 1);
    for n in start..start + count {
        let task = VideoTask::Transcode {
            video_id: format!("vid-{n}"),
            user_id: format!("user-{}", n % 7),
            premium: n % premium_every == 0,
        };
        publish(&client, &task).await?;
        client
            .kv_set(
                &format!("video:vid-{n}:status"),
                &"queued",
                Some(STATUS_TTL),
            )
            .await?;
    }

    // Thumbnail re-renders for videos uploaded earlier (e.g. a changed cover frame).
    let thumbnails: u64 = args.num("thumbnails", 2);
    for n in start..start + thumbnails.min(count) {
        let task = VideoTask::Thumbnail {
            video_id: format!("vid-{n}"),
            user_id: format!("user-{}", n % 7),
        };
        publish(&client, &task).await?;
    }

    if args.get("poison", "0") == "1" {
        let poison = serde_json::json!({"type": "corrupt_upload", "video_id": "vid-poison",
            "user_id": "user-0"});
        let r = client
            .queue_publish(QUEUE, &poison, PublishOptions::default())
            .await?;
        println!("queued poison task {}", r.message_id);
    }

    let stats = client.queue_stats(QUEUE).await?;
    println!(
        "published {count} transcode and {} thumbnail tasks; {QUEUE}: depth {}, in flight {}",
        thumbnails.min(count),
        stats.depth,
        stats.in_flight
    );
    Ok(())
}

async fn publish(client: &SynapClient, task: &VideoTask) -> Result<(), synap_client::SynapError> {
    let mut opts = PublishOptions::priority(task.priority());
    opts.headers
        .insert("source".into(), "video_producer".into());
    opts.headers.insert("user_id".into(), task.user_id().into());
    opts.headers
        .insert("video_id".into(), task.video_id().into());
    let r = client.queue_publish(QUEUE, task, opts).await?;
    println!(
        "queued {} for {} (priority {}, id {}, position {:?})",
        task.kind(),
        task.video_id(),
        task.priority(),
        r.message_id,
        r.position
    );
    Ok(())
}
