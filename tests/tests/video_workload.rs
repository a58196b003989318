//! Goal: the reference video workload, run with the real example binaries, ends with every task
//! acked or dead-lettered despite injected failures, and its workers shut down gracefully.
//! Method: a server whose config file gives `video-processing` retry delays of fractions of a
//! second; `video_producer` queues 200 transcodes; three `video_worker` processes (fixed seeds)
//! nack 15% of tasks with an error and "crash" on 5% (they walk away from the lease, which
//! expires after 0.5 s). The test polls stats until nothing is ready, delayed or in flight, then
//! checks the ledger (acked + dead-lettered = published), the DLQ, KV and notifications, and
//! sends SIGINT to each worker. All processes are killed by PID if anything fails.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use synap_client::{QueueStats, SynapClient};
use synap_tests::client_harness::{ChildGuard, client_example};
use synap_tests::server_harness::{Options, Server};

const QUEUE: &str = "video-processing";

/// One retry, so a task dead-letters after two failed deliveries: with 20% failing per
/// delivery, a few of the ~400 tasks reach the DLQ while most succeed.
const CONFIG: &str = "\
queues:
  video-processing:
    max_retries: 1
    ack_deadline: 0.5
    retry_delays: [0.05, 0.1]
";

fn start_server() -> Server {
    Server::start_with(Options {
        config_yaml: Some(CONFIG),
        ..Options::default()
    })
}

fn worker(url: &str, id: &str, seed: u64, extra: &[&str]) -> ChildGuard {
    let mut cmd = Command::new(client_example("video_worker"));
    cmd.args(["--url", url, "--id", id, "--seed", &seed.to_string()])
        .args(["--wait", "1", "--ack-deadline", "0.5", "--heartbeat", "0.5"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    ChildGuard::spawn(&mut cmd)
}

/// Polls until `done` holds for the queue's stats, for at most `limit`.
async fn wait_for(
    c: &SynapClient,
    limit: Duration,
    done: impl Fn(&QueueStats) -> bool,
) -> QueueStats {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let stats = c.queue_stats(QUEUE).await.expect("stats");
        if done(&stats) {
            return stats;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "workload did not settle: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends SIGINT and requires a clean exit within a generous bound.
async fn interrupt(mut w: ChildGuard, who: &str) {
    w.interrupt();
    for _ in 0..300 {
        if let Some(status) = w.wait_timeout(Duration::ZERO) {
            assert!(status.success(), "{who} exited with {status}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{who} did not exit within 15 s of SIGINT");
}

fn settled(s: &QueueStats) -> bool {
    s.depth == 0 && s.in_flight == 0 && s.acked_total + s.dead_letter_count == s.published_total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_finish_200_tasks_despite_failures() {
    let server = start_server();
    let url = server.url("");
    let c = SynapClient::connect(&url).await.unwrap();

    let (notified, listener) = count_notifications(&c).await;

    let producer = Command::new(client_example("video_producer"))
        .args(["--url", &url, "--count", "200", "--thumbnails", "0"])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(producer.success());
    assert_eq!(c.queue_stats(QUEUE).await.unwrap().published_total, 200);

    let faults = [
        "--work-ms",
        "20",
        "--fail-rate",
        "0.15",
        "--crash-rate",
        "0.05",
    ];
    let workers: Vec<ChildGuard> = (1..=3u64)
        .map(|n| worker(&url, &format!("w{n}"), n * 7919, &faults))
        .collect();
    let stats = wait_for(&c, Duration::from_secs(120), settled).await;
    assert!(
        c.kv_exists("worker:w1:heartbeat").await.unwrap(),
        "w1 heartbeats while running"
    );

    // Every transcode that succeeded queued one thumbnail, so more than 200 were published.
    assert!(stats.published_total > 200, "{stats:?}");
    assert!(
        stats.nacked_total > 0 && stats.lease_expired_total > 0,
        "{stats:?}"
    );
    assert!(
        stats.dead_letter_count > 0,
        "no task reached the DLQ: {stats:?}"
    );
    assert_eq!(stats.dead_lettered_total, stats.dead_letter_count);
    check_dlq(&c, &stats).await;

    for (n, w) in workers.into_iter().enumerate() {
        interrupt(w, &format!("w{}", n + 1)).await;
    }
    for n in 1..=3 {
        let key = format!("worker:w{n}:heartbeat");
        assert!(!c.kv_exists(&key).await.unwrap(), "{key} left behind");
    }
    check_kv(&c).await;
    // Each ack was preceded by its notification; give the last ones time to arrive.
    for _ in 0..100 {
        if notified.load(Ordering::Relaxed) >= stats.acked_total {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(notified.load(Ordering::Relaxed) >= stats.acked_total);
    listener.abort();
}

/// Counts `notifications.user.*` messages in the background while the workload runs.
async fn count_notifications(c: &SynapClient) -> (Arc<AtomicU64>, tokio::task::JoinHandle<()>) {
    let mut sub = c.pubsub_subscribe(&["notifications.user.*"]).await.unwrap();
    let notified = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&notified);
    let listener = tokio::spawn(async move {
        while let Some(Ok(m)) = sub.next().await {
            let video = m.message["videoId"].as_str().unwrap_or_default();
            assert!(video.starts_with("vid-"), "odd notification {m:?}");
            counter.fetch_add(1, Ordering::Relaxed);
        }
    });
    (notified, listener)
}

/// Each DLQ entry failed on both allowed deliveries and keeps its last error.
async fn check_dlq(c: &SynapClient, stats: &QueueStats) {
    let dlq = c.dlq_list(QUEUE, 0, 1000).await.unwrap();
    assert_eq!(dlq.total, stats.dead_letter_count);
    for dead in &dlq.messages {
        assert_eq!(
            (dead.reason.as_str(), dead.attempts),
            ("max_retries_exceeded", 2)
        );
        assert!(
            dead.last_error.is_some(),
            "a dead letter keeps its last error: {dead:?}"
        );
    }
}

/// Every video has a status with a TTL, and each one that is `ready` has its thumbnail key.
async fn check_kv(c: &SynapClient) {
    let mut ready = 0;
    for n in 1..=200 {
        let status: serde_json::Value = c
            .kv_get(&format!("video:vid-{n}:status"))
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("vid-{n} has no status"));
        if status == "ready" {
            ready += 1;
            let thumb: Option<String> =
                c.kv_get(&format!("video:vid-{n}:thumbnail")).await.unwrap();
            assert_eq!(thumb, Some(format!("thumbnails/vid-{n}.jpg")));
        }
    }
    assert!(ready > 100, "only {ready} of 200 videos are ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_mid_task_hands_the_task_back() {
    let server = start_server();
    let url = server.url("");
    let c = SynapClient::connect(&url).await.unwrap();
    let producer = Command::new(client_example("video_producer"))
        .args(["--url", &url, "--count", "1", "--thumbnails", "0"])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(producer.success());
    // A long task and a long lease: only the worker's own nack can free the task quickly.
    let w = worker(
        &url,
        "slow",
        1,
        &["--work-ms", "20000", "--ack-deadline", "300"],
    );
    wait_for(&c, Duration::from_secs(30), |s| s.in_flight == 1).await;
    interrupt(w, "slow").await;
    let stats = wait_for(&c, Duration::from_secs(10), |s| s.in_flight == 0).await;
    assert_eq!(
        (stats.nacked_total, stats.acked_total, stats.depth),
        (1, 0, 1)
    );
    let status: serde_json::Value = c.kv_get("video:vid-1:status").await.unwrap().unwrap();
    assert_eq!(status["state"], "processing", "{status}");
}
