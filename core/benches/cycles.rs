//! Engine throughput: publish + consume + ack cycles per second on one thread, and the
//! engine's memory per queued message. Run with `cargo bench -p synap-core --bench cycles`.
//!
//! Four shapes over 1,000,000 messages each: one message at a time (publish, consume, ack),
//! the same with one progress report before each ack, batches of 100 (batch publish, consume
//! 100, 100 acks), and a queue filled to 1,000,000 messages, each with its own body, then
//! drained. Observability events are on (as in the server) unless the line says otherwise.
//! Then, in a fresh process, the memory of 1,000,000 completed jobs kept for lookup, each with
//! its own body and a small result (`keep_completed` raised to 1,000,000 for a day). Last, in
//! a fresh process too, message groups (DESIGN §12) on a queue with `group_concurrency: 1` and
//! `fair_groups`: one message at a time over 1,000 groups, and a fill to 1,000,000 messages
//! over 10,000 groups drained in batches of 100, with the memory per queued grouped message.

// The benchmark is a host: it reads the wall clock to time the engine, which itself reads none.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::hint::black_box;
use std::time::Instant;

use serde_json::json;
use synap_core::{
    Command, Engine, EngineConfig, JobState, Json, Keep, Limits, Millis, PublishMessage,
    QueueConfig, Reply, json_message,
};

const MESSAGES: u64 = 1_000_000;
const QUEUE: &str = "bench";

fn engine(observe: bool) -> Engine {
    let config = EngineConfig {
        observe,
        ..EngineConfig::default()
    };
    let mut e = Engine::new(config, 1);
    let queue = QueueConfig {
        max_depth: MESSAGES,
        ..QueueConfig::default()
    };
    e.handle(
        Millis(0),
        Command::CreateQueue {
            queue: QUEUE.into(),
            config: Some(Box::new(queue)),
        },
    )
    .expect("queue");
    e
}

/// The message every publish carries. Parsing JSON is the host's work, so the engine is
/// handed an already-parsed body (sharing its text, as the server does).
fn body() -> PublishMessage {
    thread_local! {
        static BODY: PublishMessage = distinct_body(23_456);
    }
    BODY.with(Clone::clone)
}

fn drain(e: &mut Engine) -> usize {
    let mut n = 0;
    while let Some(ev) = e.poll_event() {
        black_box(ev);
        n += 1;
    }
    n
}

fn consume(e: &mut Engine, now: Millis, max: u32) -> Vec<synap_core::Delivery> {
    let cmd = Command::Consume {
        queue: QUEUE.into(),
        wait_ms: 0,
        lease_ms: None,
        max_messages: max,
        consumer_id: None,
    };
    match e.handle(now, cmd) {
        Ok(Reply::Messages { messages }) => messages,
        other => panic!("consume answered {other:?}"),
    }
}

/// The progress every report carries, parsed once (as `body()`).
fn progress_json() -> Json {
    thread_local! {
        static PROGRESS: Json = Json::from_value(&json!({"pct": 50, "frames": 1234}));
    }
    PROGRESS.with(Clone::clone)
}

fn ack_all(e: &mut Engine, now: Millis, got: Vec<synap_core::Delivery>) {
    for d in got {
        let cmd = Command::Ack {
            queue: QUEUE.into(),
            message_id: d.message_id,
            lease: Some(d.lease),
            result: None,
        };
        e.handle(now, cmd).expect("ack");
    }
}

/// One message at a time; with `progress`, each cycle also reports progress once before
/// the ack.
fn one_at_a_time(observe: bool, progress: bool) -> f64 {
    let mut e = engine(observe);
    let start = Instant::now();
    for i in 0..MESSAGES {
        let now = Millis(1 + i / 1_000);
        e.handle(
            now,
            Command::Publish {
                queue: QUEUE.into(),
                message: body(),
            },
        )
        .expect("publish");
        let got = consume(&mut e, now, 1);
        if progress {
            for d in &got {
                let cmd = Command::Progress {
                    queue: QUEUE.into(),
                    message_id: d.message_id,
                    lease: Some(d.lease),
                    progress: progress_json(),
                    extend_ms: None,
                };
                e.handle(now, cmd).expect("progress");
            }
        }
        ack_all(&mut e, now, got);
        drain(&mut e);
    }
    MESSAGES as f64 / start.elapsed().as_secs_f64()
}

fn batches_of_100(observe: bool) -> f64 {
    let mut e = engine(observe);
    let start = Instant::now();
    for i in 0..MESSAGES / 100 {
        let now = Millis(1 + i / 10);
        let messages = (0..100).map(|_| body()).collect();
        e.handle(
            now,
            Command::PublishBatch {
                queue: QUEUE.into(),
                messages,
            },
        )
        .expect("batch");
        let got = consume(&mut e, now, 100);
        ack_all(&mut e, now, got);
        drain(&mut e);
    }
    MESSAGES as f64 / start.elapsed().as_secs_f64()
}

/// A message with a body of its own (`body()` shares one), as a queue filled by real
/// producers holds: always the same length, with a video id made from `n`.
fn distinct_body(n: u64) -> PublishMessage {
    let id = 100_000 + n % 900_000;
    json_message(json!({
        "video_id": id, "user_id": 42, "kind": "transcode",
        "resolution": "1080p", "source": format!("s3://uploads/raw/{id}.mp4")
    }))
}

/// What the fill-then-drain run measured.
struct Filled {
    publish_rate: f64,
    drain_rate: f64,
    /// Bytes per message the engine counts (`Engine::message_footprint`).
    footprint: f64,
    /// Resident bytes per message.
    resident: f64,
    /// Payload bytes per message (body and headers, `Engine::held_bytes`).
    payload: f64,
}

/// Fills the queue to `MESSAGES` messages, each with its own body, measures memory, then
/// drains it.
fn fill_then_drain() -> Filled {
    let rss_before = resident_bytes();
    let mut e = engine(false);
    let mut publishing = std::time::Duration::ZERO;
    for b in 0..MESSAGES / 100 {
        let messages = (0..100).map(|i| distinct_body(b * 100 + i)).collect();
        let start = Instant::now();
        e.handle(
            Millis(1),
            Command::PublishBatch {
                queue: QUEUE.into(),
                messages,
            },
        )
        .expect("batch");
        publishing += start.elapsed();
    }
    let n = MESSAGES as f64;
    let footprint = e.message_footprint() as f64 / n;
    let resident = resident_bytes().saturating_sub(rss_before) as f64 / n;
    let payload = e.held_bytes() as f64 / n;
    let start = Instant::now();
    for _ in 0..MESSAGES / 100 {
        let got = consume(&mut e, Millis(2), 100);
        ack_all(&mut e, Millis(2), got);
    }
    Filled {
        publish_rate: n / publishing.as_secs_f64(),
        drain_rate: n / start.elapsed().as_secs_f64(),
        footprint,
        resident,
        payload,
    }
}

/// What the kept-jobs run measured, per kept job.
struct KeptJobs {
    /// Resident bytes.
    resident: f64,
    /// Bytes the engine counts against `max_kept_bytes` (body, headers, result, progress).
    counted: f64,
}

/// Publishes, consumes and acks `MESSAGES` jobs in batches of 100, each with its own body and
/// a small result, on a queue that keeps them all; measures memory with them kept.
fn keep_completed() -> KeptJobs {
    let rss_before = resident_bytes();
    let config = EngineConfig {
        observe: false,
        limits: Limits {
            max_kept_jobs: MESSAGES,
            max_kept_bytes: 4 << 30,
            ..Limits::default()
        },
        ..EngineConfig::default()
    };
    let mut e = Engine::new(config, 1);
    let queue = QueueConfig {
        keep_completed: Keep {
            count: MESSAGES,
            age_ms: 24 * 3_600_000,
        },
        ..QueueConfig::default()
    };
    e.handle(
        Millis(0),
        Command::CreateQueue {
            queue: QUEUE.into(),
            config: Some(Box::new(queue)),
        },
    )
    .expect("queue");
    let mut first = None;
    for b in 0..MESSAGES / 100 {
        let now = Millis(1 + b);
        let messages = (0..100).map(|i| distinct_body(b * 100 + i)).collect();
        e.handle(
            now,
            Command::PublishBatch {
                queue: QUEUE.into(),
                messages,
            },
        )
        .expect("batch");
        for (i, d) in consume(&mut e, now, 100).into_iter().enumerate() {
            first.get_or_insert(d.message_id);
            let frames = 1_000 + (b * 100 + i as u64) % 9_000;
            let cmd = Command::Ack {
                queue: QUEUE.into(),
                message_id: d.message_id,
                lease: Some(d.lease),
                result: Some(Json::from_value(&json!({"ok": true, "frames": frames}))),
            };
            e.handle(now, cmd).expect("ack");
        }
    }
    let n = MESSAGES as f64;
    // The first job is still kept: nothing was forgotten.
    let first = first.expect("a job was acked");
    match e.handle(
        Millis(1 + MESSAGES / 100),
        Command::GetJob {
            queue: QUEUE.into(),
            message_id: first,
        },
    ) {
        Ok(Reply::Job(job)) => assert_eq!(job.state, JobState::Completed),
        other => panic!("get job answered {other:?}"),
    }
    let resident = resident_bytes().saturating_sub(rss_before) as f64 / n;
    KeptJobs {
        resident,
        counted: e.kept_bytes() as f64 / n,
    }
}

/// Resident set size from /proc (Linux); 0 elsewhere.
fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn main() {
    if std::env::args().any(|a| a == KEPT_JOBS) {
        print_kept_jobs();
        return;
    }
    if std::env::args().any(|a| a == GROUPS) {
        print_groups();
        return;
    }
    println!(
        "synap-core engine benchmark: {MESSAGES} messages, 1 thread, JSON body of {} bytes",
        body().message.map_or(0, |m| m.len())
    );
    println!("cycle = publish + consume + ack");
    println!(
        "one at a time, events on : {:>10.0} cycles/s",
        one_at_a_time(true, false)
    );
    println!(
        "one at a time, events off: {:>10.0} cycles/s",
        one_at_a_time(false, false)
    );
    println!(
        "one at a time + 1 progress, events on : {:>10.0} cycles/s",
        one_at_a_time(true, true)
    );
    println!(
        "one at a time + 1 progress, events off: {:>10.0} cycles/s",
        one_at_a_time(false, true)
    );
    println!(
        "batches of 100, events on : {:>10.0} cycles/s",
        batches_of_100(true)
    );
    println!(
        "batches of 100, events off: {:>10.0} cycles/s",
        batches_of_100(false)
    );
    let f = fill_then_drain();
    println!(
        "fill to 1M: {:>10.0} publishes/s; drain: {:>10.0} consume+ack/s",
        f.publish_rate, f.drain_rate
    );
    println!(
        "memory per queued message: {:.0} B counted by the engine, {:.0} B resident; \
         payload {:.0} B, so {:.0} B resident beyond it",
        f.footprint,
        f.resident,
        f.payload,
        f.resident - f.payload
    );
    // In a fresh process of its own: this one's heap holds the memory the fill freed, which
    // kept jobs would reuse, and their resident figure would come out too low.
    for part in [KEPT_JOBS, GROUPS] {
        let status = std::process::Command::new(std::env::current_exe().expect("own path"))
            .arg(part)
            .status()
            .expect("run the measurement");
        assert!(status.success(), "{part} measurement: {status}");
    }
}

/// The argument that makes the benchmark measure message groups only.
const GROUPS: &str = "groups";

/// An engine with the bench queue holding one delivery per group, groups taking turns.
fn grouped_engine(observe: bool) -> Engine {
    let config = EngineConfig {
        observe,
        ..EngineConfig::default()
    };
    let mut e = Engine::new(config, 1);
    let queue = QueueConfig {
        max_depth: MESSAGES,
        group_concurrency: Some(1),
        fair_groups: true,
        ..QueueConfig::default()
    };
    let create = Command::CreateQueue {
        queue: QUEUE.into(),
        config: Some(Box::new(queue)),
    };
    e.handle(Millis(0), create).expect("queue");
    e
}

/// Group names as a host reads them from requests: one `String` per publish.
fn group_names(groups: u64) -> Vec<String> {
    (0..groups).map(|g| format!("user-{g:05}")).collect()
}

/// One message at a time, each in the next of `groups` groups: publish, consume, ack.
fn grouped_one_at_a_time(groups: u64) -> f64 {
    let names = group_names(groups);
    let mut e = grouped_engine(true);
    let start = Instant::now();
    for i in 0..MESSAGES {
        let now = Millis(1 + i / 1_000);
        let message = PublishMessage {
            group: Some(names[(i % groups) as usize].clone()),
            ..body()
        };
        let publish = Command::Publish {
            queue: QUEUE.into(),
            message,
        };
        e.handle(now, publish).expect("publish");
        let got = consume(&mut e, now, 1);
        assert_eq!(got.len(), 1, "the group is free");
        ack_all(&mut e, now, got);
        drain(&mut e);
    }
    MESSAGES as f64 / start.elapsed().as_secs_f64()
}

/// Fills the queue to `MESSAGES` messages spread over `groups` groups, each with its own
/// body, measures memory, then drains it in batches of 100 (one delivery per group at a
/// time, so each batch takes from 100 groups).
fn grouped_fill_then_drain(groups: u64) -> Filled {
    let names = group_names(groups);
    let rss_before = resident_bytes();
    let mut e = grouped_engine(false);
    let mut publishing = std::time::Duration::ZERO;
    for b in 0..MESSAGES / 100 {
        let messages = (0..100)
            .map(|i| {
                let n = b * 100 + i;
                PublishMessage {
                    group: Some(names[(n % groups) as usize].clone()),
                    ..distinct_body(n)
                }
            })
            .collect();
        let start = Instant::now();
        let batch = Command::PublishBatch {
            queue: QUEUE.into(),
            messages,
        };
        e.handle(Millis(1), batch).expect("batch");
        publishing += start.elapsed();
    }
    let n = MESSAGES as f64;
    let footprint = e.message_footprint() as f64 / n;
    let resident = resident_bytes().saturating_sub(rss_before) as f64 / n;
    let payload = e.held_bytes() as f64 / n;
    let start = Instant::now();
    let mut left = MESSAGES;
    while left > 0 {
        let got = consume(&mut e, Millis(2), 100);
        assert!(!got.is_empty(), "a group is free");
        left -= got.len() as u64;
        ack_all(&mut e, Millis(2), got);
    }
    Filled {
        publish_rate: n / publishing.as_secs_f64(),
        drain_rate: n / start.elapsed().as_secs_f64(),
        footprint,
        resident,
        payload,
    }
}

fn print_groups() {
    println!(
        "groups, one at a time over 1,000 groups, events on: {:>10.0} cycles/s",
        grouped_one_at_a_time(1_000)
    );
    let f = grouped_fill_then_drain(10_000);
    println!(
        "groups, fill to 1M over 10,000 groups: {:>10.0} publishes/s; drain: {:>10.0} \
         consume+ack/s",
        f.publish_rate, f.drain_rate
    );
    println!(
        "memory per queued grouped message: {:.0} B counted by the engine, {:.0} B resident; \
         payload {:.0} B, so {:.0} B resident beyond it",
        f.footprint,
        f.resident,
        f.payload,
        f.resident - f.payload
    );
}

/// The argument that makes the benchmark measure kept jobs only.
const KEPT_JOBS: &str = "kept-jobs";

fn print_kept_jobs() {
    let k = keep_completed();
    println!(
        "memory per kept completed job (1M kept, result {{\"ok\":true,\"frames\":N}}): \
         {:.0} B resident; {:.0} B counted against max_kept_bytes, so {:.0} B resident beyond it",
        k.resident,
        k.counted,
        k.resident - k.counted
    );
}
