//! Goal: the sample's Rust programs (`video_producer`, `video_workers`, `dlq_monitor`,
//! `video_progress`, `sample_integration`) process the sample's workload against the real
//! server: every task ends acked exactly once or in the DLQ (the poison task among them), the
//! progress and heartbeat keys exist, and a subscriber gets one notification per `notify_user`
//! task done. Method: a server whose config gives `video-processing` two retries 50 ms apart;
//! the producer queues 4 uploads, 2 thumbnails and a poison task; one `video_workers` process
//! runs three workers with 30% injected failures and work shortened 100-fold. The test waits
//! until nothing is ready, delayed or in flight, checks the ledger against the workers'
//! `completed` lines and the DLQ, runs the monitor, progress check and integration program,
//! then stops the workers with SIGINT. Every process is killed by PID if anything fails.

use std::collections::HashSet;
use std::fs::File;
use std::process::{Command, Stdio};
use std::time::Duration;

use futures_util::StreamExt;
use synap_client::{QueueStats, SynapClient};
use synap_tests::client_harness::{ChildGuard, client_example};
use synap_tests::server_harness::{Options, Server, temp_file};

const QUEUE: &str = "video-processing";
const CONFIG: &str = "\
queues:
  video-processing:
    max_retries: 2
    retry_delays: [0.05]
";

async fn settled(c: &SynapClient) -> QueueStats {
    for _ in 0..1200 {
        let s = c.queue_stats(QUEUE).await.expect("stats");
        if s.depth == 0
            && s.in_flight == 0
            && s.acked_total + s.dead_letter_count == s.published_total
        {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("workload did not settle: {:?}", c.queue_stats(QUEUE).await);
}

fn run(name: &str, url: &str, extra: &[&str]) -> std::process::Output {
    Command::new(client_example(name))
        .args(["--url", url])
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .expect("example runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_programs_settle_with_failures_and_a_poison_task() {
    let server = Server::start_with(Options {
        config_yaml: Some(CONFIG),
        ..Options::default()
    });
    let url = server.url("");
    let c = SynapClient::connect(&url).await.unwrap();
    let mut sub = c.pubsub_subscribe(&["notifications.user.*"]).await.unwrap();

    let producer = run(
        "video_producer",
        &url,
        &["--count", "4", "--thumbnails", "2", "--poison", "1"],
    );
    assert!(producer.status.success(), "{producer:?}");
    assert_eq!(c.queue_stats(QUEUE).await.unwrap().published_total, 7);

    let log_path = temp_file("log", "");
    let mut workers = ChildGuard::spawn(
        Command::new(client_example("video_workers"))
            .args([
                "--url",
                &url,
                "--workers",
                "3",
                "--wait",
                "0.5",
                "--work-scale",
                "0.01",
            ])
            .args(["--heartbeat", "0.5", "--fail-rate", "0.3", "--seed", "7"])
            .stdin(Stdio::null())
            .stdout(File::create(&log_path).unwrap())
            .stderr(Stdio::null()),
    );
    let stats = settled(&c).await;
    let beats = c.kv_keys("worker:").await.unwrap();
    assert_eq!(
        beats.iter().filter(|k| k.ends_with(":heartbeat")).count(),
        3,
        "{beats:?}"
    );
    let dlq = c.dlq_list(QUEUE, 0, 1000).await.unwrap();
    let mut received = 0u64;
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_millis(500), sub.next()).await {
        assert!(m.topic.starts_with("notifications.user."), "{m:?}");
        received += 1;
    }

    let monitor = run("dlq_monitor", &url, &["--once", "1"]);
    assert_eq!(monitor.status.code(), Some(3), "{monitor:?}");
    let said = format!("{} tasks in dead letter queue", stats.dead_letter_count);
    assert!(String::from_utf8_lossy(&monitor.stdout).contains(&said));
    let integration = run("sample_integration", &url, &[]);
    assert!(integration.status.success(), "{integration:?}");

    workers.interrupt();
    let status = workers
        .wait_timeout(Duration::from_secs(30))
        .expect("workers stop on SIGINT");
    assert!(status.success(), "workers exited with {status}");
    let log = std::fs::read_to_string(&log_path).unwrap();
    let completed: Vec<(&str, &str)> = log
        .lines()
        .filter_map(|l| {
            l.split_once(" completed ")
                .and_then(|(_, rest)| rest.split_once(' '))
        })
        .collect();
    let ids: HashSet<&str> = completed.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids.len(), completed.len(), "a task was acked twice");
    assert_eq!(ids.len() as u64, stats.acked_total);
    let dead: HashSet<&str> = dlq.messages.iter().map(|d| d.message_id.as_str()).collect();
    assert!(
        ids.is_disjoint(&dead),
        "a task was both acked and dead-lettered"
    );
    assert_eq!(ids.len() as u64 + dead.len() as u64, stats.published_total);
    let poison: Vec<_> = dlq
        .messages
        .iter()
        .filter(|d| d.message["type"] == "corrupt_upload")
        .collect();
    assert_eq!(poison.len(), 1);
    assert!(
        poison[0]
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("Unknown task type")
    );
    assert!(
        log.contains("error: injected failure"),
        "failures were injected"
    );
    let notified = completed
        .iter()
        .filter(|(_, kind)| *kind == "notify_user")
        .count() as u64;
    assert!(notified >= 1);
    assert_eq!(received, notified);
    assert_eq!(log.matches("stopped after").count(), 3);

    let dead_transcodes: HashSet<&str> = dlq
        .messages
        .iter()
        .filter(|d| d.message["type"] == "transcode")
        .filter_map(|d| d.message["video_id"].as_str())
        .collect();
    for n in 1..=4 {
        let video = format!("vid-{n}");
        if dead_transcodes.contains(video.as_str()) {
            continue;
        }
        let p: serde_json::Value = c
            .kv_get(&format!("video:{video}:progress"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(p["progress"], 100, "{video}: {p}");
    }
    let progress = run("video_progress", &url, &["--videos", "vid-1,vid-none"]);
    assert_eq!(progress.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&progress.stdout).contains("vid-none Video not found"));
}
