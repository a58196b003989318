//! Measures what the server's memory does under parked consumers and a queue backlog:
//! `cargo run --release -p synap-tests --example memory -- PATH/TO/synap-server [N]`.
//!
//! Starts the given binary in memory on free loopback ports, then reports its resident memory
//! (VmRSS) idle; with N parked long-polls, and after they end; with N idle queue WebSockets,
//! and after they close; with 1,000,000 queued messages (≈100-byte bodies, published in
//! batches), and after they are drained (consumed and acked in batches). Each "after" figure
//! is taken 15 s after the load ends, so an allocator that purges on a timer has run.

use std::process::{Command, Stdio};
use std::time::Duration;

use futures_util::future::join_all;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS");
    kb * 1024
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1 << 20) as f64)
}

async fn settle(pid: u32) -> u64 {
    tokio::time::sleep(Duration::from_secs(15)).await;
    rss(pid)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let bin = args.get(1).expect("usage: memory SERVER_BINARY [N]");
    let n: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(5_000);
    let mut child = tokio::process::Command::new(bin)
        .args(["--in-memory", "--bind", "127.0.0.1:0", "--no-rpc"])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("start the server");
    let pid = child.id().expect("pid");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next_line().await.unwrap().expect("server log");
        if let Some(rest) = line.split("addr=").nth(1)
            && line.contains("listening")
        {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let url = |p: &str| format!("http://{addr}{p}");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    http.post(url("/queue/q"))
        .json(&json!({"max_depth": 2_000_000}))
        .send()
        .await
        .unwrap();
    let idle = settle(pid).await;
    println!("idle: {}", mib(idle));

    // Parked long-polls, each on its own connection.
    let polls = (0..n).map(|i| {
        let http = reqwest::Client::new();
        let u = url("/queue/q/consume");
        async move {
            http.post(u)
                .json(&json!({"timeout": 40, "consumer_id": format!("c{i}")}))
                .send()
                .await
                .map(|r| r.status().as_u16())
        }
    });
    let task = tokio::spawn(join_all(polls));
    tokio::time::sleep(Duration::from_secs(20)).await;
    let parked = rss(pid);
    println!(
        "{n} parked long-polls: {} ({} per connection)",
        mib(parked),
        (parked.saturating_sub(idle)) / n as u64
    );
    let done = task.await.unwrap();
    assert!(
        done.iter().all(|r| matches!(r, Ok(200))),
        "every long-poll answered"
    );
    let after = settle(pid).await;
    println!("after they ended: {}", mib(after));

    // Idle queue WebSockets (consumers with prefetch, nothing to push).
    let mut sockets = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        let opened = join_all(chunk.iter().map(|i| {
            let u = format!("ws://{addr}/queue/q/ws?consumer_id=w{i}&prefetch=16");
            async move { tokio_tungstenite::connect_async(u).await.expect("ws").0 }
        }))
        .await;
        sockets.extend(opened);
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let ws = rss(pid);
    println!(
        "{n} idle queue WebSockets: {} ({} per connection)",
        mib(ws),
        ws.saturating_sub(after) / n as u64
    );
    drop(sockets);
    let after_ws = settle(pid).await;
    println!("after they closed: {}", mib(after_ws));

    // A backlog of 1M messages, then drained.
    let total = 1_000_000;
    let body = json!({"video_id": 123456, "user": "someone@example.com", "pad": "x".repeat(40)});
    let batch: Vec<_> = (0..1000).map(|_| json!({"message": body})).collect();
    for _ in 0..total / 1000 {
        let r = http
            .post(url("/queue/q/publish_batch"))
            .json(&json!({ "messages": batch }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{:?}", r.text().await);
    }
    let full = rss(pid);
    println!(
        "{total} queued: {} ({} per message)",
        mib(full),
        full.saturating_sub(after_ws) / total as u64
    );
    let mut drained = 0;
    while drained < total {
        let r: serde_json::Value = http
            .post(url("/queue/q/consume"))
            .json(&json!({"max_messages": 100}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let msgs = r["messages"].as_array().unwrap();
        let acks: Vec<_> = msgs
            .iter()
            .map(|m| json!({"message_id": m["message_id"], "lease": m["lease"]}))
            .collect();
        drained += acks.len();
        http.post(url("/queue/q/ack_batch"))
            .json(&json!({ "acks": acks }))
            .send()
            .await
            .unwrap();
    }
    let after_drain = settle(pid).await;
    println!("after the drain: {}", mib(after_drain));
    let _ = Command::new("kill").arg(pid.to_string()).status();
    let _ = child.wait().await;
}
