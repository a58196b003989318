//! Load benchmark of Synap's server (DESIGN.md §10): how many ≈150 B JSON messages per second
//! the server moves over loopback, in memory, for each way a client can talk to it.
//!
//! ```text
//! cargo build --release -p synap-server     # `--examples` alone would not build the binary
//! cargo run --release -p synap-client --example load -- \
//!     [--messages 100000] [--producers 4] [--workers 16] [--timeout 120] [--url URL]
//! ```
//!
//! Method. Without `--url` it starts `target/release/synap-server --bind 127.0.0.1:0
//! --in-memory` (it builds nothing), reads the port from the server's log, and kills that PID at
//! the end. Each mode runs three scenarios:
//! - (A) `--producers` tasks publish `--messages` messages between them into a fresh queue;
//! - (B) `--workers` tasks drain the messages A left there (consume, ack);
//! - (C) producers and workers together on another fresh queue.
//!
//! Modes: `http` publishes one message per POST and consumes one and acks one per POST; `batch`
//! publishes 100 per `publish_batch`, consumes up to 100 and acks them with one `ack_batch`;
//! `ws` publishes over the queue WebSocket with 256 pipelined confirms per producer, and workers
//! take pushed deliveries (prefetch 64) and answer with pipelined ack frames.
//!
//! A scenario's rate is messages counted (published in A, acked in B and C) over the time from
//! its start to the last one. Each body carries its publish time (µs since the scenario began);
//! in C a worker takes publish→ack latency when the server has confirmed the ack. Every
//! scenario stops at `--timeout` seconds and then reports what it got. Client and server share
//! the machine's cores, so the figures are lower bounds of the server alone.

#[allow(dead_code)]
#[path = "common/mod.rs"]
mod common;

#[path = "load/bench.rs"]
mod bench;
#[path = "load/server.rs"]
mod server;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use bench::{Body, Kind, Mode, PAD_LEN, ScenarioRun};
use common::Args;
use synap_client::{QueueConfig, SynapClient};

const USAGE: &str =
    "load [--messages N] [--producers P] [--workers W] [--timeout SECS] [--url http://HOST:PORT]";

/// Messages, producers, workers, time limit per scenario.
type Plan = (u64, u64, usize, Duration);

fn main() {
    let args = Args::parse(USAGE);
    let plan: Plan = (
        args.num("messages", 100_000),
        args.num("producers", 4).max(1),
        args.num("workers", 16).max(1),
        args.secs("timeout", 120.0),
    );
    // The guard lives outside the runtime, so the server is killed however `bench` ends.
    let given = args.get("url", "");
    let (server, url) = if given.is_empty() {
        let started = server::Server::start().map(|(s, url)| (Some(s), url));
        started.unwrap_or_else(|e| {
            eprintln!("load: {e}");
            std::process::exit(1);
        })
    } else {
        (None, given)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build();
    let pid = server.as_ref().map(server::Server::pid);
    let result = runtime
        .map_err(Into::into)
        .and_then(|rt| rt.block_on(bench(&url, pid, plan)));
    drop(server);
    if let Err(e) = result {
        eprintln!("load: {e}");
        std::process::exit(1);
    }
}

async fn bench(url: &str, pid: Option<u32>, plan: Plan) -> Result<(), Box<dyn std::error::Error>> {
    let (messages, producers, workers, limit) = plan;
    let started = Instant::now();
    let client = SynapClient::connect(url).await?;
    let date = std::process::Command::new("date").arg("-u").output();
    let date = date.map_or(String::new(), |o| {
        String::from_utf8_lossy(&o.stdout).into_owned()
    });
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let size = serde_json::to_vec(&Body {
        t: 10_000_000,
        pad: &"x".repeat(PAD_LEN),
    })?
    .len();
    let who = pid.map_or("given".into(), |p| format!("pid {p}, started here"));
    println!("Synap load benchmark, {}; nproc {cores}", date.trim());
    println!("The client and the server share these {cores} cores (tokio multi-thread runtime).");
    println!("Server {url} ({who}), in-memory, loopback; body {size} B JSON; limit {limit:?}.");
    println!("A: publish only. B: drain the queue A filled. C: publish and consume at once.");
    println!("C publishes flat out: its latency is mostly queueing when workers fall behind.\n");

    let mut rates = [[0.0_f64; 3]; 3];
    for (m, mode) in [Mode::Http, Mode::Batch, Mode::Ws].into_iter().enumerate() {
        let name = format!("{mode:?}").to_lowercase();
        for (k, kind) in [Kind::A, Kind::B, Kind::C].into_iter().enumerate() {
            let tag = if kind == Kind::C { "c" } else { "ab" };
            let queue = format!("load-{}-{name}-{tag}", std::process::id());
            let target = if kind == Kind::B {
                client.queue_stats(&queue).await?.ready
            } else {
                let (max_depth, ack_deadline) = (Some(messages.max(100_000)), Some(300.0));
                let ack_deadline = ack_deadline.map(Duration::from_secs_f64);
                let config = QueueConfig {
                    max_depth,
                    ack_deadline,
                    ..QueueConfig::default()
                };
                client.queue_create(&queue, config).await?;
                messages
            };
            let p = if kind == Kind::B { 0 } else { producers };
            let w = if kind == Kind::A { 0 } else { workers };
            let mut out = bench::run(&client, (mode, kind, &queue), (target, p, w), limit).await;
            if kind != Kind::A {
                client.queue_delete(&queue).await?;
            }
            rates[k][m] = rate(&out);
            let label = format!("{name:<6} {kind:?}  {:>6}", format!("{p}p/{w}w"));
            println!("{}", line(&label, &mut out));
        }
    }
    println!("\nmsgs/s relative to http:");
    for (k, kind) in [Kind::A, Kind::B, Kind::C].into_iter().enumerate() {
        let ratio = |m: usize| rates[k][m] / rates[k][0];
        println!(
            "  {kind:?}  batch {:>5.1}x  ws {:>5.1}x",
            ratio(1),
            ratio(2)
        );
    }
    println!("\nrun took {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

fn rate(out: &ScenarioRun) -> f64 {
    out.done as f64 / out.elapsed.as_secs_f64().max(1e-9)
}

/// One aligned result line after its `label`.
fn line(label: &str, out: &mut ScenarioRun) -> String {
    let (done, rate) = (thousands(out.done), thousands(rate(out).round() as u64));
    let mut s = format!("{label}  {done:>9} msgs  {rate:>9} msgs/s");
    let lat = &mut out.latencies;
    if !lat.is_empty() {
        lat.sort_unstable();
        let pct = |q: f64| lat[((lat.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0;
        let _ = write!(s, "  p50 {:>7.1} ms  p99 {:>7.1} ms", pct(0.50), pct(0.99));
    }
    if out.timed_out || !out.errors.is_empty() {
        let (done, target) = (thousands(out.done), thousands(out.target));
        let _ = write!(s, "  INCOMPLETE: {done} of {target}");
    }
    if out.timed_out {
        let _ = write!(s, ", timed out at {:.1} s", out.elapsed.as_secs_f64());
    }
    if let Some(first) = out.errors.first() {
        let _ = write!(s, ", {} errors, first: {first}", out.errors.len());
    }
    s
}

/// `1234567` → `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && i % 3 == digits.len() % 3 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
