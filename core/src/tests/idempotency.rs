//! Publish idempotency keys: a retried publish answers with the first one and adds nothing,
//! within the window, per queue, in batches, across a snapshot, up to the key limit.

use serde_json::json;

use super::Rig;
use crate::{
    Command, Engine, EngineConfig, Error, Limits, PublishMessage, Published, Reply, json_message,
};

fn keyed(n: u64, key: &str) -> PublishMessage {
    PublishMessage {
        idempotency_key: Some(key.into()),
        ..json_message(json!({ "n": n }))
    }
}

fn published(reply: Reply) -> Published {
    match reply {
        Reply::Published(p) => p,
        other => panic!("{other:?}"),
    }
}

fn batch(r: &mut Rig, queue: &str, messages: Vec<PublishMessage>) -> Result<Vec<Published>, Error> {
    match r.cmd(Command::PublishBatch {
        queue: queue.into(),
        messages,
    })? {
        Reply::PublishedBatch { messages } => Ok(messages),
        other => panic!("{other:?}"),
    }
}

fn depth(r: &mut Rig, queue: &str) -> u64 {
    r.stats(queue).depth
}

#[test]
fn a_retried_publish_answers_with_the_first_and_adds_nothing() {
    let mut r = Rig::new();
    let first = published(r.publish_with("q", keyed(1, "order-17")).unwrap());
    assert!(!first.duplicate);
    r.publish("q", 2, 5);
    let again = published(r.publish_with("q", keyed(99, "order-17")).unwrap());
    assert!(again.duplicate);
    assert_eq!(again.message_id, first.message_id);
    assert_eq!(again.position, first.position);
    assert_eq!(depth(&mut r, "q"), 2);
    assert_eq!(r.engine.idempotency_keys(), 1);
    // The first body is the one delivered.
    let got = r.consume("q", 10);
    assert_eq!(got.len(), 2);
    assert_eq!(
        got[0].message.as_ref().unwrap().to_value(),
        json!({ "n": 1 })
    );
}

#[test]
fn the_answer_holds_after_the_message_is_acked() {
    let mut r = Rig::new();
    let first = published(r.publish_with("q", keyed(1, "k")).unwrap());
    let d = r.consume_one("q");
    r.ack("q", &d).unwrap();
    let again = published(r.publish_with("q", keyed(1, "k")).unwrap());
    assert_eq!(again.message_id, first.message_id);
    assert_eq!(depth(&mut r, "q"), 0);
    assert!(
        r.consume("q", 10).is_empty(),
        "an acked task must not come back"
    );
}

#[test]
fn a_key_runs_out_after_the_window() {
    let config = EngineConfig {
        idempotency_window_ms: 1_000,
        ..EngineConfig::default()
    };
    let mut r = Rig::with(config);
    let first = published(r.publish_with("q", keyed(1, "k")).unwrap());
    r.advance(999);
    assert!(published(r.publish_with("q", keyed(1, "k")).unwrap()).duplicate);
    r.advance(1);
    let later = published(r.publish_with("q", keyed(1, "k")).unwrap());
    assert!(!later.duplicate);
    assert_ne!(later.message_id, first.message_id);
    assert_eq!(depth(&mut r, "q"), 2);
    // The new publish starts a new window.
    r.advance(999);
    assert!(published(r.publish_with("q", keyed(1, "k")).unwrap()).duplicate);
    assert_eq!(r.engine.idempotency_keys(), 1);
}

#[test]
fn keys_are_scoped_to_their_queue() {
    let mut r = Rig::new();
    let a = published(r.publish_with("a", keyed(1, "k")).unwrap());
    let b = published(r.publish_with("b", keyed(1, "k")).unwrap());
    assert!(!b.duplicate);
    assert_ne!(a.message_id, b.message_id);
    // A queue deleted and made again forgets its keys.
    r.ok(Command::DeleteQueue { queue: "a".into() });
    assert!(!published(r.publish_with("a", keyed(1, "k")).unwrap()).duplicate);
}

#[test]
fn a_batch_answers_seen_keys_and_repeats_within_itself() {
    let mut r = Rig::new();
    let seen = published(r.publish_with("q", keyed(0, "seen")).unwrap());
    let plain = json_message(json!({ "n": 9 }));
    let out = batch(
        &mut r,
        "q",
        vec![keyed(1, "a"), keyed(2, "seen"), plain, keyed(3, "a")],
    )
    .unwrap();
    assert_eq!(
        out.iter().map(|p| p.duplicate).collect::<Vec<_>>(),
        [false, true, false, true]
    );
    assert_eq!(out[1].message_id, seen.message_id);
    assert_eq!(out[3].message_id, out[0].message_id);
    assert_eq!(depth(&mut r, "q"), 3);
    // The whole batch retried adds nothing.
    let again = batch(&mut r, "q", vec![keyed(1, "a"), keyed(3, "a")]).unwrap();
    assert!(
        again
            .iter()
            .all(|p| p.duplicate && p.message_id == out[0].message_id)
    );
    assert_eq!(depth(&mut r, "q"), 3);
}

#[test]
fn a_refused_batch_records_no_key() {
    let mut r = Rig::new();
    r.create(
        "q",
        crate::QueueConfig {
            max_depth: 1,
            ..crate::QueueConfig::default()
        },
    );
    let err = batch(&mut r, "q", vec![keyed(1, "a"), keyed(2, "b")]).unwrap_err();
    assert!(matches!(err, Error::QueueFull { .. }), "{err:?}");
    assert_eq!(r.engine.idempotency_keys(), 0);
    // Duplicates need no room: the first fills the queue, its retry is still answered.
    published(r.publish_with("q", keyed(1, "a")).unwrap());
    assert!(published(r.publish_with("q", keyed(1, "a")).unwrap()).duplicate);
}

#[test]
fn the_key_limit_is_a_clear_error() {
    let config = EngineConfig {
        limits: Limits {
            max_idempotency_keys: 2,
            ..Limits::default()
        },
        idempotency_window_ms: 1_000,
        ..EngineConfig::default()
    };
    let mut r = Rig::with(config);
    published(r.publish_with("q", keyed(1, "a")).unwrap());
    published(r.publish_with("q", keyed(2, "b")).unwrap());
    let err = r.publish_with("q", keyed(3, "c")).unwrap_err();
    assert!(matches!(err, Error::LimitExceeded { .. }), "{err:?}");
    // Seen keys and keyless publishes still go through; run-out keys free room.
    assert!(published(r.publish_with("q", keyed(1, "a")).unwrap()).duplicate);
    published(r.publish_with("q", json_message(json!(4))).unwrap());
    r.advance(1_000);
    assert!(!published(r.publish_with("q", keyed(3, "c")).unwrap()).duplicate);
}

#[test]
fn bad_keys_are_refused() {
    let mut r = Rig::new();
    for key in ["", "a\u{0}b", "line\nbreak", &"k".repeat(256)] {
        let err = r.publish_with("q", keyed(1, key)).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidArgument { field, .. } if field == "idempotency_key"),
            "{key:?}: {err:?}"
        );
    }
}

#[test]
fn keys_survive_a_snapshot_and_a_replay() {
    let mut r = Rig::new();
    let first = published(r.publish_with("q", keyed(1, "k")).unwrap());
    let bytes = serde_json::to_vec(&r.engine).unwrap();
    let mut restored: Engine = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(restored.state_digest(), r.engine.state_digest());
    let cmd = Command::Publish {
        queue: "q".into(),
        message: keyed(2, "k"),
    };
    let again = published(restored.handle(crate::Millis(r.now), cmd).unwrap());
    assert!(again.duplicate);
    assert_eq!(again.message_id, first.message_id);
}
