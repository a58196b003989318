//! The real `synap-server` against a hostile browser and hostile input: cross-origin and
//! DNS-rebinding requests refused, allowed origins served with CORS, the memory budget
//! refusing publishes on every transport and recovering after a drain, and every bad input of
//! the hardening list answered with a JSON 4xx.

mod hardening_common;
mod rpc_common;
mod server_common;

use hardening_common::{exchange, refused};
use rpc_common::{Rpc, V, s};
use serde_json::{Value, json};
use server_common::{Api, Options, Server, ws_connect, ws_next, ws_send};

/// A raw request to `srv` with the given method, path and extra header lines.
fn raw(srv: &Server, method: &str, path: &str, headers: &str, body: &str) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\n{headers}content-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        srv.addr,
        body.len()
    )
}

#[tokio::test]
async fn cross_origin_requests_are_refused_and_allowed_origins_get_cors() {
    let srv = Server::start_with(Options {
        args: vec!["--allowed-origin".into(), "http://app.test:3000".into()],
        ..Options::default()
    });
    let json_ct = "content-type: application/json\r\n";
    let body = r#"{"message": 1}"#;
    let kv = r#"{"key":"k","value":1}"#;
    // (what, method, path, extra headers, body, status, code)
    let cases = [
        (
            "a browser's plain cross-origin POST",
            "POST",
            "/queue/q/publish",
            "origin: http://evil.test\r\ncontent-type: text/plain\r\n",
            body,
            403,
            "origin_not_allowed",
        ),
        (
            "no Origin, but a form post",
            "POST",
            "/queue/q/publish",
            "content-type: application/x-www-form-urlencoded\r\n",
            body,
            415,
            "unsupported_media_type",
        ),
        (
            "no content type",
            "POST",
            "/kv/set",
            "",
            kv,
            415,
            "unsupported_media_type",
        ),
        (
            "a marked cross-site GET without Origin (an <img>)",
            "GET",
            "/queue/q/consume/w",
            "sec-fetch-site: cross-site\r\n",
            "",
            403,
            "origin_not_allowed",
        ),
    ];
    for (what, method, path, headers, body, status, code) in cases {
        println!("{what}");
        refused(
            srv.addr,
            &raw(&srv, method, path, headers, body),
            status,
            code,
        )
        .await;
    }
    // DNS rebinding: the page's own host name in Host.
    let rebound = format!(
        "GET /queue/list HTTP/1.1\r\nHost: evil.test:{}\r\nconnection: close\r\n\r\n",
        srv.addr.port()
    );
    refused(srv.addr, &rebound, 403, "host_not_allowed").await;
    // Same origin (the web app served at /) and the allowed origin are served.
    let same = format!("origin: http://{}\r\n{json_ct}", srv.addr);
    let (status, text) = exchange(
        srv.addr,
        raw(&srv, "POST", "/queue/q/publish", &same, body).as_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let allowed_hdr = format!("origin: http://app.test:3000\r\n{json_ct}");
    let answer = raw_full(
        &srv,
        &raw(&srv, "POST", "/queue/q/publish", &allowed_hdr, body),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("access-control-allow-origin: http://app.test:3000"),
        "{answer}"
    );
    let preflight = raw(
        &srv,
        "OPTIONS",
        "/queue/q/publish",
        "origin: http://app.test:3000\r\naccess-control-request-method: POST\r\naccess-control-request-headers: content-type\r\n",
        "",
    );
    let answer = raw_full(&srv, &preflight).await.to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 204"), "{answer}");
    assert!(answer.contains("access-control-allow-methods:"), "{answer}");
    assert!(
        answer.contains("access-control-allow-headers: authorization, content-type"),
        "{answer}"
    );
    let bad_preflight = raw(
        &srv,
        "OPTIONS",
        "/queue/q/publish",
        "origin: http://evil.test\r\naccess-control-request-method: POST\r\n",
        "",
    );
    refused(srv.addr, &bad_preflight, 403, "origin_not_allowed").await;
    // A WebSocket upgrade from another origin.
    let ws = format!(
        "GET /queue/q/ws HTTP/1.1\r\nHost: {}\r\nOrigin: http://evil.test\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        srv.addr
    );
    refused(srv.addr, &ws, 403, "origin_not_allowed").await;
    // Only the two accepted publishes reached the queue.
    let api = Api::with(srv);
    assert_eq!(api.stats("q").await["depth"], 2);
}

/// The whole answer to a `connection: close` request, as text.
async fn raw_full(srv: &Server, request: &str) -> String {
    use tokio::io::AsyncWriteExt;
    let mut tcp = hardening_common::connect(srv.addr).await;
    tcp.write_all(request.as_bytes()).await.unwrap();
    String::from_utf8_lossy(&hardening_common::read_to_close(&mut tcp).await).into_owned()
}

/// A POST that must be refused with 507 `memory_full`.
async fn refused_full(api: &Api, path: &str, body: Value) {
    let (status, v) = api.post(path, body).await;
    assert_eq!(
        (status, v["code"].as_str()),
        (507, Some("memory_full")),
        "{path}: {v}"
    );
}

#[tokio::test]
async fn the_memory_budget_refuses_publishes_everywhere_and_recovers() {
    let srv = Server::start_with(Options {
        args: vec!["--max-held-bytes".into(), "2000".into()],
        ..Options::default()
    });
    let rpc_addr = srv.rpc_addr.expect("SynapRPC on");
    let api = Api::with(srv);
    let body = "x".repeat(900);
    api.publish("q", json!({ "message": body })).await;
    api.publish("q", json!({ "message": body })).await;
    refused_full(&api, "/queue/q/publish", json!({ "message": body })).await;
    refused_full(
        &api,
        "/queue/q/publish_batch",
        json!({"messages": [{"message": body}]}),
    )
    .await;
    refused_full(&api, "/pubsub/t.a/publish", json!({ "message": body })).await;
    let env = api
        .cmd(
            "queue.publish",
            json!({"queue": "q", "payload": vec![7u8; 900]}),
        )
        .await;
    assert!(
        env["error"]
            .as_str()
            .is_some_and(|e| e.contains("Memory full")),
        "{env}"
    );
    let mut rpc = Rpc::connect(rpc_addr).await;
    let e = rpc.err("QPUBLISH", &[s("q"), V::Bytes(vec![7; 900])]).await;
    assert!(e.contains("Memory full"), "{e}");
    let mut ws = ws_connect(&api.srv.ws_url("/queue/q/ws?prefetch=0")).await;
    ws_next(&mut ws).await.expect("connected");
    ws_send(&mut ws, &json!({"op": "publish", "id": 1, "message": body})).await;
    let frame = ws_next(&mut ws).await.expect("confirm");
    assert_eq!(frame["code"], "memory_full", "{frame}");
    let stats = api.stats("q").await;
    assert_eq!(stats["memory"]["limit_bytes"], 2000, "{stats}");
    assert!(stats["bytes"].as_u64().unwrap() > 1800, "{stats}");
    let metrics = api.get("/metrics").await.1;
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("synap_memory_limit_bytes 2000")
    );
    // Consumes and acks go on; once drained, publishes are taken again.
    let m = api.consume("q", json!({})).await;
    let ack = json!({"message_id": m[0]["message_id"], "lease": m[0]["lease"]});
    api.ok("/queue/q/ack", ack).await;
    api.publish("q", json!({ "message": body })).await;
    // A queue's own max_bytes.
    api.ok("/queue/small", json!({"max_bytes": 100})).await;
    refused_full(&api, "/queue/small/publish", json!({ "message": body })).await;
    assert_eq!(api.stats("small").await["config"]["max_bytes"], 100);
}

async fn expect_400(api: &Api, path: &str, body: Value) {
    let (status, v) = api.post(path, body.clone()).await;
    assert_eq!(status, 400, "POST {path} {body}: {v}");
    assert!(v["code"].is_string() && v["error"].is_string(), "{v}");
}

#[tokio::test]
async fn every_bad_input_of_the_list_gets_a_json_4xx() {
    let api = Api::start();
    let srv = &api.srv;
    // Arrays in place of objects, at the top and inside.
    expect_400(&api, "/queue/q/consume", json!([0, 3600, 2])).await;
    expect_400(
        &api,
        "/queue/q/publish_batch",
        json!({"messages": [[1, 5]]}),
    )
    .await;
    expect_400(&api, "/kv/mset", json!({"entries": [["k", 1]]})).await;
    // TTLs: 0 refused on REST; negative and absurd refused on the envelope as well.
    expect_400(&api, "/kv/set", json!({"key": "k", "value": 1, "ttl": 0})).await;
    expect_400(&api, "/kv/set", json!({"key": "k", "value": 1, "ttl": -1})).await;
    for ttl in [json!(-1), json!(0), json!(1e300), json!("soon")] {
        let v = api
            .cmd("kv.set", json!({"key": "k", "value": "v", "ttl": ttl}))
            .await;
        assert_eq!(v["success"], false, "ttl {ttl}: {v}");
        assert!(v["error"].as_str().unwrap().contains("ttl"), "{v}");
    }
    // Integer overflow on every route that adds.
    api.ok("/kv/incr", json!({"key": "n", "by": 1})).await;
    let v = api
        .cmd("kv.decr", json!({"key": "n", "amount": i64::MIN}))
        .await;
    assert!(
        v["error"].as_str().is_some_and(|e| e.contains("fit")),
        "{v}"
    );
    let v = api
        .cmd("kv.incr", json!({"key": "n", "amount": 1e30}))
        .await;
    assert_eq!(v["success"], false, "{v}");
    let mut rpc = Rpc::connect(srv.rpc_addr.unwrap()).await;
    let e = rpc.err("DECRBY", &[s("n"), V::Int(i64::MIN)]).await;
    assert!(e.contains("fit"), "{e}");
    let e = rpc.err("EXPIRE", &[s("n"), V::Int(-5)]).await;
    assert!(e.contains("ttl"), "{e}");
    // NUL in a topic, invalid UTF-8 in a query.
    let (status, v) = api
        .post("/pubsub/a%00b/publish", json!({"message": 1}))
        .await;
    assert_eq!(status, 400, "{v}");
    let (status, v) = api.get("/kv/keys?prefix=%FF").await;
    assert_eq!(
        (status, v["code"].as_str()),
        (400, Some("invalid_argument")),
        "{v}"
    );
    // The queue WebSocket: consumer ids as REST takes them, binary frames answered.
    for id in ["a%00b", &"x".repeat(5_000)] {
        let url = srv.ws_url(&format!("/queue/q/ws?consumer_id={id}"));
        match tokio_tungstenite::connect_async(url).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status().as_u16(), 400, "{resp:?}");
            }
            other => panic!("consumer id {id:.20}: {:?}", other.map(|_| ())),
        }
    }
    let mut ws = ws_connect(&srv.ws_url("/queue/q/ws?prefetch=0")).await;
    ws_next(&mut ws).await.expect("connected");
    {
        use futures_util::SinkExt;
        use tokio_tungstenite::tungstenite::Message;
        ws.send(Message::Binary(vec![1, 2, 3].into()))
            .await
            .unwrap();
    }
    let frame = ws_next(&mut ws).await.expect("an error frame");
    assert_eq!(frame["type"], "error", "{frame}");
    assert!(
        frame["error"].as_str().unwrap().contains("binary"),
        "{frame}"
    );
    // A deeply nested envelope payload.
    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    let body = format!(
        r#"{{"command": "kv.set", "request_id": "r", "payload": {{"key": "k", "value": {deep}}}}}"#
    );
    let (status, v) = api.post_raw("/api/v1/command", body).await;
    let text = v.to_string();
    assert!(status == 400 || v["success"] == false, "{text}");
    assert!(text.contains("recursion"), "{text}");
    // The HTTP layer's own errors.
    let many: String = (0..120).map(|i| format!("x-h{i}: v\r\n")).collect();
    let big = raw(srv, "GET", "/health", &many, "");
    refused(srv.addr, &big, 431, "header_too_large").await;
    let long = raw(srv, "GET", &format!("/{}", "a".repeat(70_000)), "", "");
    refused(srv.addr, &long, 414, "uri_too_long").await;
    let bad_len = format!(
        "POST /kv/set HTTP/1.1\r\nHost: {}\r\ncontent-length: twelve\r\n\r\n",
        srv.addr
    );
    refused(srv.addr, &bad_len, 400, "bad_request").await;
    let bad_path = format!("GET /a b c HTTP/1.1\r\nHost: {}\r\n\r\n", srv.addr);
    refused(srv.addr, &bad_path, 400, "bad_request").await;
    let (status, v) = api.get("/no/such/route").await;
    assert_eq!(
        (status, v["code"].as_str()),
        (404, Some("not_found")),
        "{v}"
    );
    let (status, v) = api.delete("/kv/set").await;
    assert_eq!(
        (status, v["code"].as_str()),
        (405, Some("method_not_allowed")),
        "{v}"
    );
    assert_eq!(api.ok_get("/health").await["status"], "healthy");
}

#[test]
fn an_empty_api_key_is_a_start_up_error() {
    let out = std::process::Command::new(synap_tests::server_harness::server_binary())
        .args(["--in-memory", "--bind", "127.0.0.1:0", "--no-rpc"])
        .env("SYNAP_API_KEY", "")
        .output()
        .expect("run the server");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("SYNAP_API_KEY"), "{err}");
}
