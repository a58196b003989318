//! The sample's progress check: prints each video's `video:{id}:progress` key (kept by the
//! workers of `video_workers`), or `Video not found`; exits 1 when any is missing.
//!
//! ```text
//! cargo run -p synap-client --example video_progress -- --url http://127.0.0.1:15500 --videos vid-1,vid-2
//! ```

// Shared with the other video examples, which use different parts of it.
#[allow(dead_code)]
mod common;

use common::Args;
use synap_client::SynapClient;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse("video_progress --url URL [--api-key KEY] --videos ID,ID");
    let url = args.get("url", "http://localhost:15500");
    let client = match args.get("api-key", "").as_str() {
        "" => SynapClient::connect(&url).await?,
        key => SynapClient::connect_with_key(&url, key).await?,
    };
    let mut missing = 0;
    for video in args.get("videos", "").split(',').filter(|v| !v.is_empty()) {
        match client
            .kv_get::<serde_json::Value>(&format!("video:{video}:progress"))
            .await?
        {
            Some(progress) => println!("{video} {progress}"),
            None => {
                println!("{video} Video not found");
                missing += 1;
            }
        }
    }
    std::process::exit(i32::from(missing > 0));
}
