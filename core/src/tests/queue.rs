//! Queue rules: order, position, batch, delay, TTL, depth limits, purge, delete, stats,
//! long-poll waiters and prefetch.

use serde_json::json;

use super::{Rig, n_of};
use crate::{
    Command, EngineConfig, Error, Event, PublishMessage, QueueConfig, Reply, json_message,
};

#[test]
fn higher_priority_first_then_publish_order() {
    let mut r = Rig::new();
    r.publish("q", 1, 5);
    r.publish("q", 2, 9);
    r.publish("q", 3, 5);
    r.publish("q", 4, 0);
    r.publish("q", 5, 9);
    let order: Vec<u64> = r.consume("q", 10).iter().map(n_of).collect();
    assert_eq!(order, vec![2, 5, 1, 3, 4]);
}

#[test]
fn position_is_place_in_delivery_order() {
    let mut r = Rig::new();
    let pos = |reply: Reply| match reply {
        Reply::Published(p) => p.position,
        other => panic!("{other:?}"),
    };
    let m = |p: u8| PublishMessage {
        priority: Some(p),
        ..json_message(json!(1))
    };
    assert_eq!(pos(r.publish_with("q", m(5)).unwrap()), Some(1));
    assert_eq!(pos(r.publish_with("q", m(5)).unwrap()), Some(2));
    assert_eq!(pos(r.publish_with("q", m(9)).unwrap()), Some(1));
    assert_eq!(pos(r.publish_with("q", m(0)).unwrap()), Some(4));
    let delayed = PublishMessage {
        delay_ms: Some(50),
        ..m(9)
    };
    assert_eq!(pos(r.publish_with("q", delayed).unwrap()), None);
}

#[test]
fn priority_out_of_range_is_invalid() {
    let mut r = Rig::new();
    let m = PublishMessage {
        priority: Some(10),
        ..json_message(json!(1))
    };
    let err = r.publish_with("q", m).unwrap_err();
    assert_eq!(err.code(), "invalid_argument");
}

#[test]
fn a_message_needs_exactly_one_body() {
    let mut r = Rig::new();
    let err = r.publish_with("q", PublishMessage::default()).unwrap_err();
    assert_eq!(err.code(), "invalid_argument");
    let both = PublishMessage {
        payload: Some(vec![1u8].into()),
        ..json_message(json!(1))
    };
    assert_eq!(
        r.publish_with("q", both).unwrap_err().code(),
        "invalid_argument"
    );
}

#[test]
fn payload_over_the_limit_is_too_large() {
    let mut config = EngineConfig::default();
    config.limits.max_payload_bytes = 16;
    let mut r = Rig::with(config);
    let m = json_message(json!("a string that is longer than sixteen bytes"));
    assert_eq!(
        r.publish_with("q", m).unwrap_err().code(),
        "payload_too_large"
    );
}

#[test]
fn auto_create_can_be_turned_off() {
    let config = EngineConfig {
        auto_create_queues: false,
        ..EngineConfig::default()
    };
    let mut r = Rig::with(config);
    let err = r.publish_with("q", json_message(json!(1))).unwrap_err();
    assert_eq!(err, Error::QueueNotFound { queue: "q".into() });
    r.create("q", QueueConfig::default());
    assert!(r.publish_with("q", json_message(json!(1))).is_ok());
}

#[test]
fn invalid_queue_names_are_refused() {
    let mut r = Rig::new();
    for bad in ["", "has space", "slash/y", &"x".repeat(256)] {
        let err = r.publish_with(bad, json_message(json!(1))).unwrap_err();
        assert_eq!(err.code(), "invalid_argument", "{bad:?}");
    }
}

#[test]
fn max_depth_gives_queue_full_and_batches_are_atomic() {
    let mut r = Rig::new();
    r.create(
        "q",
        QueueConfig {
            max_depth: 3,
            ..QueueConfig::default()
        },
    );
    r.publish("q", 1, 5);
    r.publish("q", 2, 5);
    let batch = Command::PublishBatch {
        queue: "q".into(),
        messages: vec![json_message(json!(3)), json_message(json!(4))],
    };
    assert_eq!(r.cmd(batch).unwrap_err().code(), "queue_full");
    assert_eq!(r.stats("q").depth, 2, "a refused batch adds nothing");
    r.publish("q", 3, 5);
    let err = r.publish_with("q", json_message(json!(4))).unwrap_err();
    assert_eq!(err.code(), "queue_full");
    r.consume_one("q");
    assert_eq!(
        r.stats("q").depth,
        2,
        "in-flight messages do not count toward depth"
    );
    r.publish("q", 4, 5);
}

#[test]
fn batch_publish_returns_one_result_per_message_in_order() {
    let mut r = Rig::new();
    let reply = r.ok(Command::PublishBatch {
        queue: "q".into(),
        messages: (0..5).map(|n| json_message(json!({ "n": n }))).collect(),
    });
    let Reply::PublishedBatch { messages } = reply else {
        panic!("{reply:?}")
    };
    let positions: Vec<_> = messages.iter().map(|p| p.position).collect();
    assert_eq!(positions, (1..=5).map(Some).collect::<Vec<_>>());
    let order: Vec<u64> = r.consume("q", 10).iter().map(n_of).collect();
    assert_eq!(order, vec![0, 1, 2, 3, 4]);
}

#[test]
fn delayed_message_becomes_ready_after_its_delay() {
    let mut r = Rig::new();
    let m = PublishMessage {
        delay_ms: Some(500),
        ..json_message(json!({ "n": 1 }))
    };
    r.publish_with("q", m).unwrap();
    assert_eq!(r.stats("q").delayed, 1);
    assert!(r.consume("q", 1).is_empty());
    r.advance(499);
    assert!(r.consume("q", 1).is_empty());
    r.advance(1);
    assert_eq!(r.consume("q", 1).len(), 1);
}

#[test]
fn ttl_dead_letters_a_waiting_message_with_reason_expired() {
    let mut r = Rig::new();
    let m = PublishMessage {
        ttl_ms: Some(100),
        ..json_message(json!({ "n": 1 }))
    };
    r.publish_with("q", m).unwrap();
    r.advance(100);
    let s = r.stats("q");
    assert_eq!((s.depth, s.expired_total, s.dead_letter_count), (0, 1, 1));
    let Reply::DeadLetters { messages, .. } = r.ok(Command::DlqList {
        queue: "q".into(),
        offset: 0,
        limit: 10,
    }) else {
        panic!()
    };
    assert_eq!(messages[0].reason, crate::DeadLetterReason::Expired);
}

#[test]
fn ttl_expiring_in_flight_dead_letters_when_the_lease_ends() {
    let mut r = Rig::new();
    let m = PublishMessage {
        ttl_ms: Some(100),
        ..json_message(json!({ "n": 1 }))
    };
    r.publish_with("q", m).unwrap();
    let d = r.consume_one("q");
    r.advance(150);
    let s = r.stats("q");
    assert_eq!(
        (s.in_flight, s.expired_total, s.dead_letter_count),
        (1, 1, 0)
    );
    assert_eq!(
        r.nack("q", &d, true),
        Reply::Nacked {
            action: crate::NackAction::DeadLettered
        }
    );
    assert_eq!(r.stats("q").dead_letter_count, 1);

    // An expired in-flight message that is acked in time is simply done.
    let m = PublishMessage {
        ttl_ms: Some(100),
        ..json_message(json!({ "n": 2 }))
    };
    r.publish_with("q", m).unwrap();
    let d = r.consume_one("q");
    r.advance(150);
    assert_eq!(r.ack("q", &d), Ok(Reply::Acked));
}

#[test]
fn purge_removes_ready_and_delayed_but_not_in_flight() {
    let mut r = Rig::new();
    r.publish("q", 1, 5);
    r.publish("q", 2, 5);
    let delayed = PublishMessage {
        delay_ms: Some(1_000),
        ..json_message(json!({ "n": 3 }))
    };
    r.publish_with("q", delayed).unwrap();
    let d = r.consume_one("q");
    assert_eq!(
        r.ok(Command::Purge { queue: "q".into() }),
        Reply::Purged { purged: 2 }
    );
    let s = r.stats("q");
    assert_eq!((s.depth, s.in_flight), (0, 1));
    assert_eq!(r.ack("q", &d), Ok(Reply::Acked));
    r.advance(2_000);
    assert_eq!(
        r.stats("q").depth,
        0,
        "a purged delayed message never comes back"
    );
}

#[test]
fn delete_removes_the_queue_and_times_out_its_waiters() {
    let mut r = Rig::new();
    r.publish("q", 1, 5);
    r.consume_one("q");
    let Reply::Waiting { waiter_id } = r.ok(Command::Consume {
        queue: "q".into(),
        wait_ms: 1_000,
        lease_ms: None,
        max_messages: 1,
        consumer_id: None,
    }) else {
        panic!()
    };
    r.events();
    assert_eq!(
        r.ok(Command::DeleteQueue { queue: "q".into() }),
        Reply::QueueDeleted { deleted: true }
    );
    assert_eq!(r.events(), vec![Event::WaitTimedOut { waiter_id }]);
    assert_eq!(
        r.engine.timer_count(),
        0,
        "no timer of the deleted queue is left"
    );
    assert_eq!(
        r.ok(Command::DeleteQueue { queue: "q".into() }),
        Reply::QueueDeleted { deleted: false }
    );
    assert_eq!(
        r.cmd(Command::Stats { queue: "q".into() })
            .unwrap_err()
            .code(),
        "queue_not_found"
    );
}

#[test]
fn waiter_times_out_at_its_deadline() {
    let mut r = Rig::new();
    r.create("q", QueueConfig::default());
    let Reply::Waiting { waiter_id } = r.ok(Command::Consume {
        queue: "q".into(),
        wait_ms: 300,
        lease_ms: None,
        max_messages: 1,
        consumer_id: None,
    }) else {
        panic!()
    };
    assert_eq!(r.engine.poll_timeout().map(|t| t.0), Some(r.now + 300));
    r.advance(299);
    assert!(r.events().is_empty());
    r.advance(1);
    assert_eq!(r.events(), vec![Event::WaitTimedOut { waiter_id }]);
    assert_eq!(r.stats("q").waiters, 0);
}

#[test]
fn waiters_are_served_first_come_first_served() {
    let mut r = Rig::new();
    r.create("q", QueueConfig::default());
    let park = |r: &mut Rig| match r.ok(Command::Consume {
        queue: "q".into(),
        wait_ms: 10_000,
        lease_ms: None,
        max_messages: 1,
        consumer_id: None,
    }) {
        Reply::Waiting { waiter_id } => waiter_id,
        other => panic!("{other:?}"),
    };
    let first = park(&mut r);
    let second = park(&mut r);
    r.publish("q", 1, 5);
    let events = r.events();
    assert!(
        matches!(&events[..], [Event::Delivered { waiter_id, messages }]
        if *waiter_id == first && messages.len() == 1)
    );
    r.publish("q", 2, 5);
    let events = r.events();
    assert!(matches!(&events[..], [Event::Delivered { waiter_id, .. }] if *waiter_id == second));
    assert_eq!(
        r.ok(Command::CancelWait { waiter_id: first }),
        Reply::WaitCancelled { cancelled: false }
    );
}

#[test]
fn waiter_is_served_by_a_retry_becoming_ready() {
    let mut r = Rig::new();
    r.create(
        "q",
        QueueConfig {
            retry_delays_ms: vec![200],
            ..QueueConfig::default()
        },
    );
    r.publish("q", 1, 5);
    let d = r.consume_one("q");
    assert_eq!(
        r.nack("q", &d, true),
        Reply::Nacked {
            action: crate::NackAction::Delayed
        }
    );
    let Reply::Waiting { waiter_id } = r.ok(Command::Consume {
        queue: "q".into(),
        wait_ms: 5_000,
        lease_ms: None,
        max_messages: 1,
        consumer_id: None,
    }) else {
        panic!()
    };
    r.advance(200);
    let events = r.events();
    let [
        Event::Delivered {
            waiter_id: w,
            messages,
        },
    ] = &events[..]
    else {
        panic!("{events:?}")
    };
    assert_eq!(*w, waiter_id);
    assert_eq!(messages[0].retry_count, 1);
}

#[test]
fn cancelled_waiter_gets_nothing() {
    let mut r = Rig::new();
    r.create("q", QueueConfig::default());
    let Reply::Waiting { waiter_id } = r.ok(Command::Consume {
        queue: "q".into(),
        wait_ms: 5_000,
        lease_ms: None,
        max_messages: 1,
        consumer_id: None,
    }) else {
        panic!()
    };
    assert_eq!(
        r.ok(Command::CancelWait { waiter_id }),
        Reply::WaitCancelled { cancelled: true }
    );
    r.publish("q", 1, 5);
    assert!(r.events().is_empty());
    assert_eq!(r.stats("q").ready, 1);
}

#[test]
fn too_many_waiters_is_limit_exceeded() {
    let mut config = EngineConfig::default();
    config.limits.max_waiters = 2;
    let mut r = Rig::with(config);
    r.create("q", QueueConfig::default());
    let park = Command::Consume {
        queue: "q".into(),
        wait_ms: 5_000,
        lease_ms: None,
        max_messages: 1,
        consumer_id: None,
    };
    r.ok(park.clone());
    r.ok(park.clone());
    assert_eq!(r.cmd(park).unwrap_err().code(), "limit_exceeded");
}

#[test]
fn prefetch_limits_unacked_messages_per_consumer() {
    let mut r = Rig::new();
    r.create(
        "q",
        QueueConfig {
            prefetch: 2,
            ..QueueConfig::default()
        },
    );
    for n in 0..5 {
        r.publish("q", n, 5);
    }
    let got = r.consume_as("q", 10, None, Some("w1"));
    assert_eq!(got.len(), 2, "prefetch caps a batch");
    assert!(
        r.consume_as("q", 1, None, Some("w1")).is_empty(),
        "limit reached"
    );
    assert_eq!(
        r.consume_as("q", 1, None, Some("w2")).len(),
        1,
        "others are not limited"
    );
    r.ack("q", &got[0]).unwrap();
    assert_eq!(
        r.consume_as("q", 10, None, Some("w1")).len(),
        1,
        "an ack frees a slot"
    );
    // A parked waiter of a consumer at its limit is served once it acks.
    let Reply::Waiting { waiter_id } = r.ok(Command::Consume {
        queue: "q".into(),
        wait_ms: 5_000,
        lease_ms: None,
        max_messages: 1,
        consumer_id: Some("w1".into()),
    }) else {
        panic!()
    };
    r.events();
    r.ack("q", &got[1]).unwrap();
    let events = r.events();
    assert!(matches!(&events[..], [Event::Delivered { waiter_id: w, .. }] if *w == waiter_id));
}

#[test]
fn stats_count_everything() {
    let mut r = Rig::new();
    r.create(
        "q",
        QueueConfig {
            max_retries: 0,
            ..QueueConfig::default()
        },
    );
    r.publish("q", 1, 5);
    r.publish("q", 2, 5);
    r.publish("q", 3, 5);
    r.now += 40;
    let a = r.consume_as("q", 1, Some(100), Some("w"));
    r.ack("q", &a[0]).unwrap();
    let b = r.consume_one("q");
    r.nack("q", &b, true);
    r.consume_as("q", 1, Some(100), None);
    r.advance(29_000);
    let s = r.stats("q");
    assert_eq!(s.published_total, 3);
    assert_eq!(s.consumed_total, 3);
    assert_eq!(s.acked_total, 1);
    assert_eq!(s.nacked_total, 1);
    assert_eq!(s.lease_expired_total, 1);
    assert_eq!(s.dead_lettered_total, 2);
    assert_eq!(s.dead_letter_count, 2);
    assert_eq!((s.depth, s.in_flight), (0, 0));
    assert!(
        (s.avg_wait_time_ms - 40.0).abs() < 1e-9,
        "{}",
        s.avg_wait_time_ms
    );
    assert_eq!(s.consumers, 1, "w was seen within 30 s");
    r.advance(1_000);
    assert_eq!(r.stats("q").consumers, 0);
    r.publish("q", 4, 5);
    r.now += 250;
    assert_eq!(r.stats("q").oldest_ready_age_ms, 250);
}

#[test]
fn list_queues_is_sorted() {
    let mut r = Rig::new();
    r.publish("b", 1, 5);
    r.publish("a", 1, 5);
    assert_eq!(
        r.ok(Command::ListQueues),
        Reply::Queues {
            queues: vec!["a".into(), "b".into()]
        }
    );
}

#[test]
fn invalid_queue_config_is_refused() {
    let mut r = Rig::new();
    let bad = [
        QueueConfig {
            ack_deadline_ms: 0,
            ..QueueConfig::default()
        },
        QueueConfig {
            default_priority: 10,
            ..QueueConfig::default()
        },
        QueueConfig {
            max_depth: 0,
            ..QueueConfig::default()
        },
        QueueConfig {
            backoff: Some(crate::Backoff {
                initial_ms: 10,
                multiplier: 0.5,
                max_ms: 100,
                jitter: 0.0,
            }),
            ..QueueConfig::default()
        },
    ];
    for config in bad {
        let err = r
            .cmd(Command::CreateQueue {
                queue: "q".into(),
                config: Some(Box::new(config)),
            })
            .unwrap_err();
        assert_eq!(err.code(), "invalid_argument");
    }
}
