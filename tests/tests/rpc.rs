//! Goal: the SynapRPC listener of the real `synap-server` binary speaks SYNAP_RPC.md: ids
//! multiplexed and answered in any order, `AUTH` with auth off and on (API keys and users),
//! the error strings the SDKs read, the leniencies for what the SDKs really send, bad frames
//! closing only their connection, and what a connection holds (leases, long-polls,
//! subscriptions) released when it closes, with bounded memory for a subscriber that never reads.
//! Method: a fresh in-memory server per test on free 127.0.0.1 ports, driven by a raw client
//! (tests/tests/rpc_common) that writes and reads frames by hand.

mod rpc_common;

use std::time::Duration;

use rpc_common::{PUSH_ID, Rpc, V, framed, request, s};
use synap_tests::server_harness::{Options, Server};

async fn connect(server: &Server) -> Rpc {
    Rpc::connect(server.rpc_addr.expect("SynapRPC on")).await
}

fn with_yaml(yaml: &str) -> Server {
    Server::start_with(Options {
        config_yaml: Some(yaml),
        ..Options::default()
    })
}

#[tokio::test]
async fn golden_ping_bytes() {
    let server = Server::start();
    let mut c = connect(&server).await;
    c.write(&[
        0x08, 0, 0, 0, 0x93, 0x01, 0xa4, b'P', b'I', b'N', b'G', 0x90,
    ])
    .await;
    assert_eq!(c.recv().await, Some((1, Ok(s("PONG")))));
    assert_eq!(
        c.ok("ping", &[s("hello")]).await,
        s("hello"),
        "lower case, one arg echoed"
    );
}

#[tokio::test]
async fn pipelined_requests_are_all_answered_by_id() {
    let server = Server::start();
    let mut c = connect(&server).await;
    // 200 requests written before any answer is read: more than fit in one engine turn.
    let mut burst = Vec::new();
    for i in 1..=100u32 {
        burst.extend(request(
            i,
            "SET",
            &[s(&format!("k{i}")), s(&format!("v{i}"))],
        ));
    }
    for i in 101..=200u32 {
        burst.extend(request(i, "INCRBY", &[s("total"), V::Int(i64::from(i))]));
    }
    c.write(&burst).await;
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..200 {
        let (id, result) = c.recv().await.expect("open");
        assert!(seen.insert(id, result).is_none(), "id {id} answered twice");
    }
    assert_eq!(
        seen.keys().copied().collect::<Vec<_>>(),
        (1..=200).collect::<Vec<_>>()
    );
    assert!(seen.values().take(100).all(|r| *r == Ok(s("OK"))));
    let counts: Vec<i64> = seen
        .values()
        .skip(100)
        .map(|r| r.clone().unwrap().int())
        .collect();
    assert_eq!(counts.iter().max(), Some(&(101..=200).sum::<i64>()));
    assert_eq!(c.ok("GET", &[s("k77")]).await, V::Bytes(b"v77".to_vec()));
}

#[tokio::test]
async fn a_waiting_request_does_not_hold_back_later_ones() {
    let server = Server::start();
    let mut c = connect(&server).await;
    c.ok("QCREATE", &[s("jobs")]).await;
    // A long-polling consume (the third argument), then a PING behind it.
    let consume = c.send("QCONSUME", &[s("jobs"), s("w1"), V::Int(30)]).await;
    let ping = c.send("PING", &[]).await;
    assert_eq!(
        c.recv().await,
        Some((ping, Ok(s("PONG")))),
        "PING answered first"
    );
    let mut other = connect(&server).await;
    let id = other
        .ok("QPUBLISH", &[s("jobs"), V::Bytes(b"x".to_vec())])
        .await;
    let (fid, got) = c.recv().await.expect("open");
    assert_eq!(fid, consume);
    assert_eq!(got.unwrap().get("id"), Some(&id));
}

#[tokio::test]
async fn auth_off_accepts_any_auth() {
    let server = Server::start();
    let mut c = connect(&server).await;
    assert_eq!(c.ok("AUTH", &[s("anything")]).await, s("OK"));
    assert_eq!(c.ok("AUTH", &[s("user"), s("pass")]).await, s("OK"));
    c.ok("SET", &[s("k"), s("v")]).await;
}

#[tokio::test]
async fn auth_on_with_keys_and_users() {
    let hash = hash_password("s3cret");
    let yaml = format!(
        "server:\n  api_keys: [sk-test-123]\n  users:\n    - name: alice\n      password_hash: '{hash}'\n    - name: default\n      password_hash: '{hash}'\n"
    );
    let server = with_yaml(&yaml);
    let mut c = connect(&server).await;
    assert_eq!(
        c.err("GET", &[s("k")]).await,
        "NOAUTH Authentication required."
    );
    assert_eq!(c.ok("PING", &[]).await, s("PONG"), "PING needs no auth");
    let wrongpass = "WRONGPASS invalid username-password pair or user is disabled.";
    assert_eq!(c.err("AUTH", &[s("sk-wrong")]).await, wrongpass);
    assert_eq!(c.err("AUTH", &[s("alice"), s("wrong")]).await, wrongpass);
    assert_eq!(c.err("AUTH", &[s("bob"), s("s3cret")]).await, wrongpass);
    let bad_args = "ERR invalid arguments for 'AUTH'";
    assert_eq!(c.err("AUTH", &[]).await, bad_args);
    assert_eq!(c.err("AUTH", &[V::Int(1)]).await, bad_args);
    assert_eq!(c.err("AUTH", &[s("a"), s("b"), s("c")]).await, bad_args);
    assert_eq!(
        c.err("SET", &[s("k"), s("v")]).await,
        "NOAUTH Authentication required."
    );
    assert_eq!(c.ok("AUTH", &[s("sk-test-123")]).await, s("OK"));
    c.ok("SET", &[s("k"), s("v")]).await;

    let mut u = connect(&server).await;
    assert_eq!(u.ok("AUTH", &[s("alice"), s("s3cret")]).await, s("OK"));
    assert_eq!(u.ok("GET", &[s("k")]).await, V::Bytes(b"v".to_vec()));
    // One argument is also the password of user `default`, as in Synap.
    let mut d = connect(&server).await;
    assert_eq!(d.ok("AUTH", &[s("s3cret")]).await, s("OK"));
    // QUIT answers OK and closes.
    assert_eq!(d.ok("QUIT", &[]).await, s("OK"));
    assert!(d.closed().await);
}

/// `synap-server hash-password` with `password` on standard input.
fn hash_password(password: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new(synap_tests::server_harness::server_binary())
        .arg("hash-password")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run hash-password");
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let phc = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(phc.starts_with("$argon2id$"), "{phc}");
    phc
}

#[tokio::test]
async fn the_errors_the_sdks_read() {
    let server = with_yaml("queues:\n  tiny:\n    max_depth: 1\n");
    let mut c = connect(&server).await;
    assert_eq!(c.err("QSTATS", &[s("nope")]).await, "Queue not found: nope");
    c.ok("QCREATE", &[s("q")]).await;
    let missing = "6f1c2a1e-8d4b-4c1e-9a7e-0a1b2c3d4e5f";
    assert_eq!(
        c.err("QACK", &[s("q"), s(missing)]).await,
        format!("Message not found: {missing}")
    );
    c.ok("QPUBLISH", &[s("tiny"), V::Bytes(b"1".to_vec())])
        .await;
    assert_eq!(
        c.err("QPUBLISH", &[s("tiny"), V::Bytes(b"2".to_vec())])
            .await,
        "Queue is full: tiny"
    );
    assert_eq!(c.err("FOO", &[]).await, "ERR unknown command 'FOO'");
    assert_eq!(
        c.err("FLUSHALL", &[]).await,
        "ERR unknown command 'FLUSHALL'"
    );
    assert_eq!(c.err("GET", &[]).await, "ERR missing argument 0");
    assert_eq!(
        c.err("GET", &[V::Int(3)]).await,
        "ERR argument 0 must be a string"
    );
    assert_eq!(
        c.err("INCRBY", &[s("n"), s("many")]).await,
        "ERR argument 1 is not an integer"
    );
    assert_eq!(c.err("TTL", &[s("absent")]).await, "ERR key does not exist");
    assert_eq!(
        c.err("SUBSCRIBE", &[]).await,
        "ERR SUBSCRIBE requires at least one topic"
    );
    assert_eq!(
        c.err("MSET", &[s("a")]).await,
        "ERR wrong number of arguments for 'MSET'"
    );
    assert_eq!(
        c.err("PUBLISH", &[s(""), s("1")]).await,
        "Invalid value: Topic cannot be empty"
    );
    c.ok("SET", &[s("text"), s("not a number")]).await;
    assert!(!c.err("INCR", &[s("text")]).await.is_empty());
    // None of these closed the connection.
    assert_eq!(c.ok("PING", &[]).await, s("PONG"));
}

#[tokio::test]
async fn queue_commands_accept_what_the_sdks_send() {
    let server = Server::start();
    let mut c = connect(&server).await;
    // Python: create options as strings; publish priority and retries as strings.
    assert_eq!(
        c.ok("QCREATE", &[s("jobs"), s("10"), s("5")]).await,
        s("OK")
    );
    let stats = c.ok("QSTATS", &[s("jobs")]).await;
    assert_eq!(stats.get("depth"), Some(&V::Int(0)));
    let low = c
        .ok(
            "QPUBLISH",
            &[s("jobs"), V::Bytes(b"low".to_vec()), s("1"), s("2")],
        )
        .await;
    let high = c
        .ok(
            "QPUBLISH",
            &[s("jobs"), V::Bytes(b"high".to_vec()), V::Int(9)],
        )
        .await;
    let m = c.ok("QCONSUME", &[s("jobs"), s("worker-1")]).await;
    assert_eq!(m.get("id"), Some(&high));
    assert_eq!(m.get("payload"), Some(&V::Bytes(b"high".to_vec())));
    assert_eq!(m.get("priority"), Some(&V::Int(9)));
    // TypeScript's requeue=false arrives as the string "false": dead-lettered, not retried.
    assert_eq!(
        c.ok(
            "QNACK",
            &[s("jobs"), m.get("id").unwrap().clone(), s("false")]
        )
        .await,
        s("OK")
    );
    let m = c.ok("QCONSUME", &[s("jobs"), s("worker-1")]).await;
    assert_eq!(
        (m.get("id"), m.get("max_retries")),
        (Some(&low), Some(&V::Int(2)))
    );
    c.ok("QNACK", &[s("jobs"), low.clone(), s("True")]).await;
    let again = c.ok("QCONSUME", &[s("jobs"), s("worker-1")]).await;
    assert_eq!(
        (again.get("id"), again.get("retry_count")),
        (Some(&low), Some(&V::Int(1)))
    );
    c.ok("QACK", &[s("jobs"), low]).await;
    assert_eq!(c.ok("QCONSUME", &[s("jobs"), s("worker-1")]).await, V::Null);
    let stats = c.ok("QSTATS", &[s("jobs")]).await;
    for (field, n) in [
        ("published", 2),
        ("acked", 1),
        ("nacked", 2),
        ("dead_lettered", 1),
    ] {
        assert_eq!(stats.get(field), Some(&V::Int(n)), "{field}");
    }
    assert_eq!(c.ok("QLIST", &[]).await, V::Array(vec![s("jobs")]));
    assert_eq!(c.ok("QDELETE", &[s("jobs")]).await, V::Bool(true));
    assert_eq!(c.ok("QCONSUME", &[s("jobs"), s("w")]).await, V::Null);
}

#[tokio::test]
async fn kv_commands_accept_what_the_sdks_send() {
    let server = Server::start();
    let mut c = connect(&server).await;
    c.ok("SET", &[s("k2"), s("{\"a\": 1}"), s("EX"), V::Int(60)])
        .await;
    let ttl = c.ok("TTL", &[s("k2")]).await.int();
    assert!((1..=60).contains(&ttl), "the EX TTL was kept: {ttl}");
    // Rust's non-string values are stored as themselves and read back as their text.
    c.ok("SET", &[s("n"), V::Int(41)]).await;
    assert_eq!(c.ok("INCR", &[s("n")]).await, V::Int(42));
    c.ok("SET", &[s("flag"), V::Bool(true)]).await;
    assert_eq!(c.ok("GET", &[s("flag")]).await, V::Bytes(b"true".to_vec()));
    assert_eq!(c.ok("TTL", &[s("flag")]).await, V::Int(-1));
    assert_eq!(c.ok("EXISTS", &[s("flag")]).await, V::Bool(true));
    c.ok(
        "MSET",
        &[s("user:1"), s("a"), s("user:2"), s("b"), s("other"), s("c")],
    )
    .await;
    let V::Array(mut users) = c.ok("KEYS", &[s("user:*")]).await else {
        panic!()
    };
    users.sort_by(|a, b| a.text().cmp(b.text()));
    assert_eq!(users, vec![s("user:1"), s("user:2")]);
    assert_eq!(
        c.ok("MGET", &[s("user:1"), s("missing"), s("n")]).await,
        V::Array(vec![
            V::Bytes(b"a".to_vec()),
            V::Null,
            V::Bytes(b"42".to_vec())
        ])
    );
    assert_eq!(
        c.ok("DEL", &[s("user:1"), s("user:2"), s("missing")]).await,
        V::Int(2)
    );
    assert_eq!(c.ok("DBSIZE", &[]).await, V::Int(4));
    let stats = c.ok("KVSTATS", &[]).await;
    assert_eq!(stats.get("total_keys"), Some(&V::Int(4)));
    assert_eq!(c.ok("GET", &[s("missing")]).await, V::Null);
}

#[tokio::test]
async fn the_reserved_id_is_refused_and_the_connection_stays() {
    let server = Server::start();
    let mut c = connect(&server).await;
    c.write(&request(PUSH_ID, "PING", &[])).await;
    let (id, result) = c.recv().await.expect("answered");
    assert_eq!(id, PUSH_ID);
    assert_eq!(
        result,
        Err("ERR request id u32::MAX is reserved for server push frames".into())
    );
    assert_eq!(c.ok("PING", &[]).await, s("PONG"));
}

#[tokio::test]
async fn malformed_messagepack_closes_only_its_connection() {
    let server = Server::start();
    let mut good = connect(&server).await;
    good.ok("SET", &[s("k"), s("v")]).await;
    for garbage in [
        vec![0xc1u8],
        vec![0x92, 0x01],
        b"not msgpack at all".to_vec(),
    ] {
        let mut bad = connect(&server).await;
        bad.write(&framed(&garbage)).await;
        let (id, result) = bad.recv().await.expect("an error frame before the close");
        assert_eq!(id, 0);
        assert!(result.unwrap_err().starts_with("ERR malformed frame"));
        assert!(bad.closed().await);
    }
    let mut zero = connect(&server).await;
    zero.write(&[0, 0, 0, 0]).await;
    assert!(zero.recv().await.expect("error frame").1.is_err());
    assert!(zero.closed().await);
    assert_eq!(good.ok("GET", &[s("k")]).await, V::Bytes(b"v".to_vec()));
}

#[tokio::test]
async fn an_oversized_frame_is_refused_on_its_prefix() {
    let server = with_yaml("server:\n  rpc_max_frame_bytes: 4096\n");
    let mut c = connect(&server).await;
    c.ok("SET", &[s("k"), s(&"x".repeat(3000))]).await;
    // Only the prefix is sent: the server must not wait for 1 GiB of body.
    c.write(&(1u32 << 30).to_le_bytes()).await;
    let (id, result) = c.recv().await.expect("an error frame");
    assert_eq!(id, 0);
    let msg = result.unwrap_err();
    assert!(msg.contains("1073741824") && msg.contains("4096"), "{msg}");
    assert!(c.closed().await);
    let mut other = connect(&server).await;
    assert_eq!(other.ok("PING", &[]).await, s("PONG"));
}

#[tokio::test]
async fn connections_past_the_limit_get_an_error() {
    let server = with_yaml("server:\n  rpc_max_connections: 2\n");
    let mut a = connect(&server).await;
    let mut b = connect(&server).await;
    a.ok("PING", &[]).await;
    b.ok("PING", &[]).await;
    let mut c = connect(&server).await;
    let (id, result) = c.recv().await.expect("an error frame");
    assert_eq!(
        (id, result),
        (0, Err("ERR too many connections (limit 2)".into()))
    );
    assert!(c.closed().await);
    drop(a);
    // The freed slot is reusable once the server has seen the close.
    let mut ok = false;
    for _ in 0..100 {
        let mut d = connect(&server).await;
        let id = d.send("PING", &[]).await;
        if d.recv().await == Some((id, Ok(s("PONG")))) {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok, "a slot freed by a closed connection is reused");
}

#[tokio::test]
async fn a_dropped_connection_gives_back_its_leases() {
    let server = Server::start();
    let mut a = connect(&server).await;
    a.ok("QCREATE", &[s("jobs")]).await;
    let id = a
        .ok("QPUBLISH", &[s("jobs"), V::Bytes(b"j".to_vec())])
        .await;
    let m = a.ok("QCONSUME", &[s("jobs"), s("a")]).await;
    assert_eq!(m.get("id"), Some(&id));
    drop(a);
    // The 30 s lease has not ended: only the close can have given it back.
    let mut b = connect(&server).await;
    let got = b.ok("QCONSUME", &[s("jobs"), s("b"), V::Int(10)]).await;
    assert_eq!(got.get("id"), Some(&id));
    assert_eq!(got.get("retry_count"), Some(&V::Int(1)));
}

#[tokio::test]
async fn a_dropped_connection_withdraws_its_long_polls() {
    let server = Server::start();
    let mut a = connect(&server).await;
    a.ok("QCREATE", &[s("jobs")]).await;
    // Parked for 30 s, then the connection drops without a word.
    a.send("QCONSUME", &[s("jobs"), s("a"), V::Int(30)]).await;
    a.ok("PING", &[]).await;
    drop(a);
    let mut b = connect(&server).await;
    let waiting = b.send("QCONSUME", &[s("jobs"), s("b"), V::Int(10)]).await;
    // Long enough for the server to see the close before the publish (a waiter is served
    // in the order it parked).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut p = connect(&server).await;
    let id = p
        .ok("QPUBLISH", &[s("jobs"), V::Bytes(b"j".to_vec())])
        .await;
    let (fid, got) = b.recv().await.expect("open");
    assert_eq!(fid, waiting);
    let got = got.expect("a message");
    assert_eq!(got.get("id"), Some(&id), "delivered to the live waiter");
    assert_eq!(
        got.get("retry_count"),
        Some(&V::Int(0)),
        "never leased to the gone one"
    );
}

#[tokio::test]
async fn subscriptions_push_on_their_connection_and_end_with_it() {
    let server = Server::start();
    let mut sub = connect(&server).await;
    let reply = sub.ok("SUBSCRIBE", &[s("news.*")]).await;
    assert!(reply.get("subscriber_id").is_some());
    let mut p = connect(&server).await;
    let published = p.ok("PUBLISH", &[s("news.a"), s("{\"x\": 1}")]).await;
    assert_eq!(published.get("subscribers_matched"), Some(&V::Int(1)));
    let (id, push) = sub.recv().await.expect("a push");
    assert_eq!(id, PUSH_ID);
    let push = push.unwrap();
    assert_eq!(push.get("topic"), Some(&s("news.a")));
    assert_eq!(push.get("payload"), Some(&s("{\"x\":1}")));
    assert_eq!(push.get("id"), published.get("message_id"));
    drop(sub);
    let mut gone = false;
    for _ in 0..100 {
        let r = p.ok("PUBLISH", &[s("news.a"), s("\"plain\"")]).await;
        if r.get("subscribers_matched") == Some(&V::Int(0)) {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "the subscription ends with its connection");
}

#[tokio::test]
async fn a_subscriber_that_never_reads_is_bounded_and_its_drops_counted() {
    let server = with_yaml("limits:\n  subscriber_buffer: 64\n");
    let mut sub = connect(&server).await;
    let id = sub.send("SUBSCRIBE", &[s("firehose")]).await;
    let mut p = connect(&server).await;
    // Wait until the subscription is registered, without reading `sub` again.
    for _ in 0..100 {
        let r = p.ok("PUBLISH", &[s("firehose"), s("0")]).await;
        if r.get("subscribers_matched") == Some(&V::Int(1)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Far more than the socket buffers, the connection's queues and the subscriber buffer
    // hold together: 4000 messages of 8 KiB.
    let body = s(&format!("\"{}\"", "y".repeat(8 << 10)));
    for chunk in 0..40 {
        let mut burst = Vec::new();
        for i in 0..100u32 {
            let rid = 10_000 + chunk * 100 + i;
            burst.extend(request(rid, "PUBLISH", &[s("firehose"), body.clone()]));
        }
        p.write(&burst).await;
        for _ in 0..100 {
            assert!(p.recv().await.expect("open").1.is_ok());
        }
    }
    let stats = p.ok("PSSTATS", &[]).await;
    let dropped = stats.get("messages_dropped").expect("counted").int();
    assert!(
        dropped > 0,
        "a reader that never reads loses messages: {stats:?}"
    );
    assert_eq!(
        p.ok("PING", &[]).await,
        s("PONG"),
        "the server stays responsive"
    );
    let _ = id;
}
