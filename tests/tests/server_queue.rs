//! End-to-end queue tests against the real `synap-server` binary over REST.

mod server_common;

use std::time::Duration;

use serde_json::{Value, json};
use server_common::{Api, Options, Server};

#[tokio::test]
async fn publish_consume_ack_leaves_the_queue_empty() {
    let api = Api::start();
    let id = api
        .publish("jobs", json!({"message": {"video_id": 7}}))
        .await;
    let msgs = api.consume("jobs", json!({"consumer_id": "w1"})).await;
    assert_eq!(msgs.len(), 1);
    let m = &msgs[0];
    assert_eq!(m["message_id"], id.as_str());
    assert_eq!(m["message"], json!({"video_id": 7}));
    assert_eq!(m["retry_count"], 0);
    assert_eq!(m["priority"], 5);
    for field in ["headers", "lease", "published_at"] {
        assert!(m.get(field).is_some(), "missing {field}: {m}");
    }
    let ack = api
        .ok(
            "/queue/jobs/ack",
            json!({"message_id": id, "lease": m["lease"]}),
        )
        .await;
    assert_eq!(ack, json!({"success": true}));
    let s = api.stats("jobs").await;
    assert_eq!(s["depth"], 0);
    assert_eq!(s["in_flight"], 0);
    assert_eq!(s["acked_total"], 1);
    assert_eq!(s["queue"], "jobs");
    let list = api.ok_get("/queue/list").await;
    assert_eq!(list["queues"], json!(["jobs"]));
}

#[tokio::test]
async fn higher_priority_is_served_first_fifo_within_a_priority() {
    let api = Api::start();
    for (body, p) in [("a", 5), ("b", 9), ("c", 5), ("d", 7)] {
        api.publish("prio", json!({"message": body, "priority": p}))
            .await;
    }
    let msgs = api.consume("prio", json!({"max_messages": 4})).await;
    let order: Vec<&str> = msgs
        .iter()
        .map(|m| m["message"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["b", "d", "a", "c"]);
}

#[tokio::test]
async fn retries_follow_the_delays_then_dead_letter_then_redrive() {
    let api = Api::start();
    let cfg = json!({"max_retries": 2, "retry_delays": [0.2], "ack_deadline_secs": 30});
    api.ok("/queue/work", cfg).await;
    let id = api.publish("work", json!({"message": "x"})).await;
    let long_poll = json!({"timeout": 10, "consumer_id": "w"});
    for attempt in 0..3 {
        let msgs = api.consume("work", long_poll.clone()).await;
        assert_eq!(msgs.len(), 1, "attempt {attempt}");
        assert_eq!(msgs[0]["retry_count"], attempt);
        let nack = json!({"message_id": id, "error": format!("boom {attempt}")});
        let v = api.ok("/queue/work/nack", nack).await;
        let want = if attempt < 2 {
            "delayed"
        } else {
            "dead_lettered"
        };
        assert_eq!(v["action"], want, "attempt {attempt}");
        if attempt < 2 {
            let s = api.stats("work").await;
            assert_eq!(s["delayed"], 1, "the retry waits for its delay: {s}");
        }
    }
    let dlq = api.ok_get("/queue/work/dlq?offset=0&limit=10").await;
    assert_eq!(dlq["total"], 1);
    let entry = &dlq["messages"][0];
    assert_eq!(entry["message_id"], id.as_str());
    assert_eq!(entry["reason"], "max_retries_exceeded");
    assert_eq!(entry["attempts"], 3);
    assert_eq!(entry["last_error"], "boom 2");
    assert_eq!(entry["message"], "x");
    assert!(entry.get("dead_lettered_at").is_some());
    let r = api.ok("/queue/work/dlq/retry", json!({})).await;
    assert_eq!(r["retried"], 1);
    let msgs = api.consume("work", json!({})).await;
    assert_eq!(msgs[0]["retry_count"], 0, "redrive resets attempts");
    let v = api
        .ok(
            "/queue/work/nack",
            json!({"message_id": id, "requeue": false}),
        )
        .await;
    assert_eq!(v["action"], "dead_lettered");
    let dlq = api.ok_get("/queue/work/dlq").await;
    assert_eq!(dlq["messages"][0]["reason"], "rejected");
    assert_eq!(
        api.ok("/queue/work/dlq/purge", json!({})).await["purged"],
        1
    );
    assert_eq!(api.stats("work").await["dead_letter_count"], 0);
}

#[tokio::test]
async fn an_expired_lease_redelivers_and_a_stale_ack_is_refused() {
    let api = Api::start();
    let id = api.publish("lease", json!({"message": 1})).await;
    let first = api.consume("lease", json!({"ack_deadline": 0.3})).await;
    let old_lease = first[0]["lease"].clone();
    api.wait_stats("lease", "lease expiry", |s| s["lease_expired_total"] == 1)
        .await;
    let second = api
        .consume("lease", json!({"timeout": 10, "ack_deadline": 30}))
        .await;
    assert_eq!(second[0]["message_id"], id.as_str());
    assert_eq!(second[0]["retry_count"], 1);
    assert_ne!(second[0]["lease"], old_lease);
    let (status, v) = api
        .post(
            "/queue/lease/ack",
            json!({"message_id": id, "lease": old_lease}),
        )
        .await;
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["code"], "lease_mismatch");
    let ok = json!({"message_id": id, "lease": second[0]["lease"]});
    assert_eq!(api.ok("/queue/lease/ack", ok).await["success"], true);
    let (status, v) = api
        .post("/queue/lease/ack", json!({"message_id": id}))
        .await;
    assert_eq!(status, 404, "an acked message is gone: {v}");
    assert_eq!(v["code"], "message_not_found");
}

#[tokio::test]
async fn extend_keeps_a_lease_alive() {
    let api = Api::start();
    let id = api.publish("ext", json!({"message": 1})).await;
    let m = api.consume("ext", json!({"ack_deadline": 0.3})).await;
    let lease = m[0]["lease"].clone();
    let bad = json!({"message_id": id, "ack_deadline": 30, "lease": 999});
    let (status, v) = api.post("/queue/ext/extend", bad).await;
    assert_eq!(status, 409, "{v}");
    let good = json!({"message_id": id, "ack_deadline": 30, "lease": lease});
    assert_eq!(api.ok("/queue/ext/extend", good).await["success"], true);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let s = api.stats("ext").await;
    assert_eq!(s["lease_expired_total"], 0, "{s}");
    assert_eq!(s["in_flight"], 1);
    let ack = json!({"message_id": id, "lease": lease});
    assert_eq!(api.ok("/queue/ext/ack", ack).await["success"], true);
}

#[tokio::test]
async fn a_long_poll_wakes_on_publish_and_times_out_empty() {
    let api = std::sync::Arc::new(Api::start());
    api.ok("/queue/lp", json!({})).await;
    let waiter = {
        let api = std::sync::Arc::clone(&api);
        tokio::spawn(async move { api.consume("lp", json!({"timeout": 20})).await })
    };
    api.wait_stats("lp", "a parked waiter", |s| s["waiters"] == 1)
        .await;
    let id = api.publish("lp", json!({"message": "wake"})).await;
    let got = waiter.await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["message_id"], id.as_str());
    let empty = api.consume("lp", json!({"timeout": 0.3})).await;
    assert!(empty.is_empty());
    let v = api
        .ok_get("/queue/lp/consume/worker-9?timeout=0.2&max_messages=3")
        .await;
    assert_eq!(v["messages"], json!([]));
    let s = api.stats("lp").await;
    assert_eq!(s["waiters"], 0);
}

#[tokio::test]
async fn a_consumer_that_hangs_up_is_withdrawn() {
    let api = Api::start();
    api.ok("/queue/gone", json!({})).await;
    let short = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let r = short
        .post(api.srv.url("/queue/gone/consume"))
        .json(&json!({"timeout": 30}))
        .send()
        .await;
    assert!(r.is_err(), "the client gave up before the server answered");
    api.wait_stats("gone", "the waiter to be cancelled", |s| s["waiters"] == 0)
        .await;
    let id = api.publish("gone", json!({"message": 1})).await;
    let s = api.stats("gone").await;
    assert_eq!(
        s["ready"], 1,
        "nothing was leased to the departed client: {s}"
    );
    assert_eq!(
        api.consume("gone", json!({})).await[0]["message_id"],
        id.as_str()
    );
}

#[tokio::test]
async fn batch_publish_and_ack_batch() {
    let api = Api::start();
    let messages: Vec<Value> = (0..10).map(|i| json!({"message": {"n": i}})).collect();
    let v = api
        .ok("/queue/batch/publish_batch", json!({"messages": messages}))
        .await;
    let published = v["messages"].as_array().unwrap();
    assert_eq!(published.len(), 10);
    assert_eq!(published[9]["position"], 10);
    let got = api.consume("batch", json!({"max_messages": 100})).await;
    assert_eq!(got.len(), 10);
    let mut acks: Vec<Value> = got
        .iter()
        .map(|m| json!({"message_id": m["message_id"], "lease": m["lease"]}))
        .collect();
    acks.push(json!({"message_id": "00000000-0000-4000-8000-000000000000"}));
    let v = api
        .ok("/queue/batch/ack_batch", json!({"acks": acks}))
        .await;
    assert_eq!(v["acked"], 10);
    assert_eq!(v["failed"][0]["code"], "message_not_found");
    assert_eq!(api.stats("batch").await["depth"], 0);
}

#[tokio::test]
async fn a_full_queue_refuses_with_507() {
    let api = Api::start();
    api.ok("/queue/small", json!({"max_depth": 2})).await;
    api.publish("small", json!({"message": 1})).await;
    api.publish("small", json!({"message": 2})).await;
    let (status, v) = api
        .post("/queue/small/publish", json!({"message": 3}))
        .await;
    assert_eq!(status, 507, "{v}");
    assert_eq!(v["code"], "queue_full");
    api.ok("/queue/small/purge", json!({})).await;
    let three: Vec<Value> = (0..3).map(|i| json!({"message": i})).collect();
    let (status, _) = api
        .post("/queue/small/publish_batch", json!({"messages": three}))
        .await;
    assert_eq!(status, 507, "a batch is all or nothing");
    assert_eq!(api.stats("small").await["depth"], 0);
}

#[tokio::test]
async fn delayed_messages_purge_and_delete() {
    let api = Api::start();
    let v = api
        .ok("/queue/later/publish", json!({"message": 1, "delay": 60}))
        .await;
    assert_eq!(
        v["position"],
        Value::Null,
        "a delayed message has no position"
    );
    assert!(api.consume("later", json!({})).await.is_empty());
    assert_eq!(api.stats("later").await["delayed"], 1);
    assert_eq!(api.ok("/queue/later/purge", json!({})).await["purged"], 1);
    let (status, v) = api.delete("/queue/later").await;
    assert_eq!((status, v), (200, json!({"deleted": true})));
    let (status, v) = api.delete("/queue/later").await;
    assert_eq!((status, v), (200, json!({"deleted": false})));
    let (status, v) = api.get("/queue/later/stats").await;
    assert_eq!(status, 404);
    assert_eq!(v["code"], "queue_not_found");
}

#[tokio::test]
async fn queues_from_the_config_file_are_created_at_start() {
    let yaml = "queue:\n  video-processing:\n    max_retries: 3\n    ack_deadline_secs: 300\n    retry_delays: [10, 60, 300]\n    backoff: {initial: 1, multiplier: 2, max: 30, jitter: 0.1}\n    dead_letter: true\n    dlq_max: 500\n    default_priority: 4\n";
    let srv = Server::start_with(Options {
        config_yaml: Some(yaml),
        ..Options::default()
    });
    let api = Api::with(srv);
    let s = api.stats("video-processing").await;
    let c = &s["config"];
    // The config in seconds, as `POST /queue/{name}` and the config file take it.
    assert_eq!(c["ack_deadline_secs"], 300.0);
    assert_eq!(c["retry_delays"], json!([10.0, 60.0, 300.0]));
    assert_eq!(c["dlq_max"], 500);
    assert_eq!(c["default_priority"], 4);
    assert_eq!(c["backoff"]["max"], 30.0);
}
