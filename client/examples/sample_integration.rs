//! The sample's integration test as a program: publish a task to `test-queue`, consume it,
//! ack it, and the queue is empty. Exits 1 (with the reason) when any step fails.
//!
//! ```text
//! cargo run -p synap-client --example sample_integration -- --url http://127.0.0.1:15500
//! ```

// Shared with the other video examples, which use different parts of it.
#[allow(dead_code)]
mod common;

use common::Args;
use serde::Deserialize;
use synap_client::{PublishOptions, SynapClient};

#[derive(Deserialize)]
struct TestTask {
    #[serde(rename = "type")]
    kind: String,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse("sample_integration --url URL [--api-key KEY]");
    let url = args.get("url", "http://localhost:15500");
    let synap = match args.get("api-key", "").as_str() {
        "" => SynapClient::connect(&url).await?,
        key => SynapClient::connect_with_key(&url, key).await?,
    };

    // Publish task
    let task = serde_json::json!({ "type": "test_task", "data": "test" });
    let result = synap
        .queue_publish("test-queue", &task, PublishOptions::default())
        .await?;
    check(
        !result.message_id.is_empty(),
        "publish returned no message id",
    );

    // Consume task
    let msg = synap.queue_consume::<TestTask>("test-queue", None).await?;
    let Some(msg) = msg else {
        fail("consume returned nothing");
    };
    check(
        msg.body.kind == "test_task",
        "the consumed task is not the published one",
    );

    // Acknowledge
    synap.queue_ack("test-queue", &msg.id).await?;

    // Queue should be empty
    let stats = synap.queue_stats("test-queue").await?;
    check(stats.depth == 0, "the queue is not empty after the ack");
    println!("Task Queue: should process task end-to-end: ok");
    Ok(())
}

fn check(ok: bool, what: &str) {
    if !ok {
        fail(what);
    }
}

fn fail(what: &str) -> ! {
    eprintln!("Task Queue: should process task end-to-end: FAILED: {what}");
    std::process::exit(1);
}
