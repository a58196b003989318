//! Connection armour of the real `synap-server`: slow heads and bodies and idle connections
//! are closed on their (short, configured) timeouts, a request being answered is never cut,
//! the connection cap answers a clear 503, and SynapRPC's idle timeout closes silent
//! connections but not busy ones. Timeouts here are a fraction of a second; the waits allow
//! many times that.

mod hardening_common;
mod rpc_common;
mod server_common;

use std::time::Duration;

use hardening_common::{WAIT, assert_json_error, connect, exchange, read_answer, read_to_close};
use rpc_common::{Rpc, s};
use serde_json::json;
use server_common::{Api, Options, Server};
use tokio::io::AsyncWriteExt;

fn with_timeouts(extra: &[&str]) -> Server {
    let mut args: Vec<String> = [
        "--header-timeout",
        "0.5",
        "--body-timeout",
        "0.5",
        "--idle-timeout",
        "1",
        "--rpc-idle-timeout",
        "1",
    ]
    .iter()
    .map(|a| (*a).to_owned())
    .collect();
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    Server::start_with(Options {
        args,
        ..Options::default()
    })
}

#[tokio::test]
async fn half_sent_heads_and_idle_connections_are_closed() {
    let srv = with_timeouts(&[]);
    // A head that never ends.
    let mut slow = connect(srv.addr).await;
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .await
        .unwrap();
    let got = read_to_close(&mut slow).await;
    assert!(got.is_empty(), "closed without an answer: {got:?}");
    // A connection that says nothing.
    let mut silent = connect(srv.addr).await;
    assert!(read_to_close(&mut silent).await.is_empty());
    // A keep-alive connection after its answer.
    let host = format!("Host: {}\r\n", srv.addr);
    let mut idle = connect(srv.addr).await;
    let req = format!("GET /health HTTP/1.1\r\n{host}\r\n");
    idle.write_all(req.as_bytes()).await.unwrap();
    let (status, _) = read_answer(&mut idle).await;
    assert_eq!(status, 200);
    read_to_close(&mut idle).await;
    let api = Api::with(srv);
    let metrics = api.get("/metrics").await.1;
    let text = metrics.as_str().expect("text");
    let closed: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("synap_http_connections_timed_out_total "))
        .and_then(|n| n.parse().ok())
        .expect("timed-out counter");
    assert!(closed >= 3, "{closed}");
}

#[tokio::test]
async fn a_short_body_is_answered_408_and_a_huge_length_413() {
    let srv = with_timeouts(&[]);
    let head = |len: u64| {
        format!(
            "POST /queue/q/publish HTTP/1.1\r\nHost: {}\r\ncontent-type: application/json\r\n\
             content-length: {len}\r\n\r\n{{\"message\":1",
            srv.addr
        )
    };
    let answer = exchange(srv.addr, head(1_000).as_bytes()).await;
    assert_json_error(&answer, 408, "request_timeout");
    let answer = exchange(srv.addr, head(1_000_000_000).as_bytes()).await;
    assert_json_error(&answer, 413, "payload_too_large");
}

#[tokio::test]
async fn a_parked_long_poll_outlives_the_idle_timeout() {
    let api = Api::with(with_timeouts(&[]));
    api.ok("/queue/q", json!({})).await;
    let started = std::time::Instant::now();
    let got = api
        .consume("q", json!({"timeout": 2.5, "consumer_id": "w"}))
        .await;
    assert!(got.is_empty());
    assert!(started.elapsed() >= Duration::from_secs(2), "waited it out");
}

#[tokio::test]
async fn connections_past_the_cap_get_a_json_503() {
    let srv = Server::start_with(Options {
        args: vec!["--max-connections".into(), "3".into()],
        ..Options::default()
    });
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect(srv.addr).await);
    }
    // The server counts a connection once it has accepted it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let req = format!("GET /health HTTP/1.1\r\nHost: {}\r\n\r\n", srv.addr);
    let answer = exchange(srv.addr, req.as_bytes()).await;
    assert_json_error(&answer, 503, "too_many_connections");
    drop(held.pop());
    let mut ok = None;
    for _ in 0..50 {
        let answer = exchange(srv.addr, req.as_bytes()).await;
        if answer.0 == 200 {
            ok = Some(answer);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok.is_some(), "a freed slot serves again");
}

#[tokio::test]
async fn synap_rpc_closes_silent_connections_but_not_busy_ones() {
    let srv = with_timeouts(&[]);
    let addr = srv.rpc_addr.expect("SynapRPC on");
    let mut silent = Rpc::connect(addr).await;
    let started = std::time::Instant::now();
    let frame = silent.recv().await.expect("a goodbye frame");
    assert!(
        frame.1.as_ref().is_err_and(|e| e.contains("idle")),
        "{frame:?}"
    );
    assert!(silent.closed().await);
    assert!(started.elapsed() < WAIT);
    // A long-poll in flight keeps the connection.
    let mut busy = Rpc::connect(addr).await;
    let got = busy
        .call("QCONSUME", &[s("q"), s("w"), rpc_common::V::Int(3)])
        .await;
    assert_eq!(got, Ok(rpc_common::V::Null), "{got:?}");
    assert_eq!(busy.ok("PING", &[]).await, s("PONG"));
    // A frame started and never finished is cut by the body timeout.
    let mut half = Rpc::connect(addr).await;
    half.write(&[200, 0, 0, 0, 1, 2]).await;
    let frame = half.recv().await.expect("an error frame");
    assert!(frame.1.is_err(), "{frame:?}");
}

/// Resident bytes a parked long-poll may cost the server. The release build measures about
/// 17 KiB (docs/operations.md, "Limits and hardening"); this debug-build bound is generous, and far below
/// the 75 KiB a parked connection cost before.
const PARKED_BOUND: u64 = 48 << 10;

#[tokio::test]
async fn a_parked_consumer_costs_little_memory() {
    let api = Api::start();
    api.ok("/queue/q", json!({})).await;
    let pid = api.srv.pid();
    let n: u64 = 400;
    let idle = hardening_common::rss_bytes(pid);
    let url = api.srv.url("/queue/q/consume");
    let polls: Vec<_> = (0..n)
        .map(|i| {
            // One client each: a connection per parked consumer, as separate workers have.
            let http = reqwest::Client::new();
            let url = url.clone();
            tokio::spawn(async move {
                http.post(url)
                    .json(&json!({"timeout": 4, "consumer_id": format!("c{i}")}))
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            })
        })
        .collect();
    let mut parked = 0;
    for _ in 0..100 {
        parked = api.stats("q").await["waiters"].as_u64().unwrap();
        if parked == n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(parked, n, "every consumer parked");
    let held = hardening_common::rss_bytes(pid);
    let per = held.saturating_sub(idle) / n;
    println!("{n} parked long-polls: {per} bytes each");
    assert!(per < PARKED_BOUND, "{per} bytes per parked consumer");
    for p in polls {
        assert_eq!(p.await.unwrap().ok(), Some(200));
    }
}
