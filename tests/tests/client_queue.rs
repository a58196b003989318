//! Goal: `synap-client` drives every queue operation of DESIGN.md §3 against the real server.
//! Method: each test starts its own in-memory `synap-server` on a free 127.0.0.1 port, uses the
//! client's public API only, and checks replies and `stats`. Short leases and retry delays keep
//! it fast; every wait has a generous upper bound and nothing asserts on elapsed time.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use synap_client::{
    ConsumeOptions, NackAction, NackOptions, PublishOptions, QueueConfig, SynapClient,
};
use synap_tests::server_harness::Server;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Task {
    video_id: String,
    kind: String,
}

fn task(id: &str) -> Task {
    Task {
        video_id: id.into(),
        kind: "transcode".into(),
    }
}

/// Long enough for any redelivery in these tests, short enough to fail fast if it never comes.
fn wait(secs: u64) -> Option<ConsumeOptions> {
    Some(ConsumeOptions {
        timeout: Some(Duration::from_secs(secs)),
        ..ConsumeOptions::default()
    })
}

/// A lease short enough to run out during a test.
fn short_lease() -> Option<ConsumeOptions> {
    Some(ConsumeOptions {
        ack_deadline: Some(Duration::from_millis(300)),
        ..ConsumeOptions::default()
    })
}

async fn client(server: &Server) -> SynapClient {
    SynapClient::connect(&server.url(""))
        .await
        .expect("connect")
}

/// The sample of DESIGN.md: publish, consume, ack, and the queue is empty.
#[tokio::test]
async fn publish_consume_ack_leaves_an_empty_queue() {
    let server = Server::start();
    let c = client(&server).await;
    let r = c
        .queue_publish("video-processing", &task("v1"), PublishOptions::priority(9))
        .await
        .unwrap();
    assert_eq!(r.position, Some(1));

    let opts = ConsumeOptions {
        timeout: Some(Duration::from_secs(5)),
        ack_deadline: Some(Duration::from_secs(300)),
        consumer_id: Some("worker-1".into()),
    };
    let msg = c
        .queue_consume::<Task>("video-processing", Some(opts))
        .await
        .unwrap()
        .expect("a message");
    assert_eq!(msg.id, r.message_id);
    assert_eq!(msg.body, task("v1"));
    assert_eq!((msg.priority, msg.retry_count), (9, 0));
    assert!(msg.lease.is_some());
    assert!(msg.published_at > 0);

    let stats = c.queue_stats("video-processing").await.unwrap();
    assert_eq!((stats.depth, stats.in_flight, stats.consumers), (0, 1, 1));
    c.queue_ack_with_lease("video-processing", &msg.id, msg.lease)
        .await
        .unwrap();

    let stats = c.queue_stats("video-processing").await.unwrap();
    assert_eq!(stats.queue, "video-processing");
    assert_eq!((stats.depth, stats.in_flight), (0, 0));
    assert_eq!((stats.published_total, stats.acked_total), (1, 1));
    assert!(
        c.queue_list()
            .await
            .unwrap()
            .contains(&"video-processing".to_owned())
    );
}

#[tokio::test]
async fn higher_priorities_are_delivered_first_fifo_within_one() {
    let server = Server::start();
    let c = client(&server).await;
    for (id, p) in [("a", 5), ("b", 9), ("c", 7), ("d", 5), ("e", 9)] {
        c.queue_publish("q", &task(id), PublishOptions::priority(p))
            .await
            .unwrap();
    }
    let batch = c.queue_consume_batch::<Task>("q", 10, None).await.unwrap();
    let order: Vec<&str> = batch.iter().map(|m| m.body.video_id.as_str()).collect();
    assert_eq!(order, ["b", "e", "c", "a", "d"]);

    let bad = c
        .queue_publish("q", &task("x"), PublishOptions::priority(10))
        .await
        .unwrap_err();
    assert!(bad.is_invalid_argument(), "{bad}");
    assert_eq!(bad.status(), Some(400));
}

#[tokio::test]
async fn nack_retries_then_dead_letters_and_redrive_resets_attempts() {
    let server = Server::start();
    let c = client(&server).await;
    let config = QueueConfig {
        max_retries: Some(1),
        retry_delays: vec![Duration::from_millis(50)],
        ..QueueConfig::default()
    };
    c.queue_create("jobs", config).await.unwrap();
    let id = c
        .queue_publish("jobs", &task("v"), PublishOptions::default())
        .await
        .unwrap()
        .message_id;

    let first = c
        .queue_consume::<Task>("jobs", None)
        .await
        .unwrap()
        .unwrap();
    let action = c
        .queue_nack_with("jobs", &id, &NackOptions::retry_with_error("codec crashed"))
        .await
        .unwrap();
    assert_eq!((first.retry_count, action), (0, NackAction::Delayed));

    let second = c
        .queue_consume::<Task>("jobs", wait(10))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((second.id.as_str(), second.retry_count), (id.as_str(), 1));
    let action = c
        .queue_nack_with(
            "jobs",
            &id,
            &NackOptions::retry_with_error("codec crashed again"),
        )
        .await
        .unwrap();
    assert_eq!(action, NackAction::DeadLettered);

    let stats = c.queue_stats("jobs").await.unwrap();
    assert_eq!(
        (stats.depth, stats.in_flight, stats.dead_letter_count),
        (0, 0, 1)
    );
    let page = c.dlq_list("jobs", 0, 10).await.unwrap();
    assert_eq!(page.total, 1);
    let dead = &page.messages[0];
    assert_eq!((dead.message_id.as_str(), dead.attempts), (id.as_str(), 2));
    assert_eq!(dead.reason, "max_retries_exceeded");
    assert_eq!(dead.last_error.as_deref(), Some("codec crashed again"));
    assert_eq!(dead.message["video_id"], "v");

    assert_eq!(c.dlq_retry("jobs", None).await.unwrap(), 1);
    let again = c
        .queue_consume::<Task>("jobs", wait(5))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((again.id.as_str(), again.retry_count), (id.as_str(), 0));
    // `requeue: false` dead-letters at once, whatever retries are left.
    let action = c.queue_nack("jobs", &id, false).await.unwrap();
    assert_eq!(action, NackAction::DeadLettered);
    let page = c.dlq_list("jobs", 0, 10).await.unwrap();
    assert_eq!(page.messages[0].reason, "rejected");
    assert_eq!(c.dlq_purge("jobs").await.unwrap(), 1);
    assert_eq!(c.queue_stats("jobs").await.unwrap().dead_letter_count, 0);
}

#[tokio::test]
async fn extend_keeps_a_lease_past_its_deadline() {
    let server = Server::start();
    let c = client(&server).await;
    c.queue_publish("q", &task("long"), PublishOptions::default())
        .await
        .unwrap();
    let held = c
        .queue_consume::<Task>("q", short_lease())
        .await
        .unwrap()
        .unwrap();
    c.queue_extend("q", &held.id, Duration::from_secs(30), held.lease)
        .await
        .unwrap();
    // Well past the original 300 ms lease: extended, so nothing is redelivered.
    tokio::time::sleep(Duration::from_millis(900)).await;
    let none = c.queue_consume::<Task>("q", None).await.unwrap();
    assert!(none.is_none(), "an extended lease must not expire");
    assert_eq!(c.queue_stats("q").await.unwrap().lease_expired_total, 0);
    c.queue_ack_with_lease("q", &held.id, held.lease)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_late_answer_after_redelivery_is_a_lease_mismatch() {
    let server = Server::start();
    let c = client(&server).await;
    // Let a lease run out; the redelivery carries a new lease, and the old one is refused.
    c.queue_publish("q", &task("lost"), PublishOptions::default())
        .await
        .unwrap();
    let first = c
        .queue_consume::<Task>("q", short_lease())
        .await
        .unwrap()
        .unwrap();
    let second = c
        .queue_consume::<Task>("q", wait(10))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (second.id.as_str(), second.retry_count),
        (first.id.as_str(), 1)
    );
    assert_ne!(first.lease, second.lease);
    let late = c
        .queue_ack_with_lease("q", &first.id, first.lease)
        .await
        .unwrap_err();
    assert!(late.is_lease_mismatch(), "{late}");
    assert_eq!(
        (late.status(), late.code()),
        (Some(409), Some("lease_mismatch"))
    );
    let stale = c
        .queue_extend("q", &first.id, Duration::from_secs(5), first.lease)
        .await
        .unwrap_err();
    assert!(stale.is_lease_mismatch(), "{stale}");
    c.queue_ack_with_lease("q", &second.id, second.lease)
        .await
        .unwrap();

    // Acked means gone: a second ack finds no such message.
    let gone = c.queue_ack("q", &second.id).await.unwrap_err();
    assert!(gone.is_not_found(), "{gone}");
    let stats = c.queue_stats("q").await.unwrap();
    assert_eq!((stats.acked_total, stats.lease_expired_total), (1, 1));
}

#[tokio::test]
async fn batches_purge_delete_and_missing_queues() {
    let server = Server::start();
    let c = client(&server).await;
    let items: Vec<(Task, PublishOptions)> = (0..5)
        .map(|i| (task(&format!("b{i}")), PublishOptions::default()))
        .collect();
    let published = c.queue_publish_batch("batch", &items).await.unwrap();
    let positions: Vec<Option<u64>> = published.iter().map(|p| p.position).collect();
    assert_eq!(positions, [1, 2, 3, 4, 5].map(Some));

    let got = c
        .queue_consume_batch::<Task>("batch", 10, None)
        .await
        .unwrap();
    assert_eq!(got.len(), 5);
    let mut acks: Vec<(&str, Option<u64>)> = got.iter().map(|m| (m.id.as_str(), m.lease)).collect();
    acks[4].1 = acks[4].1.map(|l| l + 1000);
    let r = c.queue_ack_batch("batch", &acks).await.unwrap();
    assert_eq!(r.acked, 4);
    assert_eq!(r.failed.len(), 1);
    assert_eq!(
        (r.failed[0].message_id.as_str(), r.failed[0].code.as_str()),
        (acks[4].0, "lease_mismatch")
    );

    let delayed = PublishOptions {
        delay: Some(Duration::from_secs(60)),
        ..PublishOptions::default()
    };
    let r = c
        .queue_publish("batch", &task("later"), delayed)
        .await
        .unwrap();
    assert_eq!(r.position, None, "a delayed message has no position");
    c.queue_publish("batch", &task("now"), PublishOptions::default())
        .await
        .unwrap();
    let stats = c.queue_stats("batch").await.unwrap();
    assert_eq!(
        (stats.depth, stats.ready, stats.delayed, stats.in_flight),
        (2, 1, 1, 1)
    );
    assert_eq!(c.queue_purge("batch").await.unwrap(), 2);
    assert_eq!(c.queue_stats("batch").await.unwrap().depth, 0);

    assert!(c.queue_delete("batch").await.unwrap());
    assert!(!c.queue_delete("batch").await.unwrap());
    let missing = c.queue_stats("batch").await.unwrap_err();
    assert!(missing.is_not_found(), "{missing}");
    assert_eq!(missing.code(), Some("queue_not_found"));
}

#[tokio::test]
async fn api_keys_are_required_when_configured() {
    let server = Server::start_with(synap_tests::server_harness::Options {
        api_key: Some("s3cret"),
        ..Default::default()
    });
    // `connect` only touches the public /health, so it succeeds without a key.
    let anonymous = client(&server).await;
    let refused = anonymous.queue_list().await.unwrap_err();
    assert!(refused.is_unauthorized(), "{refused}");
    let wrong = anonymous
        .clone()
        .with_api_key("nope")
        .queue_list()
        .await
        .unwrap_err();
    assert!(wrong.is_unauthorized(), "{wrong}");

    let c = SynapClient::connect_with_key(&server.url(""), "s3cret")
        .await
        .unwrap();
    c.queue_publish("private", &task("p"), PublishOptions::default())
        .await
        .unwrap();
    assert_eq!(c.queue_list().await.unwrap(), ["private"]);
    // WebSockets authenticate with the same header.
    let sub = c.pubsub_subscribe(&["a.*"]).await.unwrap();
    assert!(sub.subscriber_id().is_some());
    let refused = anonymous.pubsub_subscribe(&["a.*"]).await.unwrap_err();
    assert!(refused.is_unauthorized(), "{refused}");
}
