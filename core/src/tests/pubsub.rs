//! Pub/sub rules: wildcard matching, subscriber counts, credit-based pushing, bounded buffers.

use serde_json::json;

use super::Rig;
use crate::{Command, EngineConfig, Event, Json, Reply};

fn subscribe(r: &mut Rig, id: &str, patterns: &[&str], credit: u32) {
    let reply = r.ok(Command::Subscribe {
        subscriber_id: Some(id.into()),
        patterns: patterns.iter().map(|p| p.to_string()).collect(),
        credit,
        idle_ms: None,
    });
    assert!(matches!(reply, Reply::Subscribed { .. }));
}

fn publish(r: &mut Rig, topic: &str, n: u64) -> u64 {
    match r.ok(Command::PubsubPublish {
        topic: topic.into(),
        message: Json::from_value(&json!({ "n": n })),
        headers: Default::default(),
    }) {
        Reply::PubsubPublished {
            subscribers_matched,
            ..
        } => subscribers_matched,
        other => panic!("{other:?}"),
    }
}

fn pushed(r: &mut Rig) -> Vec<(String, String)> {
    r.events()
        .into_iter()
        .map(|e| match e {
            Event::PubSub {
                subscriber_id,
                message,
            } => (subscriber_id, message.topic.to_string()),
            other => panic!("{other:?}"),
        })
        .collect()
}

#[test]
fn publish_reaches_each_matching_subscriber_once() {
    let mut r = Rig::new();
    subscribe(
        &mut r,
        "a",
        &["notifications.user.*", "notifications.#"],
        10,
    );
    subscribe(&mut r, "b", &["notifications.user.42"], 10);
    subscribe(&mut r, "c", &["other.*"], 10);
    assert_eq!(publish(&mut r, "notifications.user.42", 1), 2);
    assert_eq!(
        pushed(&mut r),
        vec![
            ("a".into(), "notifications.user.42".into()),
            ("b".into(), "notifications.user.42".into())
        ]
    );
}

#[test]
fn hash_matches_zero_segments() {
    let mut r = Rig::new();
    subscribe(&mut r, "a", &["notifications.#"], 10);
    assert_eq!(publish(&mut r, "notifications", 1), 1);
    assert_eq!(publish(&mut r, "notifications.user.7.email", 2), 1);
    assert_eq!(publish(&mut r, "notificationsx", 3), 0);
}

#[test]
fn without_credit_messages_wait_in_a_bounded_buffer() {
    let mut config = EngineConfig::default();
    config.limits.subscriber_buffer = 2;
    let mut r = Rig::with(config);
    subscribe(&mut r, "s", &["t"], 0);
    for n in 0..3 {
        assert_eq!(publish(&mut r, "t", n), 1);
    }
    assert!(pushed(&mut r).is_empty());
    let Reply::PubsubMessages { messages, dropped } = r.ok(Command::PubsubPoll {
        subscriber_id: "s".into(),
        max: 10,
    }) else {
        panic!()
    };
    let ns: Vec<_> = messages
        .iter()
        .map(|m| m.message.to_value()["n"].as_u64().unwrap())
        .collect();
    assert_eq!(ns, vec![1, 2], "the oldest was dropped");
    assert_eq!(dropped, 1);
    let Reply::PubsubStats(s) = r.ok(Command::PubsubStats) else {
        panic!()
    };
    assert_eq!(
        (
            s.messages_published,
            s.messages_delivered,
            s.messages_dropped
        ),
        (3, 2, 1)
    );
}

#[test]
fn credit_pushes_buffered_messages_in_order() {
    let mut r = Rig::new();
    subscribe(&mut r, "s", &["t"], 1);
    publish(&mut r, "t", 0);
    publish(&mut r, "t", 1);
    publish(&mut r, "t", 2);
    assert_eq!(pushed(&mut r).len(), 1, "one credit, one push");
    assert_eq!(
        r.ok(Command::PubsubCredit {
            subscriber_id: "s".into(),
            credit: 5
        }),
        Reply::PubsubCredited { credit: 3 }
    );
    let ns: Vec<u64> = std::iter::from_fn(|| r.engine.poll_event())
        .map(|e| match e {
            Event::PubSub { message, .. } => message.message.to_value()["n"].as_u64().unwrap(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(ns, vec![1, 2]);
}

#[test]
fn unsubscribe_stops_delivery() {
    let mut r = Rig::new();
    subscribe(&mut r, "s", &["a", "b"], 10);
    assert_eq!(
        r.ok(Command::Unsubscribe {
            subscriber_id: "s".into(),
            patterns: Some(vec!["a".into()])
        }),
        Reply::Unsubscribed { removed: 1 }
    );
    assert_eq!(publish(&mut r, "a", 1), 0);
    assert_eq!(publish(&mut r, "b", 1), 1);
    r.ok(Command::Unsubscribe {
        subscriber_id: "s".into(),
        patterns: None,
    });
    assert_eq!(publish(&mut r, "b", 1), 0);
    let err = r
        .cmd(Command::PubsubPoll {
            subscriber_id: "s".into(),
            max: 1,
        })
        .unwrap_err();
    assert_eq!(err.code(), "subscriber_not_found");
}

#[test]
fn bad_topics_and_patterns_are_refused() {
    let mut r = Rig::new();
    let bad_sub = Command::Subscribe {
        subscriber_id: None,
        patterns: vec!["a.#.b".into()],
        credit: 0,
        idle_ms: None,
    };
    assert_eq!(r.cmd(bad_sub).unwrap_err().code(), "invalid_argument");
    let empty = Command::PubsubPublish {
        topic: String::new(),
        message: Json::from_value(&json!(1)),
        headers: Default::default(),
    };
    assert_eq!(r.cmd(empty).unwrap_err().code(), "invalid_argument");
    let wildcard = Command::PubsubPublish {
        topic: "a.*".into(),
        message: Json::from_value(&json!(1)),
        headers: Default::default(),
    };
    assert_eq!(r.cmd(wildcard).unwrap_err().code(), "invalid_argument");
}

#[test]
fn subscriber_limit() {
    let mut config = EngineConfig::default();
    config.limits.max_subscribers = 1;
    let mut r = Rig::with(config);
    subscribe(&mut r, "a", &["t"], 0);
    let more = Command::Subscribe {
        subscriber_id: Some("b".into()),
        patterns: vec!["t".into()],
        credit: 0,
        idle_ms: None,
    };
    assert_eq!(r.cmd(more).unwrap_err().code(), "limit_exceeded");
    // Generated ids are UUIDs from the seeded PRNG.
    r.ok(Command::Unsubscribe {
        subscriber_id: "a".into(),
        patterns: None,
    });
    let Reply::Subscribed { subscriber_id, .. } = r.ok(Command::Subscribe {
        subscriber_id: None,
        patterns: vec!["t".into()],
        credit: 0,
        idle_ms: None,
    }) else {
        panic!()
    };
    assert!(uuid::Uuid::parse_str(&subscriber_id).is_ok());
}

#[test]
fn a_polling_subscriber_is_removed_after_its_idle_time() {
    let mut r = Rig::new();
    let sub = |r: &mut Rig| {
        r.ok(Command::Subscribe {
            subscriber_id: Some("poller".into()),
            patterns: vec!["t".into()],
            credit: 0,
            idle_ms: Some(1_000),
        })
    };
    sub(&mut r);
    r.advance(900);
    r.ok(Command::PubsubPoll {
        subscriber_id: "poller".into(),
        max: 10,
    });
    r.advance(900);
    assert_eq!(
        publish(&mut r, "t", 1),
        1,
        "a poll restarted the idle clock"
    );
    r.advance(99);
    assert_eq!(publish(&mut r, "t", 2), 1);
    r.advance(1);
    assert_eq!(publish(&mut r, "t", 3), 0, "idle for 1 s: removed");
    let err = r
        .cmd(Command::PubsubPoll {
            subscriber_id: "poller".into(),
            max: 1,
        })
        .unwrap_err();
    assert_eq!(err.code(), "subscriber_not_found");
    sub(&mut r);
    r.ok(Command::Unsubscribe {
        subscriber_id: "poller".into(),
        patterns: None,
    });
    assert_eq!(
        r.engine.timer_count(),
        0,
        "unsubscribing cancels the idle timer"
    );
}

#[test]
fn a_message_matched_by_many_subscribers_is_buffered_once() {
    let mut r = Rig::new();
    for i in 0..3 {
        subscribe(&mut r, &format!("s{i}"), &["t"], 0);
    }
    publish(&mut r, "t", 1);
    let restored: crate::Engine =
        serde_json::from_str(&serde_json::to_string(&r.engine).unwrap()).unwrap();
    assert_eq!(restored.state_digest(), r.engine.state_digest());
    for i in 0..3 {
        let Reply::PubsubMessages { messages, .. } = r.ok(Command::PubsubPoll {
            subscriber_id: format!("s{i}"),
            max: 10,
        }) else {
            panic!()
        };
        assert_eq!(messages.len(), 1);
    }
}
