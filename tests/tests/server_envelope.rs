//! The SDK command envelope `POST /api/v1/command` against the real server: the request and
//! response shapes of SYNAP_WIRE.md §4–§8 and the error strings of §10.

mod server_common;

use serde_json::{Value, json};
use server_common::Api;

fn ok(v: &Value) -> &Value {
    assert_eq!(v["success"], true, "{v}");
    assert_eq!(v["error"], Value::Null, "{v}");
    &v["payload"]
}

fn err(v: &Value) -> &str {
    assert_eq!(v["success"], false, "{v}");
    assert_eq!(v["payload"], Value::Null, "{v}");
    v["error"].as_str().expect("error string")
}

/// Creates `ts` (max_retries 0, default priority 3) through the envelope, as TS and Rust do.
async fn create_ts(api: &Api) {
    let ts = json!({"name": "ts", "config": {"default_max_retries": 0, "default_priority": 3}});
    ok(&api.cmd("queue.create", ts).await);
}

#[tokio::test]
async fn queue_create_takes_python_and_ts_options() {
    let api = Api::start();
    // Python puts options at the top level, TS and Rust under `config`; both are honoured.
    let p = api
        .cmd(
            "queue.create",
            json!({"name": "py", "max_depth": 5, "ack_deadline_secs": 7}),
        )
        .await;
    assert_eq!(ok(&p)["success"], true);
    let cfg = &api.stats("py").await["config"];
    assert_eq!(
        (cfg["max_depth"].clone(), cfg["ack_deadline_secs"].clone()),
        (json!(5), json!(7.0))
    );
    create_ts(&api).await;
    // Get-or-create: creating again keeps the config.
    ok(&api
        .cmd("queue.create", json!({"name": "ts", "config": {}}))
        .await);
    assert_eq!(api.stats("ts").await["config"]["max_retries"], 0);
}

#[tokio::test]
async fn queue_commands_have_the_sdk_shapes() {
    let api = Api::start();
    create_ts(&api).await;

    let publish =
        json!({"queue": "ts", "payload": [104, 105], "priority": null, "max_retries": null});
    let id = ok(&api.cmd("queue.publish", publish).await)["message_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let got = api
        .cmd("queue.consume", json!({"queue": "ts", "consumer_id": "c1"}))
        .await;
    let m = &ok(&got)["message"];
    assert_eq!(m["id"], id.as_str());
    assert_eq!(m["payload"], json!([104, 105]));
    assert_eq!(m["priority"], 3);
    assert_eq!(m["retry_count"], 0);
    assert_eq!(m["max_retries"], 0);
    assert!(m["headers"].is_object());
    let empty = api
        .cmd("queue.consume", json!({"queue": "ts", "consumer_id": "c1"}))
        .await;
    assert_eq!(ok(&empty)["message"], Value::Null);
    let missing = api
        .cmd(
            "queue.consume",
            json!({"queue": "never", "consumer_id": "c1"}),
        )
        .await;
    assert_eq!(ok(&missing)["message"], Value::Null);
    // Ack by id alone (the SDKs carry no lease token).
    let ack = api
        .cmd("queue.ack", json!({"queue": "ts", "message_id": id}))
        .await;
    assert_eq!(ok(&ack)["success"], true);
    let again = api
        .cmd("queue.ack", json!({"queue": "ts", "message_id": id}))
        .await;
    assert_eq!(err(&again), format!("Message not found: {id}"));

    let stats = api.cmd("queue.stats", json!({"queue": "ts"})).await;
    let s = ok(&stats);
    for k in [
        "depth",
        "consumers",
        "published",
        "consumed",
        "acked",
        "nacked",
        "dead_lettered",
    ] {
        assert!(s[k].is_u64(), "stats.{k}: {s}");
    }
    assert_eq!(
        (s["published"].clone(), s["acked"].clone()),
        (json!(1), json!(1))
    );
    let list = api.cmd("queue.list", json!({})).await;
    assert_eq!(ok(&list)["queues"], json!(["ts"]));
}

#[tokio::test]
async fn a_rest_json_message_reaches_sdk_consumers_as_json_text() {
    let api = Api::start();
    ok(&api
        .cmd(
            "queue.create",
            json!({"name": "ts", "config": {"default_max_retries": 0}}),
        )
        .await);
    ok(&api.cmd("queue.create", json!({"name": "py"})).await);
    // A REST JSON message reaches an SDK consumer as the bytes of its JSON text.
    api.publish("ts", json!({"message": {"a": 1}})).await;
    let got = api
        .cmd("queue.consume", json!({"queue": "ts", "consumer_id": "c2"}))
        .await;
    let bytes: Vec<u8> = ok(&got)["message"]["payload"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| u8::try_from(b.as_u64().unwrap()).unwrap())
        .collect();
    assert_eq!(String::from_utf8(bytes).unwrap(), r#"{"a":1}"#);
    let mid = ok(&got)["message"]["id"].clone();
    let nack = api
        .cmd(
            "queue.nack",
            json!({"queue": "ts", "message_id": mid, "requeue": true}),
        )
        .await;
    assert_eq!(
        ok(&nack)["success"],
        true,
        "max_retries 0: the nack dead-letters"
    );
    assert_eq!(api.stats("ts").await["dead_letter_count"], 1);
    let purge = api.cmd("queue.purge", json!({"queue": "py"})).await;
    assert_eq!(ok(&purge)["purged"], 0);
    let del = api.cmd("queue.delete", json!({"name": "py"})).await;
    assert_eq!(ok(&del)["deleted"], true);
    let del = api.cmd("queue.delete", json!({"queue": "py"})).await;
    assert_eq!(ok(&del)["deleted"], false);
}

#[tokio::test]
async fn error_strings_match_the_wire() {
    let api = Api::start();
    let e = api.cmd("queue.stats", json!({"queue": "q"})).await;
    assert_eq!(err(&e), "Queue not found: q");
    let e = api
        .cmd("queue.publish", json!({"queue": "q", "payload": "text"}))
        .await;
    assert_eq!(err(&e), "Invalid request: Missing 'payload' field");
    let e = api.cmd("queue.publish", json!({"payload": [1]})).await;
    assert_eq!(err(&e), "Invalid request: Missing 'queue' field");
    let e = api
        .cmd("queue.ack", json!({"queue": "q", "message_id": 5}))
        .await;
    assert_eq!(err(&e), "Invalid request: Missing 'message_id' field");
    let e = api.cmd("foo.bar", json!({})).await;
    assert_eq!(err(&e), "Unknown command: foo.bar");
    let e = api.cmd("queue.fly", json!({})).await;
    assert_eq!(err(&e), "Unknown command: queue.fly");
    let e = api.cmd("kv.ttl", json!({"key": "nope"})).await;
    assert_eq!(err(&e), "Key not found: nope");
    ok(&api
        .cmd(
            "queue.create",
            json!({"name": "tiny", "config": {"max_depth": 1}}),
        )
        .await);
    ok(&api
        .cmd("queue.publish", json!({"queue": "tiny", "payload": [1]}))
        .await);
    let e = api
        .cmd("queue.publish", json!({"queue": "tiny", "payload": [2]}))
        .await;
    assert_eq!(err(&e), "Queue is full: tiny");
    let e = api
        .cmd("pubsub.publish", json!({"topic": "", "payload": 1}))
        .await;
    assert_eq!(err(&e), "Invalid value: Topic cannot be empty");
    // Envelope-level problems are HTTP errors, not envelopes.
    let (status, _) = api.post_raw("/api/v1/command", "{oops").await;
    assert_eq!(status, 400);
    let (status, _) = api
        .post("/api/v1/command", json!({"request_id": "r"}))
        .await;
    assert_eq!(status, 400);
    // Odd payloads are read leniently.
    let odd = json!({"command": "queue.list", "request_id": 7, "payload": null});
    let (status, v) = api.post("/api/v1/command", odd).await;
    assert_eq!(
        (status, v["success"].clone(), v["request_id"].clone()),
        (200, json!(true), json!(7))
    );
}

#[tokio::test]
async fn kv_commands_have_the_sdk_shapes() {
    let api = Api::start();
    let set = api
        .cmd("kv.set", json!({"key": "s", "value": "hello", "ttl": null}))
        .await;
    assert_eq!(ok(&set)["success"], true);
    assert_eq!(
        *ok(&api.cmd("kv.get", json!({"key": "s"})).await),
        json!("hello")
    );
    ok(&api
        .cmd(
            "kv.set",
            json!({"key": "o", "value": {"a": [1, 2]}, "ttl": 100}),
        )
        .await);
    assert_eq!(
        *ok(&api.cmd("kv.get", json!({"key": "o"})).await),
        json!(r#"{"a":[1,2]}"#)
    );
    assert_eq!(
        *ok(&api.cmd("kv.get", json!({"key": "none"})).await),
        Value::Null
    );
    let ttl = api.cmd("kv.ttl", json!({"key": "o"})).await;
    let secs = ok(&ttl)["ttl"].as_u64().unwrap();
    assert!((98..=100).contains(&secs), "{secs}");
    assert_eq!(
        ok(&api.cmd("kv.ttl", json!({"key": "s"})).await)["ttl"],
        Value::Null
    );
    assert_eq!(
        ok(&api.cmd("kv.exists", json!({"key": "s"})).await)["exists"],
        true
    );
    assert_eq!(
        ok(&api.cmd("kv.expire", json!({"key": "s", "ttl": 50})).await)["result"],
        true
    );
    assert_eq!(
        ok(&api.cmd("kv.persist", json!({"key": "s"})).await)["result"],
        true
    );
    let keys = api.cmd("kv.keys", json!({"prefix": "o"})).await;
    assert_eq!(*ok(&keys), json!({"keys": ["o"], "count": 1}));
    let keys = api.cmd("kv.keys", json!({"pattern": "*"})).await;
    assert_eq!(ok(&keys)["count"], 2);
    assert_eq!(
        ok(&api.cmd("kv.del", json!({"key": "s"})).await)["deleted"],
        true
    );
    assert_eq!(
        ok(&api.cmd("kv.del", json!({"key": "s"})).await)["deleted"],
        false
    );
    // A zero TTL is refused, as on every transport (not "expire at once"), and so are
    // negative, fractional-below-1 ms and absurd ones; the key is not written.
    for ttl in [json!(0), json!(-1), json!(1e300)] {
        let e = err(&api
            .cmd("kv.set", json!({"key": "z", "value": 1, "ttl": ttl}))
            .await)
        .to_owned();
        assert!(e.starts_with("Invalid value: ttl"), "{e}");
    }
    assert_eq!(
        *ok(&api.cmd("kv.get", json!({"key": "z"})).await),
        Value::Null
    );
    let stats = api.cmd("kv.stats", json!({})).await;
    let s = ok(&stats);
    assert!(s["total_keys"].is_u64() && s["total_memory_bytes"].is_u64() && s["hit_rate"].is_f64());
    assert!(s["operations"]["gets"].is_u64());
    // REST and envelope see the same store.
    assert_eq!(api.ok_get("/kv/get/o").await["value"], json!({"a": [1, 2]}));
}

#[tokio::test]
async fn pubsub_commands_have_the_sdk_shapes() {
    let api = Api::start();
    let sub = api
        .cmd(
            "pubsub.subscribe",
            json!({"topics": ["chat.*"], "subscriber_id": "mine"}),
        )
        .await;
    let s = ok(&sub);
    let id = s["subscriber_id"].as_str().unwrap().to_owned();
    assert_ne!(id, "mine", "the server names subscribers");
    assert_eq!(
        (s["topics"].clone(), s["subscription_count"].clone()),
        (json!(["chat.*"]), json!(1))
    );
    let publish =
        json!({"topic": "chat.room1", "payload": {"text": "hi"}, "metadata": {"from": "ann"}});
    let p = api.cmd("pubsub.publish", publish).await;
    let p = ok(&p);
    assert!(p["message_id"].is_string());
    assert_eq!(
        (p["topic"].clone(), p["subscribers_matched"].clone()),
        (json!("chat.room1"), json!(1))
    );
    let polled = api.cmd("pubsub.poll", json!({"subscriber_id": id})).await;
    let m = &ok(&polled)["messages"][0];
    assert_eq!(
        (m["payload"].clone(), m["metadata"].clone()),
        (json!({"text": "hi"}), json!({"from": "ann"}))
    );
    let ok_sub = api
        .cmd("pubsub.subscribe", json!({"topics": ["exact.topic"]}))
        .await;
    ok(&ok_sub);
    let topics = api.cmd("pubsub.topics", json!({})).await;
    assert_eq!(*ok(&topics), json!({"topics": ["exact.topic"], "count": 1}));
    let stats = api.cmd("pubsub.stats", json!({})).await;
    let st = ok(&stats);
    for k in [
        "total_topics",
        "total_subscribers",
        "total_wildcard_subscriptions",
        "messages_published",
        "messages_delivered",
        "slow_consumers_dropped",
    ] {
        assert!(st[k].is_u64(), "{k}: {st}");
    }
    let un = api
        .cmd("pubsub.unsubscribe", json!({"subscriber_id": id}))
        .await;
    assert_eq!(ok(&un)["unsubscribed"], 1);
    let data = api
        .cmd("pubsub.publish", json!({"topic": "chat.x", "data": 5}))
        .await;
    assert_eq!(ok(&data)["subscribers_matched"], 0);
}
