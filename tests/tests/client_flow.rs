//! Goal: `synap-client` drives flow control (DESIGN.md §12) against the real server: the queue
//! settings `max_in_flight`, `group_concurrency`, `ordered_groups`, `fair_groups`,
//! `rate_limit`, `group_rate_limit` and `max_snoozes`; `queue_pause` / `queue_resume`;
//! `queue_rate_limit`; snoozes on `queue_nack_with` and on a stream's `nack`; `queue_groups`;
//! and the stats fields `paused`, `rate_limited_until_ms`, `groups` and `held_back`.
//! Method: each test starts its own in-memory `synap-server` on a free 127.0.0.1 port and uses
//! the client's public API only. A consumer held back by a limit long-polls in a task; the test
//! waits until the server counts it as waiting, makes room (ack, resume, the limit's end) and
//! checks that the waiting consumer gets the message. Every wait has a generous upper bound
//! and nothing asserts on elapsed time.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use synap_client::{
    ConsumeOptions, NackAction, NackOptions, PublishOptions, QueueConfig, QueueMessage, QueueStats,
    QueueStream, Rate, StreamOptions, SynapClient,
};
use synap_tests::server_harness::Server;
use tokio::task::JoinHandle;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Task {
    n: u64,
}

async fn client(server: &Server) -> SynapClient {
    SynapClient::connect(&server.url(""))
        .await
        .expect("connect")
}

fn grouped(group: &str) -> PublishOptions {
    PublishOptions {
        group: Some(group.into()),
        ..PublishOptions::default()
    }
}

async fn publish(c: &SynapClient, queue: &str, n: u64, group: Option<&str>) -> String {
    let opts = group.map_or_else(PublishOptions::default, grouped);
    c.queue_publish(queue, &Task { n }, opts)
        .await
        .expect("publish")
        .message_id
}

fn ns(msgs: &[QueueMessage<Task>]) -> Vec<u64> {
    msgs.iter().map(|m| m.body.n).collect()
}

/// Takes up to ten messages at once, without waiting.
async fn take(c: &SynapClient, queue: &str) -> Vec<QueueMessage<Task>> {
    c.queue_consume_batch(queue, 10, None)
        .await
        .expect("consume")
}

/// A long-poll consume in the background; its answer is awaited later.
fn long_poll(c: &SynapClient, queue: &str) -> JoinHandle<Vec<QueueMessage<Task>>> {
    let (c, queue) = (c.clone(), queue.to_owned());
    tokio::spawn(async move {
        let opts = ConsumeOptions {
            timeout: Some(Duration::from_secs(20)),
            ..ConsumeOptions::default()
        };
        c.queue_consume_batch(&queue, 10, Some(opts))
            .await
            .expect("long-poll consume")
    })
}

/// Polls the stats until `ok` holds (at most 20 s), and answers them.
async fn until(
    c: &SynapClient,
    queue: &str,
    what: &str,
    ok: impl Fn(&QueueStats) -> bool,
) -> QueueStats {
    for _ in 0..800 {
        let stats = c.queue_stats(queue).await.expect("stats");
        if ok(&stats) {
            return stats;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{queue}: never saw {what}");
}

/// The stream's next push (at most 20 s away).
async fn next(s: &mut QueueStream<Task>) -> QueueMessage<Task> {
    tokio::time::timeout(Duration::from_secs(20), s.next())
        .await
        .expect("a push within 20 s")
        .expect("the stream is open")
        .expect("a delivery")
}

/// Waits until the queue has a parked consumer, so what follows happens while it waits.
async fn until_waiting(c: &SynapClient, queue: &str) {
    until(c, queue, "a parked consumer", |s| s.waiters == 1).await;
}

#[tokio::test]
async fn flow_settings_are_taken_and_answered_in_the_stats() {
    let server = Server::start();
    let c = client(&server).await;
    let config = QueueConfig {
        max_in_flight: Some(4),
        group_concurrency: Some(1),
        ordered_groups: Some(true),
        fair_groups: Some(true),
        rate_limit: Some(Rate {
            max: 100,
            per_secs: 1.5,
        }),
        group_rate_limit: Some(Rate {
            max: 2,
            per_secs: 60.0,
        }),
        max_snoozes: Some(7),
        ..QueueConfig::default()
    };
    c.queue_create("flow", config.clone()).await.unwrap();
    let stats = c.queue_stats("flow").await.unwrap();
    let got = &stats.config;
    assert_eq!(
        (got.max_in_flight, got.group_concurrency),
        (Some(4), Some(1))
    );
    assert_eq!(
        (got.ordered_groups, got.fair_groups),
        (Some(true), Some(true))
    );
    assert_eq!(got.rate_limit, config.rate_limit);
    assert_eq!(got.group_rate_limit, config.group_rate_limit);
    assert_eq!(got.max_snoozes, Some(7));
    assert!(!stats.paused);
    assert_eq!(stats.rate_limited_until_ms, None);
    assert_eq!((stats.groups, stats.held_back), (0, 0));

    // Settings the engine refuses come back as invalid_argument, and change nothing.
    let refused = [
        QueueConfig {
            max_in_flight: Some(0),
            ..QueueConfig::default()
        },
        QueueConfig {
            ordered_groups: Some(true),
            group_concurrency: Some(2),
            ..QueueConfig::default()
        },
        QueueConfig {
            rate_limit: Some(Rate {
                max: 0,
                per_secs: 1.0,
            }),
            ..QueueConfig::default()
        },
    ];
    for bad in refused {
        let e = c.queue_create("flow", bad.clone()).await.unwrap_err();
        assert!(e.is_invalid_argument(), "{bad:?}: {e}");
    }
    let after = c.queue_stats("flow").await.unwrap().config;
    assert_eq!(after.max_in_flight, Some(4));
}

#[tokio::test]
async fn a_paused_queue_holds_its_messages_until_resumed() {
    let server = Server::start();
    let c = client(&server).await;
    let e = c.queue_pause("p").await.unwrap_err();
    assert!(e.is_not_found(), "pausing does not create a queue: {e}");
    c.queue_create("p", QueueConfig::default()).await.unwrap();
    assert!(c.queue_pause("p").await.unwrap());
    assert!(
        c.queue_pause("p").await.unwrap(),
        "pausing twice is harmless"
    );
    publish(&c, "p", 1, None).await;
    assert!(
        take(&c, "p").await.is_empty(),
        "a paused queue delivers nothing"
    );
    let stats = c.queue_stats("p").await.unwrap();
    assert!(stats.paused);
    assert_eq!((stats.ready, stats.held_back), (1, 1));

    let waiting = long_poll(&c, "p");
    until_waiting(&c, "p").await;
    assert!(!c.queue_resume("p").await.unwrap());
    assert_eq!(
        ns(&waiting.await.unwrap()),
        vec![1],
        "resume serves the waiter"
    );
    let stats = c.queue_stats("p").await.unwrap();
    assert!(!stats.paused);
    assert_eq!((stats.in_flight, stats.held_back), (1, 0));
}

#[tokio::test]
async fn max_in_flight_holds_back_until_an_ack() {
    let server = Server::start();
    let c = client(&server).await;
    let config = QueueConfig {
        max_in_flight: Some(2),
        ..QueueConfig::default()
    };
    c.queue_create("m", config).await.unwrap();
    for n in 1..=3 {
        publish(&c, "m", n, None).await;
    }
    let got = take(&c, "m").await;
    assert_eq!(ns(&got), vec![1, 2], "two at most in flight");
    let stats = c.queue_stats("m").await.unwrap();
    assert_eq!((stats.in_flight, stats.held_back), (2, 1));

    let waiting = long_poll(&c, "m");
    until_waiting(&c, "m").await;
    c.queue_ack_with_lease("m", &got[0].id, got[0].lease)
        .await
        .unwrap();
    assert_eq!(ns(&waiting.await.unwrap()), vec![3], "the ack made room");
}

#[tokio::test]
async fn group_concurrency_takes_one_per_group_and_groups_are_listed() {
    let server = Server::start();
    let c = client(&server).await;
    let config = QueueConfig {
        group_concurrency: Some(1),
        ..QueueConfig::default()
    };
    c.queue_create("g", config).await.unwrap();
    for n in 1..=3 {
        publish(&c, "g", n, Some("tenant-a")).await;
    }
    publish(&c, "g", 4, Some("tenant-b")).await;
    publish(&c, "g", 5, None).await;
    let got = take(&c, "g").await;
    assert_eq!(ns(&got), vec![1, 4, 5], "one per group; no group, no limit");
    let groups: Vec<Option<&str>> = got.iter().map(|m| m.group.as_deref()).collect();
    assert_eq!(groups, [Some("tenant-a"), Some("tenant-b"), None]);
    let stats = c.queue_stats("g").await.unwrap();
    assert_eq!((stats.groups, stats.held_back), (2, 2));

    let listed = c.queue_groups("g", 10).await.unwrap();
    let rows: Vec<(&str, u64, u64, u64)> = listed
        .iter()
        .map(|g| (g.group.as_str(), g.ready, g.in_flight, g.delayed))
        .collect();
    assert_eq!(rows, [("tenant-a", 2, 1, 0), ("tenant-b", 0, 1, 0)]);
    let first = c.queue_groups("g", 1).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].group, "tenant-a", "largest first");
    let e = c.queue_groups("g", 0).await.unwrap_err();
    assert!(e.is_invalid_argument(), "{e}");
    let e = c.queue_groups("nope", 10).await.unwrap_err();
    assert!(e.is_not_found(), "{e}");

    // An ack frees tenant-a for a consumer already waiting.
    let waiting = long_poll(&c, "g");
    until_waiting(&c, "g").await;
    c.queue_ack_with_lease("g", &got[0].id, got[0].lease)
        .await
        .unwrap();
    let next = waiting.await.unwrap();
    assert_eq!(ns(&next), vec![2]);
    assert_eq!(next[0].group.as_deref(), Some("tenant-a"));
}

#[tokio::test]
async fn fair_groups_take_turns_and_ordered_groups_keep_their_head() {
    let server = Server::start();
    let c = client(&server).await;
    // Without fair_groups: publish order. With it: round robin across groups.
    for (queue, fair) in [("plain", None), ("fair", Some(true))] {
        let config = QueueConfig {
            fair_groups: fair,
            ..QueueConfig::default()
        };
        c.queue_create(queue, config).await.unwrap();
        for n in 1..=3 {
            publish(&c, queue, n, Some("burst")).await;
        }
        publish(&c, queue, 4, Some("other")).await;
    }
    assert_eq!(ns(&take(&c, "plain").await), vec![1, 2, 3, 4]);
    assert_eq!(ns(&take(&c, "fair").await), vec![1, 4, 2, 3]);

    let config = QueueConfig {
        ordered_groups: Some(true),
        ..QueueConfig::default()
    };
    c.queue_create("ordered", config).await.unwrap();
    for n in 1..=2 {
        publish(&c, "ordered", n, Some("video-1")).await;
    }
    let got = take(&c, "ordered").await;
    assert_eq!(ns(&got), vec![1], "one at a time");
    let retry = NackOptions {
        lease: got[0].lease,
        delay: Some(Duration::ZERO),
        ..NackOptions::default()
    };
    let action = c.queue_nack_with("ordered", &got[0].id, &retry).await;
    assert_eq!(action.unwrap(), NackAction::Requeued);
    let again = take(&c, "ordered").await;
    assert_eq!(
        ns(&again),
        vec![1],
        "a retried message keeps its group's head"
    );
    assert_eq!(again[0].retry_count, 1);
}

#[tokio::test]
async fn rate_limits_hold_deliveries_until_their_window_ends() {
    let server = Server::start();
    let c = client(&server).await;
    // The queue's own rate: one delivery per half second.
    let config = QueueConfig {
        rate_limit: Some(Rate {
            max: 1,
            per_secs: 0.5,
        }),
        ..QueueConfig::default()
    };
    c.queue_create("rate", config).await.unwrap();
    publish(&c, "rate", 1, None).await;
    publish(&c, "rate", 2, None).await;
    assert_eq!(ns(&take(&c, "rate").await), vec![1]);
    let stats = c.queue_stats("rate").await.unwrap();
    // The window may have closed already on a slow machine; while it holds, stats say so.
    if stats.held_back == 1 {
        assert!(stats.rate_limited_until_ms.is_some(), "{stats:?}");
    }
    let next = long_poll(&c, "rate").await.unwrap();
    assert_eq!(
        ns(&next),
        vec![2],
        "the window's end serves the waiting consumer"
    );

    // Per group: a 60 s window of one holds the group's second message, not the others.
    let config = QueueConfig {
        group_rate_limit: Some(Rate {
            max: 1,
            per_secs: 60.0,
        }),
        ..QueueConfig::default()
    };
    c.queue_create("per-group", config).await.unwrap();
    publish(&c, "per-group", 1, Some("a")).await;
    publish(&c, "per-group", 2, Some("a")).await;
    publish(&c, "per-group", 3, Some("b")).await;
    assert_eq!(ns(&take(&c, "per-group").await), vec![1, 3]);
    assert_eq!(c.queue_stats("per-group").await.unwrap().held_back, 1);
}

#[tokio::test]
async fn a_worker_rate_limit_holds_the_queue_until_it_ends() {
    let server = Server::start();
    let c = client(&server).await;
    publish(&c, "r", 1, None).await;
    let until_ms = c
        .queue_rate_limit("r", Duration::from_millis(500))
        .await
        .unwrap();
    assert!(until_ms > 0);
    let stats = c.queue_stats("r").await.unwrap();
    // The limit may have ended already on a slow machine; while it holds, stats say so.
    if stats.held_back == 1 {
        assert_eq!(stats.rate_limited_until_ms, Some(until_ms));
    }
    let got = long_poll(&c, "r").await.unwrap();
    assert_eq!(
        ns(&got),
        vec![1],
        "the limit's end serves the waiting consumer"
    );

    let e = c.queue_rate_limit("r", Duration::ZERO).await.unwrap_err();
    assert!(e.is_invalid_argument(), "{e}");
    let e = c
        .queue_rate_limit("nope", Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(e.is_not_found(), "{e}");
}

#[tokio::test]
async fn a_snooze_spends_no_attempt_and_is_bounded_by_max_snoozes() {
    let server = Server::start();
    let c = client(&server).await;
    let config = QueueConfig {
        max_retries: Some(0),
        max_snoozes: Some(1),
        ..QueueConfig::default()
    };
    c.queue_create("s", config).await.unwrap();
    publish(&c, "s", 1, None).await;
    let wait = Some(ConsumeOptions {
        timeout: Some(Duration::from_secs(20)),
        ..ConsumeOptions::default()
    });
    let snooze = |m: &QueueMessage<Task>| NackOptions {
        lease: m.lease,
        ..NackOptions::snooze(Duration::from_millis(50))
    };

    let m = c.queue_consume::<Task>("s", wait.clone()).await.unwrap();
    let m = m.expect("a message");
    let action = c.queue_nack_with("s", &m.id, &snooze(&m)).await.unwrap();
    assert_eq!(action, NackAction::Snoozed);
    let m = c.queue_consume::<Task>("s", wait.clone()).await.unwrap();
    let m = m.expect("the snoozed message back");
    assert_eq!(m.retry_count, 0, "the snooze spent no attempt");
    let action = c.queue_nack_with("s", &m.id, &snooze(&m)).await.unwrap();
    assert_eq!(
        action,
        NackAction::DeadLettered,
        "one snooze past max_snoozes"
    );
    let dlq = c.dlq_list("s", 0, 10).await.unwrap();
    assert_eq!(dlq.messages[0].reason, "snoozed_out");

    publish(&c, "s", 2, None).await;
    let m = take(&c, "s").await.remove(0);
    let refused = NackOptions {
        requeue: false,
        ..snooze(&m)
    };
    let e = c.queue_nack_with("s", &m.id, &refused).await.unwrap_err();
    assert!(e.is_invalid_argument(), "a snooze cannot dead-letter: {e}");
}

#[tokio::test]
async fn a_stream_consumer_snoozes_and_is_pushed_within_max_in_flight() {
    let server = Server::start();
    let c = client(&server).await;
    let config = QueueConfig {
        max_in_flight: Some(1),
        ..QueueConfig::default()
    };
    c.queue_create("w", config).await.unwrap();
    publish(&c, "w", 1, Some("g")).await;
    publish(&c, "w", 2, Some("g")).await;
    let opts = StreamOptions {
        prefetch: Some(10),
        ..StreamOptions::default()
    };
    let mut stream = c.queue_stream::<Task>("w", opts).await.unwrap();
    let first = next(&mut stream).await;
    assert_eq!((first.body.n, first.group.as_deref()), (1, Some("g")));
    let stats = c.queue_stats("w").await.unwrap();
    assert_eq!(
        (stats.in_flight, stats.held_back),
        (1, 1),
        "one pushed, one held"
    );

    let snooze = NackOptions {
        lease: first.lease,
        ..NackOptions::snooze(Duration::ZERO)
    };
    let action = stream.nack(&first.id, &snooze).await.unwrap();
    assert_eq!(action, NackAction::Snoozed);
    // The snooze freed the one in-flight place: a message is pushed, still at its first attempt.
    let pushed = next(&mut stream).await;
    assert_eq!(pushed.retry_count, 0);
    stream.ack(&pushed.id, pushed.lease).await.unwrap();
    let last = next(&mut stream).await;
    assert_eq!(last.retry_count, 0);
    assert_ne!(last.id, pushed.id);
    stream.ack(&last.id, last.lease).await.unwrap();
    let stats = until(&c, "w", "both acked", |s| s.acked_total == 2).await;
    assert_eq!((stats.depth, stats.in_flight), (0, 0));
}
