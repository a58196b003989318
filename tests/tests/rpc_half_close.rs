//! Goal: a SynapRPC client that shuts down its write side (a half-close) still gets every
//! answer it asked for before the server closes the connection: pipelined publishes are all
//! answered (enqueued, or refused past the in-flight limit), and a long-poll in flight ends with `Null` at once.
//! Method: a fresh in-memory server; a raw client pipelines frames, shuts down its write
//! side, then reads until the server closes.

mod rpc_common;

use rpc_common::{Rpc, V, request, s};
use synap_tests::server_harness::Server;

#[tokio::test]
async fn every_pipelined_publish_is_answered_after_a_half_close() {
    let server = Server::start();
    let addr = server.rpc_addr.expect("SynapRPC on");
    let mut setup = Rpc::connect(addr).await;
    setup.ok("QCREATE", &[s("jobs")]).await;

    const N: u32 = 2_000;
    let mut c = Rpc::connect(addr).await;
    let mut burst = Vec::new();
    for i in 1..=N {
        let body = format!("job {i}");
        burst.extend(request(
            i,
            "QPUBLISH",
            &[s("jobs"), V::Bytes(body.into_bytes())],
        ));
    }
    c.write(&burst).await;
    c.shutdown_write().await;

    // Past 256 in flight the server answers with an error instead (SYNAP_RPC.md §4): every
    // id still gets exactly one answer, and every success is a message in the queue.
    let mut ids = std::collections::BTreeSet::new();
    let mut published = 0;
    while let Some((id, result)) = c.recv().await {
        match result {
            Ok(V::Str(_)) => published += 1,
            Err(e) if e.contains("too many requests in flight") => {}
            other => panic!("publish {id}: {other:?}"),
        }
        assert!(ids.insert(id), "id {id} answered twice");
    }
    assert_eq!(
        ids.len(),
        N as usize,
        "every publish answered before the close"
    );
    assert_eq!(ids.first().copied(), Some(1));
    assert_eq!(ids.last().copied(), Some(N));
    assert!(published >= 256, "the first 256 fit in flight: {published}");

    let stats = setup.ok("QSTATS", &[s("jobs")]).await;
    assert_eq!(stats.get("depth"), Some(&V::Int(published)));
}

#[tokio::test]
async fn a_long_poll_in_flight_ends_with_null_after_a_half_close() {
    let server = Server::start();
    let mut c = Rpc::connect(server.rpc_addr.expect("SynapRPC on")).await;
    c.ok("QCREATE", &[s("empty")]).await;
    // Longer than the client's frame wait: only the half-close can end it in time.
    let consume = c.send("QCONSUME", &[s("empty"), s("w"), V::Int(120)]).await;
    let ping = c.send("PING", &[]).await;
    c.shutdown_write().await;
    let mut answers = std::collections::BTreeMap::new();
    while let Some((id, result)) = c.recv().await {
        answers.insert(id, result);
    }
    assert_eq!(answers.get(&ping), Some(&Ok(s("PONG"))));
    assert_eq!(answers.get(&consume), Some(&Ok(V::Null)));
    assert_eq!(answers.len(), 2);
}
