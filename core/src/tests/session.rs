//! Consumer sessions: credit taken per pushed delivery and returned when it ends, round robin
//! between sessions, one line shared with long-poll waiters, give-back on detach counted as an
//! attempt, and what deleting a queue or dropping consumers does to sessions.
//!
//! Method: drive the engine through `handle` with a hand-moved clock and read the `Pushed`
//! events; every step also runs `check_invariants`, which checks each session's held set
//! against the messages in flight.

use crate::{
    Command, DeadLetterReason, Delivery, Event, LeaseRef, NackAction, QueueConfig, Reply, SessionId,
};

use super::Rig;

fn attach(r: &mut Rig, queue: &str, credit: u32) -> SessionId {
    attach_as(r, queue, credit, None)
}

fn attach_as(r: &mut Rig, queue: &str, credit: u32, consumer: Option<&str>) -> SessionId {
    match r.ok(Command::Attach {
        queue: queue.into(),
        consumer_id: consumer.map(str::to_owned),
        credit,
        lease_ms: Some(10_000),
    }) {
        Reply::Attached { session_id, .. } => session_id,
        other => panic!("attach replied {other:?}"),
    }
}

/// Deliveries pushed since the last call, per session, in event order.
fn pushed(r: &mut Rig) -> Vec<(SessionId, Vec<Delivery>)> {
    r.events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Pushed {
                session_id,
                messages,
            } => Some((session_id, messages)),
            _ => None,
        })
        .collect()
}

fn pushed_to(r: &mut Rig, s: SessionId) -> Vec<Delivery> {
    pushed(r)
        .into_iter()
        .filter(|(x, _)| *x == s)
        .flat_map(|(_, m)| m)
        .collect()
}

fn detach(r: &mut Rig, s: SessionId, give_back: bool) -> u64 {
    match r.ok(Command::Detach {
        session_id: s,
        give_back,
    }) {
        Reply::Detached { returned } => returned,
        other => panic!("detach replied {other:?}"),
    }
}

#[test]
fn a_session_is_pushed_up_to_its_credit_and_gets_it_back_on_ack() {
    let mut r = Rig::new();
    r.create("q", QueueConfig::default());
    for n in 0..5 {
        r.publish("q", n, 5);
    }
    let s = attach(&mut r, "q", 2);
    let got = pushed_to(&mut r, s);
    assert_eq!(got.len(), 2, "two credits, two deliveries");
    assert_eq!(r.stats("q").in_flight, 2);
    r.ack("q", &got[0]).expect("ack");
    let more = pushed_to(&mut r, s);
    assert_eq!(
        more.len(),
        1,
        "the ack's credit came back and was used at once"
    );
    assert_eq!(r.stats("q").in_flight, 2);
    assert_eq!(r.stats("q").sessions, 1);
}

#[test]
fn a_nack_and_a_lease_expiry_return_credit_too() {
    let mut r = Rig::new();
    r.create("q", QueueConfig::default());
    let s = attach(&mut r, "q", 1);
    r.publish("q", 1, 5);
    r.publish("q", 2, 5);
    let first = pushed_to(&mut r, s);
    assert_eq!(first.len(), 1);
    let nack = Command::Nack {
        queue: "q".into(),
        message_id: first[0].message_id,
        requeue: true,
        delay_ms: Some(60_000),
        error: None,
        lease: Some(first[0].lease),
        snooze: false,
    };
    assert_eq!(
        r.ok(nack),
        Reply::Nacked {
            action: NackAction::Delayed
        }
    );
    let second = pushed_to(&mut r, s);
    assert_eq!(second.len(), 1, "the nack returned the credit");
    r.advance(10_000);
    assert_eq!(r.stats("q").lease_expired_total, 1);
    assert_eq!(
        pushed_to(&mut r, s).len(),
        1,
        "the expired lease's credit came back; its message was pushed again"
    );
}

#[test]
fn granted_credit_pushes_more_and_is_bounded() {
    let mut r = Rig::new();
    r.create("q", QueueConfig::default());
    for n in 0..4 {
        r.publish("q", n, 5);
    }
    let s = attach(&mut r, "q", 1);
    assert_eq!(pushed_to(&mut r, s).len(), 1);
    let credited = r.ok(Command::SessionCredit {
        session_id: s,
        credit: 5,
    });
    assert_eq!(
        credited,
        Reply::SessionCredited { credit: 2 },
        "3 pushed, 2 left"
    );
    assert_eq!(pushed_to(&mut r, s).len(), 3);
    let max = r.engine.config().limits.max_session_credit;
    let too_much = r.cmd(Command::SessionCredit {
        session_id: s,
        credit: max,
    });
    assert!(matches!(too_much, Err(crate::Error::LimitExceeded { .. })));
    let unknown = r.cmd(Command::SessionCredit {
        session_id: SessionId(999),
        credit: 1,
    });
    assert!(matches!(unknown, Err(crate::Error::SessionNotFound { .. })));
}

#[test]
fn sessions_share_a_busy_queue_round_robin() {
    let mut r = Rig::new();
    r.create("q", QueueConfig::default());
    let a = attach(&mut r, "q", 10);
    let b = attach(&mut r, "q", 10);
    for n in 0..6 {
        r.publish("q", n, 5);
    }
    let order: Vec<SessionId> = pushed(&mut r).into_iter().map(|(s, _)| s).collect();
    assert_eq!(order, vec![a, b, a, b, a, b]);
}

#[test]
fn waiters_and_sessions_stand_in_one_line() {
    let mut r = Rig::new();
    r.create("q", QueueConfig::default());
    let parked = r.ok(Command::Consume {
        queue: "q".into(),
        wait_ms: 5_000,
        lease_ms: None,
        max_messages: 1,
        consumer_id: None,
    });
    let Reply::Waiting { waiter_id } = parked else {
        panic!("expected to park: {parked:?}");
    };
    let s = attach(&mut r, "q", 5);
    r.publish("q", 1, 5);
    r.publish("q", 2, 5);
    let events = r.events();
    assert!(
        matches!(&events[0], Event::Delivered { waiter_id: w, messages } if *w == waiter_id && messages.len() == 1),
        "the waiter came first: {events:?}"
    );
    assert!(
        matches!(&events[1], Event::Pushed { session_id, messages } if *session_id == s && messages.len() == 1),
        "then the session: {events:?}"
    );
}

#[test]
fn detach_gives_back_what_the_session_held_as_an_attempt() {
    let mut r = Rig::new();
    r.create(
        "q",
        QueueConfig {
            max_retries: 1,
            ..QueueConfig::default()
        },
    );
    r.publish("q", 1, 5);
    r.publish("q", 2, 5);
    let s = attach(&mut r, "q", 2);
    let held = pushed_to(&mut r, s);
    r.ack("q", &held[0]).expect("ack");
    assert_eq!(detach(&mut r, s, true), 1, "the unacked one goes back");
    let st = r.stats("q");
    assert_eq!((st.ready, st.in_flight, st.sessions), (1, 0, 0));
    assert_eq!(
        st.nacked_total, 1,
        "a give-back counts as a failed delivery"
    );
    // A poison message that kills every worker still reaches the DLQ.
    let s2 = attach(&mut r, "q", 1);
    let again = pushed_to(&mut r, s2);
    assert_eq!(again[0].retry_count, 1);
    assert_eq!(detach(&mut r, s2, true), 1);
    let st = r.stats("q");
    assert_eq!((st.ready, st.dead_letter_count), (0, 1));
    let dlq = r.ok(Command::DlqList {
        queue: "q".into(),
        offset: 0,
        limit: 10,
    });
    let Reply::DeadLetters { messages, .. } = dlq else {
        panic!("dlq: {dlq:?}");
    };
    assert_eq!(messages[0].reason, DeadLetterReason::MaxRetriesExceeded);
    assert_eq!(
        messages[0].last_error.as_deref(),
        Some("consumer disconnected")
    );
}

#[test]
fn detach_without_give_back_leaves_leases_to_their_deadlines() {
    let mut r = Rig::new();
    r.create("q", QueueConfig::default());
    r.publish("q", 1, 5);
    let s = attach(&mut r, "q", 1);
    let held = pushed_to(&mut r, s);
    assert_eq!(detach(&mut r, s, false), 0);
    assert_eq!(r.stats("q").in_flight, 1, "still leased");
    r.ack("q", &held[0]).expect("the lease still holds");
    assert!(
        r.cmd(Command::Detach {
            session_id: s,
            give_back: true
        })
        .is_err()
    );
}

#[test]
fn a_late_ack_after_redelivery_does_not_take_the_new_delivery_s_credit() {
    let mut r = Rig::new();
    r.create("q", QueueConfig::default());
    r.publish("q", 1, 5);
    let s = attach(&mut r, "q", 1);
    let first = pushed_to(&mut r, s);
    r.advance(10_000);
    let second = pushed_to(&mut r, s);
    assert_eq!(second.len(), 1, "redelivered to the same session");
    assert_ne!(first[0].lease, second[0].lease);
    assert!(r.ack("q", &first[0]).is_err(), "the stale lease is refused");
    r.ack("q", &second[0]).expect("ack");
    r.publish("q", 2, 5);
    assert_eq!(
        pushed_to(&mut r, s).len(),
        1,
        "exactly one credit, free again"
    );
}

#[test]
fn give_back_returns_unread_deliveries_and_skips_ended_ones() {
    let mut r = Rig::new();
    r.create("q", QueueConfig::default());
    r.publish("q", 1, 5);
    r.publish("q", 2, 5);
    let got = r.consume("q", 2);
    r.ack("q", &got[0]).expect("ack");
    let leases = got
        .iter()
        .map(|d| LeaseRef {
            message_id: d.message_id,
            lease: d.lease,
        })
        .collect();
    let reply = r.ok(Command::GiveBack {
        queue: "q".into(),
        leases,
    });
    assert_eq!(reply, Reply::GivenBack { returned: 1 });
    assert_eq!(r.stats("q").ready, 1);
}

#[test]
fn deleting_the_queue_ends_its_sessions() {
    let mut r = Rig::new();
    r.create("q", QueueConfig::default());
    let s = attach(&mut r, "q", 1);
    r.ok(Command::DeleteQueue { queue: "q".into() });
    let events = r.events();
    assert!(events.contains(&Event::SessionEnded { session_id: s }));
    assert!(
        r.cmd(Command::SessionCredit {
            session_id: s,
            credit: 1
        })
        .is_err()
    );
}

#[test]
fn dropping_consumers_cancels_waiters_and_sessions_but_keeps_leases() {
    let mut r = Rig::new();
    r.create("q", QueueConfig::default());
    r.create("empty", QueueConfig::default());
    r.publish("q", 1, 5);
    let s = attach(&mut r, "q", 1);
    let held = pushed_to(&mut r, s);
    r.ok(Command::Consume {
        queue: "empty".into(),
        wait_ms: 5_000,
        lease_ms: None,
        max_messages: 1,
        consumer_id: None,
    });
    let reply = r.ok(Command::DropConsumers);
    assert_eq!(
        reply,
        Reply::ConsumersDropped {
            waiters: 1,
            sessions: 1
        }
    );
    assert_eq!(r.stats("q").in_flight, 1);
    assert_eq!(r.stats("empty").waiters, 0);
    r.advance(10_000);
    assert_eq!(r.stats("q").ready, 1, "the lease ran to its deadline");
    assert!(r.ack("q", &held[0]).is_err());
}

#[test]
fn prefetch_bounds_a_session_with_more_credit() {
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
    let a = attach_as(&mut r, "q", 10, Some("w"));
    assert_eq!(
        pushed_to(&mut r, a).len(),
        2,
        "the consumer id's prefetch caps it"
    );
    let b = attach_as(&mut r, "q", 10, Some("w"));
    assert_eq!(
        pushed_to(&mut r, b).len(),
        0,
        "same consumer id, same prefetch"
    );
    assert_eq!(r.stats("q").consumers, 1);
}

#[test]
fn attach_validates_its_arguments() {
    let mut r = Rig::new();
    r.create("q", QueueConfig::default());
    let unknown = r.cmd(Command::Attach {
        queue: "nope".into(),
        consumer_id: None,
        credit: 1,
        lease_ms: None,
    });
    assert!(matches!(unknown, Err(crate::Error::QueueNotFound { .. })));
    let long_id = r.cmd(Command::Attach {
        queue: "q".into(),
        consumer_id: Some("x".repeat(300)),
        credit: 1,
        lease_ms: None,
    });
    assert!(matches!(long_id, Err(crate::Error::InvalidArgument { .. })));
    let zero_lease = r.cmd(Command::Attach {
        queue: "q".into(),
        consumer_id: None,
        credit: 1,
        lease_ms: Some(0),
    });
    assert!(matches!(
        zero_lease,
        Err(crate::Error::InvalidArgument { .. })
    ));
    let max = r.engine.config().limits.max_session_credit;
    let big = r.cmd(Command::Attach {
        queue: "q".into(),
        consumer_id: None,
        credit: max + 1,
        lease_ms: None,
    });
    assert!(matches!(big, Err(crate::Error::LimitExceeded { .. })));
    assert_eq!(r.stats("q").sessions, 0, "nothing attached");
}

#[test]
fn a_session_survives_a_snapshot_restore() {
    let mut r = Rig::new();
    r.create("q", QueueConfig::default());
    let s = attach(&mut r, "q", 1);
    r.publish("q", 1, 5);
    let held = pushed_to(&mut r, s);
    let text = serde_json::to_string(&r.engine).expect("serialize");
    let mut restored: crate::Engine = serde_json::from_str(&text).expect("deserialize");
    assert_eq!(restored.state_digest(), r.engine.state_digest());
    restored
        .handle(
            crate::Millis(r.now),
            Command::Ack {
                queue: "q".into(),
                message_id: held[0].message_id,
                lease: Some(held[0].lease),
                result: None,
            },
        )
        .expect("ack");
    restored.check_invariants();
}
