//! The sample's monitoring: queue metrics and a dead-letter watch. Every `--every` seconds
//! (the sample's 60) it prints `video-processing`'s stats and, when its DLQ holds tasks, an
//! alert line with the newest dead letters. `--once 1` checks once and exits with status 3
//! when the DLQ is not empty, for scripts and tests.
//!
//! ```text
//! cargo run -p synap-client --example dlq_monitor -- --url http://127.0.0.1:15500
//! ```

// Shared with the other video examples, which use different parts of it.
#[allow(dead_code)]
mod common;

use common::{Args, QUEUE};
use synap_client::{SynapClient, SynapError};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse("dlq_monitor --url URL [--api-key KEY] [--every S] [--once 1]");
    let url = args.get("url", "http://localhost:15500");
    let client = match args.get("api-key", "").as_str() {
        "" => SynapClient::connect(&url).await?,
        key => SynapClient::connect_with_key(&url, key).await?,
    };
    if args.get("once", "0") == "1" {
        monitor_queue(&client, QUEUE).await?;
        let dead = check_dead_letter_queue(&client).await?;
        std::process::exit(if dead > 0 { 3 } else { 0 });
    }
    let every = args.secs("every", 60.0);
    loop {
        let check = async {
            monitor_queue(&client, QUEUE).await?;
            check_dead_letter_queue(&client).await
        };
        if let Err(e) = check.await {
            eprintln!("monitor check failed: {e}");
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

async fn monitor_queue(client: &SynapClient, queue: &str) -> Result<(), SynapError> {
    let stats = client.queue_stats(queue).await?;
    println!("Queue: {queue}");
    println!("  Depth: {}", stats.depth);
    println!("  Consumers: {}", stats.consumers);
    println!("  Published: {}", stats.published_total);
    println!("  Consumed: {}", stats.consumed_total);
    println!("  Acked: {}", stats.acked_total);
    println!("  Dead Lettered: {}", stats.dead_lettered_total);
    println!("  Avg Wait Time: {}ms", stats.avg_wait_time_ms);
    Ok(())
}

/// Prints an alert when the DLQ holds tasks; returns how many it holds.
async fn check_dead_letter_queue(client: &SynapClient) -> Result<u64, SynapError> {
    let stats = client.queue_stats(QUEUE).await?;
    if stats.dead_letter_count > 0 {
        println!("{} tasks in dead letter queue", stats.dead_letter_count);
        let page = client.dlq_list(QUEUE, 0, 10).await?;
        let recent: Vec<_> = page
            .messages
            .iter()
            .map(|d| {
                serde_json::json!({"message_id": d.message_id, "reason": d.reason,
                "last_error": d.last_error})
            })
            .collect();
        // The sample's sendAlert: a JSON line on stderr for an operator's tooling.
        let alert = serde_json::json!({"type": "dead_letter_queue", "queue": QUEUE,
            "count": stats.dead_letter_count, "recent": recent});
        eprintln!("ALERT {alert}");
    }
    Ok(stats.dead_letter_count)
}
