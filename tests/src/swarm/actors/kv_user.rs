//! A KV user: random sets (with and without TTL), gets, deletes and increments on a few keys,
//! each answer checked against the oracle's KV model.

use serde_json::json;
use synap_core::{Command, Json, Reply};

use crate::swarm::harness::Harness;

/// One random KV operation, checked against the model.
pub(crate) fn kv_op(h: &mut Harness) {
    let key = format!("k{}", h.pick(0, 4));
    let now = h.now;
    match h.pick(0, 3) {
        0 => {
            let ttl_ms = h.chance(0.5).then(|| h.pick(1, 2_000));
            let value = json!(h.pick(0, 100));
            let cmd = Command::KvSet {
                key: key.clone(),
                value: Json::from_value(&value),
                ttl_ms,
            };
            assert_eq!(h.exec(cmd), Ok(Reply::KvOk));
            h.oracle.kv.set(key, value, ttl_ms.map(|t| now + t));
        }
        1 => {
            let expected = h.oracle.kv.live(&key, now).cloned();
            let got = match h.exec(Command::KvGet { key: key.clone() }) {
                Ok(Reply::KvValue(v)) => v.value.map(|j| j.to_value()),
                other => panic!("kv get answered {other:?}"),
            };
            assert_eq!(got, expected, "rule 6: kv get {key} at {now}");
        }
        2 => {
            let live = h.oracle.kv.live(&key, now).is_some();
            let got = h.exec(Command::KvDel { key: key.clone() });
            assert_eq!(got, Ok(Reply::KvDeleted { deleted: live }), "kv del {key}");
            h.oracle.kv.remove(&key);
        }
        _ => {
            let live = h.oracle.kv.live(&key, now).cloned();
            let exp = live.as_ref().and(h.oracle.kv.expiry(&key));
            let base = live.map_or(0, |v| v.as_i64().expect("ints only"));
            let got = h.exec(Command::KvIncr {
                key: key.clone(),
                by: 3,
            });
            assert_eq!(got, Ok(Reply::KvInt { value: base + 3 }), "kv incr {key}");
            h.oracle.kv.set(key, json!(base + 3), exp);
        }
    }
}
