//! Goal: the SynapRPC push consumer (`QSTREAM`, a Synap extension on the core's consumer
//! sessions) pushes at most `prefetch` unsettled deliveries, gets credit back as they are
//! acked or granted (`QCREDIT`), gives its messages back when detached (`QUNSTREAM`) or when
//! its connection closes, and says when its queue is deleted.
//! Method: a fresh in-memory server per test, driven by the raw frame client of rpc_common;
//! "no more than prefetch" is read from the queue's stats after a round trip, not from time.

mod rpc_common;

use rpc_common::{PUSH_ID, Rpc, V, s};
use synap_tests::server_harness::Server;

async fn connect(server: &Server) -> Rpc {
    Rpc::connect(server.rpc_addr.expect("SynapRPC on")).await
}

/// Creates `q` and publishes `n` messages `m0`, `m1`, … through `c`; returns their ids.
async fn fill(c: &mut Rpc, n: usize) -> Vec<V> {
    c.ok("QCREATE", &[s("q")]).await;
    let mut ids = Vec::new();
    for i in 0..n {
        let body = V::Bytes(format!("m{i}").into_bytes());
        ids.push(c.ok("QPUBLISH", &[s("q"), body]).await);
    }
    ids
}

/// The next push on `c`: one read while waiting for an answer first, then the next to arrive
/// (answers to other requests are kept in its stash).
async fn push(c: &mut Rpc) -> V {
    if let Some(i) = c.stash.iter().position(|(id, _)| *id == PUSH_ID) {
        return c.stash.remove(i).1.expect("an Ok push");
    }
    loop {
        let (id, result) = c.recv().await.expect("connection open");
        if id == PUSH_ID {
            return result.expect("an Ok push");
        }
        c.stash.push((id, result));
    }
}

/// (ready, in flight) of `q`, asked on `c`.
async fn counts(c: &mut Rpc) -> (i64, i64) {
    let st = c.ok("QSTATS", &[s("q")]).await;
    (
        st.get("ready").unwrap().int(),
        st.get("in_flight").unwrap().int(),
    )
}

#[tokio::test]
async fn a_stream_pushes_up_to_prefetch_and_acks_return_credit() {
    let server = Server::start();
    let mut c = connect(&server).await;
    let ids = fill(&mut c, 5).await;
    let attached = c.ok("QSTREAM", &[s("q"), s("w1"), V::Int(2)]).await;
    assert_eq!(attached.get("prefetch"), Some(&V::Int(2)));
    let session = attached.get("session_id").unwrap().clone();
    let first = push(&mut c).await;
    let second = push(&mut c).await;
    assert_eq!(first.get("type"), Some(&s("message")));
    assert_eq!(first.get("session_id"), Some(&session));
    assert_eq!(
        (first.get("id"), second.get("id")),
        (Some(&ids[0]), Some(&ids[1]))
    );
    assert_eq!(first.get("payload"), Some(&V::Bytes(b"m0".to_vec())));
    assert_eq!(
        counts(&mut c).await,
        (3, 2),
        "two pushed, no more than prefetch"
    );

    c.ok("QACK", &[s("q"), ids[0].clone()]).await;
    let third = push(&mut c).await;
    assert_eq!(third.get("id"), Some(&ids[2]), "an ack returns one credit");
    assert_eq!(counts(&mut c).await, (2, 2));

    // Two more credits: the two messages left are pushed.
    c.ok("QCREDIT", &[session.clone(), V::Int(2)]).await;
    let (a, b) = (push(&mut c).await, push(&mut c).await);
    assert_eq!((a.get("id"), b.get("id")), (Some(&ids[3]), Some(&ids[4])));
    assert_eq!(counts(&mut c).await, (0, 4));

    // Detaching gives back the four unsettled messages.
    assert_eq!(
        c.ok("QUNSTREAM", std::slice::from_ref(&session)).await,
        V::Int(4)
    );
    assert_eq!(counts(&mut c).await, (4, 0));
    assert!(
        c.err("QCREDIT", &[session, V::Int(1)])
            .await
            .starts_with("ERR no stream")
    );
}

#[tokio::test]
async fn a_closed_connection_gives_back_its_streamed_messages() {
    let server = Server::start();
    let mut a = connect(&server).await;
    let ids = fill(&mut a, 1).await;
    a.ok("QSTREAM", &[s("q"), s("a"), V::Int(8)]).await;
    assert_eq!(push(&mut a).await.get("id"), Some(&ids[0]));
    drop(a);
    let mut b = connect(&server).await;
    let got = b.ok("QCONSUME", &[s("q"), s("b"), V::Int(10)]).await;
    assert_eq!(got.get("id"), Some(&ids[0]));
    assert_eq!(got.get("retry_count"), Some(&V::Int(1)));
}

#[tokio::test]
async fn deleting_the_queue_ends_the_stream() {
    let server = Server::start();
    let mut c = connect(&server).await;
    fill(&mut c, 0).await;
    let attached = c.ok("QSTREAM", &[s("q")]).await;
    assert_eq!(
        attached.get("prefetch"),
        Some(&V::Int(64)),
        "the default prefetch"
    );
    let mut other = connect(&server).await;
    other.ok("QDELETE", &[s("q")]).await;
    let ended = push(&mut c).await;
    assert_eq!(ended.get("type"), Some(&s("ended")));
    assert_eq!(ended.get("session_id"), attached.get("session_id"));
}

#[tokio::test]
async fn stream_arguments_are_checked() {
    let server = Server::start();
    let mut c = connect(&server).await;
    assert_eq!(
        c.err("QSTREAM", &[s("absent")]).await,
        "Queue not found: absent"
    );
    fill(&mut c, 0).await;
    assert!(
        c.err("QSTREAM", &[s("q"), s("w"), V::Int(0)])
            .await
            .starts_with("ERR argument 2")
    );
    assert!(
        c.err("QSTREAM", &[s("q"), s("w"), V::Int(1), V::Int(-1)])
            .await
            .starts_with("ERR argument 3")
    );
    // Another connection's session cannot be driven from here.
    let mut other = connect(&server).await;
    let theirs = other.ok("QSTREAM", &[s("q")]).await;
    let sid = theirs.get("session_id").unwrap().clone();
    assert!(
        c.err("QUNSTREAM", &[sid])
            .await
            .starts_with("ERR no stream")
    );
}
