//! Edges found by probing the real `synap-server` from outside, as a hostile or unlucky client
//! would (issue #35): a low open-file limit, WebSocket close codes and frame limits, requests
//! during the shutdown drain, subscribers that closed, and the simulator's summary units.
//!
//! Method: each test starts the binary (tests/src/server_harness.rs) on free ports, drives it
//! over raw TCP, WebSocket or HTTP, and stops it by its PID (SIGTERM where shutdown is what is
//! tested, SIGKILL on drop otherwise). No assertion is on speed: every wait is many times what
//! the server needs, and "answered within 1 s" is asserted only where the alternative is a
//! hang of the client's own timeout.

mod hardening_common;
mod server_common;

use hardening_common::parse_answer;

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use server_common::{Api, Options, Server, Ws, ws_connect, ws_next};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

/// The longest any one wait lasts; the server needs a small fraction of it.
const WAIT: Duration = Duration::from_secs(30);

/// Lets this test process open a thousand connections whatever its soft limit was.
fn raise_own_file_limit() {
    let _ = rlimit::increase_nofile_limit(8192);
}

/// A `key=value` number of the first log line holding `needle`.
fn log_number(srv: &Server, needle: &str, key: &str) -> Option<u64> {
    srv.log()
        .iter()
        .filter(|l| l.contains(needle))
        .find_map(|l| {
            let rest = &l[l.find(&format!("{key}="))? + key.len() + 1..];
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
}

/// How one connection attempt ended.
#[derive(Debug)]
enum Outcome {
    /// Answered with this status; the connection is kept open (it holds a slot).
    Answered(u16, String, Option<TcpStream>),
    /// Refused or closed by the server without an answer.
    Refused(String),
    /// Nothing within `WAIT`: the hang this test exists to rule out.
    Hung,
}

/// Connects, asks `GET /health` (keep-alive) and reads the answer's head and body.
async fn attempt(addr: SocketAddr) -> Outcome {
    let go = async {
        let mut tcp = match TcpStream::connect(addr).await {
            Ok(t) => t,
            Err(e) => return Outcome::Refused(e.to_string()),
        };
        let req = format!("GET /health HTTP/1.1\r\nHost: {addr}\r\n\r\n");
        if let Err(e) = tcp.write_all(req.as_bytes()).await {
            return Outcome::Refused(e.to_string());
        }
        let mut data = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            if let Some((status, body)) = parse_answer(&data) {
                let keep = (status == 200).then_some(tcp);
                return Outcome::Answered(status, body, keep);
            }
            match tcp.read(&mut buf).await {
                Ok(0) => return Outcome::Refused("closed without an answer".into()),
                Err(e) => return Outcome::Refused(e.to_string()),
                Ok(n) => data.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(WAIT, go)
        .await
        .unwrap_or(Outcome::Hung)
}

/// A counter of `/metrics` (0 when absent).
fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_low_file_limit_the_cap_is_lowered_and_every_connection_is_answered() {
    raise_own_file_limit();
    let srv = Server::start_with(Options {
        nofile: Some((256, Some(256))),
        ..Options::default()
    });
    assert!(
        srv.log().iter().any(|l| l.contains("caps lowered")),
        "the log says the cap was lowered: {:?}",
        srv.log()
    );
    let cap = log_number(&srv, "synap-server listening", "max_connections").expect("cap logged");
    assert!((1..256).contains(&cap), "cap {cap} fits under 256 files");
    let addr = srv.addr;
    let attempts: Vec<_> = (0..1000).map(|_| tokio::spawn(attempt(addr))).collect();
    let mut served = Vec::new();
    let (mut too_many, mut refused, mut hung, mut other) = (0, Vec::new(), 0, Vec::new());
    for a in attempts {
        match a.await.expect("attempt task") {
            Outcome::Answered(200, _, conn) => served.push(conn),
            Outcome::Answered(503, body, _) => {
                let v: Value = serde_json::from_str(&body).expect("JSON body");
                assert_eq!(v["code"], "too_many_connections", "{v}");
                too_many += 1;
            }
            Outcome::Answered(status, body, _) => other.push((status, body)),
            Outcome::Refused(why) => refused.push(why),
            Outcome::Hung => hung += 1,
        }
    }
    assert_eq!(hung, 0, "no connection attempt hangs");
    assert!(other.is_empty(), "only 200 or 503: {other:?}");
    assert!(refused.is_empty(), "answered, not dropped: {refused:?}");
    assert_eq!(
        served.len() as u64,
        cap,
        "served up to the cap, all held open"
    );
    assert_eq!(served.len() + too_many, 1000);
    drop(served);
    // With the cap under the file limit, `accept` never ran out of descriptors.
    let api = Api::with(srv);
    let mut text = String::new();
    for _ in 0..100 {
        let (status, body) = api.get("/metrics").await;
        if status == 200 {
            text = body.as_str().expect("text").to_owned();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        metric(&text, "synap_accept_errors_total{listener=\"http\"}"),
        0,
        "{text}"
    );
    assert!(metric(&text, "synap_http_connections_refused_total") >= too_many as u64);
}

#[test]
fn the_soft_file_limit_is_raised_to_the_hard_limit() {
    let srv = Server::start_with(Options {
        nofile: Some((256, None)),
        ..Options::default()
    });
    let at_start = log_number(&srv, "open-file limit", "soft_at_start");
    let soft = log_number(&srv, "open-file limit", "soft");
    let hard = log_number(&srv, "open-file limit", "hard");
    assert_eq!(at_start, Some(256), "{:?}", srv.log());
    assert!(hard.is_some_and(|h| h >= 256), "{:?}", srv.log());
    assert_eq!(soft, hard, "soft raised to hard: {:?}", srv.log());
}

/// Reads frames until the server's close; the error frames before it, and its close frame.
async fn until_close(ws: &mut Ws) -> (Vec<Value>, Option<CloseFrame>) {
    let mut frames = Vec::new();
    loop {
        let next = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("the server closes in time");
        match next {
            Some(Ok(Message::Text(t))) => frames.push(serde_json::from_str(&t).expect("JSON")),
            Some(Ok(Message::Close(frame))) => return (frames, frame),
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("the socket failed before a close frame: {e}; got {frames:?}"),
            None => panic!("the socket ended without a close frame; got {frames:?}"),
        }
    }
}

/// Sends a text frame of `len` bytes (its write may fail once the server has closed) and
/// returns what the server sent until its close.
async fn oversized(ws: Ws, len: usize) -> (Vec<Value>, Option<CloseFrame>) {
    let (mut tx, mut rx) = ws.split();
    let big = format!("{{\"op\":\"publish\",\"message\":\"{}\"}}", "x".repeat(len));
    // Written beside the reads: the server stops reading the frame at its header, so the
    // write may block until the server closes.
    let writer = tokio::spawn(async move {
        let _ = tx.send(Message::text(big)).await;
    });
    let mut frames = Vec::new();
    let close = loop {
        let next = tokio::time::timeout(WAIT, rx.next())
            .await
            .expect("the server closes in time");
        match next {
            Some(Ok(Message::Text(t))) => frames.push(serde_json::from_str(&t).expect("JSON")),
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("no close frame, the socket failed: {e}; got {frames:?}"),
            None => panic!("the socket ended without a close frame; got {frames:?}"),
        }
    };
    let _ = tokio::time::timeout(WAIT, writer).await;
    (frames, close)
}

/// The close code of a close frame (0 when it had none).
fn code(frame: Option<&CloseFrame>) -> u16 {
    frame.map_or(0, |f| u16::from(f.code))
}

#[tokio::test]
async fn an_oversized_frame_is_answered_payload_too_large_and_closed_1009() {
    let api = Api::start();
    // The queue socket takes frames up to max_body_bytes (8 MiB by default): 9 MB is over.
    let mut queue = ws_connect(&api.srv.ws_url("/queue/big/ws?prefetch=0")).await;
    assert_eq!(
        ws_next(&mut queue).await.expect("hello")["type"],
        "connected"
    );
    let (frames, close) = oversized(queue, 9_000_000).await;
    assert_eq!(code(close.as_ref()), 1009, "{close:?}");
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0]["type"], "error");
    assert_eq!(frames[0]["code"], "payload_too_large");
    // The pub/sub socket takes client messages up to 4 KiB: 5 KB is over.
    let mut pubsub = ws_connect(&api.srv.ws_url("/pubsub/ws?topics=t")).await;
    assert_eq!(
        ws_next(&mut pubsub).await.expect("hello")["type"],
        "connected"
    );
    let (frames, close) = oversized(pubsub, 5_000).await;
    assert_eq!(code(close.as_ref()), 1009, "{close:?}");
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0]["type"], "error");
    assert_eq!(frames[0]["code"], "payload_too_large");
    // The server is fine afterwards.
    assert_eq!(api.get("/health").await.0, 200);
}

#[tokio::test]
async fn every_error_frame_has_a_code_and_unknown_pubsub_frames_are_answered() {
    let api = Api::start();
    let mut queue = ws_connect(&api.srv.ws_url("/queue/codes/ws?prefetch=0")).await;
    ws_next(&mut queue).await.expect("hello");
    let bad: [(Message, &str); 4] = [
        (Message::text("not json"), "invalid_frame"),
        (Message::text("[1, 2]"), "invalid_frame"),
        (
            Message::text(r#"{"op": "bogus", "id": 1}"#),
            "invalid_argument",
        ),
        (Message::binary(vec![1u8, 2, 3]), "invalid_argument"),
    ];
    for (frame, want) in bad {
        let shown = format!("{frame:?}");
        queue.send(frame).await.expect("send");
        let answer = ws_next(&mut queue).await.expect("an answer");
        assert_eq!(answer["type"], "error", "{shown}: {answer}");
        assert_eq!(answer["code"], want, "{shown}: {answer}");
    }
    let mut sub = ws_connect(&api.srv.ws_url("/pubsub/ws?topics=news")).await;
    ws_next(&mut sub).await.expect("hello");
    for frame in [
        Message::text(r#"{"type": "subscribe", "topics": ["x"]}"#),
        Message::text("hello"),
        Message::binary(vec![0u8; 8]),
    ] {
        let shown = format!("{frame:?}");
        sub.send(frame).await.expect("send");
        let answer = ws_next(&mut sub).await.expect("an answer");
        assert_eq!(answer["type"], "error", "{shown}: {answer}");
        assert_eq!(answer["code"], "invalid_frame", "{shown}: {answer}");
        assert!(answer["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    // Still subscribed.
    api.ok("/pubsub/news/publish", json!({"message": 1})).await;
    let m = ws_next(&mut sub).await.expect("the message");
    assert_eq!((&m["type"], &m["message"]), (&json!("message"), &json!(1)));
}

#[tokio::test]
async fn shutdown_closes_both_websockets_with_1001() {
    let mut api = Api::start();
    let mut queue = ws_connect(&api.srv.ws_url("/queue/bye/ws")).await;
    ws_next(&mut queue).await.expect("hello");
    let mut sub = ws_connect(&api.srv.ws_url("/pubsub/ws?topics=bye")).await;
    ws_next(&mut sub).await.expect("hello");
    let pid = api.srv.pid();
    let stop = tokio::task::spawn_blocking(move || {
        let status = api.srv.terminate();
        (status, api)
    });
    let ((_, queue_close), (_, sub_close)) =
        tokio::join!(until_close(&mut queue), until_close(&mut sub));
    assert_eq!(
        code(queue_close.as_ref()),
        1001,
        "queue socket: {queue_close:?}"
    );
    assert_eq!(
        code(sub_close.as_ref()),
        1001,
        "pub/sub socket: {sub_close:?}"
    );
    let (status, api) = stop.await.expect("terminate");
    assert!(
        status.success(),
        "pid {pid}: {status:?}; {:?}",
        api.srv.log()
    );
}

/// Starts a request whose body never finishes, and returns once its route is reading the
/// body: the server answers `Expect: 100-continue` when the route first reads.
async fn half_sent_body(addr: SocketAddr) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST /queue/q/publish HTTP/1.1\r\nHost: {addr}\r\ncontent-type: application/json\r\n\
         content-length: 100\r\nexpect: 100-continue\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await.expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while !got.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(WAIT, tcp.read(&mut buf))
            .await
            .expect("100 Continue in time")
            .expect("read");
        assert!(n > 0, "closed before 100 Continue");
        got.extend_from_slice(&buf[..n]);
    }
    let got = String::from_utf8_lossy(&got);
    assert!(got.starts_with("HTTP/1.1 100"), "{got}");
    tcp.write_all(b"{\"message\":").await.expect("write");
    tcp
}

/// Sends `GET /health` on a fresh connection: `Some(status, body)` when answered, `None` when
/// refused or closed; panics past 1 s (a hang).
async fn health_during_drain(addr: SocketAddr) -> Option<(u16, String)> {
    let go = async {
        let mut tcp = TcpStream::connect(addr).await.ok()?;
        let req = format!("GET /health HTTP/1.1\r\nHost: {addr}\r\n\r\n");
        tcp.write_all(req.as_bytes()).await.ok()?;
        let mut data = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            if let Some(answer) = parse_answer(&data) {
                return Some(answer);
            }
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => data.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(1), go)
        .await
        .expect("a request during the drain is answered or refused within 1 s")
}

#[tokio::test]
async fn during_the_drain_new_requests_are_refused_and_cut_bodies_get_503() {
    let srv = Server::start_with(Options {
        args: vec!["--shutdown-grace".into(), "2".into()],
        ..Options::default()
    });
    let (addr, rpc) = (srv.addr, srv.rpc_addr.expect("SynapRPC on"));
    let mut api = Api::with(srv);
    api.ok("/queue/q", json!({})).await;
    // A parked long-poll (answered at once by the drain) and a body still arriving (which
    // holds the server in its grace period).
    let http = api.http.clone();
    let consume_url = api.srv.url("/queue/q/consume");
    let parked = tokio::spawn(async move {
        let resp = http
            .post(consume_url)
            .json(&json!({"timeout": 60}))
            .send()
            .await
            .expect("consume answered");
        resp.status().as_u16()
    });
    api.wait_stats("q", "a parked consumer", |s| s["waiters"] == 1)
        .await;
    let mut slow = half_sent_body(addr).await;
    let stop = tokio::task::spawn_blocking(move || {
        let status = api.srv.terminate();
        (status, api)
    });
    assert_eq!(parked.await.expect("consume task"), 200);
    // The drain has begun (the parked consumer was answered by it); the server is still up,
    // held by the half-sent body.
    for _ in 0..3 {
        if let Some((status, body)) = health_during_drain(addr).await {
            assert_eq!(status, 503, "{body}");
            let v: Value = serde_json::from_str(&body).expect("JSON");
            assert_eq!(v["code"], "shutting_down", "{v}");
        }
        let rpc_try = tokio::time::timeout(Duration::from_secs(1), async {
            match TcpStream::connect(rpc).await {
                Err(_) => {}
                Ok(mut tcp) => {
                    let mut buf = [0u8; 64];
                    let _ = tcp.read(&mut buf).await;
                }
            }
        });
        rpc_try
            .await
            .expect("a SynapRPC connection during the drain is refused or closed within 1 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // When the grace period ends, the body still arriving is answered 503 shutting_down.
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let answer = tokio::time::timeout(WAIT, async {
        loop {
            if let Some(answer) = parse_answer(&data) {
                return Some(answer);
            }
            match slow.read(&mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => data.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("an answer within the grace period and a margin");
    let (status, body) = answer.unwrap_or_else(|| {
        panic!(
            "closed without an answer: {:?}",
            String::from_utf8_lossy(&data)
        )
    });
    assert_eq!(status, 503, "{body}");
    let v: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(v["code"], "shutting_down", "{v}");
    let head = String::from_utf8_lossy(&data).to_ascii_lowercase();
    assert!(head.contains("connection: close"), "{head}");
    let (status, api) = stop.await.expect("terminate");
    assert!(status.success(), "{status:?}; {:?}", api.srv.log());
}

/// `subscribers_matched` of a publish to `topic`.
async fn matched(api: &Api, topic: &str) -> u64 {
    let v = api
        .ok(&format!("/pubsub/{topic}/publish"), json!({"message": "m"}))
        .await;
    v["subscribers_matched"]
        .as_u64()
        .expect("subscribers_matched")
}

#[tokio::test]
async fn a_closed_subscriber_is_no_longer_counted_a_second_after() {
    let api = Api::start();
    // Closed with a close frame.
    let mut sub = ws_connect(&api.srv.ws_url("/pubsub/ws?topics=gone")).await;
    ws_next(&mut sub).await.expect("hello");
    assert_eq!(matched(&api, "gone").await, 1);
    sub.close(None).await.expect("close");
    // The server answers the close.
    while let Some(Ok(_)) = tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("close answered")
    {}
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(matched(&api, "gone").await, 0);
    // Dropped without a close frame.
    let mut sub = ws_connect(&api.srv.ws_url("/pubsub/ws?topics=dropped")).await;
    ws_next(&mut sub).await.expect("hello");
    assert_eq!(matched(&api, "dropped").await, 1);
    drop(sub);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(matched(&api, "dropped").await, 0);
}

#[test]
fn the_simulator_summary_shows_milliseconds_for_a_millisecond_workload() {
    let scenario = json!({
        "name": "ms-scale",
        "duration_ms": 60_000,
        "seed": 3,
        "sample_interval_ms": 10_000,
        "queue": "jobs",
        "task_types": [{"name": "job", "service": {"dist": "constant", "ms": 50}}],
        "producers": [{
            "name": "api",
            "arrival": {"process": "constant", "rate_per_sec": 5.0},
            "mix": [{"task_type": "job", "weight": 1}]
        }],
        "workers": [{"name": "worker", "count": 2, "wait_ms": 1_000}]
    });
    let path = synap_tests::server_harness::temp_file("json", &scenario.to_string());
    let out = std::process::Command::new(synap_tests::server_harness::server_binary())
        .arg("simulate")
        .arg(&path)
        .arg("--summary")
        .output()
        .expect("run simulate");
    let _ = std::fs::remove_file(&path);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let header = text
        .lines()
        .position(|l| l.starts_with("priority"))
        .expect("the priority table");
    let row: Vec<&str> = text
        .lines()
        .nth(header + 1)
        .expect("a row")
        .split_whitespace()
        .collect();
    // priority, published, completed, dead, then five durations as "N ms".
    let durations: Vec<String> = row[4..].chunks(2).map(|c| c.join(" ")).collect();
    assert_eq!(durations.len(), 5, "{text}");
    for d in &durations {
        assert!(d.ends_with(" ms"), "{d} in {text}");
    }
    assert_eq!(
        durations[0], "50 ms",
        "latency p50 of a 50 ms task that never waits: {text}"
    );
}
