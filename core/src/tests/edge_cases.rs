//! Edge cases of DESIGN.md §2–§4: depth limits under retries, config changes on a live queue,
//! extreme clocks, exact float round trips, unlogged reads, limits on every input, batches and
//! waiters, lease caps and same-instant timers.

use serde_json::json;

use super::Rig;
use crate::{
    Backoff, Command, Engine, EngineConfig, Event, Headers, Json, Millis, PublishMessage,
    QueueConfig, Reply, json_message,
};

fn park(r: &mut Rig, queue: &str, max: u32, consumer: Option<&str>) -> crate::WaiterId {
    match r.ok(Command::Consume {
        queue: queue.into(),
        wait_ms: 10_000,
        lease_ms: None,
        max_messages: max,
        consumer_id: consumer.map(str::to_owned),
    }) {
        Reply::Waiting { waiter_id } => waiter_id,
        other => panic!("unexpected reply {other:?}"),
    }
}

fn restore(e: &Engine) -> Engine {
    serde_json::from_str(&serde_json::to_string(e).unwrap()).unwrap()
}

// A message coming back from flight is never refused: a retry may take the queue past
// max_depth, while new publishes are refused until it drains.
#[test]
fn a_retry_may_exceed_max_depth_but_a_publish_may_not() {
    let mut r = Rig::new();
    r.create(
        "q",
        QueueConfig {
            max_depth: 1,
            ..QueueConfig::default()
        },
    );
    r.publish("q", 1, 5);
    let d = r.consume_one("q");
    r.publish("q", 2, 5); // depth 1 = max_depth, one in flight
    r.nack("q", &d, true);
    assert_eq!(r.stats("q").depth, 2, "the retried message was not refused");
    let err = r.publish_with("q", json_message(json!(3))).unwrap_err();
    assert_eq!(err.code(), "queue_full");
}

// The same when the retry comes from a lease expiring (a timer, no command).
#[test]
fn a_retry_after_lease_expiry_may_exceed_max_depth() {
    let mut r = Rig::new();
    r.create(
        "q",
        QueueConfig {
            max_depth: 1,
            ..QueueConfig::default()
        },
    );
    r.publish("q", 1, 5);
    r.consume_as("q", 1, Some(100), None);
    r.publish("q", 2, 5);
    r.advance(100);
    let s = r.stats("q");
    assert_eq!((s.depth, s.lease_expired_total), (2, 1));
}

// Lowering dlq_max trims the DLQ at once, oldest first, counting the drops.
#[test]
fn configure_lower_dlq_max_trims_the_dlq() {
    let mut r = Rig::new();
    r.create("q", QueueConfig::default());
    for n in 0..3 {
        r.publish("q", n, 5);
        let d = r.consume_one("q");
        r.nack("q", &d, false);
    }
    r.ok(Command::ConfigureQueue {
        queue: "q".into(),
        config: Box::new(QueueConfig {
            dlq_max: 1,
            ..QueueConfig::default()
        }),
    });
    let s = r.stats("q");
    assert_eq!((s.dead_letter_count, s.dlq_dropped_total), (1, 2));
}

// Raising prefetch lets a waiter that the old limit held back take ready messages at once.
#[test]
fn configure_raising_prefetch_serves_parked_waiters() {
    let mut r = Rig::new();
    r.create(
        "q",
        QueueConfig {
            prefetch: 1,
            ..QueueConfig::default()
        },
    );
    r.publish("q", 1, 5);
    r.publish("q", 2, 5);
    assert_eq!(r.consume_as("q", 1, None, Some("w")).len(), 1);
    let w = park(&mut r, "q", 1, Some("w"));
    r.events();
    r.ok(Command::ConfigureQueue {
        queue: "q".into(),
        config: Box::new(QueueConfig {
            prefetch: 0,
            ..QueueConfig::default()
        }),
    });
    let ev = r.events();
    assert!(
        matches!(&ev[..], [Event::Delivered { waiter_id, .. }] if *waiter_id == w),
        "waiter still parked with a ready message: {ev:?}"
    );
}

// A clock jumping to the far future does not overflow the wait-time statistic.
#[test]
fn huge_now_does_not_overflow_wait_stats() {
    let mut r = Rig::new();
    r.publish("q", 1, 5);
    r.publish("q", 2, 5);
    r.now = u64::MAX - 1;
    r.consume("q", 1);
    r.consume("q", 1); // panics: attempt to add with overflow
}

// JSON floats in bodies survive a snapshot round trip bit for bit.
#[test]
fn float_bodies_survive_a_snapshot() {
    let mut r = Rig::new();
    r.publish_with("q", json_message(json!({"p": 0.985_690_694_632_869_5})))
        .unwrap();
    let before = r.engine.state_digest();
    let mut restored = Rig {
        engine: restore(&r.engine),
        now: r.now,
    };
    assert_eq!(
        restored.engine.state_digest(),
        before,
        "digest changed on restore"
    );
    let d = restored.consume_one("q");
    assert_eq!(d.message.unwrap().as_str(), r#"{"p":0.9856906946328695}"#);
}

// Backoff floats survive a snapshot round trip, so jitter stays the same after a restore.
#[test]
fn backoff_floats_survive_a_snapshot() {
    let mut r = Rig::new();
    r.create(
        "q",
        QueueConfig {
            backoff: Some(Backoff {
                initial_ms: 1_000,
                multiplier: 1.0,
                max_ms: 1_000_000,
                jitter: 0.212_918_907_267_134_58,
            }),
            ..QueueConfig::default()
        },
    );
    let restored = restore(&r.engine);
    assert_eq!(restored.state_digest(), r.engine.state_digest());
}

// Reads need not be logged, so they must not change the state a replay rebuilds.
#[test]
fn reads_do_not_change_state() {
    let mut r = Rig::new();
    r.ok(Command::KvSet {
        key: "k".into(),
        value: Json::from_value(&json!(1)),
        ttl_ms: None,
    });
    let before = r.engine.state_digest();
    let get = Command::KvGet { key: "k".into() };
    assert!(!get.is_mutation());
    r.ok(get);
    assert_eq!(r.engine.state_digest(), before, "a read changed the state");
}

// Pub/sub headers have the same count and size limits as queue headers.
#[test]
fn pubsub_headers_are_limited() {
    let mut r = Rig::new();
    let mut headers = Headers::new();
    for i in 0..1_000 {
        headers.insert(format!("h{i}"), "x".repeat(100));
    }
    let err = r.cmd(Command::PubsubPublish {
        topic: "t".into(),
        message: Json::from_value(&json!(1)),
        headers,
    });
    assert_eq!(err.unwrap_err().code(), "limit_exceeded");
}

// A redrive by ids takes at most max_batch ids.
#[test]
fn dlq_retry_id_list_is_limited() {
    let mut r = Rig::new();
    r.create("q", QueueConfig::default());
    let ids = vec![uuid::Uuid::nil(); r.engine.config().limits.max_batch + 1];
    let err = r.cmd(Command::DlqRetry {
        queue: "q".into(),
        message_ids: Some(ids),
    });
    assert_eq!(err.unwrap_err().code(), "limit_exceeded");
}

// A refused publish leaves no trace: it does not auto-create the queue.
#[test]
fn rejected_publish_creates_no_queue() {
    let mut r = Rig::new();
    let bad = PublishMessage {
        priority: Some(10),
        ..json_message(json!(1))
    };
    assert!(r.publish_with("new-q", bad).is_err());
    let Reply::Queues { queues } = r.ok(Command::ListQueues) else {
        panic!()
    };
    assert!(
        queues.is_empty(),
        "queue created by a rejected publish: {queues:?}"
    );
}

// A batch is served to waiters after its last message, so they get it in priority order.
#[test]
fn batch_publish_serves_waiters_in_priority_order() {
    let mut r = Rig::new();
    r.create("q", QueueConfig::default());
    park(&mut r, "q", 10, None);
    let m = |p| PublishMessage {
        priority: Some(p),
        ..json_message(json!(p))
    };
    r.ok(Command::PublishBatch {
        queue: "q".into(),
        messages: vec![m(1), m(9)],
    });
    let ev = r.events();
    let Some(Event::Delivered { messages, .. }) = ev.first() else {
        panic!("{ev:?}")
    };
    let prios: Vec<u8> = messages.iter().map(|d| d.priority).collect();
    assert_eq!(prios, vec![9, 1]);
}

// Leases longer than 12 h are capped (consume and extend), not refused.
#[test]
fn lease_longer_than_twelve_hours_is_capped() {
    let mut r = Rig::new();
    r.publish("q", 1, 5);
    let got = r.consume_as("q", 1, Some(crate::MAX_LEASE_MS + 1), None);
    assert_eq!(got[0].lease_deadline, Millis(r.now + crate::MAX_LEASE_MS));
}

// A message whose delay ends at the instant its TTL ends is expired, never delivered.
#[test]
fn a_message_is_not_delivered_at_its_expiry_instant() {
    let mut r = Rig::new();
    r.create("q", QueueConfig::default());
    park(&mut r, "q", 1, None);
    r.publish_with(
        "q",
        PublishMessage {
            delay_ms: Some(100),
            ttl_ms: Some(100),
            ..json_message(json!(1))
        },
    )
    .unwrap();
    r.events();
    r.advance(100);
    let ev = r.events();
    assert!(
        !ev.iter()
            .any(|e| matches!(e, Event::Delivered { messages, .. } if !messages.is_empty())),
        "expired message delivered: {ev:?}"
    );
}

// A key given twice in one mset counts once against the key limit.
#[test]
fn mset_with_a_repeated_key_counts_it_once() {
    let mut config = EngineConfig::default();
    config.limits.max_kv_keys = 1;
    let mut r = Rig::with(config);
    let e = |v| crate::KvEntry {
        key: "k".into(),
        value: Json::from_value(&json!(v)),
        ttl_ms: None,
    };
    r.ok(Command::KvMset {
        entries: vec![e(1), e(2)],
    });
}
