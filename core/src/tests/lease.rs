//! Lease rules: ack, nack, extend, expiry, retries, the dead-letter queue and redrive.

use serde_json::json;
use uuid::Uuid;

use super::Rig;
use crate::{
    Backoff, Command, DeadLetterReason, EngineConfig, Error, NackAction, QueueConfig, Reply,
    json_message,
};

fn dlq(r: &mut Rig, queue: &str) -> (u64, Vec<crate::DeadLetter>) {
    match r.ok(Command::DlqList {
        queue: queue.into(),
        offset: 0,
        limit: 100,
    }) {
        Reply::DeadLetters { total, messages } => (total, messages),
        other => panic!("{other:?}"),
    }
}

#[test]
fn ack_removes_the_message() {
    let mut r = Rig::new();
    r.publish("q", 1, 5);
    let d = r.consume_one("q");
    assert_eq!(d.retry_count, 0);
    assert_eq!(r.ack("q", &d), Ok(Reply::Acked));
    let s = r.stats("q");
    assert_eq!((s.depth, s.in_flight, s.acked_total), (0, 0, 1));
    assert!(!r.engine.holds_message("q", d.message_id));
}

#[test]
fn double_ack_is_message_not_found() {
    let mut r = Rig::new();
    r.publish("q", 1, 5);
    let d = r.consume_one("q");
    r.ack("q", &d).unwrap();
    assert_eq!(r.ack("q", &d).unwrap_err().code(), "message_not_found");
}

#[test]
fn ack_after_lease_expiry_is_lease_mismatch() {
    let mut r = Rig::new();
    r.publish("q", 1, 5);
    let d = r.consume_as("q", 1, Some(100), None).remove(0);
    r.advance(100);
    let err = r.ack("q", &d).unwrap_err();
    assert_eq!(err.code(), "lease_mismatch");
    assert_eq!(r.stats("q").ready, 1, "the message was requeued, not lost");
}

#[test]
fn stale_lease_token_cannot_ack_the_new_delivery() {
    let mut r = Rig::new();
    r.publish("q", 1, 5);
    let first = r.consume_as("q", 1, Some(100), None).remove(0);
    r.advance(100);
    let second = r.consume_one("q");
    assert_eq!(second.message_id, first.message_id);
    assert_ne!(second.lease, first.lease);
    assert_eq!(second.retry_count, 1);
    assert_eq!(r.ack("q", &first).unwrap_err().code(), "lease_mismatch");
    assert_eq!(r.stats("q").in_flight, 1, "the new delivery is untouched");
    assert_eq!(r.ack("q", &second), Ok(Reply::Acked));
}

#[test]
fn ack_without_a_lease_token_acks_the_current_delivery() {
    let mut r = Rig::new();
    let id = r.publish("q", 1, 5);
    r.consume_one("q");
    let reply = r.cmd(Command::Ack {
        queue: "q".into(),
        message_id: id,
        lease: None,
        result: None,
    });
    assert_eq!(reply, Ok(Reply::Acked));
}

#[test]
fn ack_of_a_ready_message_is_lease_mismatch() {
    let mut r = Rig::new();
    let id = r.publish("q", 1, 5);
    let err = r
        .cmd(Command::Ack {
            queue: "q".into(),
            message_id: id,
            lease: None,
            result: None,
        })
        .unwrap_err();
    assert_eq!(err.code(), "lease_mismatch");
}

#[test]
fn nack_of_an_unknown_id_is_message_not_found() {
    let mut r = Rig::new();
    r.publish("q", 1, 5);
    let err = r
        .cmd(Command::Nack {
            queue: "q".into(),
            message_id: Uuid::nil(),
            requeue: true,
            delay_ms: None,
            error: None,
            lease: None,
            snooze: false,
        })
        .unwrap_err();
    assert_eq!(
        err,
        Error::MessageNotFound {
            message_id: Uuid::nil().to_string()
        }
    );
}

#[test]
fn max_retries_n_allows_n_plus_one_deliveries() {
    let mut r = Rig::new();
    r.create(
        "q",
        QueueConfig {
            max_retries: 2,
            ..QueueConfig::default()
        },
    );
    r.publish("q", 1, 5);
    let mut deliveries = 0;
    loop {
        let got = r.consume("q", 1);
        let Some(d) = got.first() else { break };
        deliveries += 1;
        assert_eq!(d.retry_count, deliveries - 1);
        let Reply::Nacked { action } = r.nack("q", d, true) else {
            panic!()
        };
        if deliveries < 3 {
            assert_eq!(action, NackAction::Requeued);
        } else {
            assert_eq!(action, NackAction::DeadLettered);
        }
    }
    assert_eq!(deliveries, 3);
    let (total, entries) = dlq(&mut r, "q");
    assert_eq!(total, 1);
    assert_eq!(entries[0].reason, DeadLetterReason::MaxRetriesExceeded);
    assert_eq!(entries[0].attempts, 3);
    assert_eq!(entries[0].last_error.as_deref(), Some("boom"));
    assert_eq!(&*entries[0].origin_queue, "q");
}

#[test]
fn per_message_max_retries_overrides_the_queue() {
    let mut r = Rig::new();
    let m = crate::PublishMessage {
        max_retries: Some(0),
        ..json_message(json!(1))
    };
    r.publish_with("q", m).unwrap();
    let d = r.consume_one("q");
    assert_eq!(d.max_retries, 0);
    assert_eq!(
        r.nack("q", &d, true),
        Reply::Nacked {
            action: NackAction::DeadLettered
        }
    );
}

#[test]
fn lease_expiry_counts_like_a_nack_and_exhausts_retries() {
    let mut r = Rig::new();
    r.create(
        "q",
        QueueConfig {
            max_retries: 1,
            ack_deadline_ms: 50,
            ..QueueConfig::default()
        },
    );
    r.publish("q", 1, 5);
    r.consume_one("q");
    r.advance(50);
    r.consume_one("q");
    r.advance(50);
    let s = r.stats("q");
    assert_eq!(
        (s.lease_expired_total, s.nacked_total, s.dead_letter_count),
        (2, 0, 1)
    );
    let (_, entries) = dlq(&mut r, "q");
    assert_eq!(entries[0].last_error.as_deref(), Some("lease expired"));
}

#[test]
fn nack_without_requeue_dead_letters_as_rejected() {
    let mut r = Rig::new();
    r.publish("q", 1, 5);
    let d = r.consume_one("q");
    assert_eq!(
        r.nack("q", &d, false),
        Reply::Nacked {
            action: NackAction::DeadLettered
        }
    );
    let (_, entries) = dlq(&mut r, "q");
    assert_eq!(entries[0].reason, DeadLetterReason::Rejected);
}

#[test]
fn retry_delays_list_with_last_value_repeating() {
    let mut r = Rig::new();
    r.create(
        "q",
        QueueConfig {
            max_retries: 5,
            retry_delays_ms: vec![100, 1_000],
            ..QueueConfig::default()
        },
    );
    r.publish("q", 1, 5);
    for expected in [100, 1_000, 1_000] {
        let d = r.consume_one("q");
        assert_eq!(
            r.nack("q", &d, true),
            Reply::Nacked {
                action: NackAction::Delayed
            }
        );
        r.advance(expected - 1);
        assert!(
            r.consume("q", 1).is_empty(),
            "not ready before {expected} ms"
        );
        r.advance(1);
    }
    assert_eq!(r.consume("q", 1).len(), 1);
}

#[test]
fn explicit_nack_delay_overrides_the_policy() {
    let mut r = Rig::new();
    r.publish("q", 1, 5);
    let d = r.consume_one("q");
    let reply = r.ok(Command::Nack {
        queue: "q".into(),
        message_id: d.message_id,
        requeue: true,
        delay_ms: Some(300),
        error: None,
        lease: Some(d.lease),
        snooze: false,
    });
    assert_eq!(
        reply,
        Reply::Nacked {
            action: NackAction::Delayed
        }
    );
    r.advance(299);
    assert!(r.consume("q", 1).is_empty());
    r.advance(1);
    assert_eq!(r.consume("q", 1).len(), 1);
}

#[test]
fn exponential_backoff_grows_caps_and_jitters_deterministically() {
    let delays = |seed: u64, jitter: f64| {
        let mut r = Rig::with(EngineConfig::default());
        r.engine = crate::Engine::new(EngineConfig::default(), seed);
        r.create(
            "q",
            QueueConfig {
                max_retries: 10,
                backoff: Some(Backoff {
                    initial_ms: 100,
                    multiplier: 2.0,
                    max_ms: 500,
                    jitter,
                }),
                ..QueueConfig::default()
            },
        );
        r.publish("q", 1, 5);
        let mut out = Vec::new();
        for _ in 0..5 {
            let d = r.consume_one("q");
            r.nack("q", &d, true);
            let due = r.engine.poll_timeout().expect("retry timer");
            out.push(due.0 - r.now);
            r.now = due.0;
        }
        out
    };
    assert_eq!(delays(1, 0.0), vec![100, 200, 400, 500, 500]);
    let jittered = delays(1, 0.5);
    assert_eq!(jittered, delays(1, 0.5), "same seed, same jitter");
    assert_ne!(jittered, delays(2, 0.5), "another seed, other jitter");
    for (j, full) in jittered.iter().zip([100, 200, 400, 500, 500]) {
        assert!(*j <= full && *j >= full / 2, "{j} within jitter of {full}");
    }
}

#[test]
fn extend_moves_the_deadline() {
    let mut r = Rig::new();
    r.publish("q", 1, 5);
    let d = r.consume_as("q", 1, Some(100), None).remove(0);
    r.advance(90);
    let reply = r.ok(Command::Extend {
        queue: "q".into(),
        message_id: d.message_id,
        lease_ms: 100,
        lease: Some(d.lease),
    });
    assert_eq!(
        reply,
        Reply::Extended {
            lease_deadline: crate::Millis(r.now + 100),
            cancelled: false,
        }
    );
    r.advance(90);
    assert_eq!(
        r.stats("q").in_flight,
        1,
        "still leased past the original deadline"
    );
    assert_eq!(r.ack("q", &d), Ok(Reply::Acked));
}

#[test]
fn extend_with_a_stale_lease_is_lease_mismatch() {
    let mut r = Rig::new();
    r.publish("q", 1, 5);
    let d = r.consume_as("q", 1, Some(100), None).remove(0);
    r.advance(100);
    r.consume_one("q");
    let err = r
        .cmd(Command::Extend {
            queue: "q".into(),
            message_id: d.message_id,
            lease_ms: 100,
            lease: Some(d.lease),
        })
        .unwrap_err();
    assert_eq!(err.code(), "lease_mismatch");
}

#[test]
fn redrive_resets_attempts_and_returns_to_the_queue() {
    let mut r = Rig::new();
    r.create(
        "q",
        QueueConfig {
            max_retries: 0,
            ..QueueConfig::default()
        },
    );
    let a = r.publish("q", 1, 5);
    let b = r.publish("q", 2, 5);
    for _ in 0..2 {
        let d = r.consume_one("q");
        r.nack("q", &d, true);
    }
    assert_eq!(r.stats("q").dead_letter_count, 2);
    let reply = r.ok(Command::DlqRetry {
        queue: "q".into(),
        message_ids: Some(vec![b]),
    });
    assert_eq!(reply, Reply::Redriven { retried: 1 });
    let d = r.consume_one("q");
    assert_eq!((d.message_id, d.retry_count), (b, 0));
    assert_eq!(r.ack("q", &d), Ok(Reply::Acked));
    assert_eq!(
        r.ok(Command::DlqRetry {
            queue: "q".into(),
            message_ids: None
        }),
        Reply::Redriven { retried: 1 }
    );
    assert_eq!(r.consume_one("q").message_id, a);
    assert_eq!(
        r.ok(Command::DlqPurge { queue: "q".into() }),
        Reply::Purged { purged: 0 }
    );
}

#[test]
fn ack_of_a_dead_lettered_message_is_lease_mismatch() {
    let mut r = Rig::new();
    r.publish("q", 1, 5);
    let d = r.consume_one("q");
    r.nack("q", &d, false);
    assert_eq!(r.ack("q", &d).unwrap_err().code(), "lease_mismatch");
}

#[test]
fn full_dlq_drops_its_oldest_entry_and_counts_it() {
    let mut r = Rig::new();
    r.create(
        "q",
        QueueConfig {
            dlq_max: 2,
            ..QueueConfig::default()
        },
    );
    let ids: Vec<_> = (0..3).map(|n| r.publish("q", n, 5)).collect();
    for _ in 0..3 {
        let d = r.consume_one("q");
        r.nack("q", &d, false);
    }
    let (total, entries) = dlq(&mut r, "q");
    assert_eq!(total, 2);
    assert_eq!(entries[0].message_id, ids[1]);
    assert_eq!(r.stats("q").dlq_dropped_total, 1);
}

#[test]
fn a_queue_without_dlq_drops_dead_letters() {
    let mut r = Rig::new();
    r.create(
        "q",
        QueueConfig {
            dead_letter: false,
            ..QueueConfig::default()
        },
    );
    r.publish("q", 1, 5);
    let d = r.consume_one("q");
    r.nack("q", &d, false);
    let s = r.stats("q");
    assert_eq!(
        (
            s.dead_letter_count,
            s.dead_lettered_total,
            s.dlq_dropped_total
        ),
        (0, 1, 1)
    );
}

#[test]
fn dlq_list_pages() {
    let mut r = Rig::new();
    for n in 0..5 {
        r.publish("q", n, 5);
    }
    for _ in 0..5 {
        let d = r.consume_one("q");
        r.nack("q", &d, false);
    }
    let Reply::DeadLetters { total, messages } = r.ok(Command::DlqList {
        queue: "q".into(),
        offset: 3,
        limit: 10,
    }) else {
        panic!()
    };
    assert_eq!((total, messages.len()), (5, 2));
    let err = r
        .cmd(Command::DlqList {
            queue: "q".into(),
            offset: 0,
            limit: 0,
        })
        .unwrap_err();
    assert_eq!(err.code(), "invalid_argument");
}

#[test]
fn long_nack_error_text_is_cut_at_the_limit() {
    let mut config = EngineConfig::default();
    config.limits.max_error_bytes = 5;
    let mut r = Rig::with(config);
    r.publish("q", 1, 5);
    let d = r.consume_one("q");
    r.ok(Command::Nack {
        queue: "q".into(),
        message_id: d.message_id,
        requeue: false,
        delay_ms: None,
        error: Some("ééééé".into()),
        lease: None,
        snooze: false,
    });
    let (_, entries) = dlq(&mut r, "q");
    assert_eq!(entries[0].last_error.as_deref(), Some("éé"));
}
