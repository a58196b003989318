//! Quick start, worker: take tasks from `video-processing` under a 300 s lease and ack each;
//! stops when the queue stays empty for 2 s (a real worker loops for ever).
//! `cargo run -p synap-client --example quickstart_worker` (SYNAP_URL picks the server).
use std::time::Duration;

use synap_client::{ConsumeOptions, SynapClient};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("SYNAP_URL").unwrap_or_else(|_| "http://127.0.0.1:15500".into());
    let synap = SynapClient::connect(&url).await?;
    let opts = ConsumeOptions {
        timeout: Some(Duration::from_secs(2)),
        ack_deadline: Some(Duration::from_secs(300)),
        consumer_id: Some("quickstart-worker".into()),
    };
    let queue = "video-processing";
    while let Some(task) = synap
        .queue_consume::<serde_json::Value>(queue, Some(opts.clone()))
        .await?
    {
        println!("transcoding video {}", task.body["video_id"]);
        synap
            .queue_ack_with_lease(queue, &task.id, task.lease)
            .await?;
    }
    Ok(())
}
