//! Recovery benchmark of Synap's durable server: bytes on disk and restart time for a data
//! directory holding `--messages` (1,000,000) queued ≈140 B JSON messages, recovered from the
//! command log alone (after `kill -9`) and from the shutdown snapshot (after SIGTERM), and the
//! longest engine request while it was loaded (snapshots are built off the engine task).
//!
//! ```text
//! cargo build --release -p synap-server
//! cargo run --release -p synap-client --example recovery -- [--messages 1000000]
//! ```
//!
//! Method. It starts `target/release/synap-server --data-dir TMP --fsync interval` with
//! `snapshot_bytes` of 64 MiB (so snapshots happen while it loads), publishes the messages with
//! 4 producers in batches of 100 while a probe reads a KV key every 5 ms, then kills the server
//! with SIGKILL and times a restart until it answers `/queue/bench/stats` with the full depth;
//! then stops it with SIGTERM (a shutdown snapshot) and times one more restart. The restart
//! time includes process start and the first request.

#[allow(dead_code)]
#[path = "common/mod.rs"]
mod common;
#[allow(dead_code)]
#[path = "recovery/server.rs"]
mod server;

use std::path::Path;
use std::time::{Duration, Instant};

use common::Args;
use serde_json::{Value, json};

const USAGE: &str = "recovery [--messages N] [--snapshot-mb MB]";

fn main() {
    let args = Args::parse(USAGE);
    let messages: u64 = args.num("messages", 1_000_000);
    let snapshot_mb: u64 = args.num("snapshot-mb", 64);
    let dir = std::env::temp_dir().join(format!("synap-recovery-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = dir.join("synap.yaml");
    std::fs::write(
        &config,
        format!(
            "server: {{ snapshot_bytes: {} }}\nqueue:\n  bench: {{ max_depth: 10000000 }}\n",
            snapshot_mb << 20
        ),
    )
    .expect("config");
    let data = dir.join("data");
    let result = run(messages, snapshot_mb, &data, &config);
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(e) = result {
        eprintln!("recovery: {e}");
        std::process::exit(1);
    }
}

fn start(data: &Path, config: &Path) -> Result<(server::Server, String), String> {
    let data = data.to_str().ok_or("temp path is not UTF-8")?;
    let config = config.to_str().ok_or("temp path is not UTF-8")?;
    server::Server::start_with(&["--data-dir", data, "--config", config])
}

/// Total bytes of the data directory's files, and their names with sizes.
fn disk(dir: &Path) -> String {
    let mut files: Vec<(String, u64)> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| {
                    Some((
                        e.file_name().to_string_lossy().into_owned(),
                        e.metadata().ok()?.len(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let total: u64 = files.iter().map(|f| f.1).sum();
    let list: Vec<String> = files
        .iter()
        .filter(|f| f.1 > 0)
        .map(|(n, b)| format!("{n} {:.1} MB", *b as f64 / 1e6))
        .collect();
    format!("{:.1} MB ({})", total as f64 / 1e6, list.join(", "))
}

/// Starts the server and waits until the queue reports `depth`; the time that took.
async fn restart(
    data: &Path,
    config: &Path,
    depth: u64,
) -> Result<(server::Server, Duration), String> {
    let t = Instant::now();
    let (srv, url) = start(data, config)?;
    let http = reqwest::Client::new();
    let stats: Value = http
        .get(format!("{url}/queue/bench/stats"))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let took = t.elapsed();
    if stats["depth"] != json!(depth) {
        return Err(format!("recovered depth {} of {depth}", stats["depth"]));
    }
    Ok((srv, took))
}

fn run(messages: u64, snapshot_mb: u64, data: &Path, config: &Path) -> Result<(), String> {
    let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    rt.block_on(async {
        let (srv, url) = start(data, config)?;
        let http = reqwest::Client::new();
        let probe_stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let probe = tokio::spawn(probe_loop(http.clone(), url.clone(), probe_stop.clone()));
        let t = Instant::now();
        let mut producers = Vec::new();
        let per = messages / 4;
        for p in 0..4u64 {
            let (http, url) = (http.clone(), url.clone());
            let count = if p == 3 { messages - 3 * per } else { per };
            producers.push(tokio::spawn(async move { produce(http, url, p, count).await }));
        }
        for p in producers {
            p.await.map_err(|e| e.to_string())??;
        }
        let load = t.elapsed();
        probe_stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let (probes, worst) = probe.await.map_err(|e| e.to_string())?;
        let pid = srv.pid();
        println!(
            "loaded {messages} messages in {:.1} s ({:.0} msgs/s, fsync interval, snapshot every {snapshot_mb} MiB of log); longest of {probes} KV probes meanwhile: {:.1} ms",
            load.as_secs_f64(),
            messages as f64 / load.as_secs_f64(),
            worst.as_secs_f64() * 1e3
        );
        println!("on disk before the crash: {}", disk(data));
        drop(srv); // SIGKILL to that PID
        println!("killed pid {pid}");
        let (srv, took) = restart(data, config, messages).await?;
        println!(
            "restart after kill -9 (snapshot + log replay): {:.2} s",
            took.as_secs_f64()
        );
        terminate(srv)?;
        println!("on disk after a graceful stop: {}", disk(data));
        let (srv, took) = restart(data, config, messages).await?;
        println!("restart from the shutdown snapshot: {:.2} s", took.as_secs_f64());
        drop(srv);
        Ok(())
    })
}

/// SIGTERM by PID (a graceful stop writes the shutdown snapshot), then waits for the exit.
fn terminate(srv: server::Server) -> Result<(), String> {
    let pid = srv.pid().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("kill -TERM {pid} failed"));
    }
    let proc_dir = format!("/proc/{pid}");
    let deadline = Instant::now() + Duration::from_secs(120);
    // The guard reaps the child; wait until it has exited (a zombie has no `exe`).
    while Path::new(&format!("{proc_dir}/exe")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(srv);
    Ok(())
}

async fn produce(http: reqwest::Client, url: String, p: u64, count: u64) -> Result<(), String> {
    let pad = "x".repeat(60);
    let mut sent = 0;
    while sent < count {
        let n = (count - sent).min(100);
        let batch: Vec<Value> = (0..n)
            .map(|i| json!({"message": {"video_id": format!("v-{p}-{}", sent + i), "resolution": "1080p", "pad": pad}}))
            .collect();
        let resp = http
            .post(format!("{url}/queue/bench/publish_batch"))
            .json(&json!({ "messages": batch }))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("publish_batch: {}", resp.status()));
        }
        sent += n;
    }
    Ok(())
}

async fn probe_loop(
    http: reqwest::Client,
    url: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> (u64, Duration) {
    let (mut n, mut worst) = (0, Duration::ZERO);
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        let t = Instant::now();
        let _ = http.get(format!("{url}/kv/get/probe")).send().await;
        worst = worst.max(t.elapsed());
        n += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (n, worst)
}
