//! Bad input and auth against the real `synap-server`: every case is a clear 4xx with
//! `{"error", "code"}`, and the server stays healthy.

mod server_common;

use serde_json::{Value, json};
use server_common::{Api, Options, Server, SseReader, ws_connect, ws_next};

async fn expect(api: &Api, path: &str, body: &str, status: u16, code: &str) {
    let (got, v) = api.post_raw(path, body.to_owned()).await;
    assert_eq!(got, status, "POST {path} {body}: {v}");
    assert_eq!(v["code"], code, "POST {path} {body}: {v}");
    assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{v}");
}

#[tokio::test]
async fn bad_publish_input_gets_400() {
    let api = Api::start();
    let p = "/queue/q/publish";
    expect(&api, p, "{\"message\": 1,", 400, "invalid_argument").await;
    expect(&api, p, "not json", 400, "invalid_argument").await;
    expect(&api, p, "{}", 400, "invalid_argument").await;
    expect(&api, p, "", 400, "invalid_argument").await;
    expect(
        &api,
        p,
        r#"{"message": 1, "priority": "high"}"#,
        400,
        "invalid_argument",
    )
    .await;
    expect(
        &api,
        p,
        r#"{"message": 1, "priority": 10}"#,
        400,
        "invalid_argument",
    )
    .await;
    expect(
        &api,
        p,
        r#"{"message": 1, "priority": -1}"#,
        400,
        "invalid_argument",
    )
    .await;
    expect(
        &api,
        p,
        r#"{"message": 1, "delay": -5}"#,
        400,
        "invalid_argument",
    )
    .await;
    expect(
        &api,
        p,
        r#"{"message": 1, "headers": {"a": 1}}"#,
        400,
        "invalid_argument",
    )
    .await;
    expect(
        &api,
        p,
        r#"{"message": 1, "payload": [1]}"#,
        400,
        "invalid_argument",
    )
    .await;
    expect(
        &api,
        p,
        r#"{"message": 1, "surprise": true}"#,
        400,
        "invalid_argument",
    )
    .await;
    expect(&api, p, r#"{"payload": [1, 300]}"#, 400, "invalid_argument").await;
    let (status, v) = api.get("/health").await;
    assert_eq!((status, v["status"].clone()), (200, json!("healthy")));
}

#[tokio::test]
async fn bad_consume_and_config_input_gets_400() {
    let api = Api::start();
    api.publish("q", json!({"message": 1})).await;
    let c = "/queue/q/consume";
    expect(&api, c, r#"{"timeout": -1}"#, 400, "invalid_argument").await;
    expect(&api, c, r#"{"max_messages": 0}"#, 400, "invalid_argument").await;
    expect(&api, c, r#"{"max_messages": 101}"#, 400, "invalid_argument").await;
    expect(&api, c, r#"{"timeout": "soon"}"#, 400, "invalid_argument").await;
    expect(
        &api,
        "/queue/q",
        r#"{"max_retries": -3}"#,
        400,
        "invalid_argument",
    )
    .await;
    expect(
        &api,
        "/queue/q",
        r#"{"default_priority": 12}"#,
        400,
        "invalid_argument",
    )
    .await;
    expect(
        &api,
        "/queue/q",
        r#"{"ack_deadline_secs": 0}"#,
        400,
        "invalid_argument",
    )
    .await;
}

#[tokio::test]
async fn bad_names_and_unknown_ids_get_4xx() {
    let api = Api::start();
    api.publish("q", json!({"message": 1})).await;
    let bad_names = ["/queue/bad%20name/publish", "/queue/a%2Fb/stats"];
    for path in bad_names {
        let (status, v) = api.post(path, json!({"message": 1})).await;
        assert!(status == 400 || status == 405, "{path}: {status} {v}");
    }
    let long = format!("/queue/{}/publish", "x".repeat(256));
    expect(&api, &long, r#"{"message": 1}"#, 400, "invalid_argument").await;
    expect(
        &api,
        "/queue/q/ack",
        r#"{"message_id": "nope"}"#,
        400,
        "invalid_argument",
    )
    .await;
    expect(&api, "/queue/q/ack", r#"{}"#, 400, "invalid_argument").await;
    let unknown = r#"{"message_id": "00000000-0000-4000-8000-000000000000"}"#;
    expect(&api, "/queue/q/ack", unknown, 404, "message_not_found").await;
    expect(&api, "/queue/q/nack", unknown, 404, "message_not_found").await;
    let ext = r#"{"message_id": "00000000-0000-4000-8000-000000000000", "ack_deadline": 5}"#;
    expect(&api, "/queue/q/extend", ext, 404, "message_not_found").await;
    expect(&api, "/queue/nope/ack", unknown, 404, "queue_not_found").await;
    expect(&api, "/queue/nope/consume", "{}", 404, "queue_not_found").await;
    expect(&api, "/kv/set", r#"{"key": "k"}"#, 400, "invalid_argument").await;
    expect(
        &api,
        "/kv/set",
        r#"{"key": "k", "value": 1, "ttl": -1}"#,
        400,
        "invalid_argument",
    )
    .await;
    let (status, v) = api.get("/queue/q/dlq?limit=abc").await;
    assert_eq!(
        (status, v["code"].clone()),
        (400, json!("invalid_argument"))
    );
    let (status, v) = api.get("/no/such/route").await;
    assert_eq!(status, 404, "{v}");
    let (status, v) = api.get("/health").await;
    assert_eq!((status, v["status"].clone()), (200, json!("healthy")));
    assert_eq!(
        api.stats("q").await["depth"],
        1,
        "nothing was lost along the way"
    );
}

/// Sends `method path` and checks the answer is a JSON `{"error", "code"}` with `status`.
async fn expect_json_error(api: &Api, method: &str, path: &str, status: u16, code: &str) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let resp = api
        .http
        .request(method.clone(), api.srv.url(path))
        .send()
        .await
        .unwrap();
    let got = resp.status().as_u16();
    let allow = resp.headers().get("allow").cloned();
    let ctype = resp.headers().get("content-type").cloned();
    let text = resp.text().await.unwrap();
    assert_eq!(got, status, "{method} {path}: {text}");
    assert_eq!(
        ctype.as_ref().and_then(|c| c.to_str().ok()),
        Some("application/json"),
        "{method} {path}: {text}"
    );
    let v: Value =
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("{method} {path}: {text}"));
    assert_eq!(v["code"], code, "{method} {path}: {v}");
    assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{v}");
    if status == 405 {
        assert!(
            allow.is_some(),
            "{method} {path}: a 405 names the allowed methods"
        );
    }
}

#[tokio::test]
async fn wrong_methods_plain_gets_on_websockets_and_bad_paths_get_json_errors() {
    let api = Api::start();
    expect_json_error(&api, "PUT", "/queue/q", 405, "method_not_allowed").await;
    expect_json_error(&api, "GET", "/queue/q/publish", 405, "method_not_allowed").await;
    expect_json_error(&api, "POST", "/pubsub/ws", 405, "method_not_allowed").await;
    expect_json_error(&api, "GET", "/queue/q/ws", 400, "invalid_argument").await;
    expect_json_error(&api, "GET", "/pubsub/ws?topics=a", 400, "invalid_argument").await;
    expect_json_error(&api, "GET", "/kv/get/%FF", 400, "invalid_argument").await;
    expect_json_error(&api, "DELETE", "/kv/del/%FF%FE", 400, "invalid_argument").await;
    expect_json_error(&api, "POST", "/pubsub/%FF/publish", 400, "invalid_argument").await;
    expect_json_error(&api, "GET", "/queue/q/consume/%FF", 400, "invalid_argument").await;
    let (status, v) = api.get("/health").await;
    assert_eq!((status, v["status"].clone()), (200, json!("healthy")));
}

#[tokio::test]
async fn oversized_bodies_and_messages_get_413() {
    let yaml = "server:\n  max_body_bytes: 8192\nlimits:\n  max_message_bytes: 1000\n";
    let api = Api::with(Server::start_with(Options {
        config_yaml: Some(yaml),
        ..Options::default()
    }));
    let big_message = json!({"message": "x".repeat(2000)}).to_string();
    expect(
        &api,
        "/queue/q/publish",
        &big_message,
        413,
        "payload_too_large",
    )
    .await;
    let big_body = json!({"message": "y".repeat(20_000)}).to_string();
    expect(
        &api,
        "/queue/q/publish",
        &big_body,
        413,
        "payload_too_large",
    )
    .await;
    let envelope = json!({"command": "kv.set", "request_id": "r", "payload": {"key": "k", "value": "z".repeat(20_000)}});
    expect(
        &api,
        "/api/v1/command",
        &envelope.to_string(),
        413,
        "payload_too_large",
    )
    .await;
    api.publish("q", json!({"message": "small"})).await;
}

/// Sends a text frame, ignoring a failed write: the server may cut the connection first.
async fn ws_send_text(ws: &mut server_common::Ws, text: String) {
    use futures_util::SinkExt;
    let _ = ws
        .send(tokio_tungstenite::tungstenite::Message::text(text))
        .await;
}

#[tokio::test]
async fn websocket_messages_over_the_limits_close_the_connection() {
    let yaml = "server:\n  max_body_bytes: 8192\n";
    let api = Api::with(Server::start_with(Options {
        config_yaml: Some(yaml),
        ..Options::default()
    }));
    // The queue socket takes frames up to the body limit, and no more.
    let url = api.srv.ws_url("/queue/big/ws?prefetch=0");
    let mut ws = ws_connect(&url).await;
    assert_eq!(ws_next(&mut ws).await.unwrap()["type"], "connected");
    let small = json!({"op": "publish", "id": 1, "message": "s".repeat(4000)});
    ws_send_text(&mut ws, small.to_string()).await;
    assert_eq!(ws_next(&mut ws).await.unwrap()["type"], "published");
    let big = json!({"op": "publish", "id": 2, "message": "b".repeat(20_000)});
    ws_send_text(&mut ws, big.to_string()).await;
    // Answered with an error frame, then closed (1009: tests/edges.rs checks the code).
    let refused = ws_next(&mut ws).await.expect("an error frame");
    assert_eq!(refused["code"], "payload_too_large", "{refused}");
    assert_eq!(
        ws_next(&mut ws).await,
        None,
        "an oversized frame ends the connection"
    );
    assert_eq!(api.stats("big").await["published_total"], 1);
    // The pub/sub socket takes nothing bigger than a control frame's worth.
    let mut sub = ws_connect(&api.srv.ws_url("/pubsub/ws?topics=t")).await;
    assert_eq!(ws_next(&mut sub).await.unwrap()["type"], "connected");
    ws_send_text(&mut sub, "p".repeat(6000)).await;
    // Without a limit the frame would be read and answered, and the socket would stay open.
    let refused = ws_next(&mut sub).await.expect("an error frame");
    assert_eq!(refused["code"], "payload_too_large", "{refused}");
    assert_eq!(
        ws_next(&mut sub).await,
        None,
        "an oversized message ends the subscription"
    );
}

/// A `queue.publish` envelope whose payload is `n` bytes of 255 (4 bytes of JSON each).
fn byte_publish(n: usize) -> String {
    let bytes = vec!["255"; n].join(",");
    format!(
        r#"{{"command": "queue.publish", "request_id": "r", "payload": {{"queue": "b", "payload": [{bytes}]}}}}"#
    )
}

#[tokio::test]
async fn one_message_routes_take_the_largest_message_and_little_more() {
    // Body limit 8 MiB, messages and values 100 000 bytes: one-message routes allow
    // 4 × 100 000 + 64 KiB.
    let yaml = "limits:\n  max_message_bytes: 100000\n  max_value_bytes: 100000\n";
    let api = Api::with(Server::start_with(Options {
        config_yaml: Some(yaml),
        ..Options::default()
    }));
    // The largest message in its most verbose form still fits.
    let (status, v) = api.post_raw("/api/v1/command", byte_publish(100_000)).await;
    assert_eq!((status, v["success"].clone()), (200, json!(true)), "{v}");
    // One byte more is refused while decoding, with the engine's error.
    let (status, v) = api.post_raw("/api/v1/command", byte_publish(100_001)).await;
    assert_eq!(status, 200, "{v}");
    let e = v["error"].as_str().unwrap_or_default();
    assert!(e.starts_with("payload too large"), "{v}");
    // Far bigger bodies are refused before they are parsed, on every one-message route.
    let zeros = vec!["0"; 300_000].join(",");
    let big_envelope = format!(
        r#"{{"command": "queue.publish", "request_id": "r", "payload": {{"queue": "b", "payload": [{zeros}]}}}}"#
    );
    let cases = [
        ("/api/v1/command", big_envelope),
        ("/queue/b/publish", format!(r#"{{"payload": [{zeros}]}}"#)),
        ("/kv/set", format!(r#"{{"key": "k", "value": [{zeros}]}}"#)),
        ("/pubsub/t/publish", format!(r#"{{"message": [{zeros}]}}"#)),
    ];
    for (path, body) in cases {
        assert!(body.len() > 500_000 && body.len() < 8 << 20);
        let (status, v) = api.post_raw(path, body).await;
        assert_eq!(
            (status, v["code"].clone()),
            (413, json!("payload_too_large")),
            "{path}: {v}"
        );
        let e = v["error"].as_str().unwrap_or_default();
        assert!(
            e.contains("request body"),
            "{path}: refused by the body limit: {v}"
        );
    }
    // Batch routes keep the whole body limit.
    let batch: Vec<Value> = (0..60)
        .map(|_| json!({"message": "m".repeat(9_000)}))
        .collect();
    let v = api
        .ok("/queue/b/publish_batch", json!({ "messages": batch }))
        .await;
    assert_eq!(v["messages"].as_array().map(Vec::len), Some(60));
    assert_eq!(api.stats("b").await["depth"], 61);
}

#[tokio::test]
async fn queue_socket_frames_over_the_one_message_limit_are_refused_unread() {
    let yaml = "limits:\n  max_message_bytes: 100000\n";
    let api = Api::with(Server::start_with(Options {
        config_yaml: Some(yaml),
        ..Options::default()
    }));
    let mut ws = ws_connect(&api.srv.ws_url("/queue/f/ws?prefetch=0")).await;
    assert_eq!(ws_next(&mut ws).await.unwrap()["type"], "connected");
    // 4 × 100 000 + 64 KiB is the limit; this frame is bigger (but under the 8 MiB body limit).
    let zeros = vec!["0"; 300_000].join(",");
    let big = format!(r#"{{"op": "publish", "id": 1, "payload": [{zeros}]}}"#);
    ws_send_text(&mut ws, big).await;
    let f = ws_next(&mut ws).await.expect("the socket stays open");
    assert_eq!(
        (f["type"].clone(), f["code"].clone()),
        (json!("error"), json!("payload_too_large")),
        "{f}"
    );
    // The call is still answered by its id, so a client waiting on it is not left hanging.
    assert_eq!(
        (f["op"].clone(), f["id"].clone()),
        (json!("publish"), json!(1)),
        "{f}"
    );
    let long_id = json!({"op": "publish", "id": "i".repeat(300), "message": 1});
    ws_send_text(&mut ws, long_id.to_string()).await;
    let f = ws_next(&mut ws).await.unwrap();
    assert_eq!(
        (f["code"].clone(), f["id"].clone()),
        (json!("invalid_argument"), Value::Null),
        "{f}"
    );
    // Byte payloads, `command` for `op`, and unknown fields still read as before.
    let bytes = json!({"command": "publish", "id": [2], "payload": [104, 105]});
    ws_send_text(&mut ws, bytes.to_string()).await;
    let f = ws_next(&mut ws).await.unwrap();
    assert_eq!(
        (f["type"].clone(), f["id"].clone()),
        (json!("published"), json!([2])),
        "{f}"
    );
    let odd = json!({"op": "publish", "id": 3, "message": 1, "surprise": true});
    ws_send_text(&mut ws, odd.to_string()).await;
    assert_eq!(ws_next(&mut ws).await.unwrap()["code"], "invalid_argument");
    ws_send_text(&mut ws, "[1, 2]".to_owned()).await;
    assert_eq!(ws_next(&mut ws).await.unwrap()["type"], "error");
    let m = api.consume("f", json!({})).await;
    assert_eq!(m[0]["payload"], json!([104, 105]));
    assert_eq!(m[0]["message"], Value::Null, "`hi` is not JSON");
}

#[tokio::test]
async fn the_default_body_limit_applies() {
    let api = Api::start();
    let huge = json!({"message": "h".repeat(9 << 20)}).to_string();
    // The server answers 413 as soon as it sees the Content-Length and closes the connection
    // without reading the rest, so the client may see either the 413 or its write cut short.
    // A client of its own, so the cut connection is never reused by the requests below.
    let sent = reqwest::Client::new()
        .post(api.srv.url("/queue/q/publish"))
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await;
    if let Ok(resp) = sent {
        assert_eq!(resp.status().as_u16(), 413);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["code"], "payload_too_large");
    }
    let over_message = json!({"message": "m".repeat((1 << 20) + 10)}).to_string();
    expect(
        &api,
        "/queue/q/publish",
        &over_message,
        413,
        "payload_too_large",
    )
    .await;
    api.publish("q", json!({"message": "still serving"})).await;
}

#[tokio::test]
async fn too_many_parked_consumers_get_429() {
    let yaml = "limits:\n  max_waiters: 1\n";
    let api = std::sync::Arc::new(Api::with(Server::start_with(Options {
        config_yaml: Some(yaml),
        ..Options::default()
    })));
    api.ok("/queue/w", json!({})).await;
    let parked = {
        let api = std::sync::Arc::clone(&api);
        tokio::spawn(async move { api.consume("w", json!({"timeout": 20})).await })
    };
    api.wait_stats("w", "one parked waiter", |s| s["waiters"] == 1)
        .await;
    let (status, v) = api.post("/queue/w/consume", json!({"timeout": 5})).await;
    assert_eq!(
        (status, v["code"].clone()),
        (429, json!("limit_exceeded")),
        "{v}"
    );
    api.publish("w", json!({"message": 1})).await;
    assert_eq!(parked.await.unwrap().len(), 1);
}

#[tokio::test]
async fn api_keys_guard_every_route_but_health() {
    let srv = Server::start_with(Options {
        api_key: Some("k1, k2"),
        ..Options::default()
    });
    let mut api = Api::with(srv);
    let (status, v) = api.get("/health").await;
    assert_eq!(status, 200, "health is public: {v}");
    for path in ["/queue/list", "/metrics", "/kv/keys", "/events"] {
        let (status, v) = api.get(path).await;
        assert_eq!(status, 401, "{path}");
        assert_eq!(v["code"], "unauthorized", "{path}: {v}");
        assert!(v["error"].is_string());
    }
    let env = json!({"command": "queue.list", "request_id": "r", "payload": {}});
    let (status, _) = api.post("/api/v1/command", env.clone()).await;
    assert_eq!(status, 401);
    api.key = Some("k3".into());
    assert_eq!(api.get("/queue/list").await.0, 401, "an unknown key");
    api.key = Some("k2".into());
    assert_eq!(api.get("/queue/list").await.0, 200, "Bearer k2");
    assert_eq!(api.cmd("queue.list", json!({})).await["success"], true);
    api.key = None;
    query_keys_only_open_websocket_and_sse_routes(&api).await;
    let refused = tokio_tungstenite::connect_async(api.srv.ws_url("/pubsub/ws?topics=a")).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 401);
        }
        other => panic!("expected a 401 handshake, got {:?}", other.map(|_| ())),
    }
    let mut ws = ws_connect(&api.srv.ws_url("/pubsub/ws?topics=a&api_key=k1")).await;
    assert_eq!(ws_next(&mut ws).await.unwrap()["type"], "connected");
    let mut ws = ws_connect(&api.srv.ws_url("/queue/qk/ws?prefetch=0&api_key=k2")).await;
    assert_eq!(ws_next(&mut ws).await.unwrap()["type"], "connected");
    for path in ["/events?api_key=k1", "/pubsub/sse?topics=a&api_key=k2"] {
        SseReader::open(&api.srv.url(path)).await;
    }
}

/// `?api_key=` is refused on every route but GET of the WebSocket and SSE routes (DESIGN §5),
/// even when the key is right.
async fn query_keys_only_open_websocket_and_sse_routes(api: &Api) {
    for path in ["/queue/list", "/metrics", "/kv/keys", "/queue/q/stats"] {
        let (status, v) = api.get(&format!("{path}?api_key=k1")).await;
        assert_eq!(
            (status, v["code"].clone()),
            (401, json!("unauthorized")),
            "{path}"
        );
    }
    let (status, _) = api
        .post("/queue/q/publish?api_key=k1", json!({"message": 1}))
        .await;
    assert_eq!(status, 401, "a POST with a query key");
    let env = json!({"command": "queue.list", "request_id": "r", "payload": {}});
    assert_eq!(api.post("/api/v1/command?api_key=k1", env).await.0, 401);
    // A non-GET on a WebSocket route does not get the query-key exemption either.
    assert_eq!(api.post("/events?api_key=k1", json!({})).await.0, 401);
    assert_eq!(
        api.get("/events?api_key=k").await.0,
        401,
        "a wrong query key"
    );
}
