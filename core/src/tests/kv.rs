//! KV rules: TTL (never returning an expired key), incr, keys by prefix, mget/mset, limits.

use serde_json::json;

use super::Rig;
use crate::{Command, EngineConfig, Event, Json, KvEntry, Reply};

fn set(r: &mut Rig, key: &str, value: serde_json::Value, ttl_ms: Option<u64>) {
    assert_eq!(
        r.ok(Command::KvSet {
            key: key.into(),
            value: Json::from_value(&value),
            ttl_ms
        }),
        Reply::KvOk
    );
}

fn get(r: &mut Rig, key: &str) -> Option<serde_json::Value> {
    match r.ok(Command::KvGet { key: key.into() }) {
        Reply::KvValue(v) => {
            assert_eq!(v.found, v.value.is_some());
            v.value.map(|j| j.to_value())
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn set_get_del_exists() {
    let mut r = Rig::new();
    set(
        &mut r,
        "video:1:status",
        json!({"state": "transcoding", "pct": 40}),
        None,
    );
    assert_eq!(
        get(&mut r, "video:1:status"),
        Some(json!({"state": "transcoding", "pct": 40}))
    );
    assert_eq!(
        r.ok(Command::KvExists {
            key: "video:1:status".into()
        }),
        Reply::KvExists { exists: true }
    );
    assert_eq!(
        r.ok(Command::KvDel {
            key: "video:1:status".into()
        }),
        Reply::KvDeleted { deleted: true }
    );
    assert_eq!(
        r.ok(Command::KvDel {
            key: "video:1:status".into()
        }),
        Reply::KvDeleted { deleted: false }
    );
    assert_eq!(get(&mut r, "video:1:status"), None);
}

#[test]
fn an_expired_key_is_never_returned() {
    let mut r = Rig::new();
    set(&mut r, "hb", json!(1), Some(100));
    let Reply::KvValue(v) = r.ok(Command::KvGet { key: "hb".into() }) else {
        panic!()
    };
    assert_eq!(v.ttl_ms, Some(100));
    // Lazy expiry: even with the timer call skipped, a read at the deadline misses.
    r.now += 100;
    assert_eq!(get(&mut r, "hb"), None);
    assert_eq!(
        r.ok(Command::KvExists { key: "hb".into() }),
        Reply::KvExists { exists: false }
    );
    assert_eq!(
        r.ok(Command::KvKeys {
            prefix: String::new(),
            limit: None
        }),
        Reply::KvKeys { keys: vec![] }
    );
    assert_eq!(
        r.cmd(Command::KvTtl { key: "hb".into() })
            .unwrap_err()
            .code(),
        "key_not_found"
    );
}

#[test]
fn the_ttl_timer_removes_the_key_and_emits_an_event() {
    let mut r = Rig::new();
    set(&mut r, "hb", json!(1), Some(100));
    r.advance(100);
    let events = r.events();
    assert!(matches!(&events[..], [Event::KeyExpired { key, .. }] if key == "hb"));
    let Reply::KvStats(s) = r.ok(Command::KvStats) else {
        panic!()
    };
    assert_eq!((s.total_keys, s.expired, s.total_memory_bytes), (0, 1, 0));
}

#[test]
fn rewriting_a_key_replaces_its_ttl() {
    let mut r = Rig::new();
    set(&mut r, "k", json!(1), Some(100));
    set(&mut r, "k", json!(2), None);
    r.advance(200);
    assert_eq!(get(&mut r, "k"), Some(json!(2)));
    assert!(r.events().is_empty());
}

#[test]
fn expire_persist_and_ttl() {
    let mut r = Rig::new();
    set(&mut r, "k", json!("v"), None);
    assert_eq!(
        r.ok(Command::KvTtl { key: "k".into() }),
        Reply::KvTtl { ttl_ms: None }
    );
    assert_eq!(
        r.ok(Command::KvExpire {
            key: "k".into(),
            ttl_ms: 500
        }),
        Reply::KvUpdated { updated: true }
    );
    r.advance(200);
    assert_eq!(
        r.ok(Command::KvTtl { key: "k".into() }),
        Reply::KvTtl { ttl_ms: Some(300) }
    );
    assert_eq!(
        r.ok(Command::KvPersist { key: "k".into() }),
        Reply::KvUpdated { updated: true }
    );
    r.advance(1_000);
    assert_eq!(get(&mut r, "k"), Some(json!("v")));
    assert_eq!(
        r.ok(Command::KvExpire {
            key: "nope".into(),
            ttl_ms: 5
        }),
        Reply::KvUpdated { updated: false }
    );
}

#[test]
fn incr_counts_from_zero_and_keeps_the_ttl() {
    let mut r = Rig::new();
    assert_eq!(
        r.ok(Command::KvIncr {
            key: "c".into(),
            by: 5
        }),
        Reply::KvInt { value: 5 }
    );
    assert_eq!(
        r.ok(Command::KvIncr {
            key: "c".into(),
            by: -2
        }),
        Reply::KvInt { value: 3 }
    );
    r.ok(Command::KvExpire {
        key: "c".into(),
        ttl_ms: 100,
    });
    r.ok(Command::KvIncr {
        key: "c".into(),
        by: 1,
    });
    assert_eq!(
        r.ok(Command::KvTtl { key: "c".into() }),
        Reply::KvTtl { ttl_ms: Some(100) }
    );
    set(&mut r, "t", json!("41"), None);
    assert_eq!(
        r.ok(Command::KvIncr {
            key: "t".into(),
            by: 1
        }),
        Reply::KvInt { value: 42 },
        "a string holding an integer counts"
    );
    set(&mut r, "s", json!("text"), None);
    assert_eq!(
        r.cmd(Command::KvIncr {
            key: "s".into(),
            by: 1
        })
        .unwrap_err()
        .code(),
        "not_an_integer"
    );
    set(&mut r, "big", json!(i64::MAX), None);
    assert_eq!(
        r.cmd(Command::KvIncr {
            key: "big".into(),
            by: 1
        })
        .unwrap_err()
        .code(),
        "invalid_argument"
    );
}

#[test]
fn keys_by_prefix_sorted_and_limited() {
    let mut r = Rig::new();
    for k in ["video:2", "video:1", "worker:1", "video:3"] {
        set(&mut r, k, json!(1), None);
    }
    assert_eq!(
        r.ok(Command::KvKeys {
            prefix: "video:".into(),
            limit: Some(2)
        }),
        Reply::KvKeys {
            keys: vec!["video:1".into(), "video:2".into()]
        }
    );
}

#[test]
fn mset_is_atomic_and_mget_keeps_order() {
    let mut r = Rig::new();
    let entry = |k: &str, v| KvEntry {
        key: k.into(),
        value: Json::from_value(&v),
        ttl_ms: None,
    };
    assert_eq!(
        r.ok(Command::KvMset {
            entries: vec![entry("a", json!(1)), entry("b", json!(2))]
        }),
        Reply::KvOk
    );
    let bad = Command::KvMset {
        entries: vec![entry("c", json!(3)), entry("", json!(4))],
    };
    assert_eq!(r.cmd(bad).unwrap_err().code(), "invalid_argument");
    let Reply::KvValues { values } = r.ok(Command::KvMget {
        keys: vec!["b".into(), "c".into(), "a".into()],
    }) else {
        panic!()
    };
    let values: Vec<_> = values
        .into_iter()
        .map(|v| v.map(|j| j.to_value()))
        .collect();
    assert_eq!(values, vec![Some(json!(2)), None, Some(json!(1))]);
}

#[test]
fn key_and_value_limits() {
    let mut config = EngineConfig::default();
    config.limits.max_key_bytes = 4;
    config.limits.max_value_bytes = 8;
    config.limits.max_kv_keys = 2;
    let mut r = Rig::with(config);
    let too_long_key = Command::KvSet {
        key: "abcde".into(),
        value: Json::from_value(&json!(1)),
        ttl_ms: None,
    };
    assert_eq!(r.cmd(too_long_key).unwrap_err().code(), "payload_too_large");
    let too_big = Command::KvSet {
        key: "a".into(),
        value: Json::from_value(&json!("0123456789")),
        ttl_ms: None,
    };
    assert_eq!(r.cmd(too_big).unwrap_err().code(), "payload_too_large");
    set(&mut r, "a", json!(1), None);
    set(&mut r, "b", json!(1), None);
    set(&mut r, "a", json!(2), None);
    let third = Command::KvSet {
        key: "c".into(),
        value: Json::from_value(&json!(1)),
        ttl_ms: None,
    };
    assert_eq!(r.cmd(third).unwrap_err().code(), "limit_exceeded");
}
