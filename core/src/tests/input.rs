//! Input the engine refuses the same way whichever host sent it: TTLs of 0, ids and topics
//! with control characters, integer overflow.

use serde_json::json;

use super::Rig;
use crate::{Command, Error, Headers, Json};

fn invalid(r: &Result<crate::Reply, Error>, field: &str) -> bool {
    matches!(r, Err(Error::InvalidArgument { field: f, .. }) if f == field)
}

#[test]
fn a_kv_ttl_of_zero_is_refused_not_expired_at_once() {
    let mut r = Rig::new();
    let set = r.cmd(Command::KvSet {
        key: "k".into(),
        value: Json::from_value(&json!(1)),
        ttl_ms: Some(0),
    });
    assert!(invalid(&set, "ttl_ms"), "{set:?}");
    r.ok(Command::KvSet {
        key: "k".into(),
        value: Json::from_value(&json!(1)),
        ttl_ms: None,
    });
    let expire = r.cmd(Command::KvExpire {
        key: "k".into(),
        ttl_ms: 0,
    });
    assert!(invalid(&expire, "ttl_ms"), "{expire:?}");
    let mset = r.cmd(Command::KvMset {
        entries: vec![crate::KvEntry {
            key: "m".into(),
            value: Json::from_value(&json!(1)),
            ttl_ms: Some(0),
        }],
    });
    assert!(invalid(&mset, "ttl_ms"), "{mset:?}");
}

#[test]
fn incr_past_the_integer_range_fails() {
    let mut r = Rig::new();
    r.ok(Command::KvIncr {
        key: "n".into(),
        by: i64::MAX,
    });
    let over = r.cmd(Command::KvIncr {
        key: "n".into(),
        by: 1,
    });
    assert!(invalid(&over, "by"), "{over:?}");
    r.ok(Command::KvSet {
        key: "m".into(),
        value: Json::from_value(&json!(-1)),
        ttl_ms: None,
    });
    let under = r.cmd(Command::KvIncr {
        key: "m".into(),
        by: i64::MIN,
    });
    assert!(invalid(&under, "by"), "{under:?}");
}

#[test]
fn control_characters_are_refused_in_ids_and_topics() {
    let mut r = Rig::new();
    r.publish("q", 1, 5);
    let consume = r.cmd(Command::Consume {
        queue: "q".into(),
        wait_ms: 0,
        lease_ms: None,
        max_messages: 1,
        consumer_id: Some("w\0x".into()),
    });
    assert!(invalid(&consume, "consumer_id"), "{consume:?}");
    let attach = r.cmd(Command::Attach {
        queue: "q".into(),
        consumer_id: Some("x".repeat(5_000)),
        credit: 1,
        lease_ms: None,
    });
    assert!(invalid(&attach, "consumer_id"), "{attach:?}");
    let publish = r.cmd(Command::PubsubPublish {
        topic: "a.b\0c".into(),
        message: Json::from_value(&json!(1)),
        headers: Headers::default(),
    });
    assert!(invalid(&publish, "topic"), "{publish:?}");
    let subscribe = r.cmd(Command::Subscribe {
        subscriber_id: None,
        patterns: vec!["a.\u{7}".into()],
        credit: 1,
        idle_ms: None,
    });
    assert!(invalid(&subscribe, "pattern"), "{subscribe:?}");
}
