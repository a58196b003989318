//! Goal: flow control (DESIGN.md §12) over REST and the queue WebSocket against the real
//! `synap-server`: a message's `group`, the queue settings `max_in_flight`,
//! `group_concurrency`, `ordered_groups`, `fair_groups`, `rate_limit`, `group_rate_limit` and
//! `max_snoozes`, pause and resume, a worker's rate limit, snooze on nack, the new stats fields
//! and `GET /queue/{name}/groups`.
//! Method: each test starts its own in-memory server on a free port and speaks raw JSON. A
//! consumer held back by a limit long-polls; the test then makes room (ack, resume, the limit's
//! end) and checks that the waiting consumer gets the message. Every wait has a generous upper
//! bound and nothing asserts on elapsed time.

mod server_common;

use serde_json::{Value, json};
use server_common::{Api, ws_connect, ws_next, ws_send};

fn ns(msgs: &[Value]) -> Vec<u64> {
    msgs.iter()
        .map(|m| m["message"]["n"].as_u64().expect("n"))
        .collect()
}

async fn publish_in(api: &Api, queue: &str, n: u64, group: Option<&str>) -> String {
    let mut body = json!({"message": {"n": n}});
    if let Some(g) = group {
        body["group"] = json!(g);
    }
    api.publish(queue, body).await
}

/// A long-poll consume started in the background; its answer is awaited later.
fn long_poll(api: &Api, queue: &str) -> tokio::task::JoinHandle<Vec<Value>> {
    let (http, url) = (
        api.http.clone(),
        api.srv.url(&format!("/queue/{queue}/consume")),
    );
    tokio::spawn(async move {
        let body = json!({"timeout": 20, "max_messages": 10});
        let resp = http.post(url).json(&body).send().await.expect("consume");
        assert_eq!(resp.status().as_u16(), 200);
        let v: Value = resp.json().await.expect("JSON");
        v["messages"].as_array().expect("messages").clone()
    })
}

/// Waits until the queue has a parked consumer, so what follows happens while it waits.
async fn until_waiting(api: &Api, queue: &str) {
    api.wait_stats(queue, "a parked consumer", |s| s["waiters"] == 1)
        .await;
}

#[tokio::test]
async fn the_flow_settings_are_taken_and_answered_in_seconds() {
    let api = Api::start();
    let cfg = json!({
        "max_in_flight": 4, "group_concurrency": 1, "ordered_groups": true,
        "fair_groups": true, "rate_limit": {"max": 100, "per_secs": 1.5},
        "group_rate_limit": {"max": 2, "per_secs": 60.0}, "max_snoozes": 7
    });
    api.ok("/queue/flow", cfg.clone()).await;
    let stats = api.stats("flow").await;
    for (k, v) in cfg.as_object().unwrap() {
        assert_eq!(&stats["config"][k], v, "{k}");
    }
    for field in ["paused", "rate_limited_until_ms", "groups", "held_back"] {
        assert!(stats.get(field).is_some(), "stats lack {field}: {stats}");
    }
    // The answer's config can be sent back as it is.
    api.ok("/queue/flow", stats["config"].clone()).await;
    let bad = [
        json!({"ordered_groups": true, "group_concurrency": 2}),
        json!({"max_in_flight": 0}),
        json!({"rate_limit": {"max": 0, "per_secs": 1}}),
        json!({"rate_limit": {"max": 1, "per_secs": -1}}),
        json!({"rate_limit": {"max": 1}}),
    ];
    for body in bad {
        let (status, v) = api.post("/queue/flow", body.clone()).await;
        assert_eq!(status, 400, "{body}: {v}");
    }
}

#[tokio::test]
async fn groups_travel_with_messages_and_are_listed_largest_first() {
    let api = Api::start();
    api.ok("/queue/g", json!({"group_concurrency": 1})).await;
    for n in 1..=3 {
        publish_in(&api, "g", n, Some("tenant-a")).await;
    }
    let b = publish_in(&api, "g", 4, Some("tenant-b")).await;
    let got = api.consume("g", json!({"max_messages": 10})).await;
    assert_eq!(ns(&got), vec![1, 4], "one per group at a time");
    assert_eq!(got[0]["group"], "tenant-a");
    let stats = api.stats("g").await;
    assert_eq!(
        (&stats["groups"], &stats["held_back"]),
        (&json!(2), &json!(2))
    );
    let groups = api.ok_get("/queue/g/groups?limit=10").await;
    assert_eq!(
        groups,
        json!({"groups": [
            {"group": "tenant-a", "ready": 2, "in_flight": 1, "delayed": 0},
            {"group": "tenant-b", "ready": 0, "in_flight": 1, "delayed": 0},
        ]})
    );
    assert_eq!(
        api.ok_get("/queue/g/groups?limit=1").await["groups"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let job = api.ok_get(&format!("/queue/g/messages/{b}")).await;
    assert_eq!(job["group"], "tenant-b");
    // An ack frees the group for a consumer already waiting.
    let waiting = long_poll(&api, "g");
    until_waiting(&api, "g").await;
    let ack = json!({"message_id": got[0]["message_id"], "lease": got[0]["lease"]});
    api.ok("/queue/g/ack", ack).await;
    assert_eq!(ns(&waiting.await.unwrap()), vec![2]);
    // Bad groups and listings are refused.
    for group in [json!(""), json!("x".repeat(256)), json!(7)] {
        let body = json!({"message": 1, "group": group});
        let (status, v) = api.post("/queue/g/publish", body).await;
        assert_eq!(status, 400, "{group}: {v}");
    }
    assert_eq!(api.get("/queue/g/groups?limit=0").await.0, 400);
    assert_eq!(api.get("/queue/nope/groups").await.0, 404);
}

#[tokio::test]
async fn an_ordered_group_waits_for_its_head_to_be_acked() {
    let api = Api::start();
    api.ok("/queue/o", json!({"ordered_groups": true})).await;
    for n in 1..=3 {
        publish_in(&api, "o", n, Some("video-9")).await;
    }
    let first = api.consume("o", json!({"max_messages": 10})).await;
    assert_eq!(ns(&first), vec![1]);
    let nack = json!({"message_id": first[0]["message_id"], "lease": first[0]["lease"]});
    assert_eq!(api.ok("/queue/o/nack", nack).await["action"], "requeued");
    let again = api.consume("o", json!({"max_messages": 10})).await;
    assert_eq!((ns(&again), &again[0]["retry_count"]), (vec![1], &json!(1)));
    let ack = json!({"message_id": again[0]["message_id"], "lease": again[0]["lease"]});
    api.ok("/queue/o/ack", ack).await;
    assert_eq!(
        ns(&api.consume("o", json!({"max_messages": 10})).await),
        vec![2]
    );
}

#[tokio::test]
async fn a_paused_queue_serves_its_waiting_consumer_on_resume() {
    let api = Api::start();
    let (status, _) = api.post("/queue/p/pause", json!({})).await;
    assert_eq!(status, 404, "pausing does not create a queue");
    api.ok("/queue/p", json!({})).await;
    assert_eq!(
        api.ok("/queue/p/pause", json!({})).await,
        json!({"success": true, "paused": true})
    );
    publish_in(&api, "p", 1, None).await;
    assert!(api.consume("p", json!({})).await.is_empty());
    let stats = api.stats("p").await;
    assert_eq!(
        (&stats["paused"], &stats["held_back"]),
        (&json!(true), &json!(1))
    );
    let waiting = long_poll(&api, "p");
    until_waiting(&api, "p").await;
    assert_eq!(
        api.ok("/queue/p/resume", json!({})).await,
        json!({"success": true, "paused": false})
    );
    assert_eq!(ns(&waiting.await.unwrap()), vec![1]);
}

#[tokio::test]
async fn a_worker_rate_limit_holds_the_queue_until_it_ends() {
    let api = Api::start();
    publish_in(&api, "r", 1, None).await;
    let v = api
        .ok("/queue/r/rate_limit", json!({"for_secs": 0.5}))
        .await;
    assert_eq!(v["success"], true);
    let until = v["rate_limited_until_ms"].as_u64().expect("until");
    let stats = api.stats("r").await;
    // The limit may have ended already on a slow machine; while it holds, stats say so.
    if stats["held_back"] == 1 {
        assert_eq!(stats["rate_limited_until_ms"], until);
    }
    let got = api.consume("r", json!({"timeout": 20})).await;
    assert_eq!(
        ns(&got),
        vec![1],
        "the limit's end serves the waiting consumer"
    );
    for body in [json!({"for_secs": 0}), json!({"for_secs": -1}), json!({})] {
        let (status, v) = api.post("/queue/r/rate_limit", body.clone()).await;
        assert_eq!(status, 400, "{body}: {v}");
    }
}

#[tokio::test]
async fn max_in_flight_holds_back_until_an_ack() {
    let api = Api::start();
    api.ok("/queue/m", json!({"max_in_flight": 1})).await;
    publish_in(&api, "m", 1, None).await;
    publish_in(&api, "m", 2, None).await;
    let got = api.consume("m", json!({"max_messages": 10})).await;
    assert_eq!(ns(&got), vec![1]);
    let waiting = long_poll(&api, "m");
    until_waiting(&api, "m").await;
    let ack = json!({"message_id": got[0]["message_id"], "lease": got[0]["lease"]});
    api.ok("/queue/m/ack", ack).await;
    assert_eq!(ns(&waiting.await.unwrap()), vec![2]);
}

#[tokio::test]
async fn a_snooze_spends_no_attempt_and_is_bounded_by_max_snoozes() {
    let api = Api::start();
    api.ok("/queue/s", json!({"max_retries": 0, "max_snoozes": 1}))
        .await;
    publish_in(&api, "s", 1, None).await;
    let snooze = |d: &Value| {
        json!({"message_id": d["message_id"], "lease": d["lease"],
                                     "snooze": true, "delay": 0.05})
    };
    let d = api.consume("s", json!({"timeout": 20})).await.remove(0);
    assert_eq!(
        api.ok("/queue/s/nack", snooze(&d)).await["action"],
        "snoozed"
    );
    let d = api.consume("s", json!({"timeout": 20})).await.remove(0);
    assert_eq!(d["retry_count"], 0, "the snooze spent no attempt");
    assert_eq!(
        api.ok("/queue/s/nack", snooze(&d)).await["action"],
        "dead_lettered"
    );
    let dlq = api.ok_get("/queue/s/dlq").await;
    assert_eq!(dlq["messages"][0]["reason"], "snoozed_out");
    let d = {
        publish_in(&api, "s", 2, None).await;
        api.consume("s", json!({})).await.remove(0)
    };
    let refused = json!({"message_id": d["message_id"], "snooze": true, "requeue": false});
    assert_eq!(api.post("/queue/s/nack", refused).await.0, 400);
}

#[tokio::test]
async fn a_websocket_consumer_is_pushed_within_max_in_flight() {
    let api = Api::start();
    api.ok("/queue/w", json!({"max_in_flight": 1})).await;
    for n in 1..=2 {
        publish_in(&api, "w", n, Some("g")).await;
    }
    let mut ws = ws_connect(&api.srv.ws_url("/queue/w/ws?prefetch=10")).await;
    assert_eq!(ws_next(&mut ws).await.expect("hello")["type"], "connected");
    let first = ws_next(&mut ws).await.expect("a message");
    assert_eq!(
        (&first["type"], &first["message"]["n"]),
        (&json!("message"), &json!(1))
    );
    assert_eq!(first["group"], "g");
    let stats = api.stats("w").await;
    assert_eq!(
        (&stats["in_flight"], &stats["held_back"]),
        (&json!(1), &json!(1))
    );
    let ack =
        json!({"op": "ack", "id": 1, "message_id": first["message_id"], "lease": first["lease"]});
    ws_send(&mut ws, &ack).await;
    let mut seen = Vec::new();
    while seen.len() < 2 {
        seen.push(ws_next(&mut ws).await.expect("a frame"));
    }
    assert!(
        seen.iter().any(|f| f["type"] == "ok" && f["op"] == "ack"),
        "{seen:?}"
    );
    let next = seen
        .iter()
        .find(|f| f["type"] == "message")
        .expect("the next push");
    assert_eq!(next["message"]["n"], 2);
}
