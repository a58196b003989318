//! Where a retried message stands when it is ready again: the back of its priority by
//! default (as in Synap), its original place with `retry_position: original`.
//!
//! Method: publish, nack (at once or with a delay), then consume everything and read the order.

use super::{Rig, n_of};
use crate::{Command, QueueConfig, RetryPosition};

#[test]
fn retried_message_goes_to_the_back_by_default() {
    let mut r = Rig::new();
    r.publish("q", 1, 5);
    r.publish("q", 2, 5);
    r.publish("q", 3, 9);
    let first = r.consume_one("q");
    assert_eq!(n_of(&first), 3);
    r.nack("q", &first, true);
    let order: Vec<u64> = r.consume("q", 10).iter().map(n_of).collect();
    assert_eq!(
        order,
        vec![3, 1, 2],
        "back of its own priority, still ahead of lower ones"
    );
    let one = r.consume("q", 1);
    assert!(one.is_empty());
}

#[test]
fn a_delayed_retry_joins_the_back_when_it_is_ready() {
    let mut r = Rig::new();
    r.publish("q", 1, 5);
    let first = r.consume_one("q");
    r.ok(Command::Nack {
        queue: "q".into(),
        message_id: first.message_id,
        requeue: true,
        delay_ms: Some(100),
        error: None,
        lease: Some(first.lease),
        snooze: false,
    });
    r.publish("q", 2, 5);
    r.advance(100);
    r.publish("q", 3, 5);
    let order: Vec<u64> = r.consume("q", 10).iter().map(n_of).collect();
    assert_eq!(
        order,
        vec![2, 1, 3],
        "behind what was ready when its delay ended"
    );
}

#[test]
fn retried_message_keeps_its_place() {
    let mut r = Rig::new();
    r.create(
        "q",
        QueueConfig {
            retry_position: RetryPosition::Original,
            ..QueueConfig::default()
        },
    );
    r.publish("q", 1, 5);
    r.publish("q", 2, 5);
    let first = r.consume_one("q");
    assert_eq!(n_of(&first), 1);
    r.nack("q", &first, true);
    let order: Vec<u64> = r.consume("q", 10).iter().map(n_of).collect();
    assert_eq!(
        order,
        vec![1, 2],
        "the retried message goes back ahead of later ones"
    );
}
