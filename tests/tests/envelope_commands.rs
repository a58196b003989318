//! Goal: every command the three official SDKs (Rust and Python 1.4.0, TypeScript 1.3.1) can
//! send through `POST /api/v1/command` is either answered in Synap's shape or refused with
//! Synap's `Unknown command: <cmd>` (SYNAP_WIRE.md §4, §7): the multi-key KV commands
//! `kv.mset`, `kv.mget` (stored values as values), `kv.mdel` and `kv.dbsize` included.
//! Method: one in-memory server per test, driven through the envelope.

mod server_common;

use serde_json::{Value, json};
use server_common::Api;

fn ok(v: &Value) -> &Value {
    assert_eq!(v["success"], true, "{v}");
    &v["payload"]
}

fn err(v: &Value) -> &str {
    assert_eq!(v["success"], false, "{v}");
    v["error"].as_str().expect("error string")
}

#[tokio::test]
async fn mset_mget_mdel_and_dbsize_have_synaps_shapes() {
    let api = Api::start();
    // TypeScript: `{pairs: [{key, value}]}`, values of any JSON type.
    let pairs = json!({"pairs": [
        {"key": "user:1", "value": "Alice"},
        {"key": "user:2", "value": {"name": "Bob", "tags": [1, 2]}},
        {"key": "n", "value": 42},
    ]});
    let set = api.cmd("kv.mset", pairs).await;
    assert_eq!(*ok(&set), json!({"success": true, "count": 3}));
    // `[key, value]` pairs and an `entries` object are read too.
    ok(&api.cmd("kv.mset", json!({"pairs": [["flag", true]]})).await);
    ok(&api.cmd("kv.mset", json!({"entries": {"e": null}})).await);

    let got = api
        .cmd(
            "kv.mget",
            json!({"keys": ["user:1", "user:2", "missing", "n", "flag"]}),
        )
        .await;
    assert_eq!(
        *ok(&got),
        json!({"values": ["Alice", {"name": "Bob", "tags": [1, 2]}, null, 42, true]}),
        "stored values come back as themselves, not as their JSON text"
    );
    assert_eq!(
        *ok(&api.cmd("kv.dbsize", json!({})).await),
        json!({"size": 5})
    );
    let del = api
        .cmd("kv.mdel", json!({"keys": ["user:1", "user:2", "missing"]}))
        .await;
    assert_eq!(*ok(&del), json!({"deleted": 2}));
    assert_eq!(ok(&api.cmd("kv.dbsize", json!({})).await)["size"], 3);
    // kv.get keeps answering text (SYNAP_WIRE.md §7).
    assert_eq!(
        *ok(&api.cmd("kv.get", json!({"key": "n"})).await),
        json!("42")
    );
}

#[tokio::test]
async fn multi_key_commands_validate_their_input() {
    let api = Api::start();
    assert_eq!(
        err(&api.cmd("kv.mset", json!({})).await),
        "Invalid request: Missing 'pairs' field"
    );
    let bad = api.cmd("kv.mset", json!({"pairs": [{"key": "k"}]})).await;
    assert!(err(&bad).starts_with("Invalid value: pairs"), "{bad}");
    // Nothing was set by the refused batch.
    let both = json!({"pairs": [{"key": "a", "value": 1}, {"value": 2}]});
    assert!(err(&api.cmd("kv.mset", both).await).starts_with("Invalid value"));
    assert_eq!(ok(&api.cmd("kv.dbsize", json!({})).await)["size"], 0);
    assert_eq!(
        err(&api.cmd("kv.mdel", json!({"keys": "a"})).await),
        "Invalid request: Missing 'keys' field"
    );
    let many: Vec<String> = (0..1001).map(|i| format!("k{i}")).collect();
    let over = api.cmd("kv.mdel", json!({ "keys": many })).await;
    assert!(err(&over).contains("at most 1000"), "{over}");
}

/// Commands of the SDKs that Synap's server answers but ours does not serve (other data
/// structures, scripting, transactions, flushes, `msetnx`, `pubsub.info`), one of each
/// namespace and every KV one.
const REFUSED: [&str; 19] = [
    "kv.msetnx",
    "kv.flushdb",
    "kv.flushall",
    "kv.append",
    "kv.getset",
    "hash.set",
    "list.lpush",
    "set.add",
    "sortedset.zadd",
    "stream.publish",
    "stream.create",
    "bitmap.setbit",
    "hyperloglog.pfadd",
    "geospatial.geoadd",
    "script.eval",
    "transaction.multi",
    "transaction.exec",
    "pubsub.info",
    "stream.consume",
];

#[tokio::test]
async fn commands_not_served_are_refused_as_unknown() {
    let api = Api::start();
    for command in REFUSED {
        let v = api.cmd(command, json!({"key": "k", "topic": "t"})).await;
        assert_eq!(err(&v), format!("Unknown command: {command}"));
    }
}

#[tokio::test]
async fn every_served_sdk_command_answers() {
    let api = Api::start();
    let served = [
        ("ping", json!({})),
        ("queue.create", json!({"name": "q"})),
        ("queue.publish", json!({"queue": "q", "payload": [1]})),
        ("queue.consume", json!({"queue": "q", "consumer_id": "c"})),
        ("queue.stats", json!({"queue": "q"})),
        ("queue.list", json!({})),
        ("queue.purge", json!({"queue": "q"})),
        ("kv.set", json!({"key": "k", "value": 1})),
        ("kv.get", json!({"key": "k"})),
        ("kv.exists", json!({"key": "k"})),
        ("kv.incr", json!({"key": "k"})),
        ("kv.decr", json!({"key": "k", "amount": 2})),
        ("kv.expire", json!({"key": "k", "ttl": 60})),
        ("kv.ttl", json!({"key": "k"})),
        ("kv.persist", json!({"key": "k"})),
        ("kv.keys", json!({"pattern": "*"})),
        ("kv.scan", json!({"prefix": "k", "limit": 10})),
        ("kv.mget", json!({"keys": ["k"]})),
        ("kv.mset", json!({"pairs": [{"key": "m", "value": "v"}]})),
        ("kv.mdel", json!({"keys": ["m"]})),
        ("kv.dbsize", json!({})),
        ("kv.stats", json!({})),
        ("kv.del", json!({"key": "k"})),
        ("pubsub.subscribe", json!({"topics": ["t"]})),
        ("pubsub.publish", json!({"topic": "t", "payload": 1})),
        ("pubsub.topics", json!({})),
        ("pubsub.stats", json!({})),
        ("queue.delete", json!({"queue": "q"})),
    ];
    for (command, payload) in served {
        let v = api.cmd(command, payload).await;
        assert_eq!(v["success"], true, "{command}: {v}");
    }
}
