//! Quick start, producer: queue three transcode tasks on `video-processing`.
//! `cargo run -p synap-client --example quickstart_producer` (SYNAP_URL picks the server).
use synap_client::{PublishOptions, SynapClient};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("SYNAP_URL").unwrap_or_else(|_| "http://127.0.0.1:15500".into());
    let synap = SynapClient::connect(&url).await?;
    for video_id in 1..=3 {
        let task = serde_json::json!({ "type": "transcode", "video_id": video_id });
        let opts = PublishOptions {
            priority: Some(9),
            ..Default::default()
        };
        let queued = synap.queue_publish("video-processing", &task, opts).await?;
        println!("queued video {video_id} as {}", queued.message_id);
    }
    Ok(())
}
