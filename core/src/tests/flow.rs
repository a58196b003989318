//! Flow control at the queue's level (DESIGN.md §12): pause and resume, a worker's rate
//! limit, `max_in_flight`, the queue's `rate_limit` window, snoozes, streaming sessions under
//! the limits, the settings' validation and the new commands' JSON form.
//!
//! Method: drive the engine through `handle` with a hand-moved clock; a consume held back by
//! a limit parks, and the test checks that it is answered by the event the rule names (an
//! ack, a resume, a window's end) without any further command. Every step runs
//! `check_invariants`, which checks the flow state against the messages and limits.

use serde_json::json;

use super::{Rig, n_of};
use crate::{
    Command, DeadLetterReason, Error, Event, Millis, NackAction, QueueConfig, RateLimit, Reply,
};

fn snooze(r: &mut Rig, d: &crate::Delivery, delay_ms: u64) -> Result<Reply, Error> {
    r.cmd(Command::Nack {
        queue: "q".into(),
        message_id: d.message_id,
        requeue: true,
        delay_ms: Some(delay_ms),
        error: None,
        lease: Some(d.lease),
        snooze: true,
    })
}

fn pause(r: &mut Rig, queue: &str) -> Reply {
    r.ok(Command::PauseQueue {
        queue: queue.into(),
    })
}

fn resume(r: &mut Rig, queue: &str) -> Reply {
    r.ok(Command::ResumeQueue {
        queue: queue.into(),
    })
}

fn rate_limit(r: &mut Rig, queue: &str, for_ms: u64) -> Millis {
    match r.ok(Command::RateLimit {
        queue: queue.into(),
        for_ms,
    }) {
        Reply::RateLimited { until } => until,
        other => panic!("rate limit replied {other:?}"),
    }
}

#[test]
fn a_paused_queue_takes_publishes_and_acks_and_delivers_nothing_until_resumed() {
    let mut r = Rig::new();
    r.publish("q", 1, 5);
    let leased = r.consume_one("q");
    assert_eq!(pause(&mut r, "q"), Reply::QueuePaused { paused: true });
    r.publish("q", 2, 5);
    r.publish("q", 3, 9);
    assert!(
        r.consume("q", 10).is_empty(),
        "a paused queue delivers nothing"
    );
    let waiter = r.park("q", 10, 30_000);
    r.ack("q", &leased).expect("acks go on while paused");
    let st = r.stats("q");
    assert!(st.paused);
    assert_eq!((st.ready, st.held_back, st.in_flight), (2, 2, 0));
    assert!(r.delivered().is_empty());
    assert_eq!(resume(&mut r, "q"), Reply::QueuePaused { paused: false });
    let events = r.events();
    let Some(Event::Delivered {
        waiter_id,
        messages,
    }) = events.first()
    else {
        panic!("the resume answers the waiter: {events:?}")
    };
    assert_eq!(*waiter_id, waiter);
    assert_eq!(messages.iter().map(n_of).collect::<Vec<_>>(), vec![3, 2]);
    let st = r.stats("q");
    assert!(!st.paused);
    assert_eq!(st.held_back, 0);
}

#[test]
fn a_nack_while_paused_requeues_without_delivering() {
    let mut r = Rig::new();
    r.publish("q", 1, 5);
    let d = r.consume_one("q");
    pause(&mut r, "q");
    pause(&mut r, "q");
    assert_eq!(
        r.nack("q", &d, true),
        Reply::Nacked {
            action: NackAction::Requeued
        }
    );
    assert!(r.consume("q", 1).is_empty());
    r.advance(60_000);
    assert_eq!(r.stats("q").ready, 1);
    resume(&mut r, "q");
    assert_eq!(n_of(&r.consume_one("q")), 1);
}

#[test]
fn pausing_an_unknown_queue_is_queue_not_found() {
    let mut r = Rig::new();
    let err = r
        .cmd(Command::PauseQueue {
            queue: "nope".into(),
        })
        .unwrap_err();
    assert_eq!(err.code(), "queue_not_found");
}

#[test]
fn a_worker_rate_limit_holds_deliveries_until_its_end_and_is_never_shortened() {
    let mut r = Rig::new();
    r.publish("q", 1, 5);
    let until = rate_limit(&mut r, "q", 5_000);
    assert_eq!(until, Millis(r.now + 5_000));
    assert_eq!(
        rate_limit(&mut r, "q", 1_000),
        until,
        "a shorter one changes nothing"
    );
    assert!(r.consume("q", 1).is_empty());
    let st = r.stats("q");
    assert_eq!((st.rate_limited_until_ms, st.held_back), (Some(until), 1));
    r.park("q", 1, 30_000);
    r.advance(4_999);
    assert!(r.delivered().is_empty());
    r.advance(1);
    assert_eq!(
        r.delivered().iter().map(n_of).collect::<Vec<_>>(),
        vec![1],
        "the limit's end answers the waiter"
    );
    assert_eq!(r.stats("q").rate_limited_until_ms, None);
    let longer = rate_limit(&mut r, "q", 10_000);
    assert_eq!(rate_limit(&mut r, "q", 20_000), Millis(longer.0 + 10_000));
    let err = r
        .cmd(Command::RateLimit {
            queue: "q".into(),
            for_ms: 0,
        })
        .unwrap_err();
    assert_eq!(err.code(), "invalid_argument");
}

#[test]
fn max_in_flight_caps_leases_across_consumers_and_an_ack_serves_the_next_waiter() {
    let mut r = Rig::new();
    r.create(
        "q",
        QueueConfig {
            max_in_flight: Some(2),
            ..QueueConfig::default()
        },
    );
    for n in 1..=5 {
        r.publish("q", n, 5);
    }
    let first = r.consume_as("q", 10, None, Some("a"));
    assert_eq!(first.len(), 2);
    assert!(r.consume_as("q", 10, None, Some("b")).is_empty());
    let st = r.stats("q");
    assert_eq!((st.in_flight, st.ready, st.held_back), (2, 3, 3));
    r.park("q", 10, 30_000);
    r.ack("q", &first[0]).unwrap();
    assert_eq!(
        r.delivered().iter().map(n_of).collect::<Vec<_>>(),
        vec![3],
        "one ack makes room for one"
    );
    // A lease that runs out makes room too.
    r.advance(30_000);
    let st = r.stats("q");
    assert_eq!(st.in_flight, 0, "{st:?}");
    assert_eq!(r.consume("q", 10).len(), 2);
}

#[test]
fn lowering_max_in_flight_below_what_is_held_delivers_nothing_until_below() {
    let mut r = Rig::new();
    for n in 1..=6 {
        r.publish("q", n, 5);
    }
    let held = r.consume("q", 4);
    r.ok(Command::ConfigureQueue {
        queue: "q".into(),
        config: Box::new(QueueConfig {
            max_in_flight: Some(2),
            ..QueueConfig::default()
        }),
    });
    assert!(r.consume("q", 1).is_empty());
    r.ack("q", &held[0]).unwrap();
    r.ack("q", &held[1]).unwrap();
    assert!(r.consume("q", 1).is_empty(), "2 still held, the limit is 2");
    r.ack("q", &held[2]).unwrap();
    assert_eq!(r.consume("q", 5).len(), 1);
    // Raising it serves a parked consumer at once.
    r.park("q", 5, 30_000);
    r.ok(Command::ConfigureQueue {
        queue: "q".into(),
        config: Box::new(QueueConfig {
            max_in_flight: Some(3),
            ..QueueConfig::default()
        }),
    });
    assert_eq!(r.delivered().len(), 1);
}

#[test]
fn the_queue_rate_window_allows_max_deliveries_and_its_end_serves_the_waiter() {
    let mut r = Rig::new();
    r.create(
        "q",
        QueueConfig {
            rate_limit: Some(RateLimit {
                max: 3,
                per_ms: 1_000,
            }),
            ..QueueConfig::default()
        },
    );
    for n in 1..=8 {
        r.publish("q", n, 5);
    }
    let got = r.consume("q", 10);
    assert_eq!(got.len(), 3, "three per window");
    for d in &got {
        r.ack("q", d).unwrap();
    }
    let st = r.stats("q");
    assert_eq!(st.rate_limited_until_ms, Some(Millis(r.now + 1_000)));
    assert_eq!(st.held_back, 5);
    r.park("q", 10, 30_000);
    r.advance(999);
    assert!(r.delivered().is_empty());
    r.advance(1);
    let next = r.delivered();
    assert_eq!(next.iter().map(n_of).collect::<Vec<_>>(), vec![4, 5, 6]);
    // The window opened at that delivery: nothing more for another second.
    r.advance(500);
    assert!(r.consume("q", 10).is_empty());
    r.advance(500);
    assert_eq!(r.consume("q", 10).len(), 2);
}

#[test]
fn a_snooze_comes_back_after_its_delay_without_spending_an_attempt() {
    let mut r = Rig::new();
    r.create(
        "q",
        QueueConfig {
            max_retries: 0,
            max_snoozes: 2,
            ..QueueConfig::default()
        },
    );
    r.publish("q", 1, 5);
    for round in 0..2 {
        let d = r.consume_one("q");
        assert_eq!(d.retry_count, 0, "round {round}: no attempt spent");
        assert_eq!(
            snooze(&mut r, &d, 500).unwrap(),
            Reply::Nacked {
                action: NackAction::Snoozed
            }
        );
        let st = r.stats("q");
        assert_eq!((st.delayed, st.ready), (1, 0));
        r.advance(499);
        assert!(r.consume("q", 1).is_empty());
        r.advance(1);
    }
    let d = r.consume_one("q");
    assert_eq!(
        snooze(&mut r, &d, 500).unwrap(),
        Reply::Nacked {
            action: NackAction::DeadLettered
        }
    );
    let Reply::DeadLetters { messages, .. } = r.ok(Command::DlqList {
        queue: "q".into(),
        offset: 0,
        limit: 10,
    }) else {
        panic!()
    };
    assert_eq!(messages[0].reason, DeadLetterReason::SnoozedOut);
}

#[test]
fn a_snooze_must_requeue_and_a_redrive_forgets_past_snoozes() {
    let mut r = Rig::new();
    r.create(
        "q",
        QueueConfig {
            max_snoozes: 1,
            ..QueueConfig::default()
        },
    );
    r.publish("q", 1, 5);
    let d = r.consume_one("q");
    let err = r
        .cmd(Command::Nack {
            queue: "q".into(),
            message_id: d.message_id,
            requeue: false,
            delay_ms: None,
            error: None,
            lease: Some(d.lease),
            snooze: true,
        })
        .unwrap_err();
    assert_eq!(err.code(), "invalid_argument");
    snooze(&mut r, &d, 0).unwrap();
    let d = r.consume_one("q");
    snooze(&mut r, &d, 0).unwrap();
    assert_eq!(r.stats("q").dead_letter_count, 1);
    r.ok(Command::DlqRetry {
        queue: "q".into(),
        message_ids: None,
    });
    let d = r.consume_one("q");
    assert_eq!(
        snooze(&mut r, &d, 0).unwrap(),
        Reply::Nacked {
            action: NackAction::Snoozed
        }
    );
}

#[test]
fn sessions_are_pushed_within_the_limits_and_resumed_by_acks() {
    let mut r = Rig::new();
    r.create(
        "q",
        QueueConfig {
            max_in_flight: Some(2),
            ..QueueConfig::default()
        },
    );
    for n in 1..=4 {
        r.publish("q", n, 5);
    }
    r.ok(Command::Attach {
        queue: "q".into(),
        consumer_id: None,
        credit: 10,
        lease_ms: Some(60_000),
    });
    let pushed = r.delivered();
    assert_eq!(pushed.len(), 2);
    pause(&mut r, "q");
    r.ack("q", &pushed[0]).unwrap();
    assert!(r.delivered().is_empty(), "paused: the freed credit waits");
    resume(&mut r, "q");
    assert_eq!(r.delivered().iter().map(n_of).collect::<Vec<_>>(), vec![3]);
}

#[test]
fn flow_settings_are_validated() {
    let mut r = Rig::new();
    let bad = [
        QueueConfig {
            max_in_flight: Some(0),
            ..QueueConfig::default()
        },
        QueueConfig {
            group_concurrency: Some(0),
            ..QueueConfig::default()
        },
        QueueConfig {
            ordered_groups: true,
            group_concurrency: Some(2),
            ..QueueConfig::default()
        },
        QueueConfig {
            rate_limit: Some(RateLimit { max: 0, per_ms: 10 }),
            ..QueueConfig::default()
        },
        QueueConfig {
            group_rate_limit: Some(RateLimit { max: 1, per_ms: 0 }),
            ..QueueConfig::default()
        },
        QueueConfig {
            max_snoozes: 1_000_000,
            ..QueueConfig::default()
        },
    ];
    for config in bad {
        let err = r
            .cmd(Command::CreateQueue {
                queue: "q".into(),
                config: Some(Box::new(config.clone())),
            })
            .unwrap_err();
        assert_eq!(err.code(), "invalid_argument", "{config:?}");
    }
    r.create(
        "q",
        QueueConfig {
            ordered_groups: true,
            group_concurrency: Some(1),
            ..QueueConfig::default()
        },
    );
}

#[test]
fn the_flow_commands_and_settings_have_a_snake_case_json_form() {
    let cmds = [
        json!({"type": "pause_queue", "queue": "q"}),
        json!({"type": "resume_queue", "queue": "q"}),
        json!({"type": "rate_limit", "queue": "q", "for_ms": 5000}),
        json!({"type": "groups", "queue": "q", "limit": 10}),
        json!({"type": "publish", "queue": "q", "message": 1, "group": "user-7"}),
        json!({"type": "nack", "queue": "q", "message_id": uuid::Uuid::nil(),
               "delay_ms": 10, "snooze": true}),
        json!({"type": "configure_queue", "queue": "q", "config": {
            "max_in_flight": 4, "group_concurrency": 1, "ordered_groups": true,
            "fair_groups": true, "rate_limit": {"max": 10, "per_ms": 1000},
            "group_rate_limit": {"max": 2, "per_ms": 60000}, "max_snoozes": 5}}),
    ];
    for text in cmds {
        let cmd: Command = serde_json::from_value(text.clone()).expect("parses");
        let back = serde_json::to_value(&cmd).unwrap();
        let again: Command = serde_json::from_value(back).unwrap();
        assert_eq!(again, cmd, "{text}");
    }
    let groups: Command = serde_json::from_value(json!({"type": "groups", "queue": "q"})).unwrap();
    assert_eq!(
        groups,
        Command::Groups {
            queue: "q".into(),
            limit: 100
        }
    );
    assert!(!groups.is_mutation());
    // A plain nack and a plain message serialize as they always have.
    let nack = serde_json::to_value(Command::Nack {
        queue: "q".into(),
        message_id: uuid::Uuid::nil(),
        requeue: true,
        delay_ms: None,
        error: None,
        lease: None,
        snooze: false,
    })
    .unwrap();
    assert!(nack.get("snooze").is_none(), "{nack}");
    let reply = serde_json::to_value(Reply::QueuePaused { paused: true }).unwrap();
    assert_eq!(reply, json!({"type": "queue_paused", "paused": true}));
}

// Every command moves as big as its largest kind. A queue's settings (grown by the flow
// settings) are boxed in the commands that carry them, so publish, consume and ack move no
// more than they did before flow control.
#[test]
#[cfg(target_pointer_width = "64")]
fn commands_stay_small() {
    assert!(size_of::<QueueConfig>() > 200, "the settings are big");
    assert!(size_of::<Command>() <= 192, "{}", size_of::<Command>());
}
