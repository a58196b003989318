//! End-to-end KV and pub/sub tests against the real `synap-server` binary.

mod server_common;

use std::time::Duration;

use serde_json::json;
use server_common::{Api, SseReader, ws_connect, ws_next};

#[tokio::test]
async fn kv_set_get_ttl_and_friends() {
    let api = Api::start();
    let set = json!({"key": "video:1:status", "value": {"state": "encoding"}, "ttl": 0.4});
    assert_eq!(api.ok("/kv/set", set).await, json!({"success": true}));
    let v = api.ok_get("/kv/get/video:1:status").await;
    assert_eq!(v["found"], true);
    assert_eq!(v["value"], json!({"state": "encoding"}));
    assert!(v["ttl"].as_f64().unwrap() > 0.0);
    assert_eq!(
        api.ok_get("/kv/exists/video:1:status").await["exists"],
        true
    );
    let mut gone = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if api.ok_get("/kv/get/video:1:status").await == json!({"found": false}) {
            gone = true;
            break;
        }
    }
    assert!(gone, "the key expired");
    let (status, v) = api.get("/kv/ttl/video:1:status").await;
    assert_eq!((status, v["code"].clone()), (404, json!("key_not_found")));

    api.ok("/kv/set", json!({"key": "n", "value": 1})).await;
    assert_eq!(
        api.ok("/kv/incr", json!({"key": "n", "by": 4})).await["value"],
        5
    );
    assert_eq!(api.ok_get("/kv/ttl/n").await["ttl"], json!(null));
    assert_eq!(
        api.ok("/kv/expire", json!({"key": "n", "ttl": 100})).await["updated"],
        true
    );
    assert!(api.ok_get("/kv/ttl/n").await["ttl"].as_f64().unwrap() > 90.0);
    assert_eq!(
        api.ok("/kv/persist", json!({"key": "n"})).await["updated"],
        true
    );
    let mset = json!({"entries": [{"key": "a:1", "value": "x"}, {"key": "a:2", "value": [1, 2]}]});
    api.ok("/kv/mset", mset).await;
    let keys = api.ok_get("/kv/keys?prefix=a:").await;
    assert_eq!(keys, json!({"keys": ["a:1", "a:2"], "count": 2}));
    let vals = api
        .ok("/kv/mget", json!({"keys": ["a:1", "zz", "a:2"]}))
        .await;
    assert_eq!(vals["values"], json!(["x", null, [1, 2]]));
    let (status, v) = api.delete("/kv/del/a:1").await;
    assert_eq!((status, v), (200, json!({"deleted": true})));
    let stats = api.ok_get("/kv/stats").await;
    assert!(stats["total_keys"].as_u64().unwrap() >= 2, "{stats}");
    assert!(stats.get("hit_rate").is_some());
    let (status, v) = api.post("/kv/incr", json!({"key": "a:2"})).await;
    assert_eq!((status, v["code"].clone()), (400, json!("not_an_integer")));
}

#[tokio::test]
async fn pubsub_wildcards_over_websocket() {
    let api = Api::start();
    let url = api
        .srv
        .ws_url("/pubsub/ws?topics=notifications.user.*,logs.%23");
    let mut ws = ws_connect(&url).await;
    let hello = ws_next(&mut ws).await.unwrap();
    assert_eq!(hello["type"], "connected");
    assert!(hello["subscriber_id"].is_string());
    let publish = |topic: &'static str, n: i32| {
        let api = &api;
        async move {
            api.ok(
                &format!("/pubsub/{topic}/publish"),
                json!({"message": {"n": n}, "headers": {"h": "v"}}),
            )
            .await
        }
    };
    let r = publish("notifications.user.42", 1).await;
    assert_eq!(r["subscribers_matched"], 1);
    assert_eq!(r["topic"], "notifications.user.42");
    assert!(r["message_id"].is_string());
    assert_eq!(
        publish("notifications.user.42.extra", 2).await["subscribers_matched"],
        0
    );
    assert_eq!(publish("logs", 3).await["subscribers_matched"], 1);
    assert_eq!(publish("logs.a.b", 4).await["subscribers_matched"], 1);
    let mut got = Vec::new();
    for _ in 0..3 {
        let f = ws_next(&mut ws).await.unwrap();
        assert_eq!(f["type"], "message");
        assert_eq!(f["payload"], f["message"]);
        assert_eq!(f["metadata"], json!({"h": "v"}));
        assert!(f["published_at"].is_u64() && f["message_id"].is_string());
        got.push((
            f["topic"].as_str().unwrap().to_owned(),
            f["message"]["n"].as_i64().unwrap(),
        ));
    }
    let want = [("notifications.user.42", 1), ("logs", 3), ("logs.a.b", 4)];
    let want: Vec<(String, i64)> = want.iter().map(|(t, n)| ((*t).to_owned(), *n)).collect();
    assert_eq!(got, want, "in publish order, non-matching topics skipped");
    drop(ws);
    // The connection's subscription goes away with it.
    for _ in 0..100 {
        let st = api.ok_get("/pubsub/stats").await;
        if st["subscribers"] == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("subscriber not removed after disconnect");
}

#[tokio::test]
async fn a_hash_cut_off_as_a_url_fragment_is_read_as_a_trailing_hash() {
    let api = Api::start();
    // What Synap's Rust SDK sends for ["events.*", "logs.#"]: the `#` never reaches the server.
    let mut ws = ws_connect(&api.srv.ws_url("/pubsub/ws?topics=events.*,logs.#")).await;
    let hello = ws_next(&mut ws).await.unwrap();
    assert_eq!(hello["topics"], json!(["events.*", "logs.#"]));
    api.ok("/pubsub/logs.x.y/publish", json!({"payload": "deep"}))
        .await;
    let f = ws_next(&mut ws).await.unwrap();
    assert_eq!(
        (f["topic"].clone(), f["payload"].clone()),
        (json!("logs.x.y"), json!("deep"))
    );
}

#[tokio::test]
async fn pubsub_over_sse() {
    let api = Api::start();
    let mut sse = SseReader::open(&api.srv.url("/pubsub/sse?topics=video.*.done")).await;
    let hello = sse.next_named("connected").await;
    assert!(hello["subscriber_id"].is_string());
    let r = api
        .ok(
            "/pubsub/video.9.done/publish",
            json!({"data": {"ok": true}}),
        )
        .await;
    assert_eq!(r["subscribers_matched"], 1);
    api.ok("/pubsub/video.9.started/publish", json!({"message": 0}))
        .await;
    api.ok("/pubsub/video.10.done/publish", json!({"message": 2}))
        .await;
    let a = sse.next_named("message").await;
    assert_eq!(a["topic"], "video.9.done");
    assert_eq!(a["message"], json!({"ok": true}));
    let b = sse.next_named("message").await;
    assert_eq!(
        (b["topic"].clone(), b["message"].clone()),
        (json!("video.10.done"), json!(2))
    );
    let (status, v) = api.get("/pubsub/sse").await;
    assert_eq!(
        (status, v["code"].clone()),
        (400, json!("invalid_argument"))
    );
}
