//! Message groups (DESIGN.md §12): `group_concurrency`, ordered groups, fair groups, the
//! per-group rate window, the groups limit, the `Groups` listing and the group in deliveries
//! and lookups.
//!
//! Method: publish into a few named groups, consume, and compare the order and count of
//! deliveries with the rule; held-back consumers park and must be answered by the ack or the
//! window's end that makes room. Every step runs `check_invariants`, which recounts every
//! group from the messages and checks the listing, the held-back count and the limits.

use serde_json::json;

use super::{Rig, n_of};
use crate::{
    Command, EngineConfig, Error, GroupInfo, Limits, PublishMessage, QueueConfig, RateLimit, Reply,
    json_message,
};

fn grouped(config: QueueConfig) -> Rig {
    let mut r = Rig::new();
    r.create("q", config);
    r
}

fn ns(got: &[crate::Delivery]) -> Vec<u64> {
    got.iter().map(n_of).collect()
}

fn groups(r: &mut Rig, limit: u64) -> Vec<GroupInfo> {
    match r.ok(Command::Groups {
        queue: "q".into(),
        limit,
    }) {
        Reply::Groups { groups } => groups,
        other => panic!("groups replied {other:?}"),
    }
}

#[test]
fn group_concurrency_holds_back_a_busy_group_and_an_ack_frees_it() {
    let mut r = grouped(QueueConfig {
        group_concurrency: Some(1),
        ..QueueConfig::default()
    });
    for n in 1..=3 {
        r.publish_in("q", n, 5, Some("a"));
    }
    for n in 4..=5 {
        r.publish_in("q", n, 5, Some("b"));
    }
    r.publish_in("q", 6, 5, None);
    let got = r.consume("q", 10);
    assert_eq!(ns(&got), vec![1, 4, 6], "one per group, ungrouped free");
    let st = r.stats("q");
    assert_eq!((st.groups, st.held_back, st.ready), (2, 3, 3));
    r.park("q", 10, 30_000);
    r.ack("q", &got[0]).unwrap();
    assert_eq!(ns(&r.delivered()), vec![2]);
    r.nack("q", &got[1], true);
    assert!(r.delivered().is_empty(), "the waiter was answered already");
    assert_eq!(
        ns(&r.consume("q", 10)),
        vec![5],
        "the nacked message went to the back"
    );
}

#[test]
fn an_ordered_group_delivers_in_publish_order_one_at_a_time() {
    let mut r = grouped(QueueConfig {
        ordered_groups: true,
        retry_delays_ms: vec![1_000],
        ..QueueConfig::default()
    });
    // Priorities do not reorder an ordered group.
    r.publish_in("q", 1, 1, Some("v"));
    r.publish_in("q", 2, 9, Some("v"));
    r.publish_in("q", 3, 5, Some("v"));
    let first = r.consume("q", 10);
    assert_eq!(ns(&first), vec![1]);
    // A retry keeps the group's head: nothing else goes while it waits.
    r.nack("q", &first[0], true);
    assert!(r.consume("q", 10).is_empty());
    assert_eq!(r.stats("q").held_back, 2);
    r.advance(1_000);
    let again = r.consume("q", 10);
    assert_eq!((ns(&again), again[0].retry_count), (vec![1], 1));
    // A lease that runs out keeps the head too.
    r.advance(30_000);
    r.advance(1_000);
    let third = r.consume("q", 10);
    assert_eq!((ns(&third), third[0].retry_count), (vec![1], 2));
    r.ack("q", &third[0]).unwrap();
    let next = r.consume("q", 10);
    assert_eq!(ns(&next), vec![2]);
    // Dead-lettering the head lets the next go.
    r.nack("q", &next[0], false);
    assert_eq!(ns(&r.consume("q", 10)), vec![3]);
}

#[test]
fn a_delayed_publish_joins_an_ordered_group_when_its_delay_ends() {
    let mut r = grouped(QueueConfig {
        ordered_groups: true,
        ..QueueConfig::default()
    });
    let delayed = PublishMessage {
        delay_ms: Some(500),
        group: Some("v".into()),
        ..json_message(json!({"n": 1}))
    };
    r.publish_with("q", delayed).unwrap();
    r.publish_in("q", 2, 5, Some("v"));
    r.advance(500);
    r.publish_in("q", 3, 5, Some("v"));
    let mut order = Vec::new();
    while let Some(d) = r.consume("q", 10).pop() {
        order.push(n_of(&d));
        r.ack("q", &d).unwrap();
    }
    assert_eq!(order, vec![2, 1, 3]);
}

#[test]
fn fair_groups_take_turns_within_a_priority() {
    let order = |fair: bool| {
        let mut r = grouped(QueueConfig {
            fair_groups: fair,
            ..QueueConfig::default()
        });
        for n in 1..=6 {
            r.publish_in("q", n, 5, Some("burst"));
        }
        for n in 7..=8 {
            r.publish_in("q", n, 5, Some("b"));
        }
        for n in 9..=10 {
            r.publish_in("q", n, 5, Some("c"));
        }
        r.publish_in("q", 11, 5, None);
        r.publish_in("q", 12, 9, Some("c"));
        ns(&r.consume("q", 100))
    };
    assert_eq!(order(false), vec![12, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    assert_eq!(order(true), vec![12, 11, 1, 7, 9, 2, 8, 10, 3, 4, 5, 6]);
}

#[test]
fn the_group_rate_window_holds_back_one_group_only() {
    let mut r = grouped(QueueConfig {
        group_rate_limit: Some(RateLimit {
            max: 2,
            per_ms: 1_000,
        }),
        ..QueueConfig::default()
    });
    for n in 1..=5 {
        r.publish_in("q", n, 5, Some("a"));
    }
    r.publish_in("q", 6, 5, Some("b"));
    let got = r.consume("q", 10);
    assert_eq!(ns(&got), vec![1, 2, 6]);
    for d in &got {
        r.ack("q", d).unwrap();
    }
    assert_eq!(r.stats("q").held_back, 3);
    r.park("q", 10, 30_000);
    r.advance(1_000);
    let second = r.delivered();
    assert_eq!(
        ns(&second),
        vec![3, 4],
        "the window's end serves the waiter"
    );
    for d in &second {
        r.ack("q", d).unwrap();
    }
    // An emptied group keeps its window: refilling it does not reset the rate.
    r.advance(1_000);
    let d = r.consume_one("q");
    assert_eq!(n_of(&d), 5);
    r.ack("q", &d).unwrap();
    assert_eq!(r.stats("q").groups, 0);
    r.publish_in("q", 7, 5, Some("a"));
    assert_eq!(ns(&r.consume("q", 10)), vec![7]);
    r.publish_in("q", 8, 5, Some("a"));
    assert!(
        r.consume("q", 10).is_empty(),
        "the refilled group kept its window"
    );
    assert_eq!(r.stats("q").groups, 1);
}

#[test]
fn the_groups_limit_refuses_a_new_group_and_frees_room_when_one_empties() {
    let mut r = Rig::with(EngineConfig {
        limits: Limits {
            max_groups_per_queue: 2,
            ..Limits::default()
        },
        ..EngineConfig::default()
    });
    r.publish_in("q", 1, 5, Some("a"));
    r.publish_in("q", 2, 5, Some("b"));
    r.publish_in("q", 3, 5, Some("a"));
    let m = PublishMessage {
        group: Some("c".into()),
        ..json_message(json!({"n": 4}))
    };
    let err = r.publish_with("q", m.clone()).unwrap_err();
    assert!(matches!(&err, Error::LimitExceeded { what, .. } if what == "groups per queue"));
    let batch = r.cmd(Command::PublishBatch {
        queue: "q".into(),
        messages: vec![json_message(json!({"n": 5})), m.clone()],
    });
    assert_eq!(batch.unwrap_err().code(), "limit_exceeded");
    assert_eq!(r.stats("q").depth, 3, "the batch added nothing");
    let d = r.consume("q", 10);
    let b = d.iter().find(|d| n_of(d) == 2).unwrap();
    r.ack("q", b).unwrap();
    r.publish_with("q", m).expect("b emptied: room for c");
}

#[test]
fn groups_are_listed_largest_first_and_carried_by_deliveries_and_lookups() {
    let mut r = grouped(QueueConfig::default());
    for n in 0..3 {
        r.publish_in("q", n, 5, Some("small"));
    }
    for n in 0..5 {
        r.publish_in("q", n, 5, Some("big"));
    }
    let late = PublishMessage {
        delay_ms: Some(1_000),
        group: Some("later".into()),
        ..json_message(json!({"n": 9}))
    };
    r.publish_with("q", late).unwrap();
    let d = r.consume_one("q");
    assert_eq!(d.group.as_deref(), Some("small"));
    let Reply::Job(job) = r.ok(Command::GetJob {
        queue: "q".into(),
        message_id: d.message_id,
    }) else {
        panic!()
    };
    assert_eq!(job.group.as_deref(), Some("small"));
    let listed = groups(&mut r, 100);
    let row = |g: &str, ready, in_flight, delayed| GroupInfo {
        group: g.into(),
        ready,
        in_flight,
        delayed,
    };
    assert_eq!(
        listed,
        vec![
            row("big", 5, 0, 0),
            row("small", 2, 1, 0),
            row("later", 0, 0, 1)
        ]
    );
    assert_eq!(groups(&mut r, 1).len(), 1);
    assert_eq!(r.stats("q").groups, 3);
    let bad = r.cmd(Command::Groups {
        queue: "q".into(),
        limit: 0,
    });
    assert_eq!(bad.unwrap_err().code(), "invalid_argument");
}

#[test]
fn a_group_name_is_one_to_255_bytes_without_control_characters() {
    let mut r = Rig::new();
    for bad in [String::new(), "x".repeat(256), "a\u{0}b".into()] {
        let m = PublishMessage {
            group: Some(bad.clone()),
            ..json_message(json!(1))
        };
        let err = r.publish_with("q", m).unwrap_err();
        assert_eq!(err.code(), "invalid_argument", "{bad:?}");
    }
    r.publish_in("q", 1, 5, Some(&"é".repeat(127)));
}

#[test]
fn purge_cancel_and_ttl_keep_the_group_counts() {
    let mut r = grouped(QueueConfig {
        group_concurrency: Some(1),
        ..QueueConfig::default()
    });
    let a1 = r.publish_in("q", 1, 5, Some("a"));
    r.publish_in("q", 2, 5, Some("a"));
    let short = PublishMessage {
        ttl_ms: Some(100),
        group: Some("b".into()),
        ..json_message(json!({"n": 3}))
    };
    r.publish_with("q", short).unwrap();
    r.ok(Command::Cancel {
        queue: "q".into(),
        message_id: a1,
    });
    r.advance(100);
    assert_eq!(r.stats("q").groups, 1);
    let d = r.consume_one("q");
    r.publish_in("q", 4, 5, Some("a"));
    assert_eq!(
        r.ok(Command::Purge { queue: "q".into() }),
        Reply::Purged { purged: 1 }
    );
    let st = r.stats("q");
    assert_eq!((st.groups, st.held_back, st.in_flight), (1, 0, 1));
    r.ack("q", &d).unwrap();
    assert_eq!(r.stats("q").groups, 0);
    assert!(groups(&mut r, 10).is_empty());
}

#[test]
fn changing_the_group_settings_relists_every_group() {
    let mut r = grouped(QueueConfig::default());
    for n in 1..=4 {
        r.publish_in("q", n, (n % 3) as u8 + 4, Some("a"));
        r.publish_in("q", 10 + n, 5, Some("b"));
    }
    let held = r.consume("q", 3);
    let ordered = QueueConfig {
        ordered_groups: true,
        ..QueueConfig::default()
    };
    r.ok(Command::ConfigureQueue {
        queue: "q".into(),
        config: Box::new(ordered.clone()),
    });
    assert!(r.consume("q", 10).is_empty(), "both groups hold deliveries");
    for d in &held {
        r.ack("q", d).unwrap();
    }
    let next = r.consume("q", 10);
    assert_eq!(next.len(), 2, "one per ordered group");
    r.ok(Command::ConfigureQueue {
        queue: "q".into(),
        config: Box::new(QueueConfig {
            fair_groups: true,
            ..QueueConfig::default()
        }),
    });
    assert_eq!(r.consume("q", 10).len(), 3);
}

// Regression (found by the random runs): leaving `fair_groups` re-keys the listing from turns
// to publish order, and a group's new key may be the number another group's old turn was.
#[test]
fn leaving_fair_groups_relists_without_a_key_clash() {
    let mut r = grouped(QueueConfig {
        fair_groups: true,
        ..QueueConfig::default()
    });
    r.publish_in("q", 1, 5, None);
    r.publish_in("q", 2, 5, Some("a"));
    r.publish_in("q", 3, 5, Some("b"));
    r.ok(Command::ConfigureQueue {
        queue: "q".into(),
        config: Box::new(QueueConfig::default()),
    });
    assert_eq!(ns(&r.consume("q", 10)), vec![1, 2, 3]);
}

// A redriven message rejoins its group (made again if it had emptied), unless the queue has
// no room for one more group: then it stays in the DLQ.
#[test]
fn a_redrive_brings_messages_back_into_their_groups_within_the_groups_limit() {
    let mut r = Rig::with(EngineConfig {
        limits: Limits {
            max_groups_per_queue: 1,
            ..Limits::default()
        },
        ..EngineConfig::default()
    });
    r.create(
        "q",
        QueueConfig {
            group_concurrency: Some(1),
            ..QueueConfig::default()
        },
    );
    r.publish_in("q", 1, 5, Some("a"));
    let d = r.consume_one("q");
    r.nack("q", &d, false);
    assert_eq!(r.stats("q").groups, 0, "a emptied and was forgotten");
    r.publish_in("q", 2, 5, Some("b"));
    let kept = r.ok(Command::DlqRetry {
        queue: "q".into(),
        message_ids: None,
    });
    assert_eq!(
        kept,
        Reply::Redriven { retried: 0 },
        "no room for a second group"
    );
    let d = r.consume_one("q");
    r.ack("q", &d).unwrap();
    let back = r.ok(Command::DlqRetry {
        queue: "q".into(),
        message_ids: None,
    });
    assert_eq!(back, Reply::Redriven { retried: 1 });
    let again = r.consume_one("q");
    assert_eq!((n_of(&again), again.group.as_deref()), (1, Some("a")));
    assert_eq!(groups(&mut r, 10)[0].in_flight, 1);
}

// Deleting a queue removes its flow timers: the open rate windows and a worker's limit.
#[test]
fn deleting_a_queue_removes_its_rate_timers() {
    let mut r = grouped(QueueConfig {
        rate_limit: Some(RateLimit {
            max: 10,
            per_ms: 60_000,
        }),
        group_rate_limit: Some(RateLimit {
            max: 10,
            per_ms: 30_000,
        }),
        ..QueueConfig::default()
    });
    r.publish_in("q", 1, 5, Some("a"));
    let d = r.consume_one("q");
    r.ack("q", &d).unwrap();
    r.ok(Command::RateLimit {
        queue: "q".into(),
        for_ms: 5_000,
    });
    // The two windows, the limit's end, and the kept job's retention.
    assert_eq!(r.engine.timer_count(), 4);
    r.ok(Command::DeleteQueue { queue: "q".into() });
    assert_eq!(r.engine.timer_count(), 0);
}

// A grouped message's position counts every ready message ahead of it by priority, grouped
// or not, flow limits aside.
#[test]
fn positions_count_grouped_and_ungrouped_messages() {
    let mut r = grouped(QueueConfig {
        group_concurrency: Some(1),
        ..QueueConfig::default()
    });
    let position = |r: &mut Rig, priority: u8, group: Option<&str>| {
        let m = PublishMessage {
            priority: Some(priority),
            group: group.map(str::to_owned),
            ..json_message(json!(1))
        };
        match r.publish_with("q", m).unwrap() {
            Reply::Published(p) => p.position,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(position(&mut r, 5, Some("a")), Some(1));
    assert_eq!(position(&mut r, 5, None), Some(2));
    assert_eq!(position(&mut r, 9, Some("b")), Some(1));
    assert_eq!(position(&mut r, 5, Some("a")), Some(4));
    assert_eq!(position(&mut r, 7, None), Some(2));
}

// The age of the oldest ready message counts grouped messages, whatever their priority in
// their group.
#[test]
fn the_oldest_ready_age_counts_grouped_messages() {
    let mut r = grouped(QueueConfig::default());
    r.publish_in("q", 1, 2, Some("a"));
    r.advance(700);
    r.publish_in("q", 2, 9, Some("a"));
    r.publish_in("q", 3, 5, None);
    r.advance(300);
    assert_eq!(r.stats("q").oldest_ready_age_ms, 1_000);
    let first = r.consume("q", 2);
    assert_eq!(ns(&first), vec![2, 3]);
    assert_eq!(
        r.stats("q").oldest_ready_age_ms,
        1_000,
        "the low-priority one waits"
    );
}
