//! Operations against the real server: `/metrics`, `/events`, the streaming queue WebSocket,
//! and graceful shutdown on SIGTERM.

mod server_common;

use serde_json::{Value, json};
use server_common::{Api, SseReader, ws_connect, ws_next, ws_send};

#[tokio::test]
async fn metrics_expose_queues_and_http() {
    let api = Api::start();
    api.publish("m1", json!({"message": 1})).await;
    api.publish("m1", json!({"message": 2})).await;
    api.consume("m1", json!({})).await;
    let resp = reqwest::get(api.srv.url("/metrics")).await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let text = resp.text().await.unwrap();
    for line in [
        "synap_queue_depth{queue=\"m1\"} 1",
        "synap_queue_in_flight{queue=\"m1\"} 1",
        "synap_queue_published_total{queue=\"m1\"} 2",
        "synap_queue_dead_letter{queue=\"m1\"} 0",
        "# TYPE synap_http_request_duration_seconds histogram",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    assert!(
        text.contains("synap_http_requests_total{method=\"POST\",route=\"/queue/{name}/publish\",status=\"200\"} 2"),
        "{text}"
    );
    assert!(
        text.contains(
            "synap_http_request_duration_seconds_count{route=\"/queue/{name}/consume\"} 1"
        )
    );
}

#[tokio::test]
async fn metrics_labels_stay_bounded_whatever_the_method_or_path() {
    let api = Api::start();
    for (n, path) in ["/queue/q", "/no/such/route/1", "/no/such/route/2"]
        .iter()
        .enumerate()
    {
        let method = reqwest::Method::from_bytes(format!("FOO{n}").as_bytes()).unwrap();
        let resp = api
            .http
            .request(method, api.srv.url(path))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_client_error(), "{path}: {}", resp.status());
    }
    let text = reqwest::get(api.srv.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !text.contains("FOO"),
        "raw methods leak into labels:\n{text}"
    );
    assert!(
        !text.contains("/no/such"),
        "raw paths leak into labels:\n{text}"
    );
    assert!(
        text.contains(
            "synap_http_requests_total{method=\"other\",route=\"/queue/{name}\",status=\"405\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "synap_http_requests_total{method=\"other\",route=\"unmatched\",status=\"404\"} 2"
        ),
        "{text}"
    );
}

#[tokio::test]
async fn events_stream_engine_events() {
    let api = Api::start();
    let mut sse = SseReader::open(&api.srv.url("/events")).await;
    sse.next_named("connected").await;
    let id = api.publish("ev", json!({"message": 1})).await;
    let e = sse.next_named("observed").await;
    assert_eq!(
        (e["kind"].clone(), e["queue"].clone()),
        (json!("published"), json!("ev"))
    );
    assert_eq!(e["message_id"], id.as_str());
    let m = api.consume("ev", json!({})).await;
    assert_eq!(sse.next_named("observed").await["kind"], "delivered");
    api.ok("/queue/ev/ack", json!({"message_id": m[0]["message_id"]}))
        .await;
    assert_eq!(sse.next_named("observed").await["kind"], "acked");
}

/// Connects a `prefetch=2` streaming consumer, publishes three messages over the same socket,
/// and returns the socket with the two messages pushed.
async fn stream_of_two(api: &Api) -> (server_common::Ws, Vec<Value>) {
    let mut ws = ws_connect(&api.srv.ws_url("/queue/stream/ws?prefetch=2&consumer_id=w1")).await;
    let hello = ws_next(&mut ws).await.unwrap();
    assert_eq!(
        hello,
        json!({"type": "connected", "queue": "stream", "consumer_id": "w1", "prefetch": 2})
    );
    // Pipelined publishes on the same socket, each confirmed in order.
    for n in 0..3 {
        ws_send(
            &mut ws,
            &json!({"op": "publish", "id": n, "message": {"n": n}}),
        )
        .await;
    }
    let mut confirms = Vec::new();
    let mut pushed = Vec::new();
    while confirms.len() < 3 || pushed.len() < 2 {
        let f = ws_next(&mut ws).await.unwrap();
        match f["type"].as_str().unwrap() {
            "published" => confirms.push(f["id"].clone()),
            "message" => pushed.push(f),
            other => panic!("unexpected frame {other}: {f}"),
        }
    }
    assert_eq!(confirms, [json!(0), json!(1), json!(2)]);
    let ns: Vec<Value> = pushed.iter().map(|m| m["message"]["n"].clone()).collect();
    assert_eq!(
        ns,
        [json!(0), json!(1)],
        "only `prefetch` messages are pushed"
    );
    (ws, pushed)
}

#[tokio::test]
async fn the_queue_websocket_streams_with_credit() {
    let api = Api::start();
    let (mut ws, pushed) = stream_of_two(&api).await;
    let s = api.stats("stream").await;
    assert_eq!(
        (s["in_flight"].clone(), s["ready"].clone()),
        (json!(2), json!(1))
    );
    // Acking one frees one credit: the third message follows.
    let first = &pushed[0];
    ws_send(&mut ws, &json!({"op": "ack", "id": "a1", "message_id": first["message_id"], "lease": first["lease"]})).await;
    let mut acked = false;
    let mut third = None;
    while !acked || third.is_none() {
        let f = ws_next(&mut ws).await.unwrap();
        match f["type"].as_str().unwrap() {
            "ok" => {
                assert_eq!(
                    (f["op"].clone(), f["id"].clone()),
                    (json!("ack"), json!("a1"))
                );
                acked = true;
            }
            "message" => third = Some(f),
            other => panic!("unexpected frame {other}: {f}"),
        }
    }
    assert_eq!(third.unwrap()["message"]["n"], 2);
    let second = &pushed[1];
    let extend =
        json!({"op": "extend", "id": 9, "message_id": second["message_id"], "ack_deadline": 60});
    ws_send(&mut ws, &extend).await;
    let f = ws_next(&mut ws).await.unwrap();
    assert_eq!(
        (f["type"].clone(), f["op"].clone()),
        (json!("ok"), json!("extend"))
    );
    ws_send(
        &mut ws,
        &json!({"op": "nack", "message_id": second["message_id"], "requeue": false}),
    )
    .await;
    let f = ws_next(&mut ws).await.unwrap();
    assert_eq!(f["action"], "dead_lettered");
    ws_send(&mut ws, &json!({"op": "ack", "message_id": "nope"})).await;
    let f = ws_next(&mut ws).await.unwrap();
    assert_eq!(
        (f["type"].clone(), f["code"].clone()),
        (json!("error"), json!("invalid_argument"))
    );
    ws_send(&mut ws, &json!({"op": "dance"})).await;
    assert_eq!(ws_next(&mut ws).await.unwrap()["type"], "error");
    drop(ws);
    // The third message was pushed but never acked; closing the socket gives it back at once
    // (as a nack), long before its 30 s lease would end.
    let s = api
        .wait_stats("stream", "the unacked message back", |s| s["ready"] == 1)
        .await;
    assert_eq!(
        (s["acked_total"].clone(), s["in_flight"].clone()),
        (json!(1), json!(0))
    );
}

#[tokio::test]
async fn closing_a_queue_socket_gives_back_what_it_held() {
    let api = Api::start();
    let url = api.srv.ws_url("/queue/held/ws?prefetch=2&ack_deadline=60");
    let mut ws = ws_connect(&url).await;
    ws_expect(&mut ws, "connected").await;
    let a = api.publish("held", json!({"message": "a"})).await;
    let b = api.publish("held", json!({"message": "b"})).await;
    let mut got = vec![
        ws_expect(&mut ws, "message").await["message_id"].clone(),
        ws_expect(&mut ws, "message").await["message_id"].clone(),
    ];
    got.sort_by_key(|v| v.as_str().map(str::to_owned));
    let mut want = vec![json!(a), json!(b)];
    want.sort_by_key(|v| v.as_str().map(str::to_owned));
    assert_eq!(got, want);
    assert_eq!(api.stats("held").await["in_flight"], 2);
    ws.close(None).await.expect("close");
    // Their 60 s leases would strand them; the close gives them back now.
    let s = api
        .wait_stats("held", "both messages back", |s| s["ready"] == 2)
        .await;
    assert_eq!(
        (s["in_flight"].clone(), s["nacked_total"].clone()),
        (json!(0), json!(2)),
        "{s}"
    );
    let again = api.consume("held", json!({"max_messages": 2})).await;
    assert_eq!(again.len(), 2);
    for m in &again {
        assert_eq!(
            m["retry_count"], 1,
            "a give-back counts as a delivery attempt: {m}"
        );
    }
    let dlq = api.ok_get("/queue/held/dlq").await;
    assert_eq!(dlq["total"], 0);
}

/// The next frame of type `kind`, failing on any other frame.
async fn ws_expect(ws: &mut server_common::Ws, kind: &str) -> Value {
    let f = ws_next(ws).await.expect("socket open");
    assert_eq!(f["type"], kind, "{f}");
    f
}

#[tokio::test]
async fn a_message_redelivered_to_the_same_socket_keeps_the_credit_count() {
    let api = Api::start();
    let url = api
        .srv
        .ws_url("/queue/again/ws?prefetch=2&ack_deadline=0.3");
    let mut ws = ws_connect(&url).await;
    ws_expect(&mut ws, "connected").await;
    let id = api.publish("again", json!({"message": "m"})).await;
    let first = ws_expect(&mut ws, "message").await;
    assert_eq!(
        (first["message_id"].as_str(), first["retry_count"].clone()),
        (Some(id.as_str()), json!(0))
    );
    // With one credit left the socket keeps a consume parked, so when the 300 ms lease ends the
    // engine hands the same message straight back to it under a new lease.
    let again = ws_expect(&mut ws, "message").await;
    assert_eq!(
        (again["message_id"].as_str(), again["retry_count"].clone()),
        (Some(id.as_str()), json!(1))
    );
    let lease = again["lease"].clone();
    let extend =
        json!({"op": "extend", "id": 1, "message_id": id, "ack_deadline": 60, "lease": lease});
    ws_send(&mut ws, &extend).await;
    ws_expect(&mut ws, "ok").await;
    // One delivery is held (the first lease ended), so exactly one more message is pushed.
    api.publish("again", json!({"message": "a"})).await;
    api.publish("again", json!({"message": "b"})).await;
    assert_eq!(ws_expect(&mut ws, "message").await["message"], "a");
    let s = api.stats("again").await;
    assert_eq!(
        (s["in_flight"].clone(), s["ready"].clone()),
        (json!(2), json!(1)),
        "{s}"
    );
    let ack = json!({"op": "ack", "id": 2, "message_id": id, "lease": lease});
    ws_send(&mut ws, &ack).await;
    let mut kinds = Vec::new();
    while kinds.len() < 2 {
        let f = ws_next(&mut ws).await.expect("socket open");
        if f["type"] == "message" {
            assert_eq!(f["message"], "b");
        }
        kinds.push(f["type"].as_str().unwrap().to_owned());
    }
    kinds.sort();
    assert_eq!(
        kinds,
        ["message", "ok"],
        "the ack's credit brings the last message"
    );
}

#[tokio::test]
async fn sigterm_answers_parked_consumers_and_exits_cleanly() {
    let mut api = Api::start();
    api.ok("/queue/park", json!({})).await;
    let url = api.srv.url("/queue/park/consume");
    let http = api.http.clone();
    let parked = tokio::spawn(async move {
        let resp = http
            .post(url)
            .json(&json!({"timeout": 60}))
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
    });
    api.wait_stats("park", "a parked consumer", |s| s["waiters"] == 1)
        .await;
    let mut events = SseReader::open(&api.srv.url("/events")).await;
    events.next_named("connected").await;
    let status = tokio::task::spawn_blocking(move || {
        let status = api.srv.terminate();
        (status, api)
    });
    let (answer, ()) = tokio::join!(parked, async {
        // The event stream ends at shutdown instead of holding the server open.
        while events.next().await.is_some() {}
    });
    let (code, body) = answer.unwrap();
    assert_eq!((code, body), (200, json!({"messages": []})));
    let (status, api) = status.await.unwrap();
    assert!(
        status.success(),
        "exit status {status:?}; log: {:?}",
        api.srv.log()
    );
    assert!(api.srv.log().iter().any(|l| l.contains("shutting down")));
}

/// Frames sent in one burst are answered together by the server: each still gets exactly one
/// confirm, in order (errors included), and credit never lets more than `prefetch` unacked
/// messages out, however the acks are batched.
#[tokio::test]
async fn a_burst_of_frames_gets_one_confirm_each_in_order_within_prefetch() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;

    let api = Api::start();
    let mut ws = ws_connect(&api.srv.ws_url("/queue/burst/ws?prefetch=3&consumer_id=b1")).await;
    assert_eq!(ws_next(&mut ws).await.unwrap()["type"], "connected");
    let mut burst: Vec<String> = (0..10)
        .map(|n| json!({"op": "publish", "id": n, "message": {"n": n}}).to_string())
        .collect();
    burst.push("not json".into());
    let unknown = "00000000-0000-4000-8000-000000000000";
    burst.push(json!({"op": "ack", "id": 11, "message_id": unknown}).to_string());
    for frame in &burst {
        ws.feed(Message::text(frame.clone())).await.expect("feed");
    }
    ws.flush().await.expect("flush");

    let (mut confirms, mut held, mut seen) = (Vec::new(), Vec::new(), Vec::new());
    let mut acks_sent = 0;
    while confirms.len() < 12 + acks_sent || seen.len() < 10 {
        let f = ws_next(&mut ws).await.expect("socket open");
        if f["type"] == "message" {
            seen.push(f["message"]["n"].as_u64().unwrap());
            held.push(f);
            assert!(
                seen.len() - acks_sent <= 3,
                "more than prefetch unacked: {seen:?}"
            );
            if held.len() == 2 || seen.len() == 10 {
                // Ack what is held in one burst of its own.
                for m in held.drain(..) {
                    let ack =
                        json!({"op": "ack", "message_id": m["message_id"], "lease": m["lease"]});
                    ws.feed(Message::text(ack.to_string())).await.expect("feed");
                    acks_sent += 1;
                }
                ws.flush().await.expect("flush");
            }
        } else {
            confirms.push(f);
        }
    }
    let ids: Vec<Value> = confirms[..10].iter().map(|c| c["id"].clone()).collect();
    assert_eq!(ids, (0..10).map(|n| json!(n)).collect::<Vec<_>>());
    assert!(confirms[..10].iter().all(|c| c["type"] == "published"));
    assert_eq!(
        confirms[10]["type"], "error",
        "the non-JSON frame: {}",
        confirms[10]
    );
    assert_eq!(confirms[11]["type"], "error");
    assert_eq!(confirms[11]["id"], 11);
    assert_eq!(confirms[11]["code"], "message_not_found");
    assert!(
        confirms[12..]
            .iter()
            .all(|c| c["type"] == "ok" && c["op"] == "ack"),
        "{confirms:?}"
    );
    seen.sort_unstable();
    assert_eq!(
        seen,
        (0..10).collect::<Vec<u64>>(),
        "every message delivered once"
    );
    let stats = api
        .wait_stats("burst", "all ten acked", |s| s["acked_total"] == 10)
        .await;
    assert_eq!(stats["in_flight"], 0);
}
