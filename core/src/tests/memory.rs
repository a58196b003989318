//! The memory budget: message bytes held, per queue (`max_bytes`) and across the engine
//! (`Limits::max_held_bytes`). Publishes past either are `memory_full`; consumes, acks and
//! everything else go on, and publishes are taken again once consumers drain the queue.

use serde_json::json;

use super::Rig;
use crate::{
    Command, EngineConfig, Error, Headers, Json, Limits, PublishMessage, QueueConfig, Reply,
    json_message,
};

/// A message whose body is `n` bytes of JSON (a string of `n - 2` characters).
fn sized(n: usize) -> PublishMessage {
    json_message(json!("x".repeat(n - 2)))
}

fn budget(max_held_bytes: u64) -> Rig {
    Rig::with(EngineConfig {
        limits: Limits {
            max_held_bytes,
            ..Limits::default()
        },
        ..EngineConfig::default()
    })
}

fn is_memory_full(r: &Result<Reply, Error>, scope: &str) -> bool {
    matches!(r, Err(Error::MemoryFull { scope: s, .. }) if s == scope)
}

#[test]
fn the_server_budget_refuses_publishes_and_recovers_after_a_drain() {
    let mut r = budget(1_000);
    for _ in 0..4 {
        r.publish_with("a", sized(200)).expect("fits");
    }
    r.publish_with("b", sized(200))
        .expect("fits, across queues");
    assert_eq!(r.engine.held_bytes(), 1_000);
    let refused = r.publish_with("a", sized(10));
    assert!(is_memory_full(&refused, "server"), "{refused:?}");
    assert_eq!(refused.unwrap_err().code(), "memory_full");
    let batch = r.cmd(Command::PublishBatch {
        queue: "b".into(),
        messages: vec![sized(10)],
    });
    assert!(is_memory_full(&batch, "server"), "{batch:?}");
    let topic = r.cmd(Command::PubsubPublish {
        topic: "t".into(),
        message: Json::from_value(&json!(1)),
        headers: Headers::default(),
    });
    assert!(is_memory_full(&topic, "server"), "{topic:?}");
    // Consumes and acks go on, and what they free can be published again.
    let d = r.consume_one("a");
    assert_eq!(r.stats("a").bytes, 800, "in flight still counts");
    r.ack("a", &d).expect("ack goes on");
    assert_eq!(r.engine.held_bytes(), 800);
    r.publish_with("a", sized(200)).expect("room again");
    let st = r.stats("a");
    assert_eq!(st.server_held_bytes, 1_000);
    assert_eq!(st.server_max_held_bytes, 1_000);
}

#[test]
fn a_queue_max_bytes_bounds_that_queue_only() {
    let mut r = Rig::new();
    r.create(
        "small",
        QueueConfig {
            max_bytes: Some(500),
            ..QueueConfig::default()
        },
    );
    r.publish_with("small", sized(300)).expect("fits");
    let refused = r.publish_with("small", sized(300));
    assert!(is_memory_full(&refused, "queue small"), "{refused:?}");
    r.publish_with("other", sized(300))
        .expect("another queue has room");
    assert_eq!(r.stats("small").bytes, 300);
    let bad = r.cmd(Command::CreateQueue {
        queue: "zero".into(),
        config: Some(Box::new(QueueConfig {
            max_bytes: Some(0),
            ..QueueConfig::default()
        })),
    });
    assert!(matches!(bad, Err(Error::InvalidArgument { .. })), "{bad:?}");
}

#[test]
fn headers_count_and_every_way_out_gives_the_bytes_back() {
    let mut r = Rig::new();
    r.create(
        "q",
        QueueConfig {
            max_retries: 0,
            dlq_max: 1,
            ..QueueConfig::default()
        },
    );
    let mut m = sized(100);
    m.headers.insert("k".into(), "vvvv".into());
    r.publish_with("q", m).expect("fits");
    assert_eq!(r.stats("q").bytes, 105, "body and headers");
    // Dead-lettered messages are still held; a full DLQ drops (and frees) the oldest.
    for _ in 0..2 {
        let d = r.consume_one("q");
        r.nack("q", &d, false);
        r.publish_with("q", sized(100)).expect("fits");
    }
    assert_eq!(r.stats("q").dead_letter_count, 1);
    assert_eq!(r.stats("q").bytes, 200, "one queued, one dead-lettered");
    r.ok(Command::DlqPurge { queue: "q".into() });
    assert_eq!(r.stats("q").bytes, 100);
    r.ok(Command::Purge { queue: "q".into() });
    assert_eq!(r.engine.held_bytes(), 0);
    r.publish_with("q", sized(100)).expect("fits");
    r.ok(Command::DeleteQueue { queue: "q".into() });
    assert_eq!(r.engine.held_bytes(), 0, "a deleted queue frees its bytes");
}

#[test]
fn the_count_survives_a_snapshot_round_trip() {
    let mut r = budget(10_000);
    r.publish_with("q", sized(700)).expect("fits");
    let text = serde_json::to_string(&r.engine).unwrap();
    let restored: crate::Engine = serde_json::from_str(&text).unwrap();
    restored.check_invariants();
    assert_eq!(restored.held_bytes(), 700);
    assert_eq!(restored.state_digest(), r.engine.state_digest());
}
